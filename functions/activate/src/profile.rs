//! The profile as activation reads it at send time: DynamoDB is authoritative for consent
//! and contact details, so every send re-reads the profile (strongly consistent) instead
//! of trusting what the segment run saw.
//!
//! The item is the one identity writes (`PROFILE#<pid>` / `PROFILE`, the profile document
//! as JSON in `doc`, see `functions/identity/src/store.rs`); only the fields activation
//! needs are decoded.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono_tz::Tz;
use serde::Deserialize;

use crate::audience::AudienceMember;
use crate::campaign::Channel;

#[derive(Debug, Default, Deserialize)]
struct Item {
    doc: Doc,
}

#[derive(Debug, Default, Deserialize)]
struct Doc {
    #[serde(default)]
    identifiers: BTreeMap<String, BTreeSet<String>>,
    #[serde(default)]
    traits: BTreeMap<String, TraitValue>,
    #[serde(default)]
    consents: BTreeMap<String, Consent>,
}

#[derive(Debug, Deserialize)]
struct TraitValue {
    value: String,
}

#[derive(Debug, Deserialize)]
struct Consent {
    granted: bool,
}

/// What one send needs to know about a person.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Profile {
    pub profile_id: String,
    /// The most recent e-mail and phone the profile holds (identity's contact traits).
    pub email: Option<String>,
    pub phone: Option<String>,
    pub push_tokens: Vec<String>,
    /// Every e-mail and phone held (ad audiences match on all of them).
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub country: Option<String>,
    pub postal_code: Option<String>,
    /// Latest decision per consent channel (`email`, `sms`, `push`, `ads`); absent when
    /// never stated.
    pub consents: BTreeMap<String, bool>,
}

#[derive(Debug, thiserror::Error)]
#[error("profile item {pk} cannot be read: {reason}")]
pub struct ProfileDecodeError {
    pub pk: String,
    pub reason: String,
}

/// Why a channel cannot be used for a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// No identifier for it (no e-mail, phone or push token).
    Unreachable,
    /// Reachable, but consent is not granted (withdrawn or never given).
    NoConsent,
}

impl Profile {
    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Profile, ProfileDecodeError> {
        let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let err = |reason: String| ProfileDecodeError { pk: pk.clone(), reason };
        let doc_text = item.get("doc").and_then(|v| v.as_s().ok()).ok_or_else(|| err("no doc attribute".into()))?;
        let parsed: Item = serde_json::from_str(doc_text).map_err(|e| err(e.to_string()))?;
        let d = parsed.doc;
        let t = |name: &str| d.traits.get(name).map(|v| v.value.trim().to_string()).filter(|v| !v.is_empty());
        let ids = |kind: &str| d.identifiers.get(kind).map(|s| s.iter().cloned().collect::<Vec<_>>()).unwrap_or_default();
        Ok(Profile {
            profile_id: item
                .get("profile_id")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_else(|| pk.trim_start_matches("PROFILE#").to_string()),
            email: t("email"),
            phone: t("phone"),
            push_tokens: ids("push_token"),
            emails: ids("email"),
            phones: ids("phone"),
            first_name: t("first_name"),
            last_name: t("last_name"),
            country: t("country"),
            postal_code: t("postal_code"),
            consents: d.consents.iter().map(|(k, c)| (k.clone(), c.granted)).collect(),
        })
    }

    fn consent(&self, channel: &str) -> bool {
        self.consents.get(channel).copied().unwrap_or(false)
    }

    /// Whether `channel` may be used: an identifier for it and its consent granted (an
    /// explicit opt-in: a consent never stated is not a consent).
    pub fn usable(&self, channel: Channel) -> Result<(), Unusable> {
        let reachable = match channel {
            Channel::Email => self.email.is_some(),
            Channel::Sms => self.phone.is_some(),
            Channel::Push => !self.push_tokens.is_empty(),
        };
        if !reachable {
            Err(Unusable::Unreachable)
        } else if !self.consent(channel.as_str()) {
            Err(Unusable::NoConsent)
        } else {
            Ok(())
        }
    }

    /// Whether the person agreed to advertising (ad audiences).
    pub fn ads_consent(&self) -> bool {
        self.consent("ads")
    }

    pub fn audience_member(&self) -> AudienceMember {
        AudienceMember { emails: self.emails.clone(), phones: self.phones.clone() }
    }

    /// The person's time zone (overseas postal code, country, phone prefix), else the
    /// brand's.
    pub fn zone(&self, brand: Tz) -> Tz {
        crate::zone::recipient_zone(self.country.as_deref(), self.postal_code.as_deref(), self.phone.as_deref(), brand)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(doc: serde_json::Value) -> HashMap<String, AttributeValue> {
        [
            ("pk".to_string(), AttributeValue::S("PROFILE#p_1".into())),
            ("profile_id".to_string(), AttributeValue::S("p_1".into())),
            ("doc".to_string(), AttributeValue::S(serde_json::json!({ "profile_id": "p_1", "component": "c", "doc": doc }).to_string())),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn decodes_identity_profile_documents() {
        let tv = |v: &str| serde_json::json!({"value": v, "at": "2026-01-01T00:00:00Z", "source": "crm", "observation_id": "o"});
        let c = |g: bool| serde_json::json!({"granted": g, "at": "2026-01-01T00:00:00Z", "source": "crm", "observation_id": "o"});
        let p = Profile::from_item(&item(serde_json::json!({
            "identifiers": {"email": ["a@x.fr", "b@x.fr"], "phone": ["+33612345678"], "push_token": ["tok1"]},
            "traits": {"email": tv("b@x.fr"), "phone": tv("+33612345678"), "first_name": tv("Marie"), "postal_code": tv("97110")},
            "consents": {"email": c(true), "sms": c(false)},
            "channels": ["crm"], "first_seen": null, "last_seen_day": null
        })))
        .unwrap();
        assert_eq!(p.email.as_deref(), Some("b@x.fr"));
        assert_eq!(p.emails.len(), 2);
        assert_eq!(p.usable(Channel::Email), Ok(()));
        assert_eq!(p.usable(Channel::Sms), Err(Unusable::NoConsent));
        assert_eq!(p.usable(Channel::Push), Err(Unusable::NoConsent));
        assert!(!p.ads_consent());
        assert_eq!(p.zone(chrono_tz::Europe::Paris), chrono_tz::America::Guadeloupe);
        let bare = Profile::from_item(&item(serde_json::json!({}))).unwrap();
        assert_eq!(bare.usable(Channel::Email), Err(Unusable::Unreachable));
        assert!(Profile::from_item(&HashMap::new()).is_err());
    }
}
