//! The API Gateway HTTP API (payload format 2.0) event and response, only the fields the
//! function uses.

use std::collections::HashMap;

use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRequest {
    #[serde(default)]
    pub request_context: RequestContext,
    /// Header names as API Gateway sends them (lower case).
    #[serde(default)]
    pub headers: Option<HashMap<String, String>>,
    /// Decoded query parameters (repeated ones joined with commas by API Gateway).
    #[serde(default)]
    pub query_string_parameters: Option<HashMap<String, String>>,
    /// The query as sent (preferred: repeated parameters stay apart).
    #[serde(default)]
    pub raw_query_string: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    #[serde(default)]
    pub http: HttpContext,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct HttpContext {
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub path: String,
}

impl HttpRequest {
    /// A request with this method, path and query (tests, benchmarks).
    pub fn new(method: &str, path: &str, query: &str) -> HttpRequest {
        HttpRequest {
            request_context: RequestContext { http: HttpContext { method: method.into(), path: path.into() } },
            headers: Some(HashMap::new()),
            query_string_parameters: None,
            raw_query_string: query.into(),
        }
    }

    /// The same request with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> HttpRequest {
        self.headers.get_or_insert_with(HashMap::new).insert(name.to_ascii_lowercase(), value.into());
        self
    }

    /// A header's value (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every (name, value) of the query: from `rawQueryString`, else the decoded map.
    pub fn query(&self) -> Vec<(String, String)> {
        if !self.raw_query_string.is_empty() {
            return url::form_urlencoded::parse(self.raw_query_string.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        }
        let mut pairs: Vec<(String, String)> = self.query_string_parameters.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
        pairs.sort();
        pairs
    }
}

pub use ariane_shared::http::HttpResponse;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_gateway_event_decodes() {
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "GET /v1/profile",
            "rawPath": "/v1/profile",
            "rawQueryString": "cookie_id=ab%2Bc&x=1",
            "headers": {"x-api-key": "k", "origin": "https://shop.example"},
            "queryStringParameters": {"cookie_id": "ab+c", "x": "1"},
            "requestContext": {"http": {"method": "GET", "path": "/v1/profile", "protocol": "HTTP/1.1"}, "requestId": "r"},
            "isBase64Encoded": false
        });
        let req: HttpRequest = serde_json::from_value(event).unwrap();
        assert_eq!(req.request_context.http.method, "GET");
        assert_eq!(req.header("X-Api-Key"), Some("k"));
        assert_eq!(req.query()[0], ("cookie_id".to_string(), "ab+c".to_string()));
        let bare: HttpRequest = serde_json::from_value(serde_json::json!({"queryStringParameters": {"device_id": "d"}})).unwrap();
        assert_eq!(bare.query(), [("device_id".to_string(), "d".to_string())]);
    }
}
