//! Errors of the RUN sandbox, each naming what failed and, where one exists,
//! what the user can do about it.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The [`super::RunSpec`] cannot be run as given.
    #[error("invalid RUN spec: {0}")]
    InvalidSpec(String),

    /// A file operation of rbuild itself (not of the command) failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A system call of rbuild itself failed.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },

    /// Setting up the sandbox failed inside the child, before the command ran.
    #[error("sandbox setup failed: {step}: {message}")]
    Setup { step: String, message: String },

    /// The `USER` of the step cannot be resolved or become.
    #[error("USER {spec:?}: {message}")]
    User { spec: String, message: String },

    /// The command could not be started.
    #[error("exec {program:?}: {message}")]
    Exec { program: String, message: String },

    /// A `RUN --mount` cannot be provided at its target.
    #[error("RUN --mount target {target}: {message}")]
    Mount { target: String, message: String },

    /// The kernel refused the overlay mount of the layers.
    #[error("mounting the layers with overlayfs failed: {message}{hint}")]
    Overlay { message: String, hint: String },

    /// Unprivileged user namespaces are not available.
    #[error("rbuild needs a user namespace to build without root, but {cause}. To fix: {fix}")]
    UserNamespaceBlocked { cause: String, fix: String },

    /// newuidmap or newgidmap refused to set up the id mapping.
    #[error("{tool} {args} failed ({status}): {stderr}")]
    IdMapTool {
        tool: String,
        args: String,
        status: String,
        stderr: String,
    },

    /// The sandbox's processes ended without saying how the command ended.
    #[error("the sandbox ended without reporting the command's status ({0})")]
    Lost(String),
}

impl SandboxError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SandboxError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        SandboxError::Sys {
            what: what.into(),
            source: source.into(),
        }
    }
}
