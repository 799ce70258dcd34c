//! Dockerfile text → syntax tree.
//!
//! The parser splits a Dockerfile into instructions the way BuildKit's
//! Dockerfile frontend does, without giving them meaning: each [`Node`] holds
//! the keyword, `--flags`, argument strings (quotes and variables still
//! unexpanded where the instruction expands them later), heredoc bodies and
//! the physical lines it came from. [`Dockerfile::dump`] renders the tree in
//! the reference dump format that the conformance tests compare against.
//!
//! The stages live in submodules: physical lines and continuations
//! ([`lines`]), parser directives ([`directives`]), keyword and flags
//! ([`instruction`]), per-instruction argument rules ([`arguments`], [`words`]),
//! heredocs ([`heredoc`], [`shell_words`]) and the dump ([`dump`]).

mod arguments;
mod directives;
mod dump;
mod heredoc;
mod instruction;
mod lines;
mod shell_words;
mod words;

#[cfg(test)]
mod tests;

pub use directives::{detect_syntax, Directives};
pub use heredoc::{parse_heredoc_word, HeredocWordError};

use directives::DirectiveHeader;
use lines::{read_logical_line, LineReader};

/// The escape character when no `escape` directive chooses another.
pub const DEFAULT_ESCAPE: char = '\\';

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub directives: Directives,
    /// The effective escape character: `\` or `` ` ``.
    pub escape: char,
    /// One node per instruction, in file order.
    pub children: Vec<Node>,
    /// Problems that don't stop parsing, such as blank lines inside a line
    /// continuation.
    pub warnings: Vec<ParseWarning>,
    /// First line of the first instruction (1-based).
    pub start_line: usize,
    /// Last line of the last instruction, heredoc bodies included.
    pub end_line: usize,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction name, lower-cased: `from`, `run`, `copy`, … Unknown
    /// names are kept too; the instruction layer rejects them.
    pub keyword: String,
    /// The instruction's text with continuations joined, trimmed.
    pub original: String,
    /// Leading `--flag` words with quotes removed, e.g. `--from=build`.
    pub flags: Vec<String>,
    /// The argument strings, as listed in the dump: words for FROM, EXPOSE,
    /// ARG and non-JSON ADD/COPY/VOLUME; the whole shell-form command for
    /// RUN, CMD, ENTRYPOINT and SHELL; `key, value, separator` triples for ENV
    /// and LABEL (separator `=`, or empty for the legacy `KEY value` form);
    /// `[kind, command…]` for HEALTHCHECK (`CMD …` or `NONE`); nothing for
    /// ONBUILD, whose instruction is in `next`; one empty string for unknown
    /// keywords.
    pub args: Vec<String>,
    /// The arguments came from a JSON array (exec form). For HEALTHCHECK this
    /// is the form of its command.
    pub json: bool,
    /// Heredoc bodies opened on this instruction's line, in order. For
    /// `ONBUILD RUN <<EOF` they belong to the nested RUN node in `next`.
    pub heredocs: Vec<Heredoc>,
    /// First physical line (1-based).
    pub start_line: usize,
    /// Last physical line, including skipped lines inside the continuation and
    /// heredoc bodies. A nested ONBUILD node has its parent's range.
    pub end_line: usize,
    /// ONBUILD's instruction.
    pub next: Option<Box<Node>>,
}

/// A heredoc attached to an instruction (`RUN <<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The terminator word with quotes and escapes resolved: `EOF` for
    /// `<<"EOF"`.
    pub name: String,
    /// The body: every line between the instruction and the terminator, each
    /// with its line ending (so it ends with `\n` unless empty). For `<<-`
    /// the leading tabs of each line are already removed.
    pub content: String,
    /// Variables in the body are expanded: no part of the name was quoted.
    pub expand: bool,
    /// Written `<<-`: leading tabs are stripped from body and terminator.
    pub chomp: bool,
    /// The file descriptor of the `3<<EOF` form.
    pub file_descriptor: Option<u32>,
}

/// A problem that doesn't stop parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseWarning {
    /// The last line of the instruction it concerns.
    pub line: usize,
    pub message: String,
}

/// Why a Dockerfile could not be parsed, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// The line of the problem; for a bad instruction, its first line.
    pub line: usize,
    pub message: String,
}

impl ParseError {
    fn new(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

/// Parses a Dockerfile. A file without any instruction is an error.
pub fn parse(source: &str) -> Result<Dockerfile, ParseError> {
    let mut lines = LineReader::new(source);
    let mut header = DirectiveHeader::new("#");
    let mut escape = DEFAULT_ESCAPE;
    let mut escape_directive = None;
    let mut children = Vec::new();
    let mut warnings = Vec::new();

    while let Some(line) = lines.next_line()? {
        let text = line.text().trim_start();
        let at_line = |message: String| ParseError::new(line.number, message);
        // Directive lines are comments too, so they never start an instruction.
        if let Some(directive) = header.parse_line(text).map_err(at_line)? {
            if directive.name == "escape" {
                escape = directives::escape_char(&directive.value).map_err(at_line)?;
                escape_directive = Some(escape);
            }
        }
        let Some(logical) = read_logical_line(line, text, &mut lines, escape)? else {
            continue;
        };
        if logical.has_empty_continuation {
            warnings.push(ParseWarning {
                line: logical.end_line,
                message: format!("Empty continuation line found in: {}", logical.text),
            });
        }

        let at_instruction = |message: String| ParseError::new(logical.start_line, message);
        let mut node =
            instruction::node_from_line(&logical.text, escape).map_err(at_instruction)?;
        read_heredocs(&mut node, &logical.text, logical.start_line, &mut lines)?;
        set_lines(&mut node, logical.start_line, lines.current_line());
        children.push(node);
    }

    let (Some(first), Some(last)) = (children.first(), children.last()) else {
        return Err(ParseError::new(
            lines.current_line().max(1),
            "file with no instructions",
        ));
    };
    let (start_line, end_line) = (first.start_line, last.end_line);
    Ok(Dockerfile {
        directives: Directives {
            syntax: detect_syntax(source),
            escape: escape_directive,
            check: directives::find_directive(source, "check"),
        },
        escape,
        children,
        warnings,
        start_line,
        end_line,
    })
}

/// Reads the bodies of the heredocs opened on `line`, if `node` is an
/// instruction that takes heredocs: RUN, COPY or ADD in shell form, directly
/// or under ONBUILD.
fn read_heredocs(
    node: &mut Node,
    line: &str,
    start_line: usize,
    lines: &mut LineReader<'_>,
) -> Result<(), ParseError> {
    let target = match node.next.as_deref_mut() {
        Some(nested) if node.keyword == "onbuild" => nested,
        _ => node,
    };
    if !matches!(target.keyword.as_str(), "run" | "copy" | "add")
        || target.json
        || !line.contains("<<")
    {
        return Ok(());
    }
    let heredocs =
        heredoc::heredocs_in_line(line).map_err(|e| ParseError::new(start_line, e.to_string()))?;
    for mut heredoc in heredocs {
        if !heredoc::read_body(&mut heredoc, lines)? {
            return Err(ParseError::new(
                start_line,
                format!("unterminated heredoc {:?}", heredoc.name),
            ));
        }
        target.heredocs.push(heredoc);
    }
    Ok(())
}

fn set_lines(node: &mut Node, start_line: usize, end_line: usize) {
    node.start_line = start_line;
    node.end_line = end_line;
    if let Some(next) = node.next.as_deref_mut() {
        set_lines(next, start_line, end_line);
    }
}
