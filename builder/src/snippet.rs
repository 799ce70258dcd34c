//! The Dockerfile lines around an error, BuildKit style:
//!
//! ```text
//!  2 |     COPY a /a
//!  3 | >>> WROKDIR /x
//!  4 |     CMD ["x"]
//! ```

/// Lines `start..=end` (1-based) marked with `>>>`, with up to two lines of
/// context either side. Empty when the range is outside the text.
pub fn snippet(text: &str, start: usize, end: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if start == 0 || start > lines.len() {
        return String::new();
    }
    let end = end.clamp(start, lines.len());
    let first = start.saturating_sub(2).max(1);
    let last = (end + 2).min(lines.len());
    let width = last.to_string().len();
    let mut out = String::new();
    for n in first..=last {
        let marker = if (start..=end).contains(&n) { ">>> " } else { "    " };
        out.push_str(&format!(" {n:>width$} | {marker}{}\n", lines[n - 1]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_the_failing_lines_with_context() {
        let text = "FROM scratch\nCOPY a /a\nWROKDIR /x\nCMD [\"x\"]\nLABEL a=b\nLABEL c=d\n";
        assert_eq!(
            snippet(text, 3, 3),
            " 1 |     FROM scratch\n 2 |     COPY a /a\n 3 | >>> WROKDIR /x\n 4 |     CMD [\"x\"]\n 5 |     LABEL a=b\n"
        );
        assert_eq!(snippet(text, 1, 1).lines().count(), 3);
        assert_eq!(snippet(text, 9, 9), "");
    }
}
