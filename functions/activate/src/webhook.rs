//! The webhook destination: JSON POST with an `Idempotency-Key` header.

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("webhook unreachable: {0}")]
    Transport(#[from] reqwest::Error),
}

impl WebhookError {
    /// 429 and 5xx and transport failures may succeed later; other 4xx will not.
    pub fn retryable(&self) -> bool {
        match self {
            WebhookError::Status { status, .. } => *status == 429 || *status >= 500,
            WebhookError::Transport(_) => true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Webhook {
    client: reqwest::Client,
    url: String,
}

impl Webhook {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).user_agent("ariane-activate/0.1").build()?;
        Ok(Webhook { client, url: url.to_string() })
    }

    pub async fn post<T: Serialize>(&self, idempotency_key: &str, body: &T) -> Result<u16, WebhookError> {
        let response = self.client.post(&self.url).header("Idempotency-Key", idempotency_key).json(body).send().await?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            Ok(status)
        } else {
            let body = response.text().await.unwrap_or_default().chars().take(300).collect();
            Err(WebhookError::Status { status, body })
        }
    }
}
