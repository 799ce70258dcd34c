//! `RUN --mount=type=ssh`: a socket of the RUN's own (its mode and owner as the mount asks) that
//! forwards each connection to an ssh agent: the caller's (`--ssh default`, a socket) or one
//! rbuild starts holding the given key files (`--ssh id=KEY`), as BuildKit serves keys.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A forwarding socket; it stops forwarding (and an agent rbuild started stops) when dropped.
pub struct AgentSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    agent: Option<Child>,
}

impl AgentSocket {
    /// The socket to mount into the RUN.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AgentSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread so it sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(agent) = &mut self.agent {
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }
}

/// Starts forwarding `dir/agent.sock` to the agent `sources` name: one socket, or key files
/// for an agent of rbuild's own.
pub fn forward(sources: &[PathBuf], dir: &Path, mode: u32, uid: u32, gid: u32) -> io::Result<AgentSocket> {
    let is_socket = |p: &Path| {
        std::fs::metadata(p).map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type())).unwrap_or(false)
    };
    let (upstream, agent) = match sources {
        [socket] if is_socket(socket) => (socket.clone(), None),
        keys => {
            let (socket, agent) = agent_with_keys(keys, dir)?;
            (socket, Some(agent))
        }
    };
    let path = dir.join("agent.sock");
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    rustix::fs::chown(&path, Some(rustix::fs::Uid::from_raw(uid)), Some(rustix::fs::Gid::from_raw(gid)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::spawn(move || {
        for client in listener.incoming() {
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            let Ok(client) = client else { continue };
            let Ok(agent) = UnixStream::connect(&upstream) else { continue };
            splice(client, agent);
        }
    });
    Ok(AgentSocket { path, stop, thread: Some(thread), agent })
}

/// Copies bytes both ways between `a` and `b` until either side closes.
fn splice(a: UnixStream, b: UnixStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else { return };
    let pump = |mut from: UnixStream, mut to: UnixStream| {
        std::thread::spawn(move || {
            let _ = io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        })
    };
    pump(a, b2);
    pump(b, a2);
}

/// Runs `ssh-agent` on a socket in `dir` and adds `keys` to it.
fn agent_with_keys(keys: &[PathBuf], dir: &Path) -> io::Result<(PathBuf, Child)> {
    for key in keys {
        if !key.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is neither an ssh agent's socket nor a key file", key.display()),
            ));
        }
    }
    let socket = dir.join("keys-agent.sock");
    let missing = |e: io::Error| match e.kind() {
        io::ErrorKind::NotFound => io::Error::new(e.kind(), "ssh keys are served by ssh-agent and ssh-add, which are not installed (Debian: openssh-client)"),
        _ => e,
    };
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(missing)?;
    let started = Instant::now();
    while !socket.exists() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = agent.kill();
            return Err(io::Error::new(io::ErrorKind::TimedOut, "ssh-agent did not start"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let added = Command::new("ssh-add").args(keys).env("SSH_AUTH_SOCK", &socket).stdin(Stdio::null()).output();
    match added {
        Ok(out) if out.status.success() => Ok((socket, agent)),
        other => {
            let _ = agent.kill();
            let _ = agent.wait();
            let reason = match other {
                Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                Err(e) => missing(e).to_string(),
            };
            Err(io::Error::other(format!("adding ssh keys to an agent: {reason}")))
        }
    }
}
