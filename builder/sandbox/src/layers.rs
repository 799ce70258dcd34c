//! Flattening a stack of snapshot directories into one directory by copying,
//! with overlayfs's rules: a whiteout (a `0:0` character device, or an empty
//! file with an `overlay.whiteout` attribute) deletes the name below it, an
//! opaque directory hides everything below it, and anything else replaces
//! what is below, except that directories merge.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::error::SandboxError;
use super::fscopy::{self, Links};

const OPAQUE_XATTRS: [&[u8]; 2] = [b"trusted.overlay.opaque", b"user.overlay.opaque"];
const WHITEOUT_XATTRS: [&[u8]; 2] = [b"trusted.overlay.whiteout", b"user.overlay.whiteout"];

/// Copies `layers` (bottom → top) into the existing empty directory `dest`.
pub(crate) fn merge(
    layers: &[impl AsRef<Path>],
    dest: &Path,
    warnings: &mut Vec<String>,
) -> Result<(), SandboxError> {
    for layer in layers {
        let layer = layer.as_ref();
        // Hard links are kept within a layer; across layers they are distinct
        // files already.
        let mut links = Links::new();
        apply_dir(layer, dest, &mut links, warnings)
            .map_err(|e| SandboxError::io("copy layer", layer, e))?;
    }
    Ok(())
}

fn apply_dir(
    src: &Path,
    dst: &Path,
    links: &mut Links,
    warnings: &mut Vec<String>,
) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(src)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let s = src.join(&name);
        let d = dst.join(&name);
        let meta = fs::symlink_metadata(&s)?;
        let existing = fs::symlink_metadata(&d).ok();
        if is_whiteout(&s, &meta)? {
            if let Some(existing) = existing {
                remove(&d, &existing)?;
            }
            continue;
        }
        if meta.is_dir() {
            match existing {
                Some(e) if e.is_dir() && !is_opaque(&s)? => {}
                Some(e) => {
                    remove(&d, &e)?;
                    fs::create_dir(&d)?;
                }
                None => fs::create_dir(&d)?,
            }
            apply_dir(&s, &d, links, warnings)?;
            fscopy::apply_metadata(&s, &d, &meta)?;
        } else {
            if let Some(existing) = existing {
                remove(&d, &existing)?;
            }
            if let Some(warning) = fscopy::copy_entry(&s, &d, &meta, links)? {
                warnings.push(warning);
            }
        }
    }
    Ok(())
}

fn remove(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

pub(crate) fn is_whiteout(path: &Path, meta: &fs::Metadata) -> io::Result<bool> {
    if meta.file_type().is_char_device() && meta.rdev() == 0 {
        return Ok(true);
    }
    if meta.is_file() && meta.len() == 0 {
        for name in WHITEOUT_XATTRS {
            if fscopy::get_xattr(path, name)?.is_some() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn is_opaque(path: &Path) -> io::Result<bool> {
    for name in OPAQUE_XATTRS {
        if fscopy::get_xattr(path, name)?.as_deref() == Some(b"y") {
            return Ok(true);
        }
    }
    Ok(false)
}
