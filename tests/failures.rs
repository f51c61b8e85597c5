//! Poison messages and unreadable files end in the DLQ, visibly (ledger entry with the
//! reason): ingest parks them at their first receive; activation's after the queue's
//! maxReceiveCount. (Exactly-once activation under duplicates
//! and receiver errors is tested in `activation.rs`.)

use ariane_ingest::pipeline::LedgerStatus;
use ariane_tests::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_and_unreadable_files_reach_the_dlq() -> anyhow::Result<()> {
    let h = Harness::start("poison").await?;
    // A body that is not an S3 notification, in the ecommerce instance's queue.
    h.send_raw("IngestEcommerceQueue", "this is not json").await?;
    // A file without the required columns (the landing router forwards it to the same queue).
    h.stack.upload("ecommerce/wrong-columns.csv", b"Order;Mail\n1;a@b.fr\n".to_vec()).await?;
    let report = h.runner.drain().await?;
    assert_eq!(h.dlq_depth("IngestEcommerceQueue").await?, 2, "{report:?}");
    // Neither can succeed on a retry: each is moved to the DLQ at its first receive
    // (DEAD_LETTER_QUEUE_URL), not received maxReceiveCount times.
    assert_eq!(report.failures, 0, "parked at once, never retried: {report:?}");

    let ledger = h.ledger().await?;
    let failed: Vec<_> = ledger.iter().filter(|e| e.status == LedgerStatus::Failed).collect();
    assert_eq!(failed.len(), 1, "{ledger:?}");
    let error = failed[0].error.clone().unwrap_or_default();
    assert!(error.contains("missing required column") && error.contains("Lineitem quantity"), "{error}");
    assert_eq!(failed[0].source_key, "ecommerce/wrong-columns.csv");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_activation_message_reaches_the_dlq() -> anyhow::Result<()> {
    let h = Harness::start("poison-act").await?;
    h.send_raw("ActivationQueue", "{\"segment\": 42}").await?;
    h.send_raw("ActivationQueue", "{\"deferred\": {\"campaign\": \"retired\", \"slot\": \"message\", \"request\": {\"segment\": \"vip\", \"run_id\": \"r\", \"run_at\": \"2026-11-24T09:00:00Z\", \"profile_id\": \"p\", \"change\": \"entered\"}}}").await?;
    h.runner.drain().await?;
    assert_eq!(h.dlq_depth("ActivationQueue").await?, 2);
    Ok(())
}
