//! Pulling base images from a registry: Debian's docker-registry on 127.0.0.1, started by the
//! tests (anonymous, with htpasswd basic auth, and with bearer tokens from the harness's token
//! server), a base pushed to it with skopeo, built on by rbuild and the result run by Docker. No
//! public registry is ever contacted.

use rbuild_e2e::archive::sha256_hex;
use rbuild_e2e::process::run_tool;
use rbuild_e2e::registry::{build_base, Registry};
use rbuild_e2e::token_server::{self, TokenServer};
use rbuild_e2e::{Archive, Context, TestEnv};
use serde_json::{json, Value};

/// The registry with `base:1` (marker `from-base`) pushed as `e2e/base:1`.
/// Builds `ctx` with the credentials of the Docker config directory `config`, writes the image
/// to the archive `name` and loads it into Docker.
fn build_with_credentials(env: &TestEnv, ctx: &Context, config: &std::path::Path, name: &str) -> rbuild_e2e::LoadedImage {
    let archive = env.path(name);
    let tag = env.image_ref();
    env.rbuild()
        .env("DOCKER_CONFIG", config)
        .args(["build", "-t", &tag, "-o"])
        .arg(&archive)
        .arg(ctx.path())
        .run()
        .assert_success();
    rbuild_e2e::Docker::get().load_as(&archive, &tag)
}

fn registry_with_base(env: &TestEnv) -> (Registry, String) {
    let base = build_base(env, "from-base");
    let registry = Registry::start();
    let reference = registry.push_archive(&base.archive, "e2e/base:1");
    (registry, reference)
}

#[test]
fn builds_on_a_pulled_base_and_uses_it_again_without_the_registry() {
    let producer = TestEnv::new("registry-producer");
    let (mut registry, base) = registry_with_base(&producer);

    let env = TestEnv::new("registry-consumer");
    let ctx = Context::new();
    let from = format!("FROM {base}");
    let copy = format!("COPY --from={base} /marker /copied");
    ctx.dockerfile(&[&from, "RUN cat /marker > /seen && echo $BASE_VAR > /env && pwd > /pwd", &copy]);
    let built = env.build(&ctx, &[]);
    built.output.assert_stderr_contains(&format!("pulling {base}"));
    let image = built.load();
    assert_eq!(image.read("/seen"), "from-base\n");
    assert_eq!(image.read("/copied"), "from-base\n");
    assert_eq!(image.read("/env"), "from-base\n", "the base's ENV is inherited");
    assert_eq!(image.read("/pwd"), "/work\n", "the base's WORKDIR is inherited");
    assert_eq!(image.run(&[]), "from-base\n", "the base's CMD is inherited");

    // The image is in the store now: a build on it needs no registry.
    registry.stop();
    let again = Context::new();
    again.dockerfile(&[&from, "RUN echo second > /second"]);
    let second = env.build(&again, &[]);
    assert!(!second.output.stderr_text().contains("pulling"), "{}", second.output.describe());
    assert_eq!(second.load().read("/second"), "second\n");

    // --pull resolves the tag again, and says why it cannot.
    let out = env.rbuild().args(["build", "--pull"]).arg(again.path()).run();
    out.assert_code(1);
    out.assert_stderr_contains(&format!("cannot reach registry {}", registry.host()));
}

#[test]
fn unknown_images_and_tags_are_clear_errors() {
    let producer = TestEnv::new("registry-unknown");
    let (registry, _) = registry_with_base(&producer);
    let env = TestEnv::new("registry-unknown-consumer");
    let ctx = Context::new();
    let missing_tag = format!("{}/e2e/base:nope", registry.host());
    ctx.dockerfile(&["FROM scratch", &format!("FROM {missing_tag}")]);
    let out = env.rbuild().arg("build").arg(ctx.path()).run();
    out.assert_code(1);
    out.assert_stderr_contains(&format!("image {missing_tag} not found"));
    out.assert_stderr_contains("Dockerfile:2");

    let missing_repo = format!("{}/e2e/nothing:1", registry.host());
    let out = env.rbuild().args(["pull", &missing_repo]).run();
    out.assert_code(1);
    out.assert_stderr_contains(&format!("image {missing_repo} not found"));
}

#[test]
fn digests_are_pinned_and_verified() {
    let producer = TestEnv::new("registry-digest");
    let (registry, base) = registry_with_base(&producer);
    let digest = registry.manifest_digest("e2e/base:1");
    assert!(digest.starts_with("sha256:"), "{digest}");

    let env = TestEnv::new("registry-digest-consumer");
    let ctx = Context::new();
    let pinned = format!("{}/e2e/base@{digest}", registry.host());
    ctx.dockerfile(&[&format!("FROM {pinned}"), "RUN cat /marker > /seen"]);
    assert_eq!(env.build(&ctx, &[]).load().read("/seen"), "from-base\n");
    // `name@digest` finds the pulled image again without the registry, even with --pull.
    let out = env.rbuild().args(["build", "--pull", "-q"]).arg(ctx.path()).run();
    out.assert_success();

    let absent = format!("{}/e2e/base@sha256:{}", registry.host(), "0".repeat(64));
    let out = env.rbuild().args(["pull", &absent]).run();
    out.assert_code(1);
    out.assert_stderr_contains("not found");

    // A registry that serves a layer whose bytes do not match its digest: nothing is stored.
    let manifest = registry.manifest("e2e/base:1");
    let layer = manifest["layers"][0]["digest"].as_str().expect("a layer digest");
    let layer = layer.strip_prefix("sha256:").expect("a sha256 digest").to_string();
    let data = registry
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&layer[..2])
        .join(&layer)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes).expect("corrupting the blob");
    let fresh = TestEnv::new("registry-digest-corrupt");
    let out = fresh.rbuild().args(["pull", &base]).run();
    out.assert_code(1);
    out.assert_stderr_contains(&format!("layer sha256:{layer}"));
    out.assert_stderr_contains("has digest");
    let out = fresh.rbuild().args(["pull", &base]).run();
    out.assert_code(1);
}

#[test]
fn rbuild_pull_picks_the_platform_from_an_index() {
    let env = TestEnv::new("registry-platforms");
    let native = build_base(&env, "native");
    let foreign = build_base(&env, "foreign");
    let registry = Registry::start();
    let work = tempfile::tempdir().expect("temp dir");
    let (native_id, native_platform) = add_to_layout(work.path(), &native.archive, None);
    let other_arch = if native_platform.contains("amd64") { "arm64" } else { "amd64" };
    let (foreign_id, foreign_platform) = add_to_layout(work.path(), &foreign.archive, Some(other_arch));
    write_index(work.path());
    let source = format!("oci:{}:multi", work.path().display());
    let reference = format!("{}/e2e/multi:1", registry.host());
    run_tool(
        "skopeo",
        &["copy", "--all", "--insecure-policy", "--dest-tls-verify=false", &source, &format!("docker://{reference}")],
    );

    let store = TestEnv::new("registry-platforms-pull");
    let out = store.rbuild().args(["pull", &reference]).run();
    out.assert_success();
    out.assert_stderr_contains(&format!("as image {native_id}"));
    assert_eq!(out.stdout_text(), format!("{reference}\n"));
    let out = store.rbuild().args(["pull", "--platform", &foreign_platform, &reference]).run();
    out.assert_success();
    out.assert_stderr_contains(&format!("as image {foreign_id}"));
    let out = store.rbuild().args(["pull", "--platform", "linux/s390x", &reference]).run();
    out.assert_code(1);
    out.assert_stderr_contains("no manifest for platform linux/s390x");
    out.assert_stderr_contains(&native_platform);
}

/// Adds the image of a docker archive (written by rbuild, which has the OCI layout inside) to
/// the blobs of the layout in `dir`, with its architecture changed to `arch` if given; returns
/// its image id and platform. The manifests are remembered in `dir/manifests.json`.
fn add_to_layout(dir: &std::path::Path, archive: &std::path::Path, arch: Option<&str>) -> (String, String) {
    let archive = Archive::open(archive);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs dir");
    for name in archive.names() {
        if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
            std::fs::write(blobs.join(hex), archive.bytes(name)).expect("writing a blob");
        }
    }
    let mut config = archive.config();
    if let Some(arch) = arch {
        config["architecture"] = json!(arch);
        if arch == "arm64" {
            config["variant"] = json!("v8");
        }
    }
    let config_bytes = serde_json::to_vec(&config).expect("config JSON");
    let config_hex = sha256_hex(&config_bytes);
    std::fs::write(blobs.join(&config_hex), &config_bytes).expect("writing the config");
    let mut manifest = archive.oci_manifest();
    manifest["config"]["digest"] = json!(format!("sha256:{config_hex}"));
    manifest["config"]["size"] = json!(config_bytes.len());
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest JSON");
    let manifest_hex = sha256_hex(&manifest_bytes);
    std::fs::write(blobs.join(&manifest_hex), &manifest_bytes).expect("writing the manifest");

    let architecture = config["architecture"].as_str().expect("architecture").to_string();
    let mut platform = json!({"os": "linux", "architecture": architecture});
    let mut shown = format!("linux/{architecture}");
    if let Some(variant) = config["variant"].as_str() {
        platform["variant"] = json!(variant);
        shown.push('/');
        shown.push_str(variant);
    }
    let list = dir.join("manifests.json");
    let mut entries: Vec<Value> =
        std::fs::read(&list).ok().map(|b| serde_json::from_slice(&b).expect("list")).unwrap_or_default();
    entries.push(json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{manifest_hex}"),
        "size": manifest_bytes.len(),
        "platform": platform,
    }));
    std::fs::write(&list, serde_json::to_vec(&entries).expect("list JSON")).expect("writing the list");
    (format!("sha256:{config_hex}"), shown)
}

/// Writes the image index of the manifests added so far, and an `index.json` naming it `multi`.
fn write_index(dir: &std::path::Path) {
    let entries: Value = serde_json::from_slice(&std::fs::read(dir.join("manifests.json")).expect("list")).expect("list");
    std::fs::remove_file(dir.join("manifests.json")).expect("removing the list");
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries});
    let index_bytes = serde_json::to_vec(&index).expect("index JSON");
    let index_hex = sha256_hex(&index_bytes);
    std::fs::write(dir.join("blobs/sha256").join(&index_hex), &index_bytes).expect("writing the index");
    let top = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": format!("sha256:{index_hex}"),
        "size": index_bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": "multi"},
    }]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).expect("index.json")).expect("index.json");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
}

#[test]
fn basic_auth_credentials_come_from_the_docker_config() {
    let producer = TestEnv::new("registry-auth");
    let base = build_base(&producer, "private");
    let registry = Registry::start_with_auth("alice", "s3cret-pw");
    let reference = registry.push_archive(&base.archive, "e2e/private:1");
    let env = TestEnv::new("registry-auth-consumer");
    let ctx = Context::new();
    ctx.dockerfile(&[&format!("FROM {reference}"), "RUN cat /marker > /seen"]);

    let empty = tempfile::tempdir().expect("temp dir");
    let out = env.rbuild().env("DOCKER_CONFIG", empty.path()).arg("build").arg(ctx.path()).run();
    out.assert_code(1);
    out.assert_stderr_contains(&format!("registry {} requires authentication", registry.host()));
    out.assert_stderr_contains(&empty.path().join("config.json").display().to_string());

    let wrong = registry.docker_config("alice", "not-the-password");
    let out = env.rbuild().env("DOCKER_CONFIG", wrong.path()).arg("build").arg(ctx.path()).run();
    out.assert_code(1);
    out.assert_stderr_contains(&format!("registry {} refused the credentials of alice", registry.host()));

    let right = registry.docker_config("alice", "s3cret-pw");
    let image = build_with_credentials(&env, &ctx, right.path(), "private.tar");
    assert_eq!(image.read("/seen"), "private\n");
}

/// A registry with distribution's bearer-token auth: every request needs a JWT from the token
/// server the `WWW-Authenticate: Bearer realm=…,service=…` challenge names, which rbuild gets
/// there with the docker config's user and password (basic auth on the realm request).
#[test]
fn bearer_tokens_are_fetched_from_the_challenge_realm() {
    let producer = TestEnv::new("registry-bearer");
    let base = build_base(&producer, "behind-tokens");
    let tokens = TokenServer::start(&[("alice", "t0ken-pw")], &[]);
    let registry = Registry::start_with_token_auth(&tokens, "alice", "t0ken-pw");
    let reference = registry.push_archive(&base.archive, "e2e/tokened:1");
    let env = TestEnv::new("registry-bearer-consumer");
    let ctx = Context::new();
    ctx.dockerfile(&[&format!("FROM {reference}"), "RUN cat /marker > /seen"]);

    let wrong = registry.docker_config("alice", "not-the-password");
    let out = env.rbuild().env("DOCKER_CONFIG", wrong.path()).arg("build").arg(ctx.path()).run();
    out.assert_code(1);
    out.assert_stderr_contains(&format!("registry {} refused the credentials of alice", registry.host()));
    out.assert_stderr_contains(&format!("looked in {}", wrong.path().join("config.json").display()));
    out.assert_stderr_contains("incorrect username or password");

    let empty = tempfile::tempdir().expect("temp dir");
    let out = env.rbuild().env("DOCKER_CONFIG", empty.path()).arg("build").arg(ctx.path()).run();
    out.assert_code(1);
    out.assert_stderr_contains(&format!("registry {} requires authentication", registry.host()));

    let before = tokens.requests().len();
    let right = registry.docker_config("alice", "t0ken-pw");
    let image = build_with_credentials(&env, &ctx, right.path(), "tokened.tar");
    assert_eq!(image.read("/seen"), "behind-tokens\n");

    // rbuild asked the realm as Docker does: basic auth, the challenge's service, a pull scope.
    let asked: Vec<_> = tokens.requests().into_iter().skip(before).collect();
    assert!(!asked.is_empty(), "rbuild never asked the token server");
    for request in &asked {
        assert_eq!(request.method, "GET", "{request:?}");
        assert_eq!(request.basic_user.as_deref(), Some("alice"), "{request:?}");
        assert_eq!(request.param("service"), token_server::SERVICE, "{request:?}");
        assert_eq!(request.param("scope"), "repository:e2e/tokened:pull", "{request:?}");
        assert!(request.granted, "{request:?}");
    }
}

/// Identity tokens, what `docker login` keeps when the token server hands out refresh tokens, are
/// exchanged at the challenge's realm as OAuth2 refresh tokens (a POSTed form), as Docker does:
/// from config.json's `identitytoken`, and from a credential helper that answers with the user
/// `<token>`.
#[test]
fn identity_tokens_are_exchanged_for_access_tokens() {
    let producer = TestEnv::new("registry-identity");
    let base = build_base(&producer, "by-identity");
    let tokens = TokenServer::start(&[("alice", "pw-for-push")], &[("refresh-ab12", "alice")]);
    let registry = Registry::start_with_token_auth(&tokens, "alice", "pw-for-push");
    let reference = registry.push_archive(&base.archive, "e2e/identity:1");
    let env = TestEnv::new("registry-identity-consumer");
    let ctx = Context::new();
    ctx.dockerfile(&[&format!("FROM {reference}"), "RUN cat /marker > /seen"]);

    let wrong = registry.docker_config_identity_token("alice", "not-a-refresh-token");
    let out = env.rbuild().env("DOCKER_CONFIG", wrong.path()).arg("build").arg(ctx.path()).run();
    out.assert_code(1);
    out.assert_stderr_contains(&format!("registry {} refused the identity token", registry.host()));
    out.assert_stderr_contains(&format!("looked in {}", wrong.path().join("config.json").display()));
    out.assert_stderr_contains("unknown refresh token");

    let before = tokens.requests().len();
    let right = registry.docker_config_identity_token("alice", "refresh-ab12");
    let image = build_with_credentials(&env, &ctx, right.path(), "identity.tar");
    assert_eq!(image.read("/seen"), "by-identity\n");
    let asked: Vec<_> = tokens.requests().into_iter().skip(before).collect();
    assert!(!asked.is_empty(), "rbuild never asked the token server");
    for request in &asked {
        assert_eq!(request.method, "POST", "{request:?}");
        assert_eq!(request.basic_user, None, "no password was sent: {request:?}");
        assert_eq!(request.param("grant_type"), "refresh_token", "{request:?}");
        assert_eq!(request.param("refresh_token"), "refresh-ab12", "{request:?}");
        assert_eq!(request.param("service"), token_server::SERVICE, "{request:?}");
        assert_eq!(request.param("scope"), "repository:e2e/identity:pull", "{request:?}");
        assert_eq!(request.param("client_id"), "rbuild", "{request:?}");
        assert!(request.granted, "{request:?}");
    }

    // A credential helper's identity token (`Username` `<token>`), into a fresh store.
    let helper = registry.docker_config_token_helper("refresh-ab12");
    let path = format!("{}:{}", helper.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let before = tokens.requests().len();
    let fresh = TestEnv::new("registry-identity-helper");
    let out = fresh.rbuild().env("DOCKER_CONFIG", helper.path()).env("PATH", &path).args(["pull", &reference]).run();
    out.assert_success();
    assert_eq!(out.stdout_text(), format!("{reference}\n"));
    let asked: Vec<_> = tokens.requests().into_iter().skip(before).collect();
    assert!(
        asked.iter().any(|r| r.method == "POST" && r.param("refresh_token") == "refresh-ab12" && r.granted),
        "the helper's token was not exchanged: {asked:?}"
    );
}

/// The `identitytoken` of `registry`'s entry in the `config.json` of `dir`.
fn identity_token_in(dir: &std::path::Path, registry: &str) -> String {
    let config: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("config.json")).expect("JSON");
    config["auths"][registry]["identitytoken"].as_str().unwrap_or_else(|| panic!("no identitytoken: {config}")).to_string()
}

/// A token server that rotates refresh tokens answers each exchange with a new one and accepts
/// only the newest from then on: rbuild stores it back where the identity token came from, in
/// config.json (the rest of the file and its mode kept) or with the credential helper's `store`,
/// so that the next pull works; a helper that cannot store it costs a warning, not the pull.
#[test]
fn rotated_refresh_tokens_are_stored_back_for_the_next_pull() {
    use std::os::unix::fs::PermissionsExt;
    let producer = TestEnv::new("registry-rotation");
    let base = build_base(&producer, "rotated");
    let quirks = token_server::Quirks { rotate_refresh_tokens: true, ..Default::default() };
    let tokens = TokenServer::start_with(&[("alice", "pw-for-push")], &[("refresh-first", "alice")], quirks);
    let registry = Registry::start_with_token_auth(&tokens, "alice", "pw-for-push");
    let reference = registry.push_archive(&base.archive, "e2e/rotated:1");
    let host = registry.host();

    let docker = registry.docker_config_identity_token("alice", "refresh-first");
    let config_path = docker.path().join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).expect("config.json")).expect("JSON");
    config["auths"]["other.example"] = json!({"auth": "Ym9iOnB3", "identitytoken": "refresh-first"});
    config["psFormat"] = json!("table {{.ID}}");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).expect("JSON")).expect("writing config.json");
    std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    let first = TestEnv::new("registry-rotation-first");
    let out = first.rbuild().env("DOCKER_CONFIG", docker.path()).args(["pull", &reference]).run();
    out.assert_success();
    assert!(!out.stderr_text().contains("warning"), "{}", out.describe());
    let rotated = identity_token_in(docker.path(), &host);
    assert_ne!(rotated, "refresh-first", "the rotated token was not written back");
    assert_eq!(tokens.refresh_tokens(), vec![rotated.clone()], "config.json holds the one the server accepts");
    let mut expected = config.clone();
    expected["auths"][&host]["identitytoken"] = json!(rotated);
    let now: Value = serde_json::from_slice(&std::fs::read(&config_path).expect("config.json")).expect("JSON");
    assert_eq!(now, expected, "nothing else in config.json changed");
    let mode = std::fs::metadata(&config_path).expect("config.json").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "config.json keeps its mode");
    assert!(!out.stderr_text().contains(&rotated) && !out.stderr_text().contains("refresh-first"), "{}", out.describe());

    // A second pull, into a new store, exchanges the rotated token, and stores the next one.
    let second = TestEnv::new("registry-rotation-second");
    second.rbuild().env("DOCKER_CONFIG", docker.path()).args(["pull", &reference]).run().assert_success();
    let next = identity_token_in(docker.path(), &host);
    assert_ne!(next, rotated);
    assert_eq!(tokens.refresh_tokens(), vec![next.clone()]);
    // Each exchange sent the token the one before handed out.
    let sent: Vec<String> = tokens.requests().iter().filter(|r| r.method == "POST").map(|r| r.param("refresh_token").to_string()).collect();
    assert_eq!(sent, vec!["refresh-first".to_string(), rotated.clone()]);
    assert!(tokens.requests().iter().all(|r| r.granted), "{:?}", tokens.requests());

    // The token it replaced is dead: without the write-back, the second pull would have failed.
    let stale = registry.docker_config_identity_token("alice", "refresh-first");
    let out = TestEnv::new("registry-rotation-stale").rbuild().env("DOCKER_CONFIG", stale.path()).args(["pull", &reference]).run();
    out.assert_code(1);
    out.assert_stderr_contains("unknown refresh token");

    // A credential helper's token is stored with the helper's `store`, as `docker login` stores
    // identity tokens, and the helper hands out the new one to the next pull.
    let helper = registry.docker_config_storing_helper(&next, false);
    let path = format!("{}:{}", helper.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let pull = |name: &str| {
        TestEnv::new(name).rbuild().env("DOCKER_CONFIG", helper.path()).env("PATH", &path).args(["pull", &reference]).run()
    };
    let out = pull("registry-rotation-helper");
    out.assert_success();
    assert!(!out.stderr_text().contains("warning"), "{}", out.describe());
    let stored: Value =
        serde_json::from_slice(&std::fs::read(helper.path().join("stored.json")).expect("stored.json")).expect("JSON");
    let by_helper = tokens.refresh_tokens().pop().expect("a token");
    assert_eq!(stored, json!({"ServerURL": host, "Username": "<token>", "Secret": by_helper}));
    pull("registry-rotation-helper-again").assert_success();
    assert_ne!(tokens.refresh_tokens(), vec![by_helper], "the helper's stored token was exchanged again");

    // A helper that cannot store it: the pull still succeeds, with a warning showing no token.
    let current = tokens.refresh_tokens().pop().expect("a token");
    let locked = registry.docker_config_storing_helper(&current, true);
    let path = format!("{}:{}", locked.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let out = TestEnv::new("registry-rotation-locked")
        .rbuild()
        .env("DOCKER_CONFIG", locked.path())
        .env("PATH", &path)
        .args(["pull", &reference])
        .run();
    out.assert_success();
    out.assert_stderr_contains(&format!("warning: the token server {} replaced the identity token for {host}", tokens.realm()));
    out.assert_stderr_contains("docker-credential-rbuild-e2e-store store failed");
    out.assert_stderr_contains("keychain is locked");
    out.assert_stderr_contains(&format!("docker login {host}"));
    let newest = tokens.refresh_tokens().pop().expect("a token");
    assert!(!out.stderr_text().contains(&newest) && !out.stderr_text().contains(&current), "{}", out.describe());
}

/// A token server without the OAuth2 endpoint (405 to the POST) is asked with a GET of the
/// realm, as containerd does: the service, the scope, and the identity token as basic auth.
#[test]
fn token_servers_refusing_the_post_are_asked_with_get() {
    let producer = TestEnv::new("registry-no-oauth");
    let base = build_base(&producer, "by-get");
    let quirks = token_server::Quirks { refuse_post: Some(405), ..Default::default() };
    let tokens = TokenServer::start_with(&[("alice", "pw-for-push")], &[("refresh-cd34", "alice")], quirks);
    let registry = Registry::start_with_token_auth(&tokens, "alice", "pw-for-push");
    let reference = registry.push_archive(&base.archive, "e2e/no-oauth:1");

    let before = tokens.requests().len();
    let docker = registry.docker_config_identity_token("alice", "refresh-cd34");
    let env = TestEnv::new("registry-no-oauth-consumer");
    let ctx = Context::new();
    ctx.dockerfile(&[&format!("FROM {reference}"), "RUN cat /marker > /seen"]);
    let image = build_with_credentials(&env, &ctx, docker.path(), "no-oauth.tar");
    assert_eq!(image.read("/seen"), "by-get\n");

    let asked: Vec<_> = tokens.requests().into_iter().skip(before).collect();
    assert_eq!(asked.first().map(|r| (r.method.as_str(), r.granted)), Some(("POST", false)), "{asked:?}");
    let gets: Vec<_> = asked.iter().skip(1).collect();
    assert!(!gets.is_empty(), "no GET followed the refused POST: {asked:?}");
    for request in gets {
        assert_eq!(request.method, "GET", "the POST is not tried again: {request:?}");
        assert_eq!(request.basic_user.as_deref(), Some(""), "{request:?}");
        assert_eq!(request.basic_password.as_deref(), Some("refresh-cd34"), "{request:?}");
        assert_eq!(request.param("service"), token_server::SERVICE, "{request:?}");
        assert_eq!(request.param("scope"), "repository:e2e/no-oauth:pull", "{request:?}");
        assert!(request.granted, "{request:?}");
    }

    // The GET's refusal says that it followed the POST's 405.
    let wrong = registry.docker_config_identity_token("alice", "not-a-refresh-token");
    let out = TestEnv::new("registry-no-oauth-wrong").rbuild().env("DOCKER_CONFIG", wrong.path()).args(["pull", &reference]).run();
    out.assert_code(1);
    out.assert_stderr_contains(&format!("registry {} refused the identity token", registry.host()));
    out.assert_stderr_contains("answered HTTP 401 to the GET (it answered the OAuth2 POST with HTTP 405): incorrect username or password");
    assert!(!out.stderr_text().contains("not-a-refresh-token"), "{}", out.describe());
}
