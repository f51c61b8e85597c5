//! Identifier normalisation and pseudonymisation.
//!
//! Clear identifiers travel only to the identity step (and live in DynamoDB); the lake
//! carries [`identifier_hash`] values, which are SHA-256 digests of the normalised value.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Kinds of identifiers, in resolution priority order (most trusted first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    CustomerId,
    Email,
    Phone,
    LoyaltyCard,
    DeviceId,
    PushToken,
    CookieId,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::CustomerId => "customer_id",
            IdentifierKind::Email => "email",
            IdentifierKind::Phone => "phone",
            IdentifierKind::LoyaltyCard => "loyalty_card",
            IdentifierKind::DeviceId => "device_id",
            IdentifierKind::PushToken => "push_token",
            IdentifierKind::CookieId => "cookie_id",
        }
    }
}

impl std::fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A normalised identifier as observed on one source row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identifier {
    pub kind: IdentifierKind,
    pub value: String,
}

impl Identifier {
    pub fn new(kind: IdentifierKind, value: impl Into<String>) -> Self {
        Identifier { kind, value: value.into() }
    }

    /// The pseudonymous hash that stands for this identifier in the lake.
    pub fn hash(&self) -> String {
        identifier_hash(self.kind, &self.value)
    }
}

/// SHA-256 (hex) of `kind:value`: the lake's pseudonymous form of an identifier.
pub fn identifier_hash(kind: IdentifierKind, value: &str) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_str().as_bytes());
    h.update(b":");
    h.update(value.as_bytes());
    hex::encode(h.finalize())
}

/// Plain SHA-256 (hex) of a value, the form ad platforms expect for customer lists.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A short stable id (hex, 32 chars) from parts joined with a separator that cannot
/// appear in them ambiguously (each part is length-prefixed).
pub fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// The identity key of a source row: a stable pseudonymous id of its whole identifier
/// set (order and duplicates do not matter). Events carry it in `anchor_id`; identity
/// links each key to the profile its identifier set resolves to.
pub fn identity_key(identifiers: &[Identifier]) -> Option<String> {
    let mut parts: Vec<(IdentifierKind, &str)> = identifiers.iter().map(|i| (i.kind, i.value.as_str())).collect();
    if parts.is_empty() {
        return None;
    }
    parts.sort_unstable();
    parts.dedup();
    let mut h = Sha256::new();
    h.update(b"identity-key");
    for (kind, value) in parts {
        for p in [kind.as_str(), value] {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
    }
    Some(hex::encode(&h.finalize()[..16]))
}

/// Why an identifier was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("email is empty")]
    EmptyEmail,
    #[error("email {0:?} is not a valid address")]
    InvalidEmail(String),
}

/// Trims and lowercases an email and checks its syntax (one `@`, a non-empty local part,
/// a dotted domain, no whitespace or control characters).
pub fn normalize_email(raw: &str) -> Result<String, IdentifierError> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err(IdentifierError::EmptyEmail);
    }
    let invalid = || IdentifierError::InvalidEmail(raw.trim().to_string());
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let bad_char = |c: char| c.is_whitespace() || c.is_control() || c == '@' || c == ',' || c == ';';
    if local.is_empty()
        || local.len() > 64
        || domain.len() > 253
        || local.chars().any(bad_char)
        || domain.chars().any(bad_char)
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return Err(invalid());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2
        || labels.iter().any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-'))
        || labels.last().is_some_and(|tld| tld.len() < 2 || tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(invalid());
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(normalize_email("  Marie.Dupont@Gmail.COM ").unwrap(), "marie.dupont@gmail.com");
        assert_eq!(normalize_email("élodie@orange.fr").unwrap(), "élodie@orange.fr");
    }

    #[test]
    fn bad_emails_are_rejected_with_the_value() {
        for bad in ["marie", "marie@", "@gmail.com", "marie@gmail", "ma rie@gmail.com", "a@@b.fr", "a..b@x.fr", "a@b.12"] {
            let err = normalize_email(bad).unwrap_err();
            assert!(matches!(err, IdentifierError::InvalidEmail(_)), "{bad}: {err}");
        }
        assert_eq!(normalize_email("   ").unwrap_err(), IdentifierError::EmptyEmail);
    }

    #[test]
    fn hashes_depend_on_kind_and_value() {
        let a = identifier_hash(IdentifierKind::Email, "a@b.fr");
        assert_eq!(a.len(), 64);
        assert_ne!(a, identifier_hash(IdentifierKind::Phone, "a@b.fr"));
        assert_eq!(sha256_hex("test@example.com"), "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b");
        assert_ne!(stable_id(&["ab", "c"]), stable_id(&["a", "bc"]));
    }

    proptest! {
        #[test]
        fn email_normalisation_is_idempotent(local in "[a-zA-Z0-9._%+-]{1,20}", domain in "[a-zA-Z]{1,10}\\.[a-zA-Z]{2,4}", pad in " {0,3}") {
            let raw = format!("{pad}{local}@{domain}{pad}");
            if let Ok(once) = normalize_email(&raw) {
                prop_assert_eq!(normalize_email(&once).unwrap(), once.clone());
                prop_assert_eq!(once.trim(), once.as_str());
            }
        }

    }
}
