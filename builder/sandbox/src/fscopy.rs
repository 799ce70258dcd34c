//! Copying single filesystem entries with everything a layer records about
//! them (type, content, mode, owner, extended attributes, times, hard links),
//! for the chroot isolation, which works on copies instead of mounts.
//!
//! No function here follows a symlink: entries are read with `lstat`, and
//! every path handed in is built from directory listings of trees rbuild
//! itself created.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};

/// Extended attributes that belong to overlayfs's bookkeeping, not to files.
const OVERLAY_XATTR_PREFIXES: [&[u8]; 2] = [b"trusted.overlay.", b"user.overlay."];

/// Hard links already copied: source `(dev, inode)` → copy.
pub(crate) type Links = HashMap<(u64, u64), PathBuf>;

/// Copies the non-directory `src` (whose metadata is `meta`) to the new path
/// `dst`. Returns a warning for what cannot be copied here (a device node
/// when `mknod` is refused, a socket).
pub(crate) fn copy_entry(
    src: &Path,
    dst: &Path,
    meta: &fs::Metadata,
    links: &mut Links,
) -> io::Result<Option<String>> {
    let key = (meta.dev(), meta.ino());
    if meta.nlink() > 1 {
        if let Some(first) = links.get(&key) {
            fs::hard_link(first, dst)?;
            return Ok(None);
        }
    }
    let ft = meta.file_type();
    if ft.is_file() {
        let mut from = fs::File::open(src)?;
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dst)?;
        io::copy(&mut from, &mut to)?;
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
    } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
        let kind = if ft.is_char_device() {
            FileType::CharacterDevice
        } else if ft.is_block_device() {
            FileType::BlockDevice
        } else {
            FileType::Fifo
        };
        match rustix::fs::mknodat(CWD, dst, kind, Mode::from_raw_mode(0o600), meta.rdev()) {
            Ok(()) => {}
            Err(rustix::io::Errno::PERM) => {
                return Ok(Some(format!(
                    "{} not copied: creating device nodes is not allowed",
                    src.display()
                )))
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        return Ok(Some(format!(
            "{} not copied: sockets cannot be copied",
            src.display()
        )));
    }
    apply_metadata(src, dst, meta)?;
    if meta.nlink() > 1 {
        links.insert(key, dst.to_path_buf());
    }
    Ok(None)
}

/// Gives `dst` the owner, mode, extended attributes and times of `src`.
/// Owner first: `chown` clears setuid and setgid bits.
pub(crate) fn apply_metadata(src: &Path, dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    if !meta.file_type().is_symlink() {
        rustix::fs::chmodat(
            CWD,
            dst,
            Mode::from_raw_mode(meta.mode() & 0o7777),
            AtFlags::empty(),
        )?;
    }
    copy_xattrs(src, dst)?;
    set_times(dst, meta)
}

pub(crate) fn set_times(dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    };
    rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

fn copy_xattrs(src: &Path, dst: &Path) -> io::Result<()> {
    for name in list_xattrs(src)? {
        if OVERLAY_XATTR_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let Some(value) = get_xattr(src, &name)? else {
            continue;
        };
        rustix::fs::lsetxattr(dst, OsStr::from_bytes(&name), &value, XattrFlags::empty())?;
    }
    Ok(())
}

fn list_xattrs(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 1024];
    loop {
        match rustix::fs::llistxattr(path, &mut buf) {
            Ok(n) => {
                return Ok(buf[..n]
                    .split(|&b| b == 0)
                    .filter(|n| !n.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect())
            }
            Err(rustix::io::Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The value of one extended attribute; `None` when it vanished or is not
/// readable here (a `trusted.` one in a user namespace).
pub(crate) fn get_xattr(path: &Path, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let name = OsStr::from_bytes(name);
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(rustix::io::Errno::NODATA)
            | Err(rustix::io::Errno::NOTSUP)
            | Err(rustix::io::Errno::PERM) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}
