//! Reading an image archive in one pass. Members arrive in whatever order the
//! writer chose (rbuild writes `index.json` last, `docker save` of old wrote
//! `manifest.json` last), so nothing can wait for the metadata: small
//! metadata files are kept in memory, and every other file streams into the
//! blob store as it comes, its digest checked against its name when it has
//! one (`blobs/sha256/<hex>`) and its diff_id computed on the way.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::diffid::{DiffId, DiffIdWriter};
use super::{import_error, normalise, stored_diff, BlobInfo, ImportSource};
use crate::compress::auto_decoder;
use crate::digest::{Digest, HashingWriter};
use crate::error::{Result, StoreError};
use crate::store::Store;

/// Metadata larger than this is refused (a real `manifest.json` or config is
/// kilobytes), so a hostile archive cannot exhaust memory.
const METADATA_MAX: u64 = 32 * 1024 * 1024;
/// Symlinks followed from one member before giving up.
const MAX_LINK_HOPS: usize = 16;
const CHUNK: usize = 256 * 1024;

pub(super) struct ArchiveSource {
    origin: PathBuf,
    metadata: HashMap<String, Vec<u8>>,
    /// Every streamed member, by its normalised path.
    by_path: HashMap<String, BlobInfo>,
    by_digest: HashMap<Digest, BlobInfo>,
    /// Symlink and hard link members: path → the path they point at.
    links: HashMap<String, String>,
}

/// Files whose content an import reads as JSON: `manifest.json`,
/// `index.json`, `repositories`, `oci-layout`, legacy `<id>.json` configs and
/// `<id>/json` layer metadata.
fn is_metadata(path: &str) -> bool {
    matches!(path, "manifest.json" | "index.json" | "oci-layout" | "repositories")
        || (!path.contains('/') && path.ends_with(".json"))
        || path.ends_with("/json")
        || path.ends_with("/VERSION")
}

impl ArchiveSource {
    pub(super) fn read(store: &Store, path: &Path) -> Result<ArchiveSource> {
        let file = File::open(path).map_err(|e| StoreError::io("open archive", path, e))?;
        let reader = auto_decoder(BufReader::new(file)).map_err(|e| StoreError::io("read archive", path, e))?;
        let mut source = ArchiveSource {
            origin: path.to_path_buf(),
            metadata: HashMap::new(),
            by_path: HashMap::new(),
            by_digest: HashMap::new(),
            links: HashMap::new(),
        };
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| import_error(path, format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| import_error(path, format!("not a readable tar archive: {e}")))?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(name) = normalise(&raw) else {
                return Err(import_error(path, format!("member {raw:?} leaves the archive")));
            };
            match entry.header().entry_type() {
                EntryType::Regular | EntryType::Continuous => source.add_file(store, &name, &mut entry)?,
                EntryType::Symlink | EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    // A symlink is relative to its directory, a hard link to the archive root.
                    let joined = if entry.header().entry_type() == EntryType::Symlink && !target.starts_with('/') {
                        match name.rsplit_once('/') {
                            Some((dir, _)) => format!("{dir}/{target}"),
                            None => target,
                        }
                    } else {
                        target
                    };
                    let target = normalise(&joined)
                        .ok_or_else(|| import_error(path, format!("link {name} points outside the archive")))?;
                    source.links.insert(name, target);
                }
                // Directories, and anything else, carry nothing an import reads.
                _ => {}
            }
        }
        Ok(source)
    }

    fn add_file(&mut self, store: &Store, name: &str, entry: &mut impl Read) -> Result<()> {
        let member = || self.origin.join(name);
        if is_metadata(name) {
            let mut bytes = Vec::new();
            entry
                .take(METADATA_MAX + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| StoreError::io("read archive member", member(), e))?;
            if bytes.len() as u64 > METADATA_MAX {
                return Err(import_error(&self.origin, format!("{name} is larger than {METADATA_MAX} bytes")));
            }
            self.metadata.insert(name.to_string(), bytes);
            return Ok(());
        }
        let claimed = name
            .strip_prefix("blobs/sha256/")
            .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok());
        let info = match &claimed {
            // Already stored (and verified then): the bytes here must still
            // match their name, since the diff_id is computed from them.
            Some(digest) if store.has_blob(digest) => {
                let mut sink = HashingWriter::new(io::sink());
                let diff = stream(entry, &mut sink, &member())?;
                let (actual, size, _) = sink.finish();
                mismatch_check(digest, &actual, &member())?;
                BlobInfo { digest: digest.clone(), size, diff }
            }
            _ => {
                let mut writer = store.blob_writer()?;
                let diff = stream(entry, &mut writer, &member())?;
                let (digest, size) = match &claimed {
                    Some(expected) => match writer.commit_expecting(expected) {
                        Ok(size) => (expected.clone(), size),
                        Err(StoreError::DigestMismatch { expected, actual, .. }) => {
                            return mismatch_check(&expected, &actual, &member()).map(|_| ())
                        }
                        Err(e) => return Err(e),
                    },
                    None => writer.commit()?,
                };
                BlobInfo { digest, size, diff }
            }
        };
        self.by_digest.insert(info.digest.clone(), info.clone());
        self.by_path.insert(name.to_string(), info);
        Ok(())
    }

    fn resolve_link(&self, path: &str) -> Result<String> {
        let mut current = path.to_string();
        for _ in 0..MAX_LINK_HOPS {
            match self.links.get(&current) {
                Some(target) => current = target.clone(),
                None => return Ok(current),
            }
        }
        Err(import_error(&self.origin, format!("{path}: too many levels of links")))
    }
}

/// Copies a member into `out`, computing its diff_id on the way.
fn stream(entry: &mut impl Read, out: &mut impl Write, member: &Path) -> Result<DiffId> {
    let mut diff = DiffIdWriter::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = entry.read(&mut buf).map_err(|e| StoreError::io("read archive member", member, e))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| StoreError::io("store archive member", member, e))?;
        diff.update(&buf[..n]);
    }
    Ok(diff.finish())
}

fn mismatch_check(expected: &Digest, actual: &Digest, member: &Path) -> Result<()> {
    if expected == actual {
        return Ok(());
    }
    Err(StoreError::DigestMismatch {
        what: format!("archive member {}", member.display()),
        expected: expected.clone(),
        actual: actual.clone(),
    })
}

impl ImportSource for ArchiveSource {
    fn origin(&self) -> &Path {
        &self.origin
    }

    fn metadata(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.metadata.get(name).cloned())
    }

    fn blob(&mut self, store: &Store, digest: &Digest) -> Result<BlobInfo> {
        if let Some(info) = self.by_digest.get(digest) {
            return Ok(info.clone());
        }
        // Reached through a link, or stored as metadata (a small JSON blob).
        let path = self.resolve_link(&format!("blobs/sha256/{}", digest.hex()))?;
        if let Some(info) = self.by_path.get(&path) {
            return Ok(info.clone());
        }
        if let Some(bytes) = self.metadata.get(&path) {
            let actual = store.write_blob(bytes)?;
            mismatch_check(digest, &actual, &self.origin.join(&path))?;
            return Ok(BlobInfo { digest: actual, size: bytes.len() as u64, diff: DiffId::SameAsBlob });
        }
        // Left out of the archive because the reader has it (docker save
        // never does this, but an OCI layout may share blobs).
        if store.has_blob(digest) {
            let (_, size) = store.open_blob(digest)?;
            return Ok(BlobInfo { digest: digest.clone(), size, diff: stored_diff(store, digest)? });
        }
        Err(import_error(&self.origin, format!("blob {digest} is missing from the archive")))
    }

    fn file(&mut self, store: &Store, path: &str) -> Result<BlobInfo> {
        let normalised = normalise(path)
            .ok_or_else(|| import_error(&self.origin, format!("{path:?} points outside the archive")))?;
        let resolved = self.resolve_link(&normalised)?;
        if let Some(info) = self.by_path.get(&resolved) {
            return Ok(info.clone());
        }
        if let Some(bytes) = self.metadata.get(&resolved) {
            let digest = store.write_blob(bytes)?;
            return Ok(BlobInfo { digest, size: bytes.len() as u64, diff: DiffId::SameAsBlob });
        }
        Err(import_error(&self.origin, format!("{path} is named in manifest.json but missing from the archive")))
    }
}
