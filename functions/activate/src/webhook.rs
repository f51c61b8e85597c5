//! Webhook destinations: a JSON POST to an ESP, SMS gateway or push provider, signed with
//! HMAC-SHA256 (`X-Ariane-Signature: t=<unix>,v1=<hex>`, see [`crate::signature`]), with
//! an `Idempotency-Key` header, a timeout, and retries with exponential backoff on 429,
//! 5xx and transport errors (honouring `Retry-After` up to a bound).
//!
//! [`Webhooks`] is the port: one signed POST attempt to a named destination.
//! [`HttpWebhooks`] is its adapter over HTTP (reqwest), [`MemWebhooks`] its in-memory
//! adapter, which records what was posted and answers what a test tells it to. The
//! retries are [`deliver`]'s, the same over either adapter.

use std::collections::{BTreeMap, VecDeque};
use std::error::Error as StdError;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ariane_shared::backoff::Backoff;
use serde::Serialize;

use crate::signature::{sign, SIGNATURE_HEADER};

/// What a destination answered to one POST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The `Retry-After` the destination asked for (seconds form), if any.
    pub retry_after: Option<Duration>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why one POST got no answer.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("no destination named {0:?} is configured (WEBHOOK_DESTINATIONS)")]
    Unknown(String),
    #[error("{destination} unreachable: {source}")]
    Transport {
        destination: String,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

/// The port: one signed POST of a JSON `body` to the destination named `destination`,
/// with `idempotency_key` in the `Idempotency-Key` header.
#[async_trait::async_trait]
pub trait Webhooks: Send + Sync {
    async fn post(&self, destination: &str, idempotency_key: &str, body: &[u8]) -> Result<Answer, PostError>;
}

#[async_trait::async_trait]
impl<T: Webhooks + ?Sized> Webhooks for Arc<T> {
    async fn post(&self, destination: &str, idempotency_key: &str, body: &[u8]) -> Result<Answer, PostError> {
        (**self).post(destination, idempotency_key, body).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The status only: a destination's response body is never read, logged or stored
    /// (it may echo the message, the person's address or the destination's credentials).
    #[error("{destination} answered {status} after {attempts} attempt(s)")]
    Status { destination: String, status: u16, attempts: u32 },
    #[error("{destination} unreachable after {attempts} attempt(s): {source}")]
    Transport {
        destination: String,
        attempts: u32,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    #[error("no destination named {0:?} is configured (WEBHOOK_DESTINATIONS)")]
    Unknown(String),
    #[error("cannot encode the request: {0}")]
    Encode(#[from] serde_json::Error),
}

impl WebhookError {
    /// 429, 5xx and transport failures may succeed later; other 4xx will not.
    pub fn retryable(&self) -> bool {
        match self {
            WebhookError::Status { status, .. } => *status == 429 || *status >= 500,
            WebhookError::Transport { .. } => true,
            WebhookError::Unknown(_) | WebhookError::Encode(_) => false,
        }
    }

    /// POST attempts made before giving up (0: none was made).
    pub fn attempts(&self) -> u32 {
        match self {
            WebhookError::Status { attempts, .. } | WebhookError::Transport { attempts, .. } => *attempts,
            WebhookError::Unknown(_) | WebhookError::Encode(_) => 0,
        }
    }
}

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per send within one invocation (the SQS retry comes on top).
    pub attempts: u32,
    /// The first wait (doubled at each retry, with the shared backoff's jitter).
    pub base_delay: Duration,
    /// Longest wait between attempts, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 3, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) }
    }
}

/// A successful delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub status: u16,
    pub attempts: u32,
}

/// POSTs `body` to `destination` through `webhooks`, retrying what may succeed later.
pub async fn deliver<W: Webhooks + ?Sized, T: Serialize>(
    webhooks: &W,
    retry: &RetryPolicy,
    destination: &str,
    idempotency_key: &str,
    body: &T,
) -> Result<Delivered, WebhookError> {
    let bytes = serde_json::to_vec(body)?;
    let backoff = Backoff::new(retry.base_delay, 16);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (error, retry_after) = match webhooks.post(destination, idempotency_key, &bytes).await {
            Ok(answer) if answer.is_success() => return Ok(Delivered { status: answer.status, attempts: attempt }),
            Ok(answer) => (
                WebhookError::Status { destination: destination.to_string(), status: answer.status, attempts: attempt },
                answer.retry_after,
            ),
            Err(PostError::Unknown(name)) => return Err(WebhookError::Unknown(name)),
            Err(PostError::Transport { destination, source }) => (WebhookError::Transport { destination, attempts: attempt, source }, None),
        };
        if !error.retryable() || attempt >= retry.attempts {
            return Err(error);
        }
        let wait = retry_after.unwrap_or_else(|| backoff.delay(attempt - 1)).min(retry.max_delay);
        tracing::info!(destination, attempt, wait_ms = wait.as_millis() as u64, error = %error, "retrying the webhook");
        tokio::time::sleep(wait).await;
    }
}

// ---------------------------------------------------------------------------------------
// HTTP.

/// The destinations over HTTP: each POST signed with the signing key.
#[derive(Clone, Debug)]
pub struct HttpWebhooks {
    client: reqwest::Client,
    urls: BTreeMap<String, String>,
    secret: Vec<u8>,
}

impl HttpWebhooks {
    pub fn new(urls: BTreeMap<String, String>, secret: Vec<u8>, timeout: Duration) -> Result<Self, reqwest::Error> {
        // No redirects: a 3xx is a refusal, never a second POST to another (possibly
        // plain-HTTP) address.
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("ariane-activate/0.1")
            .build()?;
        Ok(HttpWebhooks { client, urls, secret })
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.urls.keys()
    }
}

#[async_trait::async_trait]
impl Webhooks for HttpWebhooks {
    async fn post(&self, destination: &str, idempotency_key: &str, body: &[u8]) -> Result<Answer, PostError> {
        let url = self.urls.get(destination).ok_or_else(|| PostError::Unknown(destination.to_string()))?;
        // Signed with the real time, whatever the handler's clock: receivers check it.
        let signature = sign(&self.secret, chrono::Utc::now().timestamp(), body);
        let response = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("Idempotency-Key", idempotency_key)
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_vec())
            .send()
            .await
            // Without the URL: a destination's URL may carry its credentials.
            .map_err(|source| PostError::Transport { destination: destination.to_string(), source: Box::new(source.without_url()) })?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(Answer { status, retry_after: None });
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // The body is dropped unread (see `WebhookError::Status`).
        Ok(Answer { status, retry_after })
    }
}

// ---------------------------------------------------------------------------------------
// In memory.

/// What [`MemWebhooks`] answers instead of accepting a POST.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An HTTP status (500, 429, 400...).
    Status(u16),
    /// No answer (connection refused, timeout).
    Transport,
}

/// One POST [`MemWebhooks`] received.
#[derive(Clone, Debug, PartialEq)]
pub struct Posted {
    pub destination: String,
    pub idempotency_key: String,
    pub body: serde_json::Value,
    /// The status answered (`None`: a transport failure).
    pub status: Option<u16>,
}

impl Posted {
    pub fn accepted(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("injected transport failure")]
struct InjectedTransportFailure;

/// The destinations in memory: every POST is recorded; by default each is accepted
/// (200), and [`MemWebhooks::refuse`] makes the next ones to a destination fail.
#[derive(Debug, Default)]
pub struct MemWebhooks {
    posts: Mutex<Vec<Posted>>,
    refusals: Mutex<BTreeMap<String, VecDeque<Refusal>>>,
}

/// A poison-tolerant lock for this crate's in-memory state (every update under it is one
/// push, pop or insertion: a poisoned lock is still consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemWebhooks {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `times` POSTs to `destination` are answered with `refusal`.
    pub fn refuse(&self, destination: &str, refusal: Refusal, times: usize) {
        lock(&self.refusals).entry(destination.to_string()).or_default().extend(std::iter::repeat_n(refusal, times));
    }

    /// The destination answers again (the refusals still queued for it are dropped).
    pub fn clear_refusals(&self, destination: &str) {
        lock(&self.refusals).remove(destination);
    }

    /// Every POST received, refused ones included, in order.
    pub fn posts(&self) -> Vec<Posted> {
        lock(&self.posts).clone()
    }

    /// The POSTs accepted, in order.
    pub fn accepted(&self) -> Vec<Posted> {
        self.posts().into_iter().filter(Posted::accepted).collect()
    }
}

#[async_trait::async_trait]
impl Webhooks for MemWebhooks {
    async fn post(&self, destination: &str, idempotency_key: &str, body: &[u8]) -> Result<Answer, PostError> {
        let refusal = lock(&self.refusals).get_mut(destination).and_then(VecDeque::pop_front);
        let status = match refusal {
            None => Some(200),
            Some(Refusal::Status(s)) => Some(s),
            Some(Refusal::Transport) => None,
        };
        let body = serde_json::from_slice(body).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()));
        lock(&self.posts).push(Posted { destination: destination.to_string(), idempotency_key: idempotency_key.to_string(), body, status });
        match status {
            Some(status) => Ok(Answer { status, retry_after: None }),
            None => Err(PostError::Transport { destination: destination.to_string(), source: Box::new(InjectedTransportFailure) }),
        }
    }
}

// ---------------------------------------------------------------------------------------

/// A `WEBHOOK_DESTINATIONS` value that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DestinationsError {
    #[error("{0:?} is not name=url")]
    NotNameUrl(String),
    #[error("destination {name}: {url:?} is not an https:// URL (plain http is allowed for 127.0.0.1 and localhost only, for tests)")]
    NotHttps { name: String, url: String },
    #[error("destination {0} is given twice")]
    Twice(String),
}

/// `http://` to this machine only (`127.0.0.1`, `localhost`, `[::1]`, any port): the local
/// receiver of the tests and the demo.
fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..host_end];
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix("[::1]") {
        Some(port) => return port.is_empty() || port.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok()),
        None => authority.split_once(':').map_or(authority, |(h, _)| h),
    };
    let port_ok = authority.split_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_ok());
    matches!(host, "127.0.0.1" | "localhost") && port_ok
}

/// Parses `WEBHOOK_DESTINATIONS` (`name=url,name=url`): `https://` URLs (plain HTTP only
/// to the loopback address).
pub fn parse_destinations(text: &str) -> Result<BTreeMap<String, String>, DestinationsError> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part.split_once('=').ok_or_else(|| DestinationsError::NotNameUrl(part.to_string()))?;
        let (name, url) = (name.trim(), url.trim());
        if !(url.starts_with("https://") && url.len() > "https://".len() || is_loopback_http(url)) {
            return Err(DestinationsError::NotHttps { name: name.to_string(), url: url.to_string() });
        }
        if out.insert(name.to_string(), url.to_string()).is_some() {
            return Err(DestinationsError::Twice(name.to_string()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse() {
        let d = parse_destinations("esp=https://esp.example/hook, sms-gateway=http://127.0.0.1:9/sms").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d["esp"], "https://esp.example/hook");
        assert_eq!(parse_destinations("esp"), Err(DestinationsError::NotNameUrl("esp".into())));
        assert!(parse_destinations("esp=ftp://x").unwrap_err().to_string().contains("esp"));
        assert_eq!(parse_destinations("a=https://x,a=https://y"), Err(DestinationsError::Twice("a".into())));
    }

    #[test]
    fn destinations_are_https_or_loopback_http() {
        for ok in ["https://esp.example/hook", "http://127.0.0.1:8080/esp", "http://localhost/x", "http://[::1]:9/y", "http://127.0.0.1"] {
            assert!(parse_destinations(&format!("d={ok}")).is_ok(), "{ok}");
        }
        for bad in [
            "http://esp.example/hook",
            "http://127.0.0.1.evil.example/x",
            "http://localhost.evil.example/",
            "http://user@127.0.0.1/",
            "http://127.0.0.1:notaport/",
            "https://",
            "ftp://127.0.0.1/",
        ] {
            let err = parse_destinations(&format!("d={bad}")).expect_err(bad);
            assert!(matches!(err, DestinationsError::NotHttps { .. }), "{bad}: {err}");
        }
    }

    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy { attempts, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(5) }
    }

    #[tokio::test]
    async fn retryable_refusals_are_retried_and_permanent_ones_are_not() {
        let hooks = MemWebhooks::new();
        hooks.refuse("esp", Refusal::Status(500), 1);
        hooks.refuse("esp", Refusal::Transport, 1);
        let body = serde_json::json!({"a": 1});
        let d = deliver(&hooks, &fast(3), "esp", "k1", &body).await.unwrap();
        assert_eq!(d, Delivered { status: 200, attempts: 3 });
        assert_eq!(hooks.posts().len(), 3);
        assert_eq!(hooks.accepted().len(), 1);
        assert!(hooks.posts().iter().all(|p| p.idempotency_key == "k1" && p.body == body));

        hooks.refuse("esp", Refusal::Status(429), 2);
        let e = deliver(&hooks, &fast(2), "esp", "k2", &body).await.unwrap_err();
        assert!(matches!(e, WebhookError::Status { status: 429, attempts: 2, .. }), "{e}");
        assert!(e.retryable());

        hooks.refuse("sms", Refusal::Status(400), 1);
        let e = deliver(&hooks, &fast(3), "sms", "k3", &body).await.unwrap_err();
        assert_eq!(e.attempts(), 1, "a 400 is not retried");
        assert!(!e.retryable());
    }
}
