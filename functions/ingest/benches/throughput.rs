//! Ingest throughput and peak memory per channel format (a bench binary that prints a
//! table; figures go to BENCHMARKS.md).
//!
//! For each export the data generator writes ~1M rows to scratch space; then, each in
//! its own child process (so peak RSS is that of one file), the file is ingested end to
//! end exactly as the function does it — read → decode → normalise → Parquet parts and
//! the observation spool on local disk, everything but the S3/SQS calls — and parsed raw
//! with `csv` / `serde_json` alone for comparison.
//!
//! ```text
//! cargo bench -p ariane-ingest --bench throughput                 # 1M rows per export
//! cargo bench -p ariane-ingest --bench throughput -- --rows 200000
//! cargo bench -p ariane-ingest --bench throughput -- --big-gb 2   # + one ~2 GB pos file
//! ```

use std::io::{BufRead, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ariane_datagen::{write_channel, Export, GenConfig};
use ariane_ingest::engine;
use ariane_ingest::map::FileContext;
use ariane_ingest::pipeline::LakeSink;
use ariane_ingest::spec::{Catalog, FormatKind};
use chrono::{TimeZone, Utc};

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn key_for(export: Export, path: &Path) -> String {
    format!("{}/bench/{}", export.channel(), path.file_name().and_then(|n| n.to_str()).unwrap_or("file"))
}

/// Child: ingest one file, print `rows seconds peak_mb events rejected`.
fn child_ingest(channel: &str, key: &str, path: &Path) {
    let catalog = Catalog::embedded().expect("valid specs");
    let spec = catalog.select(channel, key).expect("spec").clone();
    let out = std::env::temp_dir().join(format!("ariane-bench-out-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("scratch");
    let start = Instant::now();
    let mut sink = LakeSink::new(out.clone()).expect("sink");
    let file = FileContext { source_key: key.into(), fingerprint: "bench".into() };
    let input = Box::new(std::fs::File::open(path).expect("input"));
    let counts = match engine::parse(input, &spec, file, &mut sink) {
        Ok(counts) => counts,
        Err(e) => {
            // A refused file is a result, not a crash: the table shows the reason.
            println!("0 NaN {} refused: {e}", peak_rss_mb());
            let _ = std::fs::remove_dir_all(out);
            return;
        }
    };
    let _ = sink.finish_paths().expect("finish");
    let secs = start.elapsed().as_secs_f64();
    println!("{} {secs} {} {} {}", counts.rows_read, peak_rss_mb(), counts.events, counts.rejected);
    let _ = std::fs::remove_dir_all(out);
}

/// Child: parse the same file with `csv` or `serde_json` alone.
fn child_raw(kind: &str, separator: u8, path: &Path) {
    let start = Instant::now();
    let reader = BufReader::with_capacity(256 * 1024, std::fs::File::open(path).expect("input"));
    let mut input: Box<dyn Read> = Box::new(reader);
    let mut head = [0u8; 2];
    {
        let mut f = std::fs::File::open(path).expect("input");
        let _ = f.read_exact(&mut head);
    }
    if head == [0x1f, 0x8b] {
        input = Box::new(flate2::read::MultiGzDecoder::new(input));
    }
    let rows: u64 = match kind {
        "csv" => {
            let mut r = csv::ReaderBuilder::new().delimiter(separator).flexible(true).from_reader(input);
            let mut rec = csv::ByteRecord::new();
            let mut n = 0;
            while r.read_byte_record(&mut rec).expect("csv") {
                n += 1;
            }
            n
        }
        "ndjson" => {
            let mut n = 0;
            for line in BufReader::new(input).split(b'\n') {
                let line = line.expect("read");
                if serde_json::from_slice::<serde_json::Value>(&line).is_ok() {
                    n += 1;
                }
            }
            n
        }
        _ => {
            let values: Vec<serde_json::Value> = serde_json::from_reader(BufReader::new(input)).unwrap_or_default();
            values.len() as u64
        }
    };
    println!("{rows} {} {}", start.elapsed().as_secs_f64(), peak_rss_mb());
}

struct Measured {
    rows: u64,
    secs: f64,
    peak_mb: f64,
    rest: Vec<String>,
}

fn run_child(args: &[&str]) -> Measured {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe).args(args).output().expect("child runs");
    // Refusals are printed by the child as a row; anything else is a broken bench.
    assert!(out.status.success(), "child {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default().to_string();
    let mut parts = line.split_whitespace().map(str::to_string);
    let mut next = || parts.next().unwrap_or_default();
    let (rows, secs, peak) = (next(), next(), next());
    Measured {
        rows: rows.parse().unwrap_or(0),
        secs: secs.parse().unwrap_or(f64::NAN),
        peak_mb: peak.parse().unwrap_or(f64::NAN),
        rest: parts.collect(),
    }
}

fn generate(dir: &Path, name: &str, export: Export, rows: u64, persons: usize) -> PathBuf {
    let path = dir.join(name);
    if path.exists() {
        return path;
    }
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).single().expect("date");
    let mut cfg = GenConfig::new(7, persons, now);
    cfg.max_rows = Some(rows);
    let mut out = BufWriter::new(std::fs::File::create(&path).expect("create"));
    write_channel(&cfg, export, &mut out, &mut std::io::sink()).expect("generate");
    path
}

/// Copies a till export with every receipt date (`dd/mm/yyyy` at the start of the second
/// column) replaced by `day`, times kept.
fn on_one_day(src: &Path, dst: &Path, day: &[u8; 10]) {
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(src).expect("input"));
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(dst).expect("create"));
    for line in reader.split(b'\n') {
        let mut line = line.expect("read");
        if let Some(sep) = line.iter().position(|&b| b == b';') {
            let cell = &line[sep + 1..];
            if cell.len() >= 10 && cell[2] == b'/' && cell[5] == b'/' {
                line[sep + 1..sep + 11].copy_from_slice(day);
            }
        }
        line.push(b'\n');
        std::io::Write::write_all(&mut out, &line).expect("write");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("--child-ingest") {
        return child_ingest(&args[1], &args[2], Path::new(&args[3]));
    }
    if args.first().map(String::as_str) == Some("--child-raw") {
        return child_raw(&args[1], args[2].parse().expect("separator"), Path::new(&args[3]));
    }
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let rows: u64 = flag("--rows").and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let big_gb: Option<f64> = flag("--big-gb").and_then(|v| v.parse().ok());
    let dir = std::env::temp_dir().join("ariane-bench-data");
    std::fs::create_dir_all(&dir).expect("data dir");
    let catalog = Catalog::embedded().expect("valid specs");

    println!("| export | format | rows | MB | raw parse rows/s | ingest rows/s | raw/ingest | ingest peak RSS MB | events | rejected |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut jobs: Vec<(Export, PathBuf)> = Vec::new();
    for export in Export::ALL {
        let t = Instant::now();
        let path = generate(&dir, &format!("{rows}-{}", export.file_name()), export, rows, 200_000);
        eprintln!("generated {} in {:.1}s", path.display(), t.elapsed().as_secs_f64());
        jobs.push((export, path));
    }
    // A daily till export: the same receipts, all on one day (the generated file is a
    // two-year backfill written person by person, interleaving ~700 dates).
    let one_day = dir.join(format!("{rows}-receipts-one-day.csv"));
    if !one_day.exists() {
        let src = jobs.iter().find(|(e, _)| *e == Export::PosReceipts).map(|(_, p)| p.clone()).expect("pos file");
        on_one_day(&src, &one_day, b"22/11/2026");
    }
    jobs.push((Export::PosReceipts, one_day));
    if let Some(gb) = big_gb {
        // ~104 bytes per receipt line.
        let big_rows = (gb * 1024.0 * 1024.0 * 1024.0 / 104.0) as u64;
        let path = generate(&dir, &format!("big-{gb}gb-receipts.csv"), Export::PosReceipts, big_rows, 4_000_000);
        jobs.push((Export::PosReceipts, path));
    }
    for (export, path) in jobs {
        let key = key_for(export, &path);
        let spec = catalog.select(export.channel(), &key).expect("spec");
        let kind = match spec.format.kind {
            FormatKind::Csv => "csv",
            FormatKind::Ndjson => "ndjson",
            _ => "json",
        };
        let mb = std::fs::metadata(&path).map(|m| m.len() as f64 / 1_048_576.0).unwrap_or(0.0);
        let path_s = path.to_string_lossy().to_string();
        let raw = run_child(&["--child-raw", kind, &spec.format.separator.to_string(), &path_s]);
        let ingest = run_child(&["--child-ingest", export.channel(), &key, &path_s]);
        if ingest.rest.first().map(String::as_str) == Some("refused:") {
            println!("| {} | {kind} | refused | {mb:.0} | | | | {:.0} | {} | |", path.display(), ingest.peak_mb, ingest.rest.join(" "));
            continue;
        }
        let raw_rate = raw.rows as f64 / raw.secs;
        let rate = ingest.rows as f64 / ingest.secs;
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} | {} | {} |",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            kind,
            ingest.rows,
            mb,
            raw_rate,
            rate,
            raw_rate / rate,
            ingest.peak_mb,
            ingest.rest.first().cloned().unwrap_or_default(),
            ingest.rest.get(1).cloned().unwrap_or_default(),
        );
    }
}
