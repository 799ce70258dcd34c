//! Copying the entries a [`Selection`] lists into an output layer, the way
//! `cp -a` would with the COPY rules on top (the selection has applied
//! `--exclude`, `--parents` and `--chmod` already):
//!
//! - symlinks are copied as links, never followed; hard links between copied
//!   files stay hard links;
//! - each entry keeps its mode, times and xattrs, and its owner unless an owner
//!   is forced (`--chown`, or root for build-context files);
//! - `--chmod` replaces or edits the mode of every copied file and directory;
//! - a directory that is only passed through is created when missing;
//! - a directory merges into an existing directory; an existing top-level
//!   destination directory keeps its metadata except the times;
//! - a directory onto a non-directory, or a file onto a directory, is an error.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use super::chmod::ModeSpec;
use super::error::Result;
use super::fsio::{self, EntryKind};
use super::imagepath::ImagePath;
use super::output::{Clash, Meta, OutputLayer};
use super::selection::{Content, Entry, Item, Selection};
use super::tree::{LayeredTree, Node};

/// What happened during a copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Device nodes and FIFOs.
    pub special: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Files linked from an earlier run of the step instead of written
    /// (counted in `files` too).
    pub linked: u64,
    /// ADD archives extracted.
    pub archives: u64,
}

/// How entries are transformed on the way.
#[derive(Clone, Copy, Default)]
pub(crate) struct CopyOptions<'a> {
    /// Owner of every copied entry whose owner the selection leaves to the
    /// instruction.
    pub owner: Option<(u32, u32)>,
    /// `--chmod`, for inline files (the selection applied it to the others).
    pub chmod: Option<&'a ModeSpec>,
    /// An earlier result of the same step (its layer directory), whose
    /// unchanged files are linked rather than copied.
    pub earlier: Option<&'a Path>,
}

impl CopyOptions<'_> {
    /// Everything kept as it is (materializing an image).
    pub(crate) fn preserve() -> Self {
        Self::default()
    }
}

/// Copies entries of `src` into an output layer.
pub(crate) struct TreeCopier<'a> {
    src: &'a LayeredTree<'a>,
    out: &'a mut OutputLayer,
    opts: CopyOptions<'a>,
    /// Where the first entry of every multiply-linked inode was written, by
    /// its index in the selection, for the others to link to.
    hardlinks: HashMap<usize, ImagePath>,
    /// Inodes of the earlier result linked into this layer: each at most once,
    /// so that two files never become one.
    linked: HashSet<(u64, u64)>,
    /// Buffers for comparing a file with its earlier copy.
    compare: (Vec<u8>, Vec<u8>),
    pub stats: CopyStats,
}

impl<'a> TreeCopier<'a> {
    pub(crate) fn new(
        src: &'a LayeredTree<'a>,
        out: &'a mut OutputLayer,
        opts: CopyOptions<'a>,
    ) -> Self {
        TreeCopier {
            src,
            out,
            opts,
            hardlinks: HashMap::new(),
            linked: HashSet::new(),
            compare: (Vec::new(), Vec::new()),
            stats: CopyStats::default(),
        }
    }

    /// The layer being written, for steps around the copy proper.
    pub(crate) fn output(&mut self) -> &mut OutputLayer {
        self.out
    }

    /// Copies one item of `selection` (a file, or a directory's contents) to
    /// `dest`, whose parent exists: each entry lands at its path below the
    /// item's, appended to `dest`.
    pub(crate) fn copy_item(&mut self, selection: &Selection, item: &Item, dest: &ImagePath) -> Result<()> {
        for index in item.entries.clone() {
            let entry = &selection.entries[index];
            let top = index == item.entries.start;
            let target = if top { dest.clone() } else { entry.node.path.rebase(&item.node.path, dest) };
            self.copy_entry(index, entry, &target, top)?;
        }
        Ok(())
    }

    /// Writes an in-memory file (a heredoc source): mode 0644 before `--chmod`,
    /// owned by root unless an owner is forced.
    pub(crate) fn copy_inline(&mut self, content: &[u8], dest: &ImagePath) -> Result<()> {
        let now = fsio::now();
        let (uid, gid) = self.opts.owner.unwrap_or((0, 0));
        let meta = Meta {
            mode: self.opts.chmod.map_or(0o644, |c| c.apply(0o644, false)),
            uid,
            gid,
            atime: now,
            mtime: now,
            xattrs: Vec::new(),
        };
        self.out.prepare_non_dir(dest, Clash::Error)?;
        self.stats.bytes += self.out.write_file(dest, &mut &content[..], &meta)?;
        self.stats.files += 1;
        Ok(())
    }

    /// Writes one selected entry at `dest`. The item's own entry (`top`) is
    /// the destination when it is a directory: it keeps its metadata but the
    /// times.
    fn copy_entry(&mut self, index: usize, entry: &Entry, dest: &ImagePath, top: bool) -> Result<()> {
        let src = &entry.node;
        if entry.pass_through {
            if self.out.prepare_dir(dest, Clash::Error)? {
                let meta = self.meta_for(entry);
                self.out.create_dir(dest, &meta)?;
                self.stats.dirs += 1;
            }
            return Ok(());
        }
        match (src.attrs.kind, &entry.content) {
            (EntryKind::Directory, _) => self.copy_dir(entry, dest, !top),
            (EntryKind::File, Content::HardLink(first)) => match self.hardlinks.get(first) {
                Some(first) => {
                    let first = first.clone();
                    self.out.prepare_non_dir(dest, Clash::Error)?;
                    self.out.write_hardlink(dest, &first)?;
                    self.stats.hardlinks += 1;
                    Ok(())
                }
                // The first was not copied (an ADD archive, extracted instead).
                None => self.copy_file(index, entry, dest),
            },
            (EntryKind::File, _) => self.copy_file(index, entry, dest),
            (EntryKind::Symlink, Content::Other { link, .. }) => {
                self.out.prepare_non_dir(dest, Clash::Error)?;
                let meta = self.meta_for(entry);
                self.out.write_symlink(dest, link, &meta)?;
                self.stats.symlinks += 1;
                Ok(())
            }
            // A 0:0 character device would read as a deletion in the new layer.
            (EntryKind::CharDevice, _) if src.attrs.rdev == 0 => Ok(()),
            (kind @ (EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo), _) => {
                self.out.prepare_non_dir(dest, Clash::Error)?;
                let meta = self.meta_for(entry);
                self.out.write_special(dest, kind, src.attrs.rdev, &meta)?;
                self.stats.special += 1;
                Ok(())
            }
            // A socket belongs to a running process; there is nothing to copy.
            (EntryKind::Socket, _) => Ok(()),
            (EntryKind::Symlink, _) => unreachable!("the selection reads every link's target"),
        }
    }

    fn copy_dir(&mut self, entry: &Entry, dest: &ImagePath, overwrite_meta: bool) -> Result<()> {
        let created = self.out.prepare_dir(dest, Clash::Error)?;
        if created || overwrite_meta {
            let meta = self.meta_for(entry);
            if created {
                self.out.create_dir(dest, &meta)?;
            } else {
                self.out.set_meta(dest, &meta, EntryKind::Directory)?;
            }
            self.stats.dirs += 1;
        } else {
            // The destination directory of the copy keeps its owner and mode,
            // but takes the times of the directory copied into it (applied
            // when the layer is finished, after everything inside is written).
            let a = &entry.node.attrs;
            self.out.set_dir_times(dest, a.atime, a.mtime);
        }
        Ok(())
    }

    fn copy_file(&mut self, index: usize, entry: &Entry, dest: &ImagePath) -> Result<()> {
        let src = &entry.node;
        self.out.prepare_non_dir(dest, Clash::Error)?;
        if src.attrs.nlink > 1 {
            self.hardlinks.insert(index, dest.clone());
        }
        let meta = self.meta_for(entry);
        if self.link_unchanged(src, dest, &meta) {
            self.stats.linked += 1;
            self.stats.files += 1;
            return Ok(());
        }
        let mut file = self.src.open_file(src)?;
        self.stats.bytes += self.out.write_file(dest, &mut file, &meta)?;
        self.stats.files += 1;
        Ok(())
    }

    /// Links the file that the earlier run of this step wrote at `dest` when it
    /// is exactly what this copy would write: same size, content, mode, owner
    /// and modification time, and neither has extended attributes. Snapshots
    /// never change once written, so the two layers can share the inode; a
    /// rebuild after a small edit then writes only what changed instead of
    /// creating every file again. Anything unusual, or any error, makes the
    /// caller copy the file as usual.
    fn link_unchanged(&mut self, src: &Node, dest: &ImagePath, meta: &Meta) -> bool {
        let Some(earlier) = self.opts.earlier else {
            return false;
        };
        if src.attrs.nlink > 1 || !meta.xattrs.is_empty() {
            return false;
        }
        let candidate = earlier.join(dest.to_relative());
        let Ok(Some(old)) = fsio::lstat(&candidate) else {
            return false;
        };
        let same_meta = old.kind == EntryKind::File
            && old.size == src.attrs.size
            && old.mode == meta.mode
            && (old.uid, old.gid) == (meta.uid, meta.gid)
            && (old.mtime.tv_sec, old.mtime.tv_nsec) == (meta.mtime.tv_sec, meta.mtime.tv_nsec);
        if !same_meta || self.linked.contains(&(old.dev, old.ino)) {
            return false;
        }
        if !fsio::read_xattrs(&candidate).is_ok_and(|x| x.is_empty()) {
            return false;
        }
        let (Ok(mut new), Ok(mut old_file)) = (self.src.open_file(src), fsio::open_nofollow(&candidate))
        else {
            return false;
        };
        if !same_content(&mut new, &mut old_file, old.size, &mut self.compare) {
            return false;
        }
        if self.out.link_file(dest, &candidate).is_err() {
            return false;
        }
        self.linked.insert((old.dev, old.ino));
        true
    }

    /// The metadata a copy of `entry` gets: the mode and owner the selection
    /// decided, the source's times and extended attributes.
    fn meta_for(&self, entry: &Entry) -> Meta {
        let a = &entry.node.attrs;
        let (uid, gid) = entry.owner.or(self.opts.owner).unwrap_or((a.uid, a.gid));
        let xattrs = match &entry.content {
            Content::Other { xattrs, .. } => xattrs.clone(),
            // Attributes that cannot be read are skipped, as they would be
            // when they cannot be written.
            _ => self.src.xattrs(&entry.node).unwrap_or_default(),
        };
        Meta {
            mode: entry.mode,
            uid,
            gid,
            atime: a.atime,
            mtime: a.mtime,
            xattrs,
        }
    }
}

/// Whether two open files of `size` bytes hold the same bytes.
fn same_content(a: &mut File, b: &mut File, size: u64, buffers: &mut (Vec<u8>, Vec<u8>)) -> bool {
    const CHUNK: usize = 256 * 1024;
    let (x, y) = buffers;
    let chunk = CHUNK.min(size as usize).max(1);
    x.resize(chunk, 0);
    y.resize(chunk, 0);
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk as u64) as usize;
        if a.read_exact(&mut x[..n]).is_err() || b.read_exact(&mut y[..n]).is_err() || x[..n] != y[..n] {
            return false;
        }
        left -= n as u64;
    }
    // Neither may have grown since it was looked at.
    let mut probe = [0u8; 1];
    matches!(a.read(&mut probe), Ok(0)) && matches!(b.read(&mut probe), Ok(0))
}
