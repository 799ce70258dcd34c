//! Multi-platform images: an OCI image index over stored image manifests, one
//! per platform, is what a tag points at when it names an image for several
//! platforms (a multi-platform build, or pulls of one tag for several
//! platforms). The index is a blob like the manifests it lists; each entry
//! carries the platform of its image's config.

use oci_spec::image::{Arch, Descriptor, ImageIndexBuilder, MediaType, Os, PlatformBuilder, SCHEMA_VERSION};

use crate::content::blobs::Blobs;
use crate::digest::Digest;
use crate::error::{Result, StoreError};
use crate::manifest::{Document, OCI_MANIFEST};
use crate::metadata::image::{to_json, StoredImage};
use crate::platform::Platform;

/// One image of an index: its platform and its manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformImage {
    pub platform: Platform,
    pub manifest: Digest,
}

/// The platform an image's config names (the host's when it names none, as
/// images made by tools that leave it out run there).
pub fn image_platform(image: &StoredImage) -> Platform {
    let config = &image.config;
    if config.os.is_empty() || config.architecture.is_empty() {
        return Platform::host();
    }
    Platform::new(&config.os, &config.architecture, config.variant.as_deref())
}

/// Writes the OCI index of `images` (in that order) into `blobs`.
pub(crate) fn put_index(blobs: &Blobs, images: &[StoredImage]) -> Result<Digest> {
    let mut manifests = Vec::with_capacity(images.len());
    for image in images {
        let size = blobs.read_blob(&image.manifest_digest)?.len() as u64;
        let platform = image_platform(image);
        let mut builder = PlatformBuilder::default()
            .os(Os::from(platform.os.as_str()))
            .architecture(Arch::from(platform.architecture.as_str()));
        if let Some(variant) = &platform.variant {
            builder = builder.variant(variant.clone());
        }
        let mut descriptor = Descriptor::new(MediaType::ImageManifest, size, &image.manifest_digest);
        descriptor.set_platform(Some(builder.build().expect("os and architecture are set")));
        manifests.push(descriptor);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .expect("schema version and manifests are set");
    blobs.write_blob(&to_json(&index))
}

/// The images of the index `digest`; `None` when the blob is an image
/// manifest instead.
pub(crate) fn index_images(blobs: &Blobs, digest: &Digest) -> Result<Option<Vec<PlatformImage>>> {
    let bytes = blobs.read_blob(digest)?;
    let invalid = |reason: String| StoreError::InvalidImage { manifest: digest.clone(), reason };
    match Document::parse(&bytes, None).map_err(invalid)? {
        Document::Manifest(_) => Ok(None),
        Document::Index(entries) => entries
            .iter()
            .filter(|entry| entry.media_type.is_empty() || entry.media_type == OCI_MANIFEST)
            .map(|entry| {
                let platform = entry.platform().ok_or_else(|| invalid(format!("entry {} names no platform", entry.digest)))?;
                Ok(PlatformImage { platform, manifest: entry.digest().map_err(invalid)? })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
    }
}

/// The entry of `images` for `wanted`: an equal platform before one that
/// merely matches (a variant left open).
pub fn select<'a>(images: &'a [PlatformImage], wanted: &Platform) -> Option<&'a PlatformImage> {
    images
        .iter()
        .find(|i| &i.platform == wanted)
        .or_else(|| images.iter().find(|i| wanted.matches(&i.platform)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImageConfig;
    use crate::layer::LayerOptions;
    use crate::reference::Reference;
    use crate::store::Store;
    use crate::test_util::temp_store;

    fn image_for(store: &Store, architecture: &str, content: &str) -> StoredImage {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("file"), content).unwrap();
        let layer = store.write_layer(src.path(), &LayerOptions::default()).unwrap();
        store.put_image(&ImageConfig::new("linux", architecture), &[layer]).unwrap()
    }

    #[test]
    fn a_tag_on_an_index_finds_each_platform_and_keeps_them_through_gc() {
        let (_dir, store) = temp_store();
        let amd64 = image_for(&store, "amd64", "a");
        let arm64 = image_for(&store, "arm64", "b");
        let index = store.put_index(&[amd64.clone(), arm64.clone()]).unwrap();
        let name = Reference::parse("app:1").unwrap();
        store.tag(&name, &index).unwrap();

        let images = store.platform_images(&index).unwrap().unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(images[1].platform, Platform::parse("linux/arm64").unwrap());
        assert_eq!(store.platform_images(&amd64.manifest_digest).unwrap(), None);
        let wanted = Platform::parse("linux/arm64").unwrap();
        assert_eq!(store.lookup_for("app:1", &wanted).unwrap().unwrap(), arm64);
        assert_eq!(store.lookup_for("app:1", &Platform::parse("linux/amd64").unwrap()).unwrap().unwrap(), amd64);

        // Nothing the tag names is collected: the index, both manifests, their layers; an
        // untagged image is.
        let untagged = image_for(&store, "s390x", "d");
        store.prune(&Default::default()).unwrap();
        assert!(!store.has_blob(&untagged.manifest_digest), "the prune removed nothing");
        assert!(store.has_blob(&index));
        for image in [&amd64, &arm64] {
            assert_eq!(store.image(&image.manifest_digest).unwrap(), *image);
        }
        let listed = store.list_images().unwrap();
        assert!(listed.broken.is_empty(), "{:?}", listed.broken);
        assert_eq!(listed.images.len(), 2);
        assert!(listed.images.iter().all(|i| i.tags == [name.clone()]));
    }

    #[test]
    fn tagging_per_platform_adds_other_platforms_and_replaces_the_same_one() {
        let (_dir, store) = temp_store();
        let name = Reference::parse("base:1").unwrap();
        let amd64 = image_for(&store, "amd64", "a");
        store.tag_platform(&name, &amd64).unwrap();
        assert_eq!(store.resolve_tag(&name).unwrap(), Some(amd64.manifest_digest.clone()), "one platform: the manifest itself");

        let arm64 = image_for(&store, "arm64", "b");
        store.tag_platform(&name, &arm64).unwrap();
        let target = store.resolve_tag(&name).unwrap().unwrap();
        let manifests: Vec<Digest> = store.platform_images(&target).unwrap().unwrap().into_iter().map(|i| i.manifest).collect();
        assert_eq!(manifests, [amd64.manifest_digest.clone(), arm64.manifest_digest.clone()]);

        let newer_arm64 = image_for(&store, "arm64", "c");
        store.tag_platform(&name, &newer_arm64).unwrap();
        let target = store.resolve_tag(&name).unwrap().unwrap();
        assert_eq!(store.tag_targets(&target).unwrap(), [amd64.manifest_digest, newer_arm64.manifest_digest]);
    }
}
