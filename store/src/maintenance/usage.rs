//! Disk usage: how big content is, and the store's size by kind (`rbuild du`).
//!
//! Sizes are apparent sizes counted the way Docker's overlay2 driver counts a
//! layer (`directory.Size`): the sizes of everything but directories, a file
//! with several hard links once. So an image's size here and in `docker
//! images` agree.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::compress::decoder;
use crate::content::layer::Layer;
use crate::content::lease::ContentRef;
use crate::error::{IoContext, Result, StoreError};
use crate::fs::list_dir;
use crate::maintenance::records::RecordKind;
use crate::maintenance::view::GcView;
use crate::store::Store;

/// One line of `rbuild du`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    pub kind: UsageKind,
    /// How many there are.
    pub count: usize,
    /// How many a plain `prune` keeps (tagged, or in use by a running build).
    pub active: usize,
    pub size: u64,
    /// What a plain `prune` would free.
    pub reclaimable: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageKind {
    /// Blobs of images: manifests, configs, layers.
    Images,
    /// Blobs only build cache records name.
    BuildCache,
    /// Unpacked layers.
    Snapshots,
    /// Blobs nothing names: left by interrupted builds, exports, removals.
    Unreferenced,
    /// Failed RUN steps kept for `rbuild debug` (`debug/`): their upper directories and
    /// copies of bind mounts; the layers they ran on count as snapshots and images.
    KeptFailures,
    /// Temp areas of running (and dead) processes.
    Temp,
    /// The builder's `RUN --mount=type=cache` directories (`cache-mounts/`), which the
    /// builder counts: the store only keeps the room for them.
    CacheMounts,
}

impl UsageKind {
    pub fn label(self) -> &'static str {
        match self {
            UsageKind::Images => "Images",
            UsageKind::BuildCache => "Build cache",
            UsageKind::Snapshots => "Snapshots",
            UsageKind::Unreferenced => "Unreferenced blobs",
            UsageKind::KeptFailures => "Kept failures",
            UsageKind::Temp => "Temp",
            UsageKind::CacheMounts => "Cache mounts",
        }
    }
}

/// The store's disk usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    pub rows: Vec<UsageRow>,
    /// Everything under the store root, metadata included.
    pub total: u64,
    /// Other rbuild processes using the store now (their content is active).
    pub processes: usize,
}

impl Store {
    /// The store's size by kind. Takes no lock: a report made while a build
    /// or prune runs is a snapshot of a moving store.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let view = GcView::load(self, false)?;
        let kept = view.kept_content(false);
        let mut kinds: std::collections::HashMap<&ContentRef, RecordKind> = Default::default();
        for (_, record) in &view.records {
            for item in &record.refs {
                let kind = kinds.entry(item).or_insert(record.kind);
                // An image's blob counts as the image's, whoever else names it.
                *kind = (*kind).max(record.kind);
            }
        }
        let row = |kind| UsageRow {
            kind,
            count: 0,
            active: 0,
            size: 0,
            reclaimable: 0,
        };
        let (mut images, mut cache, mut snapshots, mut unreferenced, mut failures) = (
            row(UsageKind::Images),
            row(UsageKind::BuildCache),
            row(UsageKind::Snapshots),
            row(UsageKind::Unreferenced),
            row(UsageKind::KeptFailures),
        );
        for (_, record) in &view.records {
            let target = match record.kind {
                RecordKind::Image => &mut images,
                RecordKind::BuildCache => &mut cache,
                RecordKind::KeptFailure => &mut failures,
            };
            target.count += 1;
            target.active += usize::from(view.keeps(record, false));
            if record.kind == RecordKind::KeptFailure {
                // The record's own directory, which goes with it.
                let size = tree_size(&self.kept_failure_dir(&record.id))?;
                failures.size += size;
                failures.reclaimable += if view.keeps(record, false) { 0 } else { size };
            }
        }
        // Snapshots share files (a COPY that misses links the files its last
        // run wrote unchanged), so each inode counts once, for the first
        // snapshot that has it. Kept snapshots go first: pruning another
        // snapshot frees nothing a kept one still links.
        let mut content = view.all_content()?;
        content.sort_by_key(|item| !kept.contains(item));
        let mut snapshot_inodes = HashSet::new();
        for item in content {
            let size = match &item {
                ContentRef::Snapshot(d) => unseen_size(&self.snapshot_path(d), &mut snapshot_inodes)?,
                ContentRef::Blob(_) => content_size(&view.store, &item)?,
            };
            let reclaimable = if kept.contains(&item) { 0 } else { size };
            let target = match (&item, kinds.get(&item)) {
                (ContentRef::Snapshot(_), _) => {
                    snapshots.count += 1;
                    snapshots.active += usize::from(kept.contains(&item));
                    &mut snapshots
                }
                (ContentRef::Blob(_), Some(RecordKind::Image)) => &mut images,
                (ContentRef::Blob(_), Some(RecordKind::BuildCache)) => &mut cache,
                (ContentRef::Blob(_), Some(RecordKind::KeptFailure)) => &mut failures,
                (ContentRef::Blob(_), None) => {
                    unreferenced.count += 1;
                    unreferenced.active += usize::from(kept.contains(&item));
                    &mut unreferenced
                }
            };
            target.size += size;
            target.reclaimable += reclaimable;
        }
        let temp = temp_usage(self)?;
        Ok(DiskUsage {
            rows: vec![images, cache, snapshots, unreferenced, failures, temp],
            total: store_size(self.root())?,
            processes: view.lease_holders,
        })
    }

    /// The size of a layer's files: of its snapshot when it is unpacked, else
    /// counted from the layer's tar (the same sum, without unpacking).
    pub fn layer_size(&self, layer: &Layer) -> Result<u64> {
        if self.has_snapshot(&layer.diff_id) {
            return tree_size(&self.snapshot_path(&layer.diff_id));
        }
        let path = self.blob_path(&layer.digest);
        let compression = layer.compression().ok_or_else(|| StoreError::Layer {
            path: path.clone(),
            reason: format!("unknown layer media type {:?}", layer.media_type),
        })?;
        let (file, _) = self.open_blob(&layer.digest)?;
        let io_err = |e: io::Error| StoreError::io("read layer", &path, e);
        tar_content_size(decoder(compression, file).map_err(io_err)?).map_err(io_err)
    }
}

/// The sum a snapshot of this tar would have: regular files' sizes and
/// symlink targets' lengths; hard links (size 0 in a tar) count once anyway.
fn tar_content_size(reader: impl Read) -> io::Result<u64> {
    let mut archive = tar::Archive::new(reader);
    let mut total = 0;
    for entry in archive.entries()? {
        let entry = entry?;
        let header = entry.header();
        total += match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => entry.size(),
            tar::EntryType::Symlink => entry.link_name_bytes().map_or(0, |l| l.len() as u64),
            _ => 0,
        };
    }
    Ok(total)
}

/// The temp areas: live processes' are active, dead ones' reclaimable.
fn temp_usage(store: &Store) -> Result<UsageRow> {
    let mut row = UsageRow {
        kind: UsageKind::Temp,
        count: 0,
        active: 0,
        size: 0,
        reclaimable: 0,
    };
    for area in list_dir(&store.root().join("tmp"))? {
        let size = tree_size(&area)?;
        let live = area
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .is_none_or(|pid| Path::new("/proc").join(pid.to_string()).exists());
        row.count += 1;
        row.size += size;
        if live {
            row.active += 1;
        } else {
            row.reclaimable += size;
        }
    }
    Ok(row)
}

/// The size of one blob or snapshot; 0 when it is not there.
pub(crate) fn content_size(store: &Store, item: &ContentRef) -> Result<u64> {
    match item {
        ContentRef::Blob(d) => {
            let path = store.blob_path(d);
            match fs::symlink_metadata(&path) {
                Ok(meta) => Ok(meta.len()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
                Err(e) => Err(StoreError::io("stat", &path, e)),
            }
        }
        ContentRef::Snapshot(d) => tree_size(&store.snapshot_path(d)),
    }
}

/// What removing one blob or snapshot frees: a snapshot's files that no
/// other snapshot links (their every link is inside it), each inode once.
pub(crate) fn freed_size(store: &Store, item: &ContentRef) -> Result<u64> {
    let ContentRef::Snapshot(d) = item else {
        return content_size(store, item);
    };
    let mut links: std::collections::HashMap<(u64, u64), (u64, u64, u64)> = Default::default();
    walk_files(&store.snapshot_path(d), &mut |meta| {
        let seen = links.entry((meta.dev(), meta.ino())).or_insert((0, meta.nlink(), meta.len()));
        seen.0 += 1;
    })?;
    Ok(links.values().filter(|(seen, nlink, _)| seen >= nlink).map(|(_, _, size)| size).sum())
}

/// Everything under the store root.
pub(crate) fn store_size(root: &Path) -> Result<u64> {
    tree_size(root)
}

/// Docker's `directory.Size`: sizes of non-directories, each inode once. A
/// tree that vanishes while it is walked (a concurrent removal) counts what
/// was seen.
pub fn tree_size(root: &Path) -> Result<u64> {
    unseen_size(root, &mut HashSet::new())
}

/// [`tree_size`], counting only inodes not in `seen` (and adding those it counts).
fn unseen_size(root: &Path, seen: &mut HashSet<(u64, u64)>) -> Result<u64> {
    let mut total = 0;
    walk_files(root, &mut |meta| {
        if meta.len() > 0 && seen.insert((meta.dev(), meta.ino())) {
            total += meta.len();
        }
    })?;
    Ok(total)
}

/// Calls `each` with the metadata of every non-directory below `root`. A
/// tree that vanishes while it is walked (a concurrent removal) gives what
/// was seen.
fn walk_files(root: &Path, each: &mut dyn FnMut(&fs::Metadata)) -> Result<()> {
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
            Err(e) => return Err(StoreError::io("list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.at("list", &dir)?;
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("stat", entry.path(), e)),
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                each(&meta);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
