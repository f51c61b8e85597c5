//! Poison messages and unreadable files end in the DLQ, visibly (ledger entry with the
//! reason), after the queue's maxReceiveCount; a failing webhook is retried and the
//! effect still happens exactly once; duplicate SQS deliveries send once.

use ariane_ingest::pipeline::LedgerStatus;
use ariane_shared::model::{ActivationRequest, SegmentChange};
use ariane_tests::Harness;
use aws_sdk_dynamodb::types::AttributeValue;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_and_unreadable_files_reach_the_dlq() -> anyhow::Result<()> {
    let h = Harness::start("poison").await?;
    // A body that is not an S3 notification, in the ecommerce instance's queue.
    h.send_raw("IngestEcommerceQueue", "this is not json").await?;
    // A file without the required columns (the landing router forwards it to the same queue).
    h.stack.upload("ecommerce/wrong-columns.csv", b"Order;Mail\n1;a@b.fr\n".to_vec()).await?;
    let report = h.runner.drain().await?;
    let max_receive = h.stack.manifest.queues["IngestEcommerceQueue"].max_receive_count.unwrap_or(5) as u64;
    assert_eq!(h.dlq_depth("IngestEcommerceQueue").await?, 2, "{report:?}");
    assert!(report.failures >= 2 * max_receive, "each was retried up to maxReceiveCount: {report:?}");

    let ledger = h.ledger().await?;
    let failed: Vec<_> = ledger.iter().filter(|e| e.status == LedgerStatus::Failed).collect();
    assert_eq!(failed.len(), 1, "{ledger:?}");
    let error = failed[0].error.clone().unwrap_or_default();
    assert!(error.contains("missing required column") && error.contains("Lineitem quantity"), "{error}");
    assert_eq!(failed[0].source_key, "ecommerce/wrong-columns.csv");
    Ok(())
}

async fn put_profile(h: &Harness, pid: &str, email: &str) -> anyhow::Result<()> {
    h.stack
        .clients
        .dynamodb
        .put_item()
        .table_name(h.stack.manifest.output("ProfilesTableName")?)
        .item("pk", AttributeValue::S(format!("PROFILE#{pid}")))
        .item("sk", AttributeValue::S("PROFILE".into()))
        .item("profile_id", AttributeValue::S(pid.into()))
        .item("email", AttributeValue::S(email.into()))
        .send()
        .await?;
    Ok(())
}

fn request(pid: &str) -> String {
    serde_json::to_string(&ActivationRequest {
        segment: "reactivation".into(),
        run_id: "20261123T000000Z".into(),
        run_at: chrono::Utc::now(),
        profile_id: pid.into(),
        change: SegmentChange::Entered,
        key: Default::default(),
        payload: Default::default(),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_is_exactly_once_under_duplicates_and_receiver_errors() -> anyhow::Result<()> {
    let h = Harness::start("once").await?;
    put_profile(&h, "p_a", "a@example.fr").await?;
    put_profile(&h, "p_b", "b@example.fr").await?;
    // The same request delivered three times, plus one for another profile.
    for _ in 0..3 {
        h.send_raw("ActivationQueue", &request("p_a")).await?;
    }
    h.send_raw("ActivationQueue", &request("p_b")).await?;
    // The receiver fails the first two requests with 500.
    h.receiver.fail_next(2);
    let report = h.runner.drain().await?;
    let deliveries = h.receiver.deliveries();
    let mut emails: Vec<_> = deliveries.iter().map(|d| d.body["email"].as_str().unwrap().to_string()).collect();
    emails.sort();
    assert_eq!(emails, vec!["a@example.fr", "b@example.fr"], "{report:?}");
    assert!(h.receiver.requests() >= 4, "the 500s were retried");
    assert_eq!(h.dlq_depth("ActivationQueue").await?, 0);
    // A profile that no longer exists (erased) gets nothing.
    h.send_raw("ActivationQueue", &request("p_gone")).await?;
    h.runner.drain().await?;
    assert_eq!(h.receiver.deliveries().len(), 2);
    Ok(())
}
