//! The Lambda handler: one SQS message per S3 notification; each failed message is
//! reported in `batchItemFailures` so only it is retried (and ends in the DLQ); one that
//! no retry can fix (not a notification, an unreadable file) is moved to the function's
//! DLQ at once when `DEAD_LETTER_QUEUE_URL` is set.
//!
//! [`IngestWith`] is generic over its ports (blob storage, queue sends); [`Ingest`] is
//! the one `main.rs` runs, wired to S3 and SQS by [`Ingest::from_env`]. Tests wire the
//! in-memory adapters with [`IngestWith::new`].

use std::sync::Arc;

use ariane_shared::adapters::s3::S3Blobs;
use ariane_shared::adapters::sqs::SqsQueue;
use ariane_shared::aws::Clients;
use ariane_shared::ports::{BlobStore, Queue};
use ariane_shared::{ConfigError, EnvSource};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tracing::Instrument;

use crate::config::{IngestConfig, Mode};
use crate::pipeline::{ingest_object, route_object, IngestError, Outcome};
use crate::s3event::{parse_body, Notification};
use crate::spec::Catalog;

/// The ingest function over its ports: configuration, channel specs and adapters built
/// once at cold start.
#[derive(Clone, Debug)]
pub struct IngestWith<B, Q> {
    /// The landing bucket (sources) and the lake bucket (parts, rejects, ledger).
    pub blobs: B,
    /// The channel queues (router) and the identity queue (channel ingest).
    pub queue: Q,
    pub config: IngestConfig,
    pub catalog: Arc<Catalog>,
}

/// The ingest function on AWS: S3 and SQS.
pub type Ingest = IngestWith<S3Blobs, SqsQueue>;

impl Ingest {
    /// Reads the configuration and builds the AWS adapters (what `main.rs` runs).
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let config = IngestConfig::from_env(env)?;
        let clients = Clients::from_env(env).await;
        // A channel instance hashes identifiers for the lake: with the deployment's pepper.
        if config.channel().is_some() {
            ariane_shared::aws::install_lake_pepper(env, &clients.config).await?;
        }
        IngestWith::new(config, S3Blobs::new(clients.s3), SqsQueue::new(clients.sqs))
    }
}

impl<B: BlobStore, Q: Queue> IngestWith<B, Q> {
    /// The handler over given ports, with the channel specs built into the binary
    /// (validated, and one of them must be of the configured channel).
    pub fn new(config: IngestConfig, blobs: B, queue: Q) -> Result<Self, ConfigError> {
        let catalog = Catalog::embedded().map_err(|errors| ConfigError::Invalid {
            name: "channels/",
            reason: errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        })?;
        if let Some(channel) = config.channel() {
            if !catalog.specs.iter().any(|s| s.channel == channel) {
                return Err(ConfigError::Invalid {
                    name: "INGEST_CHANNEL",
                    reason: format!("no spec in channels/{channel}/ was built into this binary"),
                });
            }
        }
        Ok(IngestWith { blobs, queue, config, catalog: Arc::new(catalog) })
    }

    /// Handles a batch; never fails as a whole (each message fails on its own).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let span = tracing::info_span!("message", message_id = %id);
            let result = self.handle_body(message.body.as_deref().unwrap_or_default()).instrument(span).await;
            let Err(err) = result else { continue };
            match (&self.config.dead_letter_queue_url, err.retryable()) {
                // Failed for good: parked in the DLQ now (the file's failure is in the
                // ingest ledger), not received four more times to get there.
                (Some(dlq), false) => match self.queue.send_all(dlq, &[message.body.clone().unwrap_or_default()]).await {
                    Ok(_) => tracing::error!(message_id = %id, error = %err, "message failed for good: moved to the dead-letter queue"),
                    Err(send) => {
                        tracing::error!(message_id = %id, error = %err, dlq_error = %send, "message failed for good; the DLQ refused it: retried");
                        response.add_failure(id);
                    }
                },
                (_, retryable) => {
                    tracing::error!(message_id = %id, error = %err, retryable, "message failed");
                    response.add_failure(id);
                }
            }
        }
        response
    }

    async fn handle_body(&self, body: &str) -> Result<(), HandlerError> {
        let objects = match parse_body(body)? {
            Notification::Test => {
                tracing::info!("s3:TestEvent skipped");
                return Ok(());
            }
            Notification::Objects(objects) => objects,
        };
        for object in &objects {
            if let Mode::Router { .. } = self.config.mode {
                let channel = route_object(&self.blobs, &self.queue, &self.config, object).await?;
                tracing::info!(key = %object.key, %channel, "routed");
                continue;
            }
            match ingest_object(&self.blobs, &self.queue, &self.config, &self.catalog, object).await? {
                Outcome::Ingested(entry) => tracing::info!(key = %entry.source_key, "ingested"),
                Outcome::AlreadyIngested(entry) => {
                    tracing::info!(key = %entry.source_key, status = ?entry.status, "this key and version is already in the ledger: skipped")
                }
                Outcome::Duplicate(entry) => {
                    let first = entry.duplicate_of.as_ref().map(|f| f.source_key.as_str()).unwrap_or_default();
                    tracing::info!(key = %entry.source_key, %first, "identical content already ingested: recorded as a duplicate")
                }
                Outcome::PurgeRewrite { key, run } => {
                    tracing::info!(%key, %run, "rewritten by an erasure purge (its other rows are already in the lake): skipped")
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum HandlerError {
    #[error(transparent)]
    Notification(#[from] crate::s3event::NotificationError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

impl HandlerError {
    fn retryable(&self) -> bool {
        match self {
            HandlerError::Notification(_) => false,
            HandlerError::Ingest(e) => e.retryable(),
        }
    }
}
