//! Unpack tests: a layer written from a tree and unpacked again must give the
//! same layer back, and hostile tars must stay inside the snapshot.

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

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
            crate::fs::xattr::get(&snapshot.join("etc"), "user.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        let cap = crate::fs::xattr::get(&snapshot.join("usr/bin/tool"), "security.capability").unwrap();
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

/// Unpacks `tar` into a fresh directory beside `outside`'s contents and
/// returns the outcome; whatever happens, nothing in `outside` may change.
fn unpack_beside(outside: &Path, tar: &[u8]) -> (PathBuf, Result<UnpackReport>) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dest = outside.parent().unwrap().join(format!("dest{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
    fs::create_dir(&dest).unwrap();
    let result = unpack_layer_tar(tar, &dest);
    (dest, result)
}

/// A directory outside the snapshot with a file in it, and a check that
/// neither changed.
struct Outside {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Outside {
    fn new() -> Outside {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("outside");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(dir.join("victim"), b"original").unwrap();
        Outside { _tmp: tmp, dir }
    }

    fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    fn assert_untouched(&self, case: &str) {
        let names: Vec<_> = fs::read_dir(&self.dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("victim")], "{case}: a file appeared outside");
        assert_eq!(fs::read(self.dir.join("victim")).unwrap(), b"original", "{case}: the victim changed");
        let meta = fs::metadata(self.dir.join("victim")).unwrap();
        assert_eq!(meta.nlink(), 1, "{case}: the victim got a hard link");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o644, "{case}: the victim's mode changed");
        let dir_mode = fs::metadata(&self.dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(dir_mode, 0o750, "{case}: the outside directory's mode changed");
    }
}

/// Expects the unpack to fail with an error naming `member`.
fn assert_refused(outside: &Outside, case: &str, tar: &[u8], member: &str) {
    let (_, result) = unpack_beside(&outside.dir, tar);
    let err = result.expect_err(case);
    assert!(matches!(err, StoreError::Unpack { .. }), "{case}: {err}");
    assert!(err.to_string().contains(&format!("{member:?}")), "{case}: the error names {member}: {err}");
    outside.assert_untouched(case);
}

#[test]
fn tar_slip_members_are_refused() {
    let outside = Outside::new();
    let up = "../outside/victim".to_string();
    let deep = "a/../../outside/victim".to_string();
    let rooted = "/../outside/victim".to_string();
    for name in [&up, &deep, &rooted] {
        let tar = tar_of(&[(name, EntryType::Regular, b"evil", None)]);
        assert_refused(&outside, name, &tar, name);
    }
    // Absolute paths land inside, as Docker places them.
    let (dest, result) = unpack_beside(&outside.dir, &tar_of(&[("/etc/abs", EntryType::Regular, b"in", None)]));
    result.unwrap();
    assert_eq!(fs::read(dest.join("etc/abs")).unwrap(), b"in");
}

#[test]
fn nothing_is_written_through_a_symlink_planted_by_an_earlier_member() {
    let outside = Outside::new();
    let target = outside.path();
    // A symlink to the outside, then a file below it.
    let tar = tar_of(&[
        ("escape", EntryType::Symlink, b"", Some(target)),
        ("escape/victim", EntryType::Regular, b"evil", None),
    ]);
    assert_refused(&outside, "file below a symlink", &tar, "escape/victim");
    // A relative symlink climbing out, then a directory below it.
    let tar = tar_of(&[
        ("up", EntryType::Symlink, b"", Some("../../../../../../../../..")),
        ("up/tmp/new/", EntryType::Directory, b"", None),
    ]);
    assert_refused(&outside, "directory below a relative symlink", &tar, "up/tmp/new/");
    // Whiteouts and opaque markers below a symlink.
    let tar = tar_of(&[
        ("s", EntryType::Symlink, b"", Some(target)),
        ("s/.wh.victim", EntryType::Regular, b"", None),
    ]);
    assert_refused(&outside, "whiteout below a symlink", &tar, "s/.wh.victim");
    let tar = tar_of(&[
        ("s", EntryType::Symlink, b"", Some(target)),
        ("s/.wh..wh..opq", EntryType::Regular, b"", None),
    ]);
    assert_refused(&outside, "opaque marker below a symlink", &tar, "s/.wh..wh..opq");
    // Replacing the symlink itself is fine: the new member takes its place.
    let (dest, result) = unpack_beside(
        &outside.dir,
        &tar_of(&[
            ("victim", EntryType::Symlink, b"", Some(&format!("{target}/victim"))),
            ("victim", EntryType::Regular, b"mine", None),
        ]),
    );
    result.unwrap();
    assert_eq!(fs::read(dest.join("victim")).unwrap(), b"mine");
    outside.assert_untouched("a file replacing a symlink");
}

#[test]
fn a_directory_replaced_by_a_symlink_in_a_later_member_is_never_followed() {
    let outside = Outside::new();
    let target = outside.path();
    let tar = tar_of(&[
        ("a/", EntryType::Directory, b"", None),
        ("a/inside", EntryType::Regular, b"x", None),
        ("a", EntryType::Symlink, b"", Some(target)),
        ("a/victim", EntryType::Regular, b"evil", None),
    ]);
    assert_refused(&outside, "swap then write", &tar, "a/victim");

    // With nothing written below it, the swap succeeds; but the directory's
    // mode (set at the end) must not land on what the symlink points at.
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(EntryType::Directory);
    dir.set_mode(0o777);
    dir.set_size(0);
    builder.append_data(&mut dir, "a/", &b""[..]).unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(EntryType::Symlink);
    link.set_size(0);
    builder.append_link(&mut link, "a", target).unwrap();
    let (dest, result) = unpack_beside(&outside.dir, &builder.into_inner().unwrap());
    result.unwrap();
    assert!(fs::symlink_metadata(dest.join("a")).unwrap().file_type().is_symlink());
    outside.assert_untouched("directory swapped for a symlink");
}

#[test]
fn hard_links_never_reach_outside() {
    let outside = Outside::new();
    let victim = format!("{}/victim", outside.path());
    // Straight out, and through a symlinked directory.
    assert_refused(&outside, "link up", &tar_of(&[("h", EntryType::Link, b"", Some("../outside/victim"))]), "h");
    let tar = tar_of(&[
        ("d", EntryType::Symlink, b"", Some(outside.path())),
        ("h", EntryType::Link, b"", Some("d/victim")),
    ]);
    assert_refused(&outside, "link through a symlinked directory", &tar, "h");
    // Symlink, then a hard link to it: the link is to the symlink itself, and
    // writing the hard link's name later replaces it instead of writing through.
    let tar = tar_of(&[
        ("s", EntryType::Symlink, b"", Some(&victim)),
        ("h", EntryType::Link, b"", Some("s")),
        ("h", EntryType::Regular, b"evil", None),
    ]);
    let (dest, result) = unpack_beside(&outside.dir, &tar);
    result.unwrap();
    assert!(fs::symlink_metadata(dest.join("s")).unwrap().file_type().is_symlink());
    assert_eq!(fs::read(dest.join("h")).unwrap(), b"evil");
    outside.assert_untouched("symlink then hard link");
    let tar = tar_of(&[
        ("s", EntryType::Symlink, b"", Some(&victim)),
        ("h", EntryType::Link, b"", Some("s")),
    ]);
    let (dest, result) = unpack_beside(&outside.dir, &tar);
    result.unwrap();
    let h = fs::symlink_metadata(dest.join("h")).unwrap();
    assert!(h.file_type().is_symlink(), "a hard link to a symlink is a symlink");
    outside.assert_untouched("hard link to a symlink");
    // A hard link to something not unpacked, or to a directory, is refused.
    assert_refused(&outside, "dangling", &tar_of(&[("h", EntryType::Link, b"", Some("nothing"))]), "h");
    let tar = tar_of(&[("d/", EntryType::Directory, b"", None), ("h", EntryType::Link, b"", Some("d"))]);
    assert_refused(&outside, "to a directory", &tar, "h");
}

#[test]
fn whiteouts_setuid_bits_and_xattrs_are_data() {
    let outside = Outside::new();
    let mut builder = tar::Builder::new(Vec::new());
    let mut file = tar::Header::new_ustar();
    file.set_entry_type(EntryType::Regular);
    file.set_mode(0o4755);
    file.set_size(2);
    builder
        .append_pax_extensions([("SCHILY.xattr.user.note", &b"kept"[..])])
        .unwrap();
    builder.append_data(&mut file, "bin/su", &b"su"[..]).unwrap();
    for (name, kind) in [("etc/old", EntryType::Regular), ("etc/.wh.old", EntryType::Regular), ("var/.wh..wh..opq", EntryType::Regular)] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(0);
        builder.append_data(&mut h, name, &b""[..]).unwrap();
    }
    let (dest, result) = unpack_beside(&outside.dir, &builder.into_inner().unwrap());
    result.unwrap();
    let su = fs::metadata(dest.join("bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(crate::fs::xattr::get(&dest.join("bin/su"), "user.note").unwrap().as_deref(), Some(&b"kept"[..]));
    let old = fs::symlink_metadata(dest.join("etc/old")).unwrap();
    assert!(old.file_type().is_char_device() && old.rdev() == 0, "the whiteout replaced the file");
    assert_eq!(crate::fs::xattr::get(&dest.join("var"), "user.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));
    outside.assert_untouched("metadata");
}

/// Device nodes: made where permitted, skipped with a warning in a user
/// namespace. The test runs itself again under `unshare --user` for that.
#[test]
fn device_nodes_are_skipped_where_not_permitted() {
    const CHILD: &str = "RBUILD_UNPACK_TEST_IN_USERNS";
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind) in [("dev/null", EntryType::Char), ("dev/fifo", EntryType::Fifo)] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o666);
        h.set_size(0);
        // 1:3, a real device (0:0 is a whiteout, which anyone may make).
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        builder.append_data(&mut h, name, &b""[..]).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let dest = tempfile::tempdir().unwrap();
    if let Some(dir) = std::env::var_os(CHILD) {
        let report = unpack_layer_tar(&tar[..], Path::new(&dir)).unwrap();
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        assert!(report.warnings[0].contains("dev/null"), "{:?}", report.warnings);
        return;
    }
    let report = unpack_layer_tar(&tar[..], dest.path()).unwrap();
    assert!(report.warnings.is_empty(), "this test runs as root: {:?}", report.warnings);
    let null = fs::symlink_metadata(dest.path().join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device() && null.rdev() == rustix::fs::makedev(1, 3));

    let in_userns = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "content::unpack::tests::device_nodes_are_skipped_where_not_permitted", "--test-threads=1"])
        .env(CHILD, in_userns.path())
        .status()
        .expect("running unshare (util-linux) to test unpacking in a user namespace");
    assert!(status.success(), "the unpack in a user namespace failed: {status}");
    assert!(!in_userns.path().join("dev/null").exists(), "the device node was skipped");
    assert!(fs::symlink_metadata(in_userns.path().join("dev/fifo")).unwrap().file_type().is_fifo());
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
