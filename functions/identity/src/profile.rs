//! The profile document and its join: traits with survivorship and provenance, consent
//! per channel (latest decision wins), channels seen, first and last seen. Joining is
//! associative, commutative and idempotent, so a profile is the same whatever the order
//! and duplication of the observations that built it, and a profile split by a repair is
//! rebuilt exactly from the contributions of its evidence.

use std::collections::{BTreeMap, BTreeSet};

use ariane_shared::identifiers::Identifier;
use ariane_shared::model::Observation;
pub use ariane_shared::profile::{ConsentState, ProfileDoc, TraitValue};

use crate::rules::{Rules, Survivorship};

/// The profile document (its type is the shared profile item's, see
/// `ariane_shared::profile`); identity adds how documents are built and joined.
pub type Doc = ProfileDoc;

/// Pseudo-traits that track the most recent e-mail and phone (the reachable ones).
pub const CONTACT_TRAITS: &[(&str, ariane_shared::identifiers::IdentifierKind)] =
    &[("email", ariane_shared::identifiers::IdentifierKind::Email), ("phone", ariane_shared::identifiers::IdentifierKind::Phone)];

/// Removes from a document every clear identifier whose keyed hash is in `hashes`, and the
/// contact traits that held one (an erased value shared with another person); true when
/// the document changed.
pub fn forget(doc: &mut ProfileDoc, hashes: &BTreeSet<String>) -> bool {
    let before = doc.clone();
    for (k, values) in doc.identifiers.iter_mut() {
        if let Some(kind) = crate::rules::parse_kind(k) {
            values.retain(|v| !hashes.contains(&ariane_shared::identifiers::identifier_hash(kind, v)));
        }
    }
    doc.identifiers.retain(|_, v| !v.is_empty());
    for (name, kind) in CONTACT_TRAITS {
        if doc.traits.get(*name).is_some_and(|t| hashes.contains(&ariane_shared::identifiers::identifier_hash(*kind, &t.value))) {
            doc.traits.remove(*name);
        }
    }
    *doc != before
}

/// How identity builds and joins profile documents.
pub trait Join {
    /// Joins `other` into `self`; true when `self` changed.
    fn join(&mut self, other: &ProfileDoc, rules: &Rules) -> bool;
    /// Whether [`Join::join`] of `other` would change `self` (without changing it).
    fn would_change(&self, other: &ProfileDoc, rules: &Rules) -> bool;
    /// Keeps only the identifiers the profile holds (after limits and shared values),
    /// and contact traits that point at one of them.
    fn restrict_identifiers(&mut self, owned: &BTreeMap<String, BTreeSet<String>>);
    /// Joins `other` without its contact traits that point at a value outside `held`: a
    /// contact address the profile does not hold never competes for the contact trait
    /// (the join of the rest stays associative, commutative and idempotent).
    fn join_held(&mut self, other: &ProfileDoc, held: &BTreeMap<String, BTreeSet<String>>, rules: &Rules) -> bool {
        let foreign = |(name, kind): &(&str, ariane_shared::identifiers::IdentifierKind)| {
            other.traits.get(*name).is_some_and(|t| !held.get(kind.as_str()).is_some_and(|h| h.contains(&t.value)))
        };
        if CONTACT_TRAITS.iter().any(foreign) {
            let mut restricted = other.clone();
            for (name, kind) in CONTACT_TRAITS {
                if foreign(&(name, *kind)) {
                    restricted.traits.remove(*name);
                }
            }
            self.join(&restricted, rules)
        } else {
            self.join(other, rules)
        }
    }
}

/// The contribution of one observation (its usable identifiers only).
pub fn contribution(obs: &Observation, usable: &[&Identifier]) -> ProfileDoc {
    let mut doc = Doc::default();
    let tv = |value: &str| TraitValue {
        value: value.to_string(),
        at: obs.observed_at,
        source: obs.channel.clone(),
        observation_id: obs.observation_id.clone(),
    };
    for id in usable {
        doc.identifiers.entry(id.kind.as_str().to_string()).or_default().insert(id.value.clone());
    }
    for (name, kind) in CONTACT_TRAITS {
        if let Some(id) = usable.iter().filter(|i| i.kind == *kind).map(|i| &i.value).min() {
            doc.traits.insert(name.to_string(), tv(id));
        }
    }
    let t = &obs.traits;
    for (name, value) in [
        ("first_name", &t.first_name),
        ("last_name", &t.last_name),
        ("street", &t.street),
        ("postal_code", &t.postal_code),
        ("city", &t.city),
        ("country", &t.country),
    ] {
        if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            doc.traits.insert(name.to_string(), tv(v));
        }
    }
    for c in &obs.consents {
        let state = ConsentState { granted: c.granted, at: c.at, source: obs.channel.clone(), observation_id: obs.observation_id.clone() };
        join_consent(&mut doc.consents, c.channel.as_str(), &state);
    }
    doc.channels.insert(obs.channel.clone());
    doc.first_seen = Some(obs.observed_at);
    doc.last_seen_day = Some(obs.observed_at.date_naive());
    doc
}

impl Join for ProfileDoc {
    fn join(&mut self, other: &ProfileDoc, rules: &Rules) -> bool {
        // Each part reports whether it changed `self` (no copy of the document to compare
        // with: this runs once per observation).
        let mut changed = false;
        for (k, values) in &other.identifiers {
            match self.identifiers.get_mut(k) {
                Some(held) => {
                    for v in values {
                        if !held.contains(v) {
                            held.insert(v.clone());
                            changed = true;
                        }
                    }
                }
                None => {
                    self.identifiers.insert(k.clone(), values.clone());
                    changed = true;
                }
            }
        }
        for (name, v) in &other.traits {
            let better = match self.traits.get(name) {
                None => true,
                Some(cur) => trait_better(v, cur, name, rules),
            };
            if better {
                // Better is strictly greater on every field a value has: a change.
                self.traits.insert(name.clone(), v.clone());
                changed = true;
            }
        }
        for (channel, state) in &other.consents {
            changed |= join_consent(&mut self.consents, channel, state);
        }
        for c in &other.channels {
            if !self.channels.contains(c) {
                self.channels.insert(c.clone());
                changed = true;
            }
        }
        let first_seen = min_opt(self.first_seen, other.first_seen);
        let last_seen_day = self.last_seen_day.max(other.last_seen_day);
        changed |= first_seen != self.first_seen || last_seen_day != self.last_seen_day;
        self.first_seen = first_seen;
        self.last_seen_day = last_seen_day;
        changed
    }

    fn would_change(&self, other: &ProfileDoc, rules: &Rules) -> bool {
        other.identifiers.iter().any(|(k, values)| self.identifiers.get(k).is_none_or(|held| !values.is_subset(held)))
            || other.traits.iter().any(|(name, v)| self.traits.get(name).is_none_or(|cur| trait_better(v, cur, name, rules)))
            || other
                .consents
                .iter()
                .any(|(channel, state)| self.consents.get(channel).is_none_or(|cur| consent_key(cur) < consent_key(state)))
            || !other.channels.is_subset(&self.channels)
            || min_opt(self.first_seen, other.first_seen) != self.first_seen
            || self.last_seen_day.max(other.last_seen_day) != self.last_seen_day
    }

    fn restrict_identifiers(&mut self, owned: &BTreeMap<String, BTreeSet<String>>) {
        for (k, values) in self.identifiers.iter_mut() {
            let keep = owned.get(k);
            values.retain(|v| keep.is_some_and(|o| o.contains(v)));
        }
        self.identifiers.retain(|_, v| !v.is_empty());
        for (name, kind) in CONTACT_TRAITS {
            let held = self.identifiers.get(kind.as_str());
            let ok = self.traits.get(*name).is_some_and(|t| held.is_some_and(|h| h.contains(&t.value)));
            if !ok {
                self.traits.remove(*name);
            }
        }
    }
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Latest decision wins; at the same instant a withdrawal wins (the safe side), then
/// the source name breaks the tie so the join stays commutative.
fn join_consent(map: &mut BTreeMap<String, ConsentState>, channel: &str, state: &ConsentState) -> bool {
    match map.get(channel) {
        Some(cur) if consent_key(cur) >= consent_key(state) => false,
        _ => {
            map.insert(channel.to_string(), state.clone());
            true
        }
    }
}

fn consent_key(s: &ConsentState) -> (chrono::DateTime<chrono::Utc>, bool, &str, &str) {
    (s.at, !s.granted, s.source.as_str(), s.observation_id.as_str())
}

fn recency(t: &TraitValue) -> (chrono::DateTime<chrono::Utc>, &str, &str, &str) {
    (t.at, t.value.as_str(), t.source.as_str(), t.observation_id.as_str())
}

fn trait_better(new: &TraitValue, cur: &TraitValue, name: &str, rules: &Rules) -> bool {
    match rules.survivorship(name) {
        Survivorship::Latest => recency(new) > recency(cur),
        Survivorship::Source => {
            let (rn, rc) = (rules.source_rank(&new.source), rules.source_rank(&cur.source));
            rn < rc || (rn == rc && recency(new) > recency(cur))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ariane_shared::identifiers::IdentifierKind;
    use ariane_shared::model::{Consent, ConsentChannel, Traits};
    use chrono::{TimeZone, Utc};
    use proptest::prelude::*;

    fn obs(channel: &str, day: u32, city: Option<&str>, consent: Option<bool>) -> Observation {
        let at = Utc.with_ymd_and_hms(2026, 3, day, 10, 0, 0).unwrap();
        Observation {
            observation_id: format!("{channel}-{day}"),
            channel: channel.into(),
            source_key: format!("{channel}/x.csv"),
            source_line: u64::from(day),
            observed_at: at,
            identifiers: vec![Identifier::new(IdentifierKind::Email, format!("p{day}@x.fr"))],
            traits: Traits { city: city.map(str::to_string), ..Traits::default() },
            consents: consent.map(|g| vec![Consent { channel: ConsentChannel::Sms, granted: g, at }]).unwrap_or_default(),
            activity: vec![],
        }
    }

    fn doc(o: &Observation) -> Doc {
        let ids: Vec<&Identifier> = o.identifiers.iter().collect();
        contribution(o, &ids)
    }

    #[test]
    fn source_priority_beats_recency_and_latest_consent_wins() {
        let rules = Rules::embedded().unwrap();
        let mut d = doc(&obs("crm", 1, Some("Lyon"), Some(true)));
        d.join(&doc(&obs("web", 5, Some("Paris"), None)), &rules);
        assert_eq!(d.trait_value("city"), Some("Lyon"), "crm outranks web for city");
        d.join(&doc(&obs("crm", 3, Some("Nantes"), None)), &rules);
        assert_eq!(d.trait_value("city"), Some("Nantes"), "same source: the most recent");
        assert_eq!(d.traits["city"].source, "crm");
        d.join(&doc(&obs("sms", 4, None, Some(false))), &rules);
        assert_eq!(d.consent("sms"), Some(false), "STOP after opt-in");
        assert_eq!(d.trait_value("email"), Some("p3@x.fr"), "email: source survivorship, the latest of the crm's");
        assert_eq!(d.first_seen.unwrap().date_naive().to_string(), "2026-03-01");
        assert_eq!(d.last_seen_day.unwrap().to_string(), "2026-03-05");
        assert_eq!(d.channels.len(), 3);
    }

    fn with_ids(channel: &str, day: u32, ids: &[(IdentifierKind, &str)]) -> Doc {
        let mut o = obs(channel, day, None, None);
        o.identifiers = ids.iter().map(|(k, v)| Identifier::new(*k, *v)).collect();
        doc(&o)
    }

    #[test]
    fn contact_addresses_follow_source_survivorship_as_configured() {
        let rules = Rules::embedded().unwrap();
        assert_eq!(rules.survivorship("email"), Survivorship::Source);
        assert_eq!(rules.survivorship("phone"), Survivorship::Source);
        // The real-world case: the web shop's phone outranks one typed later at a till.
        let mut d = with_ids("ecommerce", 2, &[(IdentifierKind::Phone, "+33611111111"), (IdentifierKind::Email, "m@shop.fr")]);
        d.join(&with_ids("pos", 9, &[(IdentifierKind::Phone, "+33622222222"), (IdentifierKind::Email, "m@till.fr")]), &rules);
        assert_eq!(d.trait_value("phone"), Some("+33611111111"));
        assert_eq!(d.traits["phone"].source, "ecommerce");
        assert_eq!(d.trait_value("email"), Some("m@shop.fr"));
        // The CRM outranks the web shop, whatever the order.
        let crm = with_ids("crm", 1, &[(IdentifierKind::Email, "m@crm.fr")]);
        let mut e = crm.clone();
        e.join(&d, &rules);
        d.join(&crm, &rules);
        assert_eq!(d, e);
        assert_eq!(d.trait_value("email"), Some("m@crm.fr"));
        // Same source: the most recent.
        d.join(&with_ids("crm", 5, &[(IdentifierKind::Email, "m2@crm.fr")]), &rules);
        assert_eq!(d.trait_value("email"), Some("m2@crm.fr"));
    }

    #[test]
    fn latest_survivorship_and_the_default_rule() {
        let text = Rules::embedded_text()
            .replace("email = \"source\"", "email = \"latest\"")
            .replace("default = \"latest\"", "default = \"source\"");
        let rules = Rules::parse("t.toml", &text).unwrap();
        assert_eq!(rules.survivorship("email"), Survivorship::Latest);
        let mut d = with_ids("crm", 1, &[(IdentifierKind::Email, "m@crm.fr")]);
        d.join(&with_ids("pos", 9, &[(IdentifierKind::Email, "m@till.fr")]), &rules);
        assert_eq!(d.trait_value("email"), Some("m@till.fr"), "latest: the till's newer address wins");
        // Phone is still `source`; a trait with no rule of its own follows `default`.
        assert_eq!(rules.survivorship("phone"), Survivorship::Source);
        let embedded = Rules::embedded().unwrap();
        assert_eq!(embedded.survivorship("shoe_size"), Survivorship::Latest, "the embedded default");
        assert_eq!(rules.survivorship("shoe_size"), Survivorship::Source, "a default of source");
    }

    #[test]
    fn a_contact_address_the_profile_does_not_hold_never_displaces_one_it_holds() {
        let rules = Rules::embedded().unwrap();
        let mut p = with_ids("web", 1, &[(IdentifierKind::Email, "held@x.fr")]);
        let held = p.identifiers.clone();
        let crm = with_ids("crm", 2, &[(IdentifierKind::Email, "dropped@x.fr")]);
        p.join_held(&crm, &held, &rules);
        p.restrict_identifiers(&held);
        assert_eq!(p.trait_value("email"), Some("held@x.fr"), "the CRM's address was dropped (a limit): it does not compete");
    }

    proptest! {
        #[test]
        fn join_is_order_and_duplicate_independent(picks in proptest::collection::vec((0usize..4, 1u32..20, 0usize..3, proptest::option::of(any::<bool>())), 1..12), seed in any::<u64>()) {
            let rules = Rules::embedded().unwrap();
            let channels = ["crm", "web", "pos", "sms"];
            let cities = ["Lyon", "Paris", "Nice"];
            let docs: Vec<Doc> = picks.iter().map(|(c, d, city, consent)| doc(&obs(channels[*c], *d, Some(cities[*city]), *consent))).collect();
            let mut a = Doc::default();
            for d in &docs {
                let before = a.clone();
                let would = a.would_change(d, &rules);
                let changed = a.join(d, &rules);
                prop_assert_eq!(would, changed, "would_change predicts join");
                prop_assert_eq!(changed, a != before, "join reports exactly whether it changed the document");
            }
            let mut shuffled = docs.clone();
            shuffled.extend(docs.iter().take(3).cloned());
            let n = shuffled.len();
            for i in 0..n { shuffled.swap(i, (seed as usize).wrapping_mul(i + 7) % n); }
            let mut b = Doc::default();
            for d in &shuffled { b.join(d, &rules); }
            prop_assert_eq!(a, b);
        }
    }
}
