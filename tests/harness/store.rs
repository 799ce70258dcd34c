//! For the store tests: building into a store and getting the image id, reading the tables the
//! store commands print, piping `rbuild save` into `docker load`, and checking that a store is
//! sound (every blob matches its digest, every tag resolves).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::archive::sha256_hex;
use crate::context::Context;
use crate::env::{rbuild_bin, TestEnv};
use crate::process::{self, RunOutput};

/// `rbuild build -q [-t TAG] ARGS… CONTEXT`; panics unless it succeeds; returns the image id.
#[track_caller]
pub fn build_id(env: &TestEnv, ctx: &Context, tag: Option<&str>, args: &[&str]) -> String {
    let mut cmd = env.rbuild().args(["build", "-q"]);
    if let Some(tag) = tag {
        cmd = cmd.args(["-t", tag]);
    }
    cmd.args(args).arg(ctx.path()).run().image_id()
}

/// `rbuild ARGS…` in the test's store; panics unless it succeeds; returns stdout.
#[track_caller]
pub fn rbuild_ok(env: &TestEnv, args: &[&str]) -> String {
    let out = env.rbuild().args(args).run();
    out.assert_success();
    out.stdout_text()
}

/// A fresh repository name (no tag) for this test: `rbuild-e2e/<test>-<suffix>`.
pub fn repository(env: &TestEnv) -> String {
    env.image_ref()
        .strip_suffix(":latest")
        .expect("image_ref ends in :latest")
        .to_string()
}

/// The rows of a table laid out like Docker's (columns at least three spaces apart, headers
/// that may hold single spaces), each as header → cell.
#[track_caller]
pub fn parse_table(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<char> = lines
        .next()
        .expect("a table has a header")
        .chars()
        .collect();
    let mut starts = vec![0];
    let mut i = 0;
    while i < header.len() {
        if header[i] == ' ' {
            let run = header[i..].iter().take_while(|c| **c == ' ').count();
            if run >= 3 && i + run < header.len() {
                starts.push(i + run);
            }
            i += run;
        } else {
            i += 1;
        }
    }
    let cell = |chars: &[char], c: usize| -> String {
        let from = starts[c].min(chars.len());
        let to = starts
            .get(c + 1)
            .copied()
            .unwrap_or(chars.len())
            .min(chars.len());
        chars[from..to]
            .iter()
            .collect::<String>()
            .trim_end()
            .to_string()
    };
    let names: Vec<String> = (0..starts.len()).map(|c| cell(&header, c)).collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|line| {
            let chars: Vec<char> = line.chars().collect();
            names
                .iter()
                .enumerate()
                .map(|(c, name)| (name.clone(), cell(&chars, c)))
                .collect()
        })
        .collect()
}

/// `rbuild du --format json`: the rows by type (`Images`, `Snapshots`, …, `Total`).
#[track_caller]
pub fn disk_usage(env: &TestEnv) -> BTreeMap<String, Value> {
    rbuild_ok(env, &["du", "--format", "json"])
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).expect("du prints JSON lines");
            (row["Type"].as_str().expect("a Type").to_string(), row)
        })
        .collect()
}

/// A number field of a `du` row.
#[track_caller]
pub fn du_number(usage: &BTreeMap<String, Value>, kind: &str, field: &str) -> u64 {
    usage[kind][field]
        .as_u64()
        .unwrap_or_else(|| panic!("du row {kind} has no number {field}: {usage:?}"))
}

/// The Docker client the tests use, as a path for shell pipelines.
pub fn docker_bin() -> String {
    crate::docker::Docker::get();
    std::env::var("RBUILD_TEST_DOCKER").unwrap_or_else(|_| "/usr/bin/docker".to_string())
}

/// Runs `rbuild SAVE_ARGS… | docker load` through a real pipe; returns what `docker load`
/// printed. Panics unless both sides succeed.
#[track_caller]
pub fn save_into_docker(env: &TestEnv, save_args: &[&str]) -> String {
    let quoted: Vec<String> = save_args.iter().map(|a| shell_quote(a)).collect();
    let script = format!(
        "{} save {} | {} load",
        shell_quote(&rbuild_bin().to_string_lossy()),
        quoted.join(" "),
        shell_quote(&docker_bin())
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-o", "pipefail", "-c", &script])
        .env("RBUILD_ROOT", env.store());
    let out = process::run(cmd, None);
    out.assert_success();
    out.stdout_text()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Checks that the store at `root` is sound: every blob's content matches its name, and every
/// tag points at a manifest that is there. Returns how many blobs there are.
#[track_caller]
pub fn assert_store_sound(root: &Path) -> usize {
    let blobs = root.join("blobs/sha256");
    let mut count = 0;
    for entry in fs::read_dir(&blobs).expect("listing blobs") {
        let entry = entry.expect("a blob entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = fs::read(entry.path()).expect("reading a blob");
        assert_eq!(
            sha256_hex(&bytes),
            name,
            "blob {name} does not match its digest"
        );
        count += 1;
    }
    if let Ok(text) = fs::read_to_string(root.join("tags.json")) {
        let tags: Value = serde_json::from_str(&text).expect("tags.json is whole JSON");
        for (name, manifest) in tags["tags"].as_object().expect("tags.json has tags") {
            let hex = manifest.as_str().unwrap().trim_start_matches("sha256:");
            assert!(
                blobs.join(hex).is_file(),
                "tag {name} points at a missing manifest"
            );
        }
    }
    count
}

/// `rbuild images` must list without a warning; returns its rows.
#[track_caller]
pub fn images_table(env: &TestEnv) -> Vec<BTreeMap<String, String>> {
    let out: RunOutput = env.rbuild().arg("images").run();
    out.assert_success();
    assert!(
        out.stderr.is_empty(),
        "rbuild images warned:\n{}",
        out.describe()
    );
    parse_table(&out.stdout_text())
}
