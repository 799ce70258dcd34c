//! `RUN --mount=…` values: BuildKit's comma-separated `key=value` fields, each value expanded
//! like the rest of the instruction, checked and given BuildKit's defaults.

use super::config::join_workdir;
use crate::graph::{CacheSharing, MountKind, RunMount};

/// A `--mount` value as written, before its `from=` is looked up: the lowering turns
/// `from` (default: the build context, for bind mounts) into an input of the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMount {
    pub mount: RunMount,
    /// `from=`: a stage, named context or image. `None` for a bind mount means the build
    /// context; for a cache mount, an empty cache.
    pub from: Option<String>,
}

/// The `from=` of a `--mount` value as written, if it has one: what the stages a build
/// needs are found from, before anything is expanded or checked.
pub fn from_field(text: &str) -> Option<&str> {
    text.split(',').find_map(|field| {
        let (key, value) = field.split_once('=')?;
        key.trim().eq_ignore_ascii_case("from").then(|| value.trim())
    })
}

/// The fields of one mount, in order, with their values expanded by `expand`.
fn fields(text: &str, expand: &dyn Fn(&str) -> Result<String, String>) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    for field in text.split(',') {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        match field.split_once('=') {
            Some((key, value)) => out.push((key.trim().to_ascii_lowercase(), Some(expand(value.trim())?))),
            None => out.push((field.to_ascii_lowercase(), None)),
        }
    }
    Ok(out)
}

/// A boolean field: `ro`, `ro=true`, `ro=false`.
fn boolean(key: &str, value: Option<&str>) -> Result<bool, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(format!("invalid value for {key}: {other:?} (true or false)")),
    }
}

fn octal_mode(value: &str) -> Result<u32, String> {
    u32::from_str_radix(value, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("invalid mode {value:?}: expected an octal mode such as 0755"))
}

fn id_number(key: &str, value: &str) -> Result<u32, String> {
    value.parse().map_err(|_| format!("invalid {key} {value:?}: expected a number"))
}

/// `size=` of a tmpfs: bytes, or with a k/m/g suffix (powers of 1024), as Docker reads it.
fn byte_size(value: &str) -> Result<u64, String> {
    let lower = value.to_ascii_lowercase();
    let trimmed = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, unit) = match trimmed.char_indices().last() {
        Some((i, 'k')) => (&trimmed[..i], 1u64 << 10),
        Some((i, 'm')) => (&trimmed[..i], 1 << 20),
        Some((i, 'g')) => (&trimmed[..i], 1 << 30),
        _ => (trimmed, 1),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| format!("invalid size {value:?}: expected bytes, or a number with k, m or g"))
}

/// Parses one `--mount` value. `ssh_index` counts the ssh mounts before this one in the
/// same RUN (their default targets are numbered).
pub fn parse_mount(
    text: &str,
    workdir: &str,
    ssh_index: usize,
    expand: &dyn Fn(&str) -> Result<String, String>,
) -> Result<ParsedMount, String> {
    let fields = fields(text, expand)?;
    let kind = fields
        .iter()
        .find(|(k, _)| k == "type")
        .map(|(_, v)| v.clone().unwrap_or_default())
        .unwrap_or_else(|| "bind".to_string());
    let mut target = None;
    let mut source = None;
    let mut from = None;
    let mut id = None;
    let mut readonly = None;
    let mut sharing = CacheSharing::Shared;
    let mut mode = None;
    let mut uid = 0;
    let mut gid = 0;
    let mut size = None;
    let mut required = false;
    let mut env = None;
    for (key, value) in &fields {
        let text = || value.clone().ok_or_else(|| format!("--mount field {key} needs a value ({key}=…)"));
        let allowed: &[&str] = match kind.as_str() {
            "bind" => &["type", "target", "dst", "destination", "source", "src", "from", "rw", "readwrite", "ro", "readonly"],
            "cache" => &[
                "type", "target", "dst", "destination", "source", "src", "from", "ro", "readonly", "rw", "readwrite", "id",
                "sharing", "mode", "uid", "gid",
            ],
            "tmpfs" => &["type", "target", "dst", "destination", "size"],
            "secret" => &["type", "target", "dst", "destination", "id", "env", "required", "mode", "uid", "gid"],
            "ssh" => &["type", "target", "dst", "destination", "id", "required", "mode", "uid", "gid"],
            other => return Err(format!("unsupported mount type {other:?} (bind, cache, tmpfs, secret or ssh)")),
        };
        if !allowed.contains(&key.as_str()) {
            return Err(format!("unexpected key {key:?} for a {kind} mount"));
        }
        match key.as_str() {
            "type" => {}
            "target" | "dst" | "destination" => target = Some(text()?),
            "source" | "src" => source = Some(text()?),
            "from" => from = Some(text()?),
            "id" => id = Some(text()?),
            "ro" | "readonly" => readonly = Some(boolean(key, value.as_deref())?),
            "rw" | "readwrite" => readonly = Some(!boolean(key, value.as_deref())?),
            "sharing" => {
                sharing = match text()?.as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    other => return Err(format!("unsupported sharing {other:?} (shared, private or locked)")),
                }
            }
            "mode" => mode = Some(octal_mode(&text()?)?),
            "uid" => uid = id_number("uid", &text()?)?,
            "gid" => gid = id_number("gid", &text()?)?,
            "size" => size = Some(byte_size(&text()?)?),
            "required" => required = boolean(key, value.as_deref())?,
            "env" => env = Some(text()?),
            _ => unreachable!("checked against the allowed keys"),
        }
    }
    let target = target.filter(|t| !t.is_empty());
    let needs_target = || target.clone().ok_or_else(|| format!("a {kind} mount needs a target (target=PATH)"));
    let (target, kind) = match kind.as_str() {
        "bind" => {
            let target = join_workdir(workdir, &needs_target()?);
            let source = source.unwrap_or_else(|| "/".to_string());
            (target, MountKind::Bind { source, readwrite: readonly == Some(false) })
        }
        "cache" => {
            let target = join_workdir(workdir, &needs_target()?);
            if target == "/" {
                return Err("a cache mount cannot be mounted at /".into());
            }
            let id = id.filter(|i| !i.is_empty()).unwrap_or_else(|| target.clone());
            let source = source.unwrap_or_else(|| "/".to_string());
            let mode = mode.unwrap_or(0o755);
            (target, MountKind::Cache { id, sharing, readonly: readonly == Some(true), source, mode, uid, gid })
        }
        "tmpfs" => (join_workdir(workdir, &needs_target()?), MountKind::Tmpfs { size }),
        "secret" => {
            let id = match (id.filter(|i| !i.is_empty()), &target) {
                (Some(id), _) => id,
                (None, Some(target)) => target.rsplit('/').next().unwrap_or(target).to_string(),
                (None, None) => return Err("a secret mount needs an id (id=NAME) or a target".into()),
            };
            // With env= and no target the secret is only an environment variable.
            let file = match (&target, &env) {
                (Some(t), _) => Some(join_workdir(workdir, t)),
                (None, Some(_)) => None,
                (None, None) => Some(format!("/run/secrets/{id}")),
            };
            let mount = MountKind::Secret { id, env, required, mode: mode.unwrap_or(0o400), uid, gid };
            (file.unwrap_or_default(), mount)
        }
        "ssh" => {
            let target = match target {
                Some(t) => join_workdir(workdir, &t),
                None => format!("/run/buildkit/ssh_agent.{ssh_index}"),
            };
            let id = id.filter(|i| !i.is_empty()).unwrap_or_else(|| "default".to_string());
            (target, MountKind::Ssh { id, required, mode: mode.unwrap_or(0o600), uid, gid })
        }
        _ => unreachable!("the type was checked with the first field"),
    };
    if from.is_some() && !matches!(kind, MountKind::Bind { .. } | MountKind::Cache { .. }) {
        return Err("from= applies to bind and cache mounts only".into());
    }
    Ok(ParsedMount { mount: RunMount { target, kind }, from })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ParsedMount, String> {
        parse_mount(text, "/app", 0, &|v| Ok(v.replace("$ID", "expanded")))
    }

    #[test]
    fn defaults_follow_buildkit() {
        let bind = parse("target=src").unwrap();
        assert_eq!(bind.mount, RunMount { target: "/app/src".into(), kind: MountKind::Bind { source: "/".into(), readwrite: false } });
        assert_eq!(bind.from, None);

        let cache = parse("type=cache,target=/root/.cache/go-build").unwrap();
        assert_eq!(
            cache.mount.kind,
            MountKind::Cache {
                id: "/root/.cache/go-build".into(),
                sharing: CacheSharing::Shared,
                readonly: false,
                source: "/".into(),
                mode: 0o755,
                uid: 0,
                gid: 0
            }
        );

        let secret = parse("type=secret,id=token").unwrap();
        assert_eq!(secret.mount.target, "/run/secrets/token");
        assert!(matches!(secret.mount.kind, MountKind::Secret { mode: 0o400, required: false, .. }));
        let by_target = parse("type=secret,target=/etc/npmrc").unwrap();
        assert!(matches!(&by_target.mount.kind, MountKind::Secret { id, .. } if id == "npmrc"));
        let env_only = parse("type=secret,id=token,env=TOKEN").unwrap();
        assert_eq!(env_only.mount.target, "");

        let ssh = parse_mount("type=ssh", "/", 1, &|v| Ok(v.to_string())).unwrap();
        assert_eq!(ssh.mount.target, "/run/buildkit/ssh_agent.1");
        assert!(matches!(&ssh.mount.kind, MountKind::Ssh { id, mode: 0o600, .. } if id == "default"));
    }

    #[test]
    fn options_are_read_and_expanded() {
        let cache = parse("type=cache,id=$ID,target=../cache,sharing=locked,mode=0700,uid=1000,gid=1001,ro").unwrap();
        assert_eq!(cache.mount.target, "/cache");
        assert_eq!(
            cache.mount.kind,
            MountKind::Cache {
                id: "expanded".into(),
                sharing: CacheSharing::Locked,
                readonly: true,
                source: "/".into(),
                mode: 0o700,
                uid: 1000,
                gid: 1001
            }
        );
        let bind = parse("type=bind,from=build,source=/out,target=/in,rw").unwrap();
        assert_eq!(bind.from.as_deref(), Some("build"));
        assert!(matches!(&bind.mount.kind, MountKind::Bind { source, readwrite: true } if source == "/out"));
        assert_eq!(parse("type=tmpfs,target=/t,size=64m").unwrap().mount.kind, MountKind::Tmpfs { size: Some(64 << 20) });
        assert!(matches!(parse("type=secret,id=a,required=true").unwrap().mount.kind, MountKind::Secret { required: true, .. }));
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        let cases = [
            ("type=volume,target=/x", "unsupported mount type"),
            ("type=cache", "needs a target"),
            ("type=cache,target=/", "cannot be mounted at /"),
            ("type=bind,target=/x,size=1", "unexpected key \"size\""),
            ("type=cache,target=/x,sharing=sometimes", "unsupported sharing"),
            ("type=cache,target=/x,mode=rwx", "invalid mode"),
            ("type=cache,target=/x,uid=me", "invalid uid"),
            ("type=tmpfs,target=/x,size=lots", "invalid size"),
            ("type=secret", "needs an id"),
            ("type=tmpfs,target=/x,from=build", "unexpected key \"from\""),
            ("type=bind,target=/x,ro=maybe", "invalid value for ro"),
        ];
        for (text, expected) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
