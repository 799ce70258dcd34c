//! The RUN sandbox: runs one command on top of a stack of snapshot directories
//! and leaves the command's filesystem changes in an overlayfs-style `upper`
//! directory, which the store turns into the step's layer.
//!
//! Two isolations exist:
//!
//! - [`Isolation::Namespaces`] (the default): a child process unshares the mount,
//!   pid, ipc and uts namespaces (and the network one for
//!   [`NetworkMode::None`]), mounts overlayfs with the snapshots as lower
//!   layers, a fresh `/proc`, a minimal `/dev`, `/sys`, and read-only
//!   `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`, then the step's
//!   run mounts ([`RunMount`], `RUN --mount`), pivots into it,
//!   drops to the `USER` and execs the command as pid 1 of its pid namespace.
//!   Every mount lives in the child's mount namespace, so nothing outlives it.
//! - [`Isolation::Chroot`]: for environments that forbid namespaces and mounts
//!   (root in an unprivileged container). The lower layers are copied into a
//!   directory, the command runs there under `chroot`, and the changes are
//!   found afterwards by comparing that directory with what was copied.
//!   Run mounts are emulated by copying (see [`RunMount`]).
//!
//! The interface is narrow: [`run`] takes a [`RunSpec`] (the layers, an
//! empty `upper`, the command and its environment) and returns a
//! [`RunOutcome`] with the diff left in `upper`. Besides that, rootless
//! builds call [`enter_user_namespace_if_needed`] first thing in `main`, so
//! that everything rbuild does afterwards runs as root of a user namespace
//! and the sandbox works the same way as under real root ([`only_root_mapped`]
//! is its warning when no subordinate ids are mapped);
//! [`kill_running_sandboxes`] is for a build that is interrupted; and
//! [`ChangeTracker`], the chroot isolation's change detection, is public for
//! the benchmarks.
//!
//! The sandbox's decisions (the mount plan, the id maps, what each refusal
//! of the kernel leads to) make their system calls through the `syscall`
//! seam, so their unit tests run as any user against a recording fake; the
//! tests in `tests.rs` run everything for real, as root.
//!
//! Files: `namespaces` (the default isolation's process tree), `mounts`,
//! `lowerstack` and `rootpath` (the root filesystem), `exec` (becoming the
//! user and exec'ing), `syscall` (the seam, and its fake in `syscall/fake`),
//! `stubs` (keeping mount points out of the diff), `runmount` (the run
//! mounts, planned for either isolation), `chroot`, `chrootmount` (its
//! emulated run mounts), `layers`,
//! `treediff` and `fscopy` (the copying isolation), `userns` and `idmap` (rootless),
//! `users` (`USER` resolution), `etcfiles`, `net`, `process` and `protocol`
//! (plumbing between rbuild and its children).

mod chroot;
mod chrootmount;
mod error;
mod etcfiles;
mod exec;
mod fscopy;
mod idmap;
mod idmap_helpers;
mod layers;
mod lowerstack;
mod mounts;
mod namespaces;
mod net;
mod prepare;
mod probe;
mod process;
mod protocol;
mod rootpath;
mod runmount;
mod stubs;
mod syscall;
mod treediff;
mod userns;
mod users;

#[cfg(test)]
mod tests;

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

pub use error::SandboxError;
pub use probe::{strongest_isolation, IsolationChoice};
pub use process::kill_running_sandboxes;
pub use treediff::ChangeTracker;
pub use userns::{enter_user_namespace_if_needed, only_root_mapped};

/// The hostname a RUN sees unless the build sets another (BuildKit's default).
pub const DEFAULT_HOSTNAME: &str = "buildkitsandbox";

/// How many lines of output [`RunOutcome::output_tail`] keeps.
pub(crate) const OUTPUT_TAIL_LINES: usize = 20;

/// The network a RUN step gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// A new network namespace with only the loopback interface, up.
    None,
    /// The host's network (what `RUN` needs to download packages).
    #[default]
    Host,
}

/// How the command is kept apart from the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Mount, pid, ipc and uts namespaces, overlayfs and `pivot_root`.
    #[default]
    Namespaces,
    /// A copy of the layers, `chroot` and a diff afterwards; for root inside
    /// an unprivileged container, where namespaces and mounts are refused.
    /// Weaker: no `/proc`, the host's hostname, and root may break out of a
    /// chroot, so use it only where the container is the isolation.
    Chroot,
}

/// One command to run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// Snapshot directories, bottom → top, with overlayfs-native deletions.
    pub lower: Vec<PathBuf>,
    /// An empty directory; receives the command's changes (the step's diff).
    pub upper: PathBuf,
    /// An empty directory on the same filesystem as `upper`, for the overlay
    /// work directory, the mount point and generated files. What the sandbox
    /// puts there is removed before [`run`] returns.
    pub scratch: PathBuf,
    /// The command; `argv[0]` is looked up in the `PATH` of `env` when it has
    /// no `/`.
    pub argv: Vec<String>,
    /// The whole environment of the command. `HOME` (from `/etc/passwd`) is
    /// added when absent; `PATH` is not: without one, only a command given
    /// with a `/` can be found (the caller supplies the default `PATH`).
    pub env: Vec<(String, String)>,
    /// The `USER` spec: "", "name", "uid", "name:group", "uid:gid", resolved in
    /// the root filesystem's `/etc/passwd` and `/etc/group`.
    pub user: String,
    /// The working directory; created (owned by the user) when missing.
    pub workdir: String,
    pub network: NetworkMode,
    /// "" means [`DEFAULT_HOSTNAME`].
    pub hostname: String,
    /// Bytes fed to the command's stdin (a heredoc body); `None` → `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// Contents readable on other file descriptors (`3<<EOF`); fds 0–2 are
    /// refused.
    pub extra_files: Vec<(u32, Vec<u8>)>,
    pub isolation: Isolation,
    /// Filesystems mounted for this run only (`RUN --mount`), in order: a
    /// later one may sit under an earlier one's target.
    pub mounts: Vec<RunMount>,
    /// Where the command's standard streams go.
    pub stdio: Stdio,
}

/// Where a command's standard streams go.
#[derive(Clone, Debug, Default)]
pub enum Stdio {
    /// A build step: stdin from [`RunSpec::stdin`], stdout and stderr merged into
    /// [`run`]'s output callback.
    #[default]
    Captured,
    /// A debug shell: these descriptors as stdin, stdout and stderr ([`RunSpec::stdin`]
    /// is ignored, the output callback gets nothing). With `terminal`, stdin is a terminal
    /// (a pseudo-terminal's slave) that becomes the command's controlling terminal, so a
    /// shell has job control and the terminal's Ctrl-C reaches it.
    Attached { stdin: Arc<OwnedFd>, stdout: Arc<OwnedFd>, stderr: Arc<OwnedFd>, terminal: bool },
}

/// A filesystem mounted into the command's root for this run only. Nothing of it lands in
/// the diff: neither what is written under it nor the mount point the sandbox had to create.
///
/// Under [`Isolation::Chroot`], which may not mount, it is emulated by copying: the source
/// is copied in before the run and, for a writable bind, copied back after it (replacing
/// the source's contents); a read-only bind's copy can be written, and the writes are
/// dropped. A unix socket is reached through a socket in the tree that forwards each
/// connection to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunMount {
    /// Absolute path inside the root filesystem (already resolved against WORKDIR by the caller).
    pub target: String,
    pub kind: MountKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountKind {
    /// A host directory, file or unix socket (cache mounts, bind mounts, secrets, the ssh-agent socket).
    /// Writable binds write through to `source` (that is how cache mounts keep their contents).
    Bind { source: PathBuf, readonly: bool },
    /// An empty tmpfs; `size` in bytes (`None`: the kernel's default).
    Tmpfs { size: Option<u64> },
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            lower: Vec::new(),
            upper: PathBuf::new(),
            scratch: PathBuf::new(),
            argv: Vec::new(),
            env: Vec::new(),
            user: String::new(),
            workdir: "/".to_string(),
            network: NetworkMode::default(),
            hostname: DEFAULT_HOSTNAME.to_string(),
            stdin: None,
            extra_files: Vec::new(),
            isolation: Isolation::default(),
            mounts: Vec::new(),
            stdio: Stdio::default(),
        }
    }
}

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// It exited with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ExitKind {
    pub fn success(&self) -> bool {
        *self == ExitKind::Code(0)
    }
}

impl std::fmt::Display for ExitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitKind::Code(code) => write!(f, "exit code: {code}"),
            ExitKind::Signal(signal) => write!(f, "killed by signal {signal}"),
        }
    }
}

/// What became of a command that started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    pub exit: ExitKind,
    /// The last 20 lines of stdout and stderr, merged.
    pub output_tail: Vec<String>,
    /// Things the sandbox could not provide (only [`Isolation::Chroot`] has
    /// any, e.g. a `/proc` it was not allowed to mount).
    pub warnings: Vec<String>,
}

/// Runs `spec.argv` on the layers of `spec`, streaming its output (stdout and
/// stderr through one pipe, so their order is kept) to `on_output`.
///
/// A command that ran and failed is an `Ok` with a non-zero [`ExitKind`]; an
/// `Err` means the sandbox itself failed, or the command could not start.
/// Every process of the command is dead, and every mount gone, when this
/// returns; the command's changes are in `spec.upper`.
pub fn run(spec: &RunSpec, on_output: &mut dyn FnMut(&[u8])) -> Result<RunOutcome, SandboxError> {
    let prepared = prepare::Prepared::new(spec)?;
    match spec.isolation {
        Isolation::Namespaces => namespaces::run(spec, &prepared, on_output),
        Isolation::Chroot => chroot::run(spec, &prepared, on_output),
    }
}
