//! File-system helpers every part of the store uses: listing a directory,
//! replacing a file atomically, locking a lock file, and making what was
//! written durable. They take paths, not the `Store`, so the modules that use
//! them need nothing above them.

pub(crate) mod confined;
pub mod writeback;
pub(crate) mod xattr;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
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

/// Replaces `path` with `bytes`: a temp file in `tmp` (the store's temp area,
/// on the same filesystem), fsynced,
/// renamed over `path`, and the rename made durable.
///
/// A file that already holds `bytes` (a rebuild records the same image and
/// tags again) only gets its mtime moved, which records keep as their last
/// use: its data was synced before it was renamed into place, so only the
/// rename is made durable, in case its writer died before doing that.
pub(crate) fn write_atomically(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomically_with(tmp, path, bytes, Durability::Synced)
}

/// When a file written by [`write_atomically_with`] reaches the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Before the call returns: the data and the rename are fsynced.
    Synced,
    /// At the writer's next `syncfs` of the store (see
    /// `CacheIndex::sync`): for files that may be lost in a power cut and are
    /// then detected as damaged and ignored, written by the thousand in one
    /// build, where an fsync each would be most of the build's time.
    Deferred,
}

/// [`write_atomically`] with a choice of when the file is made durable. The
/// rename is atomic either way: readers see the old file or the new one.
pub(crate) fn write_atomically_with(tmp: &Path, path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    let synced = durability == Durability::Synced;
    if let Some(file) = open_if_holding(path, bytes) {
        file.set_modified(std::time::SystemTime::now()).at("set the mtime of", path)?;
        return match synced {
            true => sync_dir(path.parent().unwrap_or(path)),
            false => Ok(()),
        };
    }
    let mut temp = tempfile::Builder::new()
        .prefix("meta-")
        .tempfile_in(tmp)
        .at("create a temp file in", tmp)?;
    temp.write_all(bytes).at("write", temp.path())?;
    // Readable like the rest of the store (temp files start out 0600).
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .at("chmod", temp.path())?;
    if synced {
        temp.as_file().sync_all().at("fsync", temp.path())?;
    }
    temp.persist(path)
        .map_err(|e| StoreError::io("replace", path, e.error))?;
    if synced {
        sync_dir(path.parent().unwrap_or(path))?;
    }
    Ok(())
}

/// The regular file at `path` (not followed if a symlink), open, when it has
/// exactly the content `bytes` (read only when the sizes agree).
fn open_if_holding(path: &Path, bytes: &[u8]) -> Option<File> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() != bytes.len() as u64 {
        return None;
    }
    let mut held = Vec::with_capacity(bytes.len());
    file.read_to_end(&mut held).ok()?;
    (held == bytes).then_some(file)
}

/// A fresh temp directory in `tmp`, removed on drop.
pub(crate) fn temp_dir_in(tmp: &Path) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("dir-")
        .tempdir_in(tmp)
        .at("create a temp directory in", tmp)
}

/// Runs `locked` while holding an exclusive lock on the file `lock_path`
/// (created if missing): how updates of one file by several processes
/// (`tags.json`, a stat cache) are kept from losing each other's changes.
pub(crate) fn with_lock<T>(lock_path: &Path, locked: impl FnOnce() -> Result<T>) -> Result<T> {
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .at("open lock file", lock_path)?;
    let mut lock = fd_lock::RwLock::new(lock_file);
    let _guard = lock.write().at("lock", lock_path)?;
    locked()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rewriting_the_same_bytes_leaves_the_file_in_place() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record");
        super::write_atomically(dir.path(), &path, b"one").unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();
        let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(long_ago).unwrap();
        super::write_atomically(dir.path(), &path, b"one").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.ino(), inode, "an equal file is not replaced");
        assert!(meta.modified().unwrap() > long_ago, "its mtime, the record's last use, moves");
        super::write_atomically(dir.path(), &path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), inode);
        super::write_atomically(dir.path(), &path, b"twO").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"twO", "same size, other bytes: replaced");
    }
}
