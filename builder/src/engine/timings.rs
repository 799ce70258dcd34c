//! What the last build of a Dockerfile recorded about its steps, for
//! `rbuild graph --timings`.
//!
//! After every build the builder writes `$RBUILD_ROOT/builds/<sha256 of the
//! canonical Dockerfile path>.json` ([`write_timings`]):
//!
//! ```json
//! {"dockerfile": "/src/app/Dockerfile", "finished": "2024-05-01T12:00:00Z",
//!  "steps": [{"stage": 0, "line": 3, "display": "COPY a /b", "cached": false, "seconds": 1.25}]}
//! ```
//!
//! A step is recognised again by its stage index, first line and instruction
//! text (the graph's [`Step::display`]), which stay the same as long as the
//! Dockerfile does: no build ids or graph indexes, which change from run to run.
//! Sources (base images, the build context) have `stage` and `line` null.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _, Result};
use rbuild_frontend::graph::Step;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::engine::timefmt::{now_unix, rfc3339};

/// One build's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildTimings {
    /// The canonical path of the Dockerfile built.
    pub dockerfile: String,
    /// When the build finished, RFC 3339 in UTC.
    pub finished: String,
    pub steps: Vec<StepTiming>,
}

/// How one step of the build went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    /// The Dockerfile stage index; null for shared sources.
    pub stage: Option<usize>,
    /// The step's first Dockerfile line; null for sources.
    pub line: Option<usize>,
    /// The step's instruction text, as [`Step::display`].
    pub display: String,
    /// Whether the result came from the cache instead of running.
    pub cached: bool,
    /// Wall-clock time the step took (near zero when cached).
    pub seconds: f64,
}

impl StepTiming {
    /// The record of `step`, which took `seconds` (from the cache when `cached`).
    pub fn new(step: &Step, cached: bool, seconds: f64) -> StepTiming {
        StepTiming {
            stage: step.stage,
            line: step.location.map(|l| l.start_line),
            display: step.display.clone(),
            cached,
            seconds,
        }
    }

    /// Whether this record is about `step`. A build names base images pinned
    /// to the digest it used (`FROM alpine:3@sha256:…`), which a later look at
    /// the Dockerfile need not know: sources match without the digest.
    pub fn is_for(&self, step: &Step) -> bool {
        let same_display = match step.stage {
            None => unpinned(&self.display) == unpinned(&step.display),
            Some(_) => self.display == step.display,
        };
        same_display && self.stage == step.stage && self.line == step.location.map(|l| l.start_line)
    }
}

/// `FROM name:tag` for `FROM name:tag@sha256:…`.
fn unpinned(display: &str) -> &str {
    match display.rsplit_once("@sha256:") {
        Some((name, digest)) if digest.chars().all(|c| c.is_ascii_hexdigit()) => name,
        _ => display,
    }
}

impl BuildTimings {
    /// The record of `step`, if the build recorded one.
    pub fn find(&self, step: &Step) -> Option<&StepTiming> {
        self.steps.iter().find(|t| t.is_for(step))
    }
}

/// Where the record of builds of `dockerfile` lives. Builds are told apart by
/// the Dockerfile's canonical path, so a relative `-f` and an absolute one find
/// the same record; the path must therefore exist.
pub fn timings_path(store_root: &Path, dockerfile: &Path) -> Result<PathBuf> {
    let canonical = canonical(dockerfile)?;
    Ok(path_for_canonical(store_root, &canonical))
}

fn canonical(dockerfile: &Path) -> Result<PathBuf> {
    fs::canonicalize(dockerfile).with_context(|| format!("resolving the Dockerfile path {}", dockerfile.display()))
}

fn path_for_canonical(store_root: &Path, canonical: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let digest = Sha256::digest(canonical.as_os_str().as_bytes());
    store_root.join("builds").join(format!("{}.json", hex::encode(digest)))
}

/// Records a finished build of `dockerfile` (the path it was read from; call
/// this before anything changes the working directory), replacing the record of
/// the previous build. The file is written whole and renamed into place, so a
/// reader never sees half a record. Returns the record's path.
pub fn write_timings(store_root: &Path, dockerfile: &Path, steps: Vec<StepTiming>) -> Result<PathBuf> {
    let canonical = canonical(dockerfile)?;
    let record = BuildTimings {
        dockerfile: canonical.to_string_lossy().into_owned(),
        finished: rfc3339(now_unix()),
        steps,
    };
    let path = path_for_canonical(store_root, &canonical);
    let dir = path.parent().expect("a record path is builds/<name>.json");
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let mut text = serde_json::to_vec_pretty(&record).context("encoding the build timings")?;
    text.push(b'\n');
    file.write_all(&text)?;
    file.persist(&path)
        .map_err(|e| anyhow!("writing the build timings {}: {}", path.display(), e.error))?;
    Ok(path)
}

/// The record of the last build of `dockerfile`; an error that says what to do
/// when there is none.
pub fn read_timings(store_root: &Path, dockerfile: &Path) -> Result<BuildTimings> {
    let path = timings_path(store_root, dockerfile)?;
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(anyhow!(
                "no build of {} is recorded in rbuild's store ({}): run `rbuild build` with it first, \
                 then ask for --timings again",
                dockerfile.display(),
                store_root.display(),
            ))
        }
        Err(e) => return Err(e).with_context(|| format!("reading the build timings {}", path.display())),
    };
    serde_json::from_str(&text).with_context(|| format!("the build timings {} are not valid", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_frontend::graph::{Op, Source};
    use rbuild_frontend::instructions::Location;

    fn step(stage: Option<usize>, line: Option<usize>, display: &str) -> Step {
        Step {
            stage,
            op: Op::Source(Source::Context),
            location: line.map(|l| Location { start_line: l, end_line: l }),
            display: display.into(),
            history: None,
        }
    }

    #[test]
    fn written_records_are_read_back_through_any_path_to_the_dockerfile() {
        let store = tempfile::tempdir().unwrap();
        let project = tempfile::tempdir().unwrap();
        fs::create_dir(project.path().join("sub")).unwrap();
        let dockerfile = project.path().join("Dockerfile");
        fs::write(&dockerfile, "FROM scratch\n").unwrap();
        let copy = step(Some(0), Some(2), "COPY a /b");
        let written = write_timings(store.path(), &dockerfile, vec![StepTiming::new(&copy, true, 0.25)]).unwrap();
        assert!(written.starts_with(store.path().join("builds")));

        let roundabout = project.path().join("sub/../Dockerfile");
        let record = read_timings(store.path(), &roundabout).unwrap();
        assert_eq!(record.dockerfile, fs::canonicalize(&dockerfile).unwrap().to_string_lossy());
        assert!(record.finished.ends_with('Z') && record.finished.len() == 20, "{}", record.finished);
        assert_eq!(record.find(&copy).map(|t| (t.cached, t.seconds)), Some((true, 0.25)));
        assert!(record.find(&step(Some(0), Some(3), "COPY a /b")).is_none());
        assert!(record.find(&step(Some(1), Some(2), "COPY a /b")).is_none());
    }

    #[test]
    fn the_documented_format_is_what_is_read() {
        let store = tempfile::tempdir().unwrap();
        let dockerfile = store.path().join("Dockerfile");
        fs::write(&dockerfile, "FROM scratch\n").unwrap();
        let path = timings_path(store.path(), &dockerfile).unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            &path,
            r#"{"dockerfile": "/x/Dockerfile", "finished": "2024-05-01T12:00:00Z",
                "steps": [{"stage": null, "line": null, "display": "FROM alpine", "cached": false, "seconds": 3.5}]}"#,
        )
        .unwrap();
        let record = read_timings(store.path(), &dockerfile).unwrap();
        assert_eq!(record.find(&step(None, None, "FROM alpine")).unwrap().seconds, 3.5);
        // Whether or not the build pinned the image to a digest.
        let pinned = StepTiming { display: "FROM alpine:3@sha256:0a1b".into(), ..record.steps[0].clone() };
        assert!(pinned.is_for(&step(None, None, "FROM alpine:3")));
        assert!(!pinned.is_for(&step(None, None, "FROM alpine:4")));
        assert!(!pinned.is_for(&step(Some(0), None, "FROM alpine:3")));
    }

    #[test]
    fn a_missing_or_broken_record_says_so() {
        let store = tempfile::tempdir().unwrap();
        let dockerfile = store.path().join("Dockerfile");
        fs::write(&dockerfile, "FROM scratch\n").unwrap();
        let error = format!("{:#}", read_timings(store.path(), &dockerfile).unwrap_err());
        assert!(error.contains("no build of") && error.contains("run `rbuild build` with it first"), "{error}");

        let path = timings_path(store.path(), &dockerfile).unwrap();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "{").unwrap();
        let error = format!("{:#}", read_timings(store.path(), &dockerfile).unwrap_err());
        assert!(error.contains("are not valid"), "{error}");

        let error = format!("{:#}", timings_path(store.path(), &store.path().join("nope")).unwrap_err());
        assert!(error.contains("resolving the Dockerfile path"), "{error}");
    }
}
