//! Short-lived browser tokens. The site's backend, which knows the visitor's cookie (or
//! device, or customer id), issues one per page view ([`issue_token`]) with the secret it
//! shares with the API; the page sends it as `Authorization: Bearer <token>` with the
//! same identifier in the query. The token names the identifier by kind and plain
//! SHA-256 of `<kind>:<normalised value>` (no clear value), so it opens that one person's
//! profile, for at most [`MAX_TTL_SECONDS`].
//!
//! `<base64url(claims JSON)>.<base64url(HMAC-SHA256(secret, first part))>`, without
//! padding; claims `{"kind": "cookie_id", "sub": "<64 hex>", "exp": <unix seconds>}`.

use ariane_shared::identifiers::{normalize_token, sha256_hex, IdentifierKind};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Longest life of a token: 15 minutes.
pub const MAX_TTL_SECONDS: i64 = 15 * 60;
/// Clock difference tolerated between the site's backend and the API.
pub const CLOCK_SKEW_SECONDS: i64 = 60;
/// Shortest accepted token secret.
pub const MIN_SECRET_BYTES: usize = 32;

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub kind: IdentifierKind,
    /// [`subject`] of the identifier.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not <claims>.<signature> in base64url")]
    Malformed,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the token lives longer than {MAX_TTL_SECONDS} s")]
    TooLong,
}

/// The token's name of an identifier: plain SHA-256 (hex) of `<kind>:<value>`, the value
/// normalised as ingest does (trimmed).
pub fn subject(kind: IdentifierKind, value: &str) -> String {
    let value = normalize_token(kind, value).unwrap_or_default();
    sha256_hex(&format!("{kind}:{value}"))
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC accepts every key length"))
}

/// A token for the identifier `kind` = `value`, valid from `now` for `ttl` (at most
/// [`MAX_TTL_SECONDS`]; a longer one is shortened, a negative one is already expired).
pub fn issue_token(secret: &[u8], kind: IdentifierKind, value: &str, ttl: Duration, now: DateTime<Utc>) -> String {
    let ttl = ttl.num_seconds().min(MAX_TTL_SECONDS);
    let claims = Claims { kind, sub: subject(kind, value), exp: now.timestamp() + ttl };
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("claims serialise"));
    let mut m = mac(secret);
    m.update(body.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{body}.{signature}")
}

/// The claims of an authentic token that has not expired and lives no longer than
/// [`MAX_TTL_SECONDS`] from `now`. The signature is compared in constant time and checked
/// before anything in the claims is read.
pub fn verify_token(secret: &[u8], token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
    let (body, signature) = token.trim().split_once('.').ok_or(TokenError::Malformed)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
    let mut m = mac(secret);
    m.update(body.as_bytes());
    m.verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
    let claims: Claims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).map_err(|_| TokenError::Malformed)?).map_err(|_| TokenError::Malformed)?;
    let now = now.timestamp();
    if claims.exp <= now - CLOCK_SKEW_SECONDS {
        return Err(TokenError::Expired);
    }
    if claims.exp > now + MAX_TTL_SECONDS + CLOCK_SKEW_SECONDS {
        return Err(TokenError::TooLong);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"a-token-secret-of-at-least-32-bytes!";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let token = issue_token(SECRET, IdentifierKind::CookieId, " ck-1 ", Duration::minutes(5), now());
        let claims = verify_token(SECRET, &token, now()).unwrap();
        assert_eq!(claims.kind, IdentifierKind::CookieId);
        assert_eq!(claims.sub, subject(IdentifierKind::CookieId, "ck-1"), "the value is normalised (trimmed)");
        assert!(!token.contains("ck-1"), "no clear identifier in the token");
        assert!(verify_token(SECRET, &token, now() + Duration::minutes(5)).is_ok(), "within the clock skew");
        assert_eq!(verify_token(SECRET, &token, now() + Duration::minutes(7)), Err(TokenError::Expired));
    }

    #[test]
    fn forged_altered_and_long_lived_tokens_are_refused() {
        let token = issue_token(SECRET, IdentifierKind::CookieId, "ck-1", Duration::minutes(5), now());
        assert_eq!(verify_token(b"another-secret-of-at-least-32-bytes!!", &token, now()), Err(TokenError::BadSignature));
        let (body, sig) = token.split_once('.').unwrap();
        let other = issue_token(SECRET, IdentifierKind::CookieId, "ck-2", Duration::minutes(5), now());
        let other_body = other.split_once('.').unwrap().0;
        assert_eq!(verify_token(SECRET, &format!("{other_body}.{sig}"), now()), Err(TokenError::BadSignature));
        assert_eq!(verify_token(SECRET, body, now()), Err(TokenError::Malformed));
        assert_eq!(verify_token(SECRET, &format!("{body}.!!"), now()), Err(TokenError::Malformed));
        // The issuer caps the life at 15 minutes; a token signed for longer is refused.
        let capped = verify_token(SECRET, &issue_token(SECRET, IdentifierKind::DeviceId, "d", Duration::hours(5), now()), now()).unwrap();
        assert_eq!(capped.exp, now().timestamp() + MAX_TTL_SECONDS);
        let claims = Claims { kind: IdentifierKind::DeviceId, sub: subject(IdentifierKind::DeviceId, "d"), exp: now().timestamp() + 3600 };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let mut m = mac(SECRET);
        m.update(body.as_bytes());
        let long = format!("{body}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()));
        assert_eq!(verify_token(SECRET, &long, now()), Err(TokenError::TooLong));
    }
}
