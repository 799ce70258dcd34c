//! Shell-word and variable expansion: `shell::Lexer::process_word` and
//! `process_words` against a small fixed environment. The first byte picks
//! the escape character and the lexer's switches; the rest is the word.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use rbuild_frontend::shell::Lexer;

fuzz_target!(|data: &[u8]| {
    let Some((&switches, word)) = data.split_first() else { return };
    let Ok(word) = std::str::from_utf8(word) else { return };
    let env: BTreeMap<String, String> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("HOME", "/root"),
        ("EMPTY", ""),
        ("SPACE", "abc  def"),
        ("LEADING", "  ab c"),
        ("PATTERN", "*.tar.gz"),
        ("UNICODE", "héllo wörld ✓"),
        ("QUOTES", "'\"$X\\"),
        ("X", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let escape = if switches & 1 == 0 { '\\' } else { '`' };
    let lexer = Lexer::new(escape)
        .raw_quotes(switches & 2 != 0)
        .raw_escapes(switches & 4 != 0)
        .skip_unset(switches & 8 != 0)
        .skip_quotes(switches & 16 != 0);
    let one = lexer.process_word(word, &env);
    let many = lexer.process_words(word, &env);
    // Both forms read the same variables and fail on the same words.
    assert_eq!(one.is_ok(), many.is_ok(), "{word:?}: {one:?} vs {many:?}");
    if let (Ok(one), Ok(many)) = (one, many) {
        assert_eq!(one.referenced, many.referenced, "{word:?}");
        assert!(one.unset.is_subset(&one.referenced), "{word:?}");
    }
});
