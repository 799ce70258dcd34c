//! Thin, symlink-safe wrappers over the system calls the file operations need.
//!
//! Nothing here follows a symbolic link: metadata comes from `lstat`, files are
//! opened with `O_NOFOLLOW`, and directories inside an output layer are reached
//! one component at a time with `openat(O_NOFOLLOW | O_DIRECTORY)`, so a link
//! planted anywhere on the way makes the call fail instead of leaving the root.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec};
use rustix::io::Errno;

use super::imagepath::ImagePath;

/// The overlayfs markers rbuild's snapshots use for opaque directories; the
/// `user.` one is what rootless overlay mounts understand.
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// What kind of file an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

/// The metadata of one entry, as read with `lstat`.
#[derive(Clone, Debug)]
pub(crate) struct Attrs {
    pub kind: EntryKind,
    /// Permission bits plus setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub rdev: u64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    /// Status change time: with `mtime`, `size` and the inode it tells the step
    /// cache whether a file can have changed since it was last hashed.
    pub ctime: Timespec,
}

impl Attrs {
    fn from_stat(st: &Stat) -> Self {
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => EntryKind::Directory,
            FileType::Symlink => EntryKind::Symlink,
            FileType::CharacterDevice => EntryKind::CharDevice,
            FileType::BlockDevice => EntryKind::BlockDevice,
            FileType::Fifo => EntryKind::Fifo,
            FileType::Socket => EntryKind::Socket,
            _ => EntryKind::File,
        };
        Attrs {
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            rdev: st.st_rdev,
            dev: st.st_dev,
            ino: st.st_ino,
            // `st_nlink` is narrower than u64 on some architectures.
            #[allow(clippy::unnecessary_cast)]
            nlink: st.st_nlink as u64,
            atime: Timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec as _,
            },
            mtime: Timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec as _,
            },
            ctime: Timespec {
                tv_sec: st.st_ctime,
                tv_nsec: st.st_ctime_nsec as _,
            },
        }
    }

    /// Attributes of a directory that exists in no layer (the root of an empty
    /// image): 0755, owned by root.
    pub(crate) fn synthetic_dir() -> Self {
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        Attrs {
            kind: EntryKind::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            rdev: 0,
            dev: 0,
            ino: 0,
            nlink: 1,
            atime: zero,
            mtime: zero,
            ctime: zero,
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.kind == EntryKind::Directory
    }

    /// An overlayfs whiteout: a character device numbered 0:0.
    pub(crate) fn is_whiteout(&self) -> bool {
        self.kind == EntryKind::CharDevice && self.rdev == 0
    }
}

/// Whether an errno means "there is nothing at this path" (including a
/// non-directory where a directory was expected on the way).
pub(crate) fn is_absent(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

/// `lstat`, with "absent" mapped to `None`.
pub(crate) fn lstat(path: &Path) -> io::Result<Option<Attrs>> {
    match rustix::fs::lstat(path) {
        Ok(st) => Ok(Some(Attrs::from_stat(&st))),
        Err(e) => {
            let e = io::Error::from(e);
            if is_absent(&e) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// `lstat` of `name` inside an open directory.
pub(crate) fn lstat_at(dir: impl AsFd, name: &OsStr) -> io::Result<Option<Attrs>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Attrs::from_stat(&st))),
        Err(e) => {
            let e = io::Error::from(e);
            if is_absent(&e) {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Whether a directory carries the overlayfs opaque marker.
pub(crate) fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 4];
    OPAQUE_XATTRS.iter().any(
        |name| matches!(rustix::fs::lgetxattr(path, *name, &mut buf[..]), Ok(1) if buf[0] == b'y'),
    )
}

/// Extended attributes that belong to overlayfs itself and must never be copied
/// into another layer (an opaque marker there would hide the lower layers).
pub(crate) fn is_overlay_xattr(name: &OsStr) -> bool {
    let name = name.as_bytes();
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// The extended attributes of an entry, without the overlayfs ones. A file
/// system without xattr support simply has none.
pub(crate) fn read_xattrs(path: &Path) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    let names = match read_xattr_names(path) {
        Ok(names) => names,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names {
        if is_overlay_xattr(&name) {
            continue;
        }
        match read_xattr_value(path, &name) {
            Ok(value) => out.push((name, value)),
            // Removed meanwhile, or a namespace this process may not read.
            Err(Errno::NODATA) | Err(Errno::PERM) | Err(Errno::ACCESS) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

fn read_xattr_names(path: &Path) -> Result<Vec<OsString>, Errno> {
    loop {
        let size = rustix::fs::llistxattr_query(path)?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf
                    .split(|&b| b == 0)
                    .filter(|n| !n.is_empty())
                    .map(|n| OsString::from_vec(n.to_vec()))
                    .collect());
            }
            // The list grew between the two calls: ask again.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn read_xattr_value(path: &Path, name: &OsStr) -> Result<Vec<u8>, Errno> {
    loop {
        let size = rustix::fs::lgetxattr_query(path, name)?;
        let mut buf = vec![0u8; size];
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads a symbolic link's target as raw bytes.
pub(crate) fn read_link(path: &Path) -> io::Result<Vec<u8>> {
    Ok(rustix::fs::readlink(path, Vec::new())?.into_bytes())
}

/// Opens a regular file for reading, refusing to follow a symlink in its place.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// Opens the directory `rel` below the directory `root` one component at a time,
/// never following a symlink and never leaving `root`.
pub(crate) fn open_dir_beneath(root: impl AsFd, rel: &ImagePath) -> io::Result<OwnedFd> {
    let mut fd = rustix::fs::openat(
        root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for name in rel.components() {
        fd = rustix::fs::openat(
            &fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
    }
    Ok(fd)
}

/// Opens a directory for listing, refusing a symlink in its place.
pub(crate) fn open_dir_nofollow(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens a host directory that the caller names (an output directory).
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Removes `name` inside `dir`, recursing into directories without following links.
pub(crate) fn remove_all_at(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    let dir = dir.as_fd();
    match lstat_at(dir, name)? {
        None => Ok(()),
        Some(attrs) if attrs.is_dir() => {
            let sub = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let mut children = NameList::default();
            read_dir_names(&sub, &mut children)?;
            for child in children.iter() {
                remove_all_at(&sub, child)?;
            }
            Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
        }
        Some(_) => Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?),
    }
}

/// The names of one or more directory listings, kept in one buffer: a
/// listing of a big tree would otherwise allocate a string per entry.
#[derive(Default)]
pub(crate) struct NameList {
    bytes: Vec<u8>,
    /// Where each name lies in `bytes`.
    spans: Vec<std::ops::Range<usize>>,
}

impl NameList {
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    /// Sorts the names bytewise (as `OsStr` orders them) and drops repeats.
    pub(crate) fn sort_dedup(&mut self) {
        let bytes = &self.bytes;
        self.spans.sort_unstable_by(|a, b| bytes[a.clone()].cmp(&bytes[b.clone()]));
        self.spans.dedup_by(|a, b| bytes[a.clone()] == bytes[b.clone()]);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &OsStr> {
        self.spans.iter().map(|span| OsStr::from_bytes(&self.bytes[span.clone()]))
    }
}

/// Adds the names in the open directory `dir` (without `.` and `..`) to
/// `names`, reading from `dir`'s own offset. (rustix's `Dir` re-opens the
/// directory and starts with a small buffer: three more system calls per
/// directory and several `getdents` for a big one.)
pub(crate) fn read_dir_names(dir: impl AsFd, names: &mut NameList) -> io::Result<()> {
    let mut buffer = [std::mem::MaybeUninit::<u8>::uninit(); 32 * 1024];
    let mut reader = rustix::fs::RawDir::new(dir, &mut buffer);
    while let Some(entry) = reader.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            let start = names.bytes.len();
            names.bytes.extend_from_slice(name);
            names.spans.push(start..names.bytes.len());
        }
    }
    Ok(())
}

/// The current time, for directories a file operation creates.
pub(crate) fn now() -> Timespec {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: d.subsec_nanos() as _,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_merge_into_one_sorted_name_list_without_repeats() {
        let upper = tempfile::tempdir().unwrap();
        let lower = tempfile::tempdir().unwrap();
        for name in ["b", "a", "c\u{e9}"] {
            std::fs::write(upper.path().join(name), "").unwrap();
        }
        for name in ["b", "aa", "B"] {
            std::fs::write(lower.path().join(name), "").unwrap();
        }
        let mut names = NameList::default();
        for dir in [&upper, &lower] {
            read_dir_names(open_dir(dir.path()).unwrap(), &mut names).unwrap();
        }
        assert_eq!(names.len(), 6);
        names.sort_dedup();
        let listed: Vec<&OsStr> = names.iter().collect();
        assert_eq!(listed, ["B", "a", "aa", "b", "c\u{e9}"]);
    }
}
