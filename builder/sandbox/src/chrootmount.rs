//! Run mounts (`RUN --mount`) under the chroot isolation, which may not
//! mount: each is emulated in the copied tree.
//!
//! Before the command runs, the target is found inside the tree as the
//! namespaces isolation finds it (`rootpath`: symlinks resolved inside the
//! root, missing parents and the mount point created as stubs); whatever
//! the image has there is moved aside, and the source is copied in (an
//! empty directory for a tmpfs, a forwarding socket for a unix socket).
//! The targets are left out of the recorded state and of the diff, so
//! nothing of them reaches the layer. After the diff, last mount first, a
//! writable bind's target replaces its source's contents (how a cache
//! mount keeps them), the target is removed, what the image had is put
//! back and the stubs are removed, so an earlier mount the target sat in
//! gets back only what its command wrote.
//!
//! A read-only bind's copy can be written; the writes are dropped.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::fs::{Mode, OFlags};

use super::error::SandboxError;
use super::fscopy::{self, Links};
use super::layers;
use super::protocol::{Report, Stub};
use super::rootpath::{self, Root};
use super::runmount::{Planned, PlannedMount, SourceKind};

/// How often the forwarding socket looks whether the run is over.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// The run mounts, in place in the tree.
pub(crate) struct Emulated {
    placed: Vec<Placed>,
    /// `scratch/hidden`, where what the image had at the targets waits.
    hidden: PathBuf,
}

struct Placed {
    mount: PlannedMount,
    /// The target, resolved inside the tree.
    rel: PathBuf,
    /// What `rootpath` created for it, parents first.
    stubs: Vec<Stub>,
    /// Where what the image had at the target was moved.
    moved: Option<PathBuf>,
    forwarder: Option<Forwarder>,
}

impl Emulated {
    /// Puts `mounts` in place, in order, in the tree at `tree`.
    pub fn place(
        tree: &Path,
        scratch: &Path,
        mounts: &[PlannedMount],
        warnings: &mut Vec<String>,
    ) -> Result<Self, SandboxError> {
        let mut emulated = Emulated {
            placed: Vec::new(),
            hidden: scratch.join("hidden"),
        };
        for mount in mounts {
            let placed = emulated.place_one(tree, mount, warnings)?;
            emulated.placed.push(placed);
        }
        Ok(emulated)
    }

    /// The targets: not recorded, not in the diff.
    pub fn targets(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.placed.iter().map(|p| p.rel.clone())
    }

    /// What the sandbox created: its removal by the command is no change.
    pub fn created(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.placed
            .iter()
            .flat_map(|p| &p.stubs)
            .map(|s| PathBuf::from(OsStr::from_bytes(&s.rel)))
    }

    fn place_one(
        &mut self,
        tree: &Path,
        mount: &PlannedMount,
        warnings: &mut Vec<String>,
    ) -> Result<Placed, SandboxError> {
        let fail = |message: String| SandboxError::Mount {
            target: mount.target.clone(),
            message,
        };
        let io_fail = |what: &str, path: &Path, e: io::Error| fail(format!("{what} {}: {e}", path.display()));
        let tree_fd = rustix::fs::open(tree, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io_fail("open", tree, e.into()))?;
        let root = Root {
            fd: tree_fd.as_fd(),
            host_path: tree,
        };
        let stubs = RefCell::new(Vec::new());
        let found = rootpath::ensure(&root, &mount.rel, mount.mount_point(), &|r| {
            if let Report::Stub(s) = r {
                stubs.borrow_mut().push(s.clone());
            }
        })
        .map_err(|e| fail(format!("{}: {}", e.step, e.message)))?;
        let rel = rootpath::rel_of(&root, found.as_fd()).map_err(fail)?;
        drop(found);
        let stubs = stubs.into_inner();
        let path = tree.join(&rel);
        let mut placed = Placed {
            mount: mount.clone(),
            rel: rel.clone(),
            moved: None,
            forwarder: None,
            stubs,
        };

        // Start from nothing at the target: a stub goes, what the image has
        // there is kept aside for the mounts this one may sit in.
        let is_stub = placed.stubs.last().is_some_and(|s| s.rel == rel.as_os_str().as_bytes());
        if is_stub {
            remove(&path).map_err(|e| io_fail("remove", &path, e))?;
        } else {
            fs::create_dir_all(&self.hidden).map_err(|e| io_fail("create", &self.hidden, e))?;
            let aside = self.hidden.join(self.placed.len().to_string());
            fs::rename(&path, &aside).map_err(|e| io_fail("move aside", &path, e))?;
            placed.moved = Some(aside);
        }

        match &mount.what {
            Planned::Tmpfs { .. } => {
                fs::create_dir(&path).map_err(|e| io_fail("create", &path, e))?;
                // A new tmpfs's root is world-writable and sticky.
                fs::set_permissions(&path, fs::Permissions::from_mode(0o1777))
                    .map_err(|e| io_fail("chmod", &path, e))?;
            }
            Planned::Bind { source, kind: SourceKind::Dir, .. } => {
                fs::create_dir(&path).map_err(|e| io_fail("create", &path, e))?;
                warnings.extend(replace_contents(source, &path)?);
            }
            Planned::Bind { source, kind: SourceKind::File, .. } => {
                let meta = fs::metadata(source).map_err(|e| io_fail("inspect", source, e))?;
                fscopy::copy_entry(source, &path, &meta, &mut Links::new())
                    .map_err(|e| io_fail("copy", source, e))?;
            }
            Planned::Bind { source, kind: SourceKind::Socket, .. } => {
                let forwarder = Forwarder::start(&path, source).map_err(|e| io_fail("listen at", &path, e))?;
                placed.forwarder = Some(forwarder);
            }
        }
        Ok(placed)
    }

    /// Writes writable binds back to their sources and takes every mount
    /// out of the tree again, last first; returns warnings of the copying.
    pub fn finish(mut self, tree: &Path) -> Result<Vec<String>, SandboxError> {
        let mut warnings = Vec::new();
        while let Some(mut placed) = self.placed.pop() {
            if let Some(forwarder) = placed.forwarder.take() {
                forwarder.stop();
            }
            let path = tree.join(&placed.rel);
            let writable_source = match &placed.mount.what {
                Planned::Bind { source, kind, readonly: false } => Some((source, *kind)),
                _ => None,
            };
            match writable_source {
                Some((source, SourceKind::Dir)) => {
                    // A target the command removed or replaced leaves an
                    // empty cache, as deleting its contents would.
                    let from = if path.is_dir() && !path.is_symlink() {
                        path.clone()
                    } else {
                        PathBuf::new()
                    };
                    warnings.extend(replace_contents(&from, source)?);
                }
                Some((source, SourceKind::File)) if path.is_file() && !path.is_symlink() => {
                    fs::copy(&path, source).map_err(|e| SandboxError::io("write back", source, e))?;
                }
                _ => {}
            }
            if fs::symlink_metadata(&path).is_ok() {
                remove(&path).map_err(|e| SandboxError::io("remove", &path, e))?;
            }
            if let Some(aside) = &placed.moved {
                fs::rename(aside, &path).map_err(|e| SandboxError::io("put back", &path, e))?;
            }
            // The parents it created, if the command left them empty.
            for stub in placed.stubs.iter().rev().filter(|s| s.dir) {
                let _ = fs::remove_dir(tree.join(OsStr::from_bytes(&stub.rel)));
            }
        }
        Ok(warnings)
    }
}

impl Drop for Emulated {
    fn drop(&mut self) {
        for placed in &mut self.placed {
            if let Some(forwarder) = placed.forwarder.take() {
                forwarder.stop();
            }
        }
        let _ = fs::remove_dir_all(&self.hidden);
    }
}

/// Makes the contents and metadata of the directory `to` those of `from`
/// (no contents when `from` is empty); returns warnings of the copying.
fn replace_contents(from: &Path, to: &Path) -> Result<Vec<String>, SandboxError> {
    for entry in fs::read_dir(to).map_err(|e| SandboxError::io("read", to, e))? {
        let entry = entry.map_err(|e| SandboxError::io("read", to, e))?.path();
        remove(&entry).map_err(|e| SandboxError::io("remove", &entry, e))?;
    }
    let mut warnings = Vec::new();
    if from.as_os_str().is_empty() {
        return Ok(warnings);
    }
    // A layer merged into an empty directory is a plain copy.
    layers::merge(&[from], to, &mut warnings)?;
    let meta = fs::metadata(from).map_err(|e| SandboxError::io("inspect", from, e))?;
    fscopy::apply_metadata(from, to, &meta).map_err(|e| SandboxError::io("copy the metadata of", from, e))?;
    Ok(warnings)
}

fn remove(path: &Path) -> io::Result<()> {
    if fs::symlink_metadata(path)?.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

/// A listening unix socket in the tree whose connections are each joined
/// to a new connection to the host socket, for as long as the run lasts.
struct Forwarder {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Forwarder {
    fn start(path: &Path, source: &Path) -> io::Result<Self> {
        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => (parent, name),
            _ => return Err(io::ErrorKind::InvalidInput.into()),
        };
        // A socket's path is limited to 107 bytes, and the tree is deep:
        // bind through the parent's descriptor.
        let dir: OwnedFd = rustix::fs::open(parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        let short = Path::new("/proc/self/fd")
            .join(dir.as_raw_fd().to_string())
            .join(name);
        let listener = UnixListener::bind(&short)?;
        // The command reaches it as it would the host's socket.
        let meta = fs::metadata(source)?;
        std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        listener.set_nonblocking(true)?;

        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let source = source.to_path_buf();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if let Ok(agent) = UnixStream::connect(&source) {
                            let _ = join(client, agent);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
                    Err(_) => break,
                }
            }
        });
        Ok(Forwarder { stop, thread })
    }

    /// Stops accepting; connections still open end with the command's
    /// processes, which are all gone by now.
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Copies each way between two connected sockets, from threads of their own.
fn join(client: UnixStream, agent: UnixStream) -> io::Result<()> {
    client.set_nonblocking(false)?;
    for (from, to) in [(client.try_clone()?, agent.try_clone()?), (agent, client)] {
        std::thread::spawn(move || {
            let _ = io::copy(&mut &from, &mut &to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }
    Ok(())
}


#[cfg(test)]
mod tests {
    //! On plain directories, as any user.

    use std::collections::BTreeSet;

    use super::*;
    use crate::runmount::plan;
    use crate::{MountKind, RunMount};

    fn names(dir: &Path) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                out.insert(path.strip_prefix(dir).unwrap().display().to_string());
                if path.is_dir() && !path.is_symlink() {
                    stack.push(path);
                }
            }
        }
        out
    }

    #[test]
    fn mounts_are_copied_in_written_back_and_taken_out() {
        let dir = tempfile::tempdir().unwrap();
        let (tree, scratch, cache) = (dir.path().join("tree"), dir.path().join("scratch"), dir.path().join("cache"));
        for d in [&tree.join("var/cache/app"), &scratch, &cache] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(tree.join("var/cache/app/image"), "image").unwrap();
        fs::write(cache.join("old"), "old").unwrap();
        fs::write(dir.path().join("secret"), "s").unwrap();
        let before = names(&tree);
        let bind = |target: &str, source: PathBuf, readonly| RunMount {
            target: target.into(),
            kind: MountKind::Bind { source, readonly },
        };
        let mounts = plan(&[
            bind("/var/cache/app", cache.clone(), false),
            bind("/run/secret", dir.path().join("secret"), true),
            RunMount {
                target: "/var/cache/app/tmp".into(),
                kind: MountKind::Tmpfs { size: None },
            },
        ])
        .unwrap();
        let emulated = Emulated::place(&tree, &scratch, &mounts, &mut Vec::new()).unwrap();
        assert_eq!(
            emulated.targets().collect::<Vec<_>>(),
            ["var/cache/app", "run/secret", "var/cache/app/tmp"].map(PathBuf::from)
        );
        assert_eq!(
            emulated.created().collect::<Vec<_>>(),
            ["run", "run/secret", "var/cache/app/tmp"].map(PathBuf::from)
        );
        // The image's entry is aside; the source is in its place.
        assert_eq!(
            names(&tree.join("var/cache/app")),
            BTreeSet::from(["old", "tmp"].map(String::from))
        );
        assert_eq!(fs::read_to_string(tree.join("run/secret")).unwrap(), "s");
        assert_eq!(fs::metadata(tree.join("var/cache/app/tmp")).unwrap().mode() & 0o7777, 0o1777);

        // The command.
        fs::remove_file(tree.join("var/cache/app/old")).unwrap();
        fs::write(tree.join("var/cache/app/new"), "new").unwrap();
        fs::write(tree.join("var/cache/app/tmp/scratch"), "gone").unwrap();
        fs::write(tree.join("run/secret"), "overwritten").unwrap();

        emulated.finish(&tree).unwrap();
        assert_eq!(names(&cache), BTreeSet::from(["new".to_string()]));
        assert_eq!(fs::read_to_string(dir.path().join("secret")).unwrap(), "s");
        assert_eq!(names(&tree), before);
        assert_eq!(fs::read_to_string(tree.join("var/cache/app/image")).unwrap(), "image");
        assert_eq!(names(&scratch), BTreeSet::new());
    }
}
