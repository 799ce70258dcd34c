//! GC records: the things in a store that keep content (blobs, snapshots)
//! alive, and that may themselves be pruned.
//!
//! The collector (`gc`) and disk usage (`usage`) know content only through
//! records: anything no record and no lease names is garbage. Each kind of
//! record comes from a [`RecordSource`] listed in [`SOURCES`]:
//!
//! - images (`images/<id>` plus the tags in `tags.json`): a tagged image is a
//!   *root*, kept by every prune except `--all`; an untagged one is prunable;
//! - step cache records (`cache/records/<key>.json`, see `cache_index`):
//!   build cache, prunable, each keeping its layer's blob and snapshot; the
//!   file's mtime is its last use;
//! - layer conversions (`conversions/<codec>/<blob>`, see `convert`): build
//!   cache, prunable;
//! - kept failures (`debug/<id>/`, see `kept_failures`): prunable before
//!   anything else, each keeping the layers its step ran on.
//!
//! Another kind of record joins the same way: a source that lists them (with
//! the blobs and snapshots each one needs and when it was last used) and
//! removes one on request, added to [`SOURCES`]. Deleting the content is
//! always the collector's job, never a source's: it knows what else uses it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::content::layer::Layer;
use crate::content::lease::ContentRef;
use crate::digest::Digest;
use crate::error::{IoContext, Result, StoreError};
use crate::fs::list_dir;
use crate::metadata::cache_index::CacheRecord;
use crate::reference::Reference;
use crate::store::Store;

/// What a record is, for reports and for the order of pruning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    /// A failed RUN kept for `rbuild debug`: the first to go, only a debugging aid.
    KeptFailure,
    /// Build cache goes first when space is needed: it is cheap to recreate.
    BuildCache,
    Image,
}

/// One record, as its source describes it to the collector.
#[derive(Clone, Debug)]
pub struct GcRecord {
    pub kind: RecordKind,
    /// What the record is called in reports: an image id, a cache key.
    pub id: String,
    /// Names removed with the record (an image's tags), for reports.
    pub names: Vec<String>,
    /// Least recently used records are pruned first.
    pub last_used: SystemTime,
    /// A root (a tagged image) is kept unless everything is pruned.
    pub root: bool,
    /// The content the record keeps alive.
    pub refs: BTreeSet<ContentRef>,
    /// The record is in use (never pruned) while a live lease names one of
    /// these: an image's manifest or config, a cache record's snapshot.
    pub anchors: BTreeSet<ContentRef>,
}

/// A kind of record: how to list them and how to remove one.
pub trait RecordSource: Sync {
    /// Every record of this kind now in `store`.
    fn records(&self, store: &Store) -> Result<Vec<GcRecord>>;
    /// Removes `record` itself (not its content). Removing a record that is
    /// already gone is not an error.
    fn remove(&self, store: &Store, record: &GcRecord) -> Result<()>;
}

/// Every source of records. The step cache adds its own here.
pub static SOURCES: &[&dyn RecordSource] = &[&ImageRecords, &CacheRecords, &ConversionRecords, &FailureRecords];

/// An image as the store knows it: the config digest (its id), the manifests
/// that point at it (the recorded one, and those tags point at), and its tags.
#[derive(Clone, Debug)]
pub(crate) struct ImageGroup {
    pub id: Digest,
    /// The manifest recorded under `images/<id>`, if any.
    pub recorded: Option<Digest>,
    pub manifests: BTreeSet<Digest>,
    pub tags: Vec<Reference>,
    /// When the image was stored (the record's mtime), else when it was tagged.
    pub stored_at: SystemTime,
    /// Why the image cannot be read, when it cannot (the id is then the
    /// manifest's digest).
    pub broken: Option<String>,
    /// The multi-platform indexes (tagged) that list one of its manifests.
    pub indexes: BTreeSet<Digest>,
}

impl Store {
    /// Every image: recorded ones and tagged ones, grouped by image id.
    pub(crate) fn image_groups(&self) -> Result<Vec<ImageGroup>> {
        let mut groups: BTreeMap<Digest, ImageGroup> = BTreeMap::new();
        let mut id_of_manifest: BTreeMap<Digest, Digest> = BTreeMap::new();
        for id in self.images().ids_with_prefix("")? {
            let path = self.images().record_path(&id);
            let Some(manifest) = self.images().manifest_for_id(&id)? else {
                continue;
            };
            let stored_at = mtime(&path)?.unwrap_or(UNIX_EPOCH);
            id_of_manifest.insert(manifest.clone(), id.clone());
            groups.insert(
                id.clone(),
                ImageGroup {
                    id,
                    recorded: Some(manifest.clone()),
                    manifests: [manifest].into(),
                    tags: Vec::new(),
                    stored_at,
                    broken: None,
                    indexes: BTreeSet::new(),
                },
            );
        }
        let tags_time = mtime(&self.tags_file().tags_path())?.unwrap_or(UNIX_EPOCH);
        for (name, target) in self.tags()? {
            let reference = Reference::parse(&name)?;
            // A multi-platform tag names each of its index's images (the index is kept with them).
            let (manifests, index) = match self.platform_images(&target) {
                Ok(Some(images)) => (
                    images.into_iter().map(|i| i.manifest).collect(),
                    Some(target),
                ),
                _ => (vec![target], None),
            };
            for manifest in manifests {
                let (id, broken) = match id_of_manifest.get(&manifest) {
                    Some(id) => (id.clone(), None),
                    None => match self.image(&manifest) {
                        Ok(image) => (image.config_digest, None),
                        Err(e) => (manifest.clone(), Some(e.to_string())),
                    },
                };
                id_of_manifest.insert(manifest.clone(), id.clone());
                let group = groups.entry(id.clone()).or_insert_with(|| ImageGroup {
                    id,
                    recorded: None,
                    manifests: BTreeSet::new(),
                    tags: Vec::new(),
                    stored_at: tags_time,
                    broken,
                    indexes: BTreeSet::new(),
                });
                group.manifests.insert(manifest);
                group.indexes.extend(index.clone());
                group.tags.push(reference.clone());
            }
        }
        Ok(groups.into_values().collect())
    }

    /// Removes an image's record and every tag that points at it.
    pub(crate) fn forget_image(&self, id: &Digest, manifests: &BTreeSet<Digest>) -> Result<()> {
        self.tags_file()
            .update_tags(|tags| tags.retain(|_, manifest| !manifests.contains(manifest)))?;
        let path = self.images().record_path(id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(StoreError::io("remove", &path, e))
            }
            _ => Ok(()),
        }
    }
}

/// Images: `images/<id>` records and tags.
pub struct ImageRecords;

impl RecordSource for ImageRecords {
    fn records(&self, store: &Store) -> Result<Vec<GcRecord>> {
        let mut records = Vec::new();
        for group in store.image_groups()? {
            let mut refs = BTreeSet::new();
            let mut anchors = BTreeSet::new();
            if group.broken.is_none() {
                anchors.insert(ContentRef::Blob(group.id.clone()));
            }
            anchors.extend(
                group
                    .indexes
                    .iter()
                    .map(|index| ContentRef::Blob(index.clone())),
            );
            for manifest in &group.manifests {
                anchors.insert(ContentRef::Blob(manifest.clone()));
                // A manifest that cannot be read keeps at least itself: what
                // it would have named is unknown, so it is not kept.
                if let Ok(image) = store.image(manifest) {
                    refs.insert(ContentRef::Blob(image.config_digest.clone()));
                    refs.extend(layer_content(&image.layers));
                }
            }
            refs.extend(anchors.iter().cloned());
            records.push(GcRecord {
                kind: RecordKind::Image,
                id: group.id.to_string(),
                names: group.tags.iter().map(Reference::familiar).collect(),
                last_used: group.stored_at,
                root: !group.tags.is_empty(),
                refs,
                anchors,
            });
        }
        Ok(records)
    }

    fn remove(&self, store: &Store, record: &GcRecord) -> Result<()> {
        let id: Digest = record.id.parse()?;
        let manifests = record
            .anchors
            .iter()
            .filter_map(|a| match a {
                ContentRef::Blob(d) => Some(d.clone()),
                ContentRef::Snapshot(_) => None,
            })
            .collect();
        store.forget_image(&id, &manifests)
    }
}

/// The blobs and snapshots of `layers`.
pub(crate) fn layer_content(layers: &[Layer]) -> impl Iterator<Item = ContentRef> + '_ {
    layers.iter().flat_map(|l| {
        [
            ContentRef::Blob(l.digest.clone()),
            ContentRef::Snapshot(l.diff_id.clone()),
        ]
    })
}

/// The step cache's records, one file per cache key.
pub struct CacheRecords;

impl RecordSource for CacheRecords {
    fn records(&self, store: &Store) -> Result<Vec<GcRecord>> {
        let mut records = Vec::new();
        for path in list_dir(&store.root().join("cache").join("records"))? {
            let Some(key) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let Ok(bytes) = fs::read(&path) else { continue };
            let last_used = mtime(&path)?.unwrap_or(UNIX_EPOCH);
            // An unreadable record is a miss for the cache, and keeps nothing.
            let record = serde_json::from_slice::<CacheRecord>(&bytes).ok();
            let refs: BTreeSet<ContentRef> = record
                .and_then(|r| r.layer)
                .map(|l| layer_content(std::slice::from_ref(&l)).collect())
                .unwrap_or_default();
            records.push(GcRecord {
                kind: RecordKind::BuildCache,
                id: key.to_string(),
                names: Vec::new(),
                last_used,
                root: false,
                anchors: refs.clone(),
                refs,
            });
        }
        Ok(records)
    }

    fn remove(&self, store: &Store, record: &GcRecord) -> Result<()> {
        let path = store
            .root()
            .join("cache")
            .join("records")
            .join(format!("{}.json", record.id));
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(StoreError::io("remove", &path, e))
            }
            _ => {}
        }
        // What went into the key goes with it: a 20,000-file COPY's inputs
        // are a megabyte or more.
        let Ok(key) = Digest::from_hex(&record.id) else {
            return Ok(());
        };
        store.cache_index()?.forget_inputs(&key)
    }
}

/// Layer conversions remembered by `convert`: a record per converted layer.
pub struct ConversionRecords;

impl ConversionRecords {
    fn dir(store: &Store) -> PathBuf {
        store.root().join("conversions")
    }
}

impl RecordSource for ConversionRecords {
    fn records(&self, store: &Store) -> Result<Vec<GcRecord>> {
        let mut records = Vec::new();
        for codec_dir in list_dir(&Self::dir(store))? {
            for path in list_dir(&codec_dir)? {
                let Ok(bytes) = fs::read(&path) else { continue };
                let last_used = mtime(&path)?.unwrap_or(UNIX_EPOCH);
                // An unreadable record keeps nothing and is pruned like any.
                let converted = serde_json::from_slice::<Layer>(&bytes).ok();
                let refs: BTreeSet<ContentRef> = converted
                    .iter()
                    .map(|l| ContentRef::Blob(l.digest.clone()))
                    .collect();
                records.push(GcRecord {
                    kind: RecordKind::BuildCache,
                    id: path
                        .strip_prefix(store.root())
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                    names: Vec::new(),
                    last_used,
                    root: false,
                    anchors: refs.clone(),
                    refs,
                });
            }
        }
        Ok(records)
    }

    fn remove(&self, store: &Store, record: &GcRecord) -> Result<()> {
        let path = store.root().join(&record.id);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(StoreError::io("remove", &path, e))
            }
            _ => Ok(()),
        }
    }
}

/// Failed RUN steps kept for `rbuild debug`, one directory each.
pub struct FailureRecords;

impl RecordSource for FailureRecords {
    fn records(&self, store: &Store) -> Result<Vec<GcRecord>> {
        let mut records = Vec::new();
        for (dir, record) in store.kept_failure_entries()? {
            let Some(id) = dir.file_name().and_then(|n| n.to_str()) else { continue };
            // One that cannot be read (a half-removed directory) keeps nothing and goes at
            // the next prune.
            let (refs, last_used): (BTreeSet<ContentRef>, SystemTime) = match &record {
                Some(r) => (layer_content(&r.layers).collect(), UNIX_EPOCH + std::time::Duration::from_secs(r.created.max(0) as u64)),
                None => (BTreeSet::new(), UNIX_EPOCH),
            };
            records.push(GcRecord {
                kind: RecordKind::KeptFailure,
                id: id.to_string(),
                names: Vec::new(),
                last_used,
                root: false,
                // A debug session holds the snapshots it runs on.
                anchors: refs.iter().filter(|r| matches!(r, ContentRef::Snapshot(_))).cloned().collect(),
                refs,
            });
        }
        Ok(records)
    }

    fn remove(&self, store: &Store, record: &GcRecord) -> Result<()> {
        store.remove_kept_failure(&record.id)
    }
}

/// The modification time of `path`; `None` if it is gone.
fn mtime(path: &Path) -> Result<Option<SystemTime>> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.modified().at("stat", path)?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("stat", path, e)),
    }
}
