//! Layer stacks that RUN must mount whatever their shape: steps whose layers are byte for byte
//! the same, base images that repeat a layer, and more layers than one overlayfs mount takes,
//! under both isolations.

use std::fs;

use rbuild_e2e::archive::{layer_tar, write_docker_archive};
use rbuild_e2e::context::busybox_path;
use rbuild_e2e::sandbox::with_shell;
use rbuild_e2e::{Context, TestEnv};

const ISOLATIONS: [&str; 2] = ["namespaces", "chroot"];

/// Two runs of the same three steps give the same three layers (an empty diff is not a layer,
/// but `mkdir` and `rmdir` leave one each); the RUN after them used to fail to mount.
#[test]
fn steps_with_identical_layers_are_built_on() {
    for isolation in ISOLATIONS {
        let env = TestEnv::new(&format!("identical-layers-{isolation}"));
        let ctx = Context::with_busybox();
        ctx.dockerfile(&with_shell(&[
            "RUN mkdir /a",
            "RUN mkdir /b",
            "RUN rmdir /a /b",
            "RUN mkdir /a",
            "RUN mkdir /b",
            "RUN rmdir /a /b",
            "RUN echo x > /x && ls / > /listing",
        ]));
        let built = env.build(&ctx, &["--isolation", isolation]);
        let layers = built.archive().docker_manifest()["Layers"].clone();
        let layers: Vec<&str> = layers
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap())
            .collect();
        let distinct: std::collections::BTreeSet<&str> = layers.iter().copied().collect();
        assert!(
            distinct.len() < layers.len(),
            "{isolation}: the image repeats a layer: {layers:?}"
        );
        let image = built.load();
        assert_eq!(image.read("/x"), "x\n", "{isolation}");
        let listing = image.read("/listing");
        assert!(
            !listing.lines().any(|l| l == "a" || l == "b"),
            "{isolation}: {listing}"
        );
    }
}

fn busybox_layer() -> Vec<u8> {
    let busybox = fs::read(busybox_path()).expect("reading busybox");
    layer_tar(&[("bin/busybox", &busybox, 0o755)], &[])
}

/// A base image whose manifest names one layer twice: the upper occurrence wins, as it does in
/// Docker, and a RUN on top sees that tree.
#[test]
fn a_base_image_that_repeats_a_layer() {
    let one = layer_tar(&[("f", b"one\n", 0o644), ("only-one", b"1\n", 0o644)], &[]);
    let two = layer_tar(&[("f", b"two\n", 0o644)], &["only-one"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("repeats.tar");
    write_docker_archive(
        &archive,
        "repeats:1",
        &[busybox_layer(), one.clone(), two, one],
    );
    let flag = format!("repeats=docker-archive:{}", archive.display());
    for isolation in ISOLATIONS {
        let env = TestEnv::new(&format!("repeated-base-layer-{isolation}"));
        let ctx = Context::new();
        ctx.dockerfile(&[
            "FROM repeats",
            r#"RUN ["/bin/busybox", "sh", "-c", "/bin/busybox cat /f /only-one > /seen"]"#,
        ]);
        let image = env.build_and_load(&ctx, &["--build-context", &flag, "--isolation", isolation]);
        assert_eq!(image.read("/seen"), "one\n1\n", "{isolation}");
        assert_eq!(
            image.read("/f"),
            "one\n",
            "{isolation}: the image as Docker stacks it"
        );
    }
}

/// A base of 600 layers: more than overlayfs stacks in one mount (500), and far more than the
/// paths of one page-sized option hold. A file deleted half-way stays deleted, and each file
/// keeps the content of the topmost layer that wrote it.
#[test]
fn hundreds_of_base_layers() {
    const LAYERS: usize = 600;
    let mut layers = vec![busybox_layer()];
    for i in 1..LAYERS {
        let name = format!("f{i}");
        let content = format!("{i}\n");
        let mut files: Vec<(&str, &[u8], u32)> = vec![
            (&name, content.as_bytes(), 0o644),
            ("last", content.as_bytes(), 0o644),
        ];
        let deleted: &[&str] = if i == 300 { &["f10"] } else { &[] };
        if i == 400 {
            files.push(("f10", b"back\n", 0o644));
        }
        layers.push(layer_tar(&files, deleted));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let archive = dir.path().join("deep.tar");
    write_docker_archive(&archive, "deep:1", &layers);
    let flag = format!("deep=docker-archive:{}", archive.display());
    for isolation in ISOLATIONS {
        let env = TestEnv::new(&format!("deep-base-{isolation}"));
        let ctx = Context::new();
        ctx.dockerfile(&[
            "FROM deep",
            r#"RUN ["/bin/busybox", "sh", "-c", "cd / && /bin/busybox cat f1 f10 f599 last > /seen && /bin/busybox ls / | /bin/busybox grep -c '^f' > /count"]"#,
        ]);
        let out = env.path(&format!("rootfs-{isolation}"));
        let dest = format!("type=local,dest={}", out.display());
        env.rbuild()
            .args([
                "build",
                "--build-context",
                &flag,
                "--isolation",
                isolation,
                "-o",
                &dest,
            ])
            .arg(ctx.path())
            .run()
            .assert_success();
        let read = |name: &str| {
            fs::read_to_string(out.join(name))
                .unwrap_or_else(|e| panic!("{isolation}: /{name}: {e}"))
        };
        assert_eq!(read("seen"), "1\nback\n599\n599\n", "{isolation}");
        assert_eq!(read("count"), format!("{}\n", LAYERS - 1), "{isolation}");
    }
}
