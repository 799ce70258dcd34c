//! Deterministic layer tars.
//!
//! A layer is written from a snapshot directory (the layer's diff) so that the
//! same tree always gives the same bytes:
//!
//! - entries in byte order of their tar names, directories named with a
//!   trailing `/` (so a directory's subtree stays contiguous and a parent comes
//!   before its children), paths relative (`etc/passwd`), no root entry;
//! - ustar headers with mode, uid, gid and mtime of the file, no user or group
//!   names, no atime or ctime; mtimes newer than `source_date_epoch` are clamped
//!   to it;
//! - PAX records for names and link targets that do not fit ustar and for
//!   extended attributes (`SCHILY.xattr.<name>`);
//! - hard links inside the layer stay hard links (the first path in sort order
//!   carries the data), symlinks, devices and fifos are kept, sockets skipped;
//! - overlayfs whiteouts become OCI whiteouts: a `0:0` character device (or a
//!   file with an `overlay.whiteout` xattr) becomes an empty `.wh.<name>`, and
//!   an opaque directory gets a `.wh..wh..opq` child. overlayfs's own xattrs are
//!   never written.
//!
//! The tar is streamed: it goes through a sha256 (the diff_id) into the
//! compressor and from there into a blob writer, in one pass.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::compress::{BackgroundEncoder, Compression};
use crate::digest::{Digest, HashingWriter};
use crate::error::{Result, StoreError};
use crate::content::blobs::Blobs;
use crate::fs::xattr;

/// Prefix of an OCI whiteout entry.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of the OCI opaque-directory marker.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// Extended attributes by which overlayfs marks opaque directories, for a
/// privileged mount (`trusted.`) and a rootless one (`user.`).
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];
/// Extended attributes of overlayfs's xattr-based whiteouts.
const WHITEOUT_XATTRS: [&str; 2] = ["trusted.overlay.whiteout", "user.overlay.whiteout"];
/// Extended attributes that are not part of the content: overlayfs's
/// bookkeeping, and SELinux labels, which belong to the host that wrote the file
/// and would make the same tree hash differently on two machines.
const SKIPPED_XATTR_PREFIXES: [&str; 3] = ["trusted.overlay.", "user.overlay.", "security.selinux"];

/// Buffer for file contents on their way into the tar.
const READ_BUFFER: usize = 128 * 1024;

/// How a layer blob is written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerOptions {
    /// Clamp entry mtimes to this time (seconds since the epoch), as
    /// `SOURCE_DATE_EPOCH` asks: only times newer than it change.
    pub source_date_epoch: Option<i64>,
    /// Compression of the stored blob.
    pub compression: Compression,
}

/// A layer blob in the store.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// Digest of the (compressed) blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar: what the image config lists.
    pub diff_id: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// OCI media type of the blob.
    pub media_type: String,
}

impl Layer {
    /// The blob's compression, from its media type.
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_layer_media_type(&self.media_type)
    }
}

/// Writes the directory `dir` (a layer diff) as a layer blob into `blobs`.
pub(crate) fn write_layer(blobs: &Blobs, dir: &Path, opts: &LayerOptions) -> Result<Layer> {
    let io_err = |source| StoreError::LayerIo {
        dir: dir.to_path_buf(),
        source,
    };
    let blob = blobs.blob_writer()?;
    let encoder = BackgroundEncoder::spawn(opts.compression, blob).map_err(io_err)?;
    let hashed = write_layer_tar(dir, opts.source_date_epoch, HashingWriter::new(encoder))?;
    let (diff_id, _, encoder) = hashed.finish();
    let blob = encoder.finish().map_err(io_err)?;
    let (digest, size) = blob.commit()?;
    Ok(Layer {
        digest,
        diff_id,
        size,
        media_type: opts.compression.layer_media_type().to_string(),
    })
}

/// Writes the deterministic tar of `dir` into `out` and returns `out`.
pub fn write_layer_tar<W: Write>(dir: &Path, source_date_epoch: Option<i64>, out: W) -> Result<W> {
    let mut writer = LayerTarWriter {
        builder: tar::Builder::new(out),
        epoch: source_date_epoch,
        first_link_path: HashMap::new(),
    };
    writer.write_dir(dir, b"", false)?;
    writer
        .builder
        .into_inner()
        .map_err(|source| StoreError::LayerIo {
            dir: dir.to_path_buf(),
            source,
        })
}

/// What a directory child becomes in the tar.
enum Kind {
    Dir,
    File,
    Symlink,
    /// Character or block device, or fifo: a header without data.
    Special(EntryType),
    /// An overlayfs whiteout, written as an empty `.wh.<name>`.
    Whiteout,
    /// The synthetic `.wh..wh..opq` of an opaque directory.
    OpaqueMarker,
}

struct Child {
    /// The entry's name in its directory, as it appears in the tar (with a
    /// trailing `/` for directories): also the sort key.
    tar_name: Vec<u8>,
    /// The path on disk (for the opaque marker: its directory).
    path: PathBuf,
    meta: Metadata,
    kind: Kind,
}

struct LayerTarWriter<W: Write> {
    builder: tar::Builder<W>,
    epoch: Option<i64>,
    /// For hard-linked inodes, (device, inode) → the tar path written first.
    first_link_path: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> LayerTarWriter<W> {
    fn write_dir(&mut self, dir: &Path, prefix: &[u8], opaque: bool) -> Result<()> {
        for child in list_children(dir, opaque)? {
            let mut tar_path = prefix.to_vec();
            tar_path.extend_from_slice(&child.tar_name);
            let is_opaque = self.write_entry(&child, &tar_path)?;
            if let Kind::Dir = child.kind {
                self.write_dir(&child.path, &tar_path, is_opaque)?;
            }
        }
        Ok(())
    }

    /// Writes one entry; for a directory, returns whether it is opaque.
    fn write_entry(&mut self, child: &Child, tar_path: &[u8]) -> Result<bool> {
        let path = &child.path;
        let mut header = self.header_for(&child.meta);
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let mut opaque = false;

        match child.kind {
            Kind::Whiteout | Kind::OpaqueMarker => {
                // Whiteouts carry no metadata of their own worth keeping.
                header.set_mode(0);
                header.set_uid(0);
                header.set_gid(0);
                header.set_entry_type(EntryType::Regular);
                set_path(&mut header, &mut pax, tar_path);
                return self.append(header, pax, io::empty(), path).map(|_| false);
            }
            _ => {}
        }

        let xattrs =
            xattr::list(path).map_err(|e| layer_err(path, format!("cannot read xattrs: {e}")))?;
        for (name, value) in xattrs {
            if OPAQUE_XATTRS.contains(&name.as_str()) {
                opaque = value == b"y";
            }
            if SKIPPED_XATTR_PREFIXES.iter().any(|p| name.starts_with(p)) {
                continue;
            }
            pax.push((format!("SCHILY.xattr.{name}"), value));
        }
        set_path(&mut header, &mut pax, tar_path);

        if !matches!(child.kind, Kind::Dir) && child.meta.nlink() > 1 {
            let key = (child.meta.dev(), child.meta.ino());
            if let Some(target) = self.first_link_path.get(&key) {
                header.set_entry_type(EntryType::Link);
                set_link_name(&mut header, &mut pax, &target.clone());
                return self.append(header, pax, io::empty(), path).map(|_| false);
            }
            self.first_link_path.insert(key, tar_path.to_vec());
        }

        match child.kind {
            Kind::Dir => {
                header.set_entry_type(EntryType::Directory);
                self.append(header, pax, io::empty(), path)?;
            }
            Kind::Symlink => {
                header.set_entry_type(EntryType::Symlink);
                let target = fs::read_link(path)
                    .map_err(|e| layer_err(path, format!("cannot read link: {e}")))?;
                set_link_name(&mut header, &mut pax, target.as_os_str().as_bytes());
                self.append(header, pax, io::empty(), path)?;
            }
            Kind::Special(entry_type) => {
                header.set_entry_type(entry_type);
                if entry_type != EntryType::Fifo {
                    let rdev = child.meta.rdev();
                    set_device(
                        &mut header,
                        rustix::fs::major(rdev),
                        rustix::fs::minor(rdev),
                    );
                }
                self.append(header, pax, io::empty(), path)?;
            }
            Kind::File => {
                header.set_entry_type(EntryType::Regular);
                let size = child.meta.len();
                header.set_size(size);
                let file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(path)
                    .map_err(|e| layer_err(path, format!("cannot open: {e}")))?;
                // Small files get small buffers: a layer may hold many of them.
                let reader = BufReader::with_capacity(
                    (size as usize).clamp(512, READ_BUFFER),
                    ExactReader {
                        inner: file.take(size),
                        remaining: size,
                    },
                );
                self.append(header, pax, reader, path)?;
            }
            Kind::Whiteout | Kind::OpaqueMarker => unreachable!("handled above"),
        }
        Ok(opaque)
    }

    fn header_for(&self, meta: &Metadata) -> Header {
        let mut header = Header::new_ustar();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(u64::from(meta.uid()));
        header.set_gid(u64::from(meta.gid()));
        header.set_mtime(clamp_mtime(meta.mtime(), self.epoch));
        header.set_size(0);
        set_device(&mut header, 0, 0);
        header
    }

    fn append(
        &mut self,
        mut header: Header,
        mut pax: Vec<(String, Vec<u8>)>,
        data: impl Read,
        path: &Path,
    ) -> Result<()> {
        let io_err = |e: io::Error| layer_err(path, e.to_string());
        if !pax.is_empty() {
            pax.sort();
            self.builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(io_err)?;
        }
        header.set_cksum();
        self.builder.append(&header, data).map_err(io_err)
    }
}

/// Reads a directory's children, sorted by their tar names.
fn list_children(dir: &Path, opaque: bool) -> Result<Vec<Child>> {
    let read_dir =
        fs::read_dir(dir).map_err(|e| layer_err(dir, format!("cannot list directory: {e}")))?;
    let mut children = Vec::new();
    let mut has_opaque_file = false;
    for entry in read_dir {
        let entry = entry.map_err(|e| layer_err(dir, format!("cannot list directory: {e}")))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)
            .map_err(|e| layer_err(&path, format!("cannot stat: {e}")))?;
        let name = entry.file_name();
        has_opaque_file |= name.as_bytes() == OPAQUE_WHITEOUT.as_bytes();
        let Some(kind) = classify(&path, &meta)? else {
            continue;
        };
        let tar_name = tar_name(&name, &kind);
        children.push(Child {
            tar_name,
            path,
            meta,
            kind,
        });
    }
    // A snapshot may already hold a `.wh..wh..opq` file (written by a tool
    // that could not set xattrs); one marker is enough.
    if opaque && !has_opaque_file {
        let meta =
            fs::symlink_metadata(dir).map_err(|e| layer_err(dir, format!("cannot stat: {e}")))?;
        children.push(Child {
            tar_name: OPAQUE_WHITEOUT.as_bytes().to_vec(),
            path: dir.to_path_buf(),
            meta,
            kind: Kind::OpaqueMarker,
        });
    }
    children.sort_by(|a, b| a.tar_name.cmp(&b.tar_name));
    Ok(children)
}

fn tar_name(name: &OsStr, kind: &Kind) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 5);
    if let Kind::Whiteout = kind {
        out.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    if let Kind::Dir = kind {
        out.push(b'/');
    }
    out
}

/// What a directory entry becomes in the tar; `None` for what a tar cannot
/// hold (sockets), which is skipped as image builders do.
fn classify(path: &Path, meta: &Metadata) -> Result<Option<Kind>> {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_file() {
        if meta.len() == 0 && is_xattr_whiteout(path)? {
            Kind::Whiteout
        } else {
            Kind::File
        }
    } else if ft.is_char_device() {
        if meta.rdev() == 0 {
            Kind::Whiteout
        } else {
            Kind::Special(EntryType::Char)
        }
    } else if ft.is_block_device() {
        Kind::Special(EntryType::Block)
    } else if ft.is_fifo() {
        Kind::Special(EntryType::Fifo)
    } else {
        return Ok(None);
    };
    Ok(Some(kind))
}

fn is_xattr_whiteout(path: &Path) -> Result<bool> {
    for name in WHITEOUT_XATTRS {
        if xattr::get(path, name)
            .map_err(|e| layer_err(path, format!("cannot read xattrs: {e}")))?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn clamp_mtime(mtime: i64, epoch: Option<i64>) -> u64 {
    let clamped = match epoch {
        Some(epoch) if mtime > epoch => epoch,
        _ => mtime,
    };
    // Before-1970 times cannot be written in a ustar header.
    clamped.max(0) as u64
}

fn set_device(header: &mut Header, major: u32, minor: u32) {
    // Both fields exist in a ustar header, so these cannot fail.
    let _ = header.set_device_major(major);
    let _ = header.set_device_minor(minor);
}

/// Puts `path` in the ustar name (and prefix) fields, or, when it does not
/// fit, in a PAX `path` record with a truncated copy in the header.
fn set_path(header: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, path: &[u8]) {
    let ustar = header.as_ustar_mut().expect("header is ustar");
    if path.len() <= ustar.name.len() {
        ustar.name[..path.len()].copy_from_slice(path);
        return;
    }
    if let Some((prefix, name)) = split_ustar_path(path, ustar.prefix.len(), ustar.name.len()) {
        ustar.prefix[..prefix.len()].copy_from_slice(prefix);
        ustar.name[..name.len()].copy_from_slice(name);
        return;
    }
    let n = ustar.name.len();
    ustar.name.copy_from_slice(&path[..n]);
    pax.push(("path".to_string(), path.to_vec()));
}

/// Splits a long path at a `/` into a ustar prefix and name, if it can.
fn split_ustar_path(path: &[u8], max_prefix: usize, max_name: usize) -> Option<(&[u8], &[u8])> {
    // Ignore a directory's trailing slash when looking for the split point:
    // the name part must not be empty.
    let searchable = path.len().saturating_sub(1);
    path[..searchable]
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .find(|(prefix, name)| {
            prefix.len() <= max_prefix && !name.is_empty() && name.len() <= max_name
        })
}

fn set_link_name(header: &mut Header, pax: &mut Vec<(String, Vec<u8>)>, target: &[u8]) {
    let ustar = header.as_ustar_mut().expect("header is ustar");
    if target.len() <= ustar.linkname.len() {
        ustar.linkname[..target.len()].copy_from_slice(target);
    } else {
        let n = ustar.linkname.len();
        ustar.linkname.copy_from_slice(&target[..n]);
        pax.push(("linkpath".to_string(), target.to_vec()));
    }
}

fn layer_err(path: &Path, reason: String) -> StoreError {
    StoreError::Layer {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads exactly the size the header promised: a file that shrank while it was
/// being read would otherwise leave a tar whose entries are misaligned.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "file shrank while being read ({} bytes missing)",
                    self.remaining
                ),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
