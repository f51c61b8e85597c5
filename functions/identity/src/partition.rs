//! The resolution rules as a pure function: given the evidence of one connected component
//! (the distinct identifier sets observed, each with the instant it was first seen), the
//! partition into profiles. Evidence is processed in a canonical order (first seen, then
//! key), never in arrival order, so the result depends only on the set of evidence: the
//! store recomputes a component whenever new evidence touches it and always lands on the
//! same partition as the in-memory oracle, whatever the interleaving or duplication.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ariane_shared::identifiers::IdentifierKind;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::rules::{Role, Rules};

/// An identifier as identity stores it outside the profile: kind + SHA-256 hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdRef {
    pub kind: IdentifierKind,
    pub hash: String,
}

/// One distinct identifier set (of usable identifiers) and when it was first seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub key: String,
    pub first_seen: DateTime<Utc>,
    pub ids: Vec<IdRef>,
}

/// Why an identifier of an evidence did not link it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DropReason {
    /// The merge or attachment would give the profile more `kind` values than allowed.
    Limit(IdentifierKind),
    /// An attach-only identifier pointed at a profile known by other identifiers.
    AttachOnly,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decision {
    /// `evidence` linked clusters (named by their first evidence key) through `via`.
    Merge {
        evidence: String,
        survivor: String,
        absorbed: Vec<String>,
        via: Vec<IdRef>,
    },
    Dropped {
        evidence: String,
        id: IdRef,
        reason: DropReason,
    },
}

/// A profile: its evidence (canonical order) and the identifiers it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    pub profile_id: String,
    pub evidence: Vec<String>,
    pub ids: BTreeSet<IdRef>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Partition {
    pub clusters: Vec<Cluster>,
    /// Evidence key → profile id (evidence without a usable identifier is absent).
    pub assign: BTreeMap<String, String>,
    pub decisions: Vec<Decision>,
}

/// The profile id of a cluster whose canonically first evidence is `key`.
pub fn profile_id_of(evidence_key: &str) -> String {
    format!("p_{}", &evidence_key[..evidence_key.len().min(24)])
}

struct State {
    first: String,
    /// kind → (hash, first seen)
    ids: HashMap<IdentifierKind, Vec<(String, DateTime<Utc>)>>,
    has_merge_id: bool,
    evidence: Vec<String>,
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Resolves a set of evidence. `linkable(id)` says whether an identifier may link
/// (false for values found shared by several persons, or excluded by a repair).
pub fn resolve(evidence: &[Evidence], rules: &Rules, linkable: &dyn Fn(&IdRef) -> bool) -> Partition {
    let mut order: Vec<&Evidence> = evidence.iter().collect();
    order.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then_with(|| a.key.cmp(&b.key)));
    let mut states: Vec<State> = Vec::new();
    let mut parent: Vec<usize> = Vec::new();
    let mut owner: HashMap<&IdRef, usize> = HashMap::new();
    let mut assign_idx: Vec<(String, usize)> = Vec::new();
    let mut decisions = Vec::new();

    for e in order {
        let mut ids: Vec<&IdRef> = e.ids.iter().filter(|i| rules.rule(i.kind).is_some() && linkable(i)).collect();
        ids.sort_by(|a, b| rules.priority(a.kind).cmp(&rules.priority(b.kind)).then_with(|| a.hash.cmp(&b.hash)));
        ids.dedup();
        if ids.is_empty() {
            continue;
        }
        let has_merge = |ids: &[&IdRef]| ids.iter().any(|i| rules.role(i.kind) == Some(Role::Merge));
        loop {
            // Clusters reached through merge and through attach identifiers.
            let mut via_merge: BTreeSet<usize> = BTreeSet::new();
            let mut via_attach: BTreeMap<usize, Vec<&IdRef>> = BTreeMap::new();
            let mut links: BTreeMap<usize, Vec<&IdRef>> = BTreeMap::new();
            for &id in &ids {
                if let Some(&c) = owner.get(id) {
                    let c = find(&mut parent, c);
                    links.entry(c).or_default().push(id);
                    match rules.role(id.kind) {
                        Some(Role::Merge) => {
                            via_merge.insert(c);
                        }
                        _ => via_attach.entry(c).or_default().push(id),
                    }
                }
            }
            // Attach-only identifiers never bring in a known profile that merge
            // identifiers did not already reach, when the observation has merge
            // identifiers of its own or they would reach two known profiles.
            let known_by_attach: Vec<usize> =
                via_attach.keys().copied().filter(|c| !via_merge.contains(c) && states[*c].has_merge_id).collect();
            let mut conflict: Option<(Vec<&IdRef>, DropReason)> = None;
            if !known_by_attach.is_empty() && (has_merge(&ids) || known_by_attach.len() + via_merge.len() >= 2) {
                let culprits = known_by_attach.iter().flat_map(|c| via_attach[c].iter().copied()).collect();
                conflict = Some((culprits, DropReason::AttachOnly));
            }
            if conflict.is_none() {
                // Limits over the union of the reached clusters and the new identifiers.
                for kind in crate::rules::ALL_KINDS {
                    let Some(rule) = rules.rule(kind) else { continue };
                    let since = rule.window_days.map(|d| e.first_seen - Duration::days(i64::from(d)));
                    let mut values: BTreeSet<&str> = BTreeSet::new();
                    for &c in links.keys() {
                        for (h, at) in states[c].ids.get(&kind).into_iter().flatten() {
                            if since.is_none_or(|s| *at > s) {
                                values.insert(h);
                            }
                        }
                    }
                    for id in ids.iter().filter(|i| i.kind == kind) {
                        values.insert(&id.hash);
                    }
                    if values.len() > rule.limit {
                        let culprits =
                            ids.iter().copied().filter(|i| (i.kind == kind && !owner.contains_key(i)) || owner.contains_key(i)).collect();
                        conflict = Some((culprits, DropReason::Limit(kind)));
                        break;
                    }
                }
            }
            if let Some((mut culprits, reason)) = conflict {
                // Drop the lowest-priority culprit (ties: the largest hash) and retry.
                culprits.sort_by(|a, b| rules.priority(a.kind).cmp(&rules.priority(b.kind)).then_with(|| a.hash.cmp(&b.hash)));
                let drop = *culprits.last().expect("a conflict names culprits");
                ids.retain(|i| *i != drop);
                decisions.push(Decision::Dropped { evidence: e.key.clone(), id: drop.clone(), reason });
                continue;
            }
            // Union: the survivor is the cluster whose first evidence comes first.
            let target = if links.is_empty() {
                states.push(State { first: e.key.clone(), ids: HashMap::new(), has_merge_id: false, evidence: Vec::new() });
                parent.push(parent.len());
                states.len() - 1
            } else {
                let survivor = *links.keys().min().expect("non-empty");
                let absorbed: Vec<usize> = links.keys().copied().filter(|c| *c != survivor).collect();
                if !absorbed.is_empty() {
                    decisions.push(Decision::Merge {
                        evidence: e.key.clone(),
                        survivor: states[survivor].first.clone(),
                        absorbed: absorbed.iter().map(|c| states[*c].first.clone()).collect(),
                        via: absorbed.iter().flat_map(|c| links[c].iter().map(|i| (*i).clone())).collect(),
                    });
                }
                for c in absorbed {
                    parent[c] = survivor;
                    let moved = std::mem::take(&mut states[c].ids);
                    let ev = std::mem::take(&mut states[c].evidence);
                    let merge_id = states[c].has_merge_id;
                    let s = &mut states[survivor];
                    for (k, v) in moved {
                        s.ids.entry(k).or_default().extend(v);
                    }
                    s.evidence.extend(ev);
                    s.has_merge_id |= merge_id;
                }
                survivor
            };
            for &id in &ids {
                if !owner.contains_key(id) {
                    owner.insert(id, target);
                    states[target].ids.entry(id.kind).or_default().push((id.hash.clone(), e.first_seen));
                    if rules.role(id.kind) == Some(Role::Merge) {
                        states[target].has_merge_id = true;
                    }
                }
            }
            states[target].evidence.push(e.key.clone());
            assign_idx.push((e.key.clone(), target));
            break;
        }
    }

    // Clusters are created in canonical order of their first evidence, so the root of
    // every set is the earliest cluster: its first evidence names the profile.
    let mut by_root: BTreeMap<usize, Cluster> = BTreeMap::new();
    let mut assign = BTreeMap::new();
    for (key, c) in assign_idx {
        let root = find(&mut parent, c);
        let pid = profile_id_of(&states[root].first);
        by_root
            .entry(root)
            .or_insert_with(|| Cluster { profile_id: pid.clone(), evidence: Vec::new(), ids: BTreeSet::new() })
            .evidence
            .push(key.clone());
        assign.insert(key, pid);
    }
    for (id, c) in owner {
        let root = find(&mut parent, c);
        if let Some(cluster) = by_root.get_mut(&root) {
            cluster.ids.insert(id.clone());
        }
    }
    Partition { clusters: by_root.into_values().collect(), assign, decisions }
}

/// Co-occurrence bookkeeping that finds shared values (a store's phone typed for many
/// loyalty cards, a family e-mail used by two customer ids): a value is shared as soon as
/// it has been seen, in the same observations, with more distinct values of a more
/// trusted merge type than that type's limit. Depends only on the set of evidence, and
/// once shared a value stays shared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoOccurrence {
    /// kind → distinct partner hashes (kept up to limit + 1).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub partners: BTreeMap<IdentifierKind, BTreeSet<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

impl CoOccurrence {
    /// Records the evidence `others` seen with `me`; true when `me` became shared.
    pub fn observe(&mut self, me: &IdRef, others: &[IdRef], rules: &Rules) -> bool {
        if self.shared {
            return false;
        }
        let my_priority = rules.priority(me.kind);
        for o in others {
            let Some(rule) = rules.rule(o.kind) else { continue };
            if o == me || rule.role != Role::Merge || rule.priority >= my_priority {
                continue;
            }
            let set = self.partners.entry(o.kind).or_default();
            if set.len() <= rule.limit {
                set.insert(o.hash.clone());
            }
            if set.len() > rule.limit {
                self.shared = true;
                self.partners.clear();
                return true;
            }
        }
        false
    }
}

/// Shared values over a whole set of evidence (what the store finds incrementally).
pub fn shared_values(evidence: &[Evidence], rules: &Rules) -> BTreeSet<IdRef> {
    let mut co: HashMap<&IdRef, CoOccurrence> = HashMap::new();
    for e in evidence {
        for id in &e.ids {
            co.entry(id).or_default().observe(id, &e.ids, rules);
        }
    }
    co.into_iter().filter(|(_, c)| c.shared).map(|(id, _)| id.clone()).collect()
}

/// Connected components of evidence through linkable identifiers (each is resolved on
/// its own: profiles never span components). Returns groups of indices into `evidence`.
pub fn components(evidence: &[Evidence], linkable: &dyn Fn(&IdRef) -> bool) -> Vec<Vec<usize>> {
    let mut parent: Vec<usize> = (0..evidence.len()).collect();
    let mut first: HashMap<&IdRef, usize> = HashMap::new();
    for (i, e) in evidence.iter().enumerate() {
        for id in e.ids.iter().filter(|id| linkable(id)) {
            match first.get(id) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    if a != b {
                        parent[a.max(b)] = a.min(b);
                    }
                }
                None => {
                    first.insert(id, i);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..evidence.len() {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    groups.into_values().collect()
}
