//! Content digests. rbuild addresses every blob, layer and image by the sha256 of
//! its bytes, written the OCI way: `sha256:<64 lowercase hex>`. Only sha256 is
//! accepted: it is what every client rbuild talks to produces, and a single
//! algorithm keeps the on-disk layout (`blobs/sha256/<hex>`) flat.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

const ALGORITHM: &str = "sha256";
const HEX_LEN: usize = 64;

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("invalid digest {input:?}: expected \"sha256:<64 hex digits>\"")]
    Malformed { input: String },
    #[error("invalid digest {input:?}: unsupported algorithm {algorithm:?} (only sha256)")]
    UnsupportedAlgorithm { input: String, algorithm: String },
}

/// A sha256 content digest, `sha256:<64 lowercase hex>`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(bytes))
    }

    /// Builds a digest from a raw 32-byte sha256 output.
    pub fn from_sha256(bytes: [u8; 32]) -> Digest {
        Digest {
            hex: hex::encode(bytes),
        }
    }

    /// Builds a digest from 64 hex digits (either case; stored lower case).
    pub fn from_hex(hex: &str) -> Result<Digest, DigestError> {
        if is_hex64(hex) {
            Ok(Digest {
                hex: hex.to_ascii_lowercase(),
            })
        } else {
            Err(DigestError::Malformed {
                input: hex.to_string(),
            })
        }
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        Digest::from_sha256(hasher.finalize().into())
    }

    /// The 64 hex digits, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The algorithm name, always `sha256`.
    pub fn algorithm(&self) -> &'static str {
        ALGORITHM
    }

    /// The first 12 hex digits, as `docker images` shows image ids.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == HEX_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err(DigestError::Malformed {
                input: s.to_string(),
            });
        };
        if algorithm != ALGORITHM {
            return Err(DigestError::UnsupportedAlgorithm {
                input: s.to_string(),
                algorithm: algorithm.to_string(),
            });
        }
        // Upper-case hex is refused rather than normalised: the OCI spec
        // requires lower case, and accepting both would let two spellings of one
        // digest name two different files in a layout.
        if is_hex64(hex) && !hex.bytes().any(|b| b.is_ascii_uppercase()) {
            Ok(Digest {
                hex: hex.to_string(),
            })
        } else {
            Err(DigestError::Malformed {
                input: s.to_string(),
            })
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{ALGORITHM}:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> oci_spec::image::Digest {
        oci_spec::image::Sha256Digest::from_str(d.hex())
            .expect("a Digest always holds 64 lowercase hex digits")
            .into()
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;

    fn try_from(d: &oci_spec::image::Digest) -> Result<Digest, DigestError> {
        d.as_ref().parse()
    }
}

/// A writer that computes the sha256 of everything written through it and
/// counts the bytes, passing them on to `inner`.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The digest and size of what was written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (Digest::from_hasher(self.hasher), self.written, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies `size` bytes from `from` into `to` while another thread hashes
/// them: checking a blob as it is copied costs no extra time when a second
/// core is free. Returns the digest and the bytes copied (fewer than `size`
/// if `from` ends early).
pub fn copy_hashed(from: impl io::Read, size: u64, to: &mut dyn Write) -> io::Result<(Digest, u64)> {
    const CHUNK: usize = 1 << 20;
    let (chunks, queue) = std::sync::mpsc::sync_channel::<std::sync::Arc<Vec<u8>>>(4);
    let hasher = std::thread::Builder::new()
        .name("rbuild-hash".to_string())
        .spawn(move || {
            let mut sha = Sha256::new();
            let mut total = 0u64;
            for chunk in queue {
                sha.update(&chunk[..]);
                total += chunk.len() as u64;
            }
            (Digest::from_sha256(sha.finalize().into()), total)
        })?;
    let mut from = from.take(size);
    let copied = (|| -> io::Result<()> {
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            io::Read::take(&mut from, CHUNK as u64).read_to_end(&mut chunk)?;
            if chunk.is_empty() {
                return Ok(());
            }
            let chunk = std::sync::Arc::new(chunk);
            if chunks.send(std::sync::Arc::clone(&chunk)).is_err() {
                return Err(io::Error::other("hashing thread stopped"));
            }
            to.write_all(&chunk)?;
        }
    })();
    drop(chunks);
    let hashed = hasher.join().map_err(|_| io::Error::other("hashing thread panicked"))?;
    copied.map(|()| hashed)
}

/// A reader that computes the sha256 of everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: io::Read> HashingReader<R> {
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    /// The digest and size of what was read so far.
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.read)
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn copy_hashed_copies_and_hashes_what_it_copies() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 1000) as u8).collect();
        let mut out = Vec::new();
        let (digest, n) = copy_hashed(&data[..], data.len() as u64, &mut out).unwrap();
        assert_eq!((digest, n), (Digest::of_bytes(&data), data.len() as u64));
        assert_eq!(out, data);
        // Only `size` bytes are taken; a short source says how much there was.
        let mut out = Vec::new();
        let (digest, n) = copy_hashed(&data[..], 1_500_001, &mut out).unwrap();
        assert_eq!((digest, n), (Digest::of_bytes(&data[..1_500_001]), 1_500_001));
        let (_, n) = copy_hashed(&data[..10], 100, &mut Vec::new()).unwrap();
        assert_eq!(n, 10);
        assert_eq!(copy_hashed(&b""[..], 0, &mut Vec::new()).unwrap().0.to_string(), EMPTY);
    }

    #[test]
    fn digest_of_empty_input() {
        assert_eq!(Digest::of_bytes(b"").to_string(), EMPTY);
    }

    #[test]
    fn parses_and_displays_round_trip() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.hex(), &EMPTY[7..]);
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn rejects_malformed_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8555",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(
                matches!(bad.parse::<Digest>(), Err(DigestError::Malformed { .. })),
                "{bad:?} should be malformed"
            );
        }
        assert!(matches!(
            "sha512:abcd".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm { .. })
        ));
    }

    #[test]
    fn serde_uses_the_string_form() {
        let d = Digest::of_bytes(b"");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY}\""));
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }

    #[test]
    fn converts_to_and_from_oci_spec() {
        let d = Digest::of_bytes(b"x");
        let oci: oci_spec::image::Digest = (&d).into();
        assert_eq!(oci.to_string(), d.to_string());
        assert_eq!(Digest::try_from(&oci).unwrap(), d);
    }

    #[test]
    fn hashing_writer_and_reader_agree_with_of_bytes() {
        let data = b"hello layer".repeat(1000);
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(&data).unwrap();
        let (digest, size, inner) = w.finish();
        assert_eq!(digest, Digest::of_bytes(&data));
        assert_eq!(size, data.len() as u64);
        assert_eq!(inner, data);

        let mut r = HashingReader::new(&data[..]);
        let mut sink = Vec::new();
        r.read_to_end(&mut sink).unwrap();
        assert_eq!(r.finish(), (Digest::of_bytes(&data), data.len() as u64));
    }
}
