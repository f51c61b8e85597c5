//! The collector over the in-memory ports: what a website sees, what is queued, what
//! lands, and what the ingest makes of it with the embedded channel specs.

use std::sync::Arc;

use ariane_ingest::engine;
use ariane_ingest::map::FileContext;
use ariane_ingest::sink::Collected;
use ariane_ingest::spec::Catalog;
use ariane_shared::adapters::memory::{MemBlobs, MemQueue};
use ariane_shared::identifiers::{sha256_hex, IdentifierKind};
use ariane_shared::model::Observation;
use ariane_shared::ports::BlobStore;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::api::{base64_encode, HttpRequest, HttpResponse};
use crate::batch::{MAX_BODY_BYTES, MAX_EVENTS};
use crate::config::{CollectConfig, SourceConfig};
use crate::handler::CollectorWith;
use crate::message::QueuedBatch;

const WEB_KEY: &str = "wk_website_0123456789";
const APP_KEY: &str = "wk_ios_0123456789";
const SHOP: &str = "https://shop.example";
const QUEUE: &str = "https://sqs.local/collect";
const LANDING: &str = "landing";

type Mem = CollectorWith<MemBlobs, MemQueue>;

fn now() -> DateTime<Utc> {
    // Recent (the ingest engine checks times against the real clock), to the millisecond.
    let t = Utc::now() - Duration::hours(1);
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap()
}

fn config() -> CollectConfig {
    CollectConfig {
        sources: vec![
            SourceConfig { source: "website".into(), channel: "web".into(), key_sha256: sha256_hex(WEB_KEY), origins: vec![SHOP.into()] },
            SourceConfig { source: "ios".into(), channel: "app".into(), key_sha256: sha256_hex(APP_KEY), origins: vec![] },
        ],
        queue_url: QUEUE.into(),
        landing_bucket: LANDING.into(),
    }
}

fn collector(at: DateTime<Utc>) -> Mem {
    CollectorWith::new(config(), MemBlobs::new(), MemQueue::new()).with_clock(move || at)
}

fn ts(at: DateTime<Utc>, minutes_before: i64) -> String {
    (at - Duration::minutes(minutes_before)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A consented add-to-cart of a known customer.
fn cart(at: DateTime<Utc>, id: &str) -> Value {
    json!({
        "type": "track", "event": "Add To Cart", "messageId": id, "anonymousId": "cookie-1", "userId": "C-42",
        "timestamp": ts(at, 5),
        "properties": {"sku": "SKU-1", "name": "Bonnet", "category": "hats", "quantity": 2, "price": 12.5, "currency": "EUR"},
        "context": {"consent": {"personalization": true}, "page": {"url": "https://shop.example/p/1?utm_source=nl&email=x%40y.example"}}
    })
}

fn page(at: DateTime<Utc>, id: &str, consent: Option<bool>) -> Value {
    let mut e = json!({
        "type": "page", "messageId": id, "anonymousId": "cookie-2", "userId": "C-7", "timestamp": ts(at, 3),
        "properties": {"email": "marie@example.com"},
        "context": {"page": {"url": "https://shop.example/?utm_campaign=winter&token=secret"}}
    });
    if let Some(c) = consent {
        e["context"]["consent"] = json!({"personalization": c});
    }
    e
}

fn identify(at: DateTime<Utc>, id: &str) -> Value {
    json!({
        "type": "identify", "messageId": id, "userId": "C-42", "anonymousId": "cookie-1", "timestamp": ts(at, 1),
        "traits": {"email": "Marie.Dupont@Example.com", "name": "Marie"},
        "context": {"consent": {"personalization": true}}
    })
}

fn post(body: impl Into<String>) -> HttpRequest {
    HttpRequest::new("POST", "/v1/batch")
        .with_header("content-type", "application/json")
        .with_header("x-write-key", WEB_KEY)
        .with_body(body)
}

fn batch(events: &[Value]) -> String {
    json!({"batch": events, "sentAt": Utc::now().to_rfc3339()}).to_string()
}

fn queued(c: &Mem) -> Vec<QueuedBatch> {
    c.queue.sent(QUEUE).iter().map(|b| serde_json::from_str(b).unwrap()).collect()
}

fn sqs_event(bodies: &[String], ids: &[&str]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = bodies
        .iter()
        .zip(ids)
        .map(|(body, id)| {
            let mut m = SqsMessage::default();
            m.message_id = Some(id.to_string());
            m.body = Some(body.clone());
            m
        })
        .collect();
    event
}

#[tokio::test]
async fn a_good_batch_is_queued_as_normalised_lines() {
    let at = now();
    let c = collector(at);
    let events = [cart(at, "m-1"), page(at, "m-2", Some(true)), identify(at, "m-3")];
    let r = c.handle_http(&post(batch(&events)).with_header("origin", SHOP)).await;
    assert_eq!((r.status_code, r.body_json()), (200, json!({"accepted": 3})), "{}", r.body);
    assert_eq!(r.headers.get("access-control-allow-origin").map(String::as_str), Some(SHOP));
    assert_eq!(r.headers.get("vary").map(String::as_str), Some("Origin"));

    let q = queued(&c);
    assert_eq!(q.len(), 1, "one message for a small batch");
    assert_eq!((q[0].source.as_str(), q[0].channel.as_str(), q[0].lines.len()), ("website", "web", 3));
    let lines: Vec<Value> = q[0].lines.iter().map(|l| serde_json::to_value(l).unwrap()).collect();
    let received = at.to_rfc3339_opts(SecondsFormat::Millis, true);
    assert_eq!(
        lines[0],
        json!({
            "message_id": "m-1", "source": "website", "type": "track", "event": "add_to_cart", "timestamp": ts(at, 5),
            "received_at": received, "anonymous_id": "cookie-1", "user_id": "C-42",
            "page_url": "https://shop.example/p/1?utm_source=nl&email=x%40y.example",
            "sku": "SKU-1", "product_name": "Bonnet", "category": "hats", "quantity": 2, "price": "12.50", "currency": "EUR",
            "consent": true
        })
    );
    assert_eq!((lines[1]["event"].as_str(), lines[1]["email"].as_str()), (Some("page_view"), Some("marie@example.com")));
    assert_eq!((lines[2]["event"].as_str(), lines[2]["email"].as_str()), (Some("identify"), Some("Marie.Dupont@Example.com")));

    // Segment's Basic form of the key, and an app without Origin.
    let basic = format!("Basic {}", base64_encode(format!("{APP_KEY}:").as_bytes()));
    let req = HttpRequest::new("POST", "/v1/batch").with_header("authorization", &basic).with_body(batch(&[cart(at, "a-1")]));
    let r = c.handle_http(&req).await;
    assert_eq!(r.status_code, 200, "{}", r.body);
    assert!(!r.headers.contains_key("access-control-allow-origin"));
    assert_eq!(queued(&c)[1].channel, "app");
}

#[tokio::test]
async fn a_bad_or_missing_write_key_is_401_and_nothing_is_queued() {
    let at = now();
    let c = collector(at);
    let body = batch(&[cart(at, "m-1")]);
    for req in [
        post(body.clone()).with_header("x-write-key", "wk_guess"),
        HttpRequest::new("POST", "/v1/batch").with_body(body.clone()),
        HttpRequest::new("POST", "/v1/batch").with_header("authorization", "Basic !!!").with_body(body.clone()),
        HttpRequest::new("POST", "/v1/batch").with_header("authorization", &format!("Bearer {WEB_KEY}")).with_body(body.clone()),
    ] {
        let r = c.handle_http(&req).await;
        assert_eq!((r.status_code, r.body_json()), (401, json!({"error": "missing or unknown write key"})));
    }
    assert!(c.queue.sent(QUEUE).is_empty());
}

#[tokio::test]
async fn caps_are_413() {
    let at = now();
    let c = collector(at);
    let oversized = format!(r#"{{"batch": [], "pad": "{}"}}"#, "x".repeat(MAX_BODY_BYTES));
    let r = c.handle_http(&post(oversized.clone())).await;
    assert_eq!(r.status_code, 413, "{}", r.body);
    assert!(r.body_json()["error"].as_str().unwrap().contains("larger than 262144 bytes"));
    // The same once base64-encoded by API Gateway.
    let mut encoded = post(base64_encode(oversized.as_bytes()));
    encoded.is_base64_encoded = true;
    assert_eq!(c.handle_http(&encoded).await.status_code, 413);

    let many: Vec<Value> = (0..=MAX_EVENTS).map(|i| page(at, &format!("m-{i}"), None)).collect();
    let r = c.handle_http(&post(batch(&many))).await;
    assert_eq!((r.status_code, r.body_json()["error"].as_str()), (413, Some("501 events in the batch; at most 500 are accepted")));

    let mut big = cart(at, "m-big");
    big["properties"]["description"] = json!("d".repeat(33 * 1024));
    let r = c.handle_http(&post(batch(&[cart(at, "m-1"), big]))).await;
    assert_eq!((r.status_code, r.body_json()["index"].as_u64()), (413, Some(1)), "{}", r.body);
    assert!(c.queue.sent(QUEUE).is_empty());

    // A base64-encoded body within the cap is read.
    let mut ok = post(base64_encode(batch(&[cart(at, "m-1")]).as_bytes()));
    ok.is_base64_encoded = true;
    assert_eq!(c.handle_http(&ok).await.status_code, 200);
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let at = now();
    let c = collector(at);
    for (body, want) in [
        ("{\"batch\": [", "the body is not JSON"),
        ("[1, 2]", "the body is not {\"batch\": [...]}: not a JSON object"),
        ("{\"events\": []}", "no \"batch\" list"),
        ("{\"batch\": {}}", "\"batch\" is not a list"),
    ] {
        let r = c.handle_http(&post(body)).await;
        assert_eq!(r.status_code, 400, "{body}");
        assert!(r.body_json()["error"].as_str().unwrap().contains(want), "{body}: {}", r.body);
        assert_eq!(r.headers.get("content-type").map(String::as_str), Some("application/json"));
    }
    let mut bad64 = post("%%%");
    bad64.is_base64_encoded = true;
    assert_eq!(c.handle_http(&bad64).await.status_code, 400);
    assert!(c.queue.sent(QUEUE).is_empty());
}

#[tokio::test]
async fn a_bad_event_refuses_the_whole_batch_naming_its_index() {
    let at = now();
    let c = collector(at);
    let mut bad = cart(at, "m-4");
    bad["timestamp"] = json!("12/11/2026 10:00");
    let events = [cart(at, "m-1"), page(at, "m-2", None), identify(at, "m-3"), bad, cart(at, "m-5")];
    let r = c.handle_http(&post(batch(&events))).await;
    assert_eq!(r.status_code, 400);
    assert_eq!(r.body_json()["index"], 3);
    assert_eq!(r.body_json()["error"], "event 3: timestamp \"12/11/2026 10:00\" is not RFC 3339");
    assert!(c.queue.sent(QUEUE).is_empty(), "nothing of a refused batch is queued");

    let mut stale = cart(at, "m-1");
    stale["timestamp"] = json!(ts(at, 8 * 24 * 60));
    let r = c.handle_http(&post(batch(&[stale]))).await;
    assert_eq!((r.status_code, r.body_json()["index"].as_u64()), (400, Some(0)));
}

#[tokio::test]
async fn without_consent_the_queued_line_has_no_person() {
    let at = now();
    let c = collector(at);
    let mut cart_no_consent = cart(at, "m-2");
    cart_no_consent["context"]["consent"]["personalization"] = json!(false);
    let r = c.handle_http(&post(batch(&[page(at, "m-1", None), cart_no_consent]))).await;
    assert_eq!(r.status_code, 200, "{}", r.body);
    let lines = &queued(&c)[0].lines;
    for line in lines {
        let v = serde_json::to_value(line).unwrap();
        for field in ["anonymous_id", "user_id", "email"] {
            assert!(v.get(field).is_none(), "{field} in {v}");
        }
        assert_eq!(v["consent"], false);
    }
    assert_eq!(lines[0].page_url.as_deref(), Some("https://shop.example/?utm_campaign=winter"));
    // The product stays (aggregate measures), its possibly personal `name` does not.
    assert_eq!(
        (lines[1].sku.as_deref(), lines[1].product_name.as_deref(), lines[1].price.as_deref()),
        (Some("SKU-1"), None, Some("12.50"))
    );
}

#[tokio::test]
async fn cors_preflight_and_origins() {
    let at = now();
    let c = collector(at);
    let preflight = |origin: &str| HttpRequest::new("OPTIONS", "/v1/batch").with_header("origin", origin);
    let r = c.handle_http(&preflight(SHOP)).await;
    assert_eq!(r.status_code, 204);
    let h = |name: &str| r.headers.get(name).cloned().unwrap_or_default();
    assert_eq!(h("access-control-allow-origin"), SHOP);
    assert_eq!(h("access-control-allow-methods"), "POST, OPTIONS");
    assert_eq!(h("access-control-allow-headers"), "authorization, content-type, x-write-key");
    assert_eq!(h("access-control-max-age"), "7200");
    let r = c.handle_http(&preflight("https://evil.example")).await;
    assert_eq!(r.status_code, 403);
    assert!(!r.headers.contains_key("access-control-allow-origin"));
    assert_eq!(c.handle_http(&HttpRequest::new("OPTIONS", "/v1/batch")).await.status_code, 403);

    // A POST from an origin not of the key's source.
    let body = batch(&[cart(at, "m-1")]);
    let r = c.handle_http(&post(body.clone()).with_header("origin", "https://evil.example")).await;
    assert_eq!(r.status_code, 403);
    assert_eq!(r.body_json()["error"], "origin https://evil.example is not allowed for this write key");
    // The app's key used from the shop's page: the origin is not the app source's.
    let r = c.handle_http(&post(body).with_header("x-write-key", APP_KEY).with_header("origin", SHOP)).await;
    assert_eq!(r.status_code, 403);
    assert!(c.queue.sent(QUEUE).is_empty());
}

#[tokio::test]
async fn other_routes_and_methods() {
    let c = collector(now());
    let r = c.handle_http(&HttpRequest::new("POST", "/v1/track")).await;
    assert_eq!(r.status_code, 404);
    let r = c.handle_http(&HttpRequest::new("GET", "/v1/batch")).await;
    assert_eq!((r.status_code, r.headers.get("allow").map(String::as_str)), (405, Some("POST, OPTIONS")));
    assert!(r.body_json()["error"].is_string());
    // A named stage's prefix.
    let at = now();
    let mut staged = post(batch(&[cart(at, "m-1")]));
    staged.request_context.http.path = "/prod/v1/batch".into();
    assert_eq!(c.handle_http(&staged).await.status_code, 200);
}

#[tokio::test]
async fn a_queue_failure_is_503_to_retry() {
    let at = now();
    let c = collector(at);
    c.queue.faults.fail("queue.send", 1);
    let r = c.handle_http(&post(batch(&[cart(at, "m-1")]))).await;
    assert_eq!((r.status_code, r.headers.get("retry-after").map(String::as_str)), (503, Some("1")));
}

/// Posts a web and an app batch and returns the queued bodies.
async fn queue_two_channels(c: &Mem, at: DateTime<Utc>) -> Vec<String> {
    let web = [cart(at, "m-1"), page(at, "m-2", None), identify(at, "m-3"), cart(at, "m-1")];
    assert_eq!(c.handle_http(&post(batch(&web))).await.status_code, 200);
    let app = HttpRequest::new("POST", "/v1/batch").with_header("x-write-key", APP_KEY).with_body(batch(&[cart(at, "a-1")]));
    assert_eq!(c.handle_http(&app).await.status_code, 200);
    c.queue.take(QUEUE)
}

#[tokio::test]
async fn the_sqs_entry_point_lands_one_deterministic_object_per_channel() {
    let at = now();
    let c = collector(at);
    let bodies = queue_two_channels(&c, at).await;
    assert_eq!(bodies.len(), 2);
    let mut with_junk = bodies.clone();
    with_junk.push("{\"not\": \"a batch\"}".into());
    let response = c.handle_sqs(sqs_event(&with_junk, &["s-1", "s-2", "s-3"])).await;
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failed, ["s-3"], "only the undecodable message goes back (then to the DLQ)");

    let keys = c.blobs.keys(LANDING);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let date = at.format("%Y-%m-%d").to_string();
    assert!(keys[0].starts_with(&format!("app/collect/date={date}/")) && keys[0].ends_with(".ndjson"), "{keys:?}");
    assert!(keys[1].starts_with(&format!("web/collect/date={date}/")), "{keys:?}");
    assert_eq!(c.blobs.content_type(LANDING, &keys[1]).as_deref(), Some("application/x-ndjson"));
    let web = c.blobs.get(LANDING, &keys[1]).await.unwrap().unwrap();
    let ids: Vec<String> = std::str::from_utf8(&web)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["message_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["m-1", "m-2", "m-3"], "sorted, a repeated message id once");

    // Redelivered (in another order): the same keys, the same bytes.
    let response = c.handle_sqs(sqs_event(&[bodies[1].clone(), bodies[0].clone()], &["s-2", "s-1"])).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(c.blobs.keys(LANDING), keys);
    assert_eq!(c.blobs.get(LANDING, &keys[1]).await.unwrap().unwrap(), web);

    // A failed write sends its channel's messages back.
    c.blobs.faults.fail_on("blob.put", "web/", 1);
    let response = c.handle_sqs(sqs_event(&bodies, &["s-1", "s-2"])).await;
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failed, ["s-1"]);
}

/// What the channel's ingest makes of a landed object, with the embedded specs.
fn ingest(channel: &str, key: &str, body: &[u8]) -> Collected {
    let catalog = Catalog::embedded().expect("the embedded specs validate");
    let spec = catalog.select(channel, key).expect("a spec for the key");
    assert_eq!(spec.name, "collector", "{key} is read by the collector spec");
    let mut sink = Collected::default();
    let file = FileContext { source_key: key.into(), fingerprint: "fp".into() };
    let counts = engine::parse(Box::new(std::io::Cursor::new(body.to_vec())), spec, file, &mut sink).expect("the object reads");
    assert_eq!(counts.rejected, 0, "{:?}", sink.rejected);
    sink
}

#[tokio::test]
async fn the_ingest_reads_landed_objects_into_canonical_events() {
    let at = now();
    let c = collector(at);
    let bodies = queue_two_channels(&c, at).await;
    c.handle_sqs(sqs_event(&bodies, &["s-1", "s-2"])).await;
    let keys = c.blobs.keys(LANDING);
    let web_body = c.blobs.get(LANDING, &keys[1]).await.unwrap().unwrap();
    let web = ingest("web", &keys[1], &web_body);
    let types: Vec<&str> = web.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["add_to_cart", "page_view", "identify"]);
    let added = &web.events[0];
    assert_eq!(added.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true), ts(at, 5));
    assert_eq!(
        (added.sku.as_deref(), added.product_name.as_deref(), added.category.as_deref()),
        (Some("SKU-1"), Some("Bonnet"), Some("hats"))
    );
    assert_eq!((added.quantity, added.unit_price_minor, added.currency.as_deref()), (Some(2), Some(1250), Some("EUR")));
    assert_eq!(added.page_url.as_deref(), Some("https://shop.example/p/1?utm_source=nl"), "only campaign tags reach the lake");
    assert!(added.anchor_id.is_some());
    // The page view without consent: no person, no observation.
    let view = &web.events[1];
    assert_eq!((view.anchor_id.as_deref(), view.email_hash.as_deref()), (None, None));
    assert_eq!(web.observations.len(), 2, "the consented cart and identify only");
    let kinds = |o: &Observation| o.identifiers.iter().map(|i| (i.kind, i.value.clone())).collect::<Vec<_>>();
    let first = kinds(&web.observations[0]);
    assert!(
        first.contains(&(IdentifierKind::CustomerId, "C-42".into())) && first.contains(&(IdentifierKind::CookieId, "cookie-1".into())),
        "{first:?}"
    );
    assert!(kinds(&web.observations[1]).contains(&(IdentifierKind::Email, "marie.dupont@example.com".into())));

    let app_body = c.blobs.get(LANDING, &keys[0]).await.unwrap().unwrap();
    let app = ingest("app", &keys[0], &app_body);
    assert_eq!(app.events[0].event_type, "add_to_cart");
    assert!(kinds(&app.observations[0]).contains(&(IdentifierKind::DeviceId, "cookie-1".into())));

    // A replayed request, landed in another object, keeps its event ids.
    let c2 = collector(at + Duration::seconds(30));
    c2.handle_http(&post(batch(&[cart(at, "m-1")]))).await;
    let bodies = c2.queue.take(QUEUE);
    c2.handle_sqs(sqs_event(&bodies, &["s-9"])).await;
    let key = c2.blobs.keys(LANDING).remove(0);
    let replay = ingest("web", &key, &c2.blobs.get(LANDING, &key).await.unwrap().unwrap());
    assert_eq!(replay.events[0].event_id, web.events[0].event_id);
}

#[tokio::test]
async fn raw_invocations_are_dispatched() {
    let at = now();
    let c = collector(at);
    let http = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/v1/batch", "rawQueryString": "",
        "headers": {"x-write-key": WEB_KEY, "content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/v1/batch", "sourceIp": "192.0.2.1"}},
        "body": base64_encode(batch(&[cart(at, "m-1")]).as_bytes()), "isBase64Encoded": true
    });
    let out = c.handle_value(http).await.unwrap();
    assert_eq!((out["statusCode"].as_u64(), out["body"].as_str()), (Some(200), Some(r#"{"accepted":1}"#)));
    let body = c.queue.take(QUEUE).remove(0);
    let sqs = json!({"Records": [{"messageId": "s-1", "body": body, "eventSource": "aws:sqs"}]});
    let out = c.handle_value(sqs).await.unwrap();
    assert_eq!(out["batchItemFailures"], json!([]));
    assert_eq!(c.blobs.keys(LANDING).len(), 1);
    assert!(c.handle_value(json!({"source": "aws.events"})).await.is_err());
}

#[tokio::test]
async fn the_local_front_serves_the_handler() {
    let at = now();
    let c = Arc::new(collector(at));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/batch", listener.local_addr().unwrap());
    let server = tokio::spawn(crate::local::serve(listener, c.clone()));
    let client = reqwest::Client::new();

    let r = client
        .request(reqwest::Method::OPTIONS, &url)
        .header("Origin", SHOP)
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], SHOP);

    let r = client
        .post(&url)
        .header("Origin", SHOP)
        .header("Authorization", format!("Basic {}", base64_encode(format!("{WEB_KEY}:").as_bytes())))
        .header("Content-Type", "text/plain")
        .body(batch(&[cart(at, "m-1"), page(at, "m-2", Some(true))]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], SHOP);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"accepted": 2}));
    assert_eq!(c.queue.sent(QUEUE).len(), 1);

    let r = client.post(&url).body("{").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client.post(&url).header("x-write-key", WEB_KEY).body(vec![0xff, 0xfe, b'{']).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400, "a body that is not UTF-8 goes through base64 and fails as JSON");
    server.abort();
}

#[test]
fn error_responses_are_json() {
    let r = HttpResponse::error(418, "teapot");
    assert_eq!(r.body_json(), json!({"error": "teapot"}));
}

#[tokio::test]
async fn an_empty_batch_is_accepted_and_sends_nothing() {
    let c = collector(now());
    let r = c.handle_http(&post(batch(&[]))).await;
    assert_eq!((r.status_code, r.body_json()), (200, json!({"accepted": 0})));
    assert!(c.queue.sent(QUEUE).is_empty());
}
