//! The archives load in podman too: the docker-archive + OCI layout archive of `-o FILE.tar`
//! and the OCI-only archive with zstd layers, each run afterwards. Podman runs rootful with
//! its own `--root`/`--runroot` in the test's temp dir, so no system image store is touched.

use std::path::Path;
use std::process::Command;

use rbuild_e2e::process::{run, RunOutput};
use rbuild_e2e::{Context, TestEnv, SCRATCH_BUSYBOX};

/// `podman --root … --runroot … ARGS` with storage private to `env`.
fn podman(env: &TestEnv, args: &[&str]) -> RunOutput {
    if !Path::new("/usr/bin/podman").exists() {
        panic!("podman is missing: install the Debian package podman (scripts/test.sh does)");
    }
    let root = env.path("podman-root");
    let runroot = env.path("podman-run");
    let mut cmd = Command::new("/usr/bin/podman");
    cmd.arg("--root").arg(&root).arg("--runroot").arg(&runroot).args(args);
    run(cmd, None)
}

fn context() -> Context {
    let ctx = Context::with_busybox();
    ctx.file("message.txt", "podman reads rbuild archives\n");
    ctx.dockerfile(&[
        SCRATCH_BUSYBOX[0],
        SCRATCH_BUSYBOX[1],
        "COPY message.txt /etc/message.txt",
        r#"CMD ["/bin/busybox", "cat", "/etc/message.txt"]"#,
    ]);
    ctx
}

/// Loads `archive` into podman and runs the image; returns what it printed.
fn load_and_run(env: &TestEnv, archive: &Path, reference: &str) -> String {
    let loaded = podman(env, &["load", "-i", archive.to_str().unwrap()]);
    loaded.assert_success();
    let full = format!("docker.io/{reference}");
    assert!(loaded.stdout_text().contains(&full), "podman named it otherwise:\n{}", loaded.stdout_text());
    // This machine lacks CAP_SYS_RESOURCE; podman's default rlimits are higher than allowed.
    let ran = podman(
        env,
        &["run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", &full],
    );
    ran.assert_success();
    let _ = podman(env, &["rmi", "-a", "-f"]);
    ran.stdout_text()
}

#[test]
fn podman_loads_and_runs_the_docker_archive() {
    let env = TestEnv::new("podman-docker");
    let reference = env.image_ref();
    let archive = env.path("image.tar");
    env.rbuild()
        .args(["-t", &reference, "-o", archive.to_str().unwrap()])
        .arg(context().path())
        .run()
        .assert_success();
    assert_eq!(load_and_run(&env, &archive, &reference), "podman reads rbuild archives\n");
}

#[test]
fn podman_loads_and_runs_the_oci_archive_with_zstd_layers() {
    let env = TestEnv::new("podman-oci");
    let reference = env.image_ref();
    let archive = env.path("image.oci.tar");
    let output = format!("type=oci,dest={},compression=zstd", archive.display());
    env.rbuild().args(["-t", &reference, "-o", &output]).arg(context().path()).run().assert_success();
    assert_eq!(load_and_run(&env, &archive, &reference), "podman reads rbuild archives\n");
}
