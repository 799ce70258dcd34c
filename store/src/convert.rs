//! Re-compressing layers, for exports that need another compression than the
//! one a layer was stored with (zstd for an OCI export, gzip for Docker).
//!
//! A conversion streams the stored blob through a decompressor, checks the
//! uncompressed bytes against the layer's diff_id, and compresses them into a
//! new blob. Its result is remembered under `conversions/<codec>/<blob hex>`, so
//! exporting the same image again costs nothing; `<codec>` names the level too
//! when it is not the default (`gzip-9`), so another level compresses again.
//!
//! A layer already stored in the target compression is taken as it is, whatever
//! level it was made at: recompressing it would only change its digest, and a
//! pulled base layer would then be uploaded instead of found at the registry.

use std::fs;
use std::io;
use std::path::PathBuf;

use crate::compress::{decoder, BackgroundEncoder, Codec, Compression};
use crate::digest::HashingReader;
use crate::error::{IoContext, Result, StoreError};
use crate::metadata::image::StoredImage;
use crate::content::layer::Layer;
use crate::store::Store;

impl Store {
    fn conversion_record(&self, layer: &Layer, target: Codec) -> PathBuf {
        self.root()
            .join("conversions")
            .join(target.key())
            .join(layer.digest.hex())
    }

    /// `layer` compressed with `target`, converting (once) if needed.
    pub fn convert_layer(&self, layer: &Layer, target: impl Into<Codec>) -> Result<Layer> {
        let target = target.into();
        if layer.compression() == Some(target.compression) {
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

    fn recompress(&self, layer: &Layer, target: Codec) -> Result<Layer> {
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
            media_type: target.compression.layer_media_type().to_string(),
        })
    }

    /// The image with every layer compressed as `target` says. The config (and
    /// so the image id) stays the same; the manifest is new if any layer changed.
    pub fn convert_image(&self, image: &StoredImage, target: impl Into<Codec>) -> Result<StoredImage> {
        let target = target.into();
        if image.layers.iter().all(|l| l.compression() == Some(target.compression)) {
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

#[cfg(test)]
mod tests {
    use crate::compress::{Codec, Compression};
    use crate::test_util::temp_store;
    use crate::{ImageConfig, LayerOptions, Store, StoredImage};

    fn image(store: &Store, compression: Compression, text: &str) -> StoredImage {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("f"), text).unwrap();
        let options = LayerOptions { compression, ..LayerOptions::default() };
        let layer = store.write_layer(src.path(), &options).unwrap();
        store.put_image(&ImageConfig::new("linux", "amd64"), &[layer]).unwrap()
    }

    #[test]
    fn each_level_is_a_conversion_of_its_own() {
        let (_dir, store) = temp_store();
        let text: String = (0..20_000).map(|i| format!("line {i} of a layer worth compressing\n")).collect();
        let image = image(&store, Compression::None, &text);
        let plain = &image.layers[0];
        assert_eq!(plain.compression(), Some(Compression::None));
        let default = store.convert_layer(plain, Compression::Gzip).unwrap();
        let best = store.convert_layer(plain, Codec::new(Compression::Gzip, Some(9)).unwrap()).unwrap();
        assert_ne!(default.digest, best.digest, "level 9 makes other bytes than level 1");
        assert_eq!(best.diff_id, plain.diff_id);
        assert!(store.root().join("conversions/gzip").join(plain.digest.hex()).is_file());
        assert!(store.root().join("conversions/gzip-9").join(plain.digest.hex()).is_file());
        // Asked again, each level finds its own conversion; the default level by number
        // is the default.
        assert_eq!(store.convert_layer(plain, Codec::new(Compression::Gzip, Some(9)).unwrap()).unwrap(), best);
        assert_eq!(store.convert_layer(plain, Codec::new(Compression::Gzip, Some(1)).unwrap()).unwrap(), default);
        // An image's manifest follows its layers.
        let at_9 = store.convert_image(&image, Codec::new(Compression::Gzip, Some(9)).unwrap()).unwrap();
        assert_eq!(at_9.layers, vec![best.clone()]);
        assert_ne!(at_9.manifest_digest, store.convert_image(&image, Compression::Gzip).unwrap().manifest_digest);
    }

    #[test]
    fn a_layer_stored_in_the_codec_is_kept_at_any_level() {
        let (_dir, store) = temp_store();
        let image = image(&store, Compression::Gzip, "stored as gzip");
        let layer = image.layers[0].clone();
        let kept = store.convert_image(&image, Codec::new(Compression::Gzip, Some(9)).unwrap()).unwrap();
        assert_eq!(kept.layers, vec![layer]);
        assert_eq!(kept.manifest_digest, image.manifest_digest);
    }
}
