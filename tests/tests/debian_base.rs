//! Builds on a real Debian 12: a `debootstrap --variant=minbase` root filesystem (made once and
//! cached, see `rbuild_e2e::debian`) becomes `debian-minbase:12` through rbuild's own
//! `FROM scratch` + `ADD debian.tar /`, and builds on it install a package made by the test, with
//! `dpkg -i` and with `apt-get` from a local `file:` repository, all with `--network none`. The
//! results are run by Docker (also without network) and their layers read: dpkg's database in
//! the image lists the package, so the install really ran in the build's sandbox.

use rbuild_e2e::archive::LayerEntry;
use rbuild_e2e::debian::{
    build_base, file_repository, hello_deb, BASE_REF, HELLO_MARKER, HELLO_MESSAGE, HELLO_PACKAGE,
    HELLO_VERSION,
};
use rbuild_e2e::users::SuiteUser;
use rbuild_e2e::{Archive, Context, Docker, LoadedImage, TestEnv};

/// The Dockerfile of the `dpkg -i` builds.
const DPKG_DOCKERFILE: [&str; 4] = [
    "FROM debian-minbase:12",
    "COPY rbuild-hello.deb /tmp/",
    "RUN dpkg -i /tmp/rbuild-hello.deb && rm /tmp/rbuild-hello.deb",
    "RUN rbuild-hello > /hello.txt",
];

/// A context with the package as `rbuild-hello.deb` and [`DPKG_DOCKERFILE`].
fn dpkg_context() -> Context {
    let ctx = Context::new();
    let deb = hello_deb(ctx.path());
    std::fs::rename(&deb, ctx.join("rbuild-hello.deb")).expect("renaming the package");
    ctx.dockerfile(&DPKG_DOCKERFILE);
    ctx
}

/// The entry for `path` in `layer`; panics listing the layer when it has none.
#[track_caller]
fn entry<'a>(layer: &'a [LayerEntry], path: &str, what: &str) -> &'a LayerEntry {
    layer.iter().find(|e| e.path == path).unwrap_or_else(|| {
        let paths: Vec<&str> = layer.iter().map(|e| e.path.as_str()).collect();
        panic!("{what}: no {path} in the layer, which has {paths:?}")
    })
}

/// dpkg's record of the package in a `/var/lib/dpkg/status` text, if it has one.
fn status_record(status: &str) -> Option<&str> {
    status
        .split("\n\n")
        .find(|record| record.starts_with(&format!("Package: {HELLO_PACKAGE}\n")))
}

/// Checks a loaded image with the package installed: Docker runs the program (the base's CMD is
/// bash, so the arguments are a command line) and finds what dpkg and the postinst left.
#[track_caller]
fn assert_installed(image: &LoadedImage) {
    assert_eq!(image.run(&["rbuild-hello"]), format!("{HELLO_MESSAGE}\n"));
    assert_eq!(
        image.run(&["cat", "/hello.txt"]),
        format!("{HELLO_MESSAGE}\n"),
        "written by the RUN after the install"
    );
    assert_eq!(
        image.run(&["cat", HELLO_MARKER]),
        "configured configure\n",
        "the postinst ran"
    );
    assert_eq!(
        image.run(&[
            "dpkg-query",
            "--show",
            "--showformat",
            "${Status} ${Version}",
            HELLO_PACKAGE
        ]),
        format!("install ok installed {HELLO_VERSION}")
    );
    assert_eq!(
        image.run(&["cat", "/etc/debian_version"]).split('.').next(),
        Some("12"),
        "a Debian 12 base"
    );
}

/// Checks the layers of a `DPKG_DOCKERFILE` build: base, COPY, the dpkg RUN, the RUN after it.
#[track_caller]
fn assert_dpkg_layers(archive: &Archive) {
    let layers = archive.layers();
    assert_eq!(layers.len(), 4, "layers: the base's, COPY, two RUNs");
    let base = &layers[0];
    assert!(
        base.iter().any(|e| e.path == "usr/bin/dpkg")
            && !base.iter().any(|e| e.path == "usr/bin/rbuild-hello"),
        "the base layer is the minbase, without the package"
    );
    let dpkg_layer = &layers[2];
    let status = entry(dpkg_layer, "var/lib/dpkg/status", "the dpkg -i step");
    let status = String::from_utf8_lossy(&status.data);
    let record = status_record(&status).unwrap_or_else(|| {
        panic!("the status file the dpkg -i step wrote does not list {HELLO_PACKAGE}:\n{status}")
    });
    assert!(
        record.contains("Status: install ok installed\n"),
        "dpkg's record: {record}"
    );
    assert!(
        record.contains(&format!("Version: {HELLO_VERSION}\n")),
        "dpkg's record: {record}"
    );
    let program = entry(dpkg_layer, "usr/bin/rbuild-hello", "the dpkg -i step");
    assert_eq!(
        (program.mode & 0o7777, program.uid, program.gid),
        (0o755, 0, 0),
        "the program as dpkg unpacked it"
    );
    let marker = entry(
        dpkg_layer,
        HELLO_MARKER.trim_start_matches('/'),
        "the dpkg -i step",
    );
    assert_eq!(marker.data, b"configured configure\n");
    entry(
        dpkg_layer,
        "var/lib/dpkg/info/rbuild-hello.list",
        "the dpkg -i step",
    );
    entry(
        dpkg_layer,
        "tmp/.wh.rbuild-hello.deb",
        "the dpkg -i step (rm of the copied package)",
    );
    let hello = entry(&layers[3], "hello.txt", "the RUN of the program");
    assert_eq!(hello.data, format!("{HELLO_MESSAGE}\n").as_bytes());
}

#[test]
fn dpkg_installs_a_package_on_a_debootstrapped_base_without_network() {
    let env = TestEnv::new("debian-dpkg");
    build_base(&env);
    let images = env.rbuild().args(["images", BASE_REF]).run();
    images.assert_success();
    assert!(
        images.stdout_text().contains("debian-minbase"),
        "the base is tagged:\n{}",
        images.describe()
    );

    let ctx = dpkg_context();
    let built = env.build(&ctx, &["--network", "none"]);
    assert_dpkg_layers(&built.archive());
    let image = built.load();
    assert_installed(&image);
    // The package's files are dpkg's, which can remove them again, running in Docker offline.
    let removed = Docker::get().run(
        &[],
        image.reference(),
        &[
            "sh",
            "-c",
            "dpkg --purge rbuild-hello >/dev/null && ! command -v rbuild-hello && echo purged",
        ],
    );
    removed.assert_success();
    assert_eq!(removed.stdout_text(), "purged\n");
}

#[test]
fn apt_get_installs_from_a_local_file_repository_without_network() {
    let env = TestEnv::new("debian-apt");
    build_base(&env);
    let ctx = Context::new();
    file_repository(&ctx.join("repo"));
    // Only the local source: the minbase's own sources.list (the mirror) is never read, so apt
    // has nothing to fetch from the network, which the build does not have anyway.
    let only_local = "-o Dir::Etc::sourcelist=sources.list.d/local.list -o Dir::Etc::sourceparts=-";
    let install = format!(
        "RUN echo 'deb [trusted=yes] file:/repo ./' > /etc/apt/sources.list.d/local.list \
         && apt-get update {only_local} \
         && apt-get install -y --no-install-recommends {only_local} {HELLO_PACKAGE}"
    );
    ctx.dockerfile(&[
        "FROM debian-minbase:12",
        "COPY repo /repo",
        &install,
        "RUN rbuild-hello > /hello.txt",
    ]);
    let built = env.build(&ctx, &["--network", "none"]);
    let log = format!(
        "{}{}",
        built.output.stdout_text(),
        built.output.stderr_text()
    );
    // The build shows the RUN's output: apt read the local index and dpkg configured the package.
    let setting_up = format!("Setting up {HELLO_PACKAGE} ({HELLO_VERSION})");
    for wanted in ["file:/repo ./ Packages", setting_up.as_str()] {
        assert!(
            log.contains(wanted),
            "no {wanted:?} in the build's output:\n{log}"
        );
    }
    for unwanted in ["Err:", "Failed to fetch", "deb.debian.org"] {
        assert!(
            !log.contains(unwanted),
            "apt reached for more than the local repository ({unwanted:?}):\n{log}"
        );
    }

    let layers = built.archive().layers();
    assert_eq!(layers.len(), 4, "layers: the base's, COPY, two RUNs");
    let apt_layer = &layers[2];
    let status = entry(apt_layer, "var/lib/dpkg/status", "the apt-get step");
    let status = String::from_utf8_lossy(&status.data);
    let record = status_record(&status).unwrap_or_else(|| {
        panic!("the status file the apt-get step wrote does not list {HELLO_PACKAGE}:\n{status}")
    });
    assert!(
        record.contains("Status: install ok installed\n"),
        "dpkg's record: {record}"
    );
    // apt's index of the local repository, and no other.
    let lists: Vec<&str> = apt_layer
        .iter()
        .filter_map(|e| e.path.strip_prefix("var/lib/apt/lists/"))
        .filter(|name| name.contains('_'))
        .collect();
    assert_eq!(
        lists,
        ["_repo_._Packages"],
        "the apt lists the step fetched"
    );

    let image = built.load();
    assert_installed(&image);
    assert_eq!(
        image
            .run(&[
                "apt-cache",
                "-o",
                "Dir::Etc::sourcelist=sources.list.d/local.list",
                "-o",
                "Dir::Etc::sourceparts=-",
                "policy",
                HELLO_PACKAGE
            ])
            .lines()
            .find(|l| l.contains("file:/repo"))
            .map(str::trim),
        Some("500 file:/repo ./ Packages"),
        "apt knows the package from the local repository"
    );
}

#[test]
fn a_rootless_user_installs_the_package_on_the_debian_base() {
    let env = TestEnv::new("debian-rootless");
    let user = SuiteUser::with_range();
    let ctx = Context::new();
    rbuild_e2e::debian::base_context().copy_to(&ctx.join("base"));
    dpkg_context().copy_to(&ctx.join("app"));
    let ws = user.workspace(&ctx);
    let base = ws.context().join("base");
    let app = ws.context().join("app");
    ws.rbuild(&["build", "-q", "-t", BASE_REF, base.to_str().expect("utf-8")])
        .assert_success();
    let reference = env.image_ref();
    let archive_path = ws.out("image.tar");
    ws.rbuild(&[
        "build",
        "--network",
        "none",
        "-t",
        &reference,
        "-o",
        archive_path.to_str().expect("utf-8"),
        app.to_str().expect("utf-8"),
    ])
    .assert_success();
    // Ownership in the layers is the image's (root), not the user's host ids.
    assert_dpkg_layers(&Archive::open(&archive_path));
    let image = Docker::get().load_as(&archive_path, &reference);
    assert_installed(&image);
}
