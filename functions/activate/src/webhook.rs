//! Webhook destinations: a JSON POST to an ESP, SMS gateway or push provider, signed with
//! HMAC-SHA256 (`X-Ariane-Signature: t=<unix>,v1=<hex>`, see [`crate::signature`]), with
//! an `Idempotency-Key` header, a timeout, and retries with exponential backoff on 429,
//! 5xx and transport errors (honouring `Retry-After` up to a bound).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::signature::{sign, SIGNATURE_HEADER};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{destination} answered {status} after {attempts} attempt(s): {body}")]
    Status { destination: String, status: u16, body: String, attempts: u32 },
    #[error("{destination} unreachable after {attempts} attempt(s): {source}")]
    Transport { destination: String, attempts: u32, source: reqwest::Error },
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
}

#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts per send within one invocation (the SQS retry comes on top).
    pub attempts: u32,
    pub base_delay: Duration,
    /// Longest wait between attempts, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 3, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) }
    }
}

#[derive(Clone, Debug)]
pub struct Destinations {
    client: reqwest::Client,
    urls: BTreeMap<String, String>,
    secret: Vec<u8>,
    pub retry: RetryPolicy,
}

/// A successful delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub status: u16,
    pub attempts: u32,
}

impl Destinations {
    pub fn new(urls: BTreeMap<String, String>, secret: Vec<u8>, timeout: Duration, retry: RetryPolicy) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).user_agent("ariane-activate/0.1").build()?;
        Ok(Destinations { client, urls, secret, retry })
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.urls.keys()
    }

    /// POSTs `body` to `destination`, retrying what may succeed later.
    pub async fn post<T: Serialize>(&self, destination: &str, idempotency_key: &str, body: &T) -> Result<Delivered, WebhookError> {
        let url = self.urls.get(destination).ok_or_else(|| WebhookError::Unknown(destination.to_string()))?;
        let bytes = serde_json::to_vec(body)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let signature = sign(&self.secret, chrono::Utc::now().timestamp(), &bytes);
            let result = self
                .client
                .post(url)
                .header("content-type", "application/json")
                .header("Idempotency-Key", idempotency_key)
                .header(SIGNATURE_HEADER, signature)
                .body(bytes.clone())
                .send()
                .await;
            let (error, retry_after) = match result {
                Ok(response) if response.status().is_success() => {
                    return Ok(Delivered { status: response.status().as_u16(), attempts: attempt })
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body = response.text().await.unwrap_or_default().chars().take(300).collect();
                    (WebhookError::Status { destination: destination.to_string(), status, body, attempts: attempt }, retry_after)
                }
                Err(source) => (WebhookError::Transport { destination: destination.to_string(), attempts: attempt, source }, None),
            };
            if !error.retryable() || attempt >= self.retry.attempts {
                return Err(error);
            }
            let backoff = self.retry.base_delay * 2u32.pow(attempt - 1);
            let wait = retry_after.unwrap_or(backoff).min(self.retry.max_delay);
            tracing::info!(destination, attempt, wait_ms = wait.as_millis() as u64, error = %error, "retrying the webhook");
            tokio::time::sleep(wait).await;
        }
    }
}

/// Parses `WEBHOOK_DESTINATIONS` (`name=url,name=url`).
pub fn parse_destinations(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part.split_once('=').ok_or_else(|| format!("{part:?} is not name=url"))?;
        let (name, url) = (name.trim(), url.trim());
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!("destination {name}: {url:?} is not an http(s) URL"));
        }
        if out.insert(name.to_string(), url.to_string()).is_some() {
            return Err(format!("destination {name} is given twice"));
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
        assert!(parse_destinations("esp").is_err());
        assert!(parse_destinations("esp=ftp://x").unwrap_err().contains("esp"));
        assert!(parse_destinations("a=http://x,a=http://y").is_err());
    }
}
