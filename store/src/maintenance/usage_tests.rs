//! Disk usage tests: sizes counted like Docker's, and the `du` rows before
//! and after a prune.

use std::os::unix::fs::symlink;

use super::*;
use crate::gc::tests::{image, layer, noise};
use crate::gc::PruneOptions;
use crate::test_util::temp_store;
use crate::{LayerOptions, Reference};

fn row(usage: &DiskUsage, kind: UsageKind) -> UsageRow {
    usage.rows.iter().find(|r| r.kind == kind).cloned().unwrap()
}

#[test]
fn tree_size_counts_files_and_symlinks_once_and_not_directories() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("a/b")).unwrap();
    fs::write(dir.path().join("a/b/file"), vec![0u8; 1000]).unwrap();
    fs::hard_link(dir.path().join("a/b/file"), dir.path().join("a/link")).unwrap();
    symlink("b/file", dir.path().join("a/sym")).unwrap();
    fs::write(dir.path().join("empty"), b"").unwrap();
    assert_eq!(tree_size(dir.path()).unwrap(), 1000 + "b/file".len() as u64);
    assert_eq!(tree_size(&dir.path().join("gone")).unwrap(), 0);
}

#[test]
fn layer_size_is_the_same_from_the_blob_and_from_the_snapshot() {
    let (_dir, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    fs::create_dir_all(src.path().join("etc/deep")).unwrap();
    fs::write(src.path().join("etc/deep/data"), noise("d", 3000)).unwrap();
    fs::hard_link(
        src.path().join("etc/deep/data"),
        src.path().join("etc/again"),
    )
    .unwrap();
    symlink("deep/data", src.path().join("etc/sym")).unwrap();
    fs::write(src.path().join("small"), b"12345").unwrap();
    let layer = store
        .write_layer(src.path(), &LayerOptions::default())
        .unwrap();
    let expected = 3000 + 5 + "deep/data".len() as u64;
    assert_eq!(store.layer_size(&layer).unwrap(), expected, "from the blob");
    store.ensure_snapshot(&layer).unwrap();
    assert_eq!(
        store.layer_size(&layer).unwrap(),
        expected,
        "from the snapshot"
    );
}

#[test]
fn usage_by_kind_and_what_prune_reclaims() {
    let (_dir, store) = temp_store();
    let tagged = image(&store, "tagged", &[layer(&store, "t", &noise("t", 20_000))]);
    store
        .tag(&Reference::parse("app:1").unwrap(), &tagged.manifest_digest)
        .unwrap();
    let untagged = image(
        &store,
        "untagged",
        &[layer(&store, "u", &noise("u", 30_000))],
    );
    store.ensure_snapshot(&tagged.layers[0]).unwrap();
    store.ensure_snapshot(&untagged.layers[0]).unwrap();
    let garbage = store.write_blob(&noise("g", 5_000)).unwrap();
    let root = store.root().to_path_buf();
    drop(store);
    let store = Store::open(&root).unwrap();

    let usage = store.disk_usage().unwrap();
    let blob_size = |d: &crate::Digest| fs::metadata(store.blob_path(d)).unwrap().len();
    let image_bytes = |i: &crate::StoredImage| {
        blob_size(&i.manifest_digest) + blob_size(&i.config_digest) + blob_size(&i.layers[0].digest)
    };
    let images = row(&usage, UsageKind::Images);
    assert_eq!((images.count, images.active), (2, 1));
    assert_eq!(images.size, image_bytes(&tagged) + image_bytes(&untagged));
    assert_eq!(images.reclaimable, image_bytes(&untagged));
    let snapshots = row(&usage, UsageKind::Snapshots);
    assert_eq!((snapshots.count, snapshots.active), (2, 1));
    assert_eq!(snapshots.size, 50_000);
    assert_eq!(snapshots.reclaimable, 30_000);
    let unreferenced = row(&usage, UsageKind::Unreferenced);
    assert_eq!((unreferenced.count, unreferenced.size), (1, 5_000));
    assert_eq!(unreferenced.reclaimable, 5_000);
    assert_eq!(row(&usage, UsageKind::BuildCache).count, 0);
    let temp = row(&usage, UsageKind::Temp);
    assert_eq!((temp.count, temp.active), (1, 1), "this process's own area");
    assert!(usage.total >= images.size + snapshots.size + unreferenced.size);

    let report = store.prune(&PruneOptions::default()).unwrap();
    let reclaimable: u64 = usage.rows.iter().map(|r| r.reclaimable).sum();
    assert_eq!(
        report.reclaimed, reclaimable,
        "du said what prune would free"
    );
    let after = store.disk_usage().unwrap();
    assert!(after.rows.iter().all(|r| r.reclaimable == 0), "{after:?}");
    assert_eq!(row(&after, UsageKind::Images).size, image_bytes(&tagged));
    assert!(!store.blob_path(&garbage).exists());
}

/// A COPY that misses links the files its last run wrote unchanged, so two
/// snapshots can share inodes: du counts them once, and says what prune frees.
#[test]
fn files_snapshots_share_are_counted_once_and_freed_with_the_last_link() {
    let (_dir, store) = temp_store();
    let kept = image(&store, "kept", &[layer(&store, "k", &noise("k", 20_000))]);
    store
        .tag(&Reference::parse("app:1").unwrap(), &kept.manifest_digest)
        .unwrap();
    let first = image(&store, "first", &[layer(&store, "f", &noise("f", 30_000))]);
    let second = image(&store, "second", &[layer(&store, "s", &noise("s", 7_000))]);
    for image in [&kept, &first, &second] {
        store.ensure_snapshot(&image.layers[0]).unwrap();
    }
    let snapshot = |i: &crate::StoredImage| store.snapshot_path(&i.layers[0].diff_id);
    let kept_file = snapshot(&kept).join("k");
    // `first` links the kept image's file; `second` links `first`'s.
    fs::hard_link(snapshot(&kept).join("k"), snapshot(&first).join("k")).unwrap();
    fs::hard_link(snapshot(&first).join("f"), snapshot(&second).join("f")).unwrap();
    let root = store.root().to_path_buf();
    drop(store);
    let store = Store::open(&root).unwrap();

    let usage = store.disk_usage().unwrap();
    let snapshots = row(&usage, UsageKind::Snapshots);
    assert_eq!(snapshots.count, 3);
    assert_eq!(snapshots.size, 20_000 + 30_000 + 7_000, "each shared file once");
    assert_eq!(snapshots.reclaimable, 30_000 + 7_000, "not the file the kept snapshot links");

    let report = store.prune(&PruneOptions::default()).unwrap();
    let reclaimable: u64 = usage.rows.iter().map(|r| r.reclaimable).sum();
    assert_eq!(report.reclaimed, reclaimable, "du said what prune would free");
    assert_eq!(fs::read(kept_file).unwrap(), noise("k", 20_000));
}
