//! Helpers shared by the unit tests.

use std::fs;

use crate::{ImageConfig, LayerOptions, Store, StoredImage};

/// A store in a fresh temp directory (kept alive by the returned guard).
pub(crate) fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    (dir, store)
}

/// Stores a one-layer image whose only file holds `content`.
pub(crate) fn one_layer_image(store: &Store, content: &str) -> StoredImage {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("file"), content).unwrap();
    let layer = store
        .write_layer(src.path(), &LayerOptions::default())
        .unwrap();
    let mut config = ImageConfig::new("linux", "amd64");
    config.config.cmd = Some(vec!["cat".to_string(), "/file".to_string()]);
    store.put_image(&config, &[layer]).unwrap()
}
