//! Reading what rbuild writes: image archives (docker-archive `manifest.json` and/or an OCI
//! layout), their blobs and layers, plus second opinions from `skopeo inspect` and
//! `umoci unpack`. Test archives are small, so everything is read into memory.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::process::run_tool;

/// The kind of a tar entry, as far as the tests care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Other,
}

/// One entry of a tar stream (a layer, or an archive member).
#[derive(Debug, Clone)]
pub struct LayerEntry {
    /// The entry's name, without a leading `./` and without a trailing `/`.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// The target of a symlink or hard link.
    pub link: Option<String>,
    pub data: Vec<u8>,
}

/// An image archive read into memory (a gzip-compressed archive is decompressed first).
pub struct Archive {
    pub path: PathBuf,
    /// Whether the file on disk was gzip-compressed as a whole.
    pub gzipped: bool,
    members: BTreeMap<String, LayerEntry>,
}

impl Archive {
    pub fn open(path: &Path) -> Self {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        Self::from_bytes(path, &bytes)
    }

    /// `path` is only used in messages (e.g. for an archive read from rbuild's stdout).
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Self {
        let gzipped = is_gzip(bytes);
        let tar = decompress(bytes);
        let members = tar_entries(&tar)
            .into_iter()
            .map(|e| (e.path.clone(), e))
            .collect();
        Archive {
            path: path.to_path_buf(),
            gzipped,
            members,
        }
    }

    /// Member names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.members.keys().map(String::as_str).collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// The content of member `name`, following symlinks inside the archive (Docker's own
    /// archives link shared layers that way).
    #[track_caller]
    pub fn bytes(&self, name: &str) -> &[u8] {
        let mut name = name.trim_start_matches("./").to_string();
        for _ in 0..16 {
            let entry = self.members.get(&name).unwrap_or_else(|| {
                panic!(
                    "{} has no member {name:?}; members: {:?}",
                    self.path.display(),
                    self.names()
                )
            });
            match (&entry.kind, &entry.link) {
                (EntryKind::Symlink, Some(target)) => name = resolve_member(&name, target),
                (EntryKind::Hardlink, Some(target)) => name = target.clone(),
                _ => return &entry.data,
            }
        }
        panic!("symlink loop at member {name:?} of {}", self.path.display())
    }

    /// Member `name` parsed as JSON.
    #[track_caller]
    pub fn json(&self, name: &str) -> Value {
        serde_json::from_slice(self.bytes(name))
            .unwrap_or_else(|e| panic!("member {name} is not JSON: {e}"))
    }

    /// The one entry of `manifest.json` (rbuild writes one image per archive).
    #[track_caller]
    pub fn docker_manifest(&self) -> Value {
        let mut manifest = self.json("manifest.json");
        let entries = manifest.as_array_mut().expect("manifest.json is an array");
        assert_eq!(
            entries.len(),
            1,
            "manifest.json should hold one image: {entries:?}"
        );
        entries[0].take()
    }

    /// Checks `manifest.json` lists `reference` in RepoTags, either as given or normalised with
    /// a registry prefix (`docker.io/…`), which Docker treats as the same name.
    #[track_caller]
    pub fn assert_repo_tag(&self, reference: &str) {
        let tags = crate::strings(&self.docker_manifest()["RepoTags"]);
        let qualified = format!("/{reference}");
        assert!(
            tags.iter()
                .any(|t| t == reference || t.ends_with(&qualified)),
            "RepoTags {tags:?} lack {reference}"
        );
    }

    /// `index.json` of the OCI layout.
    #[track_caller]
    pub fn oci_index(&self) -> Value {
        self.json("index.json")
    }

    /// The blob with `digest` (`sha256:<hex>`) from `blobs/sha256/`, checked against its digest.
    #[track_caller]
    pub fn blob(&self, digest: &str) -> &[u8] {
        let hex = digest
            .strip_prefix("sha256:")
            .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
        let bytes = self.bytes(&format!("blobs/sha256/{hex}"));
        assert_eq!(
            sha256_hex(bytes),
            hex,
            "blob {digest} does not hash to its name"
        );
        bytes
    }

    /// The OCI image manifest of the index's only entry.
    #[track_caller]
    pub fn oci_manifest(&self) -> Value {
        let index = self.oci_index();
        let manifests = index["manifests"]
            .as_array()
            .expect("index.json has manifests");
        assert_eq!(
            manifests.len(),
            1,
            "index.json should hold one image: {index}"
        );
        let digest = manifests[0]["digest"].as_str().expect("descriptor digest");
        serde_json::from_slice(self.blob(digest)).expect("the manifest blob is JSON")
    }

    /// The image config, from `manifest.json` when there is one, else from the OCI layout.
    #[track_caller]
    pub fn config(&self) -> Value {
        let bytes = self.config_bytes();
        serde_json::from_slice(bytes).expect("the config is JSON")
    }

    /// The image ID: `sha256:` + the digest of the config blob, which is what Docker reports.
    pub fn image_id(&self) -> String {
        format!("sha256:{}", sha256_hex(self.config_bytes()))
    }

    fn config_bytes(&self) -> &[u8] {
        if self.has("manifest.json") {
            let name = self.docker_manifest()["Config"]
                .as_str()
                .expect("manifest.json names a Config")
                .to_string();
            self.bytes(&name)
        } else {
            let digest = self.oci_manifest()["config"]["digest"]
                .as_str()
                .expect("manifest has a config digest")
                .to_string();
            self.blob(&digest)
        }
    }

    /// The entries of every layer, bottom layer first, each layer decompressed as needed.
    #[track_caller]
    pub fn layers(&self) -> Vec<Vec<LayerEntry>> {
        self.layer_blobs()
            .iter()
            .map(|bytes| tar_entries(&decompress(bytes)))
            .collect()
    }

    fn layer_blobs(&self) -> Vec<&[u8]> {
        if self.has("manifest.json") {
            let manifest = self.docker_manifest();
            crate::strings(&manifest["Layers"])
                .iter()
                .map(|name| self.bytes(name))
                .collect()
        } else {
            let manifest = self.oci_manifest();
            manifest["layers"]
                .as_array()
                .expect("manifest has layers")
                .iter()
                .map(|l| self.blob(l["digest"].as_str().expect("layer digest")))
                .collect()
        }
    }

    /// Checks every `blobs/sha256/<hex>` member hashes to `<hex>`.
    #[track_caller]
    pub fn assert_blobs_match_digests(&self) {
        for (name, entry) in &self.members {
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                if entry.kind == EntryKind::File {
                    assert_eq!(
                        sha256_hex(&entry.data),
                        hex,
                        "blob {name} does not hash to its name"
                    );
                }
            }
        }
    }

    /// Writes the archive's members (decompressed) into `dest`, e.g. to hand an OCI layout to umoci.
    pub fn extract_to(&self, dest: &Path) {
        fs::create_dir_all(dest).expect("creating the extraction dir");
        let tar = decompress(&fs::read(&self.path).expect("re-reading the archive"));
        let mut reader = tar::Archive::new(tar.as_slice());
        reader.unpack(dest).expect("extracting the archive");
    }
}

/// `a/b` linking to `../c` names member `c`.
fn resolve_member(name: &str, target: &str) -> String {
    let mut parts: Vec<&str> = name.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

pub fn is_zstd(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
}

/// `bytes` as an uncompressed stream: gzip and zstd are recognised by their magic numbers.
pub fn decompress(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if is_gzip(bytes) {
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("gunzip");
    } else if is_zstd(bytes) {
        out = zstd::decode_all(bytes).expect("zstd -d");
    } else {
        out = bytes.to_vec();
    }
    out
}

/// Every entry of the uncompressed tar stream `tar`, in stream order.
#[track_caller]
pub fn tar_entries(tar: &[u8]) -> Vec<LayerEntry> {
    let mut archive = tar::Archive::new(tar);
    let mut entries = Vec::new();
    for entry in archive.entries().expect("reading a tar stream") {
        let mut entry = entry.expect("reading a tar entry");
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            tar::EntryType::Directory => EntryKind::Dir,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => EntryKind::Hardlink,
            _ => EntryKind::Other,
        };
        let mode = header.mode().expect("tar mode") & 0o7777;
        let uid = header.uid().expect("tar uid");
        let gid = header.gid().expect("tar gid");
        let mtime = header.mtime().expect("tar mtime");
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned());
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = raw_path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .expect("reading a tar entry's data");
        entries.push(LayerEntry {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime,
            link,
            data,
        });
    }
    entries
}

/// `skopeo inspect TRANSPORT:PATH` (e.g. `docker-archive:/x.tar`, `oci-archive:/x.tar`).
pub fn skopeo_inspect(reference: &str) -> Value {
    let out = run_tool("skopeo", &["inspect", reference]);
    serde_json::from_slice(&out.stdout).expect("skopeo inspect prints JSON")
}

/// `skopeo inspect --config TRANSPORT:PATH`: the image config as skopeo reads it.
pub fn skopeo_inspect_config(reference: &str) -> Value {
    let out = run_tool("skopeo", &["inspect", "--config", reference]);
    serde_json::from_slice(&out.stdout).expect("skopeo inspect --config prints JSON")
}

/// Unpacks the archive's OCI layout with `umoci unpack --rootless` into `work`/bundle and
/// returns the bundle's rootfs. The image is addressed by its `ref.name` annotation.
pub fn umoci_unpack(archive: &Archive, work: &Path) -> PathBuf {
    let layout = work.join("layout");
    archive.extract_to(&layout);
    let index = archive.oci_index();
    let name = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap_or_else(|| panic!("index.json entry has no ref.name annotation: {index}"))
        .to_string();
    let bundle = work.join("bundle");
    let image = format!("{}:{name}", layout.display());
    run_tool(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            image.as_str(),
            bundle.to_str().expect("utf-8 path"),
        ],
    );
    bundle.join("rootfs")
}

/// The tar of one hand-made layer: regular files `(name, content, mode)` owned by root, their
/// parent directories, and whiteouts (`.wh.NAME` entries) for the names in `deleted`.
pub fn layer_tar(files: &[(&str, &[u8], u32)], deleted: &[&str]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    let append = |tar: &mut tar::Builder<Vec<u8>>, name: &str, kind, mode, data: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, data)
            .expect("appending a layer member");
    };
    for (name, _, _) in files {
        let mut parent = Path::new(name).parent();
        let mut chain = Vec::new();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            chain.push(dir.to_string_lossy().into_owned());
            parent = dir.parent();
        }
        for dir in chain.into_iter().rev() {
            if dirs.insert(dir.clone()) {
                append(
                    &mut tar,
                    &format!("{dir}/"),
                    tar::EntryType::Directory,
                    0o755,
                    b"",
                );
            }
        }
    }
    for (name, data, mode) in files {
        append(&mut tar, name, tar::EntryType::Regular, *mode, data);
    }
    for name in deleted {
        let path = Path::new(name);
        let whiteout = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(dir) => format!(
                "{}/.wh.{}",
                dir.display(),
                path.file_name().unwrap().to_string_lossy()
            ),
            None => format!(".wh.{name}"),
        };
        append(&mut tar, &whiteout, tar::EntryType::Regular, 0o644, b"");
    }
    tar.into_inner().expect("layer tar")
}

/// Writes a docker archive (`docker save`'s format) at `path` of one image tagged `tag`, for the
/// host's platform, whose layers are `layers` bottom to top. The same bytes twice are the same
/// layer twice, as a registry may hold it: one member, named twice in the manifest.
pub fn write_docker_archive(path: &Path, tag: &str, layers: &[Vec<u8>]) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let config = serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).expect("config");
    let config_name = format!("{}.json", sha256_hex(&config));
    let names: Vec<String> = layers
        .iter()
        .map(|l| format!("{}/layer.tar", sha256_hex(l)))
        .collect();
    let manifest = serde_json::json!([{"Config": config_name, "RepoTags": [tag], "Layers": names}]);
    let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (name, layer) in names.iter().zip(layers) {
        members.insert(name.clone(), layer.clone());
    }
    members.insert(config_name, config);
    members.insert(
        "manifest.json".into(),
        serde_json::to_vec(&manifest).expect("manifest"),
    );
    let mut archive = tar::Builder::new(fs::File::create(path).expect("creating the archive"));
    for (name, bytes) in &members {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        archive
            .append_data(&mut header, name, bytes.as_slice())
            .expect("archive member");
    }
    archive.finish().expect("finishing the archive");
}
