//! Executes a lowered build graph: steps run as soon as their inputs are
//! ready (independent stages in parallel), each filesystem change becomes a
//! layer in the store, and the target stage becomes an image.

mod cached;
mod named_context;
pub(crate) mod run_mounts;
mod scheduler;
mod state;
mod step;
mod step_cache;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use rbuild_frontend::graph::{BuildGraph, Op, Source, StepId};
use rbuild_store::config::ImageConfig;
use rbuild_store::{Layer, Store, StoredImage};

pub use scheduler::StepTiming;
pub use state::{FsState, LayerRef};
pub use step::SharedProgress;
pub use step_cache::StepCache;

use crate::engine::error::BuildError;
use crate::engine::remote_cache::{restore_mounts, ExportedStep, RemoteCache};
use crate::engine::settings::BuildSettings;
use crate::engine::timefmt;
use step::StepRunner;

/// One build's execution: the graph the settings' Dockerfile lowered to, run in a store.
pub struct Executor {
    pub settings: Arc<BuildSettings>,
    pub store: Store,
    pub graph: Arc<BuildGraph>,
    pub progress: SharedProgress,
    /// The directories `COPY --from` named with `--build-context NAME=DIR`, by that name.
    pub named_directories: BTreeMap<String, PathBuf>,
}

/// The result of a build: the image, the target's filesystem, and how long
/// each step took.
pub struct Built {
    pub image: StoredImage,
    pub state: FsState,
    pub timings: Vec<StepTiming>,
    /// The steps `--cache-to` exports (empty when there is none).
    pub exported: Vec<ExportedStep>,
    /// The caches `--cache-from` imported, which fetch what the image's layers lack.
    pub remote: Option<Arc<RemoteCache>>,
}

impl Executor {
    pub fn run(self) -> Result<Built, BuildError> {
        let cache = Arc::new(step_cache(&self.settings, &self.store, &self.graph.platform, &self.progress)?);
        self.run_with_cache(cache)
    }

    /// Runs with `cache`, which the builds of the other platforms of one
    /// multi-platform build share: a step they have in common (same key, as a
    /// `FROM --platform=$BUILDPLATFORM` stage's steps are) runs once, the
    /// others waiting for it and reusing its result; and the stat caches hash
    /// the context once.
    pub fn run_with_cache(self, cache: Arc<StepCache>) -> Result<Built, BuildError> {
        let created = timefmt::rfc3339(self.settings.source_date_epoch.unwrap_or_else(timefmt::now_unix));
        let config_steps = self.progress.lock().unwrap_or_else(|p| p.into_inner()).shows_config_steps();
        let visible = Arc::new(visible_steps(&self.graph, config_steps));
        let runner = Arc::new(StepRunner::new(
            self.settings.clone(),
            self.store.clone(),
            self.graph.clone(),
            self.progress.clone(),
            created.clone(),
            named_context::NamedContexts::new(&self.named_directories),
            Some(cache),
        ));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(512)
            .enable_all()
            .build()
            .map_err(|e| BuildError::Io { action: "starting the scheduler".into(), source: e })?;
        let target = self.graph.target_stage();
        let outcome = runtime.block_on(scheduler::schedule(runner.clone(), visible, self.settings.limits, target.last));
        // Also after a failed build: the steps before the failure stay cached.
        let saved = runner.cache.as_ref().map_or(Ok(()), |cache| cache.save());
        let mut outcome = outcome?;
        saved?;

        let state = outcome.states.remove(&target.last).expect("the target stage was built");
        let mut config = state.base_config.as_deref().cloned().unwrap_or_else(ImageConfig::for_host);
        // The target stage's platform: the build's, unless its FROM names another.
        config.os = target.platform.os.clone();
        config.architecture = target.platform.architecture.clone();
        config.variant = target.platform.variant.clone();
        let mut meta = target.image.clone();
        meta.labels.extend(self.settings.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        config.set_meta(&meta);
        // The newest history time: a fully cached rebuild reuses every
        // step's original time, so it gives the same image id.
        let newest = state.history.iter().filter_map(|h| h.created.clone()).max();
        config.created = Some(newest.unwrap_or(created));
        config.history = state.history.iter().cloned().collect();
        config.rootfs.diff_ids = state.layers.iter().map(|l| l.layer.diff_id.clone()).collect();
        let layers: Vec<Layer> = state.layers.iter().map(|l| l.layer.clone()).collect();
        let remote = runner.cache.as_ref().and_then(|c| c.remote.clone());
        let image = self.put_image(&config, &layers, remote.as_deref())?;
        let exported = runner.cache.as_ref().map(|c| exported_steps(c, &self.graph, target.last)).unwrap_or_default();
        Ok(Built { image, state, timings: outcome.timings, exported, remote })
    }

    /// Stores the image. Its layers that hits in an imported cache left known only by
    /// descriptor stay so when they came from a registry (recorded as their source, see
    /// `Store::put_image_by_descriptor`); those of a cache directory are copied in.
    fn put_image(&self, config: &ImageConfig, layers: &[Layer], remote: Option<&RemoteCache>) -> Result<StoredImage, BuildError> {
        let Some(remote) = remote else { return Ok(self.store.put_image(config, layers)?) };
        for layer in layers.iter().filter(|l| !self.store.has_blob(&l.digest) && remote.from_directory(l)) {
            remote.ensure_blob(layer)?;
        }
        Ok(self.store.put_image_by_descriptor(config, layers)?)
    }
}

/// A step cache for the builds of `settings`; `platform` is the build's (each
/// step's key names its own stage's platform). With `--cache-from`, the shared
/// caches are read into it (their warnings and timing go to `progress`).
pub fn step_cache(
    settings: &BuildSettings,
    store: &Store,
    platform: &rbuild_frontend::graph::Platform,
    progress: &SharedProgress,
) -> Result<StepCache, BuildError> {
    let params = crate::engine::cache::KeyParams {
        platform: platform.clone(),
        source_date_epoch: settings.source_date_epoch,
        default_network: settings.network,
    };
    let mut cache = StepCache::new(store, params, settings.cache_policy.clone(), settings.explain_cache, settings.dockerfile_identity())?;
    if !settings.cache_from.is_empty() {
        let mut progress = progress.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        let remote = RemoteCache::import(
            store,
            &cache.index,
            &settings.cache_from,
            platform.clone(),
            settings.registry_access.clone(),
            &mut |warning| progress.warning(warning),
        );
        progress.cache_imported(remote.step_count(), started.elapsed());
        let mounts = settings.cache_mounts(store.root());
        match restore_mounts(store, &remote, &mounts) {
            Ok(ids) if !ids.is_empty() => progress.info(&format!("restored cache mounts from the cache: {}", ids.join(", "))),
            Ok(_) => {}
            Err(e) => progress.warning(&format!("{e}: the build starts without them")),
        }
        cache.remote = Some(Arc::new(remote));
    }
    if !settings.cache_to.is_empty() {
        cache.exported = Some(Default::default());
    }
    Ok(cache)
}

/// The steps the build noted for `--cache-to`, each once, marked when they are in the
/// chain of `last` (the final image's step), which `mode=min` exports.
fn exported_steps(cache: &step_cache::StepCache, graph: &BuildGraph, last: StepId) -> Vec<ExportedStep> {
    let Some(noted) = &cache.exported else { return Vec::new() };
    let mut chain = HashSet::new();
    let mut at = Some(last);
    while let Some(id) = at {
        chain.insert(id);
        at = graph.parent(id);
    }
    let mut noted = std::mem::take(&mut *noted.lock().unwrap_or_else(|p| p.into_inner()));
    noted.sort_by_key(|(id, _)| id.index());
    noted
        .into_iter()
        .map(|(id, step)| ExportedStep { in_final_chain: chain.contains(&id), ..step })
        .collect()
}

/// The steps progress shows (`#1`, `#2`, …): the Dockerfile's instructions
/// and base images.
fn visible_steps(graph: &BuildGraph, config_steps: bool) -> HashSet<StepId> {
    graph
        .graph
        .node_indices()
        .filter(|id| {
            let step = graph.step(*id);
            let shown = config_steps || !matches!(step.op, Op::Config);
            shown && (step.location.is_some() || matches!(step.op, Op::Source(Source::Image(_))))
        })
        .collect()
}
