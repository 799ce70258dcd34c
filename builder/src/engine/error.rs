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
