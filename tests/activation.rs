//! Campaign activation against the local stack (moto over HTTP, a real HTTP receiver on
//! 127.0.0.1): exactly-once signed delivery under duplicates, 500s and 429s; the
//! cross-channel frequency cap across two campaigns and two channels under concurrent
//! instances; quiet-hours deferral and release; consent withdrawn between the segment run
//! and the send; the holdout share; hashed audience files; the campaign report.

use std::collections::{BTreeMap, BTreeSet};

use ariane_activate::handler::Clock;
use ariane_activate::holdout::in_holdout;
use ariane_activate::signature::verify;
use ariane_activate::{Activate, ActivateConfig};
use ariane_shared::model::SegmentChange::{Entered, Exited};
use ariane_tests::{activation_request, Harness, TestProfile};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, Utc};

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t).expect("instant").with_timezone(&Utc)
}

/// Tuesday 24 November 2026, 11:00 in Paris: every channel is open.
fn tuesday() -> DateTime<Utc> {
    at("2026-11-24T10:00:00Z")
}

/// Profile ids `<prefix>_<i>` outside `campaign`'s holdout.
fn treated(campaign: &str, percent: f64, prefix: &str, n: usize) -> Vec<String> {
    (0..).map(|i| format!("{prefix}_{i:04}")).filter(|p| !in_holdout(campaign, p, percent)).take(n).collect()
}

async fn secret(h: &Harness) -> anyhow::Result<Vec<u8>> {
    let sdk = &h.stack.clients.config;
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let arn = h.stack.manifest.output("WebhookSigningSecretArn")?;
    assert!(arn.starts_with("arn:aws:secretsmanager:"), "the template's secret exists locally: {arn}");
    let out = sm.get_secret_value().secret_id(arn).send().await?;
    Ok(out.secret_string().unwrap_or_default().as_bytes().to_vec())
}

async fn send(h: &Harness, request: &ariane_shared::model::ActivationRequest) -> anyhow::Result<()> {
    h.send_raw("ActivationQueue", &serde_json::to_string(request)?).await
}

/// Everything on the outbound events queue, removed from it.
async fn take_events(h: &Harness) -> anyhow::Result<Vec<serde_json::Value>> {
    h.take_json(h.stack.manifest.output("ActivationEventsQueueUrl")?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_exactly_once_under_duplicates_500s_and_429s() -> anyhow::Result<()> {
    let mut h = Harness::start("once").await?;
    h.runner.set_activate_clock(&Clock::manual(tuesday()));
    let key = secret(&h).await?;
    let mut ids = treated("reactivation", 10.0, "p_once", 4);
    // The last one has no profile: erased.
    let erased = ids.pop().expect("four ids");
    for (i, pid) in ids.iter().enumerate() {
        let mut p = TestProfile::new(pid);
        p.email = Some(format!("client{i}@example.fr"));
        p.consents = vec![("email", true)];
        p.put(&h).await?;
    }
    let payload = [("order_count", "3"), ("last_order_at", "2026-05-01T10:00:00Z"), ("lifetime_value_minor", "15900")];
    // The same request three times, another profile's once, and a profile that was erased.
    for _ in 0..3 {
        send(&h, &activation_request("reactivation", &ids[0], Entered, &payload)).await?;
    }
    send(&h, &activation_request("reactivation", &ids[1], Entered, &payload)).await?;
    send(&h, &activation_request("reactivation", &erased, Entered, &payload)).await?;
    h.receiver.fail_next(2);
    let report = h.runner.drain().await?;
    h.receiver.throttle_next(1);
    send(&h, &activation_request("reactivation", &ids[2], Entered, &payload)).await?;
    h.runner.drain().await?;

    let deliveries = h.receiver.deliveries();
    let mut reached: Vec<&str> = deliveries.iter().filter_map(|d| d.body["profile_id"].as_str()).collect();
    reached.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(reached, want, "each profile once, the erased one never: {report:?}");
    assert!(h.receiver.requests() >= 6, "the two 500s and the 429 were retried: {}", h.receiver.requests());
    let mut keys = BTreeSet::new();
    for d in &deliveries {
        assert_eq!(d.destination, "esp");
        assert_eq!(d.body["campaign"], "reactivation");
        assert_eq!(d.body["template"], "winback-email-v4");
        assert_eq!(d.body["payload"]["order_count"], "3");
        assert!(d.body["to"]["email"].as_str().is_some_and(|e| e.ends_with("@example.fr")));
        let header = d.signature.as_deref().expect("signed");
        verify(&key, header, &d.raw, Utc::now().timestamp(), 300).map_err(|e| anyhow::anyhow!("signature: {e}"))?;
        assert!(verify(b"another key", header, &d.raw, Utc::now().timestamp(), 300).is_err());
        let k = d.idempotency_key.clone().expect("Idempotency-Key");
        assert_eq!(d.body["idempotency_key"], k.as_str());
        assert!(keys.insert(k), "distinct idempotency keys");
    }
    assert_eq!(h.dlq_depth("ActivationQueue").await?, 0);

    // Delivered again later (a re-run of the segment, a late redelivery): nothing new.
    send(&h, &activation_request("reactivation", &ids[0], Entered, &payload)).await?;
    h.runner.drain().await?;
    assert_eq!(h.receiver.deliveries().len(), 3);

    // Outbound events: one ActivationSent per send (at least once: consumers dedupe by id).
    let events = take_events(&h).await?;
    let sent_ids: BTreeSet<&str> = events.iter().filter(|e| e["type"] == "ActivationSent").filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(sent_ids, keys.iter().map(String::as_str).collect());

    // The activation records: three sends, one suppressed for erasure.
    let records = h.stack.activation_records().await?;
    let finals: BTreeSet<(String, String, Option<String>)> =
        records.iter().map(|r| (r.profile_id.clone(), r.outcome.clone(), r.reason.clone())).collect();
    for pid in &ids {
        assert!(finals.contains(&(pid.clone(), "sent".into(), None)), "{finals:?}");
    }
    assert!(finals.contains(&(erased.clone(), "suppressed".into(), Some("erased".into()))), "{finals:?}");
    Ok(())
}

const CAP_RULES: &str = r#"
time_zone = "Europe/Paris"
[frequency_cap]
max_messages = 3
window_days = 7
[destinations.esp]
channel = "email"
[destinations.push-provider]
channel = "push"
"#;

fn cap_campaign(name: &str, segment: &str) -> ariane_activate::campaign::Campaign {
    let text = format!(
        r#"
name = "{name}"
segment = "{segment}"
trigger = "entered"
[channels]
policy = "all"
order = ["email", "push"]
[channels.email]
destination = "esp"
template = "{name}-email"
[channels.push]
destination = "push-provider"
template = "{name}-push"
"#
    );
    ariane_activate::campaign::Campaign::parse(&format!("campaigns/{name}.toml"), &text).expect("campaign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_holds_across_campaigns_channels_and_concurrent_instances() -> anyhow::Result<()> {
    let h = Harness::start("cap").await?;
    let key = secret(&h).await?;
    let env = h.stack.manifest.function_env("ActivateFunction")?;
    let rules = ariane_activate::rules::Rules::parse("cap.toml", CAP_RULES)?;
    let campaigns = vec![cap_campaign("promo-a", "seg-a"), cap_campaign("promo-b", "seg-b")];
    let people: Vec<String> = (0..6).map(|i| format!("p_cap_{i}")).collect();
    for (i, pid) in people.iter().enumerate() {
        let mut p = TestProfile::new(pid);
        p.email = Some(format!("cap{i}@example.fr"));
        p.push_token = Some(format!("token-{i}"));
        p.consents = vec![("email", true), ("push", true)];
        p.put(&h).await?;
    }
    // Per person: three runs of each segment, two channels each: 12 possible sends.
    let mut messages = Vec::new();
    for pid in &people {
        for segment in ["seg-a", "seg-b"] {
            for run in 0..3 {
                let mut r = activation_request(segment, pid, Entered, &[]);
                r.run_id = format!("20261124T0{run}0000Z");
                let mut m = SqsMessage::default();
                m.message_id = Some(format!("{pid}-{segment}-{run}"));
                m.body = Some(serde_json::to_string(&r)?);
                messages.push(m);
            }
        }
    }
    // Interleave so every instance works on every person at once.
    messages.sort_by_key(|m| ariane_shared::identifiers::stable_id(&[m.message_id.as_deref().unwrap_or_default()]));
    let instances = 4;
    let mut workers = Vec::new();
    for i in 0..instances {
        let clients = ariane_shared::aws::Clients::from_env(&env).await;
        let config = ActivateConfig::from_env(&env)?;
        let activate = Activate::new(clients, config, rules.clone(), campaigns.clone(), key.clone(), Clock::manual(tuesday()))?;
        let mine: Vec<SqsMessage> = messages.iter().skip(i).step_by(instances).cloned().collect();
        workers.push(async move {
            let mut failed = Vec::new();
            for batch in mine.chunks(10) {
                let mut event = SqsEvent::default();
                event.records = batch.to_vec();
                let response = activate.handle(event).await;
                failed.extend(response.batch_item_failures.into_iter().map(|f| f.item_identifier));
            }
            failed
        });
    }
    let failed: Vec<String> = futures::future::join_all(workers).await.into_iter().flatten().collect();
    assert!(failed.is_empty(), "no message failed: {failed:?}");

    let mut per_person: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for d in h.receiver.deliveries() {
        per_person
            .entry(d.body["profile_id"].as_str().unwrap_or_default().to_string())
            .or_default()
            .push((d.body["campaign"].as_str().unwrap_or_default().into(), d.destination.clone()));
    }
    assert_eq!(per_person.len(), people.len(), "{per_person:?}");
    for (pid, sends) in &per_person {
        assert_eq!(sends.len(), 3, "{pid} got exactly the cap (3 of 12 possible sends): {sends:?}");
    }
    let records = h.stack.activation_records().await?;
    let capped: BTreeSet<&str> = records.iter().filter(|r| r.reason.as_deref() == Some("cap")).map(|r| r.send_key.as_str()).collect();
    assert_eq!(capped.len(), people.len() * 9, "every other send is recorded as suppressed by the cap");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_in_quiet_hours_is_deferred_then_released() -> anyhow::Result<()> {
    let mut h = Harness::start("quiet").await?;
    // Saturday 28 November 2026, 21:30 in Paris (20:30 UTC): SMS is quiet until Monday 08:00
    // (Sunday is off); in Guadeloupe it is 16:30, a fine time.
    let clock = Clock::manual(at("2026-11-28T20:30:00Z"));
    h.runner.set_activate_clock(&clock);
    let ids = treated("new-visitor", 10.0, "p_quiet", 2);
    for (i, pid) in ids.iter().enumerate() {
        let mut p = TestProfile::new(pid);
        p.phone = Some(format!("+3361234567{i}"));
        p.consents = vec![("sms", true)];
        if i == 1 {
            p.postal_code = Some("97110".into());
            p.phone = Some("+590690123456".into());
        }
        p.put(&h).await?;
    }
    let payload = [("seen_in_store", "true"), ("seen_on_site", "false")];
    for pid in &ids {
        send(&h, &activation_request("new-visitor", pid, Entered, &payload)).await?;
    }
    h.runner.drain().await?;
    let reached =
        |h: &Harness| h.receiver.deliveries().iter().filter_map(|d| d.body["profile_id"].as_str().map(str::to_string)).collect::<Vec<_>>();
    assert_eq!(reached(&h), vec![ids[1].clone()], "Guadeloupe at 16:30 is sent at once; Paris at 21:30 is deferred");
    let records = h.stack.activation_records().await?;
    assert!(records.iter().any(|r| r.profile_id == ids[0] && r.outcome == "deferred" && r.reason.as_deref() == Some("quiet_hours")));

    // Sunday noon: still quiet (Sunday off), the release finds nothing due.
    clock.set(at("2026-11-29T11:00:00Z"));
    let released = h.runner.fire_schedule(Some("ActivateFunction"), at("2026-11-29T11:00:00Z")).await?;
    assert_eq!(released["released"], 0, "{released}");
    // A duplicate of the original message on Sunday is deferred again, not sent.
    send(&h, &activation_request("new-visitor", &ids[0], Entered, &payload)).await?;
    h.runner.drain().await?;
    assert_eq!(h.receiver.deliveries().len(), 1);

    // Monday 08:00 in Paris (07:00 UTC): released and sent, once.
    clock.set(at("2026-11-30T07:00:00Z"));
    let released = h.runner.fire_schedule(Some("ActivateFunction"), at("2026-11-30T07:00:00Z")).await?;
    assert_eq!(released["released"], 1, "{released}");
    h.runner.drain().await?;
    let mut got = reached(&h);
    got.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want);
    let sms = h.receiver.deliveries().into_iter().find(|d| d.body["profile_id"] == ids[0].as_str()).expect("sent");
    assert_eq!(sms.destination, "sms-gateway");
    assert_eq!(sms.body["to"]["phone"], "+33612345670");
    assert_eq!(sms.body["sent_at"], "2026-11-30T07:00:00Z");
    // Released twice (a retried schedule): nothing more.
    h.runner.fire_schedule(Some("ActivateFunction"), at("2026-11-30T07:15:00Z")).await?;
    h.runner.drain().await?;
    assert_eq!(h.receiver.deliveries().len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_is_read_at_send_time() -> anyhow::Result<()> {
    let mut h = Harness::start("consent").await?;
    h.runner.set_activate_clock(&Clock::manual(tuesday()));
    let ids = treated("reactivation", 10.0, "p_consent", 2);
    // Both agreed to e-mail when the segment ran; one also to SMS.
    let mut a = TestProfile::new(&ids[0]);
    a.email = Some("a@example.fr".into());
    a.phone = Some("+33611111111".into());
    a.consents = vec![("email", true), ("sms", true)];
    a.put(&h).await?;
    let mut b = TestProfile::new(&ids[1]);
    b.email = Some("b@example.fr".into());
    b.consents = vec![("email", true)];
    b.put(&h).await?;
    for pid in &ids {
        send(&h, &activation_request("reactivation", pid, Entered, &[])).await?;
    }
    // Both withdraw their e-mail consent before activation runs.
    a.consents = vec![("email", false), ("sms", true)];
    a.put(&h).await?;
    b.consents = vec![("email", false)];
    b.put(&h).await?;
    h.runner.drain().await?;
    let deliveries = h.receiver.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0].body["profile_id"], ids[0].as_str());
    assert_eq!(deliveries[0].destination, "sms-gateway", "the next consented channel of the campaign");
    let records = h.stack.activation_records().await?;
    assert!(
        records.iter().any(|r| r.profile_id == ids[1] && r.outcome == "suppressed" && r.reason.as_deref() == Some("consent")),
        "{records:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holdout_share_and_the_campaign_report() -> anyhow::Result<()> {
    let mut h = Harness::start("holdout").await?;
    h.runner.set_activate_clock(&Clock::manual(tuesday()));
    // 400 entries of cross-sell (10% holdout) for profiles that do not exist (so the
    // treated ones are suppressed as erased): the holdout is decided before any read.
    let n = 400;
    for i in 0..n {
        send(&h, &activation_request("cross-sell", &format!("p_share_{i:04}"), Entered, &[])).await?;
    }
    h.runner.drain().await?;
    let records = h.stack.activation_records().await?;
    let holdout: BTreeSet<&str> = records.iter().filter(|r| r.group == "holdout").map(|r| r.profile_id.as_str()).collect();
    let expected: BTreeSet<String> = (0..n).map(|i| format!("p_share_{i:04}")).filter(|p| in_holdout("cross-sell", p, 10.0)).collect();
    assert_eq!(holdout, expected.iter().map(String::as_str).collect(), "the hash decides");
    let share = holdout.len() as f64 / n as f64;
    let sigma = (0.1f64 * 0.9 / n as f64).sqrt();
    assert!((share - 0.1).abs() < 4.0 * sigma, "holdout share {share} within 4 sigma of 10%");
    assert!(h.receiver.deliveries().is_empty());

    // The campaign report of the segments function (forced): entries per group and the
    // suppressions, each entry once.
    let mut event = ariane_local::runner::scheduled_event(&h.runner.manifest, "manual", tuesday());
    event["detail"] = serde_json::json!({ "report": true, "segments": [] });
    let summary = h.runner.invoker.invoke(&h.runner.manifest, "SegmentsFunction", event).await?;
    let report = &summary["report"];
    let cross =
        report["campaigns"].as_array().and_then(|c| c.iter().find(|c| c["campaign"] == "cross-sell")).expect("cross-sell in the report");
    assert_eq!(cross["holdout"]["entries"], holdout.len() as u64, "{report}");
    assert_eq!(cross["treated"]["entries"], (n - holdout.len()) as u64, "{report}");
    assert_eq!(cross["suppressed"]["erased"], (n - holdout.len()) as u64, "{report}");
    let latest: serde_json::Value = serde_json::from_slice(&h.stack.lake_object(ariane_shared::lake::campaign_report_latest_key()).await?)?;
    assert_eq!(&latest, report);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_files_follow_the_segment_with_the_platforms_hashing() -> anyhow::Result<()> {
    let mut h = Harness::start("audience").await?;
    h.runner.set_activate_clock(&Clock::manual(tuesday()));
    let ids = treated("abandoned-cart", 10.0, "p_aud", 2);
    let mut marie = TestProfile::new(&ids[0]);
    marie.email = Some("marie.dupont@gmail.com".into());
    marie.phone = Some("+33612345678".into());
    marie.consents = vec![("email", true), ("ads", true)];
    marie.put(&h).await?;
    // No advertising consent: never in an audience.
    let mut paul = TestProfile::new(&ids[1]);
    paul.email = Some("paul@example.fr".into());
    paul.consents = vec![("email", true), ("ads", false)];
    paul.put(&h).await?;
    for pid in &ids {
        send(&h, &activation_request("abandoned-cart", pid, Entered, &[("items", "SKU-1,SKU-2"), ("cart_at", "2026-11-24T08:00:00Z")]))
            .await?;
    }
    h.runner.drain().await?;
    let files = h.stack.lake_keys("audiences/abandoned-cart/").await?;
    let read = |op: &str, platform: &str| {
        let keys: Vec<String> =
            files.iter().filter(|k| k.contains(&format!("/{platform}/")) && k.contains(&format!("/{op}-"))).cloned().collect();
        keys
    };
    let meta = read("add", "meta");
    let google = read("add", "google");
    assert_eq!((meta.len(), google.len()), (1, 1), "{files:?}");
    // SHA-256 of "marie.dupont@gmail.com" / "33612345678" (Meta) and of
    // "mariedupont@gmail.com" / "+33612345678" (Google: dots of gmail local parts go).
    assert_eq!(
        text(&h, &meta[0]).await,
        "email,phone\n708c00ac64b84e6bdd1c4e0682cdd3dee2dcf86f93c8fb1a34d6eebada7fda9c,8a3e7886c9335e82e02299fa3e87b46e2de3b0c63d56003e30a5029394a47661\n"
    );
    assert_eq!(
        text(&h, &google[0]).await,
        "Email,Phone\nc1df8cd174e22ca05bc9f7cf1390f000b96f5c61aca06dcd002f79d0250b229a,42d573cfc315801d4cd8eddd5416b416a0bf298b9b9e12d6b07442c91db42bd8\n"
    );
    assert!(meta[0].contains("/run=20261124T090000Z/"));
    // The messages went out too (e-mail: neither has a push token).
    assert_eq!(h.receiver.deliveries().len(), 2);
    assert_eq!(h.receiver.deliveries()[0].body["payload"]["items"], "SKU-1,SKU-2");

    // Marie buys: she exits the segment and leaves the audiences, with the same hashes.
    let mut exit = activation_request("abandoned-cart", &ids[0], Exited, &[]);
    exit.run_id = "20261124T100000Z".into();
    send(&h, &exit).await?;
    h.runner.drain().await?;
    let files = h.stack.lake_keys("audiences/abandoned-cart/").await?;
    let removes: Vec<&String> = files.iter().filter(|k| k.contains("/remove-")).collect();
    assert_eq!(removes.len(), 2, "{files:?}");
    let meta_remove = removes.iter().find(|k| k.contains("/meta/")).expect("meta remove file");
    assert_eq!(text(&h, meta_remove).await, text(&h, &meta[0]).await);
    let events = take_events(&h).await?;
    assert!(events.iter().any(|e| e["type"] == "AudienceEntered" && e["profile_id"] == ids[0].as_str()));
    assert!(events.iter().any(|e| e["type"] == "AudienceExited" && e["profile_id"] == ids[0].as_str()));
    assert!(!events.iter().any(|e| e["type"] == "AudienceEntered" && e["profile_id"] == ids[1].as_str()));
    Ok(())
}

async fn text(h: &Harness, key: &str) -> String {
    String::from_utf8(h.stack.lake_object(key).await.expect("audience file").to_vec()).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_token_guards_complete_release_and_defer_on_dynamodb() -> anyhow::Result<()> {
    let h = Harness::start("token").await?;
    let ledger = ariane_shared::adapters::dynamodb::DynamoLedger {
        client: h.stack.clients.dynamodb.clone(),
        table: h.stack.manifest.output("ActivationLedgerTableName")?.to_string(),
    };
    ariane_tests::claim_token_contract(&ledger, "send-token-moto").await?;
    // The same contract in memory (the ledger `tests/decide.rs` runs the decisions on).
    ariane_tests::claim_token_contract(&ariane_shared::adapters::memory::MemLedger::new(), "send-token-mem").await
}
