//! Paths inside an image (or inside the build context): a list of plain name
//! components below the root, never holding `.`, `..` or an empty name. Names are
//! raw bytes, because file names on disk need not be UTF-8; strings for people are
//! made with [`ImagePath::display`].

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// An absolute, lexically clean path inside a root.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ImagePath {
    components: Vec<OsString>,
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
    pub(crate) fn components(&self) -> &[OsString] {
        &self.components
    }

    pub(crate) fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    pub(crate) fn push(&mut self, name: &OsStr) {
        self.components.push(name.to_owned());
    }

    /// Removes the last component; the root stays the root.
    pub(crate) fn pop(&mut self) -> Option<OsString> {
        self.components.pop()
    }

    /// This path with `name` appended.
    pub(crate) fn join(&self, name: &OsStr) -> Self {
        let mut out = self.clone();
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
        self.components.last().map(OsString::as_os_str)
    }

    /// Whether `prefix` is this path or one of its ancestors.
    pub(crate) fn starts_with(&self, prefix: &ImagePath) -> bool {
        self.components.starts_with(&prefix.components)
    }

    /// The path relative to the root, for joining onto a host directory.
    pub(crate) fn to_relative(&self) -> PathBuf {
        self.components.iter().collect()
    }

    /// The path below the root, '/'-separated and without a leading '/', as the
    /// pattern matchers expect it ("" for the root).
    pub(crate) fn to_slash_relative(&self) -> String {
        let parts: Vec<_> = self
            .components
            .iter()
            .map(|c| c.to_string_lossy())
            .collect();
        parts.join("/")
    }

    /// The absolute path for messages, e.g. `/usr/bin`.
    pub(crate) fn display(&self) -> String {
        format!("/{}", self.to_slash_relative())
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
}
