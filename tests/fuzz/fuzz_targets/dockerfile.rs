//! Dockerfile text → syntax tree → typed stages → build graph.
//!
//! Entry points: `parser::parse` (and the syntax-tree dump the conformance
//! tests compare), `instructions::parse_dockerfile` and `lower::lower` with a
//! fake image resolver, as the frontend's own lowering tests use.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use rbuild_frontend::graph::{ImageMeta, Platform};
use rbuild_frontend::instructions::parse_dockerfile;
use rbuild_frontend::lower::{lower, ImageResolver, LowerOptions};
use rbuild_frontend::parser;

/// Resolves every reference except those naming "missing"; a few names give
/// configs that exercise inherited state (ONBUILD triggers, SHELL, ENV).
struct FakeImages;

impl ImageResolver for FakeImages {
    fn resolve(&self, reference: &str) -> Result<ImageMeta, String> {
        if reference.contains("missing") {
            return Err(format!("image {reference:?} not found"));
        }
        let mut image = ImageMeta::empty();
        if reference.starts_with("onbuild") {
            image.on_build = vec![
                "RUN echo triggered".into(),
                "ENV FROM_TRIGGER=1".into(),
                "COPY --from=0 /a /b".into(),
            ];
        }
        if reference.starts_with("shell") {
            image.shell = vec!["/bin/bash".into(), "-c".into()];
            image.set_env("HOME", "/root");
            image.working_dir = "/work".into();
            image.user = "nobody".into();
        }
        Ok(image)
    }

    fn pinned(&self, reference: &str) -> String {
        format!("{reference}@sha256:{}", "0".repeat(64))
    }

    fn is_named_directory(&self, name: &str) -> bool {
        name == "context" || name.starts_with("dir")
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(ast) = parser::parse(text) {
        let _ = ast.dump();
    }
    let Ok(dockerfile) = parse_dockerfile(text) else { return };
    let build_args: BTreeMap<String, String> = [
        ("TAG", "1.0"),
        ("BASE", "alpine"),
        ("EMPTY", ""),
        ("http_proxy", "http://proxy:3128"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut options = LowerOptions {
        build_args,
        target: None,
        platform: Platform::parse("linux/amd64").unwrap(),
    };
    if let Ok(graph) = lower(&dockerfile, &options, &FakeImages) {
        let _ = graph.execution_order();
        let _ = graph.target_stage();
    }
    // Also build the first named stage, as `--target NAME` would.
    if let Some(name) = dockerfile.stages.iter().find_map(|s| s.name.clone()) {
        options.target = Some(name);
        let _ = lower(&dockerfile, &options, &FakeImages);
    }
});
