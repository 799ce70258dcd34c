use super::*;
use crate::graph::{ImageMeta, Platform};
use crate::instructions::parse_with_syntax_tree;
use crate::lower::{lower, ImageResolver, LowerOptions};

struct AnyImage;
impl ImageResolver for AnyImage {
    fn resolve(&self, _: &str, _: &Platform) -> Result<ImageMeta, String> {
        Ok(ImageMeta::empty())
    }
}

/// Every finding of every rule (experimental ones too), lowering included.
fn findings(source: &str) -> Vec<Finding> {
    let (ast, dockerfile) = parse_with_syntax_tree(source).unwrap();
    let mut all = check_dockerfile(source, &ast, &dockerfile);
    let options = LowerOptions { build_args: Default::default(), target: None, platform: Platform::host() };
    // Some findings are errors of lowering too (EXPOSE 80:80, a foreign platform).
    all.extend(lower(&dockerfile, &options, &AnyImage).map(|g| g.findings).unwrap_or_default());
    CheckConfig { experimental_all: true, ..CheckConfig::default() }.apply(all)
}

/// The (line, message) of the findings of `rule`.
fn of(rule: &str, source: &str) -> Vec<(usize, String)> {
    findings(source).into_iter().filter(|f| f.rule == rule).map(|f| (f.line, f.message)).collect()
}

fn one(rule: &str, source: &str, line: usize, message: &str) {
    assert_eq!(of(rule, source), vec![(line, message.to_string())], "{source}");
}

fn none(rule: &str, source: &str) {
    assert_eq!(of(rule, source), vec![], "{source}");
}

#[test]
fn every_rule_is_known_and_has_a_fix() {
    for rule in RULES {
        assert!(!rule.fix.is_empty() && !rule.description.is_empty(), "{}", rule.name);
    }
    assert_eq!(RULES.iter().filter(|r| r.experimental).count(), 1);
}

#[test]
fn stage_names() {
    one("StageNameCasing", "FROM scratch AS Build\n", 1, "stage name 'Build' is not lowercase");
    none("StageNameCasing", "FROM scratch AS build\n");
    one("FromAsCasing", "FROM scratch\nFROM scratch as b\n", 2, "'as' is not cased like 'FROM'");
    none("FromAsCasing", "from scratch as b\nFROM scratch AS c\n");
    one("DuplicateStageName", "FROM scratch AS a\nFROM scratch AS A\n", 2, "stage name 'a' is already used by an earlier stage");
    none("DuplicateStageName", "FROM scratch AS a\nFROM scratch AS b\n");
    one("ReservedStageName", "FROM scratch AS context\n", 1, "'context' is a reserved name, not a stage name");
    none("ReservedStageName", "FROM scratch AS ctx\n");
}

#[test]
fn instruction_forms() {
    one("NoEmptyContinuation", "FROM scratch\nEXPOSE \\\n\n80\n", 4, "Empty continuation line found in: EXPOSE 80");
    none("NoEmptyContinuation", "FROM scratch\nEXPOSE \\\n# port\n80\n");
    one("ConsistentInstructionCasing", "FROM scratch\nEnv A=1\nLABEL a=b\n", 2, "instruction 'Env' is not uppercase, as most instructions in the file are");
    one("ConsistentInstructionCasing", "from scratch\nenv A=1\nLABEL a=b\n", 3, "instruction 'LABEL' is not lowercase, as most instructions in the file are");
    none("ConsistentInstructionCasing", "from scratch\nenv A=1\n");
    one("JSONArgsRecommended", "FROM scratch\nENTRYPOINT prog start\n", 2, "ENTRYPOINT in shell form runs under a shell that does not pass signals such as SIGTERM on to the program");
    none("JSONArgsRecommended", "FROM scratch\nENTRYPOINT [\"prog\"]\nSHELL [\"/bin/bash\", \"-c\"]\nCMD prog\n");
    none("JSONArgsRecommended", "FROM scratch AS a\nSHELL [\"/bin/sh\", \"-c\"]\nFROM a\nCMD prog\n");
    one("MaintainerDeprecated", "FROM scratch\nMAINTAINER me\n", 2, "MAINTAINER is deprecated: the image author is a label");
    none("MaintainerDeprecated", "FROM scratch\nLABEL org.opencontainers.image.authors=me\n");
    one("MultipleInstructionsDisallowed", "FROM scratch\nCMD [\"a\"]\nHEALTHCHECK CMD [\"x\"]\nCMD [\"b\"]\n", 2, "this CMD is overridden by the one on line 4: a stage keeps only its last CMD");
    none("MultipleInstructionsDisallowed", "FROM scratch\nCMD [\"a\"]\nFROM scratch\nCMD [\"b\"]\n");
    one("LegacyKeyValueFormat", "FROM scratch\nLABEL a b\n", 2, "LABEL uses the legacy \"LABEL key value\" form instead of \"LABEL key=value\"");
    none("LegacyKeyValueFormat", "FROM scratch\nENV a=b c=d\n");
    one("WorkdirRelativePath", "FROM scratch\nWORKDIR app\nWORKDIR src\n", 2, "relative WORKDIR 'app' depends on the base image's working directory");
    none("WorkdirRelativePath", "FROM scratch\nWORKDIR /app\nWORKDIR src\n");
    one("ExposeProtoCasing", "FROM scratch\nEXPOSE 80/TcP\n", 2, "protocol in EXPOSE '80/TcP' is not lowercase");
    none("ExposeProtoCasing", "FROM scratch\nEXPOSE 80/tcp 53/udp 8080\n");
    one("ExposeInvalidFormat", "FROM scratch\nEXPOSE 80:80\n", 2, "EXPOSE '80:80' holds an IP address or host port mapping; EXPOSE names container ports only");
    none("ExposeInvalidFormat", "FROM scratch\nEXPOSE 80\n");
}

#[test]
fn secrets() {
    one("SecretsUsedInArgOrEnv", "FROM scratch\nARG GITHUB_TOKEN\n", 2, "ARG GITHUB_TOKEN looks like it holds a secret, which would stay in the image's metadata");
    one("SecretsUsedInArgOrEnv", "ARG password\nFROM scratch\n", 1, "ARG password looks like it holds a secret, which would stay in the image's metadata");
    none("SecretsUsedInArgOrEnv", "FROM scratch\nARG PUBLIC_KEY\nENV KEYBOARD=us TOKEN_FILE=/t\n");
}

#[test]
fn arguments_in_from() {
    one("UndefinedArgInFrom", "ARG VERSION=1\nFROM alpine:${VERSON}\n", 2, "FROM uses ARG 'VERSON', which is not declared before the first FROM (did you mean VERSION?)");
    none("UndefinedArgInFrom", "ARG VERSION\nFROM --platform=$BUILDPLATFORM alpine:${VERSION:-3}\n");
    one("InvalidDefaultArgInFrom", "ARG TAG\nFROM busybox:${TAG}\n", 2, "FROM busybox:${TAG} gives the invalid image name 'busybox:' when no --build-arg is given");
    none("InvalidDefaultArgInFrom", "ARG TAG=1\nARG VARIANT\nFROM busybox:${TAG}${VARIANT}\nFROM alpine:${TAG:-3.14}\n");
    one("RedundantTargetPlatform", "FROM --platform=${TARGETPLATFORM} alpine\n", 1, "--platform=${TARGETPLATFORM} in FROM is redundant: it is the default");
    none("RedundantTargetPlatform", "FROM --platform=$BUILDPLATFORM alpine\n");
    one("FromPlatformFlagConstDisallowed", "FROM --platform=linux/amd64 alpine AS base\n", 1, "FROM --platform has the constant value \"linux/amd64\": the stage cannot be built for another platform");
    none("FromPlatformFlagConstDisallowed", "FROM --platform=linux/arm64 alpine AS build_arm64\n");
}

#[test]
fn variables() {
    one("UndefinedVar", "FROM scratch\nCOPY $foo /\n", 2, "variable '$foo' is used but not declared");
    one("UndefinedVar", "FROM scratch\nENV PATH=$PAHT:/app\n", 2, "variable '$PAHT' is used but not declared (did you mean $PATH?)");
    one("UndefinedVar", "ARG V=1\nFROM scratch\nLABEL v=$V\n", 3, "variable '$V' is used but not declared (ARG V is declared before the first FROM: redeclare it in the stage)");
    none("UndefinedVar", "ARG V=1\nFROM scratch\nARG V\nARG foo\nCOPY $foo /\nENV A=$PATH B=$V\nRUN echo $nothing\n");
    one("GlobalArgNotRedeclared", "ARG V=1\nFROM scratch\nRUN echo \"$V\" '$W'\n", 3, "$V is empty here: ARG V is declared before the first FROM, and a stage sees such an ARG only after redeclaring it");
    none("GlobalArgNotRedeclared", "ARG V=1\nARG W\nFROM scratch AS a\nARG V\nRUN echo ${V} '$W'\nFROM a\nRUN echo $V\n");
}

#[test]
fn definition_descriptions() {
    one(
        "InvalidDefinitionDescription",
        "# a comment\nFROM scratch AS base\n",
        2,
        "the comment above FROM does not describe it: write `# base <description>`, or separate it with an empty line",
    );
    none("InvalidDefinitionDescription", "# check=skip=all\nFROM scratch AS base\n# VERSION the version\nARG VERSION=1\n# x\n\nARG W\n");
}

#[test]
fn configuration() {
    let config = CheckConfig::parse("skip=StageNameCasing, FromAsCasing;error=true").unwrap();
    assert_eq!(config.skip, vec!["StageNameCasing", "FromAsCasing"]);
    assert!(config.error);
    assert!(!config.enabled(find_rule("StageNameCasing").unwrap()));
    assert!(config.enabled(find_rule("UndefinedVar").unwrap()));
    assert!(!config.enabled(find_rule("InvalidDefinitionDescription").unwrap()));
    let all = CheckConfig::parse("skip=all").unwrap();
    assert!(RULES.iter().all(|r| !all.enabled(r)));
    assert!(CheckConfig::parse("error=maybe").is_err());
    assert!(CheckConfig::parse("nonsense").is_err());
    // The build argument wins over the directive.
    assert_eq!(CheckConfig::of_build(Some("skip=all"), Some("error=true")).unwrap(), CheckConfig { error: true, ..CheckConfig::default() });
    assert_eq!(CheckConfig::of_build(None, None).unwrap(), CheckConfig::default());
}
