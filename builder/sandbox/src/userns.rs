//! Rootless rbuild: moving the whole process into a user namespace where it
//! is root, before it does anything else.
//!
//! The process unshares its own user namespace instead of re-executing itself
//! into one: at the top of `main` it has a single thread, which is all
//! `unshare(CLONE_NEWUSER)` asks for, and staying the same process keeps the
//! pid, the exit status and signal handling as the caller expects. A helper
//! forked beforehand stays in the original namespace, where it must be for
//! newuidmap/newgidmap to install the maps on rbuild's behalf.
//!
//! Inside, rbuild is uid 0 with every capability over its namespace, and its
//! files on disk carry the mapped ids: stat() shows the image's ids, and
//! `chown 1000:1000` works when a subordinate range is mapped.

use std::fs;
use std::io::{self, Write};

use super::error::SandboxError;
use super::idmap::{plan_id_maps, IdMapLine, IdMapPlan};
use super::syscall::{Linux, Syscall};

/// Whether this process runs in a user namespace other than the initial one,
/// i.e. rootless. Overlay mounts then need `userxattr`, and overlayfs marks
/// opaque directories with `user.overlay.opaque` instead of
/// `trusted.overlay.opaque`.
pub(crate) fn in_user_namespace() -> bool {
    match fs::read_to_string("/proc/self/uid_map") {
        // The initial namespace maps all 2^32 - 1 ids onto themselves.
        Ok(map) => map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    }
}

/// Set when this process denied itself `setgroups` (a user namespace mapping only root):
/// read after a chroot, where `/proc/self/setgroups` is not there to say so.
static SETGROUPS_DENIED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether rbuild's user namespace was entered with `setgroups` denied.
pub(crate) fn setgroups_denied() -> bool {
    SETGROUPS_DENIED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The warning given when this process's user namespace maps only root.
static ONLY_ROOT_MAPPED: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// When rbuild runs rootless with only uid 0 and gid 0 mapped (no
/// subordinate ids), the warning that said so and how to fix it: a RUN that
/// fails changing an owner points back at it.
pub fn only_root_mapped() -> Option<&'static str> {
    ONLY_ROOT_MAPPED.get().map(String::as_str)
}

/// Call first thing in `main()`. As root this does nothing. Otherwise it
/// moves the process into a new user namespace where it is root: with the
/// user's `/etc/subuid` and `/etc/subgid` ranges mapped from id 1 when they
/// exist and newuidmap/newgidmap are installed, or else with root alone and
/// a warning on stderr that says what to add. When the system blocks user
/// namespaces, the error names the cause and the fix.
pub fn enter_user_namespace_if_needed() -> Result<(), SandboxError> {
    if let Some(warning) = enter_user_namespace(&Linux)? {
        let _ = writeln!(io::stderr(), "rbuild: warning: {warning}");
        let _ = ONLY_ROOT_MAPPED.set(warning);
    }
    Ok(())
}

/// [`enter_user_namespace_if_needed`] but for the warning, which is
/// returned when only root is mapped.
fn enter_user_namespace<S: Syscall>(sys: &S) -> Result<Option<String>, SandboxError> {
    let (uid, gid) = sys.effective_ids();
    if uid == 0 {
        return Ok(None);
    }
    ensure_single_threaded(sys)?;

    let name = user_name(sys, uid);
    let plan = plan_id_maps(
        uid,
        gid,
        name.as_deref(),
        sys.read_file("/etc/subuid").ok().as_deref(),
        sys.read_file("/etc/subgid").ok().as_deref(),
        sys.find_tool("newuidmap").is_some(),
        sys.find_tool("newgidmap").is_some(),
    );
    let warning = match plan {
        IdMapPlan::Ranges { uid_map, gid_map } => {
            sys.enter_with_helpers(&uid_map, &gid_map, &|| unshare_user(sys))?;
            become_root(sys, true)?;
            None
        }
        IdMapPlan::Single {
            uid_map,
            gid_map,
            warning,
        } => {
            enter_single(sys, uid_map, gid_map)?;
            become_root(sys, false)?;
            Some(warning)
        }
    };
    check_capabilities(sys)?;
    Ok(warning)
}

/// `unshare(CLONE_NEWUSER)` refuses a process with more than one thread.
fn ensure_single_threaded<S: Syscall>(sys: &S) -> Result<(), SandboxError> {
    let status = sys
        .read_file("/proc/self/status")
        .map_err(|e| SandboxError::io("read", "/proc/self/status", e))?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(1);
    if threads > 1 {
        return Err(SandboxError::sys(
            "enter a user namespace",
            io::Error::other(format!(
                "the process already runs {threads} threads; call enter_user_namespace_if_needed() before any thread starts"
            )),
        ));
    }
    Ok(())
}

fn user_name<S: Syscall>(sys: &S, uid: u32) -> Option<String> {
    let passwd = sys.read_file("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 2 && fields[2].parse() == Ok(uid)).then(|| fields[0].to_string())
    })
}

fn unshare_user<S: Syscall>(sys: &S) -> Result<(), SandboxError> {
    let Err(errno) = sys.unshare(libc::CLONE_NEWUSER) else {
        return Ok(());
    };
    let (cause, fix) = diagnose(errno.raw_os_error(), &Knobs::read(sys));
    Err(SandboxError::UserNamespaceBlocked { cause, fix })
}

/// Root-only mapping, which the process may write itself once `setgroups`
/// is denied (the kernel's condition for an unprivileged gid map).
fn enter_single<S: Syscall>(sys: &S, uid_map: IdMapLine, gid_map: IdMapLine) -> Result<(), SandboxError> {
    unshare_user(sys)?;
    let write = |path: &str, text: String| {
        sys.write_file(path, &text).map_err(|e| {
            if e.raw_os_error() == Some(libc::EPERM) {
                blocked_after_unshare(sys)
            } else {
                SandboxError::io("write", path, e)
            }
        })
    };
    write("/proc/self/setgroups", "deny".to_string())?;
    SETGROUPS_DENIED.store(true, std::sync::atomic::Ordering::Relaxed);
    write(
        "/proc/self/uid_map",
        format!("{} {} {}\n", uid_map.inside, uid_map.outside, uid_map.count),
    )?;
    write(
        "/proc/self/gid_map",
        format!("{} {} {}\n", gid_map.inside, gid_map.outside, gid_map.count),
    )
}

fn become_root<S: Syscall>(sys: &S, may_setgroups: bool) -> Result<(), SandboxError> {
    sys.set_res_gid(0)
        .map_err(|e| SandboxError::sys("become gid 0 in the user namespace", e))?;
    sys.set_res_uid(0)
        .map_err(|e| SandboxError::sys("become uid 0 in the user namespace", e))?;
    // The caller's supplementary groups are not mapped; drop them. With
    // ranges the kernel allows it; with root alone setgroups is denied.
    if may_setgroups {
        sys.set_groups(&[])
            .map_err(|e| SandboxError::sys("clear supplementary groups", e))?;
    }
    Ok(())
}

/// The capability every mount needs.
const CAP_SYS_ADMIN: u32 = 21;

/// Ubuntu's AppArmor restriction lets `unshare` succeed but leaves the new
/// namespace without capabilities; catch that here rather than at the first
/// mount.
fn check_capabilities<S: Syscall>(sys: &S) -> Result<(), SandboxError> {
    let status = sys
        .read_file("/proc/self/status")
        .map_err(|e| SandboxError::io("read", "/proc/self/status", e))?;
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    if effective & (1 << CAP_SYS_ADMIN) == 0 {
        return Err(blocked_after_unshare(sys));
    }
    Ok(())
}

fn blocked_after_unshare<S: Syscall>(sys: &S) -> SandboxError {
    let knobs = Knobs::read(sys);
    let (cause, fix) = if knobs.apparmor_restrict == Some(1) {
        diagnose(libc::EPERM, &knobs)
    } else {
        (
            "the new user namespace has no capabilities (a security module restricts it)".to_string(),
            "allow unprivileged user namespaces for rbuild in the system's security policy (AppArmor, SELinux)".to_string(),
        )
    };
    SandboxError::UserNamespaceBlocked { cause, fix }
}

/// The system settings that decide whether unprivileged user namespaces work.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Knobs {
    /// `user.max_user_namespaces`.
    pub max_user_namespaces: Option<u64>,
    /// Debian's `kernel.unprivileged_userns_clone`.
    pub unprivileged_userns_clone: Option<u64>,
    /// Ubuntu's `kernel.apparmor_restrict_unprivileged_userns`.
    pub apparmor_restrict: Option<u64>,
    /// The `Seccomp:` mode of this process (2 = filtered).
    pub seccomp_mode: Option<u64>,
}

impl Knobs {
    fn read<S: Syscall>(sys: &S) -> Self {
        let number = |path: &str| {
            sys.read_file(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        let seccomp_mode = sys.read_file("/proc/self/status").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Seccomp:"))
                .and_then(|v| v.trim().parse().ok())
        });
        Knobs {
            max_user_namespaces: number("/proc/sys/user/max_user_namespaces"),
            unprivileged_userns_clone: number("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmor_restrict: number("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
            seccomp_mode,
        }
    }
}

/// Why `unshare(CLONE_NEWUSER)` failed with `errno`, and the fix.
pub(crate) fn diagnose(errno: i32, knobs: &Knobs) -> (String, String) {
    let pair = |c: &str, f: &str| (c.to_string(), f.to_string());
    if knobs.max_user_namespaces == Some(0) {
        return pair(
            "the sysctl user.max_user_namespaces is 0, which disables user namespaces",
            "`sudo sysctl -w user.max_user_namespaces=15000`, and put `user.max_user_namespaces=15000` in /etc/sysctl.d/99-rbuild.conf to keep it",
        );
    }
    if knobs.unprivileged_userns_clone == Some(0) {
        return pair(
            "the sysctl kernel.unprivileged_userns_clone is 0, which forbids unprivileged user namespaces",
            "`sudo sysctl -w kernel.unprivileged_userns_clone=1`, and put `kernel.unprivileged_userns_clone=1` in /etc/sysctl.d/99-rbuild.conf to keep it",
        );
    }
    if knobs.apparmor_restrict == Some(1) {
        return pair(
            "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns=1)",
            "give rbuild an AppArmor profile that allows them: write /etc/apparmor.d/rbuild containing \
             `abi <abi/4.0>, include <tunables/global> profile rbuild /usr/local/bin/rbuild flags=(unconfined) { userns, }` \
             (with the path of your rbuild) and run `sudo apparmor_parser -r /etc/apparmor.d/rbuild`; \
             or `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`",
        );
    }
    if errno == libc::EPERM && knobs.seccomp_mode == Some(2) {
        return pair(
            "a seccomp filter refuses unshare(CLONE_NEWUSER) (a container runtime's default profile does)",
            "run rbuild's container with a seccomp profile that allows unshare and clone with namespace flags \
             (e.g. `--security-opt seccomp=unconfined`), or run rbuild as root there with `--isolation=chroot`",
        );
    }
    match errno {
        libc::ENOSPC | libc::EUSERS => pair(
            "the limit on user namespaces (user.max_user_namespaces, or the nesting depth of 32) is reached",
            "raise `user.max_user_namespaces` with sysctl, or run rbuild less deeply nested",
        ),
        libc::EINVAL => pair(
            "the kernel refuses a new user namespace to a chrooted process",
            "run rbuild outside the chroot",
        ),
        _ => (
            format!(
                "unshare(CLONE_NEWUSER) failed: {}",
                io::Error::from_raw_os_error(errno)
            ),
            "check that the kernel has user namespaces (CONFIG_USER_NS) and that no security policy forbids them to unprivileged users"
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    //! Entering the user namespace against the recording fake: which maps
    //! are written, and what each refusal becomes.

    use rustix::io::Errno;

    use super::*;
    use crate::syscall::fake::Recorder;

    /// `/proc/self/status` of a single-threaded process with every
    /// capability, as after a successful unshare.
    const STATUS: &str = "Name:\trbuild\nThreads:\t1\nSeccomp:\t0\nCapEff:\t000001ffffffffff\n";

    fn alice() -> Recorder {
        Recorder::new()
            .ids(1000, 1000)
            .file("/proc/self/status", STATUS)
            .file("/etc/passwd", "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n")
    }

    #[test]
    fn root_stays_where_it_is() {
        let sys = Recorder::new().ids(0, 0);
        assert_eq!(enter_user_namespace(&sys).unwrap(), None);
        assert!(sys.calls().is_empty());
    }

    #[test]
    fn without_subordinate_ids_only_root_is_mapped_by_the_process_itself() {
        let sys = alice().tool("newuidmap").tool("newgidmap");
        let warning = enter_user_namespace(&sys).unwrap().unwrap();
        assert!(warning.contains("user alice has no subordinate id range in /etc/subuid and /etc/subgid"), "{warning}");
        assert_eq!(
            sys.calls(),
            [
                "unshare user",
                r#"write /proc/self/setgroups "deny""#,
                r#"write /proc/self/uid_map "0 1000 1\n""#,
                r#"write /proc/self/gid_map "0 1000 1\n""#,
                "setresgid 0",
                "setresuid 0",
            ],
            "setgroups is denied, so the groups are not cleared"
        );
    }

    #[test]
    fn subordinate_ranges_are_mapped_by_the_helpers() {
        let sys = alice()
            .tool("newuidmap")
            .tool("newgidmap")
            .file("/etc/subuid", "alice:100000:65536\n")
            .file("/etc/subgid", "1000:200000:1000\n");
        assert_eq!(enter_user_namespace(&sys).unwrap(), None);
        assert_eq!(
            sys.calls(),
            [
                // The parent unshares while the helper waits in the old namespace.
                "unshare user",
                "newuidmap 0 1000 1 1 100000 65536",
                "newgidmap 0 1000 1 1 200000 1000",
                "setresgid 0",
                "setresuid 0",
                "setgroups []",
            ]
        );

        // Ranges without the helpers: root alone, and the warning says what
        // to install.
        let sys = alice()
            .file("/etc/subuid", "alice:100000:65536\n")
            .file("/etc/subgid", "alice:100000:65536\n");
        let warning = enter_user_namespace(&sys).unwrap().unwrap();
        assert!(warning.contains("newuidmap/newgidmap were not found"), "{warning}");
        assert_eq!(sys.calls()[0], "unshare user");
    }

    #[test]
    fn refusals_are_explained() {
        // The kernel refuses the namespace: the sysctl that says why.
        let sys = alice()
            .file("/proc/sys/user/max_user_namespaces", "0\n")
            .fail("unshare", Errno::NOSPC);
        match enter_user_namespace(&sys) {
            Err(SandboxError::UserNamespaceBlocked { cause, .. }) => {
                assert!(cause.contains("user.max_user_namespaces is 0"), "{cause}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(sys.calls(), ["unshare user"]);

        // The namespace exists but its map may not be written.
        let sys = alice().fail("write /proc/self/uid_map", Errno::PERM);
        assert!(matches!(
            enter_user_namespace(&sys),
            Err(SandboxError::UserNamespaceBlocked { .. })
        ));
        assert!(!sys.calls().iter().any(|c| c.starts_with("setres")));

        // AppArmor's restriction: unshare works, the capabilities are gone.
        let sys = alice().file("/proc/self/status", "Threads:\t1\nCapEff:\t0000000000000000\n");
        assert!(matches!(
            enter_user_namespace(&sys),
            Err(SandboxError::UserNamespaceBlocked { .. })
        ));

        // A thread already running: nothing is tried.
        let sys = alice().file("/proc/self/status", "Threads:\t3\n");
        let err = enter_user_namespace(&sys).unwrap_err();
        assert!(err.to_string().contains("already runs 3 threads"), "{err}");
        assert!(sys.calls().is_empty());
    }
}
