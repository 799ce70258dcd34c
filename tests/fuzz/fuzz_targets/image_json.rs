//! The store's JSON readers: `ImageConfig::from_json` (with `to_json` and
//! `digest`: what it writes must read back to the same config) and
//! `manifest::Document::parse` for manifests and indexes (with
//! `check_supported`, descriptor digests and platforms, `select_platform`).
//! The first byte picks the media type the document is said to have.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_store::config::ImageConfig;
use rbuild_store::manifest::{offered_platforms, select_platform, Descriptor, Document};
use rbuild_store::Platform;

const MEDIA_TYPES: &[Option<&str>] = &[
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json"),
    Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
    Some("application/json; charset=utf-8"),
    Some(""),
];

fn without_extra(mut config: ImageConfig) -> ImageConfig {
    config.extra.clear();
    config.config.extra.clear();
    config
}

fn descriptor(d: &Descriptor) {
    let _ = d.digest();
    let _ = d.platform().map(|p| p.to_string());
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, json)) = data.split_first() else { return };

    if let Ok(config) = ImageConfig::from_json(json) {
        let bytes = config.to_json();
        let _ = config.digest();
        let again = ImageConfig::from_json(&bytes)
            .unwrap_or_else(|e| panic!("a written config does not read back: {e}: {}", String::from_utf8_lossy(&bytes)));
        // Unknown fields are kept as JSON values, whose floats need not
        // round-trip exactly; every known field must.
        assert_eq!(without_extra(again), without_extra(config));
    }

    let media_type = MEDIA_TYPES[usize::from(selector) % MEDIA_TYPES.len()];
    match Document::parse(json, media_type) {
        Ok(Document::Manifest(manifest)) => {
            let _ = manifest.check_supported();
            descriptor(&manifest.config);
            manifest.layers.iter().for_each(descriptor);
        }
        Ok(Document::Index(entries)) => {
            entries.iter().for_each(descriptor);
            let _ = offered_platforms(&entries);
            for wanted in ["linux/amd64", "linux/arm64", "linux/arm/v7", "windows/amd64"] {
                let wanted = Platform::parse(wanted).unwrap();
                if let Some(chosen) = select_platform(&entries, &wanted) {
                    assert!(wanted.matches(&chosen.platform().unwrap()));
                }
            }
        }
        Err(_) => {}
    }
});
