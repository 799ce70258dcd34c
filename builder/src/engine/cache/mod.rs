//! The step cache: content-hash keys for build steps, records of what they
//! produced, and explanations of misses.
//!
//! How a build uses it, step by step in dependency order:
//!
//! 1. For a COPY/ADD, digest what it selects: [`digest_context_selection`]
//!    (stat cache opened on the context root; the same for a directory named
//!    with `--build-context`, which COPY reads like the context) or, for
//!    `--from` a stage,
//!    [`digest_rootfs_selection`] (stat cache opened on the store's snapshot
//!    directory). For a `FROM image` source, [`SourceDigest::image`].
//! 2. [`key_for_step`] with the parent step's key.
//! 3. [`lookup`]: on a hit, the record's layer (if any) is the step's layer and
//!    `store.ensure_snapshot(layer)` its snapshot; the step does not run.
//! 4. On a miss, run the step, then [`record`] what it produced. With
//!    `--explain-cache`, [`explain_miss`] says why it missed.
//!
//! `--no-cache` and `--no-cache-filter` are the caller's: keys do not depend
//! on them, so a forced rebuild stores a record later builds can use.
//!
//! A COPY that misses writes the entries its key was computed from (the
//! selection comes along), but reads their contents after the key was
//! computed, so a file edited in between would be cached under the old
//! content's key. A caller that wants to
//! rule this out digests the selection again after the copy (all stat-cache
//! hits when nothing changed) and records only if the digest is the same.

mod explain;
mod hasher;
mod key;
mod source;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;

use rbuild_store::{CacheIndex, CacheRecord, StoreError};

use crate::engine::fileops::FileOpError;

pub use explain::{explain_miss, Difference, Explanation, StepIdentity};
pub use key::{key_for_step, CacheKey, KeyInputs, KeyParams, ParentInputs, SourceInputs, Variable};
pub(crate) use source::{digest_cached_selection, digest_copy_sources};
pub use source::{
    digest_context_selection, digest_rootfs_selection, digest_whole_context, HashStats, SelectedFile,
    SourceDigest, SourceKind,
};

/// Why the step cache could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The sources of a COPY/ADD could not be resolved: the copy itself would
    /// fail the same way, so callers may run the step to report its own error.
    #[error("cannot select the files of {instruction}: {source}")]
    Select {
        instruction: String,
        #[source]
        source: FileOpError,
    },
    #[error("cannot hash {}: {source}", path.display())]
    Hash {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("step cache: {0}")]
    Store(#[from] StoreError),
}

/// The record for `key`, marked as used, if the cache has a usable one.
pub fn lookup(index: &CacheIndex, key: &CacheKey) -> Result<Option<CacheRecord>, CacheError> {
    let record = index.get(key.digest())?;
    if record.is_some() {
        index.touch(key.digest())?;
    }
    Ok(record)
}

/// Stores what a step produced under its key, and its inputs under its
/// identity for later explanations (shared sources have no identity).
pub fn record(
    index: &CacheIndex,
    key: &CacheKey,
    record: &CacheRecord,
    identity: Option<&StepIdentity>,
    inputs: &KeyInputs,
) -> Result<(), CacheError> {
    index.put(key.digest(), record)?;
    if let Some(identity) = identity {
        let bytes = serde_json::to_vec(inputs).expect("key inputs always serialise");
        index.remember_inputs(&identity.digest(), key.digest(), &bytes)?;
    }
    Ok(())
}
