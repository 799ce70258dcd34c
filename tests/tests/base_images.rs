//! Base images from outside a registry, as `--build-context NAME=…` gives them (a directory,
//! copied from and built on, a docker archive, an OCI layout, another image reference), and base
//! layers that try to escape the snapshot they are unpacked into.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rbuild_e2e::archive::sha256_hex;
use rbuild_e2e::registry::{build_base, Registry};
use rbuild_e2e::{Archive, Context, TestEnv};

#[test]
fn a_directory_context_is_copied_from() {
    let env = TestEnv::new("context-dir");
    let assets = tempfile::tempdir().expect("temp dir");
    fs::write(assets.path().join("a.txt"), "asset\n").expect("asset");
    fs::write(assets.path().join("skip.txt"), "skipped\n").expect("asset");
    fs::write(assets.path().join(".dockerignore"), "skip.txt\n").expect("its own .dockerignore");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&["FROM scratch", "COPY busybox /bin/busybox", "COPY --from=assets . /assets/"]);
    let flag = format!("assets={}", assets.path().display());
    let image = env.build_and_load(&ctx, &["--build-context", &flag]);
    assert_eq!(image.read("/assets/a.txt"), "asset\n");
    let listing = image.busybox(&["ls", "-a", "/assets"]);
    assert!(!listing.contains("skip.txt"), "the context's .dockerignore applies: {listing}");

    let out = env.rbuild().args(["build", "--build-context", "assets=/no/such/dir"]).arg(ctx.path()).run();
    out.assert_code(2);
    out.assert_stderr_contains("/no/such/dir is not a directory");
}

/// `FROM NAME` of a directory context: the directory is the stage's root filesystem, as BuildKit
/// builds on a local context: its files with their modes, owned by root (BuildKit's local sources
/// reset uid and gid to 0, as COPY from the context does), its `.dockerignore` applied, and the
/// config of `scratch` (only PATH). The image runs in Docker.
#[test]
fn a_directory_context_is_a_base() {
    let env = TestEnv::new("context-dir-base");
    let rootfs = tempfile::tempdir().expect("temp dir");
    let root = rootfs.path();
    fs::create_dir(root.join("bin")).expect("bin/");
    fs::copy(rbuild_e2e::context::busybox_path(), root.join("bin/busybox")).expect("busybox");
    fs::write(root.join("file"), "from the directory\n").expect("file");
    fs::create_dir(root.join("etc")).expect("etc/");
    fs::write(root.join("etc/secret.conf"), "private\n").expect("a private file");
    fs::set_permissions(root.join("etc/secret.conf"), fs::Permissions::from_mode(0o640)).expect("chmod");
    std::os::unix::fs::chown(root.join("etc/secret.conf"), Some(1234), Some(2345)).expect("chown (the tests run as root)");
    fs::write(root.join("left-out.txt"), "ignored\n").expect("an ignored file");
    fs::write(root.join(".dockerignore"), "left-out.txt\n").expect("its .dockerignore");

    let ctx = Context::new();
    ctx.dockerfile(&[
        "FROM base",
        r#"RUN ["/bin/busybox", "sh", "-c", "/bin/busybox cat /file > /out && /bin/busybox stat -c '%a %u:%g %n' /bin/busybox /etc/secret.conf > /stat"]"#,
    ]);
    let flag = format!("base={}", root.display());
    let built = env.build(&ctx, &["--build-context", &flag]);
    built.output.assert_stderr_contains("[stage-0 1/2] FROM base");
    let image = built.load();
    assert_eq!(image.read("/out"), "from the directory\n");
    assert_eq!(image.read("/stat"), "755 0:0 /bin/busybox\n640 0:0 /etc/secret.conf\n");
    assert!(image.try_busybox(&["ls", "/left-out.txt"]).code() != Some(0), "the .dockerignore applies");
    let config = image.config();
    assert_eq!(rbuild_e2e::strings(&config["Env"]), vec![format!("PATH={DEFAULT_PATH}")], "scratch's config");
    assert!(config["Cmd"].is_null() && config["Entrypoint"].is_null(), "{config}");
    let layers = built.archive().config()["rootfs"]["diff_ids"].as_array().expect("diff_ids").len();
    assert_eq!(layers, 2, "the directory and the RUN");
    assert!(image.history().iter().any(|h| h.contains("load build context base")), "{:?}", image.history());
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[test]
fn a_docker_archive_context_is_a_base_without_any_registry() {
    let producer = TestEnv::new("context-archive-producer");
    let base = build_base(&producer, "archived");
    let env = TestEnv::new("context-archive");
    let ctx = Context::new();
    ctx.dockerfile(&["FROM base", "COPY --from=base /marker /copied", "RUN cat /marker > /seen"]);
    let flag = format!("base=docker-archive:{}", base.archive.display());
    let image = env.build_and_load(&ctx, &["--build-context", &flag]);
    assert_eq!(image.read("/seen"), "archived\n");
    assert_eq!(image.read("/copied"), "archived\n");
    assert_eq!(image.run(&[]), "archived\n", "the base's CMD is inherited");
    assert!(image.config()["Env"].to_string().contains("BASE_VAR=archived"), "the base's ENV is inherited");
}

#[test]
fn an_oci_layout_context_by_tag_and_by_digest() {
    let producer = TestEnv::new("context-layout-producer");
    let first = build_base(&producer, "first");
    let second = build_base(&producer, "second");
    // One layout with both images: rbuild's OCI export of each, merged.
    let layout = tempfile::tempdir().expect("temp dir");
    let mut entries = Vec::new();
    for (built, tag) in [(&first, "one"), (&second, "two")] {
        let oci = producer.path(&format!("{tag}.oci.tar"));
        producer
            .rbuild()
            .args(["build", "-q", "-o"])
            .arg(format!("type=oci,dest={}", oci.display()))
            .arg(dockerfile_from(&built.reference).path())
            .run()
            .assert_success();
        let archive = Archive::open(&oci);
        archive.extract_to(layout.path());
        let mut entry = archive.oci_index()["manifests"][0].clone();
        entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        entries.push(entry);
    }
    let digest_of_second = entries[1]["digest"].as_str().expect("digest").to_string();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": entries});
    fs::write(layout.path().join("index.json"), serde_json::to_vec(&index).expect("JSON")).expect("index.json");

    let env = TestEnv::new("context-layout");
    let ctx = Context::new();
    ctx.dockerfile(&["FROM base", "RUN cat /marker > /seen"]);
    let by_tag = format!("base=oci-layout:{}:one", layout.path().display());
    assert_eq!(env.build_and_load(&ctx, &["--build-context", &by_tag]).read("/seen"), "first\n");
    let by_digest = format!("base=oci-layout://{}@{digest_of_second}", layout.path().display());
    assert_eq!(env.build_and_load(&ctx, &["--build-context", &by_digest]).read("/seen"), "second\n");

    let missing = format!("base=oci-layout:{}:three", layout.path().display());
    let out = env.rbuild().args(["build", "--build-context", &missing]).arg(ctx.path()).run();
    out.assert_code(1);
    out.assert_stderr_contains("no image is tagged \"three\"");
}

/// A context whose Dockerfile is `FROM <reference>` in the producer's store.
fn dockerfile_from(reference: &str) -> Context {
    let ctx = Context::new();
    ctx.dockerfile(&[&format!("FROM {reference}")]);
    ctx
}

#[test]
fn a_docker_image_context_stands_for_another_reference() {
    let producer = TestEnv::new("context-image-producer");
    let base = build_base(&producer, "renamed");
    let registry = Registry::start();
    let pushed = registry.push_archive(&base.archive, "e2e/renamed:1");
    let env = TestEnv::new("context-image");
    let ctx = Context::new();
    // The Dockerfile names an image that exists nowhere; the context redirects it.
    ctx.dockerfile(&["FROM example.invalid/team/base:7", "RUN cat /marker > /seen"]);
    let flag = format!("example.invalid/team/base:7=docker-image://{pushed}");
    let built = env.build(&ctx, &["--build-context", &flag]);
    built.output.assert_stderr_contains(&format!("pulling {pushed}"));
    assert_eq!(built.load().read("/seen"), "renamed\n");
}

/// A directory outside everything rbuild may write, with a file in it.
struct Outside {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Outside {
    fn new() -> Outside {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("outside");
        fs::create_dir(&dir).expect("outside dir");
        fs::write(dir.join("victim"), "original\n").expect("victim");
        Outside { _tmp: tmp, dir }
    }

    fn assert_untouched(&self, case: &str) {
        let names: Vec<String> = fs::read_dir(&self.dir)
            .expect("listing outside")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["victim"], "{case}: something was written outside");
        assert_eq!(fs::read_to_string(self.dir.join("victim")).expect("victim"), "original\n", "{case}");
    }
}

/// One member of a hand-made layer: `(name, kind, link target)`, with `evil` as file content.
type Member<'a> = (&'a str, tar::EntryType, Option<&'a str>);

/// A docker archive of one image with one layer made of `members`, for the host's platform.
fn archive_with_layer(dir: &Path, members: &[Member<'_>]) -> PathBuf {
    let mut layer = tar::Builder::new(Vec::new());
    for (name, kind, link) in members {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        let data: &[u8] = if *kind == tar::EntryType::Regular { b"evil\n" } else { b"" };
        header.set_size(data.len() as u64);
        // Raw names: the tar crate's own setters refuse the hostile ones.
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        layer.append(&header, data).expect("appending a member");
    }
    let layer = layer.into_inner().expect("layer tar");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let config = serde_json::json!({
        "architecture": arch, "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&layer))]},
    });
    let config = serde_json::to_vec(&config).expect("config");
    let config_name = format!("{}.json", sha256_hex(&config));
    let manifest = serde_json::json!([{"Config": config_name, "RepoTags": ["evil:1"], "Layers": ["l/layer.tar"]}]);
    let path = dir.join("evil.tar");
    let mut archive = tar::Builder::new(fs::File::create(&path).expect("archive"));
    for (name, bytes) in [
        ("l/layer.tar", layer),
        (config_name.as_str(), config),
        ("manifest.json", serde_json::to_vec(&manifest).expect("manifest")),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive.append_data(&mut header, name, bytes.as_slice()).expect("member");
    }
    archive.finish().expect("archive");
    path
}

#[test]
fn malicious_base_layers_fail_the_build_naming_the_member() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let env = TestEnv::new("malicious-layers");
    let outside = Outside::new();
    let out_dir = outside.dir.to_str().expect("utf-8 path").to_string();
    let victim = format!("{out_dir}/victim");
    let climb = format!("{}{}", "../".repeat(12), victim.trim_start_matches('/'));
    let cases: Vec<(&str, Vec<Member<'_>>, &str)> = vec![
        ("tar slip", vec![(&climb, Regular, None)], &climb),
        ("symlink, then a file below it", vec![("escape", Symlink, Some(&out_dir)), ("escape/victim", Regular, None)], "escape/victim"),
        (
            "a directory swapped for a symlink",
            vec![("a/", Directory, None), ("a", Symlink, Some(&out_dir)), ("a/victim", Regular, None)],
            "a/victim",
        ),
        ("a hard link out", vec![("h", Link, Some(&climb))], "h"),
        (
            "a hard link through a symlinked directory",
            vec![("d", Symlink, Some(&out_dir)), ("h", Link, Some("d/victim"))],
            "h",
        ),
    ];
    let ctx = Context::new();
    ctx.dockerfile(&["FROM evil", "LABEL unpacked=yes"]);
    for (case, members, member) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let archive = archive_with_layer(dir.path(), &members);
        let flag = format!("evil=docker-archive:{}", archive.display());
        let out = env.rbuild().args(["build", "--build-context", &flag]).arg(ctx.path()).run();
        assert_eq!(out.code(), Some(1), "{case}\n{}", out.describe());
        out.assert_stderr_contains(&format!("member {member:?}"));
        outside.assert_untouched(case);
    }

    // Symlink then hard link: the hard link is to the symlink itself, which is harmless, and a
    // later file of the same name replaces it instead of writing through it.
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = archive_with_layer(
        dir.path(),
        &[("s", Symlink, Some(&victim)), ("h", Link, Some("s")), ("h", Regular, None)],
    );
    let flag = format!("evil=docker-archive:{}", archive.display());
    let out = env.rbuild().args(["build", "--build-context", &flag]).arg(ctx.path()).run();
    out.assert_success();
    outside.assert_untouched("symlink then hard link");
}
