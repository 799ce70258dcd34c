//! RUN as root: shell and exec forms, SHELL, heredocs, the layer a step leaves (deletions,
//! replaced directories, ownership), USER, WORKDIR, ARG/ENV in the command's environment, the
//! sandbox (hostname, network, host files, generated /etc files), failures, and that builds,
//! failed or interrupted, leave no mounts, processes or temporary files behind. Every result is
//! checked in the image as `docker run` sees it, and where it matters in the layer tars.

use std::time::Duration;

use rbuild_e2e::sandbox::{
    assert_no_leftovers, interfaces, layer_paths, sleep_marker, top_entry, with_shell, Background,
};
use rbuild_e2e::{Context, EntryKind, TestEnv};

/// BuildKit's default PATH, which a RUN gets when nothing sets one.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[test]
fn shell_form_uses_the_shell_instruction() {
    let env = TestEnv::new("run-shell");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        // `$-` lists the shell's options: no -e by default, -e once SHELL asks for it.
        r#"RUN echo "$-" > /flags-default"#,
        r#"SHELL ["/bin/sh", "-ec"]"#,
        r#"RUN echo "$-" > /flags-e"#,
    ]));
    let image = env.build_and_load(&ctx, &[]);
    let default = image.read("/flags-default");
    let with_e = image.read("/flags-e");
    assert!(!default.contains('e'), "default shell options: {default:?}");
    assert!(with_e.contains('e'), "options under SHELL -ec: {with_e:?}");
    assert_eq!(
        rbuild_e2e::strings(&image.config()["Shell"]),
        ["/bin/sh", "-ec"]
    );
}

#[test]
fn shell_from_the_shell_instruction_stops_at_the_first_error() {
    let env = TestEnv::new("run-shell-e");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        r#"SHELL ["/bin/sh", "-ec"]"#,
        "RUN false; echo went-on > /went-on",
    ]));
    let out = env.rbuild().arg("build").arg(ctx.path()).run();
    out.assert_code(1)
        .assert_stderr_contains("Dockerfile:5")
        .assert_stderr_contains("did not complete successfully: exit code: 1");
}

#[test]
fn exec_form_runs_without_a_shell() {
    let env = TestEnv::new("run-exec");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        // No shell, so `$HOME` is a literal directory name; `mkdir` is found on PATH.
        r#"RUN ["mkdir", "-p", "/exec/$HOME"]"#,
        r#"RUN ["/bin/touch", "/exec/done"]"#,
    ]));
    let image = env.build_and_load(&ctx, &[]);
    image.busybox(&["test", "-d", "/exec/$HOME"]);
    image.busybox(&["test", "-f", "/exec/done"]);
}

#[test]
fn heredocs() {
    let env = TestEnv::new("run-heredoc");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "ENV WHO=world",
        // A plain heredoc: a script for the stage's shell.
        "RUN <<EOF",
        "echo one > /plain",
        "echo two >> /plain",
        "EOF",
        // <<- strips leading tabs, including before the delimiter.
        "RUN <<-EOF",
        "\techo tabbed > /tabbed",
        "\tEOF",
        // A shebang makes the body a script run by its interpreter, not fed to the shell.
        "RUN <<EOF",
        "#!/bin/sh",
        r#"echo "$0" > /shebang-sh"#,
        "EOF",
        "RUN <<EOF",
        "#!/bin/awk -f",
        r#"BEGIN { print "awk ran me" > "/shebang-awk" }"#,
        "EOF",
        // Two heredocs on one line, as Docker's documentation shows them.
        "RUN <<FILE1 cat > /file1 && <<FILE2 cat > /file2",
        "I am",
        "first",
        "FILE1",
        "I am",
        "second",
        "FILE2",
        // A heredoc the shell reads: expanded unless its delimiter is quoted.
        "RUN cat <<EOT > /expanded",
        "hello $WHO",
        "EOT",
        "RUN cat <<'EOT' > /literal",
        "hello $WHO ${HOME}",
        "EOT",
    ]));
    let image = env.build_and_load(&ctx, &[]);
    assert_eq!(image.read("/plain"), "one\ntwo\n");
    assert_eq!(image.read("/tabbed"), "tabbed\n");
    let arg0 = image.read("/shebang-sh");
    assert!(
        !matches!(arg0.trim(), "sh" | "/bin/sh" | "-sh" | ""),
        "the #!/bin/sh heredoc was fed to a shell, not run as a script ($0 = {arg0:?})"
    );
    assert_eq!(image.read("/shebang-awk"), "awk ran me\n");
    assert_eq!(image.read("/file1"), "I am\nfirst\n");
    assert_eq!(image.read("/file2"), "I am\nsecond\n");
    assert_eq!(image.read("/expanded"), "hello world\n");
    assert_eq!(image.read("/literal"), "hello $WHO ${HOME}\n");
}

#[test]
fn deleting_a_lower_file_whites_it_out() {
    let env = TestEnv::new("run-whiteout");
    let ctx = Context::with_busybox();
    ctx.file("gone.txt", "gone\n").file("kept.txt", "kept\n");
    ctx.dockerfile(&with_shell(&[
        "COPY gone.txt kept.txt /files/",
        "RUN rm /files/gone.txt",
    ]));
    let built = env.build(&ctx, &[]);
    let archive = built.archive();
    let layers = archive.layers();
    let top = layer_paths(&archive, layers.len() - 1);
    assert!(
        top.contains(&"files/.wh.gone.txt".to_string()),
        "the RUN layer has no whiteout for files/gone.txt: {top:?}"
    );
    let image = built.load();
    assert!(!image
        .try_busybox(&["test", "-e", "/files/gone.txt"])
        .status
        .success());
    assert_eq!(image.read("/files/kept.txt"), "kept\n");
}

#[test]
fn replacing_a_directory_hides_its_old_files() {
    let env = TestEnv::new("run-opaque");
    let ctx = Context::with_busybox();
    ctx.file("d/a.txt", "a\n").file("d/sub/b.txt", "b\n");
    ctx.dockerfile(&with_shell(&[
        "COPY d /d",
        "RUN rm -rf /d && mkdir /d && echo new > /d/new.txt",
    ]));
    let built = env.build(&ctx, &[]);
    let archive = built.archive();
    let top = layer_paths(&archive, archive.layers().len() - 1);
    assert!(
        !top.iter()
            .any(|p| p == "d/a.txt" || p.starts_with("d/sub/")),
        "old files in the RUN layer: {top:?}"
    );
    let image = built.load();
    assert_eq!(image.busybox(&["ls", "-A", "/d"]), "new.txt\n");
    assert_eq!(image.read("/d/new.txt"), "new\n");
}

#[test]
fn chown_shows_in_the_container_and_in_the_layer() {
    let env = TestEnv::new("run-chown");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "RUN mkdir /owned && echo x > /owned/file && chown -R 1234:5678 /owned",
    ]));
    let built = env.build(&ctx, &[]);
    let archive = built.archive();
    for path in ["owned", "owned/file"] {
        let entry = top_entry(&archive, path);
        assert_eq!((entry.uid, entry.gid), (1234, 5678), "tar header of {path}");
    }
    let image = built.load();
    assert_eq!(
        image.busybox(&["stat", "-c", "%u:%g", "/owned", "/owned/file"]),
        "1234:5678\n1234:5678\n"
    );
}

#[test]
fn user_by_name_and_by_ids() {
    let env = TestEnv::new("run-user");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "RUN mkdir -p /etc /out && chmod 1777 /out \
         && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd \
         && echo 'app:x:1500:1600:app:/home/app:/bin/sh' >> /etc/passwd \
         && printf 'root:x:0:\\napp:x:1600:\\n' > /etc/group",
        "USER app",
        "RUN id > /out/by-name && echo \"$HOME\" > /out/home",
        "USER 1234:5678",
        "RUN id > /out/by-ids",
    ]));
    let built = env.build(&ctx, &[]);
    let archive = built.archive();
    let entry = top_entry(&archive, "out/by-name");
    assert_eq!((entry.uid, entry.gid), (1500, 1600), "owner of out/by-name");
    let entry = top_entry(&archive, "out/by-ids");
    assert_eq!((entry.uid, entry.gid), (1234, 5678), "owner of out/by-ids");

    let image = built.load();
    let by_name = image.read("/out/by-name");
    assert!(
        by_name.starts_with("uid=1500(app) gid=1600(app)"),
        "id as USER app: {by_name:?}"
    );
    assert_eq!(image.read("/out/home"), "/home/app\n");
    let by_ids = image.read("/out/by-ids");
    assert!(
        by_ids.starts_with("uid=1234 gid=5678"),
        "id as USER 1234:5678: {by_ids:?}"
    );
    assert_eq!(image.config()["User"], "1234:5678");
}

#[test]
fn workdir_is_created_and_is_the_working_directory() {
    let env = TestEnv::new("run-workdir");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "WORKDIR /srv/app/deep",
        "RUN pwd > here.txt",
    ]));
    let image = env.build_and_load(&ctx, &[]);
    assert_eq!(image.read("/srv/app/deep/here.txt"), "/srv/app/deep\n");
    assert_eq!(image.config()["WorkingDir"], "/srv/app/deep");
}

#[test]
fn arg_is_in_the_environment_of_run_but_not_in_the_image() {
    let env = TestEnv::new("run-arg-env");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "ARG WITH_DEFAULT=from-default",
        "ARG FROM_CLI",
        "ENV GREETING=hello",
        "RUN env > /env.txt && echo \"$PATH\" > /path.txt",
    ]));
    let image = env.build_and_load(&ctx, &["--build-arg", "FROM_CLI=from-cli"]);
    let run_env = image.read("/env.txt");
    let run_env: Vec<&str> = run_env.lines().collect();
    for expected in [
        "WITH_DEFAULT=from-default",
        "FROM_CLI=from-cli",
        "GREETING=hello",
    ] {
        assert!(
            run_env.contains(&expected),
            "RUN's env lacks {expected}: {run_env:?}"
        );
    }
    assert_eq!(image.read("/path.txt"), format!("{DEFAULT_PATH}\n"));

    let config_env = rbuild_e2e::strings(&image.config()["Env"]);
    assert!(
        config_env.contains(&"GREETING=hello".to_string()),
        "{config_env:?}"
    );
    assert!(
        !config_env
            .iter()
            .any(|v| v.starts_with("WITH_DEFAULT=") || v.starts_with("FROM_CLI=")),
        "build args leaked into the image's Env: {config_env:?}"
    );
}

#[test]
fn a_failing_run_reports_line_status_output_and_snippet() {
    let env = TestEnv::new("run-fails");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "RUN echo fine",
        "RUN echo last-words-4d1f && exit 3",
        "RUN echo never > /never",
    ]));
    let out = env.rbuild().arg("build").arg(ctx.path()).run();
    out.assert_code(1)
        .assert_stderr_contains("Dockerfile:5")
        .assert_stderr_contains("did not complete successfully: exit code: 3")
        .assert_stderr_contains(">>> RUN echo last-words-4d1f && exit 3");
    // The output's last lines are part of the error, not just of the progress before it.
    let stderr = out.stderr_text();
    let error = &stderr[stderr
        .find("did not complete successfully")
        .expect("checked above")..];
    assert!(
        error.contains("last-words-4d1f"),
        "the error does not repeat the command's last output\n{}",
        out.describe()
    );
}

#[test]
fn run_device_is_refused_naming_the_line() {
    let env = TestEnv::new("run-device");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&["RUN --device=vendor.com/gpu=all true"]));
    let out = env.rbuild().arg("build").arg(ctx.path()).run();
    out.assert_code(1)
        .assert_stderr_contains("Dockerfile:4")
        .assert_stderr_contains("--device")
        .assert_stderr_contains("not supported");
}

#[test]
fn run_cannot_see_host_files() {
    let env = TestEnv::new("run-host-file");
    let host_file = std::path::PathBuf::from(format!(
        "/tmp/rbuild-e2e-host-{}",
        rbuild_e2e::env::unique_suffix()
    ));
    std::fs::write(&host_file, "host\n").expect("writing the host file");
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _remove = Remove(host_file.clone());

    let ctx = Context::with_busybox();
    let check = format!(
        "RUN test ! -e {0} && test ! -e /proc/1/root{0} && echo isolated > /isolated",
        host_file.display()
    );
    ctx.dockerfile(&with_shell(&[&check]));
    let image = env.build_and_load(&ctx, &[]);
    assert_eq!(image.read("/isolated"), "isolated\n");
}

#[test]
fn hostname_is_buildkitsandbox() {
    let env = TestEnv::new("run-hostname");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "RUN hostname > /hostname.txt && cat /etc/hostname > /etc-hostname.txt",
    ]));
    let image = env.build_and_load(&ctx, &[]);
    assert_eq!(image.read("/hostname.txt"), "buildkitsandbox\n");
    assert_eq!(image.read("/etc-hostname.txt"), "buildkitsandbox\n");
}

#[test]
fn run_network_none_has_only_loopback() {
    let env = TestEnv::new("run-network-none");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "RUN --network=none cat /proc/net/dev > /dev-none && cat /proc/net/route > /route-none",
        "RUN cat /proc/net/dev > /dev-default",
    ]));
    let image = env.build_and_load(&ctx, &[]);
    assert_eq!(interfaces(&image.read("/dev-none")), ["lo"]);
    let route = image.read("/route-none");
    assert_eq!(
        route.lines().count(),
        1,
        "routes with --network=none: {route:?}"
    );
    assert!(route.starts_with("Iface"), "{route:?}");
    // The default is the host's network: the same interfaces as the host.
    let host = std::fs::read_to_string("/proc/net/dev").expect("reading /proc/net/dev");
    let mut host = interfaces(&host);
    let mut default = interfaces(&image.read("/dev-default"));
    host.sort();
    default.sort();
    assert_eq!(default, host, "interfaces of a RUN on the default network");
}

#[test]
fn cli_network_none_applies_to_every_run() {
    let env = TestEnv::new("cli-network-none");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "RUN cat /proc/net/dev > /dev-1 && cat /proc/net/route > /route-1",
        "RUN --network=default cat /proc/net/dev > /dev-2 && cat /proc/net/route > /route-2",
    ]));
    let image = env.build_and_load(&ctx, &["--network", "none"]);
    for n in ["1", "2"] {
        assert_eq!(
            interfaces(&image.read(&format!("/dev-{n}"))),
            ["lo"],
            "RUN {n}"
        );
        let route = image.read(&format!("/route-{n}"));
        assert_eq!(route.lines().count(), 1, "routes of RUN {n}: {route:?}");
    }
}

#[test]
fn generated_etc_files_stay_out_of_the_layer() {
    let env = TestEnv::new("run-etc-files");
    let ctx = Context::with_busybox();
    ctx.file("hosts", "10.1.2.3 from-the-image\n");
    ctx.dockerfile(&with_shell(&[
        // Line 4: touches nothing in /etc, so the layer has no /etc at all.
        "RUN cat /etc/hosts /etc/resolv.conf /etc/hostname > /seen",
        // Line 5: writes in /etc; only that file is in the layer.
        "RUN echo hi > /etc/motd && if echo junk >> /etc/hosts; then exit 1; fi",
        // Line 6-7: an image's own /etc/hosts survives a RUN, which sees the generated one.
        "COPY hosts /etc/hosts",
        "RUN grep -q buildkitsandbox /etc/hosts && touch /etc/after",
    ]));
    let built = env.build(&ctx, &[]);
    let archive = built.archive();
    let layers = archive.layers();
    assert_eq!(layers.len(), 6, "one layer per COPY/RUN");
    let seen_layer = layer_paths(&archive, 2);
    assert_eq!(
        seen_layer,
        ["seen"],
        "layer of the RUN that wrote only /seen"
    );
    let motd_layer = layer_paths(&archive, 3);
    let mut motd_layer: Vec<&str> = motd_layer.iter().map(String::as_str).collect();
    motd_layer.sort();
    assert_eq!(
        motd_layer,
        ["etc", "etc/motd"],
        "layer of the RUN that wrote /etc/motd"
    );
    let last = layer_paths(&archive, 5);
    assert!(
        !last
            .iter()
            .any(|p| p.contains("hosts") || p.contains("resolv.conf") || p.contains("hostname")),
        "the last RUN's layer has generated files: {last:?}"
    );
    let entry = top_entry(&archive, "etc/hosts");
    assert_eq!(entry.kind, EntryKind::File);
    assert_eq!(entry.data, b"10.1.2.3 from-the-image\n");

    let image = built.load();
    let seen = image.read("/seen");
    assert!(
        seen.contains("127.0.0.1\tlocalhost buildkitsandbox"),
        "{seen:?}"
    );
    assert!(seen.contains("nameserver"), "{seen:?}");
}

// ---- No leftovers ------------------------------------------------------------------------------

#[test]
fn a_failed_build_leaves_nothing_behind() {
    let env = TestEnv::new("leftovers-failed");
    let marker = sleep_marker();
    let ctx = Context::with_busybox();
    // The step starts a background process and fails: the process must die with the step.
    let run = format!("RUN sleep {marker} & echo started > /started && exit 7");
    ctx.dockerfile(&with_shell(&[&run]));
    let out = env.rbuild().arg("build").arg(ctx.path()).run();
    out.assert_code(1).assert_stderr_contains("exit code: 7");
    assert_no_leftovers(env.store(), &marker, "after a failed RUN");
}

#[test]
fn a_successful_build_leaves_no_background_process() {
    let env = TestEnv::new("leftovers-success");
    let marker = sleep_marker();
    let ctx = Context::with_busybox();
    let run = format!("RUN sleep {marker} & echo started > /started");
    ctx.dockerfile(&with_shell(&[&run]));
    let image = env.build_and_load(&ctx, &[]);
    assert_no_leftovers(
        env.store(),
        &marker,
        "after a RUN that left a background process",
    );
    assert_eq!(image.read("/started"), "started\n");
}

/// Starts a build whose RUN sleeps, sends `signal` once the sleep runs, and checks that rbuild
/// stops promptly, fails, and leaves nothing behind; then that the store still builds.
fn interrupt(name: &str, signal: &str) {
    let env = TestEnv::new(name);
    let marker = sleep_marker();
    let ctx = Context::with_busybox();
    let run = format!("RUN sleep {marker}");
    ctx.dockerfile(&with_shell(&["RUN echo before > /before", &run]));
    let mut build = Background::start(
        env.rbuild()
            .args(["build", "-o"])
            .arg(env.path("never.tar"))
            .arg(ctx.path()),
    );
    build.wait_for_process(&marker);
    build.signal(signal);
    // Well before the 30 s sleep would end on its own.
    let out = build.wait(Duration::from_secs(15));
    assert!(
        !out.status.success(),
        "an interrupted build succeeded\n{}",
        out.describe()
    );
    assert_no_leftovers(env.store(), &marker, &format!("after SIG{signal}"));
    assert!(
        !env.path("never.tar").exists(),
        "an interrupted build wrote its output"
    );

    // The store is still usable (no stale lock, no half-written state in the way).
    let again = Context::with_busybox();
    again.dockerfile(&with_shell(&["RUN echo after > /after"]));
    let image = env.build_and_load(&again, &[]);
    assert_eq!(image.read("/after"), "after\n");
}

#[test]
fn sigterm_during_run_leaves_nothing_behind() {
    interrupt("leftovers-sigterm", "TERM");
}

#[test]
fn sigint_during_run_leaves_nothing_behind() {
    interrupt("leftovers-sigint", "INT");
}
