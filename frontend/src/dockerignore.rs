//! `.dockerignore` semantics: which paths of the build context are left out.
//!
//! The file holds one pattern per line. A line whose first character is `#`
//! is a comment; other lines are trimmed and empty ones skipped. A leading
//! `!` makes the pattern an exception (it re-includes what earlier patterns
//! excluded). Patterns are cleaned lexically (`a//b/./c/` is `a/b/c`) and a
//! leading `/` is dropped, so every pattern is relative to the context root.
//! A path is excluded when the **last** pattern that matches it, or matches
//! one of its parent directories, is not an exception. The `glob` submodule
//! describes the pattern syntax.
//!
//! This is written here rather than taken from the `ignore` crate because
//! gitignore rules differ from Docker's in ways that change which files
//! are sent: an unanchored gitignore pattern such as `*.log` matches at any
//! depth while Docker's matches only at the top; a trailing `/` restricts a
//! gitignore pattern to directories while Docker cleans it away; gitignore
//! cannot re-include a file whose parent directory is excluded while a
//! Docker exception can; and Docker gives `**` a few shape-specific rules.

mod glob;

use glob::Glob;

pub use glob::SyntaxError;

/// A pattern that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid .dockerignore pattern {pattern:?}{}: {kind}", at_line(.line))]
pub struct PatternError {
    /// The 1-based line in the file, when parsed from a file.
    pub line: Option<usize>,
    /// The pattern as written (trimmed).
    pub pattern: String,
    pub kind: PatternErrorKind,
}

fn at_line(line: &Option<usize>) -> String {
    line.map(|n| format!(" on line {n}")).unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PatternErrorKind {
    #[error("`!` must be followed by a pattern")]
    EmptyException,
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
}

#[derive(Debug, Clone)]
struct Pattern {
    glob: Glob,
    exception: bool,
    /// The line as written (trimmed), for messages.
    text: String,
}

/// The compiled patterns of one `.dockerignore` file, in file order.
#[derive(Debug, Clone, Default)]
pub struct IgnorePatterns {
    patterns: Vec<Pattern>,
}

impl IgnorePatterns {
    /// Parses the content of a `.dockerignore` file.
    pub fn parse(content: &str) -> Result<Self, PatternError> {
        let content = content.strip_prefix('\u{feff}').unwrap_or(content);
        let mut patterns = Vec::new();
        for (index, line) in content.lines().enumerate() {
            // A comment is recognised before trimming: ` # x` is a pattern.
            if line.starts_with('#') {
                continue;
            }
            if let Some(pattern) = compile(line).map_err(|e| e.on_line(index + 1))? {
                patterns.push(pattern);
            }
        }
        Ok(IgnorePatterns { patterns })
    }

    /// Compiles a list of patterns written as in the file (`!` exceptions
    /// included, no comments).
    pub fn from_patterns<I, S>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut compiled = Vec::new();
        for pattern in patterns {
            compiled.extend(compile(pattern.as_ref())?);
        }
        Ok(IgnorePatterns { patterns: compiled })
    }

    /// True when there are no patterns: nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when some pattern starts with `!`.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `rel_path` (`/`-separated, relative to the context root) is
    /// left out of the context. The root itself is never excluded.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        self.excluded_by(rel_path).is_some()
    }

    /// A pattern (as written) that leaves `rel_path` out, if it is left out:
    /// one that matched it or a parent directory after the last exception
    /// that let it back in.
    pub fn excluded_by(&self, rel_path: &str) -> Option<&str> {
        let path = clean_relative(rel_path);
        if path.is_empty() {
            return None;
        }
        let parents: Vec<&str> = path
            .match_indices('/')
            .map(|(slash, _)| &path[..slash])
            .collect();
        let mut excluded_by: Option<&Pattern> = None;
        for pattern in &self.patterns {
            // Patterns that cannot change the verdict need not be tried.
            if pattern.exception != excluded_by.is_some() {
                continue;
            }
            let glob = &pattern.glob;
            if glob.matches(&path) || parents.iter().any(|parent| glob.matches(parent)) {
                excluded_by = (!pattern.exception).then_some(pattern);
            }
        }
        excluded_by.map(|p| p.text.as_str())
    }

    /// For an excluded directory `dir_rel`: whether an exception could
    /// re-include something below it. When this is false a walker may skip
    /// the whole directory.
    ///
    /// Only exceptions that can match a path strictly inside the directory
    /// matter: one matching the directory itself or an ancestor matched it
    /// already and still lost to a later pattern, which then wins for
    /// everything inside as well.
    pub fn may_include_under(&self, dir_rel: &str) -> bool {
        let dir = clean_relative(dir_rel);
        self.patterns
            .iter()
            .filter(|p| p.exception)
            .any(|p| match dir.as_str() {
                "" => true,
                dir => p.glob.may_match_below(dir),
            })
    }
}

/// Turns one line into a pattern; `None` for a blank line.
fn compile(line: &str) -> Result<Option<Pattern>, PatternError> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let error = |kind| PatternError {
        line: None,
        pattern: trimmed.to_string(),
        kind,
    };
    let (exception, text) = match trimmed.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, trimmed),
    };
    if text.is_empty() {
        return Err(error(PatternErrorKind::EmptyException));
    }
    let mut cleaned = glob::clean(text);
    if cleaned.len() > 1 && cleaned.starts_with('/') {
        cleaned.remove(0);
    }
    let glob = Glob::new(&cleaned).map_err(|e| error(e.into()))?;
    Ok(Some(Pattern { glob, exception, text: trimmed.to_string() }))
}

/// Cleans a context-relative path; the root becomes "".
fn clean_relative(path: &str) -> String {
    let cleaned = glob::clean(path);
    match cleaned.trim_start_matches('/') {
        "." => String::new(),
        rest => rest.to_string(),
    }
}

impl PatternError {
    fn on_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self
    }
}

#[cfg(test)]
mod tests;
