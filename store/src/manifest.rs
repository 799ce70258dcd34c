//! The documents that name an image outside the store: OCI image manifests
//! and indexes, and Docker's schema 2 manifests and manifest lists. Registry
//! pulls and archive imports both read them; they are parsed leniently (only
//! the fields rbuild needs) and classified by media type, falling back on
//! their shape when a document does not say what it is.

use serde::Deserialize;

use crate::compress::Compression;
use crate::digest::Digest;
use crate::platform::Platform;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The media types rbuild accepts for a manifest, in the order of preference
/// sent as `Accept` to registries.
pub const ACCEPTED_MANIFESTS: &[&str] = &[OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// A content descriptor: what a manifest or index says about a blob.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub platform: Option<DescriptorPlatform>,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub urls: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct DescriptorPlatform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Descriptor {
    /// The descriptor's digest, which must be a sha256 one.
    pub fn digest(&self) -> Result<Digest, String> {
        self.digest
            .parse()
            .map_err(|e| format!("descriptor digest: {e}"))
    }

    pub fn platform(&self) -> Option<Platform> {
        self.platform
            .as_ref()
            .map(|p| Platform::new(&p.os, &p.architecture, p.variant.as_deref()))
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDocument {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    fs_layers: Option<serde_json::Value>,
}

/// An image manifest: one config and its layers.
#[derive(Clone, Debug)]
pub struct ImageManifestDoc {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// What a manifest document turned out to be.
#[derive(Clone, Debug)]
pub enum Document {
    Manifest(ImageManifestDoc),
    Index(Vec<Descriptor>),
}

impl Document {
    /// Parses a manifest or index. `media_type` is what the registry (or the
    /// descriptor pointing at it) said, if anything.
    pub fn parse(bytes: &[u8], media_type: Option<&str>) -> Result<Document, String> {
        let raw: RawDocument =
            serde_json::from_slice(bytes).map_err(|e| format!("not a manifest: {e}"))?;
        let declared = raw
            .media_type
            .as_deref()
            .or(media_type)
            .map(|m| m.split(';').next().unwrap_or(m).trim().to_string());
        if matches!(declared.as_deref(), Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED))
            || raw.fs_layers.is_some()
            || raw.schema_version == Some(1)
        {
            return Err("it is a Docker schema 1 manifest, which is deprecated and not supported (push the image again with a current Docker or skopeo)".to_string());
        }
        let is_index = match declared.as_deref() {
            Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
            Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
            // Unknown or absent: go by shape.
            _ => raw.manifests.is_some(),
        };
        if is_index {
            return Ok(Document::Index(raw.manifests.unwrap_or_default()));
        }
        let config = raw
            .config
            .ok_or_else(|| "the manifest has no config".to_string())?;
        Ok(Document::Manifest(ImageManifestDoc {
            config,
            layers: raw.layers.unwrap_or_default(),
        }))
    }
}

impl ImageManifestDoc {
    /// Checks what rbuild can use: a container image config and layers of a
    /// known compression that are distributed with the image.
    pub fn check_supported(&self) -> Result<(), String> {
        let config_type = self.config.media_type.as_str();
        if !matches!(config_type, OCI_CONFIG | DOCKER_CONFIG | "") {
            return Err(format!(
                "its config has media type {config_type:?}: it is not a container image (an artifact?)"
            ));
        }
        for layer in &self.layers {
            if layer.media_type.contains("foreign") || layer.media_type.contains("nondistributable") {
                return Err(format!(
                    "layer {} is a foreign (non-distributable) layer ({}), which rbuild cannot fetch",
                    layer.digest, layer.media_type
                ));
            }
            if Compression::from_layer_media_type(&layer.media_type).is_none() {
                return Err(format!(
                    "layer {} has media type {:?}, which is not a layer rbuild can unpack",
                    layer.digest, layer.media_type
                ));
            }
        }
        Ok(())
    }
}

/// Picks the manifest for `wanted` out of an index: an entry whose platform
/// equals it wins over one that merely matches (a variant left open), and
/// entries without a platform, or marked as attestations, are never chosen.
pub fn select_platform<'a>(entries: &'a [Descriptor], wanted: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<(&Descriptor, Platform)> = entries
        .iter()
        .filter(|d| !is_attestation(d))
        .filter_map(|d| d.platform().map(|p| (d, p)))
        .filter(|(_, p)| wanted.matches(p))
        .collect();
    candidates
        .iter()
        .find(|(_, p)| p == wanted)
        .or_else(|| candidates.first())
        .map(|(d, _)| *d)
}

/// The platforms an index offers, for error messages.
pub fn offered_platforms(entries: &[Descriptor]) -> Vec<String> {
    entries
        .iter()
        .filter(|d| !is_attestation(d))
        .filter_map(|d| d.platform().map(|p| p.to_string()))
        .collect()
}

/// BuildKit stores provenance and SBOMs as index entries with platform
/// `unknown/unknown` and this annotation.
fn is_attestation(d: &Descriptor) -> bool {
    d.annotations.contains_key("vnd.docker.reference.type")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn entry(platform: &str, digest_char: char) -> String {
        let (os, rest) = platform.split_once('/').unwrap();
        let (arch, variant) = match rest.split_once('/') {
            Some((a, v)) => (a, format!(",\"variant\":\"{v}\"")),
            None => (rest, String::new()),
        };
        format!(
            "{{\"mediaType\":\"{DOCKER_MANIFEST}\",\"digest\":\"sha256:{}\",\"size\":1,\"platform\":{{\"os\":\"{os}\",\"architecture\":\"{arch}\"{variant}}}}}",
            digest_char.to_string().repeat(64)
        )
    }

    #[test]
    fn parses_manifest_list_and_selects_platform() {
        let list = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{DOCKER_MANIFEST_LIST}\",\"manifests\":[{},{},{},{}]}}",
            entry("linux/arm/v6", 'a'),
            entry("linux/arm/v7", 'b'),
            entry("linux/amd64", 'c'),
            entry("linux/arm64/v8", 'd')
        );
        let Document::Index(entries) = Document::parse(list.as_bytes(), None).unwrap() else {
            panic!("a manifest list is an index")
        };
        let pick = |p: &str| {
            select_platform(&entries, &Platform::parse(p).unwrap()).map(|d| d.digest.chars().last().unwrap())
        };
        assert_eq!(pick("linux/amd64"), Some('c'));
        assert_eq!(pick("linux/arm"), Some('b'), "arm means arm/v7");
        assert_eq!(pick("linux/arm/v6"), Some('a'));
        assert_eq!(pick("linux/arm64"), Some('d'));
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(offered_platforms(&entries).len(), 4);
    }

    #[test]
    fn attestations_are_never_selected() {
        let index = format!(
            "{{\"schemaVersion\":2,\"manifests\":[{{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"sha256:{HEX_A}\",\"size\":1,\"platform\":{{\"os\":\"linux\",\"architecture\":\"amd64\"}},\"annotations\":{{\"vnd.docker.reference.type\":\"attestation-manifest\"}}}}]}}"
        );
        let Document::Index(entries) = Document::parse(index.as_bytes(), Some(OCI_INDEX)).unwrap() else {
            panic!("index")
        };
        assert!(select_platform(&entries, &Platform::parse("linux/amd64").unwrap()).is_none());
    }

    #[test]
    fn manifests_are_checked() {
        let manifest = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{DOCKER_MANIFEST}\",\"config\":{{\"mediaType\":\"{DOCKER_CONFIG}\",\"digest\":\"sha256:{HEX_A}\",\"size\":2}},\"layers\":[{{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"digest\":\"sha256:{HEX_A}\",\"size\":3}}]}}"
        );
        let Document::Manifest(m) = Document::parse(manifest.as_bytes(), None).unwrap() else {
            panic!("manifest")
        };
        m.check_supported().unwrap();
        assert_eq!(m.layers[0].digest().unwrap().hex(), HEX_A);

        let foreign = manifest.replace("rootfs.diff.tar.gzip", "rootfs.foreign.diff.tar.gzip");
        let Document::Manifest(m) = Document::parse(foreign.as_bytes(), None).unwrap() else {
            panic!("manifest")
        };
        assert!(m.check_supported().unwrap_err().contains("foreign"));

        let artifact = manifest.replace(DOCKER_CONFIG, "application/vnd.cncf.helm.config.v1+json");
        let Document::Manifest(m) = Document::parse(artifact.as_bytes(), None).unwrap() else {
            panic!("manifest")
        };
        assert!(m.check_supported().unwrap_err().contains("not a container image"));

        let schema1 = r#"{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[]}"#;
        assert!(Document::parse(schema1.as_bytes(), None).unwrap_err().contains("schema 1"));
        assert!(Document::parse(b"not json", None).is_err());
    }
}
