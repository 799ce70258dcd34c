//! Starting the disk writes of a big file while it is still being written.
//!
//! Blobs and archives are fsynced before they are published. Left alone, the
//! kernel writes a fresh file out only when the fsync asks for it, so the
//! fsync of a 512 MiB layer waits for all of it at once (0.8 s on a disk
//! that writes 600 MB/s). Asking for writeback of each finished stretch
//! (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, which does not wait) lets the
//! disk work while the data is still being produced, and the final fsync
//! only waits for the tail. It is a hint: nothing depends on it for
//! durability, and an error from it is ignored.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};

/// Writeback is started after each stretch of this many bytes.
const STRETCH: u64 = 8 << 20;

/// A file writer that starts writeback as it goes.
pub struct EarlyWriteback<F: Write + AsFd> {
    file: F,
    written: u64,
    started: u64,
}

impl<F: Write + AsFd> EarlyWriteback<F> {
    pub fn new(file: F) -> EarlyWriteback<F> {
        EarlyWriteback { file, written: 0, started: 0 }
    }

    pub fn get_ref(&self) -> &F {
        &self.file
    }

    pub fn get_mut(&mut self) -> &mut F {
        &mut self.file
    }

    pub fn into_inner(self) -> F {
        self.file
    }

    fn start_writeback(&mut self) {
        let len = self.written - self.started;
        // SAFETY: a plain system call on a descriptor this writer owns; it
        // reads no memory of this process.
        unsafe {
            libc::sync_file_range(
                self.file.as_fd().as_raw_fd(),
                self.started as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.started = self.written;
    }
}

impl<F: Write + AsFd> Write for EarlyWriteback<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= STRETCH {
            self.start_writeback();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn writes_through_and_starts_writeback_per_stretch() {
        let file = tempfile::tempfile().unwrap();
        let mut w = EarlyWriteback::new(file);
        let data: Vec<u8> = (0..(STRETCH as usize * 2 + 1234)).map(|i| (i % 251) as u8).collect();
        for chunk in data.chunks(100_000) {
            w.write_all(chunk).unwrap();
        }
        // Writeback was started at least once, and never lags a stretch behind.
        assert!(w.started >= STRETCH && w.started <= w.written);
        assert!(w.written - w.started < STRETCH);
        assert_eq!(w.written, data.len() as u64);
        let mut file = w.into_inner();
        std::io::Seek::rewind(&mut file).unwrap();
        let mut back = Vec::new();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
    }
}
