//! From a Dockerfile on disk to a lowered [`BuildGraph`]: the part of a build
//! that `rbuild build` and `rbuild graph` share, so that the picture shows
//! exactly the graph a build with the same arguments would execute; and, for a
//! build, the build checks reported (`plan_checked`) or listed (`check`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use rbuild_frontend::checks::{check_dockerfile, CheckConfig, Finding};
use rbuild_frontend::graph::{BuildGraph, Op, Platform, Source};
use rbuild_frontend::instructions::parse_with_syntax_tree;
use rbuild_frontend::lower::{lower, ImageResolver, LowerOptions};
use rbuild_store::Store;

use crate::engine::context::BuildContext;
use crate::engine::error::BuildError;
use crate::engine::execute::SharedProgress;
use crate::engine::resolver::BaseImageResolver;
use crate::engine::settings::BuildSettings;

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


/// `rbuild build --check`: what the build checks find in the Dockerfile of
/// `settings`, planned as a build would be but not run (for its first
/// platform), and the error that would stop the build before it runs, if any.
pub fn check(settings: &BuildSettings, store: &Store, progress: &SharedProgress) -> Result<(Vec<Finding>, Option<BuildError>), BuildError> {
    let (plan, _) = plan(settings, store, progress, &settings.platforms[0])?;
    Ok((plan.findings, plan.graph.err()))
}

/// The graph of the Dockerfile of `settings` for `platform`, its check findings
/// reported (and failing the build when `check=error=true` says so), with the
/// `--build-context` directories it named.
pub fn plan_checked(
    settings: &BuildSettings,
    store: &Store,
    progress: &SharedProgress,
    platform: &Platform,
) -> Result<(BuildGraph, BTreeMap<String, PathBuf>), BuildError> {
    let (plan, named_directories) = plan(settings, store, progress, platform)?;
    let shown = || progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for finding in &plan.findings {
        shown().check(&settings.dockerfile.name, finding);
    }
    if plan.findings_fail && !plan.findings.is_empty() {
        return Err(checks_failed(&plan.findings));
    }
    Ok((plan.graph?, named_directories))
}

/// Plans the Dockerfile of `settings` for `platform` (base images from the
/// store, else their registries), with the `--build-context` directories it named.
fn plan(
    settings: &BuildSettings,
    store: &Store,
    progress: &SharedProgress,
    platform: &Platform,
) -> Result<(Plan, BTreeMap<String, PathBuf>), BuildError> {
    let shown = || progress.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let log = |line: &str| shown().info(line);
    let resolver = BaseImageResolver::new(store, settings.base_images(), &log);
    let dockerfile = &settings.dockerfile;
    let mut plan = plan_build(&dockerfile.name, &dockerfile.text, &settings.lower_options(platform), &resolver, &mut |warning| {
        shown().warning(warning)
    })?;
    if let Ok(graph) = &plan.graph {
        let found = context_findings(graph, settings);
        plan.add_findings(found);
    }
    Ok((plan, resolver.named_directories()))
}

/// The checks that need the build context: a COPY/ADD source its `.dockerignore` leaves out
/// (CopyIgnoredFile), and `COPY .` of a context with `.git` or `node_modules` and no
/// `.dockerignore` (rbuild's ContextWithoutDockerignore). A context that cannot be opened
/// gives none: the build reports that itself.
fn context_findings(graph: &BuildGraph, settings: &BuildSettings) -> Vec<Finding> {
    let mut findings = Vec::new();
    let Ok(context) = BuildContext::open(&settings.context, settings.dockerfile.path.as_deref()) else {
        return findings;
    };
    for id in graph.graph.node_indices() {
        let step = graph.step(id);
        let (Op::Copy(copy), Some(location)) = (&step.op, step.location) else { continue };
        let reads_context = graph.copy_from(id).is_some_and(|from| matches!(graph.step(from).op, Op::Source(Source::Context)));
        if !reads_context {
            continue;
        }
        for source in &copy.sources {
            if let Some((pattern, file)) = context.ignored_source(source) {
                let message = format!("{source} is left out of the build context by {pattern:?} in {}", file.display());
                findings.push(Finding::new("CopyIgnoredFile", location.start_line, message));
            }
            let whole = matches!(source.trim_end_matches('/'), "." | "" | "./.");
            if whole && context.ignore_file().is_none() {
                for heavy in [".git", "node_modules"] {
                    if settings.context.join(heavy).exists() {
                        let message = format!("{source} copies the context's {heavy}, and no .dockerignore leaves it out");
                        findings.push(Finding::new("ContextWithoutDockerignore", location.start_line, message));
                    }
                }
            }
        }
    }
    findings
}

/// The error of a build whose checks found something under `check=error=true`.
fn checks_failed(findings: &[Finding]) -> BuildError {
    let mut rules: Vec<&str> = findings.iter().map(|f| f.rule).collect();
    rules.sort_unstable();
    rules.dedup();
    BuildError::Checks { count: findings.len(), rules: rules.join(", ") }
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
