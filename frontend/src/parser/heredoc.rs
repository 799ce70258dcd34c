//! Heredocs: recognising `<<EOF`-style words in RUN, COPY and ADD lines and
//! reading their bodies from the lines that follow.

use super::lines::LineReader;
use super::shell_words::{self, Mode};
use super::{Heredoc, ParseError};

/// A heredoc word that cannot be read, e.g. `<<'EOF` with an unbalanced quote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid heredoc {word:?}: {reason}")]
pub struct HeredocWordError {
    pub word: String,
    pub reason: String,
}

/// Recognises one heredoc word such as `<<EOF`, `<<-"EOF"`, `3<<EOF` or
/// `<< EOF`, returning the heredoc it opens (with empty content), or `None`
/// for any other word. The name is the word with quotes and escapes resolved;
/// quoting any part of it turns off variable expansion of the body.
pub fn parse_heredoc_word(word: &str) -> Result<Option<Heredoc>, HeredocWordError> {
    let error = |reason: String| HeredocWordError {
        word: word.to_string(),
        reason,
    };

    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(after) => (true, after),
        None => (false, after),
    };
    let delimiter = after.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if delimiter.is_empty() || delimiter.contains('<') {
        return Ok(None);
    }

    let cooked = shell_words::split(
        delimiter,
        Mode {
            keep_quotes: false,
            keep_escapes: false,
        },
    )
    .map_err(error)?;
    let [name] = cooked.as_slice() else {
        // `<<EOF sh` as one word is not a heredoc.
        return Ok(None);
    };
    let quoted = shell_words::split(
        delimiter,
        Mode {
            keep_quotes: true,
            keep_escapes: false,
        },
    )
    .map_err(error)?;
    let [quoted] = quoted.as_slice() else {
        return Err(error("inconsistent word splitting".to_string()));
    };
    let quote_count = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();

    let file_descriptor = match &word[..digits] {
        "" => None,
        fd => Some(
            fd.parse::<u32>()
                .map_err(|_| error(format!("file descriptor {fd} is out of range")))?,
        ),
    };
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        expand: quote_count(name) == quote_count(quoted),
        chomp,
        file_descriptor,
    }))
}

/// The heredocs opened on an instruction line, in order. A line that a shell
/// could not split (e.g. an unterminated quote) opens none.
pub(super) fn heredocs_in_line(line: &str) -> Result<Vec<Heredoc>, HeredocWordError> {
    let Ok(words) = shell_words::split(
        line,
        Mode {
            keep_quotes: true,
            keep_escapes: true,
        },
    ) else {
        return Ok(Vec::new());
    };
    let mut heredocs = Vec::new();
    for word in &words {
        heredocs.extend(parse_heredoc_word(word)?);
    }
    Ok(heredocs)
}

/// Fills in the body of `heredoc` from the lines after its instruction: every
/// line up to the one equal to its name (which, for `<<-`, may be indented
/// with tabs). Lines keep their line endings; with `<<-` leading tabs are
/// stripped from each line. Returns `false` if the file ends first.
pub(super) fn read_body(
    heredoc: &mut Heredoc,
    lines: &mut LineReader<'_>,
) -> Result<bool, ParseError> {
    let mut content = String::new();
    while let Some(line) = lines.next_line()? {
        let mut candidate = line.text();
        if heredoc.chomp {
            candidate = candidate.trim_start_matches('\t');
        }
        if candidate == heredoc.name {
            heredoc.content = if heredoc.chomp {
                strip_leading_tabs(&content)
            } else {
                content
            };
            return Ok(true);
        }
        content.push_str(line.raw);
    }
    Ok(false)
}

fn strip_leading_tabs(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str) -> Option<Heredoc> {
        parse_heredoc_word(text).unwrap()
    }

    fn names(line: &str) -> Vec<String> {
        heredocs_in_line(line)
            .unwrap()
            .into_iter()
            .map(|h| h.name)
            .collect()
    }

    #[test]
    fn heredoc_words() {
        for text in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<-\"EOF\"",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
        ] {
            assert_eq!(word(text).map(|h| h.name).as_deref(), Some("EOF"), "{text}");
        }
        for text in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh", "<<''"] {
            assert_eq!(word(text), None, "{text}");
        }
        for text in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(parse_heredoc_word(text).is_err(), "{text}");
        }
    }

    #[test]
    fn expansion_chomp_and_descriptor() {
        let plain = word("<<EOF").unwrap();
        assert!(plain.expand && !plain.chomp && plain.file_descriptor.is_none());
        let chomped = word("<<-'EOF'").unwrap();
        assert!(!chomped.expand && chomped.chomp);
        assert_eq!(word("3<<EOF").unwrap().file_descriptor, Some(3));
        assert!(parse_heredoc_word("99999999999<<EOF").is_err());
    }

    #[test]
    fn partly_quoted_names() {
        let h = word("<<eo'f'").unwrap();
        assert_eq!((h.name.as_str(), h.expand), ("eof", false));
        let h = word("<<eo\\'f").unwrap();
        assert_eq!((h.name.as_str(), h.expand), ("eo'f", true));
        let h = word("<<'e'o\\'f").unwrap();
        assert_eq!((h.name.as_str(), h.expand), ("eo'f", false));
        let h = word("<<'one two'").unwrap();
        assert_eq!((h.name.as_str(), h.expand), ("one two", false));
        assert_eq!(word("<<$EOF").unwrap().name, "$EOF");
    }

    #[test]
    fn heredocs_found_in_lines() {
        assert_eq!(names("RUN <<EOF"), ["EOF"]);
        assert_eq!(names("RUN <<-EOF"), ["EOF"]);
        assert_eq!(names("RUN << -EOF"), ["-EOF"]);
        assert_eq!(names("RUN <<'EOF'"), ["EOF"]);
        assert_eq!(names("RUN 4<<EOF"), ["EOF"]);
        assert_eq!(names("COPY <<EOF <<EOF2 /dest"), ["EOF", "EOF2"]);
        assert_eq!(names("RUN <<  EOF  > foo"), ["EOF"]);
        // `<<-` followed by a blank is an ordinary word, not a heredoc.
        assert!(names("RUN <<- EOF").is_empty());
        assert!(names("RUN '<<EOF'").is_empty());
        assert!(names("RUN \"<<EOF\"").is_empty());
        // A line a shell cannot split has no heredocs.
        assert!(names("RUN <<EOF 'unterminated").is_empty());
    }

    #[test]
    fn chomp_strips_leading_tabs_of_each_line() {
        assert_eq!(
            strip_leading_tabs("\t\thello\n\tworld\n\n x\t\n"),
            "hello\nworld\n\n x\t\n"
        );
    }
}
