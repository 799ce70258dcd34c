//! [`Rootfs`]: an image's file system as a stack of snapshot directories, read
//! through the merged view (whiteouts and opaque directories honoured).

use std::io::Read;

use std::path::PathBuf;

use super::error::{FileOpError, Result};
use super::fsio::EntryKind;
use super::resolve::resolve;
use super::tree::{LayeredTree, Node};

/// An image file system: snapshot directories, bottom → top, each holding one
/// layer's diff in overlayfs form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rootfs {
    pub layers: Vec<PathBuf>,
}

/// Metadata of one entry of a [`Rootfs`], as `lstat` would report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// Permission bits plus setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Modification time: seconds and nanoseconds since the Unix epoch.
    pub mtime: (i64, u32),
    /// The target of a symbolic link.
    pub link_target: Option<String>,
}

impl Rootfs {
    /// The file system of `FROM scratch`.
    pub fn empty() -> Self {
        Rootfs::default()
    }

    pub(crate) fn tree(&self) -> LayeredTree<'static> {
        LayeredTree::image(self.layers.clone())
    }

    /// Metadata of `path` (absolute, inside the image) without following a symlink
    /// in last position; symlinks before it are followed inside the image, as
    /// `lstat(2)` would. `None` if nothing is there.
    pub fn stat(&self, path: &str) -> Result<Option<Entry>> {
        let tree = self.tree();
        let resolved = resolve(&tree, path.as_bytes(), false)?;
        let Some(node) = tree.lookup(&resolved)? else {
            return Ok(None);
        };
        let link_target = match node.attrs.kind {
            EntryKind::Symlink => {
                Some(String::from_utf8_lossy(&tree.read_link(&node)?).into_owned())
            }
            _ => None,
        };
        let a = &node.attrs;
        Ok(Some(Entry {
            kind: a.kind,
            mode: a.mode,
            uid: a.uid,
            gid: a.gid,
            size: a.size,
            mtime: (a.mtime.tv_sec, a.mtime.tv_nsec as u32),
            link_target,
        }))
    }

    /// Resolves `path` following symlinks inside the image root: an absolute or
    /// `..` link target can never lead out of it. Returns the absolute image path.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Result<String> {
        Ok(resolve(&self.tree(), path.as_bytes(), follow_last)?.display())
    }

    /// The content of a regular file (symlinks followed inside the image), or
    /// `None` if the path does not exist.
    pub fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let tree = self.tree();
        let Some(node) = self.lookup_followed(&tree, path)? else {
            return Ok(None);
        };
        if node.attrs.kind != EntryKind::File {
            return Err(FileOpError::NotAFile {
                path: node.path.display(),
            });
        }
        let mut content = Vec::new();
        let mut file = tree.open_file(&node)?;
        file.read_to_end(&mut content)
            .map_err(|e| FileOpError::io("read", tree.host_path(&node).unwrap_or_default(), e))?;
        Ok(Some(content))
    }

    /// The names in a directory of the merged view, sorted.
    pub fn read_dir(&self, path: &str) -> Result<Vec<String>> {
        let tree = self.tree();
        let node = self
            .lookup_followed(&tree, path)?
            .ok_or_else(|| FileOpError::NotFound {
                path: path.to_owned(),
            })?;
        if !node.is_dir() {
            return Err(FileOpError::NotADirectory {
                path: node.path.display(),
            });
        }
        Ok(tree
            .children(&node)?
            .iter()
            .filter_map(|c| c.path.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn lookup_followed(&self, tree: &LayeredTree<'_>, path: &str) -> Result<Option<Node>> {
        let resolved = resolve(tree, path.as_bytes(), true)?;
        tree.lookup(&resolved)
    }
}
