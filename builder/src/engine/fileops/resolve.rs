//! Symlink resolution confined to a root.
//!
//! Resolution walks the merged tree one component at a time. A symlink's target is
//! spliced into the remaining components; an absolute target restarts at the
//! root of the tree and `..` never climbs above it, exactly as if the tree were
//! chrooted. The result therefore always names a place inside the root, whatever
//! the links say, and holds no symlink except possibly its last component (when
//! that one is not followed).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};

use super::error::{FileOpError, Result};
use super::fsio::EntryKind;
use super::imagepath::{split_names, ImagePath};
use super::tree::{LayeredTree, Node};

/// The most symlinks one resolution follows, as Linux does.
const MAX_SYMLINKS: usize = 40;

/// Resolves `path` (taken as absolute) inside `tree`. With `follow_last`, a symlink
/// in the last position is followed too. Components that do not exist are kept
/// as written, so the result can name a path to be created.
pub(crate) fn resolve(tree: &LayeredTree<'_>, path: &[u8], follow_last: bool) -> Result<ImagePath> {
    resolve_names(tree, split_names(path).into(), follow_last)
}

/// [`resolve`] for a path that is already split (and lexically clean).
pub(crate) fn resolve_path(
    tree: &LayeredTree<'_>,
    path: &ImagePath,
    follow_last: bool,
) -> Result<ImagePath> {
    resolve_names(
        tree,
        path.components().map(OsStr::to_os_string).collect(),
        follow_last,
    )
}

fn resolve_names(
    tree: &LayeredTree<'_>,
    mut todo: VecDeque<OsString>,
    follow_last: bool,
) -> Result<ImagePath> {
    let original = todo.clone();
    let mut out = ImagePath::root();
    // The node at `out` when known; `None` means "look it up again".
    let mut current: Option<Node> = None;
    // Once a component is missing, nothing below it can be a symlink.
    let mut missing = false;
    let mut followed = 0;

    while let Some(name) = todo.pop_front() {
        if name == ".." {
            out.pop();
            current = None;
            missing = false;
            continue;
        }
        if missing {
            out.push(&name);
            continue;
        }
        let dir = match current.take() {
            Some(node) => node,
            None => match tree.lookup(&out)? {
                Some(node) => node,
                None => {
                    missing = true;
                    out.push(&name);
                    continue;
                }
            },
        };
        let child = if dir.is_dir() {
            tree.child(&dir, &name)?
        } else {
            None
        };
        match child {
            None => {
                missing = true;
                out.push(&name);
            }
            Some(node)
                if node.attrs.kind == EntryKind::Symlink && (follow_last || !todo.is_empty()) =>
            {
                followed += 1;
                if followed > MAX_SYMLINKS {
                    return Err(FileOpError::SymlinkLoop {
                        path: display_names(&original),
                    });
                }
                let target = tree.read_link(&node)?;
                if target.starts_with(b"/") {
                    out = ImagePath::root();
                }
                for part in split_names(&target).into_iter().rev() {
                    todo.push_front(part);
                }
                current = None;
            }
            Some(node) => {
                out.push(&name);
                current = Some(node);
            }
        }
    }
    Ok(out)
}

/// The names as an absolute path, for messages.
fn display_names(names: &VecDeque<OsString>) -> String {
    let parts: Vec<_> = names.iter().map(|n| n.to_string_lossy()).collect();
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fileops::testutil::Layers;

    fn resolve_str(tree: &LayeredTree<'_>, p: &str, follow: bool) -> String {
        resolve(tree, p.as_bytes(), follow).unwrap().display()
    }

    #[test]
    fn follows_links_inside_the_root_only() {
        let l = Layers::new(1);
        l.dir(0, "usr/lib");
        l.symlink(0, "lib", "usr/lib");
        l.symlink(0, "abs", "/usr");
        l.symlink(0, "escape", "../../../../etc");
        l.symlink(0, "app", "/../../etc");
        let tree = l.tree();
        assert_eq!(resolve_str(&tree, "/lib/x", true), "/usr/lib/x");
        assert_eq!(resolve_str(&tree, "/abs/lib", true), "/usr/lib");
        assert_eq!(resolve_str(&tree, "/escape/passwd", true), "/etc/passwd");
        assert_eq!(resolve_str(&tree, "/app/passwd", true), "/etc/passwd");
        assert_eq!(resolve_str(&tree, "/../../x", true), "/x");
    }

    #[test]
    fn last_component_followed_only_on_request() {
        let l = Layers::new(1);
        l.dir(0, "data");
        l.symlink(0, "link", "data");
        let tree = l.tree();
        assert_eq!(resolve_str(&tree, "/link", false), "/link");
        assert_eq!(resolve_str(&tree, "/link", true), "/data");
    }

    #[test]
    fn relative_link_resolves_against_its_directory() {
        let l = Layers::new(1);
        l.dir(0, "a/b");
        l.dir(0, "a/c");
        l.symlink(0, "a/b/up", "../c");
        let tree = l.tree();
        assert_eq!(resolve_str(&tree, "/a/b/up/f", true), "/a/c/f");
    }

    #[test]
    fn symlink_loops_are_reported() {
        let l = Layers::new(1);
        l.symlink(0, "x", "y");
        l.symlink(0, "y", "x");
        let tree = l.tree();
        let err = resolve(&tree, b"/x/z", true).unwrap_err();
        assert!(matches!(err, FileOpError::SymlinkLoop { .. }), "{err}");
    }

    #[test]
    fn links_in_upper_layers_and_whiteouts_apply() {
        let l = Layers::new(2);
        l.dir(0, "real");
        l.dir(0, "other");
        l.symlink(1, "real", "/other");
        let tree = l.tree();
        assert_eq!(resolve_str(&tree, "/real/f", true), "/other/f");
        l.whiteout(1, "other");
        let tree = l.tree();
        // The link still points to /other, which no longer exists: kept as written.
        assert_eq!(resolve_str(&tree, "/real/f", true), "/other/f");
    }
}
