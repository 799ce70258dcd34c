//! `--isolation=chroot`: rbuild as root inside a plain, unprivileged container (`docker run`
//! without --privileged, Docker's default seccomp profile and capabilities), where namespaces
//! and mounts are refused. The container's image is a busybox image built by rbuild itself; the
//! rbuild binary, the context and the host's libraries come in as read-only bind mounts, the
//! archive goes out through a writable one and is loaded into Docker on the host.
//!
//! The libraries: the rbuild binary is linked dynamically against glibc, which a busybox image
//! lacks. Bind-mounting the host's /lib, /lib64 and /usr/lib read-only gives it exactly the
//! loader and libraries it was built against, without building a second test image from them.

use std::path::Path;

use rbuild_e2e::sandbox::{layer_paths, top_entry, with_shell, BUSYBOX_SH};
use rbuild_e2e::{rbuild_bin, Archive, Context, Docker, LoadedImage, RunOutput, TestEnv};

/// Where the context, the binary, the output and the store are inside the container.
const CTX: &str = "/ctx";
const BIN: &str = "/usr/local/bin/rbuild";
const OUT: &str = "/out";
const STORE: &str = "/store";

/// The busybox image the containers run, built with rbuild and loaded into Docker.
fn busybox_image(env: &TestEnv) -> LoadedImage {
    let ctx = Context::with_busybox();
    ctx.dockerfile(&BUSYBOX_SH);
    env.build_and_load(&ctx, &[])
}

/// `docker run --rm --network none` of `image` with the mounts described above, running
/// `rbuild ARGS…` (as the container's root).
fn rbuild_in_container(image: &LoadedImage, ctx: &Context, out: &Path, args: &[&str]) -> RunOutput {
    let mut mounts: Vec<String> = Vec::new();
    for lib in ["/lib", "/lib64", "/usr/lib"] {
        if Path::new(lib).exists() {
            mounts.extend(["-v".to_string(), format!("{lib}:{lib}:ro")]);
        }
    }
    mounts.extend([
        "-v".to_string(),
        format!("{}:{BIN}:ro", rbuild_bin().display()),
        "-v".to_string(),
        format!("{}:{CTX}:ro", ctx.path().display()),
        "-v".to_string(),
        format!("{}:{OUT}", out.display()),
        // Docker mounts a tmpfs noexec by default; RUN needs to exec the image's files.
        "--tmpfs".to_string(),
        format!("{STORE}:rw,exec,size=512m"),
        "-e".to_string(),
        format!("RBUILD_ROOT={STORE}"),
    ]);
    let docker_args: Vec<&str> = mounts.iter().map(String::as_str).collect();
    let mut command = vec![BIN, "build"];
    command.extend_from_slice(args);
    command.push(CTX);
    Docker::get().run(&docker_args, image.reference(), &command)
}

fn out_dir(env: &TestEnv) -> std::path::PathBuf {
    let out = env.path("container-out");
    std::fs::create_dir(&out).expect("creating the output dir");
    out
}

/// Runs `rbuild --isolation=chroot` on `ctx` in a container, then loads the archive it wrote.
fn build_in_container(env: &TestEnv, ctx: &Context) -> (Archive, LoadedImage) {
    let base = busybox_image(env);
    let out = out_dir(env);
    let reference = env.image_ref();
    let run = rbuild_in_container(
        &base,
        ctx,
        &out,
        &[
            "--isolation=chroot",
            "-t",
            &reference,
            "-o",
            "/out/image.tar",
        ],
    );
    run.assert_success();
    let archive_path = out.join("image.tar");
    let archive = Archive::open(&archive_path);
    let image = Docker::get().load_as(&archive_path, &reference);
    (archive, image)
}

#[test]
fn chroot_isolation_builds_in_an_unprivileged_container() {
    let env = TestEnv::new("isolation-chroot");
    let ctx = Context::with_busybox();
    ctx.file("gone.txt", "gone\n").file("kept.txt", "kept\n");
    ctx.dockerfile(&with_shell(&[
        "COPY gone.txt kept.txt /files/",
        "RUN echo made > /made.txt && chown 1234:5678 /made.txt && mkdir -m 1777 /shared",
        "RUN rm /files/gone.txt",
        "USER 1234:5678",
        "RUN id > /shared/id.txt",
    ]));
    let (archive, image) = build_in_container(&env, &ctx);

    let made = top_entry(&archive, "made.txt");
    assert_eq!((made.uid, made.gid), (1234, 5678), "tar header of made.txt");
    let id = top_entry(&archive, "shared/id.txt");
    assert_eq!(
        (id.uid, id.gid),
        (1234, 5678),
        "tar header of shared/id.txt"
    );
    let layers = archive.layers().len();
    let deletions = layer_paths(&archive, layers - 2);
    assert_eq!(
        deletions,
        ["files", "files/.wh.gone.txt"],
        "layer of `RUN rm`"
    );

    assert_eq!(image.read("/made.txt"), "made\n");
    assert_eq!(
        image.busybox(&["stat", "-c", "%u:%g", "/made.txt"]),
        "1234:5678\n"
    );
    assert!(!image
        .try_busybox(&["test", "-e", "/files/gone.txt"])
        .status
        .success());
    assert_eq!(image.read("/files/kept.txt"), "kept\n");
    let id = image.read("/shared/id.txt");
    assert!(
        id.starts_with("uid=1234 gid=5678"),
        "id as USER 1234:5678: {id:?}"
    );
}

#[test]
fn chroot_isolation_replaces_a_directory_in_an_unprivileged_container() {
    let env = TestEnv::new("isolation-chroot-opaque");
    let ctx = Context::with_busybox();
    ctx.file("d/old.txt", "old\n")
        .file("d/sub/older.txt", "older\n");
    ctx.dockerfile(&with_shell(&[
        "COPY d /d",
        "RUN rm -rf /d && mkdir /d && echo new > /d/new.txt",
    ]));
    let (archive, image) = build_in_container(&env, &ctx);
    let layers = archive.layers().len();
    let top = layer_paths(&archive, layers - 1);
    assert!(
        !top.iter()
            .any(|p| p == "d/old.txt" || p.starts_with("d/sub/")),
        "old files in the RUN layer: {top:?}"
    );
    assert_eq!(image.busybox(&["ls", "-A", "/d"]), "new.txt\n");
    assert_eq!(image.read("/d/new.txt"), "new\n");
}

/// `--isolation=namespaces` asked for where the container refuses them (the default, `auto`,
/// would take chroot there: tests/tests/executor.rs).
#[test]
fn namespaces_isolation_in_a_container_fails_naming_the_fix() {
    let env = TestEnv::new("isolation-namespaces-in-container");
    let base = busybox_image(&env);
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&["RUN echo hi > /hi"]));
    let out = out_dir(&env);
    let run = rbuild_in_container(&base, &ctx, &out, &["--isolation=namespaces", "-o", "/out/image.tar"]);
    // The cause (namespaces are refused) and the fix (the flag to pass), as a user types it.
    run.assert_code(1)
        .assert_stderr_contains("namespaces")
        .assert_stderr_contains("--isolation=chroot");
    assert!(
        !out.join("image.tar").exists(),
        "a failed build wrote its output"
    );
}
