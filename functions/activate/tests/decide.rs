//! The activation decision over the in-memory adapters (no moto): duplicates, webhook
//! failures, a crash between the POST and the ledger, consent, the cap across campaigns,
//! quiet hours and their release, erasure, an undecodable ledger entry, audience rows.
//! Moto tests (`tests/activation.rs` of the workspace) keep covering the AWS wiring.

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use ariane_activate::campaign::Campaign;
use ariane_activate::handler::Clock;
use ariane_activate::rules::Rules;
use ariane_activate::webhook::{Posted, Refusal, RetryPolicy};
use ariane_activate::{ActivateConfig, ActivateWith, InMemory, MemPorts};
use ariane_shared::identifiers::stable_id;
use ariane_shared::model::{ActivationRequest, SegmentChange};
use ariane_shared::ports::{ActivationLedger, BlobStore, Claim, Effects};
use ariane_shared::profile::{ConsentState, ProfileDoc, ProfileItem, TraitValue};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::{DateTime, Duration, Utc};

const RULES: &str = r#"
time_zone = "Europe/Paris"
phone_region = "FR"
[frequency_cap]
max_messages = 1
window_days = 7
[quiet_hours.sms]
start = "20:00"
end = "08:00"
days_off = ["sunday"]
holidays = "FR"
[destinations.esp]
channel = "email"
[destinations.sms-gateway]
channel = "sms"
"#;

fn email_campaign(name: &str, segment: &str) -> String {
    format!(
        r#"
name = "{name}"
segment = "{segment}"
trigger = "entered"
[channels]
policy = "ordered"
order = ["email"]
[channels.email]
destination = "esp"
template = "{name}-email"
"#
    )
}

const TEXTO: &str = r#"
name = "texto"
segment = "seg-sms"
trigger = "entered"
[channels]
policy = "ordered"
order = ["sms"]
[channels.sms]
destination = "sms-gateway"
template = "texto-sms"
"#;

const ADS: &str = r#"
name = "ads"
segment = "seg-ads"
trigger = "entered"
[audience]
platforms = ["meta", "google"]
"#;

/// Real time: 30 minutes after an add-to-cart, unless a purchase in any channel; shares
/// its cooldown with the segment campaign `cart-seg`.
const CART: &str = r#"
name = "cart"
trigger = { event = "add_to_cart", wait = "30 minutes", unless = ["order_line", "store_purchase"] }
cooldown_group = "cart"
payload = ["sku"]
cooldown = "2 days"
[channels]
policy = "ordered"
order = ["email"]
[channels.email]
destination = "esp"
template = "cart-email"
"#;

const CART_SEGMENT: &str = r#"
name = "cart-seg"
segment = "abandoned-cart"
trigger = "entered"
cooldown_group = "cart"
cooldown = "2 days"
[channels]
policy = "ordered"
order = ["email"]
[channels.email]
destination = "esp"
template = "cart-seg-email"
"#;

const BUCKET: &str = "lake";
const EVENTS: &str = "events-queue";
const ACTIVATION_QUEUE: &str = "activation-queue";

// Expected hashes computed independently with Python's hashlib (as in `audience.rs`).
const H_MARIE_DOTS: &str = "708c00ac64b84e6bdd1c4e0682cdd3dee2dcf86f93c8fb1a34d6eebada7fda9c"; // marie.dupont@gmail.com
const H_MARIE_NO_DOTS: &str = "c1df8cd174e22ca05bc9f7cf1390f000b96f5c61aca06dcd002f79d0250b229a"; // mariedupont@gmail.com
const H_PHONE_PLUS: &str = "42d573cfc315801d4cd8eddd5416b416a0bf298b9b9e12d6b07442c91db42bd8"; // +33612345678
const H_PHONE_DIGITS: &str = "8a3e7886c9335e82e02299fa3e87b46e2de3b0c63d56003e30a5029394a47661"; // 33612345678

fn at(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t).expect("instant").with_timezone(&Utc)
}

/// Tuesday 24 November 2026, 11:00 in Paris: every channel is open.
fn tuesday() -> DateTime<Utc> {
    at("2026-11-24T10:00:00Z")
}

fn config() -> ActivateConfig {
    ActivateConfig {
        profiles_table: "profiles".into(),
        ledger_table: "ledger".into(),
        lake_bucket: BUCKET.into(),
        activation_queue_url: ACTIVATION_QUEUE.into(),
        events_queue_url: EVENTS.into(),
        destinations: [("esp", "https://esp.invalid/hook"), ("sms-gateway", "https://sms.invalid/hook")]
            .into_iter()
            .map(|(n, u)| (n.to_string(), u.to_string()))
            .collect(),
        webhook_secret_arn: "arn:aws:secretsmanager:eu-west-3:000000000000:secret:signing".into(),
        webhook_timeout: StdDuration::from_secs(10),
        webhook_attempts: 3,
        claim_lease: StdDuration::from_secs(120),
        breaker: ariane_activate::breaker::BreakerPolicy::default(),
    }
}

struct World {
    mem: InMemory,
    clock: Clock,
    activate: ActivateWith<MemPorts>,
}

fn world() -> World {
    world_with(RULES)
}

fn world_with(rules: &str) -> World {
    let mem = InMemory::new();
    let clock = Clock::manual(tuesday());
    let rules = Rules::parse("rules.toml", rules).expect("rules");
    let campaigns = [
        ("promo-a", email_campaign("promo-a", "seg-a")),
        ("promo-b", email_campaign("promo-b", "seg-b")),
        ("texto", TEXTO.to_string()),
        ("ads", ADS.to_string()),
        ("cart", CART.to_string()),
        ("cart-seg", CART_SEGMENT.to_string()),
    ]
    .iter()
    .map(|(name, text)| Campaign::parse(&format!("campaigns/{name}.toml"), text).expect("campaign"))
    .collect();
    let mut activate = ActivateWith::with_ports(mem.ports(), config(), rules, campaigns, clock.clone()).expect("activate");
    activate.retry = RetryPolicy { attempts: 3, base_delay: StdDuration::from_millis(1), max_delay: StdDuration::from_millis(5) };
    World { mem, clock, activate }
}

struct Person<'a> {
    id: &'a str,
    email: Option<&'a str>,
    phone: Option<&'a str>,
    consents: &'a [(&'a str, bool)],
}

impl Person<'_> {
    fn item(&self) -> ProfileItem {
        let when = at("2026-01-01T00:00:00Z");
        let tv = |v: &str| TraitValue { value: v.into(), at: when, source: "crm".into(), observation_id: "o".into() };
        let mut doc = ProfileDoc::default();
        for (kind, value) in [("email", self.email), ("phone", self.phone)] {
            if let Some(v) = value {
                doc.identifiers.entry(kind.into()).or_default().insert(v.to_string());
                doc.traits.insert(kind.into(), tv(v));
            }
        }
        doc.traits.insert("first_name".into(), tv("Camille"));
        for (channel, granted) in self.consents {
            doc.consents.insert(
                channel.to_string(),
                ConsentState { granted: *granted, at: when, source: "crm".into(), observation_id: "o".into() },
            );
        }
        ProfileItem { profile_id: self.id.into(), component: format!("c-{}", self.id), doc, merged_from: vec![] }
    }

    fn put(&self, w: &World) {
        w.mem.profiles.put(self.item());
    }
}

fn emailable(id: &str) -> Person<'_> {
    Person { id, email: Some("camille@example.fr"), phone: None, consents: &[("email", true)] }
}

fn request(segment: &str, profile_id: &str, change: SegmentChange) -> ActivationRequest {
    ActivationRequest {
        segment: segment.into(),
        run_id: "20261124T090000Z".into(),
        run_at: tuesday(),
        profile_id: profile_id.into(),
        change,
        key: Default::default(),
        payload: Default::default(),
        attributes: Default::default(),
    }
}

fn message(id: &str, body: &str) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.into());
    m.body = Some(body.into());
    m
}

async fn deliver(w: &World, id: &str, r: &ActivationRequest) -> SqsBatchResponse {
    deliver_raw(w, id, &serde_json::to_string(r).expect("JSON")).await
}

async fn deliver_raw(w: &World, id: &str, body: &str) -> SqsBatchResponse {
    let mut event = SqsEvent::default();
    event.records = vec![message(id, body)];
    w.activate.handle(event).await
}

fn failed(r: &SqsBatchResponse) -> Vec<String> {
    r.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect()
}

/// The send key of a campaign entry's one message slot.
fn send_key(campaign: &str, r: &ActivationRequest) -> String {
    let akey = stable_id(&["activation", campaign, &r.idempotency_key()]);
    stable_id(&[&akey, "message"])
}

fn keys(posts: &[Posted]) -> BTreeSet<String> {
    posts.iter().map(|p| p.idempotency_key.clone()).collect()
}

fn events(w: &World) -> Vec<serde_json::Value> {
    w.mem.queue.sent(EVENTS).iter().map(|b| serde_json::from_str(b).expect("event JSON")).collect()
}

fn only_record(e: &Effects) -> (&str, Option<&str>) {
    assert_eq!(e.records.len(), 1, "{e:?}");
    (e.records[0].outcome.as_str(), e.records[0].reason.as_deref())
}

#[tokio::test]
async fn a_duplicate_sends_nothing_twice_and_re_emits_the_recorded_effects() {
    let w = world();
    emailable("p_dup").put(&w);
    let r = request("seg-a", "p_dup", SegmentChange::Entered);
    assert!(failed(&deliver(&w, "m1", &r).await).is_empty());
    let sent = w.mem.webhooks.accepted();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].destination, "esp");
    assert_eq!(sent[0].idempotency_key, send_key("promo-a", &r));
    assert_eq!(sent[0].body["to"]["email"], "camille@example.fr");
    let records = w.mem.blobs.keys(BUCKET).into_iter().filter(|k| k.starts_with("activations/")).collect::<Vec<_>>();
    assert_eq!(records.len(), 1);

    // Redelivered an hour later: nothing sent, the same effects (same records file, the
    // same event with the first decision's time).
    w.clock.set(tuesday() + Duration::hours(1));
    assert!(failed(&deliver(&w, "m2", &r).await).is_empty());
    assert_eq!(w.mem.webhooks.posts().len(), 1, "no second POST");
    let e = events(&w);
    assert_eq!(e.len(), 2, "the event is re-emitted (consumers de-duplicate by id)");
    assert_eq!(e[0], e[1]);
    assert_eq!(e[0]["type"], "ActivationSent");
    assert_eq!(e[0]["sent_at"], "2026-11-24T10:00:00Z");
    assert_eq!(w.mem.blobs.keys(BUCKET).into_iter().filter(|k| k.starts_with("activations/")).collect::<Vec<_>>(), records);
    let again = w.activate.process_request(&r, None, w.clock.now()).await.expect("a duplicate");
    assert_eq!(only_record(&again), ("sent", None));
    assert_eq!(again.records[0].decided_at, tuesday());
    assert_eq!(w.mem.ledger.pressure_of("p_dup").len(), 1);
}

#[tokio::test]
async fn a_webhook_500_then_success_is_one_send_and_one_pressure_slot() {
    let w = world();
    emailable("p_500").put(&w);
    let r = request("seg-a", "p_500", SegmentChange::Entered);
    w.mem.webhooks.refuse("esp", Refusal::Status(500), 1);
    assert!(failed(&deliver(&w, "m1", &r).await).is_empty());
    let posts = w.mem.webhooks.posts();
    assert_eq!(posts.iter().map(|p| p.status).collect::<Vec<_>>(), vec![Some(500), Some(200)], "retried within the invocation");
    assert_eq!(keys(&posts).len(), 1, "with the same Idempotency-Key");
    assert_eq!(w.activate.webhook_posts.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(w.mem.ledger.pressure_of("p_500").len(), 1);
    assert_eq!(w.mem.ledger.status(&send_key("promo-a", &r)), Some("sent"));
}

#[tokio::test]
async fn a_send_failing_every_attempt_gives_its_slot_back_and_succeeds_on_redelivery() {
    let w = world();
    emailable("p_down").put(&w);
    let r = request("seg-a", "p_down", SegmentChange::Entered);
    w.mem.webhooks.refuse("esp", Refusal::Status(429), 1);
    w.mem.webhooks.refuse("esp", Refusal::Transport, 1);
    w.mem.webhooks.refuse("esp", Refusal::Status(503), 1);
    assert_eq!(failed(&deliver(&w, "m1", &r).await), vec!["m1"], "the message is retried by SQS");
    assert!(w.mem.webhooks.accepted().is_empty());
    assert!(w.mem.ledger.pressure_of("p_down").is_empty(), "the pressure slot is given back");
    assert_eq!(w.mem.ledger.status(&send_key("promo-a", &r)), Some("claimed"));
    assert!(events(&w).is_empty());

    assert!(failed(&deliver(&w, "m1", &r).await).is_empty(), "the released claim is taken again at once");
    assert_eq!(w.mem.webhooks.accepted().len(), 1);
    assert_eq!(w.mem.webhooks.posts().len(), 4);
    assert_eq!(w.mem.ledger.pressure_of("p_down").len(), 1, "one slot, not two");
    assert_eq!(w.mem.ledger.status(&send_key("promo-a", &r)), Some("sent"));
}

#[tokio::test]
async fn a_throttled_complete_after_the_post_is_retried_and_the_message_posts_once() {
    let w = world();
    emailable("p_throttle").put(&w);
    let r = request("seg-a", "p_throttle", SegmentChange::Entered);
    let key = send_key("promo-a", &r);
    // Throttled three times after the destination's 2xx: retried, not released.
    w.mem.ledger.faults.fail("ledger.complete", 3);
    assert!(failed(&deliver(&w, "m1", &r).await).is_empty());
    assert_eq!(w.mem.webhooks.posts().len(), 1);
    assert_eq!(w.mem.ledger.status(&key), Some("sent"));
    assert!(failed(&deliver(&w, "m1", &r).await).is_empty());
    assert_eq!(w.mem.webhooks.posts().len(), 1, "a duplicate delivery re-emits, never re-posts");
}

#[tokio::test]
async fn a_complete_that_keeps_failing_after_the_post_keeps_the_claim_until_its_lease_ends() {
    let w = world();
    emailable("p_crash").put(&w);
    let r = request("seg-a", "p_crash", SegmentChange::Entered);
    let key = send_key("promo-a", &r);
    // Every attempt of `complete` fails: the message fails, but the claim is not given
    // back after the 2xx (a release would let the retry post at once).
    w.mem.ledger.faults.fail("ledger.complete", 6);
    assert_eq!(failed(&deliver(&w, "m1", &r).await), vec!["m1"]);
    assert_eq!(w.mem.webhooks.accepted().len(), 1, "the destination got it");
    assert_eq!(w.mem.ledger.status(&key), Some("claimed"), "the ledger does not say so");
    assert_eq!(w.mem.ledger.faults.injected(), 6, "complete was tried six times, release never");

    assert_eq!(failed(&deliver(&w, "m1", &r).await), vec!["m1"], "in flight while the lease lasts: no second POST");
    assert_eq!(w.mem.webhooks.posts().len(), 1);

    // Only once the lease is over can a retry post again, with the same key.
    w.clock.set(tuesday() + Duration::seconds(121));
    assert!(failed(&deliver(&w, "m1", &r).await).is_empty());
    let sent = w.mem.webhooks.accepted();
    assert_eq!(sent.len(), 2);
    assert_eq!(keys(&sent), BTreeSet::from([key.clone()]), "with the same Idempotency-Key, for the destination to de-duplicate");
    assert_eq!(w.mem.ledger.status(&key), Some("sent"));
    assert_eq!(w.mem.ledger.pressure_of("p_crash").len(), 1, "the reservation is found by its send key");
    assert!(failed(&deliver(&w, "m1", &r).await).is_empty());
    assert_eq!(w.mem.webhooks.posts().len(), 2, "and a further delivery is a duplicate");
}

#[tokio::test]
async fn a_claim_lease_an_invocation_can_outlast_is_refused() {
    let w = world();
    // The world's lease is 120 s: fine under a 60 s timeout, refused under 120 s or 900 s.
    assert!(w.activate.check_lease(StdDuration::from_secs(60)).is_ok());
    for budget in [120, 900] {
        let err = w.activate.check_lease(StdDuration::from_secs(budget)).expect_err("refused");
        assert!(err.to_string().contains("CLAIM_LEASE_SECONDS is 120 s"), "{err}");
    }
}

#[tokio::test]
async fn consent_withdrawn_before_the_send_suppresses_it() {
    let w = world();
    emailable("p_consent").put(&w);
    let first = request("seg-a", "p_consent", SegmentChange::Entered);
    let e = w.activate.process_request(&first, None, tuesday()).await.expect("decided");
    assert_eq!(only_record(&e), ("sent", None));

    // Withdrawn after the next segment run saw the person: the send re-reads the profile.
    let mut p = emailable("p_consent");
    p.consents = &[("email", false)];
    p.put(&w);
    let mut next = request("seg-a", "p_consent", SegmentChange::Entered);
    next.run_id = "20261201T090000Z".into();
    let e = w.activate.process_request(&next, None, tuesday() + Duration::days(7)).await.expect("decided");
    assert_eq!(only_record(&e), ("suppressed", Some("consent")));
    assert_eq!(e.records[0].channel.as_deref(), Some("email"));
    assert_eq!(w.mem.webhooks.posts().len(), 1);
    assert_eq!(w.mem.ledger.status(&send_key("promo-a", &next)), Some("suppressed"));

    // Never stated is no consent either; no identifier at all is `unreachable`.
    Person { id: "p_never", email: Some("x@example.fr"), phone: None, consents: &[] }.put(&w);
    let e = w.activate.process_request(&request("seg-a", "p_never", SegmentChange::Entered), None, tuesday()).await.expect("decided");
    assert_eq!(only_record(&e), ("suppressed", Some("consent")));
    Person { id: "p_nothing", email: None, phone: None, consents: &[("email", true)] }.put(&w);
    let e = w.activate.process_request(&request("seg-a", "p_nothing", SegmentChange::Entered), None, tuesday()).await.expect("decided");
    assert_eq!(only_record(&e), ("suppressed", Some("unreachable")));
}

#[tokio::test]
async fn the_cap_holds_across_two_campaigns() {
    let w = world();
    emailable("p_cap").put(&w);
    let a = w.activate.process_request(&request("seg-a", "p_cap", SegmentChange::Entered), None, tuesday()).await.expect("a");
    assert_eq!(only_record(&a), ("sent", None));
    let later = tuesday() + Duration::days(2);
    let b = w.activate.process_request(&request("seg-b", "p_cap", SegmentChange::Entered), None, later).await.expect("b");
    assert_eq!(only_record(&b), ("suppressed", Some("cap")), "one message per 7 days, whatever the campaign");
    assert_eq!(w.mem.webhooks.posts().len(), 1);
    let pressure = w.mem.ledger.pressure_of("p_cap");
    assert_eq!(pressure.len(), 1);
    assert_eq!(pressure[0].campaign, "promo-a");

    // Once the window has passed, the other campaign gets through.
    let mut again = request("seg-b", "p_cap", SegmentChange::Entered);
    again.run_id = "20261202T090000Z".into();
    let b = w.activate.process_request(&again, None, tuesday() + Duration::days(8)).await.expect("b later");
    assert_eq!(only_record(&b), ("sent", None));
}

#[tokio::test]
async fn quiet_hours_defer_the_send_and_the_schedule_releases_it() {
    let w = world();
    Person { id: "p_quiet", email: None, phone: Some("+33612345670"), consents: &[("sms", true)] }.put(&w);
    let r = request("seg-sms", "p_quiet", SegmentChange::Entered);
    let key = send_key("texto", &r);
    // Saturday 28 November 2026, 21:30 in Paris: quiet until Monday 08:00 (Sunday is off).
    let saturday = at("2026-11-28T20:30:00Z");
    w.clock.set(saturday);
    let e = w.activate.process_request(&r, None, saturday).await.expect("decided");
    assert_eq!(only_record(&e), ("deferred", Some("quiet_hours")));
    assert!(w.mem.webhooks.posts().is_empty());
    assert_eq!(w.mem.ledger.status(&key), Some("deferred"));

    let schedule = |time: &str| {
        serde_json::json!({
            "version": "0", "id": format!("release-{time}"), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "000000000000", "time": time, "region": "eu-west-3", "resources": [], "detail": {}
        })
    };
    // Sunday noon: nothing due.
    w.clock.set(at("2026-11-29T11:00:00Z"));
    let released = w.activate.handle_value(schedule("2026-11-29T11:00:00Z")).await.expect("release");
    assert_eq!(released["released"], 0, "{released}");

    // Monday 08:00 in Paris: released to the activation queue, then sent once.
    let monday = at("2026-11-30T07:00:00Z");
    w.clock.set(monday);
    let released = w.activate.handle_value(schedule("2026-11-30T07:00:00Z")).await.expect("release");
    assert_eq!(released["released"], 1, "{released}");
    let queued = w.mem.queue.take(ACTIVATION_QUEUE);
    assert_eq!(queued.len(), 1);
    assert!(failed(&deliver_raw(&w, "released-1", &queued[0]).await).is_empty());
    let sent = w.mem.webhooks.accepted();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].destination, "sms-gateway");
    assert_eq!(sent[0].idempotency_key, key);
    assert_eq!(sent[0].body["to"]["phone"], "+33612345670");
    assert_eq!(sent[0].body["sent_at"], "2026-11-30T07:00:00Z");
    assert_eq!(w.mem.ledger.status(&key), Some("sent"));

    // A retried schedule releases nothing more.
    let released = w.activate.handle_value(schedule("2026-11-30T07:15:00Z")).await.expect("release");
    assert_eq!(released["released"], 0, "{released}");
    assert!(w.mem.queue.take(ACTIVATION_QUEUE).is_empty());
}

#[tokio::test]
async fn an_erased_person_gets_nothing() {
    let w = world();
    let r = request("seg-a", "p_gone", SegmentChange::Entered);
    let e = w.activate.process_request(&r, None, tuesday()).await.expect("decided");
    assert_eq!(only_record(&e), ("suppressed", Some("erased")));
    assert!(w.mem.webhooks.posts().is_empty());
    assert_eq!(w.mem.ledger.status(&send_key("promo-a", &r)), Some("suppressed"));
    let ads = w.activate.process_request(&request("seg-ads", "p_gone", SegmentChange::Entered), None, tuesday()).await.expect("decided");
    assert_eq!(only_record(&ads), ("suppressed", Some("erased")));
    assert!(ads.audience.is_empty());
}

#[tokio::test]
async fn a_ledger_entry_whose_effects_cannot_be_decoded_fails_the_message() {
    let w = world();
    emailable("p_corrupt").put(&w);
    let r = request("seg-a", "p_corrupt", SegmentChange::Entered);
    assert!(failed(&deliver(&w, "m1", &r).await).is_empty());
    let events_before = events(&w).len();
    w.mem.ledger.corrupt_effects(&send_key("promo-a", &r), "{oops");
    assert_eq!(failed(&deliver(&w, "m2", &r).await), vec!["m2"], "an error, not a decided send with no effects");
    assert_eq!(w.mem.webhooks.posts().len(), 1, "and not a second send either");
    assert_eq!(events(&w).len(), events_before);
    let err = w.activate.process_request(&r, None, tuesday()).await.unwrap_err();
    assert!(err.to_string().contains("effects"), "{err}");
}

#[tokio::test]
async fn audiences_add_rows_on_entry_and_remove_the_same_rows_on_exit() {
    let w = world();
    // `33612345678` (international form without `+`) is hashed like +33612345678.
    Person { id: "p_ads", email: Some("Marie.Dupont@gmail.com"), phone: Some("33612345678"), consents: &[("ads", true)] }.put(&w);
    assert!(failed(&deliver(&w, "m1", &request("seg-ads", "p_ads", SegmentChange::Entered)).await).is_empty());
    let stored = w.mem.ledger.audience("ads", "p_ads").await.expect("read").expect("rows kept for the exit");
    let rows: Vec<(&str, &str, Option<&str>, Option<&str>)> =
        stored.iter().map(|r| (r.platform.as_str(), r.op.as_str(), r.email_sha256.as_deref(), r.phone_sha256.as_deref())).collect();
    assert_eq!(
        rows,
        vec![("meta", "add", Some(H_MARIE_DOTS), Some(H_PHONE_DIGITS)), ("google", "add", Some(H_MARIE_NO_DOTS), Some(H_PHONE_PLUS))]
    );
    let files = w.mem.blobs.keys(BUCKET).into_iter().filter(|k| k.starts_with("audiences/")).collect::<Vec<_>>();
    assert_eq!(files.len(), 2, "{files:?}");
    let meta = files.iter().find(|k| k.starts_with("audiences/ads/meta/run=20261124T090000Z/add-")).expect("the Meta file");
    let body = w.mem.blobs.get(BUCKET, meta).await.expect("read").expect("written");
    assert_eq!(std::str::from_utf8(&body).expect("UTF-8"), format!("email,phone\n{H_MARIE_DOTS},{H_PHONE_DIGITS}\n"));
    assert_eq!(events(&w)[0]["type"], "AudienceEntered");
    assert!(w.mem.webhooks.posts().is_empty(), "audiences are not messages");

    let mut exit = request("seg-ads", "p_ads", SegmentChange::Exited);
    exit.run_id = "20261201T090000Z".into();
    let e = w.activate.process_request(&exit, None, tuesday() + Duration::days(7)).await.expect("exit");
    assert_eq!(only_record(&e), ("audience_removed", None));
    let removed: Vec<(&str, &str, Option<&str>)> =
        e.audience.iter().map(|r| (r.platform.as_str(), r.op.as_str(), r.email_sha256.as_deref())).collect();
    assert_eq!(removed, vec![("meta", "remove", Some(H_MARIE_DOTS)), ("google", "remove", Some(H_MARIE_NO_DOTS))]);
    assert!(e.audience.iter().all(|r| r.run_id == "20261201T090000Z"));
    assert_eq!(w.mem.ledger.audience("ads", "p_ads").await.expect("read"), None);

    // Without advertising consent: no rows; an exit of someone never added removes nothing.
    Person { id: "p_no_ads", email: Some("x@example.fr"), phone: None, consents: &[("email", true)] }.put(&w);
    let e = w.activate.process_request(&request("seg-ads", "p_no_ads", SegmentChange::Entered), None, tuesday()).await.expect("entry");
    assert_eq!(only_record(&e), ("suppressed", Some("consent")));
    assert!(e.audience.is_empty());
    let e = w.activate.process_request(&request("seg-ads", "p_no_ads", SegmentChange::Exited), None, tuesday()).await.expect("exit");
    assert!(e.is_empty(), "{e:?}");
}

#[tokio::test]
async fn effects_that_cannot_be_written_fail_the_messages_that_produced_them() {
    let w = world();
    emailable("p_s3").put(&w);
    let r = request("seg-a", "p_s3", SegmentChange::Entered);
    w.mem.blobs.faults.fail("blob.put", 1);
    assert_eq!(failed(&deliver(&w, "m1", &r).await), vec!["m1"]);
    assert!(w.mem.blobs.keys(BUCKET).is_empty());
    assert!(failed(&deliver(&w, "m1", &r).await).is_empty(), "the retry re-emits them from the ledger");
    assert_eq!(w.mem.blobs.keys(BUCKET).len(), 1);
    assert_eq!(w.mem.webhooks.posts().len(), 1, "without sending again");
}

#[tokio::test]
async fn a_body_that_is_not_a_request_fails_only_its_message() {
    let w = world();
    emailable("p_ok").put(&w);
    let mut event = SqsEvent::default();
    event.records = vec![
        message("bad", "{not json"),
        message("good", &serde_json::to_string(&request("seg-a", "p_ok", SegmentChange::Entered)).expect("JSON")),
    ];
    let response = w.activate.handle(event).await;
    assert_eq!(failed(&response), vec!["bad"]);
    assert_eq!(w.mem.webhooks.accepted().len(), 1);
    let reading = w.activate.meter.reading();
    assert!(reading.write_requests > 0 && reading.read_requests > 0 && reading.s3_writes == 1 && reading.sqs_requests == 1, "{reading:?}");
}

#[tokio::test]
async fn a_destination_down_for_hours_pauses_its_sends_instead_of_filling_the_dlq() {
    let w = world();
    // The ESP is down: every POST answers 503.
    w.mem.webhooks.refuse("esp", Refusal::Status(503), 1000);
    let people: Vec<String> = (0..8).map(|i| format!("p_down_{i}")).collect();
    for p in &people {
        emailable(p).put(&w);
    }
    let requests: Vec<ActivationRequest> = people.iter().map(|p| request("seg-a", p, SegmentChange::Entered)).collect();
    // Below the threshold (5 failed sends in a row): ordinary failures, retried by SQS.
    for (i, r) in requests.iter().take(4).enumerate() {
        assert_eq!(failed(&deliver(&w, &format!("m{i}"), r).await), vec![format!("m{i}")]);
    }
    assert!(w.mem.queue.delayed(ACTIVATION_QUEUE).is_empty());
    // The fifth failure opens the breaker: that message, and every later one for the
    // destination, is put back on the queue to wait (acknowledged, not failed).
    assert!(failed(&deliver(&w, "m4", &requests[4]).await).is_empty());
    let posts = w.mem.webhooks.posts().len();
    assert_eq!(posts, 5 * 3, "five sends of three attempts each");
    for (i, r) in requests.iter().enumerate().skip(5) {
        assert!(failed(&deliver(&w, &format!("m{i}"), r).await).is_empty());
    }
    assert_eq!(w.mem.webhooks.posts().len(), posts, "no POST while the breaker is open");
    let waiting = w.mem.queue.delayed(ACTIVATION_QUEUE);
    assert_eq!(waiting.len(), 4, "{waiting:?}");
    assert!(waiting.iter().all(|(_, delay)| *delay == StdDuration::from_secs(300)), "until the cool-down ends: {waiting:?}");
    assert_eq!(w.mem.ledger.breaker("esp").await.unwrap().open_until, Some(tuesday() + Duration::minutes(5)));
    // Nothing is held: the claims are released and the cap slots given back.
    for (p, r) in people.iter().zip(&requests).skip(4) {
        assert!(matches!(
            w.mem.ledger.claim(&send_key("promo-a", r), StdDuration::from_secs(120), tuesday()).await,
            Ok(Claim::Acquired(_))
        ));
        assert!(w.mem.ledger.pressure_of(p).is_empty());
    }

    // Other destinations are not affected.
    let sms = Person { id: "p_sms", email: None, phone: Some("+33612345678"), consents: &[("sms", true)] };
    sms.put(&w);
    assert!(failed(&deliver(&w, "m-sms", &request("seg-sms", "p_sms", SegmentChange::Entered)).await).is_empty());
    assert_eq!(w.mem.webhooks.accepted().len(), 1);

    // The ESP is back; after the cool-down the waiting messages go through (half-open,
    // then closed by the first success).
    w.mem.webhooks.clear_refusals("esp");
    w.clock.set(tuesday() + Duration::minutes(6));
    for (i, (body, _)) in waiting.iter().enumerate() {
        assert!(failed(&deliver_raw(&w, &format!("again{i}"), body).await).is_empty());
    }
    assert_eq!(w.mem.webhooks.accepted().len(), 1 + 4);
    assert_eq!(w.mem.ledger.breaker("esp").await.unwrap(), Default::default(), "closed again");
}

#[tokio::test]
async fn a_half_open_breaker_reopens_at_the_first_failure_for_longer() {
    let w = world();
    w.mem.webhooks.refuse("esp", Refusal::Status(500), 1000);
    for i in 0..5 {
        let p = format!("p_half_{i}");
        emailable(&p).put(&w);
        deliver(&w, &format!("m{i}"), &request("seg-a", &p, SegmentChange::Entered)).await;
    }
    assert_eq!(w.mem.ledger.breaker("esp").await.unwrap().open_until, Some(tuesday() + Duration::minutes(5)));
    // After the cool-down one more failure is enough, and the pause doubles.
    w.clock.set(tuesday() + Duration::minutes(5) + Duration::seconds(1));
    emailable("p_half_5").put(&w);
    assert!(failed(&deliver(&w, "m5", &request("seg-a", "p_half_5", SegmentChange::Entered)).await).is_empty());
    let reopened = w.mem.ledger.breaker("esp").await.unwrap();
    assert_eq!(reopened.open_until, Some(tuesday() + Duration::minutes(15) + Duration::seconds(1)));
    assert_eq!(reopened.openings, 2);
}

fn activity(profile_id: &str, event_id: &str, event_type: &str, at: DateTime<Utc>) -> String {
    serde_json::json!({ "activity": {
        "profile_id": profile_id, "channel": "web", "event_id": event_id, "event_type": event_type,
        "occurred_at": at, "attributes": { "sku": "SKU-42", "product_name": "Parka" },
    }})
    .to_string()
}

fn schedule_at(t: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "version": "0", "id": format!("release-{t}"), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "000000000000", "time": t, "region": "eu-west-3", "resources": [], "detail": {}
    })
}

/// Plays the every-minute release at `t` and delivers what it released; returns how many.
async fn release_and_deliver(w: &World, t: DateTime<Utc>) -> usize {
    w.clock.set(t);
    let released = w.activate.handle_value(schedule_at(t)).await.expect("release");
    let queued = w.mem.queue.take(ACTIVATION_QUEUE);
    assert_eq!(released["ahead"].as_u64(), Some(0), "{released}: the tests' ticks fall on or after the due times");
    assert_eq!(released["released"].as_u64(), Some(queued.len() as u64), "{released}");
    for (i, body) in queued.iter().enumerate() {
        assert!(failed(&deliver_raw(w, &format!("released-{t}-{i}"), body).await).is_empty());
    }
    queued.len()
}

/// An add-to-cart leads to exactly one decision after the wait: none before it, one send
/// at the first release after it (with the cart's product), none more under a replay of
/// the event or of the release.
#[tokio::test]
async fn an_add_to_cart_is_decided_once_after_the_wait() {
    let w = world();
    emailable("p_cart").put(&w);
    let t0 = tuesday();
    assert!(failed(&deliver_raw(&w, "a1", &activity("p_cart", "ev-1", "add_to_cart", t0)).await).is_empty());
    assert!(w.mem.webhooks.posts().is_empty());
    assert_eq!(release_and_deliver(&w, t0 + Duration::minutes(28)).await, 0, "not before the wait");
    assert_eq!(release_and_deliver(&w, t0 + Duration::minutes(30) + Duration::seconds(20)).await, 1);
    let sent = w.mem.webhooks.accepted();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!((sent[0].destination.as_str(), sent[0].body["template"].as_str()), ("esp", Some("cart-email")));
    assert_eq!(sent[0].body["payload"]["sku"], "SKU-42", "{}", sent[0].body);
    assert_eq!(sent[0].body["segment"], "event:add_to_cart");
    // The same event again (a replayed request, a redelivered message), and the release again.
    assert!(failed(&deliver_raw(&w, "a1-again", &activity("p_cart", "ev-1", "add_to_cart", t0)).await).is_empty());
    assert_eq!(release_and_deliver(&w, t0 + Duration::minutes(31)).await, 1, "the replay schedules the same decision");
    assert_eq!(release_and_deliver(&w, t0 + Duration::minutes(32)).await, 0);
    assert_eq!(w.mem.webhooks.accepted().len(), 1, "still one send");
}

/// A purchase in another channel (a store receipt) between the cart and the decision
/// cancels it; one before the cart does not.
#[tokio::test]
async fn a_purchase_in_time_cancels_the_decision() {
    let w = world();
    emailable("p_bought").put(&w);
    emailable("p_before").put(&w);
    let t0 = tuesday();
    deliver_raw(&w, "b0", &activity("p_before", "ev-0", "store_purchase", t0 - Duration::hours(1))).await;
    deliver_raw(&w, "b1", &activity("p_before", "ev-1", "add_to_cart", t0)).await;
    deliver_raw(&w, "b2", &activity("p_bought", "ev-2", "add_to_cart", t0)).await;
    deliver_raw(&w, "b3", &activity("p_bought", "ev-3", "store_purchase", t0 + Duration::minutes(12))).await;
    assert_eq!(release_and_deliver(&w, t0 + Duration::minutes(30)).await, 2);
    let sent = w.mem.webhooks.accepted();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].body["profile_id"], "p_before");
}

/// Without e-mail consent at decision time the triggered campaign sends nothing.
#[tokio::test]
async fn a_triggered_decision_without_consent_sends_nothing() {
    let w = world();
    Person { id: "p_no", email: Some("no@example.fr"), phone: None, consents: &[("email", false)] }.put(&w);
    deliver_raw(&w, "c1", &activity("p_no", "ev-9", "add_to_cart", tuesday())).await;
    assert_eq!(release_and_deliver(&w, tuesday() + Duration::minutes(30)).await, 1);
    assert!(w.mem.webhooks.posts().is_empty());
}

/// The triggered reminder and the hourly segment's share a cooldown group: a person
/// reminded in real time is not reminded again by the segment for the same cart.
#[tokio::test]
async fn the_segment_campaign_and_the_triggered_one_share_the_cooldown() {
    let w = world_with(&RULES.replace("max_messages = 1", "max_messages = 5"));
    emailable("p_both").put(&w);
    let t0 = tuesday();
    deliver_raw(&w, "d1", &activity("p_both", "ev-5", "add_to_cart", t0)).await;
    assert_eq!(release_and_deliver(&w, t0 + Duration::minutes(30)).await, 1);
    assert_eq!(w.mem.webhooks.accepted().len(), 1);
    let later = t0 + Duration::hours(2);
    w.clock.set(later);
    let r = ActivationRequest { run_at: later, ..request("abandoned-cart", "p_both", SegmentChange::Entered) };
    let e = w.activate.process_request(&r, None, later).await.expect("decided");
    assert_eq!(only_record(&e), ("suppressed", Some("cooldown")));
    assert_eq!(w.mem.webhooks.accepted().len(), 1);
}

/// An event that reaches activation hours after its decision was due schedules nothing.
#[tokio::test]
async fn a_trigger_event_arriving_too_late_schedules_nothing() {
    let w = world();
    emailable("p_late").put(&w);
    let t0 = tuesday() - Duration::hours(8);
    deliver_raw(&w, "e1", &activity("p_late", "ev-7", "add_to_cart", t0)).await;
    assert_eq!(release_and_deliver(&w, tuesday()).await, 0);
}

/// Each release sends the timers due within the next minute ahead, with a queue delay of
/// the time left: the decision comes at its due second, not at the tick after it. A
/// message received early (a clock behind) is put back for the rest, never decided early.
#[tokio::test]
async fn a_timer_due_within_the_minute_is_released_ahead_and_decided_at_its_time() {
    let w = world();
    emailable("p_ahead").put(&w);
    let t0 = tuesday();
    assert!(failed(&deliver_raw(&w, "h1", &activity("p_ahead", "ev-h", "add_to_cart", t0)).await).is_empty());
    let tick = t0 + Duration::minutes(29) + Duration::seconds(15);
    w.clock.set(tick);
    let released = w.activate.handle_value(schedule_at(tick)).await.expect("release");
    assert_eq!((released["released"].as_u64(), released["ahead"].as_u64()), (Some(1), Some(1)), "{released}");
    assert!(w.mem.queue.take(ACTIVATION_QUEUE).is_empty(), "nothing visible at once");
    let held = w.mem.queue.take_delayed(ACTIVATION_QUEUE);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].1, std::time::Duration::from_secs(45), "the time left to the due second");
    let message: serde_json::Value = serde_json::from_str(&held[0].0).expect("json");
    assert_eq!(message["due"], "2026-11-24T10:30:00+00:00", "{message}");

    // Received half a second early: put back for the rest, nothing decided.
    w.clock.set(t0 + Duration::minutes(30) - Duration::milliseconds(500));
    assert!(failed(&deliver_raw(&w, "h2", &held[0].0).await).is_empty());
    assert!(w.mem.webhooks.posts().is_empty());
    let again = w.mem.queue.take_delayed(ACTIVATION_QUEUE);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].1, std::time::Duration::from_secs(1));

    // At its time: sent once, at the due second.
    let decided_at = t0 + Duration::minutes(30) + Duration::milliseconds(300);
    w.clock.set(decided_at);
    assert!(failed(&deliver_raw(&w, "h3", &again[0].0).await).is_empty());
    let sent = w.mem.webhooks.accepted();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].body["sent_at"], serde_json::json!(decided_at));
    // The next tick has nothing left to release, and a redelivery sends nothing more.
    assert_eq!(release_and_deliver(&w, t0 + Duration::minutes(30) + Duration::seconds(15)).await, 0);
    assert!(failed(&deliver_raw(&w, "h3-again", &again[0].0).await).is_empty());
    assert_eq!(w.mem.webhooks.accepted().len(), 1, "still one send");
}
