//! Large operations: a structural step whose writes do not fit in one transaction
//! (DynamoDB's 100 items) — a merge that moves a large component's evidence, a split, an
//! exclusion that shatters a component, an erasure — is applied in chunks, resumably,
//! without any resolver ever acting on a half-done state.
//!
//! 1. **Plan.** The step's writes are sorted into what the *prepare* transaction does and
//!    what the *chunks* do. The chunks are stored first (`INTENT#<id>#<n>` items, inert:
//!    nothing refers to them yet).
//! 2. **Prepare**, one transaction: the header (`INTENT#<id>`, the number of chunks);
//!    every component the step touches *locked* (its content as read, plus the
//!    operation's id, at a version the operation chose), new components that a prepared
//!    write points at as locked placeholders (the others are created, locked, by the
//!    first chunks, before anything points at them); a condition on every profile the step read (a profile's version covers
//!    its evidence's documents) and on evidence no stored profile covers; and the writes no
//!    lock protects, applied directly: new evidence and identifier items, and identifier
//!    items outside any component (shared, excluded, suppressed values).
//! 3. **Chunks**, one transaction each, in order: the chunk's writes with the conditions
//!    the step computed, and the deletion of the chunk item (so a chunk applies once). The
//!    last chunks write the components' final content, which unlocks them, and delete the
//!    header.
//!
//! Why the chunks' conditions still hold when they apply: after the prepare, every item a
//! chunk writes is reachable only through a locked component. A structural step reads the
//! components before it writes anything and includes them in its transaction; an
//! enrichment checks its component's version: both fail or stop at a lock. A resolver that
//! meets a lock *finishes* the operation ([`finish`]: the remaining chunks, in order) and
//! starts its own work again; so does a retried message of the crashed resolver that
//! started it. Evidence and identifier items read before the components and profiles are
//! read again after them (a mismatch is a conflict: the step recomputes), so every item
//! the step used is covered by a condition in the prepare transaction: a step that writes
//! an identifier item rewrites the components holding it, an enrichment rewrites the
//! profile of the evidence it changes.
//!
//! The audit ([`crate::audit`]) rolls pending operations forward before it checks the
//! invariants, and reports an operation whose chunks could not apply.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::change::{check_item_size, ResolveError, MAX_ITEM_BYTES};
use crate::store::{apply_writes, fresh_version, CompItem, Expect, IntentItem, Item, ItemStore, Key, Op, Record, StoreError, Write};

/// A chunk item stays well under DynamoDB's 400 KB.
const CHUNK_BYTES: usize = 256 * 1024;

/// What a large step read, that the plan needs.
pub(crate) struct Read<'s> {
    /// Components read (to lock, with their content as read).
    pub(crate) comps: &'s BTreeMap<Key, Record>,
    /// Identifier items read.
    pub(crate) ids: &'s BTreeMap<Key, Record>,
    /// Evidence keys whose document no stored profile's version covers.
    pub(crate) uncovered: BTreeSet<String>,
}

/// The prepare transaction and the chunks of a step's writes.
#[derive(Debug)]
struct Plan {
    prepare: Vec<Write>,
    chunks: Vec<Vec<Write>>,
}

fn plan(id: &str, lock_version: u64, writes: Vec<Write>, read: &Read<'_>, max_items: usize) -> Result<Plan, ResolveError> {
    let locked: BTreeSet<Key> = writes.iter().filter(|w| w.key.sk == "COMP").map(|w| w.key.clone()).collect();
    let lock = |content: CompItem| Item::Comp(CompItem { lock: Some(id.to_string()), ..content });
    let mut prepare = Vec::new();
    // New components, created locked before anything points at them.
    let mut placeholders = Vec::new();
    let mut data = Vec::new();
    let mut finals = Vec::new();
    for w in writes {
        match (w.key.sk, &w.expect) {
            ("COMP", Expect::Version(v)) => {
                let old = match read.comps.get(&w.key) {
                    Some(Record { item: Item::Comp(c), .. }) => c.clone(),
                    _ => return Err(StoreError::Conflict(w.key.pk).into()),
                };
                prepare.push(Write { key: w.key.clone(), expect: Expect::Version(*v), op: Op::PutAt(lock(old.clone()), lock_version) });
                let op = match w.op {
                    Op::Check => Op::Put(Item::Comp(old)),
                    op => op,
                };
                finals.push(Write { key: w.key, expect: Expect::Version(lock_version), op });
            }
            ("COMP", Expect::Absent) => {
                placeholders.push(Write {
                    key: w.key.clone(),
                    expect: Expect::Absent,
                    op: Op::PutAt(lock(CompItem::default()), lock_version),
                });
                finals.push(Write { key: w.key, expect: Expect::Version(lock_version), op: w.op });
            }
            ("PROFILE", Expect::Version(v)) => {
                prepare.push(Write { key: w.key.clone(), expect: Expect::Version(*v), op: Op::Check });
                if w.op != Op::Check {
                    data.push(w);
                }
            }
            ("EV", Expect::Version(v)) => {
                let evidence = &w.key.pk["EV#".len()..];
                if w.op == Op::Check || read.uncovered.contains(evidence) {
                    prepare.push(Write { key: w.key.clone(), expect: Expect::Version(*v), op: Op::Check });
                }
                if w.op != Op::Check {
                    data.push(w);
                }
            }
            ("ID", Expect::Version(_)) => {
                let behind_a_lock = match read.ids.get(&w.key) {
                    Some(Record { item: Item::Id(i), .. }) => i.component.as_ref().is_some_and(|c| locked.contains(&Key::component(c))),
                    _ => false,
                };
                if behind_a_lock && w.op != Op::Check {
                    data.push(w);
                } else {
                    prepare.push(w);
                }
            }
            // New evidence and identifier items: claimed (written) by the prepare, so a
            // concurrent resolver cannot create them meanwhile.
            (_, Expect::Absent) if w.key.sk == "EV" || w.key.sk == "ID" => prepare.push(w),
            _ => data.push(w),
        }
    }
    // A new component a prepared write points at is created by the prepare too; the
    // others by the first chunks (an exclusion can shatter a component into hundreds).
    let pointed: BTreeSet<Key> = prepare
        .iter()
        .filter_map(|w| match w.item() {
            Some(Item::Ev(e)) => Some(Key::component(&e.component)),
            Some(Item::Id(i)) => i.component.as_deref().map(Key::component),
            _ => None,
        })
        .collect();
    let (early, placeholders): (Vec<Write>, Vec<Write>) = placeholders.into_iter().partition(|w| pointed.contains(&w.key));
    prepare.extend(early);
    // The header takes one more item.
    if prepare.len() + 1 > max_items {
        return Err(StoreError::TooLarge(prepare.len() + 1).into());
    }
    // Each chunk's transaction also deletes its item, the last one the header.
    let per_chunk = max_items.saturating_sub(2).max(1);
    // New components first, in chunks of their own: a component's placeholder and its
    // final content never share a transaction (DynamoDB refuses two operations on one
    // item in a transaction, and the final content is conditioned on the placeholder).
    let mut chunks: Vec<Vec<Write>> = placeholders.chunks(per_chunk).map(<[Write]>::to_vec).collect();
    let mut bytes = CHUNK_BYTES;
    for w in data.into_iter().chain(finals) {
        let size = serde_json::to_string(&w).map(|s| s.len()).unwrap_or(0);
        match chunks.last_mut() {
            Some(c) if c.len() < per_chunk && bytes + size <= CHUNK_BYTES => {
                bytes += size;
                c.push(w);
            }
            _ => {
                bytes = size;
                chunks.push(vec![w]);
            }
        }
    }
    Ok(Plan { prepare, chunks })
}

/// Applies a step's writes as a large operation: validates what it read, stores the
/// chunks, prepares, and applies every chunk. A conflict before the prepare commits
/// leaves nothing behind but inert chunk items (the step is recomputed); after it, the
/// operation completes, here or in whichever resolver meets its lock.
pub(crate) async fn commit_large(store: &impl ItemStore, writes: Vec<Write>, read: Read<'_>, max_items: usize) -> Result<(), ResolveError> {
    // Evidence and identifier items read before the components (or the profiles): read
    // again, so the components' (and profiles') conditions cover them from now on.
    let expected: BTreeMap<Key, u64> = writes
        .iter()
        .filter_map(|w| match (w.key.sk, &w.expect) {
            ("EV" | "ID", Expect::Version(v)) => Some((w.key.clone(), *v)),
            _ => None,
        })
        .collect();
    let now: BTreeMap<Key, u64> =
        store.get_many(&expected.keys().cloned().collect::<Vec<_>>()).await?.into_iter().map(|r| (r.key, r.version)).collect();
    if let Some(k) = expected.iter().find(|(k, v)| now.get(*k) != Some(*v)).map(|(k, _)| k) {
        return Err(StoreError::Conflict(k.pk.clone()).into());
    }
    let id = format!("{:016x}", fresh_version());
    let plan = plan(&id, fresh_version(), writes, &read, max_items)?;
    plan.prepare.iter().try_for_each(check_item_size)?;
    let mut chunk_keys = Vec::new();
    for (n, writes) in plan.chunks.into_iter().enumerate() {
        writes.iter().try_for_each(check_item_size)?;
        let key = Key::intent_chunk(&id, n as u32);
        let put = Write { key: key.clone(), expect: Expect::Absent, op: Op::Put(Item::Intent(IntentItem { chunks: 0, writes })) };
        check_item_size(&put).map_err(|_| ResolveError::ItemTooLarge { key: key.pk.clone(), bytes: CHUNK_BYTES, limit: MAX_ITEM_BYTES })?;
        store.commit(vec![put]).await?;
        chunk_keys.push(key);
    }
    let mut prepare = plan.prepare;
    let header = IntentItem { chunks: chunk_keys.len() as u32, writes: vec![] };
    prepare.push(Write { key: Key::intent(&id), expect: Expect::Absent, op: Op::Put(Item::Intent(header)) });
    if let Err(e) = store.commit(prepare).await {
        // Nothing refers to the chunks: remove them (best effort; they are inert).
        for key in chunk_keys {
            if let Some(r) = store.get_many(std::slice::from_ref(&key)).await?.pop() {
                let _ = store.commit(vec![Write { key, expect: Expect::Version(r.version), op: Op::Delete }]).await;
            }
        }
        return Err(e.into());
    }
    finish(store, &id).await
}

/// Applies what remains of operation `id`, in order. Idempotent; concurrent finishers
/// each apply a chunk at most once (its item's deletion is part of its transaction).
pub(crate) async fn finish(store: &impl ItemStore, id: &str) -> Result<(), ResolveError> {
    let Some(header) = store.get_many(&[Key::intent(id)]).await?.pop() else { return Ok(()) };
    let Item::Intent(IntentItem { chunks, .. }) = header.item else {
        return Err(StoreError::Decode(header.key.pk, "not an operation header".into()).into());
    };
    let keys: Vec<Key> = (0..chunks).map(|n| Key::intent_chunk(id, n)).collect();
    let present: BTreeMap<Key, Record> = store.get_many(&keys).await?.into_iter().map(|r| (r.key.clone(), r)).collect();
    for (n, key) in keys.iter().enumerate() {
        let Some(Record { version, item: Item::Intent(chunk), .. }) = present.get(key) else { continue };
        let mut writes = chunk.writes.clone();
        writes.push(Write { key: key.clone(), expect: Expect::Version(*version), op: Op::Delete });
        if n + 1 == keys.len() {
            writes.push(Write { key: header.key.clone(), expect: Expect::Version(header.version), op: Op::Delete });
        }
        match store.commit(writes).await {
            Ok(()) => {}
            // Another finisher applied it first: go on with the next one.
            Err(StoreError::Conflict(_)) if store.get_many(std::slice::from_ref(key)).await?.is_empty() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Finishes every operation that locks one of these components; the number finished
/// (a caller that finished one reads again: what it read may have changed).
pub(crate) async fn finish_locked<'r>(store: &impl ItemStore, records: impl IntoIterator<Item = &'r Record>) -> Result<u64, ResolveError> {
    let ids: BTreeSet<String> = records
        .into_iter()
        .filter_map(|r| match &r.item {
            Item::Comp(c) => c.lock.clone(),
            _ => None,
        })
        .collect();
    for id in &ids {
        finish(store, id).await?;
    }
    Ok(ids.len() as u64)
}

/// The store as it will be once every pending operation has completed (the audit's
/// view): each present chunk applied in order, its condition checked. Chunk items whose
/// header was never written (a resolver that stopped before its prepare) are inert and
/// left out. Errors name an operation whose chunks cannot apply, or a lock without one.
pub fn roll_forward(records: &[Record]) -> Result<Vec<Record>, String> {
    let mut items: HashMap<Key, Record> = HashMap::new();
    let mut headers: BTreeMap<String, u32> = BTreeMap::new();
    for r in records {
        if let Item::Intent(i) = &r.item {
            if let Some(id) = r.key.pk.strip_prefix("INTENT#").filter(|rest| !rest.contains('#')) {
                headers.insert(id.to_string(), i.chunks);
            }
        }
        items.insert(r.key.clone(), r.clone());
    }
    for (id, chunks) in &headers {
        for n in 0..*chunks {
            let Some(Record { item: Item::Intent(chunk), .. }) = items.remove(&Key::intent_chunk(id, n)) else { continue };
            apply_writes(&mut items, chunk.writes)
                .map_err(|k| format!("operation {id}: chunk {n} cannot apply: {} is not as expected", k.pk))?;
        }
    }
    let mut out: Vec<Record> = items.into_values().filter(|r| r.key.sk != "INTENT").collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    if let Some((r, lock)) = out.iter().find_map(|r| match &r.item {
        Item::Comp(CompItem { lock: Some(l), .. }) => Some((r, l)),
        _ => None,
    }) {
        return Err(format!("{} is locked by operation {lock}, which has no header", r.key.pk));
    }
    Ok(out)
}
