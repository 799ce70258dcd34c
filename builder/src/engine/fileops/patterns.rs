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

/// The filters of one copied source: `--exclude` and the `--parents`
/// selection, matched against an entry's path below the source (`rel`, its
/// names; empty at the source itself, which is never filtered). Only the
/// selection walk applies them; the copy writes what it selected.
#[derive(Clone, Copy)]
pub(crate) struct SourceFilter<'a> {
    pub exclude: Option<&'a IgnorePatterns>,
    pub include: Option<&'a IncludePattern>,
}

/// What a [`SourceFilter`] makes of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Filtered {
    Selected,
    /// Not copied itself; `excluded` says whether `--exclude` (rather than
    /// the `--parents` selection) left it out.
    Skipped { excluded: bool },
}

impl SourceFilter<'_> {
    fn is_none(&self) -> bool {
        self.exclude.is_none() && self.include.is_none()
    }

    /// The name of an entry as `rel` holds it. Names are only ever matched
    /// against filters: without any, an empty placeholder keeps the depth
    /// and costs no allocation.
    pub(crate) fn rel_name(&self, name: &std::ffi::OsStr) -> String {
        if self.is_none() {
            String::new()
        } else {
            name.to_string_lossy().into_owned()
        }
    }

    pub(crate) fn judge(&self, rel: &[String]) -> Filtered {
        if rel.is_empty() || self.is_none() {
            return Filtered::Selected;
        }
        let rel = rel.join("/");
        let excluded = self.exclude.is_some_and(|e| e.is_excluded(&rel));
        let included = self.include.is_none_or(|p| p.matches(&rel));
        if included && !excluded {
            Filtered::Selected
        } else {
            Filtered::Skipped { excluded }
        }
    }

    /// Whether a skipped directory at `rel` may still hold selected entries:
    /// an exception of `--exclude` or the `--parents` pattern reaching inside.
    pub(crate) fn may_select_below(&self, rel: &[String], excluded: bool) -> bool {
        let rel = rel.join("/");
        let exclusion_may_lift = !excluded
            || self
                .exclude
                .is_some_and(|e| e.has_exceptions() && e.may_include_under(&rel));
        exclusion_may_lift && self.include.is_none_or(|p| p.may_match_below(&rel))
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
