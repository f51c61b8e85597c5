//! The daily measures at scale: every measure of `measures/` computed by DataFusion (the
//! measures function's SQL path: `ariane_measures::run::session` over the lake behind its read cache,
//! each measure rendered and collected, with the function's memory settings) and by DuckDB
//! (`scripts/duckdb_measures.py`, the same files, views and SQL), on the same machine: per
//! measure the median wall time of several runs, the DataFusion/DuckDB ratio, a check that
//! both found the same rows, attribution's time (Rust, DataFusion side only), the
//! function's whole run (`run_measures`) and each engine's peak RSS (a bench binary that
//! prints a table; figures go to BENCHMARKS.md).
//!
//! ```text
//! cargo bench --workspace --bench measures                       # 1M persons, ~10M events, 3 runs
//! cargo bench --workspace --bench measures -- --small            # 5,000 persons, ~50k events, 1 run
//! ARIANE_BENCH_SMALL=1 cargo bench --workspace --bench measures  # the same
//! cargo bench --workspace --bench measures -- --persons 20000 --runs 5
//! ```
//!
//! Flags: `--persons N` (1,000,000), `--events N` (approximate; 10 × persons), `--exports
//! LIST|all` (crm/contacts,ecommerce/orders,ecommerce/checkouts,app/events), `--runs N` (3), `--memory-mb N` (3008: the function's memory size, as
//! the template declares `MeasuresFunction`; the function's pool is half of it, its read
//! cache a quarter of the pool, as `MeasuresConfig::from_env` sizes them; DuckDB's
//! `memory_limit` is the same pool), `--threads N` (DuckDB's threads; all cores, as
//! DataFusion's default), `--seed N` (7), `--no-duckdb`, `--small` (5,000 persons, 50,000
//! events, 1 run; also `ARIANE_BENCH_SMALL=1`), `--only NAME,NAME` (those measures only;
//! attribution and the function's whole run are skipped when its inputs are left out),
//! `--compacted` (read the lake after the daily compaction, as the function does at 05:00
//! after the 04:00 compaction: the function's `compact::compact` on a hard-linked copy of
//! the lake, cached beside it; DuckDB reads the same compacted files), `--buckets N` (the
//! compaction's profile buckets, 4 as the template's `SegmentBuckets`), `--sql-dir DIR` (the `*.sql` files of DIR instead of the built-in `measures/`, read at
//! run time: a change to a query is measured without a rebuild; the function's whole run is
//! skipped), `--explain DIR` (each engine's `EXPLAIN ANALYZE` of each measure, after its
//! timed run, in `DIR/<name>.datafusion.txt` and `DIR/<name>.duckdb.txt`).
//!
//! **The lake** is built as the segments bench builds its scale lake
//! (`ariane_local::bench_lake`: a truth lake cached under `$ARIANE_BENCH_DIR`), the
//! generator's exports capped (`max_rows`) so the total is about `--events`. The default
//! exports are those the generator writes person by person: `crm/contacts`,
//! `ecommerce/orders`, `ecommerce/checkouts`, `app/events` (11.7 rows per person uncapped;
//! at 1M persons and 10M events the cap is ~2.76M rows, so CRM covers the first ~860k
//! persons, web shop orders ~940k, the app ~720k, checkouts everyone). The other exports
//! (`email/activity`, `web/events`, `sms/report`, `pos/receipts`) are written in time order
//! across persons, so a cap keeps their *oldest* rows only: at this scale none would reach
//! the measures' period (the last 28 days, 58 for touchpoints), which would then measure
//! nothing of them. `--exports all` with an uncapped lake (`--events` at least ~99 per
//! person) measures every channel. The run is at 2026-11-23 06:00 UTC; its profile
//! snapshot (`measures-20261123`) is the lake's, hard-linked.
//!
//! **Measurement.** Each run of each engine is a child process of its own, so each peak
//! RSS (`VmHWM` for DataFusion, `getrusage` for DuckDB's Python process) is its own; the
//! lake's files are read once beforehand so both find them in the page cache.
//! DataFusion's SQL: the session (catalog, tables, views) then each measure's query
//! collected, as `run_measures` does them; attribution (reading `touchpoints` and
//! `conversions` into Rust, then `attribution::attribute`) timed apart. DuckDB: one
//! connection, the same views, each measure run into a temporary table. The SQL total of
//! each engine counts its session setup and its queries. A third child runs the
//! function's whole daily run (`run_measures` through `FsBlobs`: the SQL, attribution,
//! the Parquet results, the HTML report) once, for its end-to-end time and peak RSS.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use ariane_datagen::Export;
use ariane_local::bench_lake::{self, peak_rss_mb, LakeSpec};
use ariane_local::measures_duckdb::{self as md, diff_tables, read_parquet, TOLERANCE};
use ariane_measures::attribution::attribute;
use ariane_measures::run::{conversions, touchpoints};
use ariane_measures::table::Table;
use ariane_measures::{MeasureDefinition, RunSummary};
use ariane_segments::catalog::{self, Dialect, RunEnv, RunScope};
use ariane_segments::read_cache::ReadCache;
use ariane_shared::lake;
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, TimeZone, Utc};
use datafusion::object_store::local::LocalFileSystem;
use serde::{Deserialize, Serialize};

/// What a DataFusion child runs.
#[derive(Serialize, Deserialize)]
struct ChildJob {
    lake_dir: PathBuf,
    snapshot_run_id: String,
    run_at: DateTime<Utc>,
    memory_size_mb: usize,
    /// Where the steps child writes each measure's result (`<name>.parquet`), if anywhere.
    out_dir: Option<PathBuf>,
    /// The measures to run (see [`definitions`]).
    sql_dir: Option<PathBuf>,
    only: Vec<String>,
    /// Where the steps child writes each measure's `EXPLAIN ANALYZE` (`<name>.datafusion.txt`).
    explain_dir: Option<PathBuf>,
}

/// The measures a run computes: the library (`measures/`, built in) or the `*.sql` files of
/// `--sql-dir` (read at run time, to try a change without a rebuild), only those named by
/// `--only` when given.
fn definitions(sql_dir: Option<&Path>, only: &[String]) -> Vec<MeasureDefinition> {
    let all = match sql_dir {
        None => MeasureDefinition::library().expect("the library parses"),
        Some(dir) => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.expect("a directory entry").path())
                .filter(|p| p.extension().is_some_and(|x| x == "sql"))
                .collect();
            files.sort();
            files
                .iter()
                .map(|p| {
                    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    MeasureDefinition::parse(&p.display().to_string(), &text).unwrap_or_else(|e| panic!("{e}"))
                })
                .collect()
        }
    };
    let picked: Vec<MeasureDefinition> = all.into_iter().filter(|d| only.is_empty() || only.contains(&d.name)).collect();
    assert!(!picked.is_empty(), "no measure to run (--only {only:?})");
    picked
}

#[derive(Serialize, Deserialize)]
struct ChildMeasure {
    name: String,
    rows: usize,
    seconds: f64,
}

/// The SQL and attribution of one run, step by step.
#[derive(Serialize, Deserialize)]
struct StepsResult {
    peak_rss_mb: f64,
    /// The session: the catalog's tables and views over the lake.
    session_seconds: f64,
    measures: Vec<ChildMeasure>,
    /// `touchpoints` and `conversions` read into Rust, then `attribute`.
    attribution_seconds: f64,
    touchpoints: usize,
    conversions: usize,
}

/// The function's whole run.
#[derive(Serialize, Deserialize)]
struct FunctionResult {
    peak_rss_mb: f64,
    seconds: f64,
    summary: RunSummary,
}

fn read_job(path: &Path) -> ChildJob {
    serde_json::from_slice(&std::fs::read(path).expect("job")).expect("job JSON")
}

fn write_result<T: Serialize>(path: &Path, result: &T) {
    std::fs::write(path, serde_json::to_vec(result).expect("JSON")).expect("write the result");
}

/// Child: the function's SQL then attribution, step by step as `run_measures` does them
/// (its runtime, read cache and session; the measures in library order, every result kept
/// until attribution), timed per step.
fn child_steps(job_path: &Path, out_path: &Path) {
    let job = read_job(job_path);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let scratch = tempfile::tempdir().expect("scratch");
    let config = md::function_config(job.memory_size_mb, scratch.path()).unwrap_or_else(|e| panic!("{e:#}"));
    let library = definitions(job.sql_dir.as_deref(), &job.only);
    let store = LocalFileSystem::new_with_prefix(&job.lake_dir).expect("the lake directory");
    let result = runtime.block_on(async {
        let env = RunEnv {
            runtime: catalog::runtime(config.memory_limit_mb, &config.scratch_dir).expect("runtime"),
            lake: Arc::new(ReadCache::new(Arc::new(store), config.lake_cache_mb as u64 * 1024 * 1024)),
        };
        let t = Instant::now();
        let scope = RunScope { run_at: job.run_at, snapshot_run_id: job.snapshot_run_id.clone(), bucket: None };
        let ctx = ariane_measures::run::session(&env, md::LAKE, &scope).await.unwrap_or_else(|e| panic!("the session: {e}"));
        let session_seconds = t.elapsed().as_secs_f64();
        let mut measures = Vec::new();
        let mut tables = BTreeMap::new();
        for def in &library {
            let t = Instant::now();
            let sql = catalog::render(&def.sql, job.run_at, Dialect::DataFusion).unwrap_or_else(|e| panic!("{}: {e}", def.name));
            let df = ctx.sql(&sql).await.unwrap_or_else(|e| panic!("{}: {e}", def.name));
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await.unwrap_or_else(|e| panic!("{}: {e}", def.name));
            let seconds = t.elapsed().as_secs_f64();
            let table = Table { measure: def.name.clone(), batches };
            eprintln!("datafusion: {}: {} rows in {seconds:.3}s", def.name, table.rows());
            if let Some(dir) = &job.out_dir {
                let bytes = lake::parquet_bytes(schema, &table.batches).expect("encode");
                std::fs::write(dir.join(format!("{}.parquet", def.name)), bytes).expect("write the result");
            }
            if let Some(dir) = &job.explain_dir {
                // Apart from the timed run, so the plan's own cost is not counted.
                let plan = ctx.sql(&format!("EXPLAIN ANALYZE {sql}")).await.unwrap_or_else(|e| panic!("{}: {e}", def.name));
                let text = arrow::util::pretty::pretty_format_batches(&plan.collect().await.expect("EXPLAIN ANALYZE"))
                    .expect("format")
                    .to_string();
                std::fs::write(dir.join(format!("{}.datafusion.txt", def.name)), text).expect("write the plan");
            }
            measures.push(ChildMeasure { name: def.name.clone(), rows: table.rows(), seconds });
            tables.insert(def.name.clone(), table);
        }
        let (Some(tp), Some(conv)) = (tables.get("touchpoints"), tables.get("conversions")) else {
            // `--only` left attribution's inputs out.
            return StepsResult { peak_rss_mb: 0.0, session_seconds, measures, attribution_seconds: 0.0, touchpoints: 0, conversions: 0 };
        };
        let t = Instant::now();
        let tp = touchpoints(tp).expect("touchpoints");
        let conv = conversions(conv).expect("conversions");
        let attribution = attribute(&tp, &conv, &config.attribution).expect("attribution");
        let attribution_seconds = t.elapsed().as_secs_f64();
        eprintln!(
            "datafusion: attribution of {} orders over {} touchpoints in {attribution_seconds:.3}s",
            attribution.conversions,
            tp.len()
        );
        StepsResult {
            peak_rss_mb: 0.0,
            session_seconds,
            measures,
            attribution_seconds,
            touchpoints: tp.len(),
            conversions: attribution.conversions,
        }
    });
    write_result(out_path, &StepsResult { peak_rss_mb: peak_rss_mb(), ..result });
}

/// Child: the function's whole daily run (`run_measures`), its results and report written
/// into the lake directory.
fn child_function(job_path: &Path, out_path: &Path) {
    let job = read_job(job_path);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let scratch = tempfile::tempdir().expect("scratch");
    let t = Instant::now();
    let summary = runtime
        .block_on(md::run_function(&job.lake_dir, job.run_at, job.memory_size_mb, scratch.path()))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let seconds = t.elapsed().as_secs_f64();
    write_result(out_path, &FunctionResult { peak_rss_mb: peak_rss_mb(), seconds, summary });
}

fn spawn_child<T: for<'de> Deserialize<'de>>(mode: &str, job: &ChildJob, work: &Path, n: usize) -> T {
    let job_path = work.join(format!("{mode}-job-{n}.json"));
    let out_path = work.join(format!("{mode}-result-{n}.json"));
    std::fs::write(&job_path, serde_json::to_vec(job).expect("JSON")).expect("job");
    let exe = std::env::current_exe().expect("own path");
    let status = Command::new(exe).arg(mode).arg(&job_path).arg(&out_path).status().expect("child runs");
    assert!(status.success(), "the DataFusion child {mode} failed: {status}");
    serde_json::from_slice(&std::fs::read(&out_path).expect("result")).expect("result JSON")
}

/// The exports the generator writes person by person (see the module documentation).
const DEFAULT_EXPORTS: [Export; 4] = [Export::CrmContacts, Export::EcommerceOrders, Export::EcommerceCheckouts, Export::AppEvents];

struct Opts {
    persons: usize,
    events: u64,
    exports: Vec<Export>,
    runs: usize,
    memory_mb: usize,
    threads: usize,
    seed: u64,
    duckdb: bool,
    /// Read the lake after the daily compaction into this many buckets.
    compacted: Option<usize>,
    sql_dir: Option<PathBuf>,
    only: Vec<String>,
    explain_dir: Option<PathBuf>,
}

fn parse_opts(args: &[String]) -> Opts {
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let num = |name: &str| flag(name).map(|v| v.replace('_', "").parse::<u64>().unwrap_or_else(|_| panic!("{name}: not a number: {v}")));
    let small = args.iter().any(|a| a == "--small") || std::env::var_os("ARIANE_BENCH_SMALL").is_some_and(|v| !v.is_empty() && v != "0");
    let persons = num("--persons").unwrap_or(if small { 5_000 } else { 1_000_000 }) as usize;
    Opts {
        persons,
        events: num("--events").unwrap_or(10 * persons as u64),
        exports: bench_lake::parse_exports(flag("--exports").as_deref(), &DEFAULT_EXPORTS).unwrap_or_else(|e| panic!("{e}")),
        runs: num("--runs").unwrap_or(if small { 1 } else { 3 }).max(1) as usize,
        memory_mb: num("--memory-mb").unwrap_or(3008) as usize,
        threads: num("--threads").map(|t| t as usize).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        seed: num("--seed").unwrap_or(7),
        duckdb: !args.iter().any(|a| a == "--no-duckdb"),
        compacted: args.iter().any(|a| a == "--compacted").then(|| num("--buckets").unwrap_or(4).max(1) as usize),
        sql_dir: flag("--sql-dir").map(PathBuf::from),
        only: flag("--only").map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default(),
        explain_dir: flag("--explain").map(PathBuf::from),
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn list(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(", ")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.first().map(String::as_str) {
        Some("--child-steps") => return child_steps(Path::new(&args[1]), Path::new(&args[2])),
        Some("--child-function") => return child_function(Path::new(&args[1]), Path::new(&args[2])),
        Some(bench_lake::CHILD_COMPACT) => {
            return bench_lake::child_compact(Path::new(&args[1]), Path::new(&args[2])).unwrap_or_else(|e| panic!("{e:#}"))
        }
        _ => {}
    }
    let opts = parse_opts(&args);
    // The generator's reference instant; the run happens six hours later.
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).single().expect("date");
    let run_at = now + chrono::Duration::hours(6);
    let base_snapshot = lake::run_id(now);
    let spec = LakeSpec { seed: opts.seed, persons: opts.persons, events: opts.events, exports: opts.exports.clone() };
    let (raw_dir, info) = bench_lake::cached_lake(&spec, now, &base_snapshot).unwrap_or_else(|e| panic!("{e:#}"));
    // The daily compaction runs at 04:00, before the run (as the segments bench does it).
    let compaction = opts.compacted.map(|buckets| {
        bench_lake::compacted_lake(&raw_dir, buckets, opts.memory_mb / 2, now + chrono::Duration::hours(4))
            .unwrap_or_else(|e| panic!("{e:#}"))
    });
    let dir = compaction.as_ref().map_or(raw_dir.clone(), |(d, _)| d.clone());
    let snapshot = md::measures_snapshot(&dir, &base_snapshot, run_at).unwrap_or_else(|e| panic!("{e:#}"));
    let library = definitions(opts.sql_dir.as_deref(), &opts.only);
    if let Some(dir) = &opts.explain_dir {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    let (files, mb) = bench_lake::warm(&dir).unwrap_or_else(|e| panic!("{e:#}"));
    let config = md::function_config(opts.memory_mb, Path::new("/tmp")).unwrap_or_else(|e| panic!("{e:#}"));
    println!(
        "lake: {} persons, {} profiles, {} events, {} identity links; exports {} (max_rows {}); {files} Parquet files, {mb:.0} MB",
        info.persons,
        info.profiles,
        info.events,
        info.links,
        info.exports.join(", "),
        info.max_rows.map(|r| r.to_string()).unwrap_or_else(|| "none".into()),
    );
    if let Some((_, c)) = &compaction {
        println!("{}", c.describe(opts.memory_mb / 2));
    }
    println!(
        "run at {run_at}; {} run(s) per engine; function memory {} MB (DataFusion pool {} MB, read cache {} MB; DuckDB memory_limit {} MB, threads {})",
        opts.runs, opts.memory_mb, config.memory_limit_mb, config.lake_cache_mb, config.memory_limit_mb, opts.threads
    );

    let work = tempfile::tempdir().expect("work dir");
    let (df_out, duck_out) = (work.path().join("datafusion-out"), work.path().join("duckdb-out"));
    std::fs::create_dir_all(&df_out).expect("out dir");
    let job = |out_dir: Option<PathBuf>| ChildJob {
        lake_dir: dir.clone(),
        snapshot_run_id: snapshot.clone(),
        run_at,
        memory_size_mb: opts.memory_mb,
        out_dir,
        sql_dir: opts.sql_dir.clone(),
        only: opts.only.clone(),
        explain_dir: opts.explain_dir.clone(),
    };
    let (mut steps, mut ducks, mut functions) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..opts.runs {
        // The first run of each engine writes its results for the comparison.
        let first = n == 0;
        steps.push(spawn_child::<StepsResult>("--child-steps", &job(first.then(|| df_out.clone())), work.path(), n));
        if opts.duckdb {
            let out = if first { duck_out.clone() } else { work.path().join(format!("duckdb-out-{n}")) };
            let mut j = md::Job::new(&dir, &snapshot, &library, run_at, &out).expect("DuckDB job");
            j.threads = Some(opts.threads);
            j.memory_limit = Some(format!("{}MB", config.memory_limit_mb));
            let spill = work.path().join("duckdb-spill");
            std::fs::create_dir_all(&spill).expect("spill dir");
            j.temp_directory = Some(spill);
            j.explain_dir = opts.explain_dir.clone().filter(|_| first);
            if let Some((_, c)) = &compaction {
                // The same compacted files: every bucket's events and the links' history.
                let (events, links) = c.duckdb_patterns().unwrap_or_else(|e| panic!("{e:#}"));
                j.events_pattern = Some(events);
                j.links_pattern = Some(links);
            }
            ducks.push(md::run_job(&j).unwrap_or_else(|e| panic!("{e:#}")));
        }
        if first && opts.sql_dir.is_none() && opts.only.is_empty() {
            functions.push(spawn_child::<FunctionResult>("--child-function", &job(None), work.path(), n));
        }
    }

    println!();
    println!("| measure | rows | DataFusion s | DuckDB s | DataFusion / DuckDB | same rows |");
    println!("|---|---:|---:|---:|---:|---|");
    let mut mismatches = 0usize;
    for def in &library {
        let df: Vec<f64> = steps.iter().map(|s| s.measures.iter().find(|m| m.name == def.name).expect("measured").seconds).collect();
        let rows = steps[0].measures.iter().find(|m| m.name == def.name).expect("measured").rows;
        let Some(first) = ducks.first() else {
            println!("| {} | {rows} | {:.3} | | | |", def.name, median(&df));
            continue;
        };
        let duck: Vec<f64> = ducks.iter().map(|d| d.measure(&def.name).expect("DuckDB result").seconds).collect();
        let ours = read_parquet(&df_out.join(format!("{}.parquet", def.name))).expect("DataFusion's result");
        let theirs = read_parquet(&first.measure(&def.name).expect("DuckDB result").file).expect("DuckDB's result");
        let diff = diff_tables(&ours, &theirs, TOLERANCE).expect("comparable");
        if !diff.is_empty() {
            mismatches += 1;
            eprintln!("{}: {}", def.name, diff.summary(5));
        }
        println!(
            "| {} | {rows} | {:.3} | {:.3} | {:.2} | {} |",
            def.name,
            median(&df),
            median(&duck),
            median(&df) / median(&duck),
            if diff.is_empty() { "yes".to_string() } else { format!("NO ({} + {})", diff.only_datafusion.len(), diff.only_duckdb.len()) }
        );
    }
    let df_session: Vec<f64> = steps.iter().map(|s| s.session_seconds).collect();
    let df_sql: Vec<f64> = steps.iter().map(|s| s.session_seconds + s.measures.iter().map(|m| m.seconds).sum::<f64>()).collect();
    let duck_setup: Vec<f64> = ducks.iter().map(|d| d.setup_seconds).collect();
    let duck_sql: Vec<f64> = ducks.iter().map(|d| d.setup_seconds + d.query_seconds()).collect();
    let attribution: Vec<f64> = steps.iter().map(|s| s.attribution_seconds).collect();
    if opts.duckdb {
        println!("| session: tables and views | | {:.3} | {:.3} | | |", median(&df_session), median(&duck_setup));
        println!(
            "| **SQL total** | | **{:.3}** | **{:.3}** | **{:.2}** | |",
            median(&df_sql),
            median(&duck_sql),
            median(&df_sql) / median(&duck_sql)
        );
    } else {
        println!("| session: tables and views | | {:.3} | | | |", median(&df_session));
        println!("| **SQL total** | | **{:.3}** | | | |", median(&df_sql));
    }
    println!(
        "| attribution (Rust; {} orders, {} touchpoints) | | {:.3} | | | |",
        steps[0].conversions,
        steps[0].touchpoints,
        median(&attribution)
    );

    println!();
    println!("| process | median s | runs s | peak RSS MB (largest run) |");
    println!("|---|---:|---|---:|");
    let steps_total: Vec<f64> =
        steps.iter().map(|s| s.session_seconds + s.measures.iter().map(|m| m.seconds).sum::<f64>() + s.attribution_seconds).collect();
    let peak = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    println!(
        "| DataFusion: SQL + attribution | {:.2} | {} | {:.0} |",
        median(&steps_total),
        list(&steps_total),
        peak(&steps.iter().map(|s| s.peak_rss_mb).collect::<Vec<_>>())
    );
    if !functions.is_empty() {
        let function_secs: Vec<f64> = functions.iter().map(|f| f.seconds).collect();
        println!(
            "| DataFusion: the function's whole run (`run_measures`: SQL, attribution, Parquet, report) | {:.2} | {} | {:.0} |",
            median(&function_secs),
            list(&function_secs),
            peak(&functions.iter().map(|f| f.peak_rss_mb).collect::<Vec<_>>())
        );
    }
    if let Some(first) = ducks.first() {
        let process: Vec<f64> = ducks.iter().map(|d| d.process_seconds).collect();
        println!(
            "| DuckDB {} (Python process: start, SQL, results written) | {:.2} | {} | {:.0} |",
            first.duckdb_version,
            median(&process),
            list(&process),
            peak(&ducks.iter().map(|d| d.peak_rss_mb).collect::<Vec<_>>())
        );
        println!();
        println!(
            "SQL total runs: DataFusion {} s; DuckDB {} s; ratio of medians {:.2}",
            list(&df_sql),
            list(&duck_sql),
            median(&df_sql) / median(&duck_sql)
        );
    }
    let Some(function) = functions.first() else {
        println!("(the function's whole run is skipped with --sql-dir or --only)");
        std::process::exit(i32::from(mismatches > 0));
    };
    let s = &function.summary;
    println!(
        "function run: {} profiles, {} conversions ({} without touchpoint), {} touchpoints, revenue {} minor units",
        s.profiles, s.conversions, s.conversions_without_touchpoint, s.touchpoints, s.revenue_minor
    );
    if mismatches > 0 {
        eprintln!("{mismatches} measure(s) differ between DataFusion and DuckDB");
        std::process::exit(1);
    }
}
