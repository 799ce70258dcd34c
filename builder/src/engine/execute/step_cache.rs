//! The step cache of one build: the cache index, the stat caches of the trees steps read,
//! and which steps may use what it holds. How a step uses it is in `cached`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rbuild_frontend::graph::{BuildGraph, Step, StepId};
use rbuild_store::{CacheIndex, CacheRecord, Digest, StatCache, Store};

use super::state::FsState;
use crate::engine::cache::{CacheKey, KeyParams};
use crate::engine::error::BuildError;
use crate::engine::remote_cache::{ExportedStep, RemoteCache};
use crate::engine::settings::CachePolicy;

/// The cache of one build.
pub struct StepCache {
    pub(super) store: Store,
    pub(super) index: CacheIndex,
    pub(super) params: KeyParams,
    pub(super) policy: CachePolicy,
    pub(super) explain: bool,
    /// How explanations name the Dockerfile.
    pub(super) dockerfile: String,
    /// Stat caches by the tree they describe (the context, named contexts,
    /// the snapshot directory), saved when the build ends.
    pub(super) stat_caches: Mutex<HashMap<std::path::PathBuf, StatCache>>,
    /// Keys being computed right now: identical steps of two stages wait for
    /// one another, so the second finds the first's record instead of running.
    pub(super) in_flight: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
    /// The caches `--cache-from` imported.
    pub(super) remote: Option<Arc<RemoteCache>>,
    /// The steps this build ran or found cached, by step, kept for `--cache-to`
    /// (`None` when nothing is exported).
    pub(super) exported: Option<Mutex<Vec<(StepId, ExportedStep)>>>,
}

/// What a step turned into, and whether it came from the cache.
pub struct StepResult {
    pub state: FsState,
    pub cached: bool,
}

impl StepCache {
    pub fn new(store: &Store, params: KeyParams, policy: CachePolicy, explain: bool, dockerfile: String) -> Result<StepCache, BuildError> {
        Ok(StepCache {
            store: store.clone(),
            index: store.cache_index()?,
            params,
            policy,
            explain,
            dockerfile,
            stat_caches: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            remote: None,
            exported: None,
        })
    }

    /// Notes what step `id` left under `key`, for `--cache-to`.
    pub(super) fn note_for_export(&self, id: StepId, key: &CacheKey, record: &CacheRecord, identity: Option<Digest>, inputs: Option<serde_json::Value>) {
        let Some(exported) = &self.exported else { return };
        let step = ExportedStep { key: key.digest().clone(), record: record.clone(), identity, inputs, in_final_chain: false };
        exported.lock().unwrap_or_else(|p| p.into_inner()).push((id, step));
    }

    /// Saves the stat caches, so the next build does not re-read unchanged
    /// files, and makes the build's cache records durable.
    pub fn save(&self) -> Result<(), BuildError> {
        let mut caches = self.stat_caches.lock().unwrap_or_else(|p| p.into_inner());
        for cache in caches.values_mut() {
            let _ = cache.save();
        }
        Ok(self.index.sync()?)
    }

    pub(super) fn with_stat_cache<T>(&self, tree: &Path, f: impl FnOnce(&mut StatCache) -> T) -> T {
        let mut caches = self.stat_caches.lock().unwrap_or_else(|p| p.into_inner());
        let cache = caches.entry(tree.to_path_buf()).or_insert_with(|| {
            let scope = tree.canonicalize().unwrap_or_else(|_| tree.to_path_buf());
            self.store.stat_cache(&scope).unwrap_or_else(|_| StatCache::in_memory())
        });
        f(cache)
    }

    pub(super) fn may_use(&self, graph: &BuildGraph, step: &Step) -> bool {
        match &self.policy {
            CachePolicy::Use => true,
            CachePolicy::Ignore => false,
            CachePolicy::IgnoreStages(stages) => {
                let Some(index) = step.stage else { return true };
                let name = graph.stages.iter().find(|s| s.index == index).and_then(|s| s.name.clone());
                !(stages.contains(&index.to_string()) || name.is_some_and(|n| stages.contains(&n)))
            }
        }
    }

    pub(super) fn in_flight_lock(&self, key: &CacheKey) -> Arc<Mutex<()>> {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.digest().clone()).or_default().clone()
    }
}
