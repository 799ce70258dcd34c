//! Build checks: BuildKit's Dockerfile lint rules (with BuildKit's names, so an
//! existing `# check=` line carries over) and a few of rbuild's own.
//!
//! [`check_dockerfile`] runs the rules that need only the text, the syntax tree
//! and the typed stages; lowering adds the findings that need expansion
//! (UndefinedVar, in [`crate::graph::BuildGraph::findings`]). [`CheckConfig`]
//! (the `check` directive or the `BUILDKIT_DOCKERFILE_CHECK` build argument)
//! decides which rules count and whether findings fail the build.

pub mod rules;
mod stages;
mod syntax;
#[cfg(test)]
mod tests;

use crate::instructions::Dockerfile;
use crate::parser;

pub use rules::{find_rule, Finding, Rule, RULES};

/// What the `check` directive (or `BUILDKIT_DOCKERFILE_CHECK`) says:
/// `skip=RULE,RULE|all;error=true;experimental=RULE|all`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub skip_all: bool,
    pub skip: Vec<String>,
    pub experimental_all: bool,
    pub experimental: Vec<String>,
    /// Findings fail the build.
    pub error: bool,
}

impl CheckConfig {
    pub fn parse(value: &str) -> Result<CheckConfig, String> {
        let mut config = CheckConfig::default();
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| format!("invalid check option {part:?}"))?;
            let names = || value.split(',').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect::<Vec<_>>();
            match key.trim() {
                "skip" if value.trim() == "all" => config.skip_all = true,
                "skip" => config.skip = names(),
                "experimental" if value.trim() == "all" => config.experimental_all = true,
                "experimental" => config.experimental = names(),
                "error" => {
                    config.error = match value.trim() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        other => return Err(format!("invalid check option error={other}: true or false")),
                    }
                }
                other => return Err(format!("invalid check option {other:?}: skip, error or experimental")),
            }
        }
        Ok(config)
    }

    /// The configuration of a build: the build argument wins over the directive.
    pub fn of_build(directive: Option<&str>, build_arg: Option<&str>) -> Result<CheckConfig, String> {
        build_arg.or(directive).map_or(Ok(CheckConfig::default()), CheckConfig::parse)
    }

    pub fn enabled(&self, rule: &Rule) -> bool {
        let named = |names: &[String]| names.iter().any(|n| n.eq_ignore_ascii_case(rule.name));
        if rule.experimental && !self.experimental_all && !named(&self.experimental) {
            return false;
        }
        !self.skip_all && !named(&self.skip)
    }

    /// The findings of enabled rules, in line order, each once.
    pub fn apply(&self, mut findings: Vec<Finding>) -> Vec<Finding> {
        findings.retain(|f| find_rule(f.rule).is_some_and(|r| self.enabled(r)));
        findings.sort();
        findings.dedup();
        findings
    }
}

/// Runs every rule that needs no expansion over a Dockerfile: `source` is its
/// text, `ast` its syntax tree and `dockerfile` its typed stages.
pub fn check_dockerfile(source: &str, ast: &parser::Dockerfile, dockerfile: &Dockerfile) -> Vec<Finding> {
    let mut findings = Vec::new();
    syntax::check(source, ast, &mut findings);
    stages::check(dockerfile, &mut findings);
    findings
}

/// Whether a `KEY` names a secret: one of its `_`-separated words is a secret
/// word (`password`, `token`, …) and none says it is not (`public`, `file`, …).
fn is_secret_name(key: &str) -> bool {
    const SECRET: &[&str] = &["apikey", "auth", "credential", "credentials", "key", "password", "pword", "passwd", "secret", "token"];
    const NOT_SECRET: &[&str] = &["public", "file", "version"];
    let has = |words: &[&str]| key.split('_').any(|part| words.iter().any(|w| part.eq_ignore_ascii_case(w)));
    has(SECRET) && !has(NOT_SECRET)
}
