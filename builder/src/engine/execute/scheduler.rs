//! The parallel scheduler: every step whose inputs are ready starts, up to
//! the [`Limits`], on tokio's blocking pool (steps copy files and wait for
//! sandboxes, so they block). The first failure cancels the rest: no new step
//! starts, running sandboxes are killed, and that first error is the one
//! reported.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use petgraph::visit::EdgeRef;
use petgraph::Direction;
use rbuild_frontend::excerpt::excerpt;
use rbuild_frontend::graph::{Base, BuildGraph, Edge, Op, StepId};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::step_cache::StepResult;
use super::step::{MountInput, StepInputs, StepRunner};
use crate::engine::settings::Limits;
use super::state::FsState;
use crate::engine::error::BuildError;
use rbuild_sandbox as sandbox;

/// How one step went, for progress and `rbuild graph --timings`.
#[derive(Debug, Clone)]
pub struct StepTiming {
    pub step: StepId,
    pub seconds: f64,
    pub cached: bool,
}

/// The states that no step read (the last of each stage, and the result), and
/// the timings of the steps that ran.
pub struct Outcome {
    pub states: HashMap<StepId, FsState>,
    pub timings: Vec<StepTiming>,
}

/// Runs the graph of `runner` within `limits`; the state of step `result` is
/// in the outcome.
pub async fn schedule(
    runner: Arc<StepRunner>,
    visible: Arc<HashSet<StepId>>,
    limits: Limits,
    result: StepId,
) -> Result<Outcome, BuildError> {
    let graph = runner.graph.clone();
    let labels = Arc::new(step_labels(&graph, &visible));
    // Inputs still missing per step; a step is ready at zero.
    let mut waiting: HashMap<StepId, usize> = graph
        .graph
        .node_indices()
        .map(|id| (id, graph.graph.edges_directed(id, Direction::Incoming).count()))
        .collect();
    let mut readers: HashMap<StepId, usize> = graph
        .graph
        .node_indices()
        .map(|id| (id, graph.graph.edges_directed(id, Direction::Outgoing).count()))
        .collect();
    // The caller's result stays whoever else reads it.
    readers.remove(&result);
    let mut ready: Vec<StepId> = waiting.iter().filter(|(_, n)| **n == 0).map(|(id, _)| *id).collect();
    // Start in graph order, so progress numbers mostly appear in order.
    ready.sort_by_key(|id| std::cmp::Reverse(id.index()));

    let jobs = Arc::new(Semaphore::new(limits.jobs.unwrap_or(Semaphore::MAX_PERMITS).max(1)));
    let cpu = Arc::new(Semaphore::new(limits.cpu.max(1)));
    let counter = Arc::new(AtomicUsize::new(0));
    let mut running: JoinSet<(StepId, Result<StepResult, BuildError>, Duration)> = JoinSet::new();
    let mut states: HashMap<StepId, FsState> = HashMap::new();
    let mut timings = Vec::new();
    let mut first_error: Option<BuildError> = None;

    loop {
        while first_error.is_none() {
            let Some(id) = ready.pop() else { break };
            let inputs = inputs_of(&runner, id, &mut states, &mut readers);
            let runner = runner.clone();
            let labels = labels.clone();
            let counter = counter.clone();
            let jobs = jobs.clone();
            let cpu = cpu.clone();
            let is_run = matches!(graph.step(id).op, Op::Run(_));
            running.spawn(async move {
                let _job = jobs.acquire_owned().await.expect("the semaphore is never closed");
                let _cpu = match is_run {
                    true => None,
                    false => Some(cpu.acquire_owned().await.expect("the semaphore is never closed")),
                };
                let started = Instant::now();
                let result = tokio::task::spawn_blocking(move || {
                    // Numbered as they start, like BuildKit's `#N` lines: the
                    // number is taken and announced under the progress lock, so
                    // steps starting at once still appear in number order.
                    let number = labels.get(&id).map(|label| {
                        let mut progress = runner.progress();
                        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                        progress.step_started(n, label);
                        n
                    });
                    let result = runner.execute_cached(id, inputs, number);
                    if let (Some(n), Ok(done)) = (number, &result) {
                        if done.cached {
                            runner.progress().step_cached(n);
                        } else {
                            runner.progress().step_done(n, started.elapsed());
                        }
                    }
                    result
                })
                .await
                .unwrap_or_else(|panic| Err(BuildError::Internal(format!("a build step panicked: {panic}"))));
                (id, result, started.elapsed())
            });
        }
        let Some(joined) = running.join_next().await else { break };
        let (id, result, elapsed) = joined.map_err(|e| BuildError::Internal(format!("a build task failed: {e}")))?;
        match result {
            Ok(done) => {
                timings.push(StepTiming { step: id, seconds: elapsed.as_secs_f64(), cached: done.cached });
                states.insert(id, done.state);
                for edge in graph.graph.edges_directed(id, Direction::Outgoing) {
                    let user = edge.target();
                    let count = waiting.get_mut(&user).expect("every step is counted");
                    *count -= 1;
                    if *count == 0 {
                        ready.push(user);
                    }
                }
            }
            Err(error) => {
                if first_error.is_none() {
                    first_error = Some(error);
                    // The other running steps are cancelled: their sandboxes
                    // die, their steps fail, and those errors are dropped.
                    let kill = tokio::task::spawn_blocking(sandbox::kill_running_sandboxes);
                    let _ = kill.await;
                }
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(Outcome { states, timings }),
    }
}

/// The states step `id` starts from. A state is kept only until the last step
/// that reads it has taken it (which takes it without a copy), so a build holds
/// the states of its frontier, not of every step; states nothing reads (the
/// last step of each stage) stay for the caller.
fn inputs_of(runner: &StepRunner, id: StepId, states: &mut HashMap<StepId, FsState>, readers: &mut HashMap<StepId, usize>) -> StepInputs {
    let graph = &runner.graph;
    let mut inputs = StepInputs::default();
    for edge in graph.graph.edges_directed(id, Direction::Incoming) {
        let source = edge.source();
        let left = readers.get_mut(&source).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        let state = match left {
            Some(0) => states.remove(&source),
            _ => states.get(&source).cloned(),
        };
        match edge.weight() {
            Edge::Parent => inputs.parent = state,
            Edge::CopyFrom => inputs.copy_from = state,
            Edge::MountFrom(index) => inputs.mounts.push(MountInput { index: *index, source, state }),
        }
    }
    inputs
}

/// The progress label of each of `visible`, computed once for the build: a
/// step's position in its stage is looked up, not searched for.
fn step_labels(graph: &BuildGraph, visible: &HashSet<StepId>) -> HashMap<StepId, String> {
    let positions: HashMap<StepId, usize> = graph
        .stages
        .iter()
        .flat_map(|plan| plan.steps.iter().enumerate().map(|(i, id)| (*id, i)))
        .collect();
    visible.iter().map(|id| (*id, step_label(graph, *id, &positions))).collect()
}

/// `[stage-name 2/4] COPY a /b`, as BuildKit shows a step: its label in
/// progress output, from its position in its stage's steps.
fn step_label(graph: &BuildGraph, id: StepId, positions: &HashMap<StepId, usize>) -> String {
    let step = graph.step(id);
    let Some(stage_index) = step.stage else {
        return excerpt(&step.display).into_owned();
    };
    let Some(plan) = graph.stages.iter().find(|s| s.index == stage_index) else {
        return excerpt(&step.display).into_owned();
    };
    // FROM is step 1, except for a stage on a directory: loading it is its first step.
    let from = usize::from(!matches!(plan.base, Base::Context(_)));
    let total = plan.steps.len() + from;
    let position = positions.get(&id).map(|p| p + 1 + from).unwrap_or(1);
    let name = plan.name.clone().unwrap_or_else(|| format!("stage-{}", plan.index));
    // Bounded: a generated instruction may be 64 KiB on one line, or far more
    // continued over many.
    format!("[{name} {position}/{total}] {}", excerpt(&step.display))
}
