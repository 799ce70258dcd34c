//! Snapshot diff: what the chroot isolation does around a RUN step to find
//! its changes (the namespace isolation reads them off the overlay's upper
//! directory instead). A generated tree of 10,000 files of 1 KiB in 100
//! folders plays the root filesystem.
//!
//! - `record`: the index taken before the command runs (inode, birth and
//!   change time of every entry).
//! - `write_changes`: after a command edited 100 files, added 100, deleted
//!   100 and replaced one folder: the scan that finds them and the upper
//!   directory written with their copies, whiteouts and an opaque folder.
//!
//! `cargo bench -p rbuild-builder --bench snapshot_diff`.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use rbuild_sandbox::ChangeTracker;

const FILES: usize = 10_000;

fn make_tree(root: &Path) -> io::Result<()> {
    for i in 0..FILES {
        let dir = root.join(format!("d{:02}", i / 100));
        if i % 100 == 0 {
            fs::create_dir_all(&dir)?;
        }
        fs::write(dir.join(format!("f{i:05}")), vec![(i % 251) as u8; 1024])?;
    }
    Ok(())
}

/// What a command might do: edit, add, delete, replace a folder.
fn change(root: &Path) -> io::Result<()> {
    for i in (0..FILES).step_by(100) {
        fs::write(root.join(format!("d{:02}/f{i:05}", i / 100)), b"edited")?;
        fs::write(root.join(format!("d{:02}/new{i:05}", i / 100)), b"added")?;
        fs::remove_file(root.join(format!("d{:02}/f{:05}", i / 100, i + 1)))?;
    }
    fs::remove_dir_all(root.join("d99"))?;
    fs::create_dir(root.join("d99"))?;
    fs::write(root.join("d99/only"), b"replaced")
}

fn snapshot_diff(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_diff");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));

    let tree = tempfile::tempdir().expect("temp dir");
    make_tree(tree.path()).expect("make tree");
    group.bench_function("record", |b| {
        b.iter(|| ChangeTracker::record(tree.path()).expect("record"))
    });

    // Every iteration gets a fresh tree and changes it; only the diff is timed.
    group.bench_function("write_changes", |b| {
        b.iter_batched(
            || {
                let tree = tempfile::tempdir().expect("temp dir");
                make_tree(tree.path()).expect("make tree");
                let tracker = ChangeTracker::record(tree.path()).expect("record");
                change(tree.path()).expect("change");
                let upper = tempfile::tempdir().expect("temp dir");
                (tree, tracker, upper)
            },
            |(tree, tracker, upper)| {
                let warnings = tracker.write_changes(tree.path(), upper.path()).expect("diff");
                assert!(warnings.is_empty(), "{warnings:?}");
                assert!(upper.path().join("d00/new00000").is_file());
                (tree, upper)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, snapshot_diff);
criterion_main!(benches);
