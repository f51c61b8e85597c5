//! The stack's functions hosted in this process, built from their deployed configuration,
//! one per logical id: the landing router and every channel's ingest instance are all
//! the `ingest` binary, each built with its own environment (`INGEST_CHANNEL`).

use anyhow::{bail, Context};
use serde_json::Value;

use crate::manifest::Manifest;

pub enum Function {
    Ingest(ariane_ingest::Ingest),
    Identity(ariane_identity::Identity),
    Segments(ariane_segments::Segments),
    Activate(ariane_activate::Activate),
    Purge(ariane_purge::Purge),
    Measures(ariane_measures::Measures),
    Journey(ariane_journey::Journeys),
    Collect(ariane_collect::Collector),
    ProfileApi(ariane_profile_api::ProfileApi<ariane_profile_api::DynamoDirectory>),
}

impl Function {
    /// Builds the function of `logical_id` as its `main.rs` would, from its environment.
    pub async fn build(manifest: &Manifest, logical_id: &str) -> anyhow::Result<Self> {
        let env = manifest.function_env(logical_id)?;
        let binary = manifest.function(logical_id)?.binary.clone();
        Ok(match binary.as_str() {
            "ingest" => Function::Ingest(ariane_ingest::Ingest::from_env(&env).await?),
            "identity" => Function::Identity(ariane_identity::Identity::from_env(&env).await?),
            "segments" => Function::Segments(ariane_segments::Segments::from_env(&env).await?),
            "activate" => Function::Activate(ariane_activate::Activate::from_env(&env).await?),
            "purge" => Function::Purge(ariane_purge::Purge::from_env(&env).await?),
            "measures" => Function::Measures(ariane_measures::Measures::from_env(&env).await?),
            "journey" => Function::Journey(ariane_journey::Journeys::from_env(&env).await?),
            "collect" => Function::Collect(ariane_collect::Collector::from_env(&env).await?),
            "profile-api" => Function::ProfileApi(ariane_profile_api::ProfileApi::from_env(&env).await?),
            other => bail!("unknown function binary {other}"),
        })
    }

    /// Invokes with a JSON payload, as the Lambda runtime would, and returns the response.
    pub async fn invoke(&self, payload: Value) -> anyhow::Result<Value> {
        Ok(match self {
            Function::Ingest(f) => serde_json::to_value(f.handle(serde_json::from_value(payload).context("SQS event")?).await)?,
            Function::Identity(f) => serde_json::to_value(f.handle(serde_json::from_value(payload).context("SQS event")?).await)?,
            Function::Activate(f) => f.handle_value(payload).await?,
            // A step of the segments state machine or a scheduled event (the whole run).
            Function::Segments(f) => f.invoke(payload).await?,
            Function::Purge(f) => serde_json::to_value(f.handle(serde_json::from_value(payload).context("EventBridge event")?).await?)?,
            Function::Measures(f) => serde_json::to_value(f.handle(serde_json::from_value(payload).context("EventBridge event")?).await?)?,
            // An operator's direct invocation.
            Function::Journey(f) => f.handle_value(payload).await?,
            // An HTTP API request (payload format 2.0) or a micro-batch of its queue.
            Function::Collect(f) => f.handle_value(payload).await?,
            // An HTTP API request (payload format 2.0).
            Function::ProfileApi(f) => {
                let request: ariane_profile_api::HttpRequest = serde_json::from_value(payload).context("HTTP API event")?;
                serde_json::to_value(f.handle(&request).await)?
            }
        })
    }
}
