//! Word splitting for instruction arguments, before any variable expansion.
//!
//! Two splitters: plain whitespace splitting (FROM, EXPOSE, ADD/COPY lists) and
//! quote-aware splitting (ARG, ENV, LABEL) that keeps quotes and escapes inside
//! the words so that the later expansion step still sees them.

/// The whitespace that separates plain words and the ENV/LABEL legacy key.
pub(super) fn is_separator(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits on runs of space, tab, CR, VT and FF.
pub(super) fn split_whitespace(text: &str) -> Vec<String> {
    text.split(is_separator)
        .filter(|word| !word.is_empty())
        .map(str::to_string)
        .collect()
}

/// Splits `text` at unquoted whitespace, keeping quote characters and escape
/// sequences in the words. Inside `'…'` nothing is special; inside `"…"` and
/// outside quotes the escape character keeps the next character with it. A
/// trailing lone escape character is dropped, and a word that had quotes is
/// kept even when empty.
pub(super) fn split_quoted(text: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Whether the current word had quotes, so must be kept even if empty.
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut in_word = false;
    let mut chars = text.chars().peekable();

    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if in_word && (quoted || !word.is_empty()) {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                quoted = false;
                in_word = false;
            }
            None => {
                in_word = true;
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    quoted = true;
                    word.push(c);
                } else if c == escape {
                    // Outside quotes the escape stays with the character it
                    // escapes, even when that character is a quote.
                    if let Some(next) = chars.next() {
                        word.push(c);
                        word.push(next);
                    }
                } else {
                    word.push(c);
                }
            }
            Some(open) => {
                if c == open {
                    quote = None;
                    word.push(c);
                } else if c == escape && open != '\'' {
                    match chars.next() {
                        Some(next) => {
                            word.push(c);
                            word.push(next);
                        }
                        None => quote = None,
                    }
                } else {
                    word.push(c);
                }
            }
        }
    }
    if in_word && (quoted || !word.is_empty()) {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(text: &str) -> Vec<String> {
        split_quoted(text, '\\')
    }

    #[test]
    fn quoted_words_keep_quotes_and_escapes() {
        assert_eq!(quoted("foo"), ["foo"]);
        assert_eq!(quoted("  foo   bar "), ["foo", "bar"]);
        assert_eq!(quoted("foo\\ bar"), ["foo\\ bar"]);
        assert_eq!(quoted("foo=bar"), ["foo=bar"]);
        assert_eq!(quoted("foo bar 'abc xyz'"), ["foo", "bar", "'abc xyz'"]);
        assert_eq!(
            quoted(r#"foo bar "abc xyz""#),
            ["foo", "bar", r#""abc xyz""#]
        );
        assert_eq!(quoted("àöû"), ["àöû"]);
        assert_eq!(
            quoted(r#"föo bàr "âbc xÿz""#),
            ["föo", "bàr", r#""âbc xÿz""#]
        );
    }

    #[test]
    fn quoting_edge_cases() {
        assert_eq!(quoted("'' x"), ["''", "x"]);
        assert_eq!(quoted(r#"a="x \" y" b"#), [r#"a="x \" y""#, "b"]);
        assert_eq!(quoted(r"a='x \' b"), [r"a='x \'", "b"]);
        assert_eq!(quoted("a\\"), ["a"]);
        assert_eq!(quoted("\"a\\"), ["\"a"]);
        assert_eq!(quoted("\"open quote"), ["\"open quote"]);
        assert_eq!(split_quoted("a` b", '`'), ["a` b"]);
        assert_eq!(split_quoted("a\\ b", '`'), ["a\\", "b"]);
    }

    #[test]
    fn plain_split_uses_ascii_whitespace_only() {
        assert_eq!(split_whitespace("a \t\x0bb\x0c\rc"), ["a", "b", "c"]);
        assert_eq!(split_whitespace("a\u{a0}b"), ["a\u{a0}b"]);
        assert!(split_whitespace("").is_empty());
    }
}
