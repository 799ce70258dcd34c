//! A real Debian 12 base for the tests that install packages, and a package to install on it.
//!
//! - [`minbase_tar`]: a `debootstrap --variant=minbase` root filesystem of bookworm, made once
//!   per machine from the mirror apt already uses (`/etc/apt/sources.list` and
//!   `sources.list.d/`, or `$RBUILD_TEST_DEBIAN_MIRROR`), packed as a tar and cached as
//!   `debian-bookworm-minbase-<arch>-<debootstrap version>.tar` in `$RBUILD_TEST_CACHE`, else
//!   `/var/cache/rbuild-tests`. Later runs (and CI caching that directory) reuse it; it is made
//!   under a lock file, so parallel tests and test processes never race to make it.
//! - [`build_base`]: the image [`BASE_REF`] (`debian-minbase:12`), built by rbuild itself from
//!   that tar (`FROM scratch` + `ADD debian.tar /`) into a test's store.
//! - [`hello_deb`], [`file_repository`]: the tiny package `rbuild-hello` made with
//!   `dpkg-deb --build` (`/usr/bin/rbuild-hello` prints [`HELLO_MESSAGE`]; its `postinst`
//!   writes [`HELLO_MARKER`]), alone or in a flat `file:` repository (`dpkg-scanpackages`).
//!
//! Making the base needs root and `debootstrap`; the repository needs `dpkg-scanpackages`
//! (Debian's dpkg-dev). scripts/test.sh installs both and runs the tests as root.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::context::Context;
use crate::env::TestEnv;
use crate::process::{self, run_tool};

/// The tag [`build_base`] gives the Debian base in a test's store.
pub const BASE_REF: &str = "debian-minbase:12";
/// The Debian release the base is made of.
pub const SUITE: &str = "bookworm";
/// What `/usr/bin/rbuild-hello` prints (with a newline).
pub const HELLO_MESSAGE: &str = "hello from rbuild-hello, installed by dpkg";
/// The file the package's `postinst` writes: `configured <its first argument>`.
pub const HELLO_MARKER: &str = "/var/lib/rbuild-hello/postinst-ran";
/// The package's name and version, as `dpkg-query` shows them.
pub const HELLO_PACKAGE: &str = "rbuild-hello";
pub const HELLO_VERSION: &str = "1.0";

/// How long making the base may take: debootstrap downloads about 40 MB and installs ~90
/// packages; a slow mirror on two busy cores takes minutes, not this long.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long a test waits for another process that is making the base.
const LOCK_WAIT_SECONDS: &str = "2400";

/// The cached minbase tar, made on the first call of the machine (see the module docs).
pub fn minbase_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(ensure_minbase_tar)
}

/// The directory of the cached tar: `$RBUILD_TEST_CACHE`, else `/var/cache/rbuild-tests`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("RBUILD_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/rbuild-tests"))
}

fn ensure_minbase_tar() -> PathBuf {
    let version = debootstrap_version();
    let arch = tool_stdout("dpkg", &["--print-architecture"]);
    let cache = cache_dir();
    let tar = cache.join(format!(
        "debian-{SUITE}-minbase-{arch}-{}.tar",
        version.replace(['/', ':', '~'], "_")
    ));
    if tar.is_file() {
        return tar;
    }
    assert!(
        is_root(),
        "{} does not exist, and making it (debootstrap) needs root: run the tests as root \
         (sudo scripts/test.sh) once, or set RBUILD_TEST_CACHE to a directory that has it",
        tar.display()
    );
    fs::create_dir_all(&cache)
        .unwrap_or_else(|e| panic!("creating the test cache {}: {e}", cache.display()));
    let _lock = CacheLock::acquire(&cache.join(format!(".debian-{SUITE}-minbase.lock")));
    // Another process may have made it while this one waited for the lock.
    if !tar.is_file() {
        create_minbase_tar(&cache, &tar, &arch, &version);
    }
    tar
}

/// The version of the installed debootstrap; panics with how to get it when it is missing.
fn debootstrap_version() -> String {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Status} ${Version}", "debootstrap"])
        .output()
        .expect("running dpkg-query");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match text.strip_prefix("install ok installed ") {
        Some(version) if out.status.success() && !version.is_empty() => version.to_string(),
        _ => panic!(
            "debootstrap is not installed: the Debian base tests make their base with it \
             (sudo apt-get install debootstrap, or run sudo scripts/test.sh, which installs it)"
        ),
    }
}

/// Runs debootstrap into a temp dir beside `tar`, packs the result into `tar` (atomically, by
/// a rename) and removes the temp dir; panics with debootstrap's log when it fails.
fn create_minbase_tar(cache: &Path, tar: &Path, arch: &str, version: &str) {
    let mirror = apt_mirror();
    let work = tempfile::Builder::new()
        .prefix(".debootstrap-")
        .tempdir_in(cache)
        .expect("creating a temp dir in the test cache");
    let work = Unmounting(work);
    let rootfs = work.0.path().join("rootfs");
    let log = work.0.path().join("debootstrap.out");
    eprintln!(
        "[rbuild-e2e] making the Debian base: debootstrap {version} --variant=minbase {SUITE} \
         from {mirror} (once; cached as {})",
        tar.display()
    );
    let started = Instant::now();
    let mut cmd = Command::new("debootstrap");
    cmd.args([
        "--variant=minbase",
        "--force-check-gpg",
        "--arch",
        arch,
        SUITE,
    ])
    .arg(&rootfs)
    .arg(&mirror);
    let status = run_logged(cmd, &log, CREATE_TIMEOUT);
    if !status.success() {
        let own_log =
            fs::read_to_string(rootfs.join("debootstrap/debootstrap.log")).unwrap_or_default();
        panic!(
            "debootstrap --variant=minbase {SUITE} {} {mirror} failed ({status}); the Debian base \
             tests need it to work once (it needs root, network access to the mirror apt uses, \
             and debian-archive-keyring; RBUILD_TEST_DEBIAN_MIRROR picks another mirror)\n\
             --- its output ---\n{}\n--- debootstrap.log ---\n{}",
            rootfs.display(),
            tail(&fs::read_to_string(&log).unwrap_or_default(), 3000),
            tail(&own_log, 3000)
        );
    }
    let debootstrapped = started.elapsed();
    // /dev, /proc and /sys stay empty directories, as in Debian's own images: the sandbox
    // mounts its own, and a rootless build could not make device nodes anyway. The packages
    // debootstrap downloaded and the mirror's index (90 of the 190 MB) are left out too, as
    // `apt-get clean` and Debian's images do: every test adds the tar to a store of its own.
    let partial = work.0.path().join("rootfs.tar");
    let rootfs_arg = rootfs.display().to_string();
    let partial_arg = partial.display().to_string();
    run_tool(
        "tar",
        &[
            "--create",
            "--file",
            &partial_arg,
            "--directory",
            &rootfs_arg,
            "--numeric-owner",
            "--sort=name",
            "--one-file-system",
            "--exclude=./dev/*",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            "--exclude=./var/cache/apt/archives/*.deb",
            "--exclude=./var/cache/apt/*.bin",
            "--exclude=./var/lib/apt/lists/*_*",
            ".",
        ],
    );
    fs::rename(&partial, tar).unwrap_or_else(|e| panic!("renaming into {}: {e}", tar.display()));
    eprintln!(
        "[rbuild-e2e] debootstrap took {:.1} s, packing {:.1} s; {} is {} MB",
        debootstrapped.as_secs_f64(),
        (started.elapsed() - debootstrapped).as_secs_f64(),
        tar.display(),
        fs::metadata(tar).map(|m| m.len() >> 20).unwrap_or(0)
    );
}

/// A temp dir that is unmounted below (debootstrap mounts /proc and /sys in its target and a
/// failure can leave them) before it is removed.
struct Unmounting(tempfile::TempDir);

impl Drop for Unmounting {
    fn drop(&mut self) {
        let prefix = format!("{}/", self.0.path().display());
        let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        // Deepest first, so that parents are free when their turn comes.
        mounts.sort_by(|a, b| b.cmp(a));
        for mount in mounts {
            let _ = Command::new("umount").arg("--lazy").arg(&mount).status();
        }
    }
}

/// Runs `cmd` with stdout and stderr going to `log`, killing it after `limit`.
fn run_logged(mut cmd: Command, log: &Path, limit: Duration) -> std::process::ExitStatus {
    let file = fs::File::create(log).expect("creating a log file");
    cmd.stdin(Stdio::null())
        .stdout(file.try_clone().expect("cloning a log file"))
        .stderr(file);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not finish within {limit:?}; killed it. Its output:\n{}",
                tail(&fs::read_to_string(log).unwrap_or_default(), 3000)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// An exclusive `flock` on a file, held by a `flock(1)` child for as long as this value lives
/// (the crate has no libc binding). The child exits, releasing it, when its stdin closes: on
/// drop, or when this process dies.
pub(crate) struct CacheLock {
    child: Child,
}

impl CacheLock {
    pub(crate) fn acquire(path: &Path) -> CacheLock {
        let mut child = Command::new("flock")
            .args(["--exclusive", "--wait", LOCK_WAIT_SECONDS])
            .arg(path)
            .args(["sh", "-c", "echo locked && exec cat >/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start flock (util-linux): {e}"));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("flock's stdout is piped");
        let _ = BufReader::new(stdout).read_line(&mut line);
        if line.trim() != "locked" {
            let _ = child.kill();
            let status = child.wait().expect("waiting for flock");
            panic!(
                "could not lock {} within {LOCK_WAIT_SECONDS} s ({status}): another test run \
                 may be stuck making the Debian base",
                path.display()
            );
        }
        CacheLock { child }
    }
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The mirror for debootstrap: `$RBUILD_TEST_DEBIAN_MIRROR`, else the URI of the first enabled
/// `deb` source of apt's configuration that has the suite bookworm.
pub fn apt_mirror() -> String {
    if let Some(mirror) = std::env::var_os("RBUILD_TEST_DEBIAN_MIRROR") {
        return mirror.to_string_lossy().into_owned();
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for file in &files {
        let Ok(text) = fs::read_to_string(file) else {
            continue;
        };
        // apt reads only these two kinds of file; others (`*.disabled`…) are ignored.
        let sources = match file.extension().and_then(|e| e.to_str()) {
            Some("list") => one_line_sources(&text),
            Some("sources") => deb822_sources(&text),
            _ => continue,
        };
        let found = sources.into_iter().find(|(uri, suites)| {
            suites.iter().any(|s| s == SUITE)
                && ["http://", "https://", "file:/"]
                    .iter()
                    .any(|p| uri.starts_with(p))
        });
        if let Some((uri, _)) = found {
            return uri;
        }
    }
    panic!(
        "no `deb` source for {SUITE} in apt's configuration ({}): set RBUILD_TEST_DEBIAN_MIRROR \
         to a Debian mirror this machine reaches (such as http://deb.debian.org/debian)",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `(URI, [suite])` of each `deb` line of a one-line-style sources.list.
fn one_line_sources(text: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut word = words.next();
        // Options: `[arch=amd64 trusted=yes]`, possibly with spaces inside the brackets.
        if word.is_some_and(|w| w.starts_with('[')) {
            while let Some(w) = word {
                word = words.next();
                if w.ends_with(']') {
                    break;
                }
            }
        }
        if let (Some(uri), Some(suite)) = (word, words.next()) {
            found.push((
                uri.trim_end_matches('/').to_string(),
                vec![suite.to_string()],
            ));
        }
    }
    found
}

/// `(URI, suites)` of each enabled `deb` URI of a deb822-style `.sources` file.
fn deb822_sources(text: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for paragraph in text.split("\n\n") {
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in paragraph.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((key, value)) = line.split_once(':') {
                fields.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let enabled = !field("enabled").eq_ignore_ascii_case("no");
        if !enabled || !field("types").split_whitespace().any(|t| t == "deb") {
            continue;
        }
        let suites: Vec<String> = field("suites")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        for uri in field("uris").split_whitespace() {
            found.push((uri.trim_end_matches('/').to_string(), suites.clone()));
        }
    }
    found
}

/// A context with the cached tar as `debian.tar` and the Dockerfile that makes the base of it.
pub fn base_context() -> Context {
    let ctx = Context::new();
    let tar = minbase_tar();
    let dest = ctx.join("debian.tar");
    // A hard link costs nothing; another file system gets a copy.
    if fs::hard_link(tar, &dest).is_err() {
        fs::copy(tar, &dest).unwrap_or_else(|e| panic!("copying {}: {e}", tar.display()));
    }
    ctx.dockerfile(&["FROM scratch", "ADD debian.tar /", r#"CMD ["bash"]"#]);
    ctx
}

/// Builds [`BASE_REF`] from [`base_context`] into `env`'s store.
pub fn build_base(env: &TestEnv) {
    let ctx = base_context();
    env.rbuild()
        .args(["build", "-q", "-t", BASE_REF])
        .arg(ctx.path())
        .run()
        .assert_success();
}

/// Makes `rbuild-hello_1.0_all.deb` in `dir` with `dpkg-deb --build`; returns its path.
pub fn hello_deb(dir: &Path) -> PathBuf {
    let tree = tempfile::tempdir().expect("temp dir");
    let root = tree.path().join("rbuild-hello");
    let write = |rel: &str, text: &str, mode: u32| {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("a parent")).expect("creating package dirs");
        fs::File::create(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    };
    write(
        "DEBIAN/control",
        &format!(
            "Package: {HELLO_PACKAGE}\nVersion: {HELLO_VERSION}\nArchitecture: all\n\
             Maintainer: rbuild tests <rbuild-tests@example.invalid>\nSection: misc\n\
             Priority: optional\nDescription: prints a greeting for rbuild's tests\n"
        ),
        0o644,
    );
    let marker_dir = Path::new(HELLO_MARKER)
        .parent()
        .expect("marker dir")
        .display()
        .to_string();
    write(
        "DEBIAN/postinst",
        &format!(
            "#!/bin/sh\nset -e\nmkdir -p {marker_dir}\necho \"configured $1\" > {HELLO_MARKER}\n"
        ),
        0o755,
    );
    write(
        "usr/bin/rbuild-hello",
        &format!("#!/bin/sh\necho '{HELLO_MESSAGE}'\n"),
        0o755,
    );
    for sub in ["", "DEBIAN", "usr", "usr/bin"] {
        fs::set_permissions(root.join(sub), fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let deb = dir.join(format!("{HELLO_PACKAGE}_{HELLO_VERSION}_all.deb"));
    let mut cmd = Command::new("dpkg-deb");
    cmd.args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb);
    let out = process::run(cmd, None);
    if !out.status.success() {
        panic!(
            "dpkg-deb (Debian's dpkg) could not build the package\n{}",
            out.describe()
        );
    }
    deb
}

/// Makes a flat apt repository in `dir` (created): the package and a `Packages` index from
/// `dpkg-scanpackages`, for `deb [trusted=yes] file:<dir in the image> ./`.
pub fn file_repository(dir: &Path) {
    fs::create_dir_all(dir).expect("creating the repository dir");
    hello_deb(dir);
    let mut cmd = Command::new("dpkg-scanpackages");
    cmd.args([".", "/dev/null"]).current_dir(dir);
    let out = process::run(cmd, None);
    if !out.status.success() {
        panic!(
            "dpkg-scanpackages failed; it is Debian's dpkg-dev (sudo apt-get install dpkg-dev, \
             or run sudo scripts/test.sh, which installs it)\n{}",
            out.describe()
        );
    }
    let index = out.stdout_text();
    assert!(
        index.contains(&format!("Package: {HELLO_PACKAGE}")),
        "dpkg-scanpackages indexed no {HELLO_PACKAGE}:\n{index}"
    );
    fs::write(dir.join("Packages"), index).expect("writing Packages");
}

pub(crate) fn tool_stdout(program: &str, args: &[&str]) -> String {
    run_tool(program, args).stdout_text().trim().to_string()
}

pub(crate) fn is_root() -> bool {
    tool_stdout("id", &["-u"]) == "0"
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_in_both_formats() {
        let list = "# comment\ndeb-src http://a/debian bookworm main\n\
                    deb [ arch=amd64 signed-by=/k.gpg ] http://b/debian/ bookworm main\n\
                    deb http://c/debian bookworm-updates main\n";
        assert_eq!(
            one_line_sources(list),
            vec![
                ("http://b/debian".to_string(), vec!["bookworm".to_string()]),
                (
                    "http://c/debian".to_string(),
                    vec!["bookworm-updates".to_string()]
                ),
            ]
        );
        let sources = "Types: deb deb-src\n# note\nURIs: http://d/debian\nSuites: bookworm\n  bookworm-updates\n\
                       Components: main\n\nTypes: deb\nURIs: http://e/debian\nSuites: bookworm\nEnabled: no\n";
        assert_eq!(
            deb822_sources(sources),
            vec![(
                "http://d/debian".to_string(),
                vec!["bookworm".to_string(), "bookworm-updates".to_string()]
            )]
        );
    }
}
