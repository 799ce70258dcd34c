//! The stat cache: what a file's content digest was when its inode, size and
//! times were as they are now, so that an unchanged file is not read again.
//!
//! A file whose device, inode, size, mtime and ctime are all unchanged has not
//! been written (any write or metadata change moves ctime, which no user call
//! can set back). Deciding *when* an entry may be trusted, despite coarse file
//! system clocks, is the caller's job (see the builder's context hashing); the
//! store only keeps the map.
//!
//! One file per scanned tree (a build context, the store's snapshots), under
//! `cache/stat/<hash of the tree's path>.bin`, so a small context does not load
//! the entries of a large one. The format is the tree's path, then a
//! fixed-size binary record per entry: a 20,000-file context loads in about a
//! millisecond. An entry is keyed by a 128-bit fingerprint (the first half of
//! the sha256) of its file identity rather than the identity itself: 52 bytes an
//! entry instead of 96 in memory, which is most of what a no-op rebuild of a
//! 200,000-file context holds (25 MB of map before, 14 MB now); two identities
//! share a fingerprint as often as two blobs share a digest. The path lets `prune` drop the caches of trees that are gone
//! (a CI runner's checkout directories) along with the rest of the garbage.
//! Saving takes a
//! lock on the tree's `.lock` file, merges with what other processes saved
//! meanwhile, and replaces the file by rename; readers take no lock.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::digest::Digest;
use crate::error::{IoContext, Result, StoreError};
use crate::fs::{list_dir, with_lock, write_atomically};

/// Keys are fingerprints of file identities, not input an attacker picks: a
/// fast hash is safe, and a 20,000-entry cache loads in a fraction of SipHash's
/// time.
type EntryMap = foldhash::HashMap<Fingerprint, Slot>;

/// The first 16 bytes of the sha256 of a [`StatKey`]'s fields.
type Fingerprint = [u8; 16];

/// Version 3 keys entries by fingerprint; version 2 held the identities
/// themselves, version 1 no tree path. Older files read as empty caches, and are
/// rebuilt by hashing again.
const MAGIC: &[u8; 8] = b"RBSTATC3";
const RECORD_LEN: usize = 16 + 32 + 4;
/// Records decoded per read of a saved cache.
const RECORDS_PER_READ: usize = 1024;
/// Entries unused for this long are dropped when the file is saved: they are
/// files that were deleted or changed since.
const MAX_AGE_SECS: u32 = 30 * 24 * 3600;
/// Beyond this many entries, the least recently used are dropped.
const MAX_ENTRIES: usize = 1 << 20;
/// How stale a used entry's time may get before a save is worth it for the
/// time alone.
const REFRESH_SECS: u32 = 24 * 3600;

/// What identifies one version of a file's content without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Seconds and nanoseconds.
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    digest: [u8; 32],
    /// Unix seconds (until 2106).
    last_used: u32,
}

/// An in-memory stat cache, loaded from and saved to the store (or kept in
/// memory only, for one-off hashing and benchmarks).
#[derive(Debug)]
pub struct StatCache {
    /// The store's temp area and the file the cache persists to; `None` in
    /// memory only.
    file: Option<(PathBuf, PathBuf)>,
    /// The tree the cache describes.
    scope: PathBuf,
    entries: EntryMap,
    /// Entries inserted, or used with a stale time, since loading.
    dirty: bool,
    now: u32,
}

impl StatCache {
    /// The stat cache of the tree at `scope` (a canonical path), kept in
    /// `dir` (the store's `cache/stat/`) and staged in `tmp`. A missing or
    /// unreadable file is an empty cache.
    pub(crate) fn open(dir: &Path, tmp: &Path, scope: &Path) -> Result<StatCache> {
        fs::create_dir_all(dir).at("create cache directory", dir)?;
        let name = Digest::of_bytes(scope.as_os_str().as_encoded_bytes());
        let path = dir.join(format!("{}.bin", &name.hex()[..32]));
        let entries = read_entries(&path)?;
        Ok(StatCache {
            file: Some((tmp.to_path_buf(), path)),
            scope: scope.to_path_buf(),
            entries,
            dirty: false,
            now: unix_now(),
        })
    }

    /// A cache that is never saved.
    pub fn in_memory() -> StatCache {
        StatCache {
            file: None,
            scope: PathBuf::new(),
            entries: EntryMap::default(),
            dirty: false,
            now: unix_now(),
        }
    }

    /// The content digest recorded for `key`, marking the entry used.
    pub fn get(&mut self, key: &StatKey) -> Option<[u8; 32]> {
        let slot = self.entries.get_mut(&fingerprint(key))?;
        if slot.last_used.saturating_add(REFRESH_SECS) < self.now {
            self.dirty = true;
        }
        slot.last_used = self.now;
        Some(slot.digest)
    }

    pub fn insert(&mut self, key: StatKey, digest: [u8; 32]) {
        self.entries.insert(fingerprint(&key), Slot { digest, last_used: self.now });
        self.dirty = true;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the cache back if anything changed, merged with what other
    /// processes saved since it was loaded.
    pub fn save(&mut self) -> Result<()> {
        let Some((tmp, path)) = &self.file else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        with_lock(&path.with_extension("lock"), || {
            for (key, theirs) in read_entries(path)? {
                let ours = self.entries.entry(key).or_insert(theirs);
                ours.last_used = ours.last_used.max(theirs.last_used);
            }
            let oldest = self.now.saturating_sub(MAX_AGE_SECS);
            self.entries.retain(|_, slot| slot.last_used >= oldest);
            let mut kept: Vec<(&Fingerprint, &Slot)> = self.entries.iter().collect();
            if kept.len() > MAX_ENTRIES {
                kept.sort_by_key(|(_, slot)| std::cmp::Reverse(slot.last_used));
                kept.truncate(MAX_ENTRIES);
            }
            let scope = self.scope.as_os_str().as_encoded_bytes();
            let mut bytes = Vec::with_capacity(24 + scope.len() + kept.len() * RECORD_LEN);
            bytes.extend_from_slice(MAGIC);
            bytes.extend_from_slice(&(scope.len() as u64).to_le_bytes());
            bytes.extend_from_slice(scope);
            bytes.extend_from_slice(&(kept.len() as u64).to_le_bytes());
            for (key, slot) in kept {
                encode(&mut bytes, key, slot);
            }
            write_atomically(tmp, path, &bytes)
        })?;
        self.dirty = false;
        Ok(())
    }
}

fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

fn fingerprint(key: &StatKey) -> Fingerprint {
    use sha2::{Digest as _, Sha256};
    let mut fields = [0u8; 8 * 3 + 12 * 2];
    fields[0..8].copy_from_slice(&key.dev.to_le_bytes());
    fields[8..16].copy_from_slice(&key.ino.to_le_bytes());
    fields[16..24].copy_from_slice(&key.size.to_le_bytes());
    for (at, (sec, nsec)) in [(24, key.mtime), (36, key.ctime)] {
        fields[at..at + 8].copy_from_slice(&sec.to_le_bytes());
        fields[at + 8..at + 12].copy_from_slice(&nsec.to_le_bytes());
    }
    let digest: [u8; 32] = Sha256::digest(fields).into();
    digest[..16].try_into().expect("16 bytes")
}

fn encode(out: &mut Vec<u8>, key: &Fingerprint, slot: &Slot) {
    out.extend_from_slice(key);
    out.extend_from_slice(&slot.digest);
    out.extend_from_slice(&slot.last_used.to_le_bytes());
}

fn decode(record: &[u8]) -> (Fingerprint, Slot) {
    let key = record[..16].try_into().expect("16 bytes");
    let slot = Slot {
        digest: record[16..48].try_into().expect("32 bytes"),
        last_used: u32::from_le_bytes(record[48..52].try_into().expect("4 bytes")),
    };
    (key, slot)
}

/// The longest tree path a cache file may name.
const MAX_SCOPE_LEN: u64 = 64 * 1024;

/// The entries of a saved cache; nothing when the file is missing or is not
/// a whole cache file (a cache can always be rebuilt by hashing again).
/// Records are decoded a chunk at a time: the file of a 20,000-file context
/// is 1.7 MB, which need not be in memory beside the map made from it.
fn read_entries(path: &Path) -> Result<EntryMap> {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(EntryMap::default()),
        Err(e) => return Err(StoreError::io("read stat cache", path, e)),
    };
    let len = file.metadata().at("read stat cache", path)?.len();
    let Some(scope) = read_scope(&mut file) else { return Ok(EntryMap::default()) };
    let mut count = [0u8; 8];
    if file.read_exact(&mut count).is_err() {
        return Ok(EntryMap::default());
    }
    let count = u64::from_le_bytes(count);
    let header = 24 + scope.as_os_str().len() as u64;
    if len.checked_sub(header) != Some(count.saturating_mul(RECORD_LEN as u64)) {
        return Ok(EntryMap::default());
    }
    let mut entries = EntryMap::with_capacity_and_hasher(count as usize, Default::default());
    let mut chunk = vec![0u8; RECORD_LEN * RECORDS_PER_READ];
    let mut left = count as usize;
    while left > 0 {
        let records = left.min(RECORDS_PER_READ);
        let bytes = &mut chunk[..records * RECORD_LEN];
        if file.read_exact(bytes).is_err() {
            return Ok(EntryMap::default());
        }
        entries.extend(bytes.chunks_exact(RECORD_LEN).map(decode));
        left -= records;
    }
    Ok(entries)
}

/// The magic and the tree's path at the start of a cache file.
fn read_scope(file: &mut fs::File) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut header = [0u8; 16];
    file.read_exact(&mut header).ok()?;
    if &header[..8] != MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
    if len > MAX_SCOPE_LEN {
        return None;
    }
    let mut scope = vec![0u8; len as usize];
    file.read_exact(&mut scope).ok()?;
    Some(PathBuf::from(std::ffi::OsString::from_vec(scope)))
}

/// Removes the stat caches whose tree is gone, and the one of `also` (a tree
/// whose files changed under the cache, like the store's snapshots after a
/// prune); returns how many went. Files that are not whole caches go too.
pub(crate) fn remove_stale(dir: &Path, also: Option<&Path>) -> Result<usize> {
    let mut removed = 0;
    for path in list_dir(dir)? {
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let scope = fs::File::open(&path).ok().and_then(|mut f| read_scope(&mut f));
        let stale = match &scope {
            None => true,
            Some(scope) => !scope.is_dir() || Some(scope.as_path()) == also,
        };
        if stale {
            for gone in [path.clone(), path.with_extension("lock")] {
                match fs::remove_file(&gone) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(StoreError::io("remove", &gone, e))
                    }
                    _ => {}
                }
            }
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::temp_store;

    fn key(n: u64) -> StatKey {
        StatKey {
            dev: 1,
            ino: n,
            size: n * 10,
            mtime: (1_700_000_000 + n as i64, 5),
            ctime: (-(n as i64), 999_999_999),
        }
    }

    #[test]
    fn entries_survive_a_save_and_reopen() {
        let (dir, store) = temp_store();
        let scope = dir.path().join("ctx");
        let mut cache = store.stat_cache(&scope).unwrap();
        assert!(cache.is_empty());
        cache.insert(key(1), [1; 32]);
        cache.insert(key(2), [2; 32]);
        cache.save().unwrap();
        let mut again = store.stat_cache(&scope).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again.get(&key(1)), Some([1; 32]));
        assert_eq!(again.get(&key(2)), Some([2; 32]));
        let changed = StatKey { ctime: (key(1).ctime.0, 0), ..key(1) };
        assert_eq!(again.get(&changed), None);
        // Another tree has its own file.
        assert!(store.stat_cache(&dir.path().join("other")).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_file_is_an_empty_cache() {
        let (dir, store) = temp_store();
        let scope = dir.path().join("ctx");
        let mut cache = store.stat_cache(&scope).unwrap();
        cache.insert(key(1), [1; 32]);
        cache.save().unwrap();
        let (_, path) = cache.file.clone().unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes.pop();
        fs::write(&path, &bytes).unwrap();
        assert!(store.stat_cache(&scope).unwrap().is_empty());
        fs::write(&path, b"garbage").unwrap();
        assert!(store.stat_cache(&scope).unwrap().is_empty());
    }

    #[test]
    fn concurrent_savers_merge_instead_of_losing_entries() {
        let (dir, store) = temp_store();
        let scope = dir.path().join("ctx");
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (store, scope) = (&store, &scope);
                s.spawn(move || {
                    for round in 0..5 {
                        let mut cache = store.stat_cache(scope).unwrap();
                        cache.insert(key(t * 100 + round), [t as u8; 32]);
                        cache.save().unwrap();
                    }
                });
            }
        });
        let mut cache = store.stat_cache(&scope).unwrap();
        assert_eq!(cache.len(), 20);
        assert_eq!(cache.get(&key(304)), Some([3; 32]));
    }

    #[test]
    fn old_entries_are_dropped_and_unchanged_caches_are_not_rewritten() {
        let (dir, store) = temp_store();
        let scope = dir.path().join("ctx");
        let mut cache = store.stat_cache(&scope).unwrap();
        cache.insert(key(1), [1; 32]);
        cache.insert(key(2), [2; 32]);
        cache.entries.get_mut(&fingerprint(&key(2))).unwrap().last_used = cache.now - MAX_AGE_SECS - 1;
        cache.save().unwrap();
        let (_, path) = cache.file.clone().unwrap();
        let mut again = store.stat_cache(&scope).unwrap();
        assert_eq!(again.len(), 1);
        fs::remove_file(&path).unwrap();
        assert!(again.get(&key(1)).is_some());
        again.save().unwrap();
        assert!(!path.exists(), "a cache that only had fresh hits is not saved");
        StatCache::in_memory().save().unwrap();
    }

    #[test]
    fn a_cache_larger_than_one_read_loads_whole() {
        let (dir, store) = temp_store();
        let scope = dir.path().join("ctx");
        let mut cache = store.stat_cache(&scope).unwrap();
        let count = RECORDS_PER_READ * 2 + 7;
        for n in 0..count as u64 {
            cache.insert(key(n), [n as u8; 32]);
        }
        cache.save().unwrap();
        let mut again = store.stat_cache(&scope).unwrap();
        assert_eq!(again.len(), count);
        for n in [0, RECORDS_PER_READ as u64, count as u64 - 1] {
            assert_eq!(again.get(&key(n)), Some([n as u8; 32]));
        }
    }
}
