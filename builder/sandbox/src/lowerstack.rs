//! Turning an image's layer list into a stack of lower directories that
//! overlayfs accepts, whatever a registry or a Dockerfile made of it:
//!
//! - A layer that appears more than once (two steps with byte-identical
//!   diffs, or a base image that repeats a blob) is one snapshot directory;
//!   overlayfs refuses the same directory twice (`ELOOP`). Only its topmost
//!   occurrence is kept, which gives the same tree: for any path, the upper
//!   copy either decides it or has nothing there, and then neither has the
//!   lower copy.
//! - overlayfs stacks at most [`MAX_OVERLAY_LOWERS`] lower layers (the
//!   kernel's `OVL_MAX_STACK`); the layers below the last that fit are
//!   flattened, by copying, into one directory that takes their place.
//! - Kernels before 6.8 take all lower layers in one `lowerdir` option, which
//!   must fit in a page. When the absolute paths would not, the sandbox
//!   passes short relative names of symlinks (see [`LINKS_DIR`]) instead.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The most lower layers one overlayfs mount takes (`OVL_MAX_STACK`).
pub(crate) const MAX_OVERLAY_LOWERS: usize = 500;

/// The longest `lowerdir=` value `mount(2)` and `fsconfig(2)` take: a page,
/// less the key and the terminating NUL.
pub(crate) const MAX_LOWERDIR_OPTION: usize = 4096 - "lowerdir=".len() - 1;

/// The scratch subdirectory that holds one symlink per lower layer, named by
/// its position from the top (`0`, `1`, …), for kernels without `lowerdir+`.
pub(crate) const LINKS_DIR: &str = "l";

/// The layers a RUN mounts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LowerStack {
    /// Layers (bottom → top) to copy into one directory that becomes the
    /// bottom of [`LowerStack::layers`]; empty when everything fits.
    pub flatten: Vec<PathBuf>,
    /// The layers to mount directly, bottom → top, each once.
    pub layers: Vec<PathBuf>,
}

impl LowerStack {
    /// Plans the stack for `lower` (bottom → top, possibly with repeats).
    pub fn plan(lower: &[PathBuf]) -> Self {
        let mut layers = without_repeats(lower);
        // One slot is left for the flattened directory.
        let flatten = if layers.len() > MAX_OVERLAY_LOWERS {
            layers
                .drain(..layers.len() + 1 - MAX_OVERLAY_LOWERS)
                .collect()
        } else {
            Vec::new()
        };
        LowerStack { flatten, layers }
    }
}

/// `lower` with every layer but its topmost occurrence removed, order kept.
fn without_repeats(lower: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen = HashSet::with_capacity(lower.len());
    let mut kept: Vec<PathBuf> = lower
        .iter()
        .rev()
        .filter(|l| seen.insert(l.as_path()))
        .cloned()
        .collect();
    kept.reverse();
    kept
}

/// Whether the colon-separated `lowerdir` option of `tops` (topmost first,
/// already escaped) would be too long for one option.
pub(crate) fn joined_too_long(tops: &[String]) -> bool {
    let len: usize = tops.iter().map(|t| t.len() + 1).sum();
    len.saturating_sub(1) > MAX_LOWERDIR_OPTION
}

/// The name of the symlink for the lower layer `index_from_top` in [`LINKS_DIR`].
pub(crate) fn link_name(index_from_top: usize) -> String {
    index_from_top.to_string()
}

/// Creates [`LINKS_DIR`] in `scratch` with a symlink per layer of `tops`
/// (topmost first). Returns the directory.
pub(crate) fn create_links(scratch: &Path, tops: &[&Path]) -> std::io::Result<PathBuf> {
    let dir = scratch.join(LINKS_DIR);
    std::fs::create_dir(&dir)?;
    for (i, layer) in tops.iter().enumerate() {
        std::os::unix::fs::symlink(layer, dir.join(link_name(i)))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn repeated_layers_keep_their_topmost_occurrence() {
        let lower = paths(&["/base", "/a", "/b", "/c", "/a", "/b", "/c", "/x"]);
        let stack = LowerStack::plan(&lower);
        assert_eq!(stack.layers, paths(&["/base", "/a", "/b", "/c", "/x"]));
        assert!(stack.flatten.is_empty());

        // A repeat of the bottom layer at the top moves it up.
        let stack = LowerStack::plan(&paths(&["/a", "/b", "/a"]));
        assert_eq!(stack.layers, paths(&["/b", "/a"]));
    }

    #[test]
    fn a_stack_without_repeats_is_unchanged() {
        let lower = paths(&["/1", "/2", "/3"]);
        assert_eq!(
            LowerStack::plan(&lower),
            LowerStack {
                flatten: vec![],
                layers: lower
            }
        );
        assert_eq!(LowerStack::plan(&[]).layers, Vec::<PathBuf>::new());
    }

    #[test]
    fn layers_beyond_overlayfs_limit_are_flattened_from_the_bottom() {
        let lower: Vec<PathBuf> = (0..MAX_OVERLAY_LOWERS + 10)
            .map(|i| PathBuf::from(format!("/l{i}")))
            .collect();
        let stack = LowerStack::plan(&lower);
        // The flattened directory takes one of the overlay's slots.
        assert_eq!(stack.layers.len() + 1, MAX_OVERLAY_LOWERS);
        assert_eq!(stack.flatten, lower[..11]);
        assert_eq!(stack.layers, lower[11..]);

        let exact: Vec<PathBuf> = lower[..MAX_OVERLAY_LOWERS].to_vec();
        assert!(LowerStack::plan(&exact).flatten.is_empty());
    }

    #[test]
    fn joined_length_counts_the_separators() {
        let fits = vec!["x".repeat(MAX_LOWERDIR_OPTION)];
        assert!(!joined_too_long(&fits));
        let two = vec![
            "x".repeat(MAX_LOWERDIR_OPTION / 2),
            "y".repeat(MAX_LOWERDIR_OPTION / 2),
        ];
        assert!(joined_too_long(&two), "the colon makes it one too long");
        let many: Vec<String> = (0..200)
            .map(|_| format!("/var/lib/rbuild/snapshots/{}", "a".repeat(64)))
            .collect();
        assert!(joined_too_long(&many));
        let links: Vec<String> = (0..MAX_OVERLAY_LOWERS).map(link_name).collect();
        assert!(
            !joined_too_long(&links),
            "short names fit any stack overlayfs takes"
        );
    }

    #[test]
    fn links_point_at_the_layers_topmost_first() {
        let dir = tempfile::tempdir().unwrap();
        let tops = [Path::new("/top"), Path::new("/bottom")];
        let links = create_links(dir.path(), &tops).unwrap();
        assert_eq!(
            std::fs::read_link(links.join("0")).unwrap(),
            Path::new("/top")
        );
        assert_eq!(
            std::fs::read_link(links.join("1")).unwrap(),
            Path::new("/bottom")
        );
    }
}
