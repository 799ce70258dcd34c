//! Parser directives: the `# name=value` comment lines at the top of a
//! Dockerfile (`syntax`, `escape`, `check`).
//!
//! Directives are only recognised in the header, the run of directive lines
//! that starts the file; the first line of any other kind ends it for good.

/// The directives a Dockerfile declares. Values are kept as written, minus
/// surrounding blanks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// The `syntax` directive's value, found the way [`detect_syntax`] finds
    /// it; e.g. `docker/dockerfile:1`. Anything after its first space is kept.
    pub syntax: Option<String>,
    /// The escape character chosen by an `escape` directive in the header.
    pub escape: Option<char>,
    /// The `check` directive's value (lint configuration), e.g. `skip=all`.
    /// Like `syntax`, it may follow a `#!` shebang line.
    pub check: Option<String>,
}

impl Directives {
    /// The frontend image named by the `syntax` directive: its first word.
    pub fn syntax_image(&self) -> Option<&str> {
        let syntax = self.syntax.as_deref()?;
        Some(syntax.split(' ').next().unwrap_or(syntax))
    }
}

/// One recognised directive line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Directive {
    /// Lower-cased name: `syntax`, `escape` or `check`.
    pub name: String,
    pub value: String,
}

const KNOWN_DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// Recognises directive lines until the header ends.
pub(super) struct DirectiveHeader {
    /// What starts a directive line: `#`, or `//` for C-style files.
    comment: &'static str,
    seen: Vec<String>,
    done: bool,
}

impl DirectiveHeader {
    pub fn new(comment: &'static str) -> Self {
        DirectiveHeader {
            comment,
            seen: Vec::new(),
            done: false,
        }
    }

    /// Looks at the next line of the file. Returns the directive it holds, or
    /// `None` (and ends the header) when it is anything else. Repeating a
    /// directive is an error.
    pub fn parse_line(&mut self, line: &str) -> Result<Option<Directive>, String> {
        if self.done {
            return Ok(None);
        }
        let Some((name, value)) = line
            .strip_prefix(self.comment)
            .and_then(|body| split_name_value(body.trim_start()))
        else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !KNOWN_DIRECTIVES.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if self.seen.contains(&name) {
            return Err(format!("only one {name} parser directive can be used"));
        }
        self.seen.push(name.clone());
        Ok(Some(Directive {
            name,
            value: value.to_string(),
        }))
    }
}

/// The blanks allowed around `=` and after the value.
fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// Splits `name = value`: an ASCII name that starts with a letter, blanks
/// around `=`, and a non-empty value with trailing blanks removed.
fn split_name_value(body: &str) -> Option<(&str, &str)> {
    let name_len = body
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(body.len());
    let name = &body[..name_len];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let after_eq = body[name_len..]
        .trim_start_matches(is_blank)
        .strip_prefix('=')?;
    let value = after_eq
        .trim_start_matches(is_blank)
        .trim_end_matches(is_blank);
    if !value.is_empty() {
        return Some((name, value));
    }
    // A value made only of blanks still counts as its last blank character,
    // so `escape= ` is a directive (an invalid escape) rather than a comment.
    let last = after_eq.chars().next_back()?;
    Some((name, &after_eq[after_eq.len() - last.len_utf8()..]))
}

/// Validates the value of an `escape` directive.
pub(super) fn escape_char(value: &str) -> Result<char, String> {
    match value {
        "\\" => Ok('\\'),
        "`" => Ok('`'),
        _ => Err(format!(
            "invalid escape token '{value}' does not match ` or \\"
        )),
    }
}

/// Finds the `syntax` directive of a file that may not even be a Dockerfile:
/// a leading BOM and a `#!` shebang line are skipped, and besides `# syntax=`
/// header lines, `// syntax=` header lines and a JSON document with a string
/// `"syntax"` member are accepted.
pub fn detect_syntax(source: &str) -> Option<String> {
    let body = strip_bom_and_shebang(source);
    find_in_header(body, "#", "syntax")
        .or_else(|| find_in_header(body, "//", "syntax"))
        .or_else(|| {
            let document: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(body).ok()?;
            document.get("syntax")?.as_str().map(str::to_string)
        })
}

/// Finds a `# key=value` directive in the header, after an optional BOM and
/// shebang line.
pub(super) fn find_directive(source: &str, key: &str) -> Option<String> {
    find_in_header(strip_bom_and_shebang(source), "#", key)
}

fn strip_bom_and_shebang(source: &str) -> &str {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    if source.starts_with("#!") {
        return source.split_once('\n').map_or("", |(_, rest)| rest);
    }
    source
}

fn find_in_header(body: &str, comment: &'static str, key: &str) -> Option<String> {
    let mut header = DirectiveHeader::new(comment);
    for line in body.lines() {
        if header.done {
            break;
        }
        // A repeated directive ends the search; the first one found still counts.
        match header.parse_line(line) {
            Ok(Some(directive)) if directive.name == key => return Some(directive.value),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_lines(lines: &[&str]) -> Vec<Result<Option<(String, String)>, String>> {
        let mut header = DirectiveHeader::new("#");
        lines
            .iter()
            .map(|line| {
                header
                    .parse_line(line)
                    .map(|d| d.map(|d| (d.name, d.value)))
            })
            .collect()
    }

    fn pair(name: &str, value: &str) -> Result<Option<(String, String)>, String> {
        Ok(Some((name.to_string(), value.to_string())))
    }

    #[test]
    fn names_are_case_insensitive_and_blanks_optional() {
        assert_eq!(
            header_lines(&["# EScape = \\  ", "#syntax=foo bar", "#CHECK=skip=all"]),
            vec![
                pair("escape", "\\"),
                pair("syntax", "foo bar"),
                pair("check", "skip=all")
            ]
        );
    }

    #[test]
    fn any_other_line_ends_the_header() {
        for ender in [
            "",
            "# key = FOO bar",
            "# just a comment",
            "FROM x",
            "# escape=",
        ] {
            let results = header_lines(&[ender, "# escape=`"]);
            assert_eq!(results[1], Ok(None), "after {ender:?}");
        }
    }

    #[test]
    fn repeated_directive_is_an_error() {
        let results = header_lines(&["# escape=`", "# ESCAPE=\\"]);
        assert_eq!(
            results[1],
            Err("only one escape parser directive can be used".to_string())
        );
    }

    #[test]
    fn blank_only_value_is_its_last_blank() {
        assert_eq!(split_name_value("escape=  "), Some(("escape", " ")));
        assert_eq!(split_name_value("escape="), None);
        assert_eq!(split_name_value("1x=a"), None);
        assert_eq!(split_name_value("x y=a"), None);
    }

    #[test]
    fn escape_values() {
        assert_eq!(escape_char("`"), Ok('`'));
        assert_eq!(escape_char("\\"), Ok('\\'));
        assert!(escape_char("x").is_err());
        assert!(escape_char(" ").is_err());
    }

    #[test]
    fn syntax_detection_formats() {
        let detect = |s: &str| detect_syntax(s);
        assert_eq!(
            detect("# syntax = dockerfile:experimental // opts\nFROM busybox\n").as_deref(),
            Some("dockerfile:experimental // opts")
        );
        assert_eq!(
            detect("#!/bin/sh\n# syntax = a\nFROM b\n").as_deref(),
            Some("a")
        );
        assert_eq!(detect("#!/bin/sh\n\n# syntax = a\n"), None);
        assert_eq!(detect("FROM busybox\nRUN ls\n"), None);
        assert_eq!(detect("//syntax=foo\n//key=value").as_deref(), Some("foo"));
        assert_eq!(detect("#!/bin/sh\n//syntax=x").as_deref(), Some("x"));
        assert_eq!(
            detect(r#"{"syntax": "foo", "bar": ["abc"]}"#).as_deref(),
            Some("foo")
        );
        assert_eq!(detect(r#"{"syntax": "foo""#), None);
        assert_eq!(detect("{\"syntax\": \"foo\"}\n# syntax=bar"), None);
        assert_eq!(
            detect("\u{feff}# syntax = myfrontend\nFROM b\n").as_deref(),
            Some("myfrontend")
        );
    }

    #[test]
    fn check_directive_is_hash_only() {
        assert_eq!(
            find_directive("#!/bin/sh\n# check = skip=all\nFROM b\n", "check").as_deref(),
            Some("skip=all")
        );
        assert_eq!(
            find_directive("#!/bin/sh\n\n# check = skip=all\n", "check"),
            None
        );
        assert_eq!(find_directive("//check=skip=all\n", "check"), None);
    }

    #[test]
    fn syntax_image_is_first_word() {
        let directives = Directives {
            syntax: Some("docker/dockerfile:1 --opt".to_string()),
            ..Directives::default()
        };
        assert_eq!(directives.syntax_image(), Some("docker/dockerfile:1"));
    }
}
