//! Base images for FROM and COPY --from, looked up in the local store.

use rbuild_frontend::graph::ImageMeta;
use rbuild_frontend::lower::ImageResolver;
use rbuild_store::Store;

use crate::image_meta::meta_from_config;

/// Resolves image references against images already in the store (built,
/// or later pulled or loaded).
pub struct StoreResolver<'a> {
    pub store: &'a Store,
}

impl ImageResolver for StoreResolver<'_> {
    fn resolve(&self, reference: &str) -> Result<ImageMeta, String> {
        match self.store.lookup(reference) {
            Ok(Some(image)) => Ok(meta_from_config(&image.config)),
            Ok(None) => Err(format!(
                "image {reference:?} was not found in rbuild's store ({}); build or load it first (pulling from registries is not supported yet)",
                self.store.root().display()
            )),
            Err(e) => Err(format!("looking up image {reference:?}: {e}")),
        }
    }
}
