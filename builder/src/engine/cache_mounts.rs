//! The directories of `RUN --mount=type=cache`: kept between builds, found by their id, in the
//! store (`<store>/cache-mounts`) or in a directory of the caller's (`--cache-mount-dir`), which a
//! CI system's own directory cache can carry from one runner to the next.
//!
//! Each id has a directory named by the sha256 of the id (ids are paths such as
//! `/root/.cache/go-build`): `data/` is what the RUN sees, `id` holds the id, `lock` is what the
//! sharing modes lock (`flock`, so they hold between processes and between stores sharing a
//! directory), and `private/N/` are the extra directories of `sharing=private`. A directory is
//! created under a temporary name and renamed into place, so a reader never sees half of one.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rbuild_frontend::graph::CacheSharing;
use rustix::fs::{flock, FlockOperation};
use sha2::{Digest as _, Sha256};

/// Where cache mounts live.
#[derive(Clone, Debug)]
pub struct CacheMounts {
    root: PathBuf,
}

/// A cache mount in use: its directory, and the lock that its sharing mode holds until the
/// lease is dropped.
#[derive(Debug)]
pub struct CacheMountLease {
    pub path: PathBuf,
    _lock: Option<File>,
}

/// One cache mount, as `rbuild cache-mount ls` lists it.
#[derive(Clone, Debug)]
pub struct CacheMountInfo {
    pub id: String,
    /// Bytes of its files (apparent sizes), private copies included.
    pub size: u64,
    pub last_used: Option<SystemTime>,
    pub dir: PathBuf,
}

/// Fills a new cache directory before it is put in place.
pub type Seed<'a> = &'a dyn Fn(&Path) -> io::Result<()>;

/// How a new cache directory starts.
pub struct NewCache<'a> {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Fills the new directory (a `from=` seed); called before it is renamed into place.
    pub seed: Option<Seed<'a>>,
}

impl CacheMounts {
    pub fn new(root: PathBuf) -> CacheMounts {
        CacheMounts { root }
    }

    /// The cache mounts of `--cache-mount-dir` (`dir`), else those of the store at `store_root`.
    pub fn of(dir: Option<&Path>, store_root: &Path) -> CacheMounts {
        CacheMounts::new(dir.map_or_else(|| store_root.join("cache-mounts"), Path::to_path_buf))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir_of(&self, id: &str) -> PathBuf {
        self.root.join(hex::encode(&Sha256::digest(id.as_bytes())[..16]))
    }

    /// The directory of `id` for one RUN, created as `new` says when it is not there, locked
    /// as `sharing` asks: `Shared` takes no lock, `Locked` waits for the lock, `Private` takes
    /// the main directory when it is free and a private one of its own otherwise.
    pub fn open(&self, id: &str, sharing: CacheSharing, new: &NewCache<'_>) -> io::Result<CacheMountLease> {
        let dir = self.dir_of(id);
        self.create(&dir, id, new)?;
        let lease = match sharing {
            // Shared users take the lock shared: they run together, and a `locked` user,
            // an export or a prune waits for them (or passes a cache in use by).
            CacheSharing::Shared => {
                let lock = lock_file(&dir.join("lock"))?;
                flock(&lock, FlockOperation::LockShared)?;
                CacheMountLease { path: dir.join("data"), _lock: Some(lock) }
            }
            CacheSharing::Locked => {
                let lock = lock_file(&dir.join("lock"))?;
                flock(&lock, FlockOperation::LockExclusive)?;
                CacheMountLease { path: dir.join("data"), _lock: Some(lock) }
            }
            CacheSharing::Private => self.private(&dir, id, new)?,
        };
        // The last use, for `rbuild cache-mount ls` and pruning least recently used first.
        File::create(dir.join("used"))?;
        Ok(lease)
    }

    /// The main directory if no one holds it, else the first private directory no one holds.
    fn private(&self, dir: &Path, id: &str, new: &NewCache<'_>) -> io::Result<CacheMountLease> {
        let mut candidate = dir.to_path_buf();
        for n in 1.. {
            let lock = lock_file(&candidate.join("lock"))?;
            if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_ok() {
                return Ok(CacheMountLease { path: candidate.join("data"), _lock: Some(lock) });
            }
            candidate = dir.join("private").join(n.to_string());
            fs::create_dir_all(candidate.parent().expect("a private directory has a parent"))?;
            self.create(&candidate, id, new)?;
        }
        unreachable!("the loop returns")
    }

    /// Creates `dir` with an empty (or seeded) `data/` unless it is there.
    fn create(&self, dir: &Path, id: &str, new: &NewCache<'_>) -> io::Result<()> {
        if dir.join("data").is_dir() {
            return Ok(());
        }
        let parent = dir.parent().expect("a cache directory has a parent");
        fs::create_dir_all(parent)?;
        let staging = tempfile::Builder::new().prefix(".new-").tempdir_in(parent)?;
        let data = staging.path().join("data");
        fs::DirBuilder::new().mode(new.mode).create(&data)?;
        // The umask does not apply to an explicit mode.
        fs::set_permissions(&data, fs::Permissions::from_mode(new.mode))?;
        if let Some(seed) = new.seed {
            seed(&data)?;
        }
        rustix::fs::chown(&data, Some(rustix::fs::Uid::from_raw(new.uid)), Some(rustix::fs::Gid::from_raw(new.gid)))?;
        fs::write(staging.path().join("id"), id)?;
        let staging = staging.keep();
        match fs::rename(&staging, dir) {
            Ok(()) => Ok(()),
            // Another build created it first: use theirs.
            Err(_) if dir.join("data").is_dir() => fs::remove_dir_all(&staging),
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                Err(e)
            }
        }
    }

    /// Every cache mount, most recently used first.
    pub fn list(&self) -> io::Result<Vec<CacheMountInfo>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut mounts = Vec::new();
        for entry in entries {
            let dir = entry?.path();
            let Ok(id) = fs::read_to_string(dir.join("id")) else { continue };
            let last_used = fs::metadata(dir.join("used")).and_then(|m| m.modified()).ok();
            // What the RUNs see: the main directory and the private ones, not the lock.
            let mut size = tree_size(&dir.join("data"))?;
            if let Ok(privates) = fs::read_dir(dir.join("private")) {
                for private in privates {
                    size += tree_size(&private?.path().join("data"))?;
                }
            }
            mounts.push(CacheMountInfo { id, size, last_used, dir });
        }
        mounts.sort_by(|a, b| b.last_used.cmp(&a.last_used).then_with(|| a.id.cmp(&b.id)));
        Ok(mounts)
    }

    /// The directory of `id` if it exists.
    pub fn find(&self, id: &str) -> Option<PathBuf> {
        let dir = self.dir_of(id);
        dir.join("data").is_dir().then_some(dir)
    }

    /// Removes the cache mount `id`; `false` when there is none. One in use by a build
    /// (`locked` or `private`) is waited for.
    pub fn remove(&self, id: &str) -> io::Result<bool> {
        let Some(dir) = self.find(id) else { return Ok(false) };
        let lock = lock_file(&dir.join("lock"))?;
        flock(&lock, FlockOperation::LockExclusive)?;
        self.delete(&dir)?;
        Ok(true)
    }

    /// Removes cache mounts no build is using, least recently used first, until `enough`
    /// says so (given the bytes freed so far; never, to remove them all). Returns the
    /// removed ones.
    pub fn prune(&self, enough: &dyn Fn(u64) -> bool) -> io::Result<Vec<CacheMountInfo>> {
        let mut mounts = self.list()?;
        mounts.reverse();
        let mut removed = Vec::new();
        let mut freed = 0;
        for mount in mounts {
            if enough(freed) {
                break;
            }
            let lock = lock_file(&mount.dir.join("lock"))?;
            if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
                continue;
            }
            self.delete(&mount.dir)?;
            freed += mount.size;
            removed.push(mount);
        }
        Ok(removed)
    }

    /// Deletes a cache mount's directory, renamed away first so no build finds half of it.
    fn delete(&self, dir: &Path) -> io::Result<()> {
        let doomed = self.root.join(format!(".removing-{}", std::process::id()));
        fs::rename(dir, &doomed)?;
        fs::remove_dir_all(&doomed)
    }

    /// Puts `data` (a directory filled by an import) in place as the cache mount `id`,
    /// replacing what was there.
    pub fn install(&self, id: &str, data: &Path) -> io::Result<()> {
        self.remove(id)?;
        let dir = self.dir_of(id);
        let parent = dir.parent().expect("a cache directory has a parent");
        fs::create_dir_all(parent)?;
        let staging = tempfile::Builder::new().prefix(".new-").tempdir_in(parent)?;
        fs::rename(data, staging.path().join("data"))?;
        fs::write(staging.path().join("id"), id)?;
        File::create(staging.path().join("used"))?;
        let staging = staging.keep();
        fs::rename(&staging, &dir).inspect_err(|_| {
            let _ = fs::remove_dir_all(&staging);
        })
    }
}

impl CacheMounts {
    /// Writes the cache mounts `ids` (all of them when empty) as a tar: for each, `N/id`
    /// and its files under `N/data/`, owners, modes and times kept.
    pub fn export(&self, ids: &[String], out: impl io::Write) -> io::Result<()> {
        let all = self.list()?;
        let chosen: Vec<&CacheMountInfo> = match ids.is_empty() {
            true => all.iter().collect(),
            false => ids
                .iter()
                .map(|id| {
                    all.iter().find(|m| &m.id == id).ok_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, format!("no cache mount {id:?} in {}", self.root.display()))
                    })
                })
                .collect::<io::Result<_>>()?,
        };
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        tar.mode(tar::HeaderMode::Complete);
        for (n, mount) in chosen.iter().enumerate() {
            let lock = lock_file(&mount.dir.join("lock"))?;
            // A `locked` or `private` user may be writing: wait for it.
            flock(&lock, FlockOperation::LockExclusive)?;
            let mut header = tar::Header::new_gnu();
            header.set_size(mount.id.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            tar.append_data(&mut header, format!("{n}/id"), mount.id.as_bytes())?;
            tar.append_dir_all(format!("{n}/data"), mount.dir.join("data"))?;
        }
        tar.into_inner()?.flush()
    }

    /// Reads a tar [`CacheMounts::export`] wrote and puts its cache mounts in place,
    /// replacing those of the same ids; `scratch` is an empty directory on the same
    /// filesystem as the cache mounts. Returns the ids. Entries that would land outside
    /// `scratch` (`..`, absolute paths, through symlinks) are refused.
    pub fn import(&self, input: impl io::Read, scratch: &Path) -> io::Result<Vec<String>> {
        let mut archive = tar::Archive::new(input);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_mtime(true);
        archive.set_unpack_xattrs(false);
        for entry in archive.entries()? {
            let mut entry = entry?;
            if !entry.unpack_in(scratch)? {
                let path = entry.path()?.display().to_string();
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("refusing the archive entry {path:?}: it leads outside the cache")));
            }
        }
        let mut ids = Vec::new();
        for entry in fs::read_dir(scratch)? {
            let dir = entry?.path();
            let id = fs::read_to_string(dir.join("id"))
                .map_err(|e| io::Error::new(e.kind(), format!("{} has no id: not a cache-mount archive", dir.display())))?;
            if !dir.join("data").is_dir() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("cache mount {id:?} has no data/ in the archive")));
            }
            fs::create_dir_all(&self.root)?;
            self.install(&id, &dir.join("data"))?;
            ids.push(id);
        }
        Ok(ids)
    }
}

fn lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).truncate(false).write(true).open(path)
}

/// The apparent size of the files under `dir`, not following symlinks.
fn tree_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                total += entry.metadata()?.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> NewCache<'static> {
        NewCache { mode: 0o755, uid: rustix::process::getuid().as_raw(), gid: rustix::process::getgid().as_raw(), seed: None }
    }

    #[test]
    fn a_cache_keeps_its_files_and_is_listed_by_id() {
        let root = tempfile::tempdir().unwrap();
        let mounts = CacheMounts::new(root.path().join("cache-mounts"));
        let lease = mounts.open("/root/.cache", CacheSharing::Shared, &plain()).unwrap();
        fs::write(lease.path.join("f"), "12345").unwrap();
        drop(lease);
        let again = mounts.open("/root/.cache", CacheSharing::Locked, &plain()).unwrap();
        assert_eq!(fs::read_to_string(again.path.join("f")).unwrap(), "12345");
        let listed = mounts.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].id.as_str(), listed[0].size), ("/root/.cache", 5));
        drop(again);
        assert!(mounts.remove("/root/.cache").unwrap());
        assert!(mounts.list().unwrap().is_empty());
        assert!(!mounts.remove("/root/.cache").unwrap());
    }

    #[test]
    fn an_export_imported_elsewhere_gives_the_same_files() {
        let root = tempfile::tempdir().unwrap();
        let mounts = CacheMounts::new(root.path().join("a"));
        let lease = mounts.open("go", CacheSharing::Shared, &plain()).unwrap();
        fs::create_dir(lease.path.join("sub")).unwrap();
        fs::write(lease.path.join("sub/f"), "data").unwrap();
        drop(lease);
        let mut tar = Vec::new();
        mounts.export(&[], &mut tar).unwrap();
        assert!(mounts.export(&["nope".into()], Vec::new()).is_err());

        let other = CacheMounts::new(root.path().join("b"));
        let scratch = tempfile::tempdir_in(root.path()).unwrap();
        assert_eq!(other.import(&tar[..], scratch.path()).unwrap(), ["go"]);
        let lease = other.open("go", CacheSharing::Shared, &plain()).unwrap();
        assert_eq!(fs::read_to_string(lease.path.join("sub/f")).unwrap(), "data");
    }

    #[test]
    fn an_archive_leading_outside_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses `..` itself; the raw name is what a hostile archive carries.
        header.as_gnu_mut().unwrap().name[..10].copy_from_slice(b"../escaped");
        header.set_cksum();
        builder.append(&header, &b"x"[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        let scratch = root.path().join("scratch");
        fs::create_dir(&scratch).unwrap();
        let error = CacheMounts::new(root.path().join("m")).import(&tar[..], &scratch).unwrap_err();
        assert!(error.to_string().contains("outside"), "{error}");
        assert!(!root.path().join("escaped").exists());
    }

    #[test]
    fn private_users_of_a_busy_cache_get_their_own_directories() {
        let root = tempfile::tempdir().unwrap();
        let mounts = CacheMounts::new(root.path().to_path_buf());
        let first = mounts.open("x", CacheSharing::Private, &plain()).unwrap();
        let second = mounts.open("x", CacheSharing::Private, &plain()).unwrap();
        let third = mounts.open("x", CacheSharing::Private, &plain()).unwrap();
        assert_ne!(first.path, second.path);
        assert_ne!(second.path, third.path);
        drop(second);
        // The freed private directory is taken again.
        let again = mounts.open("x", CacheSharing::Private, &plain()).unwrap();
        assert!(again.path.ends_with("private/1/data"), "{}", again.path.display());
    }

    #[test]
    fn a_prune_passes_caches_in_use_and_goes_least_recently_used_first() {
        let root = tempfile::tempdir().unwrap();
        let mounts = CacheMounts::new(root.path().to_path_buf());
        for id in ["old", "new", "busy"] {
            let lease = mounts.open(id, CacheSharing::Shared, &plain()).unwrap();
            fs::write(lease.path.join("f"), id).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let busy = mounts.open("busy", CacheSharing::Shared, &plain()).unwrap();
        let first = mounts.prune(&|freed| freed > 0).unwrap();
        assert_eq!(first.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["old"]);
        let rest = mounts.prune(&|_| false).unwrap();
        assert_eq!(rest.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["new"]);
        drop(busy);
        assert_eq!(mounts.list().unwrap().len(), 1);
    }

    #[test]
    fn a_new_cache_is_seeded_with_its_mode() {
        let root = tempfile::tempdir().unwrap();
        let mounts = CacheMounts::new(root.path().to_path_buf());
        let seed = |dir: &Path| fs::write(dir.join("seeded"), "yes");
        let new = NewCache { mode: 0o700, seed: Some(&seed), ..plain() };
        let lease = mounts.open("seeded", CacheSharing::Shared, &new).unwrap();
        assert_eq!(fs::read_to_string(lease.path.join("seeded")).unwrap(), "yes");
        assert_eq!(fs::metadata(&lease.path).unwrap().permissions().mode() & 0o7777, 0o700);
    }
}
