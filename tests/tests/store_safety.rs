//! The store under stress: concurrent builds of one context on one store, builds killed with
//! SIGKILL at random points, and a full disk (a small tmpfs as the store). Each must leave a
//! store that the next build and `rbuild images` use without error.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rbuild_e2e::process::run_tool;
use rbuild_e2e::sandbox::{store_tmp_entries, with_shell};
use rbuild_e2e::store::{
    assert_store_sound, build_id, images_table, rbuild_ok, repository, save_into_docker,
};
use rbuild_e2e::{Context, Docker, TestEnv};

/// busybox with a shell, a data file, a RUN and a COPY: a build that touches every kind of
/// store write (layers, snapshots, sandbox scratch, image, tag).
fn busy_context(data: &[u8]) -> Context {
    let ctx = Context::with_busybox();
    ctx.file("data.bin", data);
    ctx.file("note.txt", "note\n");
    ctx.dockerfile(&with_shell(&[
        "COPY data.bin /data.bin",
        "RUN cat /data.bin /data.bin > /twice.bin && wc -c /twice.bin > /size.txt",
        "COPY note.txt /note.txt",
        r#"CMD ["cat", "/size.txt"]"#,
    ]));
    ctx
}

/// A small deterministic random generator (xorshift), seeded from the clock; the seed is
/// printed so that a failure can be replayed with `RBUILD_TEST_SEED`.
struct Random(u64);

impl Random {
    fn new() -> Random {
        let seed = std::env::var("RBUILD_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("random seed: {seed} (set RBUILD_TEST_SEED={seed} to replay)");
        Random(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn entries(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(list) => list
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn four_builds_of_one_context_at_once_all_succeed_with_one_image_id() {
    let env = TestEnv::new("four_builds");
    let repo = repository(&env);
    let ctx = busy_context(&Random::new().bytes(1 << 20));
    let children: Vec<_> = (0..4)
        .map(|i| {
            env.rbuild()
                .args(["build", "-q", "-t", &format!("{repo}:{i}")])
                .arg(ctx.path())
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .into_command()
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting a build")
        })
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "a build failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");

    let rows = images_table(&env);
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|r| ids[0].contains(&r["IMAGE ID"])),
        "{rows:?}"
    );
    assert_store_sound(env.store());
    assert!(
        store_tmp_entries(env.store()).is_empty(),
        "{:?}",
        store_tmp_entries(env.store())
    );
    assert!(
        entries(&env.store().join("leases")).is_empty(),
        "finished builds leave no lease"
    );
    let _in_docker = Docker::get().adopt(&format!("{repo}:0"));
    save_into_docker(&env, &[&format!("{repo}:0")]);
    let out = Docker::get().run(&[], &format!("{repo}:0"), &[]);
    assert_eq!(
        out.stdout_text(),
        format!("{} /twice.bin\n", 2 << 20),
        "{}",
        out.describe()
    );
}

#[test]
fn builds_killed_at_random_points_leave_a_store_the_next_build_uses() {
    let env = TestEnv::new("killed_builds");
    let repo = repository(&env);
    let mut random = Random::new();
    let ctx = busy_context(&random.bytes(256 << 10));
    // Even rounds rebuild everything (`--no-cache`), odd ones reuse the cache and redo the last
    // steps: the kills fall anywhere within an undisturbed build of the same kind (the faster
    // of two: the first build of all also fills the page cache and the step cache).
    let modes: [&[&str]; 2] = [&["--no-cache"], &[]];
    let spans: Vec<u64> = modes
        .iter()
        .map(|args| {
            let timed = |n: usize| {
                ctx.file("note.txt", format!("timing {args:?} {n}\n"));
                let started = Instant::now();
                build_id(&env, &ctx, Some(&format!("{repo}:warm")), args);
                started.elapsed().as_millis() as u64
            };
            timed(0).min(timed(1)) * 11 / 10 + 1
        })
        .collect();

    let mut killed = 0;
    for round in 0..20 {
        ctx.file("note.txt", format!("round {round}\n"));
        let mut child = env
            .rbuild()
            .args(["build", "-q", "-t", &format!("{repo}:round{round}")])
            .args(modes[round % 2])
            .arg(ctx.path())
            .into_command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting a build");
        let delay = random.next() % spans[round % 2];
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("SIGKILL");
        let status = child.wait().unwrap();
        eprintln!(
            "round {round}: killed after {delay} of {} ms: {status}",
            spans[round % 2]
        );
        if status.code().is_none() {
            killed += 1;
        }
        // Whatever was cut off, the store still lists, and no blob is half there.
        images_table(&env);
        if round % 5 == 4 {
            assert_store_sound(env.store());
        }
    }
    // Most kills must land inside a build, or this tests little.
    eprintln!("{killed} of 20 builds were killed before they ended");
    assert!(
        killed >= 10,
        "only {killed} of 20 builds were still running when killed"
    );

    ctx.file("note.txt", "after the kills\n");
    let id = build_id(&env, &ctx, Some(&format!("{repo}:final")), &[]);
    let rows = images_table(&env);
    assert!(
        rows.iter()
            .any(|r| r["TAG"] == "final" && id.contains(&r["IMAGE ID"])),
        "{rows:?}"
    );
    let child = Context::new();
    child.dockerfile(&[
        &format!("FROM {repo}:final"),
        "RUN cat /note.txt > /copied.txt",
    ]);
    build_id(&env, &child, Some(&format!("{repo}:child")), &[]);
    assert_store_sound(env.store());
    rbuild_ok(&env, &["prune"]);
    assert_store_sound(env.store());
    // Killed builds' temp areas and leases are gone once a store command has run after them.
    assert!(
        store_tmp_entries(env.store()).is_empty(),
        "{:?}",
        store_tmp_entries(env.store())
    );
    assert!(entries(&env.store().join("leases")).is_empty());
    let _in_docker = Docker::get().adopt(&format!("{repo}:child"));
    save_into_docker(&env, &[&format!("{repo}:child")]);
    let out = Docker::get().run(&[], &format!("{repo}:child"), &["cat", "/copied.txt"]);
    assert_eq!(out.stdout_text(), "after the kills\n", "{}", out.describe());
}

/// A tmpfs mounted for one test, unmounted when dropped (lazily if something still uses it).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-e2e-tmpfs-")
            .tempdir()
            .unwrap();
        let path = dir.path().to_str().unwrap();
        run_tool(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", path],
        );
        Tmpfs { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Fills the filesystem of `path` with a file until no byte more fits.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = fs::File::create(path).unwrap();
    for size in [64 * 1024, 1] {
        let chunk = vec![7u8; size];
        let error = loop {
            if let Err(e) = file.write_all(&chunk) {
                break e;
            }
        };
        assert_eq!(
            error.raw_os_error(),
            Some(28),
            "filling {}: {error}",
            path.display()
        );
    }
}

#[test]
fn a_full_disk_fails_clearly_and_leaves_the_store_usable() {
    let env = TestEnv::new("full_disk");
    let repo = repository(&env);
    let disk = Tmpfs::mount("8m");
    let root = disk.path().join("store");
    let in_store = |args: &[&str]| env.rbuild().env("RBUILD_ROOT", &root).args(args).run();

    // A context bigger than the whole disk.
    let big = Context::with_busybox();
    big.file("big.bin", Random::new().bytes(12 << 20));
    big.dockerfile(&[
        "FROM scratch",
        "COPY busybox /bin/busybox",
        "COPY big.bin /big.bin",
    ]);
    let out = in_store(&[
        "build",
        "-t",
        &format!("{repo}:big"),
        big.path().to_str().unwrap(),
    ]);
    out.assert_code(1)
        .assert_stderr_contains("no space left")
        .assert_stderr_contains(&format!("rbuild's store ({})", root.display()));
    assert!(
        store_tmp_entries(&root).is_empty(),
        "the failed build left {:?}",
        store_tmp_entries(&root)
    );
    in_store(&["images"]).assert_success();

    // What the hint suggests frees what the failed build stored (its first layer), and then a
    // small build fits.
    let pruned = in_store(&["prune"]);
    pruned.assert_success();
    assert!(
        !pruned.stdout_text().contains("Total reclaimed space: 0B"),
        "{}",
        pruned.describe()
    );
    let small = Context::with_busybox();
    small.file("small.txt", "small\n");
    small.dockerfile(&[
        "FROM scratch",
        "COPY busybox /bin/busybox",
        "COPY small.txt /small.txt",
    ]);
    let first = format!("{repo}:small");
    in_store(&["build", "-q", "-t", &first, small.path().to_str().unwrap()]).assert_success();

    // Now a disk that something else filled: the build fails, the store stays whole, and once
    // space is freed the same build works.
    let filler = disk.path().join("filler");
    fill(&filler);
    small.file("small.txt", "second\n");
    let second = format!("{repo}:second");
    let out = in_store(&["build", "-q", "-t", &second, small.path().to_str().unwrap()]);
    out.assert_code(1).assert_stderr_contains("no space left");
    let listed = in_store(&["images"]);
    listed.assert_success();
    assert!(
        listed.stdout_text().contains(&repo),
        "{}",
        listed.describe()
    );
    assert_store_sound(&root);
    fs::remove_file(&filler).unwrap();
    in_store(&["build", "-q", "-t", &second, small.path().to_str().unwrap()]).assert_success();
    assert_store_sound(&root);

    let saved = env.path("second.tar");
    in_store(&["save", "-o", saved.to_str().unwrap(), &second]).assert_success();
    let loaded = Docker::get().load_as(&saved, &second);
    assert_eq!(loaded.read("/small.txt"), "second\n");
    drop(loaded);
    drop(disk);
}
