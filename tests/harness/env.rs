//! One isolated environment per test: its own rbuild store (`RBUILD_ROOT`), a scratch directory
//! for outputs, unique image names, and the [`Rbuild`] command builder.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use crate::archive::Archive;
use crate::context::Context;
use crate::docker::{Docker, LoadedImage};
use crate::process::{self, RunOutput};

/// The `rbuild` binary under test: `$RBUILD_BIN` when set, else the one cargo builds next to
/// this test executable (`target/<profile>/rbuild`; the test itself runs from
/// `target/<profile>/deps/`). The end-to-end tests live in a package of their own, which cargo
/// does not build the binary for, so the first call in each test process asks cargo to bring it
/// up to date: a plain `cargo test --workspace` on a fresh clone tests what the sources say.
pub fn rbuild_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("RBUILD_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "RBUILD_BIN={} is not a file",
            path.display()
        );
        return path;
    }
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_rbuild).clone()
}

/// `cargo build` of the rbuild binary into the target directory and profile of this test
/// executable (a no-op that takes a fraction of a second when it is up to date).
fn build_rbuild() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lives in target/<profile>/deps/");
    let target_dir = profile_dir.parent().expect("target/<profile> has a parent");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../builder/Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--bin", "rbuild", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        build.arg("--release");
    }
    let status = build.status().expect("running cargo to build rbuild");
    assert!(status.success(), "cargo could not build rbuild ({status})");
    let bin = profile_dir.join("rbuild");
    assert!(bin.is_file(), "cargo built rbuild, but not at {}", bin.display());
    bin
}

/// A suffix no other call in any test process on this machine returns: pid, time, counter.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:x}{n}", std::process::id(), nanos)
}

/// The per-test environment. Dropping it removes the store and the scratch directory.
pub struct TestEnv {
    name: String,
    store: TempDir,
    scratch: TempDir,
}

impl TestEnv {
    /// `name` (usually the test function's name) goes into image names, to tell whose they are.
    pub fn new(name: &str) -> Self {
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        TestEnv {
            name,
            store: tempdir("rbuild-e2e-store-"),
            scratch: tempdir("rbuild-e2e-out-"),
        }
    }

    /// The rbuild store of this test (`RBUILD_ROOT`).
    pub fn store(&self) -> &Path {
        self.store.path()
    }

    /// A path in this test's scratch directory, for outputs (`-o`, `--iidfile`…).
    pub fn path(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// A fresh image reference, unique across tests and runs: `rbuild-e2e/<test>-<suffix>:latest`.
    pub fn image_ref(&self) -> String {
        format!("rbuild-e2e/{}-{}:latest", self.name, unique_suffix())
    }

    /// An `rbuild` command with this test's store, run from the scratch directory, with
    /// `SOURCE_DATE_EPOCH` removed so that only tests that set it get it.
    pub fn rbuild(&self) -> Rbuild {
        let mut cmd = Command::new(rbuild_bin());
        cmd.env("RBUILD_ROOT", self.store())
            .env_remove("SOURCE_DATE_EPOCH")
            .current_dir(self.scratch.path());
        Rbuild { cmd, stdin: None }
    }

    /// `rbuild build -t <unique ref> -o <archive> ARGS… CONTEXT`; panics unless it succeeds.
    pub fn build(&self, ctx: &Context, args: &[&str]) -> Built {
        let reference = self.image_ref();
        let archive = self.path(&format!("image-{}.tar", unique_suffix()));
        let output = self
            .rbuild()
            .args(["build", "-t", &reference, "-o"])
            .arg(&archive)
            .args(args)
            .arg(ctx.path())
            .run();
        output.assert_success();
        Built {
            reference,
            archive,
            output,
        }
    }

    /// [`TestEnv::build`], then `docker load` of the archive.
    pub fn build_and_load(&self, ctx: &Context, args: &[&str]) -> LoadedImage {
        self.build(ctx, args).load()
    }
}

fn tempdir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("creating a temp dir")
}

/// A successful build written to an archive by [`TestEnv::build`].
pub struct Built {
    /// The tag the image was built with.
    pub reference: String,
    pub archive: PathBuf,
    pub output: RunOutput,
}

impl Built {
    pub fn archive(&self) -> Archive {
        Archive::open(&self.archive)
    }

    /// Loads the archive into Docker; the image is removed again when the result is dropped.
    pub fn load(&self) -> LoadedImage {
        Docker::get().load_as(&self.archive, &self.reference)
    }
}

/// A command line for the rbuild binary, made by [`TestEnv::rbuild`].
pub struct Rbuild {
    cmd: Command,
    stdin: Option<Vec<u8>>,
}

impl Rbuild {
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.cmd.env_remove(key);
        self
    }

    /// Bytes for rbuild's standard input (it gets none otherwise).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn run(self) -> RunOutput {
        process::run(self.cmd, self.stdin)
    }

    /// The command itself, for tests that start rbuild in the background (to signal it);
    /// bytes given with [`Rbuild::stdin`] are not part of it.
    pub fn into_command(self) -> Command {
        self.cmd
    }
}
