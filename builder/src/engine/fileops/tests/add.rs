//! ADD: archive detection by content, formats, ownership and confinement.

use std::io::Write;

use super::*;
use crate::engine::fileops::testutil::{listing, mode, mtime, owner, Layers};
use crate::engine::fileops::FileOpError;

/// One member of a test archive.
enum Member<'a> {
    Dir(&'a str),
    File(&'a str, &'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// A tar archive whose member names are written verbatim (`..` included),
/// owned by 1000:1000, mtime 1234567.
fn tar(members: &[Member<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for member in members {
        let mut header = tar::Header::new_gnu();
        let (name, data): (&str, &[u8]) = match member {
            Member::Dir(name) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o750);
                (name, b"")
            }
            Member::File(name, content) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o640);
                (name, content.as_bytes())
            }
            Member::Symlink(name, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_link_name(target).unwrap();
                header.set_mode(0o777);
                (name, b"")
            }
            Member::Hardlink(name, target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
                (name, b"")
            }
        };
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_uid(1000);
        header.set_gid(1000);
        header.set_mtime(1_234_567);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn sample() -> Vec<u8> {
    tar(&[
        Member::Dir("pkg/"),
        Member::File("pkg/a.txt", "A"),
        Member::Symlink("pkg/l", "a.txt"),
    ])
}

fn add(name: &str, dest: &str) -> CopyOp {
    let mut req = request(&[name], dest);
    req.is_add = true;
    req
}

#[test]
fn archives_are_extracted_whatever_the_compression() {
    let plain = sample();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&plain).unwrap();
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&plain).unwrap();
    let zst = zstd::encode_all(&plain[..], 1).unwrap();
    let formats = [
        ("plain.tar", plain.clone()),
        ("x.tgz", gz.finish().unwrap()),
        ("x.tbz", bz.finish().unwrap()),
        ("x.txz", xz.finish().unwrap()),
        // The name does not matter, the content does.
        ("archive.bin", zst),
    ];
    for (name, bytes) in formats {
        let ctx = Ctx::new();
        ctx.bytes(name, &bytes);
        let (out, r) = copy_ctx(&add(name, "/opt"), &ctx, &Rootfs::empty());
        assert_eq!(r.unwrap().archives, 1, "{name}");
        assert_eq!(
            listing(out.path()),
            vec!["opt/", "opt/pkg/", "opt/pkg/a.txt", "opt/pkg/l"],
            "{name}"
        );
        let a = out.path().join("opt/pkg/a.txt");
        assert_eq!(
            (read(&a), mode(&a), owner(&a), mtime(&a)),
            ("A".into(), 0o640, (1000, 1000), 1_234_567)
        );
        let pkg = out.path().join("opt/pkg");
        assert_eq!((mode(&pkg), mtime(&pkg)), (0o750, 1_234_567));
    }
}

#[test]
fn non_archives_and_copy_are_not_extracted() {
    let ctx = Ctx::new();
    ctx.file("notes.tar.gz", "just text, not gzip");
    ctx.bytes("real.tar", &sample());
    let (out, r) = copy_ctx(&add("notes.tar.gz", "/d/"), &ctx, &Rootfs::empty());
    assert_eq!(r.unwrap().archives, 0);
    assert_eq!(listing(out.path()), vec!["d/", "d/notes.tar.gz"]);
    let (out, r) = copy_ctx(&request(&["real.tar"], "/d/"), &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(listing(out.path()), vec!["d/", "d/real.tar"]);
}

#[test]
fn chown_applies_to_extracted_members() {
    let ctx = Ctx::new();
    ctx.bytes("a.tar", &sample());
    let mut req = add("a.tar", "/");
    req.chown = Some("7:7".into());
    let (out, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(owner(&out.path().join("pkg/a.txt")), (7, 7));
    assert_eq!(owner(&out.path().join("pkg")), (7, 7));
}

#[test]
fn absolute_member_names_stay_below_the_destination() {
    let ctx = Ctx::new();
    ctx.bytes(
        "a.tar",
        &tar(&[
            Member::File("/etc/passwd", "x"),
            Member::File("./b/../c", "y"),
        ]),
    );
    let (out, r) = copy_ctx(&add("a.tar", "/dest"), &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(
        listing(out.path()),
        vec!["dest/", "dest/c", "dest/etc/", "dest/etc/passwd"]
    );
}

#[test]
fn dotdot_members_are_refused() {
    let ctx = Ctx::new();
    ctx.bytes(
        "evil.tar",
        &tar(&[Member::File("ok", ""), Member::File("a/../../evil", "x")]),
    );
    let (_, r) = copy_ctx(&add("evil.tar", "/dest"), &ctx, &Rootfs::empty());
    let err = r.unwrap_err();
    assert!(matches!(err, FileOpError::ArchiveMember { .. }));
    assert_eq!(
        err.to_string(),
        "archive evil.tar: member \"a/../../evil\" escapes the destination with '..'"
    );
}

#[test]
fn members_through_symlinks_out_of_the_destination_are_refused() {
    let ctx = Ctx::new();
    ctx.bytes(
        "evil.tar",
        &tar(&[
            Member::Symlink("up", "../../.."),
            Member::File("up/etc/cron", "x"),
        ]),
    );
    let (_, r) = copy_ctx(&add("evil.tar", "/dest"), &ctx, &Rootfs::empty());
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains("\"up/etc/cron\" leads outside the destination"),
        "{err}"
    );
    ctx.bytes(
        "abs.tar",
        &tar(&[
            Member::Symlink("etc", "/etc"),
            Member::File("etc/passwd", "x"),
        ]),
    );
    let (_, r) = copy_ctx(&add("abs.tar", "/dest"), &ctx, &Rootfs::empty());
    assert!(matches!(r, Err(FileOpError::ArchiveMember { .. })));
    // The same through a link of the image inside the destination.
    let image = Layers::new(1);
    image.symlink(0, "dest/sys", "/etc");
    ctx.bytes("img.tar", &tar(&[Member::File("sys/passwd", "x")]));
    let (_, r) = copy_ctx(&add("img.tar", "/dest"), &ctx, &image.rootfs());
    assert!(matches!(r, Err(FileOpError::ArchiveMember { .. })));
    // A link that stays inside is fine.
    ctx.bytes(
        "ok.tar",
        &tar(&[
            Member::Dir("real/"),
            Member::Symlink("alias", "real"),
            Member::File("alias/f", "x"),
        ]),
    );
    let (out, r) = copy_ctx(&add("ok.tar", "/dest"), &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(
        listing(out.path()),
        vec!["dest/", "dest/alias", "dest/real/", "dest/real/f"]
    );
}

#[test]
fn image_symlinks_at_the_destination_are_resolved_inside_the_image() {
    let ctx = Ctx::new();
    ctx.bytes("a.tar", &sample());
    let image = Layers::new(1);
    image.symlink(0, "opt", "/../../srv");
    let (out, r) = copy_ctx(&add("a.tar", "/opt"), &ctx, &image.rootfs());
    r.unwrap();
    assert_eq!(
        listing(out.path()),
        vec!["srv/", "srv/pkg/", "srv/pkg/a.txt", "srv/pkg/l"]
    );
}

#[test]
fn hard_links_and_replacements_inside_the_archive() {
    let ctx = Ctx::new();
    ctx.bytes(
        "a.tar",
        &tar(&[
            Member::File("x", "1"),
            Member::Hardlink("y", "x"),
            Member::Dir("z/"),
            Member::File("z", "now a file"),
        ]),
    );
    let (out, r) = copy_ctx(&add("a.tar", "/d"), &ctx, &Rootfs::empty());
    r.unwrap();
    use std::os::unix::fs::MetadataExt;
    let x = std::fs::metadata(out.path().join("d/x")).unwrap();
    let y = std::fs::metadata(out.path().join("d/y")).unwrap();
    assert_eq!(x.ino(), y.ino());
    assert_eq!(read(&out.path().join("d/z")), "now a file");
    ctx.bytes(
        "bad.tar",
        &tar(&[Member::Hardlink("y", "../../etc/shadow")]),
    );
    let (_, r) = copy_ctx(&add("bad.tar", "/d"), &ctx, &Rootfs::empty());
    assert!(matches!(r, Err(FileOpError::ArchiveMember { .. })));
}

/// `ADD --unpack=false` copies a local archive as the file it is, as BuildKit does; `--unpack=true`
/// and no flag extract it.
#[test]
fn unpack_false_copies_the_archive_as_a_file() {
    let bytes = sample();
    for (unpack, expected) in [
        (Some(false), vec!["opt/", "opt/x.tar"]),
        (Some(true), vec!["opt/", "opt/pkg/", "opt/pkg/a.txt", "opt/pkg/l"]),
        (None, vec!["opt/", "opt/pkg/", "opt/pkg/a.txt", "opt/pkg/l"]),
    ] {
        let ctx = Ctx::new();
        ctx.bytes("x.tar", &bytes);
        let mut req = add("x.tar", "/opt/");
        req.unpack = unpack;
        let (out, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
        r.unwrap();
        assert_eq!(listing(out.path()), expected, "--unpack={unpack:?}");
        if unpack == Some(false) {
            assert_eq!(std::fs::read(out.path().join("opt/x.tar")).unwrap(), bytes);
        }
    }
}
