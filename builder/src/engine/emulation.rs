//! Running RUN steps for another platform: the kernel's binfmt_misc hands a
//! foreign executable to its registered interpreter (QEMU user emulation), so
//! the sandbox runs it like any other. This module decides which platforms
//! need that and checks, before the build starts, that the host has a
//! handler for each; the sandbox knows nothing of it.
//!
//! A handler registered with the `F` ("fix binary") flag, as Debian's
//! `qemu-user-static` registers them, has its interpreter opened when it is
//! registered, so it works inside the sandbox's mount namespace and rootfs,
//! where `/usr/libexec/qemu-binfmt/...` does not exist. One without `F` is
//! refused with that explanation rather than failing in the first RUN.

use std::path::{Path, PathBuf};

use rbuild_frontend::graph::Platform;

/// Where the kernel's binfmt_misc file system is mounted.
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// Why a platform's RUN steps cannot run on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulationError {
    #[error("RUN for {platform} needs QEMU user emulation, but binfmt_misc is not mounted at {dir}; {}", install_hint(.handler))]
    NotMounted { platform: String, handler: String, dir: PathBuf },

    #[error("RUN for {platform} needs the binfmt_misc handler {handler}, which is not registered in {dir}; {}", install_hint(.handler))]
    Missing { platform: String, handler: String, dir: PathBuf },

    #[error("RUN for {platform} needs the binfmt_misc handler {handler}, which is registered but disabled; enable it: echo 1 > {}", .dir.join(.handler).display())]
    Disabled { platform: String, handler: String, dir: PathBuf },

    #[error("the binfmt_misc handler {handler} for {platform} is registered without the F (fix binary) flag, so its interpreter cannot be found inside a build's root file system; register it again with F (Debian's qemu-user-static does: update-binfmts --disable {handler}; update-binfmts --enable {handler})")]
    NotFixed { platform: String, handler: String },

    #[error("rbuild knows no QEMU user emulator for platform {platform}; build it on a {platform} machine")]
    Unknown { platform: String },
}

fn install_hint(handler: &str) -> String {
    format!(
        "install Debian's qemu-user-static and binfmt-support (apt-get install qemu-user-static binfmt-support), \
         or as root: mount -t binfmt_misc binfmt_misc {BINFMT_MISC}; \
         cat /usr/lib/binfmt.d/{handler}.conf > {BINFMT_MISC}/register"
    )
}

/// Whether executables for `platform` run on `host` without emulation.
pub fn runs_natively(platform: &Platform, host: &Platform) -> bool {
    if platform.os != host.os {
        return false;
    }
    let same = host.architecture == platform.architecture
        && (platform.variant.is_none() || host.variant.is_none() || platform.variant == host.variant);
    // 64-bit x86 and Arm kernels run their 32-bit siblings' binaries.
    let compatible = matches!(
        (host.architecture.as_str(), platform.architecture.as_str()),
        ("amd64", "386") | ("arm64", "arm")
    );
    same || compatible
}

/// The name Debian's qemu-user-static registers the handler for `platform` under.
pub fn handler_name(platform: &Platform) -> Option<&'static str> {
    Some(match platform.architecture.as_str() {
        "arm64" => "qemu-aarch64",
        "arm" => "qemu-arm",
        "amd64" => "qemu-x86_64",
        "386" => "qemu-i386",
        "ppc64le" => "qemu-ppc64le",
        "s390x" => "qemu-s390x",
        "riscv64" => "qemu-riscv64",
        "mips64le" => "qemu-mips64el",
        "loong64" => "qemu-loongarch64",
        _ => return None,
    })
}

/// Checks that RUN steps for `platform` can run on this host through the
/// handlers in `dir` (normally [`BINFMT_MISC`]).
pub fn check_handler(platform: &Platform, dir: &Path) -> Result<(), EmulationError> {
    let name = platform.to_string();
    let handler = handler_name(platform).ok_or_else(|| EmulationError::Unknown { platform: name.clone() })?;
    if !dir.join("status").exists() {
        return Err(EmulationError::NotMounted { platform: name, handler: handler.into(), dir: dir.into() });
    }
    let Ok(text) = std::fs::read_to_string(dir.join(handler)) else {
        return Err(EmulationError::Missing { platform: name, handler: handler.into(), dir: dir.into() });
    };
    if text.lines().next() != Some("enabled") {
        return Err(EmulationError::Disabled { platform: name, handler: handler.into(), dir: dir.into() });
    }
    let flags = text.lines().find_map(|l| l.strip_prefix("flags:")).unwrap_or("");
    if !flags.contains('F') {
        return Err(EmulationError::NotFixed { platform: name, handler: handler.into() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(text: &str) -> Platform {
        Platform::parse(text).unwrap()
    }

    #[test]
    fn native_platforms_are_the_hosts_and_its_32_bit_sibling() {
        let amd64 = platform("linux/amd64");
        assert!(runs_natively(&amd64, &amd64));
        assert!(runs_natively(&platform("linux/386"), &amd64));
        assert!(!runs_natively(&platform("linux/arm64"), &amd64));
        assert!(!runs_natively(&platform("windows/amd64"), &amd64));
        assert!(runs_natively(&platform("linux/arm/v7"), &platform("linux/arm64")));
    }

    fn binfmt(handlers: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        for (name, text) in handlers {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn a_registered_fixed_handler_passes_and_each_lack_is_named() {
        let arm64 = platform("linux/arm64");
        let ok = binfmt(&[("qemu-aarch64", "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\n")]);
        assert_eq!(check_handler(&arm64, ok.path()), Ok(()));

        let none = binfmt(&[]);
        let err = check_handler(&arm64, none.path()).unwrap_err();
        assert!(matches!(err, EmulationError::Missing { ref handler, .. } if handler == "qemu-aarch64"), "{err:?}");
        assert!(err.to_string().contains("qemu-user-static"), "{err}");

        let off = binfmt(&[("qemu-aarch64", "disabled\nflags: F\n")]);
        assert!(matches!(check_handler(&arm64, off.path()), Err(EmulationError::Disabled { .. })));
        let unfixed = binfmt(&[("qemu-aarch64", "enabled\nflags: OC\n")]);
        assert!(matches!(check_handler(&arm64, unfixed.path()), Err(EmulationError::NotFixed { .. })));
        let unmounted = tempfile::tempdir().unwrap();
        assert!(matches!(check_handler(&arm64, unmounted.path()), Err(EmulationError::NotMounted { .. })));
        assert!(matches!(check_handler(&platform("linux/sparc64"), ok.path()), Err(EmulationError::Unknown { .. })));
    }
}
