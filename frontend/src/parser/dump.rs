//! The syntax-tree dump: one `(keyword ["--flags"] "arg" …)` line per
//! instruction, with every string quoted by Go's `strconv.Quote` rules. The
//! format is fixed by the parser conformance corpus, so it must not change.

use std::fmt::Write;

use super::{Dockerfile, Node};

impl Dockerfile {
    /// One line per instruction, joined with `\n`, without a final newline.
    pub fn dump(&self) -> String {
        self.children
            .iter()
            .map(|node| format!("({})", node.dump()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Node {
    /// This instruction's dump without the outer parentheses, e.g.
    /// `copy ["--from=a"] "src" "dst"` or `onbuild (run "x")`.
    pub fn dump(&self) -> String {
        let mut out = self.keyword.clone();
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            let _ = write!(out, " [{}]", flags.join(" "));
        }
        for arg in &self.args {
            out.push(' ');
            out.push_str(&go_quote(arg));
        }
        if let Some(next) = &self.next {
            let _ = write!(out, " ({})", next.dump());
        }
        // An empty keyword (a line made only of continuations) would leave a
        // leading space.
        out.trim().to_string()
    }
}

/// Quotes `text` as Go's `strconv.Quote` does: `"` and `\` escaped, C escapes
/// for BEL, BS, FF, LF, CR, TAB and VT, `\xHH` for other ASCII controls and
/// DEL, `\uHHHH` / `\UHHHHHHHH` for other non-printable characters, and every
/// printable character as itself.
pub(super) fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if c < ' ' || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Whether a character is printable in Go's sense: a letter, mark, number,
/// punctuation or symbol, or the ASCII space. Other spaces, controls, format
/// characters, surrogates, private-use and unassigned code points are not.
fn is_printable(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    // Rust's debug escaping leaves exactly those characters alone, except that
    // it also escapes grapheme extenders (combining marks) when they come
    // first; placing the character after a letter avoids that special case.
    let probe: String = ['a', c].iter().collect();
    probe.escape_debug().eq(probe.chars())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_matches_go() {
        assert_eq!(go_quote(""), r#""""#);
        assert_eq!(go_quote(r#"a "b" \c 'd'"#), r#""a \"b\" \\c 'd'""#);
        assert_eq!(
            go_quote("\u{7}\u{8}\u{c}\n\r\t\u{b}\0\u{1b}\u{7f}"),
            r#""\a\b\f\n\r\t\v\x00\x1b\x7f""#
        );
        assert_eq!(go_quote("♥ ☃ é ü 日本"), "\"♥ ☃ é ü 日本\"");
        assert_eq!(
            go_quote("\u{a0}\u{85}\u{2028}\u{feff}\u{e000}"),
            r#""\u00a0\u0085\u2028\ufeff\ue000""#
        );
        assert_eq!(go_quote("e\u{301}\u{301}"), "\"e\u{301}\u{301}\"");
        assert_eq!(go_quote("\u{301}"), "\"\u{301}\"");
        assert_eq!(
            go_quote("😀\u{f0000}\u{e0001}"),
            "\"😀\\U000f0000\\U000e0001\""
        );
    }
}
