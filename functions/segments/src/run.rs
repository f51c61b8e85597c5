//! One run: compute each segment, snapshot it, diff with the previous snapshot, send the
//! changes, then commit by moving the segment's `current.json` pointer.
//!
//! A failed run commits nothing: the snapshot of an uncommitted run is never "previous".
//! A re-run of a committed run id is a no-op. A run that crashed after sending but before
//! committing re-sends the same changes with the same idempotency keys, which activation
//! de-duplicates.

use std::collections::{BTreeMap, BTreeSet};

use ariane_shared::aws::Clients;
use ariane_shared::error::{AwsError, SdkResultExt};
use ariane_shared::lake;
use ariane_shared::model::{ActivationRequest, SegmentChange, SegmentMember};
use ariane_shared::sqs::{send_all, SendError};
use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::config::SegmentsConfig;
use crate::definition::{DefinitionError, SegmentDefinition};

/// The committed state of a segment (`segments/<name>/current.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentPointer {
    pub run_id: String,
    pub run_at: DateTime<Utc>,
    pub members_key: String,
    pub members: usize,
}

/// What a run did for one segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentReport {
    pub segment: String,
    pub run_id: String,
    pub members: usize,
    pub entered: usize,
    pub exited: usize,
    /// The run id was already committed (or is older than the committed one): nothing done.
    pub skipped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("segment {segment}: {source}")]
    Query { segment: String, source: DataFusionError },
    #[error("segment {segment}: {problem}")]
    Result { segment: String, problem: String },
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("cannot set up the catalog: {0}")]
    Catalog(DataFusionError),
    #[error("snapshot encoding: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("snapshot encoding: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("pointer is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot read from S3: {0}")]
    Read(String),
}

/// Runs `definitions` at `run_at` over the lake.
pub async fn run_segments(
    clients: &Clients,
    config: &SegmentsConfig,
    definitions: &[SegmentDefinition],
    run_at: DateTime<Utc>,
) -> Result<Vec<SegmentReport>, RunError> {
    let ctx = catalog::session(config.memory_limit_mb, &config.scratch_dir).map_err(RunError::Catalog)?;
    catalog::register_lake(&ctx, &clients.config, &config.lake_bucket).map_err(RunError::Catalog)?;
    catalog::register_run(&ctx, &config.lake_bucket, run_at).await.map_err(RunError::Catalog)?;
    let mut reports = Vec::with_capacity(definitions.len());
    for def in definitions {
        let report = run_one(clients, config, &ctx, def, run_at).await?;
        tracing::info!(segment = %report.segment, members = report.members, entered = report.entered, exited = report.exited, skipped = report.skipped, "segment run");
        reports.push(report);
    }
    Ok(reports)
}

async fn run_one(
    clients: &Clients,
    config: &SegmentsConfig,
    ctx: &SessionContext,
    def: &SegmentDefinition,
    run_at: DateTime<Utc>,
) -> Result<SegmentReport, RunError> {
    let run_id = lake::run_id(run_at);
    let bucket = &config.lake_bucket;
    let current: Option<CurrentPointer> = match get_bytes(clients, bucket, &lake::segment_current_key(&def.name)).await? {
        Some(bytes) => Some(serde_json::from_slice(&bytes)?),
        None => None,
    };
    if let Some(c) = &current {
        if c.run_id >= run_id {
            return Ok(SegmentReport { segment: def.name.clone(), run_id, members: c.members, entered: 0, exited: 0, skipped: true });
        }
    }
    let query_err = |source| RunError::Query { segment: def.name.clone(), source };
    let batches = ctx.sql(&def.sql).await.map_err(query_err)?.collect().await.map_err(query_err)?;
    let members = members_of(&def.name, &batches, &def.payload)?;

    let members_key = lake::segment_members_key(&def.name, &run_id);
    let bytes = lake::parquet_bytes(lake::members_schema(), &[lake::members_batch(&members)?])?;
    put(clients, bucket, &members_key, bytes).await?;

    let previous = match &current {
        Some(c) => match get_bytes(clients, bucket, &c.members_key).await? {
            Some(bytes) => lake::members_from_batches(&lake::read_parquet_bytes(bytes.into())?)?,
            None => return Err(RunError::Read(format!("committed snapshot {} is missing", c.members_key))),
        },
        None => Vec::new(),
    };
    let (entered, exited) = diff(&previous, &members);
    let requests: Vec<String> = entered
        .iter()
        .map(|m| (m, SegmentChange::Entered))
        .chain(exited.iter().map(|m| (m, SegmentChange::Exited)))
        .map(|(m, change)| {
            serde_json::to_string(&ActivationRequest {
                segment: def.name.clone(),
                run_id: run_id.clone(),
                run_at,
                profile_id: m.profile_id.clone(),
                change,
                payload: m.payload.clone(),
            })
        })
        .collect::<Result<_, _>>()?;
    send_all(&clients.sqs, &config.activation_queue_url, &requests).await?;

    let pointer = CurrentPointer { run_id: run_id.clone(), run_at, members_key, members: members.len() };
    put(clients, bucket, &lake::segment_current_key(&def.name), serde_json::to_vec_pretty(&pointer)?).await?;
    ariane_shared::metrics::emit(
        "segments",
        &[("Members", members.len() as f64), ("Entered", entered.len() as f64), ("Exited", exited.len() as f64)],
    );
    Ok(SegmentReport { segment: def.name.clone(), run_id, members: members.len(), entered: entered.len(), exited: exited.len(), skipped: false })
}

/// Members from a query result: the `profile_id` column plus the payload columns as text.
/// A profile listed twice counts once (its first row's payload is kept).
pub fn members_of(segment: &str, batches: &[RecordBatch], payload: &[String]) -> Result<Vec<SegmentMember>, RunError> {
    let problem = |p: String| RunError::Result { segment: segment.to_string(), problem: p };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let options = FormatOptions::default();
    for batch in batches {
        let ids = batch.column_by_name("profile_id").ok_or_else(|| problem("the query returns no profile_id column".into()))?;
        let ids = ArrayFormatter::try_new(ids.as_ref(), &options)?;
        let mut columns = Vec::with_capacity(payload.len());
        for name in payload {
            let col = batch.column_by_name(name).ok_or_else(|| problem(format!("payload column {name:?} is not in the result")))?;
            columns.push((name, col.clone()));
        }
        let formatters = columns
            .iter()
            .map(|(n, c)| ArrayFormatter::try_new(c.as_ref(), &options).map(|f| (*n, f)))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            if batch.column_by_name("profile_id").is_some_and(|c| c.is_null(row)) {
                continue;
            }
            let pid = ids.value(row).to_string();
            if !seen.insert(pid.clone()) {
                continue;
            }
            let payload: BTreeMap<String, String> =
                formatters.iter().map(|(n, f)| (n.to_string(), f.value(row).to_string())).collect();
            out.push(SegmentMember { profile_id: pid, payload });
        }
    }
    out.sort_by(|a, b| a.profile_id.cmp(&b.profile_id));
    Ok(out)
}

/// Who entered (in `current`, not in `previous`) and who exited (the reverse).
pub fn diff(previous: &[SegmentMember], current: &[SegmentMember]) -> (Vec<SegmentMember>, Vec<SegmentMember>) {
    let before: BTreeSet<&str> = previous.iter().map(|m| m.profile_id.as_str()).collect();
    let after: BTreeSet<&str> = current.iter().map(|m| m.profile_id.as_str()).collect();
    let entered = current.iter().filter(|m| !before.contains(m.profile_id.as_str())).cloned().collect();
    let exited = previous.iter().filter(|m| !after.contains(m.profile_id.as_str())).cloned().collect();
    (entered, exited)
}

/// Plans every definition against the real schemas (over empty tables): an unknown
/// table or column, a syntax error, a missing `profile_id` or payload column is reported
/// with the file name and DataFusion's message.
pub async fn validate(definitions: &[SegmentDefinition]) -> Vec<DefinitionError> {
    let ctx = match catalog::validation_session(Utc::now()).await {
        Ok(ctx) => ctx,
        Err(e) => return vec![DefinitionError { file: "<catalog>".into(), problem: e.to_string() }],
    };
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    for def in definitions {
        let err = |problem: String| DefinitionError { file: def.file.clone(), problem };
        if !names.insert(def.name.clone()) {
            errors.push(err(format!("segment name {:?} is defined twice", def.name)));
        }
        let plan = match ctx.sql(&def.sql).await {
            Ok(df) => df.into_optimized_plan(),
            Err(e) => Err(e),
        };
        match plan {
            Err(e) => errors.push(err(e.to_string())),
            Ok(plan) => {
                let schema = plan.schema();
                let has = |c: &str| schema.fields().iter().any(|f| f.name() == c);
                if !has("profile_id") {
                    errors.push(err("the query must return a profile_id column".into()));
                }
                for p in &def.payload {
                    if !has(p) {
                        errors.push(err(format!("payload column {p:?} is not returned by the query")));
                    }
                }
            }
        }
    }
    errors
}

async fn get_bytes(clients: &Clients, bucket: &str, key: &str) -> Result<Option<bytes::Bytes>, RunError> {
    match clients.s3.get_object().bucket(bucket).key(key).send().await.aws("s3:GetObject") {
        Ok(out) => Ok(Some(out.body.collect().await.map_err(|e| RunError::Read(e.to_string()))?.into_bytes())),
        Err(e) if e.is_code("NoSuchKey") => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn put(clients: &Clients, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), RunError> {
    clients.s3.put_object().bucket(bucket).key(key).body(ByteStream::from(body)).send().await.aws("s3:PutObject")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str) -> SegmentMember {
        SegmentMember { profile_id: id.into(), payload: BTreeMap::new() }
    }

    #[test]
    fn diff_finds_entries_and_exits() {
        let (entered, exited) = diff(&[m("a"), m("b")], &[m("b"), m("c")]);
        assert_eq!(entered, vec![m("c")]);
        assert_eq!(exited, vec![m("a")]);
        let (entered, exited) = diff(&[], &[m("a")]);
        assert_eq!((entered.len(), exited.len()), (1, 0));
    }

    #[tokio::test]
    async fn library_validates() {
        let lib = SegmentDefinition::library().unwrap();
        assert_eq!(validate(&lib).await, vec![]);
    }

    #[tokio::test]
    async fn bad_segments_fail_validation_naming_the_file() {
        let cases = [
            ("segments/typo.sql", "-- name: typo\nSELEC profile_id FROM orders", "sql error"),
            ("segments/col.sql", "-- name: col\nSELECT profile_id, no_such_column FROM orders", "no_such_column"),
            ("segments/noid.sql", "-- name: noid\nSELECT order_id FROM orders", "profile_id"),
            ("segments/pay.sql", "-- name: pay\n-- payload: total\nSELECT profile_id FROM orders", "total"),
            ("segments/tab.sql", "-- name: tab\nSELECT profile_id FROM carts_typo", "carts_typo"),
        ];
        for (file, text, needle) in cases {
            let def = SegmentDefinition::parse(file, text).unwrap();
            let errors = validate(&[def]).await;
            assert_eq!(errors.len(), 1, "{file}: {errors:?}");
            assert_eq!(errors[0].file, file);
            assert!(errors[0].to_string().to_lowercase().contains(needle), "{file}: {}", errors[0]);
        }
    }
}
