//! DuckDB as the oracle of the measures' SQL: on a truth lake of ~1000 persons with every
//! export, the measures function's daily run (`ariane_measures::run_measures`, the
//! function's code path, through a directory blob store) and DuckDB
//! (`scripts/duckdb_measures.py`: the same Parquet files, views and measure SQL) must give
//! every measure of `measures/` the same rows (as multisets, numbers within a relative
//! 1e-9), `touchpoints` and `conversions` included; and attribution, fed DuckDB's
//! touchpoints and conversions, must credit every channel and campaign as the function
//! did from its own.
//!
//! Needs `.venv` with duckdb (`make bootstrap`).

use std::path::Path;

use ariane_datagen::{Export, GenConfig};
use ariane_local::measures_duckdb::{self as md, diff_rows, diff_tables, read_parquet, table_rows, Value, TOLERANCE};
use ariane_local::truth_lake::{add_export_without_persons, build_truth_lake};
use ariane_measures::attribution::{attribute, LongCreditRow};
use ariane_measures::run::{conversions, touchpoints};
use ariane_measures::table::Table;
use ariane_measures::MeasureDefinition;
use ariane_shared::lake;
use chrono::{DateTime, Duration, TimeZone, Utc};

/// The function's memory (the template's `MeasuresFunction`).
const MEMORY_MB: usize = 3008;

fn credit_rows(rows: &[LongCreditRow]) -> Vec<Vec<Value>> {
    rows.iter()
        .map(|r| {
            vec![
                Value::Text(r.model.as_str().to_string()),
                Value::Text(r.key.clone()),
                Value::Number(r.conversions),
                Value::Number(r.revenue),
                Value::Number(r.revenue_minor as f64),
            ]
        })
        .collect()
}

/// Runs the measures at `run_at` over `dir` with the function and with DuckDB and compares;
/// returns a report line per table. Panics on any difference.
async fn compare(dir: &Path, base_snapshot: &str, run_at: DateTime<Utc>) -> Vec<String> {
    let library = MeasureDefinition::library().expect("the library parses");
    assert!(library.len() >= 5, "the built-in library: {:?}", library.iter().map(|d| &d.name).collect::<Vec<_>>());
    let snapshot = md::measures_snapshot(dir, base_snapshot, run_at).expect("the run's snapshot");
    let scratch = tempfile::tempdir().unwrap();

    let started = std::time::Instant::now();
    let summary = md::run_function(dir, run_at, MEMORY_MB, scratch.path()).await.unwrap_or_else(|e| panic!("DataFusion: {e:#}"));
    let df_secs = started.elapsed().as_secs_f64();

    let mut job = md::Job::new(dir, &snapshot, &library, run_at, &scratch.path().join("duckdb")).expect("job");
    job.threads = Some(2);
    job.memory_limit = Some("1GB".into());
    let duck = md::run_job(&job).unwrap_or_else(|e| panic!("DuckDB runs the measures: {e:#}"));

    let date = run_at.date_naive();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let mut duck_tables = std::collections::BTreeMap::new();
    for def in &library {
        let ours = read_parquet(&dir.join(md::measure_key(&def.name, date))).expect("the function's result");
        let theirs_result = duck.measure(&def.name).unwrap_or_else(|| panic!("DuckDB has no result for {}", def.name));
        let theirs = read_parquet(&theirs_result.file).expect("DuckDB's result");
        let diff = diff_tables(&ours, &theirs, TOLERANCE).expect("comparable");
        if !diff.is_empty() {
            failures.push(format!("{}: {}", def.name, diff.summary(5)));
        }
        // Every measure has rows here, so an equality is not two empty tables.
        if diff.rows.0 == 0 {
            failures.push(format!("{}: no row: the lake does not exercise it", def.name));
        }
        assert_eq!(summary.rows(&def.name), Some(diff.rows.0), "{}: rows written", def.name);
        report.push(format!("{:<16} {:>6} rows  {}  DuckDB {:.3}s", def.name, diff.rows.0, diff.summary(0), theirs_result.seconds));
        duck_tables.insert(def.name.clone(), Table { measure: def.name.clone(), batches: theirs });
    }

    // Attribution (Rust) over DuckDB's touchpoints and conversions, against the function's.
    let config = md::function_config(MEMORY_MB, scratch.path()).unwrap();
    let tp = touchpoints(&duck_tables["touchpoints"]).expect("DuckDB's touchpoints read as attribution input");
    let conv = conversions(&duck_tables["conversions"]).expect("DuckDB's conversions read as attribution input");
    assert!(!tp.is_empty() && !conv.is_empty(), "{} touchpoints, {} conversions", tp.len(), conv.len());
    let attribution = attribute(&tp, &conv, &config.attribution).expect("attribution");
    assert_eq!(attribution.conversions, summary.conversions, "orders attributed");
    assert_eq!(attribution.revenue_minor, summary.revenue_minor, "revenue attributed");
    for (measure, rows) in
        [("attribution-by-channel", attribution.long_by_channel()), ("attribution-by-campaign", attribution.long_by_campaign())]
    {
        let ours = read_parquet(&dir.join(md::measure_key(measure, date))).expect("the function's attribution");
        let (columns, ours) = table_rows(&ours).unwrap();
        let diff = diff_rows((&columns, ours), (&[], credit_rows(&rows)), TOLERANCE);
        if !diff.is_empty() {
            failures.push(format!("{measure} from DuckDB's touchpoints and conversions: {}", diff.summary(5)));
        }
        report.push(format!("{measure:<16} {:>6} rows  {}", diff.rows.0, diff.summary(0)));
    }
    report.push(format!(
        "function run {df_secs:.2}s ({} conversions, {} touchpoints); DuckDB {:.2}s of queries",
        summary.conversions,
        summary.touchpoints,
        duck.query_seconds()
    ));
    assert!(failures.is_empty(), "run_at {run_at}:\n{}\n\n{}", failures.join("\n"), report.join("\n"));
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_and_datafusion_agree_on_every_measure() {
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
    let cfg = GenConfig::new(11, 1000, now);
    let snapshot = lake::run_id(now);
    // ARIANE_ORACLE_LAKE=<dir> keeps the lake there and reuses it (debugging the SQL).
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("ARIANE_ORACLE_LAKE").map(std::path::PathBuf::from).unwrap_or_else(|| temp.path().to_path_buf());
    let dir = dir.as_path();
    if !dir.join(".oracle-lake").exists() {
        let built = tokio::task::block_in_place(|| build_truth_lake(&cfg, &Export::ALL, dir, &snapshot, 1)).expect("truth lake");
        println!("truth lake: {} persons, {} profiles, {} events, {} links", built.persons, built.profiles, built.events, built.links);
        assert!(built.events > 10_000 && built.profiles > 500, "a lake worth comparing on");
        // The spend file (no person in it) for the `spend` measure.
        let mut spend = Vec::new();
        ariane_datagen::write_costs(&cfg, &mut spend).expect("a spend file");
        let spend_events = add_export_without_persons(dir, "costs", "costs/spend.csv", &spend).expect("the spend file ingested");
        assert!(spend_events > 100, "{spend_events} spend rows");
        std::fs::write(dir.join(".oracle-lake"), b"").unwrap();
    }

    // At the generator's `now` (every event is in the past): a Monday, the first ISO week
    // of the period is whole.
    let at_now = now + Duration::hours(6);
    for line in compare(dir, &snapshot, at_now).await {
        println!("{at_now}  {line}");
    }
    // Earlier, at an odd instant on a Friday (later events and partitions are cut off, the
    // first and last weeks of the period are partial).
    let earlier = now - Duration::days(38) + Duration::minutes(13 * 60 + 37);
    for line in compare(dir, &snapshot, earlier).await {
        println!("{earlier}  {line}");
    }
}

#[test]
fn a_job_renders_every_measure_for_duckdb() {
    let run_at = Utc.with_ymd_and_hms(2026, 11, 23, 6, 0, 0).unwrap();
    let library = MeasureDefinition::library().unwrap();
    let job = md::Job::new(Path::new("/tmp/lake"), "measures-20261123", &library, run_at, Path::new("/tmp/out")).unwrap();
    assert_eq!(job.measures.len(), library.len());
    for m in &job.measures {
        assert!(!m.sql.contains("{{") && !m.sql.contains("arrow_cast"), "{}: {}", m.name, m.sql);
    }
    let touchpoints = job.measures.iter().find(|m| m.name == "touchpoints").expect("touchpoints");
    assert!(touchpoints.sql.contains("TIMESTAMPTZ '2026-11-23 06:00:00.000000+00' - INTERVAL '58 days'"), "{}", touchpoints.sql);
    assert!(touchpoints.sql.contains("event_date >= '2026-09-26'"), "{}", touchpoints.sql);
}
