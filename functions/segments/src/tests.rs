//! Segment runs over the in-memory adapters (no moto): a small lake written with the lake
//! helpers into [`MemBlobs`], which DataFusion reads through its `object_store` mirror;
//! profiles in [`MemProfiles`]; the activation queue in [`MemQueue`]. Failures are
//! injected between steps with the adapters' [`Faults`](ariane_shared::adapters::memory::Faults).

use std::collections::BTreeSet;
use std::sync::Arc;

use ariane_shared::adapters::memory::{MemBlobs, MemProfiles, MemQueue};
use ariane_shared::lake::{self, IdentityLink};
use ariane_shared::model::{ActivationRequest, CanonicalEvent};
use ariane_shared::ports::BlobStore;
use ariane_shared::profile::{ProfileDoc, ProfileItem};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};

use crate::config::SegmentsConfig;
use crate::definition::SegmentDefinition;
use crate::error::RunError;
use crate::handler::{SegmentsError, SegmentsWith};
use crate::ports::Ports;
use crate::run::{run_segments, SegmentReport};
use ariane_shared::adapters::memory::MemMemberships;

const BUCKET: &str = "lake";
const QUEUE: &str = "mem://activation";

type MemPorts = Ports<Arc<MemBlobs>, Arc<MemQueue>, Arc<MemProfiles>, Arc<MemMemberships>>;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn t1() -> DateTime<Utc> {
    at("2026-11-23T06:00:00Z")
}

/// Two small segments over `orders`: one without key (with a payload), one keyed by tier.
fn definitions() -> Vec<SegmentDefinition> {
    let buyers = "-- name: buyers\n-- payload: orders\n\
                  SELECT profile_id, COUNT(*) AS orders FROM orders GROUP BY profile_id";
    let tiers = "-- name: tiers\n-- key: tier\n\
                 SELECT profile_id, CASE WHEN COUNT(*) >= 2 THEN 'repeat' ELSE 'first' END AS tier FROM orders GROUP BY profile_id";
    vec![SegmentDefinition::parse("segments/buyers.sql", buyers).unwrap(), SegmentDefinition::parse("segments/tiers.sql", tiers).unwrap()]
}

/// The in-memory world of a test.
struct World {
    blobs: Arc<MemBlobs>,
    queue: Arc<MemQueue>,
    profiles: Arc<MemProfiles>,
    memberships: Arc<MemMemberships>,
    config: SegmentsConfig,
    /// Files written so far (each lake file gets its own name).
    files: usize,
}

impl World {
    fn new(partitions: usize) -> World {
        let config = SegmentsConfig::for_tests(partitions);
        assert_eq!((config.lake_bucket.as_str(), config.activation_queue_url.as_str()), (BUCKET, QUEUE));
        World {
            blobs: Arc::new(MemBlobs::new()),
            queue: Arc::new(MemQueue::new()),
            profiles: Arc::new(MemProfiles::new()),
            memberships: Arc::new(MemMemberships::new()),
            config,
            files: 0,
        }
    }

    fn ports(&self) -> MemPorts {
        Ports::reading_blobs(self.blobs.clone(), self.queue.clone(), self.profiles.clone(), self.memberships.clone(), BUCKET).unwrap()
    }

    fn handler(&self) -> SegmentsWith<Arc<MemBlobs>, Arc<MemQueue>, Arc<MemProfiles>, Arc<MemMemberships>> {
        SegmentsWith::new(self.ports(), self.config.clone(), definitions())
    }

    /// A person: a profile in the table, an identity link from their identity key, and
    /// one order line per instant in the lake.
    async fn person(&mut self, profile_id: &str, orders: &[&str]) {
        self.profiles.put(ProfileItem {
            profile_id: profile_id.into(),
            component: format!("c_{profile_id}"),
            doc: ProfileDoc { channels: ["ecommerce".to_string()].into(), ..ProfileDoc::default() },
            merged_from: vec![],
        });
        let anchor = format!("key_{profile_id}");
        let link = IdentityLink {
            identifier_hash: anchor.clone(),
            profile_id: profile_id.into(),
            resolved_at: at("2026-01-01T00:00:00Z"),
            observation_id: format!("obs_{profile_id}"),
        };
        self.files += 1;
        let key = lake::links_key("2026-01-01", &format!("links-{}", self.files));
        self.put_parquet(&key, lake::links_schema(), lake::links_batch(&[link]).unwrap()).await;
        for when in orders {
            self.order(&anchor, when).await;
        }
    }

    /// One order line of the identity key `anchor` at `when`.
    async fn order(&mut self, anchor: &str, when: &str) {
        self.files += 1;
        let n = self.files;
        let event = CanonicalEvent {
            event_id: format!("e{n}"),
            channel: "ecommerce".into(),
            event_type: "order_line".into(),
            occurred_at: at(when),
            anchor_id: Some(anchor.into()),
            email_hash: None,
            phone_hash: None,
            order_id: Some(format!("o{n}")),
            sku: Some("SKU-1".into()),
            product_name: None,
            category: Some("vetements".into()),
            quantity: Some(1),
            unit_price_minor: Some(1000),
            line_total_minor: Some(1000),
            order_total_minor: Some(1000),
            currency: Some("EUR".into()),
            store_id: None,
            campaign_id: None,
            page_url: None,
            consent_channel: None,
            source_key: "ecommerce/orders.csv".into(),
            source_line: n as u64,
            local_time: None,
        };
        let key = lake::events_key("ecommerce", &event.event_date(), &format!("orders-{n}"));
        self.put_parquet(&key, lake::events_schema(), lake::events_batch(&[event]).unwrap()).await;
    }

    async fn put_parquet(&self, key: &str, schema: arrow::datatypes::SchemaRef, batch: arrow::array::RecordBatch) {
        let bytes = lake::parquet_bytes(schema, &[batch]).unwrap();
        self.blobs.put(BUCKET, key, Bytes::from(bytes), "application/vnd.apache.parquet").await.unwrap();
    }

    /// The run of the test's segments at `run_at` (each due one).
    async fn run(&self, run_at: DateTime<Utc>) -> Result<Vec<SegmentReport>, RunError> {
        let ports = self.ports();
        let run = crate::catalog::RunEnv::new(&self.config, ports.lake.clone()).unwrap();
        run_segments(&ports, &self.config, &definitions(), run_at, false, &run).await
    }

    /// What was sent to the activation queue since the last call.
    fn take_requests(&self) -> Vec<ActivationRequest> {
        self.queue.take(QUEUE).iter().map(|body| serde_json::from_str(body).unwrap()).collect()
    }

    /// The committed run id of a segment.
    async fn committed(&self, segment: &str) -> Option<String> {
        crate::run::current_pointer(self.blobs.as_ref(), BUCKET, segment).await.unwrap().map(|p| p.run_id)
    }
}

/// A change as a test states it: (segment, change, profile, key as `k=v`).
type Change = (String, String, String, String);

fn change(segment: &str, change: &str, profile: &str, key: &str) -> Change {
    (segment.into(), change.into(), profile.into(), key.into())
}

fn changes_of(requests: &[ActivationRequest]) -> Vec<Change> {
    let mut out: Vec<Change> = requests
        .iter()
        .map(|r| {
            let key = r.key.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            change(&r.segment, r.change.as_str(), &r.profile_id, &key)
        })
        .collect();
    out.sort();
    out
}

fn sorted(mut changes: Vec<Change>) -> Vec<Change> {
    changes.sort();
    changes
}

/// The changes of the first run of [`definitions`] over p_a and p_b (one order each).
fn first_run_changes() -> Vec<Change> {
    sorted(vec![
        change("buyers", "entered", "p_a", ""),
        change("buyers", "entered", "p_b", ""),
        change("tiers", "entered", "p_a", "tier=first"),
        change("tiers", "entered", "p_b", "tier=first"),
    ])
}

async fn two_buyers(partitions: usize) -> World {
    let mut w = World::new(partitions);
    w.person("p_a", &["2026-11-20T10:00:00Z"]).await;
    w.person("p_b", &["2026-11-21T10:00:00Z"]).await;
    w
}

#[tokio::test]
async fn runs_send_exactly_the_changes_between_runs_and_a_rerun_sends_nothing() {
    for partitions in [1, 3] {
        let mut w = two_buyers(partitions).await;

        let reports = w.run(t1()).await.unwrap();
        assert_eq!(
            reports.iter().map(|r| (r.segment.as_str(), r.members, r.entered, r.exited)).collect::<Vec<_>>(),
            [("buyers", 2, 2, 0), ("tiers", 2, 2, 0)]
        );
        let requests = w.take_requests();
        assert_eq!(changes_of(&requests), first_run_changes(), "partitions {partitions}");
        let a = requests.iter().find(|r| r.segment == "buyers" && r.profile_id == "p_a").unwrap();
        assert_eq!((a.run_id.as_str(), a.payload["orders"].as_str()), ("20261123T060000Z", "1"));
        assert_eq!(w.committed("buyers").await.as_deref(), Some("20261123T060000Z"));

        // The same tick again: committed, nothing sent twice.
        let rerun = w.run(t1()).await.unwrap();
        assert!(rerun.iter().all(|r| r.skipped), "{rerun:?}");
        assert!(w.take_requests().is_empty(), "partitions {partitions}");

        // Before the next day's run: p_a orders again, p_c appears, p_b is erased.
        w.order("key_p_a", "2026-11-23T09:00:00Z").await;
        w.person("p_c", &["2026-11-23T10:00:00Z"]).await;
        w.profiles.remove("p_b");
        let t2 = t1() + Duration::days(1);
        let reports = w.run(t2).await.unwrap();
        assert!(reports.iter().all(|r| !r.skipped), "{reports:?}");
        let expected = sorted(vec![
            change("buyers", "entered", "p_c", ""),
            change("buyers", "exited", "p_b", ""),
            change("tiers", "entered", "p_a", "tier=repeat"),
            change("tiers", "exited", "p_a", "tier=first"),
            change("tiers", "entered", "p_c", "tier=first"),
            change("tiers", "exited", "p_b", "tier=first"),
        ]);
        assert_eq!(changes_of(&w.take_requests()), expected, "partitions {partitions}");

        // A run an hour later: not due (daily), nothing sent.
        let early = w.run(t2 + Duration::hours(1)).await.unwrap();
        assert!(early.iter().all(|r| r.skipped && r.reason.as_deref().is_some_and(|x| x.starts_with("not due"))), "{early:?}");
        assert!(w.take_requests().is_empty());
    }
}

#[tokio::test]
async fn a_changed_partition_count_sends_no_spurious_change() {
    let mut w = two_buyers(1).await;
    w.run(t1()).await.unwrap();
    assert_eq!(changes_of(&w.take_requests()), first_run_changes());
    w.config.partitions = 4;
    let reports = w.run(t1() + Duration::days(1)).await.unwrap();
    assert!(reports.iter().all(|r| !r.skipped && r.members == 2 && r.entered == 0 && r.exited == 0), "{reports:?}");
    assert!(w.take_requests().is_empty());
}

#[tokio::test]
async fn a_failed_send_commits_nothing_and_the_retry_sends_each_change_once() {
    let w = two_buyers(1).await;
    w.queue.faults.fail("queue.send", 1);
    let e = w.run(t1()).await.unwrap_err();
    assert!(matches!(e, RunError::Send(_)), "{e}");
    assert_eq!((w.committed("buyers").await, w.committed("tiers").await), (None, None), "nothing committed");
    assert!(w.take_requests().is_empty(), "the failed batch sent nothing");

    w.run(t1()).await.unwrap();
    let requests = w.take_requests();
    assert_eq!(changes_of(&requests), first_run_changes());
    assert_eq!(requests.len(), 4, "each change once");
    assert_eq!(w.committed("tiers").await.as_deref(), Some("20261123T060000Z"));
}

#[tokio::test]
async fn a_failed_commit_commits_nothing_and_the_retry_publishes_the_same_changes_once() {
    let w = two_buyers(1).await;
    // Every bucket is computed and published; the first segment's pointer write fails.
    w.blobs.faults.fail_on("blob.put", "buyers/current.json", 1);
    let e = w.run(t1()).await.unwrap_err();
    assert!(matches!(e, RunError::Blob(_)), "{e}");
    assert_eq!((w.committed("buyers").await, w.committed("tiers").await), (None, None), "nothing committed");
    let before_crash = w.take_requests();
    assert_eq!(changes_of(&before_crash), first_run_changes());

    // The retry is the same run: its buckets are computed and published already (their
    // markers say so), so it sends nothing again and commits once.
    w.run(t1()).await.unwrap();
    let retry = w.take_requests();
    assert!(retry.is_empty(), "published once: {retry:?}");
    assert_eq!(w.committed("buyers").await.as_deref(), Some("20261123T060000Z"));
    assert_eq!(w.committed("tiers").await.as_deref(), Some("20261123T060000Z"));
    assert!(w.blobs.keys(BUCKET).iter().all(|k| !k.contains("/changes/")), "the committed run's changes files are deleted");

    // Committed now: a third attempt of the tick publishes nothing.
    assert!(w.run(t1()).await.unwrap().iter().all(|r| r.skipped));
    assert!(w.take_requests().is_empty());
}

/// A publish that failed part-way re-sends the whole bucket with the same idempotency
/// keys (activation's ledger makes them one send each).
#[tokio::test]
async fn a_publish_failing_part_way_resends_the_bucket_with_the_same_keys() {
    let w = two_buyers(1).await;
    // The first segment's changes go out, the second's send fails.
    w.queue.faults.fail_after("queue.send", 1, 1);
    assert!(matches!(w.run(t1()).await.unwrap_err(), RunError::Send(_)));
    let before = w.take_requests();
    assert_eq!(changes_of(&before), sorted(first_run_changes().into_iter().filter(|c| c.0 == "buyers").collect()));
    w.run(t1()).await.unwrap();
    let retry = w.take_requests();
    assert_eq!(changes_of(&retry), first_run_changes());
    let keys = |rs: &[ActivationRequest]| rs.iter().map(ActivationRequest::idempotency_key).collect::<BTreeSet<_>>();
    assert!(keys(&before).is_subset(&keys(&retry)), "a re-sent change keeps its idempotency key");
}

#[tokio::test]
async fn a_retried_run_reuses_its_profile_snapshot() {
    let mut w = two_buyers(2).await;
    w.queue.faults.fail("queue.send", 1);
    assert!(w.run(t1()).await.is_err());
    // A person appears after the run started; the retry must not see them, and must not
    // read the profiles table again (a scan would fail).
    w.person("p_c", &["2026-11-22T10:00:00Z"]).await;
    w.profiles.faults.fail("profiles.scan", 1);
    w.run(t1()).await.unwrap();
    assert_eq!(changes_of(&w.take_requests()), first_run_changes());
    assert_eq!(w.profiles.faults.injected(), 0, "the profiles table was not read again");
    // The next run snapshots again: p_c enters.
    w.profiles.faults.clear();
    w.run(t1() + Duration::days(1)).await.unwrap();
    assert_eq!(
        changes_of(&w.take_requests()),
        sorted(vec![change("buyers", "entered", "p_c", ""), change("tiers", "entered", "p_c", "tier=first")])
    );
}

#[tokio::test]
async fn an_undecodable_pointer_is_an_error_not_a_first_run() {
    let w = two_buyers(1).await;
    w.blobs.put(BUCKET, &lake::segment_current_key("buyers"), Bytes::from_static(b"{\"run_id\": 7}"), "application/json").await.unwrap();
    let e = w.run(t1()).await.unwrap_err();
    assert!(matches!(&e, RunError::Decode { key, .. } if key == "segments/buyers/current.json"), "{e}");
    assert!(w.take_requests().is_empty());
}

fn scheduled(detail: serde_json::Value) -> EventBridgeEvent<serde_json::Value> {
    let mut event = EventBridgeEvent::default();
    event.detail_type = "Scheduled Event".into();
    event.source = "aws.events".into();
    event.time = Some(t1());
    event.detail = detail;
    event
}

#[tokio::test]
async fn a_malformed_detail_is_refused_and_an_empty_one_is_the_scheduled_run() {
    let w = two_buyers(1).await;
    let handler = w.handler();
    let lake_before = w.blobs.keys(BUCKET);
    for detail in [
        serde_json::json!({"segment": ["buyers"]}),
        serde_json::json!({"run_at": "yesterday"}),
        serde_json::json!({"segments": "buyers"}),
        serde_json::json!({"force": "yes"}),
        serde_json::json!("buyers"),
        serde_json::json!([1]),
    ] {
        let e = handler.handle(scheduled(detail.clone())).await.unwrap_err();
        assert!(matches!(e, SegmentsError::Detail { .. }), "{detail}: {e}");
        assert!(e.to_string().contains(&detail.to_string()), "the error shows the detail: {e}");
    }
    assert_eq!(w.blobs.keys(BUCKET), lake_before, "a refused detail writes nothing");
    assert!(w.take_requests().is_empty(), "and sends nothing");

    // `{}` (what EventBridge schedules send) is the scheduled run: every due segment, at
    // the event's time, and the daily campaign report.
    let summary = handler.handle(scheduled(serde_json::json!({}))).await.unwrap();
    assert_eq!(summary.run_at, t1());
    assert_eq!(summary.segments.iter().filter(|r| !r.skipped).count(), 2);
    assert!(summary.report.is_some(), "the first run computes the campaign report");
    assert_eq!(changes_of(&w.take_requests()), first_run_changes());
    // No detail at all is the same scheduled run (already committed: nothing to do).
    let summary = handler.handle(scheduled(serde_json::Value::Null)).await.unwrap();
    assert!(summary.segments.iter().all(|r| r.skipped) && summary.report.is_none());
    // Naming a segment forces it; an unknown one is refused.
    let forced = handler.handle(scheduled(serde_json::json!({"segments": ["tiers"], "run_at": "2026-11-23T07:00:00Z"}))).await.unwrap();
    assert_eq!(forced.segments.iter().map(|r| (r.segment.as_str(), r.skipped)).collect::<Vec<_>>(), [("tiers", false)]);
    assert!(matches!(handler.handle(scheduled(serde_json::json!({"segments": ["nope"]}))).await, Err(SegmentsError::Unknown(_))));
}

/// The AWS-wired handler is what the tools host in a multi-threaded runtime and turn
/// into `anyhow` errors: its future must be `Send` and its error `Send + Sync`.
#[test]
fn the_aws_handler_future_is_send_and_its_error_sync() {
    fn is_send<F: Send>(_: &F) {}
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    fn handle(s: &crate::Segments, event: EventBridgeEvent<serde_json::Value>) {
        let future = s.handle(event);
        is_send(&future);
    }
    let _ = handle as fn(&crate::Segments, EventBridgeEvent<serde_json::Value>);
    is_error::<SegmentsError>();
}

/// Each person's memberships item: (entry name, since's run) sorted, and the attributes.
fn memberships_of(w: &World, pid: &str) -> Vec<(String, String)> {
    w.memberships.get(pid).map(|m| m.segments.into_iter().map(|(name, m)| (name, m.run_id)).collect()).unwrap_or_default()
}

#[tokio::test]
async fn the_memberships_items_follow_entries_and_exits_and_a_retry_writes_the_same() {
    let mut w = two_buyers(2).await;
    // The first publish fails after the memberships are written; the retry writes them
    // again with the same values.
    w.queue.faults.fail("queue.send", 1);
    assert!(w.run(t1()).await.is_err());
    let after_failure = w.memberships.all();
    assert!(!after_failure.is_empty(), "the failed publish wrote its bucket's memberships");
    w.run(t1()).await.unwrap();
    let after_retry = w.memberships.all();
    for (pid, item) in &after_failure {
        assert_eq!(&after_retry[pid], item, "a retried run writes the same values");
    }
    let run1 = "20261123T060000Z".to_string();
    assert_eq!(memberships_of(&w, "p_a"), vec![("s#buyers".to_string(), run1.clone()), ("s#tiers#first".to_string(), run1.clone())]);
    let a = w.memberships.get("p_a").unwrap();
    assert_eq!(a.segments["s#buyers"].payload["orders"], "1");
    assert_eq!(a.segments["s#buyers"].since, "2026-11-23T06:00:00Z");
    assert_eq!(a.segments["s#tiers#first"].key["tier"], "first");
    assert_eq!(a.last_run.as_deref(), Some(run1.as_str()));

    // Next day: p_a moves to the repeat tier (exit and entry in one write), p_b is erased
    // (exits everything), p_c enters.
    w.order("key_p_a", "2026-11-23T09:00:00Z").await;
    w.person("p_c", &["2026-11-23T10:00:00Z"]).await;
    w.profiles.remove("p_b");
    w.run(t1() + Duration::days(1)).await.unwrap();
    let run2 = "20261124T060000Z".to_string();
    assert_eq!(memberships_of(&w, "p_a"), vec![("s#buyers".to_string(), run1.clone()), ("s#tiers#repeat".to_string(), run2.clone())]);
    assert_eq!(memberships_of(&w, "p_b"), vec![], "every membership of p_b removed");
    assert_eq!(memberships_of(&w, "p_c").len(), 2);
}

#[test]
fn membership_changes_group_by_person_and_keep_attributes() {
    use ariane_shared::model::SegmentChange;
    let req = |segment: &str, pid: &str, change: SegmentChange, key: &[(&str, &str)], attrs: &[(&str, &str)]| ActivationRequest {
        segment: segment.into(),
        run_id: "20261123T060000Z".into(),
        run_at: t1(),
        profile_id: pid.into(),
        change,
        key: key.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        payload: [("items".to_string(), "SKU-1".to_string())].into(),
        attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    let attribute_segments = [("preferred-channel", "preferred_channel")].into_iter().collect();
    let requests = [
        req("preferred-channel", "p_a", SegmentChange::Exited, &[("preferred_channel", "email")], &[]),
        req("preferred-channel", "p_a", SegmentChange::Entered, &[("preferred_channel", "app")], &[]),
        req("abandoned-cart", "p_a", SegmentChange::Entered, &[], &[("preferred_channel", "app")]),
        req("preferred-channel", "p_b", SegmentChange::Exited, &[("preferred_channel", "sms")], &[]),
        req("vip", "p_c", SegmentChange::Entered, &[], &[("preferred_channel", "email")]),
    ];
    let changes = crate::run::membership_changes(&requests, &attribute_segments);
    assert_eq!(changes.iter().map(|c| c.profile_id.as_str()).collect::<Vec<_>>(), ["p_a", "p_b", "p_c"], "one write per person");
    let a = &changes[0];
    assert_eq!(a.set.keys().collect::<Vec<_>>(), ["s#abandoned-cart", "s#preferred-channel#app"]);
    assert_eq!(a.remove.iter().collect::<Vec<_>>(), ["s#preferred-channel#email"]);
    assert_eq!(a.attributes["preferred_channel"].as_deref(), Some("app"));
    assert_eq!(changes[1].attributes["preferred_channel"], None, "no preferred channel any more");
    assert_eq!(changes[2].attributes["preferred_channel"].as_deref(), Some("email"));
    let (expression, names, values) = a.update_expression();
    assert!(expression.starts_with("SET #run = :run, profile_id = :pid, #s0 = :s0, #s1 = :s1, #a0 = :a0 REMOVE #r0"), "{expression}");
    assert_eq!(names["#r0"], "s#preferred-channel#email");
    assert_eq!(names["#a0"], "a#preferred_channel");
    assert!(values.contains_key(":s1"));
}
