//! Which entries of a source tree a COPY/ADD copies, and the metadata each one
//! gets in the new layer, without copying anything.
//!
//! The walk follows the rules of `fileops` step by step (`sources::expand` for
//! wildcards, links and `--parents`; then `treecopy`'s selection: `--exclude`,
//! the `--parents` pattern, pass-through directories created only when
//! something inside them is copied; hard links; `--chmod`; the forced owner of
//! context files and `--chown`), because the cache key must cover exactly what
//! the copy reads: a file it leaves out must not cause a miss, and a file it
//! copies must. The `the_digest_covers_exactly_the_files_the_copy_copies` test holds the two
//! together.

use std::collections::HashMap;

use rbuild_frontend::dockerignore::IgnorePatterns;
use rbuild_frontend::graph::CopyOp;
use rbuild_store::StatKey;

use crate::engine::fileops::chmod::ModeSpec;
use crate::engine::fileops::patterns::{compile_excludes, Filtered, IncludePattern, SourceFilter};
use crate::engine::fileops::sources::expand;
use crate::engine::fileops::tree::{LayeredTree, Node};
use crate::engine::fileops::{EntryKind, Result};

/// One expanded source: how it is named, before its entries.
#[derive(Debug)]
pub(crate) struct Item {
    pub spec: String,
    /// The name a file source is copied under (the matched name, before links).
    pub name: String,
    /// The entry's path in the tree, '/'-separated, without the leading '/'.
    pub path: String,
}

/// One entry the copy writes, with the metadata it gets.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Path in the source tree, '/'-separated, without the leading '/'.
    pub path: String,
    pub kind: EntryKind,
    /// The mode in the layer: after `--chmod` (symlinks keep theirs).
    pub mode: u32,
    /// The owner in the layer; `None` when the instruction decides it (context
    /// files are root's, `--chown` resolves against the target image), so it is
    /// covered by the instruction and the parent instead of the source.
    pub owner: Option<(u32, u32)>,
    pub content: Content,
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
    /// (files' are hashed with their content, so the stat cache covers them).
    Other { link: Vec<u8>, rdev: u64, xattrs: Vec<(std::ffi::OsString, Vec<u8>)> },
}

/// What the walk produces, in copy order.
#[derive(Debug)]
pub(crate) enum Part {
    Item(Item),
    Entry(Entry),
}

/// Lists what `copy` copies from `tree`. `owner_forced` is true for the build
/// context, whose files always belong to root (or the `--chown` owner).
pub(crate) fn select(tree: &LayeredTree<'_>, copy: &CopyOp, owner_forced: bool) -> Result<Vec<Part>> {
    let chmod = copy.chmod.as_deref().map(ModeSpec::parse).transpose()?;
    let exclude = compile_excludes(&copy.exclude)?;
    let mut walk = Walk {
        tree,
        chmod: chmod.as_ref(),
        exclude: exclude.as_ref(),
        owner_forced: owner_forced || copy.chown.is_some(),
        parts: Vec::new(),
        inodes: HashMap::new(),
    };
    for spec in &copy.sources {
        for item in expand(tree, spec, copy.parents)? {
            // A whole directory is walked: list it on every core first. With
            // `--exclude` or a `--parents` pattern the walk may skip most of it.
            if walk.exclude.is_none() && item.include.is_none() {
                let listed = tree.prefetch(&item.node, prefetch_threads());
                walk.parts.reserve(listed + 1);
            }
            walk.parts.push(Part::Item(Item {
                spec: item.spec.clone(),
                name: item.name.to_string_lossy().into_owned(),
                path: item.node.path.to_slash_relative(),
            }));
            walk.node(&item.node, &mut Vec::new(), item.include.as_ref())?;
        }
    }
    Ok(walk.parts)
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
    parts: Vec<Part>,
    /// First entry of every multiply-linked inode, as the copier links them.
    inodes: HashMap<(u64, u64), usize>,
}

impl<'a> Walk<'a, '_> {
    /// Mirrors `TreeCopier::copy_node`: `rel` is the path below the copied
    /// source, empty at its top, where nothing is filtered.
    fn node(&mut self, src: &Node, rel: &mut Vec<String>, include: Option<&IncludePattern>) -> Result<()> {
        if let Filtered::Skipped { excluded } = self.filter(include).judge(rel) {
            return self.pass_through(src, rel, excluded, include);
        }
        self.record(src)?;
        if src.is_dir() {
            self.children(src, rel, include)?;
        }
        Ok(())
    }

    /// Mirrors `TreeCopier::pass_through`: an unselected directory is searched
    /// when something inside may be selected, and is created (with its own
    /// metadata) only when something is.
    fn pass_through(
        &mut self,
        src: &Node,
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
        let mark = self.parts.len();
        self.record(src)?;
        self.children(src, rel, include)?;
        if self.parts.len() == mark + 1 {
            self.parts.truncate(mark);
        }
        Ok(())
    }

    fn children(&mut self, src: &Node, rel: &mut Vec<String>, include: Option<&IncludePattern>) -> Result<()> {
        let filter = self.filter(include);
        for child in self.tree.children(src)? {
            rel.push(filter.rel_name(child.path.file_name().unwrap_or_default()));
            let result = self.node(&child, rel, include);
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

    /// Records one entry as the copier would write it (`TreeCopier::meta_for`).
    fn record(&mut self, src: &Node) -> Result<()> {
        let a = &src.attrs;
        let mode = match (a.kind, self.chmod) {
            (EntryKind::Symlink, _) | (_, None) => a.mode,
            (kind, Some(spec)) => spec.apply(a.mode, kind == EntryKind::Directory),
        };
        let owner = (!self.owner_forced).then_some((a.uid, a.gid));
        let index = self.parts.len();
        let content = match a.kind {
            EntryKind::File if a.nlink > 1 => match self.inodes.get(&(a.dev, a.ino)) {
                Some(first) => Content::HardLink(*first),
                None => {
                    self.inodes.insert((a.dev, a.ino), index);
                    self.file(src)?
                }
            },
            EntryKind::File => self.file(src)?,
            EntryKind::Symlink => Content::Other {
                link: self.tree.read_link(src)?,
                rdev: 0,
                xattrs: self.tree.xattrs(src).unwrap_or_default(),
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
                // Unreadable attributes are skipped, as the copier skips them.
                xattrs: self.tree.xattrs(src).unwrap_or_default(),
            },
        };
        self.parts.push(Part::Entry(Entry {
            path: src.path.to_slash_relative(),
            kind: a.kind,
            mode,
            owner,
            content,
        }));
        Ok(())
    }

    fn file(&self, src: &Node) -> Result<Content> {
        let layer = src.layer().ok_or_else(|| crate::engine::fileops::FileOpError::NotAFile {
            path: src.path.display(),
        })?;
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
}
