//! Typed Dockerfile instructions.
//!
//! The parser yields loose nodes (a keyword, flags and argument strings); this
//! module checks each instruction's flags and arity and turns it into a typed
//! [`Instruction`], grouped into [`Stage`]s. Variables are *not* expanded here:
//! expansion depends on build arguments and base images, which only lowering
//! knows.

mod flags;
mod parse;

pub use parse::{parse_dockerfile, parse_with_syntax_tree, suggest_instruction};

use crate::parser::Heredoc;

/// A Dockerfile location: 1-based physical lines, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    pub start_line: usize,
    pub end_line: usize,
}

/// An error tied to a place in the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct DockerfileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl DockerfileError {
    pub fn at(location: Location, message: impl Into<String>) -> Self {
        DockerfileError {
            line: location.start_line,
            column: 1,
            message: message.into(),
        }
    }
}

/// A command given in shell form (run through the stage's SHELL) or exec form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Shell(String),
    Exec(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    /// The default as written (unexpanded), if any.
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyInstruction {
    /// `true` for ADD.
    pub is_add: bool,
    /// Sources as written (unexpanded); heredoc sources are in `heredocs`.
    pub sources: Vec<String>,
    pub dest: String,
    pub heredocs: Vec<Heredoc>,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
    /// ADD --checksum, --keep-git-dir, --unpack: accepted and checked by the builder.
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInstruction {
    pub command: CommandLine,
    pub heredocs: Vec<Heredoc>,
    /// Raw `--mount` values; mounts are not supported yet and lowering says so.
    pub mounts: Vec<String>,
    pub network: Option<String>,
    pub security: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthcheckInstruction {
    /// `None` for `HEALTHCHECK NONE`.
    pub command: Option<CommandLine>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub retries: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Arg(Vec<ArgDecl>),
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Run(RunInstruction),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Copy(CopyInstruction),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    StopSignal(String),
    Shell(Vec<String>),
    Healthcheck(HealthcheckInstruction),
    /// The trigger instruction's text, stored unexpanded.
    Onbuild(String),
    Maintainer(String),
}

impl Instruction {
    /// The upper-case keyword, for messages and history.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Arg(_) => "ARG",
            Instruction::Env(_) => "ENV",
            Instruction::Label(_) => "LABEL",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Copy(c) if c.is_add => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Shell(_) => "SHELL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// One instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub instruction: Instruction,
    pub location: Location,
    /// The instruction as written (continuations joined), for messages.
    pub original: String,
}

/// A `FROM` line and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages, from 0.
    pub index: usize,
    /// `AS name`, lower-cased (stage names are case-insensitive).
    pub name: Option<String>,
    /// The base as written (unexpanded): an image reference, a stage name or `scratch`.
    pub base: String,
    /// `FROM --platform=...` as written.
    pub platform: Option<String>,
    pub location: Location,
    pub commands: Vec<Command>,
}

/// A parsed and typed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// ARGs declared before the first FROM.
    pub meta_args: Vec<(ArgDecl, Location)>,
    pub stages: Vec<Stage>,
    pub escape: char,
    /// The `# syntax=` directive, if any.
    pub syntax: Option<String>,
    /// The `# check=` directive, if any (see [`crate::checks::CheckConfig`]).
    pub check: Option<String>,
}
