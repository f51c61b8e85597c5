//! DuckDB as the correctness oracle and the performance reference of the segments.
//!
//! [`run_job`] runs `scripts/duckdb_segments.py` with the repository's `.venv` Python (duckdb
//! is pinned in `infra/local/requirements.txt`) over a local lake directory — the same
//! Parquet files DataFusion reads through `catalog::register_run(ctx, &local_base(dir), ..)` —
//! and returns, per segment, its distinct members (profile id + key values, as text), their
//! payloads, the row count and the wall time, plus the process's peak RSS.
//!
//! The SQL is the segment library's and the catalog's views, unchanged but for the
//! rendering of the run parameters for DuckDB (`catalog::render(.., Dialect::DuckDb)`)
//! and [`duckdb_dialect`]. Everything else that would make DuckDB answer differently is
//! pinned by the script's session settings (UTC time zone, NULLs sort as the largest
//! value, integer division, partition columns read as VARCHAR; see the script's header).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use ariane_local::duckdb;
//! let run_at = chrono::Utc::now();
//! let lib = ariane_segments::SegmentDefinition::library()?;
//! let job = duckdb::Job::new("/tmp/lake".as_ref(), "20261123T060000Z", None, &lib, run_at)?;
//! let result = duckdb::run_job(&job)?;
//! for s in &result.segments {
//!     println!("{}: {} members in {:.3}s", s.name, s.members.len(), s.seconds);
//! }
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use ariane_segments::catalog::{self, Dialect};
use ariane_segments::SegmentDefinition;
use ariane_shared::model::SegmentMember;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The job the script reads (see `scripts/duckdb_segments.py`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    pub lake_dir: PathBuf,
    pub snapshot_run_id: String,
    /// One profile partition (`bucket=<k>` of the snapshot), or all of them.
    pub bucket: Option<usize>,
    /// `(name, sql)` in dependency order, rendered for DuckDB.
    pub views: Vec<(String, String)>,
    pub segments: Vec<JobSegment>,
    /// DuckDB's `threads` (all cores when unset).
    pub threads: Option<usize>,
    /// DuckDB's `memory_limit` (`"1536MB"`), its default (80 % of RAM) when unset.
    pub memory_limit: Option<String>,
    /// Where DuckDB spills (its default, `.tmp` beside the database, when unset).
    pub temp_directory: Option<PathBuf>,
    /// The event files as a glob under `lake_dir` with `channel` and `event_date` as
    /// columns (a compacted generation), instead of `events/` partitioned by them.
    #[serde(default)]
    pub events_pattern: Option<String>,
    /// The link files likewise (a compacted history), instead of `identity/links/`.
    #[serde(default)]
    pub links_pattern: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobSegment {
    pub name: String,
    /// Rendered for DuckDB.
    pub sql: String,
    pub key: Vec<String>,
    pub payload: Vec<String>,
}

impl Job {
    /// A job running `definitions` at `run_at` over the lake in `lake_dir`, with the
    /// catalog's views; threads and memory are DuckDB's defaults until set.
    pub fn new(
        lake_dir: &Path,
        snapshot_run_id: &str,
        bucket: Option<usize>,
        definitions: &[SegmentDefinition],
        run_at: DateTime<Utc>,
    ) -> anyhow::Result<Self> {
        let views = catalog::rendered_views(run_at, Dialect::DuckDb)
            .into_iter()
            .map(|(name, sql)| (name.to_string(), duckdb_dialect(&sql)))
            .collect();
        let segments = definitions
            .iter()
            .map(|d| {
                let sql = catalog::render(&d.sql, run_at, Dialect::DuckDb).map_err(|e| anyhow::anyhow!("{}: {e}", d.file))?;
                Ok(JobSegment { name: d.name.clone(), sql: duckdb_dialect(&sql), key: d.key.clone(), payload: d.payload.clone() })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Job {
            lake_dir: std::path::absolute(lake_dir).with_context(|| format!("{}", lake_dir.display()))?,
            snapshot_run_id: snapshot_run_id.to_string(),
            bucket,
            views,
            segments,
            threads: None,
            memory_limit: None,
            temp_directory: None,
            events_pattern: None,
            links_pattern: None,
        })
    }
}

/// What DuckDB computed for one segment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SegmentResult {
    pub name: String,
    /// Rows the query returned (before removing duplicate members).
    pub rows: u64,
    /// Wall time of the query, run to completion into a temporary table.
    pub seconds: f64,
    /// `profile_id` then the key columns.
    pub columns: Vec<String>,
    /// Distinct `[profile_id, key values...]`, as text, sorted.
    pub members: Vec<Vec<String>>,
    /// The payload of each member (aligned with `members`), `None` when the query gave
    /// that member several different payloads.
    pub payloads: Vec<Option<BTreeMap<String, String>>>,
    pub ambiguous_payloads: u64,
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
    pub segments: Vec<SegmentResult>,
    /// Wall time of the whole child process (interpreter start, setup, queries, output).
    #[serde(default)]
    pub process_seconds: f64,
}

impl JobResult {
    pub fn segment(&self, name: &str) -> Option<&SegmentResult> {
        self.segments.iter().find(|s| s.name == name)
    }
}

/// The SQL rewrites DuckDB needs beyond the run parameters (which `catalog::render`
/// renders per dialect). Kept deliberately small: segment SQL should be written in the
/// common subset (see `docs/segments.md`), and semantic differences are pinned by
/// session settings in the script rather than by rewrites.
///
/// | DataFusion | DuckDB | why |
/// |---|---|---|
/// | `arrow_cast(x, 'Utf8')` (and the other Arrow type names below) | `CAST(x AS VARCHAR)` | `arrow_cast` is DataFusion's |
///
/// Differences handled by the script's session instead (no rewrite):
/// - `TimeZone = 'UTC'`: `TIMESTAMPTZ ± INTERVAL` and casts to DATE/VARCHAR in UTC, as
///   DataFusion does for `Timestamp(µs, "UTC")` columns;
/// - `default_null_order = 'nulls_last_on_asc_first_on_desc'`: NULLs are the largest value
///   in `ORDER BY` (windows included), as in DataFusion;
/// - `integer_division = true`: `BIGINT / BIGINT` truncates, as in DataFusion;
/// - `hive_types`: `channel`, `event_date`, `resolved_date`, `bucket` are VARCHAR, as the
///   listing tables declare them (DuckDB would infer `event_date` as DATE).
///
/// Differences that need no handling because only the text of a value is compared:
/// `SUM(BIGINT)` is HUGEINT in DuckDB, Int64 in DataFusion; timestamps are printed by the
/// script as Arrow does (`2026-11-23T06:30:00Z`).
pub fn duckdb_dialect(sql: &str) -> String {
    rewrite_arrow_cast(sql)
}

/// Arrow type names of `arrow_cast` and their DuckDB types.
const ARROW_TYPES: &[(&str, &str)] = &[
    ("Utf8", "VARCHAR"),
    ("LargeUtf8", "VARCHAR"),
    ("Utf8View", "VARCHAR"),
    ("Boolean", "BOOLEAN"),
    ("Int8", "TINYINT"),
    ("Int16", "SMALLINT"),
    ("Int32", "INTEGER"),
    ("Int64", "BIGINT"),
    ("UInt8", "UTINYINT"),
    ("UInt16", "USMALLINT"),
    ("UInt32", "UINTEGER"),
    ("UInt64", "UBIGINT"),
    ("Float32", "REAL"),
    ("Float64", "DOUBLE"),
    ("Date32", "DATE"),
    ("Timestamp(Microsecond, None)", "TIMESTAMP"),
    ("Timestamp(Microsecond, Some(\"UTC\"))", "TIMESTAMPTZ"),
    ("Timestamp(µs, \"UTC\")", "TIMESTAMPTZ"),
];

/// `arrow_cast(<expr>, '<arrow type>')` -> `CAST(<expr> AS <duckdb type>)`, nesting and
/// string literals respected; an unknown Arrow type is left as is (DuckDB then reports
/// the function as unknown, naming it).
fn rewrite_arrow_cast(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while let Some(found) = find_outside_strings(&lower, "arrow_cast", i) {
        let word_start = found == 0 || !is_ident(lower.as_bytes()[found - 1]);
        let open = lower[found + "arrow_cast".len()..].find(|c: char| !c.is_whitespace()).map(|o| found + "arrow_cast".len() + o);
        let (true, Some(open)) = (word_start, open) else {
            out.push_str(&sql[i..found + 1]);
            i = found + 1;
            continue;
        };
        if sql.as_bytes()[open] != b'(' {
            out.push_str(&sql[i..found + 1]);
            i = found + 1;
            continue;
        }
        let Some((comma, close)) = split_call(sql, open) else {
            break;
        };
        let expr = rewrite_arrow_cast(sql[open + 1..comma].trim());
        let ty = sql[comma + 1..close].trim();
        let mapped = ty
            .strip_prefix('\'')
            .and_then(|t| t.strip_suffix('\''))
            .map(|t| t.replace("''", "'"))
            .and_then(|t| ARROW_TYPES.iter().find(|(a, _)| *a == t).map(|(_, d)| *d));
        out.push_str(&sql[i..found]);
        match mapped {
            Some(duck) => out.push_str(&format!("CAST({expr} AS {duck})")),
            None => out.push_str(&sql[found..=close]),
        }
        i = close + 1;
    }
    out.push_str(&sql[i..]);
    out
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The next `needle` at or after `from` that is not inside a '...' literal.
fn find_outside_strings(haystack: &str, needle: &str, from: usize) -> Option<usize> {
    let bytes = haystack.as_bytes();
    let mut in_string = false;
    let mut pos = 0;
    while pos < bytes.len() {
        if bytes[pos] == b'\'' {
            in_string = !in_string;
        } else if !in_string && pos >= from && haystack[pos..].starts_with(needle) {
            return Some(pos);
        }
        pos += 1;
    }
    None
}

/// For a call whose `(` is at `open`: the position of the top-level comma before the
/// last argument and of the closing `)`.
fn split_call(sql: &str, open: usize) -> Option<(usize, usize)> {
    let (mut depth, mut in_string, mut comma) = (0usize, false, None);
    for (pos, b) in sql.bytes().enumerate().skip(open) {
        match b {
            b'\'' => in_string = !in_string,
            _ if in_string => {}
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return comma.map(|c| (c, pos));
                }
            }
            b',' if depth == 1 => comma = Some(pos),
            _ => {}
        }
    }
    None
}

/// The repository's `.venv` Python, checked to import duckdb.
pub fn python() -> anyhow::Result<PathBuf> {
    let python = crate::repo_root().join(".venv/bin/python");
    if !python.exists() {
        bail!("{} is missing: run `make bootstrap` (creates .venv with duckdb from infra/local/requirements.txt)", python.display());
    }
    let check = Command::new(&python)
        .args(["-c", "import duckdb"])
        .output()
        .with_context(|| format!("cannot run {}: run `make bootstrap`", python.display()))?;
    if !check.status.success() {
        bail!(
            "duckdb is not importable by {} ({}): run `make bootstrap` (installs infra/local/requirements.txt)",
            python.display(),
            String::from_utf8_lossy(&check.stderr).trim()
        );
    }
    Ok(python)
}

/// `scripts/duckdb_segments.py`.
pub fn script() -> PathBuf {
    crate::repo_root().join("scripts/duckdb_segments.py")
}

/// Runs `job` in a DuckDB child process and returns its result. The script's progress
/// lines (stderr) are passed through when `ARIANE_DUCKDB_VERBOSE` is set.
pub fn run_job(job: &Job) -> anyhow::Result<JobResult> {
    let (mut result, process_seconds): (JobResult, f64) = run_script(&script(), job, "DuckDB segments")?;
    result.process_seconds = process_seconds;
    Ok(result)
}

/// Runs the DuckDB script `script` (under `scripts/`) on `job` (written as JSON to a file
/// the script reads) with the `.venv` Python, and returns its JSON result and the wall
/// time of the child process. `what` names the job in errors. The script's progress lines
/// (stderr) are passed through when `ARIANE_DUCKDB_VERBOSE` is set.
pub fn run_script<J: Serialize, R: serde::de::DeserializeOwned>(script: &Path, job: &J, what: &str) -> anyhow::Result<(R, f64)> {
    let python = python()?;
    let dir = tempfile::tempdir().context("temporary directory for the DuckDB job")?;
    let job_path = dir.path().join("job.json");
    let out_path = dir.path().join("result.json");
    std::fs::write(&job_path, serde_json::to_vec(job)?).context("writing the DuckDB job")?;
    let start = std::time::Instant::now();
    let verbose = std::env::var_os("ARIANE_DUCKDB_VERBOSE").is_some();
    let output = Command::new(&python)
        .arg(script)
        .arg(&job_path)
        .arg("--out")
        .arg(&out_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if verbose { Stdio::inherit() } else { Stdio::piped() })
        .output()
        .with_context(|| format!("cannot run {} {}", python.display(), script.display()))?;
    let process_seconds = start.elapsed().as_secs_f64();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() == Some(3) {
            bail!("{}", stderr.trim());
        }
        bail!("{what} failed ({}):\n{}{}", output.status, stderr, String::from_utf8_lossy(&output.stdout));
    }
    let text = std::fs::read(&out_path).context("reading the DuckDB result")?;
    let result: R = serde_json::from_slice(&text).context("the DuckDB result is not the expected JSON")?;
    Ok((result, process_seconds))
}

/// A DataFusion membership as the script's member rows: distinct
/// `[profile_id, key values in `key` order...]`, sorted.
pub fn member_rows(members: &[SegmentMember], key: &[String]) -> Vec<Vec<String>> {
    let set: BTreeSet<Vec<String>> = members
        .iter()
        .map(|m| {
            let mut row = vec![m.profile_id.to_string()];
            row.extend(key.iter().map(|k| m.key.get(k).cloned().unwrap_or_default()));
            row
        })
        .collect();
    set.into_iter().collect()
}

/// How two member sets differ.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemberDiff {
    /// Members DataFusion has and DuckDB has not.
    pub only_datafusion: Vec<Vec<String>>,
    /// Members DuckDB has and DataFusion has not.
    pub only_duckdb: Vec<Vec<String>>,
}

impl MemberDiff {
    pub fn is_empty(&self) -> bool {
        self.only_datafusion.is_empty() && self.only_duckdb.is_empty()
    }

    /// One line, with up to `examples` members of each side.
    pub fn summary(&self, examples: usize) -> String {
        let show = |v: &[Vec<String>]| v.iter().take(examples).map(|m| m.join("/")).collect::<Vec<_>>().join(", ");
        format!(
            "{} only in DataFusion [{}], {} only in DuckDB [{}]",
            self.only_datafusion.len(),
            show(&self.only_datafusion),
            self.only_duckdb.len(),
            show(&self.only_duckdb)
        )
    }
}

/// Compares DataFusion's member rows with DuckDB's (both as from [`member_rows`]).
pub fn diff_members(datafusion: &[Vec<String>], duckdb: &[Vec<String>]) -> MemberDiff {
    let a: BTreeSet<&Vec<String>> = datafusion.iter().collect();
    let b: BTreeSet<&Vec<String>> = duckdb.iter().collect();
    MemberDiff {
        only_datafusion: a.difference(&b).map(|m| (*m).clone()).collect(),
        only_duckdb: b.difference(&a).map(|m| (*m).clone()).collect(),
    }
}

/// A member whose payload differs: `(member, DataFusion's payload, DuckDB's payload)`.
pub type PayloadMismatch = (Vec<String>, BTreeMap<String, String>, BTreeMap<String, String>);

/// Payloads of the members both engines found, compared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayloadDiff {
    /// Members whose payloads were compared.
    pub compared: usize,
    /// `(member, DataFusion's payload, DuckDB's payload)` where they differ.
    pub differing: Vec<PayloadMismatch>,
}

/// Compares the payload of every member both engines found (members DuckDB gave several
/// payloads are skipped: DataFusion keeps an arbitrary one of them).
pub fn diff_payloads(datafusion: &[SegmentMember], key: &[String], duckdb: &SegmentResult) -> PayloadDiff {
    let theirs: BTreeMap<&Vec<String>, &BTreeMap<String, String>> =
        duckdb.members.iter().zip(&duckdb.payloads).filter_map(|(m, p)| p.as_ref().map(|p| (m, p))).collect();
    let mut out = PayloadDiff::default();
    for m in datafusion {
        let row = member_rows(std::slice::from_ref(m), key).remove(0);
        if let Some(p) = theirs.get(&row) {
            out.compared += 1;
            if **p != m.payload {
                out.differing.push((row, m.payload.clone(), (*p).clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_cast_becomes_cast() {
        assert_eq!(duckdb_dialect("SELECT arrow_cast(x, 'Utf8') AS y"), "SELECT CAST(x AS VARCHAR) AS y");
        assert_eq!(
            duckdb_dialect("arrow_cast(COALESCE(a, 'b,c'), 'Int64') + ARROW_CAST ( arrow_cast(n, 'Utf8'), 'Int32')"),
            "CAST(COALESCE(a, 'b,c') AS BIGINT) + CAST(CAST(n AS VARCHAR) AS INTEGER)"
        );
        assert_eq!(
            duckdb_dialect("arrow_cast('2026-11-23T06:30:00Z', 'Timestamp(Microsecond, Some(\"UTC\"))')"),
            "CAST('2026-11-23T06:30:00Z' AS TIMESTAMPTZ)"
        );
        let untouched = "SELECT my_arrow_cast(x), 'arrow_cast(y, ''Utf8'')', arrow_cast(z, 'Decimal128(3, 1)')";
        assert_eq!(duckdb_dialect(untouched), untouched);
        assert_eq!(duckdb_dialect("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn member_rows_are_distinct_and_keyed() {
        let m = |id: &str, tier: &str| SegmentMember {
            profile_id: id.into(),
            key: [("tier".to_string(), tier.to_string())].into_iter().collect(),
            payload: BTreeMap::new(),
        };
        let rows = member_rows(&[m("b", "x"), m("a", "y"), m("b", "x")], &["tier".to_string()]);
        assert_eq!(rows, vec![vec!["a".to_string(), "y".into()], vec!["b".into(), "x".into()]]);
        let d = diff_members(&rows, &rows[..1]);
        assert_eq!(d.only_datafusion, vec![vec!["b".to_string(), "x".into()]]);
        assert!(d.only_duckdb.is_empty() && !d.is_empty());
    }
}
