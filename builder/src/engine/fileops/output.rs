//! [`OutputLayer`]: writes one file operation's diff into a fresh layer directory.
//!
//! The layer is seen stacked on the target image, so every decision (does the
//! destination exist, is it a directory, which parent directories are there)
//! is taken on the merged view, while every write lands in the output directory
//! only. Writes go through directory descriptors opened component by component
//! with `O_NOFOLLOW`, so even a symlink that appeared in the output directory
//! behind rbuild's back could not redirect them. Directories that a write passes
//! through are copied up from the lower layers with their metadata, so the layer
//! tar carries correct parent entries.
//!
//! Directory times are applied in [`OutputLayer::finish`], because creating an
//! entry inside a directory updates the directory's mtime.
//!
//! A copy writes many entries into one directory in a row, so the layer keeps
//! the directory it last wrote into open, and the merged-view node of the
//! directory it last looked into: a file then costs a handful of system calls
//! instead of a walk from the root on every layer. Both are forgotten when
//! the layer changes under them (a removal, or a directory made at or above
//! them).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};

use super::error::{FileOpError, Result};
use super::fsio::{self, EntryKind};
use super::imagepath::ImagePath;
use super::resolve::{resolve, resolve_path};
use super::rootfs::Rootfs;
use super::tree::{LayeredTree, Node};

/// Metadata for a directory that a file operation has to create.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewDir {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Timespec,
}

impl NewDir {
    /// A plain directory: 0755, root-owned, stamped now.
    pub(crate) fn default_now() -> Self {
        NewDir {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: fsio::now(),
        }
    }
}

/// Metadata to give an entry written into the layer.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

/// What to do when the destination holds an entry of another type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clash {
    /// COPY: refuse to turn a directory into a file or the other way round.
    Error,
    /// Archive extraction: the archive's entry wins.
    Replace,
}

/// The output layer of one file operation, stacked on its target image.
pub(crate) struct OutputLayer {
    view: LayeredTree<'static>,
    top: usize,
    out_dir: PathBuf,
    root_fd: OwnedFd,
    dir_times: BTreeMap<ImagePath, (Timespec, Timespec)>,
    /// The directory of this layer opened last, and its path.
    open_dir: RefCell<Option<(ImagePath, Arc<OwnedFd>)>>,
    /// The merged-view directory looked into last.
    looked_in: RefCell<Option<Node>>,
}

impl OutputLayer {
    /// `out_dir` must be an existing (normally empty) directory.
    pub(crate) fn new(target: &Rootfs, out_dir: &Path) -> Result<Self> {
        let root_fd = fsio::open_dir(out_dir)
            .map_err(|e| FileOpError::io("open output directory", out_dir, e))?;
        let mut layers = target.layers.clone();
        layers.push(out_dir.to_path_buf());
        let top = layers.len() - 1;
        Ok(OutputLayer {
            view: LayeredTree::image(layers),
            top,
            out_dir: out_dir.to_path_buf(),
            root_fd,
            dir_times: BTreeMap::new(),
            open_dir: RefCell::new(None),
            looked_in: RefCell::new(None),
        })
    }

    pub(crate) fn lookup(&self, path: &ImagePath) -> Result<Option<Node>> {
        let Some(name) = path.file_name() else {
            return self.view.lookup(path);
        };
        let parent = path.parent();
        let cached = self
            .looked_in
            .borrow()
            .as_ref()
            .filter(|dir| dir.path == parent)
            .cloned();
        let dir = match cached {
            Some(dir) => dir,
            None => match self.view.lookup(&parent)? {
                Some(dir) if dir.is_dir() => {
                    *self.looked_in.borrow_mut() = Some(dir.clone());
                    dir
                }
                _ => return Ok(None),
            },
        };
        self.view.child(&dir, name)
    }

    /// Forgets the cached directory node when an entry at `path` is about to
    /// change: the node of `path` or of anything below it would be stale.
    fn forget_lookups_under(&self, path: &ImagePath) {
        let mut looked_in = self.looked_in.borrow_mut();
        if looked_in.as_ref().is_some_and(|dir| dir.path.starts_with(path)) {
            *looked_in = None;
        }
    }

    /// Resolves an image path in the merged view (see [`resolve`]).
    pub(crate) fn resolve(&self, path: &[u8], follow_last: bool) -> Result<ImagePath> {
        resolve(&self.view, path, follow_last)
    }

    /// [`OutputLayer::resolve`] for a split path.
    pub(crate) fn resolve_path(&self, path: &ImagePath, follow_last: bool) -> Result<ImagePath> {
        resolve_path(&self.view, path, follow_last)
    }

    /// Whether a node of the merged view is an entry written into this layer.
    pub(crate) fn holds(&self, node: &Node) -> bool {
        node.layer() == Some(self.top)
    }

    /// Creates `path` and its missing parents as directories made like `new`;
    /// existing ones are left as they are (but copied into the layer). Returns
    /// whether anything was created.
    pub(crate) fn mkdir_all(&mut self, path: &ImagePath, new: &NewDir) -> Result<bool> {
        // Already a directory of this layer, and so are its parents.
        if fsio::open_dir_beneath(&self.root_fd, path).is_ok() {
            return Ok(false);
        }
        let mut prefix = ImagePath::root();
        let mut created = false;
        for name in path.components() {
            prefix.push(name);
            created |= self.ensure_dir(&prefix, new)?;
        }
        Ok(created)
    }

    /// Makes `path` a directory of this layer: created like `new` when absent
    /// (returns `true`), copied up from a lower layer when it exists there, an
    /// error when something else is there. The parent must already be a
    /// directory of this layer or below it.
    pub(crate) fn ensure_dir(&mut self, path: &ImagePath, new: &NewDir) -> Result<bool> {
        if path.is_root() {
            return Ok(false);
        }
        match self.lookup(path)? {
            Some(node) if node.is_dir() => {
                if !self.holds(&node) {
                    self.copy_up_dir(&node)?;
                }
                Ok(false)
            }
            Some(_) => Err(FileOpError::NotADirectory {
                path: path.display(),
            }),
            None => {
                self.ensure_parent(path)?;
                let meta = Meta {
                    mode: new.mode,
                    uid: new.uid,
                    gid: new.gid,
                    atime: new.mtime,
                    mtime: new.mtime,
                    xattrs: Vec::new(),
                };
                self.make_dir(path, &meta)?;
                Ok(true)
            }
        }
    }

    /// Prepares `path` to receive a directory. Returns `true` when there was none
    /// (the caller then creates it with [`OutputLayer::create_dir`]); an existing
    /// directory is copied up and kept.
    pub(crate) fn prepare_dir(&mut self, path: &ImagePath, clash: Clash) -> Result<bool> {
        match self.lookup(path)? {
            Some(node) if node.is_dir() => {
                if !self.holds(&node) {
                    self.ensure_parent(path)?;
                    self.copy_up_dir(&node)?;
                }
                Ok(false)
            }
            Some(node) => match clash {
                Clash::Error => Err(FileOpError::NotADirectory {
                    path: path.display(),
                }),
                Clash::Replace => {
                    self.ensure_parent(path)?;
                    if self.holds(&node) {
                        self.remove(path)?;
                    }
                    Ok(true)
                }
            },
            None => {
                self.ensure_parent(path)?;
                Ok(true)
            }
        }
    }

    /// Prepares `path` to receive a non-directory: whatever this layer already
    /// holds there is removed, a directory of the image is an error or replaced.
    pub(crate) fn prepare_non_dir(&mut self, path: &ImagePath, clash: Clash) -> Result<()> {
        self.ensure_parent(path)?;
        match self.lookup(path)? {
            None => Ok(()),
            Some(node) if node.is_dir() && clash == Clash::Error => {
                Err(FileOpError::ReplaceDirectory {
                    path: path.display(),
                })
            }
            // An entry of a lower layer is simply hidden by the new one.
            Some(node) if !self.holds(&node) => Ok(()),
            Some(_) => self.remove(path),
        }
    }

    /// Creates a directory (after [`OutputLayer::prepare_dir`] said there was none).
    pub(crate) fn create_dir(&mut self, path: &ImagePath, meta: &Meta) -> Result<()> {
        self.make_dir(path, meta)
    }

    /// Writes a regular file with the content of `reader`; returns the bytes written.
    /// Generic so that a `File` source keeps `io::copy`'s in-kernel copy path.
    pub(crate) fn write_file<R: Read + ?Sized>(
        &mut self,
        path: &ImagePath,
        reader: &mut R,
        meta: &Meta,
    ) -> Result<u64> {
        let (parent, name) = self.open_parent(path)?;
        let fd = rustix::fs::openat(
            &parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.err("create", path, e))?;
        let mut file = File::from(fd);
        let written = io::copy(reader, &mut file).map_err(|e| self.err("write", path, e))?;
        drop(file);
        self.apply_meta(&parent, name, path, meta, EntryKind::File)?;
        Ok(written)
    }

    /// Makes `path` another name of `existing`, a regular file outside this
    /// layer (in an earlier snapshot, which never changes).
    pub(crate) fn link_file(&mut self, path: &ImagePath, existing: &Path) -> Result<()> {
        let (parent, name) = self.open_parent(path)?;
        rustix::fs::linkat(rustix::fs::CWD, existing, &*parent, name, AtFlags::empty())
            .map_err(|e| self.err("link", path, e))
    }

    /// Creates a symbolic link; its target is data, never resolved here.
    pub(crate) fn write_symlink(
        &mut self,
        path: &ImagePath,
        target: &[u8],
        meta: &Meta,
    ) -> Result<()> {
        let (parent, name) = self.open_parent(path)?;
        rustix::fs::symlinkat(OsStr::from_bytes(target), &parent, name)
            .map_err(|e| self.err("create symlink", path, e))?;
        self.apply_meta(&parent, name, path, meta, EntryKind::Symlink)
    }

    /// Creates a hard link to `existing`, which must be a file of this layer.
    pub(crate) fn write_hardlink(&mut self, path: &ImagePath, existing: &ImagePath) -> Result<()> {
        let (old_parent, old_name) = self.open_parent(existing)?;
        let (parent, name) = self.open_parent(path)?;
        rustix::fs::linkat(&old_parent, old_name, &parent, name, AtFlags::empty())
            .map_err(|e| self.err("create hard link", path, e))
    }

    /// Creates a device node or a FIFO.
    pub(crate) fn write_special(
        &mut self,
        path: &ImagePath,
        kind: EntryKind,
        rdev: u64,
        meta: &Meta,
    ) -> Result<()> {
        let (parent, name) = self.open_parent(path)?;
        let file_type = match kind {
            EntryKind::CharDevice => FileType::CharacterDevice,
            EntryKind::BlockDevice => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        rustix::fs::mknodat(
            &parent,
            name,
            file_type,
            Mode::from_raw_mode(meta.mode & 0o777),
            rdev,
        )
        .map_err(|e| self.err("create device node", path, e))?;
        self.apply_meta(&parent, name, path, meta, kind)
    }

    /// Sets the metadata of an entry already in this layer.
    pub(crate) fn set_meta(
        &mut self,
        path: &ImagePath,
        meta: &Meta,
        kind: EntryKind,
    ) -> Result<()> {
        let (parent, name) = self.open_parent(path)?;
        self.apply_meta(&parent, name, path, meta, kind)
    }

    /// Sets only the times of a directory of this layer.
    pub(crate) fn set_dir_times(&mut self, path: &ImagePath, atime: Timespec, mtime: Timespec) {
        self.dir_times.insert(path.clone(), (atime, mtime));
    }

    /// Applies the recorded directory times; call once, after the last write.
    pub(crate) fn finish(self) -> Result<()> {
        for (path, (atime, mtime)) in &self.dir_times {
            if path.is_root() {
                continue;
            }
            let (parent, name) = self.open_parent(path)?;
            let times = Timestamps {
                last_access: *atime,
                last_modification: *mtime,
            };
            rustix::fs::utimensat(&parent, name, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.err("set times", path, e))?;
        }
        Ok(())
    }

    /// The host path of an entry of this layer (for messages and tests).
    pub(crate) fn host_path(&self, path: &ImagePath) -> PathBuf {
        self.out_dir.join(path.to_relative())
    }

    /// Copies the directories above `path` into this layer; creates missing ones
    /// as plain directories (callers create parents explicitly first, so this
    /// only matters for archive members whose parents are not in the archive).
    fn ensure_parent(&mut self, path: &ImagePath) -> Result<()> {
        let parent = path.parent();
        // Fast path: the directories of this layer are only ever made by the
        // steps above, parents first, so a parent present here has all of its
        // ancestors too.
        if parent.is_root() || self.open_dir_cached(&parent).is_ok() {
            return Ok(());
        }
        self.mkdir_all(&parent, &NewDir::default_now())?;
        Ok(())
    }

    fn copy_up_dir(&mut self, node: &Node) -> Result<()> {
        let xattrs = self.view.xattrs(node)?;
        let a = &node.attrs;
        let meta = Meta {
            mode: a.mode,
            uid: a.uid,
            gid: a.gid,
            atime: a.atime,
            mtime: a.mtime,
            xattrs,
        };
        self.make_dir(&node.path, &meta)
    }

    fn make_dir(&mut self, path: &ImagePath, meta: &Meta) -> Result<()> {
        let (parent, name) = self.open_parent(path)?;
        rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700))
            .map_err(|e| self.err("create directory", path, e))?;
        self.apply_meta(&parent, name, path, meta, EntryKind::Directory)
    }

    fn remove(&mut self, path: &ImagePath) -> Result<()> {
        let (parent, name) = self.open_parent(path)?;
        // The directory kept open may be the one removed, or inside it.
        let mut open_dir = self.open_dir.borrow_mut();
        if open_dir.as_ref().is_some_and(|(p, _)| p.starts_with(path)) {
            *open_dir = None;
        }
        drop(open_dir);
        fsio::remove_all_at(&*parent, name).map_err(|e| self.err("remove", path, e))?;
        self.dir_times.retain(|p, _| !p.starts_with(path));
        Ok(())
    }

    fn apply_meta(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        path: &ImagePath,
        meta: &Meta,
        kind: EntryKind,
    ) -> Result<()> {
        // chown first: it clears setuid/setgid bits that chmod then sets.
        rustix::fs::chownat(
            parent,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err("change owner of", path, e))?;
        if kind != EntryKind::Symlink {
            rustix::fs::chmodat(
                parent,
                name,
                Mode::from_raw_mode(meta.mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(|e| self.err("change mode of", path, e))?;
        }
        let host = self.host_path(path);
        for (key, value) in &meta.xattrs {
            // Best effort, like the reference builder: a file system or namespace
            // that refuses an attribute must not fail the build.
            let _ = rustix::fs::lsetxattr(&host, key.as_os_str(), value, XattrFlags::empty());
        }
        if kind == EntryKind::Directory {
            self.set_dir_times(path, meta.atime, meta.mtime);
        } else {
            let times = Timestamps {
                last_access: meta.atime,
                last_modification: meta.mtime,
            };
            rustix::fs::utimensat(parent, name, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| self.err("set times", path, e))?;
        }
        Ok(())
    }

    /// The directory of this layer above `path`, opened, and the last
    /// component of `path`. Every change to the layer goes through here.
    fn open_parent<'p>(&self, path: &'p ImagePath) -> Result<(Arc<OwnedFd>, &'p OsStr)> {
        let name = path
            .file_name()
            .ok_or_else(|| FileOpError::NotADirectory { path: "/".into() })?;
        self.forget_lookups_under(path);
        let parent = path.parent();
        let parent_fd = self
            .open_dir_cached(&parent)
            .map_err(|e| self.err("open directory", &parent, e))?;
        Ok((parent_fd, name))
    }

    /// Opens a directory of this layer, or returns the one opened last when
    /// it is the same.
    fn open_dir_cached(&self, path: &ImagePath) -> io::Result<Arc<OwnedFd>> {
        if let Some((open_path, fd)) = self.open_dir.borrow().as_ref() {
            if open_path == path {
                return Ok(Arc::clone(fd));
            }
        }
        let fd = Arc::new(fsio::open_dir_beneath(&self.root_fd, path)?);
        *self.open_dir.borrow_mut() = Some((path.clone(), Arc::clone(&fd)));
        Ok(fd)
    }

    fn err(&self, op: &'static str, path: &ImagePath, e: impl Into<io::Error>) -> FileOpError {
        FileOpError::io(op, self.host_path(path), e)
    }
}
