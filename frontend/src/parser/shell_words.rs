//! Shell-style word splitting with no variables set, used to find heredocs.
//!
//! Whether `<<EOF` opens a heredoc depends on how a shell would tokenise the
//! line: `"<<EOF"` is an ordinary quoted word, `<< EOF` is one heredoc word,
//! and a line with an unterminated quote has no heredocs at all. Variables are
//! never expanded here: `$NAME` and `${NAME…}` stay as written. The escape
//! character is always `\`, whatever the Dockerfile's escape directive says,
//! because heredoc words follow shell rules.

use std::iter::Peekable;
use std::str::Chars;

const ESCAPE: char = '\\';

/// What the words keep of the source text.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mode {
    /// Keep quote characters in the words.
    pub keep_quotes: bool,
    /// Keep escape characters in the words.
    pub keep_escapes: bool,
}

/// Splits `text` into shell words. Errors are malformed quoting or
/// substitutions.
pub(super) fn split(text: &str, mode: Mode) -> Result<Vec<String>, String> {
    let mut lexer = Lexer {
        chars: text.chars().peekable(),
        keep_quotes: mode.keep_quotes,
    };
    lexer
        .words_until(None, mode.keep_escapes)
        .map(|(_, words)| words)
}

/// Collects words, splitting on whitespace only where the text was unquoted.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    current: String,
    in_word: bool,
}

impl Words {
    fn push(&mut self, c: char) {
        if !c.is_whitespace() {
            self.push_raw(c);
        } else if self.in_word && !self.current.is_empty() {
            self.words.push(std::mem::take(&mut self.current));
            self.in_word = false;
        }
    }

    fn push_raw(&mut self, c: char) {
        self.current.push(c);
        self.in_word = true;
    }

    fn push_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.push(c));
    }

    fn push_raw_str(&mut self, s: &str) {
        self.current.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.words.push(self.current);
        }
        self.words
    }
}

struct Lexer<'a> {
    chars: Peekable<Chars<'a>>,
    keep_quotes: bool,
}

impl Lexer<'_> {
    /// Reads up to and including `stop` (or to the end when `stop` is `None`),
    /// returning the processed text and its words.
    fn words_until(
        &mut self,
        stop: Option<char>,
        keep_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        let mut text = String::new();
        let mut words = Words::default();
        while let Some(&c) = self.chars.peek() {
            if Some(c) == stop {
                self.chars.next();
                return Ok((text, words.finish()));
            }
            match c {
                '$' => {
                    let part = self.dollar()?;
                    text.push_str(&part);
                    words.push_str(&part);
                }
                '<' => {
                    let part = self.possible_heredoc();
                    text.push_str(&part);
                    words.push_raw_str(&part);
                }
                '\'' => {
                    let part = self.single_quoted()?;
                    text.push_str(&part);
                    words.push_raw_str(&part);
                }
                '"' => {
                    let part = self.double_quoted(keep_escapes)?;
                    text.push_str(&part);
                    words.push_raw_str(&part);
                }
                _ => {
                    self.chars.next();
                    if c != ESCAPE {
                        text.push(c);
                        words.push(c);
                        continue;
                    }
                    if keep_escapes {
                        text.push(c);
                        words.push_raw(c);
                    }
                    let Some(escaped) = self.chars.next() else {
                        break;
                    };
                    text.push(escaped);
                    words.push_raw(escaped);
                }
            }
        }
        match stop {
            Some(stop) => Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            )),
            None => Ok((text, words.finish())),
        }
    }

    fn single_quoted(&mut self) -> Result<String, String> {
        let mut text = String::new();
        let open = self.chars.next();
        if self.keep_quotes {
            text.extend(open);
        }
        loop {
            match self.chars.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_string(),
                    )
                }
                Some('\'') => {
                    if self.keep_quotes {
                        text.push('\'');
                    }
                    return Ok(text);
                }
                Some(c) => text.push(c),
            }
        }
    }

    fn double_quoted(&mut self, keep_escapes: bool) -> Result<String, String> {
        let mut text = String::new();
        let open = self.chars.next();
        if self.keep_quotes {
            text.extend(open);
        }
        loop {
            match self.chars.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_string(),
                    )
                }
                Some('"') => {
                    self.chars.next();
                    if self.keep_quotes {
                        text.push('"');
                    }
                    return Ok(text);
                }
                Some('$') => {
                    let part = self.dollar()?;
                    text.push_str(&part);
                }
                Some(_) => {
                    let mut c = self.chars.next().unwrap_or_default();
                    if c == ESCAPE {
                        if keep_escapes {
                            text.push(c);
                        }
                        match self.chars.peek() {
                            // The missing closing quote is reported next round.
                            None => continue,
                            // Only these characters can be escaped inside
                            // double quotes; before any other, the escape
                            // character is literal.
                            Some(&next) if next == '"' || next == '$' || next == ESCAPE => {
                                self.chars.next();
                                c = next;
                            }
                            Some(_) => {}
                        }
                    }
                    text.push(c);
                }
            }
        }
    }

    /// `$NAME`, `${NAME}` and `${NAME<modifier>…}`, kept as written since no
    /// variable is set.
    fn dollar(&mut self) -> Result<String, String> {
        self.chars.next();
        if self.chars.peek() != Some(&'{') {
            let name = self.name();
            return Ok(format!("${name}"));
        }
        self.chars.next();
        match self.chars.peek() {
            None => return Err("syntax error: missing '}'".to_string()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_string()),
            Some(_) => {}
        }
        let name = self.name();
        match self.chars.next() {
            Some('}') => Ok(format!("${{{name}}}")),
            Some(':') => match self.chars.next() {
                None => Err("syntax error: missing '}'".to_string()),
                Some(op @ ('#' | '%')) => {
                    Err(format!("unsupported modifier (:{op}) in substitution"))
                }
                Some(op) => self.modifier(&name, &format!(":{op}"), false),
            },
            Some(op @ ('+' | '-' | '?')) => self.modifier(&name, &op.to_string(), false),
            Some(op @ ('#' | '%')) => self.modifier(&name, &op.to_string(), true),
            Some('/') => {
                // `${a//x/y}` (replace all) is kept as `${a/x/y}`: without a
                // value the difference never matters.
                self.chars.next_if_eq(&'/');
                let pattern = self.until_or('/', true, "syntax error: missing '/' in ${}")?;
                let replacement = self.until_or('}', true, "syntax error: missing '}'")?;
                Ok(format!("${{{name}/{pattern}/{replacement}}}"))
            }
            Some(op) => Err(format!("unsupported modifier ({op}) in substitution")),
            None => Err("unsupported modifier () in substitution".to_string()),
        }
    }

    fn modifier(&mut self, name: &str, op: &str, keep_escapes: bool) -> Result<String, String> {
        let word = self.until_or('}', keep_escapes, "syntax error: missing '}'")?;
        Ok(format!("${{{name}{op}{word}}}"))
    }

    /// Text up to `stop`; running out of input gives `eof_message`.
    fn until_or(
        &mut self,
        stop: char,
        keep_escapes: bool,
        eof_message: &str,
    ) -> Result<String, String> {
        match self.words_until(Some(stop), keep_escapes) {
            Ok((text, _)) => Ok(text),
            Err(_) if self.chars.peek().is_none() => Err(eof_message.to_string()),
            Err(e) => Err(e),
        }
    }

    /// A variable name: a run of digits, one special parameter character, or
    /// letters, digits and `_`.
    fn name(&mut self) -> String {
        let mut name = String::new();
        if let Some(&c) = self.chars.peek() {
            if c.is_numeric() {
                while let Some(digit) = self.chars.next_if(|c| c.is_numeric()) {
                    name.push(digit);
                }
                return name;
            }
            if matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.chars.next();
                return c.to_string();
            }
        }
        while let Some(c) = self
            .chars
            .next_if(|&c| c.is_alphabetic() || c.is_numeric() || c == '_')
        {
            name.push(c);
        }
        name
    }

    /// `<<` and any blanks after it form one piece of a word, so `<< EOF` is a
    /// single heredoc word; a lone `<` is ordinary.
    fn possible_heredoc(&mut self) -> String {
        self.chars.next();
        if self.chars.next_if_eq(&'<').is_none() {
            return "<".to_string();
        }
        let mut part = "<<".to_string();
        while let Some(blank) = self.chars.next_if(|&c| matches!(c, '\t' | '\r' | ' ')) {
            part.push(blank);
        }
        part
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: Mode = Mode {
        keep_quotes: true,
        keep_escapes: true,
    };
    const COOKED: Mode = Mode {
        keep_quotes: false,
        keep_escapes: false,
    };

    #[test]
    fn raw_words_keep_the_source_text() {
        assert_eq!(
            split(r#"RUN "<<EOF" 'a b' c\ d"#, RAW).unwrap(),
            ["RUN", "\"<<EOF\"", "'a b'", "c\\ d"]
        );
        assert_eq!(
            split("RUN <<  EOF  > foo", RAW).unwrap(),
            ["RUN", "<<  EOF", ">", "foo"]
        );
        assert_eq!(
            split("a $B ${C} ${D:-x}", RAW).unwrap(),
            ["a", "$B", "${C}", "${D:-x}"]
        );
    }

    #[test]
    fn cooked_words_drop_quotes_and_escapes() {
        assert_eq!(
            split(r#"'one two' e"o"\'f"#, COOKED).unwrap(),
            ["one two", "eo'f"]
        );
        assert_eq!(split("''", COOKED).unwrap(), Vec::<String>::new());
        assert_eq!(split(r#""a\"b\x""#, COOKED).unwrap(), [r#"a"b\x"#]);
    }

    #[test]
    fn malformed_input_is_an_error() {
        for text in [
            "'open", "\"open", "${", "${}", "${a", "${a:-x", "${a*}", "${a:#x}",
        ] {
            assert!(split(text, RAW).is_err(), "{text}");
        }
    }
}
