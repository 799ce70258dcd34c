//! Another architecture for the platform tests: Debian's static busybox for arm64, fetched once
//! (`dpkg --add-architecture arm64`, `apt-get update`, `apt-get download busybox-static:arm64`)
//! and cached in the test cache beside the Debian minbase (`debian::cache_dir`), and build
//! contexts holding a busybox per architecture. Its RUN steps need the kernel's binfmt_misc
//! handler for aarch64, which `scripts/test.sh` registers (`ensure_binfmt_aarch64`).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::context::{busybox_path, Context};
use crate::debian::{cache_dir, is_root, tool_stdout, CacheLock};
use crate::process::run_tool;

/// The binfmt_misc handler the arm64 RUN steps run through.
pub const AARCH64_HANDLER: &str = "/proc/sys/fs/binfmt_misc/qemu-aarch64";

/// The host's architecture in Debian's (and Go's) naming: `amd64`, `arm64`.
pub fn host_arch() -> String {
    tool_stdout("dpkg", &["--print-architecture"])
}

/// The cached arm64 busybox binary, fetched on the first call of the machine.
pub fn arm64_busybox() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(ensure_arm64_busybox)
}

/// Panics, saying how to get it, when the aarch64 handler is not registered.
pub fn assert_aarch64_emulation() {
    assert!(
        Path::new(AARCH64_HANDLER).exists(),
        "{AARCH64_HANDLER} is not registered: the platform tests run arm64 RUN steps through QEMU \
         user emulation; run scripts/test.sh as root once (it installs qemu-user-static, mounts \
         binfmt_misc and registers the handler)"
    );
}

/// A context with `busybox-amd64`… for the host's architecture and `busybox-arm64`, so that
/// `COPY busybox-$TARGETARCH /bin/busybox` gives each platform its own.
pub fn context_with_busyboxes() -> Context {
    let ctx = Context::new();
    fs::copy(busybox_path(), ctx.join(&format!("busybox-{}", host_arch()))).expect("copying busybox");
    fs::copy(arm64_busybox(), ctx.join("busybox-arm64")).expect("copying the arm64 busybox");
    ctx
}

fn ensure_arm64_busybox() -> PathBuf {
    let cache = cache_dir();
    let path = cache.join("busybox-static-arm64").join("busybox");
    if path.is_file() {
        return path;
    }
    assert!(
        is_root(),
        "{} does not exist, and fetching it (apt-get download busybox-static:arm64) needs root: \
         run the tests as root (sudo scripts/test.sh) once, or set RBUILD_TEST_CACHE to a \
         directory that has it",
        path.display()
    );
    fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("creating the test cache {}: {e}", cache.display()));
    let _lock = CacheLock::acquire(&cache.join(".busybox-static-arm64.lock"));
    if !path.is_file() {
        fetch_arm64_busybox(&path);
    }
    path
}

/// Downloads Debian's busybox-static for arm64 into a temp dir beside `dest`, unpacks it and
/// renames its binary into place.
fn fetch_arm64_busybox(dest: &Path) {
    let foreign = tool_stdout("dpkg", &["--print-foreign-architectures"]);
    if !foreign.lines().any(|a| a == "arm64") {
        run_tool("dpkg", &["--add-architecture", "arm64"]).assert_success();
        run_tool("apt-get", &["update", "-qq"]).assert_success();
    }
    let parent = dest.parent().expect("the busybox has a directory");
    fs::create_dir_all(parent).expect("creating the busybox cache dir");
    let work = tempfile::Builder::new().prefix(".busybox-arm64-").tempdir_in(parent).expect("a temp dir");
    let mut download = std::process::Command::new("apt-get");
    download.args(["download", "busybox-static:arm64"]).current_dir(work.path());
    let mut out = crate::process::run(download, None);
    if out.code() != Some(0) {
        // The package lists may predate the arm64 architecture: update them once.
        run_tool("apt-get", &["update", "-qq"]).assert_success();
        let mut again = std::process::Command::new("apt-get");
        again.args(["download", "busybox-static:arm64"]).current_dir(work.path());
        out = crate::process::run(again, None);
    }
    out.assert_success();
    let deb = fs::read_dir(work.path())
        .expect("listing the download dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("apt-get download wrote a .deb");
    let unpacked = work.path().join("unpacked");
    run_tool("dpkg-deb", &[std::ffi::OsStr::new("-x"), deb.as_os_str(), unpacked.as_os_str()]).assert_success();
    let binary = unpacked.join("bin/busybox");
    assert!(binary.is_file(), "busybox-static:arm64 has no bin/busybox");
    fs::rename(&binary, dest).unwrap_or_else(|e| panic!("moving the arm64 busybox to {}: {e}", dest.display()));
}
