//! `.dockerignore` patterns: `dockerignore::IgnorePatterns::parse` (and
//! `from_patterns`) on the input, then `is_excluded` and
//! `may_include_under` on fixed paths and on paths from the input. Input
//! layout: the file's content, then optionally a NUL byte followed by one
//! path per line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_frontend::dockerignore::IgnorePatterns;

const PATHS: &[&str] = &[
    "", ".", "/", "a", "a/b", "a/b/c.txt", "Dockerfile", ".dockerignore", ".git/config",
    "node_modules/x/y.js", "src/main.rs", "target/debug/x", "dir/", "./a/../b", "a/**/b",
    "temp", "tempfile", "somedir/temporary.txt", "x/y/z/w", "[a]", "a\\b", "é/ü",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (content, extra) = text.split_once('\0').unwrap_or((text, ""));
    if let Ok(patterns) = IgnorePatterns::parse(content) {
        let _ = patterns.is_empty();
        let _ = patterns.has_exceptions();
        let paths: Vec<&str> = PATHS.iter().copied().chain(extra.lines()).collect();
        for &dir in &paths {
            if !patterns.is_excluded(dir) || patterns.may_include_under(dir) {
                continue;
            }
            // A walker skips such a directory whole: nothing below it may be
            // re-included.
            // Children that stay below it once cleaned: no `..`, not empty.
            let children = paths.iter().filter(|c| {
                c.split('/').all(|part| part != "..")
                    && c.split('/').any(|part| !part.is_empty() && part != ".")
            });
            for child in children {
                let below = format!("{dir}/{child}");
                assert!(
                    patterns.is_excluded(&below),
                    "{below:?} is kept by {content:?} although {dir:?} is excluded with no exception below it"
                );
            }
        }
    }
    let _ = IgnorePatterns::from_patterns(content.lines());
});
