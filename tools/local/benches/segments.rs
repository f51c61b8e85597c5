//! Segments: every built-in segment computed by DataFusion (the function's code path,
//! `ariane_segments::run::compute`) and by DuckDB (`scripts/duckdb_segments.py`) over the
//! same local lake, on the same machine: per-segment wall time, the DataFusion/DuckDB
//! ratio, totals, peak memory of each engine, and a check that both found the same
//! members (a bench binary that prints a table; figures go to BENCHMARKS.md).
//!
//! ```text
//! cargo bench -p ariane-local --bench segments                          # 1M persons, ~10M events
//! cargo bench -p ariane-local --bench segments -- --persons 20000       # ~200k events
//! cargo bench -p ariane-local --bench segments -- --partitions 4        # one process per bucket
//! cargo bench -p ariane-local --bench segments -- --partitions 4 --compacted --jobs 2
//! cargo bench -p ariane-local --bench segments -- --exports all --events 30000000
//! ```
//!
//! Flags: `--persons N` (1,000,000), `--events N` (approximate; 10 × persons), `--exports
//! LIST|all` (`crm/contacts,pos/receipts,ecommerce/orders,ecommerce/checkouts`), `--partitions K` (1),
//! `--threads N` (all cores), `--mem-mb N` (1536: DataFusion's memory pool and DuckDB's
//! `memory_limit`), `--segments a,b` (all), `--seed N` (7), `--compacted` (read the lake
//! after the daily compaction into K buckets), `--jobs N` (bucket processes at once, 1),
//! `--no-duckdb` (DataFusion only).
//!
//! **Buckets.** Each bucket is computed in a child process of its own, as one
//! `compute_bucket` invocation of the state machine's Map state computes it (the
//! function's `run::run_session`: the lake behind its read cache, the shared tables, then
//! every segment): the bench prints each bucket's time and peak RSS, the work (the sum) and
//! the critical path (the slowest bucket: the run's wall time when every bucket has its
//! invocation). `--jobs N` runs N at once here (2 cores: the wall time then says little).
//!
//! **Compaction.** `--compacted` copies the cached lake as hard links to a sibling
//! directory, runs the function's compaction (`compact::compact`, through
//! `ariane_local::fs_blobs::FsBlobs`) in a child process (its time and peak RSS are
//! printed), caches the result, and both engines read the compacted generation (DuckDB
//! every bucket's events and the links' history, DataFusion its bucket's share).
//!
//! **The lake** is a truth lake (`ariane_local::truth_lake::build_truth_lake`: the
//! generator's exports ingested in-process, identity links and the profile snapshot from
//! the generator's truth), cached under `$ARIANE_BENCH_DIR` (default
//! `~/.cache/ariane-bench`) in a directory named after the parameters, so re-runs skip
//! generation. `--partitions K` re-buckets the cached snapshot into K buckets (a second
//! snapshot run id, `<run id>-k<K>`).
//!
//! **The default mix.** With `seed 7` the generator writes, per person (all persons, not
//! only those active in the channel): `pos/receipts` 5.3 rows, `ecommerce/orders` 2.9,
//! `ecommerce/checkouts` 1.7, `web/events` 25.1, `email/activity` 46.9, `sms/report` 9.8,
//! `app/events` 3.8, `crm/contacts` 3.2 (every person has a CRM contact): every export
//! would be ~99 events per person. The default is `crm/contacts, pos/receipts,
//! ecommerce/orders, ecommerce/checkouts` (13.2 per person uncapped), which populates
//! every segment: store visits for `new-visitor`, carts for `abandoned-cart`, e-commerce
//! order lines (with the category slugs `cross-sell` pairs) and till receipts for
//! `cross-sell`, `up-sell`, `reactivation`, `rfm` and `vip`, store and web engagement for
//! `preferred-channel`. `--events N` (default 10 × persons) sets the generator's
//! `max_rows` (a cap on every export's rows; the generator writes persons in index order,
//! so a capped export covers the first persons only) to the value that makes the
//! estimated total N: for 1M persons and 10M events the cap is ~2.76M rows, so CRM
//! contacts cover the first ~860k persons, e-commerce orders the first ~940k, till
//! receipts the first ~520k, checkouts everyone (~0.95M profiles).
//!
//! **Measurement.** Each engine runs in its own child processes, so each peak RSS
//! (`VmHWM` for DataFusion, `getrusage` for DuckDB's Python process) is its own. The lake's
//! files are read once beforehand so both find them in the page cache. DataFusion: like
//! the function, one session per bucket on one runtime (a memory pool of `--mem-mb`
//! spilling to a scratch directory, the listing and Parquet metadata caches, a read cache
//! of a quarter of the pool), `target_partitions` = `--threads`; a segment's time is its
//! query and members (`run::compute`), summed over buckets; the session and its shared
//! tables are a row of their own, counted in the total. DuckDB: one
//! connection, `threads` = `--threads`, `memory_limit` = `--mem-mb`; a segment's time is its
//! query run into a temporary table (DuckDB always reads every bucket at once).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ariane_datagen::Export;
use ariane_local::bench_lake::{self, peak_rss_mb, LakeSpec};
use ariane_local::duckdb::{self, diff_members, diff_payloads, member_rows};
use ariane_local::truth_lake::parquet_files;
use ariane_segments::catalog::RunScope;
use ariane_segments::snapshot::{self, SnapshotMarker};
use ariane_segments::{run, SegmentDefinition};
use ariane_shared::lake;
use ariane_shared::model::SegmentMember;
use arrow::array::{Array, BooleanArray, StringArray};
use chrono::{DateTime, TimeZone, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

const DEFAULT_EXPORTS: [Export; 4] = [Export::CrmContacts, Export::PosReceipts, Export::EcommerceOrders, Export::EcommerceCheckouts];

/// What a DataFusion child runs: one bucket of the run (or all profiles), as one
/// `compute_bucket` invocation of the function computes it.
#[derive(Serialize, Deserialize)]
struct ChildJob {
    lake_dir: PathBuf,
    snapshot_run_id: String,
    run_at: DateTime<Utc>,
    bucket: Option<usize>,
    threads: usize,
    mem_mb: usize,
    segments: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ChildSegment {
    name: String,
    seconds: f64,
    /// The members as JSON: the child writes them out and drops them, as the function
    /// writes a segment's members to the lake before the next segment, so the child's
    /// peak RSS is the function's and not the harness's.
    members_file: PathBuf,
    members: usize,
}

#[derive(Serialize, Deserialize)]
struct ChildResult {
    bucket: Option<usize>,
    peak_rss_mb: f64,
    seconds: f64,
    /// The session and its shared tables (`profile_links`), computed once for every
    /// segment of the bucket: counted in the total, not in any segment.
    shared_seconds: f64,
    segments: Vec<ChildSegment>,
}

/// Child: every segment of one bucket with DataFusion, with the function's own code
/// (`run::run_session`, then `run::compute` per segment).
fn child_datafusion(job_path: &Path, out_path: &Path) {
    let job: ChildJob = serde_json::from_slice(&std::fs::read(job_path).expect("job")).expect("job JSON");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(job.threads).enable_all().build().expect("runtime");
    let library = SegmentDefinition::library().expect("the library parses");
    let started = Instant::now();
    let scratch = tempfile::tempdir().expect("scratch");
    let chosen: Vec<&SegmentDefinition> = library.iter().filter(|d| job.segments.contains(&d.name)).collect();
    let env = bench_lake::run_env(&job.lake_dir, job.mem_mb, scratch.path()).unwrap_or_else(|e| panic!("{e:#}"));
    let (shared_seconds, segments) = runtime.block_on(async {
        let t = Instant::now();
        let scope = RunScope { run_at: job.run_at, snapshot_run_id: job.snapshot_run_id.clone(), bucket: job.bucket };
        let ctx = run::run_session(&env, bench_lake::LAKE, &scope).await.unwrap_or_else(|e| panic!("the bucket's session: {e}"));
        ctx.sql(&format!("SET datafusion.execution.target_partitions = {}", job.threads)).await.expect("SET target_partitions");
        let shared = t.elapsed().as_secs_f64();
        let mut out = Vec::new();
        for def in &chosen {
            let t = Instant::now();
            let members = run::compute(&ctx, def, job.run_at).await.unwrap_or_else(|e| panic!("DataFusion: {e}"));
            let seconds = t.elapsed().as_secs_f64();
            eprintln!("datafusion bucket {:?}: {}: {} members in {seconds:.3}s", job.bucket, def.name, members.len());
            let members_file = out_path.with_extension(format!("{}.members.json", def.name));
            std::fs::write(&members_file, serde_json::to_vec(&members).expect("JSON")).expect("write the members");
            out.push(ChildSegment { name: def.name.clone(), seconds, members_file, members: members.len() });
        }
        eprintln!("datafusion bucket {:?}: session and shared tables in {shared:.3}s", job.bucket);
        (shared, out)
    });
    let result =
        ChildResult { bucket: job.bucket, peak_rss_mb: peak_rss_mb(), seconds: started.elapsed().as_secs_f64(), shared_seconds, segments };
    std::fs::write(out_path, serde_json::to_vec(&result).expect("JSON")).expect("write the result");
}

struct Opts {
    persons: usize,
    events: u64,
    exports: Vec<Export>,
    partitions: usize,
    threads: usize,
    mem_mb: usize,
    segments: Option<Vec<String>>,
    seed: u64,
    compacted: bool,
    jobs: usize,
    duckdb: bool,
}

fn parse_opts(args: &[String]) -> Opts {
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let num = |name: &str| flag(name).map(|v| v.replace('_', "").parse::<u64>().unwrap_or_else(|_| panic!("{name}: not a number: {v}")));
    let persons = num("--persons").unwrap_or(1_000_000) as usize;
    let exports = bench_lake::parse_exports(flag("--exports").as_deref(), &DEFAULT_EXPORTS).unwrap_or_else(|e| panic!("{e}"));
    Opts {
        persons,
        events: num("--events").unwrap_or(10 * persons as u64),
        exports,
        partitions: num("--partitions").unwrap_or(1).max(1) as usize,
        threads: num("--threads").map(|t| t as usize).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        mem_mb: num("--mem-mb").unwrap_or(1536) as usize,
        segments: flag("--segments").map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
        seed: num("--seed").unwrap_or(7),
        compacted: args.iter().any(|a| a == "--compacted"),
        jobs: num("--jobs").unwrap_or(1).max(1) as usize,
        duckdb: !args.iter().any(|a| a == "--no-duckdb"),
    }
}

/// The snapshot of `snapshot` (one bucket) split into `k` buckets as snapshot
/// `<snapshot>-k<k>`, by `lake::profile_bucket` as the function does; returns its run id.
fn rebucket(dir: &Path, snapshot: &str, k: usize) -> String {
    let id = format!("{snapshot}-k{k}");
    let target = dir.join(lake::profiles_snapshot_prefix(&id));
    let marker = dir.join(snapshot::marker_key(&id));
    if target.join(".complete").exists() && marker.exists() {
        return id;
    }
    let _ = std::fs::remove_dir_all(&target);
    let mut writers: Vec<_> = (0..k)
        .map(|b| {
            let path = dir.join(lake::profiles_snapshot_key(&id, b));
            std::fs::create_dir_all(path.parent().expect("bucket folder")).expect("bucket folder");
            lake::parquet_writer(std::fs::File::create(path).expect("bucket file"), lake::profiles_schema()).expect("writer")
        })
        .collect();
    let mut profiles = 0usize;
    for file in parquet_files(&dir.join(lake::profiles_snapshot_prefix(snapshot))).expect("the snapshot's files") {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).expect("snapshot"))
            .expect("snapshot")
            .build()
            .expect("snapshot");
        for batch in reader {
            let batch = batch.expect("snapshot batch");
            let ids = batch.column_by_name("profile_id").and_then(|c| c.as_any().downcast_ref::<StringArray>()).expect("profile_id");
            profiles += ids.len();
            let buckets: Vec<usize> = (0..ids.len()).map(|i| lake::profile_bucket(ids.value(i), k)).collect();
            for (b, writer) in writers.iter_mut().enumerate() {
                let mask = BooleanArray::from(buckets.iter().map(|x| *x == b).collect::<Vec<_>>());
                let part = arrow::compute::filter_record_batch(&batch, &mask).expect("filter");
                if part.num_rows() > 0 {
                    writer.write(&part).expect("write bucket");
                }
            }
        }
    }
    for w in writers {
        w.close().expect("close bucket");
    }
    // The snapshot marker the function writes: a bucketed run over a compacted lake reads
    // only its bucket's share when the partition counts agree.
    let content = SnapshotMarker { run_id: id.clone(), partitions: k, profiles };
    std::fs::write(&marker, serde_json::to_vec(&content).expect("JSON")).expect("snapshot marker");
    std::fs::write(target.join(".complete"), b"").expect("marker");
    id
}

/// Every bucket's child, `jobs` at a time; returns them in bucket order and the wall time.
fn run_datafusion_children(jobs: &[ChildJob], at_once: usize, work: &Path) -> (Vec<ChildResult>, f64) {
    let exe = std::env::current_exe().expect("own path");
    let started = Instant::now();
    let mut results = Vec::new();
    for (wave, chunk) in jobs.chunks(at_once).enumerate() {
        let running: Vec<_> = chunk
            .iter()
            .enumerate()
            .map(|(i, job)| {
                let n = wave * at_once + i;
                let job_path = work.join(format!("datafusion-job-{n}.json"));
                let out_path = work.join(format!("datafusion-result-{n}.json"));
                std::fs::write(&job_path, serde_json::to_vec(job).expect("JSON")).expect("job");
                let child = Command::new(&exe).arg("--child-datafusion").arg(&job_path).arg(&out_path).spawn().expect("child runs");
                (child, out_path)
            })
            .collect();
        for (mut child, out_path) in running {
            let status = child.wait().expect("child");
            assert!(status.success(), "a DataFusion child failed: {status}");
            results.push(serde_json::from_slice(&std::fs::read(&out_path).expect("result")).expect("result JSON"));
        }
    }
    (results, started.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.first().map(String::as_str) {
        Some("--child-datafusion") => return child_datafusion(Path::new(&args[1]), Path::new(&args[2])),
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
    let snapshot = if opts.partitions > 1 { rebucket(&raw_dir, &base_snapshot, opts.partitions) } else { base_snapshot };
    // The compaction runs at 04:00, before the run.
    let compaction = opts.compacted.then(|| {
        bench_lake::compacted_lake(&raw_dir, opts.partitions, opts.mem_mb, now + chrono::Duration::hours(4))
            .unwrap_or_else(|e| panic!("{e:#}"))
    });
    let dir = compaction.as_ref().map_or(raw_dir.clone(), |(d, _)| d.clone());
    let library = SegmentDefinition::library().expect("the library parses");
    let definitions: Vec<SegmentDefinition> =
        library.into_iter().filter(|d| opts.segments.as_ref().is_none_or(|s| s.contains(&d.name))).collect();
    assert!(!definitions.is_empty(), "no segment selected");
    let (files, mb) = bench_lake::warm(&dir).unwrap_or_else(|e| panic!("{e:#}"));
    println!(
        "lake: {} persons, {} profiles, {} events, {} identity links; exports {} (max_rows {}); {files} Parquet files, {mb:.0} MB{}",
        info.persons,
        info.profiles,
        info.events,
        info.links,
        info.exports.join(", "),
        info.max_rows.map(|r| r.to_string()).unwrap_or_else(|| "none".into()),
        if compaction.is_some() { " (compacted)" } else { "" },
    );
    if let Some((_, c)) = &compaction {
        println!("{}", c.describe(opts.mem_mb));
    }
    println!(
        "run at {run_at}; threads {}; memory {} MB (DataFusion pool, DuckDB memory_limit); DataFusion buckets {} ({} process(es) at once)",
        opts.threads, opts.mem_mb, opts.partitions, opts.jobs
    );

    let work = tempfile::tempdir().expect("work dir");
    let buckets: Vec<Option<usize>> = if opts.partitions > 1 { (0..opts.partitions).map(Some).collect() } else { vec![None] };
    let jobs: Vec<ChildJob> = buckets
        .iter()
        .map(|bucket| ChildJob {
            lake_dir: dir.clone(),
            snapshot_run_id: snapshot.clone(),
            run_at,
            bucket: *bucket,
            threads: opts.threads,
            mem_mb: opts.mem_mb,
            segments: definitions.iter().map(|d| d.name.clone()).collect(),
        })
        .collect();
    let (children, df_wall) = run_datafusion_children(&jobs, opts.jobs, work.path());

    // Per segment: time and members summed over the buckets.
    let mut df_segments: BTreeMap<String, (f64, Vec<SegmentMember>)> = BTreeMap::new();
    for child in &children {
        for seg in &child.segments {
            let entry = df_segments.entry(seg.name.clone()).or_default();
            entry.0 += seg.seconds;
            let members: Vec<SegmentMember> =
                serde_json::from_slice(&std::fs::read(&seg.members_file).expect("members")).expect("members JSON");
            assert_eq!(members.len(), seg.members, "{}: members read back", seg.name);
            entry.1.extend(members);
        }
    }
    let shared_total: f64 = children.iter().map(|c| c.shared_seconds).sum();

    let duck = opts.duckdb.then(|| {
        let mut job = duckdb::Job::new(&dir, &snapshot, None, &definitions, run_at).expect("DuckDB job");
        if let Some((_, c)) = &compaction {
            // The same compacted files: every bucket's events and the links' history.
            let (events, links) = c.duckdb_patterns().unwrap_or_else(|e| panic!("{e:#}"));
            job.events_pattern = Some(events);
            job.links_pattern = Some(links);
        }
        job.threads = Some(opts.threads);
        job.memory_limit = Some(format!("{}MB", opts.mem_mb));
        let spill = work.path().join("duckdb-spill");
        std::fs::create_dir_all(&spill).expect("spill dir");
        job.temp_directory = Some(spill);
        duckdb::run_job(&job).unwrap_or_else(|e| panic!("{e:#}"))
    });

    println!();
    println!("| segment | members | DataFusion s | DuckDB s | DataFusion / DuckDB | same members | same payloads |");
    println!("|---|---:|---:|---:|---:|---|---|");
    let (mut df_total, mut duck_total, mut mismatches) = (0.0, 0.0, 0usize);
    for def in &definitions {
        let (seconds, members) = &df_segments[def.name.as_str()];
        let rows = member_rows(members, &def.key);
        df_total += seconds;
        let Some(duck) = &duck else {
            println!("| {} | {} | {seconds:.3} | | | | |", def.name, rows.len());
            continue;
        };
        let theirs = duck.segment(&def.name).expect("DuckDB result");
        let diff = diff_members(&rows, &theirs.members);
        let payloads = diff_payloads(members, &def.key, theirs);
        if !diff.is_empty() {
            mismatches += 1;
            eprintln!("{}: members differ: {}", def.name, diff.summary(5));
        }
        if let Some((m, a, b)) = payloads.differing.first() {
            eprintln!(
                "{}: {} of {} payloads differ, e.g. {}: DataFusion {a:?}, DuckDB {b:?}",
                def.name,
                payloads.differing.len(),
                payloads.compared,
                m.join("/")
            );
        }
        duck_total += theirs.seconds;
        println!(
            "| {} | {} | {seconds:.3} | {:.3} | {:.2} | {} | {} |",
            def.name,
            rows.len(),
            theirs.seconds,
            seconds / theirs.seconds,
            if diff.is_empty() { "yes".to_string() } else { format!("NO ({})", diff.only_datafusion.len() + diff.only_duckdb.len()) },
            if payloads.differing.is_empty() {
                format!("yes ({} compared)", payloads.compared)
            } else {
                format!("NO ({} of {})", payloads.differing.len(), payloads.compared)
            },
        );
    }
    println!("| session and shared tables (once per bucket) | | {shared_total:.3} | | | | |");
    df_total += shared_total;
    if duck.is_some() {
        println!("| **total** | | **{df_total:.3}** | **{duck_total:.3}** | **{:.2}** | | |", df_total / duck_total);
    } else {
        println!("| **total** | | **{df_total:.3}** | | | | |");
    }

    println!();
    println!("| bucket | session and shared tables s | segments s | process s | peak RSS MB |");
    println!("|---|---:|---:|---:|---:|");
    for child in &children {
        let segments: f64 = child.segments.iter().map(|s| s.seconds).sum();
        println!(
            "| {} | {:.1} | {segments:.1} | {:.1} | {:.0} |",
            child.bucket.map_or("all".to_string(), |b| b.to_string()),
            child.shared_seconds,
            child.seconds,
            child.peak_rss_mb
        );
    }
    let work_seconds: f64 = children.iter().map(|c| c.seconds).sum();
    let critical = children.iter().map(|c| c.seconds).fold(0.0, f64::max);
    let peak = children.iter().map(|c| c.peak_rss_mb).fold(0.0, f64::max);
    println!();
    println!(
        "DataFusion: work {work_seconds:.1}s over {} bucket process(es), critical path (one bucket per invocation, all at once) {critical:.1}s, wall time here with {} at once {df_wall:.1}s; largest peak RSS {peak:.0} MB (pool {} MB)",
        children.len(),
        opts.jobs,
        opts.mem_mb
    );
    if let Some(duck) = &duck {
        println!(
            "DuckDB: {:.1}s in one process ({duck_total:.1}s of queries, setup {:.2}s), peak RSS {:.0} MB (duckdb {}, memory_limit {} MB); work / DuckDB {:.2}, critical path / DuckDB {:.2}",
            duck.process_seconds,
            duck.setup_seconds,
            duck.peak_rss_mb,
            duck.duckdb_version,
            opts.mem_mb,
            work_seconds / duck.process_seconds,
            critical / duck.process_seconds
        );
    }
    if mismatches > 0 {
        eprintln!("{mismatches} segment(s) differ between DataFusion and DuckDB");
        std::process::exit(1);
    }
}
