//! Text as Graphviz needs it: escaped for HTML-like labels and for quoted
//! strings, wrapped to a readable width, durations in a short human form.
//!
//! Dockerfile text can hold anything (`<`, `&`, quotes, backslashes, tabs,
//! Unicode), and one unescaped `<` would make `dot` reject the whole file.

/// `text` escaped for an HTML-like label (`label=<…>`). Control characters
/// (tabs included) become spaces: Graphviz would draw them as boxes or reject them.
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `text` as a quoted DOT string for an escString attribute (`tooltip`):
/// backslashes are doubled because Graphviz reads `\n`, `\l`, `\N` in them.
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `text` broken at spaces into lines of at most `width` characters (longer
/// words are cut), at most `max_lines` of them; what does not fit ends in `…`.
/// Runs of whitespace count as one space, since continuation lines were joined.
pub fn wrap(text: &str, width: usize, max_lines: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = current.chars().count();
            let room = if used == 0 { width } else { width.saturating_sub(used + 1) };
            if word.len() <= room {
                if used > 0 {
                    current.push(' ');
                }
                current.extend(word.iter());
                break;
            }
            if used == 0 {
                // A word longer than a line: cut it.
                let rest = word.split_off(width);
                lines.push(word.iter().collect());
                word = rest;
            } else {
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        let last = &mut lines[max_lines - 1];
        while last.chars().count() + 1 > width {
            last.pop();
        }
        last.push('…');
    }
    lines
}

/// `text` cut to `max` characters, ending in `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `0.04 s`, `1.25 s`, `12.5 s`, `2m 05s`.
pub fn duration(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.2} s")
    } else if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        let whole = seconds.round() as u64;
        format!("{}m {:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_drops_control_characters() {
        assert_eq!(
            html("RUN echo \"<a href='x'>\" && cat\tb \\ c"),
            "RUN echo &quot;&lt;a href=&#39;x&#39;&gt;&quot; &amp;&amp; cat b \\ c"
        );
        assert_eq!(html("héllo ✓"), "héllo ✓");
    }

    #[test]
    fn quoted_escapes_quotes_and_backslashes() {
        assert_eq!(quoted(r#"say "hi" \n"#), r#""say \"hi\" \\n""#);
        assert_eq!(quoted("a\nb\tc"), r#""a\nb c""#);
    }

    #[test]
    fn wrap_breaks_at_spaces_cuts_long_words_and_marks_what_is_left_out() {
        assert_eq!(wrap("COPY  a   /b", 20, 3), ["COPY a /b"]);
        assert_eq!(wrap("RUN make all && make install", 12, 3), ["RUN make all", "&& make", "install"]);
        assert_eq!(wrap("RUN abcdefghij", 4, 5), ["RUN", "abcd", "efgh", "ij"]);
        assert_eq!(wrap("one two three four five", 9, 2), ["one two", "three…"]);
        assert!(wrap("", 10, 2).is_empty());
    }

    #[test]
    fn shorten_and_duration() {
        assert_eq!(shorten("abcdef", 4), "abc…");
        assert_eq!(shorten("abc", 4), "abc");
        assert_eq!(duration(0.041), "0.04 s");
        assert_eq!(duration(12.46), "12.5 s");
        assert_eq!(duration(125.0), "2m 05s");
    }
}
