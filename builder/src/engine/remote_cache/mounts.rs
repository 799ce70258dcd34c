//! `mounts=true`: the cache mounts a build used (`RUN --mount=type=cache`) travel in the
//! exported cache as extra layers, one per id (annotated with it, see `cache_manifest`), and an
//! import puts each in place when the runner has no cache mount of that id yet.

use std::path::Path;

use rbuild_frontend::graph::{BuildGraph, MountKind, Op};
use rbuild_store::cache_manifest::CachedMount;
use rbuild_store::{Compression, LayerOptions, Store};

use super::{RemoteCache, RemoteCacheError};
use crate::engine::cache_mounts::CacheMounts;

/// The ids of the cache mounts the RUN steps of `graph` use, each once.
pub fn cache_mount_ids(graph: &BuildGraph) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for id in graph.graph.node_indices() {
        let Op::Run(run) = &graph.step(id).op else {
            continue;
        };
        for mount in &run.mounts {
            if let MountKind::Cache { id, .. } = &mount.kind {
                if !ids.contains(id) {
                    ids.push(id.clone());
                }
            }
        }
    }
    ids
}

/// The cache mounts `ids` that exist in `mounts`, each written as a layer in `compression`
/// (content-addressed: an unchanged mount is the same blob, which the registry has).
pub fn mount_layers(
    store: &Store,
    mounts: &CacheMounts,
    ids: &[String],
    compression: Compression,
) -> Result<Vec<CachedMount>, RemoteCacheError> {
    let mut out = Vec::new();
    for id in ids {
        let Some(dir) = mounts.find(id) else { continue };
        let options = LayerOptions {
            compression,
            ..LayerOptions::default()
        };
        let layer = store
            .write_layer(&dir.join("data"), &options)
            .map_err(|source| RemoteCacheError::Store {
                action: "writing the cache mount of",
                location: id.clone(),
                source,
            })?;
        out.push(CachedMount {
            id: id.clone(),
            layer,
        });
    }
    Ok(out)
}

/// Puts the cache mounts the imported caches carry in place where `mounts` has none of that
/// id; returns the ids restored. A local cache mount always wins: it is this runner's newer state.
pub fn restore_mounts(
    store: &Store,
    remote: &RemoteCache,
    mounts: &CacheMounts,
) -> Result<Vec<String>, RemoteCacheError> {
    let mut restored = Vec::new();
    for mount in remote.mounts() {
        if mounts.find(&mount.id).is_some() || restored.contains(&mount.id) {
            continue;
        }
        remote.ensure_blob(&mount.layer)?;
        let failed = |source: std::io::Error| RemoteCacheError::MountIo {
            id: mount.id.clone(),
            source,
        };
        std::fs::create_dir_all(mounts.root()).map_err(failed)?;
        // Unpacked beside the mounts, so that putting it in place is a rename.
        let staging = tempfile::Builder::new()
            .prefix(".import-")
            .tempdir_in(mounts.root())
            .map_err(failed)?;
        let data = staging.path().join("data");
        unpack(store, &mount.layer, &data).map_err(|e| match e {
            UnpackError::Store(source) => RemoteCacheError::Store {
                action: "restoring a cache mount from",
                location: mount.id.clone(),
                source,
            },
            UnpackError::Io(source) => failed(source),
        })?;
        mounts.install(&mount.id, &data).map_err(failed)?;
        restored.push(mount.id.clone());
    }
    Ok(restored)
}

fn unpack(store: &Store, layer: &rbuild_store::Layer, dest: &Path) -> Result<(), UnpackError> {
    let (file, _) = store.open_blob(&layer.digest)?;
    let reader = rbuild_store::compress::auto_decoder(file)?;
    std::fs::create_dir_all(dest)?;
    rbuild_store::unpack_layer_tar(reader, dest)?;
    Ok(())
}

enum UnpackError {
    Store(rbuild_store::StoreError),
    Io(std::io::Error),
}

impl From<rbuild_store::StoreError> for UnpackError {
    fn from(e: rbuild_store::StoreError) -> Self {
        UnpackError::Store(e)
    }
}

impl From<std::io::Error> for UnpackError {
    fn from(e: std::io::Error) -> Self {
        UnpackError::Io(e)
    }
}
