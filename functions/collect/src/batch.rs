//! What a website or app posts, how each event is checked, and the flat line it becomes.
//!
//! A request body (`POST /v1/batch`), close to Segment's batch API:
//!
//! ```json
//! {
//!   "batch": [
//!     {"type": "track", "event": "Add To Cart", "messageId": "m-1", "anonymousId": "c-42", "userId": "u-7",
//!      "timestamp": "2026-11-12T16:30:00.123Z",
//!      "properties": {"sku": "SKU-1", "name": "Crème", "category": "care", "quantity": 2, "price": 12.5, "currency": "EUR"},
//!      "context": {"consent": {"personalization": true}, "page": {"url": "https://shop.example/p/1?utm_source=nl"}}},
//!     {"type": "page", "messageId": "m-2", "anonymousId": "c-42", "timestamp": "...", "context": {...}},
//!     {"type": "identify", "messageId": "m-3", "userId": "u-7", "traits": {"email": "marie@example.com"}, "timestamp": "...", "context": {...}}
//!   ],
//!   "sentAt": "2026-11-12T16:30:01Z"
//! }
//! ```
//!
//! - `type`: `track` (needs `event`), `page`, `screen` or `identify`;
//! - `messageId`: 1 to 128 characters, unique per source: with the source it is the
//!   event's natural key, so a replayed request changes nothing in the lake;
//! - `event` (track): 1 to 64 characters among letters, digits, `_`, space, `.`, `-`;
//!   normalised to lower snake case (`Add To Cart`, `addToCart` → `add_to_cart`);
//! - `timestamp`: RFC 3339, within [`MAX_PAST`] before and [`MAX_FUTURE`] after the time
//!   the request is received;
//! - `anonymousId` / `userId`: strings (or numbers) of at most [`MAX_ID_CHARS`]; at least
//!   one of them when the event carries consent;
//! - `context.consent.personalization`: `true` keeps the person; otherwise (false or
//!   absent) the event is kept for aggregate measures only: ids, e-mail, traits and
//!   personal properties are dropped before queuing and the page URL keeps only its
//!   `utm_*` parameters (see [`normalise`]).
//!
//! Amounts (`price`, `revenue`) are in major units (`12.5` euros), a JSON number or a
//! decimal string with at most two decimals; the line carries them as a decimal string
//! with two decimals (`"12.50"`), which the channel specs read into minor units
//! (`unit_price_minor`, `order_total_minor`), exactly as they read amounts of exports.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The largest request body, after base64 decoding (413 above).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The most events in one request (413 above).
pub const MAX_EVENTS: usize = 500;
/// The largest event, serialised as JSON (413 above).
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// The longest `messageId`.
pub const MAX_MESSAGE_ID_CHARS: usize = 128;
/// The longest `anonymousId` / `userId`.
pub const MAX_ID_CHARS: usize = 256;
/// The longest track `event` name.
pub const MAX_EVENT_NAME_CHARS: usize = 64;
/// The oldest accepted `timestamp`, before the time the request is received.
pub const MAX_PAST: Duration = Duration::days(7);
/// The latest accepted `timestamp` (client clocks run ahead a little).
pub const MAX_FUTURE: Duration = Duration::minutes(10);
/// The query parameters an event without consent keeps in its page URL.
pub const CAMPAIGN_PARAMETERS: &[&str] = &["utm_source", "utm_medium", "utm_campaign"];

/// Why a request is refused: the HTTP status and the JSON error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is not {{\"batch\": [...]}}: {0}")]
    Shape(String),
    #[error("{count} events in the batch; at most {MAX_EVENTS} are accepted")]
    TooManyEvents { count: usize },
    #[error("event {index} is {size} bytes; at most {MAX_EVENT_BYTES} are accepted")]
    EventTooLarge { index: usize, size: usize },
    #[error("event {index}: {reason}")]
    Event { index: usize, reason: String },
}

impl BatchError {
    pub fn status(&self) -> u16 {
        match self {
            BatchError::TooManyEvents { .. } | BatchError::EventTooLarge { .. } => 413,
            BatchError::NotJson(_) | BatchError::Shape(_) | BatchError::Event { .. } => 400,
        }
    }

    /// The index of the event at fault, if one is.
    pub fn index(&self) -> Option<usize> {
        match self {
            BatchError::EventTooLarge { index, .. } | BatchError::Event { index, .. } => Some(*index),
            _ => None,
        }
    }
}

/// One normalised event: a flat JSON object, one line of the NDJSON objects the channel
/// specs `channels/{web,app}/collector.toml` read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub message_id: String,
    pub source: String,
    /// `track`, `page`, `screen` or `identify`.
    #[serde(rename = "type")]
    pub kind: String,
    /// track: the normalised name; page: `page_view`; screen: `screen_view`; identify:
    /// `identify`.
    pub event: String,
    /// RFC 3339, UTC, milliseconds.
    pub timestamp: String,
    pub received_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    /// Major units, two decimals (`"12.50"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// ISO 4217, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Major units, two decimals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue: Option<String>,
    /// Whether the person agreed to personalisation; without it the line has no
    /// identifier.
    pub consent: bool,
    /// `context.consent.email` as the site's consent manager states it (marketing
    /// e-mails), only on an event that keeps its person and carries an e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_opt_in: Option<bool>,
}

/// Parses a request body into lines: the whole batch or the first error (nothing of a
/// refused batch is queued).
pub fn parse_batch(body: &[u8], source: &str, now: DateTime<Utc>) -> Result<Vec<Line>, BatchError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| BatchError::NotJson(e.to_string()))?;
    let events = match value {
        Value::Object(mut map) => match map.remove("batch") {
            Some(Value::Array(events)) => events,
            Some(_) => return Err(BatchError::Shape("\"batch\" is not a list".into())),
            None => return Err(BatchError::Shape("no \"batch\" list".into())),
        },
        _ => return Err(BatchError::Shape("not a JSON object".into())),
    };
    if events.len() > MAX_EVENTS {
        return Err(BatchError::TooManyEvents { count: events.len() });
    }
    let received_at = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let size = serde_json::to_string(event).map(|s| s.len()).unwrap_or(usize::MAX);
            if size > MAX_EVENT_BYTES {
                return Err(BatchError::EventTooLarge { index, size });
            }
            normalise(event, source, now, &received_at).map_err(|reason| BatchError::Event { index, reason })
        })
        .collect()
}

/// One event checked and flattened into its line (the reason names the field at fault).
pub fn normalise(event: &Value, source: &str, now: DateTime<Utc>, received_at: &str) -> Result<Line, String> {
    let event = event.as_object().ok_or("not a JSON object")?;
    let empty = Map::new();
    let properties = object(event, "properties")?.unwrap_or(&empty);
    let traits = object(event, "traits")?.unwrap_or(&empty);
    let context = object(event, "context")?.unwrap_or(&empty);

    let kind = event.get("type").and_then(Value::as_str).ok_or("type is missing (track, page, screen or identify)")?;
    let name = match kind {
        "track" => event_name(event.get("event"))?,
        "page" => "page_view".to_string(),
        "screen" => "screen_view".to_string(),
        "identify" => "identify".to_string(),
        other => return Err(format!("type {other:?} is not track, page, screen or identify")),
    };
    let message_id = text(event.get("messageId"), "messageId")?.ok_or("messageId is missing")?;
    if message_id.chars().count() > MAX_MESSAGE_ID_CHARS {
        return Err(format!("messageId is longer than {MAX_MESSAGE_ID_CHARS} characters"));
    }
    let timestamp = timestamp(event.get("timestamp"), now)?;

    let consent = matches!(context.get("consent").and_then(|c| c.get("personalization")), Some(Value::Bool(true)));
    let email_opt_in = context.get("consent").and_then(|c| c.get("email")).and_then(Value::as_bool);
    let id = |name: &str| -> Result<Option<String>, String> {
        let value = text(event.get(name), name)?;
        if value.as_ref().is_some_and(|v| v.chars().count() > MAX_ID_CHARS) {
            return Err(format!("{name} is longer than {MAX_ID_CHARS} characters"));
        }
        Ok(value)
    };
    let (anonymous_id, user_id) = (id("anonymousId")?, id("userId")?);
    if consent && anonymous_id.is_none() && user_id.is_none() {
        return Err("anonymousId or userId is needed on an event with consent".into());
    }

    let prop = |name: &str| text(properties.get(name), &format!("properties.{name}"));
    let page = context.get("page").and_then(Value::as_object).unwrap_or(&empty);
    let page_url = match text(page.get("url"), "context.page.url")? {
        Some(url) => Some(url),
        None => prop("url")?,
    };
    let email = match text(traits.get("email"), "traits.email")? {
        Some(e) => Some(e),
        None => prop("email")?,
    };
    // Segment's `properties.name` is the product's name on e-commerce events, the page's
    // on page calls and may be a person's elsewhere: it counts only on a track event with
    // consent; `product_name` always.
    let product_name = match prop("product_name")? {
        Some(n) => Some(n),
        None if consent && kind == "track" => prop("name")?,
        None => None,
    };
    let sku = match prop("sku")? {
        Some(s) => Some(s),
        None => prop("product_id")?,
    };
    let line = Line {
        message_id,
        source: source.to_string(),
        kind: kind.to_string(),
        event: name,
        timestamp: timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
        received_at: received_at.to_string(),
        anonymous_id: anonymous_id.filter(|_| consent),
        user_id: user_id.filter(|_| consent),
        email: email.clone().filter(|_| consent),
        page_url: if consent { page_url } else { page_url.map(|u| campaign_url(&u)) },
        sku,
        product_name,
        category: prop("category")?,
        quantity: whole(properties.get("quantity"), "properties.quantity")?,
        price: amount(properties.get("price"), "properties.price")?,
        currency: currency(properties.get("currency"))?,
        order_id: prop("order_id")?,
        revenue: amount(properties.get("revenue"), "properties.revenue")?,
        email_opt_in: email_opt_in.filter(|_| consent && email.is_some()),
        consent,
    };
    Ok(line)
}

/// A member that must be an object when present.
fn object<'a>(event: &'a Map<String, Value>, name: &str) -> Result<Option<&'a Map<String, Value>>, String> {
    match event.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(format!("{name} is not an object")),
    }
}

/// A track event's name, normalised to lower snake case.
fn event_name(value: Option<&Value>) -> Result<String, String> {
    let raw = match value {
        Some(Value::String(s)) => s.trim(),
        None | Some(Value::Null) => return Err("event is missing on a track call".into()),
        Some(_) => return Err("event is not a string".into()),
    };
    let count = raw.chars().count();
    if count == 0 || count > MAX_EVENT_NAME_CHARS {
        return Err(format!("event must be 1 to {MAX_EVENT_NAME_CHARS} characters"));
    }
    if let Some(c) = raw.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | ' ' | '.' | '-'))) {
        return Err(format!("event {raw:?} has {c:?}: only letters, digits, _, space, . and - are allowed"));
    }
    let mut out = String::with_capacity(raw.len() + 4);
    let mut previous: Option<char> = None;
    for c in raw.chars() {
        if c.is_ascii_uppercase() && previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit()) {
            out.push('_');
        }
        match c {
            ' ' | '.' | '-' | '_' => {
                if !out.is_empty() && !out.ends_with('_') {
                    out.push('_');
                }
            }
            c => out.push(c.to_ascii_lowercase()),
        }
        previous = Some(c);
    }
    let out = out.trim_end_matches('_').to_string();
    if out.is_empty() {
        return Err(format!("event {raw:?} has no letter or digit"));
    }
    Ok(out)
}

/// A text value: a string (trimmed; blank is none) or a number.
fn text(value: Option<&Value>, name: &str) -> Result<Option<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_string)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

fn timestamp(value: Option<&Value>, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let raw = match value {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => return Err("timestamp is missing".into()),
        Some(_) => return Err("timestamp is not an RFC 3339 string".into()),
    };
    let at = DateTime::parse_from_rfc3339(raw.trim()).map_err(|_| format!("timestamp {raw:?} is not RFC 3339"))?.with_timezone(&Utc);
    if at < now - MAX_PAST || at > now + MAX_FUTURE {
        return Err(format!(
            "timestamp {raw:?} is outside the accepted window ({} days before the time received, {} minutes after)",
            MAX_PAST.num_days(),
            MAX_FUTURE.num_minutes()
        ));
    }
    Ok(at)
}

/// A whole number (a JSON integer or a string of digits).
fn whole(value: Option<&Value>, name: &str) -> Result<Option<i64>, String> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| format!("{name} {n} is not a whole number")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| format!("{name} {s:?} is not a whole number")),
        Some(_) => Err(format!("{name} is not a number")),
    }
}

/// An amount in major units as a decimal string with two decimals (`12.5` → `"12.50"`).
/// A JSON number may carry binary noise (`59.970000000000006`): it is rounded to the
/// cent when within a millionth of one; a string must have at most two decimals.
fn amount(value: Option<&Value>, name: &str) -> Result<Option<String>, String> {
    let minor = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => i.checked_mul(100),
            None => n.as_f64().and_then(|f| {
                let cents = (f * 100.0).round();
                ((f * 100.0 - cents).abs() < 1e-4 && cents.abs() < 9e15).then_some(cents as i64)
            }),
        },
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => decimal_minor(s.trim()),
        Some(_) => None,
    };
    let minor = minor.ok_or_else(|| format!("{name} {} is not an amount with at most two decimals", value.unwrap_or(&Value::Null)))?;
    let sign = if minor < 0 { "-" } else { "" };
    Ok(Some(format!("{sign}{}.{:02}", minor.unsigned_abs() / 100, minor.unsigned_abs() % 100)))
}

/// `"12.5"` → 1250; `None` for anything but digits with at most two decimals.
fn decimal_minor(s: &str) -> Option<i64> {
    let (negative, digits) = s.strip_prefix('-').map_or((false, s), |rest| (true, rest));
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let valid = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 2
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(digits.contains('.') && frac.is_empty());
    if !valid {
        return None;
    }
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    let minor = int.parse::<i64>().ok()?.checked_mul(100)?.checked_add(frac)?;
    Some(if negative { -minor } else { minor })
}

fn currency(value: Option<&Value>) -> Result<Option<String>, String> {
    match text(value, "properties.currency")? {
        None => Ok(None),
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => Ok(Some(c.to_ascii_uppercase())),
        Some(c) => Err(format!("properties.currency {c:?} is not a three-letter ISO 4217 code")),
    }
}

/// A page URL of an event without consent: no fragment, no `user:password@`, and of the
/// query only the campaign parameters ([`CAMPAIGN_PARAMETERS`]), by the lake's own rule.
pub fn campaign_url(url: &str) -> String {
    ariane_shared::urls::strip_url(url, CAMPAIGN_PARAMETERS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-12T17:00:00Z".parse().unwrap()
    }

    fn line(event: Value) -> Result<Line, String> {
        normalise(&event, "website", now(), "2026-11-12T17:00:00.000Z")
    }

    #[test]
    fn names_are_snake_cased() {
        for (raw, want) in [
            ("add_to_cart", "add_to_cart"),
            ("Add To Cart", "add_to_cart"),
            ("addToCart", "add_to_cart"),
            ("Product Viewed", "product_viewed"),
            ("checkout.started", "checkout_started"),
            ("ADD_TO_CART", "add_to_cart"),
            ("step2Done", "step2_done"),
            (" sign-up ", "sign_up"),
        ] {
            assert_eq!(event_name(Some(&json!(raw))).unwrap(), want, "{raw}");
        }
        assert!(event_name(Some(&json!("café"))).unwrap_err().contains("only letters"));
        assert!(event_name(Some(&json!("a".repeat(65)))).is_err());
        assert!(event_name(Some(&json!("__"))).is_err());
        assert!(event_name(None).is_err());
    }

    #[test]
    fn amounts_are_exact() {
        let a = |v: Value| amount(Some(&v), "p");
        assert_eq!(a(json!(12.5)).unwrap().unwrap(), "12.50");
        assert_eq!(a(json!(7)).unwrap().unwrap(), "7.00");
        assert_eq!(a(json!(3.0 * 19.99)).unwrap().unwrap(), "59.97");
        assert_eq!(a(json!("0.05")).unwrap().unwrap(), "0.05");
        assert_eq!(a(json!("-3.5")).unwrap().unwrap(), "-3.50");
        assert!(a(json!("12.345")).is_err());
        assert!(a(json!(12.345)).is_err());
        assert!(a(json!("12,50")).is_err());
        assert!(a(json!(true)).is_err());
        assert_eq!(a(json!(null)).unwrap(), None);
    }

    #[test]
    fn an_event_is_flattened() {
        let l = line(json!({
            "type": "track", "event": "Add To Cart", "messageId": "m1", "anonymousId": "c-1", "userId": 42,
            "timestamp": "2026-11-12T17:30:00.5+01:00",
            "properties": {"product_id": "SKU-1", "name": "Bonnet", "category": "hats", "quantity": "2", "price": 4, "currency": "eur", "email": "A@B.example"},
            "context": {"consent": {"personalization": true}, "page": {"url": "https://shop.example/p?q=1"}}
        }))
        .unwrap();
        assert_eq!((l.event.as_str(), l.timestamp.as_str()), ("add_to_cart", "2026-11-12T16:30:00.500Z"));
        assert_eq!((l.anonymous_id.as_deref(), l.user_id.as_deref(), l.email.as_deref()), (Some("c-1"), Some("42"), Some("A@B.example")));
        assert_eq!((l.sku.as_deref(), l.product_name.as_deref(), l.quantity), (Some("SKU-1"), Some("Bonnet"), Some(2)));
        assert_eq!((l.price.as_deref(), l.currency.as_deref(), l.consent), (Some("4.00"), Some("EUR"), true));
        assert_eq!(l.page_url.as_deref(), Some("https://shop.example/p?q=1"));
    }

    #[test]
    fn without_consent_the_person_is_dropped() {
        let l = line(json!({
            "type": "identify", "messageId": "m1", "anonymousId": "c-1", "userId": "u-1", "timestamp": "2026-11-12T16:00:00Z",
            "traits": {"email": "a@b.example", "name": "Marie"},
            "properties": {"name": "Marie", "url": "https://u:p@shop.example/x?email=a%40b.example&utm_source=nl#top"},
            "context": {"consent": {"personalization": false}}
        }))
        .unwrap();
        assert_eq!((l.anonymous_id, l.user_id, l.email, l.product_name, l.consent), (None, None, None, None, false));
        assert_eq!(l.page_url.as_deref(), Some("https://shop.example/x?utm_source=nl"));
        // No consent, no id needed.
        assert!(line(json!({"type": "page", "messageId": "m", "timestamp": "2026-11-12T16:00:00Z"})).is_ok());
    }

    #[test]
    fn bad_events_say_why() {
        let err = |e: Value| line(e).unwrap_err();
        let ok = json!({"type": "page", "messageId": "m", "timestamp": "2026-11-12T16:00:00Z", "anonymousId": "c", "context": {"consent": {"personalization": true}}});
        let with = |k: &str, v: Value| {
            let mut e = ok.clone();
            e[k] = v;
            e
        };
        assert!(line(ok.clone()).is_ok());
        assert!(err(with("type", json!("alias"))).contains("not track, page, screen or identify"));
        assert!(err(with("type", json!("track"))).contains("event is missing"));
        assert!(err(with("messageId", json!(""))).contains("messageId is missing"));
        assert!(err(with("messageId", json!("x".repeat(129)))).contains("longer than 128"));
        assert!(err(with("timestamp", json!("yesterday"))).contains("not RFC 3339"));
        assert!(err(with("timestamp", json!("2026-11-04T16:00:00Z"))).contains("outside the accepted window"));
        assert!(err(with("timestamp", json!("2026-11-12T17:11:00Z"))).contains("outside the accepted window"));
        assert!(line(with("timestamp", json!("2026-11-12T17:09:00Z"))).is_ok());
        assert!(err(with("anonymousId", json!(null))).contains("anonymousId or userId"));
        assert!(err(with("properties", json!({"quantity": 1.5}))).contains("not a whole number"));
        assert!(err(with("properties", json!({"currency": "euro"}))).contains("ISO 4217"));
        assert!(err(with("context", json!([]))).contains("context is not an object"));
    }
}
