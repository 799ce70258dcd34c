//! Building for other platforms: arm64 RUN steps under QEMU user emulation (binfmt_misc, set
//! up by scripts/test.sh), the image config's platform, a two-platform build written as one
//! OCI index that skopeo and umoci read per platform, a manifest list pushed to a local
//! registry and pulled for the wanted platform, the cross-compile pattern (`FROM
//! --platform=$BUILDPLATFORM`) running its builder stage natively and once, the step cache
//! keeping platforms apart, and the error for a platform the host has no handler for.

use std::path::Path;

use rbuild_e2e::archive::skopeo_inspect_config;
use rbuild_e2e::foreign::{assert_aarch64_emulation, context_with_busyboxes, host_arch};
use rbuild_e2e::process::run_tool;
use rbuild_e2e::registry::Registry;
use rbuild_e2e::store::images_table;
use rbuild_e2e::{Context, RunOutput, TestEnv};

/// A Dockerfile whose image records the machine its RUN ran on in /arch.
const UNAME: [&str; 5] = [
    "FROM scratch",
    "ARG TARGETARCH",
    "COPY busybox-$TARGETARCH /bin/busybox",
    r#"SHELL ["/bin/busybox", "sh", "-c"]"#,
    "RUN /bin/busybox uname -m | /bin/busybox tee /arch",
];

fn emulated_context() -> Context {
    assert_aarch64_emulation();
    let ctx = context_with_busyboxes();
    ctx.dockerfile(&UNAME);
    ctx
}

/// The `uname -m` of the host's machine, as the native RUN steps print it.
fn host_machine() -> String {
    run_tool("uname", &["-m"]).stdout_text().trim().to_string()
}

/// The rawjson events of `out` with `"event": kind`.
fn events(out: &RunOutput, kind: &str) -> Vec<serde_json::Value> {
    out.stderr_text()
        .lines()
        .chain(out.stdout_text().lines())
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event"] == kind)
        .collect()
}

#[test]
fn an_arm64_run_step_runs_emulated_and_the_image_says_arm64() {
    let env = TestEnv::new("platform-arm64");
    let ctx = emulated_context();
    let out_dir = env.path("rootfs");
    let archive = env.path("arm64.tar");
    let out = env
        .rbuild()
        .args(["build", "--platform", "linux/arm64", "-t", "uname:arm64", "-o"])
        .arg(format!("type=oci,dest={}", archive.display()))
        .arg("-o")
        .arg(format!("type=local,dest={}", out_dir.display()))
        .arg(ctx.path())
        .run();
    out.assert_success();
    assert_eq!(std::fs::read_to_string(out_dir.join("arch")).unwrap(), "aarch64\n");
    out.assert_stderr_contains("runs for linux/arm64/v8 under QEMU user emulation");
    let config = skopeo_inspect_config(&format!("oci-archive:{}", archive.display()));
    assert_eq!(config["architecture"], "arm64", "{config}");
    assert_eq!(config["os"], "linux");
    assert_eq!(config["variant"], "v8");
    let rows = images_table(&env);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["PLATFORM"], "linux/arm64/v8");
}

#[test]
fn two_platforms_make_one_oci_index_that_skopeo_and_umoci_read_per_platform() {
    let env = TestEnv::new("platform-index");
    let ctx = emulated_context();
    let archive = env.path("multi.tar");
    let docker = env.path("app.tar");
    env.rbuild()
        .args(["build", "--platform", "linux/amd64,linux/arm64", "-t", "multi:1", "-o"])
        .arg(format!("type=oci,dest={}", archive.display()))
        .arg("-o")
        .arg(format!("type=docker,dest={}", docker.display()))
        .arg(ctx.path())
        .run()
        .assert_success();

    let oci = format!("oci-archive:{}", archive.display());
    let raw: serde_json::Value = serde_json::from_slice(&run_tool("skopeo", &["inspect", "--raw", &oci]).stdout).unwrap();
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json", "{raw}");
    let platforms: Vec<String> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{}/{}", m["platform"]["os"].as_str().unwrap(), m["platform"]["architecture"].as_str().unwrap()))
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    for (arch, machine) in [("amd64", host_machine()), ("arm64", "aarch64".to_string())] {
        // skopeo picks the platform's image out of the index; umoci unpacks it.
        let layout = env.path(&format!("layout-{arch}"));
        let dest = format!("oci:{}:{arch}", layout.display());
        run_tool("skopeo", &["copy", "--insecure-policy", "--override-arch", arch, &oci, &dest]).assert_success();
        let bundle = env.path(&format!("bundle-{arch}"));
        let image = format!("{}:{arch}", layout.display());
        run_tool("umoci", &["unpack", "--rootless", "--image", &image, bundle.to_str().unwrap()]).assert_success();
        assert_eq!(std::fs::read_to_string(bundle.join("rootfs/arch")).unwrap(), format!("{machine}\n"), "{arch}");
        let config = skopeo_inspect_config(&format!("oci:{}:{arch}", layout.display()));
        assert_eq!(config["architecture"], arch);
        // The docker form: one archive per platform.
        let per_platform = env.path(&format!("app-linux-{arch}.tar"));
        let config = skopeo_inspect_config(&format!("docker-archive:{}", per_platform.display()));
        assert_eq!(config["architecture"], arch, "{}", per_platform.display());
    }
    assert!(!docker.exists(), "the docker form is written per platform");

    // The store keeps both under the one tag; save picks one.
    let rows: Vec<_> = images_table(&env).into_iter().filter(|r| r["REPOSITORY"] == "multi").collect();
    let mut listed: Vec<&str> = rows.iter().map(|r| r["PLATFORM"].as_str()).collect();
    listed.sort_unstable();
    assert_eq!(listed, ["linux/amd64", "linux/arm64/v8"]);
    let saved = env.path("saved-arm64.tar");
    env.rbuild().args(["save", "--platform", "linux/arm64", "-o"]).arg(&saved).arg("multi:1").run().assert_success();
    let config = skopeo_inspect_config(&format!("docker-archive:{}", saved.display()));
    assert_eq!(config["architecture"], "arm64");
    let refused = env.rbuild().args(["save", "--platform", "linux/s390x", "-o"]).arg(env.path("none.tar")).arg("multi:1").run();
    assert_ne!(refused.code(), Some(0));
    refused.assert_stderr_contains("no image for platform linux/s390x");
}

#[test]
fn a_manifest_list_in_a_registry_is_pulled_for_the_wanted_platform() {
    let registry = Registry::start();
    let producer = TestEnv::new("platform-push");
    let ctx = emulated_context();
    let name = format!("{}/e2e/multi:1", registry.host());
    let pushed = producer
        .rbuild()
        .args(["build", "--platform", "linux/amd64,linux/arm64", "--push", "-t", &name])
        .arg(ctx.path())
        .run();
    pushed.assert_success();
    let list = registry.manifest("e2e/multi:1");
    assert_eq!(list["mediaType"], "application/vnd.oci.image.index.v1+json", "{list}");
    assert_eq!(list["manifests"].as_array().unwrap().len(), 2);

    // A build for arm64 on it takes the arm64 image and runs its RUN emulated.
    let env = TestEnv::new("platform-pull");
    let app = Context::new();
    app.dockerfile(&[
        &format!("FROM {name}"),
        r#"SHELL ["/bin/busybox", "sh", "-c"]"#,
        "RUN /bin/busybox cat /arch > /base-arch && /bin/busybox uname -m > /run-arch",
    ]);
    let out_dir = env.path("rootfs");
    env.rbuild()
        .args(["build", "--platform", "linux/arm64", "-o"])
        .arg(format!("type=local,dest={}", out_dir.display()))
        .arg(app.path())
        .run()
        .assert_success();
    assert_eq!(std::fs::read_to_string(out_dir.join("base-arch")).unwrap(), "aarch64\n");
    assert_eq!(std::fs::read_to_string(out_dir.join("run-arch")).unwrap(), "aarch64\n");

    // `rbuild pull --platform` for both: the one tag names both, and a build for the host
    // takes the host's without asking the registry again.
    let puller = TestEnv::new("platform-pull-both");
    puller.rbuild().args(["pull", "--platform", "linux/arm64", &name]).run().assert_success();
    puller.rbuild().args(["pull", &name]).run().assert_success();
    let mut listed: Vec<String> = images_table(&puller).into_iter().map(|r| r["PLATFORM"].clone()).collect();
    listed.sort_unstable();
    assert_eq!(listed, [format!("linux/{}", host_arch()), "linux/arm64/v8".to_string()]);
}

/// The cross-compile pattern: the builder stage runs on the build platform and knows the target.
const CROSS: [&str; 9] = [
    "FROM --platform=$BUILDPLATFORM scratch AS build",
    "ARG BUILDARCH",
    "COPY busybox-$BUILDARCH /bin/busybox",
    r#"SHELL ["/bin/busybox", "sh", "-c"]"#,
    "ARG TARGETARCH",
    "RUN echo building-for-$TARGETARCH; /bin/busybox uname -m > /built-on; echo $TARGETARCH > /built-for",
    "FROM scratch",
    "COPY --from=build /built-on /built-for /",
    "COPY --from=build /bin/busybox /bin/busybox",
];

#[test]
fn the_cross_compile_pattern_does_not_emulate_its_builder_stage() {
    let env = TestEnv::new("platform-cross");
    let ctx = context_with_busyboxes();
    ctx.dockerfile(&CROSS);
    let out_dir = env.path("rootfs");
    let out = env
        .rbuild()
        .args(["build", "--progress=rawjson", "--platform", "linux/arm64", "-o"])
        .arg(format!("type=local,dest={}", out_dir.display()))
        .arg(ctx.path())
        .run();
    out.assert_success();
    assert!(events(&out, "emulated_run").is_empty(), "the builder stage was emulated:\n{}", out.describe());
    assert_eq!(std::fs::read_to_string(out_dir.join("built-on")).unwrap(), format!("{}\n", host_machine()));
    assert_eq!(std::fs::read_to_string(out_dir.join("built-for")).unwrap(), "arm64\n");

    // Two targets: the builder stage is one stage per target (TARGETARCH differs), each run
    // natively, never emulated.
    let both = env
        .rbuild()
        .args(["build", "--progress=rawjson", "--platform", "linux/amd64,linux/arm64", "--no-cache", "-o"])
        .arg(format!("type=local,dest={}", env.path("both").display()))
        .arg(ctx.path())
        .run();
    both.assert_success();
    assert!(events(&both, "emulated_run").is_empty(), "{}", both.describe());
    for (dir, arch) in [("linux_amd64", "amd64"), ("linux_arm64", "arm64")] {
        let root = env.path("both").join(dir);
        assert_eq!(std::fs::read_to_string(root.join("built-for")).unwrap(), format!("{arch}\n"), "{dir}");
        assert_eq!(std::fs::read_to_string(root.join("built-on")).unwrap(), format!("{}\n", host_machine()));
    }
}

#[test]
fn a_stage_two_platforms_share_runs_once() {
    // The builder stage does not depend on the target: both platforms resolve it to the same
    // steps, which run once, the other platform reusing the result.
    let env = TestEnv::new("platform-shared");
    let ctx = context_with_busyboxes();
    ctx.dockerfile(&[
        "FROM --platform=$BUILDPLATFORM scratch AS build",
        "ARG BUILDARCH",
        "COPY busybox-$BUILDARCH /bin/busybox",
        r#"RUN ["/bin/busybox", "sh", "-c", "echo shared-builder-ran; /bin/busybox uname -m > /built-on"]"#,
        "FROM scratch",
        "COPY --from=build /built-on /",
    ]);
    let out = env
        .rbuild()
        .args(["build", "--progress=rawjson", "--platform", "linux/amd64,linux/arm64", "-o"])
        .arg(format!("type=local,dest={}", env.path("out").display()))
        .arg(ctx.path())
        .run();
    out.assert_success();
    let ran = events(&out, "log").iter().filter(|e| e["data"].as_str().unwrap_or("").contains("shared-builder-ran")).count();
    assert_eq!(ran, 1, "the shared RUN ran {ran} times:\n{}", out.describe());
    assert!(events(&out, "emulated_run").is_empty());
}

#[test]
fn the_cache_keeps_platforms_apart() {
    // The same steps for two platforms, differing in nothing but the platform (the arm64
    // busybox runs through binfmt_misc either way): a cache that left the platform out of its
    // keys would give the second build the first one's layers.
    assert_aarch64_emulation();
    let env = TestEnv::new("platform-cache");
    let ctx = context_with_busyboxes();
    ctx.dockerfile(&[
        "FROM scratch",
        "COPY busybox-arm64 /bin/busybox",
        r#"RUN ["/bin/busybox", "sh", "-c", "/bin/busybox uname -m > /arch"]"#,
    ]);
    let build = |platform: &str, archive: &Path| {
        let out = env
            .rbuild()
            .args(["build", "--platform", platform, "-o"])
            .arg(format!("type=oci,dest={}", archive.display()))
            .arg(ctx.path())
            .run();
        out.assert_success();
        out
    };
    let first = build("linux/arm64", &env.path("arm.tar"));
    assert!(!first.stderr_text().contains("CACHED"), "{}", first.describe());
    let other = format!("linux/{}", host_arch());
    let second = build(&other, &env.path("host.tar"));
    assert!(!second.stderr_text().contains("CACHED"), "a step of the arm64 build was reused:\n{}", second.describe());
    let config = skopeo_inspect_config(&format!("oci-archive:{}", env.path("host.tar").display()));
    assert_eq!(config["architecture"], host_arch());
    // And arm64 again: both steps from the cache, and a cached RUN is not emulated.
    let again = build("linux/arm64", &env.path("arm-again.tar"));
    assert_eq!(again.stderr_text().matches("CACHED").count(), 2, "{}", again.describe());
    assert!(!again.stderr_text().contains("QEMU"), "{}", again.describe());
}

#[test]
fn a_platform_without_a_binfmt_handler_fails_naming_it_and_how_to_install_it() {
    // What this checks is the refusal, not emulation: a platform whose handler this machine has
    // not registered (scripts/test.sh registers only aarch64's).
    let (platform, handler) = [("linux/s390x", "qemu-s390x"), ("linux/ppc64le", "qemu-ppc64le"), ("linux/riscv64", "qemu-riscv64")]
        .into_iter()
        .find(|(_, handler)| !Path::new("/proc/sys/fs/binfmt_misc").join(handler).exists())
        .expect("every candidate platform has a binfmt_misc handler here: none is left to test the missing-handler error with");
    let env = TestEnv::new("platform-missing");
    let ctx = context_with_busyboxes();
    ctx.dockerfile(&["FROM scratch", "COPY busybox-arm64 /bin/busybox", r#"RUN ["/bin/busybox", "true"]"#]);
    let out = env.rbuild().args(["build", "--platform", platform]).arg(ctx.path()).run();
    assert_eq!(out.code(), Some(1), "{}", out.describe());
    out.assert_stderr_contains("Dockerfile:3");
    out.assert_stderr_contains(&format!("binfmt_misc handler {handler}"));
    out.assert_stderr_contains("qemu-user-static");
    out.assert_stderr_contains(&format!("/usr/lib/binfmt.d/{handler}.conf"));
}
