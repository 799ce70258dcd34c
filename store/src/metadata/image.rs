//! Images in the store: a config blob (whose digest is the image id) and an
//! OCI image manifest blob that lists the config and the layer blobs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType, SCHEMA_VERSION};
use serde::Serialize;

use crate::config::ImageConfig;
use crate::content::blobs::Blobs;
use crate::content::layer::Layer;
use crate::digest::Digest;
use crate::error::{IoContext, Result, StoreError};
use crate::fs::write_atomically;

pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// An image whose blobs are all in the store.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredImage {
    pub manifest_digest: Digest,
    /// The config blob's digest: the image id.
    pub config_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
}

impl StoredImage {
    /// The image id, as Docker reports it (the config digest).
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }
}

/// The images of one store: their config and manifest blobs in `blobs`,
/// and under `dir` (`images/`) the manifest recorded for each image id.
#[derive(Clone, Debug)]
pub(crate) struct Images {
    dir: PathBuf,
    tmp: PathBuf,
    blobs: Blobs,
}

impl Images {
    /// The images recorded under `dir`, whose records are staged in `tmp`.
    pub(crate) fn new(dir: PathBuf, tmp: PathBuf, blobs: Blobs) -> Images {
        Images { dir, tmp, blobs }
    }

    /// The file that records the manifest of the image id `config`.
    pub(crate) fn record_path(&self, config: &Digest) -> PathBuf {
        self.dir.join(config.hex())
    }

    /// Stores `config` and an OCI manifest for it and `layers` (whose blobs
    /// must already be in the store). The config's `rootfs` is set from the
    /// layers, so it always matches them.
    pub(crate) fn put_image(&self, config: &ImageConfig, layers: &[Layer]) -> Result<StoredImage> {
        let image = self.put_manifest(config, layers, &|l| self.blobs.has_blob(&l.digest))?;
        self.record_image(&image)?;
        Ok(image)
    }

    /// Like [`Images::put_image`], for an image some of whose layers are known
    /// only by descriptor: `available` says whether a layer is in the store or
    /// can be fetched from where it is recorded to be.
    pub(crate) fn put_image_by_descriptor(
        &self,
        config: &ImageConfig,
        layers: &[Layer],
        available: &dyn Fn(&Layer) -> bool,
    ) -> Result<StoredImage> {
        let image = self.put_manifest(config, layers, available)?;
        self.record_image(&image)?;
        Ok(image)
    }

    /// Records an image whose config blob came from elsewhere (a registry, an
    /// archive) and is kept byte for byte, so the image id stays the one its
    /// source gave it. The config's diff_ids must match `layers` one to one;
    /// the layers keep their media types.
    pub(crate) fn put_image_with_config_blob(&self, config_digest: &Digest, layers: &[Layer]) -> Result<StoredImage> {
        let bytes = self.blobs.read_blob(config_digest)?;
        let config = ImageConfig::from_json(&bytes).map_err(|source| StoreError::Json {
            what: format!("image config {config_digest}"),
            source,
        })?;
        if config.rootfs.diff_ids.len() != layers.len() {
            return Err(StoreError::InvalidImage {
                manifest: config_digest.clone(),
                reason: format!(
                    "the config lists {} diff_ids but the manifest has {} layers",
                    config.rootfs.diff_ids.len(),
                    layers.len()
                ),
            });
        }
        let layers: Vec<Layer> = layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(l, diff_id)| Layer { diff_id: diff_id.clone(), ..l.clone() })
            .collect();
        let manifest_digest = self.write_manifest(config_digest, &layers)?;
        let image = StoredImage {
            manifest_digest,
            config_digest: config_digest.clone(),
            config,
            layers,
        };
        self.record_image(&image)?;
        Ok(image)
    }

    /// Writes the config and manifest blobs without recording the image as
    /// one that can be looked up by id.
    fn put_manifest(&self, config: &ImageConfig, layers: &[Layer], available: &dyn Fn(&Layer) -> bool) -> Result<StoredImage> {
        let mut config = config.clone();
        config.rootfs.kind = "layers".to_string();
        config.rootfs.diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
        let config_digest = self.blobs.write_blob(&config.to_json())?;
        let manifest_digest = self.write_manifest_checked(&config_digest, layers, available)?;
        Ok(StoredImage {
            manifest_digest,
            config_digest,
            config,
            layers: layers.to_vec(),
        })
    }

    /// Writes the manifest of the stored config `config_digest` (kept byte for
    /// byte, so the image id cannot change) and `layers`.
    pub(crate) fn write_manifest(
        &self,
        config_digest: &Digest,
        layers: &[Layer],
    ) -> Result<Digest> {
        self.write_manifest_checked(config_digest, layers, &|l| self.blobs.has_blob(&l.digest))
    }

    fn write_manifest_checked(&self, config_digest: &Digest, layers: &[Layer], available: &dyn Fn(&Layer) -> bool) -> Result<Digest> {
        for layer in layers {
            if !available(layer) {
                return Err(StoreError::BlobNotFound {
                    digest: layer.digest.clone(),
                });
            }
        }
        let (_, config_size) = self.blobs.open_blob(config_digest)?;
        let manifest = build_manifest(config_digest, config_size, layers);
        self.blobs.write_blob(&to_json(&manifest))
    }

    /// Loads the image whose manifest has digest `manifest`.
    pub(crate) fn image(&self, manifest: &Digest) -> Result<StoredImage> {
        let invalid = |reason: String| StoreError::InvalidImage {
            manifest: manifest.clone(),
            reason,
        };
        let bytes = self.blobs.read_blob(manifest)?;
        let parsed: ImageManifest =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                what: format!("manifest {manifest}"),
                source,
            })?;
        let config_digest =
            Digest::try_from(parsed.config().digest()).map_err(|e| invalid(e.to_string()))?;
        let config_bytes = self.blobs.read_blob(&config_digest)?;
        let config = ImageConfig::from_json(&config_bytes).map_err(|source| StoreError::Json {
            what: format!("image config {config_digest}"),
            source,
        })?;
        if parsed.layers().len() != config.rootfs.diff_ids.len() {
            return Err(invalid(format!(
                "manifest lists {} layers but the config has {} diff_ids",
                parsed.layers().len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let layers = parsed
            .layers()
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(descriptor, diff_id)| {
                Ok(Layer {
                    digest: Digest::try_from(descriptor.digest())
                        .map_err(|e| invalid(e.to_string()))?,
                    diff_id: diff_id.clone(),
                    size: descriptor.size(),
                    media_type: descriptor.media_type().to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StoredImage {
            manifest_digest: manifest.clone(),
            config_digest,
            config,
            layers,
        })
    }

    /// Remembers the image under its id, for `Store::lookup` by id.
    fn record_image(&self, image: &StoredImage) -> Result<()> {
        let path = self.record_path(&image.config_digest);
        write_atomically(&self.tmp, &path, image.manifest_digest.to_string().as_bytes())
    }

    /// The manifest recorded for the image id `config`, if any.
    pub(crate) fn manifest_for_id(&self, config: &Digest) -> Result<Option<Digest>> {
        let path = self.record_path(config);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().parse()?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", &path, e)),
        }
    }

    /// Whether the manifest blob `manifest` is here (and recorded as used).
    pub(crate) fn has_manifest(&self, manifest: &Digest) -> bool {
        self.blobs.has_blob(manifest)
    }

    /// The image with manifest `manifest` if it and all its blobs are here.
    pub(crate) fn complete_image(&self, manifest: &Digest) -> Result<Option<StoredImage>> {
        if !self.blobs.has_blob(manifest) {
            return Ok(None);
        }
        let image = match self.image(manifest) {
            Ok(image) => image,
            Err(StoreError::BlobNotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(image.layers.iter().all(|l| self.blobs.has_blob(&l.digest)).then_some(image))
    }

    /// Ids (config digests) of recorded images whose hex starts with `prefix`.
    pub(crate) fn ids_with_prefix(&self, prefix: &str) -> Result<Vec<Digest>> {
        let dir: &Path = &self.dir;
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir).at("list", dir)? {
            let entry = entry.at("list", dir)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(prefix) {
                if let Ok(d) = Digest::from_hex(name) {
                    ids.push(d);
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// The OCI manifest of an image with this config and these layers.
pub fn build_manifest(config_digest: &Digest, config_size: u64, layers: &[Layer]) -> ImageManifest {
    let config = Descriptor::new(MediaType::ImageConfig, config_size, config_digest);
    let layers: Vec<Descriptor> = layers
        .iter()
        .map(|l| Descriptor::new(MediaType::from(l.media_type.as_str()), l.size, &l.digest))
        .collect();
    ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .expect("schema version, config and layers are all set")
}

/// Deterministic JSON for OCI documents. oci-spec keeps annotations in a
/// `HashMap`, whose order changes from run to run, so the document goes
/// through `serde_json::Value` with every object's keys sorted.
pub fn to_json<T: Serialize>(document: &T) -> Vec<u8> {
    let value = serde_json::to_value(document).expect("OCI documents always serialise");
    serde_json::to_vec(&sorted(value)).expect("a JSON value always serialises")
}

fn sorted(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
