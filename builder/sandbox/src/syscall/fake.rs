//! A [`Syscall`] for tests that changes nothing: it writes each call down as
//! a line of text (`attach proc on /proc`), fails the calls whose line
//! starts with a prefix the test named, and reads files from a table.
//! Descriptors are labels: the path or filesystem they stand for.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::MountAttrFlags;

use super::{FsError, Opt, Syscall};
use crate::error::SandboxError;
use crate::idmap::{map_args, IdMapLine};
use crate::protocol::{ChildError, Reporter};
use crate::rootpath::Kind;

#[derive(Default)]
pub(crate) struct Recorder {
    calls: RefCell<Vec<String>>,
    /// Prefix of a call's line, the error it gets, the kernel's messages.
    failures: Vec<(String, Errno, Vec<String>)>,
    files: HashMap<String, String>,
    tools: Vec<String>,
    ids: (u32, u32),
}

impl Recorder {
    /// A recorder that runs as root and makes every call succeed.
    pub fn new() -> Self {
        Recorder::default()
    }

    /// Calls whose line starts with `prefix` fail with `errno`.
    pub fn fail(self, prefix: &str, errno: Errno) -> Self {
        self.fail_with_log(prefix, errno, &[])
    }

    /// Calls whose line starts with `prefix` fail with `errno`, and the
    /// kernel explains in `log` (only a new filesystem has a log).
    pub fn fail_with_log(mut self, prefix: &str, errno: Errno, log: &[&str]) -> Self {
        let log = log.iter().map(|l| l.to_string()).collect();
        self.failures.push((prefix.to_string(), errno, log));
        self
    }

    /// `path` reads as `text`; files not given are missing.
    pub fn file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(path.to_string(), text.to_string());
        self
    }

    /// The program `name` is installed (in /usr/bin).
    pub fn tool(mut self, name: &str) -> Self {
        self.tools.push(name.to_string());
        self
    }

    /// The effective uid and gid.
    pub fn ids(mut self, uid: u32, gid: u32) -> Self {
        self.ids = (uid, gid);
        self
    }

    /// The calls made so far, one line each.
    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    /// Writes `line` down; the error a test asked for, if any.
    fn call(&self, line: String) -> Result<(), FsError> {
        let failure = self
            .failures
            .iter()
            .find(|(prefix, _, _)| line.starts_with(prefix.as_str()));
        self.calls.borrow_mut().push(line);
        match failure {
            Some((_, errno, log)) => Err(FsError {
                errno: *errno,
                log: log.clone(),
            }),
            None => Ok(()),
        }
    }

    fn errno(&self, line: String) -> Result<(), Errno> {
        self.call(line).map_err(|e| e.errno)
    }
}

fn attrs_text(attrs: MountAttrFlags) -> String {
    names_of(
        &[
            (MountAttrFlags::MOUNT_ATTR_RDONLY, "ro"),
            (MountAttrFlags::MOUNT_ATTR_NOSUID, "nosuid"),
            (MountAttrFlags::MOUNT_ATTR_NODEV, "nodev"),
            (MountAttrFlags::MOUNT_ATTR_NOEXEC, "noexec"),
        ],
        |flag| attrs.contains(flag),
    )
}

/// The names, comma-separated, of the flags of `table` that are `set`.
fn names_of<F: Copy>(table: &[(F, &str)], set: impl Fn(F) -> bool) -> String {
    let names: Vec<&str> = table
        .iter()
        .filter(|(flag, _)| set(*flag))
        .map(|(_, name)| *name)
        .collect();
    names.join(",")
}

fn opts_text(opts: &[Opt]) -> String {
    let opts: Vec<String> = opts
        .iter()
        .map(|o| match o {
            Opt::Flag(key) => key.to_string(),
            Opt::Str(key, value) => format!("{key}={value}"),
        })
        .collect();
    opts.join(",")
}

fn recursive(yes: bool) -> &'static str {
    if yes {
        " recursive"
    } else {
        ""
    }
}

impl Syscall for Recorder {
    type Fd = String;

    fn make_mounts_private(&self) -> Result<(), Errno> {
        self.errno("make mounts private".into())
    }

    fn new_fs(&self, fstype: &str, opts: &[Opt], attrs: MountAttrFlags) -> Result<String, FsError> {
        self.call(format!("new {fstype} [{}] {}", opts_text(opts), attrs_text(attrs)))?;
        Ok(fstype.to_string())
    }

    fn clone_tree(&self, source: &Path, recursive_: bool) -> Result<String, Errno> {
        self.errno(format!("clone {}{}", source.display(), recursive(recursive_)))?;
        Ok(format!("host {}", source.display()))
    }

    fn set_attrs(&self, mnt: &String, attrs: MountAttrFlags, recursive_: bool) -> Result<(), Errno> {
        self.errno(format!("set {} on {mnt}{}", attrs_text(attrs), recursive(recursive_)))
    }

    fn attach(&self, mnt: &String, target: &String) -> Result<(), Errno> {
        self.errno(format!("attach {mnt} on {target}"))
    }

    fn attach_at(&self, mnt: &String, target: &Path) -> Result<(), Errno> {
        self.errno(format!("attach {mnt} at {}", target.display()))
    }

    fn open_dir(&self, path: &Path) -> Result<String, Errno> {
        self.errno(format!("open {}", path.display()))?;
        Ok(path.display().to_string())
    }

    fn ensure_in_root(
        &self,
        _root: &String,
        _root_path: &Path,
        rel: &Path,
        kind: Kind,
        _reporter: &Reporter,
    ) -> Result<String, ChildError> {
        let kind = match kind {
            Kind::Dir => "dir",
            Kind::File => "file",
        };
        let path = format!("/{}", rel.display());
        self.call(format!("ensure {kind} {path}"))
            .map_err(|e| ChildError::setup(format!("mount point {path}"), e))?;
        Ok(path)
    }

    fn open_dir_in_root(&self, _root: &String, _root_path: &Path, rel: &Path) -> Result<String, Errno> {
        let path = format!("/{}", rel.display());
        self.errno(format!("open {path} in the root"))?;
        Ok(path)
    }

    fn create_file_at(&self, dir: &String, name: &str, mode: u32) -> Result<String, Errno> {
        self.errno(format!("create {dir}/{name} {mode:04o}"))?;
        Ok(format!("{dir}/{name}"))
    }

    fn make_dir_at(&self, dir: &String, name: &str, mode: u32) -> Result<String, Errno> {
        self.errno(format!("mkdir {dir}/{name} {mode:04o}"))?;
        Ok(format!("{dir}/{name}"))
    }

    fn symlink_at(&self, target: &str, dir: &String, name: &str) -> Result<(), Errno> {
        self.errno(format!("symlink {dir}/{name} -> {target}"))
    }

    fn fchdir(&self, dir: &String) -> Result<(), Errno> {
        self.errno(format!("fchdir {dir}"))
    }

    fn chdir(&self, path: &Path) -> Result<(), Errno> {
        self.errno(format!("chdir {}", path.display()))
    }

    fn pivot_root(&self, new_root: &str, put_old: &str) -> Result<(), Errno> {
        self.errno(format!("pivot_root {new_root} {put_old}"))
    }

    fn unmount_detach(&self, path: &str) -> Result<(), Errno> {
        self.errno(format!("unmount --detach {path}"))
    }

    fn unshare(&self, flags: i32) -> Result<(), Errno> {
        let names = names_of(
            &[
                (libc::CLONE_NEWUSER, "user"),
                (libc::CLONE_NEWNS, "mount"),
                (libc::CLONE_NEWPID, "pid"),
                (libc::CLONE_NEWIPC, "ipc"),
                (libc::CLONE_NEWUTS, "uts"),
                (libc::CLONE_NEWNET, "net"),
            ],
            |flag| flags & flag != 0,
        );
        self.errno(format!("unshare {names}"))
    }

    fn effective_ids(&self) -> (u32, u32) {
        self.ids
    }

    fn read_file(&self, path: &str) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn write_file(&self, path: &str, text: &str) -> io::Result<()> {
        self.errno(format!("write {path} {text:?}"))
            .map_err(io::Error::from)
    }

    fn find_tool(&self, name: &str) -> Option<PathBuf> {
        self.tools
            .iter()
            .any(|t| t == name)
            .then(|| Path::new("/usr/bin").join(name))
    }

    fn enter_with_helpers(
        &self,
        uid_map: &[IdMapLine],
        gid_map: &[IdMapLine],
        unshare: &dyn Fn() -> Result<(), SandboxError>,
    ) -> Result<(), SandboxError> {
        unshare()?;
        for (tool, map) in [("newuidmap", uid_map), ("newgidmap", gid_map)] {
            self.errno(format!("{tool} {}", map_args(map).join(" ")))
                .map_err(|e| SandboxError::sys(tool, e))?;
        }
        Ok(())
    }

    fn set_groups(&self, gids: &[u32]) -> Result<(), Errno> {
        self.errno(format!("setgroups {gids:?}"))
    }

    fn set_res_gid(&self, gid: u32) -> Result<(), Errno> {
        self.errno(format!("setresgid {gid}"))
    }

    fn set_res_uid(&self, uid: u32) -> Result<(), Errno> {
        self.errno(format!("setresuid {uid}"))
    }
}
