//! The journey over the in-memory identity store and an in-memory lake (the segments
//! catalog reads it as it reads S3): rows of several channels are both resolved by the
//! identity resolver and written to the lake, as ingest and identity do.

use super::*;
use ariane_identity::rules::Rules;
use ariane_identity::store::MemStore;
use ariane_segments::catalog::RunEnv;
use ariane_segments::read_cache::ReadCache;
use ariane_shared::adapters::memory::MemBlobs;
use ariane_shared::identifiers::identity_key;
use ariane_shared::lake;
use ariane_shared::lake::IdentityLink;
use ariane_shared::model::{CanonicalEvent, Observation, Traits};
use ariane_shared::ports::BlobStore;
use object_store::memory::InMemory;

const BUCKET: &str = "lake";

pub(crate) const EMAIL: &str = "marie.dupont@x.fr";
pub(crate) const PHONE: &str = "+33612345678";
pub(crate) const CUSTOMER: &str = "CUST-777";
pub(crate) const CARD: &str = "CARD-4242";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A source row: what one channel saw together, and the event it became.
pub(crate) struct Row {
    channel: &'static str,
    at: &'static str,
    ids: Vec<(IdentifierKind, &'static str)>,
    event: CanonicalEvent,
}

fn row(n: usize, channel: &'static str, when: &'static str, ids: &[(IdentifierKind, &'static str)], event_type: &str) -> Row {
    let identifiers: Vec<Identifier> = ids.iter().map(|(k, v)| Identifier::new(*k, *v)).collect();
    let event = CanonicalEvent {
        event_id: format!("e{n:02}"),
        channel: channel.into(),
        event_type: event_type.into(),
        occurred_at: at(when),
        anchor_id: identity_key(&identifiers),
        email_hash: None,
        phone_hash: None,
        order_id: None,
        sku: None,
        product_name: None,
        category: None,
        quantity: None,
        unit_price_minor: None,
        line_total_minor: None,
        order_total_minor: None,
        currency: None,
        store_id: None,
        campaign_id: None,
        page_url: None,
        consent_channel: None,
        source_key: format!("{channel}/export.csv"),
        source_line: n as u64,
        local_time: None,
    };
    Row { channel, at: when, ids: ids.to_vec(), event }
}

pub(crate) fn rows() -> Vec<Row> {
    use IdentifierKind::*;
    let mut click = row(1, "email", "2026-03-01T09:00:00Z", &[(Email, EMAIL)], "email_click");
    click.event.campaign_id = Some("spring-26".into());
    let mut page = row(2, "web", "2026-03-01T09:05:00Z", &[(CookieId, "ck-1"), (Email, EMAIL)], "page_view");
    page.event.page_url = Some(format!("https://shop.fr/p/robe?email={EMAIL}"));
    let line = |n, sku: &str, minor| {
        let mut r = row(n, "ecommerce", "2026-03-02T12:00:00Z", &[(CustomerId, CUSTOMER), (Email, EMAIL)], "order_line");
        r.event.order_id = Some("o-1".into());
        r.event.sku = Some(sku.into());
        r.event.quantity = Some(1);
        r.event.line_total_minor = Some(minor);
        r.event.order_total_minor = Some(3500);
        r.event.currency = Some("EUR".into());
        r
    };
    let mut sale = row(5, "pos", "2026-03-03T16:30:00Z", &[(LoyaltyCard, CARD), (Phone, PHONE)], "store_purchase");
    sale.event.order_id = Some("r-9".into());
    sale.event.sku = Some("S3".into());
    sale.event.quantity = Some(2);
    sale.event.line_total_minor = Some(4005);
    sale.event.currency = Some("EUR".into());
    sale.event.store_id = Some("st-12".into());
    let mut consent = row(6, "crm", "2026-03-04T08:00:00Z", &[(CustomerId, CUSTOMER), (LoyaltyCard, CARD)], "consent_given");
    consent.event.consent_channel = Some("sms".into());
    let other = row(7, "web", "2026-03-01T09:30:00Z", &[(CookieId, "ck-someone-else")], "page_view");
    vec![click, page, line(3, "S1", 2500), line(4, "S2", 1000), sale, consent, other]
}

/// The identity store and lake after ingesting `rows`: their events, and the identity
/// links of their resolution, in the lake.
pub(crate) async fn world(rows: &[Row]) -> (Resolver<MemStore>, Lake) {
    let (resolver, _, lake) = world_in_blobs(rows).await;
    (resolver, lake)
}

async fn put_parquet(blobs: &MemBlobs, key: &str, schema: datafusion::arrow::datatypes::SchemaRef, batch: RecordBatch) {
    let bytes = lake::parquet_bytes(schema, &[batch]).unwrap();
    blobs.put(BUCKET, key, bytes::Bytes::from(bytes), "application/vnd.apache.parquet").await.unwrap();
}

async fn world_in_blobs(rows: &[Row]) -> (Resolver<MemStore>, Arc<MemBlobs>, Lake) {
    let resolver = Resolver::new(MemStore::default(), Rules::embedded().unwrap());
    let observations: Vec<Observation> = rows
        .iter()
        .map(|r| Observation {
            observation_id: format!("obs-{}", r.event.event_id),
            channel: r.channel.into(),
            source_key: r.event.source_key.clone(),
            source_line: r.event.source_line,
            observed_at: at(r.at),
            identifiers: r.ids.iter().map(|(k, v)| Identifier::new(*k, *v)).collect(),
            traits: Traits::default(),
            consents: vec![],
            activity: vec![],
        })
        .collect();
    let outcome = resolver.resolve_batch(&observations).await.unwrap();
    let blobs = Arc::new(MemBlobs::new());
    for r in rows {
        let key = lake::events_key(r.channel, &r.event.event_date(), &r.event.event_id);
        put_parquet(&blobs, &key, lake::events_schema(), lake::events_batch(std::slice::from_ref(&r.event)).unwrap()).await;
    }
    let links: Vec<IdentityLink> = outcome
        .links
        .iter()
        .map(|l| IdentityLink {
            identifier_hash: l.identity_key.clone(),
            profile_id: l.profile_id.clone().unwrap_or_default(),
            resolved_at: l.at,
            observation_id: l.observation_id.clone(),
        })
        .collect();
    assert!(!links.is_empty());
    put_parquet(&blobs, &lake::links_key("2026-03-04", "links-1"), lake::links_schema(), lake::links_batch(&links).unwrap()).await;
    let store = blobs.object_store(BUCKET).unwrap();
    (resolver, blobs, Lake { bucket: BUCKET.into(), store })
}

#[tokio::test]
async fn a_journey_across_channels_with_its_identity_decisions() {
    let (resolver, lake) = world(&rows()).await;
    // Any identifier of the person, written as anywhere, tells the same journey.
    let by_email = journey(&resolver, &lake, &Identifier::new(IdentifierKind::Email, " Marie.Dupont@X.fr ")).await.unwrap();
    let by_phone = journey(&resolver, &lake, &Identifier::new(IdentifierKind::Phone, "06 12 34 56 78")).await.unwrap();
    assert_eq!(by_email.profile_id, by_phone.profile_id);
    assert_eq!((by_email.timeline.clone(), by_email.decisions.clone()), (by_phone.timeline.clone(), by_phone.decisions.clone()));
    assert_eq!(by_phone.identifier.kind, "phone");
    let j = by_email;

    // The timeline: every channel, in time order, without the other person's page view.
    let seen: Vec<(&str, &str, EventKind)> =
        j.timeline.iter().map(|t| (t.event.event_id.as_str(), t.event.channel.as_str(), t.kind)).collect();
    assert_eq!(
        seen,
        vec![
            ("e01", "email", EventKind::Touchpoint),
            ("e02", "web", EventKind::Touchpoint),
            ("e03", "ecommerce", EventKind::Purchase),
            ("e04", "ecommerce", EventKind::Purchase),
            ("e05", "pos", EventKind::Purchase),
            ("e06", "crm", EventKind::Other),
        ]
    );
    assert_eq!(j.channels, vec!["crm", "ecommerce", "email", "pos", "web"]);
    assert_eq!((j.touchpoints, j.purchases, j.orders), (2, 3, 2));
    assert_eq!(j.first_seen, Some(at("2026-03-01T09:00:00Z")));
    assert_eq!(j.last_seen_day.unwrap().to_string(), "2026-03-04");
    let sale = &j.timeline[4].event;
    assert_eq!((sale.amount_minor, sale.store_id.as_deref(), sale.quantity), (Some(4005), Some("st-12"), Some(2)));
    assert_eq!(j.timeline[2].event.amount_minor, Some(2500), "an order line shows its line's amount");
    assert_eq!(j.timeline[1].event.page.as_deref(), Some("https://shop.fr/p/robe"), "no query string");

    // The decisions: two people by their ids until the CRM tied customer id and card.
    let outcomes: Vec<(Vec<String>, Outcome, Vec<String>)> =
        j.decisions.iter().map(|d| (d.channels.clone(), d.outcome, d.via.iter().map(|v| v.kind.clone()).collect())).collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        outcomes,
        vec![
            (s(&["email"]), Outcome::Created, vec![]),
            (s(&["web"]), Outcome::Joined, s(&["email"])),
            (s(&["ecommerce"]), Outcome::Joined, s(&["email"])),
            (s(&["pos"]), Outcome::Created, vec![]),
            (s(&["crm"]), Outcome::Merged, s(&["customer_id", "loyalty_card"])),
        ]
    );
    assert_eq!(j.decisions[4].profiles_merged, 2);
    assert_eq!(
        j.identifier_kinds,
        BTreeMap::from([
            ("cookie_id".into(), 1),
            ("customer_id".into(), 1),
            ("email".into(), 1),
            ("loyalty_card".into(), 1),
            ("phone".into(), 1)
        ])
    );

    // No clear identifier anywhere (the profile in DynamoDB holds them).
    let text = j.to_string();
    let json = serde_json::to_string(&j).unwrap();
    for clear in [EMAIL, "marie", PHONE, "612345678", CUSTOMER, CARD, "ck-1"] {
        assert!(!text.to_lowercase().contains(&clear.to_lowercase()), "{clear} in\n{text}");
        assert!(!json.to_lowercase().contains(&clear.to_lowercase()), "{clear} in {json}");
    }
    assert!(text.contains("merged 2 profiles via customer_id#"), "{text}");
    assert!(text.contains("  6 events: 2 touchpoints, 3 purchase events (2 orders), 1 other"), "{text}");
    assert_eq!(json.matches("\"kind\":\"purchase\"").count(), 3, "{json}");
    assert!(!j.truncated);

    // A limit keeps the latest events, still in time order.
    let keys: Vec<String> = resolver.profile_evidence(&j.profile_id).await.unwrap().unwrap().evidence.into_iter().map(|(k, _)| k).collect();
    let latest: Vec<String> = timeline(&lake, &keys, 2).await.unwrap().into_iter().map(|e| e.event_id).collect();
    assert_eq!(latest, vec!["e05", "e06"]);
}

#[test]
fn the_production_request() {
    let request: JourneyRequest = serde_json::from_str(r#"{"kind":"email","value":"Marie@X.fr"}"#).unwrap();
    assert_eq!(request.identifier(), Identifier::new(IdentifierKind::Email, "Marie@X.fr"));
    assert!(serde_json::from_str::<JourneyRequest>(r#"{"kind":"mail","value":"x"}"#).is_err());
    assert!(serde_json::from_str::<JourneyRequest>(r#"{"kind":"email","value":"x","profile":"p_1"}"#).is_err(), "unknown field");
    assert!(serde_json::from_str::<JourneyRequest>(r#"{"journey":{"kind":"email","value":"x"}}"#).is_err(), "the old shape");
}

#[tokio::test]
async fn the_same_journey_over_a_compacted_lake_and_its_tail() {
    let mut all = rows();
    let late = all.pop().map(|_| {
        let mut r = row(8, "sms", "2026-03-06T10:00:00Z", &[(IdentifierKind::Phone, PHONE)], "sms_click");
        r.event.campaign_id = Some("relance".into());
        r
    });
    all.extend(late);
    let (resolver, blobs, lake) = world_in_blobs(&all).await;
    let id = Identifier::new(IdentifierKind::Email, EMAIL);
    let before = journey(&resolver, &lake, &id).await.unwrap();
    assert_eq!(before.timeline.len(), 7);
    let run = RunEnv {
        runtime: ariane_segments::catalog::runtime(256, &std::env::temp_dir()).unwrap(),
        lake: Arc::new(ReadCache::new(lake.store.clone(), 64 << 20)),
    };
    let report = ariane_segments::compact::compact(blobs.as_ref(), &run, BUCKET, 3, at("2026-03-07T00:00:00Z")).await.unwrap();
    assert!(report.current.is_some(), "{report:?}");
    let keys = blobs.keys(BUCKET);
    assert!(!keys.iter().any(|k| k.starts_with(lake::events_prefix())), "the source files are gone: {keys:?}");
    assert!(keys.iter().any(|k| k.starts_with(lake::compacted_prefix())), "{keys:?}");
    let after = journey(&resolver, &lake, &id).await.unwrap();
    assert_eq!(after, before, "the compacted lake tells the same journey");
    // A tail file written after the compaction is read with it.
    let mut tail = row(9, "email", "2026-03-08T07:00:00Z", &[(IdentifierKind::Email, EMAIL)], "email_open").event;
    tail.campaign_id = Some("relance".into());
    put_parquet(
        &blobs,
        &lake::events_key("email", &tail.event_date(), "tail-1"),
        lake::events_schema(),
        lake::events_batch(&[tail]).unwrap(),
    )
    .await;
    let with_tail = journey(&resolver, &lake, &id).await.unwrap();
    let ids: Vec<&str> = with_tail.timeline.iter().map(|t| t.event.event_id.as_str()).collect();
    assert_eq!(ids, vec!["e01", "e02", "e03", "e04", "e05", "e06", "e08", "e09"]);
}

#[tokio::test]
async fn an_identifier_without_a_profile_says_why() {
    let (resolver, lake) = world(&rows()).await;
    let err = journey(&resolver, &lake, &Identifier::new(IdentifierKind::Email, "nobody@x.fr")).await.unwrap_err();
    assert!(matches!(err, JourneyError::NoProfile { why: Unlinked::NeverObserved, .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("no profile for email#") && text.ends_with("never observed (check the value's spelling)"), "{text}");
    assert!(!text.contains("nobody"), "{text}");
    let err = journey(&resolver, &lake, &Identifier::new(IdentifierKind::Phone, "12")).await.unwrap_err();
    assert!(matches!(err, JourneyError::InvalidIdentifier { kind: IdentifierKind::Phone, .. }), "{err:?}");
    assert!(err.to_string().contains("not a valid phone number"), "{err}");
    resolver.exclude(&Identifier::new(IdentifierKind::Phone, PHONE)).await.unwrap();
    let err = journey(&resolver, &lake, &Identifier::new(IdentifierKind::Phone, PHONE)).await.unwrap_err();
    assert!(err.to_string().ends_with("excluded by a repair"), "{err}");
}

#[tokio::test]
async fn a_profile_with_no_event_in_the_lake_has_an_empty_timeline() {
    let (resolver, _) = world(&rows()).await;
    let empty = Lake { bucket: BUCKET.into(), store: Arc::new(InMemory::new()) };
    let j = journey(&resolver, &empty, &Identifier::new(IdentifierKind::Email, EMAIL)).await.unwrap();
    assert!(j.timeline.is_empty());
    assert_eq!(j.decisions.len(), 5);
    assert!(j.to_string().contains("Timeline (0 events):\n  (no event in the lake)"), "{j}");
}

#[test]
fn the_text_rendering() {
    let id = |kind: &str, hash: &str| IdLabel { kind: kind.into(), hash_prefix: hash.into() };
    let event = |at_: &str, channel: &str, event_type: &str| JourneyEvent {
        at: at(at_),
        channel: channel.into(),
        event_type: event_type.into(),
        event_id: format!("{channel}-{event_type}"),
        ..JourneyEvent::default()
    };
    let mut sale = event("2026-03-02T12:00:00Z", "pos", "return");
    sale.amount_minor = Some(-1205);
    sale.currency = Some("EUR".into());
    sale.order_id = Some("r-1".into());
    let mut click = event("2026-03-01T09:00:00Z", "email", "email_click");
    click.campaign_id = Some("spring".into());
    let j = Journey {
        identifier: id("email", "1a2b3c4d"),
        profile_id: "p_1".into(),
        merged_from: vec!["p_0".into()],
        channels: vec!["email".into(), "pos".into()],
        identifier_kinds: BTreeMap::from([("email".into(), 1), ("phone".into(), 2)]),
        first_seen: Some(at("2026-03-01T09:00:00Z")),
        last_seen_day: NaiveDate::from_ymd_opt(2026, 3, 2),
        truncated: false,
        touchpoints: 1,
        purchases: 0,
        orders: 0,
        decisions: vec![
            Decision {
                at: at("2026-03-01T09:00:00Z"),
                channels: vec!["email".into()],
                identifiers: vec![id("email", "1a2b3c4d")],
                outcome: Outcome::Created,
                via: vec![],
                profiles_merged: 0,
                not_linking: vec![],
                last_seen_day: None,
                source: "email/x.csv:1".into(),
            },
            Decision {
                at: at("2026-03-02T12:00:00Z"),
                channels: vec!["pos".into(), "crm".into()],
                identifiers: vec![id("email", "1a2b3c4d"), id("phone", "99aa00bb"), id("phone", "55555555")],
                outcome: Outcome::Joined,
                via: vec![id("email", "1a2b3c4d")],
                profiles_merged: 0,
                not_linking: vec![id("phone", "55555555")],
                last_seen_day: None,
                source: "pos/x.csv:4".into(),
            },
        ],
        timeline: [click, sale].into_iter().map(|event| TimelineEntry { kind: event.kind(), event }).collect(),
    };
    let text = j.to_string();
    let expected = "\
Journey of email#1a2b3c4d → profile p_1
  merged from: p_0
  channels: email, pos
  identifiers: 1 email, 2 phone
  first seen 2026-03-01 09:00:00 UTC, last seen 2026-03-02
  2 events: 1 touchpoints, 0 purchase events (0 orders), 1 other

Identity decisions (2):
  at 2026-03-01 09:00:00 UTC, email saw {email#1a2b3c4d} → created a profile
  at 2026-03-02 12:00:00 UTC, pos+crm saw {email#1a2b3c4d, phone#99aa00bb, phone#55555555} together → joined the profile via email#1a2b3c4d (phone#55555555 link nothing)

Timeline (2 events):
  2026-03-01 09:00:00  email      email_click        touchpoint campaign=spring
  2026-03-02 12:00:00  pos        return             return     order=r-1 amount=-12.05 EUR
";
    assert_eq!(text, expected);
    let json = serde_json::to_value(&j).unwrap();
    assert_eq!(json["timeline"][1]["kind"], "return");
    assert_eq!(json["timeline"][1]["amount_minor"], -1205);
    assert_eq!(json["decisions"][1]["outcome"], "joined");
    assert_eq!(json["identifier"], serde_json::json!({"kind": "email", "hash_prefix": "1a2b3c4d"}));
    assert!(json["timeline"][0].get("order_id").is_none(), "absent fields are left out");
}

#[test]
fn event_kinds() {
    for t in ["order_line", "store_purchase", "in_app_purchase"] {
        assert_eq!(EventKind::of(t), EventKind::Purchase, "{t}");
    }
    for t in ["email_click", "email_open", "sms_sent", "page_view", "cart_add", "store_visit", "push_open", "scroll"] {
        assert_eq!(EventKind::of(t), EventKind::Touchpoint, "{t}");
    }
    assert_eq!(EventKind::of("return"), EventKind::Return);
    assert_eq!(EventKind::of("consent_withdrawn"), EventKind::Other);
    assert_eq!(without_query("https://a.fr/p?x=1#y"), "https://a.fr/p");
    assert_eq!((amount(0), amount(5), amount(123456), amount(-5)), ("0.00".into(), "0.05".into(), "1234.56".into(), "-0.05".into()));
}
