//! The store against the oracle (random streams, orders, duplicates, concurrent
//! workers) and the scenarios the rules exist for, on the in-memory adapter of the same
//! store trait the DynamoDB adapter implements.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ariane_identity::oracle::{groups, oracle};
use ariane_identity::resolver::Resolver;
use ariane_identity::rules::Rules;
use ariane_identity::store::{Item, ItemStore, Key, MemStore, Record, StoreError, Write};
use ariane_shared::identifiers::{identity_key, Identifier, IdentifierKind as K};
use ariane_shared::model::{Consent, ConsentChannel, Observation, Traits};
use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;

/// A store that yields before every operation, so concurrent workers interleave, and
/// checks the store's invariants after every successful commit.
struct Yielding(Arc<MemStore>, Arc<tokio::sync::Mutex<()>>);

#[async_trait::async_trait]
impl ItemStore for Yielding {
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        tokio::task::yield_now().await;
        self.0.get_many(keys).await
    }
    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        let shown: Vec<String> = writes.iter().map(|w| format!("{} {:?} {}", &w.key.pk[..w.key.pk.len().min(20)], w.expect, match &w.op {
            ariane_identity::store::Op::Put(Item::Id(i)) => format!("put comp={:?} shared={}", i.component.as_deref().map(|c| &c[..8]), i.co.shared),
            ariane_identity::store::Op::Put(Item::Comp(c)) => format!("put {:?}", c.evidence.iter().map(|e| &e.key[..8]).collect::<Vec<_>>()),
            ariane_identity::store::Op::Put(_) => "put".to_string(),
            op => format!("{op:?}"),
        })).collect();
        // Commit and check under one lock, so a broken state is blamed on its commit.
        let _serial = self.1.lock().await;
        let before = self.0.snapshot();
        self.0.commit(writes).await?;
        if let Err(broken) = invariants(&self.0.snapshot()) {
            let before_state: Vec<String> = before.iter().filter(|r| matches!(r.item, Item::Id(_) | Item::Comp(_))).map(|r| format!("{} v{} {:?}", r.key.pk, r.version, r.item)).collect();
            panic!("after a commit, {broken}\ncommit:\n{}\nbefore:\n{}", shown.join("\n"), before_state.join("\n"));
        }
        Ok(())
    }
}

/// What every committed state satisfies: components partition the evidence, each is
/// connected through linkable identifiers and holds every evidence that shares one,
/// evidence and identifier items point at their component.
fn invariants(records: &[Record]) -> Result<(), String> {
    use ariane_identity::resolve::{components, Evidence, IdRef};
    let mut comps: BTreeMap<String, Vec<Evidence>> = BTreeMap::new();
    let mut evs: BTreeMap<String, String> = BTreeMap::new();
    let mut ids: BTreeMap<IdRef, ariane_identity::store::IdItem> = BTreeMap::new();
    for r in records {
        match &r.item {
            Item::Comp(c) => {
                let key = r.key.pk["COMP#".len()..].to_string();
                let list = c.evidence.iter().map(|e| Evidence { key: e.key.clone(), first_seen: e.first_seen, ids: e.ids.clone() }).collect();
                comps.insert(key, list);
            }
            Item::Ev(e) => {
                evs.insert(r.key.pk["EV#".len()..].to_string(), e.component.clone());
            }
            Item::Id(i) => {
                let rest = &r.key.pk["ID#".len()..];
                let (kind, hash) = rest.split_once('#').ok_or(format!("bad id key {rest}"))?;
                let kind = ariane_identity::rules::parse_kind(kind).ok_or(format!("bad kind {kind}"))?;
                ids.insert(IdRef { kind, hash: hash.to_string() }, i.clone());
            }
            _ => {}
        }
    }
    let linkable = |id: &IdRef| ids.get(id).is_some_and(|s| !s.co.shared && !s.excluded && !s.suppressed);
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut holder: BTreeMap<IdRef, String> = BTreeMap::new();
    for (c, list) in &comps {
        let groups = components(list, &linkable);
        if groups.len() != 1 {
            return Err(format!("component {c} is not connected: {} groups", groups.len()));
        }
        for e in list {
            if let Some(other) = seen.insert(e.key.clone(), c.clone()) {
                return Err(format!("evidence {} in components {other} and {c}", e.key));
            }
            if evs.get(&e.key) != Some(c) {
                return Err(format!("evidence {} of component {c} points at {:?}", e.key, evs.get(&e.key)));
            }
            for id in e.ids.iter().filter(|i| linkable(i)) {
                if let Some(other) = holder.insert(id.clone(), c.clone()).filter(|o| o != c) {
                    return Err(format!("linkable {id:?} in components {other} and {c}"));
                }
                if ids[id].component.as_ref() != Some(c) {
                    return Err(format!("linkable {id:?} of component {c} points at {:?}", ids[id].component));
                }
            }
            for id in &e.ids {
                if !ids.contains_key(id) {
                    return Err(format!("{id:?} of component {c} has no item"));
                }
            }
        }
    }
    // Profiles: one per cluster, each the join of its evidence's contributions (the
    // identifiers restricted to those the profile holds).
    let rules = rules();
    let ev_docs: BTreeMap<String, &ariane_identity::profile::Doc> = records
        .iter()
        .filter_map(|r| match &r.item {
            Item::Ev(e) => Some((r.key.pk["EV#".len()..].to_string(), &e.doc)),
            _ => None,
        })
        .collect();
    let profiles: BTreeMap<String, &ariane_identity::store::ProfileItem> = records
        .iter()
        .filter_map(|r| match &r.item {
            Item::Profile(p) => Some((p.profile_id.clone(), p)),
            _ => None,
        })
        .collect();
    let mut clusters: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for r in records {
        if let Item::Comp(c) = &r.item {
            for e in &c.evidence {
                if let Some(p) = &e.profile_id {
                    let entry = clusters.entry(p.clone()).or_insert_with(|| (r.key.pk["COMP#".len()..].to_string(), Vec::new()));
                    if entry.0 != r.key.pk["COMP#".len()..] {
                        return Err(format!("profile {p} has evidence in components {} and {}", entry.0, &r.key.pk["COMP#".len()..]));
                    }
                    entry.1.push(e.key.clone());
                }
            }
        }
    }
    if clusters.len() != profiles.len() {
        return Err(format!("{} clusters but {} profile items", clusters.len(), profiles.len()));
    }
    for (pid, (comp, keys)) in &clusters {
        let p = profiles.get(pid).ok_or(format!("cluster {pid} has no profile item"))?;
        if &p.component != comp {
            return Err(format!("profile {pid} points at component {}, its evidence is in {comp}", p.component));
        }
        let mut expected = ariane_identity::profile::Doc::default();
        for k in keys {
            expected.join(ev_docs.get(k).ok_or(format!("evidence {k} has no item"))?, &rules);
        }
        let got = &p.doc;
        let plain = |d: &ariane_identity::profile::Doc| {
            let traits: BTreeMap<String, String> =
                d.traits.iter().filter(|(n, _)| *n != "email" && *n != "phone").map(|(n, t)| (n.clone(), t.value.clone())).collect();
            (traits, d.consents.clone(), d.channels.clone(), d.first_seen, d.last_seen_day)
        };
        if plain(got) != plain(&expected) {
            return Err(format!("profile {pid} is not the join of its evidence:\n got {:?}\nwant {:?}", plain(got), plain(&expected)));
        }
        for (kind, values) in &got.identifiers {
            if !values.is_subset(expected.identifiers.get(kind).unwrap_or(&BTreeSet::new())) {
                return Err(format!("profile {pid} holds {kind} values none of its evidence carries"));
            }
        }
    }
    for (e, c) in &evs {
        if seen.get(e) != Some(c) {
            return Err(format!("evidence item {e} points at component {c}, which does not hold it"));
        }
    }
    for (id, st) in &ids {
        if let Some(c) = &st.component {
            if holder.get(id) != Some(c) {
                return Err(format!("{id:?} points at component {c}, which does not hold it"));
            }
        }
    }
    Ok(())
}

fn obs(n: u64, day: i64, ids: &[(K, &str)]) -> Observation {
    Observation {
        observation_id: format!("o{n}"),
        channel: ["pos", "ecommerce", "crm", "web", "sms"][(n % 5) as usize].into(),
        source_key: "x/y.csv".into(),
        source_line: n,
        observed_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::days(day) + Duration::seconds(n as i64),
        identifiers: ids.iter().map(|(k, v)| Identifier::new(*k, *v)).collect(),
        traits: Traits::default(),
        consents: vec![],
    }
}

/// Identity key → profile id, read back from the store's components.
fn store_assignment(store: &MemStore) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for r in store.snapshot() {
        if let Item::Comp(c) = r.item {
            for e in c.evidence {
                assert!(out.insert(e.key.clone(), e.profile_id).is_none(), "evidence {} in two components", e.key);
            }
        }
    }
    out
}

fn rules() -> Rules {
    Rules::embedded().unwrap()
}

// A small universe where collisions (shared values, limits, attach conflicts) are common.
fn arb_observation() -> impl Strategy<Value = (u8, u8, Vec<(u8, u8)>)> {
    (0u8..60, 0u8..4, proptest::collection::vec((0u8..7, 0u8..6), 1..4))
}

type Spec = (u8, u8, Vec<(u8, u8)>);

fn build(spec: &[Spec]) -> Vec<Observation> {
    let kinds = [K::CustomerId, K::Email, K::Phone, K::LoyaltyCard, K::DeviceId, K::PushToken, K::CookieId];
    spec.iter()
        .enumerate()
        .map(|(n, (day, extra, ids))| {
            let values: Vec<(K, String)> = ids
                .iter()
                .map(|(k, v)| {
                    let kind = kinds[*k as usize];
                    let value = match kind {
                        K::Email => format!("p{v}@mail.fr"),
                        K::Phone => format!("+3361234560{v}"),
                        _ => format!("{}-{v}", kind.as_str()),
                    };
                    (kind, value)
                })
                .collect();
            let refs: Vec<(K, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let mut o = obs(n as u64, i64::from(*day), &refs);
            // Something to join: a city (source survivorship), a consent given or withdrawn.
            match extra {
                1 => o.traits.city = Some(["Lyon", "Lille"][n % 2].into()),
                2 => o.consents.push(Consent { channel: ConsentChannel::Sms, granted: true, at: o.observed_at }),
                3 => o.consents.push(Consent { channel: ConsentChannel::Sms, granted: false, at: o.observed_at }),
                _ => {}
            }
            o
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// Random streams, delivered in random order, in random batches, with duplicates:
    /// the store ends with the oracle's partition.
    #[test]
    fn store_agrees_with_the_oracle(spec in proptest::collection::vec(arb_observation(), 1..40), seed in any::<u64>()) {
        check_against_oracle(&spec, seed, 1)?;
    }

    /// The same with two to four concurrent workers (interleaved at every store call).
    #[test]
    fn concurrent_workers_agree_with_the_oracle(spec in proptest::collection::vec(arb_observation(), 1..40), seed in any::<u64>(), workers in 2usize..5) {
        check_against_oracle(&spec, seed, workers)?;
    }
}

fn check_against_oracle(spec: &[Spec], seed: u64, workers: usize) -> Result<(), TestCaseError> {
    {
        let observations = build(spec);
        let rules = rules();
        let expected = groups(&oracle(&observations, &rules, &BTreeSet::new()));
        // Shuffle deterministically, duplicate some, split into batches.
        let mut stream: Vec<Observation> = observations.clone();
        stream.extend(observations.iter().step_by(3).cloned());
        let n = stream.len();
        let mut s = seed | 1;
        for i in (1..n).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            stream.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mem = Arc::new(MemStore::default());
        let serial = Arc::new(tokio::sync::Mutex::new(()));
        runtime().block_on(async {
            let mut handles = Vec::new();
            for w in 0..workers {
                let part: Vec<Observation> = stream.iter().skip(w).step_by(workers).cloned().collect();
                let resolver = Resolver::new(Yielding(mem.clone(), serial.clone()), rules.clone());
                let batch = 1 + (seed as usize + w) % 5;
                handles.push(tokio::spawn(async move {
                    for chunk in part.chunks(batch) {
                        resolver.resolve_batch(chunk).await.unwrap();
                    }
                }));
            }
            for h in handles { h.await.unwrap(); }
        });
        let got = groups(&store_assignment(&mem));
        prop_assert_eq!(got, expected);
    }
    Ok(())
}

async fn resolve_all(r: &Resolver<MemStore>, observations: &[Observation]) {
    for o in observations {
        r.resolve_batch(std::slice::from_ref(o)).await.unwrap();
    }
}

async fn profile_of(r: &Resolver<MemStore>, kind: K, value: &str) -> Option<String> {
    r.lookup(&Identifier::new(kind, value)).await.unwrap()
}

#[tokio::test]
async fn cross_channel_merge_into_one_profile_and_lookup_by_merged_id() {
    let r = Resolver::new(MemStore::default(), rules());
    // POS: loyalty card + email; CRM: customer id + phone; e-shop: customer id + email.
    let pos = obs(1, 1, &[(K::LoyaltyCard, "ARF1"), (K::Email, "marie@x.fr")]);
    let crm = obs(2, 2, &[(K::CustomerId, "C1"), (K::Phone, "+33612345678")]);
    resolve_all(&r, &[pos, crm]).await;
    let before = profile_of(&r, K::LoyaltyCard, "ARF1").await.unwrap();
    let other = profile_of(&r, K::Phone, "+33612345678").await.unwrap();
    assert_ne!(before, other, "nothing links them yet");
    let out = r.resolve_batch(&[obs(3, 3, &[(K::CustomerId, "C1"), (K::Email, "marie@x.fr")])]).await.unwrap();
    assert_eq!(out.stats.merges, 1);
    let merge = out.history.iter().find(|h| h.action == "merge").unwrap();
    assert_eq!(merge.observation_id.as_deref(), Some("o3"), "the evidence names the source row");
    let survivor = profile_of(&r, K::Phone, "+33612345678").await.unwrap();
    assert_eq!(profile_of(&r, K::LoyaltyCard, "ARF1").await.unwrap(), survivor);
    assert_eq!(survivor, before, "the oldest profile survives");
    let via_old = r.profile(&other).await.unwrap().unwrap();
    assert_eq!(via_old.profile_id, survivor, "a merged-away id resolves to the survivor");
    assert_eq!(via_old.merged_from, vec![other.clone()]);
    assert_eq!(via_old.doc.channels.len(), 3);
    assert_eq!(via_old.doc.identifiers["email"].len(), 1);
}

#[tokio::test]
async fn family_tablet_and_shared_email_do_not_fuse_two_customers() {
    let r = Resolver::new(MemStore::default(), rules());
    resolve_all(
        &r,
        &[
            obs(1, 1, &[(K::CustomerId, "MUM"), (K::Email, "famille@x.fr"), (K::CookieId, "tablet")]),
            obs(2, 2, &[(K::CustomerId, "SON"), (K::Email, "famille@x.fr"), (K::CookieId, "tablet")]),
            obs(3, 3, &[(K::CookieId, "tablet")]),
        ],
    )
    .await;
    let mum = profile_of(&r, K::CustomerId, "MUM").await.unwrap();
    let son = profile_of(&r, K::CustomerId, "SON").await.unwrap();
    assert_ne!(mum, son);
    assert_eq!(profile_of(&r, K::Email, "famille@x.fr").await, None, "a shared email identifies no one");
    assert_eq!(profile_of(&r, K::CookieId, "tablet").await, None, "nor does the shared tablet");
}

#[tokio::test]
async fn a_store_phone_typed_for_many_cards_is_shared_and_blocked_values_never_link() {
    let r = Resolver::new(MemStore::default(), rules());
    resolve_all(
        &r,
        &[
            obs(1, 1, &[(K::LoyaltyCard, "A"), (K::Phone, "+33140000000")]),
            obs(2, 2, &[(K::LoyaltyCard, "B"), (K::Phone, "+33140000000")]),
            obs(3, 3, &[(K::LoyaltyCard, "C"), (K::Phone, "+33140000000"), (K::Email, "test@test.com")]),
            obs(4, 4, &[(K::LoyaltyCard, "D"), (K::Email, "test@test.com")]),
        ],
    )
    .await;
    let pids: BTreeSet<_> = futures_set(&r, &["A", "B", "C", "D"]).await;
    assert_eq!(pids.len(), 4, "four shoppers, four profiles");
    assert_eq!(profile_of(&r, K::Email, "test@test.com").await, None);
}

async fn futures_set(r: &Resolver<MemStore>, cards: &[&str]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for c in cards {
        out.insert(profile_of(r, K::LoyaltyCard, c).await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_limit_prevents_a_merge_and_the_decision_is_recorded() {
    let r = Resolver::new(MemStore::default(), rules());
    resolve_all(&r, &[obs(1, 1, &[(K::CustomerId, "C1"), (K::Phone, "+33611111111")])]).await;
    let out = r.resolve_batch(&[obs(2, 2, &[(K::CustomerId, "C2"), (K::Phone, "+33611111111")])]).await.unwrap();
    assert_ne!(profile_of(&r, K::CustomerId, "C1").await, profile_of(&r, K::CustomerId, "C2").await);
    let drop = out.history.iter().find(|h| h.action == "dropped" || h.action == "shared").expect("recorded");
    assert_eq!(drop.identifiers[0].kind, K::Phone);
}

#[tokio::test]
async fn consent_from_sms_stop_and_crm_latest_wins() {
    let r = Resolver::new(MemStore::default(), rules());
    let mut crm = obs(1, 1, &[(K::CustomerId, "C1"), (K::Phone, "+33612345678")]);
    crm.channel = "crm".into();
    crm.consents = vec![Consent { channel: ConsentChannel::Sms, granted: true, at: crm.observed_at }];
    crm.traits.city = Some("Lyon".into());
    let mut stop = obs(2, 5, &[(K::Phone, "+33612345678")]);
    stop.channel = "sms".into();
    stop.consents = vec![Consent { channel: ConsentChannel::Sms, granted: false, at: stop.observed_at }];
    resolve_all(&r, &[stop.clone(), crm.clone()]).await;
    let pid = profile_of(&r, K::CustomerId, "C1").await.unwrap();
    let p = r.profile(&pid).await.unwrap().unwrap();
    assert_eq!(p.doc.consent("sms"), Some(false), "the later STOP wins whatever the arrival order");
    assert_eq!(p.doc.consents["sms"].source, "sms");
    assert_eq!(p.doc.trait_value("city"), Some("Lyon"));
    // A repeated observation brings nothing new: reads only.
    let again = r.resolve_batch(&[crm]).await.unwrap();
    assert_eq!(again.stats.unchanged, 1);
    assert!(again.links.is_empty() && again.history.is_empty());
}

#[tokio::test]
async fn erasure_deletes_and_suppresses_and_repair_splits() {
    let r = Resolver::new(MemStore::default(), rules());
    let rows = [
        obs(1, 1, &[(K::CustomerId, "C1"), (K::Email, "marie@x.fr")]),
        obs(2, 2, &[(K::Email, "marie@x.fr"), (K::Phone, "+33612345678")]),
        obs(3, 3, &[(K::CustomerId, "C9"), (K::Email, "paul@x.fr")]),
    ];
    resolve_all(&r, &rows).await;
    let out = r.erase(&Identifier::new(K::Email, "marie@x.fr")).await.unwrap();
    assert!(out.links.iter().all(|l| l.profile_id.is_none()) && out.links.len() == 2);
    assert_eq!(profile_of(&r, K::CustomerId, "C1").await, None);
    // A redelivered erasure changes nothing and reports the same (erased) links again,
    // in case writing them to the lake failed the first time.
    let store_after = r.store.snapshot();
    let retried = r.erase(&Identifier::new(K::Email, "marie@x.fr")).await.unwrap();
    assert_eq!(r.store.snapshot(), store_after);
    let keys = |o: &ariane_identity::resolver::Outcome| o.links.iter().map(|l| (l.identity_key.clone(), l.profile_id.clone())).collect::<BTreeSet<_>>();
    assert_eq!(keys(&retried), keys(&out));
    let left: Vec<Record> = r.store.snapshot();
    assert!(!left.iter().any(|x| matches!(&x.item, Item::Profile(p) if p.doc.identifiers.get("email").is_some_and(|e| e.contains("marie@x.fr")))));
    // Re-ingesting the old export does not bring her back; Paul is untouched.
    let again = r.resolve_batch(&rows).await.unwrap();
    assert_eq!(again.stats.suppressed, 2);
    assert_eq!(profile_of(&r, K::CustomerId, "C1").await, None);
    assert!(profile_of(&r, K::CustomerId, "C9").await.is_some());

    // Repair: a wrong merge through a phone is split by excluding it.
    let r = Resolver::new(MemStore::default(), rules());
    resolve_all(
        &r,
        &[obs(1, 1, &[(K::Email, "a@x.fr"), (K::Phone, "+33622222222")]), obs(2, 2, &[(K::Email, "b@x.fr"), (K::Phone, "+33622222222")])],
    )
    .await;
    assert_eq!(profile_of(&r, K::Email, "a@x.fr").await, profile_of(&r, K::Email, "b@x.fr").await);
    let out = r.exclude(&Identifier::new(K::Phone, "+33622222222")).await.unwrap();
    assert!(out.history.iter().any(|h| h.action == "split"));
    assert_ne!(profile_of(&r, K::Email, "a@x.fr").await, profile_of(&r, K::Email, "b@x.fr").await);
    // Later observations respect the exclusion.
    r.resolve_batch(&[obs(3, 3, &[(K::Email, "a@x.fr"), (K::Email, "b@x.fr")])]).await.unwrap();
    let _ = identity_key(&[]);
}

/// The largest component the rules allow, with four identifiers per evidence set (a row
/// carries at most one value per identifier column), fits in one DynamoDB item.
#[test]
fn a_component_at_the_configured_maximum_fits_in_one_item() {
    use ariane_identity::resolve::IdRef;
    use ariane_identity::store::{item_size, to_attributes, CompEvidence, CompItem};
    let rules = rules();
    let kinds = [K::CustomerId, K::Email, K::Phone, K::CookieId];
    let comp = CompItem {
        evidence: (0..rules.max_component_evidence)
            .map(|i| {
                let ids: Vec<IdRef> = kinds
                    .iter()
                    .map(|k| IdRef { kind: *k, hash: ariane_shared::identifiers::identifier_hash(*k, &format!("{}-{i}", k.as_str())) })
                    .collect();
                CompEvidence {
                    key: identity_key(&[Identifier::new(K::CookieId, format!("c{i}"))]).unwrap(),
                    first_seen: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
                    ids,
                    profile_id: Some(format!("p_{:024}", i)),
                }
            })
            .collect(),
    };
    let key = Key::component(&comp.evidence[0].key);
    let bytes = item_size(&to_attributes(&key, u64::MAX, &Item::Comp(comp)));
    assert!(
        bytes <= ariane_identity::resolver::MAX_ITEM_BYTES,
        "{} evidence sets take {bytes} bytes (limit {})",
        rules.max_component_evidence,
        ariane_identity::resolver::MAX_ITEM_BYTES
    );
}

/// Evidence beyond the component bound fails with an error naming the component (the
/// message goes to the DLQ); nothing is written for it and what was there stays intact.
#[tokio::test]
async fn a_component_beyond_its_bound_fails_clearly_and_writes_nothing() {
    let text = Rules::embedded_text().replace("max_component_evidence = 600", "max_component_evidence = 10");
    let rules = Rules::parse("config/identity.toml", &text).unwrap();
    let r = Resolver::new(MemStore::default(), rules);
    // One customer id seen with ten distinct phones: ten evidence sets, one component.
    for i in 0..10 {
        r.resolve_batch(&[obs(i, i as i64, &[(K::CustomerId, "C1"), (K::Phone, &format!("+336123456{i:02}"))])]).await.unwrap();
    }
    let before = r.store.snapshot();
    let e = r.resolve_batch(&[obs(11, 11, &[(K::CustomerId, "C1"), (K::Phone, "+33612345699")])]).await.unwrap_err();
    assert!(e.to_string().contains("would hold 11 evidence sets (limit 10)"), "{e}");
    assert_eq!(r.store.snapshot(), before);
}
