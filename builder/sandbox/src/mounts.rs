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
//!
//! The step's run mounts (`RUN --mount`) come last, in their order, so one
//! may sit under another's target, and each finds its target through
//! whatever was mounted before it.

use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::mount::MountAttrFlags;

use super::lowerstack;
use super::protocol::{ChildError, FailureKind, Reporter};
use super::rootpath::Kind;
use super::runmount::{Planned, PlannedMount};
use super::syscall::{Opt, Syscall};

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
    /// The layers below [`Layers::lower`] copied into one directory, when
    /// the stack is deeper than overlayfs takes.
    pub flat: Option<PathBuf>,
    /// A directory of short symlinks to the lower layers, for kernels that
    /// take them only as one page-sized `lowerdir` option; made only when
    /// the layers' own paths would not fit.
    pub links: Option<PathBuf>,
}

/// The overlay's layers.
pub(crate) struct Layers<'a> {
    /// Mounted directly, bottom → top.
    pub lower: &'a [PathBuf],
    pub upper: &'a Path,
    /// Whether rbuild runs in a user namespace, where overlayfs keeps its
    /// marks in `user.*` extended attributes.
    pub in_userns: bool,
}

/// The lower directories of the overlay, topmost first, as overlayfs lists
/// them.
pub(crate) fn lowers_topmost_first<'a>(lower: &'a [PathBuf], paths: &'a ScratchPaths) -> Vec<&'a Path> {
    let mut tops: Vec<&Path> = lower.iter().rev().map(PathBuf::as_path).collect();
    tops.extend(paths.flat.as_deref());
    if tops.is_empty() {
        tops.push(&paths.empty_lower);
    }
    tops
}

/// Builds the root filesystem and pivots into it. Runs in the sandbox's
/// pid-1 process, which is in fresh mount and pid namespaces.
pub(crate) fn setup_root<S: Syscall>(
    sys: &S,
    layers: &Layers,
    paths: &ScratchPaths,
    run_mounts: &[PlannedMount],
    reporter: &Reporter,
) -> Result<(), ChildError> {
    // Nothing mounted from here on may propagate back to rbuild's namespace.
    sys.make_mounts_private()
        .map_err(|e| ChildError::setup("make mounts private", e))?;

    let overlay = mount_overlay(sys, layers, paths)?;
    sys.attach_at(&overlay, &paths.rootfs).map_err(|e| {
        ChildError::setup(
            format!("attach the overlay at {}", paths.rootfs.display()),
            e,
        )
    })?;
    let root = Root {
        fd: sys
            .open_dir(&paths.rootfs)
            .map_err(|e| ChildError::setup("open the root filesystem", e))?,
        path: &paths.rootfs,
        reporter,
    };

    mount_proc(sys, &root)?;
    mount_dev(sys, &root)?;
    mount_sys(sys, &root)?;
    for (rel, source) in [
        ("etc/hosts", &paths.hosts),
        ("etc/resolv.conf", &paths.resolv_conf),
        ("etc/hostname", &paths.hostname),
    ] {
        let step = format!("mount /{rel}");
        let target = root.ensure(sys, rel, Kind::File)?;
        let bind = clone_tree(sys, source, false).map_err(|e| ChildError::setup(&step, e))?;
        set_attrs(sys, &bind, read_only_attrs(), false).map_err(|e| ChildError::setup(&step, e))?;
        sys.attach(&bind, &target).map_err(|e| ChildError::setup(&step, e))?;
    }
    for mount in run_mounts {
        mount_run_mount(sys, &root, mount)?;
    }

    pivot(sys, &root.fd)
}

/// The root filesystem, open, where it is mounted in rbuild's view, and
/// where the mount points created in it are reported.
struct Root<'a, Fd> {
    fd: Fd,
    path: &'a Path,
    reporter: &'a Reporter,
}

impl<Fd> Root<'_, Fd> {
    fn ensure<S: Syscall<Fd = Fd>>(&self, sys: &S, rel: impl AsRef<Path>, kind: Kind) -> Result<Fd, ChildError> {
        sys.ensure_in_root(&self.fd, self.path, rel.as_ref(), kind, self.reporter)
    }
}

/// Mounts one run mount at its target, which is resolved inside the root
/// and created, with its missing parents, as stubs when absent. Failures
/// name the target as the step gave it.
fn mount_run_mount<S: Syscall>(sys: &S, root: &Root<S::Fd>, mount: &PlannedMount) -> Result<(), ChildError> {
    let fail = |message: String| ChildError::of(FailureKind::Mount, &mount.target, message);
    let target = root
        .ensure(sys, &mount.rel, mount.mount_point())
        .map_err(|e| fail(format!("{}: {}", e.step, e.message)))?;
    let fs = match &mount.what {
        Planned::Bind { source, readonly, .. } => {
            // Recursive, as BuildKit's `rbind`: mounts under the source come along.
            let bind = clone_tree(sys, source, true).map_err(fail)?;
            if *readonly {
                // Only `ro` is added: the other flags stay as they are, so
                // the nosuid, nodev and noexec that a user namespace locks
                // on a mount of its parent's are kept (clearing a locked
                // flag is refused), and programs in a read-only bind of the
                // build context still run.
                sys.set_attrs(&bind, MountAttrFlags::MOUNT_ATTR_RDONLY, true)
                    .map_err(|e| fail(format!("make the mount read-only: {e}")))?;
            }
            bind
        }
        Planned::Tmpfs { size } => {
            let size = size.map(|bytes| bytes.to_string());
            let opts: Vec<Opt> = size.iter().map(|s| Opt::Str("size", s)).collect();
            let attrs = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV;
            sys.new_fs("tmpfs", &opts, attrs)
                .map_err(|e| fail(format!("mount a tmpfs: {e}")))?
        }
    };
    sys.attach(&fs, &target).map_err(|e| fail(format!("attach the mount: {e}")))
}

fn read_only_attrs() -> MountAttrFlags {
    MountAttrFlags::MOUNT_ATTR_RDONLY
        | MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC
}

fn mount_overlay<S: Syscall>(sys: &S, layers: &Layers, paths: &ScratchPaths) -> Result<S::Fd, ChildError> {
    let lowers = lowers_topmost_first(layers.lower, paths);
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
    let upper = layers.upper.to_str().unwrap_or_default();
    let work = paths.work.to_str().unwrap_or_default();

    let mut common: Vec<Opt> = vec![Opt::Str("upperdir", upper), Opt::Str("workdir", work)];
    if layers.in_userns {
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
    opts.extend(&common);
    let result = match sys.new_fs("overlay", &opts, MountAttrFlags::MOUNT_ATTR_NODEV) {
        Err(e) if e.errno == Errno::INVAL && e.log.iter().any(|l| l.contains("lowerdir+")) => {
            let joined = match &paths.links {
                // The kernel resolves relative layer paths from the working
                // directory of the process that configures the mount.
                Some(links) => {
                    sys.chdir(links)
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
            opts.extend(&common);
            sys.new_fs("overlay", &opts, MountAttrFlags::MOUNT_ATTR_NODEV)
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

/// A layer path inside overlayfs's colon-separated `lowerdir`.
pub(crate) fn escape_lower(path: &str) -> String {
    path.replace('\\', "\\\\").replace(':', "\\:")
}

fn mount_proc<S: Syscall>(sys: &S, root: &Root<S::Fd>) -> Result<(), ChildError> {
    let step = "mount /proc";
    let target = root.ensure(sys, "proc", Kind::Dir)?;
    let attrs = MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    let proc = sys.new_fs("proc", &[], attrs).map_err(|e| ChildError::setup(step, e))?;
    sys.attach(&proc, &target).map_err(|e| ChildError::setup(step, e))
}

fn mount_dev<S: Syscall>(sys: &S, root: &Root<S::Fd>) -> Result<(), ChildError> {
    let target = root.ensure(sys, "dev", Kind::Dir)?;
    let tmpfs = sys
        .new_fs(
            "tmpfs",
            &[Opt::Str("mode", "755"), Opt::Str("size", "65536k")],
            MountAttrFlags::MOUNT_ATTR_NOSUID,
        )
        .map_err(|e| ChildError::setup("mount /dev", e))?;
    sys.attach(&tmpfs, &target).map_err(|e| ChildError::setup("mount /dev", e))?;
    drop(target);
    // The tmpfs now covers the image's /dev; work inside it.
    let dev = sys
        .open_dir_in_root(&root.fd, root.path, Path::new("dev"))
        .map_err(|e| ChildError::setup("open /dev", e))?;

    for name in DEVICES {
        let step = format!("provide /dev/{name}");
        let host = format!("/dev/{name}");
        let bind = clone_tree(sys, Path::new(&host), false).map_err(|e| ChildError::setup(&step, e))?;
        let file = sys
            .create_file_at(&dev, name, 0o666)
            .map_err(|e| ChildError::setup(&step, e))?;
        sys.attach(&bind, &file).map_err(|e| ChildError::setup(&step, e))?;
    }
    for (name, target) in DEV_LINKS {
        sys.symlink_at(target, &dev, name)
            .map_err(|e| ChildError::setup(format!("create /dev/{name}"), e))?;
    }

    let pts = sys
        .make_dir_at(&dev, "pts", 0o755)
        .map_err(|e| ChildError::setup("create /dev/pts", e))?;
    let pts_attrs = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    let mut pts_opts = vec![
        Opt::Flag("newinstance"),
        Opt::Str("ptmxmode", "0666"),
        Opt::Str("mode", "0620"),
        Opt::Str("gid", "5"),
    ];
    // gid 5 (tty) does not exist in a user namespace that maps only root.
    let devpts = sys.new_fs("devpts", &pts_opts, pts_attrs).or_else(|_| {
        pts_opts.pop();
        sys.new_fs("devpts", &pts_opts, pts_attrs)
    });
    let devpts = devpts.map_err(|e| ChildError::setup("mount /dev/pts", e))?;
    sys.attach(&devpts, &pts).map_err(|e| ChildError::setup("mount /dev/pts", e))?;

    let shm = sys
        .make_dir_at(&dev, "shm", 0o1777)
        .map_err(|e| ChildError::setup("create /dev/shm", e))?;
    let shm_fs = sys
        .new_fs(
            "tmpfs",
            &[Opt::Str("mode", "1777"), Opt::Str("size", "65536k")],
            MountAttrFlags::MOUNT_ATTR_NOSUID
                | MountAttrFlags::MOUNT_ATTR_NODEV
                | MountAttrFlags::MOUNT_ATTR_NOEXEC,
        )
        .map_err(|e| ChildError::setup("mount /dev/shm", e))?;
    sys.attach(&shm_fs, &shm).map_err(|e| ChildError::setup("mount /dev/shm", e))
}

fn mount_sys<S: Syscall>(sys: &S, root: &Root<S::Fd>) -> Result<(), ChildError> {
    let step = "mount /sys";
    let target = root.ensure(sys, "sys", Kind::Dir)?;
    let sysfs = match sys.new_fs("sysfs", &[], read_only_attrs()) {
        Ok(fs) => fs,
        // A user namespace may mount sysfs only with a network namespace of
        // its own; with the host's network, show the host's /sys read-only.
        Err(e) if e.errno == Errno::PERM => {
            let bind = clone_tree(sys, Path::new("/sys"), true).map_err(|e| ChildError::setup(step, e))?;
            set_attrs(sys, &bind, read_only_attrs(), true).map_err(|e| ChildError::setup(step, e))?;
            bind
        }
        Err(e) => return Err(ChildError::setup(step, e)),
    };
    sys.attach(&sysfs, &target).map_err(|e| ChildError::setup(step, e))
}

/// A detached bind mount of `source` (a host path).
fn clone_tree<S: Syscall>(sys: &S, source: &Path, recursive: bool) -> Result<S::Fd, String> {
    sys.clone_tree(source, recursive)
        .map_err(|e| format!("bind {}: {e}", source.display()))
}

/// Sets `attrs` on the detached mount `mnt`, which is made read-only.
fn set_attrs<S: Syscall>(sys: &S, mnt: &S::Fd, attrs: MountAttrFlags, recursive: bool) -> Result<(), String> {
    sys.set_attrs(mnt, attrs, recursive)
        .map_err(|e| format!("make the mount read-only: {e}"))
}

/// Makes the root filesystem `/` and detaches rbuild's root beneath it, so
/// nothing of the host stays reachable.
fn pivot<S: Syscall>(sys: &S, root: &S::Fd) -> Result<(), ChildError> {
    sys.fchdir(root).map_err(|e| ChildError::setup("enter the root filesystem", e))?;
    // With both arguments ".", the old root ends up stacked on the new one
    // and can be detached without a directory for it in the image.
    sys.pivot_root(".", ".").map_err(|e| ChildError::setup("pivot_root", e))?;
    sys.unmount_detach(".")
        .map_err(|e| ChildError::setup("detach the old root", e))?;
    sys.chdir(Path::new("/")).map_err(|e| ChildError::setup("enter /", e))
}

#[cfg(test)]
mod tests {
    //! The mount plan against the recording fake: no root, no kernel.

    use super::*;
    use crate::protocol::FailureKind;
    use crate::runmount::SourceKind;
    use crate::syscall::fake::Recorder;

    fn paths() -> ScratchPaths {
        ScratchPaths {
            rootfs: "/s/rootfs".into(),
            work: "/s/work".into(),
            empty_lower: "/s/empty".into(),
            hosts: "/s/hosts".into(),
            resolv_conf: "/s/resolv.conf".into(),
            hostname: "/s/hostname".into(),
            flat: None,
            links: None,
        }
    }

    /// Sets up the root over `lower` (bottom → top) as root outside a user
    /// namespace; the calls made and the outcome.
    fn setup(sys: &Recorder, lower: &[&str], paths: &ScratchPaths) -> Result<(), ChildError> {
        setup_with_mounts(sys, lower, paths, &[])
    }

    fn setup_with_mounts(
        sys: &Recorder,
        lower: &[&str],
        paths: &ScratchPaths,
        run_mounts: &[PlannedMount],
    ) -> Result<(), ChildError> {
        let lower: Vec<PathBuf> = lower.iter().map(PathBuf::from).collect();
        let layers = Layers {
            lower: &lower,
            upper: Path::new("/u"),
            in_userns: false,
        };
        setup_root(sys, &layers, paths, run_mounts, &Reporter { fd: -1 })
    }

    fn starting_with(sys: &Recorder, prefix: &str) -> Vec<String> {
        sys.calls().into_iter().filter(|c| c.starts_with(prefix)).collect()
    }

    const OVERLAY_REST: &str =
        "upperdir=/u,workdir=/s/work,redirect_dir=nofollow,metacopy=off,index=off] nodev";

    #[test]
    fn the_root_filesystem_is_mounted_in_this_order() {
        let sys = Recorder::new();
        setup(&sys, &["/l/base", "/l/top"], &paths()).unwrap();
        let mut want = vec![
            "make mounts private".to_string(),
            format!("new overlay [lowerdir+=/l/top,lowerdir+=/l/base,{OVERLAY_REST}"),
            "attach overlay at /s/rootfs".into(),
            "open /s/rootfs".into(),
            "ensure dir /proc".into(),
            "new proc [] nosuid,nodev,noexec".into(),
            "attach proc on /proc".into(),
            "ensure dir /dev".into(),
            "new tmpfs [mode=755,size=65536k] nosuid".into(),
            "attach tmpfs on /dev".into(),
            "open /dev in the root".into(),
        ];
        for name in DEVICES {
            want.extend([
                format!("clone /dev/{name}"),
                format!("create /dev/{name} 0666"),
                format!("attach host /dev/{name} on /dev/{name}"),
            ]);
        }
        want.extend(
            [
                "symlink /dev/fd -> /proc/self/fd",
                "symlink /dev/stdin -> /proc/self/fd/0",
                "symlink /dev/stdout -> /proc/self/fd/1",
                "symlink /dev/stderr -> /proc/self/fd/2",
                "symlink /dev/ptmx -> pts/ptmx",
                "mkdir /dev/pts 0755",
                "new devpts [newinstance,ptmxmode=0666,mode=0620,gid=5] nosuid,noexec",
                "attach devpts on /dev/pts",
                "mkdir /dev/shm 1777",
                "new tmpfs [mode=1777,size=65536k] nosuid,nodev,noexec",
                "attach tmpfs on /dev/shm",
                "ensure dir /sys",
                "new sysfs [] ro,nosuid,nodev,noexec",
                "attach sysfs on /sys",
            ]
            .map(String::from),
        );
        for (rel, source) in [
            ("etc/hosts", "/s/hosts"),
            ("etc/resolv.conf", "/s/resolv.conf"),
            ("etc/hostname", "/s/hostname"),
        ] {
            want.extend([
                format!("ensure file /{rel}"),
                format!("clone {source}"),
                format!("set ro,nosuid,nodev,noexec on host {source}"),
                format!("attach host {source} on /{rel}"),
            ]);
        }
        want.extend(
            [
                "fchdir /s/rootfs",
                "pivot_root . .",
                "unmount --detach .",
                "chdir /",
            ]
            .map(String::from),
        );
        assert_eq!(sys.calls(), want);
    }

    #[test]
    fn the_overlay_options_follow_the_stack_and_the_namespace() {
        // No layer at all: overlayfs needs one lower directory, an empty one.
        let sys = Recorder::new();
        setup(&sys, &[], &paths()).unwrap();
        assert_eq!(
            starting_with(&sys, "new overlay"),
            [format!("new overlay [lowerdir+=/s/empty,{OVERLAY_REST}")]
        );

        // Layers that were flattened sit below the others.
        let sys = Recorder::new();
        let mut flat = paths();
        flat.flat = Some("/s/flat".into());
        setup(&sys, &["/l/a"], &flat).unwrap();
        assert_eq!(
            starting_with(&sys, "new overlay"),
            [format!("new overlay [lowerdir+=/l/a,lowerdir+=/s/flat,{OVERLAY_REST}")]
        );

        // Rootless: overlayfs keeps its marks in user.* attributes.
        let sys = Recorder::new();
        let lower = [PathBuf::from("/l/a")];
        let layers = Layers {
            lower: &lower,
            upper: Path::new("/u"),
            in_userns: true,
        };
        setup_root(&sys, &layers, &paths(), &[], &Reporter { fd: -1 }).unwrap();
        assert_eq!(
            starting_with(&sys, "new overlay"),
            ["new overlay [lowerdir+=/l/a,upperdir=/u,workdir=/s/work,userxattr,\
              redirect_dir=nofollow,metacopy=off,index=off] nodev"]
        );
    }

    /// What a kernel before 6.8 says to `lowerdir+`.
    fn without_lowerdir_plus() -> Recorder {
        Recorder::new().fail_with_log(
            "new overlay [lowerdir+=",
            Errno::INVAL,
            &["overlay: Unknown parameter 'lowerdir+'"],
        )
    }

    #[test]
    fn older_kernels_get_one_escaped_lowerdir() {
        let sys = without_lowerdir_plus();
        setup(&sys, &["/l/base", "/l/a:b"], &paths()).unwrap();
        assert_eq!(
            starting_with(&sys, "new overlay"),
            [
                format!("new overlay [lowerdir+=/l/a:b,lowerdir+=/l/base,{OVERLAY_REST}"),
                format!("new overlay [lowerdir=/l/a\\:b:/l/base,{OVERLAY_REST}"),
            ]
        );
        assert!(starting_with(&sys, "chdir").iter().all(|c| c == "chdir /"));
    }

    #[test]
    fn older_kernels_get_the_links_when_the_paths_are_too_long() {
        let sys = without_lowerdir_plus();
        let mut linked = paths();
        linked.links = Some("/s/l".into());
        setup(&sys, &["/l/base", "/l/a", "/l/top"], &linked).unwrap();
        let calls = sys.calls();
        let chdir = calls.iter().position(|c| c == "chdir /s/l").unwrap();
        assert_eq!(
            calls[chdir + 1],
            format!("new overlay [lowerdir=0:1:2,{OVERLAY_REST}"),
            "the kernel resolves the link names from the working directory"
        );
    }

    #[test]
    fn a_refused_overlay_is_not_retried_and_says_why() {
        // EINVAL for another reason than lowerdir+: no second try.
        let sys = Recorder::new().fail_with_log(
            "new overlay",
            Errno::INVAL,
            &["overlay: upper fs does not support tmpfile"],
        );
        let err = setup(&sys, &["/l/base"], &paths()).unwrap_err();
        assert_eq!(err.kind, FailureKind::Overlay);
        assert!(err.message.contains("upper fs does not support tmpfile"), "{err:?}");
        assert_eq!(starting_with(&sys, "new overlay").len(), 1);
        assert_eq!(sys.calls().last().unwrap(), &starting_with(&sys, "new overlay")[0]);

        let sys = Recorder::new().fail("new overlay", Errno::NODEV);
        let err = setup(&sys, &["/l/base"], &paths()).unwrap_err();
        assert_eq!(err.kind, FailureKind::Overlay);
        assert!(err.message.ends_with("the kernel has no overlayfs (`modprobe overlay`)"), "{err:?}");
    }

    #[test]
    fn sysfs_refused_shows_the_hosts_sys_read_only() {
        let sys = Recorder::new().fail("new sysfs", Errno::PERM);
        setup(&sys, &["/l/base"], &paths()).unwrap();
        let calls = sys.calls();
        let refused = calls.iter().position(|c| c.starts_with("new sysfs")).unwrap();
        assert_eq!(
            calls[refused + 1..refused + 4],
            [
                "clone /sys recursive",
                "set ro,nosuid,nodev,noexec on host /sys recursive",
                "attach host /sys on /sys",
            ]
        );

        // Any other refusal is the sandbox's failure.
        let sys = Recorder::new().fail("new sysfs", Errno::NODEV);
        let err = setup(&sys, &["/l/base"], &paths()).unwrap_err();
        assert_eq!((err.kind, err.step.as_str()), (FailureKind::Setup, "mount /sys"));
        assert!(starting_with(&sys, "clone /sys").is_empty());
    }

    #[test]
    fn devpts_without_the_tty_group_is_mounted_without_gid() {
        let sys = Recorder::new().fail("new devpts [newinstance,ptmxmode=0666,mode=0620,gid=5]", Errno::INVAL);
        setup(&sys, &["/l/base"], &paths()).unwrap();
        assert_eq!(
            starting_with(&sys, "new devpts"),
            [
                "new devpts [newinstance,ptmxmode=0666,mode=0620,gid=5] nosuid,noexec",
                "new devpts [newinstance,ptmxmode=0666,mode=0620] nosuid,noexec",
            ]
        );
        assert_eq!(starting_with(&sys, "attach devpts"), ["attach devpts on /dev/pts"]);
    }

    #[test]
    fn a_failed_step_stops_the_setup_and_is_named() {
        for (call, step) in [
            ("make mounts private", "make mounts private"),
            ("attach overlay", "attach the overlay at /s/rootfs"),
            ("ensure dir /proc", "mount point /proc"),
            ("attach proc", "mount /proc"),
            ("clone /dev/tty", "provide /dev/tty"),
            ("symlink /dev/ptmx", "create /dev/ptmx"),
            ("attach host /s/resolv.conf", "mount /etc/resolv.conf"),
            ("set ro,nosuid,nodev,noexec on host /s/hostname", "mount /etc/hostname"),
            ("pivot_root", "pivot_root"),
        ] {
            let sys = Recorder::new().fail(call, Errno::ACCESS);
            let err = setup(&sys, &["/l/base"], &paths()).unwrap_err();
            assert_eq!((err.kind, err.step.as_str()), (FailureKind::Setup, step), "{call}");
            assert!(
                sys.calls().last().unwrap().starts_with(call),
                "{call}: nothing runs after the failure: {:?}",
                sys.calls()
            );
            assert!(starting_with(&sys, "chdir /").is_empty(), "{call}: never pivoted");
        }
    }

    fn planned(target: &str, what: Planned) -> PlannedMount {
        PlannedMount {
            target: target.into(),
            rel: target.trim_start_matches('/').into(),
            what,
        }
    }

    fn bind(target: &str, source: &str, kind: SourceKind, readonly: bool) -> PlannedMount {
        let source = source.into();
        planned(target, Planned::Bind { source, kind, readonly })
    }

    /// The calls from the first run mount's up to `pivot_root`.
    fn run_mount_calls(sys: &Recorder) -> Vec<String> {
        let calls = sys.calls();
        let hostname = calls.iter().position(|c| c == "attach host /s/hostname on /etc/hostname").unwrap();
        let pivot = calls.iter().position(|c| c == "fchdir /s/rootfs").unwrap();
        calls[hostname + 1..pivot].to_vec()
    }

    #[test]
    fn run_mounts_come_last_in_their_order() {
        let sys = Recorder::new();
        let mounts = [
            bind("/cache", "/h/cache", SourceKind::Dir, false),
            // Nested under the one before: found through it.
            planned("/cache/tmp", Planned::Tmpfs { size: Some(1 << 20) }),
            bind("/src", "/h/context", SourceKind::Dir, true),
            bind("/run/secrets/token", "/h/token", SourceKind::File, true),
            bind("/run/ssh.sock", "/h/agent.sock", SourceKind::Socket, false),
            planned("/scratch", Planned::Tmpfs { size: None }),
        ];
        setup_with_mounts(&sys, &["/l/base"], &paths(), &mounts).unwrap();
        assert_eq!(
            run_mount_calls(&sys),
            [
                "ensure dir /cache",
                "clone /h/cache recursive",
                "attach host /h/cache on /cache",
                "ensure dir /cache/tmp",
                "new tmpfs [size=1048576] nosuid,nodev",
                "attach tmpfs on /cache/tmp",
                "ensure dir /src",
                "clone /h/context recursive",
                // Read-only adds `ro` alone: the locked flags a user
                // namespace puts on the source stay, and nothing is cleared.
                "set ro on host /h/context recursive",
                "attach host /h/context on /src",
                // A file or a socket is mounted over a file.
                "ensure file /run/secrets/token",
                "clone /h/token recursive",
                "set ro on host /h/token recursive",
                "attach host /h/token on /run/secrets/token",
                "ensure file /run/ssh.sock",
                "clone /h/agent.sock recursive",
                "attach host /h/agent.sock on /run/ssh.sock",
                "ensure dir /scratch",
                "new tmpfs [] nosuid,nodev",
                "attach tmpfs on /scratch",
            ]
        );
        assert_eq!(sys.calls().last().unwrap(), "chdir /");
    }

    #[test]
    fn a_failed_run_mount_is_named_by_its_target() {
        let mounts = [
            planned("/t", Planned::Tmpfs { size: None }),
            bind("/data", "/h/data", SourceKind::Dir, true),
        ];
        for (call, errno, message) in [
            ("ensure dir /data", Errno::NOTDIR, "mount point /data: "),
            ("clone /h/data", Errno::NOENT, "bind /h/data: "),
            ("set ro on host /h/data", Errno::PERM, "make the mount read-only: "),
            ("attach host /h/data", Errno::ACCESS, "attach the mount: "),
        ] {
            let sys = Recorder::new().fail(call, errno);
            let err = setup_with_mounts(&sys, &["/l/base"], &paths(), &mounts).unwrap_err();
            assert_eq!((err.kind, err.step.as_str()), (FailureKind::Mount, "/data"), "{call}");
            assert!(err.message.starts_with(message), "{call}: {err:?}");
            assert!(sys.calls().last().unwrap().starts_with(call), "{call}: stops there");
        }
        let sys = Recorder::new().fail("new tmpfs []", Errno::NOMEM);
        let err = setup_with_mounts(&sys, &["/l/base"], &paths(), &mounts).unwrap_err();
        assert_eq!((err.kind, err.step.as_str()), (FailureKind::Mount, "/t"));
        assert!(err.message.starts_with("mount a tmpfs: "), "{err:?}");
    }
}
