//! Multi-stage builds: `COPY --from` by name and index, `FROM <stage>`, `--target`, stages that
//! nothing needs, images built earlier used as bases, and the example contexts.

use rbuild_e2e::{Context, TestEnv};

#[test]
fn copy_from_a_stage_by_name_and_by_index() {
    let env = TestEnv::new("copy-from");
    let ctx = Context::with_busybox();
    ctx.file("first.txt", "first\n")
        .file("second.txt", "second\n");
    ctx.dockerfile(&[
        "FROM scratch AS named",
        "COPY first.txt /out/first.txt",
        "FROM scratch",
        "COPY second.txt /out/second.txt",
        "FROM scratch",
        "COPY busybox /bin/busybox",
        "COPY --from=named /out/first.txt /by-name.txt",
        "COPY --from=1 /out/second.txt /by-index.txt",
    ]);
    let image = env.build_and_load(&ctx, &[]);
    assert_eq!(image.read("/by-name.txt"), "first\n");
    assert_eq!(image.read("/by-index.txt"), "second\n");
    // Only the final stage's own files are in the image.
    assert!(
        !image.try_busybox(&["test", "-e", "/out"]).status.success(),
        "/out leaked from another stage"
    );
}

#[test]
fn copy_from_brings_files_not_config() {
    let env = TestEnv::new("copy-from-config");
    let ctx = Context::with_busybox();
    ctx.file("data.txt", "data\n");
    ctx.dockerfile(&[
        "FROM scratch AS producer",
        "COPY data.txt /data.txt",
        "ENV FROM_PRODUCER=1",
        "LABEL producer=yes",
        "FROM scratch",
        "COPY busybox /bin/busybox",
        "COPY --from=producer /data.txt /data.txt",
    ]);
    let image = env.build_and_load(&ctx, &[]);
    let config = image.config();
    let env_vars = rbuild_e2e::strings(&config["Env"]);
    assert!(
        !env_vars.iter().any(|v| v.starts_with("FROM_PRODUCER=")),
        "{env_vars:?}"
    );
    assert!(
        config["Labels"].get("producer").is_none(),
        "{}",
        config["Labels"]
    );
    assert_eq!(image.read("/data.txt"), "data\n");
}

#[test]
fn from_a_stage_inherits_its_filesystem_and_config() {
    let env = TestEnv::new("from-stage");
    let ctx = Context::with_busybox();
    ctx.file("base.txt", "base\n").file("top.txt", "top\n");
    ctx.dockerfile(&[
        "FROM scratch AS base",
        "COPY busybox /bin/busybox",
        "COPY base.txt /base.txt",
        "ENV FROM_BASE=yes",
        "WORKDIR /srv",
        "FROM base AS app",
        "COPY top.txt top.txt",
    ]);
    let image = env.build_and_load(&ctx, &[]);
    assert_eq!(image.read("/base.txt"), "base\n");
    assert_eq!(image.read("/srv/top.txt"), "top\n");
    let config = image.config();
    assert!(rbuild_e2e::strings(&config["Env"]).contains(&"FROM_BASE=yes".to_string()));
    assert_eq!(config["WorkingDir"], "/srv");
}

#[test]
fn target_builds_only_up_to_that_stage() {
    let env = TestEnv::new("target");
    let ctx = Context::with_busybox();
    ctx.file("dev.txt", "dev\n").file("prod.txt", "prod\n");
    ctx.dockerfile(&[
        "FROM scratch AS dev",
        "COPY busybox /bin/busybox",
        "COPY dev.txt /which.txt",
        "FROM scratch AS prod",
        "COPY busybox /bin/busybox",
        "COPY prod.txt /which.txt",
        // Would fail if the build went on past the target.
        "FROM scratch AS broken",
        "COPY does-not-exist.txt /",
    ]);
    assert_eq!(
        env.build_and_load(&ctx, &["--target", "dev"])
            .read("/which.txt"),
        "dev\n"
    );
    assert_eq!(
        env.build_and_load(&ctx, &["--target", "prod"])
            .read("/which.txt"),
        "prod\n"
    );
}

#[test]
fn a_stage_nothing_needs_is_never_built() {
    let env = TestEnv::new("unused-stage");
    let ctx = Context::with_busybox();
    ctx.file("ok.txt", "ok\n");
    ctx.dockerfile(&[
        "FROM scratch AS unused",
        "COPY missing-file.txt /missing.txt",
        "FROM scratch",
        "COPY busybox /bin/busybox",
        "COPY ok.txt /ok.txt",
    ]);
    let image = env.build_and_load(&ctx, &[]);
    assert_eq!(image.read("/ok.txt"), "ok\n");
}

#[test]
fn a_needed_stage_that_fails_fails_the_build() {
    // The counterpart of `a_stage_nothing_needs_is_never_built`: the same broken stage, used.
    let env = TestEnv::new("needed-stage");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&[
        "FROM scratch AS needed",
        "COPY missing-file.txt /missing.txt",
        "FROM scratch",
        "COPY --from=needed /missing.txt /missing.txt",
    ]);
    let out = env.rbuild().arg("build").arg(ctx.path()).run();
    out.assert_code(1)
        .assert_stderr_contains("missing-file.txt");
}

#[test]
fn an_image_built_earlier_is_a_base_in_the_same_store() {
    let env = TestEnv::new("from-store");
    let base_tag = format!("rbuild-e2e-base-{}:1.0", rbuild_e2e::env::unique_suffix());
    let base = Context::with_busybox();
    base.file("base.txt", "from the base image\n");
    base.dockerfile(&[
        "FROM scratch",
        "COPY busybox /bin/busybox",
        "COPY base.txt /base.txt",
        "ENV BASE=1",
    ]);
    env.rbuild()
        .args(["build", "-t", &base_tag])
        .arg(base.path())
        .run()
        .assert_success();

    let app = Context::new();
    app.file("app.txt", "from the app\n");
    app.dockerfile(&[&format!("FROM {base_tag}"), "COPY app.txt /app.txt"]);
    let image = env.build_and_load(&app, &[]);
    assert_eq!(image.read("/base.txt"), "from the base image\n");
    assert_eq!(image.read("/app.txt"), "from the app\n");
    assert!(rbuild_e2e::strings(&image.config()["Env"]).contains(&"BASE=1".to_string()));
}

#[test]
fn hello_example_runs() {
    let env = TestEnv::new("example-hello");
    let image = env.build_and_load(&Context::example("hello"), &[]);
    assert_eq!(image.run(&[]), "hello from rbuild\n");
    assert_eq!(
        image.run(&["cat", "/etc/greeting.txt"]),
        "Greetings from a file copied by rbuild.\n"
    );
    assert_eq!(
        image.config()["Labels"]["org.opencontainers.image.title"],
        "hello"
    );
}

#[test]
fn multistage_example_runs_and_its_docs_stage_is_a_target() {
    let env = TestEnv::new("example-multistage");
    let ctx = Context::example("multistage");
    let image = env.build_and_load(&ctx, &[]);
    assert_eq!(
        image.run(&[]),
        "index: assembled by the assets stage\nnotes: copied with COPY --from=assets\nversion 1.0\n"
    );
    // The docs stage is not part of the default build: its file is not in the image.
    assert!(!image
        .try_busybox(&["test", "-e", "/usr/share/doc"])
        .status
        .success());

    let docs = env.path("docs");
    env.rbuild()
        .args(["build", "--target", "docs", "-o"])
        .arg(format!("type=local,dest={}", docs.display()))
        .arg(ctx.path())
        .run()
        .assert_success();
    let readme = std::fs::read_to_string(docs.join("usr/share/doc/multistage/README.md")).unwrap();
    assert!(readme.starts_with("# multistage"), "{readme}");
}
