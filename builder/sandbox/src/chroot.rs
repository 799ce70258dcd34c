//! [`super::Isolation::Chroot`]: running a RUN where namespaces and mounts
//! are refused (root in an unprivileged container).
//!
//! The layers are copied into `scratch/rootfs` together with what the
//! command expects to find (device nodes, `/etc/hosts`…), the state of that
//! tree is recorded, the command runs there under `chroot`, and what changed
//! is written to `upper` as overlayfs would have. Run mounts are emulated
//! in the tree (`chrootmount`).
//!
//! Without a pid namespace the process tree is held together differently:
//! the intermediate process is a child subreaper, so every orphan of the
//! command is re-parented to it, and it kills them all once the command
//! ends, or when rbuild dies (it then receives `SIGTERM`).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, CWD};

use super::chrootmount::Emulated;
use super::error::SandboxError;
use super::namespaces::child_error;
use super::prepare::Prepared;
use super::process::{self, Forked, Supervisor};
use super::protocol::{ChildError, Report, Reporter};
use super::treediff::{self, Index, Markers};
use super::{etcfiles, exec, layers, net, NetworkMode, RunOutcome, RunSpec};

/// Device nodes copied from the host's `/dev` when the image has none.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Directories that are mounts in the namespaces isolation, so nothing in
/// them ever reaches a layer; the chroot isolation leaves them out of the
/// diff to match (a `/dev/null` that had to be a plain file, say).
const NOT_IN_DIFF: [&str; 3] = ["dev", "proc", "sys"];

pub(crate) fn run(
    spec: &RunSpec,
    p: &Prepared,
    on_output: &mut dyn FnMut(&[u8]),
) -> Result<RunOutcome, SandboxError> {
    let rootfs = TreeGuard::create(p.scratch.join("rootfs"))?;
    let mut warnings = Vec::new();
    layers::merge(&p.flatten, &rootfs.0, &mut warnings)?;
    layers::merge(&p.lower, &rootfs.0, &mut warnings)?;
    let mut injected = inject(&rootfs.0, p, &mut warnings)?;
    let emulated = Emulated::place(&rootfs.0, &p.scratch, &p.mounts, &mut warnings)?;
    injected.extend(emulated.created());
    let skip: HashSet<PathBuf> = NOT_IN_DIFF
        .iter()
        .map(PathBuf::from)
        .chain(emulated.targets())
        .collect();
    let before = Index::scan_except(&rootfs.0, &skip)?;

    let output = process::pipe()?;
    let report = process::pipe()?;
    // SAFETY: getpid cannot fail.
    let rbuild = unsafe { libc::getpid() };
    let pid = match process::fork().map_err(|e| SandboxError::sys("fork the sandbox", e))? {
        Forked::Child => reaper(
            p,
            &rootfs.0,
            output.write.as_raw_fd(),
            report.write.as_raw_fd(),
            rbuild,
        ),
        Forked::Parent(pid) => pid,
    };
    drop(output.write);
    drop(report.write);
    let collected = Supervisor::new(pid, output.read, report.read).finish(on_output)?;

    let (reports, complete) = Report::decode_all(&collected.report);
    let mut status = None;
    for r in reports {
        match r {
            Report::Failure(f) => return Err(child_error(spec, p, f)),
            Report::Warning(w) => warnings.push(w),
            Report::Status(s) => status = Some(s),
            Report::Stub(_) | Report::Ancestor(_) => {}
        }
    }
    let Some(status) = status else {
        return Err(SandboxError::Lost(format!(
            "the sandbox's first process ended with {}{}",
            process::decode_status(collected.child_status),
            if complete { "" } else { " while reporting" }
        )));
    };
    let diff_warnings = treediff::diff(
        &rootfs.0,
        &before,
        &injected,
        &skip,
        &p.upper,
        Markers::for_namespace(p.in_userns),
    )?;
    warnings.extend(diff_warnings);
    warnings.extend(emulated.finish(&rootfs.0)?);
    rootfs.remove()?;
    Ok(RunOutcome {
        exit: process::decode_status(status),
        output_tail: collected.tail,
        warnings,
    })
}

/// Adds what the command expects beyond the image: `/dev` nodes and the
/// generated `/etc` files. Returns the paths it created, which are not part
/// of the image.
fn inject(
    root: &Path,
    p: &Prepared,
    warnings: &mut Vec<String>,
) -> Result<HashSet<PathBuf>, SandboxError> {
    let mut created = HashSet::new();
    let hostname = String::from_utf8_lossy(&p.hostname).into_owned();

    if ensure_real_dir(root, "dev", 0o755, &mut created)? {
        let mut refused = Vec::new();
        for name in DEVICES {
            let rel = PathBuf::from("dev").join(name);
            let dst = root.join(&rel);
            if fs::symlink_metadata(&dst).is_ok() {
                continue;
            }
            let host = Path::new("/dev").join(name);
            let meta = fs::metadata(&host).map_err(|e| SandboxError::io("inspect", &host, e))?;
            if !meta.file_type().is_char_device() {
                warnings.push(format!(
                    "/dev/{name} not provided: the host's is not a device"
                ));
                continue;
            }
            match rustix::fs::mknodat(
                CWD,
                &dst,
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o666),
                meta.rdev(),
            ) {
                Ok(()) => {
                    rustix::fs::chmod(&dst, Mode::from_raw_mode(0o666))
                        .map_err(|e| SandboxError::io("chmod", &dst, e.into()))?;
                    created.insert(rel);
                }
                Err(e) => refused.push((name, e)),
            }
        }
        if let Some((_, errno)) = refused.first() {
            let names: Vec<String> = refused.iter().map(|(n, _)| format!("/dev/{n}")).collect();
            let mut warning = format!(
                "{} not provided: creating device nodes is refused ({errno})",
                names.join(", ")
            );
            // Redirections to /dev/null are everywhere; an empty file keeps
            // them working (and /dev is not part of the diff).
            if refused.iter().any(|(n, _)| *n == "null") {
                let null = root.join("dev/null");
                fs::write(&null, b"").map_err(|e| SandboxError::io("create", &null, e))?;
                rustix::fs::chmod(&null, Mode::from_raw_mode(0o666))
                    .map_err(|e| SandboxError::io("chmod", &null, e.into()))?;
                created.insert(PathBuf::from("dev/null"));
                warning.push_str("; /dev/null is an empty file");
            }
            warnings.push(warning);
        }
        let shm = PathBuf::from("dev/shm");
        if fs::symlink_metadata(root.join(&shm)).is_err() {
            fs::create_dir(root.join(&shm))
                .map_err(|e| SandboxError::io("create", root.join(&shm), e))?;
            rustix::fs::chmod(root.join(&shm), Mode::from_raw_mode(0o1777))
                .map_err(|e| SandboxError::io("chmod", root.join(&shm), e.into()))?;
            created.insert(shm);
        }
    }
    warnings.push("no /proc: chroot isolation cannot mount it".to_string());

    if ensure_real_dir(root, "etc", 0o755, &mut created)? {
        for (name, text) in [
            ("hosts", etcfiles::hosts(&hostname)),
            ("resolv.conf", etcfiles::resolv_conf(p.network)),
            ("hostname", etcfiles::hostname(&hostname)),
        ] {
            let rel = PathBuf::from("etc").join(name);
            let dst = root.join(&rel);
            match fs::symlink_metadata(&dst) {
                Err(_) => {
                    created.insert(rel);
                }
                Ok(m) if m.is_file() => {}
                // Writing through a symlink could leave the tree.
                Ok(_) => {
                    warnings.push(format!(
                        "/etc/{name} not written: the image has something else than a file there"
                    ));
                    continue;
                }
            }
            fs::write(&dst, text).map_err(|e| SandboxError::io("write", &dst, e))?;
        }
    } else {
        warnings.push(
            "/etc/hosts, /etc/resolv.conf and /etc/hostname not written: /etc is not a directory"
                .into(),
        );
    }
    Ok(created)
}

/// Makes `root/name` a directory if nothing is there; false when something
/// other than a directory (a symlink) is.
fn ensure_real_dir(
    root: &Path,
    name: &str,
    mode: u32,
    created: &mut HashSet<PathBuf>,
) -> Result<bool, SandboxError> {
    let path = root.join(name);
    match fs::symlink_metadata(&path) {
        Ok(m) => Ok(m.is_dir()),
        Err(_) => {
            fs::create_dir(&path).map_err(|e| SandboxError::io("create", &path, e))?;
            rustix::fs::chmod(&path, Mode::from_raw_mode(mode))
                .map_err(|e| SandboxError::io("chmod", &path, e.into()))?;
            created.insert(PathBuf::from(name));
            Ok(true)
        }
    }
}

/// The intermediate process: subreaper of the command's process tree.
fn reaper(p: &Prepared, root: &Path, output: RawFd, report: RawFd, rbuild: libc::pid_t) -> ! {
    let reporter = Reporter { fd: report };
    process::reset_signals();
    // Catch these by waiting for them, so that none can arrive between a
    // check and a wait.
    let watched = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];
    // SAFETY: plain signal-mask calls.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigemptyset(&mut set);
        for s in watched {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGTERM as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != rbuild {
            process::exit_child(process::SETUP_FAILED_STATUS);
        }
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
    }
    let mut keep = vec![output, report];
    keep.extend(p.command_fds());
    process::close_fds_except(&keep);

    if p.network == NetworkMode::None {
        // SAFETY: unshare affects only this single-threaded child.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            reporter.fail(ChildError::setup(
                "isolate the network",
                format!(
                    "{} (chroot isolation can only run RUN --network=none where network namespaces are allowed)",
                    io::Error::last_os_error()
                ),
            ));
        }
        if let Err(e) = net::loopback_up() {
            reporter.fail(ChildError::setup("bring up the loopback interface", e));
        }
    }
    // A hostname of its own where the kernel allows a UTS namespace.
    // SAFETY: unshare and sethostname on this child with a live buffer.
    let own_hostname = unsafe {
        libc::unshare(libc::CLONE_NEWUTS) == 0
            && libc::sethostname(p.hostname.as_ptr().cast(), p.hostname.len()) == 0
    };
    if !own_hostname {
        reporter.send(&Report::Warning(
            "the command sees the host's hostname: creating a UTS namespace is refused".into(),
        ));
    }

    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    let command = match process::fork() {
        Err(e) => reporter.fail(ChildError::setup("fork the command", e)),
        Ok(Forked::Child) => {
            process::die_with_parent(Some(me), None);
            // SAFETY: leaves rbuild's session; a terminal's Ctrl-C goes to rbuild.
            unsafe { libc::setsid() };
            if let Err(e) = rustix::process::chroot(root).and_then(|_| rustix::process::chdir("/"))
            {
                reporter.fail(ChildError::setup("chroot", e));
            }
            exec::become_user_and_exec(p, output, reporter)
        }
        Ok(Forked::Parent(pid)) => pid,
    };
    // SAFETY: closes this process's copy of the output pipe.
    unsafe { libc::close(output) };

    let status = loop {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits for one of the blocked signals.
        let signal = unsafe { libc::sigwaitinfo(&set, &mut info) };
        if signal == libc::SIGCHLD {
            let mut status = 0;
            // SAFETY: reaps the command if it ended.
            if unsafe { libc::waitpid(command, &mut status, libc::WNOHANG) } == command {
                break Some(status);
            }
        } else if signal > 0 {
            // rbuild died or was interrupted.
            break None;
        }
    };
    kill_descendants();
    if let Some(status) = status {
        reporter.send(&Report::Status(status));
    }
    process::exit_child(0)
}

/// Kills every process re-parented to this subreaper (and the command, if
/// still there) until none is left.
fn kill_descendants() {
    loop {
        let children = children_of_self();
        if children.is_empty() {
            break;
        }
        for &pid in &children {
            // SAFETY: kills our own children.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for _ in &children {
            let mut status = 0;
            // SAFETY: reaps our own children.
            unsafe { libc::waitpid(-1, &mut status, 0) };
        }
    }
}

/// This process's children, from `/proc/<pid>/stat`.
fn children_of_self() -> Vec<libc::pid_t> {
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name may hold spaces and parentheses; fields resume
        // after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<libc::pid_t>().ok());
        if ppid == Some(me) {
            out.push(pid);
        }
    }
    out
}

/// The copied root filesystem, removed however `run` ends.
struct TreeGuard(PathBuf, bool);

impl TreeGuard {
    fn create(path: PathBuf) -> Result<Self, SandboxError> {
        fs::create_dir(&path).map_err(|e| SandboxError::io("create", &path, e))?;
        Ok(TreeGuard(path, true))
    }

    fn remove(mut self) -> Result<(), SandboxError> {
        self.1 = false;
        fs::remove_dir_all(&self.0).map_err(|e| SandboxError::io("remove", &self.0, e))
    }
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if self.1 {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}
