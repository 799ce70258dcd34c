//! rbuild's own image (`scripts/image.sh`), built once per test process and loaded into
//! Docker, for the tests that run rbuild the way CI systems run it: in an ordinary
//! container. `RBUILD_TEST_IMAGE_ARCHIVE` names an archive `scripts/image.sh --shell -o`
//! already wrote; otherwise the script is run here (a static release build of the same
//! sources, into this test executable's target directory).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::docker::Docker;

/// The image's reference in Docker: `rbuild-e2e-image:<config digest>`, so that loading the
/// same image twice, from any test process, names the same image and nothing piles up.
pub fn rbuild_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(load)
}

fn load() -> String {
    let archive = match std::env::var_os("RBUILD_TEST_IMAGE_ARCHIVE") {
        Some(path) => PathBuf::from(path),
        None => {
            let path = target_dir().join(format!("rbuild-image-{}.tar", std::process::id()));
            build_archive(&path, &["--shell"]);
            path
        }
    };
    let docker = Docker::get();
    let loaded = docker.ok(&["load", "-q", "-i", &archive.to_string_lossy()]);
    let id = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: ").or_else(|| l.strip_prefix("Loaded image ID: ")))
        .unwrap_or_else(|| panic!("docker load said: {loaded}"))
        .trim()
        .to_string();
    let image_id = docker.ok(&["image", "inspect", "-f", "{{.Id}}", &id]).trim().to_string();
    let reference = format!("rbuild-e2e-image:{}", &image_id.trim_start_matches("sha256:")[..16]);
    docker.ok(&["tag", &id, &reference]);
    reference
}

/// The target directory of this test executable (`target/<profile>/deps/<exe>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test executable");
    exe.ancestors().nth(3).expect("target/<profile>/deps/<exe>").to_path_buf()
}

/// Runs `scripts/image.sh EXTRA… -o ARCHIVE` with a store of its own (its log on stderr),
/// building the static binary into this test executable's target directory.
pub fn build_archive(archive: &Path, extra: &[&str]) {
    let store = tempfile::Builder::new().prefix("rbuild-e2e-image-store-").tempdir().expect("temp store");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/image.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .args(extra)
        .args(["-t", "rbuild-e2e-image:build", "-o"])
        .arg(archive)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("RBUILD_ROOT", store.path());
    // No time limit: on a fresh checkout this is a release build, like the harness's own
    // `cargo build` of the binary under test.
    let status = cmd.status().expect("running scripts/image.sh");
    assert!(status.success(), "scripts/image.sh failed ({status})");
}
