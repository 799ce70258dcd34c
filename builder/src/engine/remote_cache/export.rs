//! `--cache-to`: after the build, the steps it ran or found cached are written
//! as a cache (`cache_manifest`) to a registry or an OCI layout directory.
//! Layers are compressed once as the export asks (the store remembers the
//! conversion, so the push of the image and a second export compress nothing);
//! a layer known only by its descriptor (a hit in an imported cache) is
//! exported by descriptor to a registry, which already has it or mounts it, and
//! fetched only for a directory or another compression.

use std::time::{Duration, Instant};

use rbuild_store::cache_manifest::{CacheConfig, CachedMount, CachedStep};
use rbuild_store::registry::{PushEvent, RegistryAccess};
use rbuild_store::{cache_layout, CacheRecord, Digest, Layer, Store};

use super::{CacheExport, CacheLocation, CacheMode, RemoteCache, RemoteCacheError};
use crate::engine::pulling::open_registry;

/// A step the build ran or found cached, as an export writes it.
#[derive(Debug, Clone)]
pub struct ExportedStep {
    pub key: Digest,
    pub record: CacheRecord,
    pub identity: Option<Digest>,
    pub inputs: Option<serde_json::Value>,
    /// Whether the step is in the final image's chain (what `mode=min` keeps).
    pub in_final_chain: bool,
}

/// What one export did.
#[derive(Debug, Clone)]
pub struct ExportReport {
    pub location: String,
    pub steps: usize,
    pub layers: usize,
    /// Blobs that had to be sent (uploaded to a registry or copied to a directory).
    pub sent: usize,
    pub elapsed: Duration,
}

/// Where and how exports reach registries.
pub struct ExportTarget<'a> {
    pub store: &'a Store,
    pub remote: Option<&'a RemoteCache>,
    pub platform: rbuild_store::Platform,
    pub registry_access: RegistryAccess,
    /// The build's cache mounts as layers in a compression, for `mounts=true`.
    pub mount_layers:
        &'a dyn Fn(rbuild_store::Compression) -> Result<Vec<CachedMount>, RemoteCacheError>,
}

/// Runs every export in `exports` over `steps`, one after the other; each
/// gives its report or its error (the caller decides, by `ignore_error`,
/// whether that fails the build). `log` gets a line per blob pushed.
pub fn export_caches(
    target: &ExportTarget<'_>,
    exports: &[CacheExport],
    steps: &[ExportedStep],
    log: &mut dyn FnMut(String),
) -> Vec<Result<ExportReport, RemoteCacheError>> {
    exports
        .iter()
        .map(|export| export_one(target, export, steps, log))
        .collect()
}

fn export_one(
    target: &ExportTarget<'_>,
    export: &CacheExport,
    steps: &[ExportedStep],
    log: &mut dyn FnMut(String),
) -> Result<ExportReport, RemoteCacheError> {
    let started = Instant::now();
    let location = export.location.to_string();
    let store_error = |action: &'static str| {
        let location = location.clone();
        move |source| RemoteCacheError::Store {
            action,
            location,
            source,
        }
    };
    let wanted = steps
        .iter()
        .filter(|s| export.mode == CacheMode::Max || s.in_final_chain);
    let needs_bytes = matches!(export.location, CacheLocation::Local(_));
    let mut cached = Vec::new();
    for step in wanted {
        if cached.iter().any(|c: &CachedStep| c.key == step.key) {
            continue;
        }
        let mut record = step.record.clone();
        record.last_used = None;
        if let Some(layer) = &record.layer {
            record.layer = Some(exported_layer(target, layer, export, needs_bytes).map_err(
                |e| match e {
                    LayerError::Store(source) => store_error("compressing a layer for")(source),
                    LayerError::Remote(e) => e,
                },
            )?);
        }
        cached.push(CachedStep {
            key: step.key.clone(),
            record,
            identity: step.identity.clone(),
            inputs: step.inputs.clone(),
        });
    }
    let mounts = if export.mounts {
        (target.mount_layers)(export.compression.compression)?
    } else {
        Vec::new()
    };
    let config = CacheConfig::new(cached, mounts);
    let layers = config.layers().len();
    let steps_count = config.steps.len();
    let sent = match &export.location {
        CacheLocation::Local(dir) => {
            let before: usize = config
                .layers()
                .iter()
                .filter(|(l, _)| !dir.join("blobs/sha256").join(l.digest.hex()).is_file())
                .count();
            cache_layout::write_cache_layout(target.store, dir, &config)
                .map_err(store_error("writing"))?;
            before
        }
        CacheLocation::Registry(reference) => {
            let config_json = config.to_json();
            let manifest = config.manifest(&config_json);
            let config_digest = target
                .store
                .write_blob(&config_json)
                .map_err(store_error("writing"))?;
            let mut blobs: Vec<(Digest, u64)> = config
                .layers()
                .into_iter()
                .map(|(l, _)| (l.digest, l.size))
                .collect();
            blobs.push((config_digest, config_json.len() as u64));
            let registry_error = |source| RemoteCacheError::Registry {
                action: "exporting",
                location: location.clone(),
                source: Box::new(source),
            };
            let registry =
                open_registry(target.platform.clone(), target.registry_access.clone())
                    .map_err(registry_error)?;
            let pushed =
                registry
                    .push_manifest(target.store, blobs, manifest, reference, &mut |event| {
                        match event {
                            PushEvent::Retrying {
                                step,
                                attempt,
                                reason,
                            } => log(format!(
                                "cache {}: {step}: {reason}; trying again (attempt {})",
                                reference.full(),
                                attempt + 1
                            )),
                            PushEvent::Mounted { digest, from } => log(format!(
                                "cache {}: {digest}: mounted from {from}",
                                reference.full()
                            )),
                            PushEvent::Exists { .. } | PushEvent::Uploaded { .. } => {}
                        }
                    })
                    .map_err(registry_error)?;
            pushed.uploaded
        }
    };
    Ok(ExportReport {
        location,
        steps: steps_count,
        layers,
        sent,
        elapsed: started.elapsed(),
    })
}

enum LayerError {
    Store(rbuild_store::StoreError),
    Remote(RemoteCacheError),
}

/// `layer` as the export writes it: in the export's compression, converted
/// (once, remembered) when it is stored otherwise. A layer the store has only
/// by descriptor is fetched when its bytes are needed: for a directory, or to
/// convert it.
fn exported_layer(
    target: &ExportTarget<'_>,
    layer: &Layer,
    export: &CacheExport,
    needs_bytes: bool,
) -> Result<Layer, LayerError> {
    let as_is = layer.compression() == Some(export.compression.compression);
    if !target.store.has_blob(&layer.digest) && (needs_bytes || !as_is) {
        let remote = target.remote.ok_or_else(|| {
            LayerError::Remote(RemoteCacheError::NoOrigin {
                digest: layer.digest.clone(),
            })
        })?;
        remote.ensure_blob(layer).map_err(LayerError::Remote)?;
    }
    if as_is {
        return Ok(layer.clone());
    }
    target
        .store
        .convert_layer(layer, export.compression)
        .map_err(LayerError::Store)
}
