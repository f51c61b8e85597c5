//! The store's invariants, checked over a full listing of its items: what every committed
//! state satisfies whatever the order, duplication and interleaving of the resolvers that
//! built it. The property tests check them after every commit (in memory and on
//! DynamoDB through moto), and an operator can check a live table with the same code.
//!
//! - components partition the evidence, each is connected through linkable identifiers
//!   and holds every evidence that shares a linkable identifier with it;
//! - evidence and identifier items point at the component that holds them;
//! - one profile item per cluster, pointing at its component, whose document is the join
//!   of its evidence's documents (identifiers restricted to those the profile holds).

use std::collections::{BTreeMap, BTreeSet};

use crate::partition::{components, Evidence, IdRef};
use crate::profile::{Doc, Join};
use crate::rules::{parse_kind, Rules};
use crate::store::{IdItem, Item, ProfileItem, Record};

/// A broken invariant, described with the items involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

fn broken(message: String) -> Violation {
    Violation(message)
}

/// The identity key or component key of an item's partition key (`EV#k` → `k`).
fn key_after<'a>(pk: &'a str, prefix: &str) -> &'a str {
    pk.strip_prefix(prefix).unwrap_or(pk)
}

/// Checks every invariant over `records` (all items of the store), as they will be once
/// every large operation in progress has completed ([`crate::intent::roll_forward`]: an
/// operation whose chunks cannot apply is itself a violation).
pub fn check(records: &[Record], rules: &Rules) -> Result<(), Violation> {
    let rolled = crate::intent::roll_forward(records).map_err(broken)?;
    check_settled(&rolled, rules)
}

fn check_settled(records: &[Record], rules: &Rules) -> Result<(), Violation> {
    let mut comps: BTreeMap<String, Vec<Evidence>> = BTreeMap::new();
    let mut evs: BTreeMap<String, String> = BTreeMap::new();
    let mut ev_docs: BTreeMap<String, &Doc> = BTreeMap::new();
    let mut ids: BTreeMap<IdRef, &IdItem> = BTreeMap::new();
    let mut profiles: BTreeMap<String, &ProfileItem> = BTreeMap::new();
    for r in records {
        match &r.item {
            Item::Comp(c) => {
                let list =
                    c.evidence.iter().map(|e| Evidence { key: e.key.clone(), first_seen: e.first_seen, ids: e.ids.clone() }).collect();
                comps.insert(key_after(&r.key.pk, "COMP#").to_string(), list);
            }
            Item::Ev(e) => {
                let key = key_after(&r.key.pk, "EV#").to_string();
                evs.insert(key.clone(), e.component.clone());
                ev_docs.insert(key, &e.doc);
            }
            Item::Id(i) => {
                let rest = key_after(&r.key.pk, "ID#");
                let (kind, hash) = rest.split_once('#').ok_or_else(|| broken(format!("bad identifier key {rest}")))?;
                let kind = parse_kind(kind).ok_or_else(|| broken(format!("bad identifier kind {kind}")))?;
                ids.insert(IdRef { kind, hash: hash.to_string() }, i);
            }
            Item::Profile(p) => {
                profiles.insert(p.profile_id.clone(), p);
            }
            Item::Alias(_) | Item::Intent(_) => {}
        }
    }
    let linkable = |id: &IdRef| ids.get(id).is_some_and(|s| !s.co.shared && !s.excluded && !s.suppressed);
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let mut holder: BTreeMap<&IdRef, &str> = BTreeMap::new();
    for (c, list) in &comps {
        let groups = components(list, &linkable);
        if groups.len() != 1 {
            return Err(broken(format!("component {c} is not connected: {} groups", groups.len())));
        }
        for e in list {
            if let Some(other) = seen.insert(&e.key, c) {
                return Err(broken(format!("evidence {} in components {other} and {c}", e.key)));
            }
            if evs.get(&e.key) != Some(c) {
                return Err(broken(format!("evidence {} of component {c} points at {:?}", e.key, evs.get(&e.key))));
            }
            for id in e.ids.iter().filter(|i| linkable(i)) {
                if let Some(other) = holder.insert(id, c).filter(|o| o != c) {
                    return Err(broken(format!("linkable {id:?} in components {other} and {c}")));
                }
                if ids[id].component.as_ref() != Some(c) {
                    return Err(broken(format!("linkable {id:?} of component {c} points at {:?}", ids[id].component)));
                }
            }
            if let Some(id) = e.ids.iter().find(|id| !ids.contains_key(*id)) {
                return Err(broken(format!("{id:?} of component {c} has no item")));
            }
        }
    }
    // Profiles: one per cluster, each the join of its evidence's contributions.
    let mut clusters: BTreeMap<&str, (&str, Vec<&str>)> = BTreeMap::new();
    for r in records {
        if let Item::Comp(c) = &r.item {
            let comp = key_after(&r.key.pk, "COMP#");
            for e in &c.evidence {
                if let Some(p) = &e.profile_id {
                    let entry = clusters.entry(p).or_insert_with(|| (comp, Vec::new()));
                    if entry.0 != comp {
                        return Err(broken(format!("profile {p} has evidence in components {} and {comp}", entry.0)));
                    }
                    entry.1.push(&e.key);
                }
            }
        }
    }
    if clusters.len() != profiles.len() {
        return Err(broken(format!("{} clusters but {} profile items", clusters.len(), profiles.len())));
    }
    for (pid, (comp, keys)) in &clusters {
        let p = profiles.get(*pid).ok_or_else(|| broken(format!("cluster {pid} has no profile item")))?;
        if p.component != *comp {
            return Err(broken(format!("profile {pid} points at component {}, its evidence is in {comp}", p.component)));
        }
        let mut expected = Doc::default();
        for k in keys {
            expected.join(ev_docs.get(*k).ok_or_else(|| broken(format!("evidence {k} has no item")))?, rules);
        }
        let (got, want) = (joined_part(&p.doc), joined_part(&expected));
        if got != want {
            return Err(broken(format!("profile {pid} is not the join of its evidence:\n got {got:?}\nwant {want:?}")));
        }
        // The contact address: the best (by its survivorship rule) of the addresses its
        // evidence carries that the profile holds.
        let mut contacts = Doc::default();
        for k in keys {
            contacts.join_held(ev_docs[*k], &p.doc.identifiers, rules);
        }
        for (name, _) in crate::profile::CONTACT_TRAITS {
            let (got, want) = (p.doc.trait_value(name), contacts.trait_value(name));
            if got != want {
                return Err(broken(format!("profile {pid}: contact {name} is {got:?}, the best held address of its evidence is {want:?}")));
            }
        }
        for (kind, values) in &p.doc.identifiers {
            if !values.is_subset(expected.identifiers.get(kind).unwrap_or(&BTreeSet::new())) {
                return Err(broken(format!("profile {pid} holds {kind} values none of its evidence carries")));
            }
        }
    }
    for (e, c) in &evs {
        if seen.get(e.as_str()) != Some(&c.as_str()) {
            return Err(broken(format!("evidence item {e} points at component {c}, which does not hold it")));
        }
    }
    for (id, st) in &ids {
        if let Some(c) = &st.component {
            if holder.get(id) != Some(&c.as_str()) {
                return Err(broken(format!("{id:?} points at component {c}, which does not hold it")));
            }
        }
    }
    Ok(())
}

/// What a profile document must share with the join of its evidence: traits (but the
/// contact pseudo-traits, which follow the identifiers the profile holds), consents,
/// channels, first seen and last seen.
type JoinedPart = (
    BTreeMap<String, String>,
    BTreeMap<String, crate::profile::ConsentState>,
    BTreeSet<String>,
    Option<chrono::DateTime<chrono::Utc>>,
    Option<chrono::NaiveDate>,
);

fn joined_part(d: &Doc) -> JoinedPart {
    let traits = d.traits.iter().filter(|(n, _)| *n != "email" && *n != "phone").map(|(n, t)| (n.clone(), t.value.clone())).collect();
    (traits, d.consents.clone(), d.channels.clone(), d.first_seen, d.last_seen_day)
}
