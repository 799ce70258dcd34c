//! Parallel gzip, the way pigz does it: the input is cut into fixed blocks,
//! each block is deflated on a worker thread (primed with the previous block's
//! last 32 KiB as dictionary, so the ratio stays close to a serial stream) and
//! ends with a sync flush, and the blocks are written in order between one
//! gzip header and one trailer whose CRC is combined from the blocks' CRCs.
//!
//! The output depends only on the data, the block size and the level — never
//! on the number of threads or on timing — so layers stay reproducible.
//! Blocks that deflate would expand (already-compressed files) are stored
//! instead, so incompressible data costs no extra bytes.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Crc, FlushCompress, Status};

/// Input per block. Large enough that per-block costs vanish, small enough
/// that the workers share a layer of a few MiB.
const BLOCK: usize = 512 * 1024;
/// Deflate's window: the dictionary carried over from the previous block.
const WINDOW: usize = 32 * 1024;
/// gzip header: magic, deflate, no flags, mtime 0, XFL 4 ("fastest"),
/// OS 255 ("unknown"): nothing in it depends on when or where it was made.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 4, 255];

struct Job {
    seq: u64,
    data: Vec<u8>,
    dictionary: Vec<u8>,
    last: bool,
}

struct Done {
    seq: u64,
    result: io::Result<(Vec<u8>, Crc)>,
}

/// A gzip writer that compresses on `threads` worker threads and writes the
/// stream into `out` from one more thread. [`ParallelGzEncoder::finish`] ends
/// the stream and returns `out`.
pub struct ParallelGzEncoder<W: Write + Send + 'static> {
    block: usize,
    buffer: Vec<u8>,
    dictionary: Vec<u8>,
    seq: u64,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> ParallelGzEncoder<W> {
    pub fn new(out: W, level: u32, threads: usize) -> io::Result<ParallelGzEncoder<W>> {
        ParallelGzEncoder::with_block_size(out, level, threads, BLOCK)
    }

    /// Like [`ParallelGzEncoder::new`] with another block size (the output
    /// depends on it).
    pub(crate) fn with_block_size(
        out: W,
        level: u32,
        threads: usize,
        block: usize,
    ) -> io::Result<ParallelGzEncoder<W>> {
        let threads = threads.max(1);
        // Bounded queues keep memory at a few blocks per worker.
        let (jobs, job_queue) = sync_channel::<Job>(threads);
        let (done, done_queue) = sync_channel::<Done>(threads);
        let job_queue = Arc::new(Mutex::new(job_queue));
        let mut workers = Vec::with_capacity(threads);
        for _ in 0..threads {
            let job_queue = Arc::clone(&job_queue);
            let done = done.clone();
            workers.push(
                std::thread::Builder::new()
                    .name("rbuild-gzip".to_string())
                    .spawn(move || work(&job_queue, &done, level))?,
            );
        }
        drop(done);
        let writer = std::thread::Builder::new()
            .name("rbuild-gzip-out".to_string())
            .spawn(move || write_in_order(out, done_queue))?;
        Ok(ParallelGzEncoder {
            block,
            buffer: Vec::with_capacity(block),
            dictionary: Vec::new(),
            seq: 0,
            jobs: Some(jobs),
            workers,
            writer: Some(writer),
        })
    }

    fn submit(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.block));
        let next_dictionary = data[data.len().saturating_sub(WINDOW)..].to_vec();
        let job = Job {
            seq: self.seq,
            data,
            dictionary: std::mem::replace(&mut self.dictionary, next_dictionary),
            last,
        };
        self.seq += 1;
        let sent = self
            .jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok());
        if sent {
            Ok(())
        } else {
            // The pipeline stopped early; the writer thread knows why.
            Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("gzip pipeline stopped early")))
        }
    }

    fn join(&mut self) -> io::Result<W> {
        self.jobs = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        match self.writer.take() {
            Some(writer) => writer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("gzip writer thread panicked"))),
            None => Err(io::Error::other("gzip stream already finished")),
        }
    }

    /// Compresses what is buffered as the final block, waits for everything
    /// to be written, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        self.join()
    }
}

impl<W: Write + Send + 'static> Write for ParallelGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.block - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == self.block {
            self.submit(false)?;
        }
        Ok(n)
    }

    /// Blocks are cut at fixed sizes for reproducibility; a flush cannot force
    /// one out early, and [`ParallelGzEncoder::finish`] is what ends the stream.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ParallelGzEncoder<W> {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = self.join();
        }
    }
}

fn work(job_queue: &Mutex<Receiver<Job>>, done: &SyncSender<Done>, level: u32) {
    loop {
        let job = match job_queue.lock() {
            Ok(queue) => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let result = compress_block(&job, level);
        if done
            .send(Done {
                seq: job.seq,
                result,
            })
            .is_err()
        {
            return;
        }
    }
}

fn compress_block(job: &Job, level: u32) -> io::Result<(Vec<u8>, Crc)> {
    let mut crc = Crc::new();
    crc.update(&job.data);
    if level > 0 && looks_incompressible(&job.data)? {
        return Ok((deflate(job, 0)?, crc));
    }
    let mut out = deflate(job, level)?;
    // Stored blocks cost 5 bytes per 64 KiB; anything beyond that means deflate
    // expanded the block.
    let stored_size = job.data.len() + 5 * (job.data.len() / 65_535 + 1) + 8;
    if out.len() > stored_size {
        out = deflate(job, 0)?;
    }
    Ok((out, crc))
}

/// Bytes deflated from each probe of a block.
const PROBE: usize = 4 * 1024;
/// Probes per block, spread evenly over it.
const PROBES: usize = 4;

/// Whether deflate would gain (almost) nothing on `data`: already-compressed
/// files, encrypted data, random bytes. Deflating such a block only to throw
/// the result away and store it costs as much as compressing it, so a few
/// evenly spread probes decide first, at a few percent of the cost. A block
/// is stored only when every probe is incompressible, so a block that is
/// half text still gets compressed. The decision depends only on the data,
/// which keeps the output reproducible.
fn looks_incompressible(data: &[u8]) -> io::Result<bool> {
    if data.len() < PROBES * PROBE * 2 {
        return Ok(false);
    }
    let stride = data.len() / PROBES;
    let mut out = Vec::with_capacity(2 * PROBE);
    for n in 0..PROBES {
        let probe = &data[n * stride..n * stride + PROBE];
        let mut compress = Compress::new(flate2::Compression::new(1), false);
        out.clear();
        compress
            .compress_vec(probe, &mut out, FlushCompress::Finish)
            .map_err(io::Error::other)?;
        // Under 97%: worth compressing (hex text keeps about 85% at level 1).
        if compress.total_in() < probe.len() as u64 || out.len() * 100 < probe.len() * 97 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One block as raw deflate: ends with a sync flush (byte-aligned, not final)
/// or, for the last block, with the final block bit.
fn deflate(job: &Job, level: u32) -> io::Result<Vec<u8>> {
    let mut compress = Compress::new(flate2::Compression::new(level), false);
    if !job.dictionary.is_empty() {
        compress
            .set_dictionary(&job.dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(job.data.len() / 4 + 4096);
        }
        let consumed = compress.total_in() as usize;
        let status = compress
            .compress_vec(&job.data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = compress.total_in() as usize == job.data.len();
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once deflate stops short of the end
            // of the output space.
            _ if !job.last && all_in && out.len() < out.capacity() => return Ok(out),
            _ => {}
        }
    }
}

/// Writes the header, then each block in sequence order as it completes, then
/// the trailer (CRC-32 and length mod 2^32 of the whole input).
fn write_in_order<W: Write>(mut out: W, done_queue: Receiver<Done>) -> io::Result<W> {
    out.write_all(&HEADER)?;
    let mut crc = Crc::new();
    let mut next = 0u64;
    let mut waiting: BTreeMap<u64, (Vec<u8>, Crc)> = BTreeMap::new();
    for done in done_queue {
        waiting.insert(done.seq, done.result?);
        while let Some((block, block_crc)) = waiting.remove(&next) {
            out.write_all(&block)?;
            crc.combine(&block_crc);
            next += 1;
        }
    }
    if !waiting.is_empty() {
        return Err(io::Error::other("gzip block missing from the stream"));
    }
    out.write_all(&crc.sum().to_le_bytes())?;
    out.write_all(&crc.amount().to_le_bytes())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Small blocks keep the tests fast; the dictionary still spans blocks.
    const TEST_BLOCK: usize = 48 * 1024;

    fn compress(data: &[u8], threads: usize, piece: usize) -> Vec<u8> {
        let mut enc =
            ParallelGzEncoder::with_block_size(Vec::new(), 1, threads, TEST_BLOCK).unwrap();
        for chunk in data.chunks(piece.max(1)) {
            enc.write_all(chunk).unwrap();
        }
        enc.finish().unwrap()
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        // A single-member reader: the stream must be one gzip member.
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn text(len: usize) -> Vec<u8> {
        let words = ["layer ", "tar ", "rbuild ", "gzip ", "block\n", "digest "];
        let mut out = Vec::with_capacity(len + 8);
        let mut i = 0usize;
        while out.len() < len {
            out.extend_from_slice(words[(i * 7 + i / 3) % words.len()].as_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect()
    }

    #[test]
    fn round_trips_at_block_edges() {
        for len in [
            0,
            1,
            TEST_BLOCK - 1,
            TEST_BLOCK,
            TEST_BLOCK + 1,
            3 * TEST_BLOCK,
        ] {
            let data = text(len);
            assert_eq!(gunzip(&compress(&data, 2, 10_000)), data, "length {len}");
        }
    }

    #[test]
    fn output_does_not_depend_on_threads_or_write_sizes() {
        let data = text(3 * TEST_BLOCK + 12_345);
        let reference = compress(&data, 1, TEST_BLOCK);
        assert_eq!(compress(&data, 4, 777), reference);
        assert_eq!(compress(&data, 2, 1), compress(&data[..], 3, 65_536));
        // The dictionary keeps the ratio: repetitive text compresses well.
        assert!(
            reference.len() < data.len() / 5,
            "{} of {}",
            reference.len(),
            data.len()
        );
    }

    #[test]
    fn incompressible_data_is_stored_not_expanded() {
        let data = noise(2 * TEST_BLOCK + 99);
        let gz = compress(&data, 2, 65_536);
        assert_eq!(gunzip(&gz), data);
        assert!(
            gz.len() < data.len() + data.len() / 1000 + 64,
            "{} for {}",
            gz.len(),
            data.len()
        );
    }

    #[test]
    fn probes_store_only_blocks_with_nothing_to_gain() {
        let block = 4 * PROBES * PROBE;
        assert!(looks_incompressible(&noise(block)).unwrap());
        assert!(!looks_incompressible(&text(block)).unwrap());
        // One compressible probe is enough to compress the whole block.
        let mut mixed = noise(block);
        mixed[block / 2..block / 2 + 2 * PROBE].copy_from_slice(&text(2 * PROBE));
        assert!(!looks_incompressible(&mixed).unwrap());
        // Too short to probe: deflate decides.
        assert!(!looks_incompressible(&noise(PROBES * PROBE)).unwrap());
    }

    #[test]
    fn a_block_of_text_and_noise_is_still_compressed() {
        let mut data = text(TEST_BLOCK / 2);
        data.extend(noise(TEST_BLOCK / 2));
        let gz = compress(&data, 2, 4096);
        assert_eq!(gunzip(&gz), data);
        assert!(gz.len() < data.len() * 3 / 4, "{} of {}", gz.len(), data.len());
    }

    #[test]
    fn header_is_fixed() {
        let gz = compress(b"x", 1, 1);
        assert_eq!(&gz[..10], &HEADER);
    }

    struct FullDisk;
    impl Write for FullDisk {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("no space left"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_sink_stops_the_pipeline_with_its_error() {
        let mut enc = ParallelGzEncoder::with_block_size(FullDisk, 1, 2, TEST_BLOCK).unwrap();
        let data = text(8 * TEST_BLOCK);
        let err = enc
            .write_all(&data)
            .and_then(|_| enc.finish().map(|_| ()))
            .unwrap_err();
        assert!(err.to_string().contains("no space left"), "{err}");
    }
}
