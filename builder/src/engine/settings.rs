//! One build's settings: everything the command line asked for, resolved once into one
//! immutable value before anything is built. The planner, the executor and every step
//! read it by reference (an `Arc`); none of them copies its fields.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use rbuild_frontend::graph::Platform;
use rbuild_frontend::lower::LowerOptions;
use rbuild_sandbox::{Isolation, NetworkMode};
use rbuild_store::registry::RegistryAccess;
use rbuild_store::{Codec, Compression, Reference};

use crate::engine::named_contexts::NamedContexts;
use crate::engine::output::OutputSpec;
use crate::engine::remote_cache::{CacheExport, CacheImport};
use crate::engine::resolver::BaseImageOptions;
use crate::engine::secrets::{Secrets, SshAgents};

/// A Dockerfile as read: where from, the name errors call it by, its text.
#[derive(Clone, Debug)]
pub struct DockerfileSource {
    /// `None` when it came from stdin.
    pub path: Option<PathBuf>,
    pub name: String,
    pub text: String,
}

/// What to build and how.
#[derive(Clone, Debug)]
pub struct BuildSettings {
    /// The build context directory; opened only if a step reads it.
    pub context: PathBuf,
    pub dockerfile: DockerfileSource,
    /// `-t`: the names the image gets in the store.
    pub tags: Vec<Reference>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build instead of the last one.
    pub target: Option<String>,
    /// `--label`: labels added to the final image.
    pub labels: BTreeMap<String, String>,
    /// `-o`: where the result goes besides the store.
    pub outputs: Vec<OutputSpec>,
    /// The platforms the image is for (`--platform`), at least one, each once. With
    /// several, the build makes one image per platform, in parallel, and names the
    /// index of them all.
    pub platforms: Vec<Platform>,
    /// `SOURCE_DATE_EPOCH`: fixes image times and clamps file times.
    pub source_date_epoch: Option<i64>,
    /// Which steps may reuse cached results.
    pub cache_policy: CachePolicy,
    /// `--explain-cache`: say why each step missed the cache.
    pub explain_cache: bool,
    /// `--pull`: resolve every base image tag at its registry again.
    pub always_pull: bool,
    /// Registries spoken to over plain HTTP or unverified HTTPS.
    pub registry_access: RegistryAccess,
    /// `--skip-tls-verify-pull`: base images are pulled without verifying certificates.
    pub skip_tls_verify_pull: bool,
    /// `--registry-mirror`: where Docker Hub images are looked for first.
    pub registry_mirrors: Vec<String>,
    /// `--build-context NAME=VALUE`.
    pub named_contexts: NamedContexts,
    /// The network of a RUN that does not say (`--network`).
    pub network: NetworkMode,
    pub isolation: Isolation,
    /// Why `isolation` was chosen, when rbuild chose it (`--isolation=auto`).
    pub isolation_reason: Option<String>,
    /// How many steps may run at once.
    pub limits: Limits,
    /// `--secret`: what `RUN --mount=type=secret` may read.
    pub secrets: Secrets,
    /// `--ssh`: the agents `RUN --mount=type=ssh` may reach.
    pub ssh: SshAgents,
    /// `--cache-mount-dir`: where cache mounts live instead of the store.
    pub cache_mount_dir: Option<PathBuf>,
    /// `--on-error=keep|shell`: a RUN that fails is kept in the store for `rbuild debug`.
    pub keep_failures: bool,
    /// `--cache-to`: where the build's steps are exported as a shared cache.
    pub cache_to: Vec<CacheExport>,
    /// `--cache-from`: shared caches whose steps count as hits.
    pub cache_from: Vec<CacheImport>,
}

impl BuildSettings {
    /// What lowering the Dockerfile for `platform` needs.
    pub fn lower_options(&self, platform: &Platform) -> LowerOptions {
        LowerOptions { build_args: self.build_args.clone(), target: self.target.clone(), platform: platform.clone() }
    }

    /// Whether the build makes an image for more than one platform.
    pub fn is_multi_platform(&self) -> bool {
        self.platforms.len() > 1
    }

    /// Where base images come from.
    pub fn base_images(&self) -> BaseImageOptions {
        BaseImageOptions {
            always_pull: self.always_pull,
            registry_access: RegistryAccess {
                unverified_tls_everywhere: self.skip_tls_verify_pull,
                ..self.registry_access.clone()
            },
            registry_mirrors: self.registry_mirrors.clone(),
            contexts: self.named_contexts.clone(),
        }
    }

    /// How the layers this build makes are stored. Uncompressed when the build only
    /// stores its image: compressing is the slowest part of making a layer, and an export
    /// or `rbuild save` compresses once, when an archive is written (remembered, so the
    /// next export is free). A build that writes an archive stores them as the archive
    /// wants them. An output at a level of its own (`compression-level=`) stores them
    /// plain too, so that it compresses them once, at that level.
    pub fn layer_compression(&self) -> Compression {
        let stored_for = |codec: &Codec| match codec.explicit_level() {
            Some(_) => Compression::None,
            None => codec.compression,
        };
        self.outputs
            .iter()
            .find_map(|output| match output {
                OutputSpec::Docker { compression, .. }
                | OutputSpec::Oci { compression, .. }
                | OutputSpec::Registry { compression, .. } => Some(stored_for(compression)),
                OutputSpec::RootfsTar { .. } | OutputSpec::Local { .. } => None,
            })
            .unwrap_or(Compression::None)
    }

    /// How the step cache names the Dockerfile when it compares builds: its path inside
    /// the context when it is there, so clones in other directories share explanations;
    /// else its full path.
    pub fn dockerfile_identity(&self) -> String {
        let Some(path) = &self.dockerfile.path else { return "-".to_string() };
        let context = self.context.canonicalize().unwrap_or_else(|_| self.context.clone());
        let path = path.canonicalize().unwrap_or_else(|_| path.clone());
        path.strip_prefix(&context).unwrap_or(&path).display().to_string()
    }

    /// Where the build's cache mounts live: `--cache-mount-dir`, else the store's.
    pub fn cache_mounts(&self, store_root: &std::path::Path) -> crate::engine::cache_mounts::CacheMounts {
        crate::engine::cache_mounts::CacheMounts::of(self.cache_mount_dir.as_deref(), store_root)
    }

    /// The names an image archive gives the image: the build's tags, then the output's
    /// own `name=`s.
    pub fn archive_names(&self, names: &[Reference]) -> Vec<Reference> {
        let mut all = self.tags.clone();
        all.extend(names.iter().filter(|n| !self.tags.contains(n)).cloned());
        all
    }
}

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

/// How many steps may run at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Steps of any kind (`--jobs`); `None`: no limit beyond `cpu`.
    pub jobs: Option<usize>,
    /// Steps whose work is rbuild's own (COPY, ADD, WORKDIR: copying,
    /// hashing, compressing), which a CPU each keeps busy. RUN steps are not
    /// counted: their processes are the kernel's to schedule and often wait
    /// (on sleeps, disks, networks), so holding them to one per CPU would
    /// serialise independent stages for nothing.
    pub cpu: usize,
}

/// `SOURCE_DATE_EPOCH` from `--build-arg` (as BuildKit takes it) or the environment.
pub fn source_date_epoch(build_args: &BTreeMap<String, String>) -> Result<Option<i64>, String> {
    let value = build_args
        .get("SOURCE_DATE_EPOCH")
        .cloned()
        .or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok())
        .filter(|v| !v.is_empty());
    value
        .map(|v| v.parse::<i64>().map_err(|_| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")))
        .transpose()
}

/// One step per CPU, as BuildKit runs as many steps as it can.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
