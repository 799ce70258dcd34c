//! Debugging a failed RUN: the build keeps what the step saw and did and says how to open a
//! shell there; `rbuild debug` runs commands over the step's result (or, `--initial`, its
//! parent) with the step's environment, user, working directory and mounts, as root, rootless
//! and with chroot isolation; kept failures never change the step cache, are listed, counted
//! by `du` and removed by `prune`; `--on-error=discard` keeps nothing; an interactive shell
//! runs on a terminal (tmux) where typed commands run and Ctrl-C reaches the shell.

use std::time::Duration;

use rbuild_e2e::process::RunOutput;
use rbuild_e2e::sandbox::with_shell;
use rbuild_e2e::terminal::Tmux;
use rbuild_e2e::users::SuiteUser;
use rbuild_e2e::{rbuild_bin, Context, TestEnv};

/// A stage whose last RUN (line 8) writes `/work/written` as user 1000, in WORKDIR /work with
/// FOO set, records what it saw in `/work/saw`, and then fails with exit code 3.
fn failing_step() -> Context {
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "ENV FOO=from-env",
        "WORKDIR /work",
        "RUN mkdir -p /etc && echo 'app:x:1000:1000:app:/home/app:/bin/sh' > /etc/passwd && chown 1000 /work",
        "USER app",
        r#"RUN echo step-wrote > /work/written && { id; pwd; echo "FOO=$FOO"; } > /work/saw && exit 3"#,
    ]));
    ctx
}

/// What the failing step's command records about itself, run again in the debug shell.
const SAW: &str = r#"id; pwd; echo "FOO=$FOO""#;

/// The kept failure's id, from the line the failed build printed after its error.
#[track_caller]
fn kept_id(out: &RunOutput) -> String {
    out.assert_code(1).assert_stderr_contains("exit code: 3");
    let stderr = out.stderr_text();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("to open a shell where it failed: rbuild debug "))
        .unwrap_or_else(|| panic!("no `rbuild debug` line after the error\n{}", out.describe()));
    let after = line.split_once("rbuild debug ").expect("found").1;
    after.split_whitespace().next().expect("an id after `rbuild debug`").to_string()
}

/// `rbuild debug last -- sh -c SCRIPT` (and more arguments) in `env`'s store.
fn debug(env: &TestEnv, args: &[&str]) -> RunOutput {
    env.rbuild().arg("debug").args(args).run()
}

/// The failing step's writes are there after it, not before it, and the shell runs as the
/// step ran: same user, working directory and environment.
fn check_debugging(ctx: &Context, env: &TestEnv, build_args: &[&str]) {
    let out = env.rbuild().arg("build").args(build_args).arg(ctx.path()).run();
    let id = kept_id(&out);

    let after = debug(env, &["last", "--", "cat", "/work/written"]);
    after.assert_success();
    assert_eq!(after.stdout_text(), "step-wrote\n", "{}", after.describe());
    let by_id = debug(env, &[&id[..6], "--", "cat", "/work/written"]);
    assert_eq!(by_id.stdout_text(), "step-wrote\n", "{}", by_id.describe());

    let before = debug(env, &["last", "--initial", "--", "cat", "/work/written"]);
    assert_eq!(before.code(), Some(1), "--initial saw the step's file\n{}", before.describe());
    assert!(!before.stdout_text().contains("step-wrote"), "{}", before.describe());

    let saw = debug(env, &["last", "--", "cat", "/work/saw"]).stdout_text();
    let again = debug(env, &["last", "--", "sh", "-c", SAW]);
    again.assert_success();
    assert_eq!(again.stdout_text(), saw, "the shell's user, workdir and env differ from the step's");
    assert!(saw.contains("uid=1000(app)") && saw.contains("/work\n") && saw.contains("FOO=from-env"), "{saw}");

    // The command's exit status is rbuild's.
    assert_eq!(debug(env, &["last", "--", "sh", "-c", "exit 7"]).code(), Some(7));
    // Scripted: stdin is the command's.
    let piped = env.rbuild().args(["debug", "last", "--", "sh", "-c", "read line; echo got-$line"]).stdin("typed\n").run();
    assert_eq!(piped.stdout_text(), "got-typed\n", "{}", piped.describe());
}

#[test]
fn a_kept_failure_shows_the_steps_writes_with_its_user_env_and_workdir() {
    let env = TestEnv::new("debug-root");
    check_debugging(&failing_step(), &env, &["--progress=plain"]);
}

#[test]
fn chroot_isolation_keeps_and_debugs_the_same_way() {
    let env = TestEnv::new("debug-chroot");
    check_debugging(&failing_step(), &env, &["--progress=plain", "--isolation=chroot"]);
}

#[test]
fn a_rootless_build_keeps_and_debugs_its_failure() {
    let user = SuiteUser::with_range();
    let ws = user.workspace(&failing_step());
    let context = ws.context();
    let out = ws.rbuild(&["build", "--progress=plain", context.to_str().unwrap()]);
    kept_id(&out);
    let after = ws.rbuild(&["debug", "last", "--", "cat", "/work/written"]);
    after.assert_success();
    assert_eq!(after.stdout_text(), "step-wrote\n", "{}", after.describe());
    let before = ws.rbuild(&["debug", "last", "--initial", "--", "cat", "/work/written"]);
    assert_eq!(before.code(), Some(1), "{}", before.describe());
    let saw = ws.rbuild(&["debug", "last", "--", "cat", "/work/saw"]).stdout_text();
    let again = ws.rbuild(&["debug", "last", "--", "sh", "-c", SAW]);
    assert_eq!(again.stdout_text(), saw, "{}", again.describe());
    assert!(saw.contains("uid=1000(app)"), "{saw}");
}

/// The `#N CACHED` lines of a plain progress log, by instruction.
fn cached_steps(out: &RunOutput) -> Vec<String> {
    let stderr = out.stderr_text();
    let mut names = std::collections::BTreeMap::new();
    let mut cached = Vec::new();
    for line in stderr.lines() {
        let Some((number, rest)) = line.split_once(' ') else { continue };
        if rest.starts_with('[') {
            names.insert(number.to_string(), rest.to_string());
        } else if rest == "CACHED" {
            cached.push(names.get(number).cloned().unwrap_or_default());
        }
    }
    cached
}

#[test]
fn a_kept_failure_changes_no_cache_hits_and_discard_keeps_nothing() {
    let ctx = failing_step();
    let kept = TestEnv::new("debug-cache-kept");
    let discarded = TestEnv::new("debug-cache-discard");
    let build = |env: &TestEnv, on_error: &str| {
        env.rbuild().args(["build", "--progress=plain", on_error]).arg(ctx.path()).run()
    };
    kept_id(&build(&kept, "--on-error=keep"));
    let out = build(&discarded, "--on-error=discard");
    out.assert_code(1);
    assert!(!out.stderr_text().contains("rbuild debug"), "{}", out.describe());
    assert!(
        !discarded.store().join("debug").exists()
            || std::fs::read_dir(discarded.store().join("debug")).unwrap().next().is_none(),
        "--on-error=discard kept something"
    );
    let none = debug(&discarded, &["last", "--", "true"]);
    none.assert_code(1).assert_stderr_contains("no failed RUN is kept");

    // The same build again: the same hits with or without a kept failure, and the failed step
    // runs again (it was never cached).
    let again_kept = build(&kept, "--on-error=discard");
    let again_discarded = build(&discarded, "--on-error=discard");
    let hits = cached_steps(&again_kept);
    assert!(!hits.is_empty(), "no cache hits\n{}", again_kept.describe());
    assert_eq!(hits, cached_steps(&again_discarded), "{}", again_kept.describe());
    assert!(!hits.iter().any(|h| h.contains("step-wrote")), "the failed step was a cache hit: {hits:?}");
    again_kept.assert_code(1);
}

#[test]
fn kept_failures_are_listed_counted_and_pruned() {
    let env = TestEnv::new("debug-list-prune");
    let out = env.rbuild().args(["build", "--progress=plain"]).arg(failing_step().path()).run();
    let id = kept_id(&out);
    let list = debug(&env, &["--list"]);
    list.assert_success();
    let text = list.stdout_text();
    let row = text.lines().find(|l| l.starts_with(&id)).unwrap_or_else(|| panic!("{id} not listed\n{text}"));
    assert!(row.contains("Dockerfile:8") && row.contains("exit code: 3") && row.contains("RUN echo step-wrote"), "{row}");

    let du = env.rbuild().args(["du", "--format", "json"]).run();
    let counted = du
        .stdout_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|row| row["Type"] == "Kept failures")
        .unwrap_or_else(|| panic!("no Kept failures row\n{}", du.describe()));
    assert_eq!(counted["TotalCount"], 1, "{counted}");

    let pruned = env.rbuild().args(["prune", "-f"]).run();
    pruned.assert_success();
    assert!(pruned.stdout_text().contains(&id), "{}", pruned.describe());
    let list = debug(&env, &["--list"]).stdout_text();
    assert!(!list.contains(&id), "{list}");
    assert!(!env.store().join("debug").join(&id).exists());
    debug(&env, &[&id, "--", "true"]).assert_code(1).assert_stderr_contains("no kept failure");
}

#[test]
fn secrets_are_read_again_and_never_kept() {
    let env = TestEnv::new("debug-secret");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "RUN --mount=type=cache,target=/cache --mount=type=secret,id=token,target=/run/token \
         echo in-cache > /cache/mark && cat /run/token > /dev/null && exit 3",
    ]));
    let secret = env.path("token");
    std::fs::write(&secret, "s3cr3t-value").unwrap();
    let source = format!("id=token,src={}", secret.display());
    let out = env.rbuild().args(["build", "--progress=plain", "--secret", &source]).arg(ctx.path()).run();
    kept_id(&out);
    let inside = debug(&env, &["last", "--", "sh", "-c", "cat /run/token; echo; cat /cache/mark"]);
    assert_eq!(inside.stdout_text(), "s3cr3t-value\nin-cache\n", "{}", inside.describe());
    let found = std::process::Command::new("grep").args(["-r", "-l", "s3cr3t-value"]).arg(env.store()).output().unwrap();
    assert!(found.stdout.is_empty(), "the secret's value is in the store: {}", String::from_utf8_lossy(&found.stdout));

    std::fs::remove_file(&secret).unwrap();
    let gone = debug(&env, &["last", "--", "sh", "-c", "test -e /run/token || echo no-token"]);
    gone.assert_success().assert_stderr_contains("secret \"token\" is not mounted");
    assert_eq!(gone.stdout_text(), "no-token\n");
}

#[test]
fn a_shell_in_an_image_and_on_error_shell_without_a_terminal() {
    let env = TestEnv::new("debug-image");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&["WORKDIR /app", "RUN echo in-image > /app/file"]));
    let reference = env.image_ref();
    env.rbuild().args(["build", "-t", &reference]).arg(ctx.path()).run().assert_success();
    let out = debug(&env, &["--image", &reference, "--", "sh", "-c", "pwd; cat file"]);
    assert_eq!(out.stdout_text(), "/app\nin-image\n", "{}", out.describe());
    debug(&env, &["--image", "no-such-image:1", "--", "true"]).assert_code(1).assert_stderr_contains("not in the store");

    // --target builds the stage (and not the stages after it), then opens the shell there.
    let staged = Context::with_busybox();
    staged.dockerfile(&[
        "FROM scratch AS build",
        "COPY busybox /bin/busybox",
        r#"RUN ["/bin/busybox","--install","-s","/bin"]"#,
        "ARG WHO=nobody",
        "WORKDIR /src",
        "RUN echo \"stage-built-for-$WHO\" > out",
        "FROM build AS final",
        "RUN exit 9",
    ]);
    let path = staged.path().display().to_string();
    let out = debug(&env, &["--target", "build", "--build-arg", "WHO=tester", &path, "--", "sh", "-c", "pwd; cat out"]);
    assert_eq!(out.stdout_text(), "/src\nstage-built-for-tester\n", "{}", out.describe());
    debug(&env, &["--target", "no-such-stage", &path, "--", "true"]).assert_code(1).assert_stderr_contains("no-such-stage");

    let failing = failing_step();
    let out = env.rbuild().args(["build", "--progress=plain", "--on-error=shell"]).arg(failing.path()).run();
    out.assert_stderr_contains("--on-error=shell needs a terminal");
    kept_id(&out);
}

/// A shell script for tmux: runs rbuild with the test's store, then prints its exit status and
/// waits, so that the screen can still be read.
fn terminal_script(env: &TestEnv, args: &str) -> std::path::PathBuf {
    let script = env.path("session.sh");
    let text = format!(
        "RBUILD_ROOT='{}' '{}' {args}\necho RBUILD-EXIT=$?\nsleep 600\n",
        env.store().display(),
        rbuild_bin().display()
    );
    std::fs::write(&script, text).unwrap();
    script
}

#[test]
fn an_interactive_shell_runs_typed_commands_and_gets_ctrl_c() {
    let env = TestEnv::new("debug-tty");
    let out = env.rbuild().args(["build", "--progress=plain"]).arg(failing_step().path()).run();
    kept_id(&out);
    let script = terminal_script(&env, "debug last");
    let tmux = Tmux::start(env.path("tmux.sock"), "120x30", &format!("sh '{}'", script.display()));
    let limit = Duration::from_secs(30);
    tmux.wait_for("the shell's announcement", limit, |s| s.contains("a shell in kept failure"));
    // The markers are computed, so that the echoed command line does not match them.
    tmux.run(&["send-keys", "echo typed-$((6*7)); cat /work/written; test -t 0 && echo on-a-tty-$((1+1))", "Enter"]);
    let screen = tmux.wait_for("the command's output", limit, |s| s.contains("typed-42") && s.contains("on-a-tty-2"));
    assert!(screen.contains("step-wrote"), "{screen}");

    // The window size is the terminal's, and follows it when it changes (SIGWINCH).
    tmux.run(&["send-keys", "echo size-$(stty size | tr ' ' x)", "Enter"]);
    tmux.wait_for("the first size", limit, |s| s.contains("size-30x120"));
    tmux.run(&["resize-window", "-x", "100", "-y", "25"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.run(&["send-keys", "echo size-$(stty size | tr ' ' x)", "Enter"]);
    tmux.wait_for("the new size", limit, |s| s.contains("size-25x100"));

    // Ctrl-C stops the shell's foreground job, not rbuild: the shell goes on afterwards.
    tmux.run(&["send-keys", "sleep 300; echo sleep-ended-$?", "Enter"]);
    std::thread::sleep(Duration::from_millis(500));
    tmux.run(&["send-keys", "C-c", ""]);
    tmux.run(&["send-keys", "echo still-$((20+3))", "Enter"]);
    let screen = tmux.wait_for("the shell after Ctrl-C", limit, |s| s.contains("still-23"));
    assert!(!screen.contains("RBUILD-EXIT"), "Ctrl-C ended rbuild\n{screen}");
    assert!(!screen.contains("sleep-ended-0"), "the sleep was not interrupted\n{screen}");

    tmux.run(&["send-keys", "exit 5", "Enter"]);
    let screen = tmux.wait_for("rbuild's exit", limit, |s| s.contains("RBUILD-EXIT="));
    assert!(screen.contains("RBUILD-EXIT=5"), "the shell's status is not rbuild's\n{screen}");
}

#[test]
fn on_error_shell_opens_the_shell_on_a_terminal() {
    let env = TestEnv::new("debug-on-error-shell");
    let ctx = failing_step();
    let script = terminal_script(&env, &format!("build --progress=plain --on-error=shell '{}'", ctx.path().display()));
    let tmux = Tmux::start(env.path("tmux.sock"), "160x40", &format!("sh '{}'", script.display()));
    let limit = Duration::from_secs(120);
    tmux.wait_for("the shell after the error", limit, |s| s.contains("a shell in kept failure"));
    tmux.run(&["send-keys", "cat /work/written", "Enter"]);
    tmux.wait_for("the step's file", Duration::from_secs(30), |s| s.contains("step-wrote"));
    tmux.run(&["send-keys", "exit 0", "Enter"]);
    let screen = tmux.wait_for("rbuild's exit", Duration::from_secs(30), |s| s.contains("RBUILD-EXIT="));
    assert!(screen.contains("RBUILD-EXIT=1"), "a build that failed must exit 1 whatever the shell did\n{screen}");
}
