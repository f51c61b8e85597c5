//! DuckDB as the oracle of the segment SQL: on a truth lake of ~1000 persons with every
//! export, every segment of the built-in library computed by DataFusion
//! (`ariane_segments::run::compute`, the function's code path) and by DuckDB
//! (`scripts/duckdb_segments.py`, the same Parquet files, views and segment SQL) must have
//! the same members (profile id + key values) and the same payloads.
//!
//! Needs `.venv` with duckdb (`make bootstrap`).

use std::path::Path;

use ariane_datagen::{Export, GenConfig};
use ariane_local::duckdb::{self, diff_members, diff_payloads, member_rows};
use ariane_local::truth_lake::build_truth_lake;
use ariane_segments::catalog::{self, RunScope};
use ariane_segments::{run, SegmentDefinition};
use ariane_shared::lake;
use chrono::{DateTime, Duration, TimeZone, Utc};

const PARTITIONS: usize = 2;

/// Runs the library at `run_at` over `dir` (one bucket or all) in both engines and
/// compares; returns a report line per segment. Panics on any difference.
async fn compare(dir: &Path, snapshot_run_id: &str, run_at: DateTime<Utc>, bucket: Option<usize>) -> Vec<String> {
    let library = SegmentDefinition::library().expect("the library parses");
    assert!(library.len() >= 7, "the built-in library: {:?}", library.iter().map(|d| &d.name).collect::<Vec<_>>());

    let mut job = duckdb::Job::new(dir, snapshot_run_id, bucket, &library, run_at).expect("job");
    job.threads = Some(2);
    job.memory_limit = Some("1GB".into());
    let duck = duckdb::run_job(&job).expect("DuckDB runs the segments");

    let scratch = tempfile::tempdir().unwrap();
    let ctx = catalog::session(512, scratch.path()).unwrap();
    let scope = RunScope { run_at, snapshot_run_id: snapshot_run_id.to_string(), bucket };
    catalog::register_run(&ctx, &catalog::local_base(dir).unwrap(), &scope).await.unwrap();
    // As a bucket of the function computes it: the shared tables materialised once.
    run::materialise(&ctx, "profile_links", scope.run_at).await.expect("the shared tables");

    let mut report = Vec::new();
    let mut failures = Vec::new();
    for def in &library {
        let started = std::time::Instant::now();
        let members = run::compute(&ctx, def, run_at).await.unwrap_or_else(|e| panic!("DataFusion: {e}"));
        let df_secs = started.elapsed().as_secs_f64();
        let theirs = duck.segment(&def.name).unwrap_or_else(|| panic!("DuckDB has no result for {}", def.name));
        let ours = member_rows(&members, &def.key);
        let diff = diff_members(&ours, &theirs.members);
        if !diff.is_empty() {
            failures.push(format!("{}: members differ: {}", def.name, diff.summary(5)));
        }
        let payloads = diff_payloads(&members, &def.key, theirs);
        if let Some((m, a, b)) = payloads.differing.first() {
            failures.push(format!(
                "{}: {} of {} payloads differ, e.g. {}: DataFusion {a:?}, DuckDB {b:?}",
                def.name,
                payloads.differing.len(),
                payloads.compared,
                m.join("/")
            ));
        }
        if diff.is_empty() && payloads.compared + theirs.ambiguous_payloads as usize != ours.len() {
            failures.push(format!("{}: only {} of {} payloads compared", def.name, payloads.compared, ours.len()));
        }
        report.push(format!(
            "{:<18} {:>6} members ({:>6} DuckDB rows, {} payloads equal, {} ambiguous)  DataFusion {:.3}s  DuckDB {:.3}s",
            def.name,
            ours.len(),
            theirs.rows,
            payloads.compared - payloads.differing.len(),
            theirs.ambiguous_payloads,
            df_secs,
            theirs.seconds
        ));
    }
    assert!(failures.is_empty(), "run_at {run_at}, bucket {bucket:?}:\n{}\n\n{}", failures.join("\n"), report.join("\n"));
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_and_datafusion_agree_on_every_segment() {
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
    let cfg = GenConfig::new(11, 1000, now);
    let snapshot = lake::run_id(now);
    // ARIANE_ORACLE_LAKE=<dir> keeps the lake there and reuses it (debugging the SQL).
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("ARIANE_ORACLE_LAKE").map(std::path::PathBuf::from).unwrap_or_else(|| temp.path().to_path_buf());
    let dir = dir.as_path();
    if !dir.join(".oracle-lake").exists() {
        let built = tokio::task::block_in_place(|| build_truth_lake(&cfg, &Export::ALL, dir, &snapshot, PARTITIONS)).expect("truth lake");
        println!("truth lake: {} persons, {} profiles, {} events, {} links", built.persons, built.profiles, built.events, built.links);
        assert!(built.events > 10_000 && built.profiles > 500, "a lake worth comparing on");
        std::fs::write(dir.join(".oracle-lake"), b"").unwrap();
    }

    // At the generator's `now` (every event is in the past), over every profile.
    let at_now = now + Duration::hours(6);
    for line in compare(dir, &snapshot, at_now, None).await {
        println!("{at_now} all buckets  {line}");
    }
    // Earlier, at an odd instant (later events and partitions are cut off), one bucket.
    let earlier = now - Duration::days(40) + Duration::minutes(13 * 60 + 37);
    for line in compare(dir, &snapshot, earlier, Some(1)).await {
        println!("{earlier} bucket 1  {line}");
    }
}

#[test]
fn a_missing_venv_says_run_make_bootstrap() {
    // The wrapper's own message when `.venv` is absent (simulated with ARIANE_ROOT
    // pointing to an empty directory) — run in a child so the variable stays local.
    if std::env::var_os("ARIANE_ORACLE_CHILD").is_some() {
        let err = duckdb::python().unwrap_err().to_string();
        assert!(err.contains("make bootstrap"), "{err}");
        return;
    }
    let empty = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "a_missing_venv_says_run_make_bootstrap", "--nocapture"])
        .env("ARIANE_ORACLE_CHILD", "1")
        .env("ARIANE_ROOT", empty.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
