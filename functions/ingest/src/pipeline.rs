//! Ingesting one object: ledger check, spec selection, streaming parse, Parquet parts in
//! the lake, observations to the identity queue, ledger entry. And routing: forwarding a
//! landing notification to the queue of its channel.
//!
//! Idempotency: the output keys and ids derive from a fingerprint of (channel, ETag, size)
//! and from each row's natural key, so a re-delivered notification or a re-upload of
//! identical content rewrites the same objects with the same content, and a completed
//! ledger entry short-cuts the work (no observation is sent twice). Observations are
//! spooled to scratch space during the parse and sent only once the whole file has been
//! read and its parts uploaded: a file that turns out to be truncated sends nothing.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use ariane_shared::aws::Clients;
use ariane_shared::error::{AwsError, SdkResultExt};
use ariane_shared::identifiers::stable_id;
use ariane_shared::lake;
use ariane_shared::model::{CanonicalEvent, Observation, ObservationBatch, RejectedRow, CHANNELS, OBSERVATIONS_PER_MESSAGE};
use ariane_shared::sqs::{send_all, SendError, SQS_BATCH};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};
use tokio_util::io::SyncIoBridge;

use crate::config::IngestConfig;
use crate::engine::{self, Counts, RowSink, SinkError};
use crate::map::FileContext;
use crate::s3event::ObjectRef;
use crate::source::{FileError, TransientReader};
use crate::spec::{Catalog, FormatKind, SelectError, Spec};

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
/// A file cut into this many small row groups by global flushes is closed (its footer
/// metadata leaves memory): a partition's later rows then go to the spill buckets, and a
/// full spill file is closed and a new one started.
const MAX_FLUSHES: u32 = 16;

/// What happened to a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerStatus {
    Completed,
    Failed,
}

/// The ledger entry of one source file (`ledger/ingest/<channel>/<fingerprint>.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub channel: String,
    /// The channel spec that read the file (`channels/<channel>/<spec>.toml`).
    #[serde(default)]
    pub spec: Option<String>,
    pub fingerprint: String,
    pub source_bucket: String,
    pub source_key: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub size: Option<i64>,
    pub status: LedgerStatus,
    pub rows_read: u64,
    pub events_written: u64,
    pub rows_rejected: u64,
    pub observations_sent: u64,
    #[serde(default)]
    pub observation_messages: u64,
    pub identifier_warnings: u64,
    pub event_files: Vec<String>,
    pub rejects_file: Option<String>,
    pub error: Option<String>,
    #[serde(default)]
    pub retryable: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// Outcome of one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Ingested(LedgerEntry),
    /// A completed ledger entry exists for identical content: nothing was done.
    AlreadyIngested(LedgerEntry),
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("object {key} is under no known channel prefix (expected one of {CHANNELS:?})")]
    UnknownChannel { key: String },
    #[error("object {key} belongs to channel {found}, but this function ingests {expected}")]
    WrongChannel { key: String, found: String, expected: String },
    #[error(transparent)]
    NoSpec(#[from] SelectError),
    #[error("object s3://{bucket}/{key} is not in the landing bucket {landing}")]
    WrongBucket { bucket: String, key: String, landing: String },
    #[error("this function is the router, not a channel ingest")]
    NotAChannel,
    #[error("no queue is configured for channel {channel}")]
    NoRoute { channel: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("{0}")]
    File(#[from] FileError),
    #[error("cannot send identity observations: {0}")]
    Send(#[from] SendError),
    #[error("cannot write to scratch space: {0}")]
    Scratch(#[from] std::io::Error),
    #[error("cannot encode Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("ledger entry is not valid JSON: {0}")]
    Ledger(#[from] serde_json::Error),
    #[error("parser task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl IngestError {
    /// Whether a retry can succeed (a missing column will not appear by retrying).
    pub fn retryable(&self) -> bool {
        match self {
            IngestError::Aws(e) => e.retryable,
            IngestError::Send(e) => e.retryable(),
            IngestError::File(e) => e.retryable(),
            IngestError::Scratch(_) | IngestError::Join(_) => true,
            _ => false,
        }
    }
}

/// The channel of a landing key: its first path segment.
pub fn channel_of(key: &str) -> Option<&'static str> {
    let prefix = key.split('/').next()?;
    CHANNELS.iter().copied().find(|c| *c == prefix)
}

/// The fingerprint of a source file's content.
pub fn fingerprint(channel: &str, etag: &str, size: Option<i64>) -> String {
    stable_id(&[channel, etag.trim_matches('"'), &size.unwrap_or(-1).to_string()])
}

fn new_entry(channel: &str, fp: &str, object: &ObjectRef, etag: &str, size: Option<i64>) -> LedgerEntry {
    let now = Utc::now();
    LedgerEntry {
        channel: channel.to_string(),
        spec: None,
        fingerprint: fp.to_string(),
        source_bucket: object.bucket.clone(),
        source_key: object.key.clone(),
        etag: Some(etag.to_string()),
        version_id: object.version_id.clone(),
        size,
        status: LedgerStatus::Failed,
        rows_read: 0,
        events_written: 0,
        rows_rejected: 0,
        observations_sent: 0,
        observation_messages: 0,
        identifier_warnings: 0,
        event_files: vec![],
        rejects_file: None,
        error: None,
        retryable: false,
        started_at: now,
        finished_at: now,
    }
}

async fn etag_and_size(clients: &Clients, object: &ObjectRef) -> Result<(String, Option<i64>), IngestError> {
    match &object.etag {
        Some(e) => Ok((e.clone(), object.size)),
        None => {
            let out = clients.s3.head_object().bucket(&object.bucket).key(&object.key).send().await.aws("s3:HeadObject")?;
            Ok((out.e_tag().unwrap_or_default().to_string(), out.content_length()))
        }
    }
}

/// Records a file that cannot be ingested at all under `ledger/ingest/unknown/` (best
/// effort) so it is visible, and returns the error.
async fn record_unroutable(clients: &Clients, config: &IngestConfig, object: &ObjectRef, err: IngestError) -> IngestError {
    let (etag, size) = (object.etag.clone().unwrap_or_default(), object.size);
    let fp = fingerprint("unknown", &format!("{}:{etag}", object.key), size);
    let mut entry = new_entry("unknown", &fp, object, &etag, size);
    entry.error = Some(err.to_string());
    if let Err(e) = write_ledger(clients, &config.lake_bucket, &lake::ledger_key("unknown", &fp), &entry).await {
        tracing::error!(error = %e, "cannot record the failure in the ledger");
    }
    err
}

/// Router: forwards one object's notification to its channel's queue.
pub async fn route_object(clients: &Clients, config: &IngestConfig, object: &ObjectRef) -> Result<String, IngestError> {
    let crate::config::Mode::Router { channel_queues } = &config.mode else {
        return Err(IngestError::NotAChannel);
    };
    if object.bucket != config.landing_bucket {
        let err =
            IngestError::WrongBucket { bucket: object.bucket.clone(), key: object.key.clone(), landing: config.landing_bucket.clone() };
        return Err(record_unroutable(clients, config, object, err).await);
    }
    let Some(channel) = channel_of(&object.key) else {
        let err = IngestError::UnknownChannel { key: object.key.clone() };
        return Err(record_unroutable(clients, config, object, err).await);
    };
    let Some(queue) = channel_queues.get(channel) else {
        let err = IngestError::NoRoute { channel: channel.to_string() };
        return Err(record_unroutable(clients, config, object, err).await);
    };
    let body = crate::s3event::notification_body(object);
    send_all(&clients.sqs, queue, &[body]).await?;
    Ok(channel.to_string())
}

/// Ingests one object of this function's channel. On failure a `failed` ledger entry is
/// written (best effort) and the error returned, so the message is retried and ends in
/// the DLQ.
pub async fn ingest_object(
    clients: &Clients,
    config: &IngestConfig,
    catalog: &Catalog,
    object: &ObjectRef,
) -> Result<Outcome, IngestError> {
    let crate::config::Mode::Channel { channel: own, identity_queue_url } = &config.mode else {
        return Err(IngestError::NotAChannel);
    };
    if object.bucket != config.landing_bucket {
        let err =
            IngestError::WrongBucket { bucket: object.bucket.clone(), key: object.key.clone(), landing: config.landing_bucket.clone() };
        return Err(record_unroutable(clients, config, object, err).await);
    }
    let channel = match channel_of(&object.key) {
        Some(c) if c == own => c,
        Some(c) => {
            let err = IngestError::WrongChannel { key: object.key.clone(), found: c.to_string(), expected: own.clone() };
            return Err(record_unroutable(clients, config, object, err).await);
        }
        None => {
            let err = IngestError::UnknownChannel { key: object.key.clone() };
            return Err(record_unroutable(clients, config, object, err).await);
        }
    };
    let (etag, size) = etag_and_size(clients, object).await?;
    let fp = fingerprint(channel, &etag, size);
    let ledger_key = lake::ledger_key(channel, &fp);
    if let Some(existing) = read_ledger(clients, &config.lake_bucket, &ledger_key).await? {
        if existing.status == LedgerStatus::Completed {
            return Ok(Outcome::AlreadyIngested(existing));
        }
    }
    let mut entry = new_entry(channel, &fp, object, &etag, size);
    let result = match catalog.select(channel, &object.key) {
        Ok(spec) => {
            entry.spec = Some(spec.file.clone());
            run(clients, config, identity_queue_url, spec, object, &etag, &fp, &mut entry).await
        }
        Err(e) => Err(e.into()),
    };
    entry.finished_at = Utc::now();
    match result {
        Ok(()) => {
            entry.status = LedgerStatus::Completed;
            write_ledger(clients, &config.lake_bucket, &ledger_key, &entry).await?;
            Ok(Outcome::Ingested(entry))
        }
        Err(err) => {
            entry.error = Some(err.to_string());
            entry.retryable = err.retryable();
            if let Err(ledger_err) = write_ledger(clients, &config.lake_bucket, &ledger_key, &entry).await {
                tracing::error!(error = %ledger_err, "cannot record the failure in the ledger");
            }
            Err(err)
        }
    }
}

async fn read_ledger(clients: &Clients, bucket: &str, key: &str) -> Result<Option<LedgerEntry>, IngestError> {
    match clients.s3.get_object().bucket(bucket).key(key).send().await.aws("s3:GetObject ledger") {
        Ok(out) => {
            let bytes = out.body.collect().await.map_err(|e| std::io::Error::other(e.to_string()))?.into_bytes();
            Ok(Some(serde_json::from_slice(&bytes)?))
        }
        Err(e) if e.is_code("NoSuchKey") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn write_ledger(clients: &Clients, bucket: &str, key: &str, entry: &LedgerEntry) -> Result<(), IngestError> {
    let body = serde_json::to_vec_pretty(entry)?;
    clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(ByteStream::from(body))
        .send()
        .await
        .aws("s3:PutObject ledger")?;
    Ok(())
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(base: &Path, fp: &str) -> std::io::Result<Scratch> {
        let dir = base.join(format!("ariane-ingest-{fp}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    clients: &Clients,
    config: &IngestConfig,
    identity_queue_url: &str,
    spec: &Spec,
    object: &ObjectRef,
    etag: &str,
    fp: &str,
    entry: &mut LedgerEntry,
) -> Result<(), IngestError> {
    let mut get = clients.s3.get_object().bucket(&object.bucket).key(&object.key);
    get = match &object.version_id {
        Some(v) => get.version_id(v),
        None => get.if_match(etag),
    };
    let source = get.send().await.aws("s3:GetObject source")?;
    let scratch = Scratch::new(&config.scratch_dir, fp)?;
    let file = FileContext { source_key: object.key.clone(), fingerprint: fp.to_string() };

    let parsed = if spec.format.kind == FormatKind::Parquet {
        // Parquet needs random access: download to scratch space first.
        let path = scratch.0.join("source.parquet");
        let mut out = tokio::fs::File::create(&path).await?;
        let mut body = source.body.into_async_read();
        tokio::io::copy(&mut body, &mut out).await.map_err(|e| FileError::Read { line: 0, source: e })?;
        let (spec, dir) = (spec.clone(), scratch.0.clone());
        tokio::task::spawn_blocking(move || {
            let mut sink = LakeSink::new(dir)?;
            let counts = engine::parse_parquet(&path, &spec, file, &mut sink)?;
            Ok::<_, IngestError>((counts, sink.finish()?))
        })
        .await?
    } else {
        let reader = Box::pin(source.body.into_async_read());
        let (spec, dir) = (spec.clone(), scratch.0.clone());
        tokio::task::spawn_blocking(move || {
            let input = Box::new(TransientReader(SyncIoBridge::new(reader)));
            let mut sink = LakeSink::new(dir)?;
            let counts = engine::parse(input, &spec, file, &mut sink)?;
            Ok::<_, IngestError>((counts, sink.finish()?))
        })
        .await?
    };
    let (counts, parts) = parsed?;
    upload_parts(clients, config, &spec.channel, fp, &parts, entry).await?;
    let messages = send_spooled(clients, identity_queue_url, &parts.observations, config.send_concurrency).await?;
    record_counts(entry, &counts);
    entry.observation_messages = messages;
    tracing::info!(
        key = %object.key, spec = %spec.file, rows_read = counts.rows_read, events = counts.events, rejected = counts.rejected,
        observations = counts.observations, observation_messages = messages, "file ingested"
    );
    ariane_shared::metrics::emit(
        "ingest",
        &[
            ("RowsRead", counts.rows_read as f64),
            ("EventsWritten", counts.events as f64),
            ("RowsRejected", counts.rejected as f64),
            ("ObservationsSent", counts.observations as f64),
        ],
    );
    Ok(())
}

fn record_counts(entry: &mut LedgerEntry, counts: &Counts) {
    entry.rows_read = counts.rows_read;
    entry.events_written = counts.events;
    entry.rows_rejected = counts.rejected;
    entry.observations_sent = counts.observations;
    entry.identifier_warnings = counts.identifier_warnings;
}

/// Sends the spooled identity messages, `concurrency` batches of ten in flight.
async fn send_spooled(clients: &Clients, queue: &str, spool: &Path, concurrency: usize) -> Result<u64, IngestError> {
    let reader = std::io::BufReader::new(File::open(spool)?);
    let mut in_flight = tokio::task::JoinSet::new();
    let mut sent = 0u64;
    let mut batch = Vec::with_capacity(SQS_BATCH);
    let mut lines = reader.lines();
    loop {
        let line = lines.next().transpose()?;
        let done = line.is_none();
        if let Some(l) = line {
            batch.push(l);
        }
        if batch.len() == SQS_BATCH || (done && !batch.is_empty()) {
            let (client, queue, bodies) = (clients.sqs.clone(), queue.to_string(), std::mem::take(&mut batch));
            in_flight.spawn(async move { send_all(&client, &queue, &bodies).await });
            while in_flight.len() >= concurrency {
                if let Some(r) = in_flight.join_next().await {
                    sent += r?? as u64;
                }
            }
        }
        if done {
            break;
        }
    }
    while let Some(r) = in_flight.join_next().await {
        sent += r?? as u64;
    }
    Ok(sent)
}

/// Finished local files: event parts by (date, part), rejects, spooled observations.
struct Parts {
    events: Vec<(String, u32, PathBuf)>,
    rejects: Option<PathBuf>,
    observations: PathBuf,
}

async fn upload_parts(
    clients: &Clients,
    config: &IngestConfig,
    channel: &str,
    fp: &str,
    parts: &Parts,
    entry: &mut LedgerEntry,
) -> Result<(), IngestError> {
    for (date, part, path) in &parts.events {
        let name = if *part == 0 { fp.to_string() } else { format!("{fp}-{part}") };
        let key = lake::events_key(channel, date, &name);
        put_file(clients, &config.lake_bucket, &key, path).await?;
        entry.event_files.push(key);
    }
    if let Some(path) = &parts.rejects {
        let key = lake::rejects_key(channel, fp);
        put_file(clients, &config.lake_bucket, &key, path).await?;
        entry.rejects_file = Some(key);
    }
    Ok(())
}

async fn put_file(clients: &Clients, bucket: &str, key: &str, path: &Path) -> Result<(), IngestError> {
    let body = ByteStream::from_path(path).await.map_err(|e| std::io::Error::other(e.to_string()))?;
    clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/vnd.apache.parquet")
        .body(body)
        .send()
        .await
        .aws("s3:PutObject lake")?;
    Ok(())
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
    fn create(path: PathBuf, schema: arrow::datatypes::SchemaRef, part: u32) -> Result<Self, SinkError> {
        let file = BufWriter::new(File::create(&path)?);
        Ok(PartWriter { path, writer: lake::parquet_writer(file, schema)?, buffer: Vec::new(), part, last_used: 0, flushes: 0 })
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
    closed: std::collections::HashSet<String>,
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
    pub fn new(dir: PathBuf) -> Result<Self, IngestError> {
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
            closed: std::collections::HashSet::new(),
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
            self.spill[bucket] = Some(PartWriter::create(path, lake::events_schema(), 0)?);
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
                    .with_batch_size(8192)
                    .build()?;
                for batch in reader {
                    let batch = batch?;
                    let at = batch
                        .column_by_name("occurred_at")
                        .and_then(|c| c.as_any().downcast_ref::<arrow::array::TimestampMicrosecondArray>())
                        .ok_or("spill file without occurred_at")?;
                    let mut rows: BTreeMap<String, Vec<u32>> = BTreeMap::new();
                    for i in 0..batch.num_rows() {
                        let date = DateTime::<Utc>::from_timestamp_micros(at.value(i)).ok_or("timestamp out of range")?;
                        rows.entry(date.format("%Y-%m-%d").to_string()).or_default().push(i as u32);
                    }
                    for (date, indices) in rows {
                        let indices = arrow::array::UInt32Array::from(indices);
                        let columns = batch
                            .columns()
                            .iter()
                            .map(|c| arrow::compute::take(c.as_ref(), &indices, None))
                            .collect::<Result<Vec<_>, _>>()?;
                        let part_batch = arrow::array::RecordBatch::try_new(batch.schema(), columns)?;
                        if !writers.contains_key(&date) {
                            let part = self.next_part.entry(date.clone()).or_insert(0);
                            let path = self.dir.join(format!("events-{date}-{part}.parquet"));
                            let w = lake::parquet_writer(BufWriter::new(File::create(&path)?), lake::events_schema())?;
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

    fn finish(mut self) -> Result<Parts, IngestError> {
        let io = |e: SinkError| IngestError::Scratch(std::io::Error::other(e.to_string()));
        self.flush_observations().map_err(io)?;
        self.spool.flush()?;
        let dates: Vec<String> = self.partitions.keys().cloned().collect();
        for date in dates {
            self.close_partition(&date).map_err(io)?;
        }
        self.unspill().map_err(io)?;
        self.finished.sort();
        let rejects = match self.rejects.take() {
            Some(mut part) => {
                if !part.buffer.is_empty() {
                    part.writer.write(&lake::rejects_batch(&part.buffer).map_err(parquet::errors::ParquetError::from)?)?;
                }
                part.writer.close()?;
                Some(part.path)
            }
            None => None,
        };
        Ok(Parts { events: self.finished, rejects, observations: self.spool_path })
    }

    /// Local files written so far (tests and benchmarks).
    pub fn finish_paths(self) -> Result<(Vec<PathBuf>, Option<PathBuf>, PathBuf), IngestError> {
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
            let writer = PartWriter::create(path, lake::events_schema(), *part)?;
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
            self.rejects = Some(PartWriter::create(self.dir.join("rejects.parquet"), lake::rejects_schema(), 0)?);
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

    #[test]
    fn channels_come_from_the_prefix() {
        assert_eq!(channel_of("ecommerce/orders.csv"), Some("ecommerce"));
        assert_eq!(channel_of("pos/2026/11/01.csv"), Some("pos"));
        assert_eq!(channel_of("unknown/x.csv"), None);
        assert_eq!(channel_of("orders.csv"), None);
    }

    fn event(i: u64, day: u32) -> CanonicalEvent {
        let at = chrono::TimeZone::with_ymd_and_hms(&Utc, 2024, 1, 1, 12, 0, 0).unwrap() + chrono::Duration::days(day as i64);
        CanonicalEvent {
            event_id: format!("e{i}"),
            channel: "crm".into(),
            event_type: "contact_updated".into(),
            occurred_at: at,
            anchor_id: None,
            email_sha256: None,
            phone_sha256: None,
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

    #[test]
    fn fingerprint_ignores_etag_quotes() {
        assert_eq!(fingerprint("ecommerce", "\"abc\"", Some(3)), fingerprint("ecommerce", "abc", Some(3)));
        assert_ne!(fingerprint("ecommerce", "abc", Some(3)), fingerprint("pos", "abc", Some(3)));
    }
}
