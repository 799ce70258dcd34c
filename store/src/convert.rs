//! Re-compressing layers, for exports that need another compression than the
//! one a layer was stored with (zstd for an OCI export, gzip for Docker).
//!
//! A conversion streams the stored blob through a decompressor, checks the
//! uncompressed bytes against the layer's diff_id, and compresses them into a
//! new blob. Its result is remembered under `conversions/<codec>/<blob hex>`, so
//! exporting the same image again costs nothing.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::compress::{decoder, BackgroundEncoder, Compression};
use crate::digest::HashingReader;
use crate::error::{IoContext, Result, StoreError};
use crate::metadata::image::StoredImage;
use crate::content::layer::Layer;
use crate::store::Store;

impl Store {
    fn conversion_record(&self, layer: &Layer, target: Compression) -> PathBuf {
        self.root()
            .join("conversions")
            .join(target.name())
            .join(layer.digest.hex())
    }

    /// `layer` compressed with `target`, converting (once) if needed.
    pub fn convert_layer(&self, layer: &Layer, target: Compression) -> Result<Layer> {
        if layer.compression() == Some(target) {
            return Ok(layer.clone());
        }
        let record = self.conversion_record(layer, target);
        if let Ok(bytes) = fs::read(&record) {
            if let Ok(converted) = serde_json::from_slice::<Layer>(&bytes) {
                if converted.diff_id == layer.diff_id && self.has_blob(&converted.digest) {
                    return Ok(converted);
                }
            }
        }
        let converted = self.recompress(layer, target)?;
        if let Some(dir) = record.parent() {
            fs::create_dir_all(dir).at("create directory", dir)?;
        }
        let bytes = serde_json::to_vec(&converted).expect("a layer always serialises");
        crate::fs::write_atomically(&self.tmp_dir(), &record, &bytes)?;
        Ok(converted)
    }

    fn recompress(&self, layer: &Layer, target: Compression) -> Result<Layer> {
        let source = layer.compression().ok_or_else(|| StoreError::Layer {
            path: self.blob_path(&layer.digest),
            reason: format!("unknown layer media type {:?}", layer.media_type),
        })?;
        let path = self.blob_path(&layer.digest);
        let io_err = |e: io::Error| StoreError::io("recompress layer", &path, e);
        let (file, _) = self.open_blob(&layer.digest)?;
        let mut encoder = BackgroundEncoder::spawn(target, self.blob_writer()?).map_err(io_err)?;
        // The stored bytes are hashed too: a conversion must not launder a
        // blob that is corrupt on disk into a fresh, valid-looking one. A
        // plain tar is its own uncompressed stream: one hash serves both.
        let (blob_digest, diff_id) = if source == Compression::None {
            let mut plain = HashingReader::new(file);
            io::copy(&mut plain, &mut encoder).map_err(io_err)?;
            let (digest, _) = plain.finish();
            (digest.clone(), digest)
        } else {
            let mut compressed = HashingReader::new(file);
            let mut uncompressed =
                HashingReader::new(decoder(source, &mut compressed).map_err(io_err)?);
            io::copy(&mut uncompressed, &mut encoder).map_err(io_err)?;
            let (diff_id, _) = uncompressed.finish();
            // Drain what the decoder left unread (trailing padding), so the
            // blob hash covers the whole file.
            io::copy(&mut compressed, &mut io::sink()).map_err(io_err)?;
            (compressed.finish().0, diff_id)
        };
        if blob_digest != layer.digest {
            return Err(StoreError::DigestMismatch {
                what: format!("layer blob {}", path.display()),
                expected: layer.digest.clone(),
                actual: blob_digest,
            });
        }
        if diff_id != layer.diff_id {
            return Err(StoreError::DigestMismatch {
                what: format!("uncompressed layer {}", path.display()),
                expected: layer.diff_id.clone(),
                actual: diff_id,
            });
        }
        let (digest, size) = encoder.finish().map_err(io_err)?.commit()?;
        Ok(Layer {
            digest,
            diff_id,
            size,
            media_type: target.layer_media_type().to_string(),
        })
    }

    /// The image with every layer compressed as `target` says. The config (and
    /// so the image id) stays the same; the manifest is new if any layer changed.
    pub fn convert_image(&self, image: &StoredImage, target: Compression) -> Result<StoredImage> {
        if image.layers.iter().all(|l| l.compression() == Some(target)) {
            return Ok(image.clone());
        }
        // `convert_layer` returns a layer already compressed as `target` as it is.
        let layers = image
            .layers
            .iter()
            .map(|l| self.convert_layer(l, target))
            .collect::<Result<Vec<_>>>()?;
        let manifest_digest = self.images().write_manifest(&image.config_digest, &layers)?;
        Ok(StoredImage {
            manifest_digest,
            layers,
            ..image.clone()
        })
    }
}
