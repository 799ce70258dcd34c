//! The Docker client the tests check images with, and images loaded from rbuild's archives.
//!
//! The client is `$RBUILD_TEST_DOCKER`, else `/usr/bin/docker` (Debian's 20.10, the oldest
//! loader rbuild's archives must satisfy). When no daemon answers, every test that needs one
//! fails: `scripts/test.sh` starts one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::process::{self, RunOutput};

pub struct Docker {
    bin: PathBuf,
}

impl Docker {
    /// The client, after checking once per test process that its daemon answers.
    pub fn get() -> &'static Docker {
        static DOCKER: OnceLock<Docker> = OnceLock::new();
        DOCKER.get_or_init(|| {
            let bin = std::env::var_os("RBUILD_TEST_DOCKER")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/bin/docker"));
            let docker = Docker { bin };
            let info = docker.command(&["version", "--format", "{{.Server.Version}}"]);
            if !info.status.success() {
                panic!(
                    "no Docker daemon answers {}: the end-to-end tests need one \
                     (scripts/test.sh installs docker.io and starts a daemon)\n{}",
                    docker.bin.display(),
                    info.describe()
                );
            }
            docker
        })
    }

    /// Runs `docker ARGS…` and returns what it did, whatever its exit status.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> RunOutput {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        process::run(cmd, None)
    }

    /// Runs `docker ARGS…`, panicking unless it succeeds; returns stdout.
    #[track_caller]
    pub fn ok<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> String {
        let out = self.command(args);
        out.assert_success();
        out.stdout_text()
    }

    /// `docker load -i ARCHIVE`; returns the client's output (`Loaded image: …` lines).
    pub fn load(&self, archive: &Path) -> String {
        self.ok(&["load".as_ref(), "-i".as_ref(), archive.as_os_str()])
    }

    /// Loads `archive` and checks that it brought the tag `reference`, which is removed again
    /// when the returned image is dropped.
    #[track_caller]
    pub fn load_as(&'static self, archive: &Path, reference: &str) -> LoadedImage {
        // Taking ownership of the tag first means a failed check below still cleans it up.
        let image = self.adopt(reference);
        let loaded = self.load(archive);
        let found = self.command(&["image", "inspect", "--format", "{{.Id}}", reference]);
        if !found.status.success() {
            panic!("`docker load` did not bring {reference}; it said:\n{loaded}");
        }
        image
    }

    /// Takes charge of removing `reference` (a tag, or the ID of an untagged image) on drop.
    pub fn adopt(&'static self, reference: &str) -> LoadedImage {
        LoadedImage {
            docker: self,
            references: vec![reference.to_string()],
        }
    }

    /// `docker image inspect REF`, the one object it returns.
    pub fn inspect(&self, reference: &str) -> Value {
        let text = self.ok(&["image", "inspect", reference]);
        let mut list: Value = serde_json::from_str(&text).expect("docker inspect prints JSON");
        list[0].take()
    }

    /// `docker history`'s CREATED BY column, newest first, untruncated.
    pub fn history(&self, reference: &str) -> Vec<String> {
        let text = self.ok(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}",
            reference,
        ]);
        text.lines().map(str::to_string).collect()
    }

    /// `docker run --rm --network none --pull never [DOCKER_ARGS…] REF [ARGS…]`.
    pub fn run(&self, docker_args: &[&str], reference: &str, args: &[&str]) -> RunOutput {
        let mut all = vec!["run", "--rm", "--network", "none", "--pull", "never"];
        all.extend_from_slice(docker_args);
        all.push(reference);
        all.extend_from_slice(args);
        self.command(&all)
    }

    /// Removes the tag (and the image, when no other tag uses it). An image shared with another
    /// test keeps that test's tag, which is why images are never removed by ID.
    pub fn rmi(&self, reference: &str) -> RunOutput {
        self.command(&["rmi", reference])
    }
}

/// An image in the Docker daemon, loaded from an archive; its tags are removed on drop.
pub struct LoadedImage {
    docker: &'static Docker,
    references: Vec<String>,
}

impl LoadedImage {
    /// The tag the image was loaded under.
    pub fn reference(&self) -> &str {
        &self.references[0]
    }

    /// Also remove `reference` on drop (for archives that carry several tags).
    pub fn remove_also(&mut self, reference: &str) {
        self.references.push(reference.to_string());
    }

    /// `docker run` with the image's own entrypoint and `args` as the command; panics unless it
    /// exits 0; returns stdout.
    #[track_caller]
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.docker.run(&[], self.reference(), args);
        out.assert_success();
        out.stdout_text()
    }

    /// Runs the busybox applet `args[0]` with its arguments, whatever the image's entrypoint,
    /// and returns the outcome without judging it (for checks that expect a failure).
    pub fn try_busybox(&self, args: &[&str]) -> RunOutput {
        self.docker
            .run(&["--entrypoint", "/bin/busybox"], self.reference(), args)
    }

    /// Like [`LoadedImage::try_busybox`], but panics unless the applet exits 0; returns stdout.
    #[track_caller]
    pub fn busybox(&self, args: &[&str]) -> String {
        let out = self.try_busybox(args);
        out.assert_success();
        out.stdout_text()
    }

    /// The contents of the file at `path` in the image.
    #[track_caller]
    pub fn read(&self, path: &str) -> String {
        self.busybox(&["cat", path])
    }

    /// `docker image inspect`.
    pub fn inspect(&self) -> Value {
        self.docker.inspect(self.reference())
    }

    /// The image config (`Config` of `docker image inspect`).
    pub fn config(&self) -> Value {
        self.inspect()["Config"].take()
    }

    /// The image ID Docker computed (`sha256:` + the config digest).
    pub fn id(&self) -> String {
        self.inspect()["Id"]
            .as_str()
            .expect("inspect has an Id")
            .to_string()
    }

    /// `docker history`'s CREATED BY column, newest first.
    pub fn history(&self) -> Vec<String> {
        self.docker.history(self.reference())
    }
}

impl Drop for LoadedImage {
    fn drop(&mut self) {
        for reference in &self.references {
            // Best effort: a tag that never arrived (a failed test) has nothing to remove.
            let _ = self.docker.rmi(reference);
        }
    }
}
