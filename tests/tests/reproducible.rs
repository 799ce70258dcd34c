//! Reproducible builds: with `SOURCE_DATE_EPOCH`, the same Dockerfile and file contents give
//! the same bytes, wherever the context lives and whatever its files' timestamps are.

use std::fs::{self, File, FileTimes};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rbuild_e2e::{Archive, Context, RunOutput, TestEnv};

/// 2023-11-14T22:13:20Z.
const EPOCH: &str = "1700000000";
const EPOCH_RFC3339: &str = "2023-11-14T22:13:20Z";
/// The tag both builds of a comparison use: tags are part of the archive's bytes.
const TAG: &str = "rbuild-e2e/reproducible:1";

/// Files of the test context, written in the given order (so that two contexts differ in the
/// order their directories list entries, too).
const FILES: [(&str, &str); 4] = [
    ("app/config.ini", "[server]\nport=8080\n"),
    ("app/static/index.html", "<h1>hi</h1>\n"),
    ("app/static/style.css", "h1 { color: red }\n"),
    ("VERSION", "1.2.3\n"),
];

fn reproducible_context(reverse: bool) -> Context {
    let ctx = Context::with_busybox();
    let mut files = FILES.to_vec();
    if reverse {
        files.reverse();
    }
    for (path, contents) in files {
        ctx.file(path, contents);
    }
    ctx.symlink("app/current", "config.ini");
    ctx.dockerfile(&[
        "FROM scratch",
        "COPY busybox /bin/busybox",
        "COPY app /srv/app",
        "COPY VERSION /srv/",
        "WORKDIR /srv/data",
        "ENV APP_VERSION=1.2.3",
        "LABEL org.example.reproducible=yes",
        r#"CMD ["/bin/busybox", "cat", "/srv/VERSION"]"#,
    ]);
    ctx
}

/// Sets the access and modification times of everything under `root` to `time`.
fn set_times_recursively(root: &Path, time: SystemTime) {
    for entry in fs::read_dir(root).expect("listing the context") {
        let path = entry.expect("dir entry").path();
        if path.is_symlink() {
            continue; // std cannot set a symlink's own times; the link target is set anyway
        }
        if path.is_dir() {
            set_times_recursively(&path, time);
        }
        let times = FileTimes::new().set_accessed(time).set_modified(time);
        File::open(&path)
            .and_then(|f| f.set_times(times))
            .expect("setting file times");
    }
}

/// `SOURCE_DATE_EPOCH=… rbuild build -q -t TAG -o OUTPUT CONTEXT` in a fresh store.
fn build_reproducibly(env: &TestEnv, ctx: &Context, output: &str) -> RunOutput {
    let out = env
        .rbuild()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["build", "-q", "-t", TAG, "-o", output])
        .arg(ctx.path())
        .run();
    out.assert_success();
    out
}

/// Two contexts with the same contents but different directories, entry order and timestamps.
fn two_different_looking_contexts() -> (Context, Context) {
    let first = reproducible_context(false);
    let second = reproducible_context(true);
    // Later than SOURCE_DATE_EPOCH, like the first context's fresh files: timestamps after it
    // are clamped to it, while older ones may be kept as they are (as BuildKit does).
    set_times_recursively(
        second.path(),
        UNIX_EPOCH + Duration::from_secs(1_735_689_600),
    ); // 2025
    (first, second)
}

/// An RFC 3339 time without a fractional part of zeros: `…:20.000000000Z` → `…:20Z`.
fn without_zero_fraction(time: &str) -> String {
    match time.split_once('.') {
        Some((seconds, fraction)) if fraction.trim_end_matches('Z').bytes().all(|b| b == b'0') => {
            format!("{seconds}Z")
        }
        _ => time.to_string(),
    }
}

#[test]
fn source_date_epoch_sets_the_creation_time() {
    let env = TestEnv::new("sde-created");
    let ctx = reproducible_context(false);
    let path = env.path("image.tar");
    build_reproducibly(&env, &ctx, path.to_str().unwrap());
    let config = Archive::open(&path).config();
    assert_eq!(
        without_zero_fraction(config["created"].as_str().unwrap()),
        EPOCH_RFC3339
    );
    for entry in config["history"].as_array().expect("history") {
        assert_eq!(
            without_zero_fraction(entry["created"].as_str().unwrap_or("missing")),
            EPOCH_RFC3339,
            "history entry {entry}"
        );
    }
}

#[test]
fn creation_time_is_the_build_time_without_source_date_epoch() {
    let env = TestEnv::new("created-now");
    let built = env.build(&reproducible_context(false), &[]);
    let created = built.archive().config()["created"]
        .as_str()
        .unwrap()
        .to_string();
    // The year is enough to tell the build time from SOURCE_DATE_EPOCH or the Unix epoch.
    let now_year = 1970
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 31_556_952;
    let year: u64 = created[..4]
        .parse()
        .unwrap_or_else(|_| panic!("created = {created}"));
    assert!(
        year + 1 >= now_year,
        "created {created} is not the build time"
    );
}

#[test]
fn same_inputs_give_the_same_archive_bytes() {
    let (first, second) = two_different_looking_contexts();
    let (env_a, env_b) = (TestEnv::new("repro-a"), TestEnv::new("repro-b"));
    let (path_a, path_b) = (env_a.path("a.tar"), env_b.path("b.tar"));
    let id_a = build_reproducibly(&env_a, &first, path_a.to_str().unwrap()).image_id();
    let id_b = build_reproducibly(&env_b, &second, path_b.to_str().unwrap()).image_id();
    assert_eq!(id_a, id_b, "image IDs differ");
    let (bytes_a, bytes_b) = (fs::read(&path_a).unwrap(), fs::read(&path_b).unwrap());
    assert!(
        bytes_a == bytes_b,
        "archives differ: {} vs {}",
        path_a.display(),
        path_b.display()
    );
}

#[test]
fn same_inputs_give_the_same_compressed_outputs() {
    let (first, second) = two_different_looking_contexts();
    let (env_a, env_b) = (TestEnv::new("repro-gz-a"), TestEnv::new("repro-gz-b"));
    for (name, output) in [
        ("image.tar.gz", "{}"),
        ("image.oci.tar", "type=oci,dest={}"),
    ] {
        let (path_a, path_b) = (env_a.path(name), env_b.path(name));
        build_reproducibly(
            &env_a,
            &first,
            &output.replace("{}", path_a.to_str().unwrap()),
        );
        build_reproducibly(
            &env_b,
            &second,
            &output.replace("{}", path_b.to_str().unwrap()),
        );
        let (bytes_a, bytes_b) = (fs::read(&path_a).unwrap(), fs::read(&path_b).unwrap());
        assert!(bytes_a == bytes_b, "{name} outputs differ");
    }
}

#[test]
fn a_rebuild_in_the_same_store_gives_the_same_id() {
    let env = TestEnv::new("repro-rebuild");
    let ctx = reproducible_context(false);
    let first = build_reproducibly(&env, &ctx, env.path("1.tar").to_str().unwrap()).image_id();
    let second = build_reproducibly(&env, &ctx, env.path("2.tar").to_str().unwrap()).image_id();
    assert_eq!(first, second);
}

#[test]
fn changed_content_changes_the_id() {
    // The counterpart of the tests above: identical IDs must come from identical inputs only.
    let env = TestEnv::new("repro-changed");
    let ctx = reproducible_context(false);
    let before = build_reproducibly(&env, &ctx, env.path("1.tar").to_str().unwrap()).image_id();
    ctx.file("VERSION", "1.2.4\n");
    let after = build_reproducibly(&env, &ctx, env.path("2.tar").to_str().unwrap()).image_id();
    assert_ne!(before, after);
}
