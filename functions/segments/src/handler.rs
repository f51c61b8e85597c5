//! The Lambda handler: an EventBridge scheduled event starts a run at the event's time
//! (so a retried invocation of the same tick is the same run).
//!
//! [`SegmentsWith`] is generic over its [`Ports`]; [`Segments`] is the one `main.rs`
//! builds ([`Segments::from_env`]) on the AWS adapters.

use ariane_shared::adapters::dynamodb::DynamoProfiles;
use ariane_shared::adapters::s3::S3Blobs;
use ariane_shared::adapters::sqs::SqsQueue;
use ariane_shared::aws::Clients;
use ariane_shared::ports::{BlobStore, ProfileReader, Queue};
use ariane_shared::EnvSource;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::SegmentsConfig;
use crate::definition::SegmentDefinition;
use crate::error::RunError;
use crate::ports::{AwsPorts, Ports};
use crate::run::{run_segments, SegmentReport};

/// The segments function over its ports.
#[derive(Clone, Debug)]
pub struct SegmentsWith<B, Q, P> {
    pub ports: Ports<B, Q, P>,
    pub config: SegmentsConfig,
    pub definitions: Vec<SegmentDefinition>,
}

/// The segments function on AWS (S3, SQS, DynamoDB), as `main.rs` runs it.
pub type Segments = SegmentsWith<S3Blobs, SqsQueue, DynamoProfiles>;

/// Optional `detail` of a manual invocation:
/// `{"run_at": "...", "segments": ["reactivation"], "force": true}`. Naming segments or
/// `force` runs them whether due or not. An unknown field is refused (a misspelt
/// `"segment"` must not run every segment).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunDetail {
    #[serde(default)]
    pub run_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub segments: Option<Vec<String>>,
    #[serde(default)]
    pub force: bool,
    /// Compute the campaign report now, whether due or not.
    #[serde(default)]
    pub report: bool,
}

impl RunDetail {
    /// The detail of an invocation: absent (`null`) or `{}` (what EventBridge schedules
    /// send) is the scheduled run; anything that is not a valid [`RunDetail`] is refused.
    pub fn from_event(detail: serde_json::Value) -> Result<RunDetail, SegmentsError> {
        if detail.is_null() {
            return Ok(RunDetail::default());
        }
        let shown = detail.to_string();
        serde_json::from_value(detail).map_err(|source| SegmentsError::Detail { detail: shown, source })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    pub run_at: DateTime<Utc>,
    pub segments: Vec<SegmentReport>,
    /// The campaign report, when this run computed it (daily, or asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::report::CampaignReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentsError {
    #[error(transparent)]
    Config(#[from] ariane_shared::ConfigError),
    #[error("invalid segment library: {0}")]
    Library(#[from] crate::definition::DefinitionError),
    #[error("cannot build the lake's object store: {0}")]
    LakeStore(#[source] object_store::Error),
    #[error(
        "the event's detail {detail} is not a run request ({source}); expected {{}} or {{\"run_at\": \"...\", \"segments\": [...], \"force\": true, \"report\": true}}"
    )]
    Detail {
        detail: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("unknown segment(s) requested: {0:?}")]
    Unknown(Vec<String>),
    #[error(transparent)]
    Run(#[from] RunError),
}

impl Segments {
    /// Reads the configuration, embeds the library and wires the AWS adapters.
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, SegmentsError> {
        let config = SegmentsConfig::from_env(env)?;
        let definitions = SegmentDefinition::library()?;
        let clients = Clients::from_env(env).await;
        let ports = AwsPorts::aws(&clients, &config.lake_bucket, &config.profiles_table).map_err(SegmentsError::LakeStore)?;
        Ok(SegmentsWith { ports, config, definitions })
    }
}

impl<B: BlobStore, Q: Queue, P: ProfileReader> SegmentsWith<B, Q, P> {
    pub fn new(ports: Ports<B, Q, P>, config: SegmentsConfig, definitions: Vec<SegmentDefinition>) -> Self {
        SegmentsWith { ports, config, definitions }
    }

    pub async fn handle(&self, event: EventBridgeEvent<serde_json::Value>) -> Result<RunSummary, SegmentsError> {
        let detail = RunDetail::from_event(event.detail)?;
        let run_at = detail.run_at.or(event.time).unwrap_or_else(Utc::now);
        let definitions: Vec<SegmentDefinition> = match &detail.segments {
            None => self.definitions.clone(),
            Some(names) => {
                let unknown: Vec<String> = names.iter().filter(|n| !self.definitions.iter().any(|d| &&d.name == n)).cloned().collect();
                if !unknown.is_empty() {
                    return Err(SegmentsError::Unknown(unknown));
                }
                self.definitions.iter().filter(|d| names.contains(&d.name)).cloned().collect()
            }
        };
        let force = detail.force || detail.segments.is_some();
        // One runtime and one lake cache per invocation: its listings, Parquet metadata and
        // small objects serve every query of the run, and no later run.
        let run = crate::catalog::RunEnv::new(&self.config, self.ports.lake.clone()).map_err(RunError::Catalog)?;
        let segments = run_segments(&self.ports, &self.config, &definitions, run_at, force, &run).await?;
        let report = crate::report::run_if_due(&self.ports, &self.config, run_at, detail.report, &run).await?;
        let cache = run.lake.stats();
        tracing::info!(hits = cache.hits, filled = cache.filled, passed = cache.passed, bytes = cache.bytes, "lake cache");
        Ok(RunSummary { run_at, segments, report })
    }
}
