//! Garbage collection tests: what `prune` keeps (tagged images, what running
//! processes use), what it removes and in which order, and `keep_storage`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;
use crate::records::ConversionRecords;
use crate::records::RecordSource;
use crate::test_util::temp_store;
use crate::usage::store_size;
use crate::{Compression, Digest, ImageConfig, Layer, LayerOptions, Reference, StoredImage};

/// `len` bytes that do not compress, different for each `seed`.
pub(crate) fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut i = 0u64;
    while out.len() < len {
        let d = Digest::of_bytes(format!("{seed}/{i}").as_bytes());
        out.extend(hex::decode(d.hex()).unwrap());
        i += 1;
    }
    out.truncate(len);
    out
}

/// A layer holding one file.
pub(crate) fn layer(store: &Store, name: &str, content: &[u8]) -> Layer {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join(name), content).unwrap();
    store
        .write_layer(src.path(), &LayerOptions::default())
        .unwrap()
}

/// An image of `layers`, told apart from others by `label`.
pub(crate) fn image(store: &Store, label: &str, layers: &[Layer]) -> StoredImage {
    let mut config = ImageConfig::new("linux", "amd64");
    config.config.cmd = Some(vec![label.to_string()]);
    store.put_image(&config, layers).unwrap()
}

fn tag(store: &Store, name: &str, image: &StoredImage) {
    store
        .tag(&Reference::parse(name).unwrap(), &image.manifest_digest)
        .unwrap();
}

fn blob_exists(root: &Path, d: &Digest) -> bool {
    root.join("blobs/sha256").join(d.hex()).is_file()
}

fn all_blobs_exist(root: &Path, image: &StoredImage) -> bool {
    blob_exists(root, &image.manifest_digest)
        && blob_exists(root, &image.config_digest)
        && image.layers.iter().all(|l| blob_exists(root, &l.digest))
}

fn none_exist(root: &Path, image: &StoredImage) -> bool {
    !blob_exists(root, &image.manifest_digest)
        && !blob_exists(root, &image.config_digest)
        && image.layers.iter().all(|l| !blob_exists(root, &l.digest))
}

fn set_stored_at(store: &Store, image: &StoredImage, seconds_ago: u64) {
    let path = store.root().join("images").join(image.config_digest.hex());
    let time = SystemTime::now() - Duration::from_secs(seconds_ago);
    filetime::set_file_mtime(&path, filetime::FileTime::from_system_time(time)).unwrap();
}

#[test]
fn prune_keeps_tagged_images_and_removes_untagged_ones_and_garbage() {
    let (_dir, store) = temp_store();
    let root = store.root().to_path_buf();
    let shared = layer(&store, "shared", b"in both images");
    let kept = image(
        &store,
        "kept",
        &[shared.clone(), layer(&store, "a", b"only kept")],
    );
    let dropped = image(
        &store,
        "dropped",
        &[shared.clone(), layer(&store, "b", b"only dropped")],
    );
    tag(&store, "app:1", &kept);
    store.ensure_snapshot(&kept.layers[1]).unwrap();
    store.ensure_snapshot(&dropped.layers[1]).unwrap();
    let garbage = store
        .write_blob(b"written by a build that was killed")
        .unwrap();
    drop(store);

    let pruner = Store::open(&root).unwrap();
    let report = pruner.prune(&PruneOptions::default()).unwrap();
    assert_eq!(
        report.records,
        vec![RemovedRecord {
            kind: RecordKind::Image,
            id: dropped.config_digest.to_string(),
            names: vec![],
        }]
    );
    assert!(all_blobs_exist(&root, &kept));
    assert!(pruner.snapshot_path(&kept.layers[1].diff_id).is_dir());
    assert!(!blob_exists(&root, &garbage));
    assert!(!blob_exists(&root, &dropped.config_digest));
    assert!(!blob_exists(&root, &dropped.layers[1].digest));
    assert!(!pruner.snapshot_path(&dropped.layers[1].diff_id).exists());
    assert!(
        blob_exists(&root, &shared.digest),
        "the tagged image still uses it"
    );
    assert_eq!(
        report.blobs, 4,
        "garbage, dropped's manifest, config and own layer"
    );
    assert_eq!(report.snapshots, 1);
    assert!(report.reclaimed > 0);
    assert_eq!(pruner.lookup("app:1").unwrap().unwrap(), kept);
    assert!(pruner
        .lookup(dropped.config_digest.hex())
        .unwrap()
        .is_none());

    // Nothing is left to remove.
    let again = pruner.prune(&PruneOptions::default()).unwrap();
    assert_eq!(again, PruneReport::default());
}

#[test]
fn prune_all_removes_tagged_images_too() {
    let (_dir, store) = temp_store();
    let root = store.root().to_path_buf();
    let one = image(&store, "one", &[layer(&store, "f", b"1")]);
    tag(&store, "app:1", &one);
    tag(&store, "app:latest", &one);
    store.ensure_snapshot(&one.layers[0]).unwrap();
    drop(store);

    let pruner = Store::open(&root).unwrap();
    let report = pruner
        .prune(&PruneOptions {
            all: true,
            keep_storage: None,
        })
        .unwrap();
    assert_eq!(report.records.len(), 1);
    assert_eq!(report.records[0].names, vec!["app:1", "app:latest"]);
    assert!(pruner.tags().unwrap().is_empty());
    assert!(none_exist(&root, &one));
    assert_eq!(fs::read_dir(root.join("snapshots")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(root.join("images")).unwrap().count(), 0);
}

#[test]
fn prune_never_removes_what_a_running_process_uses() {
    let (_dir, store) = temp_store();
    let root = store.root().to_path_buf();
    let base = image(&store, "base", &[layer(&store, "f", b"base")]);
    drop(store);

    // A build running beside the prune: it looked the untagged base up (by
    // id, as `FROM <id>` does) and wrote a layer it has not yet put in an
    // image.
    let build = Store::open(&root).unwrap();
    let found = build.lookup(base.config_digest.hex()).unwrap().unwrap();
    build.ensure_snapshot(&found.layers[0]).unwrap();
    let fresh = layer(&build, "new", b"not in any image yet");

    let pruner = Store::open(&root).unwrap();
    let everything = PruneOptions {
        all: true,
        keep_storage: None,
    };
    let report = pruner.prune(&everything).unwrap();
    assert!(report.records.is_empty(), "{report:?}");
    assert!(all_blobs_exist(&root, &base));
    assert!(build.snapshot_path(&base.layers[0].diff_id).is_dir());
    assert!(blob_exists(&root, &fresh.digest));

    // Once the build is gone, all of it may go.
    drop(build);
    let report = pruner.prune(&everything).unwrap();
    assert_eq!(report.records.len(), 1);
    assert!(none_exist(&root, &base));
    assert!(!blob_exists(&root, &fresh.digest));
}

#[test]
fn keep_storage_removes_least_recently_used_first_and_stops_in_time() {
    let (_dir, store) = temp_store();
    let root = store.root().to_path_buf();
    let images: Vec<StoredImage> = ["old", "middle", "new"]
        .iter()
        .map(|name| image(&store, name, &[layer(&store, name, &noise(name, 100_000))]))
        .collect();
    for (image, age) in images.iter().zip([300, 200, 100]) {
        set_stored_at(&store, image, age);
    }
    drop(store);

    let pruner = Store::open(&root).unwrap();
    let size = store_size(&root).unwrap();
    let report = pruner
        .prune(&PruneOptions {
            all: false,
            keep_storage: Some(size - 1),
        })
        .unwrap();
    assert_eq!(report.records.len(), 1, "{report:?}");
    assert_eq!(report.records[0].id, images[0].config_digest.to_string());
    assert!(none_exist(&root, &images[0]));
    assert!(all_blobs_exist(&root, &images[1]) && all_blobs_exist(&root, &images[2]));
    assert!(store_size(&root).unwrap() < size - 100_000);

    // A limit the store is already under removes nothing.
    let report = pruner
        .prune(&PruneOptions {
            all: false,
            keep_storage: Some(size),
        })
        .unwrap();
    assert!(report.records.is_empty());
}

#[test]
fn build_cache_goes_before_images() {
    let (_dir, store) = temp_store();
    let root = store.root().to_path_buf();
    let untagged = image(
        &store,
        "untagged",
        &[layer(&store, "u", &noise("u", 50_000))],
    );
    set_stored_at(&store, &untagged, 1000);
    let tagged = image(&store, "tagged", &[layer(&store, "t", &noise("t", 50_000))]);
    tag(&store, "app:1", &tagged);
    // A zstd export leaves a conversion record and a converted layer blob.
    let converted = store
        .convert_layer(&tagged.layers[0], Compression::Zstd)
        .unwrap();
    let conversions = ConversionRecords.records(&store).unwrap();
    assert_eq!(conversions.len(), 1);
    drop(store);

    let pruner = Store::open(&root).unwrap();
    let report = pruner
        .prune(&PruneOptions {
            all: false,
            keep_storage: Some(store_size(&root).unwrap() - 1),
        })
        .unwrap();
    assert_eq!(report.records.len(), 1, "{report:?}");
    assert_eq!(report.records[0].kind, RecordKind::BuildCache);
    assert!(!blob_exists(&root, &converted.digest));
    assert!(
        all_blobs_exist(&root, &untagged),
        "the older image outlives the cache"
    );
    assert!(ConversionRecords.records(&pruner).unwrap().is_empty());
}

#[test]
fn prunes_wait_for_each_other_and_agree() {
    let (_dir, store) = temp_store();
    let root = store.root().to_path_buf();
    for i in 0..6 {
        image(
            &store,
            &i.to_string(),
            &[layer(&store, "f", i.to_string().as_bytes())],
        );
    }
    drop(store);
    let reports: Vec<PruneReport> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let root = &root;
                s.spawn(move || {
                    Store::open(root)
                        .unwrap()
                        .prune(&PruneOptions::default())
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let removed: usize = reports.iter().map(|r| r.records.len()).sum();
    assert_eq!(removed, 6, "each image removed exactly once: {reports:?}");
    assert_eq!(fs::read_dir(root.join("blobs/sha256")).unwrap().count(), 0);
}

#[test]
fn step_cache_records_are_pruned_least_recently_used_first_with_their_layers() {
    let (_dir, store) = temp_store();
    let root = store.root().to_path_buf();
    let index = store.cache_index().unwrap();
    let key = |n: &str| Digest::of_bytes(n.as_bytes());
    let mut layers = Vec::new();
    for (name, age) in [("old", 300), ("new", 100)] {
        let layer = layer(&store, name, &noise(name, 40_000));
        store.ensure_snapshot(&layer).unwrap();
        let record = crate::CacheRecord {
            layer: Some(layer.clone()),
            created_by: Some(format!("RUN make {name}")),
            empty_layer: false,
            created: None,
            last_used: None,
        };
        index.put(&key(name), &record).unwrap();
        index.remember_inputs(&key("step"), &key(name), name.as_bytes()).unwrap();
        let path = root
            .join("cache/records")
            .join(format!("{}.json", key(name).hex()));
        let time = SystemTime::now() - Duration::from_secs(age);
        filetime::set_file_mtime(&path, filetime::FileTime::from_system_time(time)).unwrap();
        layers.push(layer);
    }
    drop((index, store));

    let pruner = Store::open(&root).unwrap();
    let report = pruner
        .prune(&PruneOptions {
            all: false,
            keep_storage: Some(store_size(&root).unwrap() - 1),
        })
        .unwrap();
    assert_eq!(report.records.len(), 1, "{report:?}");
    assert_eq!(report.records[0].kind, RecordKind::BuildCache);
    assert_eq!(report.records[0].id, key("old").hex());
    assert_eq!((report.blobs, report.snapshots), (1, 1));
    assert!(!blob_exists(&root, &layers[0].digest));
    assert!(!pruner.snapshot_path(&layers[0].diff_id).exists());
    assert!(blob_exists(&root, &layers[1].digest));
    let index = pruner.cache_index().unwrap();
    assert!(index.get(&key("old")).unwrap().is_none());
    assert!(index.get(&key("new")).unwrap().is_some());
    let inputs = |index: &crate::CacheIndex| index.recent_inputs(&key("step")).unwrap();
    assert_eq!(inputs(&index), [(key("new"), b"new".to_vec())], "the pruned key's inputs went too");

    // A plain prune takes every cache record.
    let report = pruner.prune(&PruneOptions::default()).unwrap();
    assert_eq!(report.records.len(), 1);
    assert!(!blob_exists(&root, &layers[1].digest));
    assert!(inputs(&index).is_empty());
    assert_eq!(fs::read_dir(root.join("cache/inputs")).unwrap().count(), 0, "and the step's directory");
    // A later build of the step records its inputs again.
    index.remember_inputs(&key("step"), &key("again"), b"again").unwrap();
    assert_eq!(inputs(&index).len(), 1);
}

#[test]
fn prune_takes_the_pins_of_removed_images_and_the_stat_caches_of_gone_trees() {
    let (_dir, store) = temp_store();
    let root = store.root().to_path_buf();
    let root = root.as_path();
    let kept = image(&store, "kept", &[layer(&store, "a", b"kept")]);
    tag(&store, "kept:1", &kept);
    let dropped = image(&store, "dropped", &[layer(&store, "b", b"dropped")]);
    let platform = crate::platform::Platform::host();
    let foreign = |s: &str| Digest::of_bytes(s.as_bytes());
    store.pin_digest(&foreign("kept"), None, &kept.manifest_digest).unwrap();
    store.pin_digest(&foreign("dropped"), Some(&platform), &dropped.manifest_digest).unwrap();

    let trees = tempfile::tempdir().unwrap();
    let (live, gone) = (trees.path().join("live"), trees.path().join("gone"));
    for tree in [&live, &gone] {
        fs::create_dir(tree).unwrap();
        let mut cache = store.stat_cache(tree).unwrap();
        cache.insert(
            crate::stat_cache::StatKey { dev: 1, ino: 2, size: 3, mtime: (4, 5), ctime: (6, 7) },
            [9; 32],
        );
        cache.save().unwrap();
    }
    fs::remove_dir(&gone).unwrap();
    let stat_dir = root.join("cache/stat");
    fs::write(stat_dir.join("0123456789abcdef0123456789abcdef.bin"), b"RBSTATC1 an old format").unwrap();
    let bins = || fs::read_dir(&stat_dir).unwrap().filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "bin").count();
    assert_eq!(bins(), 3);

    store.prune(&PruneOptions::default()).unwrap();
    assert!(none_exist(root, &dropped));
    let pins: Vec<_> = fs::read_dir(root.join("pins")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(pins, [foreign("kept").hex()], "only the pin of the kept image stays");
    assert_eq!(store.pinned_image(&foreign("kept"), &platform).unwrap().unwrap(), kept);
    assert_eq!(bins(), 1, "the caches of the gone tree and of the old format went");
    assert_eq!(store.stat_cache(&live).unwrap().len(), 1, "the live tree's cache stays whole");
}
