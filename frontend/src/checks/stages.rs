//! Rules over the typed stages: ARGs in FROM, and what each stage does.

use std::collections::{BTreeMap, BTreeSet};

use super::{is_secret_name, Finding};
use crate::graph::Platform;
use crate::instructions::{CommandLine, Dockerfile, Instruction, Stage};
use crate::lower::scope::platform_args;
use crate::shell::Lexer;

/// What a stage has set so far; a stage built on another starts with its facts.
#[derive(Clone, Default)]
struct StageFacts {
    shell_set: bool,
    workdir_set: bool,
    /// ARG and ENV names the stage sees.
    declared: BTreeSet<String>,
}

pub(super) fn check(dockerfile: &Dockerfile, out: &mut Vec<Finding>) {
    let lexer = Lexer::new(dockerfile.escape);
    let host = Platform::host();
    let platform: Vec<(String, String)> = platform_args(&host, &host);
    // Every global ARG counts as declared (FROM sees it), and its value with defaults alone.
    let mut declared: BTreeMap<String, String> = platform.iter().cloned().collect();
    let mut defaults: BTreeMap<String, String> = declared.clone();
    for (decl, location) in &dockerfile.meta_args {
        secret_name("ARG", &decl.name, location.start_line, out);
        declared.insert(decl.name.clone(), String::new());
        let value = decl.default.as_ref().and_then(|d| lexer.process_word(d, &defaults).ok());
        if let Some(value) = value {
            defaults.insert(decl.name.clone(), value.value);
        }
    }
    let globals: BTreeSet<&str> = dockerfile.meta_args.iter().map(|(d, _)| d.name.as_str()).collect();
    let mut facts: Vec<StageFacts> = Vec::new();
    for stage in &dockerfile.stages {
        from_args(&lexer, stage, &declared, &defaults, dockerfile, out);
        let parent = dockerfile.stages[..stage.index]
            .iter()
            .find(|s| s.name.as_deref() == Some(stage.base.to_ascii_lowercase().as_str()));
        let mut stage_facts = parent.map(|p| facts[p.index].clone()).unwrap_or_default();
        commands(stage, &globals, &mut stage_facts, out);
        facts.push(stage_facts);
    }
}

/// UndefinedArgInFrom, InvalidDefaultArgInFrom, RedundantTargetPlatform and
/// FromPlatformFlagConstDisallowed.
fn from_args(
    lexer: &Lexer,
    stage: &Stage,
    declared: &BTreeMap<String, String>,
    defaults: &BTreeMap<String, String>,
    dockerfile: &Dockerfile,
    out: &mut Vec<Finding>,
) {
    let line = stage.location.start_line;
    for word in std::iter::once(&stage.base).chain(stage.platform.as_ref()) {
        let Ok(expanded) = lexer.process_word(word, declared) else { continue };
        for name in &expanded.unset {
            let hint = crate::suggest::closest(name, declared.keys().map(String::as_str))
                .map(|n| format!(" (did you mean {n}?)"))
                .unwrap_or_default();
            out.push(Finding::new("UndefinedArgInFrom", line, format!("FROM uses ARG '{name}', which is not declared before the first FROM{hint}")));
        }
    }
    if let Ok(base) = lexer.process_word(&stage.base, defaults) {
        let lower = base.value.to_ascii_lowercase();
        let is_stage = dockerfile.stages[..stage.index].iter().any(|s| s.name.as_deref() == Some(lower.as_str()));
        if stage.base.contains('$') && !is_stage && lower != "scratch" && !is_valid_reference(&base.value) {
            out.push(Finding::new(
                "InvalidDefaultArgInFrom",
                line,
                format!("FROM {} gives the invalid image name '{}' when no --build-arg is given", stage.base, base.value),
            ));
        }
    }
    let Some(platform) = &stage.platform else { return };
    let trimmed = platform.trim();
    if trimmed == "$TARGETPLATFORM" || trimmed == "${TARGETPLATFORM}" {
        out.push(Finding::new("RedundantTargetPlatform", line, format!("--platform={trimmed} in FROM is redundant: it is the default")));
    } else if !trimmed.contains('$') {
        let mut parts = trimmed.split('/');
        let (os, arch) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let name = stage.name.as_deref().unwrap_or("");
        if !os.is_empty() && !arch.is_empty() && !name.contains(os) && !name.contains(arch) {
            out.push(Finding::new(
                "FromPlatformFlagConstDisallowed",
                line,
                format!("FROM --platform has the constant value \"{trimmed}\": the stage cannot be built for another platform"),
            ));
        }
    }
}

/// Whether `reference` can name an image: `[host/]path[:tag][@digest]`,
/// path components lowercase.
fn is_valid_reference(reference: &str) -> bool {
    let (name, digest) = reference.split_once('@').unwrap_or((reference, ""));
    let (path, tag) = match name.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') => (path, Some(tag)),
        _ => (name, None),
    };
    let tag_ok = tag.is_none_or(|t| {
        !t.is_empty() && t.len() <= 128 && t.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) && !t.starts_with(['.', '-'])
    });
    let digest_ok = digest.is_empty() || digest.contains(':');
    let mut components = path.split('/');
    let first = components.next().unwrap_or("");
    let is_host = path.contains('/') && (first.contains(['.', ':']) || first == "localhost");
    let component_ok = |c: &str| {
        !c.is_empty() && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
            && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
    };
    let first_ok = if is_host { !first.is_empty() && !first.contains(char::is_whitespace) } else { component_ok(first) };
    tag_ok && digest_ok && first_ok && components.all(component_ok)
}

/// The rules about what a stage's instructions do.
fn commands(stage: &Stage, globals: &BTreeSet<&str>, facts: &mut StageFacts, out: &mut Vec<Finding>) {
    let mut last: BTreeMap<&'static str, usize> = BTreeMap::new();
    for command in &stage.commands {
        let line = command.location.start_line;
        let keyword = command.instruction.keyword();
        match &command.instruction {
            Instruction::Arg(decls) => {
                for decl in decls {
                    secret_name("ARG", &decl.name, line, out);
                    facts.declared.insert(decl.name.clone());
                }
            }
            Instruction::Env(pairs) => {
                for pair in pairs {
                    secret_name("ENV", &pair.key, line, out);
                    facts.declared.insert(pair.key.clone());
                }
            }
            Instruction::Shell(_) => facts.shell_set = true,
            Instruction::Cmd(CommandLine::Shell(_)) | Instruction::Entrypoint(CommandLine::Shell(_)) if !facts.shell_set => {
                out.push(Finding::new(
                    "JSONArgsRecommended",
                    line,
                    format!("{keyword} in shell form runs under a shell that does not pass signals such as SIGTERM on to the program"),
                ));
            }
            Instruction::Workdir(path) => {
                if !facts.workdir_set && !path.starts_with(['/', '$']) {
                    out.push(Finding::new(
                        "WorkdirRelativePath",
                        line,
                        format!("relative WORKDIR '{path}' depends on the base image's working directory"),
                    ));
                }
                facts.workdir_set = true;
            }
            Instruction::Run(run) => {
                let mut texts: Vec<&str> = run.heredocs.iter().filter(|h| h.expand).map(|h| h.content.as_str()).collect();
                if let CommandLine::Shell(text) = &run.command {
                    texts.push(text);
                }
                let used: BTreeSet<String> = texts.iter().flat_map(|t| shell_variables(t)).collect();
                for name in used.iter().filter(|n| globals.contains(n.as_str()) && !facts.declared.contains(*n)) {
                    out.push(Finding::new(
                        "GlobalArgNotRedeclared",
                        line,
                        format!("${name} is empty here: ARG {name} is declared before the first FROM, and a stage sees such an ARG only after redeclaring it"),
                    ));
                }
            }
            _ => {}
        }
        if matches!(keyword, "CMD" | "ENTRYPOINT" | "HEALTHCHECK") {
            if let Some(previous) = last.insert(keyword, line) {
                out.push(Finding::new(
                    "MultipleInstructionsDisallowed",
                    previous,
                    format!("this {keyword} is overridden by the one on line {line}: a stage keeps only its last {keyword}"),
                ));
            }
        }
    }
}

/// SecretsUsedInArgOrEnv.
fn secret_name(instruction: &str, key: &str, line: usize, out: &mut Vec<Finding>) {
    if is_secret_name(key) {
        out.push(Finding::new(
            "SecretsUsedInArgOrEnv",
            line,
            format!("{instruction} {key} looks like it holds a secret, which would stay in the image's metadata"),
        ));
    }
}

/// The names a shell would expand in `text` (`$NAME`, `${NAME…}`), outside
/// single quotes.
fn shell_variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let (mut single, mut double) = (false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if !single => {
                chars.next();
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '$' if !single => {
                if chars.peek() == Some(&'{') {
                    chars.next();
                }
                let mut name = String::new();
                while let Some(&n) = chars.peek().filter(|n| n.is_ascii_alphanumeric() || **n == '_') {
                    name.push(n);
                    chars.next();
                }
                if name.starts_with(|n: char| n.is_ascii_alphabetic() || n == '_') {
                    names.push(name);
                }
            }
            _ => {}
        }
    }
    names
}
