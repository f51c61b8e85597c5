//! Helpers for the workspace integration tests: each test starts its own moto server,
//! deploys `infra/template.yaml` to it, and runs the functions in process through the
//! local runner (so every test has fresh resources).

use ariane_local::receiver::Receiver;
use ariane_local::runner::Runner;
use ariane_local::LocalStack;

pub use ariane_ingest::pipeline::LedgerEntry;

/// A fresh local stack whose activation webhook points at a fresh receiver.
pub struct Harness {
    pub stack: LocalStack,
    pub receiver: Receiver,
    pub runner: Runner,
}

impl Harness {
    pub async fn start(stage: &str) -> anyhow::Result<Self> {
        init_tracing();
        let receiver = Receiver::start().await?;
        let stack = LocalStack::start(stage, &[("ActivationWebhookUrl".to_string(), receiver.url.clone())]).await?;
        let runner = stack.in_process_runner().await?;
        Ok(Harness { stack, receiver, runner })
    }

    /// All ledger entries in the lake.
    pub async fn ledger(&self) -> anyhow::Result<Vec<LedgerEntry>> {
        let mut out = Vec::new();
        for key in self.stack.lake_keys(ariane_shared::lake::ledger_prefix()).await? {
            out.push(serde_json::from_slice(&self.stack.lake_object(&key).await?)?);
        }
        Ok(out)
    }

    /// Sends a raw body to a queue of the stack (by logical id).
    pub async fn send_raw(&self, queue: &str, body: &str) -> anyhow::Result<()> {
        let url = &self.stack.manifest.queues[queue].url;
        self.stack.clients.sqs.send_message().queue_url(url).message_body(body).send().await?;
        Ok(())
    }

    /// Messages waiting in the DLQ of a queue (by the main queue's logical id).
    pub async fn dlq_depth(&self, queue: &str) -> anyhow::Result<u64> {
        let dlq = self.stack.manifest.queues[queue].dlq_url.clone().ok_or_else(|| anyhow::anyhow!("{queue} has no DLQ"))?;
        ariane_local::runner::queue_depth(&self.stack.clients.sqs, &dlq).await
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into())).with_test_writer().try_init();
}

/// The report of segment `name` in a segments run's response.
pub fn segment_report<'a>(summary: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    summary["segments"]
        .as_array()
        .and_then(|s| s.iter().find(|r| r["segment"] == name))
        .unwrap_or_else(|| panic!("no report for segment {name} in {summary}"))
}
