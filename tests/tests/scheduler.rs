//! The parallel scheduler: independent stages run at the same time up to `--jobs`, `-j 1` runs
//! one step at a time, stages the target does not need never run, and the first failure cancels
//! the other running steps (their processes killed) and is the error reported.
//!
//! The timed steps only `sleep`: a sleeping process uses no CPU, so four of them sleep side by
//! side even on a two-core machine busy with other tests, and the bounds below hold there.

use std::time::{Duration, Instant};

use rbuild_e2e::sandbox::{assert_no_leftovers, sleep_marker, Background, BUSYBOX_SH};
use rbuild_e2e::{Context, RunOutput, TestEnv};

/// The stages that sleep 2 s each; the final stage copies a file from each.
const SLEEPERS: [&str; 4] = ["s1", "s2", "s3", "s4"];

/// A busybox stage `base`, a stage `unused` that would sleep 30 s (before the others, so that
/// skipping it is not an accident of order), four stages of `RUN sleep 2`, and a final stage that
/// `COPY --from`s each of them.
fn four_sleepers() -> Context {
    let ctx = Context::with_busybox();
    let mut lines: Vec<String> = vec!["FROM scratch AS base".into()];
    lines.extend(BUSYBOX_SH[1..].iter().map(|l| l.to_string()));
    lines.push("FROM base AS unused".into());
    lines.push("RUN sleep 30 && echo unused-stage-ran > /unused".into());
    for name in SLEEPERS {
        lines.push(format!("FROM base AS {name}"));
        lines.push(format!("RUN sleep 2 && echo {name} > /{name}"));
    }
    lines.push("FROM base".into());
    for name in SLEEPERS {
        lines.push(format!("COPY --from={name} /{name} /{name}"));
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    ctx.dockerfile(&lines);
    ctx
}

/// One `#N` step of a plain progress log: its label and where its lines are in the log.
#[derive(Debug)]
struct Step {
    number: usize,
    label: String,
    /// Index of the `#N [stage i/n] …` line.
    started: usize,
    /// Index of the `#N DONE`/`#N CACHED` line, and the DONE seconds (None when CACHED).
    ended: Option<(usize, Option<f64>)>,
}

/// The steps of a `--progress=plain` log, in the order they started.
fn plain_steps(out: &RunOutput) -> Vec<Step> {
    let stderr = out.stderr_text();
    let mut steps: Vec<Step> = Vec::new();
    for (index, line) in stderr.lines().enumerate() {
        let Some((number, rest)) = line
            .strip_prefix('#')
            .and_then(|l| l.split_once(' '))
            .and_then(|(n, rest)| Some((n.parse::<usize>().ok()?, rest)))
        else {
            continue;
        };
        match steps.iter_mut().find(|s| s.number == number) {
            None => {
                assert!(
                    rest.starts_with('['),
                    "the first line of #{number} is not its `[stage i/n]` label: {line:?}\n{}",
                    out.describe()
                );
                steps.push(Step {
                    number,
                    label: rest.to_string(),
                    started: index,
                    ended: None,
                });
            }
            Some(step) => {
                let end = if rest == "CACHED" {
                    Some(None)
                } else {
                    rest.strip_prefix("DONE ")
                        .and_then(|s| s.strip_suffix('s'))
                        .and_then(|s| s.parse::<f64>().ok())
                        .map(Some)
                };
                if let Some(seconds) = end {
                    assert!(
                        step.ended.is_none(),
                        "#{number} ended twice\n{}",
                        out.describe()
                    );
                    step.ended = Some((index, seconds));
                }
            }
        }
    }
    steps
}

/// The step whose label contains `needle`; panics unless exactly one has.
#[track_caller]
fn step_with<'a>(steps: &'a [Step], needle: &str, out: &RunOutput) -> &'a Step {
    let found: Vec<&Step> = steps.iter().filter(|s| s.label.contains(needle)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one step with {needle:?}, found {found:?}\n{}",
        out.describe()
    );
    found[0]
}

/// The four `RUN sleep 2` steps, each checked to have really run (DONE after ≥ 2 s, not CACHED).
#[track_caller]
fn sleeper_steps<'a>(steps: &'a [Step], out: &RunOutput) -> Vec<&'a Step> {
    SLEEPERS
        .iter()
        .map(|name| {
            let step = step_with(steps, &format!("RUN sleep 2 && echo {name} "), out);
            match step.ended {
                Some((_, Some(seconds))) => assert!(
                    seconds >= 2.0,
                    "#{} slept 2 s but reports DONE {seconds}s\n{}",
                    step.number,
                    out.describe()
                ),
                other => panic!(
                    "#{} did not run to DONE ({other:?})\n{}",
                    step.number,
                    out.describe()
                ),
            }
            step
        })
        .collect()
}

/// The unused stage never shows up in progress: its step never started.
#[track_caller]
fn assert_unused_stage_never_ran(out: &RunOutput) {
    let stderr = out.stderr_text();
    assert!(
        !stderr.contains("sleep 30") && !stderr.contains("[unused"),
        "a step of the stage the target does not need appeared in progress\n{}",
        out.describe()
    );
}

#[test]
fn independent_stages_run_at_the_same_time_and_unused_stages_never_run() {
    let env = TestEnv::new("sched-parallel");
    let ctx = four_sleepers();
    // Build `base` first, so that the timed build below only sleeps: copying and unpacking
    // busybox is CPU work, and its time on a loaded machine is not what this test measures.
    env.rbuild()
        .args(["build", "--target", "base"])
        .arg(ctx.path())
        .run()
        .assert_success();

    let mut args = vec!["build", "--progress=plain", "-j", "4"];
    for name in SLEEPERS {
        args.extend(["--no-cache-filter", name]);
    }
    let start = Instant::now();
    let out = env.rbuild().args(&args).arg(ctx.path()).run();
    let wall = start.elapsed();
    out.assert_success();

    let steps = plain_steps(&out);
    for needle in ["COPY busybox /bin/busybox", "--install"] {
        let base = step_with(&steps, needle, &out);
        assert!(
            matches!(base.ended, Some((_, None))),
            "the base step {needle:?} was not CACHED: the timing would include it\n{}",
            out.describe()
        );
    }
    let sleepers = sleeper_steps(&steps, &out);
    // All four were running at once: each started before the first of them was DONE.
    let first_done = sleepers
        .iter()
        .map(|s| s.ended.expect("checked").0)
        .min()
        .expect("four steps");
    for step in &sleepers {
        assert!(
            step.started < first_done,
            "#{} started only after another sleep finished: the stages did not run together\n{}",
            step.number,
            out.describe()
        );
    }
    assert_unused_stage_never_ran(&out);
    // One after the other the sleeps take 8 s; all four at once about 2 s plus starting four
    // sandboxes. Sleeping needs no CPU, so two busy cores slow only that start-up: 6 s leaves 4 s
    // for it and is still well under 8 s (the overlap check above proves all four ran together).
    assert!(
        wall < Duration::from_secs(6),
        "four parallel 2 s sleeps took {wall:?}, not well under 8 s\n{}",
        out.describe()
    );
}

#[test]
fn jobs_1_runs_one_step_at_a_time() {
    let env = TestEnv::new("sched-jobs-1");
    let ctx = four_sleepers();
    let start = Instant::now();
    let out = env
        .rbuild()
        .args(["build", "--progress=plain", "--no-cache", "-j", "1"])
        .arg(ctx.path())
        .run();
    let wall = start.elapsed();
    out.assert_success();
    assert!(
        wall >= Duration::from_secs(8),
        "four 2 s sleeps with -j 1 took {wall:?}: more than one ran at a time\n{}",
        out.describe()
    );
    // No two steps overlap: each step ends before the next one starts.
    let steps = plain_steps(&out);
    sleeper_steps(&steps, &out);
    for pair in steps.windows(2) {
        let ended = pair[0].ended.map(|(index, _)| index);
        assert!(
            ended.is_some_and(|e| e < pair[1].started),
            "#{} started before #{} ended, with -j 1\n{}",
            pair[1].number,
            pair[0].number,
            out.describe()
        );
    }
    assert_unused_stage_never_ran(&out);
}

#[test]
fn the_first_failure_cancels_the_running_steps_and_is_the_error() {
    let env = TestEnv::new("sched-cancel");
    let marker = sleep_marker();
    let ctx = Context::with_busybox();
    let slow = format!("RUN sleep {marker}");
    let failing = "RUN sleep 1 && echo failing-last-words && exit 5";
    ctx.dockerfile(&[
        "FROM scratch AS base",
        BUSYBOX_SH[1],
        BUSYBOX_SH[2],
        "FROM base AS slow",
        &slow, // line 5
        "FROM base AS failing",
        failing, // line 7
        "FROM base",
        "COPY --from=slow /bin/busybox /slow",
        "COPY --from=failing /bin/busybox /failing",
    ]);
    let start = Instant::now();
    let mut build = Background::start(
        env.rbuild()
            .args(["build", "--progress=plain", "--no-cache", "-j", "4", "-o"])
            .arg(env.path("never.tar"))
            .arg(ctx.path()),
    );
    // The slow step really runs (its sleep is a process) before the other one fails.
    build.wait_for_process(&marker);
    let out = build.wait(Duration::from_secs(60));
    let wall = start.elapsed();
    out.assert_code(1)
        .assert_stderr_contains("Dockerfile:7")
        .assert_stderr_contains("did not complete successfully: exit code: 5")
        .assert_stderr_contains(&format!(">>> {failing}"));
    // Building base takes a few seconds, the failure 1 s more; 30 s would mean the build waited
    // for the sleep instead of killing it.
    assert!(
        wall < Duration::from_secs(15),
        "the failed build took {wall:?}: the running sleep was not cancelled\n{}",
        out.describe()
    );
    let stderr = out.stderr_text();
    let error = &stderr[stderr
        .find("did not complete successfully")
        .expect("checked above")..];
    assert!(
        error.contains("failing-last-words"),
        "the error does not show the failing step's output\n{}",
        out.describe()
    );
    assert_eq!(
        stderr.matches("did not complete successfully").count(),
        1,
        "only the first failure is reported, not the cancelled step\n{}",
        out.describe()
    );
    let error_line = stderr
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("error"))
        .unwrap_or_else(|| panic!("no error line\n{}", out.describe()));
    assert!(
        error_line.contains("Dockerfile:7") && !error_line.contains(&marker),
        "the reported error is not the failing step's: {error_line:?}\n{}",
        out.describe()
    );
    let steps = plain_steps(&out);
    let slow_step = step_with(&steps, &marker, &out);
    assert!(
        slow_step.ended.is_none(),
        "the cancelled step #{} reports an end\n{}",
        slow_step.number,
        out.describe()
    );
    assert!(
        !steps.iter().any(|s| s.label.contains("COPY --from")),
        "a step after the failure started: {steps:?}\n{}",
        out.describe()
    );
    assert_no_leftovers(
        env.store(),
        &marker,
        "after a failure cancelled a running sleep",
    );
    assert!(
        !env.path("never.tar").exists(),
        "a failed build wrote its output"
    );
}
