//! Copying entries of a source tree into an output layer, the way `cp -a` would
//! with the COPY rules on top:
//!
//! - symlinks are copied as links, never followed; hard links between copied
//!   files stay hard links;
//! - each entry keeps its mode, times and xattrs, and its owner unless an owner
//!   is forced (`--chown`, or root for build-context files);
//! - `--chmod` replaces or edits the mode of every copied file and directory;
//! - `--exclude` rules and the `--parents` selection skip entries; a directory
//!   that is only passed through is created when something inside it is copied;
//! - a directory merges into an existing directory; an existing top-level
//!   destination directory keeps its metadata except the times;
//! - a directory onto a non-directory, or a file onto a directory, is an error.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use rbuild_frontend::dockerignore::IgnorePatterns;

use super::chmod::ModeSpec;
use super::error::Result;
use super::fsio::{self, EntryKind};
use super::imagepath::ImagePath;
use super::output::{Clash, Meta, OutputLayer};
use super::patterns::{Filtered, IncludePattern, SourceFilter};
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
    /// Owner of every copied entry; `None` keeps the source's.
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<&'a ModeSpec>,
    /// `--exclude`, matched against paths relative to each copied source.
    pub exclude: Option<&'a IgnorePatterns>,
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

/// A directory passed through without being selected itself; created on demand.
struct PendingDir {
    src: Node,
    dest: ImagePath,
    done: bool,
}

/// Copies entries of `src` into an output layer.
pub(crate) struct TreeCopier<'a> {
    src: &'a LayeredTree<'a>,
    out: &'a mut OutputLayer,
    opts: CopyOptions<'a>,
    /// First copy of every multiply-linked source inode, to link the others to.
    hardlinks: HashMap<(u64, u64), ImagePath>,
    pending: Vec<PendingDir>,
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
            pending: Vec::new(),
            linked: HashSet::new(),
            compare: (Vec::new(), Vec::new()),
            stats: CopyStats::default(),
        }
    }

    /// The layer being written, for steps around the copy proper.
    pub(crate) fn output(&mut self) -> &mut OutputLayer {
        self.out
    }

    /// Copies one source (a file, or a directory's contents) to `dest`, whose
    /// parent exists. `include` is the `--parents` selection below the source.
    pub(crate) fn copy_source(
        &mut self,
        src: &Node,
        dest: &ImagePath,
        include: Option<&IncludePattern>,
    ) -> Result<()> {
        self.copy_node(src, &mut Vec::new(), dest, false, include)
    }

    /// Copies one entry (and everything inside it) to `dest`, metadata included.
    pub(crate) fn copy_entry(&mut self, src: &Node, dest: &ImagePath) -> Result<()> {
        let name = src
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.copy_node(src, &mut vec![name], dest, true, None)
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

    /// `rel` holds the path of `src` relative to the copied source; it is what
    /// `--exclude` and the `--parents` selection `include` are matched against.
    /// At the top (`rel` empty) nothing is filtered.
    fn copy_node(
        &mut self,
        src: &Node,
        rel: &mut Vec<String>,
        dest: &ImagePath,
        overwrite_meta: bool,
        include: Option<&IncludePattern>,
    ) -> Result<()> {
        if let Filtered::Skipped { excluded } = self.filter(include).judge(rel) {
            return self.pass_through(src, rel, dest, excluded, include);
        }
        self.create_pending_dirs()?;
        match src.attrs.kind {
            EntryKind::Directory => self.copy_dir(src, rel, dest, overwrite_meta, include),
            EntryKind::File => self.copy_file(src, dest),
            EntryKind::Symlink => {
                let target = self.src.read_link(src)?;
                self.out.prepare_non_dir(dest, Clash::Error)?;
                let meta = self.meta_for(src);
                self.out.write_symlink(dest, &target, &meta)?;
                self.stats.symlinks += 1;
                Ok(())
            }
            // A 0:0 character device would read as a deletion in the new layer.
            EntryKind::CharDevice if src.attrs.rdev == 0 => Ok(()),
            kind @ (EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo) => {
                self.out.prepare_non_dir(dest, Clash::Error)?;
                let meta = self.meta_for(src);
                self.out.write_special(dest, kind, src.attrs.rdev, &meta)?;
                self.stats.special += 1;
                Ok(())
            }
            // A socket belongs to a running process; there is nothing to copy.
            EntryKind::Socket => Ok(()),
        }
    }

    /// An unselected entry: a directory is still searched when a selected path
    /// may lie inside it.
    fn pass_through(
        &mut self,
        src: &Node,
        rel: &mut Vec<String>,
        dest: &ImagePath,
        excluded: bool,
        include: Option<&IncludePattern>,
    ) -> Result<()> {
        if !src.is_dir() {
            return Ok(());
        }
        if !self.filter(include).may_select_below(rel, excluded) {
            return Ok(());
        }
        self.pending.push(PendingDir {
            src: src.clone(),
            dest: dest.clone(),
            done: false,
        });
        let result = self.copy_children(src, rel, dest, include);
        self.pending.pop();
        result
    }

    /// Creates the passed-through directories above a selected entry.
    fn create_pending_dirs(&mut self) -> Result<()> {
        for i in 0..self.pending.len() {
            if self.pending[i].done {
                continue;
            }
            let (src, dest) = (self.pending[i].src.clone(), self.pending[i].dest.clone());
            if self.out.prepare_dir(&dest, Clash::Error)? {
                let meta = self.meta_for(&src);
                self.out.create_dir(&dest, &meta)?;
                self.stats.dirs += 1;
            }
            self.pending[i].done = true;
        }
        Ok(())
    }

    fn copy_dir(
        &mut self,
        src: &Node,
        rel: &mut Vec<String>,
        dest: &ImagePath,
        overwrite_meta: bool,
        include: Option<&IncludePattern>,
    ) -> Result<()> {
        let created = self.out.prepare_dir(dest, Clash::Error)?;
        if created || overwrite_meta {
            let meta = self.meta_for(src);
            if created {
                self.out.create_dir(dest, &meta)?;
            } else {
                self.out.set_meta(dest, &meta, EntryKind::Directory)?;
            }
            self.stats.dirs += 1;
        }
        self.copy_children(src, rel, dest, include)?;
        if !created && !overwrite_meta {
            // The destination directory of the copy keeps its owner and mode,
            // but takes the times of the directory copied into it.
            self.out
                .set_dir_times(dest, src.attrs.atime, src.attrs.mtime);
        }
        Ok(())
    }

    fn copy_children(
        &mut self,
        src: &Node,
        rel: &mut Vec<String>,
        dest: &ImagePath,
        include: Option<&IncludePattern>,
    ) -> Result<()> {
        let filter = self.filter(include);
        for child in self.src.children(src)? {
            let name: OsString = child.path.file_name().unwrap_or_default().to_owned();
            rel.push(filter.rel_name(&name));
            let result = self.copy_node(&child, rel, &dest.join(&name), true, include);
            rel.pop();
            result?;
        }
        Ok(())
    }

    fn filter<'f>(&self, include: Option<&'f IncludePattern>) -> SourceFilter<'f>
    where
        'a: 'f,
    {
        SourceFilter { exclude: self.opts.exclude, include }
    }

    fn copy_file(&mut self, src: &Node, dest: &ImagePath) -> Result<()> {
        self.out.prepare_non_dir(dest, Clash::Error)?;
        if src.attrs.nlink > 1 {
            let key = (src.attrs.dev, src.attrs.ino);
            if let Some(first) = self.hardlinks.get(&key) {
                let first = first.clone();
                self.out.write_hardlink(dest, &first)?;
                self.stats.hardlinks += 1;
                return Ok(());
            }
            self.hardlinks.insert(key, dest.clone());
        }
        let meta = self.meta_for(src);
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

    /// The metadata a copy of `src` gets.
    fn meta_for(&self, src: &Node) -> Meta {
        let a = &src.attrs;
        let (uid, gid) = self.opts.owner.unwrap_or((a.uid, a.gid));
        let mode = match (a.kind, self.opts.chmod) {
            (EntryKind::Symlink, _) | (_, None) => a.mode,
            (kind, Some(spec)) => spec.apply(a.mode, kind == EntryKind::Directory),
        };
        Meta {
            mode,
            uid,
            gid,
            atime: a.atime,
            mtime: a.mtime,
            // Attributes that cannot be read are skipped, as they would be
            // when they cannot be written.
            xattrs: self.src.xattrs(src).unwrap_or_default(),
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
