//! COPY and ADD: from sources and a destination to the new layer's diff.
//!
//! Destination rules: a relative destination is taken from the WORKDIR; the
//! destination is a directory when it ends with `/` (or is `.`) or when several
//! entries are copied; otherwise a single file is copied *as* the destination,
//! unless the destination is an existing directory, which receives it. A
//! directory source copies its contents. The destination is resolved inside the
//! target image (its symlinks followed, never out of the image root), and the
//! directories leading to it are created as needed: 0755 (or the octal
//! `--chmod`), owned by the `--chown` owner or root.

use std::ffi::OsStr;
use std::path::Path;

use rbuild_frontend::graph::CopyOp;

use crate::engine::context::BuildContext;

use super::chmod::ModeSpec;
use super::error::{FileOpError, Result};
use super::extract::{extract, is_archive};
use super::fsio;
use super::imagepath::ImagePath;
use super::output::{NewDir, OutputLayer};
use super::owner::resolve_owner;
use super::rootfs::Rootfs;
use super::selection::{select_into, Item, Selection, SelectionSink};
use super::tree::LayeredTree;
use super::treecopy::{CopyOptions, CopyStats, TreeCopier};

/// Where a COPY reads from.
#[derive(Clone, Copy)]
pub enum CopyFrom<'a> {
    /// The build context: files are owned by root in the image unless `--chown`.
    Context(&'a BuildContext),
    /// Another stage or image (`--from`): files keep their owners unless `--chown`.
    Image(&'a Rootfs),
}

/// One COPY or ADD to run: the instruction (variables already expanded), and
/// what the build knows besides.
pub struct CopyRequest<'a> {
    pub op: &'a CopyOp,
    /// The layer directory of an earlier run of this step: a file there that
    /// is exactly what this copy would write is linked instead of copied.
    pub earlier: Option<&'a Path>,
    /// What the step cache selected to compute the step's key: the copy
    /// writes exactly that. Selected by the copy when `None`.
    pub(crate) selection: Option<Selection>,
}

/// The copy `op`, nothing known besides.
impl<'a> From<&'a CopyOp> for CopyRequest<'a> {
    fn from(op: &'a CopyOp) -> Self {
        CopyRequest { op, earlier: None, selection: None }
    }
}

/// Selects what `op` copies from `from`, reporting a source that
/// `.dockerignore` hides as such.
pub(crate) fn select_sources(op: &CopyOp, from: CopyFrom<'_>) -> Result<Selection> {
    let mut kept = Selection::default();
    select_sources_into(op, from, &mut kept)?;
    Ok(kept)
}

/// [`select_sources`], giving the entries to `sink` as they are found; false when
/// the sink stopped the walk.
pub(crate) fn select_sources_into(op: &CopyOp, from: CopyFrom<'_>, sink: &mut dyn SelectionSink) -> Result<bool> {
    let tree = from.tree();
    let not_found = |spec: &str, e| match (e, from) {
        (FileOpError::SourceNotFound { path }, CopyFrom::Context(ctx)) => match ctx.ignored_source(spec) {
            Some((pattern, file)) => FileOpError::SourceIgnored { path, pattern, file },
            None => FileOpError::SourceNotFound { path },
        },
        (e, _) => e,
    };
    select_into(&tree, op, matches!(from, CopyFrom::Context(_)), &not_found, sink)
}

impl CopyFrom<'_> {
    /// The tree a copy reads.
    pub(crate) fn tree(&self) -> LayeredTree<'_> {
        match self {
            CopyFrom::Context(ctx) => ctx.tree(),
            CopyFrom::Image(rootfs) => rootfs.tree(),
        }
    }
}

/// Runs a COPY/ADD: writes its diff against `target` into `out_dir`, an empty
/// directory.
pub fn copy_into(
    req: CopyRequest<'_>,
    from: CopyFrom<'_>,
    target: &Rootfs,
    out_dir: &Path,
) -> Result<CopyStats> {
    let op = req.op;
    check_local_sources(op)?;
    let owner = op
        .chown
        .as_deref()
        .map(|spec| resolve_owner(spec, target))
        .transpose()?;
    let chmod = op.chmod.as_deref().map(ModeSpec::parse).transpose()?;
    let selection = match req.selection {
        Some(selection) => selection,
        None => select_sources(op, from)?,
    };
    let tree = from.tree();
    // Context files are root's; the selection left their owner to the copy.
    let source_owner = matches!(from, CopyFrom::Context(_)).then_some((0, 0));

    let dest = Destination::new(
        &op.dest,
        &op.workdir,
        selection.items.len() + op.inline_files.len() > 1,
    );
    let (uid, gid) = owner.unwrap_or((0, 0));
    let new_dir = NewDir {
        mode: chmod.as_ref().map_or(0o755, ModeSpec::created_dir_mode),
        uid,
        gid,
        mtime: fsio::now(),
    };

    let mut out = OutputLayer::new(target, out_dir)?;
    let options = CopyOptions {
        owner: owner.or(source_owner),
        chmod: chmod.as_ref(),
        earlier: req.earlier,
    };
    let mut copier = TreeCopier::new(&tree, &mut out, options);
    let mut archives = 0;
    for item in &selection.items {
        if op.is_add && op.unpack != Some(false) && is_archive(&tree, &item.node)? {
            // An archive always unpacks into the destination as a directory.
            let out = copier.output();
            let dir = out.resolve_path(&dest.path, true)?;
            out.mkdir_all(
                &dir,
                &NewDir {
                    mode: 0o755,
                    ..new_dir
                },
            )?;
            extract(out, &tree, &item.node, &item.spec, &dir, owner)?;
            archives += 1;
            continue;
        }
        copy_item(&mut copier, &selection, item, &dest, &new_dir)?;
    }
    for file in &op.inline_files {
        let cleaned = ImagePath::lexical(&file.name);
        let name = cleaned.file_name().unwrap_or(OsStr::new(&file.name));
        let target = file_target(copier.output(), &dest, name, &new_dir)?;
        copier.copy_inline(file.content.as_bytes(), &target)?;
    }
    let mut stats = copier.stats;
    stats.archives = archives;
    out.finish()?;
    Ok(stats)
}

/// The destination as an image path, and whether it must be a directory.
struct Destination {
    path: ImagePath,
    is_dir: bool,
}

impl Destination {
    fn new(dest: &str, workdir: &str, several: bool) -> Self {
        let names_dir =
            dest.is_empty() || dest == "." || dest.ends_with('/') || dest.ends_with("/.");
        let path = if dest.starts_with('/') {
            ImagePath::lexical(dest)
        } else {
            ImagePath::lexical(&format!("{workdir}/{dest}"))
        };
        Destination {
            path,
            is_dir: names_dir || several,
        }
    }

    /// The directory that must exist before anything is copied.
    fn directory(&self) -> ImagePath {
        if self.is_dir {
            self.path.clone()
        } else {
            self.path.parent()
        }
    }
}

/// Copies one expanded source to the destination.
fn copy_item(
    copier: &mut TreeCopier<'_>,
    selection: &Selection,
    item: &Item,
    dest: &Destination,
    new_dir: &NewDir,
) -> Result<()> {
    let target = if item.node.is_dir() {
        let out = copier.output();
        let dir = out.resolve_path(&dest.directory(), true)?;
        out.mkdir_all(&dir, new_dir)?;
        // A directory's contents go into the destination, created if missing.
        let target = out.resolve_path(&dest.path, true)?;
        out.mkdir_all(&target, new_dir)?;
        target
    } else {
        file_target(copier.output(), dest, &item.name, new_dir)?
    };
    copier.copy_item(selection, item, &target)
}

/// Where a file source named `name` lands, its directory created.
fn file_target(
    out: &mut OutputLayer,
    dest: &Destination,
    name: &OsStr,
    new_dir: &NewDir,
) -> Result<ImagePath> {
    let dir = out.resolve_path(&dest.directory(), true)?;
    out.mkdir_all(&dir, new_dir)?;
    let mut target = out.resolve_path(&dest.path, true)?;
    if out.lookup(&target)?.is_some_and(|n| n.is_dir()) {
        target = target.join(name);
    } else {
        out.mkdir_all(&target.parent(), new_dir)?;
    }
    Ok(target)
}

/// Remote sources are for ADD only, and rbuild cannot fetch them yet.
fn check_local_sources(op: &CopyOp) -> Result<()> {
    for src in &op.sources {
        let what = if is_git_source(src) {
            "a git repository"
        } else if src.starts_with("http://") || src.starts_with("https://") {
            "a URL"
        } else {
            continue;
        };
        if op.is_add {
            return Err(FileOpError::Unsupported {
                what: format!("ADD from {what} ({src})"),
            });
        }
        return Err(FileOpError::InvalidCopySource {
            source_path: src.clone(),
            what,
        });
    }
    Ok(())
}

/// Sources that name a git repository rather than a file.
fn is_git_source(src: &str) -> bool {
    if src.starts_with("git@") || src.starts_with("git://") || src.starts_with("ssh://") {
        return true;
    }
    if !(src.starts_with("http://") || src.starts_with("https://")) {
        return false;
    }
    let path = src.split('#').next().unwrap_or(src);
    path.ends_with(".git") || path.contains(".git/")
}
