//! What the purge looks for, and how it recognises it in a value or in raw text.
//!
//! Three kinds of target, from the pending erasure reports (pseudonymous values only):
//! - **row keys**: identity keys (events' `anchor_id`, links' `identifier_hash`) and
//!   profile ids. A row carrying one is the erased person's: the row goes.
//! - **values**: keyed hashes of suppressed identifiers (`email_hash`, `phone_hash`, the
//!   history's identifier hashes). A row carrying one that is not otherwise the person's
//!   (another member of a family that shared the e-mail) keeps the row and loses the value.
//! - **audience hashes**: the plain SHA-256 the ad platforms were sent (from the activation
//!   ledger's memberships): rows of audience files carrying one go.
//!
//! Raw text (landing rows, `rejects/` rows) holds clear values: it is cut into tokens, each
//! normalised as every identifier kind would be and hashed with the deployment's pepper; a
//! token whose keyed hash is a target value is the person's.

use std::collections::HashSet;
use std::ops::Range;

use ariane_shared::erasure::PurgeTargets;
use ariane_shared::identifiers::{identifier_hash, normalize_email, normalize_phone, normalize_token, IdentifierKind};

/// Every kind a token may be (the order only matters for speed: cheap checks first).
const TOKEN_KINDS: &[IdentifierKind] = &[
    IdentifierKind::CustomerId,
    IdentifierKind::LoyaltyCard,
    IdentifierKind::DeviceId,
    IdentifierKind::PushToken,
    IdentifierKind::CookieId,
];

/// What a value is to the purge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    /// The erased person's row: remove it.
    Row,
    /// A suppressed identifier in a row that stays: blank it.
    Value,
}

/// The targets of one purge run, ready for lookups.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    row_keys: HashSet<String>,
    values: HashSet<String>,
    audience: HashSet<String>,
}

impl Matcher {
    pub fn new(targets: &PurgeTargets) -> Self {
        Matcher {
            row_keys: targets.identity_keys.iter().chain(&targets.profile_ids).cloned().collect(),
            values: targets.identifier_hashes.clone().into_iter().collect(),
            audience: HashSet::new(),
        }
    }

    /// Adds the plain SHA-256 of the person's audience memberships.
    pub fn with_audience(mut self, hashes: impl IntoIterator<Item = String>) -> Self {
        self.audience.extend(hashes);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.row_keys.is_empty() && self.values.is_empty() && self.audience.is_empty()
    }

    /// A value of a lake column.
    pub fn value(&self, v: &str) -> Option<Hit> {
        if self.row_keys.contains(v) {
            Some(Hit::Row)
        } else if self.values.contains(v) {
            Some(Hit::Value)
        } else {
            None
        }
    }

    /// A field of an audience file (plain SHA-256).
    pub fn audience_hash(&self, v: &str) -> bool {
        self.audience.contains(v)
    }

    /// Whether a keyed hash is a suppressed identifier.
    pub fn is_value(&self, keyed_hash: &str) -> bool {
        self.values.contains(keyed_hash)
    }

    /// Whether a key is the person's (identity key or profile id).
    pub fn is_row_key(&self, key: &str) -> bool {
        self.row_keys.contains(key)
    }

    /// The byte ranges of `text` holding a suppressed identifier in clear (an e-mail, a
    /// phone number as typed, a customer id, a cookie...). `region` is the phone numbering
    /// region of the source (its spec's `phone_region`).
    pub fn clear_values(&self, text: &[u8], region: phonenumber::country::Id) -> Vec<Range<usize>> {
        if self.values.is_empty() {
            return Vec::new();
        }
        tokens(text).filter(|r| self.token_matches(&text[r.clone()], region)).collect()
    }

    fn token_matches(&self, token: &[u8], region: phonenumber::country::Id) -> bool {
        let Ok(token) = std::str::from_utf8(token) else { return false };
        let hit = |kind: IdentifierKind, v: &str| self.values.contains(&identifier_hash(kind, v));
        if token.contains('@') {
            return normalize_email(token).is_ok_and(|v| hit(IdentifierKind::Email, &v));
        }
        let digits = token.chars().filter(char::is_ascii_digit).count();
        let phone_like = digits >= 6 && token.chars().all(|c| c.is_ascii_digit() || " +-.()/".contains(c));
        if phone_like && normalize_phone(token, region).is_ok_and(|v| hit(IdentifierKind::Phone, &v)) {
            return true;
        }
        TOKEN_KINDS.iter().any(|&kind| normalize_token(kind, token).is_ok_and(|v| hit(kind, &v)))
    }
}

/// The tokens of raw text: runs between field separators, quotes and JSON punctuation,
/// trimmed of spaces (a phone typed `06 12 34 56 78` stays one token).
pub fn tokens(text: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let is_sep =
        |b: u8| matches!(b, b',' | b';' | b'\t' | b'|' | b'"' | b'\'' | b'{' | b'}' | b'[' | b']' | b'\r' | b'\n' | b'=' | b'<' | b'>');
    let mut start = 0usize;
    let mut out = Vec::new();
    for i in 0..=text.len() {
        if i == text.len() || is_sep(text[i]) {
            let mut r = start..i;
            while r.start < r.end && text[r.start].is_ascii_whitespace() {
                r.start += 1;
            }
            while r.end > r.start && text[r.end - 1].is_ascii_whitespace() {
                r.end -= 1;
            }
            // A JSON `"key": value` leaves `: value`.
            if r.start < r.end && text[r.start] == b':' {
                r.start += 1;
                while r.start < r.end && text[r.start].is_ascii_whitespace() {
                    r.start += 1;
                }
            }
            if r.start < r.end {
                out.push(r);
            }
            start = i + 1;
        }
    }
    out.into_iter()
}

/// `text` with every range replaced by nothing (a blanked field keeps its separators).
pub fn blank(text: &[u8], ranges: &[Range<usize>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    for r in ranges {
        out.extend_from_slice(&text[at..r.start]);
        at = r.end;
    }
    out.extend_from_slice(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr() -> phonenumber::country::Id {
        phonenumber::country::Id::FR
    }

    fn matcher(values: &[(IdentifierKind, &str)]) -> Matcher {
        let t = PurgeTargets {
            identifier_hashes: values.iter().map(|(k, v)| identifier_hash(*k, v)).collect(),
            identity_keys: ["anchor-1".to_string()].into(),
            ..PurgeTargets::default()
        };
        Matcher::new(&t)
    }

    #[test]
    fn clear_values_are_found_as_typed_in_csv_and_json() {
        let m = matcher(&[(IdentifierKind::Email, "marie@x.fr"), (IdentifierKind::Phone, "+33612345678")]);
        let csv = b"12;Marie;  Marie@X.fr ;06 12 34 56 78;2026-01-01";
        let found: Vec<&[u8]> = m.clear_values(csv, fr()).into_iter().map(|r| &csv[r]).collect();
        assert_eq!(found, vec![&b"Marie@X.fr"[..], &b"06 12 34 56 78"[..]]);
        let json = br#"{"email": "marie@x.fr","phone":"+33 6 12 34 56 78","n":1}"#;
        assert_eq!(m.clear_values(json, fr()).len(), 2);
        assert_eq!(blank(csv, &m.clear_values(csv, fr())), b"12;Marie;   ;;2026-01-01".to_vec());
        assert!(m.clear_values(b"paul@x.fr;0698765432", fr()).is_empty());
    }

    #[test]
    fn lake_values_are_rows_or_values() {
        let m = matcher(&[(IdentifierKind::Email, "marie@x.fr")]);
        assert_eq!(m.value("anchor-1"), Some(Hit::Row));
        assert_eq!(m.value(&identifier_hash(IdentifierKind::Email, "marie@x.fr")), Some(Hit::Value));
        assert_eq!(m.value("other"), None);
    }
}
