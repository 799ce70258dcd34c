//! `--explain-cache`: why a step missed the cache.
//!
//! Every stored step also leaves its [`KeyInputs`] under its identity (the
//! Dockerfile, the stage, the instruction's position in it). On a miss, the
//! inputs are compared with each of the step's recent earlier inputs, and the
//! closest one (fewest differences) explains the miss: changed files, changed
//! variables, a changed instruction or setting, or a changed parent.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rbuild_frontend::graph::{BuildGraph, StepId};
use rbuild_store::{CacheIndex, Digest};
use serde::Serialize;

use super::hasher::FieldHasher;
use super::key::{KeyInputs, SourceInputs};
use super::source::SelectedFile;

/// How many file names an explanation lists.
const FILES_SHOWN: usize = 10;
/// Instruction texts longer than this are cut in explanations.
const TEXT_SHOWN: usize = 160;

/// Which step of which Dockerfile: what "an earlier build of the same step" means.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct StepIdentity {
    /// The Dockerfile, as the build names it (relative to the context when it
    /// is inside it, so clones in other directories share explanations).
    pub dockerfile: String,
    /// The stage's name, or its index when it has none.
    pub stage: String,
    /// The instruction's position in the stage, from 0.
    pub position: usize,
}

impl StepIdentity {
    /// The identity of step `id` of `graph`; `None` for shared sources
    /// (`FROM` images, the context), which are not instructions of a stage.
    pub fn of(graph: &BuildGraph, id: StepId, dockerfile: &str) -> Option<StepIdentity> {
        graph.stages.iter().find_map(|stage| {
            let position = stage.steps.iter().position(|s| *s == id)?;
            Some(StepIdentity {
                dockerfile: dockerfile.to_string(),
                stage: stage.name.clone().unwrap_or_else(|| stage.index.to_string()),
                position,
            })
        })
    }

    pub(crate) fn digest(&self) -> Digest {
        let mut h = FieldHasher::new("rbuild-step-identity/v1");
        h.str("dockerfile", &self.dockerfile)
            .str("stage", &self.stage)
            .u64("position", self.position as u64);
        h.finish()
    }
}

/// Why a step missed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Explanation {
    /// No earlier build of this step is recorded.
    FirstBuild,
    /// An earlier build had exactly these inputs; its result was pruned.
    SameInputs,
    Changed { differences: Vec<Difference> },
    /// The recorded inputs could not be read.
    Unavailable { reason: String },
}

/// One way the inputs differ from the closest earlier build's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Difference {
    Instruction { before: String, after: String },
    /// A flag or setting: workdir, user, network, heredoc or inline file
    /// content, platform, `SOURCE_DATE_EPOCH`. `None`: not set.
    Setting { name: String, before: Option<String>, after: Option<String> },
    /// A variable the step sees (a build arg or ENV). `None`: not set; the
    /// value is shown as `(hidden)` when it is long or looks secret.
    Variable { name: String, before: Option<String>, after: Option<String> },
    /// Selected files; names listed up to a limit, `more` counts the rest.
    Files { changed: Vec<String>, added: Vec<String>, removed: Vec<String>, more: usize },
    /// The input changed as a whole (another base image, another source kind).
    Source { before: String, after: String },
    /// The filesystem the step starts from changed; `line` is the Dockerfile
    /// line of the step that made it (`None`: the base image).
    Parent { line: Option<usize> },
}

/// Explains a miss of the step `identity` whose inputs are `inputs`.
pub fn explain_miss(index: &CacheIndex, identity: &StepIdentity, inputs: &KeyInputs) -> Explanation {
    let recent = match index.recent_inputs(&identity.digest()) {
        Ok(recent) => recent,
        Err(e) => return Explanation::Unavailable { reason: e.to_string() },
    };
    let mut best: Option<(usize, Vec<Difference>)> = None;
    for (_, bytes) in recent {
        // Inputs written by another rbuild version may not parse: skip them.
        let Ok(before) = serde_json::from_slice::<KeyInputs>(&bytes) else {
            continue;
        };
        let (score, differences) = compare(&before, inputs);
        if best.as_ref().is_none_or(|(s, _)| score < *s) {
            best = Some((score, differences));
        }
    }
    match best {
        None => Explanation::FirstBuild,
        Some((_, differences)) if differences.is_empty() => Explanation::SameInputs,
        Some((_, differences)) => Explanation::Changed { differences },
    }
}

/// The differences from `before` to `after`, the step's own first and the
/// parent last, with a score: how many things changed (each file counts).
fn compare(before: &KeyInputs, after: &KeyInputs) -> (usize, Vec<Difference>) {
    let mut out = Vec::new();
    let mut score = 0;
    if before.instruction != after.instruction {
        out.push(Difference::Instruction {
            before: cut(&before.instruction),
            after: cut(&after.instruction),
        });
    }
    let mut settings = |name: &str, b: Option<String>, a: Option<String>| {
        if b != a {
            out.push(Difference::Setting { name: name.to_string(), before: b, after: a });
        }
    };
    settings("platform", Some(before.platform.clone()), Some(after.platform.clone()));
    settings(
        "SOURCE_DATE_EPOCH",
        before.source_date_epoch.map(|e| e.to_string()),
        after.source_date_epoch.map(|e| e.to_string()),
    );
    let names: BTreeSet<&String> = before.settings.keys().chain(after.settings.keys()).collect();
    for name in names {
        settings(name, before.settings.get(name).cloned(), after.settings.get(name).cloned());
    }
    out.extend(variable_differences(before, after));
    score += out.len();
    match (&before.source, &after.source) {
        (Some(b), Some(a)) if b.digest != a.digest => {
            let (difference, files) = source_difference(b, a);
            score += files.max(1);
            out.push(difference);
        }
        (None, Some(a)) => {
            score += 1;
            out.push(Difference::Source { before: "none".into(), after: a.digest.clone() });
        }
        (Some(b), None) => {
            score += 1;
            out.push(Difference::Source { before: b.digest.clone(), after: "none".into() });
        }
        _ => {}
    }
    if before.parent.as_ref().map(|p| &p.key) != after.parent.as_ref().map(|p| &p.key) {
        score += 1;
        out.push(Difference::Parent {
            line: after.parent.as_ref().and_then(|p| p.line),
        });
    }
    (score, out)
}

fn variable_differences(before: &KeyInputs, after: &KeyInputs) -> Vec<Difference> {
    let shown = |v: &super::key::Variable| v.value.clone().unwrap_or_else(|| "(hidden)".into());
    let b: BTreeMap<&str, _> = before.variables.iter().map(|v| (v.name.as_str(), v)).collect();
    let a: BTreeMap<&str, _> = after.variables.iter().map(|v| (v.name.as_str(), v)).collect();
    let names: BTreeSet<&str> = b.keys().chain(a.keys()).copied().collect();
    names
        .into_iter()
        .filter(|n| b.get(n).map(|v| &v.digest) != a.get(n).map(|v| &v.digest))
        .map(|n| Difference::Variable {
            name: n.to_string(),
            before: b.get(n).map(|v| shown(v)),
            after: a.get(n).map(|v| shown(v)),
        })
        .collect()
}

/// What changed between two selections, and how many entries did.
fn source_difference(before: &SourceInputs, after: &SourceInputs) -> (Difference, usize) {
    if before.kind != after.kind || (before.files.is_empty() && after.files.is_empty()) {
        let difference = Difference::Source {
            before: format!("{} {}", before.kind.as_str(), before.digest),
            after: format!("{} {}", after.kind.as_str(), after.digest),
        };
        return (difference, 1);
    }
    let b: BTreeMap<&str, &SelectedFile> = before.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let a: BTreeMap<&str, &SelectedFile> = after.files.iter().map(|f| (f.path.as_str(), f)).collect();
    let (mut changed, mut added, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for (path, file) in &a {
        match b.get(path) {
            None => added.push(path.to_string()),
            Some(old) if old != file => changed.push(path.to_string()),
            Some(_) => {}
        }
    }
    removed.extend(b.keys().filter(|p| !a.contains_key(*p)).map(|p| p.to_string()));
    let total = changed.len() + added.len() + removed.len();
    if total == 0 {
        // Same entries, differently selected (another item name, say).
        let difference = Difference::Source { before: before.digest.clone(), after: after.digest.clone() };
        return (difference, 1);
    }
    let mut room = FILES_SHOWN;
    for list in [&mut changed, &mut added, &mut removed] {
        list.truncate(room);
        room -= list.len();
    }
    let more = total - (changed.len() + added.len() + removed.len());
    (Difference::Files { changed, added, removed, more }, total)
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(TEXT_SHOWN) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Explanation::FirstBuild => f.write_str("no earlier build of this step to compare with"),
            Explanation::SameInputs => {
                f.write_str("an earlier build had the same inputs, but its result is no longer cached")
            }
            Explanation::Unavailable { reason } => write!(f, "cannot explain: {reason}"),
            Explanation::Changed { differences } => {
                for (i, d) in differences.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{d}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Instruction { before, after } => {
                write!(f, "instruction changed: {before:?} → {after:?}")
            }
            Difference::Setting { name, before, after } => change(f, name, before, after),
            Difference::Variable { name, before, after } => {
                change(f, &format!("variable {name}"), before, after)
            }
            Difference::Files { changed, added, removed, more } => {
                let mut parts = Vec::new();
                for (what, list) in [("changed", changed), ("added", added), ("removed", removed)] {
                    if !list.is_empty() {
                        parts.push(format!("files {what}: {}", list.join(", ")));
                    }
                }
                if *more > 0 {
                    parts.push(format!("and {more} more"));
                }
                f.write_str(&parts.join("; "))
            }
            Difference::Source { before, after } => write!(f, "source changed: {before} → {after}"),
            Difference::Parent { line: Some(line) } => write!(f, "parent changed: line {line}"),
            Difference::Parent { line: None } => f.write_str("parent changed: base image"),
        }
    }
}

fn change(f: &mut fmt::Formatter<'_>, name: &str, before: &Option<String>, after: &Option<String>) -> fmt::Result {
    match (before, after) {
        (Some(b), Some(a)) => write!(f, "{name} changed: {b:?} → {a:?}"),
        (None, Some(a)) => write!(f, "{name} added: {a:?}"),
        (Some(b), None) => write!(f, "{name} removed (was {b:?})"),
        (None, None) => write!(f, "{name} changed"),
    }
}
