//! One run: snapshot the profiles, then for each due segment and each profile partition,
//! compute the members, write them, diff with the previous committed snapshot, send the
//! changes; then commit by moving the segment's `current.json` pointer.
//!
//! A failed run commits nothing: the snapshot of an uncommitted run is never "previous".
//! A re-run of a committed run id is a no-op. A run that crashed after sending but before
//! committing re-runs over the same profile snapshot and re-sends the same changes with
//! the same idempotency keys, which activation de-duplicates.

use std::collections::{BTreeMap, BTreeSet};

use ariane_shared::lake;
use ariane_shared::model::{ActivationRequest, SegmentChange, SegmentMember};
use ariane_shared::ports::{BlobStore, ProfileReader, Queue};
use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, Utc};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::catalog::{self, Dialect, RunEnv, RunScope};
use crate::config::SegmentsConfig;
use crate::definition::{DefinitionError, SegmentDefinition};
pub use crate::error::RunError;
use crate::ports::{get_json, put_json, put_parquet, read_members, Ports};

/// The committed state of a segment (`segments/<name>/current.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentPointer {
    pub run_id: String,
    pub run_at: DateTime<Utc>,
    /// The membership files of the run, one per profile partition.
    pub parts: Vec<String>,
    pub partitions: usize,
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
    /// Nothing done: the run id was already committed (or is older than the committed
    /// one), or the segment is not due yet (see `reason`).
    pub skipped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Wall time of the queries, in milliseconds.
    #[serde(default)]
    pub query_ms: u64,
}

/// The committed pointer of a segment, if it ever committed (a pointer that cannot be
/// decoded is an error).
pub async fn current_pointer(blobs: &dyn BlobStore, bucket: &str, segment: &str) -> Result<Option<CurrentPointer>, RunError> {
    get_json(blobs, bucket, &lake::segment_current_key(segment)).await
}

/// Runs the due `definitions` at `run_at` over the lake (all of them when `force`), on
/// the run's `run` ([`RunEnv`]: one per run, shared by its queries).
pub async fn run_segments<B: BlobStore, Q: Queue, P: ProfileReader>(
    ports: &Ports<B, Q, P>,
    config: &SegmentsConfig,
    definitions: &[SegmentDefinition],
    run_at: DateTime<Utc>,
    force: bool,
    run: &RunEnv,
) -> Result<Vec<SegmentReport>, RunError> {
    let run_id = lake::run_id(run_at);
    let bucket = &config.lake_bucket;
    let mut reports = Vec::with_capacity(definitions.len());
    let mut due: Vec<(&SegmentDefinition, Option<CurrentPointer>)> = Vec::new();
    for def in definitions {
        let current = current_pointer(&ports.blobs, bucket, &def.name).await?;
        let skip = |reason: String, members: usize| SegmentReport {
            segment: def.name.clone(),
            run_id: run_id.clone(),
            members,
            entered: 0,
            exited: 0,
            skipped: true,
            reason: Some(reason),
            query_ms: 0,
        };
        match &current {
            Some(c) if c.run_id >= run_id => reports.push(skip(format!("run {} already committed", c.run_id), c.members)),
            Some(c) if !force && !def.schedule.is_due(Some(c.run_at), run_at) => {
                reports.push(skip(format!("not due (last run {}, every {})", c.run_id, humanize(def.schedule.every)), c.members))
            }
            _ => due.push((def, current)),
        }
    }
    if due.is_empty() {
        return Ok(reports);
    }
    let profiles = crate::snapshot::ensure_snapshot(&ports.blobs, &ports.profiles, bucket, &run_id, config.partitions).await?;
    tracing::info!(run_id = %run_id, profiles, partitions = config.partitions, "profile snapshot ready");
    // Attribute segments (`-- attribute:`) first: their members of this run (or, when
    // not due, of their committed run) are attached to every other segment's requests.
    due.sort_by_key(|(def, _)| def.attribute.is_none());
    let mut attributes = Attributes::default();
    for def in definitions.iter().filter(|d| d.attribute.is_some()) {
        if !due.iter().any(|(d, _)| d.name == def.name) {
            attributes.load_committed(&ports.blobs, bucket, def, config.partitions).await?;
        }
    }
    for (def, current) in due {
        let (report, members) = run_one(ports, config, def, current, run_at, &attributes, run).await?;
        tracing::info!(segment = %report.segment, members = report.members, entered = report.entered, exited = report.exited, query_ms = report.query_ms, "segment run");
        if let Some(name) = &def.attribute {
            attributes.add(name, members);
        }
        reports.push(report);
    }
    let order: BTreeMap<&str, usize> = definitions.iter().enumerate().map(|(i, d)| (d.name.as_str(), i)).collect();
    reports.sort_by_key(|r| order.get(r.segment.as_str()).copied().unwrap_or(usize::MAX));
    Ok(reports)
}

fn humanize(d: chrono::Duration) -> String {
    match (d.num_days(), d.num_hours(), d.num_minutes()) {
        (days, h, _) if days > 0 && h % 24 == 0 => format!("{days} day(s)"),
        (_, h, m) if h > 0 && m % 60 == 0 => format!("{h} hour(s)"),
        (_, _, m) => format!("{m} minute(s)"),
    }
}

/// A DataFusion session of the run `run` over the lake bucket `bucket` (read through the
/// run's cache in front of the [`Ports::lake`] store) for one partition of a run.
pub async fn run_session(run: &RunEnv, bucket: &str, scope: &RunScope) -> Result<SessionContext, DataFusionError> {
    let ctx = catalog::session_on(run.runtime.clone());
    catalog::register_lake(&ctx, bucket, run.lake.clone())?;
    catalog::register_run(&ctx, &catalog::lake_base(bucket), scope).await?;
    Ok(ctx)
}

/// The members of `def` in the catalog of `ctx` (a run at `run_at`).
pub async fn compute(ctx: &SessionContext, def: &SegmentDefinition, run_at: DateTime<Utc>) -> Result<Vec<SegmentMember>, RunError> {
    let sql =
        catalog::render(&def.sql, run_at, Dialect::DataFusion).map_err(|source| RunError::Render { segment: def.name.clone(), source })?;
    let query_err = |source| RunError::Query { segment: def.name.clone(), source };
    let batches = ctx.sql(&sql).await.map_err(query_err)?.collect().await.map_err(query_err)?;
    members_of(&def.name, &batches, &def.key, &def.payload)
}

/// Profile attributes of a run, per profile partition: attribute name → profile → value.
#[derive(Debug, Default)]
pub struct Attributes {
    by_bucket: Vec<BTreeMap<String, BTreeMap<String, String>>>,
}

impl Attributes {
    fn slot(&mut self, k: usize) -> &mut BTreeMap<String, BTreeMap<String, String>> {
        if self.by_bucket.len() <= k {
            self.by_bucket.resize_with(k + 1, BTreeMap::new);
        }
        &mut self.by_bucket[k]
    }

    /// The members of an attribute segment, per bucket.
    fn add(&mut self, name: &str, members: Vec<Vec<SegmentMember>>) {
        for (k, part) in members.into_iter().enumerate() {
            let map = self.slot(k).entry(name.to_string()).or_default();
            for m in part {
                if let Some(v) = m.key.get(name).or_else(|| m.payload.get(name)) {
                    map.insert(m.profile_id, v.clone());
                }
            }
        }
    }

    async fn load_committed(&mut self, blobs: &dyn BlobStore, bucket: &str, def: &SegmentDefinition, n: usize) -> Result<(), RunError> {
        let Some(name) = &def.attribute else { return Ok(()) };
        let Some(current) = current_pointer(blobs, bucket, &def.name).await? else { return Ok(()) };
        let mut per_bucket: Vec<Vec<SegmentMember>> = vec![Vec::new(); n];
        for part in &current.parts {
            for m in read_members(blobs, bucket, part).await? {
                per_bucket[lake::profile_bucket(&m.profile_id, n)].push(m);
            }
        }
        self.add(name, per_bucket);
        Ok(())
    }

    /// The attributes of `profile_id` in partition `k`.
    pub fn of(&self, k: usize, profile_id: &str) -> BTreeMap<String, String> {
        self.by_bucket
            .get(k)
            .map(|m| m.iter().filter_map(|(name, values)| values.get(profile_id).map(|v| (name.clone(), v.clone()))).collect())
            .unwrap_or_default()
    }
}

/// The run of one segment: for each profile partition, compute the members, write them,
/// diff them with the same partition of `current` (the committed run), send the changes;
/// then commit by overwriting the segment's `current.json`. Any failure returns before
/// the commit, so the next attempt diffs against the same committed run and sends the
/// same changes with the same idempotency keys. Returns the report and, for an attribute
/// segment, its members per partition.
pub async fn run_one<B: BlobStore, Q: Queue, P: ProfileReader>(
    ports: &Ports<B, Q, P>,
    config: &SegmentsConfig,
    def: &SegmentDefinition,
    current: Option<CurrentPointer>,
    run_at: DateTime<Utc>,
    attributes: &Attributes,
    run: &RunEnv,
) -> Result<(SegmentReport, Vec<Vec<SegmentMember>>), RunError> {
    let run_id = lake::run_id(run_at);
    let bucket = &config.lake_bucket;
    let n = config.partitions;
    let (mut parts, mut members, mut entered_total, mut exited_total, mut query_ms) = (Vec::new(), 0, 0, 0, 0u64);
    // The members of an attribute segment, per partition, for the segments after it.
    let mut kept: Vec<Vec<SegmentMember>> = Vec::new();
    // The previous membership, read whole once when its partitioning differs from this
    // run's (each partition then keeps its own profiles).
    let mut previous_all: Vec<SegmentMember> = Vec::new();
    let same_partitions = current.as_ref().is_none_or(|c| c.partitions == n && c.parts.len() == n);
    if let (Some(c), false) = (&current, same_partitions) {
        for part in &c.parts {
            previous_all.extend(read_members(&ports.blobs, bucket, part).await?);
        }
    }
    for k in 0..n {
        let scope = RunScope { run_at, snapshot_run_id: run_id.clone(), bucket: (n > 1).then_some(k) };
        let started = std::time::Instant::now();
        let ctx = run_session(run, bucket, &scope).await.map_err(RunError::Catalog)?;
        let current_members = compute(&ctx, def, run_at).await?;
        drop(ctx);
        query_ms += started.elapsed().as_millis() as u64;

        let key = lake::segment_members_key(&def.name, &run_id, k, n);
        put_parquet(&ports.blobs, bucket, &key, lake::members_schema(), lake::members_batch(&current_members)).await?;

        let previous = match &current {
            None => Vec::new(),
            Some(c) if same_partitions => read_members(&ports.blobs, bucket, &c.parts[k]).await?,
            Some(_) => previous_all.iter().filter(|m| lake::profile_bucket(&m.profile_id, n) == k).cloned().collect(),
        };
        let (entered, exited) = diff(&previous, &current_members);
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
                    key: m.key.clone(),
                    payload: m.payload.clone(),
                    attributes: attributes.of(k, &m.profile_id),
                })
            })
            .collect::<Result<_, _>>()
            .map_err(RunError::encode("an activation request"))?;
        ports.queue.send_all(&config.activation_queue_url, &requests).await?;
        parts.push(key);
        members += current_members.len();
        entered_total += entered.len();
        exited_total += exited.len();
        if def.attribute.is_some() {
            kept.push(current_members);
        }
    }

    let pointer = CurrentPointer { run_id: run_id.clone(), run_at, parts, partitions: n, members };
    put_json(&ports.blobs, bucket, &lake::segment_current_key(&def.name), "a segment pointer", &pointer).await?;
    ariane_shared::metrics::emit(
        "segments",
        &[
            ("Members", members as f64),
            ("Entered", entered_total as f64),
            ("Exited", exited_total as f64),
            ("QueryMilliseconds", query_ms as f64),
        ],
    );
    let report = SegmentReport {
        segment: def.name.clone(),
        run_id,
        members,
        entered: entered_total,
        exited: exited_total,
        skipped: false,
        reason: None,
        query_ms,
    };
    Ok((report, kept))
}

/// Members from a query result: the `profile_id` column, the key columns and the payload
/// columns, as text. A profile listed twice with the same key counts once (its first
/// row's payload is kept); rows with a null `profile_id` are ignored.
pub fn members_of(segment: &str, batches: &[RecordBatch], key: &[String], payload: &[String]) -> Result<Vec<SegmentMember>, RunError> {
    let problem = |p: String| RunError::Result { segment: segment.to_string(), problem: p };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let options = FormatOptions::default().with_null("");
    for batch in batches {
        let id_col = batch.column_by_name("profile_id").ok_or_else(|| problem("the query returns no profile_id column".into()))?;
        let format_err = |source| RunError::Format { segment: segment.to_string(), source };
        let ids = ArrayFormatter::try_new(id_col.as_ref(), &options).map_err(format_err)?;
        let formatters = |names: &[String], what: &str| -> Result<Vec<(String, ArrayFormatter<'_>)>, RunError> {
            names
                .iter()
                .map(|name| {
                    let col = batch.column_by_name(name).ok_or_else(|| problem(format!("{what} column {name:?} is not in the result")))?;
                    Ok((name.clone(), ArrayFormatter::try_new(col.as_ref(), &options).map_err(format_err)?))
                })
                .collect()
        };
        let keys = formatters(key, "key")?;
        let payloads = formatters(payload, "payload")?;
        for row in 0..batch.num_rows() {
            if id_col.is_null(row) {
                continue;
            }
            let pid = ids.value(row).to_string();
            let key: BTreeMap<String, String> = keys.iter().map(|(n, f)| (n.clone(), f.value(row).to_string())).collect();
            if !seen.insert((pid.clone(), key.clone())) {
                continue;
            }
            let payload: BTreeMap<String, String> = payloads.iter().map(|(n, f)| (n.clone(), f.value(row).to_string())).collect();
            out.push(SegmentMember { profile_id: pid, key, payload });
        }
    }
    out.sort_by(|a, b| (&a.profile_id, &a.key).cmp(&(&b.profile_id, &b.key)));
    Ok(out)
}

/// Who entered (in `current`, not in `previous`) and who exited (the reverse); a member
/// is its profile and its key.
pub fn diff(previous: &[SegmentMember], current: &[SegmentMember]) -> (Vec<SegmentMember>, Vec<SegmentMember>) {
    let id = |m: &SegmentMember| (m.profile_id.clone(), m.key.clone());
    let before: BTreeSet<_> = previous.iter().map(id).collect();
    let after: BTreeSet<_> = current.iter().map(id).collect();
    let entered = current.iter().filter(|m| !before.contains(&id(m))).cloned().collect();
    let exited = previous.iter().filter(|m| !after.contains(&id(m))).cloned().collect();
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
        let sql = match catalog::render(&def.sql, Utc::now(), Dialect::DataFusion) {
            Ok(sql) => sql,
            Err(problem) => {
                errors.push(err(problem.to_string()));
                continue;
            }
        };
        let plan = match ctx.sql(&sql).await {
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
                for (what, columns) in [("key", &def.key), ("payload", &def.payload)] {
                    for c in columns {
                        if !has(c) {
                            errors.push(err(format!("{what} column {c:?} is not returned by the query")));
                        }
                    }
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str) -> SegmentMember {
        SegmentMember { profile_id: id.into(), key: BTreeMap::new(), payload: BTreeMap::new() }
    }

    #[test]
    fn diff_finds_entries_and_exits() {
        let (entered, exited) = diff(&[m("a"), m("b")], &[m("b"), m("c")]);
        assert_eq!(entered, vec![m("c")]);
        assert_eq!(exited, vec![m("a")]);
        let (entered, exited) = diff(&[], &[m("a")]);
        assert_eq!((entered.len(), exited.len()), (1, 0));
        let tier = |id: &str, t: &str| SegmentMember { key: [("tier".to_string(), t.to_string())].into(), ..m(id) };
        let (entered, exited) = diff(&[tier("a", "loyal"), tier("b", "loyal")], &[tier("a", "champions"), tier("b", "loyal")]);
        assert_eq!((entered, exited), (vec![tier("a", "champions")], vec![tier("a", "loyal")]));
    }

    #[test]
    fn attributes_follow_their_partition() {
        let m = |id: &str, ch: &str| SegmentMember {
            profile_id: id.into(),
            key: [("preferred_channel".to_string(), ch.to_string())].into_iter().collect(),
            payload: BTreeMap::new(),
        };
        let mut a = Attributes::default();
        a.add("preferred_channel", vec![vec![m("p1", "email")], vec![m("p2", "app")]]);
        assert_eq!(a.of(0, "p1").get("preferred_channel").map(String::as_str), Some("email"));
        assert_eq!(a.of(1, "p2").get("preferred_channel").map(String::as_str), Some("app"));
        assert!(a.of(0, "p2").is_empty() && a.of(7, "p1").is_empty());
    }

    #[test]
    fn preferred_channel_is_an_attribute_segment() {
        let lib = SegmentDefinition::library().unwrap();
        let pc = lib.iter().find(|d| d.name == "preferred-channel").unwrap();
        assert_eq!(pc.attribute.as_deref(), Some("preferred_channel"));
        assert!(SegmentDefinition::parse("x.sql", "-- name: x\n-- attribute: nope\nSELECT 1").unwrap_err().problem.contains("nope"));
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
            ("segments/key.sql", "-- name: key\n-- key: tier\nSELECT profile_id FROM orders", "tier"),
            ("segments/param.sql", "-- name: param\nSELECT profile_id FROM orders WHERE ordered_at > {{run_time}}", "run_time"),
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
