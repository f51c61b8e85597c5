//! The handler over the in-memory directory: identity's items (the profile document
//! with clear personal data included) and a memberships item as the segments run writes
//! it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ariane_shared::identifiers::{identifier_hash, sha256_hex, IdentifierKind as K};
use ariane_shared::memberships::{Membership, MembershipChange, Memberships};
use ariane_shared::profile::{ProfileDoc, ProfileItem, TraitValue};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};

use crate::config::ApiClient;
use crate::{issue_token, Authenticator, HttpRequest, MemDirectory, ProfileApi};

const SECRET: &[u8] = b"the-site-backend-token-secret-32-bytes+";
const SHOP: &str = "https://shop.example";
const SERVER_KEY: &str = "server-key-of-the-shop";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().with_timezone(&Utc)
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

/// Identity's identifier item (its encoding: `doc` JSON and a top-level `profile_id`).
fn id_item(kind: K, value: &str, profile_id: &str, suppressed: bool) -> HashMap<String, AttributeValue> {
    let doc = serde_json::json!({"profile_id": profile_id, "co": {}, "suppressed": suppressed});
    let mut item = HashMap::from([
        ("pk".to_string(), s(&format!("ID#{kind}#{}", identifier_hash(kind, value)))),
        ("sk".to_string(), s("ID")),
        ("v".to_string(), AttributeValue::N("7".into())),
        ("doc".to_string(), s(&doc.to_string())),
    ]);
    if !suppressed {
        item.insert("profile_id".into(), s(profile_id));
    }
    item
}

fn membership(segment: &str, key: &[(&str, &str)], payload: &[(&str, &str)]) -> Membership {
    let map = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
    Membership {
        segment: segment.into(),
        key: map(key),
        since: "2026-11-23T06:00:00Z".into(),
        run_id: "20261123T060000Z".into(),
        payload: map(payload),
    }
}

/// Marie: a cookie, a device and a customer id; a profile with her clear e-mail, phone
/// and name; a cart, an up-sell and a cross-sell, e-mail preferred.
fn directory() -> Arc<MemDirectory> {
    let d = Arc::new(MemDirectory::new());
    for (kind, value) in [(K::CookieId, "ck-marie"), (K::DeviceId, "dev-marie"), (K::CustomerId, "C-1001")] {
        d.put(id_item(kind, value, "p_marie", false));
    }
    let at = now() - Duration::days(30);
    let tv = |v: &str| TraitValue { value: v.into(), at, source: "crm".into(), observation_id: "o".into() };
    let mut doc = ProfileDoc::default();
    doc.identifiers.entry("email".into()).or_default().insert("marie.curie@orange.fr".into());
    doc.identifiers.entry("phone".into()).or_default().insert("+33611223344".into());
    for (name, v) in [("email", "marie.curie@orange.fr"), ("phone", "+33611223344"), ("first_name", "Marie"), ("last_name", "Curie")] {
        doc.traits.insert(name.into(), tv(v));
    }
    d.put(ProfileItem { profile_id: "p_marie".into(), component: "c".into(), doc, merged_from: vec![] }.to_attributes(3));
    let mut m = Memberships::default();
    let entries = [
        membership("abandoned-cart", &[], &[("items", "SKU-CHA-3,SKU-VET-1"), ("cart_at", "2026-11-23 05:10:00")]),
        membership(
            "up-sell",
            &[("suggested_sku", "SKU-RUN-2")],
            &[("suggested_sku", "SKU-RUN-2"), ("suggested_product", "Running Pro"), ("suggested_tier", "2"), ("product_range", "running")],
        ),
        membership(
            "cross-sell",
            &[("suggested_category", "accessoires")],
            &[("suggested_category", "accessoires"), ("because_of", "chaussures")],
        ),
        // A column that should never hold one: an e-mail address is dropped all the same.
        membership("vip", &[], &[("orders_365d", "7"), ("contact", "marie.curie@orange.fr")]),
    ];
    m.apply(&MembershipChange {
        profile_id: "p_marie".into(),
        run_id: "20261123T060000Z".into(),
        set: entries.iter().map(|e| (e.entry_name(), e.clone())).collect(),
        remove: Default::default(),
        attributes: [("preferred_channel".to_string(), Some("email".to_string()))].into(),
    });
    d.put(m.to_item());
    d
}

fn api(d: Arc<MemDirectory>) -> ProfileApi<Arc<MemDirectory>> {
    let clients = [ApiClient { client: "shop".into(), key_sha256: sha256_hex(SERVER_KEY), origins: vec![SHOP.into()] }];
    ProfileApi::new(d, Authenticator::new(&clients, SECRET.to_vec()))
}

fn get(query: &str) -> HttpRequest {
    HttpRequest::new("GET", "/v1/profile", query)
}

#[tokio::test]
async fn a_server_call_answers_segments_and_site_attributes_in_two_reads() {
    let d = directory();
    let api = api(d.clone());
    let r = api.handle_at(&get("cookie_id=ck-marie").with_header("x-api-key", SERVER_KEY), now()).await;
    assert_eq!(r.status_code, 200, "{}", r.body);
    assert_eq!(d.reads(), 2, "the identifier item, then the memberships item");
    assert_eq!(r.headers["cache-control"], "no-store");
    let body = r.body_json();
    let names: Vec<&str> = body["segments"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["abandoned-cart", "cross-sell", "up-sell", "vip"]);
    assert_eq!(body["segments"][0]["since"], "2026-11-23T06:00:00Z");
    assert_eq!(body["segments"][0]["payload"]["items"], "SKU-CHA-3,SKU-VET-1");
    let a = &body["attributes"];
    assert_eq!(a["preferred_channel"], "email");
    assert_eq!(a["cart_items"], serde_json::json!(["SKU-CHA-3", "SKU-VET-1"]));
    assert_eq!(a["suggested_products"][0]["sku"], "SKU-RUN-2");
    assert_eq!(a["suggested_products"][0]["name"], "Running Pro");
    assert_eq!(a["suggested_categories"], serde_json::json!(["accessoires"]));
    assert!(body.get("profile_id").is_none(), "no profile id leaves the API");
    // The device and the customer id are the same person; the value is normalised as
    // ingest normalises it (trimmed).
    for q in ["device_id=dev-marie", "customer_id=%20C-1001%20"] {
        let other = api.handle_at(&get(q).with_header("x-api-key", SERVER_KEY), now()).await;
        assert_eq!(other.body_json(), body, "{q}");
    }
}

#[tokio::test]
async fn no_clear_email_phone_or_name_ever_leaves_the_api() {
    let api = api(directory());
    let token = issue_token(SECRET, K::CookieId, "ck-marie", Duration::minutes(10), now());
    let requests = [
        get("cookie_id=ck-marie").with_header("x-api-key", SERVER_KEY),
        get("customer_id=C-1001").with_header("x-api-key", SERVER_KEY),
        get("cookie_id=ck-marie").with_header("authorization", &format!("Bearer {token}")).with_header("origin", SHOP),
        get("cookie_id=unknown").with_header("x-api-key", SERVER_KEY),
        get("cookie_id=ck-marie"),
    ];
    for req in requests {
        let r = api.handle_at(&req, now()).await;
        let text = format!("{} {:?}", r.body, r.headers);
        for clear in ["@", "marie.curie", "+33611223344", "0611223344", "611223344", "Marie", "Curie"] {
            assert!(!text.contains(clear), "{clear:?} in {text}");
        }
    }
}

#[tokio::test]
async fn unknown_erased_and_malformed_calls() {
    let d = directory();
    d.put(id_item(K::CookieId, "ck-erased", "p_gone", true));
    let api = api(d);
    let call = |q: &str| get(q).with_header("x-api-key", SERVER_KEY);
    for (q, status, code) in [
        ("cookie_id=never-seen", 404, "unknown"),
        ("cookie_id=ck-erased", 404, "unknown"),
        ("", 400, "missing_identifier"),
        ("email=marie.curie%40orange.fr", 400, "missing_identifier"),
        ("cookie_id=ck-marie&device_id=dev-marie", 400, "one_identifier_only"),
        ("cookie_id=ck-marie&cookie_id=ck-marie", 400, "one_identifier_only"),
        ("cookie_id=%20%20", 400, "invalid_identifier"),
    ] {
        let r = api.handle_at(&call(q), now()).await;
        assert_eq!((r.status_code, r.body_json()["error"].as_str().unwrap_or_default()), (status, code), "{q}");
    }
    let post = HttpRequest::new("POST", "/v1/profile", "cookie_id=ck-marie").with_header("x-api-key", SERVER_KEY);
    assert_eq!(api.handle_at(&post, now()).await.status_code, 405);
    assert_eq!(api.handle_at(&HttpRequest::new("GET", "/v1/other", "").with_header("x-api-key", SERVER_KEY), now()).await.status_code, 404);
}

#[tokio::test]
async fn calls_without_valid_credentials_are_refused() {
    let api = api(directory());
    let bearer = |t: &str| get("cookie_id=ck-marie").with_header("authorization", &format!("Bearer {t}"));
    let expired = issue_token(SECRET, K::CookieId, "ck-marie", Duration::minutes(5), now() - Duration::minutes(20));
    let forged = issue_token(b"not-the-site-secret-but-32-bytes-long!!", K::CookieId, "ck-marie", Duration::minutes(5), now());
    for (name, req) in [
        ("no credentials", get("cookie_id=ck-marie")),
        ("wrong key", get("cookie_id=ck-marie").with_header("x-api-key", "guess")),
        ("expired token", bearer(&expired)),
        ("bad signature", bearer(&forged)),
        ("garbage", bearer("abc")),
    ] {
        let r = api.handle_at(&req, now()).await;
        assert_eq!((r.status_code, r.body_json()["error"].as_str()), (401, Some("unauthorized")), "{name}");
    }
}

#[tokio::test]
async fn a_browser_token_opens_its_own_identifier_only_with_cors_for_the_shop() {
    let api = api(directory());
    let token = issue_token(SECRET, K::CookieId, "ck-marie", Duration::minutes(10), now());
    let call = |q: &str, origin: &str| get(q).with_header("authorization", &format!("Bearer {token}")).with_header("origin", origin);
    let ok = api.handle_at(&call("cookie_id=ck-marie", SHOP), now()).await;
    assert_eq!(ok.status_code, 200, "{}", ok.body);
    assert_eq!(ok.headers["access-control-allow-origin"], SHOP);
    assert_eq!(ok.headers["vary"], "Origin");
    for q in ["cookie_id=ck-paul", "device_id=ck-marie", "customer_id=C-1001"] {
        let r = api.handle_at(&call(q, SHOP), now()).await;
        assert_eq!((r.status_code, r.body_json()["error"].as_str()), (403, Some("token_for_another_identifier")), "{q}");
    }
    let evil = api.handle_at(&call("cookie_id=ck-marie", "https://evil.example"), now()).await;
    assert_eq!(evil.status_code, 403);
    assert!(!evil.headers.contains_key("access-control-allow-origin"));

    let preflight = |origin: &str| HttpRequest::new("OPTIONS", "/v1/profile", "").with_header("origin", origin);
    let p = api.handle_at(&preflight(SHOP), now()).await;
    assert_eq!((p.status_code, p.headers["access-control-allow-origin"].as_str()), (204, SHOP));
    assert!(p.headers["access-control-allow-headers"].contains("authorization"));
    assert_eq!(api.handle_at(&preflight("https://evil.example"), now()).await.status_code, 403);
}

#[tokio::test]
async fn a_merged_away_profile_is_followed_to_its_survivor_and_a_person_without_segments_is_known() {
    let d = directory();
    // A large merge applied in chunks: this identifier still names the merged-away
    // profile, whose alias names Marie's.
    d.put(id_item(K::CookieId, "ck-old", "p_old", false));
    d.put(HashMap::from([
        ("pk".to_string(), s("ALIAS#p_old")),
        ("sk".to_string(), s("ALIAS")),
        ("doc".to_string(), s(r#"{"to":"p_marie","at":"2026-11-22T00:00:00Z"}"#)),
        ("profile_id".to_string(), s("p_marie")),
    ]));
    d.put(id_item(K::CookieId, "ck-quiet", "p_quiet", false));
    let api = api(d.clone());
    let call = |q: &str| get(q).with_header("x-api-key", SERVER_KEY);
    let marie = api.handle_at(&call("cookie_id=ck-marie"), now()).await.body_json();
    assert_eq!(api.handle_at(&call("cookie_id=ck-old"), now()).await.body_json(), marie);
    let before = d.reads();
    let quiet = api.handle_at(&call("cookie_id=ck-quiet"), now()).await;
    assert_eq!(quiet.status_code, 200);
    assert_eq!(quiet.body_json()["segments"], serde_json::json!([]));
    assert_eq!(quiet.body_json()["attributes"]["cart_items"], serde_json::json!([]));
    assert_eq!(d.reads() - before, 3, "identifier, memberships, and the alias check");
}
