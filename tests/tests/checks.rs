//! Build checks: `rbuild build --check` (findings, fixes, exit codes, rawjson events),
//! the `# check=` directive and `BUILDKIT_DOCKERFILE_CHECK`, and the warnings a normal
//! build prints once, after it.

use rbuild_e2e::{Context, RunOutput, TestEnv, SCRATCH_BUSYBOX};

/// A context holding busybox and a Dockerfile of `lines`.
fn context(lines: &[&str]) -> Context {
    let ctx = Context::with_busybox();
    ctx.dockerfile(lines);
    ctx
}

fn build(env: &TestEnv, ctx: &Context, args: &[&str]) -> RunOutput {
    env.rbuild().arg("build").args(args).arg(ctx.path()).run()
}

/// Two findings: StageNameCasing on line 1, JSONArgsRecommended on line 3.
const TWO_FINDINGS: [&str; 3] = ["FROM scratch AS Base", "COPY busybox /bin/busybox", "CMD busybox true"];

#[test]
fn check_lists_each_finding_with_its_fix_and_exits_1() {
    let env = TestEnv::new("checks-list");
    let out = build(&env, &context(&TWO_FINDINGS), &["--check"]);
    out.assert_code(1).assert_stderr_contains("the build checks found 2 problem(s)");
    assert_eq!(
        out.stdout_text(),
        "StageNameCasing - Dockerfile:1: stage name 'Base' is not lowercase\n  fix: write the stage name in lowercase\n\
         JSONArgsRecommended - Dockerfile:3: CMD in shell form runs under a shell that does not pass signals such as SIGTERM on to the program\n  \
         fix: write it as a JSON array, e.g. CMD [\"prog\", \"arg\"], or set SHELL explicitly\n"
    );
    // Nothing was built.
    assert!(!out.stderr_text().contains("writing image"), "{}", out.describe());

    let clean = build(&env, &context(&SCRATCH_BUSYBOX), &["--check"]);
    clean.assert_success();
    assert_eq!(clean.stdout_text(), "");
}

#[test]
fn undefined_variables_and_global_args_are_found() {
    let env = TestEnv::new("checks-vars");
    let ctx = context(&["ARG V=1", "FROM scratch", "COPY busybox /bin/busybox", "ENV PATH=$PAHT:/x", "RUN echo $V"]);
    let out = build(&env, &ctx, &["--check"]);
    out.assert_code(1);
    let text = out.stdout_text();
    assert!(text.contains("UndefinedVar - Dockerfile:4: variable '$PAHT' is used but not declared (did you mean $PATH?)"), "{text}");
    assert!(text.contains("GlobalArgNotRedeclared - Dockerfile:5: $V is empty here"), "{text}");
}

#[test]
fn skip_directive_and_build_arg() {
    let env = TestEnv::new("checks-skip");
    let mut lines = vec!["# check=skip=StageNameCasing"];
    lines.extend(TWO_FINDINGS);
    let out = build(&env, &context(&lines), &["--check"]);
    out.assert_code(1);
    assert!(!out.stdout_text().contains("StageNameCasing") && out.stdout_text().contains("JSONArgsRecommended - Dockerfile:4"), "{}", out.describe());

    lines[0] = "# check=skip=all";
    build(&env, &context(&lines), &["--check"]).assert_success();

    // The build argument wins over the directive.
    let out = build(&env, &context(&lines), &["--check", "--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=JSONArgsRecommended"]);
    out.assert_code(1);
    assert!(out.stdout_text().contains("StageNameCasing") && !out.stdout_text().contains("JSONArgs"), "{}", out.describe());
    assert!(!out.stderr_text().contains("BUILDKIT_DOCKERFILE_CHECK"), "{}", out.describe());
}

#[test]
fn error_true_fails_the_build_and_findings_come_once_after_a_normal_build() {
    let env = TestEnv::new("checks-error");
    let out = build(&env, &context(&TWO_FINDINGS), &["--progress=plain"]);
    out.assert_success();
    let stderr = out.stderr_text();
    let warning = "WARNING: StageNameCasing - Dockerfile:1: stage name 'Base' is not lowercase";
    assert_eq!(stderr.matches(warning).count(), 1, "{stderr}");
    assert!(stderr.find(warning) > stderr.find("writing image"), "{stderr}");

    let mut lines = vec!["# check=error=true"];
    lines.extend(TWO_FINDINGS);
    let out = build(&env, &context(&lines), &["--progress=plain"]);
    out.assert_code(1).assert_stderr_contains("check=error=true").assert_stderr_contains("WARNING: JSONArgsRecommended - Dockerfile:4");
    assert!(!out.stderr_text().contains("writing image"), "{}", out.describe());

    let out = build(&env, &context(&TWO_FINDINGS), &["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=error=true"]);
    out.assert_code(1).assert_stderr_contains("check=error=true");
}

#[test]
fn rawjson_gives_check_events() {
    let env = TestEnv::new("checks-rawjson");
    for args in [&["--check", "--progress=rawjson"][..], &["--progress=rawjson"][..]] {
        let out = build(&env, &context(&TWO_FINDINGS), args);
        let events: Vec<serde_json::Value> = out
            .stderr_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["event"] == "check")
            .collect();
        assert_eq!(events.len(), 2, "{}", out.describe());
        assert_eq!(events[0]["rule"], "StageNameCasing");
        assert_eq!(events[0]["file"], "Dockerfile");
        assert_eq!(events[0]["line"], 1);
        assert_eq!(events[0]["message"], "stage name 'Base' is not lowercase");
        assert_eq!(events[0]["fix"], "write the stage name in lowercase");
        assert_eq!(events[1]["rule"], "JSONArgsRecommended");
    }
}

/// The checks that need the context: a COPY source the `.dockerignore` leaves out, and `COPY .`
/// of a context holding `.git` or `node_modules` with no `.dockerignore`; neither without cause.
#[test]
fn context_checks_find_ignored_sources_and_heavy_directories() {
    let env = TestEnv::new("checks-context");
    let ctx = context(&["FROM scratch", "COPY busybox /bin/busybox", "COPY secret.txt /", "COPY . /app/"]);
    ctx.file("secret.txt", "x\n").file(".dockerignore", "secret.txt\n");
    let out = build(&env, &ctx, &["--check"]);
    out.assert_code(1);
    let text = out.stdout_text();
    assert!(text.contains("CopyIgnoredFile - Dockerfile:3: secret.txt is left out of the build context by \"secret.txt\""), "{text}");
    assert!(!text.contains("ContextWithoutDockerignore"), "{text}");

    let heavy = context(&["FROM scratch", "COPY busybox /bin/busybox", "COPY . /app/"]);
    heavy.dir(".git").dir("node_modules");
    let out = build(&env, &heavy, &["--check"]);
    out.assert_code(1);
    let text = out.stdout_text();
    assert!(text.contains("ContextWithoutDockerignore - Dockerfile:3: . copies the context's .git"), "{text}");
    assert!(text.contains("copies the context's node_modules"), "{text}");
    heavy.file(".dockerignore", ".git\nnode_modules\n");
    build(&env, &heavy, &["--check"]).assert_success();
}
