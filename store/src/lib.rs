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
//! cache/                 step cache records, recent step inputs, stat caches
//! tmp/                   temp files and dirs, renamed into place when complete
//! leases/, gc.lock       what running processes use; garbage collection's lock
//! ```
//!
//! Everything becomes visible by an atomic rename from `tmp/`, which is on the
//! same filesystem, so a killed process leaves at worst garbage in `tmp/`.

pub mod archive;
mod blobs;
pub mod cache_index;
pub mod compress;
pub mod config;
mod convert;
pub mod digest;
pub mod error;
pub mod expansion;
mod fs;
pub mod gc;
pub mod image;
pub mod import;
pub mod layer;
mod lease;
pub mod listing;
pub mod manifest;
mod pgzip;
mod pins;
pub mod platform;
pub mod records;
pub mod reference;
pub mod registry;
mod snapshot;
pub mod stat_cache;
mod tags;
mod unpack;
pub mod usage;

#[cfg(test)]
mod test_util;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use fs::writeback;
pub use archive::{write_archive, write_oci_dir, ArchiveFormat};
pub use blobs::BlobWriter;
pub use cache_index::{CacheIndex, CacheRecord};
pub use compress::Compression;
pub use config::{ContainerConfig, Healthcheck, History, ImageConfig, RootFs};
pub use digest::{Digest, DigestError};
pub use error::StoreError;
pub use image::StoredImage;
pub use import::{ImportedImage, LayoutSelector};
pub use layer::{write_layer_tar, Layer, LayerOptions};
pub use platform::Platform;
pub use lease::ContentRef;
pub use reference::{Reference, ReferenceError};
pub use stat_cache::{StatCache, StatKey};
pub use unpack::{unpack_layer_tar, UnpackReport};

use error::IoContext;

/// An image store rooted at one directory. Cheap to clone; any number of
/// processes may use one root at the same time.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    /// What this process uses, kept from garbage collection (see `lease`);
    /// shared by the handle's clones, dropped with the last of them.
    lease: Option<Arc<lease::Lease>>,
}

impl Store {
    /// Opens the store at `root`, creating its layout if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let mut store = Store {
            root: root.into(),
            lease: None,
        };
        for dir in [
            store.blobs_dir(),
            store.snapshots_dir(),
            store.root.join("images"),
            store.root.join("tmp"),
        ] {
            std::fs::create_dir_all(&dir).at("create store directory", &dir)?;
        }
        store.remove_stale_temp();
        let tmp = store.tmp_dir();
        std::fs::create_dir_all(&tmp).at("create store directory", &tmp)?;
        lease::remove_stale_leases(&store.root);
        store.lease = Some(Arc::new(lease::Lease::take(&store.root, &tmp)?));
        Ok(store)
    }

    /// The same store without a lease: the collector's view, whose reads must
    /// neither protect what it is deleting nor wait on its own lock.
    pub(crate) fn without_lease(&self) -> Store {
        Store {
            root: self.root.clone(),
            lease: None,
        }
    }

    /// Where the store lives unless told otherwise: `$RBUILD_ROOT`, else
    /// `$XDG_DATA_HOME/rbuild`, else `$HOME/.local/share/rbuild`.
    pub fn default_root() -> PathBuf {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(root) = var("RBUILD_ROOT") {
            return root;
        }
        if let Some(data) = var("XDG_DATA_HOME") {
            return data.join("rbuild");
        }
        let home = var("HOME").unwrap_or_else(|| PathBuf::from("/"));
        home.join(".local").join("share").join("rbuild")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This process's own temp area, `tmp/<pid>/`: whatever is left there by a
    /// process that died is recognisable and removed by the next one.
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp").join(std::process::id().to_string())
    }

    /// Removes this process's temp area, e.g. when a build is interrupted
    /// before its temp files could be dropped.
    pub fn remove_own_temp(&self) -> Result<(), StoreError> {
        let dir = self.tmp_dir();
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io("remove", &dir, e)),
            _ => Ok(()),
        }
    }

    /// Removes the temp areas of processes that no longer run (killed builds).
    fn remove_stale_temp(&self) {
        let Ok(entries) = std::fs::read_dir(self.root.join("tmp")) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
                // Another process may be removing it at the same time; either wins.
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    /// A fresh temp directory under the store root, so that what is prepared in
    /// it can be renamed into the store (same filesystem). Removed on drop.
    pub fn tempdir(&self) -> Result<tempfile::TempDir, StoreError> {
        let tmp = self.tmp_dir();
        tempfile::Builder::new()
            .prefix("dir-")
            .tempdir_in(&tmp)
            .at("create a temp directory in", &tmp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_creates_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        for sub in ["blobs/sha256", "snapshots", "images", "tmp"] {
            assert!(store.root().join(sub).is_dir(), "{sub}");
        }
        // Opening again is fine.
        Store::open(store.root()).unwrap();
        let tmp = store.tempdir().unwrap();
        assert!(tmp.path().starts_with(store.root().join("tmp")));
    }
}

#[cfg(test)]
mod temp_area_tests {
    use super::*;

    #[test]
    fn own_temp_area_is_removed_and_dead_processes_areas_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let own = store.tmp_dir();
        assert!(own.ends_with(std::process::id().to_string()));
        std::fs::write(own.join("leftover"), b"x").unwrap();
        // A pid that cannot be running: above the kernel's pid_max limit.
        let dead = dir.path().join("tmp").join("4194305");
        std::fs::create_dir_all(dead.join("sub")).unwrap();
        let not_a_pid = dir.path().join("tmp").join("keep-me");
        std::fs::create_dir(&not_a_pid).unwrap();

        Store::open(dir.path()).unwrap();
        assert!(!dead.exists(), "a dead process's area is removed");
        assert!(own.join("leftover").exists(), "a live process's area is kept");
        assert!(not_a_pid.exists(), "only pid-named areas are touched");

        store.remove_own_temp().unwrap();
        assert!(!own.exists());
        store.remove_own_temp().unwrap();
    }
}
