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
}

impl Executor {
    pub fn run(self) -> Result<Built, BuildError> {
        let cache = Arc::new(step_cache(&self.settings, &self.store, &self.graph.platform)?);
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
        let image = self.store.put_image(&config, &layers)?;
        Ok(Built { image, state, timings: outcome.timings })
    }
}

/// A step cache for the builds of `settings`; `platform` is the build's (each
/// step's key names its own stage's platform).
pub fn step_cache(settings: &BuildSettings, store: &Store, platform: &rbuild_frontend::graph::Platform) -> Result<StepCache, BuildError> {
    let params = crate::engine::cache::KeyParams {
        platform: platform.clone(),
        source_date_epoch: settings.source_date_epoch,
        default_network: settings.network,
    };
    StepCache::new(store, params, settings.cache_policy.clone(), settings.explain_cache, settings.dockerfile_identity())
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
