//! The images in a store as `docker images` and `docker rmi` see them: listed
//! with their tags, times and sizes, and removed by tag or by id.

use std::collections::{BTreeSet, HashMap};

use crate::content::lease::ContentRef;
use crate::digest::Digest;
use crate::error::{Result, StoreError};
use crate::maintenance::gc::PruneReport;
use crate::maintenance::records::layer_content;
use crate::metadata::image::StoredImage;
use crate::reference::Reference;
use crate::store::Store;

/// One image of [`Store::list_images`].
#[derive(Clone, Debug)]
pub struct ImageSummary {
    pub image: StoredImage,
    /// Its tags, sorted; empty for an untagged image.
    pub tags: Vec<Reference>,
    /// The sum of its layers' sizes (see [`Store::layer_size`]).
    pub size: u64,
}

/// The images of a store, and those that cannot be read.
#[derive(Clone, Debug, Default)]
pub struct ImageList {
    pub images: Vec<ImageSummary>,
    /// `tag or id: why` for each image whose blobs are missing or corrupt.
    pub broken: Vec<String>,
}

/// One thing [`Store::remove_image`] did, as `docker rmi` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    Untagged(Reference),
    Deleted(Digest),
}

impl Store {
    /// Every image with its tags and size.
    pub fn list_images(&self) -> Result<ImageList> {
        let mut list = ImageList::default();
        let mut sizes: HashMap<Digest, u64> = HashMap::new();
        for mut group in self.image_groups()? {
            let name = || match group.tags.first() {
                Some(tag) => tag.familiar(),
                None => group.id.to_string(),
            };
            if let Some(reason) = &group.broken {
                list.broken.push(format!("{}: {reason}", name()));
                continue;
            }
            let manifest = group
                .recorded
                .clone()
                .or_else(|| group.manifests.first().cloned())
                .expect("an image group has a manifest");
            let image = match self.image(&manifest) {
                Ok(image) => image,
                Err(e) => {
                    list.broken.push(format!("{}: {e}", name()));
                    continue;
                }
            };
            let mut size = 0;
            for layer in &image.layers {
                size += match sizes.get(&layer.diff_id) {
                    Some(size) => *size,
                    None => {
                        let s = self.layer_size(layer)?;
                        sizes.insert(layer.diff_id.clone(), s);
                        s
                    }
                };
            }
            group.tags.sort_by_key(Reference::familiar);
            list.images.push(ImageSummary {
                image,
                tags: group.tags,
                size,
            });
        }
        Ok(list)
    }

    /// The tags of the image with id `id` (whichever of its manifests they
    /// point at), sorted as [`Store::list_images`] sorts them.
    pub fn image_tags(&self, id: &Digest) -> Result<Vec<Reference>> {
        let mut tags = self
            .image_groups()?
            .into_iter()
            .find(|g| &g.id == id)
            .map(|g| g.tags)
            .unwrap_or_default();
        tags.sort_by_key(Reference::familiar);
        Ok(tags)
    }

    /// An image's size as [`Store::list_images`] gives it: its layers' sizes.
    pub fn image_size(&self, image: &StoredImage) -> Result<u64> {
        image.layers.iter().map(|layer| self.layer_size(layer)).sum()
    }

    /// Removes an image the way `docker rmi` does. By tag: the tag goes, and
    /// the image too when that was its last tag. By id: the image and its
    /// tag go, but an image with several tags only with `force`. The content
    /// nothing else uses is deleted right away (a running build's is kept).
    pub fn remove_image(
        &self,
        name_or_id: &str,
        force: bool,
    ) -> Result<(Vec<Removal>, PruneReport)> {
        let no_such = || StoreError::NoSuchImage {
            name: name_or_id.to_string(),
        };
        let image = self.lookup(name_or_id)?.ok_or_else(no_such)?;
        let group = self
            .image_groups()?
            .into_iter()
            .find(|g| g.id == image.config_digest)
            .ok_or_else(no_such)?;
        let mut removals = Vec::new();
        let by_tag = Reference::parse(name_or_id)
            .ok()
            .filter(|r| r.digest().is_none())
            .filter(|r| group.tags.contains(r));
        let mut tags = group.tags.clone();
        tags.sort_by_key(Reference::familiar);
        match by_tag {
            Some(tag) => {
                self.untag(&tag)?;
                removals.push(Removal::Untagged(tag.clone()));
                if tags.len() > 1 {
                    return Ok((removals, PruneReport::default()));
                }
            }
            None => {
                if tags.len() > 1 && !force {
                    return Err(StoreError::ImageConflict {
                        id: image.config_digest.short().to_string(),
                        reason: "image is referenced in multiple repositories".to_string(),
                    });
                }
                for tag in tags {
                    self.untag(&tag)?;
                    removals.push(Removal::Untagged(tag));
                }
            }
        }
        let mut content: BTreeSet<ContentRef> = BTreeSet::new();
        for manifest in &group.manifests {
            content.insert(ContentRef::Blob(manifest.clone()));
            if let Ok(image) = self.without_lease().image(manifest) {
                content.insert(ContentRef::Blob(image.config_digest.clone()));
                content.extend(layer_content(&image.layers));
            }
        }
        self.forget_image(&group.id, &group.manifests)?;
        removals.push(Removal::Deleted(group.id.clone()));
        let report = self.collect(&content)?;
        Ok((removals, report))
    }
}

#[cfg(test)]
#[path = "listing_tests.rs"]
mod tests;
