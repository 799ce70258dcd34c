//! Registry credentials, found where Docker keeps them: `config.json` in
//! `$DOCKER_CONFIG`, else in `~/.docker`, with its `credHelpers` (per
//! registry), `credsStore` (for all) and `auths` entries, as the
//! `docker_credential` crate reads them (running `docker-credential-<name>`
//! helpers as needed). An entry is a user name and password, or an identity
//! token: `identitytoken` in `auths`, or a helper's answer with the user
//! `<token>` (Docker's convention), which `oauth` exchanges for access tokens.
//!
//! An identity token's [`TokenOrigin`] says where it was found, so that a new
//! one the token server hands out (OAuth2 refresh-token rotation) is stored
//! back there: in the `identitytoken` of the same `auths` entry (the file
//! rewritten atomically, every other byte kept), or with the helper's `store`
//! action, as `docker login` stores identity tokens.

use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use docker_credential::{CredentialRetrievalError, DockerCredential};
use serde_json::Value;

/// The key Docker uses for Docker Hub in `config.json` and with helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// What `config.json` holds for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A user name and password (or access token): basic auth, or basic auth
    /// on the token server's realm when the registry wants bearer tokens.
    Password { user: String, secret: String },
    /// An identity token: an OAuth2 refresh token for the registry's token
    /// server, exchanged there for access tokens.
    IdentityToken(String),
}

impl Credential {
    /// What was sent, for error messages (never the secret).
    pub fn describe(&self) -> String {
        match self {
            Credential::Password { user, .. } => format!("the credentials of {user}"),
            Credential::IdentityToken(_) => "the identity token".to_string(),
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Password { user, .. } => f.debug_struct("Password").field("user", user).finish_non_exhaustive(),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// Where credentials are read from.
#[derive(Clone, Debug)]
pub struct CredentialSource {
    /// The `config.json` to read; `None` when neither `$DOCKER_CONFIG` nor
    /// `$HOME` is set.
    config_file: Option<PathBuf>,
    /// Which variable chose the directory, for messages.
    chosen_by: &'static str,
}

impl CredentialSource {
    /// Docker's own lookup: `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn from_env() -> CredentialSource {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        match (var("DOCKER_CONFIG"), var("HOME")) {
            (Some(dir), _) => CredentialSource { config_file: Some(dir.join("config.json")), chosen_by: "$DOCKER_CONFIG" },
            (None, Some(home)) => CredentialSource {
                config_file: Some(home.join(".docker").join("config.json")),
                chosen_by: "$HOME",
            },
            (None, None) => CredentialSource { config_file: None, chosen_by: "" },
        }
    }

    /// Reads credentials from one `config.json`.
    pub fn file(path: PathBuf) -> CredentialSource {
        CredentialSource { config_file: Some(path), chosen_by: "" }
    }

    /// Where credentials were looked for, for error messages.
    pub fn describe(&self) -> String {
        match &self.config_file {
            None => "neither $DOCKER_CONFIG nor $HOME is set, so no docker config.json was read".to_string(),
            Some(path) => {
                let by = if self.chosen_by.is_empty() { String::new() } else { format!(", from {}", self.chosen_by) };
                if path.exists() {
                    format!("looked in {}{by}", path.display())
                } else {
                    format!("looked in {}{by}, which does not exist", path.display())
                }
            }
        }
    }

    /// The credential configured for `registry` (`host[:port]`, `docker.io`
    /// for Docker Hub), if any.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credential>, String> {
        Ok(self.lookup_with_origin(registry)?.map(|(credential, _)| credential))
    }

    /// [`CredentialSource::lookup`], and for an identity token where it was
    /// found (`None` only when that cannot be told).
    pub fn lookup_with_origin(&self, registry: &str) -> Result<Option<(Credential, Option<TokenOrigin>)>, String> {
        let Some(path) = &self.config_file else { return Ok(None) };
        // Read once: the credential and its origin come from the same bytes.
        let config = match std::fs::read(path) {
            Ok(config) => config,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
        };
        let server = if registry == "docker.io" || registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB_KEY
        } else {
            registry
        };
        match docker_credential::get_credential_from_reader(config.as_slice(), server) {
            Ok(DockerCredential::UsernamePassword(user, secret)) => Ok(Some((Credential::Password { user, secret }, None))),
            Ok(DockerCredential::IdentityToken(token)) => {
                let origin = token_origin(&config, path, server, &token);
                Ok(Some((Credential::IdentityToken(token), origin)))
            }
            Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(None),
            // A credential store that has nothing for this registry says so
            // with an error, as docker-credential-helpers do.
            Err(CredentialRetrievalError::HelperFailure { stdout, stderr, .. })
                if stdout.contains("credentials not found") || stderr.contains("credentials not found") =>
            {
                Ok(None)
            }
            Err(CredentialRetrievalError::HelperFailure { helper, stdout, stderr }) => Err(format!(
                "credential helper {helper} failed: {}",
                format!("{} {}", stdout.trim(), stderr.trim()).trim()
            )),
            Err(CredentialRetrievalError::HelperCommunicationError) => Err(format!(
                "{} names a credential helper that could not be run (is docker-credential-<name> on PATH?)",
                path.display()
            )),
            Err(CredentialRetrievalError::ConfigReadError) => Err(format!("{} is not valid JSON", path.display())),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// Where an identity token was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenOrigin {
    /// The `identitytoken` of the `auths` entry `key` in this `config.json`.
    ConfigFile { path: PathBuf, key: String },
    /// The credential helper `docker-credential-<helper>`, which keeps it
    /// under `server_url` (from `credHelpers` or `credsStore`).
    Helper { helper: String, server_url: String },
}

impl TokenOrigin {
    /// Where the token is kept, for messages (never the token).
    pub fn describe(&self) -> String {
        match self {
            TokenOrigin::ConfigFile { path, key } => format!("the identitytoken of \"{key}\" in {}", path.display()),
            TokenOrigin::Helper { helper, .. } => format!("the credential helper docker-credential-{helper}"),
        }
    }

    /// Stores `new` where `old` was found: in the config file only while it
    /// still holds `old` there (another `docker login` wins), with a helper
    /// by its `store` action. The error never holds either token.
    pub fn store(&self, old: &str, new: &str) -> Result<(), String> {
        match self {
            TokenOrigin::ConfigFile { path, key } => store_in_config_file(path, key, old, new),
            TokenOrigin::Helper { helper, server_url } => store_with_helper(helper, server_url, old, new),
        }
    }
}

/// The origin of the identity token `token` that the lookup of `server` read
/// from `config`, found the way `docker_credential` looks: the server's
/// `credHelpers` entry, else its `auths` entry (the server's own key, else one
/// naming the same registry), else `credsStore`.
fn token_origin(config: &[u8], path: &Path, server: &str, token: &str) -> Option<TokenOrigin> {
    let config: Value = serde_json::from_slice(config).ok()?;
    let helper = |name: &str| TokenOrigin::Helper { helper: name.to_string(), server_url: server.to_string() };
    let named = |value: Option<&Value>| value.and_then(Value::as_str).filter(|name| !name.is_empty()).map(str::to_string);
    if let Some(name) = named(config.get("credHelpers").and_then(|h| h.get(server))) {
        return Some(helper(&name));
    }
    if let Some(auths) = config.get("auths").and_then(Value::as_object) {
        let holds = |entry: &Value| entry.get("identitytoken").and_then(Value::as_str) == Some(token);
        let key = match auths.get(server) {
            Some(entry) => holds(entry).then_some(server),
            None => auths
                .iter()
                .find(|(key, entry)| registry_of_key(key) == normalize_registry(server) && holds(entry))
                .map(|(key, _)| key.as_str()),
        };
        if let Some(key) = key {
            return Some(TokenOrigin::ConfigFile { path: path.to_path_buf(), key: key.to_string() });
        }
    }
    named(config.get("credsStore")).map(|name| helper(&name))
}

/// The registry an `auths` key names: `https://host/v1/` → `host`.
fn registry_of_key(key: &str) -> &str {
    let stripped = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://"));
    normalize_registry(stripped.map_or(key, |rest| rest.split('/').next().unwrap_or(rest)))
}

fn normalize_registry(registry: &str) -> &str {
    match registry {
        "docker.io" | "registry-1.docker.io" => "index.docker.io",
        other => other,
    }
}

/// Replaces the identity token of `auths[key]` in the config file at `path`
/// (a symlink's target), keeping every other byte, its mode and its owner.
fn store_in_config_file(path: &Path, key: &str, old: &str, new: &str) -> Result<(), String> {
    let target = std::fs::canonicalize(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let text = std::fs::read_to_string(&target).map_err(|e| format!("cannot read {}: {e}", target.display()))?;
    let rewritten = replace_identity_token(&text, key, old, new).map_err(|reason| format!("{}: {reason}", target.display()))?;
    rewrite_atomically(&target, rewritten.as_bytes()).map_err(|e| format!("cannot rewrite {}: {e}", target.display()))
}

/// `text` with the identity token of `auths[key]` replaced by `new`, if it
/// is still `old`.
fn replace_identity_token(text: &str, key: &str, old: &str, new: &str) -> Result<String, String> {
    let mut config: Value = serde_json::from_str(text).map_err(|_| "it is not valid JSON any more".to_string())?;
    let slot = config.get_mut("auths").and_then(|auths| auths.get_mut(key)).and_then(|entry| entry.get_mut("identitytoken"));
    match slot {
        Some(Value::String(current)) if current == old => *current = new.to_string(),
        Some(Value::String(_)) => return Err(format!("it holds another identity token for \"{key}\" now, which is kept")),
        _ => return Err(format!("it has no identity token for \"{key}\" any more")),
    }
    let span = identity_token_span(text.as_bytes(), key)
        .ok_or_else(|| format!("the identity token of \"{key}\" could not be located in it"))?;
    let quoted = serde_json::to_string(new).map_err(|e| e.to_string())?;
    let rewritten = format!("{}{quoted}{}", &text[..span.start], &text[span.end..]);
    // The splice changed that one value and nothing else.
    match serde_json::from_str::<Value>(&rewritten) {
        Ok(value) if value == config => Ok(rewritten),
        _ => Err(format!("the identity token of \"{key}\" could not be located in it")),
    }
}

/// The bytes of the string value of `auths[key].identitytoken` in valid JSON
/// `text`, quotes included (the last of duplicate keys, as parsers keep).
fn identity_token_span(text: &[u8], key: &str) -> Option<Range<usize>> {
    let member = |object: Range<usize>, name: &str| -> Option<Range<usize>> {
        json_members(text, object.start)?
            .into_iter()
            .filter(|(k, _)| std::str::from_utf8(&text[k.clone()]).ok().and_then(|k| serde_json::from_str::<String>(k).ok()).as_deref() == Some(name))
            .map(|(_, value)| value)
            .next_back()
    };
    let top = skip_ws(text, 0);
    let value = member(member(member(top..text.len(), "auths")?, key)?, "identitytoken")?;
    (text.get(value.start) == Some(&b'"')).then_some(value)
}

/// The members of the object starting at `start` (its `{`): each key's and
/// value's bytes, keys with their quotes.
fn json_members(text: &[u8], start: usize) -> Option<Vec<(Range<usize>, Range<usize>)>> {
    if text.get(start) != Some(&b'{') {
        return None;
    }
    let mut members = Vec::new();
    let mut i = skip_ws(text, start + 1);
    if text.get(i) == Some(&b'}') {
        return Some(members);
    }
    loop {
        let key_end = json_value_end(text, i)?;
        let key = i..key_end;
        i = skip_ws(text, key_end);
        if text.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(text, i + 1);
        let value_end = json_value_end(text, value_start)?;
        members.push((key, value_start..value_end));
        i = skip_ws(text, value_end);
        match text.get(i)? {
            b',' => i = skip_ws(text, i + 1),
            b'}' => return Some(members),
            _ => return None,
        }
    }
}

/// Where the JSON value starting at `start` ends (exclusive).
fn json_value_end(text: &[u8], start: usize) -> Option<usize> {
    match *text.get(start)? {
        b'"' => {
            let mut i = start + 1;
            loop {
                match *text.get(i)? {
                    b'\\' => i += 2,
                    b'"' => return Some(i + 1),
                    _ => i += 1,
                }
            }
        }
        open @ (b'{' | b'[') => {
            let close = if open == b'{' { b'}' } else { b']' };
            let mut i = skip_ws(text, start + 1);
            if text.get(i) == Some(&close) {
                return Some(i + 1);
            }
            loop {
                i = skip_ws(text, json_value_end(text, i)?);
                if open == b'{' {
                    if text.get(i) != Some(&b':') {
                        return None;
                    }
                    i = skip_ws(text, json_value_end(text, skip_ws(text, i + 1))?);
                }
                match *text.get(i)? {
                    b',' => i = skip_ws(text, i + 1),
                    c if c == close => return Some(i + 1),
                    _ => return None,
                }
            }
        }
        // Numbers, true, false, null.
        _ => {
            let end = text[start..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))
                .map_or(text.len(), |n| start + n);
            (end > start).then_some(end)
        }
    }
}

fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while matches!(text.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// Replaces `path` with `contents`: a temporary file in the same directory,
/// given the file's mode (and its owner, where allowed, as Docker does),
/// synced, then renamed over it.
fn rewrite_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let metadata = std::fs::metadata(path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut temp = tempfile::Builder::new().prefix(&format!(".{name}.")).tempfile_in(dir)?;
    temp.write_all(contents)?;
    temp.as_file().set_permissions(std::fs::Permissions::from_mode(metadata.mode() & 0o7777))?;
    let mine = temp.as_file().metadata()?;
    if (mine.uid(), mine.gid()) != (metadata.uid(), metadata.gid()) {
        let _ = std::os::unix::fs::fchown(temp.as_file(), Some(metadata.uid()), Some(metadata.gid()));
        // A chown may clear set-id bits: the mode again.
        temp.as_file().set_permissions(std::fs::Permissions::from_mode(metadata.mode() & 0o7777))?;
    }
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    // The rename is done; making it durable is worth a try, not an error.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// `docker-credential-<helper> store`, with the identity token as Docker
/// stores one: the user `<token>`. What the helper says is shown without
/// either token.
fn store_with_helper(helper: &str, server_url: &str, old: &str, token: &str) -> Result<(), String> {
    let program = format!("docker-credential-{helper}");
    let request = serde_json::json!({"ServerURL": server_url, "Username": "<token>", "Secret": token}).to_string();
    let mut child = Command::new(&program)
        .arg("store")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program} (is it on PATH?): {e}"))?;
    // Far less than a pipe holds: the write cannot wait on the helper.
    let written = child.stdin.take().map(|mut stdin| stdin.write_all(request.as_bytes()));
    let output = child.wait_with_output().map_err(|e| format!("{program} store: {e}"))?;
    if !output.status.success() {
        let said = format!("{} {}", String::from_utf8_lossy(&output.stdout).trim(), String::from_utf8_lossy(&output.stderr).trim());
        let said = redact(said.trim(), &[old, token]);
        let said = if said.is_empty() { String::new() } else { format!(": {}", said.chars().take(300).collect::<String>()) };
        return Err(format!("{program} store failed ({}){said}", output.status));
    }
    match written {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(format!("{program} store did not read what it was given: {e}")),
        None => Err(format!("{program} store: no pipe to its input")),
    }
}

/// `text` with every non-empty secret in `secrets` replaced by `<redacted>`.
fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |text, secret| text.replace(secret, "<redacted>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auths_and_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        let source = CredentialSource::file(config.clone());
        assert_eq!(source.lookup("127.0.0.1:5000").unwrap(), None);
        assert!(source.describe().contains("does not exist"), "{}", source.describe());

        // "alice:s3cret", base64.
        std::fs::write(
            &config,
            r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcmV0"},"https://index.docker.io/v1/":{"auth":"aHViOmh1YnB3"}},
               "credHelpers":{"helped.example":"rbuildtest"}}"#,
        )
        .unwrap();
        let found = source.lookup("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(found, Credential::Password { user: "alice".into(), secret: "s3cret".into() });
        assert_eq!(found.describe(), "the credentials of alice");
        assert_eq!(source.lookup("docker.io").unwrap().unwrap().describe(), "the credentials of hub");
        assert_eq!(source.lookup("other.example").unwrap(), None);

        // `docker login` to a registry whose token server hands out refresh tokens.
        std::fs::write(&config, r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6","identitytoken":"refresh-me"}}}"#).unwrap();
        let found = source.lookup("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(found, Credential::IdentityToken("refresh-me".into()));
        assert!(!format!("{found:?}").contains("refresh-me"), "the token is never shown");
        assert!(source.describe().contains(&config.display().to_string()));

        std::fs::write(&config, "{not json").unwrap();
        assert!(source.lookup("127.0.0.1:5000").unwrap_err().contains("not valid JSON"));
    }

    /// A helper is a program on PATH answering `get` with JSON. PATH is set
    /// for a second run of this test only, never changed in this process.
    #[test]
    fn runs_credential_helpers() {
        const CHILD: &str = "RBUILD_CREDENTIAL_HELPER_TEST_CONFIG";
        if let Some(config) = std::env::var_os(CHILD) {
            let source = CredentialSource::file(PathBuf::from(config));
            assert_eq!(source.lookup("helped.example").unwrap().unwrap().describe(), "the credentials of helped-helped.example");
            assert_eq!(source.lookup("stored.example").unwrap(), None, "the store has nothing for it");
            // Docker's convention: the user `<token>` says the secret is an identity token.
            assert_eq!(source.lookup("token.example").unwrap(), Some(Credential::IdentityToken("id-token.example".into())));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(
            &config,
            r#"{"credHelpers":{"helped.example":"rbuildtest","token.example":"rbuildtoken"},"credsStore":"rbuildempty"}"#,
        )
        .unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for (name, script) in [
            ("rbuildtest", "#!/bin/sh\nserver=$(cat)\necho \"{\\\"Username\\\":\\\"helped-$server\\\",\\\"Secret\\\":\\\"pw\\\"}\"\n"),
            ("rbuildtoken", "#!/bin/sh\nserver=$(cat)\necho \"{\\\"Username\\\":\\\"<token>\\\",\\\"Secret\\\":\\\"id-$server\\\"}\"\n"),
            // Reads its stdin like a real helper: exiting before rbuild has
            // written the server name would make that write fail (EPIPE).
            ("rbuildempty", "#!/bin/sh\ncat >/dev/null\necho 'credentials not found in native keychain'\nexit 1\n"),
        ] {
            write_script(&bin.join(format!("docker-credential-{name}")), script);
        }
        let status = rerun_with_helpers("runs_credential_helpers", CHILD, &config, &bin);
        assert!(status.success(), "the helper lookups failed: {status}");
    }

    /// Runs the test `name` of this binary again, alone, with `config` in the
    /// variable `child` and `bin` first on PATH: PATH is never changed in this
    /// process, whose other tests run at the same time.
    fn rerun_with_helpers(name: &str, child: &str, config: &Path, bin: &Path) -> std::process::ExitStatus {
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", &format!("registry::auth::tests::{name}"), "--test-threads=1"])
            .env(child, config)
            .env("PATH", path)
            .status()
            .unwrap()
    }

    /// Writes an executable script by a short-lived `sh`, not by this
    /// process: a file this process had open for writing could be inherited
    /// by a child that another test forks at that moment, and exec would then
    /// fail with ETXTBSY ("text file busy").
    fn write_script(path: &Path, script: &str) {
        let mut writer = std::process::Command::new("sh")
            .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
            .arg(path)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut writer.stdin.take().unwrap(), script.as_bytes()).unwrap();
        assert!(writer.wait().unwrap().success());
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    /// A rotated token replaces the `identitytoken` of the entry it was read
    /// from and no other byte; the file keeps its mode; a symlink stays one.
    #[test]
    fn rotated_tokens_are_written_back_into_config_json() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let config = real.join("config.json");
        let original = r#"{
  "auths": {
    "127.0.0.1:5000": {"auth": "YWxpY2U6", "identitytoken": "old-token", "email": "a@example.com"},
    "other.example": {"identitytoken": "old-token"},
    "https://registry.example/v1/": {"auth": "YWxpY2U6", "identitytoken": "old-token"},
    "https://index.docker.io/v1/": {"auth": "aHViOmh1YnB3"}
  },
  "psFormat": "table {{.ID}}\t\"quoted\" \u00e9",
  "HttpHeaders": {"X-Meta": "1"},
  "n": [1, -2.5e3, true, null, {"identitytoken": "old-token"}, []],
  "empty": {}
}
"#;
        std::fs::write(&config, original).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
        // Read through a symlink, as a dotfiles checkout may have it.
        let link = dir.path().join("config.json");
        std::os::unix::fs::symlink(&config, &link).unwrap();
        let source = CredentialSource::file(link.clone());

        let (credential, origin) = source.lookup_with_origin("127.0.0.1:5000").unwrap().unwrap();
        assert_eq!(credential, Credential::IdentityToken("old-token".into()));
        let origin = origin.unwrap();
        assert_eq!(origin, TokenOrigin::ConfigFile { path: link.clone(), key: "127.0.0.1:5000".into() });
        assert!(!format!("{origin:?} {}", origin.describe()).contains("old-token"));

        origin.store("old-token", "new\"token").unwrap();
        let expected = original.replacen(r#""old-token""#, r#""new\"token""#, 1);
        assert_eq!(std::fs::read_to_string(&config).unwrap(), expected, "only that token changed");
        assert_eq!(mode_of(&config), 0o640, "the mode is kept");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is kept");
        let left: Vec<_> = std::fs::read_dir(&real).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("config.json")], "no temporary file is left");
        assert_eq!(source.lookup("127.0.0.1:5000").unwrap(), Some(Credential::IdentityToken("new\"token".into())));
        assert_eq!(source.lookup("other.example").unwrap(), Some(Credential::IdentityToken("old-token".into())));

        // A file that no longer holds the old token is left alone (another
        // `docker login` came in between); the error shows no token.
        let error = origin.store("old-token", "newer-token").unwrap_err();
        assert!(error.contains("holds another identity token for \"127.0.0.1:5000\""), "{error}");
        assert!(!error.contains("token\"") && !error.contains("newer-token"), "{error}");
        assert_eq!(std::fs::read_to_string(&config).unwrap(), expected);

        // An entry found by the registry its key names, not by the key itself.
        let (_, origin) = source.lookup_with_origin("registry.example").unwrap().unwrap();
        let origin = origin.unwrap();
        assert_eq!(origin, TokenOrigin::ConfigFile { path: link.clone(), key: "https://registry.example/v1/".into() });
        origin.store("old-token", "third").unwrap();
        assert_eq!(
            std::fs::read_to_string(&config).unwrap(),
            expected.replacen(r#""old-token""#, r#""third""#, 2).replacen(r#""third""#, r#""old-token""#, 1),
            "the second old-token (other.example's) stays, the third is replaced"
        );

        std::fs::write(&config, r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6cHc="}}}"#).unwrap();
        let error = TokenOrigin::ConfigFile { path: link, key: "127.0.0.1:5000".into() }.store("new\"token", "x").unwrap_err();
        assert!(error.contains("has no identity token for \"127.0.0.1:5000\" any more"), "{error}");
    }

    #[test]
    fn identity_token_spans_are_found_in_any_layout() {
        for (text, span) in [
            (r#"{"auths":{"r":{"identitytoken":"t"}}}"#, Some(r#""t""#)),
            (" {\n\t\"auths\" : { \"r\" : { \"x\" : [ { } ] , \"identitytoken\" : \"a\\\\\\\"b\" } } } ", Some(r#""a\\\"b""#)),
            // Keys compared as strings, escapes decoded; the last duplicate wins.
            (r#"{"auths":{"\u0072":{"identitytoken":"1","identitytoken":"2"}}}"#, Some(r#""2""#)),
            (r#"{"auths":{"q":{"identitytoken":"t"}}}"#, None),
            (r#"{"auths":{"r":{"identitytoken":null}}}"#, None),
            (r#"[{"auths":{"r":{"identitytoken":"t"}}}]"#, None),
        ] {
            let found = identity_token_span(text.as_bytes(), "r").map(|range| &text[range]);
            assert_eq!(found, span, "{text}");
        }
    }

    /// A token from a credential helper is stored with the helper's `store`
    /// action, as `docker login` stores identity tokens; a helper that fails
    /// gives an error that shows no token, even when the helper echoes it.
    #[test]
    fn rotated_tokens_are_stored_with_credential_helpers() {
        const CHILD: &str = "RBUILD_CREDENTIAL_STORE_TEST_CONFIG";
        if let Some(config) = std::env::var_os(CHILD) {
            let config = PathBuf::from(config);
            let source = CredentialSource::file(config.clone());
            let (credential, origin) = source.lookup_with_origin("token.example").unwrap().unwrap();
            assert_eq!(credential, Credential::IdentityToken("id-old".into()));
            let origin = origin.unwrap();
            assert_eq!(origin, TokenOrigin::Helper { helper: "rbuildstore".into(), server_url: "token.example".into() });
            assert_eq!(origin.describe(), "the credential helper docker-credential-rbuildstore");
            origin.store("id-old", "id-new").unwrap();
            let stored = std::fs::read_to_string(config.with_file_name("stored.json")).unwrap();
            let stored: Value = serde_json::from_str(&stored).unwrap();
            assert_eq!(stored, serde_json::json!({"ServerURL": "token.example", "Username": "<token>", "Secret": "id-new"}));
            // Docker Hub's helper key, through `credsStore`.
            let (_, origin) = source.lookup_with_origin("docker.io").unwrap().unwrap();
            let origin = origin.unwrap();
            assert_eq!(origin, TokenOrigin::Helper { helper: "rbuildlocked".into(), server_url: DOCKER_HUB_KEY.into() });
            let error = origin.store("id-old", "id-new").unwrap_err();
            assert!(error.contains("docker-credential-rbuildlocked store failed"), "{error}");
            assert!(error.contains("keychain is locked"), "{error}");
            assert!(!error.contains("id-new") && !error.contains("id-old"), "{error}");
            let error = TokenOrigin::Helper { helper: "rbuildabsent".into(), server_url: "x".into() }.store("a", "b").unwrap_err();
            assert!(error.contains("cannot run docker-credential-rbuildabsent"), "{error}");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        std::fs::write(&config, r#"{"credHelpers":{"token.example":"rbuildstore"},"credsStore":"rbuildlocked"}"#).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let stored = dir.path().join("stored.json");
        let get = "if [ \"$1\" = get ]; then cat >/dev/null; echo '{\"Username\":\"<token>\",\"Secret\":\"id-old\"}'; exit 0; fi\n";
        write_script(
            &bin.join("docker-credential-rbuildstore"),
            &format!("#!/bin/sh\n{get}[ \"$1\" = store ] && cat > '{}'\n", stored.display()),
        );
        write_script(
            &bin.join("docker-credential-rbuildlocked"),
            &format!("#!/bin/sh\n{get}echo \"keychain is locked, cannot store $(cat)\"\nexit 1\n"),
        );
        let status = rerun_with_helpers("rotated_tokens_are_stored_with_credential_helpers", CHILD, &config, &bin);
        assert!(status.success(), "the helper stores failed: {status}");
    }
}
