//! The purge over memory: a landing export read by the real CRM spec, its events and
//! rejects in the lake, links, history, memberships and an audience; one erasure pending.

use std::collections::BTreeMap;

use ariane_ingest::map::FileContext;
use ariane_ingest::sink::Collected;
use ariane_shared::adapters::memory::{MemBlobs, MemLedger, MemMemberships, MemQueue};
use ariane_shared::erasure::{ErasureReport, HashedIdentifier, PurgeState, PurgeTargets, ERASURE_NOT_REACHED};
use ariane_shared::identifiers::{identifier_hash, sha256_hex, IdentifierKind as K};
use ariane_shared::lake::{self, IdentityLink};
use ariane_shared::memberships::{Membership, MembershipChange};
use ariane_shared::model::{CanonicalEvent, SegmentMember};
use ariane_shared::ports::{ActivationLedger, AudienceRow, BlobStore, MembershipStore};
use bytes::Bytes;
use chrono::Utc;

use super::*;

const LAKE: &str = "lake";
const LANDING: &str = "landing";
const EXPORT: &str = "crm/contacts-2026-11.csv";
const IDENTITY: &str = "https://sqs/identity";

/// Marie (C1) is erased; Paul (C2) shares the family e-mail she also erased; Jean (C3)
/// is someone else. Line 4 is Marie's row with a bad date (a reject); lines 5-6 are one
/// record of Marie's (a quoted address over two lines).
const CSV: &str = "ID contact;Type;Consentement;Date;Canal;Email;Mobile;Prénom;Nom;Adresse;Code postal;Ville;Pays;Carte fidélité\n\
C1;Création;;02/11/2026 10:00;;marie@x.fr;06 12 34 56 78;marie;dupont;1 rue A;75001;paris;France;\n\
C2;Création;;03/11/2026 11:00;;famille@x.fr;06 98 76 54 32;paul;martin;2 rue B;75002;paris;France;\n\
C1;Modification;;31/13/2026 10:00;;marie@x.fr;;marie;dupont;;;;France;\n\
C1;Modification;;04/11/2026 09:00;;marie@x.fr;;marie;dupont;\"3 rue C\n(bâtiment B)\";75003;paris;France;\n\
C3;Création;;05/11/2026 12:00;;jean@x.fr;06 11 22 33 44;jean;durand;4 rue D;75004;paris;France;\n";

fn profile_of(e: &CanonicalEvent) -> &'static str {
    let marie = identifier_hash(K::Email, "marie@x.fr");
    if e.email_hash.as_deref() == Some(marie.as_str()) {
        "p_marie"
    } else if e.source_line == 3 {
        "p_paul"
    } else {
        "p_jean"
    }
}

struct World {
    purge: PurgeWith<MemBlobs, MemLedger, MemQueue, MemMemberships>,
    marie_anchors: Vec<String>,
    events: Vec<CanonicalEvent>,
}

async fn world() -> World {
    let blobs = MemBlobs::new();
    let ledger = MemLedger::new();
    let config = PurgeConfig { lake_bucket: LAKE.into(), landing_bucket: LANDING.into(), identity_queue_url: IDENTITY.into() };
    let memberships = MemMemberships::new();
    // Marie's segment memberships item (and her old profile's), and Jean's.
    for pid in ["p_marie", "p_marie_old", "p_jean"] {
        let vip = Membership {
            segment: "vip".into(),
            key: BTreeMap::new(),
            since: "2026-11-05T00:00:00Z".into(),
            run_id: "20261105T000000Z".into(),
            payload: BTreeMap::new(),
        };
        let change = MembershipChange {
            profile_id: pid.into(),
            run_id: "20261105T000000Z".into(),
            set: [(vip.entry_name(), vip)].into(),
            ..MembershipChange::default()
        };
        assert!(memberships.apply(&change).await.unwrap());
    }
    let purge = PurgeWith::new(config, blobs, ledger, MemQueue::new(), memberships).unwrap();
    let spec = purge.catalog.select("crm", EXPORT).unwrap().clone();
    let mut sink = Collected::default();
    let file = FileContext { source_key: EXPORT.into(), fingerprint: "fp".into() };
    ariane_ingest::engine::parse(Box::new(std::io::Cursor::new(CSV.as_bytes().to_vec())), &spec, file, &mut sink).unwrap();
    assert_eq!(sink.events.len(), 4, "{:?}", sink.rejected);
    assert_eq!(sink.rejected.iter().map(|r| r.line).collect::<Vec<_>>(), vec![4]);
    let b = &purge.blobs;
    b.put(LANDING, EXPORT, Bytes::from(CSV), "text/csv").await.unwrap();
    let put_parquet = |key: String, batch: arrow::record_batch::RecordBatch| async move {
        let body = lake::parquet_bytes(batch.schema(), &[batch]).unwrap();
        b.put(LAKE, &key, Bytes::from(body), "application/vnd.apache.parquet").await.unwrap();
    };
    put_parquet(lake::events_key("crm", "2026-11-02", "fp"), lake::events_batch(&sink.events).unwrap()).await;
    put_parquet(lake::rejects_key("crm", "fp"), lake::rejects_batch(&sink.rejected).unwrap()).await;
    let links: Vec<IdentityLink> = sink
        .events
        .iter()
        .map(|e| IdentityLink {
            identifier_hash: e.anchor_id.clone().unwrap(),
            profile_id: profile_of(e).into(),
            resolved_at: Utc::now(),
            observation_id: "o".into(),
        })
        .collect();
    // An old profile of Marie's, merged into hers before the erasure: all its links are hers.
    let mut old = links[0].clone();
    old.profile_id = "p_marie_old".into();
    let mut all_links = links.clone();
    all_links.push(old);
    put_parquet(lake::links_key("2026-11-05", "fp"), lake::links_batch(&all_links).unwrap()).await;
    let famille = identifier_hash(K::Email, "famille@x.fr");
    let history = format!(
        "{{\"action\":\"merged\",\"profile_id\":\"p_marie\",\"other_profiles\":[\"p_marie_old\"]}}\n{{\"action\":\"created\",\"profile_id\":\"p_paul\",\"identifiers\":[{{\"kind\":\"email\",\"hash\":\"{famille}\"}},{{\"kind\":\"customer_id\",\"hash\":\"c2\"}}]}}\n"
    );
    b.put(LAKE, "identity/history/date=2026-11-05/h.jsonl", Bytes::from(history), "application/x-ndjson").await.unwrap();
    let member = |p: &str| SegmentMember { profile_id: p.into(), key: BTreeMap::new(), payload: BTreeMap::new() };
    let members = vec![member("p_marie"), member("p_jean"), member("p_marie_old")];
    put_parquet(lake::segment_members_key("vip", "20261105T000000Z", 0, 1), lake::members_batch(&members).unwrap()).await;
    // A daily measure naming people (`measures/conversions`): Marie's order goes, Jean's stays.
    let conversions = arrow::record_batch::RecordBatch::try_from_iter(vec![
        ("profile_id", std::sync::Arc::new(arrow::array::StringArray::from(vec!["p_marie", "p_jean"])) as arrow::array::ArrayRef),
        ("order_id", std::sync::Arc::new(arrow::array::StringArray::from(vec!["o1", "o2"])) as arrow::array::ArrayRef),
    ])
    .unwrap();
    put_parquet("measures/conversions/date=2026-11-23/part-0.parquet".to_string(), conversions).await;
    let marie_sha = sha256_hex("marie@x.fr");
    let audience = format!("email,phone\n{marie_sha},\n{},\n", sha256_hex("jean@x.fr"));
    b.put(LAKE, &lake::audience_key("welcome", "meta", "20261105T000000Z", "add", "a1"), Bytes::from(audience), "text/csv").await.unwrap();
    let row = AudienceRow {
        campaign: "welcome".into(),
        platform: "meta".into(),
        run_id: "20261105T000000Z".into(),
        op: "add".into(),
        email_sha256: Some(marie_sha),
        phone_sha256: None,
    };
    purge.ledger.put_audience("welcome", "p_marie", &[row], Utc::now()).await.unwrap();
    let marie_anchors: Vec<String> =
        sink.events.iter().filter(|e| profile_of(e) == "p_marie").filter_map(|e| e.anchor_id.clone()).collect();
    let mut targets = PurgeTargets {
        identity_keys: marie_anchors.iter().cloned().collect(),
        profile_ids: ["p_marie".to_string()].into(),
        ..PurgeTargets::default()
    };
    for (k, v) in [(K::Email, "marie@x.fr"), (K::Phone, "+33612345678"), (K::CustomerId, "C1"), (K::Email, "famille@x.fr")] {
        targets.identifier_hashes.insert(identifier_hash(k, v));
    }
    let report = ErasureReport {
        request: HashedIdentifier { kind: K::Email, hash: identifier_hash(K::Email, "marie@x.fr") },
        completed_at: Utc::now(),
        profile_id: Some("p_marie".into()),
        evidence_removed: marie_anchors.len(),
        identifiers_suppressed: Some(4),
        other_profiles_cleared: 0,
        lake_links_rewritten: marie_anchors.len(),
        announced: true,
        purge: PurgeState::Pending { targets },
        not_reached: ERASURE_NOT_REACHED.iter().map(|s| s.to_string()).collect(),
    };
    let key = lake::erasure_report_key("email", &report.request.hash);
    b.put(LAKE, &key, Bytes::from(serde_json::to_vec(&report).unwrap()), "application/json").await.unwrap();
    World { purge, marie_anchors, events: sink.events }
}

async fn text_of(w: &World, bucket: &str, key: &str) -> String {
    String::from_utf8(w.purge.blobs.get(bucket, key).await.unwrap().unwrap().to_vec()).unwrap()
}

async fn strings_of(w: &World, key: &str) -> Vec<String> {
    let batches = lake::read_parquet_bytes(w.purge.blobs.get(LAKE, key).await.unwrap().unwrap()).unwrap();
    let mut out = Vec::new();
    for b in &batches {
        for c in b.columns() {
            if let Some(a) = c.as_any().downcast_ref::<StringArray>() {
                out.extend((0..a.len()).filter(|i| !a.is_null(*i)).map(|i| a.value(i).to_string()));
            }
        }
    }
    out
}

#[tokio::test]
async fn an_erasure_is_purged_from_landing_lake_audiences_and_ledger() {
    let w = world().await;
    let summary = w.purge.run().await.unwrap();
    let run = summary.run.clone().expect("a pending erasure");
    assert_eq!(summary.erasures.len(), 1);

    // Landing: Marie's records (the multi-line one whole, the reject too) are gone; Paul's
    // stays without the family e-mail; Jean's is untouched; the rewrite is marked.
    let landing = text_of(&w, LANDING, EXPORT).await;
    let expected = CSV
        .lines()
        .enumerate()
        .filter(|(n, _)| ![1, 3, 4, 5].contains(n))
        .map(|(_, l)| format!("{}\n", l.replace("famille@x.fr", "")))
        .collect::<String>();
    assert_eq!(landing, expected);
    assert_eq!(w.purge.blobs.head(LANDING, EXPORT).await.unwrap().unwrap().purged_by.as_deref(), Some(run.as_str()));
    assert_eq!(summary.removed["landing"].rows_removed, 3);
    assert_eq!(summary.removed["landing"].values_blanked, 1);

    // The segment memberships items of Marie's profiles are gone (the profile API has
    // nothing to answer); Jean's stays.
    assert!(w.purge.memberships.get("p_marie").is_none() && w.purge.memberships.get("p_marie_old").is_none());
    assert!(w.purge.memberships.get("p_jean").is_some());
    assert_eq!(summary.removed["segment_memberships"].items_deleted, 2);

    // Lake: no anchor, hash or profile id of Marie anywhere; Paul's event loses the value.
    let gone: Vec<String> = w
        .marie_anchors
        .iter()
        .cloned()
        .chain([identifier_hash(K::Email, "marie@x.fr"), identifier_hash(K::Email, "famille@x.fr"), "p_marie".into(), "p_marie_old".into()])
        .collect();
    for key in w.purge.blobs.keys(LAKE).into_iter().filter(|k| k.ends_with(".parquet")) {
        let values = strings_of(&w, &key).await;
        assert!(values.iter().all(|v| !gone.contains(v) && !v.contains("marie@x.fr")), "{key}: {values:?}");
    }
    let events = strings_of(&w, &lake::events_key("crm", "2026-11-02", "fp")).await;
    assert!(events.contains(&identifier_hash(K::Phone, "+33698765432")), "Paul's event stays");
    assert!(w.purge.blobs.get(LAKE, &lake::rejects_key("crm", "fp")).await.unwrap().is_none(), "the only reject was Marie's");
    assert_eq!(summary.removed["events"].rows_removed, w.events.len() - 2);
    assert_eq!(summary.removed["events"].values_blanked, 1);
    assert_eq!((summary.removed["measures"].rows_removed, summary.removed["measures"].objects_rewritten), (1, 1));
    assert_eq!(strings_of(&w, "measures/conversions/date=2026-11-23/part-0.parquet").await, ["p_jean", "o2"]);

    // Paul's evidence forgets the family e-mail in DynamoDB: identity is asked to.
    let paul_anchor = w.events.iter().find(|e| e.source_line == 3).and_then(|e| e.anchor_id.clone()).unwrap();
    let sent = w.purge.queue.sent(IDENTITY);
    assert_eq!(sent.len(), 1, "{sent:?}");
    let forget: serde_json::Value = serde_json::from_str(&sent[0]).unwrap();
    assert_eq!(forget["forget"]["evidence"], serde_json::json!([paul_anchor]));
    assert_eq!(forget["forget"]["hashes"].as_array().unwrap().len(), 4);
    assert_eq!(summary.removed["profiles"].values_blanked, 1);

    let history = text_of(&w, LAKE, "identity/history/date=2026-11-05/h.jsonl").await;
    assert!(!history.contains("p_marie") && !history.contains(&identifier_hash(K::Email, "famille@x.fr")), "{history}");
    assert!(history.contains("p_paul"), "{history}");

    // Audiences: Marie leaves with a remove row; the add file no longer has her.
    let marie_sha = sha256_hex("marie@x.fr");
    let add = text_of(&w, LAKE, &lake::audience_key("welcome", "meta", "20261105T000000Z", "add", "a1")).await;
    assert_eq!(add, format!("email,phone\n{},\n", sha256_hex("jean@x.fr")));
    let removes: Vec<String> =
        w.purge.blobs.keys(LAKE).into_iter().filter(|k| k.contains("/run=erasure-") && k.contains("/remove-")).collect();
    assert_eq!(removes.len(), 1, "{removes:?}");
    assert_eq!(text_of(&w, LAKE, &removes[0]).await, format!("email,phone\n{marie_sha},\n"));
    assert_eq!(w.purge.ledger.audience("welcome", "p_marie").await.unwrap(), None);

    // The report is done and no longer lists the targets.
    let key = lake::erasure_report_key("email", &identifier_hash(K::Email, "marie@x.fr"));
    let report: ErasureReport = serde_json::from_str(&text_of(&w, LAKE, &key).await).unwrap();
    assert!(matches!(&report.purge, PurgeState::Done { run: r, .. } if *r == run), "{report:?}");
    assert!(!text_of(&w, LAKE, &key).await.contains(&w.marie_anchors[0]));

    // Nothing is pending any more: a second run does nothing.
    assert_eq!(w.purge.run().await.unwrap(), PurgeSummary::default());
}

#[tokio::test]
async fn a_run_that_fails_half_way_is_finished_by_the_retry() {
    let w = world().await;
    // The lake's links cannot be rewritten: landing, events and rejects are done first.
    w.purge.blobs.faults.fail_on("blob.put", "identity/links/", 1);
    assert!(w.purge.run().await.is_err());
    assert!(!text_of(&w, LANDING, EXPORT).await.contains("marie@x.fr"), "landing went first");
    let summary = w.purge.run().await.unwrap();
    assert!(summary.run.is_some());
    assert_eq!(summary.removed["landing"].objects_rewritten, 0, "nothing left there");
    assert_eq!(summary.removed["links"].objects_rewritten, 1);
    // The retried run still strips the audience although the membership was deleted.
    let add = text_of(&w, LAKE, &lake::audience_key("welcome", "meta", "20261105T000000Z", "add", "a1")).await;
    assert!(!add.contains(&sha256_hex("marie@x.fr")), "{add}");
}

#[tokio::test]
async fn an_unreadable_report_fails_the_run_after_the_others_are_purged() {
    let w = world().await;
    let bad = "reports/erasures/email-0000.json";
    w.purge.blobs.put(LAKE, bad, Bytes::from_static(b"{not json"), "application/json").await.unwrap();
    let err = w.purge.run().await.unwrap_err();
    assert!(err.to_string().contains(bad), "{err}");
    assert!(!text_of(&w, LANDING, EXPORT).await.contains("marie@x.fr"), "Marie's erasure went through");
    let key = lake::erasure_report_key("email", &identifier_hash(K::Email, "marie@x.fr"));
    let report: ErasureReport = serde_json::from_str(&text_of(&w, LAKE, &key).await).unwrap();
    assert!(matches!(report.purge, PurgeState::Done { .. }), "{report:?}");
    // Until the report is repaired or removed, every run says so.
    assert!(w.purge.run().await.is_err());
}

/// `batches` of `schema` with the text columns `extra` (name, value) appended.
fn with_columns(
    batches: &[arrow::record_batch::RecordBatch],
    schema: arrow::datatypes::SchemaRef,
    extra: &[&str],
) -> arrow::record_batch::RecordBatch {
    let batch = arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap();
    let mut columns = batch.columns().to_vec();
    for value in extra {
        columns.push(std::sync::Arc::new(StringArray::from(vec![*value; batch.num_rows()])));
    }
    arrow::record_batch::RecordBatch::try_new(schema, columns).unwrap()
}

#[tokio::test]
async fn a_compacted_lake_is_purged_too() {
    let w = world().await;
    let b = &w.purge.blobs;
    // The segments' compaction moved the events and the links under events_by_profile/.
    let read = |key: String| async move { lake::read_parquet_bytes(b.get(LAKE, &key).await.unwrap().unwrap()).unwrap() };
    let events_key = lake::events_key("crm", "2026-11-02", "fp");
    let links_key = lake::links_key("2026-11-05", "fp");
    let events = with_columns(&read(events_key.clone()).await, lake::compacted_events_schema(), &["crm", "2026-11-02"]);
    let links = with_columns(&read(links_key.clone()).await, lake::compacted_links_schema(), &["2026-11-05"]);
    b.delete(LAKE, &events_key).await.unwrap();
    b.delete(LAKE, &links_key).await.unwrap();
    let compacted_events = lake::compacted_events_key("g1", "0", 0);
    let history = lake::compacted_history_key("g1", 0);
    for (key, batch) in [(&compacted_events, &events), (&history, &links), (&lake::compacted_links_key("g1", "1", 0), &links)] {
        let body = lake::parquet_bytes(batch.schema(), std::slice::from_ref(batch)).unwrap();
        b.put(LAKE, key, Bytes::from(body), "application/vnd.apache.parquet").await.unwrap();
    }
    b.put(LAKE, lake::compaction_manifest_key(), Bytes::from_static(b"{}"), "application/json").await.unwrap();

    let summary = w.purge.run().await.unwrap();
    // The landing export was found through the compacted events' source keys.
    let landing = text_of(&w, LANDING, EXPORT).await;
    assert!(!landing.contains("marie@x.fr") && landing.contains("paul"), "{landing}");
    assert_eq!(summary.removed["landing"].rows_removed, 3);
    // Paul's evidence was found through the compacted events' anchors.
    let paul_anchor = w.events.iter().find(|e| e.source_line == 3).and_then(|e| e.anchor_id.clone()).unwrap();
    let sent = w.purge.queue.sent(IDENTITY);
    assert_eq!(sent.len(), 1, "identity is asked to forget the shared value in Paul's evidence: {sent:?}");
    let forget: serde_json::Value = serde_json::from_str(&sent[0]).unwrap();
    assert_eq!(forget["forget"]["evidence"], serde_json::json!([paul_anchor]));
    // No value of Marie's is left in any compacted file (her old profile was found
    // through the compacted link history).
    let gone: Vec<String> =
        w.marie_anchors.iter().cloned().chain([identifier_hash(K::Email, "marie@x.fr"), "p_marie".into(), "p_marie_old".into()]).collect();
    for key in b.keys(LAKE).into_iter().filter(|k| k.ends_with(".parquet")) {
        let values = strings_of(&w, &key).await;
        assert!(values.iter().all(|v| !gone.contains(v)), "{key}: {values:?}");
    }
    let kept = strings_of(&w, &compacted_events).await;
    assert!(kept.contains(&identifier_hash(K::Phone, "+33698765432")) && kept.contains(&"crm".to_string()), "{kept:?}");
    assert_eq!(summary.removed["events_by_profile"].rows_removed, (w.events.len() - 2) + 2 * marie_links(&w));
    assert_eq!(summary.removed["events_by_profile"].objects_rewritten, 3);
    assert!(b.get(LAKE, lake::compaction_manifest_key()).await.unwrap().is_some(), "the manifest is not a lake table");
}

/// Marie's links in the world's link file (her anchors' and her old profile's).
fn marie_links(w: &World) -> usize {
    w.marie_anchors.len() + 1
}
