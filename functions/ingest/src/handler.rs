//! The Lambda handler: one SQS message per S3 notification; each failed message is
//! reported in `batchItemFailures` so only it is retried (and ends in the DLQ).

use ariane_shared::aws::Clients;
use ariane_shared::EnvSource;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tracing::Instrument;

use std::sync::Arc;

use crate::config::{IngestConfig, Mode};
use crate::pipeline::{ingest_object, route_object, IngestError, Outcome};
use crate::s3event::{parse_body, Notification};
use crate::spec::Catalog;

/// The ingest function: configuration, channel specs and clients built once at cold start.
#[derive(Clone, Debug)]
pub struct Ingest {
    pub clients: Clients,
    pub config: IngestConfig,
    pub catalog: Arc<Catalog>,
}

impl Ingest {
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, ariane_shared::ConfigError> {
        let config = IngestConfig::from_env(env)?;
        let catalog = Catalog::embedded().map_err(|errors| ariane_shared::ConfigError::Invalid {
            name: "channels/",
            reason: errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        })?;
        if let Some(channel) = config.channel() {
            if !catalog.specs.iter().any(|s| s.channel == channel) {
                return Err(ariane_shared::ConfigError::Invalid {
                    name: "INGEST_CHANNEL",
                    reason: format!("no spec in channels/{channel}/ was built into this binary"),
                });
            }
        }
        Ok(Ingest { clients: Clients::from_env(env).await, config, catalog: Arc::new(catalog) })
    }

    /// Handles a batch; never fails as a whole (each message fails on its own).
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for message in event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let span = tracing::info_span!("message", message_id = %id);
            let result = self.handle_body(message.body.as_deref().unwrap_or_default()).instrument(span).await;
            if let Err(err) = result {
                tracing::error!(message_id = %id, error = %err, retryable = err.retryable(), "message failed");
                response.add_failure(id);
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
                let channel = route_object(&self.clients, &self.config, object).await?;
                tracing::info!(key = %object.key, %channel, "routed");
                continue;
            }
            match ingest_object(&self.clients, &self.config, &self.catalog, object).await? {
                Outcome::Ingested(entry) => tracing::info!(key = %entry.source_key, "ingested"),
                Outcome::AlreadyIngested(entry) => {
                    tracing::info!(key = %entry.source_key, fingerprint = %entry.fingerprint, "identical content already ingested: skipped")
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
