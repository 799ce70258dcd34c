//! Build errors, each saying where in the Dockerfile it happened. They stay typed until the
//! command line renders them.

use rbuild_frontend::instructions::{DockerfileError, Location};
use rbuild_sandbox::{ExitKind, SandboxError};

use crate::engine::fileops::FileOpError;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile could not be parsed or lowered.
    #[error("{file}:{}:{}: {}", .error.line, .error.column, .error.message)]
    Dockerfile { file: String, error: DockerfileError },

    /// A step failed while it ran. The step's error is part of the message (not a
    /// `source`), so a rendered chain names it once.
    #[error("{file}:{}: {}: {error}", .location.start_line, rbuild_frontend::excerpt::excerpt(instruction))]
    Step {
        file: String,
        location: Location,
        instruction: String,
        error: Box<StepError>,
    },

    /// The build checks found something and `check=error=true` makes that fail the build.
    #[error("the build checks found {count} problem(s) and check=error=true makes them errors: {rules}")]
    Checks { count: usize, rules: String },

    #[error("build context {0}")]
    Context(String),

    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),

    /// A file or directory of the build's own work could not be made or read.
    #[error("{action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Cache(#[from] crate::engine::cache::CacheError),

    /// A cache shared through a registry or a directory could not give what a step needs.
    #[error(transparent)]
    RemoteCache(#[from] crate::engine::remote_cache::RemoteCacheError),

    /// The scheduler itself failed (a step panicked, a task was lost).
    #[error("{0}")]
    Internal(String),

    /// Writing an output of the build failed.
    #[error(transparent)]
    Output(#[from] std::io::Error),

    /// The image was built, but naming it or writing it out failed. The display is only
    /// the action: renderers print the source after it, as for every error chain.
    #[error("{action}")]
    Finish {
        action: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why one step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("image {0:?} is not in the store")]
    MissingImage(String),

    /// The Dockerfile asks for something rbuild does not do.
    #[error("{0}")]
    Unsupported(String),

    /// COPY, ADD or WORKDIR could not do its file operation.
    #[error(transparent)]
    FileOp(#[from] FileOpError),

    /// A `--mount` could not be made ready.
    #[error("--mount target={target}: {reason}")]
    Mount { target: String, reason: String },

    /// The step is for a platform this host has no emulator for.
    #[error(transparent)]
    Emulation(#[from] crate::engine::emulation::EmulationError),

    /// The sandbox could not run the command.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),

    /// The command ran and failed.
    #[error("process {command:?} did not complete successfully: {exit}{}", failed_run_details(.output_tail, .hint))]
    CommandFailed {
        command: String,
        exit: ExitKind,
        /// The last lines of its output.
        output_tail: Vec<String>,
        /// What may have caused it, when rbuild can tell.
        hint: Option<&'static str>,
        /// The id under which the failed step was kept for `rbuild debug`, if it was.
        kept: Option<String>,
        /// Why the step could not be kept, when keeping it was asked and failed.
        not_kept: Option<String>,
    },
}

impl BuildError {
    /// The id of the failed step kept for `rbuild debug`, if the build failed at a kept RUN.
    pub fn kept_failure(&self) -> Option<&str> {
        self.failed_command().and_then(|(kept, _)| kept.as_deref())
    }

    /// Why a failed RUN could not be kept for `rbuild debug`, if that failed.
    pub fn not_kept(&self) -> Option<&str> {
        self.failed_command().and_then(|(_, not_kept)| not_kept.as_deref())
    }

    /// `kept` and `not_kept` of a build that failed at a RUN's command.
    fn failed_command(&self) -> Option<(&Option<String>, &Option<String>)> {
        match self {
            BuildError::Step { error, .. } => match error.as_ref() {
                StepError::CommandFailed { kept, not_kept, .. } => Some((kept, not_kept)),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The output lines and hint shown after a failed command's status.
fn failed_run_details(output_tail: &[String], hint: &Option<&'static str>) -> String {
    let mut text = String::new();
    if !output_tail.is_empty() {
        text.push_str("\nlast lines of its output:");
        for line in output_tail {
            text.push_str("\n  ");
            text.push_str(line);
        }
    }
    if let Some(hint) = hint {
        text.push_str("\nthis may be why: ");
        text.push_str(hint);
    }
    text
}
