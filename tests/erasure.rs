//! Issue 14's acceptance test: after an erasure and the purge, a sweep of every S3 object
//! (every version, both buckets), every DynamoDB item (both tables) and every SQS message
//! of the local stack finds neither the person's clear identifiers nor their lake hashes,
//! suppression entries aside. The person has 150 identifier sets (web cookies) and shares
//! a family e-mail with another customer, whose erasure is requested too.

use std::collections::BTreeMap;
use std::io::Read;

use ariane_identity::handler::IdentityMessage;
use ariane_shared::erasure::{ErasureReport, PurgeState};
use ariane_shared::identifiers::{identifier_hash, identity_key, sha256_hex, Identifier, IdentifierKind as K};
use ariane_shared::lake;
use ariane_tests::Harness;
use arrow::array::{Array, StringArray};
use chrono::{DateTime, Duration, TimeZone, Utc};

const MARIE_EMAIL: &str = "marie.curie@orange.fr";
const MARIE_PHONE: &str = "+33611223344";
const MARIE_CUSTOMER: &str = "3000000000001";
const FAMILY_EMAIL: &str = "famille.curie@orange.fr";
const COOKIES: usize = 150;

fn run_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap()
}

fn cookie(i: usize) -> String {
    format!("ck-marie-{i:03}")
}

const ORDERS_HEADER: &str = "Name,Email,Phone,Customer ID,Created at,Currency,Subtotal,Shipping,Total,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Lineitem category,Billing Name,Billing Zip,Billing City,Accepts Marketing";

/// Marie's orders (one with the family e-mail), Pierre's (the family e-mail, his own
/// customer id: the e-mail becomes a shared value) and Paul's.
fn orders() -> Vec<u8> {
    let rows = [
        "#4000001, Marie.Curie@Orange.fr ,06 11 22 33 44,3000000000001,2026-11-01 10:00:00 +0100,EUR,30.00,0.00,30.00,1,Pull,30.00,SKU-VET-1,vetements,Marie Curie,75005,Paris,yes",
        "#4000002,famille.curie@orange.fr,,3000000000001,2026-11-05 10:00:00 +0100,EUR,20.00,0.00,20.00,1,Bonnet,20.00,SKU-ACC-2,accessoires,Marie Curie,75005,Paris,yes",
        "#4000003,famille.curie@orange.fr,06 99 88 77 66,3000000000009,2026-11-06 10:00:00 +0100,EUR,40.00,0.00,40.00,1,Baskets,40.00,SKU-CHA-3,chaussures,Pierre Curie,75005,Paris,yes",
        "#4000004,paul.martin@gmail.com,06 55 66 77 88,3000000000002,2026-11-07 10:00:00 +0100,EUR,15.00,0.00,15.00,1,Bougie,15.00,SKU-MAI-4,maison,Paul Martin,69003,Lyon,yes",
    ];
    format!("{ORDERS_HEADER}\n{}\n", rows.join("\n")).into_bytes()
}

/// 150 logins of Marie's from 150 browsers (one identifier set each), then a cart.
fn web_events() -> Vec<u8> {
    let start = run_at() - Duration::days(7);
    let mut out = String::new();
    for i in 0..COOKIES {
        let at = start + Duration::minutes(i as i64 * 30);
        out.push_str(&format!(
            "{{\"event_timestamp\": {}, \"event_name\": \"login\", \"user_pseudo_id\": \"{}\", \"user_id\": \"{MARIE_CUSTOMER}\", \"event_params\": [{{\"key\": \"page_location\", \"value\": {{\"string_value\": \"https://shop.example/account?email={MARIE_EMAIL}&utm_source=newsletter\"}}}}]}}\n",
            at.timestamp_micros(),
            cookie(i)
        ));
    }
    let cart = run_at() - Duration::hours(1);
    out.push_str(&format!(
        "{{\"event_timestamp\": {}, \"event_name\": \"add_to_cart\", \"user_pseudo_id\": \"{}\", \"user_id\": \"{MARIE_CUSTOMER}\", \"event_params\": [], \"items\": [{{\"item_id\": \"SKU-VET-9\", \"item_name\": \"Manteau\", \"item_category\": \"vetements\", \"price\": 120, \"quantity\": 1}}]}}\n",
        cart.timestamp_micros(),
        cookie(0)
    ));
    out.into_bytes()
}

/// Marie's consent to ads (so she enters the ad audiences), a row of hers the CRM spec
/// rejects (a 13th month: the raw row, with her e-mail, lands in `rejects/`), Paul's.
fn crm_contacts() -> Vec<u8> {
    "ID contact;Type;Consentement;Date;Canal;Email;Mobile;Prénom;Nom;Adresse;Code postal;Ville;Pays;Carte fidélité\n\
     3000000000001;Consentement;Oui;20/11/2026 10:00;Publicité;marie.curie@orange.fr;06 11 22 33 44;marie;curie;5 rue X;75005;paris;France;\n\
     3000000000001;Modification;;31/13/2026 10:00;;marie.curie@orange.fr;;marie;curie;;;;France;\n\
     3000000000002;Consentement;Oui;20/11/2026 10:00;Publicité;paul.martin@gmail.com;;paul;martin;;;;France;\n"
        .as_bytes()
        .to_vec()
}

/// What the sweep looks for, by category (each finding names its category).
struct Needles {
    /// Clear values, lower case (found case-insensitively, as typed in exports too).
    clear: Vec<String>,
    /// Keyed hashes (lake and DynamoDB keys) and identity keys.
    keyed: Vec<String>,
    /// The plain SHA-256 the ad platforms were sent.
    plain: Vec<String>,
    /// The family e-mail's keyed hash (a value another person keeps in their evidence's
    /// identifier set: allowed there, as a hash, and in suppression entries).
    family: String,
    profile_ids: Vec<String>,
}

impl Needles {
    fn find(&self, text: &str) -> Vec<String> {
        let lower = text.to_lowercase();
        let mut out: Vec<String> = self.clear.iter().filter(|n| lower.contains(n.as_str())).map(|n| format!("clear {n}")).collect();
        out.extend(self.keyed.iter().filter(|n| text.contains(n.as_str())).map(|n| format!("keyed {n}")));
        out.extend(self.plain.iter().filter(|n| text.contains(n.as_str())).map(|n| format!("plain {n}")));
        out.extend(self.profile_ids.iter().filter(|n| text.contains(n.as_str())).map(|n| format!("profile {n}")));
        if text.contains(&self.family) {
            out.push(format!("family {}", self.family));
        }
        out
    }
}

/// The texts of an object as a reader sees them: every string of a Parquet file, the
/// decompressed text of a gzip, else the bytes as text.
fn texts(key: &str, body: &[u8]) -> Vec<String> {
    if key.ends_with(".parquet") {
        let batches = lake::read_parquet_bytes(bytes::Bytes::copy_from_slice(body)).expect("lake Parquet");
        let mut out = Vec::new();
        for b in &batches {
            for c in b.columns() {
                if let Some(a) = c.as_any().downcast_ref::<StringArray>() {
                    out.extend((0..a.len()).filter(|i| !a.is_null(*i)).map(|i| a.value(i).to_string()));
                }
            }
        }
        return out;
    }
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(body).read_to_string(&mut text).expect("gzip");
        return vec![text];
    }
    vec![String::from_utf8_lossy(body).into_owned()]
}

/// Every finding in every version of every object of a bucket: (key, what).
async fn sweep_bucket(h: &Harness, bucket: &str, needles: &Needles) -> anyhow::Result<Vec<(String, String)>> {
    let s3 = &h.stack.clients.s3;
    let mut found = Vec::new();
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker.take())
            .set_version_id_marker(version_marker.take())
            .send()
            .await?;
        for v in page.versions() {
            let (Some(key), Some(version)) = (v.key(), v.version_id()) else { continue };
            let body = s3.get_object().bucket(bucket).key(key).version_id(version).send().await?.body.collect().await?.into_bytes();
            for text in texts(key, &body) {
                for what in needles.find(&text) {
                    found.push((format!("s3://{bucket}/{key}@{version}"), what));
                }
            }
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
    Ok(found)
}

/// Every finding in every item of a table: (pk, what).
async fn sweep_table(h: &Harness, table: &str, needles: &Needles) -> anyhow::Result<Vec<(String, String)>> {
    let ddb = &h.stack.clients.dynamodb;
    let mut found = Vec::new();
    let mut start = None;
    loop {
        let out = ddb.scan().table_name(table).set_exclusive_start_key(start).send().await?;
        for item in out.items() {
            let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let sorted: BTreeMap<&String, &aws_sdk_dynamodb::types::AttributeValue> = item.iter().collect();
            for what in needles.find(&format!("{sorted:?}")) {
                found.push((format!("{table}/{pk}"), what));
            }
        }
        start = out.last_evaluated_key().cloned();
        if start.is_none() {
            return Ok(found);
        }
    }
}

/// Every finding in every message waiting on any queue of the stack (DLQs included);
/// messages stay on their queue (received with a zero visibility timeout).
async fn sweep_queues(h: &Harness, needles: &Needles) -> anyhow::Result<Vec<(String, String)>> {
    let sqs = &h.stack.clients.sqs;
    let mut urls: Vec<String> = h.stack.manifest.queues.values().flat_map(|q| [Some(q.url.clone()), q.dlq_url.clone()]).flatten().collect();
    urls.sort();
    urls.dedup();
    let mut found = Vec::new();
    for url in urls {
        for _ in 0..3 {
            let got = sqs.receive_message().queue_url(&url).max_number_of_messages(10).visibility_timeout(0).send().await?;
            for m in got.messages() {
                for what in needles.find(m.body().unwrap_or_default()) {
                    found.push((url.clone(), what));
                }
            }
        }
    }
    Ok(found)
}

fn send(m: &IdentityMessage) -> String {
    serde_json::to_string(m).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_erasure_and_the_purge_no_store_holds_the_person() -> anyhow::Result<()> {
    let mut h = Harness::start("erasure").await?;
    h.runner.set_activate_clock(&ariane_activate::handler::Clock::manual(run_at()));
    h.stack.upload("ecommerce/orders 2026-11.csv", orders()).await?;
    h.stack.upload("web/events-2026-11-23.ndjson", web_events()).await?;
    h.stack.upload("crm/contacts-2026-11.csv", crm_contacts()).await?;
    let drained = h.runner.drain().await?;
    assert_eq!(drained.failures, 0, "{drained:?}");
    let summary = h.runner.fire_schedule(None, run_at()).await?;
    assert_eq!(ariane_tests::segment_report(&summary, "abandoned-cart")["entered"], 1, "{summary}");
    let drained = h.runner.drain().await?;
    assert_eq!(drained.failures, 0, "{drained:?}");

    let ids = ariane_identity::resolver::Resolver::new(
        ariane_identity::store::DynamoStore {
            client: h.stack.clients.dynamodb.clone(),
            table: h.stack.manifest.output("ProfilesTableName")?.to_string(),
        },
        ariane_identity::rules::Rules::embedded()?,
    );
    let marie = ids.lookup(&Identifier::new(K::Email, MARIE_EMAIL)).await?.expect("Marie has a profile");
    assert_eq!(ids.lookup(&Identifier::new(K::CookieId, cookie(0))).await?.as_ref(), Some(&marie), "one person");
    let pierre = ids.lookup(&Identifier::new(K::CustomerId, "3000000000009")).await?.expect("Pierre has a profile");
    let paul = ids.lookup(&Identifier::new(K::CustomerId, "3000000000002")).await?.expect("Paul has a profile");
    let family_held = |p: &ariane_shared::profile::ProfileItem| p.doc.identifiers.get("email").is_some_and(|e| e.contains(FAMILY_EMAIL));
    assert!(family_held(&ids.profile(&pierre).await?.unwrap()), "the family e-mail is Pierre's contact point");

    // Marie's identity keys, as the lake's links name them: the link files written since
    // the last compaction, and the compacted history (the run above compacted the lake).
    let mut marie_keys = Vec::new();
    let mut link_files = h.stack.lake_keys(lake::links_prefix()).await?;
    link_files.extend(h.stack.lake_keys("events_by_profile/").await?.into_iter().filter(|k| k.contains("/history/")));
    assert!(!link_files.is_empty(), "the lake holds identity links");
    for key in link_files {
        let batches = lake::read_parquet_bytes(h.stack.lake_object(&key).await?)?;
        let (hashes, pids) = (lake::string_values(&batches, "identifier_hash")?, lake::string_values(&batches, "profile_id")?);
        marie_keys.extend(hashes.into_iter().zip(pids).filter(|(_, p)| *p == marie).map(|(k, _)| k));
    }
    marie_keys.sort();
    marie_keys.dedup();
    assert!(marie_keys.len() > COOKIES, "{} identifier sets", marie_keys.len());

    let mut clear = vec![MARIE_EMAIL.to_string(), FAMILY_EMAIL.into(), "06 11 22 33 44".into(), "0611223344".into(), "33611223344".into()];
    clear.push(MARIE_CUSTOMER.into());
    clear.extend((0..COOKIES).map(cookie));
    let mut keyed: Vec<String> = vec![
        identifier_hash(K::Email, MARIE_EMAIL),
        identifier_hash(K::Phone, MARIE_PHONE),
        identifier_hash(K::CustomerId, MARIE_CUSTOMER),
    ];
    keyed.extend((0..COOKIES).map(|i| identifier_hash(K::CookieId, &cookie(i))));
    keyed.extend(marie_keys.iter().cloned());
    let needles = Needles {
        clear,
        keyed,
        plain: vec![sha256_hex(MARIE_EMAIL), sha256_hex("33611223344"), sha256_hex(MARIE_PHONE)],
        family: identifier_hash(K::Email, FAMILY_EMAIL),
        profile_ids: vec![marie.clone()],
    };

    // Before: the sweep finds Marie everywhere the pipeline put her (so it can find her).
    let landing = sweep_bucket(&h, h.stack.landing_bucket(), &needles).await?;
    let lake_found = sweep_bucket(&h, h.stack.lake_bucket(), &needles).await?;
    // (Events and links are under events/ and identity/links/, or in the compacted lake,
    // events_by_profile/, once the daily compaction has run: the run above compacted it.)
    let stores: [&[&str]; 6] = [
        &["events/", "events_by_profile/"],
        &["rejects/"],
        &["identity/links/", "events_by_profile/gen="],
        &["segments/"],
        &["activations/"],
        &["audiences/"],
    ];
    for prefixes in stores {
        let found = |prefix: &&str| lake_found.iter().any(|(k, _)| k.contains(&format!("/{prefix}")));
        assert!(prefixes.iter().any(found), "nothing of Marie's under {prefixes:?} before");
    }
    assert!(lake_found.iter().any(|(k, _)| k.contains("/events_by_profile/")), "the compacted lake holds Marie's events");
    assert!(lake_found.iter().any(|(k, w)| k.contains("/audiences/") && w.starts_with("plain")), "Marie is in an ad audience");
    assert_eq!(landing.iter().map(|(k, _)| k.split('@').next().unwrap_or_default()).collect::<std::collections::BTreeSet<_>>().len(), 3);
    let profiles_table = h.stack.manifest.output("ProfilesTableName")?.to_string();
    let ledger_table = h.stack.manifest.output("ActivationLedgerTableName")?.to_string();
    assert!(!sweep_table(&h, &profiles_table, &needles).await?.is_empty());
    assert!(sweep_table(&h, &ledger_table, &needles).await?.iter().any(|(k, _)| k.contains("AUD#")), "an audience membership");

    // The requests: Marie by her e-mail; the family e-mail, at one member's request.
    for value in [MARIE_EMAIL, FAMILY_EMAIL] {
        h.send_raw("IdentityQueue", &send(&IdentityMessage::Erase { erase: Identifier::new(K::Email, value) })).await?;
    }
    let drained = h.runner.drain().await?;
    assert_eq!(drained.failures, 0, "{drained:?}");
    // The outbound events queue carries ProfileErased (consumed by the destinations).
    let events: Vec<serde_json::Value> = h.take_json(h.stack.manifest.output("ActivationEventsQueueUrl")?).await?;
    assert_eq!(events.iter().filter(|e| e["type"] == "ProfileErased").count(), 1, "{events:?}");

    // The purge (daily, here fired now), then identity's share of it (forget messages).
    let purge = h.runner.fire_schedule(Some("PurgeFunction"), run_at() + Duration::hours(1)).await?;
    assert_eq!(purge["erasures"].as_array().map(Vec::len), Some(2), "{purge}");
    let landing_purged = |what: &str| purge["removed"]["landing"][what].as_u64().unwrap_or(0);
    // The web export was all Marie's: deleted; the orders and the CRM file: rewritten.
    assert_eq!((landing_purged("objects_rewritten"), landing_purged("objects_deleted")), (2, 1), "{purge}");
    assert_eq!(purge["removed"]["profiles"]["values_blanked"], 1, "Pierre's evidence forgets the value: {purge}");
    let drained = h.runner.drain().await?;
    assert_eq!(drained.failures, 0, "{drained:?}");

    // After: nothing, but the suppression entries.
    let mut found = sweep_bucket(&h, h.stack.landing_bucket(), &needles).await?;
    found.extend(
        sweep_bucket(&h, h.stack.lake_bucket(), &needles)
            .await?
            .into_iter()
            // The remove rows take Marie out of the ad audiences (the platforms' hashes).
            .filter(|(k, w)| !(k.contains("/run=erasure-") && w.starts_with("plain")))
            // The erasure's own record, named by the requested identifier's keyed hash
            // (like its suppression entry), names that hash and the profile erased.
            .filter(|(k, w)| {
                let own = k.contains("/reports/erasures/") && w.split(' ').nth(1).is_some_and(|n| k.contains(n));
                let erased_profile = k.contains("/reports/erasures/") && w.starts_with("profile");
                !(own || erased_profile)
            }),
    );
    found.extend(sweep_table(&h, &profiles_table, &needles).await?.into_iter().filter(|(k, w)| {
        // Suppression entries: the suppressed identifiers' items (keyed hash, the
        // erased evidence keys); the family e-mail's hash stays in Pierre's identifier
        // sets (his evidence and component), as a hash: its value is gone.
        let suppression = k.contains("/ID#");
        let family_structure = w.starts_with("family") && (k.contains("/EV#") || k.contains("/COMP#"));
        let allowed = (suppression && !w.starts_with("clear")) || family_structure;
        !allowed
    }));
    found.extend(sweep_table(&h, &ledger_table, &needles).await?.into_iter().filter(|(_, w)| !w.starts_with("profile")));
    found.extend(sweep_queues(&h, &needles).await?.into_iter().filter(|(_, w)| !w.starts_with("profile")));
    assert!(
        found.is_empty(),
        "{} findings:\n{}",
        found.len(),
        found.iter().map(|(k, w)| format!("{k}: {w}")).collect::<Vec<_>>().join("\n")
    );

    // The others stay: Pierre without the family e-mail, Paul untouched.
    let p = ids.profile(&pierre).await?.expect("Pierre stays");
    assert!(!family_held(&p) && p.doc.traits.contains_key("phone"), "{:?}", p.doc);
    assert!(ids.profile(&paul).await?.is_some());
    let landing_orders = String::from_utf8(
        h.stack
            .clients
            .s3
            .get_object()
            .bucket(h.stack.landing_bucket())
            .key("ecommerce/orders 2026-11.csv")
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes()
            .to_vec(),
    )?;
    assert!(landing_orders.contains("paul.martin@gmail.com") && landing_orders.contains("06 99 88 77 66"), "{landing_orders}");
    assert_eq!(landing_orders.lines().count(), 3, "header, Pierre, Paul: {landing_orders}");
    let paul_key = identity_key(&[
        Identifier::new(K::CustomerId, "3000000000002"),
        Identifier::new(K::Email, "paul.martin@gmail.com"),
        Identifier::new(K::Phone, "+33655667788"),
    ]);
    let mut anchors = Vec::new();
    let mut event_files = h.stack.lake_keys("events/").await?;
    event_files.extend(
        h.stack.lake_keys("events_by_profile/gen=").await?.into_iter().filter(|k| !k.contains("/links/") && !k.contains("/history/")),
    );
    for key in event_files {
        anchors.extend(lake::string_values(&lake::read_parquet_bytes(h.stack.lake_object(&key).await?)?, "anchor_id")?);
    }
    assert!(paul_key.is_some_and(|k| anchors.contains(&k)), "Paul's order event stays");

    // The reports are done, name no target, and a second purge has nothing to do.
    for key in h.stack.lake_keys(ariane_shared::erasure::REPORTS_PREFIX).await? {
        let report: ErasureReport = serde_json::from_slice(&h.stack.lake_object(&key).await?)?;
        assert!(matches!(report.purge, PurgeState::Done { .. }), "{report:?}");
    }
    let again = h.runner.fire_schedule(Some("PurgeFunction"), run_at() + Duration::hours(2)).await?;
    assert_eq!(again["run"], serde_json::Value::Null, "{again}");
    // The landing rewrites were not ingested again.
    let ledger = h.ledger().await?;
    assert_eq!(ledger.len(), 3, "{ledger:?}");
    Ok(())
}
