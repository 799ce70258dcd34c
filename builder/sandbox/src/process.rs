//! Process plumbing shared by both isolations: pipes, `fork`, the hygiene a
//! forked child needs (close inherited descriptors, reset signals, die with
//! its parent), and the supervisor that streams a sandbox's output and makes
//! sure its processes are gone however `run` ends.
//!
//! rbuild is multi-threaded, so a forked child holds a copy of every lock as
//! it was at the fork. The children therefore avoid Rust's stdio and
//! environment (which lock), report through raw `write(2)`, and end with
//! `_exit`. Allocation is safe: the C library's `fork` resets its allocator's
//! locks in the child.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::SandboxError;
use super::{ExitKind, OUTPUT_TAIL_LINES};

/// The exit status of a child that reported a setup failure.
pub(crate) const SETUP_FAILED_STATUS: i32 = 125;

/// The longest line kept whole in the output tail; longer ones are cut.
const MAX_TAIL_LINE: usize = 4096;

/// How long a cancelled sandbox may take to close its output.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Ends a forked child without running atexit handlers or destructors, which
/// belong to rbuild.
pub(crate) fn exit_child(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

pub(crate) struct Pipe {
    pub read: OwnedFd,
    pub write: OwnedFd,
}

/// A close-on-exec pipe, so that no other child of rbuild inherits it.
pub(crate) fn pipe() -> Result<Pipe, SandboxError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(SandboxError::sys(
            "create a pipe",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    unsafe {
        Ok(Pipe {
            read: OwnedFd::from_raw_fd(fds[0]),
            write: OwnedFd::from_raw_fd(fds[1]),
        })
    }
}

pub(crate) enum Forked {
    Child,
    Parent(libc::pid_t),
}

/// `fork(2)` through the C library, whose fork handlers keep the allocator
/// usable in the child.
pub(crate) fn fork() -> io::Result<Forked> {
    // SAFETY: the child only runs code written for a post-fork child (see the
    // module comment).
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Closes every descriptor from 3 up except those in `keep`: a child that
/// does not exec would otherwise hold other sandboxes' pipes open and delay
/// their end-of-file.
pub(crate) fn close_fds_except(keep: &[RawFd]) {
    close_ranges_except(keep, 0);
}

/// Marks every descriptor from 3 up, except those in `keep`, close-on-exec.
pub(crate) fn cloexec_fds_except(keep: &[RawFd]) {
    close_ranges_except(keep, libc::CLOSE_RANGE_CLOEXEC as i32);
}

/// Applies `close_range(2)` with `flags` to every descriptor from 3 up that
/// is not in `keep`.
fn close_ranges_except(keep: &[RawFd], flags: i32) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|&&fd| fd >= 3)
        .map(|&fd| fd as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = 3u32;
    for &fd in &keep {
        if fd > from {
            close_range(from, fd - 1, flags);
        }
        from = fd + 1;
    }
    close_range(from, u32::MAX, flags);
}

fn close_range(first: u32, last: u32, flags: i32) {
    // SAFETY: close_range only affects this process's descriptor table.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if r == 0 {
        return;
    }
    // Kernels before 5.9 (or 5.11 for CLOSE_RANGE_CLOEXEC): walk the table.
    // SAFETY: getrlimit fills the struct.
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let end = (limit.rlim_cur.min(1 << 20) as u32).min(last.saturating_add(1));
    for fd in first..end {
        // SAFETY: closing or flagging descriptors of this process.
        unsafe {
            if flags == 0 {
                libc::close(fd as RawFd);
            } else {
                libc::fcntl(fd as RawFd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
}

/// Puts every signal back to its default action and unblocks them all, so
/// that the command does not inherit rbuild's handlers, ignored `SIGPIPE` or
/// mask (ignored signals and the mask survive `exec`).
pub(crate) fn reset_signals() {
    // SAFETY: plain signal-state calls on this process with valid arguments.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for signal in 1..libc::SIGRTMAX() {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
    }
}

/// Makes the kernel SIGKILL this child when its parent dies, and exits at once
/// if the parent already died before that was in place.
///
/// `expected_parent` works when the parent is in the same pid namespace;
/// `lifeline` is the read end of a pipe whose only writer is the parent, for
/// a child in a new pid namespace, whose `getppid()` is always 0.
pub(crate) fn die_with_parent(expected_parent: Option<libc::pid_t>, lifeline: Option<RawFd>) {
    // SAFETY: prctl with an integer argument.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if let Some(parent) = expected_parent {
        // SAFETY: getppid cannot fail.
        if unsafe { libc::getppid() } != parent {
            exit_child(SETUP_FAILED_STATUS);
        }
    }
    if let Some(fd) = lifeline {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one valid pollfd without waiting.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n > 0 && pfd.revents & (libc::POLLHUP | libc::POLLIN) != 0 {
            exit_child(SETUP_FAILED_STATUS);
        }
    }
}

/// Waits for `pid` and returns its raw status.
pub(crate) fn wait_for(pid: libc::pid_t) -> io::Result<i32> {
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

pub(crate) fn decode_status(status: i32) -> ExitKind {
    if libc::WIFSIGNALED(status) {
        ExitKind::Signal(libc::WTERMSIG(status))
    } else {
        ExitKind::Code(libc::WEXITSTATUS(status))
    }
}

/// The last lines of the command's output.
#[derive(Default)]
pub(crate) struct OutputTail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
    partial_cut: bool,
}

impl OutputTail {
    pub fn push(&mut self, mut bytes: &[u8]) {
        while let Some(i) = bytes.iter().position(|&b| b == b'\n') {
            self.extend_partial(&bytes[..i]);
            self.finish_line();
            bytes = &bytes[i + 1..];
        }
        self.extend_partial(bytes);
    }

    fn extend_partial(&mut self, bytes: &[u8]) {
        let room = MAX_TAIL_LINE.saturating_sub(self.partial.len());
        if bytes.len() > room {
            self.partial_cut = true;
        }
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish_line(&mut self) {
        let mut line = String::from_utf8_lossy(&self.partial).into_owned();
        if line.ends_with('\r') {
            line.pop();
        }
        if self.partial_cut {
            line.push('…');
        }
        self.partial.clear();
        self.partial_cut = false;
        if self.lines.len() == OUTPUT_TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    pub fn finish(mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            self.finish_line();
        }
        self.lines.into()
    }
}

/// Watches the direct child of a sandbox: streams the output pipe, collects
/// the report pipe, and reaps the child. If dropped before [`finish`]
/// completed (an error or a panic in `on_output`), it kills the child, whose
/// death takes the rest of the sandbox with it, and waits for the pipes to
/// close so that the sandbox's mounts are gone before the caller cleans up.
///
/// [`finish`]: Supervisor::finish
pub(crate) struct Supervisor {
    pid: libc::pid_t,
    output: Option<OwnedFd>,
    report: Option<OwnedFd>,
    reaped: bool,
}

/// What the supervisor collected.
pub(crate) struct Collected {
    pub report: Vec<u8>,
    /// The raw status of the direct child.
    pub child_status: i32,
    pub tail: Vec<String>,
}

/// The direct children of the sandboxes running now (steps may run in
/// parallel), so that a failing build or rbuild's signal handler can end them.
static RUNNING_SANDBOXES: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<libc::pid_t>> {
    RUNNING_SANDBOXES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Kills every running sandbox and waits (at most a few seconds) until the
/// threads that run them have reaped them: by then their processes are dead
/// and their mounts gone. For cancelling a build from another thread.
pub fn kill_running_sandboxes() {
    let pids = running().clone();
    for pid in &pids {
        // SAFETY: a registered pid is an unreaped child of this process.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while running().iter().any(|p| pids.contains(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn register(pid: libc::pid_t) {
    running().push(pid);
}

fn unregister(pid: libc::pid_t) {
    running().retain(|p| *p != pid);
}

impl Supervisor {
    pub fn new(pid: libc::pid_t, output: OwnedFd, report: OwnedFd) -> Self {
        register(pid);
        Supervisor {
            pid,
            output: Some(output),
            report: Some(report),
            reaped: false,
        }
    }

    pub fn finish(mut self, on_output: &mut dyn FnMut(&[u8])) -> Result<Collected, SandboxError> {
        let mut tail = OutputTail::default();
        let mut report = Vec::new();
        pump(
            &mut self.output,
            &mut self.report,
            None,
            &mut |is_output, bytes| {
                if is_output {
                    tail.push(bytes);
                    on_output(bytes);
                } else {
                    report.extend_from_slice(bytes);
                }
            },
        )?;
        let child_status =
            wait_for(self.pid).map_err(|e| SandboxError::sys("wait for the sandbox", e));
        unregister(self.pid);
        let child_status = child_status?;
        self.reaped = true;
        Ok(Collected {
            report,
            child_status,
            tail: tail.finish(),
        })
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: the pid is our unreaped child, so it cannot have been reused.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let _ = pump(
            &mut self.output,
            &mut self.report,
            Some(deadline),
            &mut |_, _| {},
        );
        let _ = wait_for(self.pid);
        unregister(self.pid);
    }
}

/// Reads both pipes until both reach end-of-file (or `deadline` passes),
/// handing each chunk to `sink` with `true` for output.
fn pump(
    output: &mut Option<OwnedFd>,
    report: &mut Option<OwnedFd>,
    deadline: Option<Instant>,
    sink: &mut dyn FnMut(bool, &[u8]),
) -> Result<(), SandboxError> {
    let mut buf = vec![0u8; 64 * 1024];
    while output.is_some() || report.is_some() {
        let mut fds = Vec::with_capacity(2);
        for fd in [output.as_ref(), report.as_ref()].into_iter().flatten() {
            fds.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let timeout = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(());
                }
                left.as_millis().min(i32::MAX as u128) as i32
            }
        };
        // SAFETY: polls a live array of pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(SandboxError::sys("wait for the sandbox's output", err));
        }
        for pfd in fds.iter().filter(|p| p.revents != 0) {
            let is_output = output.as_ref().map(|f| f.as_raw_fd()) == Some(pfd.fd);
            // SAFETY: reads into a live buffer from a descriptor we own.
            let r = unsafe { libc::read(pfd.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EINTR)
                    || err.raw_os_error() == Some(libc::EAGAIN)
                {
                    continue;
                }
                return Err(SandboxError::sys("read the sandbox's output", err));
            }
            if r == 0 {
                if is_output {
                    *output = None;
                } else {
                    *report = None;
                }
                continue;
            }
            sink(is_output, &buf[..r as usize]);
        }
    }
    Ok(())
}
