//! The benchmarks' scale lake (`benches/segments.rs`, `benches/measures.rs`): a truth lake
//! ([`crate::truth_lake::build_truth_lake`]) of a number of persons and about a number of
//! events, built once and cached under `$ARIANE_BENCH_DIR` (default
//! `~/.cache/ariane-bench`) in a directory named after its parameters, so re-runs skip
//! generation; the same lake after the daily compaction ([`compacted_lake`]); and what
//! both benches measure with (page cache warming, peak RSS).
//!
//! **Sizing.** The generator writes persons in index order and `max_rows` caps every
//! export's rows, so a capped export covers the first persons only. [`max_rows_for`] finds
//! the cap that makes the estimated total of the chosen exports the wanted number of
//! events, from the rows per person each export writes ([`rows_per_person`], measured with
//! seed 7 on 5,000 persons: all persons, not only those active in the channel).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use ariane_datagen::{Export, GenConfig};
use ariane_segments::catalog::{self, RunEnv};
use ariane_segments::compact::{self, CompactionReport};
use ariane_segments::read_cache::ReadCache;
use ariane_shared::lake;
use chrono::{DateTime, Utc};
use datafusion::object_store::local::LocalFileSystem;
use serde::{Deserialize, Serialize};

use crate::fs_blobs::FsBlobs;

use crate::truth_lake::{build_truth_lake, parquet_files};

/// Rows per person of each export (seed 7, 5,000 persons).
pub fn rows_per_person(export: Export) -> f64 {
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

/// The generator's `max_rows` making the estimated events of `exports` for `persons` about
/// `events` (None: the uncapped mix is not above it).
pub fn max_rows_for(exports: &[Export], persons: usize, events: u64) -> Option<u64> {
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

/// `--exports` of a bench: `all`, a comma-separated list (`crm/contacts,pos/receipts`), or
/// `default` when absent.
pub fn parse_exports(flag: Option<&str>, default: &[Export]) -> anyhow::Result<Vec<Export>> {
    match flag {
        None => Ok(default.to_vec()),
        Some("all") => Ok(Export::ALL.to_vec()),
        Some(list) => list.split(',').map(|e| e.trim().parse::<Export>().map_err(|err| anyhow::anyhow!("--exports: {err}"))).collect(),
    }
}

/// This process's peak resident set (`VmHWM`), in MB (NaN where /proc is not there).
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// What lake to build: the generator's seed and persons, about how many events, from
/// which exports.
#[derive(Clone, Debug)]
pub struct LakeSpec {
    pub seed: u64,
    pub persons: usize,
    pub events: u64,
    pub exports: Vec<Export>,
}

/// What the cache remembers of a built lake.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LakeInfo {
    pub persons: usize,
    pub max_rows: Option<u64>,
    pub exports: Vec<String>,
    pub profiles: usize,
    pub events: u64,
    pub links: u64,
    pub build_seconds: f64,
}

/// Where cached lakes live: `$ARIANE_BENCH_DIR`, else `~/.cache/ariane-bench`.
pub fn bench_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ARIANE_BENCH_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache/ariane-bench")
}

/// The cached lake of `spec` (generated with `now` as the generator's reference instant,
/// its profile snapshot as run `snapshot`, one bucket), built when missing.
pub fn cached_lake(spec: &LakeSpec, now: DateTime<Utc>, snapshot: &str) -> anyhow::Result<(PathBuf, LakeInfo)> {
    let max_rows = max_rows_for(&spec.exports, spec.persons, spec.events);
    let mix: Vec<String> = spec.exports.iter().map(|e| format!("{}-{}", e.channel(), e.name())).collect();
    // `l2`: the layout of the lake's files (bump it when a lake schema changes, so a lake
    // cached by an earlier build is generated again; 2: events' `local_time`). The
    // `segments-` prefix is historical (the segments bench built the first ones): kept so
    // lakes already cached stay valid.
    let name = format!(
        "segments-lake-l2-s{}-p{}-r{}-{}",
        spec.seed,
        spec.persons,
        max_rows.map(|r| r.to_string()).unwrap_or_else(|| "all".into()),
        mix.join("+")
    );
    let dir = bench_root().join(name);
    let info_path = dir.join("bench-lake.json");
    if let Ok(bytes) = std::fs::read(&info_path) {
        if let Ok(info) = serde_json::from_slice::<LakeInfo>(&bytes) {
            eprintln!("lake: cached in {}", dir.display());
            return Ok((dir, info));
        }
    }
    let building = dir.with_extension("building");
    let _ = std::fs::remove_dir_all(&building);
    let mut cfg = GenConfig::new(spec.seed, spec.persons, now);
    cfg.max_rows = max_rows;
    eprintln!(
        "lake: generating {} persons, exports {}, max_rows {:?} into {} (once; cached)",
        spec.persons,
        mix.join(", "),
        max_rows,
        dir.display()
    );
    let t = Instant::now();
    let built = build_truth_lake(&cfg, &spec.exports, &building, snapshot, 1).context("building the truth lake")?;
    let info = LakeInfo {
        persons: spec.persons,
        max_rows,
        exports: mix,
        profiles: built.profiles,
        events: built.events,
        links: built.links,
        build_seconds: t.elapsed().as_secs_f64(),
    };
    // The per-event truth and the scratch space are not needed by the benchmarks.
    let _ = std::fs::remove_dir_all(building.join("_truth"));
    std::fs::write(building.join("bench-lake.json"), serde_json::to_vec_pretty(&info)?).context("lake info")?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&building, &dir).context("moving the lake in place")?;
    eprintln!("lake: built in {:.0}s", info.build_seconds);
    Ok((dir, info))
}

/// Reads every Parquet file under `dir` once, so no engine pays for a cold page cache;
/// returns the files and megabytes read.
pub fn warm(dir: &Path) -> anyhow::Result<(usize, f64)> {
    let files = parquet_files(dir)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    for f in &files {
        let mut file = std::fs::File::open(f).with_context(|| format!("{}", f.display()))?;
        loop {
            let n = file.read(&mut buf).with_context(|| format!("{}", f.display()))?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
        }
    }
    Ok((files.len(), bytes as f64 / 1_048_576.0))
}

/// The bucket name the bench children give the local lake (`s3://lake` in their sessions).
pub const LAKE: &str = "lake";

/// The argument a bench binary dispatches to [`child_compact`] (`<exe> --child-compact
/// <job> <result>`): [`compacted_lake`] runs the compaction in a child process of the
/// calling bench, for its own peak RSS.
pub const CHILD_COMPACT: &str = "--child-compact";

/// A run's environment over the local lake `lake_dir` as the functions size it: a local
/// file system store behind the run's read cache (a quarter of the pool, as
/// `SegmentsConfig` sizes it), the function's runtime (a pool of `mem_mb` spilling to
/// `scratch`, listing and metadata caches).
pub fn run_env(lake_dir: &Path, mem_mb: usize, scratch: &Path) -> anyhow::Result<RunEnv> {
    let store = LocalFileSystem::new_with_prefix(lake_dir).with_context(|| format!("{}", lake_dir.display()))?;
    Ok(RunEnv {
        runtime: catalog::runtime(mem_mb, scratch)?,
        lake: Arc::new(ReadCache::new(Arc::new(store), (mem_mb / 4) as u64 * 1024 * 1024)),
    })
}

/// What the compaction child runs.
#[derive(Serialize, Deserialize)]
struct CompactJob {
    lake_dir: PathBuf,
    buckets: usize,
    mem_mb: usize,
    now: DateTime<Utc>,
}

/// What the cache remembers of a compacted copy of a lake: the compaction's report and
/// the peak RSS of its process.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompactedInfo {
    pub peak_rss_mb: f64,
    pub report: CompactionReport,
}

impl CompactedInfo {
    /// The globs (under the lake directory) of the compacted generation's files, for DuckDB:
    /// every bucket's events, and the links' history.
    pub fn duckdb_patterns(&self) -> anyhow::Result<(String, String)> {
        let generation = self.report.current.clone().context("the compaction made no generation")?;
        let prefix = lake::compacted_prefix().trim_end_matches('/').to_string();
        Ok((format!("{prefix}/gen={generation}/bucket=*/*.parquet"), format!("{prefix}/gen={generation}/history/*.parquet")))
    }

    /// One line for a bench's header.
    pub fn describe(&self, mem_mb: usize) -> String {
        let r = &self.report;
        format!(
            "compaction into {} bucket(s): {} source files -> {} files ({} events, {} latest links, {} links of history, {} duplicates dropped) in {:.1}s, peak RSS {:.0} MB (pool {mem_mb} MB)",
            r.buckets, r.source_files_read, r.files_written, r.event_rows, r.link_rows, r.history_rows, r.duplicates_dropped, r.seconds, self.peak_rss_mb
        )
    }
}

/// Child ([`CHILD_COMPACT`]): the daily compaction of the local lake (`compact::compact`,
/// the function's code, through a directory blob store), in its own process for its own
/// peak RSS.
pub fn child_compact(job_path: &Path, out_path: &Path) -> anyhow::Result<()> {
    let job: CompactJob = serde_json::from_slice(&std::fs::read(job_path)?).context("the compaction job")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let scratch = tempfile::tempdir()?;
    let env = run_env(&job.lake_dir, job.mem_mb, scratch.path())?;
    let blobs = FsBlobs::bucket(LAKE, &job.lake_dir);
    let report = runtime.block_on(compact::compact(&blobs, &env, LAKE, job.buckets, job.now)).context("the compaction")?;
    let result = CompactedInfo { peak_rss_mb: peak_rss_mb(), report };
    std::fs::write(out_path, serde_json::to_vec(&result)?)?;
    Ok(())
}

/// `from` copied to `to` as hard links (the compaction deletes the source files it covers
/// and writes new ones beside them; it never rewrites a file in place).
fn hardlink_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("{}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("{}", from.display()))?.flatten() {
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            hardlink_tree(&src, &dst)?;
        } else {
            std::fs::hard_link(&src, &dst).with_context(|| format!("{}", src.display()))?;
        }
    }
    Ok(())
}

/// The lake `dir` compacted into `buckets` profile buckets by the function's compaction at
/// `now` with a pool of `mem_mb`, in a sibling directory (built once from hard links to
/// `dir`, then cached). The compaction runs in a child of the calling bench binary, which
/// must dispatch [`CHILD_COMPACT`] to [`child_compact`].
pub fn compacted_lake(dir: &Path, buckets: usize, mem_mb: usize, now: DateTime<Utc>) -> anyhow::Result<(PathBuf, CompactedInfo)> {
    let name = dir.file_name().and_then(|n| n.to_str()).context("lake directory name")?;
    let target = dir.with_file_name(format!("{name}-compacted-k{buckets}-m{mem_mb}"));
    let info_path = target.join("bench-compaction.json");
    if let Some(info) = std::fs::read(&info_path).ok().and_then(|b| serde_json::from_slice::<CompactedInfo>(&b).ok()) {
        eprintln!("compacted lake: cached in {}", target.display());
        return Ok((target, info));
    }
    let building = target.with_extension("building");
    let _ = std::fs::remove_dir_all(&building);
    hardlink_tree(dir, &building)?;
    eprintln!("compacted lake: compacting {} into {buckets} bucket(s), pool {mem_mb} MB", building.display());
    let work = tempfile::tempdir()?;
    let (job_path, out_path) = (work.path().join("compact-job.json"), work.path().join("compact-result.json"));
    let job = CompactJob { lake_dir: building.clone(), buckets, mem_mb, now };
    std::fs::write(&job_path, serde_json::to_vec(&job)?)?;
    let status = std::process::Command::new(std::env::current_exe()?).arg(CHILD_COMPACT).arg(&job_path).arg(&out_path).status()?;
    anyhow::ensure!(status.success(), "the compaction child failed: {status}");
    let info: CompactedInfo = serde_json::from_slice(&std::fs::read(&out_path)?).context("the compaction's result")?;
    std::fs::write(building.join("bench-compaction.json"), serde_json::to_vec_pretty(&info)?)?;
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&building, &target).context("moving the compacted lake in place")?;
    Ok((target, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_makes_the_estimate_the_wanted_events() {
        let exports = Export::ALL.to_vec();
        let cap = max_rows_for(&exports, 1_000_000, 10_000_000).expect("capped");
        let total: f64 = exports.iter().map(|e| (rows_per_person(*e) * 1e6).min(cap as f64)).sum();
        assert!((total - 1e7).abs() < 10.0, "{total}");
        assert_eq!(max_rows_for(&exports, 1_000, 10_000_000), None, "the uncapped mix is smaller");
        assert!(parse_exports(Some("nope"), &[]).is_err());
        assert_eq!(parse_exports(None, &[Export::CrmContacts]).unwrap(), vec![Export::CrmContacts]);
    }
}
