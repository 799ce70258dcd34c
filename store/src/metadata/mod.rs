//! Metadata: what names the content. `Images` records manifests and configs
//! (blobs) under image ids, `Tags` and `Pins` point names and foreign digests
//! at manifests (or at `indexes` of per-platform manifests), `Sources` remembers the repository a pulled blob came from; the step cache index and the stat caches remember builds; `kept_failures` keeps failed RUN steps for `rbuild debug`.
//! Each is a handle over the paths and the content handles it needs.

pub mod cache_index;
pub mod image;
pub mod kept_failures;
pub mod indexes;
pub(crate) mod pins;
pub(crate) mod sources;
pub mod stat_cache;
pub(crate) mod tags;
