//! The filesystem and history a step leaves for the steps that build on it.

use std::path::PathBuf;
use std::sync::Arc;

use rbuild_store::config::{History, ImageConfig};
use rbuild_store::Layer;

use crate::engine::fileops::Rootfs;

/// A layer of a filesystem state with the snapshot that holds its files.
#[derive(Debug, Clone)]
pub struct LayerRef {
    pub layer: Layer,
    pub snapshot: PathBuf,
}

/// The filesystem and history after a step. A state is cloned for each step
/// that builds on it, so the parts that grow with the number of steps are
/// shared, not copied: a step costs the same whether it is the 10th or the
/// 100,000th.
#[derive(Debug, Clone, Default)]
pub struct FsState {
    pub layers: Vec<LayerRef>,
    /// Shares its entries with the parent state's history.
    pub history: rpds::VectorSync<History>,
    /// The config of the base image the chain started from, if any.
    pub base_config: Option<Arc<ImageConfig>>,
    /// The step cache key of this state (`None` when the cache is off).
    pub key: Option<crate::engine::cache::CacheKey>,
}

impl FsState {
    pub fn rootfs(&self) -> Rootfs {
        Rootfs {
            layers: self.layers.iter().map(|l| l.snapshot.clone()).collect(),
        }
    }
}
