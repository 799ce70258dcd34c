//! Helpers for the file operation tests: snapshot stacks and contexts built in
//! temporary directories, with whiteouts and opaque markers made the way the store
//! makes them.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode};
use tempfile::TempDir;

use super::rootfs::Rootfs;
use super::tree::LayeredTree;

/// A stack of layer directories, bottom first.
pub(crate) struct Layers {
    _tmp: TempDir,
    pub dirs: Vec<PathBuf>,
}

impl Layers {
    pub(crate) fn new(n: usize) -> Self {
        let tmp = TempDir::new().unwrap();
        let dirs = (0..n)
            .map(|i| {
                let d = tmp.path().join(format!("layer{i}"));
                std::fs::create_dir(&d).unwrap();
                d
            })
            .collect();
        Layers { _tmp: tmp, dirs }
    }

    pub(crate) fn path(&self, layer: usize, rel: &str) -> PathBuf {
        self.dirs[layer].join(rel)
    }

    pub(crate) fn dir(&self, layer: usize, rel: &str) -> PathBuf {
        let p = self.path(layer, rel);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub(crate) fn file(&self, layer: usize, rel: &str, content: &str) -> PathBuf {
        write_file(&self.path(layer, rel), content.as_bytes(), 0o644)
    }

    pub(crate) fn symlink(&self, layer: usize, rel: &str, target: &str) {
        let p = self.path(layer, rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    pub(crate) fn whiteout(&self, layer: usize, rel: &str) {
        let p = self.path(layer, rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0),
            0,
        )
        .unwrap();
    }

    pub(crate) fn opaque(&self, layer: usize, rel: &str) {
        let p = self.dir(layer, rel);
        rustix::fs::lsetxattr(
            &p,
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }

    pub(crate) fn tree(&self) -> LayeredTree<'static> {
        LayeredTree::image(self.dirs.clone())
    }

    pub(crate) fn rootfs(&self) -> Rootfs {
        Rootfs {
            layers: self.dirs.clone(),
        }
    }
}

/// Writes a file (creating its parents) with the given mode.
pub(crate) fn write_file(path: &Path, content: &[u8], mode: u32) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_path_buf()
}

/// Sets a file's mtime (seconds).
pub(crate) fn set_mtime(path: &Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(secs, 0);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

/// The mtime (seconds) of a host path, not following links.
pub(crate) fn mtime(path: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).unwrap().mtime()
}

/// Mode bits (0o7777) of a host path, not following links.
pub(crate) fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// uid and gid of a host path, not following links.
pub(crate) fn owner(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

/// Every path below `root`, relative and sorted, directories marked with a '/'.
pub(crate) fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}
