//! Everything about a RUN that can be checked and computed before forking:
//! the spec is validated, strings become C strings, stdin and extra files
//! become descriptors. The forked children then only make system calls.

use std::ffi::CString;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use rustix::fs::MemfdFlags;

use super::error::SandboxError;
use super::lowerstack::LowerStack;
use super::rootpath;
use super::runmount::{self, PlannedMount};
use super::userns::in_user_namespace;
use super::{NetworkMode, RunSpec, Stdio, DEFAULT_HOSTNAME};

/// The highest descriptor number an extra file may ask for.
const MAX_EXTRA_FD: u32 = 255;

pub(crate) struct Prepared {
    pub argv: Vec<CString>,
    /// `KEY=VALUE` entries; `HOME` is appended by the child once the user is
    /// known.
    pub env: Vec<CString>,
    pub has_home: bool,
    /// The `PATH` of `env`, which a command name without `/` is looked up
    /// in; `None` when `env` has none (the caller supplies the default, as
    /// it knows the image's config).
    pub path_var: Option<Vec<u8>>,
    pub user: String,
    /// Absolute and without `.` or `..`.
    pub workdir: PathBuf,
    pub hostname: Vec<u8>,
    pub network: NetworkMode,
    /// Whether rbuild runs in a user namespace (rootless).
    pub in_userns: bool,
    /// What the command reads on fd 0: a memfd with `stdin`, `/dev/null`, or the attached
    /// stdin.
    pub stdin: OwnedFd,
    /// The attached stdout and stderr ([`super::Stdio::Attached`]); `None`: the output pipe.
    pub attached: Option<(OwnedFd, OwnedFd)>,
    /// Fd 0 is a terminal the command takes as its controlling terminal.
    pub terminal: bool,
    /// `(target fd, memfd)` for each extra file.
    pub extra: Vec<(RawFd, OwnedFd)>,
    /// The highest capability number the kernel knows.
    pub cap_last: u32,
    pub upper: PathBuf,
    pub scratch: PathBuf,
    /// The layers overlayfs mounts, bottom → top, each once (see
    /// [`LowerStack`]).
    pub lower: Vec<PathBuf>,
    /// Layers below `lower` that are copied into one directory first, for
    /// stacks deeper than overlayfs takes; usually empty.
    pub flatten: Vec<PathBuf>,
    /// The run mounts, in order.
    pub mounts: Vec<PlannedMount>,
}

impl Prepared {
    pub fn new(spec: &RunSpec) -> Result<Self, SandboxError> {
        if spec.argv.is_empty() {
            return Err(SandboxError::InvalidSpec("the command is empty".into()));
        }
        let argv = spec
            .argv
            .iter()
            .map(|a| c_string(a, "argument"))
            .collect::<Result<Vec<_>, _>>()?;

        let mut env = Vec::with_capacity(spec.env.len() + 1);
        let mut path_var = None;
        let mut has_home = false;
        for (key, value) in &spec.env {
            if key.is_empty() || key.contains('=') {
                return Err(SandboxError::InvalidSpec(format!(
                    "invalid environment variable name {key:?}"
                )));
            }
            if key == "PATH" {
                path_var = Some(value.as_bytes().to_vec());
            }
            has_home |= key == "HOME";
            env.push(c_string(&format!("{key}={value}"), "environment variable")?);
        }

        let workdir = normalize_workdir(&spec.workdir)?;
        let hostname = if spec.hostname.is_empty() {
            DEFAULT_HOSTNAME
        } else {
            spec.hostname.as_str()
        };
        if hostname.len() > 64 || hostname.contains('\0') {
            return Err(SandboxError::InvalidSpec(format!(
                "invalid hostname {hostname:?}"
            )));
        }

        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| SandboxError::sys("duplicate the command's standard streams", e));
        let (stdin, attached, terminal) = match (&spec.stdio, &spec.stdin) {
            (Stdio::Attached { stdin, stdout, stderr, terminal }, _) => {
                (dup(stdin)?, Some((dup(stdout)?, dup(stderr)?)), *terminal)
            }
            (Stdio::Captured, Some(bytes)) => (memfd_with("rbuild-stdin", bytes)?, None, false),
            (Stdio::Captured, None) => (
                File::open("/dev/null").map_err(|e| SandboxError::io("open", "/dev/null", e))?.into(),
                None,
                false,
            ),
        };
        let mut extra = Vec::with_capacity(spec.extra_files.len());
        for (fd, bytes) in &spec.extra_files {
            if *fd < 3 || *fd > MAX_EXTRA_FD {
                return Err(SandboxError::InvalidSpec(format!(
                    "a heredoc can be given to file descriptors 3 to {MAX_EXTRA_FD}, not {fd} (0–2 are stdin, stdout and stderr)"
                )));
            }
            if extra.iter().any(|(t, _)| *t == *fd as RawFd) {
                return Err(SandboxError::InvalidSpec(format!(
                    "two heredocs for file descriptor {fd}"
                )));
            }
            extra.push((*fd as RawFd, memfd_with("rbuild-heredoc", bytes)?));
        }

        let upper = absolute_dir(&spec.upper, "upper")?;
        let scratch = absolute_dir(&spec.scratch, "scratch")?;
        if std::fs::read_dir(&upper)
            .map_err(|e| SandboxError::io("read", &upper, e))?
            .next()
            .is_some()
        {
            return Err(SandboxError::InvalidSpec(format!(
                "upper {} is not empty",
                upper.display()
            )));
        }
        let lower = spec
            .lower
            .iter()
            .map(|l| absolute_dir(l, "lower layer"))
            .collect::<Result<Vec<_>, _>>()?;
        let LowerStack {
            flatten,
            layers: lower,
        } = LowerStack::plan(&lower);

        let cap_last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40);

        Ok(Prepared {
            argv,
            env,
            has_home,
            path_var,
            user: spec.user.clone(),
            workdir,
            hostname: hostname.as_bytes().to_vec(),
            network: spec.network,
            in_userns: in_user_namespace(),
            stdin,
            attached,
            terminal,
            extra,
            cap_last,
            upper,
            scratch,
            lower,
            flatten,
            mounts: runmount::plan(&spec.mounts)?,
        })
    }
}

impl Prepared {
    /// The descriptors the children must keep open for the command besides their own pipes.
    pub fn command_fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.stdin.as_raw_fd()];
        fds.extend(self.attached.iter().flat_map(|(out, err)| [out.as_raw_fd(), err.as_raw_fd()]));
        fds.extend(self.extra.iter().map(|(_, fd)| fd.as_raw_fd()));
        fds
    }
}

fn c_string(s: &str, what: &str) -> Result<CString, SandboxError> {
    CString::new(s)
        .map_err(|_| SandboxError::InvalidSpec(format!("{what} {s:?} contains a NUL byte")))
}

/// The working directory as an absolute path without `.` and `..`.
fn normalize_workdir(workdir: &str) -> Result<PathBuf, SandboxError> {
    rootpath::lexical(workdir).ok_or_else(|| {
        SandboxError::InvalidSpec(format!("working directory {workdir:?} contains a NUL byte"))
    })
}

fn absolute_dir(path: &Path, what: &str) -> Result<PathBuf, SandboxError> {
    if path.as_os_str().is_empty() {
        return Err(SandboxError::InvalidSpec(format!(
            "no {what} directory given"
        )));
    }
    let abs = std::fs::canonicalize(path).map_err(|e| SandboxError::io("resolve", path, e))?;
    if !abs.is_dir() {
        return Err(SandboxError::InvalidSpec(format!(
            "{what} {} is not a directory",
            abs.display()
        )));
    }
    Ok(abs)
}

/// An anonymous in-memory file holding `bytes`, positioned at its start, so
/// the command can read it at its own pace without rbuild feeding a pipe.
fn memfd_with(name: &str, bytes: &[u8]) -> Result<OwnedFd, SandboxError> {
    let fd = rustix::fs::memfd_create(name, MemfdFlags::CLOEXEC)
        .map_err(|e| SandboxError::sys("create an in-memory file for the command's input", e))?;
    let mut file = File::from(fd);
    file.write_all(bytes)
        .and_then(|_| file.seek(SeekFrom::Start(0)).map(|_| ()))
        .map_err(|e| SandboxError::sys("write the command's input", e))?;
    Ok(file.into())
}
