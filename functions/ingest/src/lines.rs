//! Physical line numbers for CSV records, so reject line numbers match what a user sees
//! in an editor (the csv crate's own line counter does not count blank lines).

use std::io::Read;

/// A record ran past the bound of [`LineIndex::with_record_bound`].
#[derive(Debug, thiserror::Error)]
#[error("the record starting at byte {start} runs past {bound} bytes")]
pub struct RecordTooLong {
    pub start: u64,
    pub bound: u64,
}

/// Counts physical lines as bytes are read, so that a record's starting byte offset can be
/// turned into its physical line number (the csv crate's own line counter does not count
/// blank lines). Only newlines not yet attributed are kept: memory stays bounded by the
/// reader's look-ahead.
pub struct LineIndex<R> {
    inner: R,
    offset: u64,
    newlines: std::rc::Rc<std::cell::RefCell<LineState>>,
    /// How far past the current record's start reading may go.
    record_bound: Option<u64>,
}

#[derive(Default)]
pub struct LineState {
    /// Offsets of `\n` bytes not yet counted.
    pending: std::collections::VecDeque<u64>,
    /// Offsets of `\r` bytes not yet passed.
    returns: std::collections::VecDeque<u64>,
    before: u64,
    /// Byte offset where the record being read starts (set by the reader's user).
    pub record_start: u64,
    /// Blank lines stepped over so far by [`LineState::line_at`].
    pub blank_lines: u64,
    /// The last `\r` passed: a `\n` right after it ends a line, it is not a blank one.
    last_return: Option<u64>,
    /// Every `\n` read, and whether the last byte read was one (physical lines).
    newlines: u64,
    bytes: u64,
    ends_with_newline: bool,
}

impl LineState {
    /// The physical lines of what was read: every `\n` ends one, and a last line without
    /// one counts too.
    pub fn physical_lines(&self) -> u64 {
        self.newlines + u64::from(self.bytes > 0 && !self.ends_with_newline)
    }

    /// The physical lines of the record just read, which started at or after the last
    /// offset given to [`LineState::line_at`] and ends at byte `end`, where the csv reader
    /// stopped after it: one, plus every `\n` inside it (a quoted field running over
    /// several lines), its own line ending not counted.
    pub fn record_lines(&mut self, end: u64) -> u64 {
        let mut inner = 0;
        while let Some(nl) = self.pending.front().copied().filter(|nl| *nl < end) {
            self.pending.pop_front();
            self.before += 1;
            // The record's `\n` ending is at `end - 1` (a `\r\n` ending stops the csv
            // reader after the `\r`: its `\n` is at `end`).
            if nl + 1 != end {
                inner += 1;
            }
        }
        1 + inner
    }

    /// The 1-based physical line where the record read from `offset` starts. The csv
    /// reader reports the offset where it began reading, which is before any blank lines
    /// it skipped, so those are stepped over here. Offsets are asked in increasing order.
    pub fn line_at(&mut self, mut offset: u64) -> u64 {
        loop {
            while self.pending.front().is_some_and(|&nl| nl < offset) {
                self.pending.pop_front();
                self.before += 1;
            }
            while let Some(cr) = self.returns.front().copied().filter(|&cr| cr < offset) {
                self.returns.pop_front();
                self.last_return = Some(cr);
            }
            let next_nl = self.pending.front().copied();
            if next_nl == Some(offset) {
                // A blank `\n` line, or the `\n` of the previous line's `\r\n` (the csv
                // reader stops after the `\r`).
                if self.last_return.is_none_or(|cr| cr + 1 != offset) {
                    self.blank_lines += 1;
                }
                offset += 1;
            } else if next_nl == Some(offset + 1) && self.returns.front() == Some(&offset) {
                offset += 2; // a blank `\r\n` line
                self.blank_lines += 1;
            } else {
                return self.before + 1;
            }
        }
    }
}

impl<R: Read> Read for LineIndex<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(bound) = self.record_bound {
            let start = self.newlines.borrow().record_start;
            if self.offset > start.saturating_add(bound) {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, RecordTooLong { start, bound }));
            }
        }
        let n = self.inner.read(buf)?;
        let mut state = self.newlines.borrow_mut();
        for i in memchr::memchr2_iter(b'\n', b'\r', &buf[..n]) {
            let at = self.offset + i as u64;
            if buf[i] == b'\n' {
                state.pending.push_back(at);
                state.newlines += 1;
            } else {
                state.returns.push_back(at);
            }
        }
        if n > 0 {
            state.bytes += n as u64;
            state.ends_with_newline = buf[n - 1] == b'\n';
        }
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R> LineIndex<R> {
    pub fn new(inner: R, newlines: std::rc::Rc<std::cell::RefCell<LineState>>) -> Self {
        LineIndex { inner, offset: 0, newlines, record_bound: None }
    }

    /// Fails reads that go more than `bound` bytes past [`LineState::record_start`].
    pub fn with_record_bound(mut self, bound: u64) -> Self {
        self.record_bound = Some(bound);
        self
    }
}
