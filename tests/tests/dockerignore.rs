//! `.dockerignore`: exclusions, `!` exceptions, `**`, and the `<Dockerfile>.dockerignore` file
//! that takes precedence for a Dockerfile given with `-f`.

use rbuild_e2e::{Context, LoadedImage, TestEnv, SCRATCH_BUSYBOX};

/// A context with files to include and exclude, copied whole to `/ctx` by its Dockerfile.
fn context_with_files() -> Context {
    let ctx = Context::with_busybox();
    ctx.file("app.txt", "app\n")
        .file("debug.log", "log\n")
        .file("keep.log", "kept\n")
        .file("secrets/key", "key\n")
        .file("src/main.txt", "main\n")
        .file("src/deep/cache.tmp", "tmp\n")
        .file("build.tmp", "tmp\n")
        .file("docs/a.md", "a\n")
        .file("docs/b.md", "b\n");
    ctx.dockerfile(&[SCRATCH_BUSYBOX[0], SCRATCH_BUSYBOX[1], "COPY . /ctx/"]);
    ctx
}

/// The files under /ctx in the image, relative and sorted.
fn copied_files(image: &LoadedImage) -> Vec<String> {
    let mut files: Vec<String> = image
        .busybox(&["find", "/ctx", "-type", "f"])
        .lines()
        .map(|l| l.trim_start_matches("/ctx/").to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn exclusions_exceptions_and_double_star() {
    let env = TestEnv::new("dockerignore");
    let ctx = context_with_files();
    ctx.file(
        ".dockerignore",
        "# comments and blank lines are ignored\n\n*.log\n!keep.log\nsecrets\n**/*.tmp\ndocs/*.md\n!docs/b.md\n",
    );
    let image = env.build_and_load(&ctx, &[]);
    assert_eq!(
        copied_files(&image),
        [
            ".dockerignore",
            "Dockerfile",
            "app.txt",
            "busybox",
            "docs/b.md",
            "keep.log",
            "src/main.txt"
        ]
    );
}

#[test]
fn an_ignored_file_is_a_missing_source() {
    let env = TestEnv::new("dockerignore-missing");
    let ctx = Context::with_busybox();
    ctx.file("hidden.txt", "hidden\n")
        .file(".dockerignore", "hidden.txt\n");
    ctx.dockerfile(&[
        SCRATCH_BUSYBOX[0],
        SCRATCH_BUSYBOX[1],
        "COPY hidden.txt /hidden.txt",
    ]);
    let out = env.rbuild().arg("build").arg(ctx.path()).run();
    out.assert_code(1)
        .assert_stderr_contains("hidden.txt")
        .assert_stderr_contains("Dockerfile:3");
}

#[test]
fn dockerfile_specific_ignore_file_takes_precedence() {
    let env = TestEnv::new("dockerignore-specific");
    let ctx = context_with_files();
    // The generic file would drop app.txt; the Dockerfile's own file drops only *.log.
    ctx.file(".dockerignore", "app.txt\n");
    ctx.dockerfile_at(
        "build/App.Dockerfile",
        &[SCRATCH_BUSYBOX[0], SCRATCH_BUSYBOX[1], "COPY . /ctx/"],
    );
    ctx.file("build/App.Dockerfile.dockerignore", "*.log\nbuild\n");
    let dockerfile = ctx.join("build/App.Dockerfile");
    let image = env.build_and_load(&ctx, &["-f", dockerfile.to_str().unwrap()]);
    let files = copied_files(&image);
    assert!(files.contains(&"app.txt".to_string()), "{files:?}");
    assert!(!files.iter().any(|f| f.ends_with(".log")), "{files:?}");
    assert!(!files.iter().any(|f| f.starts_with("build/")), "{files:?}");
}

#[test]
fn generic_ignore_file_applies_to_the_default_dockerfile() {
    let env = TestEnv::new("dockerignore-generic");
    let ctx = context_with_files();
    ctx.file(".dockerignore", "app.txt\n");
    // A Dockerfile-specific file for another Dockerfile has no say here.
    ctx.file("Other.Dockerfile.dockerignore", "src\n");
    let files = copied_files(&env.build_and_load(&ctx, &[]));
    assert!(!files.contains(&"app.txt".to_string()), "{files:?}");
    assert!(files.contains(&"src/main.txt".to_string()), "{files:?}");
}

/// A COPY source that is in the context directory but left out by `.dockerignore` says so, with
/// the pattern and the file, instead of "not found"; a source that is not there at all is still
/// "not found".
#[test]
fn a_copy_source_left_out_by_dockerignore_names_the_pattern() {
    let env = TestEnv::new("dockerignore-explains");
    let ctx = Context::with_busybox();
    ctx.file(".dockerignore", "# secrets\nconfig/\n*.log\n!keep.log\n");
    ctx.file("config/app.conf", "x");
    ctx.file("debug.log", "x");
    for (source, expected) in [
        ("config/app.conf", "source \"config/app.conf\" is excluded from the build context by the pattern \"config/\" in "),
        ("./debug.log", "source \"./debug.log\" is excluded from the build context by the pattern \"*.log\""),
        ("missing.txt", "source \"missing.txt\" not found"),
    ] {
        let copy = format!("COPY {source} /");
        ctx.dockerfile(&["FROM scratch", &copy]);
        let out = env.rbuild().arg("build").arg(ctx.path()).run();
        out.assert_code(1).assert_stderr_contains("Dockerfile:2").assert_stderr_contains(expected);
        if source != "missing.txt" {
            out.assert_stderr_contains(".dockerignore");
        }
    }
}
