//! Which stored image a foreign digest stands for.
//!
//! A pulled image is stored with a manifest rbuild writes over the original
//! config, so its manifest digest in the store differs from the one the
//! registry serves. `pins/` remembers the registry's digest: `pins/<hex>` for
//! a manifest digest, `pins/<hex>@<os-arch[-variant]>` for an index (or
//! manifest list) digest, whose meaning depends on the platform chosen from
//! it. Each file holds the stored manifest's digest. With them, `name@sha256:…`
//! finds a pulled image without asking the registry, and a `--pull` that finds
//! the tag unchanged downloads nothing.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::digest::Digest;
use crate::error::{IoContext, Result, StoreError};
use crate::fs::{list_dir, write_atomically};
use crate::metadata::image::{Images, StoredImage};
use crate::platform::{file_key, Platform};

/// The pins of one store, under `dir` (`pins/`), and the images they name.
#[derive(Clone, Debug)]
pub(crate) struct Pins {
    dir: PathBuf,
    tmp: PathBuf,
    images: Images,
}

impl Pins {
    /// The pins under `dir`, staged in `tmp`, naming images of `images`.
    pub(crate) fn new(dir: PathBuf, tmp: PathBuf, images: Images) -> Pins {
        Pins { dir, tmp, images }
    }

    fn pin_path(&self, source: &Digest, platform: Option<&Platform>) -> PathBuf {
        let name = match platform {
            None => source.hex().to_string(),
            Some(p) => format!("{}@{}", source.hex(), file_key(p)),
        };
        self.dir.join(name)
    }

    /// Remembers that the foreign manifest `source` (or, with `platform`, the
    /// index `source` resolved for that platform) is stored as `manifest`.
    pub(crate) fn pin_digest(&self, source: &Digest, platform: Option<&Platform>, manifest: &Digest) -> Result<()> {
        let path = self.pin_path(source, platform);
        fs::create_dir_all(&self.dir).at("create directory", &self.dir)?;
        write_atomically(&self.tmp, &path, manifest.to_string().as_bytes())
    }

    /// The stored image the foreign digest `source` was pinned to, for
    /// `platform` if it is an index; `None` when nothing was pinned or the
    /// image is no longer complete in the store.
    pub(crate) fn pinned_image(&self, source: &Digest, platform: &Platform) -> Result<Option<StoredImage>> {
        for path in [self.pin_path(source, None), self.pin_path(source, Some(platform))] {
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("read", &path, e)),
            };
            let manifest: Digest = text.trim().parse()?;
            if let Some(image) = self.images.complete_image(&manifest)? {
                return Ok(Some(image));
            }
        }
        Ok(None)
    }

    /// The foreign digests pinned to the stored manifest `manifest` (a
    /// registry's manifest or index digests for a pulled image), sorted.
    pub(crate) fn pinned_digests(&self, manifest: &Digest) -> Result<Vec<Digest>> {
        let mut digests = Vec::new();
        for (path, target) in self.pins()? {
            if target.as_ref() != Some(manifest) {
                continue;
            }
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let hex = name.split('@').next().unwrap_or_default();
            if let Ok(source) = Digest::from_hex(hex) {
                if !digests.contains(&source) {
                    digests.push(source);
                }
            }
        }
        digests.sort();
        Ok(digests)
    }

    /// Removes the pins whose stored manifest is gone (its image was removed
    /// or pruned), and files in `pins/` that are not pins; returns how many.
    pub(crate) fn remove_stale_pins(&self) -> Result<usize> {
        let mut removed = 0;
        for (path, target) in self.pins()? {
            if target.is_some_and(|m| self.images.has_manifest(&m)) {
                continue;
            }
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(StoreError::io("remove", &path, e)),
                _ => removed += 1,
            }
        }
        Ok(removed)
    }

    /// Every file in `pins/` with the stored manifest it names (`None` for
    /// one that is not a pin).
    fn pins(&self) -> Result<Vec<(PathBuf, Option<Digest>)>> {
        let paths = list_dir(&self.dir)?;
        Ok(paths
            .into_iter()
            .map(|path| {
                let target = fs::read_to_string(&path).ok().and_then(|t| t.trim().parse::<Digest>().ok());
                (path, target)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::digest::Digest;
    use crate::platform::Platform;
    use crate::test_util::{one_layer_image, temp_store};

    #[test]
    fn pins_find_images_by_foreign_digest() {
        let (_dir, store) = temp_store();
        let image = one_layer_image(&store, "pinned");
        let amd64 = Platform::parse("linux/amd64").unwrap();
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let manifest = Digest::of_bytes(b"registry manifest");
        let index = Digest::of_bytes(b"registry index");
        assert!(store.pinned_image(&manifest, &amd64).unwrap().is_none());

        store.pin_digest(&manifest, None, &image.manifest_digest).unwrap();
        store.pin_digest(&index, Some(&arm64), &image.manifest_digest).unwrap();
        assert_eq!(store.pinned_image(&manifest, &amd64).unwrap().unwrap(), image);
        assert_eq!(store.pinned_image(&index, &arm64).unwrap().unwrap(), image);
        assert!(store.pinned_image(&index, &amd64).unwrap().is_none(), "an index pin is per platform");
        let mut both = vec![manifest.clone(), index.clone()];
        both.sort();
        assert_eq!(store.pinned_digests(&image.manifest_digest).unwrap(), both);
        assert!(store.pinned_digests(&index).unwrap().is_empty());

        // A pin to an image whose layer is gone does not count.
        std::fs::remove_file(store.blob_path(&image.layers[0].digest)).unwrap();
        assert!(store.pinned_image(&manifest, &amd64).unwrap().is_none());
    }
}
