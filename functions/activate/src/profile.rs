//! The profile as activation reads it at send time: DynamoDB is authoritative for consent
//! and contact details, so every send re-reads the profile (strongly consistent) instead
//! of trusting what the segment run saw.
//!
//! The item is the one identity writes, decoded by the profile reader into the typed
//! [`ProfileItem`] (`ariane_shared::profile`); this module keeps what a send needs.

use std::collections::BTreeMap;

use ariane_shared::profile::ProfileItem;
use chrono_tz::Tz;

use crate::audience::AudienceMember;
use crate::campaign::Channel;

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

/// Why a channel cannot be used for a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// No identifier for it (no e-mail, phone or push token).
    Unreachable,
    /// Reachable, but consent is not granted (withdrawn or never given).
    NoConsent,
}

impl Profile {
    /// What a send needs from the stored profile: the contact traits, every e-mail,
    /// phone and push token held, the name and place, and the latest consents.
    pub fn from_item(item: &ProfileItem) -> Profile {
        let d = &item.doc;
        let t = |name: &str| d.trait_value(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
        let ids = |kind: &str| d.identifiers_of(kind).cloned().collect::<Vec<_>>();
        Profile {
            profile_id: item.profile_id.clone(),
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
        }
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
    use ariane_shared::profile::{ConsentState, ProfileDoc, TraitValue};
    use chrono::{DateTime, Utc};
    use std::collections::BTreeSet;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn item(doc: ProfileDoc) -> ProfileItem {
        ProfileItem { profile_id: "p_1".into(), component: "c".into(), doc, merged_from: vec![] }
    }

    #[test]
    fn reads_identity_profile_items() {
        let tv = |v: &str| TraitValue { value: v.into(), at: at(), source: "crm".into(), observation_id: "o".into() };
        let c = |g: bool| ConsentState { granted: g, at: at(), source: "crm".into(), observation_id: "o".into() };
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let doc = ProfileDoc {
            identifiers: [
                ("email".to_string(), set(&["a@x.fr", "b@x.fr"])),
                ("phone".to_string(), set(&["+33612345678"])),
                ("push_token".to_string(), set(&["tok1"])),
            ]
            .into_iter()
            .collect(),
            traits: [
                ("email".to_string(), tv("b@x.fr")),
                ("phone".to_string(), tv("+33612345678")),
                ("first_name".to_string(), tv("Marie")),
                ("last_name".to_string(), tv("  ")),
                ("postal_code".to_string(), tv("97110")),
            ]
            .into_iter()
            .collect(),
            consents: [("email".to_string(), c(true)), ("sms".to_string(), c(false))].into_iter().collect(),
            ..ProfileDoc::default()
        };
        let p = Profile::from_item(&item(doc));
        assert_eq!(p.profile_id, "p_1");
        assert_eq!(p.email.as_deref(), Some("b@x.fr"));
        assert_eq!(p.emails.len(), 2);
        assert_eq!(p.first_name.as_deref(), Some("Marie"));
        assert_eq!(p.last_name, None, "a blank trait is no trait");
        assert_eq!(p.usable(Channel::Email), Ok(()));
        assert_eq!(p.usable(Channel::Sms), Err(Unusable::NoConsent));
        assert_eq!(p.usable(Channel::Push), Err(Unusable::NoConsent));
        assert!(!p.ads_consent());
        assert_eq!(p.zone(chrono_tz::Europe::Paris), chrono_tz::America::Guadeloupe);
        let bare = Profile::from_item(&item(ProfileDoc::default()));
        assert_eq!(bare.usable(Channel::Email), Err(Unusable::Unreachable));
    }
}
