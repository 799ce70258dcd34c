//! Running one step: what a source, COPY/ADD, RUN, WORKDIR or config change
//! does to the filesystem state it starts from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use rbuild_frontend::graph::{BuildGraph, Op, Platform, RunOp, Source, Step, StepId, DEFAULT_PATH};
use rbuild_store::config::History;
use rbuild_store::{Compression, LayerOptions, Store};

use super::state::{FsState, LayerRef};
use crate::engine::context::BuildContext;
use crate::engine::error::{BuildError, StepError};
use crate::engine::fileops::selection::Selection;
use crate::engine::fileops::{self, CopyFrom, CopyRequest, Rootfs};
use crate::engine::kept_failure::{self, FailedRun, Leftovers};
use crate::engine::emulation;
use crate::engine::events::{EmulatedRun, Progress};
use crate::engine::redact::Redactor;
use crate::engine::settings::{BuildSettings, CachePolicy};
use super::run_mounts::{self, MountInputs, PreparedMounts};
use rbuild_sandbox::{self as sandbox, NetworkMode, RunSpec};

/// Progress shared by the steps that run at the same time.
pub type SharedProgress = Arc<Mutex<Box<dyn Progress + Send>>>;

/// What every step of one build shares; cheap to share between threads.
pub struct StepRunner {
    pub settings: Arc<BuildSettings>,
    pub store: Store,
    pub graph: Arc<BuildGraph>,
    pub progress: SharedProgress,
    /// How new layers are stored ([`BuildSettings::layer_compression`]).
    pub layer_compression: Compression,
    /// The image config's `created` and the history times.
    pub created: String,
    /// Opened by the first step that reads the context.
    context: OnceLock<Result<BuildContext, String>>,
    /// Directories named with `--build-context`.
    pub(super) named_contexts: super::named_context::NamedContexts,
    /// The step cache; `None` runs every step.
    pub(super) cache: Option<Arc<super::step_cache::StepCache>>,
}

/// The filesystems a step reads: the one it builds on and, for COPY --from,
/// the one it copies from.
#[derive(Default)]
pub struct StepInputs {
    pub parent: Option<FsState>,
    pub copy_from: Option<FsState>,
    /// The layer directory of an earlier run of this step (a COPY that missed
    /// the cache), whose unchanged files the copy may link.
    pub earlier: Option<PathBuf>,
    /// What a COPY's cache key covers (a COPY that missed the cache): the
    /// copy writes exactly that.
    pub(crate) selection: Option<Selection>,
    /// What the RUN's mounts read.
    pub mounts: Vec<MountInput>,
}

/// The input of one `RUN --mount` (a bind mount, or a cache mount seeded `from=`).
#[derive(Clone)]
pub struct MountInput {
    /// The mount's index in the RUN.
    pub index: usize,
    /// The step it reads: a context, a stage's last step, an image.
    pub source: StepId,
    pub state: Option<FsState>,
}

impl StepRunner {
    pub fn new(
        settings: Arc<BuildSettings>,
        store: Store,
        graph: Arc<BuildGraph>,
        progress: SharedProgress,
        created: String,
        named_contexts: super::named_context::NamedContexts,
        cache: Option<Arc<super::step_cache::StepCache>>,
    ) -> StepRunner {
        StepRunner {
            layer_compression: settings.layer_compression(),
            settings,
            store,
            graph,
            progress,
            created,
            context: OnceLock::new(),
            named_contexts,
            cache,
        }
    }

    pub fn progress(&self) -> std::sync::MutexGuard<'_, Box<dyn Progress + Send>> {
        self.progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs step `id` on its inputs; `number` is its progress number.
    pub fn execute(&self, id: StepId, inputs: StepInputs, number: Option<usize>) -> Result<FsState, BuildError> {
        let step = self.graph.step(id);
        if !matches!(step.op, Op::Source(_) | Op::Config) {
            // Files are read: layers known only by descriptor are fetched now.
            self.ensure_present(inputs.parent.as_ref())?;
            self.ensure_present(inputs.copy_from.as_ref())?;
            for mount in &inputs.mounts {
                self.ensure_present(mount.state.as_ref())?;
            }
        }
        let parent = inputs.parent;
        match &step.op {
            Op::Source(source) => self.source_state(source, step),
            Op::Config => Ok(with_history(parent.unwrap_or_default(), step, &self.created, true)),
            Op::Workdir { path, user } => {
                let parent = parent.unwrap_or_default();
                let user = (!user.is_empty()).then_some(user.as_str());
                let rootfs = parent.rootfs();
                let layer = self.layer_from(step, |out| {
                    fileops::make_workdir(path, user, &rootfs, out).map_err(StepError::from)
                })?;
                Ok(self.push_layer(parent, step, layer))
            }
            Op::Copy(copy) => {
                let parent = parent.unwrap_or_default();
                let from = self.graph.copy_from(id).expect("lowering gives every COPY an input");
                let request = CopyRequest { op: copy, earlier: inputs.earlier.as_deref(), selection: inputs.selection };
                let rootfs = inputs.copy_from.unwrap_or_default().rootfs();
                let layer = self.copy_layer(step, request, self.copy_source(from, &rootfs)?, &parent)?;
                Ok(self.push_layer(parent, step, layer))
            }
            Op::Run(run) => {
                let parent = parent.unwrap_or_default();
                let layer = self.run_layer(step, run, &parent, &inputs.mounts, number)?;
                Ok(self.push_layer(parent, step, layer))
            }
        }
    }

    /// A RUN for a platform the host cannot run natively goes through the kernel's
    /// binfmt_misc handler for it: checked here, where the error can name the RUN, and
    /// reported once, as this RUN runs (a cached one is not emulated).
    fn prepare_emulation(&self, step: &Step, number: Option<usize>) -> Result<(), BuildError> {
        let platform = self.graph.step_platform(step);
        if emulation::runs_natively(platform, &Platform::host()) {
            return Ok(());
        }
        emulation::check_handler(platform, Path::new(emulation::BINFMT_MISC)).map_err(|e| self.step_error(step, e.into()))?;
        let run = EmulatedRun {
            number,
            line: step.location.map(|l| l.start_line),
            instruction: step.display.clone(),
            platform: platform.to_string(),
            host: Platform::host().to_string(),
        };
        self.progress().emulated_run(&run);
        Ok(())
    }

    pub(super) fn context(&self) -> Result<&BuildContext, BuildError> {
        let opened = self.context.get_or_init(|| {
            BuildContext::open(&self.settings.context, self.settings.dockerfile.path.as_deref())
                .map_err(|e| format!("{}: {e}", self.settings.context.display()))
        });
        opened.as_ref().map_err(|e| BuildError::Context(e.clone()))
    }

    fn source_state(&self, source: &Source, step: &Step) -> Result<FsState, BuildError> {
        match source {
            // Directories are read by the COPY that uses them, not here.
            Source::Scratch | Source::Context | Source::NamedContext(_) => Ok(FsState::default()),
            Source::Image(reference) => {
                let image = self
                    .store
                    .lookup(reference)?
                    .ok_or_else(|| self.step_error(step, StepError::MissingImage(reference.clone())))?;
                let mut layers = Vec::new();
                for layer in &image.layers {
                    // A snapshot may be missing (pruned, or an image that was
                    // only ever stored as blobs): unpack it from its layer.
                    let snapshot = self.store.ensure_snapshot(layer)?;
                    layers.push(LayerRef { layer: layer.clone(), snapshot });
                }
                Ok(FsState {
                    layers,
                    history: image.config.history.iter().cloned().collect(),
                    base_config: Some(Arc::new(image.config.clone())),
                    key: None,
                })
            }
        }
    }

    fn copy_layer(
        &self,
        step: &Step,
        request: CopyRequest<'_>,
        from: CopyFrom<'_>,
        parent: &FsState,
    ) -> Result<Option<LayerRef>, BuildError> {
        if request.op.checksum.is_some() {
            return Err(self.step_error(
                step,
                StepError::Unsupported("ADD --checksum is only valid for URL sources, which are not supported yet".into()),
            ));
        }
        let target = parent.rootfs();
        // COPY always makes a layer, even an empty one, as BuildKit does.
        self.layer_from(step, |out| {
            fileops::copy_into(request, from, &target, out).map(|_| true).map_err(StepError::from)
        })
    }

    /// Runs `fill` on a fresh directory and turns what it wrote into a layer
    /// and snapshot; `fill` returns whether it changed anything.
    fn layer_from(
        &self,
        step: &Step,
        fill: impl FnOnce(&Path) -> Result<bool, StepError>,
    ) -> Result<Option<LayerRef>, BuildError> {
        let work = self.store.tempdir()?;
        let dir = work.path().join("diff");
        std::fs::create_dir(&dir).map_err(|source| BuildError::Io { action: format!("creating {}", dir.display()), source })?;
        let changed = fill(&dir).map_err(|e| self.step_error(step, e))?;
        if !changed {
            return Ok(None);
        }
        self.commit_diff(&dir).map(Some)
    }

    /// Turns a diff directory into a layer blob and a snapshot.
    fn commit_diff(&self, dir: &Path) -> Result<LayerRef, BuildError> {
        let options = LayerOptions {
            source_date_epoch: self.settings.source_date_epoch,
            compression: self.layer_compression,
        };
        let layer = self.store.write_layer(dir, &options)?;
        let snapshot = self.store.commit_snapshot(dir, &layer.diff_id)?;
        Ok(LayerRef { layer, snapshot })
    }

    /// Runs a RUN step in the sandbox over the parent's snapshots; its
    /// changes become the step's layer (none when it changed nothing).
    fn run_layer(
        &self,
        step: &Step,
        run: &RunOp,
        parent: &FsState,
        mount_inputs: &[MountInput],
        number: Option<usize>,
    ) -> Result<Option<LayerRef>, BuildError> {
        let network = match run.network.as_deref() {
            None | Some("default") => self.settings.network,
            Some("none") => NetworkMode::None,
            Some("host") => NetworkMode::Host,
            Some(other) => return Err(self.step_error(step, StepError::Unsupported(format!("unknown network mode {other:?}")))),
        };
        if run.security.as_deref() == Some("insecure") {
            return Err(self.step_error(step, StepError::Unsupported("RUN --security=insecure is not supported".into())));
        }
        self.prepare_emulation(step, number)?;
        let work = self.store.tempdir()?;
        let upper = work.path().join("diff");
        let scratch = work.path().join("scratch");
        for dir in [&upper, &scratch] {
            std::fs::create_dir(dir).map_err(|source| BuildError::Io { action: format!("creating {}", dir.display()), source })?;
        }
        let mut stdin = None;
        let mut extra_files = Vec::new();
        for doc in &run.heredocs {
            match doc.file_descriptor {
                0 => stdin = Some(doc.content.clone().into_bytes()),
                fd => extra_files.push((fd, doc.content.clone().into_bytes())),
            }
        }
        let mounts = self.prepare_mounts(step, run, mount_inputs)?;
        // The sandbox runs exactly the environment it is given; a RUN whose
        // image sets no PATH gets the default one, as in BuildKit's exec op.
        let mut env = run.env.clone();
        env.extend(mounts.env.iter().cloned());
        if !env.iter().any(|(key, _)| key == "PATH") {
            env.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
        }
        let spec = RunSpec {
            lower: parent.layers.iter().map(|l| l.snapshot.clone()).collect(),
            upper: upper.clone(),
            scratch,
            argv: run.argv.clone(),
            env,
            user: run.user.clone(),
            workdir: run.workdir.clone(),
            network,
            hostname: sandbox::DEFAULT_HOSTNAME.to_string(),
            stdin,
            extra_files,
            isolation: self.settings.isolation,
            mounts: mounts.mounts.clone(),
            stdio: sandbox::Stdio::Captured,
        };
        let mut redactor = Redactor::new(&mounts.secrets);
        let show = |bytes: &[u8]| {
            if let Some(n) = number {
                if !bytes.is_empty() {
                    self.progress().output(n, bytes);
                }
            }
        };
        let outcome = sandbox::run(&spec, &mut |bytes| show(&redactor.push(bytes)));
        show(&redactor.finish());
        let mut outcome = outcome.map_err(|e| self.step_error(step, e.into()))?;
        outcome.output_tail = outcome.output_tail.iter().map(|line| redactor.mask_line(line)).collect();
        for warning in &outcome.warnings {
            self.progress().warning(warning);
        }
        if !outcome.exit.success() {
            let hint = sandbox::only_root_mapped().filter(|_| changes_owner(&outcome.output_tail));
            let (kept, not_kept) = match self.settings.keep_failures {
                true => match self.keep_failure(step, &spec, run, parent, &mounts, outcome.exit) {
                    Ok(id) => (Some(id), None),
                    Err(e) => (None, Some(format!("{:#}", anyhow::Error::new(e)))),
                },
                false => (None, None),
            };
            let error = StepError::CommandFailed {
                command: run.argv.join(" "),
                exit: outcome.exit,
                output_tail: outcome.output_tail,
                hint,
                kept,
                not_kept,
            };
            return Err(self.step_error(step, error));
        }
        drop(mounts);
        let changed = std::fs::read_dir(&upper)
            .map_err(|source| BuildError::Io { action: format!("reading {}", upper.display()), source })?
            .next()
            .is_some();
        if !changed {
            return Ok(None);
        }
        self.commit_diff(&upper).map(Some)
    }

    /// Keeps the failed RUN `spec` for `rbuild debug` (see [`kept_failure`]); returns its id.
    fn keep_failure(
        &self,
        step: &Step,
        spec: &RunSpec,
        run: &RunOp,
        parent: &FsState,
        mounts: &PreparedMounts,
        exit: sandbox::ExitKind,
    ) -> Result<String, BuildError> {
        let added_by_mounts = |(key, _): &&(String, String)| mounts.env.iter().any(|(k, _)| k == key);
        let failed = FailedRun {
            file: self.settings.dockerfile.name.clone(),
            line: step.location.unwrap_or_default().start_line,
            instruction: step.display.clone(),
            argv: spec.argv.clone(),
            env: spec.env.iter().filter(|e| !added_by_mounts(e)).cloned().collect(),
            user: spec.user.clone(),
            workdir: spec.workdir.clone(),
            hostname: spec.hostname.clone(),
            network: FailedRun::network_name(spec.network).to_string(),
            isolation: FailedRun::isolation_name(spec.isolation).to_string(),
            mounts: run.mounts.clone(),
            kept_binds: Vec::new(),
            secrets: self.settings.secrets.clone(),
            ssh: self.settings.ssh.clone(),
            cache_mount_dir: self.settings.cache_mount_dir.clone(),
            fresh_caches: matches!(self.settings.cache_policy, CachePolicy::Ignore),
            exit: exit.to_string(),
        };
        let layers: Vec<_> = parent.layers.iter().map(|l| l.layer.clone()).collect();
        let left = Leftovers { upper: &spec.upper, bind_copies: &mounts.bind_copies };
        kept_failure::keep(&self.store, &layers, failed, left)
    }

    /// What a COPY or a bind mount reading step `source` copies from: a directory context, or
    /// `rootfs`, the filesystem of the stage or image that step is.
    pub(super) fn copy_source<'a>(&'a self, source: StepId, rootfs: &'a Rootfs) -> Result<CopyFrom<'a>, BuildError> {
        Ok(match &self.graph.step(source).op {
            Op::Source(Source::Context) => CopyFrom::Context(self.context()?),
            Op::Source(Source::NamedContext(name)) => CopyFrom::Context(self.named_contexts.open(name)?),
            _ => CopyFrom::Image(rootfs),
        })
    }

    /// Makes the RUN's `--mount`s ready; what they hold is released when the result is dropped.
    fn prepare_mounts(&self, step: &Step, run: &RunOp, mount_inputs: &[MountInput]) -> Result<PreparedMounts, BuildError> {
        if run.mounts.is_empty() {
            return Ok(PreparedMounts::default());
        }
        let rootfs: Vec<Rootfs> = mount_inputs.iter().map(|input| input.state.clone().unwrap_or_default().rootfs()).collect();
        let mut from = BTreeMap::new();
        for (input, rootfs) in mount_inputs.iter().zip(&rootfs) {
            from.insert(input.index, self.copy_source(input.source, rootfs)?);
        }
        let inputs = MountInputs::of_build(&self.store, &self.settings, from);
        run_mounts::prepare(&run.mounts, &inputs).map_err(|e| self.step_error(step, e))
    }

    fn push_layer(&self, parent: FsState, step: &Step, layer: Option<LayerRef>) -> FsState {
        let empty = layer.is_none();
        let mut state = with_history(parent, step, &self.created, empty);
        state.layers.extend(layer);
        state
    }

    pub fn step_error(&self, step: &Step, error: StepError) -> BuildError {
        BuildError::Step {
            file: self.settings.dockerfile.name.clone(),
            location: step.location.unwrap_or_default(),
            instruction: step.display.clone(),
            error: Box::new(error),
        }
    }
}

/// Whether a failed command's last output looks like a change of owner that
/// the user namespace refused (the kernel says EINVAL for an unmapped id).
fn changes_owner(output: &[String]) -> bool {
    output.iter().any(|line| {
        let line = line.to_ascii_lowercase();
        ["chown", "chgrp", "setgroups", "setgid", "setuid", "invalid argument"].iter().any(|w| line.contains(w))
    })
}

fn with_history(mut state: FsState, step: &Step, created: &str, empty_layer: bool) -> FsState {
    if let Some(entry) = &step.history {
        state.history.push_back_mut(History {
            created: Some(created.to_string()),
            created_by: Some(entry.created_by.clone()),
            comment: Some("buildkit.dockerfile.v0".to_string()),
            empty_layer,
            ..History::default()
        });
    }
    state
}
