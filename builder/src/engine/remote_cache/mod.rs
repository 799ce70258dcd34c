//! The build cache shared through a registry or a directory (`--cache-from`,
//! `--cache-to`; the format is the store's `cache_manifest`).
//!
//! Import reads each cache's manifest and config only. A step whose key one of
//! them records is a hit without its layer: the step's state holds the layer by
//! descriptor, its snapshot not yet there, and [`RemoteCache::ensure_blob`]
//! fetches the blob (verified as it is written) only when something needs the
//! bytes: a RUN or COPY over it, a `COPY --from` of it, an archive output, a
//! push to another registry. The store stays consistent throughout: it never
//! holds a record or image whose blobs it claims to have and does not; an image
//! made of such layers is written with their descriptors (its manifest and
//! config are complete), and the registry they came from is recorded as their
//! source (`metadata::sources`), so a push to that registry finds or mounts
//! them and downloads nothing.

mod export;
mod mounts;
pub mod spec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use rbuild_store::cache_manifest::{self, CacheConfig, CachedMount, CachedStep};
use rbuild_store::registry::{Registry, RegistryAccess, RegistryError};
use rbuild_store::{
    cache_layout, CacheIndex, Digest, Layer, Platform, Reference, Store, StoreError,
};

pub use export::{export_caches, ExportReport, ExportTarget, ExportedStep};
pub use mounts::{cache_mount_ids, mount_layers, restore_mounts};
pub use spec::{
    parse_cache_from, parse_cache_to, CacheExport, CacheImport, CacheLocation, CacheMode,
};

use crate::engine::pulling::open_registry;

/// Why the shared cache could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum RemoteCacheError {
    #[error("{action} the cache {location}: {source}")]
    Registry {
        action: &'static str,
        location: String,
        /// Boxed: a registry error is large, and build errors travel by value.
        #[source]
        source: Box<RegistryError>,
    },
    #[error("{action} the cache {location}: {source}")]
    Store {
        action: &'static str,
        location: String,
        #[source]
        source: StoreError,
    },
    #[error("restoring the cache mount {id:?}: {source}")]
    MountIo {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the cache {location} is not usable: {reason}")]
    Format { location: String, reason: String },
    #[error("layer {digest} of a cached step is known only by its descriptor, and no cache says where to fetch it")]
    NoOrigin { digest: Digest },
}

/// Where a cache came from: where its blobs are fetched.
#[derive(Debug, Clone)]
enum Origin {
    Registry(Reference),
    Local(PathBuf),
}

/// The imported caches of one build.
pub struct RemoteCache {
    store: Store,
    platform: Platform,
    registry_access: RegistryAccess,
    /// Step records by key, with the cache each came from.
    steps: HashMap<Digest, (CachedStep, usize)>,
    /// Cache mounts by id, with the cache each came from.
    mounts: Vec<(CachedMount, usize)>,
    origins: Vec<Origin>,
    /// Layer blob → the cache it is fetched from.
    blobs: HashMap<Digest, usize>,
    registry: OnceLock<Result<Arc<Registry>, String>>,
    /// One fetch of a blob at a time: two steps needing it wait for one download.
    fetching: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
}

impl RemoteCache {
    /// Reads every `--cache-from` (manifest and config, no layer). A cache
    /// that is missing or unusable is a warning (`warn`), as in BuildKit: the
    /// build runs without it. The steps' explanation inputs go into `index`, so
    /// `--explain-cache` compares a miss with the remote builds too.
    pub fn import(
        store: &Store,
        index: &CacheIndex,
        imports: &[CacheImport],
        platform: Platform,
        registry_access: RegistryAccess,
        warn: &mut dyn FnMut(&str),
    ) -> RemoteCache {
        let mut cache = RemoteCache {
            store: store.clone(),
            platform,
            registry_access,
            steps: HashMap::new(),
            mounts: Vec::new(),
            origins: Vec::new(),
            blobs: HashMap::new(),
            registry: OnceLock::new(),
            fetching: Mutex::new(HashMap::new()),
        };
        for import in imports {
            match cache.read(&import.location) {
                Ok(Some(config)) => cache.add(import, config, index, warn),
                Ok(None) => warn(&format!(
                    "cache {} not found: building without it",
                    import.location
                )),
                Err(e) => warn(&format!("{e}: building without it")),
            }
        }
        cache
    }

    fn read(&self, location: &CacheLocation) -> Result<Option<CacheConfig>, RemoteCacheError> {
        let format = |reason: String| RemoteCacheError::Format {
            location: location.to_string(),
            reason,
        };
        let found = match location {
            CacheLocation::Registry(reference) => self.registry().and_then(|r| {
                r.fetch_manifest_and_config(&self.store, reference, cache_manifest::config_of)
                    .map_err(|source| RemoteCacheError::Registry {
                        action: "reading",
                        location: location.to_string(),
                        source: Box::new(source),
                    })
            })?,
            CacheLocation::Local(dir) => {
                cache_layout::read_cache_layout(dir, cache_manifest::config_of).map_err(
                    |source| RemoteCacheError::Store {
                        action: "reading",
                        location: location.to_string(),
                        source,
                    },
                )?
            }
        };
        let Some((_, config)) = found else {
            return Ok(None);
        };
        let config = config.map_err(|e| format(e.to_string()))?;
        cache_manifest::parse_config(&config)
            .map(Some)
            .map_err(|e| format(e.to_string()))
    }

    fn add(
        &mut self,
        import: &CacheImport,
        config: CacheConfig,
        index: &CacheIndex,
        warn: &mut dyn FnMut(&str),
    ) {
        let origin = self.origins.len();
        self.origins.push(match &import.location {
            CacheLocation::Registry(reference) => Origin::Registry(reference.clone()),
            CacheLocation::Local(dir) => Origin::Local(dir.clone()),
        });
        for (layer, _) in config.layers() {
            self.blobs.entry(layer.digest.clone()).or_insert(origin);
            // A push to the cache's registry mounts the layer from it (or finds it there).
            if let CacheLocation::Registry(reference) = &import.location {
                let repository = format!("{}/{}", reference.domain(), reference.path());
                if let Err(e) = self.store.record_blob_source(&layer.digest, &repository) {
                    warn(&format!(
                        "cannot record where layer {} is: {e}",
                        layer.digest
                    ));
                }
            }
        }
        for step in config.steps {
            if let (Some(identity), Some(inputs)) = (&step.identity, &step.inputs) {
                let bytes = serde_json::to_vec(inputs).expect("JSON always serialises");
                let _ = index.remember_inputs(identity, &step.key, &bytes);
            }
            // The first cache named wins, as the first --cache-from does in BuildKit.
            self.steps.entry(step.key.clone()).or_insert((step, origin));
        }
        self.mounts
            .extend(config.mounts.into_iter().map(|m| (m, origin)));
    }

    fn registry(&self) -> Result<&Registry, RemoteCacheError> {
        let opened = self.registry.get_or_init(|| {
            open_registry(self.platform.clone(), self.registry_access.clone())
                .map(Arc::new)
                .map_err(|e| e.to_string())
        });
        opened
            .as_deref()
            .map_err(|reason| RemoteCacheError::Format {
                location: "registry".into(),
                reason: reason.clone(),
            })
    }

    /// How many steps the imported caches record.
    pub fn step_count(&self) -> usize {
        self.steps.len()
    }

    /// The record of `key` in an imported cache, its layer (if any) as the
    /// cache holds it, which the store may not have.
    pub fn get(&self, key: &Digest) -> Option<&CachedStep> {
        self.steps.get(key).map(|(step, _)| step)
    }

    /// The cache mounts the imported caches carry.
    pub fn mounts(&self) -> impl Iterator<Item = &CachedMount> {
        self.mounts.iter().map(|(m, _)| m)
    }

    /// Makes sure the store has `layer`'s blob, fetching it from the cache that
    /// holds it.
    pub fn ensure_blob(&self, layer: &Layer) -> Result<(), RemoteCacheError> {
        if self.store.has_blob(&layer.digest) {
            return Ok(());
        }
        let lock = {
            let mut map = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(layer.digest.clone()).or_default().clone()
        };
        let _fetching = lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.store.has_blob(&layer.digest) {
            return Ok(());
        }
        let origin = self.blobs.get(&layer.digest).map(|i| &self.origins[*i]);
        match origin {
            Some(Origin::Registry(reference)) => self
                .registry()?
                .fetch_blob(&self.store, reference, layer)
                .map_err(|source| RemoteCacheError::Registry {
                    action: "fetching a layer of",
                    location: reference.full(),
                    source: Box::new(source),
                }),
            Some(Origin::Local(dir)) => cache_layout::fetch_layout_blob(&self.store, dir, layer)
                .map_err(|source| RemoteCacheError::Store {
                    action: "fetching a layer of",
                    location: dir.display().to_string(),
                    source,
                }),
            None => Err(RemoteCacheError::NoOrigin {
                digest: layer.digest.clone(),
            }),
        }
    }

    /// Whether `layer`'s blob comes from an imported cache directory (not a
    /// registry, which the store records as the blob's source).
    pub fn from_directory(&self, layer: &Layer) -> bool {
        self.blobs
            .get(&layer.digest)
            .is_some_and(|i| matches!(self.origins[*i], Origin::Local(_)))
    }
}
