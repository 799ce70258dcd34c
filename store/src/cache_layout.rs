//! rbuild's build cache as an OCI image layout directory (`--cache-to
//! type=local,dest=DIR`, `--cache-from type=local,src=DIR`): what a CI
//! system's directory cache carries between runners.
//!
//! ```text
//! DIR/oci-layout            {"imageLayoutVersion":"1.0.0"}
//! DIR/index.json            one manifest: the cache (see `cache_manifest`)
//! DIR/blobs/sha256/<hex>    the manifest, its config and its layers
//! ```
//!
//! Every blob is written to a temp file in `blobs/sha256` and renamed into
//! place, and `index.json` goes last (also by a rename): a reader never sees a
//! half-written blob or an index naming one missing. Once the new index is in
//! place, blobs it no longer names go, so the directory does not grow with
//! every export. Blobs read back are verified against their digest.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::cache_manifest::CacheConfig;
use crate::content::layer::Layer;
use crate::digest::Digest;
use crate::error::{IoContext, Result, StoreError};
use crate::manifest::OCI_MANIFEST;
use crate::store::Store;

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

/// Writes `config` (with its layers, from `store`) as the cache in `dir`.
/// Every layer must be in the store.
pub fn write_cache_layout(store: &Store, dir: &Path, config: &CacheConfig) -> Result<()> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).at("create directory", &blobs)?;
    let config_json = config.to_json();
    let manifest = config.manifest(&config_json);
    let mut kept = Vec::new();
    for (layer, _) in config.layers() {
        let dest = blob_path(dir, &layer.digest);
        if !dest.is_file() {
            write_file(&blobs, &dest, |out| {
                store.copy_blob_to(&layer.digest, out).map(|_| ())
            })?;
        }
        kept.push(layer.digest.hex().to_string());
    }
    for bytes in [&config_json, &manifest] {
        let digest = Digest::of_bytes(bytes);
        write_file(&blobs, &blob_path(dir, &digest), |out| {
            out.write_all(bytes).at("write", &blobs)
        })?;
        kept.push(digest.hex().to_string());
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::manifest::OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": Digest::of_bytes(&manifest).to_string(),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "rbuild-cache"},
        }],
    });
    write_file(dir, &dir.join("oci-layout"), |out| {
        out.write_all(OCI_LAYOUT).at("write", dir)
    })?;
    let index = serde_json::to_vec(&index).expect("an index always serialises");
    write_file(dir, &dir.join("index.json"), |out| {
        out.write_all(&index).at("write", dir)
    })?;
    for entry in fs::read_dir(&blobs).at("read directory", &blobs)? {
        let entry = entry.at("read directory", &blobs)?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !kept.contains(&name) {
            let path = entry.path();
            fs::remove_file(&path).at("remove", &path)?;
        }
    }
    Ok(())
}

/// Writes `path` whole through a temp file in `tmp_dir`, then renames it in.
fn write_file(
    tmp_dir: &Path,
    path: &Path,
    fill: impl FnOnce(&mut fs::File) -> Result<()>,
) -> Result<()> {
    let mut temp = tempfile::NamedTempFile::new_in(tmp_dir).at("create a temp file in", tmp_dir)?;
    fill(temp.as_file_mut())?;
    temp.as_file().sync_all().at("fsync", path)?;
    temp.persist(path)
        .map_err(|e| StoreError::io("rename into place", path, e.error))?;
    Ok(())
}

/// The manifest `dir`'s index names and the blob `config_of` finds in it
/// (checked against its digest), or `None` when `dir` holds no cache.
pub fn read_cache_layout<E>(
    dir: &Path,
    config_of: impl FnOnce(&[u8]) -> std::result::Result<(Digest, u64), E>,
) -> Result<crate::cache_manifest::FetchedCache<E>> {
    let index_path = dir.join("index.json");
    let index = match fs::read(&index_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("read", &index_path, e)),
    };
    let bad = |reason: String| StoreError::Layer {
        path: index_path.clone(),
        reason,
    };
    let index: serde_json::Value =
        serde_json::from_slice(&index).map_err(|e| bad(format!("not an OCI index: {e}")))?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .ok_or_else(|| bad("it names no manifest".into()))
        .and_then(|d| d.parse::<Digest>().map_err(|e| bad(e.to_string())))?;
    let manifest = read_verified(dir, &digest)?;
    let (config_digest, _) = match config_of(&manifest) {
        Ok(found) => found,
        Err(e) => return Ok(Some((manifest, Err(e)))),
    };
    let config = read_verified(dir, &config_digest)?;
    Ok(Some((manifest, Ok(config))))
}

fn read_verified(dir: &Path, digest: &Digest) -> Result<Vec<u8>> {
    let path = blob_path(dir, digest);
    let bytes = fs::read(&path).at("read", &path)?;
    let actual = Digest::of_bytes(&bytes);
    if &actual != digest {
        return Err(StoreError::DigestMismatch {
            what: format!("blob {}", path.display()),
            expected: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// Copies `layer`'s blob from the cache in `dir` into `store`, verified as it
/// is written (a damaged copy is refused, and the store keeps nothing of it).
pub fn fetch_layout_blob(store: &Store, dir: &Path, layer: &Layer) -> Result<()> {
    if store.has_blob(&layer.digest) {
        return Ok(());
    }
    let path = blob_path(dir, &layer.digest);
    let mut file = fs::File::open(&path).at("open", &path)?;
    let mut writer = store.blob_writer()?;
    io::copy(&mut file, &mut writer).at("copy", &path)?;
    writer.commit_expecting(&layer.digest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_manifest::{config_of, CachedStep};
    use crate::metadata::cache_index::CacheRecord;
    use crate::test_util::temp_store;

    #[test]
    fn a_layout_round_trips_and_drops_what_it_no_longer_names() {
        let (_dir, store) = temp_store();
        let out = tempfile::tempdir().unwrap();
        let step = |n: u8, bytes: &[u8]| {
            let digest = store.write_blob(bytes).unwrap();
            let layer = Layer {
                digest,
                diff_id: Digest::of_bytes(b"d"),
                size: bytes.len() as u64,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            };
            CachedStep {
                key: Digest::from_sha256([n; 32]),
                record: CacheRecord {
                    layer: Some(layer),
                    created_by: None,
                    empty_layer: false,
                    created: None,
                    last_used: None,
                },
                identity: None,
                inputs: None,
            }
        };
        let first = CacheConfig::new(vec![step(1, b"one")], vec![]);
        write_cache_layout(&store, out.path(), &first).unwrap();
        let second = CacheConfig::new(vec![step(2, b"two")], vec![]);
        write_cache_layout(&store, out.path(), &second).unwrap();
        let (_, config) = read_cache_layout(out.path(), config_of).unwrap().unwrap();
        assert_eq!(
            crate::cache_manifest::parse_config(&config.unwrap()).unwrap(),
            second
        );
        let one = Digest::of_bytes(b"one");
        assert!(
            !blob_path(out.path(), &one).exists(),
            "the first export's layer is gone"
        );

        let (_other_dir, other) = temp_store();
        let layer = second.steps[0].record.layer.clone().unwrap();
        fetch_layout_blob(&other, out.path(), &layer).unwrap();
        assert_eq!(other.read_blob(&layer.digest).unwrap(), b"two");

        fs::write(blob_path(out.path(), &layer.digest), b"tampered").unwrap();
        let (_third_dir, third) = temp_store();
        assert!(fetch_layout_blob(&third, out.path(), &layer).is_err());
        assert!(!third.has_blob(&layer.digest));
        assert!(read_cache_layout(&out.path().join("none"), config_of)
            .unwrap()
            .is_none());
    }
}
