//! Build errors, each saying where in the Dockerfile it happened.

use rbuild_frontend::instructions::{DockerfileError, Location};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The Dockerfile could not be parsed or lowered.
    #[error("{file}:{}:{}: {}", .error.line, .error.column, .error.message)]
    Dockerfile { file: String, error: DockerfileError },

    /// A step failed while it ran.
    #[error("{file}:{}: {}: {message}", .location.start_line, rbuild_frontend::excerpt::excerpt(instruction))]
    Step {
        file: String,
        location: Location,
        instruction: String,
        message: String,
    },

    #[error("build context {0}")]
    Context(String),

    #[error(transparent)]
    Store(#[from] rbuild_store::StoreError),

    #[error("{0}")]
    Io(String),
}
