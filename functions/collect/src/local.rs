//! A local HTTP front for tests, the demo and load tests: each HTTP/1 request becomes the
//! API Gateway v2 request the handler takes in Lambda ([`to_request`]), and its response
//! is written back. No throttling, no TLS: API Gateway's part is not imitated.

use std::sync::Arc;

use ariane_shared::ports::{BlobStore, Queue};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::api::{base64_encode, HttpRequest, HttpResponse};
use crate::handler::CollectorWith;

/// API Gateway's own payload limit: larger requests never reach the function.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

/// Serves `handler` on `listener` until the task is dropped or aborted.
pub async fn serve<B, Q>(listener: TcpListener, handler: Arc<CollectorWith<B, Q>>)
where
    B: BlobStore + 'static,
    Q: Queue + 'static,
{
    while let Ok((stream, _)) = listener.accept().await {
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, hyper::Error>(answer(req, &handler).await) }
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(error = %e, "local collector connection ended");
            }
        });
    }
}

async fn answer<B: BlobStore, Q: Queue>(req: Request<hyper::body::Incoming>, handler: &CollectorWith<B, Q>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return write(HttpResponse::error(413, "request larger than API Gateway accepts")),
    };
    let headers = parts.headers.iter().filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())));
    let request = to_request(parts.method.as_str(), parts.uri.path(), parts.uri.query().unwrap_or_default(), headers, &body);
    write(handler.handle_http(&request).await)
}

/// The API Gateway v2 request of an HTTP request: header names in lower case (repeated
/// ones joined with commas), a body that is not UTF-8 sent base64-encoded.
pub fn to_request(method: &str, path: &str, query: &str, headers: impl IntoIterator<Item = (String, String)>, body: &[u8]) -> HttpRequest {
    let mut request = HttpRequest::new(method, path);
    request.raw_query_string = query.to_string();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        match request.headers.get_mut(&name) {
            Some(existing) => {
                existing.push(',');
                existing.push_str(&value);
            }
            None => {
                request.headers.insert(name, value);
            }
        }
    }
    if !body.is_empty() {
        match std::str::from_utf8(body) {
            Ok(text) => request.body = Some(text.to_string()),
            Err(_) => {
                request.body = Some(base64_encode(body));
                request.is_base64_encoded = true;
            }
        }
    }
    request
}

fn write(response: HttpResponse) -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = StatusCode::from_u16(response.status_code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (hyper::header::HeaderName::try_from(name), hyper::header::HeaderValue::try_from(value)) {
            out.headers_mut().insert(name, value);
        }
    }
    out
}
