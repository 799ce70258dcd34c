//! `rbuild executor`, kaniko's command line, run the way pipelines run kaniko: rbuild's own
//! image (`scripts/image.sh`) in an ordinary `docker run` (no `--privileged`, no added
//! capabilities, Docker's default seccomp profile), with the invocations of GitLab's and
//! Tekton's published kaniko examples, against a local registry (`--network host` reaches its
//! loopback port). Also the CI templates of `examples/ci/`, parsed and their command lines run,
//! the `executor` symlink, and flag errors.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use rbuild_e2e::context::Context;
use rbuild_e2e::docker::Docker;
use rbuild_e2e::env::{rbuild_bin, unique_suffix, TestEnv};
use rbuild_e2e::image::{build_archive, rbuild_image};
use rbuild_e2e::process::{self, RunOutput};
use rbuild_e2e::registry::{build_base, Registry};

/// A context whose build runs a RUN step: the image says `built` when run.
fn app_context() -> Context {
    let ctx = Context::with_busybox();
    ctx.file(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox mkdir -p /out && /bin/busybox echo built > /out/file\"]\n\
         CMD [\"/bin/busybox\", \"cat\", \"/out/file\"]\n",
    );
    // The non-root tests' user must read it.
    fs::set_permissions(ctx.path(), fs::Permissions::from_mode(0o755)).unwrap();
    ctx
}

/// A directory the container writes its outputs to (any user may).
fn out_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("rbuild-e2e-executor-out-").tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

fn volume(host: &Path, inside: &str) -> String {
    format!("{}:{inside}", host.display())
}

/// `docker run --rm --network host DOCKER_ARGS… rbuild-image ARGS…` (the image's entrypoint
/// is /kaniko/executor, as kaniko's is).
fn in_container(docker_args: &[&str], args: &[&str]) -> RunOutput {
    let mut all = vec!["run", "--rm", "--network", "host"];
    all.extend_from_slice(docker_args);
    all.push(rbuild_image());
    all.extend_from_slice(args);
    Docker::get().command(&all)
}

/// Pulls `reference` into Docker, runs it and removes it: what the pushed image says.
fn run_pushed(reference: &str) -> String {
    let docker = Docker::get();
    docker.ok(&["pull", "-q", reference]);
    let said = docker.ok(&["run", "--rm", reference]);
    docker.rmi(reference);
    said
}

#[test]
fn gitlab_invocation_pushes_and_writes_the_digest_files() {
    let registry = Registry::start();
    let ctx = app_context();
    let out = out_dir();
    let repository = format!("group/app-{}", unique_suffix());
    let destination = format!("{}/{repository}:v1", registry.host());
    // GitLab's documented kaniko job, with its variables filled in.
    let run = in_container(
        &["-v", &volume(ctx.path(), "/builds/group/app"), "-v", &volume(out.path(), "/out")],
        &[
            "--context",
            "/builds/group/app",
            "--dockerfile",
            "/builds/group/app/Dockerfile",
            "--destination",
            &destination,
            "--digest-file=/out/digest",
            "--image-name-with-digest-file",
            "/out/name",
            "--image-name-tag-with-digest-file=/out/name-tag",
        ],
    );
    run.assert_success();
    // Root in an unprivileged container may not make namespaces: chroot, and it says why.
    run.assert_stderr_contains("isolation: chroot: root, but unshare was refused");
    let pushed = registry.manifest_digest(&format!("{repository}:v1"));
    assert!(pushed.starts_with("sha256:"), "{pushed}");
    assert_eq!(fs::read_to_string(out.path().join("digest")).unwrap(), pushed);
    let repo = format!("{}/{repository}", registry.host());
    assert_eq!(fs::read_to_string(out.path().join("name")).unwrap(), format!("{repo}@{pushed}\n"));
    assert_eq!(fs::read_to_string(out.path().join("name-tag")).unwrap(), format!("{repo}:v1@{pushed}\n"));
    assert_eq!(run_pushed(&destination).trim(), "built");
}

/// `repository:tag` in `registry` is an rbuild build cache: an OCI manifest whose config is
/// the cache record (skopeo inspects only its raw form: it is not an image).
fn assert_is_cache(registry: &Registry, repository_and_tag: &str) {
    let manifest = registry.manifest(repository_and_tag);
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.rbuild.cache.config.v1+json", "no registry cache at {repository_and_tag}: {manifest}");
}

/// How many RUN steps the plain progress of `run` shows as `CACHED` (`#N [...] RUN …`, then
/// `#N CACHED`).
fn cached_runs(run: &RunOutput) -> usize {
    let text = run.stderr_text();
    let runs: Vec<&str> = text.lines().filter(|l| l.contains("] RUN ")).filter_map(|l| l.split_whitespace().next()).collect();
    runs.iter().filter(|n| text.lines().any(|l| l.trim() == format!("{n} CACHED"))).count()
}

#[test]
fn a_second_run_with_cache_hits_the_registry_cache() {
    let registry = Registry::start();
    let ctx = app_context();
    let repository = format!("group/cached-{}", unique_suffix());
    let destination = format!("{}/{repository}:v1", registry.host());
    let args = ["--context", "/workspace", "--destination", destination.as_str(), "--cache=true"];
    // Each run is a fresh container, so a fresh store: only the registry carries the cache.
    let first = in_container(&["-v", &volume(ctx.path(), "/workspace")], &args);
    first.assert_success();
    assert_is_cache(&registry, &format!("{repository}/cache:buildcache"));
    let first_digest = registry.manifest_digest(&format!("{repository}:v1"));
    assert_eq!(cached_runs(&first), 0, "the first run has no cache:\n{}", first.stderr_text());
    let second = in_container(&["-v", &volume(ctx.path(), "/workspace")], &args);
    second.assert_success();
    assert_eq!(cached_runs(&second), 1, "the second run's RUN must come from the registry cache:\n{}", second.stderr_text());
    assert_eq!(registry.manifest_digest(&format!("{repository}:v1")), first_digest);
    assert_eq!(run_pushed(&destination).trim(), "built");
}

#[test]
fn no_push_tar_path_loads_in_docker() {
    let ctx = app_context();
    let out = out_dir();
    let name = format!("rbuild-e2e/executor-tar-{}:1", unique_suffix());
    let run = in_container(
        &["-v", &volume(ctx.path(), "/workspace"), "-v", &volume(out.path(), "/out")],
        &["--no-push", "--destination", &name, "--tar-path", "/out/image.tar", "--digest-file", "/out/digest", "--reproducible"],
    );
    run.assert_success();
    let loaded = Docker::get().load_as(&out.path().join("image.tar"), &name);
    assert_eq!(loaded.run(&[]).trim(), "built");
    assert_eq!(loaded.inspect()["Created"], "1970-01-01T00:00:00Z", "--reproducible sets the image's time to 0");
    assert!(fs::read_to_string(out.path().join("digest")).unwrap().starts_with("sha256:"));
}

#[test]
fn tar_context_from_stdin() {
    let ctx = app_context();
    let out = out_dir();
    let mut tarball = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    tarball.append_dir_all(".", ctx.path()).unwrap();
    let gz = tarball.into_inner().unwrap().finish().unwrap();
    let docker_bin = std::env::var("RBUILD_TEST_DOCKER").unwrap_or_else(|_| "/usr/bin/docker".into());
    let name = format!("rbuild-e2e/executor-stdin-{}:1", unique_suffix());
    let mut cmd = Command::new(docker_bin);
    cmd.args(["run", "--rm", "-i", "--network", "host", "-v", &volume(out.path(), "/out"), rbuild_image()]);
    cmd.args(["--context", "tar://stdin", "--no-push", "--destination", &name, "--tar-path", "/out/image.tar"]);
    process::run(cmd, Some(gz)).assert_success();
    let loaded = Docker::get().load_as(&out.path().join("image.tar"), &name);
    assert_eq!(loaded.run(&[]).trim(), "built");
}

/// As a non-root user where user namespaces are allowed (here: a seccomp profile that permits
/// them), with a read-only root filesystem: the store falls back to /tmp.
#[test]
fn non_root_with_user_namespaces_builds() {
    let ctx = app_context();
    let out = out_dir();
    let name = format!("rbuild-e2e/executor-rootless-{}:1", unique_suffix());
    let run = in_container(
        &[
            "--user",
            "1000:1000",
            "--security-opt",
            "seccomp=unconfined",
            "--read-only",
            "--tmpfs",
            "/tmp:rw,exec,size=512m",
            "-v",
            &volume(ctx.path(), "/workspace"),
            "-v",
            &volume(out.path(), "/out"),
        ],
        &["--no-push", "--destination", &name, "--tar-path", "/out/image.tar"],
    );
    run.assert_success();
    run.assert_stderr_contains("isolation: ");
    run.assert_stderr_contains("rootless, in a user namespace");
    assert_eq!(Docker::get().load_as(&out.path().join("image.tar"), &name).run(&[]).trim(), "built");
}

/// Neither root nor user namespaces (Docker's default seccomp profile refuses them): rbuild
/// says so, with the options, before any step runs.
#[test]
fn non_root_without_user_namespaces_says_what_to_do() {
    let ctx = app_context();
    let run = in_container(&["--user", "1000:1000", "-v", &volume(ctx.path(), "/workspace")], &["--no-push"]);
    run.assert_code(1);
    run.assert_stderr_contains("rbuild cannot isolate RUN steps here");
    run.assert_stderr_contains("hostUsers: false");
    assert!(!run.stderr_text().contains("#1 ["), "no step may start:\n{}", run.stderr_text());
}

#[test]
fn unknown_flags_are_errors_naming_the_flag() {
    let env = TestEnv::new("executor-unknown");
    let run = env.rbuild().args(["executor", "--no-push", "--frobnicate=1"]).run();
    run.assert_code(2);
    run.assert_stderr_contains("unknown flag: --frobnicate");
    let run = env.rbuild().args(["executor", "--no-push", "--cache", "true"]).run();
    run.assert_code(2);
    run.assert_stderr_contains("unexpected argument \"true\"");
}

#[test]
fn registry_mirror_serves_docker_hub_bases_in_order() {
    // Docker Hub is unreachable here: the base can only come from the second mirror, after the
    // first (empty) one says it lacks it.
    let producer = TestEnv::new("executor-mirror-producer");
    let base = build_base(&producer, "mirrored");
    let name = format!("rbuild-e2e-mirror-{}", unique_suffix());
    let empty = Registry::start();
    let mirror = Registry::start();
    mirror.push_archive(&base.archive, &format!("library/{name}:1"));
    let ctx = Context::new();
    ctx.dockerfile(&[&format!("FROM docker.io/library/{name}:1"), "RUN cat /marker"]);
    let env = TestEnv::new("executor-mirror");
    let context = ctx.path().to_string_lossy().into_owned();
    let run = env
        .rbuild()
        .args(["executor", "--no-push", "--context", &context, "--registry-mirror", &empty.host()])
        .args(["--registry-mirror", &mirror.host()])
        .run();
    run.assert_code(0);
    run.assert_stderr_contains(&format!("registry mirror {} cannot give {name}:1", empty.host()));
    run.assert_stderr_contains(&format!("pulling {}/library/{name}:1", mirror.host()));
    run.assert_stderr_contains("mirrored");
    // The base is stored under its Docker Hub name: a second build needs no registry.
    drop(mirror);
    let again = env.rbuild().args(["executor", "--no-push", "--context", &context]).run();
    again.assert_code(0);
    assert!(!again.stderr_text().contains("pulling"), "{}", again.stderr_text());
}

#[test]
fn executor_symlink_is_rbuild_executor() {
    let env = TestEnv::new("executor-symlink");
    let ctx = app_context();
    let bin_dir = tempfile::tempdir().unwrap();
    let link = bin_dir.path().join("executor");
    std::os::unix::fs::symlink(rbuild_bin(), &link).unwrap();
    let archive = env.path("image.tar");
    let mut cmd = Command::new(&link);
    cmd.env("RBUILD_ROOT", env.store())
        .arg(format!("--context=dir://{}", ctx.path().display()))
        .args(["--no-push", "--snapshot-mode=redo", "--tar-path"])
        .arg(&archive);
    let run = process::run(cmd, None);
    run.assert_success();
    run.assert_stderr_contains("note: --snapshot-mode: not needed");
    assert!(archive.is_file());
    let mut help = Command::new(&link);
    help.arg("--help");
    let shown = process::run(help, None);
    shown.assert_success();
    assert!(shown.stdout_text().contains("--destination"), "{}", shown.stdout_text());
}

/// A YAML file of `examples/ci` as JSON (python3-yaml reads it: Debian's YAML parser).
fn template(name: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ci").join(name);
    let mut cmd = Command::new("python3");
    cmd.args(["-c", "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)"]).arg(&path);
    let run = process::run(cmd, None);
    run.assert_success();
    serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value.as_array().unwrap_or_else(|| panic!("not a list: {value}")).iter().map(|v| v.as_str().expect("a string").to_string()).collect()
}

/// What a template's build must have done: pushed `repository:tag`, whose digest is `digest`
/// when given, with its registry cache (`--cache=true`) beside it.
fn check_pushed(registry: &Registry, repository_and_tag: &str, digest: Option<String>, run: &RunOutput) {
    run.assert_success();
    let pushed = registry.manifest_digest(repository_and_tag);
    if let Some(digest) = digest {
        assert_eq!(digest.trim(), pushed);
    }
    let cache = repository_and_tag.split(':').next().unwrap().to_string() + "/cache:buildcache";
    assert_is_cache(registry, &cache);
}

#[test]
fn gitlab_template_runs_its_script() {
    let job = &template("gitlab-ci.yml")["build-image"];
    assert_eq!(job["image"]["entrypoint"], serde_json::json!([""]));
    let script = strings(&job["script"]).join("\n");
    assert!(script.contains("/kaniko/executor"), "{script}");
    let registry = Registry::start();
    let ctx = app_context();
    let image = format!("{}/group/app-{}", registry.host(), unique_suffix());
    let env = |k: &str, v: &str| format!("{k}={v}");
    let run = Docker::get().command(&[
        "run", "--rm", "--network", "host", "--entrypoint", "/busybox/sh",
        "-e", &env("CI_REGISTRY", &registry.host()),
        "-e", "CI_REGISTRY_USER=ci", "-e", "CI_REGISTRY_PASSWORD=secret",
        "-e", &env("CI_REGISTRY_IMAGE", &image),
        "-e", "CI_COMMIT_SHORT_SHA=abc123",
        "-e", "CI_PROJECT_DIR=/builds/group/app",
        "-v", &volume(ctx.path(), "/builds/group/app"),
        rbuild_image(), "-c", &script,
    ]);
    let digest = fs::read_to_string(ctx.path().join("image.digest")).ok();
    assert!(digest.is_some(), "no image.digest:\n{}", run.describe());
    check_pushed(&registry, &format!("{}:abc123", image.split_once('/').unwrap().1), digest, &run);
}

#[test]
fn tekton_task_runs_its_step() {
    let task = template("tekton-task.yaml");
    assert_eq!(task["kind"], "Task");
    let step = &task["spec"]["steps"][0];
    let registry = Registry::start();
    let ctx = app_context();
    let results = out_dir();
    let repository = format!("team/app-{}", unique_suffix());
    let substitute = |arg: &str| {
        arg.replace("$(params.DOCKERFILE)", "./Dockerfile")
            .replace("$(params.CONTEXT)", "./")
            .replace("$(params.IMAGE)", &format!("{}/{repository}:1.0", registry.host()))
            .replace("$(workspaces.source.path)", "/workspace/source")
            .replace("$(results.IMAGE_DIGEST.path)", "/tekton/results/IMAGE_DIGEST")
    };
    let args: Vec<String> = strings(&step["args"]).iter().map(|a| substitute(a)).collect();
    let workdir = substitute(step["workingDir"].as_str().unwrap());
    let mut docker_args = vec!["-w", &workdir];
    let (source, results_mount) = (volume(ctx.path(), "/workspace/source"), volume(results.path(), "/tekton/results"));
    docker_args.extend(["-v", &source, "-v", &results_mount]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = in_container(&docker_args, &args);
    let digest = fs::read_to_string(results.path().join("IMAGE_DIGEST")).ok();
    check_pushed(&registry, &format!("{repository}:1.0"), digest, &run);
}

#[test]
fn kubernetes_job_runs_its_container() {
    let job = template("kubernetes-job.yaml");
    assert_eq!(job["kind"], "Job");
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["hostUsers"], false);
    let container = &pod["containers"][0];
    assert!(container["securityContext"].get("privileged").is_none());
    let registry = Registry::start();
    let ctx = app_context();
    let args: Vec<String> = strings(&container["args"]).iter().map(|a| a.replace("registry.example.com", &registry.host())).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = in_container(&["-v", &volume(ctx.path(), "/workspace")], &args);
    check_pushed(&registry, "team/app:1.0", None, &run);
}

#[test]
fn github_workflow_runs_its_steps() {
    let workflow = template("github-actions.yml");
    let steps = workflow["jobs"]["build"]["steps"].as_array().unwrap().clone();
    let step = |name: &str| steps.iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no step {name}")).clone();
    let registry = Registry::start();
    let ctx = app_context();
    let runner_temp = out_dir();
    let image = format!("{}/team/app-{}", registry.host(), unique_suffix());
    let run_step = |step: &serde_json::Value| {
        let mut cmd = Command::new("bash");
        cmd.args(["-e", "-c", step["run"].as_str().unwrap()])
            .env("RBUILD_IMAGE", rbuild_image())
            .env("IMAGE", &image)
            .env("GITHUB_WORKSPACE", ctx.path())
            .env("GITHUB_SHA", "0123abc")
            .env("RUNNER_TEMP", runner_temp.path())
            .env("REGISTRY_USER", "ci")
            .env("REGISTRY_TOKEN", "secret");
        if let Ok(docker) = std::env::var("RBUILD_TEST_DOCKER") {
            let dir = Path::new(&docker).parent().unwrap().to_string_lossy().into_owned();
            cmd.env("PATH", format!("{dir}:{}", std::env::var("PATH").unwrap_or_default()));
        }
        process::run(cmd, None)
    };
    run_step(&step("Registry credentials for rbuild")).assert_success();
    let config = fs::read_to_string(runner_temp.path().join("docker/config.json")).unwrap();
    assert!(config.contains(&registry.host()), "{config}");
    let run = run_step(&step("Build and push with rbuild"));
    let digest = fs::read_to_string(ctx.path().join("image.digest")).ok();
    check_pushed(&registry, &format!("{}:0123abc", image.split_once('/').unwrap().1), digest, &run);
}

/// `scripts/image.sh` twice, each with a store of its own: the same bytes (so the same digest),
/// and small.
#[test]
fn image_is_reproducible_and_small() {
    let out = out_dir();
    let (first, second) = (out.path().join("first.tar"), out.path().join("second.tar"));
    build_archive(&first, &[]);
    build_archive(&second, &[]);
    let (a, b) = (fs::read(&first).unwrap(), fs::read(&second).unwrap());
    assert!(a == b, "two runs of scripts/image.sh wrote different archives");
    assert!(a.len() < 20 << 20, "rbuild's image is {} bytes", a.len());
    // The name scripts/image.sh was given by build_archive.
    let name = "rbuild-e2e-image:build";
    let loaded = Docker::get().load_as(&first, name);
    let config = loaded.config();
    assert_eq!(config["Entrypoint"], serde_json::json!(["/kaniko/executor"]));
    assert!(config["Env"].as_array().unwrap().iter().any(|e| e == "DOCKER_CONFIG=/kaniko/.docker"), "{config}");
    let help = Docker::get().command(&["run", "--rm", name, "--help"]);
    help.assert_success();
    assert!(help.stdout_text().contains("--destination"), "{}", help.stdout_text());
}
