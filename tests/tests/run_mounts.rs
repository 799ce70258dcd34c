//! RUN --mount: cache mounts that keep their files between builds (in the store or in a
//! `--cache-mount-dir`) and never reach a layer; bind mounts of the context (its `.dockerignore`
//! applied) and of other stages, read-only unless `rw` and then discarded; tmpfs; secrets that
//! never reach the store, the archive or the output; an ssh agent that answers through its
//! socket; each in every isolation, and mistakes refused with their line.

use std::fs;
use std::path::Path;
use std::process::Command;

use rbuild_e2e::sandbox::{layer_paths, with_shell};
use rbuild_e2e::users::SuiteUser;
use rbuild_e2e::archive::sha256_hex;
use rbuild_e2e::env::unique_suffix;
use rbuild_e2e::{Archive, Context, TestEnv};

/// The content of `path` in the image's top layer that has it.
fn file_in(archive: &Archive, path: &str) -> Option<String> {
    archive
        .layers()
        .iter()
        .rev()
        .find_map(|layer| layer.iter().find(|e| e.path == path).map(|e| String::from_utf8_lossy(&e.data).into_owned()))
}

/// Every path of every layer of the image.
fn all_layer_paths(archive: &Archive) -> Vec<String> {
    (0..archive.layers().len()).flat_map(|i| layer_paths(archive, i)).collect()
}

/// The files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                todo.push(path);
            } else if kind.is_file() {
                if let Ok(bytes) = fs::read(&path) {
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        found.push(path.display().to_string());
                    }
                }
            }
        }
    }
    found
}

const CACHE_RUNS: &[&str] = &[
    "ARG RUN=1",
    // Counts the builds that ran this step with the same cache; the count is the image's.
    "RUN --mount=type=cache,target=/var/cache/app,id=app-cache \
     echo \"$RUN\" >> /var/cache/app/runs && wc -l < /var/cache/app/runs > /count",
    "RUN --mount=type=cache,target=/owned,uid=1000,gid=1001,mode=0700 stat -c '%u:%g %a' /owned > /owned-stat",
];

fn cache_mount_case(env: &TestEnv, isolation: &str) {
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(CACHE_RUNS));
    let build = |run: &str, extra: &[&str]| {
        let mut args = vec!["--isolation", isolation, "--build-arg"];
        let arg = format!("RUN={run}");
        args.push(&arg);
        args.extend_from_slice(extra);
        env.build(&ctx, &args).archive()
    };
    let first = build("1", &[]);
    assert_eq!(file_in(&first, "count").unwrap().trim(), "1");
    assert_eq!(file_in(&first, "owned-stat").unwrap().trim(), "1000:1001 700");
    let paths = all_layer_paths(&first);
    assert!(!paths.iter().any(|p| p.starts_with("var/cache/app") || p == "owned" || p.starts_with("owned/")), "{paths:?}");

    let second = build("2", &[]);
    assert_eq!(file_in(&second, "count").unwrap().trim(), "2", "the cache kept the first build's line");
    // --no-cache: the step runs without the cache's contents.
    let fresh = build("3", &["--no-cache"]);
    assert_eq!(file_in(&fresh, "count").unwrap().trim(), "1");
    let listed = env.rbuild().args(["cache-mount", "ls"]).run();
    listed.assert_success();
    assert!(listed.stdout_text().contains("app-cache"), "{}", listed.describe());
}

#[test]
fn cache_mounts_keep_their_files_between_builds_and_out_of_layers() {
    let env = TestEnv::new("mount-cache");
    cache_mount_case(&env, "namespaces");
    several_mounts_with_network_and_heredoc(&env, "namespaces");
}

#[test]
fn cache_mounts_under_the_chroot_isolation() {
    let env = TestEnv::new("mount-cache-chroot");
    cache_mount_case(&env, "chroot");
    several_mounts_with_network_and_heredoc(&env, "chroot");
}

/// One RUN with a cache, a bind, a tmpfs and a secret mount, `--network=none` and a heredoc.
fn several_mounts_with_network_and_heredoc(env: &TestEnv, isolation: &str) {
    let ctx = Context::with_busybox();
    ctx.file("input.txt", "bound\n");
    let secret = env.path("several-secret");
    fs::write(&secret, "several-secret-value").unwrap();
    ctx.dockerfile(&with_shell(&[
        "RUN --network=none --mount=type=cache,target=/c,id=several --mount=source=input.txt,target=/in.txt \\",
        "    --mount=type=tmpfs,target=/t --mount=type=secret,id=s,target=/s <<EOF",
        "echo seen >> /c/log",
        "cat /in.txt > /out-bind",
        "echo x > /t/x && ls /t > /out-tmpfs",
        "wc -c < /s > /out-secret-size",
        "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort > /out-interfaces",
        "EOF",
    ]));
    let flag = format!("id=s,src={}", secret.display());
    let archive = env.build(&ctx, &["--isolation", isolation, "--secret", &flag]).archive();
    assert_eq!(file_in(&archive, "out-bind").unwrap(), "bound\n");
    assert_eq!(file_in(&archive, "out-tmpfs").unwrap(), "x\n");
    assert_eq!(file_in(&archive, "out-secret-size").unwrap().trim(), "20");
    if isolation == "namespaces" {
        // The chroot isolation has no network namespace of its own (nor /proc).
        assert_eq!(file_in(&archive, "out-interfaces").unwrap(), "lo\n");
    }
    let paths = all_layer_paths(&archive);
    for mount in ["c", "in.txt", "t", "s"] {
        assert!(!paths.iter().any(|p| p == mount || p.starts_with(&format!("{mount}/"))), "{mount} in a layer: {paths:?}");
    }
}

#[test]
fn a_cache_mount_dir_is_shared_by_two_stores_and_travels_by_export() {
    let first = TestEnv::new("mount-dir-a");
    let second = TestEnv::new("mount-dir-b");
    let shared = tempfile::tempdir().unwrap();
    let dir = shared.path().display().to_string();
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(CACHE_RUNS));
    let one = first.build(&ctx, &["--cache-mount-dir", &dir, "--build-arg", "RUN=a"]).archive();
    assert_eq!(file_in(&one, "count").unwrap().trim(), "1");
    // Another store, an empty one, finds the cache through the directory.
    let two = second.build(&ctx, &["--build-arg", "RUN=b"]).archive();
    assert_eq!(file_in(&two, "count").unwrap().trim(), "1", "without the directory the second store starts empty");
    let three = second
        .rbuild()
        .env("RBUILD_CACHE_MOUNT_DIR", shared.path())
        .args(["build", "-o", &second.path("three.tar").display().to_string(), "--build-arg", "RUN=c"])
        .arg(ctx.path())
        .run();
    three.assert_success();
    assert_eq!(file_in(&Archive::open(&second.path("three.tar")), "count").unwrap().trim(), "2");

    // Exported from the first store's directory, imported into a new store: the next build sees it.
    let tar = first.path("mounts.tar").display().to_string();
    let exported = first.rbuild().args(["cache-mount", "export", "--cache-mount-dir", &dir, "app-cache", "-o", &tar]).run();
    exported.assert_success();
    let third = TestEnv::new("mount-dir-c");
    third.rbuild().args(["cache-mount", "import", &tar]).run().assert_success();
    let four = third.build(&ctx, &["--build-arg", "RUN=d"]).archive();
    assert_eq!(file_in(&four, "count").unwrap().trim(), "3", "the imported cache had two lines");
    third.rbuild().args(["cache-mount", "rm", "app-cache"]).run().assert_success();
    let five = third.build(&ctx, &["--build-arg", "RUN=e"]).archive();
    assert_eq!(file_in(&five, "count").unwrap().trim(), "1");
}

#[test]
fn bind_mounts_read_the_context_and_stages_and_discard_writes() {
    let env = TestEnv::new("mount-bind");
    let ctx = Context::with_busybox();
    ctx.file("src/a.txt", "version one\n").file("ignored.txt", "not for builds\n").file(".dockerignore", "ignored.txt\n");
    ctx.dockerfile(&[
        "FROM scratch AS data",
        "COPY src/a.txt /d/data.txt",
        "FROM scratch",
        "COPY busybox /bin/busybox",
        r#"RUN ["/bin/busybox","--install","-s","/bin"]"#,
        "RUN --mount=target=/ctx cat /ctx/src/a.txt > /from-context && ls -a /ctx > /listing",
        "RUN --mount=type=bind,from=data,source=/d,target=/mnt cat /mnt/data.txt > /from-stage",
        "RUN --mount=target=/ro sh -c 'touch /ro/x 2>/dev/null && echo writable > /ro-result || echo readonly > /ro-result'",
        "RUN --mount=target=/rw,rw touch /rw/written && ls /rw > /rw-listing",
        "RUN --mount=type=bind,source=src/a.txt,target=/one.txt cat /one.txt > /single-file",
    ]);
    let archive = env.build(&ctx, &[]).archive();
    assert_eq!(file_in(&archive, "from-context").unwrap(), "version one\n");
    assert!(!file_in(&archive, "listing").unwrap().contains("ignored.txt"), ".dockerignore applies to bind mounts");
    assert_eq!(file_in(&archive, "from-stage").unwrap(), "version one\n");
    assert_eq!(file_in(&archive, "ro-result").unwrap(), "readonly\n");
    assert!(file_in(&archive, "rw-listing").unwrap().contains("written"));
    assert_eq!(file_in(&archive, "single-file").unwrap(), "version one\n");
    assert!(!ctx.join("written").exists(), "an rw bind mount wrote into the context");
    let paths = all_layer_paths(&archive);
    for mount in ["ctx", "mnt", "ro", "rw", "one.txt"] {
        assert!(!paths.iter().any(|p| p == mount || p.starts_with(&format!("{mount}/"))), "{mount} in a layer: {paths:?}");
    }

    // The bound files are part of the step's key: a change reruns only the steps that read it.
    ctx.file("src/a.txt", "version two\n");
    let again = env.build(&ctx, &[]).archive();
    assert_eq!(file_in(&again, "from-context").unwrap(), "version two\n");
    assert_eq!(file_in(&again, "from-stage").unwrap(), "version two\n");
    let unchanged = env.build(&ctx, &["--progress", "plain"]);
    assert!(unchanged.output.stderr_text().contains("CACHED"), "{}", unchanged.output.describe());
}

#[test]
fn a_tmpfs_is_mounted_and_leaves_nothing() {
    let env = TestEnv::new("mount-tmpfs");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "RUN --mount=type=tmpfs,target=/scratch,size=1m \
         grep ' /scratch ' /proc/mounts > /tmpfs-line && echo x > /scratch/f",
    ]));
    let archive = env.build(&ctx, &[]).archive();
    let line = file_in(&archive, "tmpfs-line").unwrap();
    assert!(line.contains("tmpfs") && line.contains("size=1024k"), "{line}");
    assert!(!all_layer_paths(&archive).iter().any(|p| p.starts_with("scratch")));
}

#[test]
fn secrets_never_reach_the_store_the_archive_or_the_output() {
    let env = TestEnv::new("mount-secret");
    let value = format!("S3cret-file-{}", unique_suffix());
    let env_value = format!("S3cret-env-{}", unique_suffix());
    let secret_file = env.path("token.txt");
    fs::write(&secret_file, &value).unwrap();
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -d' ' -f1 > /file-sha && cat /run/secrets/tok",
        "RUN --mount=type=secret,id=tok,target=/etc/tok,mode=0440,uid=7,gid=8 stat -c '%a %u:%g' /etc/tok > /tok-stat",
        "RUN --mount=type=secret,id=envtok,env=TOKEN printf %s \"$TOKEN\" | sha256sum | cut -d' ' -f1 > /env-sha && echo \"$TOKEN\"",
        "RUN --mount=type=secret,id=absent ls /run/secrets > /absent-listing 2>&1 || true",
    ]));
    let file_flag = format!("id=tok,src={}", secret_file.display());
    for progress in ["plain", "rawjson"] {
        let built = env
            .rbuild()
            .env("RBUILD_TEST_TOKEN", &env_value)
            .args(["build", "--no-cache", "--progress", progress, "--secret", &file_flag, "--secret", "id=envtok,env=RBUILD_TEST_TOKEN"])
            .args(["-o", &env.path("secret.tar").display().to_string(), "-t", "secret:test"])
            .arg(ctx.path())
            .run();
        built.assert_success();
        for secret in [&value, &env_value] {
            assert!(!built.stderr_text().contains(secret.as_str()), "{progress} output shows a secret:\n{}", built.describe());
            assert!(!built.stdout_text().contains(secret.as_str()));
        }
        assert!(built.stderr_text().contains("****"), "the echoed secret is masked:\n{}", built.describe());
    }
    let archive = Archive::open(&env.path("secret.tar"));
    assert_eq!(file_in(&archive, "file-sha").unwrap().trim(), sha256_hex(value.as_bytes()));
    assert_eq!(file_in(&archive, "env-sha").unwrap().trim(), sha256_hex(env_value.as_bytes()));
    assert_eq!(file_in(&archive, "tok-stat").unwrap().trim(), "440 7:8");
    assert!(!all_layer_paths(&archive).iter().any(|p| p.starts_with("run/secrets") || p == "etc/tok"));
    let archive_bytes = fs::read(env.path("secret.tar")).unwrap();
    for secret in [&value, &env_value] {
        assert!(!archive_bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "the archive holds a secret");
        assert_eq!(files_containing(env.store(), secret.as_bytes()), Vec::<String>::new(), "the store holds a secret");
    }
    // `--explain-cache` and the graph do not show it either.
    let explained = env
        .rbuild()
        .env("RBUILD_TEST_TOKEN", "another-value")
        .args(["build", "--explain-cache", "--secret", &file_flag, "--secret", "id=envtok,env=RBUILD_TEST_TOKEN"])
        .arg(ctx.path())
        .run();
    explained.assert_success();
    assert!(!explained.stderr_text().contains(value.as_str()));

    // A failing RUN that prints the secret: its error quotes the output, masked.
    let failing = Context::with_busybox();
    failing.dockerfile(&with_shell(&["RUN --mount=type=secret,id=tok cat /run/secrets/tok && false"]));
    let out = env.rbuild().args(["build", "--secret", &file_flag]).arg(failing.path()).run();
    out.assert_code(1).assert_stderr_contains("****");
    assert!(!out.stderr_text().contains(value.as_str()), "{}", out.describe());

    // A required secret that was not given: the line and the flag to give.
    let required = Context::with_busybox();
    required.dockerfile(&with_shell(&["RUN --mount=type=secret,id=npmrc,required=true true"]));
    let out = env.rbuild().args(["build"]).arg(required.path()).run();
    out.assert_code(1).assert_stderr_contains("Dockerfile:4").assert_stderr_contains("--secret id=npmrc");
}

/// Copies `binary` and the shared libraries `ldd` lists into `ctx`, so a busybox image can run it.
fn add_dynamic_binary(ctx: &Context, binary: &str) {
    let ldd = Command::new("ldd").arg(binary).output().expect("running ldd");
    let mut files = vec![binary.to_string()];
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line.split("=>").last().unwrap_or(line).trim().split(' ').next().unwrap_or("").to_string();
        if path.starts_with('/') {
            files.push(path);
        }
    }
    for file in files {
        let bytes = fs::read(&file).unwrap();
        ctx.file(&format!("sysroot{file}"), bytes);
        fs::set_permissions(ctx.join(&format!("sysroot{file}")), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
}

#[test]
fn an_ssh_agent_answers_through_its_socket() {
    let env = TestEnv::new("mount-ssh");
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ed25519");
    let generated = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "rbuild-test-key", "-f"]).arg(&key).status();
    assert!(generated.expect("ssh-keygen (openssh-client) is installed by scripts/test.sh").success());
    let socket = keys.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("starting ssh-agent");
    while !socket.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = Command::new("ssh-add").arg(&key).env("SSH_AUTH_SOCK", &socket).output().unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));

    let ctx = Context::with_busybox();
    add_dynamic_binary(&ctx, "/usr/bin/ssh-add");
    ctx.dockerfile(&with_shell(&[
        "COPY sysroot/ /",
        "RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && ssh-add -l > /default-keys",
        "RUN --mount=type=ssh,id=keys,target=/agent.sock,uid=1000 stat -c '%u' /agent.sock > /sock-owner && SSH_AUTH_SOCK=/agent.sock ssh-add -l > /file-keys",
    ]));
    let key_flag = format!("keys={}", key.display());
    let out = env
        .rbuild()
        .env("SSH_AUTH_SOCK", &socket)
        .args(["build", "--ssh", "default", "--ssh", &key_flag, "-o", &env.path("ssh.tar").display().to_string()])
        .arg(ctx.path())
        .run();
    let _ = agent.kill();
    let _ = agent.wait();
    out.assert_success();
    let archive = Archive::open(&env.path("ssh.tar"));
    assert!(file_in(&archive, "default-keys").unwrap().contains("rbuild-test-key"), "the caller's agent answered");
    assert!(file_in(&archive, "file-keys").unwrap().contains("rbuild-test-key"), "an agent holding the key file answered");
    assert_eq!(file_in(&archive, "sock-owner").unwrap().trim(), "1000");
    assert!(!all_layer_paths(&archive).iter().any(|p| p.starts_with("run/buildkit") || p == "agent.sock"));

    // Without --ssh, a required agent is an error naming the line.
    let required = Context::with_busybox();
    required.dockerfile(&with_shell(&["RUN --mount=type=ssh,required=true true"]));
    let out = env.rbuild().arg("build").arg(required.path()).run();
    out.assert_code(1).assert_stderr_contains("Dockerfile:4").assert_stderr_contains("--ssh default");
}

#[test]
fn mounts_work_rootless() {
    let env = TestEnv::new("mount-rootless");
    let user = SuiteUser::with_range();
    let ctx = Context::with_busybox();
    ctx.file("src/a.txt", "from the context\n");
    ctx.dockerfile(&with_shell(&[
        "RUN --mount=type=cache,target=/cache,uid=1000 echo run >> /cache/runs && stat -c %u /cache > /cache-owner",
        "RUN --mount=target=/ctx cat /ctx/src/a.txt > /bound",
        "RUN --mount=type=secret,id=tok,uid=1000 stat -c %u /run/secrets/tok > /secret-owner",
        "RUN --mount=type=tmpfs,target=/t echo x > /t/x && ls /t > /tmpfs-listing",
    ]));
    let ws = user.workspace(&ctx);
    let secret = ws.out("token");
    fs::write(&secret, "rootless-secret-value").unwrap();
    rbuild_e2e::process::run_tool("chmod", &["a+r", &secret.display().to_string()]);
    let archive_path = ws.out("image.tar");
    let out = ws.rbuild(&[
        "build",
        "--secret",
        &format!("id=tok,src={}", secret.display()),
        "-o",
        archive_path.to_str().unwrap(),
        ws.context().to_str().unwrap(),
    ]);
    out.assert_success();
    let archive = Archive::open(&archive_path);
    assert_eq!(file_in(&archive, "cache-owner").unwrap().trim(), "1000");
    assert_eq!(file_in(&archive, "bound").unwrap(), "from the context\n");
    assert_eq!(file_in(&archive, "secret-owner").unwrap().trim(), "1000");
    assert_eq!(file_in(&archive, "tmpfs-listing").unwrap(), "x\n");
    let _ = env;
}

#[test]
fn mistaken_mounts_are_refused_with_their_line() {
    let env = TestEnv::new("mount-mistakes");
    let cases: [(&str, &str); 4] = [
        ("RUN --mount=type=volume,target=/x true", "unsupported mount type"),
        ("RUN --mount=type=cache,target=/x,colour=red true", "unexpected key \"colour\""),
        ("RUN --mount=from=nowhere-stage-or-image,target=/x true", "nowhere-stage-or-image"),
        ("RUN --mount=source=missing.txt,target=/x true", "missing.txt"),
    ];
    for (line, expected) in cases {
        let ctx = Context::with_busybox();
        ctx.dockerfile(&with_shell(&[line]));
        let out = env.rbuild().arg("build").arg(ctx.path()).run();
        out.assert_code(1).assert_stderr_contains("Dockerfile:4").assert_stderr_contains(expected);
    }
}

#[test]
fn a_target_reached_through_a_symlink_stays_in_the_image() {
    let env = TestEnv::new("mount-symlink");
    let outside = tempfile::tempdir().unwrap();
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        &format!("RUN ln -s {} /escape", outside.path().display()),
        "RUN --mount=type=tmpfs,target=/escape/inner touch /escape/inner/file && ls -d /escape/inner > /where",
    ]));
    env.build(&ctx, &[]);
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "the mount point was made outside the image");
}

#[test]
fn sharing_modes_hold_between_steps_running_at_once() {
    let env = TestEnv::new("mount-sharing");
    let ctx = Context::with_busybox();
    // Two stages per mode run at the same time (RUN steps are not limited to one per CPU).
    let step = |mode: &str, me: &str| {
        format!(
            "RUN --mount=type=cache,id={mode},sharing={mode},target=/c \
             if [ -e /c/busy ]; then echo overlapped > /result; fi; touch /c/busy /c/{me}; sleep 2; \
             ls /c > /listing; rm /c/busy; echo done >> /result"
        )
    };
    let mut lines: Vec<String> = Vec::new();
    for mode in ["locked", "private"] {
        for me in ["one", "two"] {
            lines.push(format!("FROM base AS {mode}-{me}"));
            lines.push(step(mode, me));
        }
    }
    lines.push("FROM scratch".into());
    for mode in ["locked", "private"] {
        for me in ["one", "two"] {
            lines.push(format!("COPY --from={mode}-{me} /result /{mode}-{me}.result"));
            lines.push(format!("COPY --from={mode}-{me} /listing /{mode}-{me}.listing"));
        }
    }
    let mut dockerfile: Vec<&str> = vec!["FROM scratch AS base", "COPY busybox /bin/busybox", r#"RUN ["/bin/busybox","--install","-s","/bin"]"#];
    dockerfile.extend(lines.iter().map(String::as_str));
    ctx.dockerfile(&dockerfile);
    let archive = env.build(&ctx, &[]).archive();
    for me in ["one", "two"] {
        assert_eq!(file_in(&archive, &format!("locked-{me}.result")).unwrap(), "done\n", "locked steps ran one after the other");
    }
    // Private: each found the cache free, or got a directory of its own: never the other's busy marker.
    for me in ["one", "two"] {
        assert_eq!(file_in(&archive, &format!("private-{me}.result")).unwrap(), "done\n");
    }
    let one = file_in(&archive, "private-one.listing").unwrap();
    let two = file_in(&archive, "private-two.listing").unwrap();
    assert!(!(one.contains("two") && two.contains("one")), "both private users saw one directory:\n{one}\n{two}");
}

#[test]
fn an_ssh_agent_answers_rootless() {
    let user = SuiteUser::with_range();
    let ctx = Context::with_busybox();
    add_dynamic_binary(&ctx, "/usr/bin/ssh-add");
    ctx.dockerfile(&with_shell(&[
        "COPY sysroot/ /",
        "RUN --mount=type=ssh,uid=1000 stat -c %u \"$SSH_AUTH_SOCK\" > /sock-owner && ssh-add -l > /keys",
    ]));
    let ws = user.workspace(&ctx);
    // The user's own agent, holding a key the user owns.
    let key = ws.out("id_ed25519");
    let socket = ws.out("agent.sock");
    let as_user = |program: &str, args: &[&str]| {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", user.name, "--", program]).args(args);
        cmd
    };
    let keygen = as_user("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-C", "rootless-test-key", "-f", key.to_str().unwrap()]).status();
    assert!(keygen.unwrap().success());
    let mut agent = as_user("ssh-agent", &["-D", "-a", socket.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("starting ssh-agent as the user");
    while !socket.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = as_user("env", &[&format!("SSH_AUTH_SOCK={}", socket.display()), "ssh-add", key.to_str().unwrap()]).output().unwrap();
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let archive_path = ws.out("image.tar");
    let out = ws.rbuild(&[
        "build",
        "--ssh",
        &format!("default={}", socket.display()),
        "-o",
        archive_path.to_str().unwrap(),
        ws.context().to_str().unwrap(),
    ]);
    let _ = Command::new("kill").arg(agent.id().to_string()).status();
    let _ = agent.wait();
    out.assert_success();
    let archive = Archive::open(&archive_path);
    assert_eq!(file_in(&archive, "sock-owner").unwrap().trim(), "1000");
    assert!(file_in(&archive, "keys").unwrap().contains("rootless-test-key"));
}
