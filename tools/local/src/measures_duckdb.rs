//! DuckDB as the correctness oracle and the performance reference of the daily measures
//! (`measures/*.sql`), as [`crate::duckdb`] is for the segments.
//!
//! - [`run_job`] runs `scripts/duckdb_measures.py` over a local lake directory: the same
//!   Parquet files, the same catalog views (`catalog::rendered_views(.., Dialect::DuckDb)`)
//!   and the same measure SQL (`catalog::render(.., Dialect::DuckDb)`, then
//!   [`crate::duckdb::duckdb_dialect`]) under the same session settings as the segments
//!   oracle; each measure's result is written to a Parquet file and timed.
//! - [`run_function`] runs the measures function itself ([`ariane_measures::run_measures`])
//!   over the same directory through [`FsBlobs`]: its results land where the function
//!   writes them (`measures/<name>/date=<d>/part-0.parquet`, [`measure_key`]).
//! - [`measures_snapshot`] gives a lake's profile snapshot the run id a measures run reads
//!   (`measures-<YYYYMMDD>`), so the function reuses it instead of reading a profiles table.
//! - [`diff_tables`] compares two results: the same column names in the same order, and
//!   the same rows as multisets, numbers compared as numbers with a relative tolerance
//!   (DuckDB's `SUM(BIGINT)` is a HUGEINT, written to Parquet as a DOUBLE; sums of floats
//!   may differ in their last bits with the order of addition), timestamps as UTC instants
//!   to the microsecond, everything else as text.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use ariane_local::measures_duckdb as md;
//! let (dir, run_at) = (std::path::Path::new("/tmp/lake"), chrono::Utc::now());
//! let snapshot = md::measures_snapshot(dir, "20261123T000000Z", run_at)?;
//! let scratch = tempfile::tempdir()?;
//! md::run_function(dir, run_at, 3008, scratch.path()).await?;
//! let library = ariane_measures::MeasureDefinition::library()?;
//! let job = md::Job::new(dir, &snapshot, &library, run_at, &scratch.path().join("duckdb"))?;
//! let duck = md::run_job(&job)?;
//! for def in &library {
//!     let ours = md::read_parquet(&dir.join(md::measure_key(&def.name, run_at.date_naive())))?;
//!     let theirs = md::read_parquet(&duck.measure(&def.name).expect("ran").file)?;
//!     let diff = md::diff_tables(&ours, &theirs, md::TOLERANCE)?;
//!     println!("{}: {}", def.name, diff.summary(3));
//! }
//! # Ok(()) }
//! ```

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context};
use ariane_measures::{MeasureDefinition, MeasuresConfig, Ports, RunSummary};
use ariane_segments::catalog::{self, Dialect};
use ariane_segments::snapshot::{self, SnapshotMarker};
use ariane_shared::adapters::memory::MemProfiles;
use ariane_shared::{lake, MapEnv};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use datafusion::object_store::local::LocalFileSystem;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

pub use ariane_measures::run::measure_key;

use crate::duckdb::duckdb_dialect;
use crate::fs_blobs::FsBlobs;

/// The bucket name [`run_function`] gives the local lake.
pub const LAKE: &str = "lake";

/// The relative tolerance of numbers in [`diff_tables`]: `|a - b| <= TOLERANCE × max(1,
/// |a|, |b|)`.
pub const TOLERANCE: f64 = 1e-9;

/// The job the script reads (see `scripts/duckdb_measures.py`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub lake_dir: PathBuf,
    /// The run whose profile snapshot (every bucket) is the `profiles` table.
    pub snapshot_run_id: String,
    /// `(name, sql)` in dependency order, rendered for DuckDB.
    pub views: Vec<(String, String)>,
    /// Views computed once into temporary tables before the measures, as the function
    /// does ([`ariane_measures::run::MATERIALISED_VIEWS`]).
    #[serde(default)]
    pub materialise: Vec<String>,
    pub measures: Vec<JobMeasure>,
    /// Where each measure's result is written, as `<name>.parquet`.
    pub out_dir: PathBuf,
    /// DuckDB's `threads` (all cores when unset).
    pub threads: Option<usize>,
    /// DuckDB's `memory_limit` (`"1504MB"`), its default (80 % of RAM) when unset.
    pub memory_limit: Option<String>,
    /// Where DuckDB spills (its default when unset).
    pub temp_directory: Option<PathBuf>,
    /// Where each measure's `EXPLAIN ANALYZE` is written (`<name>.duckdb.txt`), after its
    /// timed run; nowhere when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain_dir: Option<PathBuf>,
    /// The event files of a compacted generation, as for the segments
    /// ([`crate::duckdb::Job::events_pattern`]); `events/` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_pattern: Option<String>,
    /// The links' compacted history likewise; `identity/links/` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links_pattern: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobMeasure {
    pub name: String,
    /// Rendered for DuckDB.
    pub sql: String,
}

impl Job {
    /// The job of `definitions` at `run_at` over `lake_dir` with the profile snapshot of
    /// `snapshot_run_id`, results to `out_dir`.
    pub fn new(
        lake_dir: &Path,
        snapshot_run_id: &str,
        definitions: &[MeasureDefinition],
        run_at: DateTime<Utc>,
        out_dir: &Path,
    ) -> anyhow::Result<Self> {
        let views = catalog::rendered_views(run_at, Dialect::DuckDb)
            .into_iter()
            .map(|(name, sql)| (name.to_string(), duckdb_dialect(&sql)))
            .collect();
        let measures = definitions
            .iter()
            .map(|d| {
                let sql = catalog::render(&d.sql, run_at, Dialect::DuckDb).map_err(|e| anyhow::anyhow!("{}: {e}", d.file))?;
                Ok(JobMeasure { name: d.name.clone(), sql: duckdb_dialect(&sql) })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Job {
            lake_dir: std::path::absolute(lake_dir).with_context(|| format!("{}", lake_dir.display()))?,
            snapshot_run_id: snapshot_run_id.to_string(),
            views,
            materialise: ariane_measures::run::MATERIALISED_VIEWS.iter().map(|v| v.to_string()).collect(),
            measures,
            out_dir: std::path::absolute(out_dir).with_context(|| format!("{}", out_dir.display()))?,
            threads: None,
            memory_limit: None,
            temp_directory: None,
            explain_dir: None,
            events_pattern: None,
            links_pattern: None,
        })
    }
}

/// What DuckDB computed for one measure.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MeasureResult {
    pub name: String,
    pub rows: u64,
    /// Wall time of the query, run to completion into a temporary table.
    pub seconds: f64,
    /// The result, as DuckDB wrote it.
    pub file: PathBuf,
}

/// The script's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobResult {
    pub duckdb_version: String,
    pub threads: usize,
    /// Registering the tables and views.
    pub setup_seconds: f64,
    /// Peak resident set of the DuckDB process (Python included).
    pub peak_rss_mb: f64,
    pub measures: Vec<MeasureResult>,
    /// Wall time of the whole child process (interpreter start, setup, queries, output).
    #[serde(default)]
    pub process_seconds: f64,
}

impl JobResult {
    pub fn measure(&self, name: &str) -> Option<&MeasureResult> {
        self.measures.iter().find(|m| m.name == name)
    }

    /// The queries' wall time, summed.
    pub fn query_seconds(&self) -> f64 {
        self.measures.iter().map(|m| m.seconds).sum()
    }
}

/// `scripts/duckdb_measures.py`.
pub fn script() -> PathBuf {
    crate::repo_root().join("scripts/duckdb_measures.py")
}

/// Runs `job` in a DuckDB child process (see [`crate::duckdb::run_script`]).
pub fn run_job(job: &Job) -> anyhow::Result<JobResult> {
    let (mut result, process_seconds): (JobResult, f64) = crate::duckdb::run_script(&script(), job, "DuckDB measures")?;
    result.process_seconds = process_seconds;
    Ok(result)
}

/// Gives the profile snapshot of run `base` in `dir` (one bucket or several) the run id of
/// the measures run at `run_at` ([`ariane_measures::run::snapshot_run_id`]), as hard
/// links, with the marker the function looks for (one partition); returns that run id.
/// Done once: an existing marker is kept.
pub fn measures_snapshot(dir: &Path, base: &str, run_at: DateTime<Utc>) -> anyhow::Result<String> {
    let id = ariane_measures::run::snapshot_run_id(run_at.date_naive());
    let marker = dir.join(snapshot::marker_key(&id));
    if marker.exists() {
        return Ok(id);
    }
    let files = crate::truth_lake::parquet_files(&dir.join(lake::profiles_snapshot_prefix(base)))?;
    ensure!(!files.is_empty(), "no profile snapshot of run {base} in {}", dir.display());
    let target = dir.join(lake::profiles_snapshot_prefix(&id));
    let _ = std::fs::remove_dir_all(&target);
    let mut profiles = 0usize;
    for (k, file) in files.iter().enumerate() {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file)?)?.build()?;
        for batch in reader {
            profiles += batch?.num_rows();
        }
        // Every file in bucket 0: the function reads the measures snapshot whole.
        let dest = target.join("bucket=0").join(format!("part-{k}.parquet"));
        std::fs::create_dir_all(dest.parent().expect("a folder"))?;
        std::fs::hard_link(file, &dest).with_context(|| format!("linking {} to {}", file.display(), dest.display()))?;
    }
    let content = SnapshotMarker { run_id: id.clone(), partitions: 1, profiles };
    std::fs::write(&marker, serde_json::to_vec(&content)?).with_context(|| format!("{}", marker.display()))?;
    Ok(id)
}

/// The function's configuration for a lake in [`LAKE`], as `from_env` reads it on a
/// function of `memory_size_mb` (its pool is half of it, its read cache a quarter of the
/// pool), spilling to `scratch`.
pub fn function_config(memory_size_mb: usize, scratch: &Path) -> anyhow::Result<MeasuresConfig> {
    let env = MapEnv::new()
        .with("LAKE_BUCKET", LAKE)
        .with("PROFILES_TABLE", "profiles")
        .with("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_size_mb.to_string())
        .with("ARIANE_SCRATCH_DIR", scratch.display().to_string());
    MeasuresConfig::from_env(&env).map_err(|e| anyhow::anyhow!("the measures configuration: {e}"))
}

/// The function's ports over the lake directory `dir` (bucket [`LAKE`]): a directory blob
/// store, DataFusion reading the same directory, and no profiles table (the run's snapshot
/// must exist, see [`measures_snapshot`]).
pub fn local_ports(dir: &Path) -> anyhow::Result<Ports<FsBlobs, MemProfiles>> {
    let store = LocalFileSystem::new_with_prefix(dir).with_context(|| format!("{}", dir.display()))?;
    Ok(Ports { blobs: FsBlobs::bucket(LAKE, dir), profiles: MemProfiles::new(), lake: Arc::new(store) })
}

/// The measures function's daily run at `run_at` over the lake directory `dir`, on a
/// function of `memory_size_mb`: its results are written under `dir` (see the module
/// documentation). The run's profile snapshot must exist ([`measures_snapshot`]).
pub async fn run_function(dir: &Path, run_at: DateTime<Utc>, memory_size_mb: usize, scratch: &Path) -> anyhow::Result<RunSummary> {
    let id = ariane_measures::run::snapshot_run_id(run_at.date_naive());
    if !dir.join(snapshot::marker_key(&id)).exists() {
        bail!("{} has no profile snapshot {id}: call measures_snapshot first", dir.display());
    }
    let config = function_config(memory_size_mb, scratch)?;
    let library = MeasureDefinition::library().map_err(|e| anyhow::anyhow!("the measure library: {e}"))?;
    let ports = local_ports(dir)?;
    ariane_measures::run_measures(&ports, &config, &library, run_at).await.map_err(|e| anyhow::anyhow!("the measures run: {e}"))
}

/// Every batch of a Parquet file.
pub fn read_parquet(path: &Path) -> anyhow::Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).with_context(|| format!("{}", path.display()))?.build()?;
    reader.collect::<Result<Vec<_>, _>>().with_context(|| format!("reading {}", path.display()))
}

/// A result value as [`diff_tables`] compares it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Number(f64),
    Text(String),
}

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Number(_) => 1,
            Value::Text(_) => 2,
        }
    }

    fn total_cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => a.total_cmp(b),
            (Value::Text(a), Value::Text(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    fn close(&self, other: &Value, tolerance: f64) -> bool {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => a == b || (a - b).abs() <= tolerance * a.abs().max(b.abs()).max(1.0),
            _ => self == other,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// A table's column names and rows as [`Value`]s: numbers (integers, floats, decimals) as
/// numbers, timestamps as `YYYY-MM-DDTHH:MM:SS.ffffff` (with `Z` when the type has a time
/// zone), everything else as Arrow casts it to text.
pub fn table_rows(batches: &[RecordBatch]) -> anyhow::Result<(Vec<String>, Vec<Vec<Value>>)> {
    let Some(first) = batches.first() else { return Ok((vec![], vec![])) };
    let columns: Vec<String> = first.schema().fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = Vec::new();
    for batch in batches {
        let mut values: Vec<Vec<Value>> = vec![Vec::with_capacity(columns.len()); batch.num_rows()];
        for (c, column) in batch.columns().iter().enumerate() {
            let name = columns.get(c).map(String::as_str).unwrap_or("?");
            for (row, value) in values.iter_mut().zip(column_values(column, name)?) {
                row.push(value);
            }
        }
        rows.extend(values);
    }
    Ok((columns, rows))
}

fn column_values(column: &dyn Array, name: &str) -> anyhow::Result<Vec<Value>> {
    let failed = |e| anyhow::anyhow!("column {name:?} ({}): {e}", column.data_type());
    let nulls = |i: usize| column.is_null(i);
    let out = match column.data_type() {
        DataType::Null => vec![Value::Null; column.len()],
        t if t.is_numeric() => {
            let c = cast(column, &DataType::Float64).map_err(failed)?;
            c.as_primitive::<Float64Type>().iter().map(|v| v.map_or(Value::Null, Value::Number)).collect()
        }
        DataType::Timestamp(_, zone) => {
            let c = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, zone.clone())).map_err(failed)?;
            let suffix = if zone.is_some() { "Z" } else { "" };
            c.as_primitive::<TimestampMicrosecondType>()
                .iter()
                .map(|v| match v.and_then(DateTime::from_timestamp_micros) {
                    Some(t) => Value::Text(format!("{}{suffix}", t.format("%Y-%m-%dT%H:%M:%S%.6f"))),
                    None => Value::Null,
                })
                .collect()
        }
        _ => {
            let c = cast(column, &DataType::Utf8).map_err(failed)?;
            let s = c.as_string::<i32>();
            (0..c.len()).map(|i| if nulls(i) { Value::Null } else { Value::Text(s.value(i).to_string()) }).collect()
        }
    };
    Ok(out)
}

/// How two results differ.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableDiff {
    /// The column names of each side, when they differ (the rows are then not compared).
    pub columns: Option<(Vec<String>, Vec<String>)>,
    /// Rows of each side (DataFusion, DuckDB).
    pub rows: (usize, usize),
    /// Rows only DataFusion has (as many times as it has them more), rendered.
    pub only_datafusion: Vec<String>,
    /// Rows only DuckDB has.
    pub only_duckdb: Vec<String>,
}

impl TableDiff {
    pub fn is_empty(&self) -> bool {
        self.columns.is_none() && self.only_datafusion.is_empty() && self.only_duckdb.is_empty()
    }

    /// One line, with up to `examples` rows of each side.
    pub fn summary(&self, examples: usize) -> String {
        if let Some((a, b)) = &self.columns {
            return format!("columns differ: DataFusion {a:?}, DuckDB {b:?}");
        }
        if self.is_empty() {
            return format!("the same {} rows", self.rows.0);
        }
        let show = |v: &[String]| v.iter().take(examples).cloned().collect::<Vec<_>>().join("; ");
        format!(
            "{} rows in DataFusion, {} in DuckDB; {} only in DataFusion [{}], {} only in DuckDB [{}]",
            self.rows.0,
            self.rows.1,
            self.only_datafusion.len(),
            show(&self.only_datafusion),
            self.only_duckdb.len(),
            show(&self.only_duckdb)
        )
    }
}

/// Compares DataFusion's result with DuckDB's: see the module documentation. `tolerance`
/// is relative ([`TOLERANCE`]).
pub fn diff_tables(datafusion: &[RecordBatch], duckdb: &[RecordBatch], tolerance: f64) -> anyhow::Result<TableDiff> {
    let (a_cols, a) = table_rows(datafusion).context("DataFusion's result")?;
    let (b_cols, b) = table_rows(duckdb).context("DuckDB's result")?;
    Ok(diff_rows((&a_cols, a), (&b_cols, b), tolerance))
}

/// [`diff_tables`] over rows already read (an empty side's columns are not compared: an
/// empty result may have been written without a batch).
pub fn diff_rows(datafusion: (&[String], Vec<Vec<Value>>), duckdb: (&[String], Vec<Vec<Value>>), tolerance: f64) -> TableDiff {
    let ((a_cols, mut a), (b_cols, mut b)) = (datafusion, duckdb);
    let mut diff = TableDiff { rows: (a.len(), b.len()), ..TableDiff::default() };
    if a_cols != b_cols && !a_cols.is_empty() && !b_cols.is_empty() {
        diff.columns = Some((a_cols.to_vec(), b_cols.to_vec()));
        return diff;
    }
    let order =
        |x: &Vec<Value>, y: &Vec<Value>| x.iter().zip(y).map(|(p, q)| p.total_cmp(q)).find(|o| o.is_ne()).unwrap_or(Ordering::Equal);
    a.sort_by(order);
    b.sort_by(order);
    let render = |r: &[Value]| r.iter().map(Value::to_string).collect::<Vec<_>>().join(" | ");
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.close(q, tolerance)) => {
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if order(x, y).is_lt() => {
                diff.only_datafusion.push(render(x));
                i += 1;
            }
            (Some(_), Some(y)) | (None, Some(y)) => {
                diff.only_duckdb.push(render(y));
                j += 1;
            }
            (Some(x), None) => {
                diff.only_datafusion.push(render(x));
                i += 1;
            }
            (None, None) => break,
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{Field, Schema};

    fn batch(names: &[&str], ints: Vec<Option<i64>>, rates: Vec<Option<f64>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("channel", DataType::Utf8, true),
            Field::new("orders", DataType::Int64, true),
            Field::new("rate", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![Arc::new(StringArray::from(names.to_vec())), Arc::new(Int64Array::from(ints)), Arc::new(Float64Array::from(rates))],
        )
        .unwrap()
    }

    #[test]
    fn rows_are_compared_as_multisets_with_a_tolerance_on_numbers() {
        let ours = batch(&["web", "pos", "pos"], vec![Some(3), Some(1), Some(1)], vec![Some(0.1 + 0.2), None, None]);
        // Another order, a float off in its last bits: equal.
        let theirs = batch(&["pos", "web", "pos"], vec![Some(1), Some(3), Some(1)], vec![None, Some(0.3), None]);
        let d = diff_tables(std::slice::from_ref(&ours), &[theirs], TOLERANCE).unwrap();
        assert!(d.is_empty(), "{}", d.summary(3));
        // A duplicate missing, a value off by more than the tolerance: both reported.
        let theirs = batch(&["pos", "web"], vec![Some(1), Some(3)], vec![None, Some(0.3001)]);
        let d = diff_tables(&[ours], &[theirs], TOLERANCE).unwrap();
        assert_eq!(d.rows, (3, 2));
        assert_eq!(d.only_datafusion, vec!["\"pos\" | 1 | NULL".to_string(), "\"web\" | 3 | 0.30000000000000004".into()]);
        assert_eq!(d.only_duckdb, vec!["\"web\" | 3 | 0.3001".to_string()]);
        assert!(d.summary(1).contains("2 only in DataFusion"), "{}", d.summary(1));
    }

    #[test]
    fn columns_must_agree_and_integers_meet_doubles() {
        let ours = batch(&["web"], vec![Some(12)], vec![Some(1.0)]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("channel", DataType::Utf8, true),
            Field::new("orders", DataType::Float64, true),
            Field::new("ratio", DataType::Float64, true),
        ]));
        let cols: Vec<arrow::array::ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["web"])),
            Arc::new(Float64Array::from(vec![12.0])),
            Arc::new(Float64Array::from(vec![1.0])),
        ];
        let theirs = RecordBatch::try_new(schema, cols).unwrap();
        let d = diff_tables(std::slice::from_ref(&ours), &[theirs], TOLERANCE).unwrap();
        assert!(d.columns.is_some() && !d.is_empty(), "{d:?}");
        // A HUGEINT written as a DOUBLE equals DataFusion's Int64.
        let as_double = batch(&["web"], vec![Some(12)], vec![Some(1.0)]);
        assert!(diff_tables(&[ours], &[as_double], TOLERANCE).unwrap().is_empty());
    }

    #[test]
    fn timestamps_are_utc_instants_whatever_the_zone_name() {
        let t = |zone: &str| {
            let a = TimestampMicrosecondArray::from(vec![Some(1_795_413_600_000_250), None]).with_timezone(zone);
            let schema = Arc::new(Schema::new(vec![Field::new("at", a.data_type().clone(), true)]));
            RecordBatch::try_new(schema, vec![Arc::new(a)]).unwrap()
        };
        let (_, rows) = table_rows(&[t("UTC")]).unwrap();
        assert_eq!(rows[0], vec![Value::Text("2026-11-23T06:00:00.000250Z".into())]);
        assert_eq!(rows[1], vec![Value::Null]);
        assert!(diff_tables(&[t("UTC")], &[t("+00:00")], TOLERANCE).unwrap().is_empty());
    }
}
