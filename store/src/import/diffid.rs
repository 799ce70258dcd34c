//! The diff_id of a layer blob (the digest of its uncompressed tar), computed
//! while the blob streams past on its way into the store, so an import reads
//! every byte once.

use std::io::{self, Write};

use crate::compress::Compression;
use crate::digest::{Digest, HashingWriter};

/// The first bytes needed to tell gzip and zstd from a plain tar.
const MAGIC_LEN: usize = 4;

type Hasher = HashingWriter<io::Sink>;

/// What [`DiffIdWriter::finish`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DiffId {
    /// An uncompressed blob: its diff_id is its own digest.
    SameAsBlob,
    /// A compressed blob and the digest of its uncompressed content.
    Compressed(Compression, Digest),
    /// The blob looked compressed but did not decompress: not a usable layer
    /// (it may well be a config or manifest, which is fine).
    Invalid(String),
}

impl DiffId {
    /// The blob's compression; `None` when it does not decompress.
    pub(crate) fn compression(&self) -> Option<Compression> {
        match self {
            DiffId::SameAsBlob => Some(Compression::None),
            DiffId::Compressed(c, _) => Some(*c),
            DiffId::Invalid(_) => None,
        }
    }
}

/// A writer that decompresses what it is given and hashes the result.
pub(crate) struct DiffIdWriter {
    state: State,
}

enum State {
    Sniffing(Vec<u8>),
    Plain,
    Gzip(Box<flate2::write::MultiGzDecoder<Hasher>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Hasher>>),
    Failed(String),
}

impl DiffIdWriter {
    pub(crate) fn new() -> DiffIdWriter {
        DiffIdWriter { state: State::Sniffing(Vec::with_capacity(MAGIC_LEN)) }
    }

    /// Feeds bytes of the blob. Never fails: a stream that does not
    /// decompress is remembered as [`DiffId::Invalid`].
    pub(crate) fn update(&mut self, mut buf: &[u8]) {
        if let State::Sniffing(head) = &mut self.state {
            let take = (MAGIC_LEN - head.len()).min(buf.len());
            head.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if head.len() < MAGIC_LEN {
                return;
            }
            let head = std::mem::take(head);
            self.start(&head);
        }
        self.feed(buf);
    }

    fn start(&mut self, head: &[u8]) {
        let hasher = || HashingWriter::new(io::sink());
        self.state = match Compression::detect(head) {
            Compression::None => State::Plain,
            Compression::Gzip => State::Gzip(Box::new(flate2::write::MultiGzDecoder::new(hasher()))),
            Compression::Zstd => match zstd::stream::write::Decoder::new(hasher()) {
                Ok(decoder) => State::Zstd(Box::new(decoder)),
                Err(e) => State::Failed(format!("cannot start a zstd decoder: {e}")),
            },
        };
        self.feed(head);
    }

    fn feed(&mut self, buf: &[u8]) {
        if buf.is_empty() {
            return;
        }
        let result = match &mut self.state {
            State::Gzip(decoder) => decoder.write_all(buf),
            State::Zstd(decoder) => decoder.write_all(buf),
            State::Sniffing(_) | State::Plain | State::Failed(_) => Ok(()),
        };
        if let Err(e) = result {
            self.state = State::Failed(e.to_string());
        }
    }

    pub(crate) fn finish(mut self) -> DiffId {
        if let State::Sniffing(head) = &mut self.state {
            let head = std::mem::take(head);
            self.start(&head);
        }
        match self.state {
            State::Sniffing(_) | State::Plain => DiffId::SameAsBlob,
            State::Failed(reason) => DiffId::Invalid(reason),
            State::Gzip(decoder) => match decoder.finish() {
                Ok(hasher) => DiffId::Compressed(Compression::Gzip, hasher.finish().0),
                Err(e) => DiffId::Invalid(e.to_string()),
            },
            State::Zstd(mut decoder) => match decoder.flush() {
                Ok(()) => DiffId::Compressed(Compression::Zstd, decoder.into_inner().finish().0),
                Err(e) => DiffId::Invalid(e.to_string()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff_id_of(bytes: &[u8], chunk: usize) -> DiffId {
        let mut w = DiffIdWriter::new();
        for piece in bytes.chunks(chunk.max(1)) {
            w.update(piece);
        }
        w.finish()
    }

    #[test]
    fn plain_gzip_and_zstd() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let expected = Digest::of_bytes(&data);
        assert_eq!(diff_id_of(&data, 1000), DiffId::SameAsBlob);
        assert_eq!(diff_id_of(b"ab", 1), DiffId::SameAsBlob, "shorter than the magic");

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        for chunk in [1, 3, 4096] {
            assert_eq!(diff_id_of(&gz, chunk), DiffId::Compressed(Compression::Gzip, expected.clone()));
        }
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(diff_id_of(&zst, 777), DiffId::Compressed(Compression::Zstd, expected));

        let truncated = &gz[..gz.len() / 2];
        assert!(matches!(diff_id_of(truncated, 512), DiffId::Invalid(_)), "{:?}", diff_id_of(truncated, 512));
        assert!(matches!(diff_id_of(&[0x1f, 0x8b, 0, 0, 1, 2, 3], 512), DiffId::Invalid(_)));
    }
}
