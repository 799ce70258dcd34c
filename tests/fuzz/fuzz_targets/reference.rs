//! The store's image reference parser: `Reference::parse`, its accessors,
//! `with_tag`, and the printed forms, which must parse back to the same
//! reference.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_store::Reference;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(reference) = Reference::parse(text) else { return };
    let _ = (reference.domain(), reference.path(), reference.tag(), reference.digest());
    let _ = reference.familiar_repository();
    for printed in [reference.full(), reference.familiar()] {
        assert_eq!(
            Reference::parse(&printed).as_ref(),
            Ok(&reference),
            "{text:?} printed as {printed:?}"
        );
    }
    if let Ok(tagged) = reference.with_tag("v1.2.3") {
        assert_eq!(Reference::parse(&tagged.full()).as_ref(), Ok(&tagged));
    }
});
