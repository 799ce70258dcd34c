//! Bounded excerpts of Dockerfile text for messages: a hostile or generated
//! Dockerfile may hold a 64 KiB word or a 10 MB line, and an error about it
//! should still be one readable line.

use std::borrow::Cow;

/// The most characters of a piece of Dockerfile text a message shows.
pub const MAX_EXCERPT_CHARS: usize = 200;

/// `text`, or its first [`MAX_EXCERPT_CHARS`] characters followed by `…`.
pub fn excerpt(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
        None => text.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        assert_eq!(excerpt("short"), "short");
        let exact = "x".repeat(MAX_EXCERPT_CHARS);
        assert_eq!(excerpt(&exact), exact);
        let long = "é".repeat(MAX_EXCERPT_CHARS + 1);
        assert_eq!(excerpt(&long), format!("{}…", "é".repeat(MAX_EXCERPT_CHARS)));
    }
}
