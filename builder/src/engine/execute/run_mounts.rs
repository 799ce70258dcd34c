//! From a RUN's `--mount`s to what the sandbox mounts: bind mounts get a copy of their files
//! (COPY's own selection, `.dockerignore` included, so writes of an `rw` mount are discarded),
//! cache mounts their kept directory (locked as their sharing mode says), secrets a file in
//! memory-backed storage outside the store, ssh mounts a forwarding socket. What they hold on
//! to (temp directories, locks, agents) is released when the run is over.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rbuild_frontend::graph::{CopyOp, MountKind, RunMount};
use rbuild_sandbox::{MountKind as SandboxKind, RunMount as SandboxMount};
use rbuild_store::Store;

use crate::engine::cache_mounts::{CacheMounts, NewCache};
use crate::engine::error::StepError;
use crate::engine::fileops::{self, CopyFrom, CopyRequest, Rootfs};
use crate::engine::secrets::{Secrets, SshAgents};
use crate::engine::settings::{BuildSettings, CachePolicy};
use crate::engine::ssh_forward;

/// What a RUN's mounts became, and what must live until it has run.
#[derive(Default)]
pub(crate) struct PreparedMounts {
    pub mounts: Vec<SandboxMount>,
    /// Variables the mounts add (`env=` secrets, `SSH_AUTH_SOCK`).
    pub env: Vec<(String, String)>,
    /// Secret values, to be masked in the RUN's output.
    pub secrets: Vec<Vec<u8>>,
    /// The copy each bind mount got, by the mount's index (what a kept failure keeps).
    pub bind_copies: Vec<(usize, PathBuf)>,
    _held: Vec<Box<dyn Send>>,
}

/// What the mounts of one RUN read.
pub(crate) struct MountInputs<'a> {
    pub store: &'a Store,
    pub secrets: &'a Secrets,
    pub ssh: &'a SshAgents,
    /// `--cache-mount-dir`; `None`: the store's.
    pub cache_mount_dir: Option<&'a Path>,
    /// The input of each mount that has one, by the mount's index.
    pub from: BTreeMap<usize, CopyFrom<'a>>,
    /// Bind mounts whose files are already copied (a kept failure's), by the mount's index:
    /// mounted as they are.
    pub copied_binds: BTreeMap<usize, PathBuf>,
    /// Cache mounts start empty and are not kept (`--no-cache`).
    pub fresh_caches: bool,
}

fn failed(mount: &RunMount, reason: impl std::fmt::Display) -> StepError {
    StepError::Mount { target: mount.target.clone(), reason: reason.to_string() }
}

impl<'a> MountInputs<'a> {
    /// The inputs of a build's RUN: its secrets, agents and cache mount directory.
    pub fn of_build(store: &'a Store, settings: &'a BuildSettings, from: BTreeMap<usize, CopyFrom<'a>>) -> MountInputs<'a> {
        MountInputs {
            store,
            secrets: &settings.secrets,
            ssh: &settings.ssh,
            cache_mount_dir: settings.cache_mount_dir.as_deref(),
            from,
            copied_binds: BTreeMap::new(),
            fresh_caches: matches!(settings.cache_policy, CachePolicy::Ignore),
        }
    }
}

pub(crate) fn prepare(mounts: &[RunMount], inputs: &MountInputs<'_>) -> Result<PreparedMounts, StepError> {
    let mut prepared = PreparedMounts::default();
    let mut private_dir: Option<tempfile::TempDir> = None;
    for (index, mount) in mounts.iter().enumerate() {
        let from = inputs.from.get(&index).copied();
        let fail = |reason: &dyn std::fmt::Display| failed(mount, reason);
        match &mount.kind {
            MountKind::Bind { readwrite, .. } if inputs.copied_binds.contains_key(&index) => {
                prepared.mounts.push(bind(mount, inputs.copied_binds[&index].clone(), !readwrite));
            }
            MountKind::Bind { source, readwrite } => {
                let from = from.expect("lowering gives every bind mount an input");
                let copy = inputs.store.tempdir().map_err(|e| fail(&e))?;
                copy_into_dir(from, source, copy.path(), "/m")?;
                prepared.mounts.push(bind(mount, copy.path().join("m"), !readwrite));
                prepared.bind_copies.push((index, copy.path().join("m")));
                prepared._held.push(Box::new(copy));
            }
            MountKind::Cache { id, sharing, readonly, source, mode, uid, gid } => {
                let seed = |dir: &Path| match from {
                    Some(from) => copy_into_dir(from, source, dir, "/").map_err(|e| std::io::Error::other(e.to_string())),
                    None => Ok(()),
                };
                let new = NewCache { mode: *mode, uid: *uid, gid: *gid, seed: Some(&seed) };
                let path = if inputs.fresh_caches {
                    let dir = inputs.store.tempdir().map_err(|e| fail(&e))?;
                    let mounts = CacheMounts::new(dir.path().to_path_buf());
                    let lease = mounts.open(id, *sharing, &new).map_err(|e| fail(&e))?;
                    let path = lease.path.clone();
                    prepared._held.push(Box::new((lease, dir)));
                    path
                } else {
                    let lease = cache_mounts(inputs).open(id, *sharing, &new).map_err(|e| fail(&format!("cache {id:?}: {e}")))?;
                    let path = lease.path.clone();
                    prepared._held.push(Box::new(lease));
                    path
                };
                prepared.mounts.push(bind(mount, path, *readonly));
            }
            MountKind::Tmpfs { size } => {
                prepared.mounts.push(SandboxMount { target: mount.target.clone(), kind: SandboxKind::Tmpfs { size: *size } })
            }
            MountKind::Secret { id, env, required, mode, uid, gid } => {
                let value = match inputs.secrets.value(id).map_err(|e| fail(&e))? {
                    Some(value) => value,
                    None if *required => {
                        return Err(fail(&format!("secret {id:?} is required but was not given (--secret id={id},src=FILE)")))
                    }
                    None => continue,
                };
                if !mount.target.is_empty() {
                    let dir = private(&mut private_dir).map_err(|e| fail(&e))?;
                    let file = dir.join(format!("secret-{index}"));
                    write_owned(&file, &value, *mode, *uid, *gid).map_err(|e| fail(&e))?;
                    prepared.mounts.push(bind(mount, file, true));
                }
                if let Some(name) = env {
                    prepared.env.push((name.clone(), String::from_utf8_lossy(&value).into_owned()));
                }
                prepared.secrets.push(value);
            }
            MountKind::Ssh { id, required, mode, uid, gid } => {
                let Some(sources) = inputs.ssh.get(id) else {
                    if *required {
                        return Err(fail(&format!("ssh agent {id:?} is required but was not given (--ssh {id}[=SOCKET|KEY])")));
                    }
                    continue;
                };
                let dir = tempfile::Builder::new().prefix("rbuild-ssh-").tempdir().map_err(|e| fail(&e))?;
                let socket = ssh_forward::forward(sources, dir.path(), *mode, *uid, *gid).map_err(|e| fail(&format!("ssh agent {id:?}: {e}")))?;
                prepared.mounts.push(bind(mount, socket.path().to_path_buf(), false));
                if !prepared.env.iter().any(|(name, _)| name == "SSH_AUTH_SOCK") {
                    prepared.env.push(("SSH_AUTH_SOCK".into(), mount.target.clone()));
                }
                prepared._held.push(Box::new((socket, dir)));
            }
        }
    }
    if let Some(dir) = private_dir {
        prepared._held.push(Box::new(dir));
    }
    Ok(prepared)
}

fn bind(mount: &RunMount, source: PathBuf, readonly: bool) -> SandboxMount {
    SandboxMount { target: mount.target.clone(), kind: SandboxKind::Bind { source, readonly } }
}

/// The store's cache mounts, or those of `--cache-mount-dir`.
fn cache_mounts(inputs: &MountInputs<'_>) -> CacheMounts {
    CacheMounts::of(inputs.cache_mount_dir, inputs.store.root())
}

/// Copies `source` of `from` into the empty directory `dir` as COPY copies it to `dest`
/// (with the context's `.dockerignore`): to `/m`, a directory's contents or a file as `m`;
/// to `/`, what the source holds.
fn copy_into_dir(from: CopyFrom<'_>, source: &str, dir: &Path, dest: &str) -> Result<(), StepError> {
    let op = CopyOp::plain(&[source], dest);
    fileops::copy_into(CopyRequest::from(&op), from, &Rootfs::empty(), dir)?;
    Ok(())
}

/// A private directory for secret files: in memory (`/dev/shm`) where there is one, so a
/// secret never reaches a disk, and never in the store.
fn private(dir: &mut Option<tempfile::TempDir>) -> std::io::Result<PathBuf> {
    if dir.is_none() {
        let shm = Path::new("/dev/shm");
        let builder = || {
            let mut b = tempfile::Builder::new();
            b.prefix("rbuild-secrets-");
            b
        };
        let made = match shm.is_dir() {
            true => builder().tempdir_in(shm).or_else(|_| builder().tempdir()),
            false => builder().tempdir(),
        }?;
        *dir = Some(made);
    }
    Ok(dir.as_ref().expect("just made").path().to_path_buf())
}

fn write_owned(path: &Path, value: &[u8], mode: u32, uid: u32, gid: u32) -> std::io::Result<()> {
    fs::write(path, value)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    rustix::fs::chown(path, Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)))?;
    Ok(())
}
