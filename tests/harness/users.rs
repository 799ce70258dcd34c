//! Non-root users for the rootless tests, created (as root, idempotently) for the suite, and
//! running rbuild as one of them with `runuser`.
//!
//! - [`SuiteUser::with_range`]: `rbuild-e2e-user`, with a subordinate id range of its own in
//!   `/etc/subuid` and `/etc/subgid` (a line added once, after every range already there).
//! - [`SuiteUser::without_range`]: `rbuild-e2e-norange`, with no line in either file.
//!
//! Rootless builds need `newuidmap`/`newgidmap` (Debian's `uidmap`, which scripts/test.sh
//! installs) and `runuser` (util-linux).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use tempfile::TempDir;

use crate::context::Context;
use crate::env::rbuild_bin;
use crate::process::{self, run_tool, RunOutput};

const WITH_RANGE: &str = "rbuild-e2e-user";
const WITHOUT_RANGE: &str = "rbuild-e2e-norange";
/// The size of the range given to [`WITH_RANGE`]: what `useradd` gives by default.
const RANGE_SIZE: u64 = 65536;

/// Serialises the edits of /etc/passwd, /etc/subuid and /etc/subgid of the tests of a process.
static SETUP: Mutex<()> = Mutex::new(());

/// A non-root user of the test suite.
pub struct SuiteUser {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
}

impl SuiteUser {
    /// The user with a subordinate id range, created (with its range) when missing.
    pub fn with_range() -> Self {
        let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
        check_prerequisites();
        let user = ensure_user(WITH_RANGE);
        for file in ["/etc/subuid", "/etc/subgid"] {
            ensure_range(file, WITH_RANGE);
        }
        user
    }

    /// The user without a subordinate id range; panics when someone gave it one.
    pub fn without_range() -> Self {
        let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
        check_prerequisites();
        let user = ensure_user(WITHOUT_RANGE);
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = fs::read_to_string(file).unwrap_or_default();
            assert!(
                !has_line_for(&text, WITHOUT_RANGE, user.uid),
                "{file} has a range for {WITHOUT_RANGE}, which the tests need without one: \
                 remove its line (`usermod --del-subuids`/`--del-subgids`)"
            );
        }
        user
    }

    /// A workspace owned by this user: a copy of `ctx`, a store, a directory for outputs, and
    /// an rbuild binary the user can execute.
    pub fn workspace(&self, ctx: &Context) -> UserWorkspace {
        let dir = tempfile::Builder::new()
            .prefix("rbuild-e2e-user-")
            .tempdir()
            .expect("creating a temp dir");
        let context = dir.path().join("context");
        ctx.copy_to(&context);
        fs::create_dir(dir.path().join("store")).expect("creating the store dir");
        fs::create_dir(dir.path().join("out")).expect("creating the output dir");
        // The binary cargo built is usually readable by everyone; if not, the user gets a copy.
        let mut bin = rbuild_bin();
        if !self.can_execute(&bin) {
            let copy = dir.path().join("rbuild");
            fs::copy(&bin, &copy).expect("copying rbuild for the user");
            bin = copy;
        }
        let owner = format!("{}:{}", self.uid, self.gid);
        let path = dir.path().display().to_string();
        run_tool("chown", &["-R", owner.as_str(), path.as_str()]);
        fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod of the workspace");
        UserWorkspace {
            user: self.name,
            bin,
            dir,
        }
    }

    fn can_execute(&self, path: &Path) -> bool {
        Command::new("runuser")
            .args(["-u", self.name, "--", "test", "-x"])
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

/// A directory owned by a [`SuiteUser`], removed (by root) on drop.
pub struct UserWorkspace {
    user: &'static str,
    bin: PathBuf,
    dir: TempDir,
}

impl UserWorkspace {
    pub fn context(&self) -> PathBuf {
        self.dir.path().join("context")
    }

    /// The user's rbuild store (`RBUILD_ROOT`).
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A path in the user's output directory.
    pub fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join("out").join(name)
    }

    /// `runuser -u USER -- env RBUILD_ROOT=<store> rbuild ARGS…`, run from the output directory.
    pub fn rbuild(&self, args: &[&str]) -> RunOutput {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", self.user, "--", "env"])
            .arg(format!("RBUILD_ROOT={}", self.store().display()))
            .arg("--unset=SOURCE_DATE_EPOCH")
            .arg(&self.bin)
            .args(args)
            .current_dir(self.dir.path().join("out"));
        process::run(cmd, None)
    }
}

fn check_prerequisites() {
    assert!(
        is_root(),
        "the rootless tests create users and must run as root (scripts/test.sh runs as root)"
    );
    for tool in ["/usr/bin/newuidmap", "/usr/bin/newgidmap"] {
        assert!(
            Path::new(tool).is_file(),
            "{tool} is missing: install Debian's uidmap package (scripts/test.sh does)"
        );
    }
    for tool in ["runuser", "useradd"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(found, "{tool} is missing: install util-linux / passwd");
    }
}

fn is_root() -> bool {
    // No libc dependency in this crate: `id -u` says it.
    let out = Command::new("id")
        .arg("-u")
        .output()
        .expect("running id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// `name`'s uid and gid, creating the user (no home, no login shell, and no automatic
/// subordinate ids: those are added explicitly where wanted) when it does not exist.
fn ensure_user(name: &'static str) -> SuiteUser {
    if lookup(name).is_none() {
        let out = process::run(
            {
                let mut cmd = Command::new("useradd");
                cmd.args([
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "-K",
                    "SUB_UID_COUNT=0",
                    "-K",
                    "SUB_GID_COUNT=0",
                    name,
                ]);
                cmd
            },
            None,
        );
        // Another test process may have created it meanwhile (exit code 9: the name is taken).
        if !out.status.success() && lookup(name).is_none() {
            panic!("could not create the test user {name}\n{}", out.describe());
        }
    }
    let (uid, gid) = lookup(name).unwrap_or_else(|| panic!("user {name} does not exist"));
    SuiteUser { name, uid, gid }
}

fn lookup(name: &str) -> Option<(u32, u32)> {
    let out = Command::new("getent")
        .args(["passwd", name])
        .output()
        .expect("running getent");
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<&str> = line.trim().split(':').collect();
    Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
}

fn has_line_for(text: &str, name: &str, uid: u32) -> bool {
    let uid = uid.to_string();
    text.lines()
        .filter_map(|l| l.split(':').next())
        .any(|owner| owner == name || owner == uid)
}

/// Adds `name:START:65536` to `file` unless it has a line for `name`, START being past every
/// range already in the file (so no two users share ids).
fn ensure_range(file: &str, name: &'static str) {
    let text = match fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => panic!("reading {file}: {e}"),
    };
    if text.lines().any(|l| l.split(':').next() == Some(name)) {
        return;
    }
    let end = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
        })
        .max()
        .unwrap_or(0);
    let start = end.max(100_000).div_ceil(RANGE_SIZE) * RANGE_SIZE;
    let mut new = text;
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(&format!("{name}:{start}:{RANGE_SIZE}\n"));
    fs::write(file, new).unwrap_or_else(|e| panic!("writing {file}: {e}"));
}
