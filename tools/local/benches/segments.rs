//! Segments: every built-in segment computed by DataFusion (the function's code path,
//! `ariane_segments::run::compute`) and by DuckDB (`scripts/duckdb_segments.py`) over the
//! same local lake, on the same machine: per-segment wall time, the DataFusion/DuckDB
//! ratio, totals, peak memory of each engine, and a check that both found the same
//! members (a bench binary that prints a table; figures go to BENCHMARKS.md).
//!
//! ```text
//! cargo bench -p ariane-local --bench segments                          # 1M persons, ~10M events
//! cargo bench -p ariane-local --bench segments -- --persons 20000       # ~200k events
//! cargo bench -p ariane-local --bench segments -- --partitions 4        # DataFusion bucket by bucket
//! cargo bench -p ariane-local --bench segments -- --exports all --events 30000000
//! ```
//!
//! Flags: `--persons N` (1,000,000), `--events N` (approximate; 10 × persons), `--exports
//! LIST|all` (`crm/contacts,pos/receipts,ecommerce/orders,ecommerce/checkouts`), `--partitions K` (1),
//! `--threads N` (all cores), `--mem-mb N` (1536: DataFusion's memory pool and DuckDB's
//! `memory_limit`), `--segments a,b` (all), `--seed N` (7).
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
//! **Measurement.** Each engine runs in its own child process, so each peak RSS
//! (`VmHWM` for DataFusion, `getrusage` for DuckDB's Python process) is its own. The lake's
//! files are read once beforehand so both find them in the page cache. DataFusion: like
//! the function, one session per segment (and per bucket) on one runtime for the run (a
//! memory pool of `--mem-mb` spilling to a scratch directory, and the listing and Parquet
//! metadata caches), `target_partitions` = `--threads`; a segment's time is session setup,
//! query and members (`run::compute`), summed over buckets. DuckDB: one
//! connection, `threads` = `--threads`, `memory_limit` = `--mem-mb`; a segment's time is its
//! query run into a temporary table (DuckDB always reads every bucket at once).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ariane_datagen::{Export, GenConfig};
use ariane_local::duckdb::{self, diff_members, diff_payloads, member_rows};
use ariane_local::truth_lake::build_truth_lake;
use ariane_segments::catalog::{self, RunScope};
use ariane_segments::{run, SegmentDefinition};
use ariane_shared::lake;
use ariane_shared::model::SegmentMember;
use arrow::array::{Array, BooleanArray, StringArray};
use chrono::{DateTime, TimeZone, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};

/// Rows per person of each export (seed 7, 5000 persons): see the module documentation.
fn rows_per_person(export: Export) -> f64 {
    match export {
        Export::PosReceipts => 5.31,
        Export::EcommerceOrders => 2.94,
        Export::EcommerceCheckouts => 1.72,
        Export::WebEvents => 25.12,
        Export::EmailActivity => 46.87,
        Export::SmsReport => 9.75,
        Export::AppEvents => 3.85,
        Export::CrmContacts => 3.22,
    }
}

const DEFAULT_EXPORTS: [Export; 4] = [Export::CrmContacts, Export::PosReceipts, Export::EcommerceOrders, Export::EcommerceCheckouts];

/// The generator's `max_rows` making the estimated events of `exports` for `persons` about
/// `events` (None: the uncapped mix is not above it).
fn max_rows_for(exports: &[Export], persons: usize, events: u64) -> Option<u64> {
    let estimate = |cap: f64| exports.iter().map(|e| (rows_per_person(*e) * persons as f64).min(cap)).sum::<f64>();
    let uncapped = estimate(f64::INFINITY);
    if uncapped <= events as f64 {
        return None;
    }
    let (mut lo, mut hi) = (0.0f64, uncapped);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if estimate(mid) < events as f64 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi.round() as u64)
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// What the DataFusion child runs.
#[derive(Serialize, Deserialize)]
struct ChildJob {
    lake_dir: PathBuf,
    snapshot_run_id: String,
    run_at: DateTime<Utc>,
    partitions: usize,
    threads: usize,
    mem_mb: usize,
    segments: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ChildSegment {
    name: String,
    seconds: f64,
    members: Vec<SegmentMember>,
}

#[derive(Serialize, Deserialize)]
struct ChildResult {
    peak_rss_mb: f64,
    seconds: f64,
    /// The bucket sessions' shared tables (`profile_links`), computed once per bucket for
    /// every segment: counted in the total, not in any segment.
    shared_seconds: f64,
    segments: Vec<ChildSegment>,
}

/// Child: every segment with DataFusion, as the function computes it.
fn child_datafusion(job_path: &Path, out_path: &Path) {
    let job: ChildJob = serde_json::from_slice(&std::fs::read(job_path).expect("job")).expect("job JSON");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(job.threads).enable_all().build().expect("runtime");
    let library = SegmentDefinition::library().expect("the library parses");
    let base = catalog::local_base(&job.lake_dir).expect("lake path");
    let buckets: Vec<Option<usize>> = if job.partitions > 1 { (0..job.partitions).map(Some).collect() } else { vec![None] };
    let started = Instant::now();
    let scratch = tempfile::tempdir().expect("scratch");
    let chosen: Vec<&SegmentDefinition> = library.iter().filter(|d| job.segments.contains(&d.name)).collect();
    let (shared_seconds, segments) = runtime.block_on(async {
        // As the function computes a bucket: one DataFusion runtime for the run (the memory
        // pool, the listing and Parquet metadata caches), one session per bucket in which
        // the shared tables (`profile_links`) are materialised once, then every segment.
        let df_runtime = catalog::runtime(job.mem_mb, scratch.path()).expect("runtime");
        let mut out: Vec<ChildSegment> =
            chosen.iter().map(|d| ChildSegment { name: d.name.clone(), seconds: 0.0, members: Vec::new() }).collect();
        let mut shared = 0.0;
        for bucket in &buckets {
            let t = Instant::now();
            let ctx = catalog::session_on(df_runtime.clone());
            ctx.sql(&format!("SET datafusion.execution.target_partitions = {}", job.threads)).await.expect("SET target_partitions");
            let scope = RunScope { run_at: job.run_at, snapshot_run_id: job.snapshot_run_id.clone(), bucket: *bucket };
            catalog::register_run(&ctx, &base, &scope).await.expect("register the run");
            run::materialise(&ctx, "profile_links", job.run_at).await.expect("the shared tables");
            shared += t.elapsed().as_secs_f64();
            for (def, result) in chosen.iter().zip(out.iter_mut()) {
                let t = Instant::now();
                let part = run::compute(&ctx, def, job.run_at).await.unwrap_or_else(|e| panic!("DataFusion: {e}"));
                result.seconds += t.elapsed().as_secs_f64();
                result.members.extend(part);
            }
        }
        for result in &out {
            eprintln!("datafusion: {}: {} members in {:.3}s", result.name, result.members.len(), result.seconds);
        }
        eprintln!("datafusion: shared tables in {shared:.3}s");
        (shared, out)
    });
    let result = ChildResult { peak_rss_mb: peak_rss_mb(), seconds: started.elapsed().as_secs_f64(), shared_seconds, segments };
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
}

fn parse_opts(args: &[String]) -> Opts {
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let num = |name: &str| flag(name).map(|v| v.replace('_', "").parse::<u64>().unwrap_or_else(|_| panic!("{name}: not a number: {v}")));
    let persons = num("--persons").unwrap_or(1_000_000) as usize;
    let exports = match flag("--exports").as_deref() {
        None => DEFAULT_EXPORTS.to_vec(),
        Some("all") => Export::ALL.to_vec(),
        Some(list) => list.split(',').map(|e| e.parse::<Export>().unwrap_or_else(|err| panic!("--exports: {err}"))).collect(),
    };
    Opts {
        persons,
        events: num("--events").unwrap_or(10 * persons as u64),
        exports,
        partitions: num("--partitions").unwrap_or(1).max(1) as usize,
        threads: num("--threads").map(|t| t as usize).unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
        mem_mb: num("--mem-mb").unwrap_or(1536) as usize,
        segments: flag("--segments").map(|s| s.split(',').map(|x| x.trim().to_string()).collect()),
        seed: num("--seed").unwrap_or(7),
    }
}

/// What the cache remembers of a built lake.
#[derive(Serialize, Deserialize)]
struct LakeInfo {
    persons: usize,
    max_rows: Option<u64>,
    exports: Vec<String>,
    profiles: usize,
    events: u64,
    links: u64,
    build_seconds: f64,
}

fn bench_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ARIANE_BENCH_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache/ariane-bench")
}

/// The cached lake of these parameters, built when missing.
fn lake(opts: &Opts, now: DateTime<Utc>, snapshot: &str) -> (PathBuf, LakeInfo) {
    let max_rows = max_rows_for(&opts.exports, opts.persons, opts.events);
    let mix: Vec<String> = opts.exports.iter().map(|e| format!("{}-{}", e.channel(), e.name())).collect();
    let name = format!(
        "segments-lake-s{}-p{}-r{}-{}",
        opts.seed,
        opts.persons,
        max_rows.map(|r| r.to_string()).unwrap_or_else(|| "all".into()),
        mix.join("+")
    );
    let dir = bench_root().join(name);
    let info_path = dir.join("bench-lake.json");
    if let Ok(bytes) = std::fs::read(&info_path) {
        if let Ok(info) = serde_json::from_slice::<LakeInfo>(&bytes) {
            eprintln!("lake: cached in {}", dir.display());
            return (dir, info);
        }
    }
    let building = dir.with_extension("building");
    let _ = std::fs::remove_dir_all(&building);
    let mut cfg = GenConfig::new(opts.seed, opts.persons, now);
    cfg.max_rows = max_rows;
    eprintln!(
        "lake: generating {} persons, exports {}, max_rows {:?} into {} (once; cached)",
        opts.persons,
        mix.join(", "),
        max_rows,
        dir.display()
    );
    let t = Instant::now();
    let built = build_truth_lake(&cfg, &opts.exports, &building, snapshot, 1).expect("build the truth lake");
    let info = LakeInfo {
        persons: opts.persons,
        max_rows,
        exports: mix,
        profiles: built.profiles,
        events: built.events,
        links: built.links,
        build_seconds: t.elapsed().as_secs_f64(),
    };
    // The per-event truth and the scratch space are not needed by the benchmark.
    let _ = std::fs::remove_dir_all(building.join("_truth"));
    std::fs::write(building.join("bench-lake.json"), serde_json::to_vec_pretty(&info).expect("JSON")).expect("lake info");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&building, &dir).expect("move the lake in place");
    eprintln!("lake: built in {:.0}s", info.build_seconds);
    (dir, info)
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The snapshot of `snapshot` (one bucket) split into `k` buckets as snapshot
/// `<snapshot>-k<k>`, by `lake::profile_bucket` as the function does; returns its run id.
fn rebucket(dir: &Path, snapshot: &str, k: usize) -> String {
    let id = format!("{snapshot}-k{k}");
    let target = dir.join(lake::profiles_snapshot_prefix(&id));
    if target.join(".complete").exists() {
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
    for file in parquet_files(&dir.join(lake::profiles_snapshot_prefix(snapshot))) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).expect("snapshot"))
            .expect("snapshot")
            .build()
            .expect("snapshot");
        for batch in reader {
            let batch = batch.expect("snapshot batch");
            let ids = batch.column_by_name("profile_id").and_then(|c| c.as_any().downcast_ref::<StringArray>()).expect("profile_id");
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
    std::fs::write(target.join(".complete"), b"").expect("marker");
    id
}

/// Reads every file once, so neither engine pays for a cold page cache.
fn warm(dir: &Path) -> (usize, f64) {
    let files = parquet_files(dir);
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    for f in &files {
        let mut file = std::fs::File::open(f).expect("lake file");
        loop {
            let n = file.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
    }
    (files.len(), bytes as f64 / 1_048_576.0)
}

fn run_datafusion_child(job: &ChildJob, work: &Path) -> ChildResult {
    let job_path = work.join("datafusion-job.json");
    let out_path = work.join("datafusion-result.json");
    std::fs::write(&job_path, serde_json::to_vec(job).expect("JSON")).expect("job");
    let exe = std::env::current_exe().expect("own path");
    let status = Command::new(exe).arg("--child-datafusion").arg(&job_path).arg(&out_path).status().expect("child runs");
    assert!(status.success(), "the DataFusion child failed: {status}");
    serde_json::from_slice(&std::fs::read(&out_path).expect("result")).expect("result JSON")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("--child-datafusion") {
        return child_datafusion(Path::new(&args[1]), Path::new(&args[2]));
    }
    let opts = parse_opts(&args);
    // The generator's reference instant; the run happens six hours later.
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).single().expect("date");
    let run_at = now + chrono::Duration::hours(6);
    let base_snapshot = lake::run_id(now);
    let (dir, info) = lake(&opts, now, &base_snapshot);
    let snapshot = if opts.partitions > 1 { rebucket(&dir, &base_snapshot, opts.partitions) } else { base_snapshot };
    let library = SegmentDefinition::library().expect("the library parses");
    let definitions: Vec<SegmentDefinition> =
        library.into_iter().filter(|d| opts.segments.as_ref().is_none_or(|s| s.contains(&d.name))).collect();
    assert!(!definitions.is_empty(), "no segment selected");
    let (files, mb) = warm(&dir);
    println!(
        "lake: {} persons, {} profiles, {} events, {} identity links; exports {} (max_rows {}); {files} Parquet files, {mb:.0} MB",
        info.persons,
        info.profiles,
        info.events,
        info.links,
        info.exports.join(", "),
        info.max_rows.map(|r| r.to_string()).unwrap_or_else(|| "none".into()),
    );
    println!(
        "run at {run_at}; threads {}; memory {} MB (DataFusion pool, DuckDB memory_limit); DataFusion partitions {}",
        opts.threads, opts.mem_mb, opts.partitions
    );

    let work = tempfile::tempdir().expect("work dir");
    let df = run_datafusion_child(
        &ChildJob {
            lake_dir: dir.clone(),
            snapshot_run_id: snapshot.clone(),
            run_at,
            partitions: opts.partitions,
            threads: opts.threads,
            mem_mb: opts.mem_mb,
            segments: definitions.iter().map(|d| d.name.clone()).collect(),
        },
        work.path(),
    );

    let mut job = duckdb::Job::new(&dir, &snapshot, None, &definitions, run_at).expect("DuckDB job");
    job.threads = Some(opts.threads);
    job.memory_limit = Some(format!("{}MB", opts.mem_mb));
    let spill = work.path().join("duckdb-spill");
    std::fs::create_dir_all(&spill).expect("spill dir");
    job.temp_directory = Some(spill);
    let duck = duckdb::run_job(&job).unwrap_or_else(|e| panic!("{e:#}"));

    println!();
    println!("| segment | members | DataFusion s | DuckDB s | DataFusion / DuckDB | same members | same payloads |");
    println!("|---|---:|---:|---:|---:|---|---|");
    let (mut df_total, mut duck_total, mut mismatches) = (0.0, 0.0, 0usize);
    let by_name: BTreeMap<&str, &ChildSegment> = df.segments.iter().map(|s| (s.name.as_str(), s)).collect();
    for def in &definitions {
        let ours = by_name[def.name.as_str()];
        let theirs = duck.segment(&def.name).expect("DuckDB result");
        let rows = member_rows(&ours.members, &def.key);
        let diff = diff_members(&rows, &theirs.members);
        let payloads = diff_payloads(&ours.members, &def.key, theirs);
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
        df_total += ours.seconds;
        duck_total += theirs.seconds;
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.2} | {} | {} |",
            def.name,
            rows.len(),
            ours.seconds,
            theirs.seconds,
            ours.seconds / theirs.seconds,
            if diff.is_empty() { "yes".to_string() } else { format!("NO ({})", diff.only_datafusion.len() + diff.only_duckdb.len()) },
            if payloads.differing.is_empty() {
                format!("yes ({} compared)", payloads.compared)
            } else {
                format!("NO ({} of {})", payloads.differing.len(), payloads.compared)
            },
        );
    }
    println!("| shared tables (once per bucket) | | {:.3} | | | | |", df.shared_seconds);
    df_total += df.shared_seconds;
    println!("| **total** | | **{df_total:.3}** | **{duck_total:.3}** | **{:.2}** | | |", df_total / duck_total);
    println!();
    println!(
        "peak RSS: DataFusion {:.0} MB (child process, pool {} MB, {} partition(s)); DuckDB {:.0} MB (Python process, duckdb {}, memory_limit {} MB)",
        df.peak_rss_mb, opts.mem_mb, opts.partitions, duck.peak_rss_mb, duck.duckdb_version, opts.mem_mb
    );
    println!("process wall time: DataFusion {:.1}s, DuckDB {:.1}s (setup {:.2}s)", df.seconds, duck.process_seconds, duck.setup_seconds);
    if mismatches > 0 {
        eprintln!("{mismatches} segment(s) differ between DataFusion and DuckDB");
        std::process::exit(1);
    }
}
