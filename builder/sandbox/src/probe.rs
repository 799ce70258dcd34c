//! Which isolation this process can have: the strongest the environment allows, tried
//! rather than guessed. A child process asks for what the namespaces isolation needs (new
//! mount, pid, ipc and uts namespaces, and a fresh `/proc` in them, which a container's
//! masked `/proc` can forbid even where namespaces are allowed); when the kernel refuses,
//! the chroot isolation is what is left, for a process that is root (of the container, or
//! of rbuild's user namespace).

use std::io;

use super::error::SandboxError;
use super::userns::in_user_namespace;
use super::Isolation;

/// The isolation chosen and why, in words for the build's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationChoice {
    pub isolation: Isolation,
    pub reason: String,
}

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Allowed,
    /// `unshare` of the namespaces was refused with this errno.
    NamespacesRefused(i32),
    /// The namespaces were made but mounting `/proc` in them was refused.
    ProcRefused(i32),
}

/// Tries the namespaces isolation in a child process and picks the strongest isolation
/// available. Call it where the build runs (after [`super::enter_user_namespace_if_needed`]).
pub fn strongest_isolation() -> Result<IsolationChoice, SandboxError> {
    let probe = probe_namespaces()?;
    let is_root = rustix::process::geteuid().is_root();
    Ok(choose(probe, is_root, in_user_namespace()))
}

/// The choice for what the probe found, as root or not, in a user namespace or not.
fn choose(probe: Probe, is_root: bool, rootless: bool) -> IsolationChoice {
    let who = if rootless { "rootless, in a user namespace" } else { "root" };
    let refused = |what: &str, errno: i32, typical: &str| format!("{what} was refused ({}), {typical}", io::Error::from_raw_os_error(errno));
    match (probe, is_root) {
        (Probe::Allowed, _) => IsolationChoice {
            isolation: Isolation::Namespaces,
            reason: format!("{who}: new mount, pid, ipc and uts namespaces over overlayfs are allowed"),
        },
        (Probe::NamespacesRefused(errno), true) => IsolationChoice {
            isolation: Isolation::Chroot,
            reason: format!("{who}, but {}; chroot over a copy of the layers, only as isolated as the container", refused("unshare", errno, "as in a container without CAP_SYS_ADMIN or with Docker's default seccomp profile")),
        },
        (Probe::ProcRefused(errno), true) => IsolationChoice {
            isolation: Isolation::Chroot,
            reason: format!("{who}, but {}; chroot over a copy of the layers, only as isolated as the container", refused("mounting /proc", errno, "as in a container whose /proc has masked paths")),
        },
        // Not root: rbuild would have entered a user namespace (and be root there) or
        // failed before; the namespaces isolation is then still the one to try and explain.
        (_, false) => IsolationChoice { isolation: Isolation::Namespaces, reason: format!("{who}: namespaces (chroot needs root)") },
    }
}

/// Forks a child that unshares the namespaces and forks a grandchild (pid 1 of the new pid
/// namespace) that mounts a fresh `/proc` over `/proc`, seen only in the new mount namespace
/// (made private first). Only system calls run between fork and exit.
fn probe_namespaces() -> Result<Probe, SandboxError> {
    // Exit codes: 0 allowed, 1 + errno (< 126) after a refused unshare, 128 + errno after a
    // refused /proc mount; errno values past those ranges are clamped.
    // SAFETY: between fork and _exit the children only make system calls.
    unsafe {
        let child = libc::fork();
        if child < 0 {
            return Err(SandboxError::sys("fork the isolation probe", io::Error::last_os_error()));
        }
        if child == 0 {
            let flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
            if libc::unshare(flags) != 0 {
                libc::_exit(1 + (*libc::__errno_location()).min(120));
            }
            let none = c"none".as_ptr();
            if libc::mount(none, c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                libc::_exit(1 + (*libc::__errno_location()).min(120));
            }
            let init = libc::fork();
            if init == 0 {
                let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
                let status = libc::mount(c"proc".as_ptr(), c"/proc".as_ptr(), c"proc".as_ptr(), flags, std::ptr::null());
                libc::_exit(if status == 0 { 0 } else { 128 + (*libc::__errno_location()).min(120) });
            }
            let mut status = 0;
            if init < 0 || libc::waitpid(init, &mut status, 0) != init || !libc::WIFEXITED(status) {
                libc::_exit(127);
            }
            libc::_exit(libc::WEXITSTATUS(status));
        }
        let mut status = 0;
        if libc::waitpid(child, &mut status, 0) != child {
            return Err(SandboxError::sys("wait for the isolation probe", io::Error::last_os_error()));
        }
        let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 127 };
        Ok(match code {
            0 => Probe::Allowed,
            1..=121 => Probe::NamespacesRefused(code - 1),
            128..=248 => Probe::ProcRefused(code - 128),
            _ => Probe::NamespacesRefused(libc::EPERM),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_without_namespaces_gets_chroot_and_the_reason() {
        let choice = choose(Probe::NamespacesRefused(libc::EPERM), true, false);
        assert_eq!(choice.isolation, Isolation::Chroot);
        assert!(choice.reason.contains("unshare was refused"), "{}", choice.reason);
        let choice = choose(Probe::ProcRefused(libc::EPERM), true, true);
        assert_eq!(choice.isolation, Isolation::Chroot);
        assert!(choice.reason.contains("mounting /proc"), "{}", choice.reason);
    }

    #[test]
    fn namespaces_when_allowed() {
        let choice = choose(Probe::Allowed, true, true);
        assert_eq!(choice.isolation, Isolation::Namespaces);
        assert!(choice.reason.starts_with("rootless"), "{}", choice.reason);
        assert!(choose(Probe::Allowed, true, false).reason.starts_with("root:"));
    }

    /// The probe itself, for real: as root on this machine namespaces are allowed, and the
    /// probe must say so (the e2e isolation tests cover the refusing containers).
    #[test]
    fn probe_runs() {
        let probe = probe_namespaces().unwrap();
        if rustix::process::geteuid().is_root() {
            assert_eq!(probe, Probe::Allowed);
        }
    }
}
