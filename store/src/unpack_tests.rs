//! Unpack tests: a layer written from a tree and unpacked again must give the
//! same layer back, and hostile tars must stay inside the snapshot.

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};

use rustix::fs::{FileType, Mode, XattrFlags, CWD};

use super::*;
use crate::test_util::temp_store;
use crate::{Compression, LayerOptions};

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).unwrap();
}

#[test]
fn a_written_layer_unpacks_to_a_tree_that_writes_the_same_layer() {
    let (_d, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("usr/bin/tool"), b"binary").unwrap();
    // chown first: it clears set-id bits.
    std::os::unix::fs::lchown(root.join("usr/bin/tool"), Some(10), Some(20)).unwrap();
    fs::set_permissions(
        root.join("usr/bin/tool"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/alias")).unwrap();
    symlink("usr/bin", root.join("bin")).unwrap();
    set_xattr(
        &root.join("usr/bin/tool"),
        "security.capability",
        &[
            1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    set_xattr(&root.join("usr/bin/tool"), "user.note", b"kept");
    rustix::fs::mknodat(
        CWD,
        root.join("gone"),
        FileType::CharacterDevice,
        Mode::empty(),
        0,
    )
    .unwrap();
    fs::create_dir(root.join("etc")).unwrap();
    fs::write(root.join("etc/fresh"), b"f").unwrap();
    set_xattr(&root.join("etc"), "trusted.overlay.opaque", b"y");
    rustix::fs::mknodat(
        CWD,
        root.join("null"),
        FileType::CharacterDevice,
        Mode::empty(),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    fs::create_dir(root.join("ro")).unwrap();
    fs::write(root.join("ro/file"), b"r").unwrap();
    fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    let long = format!("{}/{}", "d".repeat(120), "n".repeat(150));
    fs::create_dir(root.join("d".repeat(120))).unwrap();
    fs::write(root.join(&long), b"long").unwrap();

    for compression in [Compression::Gzip, Compression::Zstd] {
        let opts = LayerOptions {
            compression,
            ..LayerOptions::default()
        };
        let layer = store.write_layer(root, &opts).unwrap();
        let snapshot = store.ensure_snapshot(&layer).unwrap();
        assert_eq!(snapshot, store.snapshot_path(&layer.diff_id));
        let again = store.write_layer(&snapshot, &opts).unwrap();
        assert_eq!(again, layer, "{compression:?}");

        let gone = fs::symlink_metadata(snapshot.join("gone")).unwrap();
        assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
        let tool = fs::metadata(snapshot.join("usr/bin/tool")).unwrap();
        assert_eq!(
            (tool.mode() & 0o7777, tool.uid(), tool.gid()),
            (0o4755, 10, 20)
        );
        assert_eq!(
            tool.ino(),
            fs::metadata(snapshot.join("usr/bin/alias")).unwrap().ino()
        );
        assert_eq!(
            crate::xattr::get(&snapshot.join("etc"), "user.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        let cap = crate::xattr::get(&snapshot.join("usr/bin/tool"), "security.capability").unwrap();
        assert!(cap.is_some(), "file capabilities survive the unpack");
        // Unpacking again is a no-op: the snapshot is there.
        assert_eq!(store.ensure_snapshot(&layer).unwrap(), snapshot);
    }
}

fn tar_of(entries: &[(&str, EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, data, link) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        // Raw name bytes: set_path would refuse the hostile ones.
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(link) = link {
            header.set_link_name_literal(link).unwrap();
        }
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn hostile_paths_stay_inside() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    let cases: Vec<Vec<u8>> = vec![
        tar_of(&[("../victim", EntryType::Regular, b"x", None)]),
        tar_of(&[("a/../../victim", EntryType::Regular, b"x", None)]),
        tar_of(&[
            (
                "escape",
                EntryType::Symlink,
                b"",
                Some(outside.path().to_str().unwrap()),
            ),
            ("escape/victim", EntryType::Regular, b"x", None),
        ]),
        tar_of(&[("link", EntryType::Link, b"", Some("../victim"))]),
    ];
    for (i, tar) in cases.iter().enumerate() {
        let dest = outside.path().join(format!("dest{i}"));
        fs::create_dir(&dest).unwrap();
        let result = unpack_layer_tar(&tar[..], &dest);
        assert!(result.is_err(), "case {i} should be refused");
        assert!(!victim.exists(), "case {i} escaped");
    }
    // Absolute paths land inside, as Docker places them.
    let dest = outside.path().join("abs");
    fs::create_dir(&dest).unwrap();
    unpack_layer_tar(
        &tar_of(&[("/etc/abs", EntryType::Regular, b"in", None)])[..],
        &dest,
    )
    .unwrap();
    assert_eq!(fs::read(dest.join("etc/abs")).unwrap(), b"in");
}

#[test]
fn a_blob_that_does_not_match_its_diff_id_never_becomes_a_snapshot() {
    let (_d, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), b"data").unwrap();
    let mut layer = store
        .write_layer(src.path(), &LayerOptions::default())
        .unwrap();
    layer.diff_id = crate::Digest::of_bytes(b"something else");
    let err = store.ensure_snapshot(&layer).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(!store.has_snapshot(&layer.diff_id));
}
