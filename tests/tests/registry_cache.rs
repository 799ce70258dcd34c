//! The build cache shared through a registry or a directory (`--cache-to`, `--cache-from`):
//! two runners (two stores) and one local registry (Debian's docker-registry: anonymous,
//! htpasswd, tokens). Runner A builds, pushes and exports its cache; runner B, with an empty
//! store, builds the same context from that cache without running a step (a counter file
//! that each RUN appends to through a cache mount in the runner's `--cache-mount-dir`, on the
//! host, proves it) and without downloading a cached layer (the registry's access log).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rbuild_e2e::process::{run_tool, RunOutput};
use rbuild_e2e::registry::{build_base, Registry};
use rbuild_e2e::token_server::TokenServer;
use rbuild_e2e::{Context, Docker, TestEnv};

/// A runner: its own store and its own cache-mount directory.
struct Runner {
    env: TestEnv,
    mounts: PathBuf,
}

impl Runner {
    fn new(name: &str) -> Runner {
        let env = TestEnv::new(name);
        let mounts = env.path("cache-mounts");
        Runner { env, mounts }
    }

    fn build(&self, ctx: &Context, args: &[&str]) -> RunOutput {
        self.env
            .rbuild()
            .args(["build", "--progress", "plain", "--cache-mount-dir"])
            .arg(&self.mounts)
            .args(args)
            .arg(ctx.path())
            .run()
    }

    /// What the RUN steps of this runner appended to the counter, one line a run.
    fn runs(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for file in files_named(&self.mounts, "count") {
            lines.extend(
                std::fs::read_to_string(file)
                    .unwrap()
                    .lines()
                    .map(str::to_string),
            );
        }
        lines.sort();
        lines
    }
}

fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            found.extend(files_named(&path, name));
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
    found
}

/// The base every test builds on, pushed to `registry` as `e2e/base:1`.
fn pushed_base(registry: &Registry) -> String {
    let producer = TestEnv::new("cache-base");
    let base = build_base(&producer, "cache-base");
    registry.push_archive(&base.archive, "e2e/base:1")
}

/// A context whose two RUNs count their runs, and a file each reads.
fn counting_context(base: &str) -> Context {
    let ctx = Context::new();
    ctx.file("a.txt", "a\n").file("b.txt", "b\n");
    ctx.dockerfile(&[
        &format!("FROM {base}"),
        "COPY a.txt /a.txt",
        "RUN --mount=type=cache,id=counter,target=/counter echo first >> /counter/count && cp /a.txt /a.copy",
        "COPY b.txt /b.txt",
        "RUN --mount=type=cache,id=counter,target=/counter echo second >> /counter/count && cp /b.txt /b.copy",
        r#"CMD ["cat","/a.copy","/b.copy"]"#,
    ]);
    ctx
}

fn cached_steps(out: &RunOutput) -> usize {
    out.stderr_text()
        .lines()
        .filter(|l| l.ends_with(" CACHED"))
        .count()
}

/// The blob digests the registry served with `GET /v2/<repository>/blobs/<digest>`.
fn blob_gets(registry: &Registry) -> BTreeSet<String> {
    registry
        .log()
        .lines()
        .filter(|l| l.contains("\"GET /v2/") && l.contains("/blobs/sha256:"))
        .filter_map(|l| {
            l.split("/blobs/")
                .nth(1)
                .and_then(|rest| rest.split([' ', '"', '?']).next())
                .map(str::to_string)
        })
        .collect()
}

fn layer_digests(manifest: &serde_json::Value) -> BTreeSet<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_second_runner_builds_from_the_registry_cache_without_running_or_downloading_a_step() {
    let registry = Registry::start();
    let host = registry.host();
    let base = pushed_base(&registry);
    let ctx = counting_context(&base);
    let cache = format!("{host}/e2e/cache:main");

    // Runner A: builds, pushes, exports every step.
    let a = Runner::new("cache-runner-a");
    let app = format!("{host}/e2e/app:1");
    let out = a.build(
        &ctx,
        &[
            "--push",
            "-t",
            &app,
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
        ],
    );
    out.assert_success();
    out.assert_stderr_contains(&format!("exporting cache to {cache}"));
    assert_eq!(a.runs(), ["first", "second"]);
    let manifest = registry.manifest("e2e/cache:main");
    assert_eq!(
        manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{manifest}"
    );
    assert_eq!(
        manifest["config"]["mediaType"], "application/vnd.rbuild.cache.config.v1+json",
        "{manifest}"
    );
    let cached_layers = layer_digests(&manifest);
    assert_eq!(cached_layers.len(), 4, "two COPYs and two RUNs: {manifest}");

    let docker = Docker::get();
    let pulled = docker.adopt(&app);
    docker.ok(&["pull", &app]);
    assert_eq!(pulled.run(&[]), "a\nb\n");
    let inspected = run_tool(
        "skopeo",
        &["inspect", "--tls-verify=false", &format!("docker://{app}")],
    )
    .stdout_text();
    assert!(inspected.contains("\"Layers\""), "{inspected}");

    // Runner B, empty store: every step is a hit, nothing runs, no cached layer is downloaded,
    // and the push to another repository of the registry mounts the layers.
    let b = Runner::new("cache-runner-b");
    let gets_before = blob_gets(&registry);
    let app_b = format!("{host}/e2e/app-b:1");
    let out = b.build(&ctx, &["--push", "-t", &app_b, "--cache-from", &cache]);
    out.assert_success();
    assert_eq!(cached_steps(&out), 4, "{}", out.describe());
    assert!(b.runs().is_empty(), "runner B ran a step: {:?}", b.runs());
    assert_eq!(
        registry.manifest_digest("e2e/app-b:1"),
        registry.manifest_digest("e2e/app:1"),
        "the same image"
    );
    let downloaded: Vec<String> = blob_gets(&registry)
        .difference(&gets_before)
        .filter(|d| cached_layers.contains(*d))
        .cloned()
        .collect();
    assert!(
        downloaded.is_empty(),
        "runner B downloaded cached layers {downloaded:?}"
    );
    let log = registry.log();
    assert!(
        log.contains("from=e2e%2Fcache"),
        "no mount from the cache's repository:\n{log}"
    );

    // A one-file change: only what follows it runs, over layers fetched now.
    ctx.file("b.txt", "b changed\n");
    let out = b.build(
        &ctx,
        &["-t", "app-b:2", "--cache-from", &cache, "--explain-cache"],
    );
    out.assert_success();
    out.assert_stderr_contains("files changed: b.txt");
    assert_eq!(b.runs(), ["second"], "{}", out.describe());
    assert_eq!(cached_steps(&out), 2, "{}", out.describe());
}

#[test]
fn a_cache_directory_round_trips_and_a_missing_cache_is_a_warning() {
    let registry = Registry::start();
    let base = pushed_base(&registry);
    let ctx = counting_context(&base);
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("ci-cache");

    let a = Runner::new("cache-local-a");
    let out = a.build(
        &ctx,
        &[
            "-t",
            "local-a:1",
            "--cache-to",
            &format!("type=local,dest={},mode=max", cache_dir.display()),
        ],
    );
    out.assert_success();
    assert!(cache_dir.join("index.json").is_file() && cache_dir.join("oci-layout").is_file());
    let id_a = a
        .env
        .rbuild()
        .args(["images", "-q", "local-a:1"])
        .run()
        .stdout_text();

    // Runner B writes an archive: the layers are copied from the directory, verified.
    let b = Runner::new("cache-local-b");
    let archive = b.env.path("b.tar");
    let name = format!(
        "rbuild-e2e-cache-local:{}",
        rbuild_e2e::env::unique_suffix()
    );
    let missing = format!("{}/e2e/nothing:1", registry.host());
    let out = b
        .env
        .rbuild()
        .args([
            "build",
            "--progress",
            "plain",
            "-t",
            &name,
            "--cache-mount-dir",
        ])
        .arg(&b.mounts)
        .args([
            "--cache-from",
            &format!("type=local,src={}", cache_dir.display()),
            "--cache-from",
            &missing,
            "-o",
        ])
        .arg(&archive)
        .arg(ctx.path())
        .run();
    out.assert_success();
    out.assert_stderr_contains(&format!("cache {missing} not found"));
    assert_eq!(cached_steps(&out), 4, "{}", out.describe());
    assert!(b.runs().is_empty());
    let id_b = b
        .env
        .rbuild()
        .args(["images", "-q", &name])
        .run()
        .stdout_text();
    assert!(id_a.trim().len() >= 12, "no image id: {id_a:?}");
    assert_eq!(id_a, id_b);
    let docker = Docker::get();
    let loaded = docker.load_as(&archive, &name);
    assert_eq!(loaded.run(&[]), "a\nb\n");
}

#[test]
fn mode_min_exports_the_final_chain_and_mode_max_every_stage() {
    let registry = Registry::start();
    let host = registry.host();
    let base = pushed_base(&registry);
    let ctx = Context::new();
    ctx.file("src.txt", "source\n");
    ctx.dockerfile(&[
        &format!("FROM {base} AS build"),
        "COPY src.txt /src.txt",
        "RUN --mount=type=cache,id=counter,target=/counter echo build >> /counter/count && cp /src.txt /built",
        &format!("FROM {base}"),
        "COPY --from=build /built /app",
        r#"CMD ["cat","/app"]"#,
    ]);
    let a = Runner::new("cache-modes-a");
    for mode in ["min", "max"] {
        let spec = format!("type=registry,ref={host}/e2e/modes:{mode},mode={mode}");
        a.build(&ctx, &["--cache-to", &spec]).assert_success();
    }
    let min = layer_digests(&registry.manifest("e2e/modes:min"));
    let max = layer_digests(&registry.manifest("e2e/modes:max"));
    assert_eq!(min.len(), 1, "the final stage's COPY only: {min:?}");
    assert_eq!(max.len(), 3, "and the build stage's COPY and RUN: {max:?}");
    assert!(min.is_subset(&max));

    // From the min cache the build stage runs again (its result decides the COPY's key);
    // from the max cache nothing runs.
    let b = Runner::new("cache-modes-b");
    b.build(&ctx, &["--cache-from", &format!("{host}/e2e/modes:min")])
        .assert_success();
    assert_eq!(b.runs(), ["build"]);
    let c = Runner::new("cache-modes-c");
    let out = c.build(&ctx, &["--cache-from", &format!("{host}/e2e/modes:max")]);
    out.assert_success();
    assert!(c.runs().is_empty(), "{}", out.describe());
}

#[test]
fn cache_exports_to_registries_with_auth_and_refusals_are_clear() {
    let registry = Registry::start_with_auth("alice", "s3cret-pw");
    let host = registry.host();
    let right = registry.docker_config("alice", "s3cret-pw");
    let base = pushed_base_with(&registry, right.path());
    let ctx = counting_context(&base);
    let cache = format!("{host}/e2e/private-cache:1");
    let a = Runner::new("cache-auth-a");
    // The base pull needs the credentials; the export does not get them.
    let without = |extra: &str| {
        a.env
            .rbuild()
            .env("DOCKER_CONFIG", right.path())
            .args(["pull", &base])
            .run()
            .assert_success();
        let empty = tempfile::tempdir().unwrap();
        a.env
            .rbuild()
            .env("DOCKER_CONFIG", empty.path())
            .args(["build", "--progress", "plain", "--cache-mount-dir"])
            .arg(&a.mounts)
            .args(["--cache-to", &format!("type=registry,ref={cache}{extra}")])
            .arg(ctx.path())
            .run()
    };
    let warned = without("");
    warned.assert_success();
    warned.assert_stderr_contains("exporting the cache to");
    warned.assert_stderr_contains("requires authentication");
    let failed = without(",ignore-error=false");
    failed.assert_code(1);
    failed.assert_stderr_contains("requires authentication");

    let out = a
        .env
        .rbuild()
        .env("DOCKER_CONFIG", right.path())
        .args(["build", "--progress", "plain", "--cache-mount-dir"])
        .arg(&a.mounts)
        .args(["--cache-to", &format!("type=registry,ref={cache},mode=max")])
        .arg(ctx.path())
        .run();
    out.assert_success();
    assert_eq!(
        layer_digests(&registry.manifest("e2e/private-cache:1")).len(),
        4
    );

    // Bearer tokens: export with pull,push, import with pull.
    let tokens = TokenServer::start(&[("bob", "t0ken-pw")], &[]);
    let tokened = Registry::start_with_token_auth(&tokens, "bob", "t0ken-pw");
    let config = tokened.docker_config("bob", "t0ken-pw");
    let tokened_base = pushed_base_with(&tokened, config.path());
    let ctx = counting_context(&tokened_base);
    let cache = format!("{}/e2e/token-cache:1", tokened.host());
    let t = Runner::new("cache-token-a");
    let out = t
        .env
        .rbuild()
        .env("DOCKER_CONFIG", config.path())
        .args(["build", "--progress", "plain", "--cache-mount-dir"])
        .arg(&t.mounts)
        .args([
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max,ignore-error=false"),
        ])
        .arg(ctx.path())
        .run();
    out.assert_success();
    let u = Runner::new("cache-token-b");
    let out = u
        .env
        .rbuild()
        .env("DOCKER_CONFIG", config.path())
        .args(["build", "--progress", "plain", "--cache-mount-dir"])
        .arg(&u.mounts)
        .args(["--cache-from", &cache])
        .arg(ctx.path())
        .run();
    out.assert_success();
    assert_eq!(cached_steps(&out), 4, "{}", out.describe());
    assert!(u.runs().is_empty());
}

/// The base, pushed to a registry that wants credentials (those in `config`).
fn pushed_base_with(registry: &Registry, config: &Path) -> String {
    let producer = TestEnv::new("cache-base-auth");
    let base = build_base(&producer, "cache-base");
    producer
        .rbuild()
        .args(["load", "-i"])
        .arg(&base.archive)
        .run()
        .assert_success();
    let id = producer
        .rbuild()
        .args(["images", "-q"])
        .run()
        .stdout_text()
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_string();
    let dest = format!("{}/e2e/base:1", registry.host());
    producer
        .rbuild()
        .env("DOCKER_CONFIG", config)
        .args(["push", &id, &dest])
        .run()
        .assert_success();
    dest
}

#[test]
fn bad_cache_specs_are_usage_errors_naming_the_key() {
    let env = TestEnv::new("cache-specs");
    let ctx = Context::new();
    ctx.dockerfile(&["FROM scratch"]);
    for (flag, spec, says) in [
        (
            "--cache-to",
            "type=registry,ref=r.example/c:1,mode=all",
            "mode=",
        ),
        ("--cache-to", "type=local", "dest="),
        ("--cache-from", "type=local", "src="),
        ("--cache-to", "type=s3,ref=r.example/c:1", "s3"),
    ] {
        let out = env
            .rbuild()
            .args(["build", flag, spec])
            .arg(ctx.path())
            .run();
        out.assert_code(2);
        out.assert_stderr_contains(says);
    }
}

#[test]
fn mounts_true_carries_cache_mounts_to_a_runner_that_has_none() {
    let registry = Registry::start();
    let host = registry.host();
    let base = pushed_base(&registry);
    let ctx = counting_context(&base);
    let cache = format!("{host}/e2e/mounts-cache:1");
    let a = Runner::new("cache-mounts-a");
    a.build(
        &ctx,
        &[
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max,mounts=true,ignore-error=false"),
        ],
    )
    .assert_success();
    let manifest = registry.manifest("e2e/mounts-cache:1");
    let annotated: Vec<&serde_json::Value> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["annotations"]["dev.rbuild.cache.mount.id"] == "counter")
        .collect();
    assert_eq!(annotated.len(), 1, "{manifest}");

    // Runner B has no cache mount: it gets A's, and runs nothing.
    let b = Runner::new("cache-mounts-b");
    let out = b.build(&ctx, &["--cache-from", &cache]);
    out.assert_success();
    out.assert_stderr_contains("restored cache mounts from the cache: counter");
    assert_eq!(b.runs(), ["first", "second"], "A's cache mount, restored");
    // A runner with a cache mount of its own keeps it.
    std::fs::write(&files_named(&b.mounts, "count")[0], "mine\n").unwrap();
    b.build(&ctx, &["--cache-from", &cache]).assert_success();
    assert_eq!(b.runs(), ["mine"]);
}
