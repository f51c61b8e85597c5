//! The one template: it passes cfn-lint, translates, and deploys to moto's CloudFormation
//! with every piece the pipeline relies on.

use std::process::Command;

use ariane_local::LocalStack;

#[test]
fn template_passes_cfn_lint() {
    let root = ariane_local::repo_root();
    let out = Command::new(root.join(".venv/bin/cfn-lint"))
        .arg(root.join("infra/template.yaml"))
        .output()
        .expect("cfn-lint is installed by scripts/bootstrap.sh");
    assert!(out.status.success(), "cfn-lint:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_deploys_to_moto_with_the_pipeline_wiring() -> anyhow::Result<()> {
    let stack = LocalStack::start("tpl", &[]).await?;
    let m = &stack.manifest;
    let mut binaries: Vec<&str> = m.functions.values().map(|f| f.binary.as_str()).collect();
    binaries.sort();
    assert_eq!(binaries, vec!["activate", "identity", "ingest", "segments"]);
    for f in m.functions.values() {
        assert!(f.function_name.starts_with("ariane-tpl-"), "Stage in names: {}", f.function_name);
    }
    assert_eq!(m.event_source_mappings.len(), 3);
    for esm in &m.event_source_mappings {
        assert!(esm.report_batch_item_failures, "{esm:?}");
        let (_, queue) = m.queue_by_arn(&esm.queue_arn).expect("mapped queue in the stack");
        let timeout = m.function(&esm.function)?.timeout_s;
        assert!(queue.visibility_timeout_s >= 6 * timeout, "{esm:?}: visibility {} < 6 x {timeout}", queue.visibility_timeout_s);
        assert!(queue.dlq_url.is_some(), "{esm:?} has a DLQ");
        assert_eq!(queue.max_receive_count, Some(5));
    }
    let schedule = &m.schedules[0];
    assert_eq!(m.function(&schedule.function)?.binary, "segments");
    let ingest_queue = &m.queues["IngestQueue"];
    assert!(m.bucket_notifications.iter().any(|n| n.prefix.as_deref() == Some("ecommerce/") && n.queue_arn == ingest_queue.arn));
    for output in ["LandingBucketName", "LakeBucketName", "ProfilesTableName", "IngestQueueUrl", "ActivationQueueUrl"] {
        m.output(output)?;
    }
    Ok(())
}
