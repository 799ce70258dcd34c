//! The secrets and ssh agents a build may hand to `RUN --mount=type=secret|ssh`: `--secret` and
//! `--ssh` as docker's buildx takes them. Only where they come from is kept here; a secret's
//! value is read when a RUN mounts it, and it never enters a key, a record, a layer or a log.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Where a secret's value comes from (kept with a failed step, so that `rbuild debug` can
/// read the value again: the source, never the value).
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// A secret's source is printed by `Debug` (settings are); its value never is.
impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            SecretSource::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// The build's `--secret`s, by id.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Secrets {
    by_id: BTreeMap<String, SecretSource>,
}

impl Secrets {
    /// Parses `--secret` values: `id=NAME,src=FILE` (or `source=`), `id=NAME,env=VAR`,
    /// `type=file|env`; `id=NAME` alone is the variable NAME if it is set, else the file NAME.
    pub fn parse(flags: &[String]) -> Result<Secrets, String> {
        let mut by_id = BTreeMap::new();
        for flag in flags {
            let mut id = None;
            let mut kind = None;
            let mut src = None;
            let mut env = None;
            for field in flag.split(',') {
                let (key, value) = field
                    .split_once('=')
                    .ok_or_else(|| format!("invalid --secret {flag:?}: expected key=value fields (id=NAME,src=FILE)"))?;
                match key.trim().to_ascii_lowercase().as_str() {
                    "id" => id = Some(value.to_string()),
                    "type" => kind = Some(value.to_string()),
                    "src" | "source" => src = Some(value.to_string()),
                    "env" => env = Some(value.to_string()),
                    other => return Err(format!("invalid --secret {flag:?}: unknown field {other:?} (id, src, env, type)")),
                }
            }
            let id = id.filter(|i| !i.is_empty()).ok_or_else(|| format!("invalid --secret {flag:?}: it needs id=NAME"))?;
            let source = match (kind.as_deref(), src, env) {
                (Some("env"), src, env) => SecretSource::Env(env.or(src).unwrap_or_else(|| id.clone())),
                (Some("file") | None, Some(src), None) => SecretSource::File(PathBuf::from(src)),
                (None, None, Some(env)) => SecretSource::Env(env),
                (Some("file"), None, None) => SecretSource::File(PathBuf::from(&id)),
                (None, None, None) if std::env::var_os(&id).is_some() => SecretSource::Env(id.clone()),
                (None, None, None) => SecretSource::File(PathBuf::from(&id)),
                (Some(other), ..) if other != "file" => {
                    return Err(format!("invalid --secret {flag:?}: type={other} (file or env)"))
                }
                _ => return Err(format!("invalid --secret {flag:?}: give src=FILE or env=VAR, not both")),
            };
            by_id.insert(id, source);
        }
        Ok(Secrets { by_id })
    }

    /// The value of secret `id`; `Ok(None)` when the build has no such secret.
    pub fn value(&self, id: &str) -> Result<Option<Vec<u8>>, String> {
        match self.by_id.get(id) {
            None => Ok(None),
            Some(SecretSource::File(path)) => std::fs::read(path)
                .map(Some)
                .map_err(|e| format!("reading secret {id:?} from {}: {e}", path.display())),
            Some(SecretSource::Env(name)) => std::env::var_os(name)
                .map(|v| Some(std::os::unix::ffi::OsStringExt::into_vec(v)))
                .ok_or_else(|| format!("secret {id:?}: the environment variable {name} is not set")),
        }
    }
}

impl Secrets {
    /// The secrets whose source can still be read, and for each other one why not: what a
    /// debug shell re-supplies long after the build.
    pub fn still_available(&self) -> (Secrets, Vec<String>) {
        let mut available = Secrets::default();
        let mut missing = Vec::new();
        for (id, source) in &self.by_id {
            match self.value(id) {
                Ok(Some(_)) => {
                    available.by_id.insert(id.clone(), source.clone());
                }
                Ok(None) => {}
                Err(reason) => missing.push(format!("secret {id:?} is not mounted: {reason}")),
            }
        }
        (available, missing)
    }
}

/// The build's `--ssh` agents, by id: a socket or key files.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SshAgents {
    by_id: BTreeMap<String, Vec<PathBuf>>,
}

impl SshAgents {
    /// Parses `--ssh` values: `default` (the caller's `SSH_AUTH_SOCK`), `ID` (also
    /// `SSH_AUTH_SOCK`), `ID=SOCKET` or `ID=KEY[,KEY…]`.
    pub fn parse(flags: &[String]) -> Result<SshAgents, String> {
        let mut by_id = BTreeMap::new();
        for flag in flags {
            let (id, paths) = match flag.split_once('=') {
                Some((id, paths)) => (id, paths.split(',').filter(|p| !p.is_empty()).map(PathBuf::from).collect()),
                None => {
                    let socket = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()).ok_or_else(|| {
                        format!("--ssh {flag}: SSH_AUTH_SOCK is not set; start an agent (eval $(ssh-agent); ssh-add) or give {flag}=SOCKET|KEY")
                    })?;
                    (flag.as_str(), vec![PathBuf::from(socket)])
                }
            };
            if id.is_empty() || paths.is_empty() {
                return Err(format!("invalid --ssh {flag:?}: expected default, ID, ID=SOCKET or ID=KEY[,KEY…]"));
            }
            by_id.insert(id.to_string(), paths);
        }
        Ok(SshAgents { by_id })
    }

    /// The agents whose socket or keys are all still there, and for each other one why not.
    pub fn still_available(&self) -> (SshAgents, Vec<String>) {
        let mut available = SshAgents::default();
        let mut missing = Vec::new();
        for (id, paths) in &self.by_id {
            match paths.iter().find(|p| !p.exists()) {
                None => {
                    available.by_id.insert(id.clone(), paths.clone());
                }
                Some(gone) => missing.push(format!("ssh agent {id:?} is not mounted: {} is gone", gone.display())),
            }
        }
        (available, missing)
    }

    /// The socket or keys of agent `id`.
    pub fn get(&self, id: &str) -> Option<&[PathBuf]> {
        self.by_id.get(id).map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_forms_of_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cr3t").unwrap();
        std::env::set_var("RBUILD_TEST_SECRET_VAR", "from-env");
        let secrets = Secrets::parse(&[
            format!("id=file,src={}", file.display()),
            "id=env,env=RBUILD_TEST_SECRET_VAR".into(),
            "id=RBUILD_TEST_SECRET_VAR".into(),
            "type=env,id=typed,src=RBUILD_TEST_SECRET_VAR".into(),
        ])
        .unwrap();
        assert_eq!(secrets.value("file").unwrap().unwrap(), b"s3cr3t");
        assert_eq!(secrets.value("env").unwrap().unwrap(), b"from-env");
        assert_eq!(secrets.value("RBUILD_TEST_SECRET_VAR").unwrap().unwrap(), b"from-env");
        assert_eq!(secrets.value("typed").unwrap().unwrap(), b"from-env");
        assert_eq!(secrets.value("missing").unwrap(), None);
        for bad in ["src=x", "id=a,color=red", "id=a,src=x,env=Y", "id=a,type=vault", "id"] {
            assert!(Secrets::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
        // Debug shows where a secret comes from, never its value.
        assert!(!format!("{secrets:?}").contains("s3cr3t"));
    }

    #[test]
    fn ssh_forms() {
        let agents = SshAgents::parse(&["github=/keys/a,/keys/b".into(), "sock=/run/agent.sock".into()]).unwrap();
        assert_eq!(agents.get("github").unwrap().len(), 2);
        assert_eq!(agents.get("sock").unwrap(), [PathBuf::from("/run/agent.sock")]);
        assert!(agents.get("default").is_none());
        assert!(SshAgents::parse(&["x=".into()]).is_err());
    }
}
