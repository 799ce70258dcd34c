//! The terminal of an interactive debug shell. The shell gets a pseudo-terminal of its own as
//! its controlling terminal (job control, `tty`, line editing), and rbuild's terminal goes into
//! raw mode while rbuild relays keys to it and its output back. So Ctrl-C, Ctrl-Z and Ctrl-\
//! become signals of the pseudo-terminal's line discipline, sent to the shell's foreground
//! job, never to rbuild; the window size is copied to it at the start and on every SIGWINCH.
//! Without a terminal on stdin the shell simply gets rbuild's stdin, stdout and stderr, so a
//! session can be scripted.

use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rbuild_sandbox::Stdio;
use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize, OptionalActions, Termios};

/// Runs `session` with the standard streams a debug shell gets: a relayed pseudo-terminal
/// when stdin is a terminal, else rbuild's own.
pub fn with_shell_stdio<T>(session: impl FnOnce(Stdio) -> T) -> io::Result<T> {
    if !io::stdin().is_terminal() {
        let own = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().map(Arc::new);
        let stdio = Stdio::Attached {
            stdin: own(io::stdin().as_fd())?,
            stdout: own(io::stdout().as_fd())?,
            stderr: own(io::stderr().as_fd())?,
            terminal: false,
        };
        return Ok(session(stdio));
    }
    let (master, slave) = open_pty()?;
    let master = Arc::new(master);
    copy_window_size(&master);
    let raw = RawMode::enter()?;
    let stop = Arc::new(AtomicBool::new(false));
    let resizer = forward_resizes(master.clone(), stop.clone())?;
    let keys = relay_keys(master.clone(), stop.clone());
    let output = relay_output(master.clone());
    let slave = Arc::new(slave);
    let stdio = Stdio::Attached { stdin: slave.clone(), stdout: slave.clone(), stderr: slave.clone(), terminal: true };
    let result = session(stdio);
    // The shell is gone: once rbuild's last copy of the slave closes, reading the master
    // ends (EIO) after what is left of the output.
    drop(slave);
    let _ = output.join();
    stop.store(true, Ordering::SeqCst);
    let _ = keys.join();
    resizer.close();
    drop(raw);
    Ok(result)
}

/// A new pseudo-terminal: its master, and its slave opened without becoming rbuild's
/// controlling terminal.
fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    Ok((master, slave))
}

/// Gives the pseudo-terminal the size of rbuild's terminal.
fn copy_window_size(master: &OwnedFd) {
    if let Ok(size) = tcgetwinsize(io::stdin()) {
        let _ = tcsetwinsize(master, size);
    }
}

/// rbuild's terminal in raw mode until dropped (also on a panic).
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> io::Result<RawMode> {
        let saved = tcgetattr(io::stdin())?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(io::stdin(), OptionalActions::Now, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// Copies the window size on every SIGWINCH until the returned handle is closed.
fn forward_resizes(master: Arc<OwnedFd>, stop: Arc<AtomicBool>) -> io::Result<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH])?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            copy_window_size(&master);
        }
    });
    Ok(handle)
}

/// Relays rbuild's stdin to the master until `stop`; it polls, so that it notices `stop`
/// without a key being pressed.
fn relay_keys(master: Arc<OwnedFd>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let stdin = io::stdin();
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::SeqCst) {
            let mut fds = [rustix::event::PollFd::new(&stdin, rustix::event::PollFlags::IN)];
            let timeout = rustix::event::Timespec::try_from(Duration::from_millis(100)).expect("a small duration");
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(_) => break,
            }
            let n = match rustix::io::read(&stdin, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if rustix::io::write(&*master, &buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// Relays the master's output to rbuild's stdout until the slave is closed everywhere.
fn relay_output(master: Arc<OwnedFd>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(fd) = master.try_clone() else { return };
        let mut file = std::fs::File::from(fd);
        let mut out = io::stdout();
        let mut buf = [0u8; 4096];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EIO: no process has the slave open any more.
                Err(_) => break,
            }
        }
    })
}
