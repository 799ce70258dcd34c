//! What the store commands share: parsing their arguments and opening the store.

use anyhow::{anyhow, Context as _};
use clap::Parser;
use rbuild_store::indexes::image_platform;
use rbuild_store::{Platform, Store, StoredImage};

use crate::cli::failure::Failure;

/// Parses a subcommand's arguments; `None` when only help was asked for
/// (clap has printed it).
pub fn parse_args<T: Parser>(args: Vec<String>) -> Result<Option<T>, Failure> {
    match T::try_parse_from(args) {
        Ok(parsed) => Ok(Some(parsed)),
        Err(error) => Failure::from_clap(error).map_or(Ok(None), Err),
    }
}

/// The store at `$RBUILD_ROOT` (or the default root). Opening it takes this
/// process's lease, so nothing it looks at is pruned under it.
pub fn open_store() -> Result<OpenStore, Failure> {
    let root = Store::default_root();
    Store::open(&root)
        .map(OpenStore)
        .with_context(|| format!("opening rbuild's store at {}", root.display()))
        .map_err(Failure::Build)
}

/// The image `name` names (a tag, an id or its prefix, `NAME@DIGEST`), or
/// docker's `No such image: NAME`.
pub fn find_image(store: &Store, name: &str) -> anyhow::Result<StoredImage> {
    store.lookup(name)?.ok_or_else(|| anyhow!("No such image: {name}"))
}

/// [`find_image`] for `--platform`: a multi-platform tag gives its image for
/// `platform`, and an image for another platform is an error. Without it, as
/// [`find_image`] (the host's image of a multi-platform tag).
pub fn find_image_for(store: &Store, name: &str, platform: Option<&Platform>) -> anyhow::Result<StoredImage> {
    let Some(platform) = platform else { return find_image(store, name) };
    let image = store.lookup_for(name, platform)?.ok_or_else(|| anyhow!("No such image: {name}"))?;
    let actual = image_platform(&image);
    if !platform.matches(&actual) {
        return Err(anyhow!("image {name} has no image for platform {platform} (it is for {actual})"));
    }
    Ok(image)
}

/// An open store whose temp area (`tmp/<pid>`) goes when the command ends,
/// so a command leaves nothing behind for the next one to clean up.
pub struct OpenStore(Store);

impl std::ops::Deref for OpenStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.0
    }
}

impl Drop for OpenStore {
    fn drop(&mut self) {
        let _ = self.0.remove_own_temp();
    }
}
