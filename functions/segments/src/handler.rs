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
use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::RunEnv;
use crate::config::SegmentsConfig;
use crate::definition::SegmentDefinition;
use crate::error::RunError;
use crate::ports::{AwsPorts, Ports};
use crate::run::{commit, compute_bucket, publish_bucket, Plan, SegmentReport};
use ariane_shared::adapters::dynamodb::DynamoMemberships;
use ariane_shared::ports::MembershipStore;

/// The segments function over its ports.
#[derive(Clone, Debug)]
pub struct SegmentsWith<B, Q, P, M> {
    pub ports: Ports<B, Q, P, M>,
    pub config: SegmentsConfig,
    pub definitions: Vec<SegmentDefinition>,
}

/// The segments function on AWS (S3, SQS, DynamoDB: the profile snapshot and the
/// memberships items), as `main.rs` runs it.
pub type Segments = SegmentsWith<S3Blobs, SqsQueue, DynamoProfiles, DynamoMemberships>;

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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_at: DateTime<Utc>,
    pub segments: Vec<SegmentReport>,
    /// The campaign report, when this run computed it (daily, or asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::report::CampaignReport>,
    /// The lake compaction of this run (absent when the run did not reach it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compaction: Option<Compaction>,
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
    #[error("the invocation {request} is neither a step of the segments state machine nor a scheduled event: {source}")]
    Step {
        request: String,
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

impl<B: BlobStore, Q: Queue, P: ProfileReader, M: MembershipStore> SegmentsWith<B, Q, P, M> {
    pub fn new(ports: Ports<B, Q, P, M>, config: SegmentsConfig, definitions: Vec<SegmentDefinition>) -> Self {
        SegmentsWith { ports, config, definitions }
    }

    /// Any invocation: a step of the state machine (`{"step": ...}`, see [`StepRequest`])
    /// or a scheduled event, which runs every step in this invocation ([`Self::handle`]).
    pub async fn invoke(&self, payload: serde_json::Value) -> Result<serde_json::Value, SegmentsError> {
        if payload.get("step").is_some() {
            let shown = payload.to_string();
            let request: StepRequest = serde_json::from_value(payload).map_err(|source| SegmentsError::Step { request: shown, source })?;
            return self.step(request).await;
        }
        let shown = payload.to_string();
        let event: EventBridgeEvent<serde_json::Value> =
            serde_json::from_value(payload).map_err(|source| SegmentsError::Step { request: shown, source })?;
        let summary = self.handle(event).await?;
        serde_json::to_value(summary).map_err(|e| SegmentsError::Run(RunError::Encode { what: "the run summary", source: e }))
    }

    /// The definitions a run detail asks for (all of them by default); an unknown name is
    /// refused.
    fn requested(&self, detail: &RunDetail) -> Result<Vec<SegmentDefinition>, SegmentsError> {
        match &detail.segments {
            None => Ok(self.definitions.clone()),
            Some(names) => {
                let unknown: Vec<String> = names.iter().filter(|n| !self.definitions.iter().any(|d| &&d.name == n)).cloned().collect();
                if !unknown.is_empty() {
                    return Err(SegmentsError::Unknown(unknown));
                }
                Ok(self.definitions.iter().filter(|d| names.contains(&d.name)).cloned().collect())
            }
        }
    }

    /// The plan of the run an event asks for (see [`RunDetail`]).
    async fn plan_of(&self, time: Option<DateTime<Utc>>, detail: serde_json::Value) -> Result<Plan, SegmentsError> {
        let detail = RunDetail::from_event(detail)?;
        let run_at = detail.run_at.or(time).unwrap_or_else(Utc::now);
        let definitions = self.requested(&detail)?;
        let force = detail.force || detail.segments.is_some();
        Ok(crate::run::plan(&self.ports, &self.config, &definitions, run_at, force, detail.report).await?)
    }

    /// One run in this invocation: every step of the state machine, the buckets one after
    /// the other.
    pub async fn handle(&self, event: EventBridgeEvent<serde_json::Value>) -> Result<RunSummary, SegmentsError> {
        let plan = self.plan_of(event.time, event.detail).await?;
        // One runtime and one lake cache per invocation: its listings, Parquet metadata and
        // small objects serve every query of the run, and no later run.
        let run = self.run_env()?;
        if plan.due {
            for &k in &plan.buckets {
                compute_bucket(&self.ports, &self.config, &self.definitions, &plan, k, &run).await?;
            }
            for &k in &plan.buckets {
                publish_bucket(&self.ports, &self.config, &self.definitions, &plan, k).await?;
            }
            commit(&self.ports, &self.config, &self.definitions, &plan).await?;
        }
        let compaction = self.compact(&plan, &run).await?;
        self.finish(&plan, &run, Some(compaction)).await
    }

    /// The lake compaction (`compact.rs`), when due at the plan's `run_at`: at the run of
    /// the configured hour, or when the lake was never compacted or not for a day and a
    /// half (a missed hour does not skip a day).
    async fn compact(&self, plan: &Plan, run: &RunEnv) -> Result<Compaction, SegmentsError> {
        let Some(hour) = self.config.compaction_hour else {
            return Ok(Compaction { report: None, reason: Some("compaction is off (ARIANE_COMPACTION_HOUR=off)".into()) });
        };
        let bucket = &self.config.lake_bucket;
        let last = crate::compact::current_manifest(&self.ports.blobs, bucket).await?.map(|m| m.created_at);
        let due = match last {
            None => true,
            Some(last) if last >= plan.run_at => false,
            Some(last) => plan.run_at.hour() == hour || plan.run_at - last >= chrono::Duration::hours(36),
        };
        if !due {
            let last = last.map(|l| l.to_rfc3339()).unwrap_or_default();
            return Ok(Compaction { report: None, reason: Some(format!("not due (last compaction {last}, daily at {hour:02}:00 UTC)")) });
        }
        let report = crate::compact::compact(&self.ports.blobs, run, bucket, plan.partitions, plan.run_at).await?;
        tracing::info!(generation = ?report.generation, event_rows = report.event_rows, files_written = report.files_written, "lake compacted");
        Ok(Compaction { report: Some(report), reason: None })
    }

    fn run_env(&self) -> Result<RunEnv, SegmentsError> {
        Ok(RunEnv::new(&self.config, self.ports.lake.clone()).map_err(RunError::Catalog)?)
    }

    /// The run's last step: the campaign report when due (or asked for); returns what the
    /// run did (the state machine's output).
    async fn finish(&self, plan: &Plan, run: &RunEnv, compaction: Option<Compaction>) -> Result<RunSummary, SegmentsError> {
        let segments = crate::run::run_reports(&self.ports.blobs, &self.config.lake_bucket, plan).await?;
        let report = crate::report::run_if_due(&self.ports, &self.config, plan.run_at, plan.report, run).await?;
        let cache = run.lake.stats();
        tracing::info!(hits = cache.hits, filled = cache.filled, passed = cache.passed, bytes = cache.bytes, "lake cache");
        Ok(RunSummary { run_at: plan.run_at, segments, report, compaction })
    }

    /// One step of a run, as the state machine invokes it; its result is the step's output
    /// (the [`Plan`] for `plan`, a bucket's marker for `bucket` and `publish`, the reports
    /// for `commit`, the [`RunSummary`] for `finish`).
    pub async fn step(&self, request: StepRequest) -> Result<serde_json::Value, SegmentsError> {
        let encode = |what: &'static str| move |e| SegmentsError::Run(RunError::Encode { what, source: e });
        match request {
            StepRequest::Plan { event } => {
                let plan = self.plan_of(event.time, event.detail).await?;
                serde_json::to_value(plan).map_err(encode("a plan"))
            }
            StepRequest::Bucket { plan, bucket } => {
                let run = self.run_env()?;
                let done = compute_bucket(&self.ports, &self.config, &self.definitions, &plan, bucket, &run).await?;
                serde_json::to_value(done).map_err(encode("a bucket marker"))
            }
            StepRequest::Publish { plan, bucket } => {
                let done = publish_bucket(&self.ports, &self.config, &self.definitions, &plan, bucket).await?;
                serde_json::to_value(done).map_err(encode("a publish marker"))
            }
            StepRequest::Commit { plan } => {
                let reports = commit(&self.ports, &self.config, &self.definitions, &plan).await?;
                serde_json::to_value(reports).map_err(encode("the run's reports"))
            }
            StepRequest::Compact { plan } => {
                let run = self.run_env()?;
                let compaction = self.compact(&plan, &run).await?;
                serde_json::to_value(compaction).map_err(encode("the compaction's outcome"))
            }
            StepRequest::Finish { plan, compaction } => {
                let run = self.run_env()?;
                let summary = self.finish(&plan, &run, compaction).await?;
                serde_json::to_value(summary).map_err(encode("the run summary"))
            }
        }
    }
}

/// The state machine's input as the plan step reads it: the scheduled event EventBridge
/// sends (or `{"detail": {...}}` for a manual execution); other fields are ignored.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PlanInput {
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// One step of a run (`{"step": "plan", "event": {...}}`, `{"step": "bucket", "plan":
/// {...}, "bucket": 3}`, ...), as `SegmentsStateMachine` invokes the function.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum StepRequest {
    Plan {
        #[serde(default)]
        event: PlanInput,
    },
    Bucket {
        plan: Plan,
        bucket: usize,
    },
    Publish {
        plan: Plan,
        bucket: usize,
    },
    Commit {
        plan: Plan,
    },
    Compact {
        plan: Plan,
    },
    Finish {
        plan: Plan,
        /// The compaction step's outcome, reported in the run summary.
        #[serde(default)]
        compaction: Option<Compaction>,
    },
}

/// What the compaction step did: its report, or why it did not run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Compaction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<crate::compact::CompactionReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
