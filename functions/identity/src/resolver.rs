//! Incremental resolution over an [`ItemStore`].
//!
//! A batch of observations is grouped by identity key (the row's identifier set):
//! - evidence already stored that brings nothing new costs one batched read;
//! - evidence with new traits, consents or a new day joins them into its evidence item
//!   and its profile (conditional writes on both versions);
//! - new evidence (or evidence seen earlier than known) is structural: the components it
//!   touches are loaded, re-resolved by [`resolve`](crate::partition::resolve) with the new
//!   evidence, and written back in one transaction per group of components, conditioned
//!   on the versions read. A concurrent resolver that changed any of them makes the
//!   transaction fail and the group is re-read and recomputed: the outcome is the
//!   partition of the whole set of evidence, whatever the order.
//!
//! Erasure and repair go through the same structural step (evidence removed, an
//! identifier excluded).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ariane_shared::backoff::Backoff;
use ariane_shared::identifiers::{identity_key, Identifier};
use ariane_shared::model::Observation;
use chrono::Utc;

use crate::change::{check_item_size, components_of, Change, Incoming};
pub use crate::change::{HistoryRecord, Link, Outcome, ResolveError, Stats, MAX_ITEM_BYTES};
use crate::partition::IdRef;
use crate::profile::Join;
use crate::rules::Rules;
use crate::step::Step;
use crate::store::{by_key, EvItem, Expect, IdItem, Item, ItemStore, Key, Op, ProfileItem, Record, StoreError, Write};

const MAX_ATTEMPTS: u32 = 12;

/// Evidence sets an erasure round removes at most (halved while a round does not fit in
/// one transaction).
pub const ERASE_CHUNK: usize = 32;
/// Rounds of one erasure before giving up (the component limit, 600, in rounds of one).
const MAX_ERASE_ROUNDS: u32 = 700;

pub struct Resolver<S> {
    pub store: S,
    pub rules: Rules,
    /// The wait between attempts of a step that lost a race.
    pub backoff: Backoff,
    /// The most items one transaction holds (DynamoDB: 100); a structural step with more
    /// is applied in chunks ([`crate::intent`]). Tests lower it to exercise that path.
    pub max_transaction_items: usize,
}

/// Why an identifier resolves to no profile ([`Resolver::why_unlinked`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unlinked {
    /// The rules block the value (`config/identity.toml`).
    Blocked,
    /// No identifier item: never observed.
    NeverObserved,
    /// Erased: a suppression entry remains.
    Erased,
    /// Excluded by a repair.
    Excluded,
    /// A shared value, which links no one.
    Shared,
    /// Observed, attached to no profile.
    Unattached,
}

impl std::fmt::Display for Unlinked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unlinked::Blocked => "the value is blocked by config/identity.toml",
            Unlinked::NeverObserved => "never observed (check the value's spelling)",
            Unlinked::Erased => "erased (a suppression entry remains)",
            Unlinked::Excluded => "excluded by a repair",
            Unlinked::Shared => "a shared value, which links no one",
            Unlinked::Unattached => "observed but attached to no profile",
        })
    }
}

/// The evidence that built a profile ([`Resolver::profile_evidence`]): what the identity
/// decisions of a person's journey are read from.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileEvidence {
    /// The profile (holds clear identifiers and traits: personal data).
    pub profile: ProfileItem,
    /// Each evidence item (identity key, item) the profile's component assigns to it,
    /// ordered by first seen, then key.
    pub evidence: Vec<(String, EvItem)>,
    /// The identifiers of that evidence that link nothing (shared, excluded or suppressed).
    pub not_linking: BTreeSet<IdRef>,
}

/// The default [`Resolver::backoff`]: 2 ms doubling up to 256 ms, with jitter.
pub const CONFLICT_BACKOFF: Backoff = Backoff::new(std::time::Duration::from_millis(2), 7);

impl<S: ItemStore> Resolver<S> {
    pub fn new(store: S, rules: Rules) -> Self {
        Resolver { store, rules, backoff: CONFLICT_BACKOFF, max_transaction_items: 100 }
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
            let doc = crate::profile::contribution(obs, &usable);
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
                    let mut ids: Vec<IdRef> = usable.iter().map(|i| self.rules.id_ref(i)).collect();
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
        let mut known = by_key(self.store.get_many(&keys).await?);
        let mut structural = Vec::new();
        let mut enrich = Vec::new();
        for inc in incoming.into_values() {
            match known.get(&Key::evidence(&inc.key)) {
                Some(Record { item: Item::Ev(ev), .. }) if ev.first_seen <= inc.first_seen => {
                    if ev.doc.would_change(&inc.doc, &self.rules) {
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
            match self.apply_with_retries(&change, &mut out).await {
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
            let read: BTreeMap<Key, Record> = enrich.iter().filter_map(|i| known.remove_entry(&Key::evidence(&i.key))).collect();
            self.enrich_with_retries(enrich, read, &mut out).await?;
        }
        Ok(out)
    }

    async fn apply_with_retries(&self, change: &Change, out: &mut Outcome) -> Result<(), ResolveError> {
        retry_on_conflict(&self.backoff, &mut out.stats.retries, || async {
            let mut attempt = Outcome::default();
            self.apply(change, &mut attempt).await.map(|()| attempt)
        })
        .await
        .map(|done| out.absorb(done))
    }

    /// Enrichment in transactions of at most 99 items: 33 evidence sets, their profiles
    /// and the components that map them.
    async fn enrich_with_retries(
        &self,
        enrich: Vec<Incoming>,
        mut read: BTreeMap<Key, Record>,
        out: &mut Outcome,
    ) -> Result<(), ResolveError> {
        for chunk in enrich.chunks(33) {
            let mut first = Some(chunk.iter().filter_map(|i| read.remove_entry(&Key::evidence(&i.key))).collect());
            retry_on_conflict(&self.backoff, &mut out.stats.retries, || self.enrich(chunk, first.take())).await?;
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
        // A large operation in progress over one of them: finish it, then read again.
        if crate::intent::finish_locked(&self.store, comps.values()).await? > 0 {
            return Err(StoreError::Conflict("a large operation was in progress".into()).into());
        }
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
            entry.1.doc.join_held(&contribution, &held, &self.rules);
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

    /// One structural step: read what the change touches, recompute, write back (the
    /// named steps are in [`crate::step`]).
    async fn apply(&self, change: &Change, out: &mut Outcome) -> Result<(), ResolveError> {
        Step::new(&self.rules, change, self.max_transaction_items).run(&self.store, out).await
    }

    /// Evidence items and their components, after finishing any large operation that
    /// locks one of them (then read again: the reader sees each operation complete).
    async fn settled_evidence(&self, keys: &[Key]) -> Result<(Vec<Record>, Vec<Record>), ResolveError> {
        for _ in 0..MAX_ATTEMPTS {
            let evs = self.store.get_many(keys).await?;
            let comps = self.store.get_many(&components_of(&evs).into_iter().collect::<Vec<_>>()).await?;
            if crate::intent::finish_locked(&self.store, &comps).await? == 0 {
                return Ok((evs, comps));
            }
        }
        Err(ResolveError::Contended(MAX_ATTEMPTS))
    }

    /// The profile an identifier resolves to.
    pub async fn lookup(&self, id: &Identifier) -> Result<Option<String>, ResolveError> {
        let recs = self.store.get_many(&[Key::id(&self.rules.id_ref(id))]).await?;
        Ok(recs.into_iter().find_map(|r| match r.item {
            Item::Id(i) if !i.suppressed => i.profile_id,
            _ => None,
        }))
    }

    /// The current link of each observation's evidence that the store knows, for a
    /// batch delivered again: its earlier attempt may have committed to the store and
    /// failed to write the lake, and resolving it again changes nothing, so reports no
    /// link. Two batched reads per 100 keys.
    pub async fn current_links(&self, observations: &[Observation]) -> Result<Vec<Link>, ResolveError> {
        let mut first: BTreeMap<String, &Observation> = BTreeMap::new();
        for obs in observations {
            let usable = obs.identifiers.iter().any(|i| self.rules.usable(i.kind, &i.value));
            if let Some(key) = identity_key(&obs.identifiers).filter(|_| usable) {
                let slot = first.entry(key).or_insert(obs);
                if (obs.observed_at, &obs.observation_id) < (slot.observed_at, &slot.observation_id) {
                    *slot = obs;
                }
            }
        }
        let keys: Vec<String> = first.keys().cloned().collect();
        let (evs, comps) = self.settled_evidence(&keys.iter().map(|k| Key::evidence(k)).collect::<Vec<_>>()).await?;
        let known: BTreeSet<String> =
            evs.iter().filter(|r| matches!(r.item, Item::Ev(_))).map(|r| r.key.pk["EV#".len()..].to_string()).collect();
        let mut profile: BTreeMap<String, Option<String>> = BTreeMap::new();
        for r in comps {
            if let Item::Comp(c) = r.item {
                for e in c.evidence.into_iter().filter(|e| known.contains(&e.key)) {
                    profile.insert(e.key, e.profile_id);
                }
            }
        }
        let now = Utc::now();
        Ok(known
            .into_iter()
            .map(|key| Link {
                profile_id: profile.get(&key).cloned().flatten(),
                observation_id: first[&key].observation_id.clone(),
                identity_key: key,
                at: now,
            })
            .collect())
    }

    /// The current profile of each evidence (identity key, as the lake's `anchor_id`
    /// carries it): None when the key is unknown, erased, or holds only shared
    /// identifiers. Two batched reads per 100 keys (evidence, then components).
    pub async fn profiles_of_evidence(&self, keys: &[String]) -> Result<BTreeMap<String, Option<String>>, ResolveError> {
        let mut out: BTreeMap<String, Option<String>> = keys.iter().map(|k| (k.clone(), None)).collect();
        let (_, comps) = self.settled_evidence(&keys.iter().map(|k| Key::evidence(k)).collect::<Vec<_>>()).await?;
        for r in comps {
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

    /// Why an identifier resolves to no profile, from its identifier item (one read).
    pub async fn why_unlinked(&self, id: &Identifier) -> Result<Unlinked, ResolveError> {
        if !self.rules.usable(id.kind, &id.value) {
            return Ok(Unlinked::Blocked);
        }
        let item = self.store.get_many(&[Key::id(&self.rules.id_ref(id))]).await?.into_iter().find_map(|r| match r.item {
            Item::Id(i) => Some(i),
            _ => None,
        });
        Ok(match item {
            None => Unlinked::NeverObserved,
            Some(i) if i.suppressed => Unlinked::Erased,
            Some(i) if i.excluded => Unlinked::Excluded,
            Some(i) if i.co.shared => Unlinked::Shared,
            Some(_) => Unlinked::Unattached,
        })
    }

    /// A profile (following aliases) and the evidence its component assigns to it, with the
    /// identifiers of that evidence that link nothing: four batched reads (profile,
    /// component, evidence, identifiers). `None` when there is no such profile.
    ///
    /// Read-only (the journey function's role may only read): a component locked by a
    /// large operation is not finished here, as writers do; the read is retried a few times
    /// over about three seconds (the identity function finishes its own operation in that
    /// time), then refused with [`ResolveError::Locked`] (an interrupted operation is
    /// finished by the next identity change that touches the person).
    pub async fn profile_evidence(&self, pid: &str) -> Result<Option<ProfileEvidence>, ResolveError> {
        for attempt in 1..=MAX_ATTEMPTS {
            let Some(profile) = self.profile(pid).await? else { return Ok(None) };
            let comps = self.store.get_many(&[Key::component(&profile.component)]).await?;
            if let Some(operation) = comps.iter().find_map(|r| match &r.item {
                Item::Comp(c) => c.lock.clone(),
                _ => None,
            }) {
                if attempt == MAX_ATTEMPTS {
                    return Err(ResolveError::Locked { component: profile.component.clone(), operation });
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 * u64::from(attempt))).await;
                continue;
            }
            let keys: Vec<Key> = comps
                .iter()
                .filter_map(|r| match &r.item {
                    Item::Comp(c) => Some(c),
                    _ => None,
                })
                .flat_map(|c| c.evidence.iter())
                .filter(|e| e.profile_id.as_deref() == Some(profile.profile_id.as_str()))
                .map(|e| Key::evidence(&e.key))
                .collect();
            if keys.is_empty() && attempt < MAX_ATTEMPTS {
                // A profile always holds evidence: a structural step moved it to another
                // component between the two reads.
                continue;
            }
            let mut evidence: Vec<(String, EvItem)> = self
                .store
                .get_many(&keys)
                .await?
                .into_iter()
                .filter_map(|r| match r.item {
                    Item::Ev(ev) => Some((r.key.pk["EV#".len()..].to_string(), ev)),
                    _ => None,
                })
                .collect();
            evidence.sort_by(|a, b| (a.1.first_seen, &a.0).cmp(&(b.1.first_seen, &b.0)));
            let ids: BTreeMap<Key, IdRef> = evidence.iter().flat_map(|(_, e)| e.ids.iter()).map(|i| (Key::id(i), i.clone())).collect();
            let mut not_linking = BTreeSet::new();
            for r in self.store.get_many(&ids.keys().cloned().collect::<Vec<_>>()).await? {
                if let (Item::Id(st), Some(i)) = (&r.item, ids.get(&r.key)) {
                    if !crate::change::linkable_state(st) {
                        not_linking.insert(i.clone());
                    }
                }
            }
            return Ok(Some(ProfileEvidence { profile, evidence, not_linking }));
        }
        Err(ResolveError::Contended(MAX_ATTEMPTS))
    }

    /// Erases the person an identifier belongs to: profile, evidence and identifier
    /// items go; the identifiers stay as suppression entries (hashes only) so an old
    /// export re-ingested cannot re-create the person.
    ///
    /// One transaction when it fits (DynamoDB's 100 items); otherwise in rounds of at most
    /// [`ERASE_CHUNK`] evidence sets (halved while a round is still too large). Each round
    /// removes the evidence farthest from the requested identifier (reverse breadth-first
    /// order over the identifiers that link them), so what remains stays one connected
    /// profile that the identifier still finds, and suppresses the identifiers no
    /// remaining evidence uses; the evidence that names the component stays for the last
    /// round (removing it renames the component and rewrites all its identifier items). The requested identifier's item remembers every round's
    /// evidence. A retried request (after a crash between rounds) starts again from the
    /// identifier and finishes what is left: erasure is resumable without a plan to store.
    pub async fn erase(&self, id: &Identifier) -> Result<Outcome, ResolveError> {
        let mut out = Outcome::default();
        let mut suppressed: BTreeSet<IdRef> = BTreeSet::new();
        let mut chunk: Option<usize> = None;
        let mut rounds = 0u32;
        loop {
            match self.erase_round(id, chunk, &mut suppressed, &mut out).await {
                Ok(true) => break,
                Ok(false) => rounds += 1,
                Err(ResolveError::Store(StoreError::TooLarge(n))) => {
                    chunk = match chunk {
                        None => Some(ERASE_CHUNK),
                        Some(c) if c > 1 => Some(c / 2),
                        Some(_) => return Err(StoreError::TooLarge(n).into()),
                    };
                }
                Err(e) => return Err(e),
            }
            if rounds > MAX_ERASE_ROUNDS {
                return Err(ResolveError::Contended(rounds));
            }
        }
        // Every round's evidence is linked to nothing, including rounds of an earlier
        // attempt that failed before writing the lake.
        let r = self.rules.id_ref(id);
        if let Some(Record { item: Item::Id(i), .. }) = by_key(self.store.get_many(&[Key::id(&r)]).await?).remove(&Key::id(&r)) {
            let reported: BTreeSet<String> = out.links.iter().map(|l| l.identity_key.clone()).collect();
            let now = Utc::now();
            out.links.extend(i.erased_evidence.iter().filter(|k| !reported.contains(*k)).map(|k| Link {
                identity_key: k.clone(),
                profile_id: None,
                at: now,
                observation_id: String::new(),
            }));
            out.erased = Some(ariane_shared::erasure::PurgeTargets {
                identity_keys: i.erased_evidence.clone(),
                profile_ids: i.erased_profiles.clone(),
                identifier_hashes: i.erased_identifiers.clone(),
            });
        }
        Ok(out)
    }

    /// One round of [`Resolver::erase`]: `Ok(true)` when the person is gone.
    async fn erase_round(
        &self,
        id: &Identifier,
        chunk: Option<usize>,
        suppressed: &mut BTreeSet<IdRef>,
        out: &mut Outcome,
    ) -> Result<bool, ResolveError> {
        let r = self.rules.id_ref(id);
        let recs = by_key(self.store.get_many(&[Key::id(&r)]).await?);
        let item = match recs.get(&Key::id(&r)) {
            Some(Record { item: Item::Id(i), .. }) => i.clone(),
            _ => IdItem::default(),
        };
        if item.suppressed && item.profile_id.is_none() {
            // Already erased (a redelivered or retried request): DynamoDB has nothing more
            // to do; the links are reported again (by `erase`) in case writing them failed.
            return Ok(true);
        }
        let mut change = Change { erase_of: Some(r.clone()), ..Change::default() };
        let (Some(pid), Some(comp)) = (&item.profile_id, &item.component) else {
            change.suppress.insert(r.clone());
            self.apply_with_retries(&change, out).await?;
            return Ok(true);
        };
        // The person's evidence, with the identifiers of each.
        let mut evidence: Vec<(String, Vec<IdRef>)> = Vec::new();
        let comps = self.store.get_many(&[Key::component(comp)]).await?;
        if crate::intent::finish_locked(&self.store, &comps).await? > 0 {
            // A large operation was in progress: the next round reads what it left.
            return Ok(false);
        }
        for rec in comps {
            if let Item::Comp(c) = rec.item {
                evidence.extend(c.evidence.into_iter().filter(|e| e.profile_id.as_deref() == Some(pid.as_str())).map(|e| (e.key, e.ids)));
            }
        }
        let all_ids: BTreeSet<IdRef> = evidence.iter().flat_map(|(_, ids)| ids.iter().cloned()).collect();
        let owners = by_key(self.store.get_many(&all_ids.iter().map(Key::id).collect::<Vec<_>>()).await?);
        let state = |i: &IdRef| match owners.get(&Key::id(i)) {
            Some(Record { item: Item::Id(st), .. }) => Some(st),
            _ => None,
        };
        // An identifier another profile owns, or a shared value, is not the person's alone.
        let keep = |i: &IdRef| state(i).is_some_and(|st| st.co.shared || st.profile_id.as_deref().is_some_and(|p| p != pid));
        let last = chunk.is_none_or(|c| evidence.len() <= c);
        let removes: BTreeSet<String> = if last {
            evidence.iter().map(|(k, _)| k.clone()).collect()
        } else {
            let linkable = |i: &IdRef| state(i).is_some_and(crate::change::linkable_state);
            // The evidence that names the component goes last: removing it renames the
            // component, which rewrites every identifier item of it in the same round.
            farthest_first(&evidence, &r, &linkable).into_iter().filter(|k| k != comp).take(chunk.unwrap_or(evidence.len())).collect()
        };
        if removes.is_empty() {
            return Err(ResolveError::Contended(0));
        }
        let remaining: BTreeSet<&IdRef> = evidence.iter().filter(|(k, _)| !removes.contains(k)).flat_map(|(_, ids)| ids.iter()).collect();
        for (_, ids) in evidence.iter().filter(|(k, _)| removes.contains(k)) {
            for i in ids {
                if !keep(i) && !remaining.contains(i) && *i != r {
                    change.suppress.insert(i.clone());
                }
            }
        }
        if last {
            change.suppress.insert(r.clone());
        }
        change.removes = removes;
        change.erased_profile = Some(pid.clone());
        suppressed.extend(change.suppress.iter().cloned());
        self.apply_with_retries(&change, out).await?;
        if last {
            out.history.push(HistoryRecord {
                at: Utc::now(),
                action: "erased".into(),
                profile_id: Some(pid.clone()),
                other_profiles: vec![],
                identifiers: suppressed.iter().cloned().collect(),
                evidence: None,
                observation_id: None,
                source_key: None,
                source_line: None,
                reason: Some("erasure request".into()),
            });
        }
        Ok(last)
    }

    /// After an erasure of a value other people shared (a family e-mail): their evidence
    /// (found by the purge through the lake) forgets the value in clear, and their profiles
    /// are rebuilt without it (no longer a contact address). One transaction per evidence;
    /// evidence gone since is skipped. Idempotent.
    pub async fn forget(&self, request: &ariane_shared::erasure::ForgetRequest) -> Result<Outcome, ResolveError> {
        let mut out = Outcome::default();
        for key in &request.evidence {
            let change = Change { forget_in: BTreeSet::from([key.clone()]), forget_values: request.hashes.clone(), ..Change::default() };
            self.apply_with_retries(&change, &mut out).await?;
        }
        Ok(out)
    }

    /// Repair: the identifier stops linking (a wrong merge is split again) and the
    /// decision is kept, so later observations respect it.
    pub async fn exclude(&self, id: &Identifier) -> Result<Outcome, ResolveError> {
        let mut out = Outcome::default();
        let mut change = Change::default();
        change.exclude.insert(self.rules.id_ref(id));
        self.apply_with_retries(&change, &mut out).await?;
        out.history.push(HistoryRecord {
            at: Utc::now(),
            action: "excluded".into(),
            profile_id: None,
            other_profiles: vec![],
            identifiers: vec![self.rules.id_ref(id)],
            evidence: None,
            observation_id: None,
            source_key: None,
            source_line: None,
            reason: Some("repair command".into()),
        });
        Ok(out)
    }
}

/// Runs `step` until it does not fail on a concurrent change (a failed condition), with
/// backoff; gives up after `MAX_ATTEMPTS`.
async fn retry_on_conflict<T, F, Fut>(backoff: &Backoff, retries: &mut u64, mut step: F) -> Result<T, ResolveError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ResolveError>>,
{
    for attempt in 0..MAX_ATTEMPTS {
        match step().await {
            Err(ResolveError::Store(StoreError::Conflict(_))) => {
                *retries += 1;
                backoff.wait(attempt).await;
            }
            done => return done,
        }
    }
    Err(ResolveError::Contended(MAX_ATTEMPTS))
}

/// The person's evidence keys, farthest first from the evidence holding `root` (breadth
/// first over the linkable identifiers; evidence it does not reach comes first of all).
/// Removing a prefix of this order leaves the rest connected to `root`.
fn farthest_first(evidence: &[(String, Vec<IdRef>)], root: &IdRef, linkable: &dyn Fn(&IdRef) -> bool) -> Vec<String> {
    let mut by_id: HashMap<&IdRef, Vec<usize>> = HashMap::new();
    for (n, (_, ids)) in evidence.iter().enumerate() {
        for i in ids.iter().filter(|i| linkable(i)) {
            by_id.entry(i).or_default().push(n);
        }
    }
    let mut depth: Vec<Option<usize>> = vec![None; evidence.len()];
    let mut queue: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    for (n, (_, ids)) in evidence.iter().enumerate() {
        if ids.contains(root) {
            depth[n] = Some(0);
            queue.push_back(n);
        }
    }
    while let Some(n) = queue.pop_front() {
        let d = depth[n].unwrap_or(0);
        for i in evidence[n].1.iter().filter(|i| linkable(i)) {
            for &m in by_id.get(i).map(Vec::as_slice).unwrap_or(&[]) {
                if depth[m].is_none() {
                    depth[m] = Some(d + 1);
                    queue.push_back(m);
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..evidence.len()).collect();
    // Unreached first (usize::MAX), then by depth, deepest first; the key breaks ties.
    order.sort_by(|&a, &b| {
        let da = depth[a].unwrap_or(usize::MAX);
        let db = depth[b].unwrap_or(usize::MAX);
        db.cmp(&da).then_with(|| evidence[a].0.cmp(&evidence[b].0))
    });
    order.into_iter().map(|n| evidence[n].0.clone()).collect()
}

#[cfg(test)]
mod evidence_tests {
    use super::*;
    use crate::store::MemStore;
    use ariane_shared::identifiers::IdentifierKind;
    use ariane_shared::model::Traits;

    fn obs(n: u32, channel: &str, ids: &[(IdentifierKind, &str)]) -> Observation {
        Observation {
            observation_id: format!("o{n}"),
            channel: channel.into(),
            source_key: format!("{channel}/x.csv"),
            source_line: u64::from(n),
            observed_at: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 3, n, 10, 0, 0).unwrap(),
            identifiers: ids.iter().map(|(k, v)| Identifier::new(*k, *v)).collect(),
            traits: Traits::default(),
            consents: vec![],
            activity: vec![],
        }
    }

    #[tokio::test]
    async fn a_profile_s_evidence_in_time_order_and_why_an_identifier_is_unlinked() {
        let resolver = Resolver::new(MemStore::default(), Rules::embedded().unwrap());
        let email = (IdentifierKind::Email, "marie@x.fr");
        let phone = (IdentifierKind::Phone, "+33612345678");
        resolver
            .resolve_batch(&[
                obs(5, "pos", &[email, phone]),
                obs(2, "ecommerce", &[email]),
                obs(3, "web", &[(IdentifierKind::CookieId, "ck-other")]),
            ])
            .await
            .unwrap();
        let pid = resolver.lookup(&Identifier::new(email.0, email.1)).await.unwrap().expect("resolved");
        let got = resolver.profile_evidence(&pid).await.unwrap().expect("a profile");
        assert_eq!(got.profile.profile_id, pid);
        let channels: Vec<Vec<&str>> = got.evidence.iter().map(|(_, e)| e.doc.channels.iter().map(String::as_str).collect()).collect();
        assert_eq!(channels, vec![vec!["ecommerce"], vec!["pos"]], "first seen first; the other person's cookie is not theirs");
        assert_eq!(got.evidence[0].0, identity_key(&[Identifier::new(email.0, email.1)]).unwrap(), "keyed by identity key");
        assert_eq!(got.evidence[1].1.ids.len(), 2);
        assert!(got.not_linking.is_empty());
        assert_eq!(resolver.profile_evidence("p_unknown").await.unwrap(), None);
        let unseen = Identifier::new(IdentifierKind::Email, "nobody@x.fr");
        assert_eq!(resolver.why_unlinked(&unseen).await.unwrap(), Unlinked::NeverObserved);
        resolver.exclude(&Identifier::new(phone.0, phone.1)).await.unwrap();
        assert_eq!(resolver.why_unlinked(&Identifier::new(phone.0, phone.1)).await.unwrap(), Unlinked::Excluded);
        let after = resolver.profile_evidence(&pid).await.unwrap().expect("still a profile");
        assert!(after.not_linking.iter().any(|i| i.kind == IdentifierKind::Phone), "{:?}", after.not_linking);
    }

    #[tokio::test]
    async fn reading_a_profile_s_evidence_never_writes_not_even_to_finish_a_locked_operation() {
        let resolver = Resolver::new(MemStore::default(), Rules::embedded().unwrap());
        let email = (IdentifierKind::Email, "marie@x.fr");
        resolver.resolve_batch(&[obs(5, "pos", &[email])]).await.unwrap();
        let pid = resolver.lookup(&Identifier::new(email.0, email.1)).await.unwrap().expect("resolved");
        let component = resolver.profile(&pid).await.unwrap().expect("a profile").component;
        let rec = resolver.store.get_many(&[Key::component(&component)]).await.unwrap().remove(0);
        let Item::Comp(comp) = rec.item else { panic!("a component item: {rec:?}") };
        let locked = Item::Comp(crate::store::CompItem { lock: Some("op-1".into()), ..comp });
        resolver
            .store
            .commit(vec![Write { key: rec.key.clone(), expect: Expect::Version(rec.version), op: Op::Put(locked) }])
            .await
            .unwrap();
        let before = resolver.store.snapshot();
        match resolver.profile_evidence(&pid).await {
            Err(ResolveError::Locked { component: c, operation }) => assert_eq!((c, operation.as_str()), (component, "op-1")),
            other => panic!("a locked component is reported, not finished: {other:?}"),
        }
        assert_eq!(resolver.store.snapshot(), before, "nothing written");
    }
}
