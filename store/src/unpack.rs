//! Unpacking a layer blob into a snapshot: the inverse of `layer`, so that a
//! layer that came from elsewhere (a base image) can be stacked under a RUN.
//!
//! The tar is untrusted. Nothing it says can reach outside the snapshot:
//! absolute paths are taken relative to it, `..` components are refused, and
//! no path is followed through a symlink (an entry under a symlinked directory
//! is refused, as is a hard link whose target is not a file already unpacked).
//! OCI whiteouts become overlayfs whiteouts again: `.wh.<name>` a `0:0`
//! character device, `.wh..wh..opq` the opaque xattr on its directory (both
//! `user.overlay.opaque`, which rootless overlay mounts read, and, when
//! permitted, `trusted.overlay.opaque`). While unpacking, the blob and the
//! uncompressed tar are hashed: a layer that does not match its digests never
//! becomes a snapshot.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, XattrFlags, CWD};
use rustix::io::Errno;
use tar::EntryType;

use crate::compress::decoder;
use crate::digest::HashingReader;
use crate::error::{Result, StoreError};
use crate::layer::{Layer, OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use crate::snapshot::remove_tree;
use crate::Store;

const XATTR_RECORD: &str = "SCHILY.xattr.";

impl Store {
    /// The snapshot of `layer`, unpacked from its blob first if needed.
    pub fn ensure_snapshot(&self, layer: &Layer) -> Result<PathBuf> {
        if self.has_snapshot(&layer.diff_id) {
            return Ok(self.snapshot_path(&layer.diff_id));
        }
        let blob_path = self.blob_path(&layer.digest);
        let compression = layer.compression().ok_or_else(|| StoreError::Layer {
            path: blob_path.clone(),
            reason: format!("unknown layer media type {:?}", layer.media_type),
        })?;
        let staging = self.tempdir()?;
        let dest = staging.path().join("snapshot");
        fs::create_dir(&dest).map_err(|e| StoreError::io("create directory", &dest, e))?;

        let io_err = |e: io::Error| StoreError::io("unpack layer", &blob_path, e);
        let (file, _) = self.open_blob(&layer.digest)?;
        let mut blob = HashingReader::new(file);
        let mut tar = HashingReader::new(decoder(compression, &mut blob).map_err(io_err)?);
        unpack_layer_tar(&mut tar, &dest)?;
        // Hash what the tar reader left (end-of-archive padding) too.
        io::copy(&mut tar, &mut io::sink()).map_err(io_err)?;
        let (diff_id, _) = tar.finish();
        io::copy(&mut blob, &mut io::sink()).map_err(io_err)?;
        let (digest, _) = blob.finish();
        for (what, expected, actual) in [
            ("layer blob", &layer.digest, digest),
            ("uncompressed layer", &layer.diff_id, diff_id),
        ] {
            if expected != &actual {
                return Err(StoreError::DigestMismatch {
                    what: format!("{what} {}", blob_path.display()),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        self.commit_snapshot(&dest, &layer.diff_id)
    }
}

/// Unpacks a layer tar stream into the directory `dest`, which should be new
/// and empty.
pub fn unpack_layer_tar(reader: impl Read, dest: &Path) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    let mut dirs: Vec<(PathBuf, tar::Header)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| unpack_err(dest, e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unpack_err(dest, e.to_string()))?;
        let raw_path = entry.path_bytes().into_owned();
        let Some(relative) = safe_relative(&raw_path).map_err(|r| unpack_err(dest, r))? else {
            continue; // the root itself
        };
        let path = dest.join(&relative);
        let err = |reason: String| unpack_err(&path, reason);
        check_parents(dest, &relative).map_err(err)?;
        let header = entry.header().clone();
        let name = relative.file_name().unwrap_or_default().as_bytes().to_vec();
        let parent = path.parent().unwrap_or(dest).to_path_buf();

        if name == OPAQUE_WHITEOUT.as_bytes() {
            mark_opaque(&parent).map_err(|e| err(format!("cannot mark directory opaque: {e}")))?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let target = parent.join(OsStr::from_bytes(hidden));
            remove_existing(&target).map_err(|e| err(e.to_string()))?;
            rustix::fs::mknodat(CWD, &target, FileType::CharacterDevice, Mode::empty(), 0)
                .map_err(|e| err(format!("cannot create whiteout: {e}")))?;
            set_mtime(&target, &header).map_err(&err)?;
            continue;
        }

        let entry_type = header.entry_type();
        if entry_type != EntryType::Directory {
            remove_existing(&path).map_err(|e| err(e.to_string()))?;
        }
        match entry_type {
            EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        remove_existing(&path).map_err(|e| err(e.to_string()))?;
                        fs::create_dir(&path).map_err(|e| err(e.to_string()))?;
                    }
                    Err(_) => fs::create_dir(&path).map_err(|e| err(e.to_string()))?,
                }
                // Mode and times of directories are set at the end, once
                // nothing more is written into them.
                dirs.push((path.clone(), header.clone()));
            }
            EntryType::Regular | EntryType::Continuous => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(|e| err(format!("cannot create: {e}")))?;
                io::copy(&mut entry, &mut file).map_err(|e| err(format!("cannot write: {e}")))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| err("symlink without target".to_string()))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(|e| err(format!("cannot create symlink: {e}")))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| err("hard link without target".to_string()))?;
                let target = safe_relative(&target)
                    .map_err(&err)?
                    .ok_or_else(|| err("hard link to the root".to_string()))?;
                check_parents(dest, &target).map_err(&err)?;
                let source = dest.join(&target);
                match fs::symlink_metadata(&source) {
                    Ok(meta) if !meta.is_dir() => {}
                    _ => {
                        return Err(err(format!(
                            "hard link target {} is not an unpacked file",
                            target.display()
                        )))
                    }
                }
                fs::hard_link(&source, &path)
                    .map_err(|e| err(format!("cannot create hard link: {e}")))?;
                // A hard link shares its target's metadata; nothing more to set.
                continue;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match entry_type {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                rustix::fs::mknodat(
                    CWD,
                    &path,
                    file_type,
                    Mode::empty(),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| err(format!("cannot create device node: {e}")))?;
            }
            EntryType::XGlobalHeader => continue,
            other => return Err(err(format!("unsupported tar entry type {other:?}"))),
        }

        // Owner before xattrs, because a chown drops file capabilities; mode
        // after the chown, because a chown clears set-id bits.
        let is_dir = entry_type == EntryType::Directory;
        if !is_dir {
            apply_owner(&path, &header).map_err(&err)?;
        }
        apply_xattrs(&mut entry, &path).map_err(&err)?;
        if !is_dir {
            apply_mode_and_mtime(&path, &header, entry_type == EntryType::Symlink).map_err(&err)?;
        }
    }
    // Deepest first, so setting a parent's mtime comes after its children.
    for (path, header) in dirs.iter().rev() {
        apply_owner(path, header)
            .and_then(|()| apply_mode_and_mtime(path, header, false))
            .map_err(|r| unpack_err(path, r))?;
    }
    Ok(())
}

/// The entry's path relative to the snapshot, or `None` for the root. Leading
/// `/` and `.` components are dropped; `..` is refused.
fn safe_relative(raw: &[u8]) -> std::result::Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!(
                    "path {:?} leaves the layer root",
                    String::from_utf8_lossy(raw)
                ))
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Makes sure every parent of `relative` is a real directory inside `dest`,
/// creating missing ones; a symlink on the way is refused, never followed.
fn check_parents(dest: &Path, relative: &Path) -> std::result::Result<(), String> {
    let mut current = dest.to_path_buf();
    let Some(parent) = relative.parent() else {
        return Ok(());
    };
    for part in parent.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(format!(
                    "parent {} is a symlink; refusing to follow it",
                    current.display()
                ))
            }
            Ok(_) => return Err(format!("parent {} is not a directory", current.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&current)
                .map_err(|e| format!("cannot create {}: {e}", current.display()))?,
            Err(e) => return Err(format!("cannot stat {}: {e}", current.display())),
        }
    }
    Ok(())
}

fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => remove_tree(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn mark_opaque(dir: &Path) -> io::Result<()> {
    rustix::fs::lsetxattr(dir, "user.overlay.opaque", b"y", XattrFlags::empty())?;
    // Only a privileged process may set trusted.*; a rootless one needs only
    // the user.* marker.
    match rustix::fs::lsetxattr(dir, "trusted.overlay.opaque", b"y", XattrFlags::empty()) {
        Ok(()) | Err(Errno::PERM) | Err(Errno::ACCESS) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn apply_xattrs<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &Path,
) -> std::result::Result<(), String> {
    let Some(records) = entry.pax_extensions().map_err(|e| e.to_string())? else {
        return Ok(());
    };
    for record in records {
        let record = record.map_err(|e| e.to_string())?;
        let Ok(key) = record.key() else { continue };
        let Some(name) = key.strip_prefix(XATTR_RECORD) else {
            continue;
        };
        match rustix::fs::lsetxattr(path, name, record.value_bytes(), XattrFlags::empty()) {
            Ok(()) => {}
            // Attributes this process may not set (trusted.*, security.*
            // without privilege) or the filesystem cannot hold are dropped,
            // as Docker drops them.
            Err(Errno::PERM) | Err(Errno::ACCESS) | Err(Errno::OPNOTSUPP) => {}
            Err(e) => return Err(format!("cannot set xattr {name}: {e}")),
        }
    }
    Ok(())
}

fn apply_owner(path: &Path, header: &tar::Header) -> std::result::Result<(), String> {
    // Fields a writer left empty read as zero, as other tar readers take them.
    let uid = header.uid().unwrap_or(0) as u32;
    let gid = header.gid().unwrap_or(0) as u32;
    let owner = (
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    );
    match rustix::fs::chownat(CWD, path, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(()) => {}
        // Without privilege files stay owned by the unpacking user.
        Err(Errno::PERM) | Err(Errno::INVAL) => {}
        Err(e) => return Err(format!("cannot chown: {e}")),
    }
    Ok(())
}

fn apply_mode_and_mtime(
    path: &Path,
    header: &tar::Header,
    is_symlink: bool,
) -> std::result::Result<(), String> {
    if !is_symlink {
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot chmod: {e}"))?;
    }
    set_mtime(path, header)
}

fn set_mtime(path: &Path, header: &tar::Header) -> std::result::Result<(), String> {
    let mtime = Timespec {
        tv_sec: header.mtime().unwrap_or(0) as i64,
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: mtime,
        last_modification: mtime,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| format!("cannot set mtime: {e}"))
}

fn unpack_err(path: &Path, reason: String) -> StoreError {
    StoreError::Layer {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
