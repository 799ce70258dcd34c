//! File-system helpers every part of the store uses: listing a directory and
//! making what was written durable. They take paths, not the `Store`, so the
//! modules that use them need nothing above them.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result, StoreError};

/// The entries of `dir`, sorted; none if it does not exist.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("list", dir, e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        paths.push(entry.at("list", dir)?.path());
    }
    paths.sort();
    Ok(paths)
}

/// Makes the entries of `dir` (a rename into it) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("fsync directory", dir)
}

/// Flushes the whole filesystem holding `dir` to the disk: one call for what
/// would be thousands of fsyncs (a snapshot's files, a build's cache records).
pub(crate) fn sync_filesystem_of(dir: &Path) -> Result<()> {
    let fd = File::open(dir).at("open", dir)?;
    rustix::fs::syncfs(&fd).map_err(|e| StoreError::io("sync the filesystem of", dir, e.into()))
}
