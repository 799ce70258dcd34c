//! Garbage collection: `prune` and the clean-up after `rmi`.
//!
//! Content (blobs, snapshots) lives as long as a record or a live lease names
//! it (see `records` and `lease`). A collection holds `gc.lock` exclusively
//! from reading the leases to its last deletion, so it never deletes what a
//! running process registered, and it reads and deletes through a handle
//! without a lease of its own. What it deletes goes in this order:
//!
//! 1. garbage: content no record and no lease names (what killed or
//!    interrupted builds wrote, converted manifests of past exports, the
//!    content of removed images);
//! 2. prunable records, least valuable first: build cache before images,
//!    each least recently used first; tagged images only with `--all`;
//!    records in use by a running process never. Each record's content goes
//!    with it as soon as nothing else names it, and with `keep_storage` the
//!    collection stops as soon as the store is no larger than that;
//! 3. what described removed content: `pins/` of removed images, and the stat
//!    caches of trees that are gone (and of the snapshots, when some went).

use std::collections::BTreeSet;
use std::fs;
use std::io;

use crate::content::lease::{self, ContentRef};
use crate::error::{Result, StoreError};
use crate::maintenance::records::{GcRecord, RecordKind, SOURCES};
use crate::maintenance::usage::{freed_size, store_size};
use crate::maintenance::view::GcView;
use crate::metadata::stat_cache;
use crate::store::Store;

/// What `prune` may remove.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Also remove tagged images (everything not in use by a running build).
    pub all: bool,
    /// Stop once the store holds no more than this many bytes.
    pub keep_storage: Option<u64>,
}

/// What a collection removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Removed records in the order they went, with the names (tags) that
    /// went with them.
    pub records: Vec<RemovedRecord>,
    pub blobs: usize,
    pub snapshots: usize,
    /// Bytes of content deleted.
    pub reclaimed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedRecord {
    pub kind: RecordKind,
    pub id: String,
    pub names: Vec<String>,
}

impl GcView {
    fn unused(&self, item: &ContentRef) -> bool {
        !self.leased.contains(item) && self.refcount.get(item).copied().unwrap_or(0) == 0
    }

    /// Deletes `item` if nothing names it; returns the bytes freed.
    fn delete_if_unused(&self, item: &ContentRef, report: &mut PruneReport) -> Result<u64> {
        if !self.unused(item) {
            return Ok(0);
        }
        let size = freed_size(&self.store, item)?;
        let existed = match item {
            ContentRef::Blob(d) => {
                let path = self.store.blob_path(d);
                match fs::remove_file(&path) {
                    Ok(()) => true,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => false,
                    Err(e) => return Err(StoreError::io("remove blob", &path, e)),
                }
            }
            ContentRef::Snapshot(d) => {
                let existed = self.store.snapshot_path(d).is_dir();
                self.store.remove_snapshot(d)?;
                existed
            }
        };
        if existed {
            match item {
                ContentRef::Blob(_) => report.blobs += 1,
                ContentRef::Snapshot(_) => report.snapshots += 1,
            }
            report.reclaimed += size;
            Ok(size)
        } else {
            Ok(0)
        }
    }
}

impl Store {
    /// Removes garbage and prunable records as [`PruneOptions`] says (see
    /// the module comment for the order). Never removes a record or content
    /// that another running rbuild process registered in its lease.
    pub fn prune(&self, options: &PruneOptions) -> Result<PruneReport> {
        let _guard = lease::lock_for_collection(self.root(), self.lease_handle())?;
        let mut view = GcView::load(self, true)?;
        let mut report = PruneReport::default();
        for item in view.all_content()? {
            view.delete_if_unused(&item, &mut report)?;
        }
        let mut size = match options.keep_storage {
            Some(_) => store_size(self.root())?,
            None => 0,
        };
        let mut candidates: Vec<(usize, GcRecord)> = view
            .records
            .iter()
            .filter(|(_, r)| !view.keeps(r, options.all))
            .cloned()
            .collect();
        // Cache before untagged images before tagged ones; oldest use first.
        candidates.sort_by(|(_, a), (_, b)| {
            (a.root, a.kind, a.last_used, &a.id).cmp(&(b.root, b.kind, b.last_used, &b.id))
        });
        for (source, record) in candidates {
            if options.keep_storage.is_some_and(|limit| size <= limit) {
                break;
            }
            SOURCES[source].remove(&view.store, &record)?;
            report.records.push(RemovedRecord {
                kind: record.kind,
                id: record.id.clone(),
                names: record.names.clone(),
            });
            for item in &record.refs {
                if let Some(count) = view.refcount.get_mut(item) {
                    *count -= 1;
                }
                let freed = view.delete_if_unused(item, &mut report)?;
                size = size.saturating_sub(freed);
            }
        }
        self.remove_stale_descriptions(&report)?;
        Ok(report)
    }

    /// Removes what describes content that is gone: pins of removed images,
    /// and stat caches of trees that no longer exist (or of the snapshots,
    /// when some were deleted).
    fn remove_stale_descriptions(&self, report: &PruneReport) -> Result<()> {
        self.pins().remove_stale_pins()?;
        let snapshots = self.root().join("snapshots");
        let snapshots = snapshots.canonicalize().unwrap_or(snapshots);
        stat_cache::remove_stale(&self.stat_caches_dir(), (report.snapshots > 0).then_some(snapshots.as_path()))?;
        Ok(())
    }

    /// Deletes those of `candidates` that nothing names any more (after an
    /// image was removed). Returns what was deleted.
    pub(crate) fn collect(&self, candidates: &BTreeSet<ContentRef>) -> Result<PruneReport> {
        let _guard = lease::lock_for_collection(self.root(), self.lease_handle())?;
        let view = GcView::load(self, true)?;
        let mut report = PruneReport::default();
        for item in candidates {
            view.delete_if_unused(item, &mut report)?;
        }
        self.remove_stale_descriptions(&report)?;
        Ok(report)
    }
}

#[cfg(test)]
#[path = "gc_tests.rs"]
pub(crate) mod tests;
