//! Real time against the local stack (moto over HTTP, the template's HTTP API played by the
//! runner, a real webhook receiver on 127.0.0.1): events posted to the collector become
//! landing micro-batches, events and identity observations like an export; an add-to-cart
//! leads to exactly one decision after the wait, none when an order (online, or in a shop
//! export) arrives in time, none without consent, none twice under replay; bad requests
//! get their 4xx and change nothing. After a segments run, the profile API answers from
//! the memberships items it wrote.

use std::collections::BTreeMap;

use ariane_activate::handler::Clock;
use ariane_activate::holdout::in_holdout;
use ariane_local::activation::final_outcomes;
use ariane_local::gateway::{HttpCall, HttpReply};
use ariane_local::runner::queue_depth;
use ariane_local::stack::{LOCAL_ORIGIN, LOCAL_PROFILE_KEY, LOCAL_WRITE_KEY};
use ariane_local::LocalStack;
use ariane_profile_api::issue_token;
use ariane_shared::identifiers::IdentifierKind;
use ariane_tests::Harness;
use chrono::{DateTime, Duration, Timelike, Utc};
use serde_json::{json, Value};

const CAMPAIGN: &str = "cart-reminder";

fn basic(key: &str) -> String {
    format!("Basic {}", ariane_collect::api::base64_encode(format!("{key}:").as_bytes()))
}

async fn post(h: &Harness, key: &str, body: &Value) -> anyhow::Result<HttpReply> {
    let call =
        HttpCall::new("POST", LocalStack::COLLECT_PATH).header("authorization", &basic(key)).header("origin", LOCAL_ORIGIN).json(body);
    h.runner.http(&call).await
}

/// A shopper's session: identify (e-mail, with or without marketing consent) then an
/// add-to-cart, under the cookie `cookie`.
fn session(n: u32, cookie: &str, email: &str, personalisation: bool, at: DateTime<Utc>) -> Vec<Value> {
    let consent = json!({ "personalization": personalisation, "email": true });
    vec![
        json!({ "type": "identify", "messageId": format!("m-{n}-1"), "anonymousId": cookie, "userId": format!("C-{n}"),
                "traits": { "email": email }, "timestamp": at.to_rfc3339(), "context": { "consent": consent } }),
        json!({ "type": "page", "messageId": format!("m-{n}-2"), "anonymousId": cookie, "timestamp": at.to_rfc3339(),
                "context": { "consent": consent, "page": { "url": "https://shop.example/p/parka?utm_source=nl&email=x@y.fr" } } }),
        json!({ "type": "track", "event": "Product Added", "messageId": format!("m-{n}-3"), "anonymousId": cookie,
                "timestamp": (at + Duration::seconds(5)).to_rfc3339(),
                "properties": { "sku": "SKU-PARKA", "name": "Parka", "price": 129.0, "currency": "EUR", "quantity": 1 },
                "context": { "consent": consent } }),
    ]
}

/// The decisions of the triggered campaign, by the person's e-mail.
async fn decisions(h: &Harness) -> anyhow::Result<BTreeMap<String, Vec<ariane_shared::lake::ActivationRecord>>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in final_outcomes(&h.stack.activation_records().await?).into_iter().filter(|r| r.campaign == CAMPAIGN) {
        let email = h.stack.profile_attribute(&r.profile_id, "email").await?.unwrap_or_default();
        out.entry(email).or_default().push(r);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_to_cart_posted_to_the_collector_is_decided_once_after_the_wait() -> anyhow::Result<()> {
    let mut h = Harness::start("rt").await?;
    // Recent events: ingest forwards what happened within the last 48 hours.
    let t0 = Utc::now() - Duration::minutes(2);
    h.runner.set_activate_clock(&Clock::manual(Utc::now()));

    // Léa: consent, a cart, nothing bought. Hugo: consent, a cart, then an online order.
    // Inès: consent, a cart, then a shop's order export with her e-mail. Noé: no consent.
    let mut batch = session(1, "ck-lea", "lea@example.fr", true, t0);
    batch.extend(session(2, "ck-hugo", "hugo@example.fr", true, t0));
    batch.push(json!({ "type": "track", "event": "Order Completed", "messageId": "m-2-4", "anonymousId": "ck-hugo",
                       "timestamp": (t0 + Duration::minutes(1)).to_rfc3339(),
                       "properties": { "order_id": "W-1", "revenue": 129.0, "currency": "EUR" },
                       "context": { "consent": { "personalization": true } } }));
    batch.extend(session(3, "ck-ines", "ines@example.fr", true, t0));
    batch.extend(session(4, "ck-noe", "noe@example.fr", false, t0));
    let body = json!({ "batch": batch, "sentAt": Utc::now().to_rfc3339() });

    // Bad requests first: each its 4xx, nothing queued.
    let collect_queue = h.stack.manifest.queues["CollectQueue"].url.clone();
    assert_eq!(post(&h, "not-the-key", &body).await?.status, 401);
    let mut oversized = body.clone();
    oversized["batch"] = Value::Array((0..501).map(|i| json!({ "type": "page", "messageId": format!("x{i}") })).collect());
    assert_eq!(post(&h, LOCAL_WRITE_KEY, &oversized).await?.status, 413);
    let mut malformed = body.clone();
    malformed["batch"][2]["timestamp"] = json!("yesterday");
    let refused = post(&h, LOCAL_WRITE_KEY, &malformed).await?;
    assert_eq!((refused.status, refused.json()["index"].as_u64()), (400, Some(2)), "{:?}", refused.json());
    let not_json = HttpCall::new("POST", LocalStack::COLLECT_PATH).header("authorization", &basic(LOCAL_WRITE_KEY));
    assert_eq!(h.runner.http(&HttpCall { body: b"{batch".to_vec(), ..not_json }).await?.status, 400);
    assert_eq!(queue_depth(&h.stack.clients.sqs, &collect_queue).await?, 0, "a refused request queues nothing");

    // The good request, and its replay.
    let accepted = post(&h, LOCAL_WRITE_KEY, &body).await?;
    assert_eq!(accepted.status, 200, "{:?}", accepted.json());
    assert_eq!(accepted.headers.get("access-control-allow-origin").map(String::as_str), Some(LOCAL_ORIGIN));
    assert_eq!(post(&h, LOCAL_WRITE_KEY, &body).await?.status, 200);
    // Inès's order arrives in a shop export a few minutes later (a store, an ERP: any channel).
    let created = (t0 + Duration::minutes(3)).with_nanosecond(0).unwrap_or(t0).format("%Y-%m-%d %H:%M:%S +0000");
    let csv = format!(
        "Name,Email,Phone,Customer ID,Created at,Currency,Total,Lineitem sku,Lineitem name,Lineitem category,Lineitem quantity,Lineitem price,Billing Name,Billing Zip,Billing City,Accepts Marketing\n\
         #9001,ines@example.fr,,,{created},EUR,129.00,SKU-PARKA,Parka,Coats,1,129.00,Inès Martin,69001,Lyon,yes\n"
    );
    h.stack.upload("ecommerce/orders-live.csv", csv.into_bytes()).await?;
    let drained = h.runner.drain().await?;
    assert_eq!(drained.failures, 0, "{drained:?}");
    for f in ["CollectFunction", "IngestWebFunction", "IdentityFunction", "ActivateFunction"] {
        assert!(drained.by_function.contains_key(f), "{f} ran: {drained:?}");
    }
    let landed = h.stack.landing_keys("web/collect/").await?;
    assert!(!landed.is_empty(), "micro-batches land under web/collect/");
    // No consent: the lake has Noé's events without any identifier, and no profile of his.
    assert_eq!(h.stack.profile_id_by_email("noe@example.fr").await?, None);
    assert!(h.receiver.deliveries().is_empty(), "nothing before the wait");

    // The every-minute release, played by the runner: before the wait, nothing is due (the
    // carts, 5 s into the sessions, fall due at t0 + 30 min 5 s: beyond this tick's minute
    // of lookahead).
    h.runner.set_activate_clock(&Clock::manual(t0 + Duration::minutes(29)));
    h.runner.fire_schedule(Some("ActivateFunction"), t0 + Duration::minutes(29)).await?;
    h.runner.drain().await?;
    assert!(decisions(&h).await?.is_empty(), "nothing decided before the wait");

    // After it: one decision each for Léa (sent or held out), Hugo and Inès (cancelled).
    let after = t0 + Duration::minutes(31);
    h.runner.set_activate_clock(&Clock::manual(after));
    h.runner.fire_schedule(Some("ActivateFunction"), after).await?;
    let drained = h.runner.drain().await?;
    assert_eq!(drained.failures, 0, "{drained:?}");
    // Once more, and the collector's request replayed: nothing new.
    h.runner.fire_schedule(Some("ActivateFunction"), after + Duration::minutes(1)).await?;
    assert_eq!(post(&h, LOCAL_WRITE_KEY, &body).await?.status, 200);
    h.runner.drain().await?;
    h.runner.fire_schedule(Some("ActivateFunction"), after + Duration::minutes(2)).await?;
    h.runner.drain().await?;

    let decided = decisions(&h).await?;
    let one = |email: &str| {
        let d = decided.get(email).unwrap_or_else(|| panic!("{email} decided: {decided:?}"));
        assert_eq!(d.len(), 1, "{email}: one decision {d:?}");
        d[0].clone()
    };
    let lea = one("lea@example.fr");
    let deliveries: Vec<_> = h.receiver.deliveries().into_iter().filter(|d| d.body["campaign"] == CAMPAIGN).collect();
    if in_holdout(CAMPAIGN, &lea.profile_id, 10.0) {
        assert_eq!(lea.outcome, "holdout");
        assert!(deliveries.is_empty());
    } else {
        // Push first, then e-mail: Léa has no app, so the e-mail she consented to.
        assert_eq!((lea.outcome.as_str(), lea.channel.as_deref()), ("sent", Some("email")), "{lea:?}");
        assert_eq!(deliveries.len(), 1, "exactly one message: {deliveries:?}");
        assert_eq!(deliveries[0].body["to"]["email"], "lea@example.fr");
        assert_eq!(deliveries[0].body["payload"]["sku"], "SKU-PARKA");
        assert_eq!(deliveries[0].body["segment"], "event:add_to_cart");
    }
    let hugo = one("hugo@example.fr");
    assert_eq!((hugo.outcome.as_str(), hugo.reason.as_deref()), ("suppressed", Some("unless:checkout_completed")), "{hugo:?}");
    let ines = one("ines@example.fr");
    assert_eq!((ines.outcome.as_str(), ines.reason.as_deref()), ("suppressed", Some("unless:order_line")), "{ines:?}");
    assert!(!decided.contains_key("noe@example.fr") && !decided.contains_key(""), "no consent, no trigger: {decided:?}");

    // The hourly segments run writes each changed person's memberships item; the profile
    // API answers from it, by cookie, customer id or browser token.
    let rule =
        h.stack.manifest.schedules.iter().find(|s| s.state_machine.as_deref() == Some("SegmentsStateMachine")).expect("segments schedule");
    let run = ariane_local::runner::scheduled_event(&h.stack.manifest, &rule.rule_arn, after);
    h.runner.execute_state_machine("SegmentsStateMachine", run).await?;
    profile_api_answers_from_the_memberships(&h).await?;
    a_timer_is_released_ahead_and_decided_at_its_time(&mut h).await
}

/// On the real clock: a release that comes before a timer's due second sends it ahead
/// with an SQS delay of the time left (moto holds it), and the decision is made when the
/// delay ends, at or after the due time, without another tick.
async fn a_timer_is_released_ahead_and_decided_at_its_time(h: &mut Harness) -> anyhow::Result<()> {
    h.runner.set_activate_clock(&Clock::System);
    // Zoé's add-to-cart (5 s into her session) is due 30 s from now: time for the
    // pipeline to schedule it before the tick.
    let now = Utc::now().with_nanosecond(0).unwrap_or_else(Utc::now);
    let start = now - Duration::minutes(30) + Duration::seconds(30) - Duration::seconds(5);
    let due = start + Duration::seconds(5) + Duration::minutes(30);
    let batch = session(5, "ck-zoe", "zoe@example.fr", true, start);
    assert_eq!(post(h, LOCAL_WRITE_KEY, &json!({ "batch": batch })).await?.status, 200);
    h.runner.drain().await?;
    let tick = Utc::now();
    anyhow::ensure!(tick < due, "the pipeline took longer than the 30 s margin: the release cannot come ahead of the timer");
    let summary = h.runner.fire_schedule(Some("ActivateFunction"), tick).await?;
    assert_eq!((summary["released"].as_u64(), summary["ahead"].as_u64()), (Some(1), Some(1)), "{summary}");
    assert!(!decisions(h).await?.contains_key("zoe@example.fr"), "nothing decided at the tick");
    // The runner's drain waits for moto's delayed message; no other tick is fired.
    let drained = h.runner.drain().await?;
    assert_eq!(drained.failures, 0, "{drained:?}");
    let decided = decisions(h).await?;
    let zoe = decided.get("zoe@example.fr").unwrap_or_else(|| panic!("Zoé decided without another tick: {decided:?}"));
    assert_eq!(zoe.len(), 1, "{zoe:?}");
    assert!(zoe[0].decided_at >= due, "never before the due time: decided {} for {due}", zoe[0].decided_at);
    Ok(())
}

async fn profile(h: &Harness, query: &str, auth: Option<(&str, &str)>) -> anyhow::Result<HttpReply> {
    let mut call = HttpCall::new("GET", &format!("{}?{query}", LocalStack::PROFILE_PATH)).header("origin", LOCAL_ORIGIN);
    if let Some((name, value)) = auth {
        call = call.header(name, value);
    }
    h.runner.http(&call).await
}

/// After the segments run: Léa, whose cart is open, is in `abandoned-cart` with its
/// items; Hugo, who ordered, is not; Noé (no consent) is unknown; no answer carries a
/// clear identifier; a browser token opens its own identifier's profile only.
async fn profile_api_answers_from_the_memberships(h: &Harness) -> anyhow::Result<()> {
    let key = Some(("x-api-key", LOCAL_PROFILE_KEY));
    let lea = profile(h, "cookie_id=ck-lea", key).await?;
    assert_eq!(lea.status, 200, "{:?}", lea.json());
    assert_eq!(lea.headers.get("access-control-allow-origin").map(String::as_str), Some(LOCAL_ORIGIN));
    let body = lea.json();
    let names: Vec<&str> = body["segments"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    assert!(names.contains(&"abandoned-cart"), "{body}");
    assert_eq!(body["attributes"]["cart_items"], json!(["SKU-PARKA"]), "{body}");
    let text = String::from_utf8_lossy(&lea.body).to_string();
    assert!(!text.contains('@') && !text.contains("ck-lea") && !text.contains("C-1"), "no clear identifier: {text}");
    // The same person by customer id.
    let by_customer = profile(h, "customer_id=C-1", key).await?;
    assert_eq!((by_customer.status, by_customer.json()["segments"].clone()), (200, body["segments"].clone()));

    let hugo = profile(h, "cookie_id=ck-hugo", key).await?;
    assert_eq!(hugo.status, 200, "{:?}", hugo.json());
    assert!(!hugo.json()["segments"].to_string().contains("abandoned-cart"), "Hugo ordered: {:?}", hugo.json());
    assert_eq!(profile(h, "cookie_id=ck-noe", key).await?.status, 404, "no consent, no profile");
    assert_eq!(profile(h, "cookie_id=ck-lea", None).await?.status, 401);
    assert_eq!(profile(h, "cookie_id=ck-lea", Some(("x-api-key", "not-the-key"))).await?.status, 401);
    assert_eq!(profile(h, "cookie_id=ck-lea&customer_id=C-1", key).await?.status, 400);

    // A browser token the site's backend signs for Léa's cookie: her profile, not Hugo's.
    let secret = h.stack.profile_token_secret().await?;
    let token = issue_token(&secret, IdentifierKind::CookieId, "ck-lea", Duration::minutes(5), Utc::now());
    let bearer = format!("Bearer {token}");
    let with_token = profile(h, "cookie_id=ck-lea", Some(("authorization", &bearer))).await?;
    assert_eq!((with_token.status, with_token.json()), (200, body));
    assert_eq!(profile(h, "cookie_id=ck-hugo", Some(("authorization", &bearer))).await?.status, 403);
    let forged =
        issue_token(b"another-secret-of-at-least-32-bytes!!", IdentifierKind::CookieId, "ck-lea", Duration::minutes(5), Utc::now());
    assert_eq!(profile(h, "cookie_id=ck-lea", Some(("authorization", &format!("Bearer {forged}")))).await?.status, 401);
    Ok(())
}
