//! Bounds on what one landing file may cost: a file that breaks one of them becomes
//! rejected rows or a whole-file failure with its reason, never an out-of-memory.
//!
//! - `max_row_bytes`: one CSV record, NDJSON line or JSON array element. An NDJSON line
//!   beyond it is a rejected row (skipped without being held); a CSV record beyond it is a
//!   rejected row when it ends within the CSV reader's buffer past the bound, and fails the
//!   file when it runs further (an unclosed quote swallows the rest of the file: there is no
//!   next record to resume at); a JSON array element beyond it fails the file.
//! - `max_field_bytes`: one CSV field or JSON string; a row with a longer one is rejected.
//! - `max_bytes`: the file's content after decompression; `max_compression_ratio`: content
//!   bytes per compressed byte, checked once the content passes [`RATIO_GRACE_BYTES`] (a
//!   gzip bomb fails after a few megabytes, not after the box is full).
//! - `max_rows`: data rows per file.
//! - `max_dates`: distinct event dates per file (each opens a lake part).
//! - `past_days`, `future_days`: the plausible window of event dates around the time the
//!   file is read; a row outside it is rejected.
//!
//! Every bound has a default and can be changed per channel spec (`[limits]`).

use std::io::{BufRead, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The content may exceed this many bytes before the compression ratio is checked.
pub const RATIO_GRACE_BYTES: u64 = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputLimits {
    pub max_row_bytes: usize,
    pub max_field_bytes: usize,
    pub max_bytes: u64,
    pub max_compression_ratio: u64,
    pub max_rows: u64,
    pub max_dates: usize,
    pub past_days: i64,
    pub future_days: i64,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_row_bytes: 1 << 20,
            max_field_bytes: 64 << 10,
            max_bytes: 8 << 30,
            max_compression_ratio: 100,
            max_rows: 20_000_000,
            max_dates: 1_000,
            past_days: 3_660,
            future_days: 31,
        }
    }
}

/// A bound broken while reading: carried inside an `io::Error` through the decoders and
/// the CSV reader, and turned into [`crate::source::FileError::Limit`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LimitExceeded(pub String);

impl LimitExceeded {
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, self)
    }
}

/// Counts the bytes read through it.
pub struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R> Counting<R> {
    pub fn new(inner: R) -> (Self, Arc<AtomicU64>) {
        let count = Arc::new(AtomicU64::new(0));
        (Counting { inner, count: count.clone() }, count)
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Fails the read once the content passes `max_bytes`, or, when `compressed` counts the
/// bytes it was decompressed from, once the ratio passes `max_ratio`.
pub struct ContentBound<R> {
    inner: R,
    read: u64,
    max_bytes: u64,
    compressed: Option<(Arc<AtomicU64>, u64)>,
}

impl<R> ContentBound<R> {
    pub fn new(inner: R, limits: &InputLimits, compressed: Option<Arc<AtomicU64>>) -> Self {
        ContentBound { inner, read: 0, max_bytes: limits.max_bytes, compressed: compressed.map(|c| (c, limits.max_compression_ratio)) }
    }

    fn check(&self) -> Result<(), LimitExceeded> {
        if self.read > self.max_bytes {
            return Err(LimitExceeded(format!("the content is larger than {} bytes (limits.max_bytes)", self.max_bytes)));
        }
        if let Some((compressed, ratio)) = &self.compressed {
            let packed = compressed.load(Ordering::Relaxed).max(1);
            if self.read > RATIO_GRACE_BYTES && self.read / packed > *ratio {
                return Err(LimitExceeded(format!(
                    "{} bytes decompressed from {packed}: more than {ratio} times the compressed size \
                     (limits.max_compression_ratio; a decompression bomb?)",
                    self.read
                )));
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for ContentBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.check().map_err(LimitExceeded::into_io)?;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for ContentBound<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.check().map_err(LimitExceeded::into_io)?;
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.read += amt as u64;
        self.inner.consume(amt);
    }
}

/// The longest string anywhere in a JSON value.
pub fn longest_string(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::String(s) => s.len(),
        serde_json::Value::Array(items) => items.iter().map(longest_string).max().unwrap_or(0),
        serde_json::Value::Object(members) => members.iter().map(|(k, v)| k.len().max(longest_string(v))).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn content_past_the_bound_fails_the_read() {
        let limits = InputLimits { max_bytes: 1000, ..InputLimits::default() };
        let mut r = ContentBound::new(std::io::repeat(b'a').take(5000), &limits, None);
        let err = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<LimitExceeded>()).expect("a LimitExceeded");
        assert!(inner.0.contains("limits.max_bytes"), "{inner}");
    }

    #[test]
    fn a_high_ratio_fails_only_after_the_grace() {
        let limits = InputLimits { max_compression_ratio: 10, ..InputLimits::default() };
        let packed = Arc::new(AtomicU64::new(1000));
        let mut r = ContentBound::new(std::io::repeat(b'a').take(RATIO_GRACE_BYTES), &limits, Some(packed.clone()));
        std::io::copy(&mut r, &mut std::io::sink()).expect("within the grace");
        let mut r = ContentBound::new(std::io::repeat(b'a').take(RATIO_GRACE_BYTES + 10), &limits, Some(packed));
        let err = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
        assert!(err.to_string().contains("decompression bomb"), "{err}");
    }

    #[test]
    fn longest_string_looks_everywhere() {
        let v = serde_json::json!({"a": [1, {"bb": "xyz"}], "cccc": null});
        assert_eq!(longest_string(&v), 4);
    }
}
