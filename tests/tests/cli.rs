//! The command line: `rbuild [build] [OPTIONS] PATH`, shaped like `docker build`.

use rbuild_e2e::{Context, Docker, TestEnv, SCRATCH_BUSYBOX};

/// A context whose image prints `marker` when run.
fn echo_context(marker: &str) -> Context {
    let ctx = Context::with_busybox();
    let cmd = format!(r#"CMD ["/bin/busybox", "echo", "{marker}"]"#);
    ctx.dockerfile(&[SCRATCH_BUSYBOX[0], SCRATCH_BUSYBOX[1], &cmd]);
    ctx
}

#[test]
fn version_exits_zero_and_names_the_program() {
    let env = TestEnv::new("version");
    let out = env.rbuild().arg("--version").run();
    out.assert_success();
    assert!(out.stdout_text().contains("rbuild"), "{}", out.describe());
}

#[test]
fn help_describes_the_options_with_examples() {
    let env = TestEnv::new("help");
    let out = env.rbuild().arg("--help").run();
    out.assert_success();
    let help = out.stdout_text();
    for option in [
        "--tag",
        "--file",
        "--build-arg",
        "--target",
        "--output",
        "--platform",
        "--quiet",
    ] {
        assert!(
            help.contains(option),
            "--help does not mention {option}:\n{help}"
        );
    }
    assert!(
        help.to_lowercase().contains("example"),
        "--help has no examples:\n{help}"
    );
}

#[test]
fn build_help_describes_the_options() {
    let env = TestEnv::new("build-help");
    let out = env.rbuild().args(["build", "--help"]).run();
    out.assert_success();
    assert!(out.stdout_text().contains("--output"), "{}", out.describe());
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let env = TestEnv::new("unknown-flag");
    let ctx = echo_context("x");
    let out = env
        .rbuild()
        .args(["build", "--no-such-flag"])
        .arg(ctx.path())
        .run();
    out.assert_code(2).assert_stderr_contains("--no-such-flag");
}

#[test]
fn build_subcommand_may_be_left_out() {
    let env = TestEnv::new("implicit-build");
    let ctx = echo_context("implicit build");
    let reference = env.image_ref();
    let archive = env.path("image.tar");
    env.rbuild()
        .args(["-t", &reference, "-o"])
        .arg(&archive)
        .arg(ctx.path())
        .run()
        .assert_success();
    let image = Docker::get().load_as(&archive, &reference);
    assert_eq!(image.run(&[]), "implicit build\n");
}

#[test]
fn quiet_prints_only_the_image_id() {
    let env = TestEnv::new("quiet");
    let ctx = echo_context("quiet");
    let built = env.build(&ctx, &["-q"]);
    let id = built.output.image_id();
    assert_eq!(
        id,
        built.archive().image_id(),
        "-q ID is not the config digest"
    );
    assert_eq!(id, built.load().id(), "-q ID differs from Docker's");
}

#[test]
fn iidfile_holds_the_image_id() {
    let env = TestEnv::new("iidfile");
    let ctx = echo_context("iid");
    let iidfile = env.path("iid");
    let built = env.build(&ctx, &["--iidfile", iidfile.to_str().unwrap()]);
    let iid = std::fs::read_to_string(&iidfile).expect("--iidfile was written");
    assert_eq!(iid.trim_end(), built.load().id());
}

#[test]
fn dockerfile_can_come_from_stdin() {
    let env = TestEnv::new("stdin-dockerfile");
    // The context's own Dockerfile must be ignored in favour of the one on stdin.
    let ctx = echo_context("from the context's Dockerfile");
    let reference = env.image_ref();
    let archive = env.path("image.tar");
    let dockerfile = "FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"echo\", \"from stdin\"]\n";
    env.rbuild()
        .args(["build", "-f", "-", "-t", &reference, "-o"])
        .arg(&archive)
        .arg(ctx.path())
        .stdin(dockerfile)
        .run()
        .assert_success();
    let image = Docker::get().load_as(&archive, &reference);
    assert_eq!(image.run(&[]), "from stdin\n");
}

#[test]
fn file_flag_picks_another_dockerfile() {
    let env = TestEnv::new("file-flag");
    let ctx = echo_context("default Dockerfile");
    ctx.dockerfile_at(
        "docker/Other.Dockerfile",
        &[
            SCRATCH_BUSYBOX[0],
            SCRATCH_BUSYBOX[1],
            r#"CMD ["/bin/busybox", "echo", "other"]"#,
        ],
    );
    let other = ctx.join("docker/Other.Dockerfile");
    let image = env.build_and_load(&ctx, &["-f", other.to_str().unwrap()]);
    assert_eq!(image.run(&[]), "other\n");
}

#[test]
fn several_tags_all_name_the_image() {
    let env = TestEnv::new("tags");
    let ctx = echo_context("tagged");
    let second = env.image_ref();
    let built = env.build(&ctx, &["--tag", &second]);
    let archive = built.archive();
    archive.assert_repo_tag(&built.reference);
    archive.assert_repo_tag(&second);
    let mut image = built.load();
    image.remove_also(&second);
    let docker = Docker::get();
    assert_eq!(docker.inspect(&second)["Id"], image.inspect()["Id"]);
}

#[test]
fn label_flag_adds_labels() {
    let env = TestEnv::new("label-flag");
    let ctx = echo_context("labelled");
    let image = env.build_and_load(
        &ctx,
        &["--label", "com.example.team=build", "--label", "empty="],
    );
    let labels = &image.config()["Labels"];
    assert_eq!(labels["com.example.team"], "build", "{labels}");
    assert_eq!(labels["empty"], "", "{labels}");
}

#[test]
fn host_platform_is_accepted() {
    let env = TestEnv::new("platform-host");
    let ctx = echo_context("amd64");
    let built = env.build(&ctx, &["--platform", "linux/amd64"]);
    let config = built.archive().config();
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
}

#[test]
fn malformed_platforms_and_what_a_multi_platform_build_cannot_do_are_usage_errors() {
    let env = TestEnv::new("platform-usage");
    let ctx = echo_context("arm64");
    for (args, message) in [
        (vec!["--platform", "linux/amd64,"], "empty platform"),
        (vec!["--platform", "arm64"], "expected os/arch"),
        (vec!["--platform", "linux/amd64,linux/arm64", "-o", "-"], "cannot go to stdout"),
        (vec!["--platform", "linux/amd64,linux/arm64", "--cache-from", "type=local,src=/nonexistent"], "work with one platform"),
    ] {
        let out = env.rbuild().arg("build").args(&args).arg(ctx.path()).run();
        out.assert_code(2).assert_stderr_contains(message);
    }
}

#[test]
fn no_cache_is_accepted() {
    let env = TestEnv::new("no-cache");
    let ctx = echo_context("fresh");
    env.build(&ctx, &[]);
    let image = env.build_and_load(&ctx, &["--no-cache"]);
    assert_eq!(image.run(&[]), "fresh\n");
}

#[test]
fn every_progress_mode_builds() {
    let env = TestEnv::new("progress");
    let ctx = echo_context("progress");
    for mode in ["auto", "plain", "tty", "rawjson", "quiet"] {
        let built = env.build(&ctx, &[&format!("--progress={mode}")]);
        built.archive().config();
    }
}

#[test]
fn unknown_progress_mode_is_a_usage_error() {
    let env = TestEnv::new("progress-bad");
    let ctx = echo_context("x");
    let out = env
        .rbuild()
        .args(["build", "--progress=fancy"])
        .arg(ctx.path())
        .run();
    out.assert_code(2).assert_stderr_contains("fancy");
}

#[test]
fn missing_context_directory_is_an_error() {
    let env = TestEnv::new("no-context");
    let missing = env.path("no-such-context");
    let out = env.rbuild().arg("build").arg(&missing).run();
    out.assert_code(2).assert_stderr_contains("no-such-context").assert_stderr_contains("does not exist");
    // A file is there but is not a directory.
    let file = env.path("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = env.rbuild().arg("build").arg(&file).run();
    out.assert_code(2).assert_stderr_contains("is not a directory");
}

#[test]
fn a_missing_dockerfile_given_with_f_is_a_usage_error() {
    let env = TestEnv::new("missing-f");
    let ctx = echo_context("x");
    let out = env.rbuild().args(["build", "-f", "no-such.Dockerfile"]).arg(ctx.path()).run();
    out.assert_code(2).assert_stderr_contains("no-such.Dockerfile").assert_stderr_contains("does not exist");
}

/// A first argument that is neither a command nor a directory, and reads like a command, is an
/// unknown command (with the nearest one, or what to use for a docker command rbuild lacks),
/// not a build context that "is not a directory".
#[test]
fn an_unknown_command_is_named_with_the_nearest_one() {
    let env = TestEnv::new("unknown-command");
    for (typed, expected) in [
        ("imgaes", "unknown command \"imgaes\" (did you mean images?)"),
        ("prnue", "(did you mean prune?)"),
        ("biuld", "(did you mean build?)"),
        ("run", "unknown command \"run\": rbuild builds images and does not run containers"),
        ("frobnicate", "unknown command \"frobnicate\""),
    ] {
        let out = env.rbuild().arg(typed).run();
        out.assert_code(2).assert_stderr_contains(expected);
        assert!(!out.stderr_text().contains("is not a directory"), "{}", out.describe());
    }
    // A directory of that name is still a build context.
    let ctx = echo_context("named like a command");
    let dir = env.path("imgaes");
    rbuild_e2e::context::copy_tree(ctx.path(), &dir);
    let out = env.rbuild().arg("imgaes").run();
    out.assert_success();
}

/// `rbuild --help` lists every command with one line and an example under it.
#[test]
fn help_lists_every_command_with_an_example() {
    let env = TestEnv::new("help-commands");
    let out = env.rbuild().arg("--help").run();
    out.assert_success();
    let help = out.stdout_text();
    let section: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    let names: Vec<&str> = section.iter().step_by(2).map(|l| l.split_whitespace().next().unwrap_or("")).collect();
    for expected in ["build", "graph", "images", "history", "tag", "rmi", "save", "load", "pull", "du", "prune"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}\n{help}");
    }
    for pair in section.chunks(2) {
        assert_eq!(pair.len(), 2, "{pair:?}");
        assert!(pair[1].trim_start().starts_with("e.g. "), "no example under {:?}\n{help}", pair[0]);
        let name = pair[0].split_whitespace().next().unwrap();
        assert!(pair[1].contains(&format!("rbuild {name}")) || pair[1].contains("| rbuild"), "{pair:?}");
        // Each command the help names exists.
        env.rbuild().args([name, "--help"]).run().assert_success();
    }
}
