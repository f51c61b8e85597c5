//! Every sample event in `events/` invokes its function successfully under
//! `cargo lambda watch` (the real binaries) against the local stack of the `dev` stage,
//! whose resource names the samples use.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ariane_local::moto::free_port;
use ariane_local::receiver::Receiver;
use ariane_local::LocalStack;

/// The samples, in the order a pipeline would produce them.
const SAMPLES: &[&str] = &[
    "ingest-s3-test-event",
    "ingest-s3-ecommerce-export",
    "identity-observations",
    "segments-scheduled-run",
    "activate-segment-entered",
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

async fn invoke(root: &Path, port: u16, sample: &str) -> anyhow::Result<serde_json::Value> {
    let binary = sample.split('-').next().unwrap_or_default();
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
    let mut listed: Vec<String> = SAMPLES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every file in events/ is exercised here");

    let receiver = Receiver::start().await?;
    let stack = LocalStack::start("dev", &[("ActivationWebhookUrl".to_string(), receiver.url.clone())]).await?;
    stack.upload("ecommerce/sample orders.csv", std::fs::read(root.join("events/fixtures/sample-orders.csv"))?).await?;

    let port = free_port()?;
    let env_file = root.join(".local").join(format!("cargo-lambda-{port}.env"));
    std::fs::write(&env_file, stack.manifest.cargo_lambda_env_file())?;
    let log = std::fs::File::create(root.join(".local").join(format!("cargo-lambda-{port}.log")))?;
    // cargo-lambda builds with its own flags: a target directory of its own (beside this
    // test's, i.e. <target>/cargo-lambda) keeps both builds cached instead of rebuilding
    // each other's artifacts.
    let exe = std::env::current_exe()?;
    let target_dir = exe.ancestors().nth(3).context("test binary is in <target>/debug/deps")?.join("cargo-lambda");
    let child = std::process::Command::new(root.join(".venv/bin/cargo-lambda"))
        .args(["lambda", "watch", "--ignore-changes", "-A", "127.0.0.1", "-P", &port.to_string(), "--env-file"])
        .arg(&env_file)
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target_dir)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("start cargo lambda watch")?;
    let _watch = Watch(child);
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("cargo lambda watch did not listen on {port}; see .local/cargo-lambda-{port}.log");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for sample in SAMPLES {
        let response = invoke(&root, port, sample).await?;
        if sample.starts_with("segments") {
            assert_eq!(response["segments"][0]["segment"], "reactivation", "{sample}: {response}");
        } else {
            assert_eq!(response["batchItemFailures"], serde_json::json!([]), "{sample}: {response}");
        }
    }
    // The samples had real effects on the local stack.
    let ledger = stack.lake_keys("ledger/ingest/ecommerce/").await?;
    assert_eq!(ledger.len(), 1);
    let entry: ariane_tests::LedgerEntry = serde_json::from_slice(&stack.lake_object(&ledger[0]).await?)?;
    assert_eq!((entry.rows_read, entry.events_written, entry.rows_rejected), (4, 3, 1));
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 1, "the activate sample posted to the webhook");
    assert_eq!(deliveries[0].body["email"], "hélène.lefèvre@orange.fr");
    Ok(())
}
