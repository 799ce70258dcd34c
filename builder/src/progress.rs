//! Progress output. Plain mode prints BuildKit-style `#N` lines to stderr;
//! quiet mode prints nothing.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

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
    fn info(&mut self, message: &str);
    /// Output of a running step (a RUN's stdout and stderr).
    fn output(&mut self, number: usize, bytes: &[u8]);
    /// The step was not run: its result came from the cache.
    fn step_cached(&mut self, number: usize);
    /// Why the step missed the cache (`--explain-cache`).
    fn explain(&mut self, number: usize, explanation: &str);
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

/// `#3 [stage-0 2/3] COPY a /b` … `#3 DONE 0.1s`, on stderr.
pub struct PlainProgress<W: Write> {
    out: W,
    /// Each running step's output after its last newline, printed with the
    /// step's next chunk (steps run in parallel, so this is per step).
    pending: HashMap<usize, Vec<u8>>,
}

impl<W: Write> PlainProgress<W> {
    pub fn new(out: W) -> Self {
        PlainProgress { out, pending: HashMap::new() }
    }
}

impl<W: Write> Progress for PlainProgress<W> {
    fn step_started(&mut self, number: usize, label: &str) {
        let _ = writeln!(self.out, "#{number} {label}");
    }

    fn step_done(&mut self, number: usize, elapsed: Duration) {
        if let Some(rest) = self.pending.remove(&number).filter(|r| !r.is_empty()) {
            let _ = writeln!(self.out, "#{number} {}", String::from_utf8_lossy(&rest));
        }
        let _ = writeln!(self.out, "#{number} DONE {:.1}s", elapsed.as_secs_f64());
    }

    fn step_cached(&mut self, number: usize) {
        let _ = writeln!(self.out, "#{number} CACHED");
    }

    fn explain(&mut self, number: usize, explanation: &str) {
        let _ = writeln!(self.out, "#{number} cache miss: {explanation}");
    }

    fn output(&mut self, number: usize, bytes: &[u8]) {
        let pending = self.pending.entry(number).or_default();
        pending.extend_from_slice(bytes);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let _ = writeln!(self.out, "#{number} {text}");
        }
    }

    fn warning(&mut self, message: &str) {
        let _ = writeln!(self.out, "WARNING: {message}");
    }

    fn info(&mut self, message: &str) {
        let _ = writeln!(self.out, "{message}");
    }
}

/// Prints only warnings, for `--quiet`: a silent warning would hide a mistake.
pub struct QuietProgress<W: Write> {
    out: W,
}

impl<W: Write> QuietProgress<W> {
    pub fn new(out: W) -> Self {
        QuietProgress { out }
    }
}

impl<W: Write> Progress for QuietProgress<W> {
    fn step_started(&mut self, _: usize, _: &str) {}
    fn step_done(&mut self, _: usize, _: Duration) {}
    fn warning(&mut self, message: &str) {
        let _ = writeln!(self.out, "WARNING: {message}");
    }
    fn info(&mut self, _: &str) {}
    fn output(&mut self, _: usize, _: &[u8]) {}
    fn step_cached(&mut self, _: usize) {}
    fn explain(&mut self, _: usize, _: &str) {}
}

/// One JSON object per line, for tools: `{"event":"step_started",...}`.
pub struct RawJsonProgress<W: Write> {
    out: W,
}

impl<W: Write> RawJsonProgress<W> {
    pub fn new(out: W) -> Self {
        RawJsonProgress { out }
    }

    fn emit(&mut self, value: serde_json::Value) {
        let _ = writeln!(self.out, "{value}");
    }
}

impl<W: Write> Progress for RawJsonProgress<W> {
    fn shows_config_steps(&self) -> bool {
        true
    }
    fn step_started(&mut self, number: usize, label: &str) {
        self.emit(serde_json::json!({"event": "step_started", "step": number, "name": label}));
    }
    fn step_done(&mut self, number: usize, elapsed: Duration) {
        self.emit(serde_json::json!({"event": "step_completed", "step": number, "seconds": elapsed.as_secs_f64()}));
    }
    fn warning(&mut self, message: &str) {
        self.emit(serde_json::json!({"event": "warning", "message": message}));
    }
    fn info(&mut self, message: &str) {
        self.emit(serde_json::json!({"event": "info", "message": message}));
    }
    fn step_cached(&mut self, number: usize) {
        self.emit(serde_json::json!({"event": "step_cached", "step": number}));
    }
    fn error(&mut self, message: &str) {
        self.emit(serde_json::json!({"event": "error", "message": message}));
    }
    fn explain(&mut self, number: usize, explanation: &str) {
        self.emit(serde_json::json!({"event": "cache_miss", "step": number, "explanation": explanation}));
    }
    fn output(&mut self, number: usize, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        self.emit(serde_json::json!({"event": "log", "step": number, "data": text}));
    }
    fn image_built(&mut self, image: &BuiltImage) {
        self.emit(serde_json::json!({
            "event": "image",
            "id": image.id,
            "manifest_digest": image.manifest_digest,
            "tags": image.tags,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines() {
        let mut out = Vec::new();
        {
            let mut p = PlainProgress::new(&mut out);
            p.step_started(1, "[stage-0 2/2] COPY a /b");
            p.output(1, b"one\ntw");
            p.output(1, b"o\nthree");
            p.step_done(1, Duration::from_millis(1234));
            p.warning("careful");
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "#1 [stage-0 2/2] COPY a /b\n#1 one\n#1 two\n#1 three\n#1 DONE 1.2s\nWARNING: careful\n"
        );
    }

    #[test]
    fn rawjson_lines_parse() {
        let mut out = Vec::new();
        {
            let mut p = RawJsonProgress::new(&mut out);
            p.step_started(2, "COPY \"a\" /b");
            p.step_done(2, Duration::from_millis(500));
        }
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["event"], "step_started");
        assert_eq!(lines[0]["name"], "COPY \"a\" /b");
        assert_eq!(lines[1]["seconds"], 0.5);
    }
}
