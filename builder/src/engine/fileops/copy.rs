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
use std::path::{Path, PathBuf};

use crate::engine::context::BuildContext;

use super::chmod::ModeSpec;
use super::error::{FileOpError, Result};
use super::extract::{extract, is_archive};
use super::fsio;
use super::imagepath::ImagePath;
use super::output::{NewDir, OutputLayer};
use super::owner::resolve_owner;
use super::patterns::compile_excludes;
use super::rootfs::Rootfs;
use super::sources::{expand, SourceItem};
use super::treecopy::{CopyOptions, CopyStats, TreeCopier};

/// Where a COPY reads from.
#[derive(Clone, Copy)]
pub enum CopyFrom<'a> {
    /// The build context: files are owned by root in the image unless `--chown`.
    Context(&'a BuildContext),
    /// Another stage or image (`--from`): files keep their owners unless `--chown`.
    Image(&'a Rootfs),
}

/// One COPY or ADD instruction, variables already expanded.
#[derive(Clone, Debug, Default)]
pub struct CopyRequest {
    /// Paths in the source, possibly with wildcards (Go `filepath.Match` rules).
    pub sources: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dest`): file name and content.
    pub inline_files: Vec<(String, Vec<u8>)>,
    /// The destination; relative to `workdir` unless absolute.
    pub dest: String,
    /// The stage's WORKDIR; empty means `/`.
    pub workdir: String,
    /// `--chown`: `user`, `user:group`, ids or names of the target image.
    pub chown: Option<String>,
    /// `--chmod`: octal (`0755`) or symbolic (`u+x,go-w`).
    pub chmod: Option<String>,
    /// `--link`: copied like a plain COPY (the layer holds only the copy anyway).
    pub link: bool,
    /// `--parents`: keep the sources' directories (below a `/./` pivot).
    pub parents: bool,
    /// `--exclude` patterns, relative to each source.
    pub exclude: Vec<String>,
    /// ADD rather than COPY.
    pub is_add: bool,
    /// ADD's `--unpack`: `Some(false)` copies a local archive as a file
    /// instead of extracting it into the destination.
    pub unpack: Option<bool>,
    /// The layer directory of an earlier run of this step: a file there that
    /// is exactly what this copy would write is linked instead of copied.
    pub earlier: Option<PathBuf>,
}

/// Runs a COPY/ADD: writes its diff against `target` into `out_dir`, an empty
/// directory.
pub fn copy_into(
    req: &CopyRequest,
    from: CopyFrom<'_>,
    target: &Rootfs,
    out_dir: &Path,
) -> Result<CopyStats> {
    check_local_sources(req)?;
    let owner = req
        .chown
        .as_deref()
        .map(|spec| resolve_owner(spec, target))
        .transpose()?;
    let chmod = req.chmod.as_deref().map(ModeSpec::parse).transpose()?;
    let exclude = compile_excludes(&req.exclude)?;
    let (tree, source_owner) = match from {
        CopyFrom::Context(ctx) => (ctx.tree(), Some((0, 0))),
        CopyFrom::Image(rootfs) => (rootfs.tree(), None),
    };

    let mut items = Vec::new();
    for spec in &req.sources {
        let expanded = expand(&tree, spec, req.parents).map_err(|e| match (e, &from) {
            (FileOpError::SourceNotFound { path }, CopyFrom::Context(ctx)) => match ctx.ignored_source(spec) {
                Some((pattern, file)) => FileOpError::SourceIgnored { path, pattern, file },
                None => FileOpError::SourceNotFound { path },
            },
            (e, _) => e,
        })?;
        items.extend(expanded);
    }
    let dest = Destination::new(
        &req.dest,
        &req.workdir,
        items.len() + req.inline_files.len() > 1,
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
        exclude: exclude.as_ref(),
        earlier: req.earlier.as_deref(),
    };
    let mut copier = TreeCopier::new(&tree, &mut out, options);
    let mut archives = 0;
    for item in &items {
        if req.is_add && req.unpack != Some(false) && is_archive(&tree, &item.node)? {
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
        copy_item(&mut copier, item, &dest, &new_dir)?;
    }
    for (name, content) in &req.inline_files {
        let cleaned = ImagePath::lexical(name);
        let name = cleaned.file_name().unwrap_or(OsStr::new(name));
        let target = file_target(copier.output(), &dest, name, &new_dir)?;
        copier.copy_inline(content, &target)?;
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
    item: &SourceItem,
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
    copier.copy_source(&item.node, &target, item.include.as_ref())
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
fn check_local_sources(req: &CopyRequest) -> Result<()> {
    for src in &req.sources {
        let what = if is_git_source(src) {
            "a git repository"
        } else if src.starts_with("http://") || src.starts_with("https://") {
            "a URL"
        } else {
            continue;
        };
        if req.is_add {
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
