//! One `.dockerignore` pattern, compiled and matched against slash-separated
//! paths relative to the build context root.
//!
//! Syntax: `*` matches a run of characters other than `/`, `?` one character
//! other than `/`, `[...]` a character class (`[^...]` negated, `a-z`
//! ranges, `\` escapes; a class can match `/`), `\c` the character `c`, and
//! `**` any number of directories: `a/**/b` matches `a/b` and `a/x/y/b`.
//!
//! Docker classifies patterns before matching and some shapes have their own
//! rules, which are kept here because users rely on them:
//! - no wildcard at all: the path must be equal to the pattern;
//! - wildcard-free text followed by a final `**` (`foo/**`, `foo**`): any
//!   path starting with the text;
//! - `**` followed by wildcard-free text (`**/foo`, `**foo`): any path that
//!   ends with the text, or equals it without its leading `/`;
//! - otherwise the whole path must match, and there a middle `**` stands for
//!   "nothing, or anything ending in `/`" and a final `**` for anything; both
//!   stop at a newline in a file name, as Docker's do.

use std::fmt;

/// Why a pattern does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("unterminated character class")]
    UnterminatedClass,
    #[error("malformed character class")]
    BadClass,
    #[error("escape character at the end of the pattern")]
    TrailingEscape,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `?`
    AnyChar,
    /// `*`
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**` before more pattern: empty, or any text ending with `/`.
    AnyDirs,
    /// `**` at the end: any text.
    AnyRest,
}

impl Token {
    /// Whether the token can be passed over without consuming anything.
    fn may_be_empty(&self) -> bool {
        matches!(self, Token::Star | Token::AnyDirs | Token::AnyRest)
    }
}

/// How a pattern is matched, decided while compiling it.
#[derive(Clone, Copy)]
enum Shape {
    Exact,
    Prefix,
    Suffix,
    Full,
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Tokens(Vec<Token>),
}

/// A compiled pattern (without its `!`).
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    kind: Kind,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

impl Glob {
    /// Compiles an already cleaned pattern.
    pub fn new(pattern: &str) -> Result<Self, SyntaxError> {
        let mut tokens = Vec::new();
        let mut shape = Shape::Exact;
        let mut chars = pattern.chars().peekable();
        let mut first = true;
        while let Some(ch) = chars.next() {
            // `keeps_shape` is false for wildcards and escapes, which need
            // the general matcher.
            let (token, keeps_shape) = match ch {
                '*' if chars.next_if_eq(&'*').is_some() => {
                    // `**/` is the same as `**`.
                    chars.next_if_eq(&'/');
                    let at_end = chars.peek().is_none();
                    shape = match shape {
                        _ if first => Shape::Suffix,
                        Shape::Exact if at_end => Shape::Prefix,
                        _ => Shape::Full,
                    };
                    let token = if at_end {
                        Token::AnyRest
                    } else {
                        Token::AnyDirs
                    };
                    (token, true)
                }
                '*' => (Token::Star, false),
                '?' => (Token::AnyChar, false),
                '\\' => {
                    let escaped = chars.next().ok_or(SyntaxError::TrailingEscape)?;
                    (Token::Char(escaped), false)
                }
                '[' => (parse_class(&mut chars)?, false),
                ']' => (Token::Char(']'), false),
                c => (Token::Char(c), true),
            };
            if !keeps_shape {
                shape = Shape::Full;
            }
            tokens.push(token);
            first = false;
        }
        let kind = match shape {
            Shape::Exact => Kind::Exact(pattern.to_string()),
            Shape::Prefix => Kind::Prefix(pattern[..pattern.len() - 2].to_string()),
            Shape::Suffix => Kind::Suffix(pattern[2..].to_string()),
            Shape::Full => Kind::Tokens(tokens),
        };
        Ok(Glob {
            source: pattern.to_string(),
            kind,
        })
    }

    /// Whether `path` (cleaned, relative, `/`-separated) matches.
    pub fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact(text) => path == text,
            Kind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Kind::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Kind::Tokens(tokens) => {
                let states = Nfa::new(tokens).run(path);
                states.accepts()
            }
        }
    }

    /// Whether some path strictly below directory `dir` could match.
    /// Errs on the side of `true` where the pattern is too complex to tell.
    pub fn may_match_below(&self, dir: &str) -> bool {
        let dir_slash = format!("{dir}/");
        match &self.kind {
            Kind::Exact(text) => text.len() > dir_slash.len() && text.starts_with(&dir_slash),
            Kind::Prefix(prefix) => {
                prefix.starts_with(&dir_slash) || dir_slash.starts_with(prefix.as_str())
            }
            Kind::Suffix(_) => true,
            Kind::Tokens(tokens) => Nfa::new(tokens).run(&dir_slash).may_continue(),
        }
    }
}

/// Reads the class body after `[` up to and including `]`.
fn parse_class(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<Token, SyntaxError> {
    let negated = chars.next_if_eq(&'^').is_some();
    let mut ranges = Vec::new();
    loop {
        if !ranges.is_empty() && chars.next_if_eq(&']').is_some() {
            return Ok(Token::Class { negated, ranges });
        }
        let lo = class_char(chars)?;
        let hi = if chars.next_if_eq(&'-').is_some() {
            class_char(chars)?
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
}

/// One class member; a class must not end right after it.
fn class_char(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<char, SyntaxError> {
    let ch = match chars.next() {
        None => return Err(SyntaxError::UnterminatedClass),
        Some('-' | ']') => return Err(SyntaxError::BadClass),
        Some('\\') => chars.next().ok_or(SyntaxError::UnterminatedClass)?,
        Some(c) => c,
    };
    if chars.peek().is_none() {
        return Err(SyntaxError::UnterminatedClass);
    }
    Ok(ch)
}

/// A set of positions in a token list: the pattern's automaton simulated
/// over the input, one character at a time, so matching is linear in the
/// path length whatever the pattern.
struct Nfa<'a> {
    tokens: &'a [Token],
    /// `active[2 * i]`: about to match token `i`; `active[2 * i + 1]`: inside
    /// the "any text" part of an [`Token::AnyDirs`] at `i`, waiting for `/`.
    active: Vec<bool>,
}

impl<'a> Nfa<'a> {
    fn new(tokens: &'a [Token]) -> Self {
        let mut nfa = Nfa {
            tokens,
            active: vec![false; 2 * (tokens.len() + 1)],
        };
        nfa.active[0] = true;
        nfa.close();
        nfa
    }

    /// Adds the states reachable without consuming input.
    fn close(&mut self) {
        for (i, token) in self.tokens.iter().enumerate() {
            if self.active[2 * i] {
                if token.may_be_empty() {
                    self.active[2 * (i + 1)] = true;
                }
                if *token == Token::AnyDirs {
                    self.active[2 * i + 1] = true;
                }
            }
        }
    }

    fn step(&mut self, c: char) {
        let mut next = vec![false; self.active.len()];
        for (i, token) in self.tokens.iter().enumerate() {
            if self.active[2 * i] {
                let advance = match token {
                    Token::Char(t) => *t == c,
                    Token::AnyChar => c != '/',
                    Token::Class { negated, ranges } => {
                        ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
                    }
                    Token::Star => {
                        next[2 * i] |= c != '/';
                        false
                    }
                    Token::AnyRest => {
                        next[2 * i] |= c != '\n';
                        false
                    }
                    Token::AnyDirs => false,
                };
                next[2 * (i + 1)] |= advance;
            }
            if self.active[2 * i + 1] {
                next[2 * i + 1] |= c != '\n';
                next[2 * (i + 1)] |= c == '/';
            }
        }
        self.active = next;
        self.close();
    }

    fn run(mut self, input: &str) -> Self {
        for c in input.chars() {
            self.step(c);
            if !self.active.contains(&true) {
                break;
            }
        }
        self
    }

    /// The whole input matched the whole pattern.
    fn accepts(&self) -> bool {
        self.active[2 * self.tokens.len()]
    }

    /// More input could still lead to a match (assuming the rest of the
    /// pattern can match something).
    fn may_continue(&self) -> bool {
        let end = 2 * self.tokens.len();
        self.active[..end].contains(&true)
    }
}

/// Normalises a `/`-separated path lexically: repeated and trailing
/// slashes and `.` elements go, `x/..` pairs cancel, `..` above a rooted
/// path is dropped; the empty result is `.`.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            name => parts.push(name),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}
