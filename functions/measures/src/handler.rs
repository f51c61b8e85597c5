//! The Lambda handler: an EventBridge scheduled event (daily) runs the measures at the
//! event's time, so a retried invocation of the same tick writes the same keys.
//!
//! [`MeasuresWith`] is generic over its [`Ports`]; [`Measures`] is the one `main.rs`
//! builds ([`Measures::from_env`]) on the AWS adapters.

use ariane_shared::adapters::dynamodb::DynamoProfiles;
use ariane_shared::adapters::s3::S3Blobs;
use ariane_shared::aws::Clients;
use ariane_shared::ports::{BlobStore, ProfileReader};
use ariane_shared::EnvSource;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::MeasuresConfig;
use crate::definition::MeasureDefinition;
use crate::error::MeasuresError;
use crate::run::{run_measures, Ports, RunSummary};

/// The measures function over its ports.
#[derive(Clone, Debug)]
pub struct MeasuresWith<B, P> {
    pub ports: Ports<B, P>,
    pub config: MeasuresConfig,
    pub definitions: Vec<MeasureDefinition>,
}

/// The measures function on AWS (S3 and the DynamoDB profiles table).
pub type Measures = MeasuresWith<S3Blobs, DynamoProfiles>;

/// Optional `detail` of a manual invocation: `{"run_at": "2026-11-23T05:00:00Z"}` measures
/// as of that instant (the report and tables of its date). An unknown field is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDetail {
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
}

impl RunDetail {
    /// Absent (`null`) or `{}` (what EventBridge schedules send) is the scheduled run.
    pub fn from_event(detail: serde_json::Value) -> Result<RunDetail, MeasuresError> {
        if detail.is_null() {
            return Ok(RunDetail::default());
        }
        let shown = detail.to_string();
        serde_json::from_value(detail).map_err(|source| MeasuresError::Detail { detail: shown, source })
    }
}

impl Measures {
    /// Reads the configuration, parses the embedded library, wires the AWS adapters.
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, MeasuresError> {
        let config = MeasuresConfig::from_env(env)?;
        let definitions = MeasureDefinition::library()?;
        let clients = Clients::from_env(env).await;
        let ports = Ports {
            blobs: S3Blobs::new(clients.s3.clone()),
            profiles: DynamoProfiles { client: clients.dynamodb.clone(), table: config.profiles_table.clone() },
            lake: ariane_segments::catalog::s3_store(&clients.config, &config.lake_bucket).map_err(MeasuresError::LakeStore)?,
        };
        Ok(MeasuresWith { ports, config, definitions })
    }
}

impl<B: BlobStore, P: ProfileReader> MeasuresWith<B, P> {
    pub fn new(ports: Ports<B, P>, config: MeasuresConfig, definitions: Vec<MeasureDefinition>) -> Self {
        MeasuresWith { ports, config, definitions }
    }

    /// A scheduled event: the run at `detail.run_at`, else the event's time, else now.
    pub async fn handle(&self, event: EventBridgeEvent<serde_json::Value>) -> Result<RunSummary, MeasuresError> {
        let detail = RunDetail::from_event(event.detail)?;
        let run_at = detail.run_at.or(event.time).unwrap_or_else(Utc::now);
        let summary = run_measures(&self.ports, &self.config, &self.definitions, run_at).await?;
        tracing::info!(
            run_date = %summary.run_date,
            conversions = summary.conversions,
            revenue_minor = summary.revenue_minor,
            report = %summary.report_key,
            "measures written"
        );
        Ok(summary)
    }
}
