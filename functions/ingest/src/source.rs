//! Reading export files row by row, whatever their format: decompression (gzip,
//! detected by its magic bytes), byte-order marks, encodings, CSV dialects, NDJSON, JSON
//! arrays (streamed element by element) and Parquet. Rows are handed to a [`RowHandler`]
//! as they are read; memory does not grow with the file.

use std::borrow::Cow;
use std::io::{BufRead, BufReader, Read};

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::Value;

use crate::bounds::{longest_string, ContentBound, Counting, InputLimits, LimitExceeded};
use crate::lines::{LineIndex, LineState, RecordTooLong};
use crate::sink::SinkError;
use crate::spec::{Compression, Encoding, Format, PathStep, Source};

/// Whole-file failures.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the file is empty (no header row)")]
    Empty,
    #[error("missing required column(s) {missing:?}; the header has {found:?}")]
    MissingColumns { missing: Vec<String>, found: Vec<String> },
    /// The content itself is broken (truncated gzip, JSON array cut short, ...): a retry
    /// reads the same bytes.
    #[error("unreadable file at line {line}: {reason}")]
    Corrupt { line: u64, reason: String },
    /// Reading the object failed (network): a retry may succeed.
    /// Parquet needs its footer: anything else is not a Parquet file.
    #[error("unreadable file at line 0: not a readable Parquet file: {0}")]
    NotParquet(#[source] parquet::errors::ParquetError),
    #[error("unreadable file at line 0: not a readable Parquet file: {0}")]
    ParquetRows(#[source] arrow::error::ArrowError),
    #[error("cannot read the file at line {line}: {source}")]
    Read { line: u64, source: std::io::Error },
    /// A bound of the spec's `[limits]` broken: the file is refused (a retry reads the
    /// same bytes).
    #[error("file refused at line {line}: {reason}")]
    Limit { line: u64, reason: String },
    #[error("cannot write parsed rows: {0}")]
    Sink(#[from] SinkError),
}

/// A cell whose text cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CellError {
    #[error("column {column:?} is not valid UTF-8")]
    NotUtf8 {
        column: String,
        #[source]
        source: std::str::Utf8Error,
    },
    /// A Parquet value Arrow cannot display.
    #[error(transparent)]
    Format(#[from] arrow::error::ArrowError),
}

impl FileError {
    pub fn retryable(&self) -> bool {
        matches!(self, FileError::Read { .. })
    }

    /// Classifies an I/O error met while reading: errors of the object stream itself are
    /// transient (marked by [`Transient`]); anything else (decompression, framing) means
    /// the bytes are bad.
    pub fn from_io(line: u64, e: std::io::Error) -> FileError {
        if e.get_ref().is_some_and(|inner| inner.is::<Transient>()) {
            FileError::Read { line, source: e }
        } else if let Some(limit) = e.get_ref().and_then(|inner| inner.downcast_ref::<LimitExceeded>()) {
            FileError::Limit { line, reason: limit.0.clone() }
        } else {
            let reason = match e.kind() {
                std::io::ErrorKind::UnexpectedEof => format!("truncated or corrupt compressed stream ({e})"),
                _ => format!("corrupt or truncated content ({e})"),
            };
            FileError::Corrupt { line, reason }
        }
    }
}

/// Marks errors of the underlying object stream (S3 body) as transient.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Transient(#[source] pub std::io::Error);

/// Wraps the object stream so its errors are recognisable as transient.
pub struct TransientReader<R>(pub R);

impl<R: Read> Read for TransientReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(|e| std::io::Error::new(e.kind(), Transient(e)))
    }
}

/// One row as the mapping sees it.
pub trait Row {
    /// The value of a column or JSON path, trimmed; `None` when absent or blank.
    fn value(&self, source: &Source) -> Result<Option<Cow<'_, str>>, CellError>;
    /// The row as found in the file, for the rejects table.
    fn raw(&self) -> String;
}

/// Receives a file's header and rows.
pub trait RowHandler {
    /// Column names of a flat file (CSV header, Parquet schema).
    fn header(&mut self, names: &[String]) -> Result<(), FileError>;
    fn row(&mut self, line: u64, row: &dyn Row) -> Result<(), FileError>;
    /// A row the reader itself could not make sense of (invalid JSON, wrong field count).
    fn bad_row(&mut self, line: u64, reason: String, raw: String) -> Result<(), FileError>;
    /// Physical lines that are not rows, passed over for `reason`.
    fn skipped(&mut self, reason: Skip, lines: u64);
    /// The file's physical lines, told once at its end (a Parquet file: its rows). Every
    /// one of them is the first line of a row or was told to [`RowHandler::skipped`], but
    /// for JSON array elements sharing a line (each element is a row).
    fn lines(&mut self, lines: u64);
}

/// Why a physical line is not a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Empty or white space only (a CSV record of blank cells only too).
    Blank,
    /// Before the first row: a CSV header, a JSON array's opening `[`.
    Header,
    /// After a row's first line: a quoted CSV field running over several lines, a JSON
    /// array element written over several lines, the array's closing `]`.
    Continuation,
}

/// Decompresses when needed and reports whether a UTF-8 byte-order mark was found (and
/// skipped). The content is bounded by `limits.max_bytes` and, when compressed, by
/// `limits.max_compression_ratio`.
pub fn open(
    input: Box<dyn Read + Send>,
    compression: Compression,
    limits: &InputLimits,
) -> Result<(Box<dyn BufRead + Send>, bool), FileError> {
    let (input, packed) = Counting::new(input);
    let mut reader = BufReader::with_capacity(256 * 1024, input);
    let head = reader.fill_buf().map_err(|e| FileError::from_io(1, e))?;
    if head.is_empty() {
        return Err(FileError::Empty);
    }
    let gzip = match compression {
        Compression::Gzip => true,
        Compression::None => false,
        Compression::Auto => head.starts_with(&[0x1f, 0x8b]),
    };
    let mut reader: Box<dyn BufRead + Send> = if gzip {
        let decoded = BufReader::with_capacity(256 * 1024, flate2::bufread::MultiGzDecoder::new(reader));
        Box::new(ContentBound::new(decoded, limits, Some(packed)))
    } else {
        Box::new(ContentBound::new(reader, limits, None))
    };
    let head = reader.fill_buf().map_err(|e| FileError::from_io(1, e))?;
    if head.is_empty() {
        return Err(FileError::Empty);
    }
    let bom = head.starts_with(b"\xEF\xBB\xBF");
    if bom {
        reader.consume(3);
    }
    Ok((reader, bom))
}

/// The CSV reader's buffer.
const CSV_BUFFER: usize = 256 * 1024;

/// Decodes a field's bytes.
pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<Cow<'_, str>, std::str::Utf8Error> {
    match encoding {
        // ASCII is valid UTF-8 and identical in Windows-1252.
        Encoding::Windows1252 if !bytes.is_ascii() => Ok(encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes).0),
        _ => std::str::from_utf8(bytes).map(Cow::Borrowed),
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

// ---------------------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------------------

struct CsvRow<'a> {
    record: &'a csv::ByteRecord,
    encoding: Encoding,
    format: &'a Format,
}

impl Row for CsvRow<'_> {
    fn value(&self, source: &Source) -> Result<Option<Cow<'_, str>>, CellError> {
        let Source::Column { name, index } = source else {
            return Ok(None);
        };
        let bytes = trim_ascii(self.record.get(*index).unwrap_or_default());
        if bytes.is_empty() {
            return Ok(None);
        }
        let text = decode(bytes, self.encoding).map_err(|source| CellError::NotUtf8 { column: name.clone(), source })?;
        let trimmed = match text {
            Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
            Cow::Owned(s) if s.trim().len() == s.len() => Cow::Owned(s),
            Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
        };
        Ok((!trimmed.is_empty()).then_some(trimmed))
    }

    fn raw(&self) -> String {
        raw_csv(self.record, self.encoding, self.format)
    }
}

fn raw_csv(record: &csv::ByteRecord, encoding: Encoding, format: &Format) -> String {
    let mut w = csv::WriterBuilder::new()
        .delimiter(format.separator)
        .quote(format.quote)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let _ = w.write_byte_record(record);
    let bytes = w.into_inner().unwrap_or_default();
    let text = match encoding {
        Encoding::Utf8 => String::from_utf8_lossy(&bytes).into_owned(),
        Encoding::Windows1252 => encoding_rs::WINDOWS_1252.decode_without_bom_handling(&bytes).0.into_owned(),
    };
    text.trim_end_matches('\n').to_string()
}

/// Reads a CSV file: header (or the spec's column names), then every non-blank record.
pub fn read_csv(
    input: Box<dyn BufRead + Send>,
    bom: bool,
    format: &Format,
    limits: &InputLimits,
    handler: &mut dyn RowHandler,
) -> Result<(), FileError> {
    let encoding = if bom { Encoding::Utf8 } else { format.encoding };
    let lines = std::rc::Rc::new(std::cell::RefCell::new(LineState::default()));
    // A record may span at most max_row_bytes past its start (plus what the CSV reader
    // reads ahead): an unclosed quote fails the file instead of filling memory.
    let input = LineIndex::new(input, lines.clone()).with_record_bound(limits.max_row_bytes as u64 + CSV_BUFFER as u64);
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .delimiter(format.separator)
        .quote(format.quote)
        .buffer_capacity(CSV_BUFFER)
        .from_reader(input);
    let mut record = csv::ByteRecord::new();
    let max_row = limits.max_row_bytes;
    let read = |reader: &mut csv::Reader<LineIndex<Box<dyn BufRead + Send>>>, record: &mut csv::ByteRecord| {
        let start = reader.position().byte();
        let line = reader.position().line();
        lines.borrow_mut().record_start = start;
        reader.read_byte_record(record).map_err(|e| match e.into_kind() {
            csv::ErrorKind::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<RecordTooLong>()) => {
                let line = lines.borrow_mut().line_at(start);
                FileError::Limit {
                    line,
                    reason: format!("the record starting here is longer than {max_row} bytes (limits.max_row_bytes; an unclosed quote?)"),
                }
            }
            csv::ErrorKind::Io(io) => FileError::from_io(line, io),
            other => FileError::Corrupt { line, reason: format!("{other:?}") },
        })
    };
    // Blank lines are counted as the next record's line is found (the csv reader skips
    // empty lines itself), and at the end from where the last record ended. Each record's
    // physical lines past its first are continuation lines.
    let mut blank_records = 0u64;
    let mut continuation = 0u64;
    let mut end = 0u64;
    // The first line of the record just read (ending at byte `end`); its lines past the
    // first are added to `continuation`.
    let first_line = |record: &csv::ByteRecord, end: u64, continuation: &mut u64| {
        let mut lines = lines.borrow_mut();
        let Some(start) = record.position().map(|p| p.byte()) else { return 0 };
        let first = lines.line_at(start);
        *continuation += lines.record_lines(end) - 1;
        first
    };
    let width = if format.header {
        loop {
            if !read(&mut reader, &mut record)? {
                return Err(FileError::Empty);
            }
            end = reader.position().byte();
            first_line(&record, end, &mut continuation);
            if record.iter().any(|f| !trim_ascii(f).is_empty()) {
                break;
            }
            blank_records += 1;
        }
        handler.skipped(Skip::Header, 1);
        let names: Vec<String> = record
            .iter()
            .map(|f| {
                decode(trim_ascii(f), encoding).map(|s| s.trim().to_string()).unwrap_or_else(|_| String::from_utf8_lossy(f).into_owned())
            })
            .collect();
        handler.header(&names)?;
        names.len()
    } else {
        handler.header(&format.columns)?;
        format.columns.len()
    };
    loop {
        if !read(&mut reader, &mut record)? {
            break;
        }
        end = reader.position().byte();
        let line = first_line(&record, end, &mut continuation);
        if record.iter().all(|f| trim_ascii(f).is_empty()) {
            blank_records += 1;
            continue; // a blank line is not a row
        }
        if record.len() != width {
            let raw = raw_csv(&record, encoding, format);
            handler.bad_row(line, format!("expected {width} fields, found {}", record.len()), raw)?;
            continue;
        }
        if record.as_slice().len() > max_row {
            handler.bad_row(line, format!("the record is longer than {max_row} bytes (limits.max_row_bytes)"), String::new())?;
            continue;
        }
        if let Some((i, field)) = record.iter().enumerate().find(|(_, f)| f.len() > limits.max_field_bytes) {
            let reason =
                format!("field {} is {} bytes, longer than {} (limits.max_field_bytes)", i + 1, field.len(), limits.max_field_bytes);
            handler.bad_row(line, reason, String::new())?;
            continue;
        }
        handler.row(line, &CsvRow { record: &record, encoding, format })?;
    }
    let mut lines = lines.borrow_mut();
    lines.line_at(end);
    handler.skipped(Skip::Blank, lines.blank_lines + blank_records);
    handler.skipped(Skip::Continuation, continuation);
    handler.lines(lines.physical_lines());
    Ok(())
}

// ---------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------

struct JsonRow<'a> {
    value: &'a Value,
    raw: &'a [u8],
}

/// Follows a path; `None` when any step is missing.
pub fn eval_path<'v>(mut value: &'v Value, steps: &[PathStep]) -> Option<&'v Value> {
    for step in steps {
        value = match step {
            PathStep::Member(name) => value.get(name)?,
            PathStep::Index(i) => value.get(*i)?,
            PathStep::Find { key, value: wanted } => value.as_array()?.iter().find(|item| {
                item.get(key).is_some_and(|k| match k {
                    Value::String(s) => s == wanted,
                    // A number or a boolean matches its JSON text (`5` matches "5").
                    other => other.to_string().eq(wanted),
                })
            })?,
        };
    }
    Some(value)
}

impl Row for JsonRow<'_> {
    fn value(&self, source: &Source) -> Result<Option<Cow<'_, str>>, CellError> {
        let Source::Path { steps, .. } = source else {
            return Ok(None);
        };
        Ok(match eval_path(self.value, steps) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let t = s.trim();
                (!t.is_empty()).then_some(Cow::Borrowed(t))
            }
            Some(Value::Number(n)) => Some(Cow::Owned(n.to_string())),
            Some(Value::Bool(b)) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Some(other) => Some(Cow::Owned(other.to_string())),
        })
    }

    fn raw(&self) -> String {
        String::from_utf8_lossy(self.raw).trim().to_string()
    }
}

fn json_row(line: u64, bytes: &[u8], limits: &InputLimits, handler: &mut dyn RowHandler) -> Result<(), FileError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value @ Value::Object(_)) if longest_string(&value) > limits.max_field_bytes => {
            handler.bad_row(line, format!("a string of more than {} bytes (limits.max_field_bytes)", limits.max_field_bytes), String::new())
        }
        Ok(value @ Value::Object(_)) => handler.row(line, &JsonRow { value: &value, raw: bytes }),
        Ok(_) => handler.bad_row(line, "not a JSON object".into(), String::from_utf8_lossy(bytes).trim().to_string()),
        Err(e) => handler.bad_row(line, format!("invalid JSON: {e}"), String::from_utf8_lossy(bytes).trim().to_string()),
    }
}

/// Reads newline-delimited JSON: one object per non-blank line. A line longer than
/// `limits.max_row_bytes` is a rejected row, skipped without being held in memory.
pub fn read_ndjson(mut input: Box<dyn BufRead + Send>, limits: &InputLimits, handler: &mut dyn RowHandler) -> Result<(), FileError> {
    let mut buf = Vec::with_capacity(4096);
    let mut line = 0u64;
    let max = limits.max_row_bytes;
    loop {
        buf.clear();
        line += 1;
        let n = (&mut input).take(max as u64 + 1).read_until(b'\n', &mut buf).map_err(|e| FileError::from_io(line, e))?;
        if n == 0 {
            handler.lines(line - 1);
            break;
        }
        if buf.len() > max && buf.last() != Some(&b'\n') {
            let skipped = buf.len() as u64 + skip_line(&mut input).map_err(|e| FileError::from_io(line, e))?;
            handler.bad_row(line, format!("a line of {skipped} bytes, longer than {max} (limits.max_row_bytes)"), String::new())?;
            continue;
        }
        let text = buf.trim_ascii();
        if text.is_empty() {
            handler.skipped(Skip::Blank, 1);
            continue;
        }
        json_row(line, text, limits, handler)?;
    }
    Ok(())
}

/// Consumes the input up to and including the next newline; returns the bytes consumed.
fn skip_line(input: &mut dyn BufRead) -> std::io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(skipped);
        }
        match memchr::memchr(b'\n', chunk) {
            Some(i) => {
                input.consume(i + 1);
                return Ok(skipped + i as u64 + 1);
            }
            None => {
                let len = chunk.len();
                input.consume(len);
                skipped += len as u64;
            }
        }
    }
}

/// One physical line of a JSON array, as read.
#[derive(Default)]
struct JsonLine {
    bytes: bool,
    used: bool,
    starts_row: bool,
}

impl JsonLine {
    /// Tells the handler why the line is skipped, unless a row starts on it: blank, before
    /// the first row (the opening bracket), or after it (the rest of an element, the
    /// closing bracket).
    fn account(&self, handler: &mut dyn RowHandler, rows_before: bool) {
        if !self.starts_row {
            let reason = match (self.used, rows_before) {
                (false, _) => Skip::Blank,
                (true, false) => Skip::Header,
                (true, true) => Skip::Continuation,
            };
            handler.skipped(reason, 1);
        }
    }
}

/// Reads one JSON array of objects, element by element (the array is never held whole).
pub fn read_json_array(mut input: Box<dyn BufRead + Send>, limits: &InputLimits, handler: &mut dyn RowHandler) -> Result<(), FileError> {
    let max = limits.max_row_bytes;
    #[derive(PartialEq)]
    enum State {
        Start,
        BeforeElement { first: bool },
        InElement,
        AfterElement,
        Done,
    }
    let mut state = State::Start;
    let mut line = 1u64;
    // The current line: whether it has any byte, anything but white space, and whether a
    // row (an element) starts on it; a line starting no row is skipped with its reason.
    let mut current = JsonLine::default();
    let mut rows_started = false;
    let mut element: Vec<u8> = Vec::new();
    let mut element_line = 1u64;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    loop {
        let chunk = input.fill_buf().map_err(|e| FileError::from_io(line, e))?;
        if chunk.is_empty() {
            break;
        }
        let len = chunk.len();
        let chunk = chunk.to_vec();
        input.consume(len);
        for &b in &chunk {
            let newline = b == b'\n';
            current.bytes = true;
            current.used |= !b.is_ascii_whitespace();
            match state {
                State::Start => {
                    if b == b'[' {
                        state = State::BeforeElement { first: true };
                    } else if !b.is_ascii_whitespace() {
                        return Err(FileError::Corrupt { line, reason: "expected a JSON array ([...])".into() });
                    }
                }
                State::BeforeElement { first } => {
                    if b == b']' && first {
                        state = State::Done;
                    } else if !b.is_ascii_whitespace() {
                        if b == b',' || b == b']' {
                            return Err(FileError::Corrupt { line, reason: format!("unexpected {:?} in the array", b as char) });
                        }
                        element.clear();
                        element.push(b);
                        element_line = line;
                        current.starts_row = true;
                        (depth, in_string, escaped) = (0, b == b'"', false);
                        if b == b'{' || b == b'[' {
                            depth = 1;
                        }
                        state = State::InElement;
                    }
                }
                State::InElement => {
                    if in_string {
                        element.push(b);
                        if escaped {
                            escaped = false;
                        } else if b == b'\\' {
                            escaped = true;
                        } else if b == b'"' {
                            in_string = false;
                        }
                    } else {
                        match b {
                            b'"' => {
                                in_string = true;
                                element.push(b);
                            }
                            b'{' | b'[' => {
                                depth += 1;
                                element.push(b);
                            }
                            b'}' | b']' if depth > 0 => {
                                depth -= 1;
                                element.push(b);
                                if depth == 0 {
                                    json_row(element_line, &element, limits, handler)?;
                                    state = State::AfterElement;
                                }
                            }
                            b']' => {
                                json_row(element_line, &element, limits, handler)?;
                                state = State::Done;
                            }
                            b',' if depth == 0 => {
                                json_row(element_line, &element, limits, handler)?;
                                state = State::BeforeElement { first: false };
                            }
                            _ => element.push(b),
                        }
                    }
                    if element.len() > max {
                        return Err(FileError::Limit {
                            line: element_line,
                            reason: format!("an array element longer than {max} bytes (limits.max_row_bytes)"),
                        });
                    }
                }
                State::AfterElement => match b {
                    b',' => state = State::BeforeElement { first: false },
                    b']' => state = State::Done,
                    b if b.is_ascii_whitespace() => {}
                    other => {
                        return Err(FileError::Corrupt {
                            line,
                            reason: format!("expected , or ] after an element, found {:?}", other as char),
                        })
                    }
                },
                State::Done => {
                    if !b.is_ascii_whitespace() {
                        return Err(FileError::Corrupt { line, reason: "data after the end of the JSON array".into() });
                    }
                }
            }
            if newline {
                current.account(handler, rows_started);
                rows_started |= current.starts_row;
                current = JsonLine::default();
                line += 1;
            }
        }
    }
    match state {
        State::Done => {
            // A last line without a newline is a line too.
            if current.bytes {
                current.account(handler, rows_started);
            }
            handler.lines(line - u64::from(!current.bytes));
            Ok(())
        }
        State::Start => Err(FileError::Empty),
        State::InElement => Err(FileError::Corrupt {
            line: element_line,
            reason: "truncated JSON array: the file ends inside the element starting here".into(),
        }),
        _ => Err(FileError::Corrupt { line, reason: "truncated JSON array: no closing ]".into() }),
    }
}

// ---------------------------------------------------------------------------------------
// Parquet
// ---------------------------------------------------------------------------------------

struct ParquetRow<'a> {
    batch: &'a RecordBatch,
    formatters: &'a [Option<ArrayFormatter<'a>>],
    row: usize,
}

impl Row for ParquetRow<'_> {
    fn value(&self, source: &Source) -> Result<Option<Cow<'_, str>>, CellError> {
        let Source::Column { index, .. } = source else {
            return Ok(None);
        };
        // An optional column the file lacks is unbound: blank.
        let Some(column) = self.batch.columns().get(*index) else {
            return Ok(None);
        };
        if column.is_null(self.row) {
            return Ok(None);
        }
        let Some(Some(f)) = self.formatters.get(*index) else {
            return Ok(None);
        };
        let text = f.value(self.row).try_to_string()?;
        let t = text.trim();
        Ok((!t.is_empty()).then(|| Cow::Owned(t.to_string())))
    }

    fn raw(&self) -> String {
        let mut map = serde_json::Map::new();
        for (i, field) in self.batch.schema().fields().iter().enumerate() {
            let v = match self.formatters.get(i) {
                Some(Some(f)) if !self.batch.column(i).is_null(self.row) => {
                    f.value(self.row).try_to_string().map(Value::String).unwrap_or(Value::Null)
                }
                _ => Value::Null,
            };
            map.insert(field.name().clone(), v);
        }
        Value::Object(map).to_string()
    }
}

/// Reads a Parquet file (from local scratch space: Parquet needs random access). The
/// line of a row is its 1-based row number.
pub fn read_parquet(file: std::fs::File, handler: &mut dyn RowHandler) -> Result<(), FileError> {
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).map_err(FileError::NotParquet)?;
    let names: Vec<String> = builder.schema().fields().iter().map(|f| f.name().clone()).collect();
    handler.header(&names)?;
    let reader = builder.with_batch_size(4096).build().map_err(FileError::NotParquet)?;
    let options = FormatOptions::default();
    let mut row_number = 0u64;
    for batch in reader {
        let batch = batch.map_err(FileError::ParquetRows)?;
        let formatters: Vec<Option<ArrayFormatter>> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok()).collect();
        for row in 0..batch.num_rows() {
            row_number += 1;
            handler.row(row_number, &ParquetRow { batch: &batch, formatters: &formatters, row })?;
        }
    }
    handler.lines(row_number);
    Ok(())
}
