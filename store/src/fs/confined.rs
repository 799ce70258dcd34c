//! A directory tree written only through file descriptors, never through
//! path strings: the kernel, not a string check, keeps every write inside.
//!
//! Paths are resolved from the root's descriptor with openat2 and
//! `RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: `..` cannot
//! climb above the root, and a symlink anywhere on the way (one planted by an
//! earlier tar member, say) makes the resolution fail instead of being
//! followed. The final component of every operation is a single name in a
//! directory opened that way, used with the `*at` calls and `O_NOFOLLOW` /
//! `AT_SYMLINK_NOFOLLOW`, so it is never followed either. Kernels without
//! openat2 (before 5.6) get the same guarantees from a walk of single
//! components, each opened with `O_NOFOLLOW`.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Why a path could not be resolved inside the root.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// A component is a symlink: refused, not followed.
    Symlink(PathBuf),
    /// A component is something other than a directory.
    NotADirectory(PathBuf),
    /// A component is missing (and was not to be created).
    Missing(PathBuf),
    Other(PathBuf, Errno),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::Symlink(p) => write!(f, "{} is a symlink, which is never followed", p.display()),
            ResolveError::NotADirectory(p) => write!(f, "{} is not a directory", p.display()),
            ResolveError::Missing(p) => write!(f, "{} does not exist", p.display()),
            ResolveError::Other(p, e) => write!(f, "cannot open {}: {e}", p.display()),
        }
    }
}

/// The root of a confined tree.
pub(crate) struct ConfinedRoot {
    fd: OwnedFd,
    /// Whether the kernel has openat2 (Linux 5.6+).
    openat2: bool,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC).union(OFlags::NOFOLLOW);
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);

impl ConfinedRoot {
    pub(crate) fn open(dir: &Path) -> std::io::Result<ConfinedRoot> {
        let fd = rustix::fs::open(dir, DIR_FLAGS, Mode::empty())?;
        let openat2 = match rustix::fs::openat2(&fd, ".", DIR_FLAGS, Mode::empty(), RESOLVE) {
            Ok(_) => true,
            Err(Errno::NOSYS) | Err(Errno::PERM) => false,
            Err(e) => return Err(e.into()),
        };
        Ok(ConfinedRoot { fd, openat2 })
    }

    #[cfg(test)]
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the directory `relative` (made of normal components only),
    /// creating missing directories (mode 0755) when `create` is set.
    pub(crate) fn dir(&self, relative: &Path, create: bool) -> Result<OwnedFd, ResolveError> {
        if relative.as_os_str().is_empty() {
            return rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())
                .map_err(|e| ResolveError::Other(PathBuf::from("."), e));
        }
        if self.openat2 {
            match rustix::fs::openat2(&self.fd, relative, DIR_FLAGS, Mode::empty(), RESOLVE) {
                Ok(fd) => return Ok(fd),
                // Find out which component is missing (and create it), or
                // which one is the symlink or file, for the message.
                Err(Errno::NOENT) | Err(Errno::LOOP) | Err(Errno::NOTDIR) | Err(Errno::AGAIN) => {}
                Err(e) => return Err(ResolveError::Other(relative.to_path_buf(), e)),
            }
        }
        self.walk(relative, create)
    }

    /// One component at a time, each opened with `O_NOFOLLOW`.
    fn walk(&self, relative: &Path, create: bool) -> Result<OwnedFd, ResolveError> {
        let mut current = rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())
            .map_err(|e| ResolveError::Other(PathBuf::from("."), e))?;
        let mut walked = PathBuf::new();
        for component in relative.components() {
            let Component::Normal(name) = component else {
                return Err(ResolveError::Other(relative.to_path_buf(), Errno::INVAL));
            };
            walked.push(name);
            current = match self.open_child(&current, name) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(ResolveError::Other(walked, e)),
                    }
                    self.open_child(&current, name).map_err(|e| classify(&current, name, &walked, e))?
                }
                Err(e) => return Err(classify(&current, name, &walked, e)),
            };
        }
        Ok(current)
    }

    fn open_child(&self, parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
        if self.openat2 {
            rustix::fs::openat2(parent, name, DIR_FLAGS, Mode::empty(), RESOLVE)
        } else {
            rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty())
        }
    }

    /// The directory holding `relative` and its final name.
    pub(crate) fn parent_of<'p>(&self, relative: &'p Path, create: bool) -> Result<(OwnedFd, &'p OsStr), ResolveError> {
        let name = relative
            .file_name()
            .ok_or_else(|| ResolveError::Other(relative.to_path_buf(), Errno::INVAL))?;
        let parent = relative.parent().unwrap_or(Path::new(""));
        Ok((self.dir(parent, create)?, name))
    }
}

fn classify(parent: &OwnedFd, name: &OsStr, walked: &Path, errno: Errno) -> ResolveError {
    let walked = walked.to_path_buf();
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::Symlink => ResolveError::Symlink(walked),
            FileType::Directory => ResolveError::Other(walked, errno),
            _ => ResolveError::NotADirectory(walked),
        },
        Err(Errno::NOENT) => ResolveError::Missing(walked),
        Err(e) => ResolveError::Other(walked, e),
    }
}

/// The type of `name` in `dir`, not following a symlink; `None` if absent.
pub(crate) fn type_at(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `name` from `dir`, a directory with everything in it, never
/// following a symlink.
pub(crate) fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<()> {
    match type_at(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            let child = rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())?;
            let mut names: Vec<OsString> = Vec::new();
            for entry in Dir::read_from(&child)? {
                let entry = entry?;
                let entry_name = entry.file_name().to_bytes();
                if entry_name != b"." && entry_name != b".." {
                    names.push(OsStr::from_bytes(entry_name).to_os_string());
                }
            }
            for entry_name in names {
                remove_at(child.as_fd(), &entry_name)?;
            }
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
        }
        Some(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty()),
    }
}

/// A path naming `name` in the directory `dir` through `/proc/self/fd`, for
/// the few calls that have no descriptor-relative form (xattrs of a symlink
/// or device node). Resolution goes through the descriptor's magic link to
/// the already-confined directory, then one name, which the `l*` calls do not
/// follow.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    use std::os::fd::AsRawFd;
    Path::new("/proc/self/fd").join(dir.as_raw_fd().to_string()).join(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_are_refused_and_dirs_created() {
        let outside = tempfile::tempdir().unwrap();
        let root_dir = tempfile::tempdir().unwrap();
        let root = ConfinedRoot::open(root_dir.path()).unwrap();
        symlink(outside.path(), root_dir.path().join("out")).unwrap();
        symlink("inside", root_dir.path().join("rel")).unwrap();
        std::fs::create_dir(root_dir.path().join("inside")).unwrap();
        std::fs::write(root_dir.path().join("file"), b"").unwrap();

        for (path, create) in [("out", true), ("out/x/y", true), ("rel/x", true), ("inside/../out/x", true)] {
            match root.dir(Path::new(path), create) {
                Err(ResolveError::Symlink(_)) | Err(ResolveError::Other(..)) => {}
                other => panic!("{path}: {other:?}"),
            }
        }
        assert!(matches!(root.dir(Path::new("file/x"), true), Err(ResolveError::NotADirectory(_))));
        assert!(matches!(root.dir(Path::new("missing/x"), false), Err(ResolveError::Missing(_))));
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "nothing was made outside");

        let (parent, name) = root.parent_of(Path::new("a/b/c"), true).unwrap();
        assert_eq!(name, "c");
        rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)).unwrap();
        assert!(root_dir.path().join("a/b/c").is_dir());

        // Removal never follows the symlink to what is outside.
        std::fs::write(outside.path().join("keep"), b"k").unwrap();
        remove_at(root.fd(), OsStr::new("out")).unwrap();
        remove_at(root.fd(), OsStr::new("a")).unwrap();
        assert!(outside.path().join("keep").exists());
        assert!(!root_dir.path().join("a").exists());
        assert!(!root_dir.path().join("out").exists());
        remove_at(root.fd(), OsStr::new("absent")).unwrap();
    }
}
