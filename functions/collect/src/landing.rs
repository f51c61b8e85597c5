//! The SQS entry point: a micro-batch of queued events becomes one NDJSON object per
//! channel in the landing bucket, where the channel's ingest reads it with
//! `channels/<channel>/collector.toml` like any export.
//!
//! The object is deterministic: its key is
//! `<channel>/collect/date=<YYYY-MM-DD>/<stable id of the sorted source + message ids>.ndjson`
//! (the date of the earliest `received_at`), its lines are sorted by source and message
//! id, one per event (a duplicate message id of a source kept once). A redelivered batch
//! rewrites the same object with the same bytes; the same events in another grouping get
//! another object, whose events keep their ids (source + message id) and are deduplicated
//! by the lake's compaction.

use std::collections::BTreeMap;

use ariane_shared::identifiers::stable_id;
use ariane_shared::ports::BlobStore;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::batch::Line;
use crate::config::COLLECT_CHANNELS;
use crate::message::QueuedBatch;

pub const NDJSON_CONTENT_TYPE: &str = "application/x-ndjson";

/// One object to write: its key and content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LandingObject {
    pub channel: String,
    pub key: String,
    pub body: Vec<u8>,
    pub lines: usize,
}

/// Why a queue message cannot be written (it goes to the DLQ after its retries).
fn decode(body: &str) -> Result<QueuedBatch, String> {
    let batch: QueuedBatch = serde_json::from_str(body).map_err(|e| format!("not a collector batch: {e}"))?;
    if !COLLECT_CHANNELS.contains(&batch.channel.as_str()) {
        return Err(format!("channel {:?} is not one the collector writes to", batch.channel));
    }
    for line in &batch.lines {
        DateTime::parse_from_rfc3339(&line.received_at).map_err(|_| format!("received_at {:?} is not RFC 3339", line.received_at))?;
        if line.message_id.is_empty() || line.source.is_empty() {
            return Err("a line without source or message_id".into());
        }
    }
    Ok(batch)
}

/// The object of one channel's lines (sorted and deduplicated here).
pub fn landing_object(channel: &str, mut lines: Vec<Line>) -> LandingObject {
    lines.sort_by(|a, b| (&a.source, &a.message_id).cmp(&(&b.source, &b.message_id)));
    lines.dedup_by(|a, b| a.source == b.source && a.message_id == b.message_id);
    let date = lines
        .iter()
        .filter_map(|l| DateTime::parse_from_rfc3339(&l.received_at).ok())
        .map(|t| t.with_timezone(&Utc))
        .min()
        .unwrap_or_default()
        .format("%Y-%m-%d");
    let parts: Vec<&str> = lines.iter().flat_map(|l| [l.source.as_str(), l.message_id.as_str()]).collect();
    let key = format!("{channel}/collect/date={date}/{}.ndjson", stable_id(&parts));
    let mut body = Vec::new();
    for line in &lines {
        // A line of plain strings, numbers and booleans always serialises.
        if let Ok(text) = serde_json::to_vec(line) {
            body.extend_from_slice(&text);
            body.push(b'\n');
        }
    }
    LandingObject { channel: channel.to_string(), key, body, lines: lines.len() }
}

/// Writes the batch's objects; the messages that could not be decoded or whose object
/// could not be written are reported as failures (retried, then the DLQ).
pub async fn handle_sqs<B: BlobStore>(blobs: &B, bucket: &str, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut channels: BTreeMap<String, (Vec<String>, Vec<Line>)> = BTreeMap::new();
    for message in event.records {
        let id = message.message_id.clone().unwrap_or_default();
        match decode(message.body.as_deref().unwrap_or_default()) {
            Ok(batch) => {
                let entry = channels.entry(batch.channel).or_default();
                entry.0.push(id);
                entry.1.extend(batch.lines);
            }
            Err(reason) => {
                tracing::error!(message_id = %id, error = %reason, "undecodable collector message");
                response.add_failure(id);
            }
        }
    }
    let failed_messages = response.batch_item_failures.len();
    let (mut objects, mut lines) = (0usize, 0usize);
    for (channel, (ids, channel_lines)) in channels {
        if channel_lines.is_empty() {
            continue;
        }
        let object = landing_object(&channel, channel_lines);
        match blobs.put(bucket, &object.key, Bytes::from(object.body), NDJSON_CONTENT_TYPE).await {
            Ok(()) => {
                tracing::info!(channel = %channel, key = %object.key, lines = object.lines, messages = ids.len(), "collected events landed");
                objects += 1;
                lines += object.lines;
            }
            Err(e) => {
                tracing::error!(channel = %channel, key = %object.key, error = %e, retryable = e.retryable(), "landing write failed");
                for id in ids {
                    response.add_failure(id);
                }
            }
        }
    }
    ariane_shared::metrics::emit(
        "collect",
        &[("ObjectsLanded", objects as f64), ("LinesLanded", lines as f64), ("MessagesUndecodable", failed_messages as f64)],
    );
    response
}
