//! The one error type of the file operations: every variant names the path, pattern,
//! user or archive member it is about, so a failed COPY tells the user what to fix.

use std::io;
use std::path::PathBuf;

/// Why a file operation (COPY, ADD, WORKDIR, a rootfs lookup) failed.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// A system call on a host path failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A COPY/ADD source does not exist (or is hidden by `.dockerignore`).
    #[error("source {path:?} not found")]
    SourceNotFound { path: String },

    /// A COPY/ADD source that is in the context directory but left out of
    /// the build context by its ignore file.
    #[error("source {path:?} is excluded from the build context by the pattern {pattern:?} in {}", file.display())]
    SourceIgnored { path: String, pattern: String, file: PathBuf },

    /// An image path that a lookup needed does not exist.
    #[error("{path}: no such file or directory")]
    NotFound { path: String },

    /// A wildcard source is malformed.
    #[error("invalid wildcard pattern {pattern:?}")]
    BadPattern { pattern: String },

    /// A `--exclude` or `.dockerignore`-style pattern could not be compiled.
    #[error("invalid pattern {pattern:?}: {message}")]
    InvalidPattern { pattern: String, message: String },

    /// A source kind rbuild does not handle yet (remote URLs, git repositories).
    #[error("{what} is not supported yet")]
    Unsupported { what: String },

    /// A source that is valid for ADD but not for COPY.
    #[error("source {source_path:?} can't be {what} for COPY")]
    InvalidCopySource {
        source_path: String,
        what: &'static str,
    },

    /// `--chown` / USER value that cannot be parsed.
    #[error("invalid owner {spec:?}: {reason}")]
    InvalidOwner { spec: String, reason: &'static str },

    /// A user name that the target image's passwd file does not define.
    #[error("unknown user {name:?}: not found in {file}")]
    UnknownUser { name: String, file: &'static str },

    /// A group name that the target image's group file does not define.
    #[error("unknown group {name:?}: not found in {file}")]
    UnknownGroup { name: String, file: &'static str },

    /// `--chmod` value that is neither octal nor a valid symbolic mode.
    #[error("invalid chmod value {spec:?}: {reason}")]
    InvalidChmod { spec: String, reason: String },

    /// A directory is needed where the image has a non-directory.
    #[error("{path} exists and is not a directory")]
    NotADirectory { path: String },

    /// A file would replace a directory of the image.
    #[error("cannot replace directory {path} with a file")]
    ReplaceDirectory { path: String },

    /// Symbolic links inside the image loop or nest too deeply.
    #[error("too many levels of symbolic links resolving {path}")]
    SymlinkLoop { path: String },

    /// An image path that must be a regular file is something else.
    #[error("{path} is not a regular file")]
    NotAFile { path: String },

    /// An archive member that would land outside the ADD destination, or that
    /// cannot be extracted.
    #[error("archive {archive}: member {member:?} {reason}")]
    ArchiveMember {
        archive: String,
        member: String,
        reason: String,
    },

    /// An archive that expands past a limit (a decompression bomb).
    #[error("archive {archive} was refused: {error}")]
    ArchiveTooLarge {
        archive: String,
        error: rbuild_store::expansion::ExpansionError,
    },

    /// An archive that cannot be read.
    #[error("archive {archive}: {source}")]
    Archive {
        archive: String,
        #[source]
        source: io::Error,
    },
}

/// Results of the file operations.
pub type Result<T, E = FileOpError> = std::result::Result<T, E>;

impl FileOpError {
    /// Wraps an I/O error with the operation and the host path it concerned.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Self {
        FileOpError::Io {
            op,
            path: path.into(),
            source: source.into(),
        }
    }
}
