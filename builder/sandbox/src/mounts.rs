//! The root filesystem of a RUN, built in the sandbox's own mount namespace:
//! overlayfs over the layers, `/proc`, a minimal `/dev`, a read-only `/sys`
//! and read-only `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`, then
//! `pivot_root` into it.
//!
//! Mounts use the kernel's file-descriptor mount API: each filesystem is
//! configured and mounted detached (`fsopen`/`fsmount`, or `open_tree` for a
//! bind mount), flags are set while it is detached, and it is attached to a
//! target found with `RESOLVE_IN_ROOT` (see `rootpath`). The overlay options
//! are passed one by one, so no layer count runs into the page-sized option
//! string of `mount(2)`, and the kernel's own error messages can be read back.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, CWD};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags,
    OpenTreeFlags, UnmountFlags,
};

use super::lowerstack;
use super::prepare::Prepared;
use super::protocol::{ChildError, FailureKind, Reporter};
use super::rootpath::{self, Kind, Root};

/// Host devices bind-mounted into the sandbox's `/dev`. Binding instead of
/// `mknod` works in a user namespace too.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Symlinks every `/dev` has.
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// The files of the sandbox's scratch directory that the mounts use.
pub(crate) struct ScratchPaths {
    pub rootfs: PathBuf,
    pub work: PathBuf,
    pub empty_lower: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    pub hostname: PathBuf,
    /// The layers below [`Prepared::lower`] copied into one directory, when
    /// the stack is deeper than overlayfs takes.
    pub flat: Option<PathBuf>,
    /// A directory of short symlinks to the lower layers, for kernels that
    /// take them only as one page-sized `lowerdir` option; made only when
    /// the layers' own paths would not fit.
    pub links: Option<PathBuf>,
}

/// The lower directories of the overlay, topmost first, as overlayfs lists
/// them.
pub(crate) fn lowers_topmost_first<'a>(p: &'a Prepared, paths: &'a ScratchPaths) -> Vec<&'a Path> {
    let mut tops: Vec<&Path> = p.lower.iter().rev().map(PathBuf::as_path).collect();
    tops.extend(paths.flat.as_deref());
    if tops.is_empty() {
        tops.push(&paths.empty_lower);
    }
    tops
}

/// Builds the root filesystem and pivots into it. Runs in the sandbox's
/// pid-1 process, which is in fresh mount and pid namespaces.
pub(crate) fn setup_root(
    p: &Prepared,
    paths: &ScratchPaths,
    reporter: &Reporter,
) -> Result<(), ChildError> {
    // Nothing mounted from here on may propagate back to rbuild's namespace.
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| ChildError::setup("make mounts private", e))?;

    let overlay = mount_overlay(p, paths)?;
    rustix::mount::move_mount(
        overlay.as_fd(),
        "",
        CWD,
        &paths.rootfs,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| {
        ChildError::setup(
            format!("attach the overlay at {}", paths.rootfs.display()),
            e,
        )
    })?;
    let root_fd = rustix::fs::open(
        &paths.rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ChildError::setup("open the root filesystem", e))?;
    let root = Root {
        fd: root_fd.as_fd(),
        host_path: &paths.rootfs,
    };

    mount_proc(&root, reporter)?;
    mount_dev(&root, reporter)?;
    mount_sys(&root, reporter)?;
    for (rel, source) in [
        ("etc/hosts", &paths.hosts),
        ("etc/resolv.conf", &paths.resolv_conf),
        ("etc/hostname", &paths.hostname),
    ] {
        let step = format!("mount /{rel}");
        let target = rootpath::ensure(&root, Path::new(rel), Kind::File, reporter)?;
        let bind = clone_tree(source, false).map_err(|e| ChildError::setup(&step, e))?;
        set_attrs(bind.as_fd(), read_only_attrs(), false)
            .map_err(|e| ChildError::setup(&step, e))?;
        attach(&bind, &target).map_err(|e| ChildError::setup(&step, e))?;
    }

    pivot(root_fd.as_fd())
}

fn read_only_attrs() -> MountAttrFlags {
    MountAttrFlags::MOUNT_ATTR_RDONLY
        | MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC
}

/// An option of a new filesystem: a flag or a key with a value.
enum Opt<'a> {
    Flag(&'a str),
    Str(&'a str, &'a str),
}

/// A filesystem configuration failure: the error and the kernel's messages.
struct FsError {
    errno: Errno,
    log: Vec<String>,
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

/// Creates and mounts (detached) a new `fstype` filesystem.
fn new_fs(fstype: &str, opts: &[Opt], attrs: MountAttrFlags) -> Result<OwnedFd, FsError> {
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

fn mount_overlay(p: &Prepared, paths: &ScratchPaths) -> Result<OwnedFd, ChildError> {
    let lowers = lowers_topmost_first(p, paths);
    let lowers: Vec<&str> = lowers
        .iter()
        .map(|l| l.to_str().unwrap_or_default())
        .collect();
    if lowers.iter().any(|l| l.is_empty()) {
        return Err(ChildError::of(
            FailureKind::Overlay,
            "overlay",
            "a layer directory's path is not valid UTF-8",
        ));
    }
    let upper = p.upper.to_str().unwrap_or_default();
    let work = paths.work.to_str().unwrap_or_default();

    let mut common: Vec<Opt> = vec![Opt::Str("upperdir", upper), Opt::Str("workdir", work)];
    if p.in_userns {
        common.push(Opt::Flag("userxattr"));
    }
    // Renaming a lower directory must copy it (EXDEV, which `mv` handles) and
    // copy-up must copy data: redirects and metacopy-only files would leave
    // an upper directory that is not a complete diff. ("nofollow", not "off":
    // "off" may mean "follow", which `userxattr` refuses.)
    common.extend([
        Opt::Str("redirect_dir", "nofollow"),
        Opt::Str("metacopy", "off"),
        Opt::Str("index", "off"),
    ]);

    // "lowerdir+" (Linux 6.8) takes one layer per call and needs no escaping;
    // older kernels take one colon-separated "lowerdir".
    let mut opts: Vec<Opt> = lowers.iter().map(|l| Opt::Str("lowerdir+", l)).collect();
    opts.extend(common.iter().map(copy_opt));
    let result = match new_fs("overlay", &opts, MountAttrFlags::MOUNT_ATTR_NODEV) {
        Err(e) if e.errno == Errno::INVAL && e.log.iter().any(|l| l.contains("lowerdir+")) => {
            let joined = match &paths.links {
                // The kernel resolves relative layer paths from the working
                // directory of the process that configures the mount.
                Some(links) => {
                    std::env::set_current_dir(links)
                        .map_err(|e| ChildError::setup("enter the layer links", e))?;
                    (0..lowers.len())
                        .map(lowerstack::link_name)
                        .collect::<Vec<_>>()
                        .join(":")
                }
                None => lowers
                    .iter()
                    .map(|l| escape_lower(l))
                    .collect::<Vec<_>>()
                    .join(":"),
            };
            let mut opts = vec![Opt::Str("lowerdir", &joined)];
            opts.extend(common.iter().map(copy_opt));
            new_fs("overlay", &opts, MountAttrFlags::MOUNT_ATTR_NODEV)
        }
        other => other,
    };
    result.map_err(|e| {
        let mut message = e.to_string();
        if e.errno == Errno::NODEV {
            message.push_str(": the kernel has no overlayfs (`modprobe overlay`)");
        }
        ChildError::of(FailureKind::Overlay, "overlay", message)
    })
}

fn copy_opt<'a>(o: &Opt<'a>) -> Opt<'a> {
    match o {
        Opt::Flag(k) => Opt::Flag(k),
        Opt::Str(k, v) => Opt::Str(k, v),
    }
}

/// A layer path inside overlayfs's colon-separated `lowerdir`.
pub(crate) fn escape_lower(path: &str) -> String {
    path.replace('\\', "\\\\").replace(':', "\\:")
}

fn mount_proc(root: &Root, reporter: &Reporter) -> Result<(), ChildError> {
    let step = "mount /proc";
    let target = rootpath::ensure(root, Path::new("proc"), Kind::Dir, reporter)?;
    let attrs = MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    let proc = new_fs("proc", &[], attrs).map_err(|e| ChildError::setup(step, e))?;
    attach(&proc, &target).map_err(|e| ChildError::setup(step, e))
}

fn mount_dev(root: &Root, reporter: &Reporter) -> Result<(), ChildError> {
    let target = rootpath::ensure(root, Path::new("dev"), Kind::Dir, reporter)?;
    let tmpfs = new_fs(
        "tmpfs",
        &[Opt::Str("mode", "755"), Opt::Str("size", "65536k")],
        MountAttrFlags::MOUNT_ATTR_NOSUID,
    )
    .map_err(|e| ChildError::setup("mount /dev", e))?;
    attach(&tmpfs, &target).map_err(|e| ChildError::setup("mount /dev", e))?;
    drop(target);
    // The tmpfs now covers the image's /dev; work inside it.
    let dev = rootpath::open_in_root(root, Path::new("dev"), true)
        .map_err(|e| ChildError::setup("open /dev", e))?;

    for name in DEVICES {
        let step = format!("provide /dev/{name}");
        let host = format!("/dev/{name}");
        let bind = clone_tree(Path::new(&host), false).map_err(|e| ChildError::setup(&step, e))?;
        rustix::fs::openat(
            &dev,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map_err(|e| ChildError::setup(&step, e))?;
        let file = rustix::fs::openat(
            &dev,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ChildError::setup(&step, e))?;
        attach(&bind, &file).map_err(|e| ChildError::setup(&step, e))?;
    }
    for (name, target) in DEV_LINKS {
        rustix::fs::symlinkat(target, &dev, name)
            .map_err(|e| ChildError::setup(format!("create /dev/{name}"), e))?;
    }

    let pts =
        make_dir(dev.as_fd(), "pts", 0o755).map_err(|e| ChildError::setup("create /dev/pts", e))?;
    let pts_attrs = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    let mut pts_opts = vec![
        Opt::Flag("newinstance"),
        Opt::Str("ptmxmode", "0666"),
        Opt::Str("mode", "0620"),
        Opt::Str("gid", "5"),
    ];
    // gid 5 (tty) does not exist in a user namespace that maps only root.
    let devpts = new_fs("devpts", &pts_opts, pts_attrs).or_else(|_| {
        pts_opts.pop();
        new_fs("devpts", &pts_opts, pts_attrs)
    });
    let devpts = devpts.map_err(|e| ChildError::setup("mount /dev/pts", e))?;
    attach(&devpts, &pts).map_err(|e| ChildError::setup("mount /dev/pts", e))?;

    let shm = make_dir(dev.as_fd(), "shm", 0o1777)
        .map_err(|e| ChildError::setup("create /dev/shm", e))?;
    let shm_fs = new_fs(
        "tmpfs",
        &[Opt::Str("mode", "1777"), Opt::Str("size", "65536k")],
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(|e| ChildError::setup("mount /dev/shm", e))?;
    attach(&shm_fs, &shm).map_err(|e| ChildError::setup("mount /dev/shm", e))
}

fn mount_sys(root: &Root, reporter: &Reporter) -> Result<(), ChildError> {
    let step = "mount /sys";
    let target = rootpath::ensure(root, Path::new("sys"), Kind::Dir, reporter)?;
    let sysfs = match new_fs("sysfs", &[], read_only_attrs()) {
        Ok(fs) => fs,
        // A user namespace may mount sysfs only with a network namespace of
        // its own; with the host's network, show the host's /sys read-only.
        Err(e) if e.errno == Errno::PERM => {
            let bind =
                clone_tree(Path::new("/sys"), true).map_err(|e| ChildError::setup(step, e))?;
            set_attrs(bind.as_fd(), read_only_attrs(), true)
                .map_err(|e| ChildError::setup(step, e))?;
            bind
        }
        Err(e) => return Err(ChildError::setup(step, e)),
    };
    attach(&sysfs, &target).map_err(|e| ChildError::setup(step, e))
}

fn make_dir(parent: BorrowedFd, name: &str, mode: u32) -> Result<OwnedFd, Errno> {
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(mode))?;
    rustix::fs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// A detached bind mount of `source` (a host path).
fn clone_tree(source: &Path, recursive: bool) -> Result<OwnedFd, String> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    rustix::mount::open_tree(CWD, source, flags)
        .map_err(|e| format!("bind {}: {e}", source.display()))
}

/// Attaches the detached mount `mnt` on the object `target` refers to.
fn attach(mnt: &OwnedFd, target: &OwnedFd) -> Result<(), Errno> {
    rustix::mount::move_mount(
        mnt.as_fd(),
        "",
        target.as_fd(),
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
}

/// `mount_setattr(2)`'s argument.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Sets flags on a (detached) mount; a bind mount keeps its source's flags
/// until told otherwise.
fn set_attrs(mnt: BorrowedFd, attrs: MountAttrFlags, recursive: bool) -> Result<(), String> {
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
        return Err(format!(
            "make the mount read-only: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Makes the root filesystem `/` and detaches rbuild's root beneath it, so
/// nothing of the host stays reachable.
fn pivot(root: BorrowedFd) -> Result<(), ChildError> {
    rustix::process::fchdir(root).map_err(|e| ChildError::setup("enter the root filesystem", e))?;
    // With both arguments ".", the old root ends up stacked on the new one
    // and can be detached without a directory for it in the image.
    rustix::process::pivot_root(".", ".").map_err(|e| ChildError::setup("pivot_root", e))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH)
        .map_err(|e| ChildError::setup("detach the old root", e))?;
    rustix::process::chdir("/").map_err(|e| ChildError::setup("enter /", e))
}
