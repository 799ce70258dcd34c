//! Listing and removing images, `docker images` and `docker rmi` style.

use super::*;
use crate::gc::tests::{image, layer};
use crate::test_util::temp_store;

fn tag(store: &Store, name: &str, image: &StoredImage) {
    store
        .tag(&Reference::parse(name).unwrap(), &image.manifest_digest)
        .unwrap();
}

fn names(tags: &[Reference]) -> Vec<String> {
    tags.iter().map(Reference::familiar).collect()
}

#[test]
fn lists_images_with_sorted_tags_untagged_ones_and_sizes() {
    let (_dir, store) = temp_store();
    let base = layer(&store, "base", &[1u8; 700]);
    let tagged = image(
        &store,
        "tagged",
        &[base.clone(), layer(&store, "more", b"12345")],
    );
    let untagged = image(&store, "untagged", &[base]);
    tag(&store, "zed:1", &tagged);
    tag(&store, "app:2", &tagged);

    let list = store.list_images().unwrap();
    assert!(list.broken.is_empty());
    assert_eq!(list.images.len(), 2);
    let find = |id: &Digest| list.images.iter().find(|i| i.image.id() == id).unwrap();
    let t = find(tagged.id());
    assert_eq!(names(&t.tags), vec!["app:2", "zed:1"]);
    assert_eq!(t.size, 705);
    assert_eq!(t.image, tagged);
    let u = find(untagged.id());
    assert!(u.tags.is_empty());
    assert_eq!(u.size, 700);

    // One image at a time, as `rbuild inspect` asks.
    assert_eq!(names(&store.image_tags(tagged.id()).unwrap()), vec!["app:2", "zed:1"]);
    assert!(store.image_tags(untagged.id()).unwrap().is_empty());
    assert_eq!(store.image_size(&tagged).unwrap(), 705);
    assert_eq!(store.image_size(&untagged).unwrap(), 700);
}

#[test]
fn an_image_whose_blobs_are_gone_is_reported_not_fatal() {
    let (_dir, store) = temp_store();
    let good = image(&store, "good", &[layer(&store, "f", b"x")]);
    let bad = image(&store, "bad", &[layer(&store, "f", b"y")]);
    tag(&store, "bad:1", &bad);
    std::fs::remove_file(store.blob_path(&bad.config_digest)).unwrap();
    let list = store.list_images().unwrap();
    assert_eq!(list.images.len(), 1);
    assert_eq!(list.images[0].image, good);
    assert_eq!(list.broken.len(), 1);
    assert!(list.broken[0].starts_with("bad:1: "), "{:?}", list.broken);
}

#[test]
fn removing_one_of_two_tags_only_untags() {
    let (_dir, store) = temp_store();
    let one = image(&store, "one", &[layer(&store, "f", b"1")]);
    tag(&store, "app:1", &one);
    tag(&store, "app:2", &one);
    let (removals, report) = store.remove_image("app:1", false).unwrap();
    assert_eq!(
        removals,
        vec![Removal::Untagged(Reference::parse("app:1").unwrap())]
    );
    assert_eq!(report, PruneReport::default());
    assert!(store.lookup("app:2").unwrap().is_some());
    assert!(store.has_blob(&one.config_digest));

    // The last tag takes the image, and the content nothing else uses, along.
    let (removals, report) = store.remove_image("app:2", false).unwrap();
    assert_eq!(
        removals,
        vec![
            Removal::Untagged(Reference::parse("app:2").unwrap()),
            Removal::Deleted(one.config_digest.clone()),
        ]
    );
    assert_eq!(report.blobs, 3);
    assert!(!store.blob_path(&one.config_digest).exists());
    assert!(store.list_images().unwrap().images.is_empty());
}

#[test]
fn removing_by_id_needs_force_when_several_tags_name_the_image() {
    let (_dir, store) = temp_store();
    let shared = layer(&store, "shared", b"shared");
    let one = image(&store, "one", std::slice::from_ref(&shared));
    let other = image(&store, "other", std::slice::from_ref(&shared));
    tag(&store, "app:1", &one);
    tag(&store, "web:1", &one);
    let id = one.config_digest.hex()[..12].to_string();
    let err = store.remove_image(&id, false).unwrap_err();
    assert!(
        err.to_string()
            == format!("conflict: unable to delete {id} (must be forced) - image is referenced in multiple repositories"),
        "{err}"
    );
    let (removals, _) = store.remove_image(&id, true).unwrap();
    assert_eq!(
        removals,
        vec![
            Removal::Untagged(Reference::parse("app:1").unwrap()),
            Removal::Untagged(Reference::parse("web:1").unwrap()),
            Removal::Deleted(one.config_digest.clone()),
        ]
    );
    assert!(store.tags().unwrap().is_empty());
    assert!(
        store.blob_path(&shared.digest).exists(),
        "the other image uses it"
    );
    assert_eq!(
        store.lookup(other.config_digest.hex()).unwrap().unwrap(),
        other
    );

    // An untagged image goes by id without force.
    let (removals, _) = store
        .remove_image(&other.config_digest.to_string(), false)
        .unwrap();
    assert_eq!(
        removals,
        vec![Removal::Deleted(other.config_digest.clone())]
    );
    assert!(!store.blob_path(&shared.digest).exists());
}

#[test]
fn removing_what_is_not_there_names_it() {
    let (_dir, store) = temp_store();
    let err = store.remove_image("nothing:here", false).unwrap_err();
    assert_eq!(err.to_string(), "No such image: nothing:here");
}
