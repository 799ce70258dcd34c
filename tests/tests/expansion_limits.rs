//! Decompression bombs: an ADD archive or a base layer that expands past a limit (bytes, as a
//! multiple of its own size, or members) is refused with an error naming the limit and the
//! variable that raises it, leaves nothing behind in the store, and builds once the user raises
//! the limit. The limits are lowered here (RBUILD_EXPANSION_FLOOR, RBUILD_MAX_ARCHIVE_ENTRIES)
//! so the bombs stay small; the defaults are the store's unit tests' business.

use std::fs;
use std::io::Write;
use std::path::Path;

use rbuild_e2e::archive::{layer_tar, write_docker_archive};
use rbuild_e2e::store::assert_store_sound;
use rbuild_e2e::{Context, RunOutput, TestEnv};

/// A gzipped tar of one file of `size` zeros: a few KB that expand to `size`.
fn zeros_tar_gz(path: &Path, size: u64) {
    let file = fs::File::create(path).expect("creating the bomb");
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, "zeros", std::io::Read::take(std::io::repeat(0), size)).expect("the member");
    tar.into_inner().expect("tar").finish().expect("gzip").flush().expect("flush");
}

/// The entries of the store's `snapshots/` and `tmp/` directories.
fn store_leftovers(store: &Path) -> (usize, Vec<String>) {
    let snapshots = fs::read_dir(store.join("snapshots")).map(|d| d.count()).unwrap_or(0);
    let mut tmp = Vec::new();
    for pid_dir in fs::read_dir(store.join("tmp")).into_iter().flatten().flatten() {
        for entry in fs::read_dir(pid_dir.path()).into_iter().flatten().flatten() {
            tmp.push(entry.path().display().to_string());
        }
    }
    (snapshots, tmp)
}

#[track_caller]
fn assert_refused(out: &RunOutput, needles: &[&str]) {
    out.assert_code(1);
    for needle in needles {
        out.assert_stderr_contains(needle);
    }
}

#[test]
fn an_add_archive_that_expands_too_far_is_refused() {
    let env = TestEnv::new("add-bomb");
    let ctx = Context::new();
    zeros_tar_gz(&ctx.join("bomb.tar.gz"), 64 << 20);
    let compressed = fs::metadata(ctx.join("bomb.tar.gz")).unwrap().len();
    assert!(compressed < 200 << 10, "a small archive: {compressed} bytes");
    ctx.dockerfile(&["FROM scratch", "ADD bomb.tar.gz /x/"]);
    let before = store_leftovers(env.store());

    let out = env.rbuild().args(["build", "-t", "bomb"]).arg(ctx.path()).env("RBUILD_EXPANSION_FLOOR", "1M").run();
    assert_refused(&out, &["Dockerfile:2", "archive bomb.tar.gz was refused", "times its size", "RBUILD_MAX_EXPANSION_RATIO"]);
    let after = store_leftovers(env.store());
    assert_eq!(after.0, before.0, "no snapshot was added");
    assert!(after.1.is_empty(), "temporary files left: {:?}", after.1);
    assert_store_sound(env.store());

    // Raised, the same archive is extracted.
    let rootfs = env.path("rootfs");
    let dest = format!("type=local,dest={}", rootfs.display());
    env.rbuild()
        .args(["build", "-o", &dest])
        .arg(ctx.path())
        .env("RBUILD_EXPANSION_FLOOR", "1M")
        .env("RBUILD_MAX_EXPANSION_RATIO", "0")
        .run()
        .assert_success();
    assert_eq!(fs::metadata(rootfs.join("x/zeros")).unwrap().len(), 64 << 20);
}

#[test]
fn base_layers_past_the_limits_are_refused() {
    let env = TestEnv::new("layer-bomb");
    let dir = tempfile::tempdir().expect("temp dir");
    let names: Vec<String> = (0..2_000).map(|i| format!("e{i}")).collect();
    let files: Vec<(&str, &[u8], u32)> = names.iter().map(|n| (n.as_str(), &b""[..], 0o644)).collect();
    let many = dir.path().join("many.tar");
    write_docker_archive(&many, "many:1", &[layer_tar(&files, &[])]);
    let big = dir.path().join("big.tar");
    let zeros = vec![0u8; 8 << 20];
    write_docker_archive(&big, "big:1", &[layer_tar(&[("zeros", &zeros, 0o644)], &[])]);

    let ctx = Context::new();
    ctx.dockerfile(&["FROM base", "LABEL unpacked=yes"]);
    let out_tar = env.path("rootfs.tar");
    let output = format!("type=tar,dest={}", out_tar.display());
    for (archive, setting, needles) in [
        (&many, ("RBUILD_MAX_ARCHIVE_ENTRIES", "1000"), ["more than 1000 members", "RBUILD_MAX_ARCHIVE_ENTRIES"]),
        (&big, ("RBUILD_MAX_EXPANDED_SIZE", "1M"), ["more than 1048576 bytes", "RBUILD_MAX_EXPANDED_SIZE"]),
    ] {
        let flag = format!("base=docker-archive:{}", archive.display());
        let before = store_leftovers(env.store());
        let out = env
            .rbuild()
            .args(["build", "--build-context", &flag, "-o", &output])
            .arg(ctx.path())
            .env(setting.0, setting.1)
            .run();
        assert_refused(&out, &["was refused"]);
        assert_refused(&out, &needles);
        let after = store_leftovers(env.store());
        assert_eq!(after.0, before.0, "{}: no snapshot was added", setting.0);
        assert!(after.1.is_empty(), "{}: temporary files left: {:?}", setting.0, after.1);
        assert_store_sound(env.store());

        // The default limits let these through.
        let out = env.rbuild().args(["build", "--build-context", &flag, "-o", &output]).arg(ctx.path()).run();
        out.assert_success();
    }
}
