//! The build context: the directory COPY and ADD read from, minus what
//! `.dockerignore` leaves out.
//!
//! The ignore file is `<Dockerfile>.dockerignore` beside the Dockerfile when that
//! exists, else `.dockerignore` at the context root. Excluded paths are invisible
//! to every file operation (direct sources, directory walks and wildcard
//! matches alike); the Dockerfile and the ignore file themselves are read by
//! path and can be excluded without harm.

use std::io;
use std::path::{Path, PathBuf};

use rbuild_frontend::dockerignore::{IgnorePatterns, PatternError};

use crate::engine::fileops::tree::{LayeredTree, PathFilter, Visibility};

/// The name of the ignore file at the context root.
const DOCKERIGNORE: &str = ".dockerignore";

/// Why a build context cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context {}: {source}", root.display())]
    Open {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("build context {} is not a directory", root.display())]
    NotADirectory { root: PathBuf },
    #[error("read {}: {source}", path.display())]
    ReadIgnoreFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", path.display())]
    IgnorePatterns {
        path: PathBuf,
        #[source]
        source: PatternError,
    },
}

/// A build context directory with its ignore rules.
#[derive(Debug)]
pub struct BuildContext {
    root: PathBuf,
    ignore: IgnorePatterns,
    ignore_file: Option<PathBuf>,
}

impl BuildContext {
    /// Opens the context at `root`. `dockerfile` is the Dockerfile's path (as
    /// given, relative to the current directory or absolute; `None` when it is
    /// read from stdin), used to find `<Dockerfile>.dockerignore` beside it, which
    /// takes precedence over the context's `.dockerignore`.
    pub fn open(root: &Path, dockerfile: Option<&Path>) -> Result<Self, ContextError> {
        let root = root.canonicalize().map_err(|source| ContextError::Open {
            root: root.to_path_buf(),
            source,
        })?;
        if !root.is_dir() {
            return Err(ContextError::NotADirectory { root });
        }
        let candidates = dockerfile
            .map(dockerfile_ignore_path)
            .into_iter()
            .chain(std::iter::once(root.join(DOCKERIGNORE)));
        for path in candidates {
            match std::fs::read_to_string(&path) {
                Ok(content) => {
                    let ignore = IgnorePatterns::parse(&content).map_err(|source| {
                        ContextError::IgnorePatterns {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    return Ok(BuildContext {
                        root,
                        ignore,
                        ignore_file: Some(path),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ContextError::ReadIgnoreFile { path, source }),
            }
        }
        Ok(BuildContext {
            root,
            ignore: IgnorePatterns::default(),
            ignore_file: None,
        })
    }

    /// The context directory (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The ignore file in use, if any.
    pub fn ignore_file(&self) -> Option<&Path> {
        self.ignore_file.as_deref()
    }

    /// The ignore rules (empty without an ignore file).
    pub fn ignore_patterns(&self) -> &IgnorePatterns {
        &self.ignore
    }

    /// Whether `rel` ('/'-separated, relative to the root) is left out.
    pub fn is_excluded(&self, rel: &str) -> bool {
        self.ignore.is_excluded(rel)
    }

    /// When the COPY source `spec` (no wildcards) names a file or directory
    /// that is in the context directory but left out by the ignore file: the
    /// pattern that leaves it out and the ignore file.
    pub fn ignored_source(&self, spec: &str) -> Option<(String, PathBuf)> {
        if crate::engine::fileops::glob::contains_wildcards(spec) {
            return None;
        }
        // Cleaned as COPY cleans its sources: `..` stays inside the context.
        let rel = crate::engine::fileops::imagepath::ImagePath::lexical(spec).to_slash_relative();
        if rel.is_empty() {
            return None;
        }
        std::fs::symlink_metadata(self.root.join(&rel)).ok()?;
        let pattern = self.ignore.excluded_by(&rel)?;
        Some((pattern.to_string(), self.ignore_file.clone()?))
    }

    /// The context as a tree for the file operations.
    pub(crate) fn tree(&self) -> LayeredTree<'_> {
        if self.ignore.is_empty() {
            // Nothing to filter: no path needs to be spelled out and matched.
            return LayeredTree::plain_dir(self.root.clone());
        }
        LayeredTree::filtered_dir(self.root.clone(), self)
    }
}

impl PathFilter for BuildContext {
    fn visibility(&self, rel: &str, is_dir: bool) -> Visibility {
        if !self.ignore.is_excluded(rel) {
            Visibility::Visible
        } else if is_dir && self.ignore.has_exceptions() && self.ignore.may_include_under(rel) {
            Visibility::HiddenUnlessChildVisible
        } else {
            Visibility::Hidden
        }
    }
}

/// `<dir>/<name>.dockerignore` for the Dockerfile `<dir>/<name>`.
fn dockerfile_ignore_path(dockerfile: &Path) -> PathBuf {
    let mut name = dockerfile.file_name().unwrap_or_default().to_os_string();
    name.push(".dockerignore");
    dockerfile.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fileops::imagepath::ImagePath;
    use tempfile::TempDir;

    fn context(files: &[(&str, &str)]) -> TempDir {
        let dir = TempDir::new().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    fn visible(ctx: &BuildContext, path: &str) -> bool {
        ctx.tree()
            .lookup(&ImagePath::lexical(path))
            .unwrap()
            .is_some()
    }

    #[test]
    fn without_ignore_file_everything_is_visible() {
        let dir = context(&[("a/b.txt", "x")]);
        let ctx = BuildContext::open(dir.path(), None).unwrap();
        assert!(ctx.ignore_file().is_none());
        assert!(!ctx.is_excluded("a/b.txt"));
        assert!(visible(&ctx, "a/b.txt"));
    }

    #[test]
    fn dockerignore_at_root_hides_paths_and_their_contents() {
        let dir = context(&[
            (".dockerignore", "secret\n*.log\n"),
            ("secret/key", "k"),
            ("x.log", ""),
            ("keep", ""),
        ]);
        let ctx = BuildContext::open(dir.path(), None).unwrap();
        assert!(ctx.is_excluded("secret/key"));
        assert!(!visible(&ctx, "secret"));
        assert!(!visible(&ctx, "secret/key"));
        assert!(!visible(&ctx, "x.log"));
        assert!(visible(&ctx, "keep"));
        let names: Vec<_> = ctx
            .tree()
            .children(&ctx.tree().root().unwrap())
            .unwrap()
            .iter()
            .map(|n| n.path.display())
            .collect();
        assert_eq!(names, vec!["/.dockerignore", "/keep"]);
    }

    #[test]
    fn dockerfile_specific_ignore_file_wins() {
        let dir = context(&[
            (".dockerignore", "a\n"),
            ("sub/Dockerfile", ""),
            ("sub/Dockerfile.dockerignore", "b\n"),
            ("a", ""),
            ("b", ""),
        ]);
        let dockerfile = dir.path().join("sub/Dockerfile");
        let ctx = BuildContext::open(dir.path(), Some(&dockerfile)).unwrap();
        assert_eq!(
            ctx.ignore_file(),
            Some(dir.path().join("sub/Dockerfile.dockerignore").as_path())
        );
        assert!(visible(&ctx, "a"));
        assert!(!visible(&ctx, "b"));
        // Without the specific file, the root one applies.
        let other = dir.path().join("sub/Other.Dockerfile");
        let ctx = BuildContext::open(dir.path(), Some(&other)).unwrap();
        assert!(!visible(&ctx, "a"));
        assert!(visible(&ctx, "b"));
    }

    #[test]
    fn ignore_file_and_dockerfile_may_exclude_themselves() {
        let dir = context(&[
            (".dockerignore", ".dockerignore\nDockerfile\nsecret\n"),
            ("Dockerfile", ""),
            ("secret", ""),
        ]);
        let ctx = BuildContext::open(dir.path(), Some(&dir.path().join("Dockerfile"))).unwrap();
        assert!(!visible(&ctx, ".dockerignore"));
        assert!(!visible(&ctx, "Dockerfile"));
        assert!(!visible(&ctx, "secret"));
    }

    #[test]
    fn exceptions_reinclude_inside_excluded_directories() {
        let dir = context(&[
            (".dockerignore", "docs\n!docs/keep.md\n"),
            ("docs/keep.md", ""),
            ("docs/drop.md", ""),
            ("other/x", ""),
        ]);
        let ctx = BuildContext::open(dir.path(), None).unwrap();
        assert!(visible(&ctx, "docs"));
        assert!(visible(&ctx, "docs/keep.md"));
        assert!(!visible(&ctx, "docs/drop.md"));
        let tree = ctx.tree();
        let docs = tree.lookup(&ImagePath::lexical("docs")).unwrap().unwrap();
        let names: Vec<_> = tree
            .children(&docs)
            .unwrap()
            .iter()
            .map(|n| n.path.display())
            .collect();
        assert_eq!(names, vec!["/docs/keep.md"]);
    }

    #[test]
    fn excluded_directory_without_visible_children_is_hidden() {
        let dir = context(&[
            (".dockerignore", "*\n!*.md\n"),
            ("src/main.rs", ""),
            ("README.md", ""),
        ]);
        let ctx = BuildContext::open(dir.path(), None).unwrap();
        assert!(!visible(&ctx, "src"));
        assert!(visible(&ctx, "README.md"));
    }

    #[test]
    fn errors_name_the_path() {
        let err = BuildContext::open(Path::new("/nonexistent/ctx"), None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ctx"), "{err}");
        let dir = context(&[(".dockerignore", "[\n")]);
        let err = BuildContext::open(dir.path(), None).unwrap_err();
        assert!(err.to_string().contains(".dockerignore"), "{err}");
        let file = context(&[("f", "")]);
        let err = BuildContext::open(&file.path().join("f"), None).unwrap_err();
        assert!(matches!(err, ContextError::NotADirectory { .. }));
    }
}
