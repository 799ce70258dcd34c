//! Pushing to a registry: Debian's docker-registry on 127.0.0.1 (anonymous, htpasswd, bearer
//! tokens), the pushed image pulled and run by Docker and inspected by skopeo; a base pulled
//! from one repository is mounted, not uploaded, into another; a registry that fails an upload
//! with 500 and drops the next one still gets the push; refusals carry the registry's word.

use rbuild_e2e::fault_proxy::FaultProxy;
use rbuild_e2e::process::run_tool;
use rbuild_e2e::registry::{build_base, Registry};
use rbuild_e2e::token_server::TokenServer;
use rbuild_e2e::{Context, Docker, TestEnv};

/// The id of a base image (see `build_base`) loaded into `env`'s store from its archive.
fn loaded_base(env: &TestEnv, marker: &str) -> String {
    let base = build_base(env, marker);
    env.rbuild().args(["load", "-i"]).arg(&base.archive).run().assert_success();
    let ids = env.rbuild().args(["images", "-q"]).run().stdout_text();
    ids.lines().next().expect("an image").trim().to_string()
}

#[test]
fn a_pushed_build_runs_in_docker_and_its_base_layers_are_mounted() {
    let producer = TestEnv::new("push-producer");
    let base_image = build_base(&producer, "from-base");
    let registry = Registry::start();
    let base = registry.push_archive(&base_image.archive, "e2e/base:1");

    let env = TestEnv::new("push-build");
    let ctx = Context::new();
    ctx.dockerfile(&[&format!("FROM {base}"), "RUN echo pushed > /pushed", r#"CMD ["cat","/pushed"]"#]);
    let app = format!("{}/e2e/app:1", registry.host());
    let metadata = env.path("metadata.json");
    let out = env.rbuild().args(["build", "--push", "-t", &app, "--metadata-file"]).arg(&metadata).arg(ctx.path()).run();
    out.assert_success();
    out.assert_stderr_contains(&format!("mounted from {}/e2e/base", registry.host()));
    let log = registry.log();
    assert!(log.contains("mount=sha256") && log.contains("from=e2e%2Fbase"), "no cross-repository mount in the log:\n{log}");

    // --metadata-file names what the registry serves.
    let metadata: serde_json::Value = serde_json::from_slice(&std::fs::read(&metadata).unwrap()).unwrap();
    assert_eq!(metadata["containerimage.digest"], registry.manifest_digest("e2e/app:1").as_str());
    let inspected = run_tool("skopeo", &["inspect", "--tls-verify=false", &format!("docker://{app}")]).stdout_text();
    assert!(inspected.contains("\"Layers\""), "{inspected}");

    let docker = Docker::get();
    let pulled = docker.adopt(&app);
    docker.ok(&["pull", &app]);
    assert_eq!(pulled.run(&[]), "pushed\n");
    assert_eq!(pulled.read("/marker"), "from-base\n");

    // `rbuild push IMAGE DEST` to two more names: nothing is uploaded again.
    for dest in ["e2e/copy:2", "e2e/app:latest"] {
        let dest = format!("{}/{dest}", registry.host());
        let out = env.rbuild().args(["push", &app, &dest]).run();
        out.assert_success();
        out.assert_stderr_contains("0 uploaded");
    }
    // -o type=registry with several names, zstd layers.
    let names = format!("type=registry,name={0}/e2e/z:1,name={0}/e2e/z:2,compression=zstd", registry.host());
    env.rbuild().args(["build", "-o", &names]).arg(ctx.path()).run().assert_success();
    let manifest = registry.manifest("e2e/z:2");
    let media = manifest["layers"][1]["mediaType"].as_str().unwrap_or_default().to_string();
    assert!(media.ends_with("zstd"), "{manifest}");
}

#[test]
fn a_push_gets_through_a_failed_and_a_dropped_upload() {
    let env = TestEnv::new("push-faults");
    // `rbuild push` of an image that was loaded, not built.
    let id = loaded_base(&env, "faulty");
    let registry = Registry::start();
    let proxy = FaultProxy::start(registry.port());
    let dest = format!("{}/e2e/loaded:1", proxy.host());
    let out = env.rbuild().args(["push", &id, &dest]).run();
    out.assert_success();
    out.assert_stderr_contains("the registry answered HTTP 500; trying again");
    assert!(proxy.uploads() >= 3, "{}", out.describe());
    let digest = out.stdout_text();
    assert!(digest.contains(&registry.manifest_digest("e2e/loaded:1")), "{digest}");
    // A rerun finds everything there.
    let again = env.rbuild().args(["push", &id, &dest]).run();
    again.assert_success();
    again.assert_stderr_contains("0 uploaded");
}

#[test]
fn refusals_say_who_refused_and_why() {
    let env = TestEnv::new("push-auth");
    let id = loaded_base(&env, "auth");

    let registry = Registry::start_with_auth("alice", "s3cret-pw");
    let dest = format!("{}/e2e/private:1", registry.host());
    let empty = tempfile::tempdir().unwrap();
    let out = env.rbuild().env("DOCKER_CONFIG", empty.path()).args(["push", &id, &dest]).run();
    out.assert_code(1);
    out.assert_stderr_contains(&format!("pushing {dest}"));
    out.assert_stderr_contains("requires authentication");
    let wrong = registry.docker_config("alice", "wrong");
    let out = env.rbuild().env("DOCKER_CONFIG", wrong.path()).args(["push", &id, &dest]).run();
    out.assert_code(1);
    out.assert_stderr_contains("refused the credentials of alice");
    let right = registry.docker_config("alice", "s3cret-pw");
    env.rbuild().env("DOCKER_CONFIG", right.path()).args(["push", &id, &dest]).run().assert_success();
    assert!(registry.manifest_digest("e2e/private:1").starts_with("sha256:"));

    // Bearer tokens with pull,push scope.
    let tokens = TokenServer::start(&[("bob", "t0ken-pw")], &[]);
    let registry = Registry::start_with_token_auth(&tokens, "bob", "t0ken-pw");
    let dest = format!("{}/e2e/tokened:1", registry.host());
    let config = registry.docker_config("bob", "t0ken-pw");
    env.rbuild().env("DOCKER_CONFIG", config.path()).args(["push", &id, &dest]).run().assert_success();
    assert!(registry.manifest_digest("e2e/tokened:1").starts_with("sha256:"));
}

#[test]
fn a_compression_level_changes_the_pushed_layer() {
    let env = TestEnv::new("push-level");
    let ctx = Context::new();
    let text: String = (0..50_000).map(|i| format!("line {i} of a layer worth compressing\n")).collect();
    ctx.file("data.txt", &text);
    ctx.dockerfile(&["FROM scratch", "COPY data.txt /data.txt"]);
    let registry = Registry::start();
    let host = registry.host();
    // Stored as built (a plain tar), then pushed at the default level and at level 9.
    env.rbuild().args(["build", "-t", "level:1"]).arg(ctx.path()).run().assert_success();
    env.rbuild().args(["push", "level:1", &format!("{host}/e2e/level:default")]).run().assert_success();
    env.rbuild().args(["push", "--compression-level", "9", "level:1", &format!("{host}/e2e/level:9")]).run().assert_success();
    let layer = |tag: &str| registry.manifest(&format!("e2e/level:{tag}"))["layers"][0]["digest"].as_str().unwrap_or_default().to_string();
    assert_ne!(layer("default"), layer("9"), "level 9 pushed the default level's layer");
    // A build that pushes at level 9 compresses its layer the same way; zstd takes a level too.
    let out = format!("type=registry,name={host}/e2e/level:built9,compression-level=9");
    env.rbuild().args(["build", "-o", &out]).arg(ctx.path()).run().assert_success();
    assert_eq!(layer("built9"), layer("9"));
    let out = format!("type=registry,name={host}/e2e/level:zstd19,compression=zstd,compression-level=19");
    env.rbuild().args(["build", "-o", &out]).arg(ctx.path()).run().assert_success();
    let zstd = registry.manifest("e2e/level:zstd19");
    assert!(zstd["layers"][0]["mediaType"].as_str().unwrap_or_default().ends_with("zstd"), "{zstd}");
    // Out of range: a usage error.
    let refused = env.rbuild().args(["push", "--compression-level", "10", "level:1", &format!("{host}/e2e/level:10")]).run();
    refused.assert_code(2);
    refused.assert_stderr_contains("out of range for gzip");
}

#[test]
fn a_token_registry_mounts_across_repositories_and_takes_identity_tokens() {
    let env = TestEnv::new("push-tokens");
    let id = loaded_base(&env, "tokens");
    let tokens = TokenServer::start(&[("bob", "t0ken-pw")], &[("refresh-bob", "bob")]);
    let registry = Registry::start_with_token_auth(&tokens, "bob", "t0ken-pw");
    let host = registry.host();
    let config = registry.docker_config("bob", "t0ken-pw");
    let push = |config: &std::path::Path, repository: &str| {
        let out = env.rbuild().env("DOCKER_CONFIG", config).args(["push", &id, &format!("{host}/{repository}:1")]).run();
        out.assert_success();
        out
    };
    push(config.path(), "e2e/first");
    // The second repository mounts every blob from the first: the token has `pull` there.
    let out = push(config.path(), "e2e/second");
    out.assert_stderr_contains(&format!("mounted from {host}/e2e/first"));
    out.assert_stderr_contains("0 uploaded");
    let log = registry.log();
    let mounts: Vec<&str> = log.lines().filter(|l| l.contains("mount=sha256") && l.contains("e2e/second")).collect();
    assert!(!mounts.is_empty() && mounts.iter().all(|l| l.contains(" 201 ")), "mounts not answered 201:\n{log}");
    let asked = tokens.requests();
    assert!(
        asked.iter().any(|r| r.params.get("scope").is_some_and(|s| s.contains(&"repository:e2e/second:pull,push".to_string())
            && s.contains(&"repository:e2e/first:pull".to_string()))),
        "no token for both repositories: {asked:?}"
    );

    // An identity token (`docker login` to an OAuth2 token server) pushes: its exchange asks
    // for `pull,push`, and `pull` on the mount's source.
    let identity = registry.docker_config_identity_token("bob", "refresh-bob");
    let out = push(identity.path(), "e2e/third");
    out.assert_stderr_contains(&format!("mounted from {host}/e2e/second"));
    let exchanged = tokens.requests().into_iter().filter(|r| r.method == "POST").collect::<Vec<_>>();
    assert!(
        exchanged.iter().any(|r| r.granted && r.param("scope") == "repository:e2e/third:pull,push repository:e2e/second:pull"),
        "{exchanged:?}"
    );
    assert!(registry.manifest_digest("e2e/third:1").starts_with("sha256:"));
}

#[test]
fn a_registry_that_asks_for_chunks_gets_them_no_smaller_than_it_asks() {
    const MIN: usize = 10 << 20;
    let env = TestEnv::new("push-chunks");
    let ctx = Context::new();
    // 25 MiB that gzip cannot shrink: a layer of three chunks.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..25usize << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    ctx.file("noise.bin", &noise);
    ctx.dockerfile(&["FROM scratch", "COPY noise.bin /noise.bin"]);
    let registry = Registry::start();
    let proxy = FaultProxy::asking_for_chunks(registry.port(), MIN as u64);
    let dest = format!("{}/e2e/chunked:1", proxy.host());
    let out = env.rbuild().args(["build", "-o", &format!("type=registry,name={dest}")]).arg(ctx.path()).run();
    out.assert_success();
    assert!(registry.manifest_digest("e2e/chunked:1").starts_with("sha256:"));

    // The PATCHes of each session (its upload URL), in order: all but the last at least MIN.
    let requests = proxy.requests();
    let mut sessions: Vec<(String, Vec<usize>)> = Vec::new();
    for (line, length) in &requests {
        let Some(target) = line.strip_prefix("PATCH ") else { continue };
        let session = target.split(['?', ' ']).next().unwrap_or_default().to_string();
        match sessions.iter_mut().find(|(s, _)| *s == session) {
            Some((_, lengths)) => lengths.push(*length),
            None => sessions.push((session, vec![*length])),
        }
    }
    assert!(sessions.len() >= 2, "the layer and the config go up in chunks: {requests:?}");
    assert!(sessions.iter().any(|(_, lengths)| lengths.len() >= 3), "{sessions:?}");
    for (session, lengths) in &sessions {
        let (_, all_but_last) = lengths.split_last().unwrap();
        assert!(all_but_last.iter().all(|l| *l >= MIN), "{session}: {lengths:?}");
    }
    // Each session is closed by a PUT ?digest= without a body.
    let closes: Vec<&(String, usize)> = requests.iter().filter(|(l, _)| l.starts_with("PUT ") && l.contains("digest=")).collect();
    assert!(closes.len() == sessions.len() && closes.iter().all(|(_, length)| *length == 0), "{requests:?}");
}
