//! The last steps of the sandbox's command process, once it sits in the
//! root filesystem: resolve the `USER`, create the working directory, drop
//! capabilities, become the user, put the command's descriptors in place and
//! exec. Shared by both isolations.

use std::ffi::{CString, OsStr};
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode};
use rustix::io::Errno;
use rustix::thread::{CapabilitySet, CapabilitySets};

use super::prepare::Prepared;
use super::process;
use super::protocol::{ChildError, FailureKind, Reporter};
use super::syscall::{Linux, Syscall};
use super::users::{resolve_user, ExecUser};

/// The capabilities a RUN command keeps, as in BuildKit and Docker; notably
/// not `CAP_SYS_ADMIN`, so it cannot undo the sandbox's mounts.
const DEFAULT_CAPABILITIES: [u32; 14] = [
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    13, // CAP_NET_RAW
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

/// `/etc/passwd` and `/etc/group` larger than this are refused (BuildKit's
/// limit), since the image controls them.
const MAX_USER_FILE: u64 = 10 << 20;

/// Becomes the step's user in the current root and execs the command. Only
/// returns (by reporting and exiting) on failure.
pub(crate) fn become_user_and_exec(p: &Prepared, output: RawFd, reporter: Reporter) -> ! {
    match prepare_and_exec(p, output, reporter) {
        Ok(never) => match never {},
        Err((reporter, error)) => reporter.fail(error),
    }
}

fn prepare_and_exec(
    p: &Prepared,
    output: RawFd,
    reporter: Reporter,
) -> Result<std::convert::Infallible, (Reporter, ChildError)> {
    let fail = |e| (reporter, e);
    let passwd = read_user_file("/etc/passwd").map_err(fail)?;
    let group = read_user_file("/etc/group").map_err(fail)?;
    let user = resolve_user(&p.user, passwd.as_deref(), group.as_deref())
        .map_err(|m| fail(ChildError::of(FailureKind::User, "resolve", m)))?;

    let mut env = p.env.clone();
    if !p.has_home {
        let home =
            CString::new(format!("HOME={}", user.home)).unwrap_or_else(|_| c"HOME=/".to_owned());
        env.push(home);
    }

    ensure_workdir(&p.workdir, &user).map_err(fail)?;
    rustix::process::chdir(&p.workdir).map_err(|e| {
        fail(ChildError::setup(
            format!("enter working directory {}", p.workdir.display()),
            e,
        ))
    })?;

    drop_capabilities(p.cap_last).map_err(fail)?;
    become_user(&Linux, &user).map_err(fail)?;
    // Again as the user: the directory may be one only root could enter, in
    // which case the command starts in it anyway, as with runc.
    match rustix::process::chdir(&p.workdir) {
        Ok(()) | Err(Errno::ACCESS) | Err(Errno::PERM) => {}
        Err(e) => {
            return Err(fail(ChildError::setup(
                "enter working directory as the user",
                e,
            )))
        }
    }

    let extra: Vec<(RawFd, RawFd)> = p.extra.iter().map(|(t, fd)| (*t, fd.as_raw_fd())).collect();
    let (stdout, stderr) = match &p.attached {
        Some((out, err)) => (out.as_raw_fd(), err.as_raw_fd()),
        None => (output, output),
    };
    let reporter = arrange_fds([p.stdin.as_raw_fd(), stdout, stderr], &extra, reporter)?;
    if p.terminal {
        // The caller made this process a session leader: the terminal on fd 0 becomes its
        // controlling terminal, and its process group the terminal's foreground group.
        // SAFETY: an ioctl on this process's own descriptor.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
            let error = ChildError::setup("take the terminal", std::io::Error::last_os_error());
            return Err((reporter, error));
        }
    }
    process::reset_signals();
    Err((reporter, exec_search(p, &env)))
}

/// The contents of a user database file, `None` when the image has none.
fn read_user_file(path: &str) -> Result<Option<String>, ChildError> {
    // Checked before opening: opening a FIFO the image put there would block.
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        _ => return Ok(None),
    }
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(_) => return Ok(None),
    };
    let mut limited = file.take(MAX_USER_FILE + 1);
    let mut bytes = Vec::new();
    limited
        .read_to_end(&mut bytes)
        .map_err(|e| ChildError::of(FailureKind::User, format!("read {path}"), e))?;
    if bytes.len() as u64 > MAX_USER_FILE {
        return Err(ChildError::of(
            FailureKind::User,
            format!("read {path}"),
            format!("larger than {MAX_USER_FILE} bytes"),
        ));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Creates the working directory when it does not exist, as BuildKit does:
/// every missing component gets mode 0755 and the user's uid and gid.
fn ensure_workdir(workdir: &Path, user: &ExecUser) -> Result<(), ChildError> {
    let step = format!("working directory {}", workdir.display());
    match rustix::fs::stat(workdir) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => return Ok(()),
        Ok(_) => return Err(ChildError::setup(step, "exists but is not a directory")),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(ChildError::setup(step, e)),
    }
    let mut missing = Vec::new();
    let mut dir = Some(workdir);
    while let Some(d) = dir {
        if rustix::fs::stat(d).is_ok() {
            break;
        }
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    for d in missing.iter().rev() {
        create_owned_dir(d, user)
            .map_err(|e| ChildError::setup(&step, format!("create {}: {e}", d.display())))?;
    }
    Ok(())
}

fn create_owned_dir(dir: &PathBuf, user: &ExecUser) -> Result<(), Errno> {
    match rustix::fs::mkdir(dir, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e),
    }
    // The umask may have taken bits off.
    rustix::fs::chmod(dir, Mode::from_raw_mode(0o755))?;
    rustix::fs::chown(
        dir,
        Some(rustix::fs::Uid::from_raw(user.uid)),
        Some(rustix::fs::Gid::from_raw(user.gid)),
    )
}

/// Limits the bounding set to [`DEFAULT_CAPABILITIES`], which is what root's
/// capabilities become at `exec`, and empties the inheritable and ambient
/// sets so nothing else reaches the command.
fn drop_capabilities(cap_last: u32) -> Result<(), ChildError> {
    for cap in 0..=cap_last {
        if DEFAULT_CAPABILITIES.contains(&cap) {
            continue;
        }
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            let err = std::io::Error::last_os_error();
            // A capability this kernel does not know needs no dropping.
            if err.raw_os_error() != Some(libc::EINVAL) {
                return Err(ChildError::setup("drop capabilities", err));
            }
        }
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let current = rustix::thread::capabilities(None)
        .map_err(|e| ChildError::setup("read capabilities", e))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: current.effective,
            permitted: current.permitted,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| ChildError::setup("clear inheritable capabilities", e))
}

fn become_user<S: Syscall>(sys: &S, user: &ExecUser) -> Result<(), ChildError> {
    let user_error = |step: &str, msg: String| ChildError::of(FailureKind::User, step, msg);
    if let Err(e) = sys.set_groups(&user.additional_gids) {
        // rbuild's user namespace maps only root, so setgroups is denied; the
        // process then keeps no other groups, which is only right for root.
        // Under chroot there is no /proc: what rbuild recorded when it denied it.
        let denied = sys
            .read_file("/proc/self/setgroups")
            .map(|s| s.trim() == "deny")
            .unwrap_or_else(|_| super::userns::setgroups_denied());
        if !(e == Errno::PERM && denied && user.additional_gids.iter().all(|&g| g == 0)) {
            return Err(user_error(
                "set supplementary groups",
                format!("{e}{}", unmapped_hint(denied)),
            ));
        }
    }
    sys.set_res_gid(user.gid).map_err(|e| {
        user_error(
            "set gid",
            format!("gid {}: {e}{}", user.gid, unmapped_hint(e == Errno::INVAL)),
        )
    })?;
    sys.set_res_uid(user.uid).map_err(|e| {
        user_error(
            "set uid",
            format!("uid {}: {e}{}", user.uid, unmapped_hint(e == Errno::INVAL)),
        )
    })
}

fn unmapped_hint(applies: bool) -> &'static str {
    if applies {
        " (rbuild's user namespace maps only root: add a range for your user to /etc/subuid and /etc/subgid)"
    } else {
        ""
    }
}

/// Moves the command's descriptors into place: `stdio` on 0, 1 and 2 (for a
/// build step, stdin and the output pipe twice), extra files on their numbers. Everything else becomes
/// close-on-exec, including the report pipe, which moves above them all and
/// is returned for reporting an exec failure.
pub(crate) fn arrange_fds(
    stdio: [RawFd; 3],
    extra: &[(RawFd, RawFd)],
    reporter: Reporter,
) -> Result<Reporter, (Reporter, ChildError)> {
    let floor = extra.iter().map(|(t, _)| *t).max().unwrap_or(2).max(2) + 1;
    let lift = |fd: RawFd| -> Result<RawFd, ChildError> {
        // SAFETY: duplicates a descriptor of this process.
        let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, floor) };
        if new < 0 {
            return Err(ChildError::setup(
                "arrange file descriptors",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(new)
    };
    let reporter = Reporter {
        fd: lift(reporter.fd).map_err(|e| (reporter, e))?,
    };
    let fail = |e| (reporter, e);
    let mut moves = Vec::with_capacity(3 + extra.len());
    for (target, fd) in stdio.into_iter().enumerate() {
        moves.push((target as RawFd, lift(fd).map_err(fail)?));
    }
    for (target, fd) in extra {
        moves.push((*target, lift(*fd).map_err(fail)?));
    }
    for (target, fd) in moves {
        // SAFETY: dup2 onto a number this process is free to reuse.
        if unsafe { libc::dup2(fd, target) } < 0 {
            return Err(fail(ChildError::setup(
                "arrange file descriptors",
                std::io::Error::last_os_error(),
            )));
        }
    }
    let keep: Vec<RawFd> = extra.iter().map(|(t, _)| *t).collect();
    process::cloexec_fds_except(&keep);
    Ok(reporter)
}

/// Execs the command, looking its name up in the command's `PATH` (not
/// rbuild's) when it has no `/`. Returns only on failure.
fn exec_search(p: &Prepared, env: &[CString]) -> ChildError {
    let name = p.argv[0].as_bytes();
    let mut argv: Vec<*const libc::c_char> = p.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());

    let mut denied = false;
    for candidate in exec_candidates(name, p.path_var.as_deref()) {
        let Ok(path) = CString::new(candidate) else {
            continue;
        };
        // SAFETY: argv and envp are NULL-terminated arrays of C strings that
        // outlive the call.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOENT)
            | Some(libc::ENOTDIR)
            | Some(libc::ELOOP)
            | Some(libc::ENAMETOOLONG) => {}
            Some(libc::EACCES) => denied = true,
            _ => {
                return ChildError::of(
                    FailureKind::Exec,
                    "exec",
                    format!("{}: {err}", String::from_utf8_lossy(path.as_bytes())),
                )
            }
        }
    }
    let message = if denied {
        "permission denied".to_string()
    } else if name.contains(&b'/') {
        "no such file or directory".to_string()
    } else {
        match &p.path_var {
            Some(path) => format!(
                "executable file not found in $PATH ({})",
                String::from_utf8_lossy(path)
            ),
            None => "executable file not found: the command's environment has no PATH".to_string(),
        }
    };
    ChildError::of(FailureKind::Exec, "exec", message)
}

/// The paths tried for the command `name`, in order: itself when it has a
/// `/`, else each directory of `path` (an empty entry is the current
/// directory, as for `execvp`). No `PATH` means no directory to search, not
/// the current one.
fn exec_candidates(name: &[u8], path: Option<&[u8]>) -> Vec<Vec<u8>> {
    if name.contains(&b'/') {
        return vec![name.to_vec()];
    }
    path.into_iter()
        .flat_map(|path| path.split(|&b| b == b':'))
        .map(|dir| {
            let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
            Path::new(OsStr::from_bytes(dir))
                .join(OsStr::from_bytes(name))
                .into_os_string()
                .into_vec()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use rustix::io::Errno;

    use super::{become_user, exec_candidates};
    use crate::protocol::FailureKind;
    use crate::syscall::fake::Recorder;
    use crate::users::ExecUser;

    fn user(uid: u32, gid: u32, groups: &[u32]) -> ExecUser {
        ExecUser {
            uid,
            gid,
            additional_gids: groups.to_vec(),
            home: "/".into(),
        }
    }

    #[test]
    fn the_groups_then_the_gid_then_the_uid() {
        let sys = Recorder::new();
        become_user(&sys, &user(1000, 1000, &[1000, 2000])).unwrap();
        assert_eq!(
            sys.calls(),
            ["setgroups [1000, 2000]", "setresgid 1000", "setresuid 1000"]
        );
    }

    #[test]
    fn denied_setgroups_is_fine_only_for_root_groups() {
        // rbuild's namespace maps only root: setgroups is denied, and root,
        // who has no other group, goes on.
        let root_only = || {
            Recorder::new()
                .file("/proc/self/setgroups", "deny\n")
                .fail("setgroups", Errno::PERM)
        };
        let sys = root_only();
        become_user(&sys, &user(0, 0, &[0])).unwrap();
        assert_eq!(sys.calls(), ["setgroups [0]", "setresgid 0", "setresuid 0"]);

        let sys = root_only();
        let err = become_user(&sys, &user(0, 0, &[0, 10])).unwrap_err();
        assert_eq!((err.kind, err.step.as_str()), (FailureKind::User, "set supplementary groups"));
        assert!(err.message.contains("maps only root"), "{err:?}");
        assert_eq!(sys.calls(), ["setgroups [0, 10]"]);

        // Allowed setgroups that fails anyway: no hint about the mapping.
        let sys = Recorder::new()
            .file("/proc/self/setgroups", "allow\n")
            .fail("setgroups", Errno::PERM);
        let err = become_user(&sys, &user(0, 0, &[0])).unwrap_err();
        assert!(!err.message.contains("maps only root"), "{err:?}");
    }

    #[test]
    fn an_unmapped_id_says_so() {
        let sys = Recorder::new().fail("setresuid", Errno::INVAL);
        let err = become_user(&sys, &user(1000, 0, &[0])).unwrap_err();
        assert_eq!((err.kind, err.step.as_str()), (FailureKind::User, "set uid"));
        assert!(err.message.starts_with("uid 1000: "), "{err:?}");
        assert!(err.message.contains("maps only root"), "{err:?}");

        let sys = Recorder::new().fail("setresgid", Errno::PERM);
        let err = become_user(&sys, &user(0, 5, &[5])).unwrap_err();
        assert_eq!(err.step, "set gid");
        assert!(!err.message.contains("maps only root"), "{err:?}");
        assert_eq!(sys.calls().last().unwrap(), "setresgid 5", "the uid stays");
    }

    fn tried(name: &str, path: Option<&str>) -> Vec<String> {
        exec_candidates(name.as_bytes(), path.map(str::as_bytes))
            .into_iter()
            .map(|c| String::from_utf8(c).unwrap())
            .collect()
    }

    #[test]
    fn a_name_is_looked_up_only_in_the_given_path() {
        assert_eq!(tried("sh", Some("/usr/bin:/bin")), ["/usr/bin/sh", "/bin/sh"]);
        assert_eq!(tried("sh", Some("/bin::")), ["/bin/sh", "./sh", "./sh"]);
        assert!(tried("sh", None).is_empty(), "no PATH, no search");
        assert_eq!(tried("./run.sh", None), ["./run.sh"]);
        assert_eq!(tried("/bin/sh", Some("/usr/bin")), ["/bin/sh"]);
    }
}
