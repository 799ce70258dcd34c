//! Rules over the syntax tree: how instructions are written.

use super::Finding;
use crate::parser::{Dockerfile, Node};

pub(super) fn check(source: &str, ast: &Dockerfile, out: &mut Vec<Finding>) {
    for warning in &ast.warnings {
        out.push(Finding::new("NoEmptyContinuation", warning.line, warning.message.clone()));
    }
    instruction_casing(&ast.children, out);
    let lines: Vec<&str> = source.lines().collect();
    let mut stage_names: Vec<String> = Vec::new();
    for node in &ast.children {
        let line = node.start_line;
        match node.keyword.as_str() {
            "from" => stage_name(node, &mut stage_names, out),
            "env" | "label" if node.args.chunks(3).any(|kv| kv.get(2).is_some_and(String::is_empty)) => {
                let keyword = node.keyword.to_ascii_uppercase();
                out.push(Finding::new(
                    "LegacyKeyValueFormat",
                    line,
                    format!("{keyword} uses the legacy \"{keyword} key value\" form instead of \"{keyword} key=value\""),
                ));
            }
            "maintainer" => out.push(Finding::new("MaintainerDeprecated", line, "MAINTAINER is deprecated: the image author is a label")),
            "expose" => expose(node, out),
            _ => {}
        }
        definition_description(&lines, node, out);
    }
}

/// The keyword as written in the file.
fn written_keyword(node: &Node) -> &str {
    node.original.split_whitespace().next().unwrap_or("")
}

fn is_lowercase(s: &str) -> bool {
    s == s.to_lowercase()
}

fn is_uppercase(s: &str) -> bool {
    s == s.to_uppercase()
}

/// ConsistentInstructionCasing: each keyword in the case most keywords have.
fn instruction_casing(nodes: &[Node], out: &mut Vec<Finding>) {
    let lower = nodes.iter().filter(|n| is_lowercase(written_keyword(n))).count();
    let upper = nodes.iter().filter(|n| is_uppercase(written_keyword(n))).count();
    let (majority, fits): (&str, fn(&str) -> bool) =
        if lower > upper { ("lowercase", is_lowercase) } else { ("uppercase", is_uppercase) };
    for node in nodes.iter().filter(|n| !fits(written_keyword(n))) {
        out.push(Finding::new(
            "ConsistentInstructionCasing",
            node.start_line,
            format!("instruction '{}' is not {majority}, as most instructions in the file are", written_keyword(node)),
        ));
    }
}

/// FromAsCasing, StageNameCasing, ReservedStageName and DuplicateStageName.
fn stage_name(node: &Node, seen: &mut Vec<String>, out: &mut Vec<Finding>) {
    let [_, as_word, name] = node.args.as_slice() else { return };
    let line = node.start_line;
    let from = written_keyword(node);
    if (is_lowercase(from) && !is_lowercase(as_word)) || (is_uppercase(from) && !is_uppercase(as_word)) {
        out.push(Finding::new("FromAsCasing", line, format!("'{as_word}' is not cased like '{from}'")));
    }
    if !is_lowercase(name) {
        out.push(Finding::new("StageNameCasing", line, format!("stage name '{name}' is not lowercase")));
    }
    let lower = name.to_ascii_lowercase();
    if lower == "scratch" || lower == "context" {
        out.push(Finding::new("ReservedStageName", line, format!("'{lower}' is a reserved name, not a stage name")));
    }
    if seen.contains(&lower) {
        out.push(Finding::new("DuplicateStageName", line, format!("stage name '{lower}' is already used by an earlier stage")));
    }
    seen.push(lower);
}

/// ExposeProtoCasing and ExposeInvalidFormat, on ports without variables.
fn expose(node: &Node, out: &mut Vec<Finding>) {
    for port in node.args.iter().filter(|p| !p.contains('$')) {
        let (number, protocol) = port.split_once('/').unwrap_or((port, ""));
        if !is_lowercase(protocol) {
            out.push(Finding::new("ExposeProtoCasing", node.start_line, format!("protocol in EXPOSE '{port}' is not lowercase")));
        }
        if number.contains(':') {
            out.push(Finding::new(
                "ExposeInvalidFormat",
                node.start_line,
                format!("EXPOSE '{port}' holds an IP address or host port mapping; EXPOSE names container ports only"),
            ));
        }
    }
}

/// InvalidDefinitionDescription: the comment line right above a named FROM or
/// an ARG starts with the name it describes.
fn definition_description(lines: &[&str], node: &Node, out: &mut Vec<Finding>) {
    let names: Vec<&str> = match node.keyword.as_str() {
        "from" => node.args.get(2).map(String::as_str).into_iter().collect(),
        "arg" => node.args.iter().map(|a| a.split('=').next().unwrap_or(a)).collect(),
        _ => return,
    };
    let Some(comment) = node
        .start_line
        .checked_sub(2)
        .and_then(|i| lines.get(i))
        .and_then(|l| l.trim_start().strip_prefix('#'))
        .map(str::trim)
    else {
        return;
    };
    let directive = comment.split_once('=').is_some_and(|(name, _)| {
        ["syntax", "escape", "check"].contains(&name.trim().to_ascii_lowercase().as_str())
    });
    let first = comment.split(' ').next().unwrap_or("");
    if names.is_empty() || directive || names.contains(&first) {
        return;
    }
    let example = if names.len() > 1 { "<name>" } else { names[0] };
    out.push(Finding::new(
        "InvalidDefinitionDescription",
        node.start_line,
        format!("the comment above {} does not describe it: write `# {example} <description>`, or separate it with an empty line", node.keyword.to_ascii_uppercase()),
    ));
}
