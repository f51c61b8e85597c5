//! Identifier normalisation and pseudonymisation.
//!
//! Clear identifiers travel only to the identity step (and live in DynamoDB). Everywhere
//! else an identifier is a keyed hash ([`identifier_hash`], [`identity_key`]):
//! HMAC-SHA-256 under the deployment's secret [`Pepper`] (a Secrets Manager secret read at
//! cold start), so that a phone number's hash cannot be reversed by hashing the whole
//! numbering plan. The same keyed hash names an identifier's DynamoDB item, its history
//! records and the events' `email_hash` / `phone_hash`. The plain SHA-256 ad platforms
//! require ([`sha256_hex`]) is computed only by activation, at send time, into audience
//! files.

use std::sync::OnceLock;

use hmac::{Hmac, Mac};
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

    /// The keyed hash that stands for this identifier outside DynamoDB's clear items.
    pub fn hash(&self) -> String {
        identifier_hash(self.kind, &self.value)
    }
}

/// The secret key of the lake's hashes (at least 32 bytes). Its `Debug` never shows it.
#[derive(Clone)]
pub struct Pepper {
    bytes: Vec<u8>,
    /// HMAC keyed once: every hash clones this state instead of keying again (two
    /// SHA-256 blocks saved per identifier and per row in ingest).
    keyed: Hmac<Sha256>,
}

impl PartialEq for Pepper {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Pepper {}

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pepper({} bytes)", self.bytes.len())
    }
}

/// Shortest accepted pepper.
pub const PEPPER_MIN_BYTES: usize = 32;

/// The pepper of local stacks, tests and the demo (`ariane-local` writes it into the
/// local stack's secret): never a deployed one, whose value Secrets Manager generates.
pub const DEVELOPMENT_PEPPER: &str = "ariane-development-pepper-for-local-stacks-only";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PepperError {
    #[error("the lake pepper is {0} bytes; at least {PEPPER_MIN_BYTES} are needed")]
    TooShort(usize),
    #[error("a different lake pepper is already in use in this process")]
    Conflict,
}

impl Pepper {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Pepper, PepperError> {
        let bytes = bytes.into();
        if bytes.len() < PEPPER_MIN_BYTES {
            return Err(PepperError::TooShort(bytes.len()));
        }
        Ok(Pepper::keyed(bytes))
    }

    fn keyed(bytes: Vec<u8>) -> Pepper {
        // HMAC takes a key of any length.
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&bytes).unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        Pepper { bytes, keyed }
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.keyed.clone()
    }
}

static PEPPER: OnceLock<Pepper> = OnceLock::new();

/// Sets the process's lake pepper (each function does at cold start, before it hashes
/// anything). Installing the same pepper again is a no-op; a different one is refused.
pub fn install_pepper(pepper: Pepper) -> Result<(), PepperError> {
    let installed = PEPPER.get_or_init(|| pepper.clone());
    if *installed == pepper {
        Ok(())
    } else {
        Err(PepperError::Conflict)
    }
}

/// The process's pepper: the installed one, else [`DEVELOPMENT_PEPPER`] (tests and local
/// tools, which never install one; deployed functions require theirs to start).
fn pepper() -> &'static Pepper {
    PEPPER.get_or_init(|| Pepper::keyed(DEVELOPMENT_PEPPER.as_bytes().to_vec()))
}

/// The keyed hash of a normalised identifier value (HMAC-SHA-256 of `kind:value` under
/// the pepper, 64 hex digits): the events' `email_hash` and `phone_hash`, the key of the
/// identifier's DynamoDB item, the identifiers of identity's history records.
pub fn identifier_hash(kind: IdentifierKind, value: &str) -> String {
    let mut mac = pepper().mac();
    mac.update(kind.as_str().as_bytes());
    mac.update(b":");
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
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
///
/// Unkeyed: anyone can recompute it from the parts, so it is only for parts that carry no
/// personal data (a file's entity tag, pseudonymous ids, names of segments and runs). The
/// id of a lake row, whose parts are the row's content, is a [`keyed_id`].
pub fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// A short id (hex, 32 chars) of parts that may carry personal data (a row's natural key
/// can hold an e-mail address): HMAC-SHA-256 under the process's pepper of the parts, each
/// length-prefixed, like [`stable_id`]'s. Without the pepper it can neither be recomputed
/// nor reversed by hashing candidate values. The ids of the lake's events and observations.
pub fn keyed_id<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    keyed_id_with(pepper(), parts)
}

/// [`keyed_id`] under a given pepper.
pub fn keyed_id_with<'a>(pepper: &Pepper, parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut mac = pepper.mac();
    // Domain separation from the other keyed hashes ([`identifier_hash`], [`identity_key`]).
    mac.update(b"row-id");
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p.as_bytes());
    }
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// The identity key of a source row: a stable pseudonymous id of its whole identifier
/// set (order and duplicates do not matter), keyed with the pepper (HMAC-SHA-256,
/// 32 hex digits). Events carry it in `anchor_id`; identity links each key to the profile
/// its identifier set resolves to.
pub fn identity_key(identifiers: &[Identifier]) -> Option<String> {
    let mut parts: Vec<(IdentifierKind, &str)> = identifiers.iter().map(|i| (i.kind, i.value.as_str())).collect();
    if parts.is_empty() {
        return None;
    }
    parts.sort_unstable();
    parts.dedup();
    let mut mac = pepper().mac();
    mac.update(b"identity-key");
    for (kind, value) in parts {
        for p in [kind.as_str(), value] {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p.as_bytes());
        }
    }
    Some(hex::encode(&mac.finalize().into_bytes()[..16]))
}

/// Why an identifier was not usable. The messages never quote the value: they end up
/// in the lake's rejects and in logs, which carry no clear identifier (the line number
/// and the shape of the problem are enough to find it in the source file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("email is empty")]
    EmptyEmail,
    #[error("email is not a valid address ({why}; {chars} characters)")]
    InvalidEmail { why: &'static str, chars: usize },
    #[error("not a valid phone number ({digits} digits)")]
    InvalidPhone { digits: usize },
    #[error("{kind} is empty")]
    Empty { kind: IdentifierKind },
    #[error("{kind} contains a control character")]
    ControlCharacter { kind: IdentifierKind },
}

impl IdentifierError {
    /// A phone value that is not a number, described without quoting it.
    pub fn invalid_phone(raw: &str) -> Self {
        IdentifierError::InvalidPhone { digits: raw.chars().filter(char::is_ascii_digit).count() }
    }
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
        return Err(IdentifierError::ControlCharacter { kind });
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
    Err(IdentifierError::invalid_phone(raw))
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
    let chars = email.chars().count();
    let invalid = |why: &'static str| IdentifierError::InvalidEmail { why, chars };
    let (local, domain) = email.split_once('@').ok_or_else(|| invalid("no @"))?;
    let bad_char = |c: char| c.is_whitespace() || c.is_control() || c == '@' || c == ',' || c == ';';
    if local.is_empty()
        || local.len() > 64
        || local.chars().any(bad_char)
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return Err(invalid("the part before @ is not valid"));
    }
    if domain.len() > 253 || domain.chars().any(bad_char) {
        return Err(invalid("the domain is not valid"));
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2
        || labels.iter().any(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-'))
        || labels.last().is_some_and(|tld| tld.len() < 2 || tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(invalid("the domain is not valid"));
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
    fn bad_emails_are_rejected_without_quoting_the_value() {
        for bad in ["marie", "marie@", "@gmail.com", "marie@gmail", "ma rie@gmail.com", "a@@b.fr", "a..b@x.fr", "a@b.12"] {
            let err = normalize_email(bad).unwrap_err();
            assert!(matches!(err, IdentifierError::InvalidEmail { .. }), "{bad}: {err}");
            assert!(bad.trim().is_empty() || !err.to_string().contains(bad.trim()), "the reason quotes the value: {err}");
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
            let err = normalize_phone(raw, fr).unwrap_err();
            assert!(matches!(err, IdentifierError::InvalidPhone { .. }), "{raw}");
            assert!(raw.trim().len() < 3 || !err.to_string().contains(raw.trim()), "the reason quotes the value: {err}");
        }
        let mut cached = PhoneNormalizer::default();
        assert_eq!(cached.normalize("06 12 34 56 78", fr).as_deref(), Some("+33612345678"));
        assert_eq!(cached.normalize("06 12 34 56 78", fr).as_deref(), Some("+33612345678"));
        assert_eq!(cached.normalize("12", fr), None);
    }

    #[test]
    fn lake_hashes_are_keyed_with_the_pepper() {
        let phone = "+33612345678";
        let keyed = identifier_hash(IdentifierKind::Phone, phone);
        assert_eq!(keyed.len(), 64);
        // Not the plain digest an enumeration of the numbering plan would find.
        assert_ne!(keyed, sha256_hex(phone));
        assert_ne!(keyed, sha256_hex(&format!("phone:{phone}")));
        // HMAC-SHA-256 (RFC 2104) under the development pepper, computed independently.
        let mut key = [0u8; 64];
        key[..DEVELOPMENT_PEPPER.len()].copy_from_slice(DEVELOPMENT_PEPPER.as_bytes());
        let pad = |b: u8| key.iter().map(|k| k ^ b).collect::<Vec<u8>>();
        let inner = Sha256::new().chain_update(pad(0x36)).chain_update(b"phone:+33612345678").finalize();
        let outer = Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize();
        assert_eq!(keyed, hex::encode(outer));
        let key = identity_key(&[Identifier::new(IdentifierKind::Phone, phone)]).unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(install_pepper(Pepper::new(DEVELOPMENT_PEPPER.as_bytes()).unwrap()), Ok(()), "the same pepper again");
        assert_eq!(install_pepper(Pepper::new(vec![7u8; 32]).unwrap()), Err(PepperError::Conflict));
        assert_eq!(Pepper::new(vec![1u8; 31]), Err(PepperError::TooShort(31)));
        assert_eq!(format!("{:?}", Pepper::new(vec![1u8; 40]).unwrap()), "Pepper(40 bytes)");
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

    #[test]
    fn keyed_ids_depend_on_the_pepper_and_are_not_the_unkeyed_hash() {
        let parts = ["event", "email", "email_open", "key", "C-11", "marie@x.fr"];
        let id = keyed_id(parts);
        assert_eq!(id.len(), 32);
        assert_eq!(id, keyed_id_with(&Pepper::new(DEVELOPMENT_PEPPER.as_bytes()).unwrap(), parts), "the process's pepper");
        assert_ne!(id, keyed_id_with(&Pepper::new(vec![7u8; 32]).unwrap(), parts), "another pepper, another id");
        assert_ne!(id, stable_id(&parts), "not recomputable without the pepper");
        assert_ne!(keyed_id(["ab", "c"]), keyed_id(["a", "bc"]));
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
