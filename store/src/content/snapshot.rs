//! Snapshots: the unpacked diff of one layer, a directory under
//! `snapshots/<diff_id hex>/`.
//!
//! A snapshot is prepared in a directory under the store's `tmp/` and then
//! committed with one rename, so a snapshot directory is either absent or
//! complete. Two builds that produce the same diff at the same time both
//! succeed: the first rename wins and the loser's copy is removed.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{RenameFlags, CWD};
use rustix::io::Errno;

use crate::content::lease::{ContentRef, LeaseHandle};
use crate::digest::Digest;
use crate::error::{IoContext, Result, StoreError};
use crate::fs::{sync_dir, sync_filesystem_of, temp_dir_in};

/// The snapshots of one store: where they live, where they are prepared and
/// removed, and the lease that records each one handed out.
#[derive(Clone, Debug)]
pub(crate) struct Snapshots {
    dir: PathBuf,
    tmp: PathBuf,
    lease: LeaseHandle,
}

impl Snapshots {
    /// The snapshots under `dir`, prepared and removed through `tmp` (on the
    /// same filesystem), their uses recorded in `lease`.
    pub(crate) fn new(dir: PathBuf, tmp: PathBuf, lease: LeaseHandle) -> Snapshots {
        Snapshots { dir, tmp, lease }
    }

    pub(crate) fn snapshots_dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh directory to prepare a snapshot in, on the store's filesystem.
    pub(crate) fn tempdir(&self) -> Result<tempfile::TempDir> {
        temp_dir_in(&self.tmp)
    }

    /// Where the snapshot of the layer with this diff_id lives.
    pub(crate) fn snapshot_path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    pub(crate) fn has_snapshot(&self, diff_id: &Digest) -> bool {
        // Registered before the check, as `has_blob` does (and for the same
        // reason a failed registration is not an error here).
        let _ = self.lease.record(&ContentRef::Snapshot(diff_id.clone()));
        self.snapshot_path(diff_id).is_dir()
    }

    /// Moves the prepared directory `dir` (which must be on the store's
    /// filesystem: make it with [`Store::tempdir`]) into place as the snapshot
    /// of `diff_id`. If that snapshot already exists, the existing one is kept
    /// and `dir` is removed. Returns the snapshot's path.
    ///
    /// The directory's files reach the disk before the rename makes it the
    /// snapshot: a snapshot that exists is whole even after a power cut, not
    /// only after a killed process. One `syncfs` does it (a snapshot may hold
    /// 20,000 files; an fsync each would cost far more than one flush of the
    /// filesystem).
    pub(crate) fn commit_snapshot(&self, dir: &Path, diff_id: &Digest) -> Result<PathBuf> {
        self.lease.record(&ContentRef::Snapshot(diff_id.clone()))?;
        let dest = self.snapshot_path(diff_id);
        if !dest.exists() {
            sync_filesystem_of(dir)?;
        }
        match rustix::fs::renameat_with(CWD, dir, CWD, &dest, RenameFlags::NOREPLACE) {
            Ok(()) => {}
            Err(Errno::EXIST) | Err(Errno::NOTEMPTY) => {
                remove_tree(dir).at("remove duplicate snapshot", dir)?;
                return Ok(dest);
            }
            // The filesystem cannot refuse to replace: check, then rename. A
            // racing commit can at worst replace an equal snapshot.
            Err(Errno::INVAL) | Err(Errno::NOSYS) => {
                if dest.exists() {
                    remove_tree(dir).at("remove duplicate snapshot", dir)?;
                    return Ok(dest);
                }
                fs::rename(dir, &dest).at("move snapshot into place at", &dest)?;
            }
            Err(Errno::XDEV) => {
                return Err(StoreError::Snapshot {
                    diff_id: diff_id.clone(),
                    reason: format!(
                        "{} is on another filesystem than the store; prepare snapshots in Store::tempdir()",
                        dir.display()
                    ),
                })
            }
            Err(e) => return Err(StoreError::io("move snapshot into place at", &dest, e.into())),
        }
        sync_dir(&self.dir)?;
        Ok(dest)
    }

    /// Removes the snapshot of `diff_id`, if there is one. The directory is
    /// first renamed away, so no reader sees it half-deleted.
    pub(crate) fn remove_snapshot(&self, diff_id: &Digest) -> Result<()> {
        let path = self.snapshot_path(diff_id);
        let doomed = self.tempdir()?;
        let target = doomed.path().join("snapshot");
        match fs::rename(&path, &target) {
            Ok(()) => remove_tree(&target).at("remove snapshot", &target),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove snapshot", &path, e)),
        }
    }
}

/// Removes a directory tree, first making read-only directories writable: a
/// layer may contain directories with mode 0555, which a non-root owner cannot
/// empty otherwise.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_dirs_writable(path)?;
            fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

fn make_dirs_writable(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700))?;
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_dirs_writable(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::temp_store;

    #[test]
    fn commit_moves_the_directory_into_place() {
        let (_dir, store) = temp_store();
        let diff_id = Digest::of_bytes(b"layer");
        let prepared = store.tempdir().unwrap().keep();
        fs::write(prepared.join("hello"), b"hi").unwrap();
        assert!(!store.has_snapshot(&diff_id));
        let path = store.commit_snapshot(&prepared, &diff_id).unwrap();
        assert_eq!(path, store.snapshot_path(&diff_id));
        assert!(store.has_snapshot(&diff_id));
        assert!(!prepared.exists());
        assert_eq!(fs::read(path.join("hello")).unwrap(), b"hi");
    }

    #[test]
    fn a_second_commit_keeps_the_first_snapshot() {
        let (_dir, store) = temp_store();
        let diff_id = Digest::of_bytes(b"layer");
        let first = store.tempdir().unwrap().keep();
        fs::write(first.join("which"), b"first").unwrap();
        store.commit_snapshot(&first, &diff_id).unwrap();

        let second = store.tempdir().unwrap().keep();
        fs::write(second.join("which"), b"second").unwrap();
        // A read-only directory must not stop the loser's removal.
        fs::create_dir(second.join("ro")).unwrap();
        fs::set_permissions(second.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
        let path = store.commit_snapshot(&second, &diff_id).unwrap();
        assert_eq!(fs::read(path.join("which")).unwrap(), b"first");
        assert!(!second.exists());
    }

    #[test]
    fn remove_snapshot_deletes_it() {
        let (_dir, store) = temp_store();
        let diff_id = Digest::of_bytes(b"layer");
        let prepared = store.tempdir().unwrap().keep();
        fs::create_dir(prepared.join("sub")).unwrap();
        store.commit_snapshot(&prepared, &diff_id).unwrap();
        store.remove_snapshot(&diff_id).unwrap();
        assert!(!store.has_snapshot(&diff_id));
        // Removing what is not there is fine.
        store.remove_snapshot(&diff_id).unwrap();
    }
}
