//! COPY from the build context: destination rules, metadata, filters, confinement.

use std::os::unix::fs::MetadataExt;

use super::*;
use crate::engine::fileops::testutil::{listing, mode, mtime, owner, set_mtime, Layers};
use crate::engine::fileops::FileOpError;

#[test]
fn single_file_becomes_the_destination_and_keeps_mode_and_mtime() {
    let ctx = Ctx::new();
    let f = ctx.file_mode("run.sh", "echo hi", 0o751);
    set_mtime(&f, 1_000_000);
    std::os::unix::fs::chown(&f, Some(1234), Some(4321)).unwrap();
    let (out, stats) = copy_ctx(
        &request(&["run.sh"], "/usr/bin/start"),
        &ctx,
        &Rootfs::empty(),
    );
    let stats = stats.unwrap();
    assert_eq!((stats.files, stats.bytes), (1, 7));
    assert_eq!(
        listing(out.path()),
        vec!["usr/", "usr/bin/", "usr/bin/start"]
    );
    let copied = out.path().join("usr/bin/start");
    assert_eq!(read(&copied), "echo hi");
    assert_eq!(mode(&copied), 0o751);
    assert_eq!(mtime(&copied), 1_000_000);
    // Context files belong to root in the image, whoever owns them on the host.
    assert_eq!(owner(&copied), (0, 0));
    assert_eq!(mode(&out.path().join("usr/bin")), 0o755);
}

#[test]
fn trailing_slash_or_several_sources_make_a_directory() {
    let ctx = Ctx::new();
    ctx.file("a.txt", "a");
    ctx.file("b.txt", "b");
    let (out, r) = copy_ctx(&request(&["a.txt"], "/dst/"), &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(listing(out.path()), vec!["dst/", "dst/a.txt"]);
    let (out, r) = copy_ctx(
        &request(&["a.txt", "b.txt"], "/dst"),
        &ctx,
        &Rootfs::empty(),
    );
    r.unwrap();
    assert_eq!(listing(out.path()), vec!["dst/", "dst/a.txt", "dst/b.txt"]);
}

#[test]
fn existing_directory_receives_the_file_and_is_carried_with_its_metadata() {
    let ctx = Ctx::new();
    ctx.file("a.txt", "a");
    let image = Layers::new(1);
    let dir = image.dir(0, "opt/app");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o710)).unwrap();
    std::os::unix::fs::chown(&dir, Some(7), Some(8)).unwrap();
    set_mtime(&dir, 5_000);
    let (out, r) = copy_ctx(&request(&["a.txt"], "/opt/app"), &ctx, &image.rootfs());
    r.unwrap();
    assert_eq!(
        listing(out.path()),
        vec!["opt/", "opt/app/", "opt/app/a.txt"]
    );
    let carried = out.path().join("opt/app");
    assert_eq!(
        (mode(&carried), owner(&carried), mtime(&carried)),
        (0o710, (7, 8), 5_000)
    );
}

#[test]
fn relative_destination_is_taken_from_the_workdir() {
    let ctx = Ctx::new();
    ctx.file("a.txt", "a");
    let mut req = request(&["a.txt"], "sub/");
    req.workdir = "/work".into();
    let (out, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(
        listing(out.path()),
        vec!["work/", "work/sub/", "work/sub/a.txt"]
    );
    let mut req = request(&["a.txt"], ".");
    req.workdir = "/work".into();
    let (out, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(listing(out.path()), vec!["work/", "work/a.txt"]);
}

#[test]
fn directory_source_copies_its_contents_with_links_kept() {
    let ctx = Ctx::new();
    ctx.file("src/main.rs", "fn main() {}");
    ctx.file("src/util/mod.rs", "");
    ctx.symlink("src/link", "/etc/passwd");
    ctx.symlink("src/rel", "main.rs");
    std::fs::hard_link(ctx.path("src/main.rs"), ctx.path("src/hard.rs")).unwrap();
    let (out, r) = copy_ctx(&request(&["src"], "/app"), &ctx, &Rootfs::empty());
    let stats = r.unwrap();
    assert_eq!(
        listing(out.path()),
        vec![
            "app/",
            "app/hard.rs",
            "app/link",
            "app/main.rs",
            "app/rel",
            "app/util/",
            "app/util/mod.rs"
        ]
    );
    assert_eq!(
        std::fs::read_link(out.path().join("app/link"))
            .unwrap()
            .to_str(),
        Some("/etc/passwd")
    );
    assert_eq!(
        std::fs::read_link(out.path().join("app/rel"))
            .unwrap()
            .to_str(),
        Some("main.rs")
    );
    let a = std::fs::metadata(out.path().join("app/main.rs")).unwrap();
    let b = std::fs::metadata(out.path().join("app/hard.rs")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!((stats.files, stats.hardlinks, stats.symlinks), (2, 1, 2));
}

#[test]
fn top_level_destination_directory_takes_only_the_source_times() {
    let ctx = Ctx::new();
    let src = ctx.dir("src");
    ctx.file("src/f", "");
    set_mtime(&src, 4_000);
    let image = Layers::new(1);
    let app = image.dir(0, "app");
    std::fs::set_permissions(&app, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let (out, r) = copy_ctx(&request(&["src"], "/app"), &ctx, &image.rootfs());
    r.unwrap();
    let app = out.path().join("app");
    assert_eq!((mode(&app), mtime(&app)), (0o700, 4_000));
}

#[test]
fn wildcards_select_entries_and_an_empty_match_copies_nothing() {
    let ctx = Ctx::new();
    ctx.file("a.txt", "");
    ctx.file("b.txt", "");
    ctx.file("c.md", "");
    ctx.file("d1/x", "");
    ctx.file("d2/y", "");
    let (out, r) = copy_ctx(&request(&["*.txt"], "/t/"), &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(listing(out.path()), vec!["t/", "t/a.txt", "t/b.txt"]);
    // Matched directories are copied by contents.
    let (out, r) = copy_ctx(&request(&["d*"], "/t/"), &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(listing(out.path()), vec!["t/", "t/x", "t/y"]);
    // `COPY requirements*.txt ./` must work without a match.
    let (out, r) = copy_ctx(&request(&["*.none", "c.md"], "/t/"), &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(listing(out.path()), vec!["t/", "t/c.md"]);
    let (_, r) = copy_ctx(&request(&["missing/*.txt"], "/t/"), &ctx, &Rootfs::empty());
    assert_eq!(
        r.unwrap_err().to_string(),
        "source \"missing/*.txt\" not found"
    );
}

#[test]
fn missing_source_is_an_error_naming_it() {
    let ctx = Ctx::new();
    let (_, r) = copy_ctx(&request(&["nope.txt"], "/"), &ctx, &Rootfs::empty());
    assert_eq!(r.unwrap_err().to_string(), "source \"nope.txt\" not found");
}

#[test]
fn dockerignored_files_are_invisible() {
    let ctx = Ctx::new();
    ctx.file(".dockerignore", "secret.txt\n**/*.log\nDockerfile\n");
    ctx.file("Dockerfile", "FROM scratch");
    ctx.file("secret.txt", "s");
    ctx.file("app/run.log", "");
    ctx.file("app/main.c", "");
    ctx.file("keep.txt", "");
    let (out, r) = copy_ctx(&request(&["."], "/"), &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(
        listing(out.path()),
        vec![".dockerignore", "app/", "app/main.c", "keep.txt"]
    );
    let (out, r) = copy_ctx(&request(&["*.txt"], "/w/"), &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(listing(out.path()), vec!["w/", "w/keep.txt"]);
    let (_, r) = copy_ctx(&request(&["secret.txt"], "/"), &ctx, &Rootfs::empty());
    // Not visible, and the error says why.
    assert!(matches!(&r, Err(FileOpError::SourceIgnored { pattern, .. }) if pattern == "secret.txt"), "{:?}", r.err());
    // A link to an excluded file leads nowhere.
    ctx.symlink("alias", "secret.txt");
    let (_, r) = copy_ctx(&request(&["alias"], "/"), &ctx, &Rootfs::empty());
    assert!(matches!(r, Err(FileOpError::SourceNotFound { .. })));
}

#[test]
fn source_links_are_followed_inside_the_context_only() {
    let ctx = Ctx::new();
    ctx.file("real.txt", "inside");
    ctx.symlink("ok", "real.txt");
    ctx.symlink("evil", "../../../../../../etc/hostname");
    let (out, r) = copy_ctx(&request(&["ok"], "/d/"), &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(read(&out.path().join("d/ok")), "inside");
    let (_, r) = copy_ctx(&request(&["evil"], "/d/"), &ctx, &Rootfs::empty());
    assert_eq!(r.unwrap_err().to_string(), "source \"evil\" not found");
}

#[test]
fn chown_resolves_names_in_the_target_image() {
    let ctx = Ctx::new();
    ctx.file("f", "");
    ctx.file("d/g", "");
    let image = Layers::new(1);
    image.file(0, "etc/passwd", "app:x:1000:1000::/:/bin/sh\n");
    image.file(0, "etc/group", "web:x:33:\n");
    let mut req = request(&["f", "d"], "/srv/");
    req.chown = Some("app:web".into());
    let (out, r) = copy_ctx(&req, &ctx, &image.rootfs());
    r.unwrap();
    for p in ["srv", "srv/f", "srv/g"] {
        assert_eq!(owner(&out.path().join(p)), (1000, 33), "{p}");
    }
    req.chown = Some("ghost".into());
    let (_, r) = copy_ctx(&req, &ctx, &image.rootfs());
    assert_eq!(
        r.unwrap_err().to_string(),
        "unknown user \"ghost\": not found in /etc/passwd"
    );
}

#[test]
fn chmod_applies_to_files_directories_and_created_parents() {
    let ctx = Ctx::new();
    ctx.file_mode("d/f", "", 0o600);
    ctx.dir("d/sub");
    let mut req = request(&["d"], "/a/b");
    req.chmod = Some("0750".into());
    let (out, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    r.unwrap();
    for p in ["a", "a/b", "a/b/f", "a/b/sub"] {
        assert_eq!(mode(&out.path().join(p)), 0o750, "{p}");
    }
    req.chmod = Some("go-rwx,u+x".into());
    let (out, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(mode(&out.path().join("a/b/f")), 0o700);
    assert_eq!(mode(&out.path().join("a")), 0o755);
    req.chmod = Some("999".into());
    let (_, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    assert!(matches!(r, Err(FileOpError::InvalidChmod { .. })));
}

#[test]
fn destination_symlinks_never_lead_out_of_the_layer() {
    let ctx = Ctx::new();
    ctx.file("f", "data");
    ctx.file("d/g", "data");
    let image = Layers::new(2);
    // A host directory the links name: on the host they would lead there.
    let victim = tempfile::TempDir::new().unwrap();
    let victim_path = victim.path().to_str().unwrap().to_owned();
    image.symlink(0, "app", "/../../etc");
    image.symlink(1, "abs", "/tmp/../../../../");
    image.symlink(0, "file", "../../../victim");
    image.symlink(0, "host", &victim_path);
    let (out, r) = copy_ctx(&request(&["f"], "/app/"), &ctx, &image.rootfs());
    r.unwrap();
    assert_eq!(listing(out.path()), vec!["etc/", "etc/f"]);
    let (out, r) = copy_ctx(&request(&["f"], "/host/"), &ctx, &image.rootfs());
    r.unwrap();
    assert!(out
        .path()
        .join(victim_path.trim_start_matches('/'))
        .join("f")
        .is_file());
    assert!(listing(victim.path()).is_empty());
    let (out, r) = copy_ctx(&request(&["d"], "/abs/x"), &ctx, &image.rootfs());
    r.unwrap();
    assert_eq!(listing(out.path()), vec!["x/", "x/g"]);
    // A file destination that is a dangling link writes the link's target,
    // inside the image.
    let (out, r) = copy_ctx(&request(&["f"], "/file"), &ctx, &image.rootfs());
    r.unwrap();
    assert_eq!(listing(out.path()), vec!["victim"]);
}

#[test]
fn type_clashes_are_errors() {
    let ctx = Ctx::new();
    ctx.file("d/x", "");
    ctx.dir("e/x");
    let image = Layers::new(1);
    image.file(0, "target", "");
    image.dir(0, "t2/x");
    let (_, r) = copy_ctx(&request(&["d"], "/target"), &ctx, &image.rootfs());
    assert_eq!(
        r.unwrap_err().to_string(),
        "/target exists and is not a directory"
    );
    let (_, r) = copy_ctx(&request(&["d"], "/t2"), &ctx, &image.rootfs());
    assert_eq!(
        r.unwrap_err().to_string(),
        "cannot replace directory /t2/x with a file"
    );
    image.file(0, "t3/x", "");
    let (_, r) = copy_ctx(&request(&["e"], "/t3"), &ctx, &image.rootfs());
    assert!(matches!(r, Err(FileOpError::NotADirectory { .. })));
}

#[test]
fn a_file_replaces_a_lower_file_in_the_new_layer_only() {
    let ctx = Ctx::new();
    ctx.file("conf", "new");
    let image = Layers::new(1);
    let old = image.file(0, "etc/conf", "old");
    let (out, r) = copy_ctx(&request(&["conf"], "/etc/conf"), &ctx, &image.rootfs());
    r.unwrap();
    assert_eq!(read(&out.path().join("etc/conf")), "new");
    assert_eq!(read(&old), "old");
}

#[test]
fn exclude_patterns_are_relative_to_each_source() {
    let ctx = Ctx::new();
    ctx.file("dir1/a.png", "");
    ctx.file("dir1/b.txt", "");
    ctx.file("dir2/c.png", "");
    ctx.file("dir2/keep/d.png", "");
    let mut req = request(&["dir*"], "/out/");
    req.exclude = vec!["*.png".into(), "!keep/d.png".into()];
    let (out, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(
        listing(out.path()),
        vec!["out/", "out/b.txt", "out/keep/", "out/keep/d.png"]
    );
    req.sources = vec![".".into()];
    req.exclude = vec!["*/*.png".into()];
    let (out, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(
        listing(out.path()),
        vec![
            "out/",
            "out/dir1/",
            "out/dir1/b.txt",
            "out/dir2/",
            "out/dir2/keep/",
            "out/dir2/keep/d.png"
        ]
    );
}

#[test]
fn parents_keep_the_source_directories() {
    let ctx = Ctx::new();
    let a = ctx.dir("a");
    ctx.file("a/b/c.txt", "");
    ctx.file("a/b/d.txt", "");
    ctx.file("x/y/c.txt", "");
    std::fs::set_permissions(&a, std::os::unix::fs::PermissionsExt::from_mode(0o751)).unwrap();
    let mut req = request(&["a/b/c.txt", "x/*/c.txt"], "/dst/");
    req.parents = true;
    let (out, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(
        listing(out.path()),
        vec![
            "dst/",
            "dst/a/",
            "dst/a/b/",
            "dst/a/b/c.txt",
            "dst/x/",
            "dst/x/y/",
            "dst/x/y/c.txt"
        ]
    );
    // Parent directories are copies of the source ones.
    assert_eq!(mode(&out.path().join("dst/a")), 0o751);
    req.sources = vec!["a/./b/c.txt".into()];
    let (out, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(listing(out.path()), vec!["dst/", "dst/b/", "dst/b/c.txt"]);
    req.sources = vec!["a/none.txt".into()];
    let (_, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    assert!(matches!(r, Err(FileOpError::SourceNotFound { .. })));
}

#[test]
fn heredoc_sources_are_written_as_files() {
    let ctx = Ctx::new();
    let mut req = request(&[], "/etc/motd");
    req.inline_files = vec![InlineFile { name: "EOF".into(), content: "hello\n".into() }];
    let (out, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(read(&out.path().join("etc/motd")), "hello\n");
    assert_eq!(mode(&out.path().join("etc/motd")), 0o644);
    req.dest = "/etc/".into();
    req.chmod = Some("0600".into());
    let (out, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    r.unwrap();
    assert_eq!(mode(&out.path().join("etc/EOF")), 0o600);
}

#[test]
fn xattrs_are_copied_but_overlay_markers_are_not() {
    let ctx = Ctx::new();
    let f = ctx.file("d/f", "");
    let d = ctx.path("d");
    rustix::fs::lsetxattr(&f, "user.note", b"kept", rustix::fs::XattrFlags::empty()).unwrap();
    rustix::fs::lsetxattr(
        &d,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    let (out, r) = copy_ctx(&request(&["d"], "/d"), &ctx, &Rootfs::empty());
    r.unwrap();
    let mut buf = [0u8; 16];
    let n = rustix::fs::lgetxattr(out.path().join("d/f"), "user.note", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"kept");
    assert!(
        rustix::fs::lgetxattr(out.path().join("d"), "trusted.overlay.opaque", &mut buf[..])
            .is_err()
    );
}

#[test]
fn remote_sources_are_refused() {
    let ctx = Ctx::new();
    let mut req = request(&["https://example.com/a.tar.gz"], "/");
    req.is_add = true;
    let (_, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    let err = r.unwrap_err();
    assert!(matches!(err, FileOpError::Unsupported { .. }));
    assert_eq!(
        err.to_string(),
        "ADD from a URL (https://example.com/a.tar.gz) is not supported yet"
    );
    req.sources = vec!["git@github.com:moby/buildkit.git".into()];
    let (_, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    assert!(r.unwrap_err().to_string().contains("git repository"));
    req.is_add = false;
    req.sources = vec!["http://example.com/x".into()];
    let (_, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    assert!(matches!(r, Err(FileOpError::InvalidCopySource { .. })));
}

#[test]
fn a_rerun_links_the_files_its_earlier_result_holds_unchanged() {
    let ctx = Ctx::new();
    for (name, content) in [("same", "kept"), ("edited", "before"), ("chmodded", "x"), ("touched", "t")] {
        set_mtime(&ctx.file(&format!("src/{name}"), content), 1_000);
    }
    // Two identical files: the earlier layer must not make them one inode.
    set_mtime(&ctx.file("src/twin1", "twin"), 1_000);
    set_mtime(&ctx.file("src/twin2", "twin"), 1_000);
    let req = request(&["src"], "/app/");
    let (earlier, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    assert_eq!(r.unwrap().linked, 0);

    let edited = ctx.file("src/edited", "after!");
    set_mtime(&edited, 1_000);
    std::fs::set_permissions(ctx.path("src/chmodded"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    set_mtime(&ctx.path("src/touched"), 2_000);
    let rerun = CopyRequest { earlier: Some(earlier.path()), ..CopyRequest::from(&req) };
    let (out, stats) = copy_ctx(rerun, &ctx, &Rootfs::empty());
    let stats = stats.unwrap();
    let (plain, r) = copy_ctx(&req, &ctx, &Rootfs::empty());
    r.unwrap();

    let ino = |dir: &Path, name: &str| std::fs::metadata(dir.join("app").join(name)).unwrap().ino();
    assert_eq!(ino(out.path(), "same"), ino(earlier.path(), "same"));
    assert_eq!(ino(out.path(), "twin1"), ino(earlier.path(), "twin1"));
    assert_eq!(ino(out.path(), "twin2"), ino(earlier.path(), "twin2"));
    for changed in ["edited", "chmodded", "touched"] {
        assert_ne!(ino(out.path(), changed), ino(earlier.path(), changed), "{changed}");
    }
    assert_eq!((stats.files, stats.linked), (6, 3));
    // The layer is what a copy without the earlier result writes.
    assert_eq!(listing(out.path()), listing(plain.path()));
    for name in ["same", "edited", "chmodded", "touched", "twin1", "twin2"] {
        let (a, b) = (out.path().join("app").join(name), plain.path().join("app").join(name));
        assert_eq!(read(&a), read(&b), "{name}");
        assert_eq!((mode(&a), mtime(&a), owner(&a)), (mode(&b), mtime(&b), owner(&b)), "{name}");
    }
    assert_eq!(read(&out.path().join("app/edited")), "after!");
}

#[test]
fn an_earlier_file_is_linked_at_most_once_per_layer() {
    let ctx = Ctx::new();
    set_mtime(&ctx.file("a", "same"), 1_000);
    set_mtime(&ctx.file("b", "same"), 1_000);
    let earlier = tempfile::TempDir::new().unwrap();
    // An earlier layer where both names are one inode (a hard-link pair).
    let first = crate::engine::fileops::testutil::write_file(&earlier.path().join("d/a"), b"same", 0o644);
    std::os::unix::fs::chown(&first, Some(0), Some(0)).unwrap();
    set_mtime(&first, 1_000);
    std::fs::hard_link(&first, earlier.path().join("d/b")).unwrap();
    let op = request(&["a", "b"], "/d/");
    let req = CopyRequest { earlier: Some(earlier.path()), ..CopyRequest::from(&op) };
    let (out, stats) = copy_ctx(req, &ctx, &Rootfs::empty());
    assert_eq!(stats.unwrap().linked, 1);
    let (a, b) = (out.path().join("d/a"), out.path().join("d/b"));
    assert_ne!(std::fs::metadata(&a).unwrap().ino(), std::fs::metadata(&b).unwrap().ino());
    assert_eq!((read(&a), read(&b)), ("same".to_string(), "same".to_string()));
}
