//! Tests of the deterministic layer writer. They run as root: whiteouts are
//! character devices and opaque markers are `trusted.` xattrs.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use filetime::FileTime;
use rustix::fs::{FileType, Mode, XattrFlags, CWD};
use tar::EntryType;

use super::*;
use crate::compress::decoder;
use crate::store::Store;
use crate::test_util::temp_store;

/// One tar entry, as a reader sees it after PAX records are applied.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    path: String,
    kind: EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<String>,
    data: Vec<u8>,
    pax: BTreeMap<String, Vec<u8>>,
    uname_empty: bool,
    device: (u32, u32),
}

fn read_tar(bytes: &[u8]) -> Vec<Entry> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut pax = BTreeMap::new();
        if let Some(exts) = entry.pax_extensions().unwrap() {
            for ext in exts {
                let ext = ext.unwrap();
                pax.insert(ext.key().unwrap().to_string(), ext.value_bytes().to_vec());
            }
        }
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push(Entry {
            path: String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
            kind: header.entry_type(),
            mode: header.mode().unwrap(),
            uid: header.uid().unwrap(),
            gid: header.gid().unwrap(),
            mtime: header.mtime().unwrap(),
            link: entry
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap()),
            data,
            pax,
            uname_empty: header.username_bytes().is_none_or(|u| u.is_empty())
                && header.groupname_bytes().is_none_or(|g| g.is_empty()),
            device: (
                header.device_major().unwrap().unwrap_or(0),
                header.device_minor().unwrap().unwrap_or(0),
            ),
        });
    }
    out
}

/// Writes `dir` as a layer and returns it with its (uncompressed) entries,
/// after checking both digests against the stored bytes.
fn layer_of(store: &Store, dir: &Path, opts: &LayerOptions) -> (Layer, Vec<Entry>) {
    let layer = store.write_layer(dir, opts).unwrap();
    let blob = fs::read(store.blob_path(&layer.digest)).unwrap();
    assert_eq!(Digest::of_bytes(&blob), layer.digest);
    assert_eq!(blob.len() as u64, layer.size);
    let mut tar = Vec::new();
    decoder(layer.compression().unwrap(), &blob[..])
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(Digest::of_bytes(&tar), layer.diff_id);
    let entries = read_tar(&tar);
    (layer, entries)
}

fn paths(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.path.as_str()).collect()
}

fn set_mtime(path: &Path, secs: i64) {
    filetime::set_symlink_file_times(
        path,
        FileTime::from_unix_time(secs, 0),
        FileTime::from_unix_time(secs, 0),
    )
    .unwrap();
}

/// A small tree with every kind of entry a build produces.
fn sample_tree(root: &Path, mtime: i64) {
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("a/b/c.txt"), b"deep").unwrap();
    fs::write(root.join("a.txt"), b"beside").unwrap();
    fs::write(root.join("a-b"), b"dash").unwrap();
    fs::create_dir(root.join("bin")).unwrap();
    fs::write(root.join("bin/tool"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    symlink("tool", root.join("bin/alias")).unwrap();
    fs::create_dir(root.join("empty")).unwrap();
    fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o1777)).unwrap();
    for p in [
        "a/b/c.txt",
        "a/b",
        "a",
        "a.txt",
        "a-b",
        "bin/tool",
        "bin/alias",
        "bin",
        "empty",
    ] {
        set_mtime(&root.join(p), mtime);
    }
}

#[test]
fn entries_are_sorted_relative_and_normalised() {
    let (_d, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path(), 1_700_000_000);
    fs::set_permissions(src.path().join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::lchown(src.path().join("a.txt"), Some(1234), Some(5678)).unwrap();
    let (layer, entries) = layer_of(&store, src.path(), &LayerOptions::default());
    assert_eq!(
        layer.media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        paths(&entries),
        [
            "a-b",
            "a.txt",
            "a/",
            "a/b/",
            "a/b/c.txt",
            "bin/",
            "bin/alias",
            "bin/tool",
            "empty/"
        ]
    );
    let by_path: BTreeMap<_, _> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let a_txt = by_path["a.txt"];
    assert_eq!((a_txt.mode, a_txt.uid, a_txt.gid), (0o640, 1234, 5678));
    assert_eq!(a_txt.data, b"beside");
    assert_eq!(a_txt.mtime, 1_700_000_000);
    assert_eq!(by_path["bin/tool"].mode, 0o4755);
    assert_eq!(by_path["empty/"].mode, 0o1777);
    assert_eq!(by_path["empty/"].kind, EntryType::Directory);
    assert_eq!(by_path["bin/alias"].kind, EntryType::Symlink);
    assert_eq!(by_path["bin/alias"].link.as_deref(), Some("tool"));
    for e in &entries {
        assert!(e.uname_empty, "{} has a user or group name", e.path);
        assert!(e.pax.is_empty(), "{} has PAX records {:?}", e.path, e.pax);
    }
}

#[test]
fn same_tree_gives_same_digests() {
    let (_d, store) = temp_store();
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    sample_tree(one.path(), 1_600_000_000);
    sample_tree(two.path(), 1_600_000_000);
    let opts = LayerOptions::default();
    let first = store.write_layer(one.path(), &opts).unwrap();
    assert_eq!(store.write_layer(one.path(), &opts).unwrap(), first);
    assert_eq!(store.write_layer(two.path(), &opts).unwrap(), first);
}

#[test]
fn source_date_epoch_clamps_only_newer_times() {
    let (_d, store) = temp_store();
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    sample_tree(one.path(), 1_700_000_000);
    sample_tree(two.path(), 1_800_000_000);
    let unclamped = LayerOptions::default();
    assert_ne!(
        store.write_layer(one.path(), &unclamped).unwrap().diff_id,
        store.write_layer(two.path(), &unclamped).unwrap().diff_id
    );
    let clamped = LayerOptions {
        source_date_epoch: Some(1_000_000_000),
        ..LayerOptions::default()
    };
    let (first, entries) = layer_of(&store, one.path(), &clamped);
    assert_eq!(store.write_layer(two.path(), &clamped).unwrap(), first);
    assert!(entries.iter().all(|e| e.mtime == 1_000_000_000));

    // Older files keep their own time.
    set_mtime(&one.path().join("a.txt"), 900_000_000);
    let (_, entries) = layer_of(&store, one.path(), &clamped);
    let a_txt = entries.iter().find(|e| e.path == "a.txt").unwrap();
    assert_eq!(a_txt.mtime, 900_000_000);
}

#[test]
fn hardlinks_stay_links_to_the_first_path() {
    let (_d, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    fs::create_dir(src.path().join("d")).unwrap();
    fs::write(src.path().join("d/z-original"), b"shared").unwrap();
    fs::hard_link(src.path().join("d/z-original"), src.path().join("a-link")).unwrap();
    fs::hard_link(src.path().join("d/z-original"), src.path().join("d/b-link")).unwrap();
    let (_, entries) = layer_of(&store, src.path(), &LayerOptions::default());
    assert_eq!(
        paths(&entries),
        ["a-link", "d/", "d/b-link", "d/z-original"]
    );
    assert_eq!(entries[0].kind, EntryType::Regular);
    assert_eq!(entries[0].data, b"shared");
    for link in [&entries[2], &entries[3]] {
        assert_eq!(link.kind, EntryType::Link, "{}", link.path);
        assert_eq!(link.link.as_deref(), Some("a-link"));
        assert!(link.data.is_empty());
    }
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).unwrap();
}

#[test]
fn overlay_whiteouts_become_oci_whiteouts() {
    let (_d, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    // A deleted file: overlayfs leaves a 0:0 character device.
    rustix::fs::mknodat(
        CWD,
        root.join("gone"),
        FileType::CharacterDevice,
        Mode::empty(),
        0,
    )
    .unwrap();
    // A directory replaced as a whole: opaque, by privileged or rootless overlay.
    for (dir, xattr) in [
        ("etc", "trusted.overlay.opaque"),
        ("var", "user.overlay.opaque"),
    ] {
        fs::create_dir(root.join(dir)).unwrap();
        fs::write(root.join(dir).join("new"), b"n").unwrap();
        set_xattr(&root.join(dir), xattr, b"y");
        set_xattr(&root.join(dir), "trusted.overlay.origin", b"\x00\x01");
    }
    // A deleted file inside a directory, as an xattr whiteout.
    fs::create_dir(root.join("usr")).unwrap();
    fs::write(root.join("usr/old"), b"").unwrap();
    set_xattr(&root.join("usr/old"), "trusted.overlay.whiteout", b"");
    // Not opaque: the value must be "y".
    fs::create_dir(root.join("opt")).unwrap();
    set_xattr(&root.join("opt"), "trusted.overlay.opaque", b"n");

    let (_, entries) = layer_of(&store, root, &LayerOptions::default());
    assert_eq!(
        paths(&entries),
        [
            ".wh.gone",
            "etc/",
            "etc/.wh..wh..opq",
            "etc/new",
            "opt/",
            "usr/",
            "usr/.wh.old",
            "var/",
            "var/.wh..wh..opq",
            "var/new"
        ]
    );
    for e in entries.iter().filter(|e| e.path.contains(".wh.")) {
        assert_eq!(e.kind, EntryType::Regular, "{}", e.path);
        assert!(e.data.is_empty());
        assert_eq!(e.mode, 0);
    }
    for e in &entries {
        assert!(
            e.pax.keys().all(|k| !k.contains("overlay")),
            "{} leaks overlay xattrs: {:?}",
            e.path,
            e.pax
        );
    }
}

#[test]
fn whiteout_sharing_an_inode_is_still_a_whiteout() {
    // overlayfs may hard-link whiteouts to one shared inode.
    let (_d, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    rustix::fs::mknodat(
        CWD,
        root.join("x"),
        FileType::CharacterDevice,
        Mode::empty(),
        0,
    )
    .unwrap();
    fs::hard_link(root.join("x"), root.join("y")).unwrap();
    let (_, entries) = layer_of(&store, root, &LayerOptions::default());
    assert_eq!(paths(&entries), [".wh.x", ".wh.y"]);
    assert!(entries.iter().all(|e| e.kind == EntryType::Regular));
}

#[test]
fn long_names_and_link_targets_use_pax_or_ustar_prefix() {
    let (_d, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    // 150 bytes across two components: fits ustar's prefix + name.
    let medium_dir = "m".repeat(90);
    let medium = format!("{medium_dir}/{}", "f".repeat(59));
    fs::create_dir(root.join(&medium_dir)).unwrap();
    fs::write(root.join(&medium), b"medium").unwrap();
    // A 200-byte last component cannot be split: PAX path.
    let long_dir = "d".repeat(120);
    let long = format!("{long_dir}/{}", "n".repeat(200));
    fs::create_dir(root.join(&long_dir)).unwrap();
    fs::write(root.join(&long), b"long").unwrap();
    let target = format!("/{}", "t".repeat(150));
    symlink(&target, root.join("link")).unwrap();

    let (_, entries) = layer_of(&store, root, &LayerOptions::default());
    let expected = [
        format!("{long_dir}/"),
        long.clone(),
        "link".into(),
        format!("{medium_dir}/"),
        medium.clone(),
    ];
    assert_eq!(
        paths(&entries),
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let find = |p: &str| entries.iter().find(|e| e.path == p).unwrap();
    assert_eq!(
        find(&long).pax.get("path").map(Vec::as_slice),
        Some(long.as_bytes())
    );
    assert_eq!(find(&long).data, b"long");
    assert!(
        find(&medium).pax.is_empty(),
        "a splittable path needs no PAX"
    );
    assert_eq!(find(&medium).data, b"medium");
    assert_eq!(find("link").link.as_deref(), Some(target.as_str()));
    assert_eq!(
        find("link").pax.get("linkpath").map(Vec::as_slice),
        Some(target.as_bytes())
    );
}

#[test]
fn xattrs_become_schily_pax_records() {
    let (_d, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("ping");
    fs::write(&file, b"elf").unwrap();
    // cap_net_raw+ep, as setcap writes it (binary, with NUL bytes).
    let cap: &[u8] = &[
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    set_xattr(&file, "security.capability", cap);
    set_xattr(&file, "user.note", b"hello");
    let (_, entries) = layer_of(&store, src.path(), &LayerOptions::default());
    assert_eq!(entries.len(), 1);
    let pax = &entries[0].pax;
    assert_eq!(
        pax.get("SCHILY.xattr.security.capability")
            .map(Vec::as_slice),
        Some(cap)
    );
    assert_eq!(
        pax.get("SCHILY.xattr.user.note").map(Vec::as_slice),
        Some(&b"hello"[..])
    );
    assert_eq!(entries[0].data, b"elf");
}

#[test]
fn devices_and_fifos_are_kept_and_sockets_skipped() {
    let (_d, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    let dev = rustix::fs::makedev(1, 3);
    rustix::fs::mknodat(
        CWD,
        root.join("null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        dev,
    )
    .unwrap();
    rustix::fs::mknodat(
        CWD,
        root.join("loop"),
        FileType::BlockDevice,
        Mode::from_raw_mode(0o660),
        rustix::fs::makedev(7, 0),
    )
    .unwrap();
    rustix::fs::mknodat(
        CWD,
        root.join("pipe"),
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // mknod applies the umask; set the mode the test checks explicitly.
    fs::set_permissions(root.join("null"), fs::Permissions::from_mode(0o666)).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let (_, entries) = layer_of(&store, root, &LayerOptions::default());
    assert_eq!(paths(&entries), ["loop", "null", "pipe"]);
    assert_eq!(
        (entries[0].kind, entries[0].device),
        (EntryType::Block, (7, 0))
    );
    assert_eq!(
        (entries[1].kind, entries[1].device, entries[1].mode),
        (EntryType::Char, (1, 3), 0o666)
    );
    assert_eq!(entries[2].kind, EntryType::Fifo);
}

#[test]
fn compression_changes_the_blob_but_not_the_diff_id() {
    let (_d, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path(), 1_650_000_000);
    let mut layers = Vec::new();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let opts = LayerOptions {
            compression,
            ..LayerOptions::default()
        };
        let (layer, _) = layer_of(&store, src.path(), &opts);
        assert_eq!(layer.media_type, compression.layer_media_type());
        layers.push(layer);
    }
    assert!(layers.iter().all(|l| l.diff_id == layers[0].diff_id));
    assert_ne!(layers[0].digest, layers[1].digest);
    assert_eq!(
        layers[2].digest, layers[2].diff_id,
        "an uncompressed blob is the tar itself"
    );
}

#[test]
fn an_empty_directory_is_an_empty_tar() {
    let (_d, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    let (layer, entries) = layer_of(&store, src.path(), &LayerOptions::default());
    assert!(entries.is_empty());
    // Two zero blocks: the well-known digest of an empty tar.
    assert_eq!(layer.diff_id, Digest::of_bytes(&[0u8; 1024]));
}

#[test]
fn a_missing_directory_is_an_error_naming_it() {
    let (_d, store) = temp_store();
    let err = store
        .write_layer(
            Path::new("/nonexistent/rbuild-layer"),
            &LayerOptions::default(),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/rbuild-layer"),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(store.tmp_dir()).unwrap().count(),
        0,
        "no temp file left"
    );
}

#[test]
fn a_large_file_streams_through() {
    let (_d, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    // Larger than every buffer and chunk on the way.
    let data: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    fs::write(src.path().join("big"), &data).unwrap();
    let (_, entries) = layer_of(&store, src.path(), &LayerOptions::default());
    assert_eq!(entries[0].data.len(), data.len());
    assert!(entries[0].data == data);
}
