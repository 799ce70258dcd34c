//! Rootless builds: rbuild run by a non-root user (with `runuser`), in a user namespace that maps
//! root to the user and, when /etc/subuid and /etc/subgid give the user a range, the ids of the
//! image to that range. The images are loaded into Docker and checked there and in the layers:
//! ids in the archive are the image's (1000, 0), never the host ids they were stored as.
//!
//! The tests run as root: they create the suite's users (see `rbuild_e2e::users`) and need
//! newuidmap/newgidmap (Debian's `uidmap`).

use rbuild_e2e::sandbox::{layer_paths, top_entry, with_shell};
use rbuild_e2e::users::SuiteUser;
use rbuild_e2e::{Archive, Context, Docker, TestEnv};

#[test]
fn a_user_with_a_subid_range_builds_ownership_deletions_and_user() {
    let env = TestEnv::new("rootless-range");
    let user = SuiteUser::with_range();
    let ctx = Context::with_busybox();
    ctx.file("gone.txt", "gone\n")
        .file("kept.txt", "kept\n")
        .file("d/old.txt", "old\n");
    ctx.dockerfile(&with_shell(&[
        "COPY gone.txt kept.txt /files/",
        "COPY d /d",
        "RUN mkdir -p /etc /home/app \
         && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd \
         && echo 'app:x:1000:1000:app:/home/app:/bin/sh' >> /etc/passwd \
         && printf 'root:x:0:\\napp:x:1000:\\n' > /etc/group \
         && echo mine > /owned && chown 1000:1000 /owned /home/app \
         && mkdir -m 1777 /shared",
        "RUN rm /files/gone.txt && rm -rf /d && mkdir /d && echo new > /d/new.txt",
        "USER app",
        "RUN id > /home/app/id.txt && echo by-app > /home/app/by-app.txt",
        "USER 2000:3000",
        "RUN id > /shared/id.txt",
    ]));
    let ws = user.workspace(&ctx);
    let reference = env.image_ref();
    let archive_path = ws.out("image.tar");
    let out = ws.rbuild(&[
        "build",
        "-t",
        &reference,
        "-o",
        archive_path.to_str().unwrap(),
        ws.context().to_str().unwrap(),
    ]);
    out.assert_success();
    assert!(
        !out.stderr_text().contains("/etc/subuid"),
        "a user with a range was warned about /etc/subuid\n{}",
        out.describe()
    );

    let archive = Archive::open(&archive_path);
    for (path, ids) in [
        ("owned", (1000, 1000)),
        ("home/app", (1000, 1000)),
        ("home/app/by-app.txt", (1000, 1000)),
        ("etc/passwd", (0, 0)),
        ("d/new.txt", (0, 0)),
        ("shared/id.txt", (2000, 3000)),
    ] {
        let entry = top_entry(&archive, path);
        assert_eq!((entry.uid, entry.gid), ids, "tar header of {path}");
    }
    let layers = archive.layers().len();
    let deletions = layer_paths(&archive, layers - 3);
    assert!(
        deletions.contains(&"files/.wh.gone.txt".to_string()),
        "no whiteout for files/gone.txt in {deletions:?}"
    );

    let image = Docker::get().load_as(&archive_path, &reference);
    assert_eq!(
        image.busybox(&[
            "stat",
            "-c",
            "%u:%g",
            "/owned",
            "/home/app",
            "/home/app/by-app.txt"
        ]),
        "1000:1000\n1000:1000\n1000:1000\n"
    );
    assert_eq!(
        image.busybox(&["stat", "-c", "%u:%g", "/etc/passwd"]),
        "0:0\n"
    );
    let id = image.read("/home/app/id.txt");
    assert!(
        id.starts_with("uid=1000(app) gid=1000(app)"),
        "id as USER app: {id:?}"
    );
    assert!(!image
        .try_busybox(&["test", "-e", "/files/gone.txt"])
        .status
        .success());
    assert_eq!(image.read("/files/kept.txt"), "kept\n");
    assert_eq!(image.busybox(&["ls", "-A", "/d"]), "new.txt\n");
    let id = image.read("/shared/id.txt");
    assert!(
        id.starts_with("uid=2000 gid=3000"),
        "id as USER 2000:3000: {id:?}"
    );
    assert_eq!(image.config()["User"], "2000:3000");
}

#[test]
fn a_user_without_a_range_builds_as_root_with_a_warning() {
    let env = TestEnv::new("rootless-norange");
    let user = SuiteUser::without_range();
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "RUN echo root-ok > /root-ok && id -u > /uid.txt && mkdir /dir && chown 0:0 /dir",
    ]));
    let ws = user.workspace(&ctx);
    let reference = env.image_ref();
    let archive_path = ws.out("image.tar");
    let out = ws.rbuild(&[
        "build",
        "-t",
        &reference,
        "-o",
        archive_path.to_str().unwrap(),
        ws.context().to_str().unwrap(),
    ]);
    out.assert_success()
        .assert_stderr_contains("/etc/subuid")
        .assert_stderr_contains(user.name);

    let archive = Archive::open(&archive_path);
    for path in ["root-ok", "uid.txt", "dir"] {
        let entry = top_entry(&archive, path);
        assert_eq!((entry.uid, entry.gid), (0, 0), "tar header of {path}");
    }
    let image = Docker::get().load_as(&archive_path, &reference);
    assert_eq!(image.read("/root-ok"), "root-ok\n");
    assert_eq!(image.read("/uid.txt"), "0\n");
}

#[test]
fn a_user_without_a_range_cannot_run_as_another_uid() {
    let user = SuiteUser::without_range();
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&["USER 1000", "RUN true"]));
    let ws = user.workspace(&ctx);
    let out = ws.rbuild(&["build", ws.context().to_str().unwrap()]);
    out.assert_code(1)
        .assert_stderr_contains("Dockerfile:5")
        .assert_stderr_contains("1000")
        .assert_stderr_contains("/etc/subuid");
}

/// Without a range, a RUN whose chown to another id fails ends in an error that points back at
/// the warning: which range to add, one that overlaps no other user's line.
#[test]
fn a_failing_chown_without_a_range_points_back_at_the_fix() {
    let user = SuiteUser::without_range();
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&["RUN mkdir /d && chown 1000:1000 /d"]));
    let ws = user.workspace(&ctx);
    let out = ws.rbuild(&["build", ws.context().to_str().unwrap()]);
    out.assert_code(1)
        .assert_stderr_contains("Dockerfile:4")
        .assert_stderr_contains("this may be why: user")
        .assert_stderr_contains("--add-subuids");
    // The suggested range is free in both files.
    let stderr = out.stderr_text();
    let line = format!("`{}:", user.name);
    let start = stderr.find(&line).map(|i| &stderr[i + line.len()..]).expect("the suggested line");
    let first: u64 = start.split(':').next().unwrap().parse().expect("a number");
    for file in ["/etc/subuid", "/etc/subgid"] {
        for entry in std::fs::read_to_string(file).unwrap_or_default().lines() {
            let fields: Vec<&str> = entry.split(':').collect();
            let (Some(s), Some(n)) = (fields.get(1).and_then(|s| s.parse::<u64>().ok()), fields.get(2).and_then(|n| n.parse::<u64>().ok())) else { continue };
            assert!(first + 65536 <= s || s + n <= first, "{first} overlaps {file}: {entry}");
        }
    }
}
