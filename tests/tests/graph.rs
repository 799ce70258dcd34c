//! `rbuild graph`: the lowered build graph as DOT, read back by graphviz's own `dot`, as SVG,
//! and coloured with the timings a build recorded.

use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_e2e::{Context, RunOutput, TestEnv};
use sha2::{Digest, Sha256};

/// Graphviz's `dot`; panics with the fix when it is missing.
fn dot_command() -> Command {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join("dot").is_file()))
        .unwrap_or(false);
    assert!(found, "graphviz's `dot` is not on PATH: install graphviz (scripts/test.sh does)");
    Command::new("dot")
}

/// Has `dot` read `text` and draw it as SVG; panics unless `dot` accepts it.
fn dot_accepts(text: &str) -> String {
    let mut cmd = dot_command();
    cmd.arg("-Tsvg");
    let out = rbuild_e2e::process::run(cmd, Some(text.as_bytes().to_vec()));
    out.assert_success();
    assert!(out.stderr_text().trim().is_empty(), "dot warned about the graph:\n{}\n{text}", out.stderr_text());
    out.stdout_text()
}

fn graph(env: &TestEnv, args: &[&str], ctx: &Path) -> RunOutput {
    env.rbuild().arg("graph").args(args).arg(ctx).run()
}

#[test]
fn the_multistage_example_is_drawn_as_dot_that_dot_reads() {
    let env = TestEnv::new("graph-multistage");
    let ctx = Context::example("multistage");
    let out = graph(&env, &[], ctx.path());
    out.assert_success();
    let text = out.stdout_text();
    assert!(text.starts_with("digraph build {"), "{text}");
    // runtime (the target) and assets (which it copies from); docs is not needed.
    assert!(text.contains("stage 0 · assets") && text.contains("stage 2 · runtime"), "{text}");
    assert!(!text.contains("stage 1 · docs"), "{text}");
    let svg = dot_accepts(&text);
    // The SVG writes `-` as `&#45;`.
    for drawn in ["stage 2 · runtime", "build context", "COPY", "&#45;&#45;from=assets /srv/ /srv/"] {
        assert!(svg.contains(drawn), "{drawn:?} is not in the SVG:\n{svg}");
    }
}

const FOUR_STAGES: &[&str] = &[
    "ARG VERSION=1.2.3",
    "FROM scratch AS tools",
    "COPY busybox /bin/busybox",
    "FROM scratch AS config",
    "COPY <<EOF /etc/app.conf",
    "greeting=\"<hello> & 'bye'\"",
    "EOF",
    "FROM tools AS build",
    "ARG VERSION",
    "RUN echo \"v$VERSION <built> & done\" \\",
    "    > /version.txt",
    "FROM scratch",
    "COPY --from=build /version.txt /version.txt",
    "COPY --from=config /etc/app.conf /etc/",
    "COPY --from=tools /bin/busybox /bin/busybox",
    "LABEL quote=\"a \\\"b\\\" \\\\ c\"",
    "ENTRYPOINT [\"/bin/busybox\", \"cat\", \"/version.txt\"]",
];

#[test]
fn four_stages_with_awkward_text_are_drawn_as_svg() {
    let env = TestEnv::new("graph-svg");
    let ctx = Context::with_busybox();
    ctx.dockerfile(FOUR_STAGES);
    let dot_text = graph(&env, &["--build-arg", "VERSION=9"], ctx.path());
    dot_text.assert_success();
    let text = dot_text.stdout_text();
    for index in 0..4 {
        assert!(text.contains(&format!("subgraph cluster_stage_{index} {{")), "stage {index}:\n{text}");
    }
    assert_eq!(text.matches("style=dashed").count(), 4, "three --from copies, one context copy:\n{text}");
    dot_accepts(&text);

    // --format svg draws the same graph with dot.
    let svg = graph(&env, &["--format", "svg"], ctx.path());
    svg.assert_success();
    let svg = svg.stdout_text();
    assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
    assert!(svg.contains("&lt;built&gt; &amp; done"), "the RUN text is in the picture, escaped:\n{svg}");

    // --target draws only what the target needs.
    let partial = graph(&env, &["--target", "build"], ctx.path());
    partial.assert_success();
    let partial = partial.stdout_text();
    assert!(partial.contains("stage 2 · build") && !partial.contains("cluster_stage_1"), "{partial}");
    dot_accepts(&partial);
}

#[test]
fn dockerfile_errors_point_at_the_line() {
    let env = TestEnv::new("graph-error");
    let ctx = Context::new();
    ctx.dockerfile(&["FROM scratch", "WROKDIR /a"]);
    let out = graph(&env, &[], ctx.path());
    out.assert_code(1);
    out.assert_stderr_contains("Dockerfile:2:");
    out.assert_stderr_contains(">>> WROKDIR /a");
    assert!(out.stdout.is_empty(), "no graph after an error: {}", out.stdout_text());
}

/// Where a build of `dockerfile` records its timings (the format `rbuild graph --timings` reads).
fn timings_file(env: &TestEnv, dockerfile: &Path) -> PathBuf {
    let canonical = std::fs::canonicalize(dockerfile).expect("canonical Dockerfile path");
    let digest = hex::encode(Sha256::digest(canonical.as_os_str().as_encoded_bytes()));
    env.store().join("builds").join(format!("{digest}.json"))
}

#[test]
fn timings_need_a_recorded_build_and_colour_the_steps_with_it() {
    let env = TestEnv::new("graph-timings");
    let ctx = Context::example("multistage");
    let missing = graph(&env, &["--timings"], ctx.path());
    missing.assert_code(1);
    missing.assert_stderr_contains("no build of");
    missing.assert_stderr_contains("rbuild build");

    let dockerfile = ctx.join("Dockerfile");
    let record = timings_file(&env, &dockerfile);
    std::fs::create_dir_all(record.parent().unwrap()).unwrap();
    let step = |stage: u32, line: u32, display: &str, cached: bool, seconds: f64| {
        serde_json::json!({"stage": stage, "line": line, "display": display, "cached": cached, "seconds": seconds})
    };
    let timings = serde_json::json!({
        "dockerfile": std::fs::canonicalize(&dockerfile).unwrap(),
        "finished": "2024-05-01T12:00:00Z",
        "steps": [
            step(0, 5, "COPY content/ /srv/", true, 0.0),
            step(2, 12, "COPY busybox /bin/busybox", false, 2.5),
            step(2, 13, "COPY --from=assets /srv/ /srv/", false, 0.25),
        ],
    });
    std::fs::write(&record, timings.to_string()).unwrap();

    let out = graph(&env, &["--timings"], ctx.path());
    out.assert_success();
    let text = out.stdout_text();
    for expected in ["CACHED", "ran 2.50 s", "ran 0.25 s", "not in the last build", "step time", "last build 2024-05-01"] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    dot_accepts(&text);

    let stdin = env.rbuild().args(["graph", "--timings", "-f", "-"]).arg(ctx.path()).stdin("FROM scratch\n").run();
    stdin.assert_code(2);
    stdin.assert_stderr_contains("--timings needs the Dockerfile as a file");
}

/// `rbuild graph` takes the build's `--build-context`: a directory named that way is drawn as a
/// build context that `COPY --from` reads, not as an image to pull; a mistaken flag is refused
/// as the build refuses it.
#[test]
fn named_directory_contexts_are_drawn_as_contexts() {
    let env = TestEnv::new("graph-named-context");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&["FROM scratch", "COPY --from=assets . /assets/"]);
    let assets = tempfile::tempdir().unwrap();
    let flag = format!("assets={}", assets.path().display());
    let out = graph(&env, &["--build-context", &flag], ctx.path());
    out.assert_success();
    let text = out.stdout_text();
    assert!(text.contains("build context") && text.contains("assets"), "{text}");
    assert!(!out.stderr_text().contains("is not in rbuild's store"), "{}", out.describe());
    dot_accepts(&text);

    // Without the flag, `assets` is an image the store does not have: drawn, with a warning.
    let out = graph(&env, &[], ctx.path());
    out.assert_success().assert_stderr_contains("\"assets\" is not in rbuild's store");

    let out = graph(&env, &["--build-context", "assets"], ctx.path());
    out.assert_code(2).assert_stderr_contains("--build-context");
}
