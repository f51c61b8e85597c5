//! Incremental resolution over an [`ItemStore`].
//!
//! A batch of observations is grouped by identity key (the row's identifier set):
//! - evidence already stored that brings nothing new costs one batched read;
//! - evidence with new traits, consents or a new day joins them into its evidence item
//!   and its profile (conditional writes on both versions);
//! - new evidence (or evidence seen earlier than known) is structural: the components it
//!   touches are loaded, re-resolved by [`resolve`](crate::resolve::resolve) with the new
//!   evidence, and written back in one transaction per group of components, conditioned
//!   on the versions read. A concurrent resolver that changed any of them makes the
//!   transaction fail and the group is re-read and recomputed: the outcome is the
//!   partition of the whole set of evidence, whatever the order.
//!
//! Erasure and repair go through the same structural step (evidence removed, an
//! identifier excluded).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ariane_shared::identifiers::{identifier_hash, identity_key, Identifier};
use ariane_shared::model::Observation;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::profile::Doc;
use crate::resolve::{components, resolve, Decision, Evidence, IdRef};
use crate::rules::Rules;
use crate::store::{
    by_key, AliasItem, CompEvidence, CompItem, EvItem, Expect, IdItem, Item, ItemStore, Key, Op, ProfileItem, Record, StoreError, Write,
};

const MAX_ATTEMPTS: u32 = 12;

/// Identity key → profile (None: no profile, e.g. erased or only shared identifiers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub identity_key: String,
    pub profile_id: Option<String>,
    pub at: DateTime<Utc>,
    pub observation_id: String,
}

/// One entry of the append-only merge history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub at: DateTime<Utc>,
    /// `merge`, `split`, `dropped`, `shared`, `excluded`, `erased`.
    pub action: String,
    pub profile_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<IdRef>,
    pub evidence: Option<String>,
    pub observation_id: Option<String>,
    pub source_key: Option<String>,
    pub source_line: Option<u64>,
    pub reason: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub observations: u64,
    /// Known evidence with nothing new: reads only.
    pub unchanged: u64,
    pub enriched: u64,
    pub structural: u64,
    pub suppressed: u64,
    pub no_identifier: u64,
    pub retries: u64,
    pub merges: u64,
    pub splits: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub links: Vec<Link>,
    pub history: Vec<HistoryRecord>,
    pub stats: Stats,
}

impl Stats {
    /// Adds another batch's or step's counts.
    pub fn add(&mut self, o: &Stats) {
        self.observations += o.observations;
        self.unchanged += o.unchanged;
        self.enriched += o.enriched;
        self.structural += o.structural;
        self.suppressed += o.suppressed;
        self.no_identifier += o.no_identifier;
        self.retries += o.retries;
        self.merges += o.merges;
        self.splits += o.splits;
    }
}

impl Outcome {
    /// Adds what one successful structural step reported.
    fn absorb(&mut self, step: Outcome) {
        self.links.extend(step.links);
        self.history.extend(step.history);
        self.stats.add(&step.stats);
    }
}

/// The component keys of the evidence items among `records`.
fn components_of<'a>(records: impl IntoIterator<Item = &'a Record>) -> BTreeSet<Key> {
    records
        .into_iter()
        .filter_map(|r| match &r.item {
            Item::Ev(ev) => Some(Key::component(&ev.component)),
            _ => None,
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("gave up after {0} concurrent changes to the same profiles")]
    Contended(u32),
    #[error("component {component} would hold {count} evidence sets (limit {limit}): block or exclude the identifier that links them")]
    ComponentTooLarge { component: String, count: usize, limit: usize },
    #[error("item {key} would take {bytes} bytes (DynamoDB's limit is 400 KB, Ariane keeps {limit}): block or exclude the identifier that links this much")]
    ItemTooLarge { key: String, bytes: usize, limit: usize },
}

/// The largest item the resolver writes: under DynamoDB's 400 KB with room to spare.
pub const MAX_ITEM_BYTES: usize = 350 * 1024;

/// Refuses a write whose item would not fit in DynamoDB, before any request is made.
fn check_item_size(w: &Write) -> Result<(), ResolveError> {
    if let Op::Put(item) = &w.op {
        let bytes = crate::store::item_size(&crate::store::to_attributes(&w.key, 0, item));
        if bytes > MAX_ITEM_BYTES {
            return Err(ResolveError::ItemTooLarge { key: w.key.pk.clone(), bytes, limit: MAX_ITEM_BYTES });
        }
    }
    Ok(())
}

/// New evidence from a batch: its usable identifiers and what its observations said.
#[derive(Clone, Debug)]
struct Incoming {
    key: String,
    first_seen: DateTime<Utc>,
    ids: Vec<IdRef>,
    doc: Doc,
    observation_id: String,
    source_key: String,
    source_line: u64,
}

/// A structural change: evidence to add, evidence to remove, identifiers to exclude or
/// suppress.
#[derive(Clone, Debug, Default)]
struct Change {
    adds: Vec<Incoming>,
    removes: BTreeSet<String>,
    exclude: BTreeSet<IdRef>,
    suppress: BTreeSet<IdRef>,
    /// The identifier an erasure was requested for: its suppression entry keeps the
    /// erased evidence keys, so a retried erasure can report the same links again.
    erase_of: Option<IdRef>,
}

pub struct Resolver<S> {
    pub store: S,
    pub rules: Rules,
}

fn id_ref(i: &Identifier) -> IdRef {
    IdRef { kind: i.kind, hash: identifier_hash(i.kind, &i.value) }
}

impl<S: ItemStore> Resolver<S> {
    pub fn new(store: S, rules: Rules) -> Self {
        Resolver { store, rules }
    }

    /// Resolves a batch of observations. Idempotent: replaying any part of it changes
    /// nothing more.
    pub async fn resolve_batch(&self, observations: &[Observation]) -> Result<Outcome, ResolveError> {
        let mut out = Outcome::default();
        out.stats.observations = observations.len() as u64;
        let mut incoming: BTreeMap<String, Incoming> = BTreeMap::new();
        for obs in observations {
            let usable: Vec<&Identifier> = obs.identifiers.iter().filter(|i| self.rules.usable(i.kind, &i.value)).collect();
            let Some(key) = identity_key(&obs.identifiers).filter(|_| !usable.is_empty()) else {
                out.stats.no_identifier += 1;
                continue;
            };
            let doc = Doc::of_observation(obs, &usable);
            match incoming.get_mut(&key) {
                Some(inc) => {
                    inc.doc.join(&doc, &self.rules);
                    if (obs.observed_at, &obs.observation_id) < (inc.first_seen, &inc.observation_id) {
                        inc.first_seen = obs.observed_at;
                        inc.observation_id = obs.observation_id.clone();
                        inc.source_key = obs.source_key.clone();
                        inc.source_line = obs.source_line;
                    }
                }
                None => {
                    let mut ids: Vec<IdRef> = usable.iter().map(|i| id_ref(i)).collect();
                    ids.sort();
                    ids.dedup();
                    incoming.insert(
                        key.clone(),
                        Incoming {
                            key,
                            first_seen: obs.observed_at,
                            ids,
                            doc,
                            observation_id: obs.observation_id.clone(),
                            source_key: obs.source_key.clone(),
                            source_line: obs.source_line,
                        },
                    );
                }
            }
        }
        let keys: Vec<Key> = incoming.keys().map(|k| Key::evidence(k)).collect();
        let known = by_key(self.store.get_many(&keys).await?);
        let mut structural = Vec::new();
        let mut enrich = Vec::new();
        for inc in incoming.into_values() {
            match known.get(&Key::evidence(&inc.key)) {
                Some(Record { item: Item::Ev(ev), .. }) if ev.first_seen <= inc.first_seen => {
                    let mut joined = ev.doc.clone();
                    if joined.join(&inc.doc, &self.rules) {
                        enrich.push(inc);
                    } else {
                        out.stats.unchanged += 1;
                    }
                }
                _ => structural.push(inc),
            }
        }
        out.stats.structural = structural.len() as u64;
        out.stats.enriched = enrich.len() as u64;
        // Structural changes go in transactions of at most 100 items: chunks of new
        // evidence, halved when a chunk's transaction would be larger.
        let mut pending: Vec<Vec<Incoming>> = structural.chunks(16).rev().map(<[Incoming]>::to_vec).collect();
        while let Some(adds) = pending.pop() {
            let change = Change { adds, ..Change::default() };
            match self.apply_with_retries(change.clone(), &mut out).await {
                Err(ResolveError::Store(StoreError::TooLarge(_))) if change.adds.len() > 1 => {
                    let mut adds = change.adds;
                    let second = adds.split_off(adds.len() / 2);
                    pending.push(second);
                    pending.push(adds);
                }
                other => other?,
            }
        }
        if !enrich.is_empty() {
            // The evidence items just read serve the first attempt (a retry re-reads).
            let read: BTreeMap<Key, Record> =
                enrich.iter().filter_map(|i| known.get(&Key::evidence(&i.key)).map(|r| (r.key.clone(), r.clone()))).collect();
            self.enrich_with_retries(enrich, read, &mut out).await?;
        }
        Ok(out)
    }

    async fn apply_with_retries(&self, change: Change, out: &mut Outcome) -> Result<(), ResolveError> {
        retry_on_conflict(&mut out.stats.retries, || async {
            let mut attempt = Outcome::default();
            self.apply(&change, &mut attempt).await.map(|()| attempt)
        })
        .await
        .map(|done| out.absorb(done))
    }

    /// Enrichment in transactions of at most 99 items: 33 evidence sets, their profiles
    /// and the components that map them.
    async fn enrich_with_retries(&self, enrich: Vec<Incoming>, read: BTreeMap<Key, Record>, out: &mut Outcome) -> Result<(), ResolveError> {
        for chunk in enrich.chunks(33) {
            let mut first =
                Some(chunk.iter().filter_map(|i| read.get(&Key::evidence(&i.key)).map(|r| (r.key.clone(), r.clone()))).collect());
            retry_on_conflict(&mut out.stats.retries, || self.enrich(chunk, first.take())).await?;
        }
        Ok(())
    }

    /// Joins new traits, consents and activity into known evidence and its profile.
    async fn enrich(&self, enrich: &[Incoming], read: Option<BTreeMap<Key, Record>>) -> Result<(), ResolveError> {
        let evs = match read {
            Some(evs) => evs,
            None => by_key(self.store.get_many(&enrich.iter().map(|i| Key::evidence(&i.key)).collect::<Vec<_>>()).await?),
        };
        let comp_keys = components_of(evs.values());
        let comps = by_key(self.store.get_many(&comp_keys.iter().cloned().collect::<Vec<_>>()).await?);
        let mut profile_of: HashMap<&str, Option<String>> = HashMap::new();
        for r in comps.values() {
            if let Item::Comp(c) = &r.item {
                for e in &c.evidence {
                    profile_of.insert(e.key.as_str(), e.profile_id.clone());
                }
            }
        }
        let pkeys: BTreeSet<Key> =
            enrich.iter().filter_map(|i| profile_of.get(i.key.as_str())?.as_ref()).map(|p| Key::profile(p)).collect();
        let mut profiles = by_key(self.store.get_many(&pkeys.into_iter().collect::<Vec<_>>()).await?);
        let mut writes: Vec<Write> = Vec::new();
        let mut used_comps: BTreeSet<Key> = BTreeSet::new();
        let mut profile_writes: BTreeMap<Key, (u64, ProfileItem)> = BTreeMap::new();
        for inc in enrich {
            let ek = Key::evidence(&inc.key);
            let Some(Record { version, item: Item::Ev(ev), .. }) = evs.get(&ek) else {
                // Erased since the first read: its identifiers are suppressed.
                continue;
            };
            let mut ev = ev.clone();
            if !ev.doc.join(&inc.doc, &self.rules) {
                continue;
            }
            // The component (read after the evidence) must still hold it, and its profile
            // must exist: otherwise a concurrent step moved it, so read again.
            let Some(assigned) = profile_of.get(inc.key.as_str()) else {
                return Err(StoreError::Conflict(ek.pk).into());
            };
            used_comps.insert(Key::component(&ev.component));
            writes.push(Write { key: ek, expect: Expect::Version(*version), op: Op::Put(Item::Ev(ev)) });
            let Some(pid) = assigned else { continue };
            let pk = Key::profile(pid);
            let entry = match profile_writes.get_mut(&pk) {
                Some(e) => e,
                None => match profiles.remove(&pk) {
                    Some(Record { version, item: Item::Profile(p), .. }) => profile_writes.entry(pk.clone()).or_insert((version, p)),
                    _ => return Err(StoreError::Conflict(pk.pk).into()),
                },
            };
            let mut contribution = inc.doc.clone();
            contribution.identifiers.clear();
            let held = entry.1.doc.identifiers.clone();
            entry.1.doc.join(&contribution, &self.rules);
            entry.1.doc.restrict_identifiers(&held);
        }
        // The components that map this evidence to its profiles are checked in the same
        // transaction: a structural step that moves evidence to another profile changes
        // them, and this enrichment then retries instead of joining into the old profile.
        for key in used_comps {
            let r = comps.get(&key).ok_or_else(|| StoreError::Conflict(key.pk.clone()))?;
            writes.push(Write { key, expect: Expect::Version(r.version), op: Op::Check });
        }
        for (key, (version, p)) in profile_writes {
            writes.push(Write { key, expect: Expect::Version(version), op: Op::Put(Item::Profile(p)) });
        }
        writes.iter().try_for_each(check_item_size)?;
        if writes.iter().any(|w| w.op != Op::Check) {
            self.store.commit(writes).await?;
        }
        Ok(())
    }

    /// One structural step: read what the change touches, recompute, write back.
    async fn apply(&self, change: &Change, out: &mut Outcome) -> Result<(), ResolveError> {
        let rules = &self.rules;
        let now = Utc::now();
        // 1. Identifier items of the new evidence and of the excluded/suppressed ones.
        let mut first_ids: BTreeSet<IdRef> = change.adds.iter().flat_map(|a| a.ids.iter().cloned()).collect();
        first_ids.extend(change.exclude.iter().cloned());
        first_ids.extend(change.suppress.iter().cloned());
        let mut ids = by_key(self.store.get_many(&first_ids.iter().map(Key::id).collect::<Vec<_>>()).await?);
        let id_item = |ids: &BTreeMap<Key, Record>, id: &IdRef| -> IdItem {
            match ids.get(&Key::id(id)) {
                Some(Record { item: Item::Id(i), .. }) => i.clone(),
                _ => IdItem::default(),
            }
        };
        let mut adds: Vec<&Incoming> = Vec::new();
        let mut suppressed_obs = 0;
        for a in &change.adds {
            if a.ids.iter().any(|i| id_item(&ids, i).suppressed) {
                suppressed_obs += 1;
            } else {
                adds.push(a);
            }
        }
        // 2. Components: those of the new evidence's identifiers, of the evidence that
        // moves or goes, and of the identifiers excluded/suppressed.
        let mut comp_keys: BTreeSet<String> = BTreeSet::new();
        for id in &first_ids {
            if let Some(c) = id_item(&ids, id).component {
                comp_keys.insert(c);
            }
        }
        let ev_keys: Vec<Key> = adds.iter().map(|a| Key::evidence(&a.key)).chain(change.removes.iter().map(|k| Key::evidence(k))).collect();
        let mut evs = by_key(self.store.get_many(&ev_keys).await?);
        for r in evs.values() {
            if let Item::Ev(ev) = &r.item {
                comp_keys.insert(ev.component.clone());
            }
        }
        let comps = by_key(self.store.get_many(&comp_keys.iter().map(|c| Key::component(c)).collect::<Vec<_>>()).await?);
        // 3. All evidence of those components plus the new evidence.
        let mut evidence: BTreeMap<String, Evidence> = BTreeMap::new();
        let mut old_profile: BTreeMap<String, Option<String>> = BTreeMap::new();
        for r in comps.values() {
            if let Item::Comp(c) = &r.item {
                for e in &c.evidence {
                    evidence.insert(e.key.clone(), Evidence { key: e.key.clone(), first_seen: e.first_seen, ids: e.ids.clone() });
                    old_profile.insert(e.key.clone(), e.profile_id.clone());
                }
            }
        }
        let mut new_evidence: BTreeSet<String> = BTreeSet::new();
        for a in &adds {
            match evidence.get_mut(&a.key) {
                Some(e) => e.first_seen = e.first_seen.min(a.first_seen),
                None => {
                    evidence.insert(a.key.clone(), Evidence { key: a.key.clone(), first_seen: a.first_seen, ids: a.ids.clone() });
                    if !evs.contains_key(&Key::evidence(&a.key)) {
                        new_evidence.insert(a.key.clone());
                    }
                }
            }
        }
        for k in &change.removes {
            evidence.remove(k);
        }
        // 4. Identifier items of every identifier involved; shared values found by the
        // new evidence's co-occurrences.
        let all_ids: BTreeSet<IdRef> = evidence.values().flat_map(|e| e.ids.iter().cloned()).chain(first_ids.iter().cloned()).collect();
        // Not the step-1 identifiers again (see step 6: a re-read would hide a concurrent
        // creation of an item this computation assumes absent).
        let missing: Vec<Key> = all_ids.iter().filter(|i| !first_ids.contains(*i)).map(Key::id).collect();
        ids.extend(by_key(self.store.get_many(&missing).await?));
        let mut id_state: BTreeMap<IdRef, IdItem> = all_ids.iter().map(|i| (i.clone(), id_item(&ids, i))).collect();
        let mut history = Vec::new();
        let (mut merges, mut splits) = (0u64, 0u64);
        for a in &adds {
            if !new_evidence.contains(&a.key) {
                continue;
            }
            for id in &a.ids {
                let st = id_state.get_mut(id).expect("all ids loaded");
                if st.co.observe(id, &a.ids, rules) {
                    history.push(HistoryRecord {
                        at: now,
                        action: "shared".into(),
                        profile_id: st.profile_id.clone(),
                        other_profiles: vec![],
                        identifiers: vec![id.clone()],
                        evidence: Some(a.key.clone()),
                        observation_id: Some(a.observation_id.clone()),
                        source_key: Some(a.source_key.clone()),
                        source_line: Some(a.source_line),
                        reason: Some("seen with more values of a more trusted type than its limit".into()),
                    });
                }
            }
        }
        for id in &change.exclude {
            id_state.get_mut(id).expect("loaded").excluded = true;
        }
        for id in &change.suppress {
            let st = id_state.get_mut(id).expect("loaded");
            st.suppressed = true;
        }
        if let Some(st) = change.erase_of.as_ref().and_then(|r| id_state.get_mut(r)) {
            st.erased_evidence.extend(change.removes.iter().cloned());
        }
        let linkable_set: BTreeSet<IdRef> = id_state.iter().filter(|(_, s)| linkable_state(s)).map(|(i, _)| i.clone()).collect();
        let linkable = |id: &IdRef| linkable_set.contains(id);
        // 5. Re-resolve.
        let list: Vec<Evidence> = evidence.into_values().collect();
        let groups = components(&list, &linkable);
        let mut new_comps: BTreeMap<String, CompItem> = BTreeMap::new();
        let mut new_profile: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut clusters = Vec::new();
        let mut decisions = Vec::new();
        for g in groups {
            let mut members: Vec<Evidence> = g.iter().map(|&i| list[i].clone()).collect();
            members.sort_by(|a, b| a.first_seen.cmp(&b.first_seen).then_with(|| a.key.cmp(&b.key)));
            let comp_key = members[0].key.clone();
            if members.len() > rules.max_component_evidence {
                return Err(ResolveError::ComponentTooLarge {
                    component: comp_key,
                    count: members.len(),
                    limit: rules.max_component_evidence,
                });
            }
            let partition = resolve(&members, rules, &linkable);
            let comp = CompItem {
                evidence: members
                    .iter()
                    .map(|e| CompEvidence {
                        key: e.key.clone(),
                        first_seen: e.first_seen,
                        ids: e.ids.clone(),
                        profile_id: partition.assign.get(&e.key).cloned(),
                    })
                    .collect(),
            };
            for e in &comp.evidence {
                new_profile.insert(e.key.clone(), e.profile_id.clone());
            }
            for c in &partition.clusters {
                for id in &c.ids {
                    let st = id_state.get_mut(id).expect("loaded");
                    st.profile_id = Some(c.profile_id.clone());
                }
            }
            for e in &members {
                for id in &e.ids {
                    let st = id_state.get_mut(id).expect("loaded");
                    if !partition.clusters.iter().any(|c| c.ids.contains(id)) {
                        st.profile_id = None;
                    }
                    st.component = if linkable_state(st) { Some(comp_key.clone()) } else { None };
                }
            }
            clusters.extend(partition.clusters);
            decisions.extend(partition.decisions);
            new_comps.insert(comp_key, comp);
        }
        for id in change.suppress.iter().chain(change.exclude.iter()) {
            let st = id_state.get_mut(id).expect("loaded");
            st.component = None;
            if st.suppressed {
                st.profile_id = None;
            }
        }
        // 6. Evidence items and profile documents (rebuilt from the evidence).
        // Only evidence not read in step 2: re-reading an item found absent there would
        // pick up a concurrent creation and condition the write on its version instead of
        // on the absence this computation assumed.
        // Profiles are read before the evidence they are rebuilt from: an enrichment
        // committed in between changes the profile too, so this step's condition on the
        // profile fails instead of rebuilding it from evidence read before that change.
        let old_pids: BTreeSet<String> = old_profile.values().flatten().cloned().collect();
        let mut pkeys: Vec<Key> = old_pids.iter().map(|p| Key::profile(p)).collect();
        pkeys.extend(clusters.iter().map(|c| Key::profile(&c.profile_id)));
        pkeys.extend(old_pids.iter().map(|p| Key::alias(p)));
        let mut profiles = by_key(self.store.get_many(&pkeys).await?);
        let read_in_step_2: BTreeSet<Key> = ev_keys.iter().cloned().collect();
        let need_evs: Vec<Key> = new_profile.keys().map(|k| Key::evidence(k)).filter(|k| !read_in_step_2.contains(k)).collect();
        evs.extend(by_key(self.store.get_many(&need_evs).await?));
        let aliases: BTreeMap<Key, u64> = profiles.iter().filter(|(k, _)| k.sk == "ALIAS").map(|(k, r)| (k.clone(), r.version)).collect();
        let incoming: HashMap<&str, &Incoming> = adds.iter().map(|a| (a.key.as_str(), *a)).collect();
        let mut writes: Vec<Write> = Vec::new();
        let mut ev_docs: HashMap<String, (Doc, Vec<Identifier>)> = HashMap::new();
        // Evidence items this commit writes (each conditioned on the version or absence
        // read), those whose document changes, and the version of each one read.
        let mut ev_written: BTreeSet<String> = BTreeSet::new();
        let mut doc_changed: BTreeSet<String> = BTreeSet::new();
        let mut ev_read_version: BTreeMap<String, u64> = BTreeMap::new();
        for key in new_profile.keys() {
            let ek = Key::evidence(key);
            let existing = evs.get(&ek).and_then(|r| match &r.item {
                Item::Ev(ev) => Some((r.version, ev.clone())),
                _ => None,
            });
            let comp = new_comps.iter().find(|(_, c)| c.evidence.iter().any(|e| &e.key == key)).map(|(k, _)| k.clone()).expect("placed");
            let mut ev = match (&existing, incoming.get(key.as_str())) {
                (Some((_, ev)), inc) => {
                    let mut ev = ev.clone();
                    if let Some(inc) = inc {
                        ev.doc.join(&inc.doc, rules);
                        if inc.first_seen < ev.first_seen {
                            ev.first_seen = inc.first_seen;
                            ev.observation_id = inc.observation_id.clone();
                            ev.source_key = inc.source_key.clone();
                            ev.source_line = inc.source_line;
                        }
                    }
                    ev
                }
                (None, Some(inc)) => EvItem {
                    component: comp.clone(),
                    first_seen: inc.first_seen,
                    ids: inc.ids.clone(),
                    doc: inc.doc.clone(),
                    observation_id: inc.observation_id.clone(),
                    source_key: inc.source_key.clone(),
                    source_line: inc.source_line,
                },
                (None, None) => return Err(StoreError::Conflict(ek.pk).into()),
            };
            ev.component = comp;
            let clear: Vec<Identifier> = ev
                .doc
                .identifiers
                .iter()
                .flat_map(|(k, vs)| vs.iter().filter_map(move |v| crate::rules::parse_kind(k).map(|kind| Identifier::new(kind, v.clone()))))
                .collect();
            ev_docs.insert(key.clone(), (ev.doc.clone(), clear));
            if let Some((version, old)) = &existing {
                ev_read_version.insert(key.clone(), *version);
                if old.doc != ev.doc {
                    doc_changed.insert(key.clone());
                }
            }
            let changed = existing.as_ref().is_none_or(|(_, old)| *old != ev);
            if changed {
                let expect = existing.as_ref().map_or(Expect::Absent, |(v, _)| Expect::Version(*v));
                writes.push(Write { key: ek, expect, op: Op::Put(Item::Ev(ev)) });
                ev_written.insert(key.clone());
            }
        }
        for k in &change.removes {
            if let Some(r) = evs.get(&Key::evidence(k)) {
                writes.push(Write { key: r.key.clone(), expect: Expect::Version(r.version), op: Op::Delete });
                ev_written.insert(k.clone());
            }
        }
        // Identifiers whose linkability this step changes (shared, excluded, suppressed):
        // every component holding one gets a new version even if its content stays, so a
        // concurrent step that read the identifier's old state cannot commit against it.
        let relinked: BTreeSet<&IdRef> =
            id_state.iter().filter(|(id, st)| linkable_state(st) != linkable_state(&id_item(&ids, id))).map(|(id, _)| id).collect();
        let touches_relinked = |c: &CompItem| c.evidence.iter().any(|e| e.ids.iter().any(|i| relinked.contains(i)));
        // Components: rewrite, create, delete.
        for (key, comp) in &new_comps {
            let k = Key::component(key);
            match comps.get(&k) {
                Some(Record { version, item: Item::Comp(old), .. }) if old == comp && !touches_relinked(old) => {
                    writes.push(Write { key: k, expect: Expect::Version(*version), op: Op::Check });
                }
                Some(r) => writes.push(Write { key: k, expect: Expect::Version(r.version), op: Op::Put(Item::Comp(comp.clone())) }),
                None => writes.push(Write { key: k, expect: Expect::Absent, op: Op::Put(Item::Comp(comp.clone())) }),
            }
        }
        for (k, r) in &comps {
            if !new_comps.contains_key(&k.pk["COMP#".len()..]) {
                writes.push(Write { key: k.clone(), expect: Expect::Version(r.version), op: Op::Delete });
            }
        }
        // Identifiers.
        for (id, st) in &id_state {
            let k = Key::id(id);
            match ids.get(&k) {
                // The new evidence's identifiers decided where it links: a concurrent
                // change to one of them (e.g. it became shared) must fail this step.
                Some(Record { version, item: Item::Id(old), .. }) if old == st => {
                    if first_ids.contains(id) {
                        writes.push(Write { key: k, expect: Expect::Version(*version), op: Op::Check });
                    }
                }
                Some(r) => writes.push(Write { key: k, expect: Expect::Version(r.version), op: Op::Put(Item::Id(st.clone())) }),
                None => writes.push(Write { key: k, expect: Expect::Absent, op: Op::Put(Item::Id(st.clone())) }),
            }
        }
        // Profiles, rebuilt from the documents of their evidence. A profile's version
        // covers the documents of the evidence assigned to it (every write that changes
        // an evidence document writes that profile too: enrichment always does, and so
        // does this step, below, even when the rebuilt document is unchanged). So a
        // document read after the profile is guarded by the profile's condition. The
        // others get a condition of their own: evidence read in step 2, before the
        // profiles (this step's own evidence, found stored since the batch was read: an
        // enrichment committed between that read and the profile read changed both, and
        // rebuilding from the stale document would drop its contribution), and evidence
        // that had no stored profile to cover it.
        let stored_profiles: BTreeSet<String> = profiles
            .iter()
            .filter_map(|(k, r)| match &r.item {
                Item::Profile(p) if k.sk == "PROFILE" => Some(p.profile_id.clone()),
                _ => None,
            })
            .collect();
        let covered = |key: &String| {
            ev_written.contains(key)
                || (!read_in_step_2.contains(&Key::evidence(key))
                    && old_profile.get(key).cloned().flatten().is_some_and(|p| stored_profiles.contains(&p)))
        };
        let mut guard_checks: BTreeSet<String> = BTreeSet::new();
        let mut new_pids: BTreeSet<String> = BTreeSet::new();
        for c in &clusters {
            guard_checks.extend(c.evidence.iter().filter(|e| !covered(e)).cloned());
            new_pids.insert(c.profile_id.clone());
            let mut doc = Doc::default();
            let owned_hashes: BTreeSet<&IdRef> = c.ids.iter().collect();
            let mut owned: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for key in &c.evidence {
                let (d, clear) = &ev_docs[key];
                doc.join(d, rules);
                for i in clear {
                    // Held: the identifiers the cluster owns, and shared values (a family
                    // e-mail, a store's phone) its evidence carries: they link nothing and
                    // no lookup resolves them, but they stay the person's contact points.
                    let r = id_ref(i);
                    let shared = id_state.get(&r).is_some_and(|st| st.co.shared && !st.suppressed);
                    if owned_hashes.contains(&r) || shared {
                        owned.entry(i.kind.as_str().to_string()).or_default().insert(i.value.clone());
                    }
                }
            }
            doc.restrict_identifiers(&owned);
            let k = Key::profile(&c.profile_id);
            let absorbed: BTreeSet<String> =
                c.evidence.iter().filter_map(|e| old_profile.get(e).cloned().flatten()).filter(|p| *p != c.profile_id).collect();
            let old = profiles.remove(&k);
            let mut merged_from: BTreeSet<String> = match &old {
                Some(Record { item: Item::Profile(p), .. }) => p.merged_from.iter().cloned().collect(),
                _ => BTreeSet::new(),
            };
            for p in &absorbed {
                if let Some(Record { item: Item::Profile(op), .. }) = profiles.get(&Key::profile(p)) {
                    merged_from.extend(op.merged_from.iter().cloned());
                }
                merged_from.insert(p.clone());
            }
            let comp = new_comps
                .iter()
                .find(|(_, cm)| cm.evidence.iter().any(|e| c.evidence.contains(&e.key)))
                .map(|(k, _)| k.clone())
                .unwrap_or_default();
            let item =
                ProfileItem { profile_id: c.profile_id.clone(), component: comp, doc, merged_from: merged_from.into_iter().collect() };
            let evidence_changed = c.evidence.iter().any(|e| doc_changed.contains(e));
            match old {
                Some(Record { version, item: Item::Profile(p), .. }) if p == item && !evidence_changed => {
                    writes.push(Write { key: k, expect: Expect::Version(version), op: Op::Check });
                }
                Some(r) => writes.push(Write { key: k, expect: Expect::Version(r.version), op: Op::Put(Item::Profile(item)) }),
                None => writes.push(Write { key: k, expect: Expect::Absent, op: Op::Put(Item::Profile(item)) }),
            }
        }
        for key in guard_checks {
            let version = *ev_read_version.get(&key).ok_or_else(|| StoreError::Conflict(Key::evidence(&key).pk))?;
            writes.push(Write { key: Key::evidence(&key), expect: Expect::Version(version), op: Op::Check });
        }
        // A profile split by this step (an exclusion or an erasure cut its evidence apart).
        let split_record = |pid: &String, other_profiles: Vec<String>| HistoryRecord {
            at: now,
            action: "split".into(),
            profile_id: Some(pid.clone()),
            other_profiles,
            identifiers: change.exclude.iter().chain(change.suppress.iter()).cloned().collect(),
            evidence: None,
            observation_id: None,
            source_key: None,
            source_line: None,
            reason: None,
        };
        // Profiles that disappear: merged away (alias to the survivor) or erased.
        for pid in old_pids.iter().filter(|p| !new_pids.contains(*p)) {
            let k = Key::profile(pid);
            if let Some(r) = profiles.get(&k) {
                writes.push(Write { key: k, expect: Expect::Version(r.version), op: Op::Delete });
            }
            let went: BTreeSet<&String> = old_profile
                .iter()
                .filter(|(_, p)| p.as_deref() == Some(pid.as_str()))
                .filter_map(|(e, _)| new_profile.get(e)?.as_ref())
                .collect();
            let evidence_of = |p: &str| {
                decisions.iter().find_map(|d| match d {
                    Decision::Merge { evidence, absorbed, via, .. } if absorbed.iter().any(|a| crate::resolve::profile_id_of(a) == p) => {
                        Some((evidence.clone(), via.clone()))
                    }
                    _ => None,
                })
            };
            if went.len() == 1 {
                let to = (*went.iter().next().expect("one")).clone();
                let alias = Key::alias(pid);
                let expect = aliases.get(&alias).map_or(Expect::Absent, |v| Expect::Version(*v));
                writes.push(Write { key: alias, expect, op: Op::Put(Item::Alias(AliasItem { to: to.clone(), at: now })) });
                let (ev, via) = evidence_of(pid).unwrap_or_default();
                let src = incoming.get(ev.as_str());
                merges += 1;
                history.push(HistoryRecord {
                    at: now,
                    action: "merge".into(),
                    profile_id: Some(to),
                    other_profiles: vec![pid.clone()],
                    identifiers: via,
                    evidence: (!ev.is_empty()).then_some(ev.clone()),
                    observation_id: src.map(|s| s.observation_id.clone()),
                    source_key: src.map(|s| s.source_key.clone()),
                    source_line: src.map(|s| s.source_line),
                    reason: None,
                });
            } else if went.len() > 1 {
                splits += 1;
                history.push(split_record(pid, went.into_iter().cloned().collect()));
            }
        }
        for d in &decisions {
            if let Decision::Dropped { evidence, id, reason } = d {
                if let Some(src) = incoming.get(evidence.as_str()).filter(|_| new_evidence.contains(evidence)) {
                    history.push(HistoryRecord {
                        at: now,
                        action: "dropped".into(),
                        profile_id: new_profile.get(evidence).cloned().flatten(),
                        other_profiles: vec![],
                        identifiers: vec![id.clone()],
                        evidence: Some(evidence.clone()),
                        observation_id: Some(src.observation_id.clone()),
                        source_key: Some(src.source_key.clone()),
                        source_line: Some(src.source_line),
                        reason: Some(format!("{reason:?}")),
                    });
                }
            }
        }
        // A split that keeps its id (the earliest evidence stayed) is a split too.
        for pid in old_pids.iter().filter(|p| new_pids.contains(*p)) {
            let went: BTreeSet<&String> = old_profile
                .iter()
                .filter(|(_, p)| p.as_deref() == Some(pid.as_str()))
                .filter_map(|(e, _)| new_profile.get(e)?.as_ref())
                .collect();
            if went.len() > 1 {
                splits += 1;
                history.push(split_record(pid, went.into_iter().filter(|p| *p != pid).cloned().collect()));
            }
        }
        if writes.len() > 100 {
            return Err(StoreError::TooLarge(writes.len()).into());
        }
        writes.iter().try_for_each(check_item_size)?;
        if writes.iter().any(|w| w.op != Op::Check) {
            self.store.commit(writes).await?;
        }
        // 7. Report: links of evidence whose profile changed (or is new), and removals.
        for (key, pid) in &new_profile {
            if old_profile.get(key) != Some(pid) || new_evidence.contains(key) {
                let src = incoming.get(key.as_str());
                out.links.push(Link {
                    identity_key: key.clone(),
                    profile_id: pid.clone(),
                    at: now,
                    observation_id: src.map(|s| s.observation_id.clone()).unwrap_or_default(),
                });
            }
        }
        for key in &change.removes {
            out.links.push(Link { identity_key: key.clone(), profile_id: None, at: now, observation_id: String::new() });
        }
        out.history.extend(history);
        out.stats.suppressed += suppressed_obs;
        out.stats.merges += merges;
        out.stats.splits += splits;
        Ok(())
    }

    /// The profile an identifier resolves to.
    pub async fn lookup(&self, id: &Identifier) -> Result<Option<String>, ResolveError> {
        let recs = self.store.get_many(&[Key::id(&id_ref(id))]).await?;
        Ok(recs.into_iter().find_map(|r| match r.item {
            Item::Id(i) if !i.suppressed => i.profile_id,
            _ => None,
        }))
    }

    /// The current profile of each evidence (identity key, as the lake's `anchor_id`
    /// carries it): None when the key is unknown, erased, or holds only shared
    /// identifiers. Two batched reads per 100 keys (evidence, then components).
    pub async fn profiles_of_evidence(&self, keys: &[String]) -> Result<BTreeMap<String, Option<String>>, ResolveError> {
        let mut out: BTreeMap<String, Option<String>> = keys.iter().map(|k| (k.clone(), None)).collect();
        let evs = self.store.get_many(&keys.iter().map(|k| Key::evidence(k)).collect::<Vec<_>>()).await?;
        let comp_keys = components_of(&evs);
        for r in self.store.get_many(&comp_keys.into_iter().collect::<Vec<_>>()).await? {
            if let Item::Comp(c) = r.item {
                for e in c.evidence {
                    if let Some(slot) = out.get_mut(&e.key) {
                        *slot = e.profile_id;
                    }
                }
            }
        }
        Ok(out)
    }

    /// A profile by id, following aliases of merged-away ids to the survivor.
    pub async fn profile(&self, pid: &str) -> Result<Option<ProfileItem>, ResolveError> {
        let mut pid = pid.to_string();
        for _ in 0..32 {
            let recs = self.store.get_many(&[Key::profile(&pid), Key::alias(&pid)]).await?;
            let mut alias = None;
            for r in recs {
                match r.item {
                    Item::Profile(p) => return Ok(Some(p)),
                    Item::Alias(a) => alias = Some(a.to),
                    _ => {}
                }
            }
            match alias {
                Some(to) => pid = to,
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Erases the person an identifier belongs to: profile, evidence and identifier
    /// items go; the identifiers stay as suppression entries (hashes only) so an old
    /// export re-ingested cannot re-create the person.
    pub async fn erase(&self, id: &Identifier) -> Result<Outcome, ResolveError> {
        let mut out = Outcome::default();
        let r = id_ref(id);
        let recs = by_key(self.store.get_many(&[Key::id(&r)]).await?);
        let item = match recs.get(&Key::id(&r)) {
            Some(Record { item: Item::Id(i), .. }) => i.clone(),
            _ => IdItem::default(),
        };
        if item.suppressed && item.profile_id.is_none() {
            // Already erased (a redelivered or retried request): DynamoDB has nothing more
            // to do; the links are reported again in case writing them failed last time.
            let now = Utc::now();
            out.links = item
                .erased_evidence
                .iter()
                .map(|k| Link { identity_key: k.clone(), profile_id: None, at: now, observation_id: String::new() })
                .collect();
            return Ok(out);
        }
        let mut change = Change { erase_of: Some(r.clone()), ..Change::default() };
        change.suppress.insert(r.clone());
        if let (Some(pid), Some(comp)) = (&item.profile_id, &item.component) {
            let comps = self.store.get_many(&[Key::component(comp)]).await?;
            for rec in comps {
                if let Item::Comp(c) = rec.item {
                    for e in c.evidence.iter().filter(|e| e.profile_id.as_deref() == Some(pid.as_str())) {
                        change.removes.insert(e.key.clone());
                    }
                }
            }
            let profile_ids: BTreeSet<IdRef> = {
                let evs = self.store.get_many(&change.removes.iter().map(|k| Key::evidence(k)).collect::<Vec<_>>()).await?;
                evs.into_iter()
                    .filter_map(|r| match r.item {
                        Item::Ev(ev) => Some(ev.ids),
                        _ => None,
                    })
                    .flatten()
                    .collect()
            };
            let owners = by_key(self.store.get_many(&profile_ids.iter().map(Key::id).collect::<Vec<_>>()).await?);
            for i in profile_ids {
                let keep = matches!(owners.get(&Key::id(&i)), Some(Record { item: Item::Id(st), .. })
                    if st.co.shared || st.profile_id.as_deref().is_some_and(|p| p != pid));
                if !keep {
                    change.suppress.insert(i);
                }
            }
            out.history.push(HistoryRecord {
                at: Utc::now(),
                action: "erased".into(),
                profile_id: Some(pid.clone()),
                other_profiles: vec![],
                identifiers: change.suppress.iter().cloned().collect(),
                evidence: None,
                observation_id: None,
                source_key: None,
                source_line: None,
                reason: Some("erasure request".into()),
            });
        }
        self.apply_with_retries(change, &mut out).await?;
        Ok(out)
    }

    /// Repair: the identifier stops linking (a wrong merge is split again) and the
    /// decision is kept, so later observations respect it.
    pub async fn exclude(&self, id: &Identifier) -> Result<Outcome, ResolveError> {
        let mut out = Outcome::default();
        let mut change = Change::default();
        change.exclude.insert(id_ref(id));
        self.apply_with_retries(change, &mut out).await?;
        out.history.push(HistoryRecord {
            at: Utc::now(),
            action: "excluded".into(),
            profile_id: None,
            other_profiles: vec![],
            identifiers: vec![id_ref(id)],
            evidence: None,
            observation_id: None,
            source_key: None,
            source_line: None,
            reason: Some("repair command".into()),
        });
        Ok(out)
    }
}

fn linkable_state(st: &IdItem) -> bool {
    !st.co.shared && !st.excluded && !st.suppressed
}

/// Runs `step` until it does not fail on a concurrent change (a failed condition), with
/// backoff; gives up after `MAX_ATTEMPTS`.
async fn retry_on_conflict<T, F, Fut>(retries: &mut u64, mut step: F) -> Result<T, ResolveError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ResolveError>>,
{
    for attempt in 0..MAX_ATTEMPTS {
        match step().await {
            Err(ResolveError::Store(StoreError::Conflict(_))) => {
                *retries += 1;
                backoff(attempt).await;
            }
            done => return done,
        }
    }
    Err(ResolveError::Contended(MAX_ATTEMPTS))
}

async fn backoff(attempt: u32) {
    let jitter = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0) % 7) as u64;
    tokio::time::sleep(std::time::Duration::from_millis((2u64 << attempt.min(7)) + jitter)).await;
}
