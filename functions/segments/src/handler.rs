//! The Lambda handler: an EventBridge scheduled event starts a run at the event's time
//! (so a retried invocation of the same tick is the same run).

use ariane_shared::aws::Clients;
use ariane_shared::EnvSource;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::SegmentsConfig;
use crate::definition::SegmentDefinition;
use crate::run::{run_segments, RunError, SegmentReport};

#[derive(Clone, Debug)]
pub struct Segments {
    pub clients: Clients,
    pub config: SegmentsConfig,
    pub definitions: Vec<SegmentDefinition>,
}

/// Optional `detail` of a manual invocation:
/// `{"run_at": "...", "segments": ["reactivation"], "force": true}`. Naming segments or
/// `force` runs them whether due or not.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RunDetail {
    pub run_at: Option<DateTime<Utc>>,
    pub segments: Option<Vec<String>>,
    #[serde(default)]
    pub force: bool,
    /// Compute the campaign report now, whether due or not.
    #[serde(default)]
    pub report: bool,
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
    #[error("unknown segment(s) requested: {0:?}")]
    Unknown(Vec<String>),
    #[error(transparent)]
    Run(#[from] RunError),
}

impl Segments {
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, SegmentsError> {
        let config = SegmentsConfig::from_env(env)?;
        let definitions = SegmentDefinition::library()?;
        Ok(Segments { clients: Clients::from_env(env).await, config, definitions })
    }

    pub async fn handle(&self, event: EventBridgeEvent<serde_json::Value>) -> Result<RunSummary, SegmentsError> {
        let detail: RunDetail = serde_json::from_value(event.detail).unwrap_or_default();
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
        // One runtime per invocation: its listing and metadata caches serve every query of
        // the run, and no later run.
        let runtime = crate::catalog::runtime(self.config.memory_limit_mb, &self.config.scratch_dir).map_err(RunError::Catalog)?;
        let segments = run_segments(&self.clients, &self.config, &definitions, run_at, force, &runtime).await?;
        let report = crate::report::run_if_due(&self.clients, &self.config, run_at, detail.report, &runtime).await?;
        Ok(RunSummary { run_at, segments, report })
    }
}
