//! Bounds on what an archive may expand to: a layer blob unpacked into a
//! snapshot, or a local archive that ADD extracts. A small, hostile archive
//! can expand without end (a few MB of gzip are gigabytes of zeros, a tar of
//! empty entries creates millions of inodes), so unpacking counts as it goes
//! and stops at the first limit passed, with an error that names the limit and
//! the environment variable that raises it. The unpack's staging directory is
//! then dropped, so nothing is left in the store.
//!
//! The limits, each read from the environment when set:
//!
//! - `RBUILD_MAX_EXPANSION_RATIO` (default 200): how many times its own size
//!   an archive may expand to, beyond the first GiB (`RBUILD_EXPANSION_FLOOR`),
//!   which any archive may fill. Real layers expand 2–10 times; a gzip of
//!   zeros about 1,000 times.
//! - `RBUILD_MAX_EXPANDED_SIZE` (default 256 GiB): the most bytes of tar any
//!   one archive may expand to, whatever its size.
//! - `RBUILD_MAX_ARCHIVE_ENTRIES` (default 500,000): the most members one
//!   archive may have.
//!
//! `0` turns a limit off. Sizes take `K`, `M`, `G` and `T` suffixes (powers of
//! 1024).

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

const GIB: u64 = 1 << 30;

/// The limits on one archive's expansion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpansionLimits {
    /// Times the archive's own size it may expand to beyond `floor`; 0: any.
    pub max_ratio: u64,
    /// Bytes any archive may expand to, whatever its ratio.
    pub floor: u64,
    /// Bytes of tar one archive may expand to; 0: any.
    pub max_bytes: u64,
    /// Members one archive may hold; 0: any.
    pub max_entries: u64,
}

impl Default for ExpansionLimits {
    fn default() -> Self {
        ExpansionLimits { max_ratio: 200, floor: GIB, max_bytes: 256 * GIB, max_entries: 500_000 }
    }
}

/// An archive that passed a limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExpansionError {
    #[error(
        "it expands to more than {expanded} bytes from {compressed} (more than {ratio} times its size past the first {floor} bytes), \
         which only a decompression bomb does; set RBUILD_MAX_EXPANSION_RATIO (now {ratio}; 0 for no limit) to allow it"
    )]
    Ratio { expanded: u64, compressed: u64, ratio: u64, floor: u64 },
    #[error("it expands to more than {limit} bytes; set RBUILD_MAX_EXPANDED_SIZE (0 for no limit) to allow it")]
    Size { limit: u64 },
    #[error("it holds more than {limit} members; set RBUILD_MAX_ARCHIVE_ENTRIES (0 for no limit) to allow it")]
    Entries { limit: u64 },
    #[error("{name}={value:?} is not a number (a size may end in K, M, G or T)")]
    BadSetting { name: &'static str, value: String },
}

impl ExpansionLimits {
    /// The defaults, with each limit the environment sets instead.
    pub fn from_env() -> Result<Self, ExpansionError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The defaults, with each limit that `var` gives a value for instead.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ExpansionError> {
        let mut limits = ExpansionLimits::default();
        for (name, field) in [
            ("RBUILD_MAX_EXPANSION_RATIO", &mut limits.max_ratio),
            ("RBUILD_EXPANSION_FLOOR", &mut limits.floor),
            ("RBUILD_MAX_EXPANDED_SIZE", &mut limits.max_bytes),
            ("RBUILD_MAX_ARCHIVE_ENTRIES", &mut limits.max_entries),
        ] {
            if let Some(value) = var(name) {
                *field = parse_size(&value).ok_or(ExpansionError::BadSetting { name, value })?;
            }
        }
        Ok(limits)
    }

    /// A meter for one archive of `compressed` bytes.
    pub fn meter(&self, compressed: u64) -> Meter {
        Meter { state: Rc::new(MeterState { limits: *self, compressed, ..MeterState::default() }) }
    }

    /// The most bytes an archive of `compressed` bytes may expand to.
    fn allowed_bytes(&self, compressed: u64) -> u64 {
        let by_ratio = match self.max_ratio {
            0 => u64::MAX,
            ratio => compressed.saturating_mul(ratio).max(self.floor),
        };
        let absolute = if self.max_bytes == 0 { u64::MAX } else { self.max_bytes };
        by_ratio.min(absolute)
    }
}

/// `1234`, `64K`, `2G`: a count or a size in bytes.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 10),
        (i, 'm' | 'M') => (&text[..i], 20),
        (i, 'g' | 'G') => (&text[..i], 30),
        (i, 't' | 'T') => (&text[..i], 40),
        _ => (text, 0),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(1 << shift)
}

#[derive(Default)]
struct MeterState {
    limits: ExpansionLimits,
    compressed: u64,
    expanded: Cell<u64>,
    entries: Cell<u64>,
    /// The limit passed, once one was.
    exceeded: Cell<Option<ExpansionErrorKind>>,
}

#[derive(Clone, Copy, Debug)]
enum ExpansionErrorKind {
    Bytes,
    Entries,
}

/// Counts what one archive expands to; shared by the reader that counts bytes
/// ([`Meter::reader`]) and the loop that counts members ([`Meter::entry`]).
#[derive(Clone)]
pub struct Meter {
    state: Rc<MeterState>,
}

impl Meter {
    /// Wraps the decompressed stream: reading past the allowed bytes fails.
    pub fn reader<R: Read>(&self, inner: R) -> MeteredReader<R> {
        MeteredReader { inner, meter: self.clone() }
    }

    /// Counts one member; fails past the allowed number.
    pub fn entry(&self) -> Result<(), ExpansionError> {
        let s = &self.state;
        s.entries.set(s.entries.get() + 1);
        if s.limits.max_entries != 0 && s.entries.get() > s.limits.max_entries {
            s.exceeded.set(Some(ExpansionErrorKind::Entries));
        }
        self.exceeded().map_or(Ok(()), Err)
    }

    /// The limit passed so far, if any: what an unpack that failed reports
    /// instead of the read error it saw.
    pub fn exceeded(&self) -> Option<ExpansionError> {
        let s = &self.state;
        let limits = s.limits;
        s.exceeded.get().map(|kind| match kind {
            ExpansionErrorKind::Entries => ExpansionError::Entries { limit: limits.max_entries },
            ExpansionErrorKind::Bytes if limits.allowed_bytes(s.compressed) == limits.max_bytes => {
                ExpansionError::Size { limit: limits.max_bytes }
            }
            ExpansionErrorKind::Bytes => ExpansionError::Ratio {
                expanded: limits.allowed_bytes(s.compressed),
                compressed: s.compressed,
                ratio: limits.max_ratio,
                floor: limits.floor,
            },
        })
    }
}

/// A reader that fails once more than the allowed bytes came through it.
pub struct MeteredReader<R> {
    inner: R,
    meter: Meter,
}

impl<R: Read> Read for MeteredReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let s = &self.meter.state;
        let n = self.inner.read(buf)?;
        s.expanded.set(s.expanded.get() + n as u64);
        if s.expanded.get() > s.limits.allowed_bytes(s.compressed) {
            s.exceeded.set(Some(ExpansionErrorKind::Bytes));
            let error = self.meter.exceeded().expect("just set");
            return Err(io::Error::other(error));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_ratio: u64, floor: u64, max_bytes: u64, max_entries: u64) -> ExpansionLimits {
        ExpansionLimits { max_ratio, floor, max_bytes, max_entries }
    }

    #[test]
    fn sizes_and_counts_parse_with_suffixes() {
        assert_eq!(parse_size("500000"), Some(500_000));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size(" 2g "), Some(2 << 30));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        assert_eq!(parse_size("0"), Some(0));
        for bad in ["", "G", "-1", "1.5G", "lots", "99999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_ratio_applies_past_the_floor_and_the_size_caps_it() {
        let l = limits(200, 1000, 1_000_000, 0);
        assert_eq!(l.allowed_bytes(1), 1000, "the floor");
        assert_eq!(l.allowed_bytes(100), 20_000);
        assert_eq!(l.allowed_bytes(100_000), 1_000_000, "the absolute size");
        assert_eq!(limits(0, 1000, 0, 0).allowed_bytes(1), u64::MAX, "no limits");
    }

    #[test]
    fn reading_past_the_allowed_bytes_fails_with_the_ratio_error() {
        let meter = limits(10, 100, 0, 0).meter(20);
        let mut reader = meter.reader(io::repeat(0).take(1_000));
        let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
        let expected = ExpansionError::Ratio { expanded: 200, compressed: 20, ratio: 10, floor: 100 };
        assert_eq!(err.into_inner().unwrap().to_string(), expected.to_string());
        assert_eq!(meter.exceeded(), Some(expected));

        let meter = limits(10, 100, 0, 0).meter(20);
        let mut reader = meter.reader(io::repeat(0).take(200));
        assert_eq!(io::copy(&mut reader, &mut io::sink()).unwrap(), 200, "exactly the limit passes");
        assert_eq!(meter.exceeded(), None);
    }

    #[test]
    fn the_absolute_size_is_named_when_it_is_the_limit() {
        let meter = limits(1000, 0, 50, 0).meter(1_000);
        let mut reader = meter.reader(io::repeat(0).take(51));
        assert!(io::copy(&mut reader, &mut io::sink()).is_err());
        assert_eq!(meter.exceeded(), Some(ExpansionError::Size { limit: 50 }));
    }

    #[test]
    fn members_past_the_limit_fail() {
        let meter = limits(0, 0, 0, 3).meter(0);
        for _ in 0..3 {
            meter.entry().unwrap();
        }
        assert_eq!(meter.entry(), Err(ExpansionError::Entries { limit: 3 }));
        let unlimited = limits(0, 0, 0, 0).meter(0);
        for _ in 0..10 {
            unlimited.entry().unwrap();
        }
    }

    #[test]
    fn the_environment_overrides_each_limit() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
        };
        let l = ExpansionLimits::from_vars(vars(&[("RBUILD_MAX_EXPANSION_RATIO", "0"), ("RBUILD_MAX_ARCHIVE_ENTRIES", "10")])).unwrap();
        assert_eq!((l.max_ratio, l.max_entries), (0, 10));
        assert_eq!(l.max_bytes, ExpansionLimits::default().max_bytes);
        let err = ExpansionLimits::from_vars(vars(&[("RBUILD_MAX_ARCHIVE_ENTRIES", "many")])).unwrap_err();
        assert!(err.to_string().contains("RBUILD_MAX_ARCHIVE_ENTRIES=\"many\""), "{err}");
        assert_eq!(ExpansionLimits::from_vars(|_| None).unwrap(), ExpansionLimits::default());
    }
}
