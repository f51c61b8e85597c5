//! The journey function: an operator's direct invocation (`aws lambda invoke`) with one
//! identifier, answered with the person's [`Journey`].
//!
//! [`JourneyFunction`] is generic over the identity [`ItemStore`]; [`Journeys`] is the one
//! `main.rs` builds ([`Journeys::from_env`]) on DynamoDB and S3.
//!
//! An identifier that belongs to no one is an answer, not a failure
//! ([`JourneyResponse::NoProfile`], with why: never observed, erased, excluded...); an
//! invalid value, an unreadable store or lake, a profile locked by an identity operation
//! in progress are errors (the invocation fails with the message).
//!
//! The request names a person: the function never logs it (only the identifier's kind,
//! the profile id and counts), and the response shows identifiers as kind and hash prefix.

use ariane_identity::resolver::{Resolver, Unlinked};
use ariane_identity::rules::Rules;
use ariane_identity::store::{DynamoStore, ItemStore};
use ariane_shared::aws::Clients;
use ariane_shared::{ConfigError, EnvSource};

use serde::Serialize;

use crate::journey::{journey, IdLabel, Journey, JourneyError, JourneyRequest, Lake};

/// The function's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum JourneyResponse {
    /// The person's journey.
    Journey(Box<Journey>),
    /// The identifier resolves to no profile: `{"identifier": "email#1a2b3c4d", "no_profile":
    /// "never_observed", "why": "never observed (check the value's spelling)"}`.
    NoProfile { identifier: String, no_profile: Unlinked, why: String },
}

/// The journey function over its identity store.
pub struct JourneyFunction<S> {
    pub resolver: Resolver<S>,
    pub lake: Lake,
}

/// The journey function on AWS.
pub type Journeys = JourneyFunction<DynamoStore>;

/// Why an invocation's payload is not a request.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the request is not {{\"kind\": \"email\", \"value\": \"...\"}} with a known identifier kind: {0}")]
    Request(serde_json::Error),
    #[error(transparent)]
    Journey(#[from] JourneyError),
    #[error("the journey cannot be encoded as JSON: {0}")]
    Encode(serde_json::Error),
}

impl Journeys {
    /// Reads `PROFILES_TABLE` and `LAKE_BUCKET`, installs the lake pepper
    /// (`LAKE_PEPPER_SECRET_ARN`: identifier items and the lake's identity keys are keyed
    /// with it) and builds the clients once.
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let table = env.require("PROFILES_TABLE")?;
        let bucket = env.require("LAKE_BUCKET")?;
        let rules = Rules::embedded().map_err(|e| ConfigError::Invalid { name: "config/identity.toml", reason: e.to_string() })?;
        let clients = Clients::from_env(env).await;
        ariane_shared::aws::install_lake_pepper(env, &clients.config).await?;
        let store = ariane_segments::catalog::s3_store(&clients.config, &bucket)
            .map_err(|e| ConfigError::Invalid { name: "LAKE_BUCKET", reason: e.to_string() })?;
        Ok(JourneyFunction {
            resolver: Resolver::new(DynamoStore { client: clients.dynamodb.clone(), table }, rules),
            lake: Lake { bucket, store },
        })
    }
}

impl<S: ItemStore> JourneyFunction<S> {
    /// The journey of the person the request's identifier belongs to.
    pub async fn handle(&self, request: &JourneyRequest) -> Result<JourneyResponse, JourneyError> {
        match journey(&self.resolver, &self.lake, &request.identifier()).await {
            Ok(j) => {
                tracing::info!(
                    kind = %request.kind,
                    profile_id = %j.profile_id,
                    events = j.timeline.len(),
                    truncated = j.truncated,
                    "journey told"
                );
                Ok(JourneyResponse::Journey(Box::new(j)))
            }
            Err(JourneyError::NoProfile { id, why }) => {
                tracing::info!(kind = %request.kind, no_profile = ?why, "no profile");
                Ok(no_profile(&id, why))
            }
            Err(e) => {
                tracing::warn!(kind = %request.kind, error = %e, "no journey");
                Err(e)
            }
        }
    }

    /// A raw payload (the local runner's invocation): parsed, then [`Self::handle`].
    pub async fn handle_value(&self, payload: serde_json::Value) -> Result<serde_json::Value, InvokeError> {
        let request: JourneyRequest = serde_json::from_value(payload).map_err(InvokeError::Request)?;
        let response = self.handle(&request).await?;
        serde_json::to_value(response).map_err(InvokeError::Encode)
    }
}

fn no_profile(id: &IdLabel, why: Unlinked) -> JourneyResponse {
    JourneyResponse::NoProfile { identifier: id.to_string(), no_profile: why, why: why.to_string() }
}

#[cfg(test)]
mod tests;
