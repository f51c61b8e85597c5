//! The API Gateway HTTP API (payload format 2.0) request and response, as small serde
//! structs holding only what the collector reads, and the base64 they may carry.

use std::collections::BTreeMap;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// An HTTP API v2 request (`requestContext.http` tells it apart from an SQS batch).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    #[serde(default)]
    pub raw_path: String,
    #[serde(default)]
    pub raw_query_string: String,
    /// Header names in lower case (API Gateway sends them so); repeated headers joined
    /// with commas.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub request_context: RequestContext,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub is_base64_encoded: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    pub http: HttpContext,
    #[serde(default)]
    pub request_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpContext {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub source_ip: Option<String>,
}

impl HttpRequest {
    /// A request as API Gateway would pass it (tests, the local front).
    pub fn new(method: &str, path: &str) -> Self {
        HttpRequest {
            raw_path: path.to_string(),
            request_context: RequestContext {
                http: HttpContext { method: method.to_string(), path: path.to_string(), source_ip: None },
                request_id: None,
            },
            ..Default::default()
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_ascii_lowercase(), value.to_string());
        self
    }

    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// A header's value (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn method(&self) -> &str {
        &self.request_context.http.method
    }

    pub fn path(&self) -> &str {
        if self.request_context.http.path.is_empty() {
            &self.raw_path
        } else {
            &self.request_context.http.path
        }
    }
}

pub use ariane_shared::http::HttpResponse;

/// Standard base64 with padding (what API Gateway and `btoa` write).
pub fn base64_encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Standard or URL-safe base64, padding optional, no white space; `None` when it is not.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const LENIENT: DecodePaddingMode = DecodePaddingMode::Indifferent;
    let standard = GeneralPurpose::new(&alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_padding_mode(LENIENT));
    let url_safe = GeneralPurpose::new(&alphabet::URL_SAFE, GeneralPurposeConfig::new().with_decode_padding_mode(LENIENT));
    standard.decode(text).or_else(|_| url_safe.decode(text)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for text in ["", "f", "fo", "foo", "foob", "fooba", "foobar", "wk_live_123:"] {
            let encoded = base64_encode(text.as_bytes());
            assert_eq!(base64_decode(&encoded).unwrap(), text.as_bytes(), "{encoded}");
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm8").unwrap(), b"fo");
        assert!(base64_decode("Zm9v!").is_none());
        assert!(base64_decode("Z").is_none());
    }

    #[test]
    fn reads_an_api_gateway_event() {
        let raw = serde_json::json!({
            "version": "2.0", "routeKey": "$default", "rawPath": "/v1/batch", "rawQueryString": "",
            "headers": {"content-type": "application/json", "x-write-key": "k"},
            "requestContext": {"http": {"method": "POST", "path": "/v1/batch", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1"}, "requestId": "r1"},
            "body": "{}", "isBase64Encoded": false
        });
        let req: HttpRequest = serde_json::from_value(raw).unwrap();
        assert_eq!((req.method(), req.path(), req.header("X-Write-Key")), ("POST", "/v1/batch", Some("k")));
        let out = serde_json::to_value(HttpResponse::error(400, "bad")).unwrap();
        assert_eq!(out["statusCode"], 400);
        assert_eq!(out["body"], r#"{"error":"bad"}"#);
    }
}
