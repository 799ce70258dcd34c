//! A merged, read-only view of a stack of layer directories.
//!
//! Every layer directory holds one layer's diff. An entry in a higher layer hides
//! the same path below it, except that directories merge with the directories
//! under them; a whiteout (character device 0:0) hides the path in all lower
//! layers and an opaque directory hides everything below it in lower layers. The
//! build context is the degenerate case: one directory, no whiteouts, and a
//! [`PathFilter`] (the `.dockerignore` rules) that makes some paths invisible.
//!
//! Lookups walk one component at a time and `lstat` every step, so a symlink in a
//! layer directory is reported as a symlink and never followed on the host.
//! Listing a directory stats its entries relative to the open directory, and
//! [`LayeredTree::walk_prefetched`] lists a subtree on several threads a bounded
//! window ahead of a walk that needs all of it (hashing a big build context).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use super::error::{FileOpError, Result};
use super::fsio::{self, Attrs};
use super::imagepath::ImagePath;

/// Whether a filtered path can be seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Visibility {
    Visible,
    Hidden,
    /// A hidden directory that still shows the entries inside it that are visible
    /// on their own (a `.dockerignore` exception below an excluded directory); it
    /// is visible exactly when one of them is.
    HiddenUnlessChildVisible,
}

/// Decides which paths of a tree can be seen. Shared by the threads of
/// [`LayeredTree::walk_prefetched`].
pub(crate) trait PathFilter: Sync {
    /// `rel` is '/'-separated, relative to the tree's root.
    fn visibility(&self, rel: &str, is_dir: bool) -> Visibility;
}

/// One visible entry of a [`LayeredTree`].
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub path: ImagePath,
    pub attrs: Attrs,
    /// The layer whose entry is visible; `None` for the root of an empty stack.
    layer: Option<usize>,
    /// For directories: the layers, top first, whose directories at this path
    /// merge into the one seen.
    merged: Vec<usize>,
}

impl Node {
    /// A node found in layer `layer`, before [`LayeredTree::child_in`] names it.
    fn unnamed(attrs: Attrs, layer: usize, merged: Vec<usize>) -> Node {
        Node {
            path: ImagePath::root(),
            attrs,
            layer: Some(layer),
            merged,
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.attrs.is_dir()
    }

    /// The index of the layer that holds the visible entry.
    pub(crate) fn layer(&self) -> Option<usize> {
        self.layer
    }
}

/// The merged view of layer directories (bottom first).
pub(crate) struct LayeredTree<'a> {
    layers: Vec<PathBuf>,
    whiteouts: bool,
    filter: Option<&'a dyn PathFilter>,
    /// Directory listings made ahead of a walk by [`LayeredTree::walk_prefetched`],
    /// each taken (once) by the walk that asks for it.
    prefetch: Mutex<Prefetch>,
    wake: Condvar,
}

/// How many listed entries the listers of [`LayeredTree::walk_prefetched`] may hold
/// that the walk has not taken yet (an entry is about 170 bytes).
const PREFETCH_WINDOW: usize = 8192;

/// The shared state of [`LayeredTree::walk_prefetched`].
#[derive(Default)]
struct Prefetch {
    /// Directories to list, the next on top: depth first, in the walk's order.
    pending: Vec<Node>,
    /// The paths in `pending` the walk has not claimed.
    queued: HashSet<ImagePath>,
    /// Directories in `pending` the walk listed itself: the listers skip them.
    claimed: HashSet<ImagePath>,
    /// Directories being listed now.
    listing: HashSet<ImagePath>,
    ready: HashMap<ImagePath, Vec<Node>>,
    /// Entries in `ready`.
    buffered: usize,
    /// A walk is running: listers stop when it ends.
    active: bool,
}

impl Prefetch {
    /// Queues the directories among `listed` (sorted by name) so that the first is
    /// listed first.
    fn queue(&mut self, listed: &[Node]) {
        for dir in listed.iter().rev().filter(|n| n.is_dir()) {
            self.queued.insert(dir.path.clone());
            self.pending.push(dir.clone());
        }
    }

    /// The next directory to list, marked as being listed.
    fn take_pending(&mut self) -> Option<Node> {
        while let Some(next) = self.pending.pop() {
            if self.claimed.remove(&next.path) {
                continue;
            }
            self.queued.remove(&next.path);
            self.listing.insert(next.path.clone());
            return Some(next);
        }
        None
    }
}

/// The open directories of one listing, by layer index: names are looked up
/// relative to them instead of walking the whole host path again.
struct OpenDirs(Vec<Option<OwnedFd>>);

impl<'a> LayeredTree<'a> {
    /// A view of image layers: whiteouts and opaque directories are honoured.
    pub(crate) fn image(layers: Vec<PathBuf>) -> Self {
        LayeredTree {
            layers,
            whiteouts: true,
            filter: None,
            prefetch: Mutex::default(),
            wake: Condvar::new(),
        }
    }

    /// A view of one plain directory, unfiltered: device nodes are ordinary entries.
    pub(crate) fn plain_dir(root: PathBuf) -> Self {
        LayeredTree {
            layers: vec![root],
            whiteouts: false,
            filter: None,
            prefetch: Mutex::default(),
            wake: Condvar::new(),
        }
    }

    /// A view of one plain directory, filtered: device nodes are ordinary entries.
    pub(crate) fn filtered_dir(root: PathBuf, filter: &'a dyn PathFilter) -> Self {
        LayeredTree {
            layers: vec![root],
            whiteouts: false,
            filter: Some(filter),
            prefetch: Mutex::default(),
            wake: Condvar::new(),
        }
    }

    /// The host directory of layer `layer` (an index that [`Node::layer`] gave).
    pub(crate) fn layer_dir(&self, layer: usize) -> &Path {
        &self.layers[layer]
    }

    /// Where the visible entry lives on the host (`None` for an empty stack's root).
    pub(crate) fn host_path(&self, node: &Node) -> Option<PathBuf> {
        node.layer
            .map(|l| self.layers[l].join(node.path.to_relative()))
    }

    pub(crate) fn root(&self) -> Result<Node> {
        let Some(top) = self.layers.len().checked_sub(1) else {
            return Ok(Node {
                path: ImagePath::root(),
                attrs: Attrs::synthetic_dir(),
                layer: None,
                merged: Vec::new(),
            });
        };
        let top_dir = &self.layers[top];
        let attrs = fsio::lstat(top_dir)
            .map_err(|e| FileOpError::io("stat", top_dir, e))?
            .filter(Attrs::is_dir)
            .ok_or_else(|| {
                FileOpError::io(
                    "open layer",
                    top_dir,
                    std::io::Error::from_raw_os_error(libc::ENOTDIR),
                )
            })?;
        let mut merged = Vec::new();
        for l in (0..=top).rev() {
            merged.push(l);
            if self.whiteouts && fsio::is_opaque(&self.layers[l]) {
                break;
            }
        }
        Ok(Node {
            path: ImagePath::root(),
            attrs,
            layer: Some(top),
            merged,
        })
    }

    /// The visible entry `name` inside the directory `dir`, if any.
    pub(crate) fn child(&self, dir: &Node, name: &OsStr) -> Result<Option<Node>> {
        self.child_in(dir, name, None)
    }

    /// [`LayeredTree::child`], with `dir` already open in its layers.
    fn child_in(&self, dir: &Node, name: &OsStr, open: Option<&OpenDirs>) -> Result<Option<Node>> {
        let path = dir.path.join(name);
        let mut found: Option<Node> = None;
        for &l in &dir.merged {
            let host = || self.layers[l].join(path.to_relative());
            let attrs = match open.and_then(|o| o.0.get(l)).and_then(Option::as_ref) {
                Some(fd) => fsio::lstat_at(fd, name),
                None => fsio::lstat(&host()),
            };
            let Some(attrs) = attrs.map_err(|e| FileOpError::io("stat", host(), e))? else {
                continue;
            };
            if self.whiteouts && attrs.is_whiteout() {
                break;
            }
            if !attrs.is_dir() {
                // A non-directory hides everything below it; under a directory
                // found higher up it is itself hidden.
                if found.is_none() {
                    found = Some(Node::unnamed(attrs, l, Vec::new()));
                }
                break;
            }
            match &mut found {
                Some(node) => node.merged.push(l),
                None => found = Some(Node::unnamed(attrs, l, vec![l])),
            }
            if self.whiteouts && fsio::is_opaque(&host()) {
                break;
            }
        }
        let Some(mut node) = found else {
            return Ok(None);
        };
        // Named last: the path is moved in, not copied for every layer.
        node.path = path;
        let Some(filter) = self.filter else {
            return Ok(Some(node));
        };
        match filter.visibility(&node.path.to_slash_relative(), node.is_dir()) {
            Visibility::Visible => Ok(Some(node)),
            Visibility::Hidden => Ok(None),
            Visibility::HiddenUnlessChildVisible => {
                if node.is_dir() && !self.children(&node)?.is_empty() {
                    Ok(Some(node))
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// The entry at `path`, taking every component literally (no symlink is
    /// followed; a symlink on the way means the path does not exist).
    pub(crate) fn lookup(&self, path: &ImagePath) -> Result<Option<Node>> {
        let mut node = self.root()?;
        for name in path.components() {
            if !node.is_dir() {
                return Ok(None);
            }
            match self.child(&node, name)? {
                Some(next) => node = next,
                None => return Ok(None),
            }
        }
        Ok(Some(node))
    }

    /// The visible entries of a directory, sorted by name.
    pub(crate) fn children(&self, dir: &Node) -> Result<Vec<Node>> {
        let mut ahead = self.ahead();
        loop {
            if let Some(children) = ahead.ready.remove(&dir.path) {
                ahead.buffered -= children.len();
                drop(ahead);
                self.wake.notify_all();
                return Ok(children);
            }
            if !ahead.listing.contains(&dir.path) {
                break;
            }
            ahead = self.wait(ahead);
        }
        // Not listed ahead: list it here, and let the listers go on below it.
        let claimed = ahead.queued.remove(&dir.path);
        if claimed {
            ahead.claimed.insert(dir.path.clone());
        }
        drop(ahead);
        let children = self.list(dir)?;
        if claimed {
            self.ahead().queue(&children);
            self.wake.notify_all();
        }
        Ok(children)
    }

    fn list(&self, dir: &Node) -> Result<Vec<Node>> {
        let mut names = fsio::NameList::default();
        let mut open = OpenDirs(Vec::new());
        open.0.resize_with(self.layers.len(), || None);
        for &l in &dir.merged {
            let host = self.layers[l].join(dir.path.to_relative());
            let fd = fsio::open_dir_nofollow(&host)
                .map_err(|e| FileOpError::io("read directory", &host, e))?;
            fsio::read_dir_names(&fd, &mut names)
                .map_err(|e| FileOpError::io("read directory", &host, e))?;
            open.0[l] = Some(fd);
        }
        // One layer's names are unique; merged layers repeat some.
        names.sort_dedup();
        let mut out = Vec::with_capacity(names.len());
        for name in names.iter() {
            if let Some(node) = self.child_in(dir, name, Some(&open))? {
                out.push(node);
            }
        }
        Ok(out)
    }

    /// Runs `walk` (a depth-first walk below `dir` that lists directories with
    /// [`LayeredTree::children`]) while `threads` listers list the directories
    /// below `dir` ahead of it, at most [`PREFETCH_WINDOW`] entries ahead. A
    /// listing is made exactly as `children` makes it, so the walk sees the same
    /// tree either way; a directory the listers have not reached, or failed to
    /// list, the walk lists itself (and reports its error).
    ///
    /// The window keeps memory flat in the size of the tree: listing a 200,000-file
    /// context whole before walking it held 34 MB of listings at once.
    pub(crate) fn walk_prefetched<R>(&self, dir: &Node, threads: usize, walk: impl FnOnce() -> R) -> R {
        if !dir.is_dir() || threads < 1 {
            return walk();
        }
        {
            let mut ahead = self.ahead();
            *ahead = Prefetch { active: true, ..Prefetch::default() };
            ahead.queue(std::slice::from_ref(dir));
        }
        let lister = || loop {
            let next = {
                let mut ahead = self.ahead();
                loop {
                    if !ahead.active {
                        return;
                    }
                    if ahead.buffered < PREFETCH_WINDOW {
                        if let Some(next) = ahead.take_pending() {
                            break next;
                        }
                    }
                    ahead = self.wait(ahead);
                }
            };
            let children = self.list(&next).ok();
            let mut ahead = self.ahead();
            ahead.listing.remove(&next.path);
            if let Some(children) = children {
                ahead.queue(&children);
                ahead.buffered += children.len();
                ahead.ready.insert(next.path, children);
            }
            drop(ahead);
            self.wake.notify_all();
        };
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(lister);
            }
            let result = walk();
            *self.ahead() = Prefetch::default();
            self.wake.notify_all();
            result
        })
    }

    fn ahead(&self) -> std::sync::MutexGuard<'_, Prefetch> {
        self.prefetch.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'g>(&self, guard: std::sync::MutexGuard<'g, Prefetch>) -> std::sync::MutexGuard<'g, Prefetch> {
        self.wake.wait(guard).unwrap_or_else(|e| e.into_inner())
    }

    /// The target of a symlink entry, as raw bytes.
    pub(crate) fn read_link(&self, node: &Node) -> Result<Vec<u8>> {
        let host = self.existing_host_path(node)?;
        fsio::read_link(&host).map_err(|e| FileOpError::io("read link", &host, e))
    }

    /// Opens a regular file entry for reading.
    pub(crate) fn open_file(&self, node: &Node) -> Result<File> {
        let host = self.existing_host_path(node)?;
        fsio::open_nofollow(&host).map_err(|e| FileOpError::io("open", &host, e))
    }

    /// The extended attributes of an entry (overlayfs' own excluded).
    pub(crate) fn xattrs(&self, node: &Node) -> Result<Vec<(OsString, Vec<u8>)>> {
        match self.host_path(node) {
            Some(host) => {
                fsio::read_xattrs(&host).map_err(|e| FileOpError::io("read xattrs", &host, e))
            }
            None => Ok(Vec::new()),
        }
    }

    fn existing_host_path(&self, node: &Node) -> Result<PathBuf> {
        self.host_path(node).ok_or_else(|| FileOpError::NotAFile {
            path: node.path.display(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fileops::testutil::Layers;

    fn kinds(tree: &LayeredTree<'_>, path: &str) -> Option<(bool, Option<usize>)> {
        tree.lookup(&ImagePath::lexical(path))
            .unwrap()
            .map(|n| (n.is_dir(), n.layer()))
    }

    fn names(tree: &LayeredTree<'_>, path: &str) -> Vec<String> {
        let dir = tree.lookup(&ImagePath::lexical(path)).unwrap().unwrap();
        tree.children(&dir)
            .unwrap()
            .iter()
            .map(|n| n.path.display())
            .collect()
    }

    #[test]
    fn upper_entries_hide_lower_ones_and_directories_merge() {
        let l = Layers::new(3);
        l.file(0, "d/a", "");
        l.file(1, "d/b", "");
        l.dir(0, "was_dir/x");
        l.file(1, "was_dir", "");
        l.file(0, "was_file", "");
        l.dir(2, "was_file");
        let tree = l.tree();
        assert_eq!(names(&tree, "/d"), vec!["/d/a", "/d/b"]);
        assert_eq!(kinds(&tree, "/was_dir"), Some((false, Some(1))));
        assert_eq!(kinds(&tree, "/was_dir/x"), None);
        assert_eq!(kinds(&tree, "/was_file"), Some((true, Some(2))));
        assert!(names(&tree, "/was_file").is_empty());
    }

    #[test]
    fn whiteouts_and_both_opaque_markers_hide_lower_content() {
        let l = Layers::new(2);
        l.file(0, "t/old", "");
        l.file(0, "u/old", "");
        l.dir(0, "gone/sub");
        l.opaque(1, "t");
        l.dir(1, "u");
        rustix::fs::lsetxattr(
            l.path(1, "u"),
            "user.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        l.whiteout(1, "gone");
        let tree = l.tree();
        assert!(names(&tree, "/t").is_empty());
        assert!(names(&tree, "/u").is_empty());
        assert_eq!(kinds(&tree, "/gone"), None);
        assert_eq!(kinds(&tree, "/gone/sub"), None);
        assert_eq!(names(&tree, "/"), vec!["/t", "/u"]);
    }

    #[test]
    fn a_plain_directory_view_keeps_device_nodes() {
        let l = Layers::new(1);
        l.whiteout(0, "dev0");
        struct All;
        impl PathFilter for All {
            fn visibility(&self, _: &str, _: bool) -> Visibility {
                Visibility::Visible
            }
        }
        let tree = LayeredTree::filtered_dir(l.dirs[0].clone(), &All);
        assert_eq!(kinds(&tree, "/dev0"), Some((false, Some(0))));
        assert_eq!(kinds(&l.tree(), "/dev0"), None);
    }

    /// Every visible path below the root, walked depth first with `children`.
    fn walk_all(tree: &LayeredTree<'_>) -> Vec<(String, bool, Option<usize>)> {
        fn walk(tree: &LayeredTree<'_>, dir: &Node, out: &mut Vec<(String, bool, Option<usize>)>) {
            for child in tree.children(dir).unwrap() {
                out.push((child.path.display(), child.is_dir(), child.layer()));
                if child.is_dir() {
                    walk(tree, &child, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(tree, &tree.root().unwrap(), &mut out);
        out
    }

    #[test]
    fn a_prefetched_walk_sees_the_same_tree() {
        let l = Layers::new(2);
        for d in 0..6 {
            for f in 0..5 {
                l.file(0, &format!("d{d}/sub/f{f}"), "x");
            }
        }
        l.file(1, "d1/sub/f9", "upper");
        l.opaque(1, "d2");
        l.file(1, "d2/only", "");
        l.whiteout(1, "d3");
        l.dir(1, "d4/sub/deeper/still");
        let plain = walk_all(&l.tree());
        let prefetched = l.tree();
        for threads in [1, 3] {
            let walked = prefetched.walk_prefetched(&prefetched.root().unwrap(), threads, || walk_all(&prefetched));
            assert_eq!(walked, plain);
            assert!(prefetched.ahead().ready.is_empty(), "nothing is held after the walk");
        }
        assert!(plain.iter().any(|(p, ..)| p == "/d4/sub/deeper/still"));
        assert!(!plain.iter().any(|(p, ..)| p.starts_with("/d3")));
        assert!(!plain.iter().any(|(p, ..)| p.starts_with("/d2/sub")));

        // A filtered directory: hidden entries stay hidden, exceptions below a
        // hidden directory still show.
        struct Filter;
        impl PathFilter for Filter {
            fn visibility(&self, rel: &str, is_dir: bool) -> Visibility {
                match rel {
                    "d0" | "d5/sub/f1" => Visibility::Hidden,
                    "d1" | "d1/sub" if is_dir => Visibility::HiddenUnlessChildVisible,
                    r if r.starts_with("d1/") && r != "d1/sub/f2" => Visibility::Hidden,
                    _ => Visibility::Visible,
                }
            }
        }
        let plain = walk_all(&LayeredTree::filtered_dir(l.dirs[0].clone(), &Filter));
        let prefetched = LayeredTree::filtered_dir(l.dirs[0].clone(), &Filter);
        let walked = prefetched.walk_prefetched(&prefetched.root().unwrap(), 2, || walk_all(&prefetched));
        assert_eq!(walked, plain);
        let paths: Vec<&str> = plain.iter().map(|(p, ..)| p.as_str()).collect();
        assert!(paths.contains(&"/d1/sub/f2"));
        assert!(!paths.contains(&"/d1/sub/f3"));
        assert!(!paths.iter().any(|p| p.starts_with("/d0")));
        assert!(!paths.contains(&"/d5/sub/f1"));
    }

    #[test]
    fn an_empty_stack_has_only_a_root() {
        let tree = LayeredTree::image(Vec::new());
        assert_eq!(kinds(&tree, "/"), Some((true, None)));
        assert_eq!(kinds(&tree, "/etc"), None);
    }
}
