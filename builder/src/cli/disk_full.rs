//! A hint for the error users most often cannot place: a full disk. An
//! ENOSPC deep in a layer write names a temp file; the hint says which
//! filesystem is full and what frees space in it.

use std::path::Path;

/// What an `ENOSPC` looks like once an error is rendered (the `io::Error`
/// itself is often gone by then: step errors keep only their message).
const MARKERS: [&str; 2] = ["(os error 28)", "No space left on device"];

/// The hint to print after `message`, if it reports a full filesystem.
/// `store_root` is the store the command used.
pub fn hint(message: &str, store_root: &Path) -> Option<String> {
    if !MARKERS.iter().any(|m| message.contains(m)) {
        return None;
    }
    let root = store_root.display().to_string();
    Some(if message.contains(&root) {
        format!(
            "hint: no space left on the filesystem of rbuild's store ({root}): free space there, \
             or remove unused images and build cache with `rbuild prune` (`rbuild du` shows what uses it)"
        )
    } else {
        "hint: no space left on a filesystem rbuild was writing to; free space there and run rbuild again".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_store_when_the_store_is_full() {
        let root = Path::new("/data/rbuild");
        let message = "Dockerfile:3: COPY blob /blob: write /data/rbuild/tmp/1/dir-x/diff/blob: No space left on device (os error 28)";
        let text = hint(message, root).unwrap();
        assert!(text.contains("rbuild's store (/data/rbuild)"), "{text}");
        assert!(text.contains("rbuild prune"), "{text}");
        let elsewhere = hint(
            "writing /out/app.tar: No space left on device (os error 28)",
            root,
        )
        .unwrap();
        assert!(!elsewhere.contains("/data/rbuild"), "{elsewhere}");
        assert_eq!(hint("permission denied", root), None);
    }
}
