//! The build graph: what the builder executes.
//!
//! Nodes are [`Step`]s (a source, a file copy, a command, a directory creation or
//! a config-only change); edges point from an input to the step that uses it.
//! Every step of a stage has exactly one [`Edge::Parent`] (the filesystem it
//! starts from) except a stage's source; a COPY --from step also has an
//! [`Edge::CopyFrom`] edge from the step whose filesystem it reads. Stages the
//! target does not need are never added, so everything in the graph is built.


use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::instructions::Location;

pub use petgraph::graph::NodeIndex as StepId;

/// A platform (`os/arch[/variant]`) in OCI terms: what an image is built for,
/// and what image indexes and configs name. The one definition for the
/// lowering and the store, which picks manifests by it.
///
/// Names are normalised as containerd's platform matcher (which Docker and
/// BuildKit use) does: `x86_64` is `amd64`, `aarch64` is `arm64`, and `arm64`
/// without a variant is `arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the machine rbuild runs on, in Go's naming, which
    /// images use.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform {
            os: "linux".to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parses `os/arch[/variant]`, normalising the names.
    pub fn parse(text: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = text.split('/').collect();
        let bad = || format!("invalid platform {text:?}: expected os/arch[/variant]");
        let (os, arch, variant) = match parts.as_slice() {
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] if !variant.is_empty() => (*os, *arch, Some(*variant)),
            _ => return Err(bad()),
        };
        if os.is_empty() || arch.is_empty() {
            return Err(bad());
        }
        Ok(Platform::new(os, arch, variant))
    }

    /// A platform from the fields of an index entry or an image config.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        let os = os.to_ascii_lowercase();
        let (architecture, variant) = normalise_arch(&architecture.to_ascii_lowercase(), variant);
        Platform { os, architecture, variant }
    }

    /// Whether an image built for `candidate` runs where `self` is wanted (a
    /// variant `self` does not name matches any).
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && (self.variant.is_none() || self.variant == candidate.variant)
    }
}

/// containerd's normalisation: the names uname and Go use map to OCI's, and
/// the default variant of an architecture is made explicit (or dropped).
fn normalise_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let variant = variant.map(str::to_ascii_lowercase);
    match arch {
        "i386" | "x86" => ("386".into(), None),
        "x86_64" | "x86-64" | "amd64" => {
            // amd64/v1 is plain amd64.
            let variant = variant.filter(|v| v != "v1");
            ("amd64".into(), variant)
        }
        "aarch64" | "arm64" => {
            let variant = match variant.as_deref() {
                None | Some("8") | Some("v8") => Some("v8".to_string()),
                Some(_) => variant,
            };
            ("arm64".into(), variant)
        }
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => {
            let variant = match variant.as_deref() {
                None | Some("7") => Some("v7".to_string()),
                Some("5") | Some("6") | Some("8") => variant.map(|v| format!("v{v}")),
                Some(_) => variant,
            };
            ("arm".into(), variant)
        }
        other => (other.to_string(), variant),
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

pub use crate::image::{Healthcheck, ImageMeta, DEFAULT_PATH};

/// Where a stage starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// An image reference, as written after expansion.
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
    /// A directory named with `--build-context NAME=DIR`: its files are the
    /// stage's first layer, its image config that of `scratch`.
    Context(String),
}

/// A step's input filesystem that is not another step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// The empty filesystem.
    Scratch,
    /// A base image (the builder finds it in its store).
    Image(String),
    /// The build context (only ever a CopyFrom input).
    Context,
    /// A directory named with `--build-context NAME=DIR` (only ever a
    /// CopyFrom input: `FROM NAME` copies all of it); the builder knows where
    /// it is.
    NamedContext(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineFile {
    pub name: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOp {
    pub is_add: bool,
    /// Expanded source paths or patterns, relative to the input's root.
    pub sources: Vec<String>,
    /// Heredoc sources, already expanded where the heredoc asks for it.
    pub inline_files: Vec<InlineFile>,
    pub dest: String,
    /// The stage's WORKDIR, against which a relative `dest` resolves.
    pub workdir: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    pub unpack: Option<bool>,
    pub checksum: Option<String>,
}

impl CopyOp {
    /// `COPY SOURCES… DEST` with no flags, from the root directory: what a
    /// whole directory loaded as a stage's filesystem, or a plain copy in a
    /// test, needs.
    /// `COPY --chown=… --chmod=… src… dest`, variables expanded: how explanations and
    /// errors show the operation.
    pub fn text(&self) -> String {
        let mut words = vec![if self.is_add { "ADD" } else { "COPY" }.to_string()];
        let flags = [
            ("chown", self.chown.clone()),
            ("chmod", self.chmod.clone()),
            ("link", self.link.then(|| "true".to_string())),
            ("parents", self.parents.then(|| "true".to_string())),
            ("unpack", self.unpack.map(|u| u.to_string())),
            ("checksum", self.checksum.clone()),
        ];
        for (flag, value) in flags {
            if let Some(value) = value {
                words.push(format!("--{flag}={value}"));
            }
        }
        words.extend(self.exclude.iter().map(|e| format!("--exclude={e}")));
        words.extend(self.sources.iter().cloned());
        words.extend(self.inline_files.iter().map(|f| format!("<<{}", f.name)));
        words.push(self.dest.clone());
        words.join(" ")
    }

    pub fn plain(sources: &[&str], dest: &str) -> CopyOp {
        CopyOp {
            is_add: false,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            inline_files: Vec::new(),
            dest: dest.into(),
            workdir: "/".into(),
            chown: None,
            chmod: None,
            link: false,
            parents: false,
            exclude: Vec::new(),
            unpack: None,
            checksum: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOp {
    pub argv: Vec<String>,
    /// ENV of the image plus the stage's ARGs (ENV wins), in order.
    pub env: Vec<(String, String)>,
    pub user: String,
    pub workdir: String,
    /// Heredoc bodies the command reads (fd 0 or `N<<`), already expanded.
    pub heredocs: Vec<RunHeredoc>,
    pub network: Option<String>,
    pub security: Option<String>,
    /// `--mount`s, in order. A bind mount, and a cache mount seeded `from` something, reads
    /// the step input of the edge [`Edge::MountFrom`] with its index.
    pub mounts: Vec<RunMount>,
}

/// One `RUN --mount`, expanded and checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunMount {
    /// Absolute path in the RUN's filesystem. Empty for a secret given only as an
    /// environment variable (`env=` without `target=`).
    pub target: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MountKind {
    /// Files of the build context, a stage, a named context or an image, read-only unless
    /// `readwrite` (writes are then discarded).
    Bind { source: String, readwrite: bool },
    /// A directory kept between builds under `id`; not part of the step's cache key.
    /// Seeded from `source` of its input when created, if it has one.
    Cache { id: String, sharing: CacheSharing, readonly: bool, source: String, mode: u32, uid: u32, gid: u32 },
    /// An empty tmpfs, `size` bytes at most.
    Tmpfs { size: Option<u64> },
    /// A secret of the build (`--secret id=…`) as a file at the target, in the variable
    /// `env`, or both.
    Secret { id: String, env: Option<String>, required: bool, mode: u32, uid: u32, gid: u32 },
    /// An ssh agent of the build (`--ssh id=…`), its socket at the target.
    Ssh { id: String, required: bool, mode: u32, uid: u32, gid: u32 },
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CacheSharing {
    /// Every user at once.
    Shared,
    /// A user that finds it in use gets a directory of its own.
    Private,
    /// A user that finds it in use waits.
    Locked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunHeredoc {
    pub name: String,
    pub content: String,
    pub file_descriptor: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Source(Source),
    Copy(CopyOp),
    Run(RunOp),
    /// WORKDIR: create the directory (owned by `user`) if it is missing.
    Workdir { path: String, user: String },
    /// A change to the image config only.
    Config,
}

/// The history entry a step adds to the image (`docker history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub created_by: String,
    /// `true` for config-only steps; steps with a filesystem effect get a layer.
    pub empty_layer: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The Dockerfile stage this step belongs to; `None` for shared sources.
    pub stage: Option<usize>,
    pub op: Op,
    /// Where in the Dockerfile the step comes from (`None` for sources with no line).
    pub location: Option<Location>,
    /// How progress output names the step, e.g. `COPY a /b`.
    pub display: String,
    pub history: Option<HistoryEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The filesystem the step starts from.
    Parent,
    /// The filesystem a COPY/ADD reads from.
    CopyFrom,
    /// The filesystem the RUN mount with this index reads from.
    MountFrom(usize),
}

/// A stage that is part of the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagePlan {
    /// Index of the stage in the Dockerfile.
    pub index: usize,
    pub name: Option<String>,
    /// What the stage is built for: its `FROM --platform`, its parent stage's, or the
    /// build's. Its base image is taken for it and its RUN steps run as it.
    pub platform: Platform,
    pub base: Base,
    pub location: Location,
    /// The step that starts the stage's chain (a source, or the base stage's last step).
    pub root: NodeIndex,
    /// The step whose filesystem and history make the stage's result.
    pub last: NodeIndex,
    /// The image config at the end of the stage.
    pub image: ImageMeta,
    /// Instructions in the stage, for `[stage i/n]` progress.
    pub steps: Vec<NodeIndex>,
}

/// A warning found while lowering, with its Dockerfile line when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub line: Option<usize>,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct BuildGraph {
    pub graph: DiGraph<Step, Edge>,
    /// Stages that are built, in Dockerfile order.
    pub stages: Vec<StagePlan>,
    /// Position of the target stage in `stages`.
    pub target: usize,
    pub platform: Platform,
    pub warnings: Vec<Warning>,
    /// Build-check findings that need expansion (UndefinedVar), in the stages built.
    pub findings: Vec<crate::checks::rules::Finding>,
}

impl BuildGraph {
    pub fn target_stage(&self) -> &StagePlan {
        &self.stages[self.target]
    }

    pub fn step(&self, id: NodeIndex) -> &Step {
        &self.graph[id]
    }

    /// The platform `step` runs as: its stage's, or the build's for the sources.
    pub fn step_platform(&self, step: &Step) -> &Platform {
        step.stage
            .and_then(|index| self.stages.iter().find(|s| s.index == index))
            .map_or(&self.platform, |stage| &stage.platform)
    }

    /// The step a step builds on, if any.
    pub fn parent(&self, id: NodeIndex) -> Option<NodeIndex> {
        self.input(id, Edge::Parent)
    }

    /// The step a COPY --from reads, if any.
    pub fn copy_from(&self, id: NodeIndex) -> Option<NodeIndex> {
        self.input(id, Edge::CopyFrom)
    }

    fn input(&self, id: NodeIndex, kind: Edge) -> Option<NodeIndex> {
        self.graph
            .edges_directed(id, Direction::Incoming)
            .find(|e| *e.weight() == kind)
            .map(|e| e.source())
    }

    /// Steps in an order where every input comes before its users.
    pub fn execution_order(&self) -> Vec<NodeIndex> {
        petgraph::algo::toposort(&self.graph, None)
            .expect("lowering only ever adds edges from earlier steps, so the graph has no cycle")
    }
}

#[cfg(test)]
mod tests {
    use super::Platform;

    #[test]
    fn platforms_parse_and_normalise() {
        let p = Platform::parse("linux/amd64").unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        assert_eq!(Platform::parse("linux/x86_64").unwrap(), p);
        assert_eq!(Platform::parse("linux/aarch64").unwrap().to_string(), "linux/arm64/v8");
        assert_eq!(Platform::parse("linux/arm").unwrap().to_string(), "linux/arm/v7");
        for bad in ["linux", "", "linux/", "/amd64", "linux/amd64/", "a/b/c/d"] {
            assert!(Platform::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_variant_the_wanted_platform_does_not_name_matches_any() {
        let want = Platform::parse("linux/arm").unwrap();
        assert!(want.matches(&Platform::new("linux", "arm", Some("v7"))));
        assert!(!want.matches(&Platform::new("linux", "arm", Some("v6"))));
        let any_arm64 = Platform { variant: None, ..Platform::parse("linux/arm64").unwrap() };
        assert!(any_arm64.matches(&Platform::new("linux", "arm64", None)));
        let amd64 = Platform::parse("linux/amd64").unwrap();
        assert!(amd64.matches(&Platform::new("linux", "amd64", None)));
        assert!(!amd64.matches(&Platform::new("windows", "amd64", None)));
        assert!(!amd64.matches(&Platform::new("linux", "arm64", None)));
    }
}
