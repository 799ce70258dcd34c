//! From a Dockerfile on disk to a lowered [`BuildGraph`]: the part of a build
//! that `rbuild build` and `rbuild graph` share, so that the picture shows
//! exactly the graph a build with the same arguments would execute.

use rbuild_frontend::checks::{check_dockerfile, CheckConfig, Finding};
use rbuild_frontend::graph::BuildGraph;
use rbuild_frontend::instructions::parse_with_syntax_tree;
use rbuild_frontend::lower::{lower, ImageResolver, LowerOptions};

use crate::engine::error::BuildError;

/// The build argument that configures the build checks as `# check=` does.
pub const CHECK_BUILD_ARG: &str = "BUILDKIT_DOCKERFILE_CHECK";

/// A lowered Dockerfile and what the build checks found in it.
pub struct Plan {
    /// The lowered graph, or why the Dockerfile could not be lowered (the
    /// findings of the rules that need no lowering are there either way).
    pub graph: Result<BuildGraph, BuildError>,
    /// The findings of the enabled rules, in line order.
    pub findings: Vec<Finding>,
    /// `check=error=true`: findings fail the build.
    pub findings_fail: bool,
    /// Which rules count: for the findings the engine adds (those that need the context).
    pub config: CheckConfig,
}

impl Plan {
    /// Adds findings of rules that need more than the Dockerfile, filtered as the others.
    pub fn add_findings(&mut self, more: Vec<Finding>) {
        let mut all = std::mem::take(&mut self.findings);
        all.extend(more);
        self.findings = self.config.apply(all);
    }
}

/// Parses and lowers the Dockerfile `text`, which errors and warnings call
/// `file`, and runs the build checks; every parser and lowering warning goes
/// to `warn`, already prefixed with `FILE:LINE:` where it has a line.
pub fn plan_build(
    file: &str,
    text: &str,
    options: &LowerOptions,
    resolver: &dyn ImageResolver,
    warn: &mut dyn FnMut(&str),
) -> Result<Plan, BuildError> {
    let file = file.to_string();
    let (ast, dockerfile) = parse_with_syntax_tree(text)
        .map_err(|error| BuildError::Dockerfile { file: file.clone(), error })?;
    let config = CheckConfig::of_build(dockerfile.check.as_deref(), options.build_args.get(CHECK_BUILD_ARG).map(String::as_str))
        .unwrap_or_else(|message| {
            warn(&format!("the build check settings are ignored: {message}"));
            CheckConfig::default()
        });
    let mut findings = check_dockerfile(text, &ast, &dockerfile);
    drop(ast);
    if let Some(syntax) = &dockerfile.syntax {
        if !is_builtin_syntax(syntax) {
            warn(&format!(
                "the syntax directive {syntax:?} is ignored: rbuild always uses its own Dockerfile frontend"
            ));
        }
    }
    let graph = lower(&dockerfile, options, resolver).map(|mut graph| {
        findings.append(&mut graph.findings);
        for warning in &graph.warnings {
            match warning.line {
                Some(line) => warn(&format!("{file}:{line}: {}", warning.message)),
                None => warn(&warning.message),
            }
        }
        graph
    });
    let graph = graph.map_err(|error| BuildError::Dockerfile { file, error });
    Ok(Plan { graph, findings: config.apply(findings), findings_fail: config.error, config })
}

/// `docker/dockerfile:1`, `docker/dockerfile:1.7-labs`, with or without a
/// registry prefix or digest: the syntax rbuild's own frontend implements.
fn is_builtin_syntax(syntax: &str) -> bool {
    let name = syntax.split('@').next().unwrap_or(syntax);
    let name = name.strip_prefix("docker.io/").unwrap_or(name);
    let Some(version) = name.strip_prefix("docker/dockerfile") else {
        return false;
    };
    match version.strip_prefix(':') {
        None => version.is_empty(),
        Some(tag) => tag == "latest" || tag == "labs" || tag == "1" || tag.starts_with("1.") || tag.starts_with("1-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_frontend::graph::{ImageMeta, Platform};

    #[test]
    fn builtin_syntax_forms() {
        for s in ["docker/dockerfile:1", "docker/dockerfile:1.7", "docker/dockerfile:1.7-labs", "docker.io/docker/dockerfile:1@sha256:abc", "docker/dockerfile"] {
            assert!(is_builtin_syntax(s), "{s}");
        }
        for s in ["example.com/other:1", "docker/dockerfile:2", "tonistiigi/dockerfile:x"] {
            assert!(!is_builtin_syntax(s), "{s}");
        }
    }

    struct NoImages;
    impl ImageResolver for NoImages {
        fn resolve(&self, reference: &str, _: &Platform) -> Result<ImageMeta, String> {
            Err(format!("no image {reference}"))
        }
    }

    fn options() -> LowerOptions {
        LowerOptions { build_args: [("UNUSED".to_string(), "1".to_string())].into(), target: None, platform: Platform::host() }
    }

    #[test]
    fn warnings_are_named_after_the_file_and_errors_carry_it() {
        let mut warnings = Vec::new();
        let text = "# syntax=example.com/frontend:1\nFROM scratch\nCOPY a /a\n";
        let graph = plan_build("Dockerfile.x", text, &options(), &NoImages, &mut |w| warnings.push(w.to_string())).unwrap().graph.unwrap();
        assert_eq!(graph.stages.len(), 1);
        assert!(warnings[0].contains("syntax directive"), "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("UNUSED")), "{warnings:?}");

        let error = plan_build("Dockerfile.x", "FROM alpine\n", &options(), &NoImages, &mut |_| {}).unwrap().graph.unwrap_err();
        assert!(error.to_string().starts_with("Dockerfile.x:1:"), "{error}");
    }
}
