//! Tags: names pointing at image manifests, kept in `tags.json`.
//!
//! Several rbuild processes may tag images in one store at once. Each update
//! takes an exclusive lock on `tags.lock`, reads `tags.json`, changes it and
//! replaces it with an fsynced temp file by rename, so readers (which take no
//! lock) always see a whole file, and no update is lost.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::content::blobs::Blobs;
use crate::digest::Digest;
use crate::error::{Result, StoreError};
use crate::fs::{with_lock, write_atomically};
use crate::reference::Reference;

const TAGS_FILE: &str = "tags.json";
const LOCK_FILE: &str = "tags.lock";

/// The on-disk form: full reference → manifest digest.
#[derive(Debug, Default, Serialize, Deserialize)]
struct TagsFile {
    tags: BTreeMap<String, Digest>,
}

/// The tags of one store: `tags.json` and its lock in `root`, naming
/// manifests in `blobs`.
#[derive(Clone, Debug)]
pub(crate) struct Tags {
    root: PathBuf,
    tmp: PathBuf,
    blobs: Blobs,
}

impl Tags {
    /// The tags kept in `root`, their file staged in `tmp`.
    pub(crate) fn new(root: PathBuf, tmp: PathBuf, blobs: Blobs) -> Tags {
        Tags { root, tmp, blobs }
    }

    pub(crate) fn tags_path(&self) -> PathBuf {
        self.root.join(TAGS_FILE)
    }

    /// Points `name` (which must carry a tag) at the image manifest `manifest`.
    pub(crate) fn tag(&self, name: &Reference, manifest: &Digest) -> Result<()> {
        let key = tag_key(name, "tag an image")?;
        if !self.blobs.has_blob(manifest) {
            return Err(StoreError::BlobNotFound {
                digest: manifest.clone(),
            });
        }
        self.update_tags(|tags| {
            tags.insert(key, manifest.clone());
        })
    }

    /// Removes the tag `name`; returns whether it existed.
    pub(crate) fn untag(&self, name: &Reference) -> Result<bool> {
        let key = tag_key(name, "remove a tag")?;
        let mut existed = false;
        self.update_tags(|tags| existed = tags.remove(&key).is_some())?;
        Ok(existed)
    }

    /// All tags, by full reference.
    pub(crate) fn tags(&self) -> Result<BTreeMap<String, Digest>> {
        Ok(self.read_tags()?.tags)
    }

    /// The manifest `name`'s tag points at.
    pub(crate) fn resolve_tag(&self, name: &Reference) -> Result<Option<Digest>> {
        let key = tag_key(name, "look up a tag")?;
        Ok(self.read_tags()?.tags.remove(&key))
    }

    fn read_tags(&self) -> Result<TagsFile> {
        let path = self.tags_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                what: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(TagsFile::default()),
            Err(e) => Err(StoreError::io("read", &path, e)),
        }
    }

    pub(crate) fn update_tags(&self, change: impl FnOnce(&mut BTreeMap<String, Digest>)) -> Result<()> {
        with_lock(&self.root.join(LOCK_FILE), || {
            let mut tags = self.read_tags()?;
            change(&mut tags.tags);
            let mut bytes = serde_json::to_vec_pretty(&tags).expect("tags always serialise");
            bytes.push(b'\n');
            write_atomically(&self.tmp, &self.tags_path(), &bytes)
        })
    }
}

/// The key a tag is stored under: the full `domain/path:tag`.
fn tag_key(name: &Reference, purpose: &'static str) -> Result<String> {
    match name.tag() {
        Some(tag) => Ok(format!("{}:{tag}", name.repository())),
        None => Err(StoreError::MissingTag {
            reference: name.full(),
            purpose,
        }),
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::{one_layer_image, temp_store};
    use crate::error::StoreError;
    use crate::reference::Reference;

    #[test]
    fn tag_and_lookup_by_normalised_name() {
        let (_dir, store) = temp_store();
        let image = one_layer_image(&store, "hello");
        store
            .tag(
                &Reference::parse("app:1.0").unwrap(),
                &image.manifest_digest,
            )
            .unwrap();
        for name in ["app:1.0", "docker.io/library/app:1.0", "library/app:1.0"] {
            let found = store
                .lookup(name)
                .unwrap()
                .unwrap_or_else(|| panic!("{name} not found"));
            assert_eq!(found, image);
        }
        assert!(
            store.lookup("app").unwrap().is_none(),
            "app means app:latest"
        );
        assert!(store.lookup("other:1.0").unwrap().is_none());
        let tags = store.tags().unwrap();
        assert_eq!(tags.len(), 1);
        assert_eq!(tags["docker.io/library/app:1.0"], image.manifest_digest);
    }

    #[test]
    fn retagging_moves_the_tag_and_untag_removes_it() {
        let (_dir, store) = temp_store();
        let first = one_layer_image(&store, "one");
        let second = one_layer_image(&store, "two");
        let name = Reference::parse("app").unwrap();
        store.tag(&name, &first.manifest_digest).unwrap();
        store.tag(&name, &second.manifest_digest).unwrap();
        assert_eq!(store.lookup("app:latest").unwrap().unwrap(), second);
        assert!(store.untag(&name).unwrap());
        assert!(!store.untag(&name).unwrap());
        assert!(store.lookup("app").unwrap().is_none());
    }

    #[test]
    fn lookup_by_id_and_unique_prefix() {
        let (_dir, store) = temp_store();
        let image = one_layer_image(&store, "x");
        let id = image.config_digest.to_string();
        let hex = image.config_digest.hex();
        for query in [id.as_str(), hex, &hex[..12], &id[..19]] {
            assert_eq!(
                store.lookup(query).unwrap().as_ref(),
                Some(&image),
                "{query}"
            );
        }
        let by_digest = format!("whatever@{}", image.manifest_digest);
        assert_eq!(store.lookup(&by_digest).unwrap(), Some(image.clone()));
        assert!(store.lookup("sha256:").unwrap().is_none());
        assert!(store.lookup("zzzz").unwrap().is_none());
    }

    #[test]
    fn ambiguous_prefix_is_an_error() {
        let (_dir, store) = temp_store();
        // 17 ids over 16 possible first hex digits: two share one.
        let ids: Vec<_> = (0..17)
            .map(|i| one_layer_image(&store, &i.to_string()).config_digest)
            .collect();
        let count = |c: char| ids.iter().filter(|d| d.hex().starts_with(c)).count();
        let shared = (b'0'..=b'9')
            .chain(b'a'..=b'f')
            .map(char::from)
            .find(|c| count(*c) > 1)
            .unwrap();
        for query in [shared.to_string(), format!("sha256:{shared}")] {
            assert!(
                matches!(
                    store.lookup(&query),
                    Err(StoreError::AmbiguousImageId { matches, .. }) if matches == count(shared)
                ),
                "{query}"
            );
        }
    }

    #[test]
    fn tags_need_a_tag_and_an_existing_manifest() {
        let (_dir, store) = temp_store();
        let image = one_layer_image(&store, "x");
        let pinned = Reference::parse(&format!("app@{}", image.manifest_digest)).unwrap();
        assert!(matches!(
            store.tag(&pinned, &image.manifest_digest),
            Err(StoreError::MissingTag { .. })
        ));
        let missing = crate::Digest::of_bytes(b"no such manifest");
        assert!(matches!(
            store.tag(&Reference::parse("app").unwrap(), &missing),
            Err(StoreError::BlobNotFound { .. })
        ));
    }

    #[test]
    fn concurrent_taggers_lose_no_update() {
        let (_dir, store) = temp_store();
        let image = one_layer_image(&store, "x");
        std::thread::scope(|s| {
            for t in 0..4 {
                let store = &store;
                let manifest = &image.manifest_digest;
                s.spawn(move || {
                    for i in 0..10 {
                        let name = Reference::parse(&format!("app:t{t}-{i}")).unwrap();
                        store.tag(&name, manifest).unwrap();
                    }
                });
            }
        });
        assert_eq!(store.tags().unwrap().len(), 40);
    }
}
