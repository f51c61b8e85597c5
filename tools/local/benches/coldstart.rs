//! Cold start of every function: the time from process start to ready for the first
//! event (configuration read, clients built, the embedded channel specs, segment SQL,
//! rules and campaigns parsed and validated, the activation signing key fetched), and
//! the size of the zipped binary Lambda would load.
//!
//! Each function's release binary is started as Lambda starts it, with the environment
//! the deployed template gives it (a local stack in moto, so the clients and the signing
//! key are real), and `AWS_LAMBDA_RUNTIME_API` pointing at a stub of the Lambda runtime
//! API: the init is over when the runtime asks for its first event
//! (`GET /2018-06-01/runtime/invocation/next`). That is what Lambda reports as the init
//! duration, minus the sandbox's own start. Median, minimum and maximum of `--runs`
//! starts per function; the medians are written to `bench/results.json`
//! (`coldstart.<function>_init_ms`, `coldstart.<function>_zip_mb`).
//!
//! ```text
//! cargo bench -p ariane-local --bench coldstart [-- --runs 15]
//! cargo test -p ariane-local --bench coldstart   # the harness in debug, same measurement
//! ```

use std::io::{BufRead, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ariane_local::LocalStack;
use serde_json::{json, Value};

/// (function, logical id in the template, binary).
const FUNCTIONS: [(&str, &str, &str); 6] = [
    ("router", "LandingRouterFunction", "ingest"),
    ("ingest", "IngestPosFunction", "ingest"),
    ("identity", "IdentityFunction", "identity"),
    ("segments", "SegmentsFunction", "segments"),
    ("activate", "ActivateFunction", "activate"),
    ("purge", "PurgeFunction", "purge"),
];

/// The target: a Rust hello world initialises in 13.9 ms on arm64 (lambda-perf).
const TARGET_MS: f64 = 20.0;

/// `<target>/release`, where the function binaries are measured, whatever profile built
/// this harness (`cargo bench`, or `cargo test --bench coldstart` to skip building the
/// harness's own dependencies in release).
fn release_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // This harness runs from <target>/<profile>/deps/.
    exe.ancestors().nth(3).map(|target| target.join("release")).context("bench executable location")
}

/// Starts `binary` with `env` and times it until it asks the runtime API for an event.
fn one_start(binary: &Path, env: &[(String, String)], name: &str) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let api = listener.local_addr()?;
    listener.set_nonblocking(false)?;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "coldstart")
        .env("ARIANE_METRICS", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let at = Instant::now();
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            let _ = tx.send((at, line));
        }
    });
    let outcome = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let output = child.wait_with_output()?;
    match outcome {
        Ok((at, line)) if line.contains("/runtime/invocation/next") => Ok(at - started),
        Ok((_, line)) => bail!("{name}: unexpected first request {line:?}"),
        Err(_) => bail!("{name}: not ready after 30 s; stderr:\n{}", String::from_utf8_lossy(&output.stderr)),
    }
}

/// The binary deflated as in a deployment zip.
fn zipped_bytes(binary: &Path) -> anyhow::Result<usize> {
    let bytes = std::fs::read(binary)?;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&bytes)?;
    Ok(enc.finish()?.len())
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {cpu}, x86_64")
}

/// Replaces the `coldstart.*` entries of `bench/results.json` with `entries`.
fn record(entries: Vec<Value>) -> anyhow::Result<PathBuf> {
    let path = ariane_local::repo_root().join("bench/results.json");
    let mut all: Vec<Value> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is not a JSON list", path.display()))?,
        Err(_) => Vec::new(),
    };
    all.retain(|v| !v["name"].as_str().is_some_and(|n| n.starts_with("coldstart.")));
    all.extend(entries);
    all.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    std::fs::create_dir_all(path.parent().expect("bench/"))?;
    std::fs::write(&path, serde_json::to_vec_pretty(&all)?)?;
    Ok(path)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let runs: usize = args.windows(2).find(|w| w[0] == "--runs").and_then(|w| w[1].parse().ok()).unwrap_or(15);
    let dir = release_dir()?;
    // ARIANE_COLDSTART_BUILD=0 measures the release binaries already in <target>/release.
    let build = std::env::var("ARIANE_COLDSTART_BUILD").map_or(true, |v| v != "0");
    println!("building the function binaries (release) ...");
    let status = if !build {
        println!("(skipped: ARIANE_COLDSTART_BUILD=0)");
        std::process::ExitStatus::default()
    } else {
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--release",
                "-p",
                "ariane-ingest",
                "-p",
                "ariane-identity",
                "-p",
                "ariane-segments",
                "-p",
                "ariane-activate",
                "--bins",
            ])
            .current_dir(ariane_local::repo_root())
            .env("CARGO_TARGET_DIR", dir.parent().context("target dir")?)
            .status()?
    };
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let stack = LocalStack::start("coldstart", &[]).await?;
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let machine = machine();
    println!("\ncold start, {runs} starts per function ({machine}, {date}); target ≤ {TARGET_MS} ms init\n");
    println!("| function | init median (ms) | min | max | binary (MB) | zipped (MB) |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut entries = Vec::new();
    for (name, logical_id, binary) in FUNCTIONS {
        let env: Vec<(String, String)> = stack.manifest.function_env(logical_id)?.0.into_iter().collect();
        let path = dir.join(binary);
        // One start to warm the page cache (Lambda's own cache plays that part).
        one_start(&path, &env, name)?;
        let mut times: Vec<f64> = Vec::new();
        for _ in 0..runs {
            times.push(one_start(&path, &env, name)?.as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let raw_mb = std::fs::metadata(&path)?.len() as f64 / 1e6;
        let zip_mb = zipped_bytes(&path)? as f64 / 1e6;
        println!("| {name} | {median:.1} | {:.1} | {:.1} | {raw_mb:.1} | {zip_mb:.1} |", times[0], times[times.len() - 1]);
        entries.push(json!({"name": format!("coldstart.{name}_init_ms"), "value": (median * 10.0).round() / 10.0, "unit": "ms", "target": TARGET_MS, "better": "lower", "date": date, "machine": machine}));
        entries.push(json!({"name": format!("coldstart.{name}_zip_mb"), "value": (zip_mb * 10.0).round() / 10.0, "unit": "MB", "target": Value::Null, "better": "lower", "date": date, "machine": machine}));
    }
    let path = record(entries)?;
    println!("\nwritten: {}", path.display());
    Ok(())
}
