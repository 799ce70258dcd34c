//! The store's error type. Every variant names what it was working on (a path,
//! a digest, a reference), so a failure deep inside an export still says where.

use std::io;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, DigestError};
use crate::reference::ReferenceError;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("{what}: content has digest {actual}, expected {expected}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("blob {digest} is not in the store")]
    BlobNotFound { digest: Digest },
    #[error("cannot parse {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot add {} to a layer: {reason}", path.display())]
    Layer { path: PathBuf, reason: String },
    #[error("cannot write layer from {}: {source}", dir.display())]
    LayerIo {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image {manifest} is invalid: {reason}")]
    InvalidImage { manifest: Digest, reason: String },
    #[error("image id prefix {prefix:?} is ambiguous: it matches {matches} images")]
    AmbiguousImageId { prefix: String, matches: usize },
    #[error("{prefix:?} names {matches} kept failures; give more of the id")]
    AmbiguousKeptFailure { prefix: String, matches: usize },
    #[error("reference {reference} has no tag; a tag is needed to {purpose}")]
    MissingTag {
        reference: String,
        purpose: &'static str,
    },
    #[error("cannot write archive: {source}")]
    ArchiveIo {
        #[source]
        source: io::Error,
    },
    #[error("snapshot {diff_id}: {reason}")]
    Snapshot { diff_id: Digest, reason: String },
    /// A layer member that cannot be unpacked (unsafe, or unreadable).
    #[error("cannot unpack layer {layer}: member {member:?}: {reason}")]
    Unpack { layer: String, member: String, reason: String },
    /// A layer that expands past a limit of [`crate::expansion`].
    #[error("layer {layer} was refused: {error}")]
    Expansion { layer: String, error: crate::expansion::ExpansionError },
    /// An archive or OCI layout that cannot be imported (see `import`).
    #[error("cannot import {}: {reason}", origin.display())]
    Import { origin: PathBuf, reason: String },
    #[error("No such image: {name}")]
    NoSuchImage { name: String },
    #[error("conflict: unable to delete {id} (must be forced) - {reason}")]
    ImageConflict { id: String, reason: String },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// Attaches what was being done, and to which path, to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, op: &'static str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, op: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| StoreError::io(op, path, e))
    }
}
