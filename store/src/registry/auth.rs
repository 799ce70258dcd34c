//! Registry credentials, found where Docker keeps them: `config.json` in
//! `$DOCKER_CONFIG`, else in `~/.docker`, with its `credHelpers` (per
//! registry), `credsStore` (for all) and `auths` entries, as the
//! `docker_credential` crate reads them (running `docker-credential-<name>`
//! helpers as needed). An entry is a user name and password, or an identity
//! token: `identitytoken` in `auths`, or a helper's answer with the user
//! `<token>` (Docker's convention), which `oauth` exchanges for access tokens.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use docker_credential::{CredentialRetrievalError, DockerCredential};

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
        let Some(path) = &self.config_file else { return Ok(None) };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
        };
        let server = if registry == "docker.io" || registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB_KEY
        } else {
            registry
        };
        match docker_credential::get_credential_from_reader(BufReader::new(file), server) {
            Ok(DockerCredential::UsernamePassword(user, secret)) => Ok(Some(Credential::Password { user, secret })),
            Ok(DockerCredential::IdentityToken(token)) => Ok(Some(Credential::IdentityToken(token))),
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
            // Written by a short-lived `sh`, not by this process: a file this
            // process had open for writing could be inherited by a child that
            // another test forks at that moment, and exec would then fail with
            // ETXTBSY ("text file busy").
            let helper = bin.join(format!("docker-credential-{name}"));
            let mut writer = std::process::Command::new("sh")
                .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
                .arg(&helper)
                .stdin(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            std::io::Write::write_all(&mut writer.stdin.take().unwrap(), script.as_bytes()).unwrap();
            assert!(writer.wait().unwrap().success());
        }
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "registry::auth::tests::runs_credential_helpers", "--test-threads=1"])
            .env(CHILD, &config)
            .env("PATH", path)
            .status()
            .unwrap();
        assert!(status.success(), "the helper lookups failed: {status}");
    }
}
