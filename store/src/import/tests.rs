use std::io::{Read, Write};
use std::path::Path;

use super::*;
use crate::archive::{write_archive, write_oci_dir, ArchiveFormat};
use crate::test_util::{one_layer_image, temp_store};

fn reference(name: &str) -> Reference {
    Reference::parse(name).unwrap()
}

/// Exports `image` as `format` into a file of its own.
fn exported(store: &Store, image: &StoredImage, names: &[&str], format: ArchiveFormat, dir: &Path) -> PathBuf {
    let path = dir.join(format!("archive-{}.tar", names.len()));
    let names: Vec<Reference> = names.iter().map(|n| reference(n)).collect();
    let mut file = std::fs::File::create(&path).unwrap();
    write_archive(store, &[(image.clone(), names)], &format, &mut file).unwrap();
    path
}

use std::path::PathBuf;

/// The members of a tar, in order.
fn members(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// A tar of regular files (and symlinks, given as `-> target`).
fn write_tar(path: &Path, members: &[(&str, Vec<u8>)]) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in members {
        let mut header = tar::Header::new_gnu();
        if let Some(target) = data.strip_prefix(b"-> ") {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            builder
                .append_link(&mut header, name, std::str::from_utf8(target).unwrap())
                .unwrap();
            continue;
        }
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, &data[..]).unwrap();
    }
    builder.finish().unwrap();
}

#[test]
fn docker_archive_round_trips_plain_and_gzipped() {
    let (dir, source) = temp_store();
    let image = one_layer_image(&source, "imported");
    let archive = exported(&source, &image, &["app:1", "registry.example/team/app:2"], ArchiveFormat::Docker { compression: Compression::Gzip.into() }, dir.path());

    let (_dir2, store) = temp_store();
    let imported = store.import_archive(&archive).unwrap();
    assert_eq!(imported.len(), 1);
    let (got, names) = &imported[0];
    assert_eq!(got.config_digest, image.config_digest, "the image id survives");
    assert_eq!(got.layers[0].diff_id, image.layers[0].diff_id);
    assert_eq!(names, &vec![reference("app:1"), reference("registry.example/team/app:2")]);
    assert!(store.lookup(&image.config_digest.to_string()).unwrap().is_some());
    assert!(store.resolve_tag(&reference("app:1")).unwrap().is_none(), "importing does not tag");
    let snapshot = store.ensure_snapshot(&got.layers[0]).unwrap();
    assert_eq!(std::fs::read_to_string(snapshot.join("file")).unwrap(), "imported");

    // The same archive gzipped, into a store that already has the blobs.
    let gz_path = dir.path().join("archive.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&gz_path).unwrap(), flate2::Compression::fast());
    gz.write_all(&std::fs::read(&archive).unwrap()).unwrap();
    gz.finish().unwrap();
    let again = store.import_archive(&gz_path).unwrap();
    assert_eq!(again[0].0.config_digest, image.config_digest);
}

#[test]
fn a_saved_image_loads_with_the_manifest_digest_it_had() {
    // As a build without -o stores it (plain layers), as a pull stores it
    // (gzip with Docker's media type) and as a build with -o does (gzip).
    let (dir, source) = temp_store();
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("f"), b"built").unwrap();
    let options = crate::LayerOptions { compression: Compression::None, ..Default::default() };
    let plain = source.write_layer(src.path(), &options).unwrap();
    let built = source.put_image(&ImageConfig::new("linux", "amd64"), &[plain]).unwrap();
    let gzip = one_layer_image(&source, "pulled");
    let docker_layer = Layer {
        media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
        ..gzip.layers[0].clone()
    };
    let pulled = source.put_image_with_config_blob(&gzip.config_digest, &[docker_layer]).unwrap();
    assert_ne!(pulled.manifest_digest, gzip.manifest_digest);
    for (what, image) in [("built", &built), ("pulled", &pulled), ("gzip", &gzip)] {
        let archive = exported(&source, image, &["app:1"], ArchiveFormat::DockerAsStored, dir.path());
        let (_d, store) = temp_store();
        let loaded = store.import_archive(&archive).unwrap();
        assert_eq!(loaded[0].0.manifest_digest, image.manifest_digest, "{what}");
        assert_eq!(loaded[0].0.layers, image.layers, "{what}");
        assert_eq!(store.lookup(&image.config_digest.to_string()).unwrap().as_ref(), Some(&loaded[0].0), "{what}");
    }
}

#[test]
fn oci_archive_with_zstd_layers_and_oci_layout_selectors() {
    let (dir, source) = temp_store();
    let image = one_layer_image(&source, "oci");
    let archive = exported(
        &source,
        &image,
        &["app:1"],
        ArchiveFormat::Oci { compression: Compression::Zstd.into() },
        dir.path(),
    );
    let (_d, store) = temp_store();
    let imported = store.import_archive_images(&archive, &Platform::parse("linux/amd64").unwrap()).unwrap();
    assert_eq!(imported[0].image.config_digest, image.config_digest);
    assert_eq!(imported[0].image.layers[0].media_type, Compression::Zstd.layer_media_type());
    assert_eq!(imported[0].names, vec![reference("app:1")]);
    assert_eq!(imported[0].ref_name.as_deref(), Some("1"));

    let layout = dir.path().join("layout");
    let other = one_layer_image(&source, "other");
    write_oci_dir(
        &source,
        &[(image.clone(), vec![reference("app:1")]), (other.clone(), vec![reference("app:2")])],
        Compression::Gzip,
        &layout,
    )
    .unwrap();
    let host = Platform::host();
    let (_d2, store) = temp_store();
    let all = store.import_oci_layout(&layout, &LayoutSelector::All, &host).unwrap();
    assert_eq!(all.len(), 2);
    let by_tag = store.import_oci_layout(&layout, &LayoutSelector::Tag("2".into()), &host).unwrap();
    assert_eq!(by_tag.len(), 1);
    assert_eq!(by_tag[0].image.config_digest, other.config_digest);
    let digest = all[0].source_digest.clone().unwrap();
    let by_digest = store.import_oci_layout(&layout, &LayoutSelector::Digest(digest), &host).unwrap();
    assert_eq!(by_digest[0].image.config_digest, all[0].image.config_digest);

    let err = store.import_oci_layout(&layout, &LayoutSelector::Tag("3".into()), &host).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("no image is tagged \"3\"") && message.contains("tags: 1, 2"), "{message}");
    let err = store.import_oci_layout(dir.path(), &LayoutSelector::All, &host).unwrap_err();
    assert!(err.to_string().contains("oci-layout file is missing"), "{err}");
}

#[test]
fn a_blob_that_does_not_match_its_name_is_refused() {
    let (dir, source) = temp_store();
    let image = one_layer_image(&source, "honest");
    let archive = exported(&source, &image, &["app:1"], ArchiveFormat::Docker { compression: Compression::Gzip.into() }, dir.path());
    let layer_name = format!("blobs/sha256/{}", image.layers[0].digest.hex());
    let tampered: Vec<(String, Vec<u8>)> = members(&archive)
        .into_iter()
        .map(|(name, data)| {
            if name == layer_name {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(b"evil").unwrap();
                (name, gz.finish().unwrap())
            } else {
                (name, data)
            }
        })
        .filter(|(name, _)| !name.ends_with('/'))
        .collect();
    let bad = dir.path().join("tampered.tar");
    let borrowed: Vec<(&str, Vec<u8>)> = tampered.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    write_tar(&bad, &borrowed);

    let (_d, store) = temp_store();
    let err = store.import_archive(&bad).unwrap_err();
    assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&layer_name), "the error names the member: {err}");
    assert!(!store.has_blob(&image.layers[0].digest));
    assert!(store.lookup(&image.config_digest.to_string()).unwrap().is_none(), "no image is recorded");
}

/// A docker archive of the pre-25 shape: `<id>/layer.tar` files, a config
/// named `<hex>.json`, and a layer shared by a symlink.
fn legacy_archive(path: &Path, diff_id_of_second: Option<&str>) -> Digest {
    let mut layer = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_mode(0o644);
    header.set_cksum();
    layer.append_data(&mut header, "hello", &b"hello"[..]).unwrap();
    let layer = layer.into_inner().unwrap();
    let diff_id = Digest::of_bytes(&layer);
    let second = diff_id_of_second.map(str::to_string).unwrap_or_else(|| diff_id.to_string());
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/hello"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}","{second}"]}}}}"#
    );
    let config_digest = Digest::of_bytes(config.as_bytes());
    let manifest = format!(
        r#"[{{"Config":"{}.json","RepoTags":["legacy:1"],"Layers":["aaa/layer.tar","bbb/layer.tar"]}}]"#,
        config_digest.hex()
    );
    write_tar(
        path,
        &[
            ("aaa/VERSION", b"1.0".to_vec()),
            ("aaa/layer.tar", layer),
            ("bbb/layer.tar", b"-> ../aaa/layer.tar".to_vec()),
            (&format!("{}.json", config_digest.hex()), config.into_bytes()),
            ("manifest.json", manifest.into_bytes()),
        ],
    );
    config_digest
}

#[test]
fn legacy_docker_archive_with_shared_layers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy.tar");
    let config = legacy_archive(&path, None);
    let (_d, store) = temp_store();
    let imported = store.import_archive(&path).unwrap();
    let (image, names) = &imported[0];
    assert_eq!(image.config_digest, config);
    assert_eq!(names, &vec![reference("legacy:1")]);
    assert_eq!(image.layers.len(), 2);
    assert_eq!(image.layers[0], image.layers[1]);
    assert_eq!(image.layers[0].media_type, Compression::None.layer_media_type());
}

#[test]
fn a_layer_that_does_not_match_its_diff_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy.tar");
    let wrong = Digest::of_bytes(b"something else");
    legacy_archive(&path, Some(&wrong.to_string()));
    let (_d, store) = temp_store();
    let err = store.import_archive(&path).unwrap_err();
    assert!(matches!(&err, StoreError::DigestMismatch { expected, .. } if expected == &wrong), "{err}");
    assert!(err.to_string().contains("bbb/layer.tar"), "{err}");

    let not_an_archive = dir.path().join("empty.tar");
    write_tar(&not_an_archive, &[("readme", b"hi".to_vec())]);
    let err = store.import_archive(&not_an_archive).unwrap_err();
    assert!(err.to_string().contains("neither a docker archive"), "{err}");
}
