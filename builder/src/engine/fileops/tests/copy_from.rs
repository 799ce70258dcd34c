//! COPY --from another image: owners kept, the merged view of its layers read.

use super::*;
use crate::engine::fileops::testutil::{listing, owner, Layers};
use crate::engine::fileops::{copy_into, FileOpError};

fn copy_img(req: &CopyOp, source: &Rootfs, target: &Rootfs) -> (TempDir, Result<CopyStats>) {
    let out = TempDir::new().unwrap();
    let result = copy_into(req.into(), CopyFrom::Image(source), target, out.path());
    (out, result)
}

#[test]
fn owners_are_kept_unless_chown_is_given() {
    let src = Layers::new(1);
    let f = src.file(0, "app/bin/tool", "x");
    std::os::unix::fs::chown(&f, Some(1000), Some(1000)).unwrap();
    let (out, r) = copy_img(
        &request(&["/app"], "/opt/app"),
        &src.rootfs(),
        &Rootfs::empty(),
    );
    r.unwrap();
    assert_eq!(owner(&out.path().join("opt/app/bin/tool")), (1000, 1000));
    // The destination directory the copy creates belongs to root.
    assert_eq!(owner(&out.path().join("opt/app")), (0, 0));
    let mut req = request(&["/app"], "/opt/app");
    req.chown = Some("5:6".into());
    let (out, r) = copy_img(&req, &src.rootfs(), &Rootfs::empty());
    r.unwrap();
    assert_eq!(owner(&out.path().join("opt/app/bin/tool")), (5, 6));
    assert_eq!(owner(&out.path().join("opt/app")), (5, 6));
}

#[test]
fn whiteouts_and_opaque_directories_of_the_source_apply() {
    let src = Layers::new(2);
    src.file(0, "data/gone.txt", "");
    src.file(0, "data/kept.txt", "");
    src.file(0, "cache/old", "");
    src.whiteout(1, "data/gone.txt");
    src.opaque(1, "cache");
    src.file(1, "cache/new", "");
    let (out, r) = copy_img(&request(&["/"], "/copy/"), &src.rootfs(), &Rootfs::empty());
    r.unwrap();
    assert_eq!(
        listing(out.path()),
        vec![
            "copy/",
            "copy/cache/",
            "copy/cache/new",
            "copy/data/",
            "copy/data/kept.txt"
        ]
    );
    let (_, r) = copy_img(
        &request(&["/data/gone.txt"], "/x"),
        &src.rootfs(),
        &Rootfs::empty(),
    );
    assert!(matches!(r, Err(FileOpError::SourceNotFound { .. })));
}

#[test]
fn source_paths_resolve_through_the_image_links() {
    let src = Layers::new(2);
    src.file(0, "usr/lib/libx.so", "elf");
    src.symlink(1, "lib", "usr/lib");
    src.symlink(1, "up", "/../../../usr/lib/libx.so");
    let (out, r) = copy_img(
        &request(&["/lib/libx.so", "/up"], "/d/"),
        &src.rootfs(),
        &Rootfs::empty(),
    );
    r.unwrap();
    assert_eq!(listing(out.path()), vec!["d/", "d/libx.so", "d/up"]);
    assert_eq!(read(&out.path().join("d/up")), "elf");
}
