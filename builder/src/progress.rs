//! Progress output. Plain mode prints BuildKit-style `#N` lines to stderr;
//! quiet mode prints nothing.

use std::io::Write;
use std::time::Duration;

/// Receives build events as they happen.
pub trait Progress {
    fn step_started(&mut self, number: usize, label: &str);
    fn step_done(&mut self, number: usize, elapsed: Duration);
    fn warning(&mut self, message: &str);
    fn info(&mut self, message: &str);
}

/// `#3 [stage-0 2/3] COPY a /b` … `#3 DONE 0.1s`, on stderr.
pub struct PlainProgress<W: Write> {
    out: W,
}

impl<W: Write> PlainProgress<W> {
    pub fn new(out: W) -> Self {
        PlainProgress { out }
    }
}

impl<W: Write> Progress for PlainProgress<W> {
    fn step_started(&mut self, number: usize, label: &str) {
        let _ = writeln!(self.out, "#{number} {label}");
    }

    fn step_done(&mut self, number: usize, elapsed: Duration) {
        let _ = writeln!(self.out, "#{number} DONE {:.1}s", elapsed.as_secs_f64());
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
            p.step_done(1, Duration::from_millis(1234));
            p.warning("careful");
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "#1 [stage-0 2/2] COPY a /b\n#1 DONE 1.2s\nWARNING: careful\n"
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
