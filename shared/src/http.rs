//! The response of a function behind an API Gateway HTTP API (payload format 2.0): the
//! collector's and the profile API's answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An HTTP API v2 response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpResponse {
    pub status_code: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub is_base64_encoded: bool,
}

impl HttpResponse {
    /// A JSON answer, never cached (each is one request's, or one person's).
    pub fn json(status_code: u16, body: &serde_json::Value) -> Self {
        let headers = BTreeMap::from([
            ("content-type".to_string(), "application/json".to_string()),
            ("cache-control".to_string(), "no-store".to_string()),
        ]);
        HttpResponse { status_code, headers, body: body.to_string(), is_base64_encoded: false }
    }

    /// `{"error": message}`.
    pub fn error(status_code: u16, message: impl Into<String>) -> Self {
        Self::json(status_code, &serde_json::json!({ "error": message.into() }))
    }

    /// The same response with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_string(), value.to_string());
        self
    }

    /// The body as JSON (tests).
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_json_and_never_cached() {
        let r = HttpResponse::error(418, "teapot").with_header("vary", "Origin");
        let out = serde_json::to_value(&r).unwrap();
        assert_eq!(out["statusCode"], 418);
        assert_eq!(out["headers"]["cache-control"], "no-store");
        assert_eq!(out["headers"]["vary"], "Origin");
        assert_eq!(r.body_json()["error"], "teapot");
        assert_eq!(out["isBase64Encoded"], false);
    }
}
