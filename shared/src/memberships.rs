//! A person's current segment memberships, readable by key: the item the segments run
//! writes into the profiles table for every person whose membership changed, and the
//! profile API reads in one `GetItem`.
//!
//! `SEGMENTS#<pid>` / `SEGMENTS`, beside identity's items (identity rewrites its own
//! `PROFILE#<pid>` item whole with `PutItem`, so nothing else may live on it):
//!
//! | attribute | value |
//! |---|---|
//! | `profile_id` | the profile |
//! | `last_run` | the latest run that wrote the item (run ids sort by time) |
//! | `s#<entry>` | one membership (see [`entry_name`]): map `segment`, `key` (map), `since`, `run_id`, `payload` (map) |
//! | `a#<name>` | a profile attribute of the run (`a#preferred_channel`) |
//!
//! Memberships and attributes are top-level attributes, not entries of a `segments` map:
//! one `UpdateItem` then both creates the item and sets or removes any of them
//! (`SET #e = :v`, `REMOVE #x`), whereas a nested map needs the map to exist before
//! `SET segments.#s` works, and creating it in the same request (`if_not_exists`) is
//! refused by DynamoDB as overlapping paths.
//!
//! The item carries no clear identifier: payloads are the segments' pseudonymous columns
//! (SKUs, categories, tiers, counts, instants).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

/// The sort key of a memberships item.
pub const SK: &str = "SEGMENTS";
/// The prefix of a membership attribute.
pub const ENTRY_PREFIX: &str = "s#";
/// The prefix of a profile attribute.
pub const ATTRIBUTE_PREFIX: &str = "a#";
/// The attribute naming the latest run that wrote the item.
pub const LAST_RUN: &str = "last_run";

/// The partition key of `profile_id`'s memberships item.
pub fn pk(profile_id: &str) -> String {
    format!("SEGMENTS#{profile_id}")
}

/// Longest readable entry name; a longer one is replaced by a hash of its parts.
const MAX_ENTRY_NAME: usize = 160;

/// The attribute name of one membership: `s#<segment>` for a segment without key
/// columns, `s#<segment>#<value>[#<value>...]` (key columns in name order) for a keyed
/// one (a person is in `cross-sell` once per suggested category), `s#<segment>#<hash>`
/// when that would be longer than 160 bytes.
pub fn entry_name(segment: &str, key: &BTreeMap<String, String>) -> String {
    let mut name = format!("{ENTRY_PREFIX}{segment}");
    for v in key.values() {
        name.push('#');
        name.push_str(v);
    }
    if name.len() > MAX_ENTRY_NAME {
        let mut parts: Vec<&str> = vec![segment];
        for (k, v) in key {
            parts.push(k);
            parts.push(v);
        }
        name = format!("{ENTRY_PREFIX}{segment}#{}", crate::identifiers::stable_id(&parts));
    }
    name
}

/// One membership of one person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub segment: String,
    /// The segment's key columns (empty for segments without `-- key:`).
    pub key: BTreeMap<String, String>,
    /// When the person entered: the entering run's instant (RFC 3339).
    pub since: String,
    /// The entering run.
    pub run_id: String,
    /// The segment's payload columns, as of the entering run.
    pub payload: BTreeMap<String, String>,
}

fn string_map(m: &BTreeMap<String, String>) -> AttributeValue {
    AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), AttributeValue::S(v.clone()))).collect())
}

fn read_string_map(v: Option<&AttributeValue>) -> BTreeMap<String, String> {
    match v.and_then(|v| v.as_m().ok()) {
        Some(m) => m.iter().filter_map(|(k, v)| v.as_s().ok().map(|s| (k.clone(), s.clone()))).collect(),
        None => BTreeMap::new(),
    }
}

impl Membership {
    /// Its attribute name ([`entry_name`]).
    pub fn entry_name(&self) -> String {
        entry_name(&self.segment, &self.key)
    }

    /// Its DynamoDB value (a map).
    pub fn to_attribute(&self) -> AttributeValue {
        let s = |v: &str| AttributeValue::S(v.to_string());
        AttributeValue::M(HashMap::from([
            ("segment".to_string(), s(&self.segment)),
            ("key".to_string(), string_map(&self.key)),
            ("since".to_string(), s(&self.since)),
            ("run_id".to_string(), s(&self.run_id)),
            ("payload".to_string(), string_map(&self.payload)),
        ]))
    }

    /// A membership from its DynamoDB value; `None` when it is not a map with a segment.
    pub fn from_attribute(v: &AttributeValue) -> Option<Membership> {
        let m = v.as_m().ok()?;
        let text = |n: &str| m.get(n).and_then(|v| v.as_s().ok()).cloned();
        Some(Membership {
            segment: text("segment")?,
            key: read_string_map(m.get("key")),
            since: text("since").unwrap_or_default(),
            run_id: text("run_id").unwrap_or_default(),
            payload: read_string_map(m.get("payload")),
        })
    }
}

/// A person's memberships item, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memberships {
    pub profile_id: String,
    pub last_run: Option<String>,
    /// Entry name → membership.
    pub segments: BTreeMap<String, Membership>,
    /// Attribute name → value (`preferred_channel`).
    pub attributes: BTreeMap<String, String>,
}

impl Memberships {
    /// Decodes an item (memberships that cannot be read are skipped).
    pub fn from_item(item: &HashMap<String, AttributeValue>) -> Memberships {
        let text = |n: &str| item.get(n).and_then(|v| v.as_s().ok()).cloned();
        let mut out = Memberships { profile_id: text("profile_id").unwrap_or_default(), last_run: text(LAST_RUN), ..Default::default() };
        for (name, value) in item {
            if let Some(m) = name.strip_prefix(ENTRY_PREFIX).and(Membership::from_attribute(value)) {
                out.segments.insert(name.clone(), m);
            } else if let (Some(attr), Ok(v)) = (name.strip_prefix(ATTRIBUTE_PREFIX), value.as_s()) {
                out.attributes.insert(attr.to_string(), v.clone());
            }
        }
        out
    }

    /// The item (keys included).
    pub fn to_item(&self) -> HashMap<String, AttributeValue> {
        let s = |v: &str| AttributeValue::S(v.to_string());
        let mut item = HashMap::from([
            ("pk".to_string(), s(&pk(&self.profile_id))),
            ("sk".to_string(), s(SK)),
            ("profile_id".to_string(), s(&self.profile_id)),
        ]);
        if let Some(run) = &self.last_run {
            item.insert(LAST_RUN.to_string(), s(run));
        }
        for (name, m) in &self.segments {
            item.insert(name.clone(), m.to_attribute());
        }
        for (name, v) in &self.attributes {
            item.insert(format!("{ATTRIBUTE_PREFIX}{name}"), s(v));
        }
        item
    }

    /// Applies one run's change, unless a later run already wrote the item, or the change
    /// only removes and the item is new (then `false`, nothing changes): the in-memory
    /// form of the segments run's conditional `UpdateItem` ([`MembershipChange::condition`]).
    pub fn apply(&mut self, change: &MembershipChange) -> bool {
        let later = self.last_run.as_deref().is_some_and(|last| last > change.run_id.as_str());
        if later || (self.last_run.is_none() && change.only_removes()) {
            return false;
        }
        self.profile_id = change.profile_id.clone();
        self.last_run = Some(change.run_id.clone());
        for name in &change.remove {
            self.segments.remove(name);
        }
        for (name, m) in &change.set {
            self.segments.insert(name.clone(), m.clone());
        }
        for (name, v) in &change.attributes {
            match v {
                Some(v) => self.attributes.insert(name.clone(), v.clone()),
                None => self.attributes.remove(name),
            };
        }
        true
    }
}

/// What one run changes in one person's memberships item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipChange {
    pub profile_id: String,
    pub run_id: String,
    /// Memberships entered (entry name → membership).
    pub set: BTreeMap<String, Membership>,
    /// Memberships exited (entry names); never one of `set`.
    pub remove: BTreeSet<String>,
    /// Attributes set (`Some`) or removed (`None`).
    pub attributes: BTreeMap<String, Option<String>>,
}

/// The condition of a change's `UpdateItem` (with the names and values of
/// [`MembershipChange::update_expression`]): no later run wrote the item.
pub const UPDATE_CONDITION: &str = "attribute_not_exists(#run) OR #run <= :run";
/// The condition of a change that only removes ([`MembershipChange::only_removes`]):
/// the item exists (an exit never creates one, so a person erased since keeps none) and
/// no later run wrote it.
pub const REMOVE_CONDITION: &str = "attribute_exists(#run) AND #run <= :run";

impl MembershipChange {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty() && self.attributes.is_empty()
    }

    /// Whether it sets nothing (exits and attributes removed only).
    pub fn only_removes(&self) -> bool {
        self.set.is_empty() && self.attributes.values().all(Option::is_none)
    }

    /// The condition of its `UpdateItem`: [`REMOVE_CONDITION`] when it
    /// [only removes](Self::only_removes), else [`UPDATE_CONDITION`].
    pub fn condition(&self) -> &'static str {
        if self.only_removes() {
            REMOVE_CONDITION
        } else {
            UPDATE_CONDITION
        }
    }

    /// The `UpdateItem` of the change on the person's item: its update expression,
    /// attribute names and values (`SET` the run, the memberships entered and the
    /// attributes set; `REMOVE` the memberships exited and the attributes removed), to use
    /// with [`UPDATE_CONDITION`].
    pub fn update_expression(&self) -> (String, HashMap<String, String>, HashMap<String, AttributeValue>) {
        let s = |v: &str| AttributeValue::S(v.to_string());
        let mut names = HashMap::from([("#run".to_string(), LAST_RUN.to_string())]);
        let mut values = HashMap::from([(":run".to_string(), s(&self.run_id)), (":pid".to_string(), s(&self.profile_id))]);
        let mut set = vec!["#run = :run".to_string(), "profile_id = :pid".to_string()];
        let mut remove = Vec::new();
        for (i, (name, m)) in self.set.iter().enumerate() {
            names.insert(format!("#s{i}"), name.clone());
            values.insert(format!(":s{i}"), m.to_attribute());
            set.push(format!("#s{i} = :s{i}"));
        }
        for (i, name) in self.remove.iter().enumerate() {
            names.insert(format!("#r{i}"), name.clone());
            remove.push(format!("#r{i}"));
        }
        for (i, (name, value)) in self.attributes.iter().enumerate() {
            names.insert(format!("#a{i}"), format!("{ATTRIBUTE_PREFIX}{name}"));
            match value {
                Some(v) => {
                    values.insert(format!(":a{i}"), s(v));
                    set.push(format!("#a{i} = :a{i}"));
                }
                None => remove.push(format!("#a{i}")),
            }
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        (expression, names, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn membership(segment: &str, key: &[(&str, &str)], run: &str) -> Membership {
        Membership {
            segment: segment.into(),
            key: key.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            since: "2026-11-23T06:00:00Z".into(),
            run_id: run.into(),
            payload: [("items".to_string(), "SKU-1,SKU-2".to_string())].into(),
        }
    }

    #[test]
    fn entries_are_named_by_segment_and_key() {
        assert_eq!(entry_name("vip", &BTreeMap::new()), "s#vip");
        let key = [("suggested_category".to_string(), "chaussures".to_string())].into();
        assert_eq!(entry_name("cross-sell", &key), "s#cross-sell#chaussures");
        let long = [("k".to_string(), "x".repeat(300))].into();
        let name = entry_name("cross-sell", &long);
        assert!(name.starts_with("s#cross-sell#") && name.len() < MAX_ENTRY_NAME, "{name}");
    }

    #[test]
    fn items_round_trip_and_changes_apply_in_run_order() {
        let mut item = Memberships::default();
        let cart = membership("abandoned-cart", &[], "20261123T060000Z");
        let change = MembershipChange {
            profile_id: "p_1".into(),
            run_id: "20261123T060000Z".into(),
            set: [(cart.entry_name(), cart.clone())].into(),
            remove: BTreeSet::new(),
            attributes: [("preferred_channel".to_string(), Some("email".to_string()))].into(),
        };
        assert!(item.apply(&change));
        assert!(item.apply(&change), "the same run again is the same state");
        let decoded = Memberships::from_item(&item.to_item());
        assert_eq!(decoded, item);
        assert_eq!(decoded.segments["s#abandoned-cart"], cart);
        assert_eq!(decoded.attributes["preferred_channel"], "email");
        let older =
            MembershipChange { run_id: "20261123T050000Z".into(), remove: ["s#abandoned-cart".to_string()].into(), ..change.clone() };
        assert!(!item.apply(&older), "an older run does not undo a later one");
        assert!(item.segments.contains_key("s#abandoned-cart"));
        let exit = MembershipChange {
            run_id: "20261123T070000Z".into(),
            set: BTreeMap::new(),
            remove: ["s#abandoned-cart".to_string()].into(),
            attributes: [("preferred_channel".to_string(), None)].into(),
            ..change
        };
        assert!(exit.only_removes());
        assert!(item.apply(&exit));
        assert!(item.segments.is_empty() && item.attributes.is_empty());
        let mut absent = Memberships::default();
        assert!(!absent.apply(&exit), "an exit does not create an item (a person erased since keeps none)");
        assert_eq!(absent, Memberships::default());
    }
}
