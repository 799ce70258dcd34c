//! `rbuild debug`: a shell (or any command) in the sandbox over a kept failure (see
//! [`kept_failure`](crate::engine::kept_failure)) or a stored image, the way buildx's
//! `debug`/`--invoke` opens one. Over a failure it runs as the step ran: same user,
//! environment, working directory, network, isolation and mounts (cache mounts opened again,
//! bind mounts as their kept copies, secrets and ssh agents read again from their sources when
//! they are still there). Its layers are the step's parent with the step's failed upper
//! directory on top (`--initial`: without it), and what the shell writes goes to a temp
//! directory that is thrown away: nothing it does changes the store.
//!
//! Opening is two steps, so the caller can show what could not be provided and set up its
//! terminal before the shell starts: [`DebugShell::open`], then [`DebugShell::run`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use rbuild_frontend::graph::{MountKind, DEFAULT_PATH};
use rbuild_sandbox::{self as sandbox, ExitKind, Isolation, NetworkMode, RunSpec, SandboxError, Stdio};
use rbuild_store::{ContentRef, Layer, Store, StoreError};

use crate::engine::error::StepError;
use crate::engine::execute::run_mounts::{self, MountInputs, PreparedMounts};
use crate::engine::kept_failure::{self, FailedRun, Kept, BINDS_DIR, UPPER_DIR};

/// The shell run when no command is given.
pub const DEFAULT_SHELL: &str = "/bin/sh";

/// Where the shell runs.
pub enum ShellTarget {
    /// A kept failure by id or id prefix, or `last`; `initial`: before its command ran.
    Failure { id: String, initial: bool },
    /// An image of the store, by name or id.
    Image { reference: String, isolation: Isolation },
}

#[derive(Debug, thiserror::Error)]
pub enum DebugError {
    #[error("no kept failure {0:?}; `rbuild debug --list` lists them")]
    NotFound(String),
    #[error("no failed RUN is kept (a build keeps the RUN that fails unless it ran with --on-error=discard)")]
    NoneKept,
    #[error("kept failure {0} was written by another version of rbuild and cannot be opened")]
    Unreadable(String),
    #[error("image {0:?} is not in the store")]
    MissingImage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Mount(StepError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("{action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

/// A shell ready to run.
pub struct DebugShell {
    spec: RunSpec,
    /// The throw-away upper and scratch directories.
    _work: tempfile::TempDir,
    _mounts: PreparedMounts,
    /// What the shell does not get as the step had it (a secret whose file is gone).
    pub notes: Vec<String>,
    /// What it runs over, for the caller to say: `kept failure ID (Dockerfile:LINE)` or the image.
    pub description: String,
}

impl DebugShell {
    /// Prepares the shell over `target`, running `argv` (default [`DEFAULT_SHELL`]).
    pub fn open(store: &Store, target: &ShellTarget, argv: Option<Vec<String>>) -> Result<DebugShell, DebugError> {
        let work = store.tempdir()?;
        let upper = work.path().join("diff");
        let scratch = work.path().join("scratch");
        for dir in [&upper, &scratch] {
            std::fs::create_dir(dir).map_err(|source| DebugError::Io { action: format!("creating {}", dir.display()), source })?;
        }
        let base = RunSpec { upper, scratch, argv: argv.unwrap_or_else(|| vec![DEFAULT_SHELL.to_string()]), ..RunSpec::default() };
        let (spec, mounts, notes, description) = match target {
            ShellTarget::Failure { id, initial } => {
                let kept = match kept_failure::find(store, id)? {
                    Some(kept) => kept,
                    None if id == "last" => return Err(DebugError::NoneKept),
                    None => return Err(DebugError::NotFound(id.clone())),
                };
                let run = kept.run.clone().ok_or_else(|| DebugError::Unreadable(kept.record.id.clone()))?;
                let description = format!("kept failure {} ({}:{}, {})", kept.record.id, run.file, run.line, run.exit);
                let (spec, mounts, notes) = over_failure(store, &kept, &run, *initial, base)?;
                (spec, mounts, notes, description)
            }
            ShellTarget::Image { reference, isolation } => {
                let image = store.lookup(reference)?.ok_or_else(|| DebugError::MissingImage(reference.clone()))?;
                let meta = &image.config.config;
                let mut env: Vec<(String, String)> = meta.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                if !env.iter().any(|(k, _)| k == "PATH") {
                    env.push(("PATH".into(), DEFAULT_PATH.into()));
                }
                let workdir = if meta.working_dir.is_empty() { "/".to_string() } else { meta.working_dir.clone() };
                let spec = RunSpec {
                    lower: snapshots(store, &image.layers)?,
                    env,
                    user: meta.user.clone(),
                    workdir,
                    isolation: *isolation,
                    network: NetworkMode::Host,
                    ..base
                };
                (spec, PreparedMounts::default(), Vec::new(), format!("image {reference}"))
            }
        };
        Ok(DebugShell { spec, _work: work, _mounts: mounts, notes, description })
    }

    /// Runs the shell with `stdio` until it exits; its exit is the session's.
    pub fn run(mut self, stdio: Stdio) -> Result<ExitKind, DebugError> {
        self.spec.stdio = stdio;
        let outcome = sandbox::run(&self.spec, &mut |_| {})?;
        Ok(outcome.exit)
    }
}

/// The spec, mounts and notes of a shell over kept failure `kept`.
fn over_failure(
    store: &Store,
    kept: &Kept,
    run: &FailedRun,
    initial: bool,
    base: RunSpec,
) -> Result<(RunSpec, PreparedMounts, Vec<String>), DebugError> {
    let mut lower = snapshots(store, &kept.record.layers)?;
    if !initial {
        lower.push(kept.dir.join(UPPER_DIR));
    }
    let mut notes = Vec::new();
    let (secrets, missing) = run.secrets.still_available();
    notes.extend(missing);
    let (ssh, missing) = run.ssh.still_available();
    notes.extend(missing);
    // What is not there any more is said above; the shell opens without it.
    let mut mounts = run.mounts.clone();
    for mount in &mut mounts {
        match &mut mount.kind {
            MountKind::Secret { required, .. } | MountKind::Ssh { required, .. } => *required = false,
            MountKind::Cache { id, .. } if run.fresh_caches => {
                notes.push(format!("cache mount {id:?} starts empty: the build ran with --no-cache"))
            }
            _ => {}
        }
    }
    let copied_binds: BTreeMap<usize, PathBuf> =
        run.kept_binds.iter().map(|index| (*index, kept.dir.join(BINDS_DIR).join(index.to_string()))).collect();
    let inputs = MountInputs {
        store,
        secrets: &secrets,
        ssh: &ssh,
        cache_mount_dir: run.cache_mount_dir.as_deref(),
        from: BTreeMap::new(),
        copied_binds,
        fresh_caches: run.fresh_caches,
    };
    let prepared = run_mounts::prepare(&mounts, &inputs).map_err(DebugError::Mount)?;
    let mut env = run.env.clone();
    env.extend(prepared.env.iter().cloned());
    let spec = RunSpec {
        lower,
        env,
        user: run.user.clone(),
        workdir: run.workdir.clone(),
        hostname: run.hostname.clone(),
        network: run.network_mode(),
        isolation: run.isolation_mode(),
        mounts: prepared.mounts.clone(),
        ..base
    };
    Ok((spec, prepared, notes))
}

/// The snapshots of `layers`, held for this process (so no prune removes them while the
/// shell runs) and unpacked again if they were removed.
fn snapshots(store: &Store, layers: &[Layer]) -> Result<Vec<PathBuf>, DebugError> {
    let held: Vec<ContentRef> = layers.iter().map(|l| ContentRef::Snapshot(l.diff_id.clone())).collect();
    store.hold(&held)?;
    layers.iter().map(|layer| store.ensure_snapshot(layer).map_err(DebugError::from)).collect()
}
