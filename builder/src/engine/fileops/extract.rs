//! ADD's local archives: detection by content and confined extraction.
//!
//! A regular file is an archive when, after undoing any gzip, bzip2, xz or zstd
//! compression (recognised by magic bytes, never by name), it starts with a
//! valid tar header. Extraction writes every member below the destination:
//! absolute member names are taken relative to it, a `..` that would climb out
//! of it is an error, and a member whose parent path leads outside it through a
//! symlink (one from the image or one the archive created earlier) is an error
//! too. Members replace whatever the destination held at their path.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

use rbuild_store::expansion::{ExpansionLimits, Meter};
use rustix::fs::Timespec;

use super::error::{FileOpError, Result};
use super::fsio::EntryKind;
use super::imagepath::{split_bytes, ImagePath};
use super::output::{Clash, Meta, NewDir, OutputLayer};
use super::tree::{LayeredTree, Node};

const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Whether a regular file of `tree` is a (possibly compressed) tar archive.
pub(crate) fn is_archive(tree: &LayeredTree<'_>, node: &Node) -> Result<bool> {
    if node.attrs.kind != EntryKind::File {
        return Ok(false);
    }
    let file = tree.open_file(node)?;
    let Ok(reader) = decompressed(file) else {
        return Ok(false);
    };
    let mut archive = tar::Archive::new(reader);
    let first = archive
        .entries()
        .ok()
        .and_then(|mut entries| entries.next());
    Ok(matches!(first, Some(Ok(_))))
}

/// Extracts the archive `node` of `tree` into the directory `dest` (resolved,
/// existing) of the output layer. `owner` forces the owner of every member.
pub(crate) fn extract(
    out: &mut OutputLayer,
    tree: &LayeredTree<'_>,
    node: &Node,
    archive_name: &str,
    dest: &ImagePath,
    owner: Option<(u32, u32)>,
) -> Result<u64> {
    let too_large = |error| FileOpError::ArchiveTooLarge { archive: archive_name.to_owned(), error };
    let limits = ExpansionLimits::from_env().map_err(too_large)?;
    let file = tree.open_file(node)?;
    let compressed = file.metadata().map_err(|source| FileOpError::Archive { archive: archive_name.to_owned(), source })?.len();
    let meter = limits.meter(compressed);
    // A read error may be a limit passed inside the decompressed stream.
    let archive_err = |source: io::Error| match meter.exceeded() {
        Some(error) => too_large(error),
        None => FileOpError::Archive { archive: archive_name.to_owned(), source },
    };
    let reader = meter.reader(decompressed(file).map_err(archive_err)?);
    let mut archive = tar::Archive::new(reader);
    // Writing a member's data reads the stream too: a limit passed there
    // surfaces as a write error, and is reported as the limit.
    let members = extract_members(out, &mut archive, archive_name, dest, owner, &meter, archive_err);
    members.map_err(|e| meter.exceeded().map_or(e, too_large))
}

/// The members of `archive`, placed under `dest`; how many there were.
fn extract_members<R: Read>(
    out: &mut OutputLayer,
    archive: &mut tar::Archive<R>,
    archive_name: &str,
    dest: &ImagePath,
    owner: Option<(u32, u32)>,
    meter: &Meter,
    archive_err: impl Fn(io::Error) -> FileOpError,
) -> Result<u64> {
    let too_large = |error| FileOpError::ArchiveTooLarge { archive: archive_name.to_owned(), error };
    let mut count = 0;
    for entry in archive.entries().map_err(&archive_err)? {
        let mut entry = entry.map_err(&archive_err)?;
        meter.entry().map_err(too_large)?;
        let member = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let member_err = |reason: &str| FileOpError::ArchiveMember {
            archive: archive_name.to_owned(),
            member: member.clone(),
            reason: reason.to_owned(),
        };
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let rel = member_path(&entry.path_bytes())
            .ok_or_else(|| member_err("escapes the destination with '..'"))?;
        let outside = || member_err("leads outside the destination through a symbolic link");
        let Some(target) = place_member(out, dest, &rel, outside)? else {
            // The archive's entry for the destination itself.
            continue;
        };
        if kind.is_hard_link() {
            // A hard link shares its target's metadata; its header's is unused.
            let link = entry
                .link_name_bytes()
                .ok_or_else(|| member_err("is a hard link without a target"))?;
            let existing = hardlink_target(out, dest, &link).ok_or_else(|| {
                member_err("links to a file that is not in the archive or outside the destination")
            })?;
            out.prepare_non_dir(&target, Clash::Replace)?;
            out.write_hardlink(&target, &existing)?;
            count += 1;
            continue;
        }
        let meta = member_meta(&mut entry, owner).map_err(&archive_err)?;
        if kind.is_dir() {
            if out.prepare_dir(&target, Clash::Replace)? {
                out.create_dir(&target, &meta)?;
            } else {
                out.set_meta(&target, &meta, EntryKind::Directory)?;
            }
        } else if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
            out.prepare_non_dir(&target, Clash::Replace)?;
            out.write_file(&target, &mut entry, &meta)?;
        } else if kind.is_symlink() {
            let link = entry
                .link_name_bytes()
                .ok_or_else(|| member_err("is a symbolic link without a target"))?;
            out.prepare_non_dir(&target, Clash::Replace)?;
            out.write_symlink(&target, &link, &meta)?;
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let header = entry.header();
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            let kind = if kind.is_character_special() {
                EntryKind::CharDevice
            } else if kind.is_block_special() {
                EntryKind::BlockDevice
            } else {
                EntryKind::Fifo
            };
            out.prepare_non_dir(&target, Clash::Replace)?;
            out.write_special(&target, kind, rustix::fs::makedev(major, minor), &meta)?;
        } else {
            return Err(member_err("has a type rbuild cannot extract"));
        }
        count += 1;
    }
    Ok(count)
}

/// A member's path below the destination; `None` if `..` would leave it.
fn member_path(name: &[u8]) -> Option<ImagePath> {
    let mut out = ImagePath::root();
    for part in split_bytes(name) {
        if part == b".." {
            out.pop()?;
        } else {
            out.push(std::os::unix::ffi::OsStrExt::from_bytes(part));
        }
    }
    Some(out)
}

/// Where the member `rel` goes: its parent resolved in the merged view (links
/// followed) and created if missing; `None` for the destination itself. A
/// parent that resolves outside the destination is the error `outside`.
fn place_member(
    out: &mut OutputLayer,
    dest: &ImagePath,
    rel: &ImagePath,
    outside: impl FnOnce() -> FileOpError,
) -> Result<Option<ImagePath>> {
    let Some(name) = rel.file_name() else {
        return Ok(None);
    };
    let parent = out.resolve_path(&below(dest, &rel.parent()), true)?;
    if !parent.starts_with(dest) {
        return Err(outside());
    }
    // Parents missing from the archive are made like implicit directories:
    // 0755, owned by root.
    out.mkdir_all(&parent, &NewDir::default_now())?;
    Ok(Some(parent.join(name)))
}

/// `rel` appended to `base`.
fn below(base: &ImagePath, rel: &ImagePath) -> ImagePath {
    let mut out = base.clone();
    for part in rel.components() {
        out.push(part);
    }
    out
}

/// The file a hard link member points to: a path of the archive (relative to
/// the destination) already written into this layer.
fn hardlink_target(out: &OutputLayer, dest: &ImagePath, link: &[u8]) -> Option<ImagePath> {
    let rel = member_path(link)?;
    let name = rel.file_name()?.to_owned();
    let parent = out.resolve_path(&below(dest, &rel.parent()), true).ok()?;
    if !parent.starts_with(dest) {
        return None;
    }
    let target = parent.join(&name);
    let node = out.lookup(&target).ok()??;
    (out.holds(&node) && !node.is_dir()).then_some(target)
}

/// The metadata of a member from its header and PAX records.
fn member_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    owner: Option<(u32, u32)>,
) -> io::Result<Meta> {
    let header = entry.header();
    let mode = header.mode()? & 0o7777;
    let mut uid = header.uid()?;
    let mut gid = header.gid()?;
    let mut mtime = Timespec {
        tv_sec: header.mtime()? as i64,
        tv_nsec: 0,
    };
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            match key {
                "uid" => uid = parse_number(value).unwrap_or(uid),
                "gid" => gid = parse_number(value).unwrap_or(gid),
                "mtime" => mtime = parse_pax_time(value).unwrap_or(mtime),
                _ => {
                    if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                        xattrs.push((OsString::from(name), value.to_vec()));
                    }
                }
            }
        }
    }
    let to_id = |id: u64| {
        u32::try_from(id)
            .ok()
            .filter(|&i| i != u32::MAX)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, format!("id {id} out of range"))
            })
    };
    let (uid, gid) = match owner {
        Some(o) => o,
        None => (to_id(uid)?, to_id(gid)?),
    };
    Ok(Meta {
        mode,
        uid,
        gid,
        atime: mtime,
        mtime,
        xattrs,
    })
}

fn parse_number(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A PAX time: decimal seconds with an optional fraction.
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
    Some(Timespec {
        tv_sec: secs.parse().ok()?,
        tv_nsec: digits.parse().ok()?,
    })
}

/// The archive content with its compression, if any, undone.
fn decompressed(file: File) -> io::Result<Box<dyn Read>> {
    let mut reader = BufReader::new(file);
    let magic = reader.fill_buf()?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if magic.starts_with(b"BZh") {
        Box::new(bzip2::read::MultiBzDecoder::new(reader))
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Box::new(xz2::read::XzDecoder::new_multi_decoder(reader))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader)?)
    } else {
        Box::new(reader)
    })
}
