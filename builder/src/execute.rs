//! Executes a lowered build graph: every step in dependency order, each
//! filesystem change becoming a layer in the store, and the target stage
//! becoming an image.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use rbuild_frontend::graph::{BuildGraph, CopyOp, Op, RunOp, Source, Step, StepId};
use rbuild_frontend::instructions::Location;
use rbuild_store::config::{History, ImageConfig};
use rbuild_store::{Layer, LayerOptions, Store, StoredImage};

use crate::context::BuildContext;
use crate::error::BuildError;
use crate::fileops::{self, CopyFrom, CopyRequest, Rootfs};
use crate::image_meta::apply_meta;
use crate::progress::Progress;
use crate::sandbox::{self, Isolation, NetworkMode, RunSpec};
use crate::timefmt;

/// A layer of a filesystem state with the snapshot that holds its files.
#[derive(Debug, Clone)]
pub struct LayerRef {
    pub layer: Layer,
    pub snapshot: PathBuf,
}

/// The filesystem and history after a step.
#[derive(Debug, Clone, Default)]
pub struct FsState {
    pub layers: Vec<LayerRef>,
    pub history: Vec<History>,
    /// The config of the base image the chain started from, if any.
    pub base_config: Option<ImageConfig>,
}

impl FsState {
    pub fn rootfs(&self) -> Rootfs {
        Rootfs {
            layers: self.layers.iter().map(|l| l.snapshot.clone()).collect(),
        }
    }
}

/// Everything a build needs besides the graph.
pub struct Executor<'a> {
    pub store: &'a Store,
    pub graph: &'a BuildGraph,
    /// Where the build context lives; opened only if a step reads it.
    pub context_dir: PathBuf,
    pub dockerfile_path: Option<PathBuf>,
    /// The Dockerfile's name as errors show it.
    pub dockerfile_name: String,
    /// `SOURCE_DATE_EPOCH`: fixes image times and clamps file times.
    pub source_date_epoch: Option<i64>,
    /// The network of a RUN that does not say (`--network`).
    pub default_network: NetworkMode,
    pub isolation: Isolation,
    pub progress: &'a mut dyn Progress,
}

/// The result of a build: the image and the target's filesystem.
pub struct Built {
    pub image: StoredImage,
    pub state: FsState,
}

impl<'a> Executor<'a> {
    pub fn run(mut self, labels: &BTreeMap<String, String>) -> Result<Built, BuildError> {
        let created = self.source_date_epoch.unwrap_or_else(timefmt::now_unix);
        let created = timefmt::rfc3339(created);
        let mut context: Option<BuildContext> = None;
        let mut states: HashMap<StepId, FsState> = HashMap::new();
        let order = self.graph.execution_order();
        let numbered = self.step_numbers(&order);

        for id in order {
            let step = self.graph.step(id);
            let parent = self.graph.parent(id).map(|p| states[&p].clone());
            let number = numbered.get(&id).copied();
            let started = Instant::now();
            if let Some(n) = number {
                self.progress.step_started(n, &self.step_label(step));
            }
            let state = match &step.op {
                Op::Source(source) => self.source_state(source, step)?,
                Op::Config => with_history(parent.unwrap_or_default(), step, &created, true),
                Op::Workdir { path, user } => {
                    let parent = parent.unwrap_or_default();
                    let user = (!user.is_empty()).then_some(user.as_str());
                    let rootfs = parent.rootfs();
                    let layer = self.layer_from(step, |out| {
                        fileops::make_workdir(path, user, &rootfs, out).map_err(|e| e.to_string())
                    })?;
                    self.push_layer(parent, step, &created, layer)
                }
                Op::Copy(copy) => {
                    let parent = parent.unwrap_or_default();
                    let from = self
                        .graph
                        .copy_from(id)
                        .expect("lowering gives every COPY an input");
                    let layer = if matches!(self.graph.step(from).op, Op::Source(Source::Context)) {
                        if context.is_none() {
                            context = Some(self.open_context()?);
                        }
                        let ctx = context.as_ref().expect("opened above");
                        self.copy_layer(step, copy, CopyFrom::Context(ctx), &parent)?
                    } else {
                        let source = states[&from].rootfs();
                        self.copy_layer(step, copy, CopyFrom::Image(&source), &parent)?
                    };
                    self.push_layer(parent, step, &created, layer)
                }
                Op::Run(run) => {
                    let parent = parent.unwrap_or_default();
                    let layer = self.run_layer(step, run, &parent, number)?;
                    self.push_layer(parent, step, &created, layer)
                }
            };
            if let Some(n) = number {
                self.progress.step_done(n, started.elapsed());
            }
            states.insert(id, state);
        }

        let target = self.graph.target_stage();
        let state = states.remove(&target.last).expect("the target stage was built");
        let mut config = state.base_config.clone().unwrap_or_else(ImageConfig::for_host);
        config.os = self.graph.platform.os.clone();
        config.architecture = self.graph.platform.architecture.clone();
        config.variant = self.graph.platform.variant.clone();
        let mut meta = target.image.clone();
        meta.labels.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        apply_meta(&mut config, &meta);
        config.created = Some(created);
        config.history = state.history.clone();
        config.rootfs.diff_ids = state.layers.iter().map(|l| l.layer.diff_id.clone()).collect();
        let layers: Vec<Layer> = state.layers.iter().map(|l| l.layer.clone()).collect();
        let image = self.store.put_image(&config, &layers)?;
        Ok(Built { image, state })
    }

    /// Progress numbers (`#1`, `#2`, …) for the steps that do visible work.
    fn step_numbers(&self, order: &[StepId]) -> HashMap<StepId, usize> {
        order
            .iter()
            .filter(|id| self.graph.step(**id).location.is_some() || matches!(self.graph.step(**id).op, Op::Source(Source::Image(_))))
            .enumerate()
            .map(|(i, id)| (*id, i + 1))
            .collect()
    }

    /// `[stage 2/4] COPY a /b`, as BuildKit shows a step.
    fn step_label(&self, step: &Step) -> String {
        let Some(stage_index) = step.stage else {
            return step.display.clone();
        };
        let Some(plan) = self.graph.stages.iter().find(|s| s.index == stage_index) else {
            return step.display.clone();
        };
        let total = plan.steps.len() + 1;
        let position = plan
            .steps
            .iter()
            .position(|s| self.graph.step(*s) == step)
            .map(|p| p + 2)
            .unwrap_or(1);
        let name = plan.name.clone().unwrap_or_else(|| format!("stage-{}", plan.index));
        format!("[{name} {position}/{total}] {}", step.display)
    }

    fn open_context(&self) -> Result<BuildContext, BuildError> {
        BuildContext::open(&self.context_dir, self.dockerfile_path.as_deref()).map_err(|e| {
            BuildError::Context(format!("{}: {e}", self.context_dir.display()))
        })
    }

    fn source_state(&self, source: &Source, step: &Step) -> Result<FsState, BuildError> {
        match source {
            Source::Scratch | Source::Context => Ok(FsState::default()),
            Source::Image(reference) => {
                let image = self
                    .store
                    .lookup(reference)?
                    .ok_or_else(|| self.step_error(step, format!("image {reference:?} is not in the store")))?;
                let mut layers = Vec::new();
                for layer in &image.layers {
                    // A snapshot may be missing (pruned, or an image that was
                    // only ever stored as blobs): unpack it from its layer.
                    let snapshot = self.store.ensure_snapshot(layer)?;
                    layers.push(LayerRef { layer: layer.clone(), snapshot });
                }
                Ok(FsState {
                    layers,
                    history: image.config.history.clone(),
                    base_config: Some(image.config.clone()),
                })
            }
        }
    }

    fn copy_layer(
        &self,
        step: &Step,
        copy: &CopyOp,
        from: CopyFrom<'_>,
        parent: &FsState,
    ) -> Result<Option<LayerRef>, BuildError> {
        let request = CopyRequest {
            sources: copy.sources.clone(),
            inline_files: copy
                .inline_files
                .iter()
                .map(|f| (f.name.clone(), f.content.clone().into_bytes()))
                .collect(),
            dest: copy.dest.clone(),
            workdir: copy.workdir.clone(),
            chown: copy.chown.clone(),
            chmod: copy.chmod.clone(),
            link: copy.link,
            parents: copy.parents,
            exclude: copy.exclude.clone(),
            is_add: copy.is_add,
        };
        if copy.checksum.is_some() {
            return Err(self.step_error(step, "ADD --checksum is only valid for URL sources, which are not supported yet".into()));
        }
        let target = parent.rootfs();
        self.layer_from(step, |out| {
            fileops::copy_into(&request, from, &target, out)
                .map(|_| true)
                .map_err(|e| e.to_string())
        })
    }

    /// Runs `fill` on a fresh directory and turns what it wrote into a layer
    /// and snapshot; `fill` returns whether it changed anything.
    fn layer_from(
        &self,
        step: &Step,
        fill: impl FnOnce(&std::path::Path) -> Result<bool, String>,
    ) -> Result<Option<LayerRef>, BuildError> {
        let work = self.store.tempdir()?;
        let dir = work.path().join("diff");
        std::fs::create_dir(&dir).map_err(|e| BuildError::Io(format!("{}: {e}", dir.display())))?;
        let changed = fill(&dir).map_err(|m| self.step_error(step, m))?;
        if !changed {
            return Ok(None);
        }
        let options = LayerOptions {
            source_date_epoch: self.source_date_epoch,
            ..LayerOptions::default()
        };
        let layer = self.store.write_layer(&dir, &options)?;
        let snapshot = self.store.commit_snapshot(&dir, &layer.diff_id)?;
        Ok(Some(LayerRef { layer, snapshot }))
    }

    /// Runs a RUN step in the sandbox over the parent's snapshots; its
    /// changes become the step's layer (none when it changed nothing).
    fn run_layer(
        &mut self,
        step: &Step,
        run: &RunOp,
        parent: &FsState,
        number: Option<usize>,
    ) -> Result<Option<LayerRef>, BuildError> {
        let network = match run.network.as_deref() {
            None | Some("default") => self.default_network,
            Some("none") => NetworkMode::None,
            Some("host") => NetworkMode::Host,
            Some(other) => return Err(self.step_error(step, format!("unknown network mode {other:?}"))),
        };
        if run.security.as_deref() == Some("insecure") {
            return Err(self.step_error(step, "RUN --security=insecure is not supported".into()));
        }
        let work = self.store.tempdir()?;
        let upper = work.path().join("diff");
        let scratch = work.path().join("scratch");
        for dir in [&upper, &scratch] {
            std::fs::create_dir(dir).map_err(|e| BuildError::Io(format!("{}: {e}", dir.display())))?;
        }
        let mut stdin = None;
        let mut extra_files = Vec::new();
        for doc in &run.heredocs {
            match doc.file_descriptor {
                0 => stdin = Some(doc.content.clone().into_bytes()),
                fd => extra_files.push((fd, doc.content.clone().into_bytes())),
            }
        }
        let spec = RunSpec {
            lower: parent.layers.iter().map(|l| l.snapshot.clone()).collect(),
            upper: upper.clone(),
            scratch,
            argv: run.argv.clone(),
            env: run.env.clone(),
            user: run.user.clone(),
            workdir: run.workdir.clone(),
            network,
            hostname: sandbox::DEFAULT_HOSTNAME.to_string(),
            stdin,
            extra_files,
            isolation: self.isolation,
        };
        let progress = &mut *self.progress;
        let outcome = sandbox::run(&spec, &mut |bytes| {
            if let Some(n) = number {
                progress.output(n, bytes);
            }
        })
        .map_err(|e| self.step_error(step, format!("{e}")))?;
        for warning in &outcome.warnings {
            self.progress.warning(warning);
        }
        if !outcome.exit.success() {
            let command = run.argv.join(" ");
            let mut message = format!("process {command:?} did not complete successfully: {}", outcome.exit);
            if !outcome.output_tail.is_empty() {
                message.push_str("\nlast lines of its output:");
                for line in &outcome.output_tail {
                    message.push_str("\n  ");
                    message.push_str(line);
                }
            }
            return Err(self.step_error(step, message));
        }
        let changed = std::fs::read_dir(&upper)
            .map_err(|e| BuildError::Io(format!("{}: {e}", upper.display())))?
            .next()
            .is_some();
        if !changed {
            return Ok(None);
        }
        let options = LayerOptions {
            source_date_epoch: self.source_date_epoch,
            ..LayerOptions::default()
        };
        let layer = self.store.write_layer(&upper, &options)?;
        let snapshot = self.store.commit_snapshot(&upper, &layer.diff_id)?;
        Ok(Some(LayerRef { layer, snapshot }))
    }

    fn push_layer(&self, parent: FsState, step: &Step, created: &str, layer: Option<LayerRef>) -> FsState {
        let empty = layer.is_none();
        let mut state = with_history(parent, step, created, empty);
        state.layers.extend(layer);
        state
    }

    fn step_error(&self, step: &Step, message: String) -> BuildError {
        BuildError::Step {
            file: self.dockerfile_name.clone(),
            location: step.location.unwrap_or(Location::default()),
            instruction: step.display.clone(),
            message,
        }
    }
}

fn with_history(mut state: FsState, step: &Step, created: &str, empty_layer: bool) -> FsState {
    if let Some(entry) = &step.history {
        state.history.push(History {
            created: Some(created.to_string()),
            created_by: Some(entry.created_by.clone()),
            comment: Some("buildkit.dockerfile.v0".to_string()),
            empty_layer,
            ..History::default()
        });
    }
    state
}
