//! Finding, and creating when missing, mount points inside the root
//! filesystem without ever resolving a path outside it.
//!
//! The image controls the root filesystem, so `/etc/resolv.conf` may be a
//! symlink to `/../../host/file`. Every lookup is `openat2` with
//! `RESOLVE_IN_ROOT`, which treats the rootfs as `/` for symlinks and `..`;
//! the mount then targets the returned descriptor, not a path. A dangling
//! symlink is followed by hand to the path it names, inside the root, which
//! is created there. Everything created is reported as a stub so rbuild can
//! take it out of the diff afterwards.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::protocol::{Ancestor, ChildError, Report, Stub};

/// `path` as an absolute path without `.` and `..`, resolved lexically (as BuildKit
/// resolves a working directory or a mount target before it looks at the filesystem);
/// `None` when it holds a NUL byte.
pub(crate) fn lexical(path: &str) -> Option<PathBuf> {
    if path.contains('\0') {
        return None;
    }
    let mut out = PathBuf::from("/");
    for component in Path::new(path).components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// Symlinks followed by hand before giving up, as the kernel's limit.
const MAX_HOPS: u32 = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
}

/// The root filesystem, open, and where it is mounted in rbuild's view.
pub(crate) struct Root<'a> {
    pub fd: BorrowedFd<'a>,
    pub host_path: &'a Path,
}

/// An `O_PATH` descriptor of `rel` inside `root`, created (with missing
/// parents) when absent; what it creates goes to `report` (a child's
/// [`super::protocol::Reporter`], or the chroot isolation's own list).
pub(crate) fn ensure(
    root: &Root,
    rel: &Path,
    kind: Kind,
    report: &dyn Fn(&Report),
) -> Result<OwnedFd, ChildError> {
    ensure_inner(root, rel.to_path_buf(), kind, report, 0)
}

fn ensure_inner(
    root: &Root,
    rel: PathBuf,
    kind: Kind,
    report: &dyn Fn(&Report),
    hops: u32,
) -> Result<OwnedFd, ChildError> {
    let step = format!("mount point /{}", rel.display());
    if hops > MAX_HOPS {
        return Err(ChildError::setup(step, "too many levels of symbolic links"));
    }
    let comps: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            Component::ParentDir => Some(OsStr::new("..")),
            _ => None,
        })
        .collect();
    let mut current =
        open_in_root(root, Path::new("."), true).map_err(|e| ChildError::setup(&step, e))?;
    let mut prefix = PathBuf::new();
    let mut reported_ancestors = false;

    for (i, &name) in comps.iter().enumerate() {
        prefix.push(name);
        let last = i + 1 == comps.len();
        let want_dir = !last || kind == Kind::Dir;
        match open_in_root(root, &prefix, want_dir) {
            Ok(fd) => {
                if last && kind == Kind::File {
                    let st = rustix::fs::fstat(&fd).map_err(|e| ChildError::setup(&step, e))?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                        return Err(ChildError::setup(
                            step,
                            "exists in the image but is not a regular file",
                        ));
                    }
                }
                current = fd;
            }
            Err(Errno::NOENT) => {
                let parent_rel =
                    rel_of(root, current.as_fd()).map_err(|e| ChildError::setup(&step, e))?;
                let created = if want_dir {
                    rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(0o755))
                } else {
                    rustix::fs::openat(
                        &current,
                        name,
                        OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::WRONLY
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o644),
                    )
                    .map(drop)
                };
                match created {
                    Ok(()) => {
                        if !reported_ancestors {
                            report_ancestors(root, &parent_rel, report);
                            reported_ancestors = true;
                        }
                        let mut stub_rel = parent_rel.clone();
                        stub_rel.push(name);
                        report(&Report::Stub(Stub {
                            rel: stub_rel.as_os_str().as_bytes().to_vec(),
                            dir: want_dir,
                        }));
                        let mut flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                        if want_dir {
                            flags |= OFlags::DIRECTORY;
                        }
                        current = rustix::fs::openat(&current, name, flags, Mode::empty())
                            .map_err(|e| ChildError::setup(&step, e))?;
                    }
                    // The name exists but did not resolve: a dangling symlink.
                    // Follow it to the path it names and create that.
                    Err(Errno::EXIST) => {
                        let target = rustix::fs::readlinkat(&current, name, Vec::new())
                            .map_err(|e| ChildError::setup(&step, e))?;
                        let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                        let mut next = if target.is_absolute() {
                            PathBuf::new()
                        } else {
                            parent_rel.clone()
                        };
                        next.push(target.strip_prefix("/").unwrap_or(target));
                        for rest in &comps[i + 1..] {
                            next.push(rest);
                        }
                        return ensure_inner(root, next, kind, report, hops + 1);
                    }
                    Err(e) => return Err(ChildError::setup(step, format!("create: {e}"))),
                }
            }
            Err(Errno::NOTDIR) => {
                let what = if last {
                    "exists in the image but is not a directory"
                } else {
                    "has a parent that is not a directory"
                };
                return Err(ChildError::setup(step, what));
            }
            Err(e) => return Err(ChildError::setup(step, e)),
        }
    }
    Ok(current)
}

/// Opens `rel` with the root filesystem as `/` for every symlink and `..`.
pub(crate) fn open_in_root(root: &Root, rel: &Path, dir: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if dir {
        flags |= OFlags::DIRECTORY;
    }
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    rustix::fs::openat2(
        root.fd,
        rel,
        flags,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Where `fd` is, relative to the root: what the kernel says its path is,
/// less the root's own path.
pub(crate) fn rel_of(root: &Root, fd: BorrowedFd) -> Result<PathBuf, String> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let path = std::fs::read_link(&link).map_err(|e| format!("read {link}: {e}"))?;
    match path.strip_prefix(root.host_path) {
        Ok(rel) => Ok(rel.to_path_buf()),
        Err(_) => Err(format!(
            "{} resolved outside the root filesystem",
            path.display()
        )),
    }
}

/// Reports the directories from `parent_rel` up to the root, which creating
/// a stub in `parent_rel` copies up into the diff.
fn report_ancestors(root: &Root, parent_rel: &Path, report: &dyn Fn(&Report)) {
    let mut dir = Some(parent_rel);
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(st) = rustix::fs::statat(root.fd, d, AtFlags::SYMLINK_NOFOLLOW) {
            report(&Report::Ancestor(Ancestor {
                rel: d.as_os_str().as_bytes().to_vec(),
                mode: st.st_mode & 0o7777,
                uid: st.st_uid,
                gid: st.st_gid,
            }));
        }
        dir = d.parent();
    }
}

#[cfg(test)]
mod tests {
    //! On a plain directory: no root, no mount.

    use std::cell::RefCell;
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    /// Ensures `rel` in `tree`; where it ended up and the stubs reported.
    fn ensure_in(tree: &Path, rel: &str, kind: Kind) -> Result<(PathBuf, Vec<(String, bool)>), ChildError> {
        let fd = rustix::fs::open(tree, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let root = Root {
            fd: fd.as_fd(),
            host_path: tree,
        };
        let stubs = RefCell::new(Vec::new());
        let found = ensure(&root, Path::new(rel), kind, &|r| {
            if let Report::Stub(s) = r {
                let rel = String::from_utf8(s.rel.clone()).unwrap();
                stubs.borrow_mut().push((rel, s.dir));
            }
        })?;
        Ok((rel_of(&root, found.as_fd()).unwrap(), stubs.into_inner()))
    }

    #[test]
    fn missing_parents_and_the_mount_point_are_stubs() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        fs::create_dir(tree.join("etc")).unwrap();
        let (at, stubs) = ensure_in(tree, "etc/secrets/token", Kind::File).unwrap();
        assert_eq!(at, Path::new("etc/secrets/token"));
        assert_eq!(stubs, [("etc/secrets".into(), true), ("etc/secrets/token".into(), false)]);
        assert!(tree.join("etc/secrets/token").is_file());
        // Found again, nothing is created.
        assert_eq!(ensure_in(tree, "etc/secrets/token", Kind::File).unwrap().1, []);
    }

    #[test]
    fn symlinks_lead_only_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::create_dir(&tree).unwrap();
        symlink(&outside, tree.join("abs")).unwrap();
        symlink("../../..", tree.join("up")).unwrap();
        let (at, stubs) = ensure_in(&tree, "abs/m", Kind::Dir).unwrap();
        let inside = outside.strip_prefix("/").unwrap().join("m");
        assert_eq!(at, inside);
        assert_eq!(stubs.last().unwrap(), &(inside.display().to_string(), true));
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "nothing outside");
        let (at, _) = ensure_in(&tree, "up/climbed", Kind::Dir).unwrap();
        assert_eq!(at, Path::new("climbed"));
        assert!(tree.join("climbed").is_dir() && !dir.path().join("climbed").exists());
    }

    #[test]
    fn an_entry_of_the_wrong_kind_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("d")).unwrap();
        fs::write(dir.path().join("f"), "").unwrap();
        for (rel, kind, message) in [
            ("f", Kind::Dir, "exists in the image but is not a directory"),
            ("f/sub", Kind::Dir, "has a parent that is not a directory"),
            ("d", Kind::File, "exists in the image but is not a regular file"),
        ] {
            let err = ensure_in(dir.path(), rel, kind).unwrap_err();
            assert_eq!((err.step, err.message), (format!("mount point /{rel}"), message.to_string()));
        }
    }
}
