//! How a command failed, which decides rbuild's exit code.

use crate::cli::snippet::snippet;
use crate::engine::error::BuildError;

/// Why a command failed: the caller picks the exit code from it.
#[derive(Debug)]
pub enum Failure {
    /// The command line was wrong (exit 2).
    Usage(String),
    /// The build ran and failed (exit 1).
    Build(anyhow::Error),
    /// The build failed at a Dockerfile line (exit 1); `snippet` shows it.
    Located { error: Box<BuildError>, snippet: String },
    /// A command rbuild ran for the user (a debug shell) ended with this status, which
    /// becomes rbuild's; there is nothing to print.
    Status(u8),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Build(e)
    }
}

impl From<BuildError> for Failure {
    fn from(e: BuildError) -> Self {
        Failure::Build(e.into())
    }
}

impl Failure {
    /// A build error, with the Dockerfile lines it points at when it points at some.
    pub fn located(error: BuildError, dockerfile: &str) -> Failure {
        let lines = match &error {
            BuildError::Dockerfile { error, .. } => Some((error.line, error.line)),
            BuildError::Step { location, .. } => Some((location.start_line, location.end_line)),
            _ => None,
        };
        match lines {
            Some((start, end)) => Failure::Located { snippet: snippet(dockerfile, start, end), error: Box::new(error) },
            None => Failure::Build(error.into()),
        }
    }

    /// The exit code: 2 for a usage error, 1 for anything that failed while running.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Build(_) | Failure::Located { .. } => 1,
            Failure::Status(status) => *status,
        }
    }

    /// Prints the failure to stderr the way every rbuild command does.
    pub fn report(&self) {
        let message = match self {
            Failure::Status(_) => return,
            Failure::Usage(message) => message.clone(),
            Failure::Build(error) => format!("{error:#}"),
            Failure::Located { error, .. } => format!("{error:#}"),
        };
        eprintln!("error: {message}");
        if let Failure::Located { snippet, error } = self {
            eprint!("{snippet}");
            if let Some(id) = error.kept_failure() {
                eprintln!("{}", debug_line(id));
            }
            if let Some(reason) = error.not_kept() {
                eprintln!("note: the failed step could not be kept for `rbuild debug`: {reason}");
            }
        }
        if let Some(hint) = crate::cli::disk_full::hint(&message, &rbuild_store::Store::default_root()) {
            eprintln!("{hint}");
        }
    }

    /// The id of the failed RUN this failure kept for `rbuild debug`, if any.
    pub fn kept_failure(&self) -> Option<&str> {
        match self {
            Failure::Located { error, .. } => error.kept_failure(),
            _ => None,
        }
    }

    /// Turns a clap parse error into the right outcome: help and version
    /// output are printed and are not failures.
    pub fn from_clap(error: clap::Error) -> Option<Failure> {
        if error.use_stderr() {
            Some(Failure::Usage(error.render().to_string().trim_start_matches("error: ").trim_end().to_string()))
        } else {
            let _ = error.print();
            None
        }
    }
}

/// The line after a failed RUN's error: how to open a shell where it failed.
pub fn debug_line(id: &str) -> String {
    format!("to open a shell where it failed: rbuild debug {id}  (--initial: before the command ran; -- CMD: run CMD)")
}
