//! `-o/--output`: the image archive (docker-archive and OCI layout in one tar, plain or gzipped,
//! to a file or stdout), the OCI-only archive, and the final rootfs as a tar or a directory.
//! Archives are checked by reading them and by independent clients (docker, skopeo, umoci).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rbuild_e2e::archive::{
    decompress, is_gzip, is_zstd, sha256_hex, skopeo_inspect, skopeo_inspect_config, tar_entries, umoci_unpack,
};
use rbuild_e2e::{Archive, Context, Docker, EntryKind, RunOutput, TestEnv, SCRATCH_BUSYBOX};

/// busybox plus a text file, and a CMD that prints the file.
fn app_context() -> Context {
    let ctx = Context::with_busybox();
    ctx.file("message.txt", "output check\n");
    ctx.dockerfile(&[
        SCRATCH_BUSYBOX[0],
        SCRATCH_BUSYBOX[1],
        "COPY message.txt /etc/message.txt",
        "LABEL purpose=outputs",
        r#"CMD ["/bin/busybox", "cat", "/etc/message.txt"]"#,
    ]);
    ctx
}

/// `rbuild build -t REF -o OUTPUT CONTEXT`.
fn build_to(env: &TestEnv, ctx: &Context, reference: &str, output: &str) -> RunOutput {
    let out = env
        .rbuild()
        .args(["build", "-t", reference, "-o", output])
        .arg(ctx.path())
        .run();
    out.assert_success();
    out
}

/// Structure every image archive must have: verified blobs, and layers whose entries stay
/// inside the image root.
fn assert_sound_layers(archive: &Archive) {
    archive.assert_blobs_match_digests();
    for layer in archive.layers() {
        for entry in layer {
            assert!(
                !entry.path.starts_with('/') && !entry.path.split('/').any(|c| c == ".."),
                "layer entry escapes the root: {:?}",
                entry.path
            );
        }
    }
}

/// The docker-archive side: manifest.json names the config, the layers and the tag, and the
/// layers' uncompressed digests are the config's diff_ids.
fn assert_docker_archive(archive: &Archive, reference: &str) {
    for member in ["manifest.json", "repositories"] {
        assert!(
            archive.has(member),
            "no {member}; members: {:?}",
            archive.names()
        );
    }
    archive.assert_repo_tag(reference);
    let manifest = archive.docker_manifest();
    let diff_ids = rbuild_e2e::strings(&archive.config()["rootfs"]["diff_ids"]);
    let layers = rbuild_e2e::strings(&manifest["Layers"]);
    assert_eq!(layers.len(), diff_ids.len(), "one layer file per diff_id");
    for (name, diff_id) in layers.iter().zip(&diff_ids) {
        let tar = decompress(archive.bytes(name));
        assert_eq!(
            format!("sha256:{}", sha256_hex(&tar)),
            *diff_id,
            "layer {name}"
        );
    }
}

/// The OCI side: version 1.0.0 layout, index naming the tag, manifest and config blobs.
fn assert_oci_layout(archive: &Archive) {
    assert!(
        archive.has("oci-layout"),
        "no oci-layout; members: {:?}",
        archive.names()
    );
    assert_eq!(archive.json("oci-layout")["imageLayoutVersion"], "1.0.0");
    let index = archive.oci_index();
    let entry = &index["manifests"][0];
    assert_eq!(
        entry["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{index}"
    );
    assert!(
        entry["annotations"]["org.opencontainers.image.ref.name"].is_string(),
        "{index}"
    );
    let manifest = archive.oci_manifest();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    archive.blob(manifest["config"]["digest"].as_str().unwrap());
}

#[test]
fn tar_archive_holds_both_layouts_and_loads() {
    let env = TestEnv::new("out-tar");
    let ctx = app_context();
    let built = env.build(&ctx, &[]);
    let archive = built.archive();
    assert!(!archive.gzipped, "a .tar output must not be compressed");
    assert_docker_archive(&archive, &built.reference);
    assert_oci_layout(&archive);
    assert_sound_layers(&archive);
    assert_eq!(built.load().run(&[]), "output check\n");
}

#[test]
fn tar_archive_reads_with_skopeo_both_ways() {
    let env = TestEnv::new("out-skopeo");
    let built = env.build(&app_context(), &[]);
    let path = built.archive.display().to_string();
    let via_docker = skopeo_inspect(&format!("docker-archive:{path}"));
    let via_oci = skopeo_inspect(&format!("oci-archive:{path}"));
    assert_eq!(via_docker["Labels"]["purpose"], "outputs", "{via_docker}");
    assert_eq!(via_oci["Labels"]["purpose"], "outputs", "{via_oci}");
    assert_eq!(
        via_docker["Layers"].as_array().map(Vec::len),
        Some(2),
        "{via_docker}"
    );
    let config = skopeo_inspect_config(&format!("oci-archive:{path}"));
    assert_eq!(
        rbuild_e2e::strings(&config["config"]["Cmd"]),
        ["/bin/busybox", "cat", "/etc/message.txt"]
    );
}

#[test]
fn tar_archive_unpacks_with_umoci() {
    let env = TestEnv::new("out-umoci");
    let built = env.build(&app_context(), &[]);
    let rootfs = umoci_unpack(&built.archive(), &env.path("umoci"));
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/message.txt")).unwrap(),
        "output check\n"
    );
    assert_eq!(
        fs::read(rootfs.join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
}

fn check_gzipped_archive(test: &str, file_name: &str) {
    let env = TestEnv::new(test);
    let reference = env.image_ref();
    let path = env.path(file_name);
    build_to(&env, &app_context(), &reference, path.to_str().unwrap());
    let archive = Archive::open(&path);
    assert!(archive.gzipped, "{file_name} is not gzip-compressed");
    assert_docker_archive(&archive, &reference);
    assert_oci_layout(&archive);
    assert_eq!(
        Docker::get().load_as(&path, &reference).run(&[]),
        "output check\n"
    );
}

#[test]
fn tar_gz_archive_is_gzipped_whole_and_loads() {
    check_gzipped_archive("out-tar-gz", "image.tar.gz");
}

#[test]
fn tgz_archive_is_gzipped_whole_and_loads() {
    check_gzipped_archive("out-tgz", "image.tgz");
}

#[test]
fn dash_writes_the_archive_to_stdout() {
    let env = TestEnv::new("out-stdout");
    let reference = env.image_ref();
    let out = build_to(&env, &app_context(), &reference, "-");
    let path = env.path("from-stdout.tar");
    fs::write(&path, &out.stdout).unwrap();
    let archive = Archive::open(&path);
    assert_docker_archive(&archive, &reference);
    assert_oci_layout(&archive);
    assert_eq!(
        Docker::get().load_as(&path, &reference).run(&[]),
        "output check\n"
    );
}

#[test]
fn type_docker_writes_a_loadable_archive() {
    let env = TestEnv::new("out-type-docker");
    let reference = env.image_ref();
    let path = env.path("docker.tar");
    build_to(
        &env,
        &app_context(),
        &reference,
        &format!("type=docker,dest={}", path.display()),
    );
    assert_docker_archive(&Archive::open(&path), &reference);
    assert_eq!(
        Docker::get().load_as(&path, &reference).run(&[]),
        "output check\n"
    );
}

/// Builds with `type=oci,dest=…[,compression=…]` and returns the archive, checked to be an
/// OCI layout only, with layers of `layer_media_type`, that skopeo reads.
fn build_oci(test: &str, compression: Option<&str>, layer_media_type: &str) -> (TestEnv, Archive) {
    let env = TestEnv::new(test);
    let reference = env.image_ref();
    let path = env.path("image.oci.tar");
    let mut output = format!("type=oci,dest={}", path.display());
    if let Some(compression) = compression {
        output.push_str(&format!(",compression={compression}"));
    }
    build_to(&env, &app_context(), &reference, &output);
    let archive = Archive::open(&path);
    assert!(
        !archive.has("manifest.json"),
        "type=oci must write only the OCI layout"
    );
    assert_oci_layout(&archive);
    assert_sound_layers(&archive);
    for layer in archive.oci_manifest()["layers"].as_array().unwrap() {
        assert_eq!(layer["mediaType"], layer_media_type, "{layer}");
    }
    let inspected = skopeo_inspect(&format!("oci-archive:{}", path.display()));
    assert_eq!(inspected["Labels"]["purpose"], "outputs", "{inspected}");
    (env, archive)
}

#[test]
fn type_oci_writes_an_oci_only_archive() {
    let (env, archive) = build_oci(
        "out-oci",
        None,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    let rootfs = umoci_unpack(&archive, &env.path("umoci"));
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/message.txt")).unwrap(),
        "output check\n"
    );
}

#[test]
fn type_oci_with_gzip_compression() {
    let (env, archive) = build_oci(
        "out-oci-gzip",
        Some("gzip"),
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    let rootfs = umoci_unpack(&archive, &env.path("umoci"));
    assert!(rootfs.join("bin/busybox").is_file());
}

#[test]
fn type_oci_with_zstd_compression() {
    let (_env, archive) = build_oci(
        "out-oci-zstd",
        Some("zstd"),
        "application/vnd.oci.image.layer.v1.tar+zstd",
    );
    let files: Vec<String> = archive
        .layers()
        .concat()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert!(files.contains(&"etc/message.txt".to_string()), "{files:?}");
}

/// The OCI manifest's layers of `archive`: each of `media_type`, its bytes `compressed`
/// (gzip or zstd, by magic) or a plain tar, and its uncompressed bytes the config's diff_id.
/// Returns the layer digests.
fn assert_layers(archive: &Archive, media_type: &str, is_compressed: fn(&[u8]) -> bool) -> Vec<String> {
    let diff_ids = rbuild_e2e::strings(&archive.config()["rootfs"]["diff_ids"]);
    let layers = archive.oci_manifest()["layers"].as_array().unwrap().clone();
    assert_eq!(layers.len(), diff_ids.len());
    let mut digests = Vec::new();
    for (layer, diff_id) in layers.iter().zip(&diff_ids) {
        assert_eq!(layer["mediaType"], media_type, "{layer}");
        let digest = layer["digest"].as_str().unwrap();
        let bytes = archive.blob(digest);
        assert!(is_compressed(bytes), "layer {digest} is not in the asked compression");
        assert_eq!(format!("sha256:{}", sha256_hex(&decompress(bytes))), *diff_id, "layer {digest}");
        digests.push(digest.to_string());
    }
    digests
}

/// `compression=` and `compression-level=` on an OCI archive, read as a push reads them: a
/// level is a conversion of its own, made once and kept, so the same export again
/// compresses nothing.
#[test]
fn type_oci_takes_a_zstd_level_and_compresses_once_per_level() {
    let env = TestEnv::new("out-oci-zstd-level");
    let reference = env.image_ref();
    let ctx = app_context();
    let export = |file: &str, level: u32| {
        let path = env.path(file);
        build_to(&env, &ctx, &reference, &format!("type=oci,dest={},compression=zstd,compression-level={level}", path.display()));
        let archive = Archive::open(&path);
        assert!(!archive.has("manifest.json"), "type=oci must write only the OCI layout");
        assert_oci_layout(&archive);
        assert_sound_layers(&archive);
        let inspected = skopeo_inspect(&format!("oci-archive:{}", path.display()));
        assert_eq!(inspected["Labels"]["purpose"], "outputs", "{inspected}");
        let digests = assert_layers(&archive, "application/vnd.oci.image.layer.v1.tar+zstd", is_zstd);
        (fs::read(&path).unwrap(), digests)
    };
    // Level 12 first: the build stores its layers plain, the export converts them.
    let (first, at_12) = export("zstd12.oci.tar", 12);
    let records = env.store().join("conversions/zstd-12");
    let stamps = || -> Vec<_> {
        let mut entries: Vec<_> = fs::read_dir(&records)
            .unwrap_or_else(|e| panic!("{}: {e}", records.display()))
            .map(|e| e.unwrap())
            .map(|e| (e.file_name(), e.metadata().unwrap().modified().unwrap()))
            .collect();
        entries.sort();
        entries
    };
    let before = stamps();
    assert_eq!(before.len(), at_12.len(), "one kept conversion per layer: {before:?}");
    let (second, again) = export("zstd12-again.oci.tar", 12);
    assert_eq!(again, at_12);
    assert_eq!(first, second, "the same export gives the same archive");
    assert_eq!(stamps(), before, "the second export compressed again instead of taking the kept conversion");
    // Level 3 (zstd's default) is another conversion, with other bytes.
    let (_, at_3) = export("zstd3.oci.tar", 3);
    assert_ne!(at_3, at_12, "level 3 wrote level 12's layers");
}

/// `docker save`'s own shape: plain layers, which Docker 20.10 loads and runs.
#[test]
fn type_docker_uncompressed_writes_plain_layers_that_load() {
    let env = TestEnv::new("out-docker-plain");
    let reference = env.image_ref();
    let path = env.path("plain.tar");
    build_to(&env, &app_context(), &reference, &format!("type=docker,dest={},compression=uncompressed", path.display()));
    let archive = Archive::open(&path);
    assert!(!archive.gzipped);
    assert_docker_archive(&archive, &reference);
    assert_oci_layout(&archive);
    assert_sound_layers(&archive);
    let digests = assert_layers(&archive, "application/vnd.oci.image.layer.v1.tar", |b| !is_gzip(b) && !is_zstd(b));
    // The Docker side names the same plain blobs.
    let docker_layers = rbuild_e2e::strings(&archive.docker_manifest()["Layers"]);
    let named: Vec<String> = digests.iter().map(|d| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))).collect();
    assert_eq!(docker_layers, named);
    assert_eq!(Docker::get().load_as(&path, &reference).run(&[]), "output check\n");
}

#[test]
fn type_tar_writes_the_final_rootfs() {
    let env = TestEnv::new("out-type-tar");
    let path = env.path("rootfs.tar");
    let out = env
        .rbuild()
        .args(["build", "-o"])
        .arg(format!("type=tar,dest={}", path.display()))
        .arg(app_context().path())
        .run();
    out.assert_success();
    let entries = tar_entries(&fs::read(&path).unwrap());
    let names: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert!(
        !names.contains(&"manifest.json") && !names.contains(&"index.json"),
        "{names:?}"
    );
    let message = entries
        .iter()
        .find(|e| e.path == "etc/message.txt")
        .expect("etc/message.txt");
    assert_eq!(message.data, b"output check\n");
    let busybox = entries
        .iter()
        .find(|e| e.path == "bin/busybox")
        .expect("bin/busybox");
    assert_eq!(busybox.kind, EntryKind::File);
    assert_eq!(busybox.mode & 0o111, 0o111, "busybox lost its execute bits");
}

#[test]
fn type_local_writes_the_final_rootfs_as_files() {
    let env = TestEnv::new("out-type-local");
    let dest = env.path("rootfs");
    let ctx = app_context();
    env.rbuild()
        .args(["build", "-o"])
        .arg(format!("type=local,dest={}", dest.display()))
        .arg(ctx.path())
        .run()
        .assert_success();
    assert_eq!(
        fs::read_to_string(dest.join("etc/message.txt")).unwrap(),
        "output check\n"
    );
    let busybox = fs::metadata(dest.join("bin/busybox")).unwrap();
    assert_eq!(
        busybox.permissions().mode() & 0o111,
        0o111,
        "busybox lost its execute bits"
    );
    assert!(!dest.join("manifest.json").exists() && !dest.join("index.json").exists());
}

#[test]
fn output_without_tag_still_loads_by_id() {
    let env = TestEnv::new("out-untagged");
    let path = env.path("untagged.tar");
    // A label of its own gives this image an ID no other test's image can have, so removing it
    // by ID below cannot take away another test's image.
    let unique = format!("e2e.unique={}", rbuild_e2e::env::unique_suffix());
    let out = env
        .rbuild()
        .args(["build", "-q", "--label", &unique, "-o"])
        .arg(&path)
        .arg(app_context().path())
        .run();
    out.assert_success();
    let id = out.image_id();
    let docker = Docker::get();
    let _cleanup = docker.adopt(&id);
    let loaded = docker.load(&path);
    assert!(
        loaded.contains(&id),
        "docker load did not report {id}: {loaded}"
    );
    assert_eq!(docker.inspect(&id)["Id"], id.as_str());
}

#[test]
fn archive_is_written_whole_or_not_at_all() {
    // A failing build must not leave a partial archive where the output was asked for.
    let env = TestEnv::new("out-failed");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&[SCRATCH_BUSYBOX[0], SCRATCH_BUSYBOX[1], "COPY missing.txt /"]);
    let path = env.path("never.tar");
    let out = env
        .rbuild()
        .args(["build", "-o"])
        .arg(&path)
        .arg(ctx.path())
        .run();
    out.assert_code(1);
    assert!(
        !Path::new(&path).exists(),
        "a failed build left {}",
        path.display()
    );
}

/// `name=` names the image in an image archive, as buildx's exporters do; BuildKit attributes
/// rbuild cannot honour are refused with the reason instead of being ignored (pushing is
/// tested in push.rs).
#[test]
fn output_names_and_unsupported_attributes() {
    let env = TestEnv::new("output-name");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&["FROM scratch", "COPY busybox /bin/busybox", r#"CMD ["/bin/busybox", "echo", "named"]"#]);
    let archive = env.path("named.tar");
    let name = format!("rbuild-e2e/output-name-{}:1", rbuild_e2e::env::unique_suffix());
    let dest = format!("type=docker,dest={},name={name}", archive.display());
    env.rbuild().args(["build", "-o", &dest]).arg(ctx.path()).run().assert_success();
    rbuild_e2e::Archive::open(&archive).assert_repo_tag(&name);
    let image = rbuild_e2e::Docker::get().load_as(&archive, &name);
    assert_eq!(image.run(&[]), "named\n");

    for (output, reason) in [
        ("type=docker,dest=x.tar,compression=zstd", "docker load before Docker 23.0"),
        ("type=oci,dest=x.tar,compression=zstd,compression-level=20", "out of range for zstd (1–19)"),
        ("type=docker,dest=x.tar,compression=uncompressed,compression-level=1", "no compression level"),
        ("type=docker,dest=x.tar,oci-mediatypes=true", "use type=oci"),
    ] {
        let out = env.rbuild().args(["build", "-o", output]).arg(ctx.path()).run();
        out.assert_code(2).assert_stderr_contains(reason);
    }
}
