//! Kept failures: what a failed RUN saw and did, kept so that `rbuild debug` can open a
//! shell there. `debug/<id>/` holds `record.json` ([`KeptFailure`]) and whatever the builder
//! staged beside it (the step's failed upper directory, copies of its bind mounts). A record
//! names the layers the step ran on, and the collector keeps their blobs and snapshots while
//! the record lives (`maintenance::records::FailureRecords`); `prune` removes records like
//! build cache, first. Nothing here is a step cache record: no build ever reads it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::content::layer::Layer;
use crate::digest::Digest;
use crate::error::{IoContext, Result, StoreError};
use crate::fs::{list_dir, sync_dir, sync_filesystem_of};

/// The record file of a kept failure, inside its directory.
pub const RECORD_FILE: &str = "record.json";

/// One kept failure, as `record.json` holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeptFailure {
    /// 12 hex digits, unique in the store.
    pub id: String,
    /// When the step failed, in seconds since the epoch.
    pub created: i64,
    /// The layers the step ran on, bottom → top.
    pub layers: Vec<Layer>,
    /// What the builder recorded about the step (its command, environment, mounts): opaque
    /// to the store.
    pub details: serde_json::Value,
}

/// The kept failures of one store, under `dir` (`debug/`).
#[derive(Clone, Debug)]
pub(crate) struct KeptFailures {
    dir: PathBuf,
}

impl KeptFailures {
    pub(crate) fn new(dir: PathBuf) -> KeptFailures {
        KeptFailures { dir }
    }

    /// The directory of kept failure `id`.
    pub(crate) fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Keeps `staged`, a directory in the store's temp area holding what the builder wants
    /// kept, as a new failure over `layers`: `record.json` is written into it, its files are
    /// flushed, and it is renamed into `debug/` whole, so a kept failure is either complete
    /// or absent.
    pub(crate) fn keep(&self, staged: &Path, layers: &[Layer], details: serde_json::Value) -> Result<KeptFailure> {
        fs::create_dir_all(&self.dir).at("create directory", &self.dir)?;
        let created = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let record = KeptFailure { id: new_id(created.as_nanos()), created: created.as_secs() as i64, layers: layers.to_vec(), details };
        let bytes = serde_json::to_vec_pretty(&record).expect("JSON values serialise");
        let file = staged.join(RECORD_FILE);
        fs::write(&file, bytes).at("write", &file)?;
        sync_filesystem_of(staged)?;
        let dest = self.path(&record.id);
        fs::rename(staged, &dest).at("rename into place", &dest)?;
        sync_dir(&self.dir)?;
        Ok(record)
    }

    /// Every readable kept failure, newest first.
    pub(crate) fn list(&self) -> Result<Vec<KeptFailure>> {
        let mut records = Vec::new();
        for dir in list_dir(&self.dir)? {
            if let Some(record) = read_record(&dir)? {
                records.push(record);
            }
        }
        records.sort_by(|a, b| (b.created, &b.id).cmp(&(a.created, &a.id)));
        Ok(records)
    }

    /// The kept failure whose id is `id` or starts with it; an error when the prefix names
    /// several.
    pub(crate) fn find(&self, id: &str) -> Result<Option<KeptFailure>> {
        let matching: Vec<KeptFailure> = self.list()?.into_iter().filter(|r| r.id.starts_with(id)).collect();
        match matching.len() {
            0 => Ok(None),
            1 => Ok(matching.into_iter().next()),
            matches => Err(StoreError::AmbiguousKeptFailure { prefix: id.to_string(), matches }),
        }
    }

    /// Removes kept failure `id` with everything staged beside its record; an id already
    /// gone is not an error.
    pub(crate) fn remove(&self, id: &str) -> Result<()> {
        let path = self.path(id);
        match fs::remove_dir_all(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(StoreError::io("remove", &path, e)),
            _ => Ok(()),
        }
    }

    /// The directories of `debug/` with their records (`None` for one that cannot be read).
    pub(crate) fn entries(&self) -> Result<Vec<(PathBuf, Option<KeptFailure>)>> {
        list_dir(&self.dir)?
            .into_iter()
            .map(|dir| read_record(&dir).map(|record| (dir, record)))
            .collect()
    }
}

/// The record of the kept failure in `dir`; `None` when it has none or it cannot be read.
fn read_record(dir: &Path) -> Result<Option<KeptFailure>> {
    let path = dir.join(RECORD_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => Ok(None),
        Err(e) => Err(StoreError::io("read", &path, e)),
    }
}

/// A fresh id: the time, this process and a counter, hashed and shortened.
fn new_id(nanos: u128) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = format!("{nanos}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    Digest::of_bytes(seed.as_bytes()).hex()[..12].to_string()
}

#[cfg(test)]
mod tests {
    use crate::test_util::{one_layer_image, temp_store};

    #[test]
    fn kept_failures_are_listed_found_and_removed() {
        let (_dir, store) = temp_store();
        let image = one_layer_image(&store, "base");
        let staged = store.tempdir().unwrap().keep();
        std::fs::create_dir(staged.join("upper")).unwrap();
        std::fs::write(staged.join("upper/file"), "written").unwrap();
        let kept = store.keep_failure(&staged, &image.layers, serde_json::json!({"command": "false"})).unwrap();
        assert!(!staged.exists());
        assert_eq!(store.kept_failures().unwrap(), vec![kept.clone()]);
        let dir = store.kept_failure_dir(&kept.id);
        assert_eq!(std::fs::read_to_string(dir.join("upper/file")).unwrap(), "written");
        assert_eq!(store.kept_failure(&kept.id[..4]).unwrap(), Some(kept.clone()));
        assert_eq!(store.kept_failure("zzz").unwrap(), None);
        store.remove_kept_failure(&kept.id).unwrap();
        assert!(store.kept_failures().unwrap().is_empty());
        store.remove_kept_failure(&kept.id).unwrap();
    }
}
