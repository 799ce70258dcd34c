//! The rules rbuild checks (name, what it checks, the fix) and what one finds: the data the
//! checks, the lowering and the graph share, below all of them.

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
    rule("CopyIgnoredFile", "COPY and ADD do not name files the .dockerignore leaves out", "remove the source, or the pattern that excludes it from .dockerignore"),
    rule("ContextWithoutDockerignore", "COPY . of a context that holds .git or node_modules has a .dockerignore", "add a .dockerignore that leaves out .git and node_modules"),
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
