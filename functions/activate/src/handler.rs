//! The Lambda handler over the activation queue.

use std::collections::BTreeMap;

use ariane_shared::aws::Clients;
use ariane_shared::error::SdkResultExt;
use ariane_shared::model::{ActivationRequest, SegmentChange};
use ariane_shared::EnvSource;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use tracing::Instrument;

use crate::config::ActivateConfig;
use crate::ledger::{Claim, Ledger};
use crate::webhook::{Webhook, WebhookError};

#[derive(Clone, Debug)]
pub struct Activate {
    pub clients: Clients,
    pub config: ActivateConfig,
    pub ledger: Ledger,
    pub webhook: Webhook,
}

/// What the webhook receives.
#[derive(Clone, Debug, Serialize)]
pub struct Delivery<'a> {
    pub idempotency_key: &'a str,
    pub segment: &'a str,
    pub change: SegmentChange,
    pub run_id: &'a str,
    pub profile_id: &'a str,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub payload: &'a BTreeMap<String, String>,
}

/// What happened to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Duplicate,
    /// Exits, and entries of segments no campaign acts on, are acknowledged, not delivered.
    Ignored,
    /// The profile no longer exists (erased): nothing sent.
    NoProfile,
}

#[derive(Debug, thiserror::Error)]
enum ActivateError {
    #[error("message body is not an activation request: {0}")]
    Body(#[from] serde_json::Error),
    #[error(transparent)]
    Aws(#[from] ariane_shared::AwsError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error("another instance is sending this activation; retry later")]
    InFlight,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ariane_shared::ConfigError),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

impl Activate {
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, BuildError> {
        let config = ActivateConfig::from_env(env)?;
        let clients = Clients::from_env(env).await;
        let ledger = Ledger { client: clients.dynamodb.clone(), table: config.ledger_table.clone() };
        let webhook = Webhook::new(&config.webhook_url, config.webhook_timeout)?;
        Ok(Activate { clients, config, ledger, webhook })
    }

    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        let mut sent = 0u32;
        let mut duplicates = 0u32;
        for message in event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let span = tracing::info_span!("message", message_id = %id);
            match self.process(message.body.as_deref().unwrap_or_default()).instrument(span).await {
                Ok(Outcome::Sent) => sent += 1,
                Ok(Outcome::Duplicate) => duplicates += 1,
                Ok(_) => {}
                Err(err) => {
                    tracing::error!(message_id = %id, error = %err, "activation failed");
                    response.add_failure(id);
                }
            }
        }
        ariane_shared::metrics::emit("activate", &[("Sent", sent as f64), ("Duplicates", duplicates as f64)]);
        response
    }

    async fn process(&self, body: &str) -> Result<Outcome, ActivateError> {
        let request: ActivationRequest = serde_json::from_str(body)?;
        if request.change == SegmentChange::Exited || !self.config.segments.contains(&request.segment) {
            return Ok(Outcome::Ignored);
        }
        let key = request.idempotency_key();
        match self.ledger.claim(&key, self.config.claim_lease).await? {
            Claim::Acquired => {}
            Claim::AlreadyDone(status) => {
                tracing::info!(key = %key, status = %status, "duplicate delivery: already done");
                return Ok(Outcome::Duplicate);
            }
            Claim::InFlight => return Err(ActivateError::InFlight),
        }
        let profile = self
            .clients
            .dynamodb
            .get_item()
            .table_name(&self.config.profiles_table)
            .key("pk", AttributeValue::S(format!("PROFILE#{}", request.profile_id)))
            .key("sk", AttributeValue::S("PROFILE".into()))
            .consistent_read(true)
            .send()
            .await
            .aws("dynamodb:GetItem profile");
        let profile = match profile {
            Ok(p) => p,
            Err(e) => {
                let _ = self.ledger.release(&key, &e.to_string()).await;
                return Err(e.into());
            }
        };
        let Some(item) = profile.item() else {
            self.ledger.complete(&key, "skipped_no_profile", "profile not found").await?;
            return Ok(Outcome::NoProfile);
        };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let delivery = Delivery {
            idempotency_key: &key,
            segment: &request.segment,
            change: request.change,
            run_id: &request.run_id,
            profile_id: &request.profile_id,
            email: text("email"),
            first_name: text("first_name"),
            last_name: text("last_name"),
            payload: &request.payload,
        };
        match self.webhook.post(&key, &delivery).await {
            Ok(status) => {
                self.ledger.complete(&key, "sent", &format!("HTTP {status}")).await?;
                Ok(Outcome::Sent)
            }
            Err(err) => {
                if let Err(release) = self.ledger.release(&key, &err.to_string()).await {
                    tracing::warn!(error = %release, "cannot release the claim; it expires with its lease");
                }
                tracing::warn!(key = %key, retryable = err.retryable(), error = %err, "webhook failed");
                Err(err.into())
            }
        }
    }
}
