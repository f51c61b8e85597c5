//! A webhook receiver on 127.0.0.1 that records what it is sent (path, headers, body).
//! It serves every destination of the stack under its own path (`/esp`, `/sms-gateway`,
//! `/push-provider`, see [`Receiver::destination_params`]) and can be told to answer
//! 500 (or 429 with `Retry-After`) to the next N requests, to test retries.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

/// One accepted delivery.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The destination, from the path (`esp` for `/esp`).
    pub destination: String,
    pub idempotency_key: Option<String>,
    /// The `X-Ariane-Signature` header.
    pub signature: Option<String>,
    /// The raw body (what the signature covers).
    pub raw: Bytes,
    pub body: Value,
}

#[derive(Default)]
struct State {
    accepted: Vec<Delivery>,
    requests: u64,
    fail_next: u64,
    throttle_next: u64,
}

pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, state.clone()));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Receiver { url, state, task })
    }

    /// Deliveries answered 2xx, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().map(|s| s.accepted.clone()).unwrap_or_default()
    }

    /// All requests, including those answered 500.
    pub fn requests(&self) -> u64 {
        self.state.lock().map(|s| s.requests).unwrap_or_default()
    }

    pub fn fail_next(&self, n: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.fail_next = n;
        }
    }

    /// Answers 429 with `Retry-After: 1` to the next `n` requests.
    pub fn throttle_next(&self, n: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.throttle_next = n;
        }
    }

    /// The URL of one destination (`esp`, `sms-gateway`, `push-provider`).
    pub fn destination_url(&self, destination: &str) -> String {
        format!("{}/{destination}", self.url)
    }

    /// The template parameters pointing every destination at this receiver.
    pub fn destination_params(&self) -> Vec<(String, String)> {
        [("EmailWebhookUrl", "esp"), ("SmsWebhookUrl", "sms-gateway"), ("PushWebhookUrl", "push-provider")]
            .into_iter()
            .map(|(param, dest)| (param.to_string(), self.destination_url(dest)))
            .collect()
    }

    /// Forgets what was received.
    pub fn clear(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.accepted.clear();
            s.requests = 0;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(req: Request<hyper::body::Incoming>, state: Arc<Mutex<State>>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let key = header("idempotency-key");
    let signature = header("x-ariane-signature");
    let destination = req.uri().path().trim_matches('/').to_string();
    let raw = req.into_body().collect().await?.to_bytes();
    let parsed: Result<Value, _> = serde_json::from_slice(&raw);
    let mut retry_after = false;
    let status = match state.lock() {
        Ok(mut s) => {
            s.requests += 1;
            if s.fail_next > 0 {
                s.fail_next -= 1;
                StatusCode::INTERNAL_SERVER_ERROR
            } else if s.throttle_next > 0 {
                s.throttle_next -= 1;
                retry_after = true;
                StatusCode::TOO_MANY_REQUESTS
            } else if let Ok(body) = parsed {
                s.accepted.push(Delivery { destination, idempotency_key: key, signature, raw, body });
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            }
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = status;
    if retry_after {
        response.headers_mut().insert("retry-after", hyper::header::HeaderValue::from_static("1"));
    }
    Ok(response)
}
