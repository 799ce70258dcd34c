//! Taking the sandbox's own mount points back out of the diff.
//!
//! To mount `/etc/hosts` on an image without one, the sandbox creates an
//! empty file there, which lands in the upper directory, and its parent
//! directories get copied up. After the run, stubs that are still empty are
//! removed (children first) with their parent's timestamps kept, as BuildKit
//! does; then copied-up directories that ended up empty and unchanged are
//! removed too, so an untouched `/etc` does not appear in the layer.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{AtFlags, Timespec, Timestamps, CWD};

use super::error::SandboxError;
use super::protocol::{Ancestor, Stub};

/// The extended attributes by which overlayfs marks an opaque directory.
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

pub(crate) fn remove_stubs(
    upper: &Path,
    stubs: &[Stub],
    ancestors: &[Ancestor],
) -> Result<(), SandboxError> {
    for stub in stubs.iter().rev() {
        let path = upper.join(OsStr::from_bytes(&stub.rel));
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SandboxError::io("inspect mount point", path, e)),
        };
        let unused = if stub.dir {
            meta.is_dir() && is_empty_dir(&path)?
        } else {
            meta.is_file() && meta.len() == 0
        };
        if unused {
            remove_keeping_parent_times(&path, stub.dir)?;
        }
    }

    // Deepest first, so a parent is looked at after its children.
    let mut by_depth: BTreeMap<(usize, Vec<u8>), &Ancestor> = BTreeMap::new();
    for a in ancestors {
        let depth = a.rel.iter().filter(|&&b| b == b'/').count();
        by_depth.insert((usize::MAX - depth, a.rel.clone()), a);
    }
    for ancestor in by_depth.values() {
        if ancestor.rel.is_empty() {
            continue;
        }
        let path = upper.join(OsStr::from_bytes(&ancestor.rel));
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(SandboxError::io("inspect", path, e)),
        };
        let unchanged = meta.is_dir()
            && meta.mode() & 0o7777 == ancestor.mode
            && meta.uid() == ancestor.uid
            && meta.gid() == ancestor.gid
            && !is_opaque(&path)
            && is_empty_dir(&path)?;
        if unchanged {
            remove_keeping_parent_times(&path, true)?;
        }
    }
    Ok(())
}

fn is_empty_dir(path: &Path) -> Result<bool, SandboxError> {
    let mut entries = fs::read_dir(path).map_err(|e| SandboxError::io("read", path, e))?;
    Ok(entries.next().is_none())
}

fn is_opaque(path: &Path) -> bool {
    OPAQUE_XATTRS.iter().any(|name| {
        let mut value = [0u8; 8];
        matches!(rustix::fs::lgetxattr(path, *name, &mut value), Ok(n) if &value[..n] == b"y")
    })
}

/// Removes `path`, then puts its parent's access and modification times back,
/// so that removing the stub is not itself a change (BuildKit keeps them for
/// reproducible layers).
fn remove_keeping_parent_times(path: &Path, dir: bool) -> Result<(), SandboxError> {
    let parent = path.parent().map(Path::to_path_buf);
    let times = parent
        .as_ref()
        .and_then(|p| rustix::fs::statat(CWD, p, AtFlags::SYMLINK_NOFOLLOW).ok())
        .map(|st| Timestamps {
            last_access: Timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: Timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec as _,
            },
        });
    let removed = if dir {
        fs::remove_dir(path)
    } else {
        fs::remove_file(path)
    };
    removed.map_err(|e| SandboxError::io("remove mount point", path, e))?;
    if let (Some(parent), Some(times)) = (parent, times) {
        rustix::fs::utimensat(CWD, &parent, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| SandboxError::io("restore the times of", parent, e.into()))?;
    }
    Ok(())
}
