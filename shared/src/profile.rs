//! The profile item: the one contract between identity, which writes it, and segments and
//! activation, which read it. One DynamoDB item per person in the profiles table:
//!
//! - `pk` = `PROFILE#<profile id>`, `sk` = `PROFILE`, `v` = the item's version;
//! - `doc`: the [`ProfileItem`] as JSON (clear personal data: DynamoDB only);
//! - top-level attributes derived from it, for readers that must not decode the whole
//!   document: `profile_id`, `email`, `phone`, `first_name`, `last_name`, `postal_code`,
//!   `city`, `<channel>_opt_in`, and the pseudonymous summary the segments' snapshot
//!   projects (`id_kinds`, `channels`, `first_seen`, `last_seen_day`, the opt-ins), see
//!   [`SUMMARY_PROJECTION`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::lake::ProfileState;

/// A trait value with its provenance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraitValue {
    pub value: String,
    pub at: DateTime<Utc>,
    /// Source channel.
    pub source: String,
    pub observation_id: String,
}

/// The latest consent decision of one channel, with its provenance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    pub granted: bool,
    pub at: DateTime<Utc>,
    pub source: String,
    pub observation_id: String,
}

/// What is known about a person (a profile) or contributed by one evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileDoc {
    /// kind → clear values (personal data: DynamoDB only).
    #[serde(default)]
    pub identifiers: BTreeMap<String, BTreeSet<String>>,
    #[serde(default)]
    pub traits: BTreeMap<String, TraitValue>,
    /// `email`, `sms`, `push`, `ads`.
    #[serde(default)]
    pub consents: BTreeMap<String, ConsentState>,
    #[serde(default)]
    pub channels: BTreeSet<String>,
    pub first_seen: Option<DateTime<Utc>>,
    /// UTC day of the latest observation (kept per day, so repeated activity within a
    /// day costs no write).
    pub last_seen_day: Option<NaiveDate>,
}

impl ProfileDoc {
    /// The latest decision of a consent channel, if any was stated.
    pub fn consent(&self, channel: &str) -> Option<bool> {
        self.consents.get(channel).map(|c| c.granted)
    }

    pub fn trait_value(&self, name: &str) -> Option<&str> {
        self.traits.get(name).map(|t| t.value.as_str())
    }

    /// The clear values of one identifier kind the profile holds.
    pub fn identifiers_of(&self, kind: &str) -> impl Iterator<Item = &String> {
        self.identifiers.get(kind).into_iter().flatten()
    }
}

/// A profile as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileItem {
    pub profile_id: String,
    /// The identity component holding the profile's evidence.
    pub component: String,
    pub doc: ProfileDoc,
    /// Profile ids merged into this one.
    #[serde(default)]
    pub merged_from: Vec<String>,
}

/// The attributes the segments' profile snapshot reads (never a clear identifier).
pub const SUMMARY_PROJECTION: &str =
    "profile_id, id_kinds, channels, first_seen, last_seen_day, email_opt_in, sms_opt_in, push_opt_in, ads_opt_in";

/// The traits copied to the top level of the item (activation reads contact details
/// from the document; these serve console reads and exports).
const TOP_LEVEL_TRAITS: [&str; 6] = ["email", "phone", "first_name", "last_name", "postal_code", "city"];

/// A profile item that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileItemError {
    #[error("profile item {pk}: no `doc` attribute")]
    NoDocument { pk: String },
    #[error("profile item {pk}: the document is not a profile: {source}")]
    Document {
        pk: String,
        #[source]
        source: serde_json::Error,
    },
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

impl ProfileItem {
    /// `PROFILE#<profile id>`.
    pub fn pk(profile_id: &str) -> String {
        format!("PROFILE#{profile_id}")
    }

    pub const SK: &'static str = "PROFILE";

    /// The whole item as written: keys, version, document and derived attributes.
    pub fn to_attributes(&self, version: u64) -> HashMap<String, AttributeValue> {
        let mut m = HashMap::new();
        m.insert("pk".to_string(), s(Self::pk(&self.profile_id)));
        m.insert("sk".to_string(), s(Self::SK));
        m.insert("v".to_string(), AttributeValue::N(version.to_string()));
        m.insert("doc".to_string(), s(serde_json::to_string(self).expect("a profile serialises")));
        m.insert("profile_id".into(), s(&self.profile_id));
        for name in TOP_LEVEL_TRAITS {
            if let Some(v) = self.doc.trait_value(name) {
                m.insert(name.into(), s(v));
            }
        }
        for (channel, c) in &self.doc.consents {
            m.insert(format!("{channel}_opt_in"), AttributeValue::Bool(c.granted));
        }
        let kinds: Vec<&str> = self.doc.identifiers.keys().map(String::as_str).collect();
        m.insert("id_kinds".into(), s(kinds.join(",")));
        let channels: Vec<&str> = self.doc.channels.iter().map(String::as_str).collect();
        m.insert("channels".into(), s(channels.join(",")));
        if let Some(first) = self.doc.first_seen {
            m.insert("first_seen".into(), s(first.to_rfc3339_opts(SecondsFormat::Micros, true)));
        }
        if let Some(day) = self.doc.last_seen_day {
            m.insert("last_seen_day".into(), s(day.format("%Y-%m-%d").to_string()));
        }
        m
    }

    /// Decodes an item read from the table (its `doc` attribute).
    pub fn from_attributes(attrs: &HashMap<String, AttributeValue>) -> Result<ProfileItem, ProfileItemError> {
        let pk = attrs.get("pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let doc = attrs.get("doc").and_then(|v| v.as_s().ok()).ok_or_else(|| ProfileItemError::NoDocument { pk: pk.clone() })?;
        serde_json::from_str(doc).map_err(|source| ProfileItemError::Document { pk, source })
    }

    /// The pseudonymous summary the segments' snapshot keeps.
    pub fn summary(&self) -> ProfileState {
        let has = |kind: &str| self.doc.identifiers.get(kind).is_some_and(|v| !v.is_empty());
        ProfileState {
            profile_id: self.profile_id.clone(),
            first_seen_at: self.doc.first_seen,
            last_seen_day: self.doc.last_seen_day.map(|d| d.format("%Y-%m-%d").to_string()),
            channels: self.doc.channels.iter().cloned().collect(),
            has_email: has("email"),
            has_phone: has("phone"),
            has_push_token: has("push_token"),
            email_opt_in: self.doc.consent("email"),
            sms_opt_in: self.doc.consent("sms"),
            push_opt_in: self.doc.consent("push"),
            ads_opt_in: self.doc.consent("ads"),
        }
    }
}

/// The summary of a profile item read with [`SUMMARY_PROJECTION`] (only those attributes);
/// `None` for an item without a `profile_id`.
pub fn summary_from_attributes(item: &HashMap<String, AttributeValue>) -> Option<ProfileState> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str);
    let flag = |name: &str| item.get(name).and_then(|v| v.as_bool().ok()).copied();
    let profile_id = text("profile_id")?.to_string();
    let kinds: Vec<&str> = text("id_kinds").map(|k| k.split(',').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
    let has = |kind: &str| kinds.contains(&kind);
    let mut channels: Vec<String> =
        text("channels").map(|c| c.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default();
    channels.sort();
    Some(ProfileState {
        profile_id,
        first_seen_at: text("first_seen").and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc)),
        last_seen_day: text("last_seen_day").map(str::to_string),
        channels,
        has_email: has("email"),
        has_phone: has("phone"),
        has_push_token: has("push_token"),
        email_opt_in: flag("email_opt_in"),
        sms_opt_in: flag("sms_opt_in"),
        push_opt_in: flag("push_opt_in"),
        ads_opt_in: flag("ads_opt_in"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn item() -> ProfileItem {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
        let tv = |v: &str| TraitValue { value: v.into(), at, source: "crm".into(), observation_id: "o1".into() };
        let consent = |g: bool| ConsentState { granted: g, at, source: "sms".into(), observation_id: "o2".into() };
        ProfileItem {
            profile_id: "p_1".into(),
            component: "c1".into(),
            doc: ProfileDoc {
                identifiers: [
                    ("email".to_string(), BTreeSet::from(["marie@x.fr".to_string()])),
                    ("phone".to_string(), BTreeSet::from(["+33612345678".to_string()])),
                    ("cookie_id".to_string(), BTreeSet::from(["c-1".to_string()])),
                ]
                .into_iter()
                .collect(),
                traits: [("email".to_string(), tv("marie@x.fr")), ("city".to_string(), tv("Lyon"))].into_iter().collect(),
                consents: [("sms".to_string(), consent(false)), ("email".to_string(), consent(true))].into_iter().collect(),
                channels: BTreeSet::from(["web".to_string(), "crm".to_string()]),
                first_seen: Some(at),
                last_seen_day: Some(at.date_naive()),
            },
            merged_from: vec!["p_0".into()],
        }
    }

    /// What identity writes is what the readers decode: the whole document, and the
    /// projected summary equals the summary of the document.
    #[test]
    fn the_item_round_trips_and_its_projection_agrees_with_the_document() {
        let p = item();
        let attrs = p.to_attributes(7);
        assert_eq!(attrs["pk"].as_s().unwrap(), "PROFILE#p_1");
        assert_eq!(attrs["v"].as_n().unwrap(), "7");
        assert_eq!(ProfileItem::from_attributes(&attrs).unwrap(), p);
        let projected: HashMap<String, AttributeValue> =
            SUMMARY_PROJECTION.split(", ").filter_map(|name| attrs.get(name).map(|v| (name.to_string(), v.clone()))).collect();
        assert!(!projected.contains_key("email"), "the projection carries no clear identifier");
        let summary = summary_from_attributes(&projected).unwrap();
        assert_eq!(summary, p.summary());
        assert!(summary.has_email && summary.has_phone && !summary.has_push_token);
        assert_eq!((summary.email_opt_in, summary.sms_opt_in, summary.ads_opt_in), (Some(true), Some(false), None));
        assert_eq!(summary.channels, vec!["crm", "web"]);
    }

    #[test]
    fn undecodable_items_are_errors_naming_the_item() {
        let mut attrs = item().to_attributes(1);
        attrs.insert("doc".into(), s("{\"profile_id\": 3}"));
        let e = ProfileItem::from_attributes(&attrs).unwrap_err();
        assert!(e.to_string().contains("PROFILE#p_1"), "{e}");
        attrs.remove("doc");
        assert!(matches!(ProfileItem::from_attributes(&attrs), Err(ProfileItemError::NoDocument { .. })));
        assert!(summary_from_attributes(&HashMap::new()).is_none());
    }
}
