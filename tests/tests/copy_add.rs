//! COPY and ADD: sources, wildcards, destinations, ownership and modes, symlinks, heredocs,
//! and ADD's extraction of local archives.

use std::path::Path;

use rbuild_e2e::process::run_tool;
use rbuild_e2e::{env::unique_suffix, Context, LoadedImage, TestEnv, SCRATCH_BUSYBOX};

/// Builds `FROM scratch` + busybox + `lines` in `ctx` and loads the image.
fn build_with(env: &TestEnv, ctx: &Context, lines: &[&str]) -> LoadedImage {
    let dockerfile: Vec<&str> = SCRATCH_BUSYBOX.iter().chain(lines).copied().collect();
    ctx.dockerfile(&dockerfile);
    env.build_and_load(ctx, &[])
}

/// The sorted output of `find ROOT -type T` in the image (T = f, d or l).
fn find(image: &LoadedImage, root: &str, kind: &str) -> Vec<String> {
    let mut found: Vec<String> = image
        .busybox(&["find", root, "-type", kind])
        .lines()
        .map(str::to_string)
        .collect();
    found.sort();
    found
}

/// `stat -c FORMAT PATH` in the image, without the newline.
fn stat(image: &LoadedImage, format: &str, path: &str) -> String {
    image
        .busybox(&["stat", "-c", format, path])
        .trim_end()
        .to_string()
}

#[test]
fn copy_several_sources_into_a_directory() {
    let env = TestEnv::new("copy-several");
    let ctx = Context::with_busybox();
    ctx.file("a.txt", "a\n").file("b.txt", "b\n");
    let image = build_with(&env, &ctx, &["COPY a.txt b.txt /dest/"]);
    assert_eq!(find(&image, "/dest", "f"), ["/dest/a.txt", "/dest/b.txt"]);
    assert_eq!(image.read("/dest/b.txt"), "b\n");
}

#[test]
fn copy_wildcards_match_only_their_pattern() {
    let env = TestEnv::new("copy-wildcard");
    let ctx = Context::with_busybox();
    ctx.file("one.txt", "1\n")
        .file("two.txt", "2\n")
        .file("three.md", "3\n")
        .file("data-1.csv", "x\n")
        .file("data-22.csv", "y\n");
    let image = build_with(&env, &ctx, &["COPY *.txt /txt/", "COPY data-?.csv /csv/"]);
    assert_eq!(find(&image, "/txt", "f"), ["/txt/one.txt", "/txt/two.txt"]);
    assert_eq!(find(&image, "/csv", "f"), ["/csv/data-1.csv"]);
}

#[test]
fn copy_wildcard_matching_nothing_is_not_an_error() {
    // Unlike a missing literal source, an empty wildcard match copies nothing and builds.
    let env = TestEnv::new("copy-empty-wildcard");
    let ctx = Context::with_busybox();
    ctx.file("present.txt", "here\n");
    let image = build_with(
        &env,
        &ctx,
        &["COPY nothing-*.txt /dest/", "COPY present.txt /"],
    );
    assert_eq!(image.read("/present.txt"), "here\n");
}

#[test]
fn copy_of_a_directory_copies_its_contents() {
    let env = TestEnv::new("copy-dir");
    let ctx = Context::with_busybox();
    ctx.file("src/top.txt", "top\n")
        .file("src/sub/deep.txt", "deep\n");
    let image = build_with(&env, &ctx, &["COPY src /app"]);
    assert_eq!(
        find(&image, "/app", "f"),
        ["/app/sub/deep.txt", "/app/top.txt"]
    );
    assert_eq!(image.read("/app/sub/deep.txt"), "deep\n");
}

#[test]
fn copy_destination_trailing_slash_rules() {
    let env = TestEnv::new("copy-slash");
    let ctx = Context::with_busybox();
    ctx.file("a.txt", "a\n");
    let image = build_with(
        &env,
        &ctx,
        &[
            // No trailing slash and nothing there: the file gets that name.
            "COPY a.txt /renamed",
            // A trailing slash: a directory is created and the file goes inside.
            "COPY a.txt /into/",
            // An existing directory without trailing slash: the file goes inside too.
            "COPY a.txt /into",
        ],
    );
    assert_eq!(image.read("/renamed"), "a\n");
    assert_eq!(find(&image, "/into", "f"), ["/into/a.txt"]);
}

#[test]
fn copy_relative_destination_is_under_workdir() {
    let env = TestEnv::new("copy-relative");
    let ctx = Context::with_busybox();
    ctx.file("a.txt", "a\n");
    let image = build_with(
        &env,
        &ctx,
        &["WORKDIR /work", "COPY a.txt rel/", "COPY a.txt ."],
    );
    assert_eq!(
        find(&image, "/work", "f"),
        ["/work/a.txt", "/work/rel/a.txt"]
    );
}

#[test]
fn copy_chown_numeric_applies_to_every_copied_file() {
    let env = TestEnv::new("copy-chown");
    let ctx = Context::with_busybox();
    ctx.file("a.txt", "a\n").file("tree/inner/b.txt", "b\n");
    let image = build_with(
        &env,
        &ctx,
        &[
            "COPY --chown=1234:5678 a.txt /a.txt",
            "COPY --chown=1234:5678 tree /tree",
            "COPY a.txt /root-owned.txt",
        ],
    );
    // The destination directory the COPY creates is theirs too.
    for path in ["/a.txt", "/tree", "/tree/inner", "/tree/inner/b.txt"] {
        assert_eq!(stat(&image, "%u:%g", path), "1234:5678", "owner of {path}");
    }
    assert_eq!(stat(&image, "%u:%g", "/root-owned.txt"), "0:0");
}

#[test]
fn copy_chown_resolves_names_from_the_image() {
    let env = TestEnv::new("copy-chown-name");
    let ctx = Context::with_busybox();
    ctx.file("a.txt", "a\n")
        .file(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\napp:x:1001:1002::/home/app:/bin/sh\n",
        )
        .file("etc/group", "root:x:0:\napp:x:1002:\nstaff:x:2000:app\n");
    let image = build_with(
        &env,
        &ctx,
        &[
            "COPY etc/passwd etc/group /etc/",
            // A user alone also takes that user's primary group from /etc/passwd.
            "COPY --chown=app a.txt /user-only",
            "COPY --chown=app:staff a.txt /user-and-group",
            "COPY --chown=1001:staff a.txt /uid-and-group",
        ],
    );
    assert_eq!(stat(&image, "%u:%g", "/user-only"), "1001:1002");
    assert_eq!(stat(&image, "%u:%g", "/user-and-group"), "1001:2000");
    assert_eq!(stat(&image, "%u:%g", "/uid-and-group"), "1001:2000");
}

#[test]
fn copy_chmod_sets_the_mode() {
    let env = TestEnv::new("copy-chmod");
    let ctx = Context::with_busybox();
    ctx.file("tool.sh", "echo\n").file("plain.txt", "x\n");
    let image = build_with(
        &env,
        &ctx,
        &[
            "COPY --chmod=0751 tool.sh /tool.sh",
            "COPY --chmod=600 plain.txt /plain.txt",
        ],
    );
    assert_eq!(stat(&image, "%a", "/tool.sh"), "751");
    assert_eq!(stat(&image, "%a", "/plain.txt"), "600");
}

#[test]
fn copy_keeps_mode_bits_without_chmod() {
    let env = TestEnv::new("copy-mode");
    let ctx = Context::with_busybox();
    ctx.file("run.sh", "echo\n").file("data.txt", "x\n");
    set_mode(&ctx.join("run.sh"), 0o755);
    set_mode(&ctx.join("data.txt"), 0o640);
    let image = build_with(&env, &ctx, &["COPY run.sh data.txt /files/"]);
    assert_eq!(stat(&image, "%a", "/files/run.sh"), "755");
    assert_eq!(stat(&image, "%a", "/files/data.txt"), "640");
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn copy_keeps_symlinks_as_links() {
    let env = TestEnv::new("copy-symlinks");
    let ctx = Context::with_busybox();
    ctx.file("tree/target.txt", "target\n")
        .symlink("tree/relative", "target.txt")
        .symlink("tree/absolute", "/etc/hostname")
        .symlink("tree/dangling", "no/such/file");
    let image = build_with(&env, &ctx, &["COPY tree /tree"]);
    assert_eq!(
        find(&image, "/tree", "l"),
        ["/tree/absolute", "/tree/dangling", "/tree/relative"]
    );
    assert_eq!(
        image.busybox(&["readlink", "/tree/relative"]),
        "target.txt\n"
    );
    assert_eq!(
        image.busybox(&["readlink", "/tree/absolute"]),
        "/etc/hostname\n"
    );
    assert_eq!(
        image.busybox(&["readlink", "/tree/dangling"]),
        "no/such/file\n"
    );
    assert_eq!(image.read("/tree/relative"), "target\n");
}

#[test]
fn copy_source_symlink_resolves_inside_the_context() {
    let env = TestEnv::new("copy-source-link");
    let ctx = Context::with_busybox();
    // An absolute link in the context means that path *in the context*, never on the host.
    ctx.file("etc/passwd", "the context's passwd\n")
        .symlink("leak", "/etc/passwd");
    let image = build_with(&env, &ctx, &["COPY leak /leaked"]);
    assert_eq!(image.read("/leaked"), "the context's passwd\n");
}

#[test]
fn copy_through_an_image_symlink_stays_in_the_rootfs() {
    let env = TestEnv::new("copy-escape");
    let ctx = Context::with_busybox();
    // Enough `..` to climb out of any store directory to the host's /.
    let climb = "../".repeat(24);
    let relative_name = format!("rbuild-e2e-escape-rel-{}", unique_suffix());
    let absolute_name = format!("rbuild-e2e-escape-abs-{}", unique_suffix());
    ctx.file("payload.txt", "payload\n")
        .file("tmp/.keep", "")
        .symlink("links/escape", &format!("{climb}tmp"))
        .symlink("links/escape-abs", "/tmp");
    let relative_dest = format!("COPY payload.txt /escape/{relative_name}");
    let absolute_dest = format!("COPY payload.txt /escape-abs/{absolute_name}");
    let image = build_with(
        &env,
        &ctx,
        &[
            "COPY tmp /tmp",
            "COPY links/ /",
            &relative_dest,
            &absolute_dest,
        ],
    );
    for name in [&relative_name, &absolute_name] {
        let host = Path::new("/tmp").join(name);
        let escaped = host.exists();
        let _ = std::fs::remove_file(&host);
        assert!(!escaped, "COPY wrote {} on the host", host.display());
        // Inside the image the links resolve against its own root: the file lands in its /tmp.
        assert_eq!(image.read(&format!("/tmp/{name}")), "payload\n");
    }
}

#[test]
fn copy_heredoc_creates_files() {
    let env = TestEnv::new("copy-heredoc");
    let ctx = Context::with_busybox();
    let image = build_with(
        &env,
        &ctx,
        &[
            "ARG NAME=rbuild",
            "COPY <<EOF /etc/expanded",
            "hello ${NAME}",
            "second line",
            "EOF",
            r#"COPY <<"EOF" /etc/literal"#,
            "hello ${NAME}",
            "EOF",
        ],
    );
    assert_eq!(image.read("/etc/expanded"), "hello rbuild\nsecond line\n");
    assert_eq!(image.read("/etc/literal"), "hello ${NAME}\n");
}

/// Builds a tar of a small tree with the system `tar`, compressed by `tar_flag` (e.g. `-z`),
/// ADDs it, and checks it was extracted; a plain COPY of the same file must not extract it.
fn check_add_extracts(test: &str, file_name: &str, tar_flag: Option<&str>) {
    let env = TestEnv::new(test);
    let ctx = Context::with_busybox();
    let tree = env.path("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("hello.txt"), "hello from the archive\n").unwrap();
    std::fs::write(tree.join("sub/nested.txt"), "nested\n").unwrap();
    let archive = ctx.join(file_name);
    let mut args = vec![
        "-C".to_string(),
        tree.display().to_string(),
        "-c".to_string(),
    ];
    args.extend(tar_flag.map(str::to_string));
    args.extend([
        "-f".to_string(),
        archive.display().to_string(),
        ".".to_string(),
    ]);
    run_tool("tar", &args);

    let add = format!("ADD {file_name} /extracted/");
    let copy = format!("COPY {file_name} /copied/");
    let image = build_with(&env, &ctx, &[&add, &copy]);
    assert_eq!(
        image.read("/extracted/hello.txt"),
        "hello from the archive\n"
    );
    assert_eq!(image.read("/extracted/sub/nested.txt"), "nested\n");
    assert_eq!(
        find(&image, "/copied", "f"),
        [format!("/copied/{file_name}")],
        "COPY must not extract"
    );
}

#[test]
fn add_extracts_tar() {
    check_add_extracts("add-tar", "files.tar", None);
}

#[test]
fn add_extracts_tar_gz() {
    check_add_extracts("add-tar-gz", "files.tar.gz", Some("-z"));
}

#[test]
fn add_extracts_tar_bz2() {
    check_add_extracts("add-tar-bz2", "files.tar.bz2", Some("-j"));
}

#[test]
fn add_extracts_tar_xz() {
    check_add_extracts("add-tar-xz", "files.tar.xz", Some("-J"));
}

#[test]
fn add_extracts_tar_zst() {
    check_add_extracts("add-tar-zst", "files.tar.zst", Some("--zstd"));
}

#[test]
fn add_of_a_plain_file_copies_it() {
    let env = TestEnv::new("add-plain");
    let ctx = Context::with_busybox();
    ctx.file("notes.txt", "just a file\n");
    let image = build_with(&env, &ctx, &["ADD notes.txt /notes/"]);
    assert_eq!(image.read("/notes/notes.txt"), "just a file\n");
}

#[test]
fn add_of_a_remote_url_is_refused_with_its_line() {
    let env = TestEnv::new("add-url");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&[
        SCRATCH_BUSYBOX[0],
        SCRATCH_BUSYBOX[1],
        "ADD https://example.com/file.txt /file.txt",
    ]);
    let out = env.rbuild().arg("build").arg(ctx.path()).run();
    out.assert_code(1)
        .assert_stderr_contains("not supported")
        .assert_stderr_contains("Dockerfile:3");
}

/// `ADD --unpack=false` copies a local archive as a file (BuildKit's behaviour); plain ADD
/// extracts it.
#[test]
fn add_unpack_false_copies_the_archive_as_a_file() {
    let env = TestEnv::new("add-unpack-false");
    let ctx = Context::with_busybox();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(3);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, "inner.txt", &b"in\n"[..]).unwrap();
    let bytes = tar.into_inner().unwrap();
    ctx.file("pkg.tar", &bytes);
    ctx.dockerfile(&[
        "FROM scratch",
        "COPY busybox /bin/busybox",
        "ADD --unpack=false pkg.tar /kept/",
        "ADD pkg.tar /extracted/",
    ]);
    let image = env.build_and_load(&ctx, &[]);
    assert_eq!(image.busybox(&["ls", "/kept"]).trim(), "pkg.tar");
    assert_eq!(image.read("/extracted/inner.txt"), "in\n");
    assert_eq!(image.busybox(&["stat", "-c", "%s", "/kept/pkg.tar"]).trim(), bytes.len().to_string());
}
