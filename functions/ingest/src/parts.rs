//! The local half of an ingest: parsed rows to Parquet parts in scratch space, one per
//! event date (more when an unsorted file spans many dates), rejects to their own file,
//! observations to a spool file. Pure and synchronous; [`crate::pipeline`] uploads what it
//! produced and sends the spool.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use ariane_shared::lake;
use ariane_shared::model::{CanonicalEvent, Observation, ObservationBatch, RejectedRow, OBSERVATIONS_PER_MESSAGE};
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;

use crate::sink::{RowSink, SinkError};

/// Rows buffered per partition before they are encoded (one row group).
const PARTITION_BUFFER: usize = lake::ROW_GROUP_ROWS;
/// Rows buffered over all partitions: past this, every partition's buffer is written out
/// as a (smaller) row group, so memory stays bounded when rows of many dates interleave.
const BUFFERED_ROWS: usize = 65_536;
/// Event-date partitions with an open Parquet file at once; the least recently used is
/// closed (as a finished part) when a file spans more days than this. Rows of a date whose
/// part was already closed (an export not sorted by time) go to spill buckets, which are
/// split into one more part per date at the end: at most two parts per date.
const OPEN_PARTITIONS: usize = 64;
/// Spill buckets (Parquet files in scratch space) for out-of-order dates.
const SPILL_BUCKETS: usize = 16;
/// Rows read back from a spill file at once. A bucket mixes many dates, so each batch is
/// split into one slice per date: larger batches give fewer, larger slices to copy and
/// encode (a few megabytes per batch).
const UNSPILL_BATCH: usize = 32_768;
/// A file cut into this many small row groups by global flushes is closed (its footer
/// metadata leaves memory): a partition's later rows then go to the spill buckets, and a
/// full spill file is closed and a new one started.
const MAX_FLUSHES: u32 = 16;
/// Microseconds in a UTC day (event dates are UTC days of `occurred_at`).
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Finished local files: event parts by (date, part), rejects, spooled observations.
pub(crate) struct Parts {
    pub events: Vec<(String, u32, PathBuf)>,
    pub rejects: Option<PathBuf>,
    pub observations: PathBuf,
}

/// A Parquet file being written in scratch space, with a small row buffer.
struct PartWriter<T> {
    path: PathBuf,
    writer: ArrowWriter<BufWriter<File>>,
    buffer: Vec<T>,
    part: u32,
    last_used: u64,
    /// Row groups cut by global flushes (each keeps footer metadata in memory).
    flushes: u32,
}

impl<T> PartWriter<T> {
    fn create(path: PathBuf, writer: ArrowWriter<BufWriter<File>>, part: u32) -> Self {
        PartWriter { path, writer, buffer: Vec::new(), part, last_used: 0, flushes: 0 }
    }
}

impl PartWriter<CanonicalEvent> {
    /// An events file (a part or a spill bucket).
    fn events(path: PathBuf, part: u32) -> Result<Self, SinkError> {
        let writer = lake::events_parquet_writer(BufWriter::new(File::create(&path)?))?;
        Ok(PartWriter::create(path, writer, part))
    }
}

impl PartWriter<RejectedRow> {
    fn rejects(path: PathBuf) -> Result<Self, SinkError> {
        let writer = lake::parquet_writer(BufWriter::new(File::create(&path)?), lake::rejects_schema())?;
        Ok(PartWriter::create(path, writer, 0))
    }
}

fn flush_events(part: &mut PartWriter<CanonicalEvent>) -> Result<(), SinkError> {
    if !part.buffer.is_empty() {
        part.writer.write(&lake::events_batch(&part.buffer)?)?;
        part.buffer.clear();
    }
    Ok(())
}

/// Streams parsed rows to Parquet parts (one per event date — more when a file spans
/// more dates than [`OPEN_PARTITIONS`] out of order — plus rejects) and observations to
/// a spool file, [`OBSERVATIONS_PER_MESSAGE`] per line (one SQS message each).
pub struct LakeSink {
    dir: PathBuf,
    partitions: HashMap<String, PartWriter<CanonicalEvent>>,
    next_part: HashMap<String, u32>,
    finished: Vec<(String, u32, PathBuf)>,
    rejects: Option<PartWriter<RejectedRow>>,
    observations: Vec<Observation>,
    spool: BufWriter<File>,
    spool_path: PathBuf,
    tick: u64,
    buffered: usize,
    /// Dates whose direct part was closed.
    closed: HashSet<String>,
    spill: Vec<Option<PartWriter<CanonicalEvent>>>,
    /// Closed spill files, per bucket.
    spilled: Vec<Vec<PathBuf>>,
    limits: Limits,
}

/// The memory bounds of a [`LakeSink`] (the constants above; smaller in tests).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub buffered_rows: usize,
    pub open_partitions: usize,
    pub max_flushes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { buffered_rows: BUFFERED_ROWS, open_partitions: OPEN_PARTITIONS, max_flushes: MAX_FLUSHES }
    }
}

impl LakeSink {
    pub fn new(dir: PathBuf) -> Result<Self, SinkError> {
        let spool_path = dir.join("observations.jsonl");
        let spool = BufWriter::new(File::create(&spool_path)?);
        Ok(LakeSink {
            dir,
            partitions: HashMap::new(),
            next_part: HashMap::new(),
            finished: vec![],
            rejects: None,
            observations: Vec::new(),
            spool,
            spool_path,
            tick: 0,
            buffered: 0,
            closed: HashSet::new(),
            spill: (0..SPILL_BUCKETS).map(|_| None).collect(),
            spilled: (0..SPILL_BUCKETS).map(|_| Vec::new()).collect(),
            limits: Limits::default(),
        })
    }

    /// The same sink with other memory bounds.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    fn flush_observations(&mut self) -> Result<(), SinkError> {
        if self.observations.is_empty() {
            return Ok(());
        }
        let batch = ObservationBatch { observations: std::mem::take(&mut self.observations) };
        serde_json::to_writer(&mut self.spool, &batch)?;
        self.spool.write_all(b"\n")?;
        Ok(())
    }

    fn close_partition(&mut self, date: &str) -> Result<(), SinkError> {
        if let Some(mut part) = self.partitions.remove(date) {
            self.buffered -= part.buffer.len();
            flush_events(&mut part)?;
            part.writer.close()?;
            self.finished.push((date.to_string(), part.part, part.path));
            self.closed.insert(date.to_string());
        }
        Ok(())
    }

    fn spill(&mut self, event: CanonicalEvent, date: &str) -> Result<(), SinkError> {
        let mut h = DefaultHasher::new();
        date.hash(&mut h);
        let bucket = (h.finish() % SPILL_BUCKETS as u64) as usize;
        if self.spill[bucket].is_none() {
            let path = self.dir.join(format!("spill-{bucket}-{}.parquet", self.spilled[bucket].len()));
            self.spill[bucket] = Some(PartWriter::events(path, 0)?);
        }
        let part = self.spill[bucket].as_mut().expect("created above");
        part.buffer.push(event);
        self.buffered += 1;
        if part.buffer.len() >= PARTITION_BUFFER {
            self.buffered -= part.buffer.len();
            flush_events(part)?;
        }
        Ok(())
    }

    /// Writes every buffer out as a row group (bounded memory).
    fn flush_all(&mut self) -> Result<(), SinkError> {
        for part in self.partitions.values_mut().chain(self.spill.iter_mut().flatten()) {
            if !part.buffer.is_empty() {
                flush_events(part)?;
                // Close the row group so no encoded data stays in memory per file.
                part.writer.flush()?;
                part.flushes += 1;
            }
        }
        self.buffered = 0;
        let full: Vec<String> =
            self.partitions.iter().filter(|(_, p)| p.flushes >= self.limits.max_flushes).map(|(d, _)| d.clone()).collect();
        for date in full {
            self.close_partition(&date)?;
        }
        for slot in 0..SPILL_BUCKETS {
            if self.spill[slot].as_ref().is_some_and(|p| p.flushes >= self.limits.max_flushes) {
                let bucket = self.spill[slot].take().expect("checked above");
                bucket.writer.close()?;
                self.spilled[slot].push(bucket.path);
            }
        }
        Ok(())
    }

    /// Splits the spill buckets into one more part per date.
    fn unspill(&mut self) -> Result<(), SinkError> {
        for slot in 0..SPILL_BUCKETS {
            let mut files = std::mem::take(&mut self.spilled[slot]);
            if let Some(mut bucket) = self.spill[slot].take() {
                flush_events(&mut bucket)?;
                bucket.writer.close()?;
                files.push(bucket.path);
            }
            let mut writers: HashMap<String, (ArrowWriter<BufWriter<File>>, PathBuf, u32)> = HashMap::new();
            let mut pending = 0usize;
            for file in &files {
                let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(File::open(file)?)?
                    .with_batch_size(UNSPILL_BATCH)
                    .build()?;
                for batch in reader {
                    let batch = batch?;
                    let at = batch
                        .column_by_name("occurred_at")
                        .and_then(|c| c.as_any().downcast_ref::<arrow::array::TimestampMicrosecondArray>())
                        .ok_or_else(|| SinkError::Spill { path: file.display().to_string(), what: "no occurred_at column" })?;
                    // Sort the batch by day once (stable: file order within a day) and
                    // write each day's run as a zero-copy slice.
                    let days = (0..batch.num_rows()).map(|i| at.value(i).div_euclid(MICROS_PER_DAY)).collect::<Vec<i64>>();
                    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
                    order.sort_by_key(|&i| days[i as usize]);
                    let sorted_days: Vec<i64> = order.iter().map(|&i| days[i as usize]).collect();
                    let sorted = arrow::compute::take_record_batch(&batch, &arrow::array::UInt32Array::from(order))?;
                    let mut start = 0;
                    while start < sorted_days.len() {
                        let day = sorted_days[start];
                        let len = sorted_days[start..].iter().take_while(|&&d| d == day).count();
                        let date = DateTime::<Utc>::from_timestamp(day * 86_400, 0)
                            .ok_or_else(|| SinkError::Spill { path: file.display().to_string(), what: "occurred_at out of range" })?
                            .format("%Y-%m-%d")
                            .to_string();
                        let part_batch = sorted.slice(start, len);
                        start += len;
                        if !writers.contains_key(&date) {
                            let part = self.next_part.entry(date.clone()).or_insert(0);
                            let path = self.dir.join(format!("events-{date}-{part}.parquet"));
                            let w = lake::events_parquet_writer(BufWriter::new(File::create(&path)?))?;
                            writers.insert(date.clone(), (w, path, *part));
                            *part += 1;
                        }
                        pending += part_batch.num_rows();
                        writers.get_mut(&date).expect("inserted above").0.write(&part_batch)?;
                    }
                    if pending >= self.limits.buffered_rows {
                        for (w, _, _) in writers.values_mut() {
                            w.flush()?;
                        }
                        pending = 0;
                    }
                }
                let _ = std::fs::remove_file(file);
            }
            for (date, (w, path, part)) in writers {
                w.close()?;
                self.finished.push((date, part, path));
            }
        }
        Ok(())
    }

    /// Closes every file: the event parts, the rejects and the spool.
    pub(crate) fn finish(mut self) -> Result<Parts, SinkError> {
        self.flush_observations()?;
        self.spool.flush()?;
        let dates: Vec<String> = self.partitions.keys().cloned().collect();
        for date in dates {
            self.close_partition(&date)?;
        }
        self.unspill()?;
        self.finished.sort();
        let rejects = match self.rejects.take() {
            Some(mut part) => {
                if !part.buffer.is_empty() {
                    part.writer.write(&lake::rejects_batch(&part.buffer)?)?;
                }
                part.writer.close()?;
                Some(part.path)
            }
            None => None,
        };
        Ok(Parts { events: self.finished, rejects, observations: self.spool_path })
    }

    /// Local files written so far (tests and benchmarks).
    pub fn finish_paths(self) -> Result<(Vec<PathBuf>, Option<PathBuf>, PathBuf), SinkError> {
        let parts = self.finish()?;
        Ok((parts.events.into_iter().map(|(_, _, p)| p).collect(), parts.rejects, parts.observations))
    }
}

impl RowSink for LakeSink {
    fn event(&mut self, event: CanonicalEvent) -> Result<(), SinkError> {
        self.tick += 1;
        let date = event.event_date();
        if !self.partitions.contains_key(&date) && self.closed.contains(&date) {
            self.spill(event, &date)?;
            if self.buffered >= self.limits.buffered_rows {
                self.flush_all()?;
            }
            return Ok(());
        }
        if !self.partitions.contains_key(&date) {
            if self.partitions.len() >= self.limits.open_partitions {
                let oldest = self.partitions.iter().min_by_key(|(_, p)| p.last_used).map(|(d, _)| d.clone());
                if let Some(oldest) = oldest {
                    self.close_partition(&oldest)?;
                }
            }
            let part = self.next_part.entry(date.clone()).or_insert(0);
            let path = self.dir.join(format!("events-{date}-{part}.parquet"));
            let writer = PartWriter::events(path, *part)?;
            *part += 1;
            self.partitions.insert(date.clone(), writer);
        }
        let part = self.partitions.get_mut(&date).expect("inserted above");
        part.last_used = self.tick;
        part.buffer.push(event);
        self.buffered += 1;
        if part.buffer.len() >= PARTITION_BUFFER {
            self.buffered -= part.buffer.len();
            flush_events(part)?;
        }
        if self.buffered >= self.limits.buffered_rows {
            self.flush_all()?;
        }
        Ok(())
    }

    fn rejected(&mut self, row: RejectedRow) -> Result<(), SinkError> {
        if self.rejects.is_none() {
            self.rejects = Some(PartWriter::rejects(self.dir.join("rejects.parquet"))?);
        }
        let part = self.rejects.as_mut().expect("created above");
        part.buffer.push(row);
        if part.buffer.len() >= PARTITION_BUFFER {
            let batch = lake::rejects_batch(&part.buffer)?;
            part.writer.write(&batch)?;
            part.buffer.clear();
        }
        Ok(())
    }

    fn observation(&mut self, observation: Observation) -> Result<(), SinkError> {
        self.observations.push(observation);
        if self.observations.len() >= OBSERVATIONS_PER_MESSAGE {
            self.flush_observations()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn event(i: u64, day: u32) -> CanonicalEvent {
        let at = chrono::TimeZone::with_ymd_and_hms(&Utc, 2024, 1, 1, 12, 0, 0).unwrap() + chrono::Duration::days(day as i64);
        CanonicalEvent {
            event_id: format!("e{i}"),
            channel: "crm".into(),
            event_type: "contact_updated".into(),
            occurred_at: at,
            anchor_id: None,
            email_hash: None,
            phone_hash: None,
            order_id: None,
            sku: None,
            product_name: None,
            category: None,
            quantity: None,
            unit_price_minor: None,
            line_total_minor: None,
            order_total_minor: None,
            currency: None,
            store_id: None,
            campaign_id: None,
            page_url: None,
            consent_channel: None,
            source_key: "crm/x.csv".into(),
            source_line: i,
            local_time: None,
        }
    }

    #[test]
    fn unsorted_files_spanning_many_dates_give_at_most_two_parts_per_date() {
        unsorted_dates(Limits::default());
    }

    #[test]
    fn tight_limits_roll_files_and_spills_without_losing_rows() {
        unsorted_dates(Limits { buffered_rows: 500, open_partitions: 20, max_flushes: 3 });
    }

    fn unsorted_dates(limits: Limits) {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = LakeSink::new(dir.path().to_path_buf()).unwrap().with_limits(limits);
        let days = 300u32;
        let rows = 20_000u64;
        for i in 0..rows {
            // A pseudo-random walk over the dates: every date comes back many times.
            sink.event(event(i, ((i * 7919) % days as u64) as u32)).unwrap();
        }
        let parts = sink.finish().unwrap();
        let mut per_date: BTreeMap<String, u32> = BTreeMap::new();
        let mut total = 0;
        for (date, _, path) in &parts.events {
            *per_date.entry(date.clone()).or_default() += 1;
            let batches = lake::read_parquet_bytes(bytes::Bytes::from(std::fs::read(path).unwrap())).unwrap();
            for b in &batches {
                let at =
                    b.column_by_name("occurred_at").unwrap().as_any().downcast_ref::<arrow::array::TimestampMicrosecondArray>().unwrap();
                for j in 0..b.num_rows() {
                    let d = DateTime::<Utc>::from_timestamp_micros(at.value(j)).unwrap().format("%Y-%m-%d").to_string();
                    assert_eq!(&d, date, "{}", path.display());
                }
            }
            total += lake::row_count(&batches) as u64;
        }
        assert_eq!(total, rows, "nothing lost, nothing doubled");
        assert_eq!(per_date.len(), days as usize);
        assert!(per_date.values().all(|n| *n <= 2), "{per_date:?}");
    }
}
