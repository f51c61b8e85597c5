//! The Lambda handler: each SQS message carries a batch of observations; a message
//! fails alone (reported in `batchItemFailures`) when one of its observations fails.

use ariane_shared::aws::Clients;
use ariane_shared::error::SdkResultExt;
use ariane_shared::identifiers::{stable_id, Identifier};
use ariane_shared::lake::{self, IdentityLink};
use ariane_shared::model::ObservationBatch;
use ariane_shared::EnvSource;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_s3::primitives::ByteStream;
use chrono::Utc;

use crate::config::IdentityConfig;
use crate::resolver::{Outcome, Resolver, Stats};
use crate::rules::Rules;
use crate::store::DynamoStore;

pub struct Identity {
    pub clients: Clients,
    pub config: IdentityConfig,
    pub resolver: Resolver<DynamoStore>,
}

/// A message body on the identity queue: a batch of observations, an erasure request
/// (`{"erase": {"kind": "email", "value": "marie@x.fr"}}`) or a repair
/// (`{"exclude": {"kind": "phone", "value": "+33612345678"}}`: the identifier stops
/// linking and the profiles it wrongly merged split again).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum IdentityMessage {
    Observations(ObservationBatch),
    Erase { erase: Identifier },
    Exclude { exclude: Identifier },
}

/// Counts of one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub resolve: Stats,
    pub erasures: u64,
    pub exclusions: u64,
    pub failed_messages: u64,
}

impl Identity {
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, ariane_shared::ConfigError> {
        let config = IdentityConfig::from_env(env)?;
        let rules =
            Rules::embedded().map_err(|e| ariane_shared::ConfigError::Invalid { name: "config/identity.toml", reason: e.to_string() })?;
        let clients = Clients::from_env(env).await;
        let store = DynamoStore { client: clients.dynamodb.clone(), table: config.profiles_table.clone() };
        Ok(Identity { clients, config, resolver: Resolver::new(store, rules) })
    }

    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_with_stats(event).await.0
    }

    /// Resolves all the observation messages of the batch together (fewer, larger
    /// requests); if that fails, message by message, so only the failing one is retried
    /// (and reaches the DLQ after maxReceiveCount).
    pub async fn handle_with_stats(&self, event: SqsEvent) -> (SqsBatchResponse, BatchStats) {
        let mut response = SqsBatchResponse::default();
        let mut stats = BatchStats::default();
        let mut parsed: Vec<(String, IdentityMessage)> = Vec::new();
        for message in event.records {
            let id = message.message_id.clone().unwrap_or_default();
            match serde_json::from_str::<IdentityMessage>(message.body.as_deref().unwrap_or_default()) {
                Ok(m) => parsed.push((id, m)),
                Err(err) => {
                    tracing::error!(message_id = %id, error = %err, "message body is neither an observation batch, an erasure nor an exclusion");
                    stats.failed_messages += 1;
                    response.add_failure(id);
                }
            }
        }
        let mut observations = Vec::new();
        let mut obs_messages = Vec::new();
        for (id, m) in &parsed {
            match m {
                IdentityMessage::Observations(b) => {
                    observations.extend(b.observations.iter().cloned());
                    obs_messages.push((id.clone(), b));
                }
                IdentityMessage::Erase { erase } => {
                    let result = match self.resolver.erase(erase).await {
                        Ok(out) => self.write_lake(&out).await,
                        Err(e) => Err(HandlerError::Resolve(e)),
                    };
                    match result {
                        Ok(()) => stats.erasures += 1,
                        Err(err) => {
                            tracing::error!(message_id = %id, error = %err, "erasure failed");
                            stats.failed_messages += 1;
                            response.add_failure(id.clone());
                        }
                    }
                }
                IdentityMessage::Exclude { exclude } => {
                    let result = match self.resolver.exclude(exclude).await {
                        Ok(out) => {
                            stats.resolve.add(&out.stats);
                            self.write_lake(&out).await
                        }
                        Err(e) => Err(HandlerError::Resolve(e)),
                    };
                    match result {
                        Ok(()) => stats.exclusions += 1,
                        Err(err) => {
                            tracing::error!(message_id = %id, error = %err, "exclusion (repair) failed");
                            stats.failed_messages += 1;
                            response.add_failure(id.clone());
                        }
                    }
                }
            }
        }
        if !obs_messages.is_empty() {
            match self.resolve_and_write(&observations).await {
                Ok(s) => stats.resolve.add(&s),
                Err(err) => {
                    tracing::warn!(error = %err, "batch failed; resolving message by message");
                    for (id, batch) in obs_messages {
                        match self.resolve_and_write(&batch.observations).await {
                            Ok(s) => stats.resolve.add(&s),
                            Err(err) => {
                                tracing::error!(message_id = %id, error = %err, "message failed");
                                stats.failed_messages += 1;
                                response.add_failure(id);
                            }
                        }
                    }
                }
            }
        }
        let s = &stats.resolve;
        ariane_shared::metrics::emit(
            "identity",
            &[
                ("Observations", s.observations as f64),
                ("ObservationsUnchanged", s.unchanged as f64),
                ("EvidenceEnriched", s.enriched as f64),
                ("EvidenceStructural", s.structural as f64),
                ("Merges", s.merges as f64),
                ("Splits", s.splits as f64),
                ("Suppressed", s.suppressed as f64),
                ("Retries", s.retries as f64),
                ("Erasures", stats.erasures as f64),
                ("Exclusions", stats.exclusions as f64),
            ],
        );
        (response, stats)
    }

    async fn resolve_and_write(&self, observations: &[ariane_shared::model::Observation]) -> Result<Stats, HandlerError> {
        let out = self.resolver.resolve_batch(observations).await?;
        // Profiles are written; if the lake write fails the message is retried, and the
        // retry (a no-op in DynamoDB) does not report the links again: so links are
        // written before success is reported, and a retry after a lake failure re-derives
        // nothing. The evidence's current profile is re-linked on any later change.
        self.write_lake(&out).await?;
        Ok(out.stats)
    }

    /// Links (identity key → profile, empty when erased) and history, one object each
    /// per call; keys derive from the content, so a redelivery rewrites the same objects.
    async fn write_lake(&self, out: &Outcome) -> Result<(), HandlerError> {
        let date = Utc::now().format("%Y-%m-%d").to_string();
        if !out.links.is_empty() {
            let links: Vec<IdentityLink> = out
                .links
                .iter()
                .map(|l| IdentityLink {
                    identifier_hash: l.identity_key.clone(),
                    profile_id: l.profile_id.clone().unwrap_or_default(),
                    resolved_at: l.at,
                    observation_id: l.observation_id.clone(),
                })
                .collect();
            let mut parts: Vec<String> = links.iter().map(|l| format!("{}={}", l.identifier_hash, l.profile_id)).collect();
            parts.sort_unstable();
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let key = lake::links_key(&date, &stable_id(&refs));
            let batch = lake::links_batch(&links)?;
            let bytes = lake::parquet_bytes(lake::links_schema(), &[batch])?;
            self.put(&key, bytes).await?;
        }
        if !out.history.is_empty() {
            let mut body = Vec::new();
            for h in &out.history {
                serde_json::to_writer(&mut body, h)?;
                body.push(b'\n');
            }
            let key = format!(
                "identity/history/date={date}/{}.jsonl",
                &ariane_shared::identifiers::sha256_hex(&String::from_utf8_lossy(&body))[..32]
            );
            self.put(&key, body).await?;
        }
        Ok(())
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), HandlerError> {
        self.clients
            .s3
            .put_object()
            .bucket(&self.config.lake_bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .aws("s3:PutObject identity")?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
enum HandlerError {
    #[error("cannot encode history: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Resolve(#[from] crate::resolver::ResolveError),
    #[error(transparent)]
    Aws(#[from] ariane_shared::AwsError),
    #[error("cannot encode links: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("cannot encode links: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}
