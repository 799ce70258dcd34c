//! Wildcard patterns of the `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/repl}`
//! operators.
//!
//! The syntax is deliberately small: `*` matches any run of characters, `?`
//! one character, and `\` makes `*`, `?` or `\` literal. `\}` and `\/` stand
//! for a plain `}` or `/` (they are escaped only so they do not end the
//! `${...}` form). Bracket expressions are not supported; `[` is literal.
//! Like the reference implementation, `*` and `?` never match a newline.
//!
//! Matching explores alternatives in priority order (greedy stars try the
//! longest run first, lazy stars the shortest), so the first match found is
//! the one a leftmost-first regex engine would report. Failed `(token,
//! position)` pairs are remembered, which keeps the search polynomial.

/// One element of a parsed pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Char(char),
    AnyChar,
    AnyRun,
}

/// A parsed substitution pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Parses `src`; the error is a short reason for the caller's message.
    pub(super) fn parse(src: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut chars = src.chars().peekable();
        while let Some(ch) = chars.next() {
            let token = match ch {
                '*' => Token::AnyRun,
                '?' => Token::AnyChar,
                '\\' => match chars.next() {
                    Some(c @ ('}' | '/' | '*' | '?' | '\\')) => Token::Char(c),
                    Some(c) => return Err(format!("invalid escape '\\{c}'")),
                    None => return Err("trailing escape character".to_string()),
                },
                c => Token::Char(c),
            };
            tokens.push(token);
        }
        Ok(Pattern { tokens })
    }

    /// The pattern read backwards, used to find the shortest or longest
    /// *suffix* with the same prefix search (on the reversed value).
    pub(super) fn reversed(&self) -> Self {
        let mut tokens = self.tokens.clone();
        tokens.reverse();
        Pattern { tokens }
    }

    /// End of the preferred match that starts exactly at `start`.
    pub(super) fn match_at(&self, text: &[char], start: usize, greedy: bool) -> Option<usize> {
        let mut failed = vec![false; (self.tokens.len() + 1) * (text.len() + 1)];
        self.search(text, 0, start, greedy, &mut failed)
    }

    /// Leftmost match starting at or after `from`, with greedy stars.
    pub(super) fn find(&self, text: &[char], from: usize) -> Option<(usize, usize)> {
        let mut failed = vec![false; (self.tokens.len() + 1) * (text.len() + 1)];
        (from..=text.len())
            .find_map(|start| Some((start, self.search(text, 0, start, true, &mut failed)?)))
    }

    fn search(
        &self,
        text: &[char],
        ti: usize,
        pos: usize,
        greedy: bool,
        failed: &mut [bool],
    ) -> Option<usize> {
        let Some(token) = self.tokens.get(ti) else {
            return Some(pos);
        };
        let slot = ti * (text.len() + 1) + pos;
        if failed[slot] {
            return None;
        }
        let found = match *token {
            Token::Char(c) => match text.get(pos) {
                Some(&t) if t == c => self.search(text, ti + 1, pos + 1, greedy, failed),
                _ => None,
            },
            Token::AnyChar => match text.get(pos) {
                Some(&t) if t != '\n' => self.search(text, ti + 1, pos + 1, greedy, failed),
                _ => None,
            },
            Token::AnyRun => {
                let limit = text[pos..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(text.len(), |off| pos + off);
                let mut ends: Box<dyn Iterator<Item = usize>> = if greedy {
                    Box::new((pos..=limit).rev())
                } else {
                    Box::new(pos..=limit)
                };
                ends.find_map(|p| self.search(text, ti + 1, p, greedy, failed))
            }
        };
        if found.is_none() {
            failed[slot] = true;
        }
        found
    }
}

/// Removes the shortest (or, `greedy`, longest) prefix of `value` matching
/// `pattern`; `value` is returned unchanged when nothing matches.
pub(super) fn trim_prefix(pattern: &Pattern, value: &str, greedy: bool) -> String {
    let chars: Vec<char> = value.chars().collect();
    match pattern.match_at(&chars, 0, greedy) {
        Some(end) => chars[end..].iter().collect(),
        None => value.to_string(),
    }
}

/// Removes the shortest (or, `greedy`, longest) suffix of `value` matching
/// `pattern`.
pub(super) fn trim_suffix(pattern: &Pattern, value: &str, greedy: bool) -> String {
    let reversed: String = value.chars().rev().collect();
    trim_prefix(&pattern.reversed(), &reversed, greedy)
        .chars()
        .rev()
        .collect()
}

/// Replaces the leftmost match of `pattern` in `value` with `replacement`,
/// taken literally.
pub(super) fn replace_first(pattern: &Pattern, value: &str, replacement: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    match pattern.find(&chars, 0) {
        Some((start, end)) => {
            let mut out: String = chars[..start].iter().collect();
            out.push_str(replacement);
            out.extend(&chars[end..]);
            out
        }
        None => value.to_string(),
    }
}

/// Replaces every non-overlapping match of `pattern` in `value`.
///
/// An empty match right after a previous match is not replaced again, and
/// the scan always advances by at least one character, so a pattern that
/// can match the empty string inserts `replacement` between characters.
/// In `replacement`, `$0` and `${0}` stand for the matched text, `$$` for a
/// `$`, and any other `$name` / `${name}` for nothing, mirroring the
/// reference builder's regex replacement template.
pub(super) fn replace_all(pattern: &Pattern, value: &str, replacement: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut last_end = 0;
    let mut search_from = 0;
    while search_from <= chars.len() {
        let Some((start, end)) = pattern.find(&chars, search_from) else {
            break;
        };
        out.extend(&chars[last_end..start]);
        if end > last_end || start == 0 {
            let matched: String = chars[start..end].iter().collect();
            out.push_str(&expand_template(replacement, &matched));
        }
        last_end = end;
        search_from = if end > search_from {
            end
        } else {
            search_from + 1
        };
    }
    out.extend(&chars[last_end.min(chars.len())..]);
    out
}

fn expand_template(template: &str, matched: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match template_reference(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            // Not a reference: the `$` is ordinary text.
            None => out.push('$'),
        }
    }
    out.push_str(rest);
    out
}

/// Splits `name` or `{name}` off the front of `s` (the text after a `$`).
fn template_reference(s: &str) -> Option<(&str, &str)> {
    let (body, braced) = match s.strip_prefix('{') {
        Some(body) => (body, true),
        None => (s, false),
    };
    let len = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    if braced {
        after.strip_prefix('}').map(|after| (name, after))
    } else {
        Some((name, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn escapes() {
        assert!(Pattern::parse("\\").is_err());
        assert!(Pattern::parse("\\x").is_err());
        assert!(Pattern::parse("\\\\\\").is_err());
        assert_eq!(pat("\\}\\/"), pat("}/"));
        assert_eq!(trim_prefix(&pat("\\*"), "*a", false), "a");
        assert_eq!(trim_prefix(&pat("\\*"), "xa", false), "xa");
    }

    #[test]
    fn shortest_and_longest_prefix_and_suffix() {
        assert_eq!(trim_prefix(&pat("*/"), "a/b/c", false), "b/c");
        assert_eq!(trim_prefix(&pat("*/"), "a/b/c", true), "c");
        assert_eq!(trim_suffix(&pat("/*"), "a/b/c", false), "a/b");
        assert_eq!(trim_suffix(&pat("/*"), "a/b/c", true), "a");
        assert_eq!(trim_suffix(&pat("?.tar"), "x1.tar", false), "x");
        assert_eq!(trim_prefix(&pat(""), "abc", true), "abc");
    }

    #[test]
    fn stars_do_not_cross_newlines() {
        assert_eq!(trim_prefix(&pat("*b"), "a\nb", true), "a\nb");
        assert_eq!(trim_prefix(&pat("?b"), "\nb", true), "\nb");
    }

    #[test]
    fn replacement() {
        assert_eq!(replace_first(&pat("o"), "foo", "0"), "f0o");
        assert_eq!(replace_all(&pat("o"), "foo", "0"), "f00");
        assert_eq!(replace_all(&pat(""), "ab", "-"), "-a-b-");
        assert_eq!(replace_all(&pat("x*"), "axxbx", "-"), "a-");
        assert_eq!(replace_all(&pat("*"), "ab", "-"), "-");
        assert_eq!(replace_all(&pat("x?"), "axxbxx", "-"), "a-b-");
        assert_eq!(
            replace_all(&pat("b"), "abc", "[$0|${0}|$$|$1|$x|$]"),
            "a[b|b|$|||$]c"
        );
        assert_eq!(replace_first(&pat("b"), "abc", "$0"), "a$0c");
        assert_eq!(replace_all(&pat("한"), "한국한", "x"), "x국x");
    }
}
