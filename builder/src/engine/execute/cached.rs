//! The step cache around step execution: every step gets a content-hash key;
//! a step whose key has a record is not run, its layer and history entry are
//! reused; a step that runs leaves a record for later builds. Misses can be
//! explained (`--explain-cache`).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rbuild_frontend::graph::{Op, Source, Step, StepId};
use rbuild_store::config::History;
use rbuild_store::{CacheIndex, CacheRecord, Digest, StatCache, Store};

use super::step::{StepInputs, StepRunner};
use super::{FsState, LayerRef};
use crate::engine::cache::{self, CacheKey, KeyInputs, KeyParams, SourceDigest, StepIdentity};
use crate::engine::error::BuildError;
use crate::engine::fileops::selection::Selection;
use crate::engine::fileops::CopyFrom;

/// Which steps may use cached results.
#[derive(Debug, Clone, Default)]
pub enum CachePolicy {
    /// Every step.
    #[default]
    Use,
    /// None (`--no-cache`); results are still recorded.
    Ignore,
    /// All but the steps of these stages (`--no-cache-filter`, names or indexes).
    IgnoreStages(HashSet<String>),
}

/// The cache of one build.
pub struct StepCache {
    store: Store,
    index: CacheIndex,
    params: KeyParams,
    policy: CachePolicy,
    explain: bool,
    /// How explanations name the Dockerfile.
    dockerfile: String,
    /// Stat caches by the tree they describe (the context, named contexts,
    /// the snapshot directory), saved when the build ends.
    stat_caches: Mutex<HashMap<std::path::PathBuf, StatCache>>,
    /// Keys being computed right now: identical steps of two stages wait for
    /// one another, so the second finds the first's record instead of running.
    in_flight: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
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
            index: CacheIndex::open(store)?,
            params,
            policy,
            explain,
            dockerfile,
            stat_caches: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        })
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

    fn with_stat_cache<T>(&self, tree: &Path, f: impl FnOnce(&mut StatCache) -> T) -> T {
        let mut caches = self.stat_caches.lock().unwrap_or_else(|p| p.into_inner());
        let cache = caches.entry(tree.to_path_buf()).or_insert_with(|| {
            let scope = tree.canonicalize().unwrap_or_else(|_| tree.to_path_buf());
            StatCache::open(&self.store, &scope).unwrap_or_else(|_| StatCache::in_memory())
        });
        f(cache)
    }

    fn may_use(&self, runner: &StepRunner, step: &Step) -> bool {
        match &self.policy {
            CachePolicy::Use => true,
            CachePolicy::Ignore => false,
            CachePolicy::IgnoreStages(stages) => {
                let Some(index) = step.stage else { return true };
                let name = runner.graph.stages.iter().find(|s| s.index == index).and_then(|s| s.name.clone());
                !(stages.contains(&index.to_string()) || name.is_some_and(|n| stages.contains(&n)))
            }
        }
    }

    fn in_flight_lock(&self, key: &CacheKey) -> Arc<Mutex<()>> {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.digest().clone()).or_default().clone()
    }
}

impl StepRunner {
    /// Runs step `id`, or reuses its cached result.
    pub fn execute_cached(&self, id: StepId, inputs: StepInputs, number: Option<usize>) -> Result<StepResult, BuildError> {
        let Some(cache) = self.cache.as_ref() else {
            let state = self.execute(id, inputs, number)?;
            return Ok(StepResult { state, cached: false });
        };
        let step = self.graph.step(id);
        let (input, selection) = match self.source_digest(cache, id, step, &inputs) {
            Ok(input) => input,
            // The step would fail the same way: let it run and report that.
            Err(_) => {
                let state = self.execute(id, inputs, number)?;
                return Ok(StepResult { state, cached: false });
            }
        };
        let parent_key = inputs.parent.as_ref().and_then(|p| p.key.clone());
        if inputs.parent.is_some() && parent_key.is_none() {
            // A parent without a key (it ran uncached) makes keys meaningless.
            let state = self.execute(id, inputs, number)?;
            return Ok(StepResult { state, cached: false });
        }
        let (key, key_inputs) = cache::key_for_step(step, parent_key.as_ref(), input.as_ref(), &cache.params);
        if matches!(step.op, Op::Source(_)) {
            let mut state = self.execute(id, inputs, number)?;
            state.key = Some(key);
            return Ok(StepResult { state, cached: false });
        }

        let lock = cache.in_flight_lock(&key);
        let _running = lock.lock().unwrap_or_else(|p| p.into_inner());
        if cache.may_use(self, step) {
            let record = cache::lookup(&cache.index, &key).map_err(|e| BuildError::Io(e.to_string()))?;
            if let Some(record) = record {
                let state = self.state_from_record(inputs.parent.unwrap_or_default(), &record, key)?;
                return Ok(StepResult { state, cached: true });
            }
        }
        let identity = StepIdentity::of(&self.graph, id, &cache.dockerfile);
        if cache.explain {
            if let (Some(identity), Some(n)) = (&identity, number) {
                let explanation = cache::explain_miss(&cache.index, identity, &key_inputs);
                self.progress().explain(n, &explanation.to_string());
            }
        }
        let layers_before = inputs.parent.as_ref().map_or(0, |p| p.layers.len());
        let mut inputs = inputs;
        if matches!(step.op, Op::Copy(_)) {
            inputs.earlier = identity.as_ref().and_then(|identity| self.earlier_layer_dir(cache, identity));
            inputs.selection = selection;
        }
        let mut state = self.execute(id, inputs, number)?;
        self.record(cache, &key, &key_inputs, identity.as_ref(), &state, layers_before)?;
        state.key = Some(key);
        Ok(StepResult { state, cached: false })
    }

    /// The snapshot of the newest earlier run of a step, if it is still there:
    /// a COPY that missed the cache links the files it would write unchanged.
    fn earlier_layer_dir(&self, cache: &StepCache, identity: &StepIdentity) -> Option<std::path::PathBuf> {
        let key = cache.index.newest_key(&identity.digest()).ok()??;
        let layer = cache.index.get(&key).ok()??.layer?;
        let dir = self.store.snapshot_path(&layer.diff_id);
        self.store.has_snapshot(&layer.diff_id).then_some(dir)
    }

    /// What the step reads besides its parent: the files a COPY/ADD selects
    /// (with the selection, for the copy to write), or the id of a base image.
    fn source_digest(
        &self,
        cache: &StepCache,
        id: StepId,
        step: &Step,
        inputs: &StepInputs,
    ) -> Result<(Option<SourceDigest>, Option<Selection>), BuildError> {
        match &step.op {
            Op::Source(Source::Image(reference)) => {
                let image = self.store.lookup(reference)?;
                Ok((image.map(|i| SourceDigest::image(&i.config_digest)), None))
            }
            Op::Copy(copy) => {
                let from = self.graph.copy_from(id).expect("lowering gives every COPY an input");
                let selected = match &self.graph.step(from).op {
                    Op::Source(Source::Context) => {
                        let context = self.context()?;
                        cache.with_stat_cache(context.root(), |stats| cache::digest_copy_sources(copy, CopyFrom::Context(context), stats))
                    }
                    Op::Source(Source::NamedContext(name)) => {
                        let context = self.named_context(name)?;
                        cache.with_stat_cache(context.root(), |stats| cache::digest_copy_sources(copy, CopyFrom::Context(context), stats))
                    }
                    _ => {
                        let rootfs = inputs.copy_from.clone().unwrap_or_default().rootfs();
                        let snapshots = self.store.root().join("snapshots");
                        cache.with_stat_cache(&snapshots, |stats| cache::digest_copy_sources(copy, CopyFrom::Image(&rootfs), stats))
                    }
                };
                let (digest, selection) = selected.map_err(|e| BuildError::Io(e.to_string()))?;
                Ok((Some(digest), Some(selection)))
            }
            _ => Ok((None, None)),
        }
    }

    fn state_from_record(&self, mut state: FsState, record: &CacheRecord, key: CacheKey) -> Result<FsState, BuildError> {
        if let Some(layer) = &record.layer {
            let snapshot = self.store.ensure_snapshot(layer)?;
            state.layers.push(LayerRef { layer: layer.clone(), snapshot });
        }
        if let Some(created_by) = &record.created_by {
            // With SOURCE_DATE_EPOCH every time is that epoch, cached or not.
            let created = if self.source_date_epoch.is_some() { Some(self.created.clone()) } else { record.created.clone() };
            state.history.push_back_mut(History {
                created,
                created_by: Some(created_by.clone()),
                comment: Some("buildkit.dockerfile.v0".to_string()),
                empty_layer: record.empty_layer,
                ..History::default()
            });
        }
        state.key = Some(key);
        Ok(state)
    }

    fn record(
        &self,
        cache: &StepCache,
        key: &CacheKey,
        inputs: &KeyInputs,
        identity: Option<&StepIdentity>,
        state: &FsState,
        layers_before: usize,
    ) -> Result<(), BuildError> {
        let layer = (state.layers.len() > layers_before).then(|| state.layers[state.layers.len() - 1].layer.clone());
        let history = state.history.last();
        let record = CacheRecord {
            layer,
            created_by: history.and_then(|h| h.created_by.clone()),
            empty_layer: history.is_some_and(|h| h.empty_layer),
            created: history.and_then(|h| h.created.clone()),
            last_used: None,
        };
        cache::record(&cache.index, key, &record, identity, inputs).map_err(|e| BuildError::Io(e.to_string()))
    }
}
