//! The step cache's index: what a build step produced, by the step's cache key,
//! and what went into the recent keys of each step, for explaining misses.
//!
//! On disk, under `cache/` in the store root:
//!
//! ```text
//! records/<key hex>.json                 one record per cache key; the file's
//!                                        mtime is when the record was last used
//! inputs/<identity hex>/<key hex>.json   what went into a recent key of one step
//!                                        (opaque bytes to the store), newest kept
//! ```
//!
//! Every file is written whole in `tmp/` and renamed into place, so readers take
//! no lock and never see half a record, and a killed writer leaves at worst a
//! temp file. Files are not fsynced one by one: a build writes a record per
//! step (100,000 for a generated Dockerfile), and [`CacheIndex::sync`] makes
//! them all durable with one `syncfs` when the build ends. A power cut before
//! that may leave an empty or partial record, which reads as a miss.
//!
//! Two processes that put the same key race harmlessly: both records
//! describe a valid result of the same step, and the rename makes one of them
//! win whole. The key names the record, so no lock is needed anywhere.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::content::blobs::Blobs;
use crate::content::layer::Layer;
use crate::digest::Digest;
use crate::error::{IoContext, Result, StoreError};
use crate::fs::{list_dir, sync_filesystem_of, write_atomically_with, Durability};

/// How many distinct recent inputs are kept per step: enough to find a close
/// earlier build when a branch switch alternates between a few states.
const KEPT_INPUTS: usize = 4;

/// What a cached step produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The step's layer; `None` for config-only steps and steps that changed
    /// no file. Its snapshot is `Store::ensure_snapshot(layer)`.
    pub layer: Option<Layer>,
    /// The image history entry the step added.
    pub created_by: Option<String>,
    pub empty_layer: bool,
    /// When the step ran (RFC 3339), kept as the history's `created`.
    pub created: Option<String>,
    /// When the record was last used; read from the record file, never stored in it.
    #[serde(skip)]
    pub last_used: Option<SystemTime>,
}

impl CacheRecord {
    /// The diff id of the step's layer, if it has one.
    pub fn diff_id(&self) -> Option<&Digest> {
        self.layer.as_ref().map(|l| &l.diff_id)
    }
}

/// The step cache index of one store. Cheap to clone; safe to use from any
/// number of threads and processes at once.
#[derive(Clone, Debug)]
pub struct CacheIndex {
    /// Where the records' layers are: a record whose blob is gone is a miss.
    blobs: Blobs,
    /// The store's temp area, where records are staged.
    tmp: PathBuf,
    records: PathBuf,
    inputs: PathBuf,
    /// Whether files were written since the last [`CacheIndex::sync`].
    unsynced: Arc<AtomicBool>,
}

impl CacheIndex {
    /// The index kept under `cache` (the store's `cache/`), its files
    /// staged in `tmp`, its records' layers in `blobs`.
    pub(crate) fn open(cache: &Path, tmp: &Path, blobs: Blobs) -> Result<CacheIndex> {
        let index = CacheIndex {
            blobs,
            tmp: tmp.to_path_buf(),
            records: cache.join("records"),
            inputs: cache.join("inputs"),
            unsynced: Arc::new(AtomicBool::new(false)),
        };
        for dir in [&index.records, &index.inputs] {
            fs::create_dir_all(dir).at("create cache directory", dir)?;
        }
        Ok(index)
    }

    fn record_path(&self, key: &Digest) -> PathBuf {
        self.records.join(format!("{}.json", key.hex()))
    }

    /// The record for `key`, if there is a usable one. A record whose layer
    /// blob is gone (pruned) is a miss, and so is an unreadable record: the
    /// cache is only ever a shortcut, and the step can always run again (its
    /// new record then replaces the damaged one).
    pub fn get(&self, key: &Digest) -> Result<Option<CacheRecord>> {
        let path = self.record_path(key);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("open cache record", &path, e)),
        };
        let last_used = file.metadata().and_then(|m| m.modified()).ok();
        let Ok(mut record) = serde_json::from_reader::<_, CacheRecord>(io::BufReader::new(file))
        else {
            return Ok(None);
        };
        if let Some(layer) = &record.layer {
            if !self.blobs.has_blob(&layer.digest) {
                return Ok(None);
            }
        }
        record.last_used = last_used;
        Ok(Some(record))
    }

    /// Stores `record` under `key`, replacing any record there.
    pub fn put(&self, key: &Digest, record: &CacheRecord) -> Result<()> {
        let bytes = serde_json::to_vec(record).expect("cache records always serialise");
        self.write(&self.record_path(key), &bytes)
    }

    fn write(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        self.unsynced.store(true, Ordering::Release);
        write_atomically_with(&self.tmp, path, bytes, Durability::Deferred)
    }

    /// Makes every record and input written through this index (and its
    /// clones) durable: one `syncfs` of the store's filesystem, when anything
    /// was written since the last call.
    pub fn sync(&self) -> Result<()> {
        if !self.unsynced.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        sync_filesystem_of(&self.records)
    }

    /// Marks the record for `key` as used now (for least-recently-used pruning).
    /// A record removed meanwhile is not an error.
    pub fn touch(&self, key: &Digest) -> Result<()> {
        let path = self.record_path(key);
        match File::open(&path) {
            // futimens works on a read-only descriptor of one's own file.
            Ok(file) => file
                .set_modified(SystemTime::now())
                .at("update the time of", &path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("open cache record", &path, e)),
        }
    }

    /// Keeps `inputs` (whatever the builder says went into `key`) among the
    /// recent inputs of the step `identity`, dropping all but the newest few.
    pub fn remember_inputs(&self, identity: &Digest, key: &Digest, inputs: &[u8]) -> Result<()> {
        let dir = self.inputs.join(identity.hex());
        let path = dir.join(format!("{}.json", key.hex()));
        fs::create_dir_all(&dir).at("create cache directory", &dir)?;
        if let Err(e) = self.write(&path, inputs) {
            // A prune removes a step's directory once its last inputs go;
            // if that happened between the two calls, make it again.
            if dir.exists() {
                return Err(e);
            }
            fs::create_dir_all(&dir).at("create cache directory", &dir)?;
            self.write(&path, inputs)?;
        }
        let entries = self.inputs_by_age(&dir)?;
        for (_, path) in entries.into_iter().skip(KEPT_INPUTS) {
            // Another process may be removing the same old entry.
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(StoreError::io("remove", &path, e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Drops the inputs recorded for `key`, under whichever step they are
    /// (pruning a record takes them along); a step left with none goes too.
    pub fn forget_inputs(&self, key: &Digest) -> Result<()> {
        for dir in list_dir(&self.inputs)? {
            let path = dir.join(format!("{}.json", key.hex()));
            match fs::remove_file(&path) {
                Ok(()) => {
                    // Fails while other inputs remain, or another process adds one.
                    let _ = fs::remove_dir(&dir);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {}
                Err(e) => return Err(StoreError::io("remove", &path, e)),
            }
        }
        Ok(())
    }

    /// The recent inputs of the step `identity`, newest first, with their keys.
    pub fn recent_inputs(&self, identity: &Digest) -> Result<Vec<(Digest, Vec<u8>)>> {
        let dir = self.inputs.join(identity.hex());
        let mut out = Vec::new();
        for (key, path) in self.inputs_by_age(&dir)? {
            match fs::read(&path) {
                Ok(bytes) => out.push((key, bytes)),
                // Dropped by another process since the listing.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("read", &path, e)),
            }
        }
        Ok(out)
    }

    /// The key of the newest recorded run of the step `identity`, if any.
    pub fn newest_key(&self, identity: &Digest) -> Result<Option<Digest>> {
        let dir = self.inputs.join(identity.hex());
        Ok(self.inputs_by_age(&dir)?.into_iter().next().map(|(key, _)| key))
    }

    /// The input files in `dir`, newest first (name order among equal times,
    /// so the order is the same for every reader).
    fn inputs_by_age(&self, dir: &Path) -> Result<Vec<(Digest, PathBuf)>> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("read directory", dir, e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.at("read directory", dir)?;
            let name = entry.file_name();
            let Some(key) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|hex| Digest::from_hex(hex).ok())
            else {
                continue;
            };
            let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            found.push((modified, key, entry.path()));
        }
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        Ok(found.into_iter().map(|(_, key, path)| (key, path)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::test_util::temp_store;
    use std::time::Duration;

    fn key(n: u8) -> Digest {
        Digest::from_sha256([n; 32])
    }

    fn layer_record(store: &Store, content: &[u8]) -> CacheRecord {
        let digest = store.write_blob(content).unwrap();
        CacheRecord {
            layer: Some(Layer {
                digest: digest.clone(),
                diff_id: Digest::of_bytes(b"diff"),
                size: content.len() as u64,
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            }),
            created_by: Some("RUN make # buildkit".into()),
            empty_layer: false,
            created: Some("2024-01-01T00:00:00Z".into()),
            last_used: None,
        }
    }

    #[test]
    fn records_round_trip_and_a_pruned_layer_is_a_miss() {
        let (_dir, store) = temp_store();
        let index = store.cache_index().unwrap();
        assert_eq!(index.get(&key(1)).unwrap(), None);
        let record = layer_record(&store, b"layer bytes");
        index.put(&key(1), &record).unwrap();
        let got = index.get(&key(1)).unwrap().unwrap();
        assert!(got.last_used.is_some());
        assert_eq!(CacheRecord { last_used: None, ..got }, record);
        assert_eq!(record.diff_id(), Some(&Digest::of_bytes(b"diff")));

        let config_only = CacheRecord {
            layer: None,
            created_by: Some("ENV A=1".into()),
            empty_layer: true,
            created: None,
            last_used: None,
        };
        index.put(&key(2), &config_only).unwrap();
        assert_eq!(index.get(&key(2)).unwrap().unwrap().layer, None);

        fs::remove_file(store.blob_path(&record.layer.as_ref().unwrap().digest)).unwrap();
        assert_eq!(index.get(&key(1)).unwrap(), None, "the layer blob is gone");
    }

    #[test]
    fn a_damaged_record_is_a_miss_and_is_replaced_by_the_next_put() {
        let (_dir, store) = temp_store();
        let index = store.cache_index().unwrap();
        fs::write(index.record_path(&key(3)), b"{\"layer\": nul").unwrap();
        assert_eq!(index.get(&key(3)).unwrap(), None);
        let record = layer_record(&store, b"x");
        index.put(&key(3), &record).unwrap();
        assert!(index.get(&key(3)).unwrap().is_some());
    }

    #[test]
    fn touch_moves_last_used_forward() {
        let (_dir, store) = temp_store();
        let index = store.cache_index().unwrap();
        index.put(&key(4), &layer_record(&store, b"y")).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::open(index.record_path(&key(4)))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let before = index.get(&key(4)).unwrap().unwrap().last_used.unwrap();
        index.touch(&key(4)).unwrap();
        let after = index.get(&key(4)).unwrap().unwrap().last_used.unwrap();
        assert!(after > before + Duration::from_secs(3000), "{before:?} {after:?}");
        index.touch(&key(99)).unwrap();
    }

    #[test]
    fn recent_inputs_keep_the_newest_few_newest_first() {
        let (_dir, store) = temp_store();
        let index = store.cache_index().unwrap();
        let step = key(7);
        let base = SystemTime::now() - Duration::from_secs(1000);
        for n in 0..6u8 {
            index.remember_inputs(&step, &key(n), &[n]).unwrap();
            // Distinct, increasing times whatever the file system's granularity.
            let path = index.inputs.join(step.hex()).join(format!("{}.json", key(n).hex()));
            File::open(path)
                .unwrap()
                .set_modified(base + Duration::from_secs(n as u64 * 10))
                .unwrap();
        }
        // The next write prunes against the times set above.
        index.remember_inputs(&step, &key(6), &[6]).unwrap();
        let recent = index.recent_inputs(&step).unwrap();
        let order: Vec<u8> = recent.iter().map(|(_, bytes)| bytes[0]).collect();
        assert_eq!(order, vec![6, 5, 4, 3]);
        assert_eq!(recent[0].0, key(6));
        assert!(index.recent_inputs(&key(8)).unwrap().is_empty());
    }

    #[test]
    fn concurrent_writers_never_show_a_reader_half_a_record() {
        let (_dir, store) = temp_store();
        let index = store.cache_index().unwrap();
        // Large records make a torn write likely to be seen if it could happen.
        let records: Vec<CacheRecord> = (0..4u8)
            .map(|n| CacheRecord {
                created_by: Some(format!("RUN {}", char::from(b'a' + n)).repeat(20_000)),
                ..layer_record(&store, &[n])
            })
            .collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut seen = 0;
                loop {
                    // One more read after the writers are done, so it sees a record.
                    let last = stop.load(std::sync::atomic::Ordering::Acquire);
                    if let Some(got) = index.get(&key(50)).unwrap() {
                        let got = CacheRecord { last_used: None, ..got };
                        assert!(records.contains(&got), "a reader saw a record no writer wrote");
                        seen += 1;
                    }
                    if last {
                        break seen;
                    }
                }
            });
            let writers: Vec<_> = (0..4)
                .map(|writer| {
                    let (index, records) = (&index, &records);
                    s.spawn(move || {
                        for round in 0..25 {
                            let record = &records[(writer + round) % records.len()];
                            index.put(&key(50), record).unwrap();
                            index.put(&key(60 + writer as u8), record).unwrap();
                            index.touch(&key(50)).unwrap();
                        }
                    })
                })
                .collect();
            for writer in writers {
                writer.join().unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Release);
            assert!(reader.join().unwrap() > 0, "the reader saw records");
        });
        for writer in 0..4u8 {
            assert!(index.get(&key(60 + writer)).unwrap().is_some());
        }
        let leftovers = fs::read_dir(store.tmp_dir()).unwrap().count();
        assert_eq!(leftovers, 0, "no temp file is left behind");
    }
}
