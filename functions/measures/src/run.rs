//! The daily measures run ([`run_measures`]), a plain async function over its [`Ports`]:
//!
//! 1. the run's profile snapshot (`segments/_runs/measures-<YYYYMMDD>/profiles/`, the
//!    segments' snapshot code, one partition), reused when the same day runs again;
//! 2. one DataFusion session over the lake with the segments' catalog (`events`,
//!    `profiles`, `orders`, ...); each measure of `measures/` runs in it and its result
//!    is written to `measures/<name>/date=<run date>/part-0.parquet`;
//! 3. the previous period's headline figures ([`crate::period`]): `conversions` and
//!    `cross-channel` again, in a second session whose lake ends at `run_at -
//!    PERIOD_DAYS` (not written: the summary's `previous` holds them, the KPI cards show
//!    the change), once the first session is dropped and before attribution, so their
//!    memory never adds up;
//! 4. attribution (Rust, [`crate::attribution::attribute`]) over the `touchpoints` and
//!    `conversions` results, written in long form to `measures/attribution-by-channel/`,
//!    `measures/attribution-by-campaign/` and the most common paths to `measures/top-paths/`
//!    (same `date=<run date>/part-0.parquet` layout);
//! 5. spend and return ([`crate::spend::returns`] of the `spend` measure against the
//!    attribution) to `measures/spend-return/`;
//! 6. the HTML report ([`crate::report::render`] of [`crate::daily::report_data`]) at
//!    [`crate::report::lake_key`] of the run date.
//!
//! Every key depends on the run date only, so re-running a day overwrites the same
//! objects (idempotent).

use std::collections::BTreeMap;
use std::sync::Arc;

use ariane_segments::catalog::{self, Dialect, RunEnv, RunScope};
use ariane_segments::read_cache::ReadCache;
use ariane_segments::snapshot;
use ariane_shared::lake;
use ariane_shared::ports::{BlobStore, ProfileReader};
use arrow::array::{ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

use crate::attribution::{self, Attribution, Conversion, LongCreditRow, Touchpoint};
use crate::config::{MeasuresConfig, PERIOD_DAYS};
use crate::definition::MeasureDefinition;
use crate::error::MeasuresError;
use crate::period::Headline;
use crate::spend::ReturnRow;
use crate::table::Table;

const PARQUET: &str = "application/vnd.apache.parquet";
const HTML: &str = "text/html; charset=utf-8";

/// The I/O of a measures run.
#[derive(Clone, Debug)]
pub struct Ports<B, P> {
    /// The lake bucket: the profile snapshot, the measures' Parquet files, the report.
    pub blobs: B,
    /// The profiles table (the run's profile snapshot).
    pub profiles: P,
    /// The lake bucket as DataFusion reads it (registered as `s3://<lake bucket>`).
    pub lake: Arc<dyn ObjectStore>,
}

impl<B: BlobStore, P> Ports<B, P> {
    /// Ports whose lake DataFusion reads through the blob store itself (the in-memory
    /// adapter); `None` for a blob store without an object store (S3: wire its own).
    pub fn reading_blobs(blobs: B, profiles: P, lake_bucket: &str) -> Option<Self> {
        let lake = blobs.object_store(lake_bucket)?;
        Some(Ports { blobs, profiles, lake })
    }
}

/// One measure written by a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasureOutput {
    pub measure: String,
    pub key: String,
    pub rows: usize,
}

/// What a run did: printed by the CLI and returned by the Lambda.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_at: DateTime<Utc>,
    pub run_date: NaiveDate,
    /// Profiles in the run's snapshot.
    pub profiles: usize,
    /// Every table written, the SQL measures first, then attribution and paths.
    pub measures: Vec<MeasureOutput>,
    /// Orders of the period (each model shares out exactly this many).
    pub conversions: usize,
    pub conversions_without_touchpoint: usize,
    pub revenue_minor: i64,
    pub touchpoints: usize,
    /// Spend of the period, every channel (minor units; 0 without spend files).
    #[serde(default)]
    pub spend_minor: i64,
    /// The previous period's headline figures (what the KPI cards' changes compare with);
    /// `None` when it was not measured.
    #[serde(default)]
    pub previous: Option<Headline>,
    /// Where the HTML report is.
    pub report_key: String,
}

impl RunSummary {
    /// Rows written for `measure`, if it was.
    pub fn rows(&self, measure: &str) -> Option<usize> {
        self.measures.iter().find(|m| m.measure == measure).map(|m| m.rows)
    }
}

/// Where a run of `date` writes `measure`.
pub fn measure_key(measure: &str, date: NaiveDate) -> String {
    format!("measures/{measure}/date={date}/part-0.parquet")
}

/// The run id of a day's profile snapshot (distinct from every segments run id).
pub fn snapshot_run_id(date: NaiveDate) -> String {
    format!("measures-{}", date.format("%Y%m%d"))
}

/// The results of one run, in memory: what the report is built from.
#[derive(Clone, Debug)]
pub struct Results {
    pub run_at: DateTime<Utc>,
    pub tables: BTreeMap<String, Table>,
    pub attribution: Attribution,
    pub touchpoints: usize,
    /// Spend and return per channel and campaign under each model.
    pub spend_return: Vec<ReturnRow>,
    /// The previous period's headline figures; `None` when it was not measured.
    pub previous: Option<Headline>,
}

impl Results {
    /// The rows of `measure` (empty when the library has no such measure).
    pub fn table(&self, measure: &str) -> Table {
        self.tables.get(measure).cloned().unwrap_or_else(|| Table { measure: measure.to_string(), batches: vec![] })
    }
}

async fn put_batches<B: BlobStore>(
    blobs: &B,
    bucket: &str,
    key: &str,
    schema: SchemaRef,
    batches: &[RecordBatch],
) -> Result<(), MeasuresError> {
    let bytes = lake::parquet_bytes(schema, batches).map_err(|e| MeasuresError::Encode { key: key.to_string(), source: Box::new(e) })?;
    blobs.put(bucket, key, Bytes::from(bytes), PARQUET).await?;
    Ok(())
}

/// The measures the run queries a second time for the previous period.
pub const PREVIOUS_PERIOD_MEASURES: [&str; 2] = ["conversions", "cross-channel"];

/// The catalog's views a measures session computes once, into memory, before any measure
/// runs: `orders` (every order of all history: `conversions`, `channel-kpis` and
/// `cross-channel` read it) is the costliest view of the run, a deduplication and a join of
/// every order line ever, and DataFusion would compute it again for each reference. Held
/// in memory it is small (about 100 bytes per order: 150 MB for 1.5M orders), and each
/// measure's peak is lower for not computing it beside its own work (BENCHMARKS.md, "Issue
/// 18"). The DuckDB cross-check materialises the same views (`scripts/duckdb_measures.py`).
pub const MATERIALISED_VIEWS: [&str; 1] = ["orders"];

/// The segments' run session (`events`, `profiles`, `orders`, ...) with
/// [`MATERIALISED_VIEWS`] computed once, plus Ariane's own campaign sends (`activations`:
/// the `touchpoints` measure counts them).
pub async fn session(env: &RunEnv, bucket: &str, scope: &RunScope) -> Result<SessionContext, MeasuresError> {
    let ctx = ariane_segments::run::run_session(env, bucket, scope).await.map_err(MeasuresError::Catalog)?;
    for view in MATERIALISED_VIEWS {
        ariane_segments::run::materialise(&ctx, view, scope.run_at).await.map_err(MeasuresError::Catalog)?;
    }
    catalog::register_activations(&ctx, &catalog::lake_base(bucket)).map_err(MeasuresError::Catalog)?;
    Ok(ctx)
}

/// One measure's result in `ctx`, rendered at `run_at`.
async fn query(ctx: &SessionContext, def: &MeasureDefinition, run_at: DateTime<Utc>) -> Result<(SchemaRef, Table), MeasuresError> {
    let measure = def.name.clone();
    let sql = catalog::render(&def.sql, run_at, Dialect::DataFusion)
        .map_err(|source| MeasuresError::Render { measure: measure.clone(), source })?;
    let query = |source| MeasuresError::Query { measure: measure.clone(), source };
    let df = ctx.sql(&sql).await.map_err(query)?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(query)?;
    Ok((schema, Table { measure, batches }))
}

/// Runs the measures of `definitions` at `run_at` (see the module documentation).
pub async fn run_measures<B: BlobStore, P: ProfileReader>(
    ports: &Ports<B, P>,
    config: &MeasuresConfig,
    definitions: &[MeasureDefinition],
    run_at: DateTime<Utc>,
) -> Result<RunSummary, MeasuresError> {
    let bucket = config.lake_bucket.as_str();
    let date = run_at.date_naive();
    let run_id = snapshot_run_id(date);
    let profiles = snapshot::ensure_snapshot(&ports.blobs, &ports.profiles, bucket, &run_id, 1).await.map_err(MeasuresError::Snapshot)?;

    let env = RunEnv {
        runtime: catalog::runtime(config.memory_limit_mb, &config.scratch_dir).map_err(MeasuresError::Catalog)?,
        lake: Arc::new(ReadCache::new(ports.lake.clone(), config.lake_cache_mb as u64 * 1024 * 1024)),
    };
    let scope = RunScope { run_at, snapshot_run_id: run_id, bucket: None };
    let ctx = session(&env, bucket, &scope).await?;

    let mut outputs = Vec::new();
    let mut tables = BTreeMap::new();
    for def in definitions {
        let (schema, table) = query(&ctx, def, run_at).await?;
        let key = measure_key(&def.name, date);
        put_batches(&ports.blobs, bucket, &key, schema, &table.batches).await?;
        outputs.push(MeasureOutput { measure: def.name.clone(), key, rows: table.rows() });
        tables.insert(def.name.clone(), table);
    }
    drop(ctx);
    // The previous period's session before attribution, so the two never hold memory at
    // the same time (the run's peak is the larger of them, not their sum).
    let previous = previous_period(&env, bucket, &scope, definitions).await?;

    let empty = |m: &str| Table { measure: m.to_string(), batches: vec![] };
    let touchpoints = touchpoints(tables.get("touchpoints").unwrap_or(&empty("touchpoints")))?;
    let conversions = conversions(tables.get("conversions").unwrap_or(&empty("conversions")))?;
    let attribution = attribution::attribute(&touchpoints, &conversions, &config.attribution)?;

    for (measure, rows) in
        [("attribution-by-channel", attribution.long_by_channel()), ("attribution-by-campaign", attribution.long_by_campaign())]
    {
        let key = measure_key(measure, date);
        let (schema, batch) = credit_batch(measure, &rows)?;
        put_batches(&ports.blobs, bucket, &key, schema, &[batch]).await?;
        outputs.push(MeasureOutput { measure: measure.to_string(), key, rows: rows.len() });
    }
    let key = measure_key("top-paths", date);
    let (schema, batch, rows) = paths_batch(&attribution)?;
    put_batches(&ports.blobs, bucket, &key, schema, &[batch]).await?;
    outputs.push(MeasureOutput { measure: "top-paths".into(), key, rows });

    let spend = crate::spend::spend(tables.get("spend").unwrap_or(&empty("spend")))?;
    let spend_return = crate::spend::returns(&spend, &attribution);
    let key = measure_key(SPEND_RETURN, date);
    let (schema, batch) = crate::spend::batch(&spend_return)?;
    put_batches(&ports.blobs, bucket, &key, schema, &[batch]).await?;
    outputs.push(MeasureOutput { measure: SPEND_RETURN.into(), key, rows: spend_return.len() });

    let results = Results { run_at, tables, attribution, touchpoints: touchpoints.len(), spend_return, previous: previous.clone() };
    let lift = crate::daily::campaign_lift(&ports.blobs, bucket).await;
    let data = crate::daily::report_data(&results, config, lift)?;
    let report_key = crate::report::lake_key(date);
    ports.blobs.put(bucket, &report_key, Bytes::from(crate::report::render(&data)), HTML).await?;

    let a = &results.attribution;
    Ok(RunSummary {
        run_at,
        run_date: date,
        profiles,
        measures: outputs,
        conversions: a.conversions,
        conversions_without_touchpoint: a.conversions_without_touchpoint,
        revenue_minor: a.revenue_minor,
        touchpoints: results.touchpoints,
        spend_minor: spend.iter().map(|s| s.spend_minor).sum(),
        previous,
        report_key,
    })
}

/// The table of spend and return per channel and campaign ([`crate::spend::batch`]).
pub const SPEND_RETURN: &str = "spend-return";

/// The previous period's headline figures: [`PREVIOUS_PERIOD_MEASURES`] in a session of the
/// same lake and profile snapshot as of `run_at - PERIOD_DAYS` (nothing written). `None`
/// when the library lacks one of them.
async fn previous_period(
    env: &RunEnv,
    bucket: &str,
    scope: &RunScope,
    definitions: &[MeasureDefinition],
) -> Result<Option<Headline>, MeasuresError> {
    let defs: Vec<&MeasureDefinition> =
        PREVIOUS_PERIOD_MEASURES.iter().filter_map(|name| definitions.iter().find(|d| d.name == *name)).collect();
    if defs.len() < PREVIOUS_PERIOD_MEASURES.len() {
        return Ok(None);
    }
    let at = scope.run_at - Duration::days(PERIOD_DAYS);
    let previous = RunScope { run_at: at, ..scope.clone() };
    let ctx = session(env, bucket, &previous).await?;
    let (_, conversions) = query(&ctx, defs[0], at).await?;
    let (_, cross) = query(&ctx, defs[1], at).await?;
    Ok(Some(Headline::from_tables(&conversions, &cross)?))
}

/// The `touchpoints` measure as attribution input (rows without a person or time are
/// refused: the SQL never returns them).
pub fn touchpoints(t: &Table) -> Result<Vec<Touchpoint>, MeasuresError> {
    let (person, at, channel, campaign, kind, source) = (
        t.strings("profile_id")?,
        t.times("at")?,
        t.strings("channel")?,
        t.strings("campaign_id")?,
        t.strings("kind")?,
        t.strings("source")?,
    );
    let mut out = Vec::with_capacity(person.len());
    for (i, (((((person, at), channel), campaign), kind), source)) in
        person.into_iter().zip(at).zip(channel).zip(campaign).zip(kind).zip(source).enumerate()
    {
        out.push(Touchpoint {
            person: t.required("profile_id", i, person)?,
            at: t.required("at", i, at)?,
            channel: t.required("channel", i, channel)?,
            campaign: campaign.filter(|c| !c.is_empty()),
            kind: kind.unwrap_or_default(),
            source: source.filter(|s| !s.is_empty()),
        });
    }
    Ok(out)
}

/// The `conversions` measure as attribution input.
pub fn conversions(t: &Table) -> Result<Vec<Conversion>, MeasuresError> {
    let (person, id, channel, at, amount) =
        (t.strings("profile_id")?, t.strings("order_id")?, t.strings("channel")?, t.times("ordered_at")?, t.ints("amount_minor")?);
    let mut out = Vec::with_capacity(person.len());
    for (i, ((((person, id), channel), at), amount)) in person.into_iter().zip(id).zip(channel).zip(at).zip(amount).enumerate() {
        out.push(Conversion {
            person: t.required("profile_id", i, person)?,
            at: t.required("ordered_at", i, at)?,
            id: t.required("order_id", i, id)?,
            channel: t.required("channel", i, channel)?,
            revenue_minor: amount.unwrap_or(0),
        });
    }
    Ok(out)
}

fn encode(key: &str) -> impl Fn(arrow::error::ArrowError) -> MeasuresError + '_ {
    move |e| MeasuresError::Encode { key: key.to_string(), source: Box::new(e) }
}

/// Attribution in long form: one row per model and channel (or campaign).
///
/// Columns: `model` (first_touch, last_touch, linear, position_based, time_decay,
/// markov), `channel` or `campaign`, `conversions` (attributed orders, fractional),
/// `revenue` (exact attributed revenue, cents), `revenue_minor` (whole cents, adding up to
/// the period's revenue per model).
fn credit_batch(measure: &str, rows: &[LongCreditRow]) -> Result<(SchemaRef, RecordBatch), MeasuresError> {
    let key_column = if measure.ends_with("campaign") { "campaign" } else { "channel" };
    let schema = Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new(key_column, DataType::Utf8, false),
        Field::new("conversions", DataType::Float64, false),
        Field::new("revenue", DataType::Float64, false),
        Field::new("revenue_minor", DataType::Int64, false),
    ]));
    let (mut model, mut key, mut conv, mut rev, mut minor) =
        (StringBuilder::new(), StringBuilder::new(), Float64Builder::new(), Float64Builder::new(), Int64Builder::new());
    for r in rows {
        model.append_value(r.model.as_str());
        key.append_value(&r.key);
        conv.append_value(r.conversions);
        rev.append_value(r.revenue);
        minor.append_value(r.revenue_minor);
    }
    let columns: Vec<ArrayRef> =
        vec![Arc::new(model.finish()), Arc::new(key.finish()), Arc::new(conv.finish()), Arc::new(rev.finish()), Arc::new(minor.finish())];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(encode(measure))?;
    Ok((schema, batch))
}

/// The most common paths: `kind` (`conversion` or `non_conversion`), `rank` (1 = most
/// common), `path` (channels in order, `email > web`), `count` (orders, or people who did
/// not order), `share` (of all orders, or of all non-converting people), `revenue_minor`.
fn paths_batch(a: &Attribution) -> Result<(SchemaRef, RecordBatch, usize), MeasuresError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, false),
        Field::new("rank", DataType::UInt64, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("count", DataType::UInt64, false),
        Field::new("share", DataType::Float64, false),
        Field::new("revenue_minor", DataType::Int64, false),
    ]));
    let (mut kind, mut rank, mut path, mut count, mut share, mut revenue) = (
        StringBuilder::new(),
        UInt64Builder::new(),
        StringBuilder::new(),
        UInt64Builder::new(),
        Float64Builder::new(),
        Int64Builder::new(),
    );
    let mut rows = 0;
    for (label, list) in [("conversion", &a.paths.top_converting), ("non_conversion", &a.paths.top_non_converting)] {
        for (i, p) in list.iter().enumerate() {
            kind.append_value(label);
            rank.append_value(i as u64 + 1);
            path.append_value(&p.path);
            count.append_value(p.count as u64);
            share.append_value(p.share);
            revenue.append_value(p.revenue_minor);
            rows += 1;
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(kind.finish()),
        Arc::new(rank.finish()),
        Arc::new(path.finish()),
        Arc::new(count.finish()),
        Arc::new(share.finish()),
        Arc::new(revenue.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(encode("top-paths"))?;
    Ok((schema, batch, rows))
}
