//! `GET /v1/profile?cookie_id=…` (or `device_id=…`, or `customer_id=…`): the person's
//! segments and site attributes. [`ProfileApi::handle`] is the whole request, callable in
//! a loop (benchmarks); [`ProfileApi::handle_at`] takes the clock (tests).
//!
//! Steps: route and method; CORS preflight; the caller ([`Authenticator`]: 401); the
//! page's origin (403); exactly one identifier in the query (400); a browser token must
//! name that identifier (403); the identifier's keyed hash, computed as ingest and
//! identity compute it; then the reads ([`ProfileDirectory`]): the identifier item (404
//! when unknown), the memberships item, and only when the profile has none, its alias.

use std::time::Instant;

use ariane_shared::identifiers::{identifier_hash, normalize_token, IdentifierKind};
use ariane_shared::memberships::Memberships;
use ariane_shared::EnvSource;
use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

use crate::auth::{Authenticator, Caller};
use crate::config::ProfileApiConfig;
use crate::directory::{DirectoryError, DynamoDirectory, ProfileDirectory};
use crate::http::{HttpRequest, HttpResponse};
use crate::token::{subject, MIN_SECRET_BYTES};
use crate::view::ProfileView;

/// The route.
pub const PATH: &str = "/v1/profile";
/// The identifiers a call may name (query parameter = kind).
pub const KINDS: [IdentifierKind; 3] = [IdentifierKind::CookieId, IdentifierKind::DeviceId, IdentifierKind::CustomerId];
/// Aliases followed at most (a merge of a merge...).
const MAX_ALIAS_HOPS: usize = 4;

/// The function over its reads.
#[derive(Debug)]
pub struct ProfileApi<D> {
    pub directory: D,
    pub auth: Authenticator,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ariane_shared::ConfigError),
    #[error("the token secret: {0}")]
    Secret(#[from] ariane_shared::aws::SecretError),
    #[error("the token secret {arn} is {len} bytes; at least {MIN_SECRET_BYTES} are needed")]
    ShortSecret { arn: String, len: usize },
}

impl ProfileApi<DynamoDirectory> {
    /// Cold start: the configuration, the lake pepper (identifier hashes), the token
    /// secret and the DynamoDB client.
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, StartError> {
        let config = ProfileApiConfig::from_env(env)?;
        let sdk = ariane_shared::aws::sdk_config(env).await;
        ariane_shared::aws::install_lake_pepper(env, &sdk).await?;
        let secret = ariane_shared::aws::read_secret(&sdk, &config.token_secret_arn).await?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(StartError::ShortSecret { arn: config.token_secret_arn, len: secret.len() });
        }
        let directory = DynamoDirectory { client: aws_sdk_dynamodb::Client::new(&sdk), table: config.profiles_table.clone() };
        Ok(ProfileApi { directory, auth: Authenticator::new(&config.clients, secret) })
    }
}

/// CORS headers of an answer to a page at `origin`.
fn with_cors(mut response: HttpResponse, origin: Option<&str>) -> HttpResponse {
    if let Some(origin) = origin {
        response.headers.insert("access-control-allow-origin".into(), origin.to_string());
        response.headers.insert("vary".into(), "Origin".into());
    }
    response
}

/// The one identifier of the query, normalised; an error code otherwise.
fn identifier_of(req: &HttpRequest) -> Result<(IdentifierKind, String), &'static str> {
    let named: Vec<(IdentifierKind, String)> =
        req.query().into_iter().filter_map(|(k, v)| KINDS.iter().find(|kind| kind.as_str() == k).map(|kind| (*kind, v))).collect();
    match named.as_slice() {
        [] => Err("missing_identifier"),
        [(kind, value)] => normalize_token(*kind, value).map(|v| (*kind, v)).map_err(|_| "invalid_identifier"),
        _ => Err("one_identifier_only"),
    }
}

impl<D: ProfileDirectory> ProfileApi<D> {
    pub fn new(directory: D, auth: Authenticator) -> Self {
        ProfileApi { directory, auth }
    }

    /// One request, now.
    pub async fn handle(&self, req: &HttpRequest) -> HttpResponse {
        self.handle_at(req, Utc::now()).await
    }

    /// One request at `now` (the clock of token expiry).
    pub async fn handle_at(&self, req: &HttpRequest, now: DateTime<Utc>) -> HttpResponse {
        let started = Instant::now();
        let (response, caller, kind) = self.answer(req, now).await;
        tracing::info!(
            status = response.status_code,
            caller = caller.as_deref().unwrap_or("-"),
            kind = kind.map(IdentifierKind::as_str).unwrap_or("-"),
            micros = started.elapsed().as_micros() as u64,
            "profile call"
        );
        response
    }

    /// The answer, the caller's name (`browser` for a token) and the identifier kind, for
    /// the log line (never a value).
    async fn answer(&self, req: &HttpRequest, now: DateTime<Utc>) -> (HttpResponse, Option<String>, Option<IdentifierKind>) {
        let http = &req.request_context.http;
        let origin = req.header("origin");
        if !http.path.ends_with(PATH) {
            return (HttpResponse::error(404, "not_found"), None, None);
        }
        if http.method.eq_ignore_ascii_case("OPTIONS") {
            return (self.preflight(origin), None, None);
        }
        if !http.method.eq_ignore_ascii_case("GET") {
            let mut r = HttpResponse::error(405, "method_not_allowed");
            r.headers.insert("allow".into(), "GET, OPTIONS".into());
            return (r, None, None);
        }
        let page = origin.filter(|o| self.auth.allows_origin(None, o));
        let caller = match self.auth.authenticate(req.header("x-api-key"), req.header("authorization"), now) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(reason = %e, "refused");
                return (with_cors(HttpResponse::error(401, "unauthorized"), page), None, None);
            }
        };
        let name = match &caller {
            Caller::Server { client } => client.clone(),
            Caller::Browser { .. } => "browser".to_string(),
        };
        let cors = match origin {
            Some(o) if !self.auth.allows_origin(Some(&caller), o) => {
                return (HttpResponse::error(403, "origin_not_allowed"), Some(name), None);
            }
            o => o,
        };
        let (kind, value) = match identifier_of(req) {
            Ok(id) => id,
            Err(code) => return (with_cors(HttpResponse::error(400, code), cors), Some(name), None),
        };
        if let Caller::Browser { claims } = &caller {
            let same = claims.kind == kind && bool::from(claims.sub.as_bytes().ct_eq(subject(kind, &value).as_bytes()));
            if !same {
                return (with_cors(HttpResponse::error(403, "token_for_another_identifier"), cors), Some(name), Some(kind));
            }
        }
        let response = match self.lookup(kind, &value).await {
            Ok(Some(m)) => HttpResponse::json(200, &serde_json::to_value(ProfileView::of(&m)).expect("a view serialises")),
            Ok(None) => HttpResponse::error(404, "unknown"),
            Err(e) => {
                tracing::error!(error = %e, "profile read failed");
                HttpResponse::error(if e.retryable() { 503 } else { 500 }, "unavailable")
            }
        };
        (with_cors(response, cors), Some(name), Some(kind))
    }

    /// The memberships of the person an identifier resolves to (empty for a known person
    /// in no segment); `None` for an unknown (or erased) identifier.
    pub async fn lookup(&self, kind: IdentifierKind, value: &str) -> Result<Option<Memberships>, DirectoryError> {
        let Some(mut pid) = self.directory.profile_of(kind, &identifier_hash(kind, value)).await? else {
            return Ok(None);
        };
        for _ in 0..=MAX_ALIAS_HOPS {
            if let Some(m) = self.directory.memberships(&pid).await? {
                return Ok(Some(m));
            }
            // Identity moves identifier items to the survivor in the transaction of a merge;
            // a large merge applied in chunks may briefly leave one on the merged-away id.
            match self.directory.survivor_of(&pid).await? {
                Some(to) => pid = to,
                None => break,
            }
        }
        Ok(Some(Memberships { profile_id: pid, ..Memberships::default() }))
    }

    /// The answer to a CORS preflight: allowed for a client's origin only.
    fn preflight(&self, origin: Option<&str>) -> HttpResponse {
        match origin.filter(|o| self.auth.allows_origin(None, o)) {
            Some(o) => {
                let mut r = with_cors(
                    HttpResponse { status_code: 204, headers: Default::default(), body: String::new(), is_base64_encoded: false },
                    Some(o),
                );
                r.headers.insert("access-control-allow-methods".into(), "GET, OPTIONS".into());
                r.headers.insert("access-control-allow-headers".into(), "authorization, x-api-key".into());
                r.headers.insert("access-control-max-age".into(), "600".into());
                r
            }
            None => HttpResponse::error(403, "origin_not_allowed"),
        }
    }
}
