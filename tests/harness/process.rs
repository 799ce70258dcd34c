//! Running an external command (rbuild, docker, skopeo, umoci) with a time limit, and checking
//! its outcome with failure messages that show everything needed to debug it.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long any one command may run. A hang then fails the one test instead of the whole run;
/// the limit is generous because two cores may be busy building and loading at once.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// What a finished command did.
pub struct RunOutput {
    /// The command line, as shown in failure messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl RunOutput {
    /// The exit code; `None` when a signal ended the process.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Panics unless the command exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        if !self.status.success() {
            panic!("command failed\n{}", self.describe());
        }
        self
    }

    /// Panics unless the command exited with `code`.
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        if self.code() != Some(code) {
            panic!("expected exit code {code}\n{}", self.describe());
        }
        self
    }

    /// Panics unless stderr contains `needle`, ignoring ASCII case (error wording such as
    /// "Error"/"error" or "did you mean WORKDIR"/"workdir" is not part of the contract).
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        let stderr = self.stderr_text().to_ascii_lowercase();
        if !stderr.contains(&needle.to_ascii_lowercase()) {
            panic!("expected stderr to contain {needle:?}\n{}", self.describe());
        }
        self
    }

    /// The image ID of a `-q` build: panics unless stdout is exactly `sha256:<64 hex>` and a
    /// newline; returns it without the newline.
    #[track_caller]
    pub fn image_id(&self) -> String {
        let stdout = self.stdout_text();
        let id = stdout.strip_suffix('\n').unwrap_or("");
        let hex = id.strip_prefix("sha256:").unwrap_or("");
        let well_formed =
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !well_formed {
            panic!("stdout is not just an image ID line\n{}", self.describe());
        }
        id.to_string()
    }

    /// The command, its status and both streams (stdout shortened when long or binary).
    pub fn describe(&self) -> String {
        const LIMIT: usize = 4000;
        let stdout = if self.stdout.len() > LIMIT || std::str::from_utf8(&self.stdout).is_err() {
            format!("<{} bytes>", self.stdout.len())
        } else {
            self.stdout_text()
        };
        format!(
            "command: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.status,
            stdout,
            tail(&self.stderr_text(), LIMIT)
        )
    }
}

/// The last `limit` bytes of `text` (on a char boundary): an error is at the end of a log.
fn tail(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// Runs `cmd` to completion, feeding it `stdin` (or nothing), and kills it after
/// [`COMMAND_TIMEOUT`]. Panics if it cannot be started or times out.
pub fn run(mut cmd: Command, stdin: Option<Vec<u8>>) -> RunOutput {
    let command = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start {command}: {e} (scripts/test.sh installs the tools)")
    });

    // Both pipes are drained on their own threads so a chatty child never blocks on a full pipe
    // while we wait for it; stdin is written the same way for the same reason.
    let writer = child.stdin.take().zip(stdin).map(|(mut pipe, bytes)| {
        thread::spawn(move || {
            // A child that exits without reading all of stdin is its own business.
            let _ = pipe.write_all(&bytes);
        })
    });
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));

    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command} did not finish within {COMMAND_TIMEOUT:?}; killed it");
        }
        thread::sleep(Duration::from_millis(10));
    };
    if let Some(writer) = writer {
        writer.join().expect("stdin writer thread");
    }
    RunOutput {
        command,
        status,
        stdout: stdout.join().expect("stdout reader thread"),
        stderr: stderr.join().expect("stderr reader thread"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        pipe.read_to_end(&mut bytes)
            .expect("reading a child's output");
        bytes
    })
}

/// Runs a helper tool (`skopeo`, `umoci`, `tar`…) and panics with its output unless it succeeds.
pub fn run_tool<S: AsRef<std::ffi::OsStr>>(program: &str, args: &[S]) -> RunOutput {
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = run(cmd, None);
    out.assert_success();
    out
}
