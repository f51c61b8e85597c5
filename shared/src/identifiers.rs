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
    sha256_hex_bytes(value.as_bytes())
}

/// SHA-256 (64 lowercase hex digits) of bytes.
pub fn sha256_hex_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
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
    #[error("{0:?} is not a valid phone number")]
    InvalidPhone(String),
    #[error("{kind} is empty")]
    Empty { kind: IdentifierKind },
    #[error("{kind} {value:?} contains a control character")]
    ControlCharacter { kind: IdentifierKind, value: String },
}

/// The one normalisation of every identifier kind: what ingest stores, what identity
/// hashes for a lookup, an erasure or a repair, and what activation hashes for ad
/// audiences all go through here, so the same person's value gives the same hash
/// everywhere.
///
/// - `email`: [`normalize_email`] (trimmed, lowercase, syntax checked);
/// - `phone`: [`normalize_phone`] (E.164, national numbers read in `region`);
/// - the others (customer id, loyalty card, device, push token, cookie): trimmed, not
///   empty, no control character; case is kept (a cookie or a push token is case
///   sensitive, and so are the till systems' card numbers).
pub fn normalize(kind: IdentifierKind, raw: &str, region: phonenumber::country::Id) -> Result<String, IdentifierError> {
    match kind {
        IdentifierKind::Email => normalize_email(raw),
        IdentifierKind::Phone => normalize_phone(raw, region),
        _ => normalize_token(kind, raw),
    }
}

/// A normalised [`Identifier`].
pub fn normalized(kind: IdentifierKind, raw: &str, region: phonenumber::country::Id) -> Result<Identifier, IdentifierError> {
    normalize(kind, raw, region).map(|value| Identifier::new(kind, value))
}

/// Trims a token-like identifier and refuses an empty one or one with a control character.
pub fn normalize_token(kind: IdentifierKind, raw: &str) -> Result<String, IdentifierError> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(IdentifierError::Empty { kind });
    }
    if value.chars().any(char::is_control) {
        return Err(IdentifierError::ControlCharacter { kind, value: value.to_string() });
    }
    Ok(value.to_string())
}

/// A phone number in E.164 form (`+33612345678`), parsed with the `phonenumber` crate:
/// national numbers in `region` (`06 12 34 56 78` in France), international ones with
/// `+` or `00`, and numbers written in international form without the `+`
/// (`33612345678`, as SMS gateways export them) when they are not valid in the national
/// plan. Anything else is refused.
pub fn normalize_phone(raw: &str, region: phonenumber::country::Id) -> Result<String, IdentifierError> {
    let valid = |text: &str, region: Option<phonenumber::country::Id>| {
        phonenumber::parse(region, text).ok().filter(phonenumber::is_valid).map(|n| n.format().mode(phonenumber::Mode::E164).to_string())
    };
    if let Some(n) = valid(raw, Some(region)) {
        return Ok(n);
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if !raw.trim_start().starts_with('+') && digits.len() >= 10 && !digits.starts_with('0') {
        if let Some(n) = valid(&format!("+{digits}"), None) {
            return Ok(n);
        }
    }
    Err(IdentifierError::InvalidPhone(raw.trim().to_string()))
}

/// A region code (`"FR"`) as the phone parser needs it.
pub fn phone_region(code: &str) -> Option<phonenumber::country::Id> {
    code.trim().to_ascii_uppercase().parse().ok()
}

/// [`normalize_phone`] remembering recent answers (the same customer's number repeats on
/// every line of a receipt or an order; parsing is the costly part of a till export).
#[derive(Default)]
pub struct PhoneNormalizer {
    cache: std::collections::HashMap<phonenumber::country::Id, std::collections::HashMap<String, Option<String>>>,
}

/// Answers kept per region before the cache starts over.
const PHONE_CACHE: usize = 50_000;

impl PhoneNormalizer {
    /// The E.164 form, or `None` when the value is not a valid number.
    pub fn normalize(&mut self, raw: &str, region: phonenumber::country::Id) -> Option<String> {
        let cache = self.cache.entry(region).or_default();
        if let Some(hit) = cache.get(raw) {
            return hit.clone();
        }
        let result = normalize_phone(raw, region).ok();
        if cache.len() >= PHONE_CACHE {
            cache.clear();
        }
        cache.insert(raw.to_string(), result.clone());
        result
    }
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
    fn phones_to_e164() {
        let fr = phonenumber::country::Id::FR;
        for raw in ["06 12 34 56 78", "0612345678", "+33 6 12 34 56 78", "0033612345678", "33612345678", "+33612345678", " 06.12.34.56.78 "]
        {
            assert_eq!(normalize_phone(raw, fr).as_deref(), Ok("+33612345678"), "{raw}");
        }
        assert_eq!(normalize_phone("+44 20 7946 0958", fr).as_deref(), Ok("+442079460958"));
        for raw in ["12", "06 12", "not a phone", "", "+33 0 00 00 00 00"] {
            assert!(matches!(normalize_phone(raw, fr), Err(IdentifierError::InvalidPhone(_))), "{raw}");
        }
        let mut cached = PhoneNormalizer::default();
        assert_eq!(cached.normalize("06 12 34 56 78", fr).as_deref(), Some("+33612345678"));
        assert_eq!(cached.normalize("06 12 34 56 78", fr).as_deref(), Some("+33612345678"));
        assert_eq!(cached.normalize("12", fr), None);
    }

    #[test]
    fn tokens_are_trimmed_and_keep_their_case() {
        let fr = phonenumber::country::Id::FR;
        assert_eq!(normalize(IdentifierKind::CookieId, " AbC-1 ", fr).unwrap(), "AbC-1");
        assert_eq!(normalize(IdentifierKind::LoyaltyCard, "2900001", fr).unwrap(), "2900001");
        assert_eq!(normalize(IdentifierKind::LoyaltyCard, "  ", fr), Err(IdentifierError::Empty { kind: IdentifierKind::LoyaltyCard }));
        assert!(matches!(normalize(IdentifierKind::CustomerId, "a\u{0}b", fr), Err(IdentifierError::ControlCharacter { .. })));
        assert_eq!(normalize(IdentifierKind::Email, " A@B.fr", fr).unwrap(), "a@b.fr");
        assert_eq!(normalized(IdentifierKind::Phone, "0612345678", fr).unwrap(), Identifier::new(IdentifierKind::Phone, "+33612345678"));
        assert_eq!(phone_region(" fr "), Some(fr));
        assert_eq!(phone_region("XX"), None);
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
