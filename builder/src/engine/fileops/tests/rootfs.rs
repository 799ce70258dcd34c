//! The merged view of a snapshot stack: stat, read, list, materialize.

use super::*;
use crate::engine::fileops::testutil::{listing, owner, Layers};
use crate::engine::fileops::{EntryKind, FileOpError};

fn stack() -> Layers {
    let l = Layers::new(3);
    l.file(0, "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    l.file(0, "etc/old.conf", "");
    l.file(0, "var/cache/a", "");
    l.file(0, "var/cache/b", "");
    l.dir(0, "gone");
    l.file(0, "gone/inside", "");
    l.whiteout(1, "etc/old.conf");
    l.opaque(1, "var/cache");
    l.file(1, "var/cache/c", "");
    l.whiteout(2, "gone");
    l.symlink(2, "bin", "usr/bin");
    l.file(2, "usr/bin/sh", "#!");
    l
}

#[test]
fn stat_honours_whiteouts_and_links() {
    let l = stack();
    let fs = l.rootfs();
    assert!(fs.stat("/etc/old.conf").unwrap().is_none());
    assert!(fs.stat("/gone").unwrap().is_none());
    assert!(fs.stat("/gone/inside").unwrap().is_none());
    let bin = fs.stat("/bin").unwrap().unwrap();
    assert_eq!(
        (bin.kind, bin.link_target.as_deref()),
        (EntryKind::Symlink, Some("usr/bin"))
    );
    let sh = fs.stat("/bin/sh").unwrap().unwrap();
    assert_eq!((sh.kind, sh.size), (EntryKind::File, 2));
    assert_eq!(fs.resolve("/bin/sh", true).unwrap(), "/usr/bin/sh");
}

#[test]
fn read_dir_merges_layers() {
    let l = stack();
    let fs = l.rootfs();
    assert_eq!(fs.read_dir("/").unwrap(), vec!["bin", "etc", "usr", "var"]);
    assert_eq!(fs.read_dir("/etc").unwrap(), vec!["passwd"]);
    assert_eq!(fs.read_dir("/var/cache").unwrap(), vec!["c"]);
    assert!(matches!(
        fs.read_dir("/gone"),
        Err(FileOpError::NotFound { .. })
    ));
    assert!(matches!(
        fs.read_dir("/etc/passwd"),
        Err(FileOpError::NotADirectory { .. })
    ));
}

#[test]
fn read_file_follows_links_and_reports_absence() {
    let l = stack();
    let fs = l.rootfs();
    assert_eq!(fs.read_file("/bin/sh").unwrap().unwrap(), b"#!");
    assert!(fs.read_file("/etc/old.conf").unwrap().is_none());
    assert!(matches!(
        fs.read_file("/etc"),
        Err(FileOpError::NotAFile { .. })
    ));
    assert!(Rootfs::empty().read_file("/etc/passwd").unwrap().is_none());
}

#[test]
fn materialize_writes_the_merged_tree() {
    let l = stack();
    let f = l.path(1, "var/cache/c");
    std::os::unix::fs::chown(&f, Some(3), Some(4)).unwrap();
    std::fs::hard_link(l.path(2, "usr/bin/sh"), l.path(2, "usr/bin/bash")).unwrap();
    let dest = TempDir::new().unwrap();
    l.rootfs().materialize(dest.path()).unwrap();
    assert_eq!(
        listing(dest.path()),
        vec![
            "bin",
            "etc/",
            "etc/passwd",
            "usr/",
            "usr/bin/",
            "usr/bin/bash",
            "usr/bin/sh",
            "var/",
            "var/cache/",
            "var/cache/c"
        ]
    );
    assert_eq!(owner(&dest.path().join("var/cache/c")), (3, 4));
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(dest.path().join("usr/bin/sh")).unwrap();
    let b = std::fs::metadata(dest.path().join("usr/bin/bash")).unwrap();
    assert_eq!(a.ino(), b.ino());
}
