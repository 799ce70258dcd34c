//! Cache keys of build steps.
//!
//! A step's key is a digest of everything its result depends on: its operation
//! with variables already expanded (the frontend did that), the variables a RUN
//! sees, its flags, the platform, `SOURCE_DATE_EPOCH` (it changes layer bytes),
//! the key of the filesystem it starts from, and for COPY/ADD the digest of
//! the files it selects (see `source`). Nothing host-specific goes in: no
//! absolute path of the context, no time, no map iteration order, so the same
//! build on another machine or in another process gets the same keys.
//!
//! Config-only steps (ENV, LABEL, CMD, ARG, USER, …) get a key of their own,
//! for their record, but leave the filesystem key unchanged: like BuildKit, a
//! changed LABEL does not rebuild the RUN below it. What such a step can change
//! for later steps (environment, user, shell, workdir) is part of those
//! steps' own operations, so nothing is lost.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rbuild_frontend::graph::{CopyOp, InlineFile, MountKind, Op, Platform, RunHeredoc, RunMount, RunOp, Source, Step};
use rbuild_store::Digest;
use serde::{Deserialize, Serialize};

use super::hasher::FieldHasher;
use super::source::{SelectedFile, SourceDigest, SourceKind};
use rbuild_sandbox::NetworkMode;

/// Build arguments BuildKit keeps out of cache keys: where a proxy is does not
/// change what a step builds, and CI runners differ in it.
const PROXY_VARIABLES: [&str; 10] = [
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
];

/// Variable values longer than this are shown in explanations by digest only.
const SHOWN_VALUE_MAX: usize = 200;

/// The cache key of a step.
///
/// Equality and hashing use the key digest only; the rest says which
/// filesystem state later steps build on, and where in the Dockerfile it was
/// made, for "parent changed: line N".
#[derive(Clone, Debug)]
pub struct CacheKey {
    digest: Digest,
    /// The key of the filesystem after this step: the step's own digest, or
    /// its parent's for a config-only step.
    fs: Digest,
    /// The Dockerfile line of the step that made that filesystem.
    fs_line: Option<usize>,
}

impl CacheKey {
    /// What the step's record is stored under.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for CacheKey {}

impl std::hash::Hash for CacheKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.digest.hash(state)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.digest.fmt(f)
    }
}

/// What a build as a whole contributes to every key.
#[derive(Clone, Debug)]
pub struct KeyParams {
    pub platform: Platform,
    /// Clamps layer file times, so layers built with another value differ.
    pub source_date_epoch: Option<i64>,
    /// The network of a RUN without `--network` (the `--network` flag of rbuild).
    pub default_network: NetworkMode,
}

impl KeyParams {
    /// These parameters for a step of `platform`.
    pub fn for_platform(&self, platform: &Platform) -> KeyParams {
        KeyParams { platform: platform.clone(), ..self.clone() }
    }
}

/// What went into a key, kept for `--explain-cache`. Values that may be long
/// or secret are kept as digests; the key itself is computed from the full
/// values, never from this summary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInputs {
    /// The operation, variables expanded: `RUN make all`, `COPY --chmod=644 src/ /app/`.
    pub instruction: String,
    /// What the step depends on besides its text: workdir, user, network,
    /// heredoc and inline file contents (by digest).
    pub settings: BTreeMap<String, String>,
    /// The environment of a RUN, in order.
    pub variables: Vec<Variable>,
    pub platform: String,
    pub source_date_epoch: Option<i64>,
    pub parent: Option<ParentInputs>,
    pub source: Option<SourceInputs>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    /// The first 16 hex digits of the value's sha256.
    pub digest: String,
    /// The value, unless it is long or its name suggests a secret.
    pub value: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentInputs {
    /// The filesystem key the step builds on.
    pub key: String,
    /// The line of the step that made that filesystem (`None`: the base image).
    pub line: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInputs {
    pub kind: SourceKind,
    pub digest: String,
    /// The selected entries (empty for an image); shared with the digest,
    /// not copied, as most keys are only looked up.
    pub files: Arc<Vec<SelectedFile>>,
}

/// The key of `step`. `parent` is the key of the step it builds on (`None`
/// for sources); `input` is, for COPY/ADD, the digest of what it selects
/// ([`super::digest_context_selection`], [`super::digest_rootfs_selection`]),
/// and for a base image source, [`SourceDigest::image`] with the image id, so
/// that a tag moved to another image changes the key.
pub fn key_for_step(
    step: &Step,
    parent: Option<&CacheKey>,
    input: Option<&SourceDigest>,
    params: &KeyParams,
) -> (CacheKey, KeyInputs) {
    let mut h = FieldHasher::new("rbuild-step/v1");
    // A source names no platform: scratch and the contexts have none, and an image's id
    // (its input) names its own. So the sources of two platforms' builds have one key,
    // and so have the steps of a stage built for the same platform in both.
    let platform = match step.op {
        Op::Source(_) => String::new(),
        _ => params.platform.to_string(),
    };
    h.str("platform", &platform);
    h.opt_str("source-date-epoch", params.source_date_epoch.map(|e| e.to_string()).as_deref());
    match parent {
        Some(p) => h.str("parent", p.fs.hex()),
        None => h.str("parent", ""),
    };
    match input {
        Some(s) => h.str("input-kind", s.kind.as_str()).str("input", s.digest.hex()),
        None => h.str("input-kind", ""),
    };
    let mut inputs = KeyInputs {
        instruction: String::new(),
        settings: BTreeMap::new(),
        variables: Vec::new(),
        platform,
        source_date_epoch: params.source_date_epoch,
        parent: parent.map(|p| ParentInputs {
            key: p.fs.hex().to_string(),
            line: p.fs_line,
        }),
        source: input.map(|s| SourceInputs {
            kind: s.kind,
            digest: s.digest.to_string(),
            files: Arc::clone(&s.files),
        }),
    };
    let config_only = matches!(step.op, Op::Config);
    match &step.op {
        Op::Source(source) => source_key(source, &mut h, &mut inputs),
        Op::Copy(copy) => copy_key(copy, &mut h, &mut inputs),
        Op::Run(run) => run_key(run, params.default_network, &mut h, &mut inputs),
        Op::Workdir { path, user } => {
            h.str("op", "workdir").str("path", path).str("user", user);
            inputs.instruction = format!("WORKDIR {path}");
            inputs.settings.insert("user".into(), user.clone());
        }
        Op::Config => {
            // The expanded text (`ENV A=1`) says what the step changes.
            let text = step.history.as_ref().map(|h| h.created_by.as_str());
            h.str("op", "config").str("text", text.unwrap_or(&step.display));
            inputs.instruction = text.unwrap_or(&step.display).to_string();
        }
    }
    let digest = h.finish();
    let key = match (config_only, parent) {
        (true, Some(p)) => CacheKey { digest, fs: p.fs.clone(), fs_line: p.fs_line },
        _ => CacheKey {
            fs: digest.clone(),
            digest,
            fs_line: step.location.map(|l| l.start_line),
        },
    };
    (key, inputs)
}

fn source_key(source: &Source, h: &mut FieldHasher, inputs: &mut KeyInputs) {
    match source {
        Source::Scratch => {
            h.str("op", "scratch");
            inputs.instruction = "FROM scratch".into();
        }
        // With the image id (the input) in the key, the name adds nothing but
        // would split the cache between two names of one image.
        Source::Image(reference) => {
            h.str("op", "image");
            if inputs.source.is_none() {
                h.str("reference", reference);
            }
            inputs.instruction = format!("FROM {reference}");
        }
        Source::Context => {
            h.str("op", "context");
            inputs.instruction = "load build context".into();
        }
        Source::NamedContext(name) => {
            h.str("op", "named-context").str("name", name);
            inputs.instruction = format!("load build context {name}");
        }
    }
}

fn copy_key(copy: &CopyOp, h: &mut FieldHasher, inputs: &mut KeyInputs) {
    // Destructured without `..`: a field added to CopyOp must be added here.
    let CopyOp {
        is_add,
        sources,
        inline_files,
        dest,
        workdir,
        chown,
        chmod,
        link,
        parents,
        exclude,
        unpack,
        checksum,
    } = copy;
    h.str("op", if *is_add { "add" } else { "copy" })
        .strs("sources", sources)
        .str("dest", dest)
        .str("workdir", workdir)
        .opt_str("chown", chown.as_deref())
        .opt_str("chmod", chmod.as_deref())
        .u64("link", *link as u64)
        .u64("parents", *parents as u64)
        .strs("exclude", exclude)
        .opt_str("unpack", unpack.map(|u| u.to_string()).as_deref())
        .opt_str("checksum", checksum.as_deref());
    h.u64("inline-files", inline_files.len() as u64);
    for InlineFile { name, content } in inline_files {
        h.str("inline-name", name).str("inline-content", content);
        inputs.settings.insert(format!("inline file {name}"), short_digest(content));
    }
    inputs.instruction = copy.text();
    inputs.settings.insert("workdir".into(), workdir.clone());
}

fn run_key(run: &RunOp, default_network: NetworkMode, h: &mut FieldHasher, inputs: &mut KeyInputs) {
    // Destructured without `..`: a field added to RunOp must be added here.
    let RunOp { argv, env, user, workdir, heredocs, network, security, mounts } = run;
    // What the sandbox will actually use, so `--network=none` on the command
    // line and `RUN --network=none` build the same thing.
    let network = match network.as_deref() {
        None | Some("default") => match default_network {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        },
        Some(other) => other,
    };
    h.str("op", "run")
        .strs("argv", argv)
        .str("user", user)
        .str("workdir", workdir)
        .str("network", network)
        .opt_str("security", security.as_deref());
    let env: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| !PROXY_VARIABLES.contains(&name.as_str()))
        .collect();
    h.u64("env", env.len() as u64);
    for (name, value) in env {
        h.str("env-name", name).str("env-value", value);
        inputs.variables.push(Variable {
            name: name.clone(),
            digest: short_digest(value),
            value: shown_value(name, value),
        });
    }
    h.u64("heredocs", heredocs.len() as u64);
    for RunHeredoc { name, content, file_descriptor } in heredocs {
        h.str("heredoc-name", name)
            .u64("heredoc-fd", *file_descriptor as u64)
            .str("heredoc-content", content);
        inputs.settings.insert(
            format!("heredoc {name}"),
            format!("fd {file_descriptor}, {}", short_digest(content)),
        );
    }
    inputs.instruction = format!("RUN {}", argv.join(" "));
    inputs.settings.insert("user".into(), user.clone());
    inputs.settings.insert("workdir".into(), workdir.clone());
    inputs.settings.insert("network".into(), network.to_string());
    if let Some(security) = security {
        inputs.settings.insert("security".into(), security.clone());
    }
    h.u64("mounts", mounts.len() as u64);
    for (index, mount) in mounts.iter().enumerate() {
        let text = mount_text(mount);
        h.str("mount", &text);
        inputs.settings.insert(format!("mount {index}"), text);
    }
}

/// A `--mount` as the key sees it: everything but a cache's contents and a secret's value
/// (which no step input ever holds: the files a bind mount reads are the step's source digest).
fn mount_text(mount: &RunMount) -> String {
    let target = &mount.target;
    match &mount.kind {
        MountKind::Bind { source, readwrite } => format!("type=bind,target={target},source={source},rw={readwrite}"),
        MountKind::Cache { id, sharing, readonly, source, mode, uid, gid } => format!(
            "type=cache,target={target},id={id},sharing={sharing:?},ro={readonly},source={source},mode={mode:o},uid={uid},gid={gid}"
        ),
        MountKind::Tmpfs { size } => format!("type=tmpfs,target={target},size={size:?}"),
        MountKind::Secret { id, env, required, mode, uid, gid } => format!(
            "type=secret,target={target},id={id},env={},required={required},mode={mode:o},uid={uid},gid={gid}",
            env.as_deref().unwrap_or("")
        ),
        MountKind::Ssh { id, required, mode, uid, gid } => {
            format!("type=ssh,target={target},id={id},required={required},mode={mode:o},uid={uid},gid={gid}")
        }
    }
}

pub(crate) fn short_digest(value: &str) -> String {
    Digest::of_bytes(value.as_bytes()).hex()[..16].to_string()
}

/// The value of a variable as explanations may show it: not when it is long,
/// nor when its name suggests a secret passed (unwisely) as a build arg.
fn shown_value(name: &str, value: &str) -> Option<String> {
    const SECRET_WORDS: [&str; 7] = ["SECRET", "TOKEN", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "AUTH"];
    let upper = name.to_ascii_uppercase();
    if value.len() > SHOWN_VALUE_MAX || SECRET_WORDS.iter().any(|w| upper.contains(w)) {
        return None;
    }
    Some(value.to_string())
}
