//! The Lambda handler: each SQS message carries a batch of observations; a message
//! fails alone (reported in `batchItemFailures`) when one of its observations fails.

use ariane_shared::aws::Clients;
use ariane_shared::error::SdkResultExt;
use ariane_shared::identifiers::stable_id;
use ariane_shared::lake::{self, IdentityLink};
use ariane_shared::model::ObservationBatch;
use ariane_shared::EnvSource;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_s3::primitives::ByteStream;
use chrono::Utc;
use tracing::Instrument;

use crate::config::IdentityConfig;
use crate::store::{DynamoStore, Resolution};

#[derive(Clone, Debug)]
pub struct Identity {
    pub clients: Clients,
    pub config: IdentityConfig,
    pub store: DynamoStore,
}

/// Counts of one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub observations: u64,
    pub created: u64,
    pub updated: u64,
    pub skipped: u64,
    pub failed_messages: u64,
}

impl Identity {
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, ariane_shared::ConfigError> {
        let config = IdentityConfig::from_env(env)?;
        let clients = Clients::from_env(env).await;
        let store = DynamoStore { client: clients.dynamodb.clone(), table: config.profiles_table.clone() };
        Ok(Identity { clients, config, store })
    }

    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_with_stats(event).await.0
    }

    pub async fn handle_with_stats(&self, event: SqsEvent) -> (SqsBatchResponse, BatchStats) {
        let mut response = SqsBatchResponse::default();
        let mut stats = BatchStats::default();
        let mut links = Vec::new();
        let mut succeeded = Vec::new();
        for message in event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let body = message.body.as_deref().unwrap_or_default();
            let span = tracing::info_span!("message", message_id = %id);
            match self.resolve_message(body, &mut stats).instrument(span).await {
                Ok(mut message_links) => {
                    links.append(&mut message_links);
                    succeeded.push(id);
                }
                Err(err) => {
                    tracing::error!(message_id = %id, error = %err, "message failed");
                    stats.failed_messages += 1;
                    response.add_failure(id);
                }
            }
        }
        if let Err(err) = self.write_links(&links).await {
            // The profiles are written but the lake does not know yet: retry these messages
            // (resolution is idempotent, so the retry only rewrites the links).
            tracing::error!(error = %err, "cannot write identity links");
            for id in succeeded {
                stats.failed_messages += 1;
                response.add_failure(id);
            }
        }
        ariane_shared::metrics::emit(
            "identity",
            &[
                ("Observations", stats.observations as f64),
                ("ProfilesCreated", stats.created as f64),
                ("ProfilesUpdated", stats.updated as f64),
                ("ObservationsSkipped", stats.skipped as f64),
            ],
        );
        (response, stats)
    }

    async fn resolve_message(&self, body: &str, stats: &mut BatchStats) -> Result<Vec<IdentityLink>, HandlerError> {
        let batch: ObservationBatch = serde_json::from_str(body)?;
        let mut links = Vec::new();
        for obs in &batch.observations {
            stats.observations += 1;
            let resolution = self.store.resolve(obs).await?;
            match &resolution {
                Resolution::Created(_) => stats.created += 1,
                Resolution::Updated(_) => stats.updated += 1,
                Resolution::Skipped => stats.skipped += 1,
            }
            if let Some(pid) = resolution.profile_id() {
                for identifier in &obs.identifiers {
                    links.push(IdentityLink {
                        identifier_hash: identifier.hash(),
                        profile_id: pid.to_string(),
                        resolved_at: obs.observed_at,
                        observation_id: obs.observation_id.clone(),
                    });
                }
            }
        }
        Ok(links)
    }

    /// One Parquet file per batch; its key derives from its content, so a redelivered
    /// batch rewrites the same object.
    async fn write_links(&self, links: &[IdentityLink]) -> Result<(), HandlerError> {
        if links.is_empty() {
            return Ok(());
        }
        let mut parts: Vec<&str> = links.iter().flat_map(|l| [l.observation_id.as_str(), l.identifier_hash.as_str()]).collect();
        parts.sort_unstable();
        let key = lake::links_key(&Utc::now().format("%Y-%m-%d").to_string(), &stable_id(&parts));
        let batch = lake::links_batch(links)?;
        let bytes = lake::parquet_bytes(lake::links_schema(), &[batch])?;
        self.clients
            .s3
            .put_object()
            .bucket(&self.config.lake_bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .aws("s3:PutObject links")?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum HandlerError {
    #[error("message body is not an observation batch: {0}")]
    Body(#[from] serde_json::Error),
    #[error(transparent)]
    Aws(#[from] ariane_shared::AwsError),
    #[error("cannot encode links: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("cannot encode links: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}
