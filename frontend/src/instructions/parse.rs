//! Parser nodes → typed instructions and stages.

use super::flags::{FlagKind, Flags};
use super::*;
use crate::parser::{self, Node};

/// Every instruction keyword rbuild knows, for "did you mean" suggestions.
const KEYWORDS: &[&str] = &[
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
];

/// Parses Dockerfile text into typed stages.
pub fn parse_dockerfile(source: &str) -> Result<Dockerfile, DockerfileError> {
    parse_with_syntax_tree(source).map(|(_, dockerfile)| dockerfile)
}

/// Parses Dockerfile text into its syntax tree and its typed stages (the
/// build checks read both).
pub fn parse_with_syntax_tree(source: &str) -> Result<(parser::Dockerfile, Dockerfile), DockerfileError> {
    let ast = parser::parse(source).map_err(|e| DockerfileError {
        line: e.line,
        column: 1,
        message: e.message.clone(),
    })?;
    let dockerfile = typed(&ast)?;
    Ok((ast, dockerfile))
}

fn typed(ast: &parser::Dockerfile) -> Result<Dockerfile, DockerfileError> {
    let mut dockerfile = Dockerfile {
        meta_args: Vec::new(),
        stages: Vec::new(),
        escape: ast.escape,
        syntax: ast.directives.syntax.clone(),
        check: ast.directives.check.clone(),
    };
    for node in &ast.children {
        let location = location_of(node);
        let at = |message: String| DockerfileError::at(location, message);
        if node.keyword == "from" {
            let stage = parse_from(node, dockerfile.stages.len()).map_err(at)?;
            dockerfile.stages.push(stage);
            continue;
        }
        let instruction = parse_instruction(node).map_err(at)?;
        match dockerfile.stages.last_mut() {
            Some(stage) => stage.commands.push(Command {
                instruction,
                location,
                original: node.original.clone(),
            }),
            None => match instruction {
                Instruction::Arg(args) => dockerfile
                    .meta_args
                    .extend(args.into_iter().map(|a| (a, location))),
                other => {
                    return Err(at(format!(
                        "{} is not allowed before the first FROM (only ARG is)",
                        other.keyword()
                    )))
                }
            },
        }
    }
    if dockerfile.stages.is_empty() {
        return Err(DockerfileError {
            line: ast.end_line.max(1),
            column: 1,
            message: "the Dockerfile has no FROM instruction".into(),
        });
    }
    Ok(dockerfile)
}

fn location_of(node: &Node) -> Location {
    Location {
        start_line: node.start_line,
        end_line: node.end_line,
    }
}

fn parse_from(node: &Node, index: usize) -> Result<Stage, String> {
    let flags = Flags::parse("FROM", &node.flags, &[("platform", FlagKind::String)])?;
    let name = match node.args.as_slice() {
        [_] => None,
        [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            validate_stage_name(name)?;
            Some(name.to_ascii_lowercase())
        }
        _ => return Err("FROM requires either one or three arguments: FROM <image> [AS <name>]".into()),
    };
    Ok(Stage {
        index,
        name,
        base: node.args[0].clone(),
        platform: flags.string("platform"),
        location: location_of(node),
        commands: Vec::new(),
    })
}

/// Stage names follow BuildKit's rule: a letter, then letters, digits, `_`, `-`, `.`.
fn validate_stage_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
        ))
    }
}

fn parse_instruction(node: &Node) -> Result<Instruction, String> {
    let keyword = node.keyword.to_ascii_uppercase();
    let no_flags = |node: &Node| Flags::parse(&keyword, &node.flags, &[]);
    match node.keyword.as_str() {
        "arg" => {
            no_flags(node)?;
            parse_arg(node).map(Instruction::Arg)
        }
        "env" | "label" => {
            no_flags(node)?;
            let pairs = key_values(node, &keyword)?;
            Ok(if keyword == "ENV" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            })
        }
        "run" => parse_run(node),
        "cmd" => {
            no_flags(node)?;
            Ok(Instruction::Cmd(command_line(node, &keyword)?))
        }
        "entrypoint" => {
            no_flags(node)?;
            Ok(Instruction::Entrypoint(command_line(node, &keyword)?))
        }
        "copy" | "add" => parse_copy(node, node.keyword == "add"),
        "workdir" => {
            no_flags(node)?;
            single_argument(node, &keyword).map(Instruction::Workdir)
        }
        "user" => {
            no_flags(node)?;
            single_argument(node, &keyword).map(Instruction::User)
        }
        "stopsignal" => {
            no_flags(node)?;
            single_argument(node, &keyword).map(Instruction::StopSignal)
        }
        "maintainer" => {
            no_flags(node)?;
            single_argument(node, &keyword).map(Instruction::Maintainer)
        }
        "expose" => {
            no_flags(node)?;
            at_least_one(node, &keyword)?;
            Ok(Instruction::Expose(node.args.clone()))
        }
        "volume" => {
            no_flags(node)?;
            let volumes: Vec<String> = node
                .args
                .iter()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            if volumes.is_empty() {
                return Err("VOLUME specified can not be an empty string".into());
            }
            Ok(Instruction::Volume(volumes))
        }
        "shell" => {
            no_flags(node)?;
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".into());
            }
            at_least_one(node, &keyword)?;
            Ok(Instruction::Shell(node.args.clone()))
        }
        "healthcheck" => parse_healthcheck(node),
        "onbuild" => {
            no_flags(node)?;
            parse_onbuild(node)
        }
        "from" => unreachable!("FROM is handled by parse_dockerfile"),
        other => Err(unknown_instruction(other)),
    }
}

fn unknown_instruction(keyword: &str) -> String {
    let upper = keyword.to_ascii_uppercase();
    match suggest_instruction(&upper) {
        Some(s) => format!("unknown instruction: {upper} (did you mean {s}?)"),
        None => format!("unknown instruction: {upper}"),
    }
}

/// The known keyword closest to `word`, when it is close enough to be a typo.
pub fn suggest_instruction(word: &str) -> Option<&'static str> {
    crate::suggest::closest(&word.to_ascii_uppercase(), KEYWORDS.iter().copied())
}

fn at_least_one(node: &Node, keyword: &str) -> Result<(), String> {
    if node.args.is_empty() {
        Err(format!("{keyword} requires at least one argument"))
    } else {
        Ok(())
    }
}

fn single_argument(node: &Node, keyword: &str) -> Result<String, String> {
    match node.args.as_slice() {
        [one] if !one.trim().is_empty() => Ok(one.clone()),
        [] | [_] => Err(format!("{keyword} requires exactly one argument")),
        _ => Err(format!("{keyword} requires exactly one argument")),
    }
}

fn parse_arg(node: &Node) -> Result<Vec<ArgDecl>, String> {
    at_least_one(node, "ARG")?;
    node.args
        .iter()
        .map(|word| {
            let (name, default) = match word.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (word.clone(), None),
            };
            if name.is_empty() {
                return Err(format!("ARG names can not be blank: {word:?}"));
            }
            Ok(ArgDecl { name, default })
        })
        .collect()
}

/// ENV and LABEL arrive as (key, value, separator) triples.
fn key_values(node: &Node, keyword: &str) -> Result<Vec<KeyValue>, String> {
    if node.args.is_empty() {
        return Err(format!("{keyword} requires at least one argument"));
    }
    if !node.args.len().is_multiple_of(3) {
        return Err(format!("{keyword}: malformed key/value list"));
    }
    Ok(node
        .args
        .chunks(3)
        .map(|t| KeyValue {
            key: t[0].clone(),
            value: t[1].clone(),
        })
        .collect())
}

fn command_line(node: &Node, keyword: &str) -> Result<CommandLine, String> {
    if node.json {
        Ok(CommandLine::Exec(node.args.clone()))
    } else {
        let text = node.args.join(" ");
        if text.trim().is_empty() && keyword == "RUN" {
            return Err("RUN requires at least one argument".into());
        }
        Ok(CommandLine::Shell(text))
    }
}

fn parse_run(node: &Node) -> Result<Instruction, String> {
    let flags = Flags::parse(
        "RUN",
        &node.flags,
        &[
            ("mount", FlagKind::List),
            ("network", FlagKind::String),
            ("security", FlagKind::String),
            ("device", FlagKind::List),
        ],
    )?;
    if node.args.is_empty() && node.heredocs.is_empty() {
        return Err("RUN requires at least one argument".into());
    }
    if let Some(network) = flags.string("network") {
        if !matches!(network.as_str(), "default" | "none" | "host") {
            return Err(format!("unsupported network mode {network:?} (default, none or host)"));
        }
    }
    if !flags.list("device").is_empty() {
        return Err("RUN --device (CDI devices) is not supported".into());
    }
    if let Some(security) = flags.string("security") {
        if !matches!(security.as_str(), "sandbox" | "insecure") {
            return Err(format!("unsupported security mode {security:?} (sandbox or insecure)"));
        }
    }
    Ok(Instruction::Run(RunInstruction {
        command: command_line(node, "RUN")?,
        heredocs: node.heredocs.clone(),
        mounts: flags.list("mount"),
        network: flags.string("network"),
        security: flags.string("security"),
    }))
}

fn parse_copy(node: &Node, is_add: bool) -> Result<Instruction, String> {
    let keyword = if is_add { "ADD" } else { "COPY" };
    let mut accepted = vec![
        ("chown", FlagKind::String),
        ("chmod", FlagKind::String),
        ("link", FlagKind::Bool),
        ("parents", FlagKind::Bool),
        ("exclude", FlagKind::List),
    ];
    if is_add {
        accepted.extend([
            ("checksum", FlagKind::String),
            ("keep-git-dir", FlagKind::Bool),
            ("unpack", FlagKind::Bool),
        ]);
    } else {
        accepted.push(("from", FlagKind::String));
    }
    let flags = Flags::parse(keyword, &node.flags, &accepted)?;
    // A heredoc source appears in the arguments as its `<<EOF` word.
    let heredoc_words = node.heredocs.len();
    let plain = node.args.len().saturating_sub(heredoc_words);
    if node.args.len() < 2 {
        return Err(format!("{keyword} requires at least two arguments, but only one was provided. Destination could not be determined"));
    }
    let dest = node.args.last().cloned().unwrap_or_default();
    let sources: Vec<String> = node.args[..node.args.len() - 1]
        .iter()
        .filter(|a| !is_heredoc_word(a))
        .cloned()
        .collect();
    debug_assert!(sources.len() <= plain);
    Ok(Instruction::Copy(CopyInstruction {
        is_add,
        sources,
        dest,
        heredocs: node.heredocs.clone(),
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link"),
        parents: flags.bool("parents"),
        exclude: flags.list("exclude"),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.bool("keep-git-dir"),
        unpack: flags.optional_bool("unpack"),
    }))
}

/// `<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`: words the parser turned into heredocs.
fn is_heredoc_word(word: &str) -> bool {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    rest.starts_with("<<") && rest.len() > 2
}

fn parse_healthcheck(node: &Node) -> Result<Instruction, String> {
    let flags = Flags::parse(
        "HEALTHCHECK",
        &node.flags,
        &[
            ("interval", FlagKind::String),
            ("timeout", FlagKind::String),
            ("start-period", FlagKind::String),
            ("start-interval", FlagKind::String),
            ("retries", FlagKind::String),
        ],
    )?;
    let kind = node
        .args
        .first()
        .ok_or("HEALTHCHECK requires an argument: CMD or NONE")?
        .to_ascii_uppercase();
    let command = match kind.as_str() {
        "NONE" => {
            if node.args.len() > 1 {
                return Err("HEALTHCHECK NONE takes no arguments".into());
            }
            if !node.flags.is_empty() {
                return Err("HEALTHCHECK NONE takes no options".into());
            }
            None
        }
        "CMD" => {
            let rest = &node.args[1..];
            if rest.is_empty() {
                return Err("HEALTHCHECK CMD requires a command".into());
            }
            Some(if node.json {
                CommandLine::Exec(rest.to_vec())
            } else {
                CommandLine::Shell(rest.join(" "))
            })
        }
        other => return Err(format!("unknown type {other:?} in HEALTHCHECK (try CMD or NONE)")),
    };
    Ok(Instruction::Healthcheck(HealthcheckInstruction {
        command,
        interval: flags.string("interval"),
        timeout: flags.string("timeout"),
        start_period: flags.string("start-period"),
        start_interval: flags.string("start-interval"),
        retries: flags.string("retries"),
    }))
}

fn parse_onbuild(node: &Node) -> Result<Instruction, String> {
    let trigger = node
        .next
        .as_deref()
        .ok_or("ONBUILD requires at least one argument")?;
    match trigger.keyword.as_str() {
        "onbuild" => return Err("chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
        "from" | "maintainer" => {
            return Err(format!(
                "{} isn't allowed as an ONBUILD trigger",
                trigger.keyword.to_ascii_uppercase()
            ))
        }
        _ => {}
    }
    // The trigger is checked now so a typo fails this build, not the child's.
    parse_instruction(trigger)?;
    let original = node.original.trim_start();
    let keyword_len = "ONBUILD".len();
    let text = match original.get(..keyword_len) {
        Some(head) if head.eq_ignore_ascii_case("onbuild") => &original[keyword_len..],
        _ => original,
    }
    .trim()
    .to_string();
    Ok(Instruction::Onbuild(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(src: &str) -> Instruction {
        let df = parse_dockerfile(src).unwrap();
        df.stages[0].commands[0].instruction.clone()
    }

    #[test]
    fn suggests_close_keywords() {
        assert_eq!(suggest_instruction("WROKDIR"), Some("WORKDIR"));
        assert_eq!(suggest_instruction("COYP"), Some("COPY"));
        assert_eq!(suggest_instruction("ENTRYPIONT"), Some("ENTRYPOINT"));
        assert_eq!(suggest_instruction("XYZZYQQ"), None);
    }

    #[test]
    fn unknown_instruction_names_line_and_suggestion() {
        let err = parse_dockerfile("FROM scratch\n\nWROKDIR /x\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("did you mean WORKDIR?"), "{}", err.message);
    }

    #[test]
    fn stages_and_meta_args() {
        let df = parse_dockerfile(
            "ARG BASE=scratch\nFROM ${BASE} AS Build\nCOPY a b\nfrom build\nCMD [\"x\"]\n",
        )
        .unwrap();
        assert_eq!(df.meta_args.len(), 1);
        assert_eq!(df.meta_args[0].0.name, "BASE");
        assert_eq!(df.stages.len(), 2);
        assert_eq!(df.stages[0].name.as_deref(), Some("build"));
        assert_eq!(df.stages[1].base, "build");
        assert_eq!(df.stages[1].location.start_line, 4);
    }

    #[test]
    fn instruction_before_from_is_an_error() {
        let err = parse_dockerfile("ENV A=b\nFROM scratch\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("before the first FROM"));
    }

    #[test]
    fn copy_flags_and_sources() {
        match only("FROM scratch\nCOPY --from=build --chown=1:2 a b /dst/\n") {
            Instruction::Copy(c) => {
                assert_eq!(c.sources, vec!["a", "b"]);
                assert_eq!(c.dest, "/dst/");
                assert_eq!(c.from.as_deref(), Some("build"));
                assert_eq!(c.chown.as_deref(), Some("1:2"));
                assert!(!c.is_add);
            }
            other => panic!("{other:?}"),
        }
        let err = parse_dockerfile("FROM scratch\nADD --from=x a b\n").unwrap_err();
        assert!(err.message.contains("unknown flag: --from"), "{}", err.message);
        let err = parse_dockerfile("FROM scratch\nCOPY a\n").unwrap_err();
        assert!(err.message.contains("at least two arguments"));
    }

    #[test]
    fn copy_heredoc_source() {
        match only("FROM scratch\nCOPY <<EOF /etc/x\nhello\nEOF\n") {
            Instruction::Copy(c) => {
                assert!(c.sources.is_empty());
                assert_eq!(c.heredocs.len(), 1);
                assert_eq!(c.heredocs[0].content, "hello\n");
                assert_eq!(c.dest, "/etc/x");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn command_forms() {
        assert_eq!(
            only("FROM scratch\nCMD [\"a\", \"b\"]\n"),
            Instruction::Cmd(CommandLine::Exec(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            only("FROM scratch\nENTRYPOINT echo hi\n"),
            Instruction::Entrypoint(CommandLine::Shell("echo hi".into()))
        );
        assert!(parse_dockerfile("FROM scratch\nSHELL /bin/bash -c\n")
            .unwrap_err()
            .message
            .contains("JSON form"));
    }

    #[test]
    fn env_label_arg() {
        assert_eq!(
            only("FROM scratch\nENV A=1 B=\"two words\"\n"),
            Instruction::Env(vec![
                KeyValue { key: "A".into(), value: "1".into() },
                KeyValue { key: "B".into(), value: "\"two words\"".into() },
            ])
        );
        assert_eq!(
            only("FROM scratch\nARG X Y=2\n"),
            Instruction::Arg(vec![
                ArgDecl { name: "X".into(), default: None },
                ArgDecl { name: "Y".into(), default: Some("2".into()) },
            ])
        );
        assert!(parse_dockerfile("FROM scratch\nENV\n").is_err());
    }

    #[test]
    fn healthcheck_and_onbuild() {
        match only("FROM scratch\nHEALTHCHECK --interval=5s --retries=3 CMD true\n") {
            Instruction::Healthcheck(h) => {
                assert_eq!(h.command, Some(CommandLine::Shell("true".into())));
                assert_eq!(h.interval.as_deref(), Some("5s"));
                assert_eq!(h.retries.as_deref(), Some("3"));
            }
            other => panic!("{other:?}"),
        }
        match only("FROM scratch\nHEALTHCHECK NONE\n") {
            Instruction::Healthcheck(h) => assert_eq!(h.command, None),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            only("FROM scratch\nONBUILD RUN echo $HOME\n"),
            Instruction::Onbuild("RUN echo $HOME".into())
        );
        assert!(parse_dockerfile("FROM scratch\nONBUILD ONBUILD RUN x\n").is_err());
        assert!(parse_dockerfile("FROM scratch\nONBUILD FROM x\n").is_err());
    }

    #[test]
    fn from_forms() {
        assert!(parse_dockerfile("FROM a b\n").is_err());
        assert!(parse_dockerfile("FROM a AS 1bad\n").is_err());
        let df = parse_dockerfile("FROM --platform=linux/amd64 a AS B\n").unwrap();
        assert_eq!(df.stages[0].platform.as_deref(), Some("linux/amd64"));
        assert!(parse_dockerfile("# only a comment\n").is_err());
    }
}
