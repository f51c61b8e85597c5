//! The stack's HTTP APIs, played locally: moto stores an HTTP API and its routes (created
//! by `infra/local/stack.py`) but never invokes the functions behind them, so the runner
//! turns each request into the API Gateway event (payload format 2.0) the route's
//! function receives in AWS, invokes it like any other, and turns its answer back into a
//! response. [`Runner::http`] serves one request in process (tests); [`Gateway`] serves
//! them on 127.0.0.1 (the demo, the load test, a browser).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::runner::Runner;

/// One HTTP request to the stack's APIs.
#[derive(Clone, Debug, Default)]
pub struct HttpCall {
    pub method: String,
    pub path: String,
    /// Without the `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpCall {
    pub fn new(method: &str, path_and_query: &str) -> Self {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        HttpCall { method: method.to_ascii_uppercase(), path: path.to_string(), query: query.to_string(), ..Default::default() }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }
    pub fn json(mut self, body: &Value) -> Self {
        self.body = body.to_string().into_bytes();
        self.header("content-type", "application/json")
    }
}

/// A function's answer, as API Gateway returns it.
#[derive(Clone, Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn not_found() -> Self {
        HttpReply { status: 404, headers: BTreeMap::new(), body: br#"{"message":"Not Found"}"#.to_vec() }
    }
}

/// The route key a request matches (`POST /v1/batch`), and its function, if any.
fn route<'m>(runner: &'m Runner, method: &str, path: &str) -> Option<(String, &'m str)> {
    let key = format!("{method} {path}");
    runner.manifest.http_apis.values().find_map(|api| api.routes.get(&key).map(|f| (key.clone(), f.as_str())))
}

/// The payload-2.0 event API Gateway gives the route's function.
pub fn api_event(route_key: &str, call: &HttpCall) -> Value {
    let mut headers = serde_json::Map::new();
    for (k, v) in &call.headers {
        // API Gateway joins repeated headers with a comma.
        let k = k.to_ascii_lowercase();
        let joined = match headers.get(&k).and_then(Value::as_str) {
            Some(prev) => format!("{prev},{v}"),
            None => v.clone(),
        };
        headers.insert(k, Value::String(joined));
    }
    let mut query = serde_json::Map::new();
    for (k, v) in url::form_urlencoded::parse(call.query.as_bytes()) {
        query.insert(k.into_owned(), Value::String(v.into_owned()));
    }
    let (body, encoded) = match std::str::from_utf8(&call.body) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (ariane_collect::api::base64_encode(&call.body), true),
    };
    let now = Utc::now();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": call.path,
        "rawQueryString": call.query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "http": { "method": call.method, "path": call.path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                      "userAgent": call.headers.iter().find(|(k, _)| k == "user-agent").map(|(_, v)| v.as_str()).unwrap_or("") },
            "requestId": format!("local-{}", now.timestamp_nanos_opt().unwrap_or_default()),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "isBase64Encoded": encoded,
    });
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !call.body.is_empty() {
        event["body"] = Value::String(body);
    }
    event
}

/// A function's answer (payload format 2.0: `statusCode`, `headers`, `body`,
/// `isBase64Encoded`) as the client gets it.
fn reply_of(value: &Value) -> anyhow::Result<HttpReply> {
    let status = value["statusCode"].as_u64().context("the function's answer has no statusCode")? as u16;
    let headers = value["headers"]
        .as_object()
        .map(|h| h.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))).collect())
        .unwrap_or_default();
    let text = value["body"].as_str().unwrap_or_default();
    let body = if value["isBase64Encoded"].as_bool().unwrap_or(false) {
        ariane_collect::api::base64_decode(text).context("the function's body is not base64")?
    } else {
        text.as_bytes().to_vec()
    };
    Ok(HttpReply { status, headers, body })
}

impl Runner {
    /// Serves one request as the stack's HTTP API would: 404 for a route it does not
    /// have, else the route's function's answer (a function that fails is a 500, as
    /// API Gateway answers an integration error).
    pub async fn http(&self, call: &HttpCall) -> anyhow::Result<HttpReply> {
        let Some((key, function)) = route(self, &call.method, &call.path) else { return Ok(HttpReply::not_found()) };
        match self.invoker.invoke(&self.manifest, function, api_event(&key, call)).await {
            Ok(answer) => reply_of(&answer),
            Err(err) => {
                tracing::error!(%function, route = %key, error = %err, "integration error");
                Ok(HttpReply { status: 500, headers: BTreeMap::new(), body: br#"{"message":"Internal Server Error"}"#.to_vec() })
            }
        }
    }
}

/// The stack's HTTP APIs on 127.0.0.1 (one port for every API: routes do not overlap).
pub struct Gateway {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    pub async fn start(runner: Arc<Runner>) -> anyhow::Result<Self> {
        Self::serve(TcpListener::bind("127.0.0.1:0").await?, runner)
    }

    pub fn serve(listener: TcpListener, runner: Arc<Runner>) -> anyhow::Result<Self> {
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let runner = runner.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, runner.clone()));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(Gateway { url, task })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(req: Request<hyper::body::Incoming>, runner: Arc<Runner>) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let mut call = HttpCall::new(parts.method.as_str(), parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    for (k, v) in &parts.headers {
        call.headers.push((k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()));
    }
    call.body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    let reply = runner.http(&call).await.unwrap_or_else(|err| HttpReply {
        status: 502,
        headers: BTreeMap::new(),
        body: json!({ "message": format!("bad integration response: {err}") }).to_string().into_bytes(),
    });
    let mut response = Response::builder().status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY));
    for (k, v) in &reply.headers {
        response = response.header(k, v);
    }
    Ok(response.body(Full::new(Bytes::from(reply.body))).unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_carries_the_request_as_api_gateway_does() {
        let call = HttpCall::new("post", "/v1/profile?cookie_id=ck%201&x=a+b").header("X-Write-Key", "k").header("x-write-key", "j");
        let e = api_event("GET /v1/profile", &call);
        assert_eq!(e["requestContext"]["http"]["method"], "POST");
        assert_eq!(e["rawPath"], "/v1/profile");
        assert_eq!(e["queryStringParameters"]["cookie_id"], "ck 1");
        assert_eq!(e["queryStringParameters"]["x"], "a b");
        assert_eq!(e["headers"]["x-write-key"], "k,j");
        assert!(e.get("body").is_none());
        let binary = HttpCall { body: vec![0xff, 0x00], ..HttpCall::new("POST", "/v1/batch") };
        assert_eq!(api_event("POST /v1/batch", &binary)["isBase64Encoded"], true);
    }

    #[test]
    fn answers_decode() {
        let r =
            reply_of(&json!({"statusCode": 401, "headers": {"Content-Type": "application/json"}, "body": "{\"error\":\"x\"}"})).unwrap();
        assert_eq!((r.status, r.headers["content-type"].as_str(), r.json()["error"].as_str()), (401, "application/json", Some("x")));
        assert!(reply_of(&json!({"body": ""})).is_err());
    }
}
