//! The README's quick start, run as it is written: the commands between its
//! `<!-- quickstart:begin -->` and `<!-- quickstart:end -->` markers, with `rbuild` and Docker's
//! client on PATH, in an empty directory.

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use rbuild_e2e::{rbuild_bin, Docker, TestEnv};

/// The quick start's commands: the indented lines between the markers, unindented.
fn quickstart_script() -> String {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&readme).expect("reading README.md");
    let start = text.find("<!-- quickstart:begin -->").expect("the README marks its quick start");
    let end = text.find("<!-- quickstart:end -->").expect("the quick start has an end marker");
    text[start..end]
        .lines()
        .skip(1)
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_readme_quick_start_runs_as_written() {
    let env = TestEnv::new("quickstart");
    let script = quickstart_script();
    assert!(script.contains("rbuild build"), "{script}");
    // `rbuild` and `docker` as the reader has them: first on PATH.
    let bin = env.path("bin");
    std::fs::create_dir(&bin).unwrap();
    symlink(rbuild_bin(), bin.join("rbuild")).unwrap();
    let docker = std::env::var("RBUILD_TEST_DOCKER").unwrap_or_else(|_| "/usr/bin/docker".into());
    symlink(&docker, bin.join("docker")).unwrap();
    let work = env.path("work");
    std::fs::create_dir(&work).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let _cleanup = RemoveTag("quickstart:1");
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&work)
        .env("PATH", path)
        .env("RBUILD_ROOT", env.store())
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("running bash");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the quick start failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let arch = std::env::consts::ARCH;
    assert!(stdout.contains(&format!("hello from rbuild\n{arch}\n")), "docker run printed:\n{stdout}");
    assert!(stderr.contains("cache miss: files changed: greeting.txt"), "{stderr}");
    assert!(stderr.contains("CACHED"), "{stderr}");
    assert!(stdout.contains("quickstart") && stdout.contains("REPOSITORY"), "rbuild images:\n{stdout}");
}

/// Removes the quick start's image from Docker when the test ends.
struct RemoveTag(&'static str);

impl Drop for RemoveTag {
    fn drop(&mut self) {
        let _ = Docker::get().rmi(self.0);
    }
}
