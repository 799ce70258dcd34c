//! The live terminal view (`--progress=tty`, the default on a terminal): one
//! line per step with its elapsed time, the last lines of output of each
//! running step under it, DONE markers, and the total time at the end.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::progress::{emulation_warning, EmulatedRun, Finding, HeldFindings, Progress};

/// How many output lines of a running step stay on screen.
const OUTPUT_LINES: usize = 6;

struct RunningStep {
    bar: ProgressBar,
    output: ProgressBar,
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

pub struct TtyProgress {
    multi: MultiProgress,
    steps: HashMap<usize, RunningStep>,
    done: usize,
    findings: HeldFindings,
}

impl TtyProgress {
    pub fn new() -> TtyProgress {
        TtyProgress {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            steps: HashMap::new(),
            done: 0,
            findings: HeldFindings::default(),
        }
    }

    fn print_findings(&mut self) {
        for line in self.findings.take() {
            let _ = self.multi.println(line);
        }
    }

    fn running_style() -> ProgressStyle {
        ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} {wide_msg} {elapsed:>4.dim}")
            .expect("a valid template")
            .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓")
    }

    /// Replaces a finished step's live bar with a printed line. A finished
    /// bar left in place would be erased by the next printed message
    /// (indicatif clears finished bars when it prints above them).
    fn finish_step(&mut self, number: usize, marker: &str) {
        if let Some(step) = self.steps.remove(&number) {
            let label = step.bar.message();
            for bar in [&step.output, &step.bar] {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
            let _ = self.multi.println(format!("=> #{number} {label}  {marker}"));
        }
        self.done += 1;
    }

    fn output_style() -> ProgressStyle {
        ProgressStyle::with_template("{wide_msg:.dim}").expect("a valid template")
    }
}

impl Default for TtyProgress {
    fn default() -> Self {
        TtyProgress::new()
    }
}

impl Progress for TtyProgress {
    fn step_started(&mut self, number: usize, label: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(Self::running_style());
        bar.set_prefix(format!("=> #{number}"));
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        let output = self.multi.insert_after(&bar, ProgressBar::new_spinner());
        output.set_style(Self::output_style());
        self.steps.insert(number, RunningStep { bar, output, lines: VecDeque::new(), partial: Vec::new() });
    }

    fn step_done(&mut self, number: usize, elapsed: Duration) {
        self.finish_step(number, &format!("DONE {:.1}s", elapsed.as_secs_f64()));
    }

    fn step_cached(&mut self, number: usize) {
        self.finish_step(number, "CACHED");
    }

    fn explain(&mut self, number: usize, explanation: &str) {
        let _ = self.multi.println(format!("#{number} cache miss: {explanation}"));
    }

    fn warning(&mut self, message: &str) {
        let _ = self.multi.println(format!("WARNING: {message}"));
    }

    fn emulated_run(&mut self, run: &EmulatedRun) {
        self.warning(&emulation_warning(run));
    }

    fn info(&mut self, message: &str) {
        let _ = self.multi.println(message);
    }

    fn check(&mut self, file: &str, finding: &Finding) {
        self.findings.hold(file, finding);
    }

    fn error(&mut self, _: &str) {
        self.print_findings();
    }

    fn output(&mut self, number: usize, bytes: &[u8]) {
        let Some(step) = self.steps.get_mut(&number) else { return };
        step.partial.extend_from_slice(bytes);
        while let Some(end) = step.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = step.partial.drain(..=end).collect();
            step.lines.push_back(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned());
            if step.lines.len() > OUTPUT_LINES {
                step.lines.pop_front();
            }
        }
        let shown: Vec<String> = step.lines.iter().map(|l| format!("   {l}")).collect();
        step.output.set_message(shown.join("\n"));
    }

    fn finished(&mut self, total: Duration) {
        let _ = self.multi.println(format!(
            "[+] Building {:.1}s ({}/{}) FINISHED",
            total.as_secs_f64(),
            self.done,
            self.done + self.steps.len()
        ));
        self.print_findings();
    }
}
