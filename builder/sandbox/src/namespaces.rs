//! [`super::Isolation::Namespaces`]: the process tree of a RUN.
//!
//! ```text
//! rbuild ── fork ──▶ intermediate: unshare(mount, pid, ipc, uts[, net])
//!                      │  waits, then reports the command's status
//!                      └─ fork ──▶ pid 1 of the new pid namespace:
//!                                  lo up, hostname, mounts, pivot_root,
//!                                  user, exec the command
//! ```
//!
//! Each child dies with its parent (`PR_SET_PDEATHSIG`), and when pid 1 (the
//! command) ends, the kernel kills everything else in its pid namespace. The
//! mounts belong to the intermediate's mount namespace, so they are gone as
//! soon as the intermediate has exited, which is when rbuild has reaped it.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use super::error::SandboxError;
use super::mounts::{self, ScratchPaths};
use super::prepare::Prepared;
use super::process::{self, Forked, Supervisor};
use super::protocol::{ChildError, FailureKind, Report, Reporter};
use super::syscall::{Linux, Syscall};
use super::{etcfiles, exec, layers, lowerstack, net, stubs, NetworkMode, RunOutcome, RunSpec};

pub(crate) fn run(
    spec: &RunSpec,
    p: &Prepared,
    on_output: &mut dyn FnMut(&[u8]),
) -> Result<RunOutcome, SandboxError> {
    let scratch = Scratch::create(p)?;
    let output = process::pipe()?;
    let report = process::pipe()?;
    // SAFETY: getpid cannot fail.
    let rbuild = unsafe { libc::getpid() };

    let pid = match process::fork().map_err(|e| SandboxError::sys("fork the sandbox", e))? {
        Forked::Child => intermediate(
            p,
            &scratch.paths,
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
    let mut stub_list = Vec::new();
    let mut ancestors = Vec::new();
    let mut warnings = Vec::new();
    let mut status = None;
    let mut failure = None;
    for r in reports {
        match r {
            Report::Failure(f) => failure = failure.or(Some(f)),
            Report::Stub(s) => stub_list.push(s),
            Report::Ancestor(a) => ancestors.push(a),
            Report::Warning(w) => warnings.push(w),
            Report::Status(s) => status = Some(s),
        }
    }
    // Stubs are removed even when setup failed half-way, so `upper` holds
    // only what a command changed.
    let cleaned = stubs::remove_stubs(&p.upper, &stub_list, &ancestors);
    scratch.cleanup()?;
    if let Some(f) = failure {
        return Err(child_error(spec, p, f));
    }
    cleaned?;
    match status {
        Some(status) => Ok(RunOutcome {
            exit: process::decode_status(status),
            output_tail: collected.tail,
            warnings,
        }),
        None => Err(SandboxError::Lost(format!(
            "the sandbox's first process ended with {}{}",
            process::decode_status(collected.child_status),
            if complete { "" } else { " while reporting" }
        ))),
    }
}

/// Turns a failure reported by a child into the error rbuild returns.
pub(crate) fn child_error(spec: &RunSpec, p: &Prepared, f: ChildError) -> SandboxError {
    match f.kind {
        FailureKind::Setup => SandboxError::Setup {
            step: f.step,
            message: f.message,
        },
        FailureKind::User => SandboxError::User {
            spec: spec.user.clone(),
            message: format!("{}: {}", f.step, f.message),
        },
        FailureKind::Mount => SandboxError::Mount {
            target: f.step,
            message: f.message,
        },
        FailureKind::Exec => SandboxError::Exec {
            program: spec.argv[0].clone(),
            message: f.message,
        },
        FailureKind::Overlay => SandboxError::Overlay {
            message: f.message,
            hint: if p.in_userns {
                ". Rootless overlayfs needs Linux 5.11 or later, and the filesystem of the store must support \
                 user.* extended attributes (tmpfs does from Linux 6.6); where it cannot, use chroot isolation"
                    .to_string()
            } else {
                ". The upper and work directories must be on one filesystem that overlayfs accepts as upper layer \
                 (overlayfs itself is not; put the store on a volume)"
                    .to_string()
            },
        },
    }
}

/// The intermediate process: new namespaces, then the sandbox's pid 1.
fn intermediate(
    p: &Prepared,
    paths: &ScratchPaths,
    output: RawFd,
    report: RawFd,
    rbuild: libc::pid_t,
) -> ! {
    let reporter = Reporter { fd: report };
    process::die_with_parent(Some(rbuild), None);
    process::reset_signals();
    let mut keep = vec![output, report];
    keep.extend(p.command_fds());
    process::close_fds_except(&keep);

    if let Err(e) = new_namespaces(&Linux, p.network) {
        reporter.fail(e);
    }

    let lifeline = match process::pipe() {
        Ok(p) => p,
        Err(e) => reporter.fail(ChildError::setup("create namespaces", e)),
    };
    match process::fork() {
        Err(e) => reporter.fail(ChildError::setup("fork the sandbox's first process", e)),
        Ok(Forked::Child) => {
            drop(lifeline.write);
            sandbox_init(p, paths, output, reporter, lifeline.read.as_raw_fd())
        }
        Ok(Forked::Parent(init)) => {
            drop(lifeline.read);
            // SAFETY: closing this process's copy of the output pipe, so its
            // end-of-file tells rbuild that the sandbox's processes are gone.
            unsafe { libc::close(output) };
            match process::wait_for(init) {
                Ok(status) => reporter.send(&Report::Status(status)),
                Err(e) => reporter.send(&Report::Failure(ChildError::setup(
                    "wait for the command",
                    e,
                ))),
            }
            process::exit_child(0)
        }
    }
}

/// Moves the calling process into new mount, ipc and uts namespaces, its
/// children into a new pid namespace, and with [`NetworkMode::None`] into a
/// network namespace of its own.
fn new_namespaces<S: Syscall>(sys: &S, network: NetworkMode) -> Result<(), ChildError> {
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if network == NetworkMode::None {
        flags |= libc::CLONE_NEWNET;
    }
    sys.unshare(flags).map_err(|errno| {
        let hint = if errno == Errno::PERM {
            " (the kernel refused new namespaces: this happens inside a container whose seccomp \
             profile or capabilities forbid namespaces and mounts; rerun with --isolation=chroot, \
             which runs RUN steps with chroot over a copied filesystem)"
        } else {
            ""
        };
        ChildError::setup("create namespaces", format!("{errno}{hint}"))
    })
}

/// Pid 1 of the sandbox: sets up the root filesystem and becomes the command.
fn sandbox_init(
    p: &Prepared,
    paths: &ScratchPaths,
    output: RawFd,
    reporter: Reporter,
    lifeline: RawFd,
) -> ! {
    process::die_with_parent(None, Some(lifeline));
    // SAFETY: closes our copy of the lifeline and leaves rbuild's session, so
    // a terminal's Ctrl-C reaches rbuild, and the sandbox dies with it.
    unsafe {
        libc::close(lifeline);
        libc::setsid();
    }
    if p.network == NetworkMode::None {
        if let Err(e) = net::loopback_up() {
            reporter.fail(ChildError::setup("bring up the loopback interface", e));
        }
    }
    // SAFETY: passes a live buffer and its length.
    if unsafe { libc::sethostname(p.hostname.as_ptr().cast(), p.hostname.len()) } != 0 {
        reporter.fail(ChildError::setup(
            "set the hostname",
            io::Error::last_os_error(),
        ));
    }
    let layers = mounts::Layers {
        lower: &p.lower,
        upper: &p.upper,
        in_userns: p.in_userns,
    };
    if let Err(e) = mounts::setup_root(&Linux, &layers, paths, &p.mounts, &reporter) {
        reporter.fail(e);
    }
    exec::become_user_and_exec(p, output, reporter)
}

/// What the sandbox creates in the scratch directory, removed again
/// afterwards (also when `run` fails or panics).
struct Scratch {
    paths: ScratchPaths,
    created: Vec<(PathBuf, bool)>,
}

impl Scratch {
    fn create(p: &Prepared) -> Result<Self, SandboxError> {
        let dir = &p.scratch;
        let paths = ScratchPaths {
            rootfs: dir.join("rootfs"),
            work: dir.join("work"),
            empty_lower: dir.join("empty"),
            hosts: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
            hostname: dir.join("hostname"),
            flat: None,
            links: None,
        };
        let mut scratch = Scratch {
            created: Vec::new(),
            paths,
        };
        let hostname = String::from_utf8_lossy(&p.hostname).into_owned();
        for dir in [
            &scratch.paths.rootfs,
            &scratch.paths.work,
            &scratch.paths.empty_lower,
        ] {
            fs::create_dir(dir).map_err(|e| SandboxError::io("create", dir, e))?;
            scratch.created.push((dir.clone(), true));
        }
        for (path, text) in [
            (&scratch.paths.hosts, etcfiles::hosts(&hostname)),
            (&scratch.paths.resolv_conf, etcfiles::resolv_conf(p.network)),
            (&scratch.paths.hostname, etcfiles::hostname(&hostname)),
        ] {
            write_new(path, &text)?;
            scratch.created.push((path.clone(), false));
        }
        if !p.flatten.is_empty() {
            let flat = dir.join("flat");
            fs::create_dir(&flat).map_err(|e| SandboxError::io("create", &flat, e))?;
            scratch.created.push((flat.clone(), true));
            // Warnings of the copy (a file type it cannot make) would be the
            // chroot isolation's; layers hold only what overlayfs holds.
            layers::merge(&p.flatten, &flat, &mut Vec::new())?;
            scratch.paths.flat = Some(flat);
        }
        let tops = mounts::lowers_topmost_first(&p.lower, &scratch.paths);
        let escaped: Vec<String> = tops
            .iter()
            .map(|l| mounts::escape_lower(&l.to_string_lossy()))
            .collect();
        if lowerstack::joined_too_long(&escaped) {
            let links = lowerstack::create_links(dir, &tops)
                .map_err(|e| SandboxError::io("create links in", dir, e))?;
            scratch.created.push((links.clone(), true));
            scratch.paths.links = Some(links);
        }
        Ok(scratch)
    }

    fn cleanup(mut self) -> Result<(), SandboxError> {
        let created = std::mem::take(&mut self.created);
        for (path, dir) in created.iter().rev() {
            let removed = if *dir {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            };
            removed.map_err(|e| SandboxError::io("remove", path, e))?;
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for (path, dir) in self.created.iter().rev() {
            let _ = if *dir {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            };
        }
    }
}

fn write_new(path: &Path, text: &str) -> Result<(), SandboxError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| SandboxError::io("create", path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| SandboxError::io("write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::fake::Recorder;

    #[test]
    fn namespaces_for_each_network() {
        let sys = Recorder::new();
        new_namespaces(&sys, NetworkMode::Host).unwrap();
        new_namespaces(&sys, NetworkMode::None).unwrap();
        assert_eq!(
            sys.calls(),
            ["unshare mount,pid,ipc,uts", "unshare mount,pid,ipc,uts,net"]
        );
    }

    #[test]
    fn refused_namespaces_point_at_chroot_isolation() {
        let sys = Recorder::new().fail("unshare", Errno::PERM);
        let err = new_namespaces(&sys, NetworkMode::Host).unwrap_err();
        assert_eq!(err.step, "create namespaces");
        assert!(err.message.contains("rerun with --isolation=chroot"), "{err:?}");

        let sys = Recorder::new().fail("unshare", Errno::NOMEM);
        let err = new_namespaces(&sys, NetworkMode::Host).unwrap_err();
        assert!(!err.message.contains("--isolation"), "{err:?}");
    }
}
