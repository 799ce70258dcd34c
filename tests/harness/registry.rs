//! A throwaway registry for the pull tests: Debian's `docker-registry` (distribution 2.x) on
//! 127.0.0.1 at a free port, with its config and storage in a temp dir, optionally with htpasswd
//! basic auth or bearer-token auth (against a [`TokenServer`]), stopped (by its pid) when
//! dropped. Images get into it with `skopeo copy`, and a `DOCKER_CONFIG` directory holds
//! credentials for it the way `docker login` writes them (a password, or an identity token).
//!
//! Only 127.0.0.1 is ever contacted: the registry, skopeo and rbuild all talk to this one.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::run_tool;
use crate::token_server::{self, TokenServer};

const BINARY: &str = "/usr/bin/docker-registry";
/// How long a registry may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running registry; stopped and its storage removed on drop.
pub struct Registry {
    child: Child,
    port: u16,
    /// What skopeo pushes and inspects with.
    credentials: Option<(String, String)>,
    dir: TempDir,
}

/// How a registry checks who asks.
enum Auth {
    Anonymous,
    /// htpasswd basic auth for this user and password.
    Htpasswd(String, String),
    /// Tokens from a token server (realm, its certificate); the user and password skopeo uses.
    Token { realm: String, cert_bundle: PathBuf, user: String, password: String },
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Registry {
        Registry::launch(Auth::Anonymous)
    }

    /// A registry that wants `user`/`password` (htpasswd, bcrypt) for everything.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::launch(Auth::Htpasswd(user.to_string(), password.to_string()))
    }

    /// A registry that wants a bearer token from `server` for everything (`auth: token:`, with
    /// the server's realm, [`token_server::SERVICE`], [`token_server::ISSUER`] and its
    /// certificate as `rootcertbundle`). `user`/`password` must be known to the server: skopeo
    /// pushes with them.
    pub fn start_with_token_auth(server: &TokenServer, user: &str, password: &str) -> Registry {
        Registry::launch(Auth::Token {
            realm: server.realm(),
            cert_bundle: server.cert_bundle(),
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    fn launch(auth: Auth) -> Registry {
        assert!(
            Path::new(BINARY).is_file(),
            "{BINARY} is missing: install Debian's docker-registry package (scripts/test.sh does)"
        );
        // The port is free when asked for; another process could take it before the registry
        // binds it, so a registry that dies at once is started again on another port.
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::Builder::new().prefix("rbuild-e2e-registry-").tempdir().expect("temp dir");
            let port = free_port();
            let (auth_config, credentials) = match &auth {
                Auth::Anonymous => (String::new(), None),
                Auth::Htpasswd(user, password) => {
                    let path = write_htpasswd(dir.path(), user, password);
                    let config = format!("auth:\n  htpasswd:\n    realm: rbuild-e2e\n    path: {}\n", path.display());
                    (config, Some((user.clone(), password.clone())))
                }
                Auth::Token { realm, cert_bundle, user, password } => {
                    let config = format!(
                        "auth:\n  token:\n    realm: {realm}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                        token_server::SERVICE,
                        token_server::ISSUER,
                        cert_bundle.display()
                    );
                    (config, Some((user.clone(), password.clone())))
                }
            };
            let config = dir.path().join("config.yml");
            std::fs::write(&config, registry_config(dir.path(), port, &auth_config)).expect("writing config.yml");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry.log");
            let child = Command::new(BINARY)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {BINARY}: {e}"));
            let mut registry = Registry { child, port, credentials: credentials.clone(), dir };
            if registry.wait_until_listening() {
                return registry;
            }
            last_log = registry.log();
            registry.stop();
        }
        panic!("docker-registry did not start on 127.0.0.1; its last log:\n{last_log}");
    }

    fn wait_until_listening(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `127.0.0.1:PORT`, the registry part of references to it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on (for a proxy in front of it).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's log so far (with every request, as its access log), for failure
    /// messages and for tests that check which requests were made.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.path().join("registry.log")) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// `skopeo copy` of a docker-archive (as `rbuild -o FILE.tar` writes it) to
    /// `HOST/repository:tag` in this registry; returns the full reference.
    pub fn push_archive(&self, archive: &Path, repository_and_tag: &str) -> String {
        let reference = format!("{}/{repository_and_tag}", self.host());
        let source = format!("docker-archive:{}", archive.display());
        let destination = format!("docker://{reference}");
        let mut args = vec!["copy", "--insecure-policy", "--dest-tls-verify=false"];
        let creds = self.credentials.as_ref().map(|(u, p)| format!("{u}:{p}"));
        if let Some(creds) = &creds {
            args.extend(["--dest-creds", creds]);
        }
        args.extend([source.as_str(), destination.as_str()]);
        run_tool("skopeo", &args);
        reference
    }

    /// The digest of the manifest `HOST/repository:tag` names (what `@sha256:…` pins).
    pub fn manifest_digest(&self, repository_and_tag: &str) -> String {
        let reference = format!("docker://{}/{repository_and_tag}", self.host());
        let mut args = vec!["inspect", "--tls-verify=false", "--format", "{{.Digest}}"];
        let creds = self.credentials.as_ref().map(|(u, p)| format!("{u}:{p}"));
        if let Some(creds) = &creds {
            args.extend(["--creds", creds]);
        }
        args.push(&reference);
        run_tool("skopeo", &args).stdout_text().trim().to_string()
    }

    /// The manifest `HOST/repository:tag` names, as the registry serves it.
    pub fn manifest(&self, repository_and_tag: &str) -> serde_json::Value {
        let reference = format!("docker://{}/{repository_and_tag}", self.host());
        let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
        let creds = self.credentials.as_ref().map(|(u, p)| format!("{u}:{p}"));
        if let Some(creds) = &creds {
            args.extend(["--creds", creds]);
        }
        args.push(&reference);
        serde_json::from_slice(&run_tool("skopeo", &args).stdout).expect("skopeo inspect --raw prints JSON")
    }

    /// A `DOCKER_CONFIG` directory whose `config.json` has `auths` for this registry, as
    /// `docker login` writes them (`user:password` in base64).
    pub fn docker_config(&self, user: &str, password: &str) -> TempDir {
        let dir = tempfile::Builder::new().prefix("rbuild-e2e-docker-config-").tempdir().expect("temp dir");
        let auth = base64(format!("{user}:{password}").as_bytes());
        let config = format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, self.host());
        std::fs::write(dir.path().join("config.json"), config).expect("writing config.json");
        dir
    }

    /// A `DOCKER_CONFIG` directory whose `config.json` holds an identity token for this
    /// registry, as `docker login` writes one when the token server hands out refresh tokens:
    /// `auth` is `user:` (no password) and `identitytoken` the token.
    pub fn docker_config_identity_token(&self, user: &str, token: &str) -> TempDir {
        let dir = tempfile::Builder::new().prefix("rbuild-e2e-docker-config-").tempdir().expect("temp dir");
        let auth = base64(format!("{user}:").as_bytes());
        let config = serde_json::json!({"auths": {self.host(): {"auth": auth, "identitytoken": token}}});
        std::fs::write(dir.path().join("config.json"), config.to_string()).expect("writing config.json");
        dir
    }

    /// A `DOCKER_CONFIG` directory whose `config.json` sends this registry to the credential
    /// helper `docker-credential-rbuild-e2e`, which lives in its `bin/` (put that on PATH) and
    /// answers with Docker's convention for identity tokens: `Username` `<token>`, `Secret` the
    /// token.
    pub fn docker_config_token_helper(&self, token: &str) -> TempDir {
        let dir = tempfile::Builder::new().prefix("rbuild-e2e-docker-config-").tempdir().expect("temp dir");
        let config = serde_json::json!({"credHelpers": {self.host(): "rbuild-e2e"}});
        std::fs::write(dir.path().join("config.json"), config.to_string()).expect("writing config.json");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("creating bin/");
        let answer = serde_json::json!({"ServerURL": self.host(), "Username": "<token>", "Secret": token});
        // Reads the server name from stdin like a real helper, so rbuild's write never fails.
        let script = format!("#!/bin/sh\ncat >/dev/null\necho '{answer}'\n");
        // Written by a short-lived `sh`, not by this process: a file this process had open for
        // writing could be inherited by a child another test forks at that moment, and running
        // the helper would then fail with ETXTBSY.
        let mut writer = Command::new("sh");
        writer.args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"]).arg(bin.join("docker-credential-rbuild-e2e"));
        crate::process::run(writer, Some(script.into_bytes())).assert_success();
        dir
    }

    /// A `DOCKER_CONFIG` directory whose `config.json` sends this registry to the credential
    /// helper `docker-credential-rbuild-e2e-store` in its `bin/` (put that on PATH), which keeps
    /// an identity token as a real helper does: `get` answers with the one in `secret`, and
    /// `store` records what it was given in `stored.json` and keeps its `Secret` in `secret` for
    /// the next `get`. With `store_fails`, `store` says the keychain is locked (echoing what it
    /// was given, as a careless helper might) and fails.
    pub fn docker_config_storing_helper(&self, token: &str, store_fails: bool) -> TempDir {
        let dir = tempfile::Builder::new().prefix("rbuild-e2e-docker-config-").tempdir().expect("temp dir");
        let config = serde_json::json!({"credHelpers": {self.host(): "rbuild-e2e-store"}});
        std::fs::write(dir.path().join("config.json"), config.to_string()).expect("writing config.json");
        std::fs::write(dir.path().join("secret"), token).expect("writing the secret");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("creating bin/");
        let d = dir.path().display();
        let store = if store_fails {
            "echo \"keychain is locked, cannot store $(cat)\"; exit 1".to_string()
        } else {
            // The request is one line of JSON; its Secret is the token to keep.
            format!("cat > {d}/stored.json && sed -n 's/.*\"Secret\":\"\\([^\"]*\\)\".*/\\1/p' {d}/stored.json > {d}/secret")
        };
        let script = format!(
            "#!/bin/sh\ncase \"$1\" in\nget) cat >/dev/null; printf '{{\"ServerURL\":\"%s\",\"Username\":\"<token>\",\"Secret\":\"%s\"}}\\n' '{}' \"$(cat {d}/secret)\" ;;\nstore) {store} ;;\n*) exit 1 ;;\nesac\n",
            self.host()
        );
        let mut writer = Command::new("sh");
        writer.args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"]).arg(bin.join("docker-credential-rbuild-e2e-store"));
        crate::process::run(writer, Some(script.into_bytes())).assert_success();
        dir
    }

    /// Stops the registry (SIGTERM to its pid, then SIGKILL) and waits for it.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Where the registry keeps its blobs (for tests that corrupt one).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a free port on 127.0.0.1");
    listener.local_addr().expect("local address").port()
}

fn write_htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let out = run_tool("htpasswd", &["-Bbn", user, password]);
    let path = dir.join("htpasswd");
    std::fs::write(&path, out.stdout).expect("writing htpasswd");
    path
}

/// The registry's config.yml; `auth` is its `auth:` section, or "".
fn registry_config(dir: &Path, port: u16, auth: &str) -> String {
    format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
        dir.join("data").display()
    )
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A base image built by rbuild from the static busybox: a shell and applets in /bin, `/marker`
/// holding `marker`, `ENV BASE_VAR=marker`, `WORKDIR /work`, `CMD ["cat","/marker"]`; written
/// to a docker archive (see [`crate::env::Built`]).
pub fn build_base(env: &crate::env::TestEnv, marker: &str) -> crate::env::Built {
    let ctx = crate::context::Context::with_busybox();
    let marker_line = format!("RUN echo {marker} > /marker");
    let env_line = format!("ENV BASE_VAR={marker}");
    let mut lines: Vec<&str> = crate::sandbox::BUSYBOX_SH.to_vec();
    lines.extend([marker_line.as_str(), env_line.as_str(), "WORKDIR /work", r#"CMD ["cat","/marker"]"#]);
    ctx.dockerfile(&lines);
    env.build(&ctx, &[])
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(super::base64(b"alice:pw1"), "YWxpY2U6cHcx");
        assert_eq!(super::base64(b"ab"), "YWI=");
        assert_eq!(super::base64(b"a"), "YQ==");
    }
}
