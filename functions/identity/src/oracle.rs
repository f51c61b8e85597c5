//! The oracle: the rules applied by a plain in-memory union-find to the whole set of
//! observations at once (no store, no increments, no concurrency). Whatever the order,
//! duplication or concurrency of the deliveries, the store must end with this partition.

use std::collections::{BTreeMap, BTreeSet};

use ariane_shared::identifiers::identity_key;
use ariane_shared::model::Observation;

use crate::partition::{resolve, shared_values, Evidence, IdRef};
use crate::rules::Rules;

/// Identity key → profile id (None: no usable, linkable identifier) for every
/// observation's identity key. `excluded`: identifiers a repair excluded.
pub fn oracle(observations: &[Observation], rules: &Rules, excluded: &BTreeSet<IdRef>) -> BTreeMap<String, Option<String>> {
    let mut evidence: BTreeMap<String, Evidence> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for o in observations {
        let Some(key) = identity_key(&o.identifiers) else { continue };
        let mut ids: Vec<IdRef> = o.identifiers.iter().filter(|i| rules.usable(i.kind, &i.value)).map(|i| rules.id_ref(i)).collect();
        if ids.is_empty() {
            continue;
        }
        keys.insert(key.clone());
        ids.sort();
        ids.dedup();
        let e = evidence.entry(key.clone()).or_insert(Evidence { key, first_seen: o.observed_at, ids });
        e.first_seen = e.first_seen.min(o.observed_at);
    }
    let all: Vec<Evidence> = evidence.into_values().collect();
    let shared = shared_values(&all, rules);
    let linkable = |id: &IdRef| !shared.contains(id) && !excluded.contains(id);
    let partition = resolve(&all, rules, &linkable);
    keys.into_iter()
        .map(|k| {
            let p = partition.assign.get(&k).cloned();
            (k, p)
        })
        .collect()
}

/// A partition as a set of groups of keys (profile ids themselves are not compared).
pub fn groups(assign: &BTreeMap<String, Option<String>>) -> BTreeSet<BTreeSet<String>> {
    let mut by: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut singles = BTreeSet::new();
    for (k, p) in assign {
        match p {
            Some(p) => {
                by.entry(p).or_default().insert(k.clone());
            }
            None => {
                singles.insert(BTreeSet::from([k.clone()]));
            }
        }
    }
    by.into_values().chain(singles).collect()
}
