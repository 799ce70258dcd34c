//! The step cache around step execution: every step gets a content-hash key;
//! a step whose key has a record is not run, its layer and history entry are
//! reused; a step that runs leaves a record for later builds. Misses can be
//! explained (`--explain-cache`).

use rbuild_frontend::graph::{CopyOp, MountKind, Op, RunOp, Source, Step, StepId};
use rbuild_store::config::History;
use rbuild_store::{CacheRecord, Digest};

use super::step::{StepInputs, StepRunner};
use super::step_cache::{StepCache, StepResult};
use super::state::{FsState, LayerRef};
use crate::engine::cache::{self, CacheKey, KeyInputs, SourceDigest, SourceKind, StepIdentity};
use crate::engine::error::BuildError;
use crate::engine::fileops::selection::Selection;
use crate::engine::fileops::CopyFrom;

impl StepRunner {
    /// Runs step `id`, or reuses its cached result.
    pub fn execute_cached(&self, id: StepId, inputs: StepInputs, number: Option<usize>) -> Result<StepResult, BuildError> {
        let Some(cache) = self.cache.as_ref() else {
            let state = self.execute(id, inputs, number)?;
            return Ok(StepResult { state, cached: false });
        };
        let step = self.graph.step(id);
        let (input, selection) = match self.source_digest(cache, id, step, &inputs, Selecting::CachedOnly) {
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
        // The step's own platform: a `FROM --platform=$BUILDPLATFORM` stage has the same
        // keys whatever the build's target, and stages for two targets never share one.
        let params = cache.params.for_platform(self.graph.step_platform(step));
        // A COPY proven unchanged from the stat cache alone kept no selection.
        let kept_nothing = matches!(step.op, Op::Copy(_)) && input.is_some() && selection.is_none();
        let (mut key, mut key_inputs) = cache::key_for_step(step, parent_key.as_ref(), input.as_ref(), &params);
        if matches!(step.op, Op::Source(_)) {
            let mut state = self.execute(id, inputs, number)?;
            state.key = Some(key);
            return Ok(StepResult { state, cached: false });
        }

        let lock = cache.in_flight_lock(&key);
        let _running = lock.lock().unwrap_or_else(|p| p.into_inner());
        if cache.may_use(&self.graph, step) {
            let record = cache::lookup(&cache.index, &key).map_err(BuildError::from)?;
            if let Some(record) = record {
                if cache.exported.is_some() {
                    let identity = StepIdentity::of(&self.graph, id, &cache.dockerfile).map(|i| i.digest());
                    cache.note_for_export(id, &key, &record, identity, serde_json::to_value(&key_inputs).ok());
                }
                let state = self.state_from_record(inputs.parent.unwrap_or_default(), &record, key)?;
                return Ok(StepResult { state, cached: true });
            }
            // A hit in an imported cache: its layer is used by descriptor, fetched
            // only when something needs its bytes (see `ensure_present`).
            if let Some(remote) = cache.remote.as_ref().and_then(|r| r.get(key.digest())) {
                cache.note_for_export(id, &key, &remote.record, remote.identity.clone(), remote.inputs.clone());
                let state = self.state_from_record(inputs.parent.unwrap_or_default(), &remote.record, key)?;
                return Ok(StepResult { state, cached: true });
            }
        }
        let mut selection = selection;
        if kept_nothing {
            // The step runs: select again, keeping the entries for the copy and the
            // record. The key is the same unless the tree changed since.
            let Ok((input, kept)) = self.source_digest(cache, id, step, &inputs, Selecting::All) else {
                let state = self.execute(id, inputs, number)?;
                return Ok(StepResult { state, cached: false });
            };
            (key, key_inputs) = cache::key_for_step(step, parent_key.as_ref(), input.as_ref(), &params);
            selection = kept;
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
        let record = self.record(cache, &key, &key_inputs, identity.as_ref(), &state, layers_before)?;
        cache.note_for_export(id, &key, &record, identity.map(|i| i.digest()), serde_json::to_value(&key_inputs).ok());
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
        selecting: Selecting,
    ) -> Result<(Option<SourceDigest>, Option<Selection>), BuildError> {
        match &step.op {
            Op::Source(Source::Image(reference)) => {
                let image = self.store.lookup(reference)?;
                Ok((image.map(|i| SourceDigest::image(&i.config_digest)), None))
            }
            Op::Copy(copy) => {
                let from = self.graph.copy_from(id).expect("lowering gives every COPY an input");
                self.ensure_present(inputs.copy_from.as_ref())?;
                let rootfs = inputs.copy_from.clone().unwrap_or_default().rootfs();
                let source = self.copy_source(from, &rootfs)?;
                if selecting == Selecting::CachedOnly {
                    if let Some(digest) = self.digest_cached_sources(cache, copy, source)? {
                        return Ok((Some(digest), None));
                    }
                }
                let (digest, selection) = self.digest_sources(cache, copy, source)?;
                Ok((Some(digest), Some(selection)))
            }
            Op::Run(run) if !inputs.mounts.is_empty() => Ok((Some(self.mounts_digest(cache, run, inputs)?), None)),
            _ => Ok((None, None)),
        }
    }

    /// COPY's selection of `copy` from `from` and its digest, with the stat cache of the tree
    /// it reads: the context's, or the snapshot directory for a stage or an image.
    fn digest_sources(&self, cache: &StepCache, copy: &CopyOp, from: CopyFrom<'_>) -> Result<(SourceDigest, Selection), BuildError> {
        Ok(cache.with_stat_cache(&stat_tree(&self.store, from), |stats| cache::digest_copy_sources(copy, from, stats))?)
    }

    /// [`StepRunner::digest_sources`] when every selected file is in the stat cache,
    /// keeping no entry (`None` otherwise).
    fn digest_cached_sources(&self, cache: &StepCache, copy: &CopyOp, from: CopyFrom<'_>) -> Result<Option<SourceDigest>, BuildError> {
        Ok(cache.with_stat_cache(&stat_tree(&self.store, from), |stats| cache::digest_cached_selection(copy, from, stats))?)
    }

    /// What a RUN's bind mounts read, as COPY's selection digests of their sources, in one
    /// digest. A cache mount's `from=` seeds a new cache only and is not part of it: a cache
    /// mount's contents never are.
    fn mounts_digest(&self, cache: &StepCache, run: &RunOp, inputs: &StepInputs) -> Result<SourceDigest, BuildError> {
        let mut parts = Vec::new();
        let mut files = Vec::new();
        let mut kind = SourceKind::Context;
        for input in &inputs.mounts {
            let MountKind::Bind { source, .. } = &run.mounts[input.index].kind else { continue };
            self.ensure_present(input.state.as_ref())?;
            let copy = CopyOp::plain(&[source.as_str()], "/m");
            let rootfs = input.state.clone().unwrap_or_default().rootfs();
            let (digest, _) = self.digest_sources(cache, &copy, self.copy_source(input.source, &rootfs)?)?;
            parts.push(format!("{} {} {}\n", input.index, digest.kind.as_str(), digest.digest));
            kind = digest.kind;
            files.extend(digest.files.iter().cloned());
        }
        Ok(SourceDigest {
            kind,
            digest: Digest::of_bytes(parts.concat().as_bytes()),
            files: std::sync::Arc::new(files),
            stats: Default::default(),
        })
    }

    fn state_from_record(&self, mut state: FsState, record: &CacheRecord, key: CacheKey) -> Result<FsState, BuildError> {
        if let Some(layer) = &record.layer {
            // A layer only an imported cache has stays there until its bytes are needed.
            let snapshot = if self.store.has_blob(&layer.digest) || self.store.has_snapshot(&layer.diff_id) {
                self.store.ensure_snapshot(layer)?
            } else {
                self.store.snapshot_path(&layer.diff_id)
            };
            state.layers.push(LayerRef { layer: layer.clone(), snapshot });
        }
        if let Some(created_by) = &record.created_by {
            // With SOURCE_DATE_EPOCH every time is that epoch, cached or not.
            let created = if self.settings.source_date_epoch.is_some() { Some(self.created.clone()) } else { record.created.clone() };
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
    ) -> Result<CacheRecord, BuildError> {
        let layer = (state.layers.len() > layers_before).then(|| state.layers[state.layers.len() - 1].layer.clone());
        let history = state.history.last();
        let record = CacheRecord {
            layer,
            created_by: history.and_then(|h| h.created_by.clone()),
            empty_layer: history.is_some_and(|h| h.empty_layer),
            created: history.and_then(|h| h.created.clone()),
            last_used: None,
        };
        cache::record(&cache.index, key, &record, identity, inputs).map_err(BuildError::from)?;
        Ok(record)
    }

    /// Makes every layer of `state` present: blob and snapshot. A layer a hit
    /// in an imported cache left known only by descriptor is fetched now,
    /// because a step is about to read its files.
    pub(super) fn ensure_present(&self, state: Option<&FsState>) -> Result<(), BuildError> {
        let Some(state) = state else { return Ok(()) };
        for layer in &state.layers {
            self.ensure_layer_blob(&layer.layer)?;
            if !self.store.has_snapshot(&layer.layer.diff_id) {
                self.store.ensure_snapshot(&layer.layer)?;
            }
        }
        Ok(())
    }

    /// Makes sure the store has `layer`'s blob, fetching it from the imported cache
    /// that holds it.
    pub(super) fn ensure_layer_blob(&self, layer: &rbuild_store::Layer) -> Result<(), BuildError> {
        if self.store.has_blob(&layer.digest) || self.store.has_snapshot(&layer.diff_id) {
            return Ok(());
        }
        match self.cache.as_ref().and_then(|c| c.remote.as_ref()) {
            Some(remote) => Ok(remote.ensure_blob(layer)?),
            None => Err(rbuild_store::StoreError::BlobNotFound { digest: layer.digest.clone() }.into()),
        }
    }
}

/// How much of a COPY's selection to keep while computing its digest.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Selecting {
    /// Nothing, when the stat cache knows every file (a step that then hits needs no
    /// more); else as [`Selecting::All`].
    CachedOnly,
    /// Every entry, for the copy to write what the key covers.
    All,
}

/// The tree whose stat cache covers what `from` reads: the context's, or the snapshot
/// directory for a stage or an image.
fn stat_tree(store: &rbuild_store::Store, from: CopyFrom<'_>) -> std::path::PathBuf {
    match from {
        CopyFrom::Context(context) => context.root().to_path_buf(),
        CopyFrom::Image(_) => store.root().join("snapshots"),
    }
}
