//! Content-addressed blobs under `blobs/sha256/<hex>`.
//!
//! A blob is streamed into a temp file under the store's `tmp/`, hashed while it
//! is written, fsynced, and only then renamed to its digest's name: a reader
//! never sees a half-written blob, and a killed writer leaves only a temp file.
//! Reads of small blobs (configs, manifests) re-check the digest, so a blob
//! corrupted on disk is reported instead of served.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::content::lease::{ContentRef, LeaseHandle};
use crate::digest::{Digest, HashingWriter};
use crate::error::{IoContext, Result, StoreError};
use crate::fs::sync_dir;
use crate::fs::writeback::EarlyWriteback;

/// Buffer between the producer (tar writer, compressor) and the temp file:
/// large enough that a blob costs few write syscalls.
const WRITE_BUFFER: usize = 256 * 1024;

/// The blobs of one store: where they live, where new ones are staged, and
/// the lease that records each one handed out.
#[derive(Clone, Debug)]
pub(crate) struct Blobs {
    dir: PathBuf,
    tmp: PathBuf,
    lease: LeaseHandle,
}

impl Blobs {
    /// The blobs under `dir` (`blobs/sha256`), staged in `tmp` (on the same
    /// filesystem), their uses recorded in `lease`.
    pub(crate) fn new(dir: PathBuf, tmp: PathBuf, lease: LeaseHandle) -> Blobs {
        Blobs { dir, tmp, lease }
    }

    pub(crate) fn blobs_dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob with digest `d` lives (whether or not it is there).
    pub(crate) fn blob_path(&self, d: &Digest) -> PathBuf {
        self.blobs_dir().join(d.hex())
    }

    pub(crate) fn has_blob(&self, d: &Digest) -> bool {
        // Registered before the check, so a blob found here is not collected
        // under the caller. Registering fails only if `gc.lock` cannot be
        // locked at all, which a yes/no answer has no way to report; the
        // store's next write or read would meet the same trouble and say so.
        let _ = self.lease.record(&ContentRef::Blob(d.clone()));
        self.blob_path(d).is_file()
    }

    /// Stores `bytes` and returns their digest. Writing a blob that is already
    /// there is a no-op.
    pub(crate) fn write_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of_bytes(bytes);
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut writer = self.blob_writer()?;
        if let Err(e) = writer.write_all(bytes) {
            return Err(StoreError::io("write", writer.temp_path(), e));
        }
        writer.commit_expecting(&digest)?;
        Ok(digest)
    }

    /// A writer for a blob whose digest is known only at the end.
    pub(crate) fn blob_writer(&self) -> Result<BlobWriter> {
        let file = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.tmp)
            .at("create a temp file in", &self.tmp)?;
        Ok(BlobWriter {
            inner: HashingWriter::new(BufWriter::with_capacity(WRITE_BUFFER, EarlyWriteback::new(file))),
            blobs_dir: self.dir.clone(),
            lease: self.lease.clone(),
        })
    }

    /// Reads a whole blob and checks it against its digest. Meant for small
    /// blobs (configs, manifests); stream layers with [`Blobs::open_blob`].
    pub(crate) fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        self.lease.record(&ContentRef::Blob(d.clone()))?;
        let path = self.blob_path(d);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobNotFound { digest: d.clone() })
            }
            Err(e) => return Err(StoreError::io("read blob", &path, e)),
        };
        let actual = Digest::of_bytes(&bytes);
        if &actual != d {
            return Err(StoreError::DigestMismatch {
                what: format!("blob {}", path.display()),
                expected: d.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Opens a blob for streaming, with its size. The caller that needs the
    /// content verified hashes it while reading (see `digest::HashingReader`).
    pub(crate) fn open_blob(&self, d: &Digest) -> Result<(File, u64)> {
        self.lease.record(&ContentRef::Blob(d.clone()))?;
        let path = self.blob_path(d);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::BlobNotFound { digest: d.clone() })
            }
            Err(e) => return Err(StoreError::io("open blob", &path, e)),
        };
        let size = file.metadata().at("stat blob", &path)?.len();
        Ok((file, size))
    }

    /// Copies a blob into `out`, checking its digest on the way. On a mismatch
    /// the bytes have already gone out, but the error fails whatever was being
    /// written (an archive), so a corrupt blob never ends in a finished export.
    pub(crate) fn copy_blob_to(&self, d: &Digest, out: &mut impl Write) -> Result<u64> {
        let (file, _) = self.open_blob(d)?;
        let mut reader = crate::digest::HashingReader::new(file);
        io::copy(&mut reader, out).map_err(|source| StoreError::ArchiveIo { source })?;
        let (actual, size) = reader.finish();
        if &actual != d {
            return Err(StoreError::DigestMismatch {
                what: format!("blob {}", self.blob_path(d).display()),
                expected: d.clone(),
                actual,
            });
        }
        Ok(size)
    }
}

/// A blob being written. Dropping it without [`BlobWriter::commit`] discards
/// the temp file.
pub struct BlobWriter {
    inner: HashingWriter<BufWriter<EarlyWriteback<NamedTempFile>>>,
    blobs_dir: PathBuf,
    /// The lease that registers the blob before it becomes visible.
    lease: LeaseHandle,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.inner.written()
    }

    fn temp_path(&mut self) -> PathBuf {
        self.inner.get_mut().get_ref().get_ref().path().to_path_buf()
    }

    /// Makes the blob visible under its digest and returns digest and size.
    pub fn commit(self) -> Result<(Digest, u64)> {
        let blobs_dir = self.blobs_dir;
        let (digest, size, buffered) = self.inner.finish();
        let temp = buffered
            .into_inner()
            .map_err(|e| e.into_error())
            .at("flush temp blob into", &blobs_dir)?
            .into_inner();
        self.lease.record(&ContentRef::Blob(digest.clone()))?;
        publish(temp, &blobs_dir.join(digest.hex()))?;
        Ok((digest, size))
    }

    /// Like [`BlobWriter::commit`], but refuses (and discards) content whose
    /// digest is not `expected`: for blobs that arrive with a claimed digest.
    pub fn commit_expecting(self, expected: &Digest) -> Result<u64> {
        let blobs_dir = self.blobs_dir;
        let (actual, size, buffered) = self.inner.finish();
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                what: "blob being stored".to_string(),
                expected: expected.clone(),
                actual,
            });
        }
        let temp = buffered
            .into_inner()
            .map_err(|e| e.into_error())
            .at("flush temp blob into", &blobs_dir)?
            .into_inner();
        self.lease.record(&ContentRef::Blob(actual.clone()))?;
        publish(temp, &blobs_dir.join(actual.hex()))?;
        Ok(size)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Renames a finished temp file to `dest` after making it durable. If `dest`
/// already exists it holds the same bytes (same digest), so the temp file is
/// simply dropped.
fn publish(temp: NamedTempFile, dest: &Path) -> Result<()> {
    if dest.is_file() {
        return Ok(());
    }
    let file = temp.as_file();
    file.sync_all().at("fsync", temp.path())?;
    // Blobs are shared read-only content; the temp file starts out 0600.
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .at("chmod", temp.path())?;
    temp.persist(dest)
        .map_err(|e| StoreError::io("rename temp blob to", dest, e.error))?;
    sync_dir(dest.parent().unwrap_or(dest))
}


#[cfg(test)]
mod tests {
    use crate::test_util::temp_store;
    use crate::{Digest, StoreError};
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_then_read_round_trips() {
        let (_dir, store) = temp_store();
        let d = store.write_blob(b"config bytes").unwrap();
        assert_eq!(d, Digest::of_bytes(b"config bytes"));
        assert!(store.has_blob(&d));
        assert_eq!(store.read_blob(&d).unwrap(), b"config bytes");
        let mode = std::fs::metadata(store.blob_path(&d))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        // A second write of the same bytes is a no-op.
        assert_eq!(store.write_blob(b"config bytes").unwrap(), d);
    }

    #[test]
    fn streamed_writer_digests_what_it_wrote_and_leaves_no_temp_files() {
        let (_dir, store) = temp_store();
        let data = vec![7u8; 1 << 20];
        let mut w = store.blob_writer().unwrap();
        for chunk in data.chunks(4096) {
            w.write_all(chunk).unwrap();
        }
        assert_eq!(w.written(), data.len() as u64);
        let (d, size) = w.commit().unwrap();
        assert_eq!(d, Digest::of_bytes(&data));
        assert_eq!(size, data.len() as u64);
        assert_eq!(std::fs::read(store.blob_path(&d)).unwrap(), data);
        assert_eq!(
            std::fs::read_dir(store.tmp_dir()).unwrap().count(),
            0
        );
    }

    #[test]
    fn dropped_writer_leaves_nothing_behind() {
        let (_dir, store) = temp_store();
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"half a blob").unwrap();
        drop(w);
        assert!(!store.has_blob(&Digest::of_bytes(b"half a blob")));
        assert_eq!(
            std::fs::read_dir(store.tmp_dir()).unwrap().count(),
            0
        );
    }

    #[test]
    fn commit_expecting_refuses_wrong_content() {
        let (_dir, store) = temp_store();
        let claimed = Digest::of_bytes(b"what was promised");
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"what arrived").unwrap();
        let err = w.commit_expecting(&claimed).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(!store.has_blob(&claimed));
        assert!(!store.has_blob(&Digest::of_bytes(b"what arrived")));
    }

    #[test]
    fn corrupt_blob_is_never_served() {
        let (_dir, store) = temp_store();
        let d = store.write_blob(b"good").unwrap();
        std::fs::write(store.blob_path(&d), b"evil").unwrap();
        let err = store.read_blob(&d).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        let err = store.copy_blob_to(&d, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
    }

    #[test]
    fn missing_blob_is_reported_by_digest() {
        let (_dir, store) = temp_store();
        let d = Digest::of_bytes(b"absent");
        let err = store.read_blob(&d).unwrap_err();
        assert!(matches!(err, StoreError::BlobNotFound { ref digest } if digest == &d));
        assert!(err.to_string().contains(d.hex()));
    }
}
