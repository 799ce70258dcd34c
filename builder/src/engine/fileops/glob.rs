//! Wildcards in COPY/ADD sources.
//!
//! A source like `src/*.rs` is split into the literal directory part (`src`) and
//! the pattern part (`*.rs`); the pattern is matched one path component at a
//! time with the rules of Go's `filepath.Match`, which Dockerfile users know:
//! `*` and `?` never match a `/`, `[a-z]` / `[^a-z]` are character classes and
//! `\` escapes.

use super::imagepath::ImagePath;

/// Whether a path holds an unescaped `*`, `?` or `[`.
pub(crate) fn contains_wildcards(s: &str) -> bool {
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Splits a source path (cleaned as absolute) at its first component holding a
/// wildcard: the literal directory before it, and the pattern components.
pub(crate) fn split_wildcards(src: &str) -> (ImagePath, Vec<String>) {
    let cleaned = ImagePath::lexical(src);
    let mut literal = ImagePath::root();
    let mut pattern = Vec::new();
    for name in cleaned.components() {
        let name = name.to_string_lossy().into_owned();
        if pattern.is_empty() && !contains_wildcards(&name) {
            literal.push(name.as_ref());
        } else {
            pattern.push(name);
        }
    }
    (literal, pattern)
}

/// A compiled pattern for one path component.
#[derive(Clone, Debug)]
pub(crate) struct SegmentPattern {
    tokens: Vec<Token>,
}

#[derive(Clone, Debug)]
enum Token {
    Literal(char),
    AnySequence,
    AnyChar,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl SegmentPattern {
    /// Compiles one component's pattern; `None` when it is malformed (an unclosed
    /// class, an empty class, a trailing `\`).
    pub(crate) fn compile(pattern: &str) -> Option<Self> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => tokens.push(Token::AnySequence),
                '?' => tokens.push(Token::AnyChar),
                '\\' => {
                    i += 1;
                    tokens.push(Token::Literal(*chars.get(i)?));
                }
                '[' => {
                    let (token, next) = compile_class(&chars, i + 1)?;
                    tokens.push(token);
                    i = next;
                    continue;
                }
                c => tokens.push(Token::Literal(c)),
            }
            i += 1;
        }
        Some(SegmentPattern { tokens })
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        match_tokens(&self.tokens, &name)
    }
}

/// Compiles a class starting after its `[`; returns the token and the index
/// after the closing `]`.
fn compile_class(chars: &[char], mut i: usize) -> Option<(Token, usize)> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        let c = *chars.get(i)?;
        if c == ']' && !ranges.is_empty() {
            return Some((Token::Class { negated, ranges }, i + 1));
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            let (h, next) = class_char(chars, i + 1)?;
            hi = h;
            i = next;
        }
        ranges.push((lo, hi));
    }
}

/// One character of a class range, possibly escaped.
fn class_char(chars: &[char], i: usize) -> Option<(char, usize)> {
    match *chars.get(i)? {
        '\\' => Some((*chars.get(i + 1)?, i + 2)),
        '-' | ']' => None,
        c => Some((c, i + 1)),
    }
}

fn match_tokens(tokens: &[Token], name: &[char]) -> bool {
    let Some((first, rest)) = tokens.split_first() else {
        return name.is_empty();
    };
    match first {
        Token::AnySequence => (0..=name.len()).any(|skip| match_tokens(rest, &name[skip..])),
        _ => {
            let Some((&c, tail)) = name.split_first() else {
                return false;
            };
            let ok = match first {
                Token::Literal(l) => *l == c,
                Token::AnyChar => c != '/',
                Token::Class { negated, ranges } => {
                    ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                }
                Token::AnySequence => unreachable!("handled above"),
            };
            ok && match_tokens(rest, tail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        SegmentPattern::compile(pattern).unwrap().matches(name)
    }

    #[test]
    fn go_match_rules() {
        assert!(m("*.rs", "main.rs"));
        assert!(!m("*.rs", "main.rsx"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "axxbyyc"));
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        for bad in ["[", "[]", "[^]", "a\\", "[a-]", "[-a]"] {
            assert!(SegmentPattern::compile(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn wildcard_detection_and_split() {
        assert!(contains_wildcards("a*"));
        assert!(!contains_wildcards("a\\*"));
        let (lit, pat) = split_wildcards("/src/dir/*.rs");
        assert_eq!(lit.display(), "/src/dir");
        assert_eq!(pat, vec!["*.rs"]);
        let (lit, pat) = split_wildcards("a*/b/c");
        assert!(lit.is_root());
        assert_eq!(pat, vec!["a*", "b", "c"]);
    }
}
