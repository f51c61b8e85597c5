//! Who is calling: a server with its key (`x-api-key`), or a page with a browser token
//! (`Authorization: Bearer`, [`crate::token`]); and which page origins CORS allows.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ApiClient;
use crate::token::{verify_token, Claims, TokenError};

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A server-side client, by its configured name.
    Server { client: String },
    /// A page, with the token its site's backend issued.
    Browser { claims: Claims },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no x-api-key nor bearer token")]
    Missing,
    #[error("unknown API key")]
    UnknownKey,
    #[error(transparent)]
    Token(#[from] TokenError),
}

struct Client {
    name: String,
    key_sha256: [u8; 32],
    origins: Vec<String>,
}

/// The configured clients and the token secret.
pub struct Authenticator {
    clients: Vec<Client>,
    token_secret: Vec<u8>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.clients.iter().map(|c| c.name.as_str()).collect();
        write!(f, "Authenticator {{ clients: {names:?}, token_secret: {} bytes }}", self.token_secret.len())
    }
}

impl Authenticator {
    /// Clients as configured (their `key_sha256` checked by [`crate::config`]).
    pub fn new(clients: &[ApiClient], token_secret: Vec<u8>) -> Authenticator {
        let clients = clients
            .iter()
            .map(|c| {
                // 64 hex digits (checked at configuration); no key hashes to all zeros.
                let key_sha256 = hex::decode(&c.key_sha256).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).unwrap_or([0u8; 32]);
                Client { name: c.client.clone(), key_sha256, origins: c.origins.clone() }
            })
            .collect();
        Authenticator { clients, token_secret }
    }

    /// The caller of a request with these (lower-case) header values: `x-api-key` first,
    /// else a bearer token.
    pub fn authenticate(&self, api_key: Option<&str>, authorization: Option<&str>, now: DateTime<Utc>) -> Result<Caller, AuthError> {
        if let Some(key) = api_key {
            let presented: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
            // Every client is compared, in constant time, whichever matches.
            let mut found = None;
            for c in &self.clients {
                if bool::from(c.key_sha256.ct_eq(&presented)) {
                    found = Some(c.name.clone());
                }
            }
            return found.map(|client| Caller::Server { client }).ok_or(AuthError::UnknownKey);
        }
        let token = authorization
            .and_then(|a| a.trim().strip_prefix("Bearer ").or_else(|| a.trim().strip_prefix("bearer ")))
            .ok_or(AuthError::Missing)?;
        Ok(Caller::Browser { claims: verify_token(&self.token_secret, token, now)? })
    }

    /// Whether a page at `origin` may read the answer: a server client's own origins, or
    /// (a browser token, a preflight, an unauthenticated answer) any client's.
    pub fn allows_origin(&self, caller: Option<&Caller>, origin: &str) -> bool {
        match caller {
            Some(Caller::Server { client }) => self.clients.iter().any(|c| &c.name == client && c.origins.iter().any(|o| o == origin)),
            _ => self.clients.iter().any(|c| c.origins.iter().any(|o| o == origin)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ariane_shared::identifiers::{sha256_hex, IdentifierKind};

    fn auth() -> Authenticator {
        let clients = [
            ApiClient { client: "shop".into(), key_sha256: sha256_hex("shop-key"), origins: vec!["https://shop.example".into()] },
            ApiClient { client: "app".into(), key_sha256: sha256_hex("app-key"), origins: vec![] },
        ];
        Authenticator::new(&clients, b"a-token-secret-of-at-least-32-bytes!".to_vec())
    }

    #[test]
    fn keys_tokens_and_origins() {
        let a = auth();
        let now = Utc::now();
        assert_eq!(a.authenticate(Some("app-key"), None, now), Ok(Caller::Server { client: "app".into() }));
        assert_eq!(a.authenticate(Some("nope"), None, now), Err(AuthError::UnknownKey));
        assert_eq!(a.authenticate(None, None, now), Err(AuthError::Missing));
        assert_eq!(a.authenticate(None, Some("Basic abc"), now), Err(AuthError::Missing));
        let token = crate::token::issue_token(
            b"a-token-secret-of-at-least-32-bytes!",
            IdentifierKind::CookieId,
            "c",
            chrono::Duration::minutes(1),
            now,
        );
        assert!(matches!(a.authenticate(None, Some(&format!("Bearer {token}")), now), Ok(Caller::Browser { .. })));
        assert_eq!(a.authenticate(None, Some("Bearer x.y"), now), Err(AuthError::Token(TokenError::Malformed)));
        let app = Caller::Server { client: "app".into() };
        assert!(!a.allows_origin(Some(&app), "https://shop.example"), "a server client's own origins only");
        assert!(a.allows_origin(None, "https://shop.example"));
        assert!(!a.allows_origin(None, "https://evil.example"));
    }
}
