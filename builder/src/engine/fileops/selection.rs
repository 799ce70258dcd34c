//! Which entries of a source tree a COPY/ADD copies, and the metadata each one
//! gets in the new layer: one walk, whose result both the step cache's key and
//! the copier consume, so the key covers exactly what the copy writes.
//!
//! The walk follows the COPY rules: `sources::expand` for wildcards, links and
//! `--parents`; then `--exclude`, the `--parents` pattern, pass-through
//! directories kept only when something inside them is selected; hard links;
//! `--chmod`; the forced owner of context files and `--chown`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::ops::Range;

use rbuild_frontend::dockerignore::IgnorePatterns;
use rbuild_frontend::graph::CopyOp;
use rbuild_store::StatKey;

use super::chmod::ModeSpec;
use super::error::{FileOpError, Result};
use super::fsio::EntryKind;
use super::patterns::{compile_excludes, Filtered, IncludePattern, SourceFilter};
use super::sources::expand;
use super::tree::{LayeredTree, Node};

/// What a COPY/ADD copies, in copy order.
#[derive(Debug, Default)]
pub(crate) struct Selection {
    pub items: Vec<Item>,
    /// The entries of all items, each item's in one run.
    pub entries: Vec<Entry>,
}

/// One expanded source: how it is named, and its entries.
#[derive(Debug)]
pub(crate) struct Item {
    /// The source as written.
    pub spec: String,
    /// The entry, links at its own path followed.
    pub node: Node,
    /// The name a file source is copied under (the matched name, before links).
    pub name: OsString,
    /// Its entries in [`Selection::entries`]: the item's own entry first
    /// (never filtered), then what is selected below it.
    pub entries: Range<usize>,
}

/// One entry the copy writes, with the metadata it gets.
#[derive(Debug)]
pub(crate) struct Entry {
    pub node: Node,
    /// The mode in the layer: after `--chmod` (symlinks keep theirs).
    pub mode: u32,
    /// The owner in the layer; `None` when the instruction decides it (context
    /// files are root's, `--chown` resolves against the target image), so it is
    /// covered by the instruction and the parent instead of the source.
    pub owner: Option<(u32, u32)>,
    pub content: Content,
    /// A directory not selected itself but holding selected entries: created
    /// when missing, an existing one left as it is.
    pub pass_through: bool,
}

#[derive(Debug)]
pub(crate) enum Content {
    /// A regular file to read, or to find in the stat cache; it lives in
    /// layer `layer` of the tree (its host path is made only if it is read).
    File { layer: usize, stat: StatKey },
    /// A file the copy writes as a hard link to an earlier entry (its index).
    HardLink(usize),
    /// A symlink's target; a device's number; nothing for directories, FIFOs
    /// and sockets. Extended attributes of these are read during the walk
    /// (files' are read with their content, so the stat cache covers them).
    Other { link: Vec<u8>, rdev: u64, xattrs: Vec<(OsString, Vec<u8>)> },
}

/// Lists what `copy` copies from `tree`. `owner_forced` is true for the build
/// context, whose files always belong to root (or the `--chown` owner).
/// `not_found` turns a source's expansion error into the one to report.
pub(crate) fn select(
    tree: &LayeredTree<'_>,
    copy: &CopyOp,
    owner_forced: bool,
    not_found: &dyn Fn(&str, FileOpError) -> FileOpError,
) -> Result<Selection> {
    let mut kept = Selection::default();
    select_into(tree, copy, owner_forced, not_found, &mut kept)?;
    Ok(kept)
}

/// Where a walk's entries go, in copy order: each item's header, then its entries.
/// A [`Selection`] keeps them all; the step cache's key hashes them as they come
/// and keeps none, so that proving a 200,000-file COPY unchanged holds no entry per
/// file in memory.
pub(crate) trait SelectionSink {
    /// The next source; its own entry comes next.
    fn item(&mut self, spec: &str, name: &OsStr, node: &Node);
    /// One entry, with its index among all the selection's entries (what a
    /// [`Content::HardLink`] names). `false` stops the walk.
    fn entry(&mut self, index: usize, entry: Entry) -> bool;
}

impl SelectionSink for Selection {
    fn item(&mut self, spec: &str, name: &OsStr, node: &Node) {
        let start = self.entries.len();
        self.items.push(Item {
            spec: spec.to_string(),
            node: node.clone(),
            name: name.to_os_string(),
            entries: start..start,
        });
    }

    fn entry(&mut self, index: usize, entry: Entry) -> bool {
        debug_assert_eq!(index, self.entries.len());
        self.entries.push(entry);
        if let Some(item) = self.items.last_mut() {
            item.entries.end = self.entries.len();
        }
        true
    }
}

/// [`select`], giving the entries to `sink` as the walk finds them. Returns
/// false when the sink stopped the walk.
pub(crate) fn select_into(
    tree: &LayeredTree<'_>,
    copy: &CopyOp,
    owner_forced: bool,
    not_found: &dyn Fn(&str, FileOpError) -> FileOpError,
    sink: &mut dyn SelectionSink,
) -> Result<bool> {
    let chmod = copy.chmod.as_deref().map(ModeSpec::parse).transpose()?;
    let exclude = compile_excludes(&copy.exclude)?;
    let mut walk = Walk {
        tree,
        chmod: chmod.as_ref(),
        exclude: exclude.as_ref(),
        owner_forced: owner_forced || copy.chown.is_some(),
        sink,
        given: 0,
        held: Vec::new(),
        open_marks: 0,
        stopped: false,
        inodes: HashMap::new(),
    };
    for spec in &copy.sources {
        let items = expand(tree, spec, copy.parents).map_err(|e| not_found(spec, e))?;
        for item in items {
            walk.sink.item(&item.spec, &item.name, &item.node);
            // A whole directory is walked: list it on the other cores ahead of
            // the walk. With `--exclude` or a `--parents` pattern the walk may
            // skip most of it.
            let threads = match walk.exclude.is_none() && item.include.is_none() {
                true => prefetch_threads(),
                false => 0,
            };
            tree.walk_prefetched(&item.node, threads, || {
                walk.node(item.node.clone(), &mut Vec::new(), item.include.as_ref())
            })?;
            if walk.stopped {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Threads that list a big source tree ahead of the walk: the stats of
/// 20,000 files are most of a cached build's time.
fn prefetch_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

struct Walk<'a, 't> {
    tree: &'a LayeredTree<'t>,
    chmod: Option<&'a ModeSpec>,
    exclude: Option<&'a IgnorePatterns>,
    owner_forced: bool,
    sink: &'a mut dyn SelectionSink,
    /// Entries given to the sink so far.
    given: usize,
    /// Entries recorded but not given yet: a pass-through directory waits here
    /// until something inside it is selected (or is dropped).
    held: Vec<Entry>,
    /// Pass-through directories being searched.
    open_marks: usize,
    stopped: bool,
    /// First entry of every multiply-linked inode, for the others to link to.
    inodes: HashMap<(u64, u64), usize>,
}

impl<'a> Walk<'a, '_> {
    /// `rel` is the path below the copied source, empty at its top, where
    /// nothing is filtered.
    fn node(&mut self, src: Node, rel: &mut Vec<String>, include: Option<&IncludePattern>) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        if let Filtered::Skipped { excluded } = self.filter(include).judge(rel) {
            return self.pass_through(src, rel, excluded, include);
        }
        let dir = src.is_dir().then(|| src.clone());
        self.record(src, false)?;
        if let Some(dir) = dir {
            self.children(&dir, rel, include)?;
        }
        Ok(())
    }

    /// An unselected directory is searched when something inside may be
    /// selected, and kept only when something is.
    fn pass_through(
        &mut self,
        src: Node,
        rel: &mut Vec<String>,
        excluded: bool,
        include: Option<&IncludePattern>,
    ) -> Result<()> {
        if !src.is_dir() {
            return Ok(());
        }
        if !self.filter(include).may_select_below(rel, excluded) {
            return Ok(());
        }
        let dir = src.clone();
        self.open_marks += 1;
        let mark = self.record(src, true);
        let searched = mark.and_then(|mark| self.children(&dir, rel, include).map(|()| mark));
        self.open_marks -= 1;
        let mark = searched?;
        if self.given + self.held.len() == mark + 1 {
            // Nothing inside was selected: the directory is not kept.
            self.held.pop();
        }
        self.give();
        Ok(())
    }

    /// Gives the held entries to the sink, unless a pass-through directory may
    /// still be dropped.
    fn give(&mut self) {
        if self.open_marks > 0 {
            return;
        }
        for entry in self.held.drain(..) {
            if !self.stopped && !self.sink.entry(self.given, entry) {
                self.stopped = true;
            }
            self.given += 1;
        }
    }

    /// Walks the children of the directory `dir`, just recorded.
    fn children(&mut self, dir: &Node, rel: &mut Vec<String>, include: Option<&IncludePattern>) -> Result<()> {
        let filter = self.filter(include);
        let tree = self.tree;
        for child in tree.children(dir)? {
            rel.push(filter.rel_name(child.path.file_name().unwrap_or_default()));
            let result = self.node(child, rel, include);
            rel.pop();
            result?;
        }
        Ok(())
    }

    fn filter<'f>(&self, include: Option<&'f IncludePattern>) -> SourceFilter<'f>
    where
        'a: 'f,
    {
        SourceFilter { exclude: self.exclude, include }
    }

    /// Records one entry as the copy writes it; returns its index.
    fn record(&mut self, src: Node, pass_through: bool) -> Result<usize> {
        let a = &src.attrs;
        let mode = match (a.kind, self.chmod) {
            (EntryKind::Symlink, _) | (_, None) => a.mode,
            (kind, Some(spec)) => spec.apply(a.mode, kind == EntryKind::Directory),
        };
        let owner = (!self.owner_forced).then_some((a.uid, a.gid));
        let index = self.given + self.held.len();
        let content = match a.kind {
            EntryKind::File if a.nlink > 1 => match self.inodes.get(&(a.dev, a.ino)) {
                Some(first) => Content::HardLink(*first),
                None => {
                    self.inodes.insert((a.dev, a.ino), index);
                    file(&src)?
                }
            },
            EntryKind::File => file(&src)?,
            EntryKind::Symlink => Content::Other {
                link: self.tree.read_link(&src)?,
                rdev: 0,
                xattrs: self.tree.xattrs(&src).unwrap_or_default(),
            },
            // Sockets are skipped by the copy, and a 0:0 character device would
            // read as a whiteout; both still make pass-through directories appear.
            EntryKind::Socket => Content::Other { link: Vec::new(), rdev: 0, xattrs: Vec::new() },
            EntryKind::CharDevice if a.rdev == 0 => {
                Content::Other { link: Vec::new(), rdev: 0, xattrs: Vec::new() }
            }
            _ => Content::Other {
                link: Vec::new(),
                rdev: a.rdev,
                // Attributes that cannot be read are skipped, as they would be
                // when they cannot be written.
                xattrs: self.tree.xattrs(&src).unwrap_or_default(),
            },
        };
        self.held.push(Entry { node: src, mode, owner, content, pass_through });
        self.give();
        Ok(index)
    }
}

fn file(src: &Node) -> Result<Content> {
    let layer = src.layer().ok_or_else(|| FileOpError::NotAFile { path: src.path.display() })?;
    let a = &src.attrs;
    Ok(Content::File {
        layer,
        stat: StatKey {
            dev: a.dev,
            ino: a.ino,
            size: a.size,
            mtime: (a.mtime.tv_sec, a.mtime.tv_nsec as u32),
            ctime: (a.ctime.tv_sec, a.ctime.tv_nsec as u32),
        },
    })
}
