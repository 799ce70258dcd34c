//! The step cache (issue 5): hits and misses for every instruction kind, keys that ignore file
//! times, the place of the context and the umask under `--chmod` (but not modes without it),
//! `.dockerignore`d files, `--no-cache` and `--no-cache-filter`, identical steps of two stages
//! run once, `--explain-cache` in plain and rawjson progress, and that a fully cached rebuild is
//! the same image and still runs.
//!
//! Which steps ran is read off the rawjson progress (`step_started`, then `step_cached` or
//! `step_completed`), which lists every step of the build, config-only ones included, so that a
//! step that ran when it should not (or the reverse) fails the test.
//!
//! Config-only steps (ARG, ENV, USER, SHELL, LABEL, EXPOSE, STOPSIGNAL, CMD) leave the
//! filesystem key as it was, as in BuildKit: changing one reruns it and the steps that see what
//! it changed (a RUN sees variables, the user, the shell and the workdir), and everything after
//! the first step whose filesystem changed; the steps before it always hit. The tests check,
//! besides the progress, that the image then has the new config and files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, FileTimes};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rbuild_e2e::sandbox::{top_entry, with_shell};
use rbuild_e2e::{Archive, Context, Docker, RunOutput, TestEnv};
use serde_json::Value;

/// Whether a step ran or came from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Cached,
    Ran,
}
use Outcome::{Cached, Ran};

/// One step of a rawjson progress log.
#[derive(Debug)]
struct StepLog {
    /// `[stage-0 2/5]`.
    position: String,
    /// The instruction as the label shows it.
    instruction: String,
    outcome: Option<Outcome>,
    /// The `cache_miss` explanations.
    misses: Vec<String>,
}

/// The steps of a build's progress, by their number.
struct Progress {
    steps: BTreeMap<usize, StepLog>,
    /// The build's whole stderr, for failure messages.
    log: String,
}

impl Progress {
    /// Reads a `--progress=rawjson` log, which lists every step, config-only ones included
    /// (the plain log leaves those out).
    #[track_caller]
    fn parse(stderr: &str) -> Progress {
        let mut steps: BTreeMap<usize, StepLog> = BTreeMap::new();
        for line in stderr.lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let Some(number) = event["step"].as_u64().map(|n| n as usize) else {
                continue;
            };
            let kind = event["event"].as_str().unwrap_or_default();
            if kind == "step_started" {
                let name = event["name"].as_str().unwrap_or_default();
                let (position, instruction) = name
                    .strip_prefix('[')
                    .and_then(|t| t.split_once("] "))
                    .unwrap_or_else(|| panic!("#{number} starts without a label: {line:?}\n{stderr}"));
                let fresh = StepLog {
                    position: format!("[{position}]"),
                    instruction: instruction.to_string(),
                    outcome: None,
                    misses: Vec::new(),
                };
                assert!(steps.insert(number, fresh).is_none(), "#{number} started twice\n{stderr}");
                continue;
            }
            let step = steps
                .get_mut(&number)
                .unwrap_or_else(|| panic!("#{number} has an event before it started: {line:?}\n{stderr}"));
            let outcome = match kind {
                "step_cached" => Some(Cached),
                "step_completed" => Some(Ran),
                "cache_miss" => {
                    step.misses.push(event["explanation"].as_str().unwrap_or_default().to_string());
                    None
                }
                _ => None,
            };
            if let Some(outcome) = outcome {
                assert!(step.outcome.is_none(), "#{number} finished twice ({line:?})\n{stderr}");
                step.outcome = Some(outcome);
            }
        }
        for (number, step) in &steps {
            assert!(
                step.outcome.is_some(),
                "#{number} {} has neither step_cached nor step_completed\n{stderr}",
                step.instruction
            );
        }
        Progress {
            steps,
            log: stderr.to_string(),
        }
    }

    /// The one step whose instruction is `instruction`.
    #[track_caller]
    fn step(&self, instruction: &str) -> &StepLog {
        let found: Vec<&StepLog> = self
            .steps
            .values()
            .filter(|s| s.instruction == instruction)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one step {instruction:?}\n{}",
            self.log
        );
        found[0]
    }

    /// The one step whose label starts with `position` (`[one 2/2]`).
    #[track_caller]
    fn at(&self, position: &str) -> &StepLog {
        let found: Vec<&StepLog> = self
            .steps
            .values()
            .filter(|s| s.position == position)
            .collect();
        assert_eq!(found.len(), 1, "expected one step {position}\n{}", self.log);
        found[0]
    }

    fn outcome(&self, instruction: &str) -> Outcome {
        self.step(instruction).outcome.expect("checked by parse")
    }

    /// `instruction: CACHED|RAN` for every step, in `#N` order.
    fn summary(&self) -> Vec<(String, Outcome)> {
        self.steps
            .values()
            .map(|s| (s.instruction.clone(), s.outcome.expect("checked by parse")))
            .collect()
    }

    /// The steps are exactly `expected`, in this order, with these outcomes.
    #[track_caller]
    fn assert_steps(&self, expected: &[(&str, Outcome)]) {
        let expected: Vec<(String, Outcome)> =
            expected.iter().map(|(i, o)| (i.to_string(), *o)).collect();
        assert_eq!(self.summary(), expected, "steps and outcomes\n{}", self.log);
    }

    #[track_caller]
    fn assert_all(&self, outcome: Outcome) {
        assert!(
            !self.steps.is_empty(),
            "no steps in the progress\n{}",
            self.log
        );
        let wrong: Vec<_> = self
            .summary()
            .into_iter()
            .filter(|(_, o)| *o != outcome)
            .collect();
        assert!(
            wrong.is_empty(),
            "expected every step {outcome:?}, but: {wrong:?}\n{}",
            self.log
        );
    }

    /// Every explanation of the build.
    fn misses(&self) -> Vec<String> {
        self.steps
            .values()
            .flat_map(|s| s.misses.iter().cloned())
            .collect()
    }
}

/// A finished build: its progress and its image id.
struct Build {
    progress: Progress,
    id: String,
    out: RunOutput,
}

/// `rbuild build --progress=rawjson --iidfile F ARGS… CONTEXT` in `env`'s store; panics unless it
/// succeeds.
#[track_caller]
fn build_dir(env: &TestEnv, context: &Path, args: &[&str]) -> Build {
    let iidfile = env.path(&format!("iid-{}", rbuild_e2e::env::unique_suffix()));
    let out = env
        .rbuild()
        .args(["build", "--progress=rawjson", "--iidfile"])
        .arg(&iidfile)
        .args(args)
        .arg(context)
        .run();
    out.assert_success();
    let id = fs::read_to_string(&iidfile)
        .unwrap_or_else(|e| panic!("reading the iidfile: {e}\n{}", out.describe()))
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:"), "iidfile holds {id:?}");
    Build {
        progress: Progress::parse(&out.stderr_text()),
        id,
        out,
    }
}

#[track_caller]
fn build(env: &TestEnv, ctx: &Context, args: &[&str]) -> Build {
    build_dir(env, ctx.path(), args)
}

/// [`build`] that also writes the image to an archive (`-o`).
#[track_caller]
fn build_archive(env: &TestEnv, ctx: &Context, args: &[&str]) -> (Build, Archive) {
    let path = env.path(&format!("image-{}.tar", rbuild_e2e::env::unique_suffix()));
    let mut all = vec!["-o", path.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    let built = build(env, ctx, &all);
    let archive = Archive::open(&path);
    assert_eq!(
        archive.image_id(),
        built.id,
        "the archive's config is not the image of the iidfile"
    );
    (built, archive)
}

/// A tar (mtime 0, so the same bytes every time) of `files`.
fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, content.as_bytes())
            .expect("appending to a tar");
    }
    builder.into_inner().expect("finishing a tar")
}

/// Sets the access and modification times of every file and directory under `root` (root
/// included; symlinks are left alone) to `time`.
fn set_times(root: &Path, time: SystemTime) {
    let meta = fs::symlink_metadata(root).expect("stat");
    if meta.file_type().is_symlink() {
        return;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(root).expect("listing a dir") {
            set_times(&entry.expect("dir entry").path(), time);
        }
    }
    File::open(root)
        .and_then(|f| f.set_times(FileTimes::new().set_accessed(time).set_modified(time)))
        .unwrap_or_else(|e| panic!("setting the times of {}: {e}", root.display()));
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path).expect("stat").modified().expect("mtime")
}

/// The config section (`config`) of an image config.
fn image_config(archive: &Archive) -> Value {
    archive.config()["config"].clone()
}

/// The data of the file `path` in the topmost layer that has it.
#[track_caller]
fn layer_text(archive: &Archive, path: &str) -> String {
    String::from_utf8(top_entry(archive, path).data).expect("utf-8 file")
}

/// A Dockerfile with every kind of instruction; line N is element N-1.
const KINDS: [&str; 16] = [
    "FROM scratch",
    "COPY busybox /bin/busybox",
    r#"RUN ["/bin/busybox","--install","-s","/bin"]"#,
    "ARG A=1",
    "ENV E=1",
    "WORKDIR /work",
    "COPY a.txt ./",
    "ADD files.tar /unpacked/",
    r#"RUN echo "$A $E" > seen && cat a.txt /unpacked/t.txt >> seen"#,
    "USER 0",
    r#"SHELL ["/bin/sh", "-c"]"#,
    "RUN id -u > uid",
    "LABEL l=1",
    "EXPOSE 80",
    "STOPSIGNAL SIGTERM",
    r#"CMD ["cat", "seen"]"#,
];

/// Writes the [`KINDS`] context as it is before any change.
fn kinds_context(ctx: &Context) {
    ctx.busybox();
    ctx.file("a.txt", "a\n");
    ctx.file("files.tar", tar_of(&[("t.txt", "t\n")]));
    ctx.dockerfile(&KINDS);
}

/// The expected steps of a [`KINDS`]-like Dockerfile `lines` when the lines in `ran` run.
fn expected_steps(lines: &[String], ran: &[usize]) -> Vec<(String, Outcome)> {
    lines
        .iter()
        .enumerate()
        .skip(1) // FROM scratch is not a step of its own
        .map(|(i, line)| {
            let outcome = if ran.contains(&(i + 1)) { Ran } else { Cached };
            (line.clone(), outcome)
        })
        .collect()
}

/// One change to the [`KINDS`] build.
struct Variant {
    what: &'static str,
    /// Dockerfile lines replaced: (line number, new text).
    lines: &'static [(usize, &'static str)],
    /// Context files replaced.
    files: &'static [(&'static str, &'static str)],
    /// A new `files.tar` holding `t.txt` with this content.
    tar: Option<&'static str>,
    args: &'static [&'static str],
    /// The Dockerfile lines whose steps must run; all others must hit.
    ran: &'static [usize],
    /// What the image must show of the change.
    check: fn(&Archive) -> Result<(), String>,
}

fn expect_eq(what: &str, got: &Value, want: &Value) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: {got} instead of {want}"))
    }
}

fn expect_text(archive: &Archive, path: &str, want: &str) -> Result<(), String> {
    let got = layer_text(archive, path);
    if got == want {
        Ok(())
    } else {
        Err(format!("{path} holds {got:?} instead of {want:?}"))
    }
}

const VARIANTS: &[Variant] = &[
    Variant {
        what: "COPY: a.txt's content",
        lines: &[],
        files: &[("a.txt", "A\n")],
        tar: None,
        args: &[],
        ran: &[7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
        check: |a| expect_text(a, "work/seen", "1 1\nA\nt\n"),
    },
    Variant {
        what: "COPY: a --chmod flag",
        lines: &[(7, "COPY --chmod=600 a.txt ./")],
        files: &[],
        tar: None,
        args: &[],
        ran: &[7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
        check: |a| {
            let mode = top_entry(a, "work/a.txt").mode & 0o7777;
            expect_eq("mode of work/a.txt", &mode.into(), &0o600.into())
        },
    },
    Variant {
        what: "ADD: the local tar's content",
        lines: &[],
        files: &[],
        tar: Some("T\n"),
        args: &[],
        ran: &[8, 9, 10, 11, 12, 13, 14, 15, 16],
        check: |a| expect_text(a, "work/seen", "1 1\na\nT\n"),
    },
    Variant {
        what: "RUN: its command",
        lines: &[(
            9,
            r#"RUN echo "$A $E" > seen && cat a.txt /unpacked/t.txt >> seen && echo more >> seen"#,
        )],
        files: &[],
        tar: None,
        args: &[],
        ran: &[9, 10, 11, 12, 13, 14, 15, 16],
        check: |a| expect_text(a, "work/seen", "1 1\na\nt\nmore\n"),
    },
    Variant {
        what: "RUN: the last one's command",
        lines: &[(12, "RUN id -u > uid && id -g > gid")],
        files: &[],
        tar: None,
        args: &[],
        ran: &[12, 13, 14, 15, 16],
        check: |a| expect_text(a, "work/gid", "0\n"),
    },
    Variant {
        what: "ARG: its default",
        lines: &[(4, "ARG A=2")],
        files: &[],
        tar: None,
        args: &[],
        ran: &[4, 9, 10, 11, 12, 13, 14, 15, 16],
        check: |a| expect_text(a, "work/seen", "2 1\na\nt\n"),
    },
    Variant {
        what: "ARG: a --build-arg",
        lines: &[],
        files: &[],
        tar: None,
        args: &["--build-arg", "A=3"],
        ran: &[4, 9, 10, 11, 12, 13, 14, 15, 16],
        check: |a| expect_text(a, "work/seen", "3 1\na\nt\n"),
    },
    Variant {
        what: "ENV: its value",
        lines: &[(5, "ENV E=2")],
        files: &[],
        tar: None,
        args: &[],
        ran: &[5, 9, 10, 11, 12, 13, 14, 15, 16],
        check: |a| {
            expect_text(a, "work/seen", "1 2\na\nt\n")?;
            let env = image_config(a)["Env"].clone();
            let has = env.as_array().is_some_and(|e| e.iter().any(|v| v == "E=2"));
            if has {
                Ok(())
            } else {
                Err(format!("Env has no E=2: {env}"))
            }
        },
    },
    Variant {
        what: "WORKDIR: its path",
        lines: &[(6, "WORKDIR /work2")],
        files: &[],
        tar: None,
        args: &[],
        ran: &[6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
        check: |a| {
            expect_text(a, "work2/seen", "1 1\na\nt\n")?;
            expect_eq(
                "WorkingDir",
                &image_config(a)["WorkingDir"],
                &"/work2".into(),
            )
        },
    },
    Variant {
        what: "USER: uid to uid:gid",
        lines: &[(10, "USER 0:0")],
        files: &[],
        tar: None,
        args: &[],
        ran: &[10, 12, 13, 14, 15, 16],
        check: |a| expect_eq("User", &image_config(a)["User"], &"0:0".into()),
    },
    Variant {
        what: "SHELL: its options",
        lines: &[(11, r#"SHELL ["/bin/sh", "-ec"]"#)],
        files: &[],
        tar: None,
        args: &[],
        ran: &[11, 12, 13, 14, 15, 16],
        check: |a| {
            expect_eq(
                "Shell",
                &image_config(a)["Shell"],
                &serde_json::json!(["/bin/sh", "-ec"]),
            )
        },
    },
    Variant {
        what: "LABEL: its value (the RUN before it must not rerun)",
        lines: &[(13, "LABEL l=2")],
        files: &[],
        tar: None,
        args: &[],
        ran: &[13],
        check: |a| expect_eq("label l", &image_config(a)["Labels"]["l"], &"2".into()),
    },
    Variant {
        what: "EXPOSE: its port",
        lines: &[(14, "EXPOSE 81")],
        files: &[],
        tar: None,
        args: &[],
        ran: &[14],
        check: |a| {
            expect_eq(
                "ExposedPorts",
                &image_config(a)["ExposedPorts"],
                &serde_json::json!({"81/tcp": {}}),
            )
        },
    },
    Variant {
        what: "STOPSIGNAL: its signal",
        lines: &[(15, "STOPSIGNAL SIGINT")],
        files: &[],
        tar: None,
        args: &[],
        ran: &[15],
        check: |a| {
            expect_eq(
                "StopSignal",
                &image_config(a)["StopSignal"],
                &"SIGINT".into(),
            )
        },
    },
    Variant {
        what: "CMD: its command",
        lines: &[(16, r#"CMD ["cat", "uid"]"#)],
        files: &[],
        tar: None,
        args: &[],
        ran: &[16],
        check: |a| {
            expect_eq(
                "Cmd",
                &image_config(a)["Cmd"],
                &serde_json::json!(["cat", "uid"]),
            )
        },
    },
];

#[test]
fn an_unchanged_rebuild_hits_every_step_and_is_the_same_image() {
    let env = TestEnv::new("cache-unchanged");
    let ctx = Context::new();
    kinds_context(&ctx);
    let lines: Vec<String> = KINDS.iter().map(|l| l.to_string()).collect();
    let first = build(&env, &ctx, &[]);
    first.progress.assert_all(Ran);
    let second = build(&env, &ctx, &[]);
    second.progress.assert_steps(
        &expected_steps(&lines, &[])
            .iter()
            .map(|(l, o)| (l.as_str(), *o))
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        second.id, first.id,
        "a fully cached rebuild is another image"
    );
    // Without --explain-cache nothing explains anything.
    assert!(
        !second.out.stderr_text().contains("cache_miss"),
        "{}",
        second.out.describe()
    );
}

#[test]
fn each_instruction_kind_reruns_from_its_change_and_keeps_what_is_before() {
    let env = TestEnv::new("cache-kinds");
    let ctx = Context::new();
    kinds_context(&ctx);
    let base = build(&env, &ctx, &[]);
    base.progress.assert_all(Ran);

    let mut failures = Vec::new();
    for variant in VARIANTS {
        // Back to the base context, then this one change.
        kinds_context(&ctx);
        let mut lines: Vec<String> = KINDS.iter().map(|l| l.to_string()).collect();
        for (number, text) in variant.lines {
            lines[number - 1] = text.to_string();
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        ctx.dockerfile(&refs);
        for (name, content) in variant.files {
            ctx.file(name, content);
        }
        if let Some(t) = variant.tar {
            ctx.file("files.tar", tar_of(&[("t.txt", t)]));
        }
        let (built, archive) = build_archive(&env, &ctx, variant.args);
        let expected = expected_steps(&lines, variant.ran);
        if built.progress.summary() != expected {
            let wrong: Vec<String> = built
                .progress
                .summary()
                .iter()
                .zip(&expected)
                .filter(|(got, want)| got != want)
                .map(|(got, want)| {
                    format!("{} {:?}, expected {} {:?}", got.0, got.1, want.0, want.1)
                })
                .collect();
            let wrong = if built.progress.summary().len() == expected.len() {
                wrong.join("; ")
            } else {
                format!(
                    "steps {:?}, expected {:?}",
                    built.progress.summary(),
                    expected
                )
            };
            failures.push(format!("{}: {wrong}", variant.what));
        }
        if let Err(e) = (variant.check)(&archive) {
            failures.push(format!("{}: the image is wrong: {e}", variant.what));
        }
        if built.id == base.id {
            failures.push(format!("{}: the image did not change", variant.what));
        }
    }
    // Every variant left the base's records alone: the base hits completely again.
    kinds_context(&ctx);
    let again = build(&env, &ctx, &[]);
    if again.progress.summary().iter().any(|(_, o)| *o != Cached) {
        failures.push(format!("the base again: {:?}", again.progress.summary()));
    }
    if again.id != base.id {
        failures.push("the base again is another image".to_string());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_label_change_does_not_rerun_the_run_before_it() {
    let env = TestEnv::new("cache-label");
    let ctx = Context::with_busybox();
    let lines = |label: &'static str| {
        with_shell(&["RUN echo built > /built", label, "RUN echo after > /after"])
    };
    ctx.dockerfile(&lines("LABEL version=1"));
    let (_, first) = build_archive(&env, &ctx, &[]);
    ctx.dockerfile(&lines("LABEL version=2"));
    let (second, archive) = build_archive(&env, &ctx, &[]);
    second.progress.assert_steps(&[
        ("COPY busybox /bin/busybox", Cached),
        (r#"RUN ["/bin/busybox","--install","-s","/bin"]"#, Cached),
        ("RUN echo built > /built", Cached),
        ("LABEL version=2", Ran),
        ("RUN echo after > /after", Cached),
    ]);
    assert_eq!(image_config(&archive)["Labels"]["version"], "2");
    // The layers are the very ones of the first build.
    assert_eq!(
        archive.docker_manifest()["Layers"],
        first.docker_manifest()["Layers"]
    );
}

#[test]
fn mtime_and_atime_changes_still_hit() {
    let env = TestEnv::new("cache-mtime");
    let ctx = Context::new();
    kinds_context(&ctx);
    ctx.file("dir/sub/b.txt", "b\n");
    let mut lines = KINDS.to_vec();
    lines.insert(8, "COPY dir /dir/");
    ctx.dockerfile(&lines);
    let first = build(&env, &ctx, &[]);
    first.progress.assert_all(Ran);
    for (what, time) in [
        (
            "times in the past",
            UNIX_EPOCH + Duration::from_secs(1_000_000_000),
        ),
        (
            "times in the future",
            SystemTime::now() + Duration::from_secs(86_400 * 365),
        ),
    ] {
        set_times(ctx.path(), time);
        assert_eq!(mtime(&ctx.join("dir/sub/b.txt")), time);
        let again = build(&env, &ctx, &[]);
        assert!(
            again.progress.summary().iter().all(|(_, o)| *o == Cached),
            "{what}: {:?}\n{}",
            again.progress.summary(),
            again.progress.log
        );
        assert_eq!(again.id, first.id, "{what}: another image");
    }
    // `touch` (now) as well.
    let status = Command::new("touch")
        .arg(ctx.join("a.txt"))
        .arg(ctx.join("files.tar"))
        .arg(ctx.join("dir/sub/b.txt"))
        .status()
        .expect("running touch");
    assert!(status.success());
    let touched = build(&env, &ctx, &[]);
    touched.progress.assert_all(Cached);
    assert_eq!(touched.id, first.id);
}

#[test]
fn a_content_change_misses_even_with_the_same_size_and_mtime() {
    let env = TestEnv::new("cache-content");
    let ctx = Context::with_busybox();
    ctx.file("data.txt", "one\n");
    ctx.dockerfile(&with_shell(&[
        "COPY data.txt /data.txt",
        "RUN cat /data.txt > /seen",
    ]));
    let old = SystemTime::now() - Duration::from_secs(3600);
    set_times(&ctx.join("data.txt"), old);
    let first = build(&env, &ctx, &[]);
    first.progress.assert_all(Ran);
    // The stat cache knows data.txt now; same size, same mtime, other bytes.
    build(&env, &ctx, &[]).progress.assert_all(Cached);
    ctx.file("data.txt", "two\n");
    set_times(&ctx.join("data.txt"), old);
    let (changed, archive) = build_archive(&env, &ctx, &[]);
    changed.progress.assert_steps(&[
        ("COPY busybox /bin/busybox", Cached),
        (r#"RUN ["/bin/busybox","--install","-s","/bin"]"#, Cached),
        ("COPY data.txt /data.txt", Ran),
        ("RUN cat /data.txt > /seen", Ran),
    ]);
    assert_eq!(layer_text(&archive, "seen"), "two\n");
}

#[test]
fn a_fresh_copy_of_the_context_elsewhere_hits() {
    let env = TestEnv::new("cache-clone");
    let ctx = Context::new();
    kinds_context(&ctx);
    let first = build(&env, &ctx, &[]);
    first.progress.assert_all(Ran);
    // Like a fresh `git clone`: other directory, other inodes, new times.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let clone = elsewhere.path().join("clone");
    ctx.copy_to(&clone);
    let cloned = build_dir(&env, &clone, &[]);
    cloned.progress.assert_all(Cached);
    assert_eq!(cloned.id, first.id, "the clone built another image");
}

/// Checks out `source` into `dest` the way git does: files created anew under `umask`.
fn checkout(source: &Path, dest: &Path, umask: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"umask "$1" && cp -R "$2" "$3""#)
        .args(["sh", umask])
        .arg(source)
        .arg(dest)
        .status()
        .expect("running sh");
    assert!(status.success(), "checking out with umask {umask}");
}

/// A "repository" whose files ask for 0666 (0777 for busybox and directories), checked out into
/// two directories with the umasks 022 and 002.
fn two_checkouts(
    dockerfile: &[&str],
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let repo = Context::with_busybox();
    repo.file("app/a.txt", "a\n")
        .file("app/b.txt", "b\n")
        .file("app/sub/c.txt", "c\n");
    repo.dockerfile(dockerfile);
    let chmod = |p: &Path, mode: u32| {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod")
    };
    for file in ["app/a.txt", "app/b.txt", "app/sub/c.txt", "Dockerfile"] {
        chmod(&repo.join(file), 0o666);
    }
    for exec in ["busybox", "app", "app/sub"] {
        chmod(&repo.join(exec), 0o777);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let strict = dir.path().join("umask-022");
    let group = dir.path().join("umask-002");
    checkout(repo.path(), &strict, "022");
    checkout(repo.path(), &group, "002");
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&strict.join("app/a.txt")), 0o644);
    assert_eq!(mode(&group.join("app/a.txt")), 0o664);
    (dir, strict, group)
}

#[test]
fn under_chmod_the_umask_of_a_checkout_does_not_change_keys() {
    let env = TestEnv::new("cache-umask-chmod");
    let (_dir, strict, group) = two_checkouts(&[
        "FROM scratch",
        "COPY --chmod=755 busybox /bin/busybox",
        "COPY --chmod=644 app/ /app/",
    ]);
    let first = build_dir(&env, &strict, &[]);
    first.progress.assert_all(Ran);
    let second = build_dir(&env, &group, &["--explain-cache"]);
    second.progress.assert_steps(&[
        ("COPY --chmod=755 busybox /bin/busybox", Cached),
        ("COPY --chmod=644 app/ /app/", Cached),
    ]);
    assert_eq!(second.id, first.id);
}

#[test]
fn without_chmod_the_modes_are_part_of_the_key() {
    let env = TestEnv::new("cache-umask-modes");
    let (_dir, strict, group) = two_checkouts(&[
        "FROM scratch",
        "COPY --chmod=755 busybox /bin/busybox",
        "COPY app/ /app/",
    ]);
    let out_strict = env.path("strict.tar");
    let out_group = env.path("group.tar");
    let first = build_dir(&env, &strict, &["-o", out_strict.to_str().unwrap()]);
    first.progress.assert_all(Ran);
    let second = build_dir(
        &env,
        &group,
        &["--explain-cache", "-o", out_group.to_str().unwrap()],
    );
    second.progress.assert_steps(&[
        ("COPY --chmod=755 busybox /bin/busybox", Cached),
        ("COPY app/ /app/", Ran),
    ]);
    let why = second.progress.step("COPY app/ /app/").misses.join(" | ");
    for name in ["a.txt", "b.txt", "c.txt"] {
        assert!(
            why.contains(name),
            "the explanation does not name {name}: {why}"
        );
    }
    // The layers keep the checkouts' modes, which is why the keys differ.
    let mode = |archive: &Path, path: &str| top_entry(&Archive::open(archive), path).mode & 0o777;
    assert_eq!(mode(&out_strict, "app/a.txt"), 0o644);
    assert_eq!(mode(&out_group, "app/a.txt"), 0o664);
    assert_ne!(second.id, first.id);
}

#[test]
fn changes_to_dockerignored_files_still_hit() {
    let env = TestEnv::new("cache-dockerignore");
    let ctx = Context::with_busybox();
    ctx.file(".dockerignore", "ignored.txt\nlogs\n")
        .file("kept.txt", "kept\n")
        .file("ignored.txt", "one\n")
        .file("logs/build.log", "one\n");
    ctx.dockerfile(&with_shell(&["COPY . /ctx/", "RUN ls /ctx > /listing"]));
    let first = build(&env, &ctx, &[]);
    first.progress.assert_all(Ran);
    ctx.file("ignored.txt", "two, longer\n")
        .file("logs/build.log", "two\n")
        .file("logs/new.log", "new\n");
    let ignored = build(&env, &ctx, &[]);
    ignored.progress.assert_all(Cached);
    assert_eq!(ignored.id, first.id);
    // The same change to a file that is not ignored misses.
    ctx.file("kept.txt", "two, longer\n");
    let kept = build(&env, &ctx, &["--explain-cache"]);
    assert_eq!(kept.progress.outcome("COPY . /ctx/"), Ran);
    assert_eq!(kept.progress.outcome("RUN ls /ctx > /listing"), Ran);
    let why = kept.progress.step("COPY . /ctx/").misses.join(" | ");
    assert!(why.contains("kept.txt"), "{why}");
    assert!(
        !why.contains("ignored.txt") && !why.contains("build.log"),
        "{why}"
    );
}

#[test]
fn no_cache_runs_every_step_and_still_records() {
    let env = TestEnv::new("cache-no-cache");
    let ctx = Context::new();
    kinds_context(&ctx);
    let forced = build(&env, &ctx, &["--no-cache"]);
    forced.progress.assert_all(Ran);
    // What --no-cache built is in the cache for the next build.
    let next = build(&env, &ctx, &[]);
    next.progress.assert_all(Cached);
    assert_eq!(next.id, forced.id);
    // And on a warm store it still runs everything.
    let again = build(&env, &ctx, &["--no-cache"]);
    again.progress.assert_all(Ran);
    assert_eq!(again.progress.steps.len(), KINDS.len() - 1);
}

/// Stages `base` (0), `tools` (1), `app` (2) and the final one (3).
fn stages_context() -> Context {
    let ctx = Context::with_busybox();
    ctx.file("a.txt", "a\n");
    ctx.dockerfile(&[
        "FROM scratch AS base",
        "COPY busybox /bin/busybox",
        r#"RUN ["/bin/busybox","--install","-s","/bin"]"#,
        "FROM base AS tools",
        "RUN echo tools > /tools",
        "FROM base AS app",
        "COPY a.txt /a.txt",
        "RUN cat /a.txt > /app",
        "FROM base",
        "COPY --from=tools /tools /tools",
        "COPY --from=app /app /app",
        "RUN cat /tools /app > /all",
    ]);
    ctx
}

const STAGE_STEPS: [&str; 8] = [
    "COPY busybox /bin/busybox",
    r#"RUN ["/bin/busybox","--install","-s","/bin"]"#,
    "RUN echo tools > /tools",
    "COPY a.txt /a.txt",
    "RUN cat /a.txt > /app",
    "COPY --from=tools /tools /tools",
    "COPY --from=app /app /app",
    "RUN cat /tools /app > /all",
];

/// Checks that exactly the steps in `ran` of [`STAGE_STEPS`] ran.
#[track_caller]
fn assert_stage_steps(progress: &Progress, ran: &[&str]) {
    let got: BTreeMap<&str, Outcome> = STAGE_STEPS
        .iter()
        .map(|s| (*s, progress.outcome(s)))
        .collect();
    let want: BTreeMap<&str, Outcome> = STAGE_STEPS
        .iter()
        .map(|s| (*s, if ran.contains(s) { Ran } else { Cached }))
        .collect();
    assert_eq!(got, want, "\n{}", progress.log);
    assert_eq!(
        progress.steps.len(),
        STAGE_STEPS.len(),
        "\n{}",
        progress.log
    );
}

#[test]
fn no_cache_filter_reruns_only_the_named_stages() {
    let env = TestEnv::new("cache-no-cache-filter");
    let ctx = stages_context();
    let first = build(&env, &ctx, &[]);
    assert_stage_steps(&first.progress, &STAGE_STEPS);

    let app = build(&env, &ctx, &["--no-cache-filter", "app"]);
    // The app stage made the same /app, so the final stage still hits.
    assert_stage_steps(
        &app.progress,
        &["COPY a.txt /a.txt", "RUN cat /a.txt > /app"],
    );
    assert_eq!(app.id, first.id);

    let both = build(
        &env,
        &ctx,
        &["--no-cache-filter", "app", "--no-cache-filter", "tools"],
    );
    assert_stage_steps(
        &both.progress,
        &[
            "RUN echo tools > /tools",
            "COPY a.txt /a.txt",
            "RUN cat /a.txt > /app",
        ],
    );

    // A stage by its index: 1 is `tools`.
    let by_index = build(&env, &ctx, &["--no-cache-filter", "1"]);
    assert_stage_steps(&by_index.progress, &["RUN echo tools > /tools"]);

    // The last stage, which has no name, by its index.
    let last = build(&env, &ctx, &["--no-cache-filter", "3"]);
    assert_stage_steps(
        &last.progress,
        &[
            "COPY --from=tools /tools /tools",
            "COPY --from=app /app /app",
            "RUN cat /tools /app > /all",
        ],
    );
}

#[test]
fn identical_steps_of_two_stages_run_once() {
    let env = TestEnv::new("cache-twins");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&[
        "FROM scratch AS base",
        "COPY busybox /bin/busybox",
        r#"RUN ["/bin/busybox","--install","-s","/bin"]"#,
        "FROM base AS one",
        "RUN echo same > /same",
        "FROM base AS two",
        "RUN echo same > /same",
        "FROM base",
        "COPY --from=one /same /one",
        "COPY --from=two /same /two",
    ]);
    let (first, archive) = build_archive(&env, &ctx, &[]);
    let one = first.progress.at("[one 2/2]");
    let two = first.progress.at("[two 2/2]");
    assert_eq!(one.instruction, "RUN echo same > /same");
    assert_eq!(two.instruction, "RUN echo same > /same");
    let outcomes = [one.outcome.unwrap(), two.outcome.unwrap()];
    let ran = outcomes.iter().filter(|o| **o == Ran).count();
    let cached = outcomes.iter().filter(|o| **o == Cached).count();
    assert_eq!(
        (ran, cached),
        (1, 1),
        "the twin RUNs: one must run and the other hit\n{}",
        first.progress.log
    );
    assert_eq!(layer_text(&archive, "one"), "same\n");
    assert_eq!(layer_text(&archive, "two"), "same\n");
    let again = build(&env, &ctx, &[]);
    again.progress.assert_all(Cached);
    assert_eq!(again.id, first.id);
}

#[test]
fn explain_cache_names_the_changed_file() {
    let env = TestEnv::new("cache-explain-file");
    let ctx = Context::with_busybox();
    ctx.file("src/one.txt", "one\n")
        .file("src/two.txt", "two\n")
        .file("src/deep/three.txt", "three\n");
    ctx.dockerfile(&with_shell(&[
        "COPY src /src",
        "RUN cat /src/two.txt > /seen",
    ]));
    build(&env, &ctx, &[]).progress.assert_all(Ran);
    ctx.file("src/two.txt", "TWO\n");
    let changed = build(&env, &ctx, &["--explain-cache"]);
    changed.progress.assert_steps(&[
        ("COPY busybox /bin/busybox", Cached),
        (r#"RUN ["/bin/busybox","--install","-s","/bin"]"#, Cached),
        ("COPY src /src", Ran),
        ("RUN cat /src/two.txt > /seen", Ran),
    ]);
    let copy = changed.progress.step("COPY src /src").misses.clone();
    assert_eq!(copy.len(), 1, "{}", changed.progress.log);
    assert!(copy[0].contains("two.txt"), "{copy:?}");
    assert!(
        !copy[0].contains("one.txt") && !copy[0].contains("three.txt"),
        "unchanged files named: {copy:?}"
    );
    // The RUN after it missed because of its parent: line 4 made its filesystem.
    let run = changed
        .progress
        .step("RUN cat /src/two.txt > /seen")
        .misses
        .clone();
    assert_eq!(run, ["parent changed: line 4"], "{}", changed.progress.log);
    // Hits are not explained.
    for instruction in [
        "COPY busybox /bin/busybox",
        r#"RUN ["/bin/busybox","--install","-s","/bin"]"#,
    ] {
        assert!(
            changed.progress.step(instruction).misses.is_empty(),
            "{}",
            changed.progress.log
        );
    }
    // Files added and removed are named too.
    fs::remove_file(ctx.join("src/one.txt")).expect("removing a file");
    ctx.file("src/four.txt", "four\n");
    let moved = build(&env, &ctx, &["--explain-cache"]);
    let why = moved.progress.step("COPY src /src").misses.join(" | ");
    assert!(why.contains("one.txt") && why.contains("four.txt"), "{why}");
    assert!(!why.contains("three.txt"), "{why}");
}

#[test]
fn explain_cache_names_the_changed_build_arg() {
    let env = TestEnv::new("cache-explain-arg");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "ARG FLAVOUR",
        "ARG OTHER=same",
        "RUN echo $FLAVOUR $OTHER > /flavour",
    ]));
    build(&env, &ctx, &["--build-arg", "FLAVOUR=vanilla"])
        .progress
        .assert_all(Ran);
    let changed = build(
        &env,
        &ctx,
        &["--explain-cache", "--build-arg", "FLAVOUR=chocolate"],
    );
    assert_eq!(
        changed
            .progress
            .outcome("RUN echo $FLAVOUR $OTHER > /flavour"),
        Ran
    );
    assert_eq!(
        changed.progress.outcome("COPY busybox /bin/busybox"),
        Cached
    );
    let why = changed
        .progress
        .step("RUN echo $FLAVOUR $OTHER > /flavour")
        .misses
        .join(" | ");
    assert!(why.contains("variable FLAVOUR"), "{why}");
    assert!(
        why.contains("vanilla") && why.contains("chocolate"),
        "{why}"
    );
    assert!(!why.contains("OTHER"), "an unchanged arg is named: {why}");
    // Back to vanilla: a hit.
    let back = build(&env, &ctx, &["--build-arg", "FLAVOUR=vanilla"]);
    assert_eq!(
        back.progress.outcome("RUN echo $FLAVOUR $OTHER > /flavour"),
        Cached
    );
}

#[test]
fn explain_cache_shows_the_instruction_change_and_the_parent_line() {
    let env = TestEnv::new("cache-explain-instruction");
    let ctx = Context::with_busybox();
    let lines = |first: &'static str| {
        with_shell(&[
            first,
            "ENV AFTER=1",
            "RUN echo after > /after",
            "LABEL done=yes",
        ])
    };
    ctx.dockerfile(&lines("RUN echo one > /f"));
    build(&env, &ctx, &[]).progress.assert_all(Ran);
    ctx.dockerfile(&lines("RUN echo two > /f"));
    let changed = build(&env, &ctx, &["--explain-cache"]);
    changed.progress.assert_steps(&[
        ("COPY busybox /bin/busybox", Cached),
        (r#"RUN ["/bin/busybox","--install","-s","/bin"]"#, Cached),
        ("RUN echo two > /f", Ran),
        ("ENV AFTER=1", Ran),
        ("RUN echo after > /after", Ran),
        ("LABEL done=yes", Ran),
    ]);
    let misses = |i: &str| changed.progress.step(i).misses.clone();
    // The operation as it runs (a shell-form RUN with its shell), old → new.
    let why = misses("RUN echo two > /f");
    assert_eq!(why.len(), 1, "{}", changed.progress.log);
    assert!(
        why[0].starts_with(r#"instruction changed: "RUN "#)
            && why[0].contains(r#"echo one > /f" → "RUN "#)
            && why[0].ends_with(r#"echo two > /f""#),
        "{why:?}"
    );
    // Line 4 made the filesystem the later steps start from (ENV makes none).
    assert_eq!(misses("ENV AFTER=1"), ["parent changed: line 4"]);
    assert_eq!(
        misses("RUN echo after > /after"),
        ["parent changed: line 4"]
    );
    assert_eq!(misses("LABEL done=yes"), ["parent changed: line 6"]);
}

/// Every line of a rawjson progress, parsed (panics on a line that is not a JSON object).
#[track_caller]
fn json_events(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{stderr}"));
            assert!(value["event"].is_string(), "no event in {line}");
            value
        })
        .collect()
}

#[test]
fn explain_cache_in_rawjson_progress() {
    let env = TestEnv::new("cache-explain-rawjson");
    let ctx = Context::with_busybox();
    ctx.file("data.txt", "one\n");
    let lines = |run: &'static str| {
        with_shell(&["ARG V", "COPY data.txt /data.txt", run, "RUN echo $V > /v"])
    };
    ctx.dockerfile(&lines("RUN cat /data.txt > /seen"));
    build(&env, &ctx, &["--build-arg", "V=1"])
        .progress
        .assert_all(Ran);

    ctx.file("data.txt", "two\n");
    ctx.dockerfile(&lines("RUN cat /data.txt > /seen2"));
    let out = env
        .rbuild()
        .args([
            "build",
            "--progress=rawjson",
            "--explain-cache",
            "--build-arg",
            "V=2",
        ])
        .arg(ctx.path())
        .run();
    out.assert_success();
    let stderr = out.stderr_text();
    let events = json_events(&stderr);
    let names: BTreeMap<u64, String> = events
        .iter()
        .filter(|e| e["event"] == "step_started")
        .map(|e| {
            let step = e["step"].as_u64().expect("step number");
            let name = e["name"].as_str().expect("step name");
            (
                step,
                name.split_once("] ").map_or(name, |(_, i)| i).to_string(),
            )
        })
        .collect();
    let of_kind = |kind: &str| -> BTreeSet<String> {
        events
            .iter()
            .filter(|e| e["event"] == kind)
            .map(|e| names[&e["step"].as_u64().expect("step number")].clone())
            .collect()
    };
    let misses: BTreeMap<String, String> = events
        .iter()
        .filter(|e| e["event"] == "cache_miss")
        .map(|e| {
            let name = names[&e["step"].as_u64().expect("step number")].clone();
            let why = e["explanation"].as_str().expect("explanation").to_string();
            (name, why)
        })
        .collect();
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        of_kind("step_cached"),
        set(&[
            "COPY busybox /bin/busybox",
            r#"RUN ["/bin/busybox","--install","-s","/bin"]"#
        ]),
        "{stderr}"
    );
    assert_eq!(
        of_kind("step_completed"),
        set(&[
            "ARG V",
            "COPY data.txt /data.txt",
            "RUN cat /data.txt > /seen2",
            "RUN echo $V > /v"
        ]),
        "{stderr}"
    );
    assert_eq!(
        misses.keys().cloned().collect::<BTreeSet<_>>(),
        of_kind("step_completed"),
        "every step that ran has a cache_miss event\n{stderr}"
    );
    assert!(
        misses["COPY data.txt /data.txt"].contains("data.txt"),
        "{misses:?}"
    );
    assert!(
        misses["COPY data.txt /data.txt"].starts_with("files changed"),
        "{misses:?}"
    );
    let run = &misses["RUN cat /data.txt > /seen2"];
    assert!(
        run.starts_with(r#"instruction changed: "RUN "#)
            && run.contains(r#"cat /data.txt > /seen" → "RUN "#)
            && run.contains(r#"cat /data.txt > /seen2""#),
        "{misses:?}"
    );
    assert!(run.contains("parent changed: line 5"), "{misses:?}");
    assert!(
        misses["RUN echo $V > /v"].contains("variable V"),
        "{misses:?}"
    );
    assert!(
        misses["RUN echo $V > /v"].contains("parent changed: line 6"),
        "{misses:?}"
    );
    // The plain lines are not mixed in.
    assert!(!stderr.contains("#1 "), "{stderr}");
}

#[test]
fn a_cached_image_is_the_same_and_runs() {
    let env = TestEnv::new("cache-run");
    let ctx = Context::new();
    kinds_context(&ctx);
    let (first, first_archive) = build_archive(&env, &ctx, &[]);
    first.progress.assert_all(Ran);
    let (cached, archive) = build_archive(&env, &ctx, &[]);
    cached.progress.assert_all(Cached);
    assert_eq!(cached.id, first.id);
    assert_eq!(archive.image_id(), first_archive.image_id());
    assert_eq!(
        archive.docker_manifest()["Layers"],
        first_archive.docker_manifest()["Layers"]
    );
    let reference = env.image_ref();
    let image = Docker::get().load_as(&tag_archive(&env, &ctx, &reference), &reference);
    assert_eq!(image.id(), first.id);
    // CMD ["cat", "seen"] in WORKDIR /work.
    assert_eq!(image.run(&[]), "1 1\na\nt\n");
    assert_eq!(image.read("/work/uid"), "0\n");
    assert_eq!(image.read("/unpacked/t.txt"), "t\n");
}

/// A third, fully cached build tagged `reference`, written to an archive for `docker load`.
#[track_caller]
fn tag_archive(env: &TestEnv, ctx: &Context, reference: &str) -> std::path::PathBuf {
    let path = env.path("tagged.tar");
    let built = build(env, ctx, &["-t", reference, "-o", path.to_str().unwrap()]);
    built.progress.assert_all(Cached);
    path
}

#[test]
fn copy_from_a_stage_misses_when_only_the_owner_of_its_files_changes() {
    let env = TestEnv::new("cache-copy-from-owner");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&[
        "FROM scratch AS base",
        "COPY busybox /bin/busybox",
        r#"RUN ["/bin/busybox","--install","-s","/bin"]"#,
        "FROM base AS maker",
        "ARG OWNER=1:1",
        "RUN echo x > /made && chown $OWNER /made",
        "FROM scratch",
        "COPY --from=maker /made /made",
    ]);
    let (_, first) = build_archive(&env, &ctx, &[]);
    let entry = top_entry(&first, "made");
    assert_eq!((entry.uid, entry.gid), (1, 1));
    let (changed, archive) =
        build_archive(&env, &ctx, &["--explain-cache", "--build-arg", "OWNER=2:2"]);
    assert_eq!(
        changed.progress.outcome("COPY busybox /bin/busybox"),
        Cached
    );
    assert_eq!(
        changed.progress.outcome("COPY --from=maker /made /made"),
        Ran
    );
    let why = changed
        .progress
        .step("COPY --from=maker /made /made")
        .misses
        .join(" | ");
    assert!(why.contains("made"), "{why}");
    let entry = top_entry(&archive, "made");
    assert_eq!(
        (entry.uid, entry.gid),
        (2, 2),
        "the copy kept the old owner"
    );
}

#[test]
fn other_inputs_of_keys() {
    let env = TestEnv::new("cache-other-inputs");
    let ctx = Context::with_busybox();
    ctx.file("a.txt", "a\n")
        .file("b.txt", "b\n")
        .file("ignored.txt", "i\n")
        .file(".dockerignore", "ignored.txt\n")
        .symlink("link", "a.txt");
    let dockerfile = |heredoc: &'static str| {
        with_shell(&[
            "ARG SRC=a.txt",
            "COPY $SRC /src",
            "COPY . /ctx/",
            "RUN <<EOT",
            heredoc,
            "EOT",
            "RUN echo $HTTP_PROXY > /proxy",
        ])
    };
    ctx.dockerfile(&dockerfile("echo one > /h"));
    build(&env, &ctx, &[]).progress.assert_all(Ran);
    let explain = |args: &[&str]| {
        let mut all = vec!["--explain-cache"];
        all.extend_from_slice(args);
        build(&env, &ctx, &all)
    };
    let steps = [
        "COPY $SRC /src",
        "COPY . /ctx/",
        "RUN <<EOT",
        "RUN echo $HTTP_PROXY > /proxy",
    ];
    let outcomes = |b: &Build| steps.map(|s| b.progress.outcome(s));

    // A build arg in a COPY source: the files are those of the new value.
    let src = explain(&["--build-arg", "SRC=b.txt"]);
    assert_eq!(outcomes(&src), [Ran, Ran, Ran, Ran], "{}", src.progress.log);
    let why = src.progress.step("COPY $SRC /src").misses.join(" | ");
    assert!(why.contains("b.txt"), "{why}");

    // Proxy build args are kept out of keys, as in BuildKit.
    let proxy = explain(&["--build-arg", "HTTP_PROXY=http://127.0.0.1:9"]);
    proxy.progress.assert_all(Cached);

    // A symlink's target.
    fs::remove_file(ctx.join("link")).expect("removing the link");
    ctx.symlink("link", "b.txt");
    let link = explain(&[]);
    assert_eq!(
        outcomes(&link),
        [Cached, Ran, Ran, Ran],
        "{}",
        link.progress.log
    );
    let why = link.progress.step("COPY . /ctx/").misses.join(" | ");
    assert!(why.contains("link"), "{why}");

    // A .dockerignore that no longer ignores a file.
    ctx.file(".dockerignore", "");
    let unignored = explain(&[]);
    assert_eq!(
        outcomes(&unignored),
        [Cached, Ran, Ran, Ran],
        "{}",
        unignored.progress.log
    );
    let why = unignored.progress.step("COPY . /ctx/").misses.join(" | ");
    assert!(why.contains("ignored.txt"), "{why}");

    // A heredoc's body (the Dockerfile is in the context, so COPY . misses too).
    ctx.dockerfile(&dockerfile("echo two > /h"));
    let heredoc = explain(&[]);
    assert_eq!(
        outcomes(&heredoc),
        [Cached, Ran, Ran, Ran],
        "{}",
        heredoc.progress.log
    );
    let why = heredoc.progress.step("RUN <<EOT").misses.join(" | ");
    assert!(
        why.contains("echo one") && why.contains("echo two"),
        "{why}"
    );

    // SOURCE_DATE_EPOCH changes layer bytes, so every step.
    let epoch = explain(&["--build-arg", "SOURCE_DATE_EPOCH=100"]);
    epoch.progress.assert_all(Ran);
    assert!(
        epoch
            .progress
            .misses()
            .iter()
            .all(|m| m.contains("SOURCE_DATE_EPOCH")),
        "{}",
        epoch.progress.log
    );
}

/// A stage on a directory context (`FROM NAME`, `--build-context NAME=DIR`) starts with the
/// directory's layer, a step keyed by the directory's files as a COPY is: unchanged, the build
/// hits and gives the same image; a changed file reruns it and what follows (and
/// `--explain-cache` names the file); a file its `.dockerignore` leaves out changes nothing.
#[test]
fn a_directory_base_reruns_when_its_files_change() {
    let env = TestEnv::new("cache-dir-base");
    let rootfs = tempfile::tempdir().expect("temp dir");
    let root = rootfs.path();
    fs::create_dir(root.join("bin")).expect("bin/");
    fs::copy(rbuild_e2e::context::busybox_path(), root.join("bin/busybox")).expect("busybox");
    fs::write(root.join("file"), "one\n").expect("file");
    fs::write(root.join("notes.txt"), "not in the image\n").expect("notes");
    fs::write(root.join(".dockerignore"), "notes.txt\n").expect(".dockerignore");
    let ctx = Context::new();
    let run = r#"RUN ["/bin/busybox", "sh", "-c", "/bin/busybox cat /file > /out"]"#;
    ctx.dockerfile(&["FROM base", run]);
    let flag = format!("base={}", root.display());
    let args = ["--build-context", flag.as_str()];

    let (first, archive) = build_archive(&env, &ctx, &args);
    first.progress.assert_steps(&[("FROM base", Ran), (run, Ran)]);
    assert_eq!(layer_text(&archive, "out"), "one\n");
    let again = build(&env, &ctx, &args);
    again.progress.assert_all(Cached);
    assert_eq!(again.id, first.id, "a fully cached rebuild is the same image");

    fs::write(root.join("notes.txt"), "edited, still ignored\n").expect("notes");
    set_times(root, SystemTime::now() + Duration::from_secs(60));
    build(&env, &ctx, &args).progress.assert_all(Cached);

    fs::write(root.join("file"), "two\n").expect("file");
    let mut explained = args.to_vec();
    explained.push("--explain-cache");
    let (changed, archive) = build_archive(&env, &ctx, &explained);
    changed.progress.assert_steps(&[("FROM base", Ran), (run, Ran)]);
    let why = changed.progress.step("FROM base").misses.join(" | ");
    assert!(why.contains("files changed: file"), "{why}\n{}", changed.progress.log);
    assert_eq!(layer_text(&archive, "out"), "two\n");
    assert_ne!(changed.id, first.id);

    fs::write(root.join("file"), "one\n").expect("file");
    let back = build(&env, &ctx, &args);
    back.progress.assert_all(Cached);
    assert_eq!(back.id, first.id, "the first contents find the first build's records");
}

#[test]
fn a_copy_rerun_after_an_edit_is_the_image_a_fresh_store_builds() {
    // A COPY that misses links the files its earlier run wrote unchanged; the
    // result must be exactly what copying every file gives.
    let env = TestEnv::new("cache-relink");
    let ctx = Context::with_busybox();
    for n in 0..40 {
        ctx.file(&format!("app/f{n:02}"), format!("file {n}\n"));
    }
    ctx.file("app/sub/deep", "deep\n");
    ctx.dockerfile(&with_shell(&[
        "COPY app /app",
        "RUN cat /app/f07 /app/f03 /app/sub/deep > /seen && stat -c '%a %u %Y' /app/f07 /app/f03 >> /seen",
    ]));
    let old = SystemTime::now() - Duration::from_secs(3600);
    set_times(&ctx.join("app"), old);
    let epoch = ["--build-arg", "SOURCE_DATE_EPOCH=0"];
    build(&env, &ctx, &epoch).progress.assert_all(Ran);

    ctx.file("app/f07", "file 7, edited\n");
    fs::set_permissions(ctx.join("app/f03"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let (rerun, archive) = build_archive(&env, &ctx, &epoch);
    rerun.progress.assert_steps(&[
        ("COPY busybox /bin/busybox", Cached),
        (r#"RUN ["/bin/busybox","--install","-s","/bin"]"#, Cached),
        ("COPY app /app", Ran),
        (
            "RUN cat /app/f07 /app/f03 /app/sub/deep > /seen && stat -c '%a %u %Y' /app/f07 /app/f03 >> /seen",
            Ran,
        ),
    ]);
    let mtime_f03 = mtime(&ctx.join("app/f03")).duration_since(UNIX_EPOCH).expect("mtime").as_secs();
    let mtime_f07 = mtime(&ctx.join("app/f07")).duration_since(UNIX_EPOCH).expect("mtime").as_secs();
    let want = format!("file 7, edited\nfile 3\ndeep\n644 0 {mtime_f07}\n600 0 {mtime_f03}\n");
    assert_eq!(layer_text(&archive, "seen"), want);

    let fresh_env = TestEnv::new("cache-relink-fresh");
    let fresh = build(&fresh_env, &ctx, &epoch);
    fresh.progress.assert_all(Ran);
    assert_eq!(rerun.id, fresh.id, "the rerun made another image than a fresh store");
    let reference = env.image_ref();
    let image = Docker::get().load_as(&archive_path_of(&env, &ctx, &reference, &epoch), &reference);
    assert_eq!(image.read("/seen"), want);
}

/// A cached build of `ctx` tagged `reference`, written to an archive for `docker load`.
#[track_caller]
fn archive_path_of(env: &TestEnv, ctx: &Context, reference: &str, args: &[&str]) -> std::path::PathBuf {
    let path = env.path(&format!("tagged-{}.tar", rbuild_e2e::env::unique_suffix()));
    let mut all = vec!["-t", reference, "-o", path.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    build(env, ctx, &all).progress.assert_all(Cached);
    path
}
