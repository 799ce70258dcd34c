//! What a build reports while it runs: the engine calls a [`Progress`] with typed events
//! and the CLI decides how to show them (plain, tty, rawjson or quiet).

use std::time::Duration;

pub use rbuild_frontend::checks::Finding;

/// Receives build events as they happen.
pub trait Progress {
    /// Whether steps that only change the image config (LABEL, ENV, EXPOSE,
    /// …) are shown as steps. A person reading the log does not need a line
    /// for each (BuildKit shows none); tools reading every event do.
    fn shows_config_steps(&self) -> bool {
        false
    }
    fn step_started(&mut self, number: usize, label: &str);
    fn step_done(&mut self, number: usize, elapsed: Duration);
    fn warning(&mut self, message: &str);
    /// A build check found something in the Dockerfile `file`. People read these
    /// once, after the build; tools get them as they come.
    fn check(&mut self, file: &str, finding: &Finding);
    fn info(&mut self, message: &str);
    /// rbuild chose how RUN steps are isolated (`--isolation=auto`), for `reason`.
    fn isolation_chosen(&mut self, isolation: &str, reason: &str) {
        self.info(&format!("isolation: {isolation}: {reason}"));
    }
    /// Output of a running step (a RUN's stdout and stderr).
    fn output(&mut self, number: usize, bytes: &[u8]);
    /// A RUN step is about to run under QEMU user emulation (it is for another
    /// platform than the host's): slower, and worth a warning, once per RUN.
    fn emulated_run(&mut self, run: &EmulatedRun);
    /// The step was not run: its result came from the cache.
    fn step_cached(&mut self, number: usize);
    /// Why the step missed the cache (`--explain-cache`).
    fn explain(&mut self, number: usize, explanation: &str);
    /// The `--cache-from` caches were read (manifests and configs only): they record
    /// `steps` steps.
    fn cache_imported(&mut self, steps: usize, elapsed: Duration) {
        self.info(&format!("importing cache manifests: {steps} steps recorded ({:.1}s)", elapsed.as_secs_f64()));
    }
    /// A `--cache-to` export ended: its own progress line, with its time.
    fn cache_exported(&mut self, export: &CacheExportDone) {
        let what = match &export.error {
            None => format!(
                "{} steps, {} layers, {} sent",
                export.steps, export.layers, export.sent
            ),
            Some(error) => format!("failed: {error}"),
        };
        self.info(&format!("exporting cache to {}: {what} ({:.1}s)", export.location, export.elapsed.as_secs_f64()));
    }
    /// The build failed with `message` (already printed on stderr as text;
    /// tools reading rawjson get it as an event too).
    fn error(&mut self, message: &str) {
        let _ = message;
    }
    /// The image was written and named: the build's result, for tools.
    fn image_built(&mut self, image: &BuiltImage) {
        let _ = image;
    }
    /// The build is over, after `total`.
    fn finished(&mut self, total: Duration) {
        let _ = total;
    }
}

/// A RUN step that runs emulated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatedRun {
    /// Its progress number, when it is shown.
    pub number: Option<usize>,
    /// Its Dockerfile line.
    pub line: Option<usize>,
    pub instruction: String,
    /// The platform it runs as, and the host's.
    pub platform: String,
    pub host: String,
}

/// What a build made, as `--metadata-file` and the last rawjson event give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The image id: the config's digest.
    pub id: String,
    pub manifest_digest: String,
    /// The manifest's media type and size in bytes.
    pub manifest_media_type: String,
    pub manifest_size: u64,
    /// The full names the image was tagged with.
    pub tags: Vec<String>,
}

impl BuiltImage {
    /// buildx's `--metadata-file` keys for an image build.
    pub fn metadata(&self) -> serde_json::Value {
        let mut out = serde_json::json!({
            "containerimage.digest": self.manifest_digest,
            "containerimage.config.digest": self.id,
            "containerimage.descriptor": {
                "mediaType": self.manifest_media_type,
                "digest": self.manifest_digest,
                "size": self.manifest_size,
            },
        });
        if !self.tags.is_empty() {
            out["image.name"] = self.tags.join(",").into();
        }
        out
    }
}


/// One `--cache-to` export, as progress shows it.
#[derive(Debug, Clone)]
pub struct CacheExportDone {
    pub location: String,
    pub steps: usize,
    pub layers: usize,
    /// Blobs sent (uploaded, or copied into the directory).
    pub sent: usize,
    pub elapsed: Duration,
    /// Why it failed, when it did (a warning unless `ignore-error=false`).
    pub error: Option<String>,
}
