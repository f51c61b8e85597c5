//! The HTTP entry point: `POST /v1/batch` (and its CORS preflight), pure over the queue
//! port. See `docs/collector.md` for what a caller sees.
//!
//! In order: route (404/405), write key (401), origin (403), body size (413), JSON and
//! shape (400), event count and size (413), each event (400 naming its index); then the
//! accepted lines are queued, in one `SendMessageBatch` when they fit (503 if SQS fails:
//! the client retries, and a replay changes nothing since event ids derive from the
//! source and `messageId`).

use ariane_shared::identifiers::sha256_hex;
use ariane_shared::ports::Queue;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::api::{base64_decode, HttpRequest, HttpResponse};
use crate::batch::{parse_batch, MAX_BODY_BYTES};
use crate::config::{CollectConfig, SourceConfig};
use crate::message::{message_bodies, sends};

/// The one route.
pub const BATCH_PATH: &str = "/v1/batch";
/// How long a browser may cache a preflight answer (Chromium caps it at two hours).
pub const PREFLIGHT_MAX_AGE_SECONDS: u32 = 7200;
pub const ALLOW_METHODS: &str = "POST, OPTIONS";
pub const ALLOW_HEADERS: &str = "authorization, content-type, x-write-key";

/// Answers one request; never fails (every error is a JSON `{"error"}` response).
pub async fn handle_http<Q: Queue>(config: &CollectConfig, queue: &Q, req: &HttpRequest, now: DateTime<Utc>) -> HttpResponse {
    let path = req.path();
    // A named stage puts its name first (`/prod/v1/batch`).
    if path != BATCH_PATH && !path.ends_with(BATCH_PATH) {
        return HttpResponse::error(404, format!("no route {path}; events are posted to {BATCH_PATH}"));
    }
    match req.method().to_ascii_uppercase().as_str() {
        "OPTIONS" => preflight(config, req),
        "POST" => post(config, queue, req, now).await,
        other => HttpResponse::error(405, format!("method {other} is not allowed on {BATCH_PATH}")).with_header("allow", ALLOW_METHODS),
    }
}

/// An origin as compared with the configured ones (lower case, no trailing slash).
fn origin_of(req: &HttpRequest) -> Option<String> {
    req.header("origin").map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
}

fn cors(response: HttpResponse, origin: &str) -> HttpResponse {
    response.with_header("access-control-allow-origin", origin).with_header("vary", "Origin")
}

/// The CORS preflight: allowed when the origin is one of any source's (the write key is
/// not sent on a preflight; the POST checks the origin against the key's source).
fn preflight(config: &CollectConfig, req: &HttpRequest) -> HttpResponse {
    let Some(origin) = origin_of(req) else {
        return HttpResponse::error(403, "a preflight needs an Origin header");
    };
    if !config.sources.iter().any(|s| s.origins.contains(&origin)) {
        return HttpResponse::error(403, format!("origin {origin} is not allowed")).with_header("vary", "Origin");
    }
    let response = HttpResponse { status_code: 204, ..Default::default() }
        .with_header("access-control-allow-methods", ALLOW_METHODS)
        .with_header("access-control-allow-headers", ALLOW_HEADERS)
        .with_header("access-control-max-age", &PREFLIGHT_MAX_AGE_SECONDS.to_string());
    cors(response, &origin)
}

/// The write key: `x-write-key`, or `Authorization: Basic base64("<key>:")` (Segment's
/// form: the key as user name, no password).
pub fn write_key(req: &HttpRequest) -> Option<String> {
    if let Some(key) = req.header("x-write-key").map(str::trim).filter(|k| !k.is_empty()) {
        return Some(key.to_string());
    }
    let auth = req.header("authorization")?.trim();
    let (scheme, credentials) = auth.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(credentials.trim())?).ok()?;
    let key = decoded.split_once(':').map_or(decoded.as_str(), |(user, _)| user);
    (!key.is_empty()).then(|| key.to_string())
}

/// The source whose key hash is the key's. Every configured hash is compared, each in
/// constant time, so the answer's timing says nothing about how close a guess was.
pub fn source_of<'a>(sources: &'a [SourceConfig], key: &str) -> Option<&'a SourceConfig> {
    let hash = sha256_hex(key);
    let mut found = None;
    for source in sources {
        if constant_time_eq(hash.as_bytes(), source.key_sha256.as_bytes()) {
            found = Some(source);
        }
    }
    found
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

async fn post<Q: Queue>(config: &CollectConfig, queue: &Q, req: &HttpRequest, now: DateTime<Utc>) -> HttpResponse {
    let origin = origin_of(req);
    let Some(source) = write_key(req).and_then(|key| source_of(&config.sources, &key)) else {
        let response = HttpResponse::error(401, "missing or unknown write key");
        // Let a page of a known origin read why.
        return match origin {
            Some(o) if config.sources.iter().any(|s| s.origins.contains(&o)) => cors(response, &o),
            _ => response,
        };
    };
    if let Some(o) = &origin {
        if !source.origins.contains(o) {
            tracing::warn!(source = %source.source, origin = %o, "origin not allowed for this write key");
            return HttpResponse::error(403, format!("origin {o} is not allowed for this write key")).with_header("vary", "Origin");
        }
    }
    let respond = |response: HttpResponse| match &origin {
        Some(o) => cors(response, o),
        None => response,
    };
    let body = match request_body(req) {
        Ok(body) => body,
        Err(response) => return respond(response),
    };
    let lines = match parse_batch(&body, &source.source, now) {
        Ok(lines) => lines,
        Err(e) => {
            tracing::warn!(source = %source.source, status = e.status(), error = %e, "batch refused");
            ariane_shared::metrics::emit("collect", &[("BatchesRefused", 1.0)]);
            let mut error = json!({ "error": e.to_string() });
            if let Some(index) = e.index() {
                error["index"] = json!(index);
            }
            return respond(HttpResponse::json(e.status(), &error));
        }
    };
    for group in sends(message_bodies(&source.source, &source.channel, &lines)) {
        if let Err(e) = queue.send_all(&config.queue_url, &group).await {
            tracing::error!(source = %source.source, error = %e, retryable = e.retryable(), "the batch could not be queued");
            return respond(HttpResponse::error(503, "the events could not be queued; retry the request").with_header("retry-after", "1"));
        }
    }
    tracing::info!(source = %source.source, channel = %source.channel, accepted = lines.len(), "batch accepted");
    ariane_shared::metrics::emit("collect", &[("EventsAccepted", lines.len() as f64)]);
    respond(HttpResponse::json(200, &json!({ "accepted": lines.len() })))
}

/// The body's bytes, base64-decoded when API Gateway says so, at most
/// [`MAX_BODY_BYTES`].
fn request_body(req: &HttpRequest) -> Result<Vec<u8>, HttpResponse> {
    let raw = req.body.as_deref().unwrap_or_default();
    let too_large = || HttpResponse::error(413, format!("the body is larger than {MAX_BODY_BYTES} bytes"));
    let body = if req.is_base64_encoded {
        if raw.len() > MAX_BODY_BYTES.div_ceil(3) * 4 + 4 {
            return Err(too_large());
        }
        base64_decode(raw.trim()).ok_or_else(|| HttpResponse::error(400, "the body is not valid base64"))?
    } else {
        raw.as_bytes().to_vec()
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(body)
}
