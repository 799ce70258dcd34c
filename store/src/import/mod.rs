//! Importing images from outside the store: docker-archive and OCI-archive
//! tars (what `docker save`, `skopeo copy … docker-archive:/oci-archive:` and
//! rbuild's own exports write; plain, gzip or zstd), and OCI image layout
//! directories.
//!
//! Nothing is trusted: every blob is checked against the digest it is named
//! by (archive members under `blobs/sha256/` and layout blobs), and every
//! layer's uncompressed content against the config's diff_id, before the
//! image is recorded. An archive is read in one pass, whatever the order of
//! its members: metadata files are kept in memory, everything else streams
//! into the blob store, and the images are put together at the end. Config
//! blobs are kept byte for byte, so an imported image keeps its id.
//!
//! Importing does not tag: the caller decides what the returned names become
//! (`rbuild load` tags them; a `--build-context` uses the image untagged).

mod archive_source;
mod diffid;
mod layout_source;

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::compress::Compression;
use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{Result, StoreError};
use crate::metadata::image::StoredImage;
use crate::content::layer::Layer;
use crate::manifest::{self, Descriptor, Document};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::Store;
use diffid::DiffId;

/// The annotation with an image's full name (containerd, Docker 25+, rbuild).
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation with a tag (or, by some writers, a full name).
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// How deep indexes may nest before a layout is taken to be malicious.
const MAX_INDEX_DEPTH: usize = 4;

/// An image an import put into the store.
#[derive(Clone, Debug)]
pub struct ImportedImage {
    pub image: StoredImage,
    /// The names the source gave it (`RepoTags`, `io.containerd.image.name`).
    pub names: Vec<Reference>,
    /// The `org.opencontainers.image.ref.name` annotation of its index entry
    /// (often a bare tag), if any.
    pub ref_name: Option<String>,
    /// The digest its source named it by (the index entry's), when it had one.
    pub source_digest: Option<Digest>,
}

/// Which images of an OCI layout to import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutSelector {
    All,
    /// The entry whose `org.opencontainers.image.ref.name` is this.
    Tag(String),
    /// The entry (manifest or index) with this digest.
    Digest(Digest),
}

/// A blob of the source, now in the store, and what its content
/// decompresses to.
#[derive(Clone, Debug)]
struct BlobInfo {
    digest: Digest,
    size: u64,
    diff: DiffId,
}

/// Where an import reads from: an archive already streamed into the store,
/// or a layout directory read on demand.
trait ImportSource {
    fn origin(&self) -> &Path;
    /// A metadata file at the top (`manifest.json`, `index.json`), if present.
    fn metadata(&mut self, name: &str) -> Result<Option<Vec<u8>>>;
    /// The blob with `digest`, verified and in the store.
    fn blob(&mut self, store: &Store, digest: &Digest) -> Result<BlobInfo>;
    /// A file named by its path in the source (docker-archive's
    /// `manifest.json` names files, not digests), in the store.
    fn file(&mut self, store: &Store, path: &str) -> Result<BlobInfo>;
}

impl Store {
    /// Imports every image of a docker-archive or OCI-archive tar (plain,
    /// gzip or zstd), with the names the archive gives each.
    pub fn import_archive(&self, path: &Path) -> Result<Vec<(StoredImage, Vec<Reference>)>> {
        Ok(self
            .import_archive_images(path, &Platform::host())?
            .into_iter()
            .map(|i| (i.image, i.names))
            .collect())
    }

    /// Like [`Store::import_archive`], with everything known about each
    /// image; an index with several platforms gives the `platform` one.
    pub fn import_archive_images(&self, path: &Path, platform: &Platform) -> Result<Vec<ImportedImage>> {
        let mut source = archive_source::ArchiveSource::read(self, path)?;
        let images = if let Some(manifest) = source.metadata("manifest.json")? {
            let index = source.metadata("index.json")?;
            docker_images(self, &mut source, &manifest, index.as_deref())?
        } else if let Some(index) = source.metadata("index.json")? {
            oci_images(self, &mut source, &index, &LayoutSelector::All, platform)?
        } else {
            return Err(import_error(
                path,
                "it is neither a docker archive (no manifest.json) nor an OCI archive (no index.json)".into(),
            ));
        };
        if images.is_empty() {
            return Err(import_error(path, "it holds no image".into()));
        }
        Ok(images)
    }

    /// Imports the images of the OCI image layout in `dir` that `selector`
    /// names; an index with several platforms gives the `platform` one.
    pub fn import_oci_layout(
        &self,
        dir: &Path,
        selector: &LayoutSelector,
        platform: &Platform,
    ) -> Result<Vec<ImportedImage>> {
        let mut source = layout_source::LayoutSource::open(dir)?;
        let index = source
            .metadata("index.json")?
            .ok_or_else(|| import_error(dir, "it is not an OCI image layout: index.json is missing".into()))?;
        let images = oci_images(self, &mut source, &index, selector, platform)?;
        if images.is_empty() {
            return Err(import_error(dir, "its index.json lists no image".into()));
        }
        Ok(images)
    }
}

fn import_error(origin: &Path, reason: String) -> StoreError {
    StoreError::Import { origin: origin.to_path_buf(), reason }
}

/// One entry of a docker archive's `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// The images of a docker archive's `manifest.json`. When the archive is also
/// an OCI layout (`index.json`: rbuild's archives, Docker 25+'s), the layer
/// media types come from the OCI manifest of the same config and layers, so
/// the image is stored with the manifest the archive has (its digest kept).
fn docker_images(
    store: &Store,
    source: &mut dyn ImportSource,
    manifest: &[u8],
    index: Option<&[u8]>,
) -> Result<Vec<ImportedImage>> {
    let origin = source.origin().to_path_buf();
    let entries: Vec<DockerEntry> = serde_json::from_slice(manifest)
        .map_err(|e| import_error(&origin, format!("manifest.json is not a docker archive manifest: {e}")))?;
    let declared = index.map(|index| declared_layers(store, source, index)).unwrap_or_default();
    let mut images = Vec::new();
    for entry in entries {
        let config = source.file(store, &entry.config)?;
        let diff_ids = config_diff_ids(store, &config.digest, &origin)?;
        if diff_ids.len() != entry.layers.len() {
            return Err(import_error(
                &origin,
                format!(
                    "manifest.json lists {} layers for {} but its config has {} diff_ids",
                    entry.layers.len(),
                    entry.config,
                    diff_ids.len()
                ),
            ));
        }
        let declared = declared.get(&config.digest).filter(|d| d.len() == entry.layers.len());
        let mut layers = Vec::new();
        for (i, (path, diff_id)) in entry.layers.iter().zip(&diff_ids).enumerate() {
            let blob = source.file(store, path)?;
            // Only a media type declared for this very blob, and true to its
            // compression: the docker side alone must still load.
            let media_type = declared
                .and_then(|d| d.get(i))
                .filter(|(digest, media_type)| {
                    *digest == blob.digest && Compression::from_layer_media_type(media_type) == blob.diff.compression()
                })
                .map(|(_, media_type)| media_type.as_str());
            layers.push(checked_layer(&blob, diff_id, media_type, &format!("layer {path}"), &origin)?);
        }
        let image = store.put_image_with_config_blob(&config.digest, &layers)?;
        let names = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| Reference::parse(t).map_err(|e| import_error(&origin, format!("manifest.json: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        images.push(ImportedImage { image, names, ref_name: None, source_digest: None });
    }
    Ok(images)
}

/// The layers (blob digest, media type) of the image manifests `index.json`
/// lists, by config digest. Entries that cannot be read are left out: the
/// docker side, which is what is loaded, does not need them.
fn declared_layers(store: &Store, source: &mut dyn ImportSource, index: &[u8]) -> HashMap<Digest, Vec<(Digest, String)>> {
    let mut declared = HashMap::new();
    let Ok(Document::Index(entries)) = Document::parse(index, Some(manifest::OCI_INDEX)) else {
        return declared;
    };
    for entry in &entries {
        let Ok(digest) = entry.digest() else { continue };
        let Ok(bytes) = source.blob(store, &digest).and_then(|blob| store.read_blob(&blob.digest)) else {
            continue;
        };
        let hint = (!entry.media_type.is_empty()).then_some(entry.media_type.as_str());
        let Ok(Document::Manifest(manifest)) = Document::parse(&bytes, hint) else { continue };
        let Ok(config) = manifest.config.digest() else { continue };
        let layers: Option<Vec<(Digest, String)>> = manifest
            .layers
            .iter()
            .map(|l| l.digest().ok().map(|d| (d, l.media_type.clone())))
            .collect();
        if let Some(layers) = layers {
            declared.entry(config).or_insert(layers);
        }
    }
    declared
}

fn oci_images(
    store: &Store,
    source: &mut dyn ImportSource,
    index: &[u8],
    selector: &LayoutSelector,
    platform: &Platform,
) -> Result<Vec<ImportedImage>> {
    let origin = source.origin().to_path_buf();
    let entries = match Document::parse(index, Some(manifest::OCI_INDEX)) {
        Ok(Document::Index(entries)) => entries,
        Ok(Document::Manifest(_)) => return Err(import_error(&origin, "index.json is a manifest, not an index".into())),
        Err(reason) => return Err(import_error(&origin, format!("index.json: {reason}"))),
    };
    let mut images = Vec::new();
    let mut seen = HashSet::new();
    for entry in &entries {
        let ref_name = entry.annotations.get(ANNOTATION_REF_NAME).cloned();
        let wanted = match selector {
            LayoutSelector::All => true,
            LayoutSelector::Tag(tag) => ref_name.as_deref() == Some(tag.as_str()),
            LayoutSelector::Digest(d) => entry.digest == d.to_string(),
        };
        if !wanted {
            continue;
        }
        let entry_digest = entry.digest().map_err(|reason| import_error(&origin, format!("index.json: {reason}")))?;
        let image = oci_image(store, source, entry, platform, 0)?;
        let names = entry_names(entry);
        if seen.insert((image.manifest_digest.clone(), names.clone())) {
            images.push(ImportedImage { image, names, ref_name, source_digest: Some(entry_digest) });
        }
    }
    if images.is_empty() && *selector != LayoutSelector::All {
        let tags: Vec<&str> = entries
            .iter()
            .filter_map(|e| e.annotations.get(ANNOTATION_REF_NAME).map(String::as_str))
            .collect();
        let what = match selector {
            LayoutSelector::Tag(t) => format!("no image is tagged {t:?}"),
            LayoutSelector::Digest(d) => format!("no image has digest {d}"),
            LayoutSelector::All => unreachable!("handled above"),
        };
        let offered = if tags.is_empty() { "no tagged images".to_string() } else { format!("tags: {}", tags.join(", ")) };
        return Err(import_error(&origin, format!("{what} ({offered})")));
    }
    Ok(images)
}

/// The names an index entry gives its image: the full name annotation, or a
/// `ref.name` that is a whole reference (a bare tag names nothing).
fn entry_names(entry: &Descriptor) -> Vec<Reference> {
    let full = entry.annotations.get(ANNOTATION_IMAGE_NAME).and_then(|n| Reference::parse(n).ok());
    let from_ref_name = || {
        entry
            .annotations
            .get(ANNOTATION_REF_NAME)
            .filter(|n| n.contains(['/', ':']))
            .and_then(|n| Reference::parse(n).ok())
    };
    full.or_else(from_ref_name).into_iter().collect()
}

/// The image an index entry points at, through nested indexes.
fn oci_image(
    store: &Store,
    source: &mut dyn ImportSource,
    descriptor: &Descriptor,
    platform: &Platform,
    depth: usize,
) -> Result<StoredImage> {
    let origin = source.origin().to_path_buf();
    if depth > MAX_INDEX_DEPTH {
        return Err(import_error(&origin, format!("indexes nest deeper than {MAX_INDEX_DEPTH} levels")));
    }
    let digest = descriptor.digest().map_err(|reason| import_error(&origin, reason))?;
    let blob = source.blob(store, &digest)?;
    let bytes = store.read_blob(&blob.digest)?;
    let hint = (!descriptor.media_type.is_empty()).then_some(descriptor.media_type.as_str());
    let manifest = match Document::parse(&bytes, hint).map_err(|r| import_error(&origin, format!("{digest}: {r}")))? {
        Document::Manifest(m) => m,
        Document::Index(entries) => {
            let chosen = manifest::select_platform(&entries, platform).ok_or_else(|| {
                import_error(
                    &origin,
                    format!(
                        "index {digest} has no image for platform {platform} (it has: {})",
                        manifest::offered_platforms(&entries).join(", ")
                    ),
                )
            })?;
            let chosen = chosen.clone();
            return oci_image(store, source, &chosen, platform, depth + 1);
        }
    };
    manifest
        .check_supported()
        .map_err(|r| import_error(&origin, format!("manifest {digest}: {r}")))?;
    let config_digest = manifest.config.digest().map_err(|r| import_error(&origin, r))?;
    source.blob(store, &config_digest)?;
    let diff_ids = config_diff_ids(store, &config_digest, &origin)?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(import_error(
            &origin,
            format!(
                "manifest {digest} lists {} layers but its config has {} diff_ids",
                manifest.layers.len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (descriptor, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        let layer_digest = descriptor.digest().map_err(|r| import_error(&origin, r))?;
        let blob = source.blob(store, &layer_digest)?;
        let what = format!("layer {layer_digest}");
        layers.push(checked_layer(&blob, diff_id, Some(&descriptor.media_type), &what, &origin)?);
    }
    store.put_image_with_config_blob(&config_digest, &layers)
}

fn config_diff_ids(store: &Store, config: &Digest, origin: &Path) -> Result<Vec<Digest>> {
    let bytes = store.read_blob(config)?;
    let parsed = ImageConfig::from_json(&bytes)
        .map_err(|e| import_error(origin, format!("config {config} is not an image config: {e}")))?;
    Ok(parsed.rootfs.diff_ids)
}

/// A layer whose content matches the config's `diff_id`, with the media type
/// its descriptor gave (OCI sources) or one for the compression it has.
fn checked_layer(
    blob: &BlobInfo,
    diff_id: &Digest,
    media_type: Option<&str>,
    what: &str,
    origin: &Path,
) -> Result<Layer> {
    let (compression, actual) = match &blob.diff {
        DiffId::SameAsBlob => (Compression::None, blob.digest.clone()),
        DiffId::Compressed(c, d) => (*c, d.clone()),
        DiffId::Invalid(reason) => {
            return Err(import_error(origin, format!("{what} does not decompress: {reason}")))
        }
    };
    if &actual != diff_id {
        return Err(StoreError::DigestMismatch {
            what: format!("uncompressed {what} of {}", origin.display()),
            expected: diff_id.clone(),
            actual,
        });
    }
    let media_type = match media_type {
        Some(m) if Compression::from_layer_media_type(m) == Some(compression) => m.to_string(),
        Some(m) => {
            return Err(import_error(
                origin,
                format!("{what} is declared {m:?} but is {} compressed", compression.name()),
            ))
        }
        None => compression.layer_media_type().to_string(),
    };
    Ok(Layer { digest: blob.digest.clone(), diff_id: diff_id.clone(), size: blob.size, media_type })
}

/// The diff of a blob already in the store, read back from it.
fn stored_diff(store: &Store, digest: &Digest) -> Result<DiffId> {
    use std::io::Read;
    let (mut file, _) = store.open_blob(digest)?;
    let mut writer = diffid::DiffIdWriter::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|e| StoreError::io("read blob", store.blob_path(digest), e))?;
        if n == 0 {
            break;
        }
        writer.update(&buf[..n]);
    }
    Ok(writer.finish())
}

/// `a/./b/../c` → `a/c`, no leading `/` or `./`: archive member names as
/// `manifest.json` refers to them. `None` for a path leaving the archive.
fn normalise(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
