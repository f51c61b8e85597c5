//! One file through its spec: the reader of its format, fill-down of continuation rows,
//! the mapping, and the accounting: every data row ends as exactly one event or one
//! rejected row, and every physical line is the first line of a row or is skipped for a
//! reason (blank, header, continuation).

use std::io::Read;

use ariane_shared::model::{LocalTime, RejectedRow};
use chrono::{DateTime, NaiveDate, Utc};

use crate::bounds::InputLimits;

use crate::map::{FileContext, Mapper, RowError, RowMeta};
pub use crate::sink::{RowSink, SinkError};
use crate::source::{self, CellError, FileError, Row, RowHandler, Skip};
use crate::spec::{column_key, FormatKind, Source, Spec};

/// Counts of one file: `rows_read == events + rejected` always, and
/// `lines_read == events + rejected + skipped.total()` (see [`Counts::lines_reconcile`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub rows_read: u64,
    pub events: u64,
    pub rejected: u64,
    /// Observations sent to identity (identical ones within a file are sent once).
    pub observations: u64,
    /// Rows kept as events whose optional email or phone was unusable.
    pub identifier_warnings: u64,
    /// The file's physical lines, as its reader counted them (a Parquet file: its rows).
    #[serde(default)]
    pub lines_read: u64,
    /// Physical lines that are not rows, by reason.
    #[serde(default)]
    pub skipped: Skipped,
    /// Events whose local time was shifted or ambiguous (daylight saving changes).
    #[serde(default)]
    pub local_time: LocalTimes,
}

impl Counts {
    /// Every physical line is accounted for: the first line of an event or of a rejected
    /// row, or skipped. Holds for every file but a JSON array with several elements on one
    /// line (each element is a row, the line is one line).
    pub fn lines_reconcile(&self) -> bool {
        self.lines_read == self.events + self.rejected + self.skipped.total()
    }
}

/// Physical lines that are not rows, by reason ([`Skip`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    /// Empty or white-space lines, and CSV records of blank cells only.
    pub blank: u64,
    /// A CSV header; a JSON array's opening bracket.
    pub header: u64,
    /// A row's lines past its first (a quoted CSV field over several lines, a JSON
    /// element written over several lines) and a JSON array's closing bracket.
    pub continuation: u64,
}

impl Skipped {
    pub fn total(&self) -> u64 {
        self.blank + self.header + self.continuation
    }

    fn add(&mut self, reason: Skip, lines: u64) {
        match reason {
            Skip::Blank => self.blank += lines,
            Skip::Header => self.header += lines,
            Skip::Continuation => self.continuation += lines,
        }
    }
}

/// Events whose `occurred_at` was a local time the clock did not show exactly once (the
/// lake's `local_time` column says which).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LocalTimes {
    /// In the spring gap: read with the offset before the change.
    pub shifted: u64,
    /// In the autumn overlap: the first occurrence taken.
    pub ambiguous: u64,
}

impl LocalTimes {
    fn add(&mut self, flag: Option<LocalTime>) {
        match flag {
            Some(LocalTime::Shifted) => self.shifted += 1,
            Some(LocalTime::Ambiguous) => self.ambiguous += 1,
            None => {}
        }
    }
}

/// Binds a spec's column sources to a header (case-insensitive, trimmed names). The
/// columns the spec needs ([`Spec::required_columns`]) missing fail the file, naming them
/// and the header; an optional column missing stays unbound (blank in every row) and is
/// returned.
pub fn bind(spec: &Spec, header: &[String]) -> Result<(Spec, Vec<String>), FileError> {
    let names: Vec<String> = header.iter().map(|h| column_key(h)).collect();
    let required = spec.required_columns();
    let mut bound = spec.clone();
    let (mut missing, mut absent) = (Vec::new(), Vec::new());
    for source in bound.sources_mut() {
        if let Source::Column { name, index } = source {
            let key = column_key(name);
            match names.iter().position(|h| *h == key) {
                Some(i) => *index = i,
                None => {
                    *index = usize::MAX;
                    let list = if required.contains(&key) { &mut missing } else { &mut absent };
                    if !list.contains(name) {
                        list.push(name.clone());
                    }
                }
            }
        }
    }
    if missing.is_empty() {
        Ok((bound, absent))
    } else {
        Err(FileError::MissingColumns { missing, found: header.to_vec() })
    }
}

/// Fill-down: blank continuation-row columns take the value of the group's earlier rows.
struct FillState {
    key: Vec<String>,
    values: Vec<Option<String>>,
    group_row: u64,
    /// The key of the row being read (buffers reused from row to row).
    next_key: Vec<String>,
}

/// A row seen through fill-down.
struct Filled<'a> {
    row: &'a dyn Row,
    columns: &'a [Source],
    values: &'a [Option<String>],
}

impl Row for Filled<'_> {
    fn value(&self, source: &Source) -> Result<Option<std::borrow::Cow<'_, str>>, CellError> {
        if let Some(v) = self.row.value(source)? {
            return Ok(Some(v));
        }
        let Source::Column { index, .. } = source else {
            return Ok(None);
        };
        let position = self.columns.iter().position(|c| matches!(c, Source::Column { index: i, .. } if i == index));
        Ok(position.and_then(|i| self.values[i].as_deref()).map(std::borrow::Cow::Borrowed))
    }

    fn raw(&self) -> String {
        self.row.raw()
    }
}

struct Engine<'a> {
    spec: &'a Spec,
    bound: Option<Spec>,
    file: FileContext,
    mapper: Mapper,
    fill: Option<FillState>,
    counts: Counts,
    sink: &'a mut dyn RowSink,
    /// Event dates seen so far (at most `limits.max_dates`).
    dates: std::collections::HashSet<NaiveDate>,
    /// The plausible window of event times.
    window: (DateTime<Utc>, DateTime<Utc>),
}

impl Engine<'_> {
    fn count_row(&mut self, line: u64) -> Result<(), FileError> {
        self.counts.rows_read += 1;
        let max = self.spec.limits.max_rows;
        if self.counts.rows_read > max {
            return Err(FileError::Limit { line, reason: format!("the file has more than {max} rows (limits.max_rows)") });
        }
        Ok(())
    }

    /// Why an event's time is refused: outside the window (a rejected row), or one date
    /// too many for the file (a whole-file failure).
    fn check_date(&mut self, line: u64, at: DateTime<Utc>) -> Result<Option<String>, FileError> {
        let (from, to) = self.window;
        if at < from || at > to {
            return Ok(Some(format!(
                "event time {} is outside the plausible window {} .. {} (limits.past_days, limits.future_days)",
                at.format("%Y-%m-%dT%H:%M:%SZ"),
                from.format("%Y-%m-%d"),
                to.format("%Y-%m-%d")
            )));
        }
        let date = at.date_naive();
        if !self.dates.contains(&date) {
            let max = self.spec.limits.max_dates;
            if self.dates.len() >= max {
                return Err(FileError::Limit {
                    line,
                    reason: format!("the file spans more than {max} distinct event dates (limits.max_dates); {date} is one too many"),
                });
            }
            self.dates.insert(date);
        }
        Ok(None)
    }

    fn reject(&mut self, line: u64, reason: String, raw: String) -> Result<(), FileError> {
        self.counts.rejected += 1;
        self.sink.rejected(RejectedRow {
            channel: self.spec.channel.clone(),
            source_key: self.file.source_key.clone(),
            line,
            reason,
            raw,
        })?;
        Ok(())
    }
}

impl RowHandler for Engine<'_> {
    fn header(&mut self, names: &[String]) -> Result<(), FileError> {
        let (bound, absent) = bind(self.spec, names)?;
        if !absent.is_empty() {
            tracing::info!(spec = %self.spec.file, columns = ?absent, "optional columns absent from the file: blank in every row");
            self.sink.absent_columns(&absent);
        }
        self.bound = Some(bound);
        Ok(())
    }

    fn row(&mut self, line: u64, row: &dyn Row) -> Result<(), FileError> {
        self.count_row(line)?;
        let bound = match &self.bound {
            Some(b) => b,
            None => self.spec,
        };
        let mut meta = RowMeta { line, row: self.counts.rows_read, group_row: 1 };
        let result = match (&bound.fill_down, &mut self.fill) {
            (Some(fd), Some(state)) => {
                let mut key_error = None;
                state.next_key.resize(fd.key.len(), String::new());
                for (s, part) in fd.key.iter().zip(state.next_key.iter_mut()) {
                    part.clear();
                    match row.value(s) {
                        Ok(v) => part.push_str(v.as_deref().unwrap_or_default()),
                        Err(e) => key_error = Some(e),
                    }
                }
                if let Some(e) = key_error {
                    Err(RowError::Cell(e))
                } else if state.next_key.iter().all(String::is_empty) {
                    // No group key: the row cannot continue a group, nor start one.
                    state.key.clear();
                    state.values.iter_mut().for_each(|v| *v = None);
                    Err(RowError::BlankFillDownKey { sources: fd.key.iter().map(Source::label).collect::<Vec<_>>().join(" + ") })
                } else {
                    if state.next_key != state.key {
                        std::mem::swap(&mut state.key, &mut state.next_key);
                        state.values.iter_mut().for_each(|v| *v = None);
                        state.group_row = 0;
                    }
                    state.group_row += 1;
                    meta.group_row = state.group_row;
                    let mut error = None;
                    for (i, c) in fd.columns.iter().enumerate() {
                        match row.value(c) {
                            Ok(Some(v)) => match &mut state.values[i] {
                                Some(kept) => {
                                    kept.clear();
                                    kept.push_str(&v);
                                }
                                slot => *slot = Some(v.into_owned()),
                            },
                            Ok(None) => {}
                            Err(e) => error = Some(e),
                        }
                    }
                    match error {
                        Some(e) => Err(RowError::Cell(e)),
                        None => {
                            let filled = Filled { row, columns: &fd.columns, values: &state.values };
                            self.mapper.map(bound, &filled, meta, &self.file)
                        }
                    }
                }
            }
            _ => self.mapper.map(bound, row, meta, &self.file),
        };
        let result = match result {
            Ok(mapped) => match self.check_date(line, mapped.event.occurred_at)? {
                Some(reason) => Err(reason),
                None => Ok(mapped),
            },
            Err(reason) => Err(reason.to_string()),
        };
        match result {
            Ok(mapped) => {
                self.counts.events += 1;
                self.counts.local_time.add(mapped.event.local_time);
                if mapped.identifier_warnings > 0 {
                    self.counts.identifier_warnings += 1;
                }
                if let Some(o) = mapped.observation {
                    self.counts.observations += 1;
                    self.sink.observation(o)?;
                }
                Ok(self.sink.event(mapped.event)?)
            }
            Err(reason) => {
                let raw = row.raw();
                self.reject(line, reason, raw)
            }
        }
    }

    fn bad_row(&mut self, line: u64, reason: String, raw: String) -> Result<(), FileError> {
        self.count_row(line)?;
        self.reject(line, reason, raw)
    }

    fn skipped(&mut self, reason: Skip, lines: u64) {
        self.counts.skipped.add(reason, lines);
    }

    fn lines(&mut self, lines: u64) {
        self.counts.lines_read = lines;
        if !self.counts.lines_reconcile() {
            // A reader's miscount, or a JSON array with elements sharing lines: the
            // ledger keeps both numbers.
            tracing::warn!(
                spec = %self.spec.file, lines, rows = self.counts.rows_read, skipped = ?self.counts.skipped,
                "the file's lines are not each the first line of a row or skipped"
            );
        }
    }
}

fn engine<'a>(spec: &'a Spec, file: FileContext, sink: &'a mut dyn RowSink) -> Engine<'a> {
    let fill =
        spec.fill_down.as_ref().map(|f| FillState { key: vec![], values: vec![None; f.columns.len()], group_row: 0, next_key: vec![] });
    let now = Utc::now();
    let limits: &InputLimits = &spec.limits;
    let window = (now - chrono::Duration::days(limits.past_days), now + chrono::Duration::days(limits.future_days));
    Engine {
        spec,
        bound: None,
        file,
        mapper: Mapper::with_activity_since(now - ariane_shared::model::ACTIVITY_WINDOW),
        fill,
        counts: Counts::default(),
        sink,
        dates: std::collections::HashSet::new(),
        window,
    }
}

/// Parses a streamed file (CSV, NDJSON, JSON array; gzip or not) into `sink`.
pub fn parse(input: Box<dyn Read + Send>, spec: &Spec, file: FileContext, sink: &mut dyn RowSink) -> Result<Counts, FileError> {
    let (reader, bom) = source::open(input, spec.format.compression, &spec.limits)?;
    let mut e = engine(spec, file, sink);
    match spec.format.kind {
        FormatKind::Csv => source::read_csv(reader, bom, &spec.format, &spec.limits, &mut e)?,
        FormatKind::Ndjson => source::read_ndjson(reader, &spec.limits, &mut e)?,
        FormatKind::JsonArray => source::read_json_array(reader, &spec.limits, &mut e)?,
        FormatKind::Parquet => {
            return Err(FileError::Corrupt { line: 0, reason: "Parquet files are read from scratch space (parse_parquet)".into() })
        }
    }
    Ok(e.counts)
}

/// Parses a Parquet file from local scratch space into `sink`.
pub fn parse_parquet(path: &std::path::Path, spec: &Spec, file: FileContext, sink: &mut dyn RowSink) -> Result<Counts, FileError> {
    let f = std::fs::File::open(path).map_err(|e| FileError::Read { line: 0, source: e })?;
    let mut e = engine(spec, file, sink);
    source::read_parquet(f, &mut e)?;
    Ok(e.counts)
}

/// Parses a local file with its spec's reader into `sink` (Parquet from the path, every
/// other format streamed): the ingest's own parse, for a file on disk (the dry run of
/// `ariane-local validate --sample`).
pub fn parse_path(path: &std::path::Path, spec: &Spec, file: FileContext, sink: &mut dyn RowSink) -> Result<Counts, FileError> {
    if spec.format.kind == FormatKind::Parquet {
        return parse_parquet(path, spec, file, sink);
    }
    let f = std::fs::File::open(path).map_err(|e| FileError::Read { line: 0, source: e })?;
    parse(Box::new(f), spec, file, sink)
}
