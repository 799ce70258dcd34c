//! Progress renderers: plain mode prints BuildKit-style `#N` lines to stderr, rawjson one
//! JSON event per line, quiet mode nothing (the tty renderer is in `progress_tty`).

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

pub use crate::engine::events::{BuiltImage, EmulatedRun, Finding, Progress};

/// `RuleName - file:line: message`: a build-check finding as a warning says it.
pub fn finding_text(file: &str, finding: &Finding) -> String {
    format!("{} - {file}:{}: {}", finding.rule, finding.line, finding.message)
}

/// Build-check findings held back until the build ends, to be printed once after it.
#[derive(Default)]
pub struct HeldFindings(Vec<String>);

impl HeldFindings {
    pub fn hold(&mut self, file: &str, finding: &Finding) {
        self.0.push(format!("WARNING: {}", finding_text(file, finding)));
    }

    /// The held lines, each once: the next call has none.
    pub fn take(&mut self) -> Vec<String> {
        std::mem::take(&mut self.0)
    }

    fn write_to(&mut self, out: &mut dyn Write) {
        for line in self.take() {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// `#3 [stage-0 2/3] COPY a /b` … `#3 DONE 0.1s`, on stderr.
pub struct PlainProgress<W: Write> {
    out: W,
    /// Each running step's output after its last newline, printed with the
    /// step's next chunk (steps run in parallel, so this is per step).
    pending: HashMap<usize, Vec<u8>>,
    findings: HeldFindings,
}

impl<W: Write> PlainProgress<W> {
    pub fn new(out: W) -> Self {
        PlainProgress { out, pending: HashMap::new(), findings: HeldFindings::default() }
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

    fn emulated_run(&mut self, run: &EmulatedRun) {
        self.warning(&emulation_warning(run));
    }

    fn info(&mut self, message: &str) {
        let _ = writeln!(self.out, "{message}");
    }

    fn check(&mut self, file: &str, finding: &Finding) {
        self.findings.hold(file, finding);
    }

    fn error(&mut self, _: &str) {
        self.findings.write_to(&mut self.out);
    }

    fn finished(&mut self, _: Duration) {
        self.findings.write_to(&mut self.out);
    }
}

/// The warning for a RUN that runs under QEMU user emulation.
pub fn emulation_warning(run: &EmulatedRun) -> String {
    let line = run.line.map(|l| format!("line {l}: ")).unwrap_or_default();
    format!(
        "{line}{} runs for {} under QEMU user emulation on this {} host, which is much slower than native; \
         cross-compile in a FROM --platform=$BUILDPLATFORM stage to avoid it",
        run.instruction, run.platform, run.host
    )
}

/// Prints only warnings, for `--quiet`: a silent warning would hide a mistake.
pub struct QuietProgress<W: Write> {
    out: W,
    findings: HeldFindings,
}

impl<W: Write> QuietProgress<W> {
    pub fn new(out: W) -> Self {
        QuietProgress { out, findings: HeldFindings::default() }
    }
}

impl<W: Write> Progress for QuietProgress<W> {
    fn step_started(&mut self, _: usize, _: &str) {}
    fn step_done(&mut self, _: usize, _: Duration) {}
    fn warning(&mut self, message: &str) {
        let _ = writeln!(self.out, "WARNING: {message}");
    }
    fn emulated_run(&mut self, run: &EmulatedRun) {
        self.warning(&emulation_warning(run));
    }
    fn check(&mut self, file: &str, finding: &Finding) {
        self.findings.hold(file, finding);
    }
    fn error(&mut self, _: &str) {
        self.findings.write_to(&mut self.out);
    }
    fn finished(&mut self, _: Duration) {
        self.findings.write_to(&mut self.out);
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
    fn emulated_run(&mut self, run: &EmulatedRun) {
        self.emit(serde_json::json!({
            "event": "emulated_run",
            "step": run.number,
            "line": run.line,
            "instruction": run.instruction,
            "platform": run.platform,
            "host": run.host,
            "message": emulation_warning(run),
        }));
    }
    fn info(&mut self, message: &str) {
        self.emit(serde_json::json!({"event": "info", "message": message}));
    }
    fn check(&mut self, file: &str, finding: &Finding) {
        self.emit(serde_json::json!({
            "event": "check",
            "rule": finding.rule,
            "file": file,
            "line": finding.line,
            "message": finding.message,
            "fix": finding.fix(),
        }));
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
