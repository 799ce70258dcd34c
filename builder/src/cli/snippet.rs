//! The Dockerfile lines around an error, BuildKit style:
//!
//! ```text
//!  2 |     COPY a /a
//!  3 | >>> WROKDIR /x
//!  4 |     CMD ["x"]
//! ```

use rbuild_frontend::excerpt::excerpt;

/// The most marked lines shown: an instruction continued over thousands of
/// lines shows its first and last few, not all of them.
const MAX_MARKED_LINES: usize = 8;

/// Lines `start..=end` (1-based) marked with `>>>`, with up to two lines of
/// context either side. Empty when the range is outside the text. However
/// large the Dockerfile, the snippet stays a few lines of bounded width.
pub fn snippet(text: &str, start: usize, end: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if start == 0 || start > lines.len() {
        return String::new();
    }
    let end = end.clamp(start, lines.len());
    let first = start.saturating_sub(2).max(1);
    let last = (end + 2).min(lines.len());
    let width = last.to_string().len();
    // The marked lines elided from the middle of a long range.
    let half = MAX_MARKED_LINES / 2;
    let elided = (end - start + 1 > MAX_MARKED_LINES).then(|| start + half..=end - half);
    let mut out = String::new();
    for n in first..=last {
        match &elided {
            Some(range) if *range.start() == n => {
                let count = range.end() - range.start() + 1;
                out.push_str(&format!(" {:>width$} | >>> … {count} more lines …\n", ""));
                continue;
            }
            Some(range) if range.contains(&n) => continue,
            _ => {}
        }
        let marker = if (start..=end).contains(&n) { ">>> " } else { "    " };
        out.push_str(&format!(" {n:>width$} | {marker}{}\n", excerpt(lines[n - 1])));
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

    #[test]
    fn a_huge_instruction_gives_a_small_snippet() {
        let mut text = String::from("FROM scratch\nRUN echo \\\n");
        text.push_str(&"a \\\n".repeat(100_000));
        text.push_str("b\nLABEL x=y\n");
        let last = 100_003;
        let shown = snippet(&text, 2, last);
        assert_eq!(shown.lines().count(), 1 + 4 + 1 + 4 + 1, "{shown}");
        assert!(shown.contains(">>> … 99994 more lines …"), "{shown}");
        assert!(shown.contains(&format!(" {last} | >>> b")), "{shown}");

        let line = format!("LABEL big={}", "é".repeat(1_000_000));
        let shown = snippet(&line, 1, 1);
        assert!(shown.chars().count() < 250, "{}", shown.len());
        assert!(shown.trim_end().ends_with('…'));
    }
}
