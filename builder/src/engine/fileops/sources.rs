//! Turning the sources of a COPY/ADD into the entries to copy.
//!
//! A source is a path inside the source tree (the build context or another
//! image), `..` never leaving it. Symlinks along the path, and the source itself
//! when it is a link, are followed inside the tree. A source with wildcards is
//! matched component by component, in name order, below its literal directory;
//! a pattern that matches nothing copies nothing, but a missing literal
//! directory is an error. With `--parents`, a source `pivot/./path` (or just
//! `path`, pivot `/`) copies the pivot's contents selected by `path`.

use std::ffi::OsString;

use super::error::{FileOpError, Result};
use super::fsio::EntryKind;
use super::glob::{contains_wildcards, split_wildcards, SegmentPattern};
use super::imagepath::ImagePath;
use super::patterns::IncludePattern;
use super::resolve::resolve_path;
use super::tree::{LayeredTree, Node};

/// One entry to copy.
#[derive(Clone, Debug)]
pub(crate) struct SourceItem {
    /// The source as written, for messages.
    pub spec: String,
    /// The entry, links at its own path followed.
    pub node: Node,
    /// The name it is copied under into a destination directory: the last
    /// component of the matched path, before any link is followed.
    pub name: OsString,
    /// `--parents`: what to copy below `node`, a directory.
    pub include: Option<IncludePattern>,
}

/// Expands one source.
pub(crate) fn expand(tree: &LayeredTree<'_>, spec: &str, parents: bool) -> Result<Vec<SourceItem>> {
    if !parents {
        return expand_plain(tree, spec);
    }
    let (pivot, pattern) = match spec.split_once("/./") {
        Some((pivot, pattern)) => (pivot, pattern),
        None => ("/", spec),
    };
    let pattern = ImagePath::lexical(pattern).to_slash_relative();
    if !contains_wildcards(pivot) && !contains_wildcards(&pattern) {
        // Without wildcards the selected path must exist.
        let required = ImagePath::lexical(&format!("{pivot}/{pattern}"));
        let resolved = resolve_path(tree, &required, true)?;
        if tree.lookup(&resolved)?.is_none() {
            return Err(FileOpError::SourceNotFound {
                path: spec.to_owned(),
            });
        }
    }
    // An empty selection (`--parents .`) selects the whole pivot.
    let include = match pattern.as_str() {
        "" => None,
        pattern => Some(IncludePattern::new(pattern)?),
    };
    let mut items = expand_plain(tree, pivot)?;
    for item in &mut items {
        item.spec = spec.to_owned();
        item.include = include.clone();
    }
    Ok(items)
}

fn expand_plain(tree: &LayeredTree<'_>, spec: &str) -> Result<Vec<SourceItem>> {
    let (literal, pattern) = split_wildcards(spec);
    let not_found = || FileOpError::SourceNotFound {
        path: spec.to_owned(),
    };
    if pattern.is_empty() {
        let resolved = resolve_path(tree, &literal, true)?;
        let node = tree.lookup(&resolved)?.ok_or_else(not_found)?;
        return Ok(vec![SourceItem {
            spec: spec.to_owned(),
            name: literal.file_name().unwrap_or_default().to_owned(),
            node,
            include: None,
        }]);
    }
    let segments = pattern
        .iter()
        .map(|p| SegmentPattern::compile(p))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| FileOpError::BadPattern {
            pattern: spec.to_owned(),
        })?;
    let base_path = resolve_path(tree, &literal, true)?;
    let base = tree.lookup(&base_path)?.ok_or_else(not_found)?;
    let mut matches = Vec::new();
    find_matches(tree, &base, &segments, &mut matches)?;
    matches
        .into_iter()
        .map(|m| {
            let name = m.path.file_name().unwrap_or_default().to_owned();
            let node = if m.attrs.kind == EntryKind::Symlink {
                let target = resolve_path(tree, &m.path, true)?;
                tree.lookup(&target)?
                    .ok_or_else(|| FileOpError::SourceNotFound {
                        path: m.path.display(),
                    })?
            } else {
                m
            };
            Ok(SourceItem {
                spec: spec.to_owned(),
                node,
                name,
                include: None,
            })
        })
        .collect()
}

/// Entries below `dir` whose relative path matches `segments`, one segment per
/// level; only real directories are descended into.
fn find_matches(
    tree: &LayeredTree<'_>,
    dir: &Node,
    segments: &[SegmentPattern],
    out: &mut Vec<Node>,
) -> Result<()> {
    let Some((first, rest)) = segments.split_first() else {
        return Ok(());
    };
    if !dir.is_dir() {
        return Ok(());
    }
    for child in tree.children(dir)? {
        let name = child
            .path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !first.matches(&name) {
            continue;
        }
        if rest.is_empty() {
            out.push(child);
        } else {
            find_matches(tree, &child, rest, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fileops::testutil::Layers;

    fn names(items: &[SourceItem]) -> Vec<String> {
        items.iter().map(|i| i.node.path.display()).collect()
    }

    #[test]
    fn plain_source_follows_links_inside_the_tree() {
        let l = Layers::new(1);
        l.file(0, "real/f.txt", "x");
        l.symlink(0, "link", "real/f.txt");
        l.symlink(0, "escape", "../../../real");
        let tree = l.tree();
        let items = expand(&tree, "link", false).unwrap();
        assert_eq!(names(&items), vec!["/real/f.txt"]);
        assert_eq!(items[0].name, "link");
        let items = expand(&tree, "/escape/f.txt", false).unwrap();
        assert_eq!(names(&items), vec!["/real/f.txt"]);
        let err = expand(&tree, "missing.txt", false).unwrap_err();
        assert_eq!(err.to_string(), "source \"missing.txt\" not found");
    }

    #[test]
    fn wildcards_match_per_component_in_name_order() {
        let l = Layers::new(1);
        l.file(0, "src/b.rs", "");
        l.file(0, "src/a.rs", "");
        l.file(0, "src/c.txt", "");
        l.file(0, "src/sub/d.rs", "");
        l.file(0, "x1/y.rs", "");
        l.file(0, "x2/y.rs", "");
        let tree = l.tree();
        assert_eq!(
            names(&expand(&tree, "src/*.rs", false).unwrap()),
            vec!["/src/a.rs", "/src/b.rs"]
        );
        assert_eq!(
            names(&expand(&tree, "x*/y.rs", false).unwrap()),
            vec!["/x1/y.rs", "/x2/y.rs"]
        );
        assert!(expand(&tree, "src/*.go", false).unwrap().is_empty());
        let err = expand(&tree, "nodir/*.rs", false).unwrap_err();
        assert!(matches!(err, FileOpError::SourceNotFound { .. }), "{err}");
        let err = expand(&tree, "src/[", false).unwrap_err();
        assert_eq!(err.to_string(), "invalid wildcard pattern \"src/[\"");
    }

    #[test]
    fn parents_split_at_the_pivot_and_require_plain_paths() {
        let l = Layers::new(1);
        l.file(0, "a/b/c.txt", "");
        let tree = l.tree();
        let items = expand(&tree, "a/./b/c.txt", true).unwrap();
        assert_eq!(names(&items), vec!["/a"]);
        assert!(items[0].include.as_ref().unwrap().matches("b/c.txt"));
        let items = expand(&tree, "a/b/c.txt", true).unwrap();
        assert_eq!(names(&items), vec!["/"]);
        assert!(matches!(
            expand(&tree, "a/x.txt", true),
            Err(FileOpError::SourceNotFound { .. })
        ));
        assert_eq!(expand(&tree, "a/*.txt", true).unwrap().len(), 1);
    }
}
