//! One structural step of the resolver, as a list of named steps over the state they
//! share: read what the change touches, recompute the partition of the components it
//! reaches, and write it all back in one transaction conditioned on everything the
//! computation read (see `docs/identity.md`, the rules that make the optimistic lock
//! sound):
//!
//! 1. [`Step::read_identifiers`]: the identifier items of the new evidence and of the
//!    identifiers excluded or suppressed;
//! 2. [`Step::read_components`]: the evidence items that move or go, and the components
//!    of all of them;
//! 3. [`Step::gather_evidence`]: every evidence of those components plus the new one;
//! 4. [`Step::read_other_identifiers`] and [`Step::mark_identifiers`]: the items of every
//!    identifier involved; values found shared, excluded, suppressed;
//! 5. [`Step::repartition`]: the rules over the evidence (pure);
//! 6. [`Step::read_profiles_and_evidence`], then the writes: evidence, components,
//!    identifiers, profiles (with the guards on the documents they were rebuilt from),
//!    profiles that disappear, and the history;
//! 7. [`Step::commit`] and [`Step::report`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ariane_shared::identifiers::Identifier;
use chrono::{DateTime, Utc};

use crate::change::{check_item_size, linkable_state, Change, HistoryRecord, Incoming, Link, Outcome, ResolveError};
use crate::partition::{components, resolve, Cluster, Decision, Evidence, IdRef};
use crate::profile::{Doc, Join};
use crate::rules::Rules;
use crate::store::{
    by_key, AliasItem, CompEvidence, CompItem, EvItem, Expect, IdItem, Item, ItemStore, Key, Op, ProfileItem, Record, StoreError, Write,
};

/// The state one attempt of a structural step builds up.
pub(crate) struct Step<'a> {
    rules: &'a Rules,
    change: &'a Change,
    now: DateTime<Utc>,
    /// Identifiers read in step 1 (never re-read in the attempt).
    first_ids: BTreeSet<IdRef>,
    /// Identifier items read (steps 1 and 4).
    ids: BTreeMap<Key, Record>,
    /// The change's new evidence, but what carries a suppressed (erased) identifier.
    adds: Vec<&'a Incoming>,
    suppressed_obs: u64,
    /// Evidence documents that forgot an erased value.
    forgotten: u64,
    /// Evidence items read in step 2, before the profiles.
    read_in_step_2: BTreeSet<Key>,
    /// Evidence items read (steps 2 and 6).
    evs: BTreeMap<Key, Record>,
    comps: BTreeMap<Key, Record>,
    /// The evidence the step recomputes (until [`Step::repartition`] takes it).
    evidence: BTreeMap<String, Evidence>,
    /// Evidence key → its profile as read.
    old_profile: BTreeMap<String, Option<String>>,
    /// Evidence this step creates.
    new_evidence: BTreeSet<String>,
    /// Every identifier involved, as it will be written.
    id_state: BTreeMap<IdRef, IdItem>,
    history: Vec<HistoryRecord>,
    merges: u64,
    splits: u64,
    new_comps: BTreeMap<String, CompItem>,
    /// Evidence key → its profile after the step.
    new_profile: BTreeMap<String, Option<String>>,
    clusters: Vec<Cluster>,
    decisions: Vec<Decision>,
    /// Profile and alias items read (step 6).
    profiles: BTreeMap<Key, Record>,
    /// Evidence key → its document after the step, and the clear identifiers it carries.
    ev_docs: HashMap<String, (Doc, Vec<Identifier>)>,
    /// Evidence items this commit writes (each conditioned on the version or absence read).
    ev_written: BTreeSet<String>,
    /// Evidence whose document this commit changes.
    doc_changed: BTreeSet<String>,
    ev_read_version: BTreeMap<String, u64>,
    writes: Vec<Write>,
    /// The most items one transaction may hold: a step with more is a large operation.
    max_items: usize,
    /// 1 when this step was applied as a large operation.
    large_operations: u64,
    /// Profiles this step joins what it brings into instead of rebuilding them from every
    /// evidence document (see [`Step::joinable_profiles`]).
    joined: BTreeSet<String>,
    /// Evidence key → the component it is placed in.
    placed: HashMap<String, String>,
}

fn id_item(ids: &BTreeMap<Key, Record>, id: &IdRef) -> IdItem {
    match ids.get(&Key::id(id)) {
        Some(Record { item: Item::Id(i), .. }) => i.clone(),
        _ => IdItem::default(),
    }
}

impl<'a> Step<'a> {
    pub(crate) fn new(rules: &'a Rules, change: &'a Change, max_items: usize) -> Self {
        Step {
            max_items,
            large_operations: 0,
            joined: BTreeSet::new(),
            placed: HashMap::new(),
            rules,
            change,
            now: Utc::now(),
            first_ids: BTreeSet::new(),
            ids: BTreeMap::new(),
            adds: Vec::new(),
            suppressed_obs: 0,
            forgotten: 0,
            read_in_step_2: BTreeSet::new(),
            evs: BTreeMap::new(),
            comps: BTreeMap::new(),
            evidence: BTreeMap::new(),
            old_profile: BTreeMap::new(),
            new_evidence: BTreeSet::new(),
            id_state: BTreeMap::new(),
            history: Vec::new(),
            merges: 0,
            splits: 0,
            new_comps: BTreeMap::new(),
            new_profile: BTreeMap::new(),
            clusters: Vec::new(),
            decisions: Vec::new(),
            profiles: BTreeMap::new(),
            ev_docs: HashMap::new(),
            ev_written: BTreeSet::new(),
            doc_changed: BTreeSet::new(),
            ev_read_version: BTreeMap::new(),
            writes: Vec::new(),
        }
    }

    /// Runs every step of one attempt (a concurrent change fails it with a conflict).
    pub(crate) async fn run(mut self, store: &impl ItemStore, out: &mut Outcome) -> Result<(), ResolveError> {
        self.read_identifiers(store).await?;
        self.read_components(store).await?;
        self.gather_evidence();
        self.read_other_identifiers(store).await?;
        self.mark_identifiers();
        self.repartition()?;
        self.read_profiles_and_evidence(store).await?;
        self.write_evidence()?;
        self.write_components();
        self.write_identifiers();
        self.write_profiles()?;
        self.write_vanished_profiles();
        self.record_drops_and_splits();
        self.commit(store).await?;
        self.report(out);
        Ok(())
    }

    /// Step 1: Identifier items of the new evidence and of the excluded/suppressed ones; new
    /// evidence carrying an erased (suppressed) identifier is dropped.
    async fn read_identifiers(&mut self, store: &impl ItemStore) -> Result<(), ResolveError> {
        let change = self.change;
        self.first_ids = change.adds.iter().flat_map(|a| a.ids.iter().cloned()).collect();
        self.first_ids.extend(change.exclude.iter().cloned());
        self.first_ids.extend(change.suppress.iter().cloned());
        self.ids = by_key(store.get_many(&self.first_ids.iter().map(Key::id).collect::<Vec<_>>()).await?);
        for a in &change.adds {
            if a.ids.iter().any(|i| id_item(&self.ids, i).suppressed) {
                self.suppressed_obs += 1;
            } else {
                self.adds.push(a);
            }
        }
        Ok(())
    }

    /// Step 2: Components: those of the new evidence's identifiers, of the evidence that moves
    /// or goes, and of the identifiers excluded/suppressed.
    async fn read_components(&mut self, store: &impl ItemStore) -> Result<(), ResolveError> {
        let mut comp_keys: BTreeSet<String> = self.first_ids.iter().filter_map(|id| id_item(&self.ids, id).component).collect();
        let ev_keys: Vec<Key> = self
            .adds
            .iter()
            .map(|a| &a.key)
            .chain(self.change.removes.iter())
            .chain(self.change.forget_in.iter())
            .map(|k| Key::evidence(k))
            .collect();
        self.evs = by_key(store.get_many(&ev_keys).await?);
        self.read_in_step_2 = ev_keys.into_iter().collect();
        for r in self.evs.values() {
            if let Item::Ev(ev) = &r.item {
                comp_keys.insert(ev.component.clone());
            }
        }
        self.comps = by_key(store.get_many(&comp_keys.iter().map(|c| Key::component(c)).collect::<Vec<_>>()).await?);
        // A large operation in progress: finish it, then start again from what it left.
        if crate::intent::finish_locked(store, self.comps.values()).await? > 0 {
            return Err(StoreError::Conflict("a large operation was in progress".into()).into());
        }
        Ok(())
    }

    /// Step 3: All evidence of those components plus the new evidence, minus what goes.
    fn gather_evidence(&mut self) {
        for r in self.comps.values() {
            if let Item::Comp(c) = &r.item {
                for e in &c.evidence {
                    self.evidence.insert(e.key.clone(), Evidence { key: e.key.clone(), first_seen: e.first_seen, ids: e.ids.clone() });
                    self.old_profile.insert(e.key.clone(), e.profile_id.clone());
                }
            }
        }
        for a in &self.adds {
            match self.evidence.get_mut(&a.key) {
                Some(e) => e.first_seen = e.first_seen.min(a.first_seen),
                None => {
                    self.evidence.insert(a.key.clone(), Evidence { key: a.key.clone(), first_seen: a.first_seen, ids: a.ids.clone() });
                    if !self.evs.contains_key(&Key::evidence(&a.key)) {
                        self.new_evidence.insert(a.key.clone());
                    }
                }
            }
        }
        for k in &self.change.removes {
            self.evidence.remove(k);
        }
    }

    /// Step 4a: The items of every identifier involved, but those of step 1: re-reading an
    /// item found absent there would pick up a concurrent creation and condition the
    /// write on its version instead of on the absence this computation assumed.
    async fn read_other_identifiers(&mut self, store: &impl ItemStore) -> Result<(), ResolveError> {
        let all_ids: BTreeSet<IdRef> =
            self.evidence.values().flat_map(|e| e.ids.iter().cloned()).chain(self.first_ids.iter().cloned()).collect();
        let missing: Vec<Key> = all_ids.iter().filter(|i| !self.first_ids.contains(*i)).map(Key::id).collect();
        self.ids.extend(by_key(store.get_many(&missing).await?));
        self.id_state = all_ids.iter().map(|i| (i.clone(), id_item(&self.ids, i))).collect();
        Ok(())
    }

    /// Step 4b: Values the new evidence shows shared (recorded in the history), identifiers
    /// excluded and suppressed, and the erased evidence an erasure remembers.
    fn mark_identifiers(&mut self) {
        for a in &self.adds {
            if !self.new_evidence.contains(&a.key) {
                continue;
            }
            for id in &a.ids {
                let st = self.id_state.get_mut(id).expect("all ids loaded");
                if st.co.observe(id, &a.ids, self.rules) {
                    self.history.push(HistoryRecord {
                        at: self.now,
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
        for id in &self.change.exclude {
            self.id_state.get_mut(id).expect("loaded").excluded = true;
        }
        for id in &self.change.suppress {
            self.id_state.get_mut(id).expect("loaded").suppressed = true;
        }
        if let Some(st) = self.change.erase_of.as_ref().and_then(|r| self.id_state.get_mut(r)) {
            st.erased_evidence.extend(self.change.removes.iter().cloned());
            st.erased_identifiers.extend(self.change.suppress.iter().map(|i| i.hash.clone()));
            // The lake carries the hash of each value as written; with a fold (an e-mail's
            // dots or tag) it differs from the lookup form's: the purge gets both.
            for k in &self.change.removes {
                if let Some(Record { item: Item::Ev(ev), .. }) = self.evs.get(&Key::evidence(k)) {
                    for (kind, values) in &ev.doc.identifiers {
                        let Some(kind) = crate::rules::parse_kind(kind) else { continue };
                        for v in values {
                            let written = Identifier::new(kind, v.clone());
                            if self.change.suppress.contains(&self.rules.id_ref(&written)) {
                                st.erased_identifiers.insert(written.hash());
                            }
                        }
                    }
                }
            }
            st.erased_profiles.extend(self.change.erased_profile.iter().cloned());
        }
    }

    /// Step 5: The components and their partition into profiles; where every identifier now
    /// points.
    fn repartition(&mut self) -> Result<(), ResolveError> {
        let rules = self.rules;
        let linkable_set: BTreeSet<IdRef> = self.id_state.iter().filter(|(_, s)| linkable_state(s)).map(|(i, _)| i.clone()).collect();
        let linkable = |id: &IdRef| linkable_set.contains(id);
        let list: Vec<Evidence> = std::mem::take(&mut self.evidence).into_values().collect();
        for g in components(&list, &linkable) {
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
                lock: None,
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
                self.new_profile.insert(e.key.clone(), e.profile_id.clone());
                self.placed.insert(e.key.clone(), comp_key.clone());
            }
            for c in &partition.clusters {
                for id in &c.ids {
                    self.id_state.get_mut(id).expect("loaded").profile_id = Some(c.profile_id.clone());
                }
            }
            for e in &members {
                for id in &e.ids {
                    let st = self.id_state.get_mut(id).expect("loaded");
                    if !partition.clusters.iter().any(|c| c.ids.contains(id)) {
                        st.profile_id = None;
                    }
                    st.component = if linkable_state(st) { Some(comp_key.clone()) } else { None };
                }
            }
            self.clusters.extend(partition.clusters);
            self.decisions.extend(partition.decisions);
            self.new_comps.insert(comp_key, comp);
        }
        for id in self.change.suppress.iter().chain(self.change.exclude.iter()) {
            let st = self.id_state.get_mut(id).expect("loaded");
            st.component = None;
            if st.suppressed {
                st.profile_id = None;
            }
        }
        Ok(())
    }

    /// Step 6a: The profiles (and aliases) involved, then the evidence items not read in step
    /// Step 2: Profiles are read before the evidence they are rebuilt from: a profile's version
    /// covers its evidence's documents, so an enrichment committed in between fails this
    /// step's condition on the profile instead of being rebuilt away.
    async fn read_profiles_and_evidence(&mut self, store: &impl ItemStore) -> Result<(), ResolveError> {
        let old_pids = self.old_pids();
        let mut pkeys: Vec<Key> = old_pids.iter().map(|p| Key::profile(p)).collect();
        pkeys.extend(self.clusters.iter().map(|c| Key::profile(&c.profile_id)));
        pkeys.extend(old_pids.iter().map(|p| Key::alias(p)));
        self.profiles = by_key(store.get_many(&pkeys).await?);
        self.joined = self.joinable_profiles();
        let need: Vec<Key> = self
            .new_profile
            .iter()
            .filter(|(_, p)| p.as_ref().is_none_or(|p| !self.joined.contains(p)))
            .map(|(k, _)| Key::evidence(k))
            .filter(|k| !self.read_in_step_2.contains(k))
            .collect();
        self.evs.extend(by_key(store.get_many(&need).await?));
        Ok(())
    }

    /// The profiles of this step that are their stored document joined with the documents
    /// this step brings: the join is associative, commutative and idempotent, so when a
    /// profile keeps every evidence it had, gains only new or re-observed evidence, and no
    /// identifier its evidence carries changes hands (which values the profile holds), the
    /// rebuild from every evidence document equals the stored profile joined with the new
    /// contributions, and the step reads and re-hashes none of the old documents. Also
    /// required: each old evidence stays in its component (its item is not rewritten), and
    /// the change only adds (no exclusion, erasure or forgetting, which remove).
    fn joinable_profiles(&self) -> BTreeSet<String> {
        let ch = self.change;
        if !(ch.removes.is_empty() && ch.exclude.is_empty() && ch.suppress.is_empty() && ch.forget_in.is_empty() && ch.erase_of.is_none()) {
            return BTreeSet::new();
        }
        let stored = self.stored_profiles();
        // Identifiers whose hold changes: the profile they point at, or shared, excluded
        // or suppressed.
        let moved: BTreeSet<&IdRef> = self
            .id_state
            .iter()
            .filter(|(id, st)| match self.ids.get(&Key::id(id)) {
                Some(Record { item: Item::Id(old), .. }) => {
                    old.profile_id != st.profile_id
                        || old.co.shared != st.co.shared
                        || old.excluded != st.excluded
                        || old.suppressed != st.suppressed
                }
                _ => false,
            })
            .map(|(id, _)| id)
            .collect();
        let mut old_comp: HashMap<&str, (&str, &[IdRef])> = HashMap::new();
        for (k, r) in &self.comps {
            if let Item::Comp(c) = &r.item {
                for e in &c.evidence {
                    old_comp.insert(e.key.as_str(), (&k.pk["COMP#".len()..], e.ids.as_slice()));
                }
            }
        }
        let mut joinable: BTreeSet<String> = self.clusters.iter().map(|c| c.profile_id.clone()).filter(|p| stored.contains(p)).collect();
        for (e, old) in &self.old_profile {
            let new = self.new_profile.get(e).cloned().flatten();
            if old.is_some() && *old != new {
                // A profile that loses or gains old evidence (a merge, a split, a move).
                joinable.remove(old.as_deref().unwrap_or_default());
                if let Some(p) = &new {
                    joinable.remove(p);
                }
                continue;
            }
            let Some(p) = old else { continue };
            let Some((comp, ids)) = old_comp.get(e.as_str()) else {
                joinable.remove(p);
                continue;
            };
            if self.placed.get(e).map(String::as_str) != Some(*comp) || ids.iter().any(|i| moved.contains(i)) {
                joinable.remove(p);
            }
        }
        // Evidence with no profile before that now has one is new (or re-observed) only if
        // this step brings it.
        for (e, p) in &self.new_profile {
            if let Some(p) = p {
                if !self.new_evidence.contains(e) && self.old_profile.get(e).cloned().flatten().as_ref() != Some(p) {
                    joinable.remove(p);
                }
            }
        }
        joinable
    }

    /// A joined profile (see [`Step::joinable_profiles`]): the stored one, joined with the
    /// documents this step brings to its evidence, restricted to the values it holds.
    fn joined_profile(&self, c: &Cluster) -> Option<ProfileItem> {
        let Some(Record { item: Item::Profile(stored), .. }) = self.profiles.get(&Key::profile(&c.profile_id)) else {
            return None;
        };
        let mut p = stored.clone();
        let owned: BTreeSet<&IdRef> = c.ids.iter().collect();
        let brought: Vec<&Doc> = c.evidence.iter().filter_map(|e| self.incoming(e)).map(|i| &i.doc).collect();
        let mut held = p.doc.identifiers.clone();
        for doc in &brought {
            for (k, values) in &doc.identifiers {
                let Some(kind) = crate::rules::parse_kind(k) else { continue };
                for v in values {
                    let r = self.rules.id_ref(&Identifier::new(kind, v.clone()));
                    let shared = self.id_state.get(&r).is_some_and(|st| st.co.shared && !st.suppressed);
                    if owned.contains(&r) || shared {
                        held.entry(k.clone()).or_default().insert(v.clone());
                    }
                }
            }
        }
        for doc in brought {
            p.doc.join_held(doc, &held, self.rules);
        }
        p.doc.restrict_identifiers(&held);
        p.component = self.cluster_component(c);
        Some(p)
    }

    fn cluster_component(&self, c: &Cluster) -> String {
        c.evidence.first().and_then(|e| self.placed.get(e)).cloned().unwrap_or_default()
    }

    fn old_pids(&self) -> BTreeSet<String> {
        self.old_profile.values().flatten().cloned().collect()
    }

    fn incoming(&self, key: &str) -> Option<&'a Incoming> {
        self.adds.iter().find(|a| a.key == key).copied()
    }

    /// The component an evidence is placed in.
    fn component_of(&self, evidence: &str) -> Option<&String> {
        self.placed.get(evidence)
    }

    /// Step 6b: Evidence items: new ones created, existing ones joined with what this step
    /// brings and moved to their component; removed ones deleted.
    fn write_evidence(&mut self) -> Result<(), ResolveError> {
        let keys: Vec<String> = self.new_profile.keys().cloned().collect();
        for key in keys {
            let ek = Key::evidence(&key);
            let existing = self.evs.get(&ek).and_then(|r| match &r.item {
                Item::Ev(ev) => Some((r.version, ev.clone())),
                _ => None,
            });
            let comp = self.component_of(&key).expect("placed").clone();
            if existing.is_none()
                && self.incoming(&key).is_none()
                && self.new_profile[&key].as_ref().is_some_and(|p| self.joined.contains(p))
            {
                // Old evidence of a joined profile: not read, and unchanged.
                continue;
            }
            let mut ev = match (&existing, self.incoming(&key)) {
                (Some((_, ev)), inc) => {
                    let mut ev = ev.clone();
                    if let Some(inc) = inc {
                        ev.doc.join(&inc.doc, self.rules);
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
            if self.change.forget_in.contains(&key) && crate::profile::forget(&mut ev.doc, &self.change.forget_values) {
                self.forgotten += 1;
            }
            let clear: Vec<Identifier> = ev
                .doc
                .identifiers
                .iter()
                .flat_map(|(k, vs)| vs.iter().filter_map(move |v| crate::rules::parse_kind(k).map(|kind| Identifier::new(kind, v.clone()))))
                .collect();
            self.ev_docs.insert(key.clone(), (ev.doc.clone(), clear));
            if let Some((version, old)) = &existing {
                self.ev_read_version.insert(key.clone(), *version);
                if old.doc != ev.doc {
                    self.doc_changed.insert(key.clone());
                }
            }
            if existing.as_ref().is_none_or(|(_, old)| *old != ev) {
                let expect = existing.as_ref().map_or(Expect::Absent, |(v, _)| Expect::Version(*v));
                self.writes.push(Write { key: ek, expect, op: Op::Put(Item::Ev(ev)) });
                self.ev_written.insert(key);
            }
        }
        for k in &self.change.removes {
            if let Some(r) = self.evs.get(&Key::evidence(k)) {
                self.writes.push(Write { key: r.key.clone(), expect: Expect::Version(r.version), op: Op::Delete });
                self.ev_written.insert(k.clone());
            }
        }
        Ok(())
    }

    /// 6c. Components: rewritten, created, deleted, or checked. Identifiers whose item
    /// this step changes (linkability, co-occurrence, pointers): every component holding
    /// one gets a new version even if its content stays, so a concurrent step that read
    /// the identifier's old state cannot commit against it, and a large operation's lock
    /// on the component covers the identifier items behind it ([`crate::intent`]).
    fn write_components(&mut self) {
        let changed: BTreeSet<&IdRef> = self.id_state.iter().filter(|(id, st)| **st != id_item(&self.ids, id)).map(|(id, _)| id).collect();
        let holds_a_changed_id = |c: &CompItem| c.evidence.iter().any(|e| e.ids.iter().any(|i| changed.contains(i)));
        for (key, comp) in &self.new_comps {
            let k = Key::component(key);
            match self.comps.get(&k) {
                Some(Record { version, item: Item::Comp(old), .. }) if old == comp && !holds_a_changed_id(old) => {
                    self.writes.push(Write { key: k, expect: Expect::Version(*version), op: Op::Check });
                }
                Some(r) => self.writes.push(Write { key: k, expect: Expect::Version(r.version), op: Op::Put(Item::Comp(comp.clone())) }),
                None => self.writes.push(Write { key: k, expect: Expect::Absent, op: Op::Put(Item::Comp(comp.clone())) }),
            }
        }
        for (k, r) in &self.comps {
            if !self.new_comps.contains_key(&k.pk["COMP#".len()..]) {
                self.writes.push(Write { key: k.clone(), expect: Expect::Version(r.version), op: Op::Delete });
            }
        }
    }

    /// 6d. Identifier items that change; the new evidence's identifiers decided where it
    /// links, so a concurrent change to one of them (it became shared) fails the step.
    fn write_identifiers(&mut self) {
        for (id, st) in &self.id_state {
            let k = Key::id(id);
            match self.ids.get(&k) {
                Some(Record { version, item: Item::Id(old), .. }) if old == st => {
                    if self.first_ids.contains(id) {
                        self.writes.push(Write { key: k, expect: Expect::Version(*version), op: Op::Check });
                    }
                }
                Some(r) => self.writes.push(Write { key: k, expect: Expect::Version(r.version), op: Op::Put(Item::Id(st.clone())) }),
                None => self.writes.push(Write { key: k, expect: Expect::Absent, op: Op::Put(Item::Id(st.clone())) }),
            }
        }
    }

    /// 6e. Profiles, rebuilt from the documents of their evidence. A profile's version
    /// covers the documents of the evidence assigned to it: every write that changes an
    /// evidence document writes that profile too (enrichment always does, and so does
    /// this step, even when the rebuilt document is unchanged), so a document read after
    /// the profile is guarded by the profile's condition. The others get a condition of
    /// their own: evidence read in step 2, before the profiles (this step's own evidence,
    /// found stored since the batch was read: an enrichment committed between that read
    /// and the profile read changed both, and rebuilding from the stale document would
    /// drop its contribution), and evidence that had no stored profile to cover it.
    fn write_profiles(&mut self) -> Result<(), ResolveError> {
        let stored_profiles = self.stored_profiles();
        let covered = |key: &String| {
            self.ev_written.contains(key)
                || (!self.read_in_step_2.contains(&Key::evidence(key))
                    && self.old_profile.get(key).cloned().flatten().is_some_and(|p| stored_profiles.contains(&p)))
        };
        let mut guard_checks: BTreeSet<String> = BTreeSet::new();
        let mut writes = Vec::new();
        for c in &self.clusters {
            guard_checks.extend(c.evidence.iter().filter(|e| !covered(e)).cloned());
            let item = match self.joined.contains(&c.profile_id) {
                true => self.joined_profile(c).ok_or_else(|| StoreError::Conflict(Key::profile(&c.profile_id).pk))?,
                false => self.rebuilt_profile(c),
            };
            let k = Key::profile(&c.profile_id);
            let evidence_changed = c.evidence.iter().any(|e| self.doc_changed.contains(e));
            match self.profiles.get(&k) {
                Some(Record { version, item: Item::Profile(p), .. }) if *p == item && !evidence_changed => {
                    writes.push(Write { key: k, expect: Expect::Version(*version), op: Op::Check });
                }
                Some(r) => writes.push(Write { key: k, expect: Expect::Version(r.version), op: Op::Put(Item::Profile(item)) }),
                None => writes.push(Write { key: k, expect: Expect::Absent, op: Op::Put(Item::Profile(item)) }),
            }
        }
        for key in guard_checks {
            let version = *self.ev_read_version.get(&key).ok_or_else(|| StoreError::Conflict(Key::evidence(&key).pk))?;
            writes.push(Write { key: Key::evidence(&key), expect: Expect::Version(version), op: Op::Check });
        }
        self.writes.extend(writes);
        Ok(())
    }

    /// The profiles read in step 6 that are stored (not aliases, not missing).
    fn stored_profiles(&self) -> BTreeSet<String> {
        self.profiles
            .iter()
            .filter_map(|(k, r)| match &r.item {
                Item::Profile(p) if k.sk == "PROFILE" => Some(p.profile_id.clone()),
                _ => None,
            })
            .collect()
    }

    /// The profile item of a cluster: the join of its evidence's documents, restricted to
    /// the identifiers it holds, with the ids merged into it.
    fn rebuilt_profile(&self, c: &Cluster) -> ProfileItem {
        let mut doc = Doc::default();
        let owned_hashes: BTreeSet<&IdRef> = c.ids.iter().collect();
        let mut owned: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for key in &c.evidence {
            let (_, clear) = &self.ev_docs[key];
            for i in clear {
                // Held: the identifiers the cluster owns, and shared values (a family
                // e-mail, a store's phone) its evidence carries: they link nothing and no
                // lookup resolves them, but they stay the person's contact points.
                let r = self.rules.id_ref(i);
                let shared = self.id_state.get(&r).is_some_and(|st| st.co.shared && !st.suppressed);
                if owned_hashes.contains(&r) || shared {
                    owned.entry(i.kind.as_str().to_string()).or_default().insert(i.value.clone());
                }
            }
        }
        for key in &c.evidence {
            doc.join_held(&self.ev_docs[key].0, &owned, self.rules);
        }
        doc.restrict_identifiers(&owned);
        let absorbed: BTreeSet<String> =
            c.evidence.iter().filter_map(|e| self.old_profile.get(e).cloned().flatten()).filter(|p| *p != c.profile_id).collect();
        let mut merged_from: BTreeSet<String> = match self.profiles.get(&Key::profile(&c.profile_id)) {
            Some(Record { item: Item::Profile(p), .. }) => p.merged_from.iter().cloned().collect(),
            _ => BTreeSet::new(),
        };
        for p in &absorbed {
            if let Some(Record { item: Item::Profile(op), .. }) = self.profiles.get(&Key::profile(p)) {
                merged_from.extend(op.merged_from.iter().cloned());
            }
            merged_from.insert(p.clone());
        }
        let component = self.cluster_component(c);
        ProfileItem { profile_id: c.profile_id.clone(), component, doc, merged_from: merged_from.into_iter().collect() }
    }

    /// The new profiles an old profile's evidence went to.
    fn went_to(&self, pid: &str) -> BTreeSet<String> {
        self.old_profile.iter().filter(|(_, p)| p.as_deref() == Some(pid)).filter_map(|(e, _)| self.new_profile.get(e)?.clone()).collect()
    }

    fn split_record(&self, pid: &str, other_profiles: Vec<String>) -> HistoryRecord {
        HistoryRecord {
            at: self.now,
            action: "split".into(),
            profile_id: Some(pid.to_string()),
            other_profiles,
            identifiers: self.change.exclude.iter().chain(self.change.suppress.iter()).cloned().collect(),
            evidence: None,
            observation_id: None,
            source_key: None,
            source_line: None,
            reason: None,
        }
    }

    /// 6f. Profiles that disappear: merged away (an alias to the survivor, a `merge`
    /// record naming the evidence and identifiers that linked them), split apart, or
    /// erased.
    fn write_vanished_profiles(&mut self) {
        let new_pids: BTreeSet<&String> = self.clusters.iter().map(|c| &c.profile_id).collect();
        let vanished: Vec<String> = self.old_pids().into_iter().filter(|p| !new_pids.contains(p)).collect();
        for pid in vanished {
            let k = Key::profile(&pid);
            if let Some(r) = self.profiles.get(&k) {
                self.writes.push(Write { key: k, expect: Expect::Version(r.version), op: Op::Delete });
            }
            let went = self.went_to(&pid);
            if went.len() == 1 {
                let to = went.into_iter().next().expect("one");
                let alias = Key::alias(&pid);
                let expect = match self.profiles.get(&alias) {
                    Some(r) => Expect::Version(r.version),
                    None => Expect::Absent,
                };
                self.writes.push(Write { key: alias, expect, op: Op::Put(Item::Alias(AliasItem { to: to.clone(), at: self.now })) });
                let (ev, via) = self
                    .decisions
                    .iter()
                    .find_map(|d| match d {
                        Decision::Merge { evidence, absorbed, via, .. }
                            if absorbed.iter().any(|a| crate::partition::profile_id_of(a) == pid) =>
                        {
                            Some((evidence.clone(), via.clone()))
                        }
                        _ => None,
                    })
                    .unwrap_or_default();
                let src = self.incoming(&ev);
                self.merges += 1;
                self.history.push(HistoryRecord {
                    at: self.now,
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
                self.splits += 1;
                let record = self.split_record(&pid, went.into_iter().collect());
                self.history.push(record);
            }
        }
    }

    /// 6g. Identifiers dropped from new evidence by a limit or an attach-only rule, and
    /// splits that keep their id (the earliest evidence stayed).
    fn record_drops_and_splits(&mut self) {
        let mut records = Vec::new();
        for d in &self.decisions {
            if let Decision::Dropped { evidence, id, reason } = d {
                if let Some(src) = self.incoming(evidence).filter(|_| self.new_evidence.contains(evidence)) {
                    records.push(HistoryRecord {
                        at: self.now,
                        action: "dropped".into(),
                        profile_id: self.new_profile.get(evidence).cloned().flatten(),
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
        let new_pids: BTreeSet<&String> = self.clusters.iter().map(|c| &c.profile_id).collect();
        for pid in self.old_pids().into_iter().filter(|p| new_pids.contains(p)) {
            let went = self.went_to(&pid);
            if went.len() > 1 {
                self.splits += 1;
                records.push(self.split_record(&pid, went.into_iter().filter(|p| *p != pid).collect()));
            }
        }
        self.history.extend(records);
    }

    /// Step 7a: One transaction (DynamoDB's 100-item limit and item size checked first); a
    /// step that only checks writes nothing.
    async fn commit(&mut self, store: &impl ItemStore) -> Result<(), ResolveError> {
        if self.writes.len() > self.max_items {
            // Several new evidence sets: the batch halves the change first.
            if self.change.adds.len() > 1 {
                return Err(StoreError::TooLarge(self.writes.len()).into());
            }
            // Evidence whose document no stored profile's version covers.
            let stored = self.stored_profiles();
            let uncovered =
                self.old_profile.iter().filter(|(_, p)| p.as_ref().is_none_or(|p| !stored.contains(p))).map(|(e, _)| e.clone()).collect();
            let read = crate::intent::Read { comps: &self.comps, ids: &self.ids, uncovered };
            crate::intent::commit_large(store, std::mem::take(&mut self.writes), read, self.max_items).await?;
            self.large_operations += 1;
            return Ok(());
        }
        self.writes.iter().try_for_each(check_item_size)?;
        if self.writes.iter().any(|w| w.op != Op::Check) {
            store.commit(std::mem::take(&mut self.writes)).await?;
        }
        Ok(())
    }

    /// Step 7b: Links of evidence whose profile changed (or is new), removals, history, counts.
    fn report(self, out: &mut Outcome) {
        for (key, pid) in &self.new_profile {
            if self.old_profile.get(key) != Some(pid) || self.new_evidence.contains(key) {
                out.links.push(Link {
                    identity_key: key.clone(),
                    profile_id: pid.clone(),
                    at: self.now,
                    observation_id: self.incoming(key).map(|s| s.observation_id.clone()).unwrap_or_default(),
                });
            }
        }
        for key in &self.change.removes {
            out.links.push(Link { identity_key: key.clone(), profile_id: None, at: self.now, observation_id: String::new() });
        }
        out.history.extend(self.history);
        out.stats.suppressed += self.suppressed_obs;
        out.stats.merges += self.merges;
        out.stats.splits += self.splits;
        out.stats.forgotten += self.forgotten;
        out.stats.large_operations += self.large_operations;
        out.stats.profiles_joined += self.clusters.iter().filter(|c| self.joined.contains(&c.profile_id)).count() as u64;
        out.stats.profiles_rebuilt += self.clusters.iter().filter(|c| !self.joined.contains(&c.profile_id)).count() as u64;
    }
}
