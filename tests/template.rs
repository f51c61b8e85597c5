//! The one template: it passes cfn-lint, translates, and deploys to moto's CloudFormation
//! with every piece the pipeline relies on.

use std::collections::BTreeSet;
use std::process::Command;

use ariane_local::LocalStack;
use ariane_shared::model::CHANNELS;

#[test]
fn template_passes_cfn_lint() {
    let root = ariane_local::repo_root();
    let out = Command::new(root.join(".venv/bin/cfn-lint"))
        .arg(root.join("infra/template.yaml"))
        .output()
        .expect("cfn-lint is installed by scripts/bootstrap.sh");
    assert!(out.status.success(), "cfn-lint:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// The channel directories of `channels/` (each holds `<format>.toml` spec files).
fn channel_dirs() -> BTreeSet<String> {
    let dir = ariane_local::repo_root().join("channels");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// `pos` -> `Pos`: the channel's part of its logical ids (IngestPosFunction, ...).
fn camel(channel: &str) -> String {
    let mut chars = channel.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_deploys_to_moto_with_the_pipeline_wiring() -> anyhow::Result<()> {
    let stack = LocalStack::start("tpl", &[]).await?;
    let m = &stack.manifest;
    let dirs = channel_dirs();
    assert!(!dirs.is_empty(), "channels/ has channel directories");

    // The same `ingest` binary runs once per channel and once as the landing router.
    let mut binaries: Vec<&str> = m.functions.values().map(|f| f.binary.as_str()).collect();
    binaries.sort();
    let mut expected = vec!["activate", "identity", "segments"];
    expected.extend(std::iter::repeat_n("ingest", dirs.len() + 1));
    expected.sort();
    assert_eq!(binaries, expected);
    for f in m.functions.values() {
        assert!(f.function_name.starts_with("ariane-tpl-"), "Stage in names: {}", f.function_name);
    }

    // Every ingest instance, the identity and the activate functions read a queue.
    assert_eq!(m.event_source_mappings.len(), dirs.len() + 1 + 2, "{:#?}", m.event_source_mappings);
    for esm in &m.event_source_mappings {
        assert!(esm.report_batch_item_failures, "{esm:?}");
        let (_, queue) = m.queue_by_arn(&esm.queue_arn).expect("mapped queue in the stack");
        let timeout = m.function(&esm.function)?.timeout_s;
        assert!(queue.visibility_timeout_s >= 6 * timeout, "{esm:?}: visibility {} < 6 x {timeout}", queue.visibility_timeout_s);
        assert!(queue.dlq_url.is_some(), "{esm:?} has a DLQ");
        assert_eq!(queue.max_receive_count, Some(5));
    }
    let mapped: BTreeSet<&str> = m.event_source_mappings.iter().map(|e| e.function.as_str()).collect();
    assert!(mapped.contains("IdentityFunction") && mapped.contains("ActivateFunction"), "{mapped:?}");

    // One catch-all notification, to the landing router's queue.
    let landing_queue = &m.queues["LandingQueue"];
    assert_eq!(m.bucket_notifications.len(), 1, "{:?}", m.bucket_notifications);
    let n = &m.bucket_notifications[0];
    assert_eq!(n.bucket, stack.landing_bucket());
    assert_eq!(n.queue_arn, landing_queue.arn);
    assert_eq!(n.events, vec!["s3:ObjectCreated:*".to_string()]);
    assert_eq!((n.prefix.as_deref(), n.suffix.as_deref()), (None, None), "no key filter");
    // Only the landing bucket may send to the landing queue; no other queue takes S3 events.
    let policy = stack
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(&landing_queue.url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::Policy)
        .send()
        .await?;
    let policy = policy.attributes().and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::Policy)).cloned().unwrap_or_default();
    assert!(policy.contains("s3.amazonaws.com") && policy.contains(stack.landing_bucket()), "{policy}");

    // The router: fed by the landing queue, one CHANNEL_QUEUE_URLS entry per channel.
    let (router_id, router) = m.ingest_instance("router")?;
    assert_eq!(router_id, "LandingRouterFunction");
    assert_eq!(m.queue_of(router_id)?.0, "LandingQueue");
    let routes: Vec<(&str, &str)> = router.environment["CHANNEL_QUEUE_URLS"]
        .split(',')
        .map(|e| e.split_once('=').unwrap_or_else(|| panic!("{e:?} is not channel=url")))
        .collect();
    let routed: BTreeSet<String> = routes.iter().map(|(c, _)| c.to_string()).collect();
    assert_eq!(routes.len(), routed.len(), "one route per channel: {routes:?}");
    assert_eq!(routed, dirs, "CHANNEL_QUEUE_URLS covers exactly the channel directories");
    for key in ["LANDING_BUCKET", "LAKE_BUCKET"] {
        assert!(router.environment.contains_key(key), "router env {key}");
    }

    // One instance per channel directory, reading its own queue, which the router targets.
    for channel in &dirs {
        let id = format!("Ingest{}Function", camel(channel));
        let f = m.function(&id)?;
        assert_eq!(f.binary, "ingest");
        assert_eq!(f.environment.get("INGEST_CHANNEL"), Some(channel), "{id}");
        for key in ["LANDING_BUCKET", "LAKE_BUCKET", "IDENTITY_QUEUE_URL"] {
            assert!(f.environment.contains_key(key), "{id} env {key}");
        }
        assert_eq!(f.function_name, format!("ariane-tpl-ingest-{channel}"));
        assert!(f.memory_mb >= 512, "{id}: {}", f.memory_mb);
        assert_eq!((f.timeout_s, f.ephemeral_storage_mb), (900, Some(2048)), "{id}");
        let (queue_id, queue) = m.queue_of(&id)?;
        assert_eq!(queue_id, format!("Ingest{}Queue", camel(channel)));
        assert!(routes.contains(&(channel.as_str(), queue.url.as_str())), "{channel}: {} not in CHANNEL_QUEUE_URLS {routes:?}", queue.url);
        let esm = m.event_source_mappings.iter().find(|e| e.function == id).expect("mapping");
        assert_eq!(esm.batch_size, 1, "{id}: one file per invocation");
        let reserved = f.reserved_concurrency.unwrap_or_else(|| panic!("{id} has reserved concurrency"));
        let max = esm.maximum_concurrency.unwrap_or_else(|| panic!("{id}'s mapping has a maximum concurrency"));
        assert!(max <= reserved, "{id}: maximum concurrency {max} > reserved {reserved} (throttled receives would drift to the DLQ)");
        m.output(&format!("Ingest{}QueueUrl", camel(channel)))?;
        m.output(&format!("Ingest{}DLQUrl", camel(channel)))?;
        m.output(&format!("Ingest{}FunctionName", camel(channel)))?;
    }
    // Rust's channel list and the channel directories agree.
    let listed: BTreeSet<String> = CHANNELS.iter().map(|c| c.to_string()).collect();
    assert_eq!(listed, dirs, "shared::model::CHANNELS vs channels/");

    // Two schedules: segments (hourly) and the release of quiet-hours deferrals.
    let scheduled: BTreeSet<&str> = m.schedules.iter().map(|s| m.function(&s.function).map(|f| f.binary.as_str()).unwrap_or("?")).collect();
    assert_eq!(scheduled, ["activate", "segments"].into_iter().collect(), "{:?}", m.schedules);

    // The activate function: the destinations config/activation.toml declares, each with
    // a URL, and the signing secret the local stack created from the template.
    let activate = m.function("ActivateFunction")?;
    let rules = ariane_activate::rules::Rules::embedded()?;
    let urls = ariane_activate::webhook::parse_destinations(&activate.environment["WEBHOOK_DESTINATIONS"]).map_err(anyhow::Error::msg)?;
    assert_eq!(
        urls.keys().collect::<BTreeSet<_>>(),
        rules.destinations.keys().collect::<BTreeSet<_>>(),
        "WEBHOOK_DESTINATIONS in the template vs [destinations] in config/activation.toml"
    );
    let secret_arn = &activate.environment["WEBHOOK_SECRET_ARN"];
    assert!(secret_arn.starts_with("arn:aws:secretsmanager:"), "{secret_arn}");
    assert_eq!(m.output("WebhookSigningSecretArn")?, secret_arn);
    for key in ["LAKE_BUCKET", "ACTIVATION_QUEUE_URL", "ACTIVATION_EVENTS_QUEUE_URL", "ACTIVATION_LEDGER_TABLE", "PROFILES_TABLE"] {
        assert!(activate.environment.contains_key(key), "activate env {key}");
    }
    // Every campaign validates against the deployed destinations (the function refuses
    // to start otherwise).
    let env = m.function_env("ActivateFunction")?;
    ariane_activate::Activate::from_env(&env).await?;
    for output in [
        "LandingBucketName",
        "LakeBucketName",
        "ProfilesTableName",
        "LandingQueueUrl",
        "LandingDLQUrl",
        "LandingRouterFunctionName",
        "IdentityQueueUrl",
        "ActivationQueueUrl",
        "ActivationEventsQueueUrl",
    ] {
        m.output(output)?;
    }
    Ok(())
}
