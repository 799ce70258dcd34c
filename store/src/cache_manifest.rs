//! rbuild's exported build cache (`--cache-to`), format version 1: a plain
//! OCI image manifest (not an index: some registries refuse indexes that do
//! not describe images) whose config blob is a [`CacheConfig`] and whose
//! layers are the step layers and, with `mounts=true`, one layer per cache
//! mount.
//!
//! ```text
//! manifest  application/vnd.oci.image.manifest.v1+json
//!   config  application/vnd.rbuild.cache.config.v1+json   CacheConfig (JSON)
//!   layers  the step layers (…tar+gzip or …tar+zstd), each once;
//!           cache mounts, annotated dev.rbuild.cache.mount.id=<id>
//! ```
//!
//! The version is in the config's media type and in its `version` field; a
//! reader refuses (the caller warns and ignores the cache) a version it does
//! not know, so an older rbuild never misreads a newer cache.

use serde::{Deserialize, Serialize};

use crate::content::layer::Layer;
use crate::digest::Digest;
use crate::manifest::OCI_MANIFEST;
use crate::metadata::cache_index::CacheRecord;

/// The media type of the cache config this rbuild writes and reads.
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.rbuild.cache.config.v1+json";
/// The prefix every version's media type shares.
const CACHE_CONFIG_PREFIX: &str = "application/vnd.rbuild.cache.config.";
pub const CACHE_FORMAT_VERSION: u32 = 1;
/// The annotation naming the cache mount a layer holds.
pub const MOUNT_ID_ANNOTATION: &str = "dev.rbuild.cache.mount.id";

/// A cache as fetched: its manifest, and its config blob or why the manifest
/// is not a cache this rbuild reads; `None` when there is no cache there.
pub type FetchedCache<E> = Option<(Vec<u8>, Result<Vec<u8>, E>)>;

/// The cache record: what each exported step produced, by its cache key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheConfig {
    pub version: u32,
    pub steps: Vec<CachedStep>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<CachedMount>,
}

/// One step: its key, what a hit reuses (the layer's descriptor and the
/// history entry), and what `--explain-cache` compares a miss with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedStep {
    pub key: Digest,
    /// The layer (as exported: compressed as the export asked), the history
    /// entry's `created_by`, `empty_layer` and `created`.
    #[serde(flatten)]
    pub record: CacheRecord,
    /// The step's identity (Dockerfile, stage, position) and the inputs of its
    /// key, opaque to the store: the builder's explanation of a miss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<serde_json::Value>,
}

/// One cache mount carried as a layer (a tar of the mount's directory).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedMount {
    pub id: String,
    pub layer: Layer,
}

/// Why a manifest is not a cache this rbuild can use.
#[derive(Debug, thiserror::Error)]
pub enum CacheFormatError {
    #[error("it is not an OCI image manifest: {0}")]
    NotAManifest(String),
    #[error("its config is {0:?}, not an rbuild cache (was it pushed by another builder?)")]
    NotACache(String),
    #[error("it is rbuild cache format {0:?}, which this rbuild does not know (it reads {CACHE_CONFIG_MEDIA_TYPE}); update rbuild or export the cache again")]
    UnknownVersion(String),
    #[error("its cache record is damaged: {0}")]
    BadConfig(String),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    schema_version: u32,
    #[serde(default)]
    media_type: String,
    config: DescriptorJson,
    layers: Vec<DescriptorJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorJson {
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    annotations: std::collections::BTreeMap<String, String>,
}

impl CacheConfig {
    pub fn new(steps: Vec<CachedStep>, mounts: Vec<CachedMount>) -> CacheConfig {
        CacheConfig {
            version: CACHE_FORMAT_VERSION,
            steps,
            mounts,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a cache config always serialises")
    }

    /// The blobs the manifest lists as layers, each once: the step layers in
    /// the order of the steps, then the mounts.
    pub fn layers(&self) -> Vec<(Layer, Option<&str>)> {
        let mut out: Vec<(Layer, Option<&str>)> = Vec::new();
        for layer in self.steps.iter().filter_map(|s| s.record.layer.as_ref()) {
            if !out.iter().any(|(l, _)| l.digest == layer.digest) {
                out.push((layer.clone(), None));
            }
        }
        out.extend(
            self.mounts
                .iter()
                .map(|m| (m.layer.clone(), Some(m.id.as_str()))),
        );
        out
    }

    /// The manifest of this config, whose JSON is `config_json` (`to_json`).
    pub fn manifest(&self, config_json: &[u8]) -> Vec<u8> {
        let manifest = ManifestJson {
            schema_version: 2,
            media_type: OCI_MANIFEST.to_string(),
            config: DescriptorJson {
                media_type: CACHE_CONFIG_MEDIA_TYPE.to_string(),
                digest: Digest::of_bytes(config_json),
                size: config_json.len() as u64,
                annotations: Default::default(),
            },
            layers: self
                .layers()
                .into_iter()
                .map(|(layer, mount)| DescriptorJson {
                    media_type: layer.media_type,
                    digest: layer.digest,
                    size: layer.size,
                    annotations: mount
                        .map(|id| [(MOUNT_ID_ANNOTATION.to_string(), id.to_string())].into())
                        .unwrap_or_default(),
                })
                .collect(),
        };
        serde_json::to_vec(&manifest).expect("a manifest always serialises")
    }
}

/// The config descriptor of a cache manifest (`manifest`): its digest and
/// size, once the media type says it is a cache of a version this rbuild reads.
pub fn config_of(manifest: &[u8]) -> Result<(Digest, u64), CacheFormatError> {
    let manifest: ManifestJson = serde_json::from_slice(manifest)
        .map_err(|e| CacheFormatError::NotAManifest(e.to_string()))?;
    if !manifest.media_type.is_empty() && manifest.media_type != OCI_MANIFEST {
        return Err(CacheFormatError::NotAManifest(format!(
            "its media type is {}",
            manifest.media_type
        )));
    }
    let media_type = manifest.config.media_type;
    if media_type != CACHE_CONFIG_MEDIA_TYPE {
        return Err(if media_type.starts_with(CACHE_CONFIG_PREFIX) {
            CacheFormatError::UnknownVersion(media_type)
        } else {
            CacheFormatError::NotACache(media_type)
        });
    }
    Ok((manifest.config.digest, manifest.config.size))
}

/// Reads a cache config (already checked against its digest).
pub fn parse_config(bytes: &[u8]) -> Result<CacheConfig, CacheFormatError> {
    let config: CacheConfig =
        serde_json::from_slice(bytes).map_err(|e| CacheFormatError::BadConfig(e.to_string()))?;
    if config.version != CACHE_FORMAT_VERSION {
        return Err(CacheFormatError::UnknownVersion(format!(
            "version {}",
            config.version
        )));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: u8) -> Layer {
        Layer {
            digest: Digest::from_sha256([n; 32]),
            diff_id: Digest::from_sha256([n + 100; 32]),
            size: n as u64 * 10,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }
    }

    fn step(key: u8, layer: Option<Layer>) -> CachedStep {
        CachedStep {
            key: Digest::from_sha256([key; 32]),
            record: CacheRecord {
                layer,
                created_by: Some("RUN x".into()),
                empty_layer: false,
                created: None,
                last_used: None,
            },
            identity: None,
            inputs: Some(serde_json::json!({"instruction": "RUN x"})),
        }
    }

    #[test]
    fn a_cache_round_trips_through_its_manifest() {
        let config = CacheConfig::new(
            vec![
                step(1, Some(layer(1))),
                step(2, None),
                step(3, Some(layer(1))),
                step(4, Some(layer(2))),
            ],
            vec![CachedMount {
                id: "go-build".into(),
                layer: layer(3),
            }],
        );
        let json = config.to_json();
        let manifest = config.manifest(&json);
        let value: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        assert_eq!(value["mediaType"], OCI_MANIFEST);
        assert_eq!(value["config"]["mediaType"], CACHE_CONFIG_MEDIA_TYPE);
        let layers = value["layers"].as_array().unwrap();
        assert_eq!(
            layers.len(),
            3,
            "a layer two steps share is listed once: {value}"
        );
        assert_eq!(layers[2]["annotations"][MOUNT_ID_ANNOTATION], "go-build");
        let (digest, size) = config_of(&manifest).unwrap();
        assert_eq!((digest, size), (Digest::of_bytes(&json), json.len() as u64));
        assert_eq!(parse_config(&json).unwrap(), config);
    }

    #[test]
    fn other_versions_and_images_are_refused() {
        let config = CacheConfig::new(vec![step(1, None)], vec![]);
        let json = config.to_json();
        let manifest = String::from_utf8(config.manifest(&json)).unwrap();
        let v2 = manifest.replace("config.v1+json", "config.v2+json");
        assert!(matches!(
            config_of(v2.as_bytes()),
            Err(CacheFormatError::UnknownVersion(_))
        ));
        let image = manifest.replace(CACHE_CONFIG_MEDIA_TYPE, crate::manifest::OCI_CONFIG);
        assert!(matches!(
            config_of(image.as_bytes()),
            Err(CacheFormatError::NotACache(_))
        ));
        let newer = String::from_utf8(json)
            .unwrap()
            .replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            parse_config(newer.as_bytes()),
            Err(CacheFormatError::UnknownVersion(_))
        ));
    }
}
