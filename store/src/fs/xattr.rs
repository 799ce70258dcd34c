//! Reading extended attributes of snapshot entries without following symlinks.

use std::io;
use std::path::Path;

/// All extended attributes of `path` (not following a final symlink), sorted
/// by name so that whatever is built from them is deterministic. A filesystem
/// without xattr support simply yields none.
pub(crate) fn list(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let names = loop {
        let size = match rustix::fs::llistxattr_query(path) {
            Ok(size) => size,
            Err(e) if is_unsupported(e) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                break buf;
            }
            // The list grew between the two calls: ask again.
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut attrs = Vec::new();
    for raw in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = String::from_utf8_lossy(raw).into_owned();
        if let Some(value) = get(path, &name)? {
            attrs.push((name, value));
        }
    }
    attrs.sort();
    Ok(attrs)
}

/// One attribute's value, or `None` when it is absent.
pub(crate) fn get(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    loop {
        let size = match rustix::fs::lgetxattr_query(path, name) {
            Ok(size) => size,
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(e) if is_unsupported(e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut value = vec![0u8; size];
        match rustix::fs::lgetxattr(path, name, &mut value[..]) {
            Ok(n) => {
                value.truncate(n);
                return Ok(Some(value));
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

fn is_unsupported(e: rustix::io::Errno) -> bool {
    e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOTSUP
}
