//! Build checks: BuildKit's Dockerfile lint rules (with BuildKit's names, so an
//! existing `# check=` line carries over) and a few of rbuild's own.
//!
//! [`check_dockerfile`] runs the rules that need only the text, the syntax tree
//! and the typed stages; lowering adds the findings that need expansion
//! (UndefinedVar, in [`crate::graph::BuildGraph::findings`]). [`CheckConfig`]
//! (the `check` directive or the `BUILDKIT_DOCKERFILE_CHECK` build argument)
//! decides which rules count and whether findings fail the build.

mod stages;
mod syntax;
#[cfg(test)]
mod tests;

use crate::instructions::Dockerfile;
use crate::parser;

/// One rule: its name, what it checks, and the one-line fix a finding shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub description: &'static str,
    pub fix: &'static str,
    /// Off unless `experimental=` names it (as BuildKit's experimental rules).
    pub experimental: bool,
}

const fn rule(name: &'static str, description: &'static str, fix: &'static str) -> Rule {
    Rule { name, description, fix, experimental: false }
}

/// Every rule rbuild checks, BuildKit's first, then rbuild's own.
pub const RULES: &[Rule] = &[
    rule("StageNameCasing", "stage names are lowercase", "write the stage name in lowercase"),
    rule("FromAsCasing", "AS is cased like its FROM", "write FROM and AS in the same case"),
    rule("NoEmptyContinuation", "no empty lines inside a line continuation", "remove the empty line or put a comment on it"),
    rule("ConsistentInstructionCasing", "instructions all have the same case", "write every instruction in the case most of them use"),
    rule("DuplicateStageName", "stage names are unique", "give each stage a name of its own"),
    rule("ReservedStageName", "`scratch` and `context` are not stage names", "choose another stage name"),
    rule("JSONArgsRecommended", "CMD and ENTRYPOINT use the JSON form", "write it as a JSON array, e.g. CMD [\"prog\", \"arg\"], or set SHELL explicitly"),
    rule("MaintainerDeprecated", "no MAINTAINER", "use LABEL org.opencontainers.image.authors=\"…\" instead"),
    rule("UndefinedArgInFrom", "FROM uses only declared ARGs", "declare the ARG before the first FROM, or fix its name"),
    rule("WorkdirRelativePath", "a stage's first WORKDIR is absolute", "start the path with /"),
    rule("UndefinedVar", "variables are declared before they are used", "declare it with ARG or ENV first, or fix its name"),
    rule("MultipleInstructionsDisallowed", "one CMD, ENTRYPOINT and HEALTHCHECK per stage", "keep only the last one"),
    rule("LegacyKeyValueFormat", "ENV and LABEL use key=value", "write key=value (quote the value if it has spaces)"),
    rule("RedundantTargetPlatform", "no FROM --platform=$TARGETPLATFORM", "remove the --platform flag"),
    rule("SecretsUsedInArgOrEnv", "no secrets in ARG or ENV", "pass it with --secret and RUN --mount=type=secret instead"),
    rule("InvalidDefaultArgInFrom", "FROM is valid with the ARG defaults alone", "give the ARG a default that makes the image name valid"),
    rule("FromPlatformFlagConstDisallowed", "FROM --platform is not a constant", "remove --platform, use a variable such as $BUILDPLATFORM, or name the stage after the platform"),
    Rule {
        name: "InvalidDefinitionDescription",
        description: "a comment right above FROM or ARG describes it by name",
        fix: "start the comment with the stage or ARG name, or put an empty line between",
        experimental: true,
    },
    rule("ExposeProtoCasing", "EXPOSE protocols are lowercase", "write the protocol in lowercase, e.g. 80/tcp"),
    rule("ExposeInvalidFormat", "EXPOSE names container ports only", "expose the container port only (publish host ports with docker run -p)"),
    rule("GlobalArgNotRedeclared", "a stage that uses an ARG declared before the first FROM redeclares it", "add ARG NAME (without a value) to the stage"),
];

/// The rule named `name`. Every name rbuild reports is in [`RULES`].
pub fn find_rule(name: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.name.eq_ignore_ascii_case(name))
}

/// One thing a rule found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The line of the instruction (1-based).
    pub line: usize,
    /// The rule's name, e.g. `StageNameCasing`.
    pub rule: &'static str,
    /// What is wrong, in one line.
    pub message: String,
}

impl Finding {
    pub fn new(rule: &'static str, line: usize, message: impl Into<String>) -> Finding {
        debug_assert!(find_rule(rule).is_some(), "unknown rule {rule}");
        Finding { line, rule, message: message.into() }
    }

    /// The rule's one-line fix.
    pub fn fix(&self) -> &'static str {
        find_rule(self.rule).map_or("", |r| r.fix)
    }
}

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
