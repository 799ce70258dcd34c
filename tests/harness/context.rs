//! Build contexts written by the tests: files, directories, symlinks, the static busybox the
//! test images run, and Dockerfiles given line by line (so that `Dockerfile:N` is easy to read
//! off in error tests).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// Where Debian's busybox-static puts its binary.
const BUSYBOX: &str = "/bin/busybox";

/// The first two lines of most test Dockerfiles: an image that can run busybox applets.
pub const SCRATCH_BUSYBOX: [&str; 2] = ["FROM scratch", "COPY busybox /bin/busybox"];

/// The static busybox binary; panics with the fix when it is missing.
pub fn busybox_path() -> &'static Path {
    let path = Path::new(BUSYBOX);
    assert!(
        path.is_file(),
        "{BUSYBOX} is missing: install busybox-static (scripts/test.sh does)"
    );
    path
}

/// A build context in a temp dir, removed on drop.
pub struct Context {
    dir: TempDir,
}

impl Default for Context {
    fn default() -> Self {
        Self::new()
    }
}

impl Context {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-e2e-ctx-")
            .tempdir()
            .expect("creating a context dir");
        Context { dir }
    }

    /// A context that already holds `busybox` (for `COPY busybox /bin/busybox`).
    pub fn with_busybox() -> Self {
        let ctx = Self::new();
        ctx.busybox();
        ctx
    }

    /// A copy of `examples/<name>` with busybox added, as the example's README asks.
    pub fn example(name: &str) -> Self {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples")
            .join(name);
        assert!(source.is_dir(), "no example {}", source.display());
        let ctx = Self::new();
        copy_tree(&source, ctx.path());
        ctx.busybox();
        ctx
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The absolute path of `rel` inside the context.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    /// Writes `rel` (creating parent directories).
    pub fn file(&self, rel: &str, contents: impl AsRef<[u8]>) -> &Self {
        let path = self.join(rel);
        create_parent(&path);
        fs::write(&path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        self
    }

    /// Creates the directory `rel` (and its parents).
    pub fn dir(&self, rel: &str) -> &Self {
        fs::create_dir_all(self.join(rel)).expect("creating a context dir");
        self
    }

    /// Creates the symlink `rel -> target`; `target` is stored as given, never resolved.
    pub fn symlink(&self, rel: &str, target: &str) -> &Self {
        let path = self.join(rel);
        create_parent(&path);
        symlink(target, &path).unwrap_or_else(|e| panic!("symlink {}: {e}", path.display()));
        self
    }

    /// Copies the static busybox to `busybox` in the context.
    pub fn busybox(&self) -> &Self {
        fs::copy(busybox_path(), self.join("busybox")).expect("copying busybox into the context");
        self
    }

    /// Writes `Dockerfile` from `lines` (line N of the file is `lines[N-1]`).
    pub fn dockerfile(&self, lines: &[&str]) -> &Self {
        self.dockerfile_at("Dockerfile", lines)
    }

    /// Writes a Dockerfile at `rel` from `lines`.
    pub fn dockerfile_at(&self, rel: &str, lines: &[&str]) -> &Self {
        self.file(rel, dockerfile_text(lines))
    }

    /// Copies the whole context (symlinks as symlinks) into `dest`, which must not exist yet.
    pub fn copy_to(&self, dest: &Path) {
        copy_tree(self.path(), dest);
    }
}

/// The text of a Dockerfile made of `lines`, with a final newline.
pub fn dockerfile_text(lines: &[&str]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn create_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("creating parent dirs");
    }
}

/// Copies the tree at `from` to `to`, keeping symlinks and permission bits (not times: tests
/// that care about mtimes set them themselves).
pub fn copy_tree(from: &Path, to: &Path) {
    let meta = fs::symlink_metadata(from).expect("reading a source entry");
    if meta.file_type().is_symlink() {
        symlink(fs::read_link(from).expect("readlink"), to).expect("copying a symlink");
    } else if meta.is_dir() {
        fs::create_dir_all(to).expect("creating a dir");
        for entry in fs::read_dir(from).expect("listing a dir") {
            let entry = entry.expect("dir entry");
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
        fs::set_permissions(to, meta.permissions()).expect("setting dir permissions");
    } else {
        fs::copy(from, to).expect("copying a file");
    }
}
