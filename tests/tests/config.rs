//! Instructions that only change the image config (ENV, LABEL, WORKDIR, USER, EXPOSE, VOLUME,
//! CMD, ENTRYPOINT, SHELL, STOPSIGNAL, HEALTHCHECK, ONBUILD, MAINTAINER, ARG) and the history.

use rbuild_e2e::{keys, strings, Context, Docker, LoadedImage, TestEnv, SCRATCH_BUSYBOX};
use serde_json::json;

/// Builds `FROM scratch` + busybox + `lines` and loads the image.
fn build_with(env: &TestEnv, lines: &[&str], args: &[&str]) -> LoadedImage {
    let ctx = Context::with_busybox();
    let dockerfile: Vec<&str> = SCRATCH_BUSYBOX.iter().chain(lines).copied().collect();
    ctx.dockerfile(&dockerfile);
    env.build_and_load(&ctx, args)
}

/// The image's `Env` as a list of `KEY=value` strings.
fn env_list(image: &LoadedImage) -> Vec<String> {
    strings(&image.config()["Env"])
}

#[test]
fn env_both_forms_and_expansion() {
    let env = TestEnv::new("env-forms");
    let image = build_with(
        &env,
        &[
            r#"ENV A=1 B="two words""#,
            "ENV C legacy form value",
            "ENV D=${A:-x}-${UNSET:-fallback} E=$A$A",
        ],
        &[],
    );
    let vars = env_list(&image);
    for expected in [
        "A=1",
        "B=two words",
        "C=legacy form value",
        "D=1-fallback",
        "E=11",
    ] {
        assert!(
            vars.iter().any(|v| v == expected),
            "Env {vars:?} lacks {expected}"
        );
    }
    // The container sees them too.
    let printed = image.busybox(&["env"]);
    assert!(
        printed.lines().any(|l| l == "B=two words"),
        "env printed:\n{printed}"
    );
}

#[test]
fn scratch_image_gets_the_default_path() {
    let env = TestEnv::new("default-path");
    let image = build_with(&env, &["ENV X=1"], &[]);
    let vars = env_list(&image);
    assert!(
        vars.iter()
            .any(|v| v == "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "Env {vars:?} lacks the default PATH"
    );
}

/// A `FROM scratch` image without WORKDIR, ENV or CMD (the static-binary image) has the config
/// of BuildKit's empty image, as `docker inspect` shows it: PATH, `/` as the working directory,
/// and no user, command, entrypoint, volumes, ports or labels; the platform's fields and the
/// rootfs type in the config blob.
#[test]
fn a_plain_scratch_image_has_the_empty_images_defaults() {
    let env = TestEnv::new("scratch-defaults");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&SCRATCH_BUSYBOX);
    let built = env.build(&ctx, &[]);
    let image = built.load();
    let config = image.config();
    assert_eq!(config["WorkingDir"], "/", "{config}");
    assert_eq!(env_list(&image), ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    assert_eq!(config["User"], "", "{config}");
    for absent in ["Cmd", "Entrypoint", "Volumes", "ExposedPorts", "Labels", "Healthcheck", "Shell", "StopSignal"] {
        assert!(config[absent].is_null(), "{absent} in {config}");
    }
    let blob = built.archive().config();
    assert_eq!(blob["os"], "linux");
    assert_eq!(blob["rootfs"]["type"], "layers");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(blob["architecture"], arch);
    assert_eq!(blob["config"]["WorkingDir"], "/", "the config blob itself: {blob}");
    // The working directory is where a container starts.
    assert_eq!(image.busybox(&["pwd"]).trim(), "/");
}

#[test]
fn label_instruction_sets_labels() {
    let env = TestEnv::new("labels");
    let image = build_with(
        &env,
        &[
            r#"LABEL org.example.a=1 "org.example.spaced key"="spaced value""#,
            "ARG VERSION=2.5",
            "LABEL org.example.version=$VERSION",
            "LABEL org.example.a=overridden",
        ],
        &[],
    );
    let labels = &image.config()["Labels"];
    assert_eq!(labels["org.example.a"], "overridden", "{labels}");
    assert_eq!(labels["org.example.spaced key"], "spaced value", "{labels}");
    assert_eq!(labels["org.example.version"], "2.5", "{labels}");
}

#[test]
fn workdir_sets_and_creates_the_directory() {
    let env = TestEnv::new("workdir");
    let image = build_with(&env, &["WORKDIR /app/src", "WORKDIR nested"], &[]);
    assert_eq!(image.config()["WorkingDir"], "/app/src/nested");
    image.busybox(&["test", "-d", "/app/src/nested"]);
    assert_eq!(image.busybox(&["pwd"]), "/app/src/nested\n");
}

#[test]
fn user_is_recorded_and_used() {
    let env = TestEnv::new("user");
    let image = build_with(&env, &["USER 1234:5678"], &[]);
    assert_eq!(image.config()["User"], "1234:5678");
    assert_eq!(image.busybox(&["id", "-u"]), "1234\n");
    assert_eq!(image.busybox(&["id", "-g"]), "5678\n");
}

#[test]
fn expose_gives_protocol_qualified_ports() {
    let env = TestEnv::new("expose");
    let image = build_with(&env, &["EXPOSE 80", "EXPOSE 53/udp 8080/tcp"], &[]);
    let mut ports = keys(&image.config()["ExposedPorts"]);
    ports.sort();
    assert_eq!(ports, ["53/udp", "80/tcp", "8080/tcp"]);
}

#[test]
fn volume_both_forms() {
    let env = TestEnv::new("volume");
    let image = build_with(
        &env,
        &["VOLUME /data", r#"VOLUME ["/cache", "/logs"]"#],
        &[],
    );
    let mut volumes = keys(&image.config()["Volumes"]);
    volumes.sort();
    assert_eq!(volumes, ["/cache", "/data", "/logs"]);
}

#[test]
fn cmd_exec_form_runs() {
    let env = TestEnv::new("cmd");
    let image = build_with(&env, &[r#"CMD ["/bin/busybox", "echo", "from CMD"]"#], &[]);
    assert_eq!(
        strings(&image.config()["Cmd"]),
        ["/bin/busybox", "echo", "from CMD"]
    );
    assert_eq!(image.run(&[]), "from CMD\n");
}

#[test]
fn shell_form_uses_bin_sh_by_default() {
    let env = TestEnv::new("default-shell");
    let image = build_with(&env, &["ENTRYPOINT exec app --flag", "CMD echo hi"], &[]);
    let config = image.config();
    assert_eq!(
        strings(&config["Entrypoint"]),
        ["/bin/sh", "-c", "exec app --flag"]
    );
    assert_eq!(strings(&config["Cmd"]), ["/bin/sh", "-c", "echo hi"]);
}

#[test]
fn shell_instruction_changes_shell_form() {
    let env = TestEnv::new("shell");
    let image = build_with(
        &env,
        &[
            r#"SHELL ["/bin/busybox", "sh", "-c"]"#,
            "CMD echo $((6 * 7)) via shell",
        ],
        &[],
    );
    let config = image.config();
    assert_eq!(
        strings(&config["Cmd"]),
        ["/bin/busybox", "sh", "-c", "echo $((6 * 7)) via shell"]
    );
    assert_eq!(strings(&config["Shell"]), ["/bin/busybox", "sh", "-c"]);
    assert_eq!(image.run(&[]), "42 via shell\n");
}

#[test]
fn entrypoint_resets_the_inherited_cmd() {
    let env = TestEnv::new("entrypoint");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&[
        "FROM scratch AS base",
        "COPY busybox /bin/busybox",
        r#"CMD ["inherited", "cmd"]"#,
        "FROM base",
        r#"ENTRYPOINT ["/bin/busybox", "echo"]"#,
    ]);
    let image = env.build_and_load(&ctx, &[]);
    let config = image.config();
    assert_eq!(strings(&config["Entrypoint"]), ["/bin/busybox", "echo"]);
    assert!(
        config["Cmd"].is_null(),
        "Cmd should be reset by ENTRYPOINT: {}",
        config["Cmd"]
    );
    assert_eq!(image.run(&["args", "given"]), "args given\n");
}

#[test]
fn stopsignal_is_recorded() {
    let env = TestEnv::new("stopsignal");
    let image = build_with(&env, &["STOPSIGNAL SIGQUIT"], &[]);
    assert_eq!(image.config()["StopSignal"], "SIGQUIT");
}

#[test]
fn healthcheck_with_options() {
    let env = TestEnv::new("healthcheck");
    let image = build_with(
        &env,
        &["HEALTHCHECK --interval=30s --timeout=5s --start-period=1m --retries=4 CMD /bin/busybox true"],
        &[],
    );
    let health = &image.config()["Healthcheck"];
    assert_eq!(strings(&health["Test"]), ["CMD-SHELL", "/bin/busybox true"]);
    // Durations are nanoseconds in the config.
    assert_eq!(health["Interval"], json!(30_000_000_000u64), "{health}");
    assert_eq!(health["Timeout"], json!(5_000_000_000u64), "{health}");
    assert_eq!(health["StartPeriod"], json!(60_000_000_000u64), "{health}");
    assert_eq!(health["Retries"], json!(4), "{health}");
}

#[test]
fn healthcheck_exec_form_and_none() {
    let env = TestEnv::new("healthcheck-none");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&[
        "FROM scratch AS checked",
        "COPY busybox /bin/busybox",
        r#"HEALTHCHECK CMD ["/bin/busybox", "true"]"#,
        "FROM checked AS unchecked",
        "HEALTHCHECK NONE",
    ]);
    let checked = env.build_and_load(&ctx, &["--target", "checked"]);
    assert_eq!(
        strings(&checked.config()["Healthcheck"]["Test"]),
        ["CMD", "/bin/busybox", "true"]
    );
    let unchecked = env.build_and_load(&ctx, &[]);
    assert_eq!(
        strings(&unchecked.config()["Healthcheck"]["Test"]),
        ["NONE"]
    );
}

#[test]
fn onbuild_triggers_are_stored() {
    let env = TestEnv::new("onbuild");
    let image = build_with(
        &env,
        &[
            "ONBUILD COPY app.conf /etc/app.conf",
            "ONBUILD ENV BUILT=yes",
        ],
        &[],
    );
    assert_eq!(
        strings(&image.config()["OnBuild"]),
        ["COPY app.conf /etc/app.conf", "ENV BUILT=yes"]
    );
}

#[test]
fn maintainer_sets_the_author() {
    let env = TestEnv::new("maintainer");
    let image = build_with(&env, &["MAINTAINER Jane Doe <jane@example.com>"], &[]);
    assert_eq!(image.inspect()["Author"], "Jane Doe <jane@example.com>");
}

#[test]
fn arg_before_from_selects_the_base() {
    let env = TestEnv::new("arg-from");
    let ctx = Context::with_busybox();
    ctx.file("one.txt", "one\n").file("two.txt", "two\n");
    ctx.dockerfile(&[
        "ARG BASE=first",
        "FROM scratch AS first",
        "COPY busybox /bin/busybox",
        "COPY one.txt /which.txt",
        "FROM scratch AS second",
        "COPY busybox /bin/busybox",
        "COPY two.txt /which.txt",
        "FROM ${BASE}",
    ]);
    assert_eq!(env.build_and_load(&ctx, &[]).read("/which.txt"), "one\n");
    let overridden = env.build_and_load(&ctx, &["--build-arg", "BASE=second"]);
    assert_eq!(overridden.read("/which.txt"), "two\n");
}

#[test]
fn arg_defaults_are_per_stage_and_overridable() {
    let env = TestEnv::new("arg-stage");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&[
        "ARG GLOBAL=global-default",
        "FROM scratch AS first",
        "COPY busybox /bin/busybox",
        "ARG GLOBAL",
        "ARG LOCAL=first-default",
        "LABEL global=$GLOBAL local=$LOCAL",
        // A stage that neither redeclares GLOBAL nor descends from `first` sees neither ARG.
        "FROM scratch AS unrelated",
        "COPY busybox /bin/busybox",
        "LABEL unrelated=x${LOCAL}x${GLOBAL}x",
        // A stage built FROM `first` inherits the ARGs declared there.
        "FROM first",
        "LABEL child-local=$LOCAL",
    ]);
    let defaults = env.build(&ctx, &[]).archive().config();
    let labels = &defaults["config"]["Labels"];
    assert_eq!(labels["global"], "global-default", "{labels}");
    assert_eq!(labels["local"], "first-default", "{labels}");
    assert_eq!(labels["child-local"], "first-default", "{labels}");

    let overrides = ["--build-arg", "GLOBAL=g2", "--build-arg", "LOCAL=l2"];
    let overridden = env.build(&ctx, &overrides).archive().config();
    let labels = &overridden["config"]["Labels"];
    assert_eq!(labels["global"], "g2", "{labels}");
    assert_eq!(labels["local"], "l2", "{labels}");
    assert_eq!(labels["child-local"], "l2", "{labels}");

    let target = [
        "--target",
        "unrelated",
        "--build-arg",
        "GLOBAL=g2",
        "--build-arg",
        "LOCAL=l2",
    ];
    let unrelated = env.build(&ctx, &target).archive().config();
    let labels = &unrelated["config"]["Labels"];
    assert_eq!(
        labels["unrelated"], "xxx",
        "undeclared ARGs must stay unset: {labels}"
    );
}

#[test]
fn build_arg_without_value_comes_from_the_environment() {
    let env = TestEnv::new("arg-env");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&[
        SCRATCH_BUSYBOX[0],
        SCRATCH_BUSYBOX[1],
        "ARG FROM_ENV=default",
        "LABEL v=$FROM_ENV",
    ]);
    let reference = env.image_ref();
    let archive = env.path("image.tar");
    env.rbuild()
        .env("FROM_ENV", "from the environment")
        .args(["build", "--build-arg", "FROM_ENV", "-t", &reference, "-o"])
        .arg(&archive)
        .arg(ctx.path())
        .run()
        .assert_success();
    let image = Docker::get().load_as(&archive, &reference);
    assert_eq!(image.config()["Labels"]["v"], "from the environment");
}

#[test]
fn arg_values_never_reach_the_image_env() {
    let env = TestEnv::new("arg-not-env");
    let image = build_with(
        &env,
        &[
            "ARG SECRETISH=default-value",
            "ARG OTHER",
            "ENV VISIBLE=$SECRETISH",
        ],
        &["--build-arg", "OTHER=given"],
    );
    let vars = env_list(&image);
    assert!(
        vars.contains(&"VISIBLE=default-value".to_string()),
        "{vars:?}"
    );
    for var in &vars {
        assert!(
            !var.starts_with("SECRETISH=") && !var.starts_with("OTHER="),
            "ARG leaked into Env: {vars:?}"
        );
    }
}

#[test]
fn history_has_one_entry_per_instruction() {
    let env = TestEnv::new("history");
    let ctx = Context::with_busybox();
    ctx.file("app.txt", "app\n");
    ctx.dockerfile(&[
        "FROM scratch",
        "COPY busybox /bin/busybox",
        "ENV MODE=test",
        "COPY app.txt /app.txt",
        "LABEL stage=final",
        r#"CMD ["/bin/busybox", "cat", "/app.txt"]"#,
    ]);
    let built = env.build(&ctx, &[]);
    let config = built.archive().config();
    let history = config["history"].as_array().expect("config has a history");
    let created_by: Vec<&str> = history
        .iter()
        .map(|h| h["created_by"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        history.len(),
        5,
        "one entry per instruction after FROM: {created_by:?}"
    );
    let keywords = ["COPY", "ENV", "COPY", "LABEL", "CMD"];
    for (entry, keyword) in created_by.iter().zip(keywords) {
        assert!(
            entry.contains(keyword),
            "history {created_by:?}: expected {keyword} in {entry:?}"
        );
    }
    let empty: Vec<bool> = history
        .iter()
        .map(|h| h["empty_layer"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(
        empty,
        [false, true, false, true, true],
        "empty_layer flags of {created_by:?}"
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2)
    );

    // docker history lists the same instructions, newest first.
    let mut shown = built.load().history();
    shown.reverse();
    assert_eq!(shown.len(), 5, "docker history: {shown:?}");
    assert!(
        shown[1].contains("ENV") && shown[1].contains("MODE=test"),
        "{shown:?}"
    );
    assert!(shown[4].contains("CMD"), "docker history: {shown:?}");
}

/// A generated Dockerfile of 10,000 ENV and LABEL lines builds (each step costs about the same,
/// however many came before it), the image holds every variable, label and history entry, and a
/// rebuild is fully cached with the same image id.
#[test]
fn ten_thousand_metadata_steps_build_and_rebuild_cached() {
    const STEPS: usize = 10_000;
    let env = TestEnv::new("many-metadata-steps");
    let ctx = Context::new();
    let mut lines = vec!["FROM scratch".to_string()];
    lines.extend((0..STEPS).map(|i| match i % 2 {
        0 => format!("ENV V{i}=value{i}"),
        _ => format!("LABEL l{i}=v{i}"),
    }));
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    ctx.dockerfile(&lines);
    let first = env.build(&ctx, &[]);
    let config = first.archive().config();
    assert_eq!(config["config"]["Env"].as_array().unwrap().len(), STEPS / 2 + 1, "the variables and PATH");
    assert_eq!(config["config"]["Labels"].as_object().unwrap().len(), STEPS / 2);
    assert_eq!(config["config"]["Env"][1], "V0=value0");
    assert_eq!(config["config"]["Labels"][format!("l{}", STEPS - 1)], format!("v{}", STEPS - 1));
    assert_eq!(config["history"].as_array().unwrap().len(), STEPS);
    // rawjson lists config-only steps (the plain log leaves them out).
    let second = env.build(&ctx, &["--progress=rawjson"]);
    assert_eq!(second.archive().image_id(), first.archive().image_id(), "a fully cached rebuild");
    assert_eq!(second.output.stderr_text().matches(r#""event":"step_cached""#).count(), STEPS);
}
