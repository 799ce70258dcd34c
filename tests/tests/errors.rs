//! Failing builds and warnings: every error exits 1, says `error`, and names the Dockerfile
//! line it comes from; warnings leave the build working.

use rbuild_e2e::{Context, RunOutput, TestEnv, SCRATCH_BUSYBOX};

/// Builds `ctx` with `args`, without any output.
fn build(env: &TestEnv, ctx: &Context, args: &[&str]) -> RunOutput {
    env.rbuild().arg("build").args(args).arg(ctx.path()).run()
}

/// A context holding busybox and a Dockerfile of `lines`.
fn context(lines: &[&str]) -> Context {
    let ctx = Context::with_busybox();
    ctx.dockerfile(lines);
    ctx
}

/// Checks a build failed (exit 1) with an error that mentions each of `needles`.
#[track_caller]
fn assert_build_error(out: &RunOutput, needles: &[&str]) {
    out.assert_code(1).assert_stderr_contains("error");
    for needle in needles {
        out.assert_stderr_contains(needle);
    }
}

#[test]
fn unknown_instruction_names_its_line_and_suggests_a_fix() {
    let env = TestEnv::new("err-unknown-instruction");
    let ctx = context(&[SCRATCH_BUSYBOX[0], SCRATCH_BUSYBOX[1], "WROKDIR /x"]);
    assert_build_error(
        &build(&env, &ctx, &[]),
        &["Dockerfile:3", "WROKDIR", "did you mean WORKDIR"],
    );
}

#[test]
fn instruction_without_arguments_names_its_line() {
    let env = TestEnv::new("err-env-empty");
    let ctx = context(&["FROM scratch", "ENV"]);
    assert_build_error(&build(&env, &ctx, &[]), &["Dockerfile:2", "ENV"]);
}

#[test]
fn line_numbers_count_comments_and_continuations() {
    let env = TestEnv::new("err-line-count");
    let ctx = context(&[
        "# a comment",
        "FROM scratch",
        "",
        "LABEL a=1 \\",
        "      b=2",
        "COPY missing-after-continuation.txt /",
    ]);
    assert_build_error(
        &build(&env, &ctx, &[]),
        &["Dockerfile:6", "missing-after-continuation.txt"],
    );
}

#[test]
fn missing_copy_source_names_the_pattern_and_line() {
    let env = TestEnv::new("err-missing-source");
    let ctx = context(&[
        SCRATCH_BUSYBOX[0],
        SCRATCH_BUSYBOX[1],
        "COPY nothere.txt /dest/",
    ]);
    assert_build_error(&build(&env, &ctx, &[]), &["Dockerfile:3", "nothere.txt"]);
}

#[test]
fn copy_from_an_unknown_stage_is_an_error() {
    let env = TestEnv::new("err-from-stage");
    let ctx = context(&["FROM scratch", "COPY --from=nosuchstage /a /b"]);
    assert_build_error(&build(&env, &ctx, &[]), &["nosuchstage"]);
}

#[test]
fn unknown_target_is_an_error_with_a_suggestion() {
    let env = TestEnv::new("err-target");
    let ctx = context(&["FROM scratch AS build", "COPY busybox /bin/busybox"]);
    assert_build_error(
        &build(&env, &ctx, &["--target", "bulid"]),
        &["bulid", "did you mean build"],
    );
}

#[test]
fn from_an_image_not_in_the_store_is_an_error() {
    let env = TestEnv::new("err-from-image");
    // A missing image is pulled; a loopback registry where nothing listens makes that fail at
    // once, without any public registry being contacted.
    let ctx = context(&[
        "FROM 127.0.0.1:9/nosuch/image:1.0",
        "COPY busybox /bin/busybox",
    ]);
    let out = build(&env, &ctx, &[]);
    assert_build_error(&out, &["127.0.0.1:9/nosuch/image:1.0", "cannot reach registry 127.0.0.1:9", "Dockerfile:1"]);
    // The host and the reason are said once, in the error line.
    let stderr = out.stderr_text();
    let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(error.contains("Connection refused"), "{stderr}");
    assert_eq!(stderr.matches("cannot reach registry").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
}

#[test]
fn dockerfile_with_only_args_has_no_stage() {
    let env = TestEnv::new("err-no-stage");
    let ctx = context(&["ARG ONLY=1"]);
    let out = build(&env, &ctx, &[]);
    assert_build_error(&out, &["Dockerfile"]);
    // Either wording says what is wrong: "no stages to build" or "no FROM instruction".
    let stderr = out.stderr_text().to_lowercase();
    assert!(
        stderr.contains("no stage") || stderr.contains("no from"),
        "{}",
        out.describe()
    );
}

#[test]
fn missing_dockerfile_is_an_error() {
    let env = TestEnv::new("err-no-dockerfile");
    let ctx = Context::with_busybox();
    let out = build(&env, &ctx, &[]);
    assert_build_error(&out, &["Dockerfile"]);
}

#[test]
fn failed_build_writes_nothing_to_stdout() {
    // Error text belongs on stderr, so `rbuild -q … | xargs docker run` never runs garbage.
    let env = TestEnv::new("err-stdout");
    let ctx = context(&[SCRATCH_BUSYBOX[0], "COPY missing.txt /"]);
    let out = build(&env, &ctx, &["-q"]);
    assert_build_error(&out, &["missing.txt"]);
    assert!(out.stdout.is_empty(), "{}", out.describe());
}

#[test]
fn foreign_syntax_directive_warns_but_builds() {
    let env = TestEnv::new("warn-syntax");
    let ctx = context(&[
        "# syntax=example.com/other-frontend:1",
        SCRATCH_BUSYBOX[0],
        SCRATCH_BUSYBOX[1],
    ]);
    let out = build(&env, &ctx, &[]);
    out.assert_success()
        .assert_stderr_contains("warn")
        .assert_stderr_contains("example.com/other-frontend:1");
}

#[test]
fn unused_build_arg_warns_but_builds() {
    let env = TestEnv::new("warn-build-arg");
    let ctx = context(&[SCRATCH_BUSYBOX[0], "ARG USED", SCRATCH_BUSYBOX[1]]);
    let out = build(
        &env,
        &ctx,
        &["--build-arg", "USED=1", "--build-arg", "NEVER_DECLARED=1"],
    );
    out.assert_success()
        .assert_stderr_contains("warn")
        .assert_stderr_contains("NEVER_DECLARED");
    // The warning names only the build-arg nothing declared.
    let stderr = out.stderr_text();
    for line in stderr.lines().filter(|l| l.contains("NEVER_DECLARED")) {
        let mut words = line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        assert!(
            !words.any(|w| w == "USED"),
            "USED is reported as unused: {line}"
        );
    }
}

/// Hostile Dockerfiles get a short, clear error: a 10 MB line is over the parser's line limit,
/// variable expansions nested 10,000 deep are refused instead of exhausting the stack, and an
/// instruction continued over 200,000 lines fails with a snippet of a few lines, not all of them.
#[test]
fn huge_and_deeply_nested_dockerfiles_get_short_errors() {
    let env = TestEnv::new("err-hostile-sizes");
    let nested = |op: &str| format!("{}x{}", format!("${{a:{op}").repeat(10_000), "}".repeat(10_000));
    let mut continued = String::from("RUN echo \\");
    continued.push_str(&"\na \\".repeat(200_000));
    continued.push_str("\nb");
    let cases = [
        ("10 MB line", format!("LABEL big={}", "a".repeat(10_000_000)), "line greater than max allowed size of 65535"),
        ("nested ${:-}", format!("ENV X={}", nested("-")), "substitutions nested more than 256 deep"),
        ("nested ${:+}", format!("ENV X={}", nested("+")), "substitutions nested more than 256 deep"),
        ("200,000 lines", continued, "more lines …"),
    ];
    for (case, line, needle) in cases {
        let ctx = context(&["FROM scratch", &line]);
        let out = build(&env, &ctx, &[]);
        assert_build_error(&out, &["Dockerfile:2", needle]);
        let stderr = out.stderr_text();
        assert!(stderr.len() < 4096, "{case}: {} bytes of stderr:\n{}", stderr.len(), &stderr[..4096.min(stderr.len())]);
    }
}

/// Nothing BuildKit users write is accepted and then ignored: `BUILDKIT_*` build arguments
/// rbuild has no use for warn that they do nothing, and `RUN --device` is refused.
#[test]
fn buildkit_only_settings_warn_or_fail_instead_of_being_ignored() {
    let env = TestEnv::new("buildkit-only");
    let ctx = context(&["# check=skip=all", SCRATCH_BUSYBOX[0], SCRATCH_BUSYBOX[1]]);
    let out = build(&env, &ctx, &["--build-arg", "BUILDKIT_INLINE_CACHE=1"]);
    out.assert_success().assert_stderr_contains("build arg BUILDKIT_INLINE_CACHE has no effect");
    assert!(!out.stderr_text().contains("check"), "{}", out.describe());

    let ctx = context(&[SCRATCH_BUSYBOX[0], "RUN --device=vendor.com/gpu=all true"]);
    assert_build_error(&build(&env, &ctx, &[]), &["Dockerfile:2", "RUN --device (CDI devices) is not supported"]);
}

/// A mistyped base image or stage name is answered with the nearest stored image or stage,
/// before the registry's own reason.
#[test]
fn a_mistyped_image_or_stage_gets_the_nearest_name() {
    let env = TestEnv::new("did-you-mean-image");
    let base = context(&SCRATCH_BUSYBOX);
    build(&env, &base, &["-t", "mybase:1"]).assert_success();
    let out = build(&env, &context(&["FROM mybse:1"]), &[]);
    assert_build_error(&out, &["Dockerfile:1", "mybse:1 is not in the store or the Dockerfile; did you mean mybase:1?"]);

    let ctx = context(&["FROM mybase:1 AS builder", "FROM scratch", "COPY --from=biulder /bin/busybox /b"]);
    let out = build(&env, &ctx, &[]);
    assert_build_error(&out, &["Dockerfile:3", "biulder is not in the store or the Dockerfile; did you mean builder?"]);
}
