//! Layer compression: which codecs rbuild writes, their media types, and the
//! encoder that compresses a layer on its own thread.
//!
//! Compression is the slow step of a layer export, so it never runs on the
//! thread that produces the tar (and computes the uncompressed diff_id):
//! [`BackgroundEncoder`] deflates gzip on every core (see `pgzip`), and runs
//! zstd, which is fast enough alone, on one thread of its own. Queues between
//! the stages are bounded, so memory stays at a few chunks whatever the layer
//! size.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use crate::pgzip::ParallelGzEncoder;

/// Gzip at level 1: zlib-rs at this level is a "quick" mode with fixed
/// Huffman codes, as fast as `pigz` on incompressible data, where level 2
/// took half as long again (512 MiB from /dev/urandom: 11 s against 16 s on
/// 2 cores). The price is size on text: hex text keeps 85% of its size at
/// level 1 against 54% at level 2. Export time is what users wait for;
/// `compression=zstd` gives both speed and size where the reader allows it.
const GZIP_LEVEL: u32 = 1;
/// zstd's own default level: already faster than gzip -1 and smaller.
const ZSTD_LEVEL: i32 = 3;
/// Size of the chunks handed from the tar producer to the compressor.
const CHUNK: usize = 256 * 1024;
/// Chunks that may wait in the queue; bounds the memory of a layer export.
const QUEUE_DEPTH: usize = 4;

pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// A plain tar.
    None,
    /// Gzip: what every client reads. The default.
    #[default]
    Gzip,
    /// Zstandard: smaller and faster, but Docker 20.10 and umoci cannot read it.
    Zstd,
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn layer_media_type(self) -> &'static str {
        match self {
            Compression::None => MEDIA_TYPE_LAYER,
            Compression::Gzip => MEDIA_TYPE_LAYER_GZIP,
            Compression::Zstd => MEDIA_TYPE_LAYER_ZSTD,
        }
    }

    /// The compression a layer media type (OCI or Docker) declares.
    pub fn from_layer_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            MEDIA_TYPE_LAYER | DOCKER_LAYER => Some(Compression::None),
            MEDIA_TYPE_LAYER_GZIP | DOCKER_LAYER_GZIP => Some(Compression::Gzip),
            MEDIA_TYPE_LAYER_ZSTD | DOCKER_LAYER_ZSTD => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Recognises a stream by its first bytes (magic numbers).
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The name used in file names and messages.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// A compression and the level to compress at: what `compression-level=` asks for.
/// `level` is `None` for rbuild's default level of the codec, so that asking for the
/// default by number names the same conversion as not asking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Codec {
    pub compression: Compression,
    level: Option<u32>,
}

impl Codec {
    /// `compression` at `level` (its default level when `None`), if the codec has it:
    /// gzip 0–9; zstd 1–19, the levels whose window every decoder takes (20–22 need a
    /// decoder that allows a larger window).
    pub fn new(compression: Compression, level: Option<u32>) -> Result<Codec, String> {
        let (range, default) = match compression {
            Compression::Gzip => (0..=9, GZIP_LEVEL),
            Compression::Zstd => (1..=19, ZSTD_LEVEL as u32),
            Compression::None if level.is_none() => return Ok(Codec { compression, level }),
            Compression::None => return Err("an uncompressed layer has no compression level".into()),
        };
        match level {
            Some(level) if !range.contains(&level) => Err(format!(
                "compression level {level} is out of range for {} ({}–{})",
                compression.name(),
                range.start(),
                range.end()
            )),
            Some(level) if level == default => Ok(Codec { compression, level: None }),
            level => Ok(Codec { compression, level }),
        }
    }

    /// The level asked for, when it is not the default.
    pub fn explicit_level(self) -> Option<u32> {
        self.level
    }

    /// The level the encoder uses.
    fn level(self) -> u32 {
        self.level.unwrap_or(match self.compression {
            Compression::Gzip => GZIP_LEVEL,
            Compression::Zstd => ZSTD_LEVEL as u32,
            Compression::None => 0,
        })
    }

    /// A name for file names: the compression's alone at the default level (what
    /// conversions were recorded under before levels existed), else with the level,
    /// so that layers compressed at one level are never taken for another's.
    pub fn key(self) -> String {
        match self.level {
            None => self.compression.name().to_string(),
            Some(level) => format!("{}-{level}", self.compression.name()),
        }
    }
}

impl From<Compression> for Codec {
    fn from(compression: Compression) -> Codec {
        Codec { compression, level: None }
    }
}

/// A single-threaded compressing writer with a deterministic output: the gzip
/// header carries no name and no time, so equal input gives equal bytes.
pub enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub fn new(codec: impl Into<Codec>, out: W) -> io::Result<Encoder<W>> {
        let codec = codec.into();
        Ok(match codec.compression {
            Compression::None => Encoder::None(out),
            Compression::Gzip => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    // 255 = "unknown OS": the byte would otherwise depend on
                    // the platform rbuild was built for.
                    .operating_system(255)
                    .write(out, flate2::Compression::new(codec.level())),
            ),
            Compression::Zstd => Encoder::Zstd(zstd::Encoder::new(out, codec.level() as i32)?),
        })
    }

    /// Writes the compressed stream's trailer and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// A decompressing reader for a layer stream of a known compression.
pub fn decoder<'a, R: Read + 'a>(
    compression: Compression,
    input: R,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(input),
        // Multi-member gzip is valid and some tools write it.
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(input))),
        Compression::Zstd => Box::new(zstd::Decoder::new(input)?),
    })
}

/// A decompressing reader that finds the compression from the stream itself.
pub fn auto_decoder<'a, R: Read + 'a>(input: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::new(input);
    let compression = Compression::detect(buffered.fill_buf()?);
    decoder(compression, buffered)
}

/// A compressing writer that does its work off the calling thread: parallel
/// gzip, or an [`Encoder`] on a thread of its own for the other codecs.
pub enum BackgroundEncoder<W: Write + Send + 'static> {
    Gzip(ParallelGzEncoder<W>),
    Other(PipelinedEncoder<W>),
}

impl<W: Write + Send + 'static> BackgroundEncoder<W> {
    pub fn spawn(codec: impl Into<Codec>, out: W) -> io::Result<BackgroundEncoder<W>> {
        let codec = codec.into();
        Ok(match codec.compression {
            Compression::Gzip => {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                BackgroundEncoder::Gzip(ParallelGzEncoder::new(out, codec.level(), threads)?)
            }
            _ => BackgroundEncoder::Other(PipelinedEncoder::spawn(codec, out)?),
        })
    }

    /// Ends the compressed stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            BackgroundEncoder::Gzip(e) => e.finish(),
            BackgroundEncoder::Other(e) => e.finish(),
        }
    }
}

impl<W: Write + Send + 'static> Write for BackgroundEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BackgroundEncoder::Gzip(e) => e.write(buf),
            BackgroundEncoder::Other(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            BackgroundEncoder::Gzip(e) => e.flush(),
            BackgroundEncoder::Other(e) => e.flush(),
        }
    }
}

/// A writer that hands its bytes to an [`Encoder`] running on another thread.
/// [`PipelinedEncoder::finish`] ends the stream and returns the inner writer.
pub struct PipelinedEncoder<W: Write + Send + 'static> {
    buffer: Vec<u8>,
    sender: Option<SyncSender<Vec<u8>>>,
    worker: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> PipelinedEncoder<W> {
    pub fn spawn(codec: impl Into<Codec>, out: W) -> io::Result<PipelinedEncoder<W>> {
        let mut encoder = Encoder::new(codec, out)?;
        let (sender, receiver) = sync_channel::<Vec<u8>>(QUEUE_DEPTH);
        let worker = std::thread::Builder::new()
            .name("rbuild-compress".to_string())
            .spawn(move || {
                for chunk in receiver {
                    encoder.write_all(&chunk)?;
                }
                encoder.finish()
            })?;
        Ok(PipelinedEncoder {
            buffer: Vec::with_capacity(CHUNK),
            sender: Some(sender),
            worker: Some(worker),
        })
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK));
        let sent = match &self.sender {
            Some(sender) => sender.send(chunk).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            // The worker stopped early: its own error says why.
            Err(self.join().err().unwrap_or_else(|| {
                io::Error::other("compressor thread stopped before the end of the stream")
            }))
        }
    }

    fn join(&mut self) -> io::Result<W> {
        self.sender = None;
        match self.worker.take() {
            Some(worker) => worker
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("compressor thread panicked"))),
            None => Err(io::Error::other("compressor already finished")),
        }
    }

    /// Flushes what is buffered, waits for the compressor to write the end of
    /// the stream, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.send_buffer()?;
        self.join()
    }
}

impl<W: Write + Send + 'static> Write for PipelinedEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buffer.len();
        let n = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == CHUNK {
            self.send_buffer()?;
        }
        Ok(n)
    }

    /// Data reaches the compressor in whole chunks; a flush has nothing to
    /// guarantee before [`PipelinedEncoder::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for PipelinedEncoder<W> {
    fn drop(&mut self) {
        // Closing the queue ends the worker; its result no longer matters.
        self.sender = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect()
    }

    fn round_trip(compression: Compression) {
        let data = sample();
        let mut enc = BackgroundEncoder::spawn(compression, Vec::new()).unwrap();
        for piece in data.chunks(10_000) {
            enc.write_all(piece).unwrap();
        }
        let compressed = enc.finish().unwrap();
        assert_eq!(Compression::detect(&compressed), compression);
        let mut back = Vec::new();
        decoder(compression, &compressed[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        let mut auto = Vec::new();
        auto_decoder(&compressed[..])
            .unwrap()
            .read_to_end(&mut auto)
            .unwrap();
        assert_eq!(auto, data);
    }

    #[test]
    fn every_codec_round_trips_through_the_pipeline() {
        round_trip(Compression::None);
        round_trip(Compression::Gzip);
        round_trip(Compression::Zstd);
    }

    #[test]
    fn gzip_output_is_deterministic_and_has_no_timestamp() {
        let data = sample();
        let once = |d: &[u8]| {
            let mut e = Encoder::new(Compression::Gzip, Vec::new()).unwrap();
            e.write_all(d).unwrap();
            e.finish().unwrap()
        };
        let a = once(&data);
        assert_eq!(a, once(&data));
        // MTIME (bytes 4..8) is zero, OS byte is "unknown".
        assert_eq!(&a[4..8], &[0, 0, 0, 0]);
        assert_eq!(a[9], 255);
    }

    #[test]
    fn media_types_map_both_ways() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            assert_eq!(
                Compression::from_layer_media_type(c.layer_media_type()),
                Some(c)
            );
        }
        assert_eq!(
            Compression::from_layer_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::from_layer_media_type("text/plain"), None);
    }

    #[test]
    fn levels_are_checked_and_the_default_level_is_no_level() {
        assert_eq!(Codec::new(Compression::Gzip, Some(GZIP_LEVEL)).unwrap(), Compression::Gzip.into());
        assert_eq!(Codec::new(Compression::Zstd, None).unwrap().key(), "zstd");
        assert_eq!(Codec::new(Compression::Gzip, Some(9)).unwrap().key(), "gzip-9");
        assert_eq!(Codec::new(Compression::Gzip, Some(0)).unwrap().key(), "gzip-0");
        assert_eq!(Codec::new(Compression::Zstd, Some(19)).unwrap().key(), "zstd-19");
        for (compression, level) in [(Compression::Gzip, 10), (Compression::Zstd, 0), (Compression::Zstd, 20), (Compression::None, 1)] {
            assert!(Codec::new(compression, Some(level)).is_err(), "{compression:?} {level}");
        }
    }

    #[test]
    fn a_level_changes_the_bytes_and_still_decodes() {
        let data: Vec<u8> = (0..20_000).flat_map(|i| format!("line {i} of a layer worth compressing\n").into_bytes()).collect();
        for compression in [Compression::Gzip, Compression::Zstd] {
            let at = |level| {
                let mut enc = BackgroundEncoder::spawn(Codec::new(compression, level).unwrap(), Vec::new()).unwrap();
                enc.write_all(&data).unwrap();
                enc.finish().unwrap()
            };
            let (default, high) = (at(None), at(Some(9)));
            assert!(default != high, "{compression:?}: level 9 made the default level's bytes");
            let mut back = Vec::new();
            decoder(compression, &high[..]).unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
        }
    }

    struct FailingWriter;
    impl Write for FailingWriter {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_sink_surfaces_its_error() {
        let mut enc = PipelinedEncoder::spawn(Compression::None, FailingWriter).unwrap();
        let data = sample();
        let result = enc.write_all(&data).and_then(|_| enc.finish().map(|_| ()));
        let err = result.unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
    }
}
