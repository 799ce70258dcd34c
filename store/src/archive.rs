//! Exporting images: the archive `docker load`, `podman load`, skopeo and
//! containerd read, and OCI image layouts.
//!
//! [`ArchiveFormat::Docker`] writes the shape `docker save` has written since
//! Docker 25: an OCI layout (`oci-layout`, `index.json`, `blobs/sha256/…`) plus
//! Docker's `manifest.json` and `repositories`, whose paths point into the same
//! blobs. Docker 20.10 reads `manifest.json` (it accepts gzip layer files),
//! everything else reads the OCI side, and each blob is written once.
//! [`ArchiveFormat::DockerAsStored`] is the same shape with the images as
//! they are stored (plain or gzip layers), so that loading the archive gives
//! the same manifest digests.
//! [`ArchiveFormat::Oci`] writes the OCI layout alone, optionally with zstd
//! layers (which Docker 20.10 cannot load).
//!
//! Archives are deterministic: members in a fixed order with fixed headers
//! (mode 0644/0755, uid/gid 0, mtime 0, no user names), JSON with sorted keys,
//! so exporting the same images twice gives the same bytes. Blobs are streamed
//! from the store and checked against their digests on the way.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use oci_spec::image::{Descriptor, ImageIndexBuilder, MediaType, SCHEMA_VERSION};
use serde::Serialize;

use crate::compress::{Codec, Compression};
use crate::digest::{copy_hashed, Digest};
use crate::error::{IoContext, Result, StoreError};
use crate::metadata::image::{to_json, StoredImage};
#[cfg(test)]
use crate::metadata::image::{MEDIA_TYPE_CONFIG, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use crate::reference::Reference;
use crate::store::Store;

/// Annotation with the full image name (containerd, Docker 25+, podman).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// Annotation with the tag (OCI; skopeo and umoci address entries by it).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// What [`write_archive`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// Docker 25+ `docker save` shape: `manifest.json` + `repositories` + an
    /// OCI layout, with layers shared by both, compressed as `compression` says
    /// (gzip by default; plain too, which `docker save` writes; zstd only for
    /// Docker 23+, which is why rbuild's `-o type=docker` refuses it).
    Docker { compression: Codec },
    /// The [`ArchiveFormat::Docker`] shape with each image as it is stored:
    /// its manifest and layers as they are, so loading the archive gives the
    /// same manifest digest. Plain and gzip layers, which every client reads,
    /// stay; only an image with zstd layers (which Docker 20.10 cannot read)
    /// is converted to gzip. What `rbuild save` writes.
    DockerAsStored,
    /// An OCI layout only, with layers compressed as asked (re-compressed when
    /// they are stored otherwise).
    Oci { compression: Codec },
}

impl ArchiveFormat {
    /// Whether the archive has Docker's `manifest.json` and `repositories`.
    fn is_docker(&self) -> bool {
        matches!(self, ArchiveFormat::Docker { .. } | ArchiveFormat::DockerAsStored)
    }
}

/// Writes `images`, each with the names it should carry, as a tar archive.
pub fn write_archive<W: Write>(
    store: &Store,
    images: &[(StoredImage, Vec<Reference>)],
    format: &ArchiveFormat,
    out: W,
) -> Result<()> {
    let plan = ExportPlan::new(store, images, format)?;
    write_plan(store, &plan, out)
}

/// Writes one multi-platform image, `images` (one per platform), as an OCI
/// layout tar whose `index.json` names the OCI image index of them all (by
/// `names`), as BuildKit's oci exporter writes a multi-platform build. Layers
/// are compressed as `compression` says. Docker 20.10 cannot load this (it
/// reads no index), which is why the docker form is one archive per platform.
pub fn write_platforms_archive<W: Write>(
    store: &Store,
    images: &[StoredImage],
    names: &[Reference],
    compression: impl Into<Codec>,
    out: W,
) -> Result<()> {
    let compression = compression.into();
    let mut blobs = BTreeSet::new();
    let mut converted = Vec::with_capacity(images.len());
    for image in images {
        let image = store.convert_image(image, compression)?;
        blobs.insert(image.manifest_digest.clone());
        blobs.insert(image.config_digest.clone());
        blobs.extend(image.layers.iter().map(|l| l.digest.clone()));
        converted.push(image);
    }
    let index = store.put_index(&converted)?;
    let size = store.read_blob(&index)?.len() as u64;
    blobs.insert(index.clone());
    let entries = named_descriptors(|| Descriptor::new(MediaType::ImageIndex, size, &index), names)?;
    let plan = ExportPlan { blobs, index: to_json(&layout_index(entries)), docker: None };
    write_plan(store, &plan, out)
}

fn write_plan<W: Write>(store: &Store, plan: &ExportPlan, out: W) -> Result<()> {
    let mut tar = ArchiveTar::new(out);
    tar.add_file("oci-layout", OCI_LAYOUT)?;
    tar.add_dir("blobs/")?;
    tar.add_dir("blobs/sha256/")?;
    for digest in &plan.blobs {
        tar.add_blob(store, digest)?;
    }
    tar.add_file("index.json", &plan.index)?;
    if let Some(docker) = &plan.docker {
        tar.add_file("manifest.json", &docker.manifest)?;
        tar.add_file("repositories", &docker.repositories)?;
    }
    tar.finish()
}

/// The `index.json` of a layout listing `entries`.
fn layout_index(entries: Vec<Descriptor>) -> oci_spec::image::ImageIndex {
    ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(entries)
        .build()
        .expect("schema version and manifests are set")
}

/// `index.json` entries for one image: one per name (each annotated with its
/// full name and its tag), or one without a name when it has none.
fn named_descriptors(descriptor: impl Fn() -> Descriptor, names: &[Reference]) -> Result<Vec<Descriptor>> {
    let tagged = tagged_names(names)?;
    if tagged.is_empty() {
        return Ok(vec![descriptor()]);
    }
    Ok(tagged
        .iter()
        .map(|(name, tag)| {
            let mut d = descriptor();
            d.set_annotations(Some(
                [
                    (ANNOTATION_IMAGE_NAME.to_string(), format!("{}:{tag}", name.repository())),
                    (ANNOTATION_REF_NAME.to_string(), tag.to_string()),
                ]
                .into_iter()
                .collect(),
            ));
            d
        })
        .collect())
}

/// Each name with its tag; a name without one cannot name an image in an archive.
fn tagged_names(names: &[Reference]) -> Result<Vec<(&Reference, &str)>> {
    names
        .iter()
        .map(|name| match name.tag() {
            Some(tag) => Ok((name, tag)),
            None => Err(StoreError::MissingTag { reference: name.full(), purpose: "name an image in an archive" }),
        })
        .collect()
}

/// Writes `images` as an OCI image layout in the directory `dir` (created if
/// needed), with layers compressed as `compression` says.
pub fn write_oci_dir(
    store: &Store,
    images: &[(StoredImage, Vec<Reference>)],
    compression: impl Into<Codec>,
    dir: &Path,
) -> Result<()> {
    let plan = ExportPlan::new(store, images, &ArchiveFormat::Oci { compression: compression.into() })?;
    let blobs_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs_dir).at("create directory", &blobs_dir)?;
    for digest in &plan.blobs {
        let dest = blobs_dir.join(digest.hex());
        if dest.is_file() {
            continue;
        }
        let mut file = fs::File::create(&dest).at("create", &dest)?;
        store.copy_blob_to(digest, &mut file)?;
        file.sync_all().at("fsync", &dest)?;
    }
    // index.json last: until it is there the layout names nothing half-copied.
    for (name, bytes) in [("oci-layout", OCI_LAYOUT), ("index.json", &plan.index[..])] {
        let path = dir.join(name);
        fs::write(&path, bytes).at("write", &path)?;
    }
    Ok(())
}

/// Everything an export writes, decided before the first byte goes out.
struct ExportPlan {
    /// Every blob, once, in digest order.
    blobs: BTreeSet<Digest>,
    index: Vec<u8>,
    docker: Option<DockerFiles>,
}

struct DockerFiles {
    manifest: Vec<u8>,
    repositories: Vec<u8>,
}

/// One entry of Docker's `manifest.json`.
#[derive(Serialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Vec<String>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

impl ExportPlan {
    fn new(
        store: &Store,
        images: &[(StoredImage, Vec<Reference>)],
        format: &ArchiveFormat,
    ) -> Result<ExportPlan> {
        let mut blobs = BTreeSet::new();
        let mut index_entries = Vec::new();
        let mut docker_entries = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();

        for (image, names) in images {
            let image = match format {
                // Docker reads plain, gzip and (from 23.0) zstd layers.
                ArchiveFormat::Docker { compression } => store.convert_image(image, *compression)?,
                ArchiveFormat::DockerAsStored => {
                    let readable = |c| matches!(c, Some(Compression::None | Compression::Gzip));
                    match image.layers.iter().all(|l| readable(l.compression())) {
                        true => image.clone(),
                        false => store.convert_image(image, Compression::Gzip)?,
                    }
                }
                ArchiveFormat::Oci { compression } => store.convert_image(image, *compression)?,
            };
            let manifest_size = store.read_blob(&image.manifest_digest)?.len() as u64;
            blobs.insert(image.manifest_digest.clone());
            blobs.insert(image.config_digest.clone());
            blobs.extend(image.layers.iter().map(|l| l.digest.clone()));

            let tagged = tagged_names(names)?;
            let descriptor = || Descriptor::new(MediaType::ImageManifest, manifest_size, &image.manifest_digest);
            index_entries.extend(named_descriptors(descriptor, names)?);

            if format.is_docker() {
                let blob_path = |d: &Digest| format!("blobs/sha256/{}", d.hex());
                docker_entries.push(DockerManifestEntry {
                    config: blob_path(&image.config_digest),
                    repo_tags: tagged
                        .iter()
                        .map(|(name, tag)| format!("{}:{tag}", name.familiar_repository()))
                        .collect(),
                    layers: image.layers.iter().map(|l| blob_path(&l.digest)).collect(),
                });
                if let Some(top) = image.layers.last() {
                    for (name, tag) in &tagged {
                        repositories
                            .entry(name.familiar_repository())
                            .or_default()
                            .insert(tag.to_string(), top.digest.hex().to_string());
                    }
                }
            }
        }

        let index = layout_index(index_entries);
        let docker = format.is_docker().then(|| DockerFiles {
            manifest: serde_json::to_vec(&docker_entries).expect("manifest.json always serialises"),
            repositories: serde_json::to_vec(&repositories)
                .expect("repositories always serialises"),
        });
        Ok(ExportPlan {
            blobs,
            index: to_json(&index),
            docker,
        })
    }
}

/// A tar writer whose member headers carry nothing that varies between runs.
struct ArchiveTar<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> ArchiveTar<W> {
    fn new(out: W) -> ArchiveTar<W> {
        ArchiveTar {
            builder: tar::Builder::new(out),
        }
    }

    fn header(path: &str, entry_type: tar::EntryType, mode: u32, size: u64) -> Result<tar::Header> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(entry_type);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(size);
        let ustar = header.as_ustar_mut().expect("header is ustar");
        // Member names are short and fixed ("blobs/sha256/<64 hex>").
        ustar.name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        Ok(header)
    }

    fn add_dir(&mut self, path: &str) -> Result<()> {
        let header = Self::header(path, tar::EntryType::Directory, 0o755, 0)?;
        self.builder
            .append(&header, io::empty())
            .map_err(|source| StoreError::ArchiveIo { source })
    }

    fn add_file(&mut self, path: &str, bytes: &[u8]) -> Result<()> {
        let header = Self::header(path, tar::EntryType::Regular, 0o644, bytes.len() as u64)?;
        self.builder
            .append(&header, bytes)
            .map_err(|source| StoreError::ArchiveIo { source })
    }

    /// Streams a blob from the store into the archive, checking its digest.
    /// A mismatch fails the export, so a corrupt blob never ends up in a
    /// finished archive.
    fn add_blob(&mut self, store: &Store, digest: &Digest) -> Result<()> {
        let (file, size) = store.open_blob(digest)?;
        let path = format!("blobs/sha256/{}", digest.hex());
        let header = Self::header(&path, tar::EntryType::Regular, 0o644, size)?;
        let out = self.builder.get_mut();
        let archive_err = |source| StoreError::ArchiveIo { source };
        out.write_all(header.as_bytes()).map_err(archive_err)?;
        let (actual, copied) = copy_hashed(file, size, out).map_err(archive_err)?;
        if &actual != digest || copied != size {
            return Err(StoreError::DigestMismatch {
                what: format!("blob {}", store.blob_path(digest).display()),
                expected: digest.clone(),
                actual,
            });
        }
        let padding = (512 - size % 512) % 512;
        out.write_all(&[0u8; 512][..padding as usize])
            .map_err(archive_err)
    }

    fn finish(self) -> Result<()> {
        let mut out = self
            .builder
            .into_inner()
            .map_err(|source| StoreError::ArchiveIo { source })?;
        out.flush()
            .map_err(|source| StoreError::ArchiveIo { source })
    }
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
