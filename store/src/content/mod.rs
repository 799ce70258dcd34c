//! Content: what the store holds by digest, and the lease that keeps what a
//! running process uses from garbage collection. `Blobs` and `Snapshots` are
//! the handles on their directories; `layer` writes a directory as a layer
//! blob, `unpack` a layer blob as a snapshot. Nothing here names images.

pub(crate) mod blobs;
pub mod layer;
pub(crate) mod lease;
pub(crate) mod snapshot;
pub(crate) mod unpack;
