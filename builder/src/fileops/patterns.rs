//! The Docker-syntax patterns of COPY/ADD flags: `--exclude` rules and the
//! selection `--parents` makes. Both use `.dockerignore` matching (`**`, `!`
//! exceptions, a match on a directory covering everything inside it), applied
//! to paths relative to the source being copied.

use rbuild_frontend::dockerignore::{IgnorePatterns, PatternError};

use super::error::{FileOpError, Result};

/// Compiles `--exclude` patterns; `None` when there are none.
pub(crate) fn compile_excludes(patterns: &[String]) -> Result<Option<IgnorePatterns>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    IgnorePatterns::from_patterns(patterns)
        .map(Some)
        .map_err(invalid)
}

/// What `--parents` copies below its pivot: the paths the pattern matches,
/// with everything inside the directories it matches.
#[derive(Clone, Debug)]
pub(crate) struct IncludePattern {
    /// "Exclude everything except what the pattern matches": ignore rules give
    /// exactly the include semantics (parent matches and `**` included).
    rules: IgnorePatterns,
}

impl IncludePattern {
    pub(crate) fn new(pattern: &str) -> Result<Self> {
        let rules = IgnorePatterns::from_patterns(["**".to_owned(), format!("!{pattern}")])
            .map_err(invalid)?;
        Ok(IncludePattern { rules })
    }

    /// Whether `rel` ('/'-separated, relative to the pivot) is selected.
    pub(crate) fn matches(&self, rel: &str) -> bool {
        !self.rules.is_excluded(rel)
    }

    /// Whether something inside the directory `rel` could be selected.
    pub(crate) fn may_match_below(&self, rel: &str) -> bool {
        self.rules.may_include_under(rel)
    }
}

fn invalid(e: PatternError) -> FileOpError {
    FileOpError::InvalidPattern {
        pattern: e.pattern.clone(),
        message: e.kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_pattern_selects_paths_and_their_contents() {
        let p = IncludePattern::new("a/*/c.txt").unwrap();
        assert!(p.matches("a/b/c.txt"));
        assert!(!p.matches("a/b/d.txt"));
        assert!(!p.matches("a/b"));
        assert!(p.may_match_below("a"));
        assert!(p.may_match_below("a/b"));
        assert!(!p.may_match_below("x"));
        let dir = IncludePattern::new("src").unwrap();
        assert!(dir.matches("src/deep/file"));
        let any = IncludePattern::new("**/*.go").unwrap();
        assert!(any.matches("x/y/main.go"));
        assert!(any.matches("main.go"));
    }

    #[test]
    fn bad_patterns_are_reported_with_the_pattern() {
        let err = compile_excludes(&["[".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("\"[\""), "{err}");
        assert!(compile_excludes(&[]).unwrap().is_none());
    }
}
