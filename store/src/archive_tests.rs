//! Archive tests: write archives, read them back with the tar crate, and check
//! what Docker, skopeo and podman rely on.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;

use serde_json::Value;

use super::*;
use crate::compress::decoder;
use crate::test_util::{one_layer_image, temp_store};
use crate::{ImageConfig, LayerOptions};

struct Member {
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: Vec<u8>,
}

/// Members by name, plus the order they came in.
fn read_archive(bytes: &[u8]) -> (Vec<String>, BTreeMap<String, Member>) {
    let mut archive = tar::Archive::new(bytes);
    let mut order = Vec::new();
    let mut members = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        order.push(name.clone());
        members.insert(
            name,
            Member {
                kind: header.entry_type(),
                mode: header.mode().unwrap(),
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                mtime: header.mtime().unwrap(),
                data,
            },
        );
    }
    (order, members)
}

fn json(members: &BTreeMap<String, Member>, name: &str) -> Value {
    serde_json::from_slice(&members[name].data).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn export(
    store: &Store,
    images: &[(StoredImage, Vec<Reference>)],
    format: ArchiveFormat,
) -> Vec<u8> {
    let mut out = Vec::new();
    write_archive(store, images, &format, &mut out).unwrap();
    out
}

fn refs(names: &[&str]) -> Vec<Reference> {
    names.iter().map(|n| Reference::parse(n).unwrap()).collect()
}

/// Every blob is named by its digest, and every member header is fixed.
fn check_blobs_and_headers(members: &BTreeMap<String, Member>) {
    for (name, m) in members {
        assert_eq!((m.uid, m.gid, m.mtime), (0, 0, 0), "{name}");
        if m.kind == tar::EntryType::Directory {
            assert_eq!(m.mode, 0o755, "{name}");
            continue;
        }
        assert_eq!(m.mode, 0o644, "{name}");
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            assert_eq!(
                Digest::of_bytes(&m.data).hex(),
                hex,
                "{name} does not match its name"
            );
        }
    }
}

#[test]
fn docker_archive_has_both_layouts_pointing_at_shared_blobs() {
    let (_d, store) = temp_store();
    let image = one_layer_image(&store, "hello");
    let bytes = export(
        &store,
        &[(image.clone(), refs(&["app:1.0", "app:latest"]))],
        ArchiveFormat::Docker { compression: Compression::Gzip.into() },
    );
    let (order, members) = read_archive(&bytes);
    check_blobs_and_headers(&members);

    let mut blob_names: Vec<String> = [
        &image.manifest_digest,
        &image.config_digest,
        &image.layers[0].digest,
    ]
    .iter()
    .map(|d| format!("blobs/sha256/{}", d.hex()))
    .collect();
    blob_names.sort();
    let mut expected = vec![
        "oci-layout".to_string(),
        "blobs/".into(),
        "blobs/sha256/".into(),
    ];
    expected.extend(blob_names);
    expected.extend([
        "index.json".into(),
        "manifest.json".into(),
        "repositories".into(),
    ]);
    assert_eq!(order, expected);

    assert_eq!(
        json(&members, "oci-layout"),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );

    let manifest = json(&members, "manifest.json");
    let layer_path = format!("blobs/sha256/{}", image.layers[0].digest.hex());
    assert_eq!(
        manifest,
        serde_json::json!([{
            "Config": format!("blobs/sha256/{}", image.config_digest.hex()),
            "RepoTags": ["app:1.0", "app:latest"],
            "Layers": [layer_path],
        }])
    );
    // Docker checks the uncompressed layer against the config's diff_id.
    let mut tar = Vec::new();
    decoder(Compression::Gzip, &members[&layer_path].data[..])
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(Digest::of_bytes(&tar), image.config.rootfs.diff_ids[0]);

    let index = json(&members, "index.json");
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], MEDIA_TYPE_INDEX);
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "one index entry per tag");
    for (entry, tag) in entries.iter().zip(["1.0", "latest"]) {
        assert_eq!(entry["digest"], image.manifest_digest.to_string());
        assert_eq!(entry["mediaType"], MEDIA_TYPE_MANIFEST);
        let manifest_blob = &members[&format!("blobs/sha256/{}", image.manifest_digest.hex())].data;
        assert_eq!(entry["size"], manifest_blob.len());
        assert_eq!(
            entry["annotations"][ANNOTATION_IMAGE_NAME],
            format!("docker.io/library/app:{tag}")
        );
        assert_eq!(entry["annotations"][ANNOTATION_REF_NAME], tag);
    }
    let oci_manifest: Value = serde_json::from_slice(
        &members[&format!("blobs/sha256/{}", image.manifest_digest.hex())].data,
    )
    .unwrap();
    assert_eq!(
        oci_manifest["config"]["digest"],
        image.config_digest.to_string()
    );
    assert_eq!(oci_manifest["config"]["mediaType"], MEDIA_TYPE_CONFIG);
    assert_eq!(
        oci_manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    assert_eq!(
        json(&members, "repositories"),
        serde_json::json!({"app": {"1.0": image.layers[0].digest.hex(), "latest": image.layers[0].digest.hex()}})
    );
}

#[test]
fn exports_are_byte_identical() {
    let (_d, store) = temp_store();
    let image = one_layer_image(&store, "same");
    let images = [(image, refs(&["b:1", "a:2", "localhost:5000/x/y:z"]))];
    for format in [
        ArchiveFormat::Docker { compression: Compression::Gzip.into() },
        ArchiveFormat::Oci { compression: Compression::Zstd.into() },
    ] {
        assert!(
            export(&store, &images, format) == export(&store, &images, format),
            "{format:?}"
        );
    }
}

#[test]
fn images_sharing_a_layer_store_it_once() {
    let (_d, store) = temp_store();
    let base = one_layer_image(&store, "base");
    let mut config = ImageConfig::new("linux", "amd64");
    config.config.set_env("X", "1");
    let other = store.put_image(&config, &base.layers).unwrap();
    assert_ne!(other.config_digest, base.config_digest);
    let bytes = export(
        &store,
        &[
            (base.clone(), refs(&["one"])),
            (other.clone(), refs(&["rbuild-test/two:1"])),
        ],
        ArchiveFormat::Docker { compression: Compression::Gzip.into() },
    );
    let (order, members) = read_archive(&bytes);
    let layer = format!("blobs/sha256/{}", base.layers[0].digest.hex());
    assert_eq!(order.iter().filter(|n| **n == layer).count(), 1);
    let manifest = json(&members, "manifest.json");
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["one:latest"]));
    assert_eq!(
        manifest[1]["RepoTags"],
        serde_json::json!(["rbuild-test/two:1"])
    );
    assert_eq!(manifest[1]["Layers"], serde_json::json!([layer]));
    let index = json(&members, "index.json");
    assert_eq!(
        index["manifests"][1]["annotations"][ANNOTATION_IMAGE_NAME],
        "docker.io/rbuild-test/two:1"
    );
}

#[test]
fn oci_zstd_archive_recompresses_layers_and_keeps_the_image_id() {
    let (_d, store) = temp_store();
    let image = one_layer_image(&store, "zstd me");
    let bytes = export(
        &store,
        &[(image.clone(), refs(&["app:z"]))],
        ArchiveFormat::Oci { compression: Compression::Zstd.into() },
    );
    let (_, members) = read_archive(&bytes);
    check_blobs_and_headers(&members);
    assert!(!members.contains_key("manifest.json"));
    assert!(!members.contains_key("repositories"));
    let index = json(&members, "index.json");
    let manifest_digest: Digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(
        manifest_digest, image.manifest_digest,
        "a new manifest lists the zstd layer"
    );
    let manifest = json(&members, &format!("blobs/sha256/{}", manifest_digest.hex()));
    assert_eq!(
        manifest["config"]["digest"],
        image.config_digest.to_string()
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let layer_digest: Digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let blob = &members[&format!("blobs/sha256/{}", layer_digest.hex())].data;
    assert_eq!(Compression::detect(blob), Compression::Zstd);
    let mut tar = Vec::new();
    decoder(Compression::Zstd, &blob[..])
        .unwrap()
        .read_to_end(&mut tar)
        .unwrap();
    assert_eq!(Digest::of_bytes(&tar), image.layers[0].diff_id);
    assert!(
        !members.contains_key(&format!("blobs/sha256/{}", image.layers[0].digest.hex())),
        "the gzip layer is not exported"
    );
}

#[test]
fn oci_gzip_archive_keeps_the_stored_manifest() {
    let (_d, store) = temp_store();
    let image = one_layer_image(&store, "gz");
    let bytes = export(
        &store,
        &[(image.clone(), refs(&["app"]))],
        ArchiveFormat::Oci { compression: Compression::Gzip.into() },
    );
    let (_, members) = read_archive(&bytes);
    let index = json(&members, "index.json");
    assert_eq!(
        index["manifests"][0]["digest"],
        image.manifest_digest.to_string()
    );
    assert_eq!(
        index["manifests"][0]["annotations"][ANNOTATION_REF_NAME],
        "latest"
    );
}

#[test]
fn zstd_layers_are_converted_to_gzip_for_docker() {
    let (_d, store) = temp_store();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), b"zstd stored").unwrap();
    let opts = LayerOptions {
        compression: Compression::Zstd,
        ..LayerOptions::default()
    };
    let layer = store.write_layer(src.path(), &opts).unwrap();
    let image = store
        .put_image(&ImageConfig::new("linux", "amd64"), &[layer])
        .unwrap();
    let bytes = export(
        &store,
        &[(image.clone(), refs(&["z:1"]))],
        ArchiveFormat::Docker { compression: Compression::Gzip.into() },
    );
    let (_, members) = read_archive(&bytes);
    let manifest = json(&members, "manifest.json");
    let layer_path = manifest[0]["Layers"][0].as_str().unwrap();
    assert_eq!(
        Compression::detect(&members[layer_path].data),
        Compression::Gzip
    );
    assert_eq!(
        manifest[0]["Config"],
        format!("blobs/sha256/{}", image.config_digest.hex())
    );
}

#[test]
fn docker_as_stored_keeps_plain_layers_and_converts_only_zstd() {
    let (_d, store) = temp_store();
    let mut images = Vec::new();
    for (content, compression) in [("plain", Compression::None), ("zstd", Compression::Zstd)] {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("f"), content).unwrap();
        let opts = LayerOptions { compression, ..LayerOptions::default() };
        let layer = store.write_layer(src.path(), &opts).unwrap();
        images.push(store.put_image(&ImageConfig::new("linux", "amd64"), &[layer]).unwrap());
    }
    let layer_of = |members: &BTreeMap<String, Member>| {
        let manifest = json(members, "manifest.json");
        let path = manifest[0]["Layers"][0].as_str().unwrap().to_string();
        Compression::detect(&members[&path].data)
    };

    let bytes = export(&store, &[(images[0].clone(), refs(&["p:1"]))], ArchiveFormat::DockerAsStored);
    let (_, members) = read_archive(&bytes);
    assert_eq!(layer_of(&members), Compression::None);
    let index = json(&members, "index.json");
    assert_eq!(index["manifests"][0]["digest"], images[0].manifest_digest.to_string());

    let bytes = export(&store, &[(images[1].clone(), refs(&["z:1"]))], ArchiveFormat::DockerAsStored);
    let (_, members) = read_archive(&bytes);
    assert_eq!(layer_of(&members), Compression::Gzip, "Docker 20.10 cannot read zstd");
}

#[test]
fn untagged_images_get_an_unnamed_entry() {
    let (_d, store) = temp_store();
    let image = one_layer_image(&store, "anon");
    let (_, members) = read_archive(&export(&store, &[(image, vec![])], ArchiveFormat::Docker { compression: Compression::Gzip.into() }));
    let index = json(&members, "index.json");
    assert!(index["manifests"][0].get("annotations").is_none());
    assert_eq!(
        json(&members, "manifest.json")[0]["RepoTags"],
        serde_json::json!([])
    );
    assert_eq!(json(&members, "repositories"), serde_json::json!({}));
}

#[test]
fn a_reference_without_tag_is_refused() {
    let (_d, store) = temp_store();
    let image = one_layer_image(&store, "x");
    let pinned = Reference::parse(&format!("app@{}", image.manifest_digest)).unwrap();
    let err = write_archive(
        &store,
        &[(image, vec![pinned])],
        &ArchiveFormat::Docker { compression: Compression::Gzip.into() },
        Vec::new(),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::MissingTag { .. }), "{err}");
}

#[test]
fn a_corrupt_blob_fails_the_export() {
    let (_d, store) = temp_store();
    let image = one_layer_image(&store, "x");
    let layer = store.blob_path(&image.layers[0].digest);
    let mut bytes = fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&layer, bytes).unwrap();
    let err = write_archive(
        &store,
        &[(image, refs(&["a"]))],
        &ArchiveFormat::Docker { compression: Compression::Gzip.into() },
        Vec::new(),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
}

#[test]
fn oci_dir_holds_the_same_layout() {
    let (_d, store) = temp_store();
    let image = one_layer_image(&store, "dir");
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    write_oci_dir(
        &store,
        &[(image.clone(), refs(&["app:1"]))],
        Compression::Gzip,
        &layout,
    )
    .unwrap();
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"],
        image.manifest_digest.to_string()
    );
    assert_eq!(fs::read(layout.join("oci-layout")).unwrap(), OCI_LAYOUT);
    for d in [
        &image.manifest_digest,
        &image.config_digest,
        &image.layers[0].digest,
    ] {
        let blob = fs::read(layout.join("blobs/sha256").join(d.hex())).unwrap();
        assert_eq!(&Digest::of_bytes(&blob), d);
    }
}
