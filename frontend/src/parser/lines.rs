//! Physical lines of a Dockerfile and the rules that join them into the text of
//! one instruction (escape-character continuations, skipped comments and blank
//! lines inside a continuation).

use super::ParseError;

/// The longest physical line accepted, in bytes, not counting its `\n`.
pub(super) const MAX_LINE_LEN: usize = 65535;

/// One physical line, numbered from 1.
#[derive(Debug, Clone, Copy)]
pub(super) struct Line<'a> {
    pub number: usize,
    /// The line as read, including its line terminator if it had one; heredoc
    /// bodies keep these bytes unchanged.
    pub raw: &'a str,
}

impl<'a> Line<'a> {
    /// The line without any trailing CR/LF characters.
    pub fn text(&self) -> &'a str {
        self.raw.trim_end_matches(['\r', '\n'])
    }
}

/// Hands out the physical lines of a source one at a time, so that heredoc
/// bodies can be consumed right after the instruction that opens them.
pub(super) struct LineReader<'a> {
    rest: &'a str,
    number: usize,
}

impl<'a> LineReader<'a> {
    pub fn new(source: &'a str) -> Self {
        LineReader {
            rest: source,
            number: 0,
        }
    }

    /// Number of the last line handed out (0 before the first).
    pub fn current_line(&self) -> usize {
        self.number
    }

    /// The next physical line, or `None` at the end of the source. A UTF-8 BOM
    /// at the very start is dropped; a line over [`MAX_LINE_LEN`] is an error.
    pub fn next_line(&mut self) -> Result<Option<Line<'a>>, ParseError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let end = self.rest.find('\n').map_or(self.rest.len(), |i| i + 1);
        let (mut raw, rest) = self.rest.split_at(end);
        self.rest = rest;
        self.number += 1;
        if raw.strip_suffix('\n').unwrap_or(raw).len() > MAX_LINE_LEN {
            return Err(ParseError::new(
                self.number,
                format!("dockerfile line greater than max allowed size of {MAX_LINE_LEN}"),
            ));
        }
        if self.number == 1 {
            raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
        }
        Ok(Some(Line {
            number: self.number,
            raw,
        }))
    }
}

/// The joined text of one instruction and the physical lines it spans.
#[derive(Debug)]
pub(super) struct LogicalLine {
    pub text: String,
    pub start_line: usize,
    pub end_line: usize,
    /// A blank line was skipped inside the continuation.
    pub has_empty_continuation: bool,
}

/// Whether a line is a comment: its first non-blank character is `#`.
pub(super) fn is_comment(text: &str) -> bool {
    text.trim_start().starts_with('#')
}

/// If `text` ends with an unescaped escape character, optionally followed by
/// spaces or tabs, returns the text before that character: the instruction
/// continues on the next line. An escape character preceded by another one is
/// literal, so `\\` at the end of a line does not continue it.
pub(super) fn strip_continuation(text: &str, escape: char) -> Option<&str> {
    let before = text.trim_end_matches([' ', '\t']).strip_suffix(escape)?;
    if before.ends_with(escape) {
        return None;
    }
    Some(before)
}

/// Reads the instruction that starts on `first` (whose text has already had its
/// leading whitespace removed) and every line it continues onto. Returns `None`
/// when the line holds no instruction (blank or comment).
pub(super) fn read_logical_line(
    first: Line<'_>,
    first_text: &str,
    lines: &mut LineReader<'_>,
    escape: char,
) -> Result<Option<LogicalLine>, ParseError> {
    if is_comment(first_text) {
        return Ok(None);
    }
    let (mut text, mut continues) = match strip_continuation(first_text, escape) {
        Some(before) => (before.to_string(), true),
        None if first_text.is_empty() => return Ok(None),
        None => (first_text.to_string(), false),
    };

    let mut has_empty_continuation = false;
    while continues {
        let Some(line) = lines.next_line()? else {
            // A continuation at the end of the file simply ends the instruction.
            break;
        };
        let line_text = line.text();
        // Continuation lines keep their leading whitespace; comments and blank
        // lines inside a continuation are skipped without ending it.
        if is_comment(line_text) {
            continue;
        }
        if line_text.trim_start().is_empty() {
            has_empty_continuation = true;
            continue;
        }
        match strip_continuation(line_text, escape) {
            Some(before) => text.push_str(before),
            None => {
                text.push_str(line_text);
                continues = false;
            }
        }
    }

    Ok(Some(LogicalLine {
        text,
        start_line: first.number,
        end_line: lines.current_line(),
        has_empty_continuation,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_needs_unescaped_escape_at_end() {
        assert_eq!(strip_continuation("a \\", '\\'), Some("a "));
        assert_eq!(strip_continuation("a\\ \t ", '\\'), Some("a"));
        assert_eq!(strip_continuation("\\", '\\'), Some(""));
        assert_eq!(strip_continuation("a \\\\", '\\'), None);
        assert_eq!(strip_continuation("\\\\", '\\'), None);
        assert_eq!(strip_continuation("a \\", '`'), None);
        assert_eq!(strip_continuation("a `", '`'), Some("a "));
        assert_eq!(strip_continuation("", '\\'), None);
    }

    #[test]
    fn reader_numbers_lines_and_strips_bom_once() {
        let mut reader = LineReader::new("\u{feff}a\r\n\u{feff}b\nc");
        let first = reader.next_line().unwrap().unwrap();
        assert_eq!((first.number, first.raw, first.text()), (1, "a\r\n", "a"));
        let second = reader.next_line().unwrap().unwrap();
        assert_eq!((second.number, second.text()), (2, "\u{feff}b"));
        let third = reader.next_line().unwrap().unwrap();
        assert_eq!((third.number, third.raw), (3, "c"));
        assert!(reader.next_line().unwrap().is_none());
        assert_eq!(reader.current_line(), 3);
    }

    #[test]
    fn reader_limits_line_length() {
        let ok = "a".repeat(MAX_LINE_LEN) + "\n";
        assert!(LineReader::new(&ok).next_line().is_ok());
        let long = format!("x\n{}\n", "a".repeat(MAX_LINE_LEN + 1));
        let mut reader = LineReader::new(&long);
        reader.next_line().unwrap();
        let err = reader.next_line().unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(
            err.message,
            "dockerfile line greater than max allowed size of 65535"
        );
    }
}
