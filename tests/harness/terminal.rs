//! A terminal for tests that need one: a private tmux server running a command in a window of
//! a given size, whose screen is read back (the tty progress view, the interactive debug shell).

use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// A private tmux server (its own socket, in the test's scratch directory, so that it goes with
/// it; no config file), killed on drop.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    pub fn start(socket: PathBuf, window: &str, command: &str) -> Tmux {
        match Command::new("tmux").arg("-V").output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!("`tmux -V` failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => panic!(
                "tmux is missing ({e}): install it (apt-get install tmux); scripts/test.sh \
                 installs it with the other test tools"
            ),
        }
        let tmux = Tmux { socket };
        let (x, y) = window.split_once('x').expect("WIDTHxHEIGHT");
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            x,
            "-y",
            y,
            command,
        ]);
        tmux
    }

    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running tmux");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The visible screen, trailing blanks removed.
    pub fn screen(&self) -> String {
        let text = self.run(&["capture-pane", "-p"]);
        text.lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            .trim_end()
            .to_string()
    }

    /// Captures the screen until `done` holds for it; panics with the last screen after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("the terminal did not show {what} within {limit:?}; it shows:\n{screen}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Only this test's server, by its own socket: it ends the shell and rbuild in it.
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .status();
    }
}

