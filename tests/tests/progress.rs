//! The progress modes as a user or a tool reads them: `plain` lines parsed one by one (every
//! started `#N` ends with exactly one DONE or CACHED, output lines carry their step's number),
//! `rawjson` events parsed as JSON and matched up, `quiet` printing only the image id, and the
//! live `tty` view as a terminal (tmux) shows it while a step runs and after the build.

use std::collections::BTreeMap;
use std::time::Duration;

use rbuild_e2e::env::unique_suffix;
use rbuild_e2e::sandbox::{with_shell, BUSYBOX_SH};
use rbuild_e2e::terminal::Tmux;
use rbuild_e2e::{rbuild_bin, Context, RunOutput, TestEnv};

/// Two stages that print while they run (side by side with `-j 2`), one to stderr too and one
/// ending without a newline, and a final stage that copies from both and from the context.
fn two_chatty_stages() -> Context {
    let ctx = Context::with_busybox();
    ctx.file("input.txt", "one\n");
    ctx.dockerfile(&[
        "FROM scratch AS base",
        BUSYBOX_SH[1],
        BUSYBOX_SH[2],
        "FROM base AS left",
        "RUN for i in 1 2 3; do echo left-line-$i; sleep 0.3; done; echo left-stderr >&2; echo l > /left",
        "FROM base AS right",
        "RUN for i in 1 2 3; do echo right-line-$i; sleep 0.3; done; printf right-tail; echo r > /right",
        "FROM base",
        "COPY --from=left /left /left",
        "COPY --from=right /right /right",
        "COPY input.txt /input.txt",
    ]);
    ctx
}

/// The labels of the steps of [`two_chatty_stages`], in Dockerfile order, as progress shows them.
const CHATTY_LABELS: [&str; 7] = [
    "[base 2/3] COPY busybox /bin/busybox",
    r#"[base 3/3] RUN ["/bin/busybox","--install","-s","/bin"]"#,
    "[left 2/2] RUN for i in 1 2 3; do echo left-line-$i; sleep 0.3; done; echo left-stderr >&2; echo l > /left",
    "[right 2/2] RUN for i in 1 2 3; do echo right-line-$i; sleep 0.3; done; printf right-tail; echo r > /right",
    "[stage-3 2/4] COPY --from=left /left /left",
    "[stage-3 3/4] COPY --from=right /right /right",
    "[stage-3 4/4] COPY input.txt /input.txt",
];

/// What the RUN steps of [`two_chatty_stages`] print, line by line (stdout and stderr).
const LEFT_OUTPUT: [&str; 4] = ["left-line-1", "left-line-2", "left-line-3", "left-stderr"];
const RIGHT_OUTPUT: [&str; 4] = ["right-line-1", "right-line-2", "right-line-3", "right-tail"];

// ---- plain ------------------------------------------------------------------------------------

/// One line of `--progress=plain`, by its grammar:
///
/// ```text
/// #N [STAGE I/T] INSTRUCTION     #(\d+) \[([a-z0-9][a-z0-9._-]*) (\d+)/(\d+)\] (.+)
/// #N DONE 1.2s                   #(\d+) DONE (\d+\.\d)s
/// #N CACHED                      #(\d+) CACHED
/// #N output text                 #(\d+) (.*)
/// writing image sha256:… done    writing image sha256:([0-9a-f]{64}) done
/// naming to REF done             naming to (\S+) done
/// ```
#[derive(Debug, PartialEq)]
enum PlainLine {
    Started {
        step: usize,
        stage: String,
        index: usize,
        total: usize,
        instruction: String,
    },
    Done {
        step: usize,
        seconds: f64,
    },
    Cached {
        step: usize,
    },
    Output {
        step: usize,
        text: String,
    },
    WritingImage {
        id: String,
    },
    NamingTo {
        reference: String,
    },
    /// `isolation: namespaces|chroot: REASON`: which isolation `--isolation=auto` chose, first.
    Isolation,
}

fn digits(s: &str) -> Option<usize> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `(\d+\.\d)s`
fn seconds(s: &str) -> Option<f64> {
    let number = s.strip_suffix('s')?;
    let (whole, tenth) = number.split_once('.')?;
    digits(whole)?;
    if tenth.len() != 1 || digits(tenth).is_none() {
        return None;
    }
    number.parse().ok()
}

/// `\[([a-z0-9][a-z0-9._-]*) (\d+)/(\d+)\] (.+)`
fn step_label(s: &str) -> Option<(String, usize, usize, String)> {
    let (head, instruction) = s.strip_prefix('[')?.split_once("] ")?;
    let (stage, position) = head.split_once(' ')?;
    let (index, total) = position.split_once('/')?;
    let stage_ok = stage.bytes().enumerate().all(|(i, b)| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && b"._-".contains(&b))
    });
    (stage_ok && !stage.is_empty() && !instruction.is_empty()).then_some(())?;
    Some((
        stage.to_string(),
        digits(index)?,
        digits(total)?,
        instruction.to_string(),
    ))
}

fn parse_plain_line(line: &str) -> Option<PlainLine> {
    if let Some(rest) = line.strip_prefix("isolation: ") {
        let (name, reason) = rest.split_once(": ")?;
        return (matches!(name, "namespaces" | "chroot") && !reason.is_empty()).then_some(PlainLine::Isolation);
    }
    if let Some(rest) = line.strip_prefix("writing image sha256:") {
        let hex = rest.strip_suffix(" done")?;
        let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        return ok.then(|| PlainLine::WritingImage {
            id: format!("sha256:{hex}"),
        });
    }
    if let Some(rest) = line.strip_prefix("naming to ") {
        let reference = rest.strip_suffix(" done")?;
        let ok = !reference.is_empty() && !reference.contains(char::is_whitespace);
        return ok.then(|| PlainLine::NamingTo {
            reference: reference.to_string(),
        });
    }
    let (number, rest) = line
        .strip_prefix('#')?
        .split_once(' ')
        .unwrap_or((&line[1..], ""));
    let step = digits(number)?;
    if let Some(seconds) = rest.strip_prefix("DONE ").and_then(seconds) {
        return Some(PlainLine::Done { step, seconds });
    }
    if rest == "CACHED" {
        return Some(PlainLine::Cached { step });
    }
    if let Some((stage, index, total, instruction)) = step_label(rest) {
        return Some(PlainLine::Started {
            step,
            stage,
            index,
            total,
            instruction,
        });
    }
    line.contains(' ').then(|| PlainLine::Output {
        step,
        text: rest.to_string(),
    })
}

/// How a step ended in plain progress.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Done(f64),
    Cached,
}

#[derive(Debug)]
struct PlainStep {
    label: String,
    output: Vec<String>,
    end: End,
}

/// A plain progress log, checked line by line: every line has the grammar of
/// [`parse_plain_line`]; a step's first line is its label; its output lines come after that and
/// before its one DONE or CACHED line; numbers go 1, 2, 3… in the order the steps start; the
/// `writing image`/`naming to` lines come after every step.
struct PlainLog {
    steps: BTreeMap<usize, PlainStep>,
    image_id: String,
    names: Vec<String>,
}

fn parse_plain(out: &RunOutput) -> PlainLog {
    let stderr = out.stderr_text();
    let fail = |why: String| -> ! { panic!("{why}\n{}", out.describe()) };
    let mut steps: BTreeMap<usize, (String, Vec<String>, Option<End>)> = BTreeMap::new();
    let mut image_id = None;
    let mut names = Vec::new();
    for line in stderr.lines() {
        let parsed = parse_plain_line(line).unwrap_or_else(|| {
            fail(format!(
                "a line of plain progress has no known form: {line:?}"
            ))
        });
        if image_id.is_some() && !matches!(parsed, PlainLine::NamingTo { .. }) {
            fail(format!("{line:?} after `writing image`"));
        }
        match parsed {
            PlainLine::Isolation if steps.is_empty() => {}
            PlainLine::Isolation => fail(format!("{line:?} after a step started")),
            PlainLine::Started {
                step,
                stage,
                index,
                total,
                instruction,
            } => {
                if step != steps.len() + 1 {
                    fail(format!(
                        "#{step} started after {} steps: numbers are not 1, 2, 3…",
                        steps.len()
                    ));
                }
                if index < 1 || index > total {
                    fail(format!("step position {index}/{total} in {line:?}"));
                }
                steps.insert(
                    step,
                    (
                        format!("[{stage} {index}/{total}] {instruction}"),
                        Vec::new(),
                        None,
                    ),
                );
            }
            PlainLine::Done { step, .. }
            | PlainLine::Cached { step }
            | PlainLine::Output { step, .. } => {
                let Some((_, output, end)) = steps.get_mut(&step) else {
                    fail(format!("{line:?} before #{step} started"));
                };
                if end.is_some() {
                    fail(format!("{line:?} after #{step} had ended"));
                }
                match parsed {
                    PlainLine::Done { seconds, .. } => *end = Some(End::Done(seconds)),
                    PlainLine::Cached { .. } => *end = Some(End::Cached),
                    PlainLine::Output { text, .. } => output.push(text),
                    _ => unreachable!(),
                }
            }
            PlainLine::WritingImage { id } => image_id = Some(id),
            PlainLine::NamingTo { reference } => {
                if image_id.is_none() {
                    fail(format!("{line:?} before `writing image`"));
                }
                names.push(reference);
            }
        }
    }
    let steps = steps
        .into_iter()
        .map(|(n, (label, output, end))| {
            let end =
                end.unwrap_or_else(|| fail(format!("#{n} started but has no DONE or CACHED line")));
            (n, PlainStep { label, output, end })
        })
        .collect();
    PlainLog {
        steps,
        image_id: image_id.unwrap_or_else(|| fail("no `writing image` line".into())),
        names,
    }
}

impl PlainLog {
    /// The step labelled `label`; panics unless exactly one is.
    #[track_caller]
    fn step(&self, label: &str) -> (usize, &PlainStep) {
        let found: Vec<_> = self
            .steps
            .iter()
            .filter(|(_, s)| s.label == label)
            .collect();
        assert_eq!(found.len(), 1, "steps labelled {label:?}: {:?}", self.steps);
        (*found[0].0, found[0].1)
    }
}

#[test]
fn plain_lines_follow_the_grammar_and_each_step_ends_once() {
    let env = TestEnv::new("progress-plain");
    let ctx = two_chatty_stages();
    let reference = env.image_ref();
    let out = env
        .rbuild()
        .args(["build", "--progress=plain", "-j", "2", "-t", &reference])
        .arg(ctx.path())
        .run();
    out.assert_success();
    let log = parse_plain(&out);
    let labels: Vec<&str> = log.steps.values().map(|s| s.label.as_str()).collect();
    let mut sorted = labels.clone();
    sorted.sort();
    let mut expected = CHATTY_LABELS.to_vec();
    expected.sort();
    assert_eq!(sorted, expected, "the steps shown\n{}", out.describe());
    for (n, step) in &log.steps {
        assert!(
            matches!(step.end, End::Done(_)),
            "#{n} of a first build is {:?}",
            step.end
        );
    }
    // Each RUN's output is under its own number, all of it (a last line without a newline
    // too), and no other step has any.
    for (label, expected) in [
        (CHATTY_LABELS[2], LEFT_OUTPUT),
        (CHATTY_LABELS[3], RIGHT_OUTPUT),
    ] {
        let (n, step) = log.step(label);
        let mut output = step.output.clone();
        output.sort();
        assert_eq!(
            output,
            expected,
            "output lines of #{n} {label}\n{}",
            out.describe()
        );
        // Three lines 0.3 s apart: the DONE time is the step's real time.
        let End::Done(seconds) = step.end else {
            unreachable!()
        };
        assert!(seconds >= 0.9, "#{n} ran 0.9 s but says DONE {seconds}s");
    }
    for (n, step) in &log.steps {
        if !step.label.contains(" RUN for ") {
            assert!(
                step.output.is_empty(),
                "#{n} {} has output {:?}",
                step.label,
                step.output
            );
        }
    }
    assert_eq!(log.names, [format!("docker.io/{reference}")]);

    // The same build again: every step CACHED, no output, the same image.
    let again = env
        .rbuild()
        .args(["build", "--progress=plain", "-j", "2"])
        .arg(ctx.path())
        .run();
    again.assert_success();
    let cached = parse_plain(&again);
    assert_eq!(
        cached.steps.len(),
        CHATTY_LABELS.len(),
        "\n{}",
        again.describe()
    );
    for (n, step) in &cached.steps {
        assert_eq!(
            step.end,
            End::Cached,
            "#{n} {} in a rebuild\n{}",
            step.label,
            again.describe()
        );
        assert!(step.output.is_empty(), "#{n} printed output while CACHED");
    }
    assert_eq!(
        cached.image_id, log.image_id,
        "a cached rebuild gives the same image"
    );
    assert!(cached.names.is_empty(), "no -t, yet: {:?}", cached.names);
}

#[test]
fn the_plain_line_grammar_rejects_what_it_should() {
    // The checks above are only as good as this parser: it must tell the forms apart.
    assert_eq!(
        parse_plain_line("#12 DONE 0.3s"),
        Some(PlainLine::Done {
            step: 12,
            seconds: 0.3
        })
    );
    assert_eq!(
        parse_plain_line("#2 CACHED"),
        Some(PlainLine::Cached { step: 2 })
    );
    assert_eq!(
        parse_plain_line("#1 [build-2 3/4] RUN echo hi"),
        Some(PlainLine::Started {
            step: 1,
            stage: "build-2".into(),
            index: 3,
            total: 4,
            instruction: "RUN echo hi".into()
        })
    );
    assert_eq!(
        parse_plain_line("#3 DONE soon"),
        Some(PlainLine::Output {
            step: 3,
            text: "DONE soon".into()
        })
    );
    for bad in [
        "3 DONE 0.3s",
        "#x CACHED",
        "#",
        "writing image sha256:abc done",
        "naming to  done",
        "WARNING: something",
        "",
    ] {
        assert_eq!(parse_plain_line(bad), None, "{bad:?} parsed");
    }
}

// ---- rawjson ----------------------------------------------------------------------------------

/// A step as its rawjson events tell it.
#[derive(Debug, Default)]
struct JsonStep {
    name: String,
    /// The seconds of `step_completed`, or None for `step_cached`.
    end: Option<Option<f64>>,
    /// The `data` of its `log` events, concatenated.
    log: String,
    cache_miss: Option<String>,
}

struct JsonLog {
    steps: BTreeMap<u64, JsonStep>,
    warnings: Vec<String>,
    infos: Vec<String>,
}

/// Parses a `--progress=rawjson` log: every line a JSON object with a string `event` among the
/// documented ones and that event's fields with their types; `log` and `cache_miss` events only
/// between their step's `step_started` and its one `step_completed` or `step_cached`.
fn parse_rawjson(out: &RunOutput) -> JsonLog {
    let stderr = out.stderr_text();
    let fail = |why: String| -> ! { panic!("{why}\n{}", out.describe()) };
    let mut log = JsonLog {
        steps: BTreeMap::new(),
        warnings: Vec::new(),
        infos: Vec::new(),
    };
    let mut image_seen = false;
    for line in stderr.lines() {
        if image_seen {
            fail(format!("an event after the `image` event: {line}"));
        }
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| fail(format!("a rawjson line is not JSON ({e}): {line:?}")));
        let event = value["event"]
            .as_str()
            .unwrap_or_else(|| fail(format!("no string `event` in {line}")));
        let string = |field: &str| {
            value[field]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| fail(format!("{event} has no string `{field}`: {line}")))
        };
        let step = || {
            value["step"]
                .as_u64()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| fail(format!("{event} has no step number: {line}")))
        };
        let running =
            |steps, n| running(steps, n).unwrap_or_else(|why| fail(format!("{line} {why}")));
        match event {
            "step_started" => {
                let n = step();
                if n != log.steps.len() as u64 + 1 {
                    fail(format!("step {n} started after {} steps", log.steps.len()));
                }
                log.steps.insert(
                    n,
                    JsonStep {
                        name: string("name"),
                        ..JsonStep::default()
                    },
                );
            }
            "step_completed" | "step_cached" => {
                let n = step();
                let seconds = (event == "step_completed").then(|| {
                    value["seconds"]
                        .as_f64()
                        .filter(|s| *s >= 0.0)
                        .unwrap_or_else(|| fail(format!("no `seconds` ≥ 0: {line}")))
                });
                running(&mut log.steps, n).end = Some(seconds);
            }
            "log" => {
                let (n, data) = (step(), string("data"));
                running(&mut log.steps, n).log.push_str(&data);
            }
            "cache_miss" => {
                let (n, why) = (step(), string("explanation"));
                running(&mut log.steps, n).cache_miss = Some(why);
            }
            "warning" => log.warnings.push(string("message")),
            "info" => log.infos.push(string("message")),
            // The build's result: the last event of a build that succeeded.
            "image" => {
                for field in ["id", "manifest_digest"] {
                    if !string(field).starts_with("sha256:") {
                        fail(format!("image {field} is not a digest: {line}"));
                    }
                }
                if !value["tags"].as_array().is_some_and(|t| t.iter().all(|t| t.is_string())) {
                    fail(format!("image has no list of tags: {line}"));
                }
                image_seen = true;
            }
            other => fail(format!("undocumented event {other:?}: {line}")),
        }
    }
    for (n, step) in &log.steps {
        if step.end.is_none() {
            fail(format!(
                "step {n} ({}) has no step_completed or step_cached",
                step.name
            ));
        }
    }
    log
}

/// Step `n` of an event, which must have started and not ended yet.
fn running(steps: &mut BTreeMap<u64, JsonStep>, n: u64) -> Result<&mut JsonStep, String> {
    match steps.get_mut(&n) {
        Some(s) if s.end.is_none() => Ok(s),
        Some(_) => Err(format!("after step {n} ended")),
        None => Err(format!("before step {n} started")),
    }
}

impl JsonLog {
    #[track_caller]
    fn step(&self, name: &str) -> &JsonStep {
        let found: Vec<&JsonStep> = self.steps.values().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "steps named {name:?}: {:?}", self.steps);
        found[0]
    }
}

#[test]
fn rawjson_events_parse_and_match_up() {
    let env = TestEnv::new("progress-rawjson");
    let ctx = two_chatty_stages();
    let reference = env.image_ref();
    let out = env
        .rbuild()
        .args(["build", "--progress=rawjson", "-j", "2", "-t", &reference])
        .args(["--build-arg", "NOBODY_USES_THIS=1"])
        .arg(ctx.path())
        .run();
    out.assert_success();
    let log = parse_rawjson(&out);
    let mut names: Vec<&str> = log.steps.values().map(|s| s.name.as_str()).collect();
    names.sort();
    let mut expected = CHATTY_LABELS.to_vec();
    expected.sort();
    assert_eq!(names, expected, "step names\n{}", out.describe());
    for step in log.steps.values() {
        assert!(
            matches!(step.end, Some(Some(_))),
            "{step:?} in a first build"
        );
    }
    // The log events carry the RUN's output, stdout and stderr, byte for byte.
    for (name, expected) in [
        (CHATTY_LABELS[2], LEFT_OUTPUT),
        (CHATTY_LABELS[3], RIGHT_OUTPUT),
    ] {
        let step = log.step(name);
        let mut lines: Vec<&str> = step.log.lines().collect();
        lines.sort();
        assert_eq!(lines, expected, "log of {name}\n{}", out.describe());
        assert!(step.end.flatten().is_some_and(|s| s >= 0.9), "{step:?}");
    }
    assert!(
        log.step(CHATTY_LABELS[3]).log.ends_with("right-tail"),
        "the unterminated last line"
    );
    assert!(
        log.warnings.iter().any(|w| w.contains("NOBODY_USES_THIS")),
        "warning events: {:?}",
        log.warnings
    );
    let writing = log
        .infos
        .iter()
        .find(|i| i.starts_with("writing image sha256:"));
    assert!(
        writing.is_some_and(|w| w.ends_with(" done")),
        "info events: {:?}",
        log.infos
    );
    let naming = format!("naming to docker.io/{reference} done");
    assert!(log.infos.contains(&naming), "info events: {:?}", log.infos);

    // A changed context file: the steps before it are cached; its COPY misses the cache (with
    // --explain-cache saying why) and runs.
    ctx.file("input.txt", "two\n");
    let again = env
        .rbuild()
        .args(["build", "--progress=rawjson", "-j", "2", "--explain-cache"])
        .arg(ctx.path())
        .run();
    again.assert_success();
    let log = parse_rawjson(&again);
    assert_eq!(
        log.steps.len(),
        CHATTY_LABELS.len(),
        "\n{}",
        again.describe()
    );
    for name in &CHATTY_LABELS[..6] {
        let step = log.step(name);
        assert_eq!(
            step.end,
            Some(None),
            "{name} after only input.txt changed\n{}",
            again.describe()
        );
        assert!(step.log.is_empty() && step.cache_miss.is_none(), "{step:?}");
    }
    let copy = log.step(CHATTY_LABELS[6]);
    assert!(
        matches!(copy.end, Some(Some(_))),
        "{copy:?}\n{}",
        again.describe()
    );
    assert!(
        copy.cache_miss
            .as_deref()
            .is_some_and(|why| why.contains("input.txt")),
        "cache_miss of the changed COPY: {copy:?}\n{}",
        again.describe()
    );
    assert!(log.warnings.is_empty(), "warnings: {:?}", log.warnings);
}

// ---- quiet ------------------------------------------------------------------------------------

#[test]
fn quiet_prints_only_the_image_id() {
    let env = TestEnv::new("progress-quiet");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&[
        "RUN echo quiet-run-output && echo to-stderr >&2",
    ]));
    for flags in [
        &["-q"][..],
        &["--progress=quiet"],
        &["--progress=plain", "--quiet"],
    ] {
        let iidfile = env.path(&format!("iid-{}", unique_suffix()));
        let out = env
            .rbuild()
            .arg("build")
            .args(flags)
            .args(["--no-cache", "-t", &env.image_ref(), "--iidfile"])
            .arg(&iidfile)
            .arg(ctx.path())
            .run();
        out.assert_success();
        let id = out.image_id(); // stdout is exactly `sha256:<64 hex>\n`
        let from_file = std::fs::read_to_string(&iidfile).expect("reading --iidfile");
        assert_eq!(id, from_file, "{flags:?}: stdout is not the image id");
        assert!(
            out.stderr.is_empty(),
            "{flags:?}: quiet wrote to stderr\n{}",
            out.describe()
        );
    }
}

// ---- tty --------------------------------------------------------------------------------------

/// The seconds at the end of a running step's line (`… 2s`, indicatif's elapsed time).
fn elapsed_seconds(line: &str) -> Option<u64> {
    line.rsplit(' ').next()?.strip_suffix('s')?.parse().ok()
}

#[test]
fn tty_shows_running_steps_their_output_and_the_total() {
    let env = TestEnv::new("progress-tty");
    let ctx = Context::with_busybox();
    let run = "RUN echo tty-first-line; echo tty-second-line; sleep 3; echo tty-after-sleep";
    ctx.dockerfile(&with_shell(&[run]));
    // No --progress: on a terminal the default is the live view.
    let script = env.path("tty.sh");
    std::fs::write(
        &script,
        format!(
            "unset SOURCE_DATE_EPOCH\nexport RBUILD_ROOT='{}'\n'{}' build -t '{}' '{}'\n\
             echo \"RBUILD-EXIT=$?\"\nexec sleep 600\n",
            env.store().display(),
            rbuild_bin().display(),
            env.image_ref(),
            ctx.path().display()
        ),
    )
    .expect("writing the tmux script");
    let tmux = Tmux::start(
        env.path("tmux.sock"),
        "160x40",
        &format!("sh '{}'", script.display()),
    );
    let step_line = |screen: &str| -> Option<(usize, String)> {
        let lines: Vec<&str> = screen.lines().collect();
        lines
            .iter()
            .position(|l| l.contains("=> #3 [stage-0 4/4] RUN echo tty-first-line"))
            .map(|i| (i, lines[i].to_string()))
    };

    // While the sleep runs: the step's line with its elapsed time, its output under it, and the
    // steps before it marked DONE.
    let live = tmux.wait_for(
        "the RUN step with its output",
        Duration::from_secs(120),
        // The output line itself, not the step's label (which holds the command's text).
        |s| s.lines().any(|l| l.trim() == "tty-second-line") && step_line(s).is_some(),
    );
    let (at, line) = step_line(&live).expect("checked");
    let lines: Vec<&str> = live.lines().collect();
    assert!(
        !line.contains("DONE") && elapsed_seconds(&line).is_some(),
        "the running step's line has no elapsed time at its end: {line:?}\n{live}"
    );
    assert_eq!(
        lines
            .get(at + 1..at + 3)
            .map(|l| l.iter().map(|l| l.trim()).collect::<Vec<_>>()),
        Some(vec!["tty-first-line", "tty-second-line"]),
        "the output lines are not under the running step\n{live}"
    );
    for earlier in [
        "=> #1 [stage-0 2/4] COPY busybox /bin/busybox",
        "=> #2 [stage-0 3/4] RUN",
    ] {
        assert!(
            live.lines()
                .any(|l| l.contains(earlier) && l.contains("  DONE ")),
            "no DONE line for {earlier:?} while #3 runs\n{live}"
        );
    }
    assert!(
        !live.contains("FINISHED"),
        "FINISHED while a step runs\n{live}"
    );
    // The view is live: a second later the elapsed time has grown.
    let before = elapsed_seconds(&line).expect("checked");
    let later = tmux.wait_for("the elapsed time growing", Duration::from_secs(10), |s| {
        step_line(s)
            .and_then(|(_, l)| elapsed_seconds(&l))
            .is_some_and(|secs| secs > before)
            || s.contains("RBUILD-EXIT=")
    });
    assert!(
        !later.contains("RBUILD-EXIT="),
        "the build ended before the time moved on\n{later}"
    );

    // After the build: every step DONE (the RUN after its 3 s sleep), the image written, and the
    // total with the count of steps.
    let last = tmux.wait_for("the end of the build", Duration::from_secs(120), |s| {
        s.contains("RBUILD-EXIT=")
    });
    assert!(last.contains("RBUILD-EXIT=0"), "the build failed\n{last}");
    let (done_at, done_line) = step_line(&last)
        .unwrap_or_else(|| panic!("the finished RUN step is no longer on screen\n{last}"));
    let seconds = done_line
        .split("  DONE ")
        .nth(1)
        .and_then(|s| s.trim().strip_suffix('s'))
        .and_then(|s| s.parse::<f64>().ok());
    assert!(
        seconds.is_some_and(|s| s >= 3.0),
        "the RUN step's line does not say DONE after ≥ 3 s: {done_line:?}\n{last}"
    );
    let lines: Vec<&str> = last.lines().collect();
    let finished_at = lines
        .iter()
        .position(|l| l.starts_with("[+] Building ") && l.ends_with(" (3/3) FINISHED"))
        .unwrap_or_else(|| panic!("no `[+] Building …s (3/3) FINISHED` line\n{last}"));
    assert!(
        done_at < finished_at,
        "FINISHED is not below the steps\n{last}"
    );
    assert!(
        last.contains("writing image sha256:"),
        "no `writing image` line\n{last}"
    );
}

#[test]
fn rawjson_ends_a_failed_build_with_an_error_event() {
    let env = TestEnv::new("progress-rawjson-error");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&with_shell(&["RUN echo about to fail; exit 4"]));
    let out = env.rbuild().args(["build", "--progress=rawjson"]).arg(ctx.path()).run();
    assert_eq!(out.status.code(), Some(1), "{}", out.describe());
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    let last = events.last().expect("rawjson printed events");
    assert_eq!(last["event"], "error", "the last event is the error\n{}", out.describe());
    let message = last["message"].as_str().expect("an error event has a message");
    assert!(message.contains("Dockerfile:") && message.contains("exit code: 4"), "{message}");
    assert!(
        events.iter().any(|e| e["event"] == "log" && e["data"].as_str().unwrap_or("").contains("about to fail")),
        "the failing step's output came as log events"
    );
}

/// A build's result for tools: `--metadata-file` holds buildx's keys, and rawjson's last event
/// names the image id, the manifest digest and the tags, the same ones.
#[test]
fn metadata_file_and_the_last_rawjson_event_name_the_image() {
    let env = TestEnv::new("metadata-file");
    let ctx = Context::with_busybox();
    ctx.dockerfile(&BUSYBOX_SH);
    let metadata = env.path("metadata.json");
    let iid = env.path("iid");
    let tag = format!("rbuild-e2e/metadata-{}:1", unique_suffix());
    let out = env
        .rbuild()
        .args(["build", "--progress", "rawjson", "-t", &tag, "--metadata-file"])
        .arg(&metadata)
        .arg("--iidfile")
        .arg(&iid)
        .arg(ctx.path())
        .run();
    out.assert_success();
    let id = std::fs::read_to_string(&iid).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&metadata).unwrap()).unwrap();
    assert_eq!(meta["containerimage.config.digest"], id.as_str(), "{meta}");
    assert_eq!(meta["image.name"], format!("docker.io/{tag}"), "{meta}");
    // The manifest digest names the stored manifest, which names the config.
    let digest = meta["containerimage.digest"].as_str().unwrap();
    let blob = std::fs::read(env.store().join("blobs/sha256").join(digest.trim_start_matches("sha256:"))).unwrap();
    assert_eq!(format!("sha256:{}", rbuild_e2e::archive::sha256_hex(&blob)), digest);
    let manifest: serde_json::Value = serde_json::from_slice(&blob).unwrap();
    assert_eq!(manifest["config"]["digest"], id.as_str());
    assert_eq!(meta["containerimage.descriptor"]["size"], blob.len());
    assert_eq!(meta["containerimage.descriptor"]["digest"], digest);

    let stderr = out.stderr_text();
    let last: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "image", "{stderr}");
    assert_eq!(last["id"], id.as_str());
    assert_eq!(last["manifest_digest"], digest);
    assert_eq!(last["tags"], serde_json::json!([format!("docker.io/{tag}")]));
}

/// Config-only steps (LABEL, ENV, EXPOSE, …) take no line of their own in the plain log, nor an
/// `--explain-cache` line; rawjson, for tools, keeps every step.
#[test]
fn config_only_steps_are_left_out_of_the_plain_log_but_not_rawjson() {
    let env = TestEnv::new("progress-config-steps");
    let ctx = Context::with_busybox();
    let with = |label: &str| {
        let label = format!("LABEL version={label}");
        ctx.dockerfile(&with_shell(&["ENV A=1", &label, "EXPOSE 80", "RUN echo ran > /ran"]));
    };
    with("1");
    let plain = env.rbuild().args(["build", "--progress=plain"]).arg(ctx.path()).run();
    plain.assert_success();
    let text = plain.stderr_text();
    for hidden in ["ENV A=1", "LABEL version=1", "EXPOSE 80"] {
        assert!(!text.contains(hidden), "{hidden} has a line in the plain log:\n{text}");
    }
    assert!(text.contains("RUN echo ran > /ran"), "{text}");
    // Numbers stay consecutive: #1 to #3 (COPY, RUN --install, RUN echo).
    assert!(text.contains("#3 [stage-0 7/7] RUN echo ran > /ran"), "{text}");

    with("2");
    let explained = env.rbuild().args(["build", "--progress=plain", "--explain-cache"]).arg(ctx.path()).run();
    explained.assert_success();
    assert!(!explained.stderr_text().contains("cache miss"), "{}", explained.stderr_text());

    with("3");
    let json = env.rbuild().args(["build", "--progress=rawjson", "--explain-cache"]).arg(ctx.path()).run();
    json.assert_success();
    let events: Vec<serde_json::Value> = json.stderr_text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = events.iter().filter(|e| e["event"] == "step_started").filter_map(|e| e["name"].as_str()).collect();
    for shown in ["ENV A=1", "LABEL version=3", "EXPOSE 80"] {
        assert!(names.iter().any(|n| n.ends_with(shown)), "{shown} not in {names:?}");
    }
    assert!(events.iter().any(|e| e["event"] == "cache_miss"), "the changed LABEL is explained in rawjson");
}
