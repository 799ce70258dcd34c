//! Unpacking a layer blob into a snapshot: the inverse of `layer`, so that a
//! layer that came from elsewhere (a base image) can be stacked under a RUN.
//!
//! The tar is untrusted. Every write goes through `confined`: directories are
//! opened from the snapshot root's descriptor with openat2 `RESOLVE_IN_ROOT`
//! and symlinks refused, and every entry is made with a descriptor-relative
//! call on a single name that is never followed. So:
//! - absolute member names are taken relative to the snapshot (as Docker
//!   places them) and a `..` component is refused;
//! - a member below a symlink (one an earlier member planted, or a directory
//!   a later member replaced by a symlink) is refused, never followed;
//! - a hard link must name a file already unpacked in this layer, and links
//!   to it, not through it;
//! - device nodes are made only where the process may (in a user namespace it
//!   may not: they are skipped with a warning, as rootless containerd skips
//!   them); fifos always;
//! - set-id bits, capabilities and other xattrs are metadata of the files they
//!   belong to, applied with the file's own descriptor.
//!
//! OCI whiteouts become overlayfs whiteouts again: `.wh.<name>` a `0:0`
//! character device, `.wh..wh..opq` the opaque xattr on its directory (both
//! `user.overlay.opaque`, which rootless overlay mounts read, and, when
//! permitted, `trusted.overlay.opaque`). While unpacking, the blob and the
//! uncompressed tar are hashed: a layer that does not match its digests never
//! becomes a snapshot. A refused member fails the unpack with an error that
//! names it; nothing outside the snapshot is touched.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use tar::EntryType;

use crate::compress::decoder;
use crate::fs::confined::{proc_path, remove_at, type_at, ConfinedRoot, ResolveError};
use crate::digest::HashingReader;
use crate::expansion::{ExpansionLimits, Meter};
use crate::error::{Result, StoreError};
use crate::content::layer::{Layer, OPAQUE_WHITEOUT, WHITEOUT_PREFIX};
use crate::content::blobs::Blobs;
use crate::content::snapshot::Snapshots;

const XATTR_RECORD: &str = "SCHILY.xattr.";

/// What an unpack did besides unpacking.
#[derive(Debug, Default)]
pub struct UnpackReport {
    /// Members skipped as not permitted here (device nodes in a user namespace).
    pub warnings: Vec<String>,
}

/// The snapshot of `layer` in `snapshots`, unpacked from its blob in
/// `blobs` first if needed, with the unpack's warnings.
pub(crate) fn ensure_snapshot(blobs: &Blobs, snapshots: &Snapshots, layer: &Layer) -> Result<(PathBuf, UnpackReport)> {
    if snapshots.has_snapshot(&layer.diff_id) {
        return Ok((snapshots.snapshot_path(&layer.diff_id), UnpackReport::default()));
    }
    let blob_path = blobs.blob_path(&layer.digest);
    let compression = layer.compression().ok_or_else(|| StoreError::Layer {
        path: blob_path.clone(),
        reason: format!("unknown layer media type {:?}", layer.media_type),
    })?;
    let staging = snapshots.tempdir()?;
    let dest = staging.path().join("snapshot");
    fs::create_dir(&dest).map_err(|e| StoreError::io("create directory", &dest, e))?;

    let io_err = |e: io::Error| StoreError::io("unpack layer", &blob_path, e);
    let limits = ExpansionLimits::from_env()
        .map_err(|error| StoreError::Expansion { layer: layer.digest.to_string(), error })?;
    let (file, _) = blobs.open_blob(&layer.digest)?;
    let compressed = file.metadata().map_err(io_err)?.len();
    let meter = limits.meter(compressed);
    let mut blob = HashingReader::new(file);
    let mut tar = HashingReader::new(meter.reader(decoder(compression, &mut blob).map_err(io_err)?));
    let named = |e: StoreError| match e {
        StoreError::Unpack { member, reason, .. } => StoreError::Unpack { layer: layer.digest.to_string(), member, reason },
        StoreError::Expansion { error, .. } => StoreError::Expansion { layer: layer.digest.to_string(), error },
        other => other,
    };
    let report = unpack_metered(&mut tar, &dest, &meter).map_err(named)?;
    // Hash what the tar reader left (end-of-archive padding) too.
    if let Err(e) = io::copy(&mut tar, &mut io::sink()) {
        return Err(match meter.exceeded() {
            Some(error) => StoreError::Expansion { layer: layer.digest.to_string(), error },
            None => io_err(e),
        });
    }
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
    Ok((snapshots.commit_snapshot(&dest, &layer.diff_id)?, report))
}

/// Unpacks a layer tar stream into the directory `dest`, which should be new
/// and empty, within the default [`ExpansionLimits`] on its members (its size
/// is unknown here: see [`unpack_metered`]).
pub fn unpack_layer_tar(reader: impl Read, dest: &Path) -> Result<UnpackReport> {
    let meter = ExpansionLimits::default().meter(u64::MAX);
    unpack_metered(reader, dest, &meter)
}

/// [`unpack_layer_tar`] counting members on `meter`, whose reader `reader`
/// should be; a limit passed fails the unpack with [`StoreError::Expansion`].
pub fn unpack_metered(reader: impl Read, dest: &Path, meter: &Meter) -> Result<UnpackReport> {
    let root = ConfinedRoot::open(dest).map_err(|e| StoreError::io("open snapshot directory", dest, e))?;
    let mut unpacker = Unpacker { root: &root, dest, dirs: Vec::new(), report: UnpackReport::default() };
    let mut archive = tar::Archive::new(reader);
    // A read error may be a limit passed inside the decompressor's stream.
    let limit_or = |e: StoreError| match meter.exceeded() {
        Some(error) => StoreError::Expansion { layer: dest.display().to_string(), error },
        None => e,
    };
    let entries = archive
        .entries()
        .map_err(|e| limit_or(unpack_err(dest, "(start of the layer)", e.to_string())))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| limit_or(unpack_err(dest, "(after the last good member)", e.to_string())))?;
        meter
            .entry()
            .map_err(|error| StoreError::Expansion { layer: dest.display().to_string(), error })?;
        let raw = entry.path_bytes().into_owned();
        let member = String::from_utf8_lossy(&raw).into_owned();
        unpacker
            .entry(&mut entry, &raw)
            .map_err(|reason| limit_or(unpack_err(dest, &member, reason)))?;
    }
    unpacker.finish_dirs()?;
    Ok(unpacker.report)
}

struct Unpacker<'a> {
    root: &'a ConfinedRoot,
    dest: &'a Path,
    /// Directories made, with their headers: their mode, owner and times are
    /// set at the end, once nothing more is written into them.
    dirs: Vec<(PathBuf, tar::Header)>,
    report: UnpackReport,
}

/// What an entry became: a file or directory open for its metadata, or a
/// name in its parent (symlinks, devices) that is handled by name.
enum Made {
    Open(OwnedFd),
    Named,
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, raw: &[u8]) -> std::result::Result<(), String> {
        let Some(relative) = safe_relative(raw)? else {
            return Ok(()); // the root itself
        };
        let header = entry.header().clone();
        let entry_type = header.entry_type();
        if matches!(entry_type, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let (parent, name) = self.root.parent_of(&relative, true).map_err(|e| describe(&e))?;
        let name_bytes = name.as_bytes();

        if name_bytes == OPAQUE_WHITEOUT.as_bytes() {
            return mark_opaque(&parent).map_err(|e| format!("cannot mark its directory opaque: {e}"));
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err("a whiteout must name an entry".to_string());
            }
            let hidden = OsStr::from_bytes(hidden);
            remove_at(parent.as_fd(), hidden).map_err(|e| format!("cannot remove what it hides: {e}"))?;
            rustix::fs::mknodat(&parent, hidden, FileType::CharacterDevice, Mode::empty(), 0)
                .map_err(|e| format!("cannot create the whiteout: {e}"))?;
            return set_mtime_at(parent.as_fd(), hidden, &header);
        }

        if entry_type != EntryType::Directory {
            remove_at(parent.as_fd(), name).map_err(|e| format!("cannot replace the existing entry: {e}"))?;
        }
        let made = match entry_type {
            EntryType::Directory => {
                match type_at(parent.as_fd(), name).map_err(|e| e.to_string())? {
                    Some(FileType::Directory) => {}
                    Some(_) => {
                        remove_at(parent.as_fd(), name).map_err(|e| format!("cannot replace the existing entry: {e}"))?;
                        mkdir(&parent, name)?;
                    }
                    None => mkdir(&parent, name)?,
                }
                self.dirs.push((relative.clone(), header.clone()));
                let fd = rustix::fs::openat(&parent, name, dir_flags(), Mode::empty()).map_err(|e| format!("cannot open: {e}"))?;
                apply_xattrs(entry, XattrTarget::Fd(fd.as_fd()))?;
                return Ok(());
            }
            EntryType::Regular | EntryType::Continuous => {
                let fd = rustix::fs::openat(
                    &parent,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| format!("cannot create: {e}"))?;
                let mut file = File::from(fd);
                io::copy(entry, &mut file).map_err(|e| format!("cannot write: {e}"))?;
                Made::Open(file.into())
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| "symlink without target".to_string())?;
                // The target is data: it is never resolved here.
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, name)
                    .map_err(|e| format!("cannot create symlink: {e}"))?;
                Made::Named
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| "hard link without target".to_string())?;
                return self.hard_link(&target, &parent, name);
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match entry_type {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let device = rustix::fs::makedev(major, minor);
                match rustix::fs::mknodat(&parent, name, file_type, Mode::empty(), device) {
                    Ok(()) => Made::Named,
                    Err(Errno::PERM) if file_type != FileType::Fifo => {
                        self.report.warnings.push(format!(
                            "skipped device node {} ({major}:{minor}): creating devices is not permitted here (rootless)",
                            relative.display()
                        ));
                        return Ok(());
                    }
                    Err(e) => return Err(format!("cannot create device node: {e}")),
                }
            }
            other => return Err(format!("unsupported tar entry type {other:?}")),
        };

        // Owner before xattrs, because a chown drops file capabilities; mode
        // after the chown, because a chown clears set-id bits.
        match &made {
            Made::Open(fd) => {
                apply_owner(|uid, gid| rustix::fs::fchown(fd, uid, gid), &header)?;
                apply_xattrs(entry, XattrTarget::Fd(fd.as_fd()))?;
                rustix::fs::fchmod(fd, Mode::from_raw_mode(mode_of(&header))).map_err(|e| format!("cannot chmod: {e}"))?;
                rustix::fs::futimens(fd, &timestamps(&header)).map_err(|e| format!("cannot set mtime: {e}"))?;
            }
            Made::Named => {
                apply_owner(|uid, gid| rustix::fs::chownat(&parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW), &header)?;
                apply_xattrs(entry, XattrTarget::Named(proc_path(parent.as_fd(), name)))?;
                if entry_type != EntryType::Symlink {
                    // A device node or fifo just made in a confined directory.
                    rustix::fs::chmodat(&parent, name, Mode::from_raw_mode(mode_of(&header)), AtFlags::empty())
                        .map_err(|e| format!("cannot chmod: {e}"))?;
                }
                set_mtime_at(parent.as_fd(), name, &header)?;
            }
        }
        Ok(())
    }

    /// A hard link to a file unpacked earlier in this layer. The link target
    /// is resolved in the root like any member (no `..`, no symlinked
    /// directory on the way) and linked without following a final symlink.
    fn hard_link(&self, target: &[u8], parent: &OwnedFd, name: &OsStr) -> std::result::Result<(), String> {
        let target = safe_relative(target)?.ok_or_else(|| "hard link to the root".to_string())?;
        let (target_parent, target_name) = self
            .root
            .parent_of(&target, false)
            .map_err(|e| format!("hard link target {}: {}", target.display(), describe(&e)))?;
        match type_at(target_parent.as_fd(), target_name).map_err(|e| e.to_string())? {
            Some(t) if t != FileType::Directory => {}
            _ => return Err(format!("hard link target {} is not a file unpacked earlier", target.display())),
        }
        rustix::fs::linkat(&target_parent, target_name, parent, name, AtFlags::empty())
            .map_err(|e| format!("cannot create hard link to {}: {e}", target.display()))
        // A hard link shares its target's metadata; nothing more to set.
    }

    /// Deepest first, so setting a parent's mtime comes after its children.
    /// A directory a later member replaced (by a file, or by a symlink) keeps
    /// what that member gave it.
    fn finish_dirs(&mut self) -> Result<()> {
        for (relative, header) in self.dirs.iter().rev() {
            let member = relative.display().to_string();
            let fd = match self.root.dir(relative, false) {
                Ok(fd) => fd,
                Err(ResolveError::Missing(_)) | Err(ResolveError::Symlink(_)) | Err(ResolveError::NotADirectory(_)) => continue,
                Err(e) => return Err(unpack_err(self.dest, &member, describe(&e))),
            };
            let apply = || -> std::result::Result<(), String> {
                apply_owner(|uid, gid| rustix::fs::fchown(&fd, uid, gid), header)?;
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode_of(header))).map_err(|e| format!("cannot chmod: {e}"))?;
                rustix::fs::futimens(&fd, &timestamps(header)).map_err(|e| format!("cannot set mtime: {e}"))
            };
            apply().map_err(|reason| unpack_err(self.dest, &member, reason))?;
        }
        Ok(())
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn mkdir(parent: &OwnedFd, name: &OsStr) -> std::result::Result<(), String> {
    // Owner-writable until the end, when the header's mode is applied.
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)).map_err(|e| format!("cannot create directory: {e}"))
}

fn describe(error: &ResolveError) -> String {
    match error {
        ResolveError::Symlink(p) => format!("its path goes through {}, a symlink, which is never followed", p.display()),
        ResolveError::NotADirectory(p) => format!("its parent {} is not a directory", p.display()),
        other => other.to_string(),
    }
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
                return Err(format!("path {:?} has a '..' component, which could leave the layer root", String::from_utf8_lossy(raw)))
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

fn mark_opaque(dir: &OwnedFd) -> io::Result<()> {
    rustix::fs::fsetxattr(dir, "user.overlay.opaque", b"y", XattrFlags::empty())?;
    // Only a privileged process may set trusted.*; a rootless one needs only
    // the user.* marker.
    match rustix::fs::fsetxattr(dir, "trusted.overlay.opaque", b"y", XattrFlags::empty()) {
        Ok(()) | Err(Errno::PERM) | Err(Errno::ACCESS) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

enum XattrTarget<'a> {
    Fd(BorrowedFd<'a>),
    /// A symlink or device node, by a `/proc/self/fd` path whose last
    /// component the `l*` call does not follow.
    Named(PathBuf),
}

fn apply_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, target: XattrTarget<'_>) -> std::result::Result<(), String> {
    let Some(records) = entry.pax_extensions().map_err(|e| e.to_string())? else {
        return Ok(());
    };
    for record in records {
        let record = record.map_err(|e| e.to_string())?;
        let Ok(key) = record.key() else { continue };
        let Some(name) = key.strip_prefix(XATTR_RECORD) else {
            continue;
        };
        let result = match &target {
            XattrTarget::Fd(fd) => rustix::fs::fsetxattr(fd, name, record.value_bytes(), XattrFlags::empty()),
            XattrTarget::Named(path) => rustix::fs::lsetxattr(path, name, record.value_bytes(), XattrFlags::empty()),
        };
        match result {
            Ok(()) => {}
            // Attributes this process may not set (trusted.*, security.*
            // without privilege, user.* on a symlink) or the filesystem
            // cannot hold are dropped, as Docker drops them.
            Err(Errno::PERM) | Err(Errno::ACCESS) | Err(Errno::OPNOTSUPP) => {}
            Err(e) => return Err(format!("cannot set xattr {name}: {e}")),
        }
    }
    Ok(())
}

fn apply_owner(
    chown: impl FnOnce(Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) -> rustix::io::Result<()>,
    header: &tar::Header,
) -> std::result::Result<(), String> {
    // Fields a writer left empty read as zero, as other tar readers take them.
    let uid = header.uid().unwrap_or(0) as u32;
    let gid = header.gid().unwrap_or(0) as u32;
    match chown(Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid))) {
        Ok(()) => Ok(()),
        // Without privilege files stay owned by the unpacking user.
        Err(Errno::PERM) | Err(Errno::INVAL) => Ok(()),
        Err(e) => Err(format!("cannot chown: {e}")),
    }
}

fn mode_of(header: &tar::Header) -> u32 {
    header.mode().unwrap_or(0o644) & 0o7777
}

fn timestamps(header: &tar::Header) -> Timestamps {
    let mtime = Timespec { tv_sec: header.mtime().unwrap_or(0) as i64, tv_nsec: 0 };
    Timestamps { last_access: mtime, last_modification: mtime }
}

fn set_mtime_at(parent: BorrowedFd<'_>, name: &OsStr, header: &tar::Header) -> std::result::Result<(), String> {
    rustix::fs::utimensat(parent, name, &timestamps(header), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| format!("cannot set mtime: {e}"))
}

fn unpack_err(dest: &Path, member: &str, reason: String) -> StoreError {
    StoreError::Unpack { layer: dest.display().to_string(), member: member.to_string(), reason }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
