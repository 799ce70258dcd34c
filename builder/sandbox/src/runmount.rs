//! The run mounts of a [`super::RunSpec`] (`RUN --mount`), checked before
//! forking: each target is absolute and normalized, each bind source exists
//! and is known to be a directory, a file or a socket, which decides the
//! kind of mount point it needs. Both isolations then work from the plan:
//! `mounts` mounts it, `chrootmount` emulates it by copying.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::error::SandboxError;
use super::rootpath::{self, Kind};
use super::{MountKind, RunMount};

/// What a bind mount's source is on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceKind {
    Dir,
    File,
    Socket,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Planned {
    Bind {
        /// Absolute, with symlinks resolved.
        source: PathBuf,
        kind: SourceKind,
        readonly: bool,
    },
    Tmpfs {
        size: Option<u64>,
    },
}

/// One run mount, ready for either isolation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PlannedMount {
    /// The normalized absolute target, as errors name it.
    pub target: String,
    /// The target relative to the root; symlinks in it are resolved later,
    /// inside the root.
    pub rel: PathBuf,
    pub what: Planned,
}

impl PlannedMount {
    /// What the mount point must be: a directory for a directory or a
    /// tmpfs, a file for anything else (a socket is bound over a file).
    pub fn mount_point(&self) -> Kind {
        match self.what {
            Planned::Bind { kind: SourceKind::Dir, .. } | Planned::Tmpfs { .. } => Kind::Dir,
            Planned::Bind { .. } => Kind::File,
        }
    }
}

pub(crate) fn plan(mounts: &[RunMount]) -> Result<Vec<PlannedMount>, SandboxError> {
    mounts.iter().map(plan_one).collect()
}

fn plan_one(mount: &RunMount) -> Result<PlannedMount, SandboxError> {
    let refuse = |message: &str| SandboxError::Mount {
        target: mount.target.clone(),
        message: message.to_string(),
    };
    if !mount.target.starts_with('/') {
        return Err(refuse("the target must be an absolute path"));
    }
    // `..` is resolved lexically, as BuildKit cleans a target before it
    // looks at the filesystem, so a target cannot climb out of the root.
    let target = rootpath::lexical(&mount.target).ok_or_else(|| refuse("the target contains a NUL byte"))?;
    let rel = target.strip_prefix("/").unwrap_or(&target).to_path_buf();
    if rel.as_os_str().is_empty() {
        return Err(refuse("cannot mount over the root directory"));
    }
    let what = match &mount.kind {
        MountKind::Tmpfs { size } => Planned::Tmpfs { size: *size },
        MountKind::Bind { source, readonly } => {
            let (source, kind) = inspect_source(source).map_err(|m| refuse(&m))?;
            Planned::Bind {
                source,
                kind,
                readonly: *readonly,
            }
        }
    };
    Ok(PlannedMount {
        target: target.display().to_string(),
        rel,
        what,
    })
}

fn inspect_source(source: &Path) -> Result<(PathBuf, SourceKind), String> {
    let resolved = std::fs::canonicalize(source)
        .map_err(|e| format!("the source {}: {e}", source.display()))?;
    let meta = std::fs::metadata(&resolved)
        .map_err(|e| format!("the source {}: {e}", source.display()))?;
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        SourceKind::Dir
    } else if ft.is_file() {
        SourceKind::File
    } else if ft.is_socket() {
        SourceKind::Socket
    } else {
        return Err(format!(
            "the source {} is not a directory, a regular file or a unix socket",
            source.display()
        ));
    };
    Ok((resolved, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(target: &str, source: &Path) -> RunMount {
        RunMount {
            target: target.into(),
            kind: MountKind::Bind {
                source: source.to_path_buf(),
                readonly: false,
            },
        }
    }

    #[test]
    fn targets_are_absolute_and_normalized() {
        let tmpfs = |target: &str| RunMount {
            target: target.into(),
            kind: MountKind::Tmpfs { size: None },
        };
        let planned = plan(&[tmpfs("/a/./b/../c/"), tmpfs("/../../x")]).unwrap();
        assert_eq!(
            planned.iter().map(|m| (m.target.as_str(), m.rel.to_str().unwrap())).collect::<Vec<_>>(),
            [("/a/c", "a/c"), ("/x", "x")]
        );
        for (target, message) in [
            ("rel/path", "absolute"),
            ("", "absolute"),
            ("/..", "root directory"),
        ] {
            let err = plan(&[tmpfs(target)]).unwrap_err();
            assert!(
                matches!(&err, SandboxError::Mount { target: t, message: m } if t == target && m.contains(message)),
                "{target}: {err}"
            );
            assert!(err.to_string().starts_with(&format!("RUN --mount target {target}: ")));
        }
    }

    #[test]
    fn sources_are_classified_by_what_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "s").unwrap();
        let socket = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("secret", &link).unwrap();
        let planned = plan(&[
            bind("/d", dir.path()),
            bind("/f", &link),
            bind("/s", &socket),
        ])
        .unwrap();
        let kinds: Vec<(SourceKind, Kind)> = planned
            .iter()
            .map(|m| match &m.what {
                Planned::Bind { kind, .. } => (*kind, m.mount_point()),
                Planned::Tmpfs { .. } => unreachable!(),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (SourceKind::Dir, Kind::Dir),
                (SourceKind::File, Kind::File),
                (SourceKind::Socket, Kind::File)
            ]
        );
        // A symlinked source is the file it names.
        assert!(matches!(&planned[1].what, Planned::Bind { source, .. } if source.ends_with("secret")));

        let err = plan(&[bind("/m", &dir.path().join("missing"))]).unwrap_err();
        assert!(err.to_string().contains("/m: the source"), "{err}");
        let err = plan(&[bind("/n", Path::new("/dev/null"))]).unwrap_err();
        assert!(err.to_string().contains("not a directory, a regular file or a unix socket"), "{err}");
    }
}
