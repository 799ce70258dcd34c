//! Lease tests: what a store handle registers, how live and stale leases are
//! told apart, and that registering waits for a running collection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::store::Store;
use crate::test_util::{one_layer_image, temp_store};

fn lease_lines(store: &Store) -> Vec<String> {
    let text = fs::read_to_string(store.lease_path().unwrap()).unwrap();
    text.lines().map(str::to_string).collect()
}

#[test]
fn a_store_registers_what_it_writes_and_looks_up() {
    let (_dir, store) = temp_store();
    let blob = store.write_blob(b"some config").unwrap();
    let absent = Digest::of_bytes(b"a snapshot nobody made");
    assert!(!store.has_snapshot(&absent));
    let image = one_layer_image(&store, "x");
    let lines = lease_lines(&store);
    for expected in [
        format!("blob {blob}"),
        format!("snapshot {absent}"),
        format!("blob {}", image.manifest_digest),
        format!("blob {}", image.config_digest),
        format!("blob {}", image.layers[0].digest),
    ] {
        assert!(lines.contains(&expected), "{expected} not in {lines:?}");
    }
    // Each thing once, however often it is touched.
    store.read_blob(&blob).unwrap();
    assert!(store.has_blob(&blob));
    let count = lease_lines(&store)
        .iter()
        .filter(|l| **l == format!("blob {blob}"))
        .count();
    assert_eq!(count, 1);
}

#[test]
fn hold_registers_content_reached_another_way() {
    let (_dir, store) = temp_store();
    let snapshot = Digest::of_bytes(b"kept by a cache record");
    store
        .hold(&[ContentRef::Snapshot(snapshot.clone())])
        .unwrap();
    assert!(lease_lines(&store).contains(&format!("snapshot {snapshot}")));
}

#[test]
fn other_handles_see_a_live_lease_until_it_is_dropped() {
    let (_dir, store) = temp_store();
    let other = Store::open(store.root()).unwrap();
    let blob = other.write_blob(b"in use").unwrap();
    let live = live_leases(store.root(), store.lease_path(), false).unwrap();
    assert_eq!(live.holders, 1, "only the other handle's lease counts");
    assert!(live.items.contains(&ContentRef::Blob(blob.clone())));

    // Clones share one lease, which goes with the last of them.
    let clone = other.clone();
    let path = other.lease_path().unwrap().to_path_buf();
    drop(other);
    assert!(path.exists());
    drop(clone);
    assert!(!path.exists());
    let live = live_leases(store.root(), store.lease_path(), false).unwrap();
    assert_eq!(live.holders, 0);
    assert!(live.items.is_empty());
}

#[test]
fn a_dead_process_lease_protects_nothing_and_is_removed() {
    let (_dir, store) = temp_store();
    let blob = Digest::of_bytes(b"left by a killed build");
    // What `kill -9` leaves: a lease file nobody holds locked.
    let stale = store.root().join(LEASES_DIR).join("4194305-dead");
    fs::write(&stale, format!("blob {blob}\n")).unwrap();

    let live = live_leases(store.root(), store.lease_path(), false).unwrap();
    assert!(!live.items.contains(&ContentRef::Blob(blob.clone())));
    assert!(
        stale.exists(),
        "only a collector removes leases while reading"
    );
    live_leases(store.root(), store.lease_path(), true).unwrap();
    assert!(!stale.exists());

    fs::write(&stale, "").unwrap();
    Store::open(store.root()).unwrap();
    assert!(!stale.exists(), "opening a store removes stale leases too");
}

#[test]
fn registering_waits_while_a_collection_runs() {
    let (_dir, store) = temp_store();
    let builder = Store::open(store.root()).unwrap();
    let guard = lock_for_collection(store.root(), store.lease_handle()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let thread = {
        let done = done.clone();
        std::thread::spawn(move || {
            builder
                .hold(&[ContentRef::Blob(Digest::of_bytes(b"wanted"))])
                .unwrap();
            done.store(true, Ordering::SeqCst);
            builder
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !done.load(Ordering::SeqCst),
        "registered during a collection"
    );
    drop(guard);
    let builder = thread.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    let wanted = format!("blob {}", Digest::of_bytes(b"wanted"));
    assert!(lease_lines(&builder).contains(&wanted));
}

#[test]
fn lease_lines_round_trip() {
    let d = Digest::of_bytes(b"x");
    for item in [ContentRef::Blob(d.clone()), ContentRef::Snapshot(d)] {
        assert_eq!(ContentRef::parse_line(&item.to_line()), Some(item));
    }
    assert_eq!(ContentRef::parse_line("blob nonsense"), None);
    assert_eq!(ContentRef::parse_line("other sha256:00"), None);
}

/// A lease whose file cannot be written to, as on a full disk.
fn lease_that_cannot_grow(store: &Store) -> Lease {
    let path = store.root().join(LEASES_DIR).join("full-disk");
    fs::write(&path, "").unwrap();
    let file = File::open(&path).unwrap();
    lock(&file, FlockOperation::LockExclusive).unwrap();
    let (gc_lock, gc_lock_path) = open_gc_lock(store.root()).unwrap();
    Lease {
        path,
        file,
        gc_lock,
        gc_lock_path,
        state: Mutex::new(LeaseState::default()),
    }
}

#[test]
fn a_lease_that_cannot_grow_pins_the_store_until_its_process_ends() {
    let (_dir, store) = temp_store();
    let lease = lease_that_cannot_grow(&store);
    lease
        .record(&ContentRef::Blob(Digest::of_bytes(b"used on a full disk")))
        .expect("a read must not fail because the lease cannot grow");
    assert!(lease.state.lock().unwrap().pinned);

    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let (done, store) = (done.clone(), store.clone());
        std::thread::spawn(move || {
            let _guard = lock_for_collection(store.root(), store.lease_handle()).unwrap();
            done.store(true, Ordering::SeqCst);
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !done.load(Ordering::SeqCst),
        "a collection ran while the store was pinned"
    );
    drop(lease);
    collector.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
}

#[test]
fn a_process_collecting_itself_lets_go_of_its_pin() {
    let (_dir, store) = temp_store();
    let pinned = Store::with_lease(store.root().to_path_buf(), LeaseHandle::new(lease_that_cannot_grow(&store)));
    pinned
        .hold(&[ContentRef::Blob(Digest::of_bytes(b"x"))])
        .unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(pinned.prune(&Default::default()).is_ok()));
    assert_eq!(
        receiver.recv_timeout(Duration::from_secs(10)),
        Ok(true),
        "prune deadlocked on its own pin"
    );
}
