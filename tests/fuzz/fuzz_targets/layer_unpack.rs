//! Layer unpacking: `unpack_layer_tar` on the input as a plain tar, or, when
//! it starts with gzip or zstd magic, on the input decompressed
//! (`compress::auto_decoder`, as the store reads a layer blob), into a fresh
//! directory. An error is fine; a panic, or anything appearing outside that
//! directory, is not.
#![no_main]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rbuild_store::compress::auto_decoder;
use rbuild_store::unpack_layer_tar;

/// Every path under `dir` (not following symlinks), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                todo.push(path.clone());
            }
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
        }
    }
    out.sort();
    out
}

fn make_removable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_removable(&entry.path());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // parent/
    //   snapshot/            the unpack's destination
    //   outside/canary       must stay as it is
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("snapshot");
    let outside = parent.path().join("outside");
    fs::create_dir(&dest).unwrap();
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("canary"), b"canary").unwrap();
    let before = listing(&outside);

    if let Ok(reader) = auto_decoder(data) {
        let _ = unpack_layer_tar(reader, &dest);
    }

    let mut top: Vec<String> = fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["outside", "snapshot"], "something was written beside the snapshot");
    assert_eq!(listing(&outside), before, "something was written outside the snapshot");
    assert_eq!(fs::read(outside.join("canary")).unwrap(), b"canary");
    // Directories unpacked with modes such as 0555 would keep a non-root
    // user from removing the snapshot.
    make_removable(&dest);
});
