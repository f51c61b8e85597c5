//! Ingesting one object: ledger check, spec selection, streaming parse, Parquet parts in
//! the lake, observations to the identity queue, ledger entry. And routing: forwarding a
//! landing notification to the queue of its channel.
//!
//! Every I/O goes through the ports ([`BlobStore`] for the landing object, the lake parts
//! and the ledger; [`Queue`] for the forwarded notification and the observations), so the
//! same code runs on S3/SQS in Lambda and on the in-memory adapters in the unit tests.
//!
//! The ledger has one entry per landed key and version
//! (`ledger/ingest/<channel>/<entry id>.json`, [`lake::ledger_entry_id`]) and a content
//! index (`ledger/ingest/<channel>/content/<fingerprint>.json`) naming the entry that
//! first ingested each content: an object whose content was already ingested under
//! another key or version gets an entry of its own, `duplicate`, naming that first one,
//! and nothing else is done. A failed attempt is kept in the entry's `attempts` when the
//! same key and version is tried again, never overwritten.
//!
//! Idempotency: the output keys and ids derive from a fingerprint of (channel, ETag, size)
//! and from each row's natural key, so a re-delivered notification or a re-upload of
//! identical content rewrites the same objects with the same content, and a completed (or
//! duplicate) entry short-cuts the work (no observation is sent twice). Observations are
//! spooled to scratch space during the parse and sent only once the whole file has been
//! read and its parts uploaded: a file that turns out to be truncated sends nothing.

use std::fs::File;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use ariane_shared::adapters::sqs::SQS_BATCH;
use ariane_shared::identifiers::stable_id;
use ariane_shared::lake;
use ariane_shared::model::CHANNELS;
use ariane_shared::ports::{BlobError, BlobMeta, BlobStore, BlobVersion, Queue, SendError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::io::SyncIoBridge;

use crate::config::{IngestConfig, Mode};
use crate::engine::{self, Counts, LocalTimes, Skipped};
use crate::map::FileContext;
use crate::parts::Parts;
pub use crate::parts::{LakeSink, Limits};
use crate::s3event::{notification_body, ObjectRef};
use crate::sink::SinkError;
use crate::source::{FileError, TransientReader};
use crate::spec::{Catalog, FormatKind, SelectError, Spec};

const PARQUET_CONTENT_TYPE: &str = "application/vnd.apache.parquet";
const JSON_CONTENT_TYPE: &str = "application/json";

/// What happened to a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerStatus {
    Completed,
    Failed,
    /// Its content was already ingested under another key or version (`duplicate_of`):
    /// nothing was read, written or sent for it.
    Duplicate,
}

/// The ledger entry of one landed key and version (`ledger/ingest/<channel>/<id>.json`,
/// [`LedgerEntry::ledger_key`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub channel: String,
    /// The channel spec that read the file (`channels/<channel>/<spec>.toml`).
    #[serde(default)]
    pub spec: Option<String>,
    /// The content's fingerprint (channel, ETag, size): the key of the content index.
    pub fingerprint: String,
    pub source_bucket: String,
    pub source_key: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub size: Option<i64>,
    pub status: LedgerStatus,
    /// A duplicate's first: the entry that ingested this content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<FirstEntry>,
    /// Data rows: `rows_read = events_written + rows_rejected`.
    pub rows_read: u64,
    pub events_written: u64,
    pub rows_rejected: u64,
    /// Physical lines: `lines_read = events_written + rows_rejected + lines_skipped`
    /// (every reason), but for a JSON array with several elements on one line.
    #[serde(default)]
    pub lines_read: u64,
    #[serde(default)]
    pub lines_skipped: Skipped,
    /// Events whose local time was shifted (spring gap) or ambiguous (autumn overlap);
    /// the lake's `local_time` column marks them.
    #[serde(default)]
    pub local_time: LocalTimes,
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
    /// Earlier attempts of this key and version that failed, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

/// The entry that first ingested a content, as its duplicates name it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstEntry {
    pub source_key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    /// Its ledger entry.
    pub ledger_key: String,
}

/// A failed attempt, kept in the entry of its key and version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub spec: Option<String>,
    pub error: Option<String>,
    pub retryable: bool,
}

impl LedgerEntry {
    /// The version the entry is of: the version id, else the entity tag.
    pub fn version(&self) -> &str {
        self.version_id.as_deref().or(self.etag.as_deref()).unwrap_or_default()
    }

    /// Where the entry is stored (entries written before the ledger was per key and
    /// version are stored at their fingerprint instead).
    pub fn ledger_key(&self) -> String {
        lake::ledger_key(&self.channel, &lake::ledger_entry_id(&self.channel, &self.source_key, self.version()))
    }

    fn first(&self) -> FirstEntry {
        FirstEntry {
            source_key: self.source_key.clone(),
            version_id: self.version_id.clone(),
            etag: self.etag.clone(),
            ledger_key: self.ledger_key(),
        }
    }

    /// This entry as a failed attempt.
    fn attempt(&self) -> Attempt {
        Attempt {
            started_at: self.started_at,
            finished_at: self.finished_at,
            spec: self.spec.clone(),
            error: self.error.clone(),
            retryable: self.retryable,
        }
    }
}

/// The content index (`ledger/ingest/<channel>/content/<fingerprint>.json`): the entry
/// that first ingested a content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentIndex {
    pub fingerprint: String,
    pub first: FirstEntry,
    pub recorded_at: DateTime<Utc>,
}

/// Outcome of one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Ingested(LedgerEntry),
    /// This key and version already has a completed (or duplicate) entry: nothing was done.
    AlreadyIngested(LedgerEntry),
    /// Its content was ingested under another key or version: recorded as a duplicate of
    /// it (the entry names it), nothing else done.
    Duplicate(LedgerEntry),
    /// The object is an erasure purge's rewrite of a file already ingested (without the
    /// erased person's rows, `functions/purge`): nothing was done.
    PurgeRewrite {
        key: String,
        run: String,
    },
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
    Blob(#[from] BlobError),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("cannot send identity observations: {0}")]
    Send(#[from] SendError),
    #[error("cannot forward the notification to the {channel} queue: {source}")]
    Forward {
        channel: String,
        #[source]
        source: SendError,
    },
    #[error("cannot write to scratch space: {0}")]
    Scratch(#[from] std::io::Error),
    #[error("cannot write to scratch space: {0}")]
    Sink(#[from] SinkError),
    #[error("ledger object {key} is not valid JSON: {source}")]
    LedgerDecode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode the ledger entry: {0}")]
    LedgerEncode(#[source] serde_json::Error),
    #[error("parser task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl IngestError {
    /// Whether a retry can succeed (a missing column will not appear by retrying).
    pub fn retryable(&self) -> bool {
        match self {
            IngestError::Blob(e) => e.retryable(),
            IngestError::Send(e) | IngestError::Forward { source: e, .. } => e.retryable(),
            IngestError::File(e) => e.retryable(),
            IngestError::Scratch(_) | IngestError::Sink(_) | IngestError::Join(_) => true,
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
        duplicate_of: None,
        rows_read: 0,
        events_written: 0,
        rows_rejected: 0,
        lines_read: 0,
        lines_skipped: Skipped::default(),
        local_time: LocalTimes::default(),
        observations_sent: 0,
        observation_messages: 0,
        identifier_warnings: 0,
        event_files: vec![],
        rejects_file: None,
        error: None,
        retryable: false,
        started_at: now,
        finished_at: now,
        attempts: vec![],
    }
}

/// The purge run that wrote this very content, when the notified object is an erasure
/// purge's rewrite (its metadata says so and, when the notification names its entity
/// tag, that tag is the current one: an original upload notified late is still read).
fn purge_rewrite(object: &ObjectRef, meta: Option<&BlobMeta>) -> Option<String> {
    let meta = meta?;
    let same = object.etag.as_deref().is_none_or(|e| e.trim_matches('"') == meta.etag.trim_matches('"'));
    meta.purged_by.clone().filter(|_| same)
}

/// The entity tag and size of the notified object: the notification's, else the HEAD's.
fn etag_and_size(object: &ObjectRef, meta: Option<BlobMeta>) -> Result<(String, Option<i64>), IngestError> {
    match (&object.etag, meta) {
        (Some(e), _) => Ok((e.clone(), object.size)),
        (None, Some(meta)) => Ok((meta.etag, meta.size)),
        (None, None) => Err(BlobError::NotFound { bucket: object.bucket.clone(), key: object.key.clone() }.into()),
    }
}

/// Records a file that cannot be ingested at all under `ledger/ingest/unknown/` (best
/// effort) so it is visible, and returns the error. One entry per key and version, as in
/// the channels' ledgers; a retry rewrites it with the same error (these functions may
/// not read `ledger/ingest/unknown/`, so it keeps no attempts).
async fn record_unroutable<B: BlobStore + ?Sized>(blobs: &B, config: &IngestConfig, object: &ObjectRef, err: IngestError) -> IngestError {
    // The notification may lack an ETag (nothing stored is missing: the key names it).
    let (etag, size) = (object.etag.clone().unwrap_or_default(), object.size);
    let fp = fingerprint("unknown", &format!("{}:{etag}", object.key), size);
    let mut entry = new_entry("unknown", &fp, object, &etag, size);
    entry.error = Some(err.to_string());
    entry.retryable = err.retryable();
    if let Err(e) = write_ledger(blobs, &config.lake_bucket, &entry.ledger_key(), &entry).await {
        tracing::error!(error = %e, "cannot record the failure in the ledger");
    }
    err
}

/// Router: forwards one object's notification to its channel's queue; returns the channel.
pub async fn route_object<B, Q>(blobs: &B, queue: &Q, config: &IngestConfig, object: &ObjectRef) -> Result<String, IngestError>
where
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let Mode::Router { channel_queues } = &config.mode else {
        return Err(IngestError::NotAChannel);
    };
    if object.bucket != config.landing_bucket {
        let err =
            IngestError::WrongBucket { bucket: object.bucket.clone(), key: object.key.clone(), landing: config.landing_bucket.clone() };
        return Err(record_unroutable(blobs, config, object, err).await);
    }
    let Some(channel) = channel_of(&object.key) else {
        let err = IngestError::UnknownChannel { key: object.key.clone() };
        return Err(record_unroutable(blobs, config, object, err).await);
    };
    let Some(queue_url) = channel_queues.get(channel) else {
        let err = IngestError::NoRoute { channel: channel.to_string() };
        return Err(record_unroutable(blobs, config, object, err).await);
    };
    queue
        .send_all(queue_url, &[notification_body(object)])
        .await
        .map_err(|source| IngestError::Forward { channel: channel.to_string(), source })?;
    Ok(channel.to_string())
}

/// Ingests one object of this function's channel. On failure a `failed` ledger entry is
/// written (best effort) and the error returned, so the message is retried and ends in
/// the DLQ.
pub async fn ingest_object<B, Q>(
    blobs: &B,
    queue: &Q,
    config: &IngestConfig,
    catalog: &Catalog,
    object: &ObjectRef,
) -> Result<Outcome, IngestError>
where
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let Mode::Channel { channel: own, identity_queue_url } = &config.mode else {
        return Err(IngestError::NotAChannel);
    };
    if object.bucket != config.landing_bucket {
        let err =
            IngestError::WrongBucket { bucket: object.bucket.clone(), key: object.key.clone(), landing: config.landing_bucket.clone() };
        return Err(record_unroutable(blobs, config, object, err).await);
    }
    let channel = match channel_of(&object.key) {
        Some(c) if c == own => c,
        Some(c) => {
            let err = IngestError::WrongChannel { key: object.key.clone(), found: c.to_string(), expected: own.clone() };
            return Err(record_unroutable(blobs, config, object, err).await);
        }
        None => {
            let err = IngestError::UnknownChannel { key: object.key.clone() };
            return Err(record_unroutable(blobs, config, object, err).await);
        }
    };
    // One HEAD serves both: is this a purge's rewrite, and (when the notification
    // lacks them) its entity tag and size.
    let meta = blobs.head(&object.bucket, &object.key).await?;
    if let Some(run) = purge_rewrite(object, meta.as_ref()) {
        return Ok(Outcome::PurgeRewrite { key: object.key.clone(), run });
    }
    let (etag, size) = etag_and_size(object, meta)?;
    let fp = fingerprint(channel, &etag, size);
    let mut entry = new_entry(channel, &fp, object, &etag, size);
    let ledger_key = entry.ledger_key();
    let lake_bucket = &config.lake_bucket;
    // This key and version: done already, or failed before (kept as history).
    match read_json::<_, LedgerEntry>(blobs, lake_bucket, &ledger_key).await? {
        Some(existing) if existing.status == LedgerStatus::Completed => {
            // A crash between the entry and the content index: write the index now.
            let content_key = lake::ledger_content_key(channel, &existing.fingerprint);
            if read_json::<_, ContentIndex>(blobs, lake_bucket, &content_key).await?.is_none() {
                write_content_index(blobs, lake_bucket, &existing).await?;
            }
            return Ok(Outcome::AlreadyIngested(existing));
        }
        Some(existing) if existing.status == LedgerStatus::Duplicate => return Ok(Outcome::AlreadyIngested(existing)),
        Some(failed) => {
            entry.attempts = failed.attempts.clone();
            entry.attempts.push(failed.attempt());
        }
        None => {}
    }
    // The same content under another key or version: a duplicate of the first.
    if let Some(first) = first_with_content(blobs, lake_bucket, channel, &fp, &ledger_key).await? {
        entry.status = LedgerStatus::Duplicate;
        entry.duplicate_of = Some(first);
        entry.finished_at = Utc::now();
        write_ledger(blobs, lake_bucket, &ledger_key, &entry).await?;
        return Ok(Outcome::Duplicate(entry));
    }
    let result = match catalog.select(channel, &object.key) {
        Ok(spec) => {
            entry.spec = Some(spec.file.clone());
            let file = SourceFile { object, etag: &etag, fingerprint: &fp };
            run(blobs, queue, config, identity_queue_url, spec, file, &mut entry).await
        }
        Err(e) => Err(e.into()),
    };
    entry.finished_at = Utc::now();
    match result {
        Ok(()) => {
            entry.status = LedgerStatus::Completed;
            write_ledger(blobs, lake_bucket, &ledger_key, &entry).await?;
            write_content_index(blobs, lake_bucket, &entry).await?;
            Ok(Outcome::Ingested(entry))
        }
        Err(err) => {
            entry.error = Some(err.to_string());
            entry.retryable = err.retryable();
            if let Err(ledger_err) = write_ledger(blobs, lake_bucket, &ledger_key, &entry).await {
                tracing::error!(error = %ledger_err, "cannot record the failure in the ledger");
            }
            Err(err)
        }
    }
}

/// The entry that first ingested the content `fp`, when it is another than `own`: the
/// content index's, else (a ledger written before the index existed) the completed entry
/// stored at the fingerprint itself.
async fn first_with_content<B: BlobStore + ?Sized>(
    blobs: &B,
    bucket: &str,
    channel: &str,
    fp: &str,
    own: &str,
) -> Result<Option<FirstEntry>, IngestError> {
    if let Some(index) = read_json::<_, ContentIndex>(blobs, bucket, &lake::ledger_content_key(channel, fp)).await? {
        return Ok(Some(index.first).filter(|first| first.ledger_key != own));
    }
    let legacy = lake::ledger_key(channel, fp);
    Ok(match read_json::<_, LedgerEntry>(blobs, bucket, &legacy).await? {
        Some(old) if old.status == LedgerStatus::Completed => Some(FirstEntry { ledger_key: legacy, ..old.first() }),
        _ => None,
    })
}

async fn write_content_index<B: BlobStore + ?Sized>(blobs: &B, bucket: &str, entry: &LedgerEntry) -> Result<(), IngestError> {
    let index = ContentIndex { fingerprint: entry.fingerprint.clone(), first: entry.first(), recorded_at: Utc::now() };
    let body = serde_json::to_vec_pretty(&index).map_err(IngestError::LedgerEncode)?;
    let key = lake::ledger_content_key(&entry.channel, &entry.fingerprint);
    blobs.put(bucket, &key, Bytes::from(body), JSON_CONTENT_TYPE).await?;
    Ok(())
}

/// The ledger object (an entry, the content index) stored at `key`; one that does not
/// decode is an error (never taken for an absent one: the file would be ingested again
/// on top of it).
async fn read_json<B: BlobStore + ?Sized, T: serde::de::DeserializeOwned>(
    blobs: &B,
    bucket: &str,
    key: &str,
) -> Result<Option<T>, IngestError> {
    match blobs.get(bucket, key).await? {
        None => Ok(None),
        Some(bytes) => {
            serde_json::from_slice(&bytes).map(Some).map_err(|source| IngestError::LedgerDecode { key: key.to_string(), source })
        }
    }
}

async fn write_ledger<B: BlobStore + ?Sized>(blobs: &B, bucket: &str, key: &str, entry: &LedgerEntry) -> Result<(), IngestError> {
    let body = serde_json::to_vec_pretty(entry).map_err(IngestError::LedgerEncode)?;
    blobs.put(bucket, key, Bytes::from(body), JSON_CONTENT_TYPE).await?;
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

/// The landing object being ingested, as pinned when the work started.
struct SourceFile<'a> {
    object: &'a ObjectRef,
    etag: &'a str,
    fingerprint: &'a str,
}

impl SourceFile<'_> {
    /// The version a read must see: the notified version id, else the ETag (a re-upload
    /// in between fails the read instead of mixing two files).
    fn version(&self) -> BlobVersion {
        match &self.object.version_id {
            Some(v) => BlobVersion::Id(v.clone()),
            None => BlobVersion::ETag(self.etag.to_string()),
        }
    }
}

async fn run<B, Q>(
    blobs: &B,
    queue: &Q,
    config: &IngestConfig,
    identity_queue_url: &str,
    spec: &Spec,
    source: SourceFile<'_>,
    entry: &mut LedgerEntry,
) -> Result<(), IngestError>
where
    B: BlobStore + ?Sized,
    Q: Queue + ?Sized,
{
    let object = source.object;
    let fp = source.fingerprint;
    let body = blobs.open(&object.bucket, &object.key, &source.version()).await?;
    let scratch = Scratch::new(&config.scratch_dir, fp)?;
    let (counts, parts) =
        parse(body, spec, FileContext { source_key: object.key.clone(), fingerprint: fp.to_string() }, &scratch.0).await?;
    upload_parts(blobs, &config.lake_bucket, &spec.channel, fp, &parts, entry).await?;
    let messages = send_spooled(queue, identity_queue_url, &parts.observations, config.send_concurrency).await?;
    record_counts(entry, &counts);
    entry.observation_messages = messages;
    tracing::info!(
        key = %object.key, spec = %spec.file, rows_read = counts.rows_read, events = counts.events, rejected = counts.rejected,
        lines_read = counts.lines_read, skipped = ?counts.skipped, local_time = ?counts.local_time,
        observations = counts.observations, observation_messages = messages, "file ingested"
    );
    ariane_shared::metrics::emit(
        "ingest",
        &[
            ("RowsRead", counts.rows_read as f64),
            ("EventsWritten", counts.events as f64),
            ("RowsRejected", counts.rejected as f64),
            ("ObservationsSent", counts.observations as f64),
            ("LinesSkipped", counts.skipped.total() as f64),
            ("LocalTimesShiftedOrAmbiguous", (counts.local_time.shifted + counts.local_time.ambiguous) as f64),
        ],
    );
    Ok(())
}

/// Parses the streamed object into Parquet parts, rejects and the observation spool in
/// `dir` (on a blocking thread: parsing is synchronous).
async fn parse(body: ariane_shared::ports::BlobReader, spec: &Spec, file: FileContext, dir: &Path) -> Result<(Counts, Parts), IngestError> {
    let (spec, dir) = (spec.clone(), dir.to_path_buf());
    if spec.format.kind == FormatKind::Parquet {
        // Parquet needs random access: download to scratch space first.
        let path = dir.join("source.parquet");
        let mut out = tokio::fs::File::create(&path).await?;
        let mut body = body;
        tokio::io::copy(&mut body, &mut out).await.map_err(|e| FileError::Read { line: 0, source: e })?;
        tokio::task::spawn_blocking(move || {
            let mut sink = LakeSink::new(dir)?;
            let counts = engine::parse_parquet(&path, &spec, file, &mut sink)?;
            Ok::<_, IngestError>((counts, sink.finish()?))
        })
        .await?
    } else {
        tokio::task::spawn_blocking(move || {
            let input = Box::new(TransientReader(SyncIoBridge::new(body)));
            let mut sink = LakeSink::new(dir)?;
            let counts = engine::parse(input, &spec, file, &mut sink)?;
            Ok::<_, IngestError>((counts, sink.finish()?))
        })
        .await?
    }
}

fn record_counts(entry: &mut LedgerEntry, counts: &Counts) {
    entry.rows_read = counts.rows_read;
    entry.events_written = counts.events;
    entry.rows_rejected = counts.rejected;
    entry.lines_read = counts.lines_read;
    entry.lines_skipped = counts.skipped;
    entry.local_time = counts.local_time;
    entry.observations_sent = counts.observations;
    entry.identifier_warnings = counts.identifier_warnings;
}

/// Sends the spooled identity messages (one per spool line), `concurrency` batches of
/// [`SQS_BATCH`] in flight; the first failure stops the sends and is returned.
async fn send_spooled<Q: Queue + ?Sized>(queue: &Q, queue_url: &str, spool: &Path, concurrency: usize) -> Result<u64, IngestError> {
    let mut lines = std::io::BufReader::new(File::open(spool)?).lines();
    let batches = std::iter::from_fn(move || match lines.by_ref().take(SQS_BATCH).collect::<Result<Vec<String>, _>>() {
        Ok(batch) if batch.is_empty() => None,
        other => Some(other),
    });
    let mut sends = futures::stream::iter(batches)
        .map(|batch| async move { Ok::<_, IngestError>(queue.send_all(queue_url, &batch?).await? as u64) })
        .buffer_unordered(concurrency.max(1));
    let mut sent = 0u64;
    while let Some(n) = sends.next().await {
        sent += n?;
    }
    Ok(sent)
}

async fn upload_parts<B: BlobStore + ?Sized>(
    blobs: &B,
    bucket: &str,
    channel: &str,
    fp: &str,
    parts: &Parts,
    entry: &mut LedgerEntry,
) -> Result<(), IngestError> {
    for (date, part, path) in &parts.events {
        let name = if *part == 0 { fp.to_string() } else { format!("{fp}-{part}") };
        let key = lake::events_key(channel, date, &name);
        blobs.put_file(bucket, &key, path, PARQUET_CONTENT_TYPE).await?;
        entry.event_files.push(key);
    }
    if let Some(path) = &parts.rejects {
        let key = lake::rejects_key(channel, fp);
        blobs.put_file(bucket, &key, path, PARQUET_CONTENT_TYPE).await?;
        entry.rejects_file = Some(key);
    }
    Ok(())
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

    #[test]
    fn fingerprint_ignores_etag_quotes() {
        assert_eq!(fingerprint("ecommerce", "\"abc\"", Some(3)), fingerprint("ecommerce", "abc", Some(3)));
        assert_ne!(fingerprint("ecommerce", "abc", Some(3)), fingerprint("pos", "abc", Some(3)));
    }
}
