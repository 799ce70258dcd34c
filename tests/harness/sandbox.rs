//! Helpers for the tests of RUN: a busybox image with a shell, reading what a RUN saw, finding
//! the entries a step put in its layer, and checking that a build left nothing behind (mounts,
//! processes, temporary files), including builds interrupted by a signal.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::archive::{Archive, LayerEntry};
use crate::env::Rbuild;
use crate::process::RunOutput;

/// The first lines of a Dockerfile whose RUN steps have a shell: busybox and its applets as
/// symlinks in /bin (`/bin/sh`, `cat`, `id`…).
pub const BUSYBOX_SH: [&str; 3] = [
    "FROM scratch",
    "COPY busybox /bin/busybox",
    r#"RUN ["/bin/busybox","--install","-s","/bin"]"#,
];

/// [`BUSYBOX_SH`] followed by `lines`; line N of the Dockerfile is element N-1, so the first of
/// `lines` is line 4.
pub fn with_shell<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    BUSYBOX_SH
        .iter()
        .copied()
        .chain(lines.iter().copied())
        .collect()
}

/// The interface names listed in a `/proc/net/dev` text (after its two header lines).
pub fn interfaces(proc_net_dev: &str) -> Vec<String> {
    proc_net_dev
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The entry for `path` in the topmost layer of `archive` that has one; panics when no layer has.
#[track_caller]
pub fn top_entry(archive: &Archive, path: &str) -> LayerEntry {
    archive
        .layers()
        .into_iter()
        .rev()
        .find_map(|layer| layer.into_iter().find(|e| e.path == path))
        .unwrap_or_else(|| panic!("no layer of {} has {path}", archive.path.display()))
}

/// The paths in layer `index` (0 = bottom) of `archive`.
pub fn layer_paths(archive: &Archive, index: usize) -> Vec<String> {
    let layers = archive.layers();
    let layer = layers
        .get(index)
        .unwrap_or_else(|| panic!("the image has {} layers, not {}", layers.len(), index + 1));
    layer.iter().map(|e| e.path.clone()).collect()
}

/// A marker for a command line no other process on the machine has: `30.<digits>`, a valid
/// `sleep` duration of about 30 s, unique per call (pid, time, counter).
pub fn sleep_marker() -> String {
    let digits: String = crate::env::unique_suffix()
        .chars()
        .map(|c| match c.to_digit(16) {
            Some(d) => char::from(b'0' + (d % 10) as u8),
            None => '0',
        })
        .collect();
    format!("30.{digits}")
}

/// `pid: cmdline` of every process (but this one) whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let own = std::process::id().to_string();
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        panic!("cannot list /proc");
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == own || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process may exit while we look: that is not a leftover.
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.contains(marker) {
            found.push(format!("{name}: {}", cmdline.trim_end()));
        }
    }
    found
}

/// Lines of this process's `/proc/self/mountinfo` that mention `path` (mounts under it, or of it).
pub fn mounts_mentioning(path: &Path) -> Vec<String> {
    let needle = path.to_str().expect("utf-8 path");
    fs::read_to_string("/proc/self/mountinfo")
        .expect("reading /proc/self/mountinfo")
        .lines()
        .filter(|line| line.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The names in the store's `tmp/` directory (none when it does not exist).
pub fn store_tmp_entries(store: &Path) -> Vec<String> {
    match fs::read_dir(store.join("tmp")) {
        Ok(entries) => entries
            .map(|e| {
                e.expect("tmp entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("listing {}/tmp: {e}", store.display()),
    }
}

/// Checks that a finished rbuild left nothing behind: no mount mentioning the store, no process
/// whose command line has `marker`, an empty `tmp/` in the store. Processes get a grace period of
/// two seconds to be reaped (far less than the 30 s sleeps the markers are part of).
#[track_caller]
pub fn assert_no_leftovers(store: &Path, marker: &str, what: &str) {
    let mounts = mounts_mentioning(store);
    assert!(
        mounts.is_empty(),
        "{what}: mounts of the store {} are left:\n{}",
        store.display(),
        mounts.join("\n")
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut procs = processes_with(marker);
    while !procs.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
        procs = processes_with(marker);
    }
    assert!(
        procs.is_empty(),
        "{what}: processes with {marker:?} in their command line outlived rbuild:\n{}",
        procs.join("\n")
    );
    let tmp = store_tmp_entries(store);
    assert!(
        tmp.is_empty(),
        "{what}: {}/tmp is not empty: {tmp:?}",
        store.display()
    );
}

/// An rbuild started in the background, e.g. to be interrupted.
pub struct Background {
    command: String,
    child: Child,
    stdout: mpsc::Receiver<Vec<u8>>,
    stderr: mpsc::Receiver<Vec<u8>>,
}

impl Background {
    pub fn start(rbuild: Rbuild) -> Self {
        let mut cmd: Command = rbuild.into_command();
        let command = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        let stdout = drain(child.stdout.take().expect("piped stdout"));
        let stderr = drain(child.stderr.take().expect("piped stderr"));
        Background {
            command,
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a process with `marker` in its command line runs (the RUN step started);
    /// panics, with rbuild's output, if rbuild exits first or nothing shows within 60 s.
    pub fn wait_for_process(&mut self, marker: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if !processes_with(marker).is_empty() {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let out = self.finish(status);
                panic!(
                    "rbuild exited before a process with {marker:?} appeared\n{}",
                    out.describe()
                );
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("no process with {marker:?} appeared within 60 s");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `signal` (a name for kill(1): TERM, INT…) to rbuild alone.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("running kill(1)");
        assert!(status.success(), "kill -s {signal} {} failed", self.pid());
    }

    /// Waits up to `limit` for rbuild to exit; panics (after killing it) when it does not.
    pub fn wait(mut self, limit: Duration) -> RunOutput {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return self.finish(status);
            }
            if Instant::now() > deadline {
                self.kill();
                let status = self.child.wait().expect("wait");
                let out = self.finish(status);
                panic!(
                    "rbuild did not exit within {limit:?}; killed it\n{}",
                    out.describe()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// The outcome of the exited rbuild. Its output is taken as far as it came within two
    /// seconds: a process that outlived rbuild may hold the pipes open, and waiting for it would
    /// hide exactly that leftover (the leftover checks come after this).
    fn finish(&mut self, status: std::process::ExitStatus) -> RunOutput {
        let collect = |rx: &mpsc::Receiver<Vec<u8>>, name: &str| {
            rx.recv_timeout(Duration::from_secs(2)).unwrap_or_else(|_| {
                format!("<{name} still open 2 s after rbuild exited: a process outlived it>")
                    .into_bytes()
            })
        };
        RunOutput {
            command: self.command.clone(),
            status,
            stdout: collect(&self.stdout, "stdout"),
            stderr: collect(&self.stderr, "stderr"),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // A test that failed half-way must not leave rbuild running.
        if let Ok(None) = self.child.try_wait() {
            self.kill();
            let _ = self.child.wait();
        }
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    rx
}
