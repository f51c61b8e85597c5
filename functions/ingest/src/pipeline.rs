//! Ingesting one object: ledger check, streaming parse, Parquet parts in the lake,
//! observations to the identity queue, ledger entry.
//!
//! Idempotency: the output keys and ids derive from a fingerprint of (channel, ETag, size),
//! so a re-delivered notification or a re-upload of identical content rewrites the same
//! objects with the same content, and a completed ledger entry short-cuts the work (no
//! observations are sent twice). A crash mid-file leaves no completed ledger entry: the
//! retry redoes the file and overwrites the same keys.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
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
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use crate::config::IngestConfig;
use crate::orders::{self, Counts, FileError, RowSink, SinkError};
use crate::s3event::ObjectRef;

/// Rows buffered per partition before they are encoded.
const PARTITION_BUFFER: usize = 4096;

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
    pub identifier_warnings: u64,
    pub event_files: Vec<String>,
    pub rejects_file: Option<String>,
    pub error: Option<String>,
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
    #[error("channel {channel} has no parser yet")]
    UnsupportedChannel { channel: String },
    #[error("object s3://{bucket}/{key} is not in the landing bucket {landing}")]
    WrongBucket { bucket: String, key: String, landing: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("cannot read the source object: {0}")]
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
            IngestError::File(FileError::Read { .. }) | IngestError::Scratch(_) | IngestError::Join(_) => true,
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

/// Ingests one object. On failure a `failed` ledger entry is written (best effort) and
/// the error returned, so the message is retried and ends in the DLQ.
pub async fn ingest_object(clients: &Clients, config: &IngestConfig, object: &ObjectRef) -> Result<Outcome, IngestError> {
    let started_at = Utc::now();
    if object.bucket != config.landing_bucket {
        return Err(IngestError::WrongBucket {
            bucket: object.bucket.clone(),
            key: object.key.clone(),
            landing: config.landing_bucket.clone(),
        });
    }
    let channel = channel_of(&object.key).ok_or_else(|| IngestError::UnknownChannel { key: object.key.clone() });
    // Unknown channels are recorded under an `unknown` ledger prefix so they are visible.
    let ledger_channel = channel.as_ref().map(|c| c.to_string()).unwrap_or_else(|_| "unknown".to_string());
    let (etag, size) = match &object.etag {
        Some(e) => (e.clone(), object.size),
        None => head(clients, object).await?,
    };
    let fp = fingerprint(&ledger_channel, &etag, size);
    let ledger_key = lake::ledger_key(&ledger_channel, &fp);
    if let Some(existing) = read_ledger(clients, &config.lake_bucket, &ledger_key).await? {
        if existing.status == LedgerStatus::Completed {
            return Ok(Outcome::AlreadyIngested(existing));
        }
    }
    let mut entry = LedgerEntry {
        channel: ledger_channel.clone(),
        fingerprint: fp.clone(),
        source_bucket: object.bucket.clone(),
        source_key: object.key.clone(),
        etag: Some(etag.clone()),
        version_id: object.version_id.clone(),
        size,
        status: LedgerStatus::Failed,
        rows_read: 0,
        events_written: 0,
        rows_rejected: 0,
        observations_sent: 0,
        identifier_warnings: 0,
        event_files: vec![],
        rejects_file: None,
        error: None,
        started_at,
        finished_at: started_at,
    };
    let result = match channel {
        Ok(orders::CHANNEL) => run(clients, config, object, &etag, &fp, &mut entry).await,
        Ok(other) => Err(IngestError::UnsupportedChannel { channel: other.to_string() }),
        Err(e) => Err(e),
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
            if let Err(ledger_err) = write_ledger(clients, &config.lake_bucket, &ledger_key, &entry).await {
                tracing::error!(error = %ledger_err, "cannot record the failure in the ledger");
            }
            Err(err)
        }
    }
}

async fn head(clients: &Clients, object: &ObjectRef) -> Result<(String, Option<i64>), IngestError> {
    let out = clients.s3.head_object().bucket(&object.bucket).key(&object.key).send().await.aws("s3:HeadObject")?;
    Ok((out.e_tag().unwrap_or_default().to_string(), out.content_length()))
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

async fn run(
    clients: &Clients,
    config: &IngestConfig,
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
    let reader = Box::pin(source.body.into_async_read());

    let scratch = tempdir_in(&config.scratch_dir, fp)?;
    let (tx, mut rx) = mpsc::channel::<String>(SQS_BATCH * 4);
    let sender_clients = clients.sqs.clone();
    let queue = config.identity_queue_url.clone();
    let sender = tokio::spawn(async move {
        let mut pending = Vec::with_capacity(SQS_BATCH);
        let mut sent = 0usize;
        while let Some(body) = rx.recv().await {
            pending.push(body);
            if pending.len() == SQS_BATCH {
                sent += send_all(&sender_clients, &queue, &pending).await?;
                pending.clear();
            }
        }
        sent += send_all(&sender_clients, &queue, &pending).await?;
        Ok::<usize, SendError>(sent)
    });

    let source_key = object.key.clone();
    let scratch_dir = scratch.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        let mut sink = LakeSink::new(scratch_dir, tx);
        let counts = orders::parse(SyncIoBridge::new(reader), &source_key, &mut sink)?;
        let parts = sink.finish()?;
        Ok::<_, IngestError>((counts, parts))
    })
    .await;
    // The sink (and its sender half) is dropped by now, so the sender task ends.
    let sent = sender.await?;
    let (counts, parts) = match parsed {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e);
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e.into());
        }
    };
    let observation_messages = sent?;
    let upload = upload_parts(clients, config, fp, &parts, entry).await;
    let _ = std::fs::remove_dir_all(&scratch);
    upload?;
    record_counts(entry, &counts);
    tracing::info!(
        key = %object.key, rows_read = counts.rows_read, events = counts.events, rejected = counts.rejected,
        observations = counts.observations, observation_messages, "file ingested"
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

fn tempdir_in(base: &Path, fp: &str) -> std::io::Result<PathBuf> {
    let dir = base.join(format!("ariane-ingest-{fp}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Finished local Parquet parts, by lake key suffix.
struct Parts {
    events: BTreeMap<String, PathBuf>,
    rejects: Option<PathBuf>,
}

async fn upload_parts(
    clients: &Clients,
    config: &IngestConfig,
    fp: &str,
    parts: &Parts,
    entry: &mut LedgerEntry,
) -> Result<(), IngestError> {
    for (date, path) in &parts.events {
        let key = lake::events_key(orders::CHANNEL, date, fp);
        put_file(clients, &config.lake_bucket, &key, path).await?;
        entry.event_files.push(key);
    }
    if let Some(path) = &parts.rejects {
        let key = lake::rejects_key(orders::CHANNEL, fp);
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
}

impl<T> PartWriter<T> {
    fn create(path: PathBuf, schema: arrow::datatypes::SchemaRef) -> Result<Self, SinkError> {
        let file = BufWriter::new(File::create(&path)?);
        Ok(PartWriter { path, writer: lake::parquet_writer(file, schema)?, buffer: Vec::with_capacity(PARTITION_BUFFER) })
    }
}

/// Streams parsed rows to Parquet parts (one per event date, plus rejects) and
/// observations to the sender task, in messages of [`OBSERVATIONS_PER_MESSAGE`].
struct LakeSink {
    dir: PathBuf,
    partitions: BTreeMap<String, PartWriter<CanonicalEvent>>,
    rejects: Option<PartWriter<RejectedRow>>,
    observations: Vec<Observation>,
    tx: mpsc::Sender<String>,
}

impl LakeSink {
    fn new(dir: PathBuf, tx: mpsc::Sender<String>) -> Self {
        LakeSink { dir, partitions: BTreeMap::new(), rejects: None, observations: Vec::new(), tx }
    }

    fn flush_observations(&mut self) -> Result<(), SinkError> {
        if self.observations.is_empty() {
            return Ok(());
        }
        let batch = ObservationBatch { observations: std::mem::take(&mut self.observations) };
        let body = serde_json::to_string(&batch)?;
        self.tx.blocking_send(body).map_err(|_| "identity sender stopped (see its error)")?;
        Ok(())
    }

    fn finish(mut self) -> Result<Parts, IngestError> {
        self.flush_observations().map_err(sink_to_io)?;
        let mut events = BTreeMap::new();
        for (date, mut part) in std::mem::take(&mut self.partitions) {
            if !part.buffer.is_empty() {
                part.writer.write(&lake::events_batch(&part.buffer).map_err(parquet::errors::ParquetError::from)?)?;
            }
            part.writer.close()?;
            events.insert(date, part.path);
        }
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
        Ok(Parts { events, rejects })
    }
}

fn sink_to_io(e: SinkError) -> IngestError {
    IngestError::Scratch(std::io::Error::other(e.to_string()))
}

impl RowSink for LakeSink {
    fn event(&mut self, event: CanonicalEvent) -> Result<(), SinkError> {
        let date = event.event_date();
        if !self.partitions.contains_key(&date) {
            let path = self.dir.join(format!("events-{date}.parquet"));
            self.partitions.insert(date.clone(), PartWriter::create(path, lake::events_schema())?);
        }
        let part = self.partitions.get_mut(&date).expect("inserted above");
        part.buffer.push(event);
        if part.buffer.len() >= PARTITION_BUFFER {
            let batch = lake::events_batch(&part.buffer)?;
            part.writer.write(&batch)?;
            part.buffer.clear();
        }
        Ok(())
    }

    fn rejected(&mut self, row: RejectedRow) -> Result<(), SinkError> {
        if self.rejects.is_none() {
            self.rejects = Some(PartWriter::create(self.dir.join("rejects.parquet"), lake::rejects_schema())?);
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

    #[test]
    fn fingerprint_ignores_etag_quotes() {
        assert_eq!(fingerprint("ecommerce", "\"abc\"", Some(3)), fingerprint("ecommerce", "abc", Some(3)));
        assert_ne!(fingerprint("ecommerce", "abc", Some(3)), fingerprint("pos", "abc", Some(3)));
    }
}
