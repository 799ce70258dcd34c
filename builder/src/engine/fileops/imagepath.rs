//! Paths inside an image (or inside the build context): a list of plain name
//! components below the root, never holding `.`, `..` or an empty name. Names are
//! raw bytes, because file names on disk need not be UTF-8; strings for people are
//! made with [`ImagePath::display`].

use std::cmp::Ordering;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// An absolute, lexically clean path inside a root.
///
/// The names are kept '/'-joined in one buffer (empty for the root): a walk
/// over a 20,000-file build context makes a path per entry, and one
/// allocation per path (instead of one per component) is most of what that
/// costs. Names never contain '/', so the buffer splits back unambiguously.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct ImagePath {
    joined: Vec<u8>,
}

impl ImagePath {
    /// The root itself.
    pub(crate) fn root() -> Self {
        Self::default()
    }

    /// Cleans `path` lexically, treating it as absolute: `.` and empty names are
    /// dropped and `..` never climbs above the root (as a chroot would).
    pub(crate) fn lexical(path: &str) -> Self {
        Self::lexical_bytes(path.as_bytes())
    }

    /// [`ImagePath::lexical`] for raw bytes (symlink targets, archive member names).
    pub(crate) fn lexical_bytes(path: &[u8]) -> Self {
        let mut out = Self::root();
        for name in split_bytes(path) {
            if name == b".." {
                out.pop();
            } else {
                out.push(OsStr::from_bytes(name));
            }
        }
        out
    }

    /// The components, outermost first.
    pub(crate) fn components(&self) -> impl DoubleEndedIterator<Item = &OsStr> {
        self.joined
            .split(|&b| b == b'/')
            .filter(|name| !name.is_empty())
            .map(OsStr::from_bytes)
    }

    pub(crate) fn is_root(&self) -> bool {
        self.joined.is_empty()
    }

    /// Appends one name, which must not contain '/'.
    pub(crate) fn push(&mut self, name: &OsStr) {
        debug_assert!(!name.as_bytes().contains(&b'/'), "a path component holds no '/'");
        if !self.joined.is_empty() {
            self.joined.push(b'/');
        }
        self.joined.extend_from_slice(name.as_bytes());
    }

    /// Removes the last component; the root stays the root.
    pub(crate) fn pop(&mut self) -> Option<OsString> {
        if self.joined.is_empty() {
            return None;
        }
        let start = self.last_start();
        let name = self.joined.split_off(start);
        self.joined.truncate(start.saturating_sub(1));
        Some(OsString::from_vec(name))
    }

    /// Where the last component starts in `joined`.
    fn last_start(&self) -> usize {
        self.joined.iter().rposition(|&b| b == b'/').map_or(0, |slash| slash + 1)
    }

    /// This path with `name` appended.
    pub(crate) fn join(&self, name: &OsStr) -> Self {
        let mut joined = Vec::with_capacity(self.joined.len() + 1 + name.len());
        joined.extend_from_slice(&self.joined);
        let mut out = ImagePath { joined };
        out.push(name);
        out
    }

    /// The containing directory (the root for the root).
    pub(crate) fn parent(&self) -> Self {
        let mut out = self.clone();
        out.pop();
        out
    }

    pub(crate) fn file_name(&self) -> Option<&OsStr> {
        (!self.joined.is_empty()).then(|| OsStr::from_bytes(&self.joined[self.last_start()..]))
    }

    /// Whether `prefix` is this path or one of its ancestors.
    pub(crate) fn starts_with(&self, prefix: &ImagePath) -> bool {
        prefix.is_root()
            || (self.joined.starts_with(&prefix.joined)
                && matches!(self.joined.get(prefix.joined.len()), None | Some(b'/')))
    }

    /// This path, which lies at or below `from`, moved below `onto`: where an
    /// entry of a copied directory lands.
    pub(crate) fn rebase(&self, from: &ImagePath, onto: &ImagePath) -> Self {
        debug_assert!(self.starts_with(from), "{} lies below {}", self.display(), from.display());
        let below = self.joined.get(from.joined.len()..).unwrap_or_default();
        let below = below.strip_prefix(b"/").unwrap_or(below);
        let mut joined = Vec::with_capacity(onto.joined.len() + 1 + below.len());
        joined.extend_from_slice(&onto.joined);
        if !joined.is_empty() && !below.is_empty() {
            joined.push(b'/');
        }
        joined.extend_from_slice(below);
        ImagePath { joined }
    }

    /// The path relative to the root, for joining onto a host directory.
    pub(crate) fn to_relative(&self) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(&self.joined))
    }

    /// The path below the root, '/'-separated and without a leading '/', as the
    /// pattern matchers expect it ("" for the root). Names that are not UTF-8
    /// get replacement characters.
    pub(crate) fn to_slash_relative(&self) -> String {
        String::from_utf8_lossy(&self.joined).into_owned()
    }

    /// The absolute path for messages, e.g. `/usr/bin`.
    pub(crate) fn display(&self) -> String {
        format!("/{}", self.to_slash_relative())
    }
}

/// Paths order name by name (a directory before what is inside it, `a/b`
/// before `a-b`), as lists of names would.
impl Ord for ImagePath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.components().cmp(other.components())
    }
}

impl PartialOrd for ImagePath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Debug for ImagePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.display())
    }
}

impl FromIterator<OsString> for ImagePath {
    fn from_iter<I: IntoIterator<Item = OsString>>(iter: I) -> Self {
        let mut out = Self::root();
        for name in iter {
            out.push(&name);
        }
        out
    }
}

/// Splits '/'-separated bytes into names, skipping empty names and `.` but keeping
/// `..` for the caller to interpret.
pub(crate) fn split_bytes(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/')
        .filter(|n| !n.is_empty() && *n != b".")
}

/// Splits a string path like [`split_bytes`], returning owned names.
pub(crate) fn split_names(path: &[u8]) -> Vec<OsString> {
    split_bytes(path)
        .map(|n| OsString::from_vec(n.to_vec()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebase_moves_a_path_below_another() {
        let (entry, from) = (ImagePath::lexical("/src/m1/f.rs"), ImagePath::lexical("/src"));
        assert_eq!(entry.rebase(&from, &ImagePath::lexical("/app")).display(), "/app/m1/f.rs");
        assert_eq!(entry.rebase(&from, &ImagePath::root()).display(), "/m1/f.rs");
        assert_eq!(entry.rebase(&ImagePath::root(), &ImagePath::lexical("/x")).display(), "/x/src/m1/f.rs");
        assert_eq!(from.rebase(&from, &ImagePath::lexical("/app")).display(), "/app");
    }

    #[test]
    fn lexical_cleaning_clamps_dotdot_at_root() {
        assert_eq!(ImagePath::lexical("/a/./b//c/").display(), "/a/b/c");
        assert_eq!(
            ImagePath::lexical("../../etc/passwd").display(),
            "/etc/passwd"
        );
        assert_eq!(ImagePath::lexical("a/b/../c").display(), "/a/c");
        assert!(ImagePath::lexical("/..").is_root());
    }

    #[test]
    fn join_parent_and_prefix() {
        let p = ImagePath::lexical("/usr/lib");
        let q = p.join(OsStr::new("x"));
        assert_eq!(q.display(), "/usr/lib/x");
        assert_eq!(q.parent(), p);
        assert!(q.starts_with(&p));
        assert!(!p.starts_with(&q));
        assert_eq!(q.to_relative(), PathBuf::from("usr/lib/x"));
        assert_eq!(q.to_slash_relative(), "usr/lib/x");
        assert_eq!(q.file_name(), Some(OsStr::new("x")));
    }

    #[test]
    fn components_pop_and_prefixes_work_name_by_name() {
        let p = ImagePath::lexical("/usr/lib/x");
        let names: Vec<&OsStr> = p.components().collect();
        assert_eq!(names, ["usr", "lib", "x"]);
        assert!(ImagePath::root().components().next().is_none());
        let mut q = p.clone();
        assert_eq!(q.pop(), Some(OsString::from("x")));
        assert_eq!(q.display(), "/usr/lib");
        assert_eq!(q.pop(), Some(OsString::from("lib")));
        assert_eq!(q.pop(), Some(OsString::from("usr")));
        assert!(q.is_root());
        assert_eq!(q.pop(), None);
        // A prefix must end at a name boundary.
        assert!(!ImagePath::lexical("/usr/libexec").starts_with(&ImagePath::lexical("/usr/lib")));
        assert!(p.starts_with(&ImagePath::root()));
        assert_eq!(ImagePath::root().file_name(), None);
    }

    #[test]
    fn paths_order_name_by_name() {
        let mut paths = [
            ImagePath::lexical("a-b"),
            ImagePath::lexical("a/b"),
            ImagePath::lexical("a"),
            ImagePath::root(),
        ];
        paths.sort();
        let shown: Vec<String> = paths.iter().map(ImagePath::display).collect();
        assert_eq!(shown, ["/", "/a", "/a/b", "/a-b"]);
    }

    #[test]
    fn names_that_are_not_utf8_are_kept_as_bytes() {
        let name = OsStr::from_bytes(b"caf\xe9");
        let p = ImagePath::root().join(OsStr::new("d")).join(name);
        assert_eq!(p.file_name(), Some(name));
        assert_eq!(p.to_relative(), PathBuf::from("d").join(name));
        assert_eq!(p.to_slash_relative(), "d/caf\u{fffd}");
    }
}
