//! The SQL catalog segments run against (documented in `docs/segments.md`): lake tables on
//! S3 (through `object_store` with the AWS SDK's credential chain), in memory or on local disk, the
//! run's profile snapshot, and views every segment would otherwise rewrite. The same views
//! over empty tables of the same schemas validate segment files before deployment.
//!
//! Relative time is written `{{run_at}}`, `{{run_date}}` and `{{run_date-N}}` and replaced
//! by literals before planning ([`render`]), so a run is reproducible and filters on
//! `event_date` prune partitions.

use std::sync::Arc;

use ariane_shared::lake;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use chrono::{DateTime, Duration, Utc};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::{CredentialProvider, ObjectStore, ObjectStoreExt};

use crate::compact;
use crate::config::SegmentsConfig;
use crate::read_cache::ReadCache;

/// The SQL dialect a segment is rendered for: DataFusion runs segments; DuckDB is the
/// correctness oracle and the benchmark's reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    DataFusion,
    DuckDb,
}

/// Partition columns of the events table (from the key layout).
pub fn event_partition_cols() -> Vec<(String, DataType)> {
    vec![("channel".to_string(), DataType::Utf8), ("event_date".to_string(), DataType::Utf8)]
}

/// The views, in dependency order, over `raw_events`, `identity_links` and `profiles`.
///
/// `profile_links` keeps, for each identity key (a row's identifier set, the events'
/// `anchor_id`), its latest resolution, and only if that profile is in the run's snapshot:
/// a later merge re-points it to the surviving profile, an erasure to '' (matching no
/// profile, so the person's events leave every segment).
pub const VIEWS: &[(&str, &str)] = &[
    (
        "profile_links",
        "SELECT l.identifier_hash, l.profile_id FROM (
            SELECT identifier_hash, profile_id,
                   ROW_NUMBER() OVER (PARTITION BY identifier_hash ORDER BY resolved_at DESC, profile_id DESC) AS rn
            FROM identity_links) AS l
         JOIN profiles p ON p.profile_id = l.profile_id
         WHERE l.rn = 1",
    ),
    (
        "events",
        "SELECT l.profile_id, e.* FROM raw_events e
         JOIN profile_links l ON e.anchor_id = l.identifier_hash
         WHERE e.occurred_at <= {{run_at}} AND e.event_date <= {{run_date}}",
    ),
    (
        "order_lines",
        "SELECT DISTINCT event_id, profile_id, channel, order_id, occurred_at AS ordered_at, sku, category,
                quantity, unit_price_minor, line_total_minor
         FROM events WHERE event_type IN ('order_line', 'store_purchase')",
    ),
    (
        "orders",
        "SELECT profile_id, channel, order_id, MIN(ordered_at) AS ordered_at,
                SUM(line_total_minor) AS amount_minor, COUNT(*) AS lines
         FROM order_lines WHERE order_id IS NOT NULL
         GROUP BY profile_id, channel, order_id
         UNION ALL
         SELECT profile_id, channel, order_id, MIN(occurred_at) AS ordered_at,
                MAX(order_total_minor) AS amount_minor, CAST(0 AS BIGINT) AS lines
         FROM events WHERE event_type = 'in_app_purchase' AND order_id IS NOT NULL
         GROUP BY profile_id, channel, order_id",
    ),
    (
        "carts",
        "SELECT DISTINCT event_id, profile_id, channel, event_type, occurred_at AS at, sku, category, quantity,
                order_id AS checkout_id, event_date
         FROM events WHERE event_type IN ('cart_add', 'add_to_cart', 'checkout_started')",
    ),
];

/// A run parameter that cannot be replaced.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("unclosed parameter {start:?}")]
    Unclosed { start: String },
    #[error("unknown parameter {{{{{name}}}}} (expected {{{{run_at}}}}, {{{{run_date}}}} or {{{{run_date-N}}}})")]
    Unknown { name: String },
}

/// Replaces the run parameters of `sql` by literals of `dialect`: `{{run_at}}`,
/// `{{run_date}}`, `{{run_date-N}}`. An unknown or malformed parameter is an error
/// naming it.
pub fn render(sql: &str, run_at: DateTime<Utc>, dialect: Dialect) -> std::result::Result<String, RenderError> {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| RenderError::Unclosed { start: rest[start..].chars().take(24).collect() })?;
        let name: String = after[..end].chars().filter(|c| !c.is_whitespace()).collect();
        out.push_str(&parameter(&name, run_at, dialect)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parameter(name: &str, run_at: DateTime<Utc>, dialect: Dialect) -> std::result::Result<String, RenderError> {
    let date = |days: i64| format!("'{}'", (run_at - Duration::days(days)).format("%Y-%m-%d"));
    match name {
        "run_at" => Ok(match dialect {
            Dialect::DataFusion => {
                format!("arrow_cast('{}', 'Timestamp(Microsecond, Some(\"UTC\"))')", run_at.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
            }
            Dialect::DuckDb => format!("TIMESTAMPTZ '{}'", run_at.format("%Y-%m-%d %H:%M:%S%.6f+00")),
        }),
        "run_date" => Ok(date(0)),
        other => match other.strip_prefix("run_date-").map(str::parse::<u32>) {
            Some(Ok(days)) => Ok(date(days as i64)),
            _ => Err(RenderError::Unknown { name: other.to_string() }),
        },
    }
}

/// The views of [`VIEWS`] rendered for a run.
pub fn rendered_views(run_at: DateTime<Utc>, dialect: Dialect) -> Vec<(&'static str, String)> {
    VIEWS.iter().map(|(name, sql)| (*name, render(sql, run_at, dialect).expect("the built-in views render"))).collect()
}

async fn register_views(ctx: &SessionContext, run_at: DateTime<Utc>) -> Result<()> {
    for (name, sql) in rendered_views(run_at, Dialect::DataFusion) {
        ctx.sql(&format!("CREATE VIEW {name} AS {sql}")).await?;
    }
    Ok(())
}

/// Parquet footers (and page indexes) kept for the run, in MB: one read of each file's
/// metadata serves every segment and partition of the run instead of one per query.
pub const METADATA_CACHE_MB: usize = 256;
/// File listings kept for the run, in MB (about 200 bytes a file).
pub const LIST_CACHE_MB: usize = 32;

/// The runtime of one run: a bounded memory pool that spills to `scratch_dir`, and caches
/// of file listings and Parquet metadata shared by every session of the run. A runtime
/// lives for one run only: its listings never expire, which is what makes a run see one
/// consistent lake, and a later run must not see them.
pub fn runtime(memory_limit_mb: usize, scratch_dir: &std::path::Path) -> Result<Arc<RuntimeEnv>> {
    let caches = CacheManagerConfig::default()
        .with_list_files_cache_limit(LIST_CACHE_MB * 1024 * 1024)
        .with_list_files_cache_ttl(None)
        .with_metadata_cache_limit(METADATA_CACHE_MB * 1024 * 1024);
    RuntimeEnvBuilder::new()
        .with_memory_limit(memory_limit_mb * 1024 * 1024, 1.0)
        .with_temp_file_path(scratch_dir)
        .with_cache_manager(caches)
        .build_arc()
}

/// What every query of one run shares: its runtime (see [`runtime`]) and the lake read
/// through the run's cache of small objects ([`ReadCache`]).
#[derive(Clone, Debug)]
pub struct RunEnv {
    pub runtime: Arc<RuntimeEnv>,
    pub lake: Arc<ReadCache>,
}

impl RunEnv {
    /// A new run over `lake` with `config`'s memory pool, scratch directory and lake cache.
    pub fn new(config: &SegmentsConfig, lake: Arc<dyn ObjectStore>) -> Result<Self> {
        Ok(RunEnv {
            runtime: runtime(config.memory_limit_mb, &config.scratch_dir)?,
            lake: Arc::new(ReadCache::new(lake, config.lake_cache_mb as u64 * 1024 * 1024)),
        })
    }
}

/// A session on `runtime` (see [`runtime`]).
pub fn session_on(runtime: Arc<RuntimeEnv>) -> SessionContext {
    let config = SessionConfig::new().with_information_schema(true);
    SessionContext::new_with_config_rt(config, runtime)
}

/// A session with a runtime of its own (a bounded memory pool that spills to `scratch_dir`).
pub fn session(memory_limit_mb: usize, scratch_dir: &std::path::Path) -> Result<SessionContext> {
    Ok(session_on(runtime(memory_limit_mb, scratch_dir)?))
}

/// Object-store credentials from the AWS SDK's credential chain (environment, Lambda's
/// role, profiles, SSO...), refreshed by the SDK when they expire.
#[derive(Debug)]
struct SdkCredentials(aws_credential_types::provider::SharedCredentialsProvider);

#[async_trait::async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let c = self.0.provide_credentials().await.map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
        Ok(Arc::new(AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        }))
    }
}

/// The lake bucket as an S3 object store with the SDK's endpoint, region and credential
/// chain: what DataFusion reads the lake through in production.
pub fn s3_store(sdk: &SdkConfig, bucket: &str) -> object_store::Result<Arc<dyn ObjectStore>> {
    let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
    if let Some(region) = sdk.region() {
        builder = builder.with_region(region.as_ref());
    }
    if let Some(endpoint) = sdk.endpoint_url() {
        builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://")).with_virtual_hosted_style_request(false);
    }
    if let Some(provider) = sdk.credentials_provider() {
        builder = builder.with_credentials(Arc::new(SdkCredentials(provider)));
    }
    Ok(Arc::new(builder.build()?))
}

/// The URL a lake bucket is registered under (`s3://<bucket>`), whatever store serves it.
pub fn lake_base(bucket: &str) -> String {
    format!("s3://{bucket}")
}

/// Registers `store` as the lake bucket `s3://<bucket>` of `ctx`: the S3 store of
/// [`s3_store`] in production, the in-memory store of the blob adapter in tests.
pub fn register_lake(ctx: &SessionContext, bucket: &str, store: Arc<dyn ObjectStore>) -> Result<()> {
    let url = url::Url::parse(&lake_base(bucket)).map_err(|e| DataFusionError::External(Box::new(e)))?;
    ctx.register_object_store(&url, store);
    Ok(())
}

fn listing_table(url: &str, schema: SchemaRef, partitions: Vec<(String, DataType)>) -> Result<Arc<ListingTable>> {
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet").with_table_partition_cols(partitions);
    let config = ListingTableConfig::new(ListingTableUrl::parse(url)?).with_listing_options(options).with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// What one run (or one partition of it) reads.
#[derive(Clone, Debug)]
pub struct RunScope {
    pub run_at: DateTime<Utc>,
    /// The run whose profile snapshot is the `profiles` table.
    pub snapshot_run_id: String,
    /// Restrict to one profile partition (`bucket=<k>` of the snapshot), or read them all.
    pub bucket: Option<usize>,
}

/// Registers the lake tables under `base` (`s3://bucket` or `file:///abs/dir`), the run's
/// profile snapshot and the views. Only `profiles` depends on the partition: every other
/// table joins it, so a partition computes the segments of its profiles only.
///
/// Without a compaction manifest (`events_by_profile/_current.json`, see
/// [`crate::compact`]) `raw_events` and `identity_links` list `events/` and
/// `identity/links/`. With one, a partition reads the compacted generation's buckets it
/// needs and the *tail* (the source files the manifest does not cover), see
/// [`register_compacted`].
pub async fn register_run(ctx: &SessionContext, base: &str, scope: &RunScope) -> Result<()> {
    let base = base.trim_end_matches('/');
    let (store, root) = compact::base_store(ctx, base)?;
    if let Some(manifest) = compact::manifest_in(store.as_ref(), &root).await? {
        return register_compacted(ctx, base, scope, &manifest, store, &root).await;
    }
    let events = listing_table(&format!("{base}/{}", lake::events_prefix()), lake::events_schema(), event_partition_cols())?;
    ctx.register_table("raw_events", events)?;
    let links = listing_table(
        &format!("{base}/{}", lake::links_prefix()),
        lake::links_schema(),
        vec![("resolved_date".to_string(), DataType::Utf8)],
    )?;
    ctx.register_table("identity_links", links)?;
    register_profiles(ctx, base, scope)?;
    register_views(ctx, scope.run_at).await
}

fn register_profiles(ctx: &SessionContext, base: &str, scope: &RunScope) -> Result<()> {
    let snapshot = format!("{base}/{}", lake::profiles_snapshot_prefix(&scope.snapshot_run_id));
    let profiles = match scope.bucket {
        Some(k) => listing_table(&format!("{snapshot}bucket={k}/"), lake::profiles_schema(), vec![])?,
        None => listing_table(&snapshot, lake::profiles_schema(), vec![("bucket".to_string(), DataType::Utf8)])?,
    };
    ctx.register_table("profiles", profiles)?;
    Ok(())
}

/// `profile_links` over a compacted lake: the compacted latest links of the partition's
/// bucket(s) whose identifier no tail link names, and, for the identifiers the tail names,
/// the latest of their tail links and their compacted latest link (whatever its bucket: a
/// tail link older than the compacted one loses to it, a merge moves an identifier across
/// buckets, an erasure re-points it to '').
pub const COMPACTED_PROFILE_LINKS: &str = "WITH touched AS (SELECT DISTINCT identifier_hash FROM lake_tail_links),
candidates AS (
    SELECT identifier_hash, profile_id, resolved_at FROM lake_tail_links
    UNION ALL
    SELECT c.identifier_hash, c.profile_id, c.resolved_at
    FROM lake_compacted_links_all c JOIN touched t ON c.identifier_hash = t.identifier_hash
),
latest_touched AS (
    SELECT identifier_hash, profile_id FROM (
        SELECT identifier_hash, profile_id,
               ROW_NUMBER() OVER (PARTITION BY identifier_hash ORDER BY resolved_at DESC, profile_id DESC) AS rn
        FROM candidates) AS l
    WHERE l.rn = 1
),
untouched AS (
    SELECT c.identifier_hash, c.profile_id FROM lake_compacted_links c
    WHERE NOT EXISTS (SELECT 1 FROM touched t WHERE t.identifier_hash = c.identifier_hash)
)
SELECT l.identifier_hash, l.profile_id
FROM (SELECT identifier_hash, profile_id FROM untouched UNION ALL SELECT identifier_hash, profile_id FROM latest_touched) AS l
JOIN profiles p ON p.profile_id = l.profile_id";

const COMPACTED_EVENT_COLUMNS: &str = "event_id, event_type, occurred_at, anchor_id, email_hash, phone_hash, order_id, sku, \
     product_name, category, quantity, unit_price_minor, line_total_minor, order_total_minor, currency, store_id, campaign_id, \
     page_url, consent_channel, source_key, source_line, local_time, channel, event_date";
const COMPACTED_LINK_COLUMNS: &str = "identifier_hash, profile_id, resolved_at, observation_id, resolved_date";

/// The profile partition count of a run's snapshot (its marker), if readable.
async fn snapshot_partitions(store: &dyn object_store::ObjectStore, root: &str, run_id: &str) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct Marker {
        partitions: usize,
    }
    let key = object_store::path::Path::from(format!("{root}{}", crate::snapshot::marker_key(run_id)).as_str());
    let bytes = store.get(&key).await.ok()?.bytes().await.ok()?;
    serde_json::from_slice::<Marker>(&bytes).ok().map(|m| m.partitions)
}

/// The tables of a run over a compacted lake (`manifest`), read through a
/// [`compact::LakeView`] (only the files the manifest names, none of the source keys it
/// covers):
///
/// - `raw_events` = the compacted events of the partition's bucket, of `unlinked`, and of
///   every bucket a tail link moves an identifier from into this one, plus the tail's
///   event files; every bucket when the run is not partitioned or is partitioned
///   differently from the compaction;
/// - `identity_links` = the compacted history of links plus the tail's link files;
/// - `profile_links` = [`COMPACTED_PROFILE_LINKS`]; the other views as [`VIEWS`].
pub async fn register_compacted(
    ctx: &SessionContext,
    base: &str,
    scope: &RunScope,
    manifest: &compact::Manifest,
    store: Arc<dyn ObjectStore>,
    root: &str,
) -> Result<()> {
    let g = manifest.generation.as_str();
    let tag = format!("g-{g}");
    let view_base = compact::register_view(ctx, base, &tag, compact::LakeView::reader(store.clone(), root, manifest))?;
    ctx.register_udf(compact::ProfileBucket::udf(manifest.buckets));
    let links_schema = lake::compacted_links_schema();
    let all_labels: Vec<String> =
        manifest.events.keys().chain(manifest.links.keys()).cloned().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    // The tail: source files the manifest does not cover (listings cached per generation).
    let tail_tag = format!("lake_tail_{}", g.replace('-', "_"));
    ctx.register_table(
        "lake_tail_events",
        compact::listing_paths(
            &[format!("{view_base}/{}", lake::events_prefix())],
            lake::events_schema(),
            event_partition_cols(),
            Some(&format!("{tail_tag}_events")),
        )?,
    )?;
    ctx.register_table(
        "lake_tail_links",
        compact::listing_paths(
            &[format!("{view_base}/{}", lake::links_prefix())],
            lake::links_schema(),
            vec![("resolved_date".to_string(), DataType::Utf8)],
            Some(&format!("{tail_tag}_links")),
        )?,
    )?;
    let links_folder = |label: &str| format!("{view_base}/{}bucket={label}/", lake::compacted_links_prefix(g));
    let events_folder = |label: &str| format!("{view_base}/{}", lake::compacted_events_prefix(g, label));
    ctx.register_table(
        "lake_compacted_links_all",
        compact::listing_paths(
            &[format!("{view_base}/{}", lake::compacted_links_prefix(g))],
            links_schema.clone(),
            vec![("bucket".to_string(), DataType::Utf8)],
            None,
        )?,
    )?;
    ctx.register_table(
        "lake_link_history",
        compact::listing_paths(&[format!("{view_base}/{}", lake::compacted_history_prefix(g))], links_schema.clone(), vec![], None)?,
    )?;

    // The buckets this partition reads.
    let partitions = match scope.bucket {
        Some(_) => snapshot_partitions(store.as_ref(), root, &scope.snapshot_run_id).await,
        None => None,
    };
    let (link_labels, event_labels): (Vec<String>, Vec<String>) = match (scope.bucket, partitions) {
        (Some(k), Some(n)) if n == manifest.buckets => {
            let own = k.to_string();
            let moved = moved_from(ctx, &own).await?;
            let mut events: std::collections::BTreeSet<String> = moved.into_iter().collect();
            events.insert(own.clone());
            events.insert(lake::UNLINKED_BUCKET.to_string());
            (vec![own], events.into_iter().collect())
        }
        _ => (all_labels.clone(), all_labels.clone()),
    };
    let links: Vec<String> = link_labels.iter().map(|l| links_folder(l)).collect();
    let events: Vec<String> = event_labels.iter().map(|l| events_folder(l)).collect();
    ctx.register_table("lake_compacted_links", compact::listing_paths(&links, links_schema.clone(), vec![], None)?)?;
    ctx.register_table("lake_compacted_events", compact::listing_paths(&events, lake::compacted_events_schema(), vec![], None)?)?;

    let c = COMPACTED_EVENT_COLUMNS;
    ctx.sql(&format!("CREATE VIEW raw_events AS SELECT {c} FROM lake_compacted_events UNION ALL SELECT {c} FROM lake_tail_events")).await?;
    let l = COMPACTED_LINK_COLUMNS;
    ctx.sql(&format!("CREATE VIEW identity_links AS SELECT {l} FROM lake_link_history UNION ALL SELECT {l} FROM lake_tail_links")).await?;
    register_profiles(ctx, base, scope)?;
    ctx.sql(&format!("CREATE VIEW profile_links AS {COMPACTED_PROFILE_LINKS}")).await?;
    for (name, sql) in rendered_views(scope.run_at, Dialect::DataFusion) {
        if name != "profile_links" {
            ctx.sql(&format!("CREATE VIEW {name} AS {sql}")).await?;
        }
    }
    Ok(())
}

/// The compacted buckets (other than `own`) holding the latest link of an identifier a
/// tail link points to a profile of bucket `own`: their events may now be `own`'s.
async fn moved_from(ctx: &SessionContext, own: &str) -> Result<Vec<String>> {
    let sql = format!(
        "SELECT DISTINCT c.bucket FROM lake_compacted_links_all c
         JOIN (SELECT DISTINCT identifier_hash FROM lake_tail_links WHERE {udf}(profile_id) = '{own}') t
           ON c.identifier_hash = t.identifier_hash
         WHERE c.bucket <> '{own}'",
        udf = compact::BUCKET_UDF
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut out = Vec::new();
    for b in &batches {
        let col = arrow::compute::cast(b.column(0), &DataType::Utf8)?;
        if let Some(values) = col.as_any().downcast_ref::<arrow::array::StringArray>() {
            out.extend(values.iter().flatten().map(str::to_string));
        }
    }
    Ok(out)
}

/// Registers the activation records (`activations/decided_date=<d>/`) as `activations`,
/// for the campaign report and the measures (campaign sends are touchpoints).
pub fn register_activations(ctx: &SessionContext, base: &str) -> Result<()> {
    let base = base.trim_end_matches('/');
    let table = listing_table(
        &format!("{base}/{}", lake::activations_prefix()),
        lake::activations_schema(),
        vec![("decided_date".to_string(), DataType::Utf8)],
    )?;
    ctx.register_table("activations", table)?;
    Ok(())
}

/// An empty `activations` table of the records' schema (validating SQL that reads it).
pub fn register_empty_activations(ctx: &SessionContext) -> Result<()> {
    let schema = with_partition_cols(lake::activations_schema(), vec![("decided_date".into(), DataType::Utf8)]);
    ctx.register_table("activations", Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
    Ok(())
}

/// `file://` URL of a local lake directory (tests, benchmarks, the DuckDB comparison).
pub fn local_base(dir: &std::path::Path) -> Result<String> {
    let abs = std::path::absolute(dir).map_err(|e| DataFusionError::External(Box::new(e)))?;
    Ok(format!("file://{}", abs.display()))
}

fn with_partition_cols(schema: SchemaRef, cols: Vec<(String, DataType)>) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.extend(cols.into_iter().map(|(n, t)| Field::new(n, t, false)));
    Arc::new(Schema::new(fields))
}

/// A definition's query (segment or measure) rendered at `run_at` and planned in `ctx` (a
/// [`validation_session`]): the result's schema, or the problem (a bad run parameter,
/// DataFusion's message for a syntax error or an unknown table or column).
pub async fn plan_schema(
    ctx: &SessionContext,
    sql: &str,
    run_at: DateTime<Utc>,
) -> std::result::Result<datafusion::common::DFSchemaRef, String> {
    let sql = render(sql, run_at, Dialect::DataFusion).map_err(|e| e.to_string())?;
    let plan = ctx.sql(&sql).await.and_then(|df| df.into_optimized_plan()).map_err(|e| e.to_string())?;
    Ok(plan.schema().clone())
}

/// The same catalog over empty in-memory tables: for validating segment SQL offline.
pub async fn validation_session(run_at: DateTime<Utc>) -> Result<SessionContext> {
    let ctx = SessionContext::new();
    let empty = |schema: SchemaRef| -> Result<Arc<MemTable>> { Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?)) };
    ctx.register_table("raw_events", empty(with_partition_cols(lake::events_schema(), event_partition_cols()))?)?;
    ctx.register_table(
        "identity_links",
        empty(with_partition_cols(lake::links_schema(), vec![("resolved_date".into(), DataType::Utf8)]))?,
    )?;
    ctx.register_table("profiles", empty(with_partition_cols(lake::profiles_schema(), vec![("bucket".into(), DataType::Utf8)]))?)?;
    register_views(&ctx, run_at).await?;
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T06:30:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parameters_render_per_dialect() {
        let sql = "x > {{run_at}} - INTERVAL '2 days' AND event_date >= {{ run_date-2 }} AND d = {{run_date}}";
        let df = render(sql, at(), Dialect::DataFusion).unwrap();
        assert!(df.contains("arrow_cast('2026-11-23T06:30:00.000000Z'"), "{df}");
        assert!(df.contains("event_date >= '2026-11-21' AND d = '2026-11-23'"), "{df}");
        let duck = render(sql, at(), Dialect::DuckDb).unwrap();
        assert!(duck.contains("TIMESTAMPTZ '2026-11-23 06:30:00.000000+00'"), "{duck}");
        let unknown = render("{{run_time}}", at(), Dialect::DataFusion).unwrap_err();
        assert_eq!(unknown, RenderError::Unknown { name: "run_time".into() });
        assert!(unknown.to_string().contains("{{run_time}}") && unknown.to_string().contains("{{run_date-N}}"), "{unknown}");
        assert!(render("{{run_date-x}}", at(), Dialect::DataFusion).is_err());
        assert!(render("{{run_at", at(), Dialect::DataFusion).unwrap_err().to_string().contains("unclosed"));
    }

    #[tokio::test]
    async fn views_plan_over_empty_tables() {
        let ctx = validation_session(at()).await.unwrap();
        for (name, _) in VIEWS {
            let df = ctx.sql(&format!("SELECT * FROM {name}")).await.unwrap();
            assert_eq!(df.collect().await.unwrap().iter().map(|b| b.num_rows()).sum::<usize>(), 0, "{name}");
        }
    }
}
