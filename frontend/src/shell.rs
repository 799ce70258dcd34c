//! Shell-like word expansion for Dockerfile instruction arguments.
//!
//! A [`Lexer`] removes quotes, resolves escapes and expands `$VAR` /
//! `${VAR...}` references the way Dockerfile instructions do (ENV, ARG,
//! COPY sources, WORKDIR, `--mount` options, heredoc bodies ...). It is not a
//! shell: there is no command substitution, arithmetic or globbing, and
//! positional and special parameters (`$1`, `$@`, `$?` ...) are never set.
//!
//! Supported forms: `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR-word}`,
//! `${VAR:+word}`, `${VAR+word}`, `${VAR:?msg}`, `${VAR?msg}`, `${VAR#pat}`,
//! `${VAR##pat}`, `${VAR%pat}`, `${VAR%%pat}`, `${VAR/pat/repl}` and
//! `${VAR//pat/repl}`; the `pattern` submodule describes the pattern syntax.
//! Assignment (`${VAR:=word}`) and anything else after the name is rejected.
//!
//! Every variable name the word looks up is reported in
//! [`Expanded::referenced`], whether or not it was set, so callers can tell
//! which build arguments a Dockerfile actually uses.

mod pattern;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

/// Where variable values come from.
pub trait VarSource {
    /// The value of `name`, or `None` when it is not set (an empty value is
    /// set).
    fn get_var(&self, name: &str) -> Option<String>;
}

impl VarSource for BTreeMap<String, String> {
    fn get_var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl<S: BuildHasher> VarSource for HashMap<String, String, S> {
    fn get_var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// An ordered list of assignments, as an image config's `Env` is: when a
/// name appears more than once, the last assignment wins.
impl VarSource for [(String, String)] {
    fn get_var(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl VarSource for Vec<(String, String)> {
    fn get_var(&self, name: &str) -> Option<String> {
        self.as_slice().get_var(name)
    }
}

impl<T: VarSource + ?Sized> VarSource for &T {
    fn get_var(&self, name: &str) -> Option<String> {
        (**self).get_var(name)
    }
}

/// The result of an expansion, with the variables it looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded<T> {
    pub value: T,
    /// Every variable name the word referenced, set or not.
    pub referenced: BTreeSet<String>,
    /// The subset of `referenced` that was not set.
    pub unset: BTreeSet<String>,
}

/// Why a word could not be expanded. The message does not repeat the word;
/// callers add it together with the Dockerfile location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${NAME?message}` or `${NAME:?message}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    /// More nested `${…}` than [`MAX_NESTING`]: refused before the recursion
    /// could exhaust the stack.
    #[error("substitutions nested more than {MAX_NESTING} deep")]
    TooDeep,
}

/// How deeply `${A:-${B:-…}}` may nest. Real Dockerfiles nest a few levels;
/// every level is a recursion, so a hostile file must not choose the depth.
pub const MAX_NESTING: usize = 256;

/// Expansion settings. The defaults (from [`Lexer::new`]) are those used for
/// instruction arguments; the switches exist for the parser's heredoc
/// handling and for display strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_unset: bool,
    skip_quotes: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

impl Lexer {
    /// A lexer using `escape` (`\` by default, `` ` `` with the `escape`
    /// parser directive) as the escape character.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Keep quote characters in the output (their content is still treated
    /// as quoted).
    pub fn raw_quotes(mut self, on: bool) -> Self {
        self.raw_quotes = on;
        self
    }

    /// Keep escape characters in the output (the escaped character is still
    /// taken literally).
    pub fn raw_escapes(mut self, on: bool) -> Self {
        self.raw_escapes = on;
        self
    }

    /// Leave references to unset variables as written (`$X`, `${X}`,
    /// `${X:-w}` ...) instead of expanding them.
    pub fn skip_unset(mut self, on: bool) -> Self {
        self.skip_unset = on;
        self
    }

    /// Treat `'` and `"` as ordinary characters: expansion happens inside
    /// them too. Heredoc bodies are expanded this way.
    pub fn skip_quotes(mut self, on: bool) -> Self {
        self.skip_quotes = on;
        self
    }

    /// Expands `word` as one word: whitespace, quoted or not, is kept.
    pub fn process_word(
        &self,
        word: &str,
        vars: &dyn VarSource,
    ) -> Result<Expanded<String>, ShellError> {
        self.run(word, vars, |segment| segment.text)
    }

    /// Expands `word` and splits the result into fields at unquoted
    /// whitespace, including whitespace that came from an unquoted
    /// expansion. Quoted text never splits; empty fields are dropped.
    pub fn process_words(
        &self,
        word: &str,
        vars: &dyn VarSource,
    ) -> Result<Expanded<Vec<String>>, ShellError> {
        self.run(word, vars, |segment| segment.words)
    }

    fn run<T>(
        &self,
        word: &str,
        vars: &dyn VarSource,
        pick: impl FnOnce(Segment) -> T,
    ) -> Result<Expanded<T>, ShellError> {
        let mut expansion = Expansion {
            lexer: self,
            vars,
            chars: word.chars().collect(),
            pos: 0,
            raw_escapes: self.raw_escapes,
            referenced: BTreeSet::new(),
            unset: BTreeSet::new(),
            depth: 0,
        };
        let (segment, _) = expansion.process_until(None)?;
        Ok(Expanded {
            value: pick(segment),
            referenced: expansion.referenced,
            unset: expansion.unset,
        })
    }
}

/// Text processed up to a stop character, both as one string and split
/// into fields.
struct Segment {
    text: String,
    words: Vec<String>,
}

/// How [`Expansion::process_until`] finished.
#[derive(PartialEq, Eq)]
enum Ending {
    /// The stop character was found (and consumed).
    Stopped,
    /// The input ran out.
    EndOfInput,
}

/// Accumulates fields for [`Lexer::process_words`].
#[derive(Default)]
struct Fields {
    done: Vec<String>,
    current: String,
}

impl Fields {
    /// Adds unquoted text: whitespace ends the current field.
    fn push_splitting(&mut self, ch: char) {
        if !ch.is_whitespace() {
            self.current.push(ch);
        } else if !self.current.is_empty() {
            self.done.push(std::mem::take(&mut self.current));
        }
    }

    /// Adds quoted or escaped text, which never splits.
    fn push_literal(&mut self, s: &str) {
        self.current.push_str(s);
    }

    fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.done.push(self.current);
        }
        self.done
    }
}

/// State of one expansion: the input, the cursor and what was looked up.
struct Expansion<'a> {
    lexer: &'a Lexer,
    vars: &'a dyn VarSource,
    chars: Vec<char>,
    pos: usize,
    /// Escape characters are kept while reading `#`, `%` and `/` patterns,
    /// so the pattern parser can tell `\*` from `*`.
    raw_escapes: bool,
    referenced: BTreeSet<String>,
    unset: BTreeSet<String>,
    /// How many nested words are being processed now.
    depth: usize,
}

impl Expansion<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += 1;
        Some(ch)
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        self.referenced.insert(name.to_string());
        let value = self.vars.get_var(name);
        if value.is_none() {
            self.unset.insert(name.to_string());
        }
        value
    }

    /// Processes input until `stop` (consumed) or the end of the input.
    fn process_until(&mut self, stop: Option<char>) -> Result<(Segment, Ending), ShellError> {
        let mut text = String::new();
        let mut fields = Fields::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                let words = fields.finish();
                return Ok((Segment { text, words }, Ending::Stopped));
            }
            let quotes = !self.lexer.skip_quotes;
            match ch {
                '$' => {
                    let value = self.dollar()?;
                    value.chars().for_each(|c| fields.push_splitting(c));
                    text.push_str(&value);
                }
                '<' => {
                    let value = self.possible_heredoc();
                    fields.push_literal(&value);
                    text.push_str(&value);
                }
                '\'' if quotes => {
                    let value = self.single_quoted()?;
                    fields.push_literal(&value);
                    text.push_str(&value);
                }
                '"' if quotes => {
                    let value = self.double_quoted()?;
                    fields.push_literal(&value);
                    text.push_str(&value);
                }
                _ => {
                    self.pos += 1;
                    if ch != self.lexer.escape {
                        fields.push_splitting(ch);
                        text.push(ch);
                        continue;
                    }
                    if self.raw_escapes {
                        fields.push_literal(ch.encode_utf8(&mut [0; 4]));
                        text.push(ch);
                    }
                    // An escape at the very end of the word is dropped.
                    let Some(escaped) = self.next() else { break };
                    fields.push_literal(escaped.encode_utf8(&mut [0; 4]));
                    text.push(escaped);
                }
            }
        }
        let words = fields.finish();
        Ok((Segment { text, words }, Ending::EndOfInput))
    }

    /// Processes a nested word up to `stop`, with escapes kept or not.
    /// Running out of input, or failing at its end, reports `missing`.
    fn nested(
        &mut self,
        stop: char,
        raw_escapes: bool,
        missing: ShellError,
    ) -> Result<String, ShellError> {
        if self.depth >= MAX_NESTING {
            return Err(ShellError::TooDeep);
        }
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        self.depth += 1;
        let result = self.process_until(Some(stop));
        self.depth -= 1;
        self.raw_escapes = saved;
        match result {
            Ok((segment, Ending::Stopped)) => Ok(segment.text),
            Ok((_, Ending::EndOfInput)) => Err(missing),
            Err(ShellError::TooDeep) => Err(ShellError::TooDeep),
            Err(_) if self.peek().is_none() => Err(missing),
            Err(err) => Err(err),
        }
    }

    /// `'...'`: everything literal up to the next single quote.
    fn single_quoted(&mut self) -> Result<String, ShellError> {
        let mut out = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ShellError::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(ch) => out.push(ch),
            }
        }
    }

    /// `"..."`: variables expand; the escape character only escapes `"`,
    /// `$` and itself, and is kept before anything else.
    fn double_quoted(&mut self) -> Result<String, ShellError> {
        let mut out = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ShellError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    if self.lexer.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(ch) => {
                    self.pos += 1;
                    if ch != self.lexer.escape {
                        out.push(ch);
                        continue;
                    }
                    if self.raw_escapes {
                        out.push(ch);
                    }
                    match self.peek() {
                        // The loop reports the missing closing quote.
                        None => {}
                        Some(c) if c == '"' || c == '$' || c == self.lexer.escape => {
                            self.pos += 1;
                            out.push(c);
                        }
                        // Before any other character the escape is an
                        // ordinary character (pushed above if kept raw).
                        Some(_) if !self.raw_escapes => out.push(ch),
                        Some(_) => {}
                    }
                }
            }
        }
    }

    /// `<<` (with any blanks after it) is kept together so that a heredoc
    /// marker stays one field for the parser.
    fn possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.pos += 1;
        let mut out = "<<".to_string();
        while let Some(ch @ (' ' | '\t' | '\r')) = self.peek() {
            out.push(ch);
            self.pos += 1;
        }
        out
    }

    /// Reads a parameter name: a run of letters, digits and `_`; a run of
    /// digits (positional parameter); or one special-parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(digit) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(digit);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!') {
                self.pos += 1;
                return ch.to_string();
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }

    /// Expands the `$...` at the cursor.
    fn dollar(&mut self) -> Result<String, ShellError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                // `$` before something that cannot start a name is literal.
                return Ok("$".to_string());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(ShellError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ShellError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        match self.next() {
            None => Err(ShellError::MissingBrace),
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.lexer.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => {
                let op = self.next().ok_or(ShellError::MissingBrace)?;
                self.modifier(&name, op, true)
            }
            Some(op @ ('+' | '-' | '?' | '#' | '%')) => self.modifier(&name, op, false),
            Some('/') => self.substitute(&name),
            Some(other) => Err(ShellError::UnsupportedModifier(other.to_string())),
        }
    }

    /// `${name<op>word}`, where `colon` means `:` came before `op` (an empty
    /// value then counts as unset).
    fn modifier(&mut self, name: &str, op: char, colon: bool) -> Result<String, ShellError> {
        let spelled = if colon {
            format!(":{op}")
        } else {
            op.to_string()
        };
        let is_trim = op == '#' || op == '%';
        if colon && is_trim {
            return Err(ShellError::UnsupportedModifier(spelled));
        }
        let word = self.nested('}', is_trim, ShellError::MissingBrace)?;
        let value = self.lookup(name);
        if value.is_none() && self.lexer.skip_unset {
            return Ok(format!("${{{name}{spelled}{word}}}"));
        }
        let present = value.as_ref().filter(|v| !(colon && v.is_empty()));
        match op {
            '-' => Ok(present.cloned().unwrap_or(word)),
            '+' => Ok(if present.is_some() {
                word
            } else {
                String::new()
            }),
            '?' => match (&value, present) {
                (_, Some(v)) => Ok(v.clone()),
                (None, None) => Err(required(name, word, "is not allowed to be unset")),
                (Some(_), None) => Err(required(name, word, "is not allowed to be empty")),
            },
            '#' | '%' => {
                let value = value.unwrap_or_default();
                // `##` / `%%` remove the longest match, `#` / `%` the shortest.
                let (greedy, pattern_src) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let pattern = parse_pattern(pattern_src)?;
                Ok(if op == '#' {
                    pattern::trim_prefix(&pattern, &value, greedy)
                } else {
                    pattern::trim_suffix(&pattern, &value, greedy)
                })
            }
            _ => Err(ShellError::UnsupportedModifier(spelled)),
        }
    }

    /// `${name/pattern/replacement}` and `${name//pattern/replacement}`.
    fn substitute(&mut self, name: &str) -> Result<String, ShellError> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pattern_src = self.nested('/', true, ShellError::MissingSlash)?;
        let replacement = self.nested('}', true, ShellError::MissingBrace)?;
        let value = self.lookup(name);
        if value.is_none() && self.lexer.skip_unset {
            let slashes = if all { "//" } else { "/" };
            return Ok(format!("${{{name}{slashes}{pattern_src}/{replacement}}}"));
        }
        let value = value.unwrap_or_default();
        let pattern = parse_pattern(&pattern_src)?;
        Ok(if all {
            pattern::replace_all(&pattern, &value, &replacement)
        } else {
            pattern::replace_first(&pattern, &value, &replacement)
        })
    }
}

fn required(name: &str, word: String, default_message: &str) -> ShellError {
    let message = if word.is_empty() {
        default_message.to_string()
    } else {
        word
    };
    ShellError::Required {
        name: name.to_string(),
        message,
    }
}

fn parse_pattern(src: &str) -> Result<pattern::Pattern, ShellError> {
    pattern::Pattern::parse(src).map_err(|reason| ShellError::InvalidPattern {
        pattern: src.to_string(),
        reason,
    })
}

#[cfg(test)]
mod tests;
