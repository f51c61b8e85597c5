//! Every sample event in `events/` invokes its function successfully under
//! `cargo lambda watch` (the real binaries) against the local stack of the `dev` stage,
//! whose resource names the samples use.
//!
//! The landing router and the channel ingest instances all run the `ingest` binary with
//! their own environment (`INGEST_CHANNEL`), and a watch serves a binary with one
//! environment: one watch serves every function with `ingest` as the router (the
//! manifest's default instance), a second one serves `ingest` as the ecommerce instance.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ariane_local::moto::free_port;
use ariane_local::receiver::Receiver;
use ariane_local::LocalStack;

/// The samples, in the order a pipeline would produce them, with the function (logical
/// id) each is for.
const SAMPLES: &[(&str, &str)] = &[
    ("ingest-s3-test-event", "LandingRouterFunction"),
    ("landing-router-s3-ecommerce-export", "LandingRouterFunction"),
    ("ingest-s3-ecommerce-export", "IngestEcommerceFunction"),
    ("identity-observations", "IdentityFunction"),
    ("segments-scheduled-run", "SegmentsFunction"),
    ("segments-plan-step", "SegmentsFunction"),
    ("activate-segment-entered", "ActivateFunction"),
    ("activate-release-deferred", "ActivateFunction"),
    ("purge-scheduled-run", "PurgeFunction"),
    ("measures-daily", "MeasuresFunction"),
    ("journey-by-email", "JourneyFunction"),
];

/// Stops `cargo lambda watch`: SIGTERM lets it terminate the function instances it
/// started; SIGKILL if it has not exited after a few seconds.
struct Watch(std::process::Child);

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The target directory `cargo lambda watch` builds in: beside this test's
/// (`<target>/cargo-lambda`), so that both builds stay cached instead of rebuilding each
/// other's artifacts.
fn watch_target_dir() -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.ancestors().nth(3).context("test binary is in <target>/debug/deps")?.join("cargo-lambda"))
}

/// Builds each binary as `cargo lambda watch` will run it (`cargo run --bin <binary>`: the
/// binary's package with its own features, in the watch's target directory), before any
/// invoke is timed. On a cold cache this build is most of the test's time (every
/// dependency again, with each package's own feature set); the watch then finds it done.
fn prebuild(root: &Path, binaries: &[&str]) -> anyhow::Result<()> {
    let target_dir = watch_target_dir()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for binary in binaries {
        let started = Instant::now();
        let status = std::process::Command::new(&cargo)
            .args(["build", "--color", "never", "--manifest-path", "Cargo.toml", "--bin", binary])
            .current_dir(root)
            .env("CARGO_TARGET_DIR", &target_dir)
            .status()
            .with_context(|| format!("start cargo build --bin {binary}"))?;
        if !status.success() {
            bail!("cargo build --bin {binary} (the binary cargo lambda watch runs) failed");
        }
        eprintln!("built {binary} for cargo lambda watch in {:.0} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

impl Watch {
    /// Starts `cargo lambda watch` on a free port with `env_file`, and waits until it listens.
    async fn start(root: &Path, env_file: &str) -> anyhow::Result<(Self, u16)> {
        let port = free_port()?;
        let env_path = root.join(".local").join(format!("cargo-lambda-{port}.env"));
        std::fs::write(&env_path, env_file)?;
        let log = std::fs::File::create(root.join(".local").join(format!("cargo-lambda-{port}.log")))?;
        let target_dir = watch_target_dir()?;
        let child = std::process::Command::new(root.join(".venv/bin/cargo-lambda"))
            .args(["lambda", "watch", "--ignore-changes", "-A", "127.0.0.1", "-P", &port.to_string(), "--env-file"])
            .arg(&env_path)
            .current_dir(root)
            .env("CARGO_TARGET_DIR", &target_dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start cargo lambda watch")?;
        let watch = Watch(child);
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if started.elapsed() > Duration::from_secs(120) {
                bail!("cargo lambda watch did not listen on {port}; see .local/cargo-lambda-{port}.log");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok((watch, port))
    }
}

async fn invoke(root: &Path, port: u16, sample: &str, binary: &str) -> anyhow::Result<serde_json::Value> {
    let out = tokio::time::timeout(
        Duration::from_secs(900),
        tokio::process::Command::new(root.join(".venv/bin/cargo-lambda"))
            .args(["lambda", "invoke", binary, "--data-file"])
            .arg(root.join("events").join(format!("{sample}.json")))
            .args(["-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(root)
            .output(),
    )
    .await
    .with_context(|| format!("{sample}: cargo lambda invoke timed out"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("{sample}: cargo lambda invoke failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_str(stdout.trim()).with_context(|| format!("{sample}: response is not JSON: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_event_invokes_under_cargo_lambda() -> anyhow::Result<()> {
    ariane_tests::init_tracing();
    let root = ariane_local::repo_root();
    let mut on_disk: Vec<String> = std::fs::read_dir(root.join("events"))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = SAMPLES.iter().map(|(s, _)| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every file in events/ is exercised here");

    let receiver = Receiver::start().await?;
    let stack = LocalStack::start("dev", &receiver.destination_params()).await?;
    stack.upload("ecommerce/sample orders.csv", std::fs::read(root.join("events/fixtures/sample-orders.csv"))?).await?;

    // One watch for every function (`ingest` as the router), one for the ecommerce instance.
    let m = &stack.manifest;
    assert_eq!(m.cargo_lambda_default_instance("ingest"), Some("LandingRouterFunction"));
    let mut binaries = SAMPLES.iter().map(|(_, f)| Ok(m.function(f)?.binary.as_str())).collect::<anyhow::Result<Vec<&str>>>()?;
    binaries.sort();
    binaries.dedup();
    tokio::task::block_in_place(|| prebuild(&root, &binaries))?;
    let (_default_watch, default_port) = Watch::start(&root, &m.cargo_lambda_env_file(None)?).await?;
    let (_ecommerce_watch, ecommerce_port) = Watch::start(&root, &m.cargo_lambda_env_file(Some("IngestEcommerceFunction"))?).await?;

    for (sample, function) in SAMPLES {
        let binary = &m.function(function)?.binary;
        let port = if *function == "IngestEcommerceFunction" { ecommerce_port } else { default_port };
        let response = invoke(&root, port, sample, binary).await?;
        if *function == "LandingRouterFunction" && sample.contains("export") {
            // The router forwarded the notification to the ecommerce instance's queue.
            assert_eq!(stack.queue_depth("IngestEcommerceQueue").await?, 1, "{sample}: {response}");
        }
        if *sample == "segments-plan-step" {
            // The state machine's first step, a day after the scheduled run: the daily
            // segments are due again, over the buckets the Map states iterate.
            let buckets = response["buckets"].as_array().map(Vec::len).unwrap_or(0);
            assert_eq!(response["due"], true, "{sample}: {response}");
            assert_eq!(
                buckets.to_string(),
                m.function("SegmentsFunction")?.environment["ARIANE_SEGMENT_PARTITIONS"],
                "{sample}: {response}"
            );
        } else if sample.starts_with("segments") {
            assert_eq!(ariane_tests::segment_report(&response, "reactivation")["skipped"], false, "{sample}: {response}");
        } else if sample.starts_with("purge") {
            // No erasure is pending on a fresh stack: the run reads the reports and stops.
            assert_eq!((response["run"].is_null(), response["erasures"].as_array().map(Vec::len)), (true, Some(0)), "{sample}: {response}");
        } else if sample.starts_with("measures") {
            // The daily measures over the samples' lake: every table and the report written.
            assert_eq!(response["report_key"], "reports/html/2026-11-23/index.html", "{sample}: {response}");
            assert!(stack.lake_object("reports/html/2026-11-23/index.html").await.is_ok(), "{sample}: the report is in the lake");
        } else if sample.starts_with("journey") {
            // The person the identity sample resolved: their journey, without the e-mail in clear.
            assert!(response["profile_id"].as_str().is_some_and(|p| p.starts_with("p_")), "{sample}: {response}");
            assert_eq!(response["decisions"].as_array().map(Vec::len), Some(1), "{sample}: {response}");
            assert_eq!(response["decisions"][0]["outcome"], "created", "{sample}: {response}");
            assert!(!response.to_string().to_lowercase().contains("orange.fr"), "{sample}: {response}");
        } else if sample.starts_with("activate-release") {
            assert!(response["released"].is_u64(), "{sample}: {response}");
        } else {
            assert_eq!(response["batchItemFailures"], serde_json::json!([]), "{sample}: {response}");
        }
    }
    // The samples had real effects on the local stack.
    let ledger: Vec<String> =
        stack.lake_keys("ledger/ingest/ecommerce/").await?.into_iter().filter(|k| ariane_shared::lake::is_ledger_entry_key(k)).collect();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    let entry: ariane_tests::LedgerEntry = serde_json::from_slice(&stack.lake_object(&ledger[0]).await?)?;
    assert_eq!((entry.rows_read, entry.events_written, entry.rows_rejected), (4, 3, 1));
    let deliveries = receiver.deliveries();
    let records = stack.activation_records().await?;
    assert_eq!(deliveries.len(), 1, "the activate sample posted to the webhook: {deliveries:?}, decisions {records:?}");
    assert_eq!(deliveries[0].destination, "esp");
    assert_eq!(deliveries[0].body["campaign"], "reactivation");
    assert_eq!(deliveries[0].body["to"]["email"], "hélène.lefèvre@orange.fr");
    Ok(())
}
