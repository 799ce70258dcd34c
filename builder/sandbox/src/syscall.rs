//! The seam between the sandbox's decisions and the kernel.
//!
//! What the sandbox decides (which filesystems make up the root filesystem
//! and with which options, which ids a user namespace maps, what to do when
//! the kernel refuses a mount, a namespace or a group) is written against
//! [`Syscall`]. [`Linux`] makes the calls; the tests' recording fake
//! (`syscall::fake`) writes each call down and fails the ones a test names,
//! so those decisions are tested as any user, in milliseconds. The tests in
//! `tests.rs` still run it all on the real kernel, as root.
//!
//! Plumbing without a decision calls rustix and libc directly: forking,
//! pipes, the descriptor shuffling and `execve` right before the command,
//! signals, and the chroot isolation's copying. Code in a forked child may
//! use the seam: [`Linux`] is a unit type reached through generics, so a
//! call costs what the system call costs, with no lock or allocation of its
//! own.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, CWD};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags,
    OpenTreeFlags, UnmountFlags,
};

use super::error::SandboxError;
use super::idmap::IdMapLine;
use super::idmap_helpers;
use super::protocol::{ChildError, Reporter};
use super::rootpath::{self, Kind, Root};

#[cfg(test)]
pub(crate) mod fake;

/// An option of a new filesystem: a flag or a key with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opt<'a> {
    Flag(&'a str),
    Str(&'a str, &'a str),
}

/// A filesystem configuration failure: the error and the kernel's messages.
#[derive(Debug)]
pub(crate) struct FsError {
    pub errno: Errno,
    pub log: Vec<String>,
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.errno)?;
        if !self.log.is_empty() {
            write!(f, " ({})", self.log.join("; "))?;
        }
        Ok(())
    }
}

/// The system calls the sandbox's decisions make. `Fd` is what the kernel
/// hands back for a mount or an `O_PATH` file.
pub(crate) trait Syscall {
    type Fd;

    // ---- the root filesystem (`mounts`) ----

    /// Makes every mount of this mount namespace private, recursively.
    fn make_mounts_private(&self) -> Result<(), Errno>;
    /// Creates and mounts, detached, a new `fstype` filesystem.
    fn new_fs(&self, fstype: &str, opts: &[Opt], attrs: MountAttrFlags)
        -> Result<Self::Fd, FsError>;
    /// A detached bind mount of the host path `source`.
    fn clone_tree(&self, source: &Path, recursive: bool) -> Result<Self::Fd, Errno>;
    /// Sets flags on a detached mount; a bind mount keeps its source's flags
    /// until told otherwise.
    fn set_attrs(&self, mnt: &Self::Fd, attrs: MountAttrFlags, recursive: bool)
        -> Result<(), Errno>;
    /// Attaches the detached mount `mnt` on the object `target` refers to.
    fn attach(&self, mnt: &Self::Fd, target: &Self::Fd) -> Result<(), Errno>;
    /// Attaches the detached mount `mnt` at the host path `target`.
    fn attach_at(&self, mnt: &Self::Fd, target: &Path) -> Result<(), Errno>;
    /// Opens the host directory `path` (`O_PATH`).
    fn open_dir(&self, path: &Path) -> Result<Self::Fd, Errno>;
    /// `rel` in the root filesystem `root` (mounted at `root_path`),
    /// created when missing and reported as a stub (see `rootpath::ensure`).
    fn ensure_in_root(
        &self,
        root: &Self::Fd,
        root_path: &Path,
        rel: &Path,
        kind: Kind,
        reporter: &Reporter,
    ) -> Result<Self::Fd, ChildError>;
    /// The directory `rel` of the root filesystem, resolved inside it.
    fn open_dir_in_root(&self, root: &Self::Fd, root_path: &Path, rel: &Path)
        -> Result<Self::Fd, Errno>;
    /// Creates the empty file `name` in `dir` and opens it (`O_PATH`).
    fn create_file_at(&self, dir: &Self::Fd, name: &str, mode: u32) -> Result<Self::Fd, Errno>;
    /// Creates the directory `name` in `dir` and opens it (`O_PATH`).
    fn make_dir_at(&self, dir: &Self::Fd, name: &str, mode: u32) -> Result<Self::Fd, Errno>;
    fn symlink_at(&self, target: &str, dir: &Self::Fd, name: &str) -> Result<(), Errno>;
    fn fchdir(&self, dir: &Self::Fd) -> Result<(), Errno>;
    fn chdir(&self, path: &Path) -> Result<(), Errno>;
    fn pivot_root(&self, new_root: &str, put_old: &str) -> Result<(), Errno>;
    fn unmount_detach(&self, path: &str) -> Result<(), Errno>;

    // ---- namespaces and ids (`namespaces`, `userns`, `exec`) ----

    /// `unshare(2)` with `CLONE_*` flags.
    fn unshare(&self, flags: i32) -> Result<(), Errno>;
    /// The effective uid and gid.
    fn effective_ids(&self) -> (u32, u32);
    fn read_file(&self, path: &str) -> io::Result<String>;
    fn write_file(&self, path: &str, text: &str) -> io::Result<()>;
    /// Where the program `name` is installed, if it is.
    fn find_tool(&self, name: &str) -> Option<PathBuf>;
    /// Unshares the user namespace (with `unshare`, which says why it failed) while a
    /// helper left behind in the current one installs the maps with newuidmap and newgidmap.
    fn enter_with_helpers(
        &self,
        uid_map: &[IdMapLine],
        gid_map: &[IdMapLine],
        unshare: &dyn Fn() -> Result<(), SandboxError>,
    ) -> Result<(), SandboxError>;
    fn set_groups(&self, gids: &[u32]) -> Result<(), Errno>;
    fn set_res_gid(&self, gid: u32) -> Result<(), Errno>;
    fn set_res_uid(&self, uid: u32) -> Result<(), Errno>;
}

/// The real kernel.
pub(crate) struct Linux;

impl Syscall for Linux {
    type Fd = OwnedFd;

    fn make_mounts_private(&self) -> Result<(), Errno> {
        rustix::mount::mount_change(
            "/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )
    }

    fn new_fs(&self, fstype: &str, opts: &[Opt], attrs: MountAttrFlags) -> Result<OwnedFd, FsError> {
        let fs = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)
            .map_err(|errno| FsError { errno, log: vec![] })?;
        let fail = |errno| FsError {
            errno,
            log: fs_log(fs.as_fd()),
        };
        for opt in opts {
            match opt {
                Opt::Flag(key) => rustix::mount::fsconfig_set_flag(&fs, *key),
                Opt::Str(key, value) => rustix::mount::fsconfig_set_string(&fs, *key, *value),
            }
            .map_err(fail)?;
        }
        rustix::mount::fsconfig_create(&fs).map_err(fail)?;
        rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(fail)
    }

    fn clone_tree(&self, source: &Path, recursive: bool) -> Result<OwnedFd, Errno> {
        let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        if recursive {
            flags |= OpenTreeFlags::AT_RECURSIVE;
        }
        rustix::mount::open_tree(CWD, source, flags)
    }

    fn set_attrs(&self, mnt: &OwnedFd, attrs: MountAttrFlags, recursive: bool) -> Result<(), Errno> {
        let attr = MountAttr {
            attr_set: attrs.bits() as u64,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let mut flags = libc::AT_EMPTY_PATH;
        if recursive {
            flags |= libc::AT_RECURSIVE;
        }
        // SAFETY: the syscall reads `attr` (of the size given) and an empty path.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                mnt.as_raw_fd(),
                c"".as_ptr(),
                flags,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        if r != 0 {
            return Err(Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::INVAL));
        }
        Ok(())
    }

    fn attach(&self, mnt: &OwnedFd, target: &OwnedFd) -> Result<(), Errno> {
        rustix::mount::move_mount(
            mnt.as_fd(),
            "",
            target.as_fd(),
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
    }

    fn attach_at(&self, mnt: &OwnedFd, target: &Path) -> Result<(), Errno> {
        rustix::mount::move_mount(
            mnt.as_fd(),
            "",
            CWD,
            target,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        )
    }

    fn open_dir(&self, path: &Path) -> Result<OwnedFd, Errno> {
        rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }

    fn ensure_in_root(
        &self,
        root: &OwnedFd,
        root_path: &Path,
        rel: &Path,
        kind: Kind,
        reporter: &Reporter,
    ) -> Result<OwnedFd, ChildError> {
        rootpath::ensure(&root_of(root, root_path), rel, kind, &|r| reporter.send(r))
    }

    fn open_dir_in_root(&self, root: &OwnedFd, root_path: &Path, rel: &Path) -> Result<OwnedFd, Errno> {
        rootpath::open_in_root(&root_of(root, root_path), rel, true)
    }

    fn create_file_at(&self, dir: &OwnedFd, name: &str, mode: u32) -> Result<OwnedFd, Errno> {
        rustix::fs::openat(
            dir,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }

    fn make_dir_at(&self, dir: &OwnedFd, name: &str, mode: u32) -> Result<OwnedFd, Errno> {
        rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode))?;
        rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }

    fn symlink_at(&self, target: &str, dir: &OwnedFd, name: &str) -> Result<(), Errno> {
        rustix::fs::symlinkat(target, dir, name)
    }

    fn fchdir(&self, dir: &OwnedFd) -> Result<(), Errno> {
        rustix::process::fchdir(dir)
    }

    fn chdir(&self, path: &Path) -> Result<(), Errno> {
        rustix::process::chdir(path)
    }

    fn pivot_root(&self, new_root: &str, put_old: &str) -> Result<(), Errno> {
        rustix::process::pivot_root(new_root, put_old)
    }

    fn unmount_detach(&self, path: &str) -> Result<(), Errno> {
        rustix::mount::unmount(path, UnmountFlags::DETACH)
    }

    fn unshare(&self, flags: i32) -> Result<(), Errno> {
        // SAFETY: unshare affects only this process, which the callers keep
        // single-threaded.
        if unsafe { libc::unshare(flags) } != 0 {
            return Err(Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::INVAL));
        }
        Ok(())
    }

    fn effective_ids(&self) -> (u32, u32) {
        // SAFETY: these calls cannot fail.
        unsafe { (libc::geteuid(), libc::getegid()) }
    }

    fn read_file(&self, path: &str) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write_file(&self, path: &str, text: &str) -> io::Result<()> {
        std::fs::write(path, text)
    }

    fn find_tool(&self, name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        std::env::split_paths(&path)
            .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    }

    fn enter_with_helpers(
        &self,
        uid_map: &[IdMapLine],
        gid_map: &[IdMapLine],
        unshare: &dyn Fn() -> Result<(), SandboxError>,
    ) -> Result<(), SandboxError> {
        let tool = |name: &str| {
            self.find_tool(name).ok_or_else(|| SandboxError::sys(format!("find {name}"), io::ErrorKind::NotFound))
        };
        idmap_helpers::map_through_helpers(tool("newuidmap")?, tool("newgidmap")?, uid_map, gid_map, unshare)
    }

    fn set_groups(&self, gids: &[u32]) -> Result<(), Errno> {
        let gids: Vec<rustix::fs::Gid> = gids.iter().map(|&g| rustix::fs::Gid::from_raw(g)).collect();
        rustix::thread::set_thread_groups(&gids)
    }

    fn set_res_gid(&self, gid: u32) -> Result<(), Errno> {
        let gid = rustix::fs::Gid::from_raw(gid);
        rustix::thread::set_thread_res_gid(gid, gid, gid)
    }

    fn set_res_uid(&self, uid: u32) -> Result<(), Errno> {
        let uid = rustix::fs::Uid::from_raw(uid);
        rustix::thread::set_thread_res_uid(uid, uid, uid)
    }
}

fn root_of<'a>(root: &'a OwnedFd, root_path: &'a Path) -> Root<'a> {
    Root {
        fd: root.as_fd(),
        host_path: root_path,
    }
}

/// The messages the kernel left on a filesystem context (`e overlay: …`).
fn fs_log(fs: BorrowedFd) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = rustix::io::read(fs, &mut buf) {
        if n == 0 {
            break;
        }
        let msg = String::from_utf8_lossy(&buf[..n]);
        out.push(msg.get(2..).unwrap_or(&msg).trim().to_string());
    }
    out
}

/// `mount_setattr(2)`'s argument.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
