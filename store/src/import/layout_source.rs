//! Reading an OCI image layout directory: blobs are copied into the store
//! (checked against their names, diff_id computed on the way) only when an
//! image being imported needs them; blobs the store already has are read only
//! to check that the layout's copy is the same and to learn its diff_id.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::diffid::{DiffId, DiffIdWriter};
use super::{import_error, BlobInfo, ImportSource};
use crate::digest::{Digest, HashingWriter};
use crate::error::{Result, StoreError};
use crate::store::Store;

const CHUNK: usize = 256 * 1024;
/// A real `index.json` is kilobytes.
const INDEX_MAX: u64 = 32 * 1024 * 1024;

pub(super) struct LayoutSource {
    dir: PathBuf,
    seen: HashMap<Digest, BlobInfo>,
}

impl LayoutSource {
    pub(super) fn open(dir: &Path) -> Result<LayoutSource> {
        let layout = dir.join("oci-layout");
        let text = fs::read_to_string(&layout).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => import_error(dir, "it is not an OCI image layout: the oci-layout file is missing".into()),
            _ => StoreError::io("read", &layout, e),
        })?;
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("imageLayoutVersion").and_then(|v| v.as_str()).map(str::to_string));
        if version.as_deref() != Some("1.0.0") {
            return Err(import_error(dir, format!("unsupported oci-layout {}", text.trim())));
        }
        Ok(LayoutSource { dir: dir.to_path_buf(), seen: HashMap::new() })
    }
}

impl ImportSource for LayoutSource {
    fn origin(&self) -> &Path {
        &self.dir
    }

    fn metadata(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.dir.join(name);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("open", &path, e)),
        };
        let mut bytes = Vec::new();
        file.take(INDEX_MAX + 1).read_to_end(&mut bytes).map_err(|e| StoreError::io("read", &path, e))?;
        if bytes.len() as u64 > INDEX_MAX {
            return Err(import_error(&self.dir, format!("{name} is larger than {INDEX_MAX} bytes")));
        }
        Ok(Some(bytes))
    }

    fn blob(&mut self, store: &Store, digest: &Digest) -> Result<BlobInfo> {
        if let Some(info) = self.seen.get(digest) {
            return Ok(info.clone());
        }
        let path = self.dir.join("blobs").join("sha256").join(digest.hex());
        // A layout's blobs are plain files; a symlink could point anywhere.
        let meta = fs::symlink_metadata(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => import_error(&self.dir, format!("blob {digest} is missing from the layout")),
            _ => StoreError::io("stat", &path, e),
        })?;
        if !meta.is_file() {
            return Err(import_error(&self.dir, format!("blob {digest} is not a regular file")));
        }
        let mut file = File::open(&path).map_err(|e| StoreError::io("open", &path, e))?;
        let (actual, size, diff) = if store.has_blob(digest) {
            let mut sink = HashingWriter::new(io::sink());
            let diff = copy(&mut file, &mut sink, &path)?;
            let (actual, size, _) = sink.finish();
            (actual, size, diff)
        } else {
            let mut writer = store.blob_writer()?;
            let diff = copy(&mut file, &mut writer, &path)?;
            match writer.commit_expecting(digest) {
                Ok(size) => (digest.clone(), size, diff),
                Err(StoreError::DigestMismatch { actual, .. }) => (actual, 0, diff),
                Err(e) => return Err(e),
            }
        };
        if &actual != digest {
            return Err(StoreError::DigestMismatch {
                what: format!("layout blob {}", path.display()),
                expected: digest.clone(),
                actual,
            });
        }
        let info = BlobInfo { digest: digest.clone(), size, diff };
        self.seen.insert(digest.clone(), info.clone());
        Ok(info)
    }

    fn file(&mut self, _store: &Store, path: &str) -> Result<BlobInfo> {
        Err(import_error(&self.dir, format!("{path}: an OCI layout names blobs by digest only")))
    }
}

fn copy(from: &mut File, out: &mut impl Write, path: &Path) -> Result<DiffId> {
    let mut diff = DiffIdWriter::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = from.read(&mut buf).map_err(|e| StoreError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| StoreError::io("store layout blob", path, e))?;
        diff.update(&buf[..n]);
    }
    Ok(diff.finish())
}
