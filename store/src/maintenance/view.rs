//! What a collection or a usage report sees of a store: the live leases, the
//! records of every source and how many records name each piece of content.

use std::collections::{HashMap, HashSet};

use crate::content::lease::{self, ContentRef};
use crate::digest::Digest;
use crate::error::Result;
use crate::fs::list_dir;
use crate::maintenance::records::{GcRecord, SOURCES};
use crate::store::Store;

/// Everything a collection or a usage report needs to know about the store.
pub(crate) struct GcView {
    /// A handle without a lease.
    pub store: Store,
    /// What live processes other than this one registered.
    pub leased: HashSet<ContentRef>,
    pub lease_holders: usize,
    /// Records with the index of their source in [`SOURCES`].
    pub records: Vec<(usize, GcRecord)>,
    /// How many records name each piece of content.
    pub refcount: HashMap<ContentRef, usize>,
}

impl GcView {
    /// Reads leases and records. `remove_stale` deletes the leases of dead
    /// processes (for a collector holding the lock).
    pub fn load(store: &Store, remove_stale: bool) -> Result<GcView> {
        let live = lease::live_leases(store.root(), store.lease_path(), remove_stale)?;
        let store = store.without_lease();
        let mut records = Vec::new();
        for (index, source) in SOURCES.iter().enumerate() {
            records.extend(source.records(&store)?.into_iter().map(|r| (index, r)));
        }
        let mut refcount = HashMap::new();
        for (_, record) in &records {
            for item in &record.refs {
                *refcount.entry(item.clone()).or_insert(0) += 1;
            }
        }
        Ok(GcView {
            store,
            leased: live.items,
            lease_holders: live.holders,
            records,
            refcount,
        })
    }

    /// Whether a running process uses the record.
    pub fn in_use(&self, record: &GcRecord) -> bool {
        record.anchors.iter().any(|a| self.leased.contains(a))
    }

    /// Whether a prune with `all` keeps the record.
    pub fn keeps(&self, record: &GcRecord, all: bool) -> bool {
        self.in_use(record) || (record.root && !all)
    }

    /// The content a prune with `all` keeps: what kept records name, and
    /// what leases name.
    pub fn kept_content(&self, all: bool) -> HashSet<ContentRef> {
        let mut kept = self.leased.clone();
        for (_, record) in &self.records {
            if self.keeps(record, all) {
                kept.extend(record.refs.iter().cloned());
            }
        }
        kept
    }

    /// Every blob and snapshot in the store.
    pub fn all_content(&self) -> Result<Vec<ContentRef>> {
        let mut content = Vec::new();
        for path in list_dir(self.store.blobs().blobs_dir())? {
            if let Some(d) = digest_named(&path) {
                content.push(ContentRef::Blob(d));
            }
        }
        for path in list_dir(self.store.snapshots().snapshots_dir())? {
            if let Some(d) = digest_named(&path) {
                content.push(ContentRef::Snapshot(d));
            }
        }
        Ok(content)
    }
}

fn digest_named(path: &std::path::Path) -> Option<Digest> {
    Digest::from_hex(path.file_name()?.to_str()?).ok()
}
