//! The store commands: `images`, `tag`, `history`, `save`, `load`, `rmi`, `du` and `prune`,
//! checked against what Docker shows for the same images, with archives going both ways
//! between rbuild's store and the Docker daemon.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rbuild_e2e::archive::is_gzip;
use rbuild_e2e::sandbox::{processes_with, sleep_marker, with_shell};
use rbuild_e2e::store::{
    build_id, disk_usage, du_number, images_table, parse_table, rbuild_ok, repository,
    save_into_docker,
};
use rbuild_e2e::{Archive, Context, Docker, TestEnv, SCRATCH_BUSYBOX};

/// busybox, a message file and a CMD that prints it; `payload` bytes of filler make sizes differ.
fn app_context(message: &str, payload: usize) -> Context {
    let ctx = Context::with_busybox();
    ctx.file("message.txt", format!("{message}\n"));
    ctx.file("payload.bin", noise(message, payload));
    ctx.dockerfile(&[
        SCRATCH_BUSYBOX[0],
        SCRATCH_BUSYBOX[1],
        "COPY message.txt payload.bin /etc/",
        "ENV GREETING=hello",
        r#"CMD ["/bin/busybox", "cat", "/etc/message.txt"]"#,
    ]);
    ctx
}

/// `len` bytes that do not compress, different for each `seed`.
fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        let hex = rbuild_e2e::archive::sha256_hex(format!("{seed}/{i}").as_bytes());
        out.extend((0..32).map(|b| u8::from_str_radix(&hex[2 * b..2 * b + 2], 16).unwrap()));
        i += 1;
    }
    out.truncate(len);
    out
}

fn short(id: &str) -> &str {
    &id["sha256:".len().."sha256:".len() + 12]
}

fn column(rows: &[BTreeMap<String, String>], name: &str) -> Vec<String> {
    rows.iter().map(|r| r[name].clone()).collect()
}

#[test]
fn images_lists_every_tag_and_untagged_images_newest_first_sized_like_docker() {
    let env = TestEnv::new("images_lists");
    let repo = repository(&env);
    let tagged = build_id(
        &env,
        &app_context("tagged", 300_000),
        Some(&format!("{repo}:1")),
        &[],
    );
    rbuild_ok(&env, &["tag", &format!("{repo}:1"), &format!("{repo}:2")]);
    // One second apart, so "newest first" has an order to check.
    std::thread::sleep(Duration::from_millis(1100));
    let untagged = build_id(&env, &app_context("untagged", 10_000), None, &[]);

    let rows = images_table(&env);
    assert_eq!(
        column(&rows, "REPOSITORY"),
        vec!["<none>".to_string(), repo.clone(), repo.clone()]
    );
    assert_eq!(column(&rows, "TAG"), vec!["<none>", "1", "2"]);
    assert_eq!(
        column(&rows, "IMAGE ID"),
        vec![short(&untagged), short(&tagged), short(&tagged)]
    );
    for created in column(&rows, "CREATED") {
        assert!(created.ends_with(" ago"), "{created}");
    }

    // Docker shows the same size for the same image.
    let loaded = Docker::get().adopt(&format!("{repo}:1"));
    save_into_docker(&env, &[&format!("{repo}:1")]);
    let docker_size = Docker::get().ok(&["images", "--format", "{{.Size}}", loaded.reference()]);
    assert_eq!(rows[1]["SIZE"], docker_size.trim());
    assert_eq!(loaded.id(), tagged);

    let quiet = rbuild_ok(&env, &["images", "-q"]);
    assert_eq!(
        quiet,
        format!(
            "{}\n{}\n{}\n",
            short(&untagged),
            short(&tagged),
            short(&tagged)
        )
    );
    let full = parse_table(&rbuild_ok(&env, &["images", "--no-trunc", &repo]));
    assert_eq!(
        column(&full, "IMAGE ID"),
        vec![tagged.clone(), tagged.clone()]
    );
    let one = parse_table(&rbuild_ok(&env, &["images", &format!("{repo}:2")]));
    assert_eq!(column(&one, "TAG"), vec!["2"]);
}

#[test]
fn tag_needs_an_image_that_is_there() {
    let env = TestEnv::new("tag_needs");
    let out = env
        .rbuild()
        .args(["tag", "rbuild-e2e/nothing:1", "rbuild-e2e/other:1"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("No such image: rbuild-e2e/nothing:1");
    let out = env.rbuild().args(["tag", "a", "Not/Valid"]).run();
    out.assert_code(2)
        .assert_stderr_contains("invalid reference format");
}

#[test]
fn history_shows_what_docker_history_shows() {
    let env = TestEnv::new("history_shows");
    let repo = repository(&env);
    let ctx = app_context("history", 5_000);
    let id = build_id(&env, &ctx, Some(&format!("{repo}:1")), &[]);
    let loaded = Docker::get().adopt(&format!("{repo}:1"));
    save_into_docker(&env, &[&format!("{repo}:1")]);

    // The default (truncated) tables agree cell for cell, times aside.
    let ours = parse_table(&rbuild_ok(&env, &["history", &format!("{repo}:1")]));
    let theirs = parse_table(&Docker::get().ok(&["history", loaded.reference()]));
    let without_times = |rows: &[BTreeMap<String, String>]| -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| {
                ["IMAGE", "CREATED BY", "SIZE", "COMMENT"]
                    .iter()
                    .map(|c| r[*c].clone())
                    .collect()
            })
            .collect()
    };
    assert_eq!(without_times(&ours), without_times(&theirs));
    assert_eq!(ours.len(), 4, "COPY busybox, COPY, ENV, CMD");
    assert_eq!(ours[0]["IMAGE"], short(&id));
    assert_eq!(ours[1]["IMAGE"], "<missing>");

    let full = parse_table(&rbuild_ok(
        &env,
        &["history", "--no-trunc", "-H=false", &format!("{repo}:1")],
    ));
    assert_eq!(full[0]["IMAGE"], id);
    assert_eq!(
        full[2]["SIZE"],
        (5_000 + "history\n".len()).to_string(),
        "{full:?}"
    );
    assert!(full[0]["CREATED AT"].ends_with('Z'), "{full:?}");
    let quiet = rbuild_ok(&env, &["history", "-q", &format!("{repo}:1")]);
    assert_eq!(
        quiet.lines().collect::<Vec<_>>(),
        vec![short(&id), "<missing>", "<missing>", "<missing>"]
    );
}

#[test]
fn save_pipes_several_images_into_docker_load_and_they_run() {
    let env = TestEnv::new("save_pipes");
    let repo = repository(&env);
    let (one, two) = (format!("{repo}:one"), format!("{repo}:two"));
    build_id(&env, &app_context("first image", 1_000), Some(&one), &[]);
    build_id(&env, &app_context("second image", 1_000), Some(&two), &[]);
    let _cleanup = (Docker::get().adopt(&one), Docker::get().adopt(&two));

    let said = save_into_docker(&env, &[&one, &two]);
    assert!(said.contains(&format!("Loaded image: {one}")), "{said}");
    assert!(said.contains(&format!("Loaded image: {two}")), "{said}");
    assert_eq!(
        Docker::get().run(&[], &one, &[]).stdout_text(),
        "first image\n"
    );
    assert_eq!(
        Docker::get().run(&[], &two, &[]).stdout_text(),
        "second image\n"
    );

    // -o x.tar.gz gzips the whole archive, which docker loads as well.
    let gz = env.path("both.tar.gz");
    rbuild_ok(&env, &["save", "-o", gz.to_str().unwrap(), &one, &two]);
    assert!(is_gzip(&std::fs::read(&gz).unwrap()));
    let archive = Archive::open(&gz);
    let entries = archive.json("manifest.json");
    let tags: Vec<_> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["RepoTags"].clone())
        .collect();
    assert_eq!(
        tags,
        vec![serde_json::json!([one]), serde_json::json!([two])]
    );
    Docker::get().ok(&["rmi", &one, &two]);
    Docker::get().load(&gz);
    assert_eq!(
        Docker::get().run(&[], &two, &[]).stdout_text(),
        "second image\n"
    );

    // By id, an image goes without a name, as with `docker save`.
    let id = rbuild_ok(&env, &["images", "-q", &one]);
    let by_id = env.path("by-id.tar");
    rbuild_ok(&env, &["save", "-o", by_id.to_str().unwrap(), id.trim()]);
    assert_eq!(
        Archive::open(&by_id).docker_manifest()["RepoTags"],
        serde_json::json!([])
    );

    let out = env
        .rbuild()
        .args(["save", "-o", "x.tar", "rbuild-e2e/nothing:1"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("No such image: rbuild-e2e/nothing:1");
    assert!(
        !env.path("x.tar").exists(),
        "a failed save leaves no archive"
    );
}

#[test]
fn load_takes_a_docker_save_archive_into_a_fresh_store_to_build_from() {
    let builder = TestEnv::new("load_takes_builder");
    let repo = repository(&builder);
    let base = format!("{repo}:base");
    let ctx = Context::with_busybox();
    ctx.file("base.txt", "from the base\n");
    ctx.dockerfile(&with_shell(&["COPY base.txt /etc/base.txt"]));
    let base_id = build_id(&builder, &ctx, Some(&base), &[]);
    let _base_in_docker = Docker::get().adopt(&base);
    save_into_docker(&builder, &[&base]);
    // The real daemon's own `docker save` archive (Docker 20.10: uncompressed layer.tar files).
    let docker_archive = builder.path("docker-save.tar");
    Docker::get().ok(&["save", "-o", docker_archive.to_str().unwrap(), &base]);

    let fresh = TestEnv::new("load_takes_fresh");
    let said = rbuild_ok(&fresh, &["load", "-i", docker_archive.to_str().unwrap()]);
    assert_eq!(said, format!("Loaded image: {base}\n"));
    let rows = images_table(&fresh);
    assert_eq!(column(&rows, "IMAGE ID"), vec![short(&base_id)]);

    let child = Context::new();
    child.file("child.txt", "from the child\n");
    child.dockerfile(&[
        &format!("FROM {base}"),
        "COPY child.txt /etc/child.txt",
        "RUN cat /etc/base.txt /etc/child.txt > /etc/both.txt",
    ]);
    let child_ref = format!("{repo}:child");
    build_id(&fresh, &child, Some(&child_ref), &[]);
    let _child_in_docker = Docker::get().adopt(&child_ref);
    save_into_docker(&fresh, &[&child_ref]);
    let out = Docker::get().run(&[], &child_ref, &["cat", "/etc/both.txt"]);
    assert_eq!(
        out.stdout_text(),
        "from the base\nfrom the child\n",
        "{}",
        out.describe()
    );

    // From stdin too, and rbuild's own OCI archives.
    let stdin_store = TestEnv::new("load_takes_stdin");
    let out = stdin_store
        .rbuild()
        .arg("load")
        .stdin(std::fs::read(&docker_archive).unwrap())
        .run();
    out.assert_success();
    assert_eq!(out.stdout_text(), format!("Loaded image: {base}\n"));
    let oci = builder.path("base.oci.tar");
    rbuild_ok(
        &builder,
        &[
            "build",
            "-q",
            "-t",
            &base,
            "-o",
            &format!("type=oci,dest={}", oci.display()),
            ctx.path().to_str().unwrap(),
        ],
    );
    let oci_store = TestEnv::new("load_takes_oci");
    let said = rbuild_ok(&oci_store, &["load", "-i", oci.to_str().unwrap()]);
    assert!(said.starts_with("Loaded image"), "{said}");
    assert_eq!(images_table(&oci_store).len(), 1);

    let out = fresh
        .rbuild()
        .args(["load", "-i", ctx.join("base.txt").to_str().unwrap()])
        .run();
    out.assert_code(1).assert_stderr_contains("base.txt");
}

#[test]
fn rmi_untags_then_deletes_and_frees_the_space() {
    let env = TestEnv::new("rmi_untags");
    let repo = repository(&env);
    let (one, two) = (format!("{repo}:1"), format!("{repo}:2"));
    let id = build_id(&env, &app_context("to remove", 400_000), Some(&one), &[]);
    rbuild_ok(&env, &["tag", &one, &two]);
    let before = disk_usage(&env);
    assert_eq!(du_number(&before, "Images", "TotalCount"), 1);

    // By id, an image with two tags needs -f.
    let out = env.rbuild().args(["rmi", short(&id)]).run();
    out.assert_code(1).assert_stderr_contains(&format!(
        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
        short(&id)
    ));
    assert_eq!(
        rbuild_ok(&env, &["rmi", &one]),
        format!("Untagged: {one}\n")
    );
    assert_eq!(column(&images_table(&env), "TAG"), vec!["2"]);
    assert_eq!(
        disk_usage(&env)["Images"]["SizeBytes"],
        before["Images"]["SizeBytes"]
    );

    // The last name takes the image and its content along; an unknown name fails but does not
    // stop the others.
    let out = env
        .rbuild()
        .args(["rmi", "rbuild-e2e/nothing:1", short(&id)])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("No such image: rbuild-e2e/nothing:1");
    assert_eq!(
        out.stdout_text(),
        format!("Untagged: {two}\nDeleted: {id}\n")
    );
    assert!(images_table(&env).is_empty());
    // What the image alone used is gone; what the step cache still names (its layers) is now
    // all reclaimable, and prune frees it.
    let after = disk_usage(&env);
    assert_eq!(du_number(&after, "Images", "TotalCount"), 0);
    assert_eq!(du_number(&after, "Images", "SizeBytes"), 0);
    for kind in ["Build cache", "Snapshots", "Unreferenced blobs"] {
        assert_eq!(
            du_number(&after, kind, "ReclaimableBytes"),
            du_number(&after, kind, "SizeBytes"),
            "{kind}: {after:?}"
        );
    }
    rbuild_ok(&env, &["prune"]);
    let pruned = disk_usage(&env);
    assert_eq!(du_number(&pruned, "Snapshots", "SizeBytes"), 0, "{pruned:?}");
    assert!(
        du_number(&pruned, "Total", "SizeBytes") + 400_000
            < du_number(&before, "Total", "SizeBytes"),
        "before {before:?}\nafter {pruned:?}"
    );

    let id = build_id(&env, &app_context("forced", 1_000), Some(&one), &[]);
    rbuild_ok(&env, &["tag", &one, &two]);
    assert_eq!(
        rbuild_ok(&env, &["rmi", "-f", short(&id)]),
        format!("Untagged: {one}\nUntagged: {two}\nDeleted: {id}\n")
    );
}

#[test]
fn du_and_prune_keep_tagged_images_and_free_the_rest() {
    let env = TestEnv::new("du_and_prune");
    let repo = repository(&env);
    let kept = format!("{repo}:kept");
    build_id(&env, &app_context("kept", 200_000), Some(&kept), &[]);
    let untagged = build_id(&env, &app_context("untagged", 300_000), None, &[]);
    let usage = disk_usage(&env);
    assert_eq!(du_number(&usage, "Images", "TotalCount"), 2);
    assert_eq!(du_number(&usage, "Images", "Active"), 1);
    assert!(
        du_number(&usage, "Images", "ReclaimableBytes") > 300_000,
        "{usage:?}"
    );
    assert!(
        du_number(&usage, "Snapshots", "ReclaimableBytes") >= 300_000,
        "{usage:?}"
    );
    let table = rbuild_ok(&env, &["du"]);
    let rows = parse_table(table.split("\n\n").next().unwrap());
    assert_eq!(
        column(&rows, "TYPE"),
        vec![
            "Images",
            "Build cache",
            "Snapshots",
            "Unreferenced blobs",
            "Kept failures",
            "Temp",
            "Cache mounts"
        ]
    );
    assert!(
        table.contains(&format!("in {}", env.store().display())),
        "{table}"
    );

    let said = rbuild_ok(&env, &["prune"]);
    assert!(
        said.starts_with(&format!("Deleted Images:\ndeleted: {untagged}\n")),
        "{said}"
    );
    assert!(said.contains("Total reclaimed space: "), "{said}");
    let after = disk_usage(&env);
    for kind in ["Images", "Build cache", "Snapshots", "Unreferenced blobs"] {
        assert_eq!(
            du_number(&after, kind, "ReclaimableBytes"),
            0,
            "{kind}: {after:?}"
        );
    }
    assert!(
        du_number(&after, "Total", "SizeBytes") + 600_000 < du_number(&usage, "Total", "SizeBytes")
    );
    assert_eq!(column(&images_table(&env), "TAG"), vec!["kept"]);

    // The kept image is whole: it builds on, and it runs in Docker.
    let child = Context::new();
    child.dockerfile(&[&format!("FROM {kept}"), "ENV MORE=1"]);
    build_id(&env, &child, None, &[]);
    let _in_docker = Docker::get().adopt(&kept);
    save_into_docker(&env, &[&kept]);
    assert_eq!(Docker::get().run(&[], &kept, &[]).stdout_text(), "kept\n");

    rbuild_ok(&env, &["prune", "--all"]);
    assert!(images_table(&env).is_empty());
    let empty = disk_usage(&env);
    assert_eq!(du_number(&empty, "Images", "TotalCount"), 0);
    assert!(
        du_number(&empty, "Total", "SizeBytes") < 10_000,
        "{empty:?}"
    );
}

#[test]
fn prune_keep_storage_removes_the_least_recently_used_first() {
    let env = TestEnv::new("prune_keep_storage");
    let old = build_id(&env, &app_context("old", 300_000), None, &[]);
    std::thread::sleep(Duration::from_millis(50));
    let new = build_id(&env, &app_context("new", 300_000), None, &[]);
    let total = du_number(&disk_usage(&env), "Total", "SizeBytes");
    let said = rbuild_ok(&env, &["prune", "--keep-storage", &(total - 1).to_string()]);
    assert!(said.contains(&format!("deleted: {old}")), "{said}");
    assert!(!said.contains(&new), "{said}");
    assert_eq!(column(&images_table(&env), "IMAGE ID"), vec![short(&new)]);
    assert!(du_number(&disk_usage(&env), "Total", "SizeBytes") <= total - 300_000);

    let out = env.rbuild().args(["prune", "--keep-storage", "lots"]).run();
    out.assert_code(2).assert_stderr_contains("invalid size");
}

#[test]
fn prune_spares_what_a_running_build_uses() {
    let env = TestEnv::new("prune_spares");
    let repo = repository(&env);
    let base = format!("{repo}:base");
    let base_ctx = Context::with_busybox();
    base_ctx.dockerfile(&with_shell(&[]));
    let base_id = build_id(&env, &base_ctx, Some(&base), &[]);

    // A build from the base, held in a RUN while `prune --all` runs.
    let marker = sleep_marker().replacen("30.", "3.", 1);
    let ctx = Context::new();
    ctx.dockerfile(&[
        &format!("FROM {base}"),
        &format!("RUN sleep {marker} && echo built > /done"),
    ]);
    let result = format!("{repo}:result");
    let mut build = env
        .rbuild()
        .args(["build", "-q", "-t", &result])
        .arg(ctx.path())
        .into_command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the build");
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes_with(&marker).is_empty() {
        assert!(Instant::now() < deadline, "the build's RUN never started");
        assert!(
            build.try_wait().unwrap().is_none(),
            "the build ended before its RUN"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let said = rbuild_ok(&env, &["prune", "--all"]);
    assert!(
        !said.contains(&base_id),
        "prune removed the base of a running build:\n{said}"
    );
    assert_eq!(column(&images_table(&env), "TAG"), vec!["base"]);
    let output = build.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let _in_docker = Docker::get().adopt(&result);
    save_into_docker(&env, &[&result]);
    assert_eq!(
        Docker::get()
            .run(&[], &result, &["cat", "/done"])
            .stdout_text(),
        "built\n"
    );
    // With the build gone, nothing holds the base any more.
    let said = rbuild_ok(&env, &["prune", "--all"]);
    assert!(said.contains(&format!("deleted: {base_id}")), "{said}");
    assert!(images_table(&env).is_empty());
}

/// `rbuild prune` on a terminal says what it removes and asks, as docker's prune does; `n`
/// keeps everything, `y` prunes, `-f` does not ask, and without a terminal nobody is asked.
#[test]
fn prune_asks_on_a_terminal_unless_forced() {
    let env = TestEnv::new("prune-asks");
    let untagged = build_id(&env, &app_context("untagged", 1_000), None, &[]);
    let ids = |env: &TestEnv| rbuild_ok(env, &["images", "-q", "--no-trunc"]);
    // `script` runs the command on a pseudo-terminal, with our stdin as its keyboard.
    let on_terminal = |args: &str, answer: &str| {
        let command = format!("{} {args}", rbuild_e2e::rbuild_bin().display());
        let mut child = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("RBUILD_ROOT", env.store())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running script (util-linux)");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(answer.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = on_terminal("prune", "n\n");
    assert!(said.contains("WARNING! This will remove:") && said.contains("[y/N]"), "{said}");
    assert!(!said.contains("Total reclaimed space"), "{said}");
    assert!(ids(&env).contains(&untagged), "answered no, the untagged image stays");

    let said = on_terminal("prune", "y\n");
    assert!(said.contains("Total reclaimed space"), "{said}");
    assert!(!ids(&env).contains(&untagged), "answered yes, the untagged image went");

    build_id(&env, &app_context("again", 1_000), None, &[]);
    let said = on_terminal("prune -f", "");
    assert!(!said.contains("[y/N]") && said.contains("Total reclaimed space"), "{said}");
    // No terminal: no question (scripts and CI jobs).
    let again = build_id(&env, &app_context("third", 1_000), None, &[]);
    let out = env.rbuild().arg("prune").run();
    out.assert_success();
    assert!(!out.stderr_text().contains("[y/N]"));
    assert!(!ids(&env).contains(&again));
}

/// `rbuild inspect ARGS…` parsed: the array it prints.
#[track_caller]
fn inspect(env: &TestEnv, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["inspect"];
    all.extend_from_slice(args);
    serde_json::from_str(&rbuild_ok(env, &all)).expect("inspect prints a JSON array")
}

/// Each line of `text` parsed as a JSON object.
#[track_caller]
fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

#[test]
fn inspect_shows_what_docker_image_inspect_shows() {
    let env = TestEnv::new("inspect_shows");
    let repo = repository(&env);
    let (one, two) = (format!("{repo}:1"), format!("{repo}:2"));
    let id = build_id(&env, &app_context("inspected", 5_000), Some(&one), &[]);
    rbuild_ok(&env, &["tag", &one, &two]);

    let objects = inspect(&env, &[&one]);
    assert_eq!(objects.len(), 1, "{objects:?}");
    let image = &objects[0];
    assert_eq!(image["Id"], id);
    assert_eq!(image["RepoTags"], serde_json::json!([one, two]));
    assert_eq!(image["RepoDigests"], serde_json::json!([]));
    assert_eq!(
        image["Config"]["Cmd"],
        serde_json::json!(["/bin/busybox", "cat", "/etc/message.txt"])
    );
    assert!(
        image["Config"]["Env"].as_array().unwrap().contains(&"GREETING=hello".into()),
        "{image}"
    );
    assert_eq!(image["RootFS"]["Type"], "layers");
    let diff_ids = image["RootFS"]["Layers"].as_array().unwrap();
    assert_eq!(diff_ids.len(), 2, "COPY busybox and COPY message.txt: {image}");
    let layers = image["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        assert_eq!(&layer["DiffID"], diff_id);
        assert!(layer["Digest"].as_str().unwrap().starts_with("sha256:"), "{layer}");
        assert!(layer["MediaType"].as_str().unwrap().starts_with("application/vnd.oci.image.layer.v1.tar"));
        assert!(layer["Size"].as_u64().unwrap() > 0);
    }
    // The size `rbuild images` shows: the sum of the layers' sizes `history` shows.
    let sizes = rbuild_ok(&env, &["history", "-H=false", "--format", "{{.Size}}", &one]);
    let total: u64 = sizes.lines().map(|s| s.parse::<u64>().unwrap()).sum();
    assert_eq!(image["Size"], total);
    let manifest = image["ManifestDigest"].as_str().unwrap();
    assert!(manifest.starts_with("sha256:") && manifest != id, "{manifest}");

    // By id, short id and name@digest it is the same image.
    for name in [id.as_str(), short(&id), &format!("{repo}@{manifest}")] {
        assert_eq!(&inspect(&env, &[name])[0], image, "{name}");
    }
    // Docker, given the image, sees the same id, layers, platform and config.
    let loaded = Docker::get().adopt(&one);
    save_into_docker(&env, &[&one]);
    let theirs = loaded.inspect();
    for key in ["Id", "RootFS", "Architecture", "Os", "Created"] {
        assert_eq!(image[key], theirs[key], "{key}");
    }
    for key in ["Cmd", "Env", "WorkingDir"] {
        assert_eq!(image["Config"][key], theirs["Config"][key], "Config.{key}");
    }

    // A template applies to each image.
    let formatted = rbuild_ok(
        &env,
        &["inspect", "--format", "{{.Id}} {{json .RepoTags}} {{.Os}}", &one, short(&id)],
    );
    let line = format!("{id} {} linux\n", serde_json::json!([one, two]));
    assert_eq!(formatted, format!("{line}{line}"));

    // An unknown image fails (exit 1) but the others are still printed.
    let out = env.rbuild().args(["inspect", &one, "rbuild-e2e/nothing:1"]).run();
    out.assert_code(1)
        .assert_stderr_contains("No such image: rbuild-e2e/nothing:1");
    let printed: Vec<serde_json::Value> = serde_json::from_str(&out.stdout_text()).unwrap();
    assert_eq!(printed.len(), 1);
    assert_eq!(printed[0]["Id"], id);
    let out = env.rbuild().args(["inspect", "--format", "{{.Config.Cmd}}", &one]).run();
    out.assert_code(2).assert_stderr_contains("the fields are .Id, .RepoTags");
}

#[test]
fn format_prints_json_lines_or_a_template_for_images_history_and_du() {
    let env = TestEnv::new("format_prints");
    let repo = repository(&env);
    let one = format!("{repo}:1");
    let id = build_id(&env, &app_context("formatted", 2_000), Some(&one), &[]);
    build_id(&env, &app_context("untagged", 3_000), None, &[]);

    // images: one object per row, the table's cells under Docker's keys.
    let table = images_table(&env);
    let rows = json_lines(&rbuild_ok(&env, &["images", "--format", "json"]));
    assert_eq!(rows.len(), 2);
    for (row, cells) in rows.iter().zip(&table) {
        let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["CreatedAt", "CreatedSince", "ID", "Platform", "Repository", "Size", "Tag"]);
        assert_eq!(row["Platform"], cells["PLATFORM"]);
        assert_eq!(row["Repository"], cells["REPOSITORY"]);
        assert_eq!(row["Tag"], cells["TAG"]);
        assert_eq!(row["ID"], cells["IMAGE ID"]);
        assert_eq!(row["Size"], cells["SIZE"]);
        assert!(row["CreatedAt"].as_str().unwrap().ends_with('Z'), "{row}");
        assert!(row["CreatedSince"].as_str().unwrap().ends_with(" ago"), "{row}");
    }
    assert_eq!(
        rbuild_ok(&env, &["images", "--format", "{{.Repository}}:{{.Tag}}", &repo]),
        format!("{one}\n")
    );
    let with_header = rbuild_ok(&env, &["images", "--no-trunc", "--format", r"table {{.ID}}\t{{.Tag}}", &repo]);
    let parsed = parse_table(&with_header);
    assert_eq!(parsed.len(), 1, "{with_header}");
    assert_eq!(parsed[0]["IMAGE ID"], id);
    assert_eq!(parsed[0]["TAG"], "1");

    // history: the same rows as the table.
    let table = parse_table(&rbuild_ok(&env, &["history", &one]));
    let rows = json_lines(&rbuild_ok(&env, &["history", "--format", "json", &one]));
    assert_eq!(rows.len(), table.len());
    assert_eq!(rows.len(), 4);
    for (row, cells) in rows.iter().zip(&table) {
        assert_eq!(row["ID"], cells["IMAGE"]);
        assert_eq!(row["CreatedBy"], cells["CREATED BY"]);
        assert_eq!(row["Size"], cells["SIZE"]);
        assert!(row["CreatedSince"].as_str().unwrap().ends_with(" ago"), "{row}");
        assert_eq!(row["Comment"], cells["COMMENT"]);
    }
    assert_eq!(rows[0]["ID"], short(&id));
    let full = parse_table(&rbuild_ok(&env, &["history", "--no-trunc", &one]));
    let created_by = rbuild_ok(&env, &["history", "--no-trunc", "--format", "{{json .CreatedBy}}", &one]);
    assert_eq!(json_lines(&created_by)[0], full[0]["CREATED BY"].as_str());
    assert!(full[0]["CREATED BY"].contains("/etc/message.txt"), "{full:?}");

    // du: json as before (the harness reads it), and templates over its rows.
    let usage = disk_usage(&env);
    let sizes = rbuild_ok(&env, &["du", "--format", "{{.Type}}={{.SizeBytes}}"]);
    let sizes: Vec<(String, u64)> = sizes
        .lines()
        .map(|l| {
            let (kind, bytes) = l.rsplit_once('=').unwrap();
            (kind.to_string(), bytes.parse().unwrap())
        })
        .collect();
    assert_eq!(sizes.len(), 7, "{sizes:?}");
    assert_eq!(sizes[0].0, "Images");
    for (kind, bytes) in &sizes {
        if kind != "Temp" {
            assert_eq!(*bytes, du_number(&usage, kind, "SizeBytes"), "{kind}");
        }
    }
    let whole = json_lines(&rbuild_ok(&env, &["du", "--format", "{{json .}}"]));
    assert_eq!(whole[1]["Type"], "Build cache");
    assert_eq!(whole[1]["TotalCount"], usage["Build cache"]["TotalCount"]);

    // Anything but fields and json is a usage error naming the fields.
    for (args, fields) in [
        (vec!["images", "--format", "{{.Nope}}"], "the fields are .Repository, .Tag, .ID"),
        (vec!["history", "--format", "{{if .ID}}x{{end}}", one.as_str()], "the fields are .ID, .CreatedAt"),
        (vec!["du", "--format", "{{json .Nope}}"], "the fields are .Type, .TotalCount"),
        (vec!["images", "--format", "{{.Tag"], "the fields are"),
    ] {
        let out = env.rbuild().args(&args).run();
        out.assert_code(2).assert_stderr_contains(fields);
        assert!(out.stdout_text().is_empty(), "{}", out.describe());
    }
}

#[test]
fn save_then_load_keeps_the_manifest_digest() {
    let env = TestEnv::new("save_keeps");
    let repo = repository(&env);
    let one = format!("{repo}:1");
    // A build without -o stores plain layers; one with -o stores gzip ones.
    let plain = build_id(&env, &app_context("plain layers", 2_000), Some(&one), &[]);
    let built = env.build(&app_context("gzip layers", 2_000), &[]);
    let two = built.reference.clone();
    let before: Vec<serde_json::Value> = inspect(&env, &[&one, &two]);
    let archive = env.path("both.tar");
    rbuild_ok(&env, &["save", "-o", archive.to_str().unwrap(), &one, &two]);

    let other = TestEnv::new("save_keeps_other");
    rbuild_ok(&other, &["load", "-i", archive.to_str().unwrap()]);
    let after = inspect(&other, &[&one, &two]);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a["Id"], b["Id"]);
        assert_eq!(a["ManifestDigest"], b["ManifestDigest"], "{}", b["RepoTags"]);
        assert_eq!(a["Layers"], b["Layers"]);
    }
    assert_eq!(after[0]["Id"], plain);
    // name@digest from the first store finds the image in the second.
    let pinned = format!("{repo}@{}", before[0]["ManifestDigest"].as_str().unwrap());
    assert_eq!(inspect(&other, &[&pinned])[0]["Id"], plain);

    // The archive still loads into Docker and runs.
    let _in_docker = (Docker::get().adopt(&one), Docker::get().adopt(&two));
    Docker::get().load(&archive);
    assert_eq!(Docker::get().run(&[], &one, &[]).stdout_text(), "plain layers\n");
}
