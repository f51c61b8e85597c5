//! One run, in steps that a Step Functions state machine plays (`SegmentsStateMachine` in
//! `infra/template.yaml`; the local runner plays the same definition) or that one
//! invocation plays in order ([`run_segments`]):
//!
//! 1. [`plan`]: which segments are due; the run's profile snapshot, one file per profile
//!    bucket. Returns the [`Plan`] every later step reads.
//! 2. [`compute_bucket`], once per bucket (a Map state, in parallel): one DataFusion
//!    session over the bucket's share of the lake, in which what every segment shares is
//!    computed once ([`run_session`] materialises `profile_links`); every due segment's
//!    members of the bucket are written, diffed with the same bucket of the committed run,
//!    and the changes stored; a marker records the bucket done.
//! 3. [`publish_bucket`], once per bucket: writes each changed person's memberships item
//!    (`SEGMENTS#<pid>` in the profiles table, which the profile API reads) and sends the
//!    stored changes to activation.
//! 4. [`commit`]: when every bucket is computed and published, moves each segment's
//!    `current.json` pointer to this run.
//!
//! A failed run commits nothing: the snapshot of an uncommitted run is never "previous".
//! A retried step finds its marker and does not compute again; a re-run of a committed
//! run id is a no-op. A run that failed after publishing but before committing re-runs
//! over the same profile snapshot and re-sends the same changes with the same
//! idempotency keys, which activation de-duplicates.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ariane_shared::lake;
use ariane_shared::memberships::{self, Membership, MembershipChange};
use ariane_shared::model::{ActivationRequest, SegmentChange, SegmentMember};
use ariane_shared::ports::{BlobStore, ProfileReader, Queue};
use arrow::array::{Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, Utc};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::catalog::{self, Dialect, RunEnv, RunScope};
use crate::config::SegmentsConfig;
use crate::definition::{DefinitionError, SegmentDefinition};
pub use crate::error::RunError;
use crate::ports::{get_json, put_json, put_parquet, read_members, Ports};
use ariane_shared::ports::MembershipStore;

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
    /// Wall time of the queries, in milliseconds (summed over buckets).
    #[serde(default)]
    pub query_ms: u64,
}

/// The plan of a run: the output of its first step, the input of every other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub run_id: String,
    pub run_at: DateTime<Utc>,
    /// The due segments, in the order a bucket computes them (attribute segments first).
    pub segments: Vec<String>,
    /// Segments not computed, and why.
    pub skipped: Vec<SegmentReport>,
    /// Profile buckets of the run (`ARIANE_SEGMENT_PARTITIONS`).
    pub partitions: usize,
    /// `0..partitions`: what the state machine's Map states iterate over.
    pub buckets: Vec<usize>,
    /// Buckets computed at once (the Map states' `MaxConcurrencyPath`).
    #[serde(default)]
    pub concurrency: usize,
    /// Profiles in the run's snapshot (0 when nothing is due: no snapshot is taken).
    pub profiles: usize,
    /// Whether any segment is due (the state machine skips to its last step otherwise).
    pub due: bool,
    /// The campaign report was asked for (computed whether due or not).
    #[serde(default)]
    pub report: bool,
}

/// What one bucket of a run computed for one segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketSegment {
    pub segment: String,
    /// The bucket's membership file.
    pub part: String,
    pub members: usize,
    pub entered: usize,
    pub exited: usize,
    pub query_ms: u64,
    /// The bucket's changes for activation (absent when there are none).
    pub changes: Option<String>,
}

/// The marker of a computed bucket (`segments/_runs/<run>/buckets/bucket=<k>-of-<n>.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketDone {
    pub run_id: String,
    pub bucket: usize,
    pub partitions: usize,
    pub segments: Vec<BucketSegment>,
    /// Wall time of the bucket's shared tables (`profile_links`), in milliseconds.
    #[serde(default)]
    pub shared_ms: u64,
}

/// The marker of a published bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketPublished {
    pub run_id: String,
    pub bucket: usize,
    pub partitions: usize,
    pub sent: usize,
}

fn run_prefix(run_id: &str) -> String {
    format!("segments/_runs/{run_id}/")
}

/// The marker of bucket `k` of `n` computed in `run_id`.
pub fn bucket_marker_key(run_id: &str, k: usize, n: usize) -> String {
    format!("{}buckets/bucket={k}-of-{n}.json", run_prefix(run_id))
}

/// The marker of bucket `k` of `n` published in `run_id`.
pub fn published_marker_key(run_id: &str, k: usize, n: usize) -> String {
    format!("{}published/bucket={k}-of-{n}.json", run_prefix(run_id))
}

/// The changes of `segment` in bucket `k` of `n` of `run_id`: Parquet, one row per
/// activation request (`profile_id`, `request` as JSON), so the erasure purge filters
/// them like every other lake file. Deleted when the run commits.
pub fn changes_key(run_id: &str, segment: &str, k: usize, n: usize) -> String {
    format!("{}changes/{segment}/bucket={k}-of-{n}.parquet", run_prefix(run_id))
}

fn changes_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("profile_id", DataType::Utf8, false), Field::new("request", DataType::Utf8, false)]))
}

/// The committed pointer of a segment, if it ever committed (a pointer that cannot be
/// decoded is an error).
pub async fn current_pointer(blobs: &dyn BlobStore, bucket: &str, segment: &str) -> Result<Option<CurrentPointer>, RunError> {
    get_json(blobs, bucket, &lake::segment_current_key(segment)).await
}

/// Runs the due `definitions` at `run_at` over the lake (all of them when `force`) in one
/// invocation: [`plan`], every bucket one after the other, [`publish_bucket`] for each,
/// [`commit`]. The state machine plays the same steps, the buckets in parallel.
pub async fn run_segments<B: BlobStore, Q: Queue, P: ProfileReader, M: MembershipStore>(
    ports: &Ports<B, Q, P, M>,
    config: &SegmentsConfig,
    definitions: &[SegmentDefinition],
    run_at: DateTime<Utc>,
    force: bool,
    run: &RunEnv,
) -> Result<Vec<SegmentReport>, RunError> {
    let plan = plan(ports, config, definitions, run_at, force, false).await?;
    if !plan.due {
        return Ok(plan.skipped);
    }
    for &k in &plan.buckets {
        compute_bucket(ports, config, definitions, &plan, k, run).await?;
    }
    for &k in &plan.buckets {
        publish_bucket(ports, config, definitions, &plan, k).await?;
    }
    commit(ports, config, definitions, &plan).await
}

/// The first step: the due segments (all of `definitions` when `force`), and, when any is
/// due, the run's profile snapshot (reused when a retry finds it complete).
pub async fn plan<B: BlobStore, Q: Queue, P: ProfileReader, M>(
    ports: &Ports<B, Q, P, M>,
    config: &SegmentsConfig,
    definitions: &[SegmentDefinition],
    run_at: DateTime<Utc>,
    force: bool,
    report: bool,
) -> Result<Plan, RunError> {
    let run_id = lake::run_id(run_at);
    let bucket = &config.lake_bucket;
    let mut skipped = Vec::new();
    let mut due: Vec<&SegmentDefinition> = Vec::new();
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
            Some(c) if c.run_id >= run_id => skipped.push(skip(format!("run {} already committed", c.run_id), c.members)),
            Some(c) if !force && !def.schedule.is_due(Some(c.run_at), run_at) => {
                skipped.push(skip(format!("not due (last run {}, every {})", c.run_id, humanize(def.schedule.every)), c.members))
            }
            _ => due.push(def),
        }
    }
    // Attribute segments (`-- attribute:`) first: a bucket attaches their members of this
    // run (or, when not due, of their committed run) to every other segment's requests.
    due.sort_by_key(|def| def.attribute.is_none());
    let n = config.partitions;
    let profiles = if due.is_empty() {
        0
    } else {
        let profiles = crate::snapshot::ensure_snapshot(&ports.blobs, &ports.profiles, bucket, &run_id, n).await?;
        tracing::info!(run_id = %run_id, profiles, partitions = n, "profile snapshot ready");
        profiles
    };
    Ok(Plan {
        run_id,
        run_at,
        segments: due.iter().map(|d| d.name.clone()).collect(),
        skipped,
        partitions: n,
        buckets: (0..n).collect(),
        concurrency: if config.concurrency == 0 { n } else { config.concurrency.min(n) },
        profiles,
        due: !due.is_empty(),
        report,
    })
}

fn humanize(d: chrono::Duration) -> String {
    match (d.num_days(), d.num_hours(), d.num_minutes()) {
        (days, h, _) if days > 0 && h % 24 == 0 => format!("{days} day(s)"),
        (_, h, m) if h > 0 && m % 60 == 0 => format!("{h} hour(s)"),
        (_, _, m) => format!("{m} minute(s)"),
    }
}

/// The definitions a plan names, in the plan's order; a name the library lacks (a plan
/// from another deployment of the library) is [`RunError::PlanMismatch`].
fn planned<'a>(definitions: &'a [SegmentDefinition], plan: &Plan) -> Result<Vec<&'a SegmentDefinition>, RunError> {
    plan.segments
        .iter()
        .map(|name| {
            definitions.iter().find(|d| &d.name == name).ok_or_else(|| RunError::PlanMismatch {
                run_id: plan.run_id.clone(),
                problem: format!("segment {name:?} is not in this function's library"),
            })
        })
        .collect()
}

fn check_bucket(plan: &Plan, k: usize) -> Result<(), RunError> {
    if k >= plan.partitions || plan.partitions == 0 {
        return Err(RunError::PlanMismatch {
            run_id: plan.run_id.clone(),
            problem: format!("bucket {k} is not one of the plan's {} buckets", plan.partitions),
        });
    }
    Ok(())
}

/// A DataFusion session of the run `run` over the lake bucket `bucket` (read through the
/// run's cache in front of the [`Ports::lake`] store) for one partition of a run, with the
/// tables every segment shares computed once: `profile_links` (the latest link of each
/// identifier set, a window over every link) is materialised in memory for the bucket
/// and the views over it are re-planned on the table, so no segment sorts the links again.
pub async fn run_session(run: &RunEnv, bucket: &str, scope: &RunScope) -> Result<SessionContext, DataFusionError> {
    let ctx = catalog::session_on(run.runtime.clone());
    catalog::register_lake(&ctx, bucket, run.lake.clone())?;
    catalog::register_run(&ctx, &catalog::lake_base(bucket), scope).await?;
    materialise(&ctx, "profile_links", scope.run_at).await?;
    Ok(ctx)
}

/// Replaces the view `name` of `ctx` by an in-memory table of its rows, and re-creates
/// the views defined after it (in [`catalog::VIEWS`] order) so that they read the table:
/// a view's plan holds the tables it was created over.
pub async fn materialise(ctx: &SessionContext, name: &str, run_at: DateTime<Utc>) -> Result<(), DataFusionError> {
    let df = ctx.table(name).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    ctx.deregister_table(name)?;
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    let views = catalog::rendered_views(run_at, Dialect::DataFusion);
    for (view, sql) in views.iter().skip_while(|(v, _)| *v != name).skip(1) {
        ctx.deregister_table(*view)?;
        ctx.sql(&format!("CREATE VIEW {view} AS {sql}")).await?;
    }
    Ok(())
}

/// The members of `def` in the catalog of `ctx` (a run at `run_at`).
pub async fn compute(ctx: &SessionContext, def: &SegmentDefinition, run_at: DateTime<Utc>) -> Result<Vec<SegmentMember>, RunError> {
    let sql =
        catalog::render(&def.sql, run_at, Dialect::DataFusion).map_err(|source| RunError::Render { segment: def.name.clone(), source })?;
    let query_err = |source| RunError::Query { segment: def.name.clone(), source };
    let batches = ctx.sql(&sql).await.map_err(query_err)?.collect().await.map_err(query_err)?;
    members_of(&def.name, &batches, &def.key, &def.payload)
}

/// Profile attributes of one bucket of a run: attribute name → profile → value.
#[derive(Debug, Default)]
pub struct Attributes {
    values: BTreeMap<String, BTreeMap<String, String>>,
}

impl Attributes {
    /// The members of the attribute segment whose attribute is `name`.
    fn add(&mut self, name: &str, members: &[SegmentMember]) {
        let map = self.values.entry(name.to_string()).or_default();
        for m in members {
            if let Some(v) = m.key.get(name).or_else(|| m.payload.get(name)) {
                map.insert(m.profile_id.clone(), v.clone());
            }
        }
    }

    /// The committed members of the attribute segment `def` in bucket `k` of `n`.
    async fn load_committed(
        &mut self,
        blobs: &dyn BlobStore,
        bucket: &str,
        def: &SegmentDefinition,
        k: usize,
        n: usize,
    ) -> Result<(), RunError> {
        let Some(name) = &def.attribute else { return Ok(()) };
        let Some(current) = current_pointer(blobs, bucket, &def.name).await? else { return Ok(()) };
        let members = previous_members(blobs, bucket, &current, k, n).await?;
        self.add(name, &members);
        Ok(())
    }

    /// The attributes of `profile_id`.
    pub fn of(&self, profile_id: &str) -> BTreeMap<String, String> {
        self.values.iter().filter_map(|(name, values)| values.get(profile_id).map(|v| (name.clone(), v.clone()))).collect()
    }
}

/// The members of bucket `k` of `n` in the committed run `current`: its part `k` when it
/// was bucketed the same way, else every part filtered to the bucket's profiles.
async fn previous_members(
    blobs: &dyn BlobStore,
    bucket: &str,
    current: &CurrentPointer,
    k: usize,
    n: usize,
) -> Result<Vec<SegmentMember>, RunError> {
    if current.partitions == n && current.parts.len() == n {
        return read_members(blobs, bucket, &current.parts[k]).await;
    }
    let mut out = Vec::new();
    for part in &current.parts {
        out.extend(read_members(blobs, bucket, part).await?.into_iter().filter(|m| lake::profile_bucket(&m.profile_id, n) == k));
    }
    Ok(out)
}

/// Bucket `k` of a run: every due segment of the plan over the bucket's profiles, in one
/// session; each segment's members are written, diffed with the same bucket of its
/// committed run, and the changes stored for [`publish_bucket`]. A bucket already computed
/// in this run (its marker exists) is not computed again.
pub async fn compute_bucket<B: BlobStore, Q: Queue, P: ProfileReader, M>(
    ports: &Ports<B, Q, P, M>,
    config: &SegmentsConfig,
    definitions: &[SegmentDefinition],
    plan: &Plan,
    k: usize,
    run: &RunEnv,
) -> Result<BucketDone, RunError> {
    check_bucket(plan, k)?;
    let (run_id, run_at, n) = (&plan.run_id, plan.run_at, plan.partitions);
    let bucket = &config.lake_bucket;
    let marker_key = bucket_marker_key(run_id, k, n);
    if let Some(done) = get_json::<BucketDone>(&ports.blobs, bucket, &marker_key).await? {
        if done.segments.iter().map(|s| &s.segment).eq(plan.segments.iter()) {
            return Ok(done);
        }
    }
    let due = planned(definitions, plan)?;
    let mut attributes = Attributes::default();
    for def in definitions.iter().filter(|d| d.attribute.is_some() && !plan.segments.contains(&d.name)) {
        attributes.load_committed(&ports.blobs, bucket, def, k, n).await?;
    }
    let scope = RunScope { run_at, snapshot_run_id: run_id.clone(), bucket: (n > 1).then_some(k) };
    let started = std::time::Instant::now();
    let ctx = run_session(run, bucket, &scope).await.map_err(RunError::Catalog)?;
    let shared_ms = started.elapsed().as_millis() as u64;
    let mut segments = Vec::with_capacity(due.len());
    for def in due {
        let started = std::time::Instant::now();
        let members = compute(&ctx, def, run_at).await?;
        let query_ms = started.elapsed().as_millis() as u64;
        let part = lake::segment_members_key(&def.name, run_id, k, n);
        put_parquet(&ports.blobs, bucket, &part, lake::members_schema(), lake::members_batch(&members)).await?;
        let previous = match current_pointer(&ports.blobs, bucket, &def.name).await? {
            Some(c) if c.run_id < *run_id => previous_members(&ports.blobs, bucket, &c, k, n).await?,
            _ => Vec::new(),
        };
        let (entered, exited) = diff(&previous, &members);
        let requests: Vec<ActivationRequest> = entered
            .iter()
            .map(|m| (m, SegmentChange::Entered))
            .chain(exited.iter().map(|m| (m, SegmentChange::Exited)))
            .map(|(m, change)| ActivationRequest {
                segment: def.name.clone(),
                run_id: run_id.clone(),
                run_at,
                profile_id: m.profile_id.clone(),
                change,
                key: m.key.clone(),
                payload: m.payload.clone(),
                attributes: attributes.of(&m.profile_id),
            })
            .collect();
        let changes = if requests.is_empty() {
            None
        } else {
            let key = changes_key(run_id, &def.name, k, n);
            put_parquet(&ports.blobs, bucket, &key, changes_schema(), changes_batch(&requests)).await?;
            Some(key)
        };
        tracing::info!(segment = %def.name, bucket = k, members = members.len(), entered = entered.len(), exited = exited.len(), query_ms, "segment bucket computed");
        segments.push(BucketSegment {
            segment: def.name.clone(),
            part,
            members: members.len(),
            entered: entered.len(),
            exited: exited.len(),
            query_ms,
            changes,
        });
        if let Some(name) = &def.attribute {
            attributes.add(name, &members);
        }
    }
    drop(ctx);
    let done = BucketDone { run_id: run_id.clone(), bucket: k, partitions: n, segments, shared_ms };
    put_json(&ports.blobs, bucket, &marker_key, "a bucket marker", &done).await?;
    Ok(done)
}

fn changes_batch(requests: &[ActivationRequest]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let ids = StringArray::from_iter_values(requests.iter().map(|r| r.profile_id.as_str()));
    let bodies: Vec<String> = requests
        .iter()
        .map(|r| serde_json::to_string(r).map_err(|e| arrow::error::ArrowError::ExternalError(Box::new(e))))
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(changes_schema(), vec![Arc::new(ids), Arc::new(StringArray::from(bodies))])
}

/// The activation requests (as sent: JSON) of a changes file.
async fn read_changes(blobs: &dyn BlobStore, bucket: &str, key: &str) -> Result<Vec<String>, RunError> {
    let bytes = blobs.get(bucket, key).await?.ok_or_else(|| RunError::MissingPart { key: key.to_string() })?;
    let batches = lake::read_parquet_bytes(bytes).map_err(RunError::parquet(key))?;
    let mut out = Vec::new();
    for batch in &batches {
        let col = batch
            .column_by_name("request")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| RunError::Result { segment: key.to_string(), problem: "a changes file without its request column".into() })?;
        out.extend((0..col.len()).filter(|&i| !col.is_null(i)).map(|i| col.value(i).to_string()));
    }
    Ok(out)
}

/// Bucket `k`'s changes: each changed person's memberships item ([`MembershipStore`],
/// what the profile API reads), then the activation queue (every segment of the plan).
/// Needs the bucket computed; a bucket already published in this run is not published
/// again. A publish that fails part-way is retried whole: the memberships items take the
/// same values again, and activation de-duplicates by idempotency key.
pub async fn publish_bucket<B: BlobStore, Q: Queue, P: ProfileReader, M: MembershipStore>(
    ports: &Ports<B, Q, P, M>,
    config: &SegmentsConfig,
    definitions: &[SegmentDefinition],
    plan: &Plan,
    k: usize,
) -> Result<BucketPublished, RunError> {
    check_bucket(plan, k)?;
    let (run_id, n, bucket) = (&plan.run_id, plan.partitions, &config.lake_bucket);
    let marker_key = published_marker_key(run_id, k, n);
    if let Some(done) = get_json::<BucketPublished>(&ports.blobs, bucket, &marker_key).await? {
        return Ok(done);
    }
    let computed = get_json::<BucketDone>(&ports.blobs, bucket, &bucket_marker_key(run_id, k, n))
        .await?
        .ok_or_else(|| RunError::BucketNotComputed { run_id: run_id.clone(), bucket: k, partitions: n })?;
    let mut batches = Vec::new();
    for segment in &computed.segments {
        if let Some(key) = &segment.changes {
            batches.push(read_changes(&ports.blobs, bucket, key).await?);
        }
    }
    let mut requests = Vec::new();
    for body in batches.iter().flatten() {
        requests.push(serde_json::from_str::<ActivationRequest>(body).map_err(RunError::decode("a stored activation request"))?);
    }
    let attribute_segments: BTreeMap<&str, &str> =
        definitions.iter().filter_map(|d| d.attribute.as_deref().map(|a| (d.name.as_str(), a))).collect();
    let written = write_memberships(&ports.memberships, &membership_changes(&requests, &attribute_segments)).await?;
    let mut sent = 0;
    for batch in &batches {
        ports.queue.send_all(&config.activation_queue_url, batch).await?;
        sent += batch.len();
    }
    tracing::info!(run_id = %run_id, bucket = k, sent, memberships_written = written, "bucket published");
    let done = BucketPublished { run_id: run_id.clone(), bucket: k, partitions: n, sent };
    put_json(&ports.blobs, bucket, &marker_key, "a publish marker", &done).await?;
    Ok(done)
}

/// Memberships items written at once.
const MEMBERSHIP_WRITES_IN_FLIGHT: usize = 32;

/// Applies `changes` (one per person), [`MEMBERSHIP_WRITES_IN_FLIGHT`] at a time; the
/// number applied (a person whose item a later run wrote is skipped).
async fn write_memberships<M: MembershipStore>(store: &M, changes: &[MembershipChange]) -> Result<usize, RunError> {
    use futures::stream::{self, StreamExt};
    // Indices, not references, as the stream's items: a stream of `&MembershipChange`
    // makes the caller's future not provably `Send` for every lifetime (the state
    // machine's runner spawns it).
    let mut writes = stream::iter(0..changes.len())
        .map(|i| async move { (i, store.apply(&changes[i]).await) })
        .buffer_unordered(MEMBERSHIP_WRITES_IN_FLIGHT);
    let mut applied = 0;
    while let Some((i, result)) = writes.next().await {
        if result.map_err(|source| RunError::Memberships { profile_id: changes[i].profile_id.clone(), source })? {
            applied += 1;
        }
    }
    Ok(applied)
}

/// What a run's activation requests change in each person's memberships item, one change
/// per person: an entered membership is set (since the run's instant, with its payload),
/// an exited one removed; the run's attributes of the person (`preferred_channel`) are
/// set from the requests, and from the members of the attribute segments
/// (`attribute_segments`: segment → attribute), whose exit without a new value removes
/// the attribute.
pub fn membership_changes(requests: &[ActivationRequest], attribute_segments: &BTreeMap<&str, &str>) -> Vec<MembershipChange> {
    let mut by_profile: BTreeMap<&str, MembershipChange> = BTreeMap::new();
    let mut entered_attributes: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for r in requests {
        let change = by_profile.entry(r.profile_id.as_str()).or_insert_with(|| MembershipChange {
            profile_id: r.profile_id.clone(),
            run_id: r.run_id.clone(),
            ..MembershipChange::default()
        });
        let name = memberships::entry_name(&r.segment, &r.key);
        let attribute = attribute_segments.get(r.segment.as_str()).copied();
        match r.change {
            SegmentChange::Entered => {
                change.set.insert(
                    name,
                    Membership {
                        segment: r.segment.clone(),
                        key: r.key.clone(),
                        since: r.run_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        run_id: r.run_id.clone(),
                        payload: r.payload.clone(),
                    },
                );
                if let Some(value) = attribute.and_then(|a| r.key.get(a).or_else(|| r.payload.get(a)).map(|v| (a, v))) {
                    entered_attributes.entry(r.profile_id.as_str()).or_default().insert(value.0.to_string(), value.1.clone());
                }
            }
            SegmentChange::Exited => {
                change.remove.insert(name);
                if let Some(a) = attribute {
                    change.attributes.entry(a.to_string()).or_insert(None);
                }
            }
        }
        for (a, v) in &r.attributes {
            change.attributes.insert(a.clone(), Some(v.clone()));
        }
    }
    for (pid, values) in entered_attributes {
        let change = by_profile.get_mut(pid).expect("a change per profile with requests");
        for (a, v) in values {
            change.attributes.insert(a, Some(v));
        }
    }
    by_profile
        .into_values()
        .map(|mut c| {
            // An entry exited with one key and entered again under the same name cannot
            // be both set and removed: the entry wins.
            let set = &c.set;
            c.remove.retain(|name| !set.contains_key(name));
            c
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// The last step: when every bucket of the plan is computed and published, each due
/// segment's `current.json` moves to this run (a segment already committed at this run
/// or a later one is left as it is), then the run's changes files are deleted. A missing
/// bucket fails the commit and leaves every pointer where it was.
pub async fn commit<B: BlobStore, Q: Queue, P: ProfileReader, M>(
    ports: &Ports<B, Q, P, M>,
    config: &SegmentsConfig,
    definitions: &[SegmentDefinition],
    plan: &Plan,
) -> Result<Vec<SegmentReport>, RunError> {
    let (run_id, n, bucket) = (&plan.run_id, plan.partitions, &config.lake_bucket);
    planned(definitions, plan)?;
    let mut buckets = Vec::with_capacity(n);
    for k in 0..n {
        let missing = || RunError::BucketNotComputed { run_id: run_id.clone(), bucket: k, partitions: n };
        let done = get_json::<BucketDone>(&ports.blobs, bucket, &bucket_marker_key(run_id, k, n)).await?.ok_or_else(missing)?;
        get_json::<BucketPublished>(&ports.blobs, bucket, &published_marker_key(run_id, k, n))
            .await?
            .ok_or_else(|| RunError::BucketNotPublished { run_id: run_id.clone(), bucket: k, partitions: n })?;
        buckets.push(done);
    }
    let mut reports = plan.skipped.clone();
    for name in &plan.segments {
        let rows: Vec<&BucketSegment> = buckets.iter().filter_map(|b| b.segments.iter().find(|s| &s.segment == name)).collect();
        if rows.len() != n {
            return Err(RunError::PlanMismatch {
                run_id: run_id.clone(),
                problem: format!("segment {name:?} is missing from a bucket marker"),
            });
        }
        let (members, entered, exited, query_ms) =
            rows.iter().fold((0, 0, 0, 0u64), |a, s| (a.0 + s.members, a.1 + s.entered, a.2 + s.exited, a.3 + s.query_ms));
        let mut report = SegmentReport {
            segment: name.clone(),
            run_id: run_id.clone(),
            members,
            entered,
            exited,
            skipped: false,
            reason: None,
            query_ms,
        };
        match current_pointer(&ports.blobs, bucket, name).await? {
            Some(c) if c.run_id >= *run_id => {
                report.skipped = true;
                report.reason = Some(format!("run {} already committed", c.run_id));
            }
            _ => {
                let pointer = CurrentPointer {
                    run_id: run_id.clone(),
                    run_at: plan.run_at,
                    parts: rows.iter().map(|s| s.part.clone()).collect(),
                    partitions: n,
                    members,
                };
                put_json(&ports.blobs, bucket, &lake::segment_current_key(name), "a segment pointer", &pointer).await?;
                ariane_shared::metrics::emit(
                    "segments",
                    &[
                        ("Members", members as f64),
                        ("Entered", entered as f64),
                        ("Exited", exited as f64),
                        ("QueryMilliseconds", query_ms as f64),
                    ],
                );
            }
        }
        tracing::info!(segment = %report.segment, members, entered, exited, query_ms, "segment run committed");
        reports.push(report);
    }
    let changes: Vec<String> = buckets.iter().flat_map(|b| b.segments.iter().filter_map(|s| s.changes.clone())).collect();
    if !changes.is_empty() {
        // Every version (the lake bucket is versioned, and a change names its profile),
        // the run's changes listed once.
        ports.blobs.delete_all_versions_of(bucket, &format!("{}changes/", run_prefix(run_id)), &changes).await?;
    }
    let order: BTreeMap<&str, usize> = definitions.iter().enumerate().map(|(i, d)| (d.name.as_str(), i)).collect();
    reports.sort_by_key(|r| order.get(r.segment.as_str()).copied().unwrap_or(usize::MAX));
    put_json(&ports.blobs, bucket, &committed_key(run_id), "the run's reports", &reports).await?;
    Ok(reports)
}

/// The reports of a committed run (`segments/_runs/<run>/committed.json`, written by
/// [`commit`]).
pub fn committed_key(run_id: &str) -> String {
    format!("{}committed.json", run_prefix(run_id))
}

/// What the run of `plan` did for each segment: the committed reports, or the plan's
/// skipped segments when none was due. A due plan that never committed is
/// [`RunError::NotCommitted`].
pub async fn run_reports(blobs: &dyn BlobStore, bucket: &str, plan: &Plan) -> Result<Vec<SegmentReport>, RunError> {
    if !plan.due {
        return Ok(plan.skipped.clone());
    }
    get_json(blobs, bucket, &committed_key(&plan.run_id)).await?.ok_or_else(|| RunError::NotCommitted { run_id: plan.run_id.clone() })
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
        match catalog::plan_schema(&ctx, &def.sql, Utc::now()).await {
            Err(problem) => errors.push(err(problem)),
            Ok(schema) => {
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
    fn attributes_are_the_attribute_segments_values() {
        let m = |id: &str, ch: &str| SegmentMember {
            profile_id: id.into(),
            key: [("preferred_channel".to_string(), ch.to_string())].into_iter().collect(),
            payload: BTreeMap::new(),
        };
        let mut a = Attributes::default();
        a.add("preferred_channel", &[m("p1", "email"), m("p2", "app")]);
        assert_eq!(a.of("p1").get("preferred_channel").map(String::as_str), Some("email"));
        assert_eq!(a.of("p2").get("preferred_channel").map(String::as_str), Some("app"));
        assert!(a.of("p3").is_empty());
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
