//! A webhook receiver on 127.0.0.1 that records what it is sent. It can be told to
//! answer 500 to the next N requests, to test retries.

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
    pub idempotency_key: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct State {
    accepted: Vec<Delivery>,
    requests: u64,
    fail_next: u64,
}

pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/webhook", listener.local_addr()?);
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
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(req: Request<hyper::body::Incoming>, state: Arc<Mutex<State>>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body = req.into_body().collect().await?.to_bytes();
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let status = match state.lock() {
        Ok(mut s) => {
            s.requests += 1;
            if s.fail_next > 0 {
                s.fail_next -= 1;
                StatusCode::INTERNAL_SERVER_ERROR
            } else if let Ok(body) = parsed {
                s.accepted.push(Delivery { idempotency_key: key, body });
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            }
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = status;
    Ok(response)
}
