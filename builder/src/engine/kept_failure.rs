//! What rbuild keeps of a RUN that failed, for `rbuild debug`: the step's failed upper
//! directory (the writes the command made before it failed), copies of its bind mounts, and
//! [`FailedRun`], everything needed to run a shell the way the step ran (command,
//! environment, user, working directory, network, isolation, mounts). The store keeps it under
//! `debug/<id>/` and holds the layers the step ran on until it is pruned.
//!
//! Secrets and ssh agents are kept as their sources (`--secret id=…,src=FILE`), never as
//! values: a debug shell reads them again, if they are still there. Nothing kept here is a
//! step cache record, so a kept failure changes no later build's cache hits.

use std::path::{Path, PathBuf};

use rbuild_frontend::graph::RunMount;
use rbuild_sandbox::{Isolation, NetworkMode};
use rbuild_store::{KeptFailure, Layer, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::engine::error::BuildError;
use crate::engine::secrets::{Secrets, SshAgents};

/// The failed upper directory, inside a kept failure's directory.
pub const UPPER_DIR: &str = "upper";
/// Where the copy of bind mount `n` is kept: `binds/<n>`.
pub const BINDS_DIR: &str = "binds";

/// A RUN as it ran and failed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailedRun {
    /// The Dockerfile's name and the step's first line there.
    pub file: String,
    pub line: usize,
    /// The instruction as progress shows it.
    pub instruction: String,
    pub argv: Vec<String>,
    /// The command's environment without what its mounts added (secret values).
    pub env: Vec<(String, String)>,
    pub user: String,
    pub workdir: String,
    pub hostname: String,
    /// `none` or `host`.
    pub network: String,
    /// `namespaces` or `chroot`.
    pub isolation: String,
    pub mounts: Vec<RunMount>,
    /// The indexes of the bind mounts whose copies are kept in `binds/`.
    pub kept_binds: Vec<usize>,
    pub secrets: Secrets,
    pub ssh: SshAgents,
    pub cache_mount_dir: Option<PathBuf>,
    /// The build ran with `--no-cache`: its cache mounts were fresh and are gone.
    pub fresh_caches: bool,
    /// How the command ended, as the error said it.
    pub exit: String,
}

impl FailedRun {
    pub fn network_mode(&self) -> NetworkMode {
        match self.network.as_str() {
            "none" => NetworkMode::None,
            _ => NetworkMode::Host,
        }
    }

    pub fn isolation_mode(&self) -> Isolation {
        match self.isolation.as_str() {
            "chroot" => Isolation::Chroot,
            _ => Isolation::Namespaces,
        }
    }

    pub fn network_name(mode: NetworkMode) -> &'static str {
        match mode {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        }
    }

    pub fn isolation_name(mode: Isolation) -> &'static str {
        match mode {
            Isolation::Namespaces => "namespaces",
            Isolation::Chroot => "chroot",
        }
    }
}

/// What the step left behind: its upper directory and its bind mounts' copies (by index),
/// all in the store's temp area, renamed away by [`keep`].
pub struct Leftovers<'a> {
    pub upper: &'a Path,
    pub bind_copies: &'a [(usize, PathBuf)],
}

/// Keeps a failed RUN over `layers` in `store`; returns its id.
pub fn keep(store: &Store, layers: &[Layer], mut run: FailedRun, left: Leftovers<'_>) -> Result<String, BuildError> {
    let staged = store.tempdir()?;
    let io = |action: &str, path: &Path, source| BuildError::Io { action: format!("{action} {}", path.display()), source };
    let upper = staged.path().join(UPPER_DIR);
    std::fs::rename(left.upper, &upper).map_err(|e| io("move", left.upper, e))?;
    let binds = staged.path().join(BINDS_DIR);
    std::fs::create_dir(&binds).map_err(|e| io("create", &binds, e))?;
    for (index, copy) in left.bind_copies {
        let dest = binds.join(index.to_string());
        std::fs::rename(copy, &dest).map_err(|e| io("move", copy, e))?;
        run.kept_binds.push(*index);
    }
    let details = serde_json::to_value(&run).expect("JSON values serialise");
    // The store renames the staged directory into place: the TempDir has nothing left to remove.
    let kept = store.keep_failure(&staged.keep(), layers, details)?;
    Ok(kept.id)
}

/// A kept failure with what the builder recorded, as `rbuild debug` reads it.
pub struct Kept {
    pub record: KeptFailure,
    /// `None` when the record's details are not this version's.
    pub run: Option<FailedRun>,
    pub dir: PathBuf,
}

impl Kept {
    fn of(store: &Store, record: KeptFailure) -> Kept {
        let run = serde_json::from_value(record.details.clone()).ok();
        let dir = store.kept_failure_dir(&record.id);
        Kept { record, run, dir }
    }
}

/// Every kept failure, newest first.
pub fn list(store: &Store) -> Result<Vec<Kept>, StoreError> {
    Ok(store.kept_failures()?.into_iter().map(|r| Kept::of(store, r)).collect())
}

/// The kept failure `id` (or id prefix); `last`: the newest.
pub fn find(store: &Store, id: &str) -> Result<Option<Kept>, StoreError> {
    let record = match id {
        "last" => store.kept_failures()?.into_iter().next(),
        id => store.kept_failure(id)?,
    };
    Ok(record.map(|r| Kept::of(store, r)))
}
