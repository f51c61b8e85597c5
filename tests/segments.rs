//! Segment runs against the local stack (moto, through the real AWS SDK): a run sends
//! exactly the entered/exited messages its memberships imply, a merge between runs is
//! reflected (the merged history counts once, under the surviving profile), a re-run of a
//! committed run id sends nothing, and a failed run commits nothing.

use std::collections::BTreeSet;

use ariane_identity::resolver::Resolver;
use ariane_identity::rules::Rules;
use ariane_identity::store::DynamoStore;
use ariane_local::states::TraceEvent;
use ariane_shared::identifiers::{Identifier, IdentifierKind as K};
use ariane_shared::lake;
use ariane_shared::memberships::{self, Memberships};
use ariane_shared::model::{ActivationRequest, SegmentChange};
use ariane_tests::Harness;
use chrono::{DateTime, Duration, Utc};

const HEADER: &str = "Name,Email,Phone,Customer ID,Created at,Currency,Subtotal,Shipping,Total,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Lineitem category,Billing Name,Billing Zip,Billing City,Accepts Marketing";

fn export(rows: &[&str]) -> Vec<u8> {
    format!("{HEADER}\n{}\n", rows.join("\n")).into_bytes()
}

fn t1() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().with_timezone(&Utc)
}

/// A member as the test states it: (segment, profile id, key columns as `k=v`).
type Member = (String, String, String);

fn member(segment: &str, pid: &str, key: &str) -> Member {
    (segment.to_string(), pid.to_string(), key.to_string())
}

/// Everything on the activation queue, removed from it.
async fn take_activation_requests(h: &Harness) -> anyhow::Result<Vec<ActivationRequest>> {
    let url = h.stack.manifest.queues.get("ActivationQueue").map(|q| q.url.clone()).expect("activation queue");
    h.take_json(&url).await
}

fn key_text(r: &ActivationRequest) -> String {
    r.key.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The messages must be exactly the difference between the two memberships, each once.
fn assert_changes(requests: &[ActivationRequest], before: &BTreeSet<Member>, after: &BTreeSet<Member>) {
    let as_member = |r: &ActivationRequest| member(&r.segment, &r.profile_id, &key_text(r));
    let entered: Vec<Member> = requests.iter().filter(|r| r.change == SegmentChange::Entered).map(as_member).collect();
    let exited: Vec<Member> = requests.iter().filter(|r| r.change == SegmentChange::Exited).map(as_member).collect();
    let expected_entered: BTreeSet<Member> = after.difference(before).cloned().collect();
    let expected_exited: BTreeSet<Member> = before.difference(after).cloned().collect();
    assert_eq!(entered.iter().cloned().collect::<BTreeSet<_>>(), expected_entered, "entered");
    assert_eq!(exited.iter().cloned().collect::<BTreeSet<_>>(), expected_exited, "exited");
    assert_eq!(entered.len() + exited.len(), requests.len(), "each change sent once: {requests:?}");
}

async fn pointer_run_id(h: &Harness, segment: &str) -> anyhow::Result<String> {
    let body = h.stack.lake_object(&lake::segment_current_key(segment)).await?;
    Ok(serde_json::from_slice::<serde_json::Value>(&body)?["run_id"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_send_exact_changes_reflect_merges_and_never_send_twice() -> anyhow::Result<()> {
    let h = Harness::start("segruns").await?;
    let table = h.stack.manifest.output("ProfilesTableName")?.to_string();
    let ids = Resolver::new(DynamoStore { client: h.stack.clients.dynamodb.clone(), table }, Rules::embedded()?);

    // Marie: two old orders. Paul: one order as a customer, one as a guest with another
    // e-mail (two profiles until something links them).
    h.stack
        .upload(
            "ecommerce/orders 2026-06.csv",
            export(&[
                "#4000001,marie.curie@orange.fr,06 11 22 33 44,4000000000001,2026-03-10 10:00:00 +0100,EUR,30.00,0.00,30.00,1,Pull,30.00,SKU-VET-1,vetements,Marie Curie,75005,Paris,yes",
                "#4000002,marie.curie@orange.fr,06 11 22 33 44,4000000000001,2026-05-12 10:00:00 +0200,EUR,20.00,0.00,20.00,1,Bonnet,20.00,SKU-ACC-2,accessoires,Marie Curie,75005,Paris,yes",
                "#4000003,paul.martin@gmail.com,,4000000000002,2026-04-01 10:00:00 +0200,EUR,40.00,0.00,40.00,1,Baskets,40.00,SKU-CHA-3,chaussures,Paul Martin,69003,Lyon,yes",
                "#4000004,pm.perso@free.fr,,,2026-06-01 10:00:00 +0200,EUR,15.00,0.00,15.00,1,Bougie,15.00,SKU-MAI-4,maison,Paul Martin,69003,Lyon,yes",
            ]),
        )
        .await?;
    h.runner.drain().await?;
    let lookup = |v: &str| Identifier::new(K::Email, v);
    let marie = ids.lookup(&lookup("marie.curie@orange.fr")).await?.expect("Marie's profile");
    let paul_a = ids.lookup(&lookup("paul.martin@gmail.com")).await?.expect("Paul's customer profile");
    let paul_b = ids.lookup(&lookup("pm.perso@free.fr")).await?.expect("Paul's guest profile");
    assert_ne!(paul_a, paul_b);

    // Run 1: memberships by the library's definitions (docs/segments.md).
    let run1 = h.runner.fire_schedule(None, t1()).await?;
    let before: BTreeSet<Member> = [
        member("reactivation", &marie, ""),
        member("rfm", &marie, "tier=hibernating"),  // last order 195 days before, 2 orders
        member("rfm", &paul_a, "tier=hibernating"), // 236 days
        member("rfm", &paul_b, "tier=at_risk"),     // 175 days
        member("cross-sell", &marie, "suggested_category=chaussures"),
        member("cross-sell", &paul_a, "suggested_category=accessoires"),
        member("cross-sell", &paul_b, "suggested_category=beaute"),
    ]
    .into_iter()
    .collect();
    assert_changes(&take_activation_requests(&h).await?, &BTreeSet::new(), &before);
    assert_eq!(ariane_tests::segment_report(&run1, "rfm")["members"], 3, "{run1}");
    let reactivation = take_payload_check(&h, &marie).await?;
    assert_eq!(reactivation, "2");
    // Marie's memberships item, as the profile API reads it.
    let item = memberships_item(&h, &marie).await?.expect("Marie's memberships item");
    assert_eq!(entries(&item), ["s#cross-sell#chaussures", "s#reactivation", "s#rfm#hibernating"]);
    assert_eq!(item.segments["s#reactivation"].payload["order_count"], "2");
    assert_eq!(item.segments["s#reactivation"].since, t1().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));

    // Between the runs, an order links Paul's guest e-mail to his customer id: a merge.
    h.stack
        .upload(
            "ecommerce/orders 2026-07.csv",
            export(&[
                "#4000005,pm.perso@free.fr,,4000000000002,2026-05-01 10:00:00 +0200,EUR,25.00,0.00,25.00,1,Tennis,25.00,SKU-CHA-5,chaussures,Paul Martin,69003,Lyon,yes",
            ]),
        )
        .await?;
    h.runner.drain().await?;
    let survivor = ids.lookup(&lookup("pm.perso@free.fr")).await?.expect("Paul's profile");
    assert_eq!(ids.lookup(&lookup("paul.martin@gmail.com")).await?.as_deref(), Some(survivor.as_str()), "merged");

    // Run 2, a day later: Paul counts once, with his whole history (3 orders).
    let t2 = t1() + Duration::days(1);
    h.runner.fire_schedule(None, t2).await?;
    let after: BTreeSet<Member> = [
        member("reactivation", &marie, ""),
        member("reactivation", &survivor, ""),
        member("rfm", &marie, "tier=hibernating"),
        member("rfm", &survivor, "tier=loyal"),
        member("cross-sell", &marie, "suggested_category=chaussures"),
        member("cross-sell", &survivor, "suggested_category=accessoires"),
        member("cross-sell", &survivor, "suggested_category=beaute"),
    ]
    .into_iter()
    .collect();
    let requests = take_activation_requests(&h).await?;
    assert_changes(&requests, &before, &after);
    let paul = requests.iter().find(|r| r.segment == "reactivation").expect("Paul entered reactivation");
    assert_eq!((paul.profile_id.as_str(), paul.payload["order_count"].as_str()), (survivor.as_str(), "3"));
    let item = memberships_item(&h, &survivor).await?.expect("Paul's memberships item");
    assert_eq!(entries(&item), ["s#cross-sell#accessoires", "s#cross-sell#beaute", "s#reactivation", "s#rfm#loyal"]);
    assert_eq!(item.last_run.as_deref(), Some(lake::run_id(t2).as_str()));

    // Re-running the committed tick sends nothing.
    let rerun = h.runner.fire_schedule(None, t2).await?;
    assert!(rerun["segments"].as_array().unwrap().iter().all(|r| r["skipped"] == true), "{rerun}");
    assert!(take_activation_requests(&h).await?.is_empty());

    // A run that fails (an unreadable lake file) commits nothing; once the file is gone,
    // the same tick runs and, nothing having changed, sends nothing.
    let t3 = t2 + Duration::days(1);
    let garbage = "events/channel=ecommerce/event_date=2026-11-24/garbage.parquet";
    h.stack.clients.s3.put_object().bucket(h.stack.lake_bucket()).key(garbage).body(b"not parquet".to_vec().into()).send().await?;
    let failed = h.runner.fire_schedule(None, t3).await;
    assert!(failed.is_err(), "a run over an unreadable file fails: {failed:?}");
    assert_eq!(pointer_run_id(&h, "abandoned-cart").await?, lake::run_id(t2), "nothing committed");
    let _ = take_activation_requests(&h).await?;
    h.stack.clients.s3.delete_object().bucket(h.stack.lake_bucket()).key(garbage).send().await?;
    let run3 = h.runner.fire_schedule(None, t3).await?;
    assert!(run3["segments"].as_array().unwrap().iter().all(|r| r["skipped"] == false && r["entered"] == 0 && r["exited"] == 0), "{run3}");
    assert!(take_activation_requests(&h).await?.is_empty());
    for segment in ["reactivation", "rfm", "abandoned-cart"] {
        assert_eq!(pointer_run_id(&h, segment).await?, lake::run_id(t3));
    }
    Ok(())
}

/// The memberships item (`SEGMENTS#<pid>`) the segments run wrote for a person.
async fn memberships_item(h: &Harness, pid: &str) -> anyhow::Result<Option<Memberships>> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let table = h.stack.manifest.output("ProfilesTableName")?;
    let out = h
        .stack
        .clients
        .dynamodb
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(memberships::pk(pid)))
        .key("sk", AttributeValue::S(memberships::SK.to_string()))
        .consistent_read(true)
        .send()
        .await?;
    Ok(out.item().map(Memberships::from_item))
}

fn entries(item: &Memberships) -> Vec<&str> {
    item.segments.keys().map(String::as_str).collect()
}

/// The committed reactivation membership of Marie: her `order_count` payload.
async fn take_payload_check(h: &Harness, pid: &str) -> anyhow::Result<String> {
    let pointer: serde_json::Value = serde_json::from_slice(&h.stack.lake_object(&lake::segment_current_key("reactivation")).await?)?;
    let mut members = Vec::new();
    for part in pointer["parts"].as_array().expect("the run's parts, one per bucket") {
        let part = part.as_str().expect("a part key");
        members.extend(lake::members_from_batches(&lake::read_parquet_bytes(h.stack.lake_object(part).await?)?)?);
    }
    let m = members.iter().find(|m| m.profile_id == pid).expect("member");
    Ok(m.payload["order_count"].clone())
}

/// The scheduled run is the segments state machine (the template's definition, played by
/// the local runner): its buckets run as separate invocations, and a bucket that keeps
/// failing fails the run after the state machine's retries. Nothing is published and no
/// pointer moves: the previous memberships stay current. Repaired, the same tick commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_bucket_fails_the_run_and_leaves_the_previous_snapshot_current() -> anyhow::Result<()> {
    let h = Harness::start("segbucket").await?;
    let partitions: usize = h.stack.manifest.function("SegmentsFunction")?.environment["ARIANE_SEGMENT_PARTITIONS"].parse()?;
    assert!(partitions >= 2, "the template runs segments in several buckets ({partitions})");
    let rows: Vec<String> = (0..12)
        .map(|i| {
            format!(
                "#41000{i:02},client{i}@exemple.fr,,41000000000{i:02},2026-03-{:02} 10:00:00 +0100,EUR,30.00,0.00,30.00,1,Pull,30.00,SKU-VET-1,vetements,Client {i},75005,Paris,yes",
                i + 1
            )
        })
        .collect();
    h.stack.upload("ecommerce/orders 2026-03.csv", export(&rows.iter().map(String::as_str).collect::<Vec<_>>())).await?;
    h.runner.drain().await?;

    // Run 1 commits through the state machine: every bucket, then publish, then commit.
    let run1 = h.runner.execute_state_machine("SegmentsStateMachine", scheduled(&h, t1())).await?;
    let summary = run1.output.clone().map_err(|f| anyhow::anyhow!("run 1 failed: {f:?}"))?;
    assert_eq!(ariane_tests::segment_report(&summary, "rfm")["members"], 12, "{summary}");
    let bucket_tasks: BTreeSet<Option<usize>> =
        run1.entries_of("Bucket").filter(|t| matches!(t.event, TraceEvent::TaskSucceeded { .. })).map(|t| t.map_index).collect();
    assert_eq!(bucket_tasks.len(), partitions, "one bucket task per bucket: {:?}", run1.trace);
    let entered = take_activation_requests(&h).await?;
    assert!(entered.len() >= 24, "rfm and cross-sell entries: {}", entered.len());

    // Run 2: its profile snapshot is run 1's, but bucket 1's file is unreadable.
    let t2 = t1() + Duration::days(1);
    let (run1_id, run2_id) = (lake::run_id(t1()), lake::run_id(t2));
    for k in 0..partitions {
        let body =
            if k == 1 { b"not parquet".to_vec() } else { h.stack.lake_object(&lake::profiles_snapshot_key(&run1_id, k)).await?.to_vec() };
        h.stack
            .clients
            .s3
            .put_object()
            .bucket(h.stack.lake_bucket())
            .key(lake::profiles_snapshot_key(&run2_id, k))
            .body(body.into())
            .send()
            .await?;
    }
    let marker = h.stack.lake_object(&ariane_segments::snapshot::marker_key(&run1_id)).await?;
    let marker = String::from_utf8(marker.to_vec())?.replace(&run1_id, &run2_id);
    let marker_key = ariane_segments::snapshot::marker_key(&run2_id);
    h.stack.clients.s3.put_object().bucket(h.stack.lake_bucket()).key(&marker_key).body(marker.into_bytes().into()).send().await?;

    let run2 = h.runner.execute_state_machine("SegmentsStateMachine", scheduled(&h, t2)).await?;
    let failure = run2.output.clone().expect_err("a bucket that cannot read its profiles fails the run");
    assert_eq!(failure.state, "Buckets", "{failure:?}");
    let attempts = run2
        .entries_of("Bucket")
        .filter(|t| t.map_index == Some(1) && matches!(t.event, TraceEvent::TaskSucceeded { .. } | TraceEvent::TaskFailed { .. }))
        .count();
    assert_eq!(attempts, 3, "bucket 1: the first attempt and the two retries of the template: {:?}", run2.trace);
    assert!(!run2.entered("Publish") && !run2.entered("Commit"), "nothing after the failed Map: {:?}", run2.trace);
    for segment in ["rfm", "cross-sell", "reactivation"] {
        assert_eq!(pointer_run_id(&h, segment).await?, run1_id, "{segment}: the previous snapshot stays current");
    }
    assert!(take_activation_requests(&h).await?.is_empty(), "nothing published by a failed run");

    // Repaired (the snapshot is taken again), the same tick commits.
    h.stack.clients.s3.delete_object().bucket(h.stack.lake_bucket()).key(&marker_key).send().await?;
    let retry = h.runner.execute_state_machine("SegmentsStateMachine", scheduled(&h, t2)).await?;
    retry.output.map_err(|f| anyhow::anyhow!("the repaired run failed: {f:?}"))?;
    for segment in ["rfm", "cross-sell", "reactivation"] {
        assert_eq!(pointer_run_id(&h, segment).await?, run2_id, "{segment}");
    }
    Ok(())
}

/// The scheduled event EventBridge sends the state machine at `time`.
fn scheduled(h: &Harness, time: DateTime<Utc>) -> serde_json::Value {
    let rule =
        h.stack.manifest.schedules.iter().find(|s| s.state_machine.as_deref() == Some("SegmentsStateMachine")).expect("segments schedule");
    ariane_local::runner::scheduled_event(&h.stack.manifest, &rule.rule_arn, time)
}
