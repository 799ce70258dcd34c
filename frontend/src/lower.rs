//! Lowering: typed stages + build arguments + target → [`BuildGraph`].
//!
//! This is where Dockerfile semantics live: ARG scoping (global ARGs before the
//! first FROM, redeclared per stage), ENV/ARG expansion in the instructions that
//! expand, the image config each instruction produces, stage references by
//! name or index, and the pruning of stages the target does not need.

mod config;
mod mounts;
pub(crate) mod scope;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use petgraph::graph::{DiGraph, NodeIndex};

use crate::graph::*;
use crate::instructions::{
    self, ArgDecl, Command, CommandLine, CopyInstruction, Dockerfile, DockerfileError,
    Instruction, Location, RunInstruction, Stage,
};
use crate::checks::Finding;
use crate::shell::{Expanded, Lexer};
use scope::{platform_args, Scope};

/// What the caller decides about a build.
#[derive(Debug, Clone)]
pub struct LowerOptions {
    pub build_args: BTreeMap<String, String>,
    /// Stage name to build; the last stage when `None`.
    pub target: Option<String>,
    pub platform: Platform,
}

/// Looks up base images (FROM, COPY --from) by reference.
pub trait ImageResolver {
    /// The config of the image for `platform` (chosen from a multi-platform
    /// image), or a message saying why it cannot be had.
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ImageMeta, String>;

    /// The reference the builder will find the image `resolve` found for
    /// `platform` by, pinned to its digest, so that a tag moving during the
    /// build cannot change its input. Called after a successful `resolve`.
    fn pinned(&self, reference: &str, _platform: &Platform) -> String {
        reference.to_string()
    }

    /// Whether `name` is a directory given with `--build-context NAME=DIR`,
    /// which `COPY --from=NAME` reads and `FROM NAME` starts a stage with.
    fn is_named_directory(&self, _name: &str) -> bool {
        false
    }

    /// The names of the images the resolver has without asking a registry
    /// (the store's tags): what a mistyped reference is compared with.
    fn known_names(&self) -> Vec<String> {
        Vec::new()
    }
}

pub use crate::graph::DEFAULT_PATH;

/// Build arguments that are always accepted without an ARG, as in BuildKit.
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "SOURCE_DATE_EPOCH",
];

pub fn lower(
    dockerfile: &Dockerfile,
    options: &LowerOptions,
    resolver: &dyn ImageResolver,
) -> Result<BuildGraph, DockerfileError> {
    let mut lowering = Lowering {
        dockerfile,
        options,
        resolver,
        lexer: Lexer::new(dockerfile.escape),
        graph: DiGraph::new(),
        global: Scope::default(),
        consumed: RefCell::new(BTreeSet::new()),
        warnings: Vec::new(),
        undefined: RefCell::new(Vec::new()),
        findings: Vec::new(),
        shared_sources: HashMap::new(),
        stage_results: HashMap::new(),
    };
    lowering.global_args()?;
    let stage_deps = lowering.stage_dependencies()?;
    let target = lowering.target_stage()?;
    let needed = needed_stages(target, &stage_deps);

    let mut stages = Vec::new();
    for stage in dockerfile.stages.iter().filter(|s| needed.contains(&s.index)) {
        stages.push(lowering.lower_stage(stage)?);
    }
    lowering.warn_unused_build_args();
    let target = stages
        .iter()
        .position(|s| s.index == target)
        .expect("the target stage is always needed");
    Ok(BuildGraph {
        graph: lowering.graph,
        stages,
        target,
        platform: options.platform.clone(),
        warnings: lowering.warnings,
        findings: lowering.findings,
    })
}

/// The target and every stage it depends on, transitively.
fn needed_stages(target: usize, deps: &[BTreeSet<usize>]) -> BTreeSet<usize> {
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(stage) = todo.pop() {
        if needed.insert(stage) {
            todo.extend(deps[stage].iter().copied());
        }
    }
    needed
}

struct Lowering<'a> {
    dockerfile: &'a Dockerfile,
    options: &'a LowerOptions,
    resolver: &'a dyn ImageResolver,
    lexer: Lexer,
    graph: DiGraph<Step, Edge>,
    /// ARGs declared before the first FROM, plus the platform ARGs.
    global: Scope,
    /// Build arguments some ARG declared.
    consumed: RefCell<BTreeSet<String>>,
    warnings: Vec<Warning>,
    /// What the expansions of the instruction being lowered found undeclared.
    undefined: RefCell<Vec<String>>,
    /// UndefinedVar findings.
    findings: Vec<Finding>,
    /// Scratch, the context and base images are shared by every stage.
    shared_sources: HashMap<Source, NodeIndex>,
    /// Last step, config and variables of each lowered stage, by Dockerfile index.
    stage_results: HashMap<usize, StageResult>,
}

/// A lowering error before it is placed. Only two places know a location, the FROM line
/// of a stage and the instruction being lowered, and they place it with [`Refusal::at`]:
/// nothing below them passes locations around.
struct Refusal(String);

impl Refusal {
    fn at(self, location: Location) -> DockerfileError {
        DockerfileError::at(location, self.0)
    }
}

/// What a stage's FROM gives it.
struct StageStart {
    base: Base,
    /// The step the stage starts on.
    root: NodeIndex,
    /// The config it inherits.
    image: ImageMeta,
    /// The base image's ONBUILD triggers.
    triggers: Vec<String>,
    /// On another stage: that stage's ARGs.
    inherited_scope: Option<Scope>,
    /// What the stage is built for.
    platform: Platform,
}

/// How a stage is referred to by FROM or COPY --from.
enum StageRef {
    Stage(usize),
    Image(String),
}

impl<'a> Lowering<'a> {
    fn expand(&self, word: &str, scope: &Scope) -> Result<String, Refusal> {
        self.lexer
            .process_word(word, scope)
            .map(|e| self.note_unset(e, scope))
            .map_err(|e| Refusal(format!("failed to expand {:?}: {e}", crate::excerpt::excerpt(word))))
    }

    fn expand_words(&self, word: &str, scope: &Scope) -> Result<Vec<String>, Refusal> {
        self.lexer
            .process_words(word, scope)
            .map(|e| self.note_unset(e, scope))
            .map_err(|e| Refusal(format!("failed to expand {:?}: {e}", crate::excerpt::excerpt(word))))
    }

    /// The value of an expansion, noting each variable it used that `scope`
    /// neither sets nor declares (for UndefinedVar).
    fn note_unset<T>(&self, expanded: Expanded<T>, scope: &Scope) -> T {
        for name in expanded.unset.iter().filter(|n| !scope.is_declared(n) && !PREDEFINED_ARGS.contains(&n.as_str())) {
            let hint = if self.global.is_declared(name) && !self.is_platform_arg(name) {
                format!(" (ARG {name} is declared before the first FROM: redeclare it in the stage)")
            } else {
                crate::suggest::closest(name, scope.names()).map(|n| format!(" (did you mean ${n}?)")).unwrap_or_default()
            };
            self.undefined.borrow_mut().push(format!("variable '${name}' is used but not declared{hint}"));
        }
        expanded.value
    }

    /// UndefinedVar findings of the instruction on `line`: what its expansions noted.
    fn report_undefined(&mut self, line: usize) {
        for message in self.undefined.take() {
            self.findings.push(Finding::new("UndefinedVar", line, message));
        }
    }

    /// Evaluates the ARGs before the first FROM, in order.
    fn global_args(&mut self) -> Result<(), DockerfileError> {
        for (name, value) in platform_args(&self.options.platform, &Platform::host()) {
            self.global.declare(&name, Some(value));
        }
        for (decl, location) in &self.dockerfile.meta_args {
            let value = self.arg_value(decl, &self.global, None).map_err(|e| e.at(*location))?;
            self.global.declare(&decl.name, value);
        }
        Ok(())
    }

    /// The value an ARG takes: the build argument, else its expanded default,
    /// else (in a stage) the global ARG of the same name.
    fn arg_value(
        &self,
        decl: &ArgDecl,
        scope: &Scope,
        inherited: Option<&Scope>,
    ) -> Result<Option<String>, Refusal> {
        if let Some(value) = self.options.build_args.get(&decl.name) {
            self.consumed.borrow_mut().insert(decl.name.clone());
            return Ok(Some(value.clone()));
        }
        if let Some(default) = &decl.default {
            return self.expand(default, scope).map(Some);
        }
        Ok(inherited.and_then(|g| g.arg(&decl.name)))
    }

    /// Which earlier stages each stage needs (FROM and COPY --from), found
    /// before anything is resolved so unneeded stages never touch a base image.
    fn stage_dependencies(&self) -> Result<Vec<BTreeSet<usize>>, DockerfileError> {
        let mut deps = Vec::new();
        for stage in &self.dockerfile.stages {
            let mut needs = BTreeSet::new();
            if let StageRef::Stage(i) = self.base_ref(stage).map_err(|e| e.at(stage.location))? {
                needs.insert(i);
            }
            // --from may use the stage's ARGs; their defaults and build args are
            // known now, ENV from a base image is not (BuildKit does the same).
            let mut scope = self.global.clone();
            for command in &stage.commands {
                match &command.instruction {
                    Instruction::Arg(decls) => {
                        for decl in decls {
                            let value = self
                                .options
                                .build_args
                                .get(&decl.name)
                                .cloned()
                                .or_else(|| decl.default.clone())
                                .or_else(|| self.global.arg(&decl.name));
                            scope.declare(&decl.name, value);
                        }
                    }
                    Instruction::Copy(CopyInstruction { from: Some(from), .. }) => {
                        // A bad --from fails when its stage is lowered, and only
                        // if that stage is needed.
                        let from = self.expand(from, &scope).map_err(|e| e.at(command.location))?;
                        if let Ok(StageRef::Stage(i)) = self.stage_ref(&from, stage.index) {
                            needs.insert(i);
                        }
                    }
                    Instruction::Run(run) => {
                        for from in run.mounts.iter().filter_map(|m| mounts::from_field(m)) {
                            let from = self.expand(from, &scope).map_err(|e| e.at(command.location))?;
                            if let Ok(StageRef::Stage(i)) = self.stage_ref(&from, stage.index) {
                                needs.insert(i);
                            }
                        }
                    }
                    _ => {}
                }
            }
            deps.push(needs);
        }
        Ok(deps)
    }

    fn base_ref(&self, stage: &Stage) -> Result<StageRef, Refusal> {
        let base = self.expand(&stage.base, &self.global)?;
        if base.is_empty() {
            return Err(Refusal(format!("base name ({}) should not be blank", stage.base)));
        }
        let lower = base.to_ascii_lowercase();
        match self.dockerfile.stages[..stage.index]
            .iter()
            .find(|s| s.name.as_deref() == Some(lower.as_str()))
        {
            Some(s) => Ok(StageRef::Stage(s.index)),
            None => Ok(StageRef::Image(base)),
        }
    }

    /// Resolves a `--from` value: a stage index, a stage name, or an image.
    fn stage_ref(&self, from: &str, current: usize) -> Result<StageRef, Refusal> {
        if let Ok(index) = from.parse::<usize>() {
            if index >= current {
                return Err(Refusal(format!(
                    "invalid --from={from}: a stage can only copy from an earlier stage (this is stage {current})"
                )));
            }
            return Ok(StageRef::Stage(index));
        }
        let lower = from.to_ascii_lowercase();
        let stages = &self.dockerfile.stages;
        if let Some(s) = stages[..current].iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
            return Ok(StageRef::Stage(s.index));
        }
        if stages[current..].iter().any(|s| s.name.as_deref() == Some(lower.as_str())) {
            return Err(Refusal(format!(
                "invalid --from={from}: stage {lower:?} is defined later in the Dockerfile; a stage can only copy from earlier stages"
            )));
        }
        Ok(StageRef::Image(from.to_string()))
    }

    fn target_stage(&self) -> Result<usize, DockerfileError> {
        let stages = &self.dockerfile.stages;
        match &self.options.target {
            None => Ok(stages.len() - 1),
            Some(target) => {
                let lower = target.to_ascii_lowercase();
                stages
                    .iter()
                    .find(|s| s.name.as_deref() == Some(lower.as_str()))
                    .map(|s| s.index)
                    .ok_or_else(|| {
                        let names = stages.iter().filter_map(|s| s.name.as_deref());
                        let hint = crate::suggest::closest(&lower, names)
                            .map(|n| format!(" (did you mean {n}?)"))
                            .unwrap_or_default();
                        DockerfileError {
                            line: stages[0].location.start_line,
                            column: 1,
                            message: format!("target stage {target:?} could not be found{hint}"),
                        }
                    })
            }
        }
    }

    fn shared_source(&mut self, source: Source) -> NodeIndex {
        if let Some(id) = self.shared_sources.get(&source) {
            return *id;
        }
        let display = match &source {
            Source::Scratch => "FROM scratch".to_string(),
            Source::Image(r) => format!("FROM {r}"),
            Source::Context => "load build context".to_string(),
            Source::NamedContext(name) => format!("load build context {name}"),
        };
        let id = self.graph.add_node(Step {
            stage: None,
            op: Op::Source(source.clone()),
            location: None,
            display,
            history: None,
        });
        self.shared_sources.insert(source, id);
        id
    }

    /// The config of an image and its pinned source step.
    /// A base image for `platform`: its config and the source step that loads it.
    fn resolve_image(&mut self, reference: &str, platform: &Platform) -> Result<(ImageMeta, NodeIndex), Refusal> {
        let meta = self
            .resolver
            .resolve(reference, platform)
            .map_err(|message| Refusal(self.with_suggestion(reference, message)))?;
        let pinned = self.resolver.pinned(reference, platform);
        Ok((meta, self.shared_source(Source::Image(pinned))))
    }

    /// `message` about an image that could not be had, led by the nearest
    /// stage name or stored image when `reference` reads like a typo of one.
    fn with_suggestion(&self, reference: &str, message: String) -> String {
        let stages = self.dockerfile.stages.iter().filter_map(|s| s.name.clone());
        let candidates: Vec<String> = stages.chain(self.resolver.known_names()).collect();
        match crate::suggest::closest(reference, candidates.iter().map(String::as_str)) {
            Some(near) => format!("{reference} is not in the store or the Dockerfile; did you mean {near}? ({message})"),
            None => message,
        }
    }

    fn lower_stage(&mut self, stage: &Stage) -> Result<StagePlan, DockerfileError> {
        // Errors of the FROM line are placed on it here, and those of each instruction
        // where it is lowered: the two places that know a location.
        let StageStart { base, root, mut image, triggers, inherited_scope, platform } =
            self.lower_from(stage).map_err(|e| e.at(stage.location))?;
        let mut state = StageState {
            index: stage.index,
            platform: platform.clone(),
            current: root,
            scope: inherited_scope.unwrap_or_else(|| Scope::with_env(&image.env)),
            cmd_set: false,
            steps: Vec::new(),
        };
        if let Base::Context(name) = &base {
            self.directory_layer(&mut state, name, stage.location);
        }
        // A base image's ONBUILD triggers run right after FROM.
        for trigger in &triggers {
            for command in onbuild_commands(trigger, stage.location)? {
                self.lower_command(&command, &mut state, &mut image).map_err(|e| e.at(command.location))?;
            }
        }
        for command in &stage.commands {
            self.undefined.borrow_mut().clear();
            self.lower_command(command, &mut state, &mut image).map_err(|e| e.at(command.location))?;
            self.report_undefined(command.location.start_line);
        }
        self.stage_results.insert(
            stage.index,
            StageResult { last: state.current, image: image.clone(), scope: state.scope.clone(), platform: platform.clone() },
        );
        Ok(StagePlan {
            index: stage.index,
            name: stage.name.clone(),
            platform,
            base,
            location: stage.location,
            root,
            last: state.current,
            image,
            steps: state.steps,
        })
    }

    fn lower_from(&mut self, stage: &Stage) -> Result<StageStart, Refusal> {
        let mut platform = self.stage_platform(stage)?;
        // A stage built on another inherits its ARGs as well as its config.
        let mut inherited_scope = None;
        let (base, root, image, triggers) = match self.base_ref(stage)? {
            StageRef::Stage(i) => {
                let parent = self.stage_results[&i].clone();
                inherited_scope = Some(parent.scope);
                // Its filesystem is the parent's: so is its platform, unless FROM names one.
                if stage.platform.is_none() {
                    platform = parent.platform;
                }
                (Base::Stage(i), parent.last, parent.image, Vec::new())
            }
            StageRef::Image(name) if name.eq_ignore_ascii_case("scratch") => {
                (Base::Scratch, self.shared_source(Source::Scratch), ImageMeta::empty(), Vec::new())
            }
            StageRef::Image(name) if self.resolver.is_named_directory(&name) => {
                // As BuildKit gives a stage on a local context.
                (Base::Context(name), self.shared_source(Source::Scratch), ImageMeta::empty(), Vec::new())
            }
            StageRef::Image(name) => {
                let (mut image, root) = self.resolve_image(&name, &platform)?;
                let triggers = std::mem::take(&mut image.on_build);
                (Base::Image(name), root, image, triggers)
            }
        };
        Ok(StageStart { base, root, image, triggers, inherited_scope, platform })
    }

    /// `FROM NAME` of a directory context: the stage starts from scratch with
    /// all of the directory as its first layer, as BuildKit starts it from the
    /// local source. That layer is a copy of `.` to `/` from the directory
    /// (its `.dockerignore` applies; files keep their modes and times and
    /// belong to root, as BuildKit's local sources and COPY give them), a step
    /// of the stage, so the step cache keys it by the files' contents like any
    /// COPY.
    fn directory_layer(&mut self, state: &mut StageState, name: &str, location: Location) {
        let op = Op::Copy(CopyOp::plain(&["."], "/"));
        let id = self.graph.add_node(Step {
            stage: Some(state.index),
            op,
            location: Some(location),
            display: format!("FROM {name}"),
            history: Some(HistoryEntry { created_by: format!("load build context {name}"), empty_layer: false }),
        });
        self.graph.add_edge(state.current, id, Edge::Parent);
        let input = self.shared_source(Source::NamedContext(name.to_string()));
        self.graph.add_edge(input, id, Edge::CopyFrom);
        state.current = id;
        state.steps.push(id);
    }

    /// The platform a stage is built for: its `FROM --platform` (expanded with the global
    /// ARGs, `$BUILDPLATFORM` among them), else the build's.
    fn stage_platform(&self, stage: &Stage) -> Result<Platform, Refusal> {
        let Some(platform) = &stage.platform else { return Ok(self.options.platform.clone()) };
        let text = self.expand(platform, &self.global)?;
        Platform::parse(&text).map_err(|e| Refusal(format!("FROM --platform={text}: {e}")))
    }

    fn add_step(&mut self, state: &mut StageState, command: &Command, op: Op, history: HistoryEntry) {
        let id = self.graph.add_node(Step {
            stage: Some(state.index),
            op,
            location: Some(command.location),
            display: command.original.clone(),
            history: Some(history),
        });
        self.graph.add_edge(state.current, id, Edge::Parent);
        state.current = id;
        state.steps.push(id);
    }

    fn config_step(&mut self, state: &mut StageState, command: &Command, created_by: String) {
        let history = HistoryEntry { created_by, empty_layer: true };
        self.add_step(state, command, Op::Config, history);
    }

    fn lower_command(
        &mut self,
        command: &Command,
        state: &mut StageState,
        image: &mut ImageMeta,
    ) -> Result<(), Refusal> {
        match &command.instruction {
            Instruction::Arg(decls) => {
                let mut shown = Vec::new();
                for decl in decls {
                    let value = self.arg_value(decl, &state.scope, Some(&self.global))?;
                    shown.push(match &value {
                        Some(v) => format!("{}={v}", decl.name),
                        None => decl.name.clone(),
                    });
                    state.scope.declare(&decl.name, value);
                }
                self.config_step(state, command, format!("ARG {}", shown.join(" ")));
            }
            Instruction::Env(pairs) => {
                // Every value sees the environment as it was before this line.
                let mut expanded = Vec::new();
                for kv in pairs {
                    let key = self.expand(&kv.key, &state.scope)?;
                    let value = self.expand(&kv.value, &state.scope)?;
                    expanded.push((key, value));
                }
                for (key, value) in &expanded {
                    image.set_env(key, value);
                    state.scope.set_env(key, value);
                }
                let shown: Vec<String> = expanded.iter().map(|(k, v)| format!("{k}={v}")).collect();
                self.config_step(state, command, format!("ENV {}", shown.join(" ")));
            }
            Instruction::Label(pairs) => {
                let mut shown = Vec::new();
                for kv in pairs {
                    let key = self.expand(&kv.key, &state.scope)?;
                    let value = self.expand(&kv.value, &state.scope)?;
                    if key.is_empty() {
                        return Err(Refusal("LABEL names can not be blank".into()));
                    }
                    shown.push(format!("{key}={value}"));
                    image.labels.insert(key, value);
                }
                self.config_step(state, command, format!("LABEL {}", shown.join(" ")));
            }
            Instruction::Run(run) => self.lower_run(run, command, state, image)?,
            Instruction::Cmd(cmd) => {
                let argv = command_argv(cmd, image);
                self.config_step(state, command, format!("CMD {}", go_quoted_list(&argv)));
                image.cmd = Some(argv);
                state.cmd_set = true;
            }
            Instruction::Entrypoint(entrypoint) => {
                let argv = command_argv(entrypoint, image);
                self.config_step(state, command, format!("ENTRYPOINT {}", go_quoted_list(&argv)));
                image.entrypoint = Some(argv);
                // An ENTRYPOINT resets a CMD inherited from the base, as Docker does.
                if !state.cmd_set {
                    image.cmd = None;
                }
            }
            Instruction::Copy(copy) => self.lower_copy(copy, command, state, image)?,
            Instruction::Workdir(path) => {
                let path = self.expand(path, &state.scope)?;
                if path.is_empty() {
                    return Err(Refusal("WORKDIR requires a non-empty path".into()));
                }
                let path = config::join_workdir(&image.working_dir, &path);
                image.working_dir = path.clone();
                let history = HistoryEntry { created_by: format!("WORKDIR {path}"), empty_layer: true };
                let op = Op::Workdir { path, user: image.user.clone() };
                self.add_step(state, command, op, history);
            }
            Instruction::User(user) => {
                let user = self.expand(user, &state.scope)?;
                self.config_step(state, command, format!("USER {user}"));
                image.user = user;
            }
            Instruction::Expose(ports) => {
                let mut specs = Vec::new();
                for port in ports {
                    specs.extend(self.expand_words(port, &state.scope)?);
                }
                let parsed = config::parse_ports(&specs).map_err(Refusal)?;
                // Shown like BuildKit's Go map: keys sorted.
                let sorted: BTreeSet<&String> = parsed.iter().collect();
                let shown: Vec<String> = sorted.iter().map(|p| format!("{p}:{{}}")).collect();
                image.exposed_ports.extend(parsed);
                self.config_step(state, command, format!("EXPOSE map[{}]", shown.join(" ")));
            }
            Instruction::Volume(volumes) => {
                let mut expanded = Vec::new();
                for v in volumes {
                    let v = self.expand(v, &state.scope)?;
                    if v.trim().is_empty() {
                        return Err(Refusal("VOLUME specified can not be an empty string".into()));
                    }
                    expanded.push(v);
                }
                self.config_step(state, command, format!("VOLUME [{}]", expanded.join(" ")));
                image.volumes.extend(expanded);
            }
            Instruction::StopSignal(signal) => {
                let signal = self.expand(signal, &state.scope)?;
                config::validate_signal(&signal).map_err(Refusal)?;
                self.config_step(state, command, format!("STOPSIGNAL {signal}"));
                image.stop_signal = Some(signal);
            }
            Instruction::Shell(shell) => {
                self.config_step(state, command, format!("SHELL [{}]", shell.join(" ")));
                image.shell = shell.clone();
            }
            Instruction::Healthcheck(health) => {
                let check = config::healthcheck(health).map_err(Refusal)?;
                self.config_step(state, command, format!("HEALTHCHECK {}", config::describe_healthcheck(&check)));
                image.healthcheck = Some(check);
            }
            Instruction::Onbuild(trigger) => {
                self.config_step(state, command, format!("ONBUILD {trigger}"));
                image.on_build.push(trigger.clone());
            }
            Instruction::Maintainer(author) => {
                self.config_step(state, command, format!("MAINTAINER {author}"));
                image.author = Some(author.clone());
            }
        }
        Ok(())
    }

    fn lower_run(
        &mut self,
        run: &RunInstruction,
        command: &Command,
        state: &mut StageState,
        image: &ImageMeta,
    ) -> Result<(), Refusal> {
        let workdir = if image.working_dir.is_empty() { "/".to_string() } else { image.working_dir.clone() };
        let mut mounts = Vec::new();
        let mut inputs = Vec::new();
        for (index, text) in run.mounts.iter().enumerate() {
            let ssh_index = mounts.iter().filter(|m: &&RunMount| matches!(m.kind, MountKind::Ssh { .. })).count();
            let expand = |word: &str| self.expand(word, &state.scope).map_err(|r| r.0);
            let parsed = mounts::parse_mount(text, &workdir, ssh_index, &expand).map_err(|m| Refusal(format!("--mount={text}: {m}")))?;
            let input = match (&parsed.mount.kind, &parsed.from) {
                (MountKind::Bind { .. }, None) => Some(self.shared_source(Source::Context)),
                (_, Some(from)) => Some(self.input_named(from, state.index, &state.platform.clone())?),
                _ => None,
            };
            if let Some(input) = input {
                inputs.push((input, Edge::MountFrom(index)));
            }
            mounts.push(parsed.mount);
        }
        let (argv, heredocs) = run_argv(run, image);
        let args = state.scope.args_with_values();
        let env = state.scope.run_env();
        let mut created_by = String::from("RUN ");
        if !args.is_empty() {
            let shown: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            created_by.push_str(&format!("|{} {} ", shown.len(), shown.join(" ")));
        }
        created_by.push_str(&argv.join(" "));
        created_by.push_str(" # buildkit");
        let op = Op::Run(RunOp {
            argv,
            env,
            user: image.user.clone(),
            workdir,
            heredocs,
            network: run.network.clone(),
            security: run.security.clone(),
            mounts,
        });
        self.add_step(state, command, op, HistoryEntry { created_by, empty_layer: false });
        for (input, edge) in inputs {
            self.graph.add_edge(input, state.current, edge);
        }
        Ok(())
    }

    fn expand_heredoc(&self, content: &str, scope: &Scope) -> Result<String, Refusal> {
        // Quotes in a heredoc body are plain text, as in BuildKit.
        Lexer::new(self.dockerfile.escape)
            .skip_quotes(true)
            .process_word(content, scope)
            .map(|e| e.value)
            .map_err(|e| Refusal(format!("failed to expand heredoc: {e}")))
    }

    /// The step a `--from` (COPY, ADD) or `from=` (RUN --mount) reads: the last step of an
    /// earlier stage, a named directory context, or an image.
    /// An image is taken for `platform`, the reading stage's.
    fn input_named(&mut self, from: &str, current: usize, platform: &Platform) -> Result<NodeIndex, Refusal> {
        match self.stage_ref(from, current)? {
            StageRef::Stage(i) => match self.stage_results.get(&i) {
                Some(result) => Ok(result.last),
                // The stages a build needs are chosen before ENV, a parent stage's ARGs
                // and a base image's ONBUILD triggers are known; a --from that names a
                // stage only through those finds it not chosen (and not lowered).
                None => Err(Refusal(format!(
                    "invalid --from={from}: stage {i} was not chosen for this build; its name comes from ENV, a parent stage's ARG or a base image's ONBUILD trigger, which are applied after the stages are chosen (name the stage directly or with an ARG of this stage)"
                ))),
            },
            StageRef::Image(name) if self.resolver.is_named_directory(&name) => {
                Ok(self.shared_source(Source::NamedContext(name)))
            }
            StageRef::Image(reference) => {
                Ok(self.resolve_image(&reference, platform)?.1)
            }
        }
    }

    fn lower_copy(
        &mut self,
        copy: &CopyInstruction,
        command: &Command,
        state: &mut StageState,
        image: &ImageMeta,
    ) -> Result<(), Refusal> {
        let keyword = if copy.is_add { "ADD" } else { "COPY" };
        let input = match &copy.from {
            None => self.shared_source(Source::Context),
            Some(from) => {
                let from = self.expand(from, &state.scope)?;
                self.input_named(&from, state.index, &state.platform.clone())?
            }
        };
        let mut sources = Vec::new();
        for source in &copy.sources {
            sources.push(self.expand(source, &state.scope)?);
        }
        let mut inline_files = Vec::new();
        for doc in &copy.heredocs {
            let content = if doc.expand {
                self.expand_heredoc(&doc.content, &state.scope)?
            } else {
                doc.content.clone()
            };
            inline_files.push(InlineFile { name: doc.name.clone(), content });
        }
        let dest = self.expand(&copy.dest, &state.scope)?;
        let chown = copy.chown.as_ref().map(|c| self.expand(c, &state.scope)).transpose()?;
        let chmod = copy.chmod.as_ref().map(|c| self.expand(c, &state.scope)).transpose()?;
        let exclude = copy
            .exclude
            .iter()
            .map(|e| self.expand(e, &state.scope))
            .collect::<Result<Vec<_>, _>>()?;

        let mut shown = vec![keyword.to_string()];
        if let Some(from) = &copy.from {
            shown.push(format!("--from={from}"));
        }
        if let Some(chown) = &chown {
            shown.push(format!("--chown={chown}"));
        }
        if let Some(chmod) = &chmod {
            shown.push(format!("--chmod={chmod}"));
        }
        shown.extend(sources.iter().cloned());
        shown.extend(inline_files.iter().map(|f| f.name.clone()));
        shown.push(dest.clone());
        let created_by = format!("{} # buildkit", shown.join(" "));

        let op = Op::Copy(CopyOp {
            is_add: copy.is_add,
            sources,
            inline_files,
            dest,
            workdir: if image.working_dir.is_empty() { "/".into() } else { image.working_dir.clone() },
            chown,
            chmod,
            link: copy.link,
            parents: copy.parents,
            exclude,
            unpack: copy.unpack,
            checksum: copy.checksum.clone(),
        });
        self.add_step(state, command, op, HistoryEntry { created_by, empty_layer: false });
        self.graph.add_edge(input, state.current, Edge::CopyFrom);
        Ok(())
    }

    fn warn_unused_build_args(&mut self) {
        let unused: Vec<&String> = self
            .options
            .build_args
            .keys()
            .filter(|k| !self.consumed.borrow().contains(*k))
            .filter(|k| !PREDEFINED_ARGS.contains(&k.as_str()) && !k.starts_with("BUILDKIT_"))
            .filter(|k| self.global.arg(k).is_none() || !self.is_platform_arg(k))
            .collect();
        // BuildKit reads build arguments named BUILDKIT_* as settings of its own;
        // rbuild has none of them, so each one given is said to do nothing.
        for name in self.options.build_args.keys().filter(|k| k.starts_with("BUILDKIT_")) {
            let why = match name.as_str() {
                "BUILDKIT_INLINE_CACHE" => "rbuild keeps its build cache in its store, not in the image",
                "BUILDKIT_SYNTAX" => "rbuild always uses its own Dockerfile frontend",
                "BUILDKIT_DOCKERFILE_CHECK" => continue,
                _ => "it is a BuildKit setting rbuild does not have",
            };
            self.warnings.push(Warning { line: None, message: format!("build arg {name} has no effect: {why}") });
        }
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            self.warnings.push(Warning {
                line: None,
                message: format!("one or more build args were not consumed: [{}]", names.join(" ")),
            });
        }
    }

    fn is_platform_arg(&self, name: &str) -> bool {
        name.starts_with("TARGET") || name.starts_with("BUILD")
    }
}

/// What later stages need of a lowered stage.
#[derive(Clone)]
struct StageResult {
    last: NodeIndex,
    image: ImageMeta,
    scope: Scope,
    platform: Platform,
}

/// Per-stage state while its instructions are lowered.
struct StageState {
    index: usize,
    /// What the stage is built for.
    platform: Platform,
    current: NodeIndex,
    scope: Scope,
    /// Whether this stage set CMD itself (an ENTRYPOINT keeps such a CMD).
    cmd_set: bool,
    steps: Vec<NodeIndex>,
}

/// A shell-form command runs through the stage's SHELL.
fn command_argv(command: &CommandLine, image: &ImageMeta) -> Vec<String> {
    match command {
        CommandLine::Exec(argv) => argv.clone(),
        CommandLine::Shell(text) => {
            let mut argv = image.shell_or_default();
            argv.push(text.clone());
            argv
        }
    }
}

/// The command a RUN executes. Heredocs follow BuildKit: a RUN that is only
/// one heredoc runs its body with the shell, or, when the body starts with
/// `#!`, as a script (here handed to its interpreter as `/dev/fd/3`); any
/// other heredoc use goes to the shell with the bodies appended, so the shell
/// itself does the redirection and expansion.
fn run_argv(run: &RunInstruction, image: &ImageMeta) -> (Vec<String>, Vec<RunHeredoc>) {
    let CommandLine::Shell(text) = &run.command else {
        return (command_argv(&run.command, image), Vec::new());
    };
    if run.heredocs.is_empty() {
        return (command_argv(&run.command, image), Vec::new());
    }
    let only_heredoc = matches!(crate::parser::parse_heredoc_word(text.trim()), Ok(Some(_)));
    if only_heredoc && run.heredocs.len() == 1 {
        let doc = &run.heredocs[0];
        if let Some(interpreter) = shebang(&doc.content) {
            let mut argv = interpreter;
            argv.push(format!("/dev/fd/{SCRIPT_FD}"));
            let script = RunHeredoc { name: doc.name.clone(), content: doc.content.clone(), file_descriptor: SCRIPT_FD };
            return (argv, vec![script]);
        }
        return (command_argv(&CommandLine::Shell(doc.content.clone()), image), Vec::new());
    }
    let mut full = text.clone();
    for doc in &run.heredocs {
        full.push('\n');
        full.push_str(&doc.content);
        full.push_str(&doc.name);
    }
    (command_argv(&CommandLine::Shell(full), image), Vec::new())
}

/// The descriptor a heredoc script is read from.
const SCRIPT_FD: u32 = 3;

/// `#!/usr/bin/env python3` → `["/usr/bin/env", "python3"]`: the interpreter
/// and, as the kernel does, everything after it as one optional argument.
fn shebang(content: &str) -> Option<Vec<String>> {
    let line = content.strip_prefix("#!")?.lines().next()?.trim();
    let (interpreter, argument) = match line.split_once(char::is_whitespace) {
        Some((i, a)) => (i, Some(a.trim())),
        None => (line, None),
    };
    if interpreter.is_empty() {
        return None;
    }
    let mut argv = vec![interpreter.to_string()];
    argv.extend(argument.filter(|a| !a.is_empty()).map(str::to_string));
    Some(argv)
}

/// `["a" "b"]`: how BuildKit's history shows a command list.
fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// Parses an ONBUILD trigger stored in a base image into commands located at
/// the FROM line that runs them.
fn onbuild_commands(trigger: &str, location: Location) -> Result<Vec<Command>, DockerfileError> {
    let parsed = instructions::parse_dockerfile(&format!("FROM scratch\n{trigger}\n"))
        .map_err(|e| DockerfileError::at(location, format!("invalid ONBUILD trigger {trigger:?}: {}", e.message)))?;
    Ok(parsed
        .stages
        .into_iter()
        .flat_map(|s| s.commands)
        .map(|mut c| {
            c.location = location;
            c
        })
        .collect())
}

#[cfg(test)]
mod tests;
