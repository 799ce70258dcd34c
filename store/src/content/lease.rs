//! Leases: what running rbuild processes use, so that garbage collection
//! (`rbuild prune`, `rbuild rmi`) never deletes it under them.
//!
//! Every open `Store` holds a lease: a file `leases/<pid>-<random>` that its
//! process keeps locked (`flock`, exclusive) for as long as the store handle
//! lives, and to which the store appends, once each, every blob and snapshot it
//! hands out or writes (`blob sha256:…`, `snapshot sha256:…`) *before* the
//! caller can use it. A builder therefore registers what it uses without doing
//! anything: looking an image up, unpacking a snapshot, writing a layer all go
//! through accessors that record. Content it reaches some other way (a path
//! kept from an earlier run, a cache record naming a snapshot) it registers
//! with one call, `Store::hold`.
//!
//! The collector reads the leases of live processes and keeps what they name.
//! A lease whose lock it can take belongs to a process that died (`kill -9`
//! runs no destructor) and is removed. Lease files are created locked, in the
//! process's own temp area, and only then renamed into `leases/`, so no
//! collector ever sees an unlocked live lease.
//!
//! A use and a collection must not interleave, or a collector could read the
//! leases, then a builder find a blob and record it, then the collector delete
//! it. `gc.lock` orders them: a lease append holds it shared, a collection
//! holds it exclusive from reading the leases to its last deletion. So what a
//! lease named before a collection began is kept by it, and what is looked up
//! after it ended is looked up in the store as the collection left it.
//!
//! A lease that cannot grow (a full disk) must neither fail a command that
//! only reads nor leave what it uses unprotected: the process then keeps its
//! shared hold on `gc.lock` ("pins" the store), so no collection runs until
//! it ends. Its own collection (`rmi`) lets go of the pin first, since a
//! collection ignores its own process's lease anyway.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

use crate::digest::Digest;
use crate::error::{IoContext, Result, StoreError};

pub(crate) const LEASES_DIR: &str = "leases";
const GC_LOCK: &str = "gc.lock";

/// A piece of content in the store that a lease or a record can name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContentRef {
    /// `blobs/sha256/<hex>`.
    Blob(Digest),
    /// `snapshots/<hex>`, by the layer's diff_id.
    Snapshot(Digest),
}

impl ContentRef {
    fn to_line(&self) -> String {
        match self {
            ContentRef::Blob(d) => format!("blob {d}\n"),
            ContentRef::Snapshot(d) => format!("snapshot {d}\n"),
        }
    }

    fn parse_line(line: &str) -> Option<ContentRef> {
        let (kind, digest) = line.trim_end().split_once(' ')?;
        let digest: Digest = digest.parse().ok()?;
        match kind {
            "blob" => Some(ContentRef::Blob(digest)),
            "snapshot" => Some(ContentRef::Snapshot(digest)),
            _ => None,
        }
    }
}

impl fmt::Display for ContentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentRef::Blob(d) => write!(f, "blob {d}"),
            ContentRef::Snapshot(d) => write!(f, "snapshot {d}"),
        }
    }
}

/// This process's lease on one store.
pub(crate) struct Lease {
    path: PathBuf,
    /// Locked exclusively for the lease's whole life: the sign it is live.
    file: File,
    gc_lock: File,
    gc_lock_path: PathBuf,
    /// The mutex also serialises appends, which matters because `flock`
    /// locks belong to the open file, not the thread: one thread's unlock
    /// would otherwise end another's shared hold.
    state: Mutex<LeaseState>,
}

#[derive(Default)]
struct LeaseState {
    /// What is already in the file.
    recorded: HashSet<ContentRef>,
    /// Whether the shared hold on `gc.lock` is kept because the file could
    /// not grow.
    pinned: bool,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").field("path", &self.path).finish()
    }
}

impl Lease {
    /// Takes a lease on the store at `root`, preparing its file in `tmp` (this
    /// process's own temp area, on the same filesystem).
    pub(crate) fn take(root: &Path, tmp: &Path) -> Result<Lease> {
        let leases = root.join(LEASES_DIR);
        fs::create_dir_all(&leases).at("create store directory", &leases)?;
        let (gc_lock, gc_lock_path) = open_gc_lock(root)?;
        let temp = tempfile::Builder::new()
            .prefix(&format!("{}-", std::process::id()))
            .tempfile_in(tmp)
            .at("create a lease file in", tmp)?;
        // The file is new and nobody else knows it: this never waits.
        lock(temp.as_file(), FlockOperation::LockExclusive).at("lock", temp.path())?;
        let name = temp
            .path()
            .file_name()
            .expect("a temp file has a name")
            .to_owned();
        let path = leases.join(name);
        let file = temp
            .persist(&path)
            .map_err(|e| StoreError::io("move lease into place at", &path, e.error))?;
        Ok(Lease {
            path,
            file,
            gc_lock,
            gc_lock_path,
            state: Mutex::new(LeaseState::default()),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `item` to the lease unless it is there already. Waits while a
    /// collection runs.
    pub(crate) fn record(&self, item: &ContentRef) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.pinned || state.recorded.contains(item) {
            return Ok(());
        }
        lock(&self.gc_lock, FlockOperation::LockShared).at("lock", &self.gc_lock_path)?;
        // One write of a short line: a reader sees whole lines or none (a
        // torn line does not parse and names nothing).
        if (&self.file).write_all(item.to_line().as_bytes()).is_err() {
            // Keep the shared hold: see the module comment.
            state.pinned = true;
            return Ok(());
        }
        lock(&self.gc_lock, FlockOperation::Unlock).at("unlock", &self.gc_lock_path)?;
        state.recorded.insert(item.clone());
        Ok(())
    }

    /// Ends a pin, before this process collects itself.
    fn unpin(&self) -> Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.pinned {
            lock(&self.gc_lock, FlockOperation::Unlock).at("unlock", &self.gc_lock_path)?;
            state.pinned = false;
        }
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Best effort: a lease left behind is found stale and removed later.
        let _ = fs::remove_file(&self.path);
    }
}

/// The lease a handle records its uses in: this process's, shared by all
/// its handles; none for the collector's handles, which record nothing.
#[derive(Clone, Debug, Default)]
pub(crate) struct LeaseHandle(Option<Arc<Lease>>);

impl LeaseHandle {
    pub(crate) fn new(lease: Lease) -> LeaseHandle {
        LeaseHandle(Some(Arc::new(lease)))
    }

    /// Records one use (a handle without a lease records nothing).
    pub(crate) fn record(&self, item: &ContentRef) -> Result<()> {
        match &self.0 {
            Some(lease) => lease.record(item),
            None => Ok(()),
        }
    }

    /// The path of the lease file, if there is one.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.0.as_deref().map(Lease::path)
    }

    /// Ends a pin (see the module comment), before this process collects.
    pub(crate) fn unpin(&self) -> Result<()> {
        match &self.0 {
            Some(lease) => lease.unpin(),
            None => Ok(()),
        }
    }
}

/// The leases of live processes, as a collector or `du` sees them.
#[derive(Debug, Default)]
pub(crate) struct LiveLeases {
    /// Everything some live process has registered.
    pub items: HashSet<ContentRef>,
    /// How many live processes (other than the caller) hold a lease.
    pub holders: usize,
}

/// Reads every live lease except `own`. With `remove_stale`, the leases of
/// dead processes are deleted (only a collector holding the exclusive
/// `gc.lock` should: it is the one that relies on them being gone).
pub(crate) fn live_leases(
    root: &Path,
    own: Option<&Path>,
    remove_stale: bool,
) -> Result<LiveLeases> {
    let dir = root.join(LEASES_DIR);
    let mut live = LiveLeases::default();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(live),
        Err(e) => return Err(StoreError::io("list", &dir, e)),
    };
    for entry in entries {
        let path = entry.at("list", &dir)?.path();
        if Some(path.as_path()) == own {
            continue;
        }
        let file = match File::open(&path) {
            Ok(file) => file,
            // Its owner ended and removed it while we listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io("open lease", &path, e)),
        };
        // The owner holds an exclusive lock: if even a shared one is granted,
        // nobody owns the lease any more.
        match flock(&file, FlockOperation::NonBlockingLockShared) {
            Ok(()) => {
                if remove_stale {
                    match fs::remove_file(&path) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => {
                            return Err(StoreError::io("remove stale lease", &path, e))
                        }
                        _ => {}
                    }
                }
                continue;
            }
            Err(Errno::WOULDBLOCK) => {}
            Err(e) => return Err(StoreError::io("lock", &path, e.into())),
        }
        live.holders += 1;
        for line in BufReader::new(file).lines() {
            let line = line.at("read lease", &path)?;
            if let Some(item) = ContentRef::parse_line(&line) {
                live.items.insert(item);
            }
        }
    }
    Ok(live)
}

/// Removes the leases of dead processes; used when a store is opened, so
/// that killed builds leave nothing behind for long. Safe without `gc.lock`:
/// a live lease is always locked (see the module comment).
pub(crate) fn remove_stale_leases(root: &Path) {
    let Ok(entries) = fs::read_dir(root.join(LEASES_DIR)) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(file) = File::open(entry.path()) else {
            continue;
        };
        if flock(&file, FlockOperation::NonBlockingLockShared).is_ok() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The collector's hold on `gc.lock`; released when dropped.
pub(crate) struct GcGuard {
    _file: File,
}

/// Takes `gc.lock` exclusively, waiting for lease appends in flight (they
/// are short), for processes that pinned the store, and for any other
/// collection.
pub(crate) fn lock_for_collection(root: &Path, own: &LeaseHandle) -> Result<GcGuard> {
    own.unpin()?;
    let (file, path) = open_gc_lock(root)?;
    lock(&file, FlockOperation::LockExclusive).at("lock", &path)?;
    Ok(GcGuard { _file: file })
}

fn open_gc_lock(root: &Path) -> Result<(File, PathBuf)> {
    let path = root.join(GC_LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .at("open lock file", &path)?;
    Ok((file, path))
}

/// `flock`, retried when a signal interrupts the wait.
fn lock(file: &File, operation: FlockOperation) -> io::Result<()> {
    loop {
        match flock(file, operation) {
            Err(Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
