//! rbuild's image store: content-addressed blobs, layer snapshots, deterministic
//! layer tars, image configs and manifests, and the archive formats images are
//! exported in. It knows nothing of Dockerfiles.
//!
//! On disk, under the store root:
//!
//! ```text
//! blobs/sha256/<hex>     content-addressed blobs (layers, configs, manifests)
//! snapshots/<hex>/       unpacked layer diffs, by diff_id
//! images/<hex>           image id (config digest) → manifest digest
//! tags.json, tags.lock   tags → manifest digests, and the lock guarding updates
//! pins/, sources/        registry digests → stored manifests; pulled blob → its repository
//! cache/                 step cache records, recent step inputs, stat caches
//! tmp/                   temp files and dirs, renamed into place when complete
//! leases/, gc.lock       what running processes use; garbage collection's lock
//! ```
//!
//! Everything becomes visible by an atomic rename from `tmp/`, which is on the
//! same filesystem, so a killed process leaves at worst garbage in `tmp/`.
//!
//! The crate is built in layers; a module uses only the layers below its own
//! (and its own layer's lower modules), never one above:
//!
//! 1. `fs`: file helpers (atomic replacement, lock files, fsync and syncfs,
//!    directory listing, descriptor-confined writes, xattrs, writeback).
//! 2. Formats, which hold no store state: `digest`, `error`, `compress`,
//!    `config`, `platform`, `reference`, `manifest`, `expansion`.
//! 3. `content`: what the store holds by digest. Leases record what a process
//!    uses; `Blobs` and `Snapshots` are handles on their directories; layers
//!    are written into blobs and unpacked into snapshots.
//! 4. `metadata`: what names content. `Images`, `Tags`, `Pins` and `Sources`
//!    are handles over blobs; the step cache index and the stat caches.
//! 5. `store`: [`Store`], which opens a root and composes the handles above
//!    (blobs, snapshots, images, tags, pins) into the one handle rbuild holds.
//! 6. Operations over a whole `Store`: `maintenance` (records, garbage
//!    collection, disk usage, image listing and removal) and the exchange
//!    of images with the outside (`import`, `registry`, `archive`, `convert`).
//!
//! Lower modules take paths or the small handles they need, not the `Store`.

mod content;
mod fs;
mod maintenance;
mod metadata;
mod store;

pub mod archive;
pub mod cache_layout;
pub mod cache_manifest;
pub mod compress;
pub mod config;
mod convert;
pub mod digest;
pub mod error;
pub mod expansion;
pub mod import;
pub mod manifest;
mod pgzip;
pub mod platform;
pub mod reference;
pub mod registry;

#[cfg(test)]
mod test_util;

pub use content::layer;
pub use fs::writeback;
pub use maintenance::{gc, listing, records, usage};
pub use metadata::{cache_index, image, indexes, stat_cache};

pub use archive::{write_archive, write_oci_dir, write_platforms_archive, ArchiveFormat};
pub use compress::{Codec, Compression};
pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use content::blobs::BlobWriter;
pub use content::layer::{write_layer_tar, Layer, LayerOptions};
pub use content::lease::ContentRef;
pub use content::unpack::{unpack_layer_tar, UnpackReport};
pub use digest::{Digest, DigestError};
pub use error::StoreError;
pub use import::{ImportedImage, LayoutSelector};
pub use metadata::cache_index::{CacheIndex, CacheRecord};
pub use metadata::kept_failures::KeptFailure;
pub use metadata::image::StoredImage;
pub use metadata::indexes::PlatformImage;
pub use metadata::stat_cache::{StatCache, StatKey};
pub use platform::Platform;
pub use reference::{Reference, ReferenceError};
pub use store::Store;
