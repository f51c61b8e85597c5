//! What resolution takes and gives: a structural [`Change`] (evidence added or removed,
//! identifiers excluded or suppressed), the [`Outcome`] (lake links, merge history,
//! counts), errors, and the small helpers the resolver and its structural step share.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::partition::IdRef;
use crate::profile::Doc;
use crate::store::{IdItem, Item, Key, Record, StoreError, Write};

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
    /// Evidence documents that forgot an erased value (and their profiles with them).
    pub forgotten: u64,
    /// Structural steps too large for one transaction, applied in chunks
    /// ([`crate::intent`]) by this resolver (not those it finished for another).
    pub large_operations: u64,
    /// Profiles a structural step wrote by joining what it brought into the stored
    /// document, and profiles it rebuilt from every evidence document.
    pub profiles_joined: u64,
    pub profiles_rebuilt: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub links: Vec<Link>,
    pub history: Vec<HistoryRecord>,
    pub stats: Stats,
    /// After an erasure: what the lake purge is to remove (every round's, from the
    /// requested identifier's suppression entry).
    pub erased: Option<ariane_shared::erasure::PurgeTargets>,
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
        self.forgotten += o.forgotten;
        self.large_operations += o.large_operations;
        self.profiles_joined += o.profiles_joined;
        self.profiles_rebuilt += o.profiles_rebuilt;
    }
}

impl Outcome {
    /// Adds what one successful structural step reported.
    pub(crate) fn absorb(&mut self, step: Outcome) {
        self.links.extend(step.links);
        self.history.extend(step.history);
        self.stats.add(&step.stats);
    }
}

/// The component keys of the evidence items among `records`.
pub(crate) fn components_of<'a>(records: impl IntoIterator<Item = &'a Record>) -> BTreeSet<Key> {
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
    #[error("profile component {component} is being changed by operation {operation}: try again in a minute (an interrupted operation is finished by the next identity change to the person)")]
    Locked { component: String, operation: String },
    #[error("component {component} would hold {count} evidence sets (limit {limit}): block or exclude the identifier that links them")]
    ComponentTooLarge { component: String, count: usize, limit: usize },
    #[error("item {key} would take {bytes} bytes (DynamoDB's limit is 400 KB, Ariane keeps {limit}): block or exclude the identifier that links this much")]
    ItemTooLarge { key: String, bytes: usize, limit: usize },
}

/// The largest item the resolver writes: under DynamoDB's 400 KB with room to spare.
pub const MAX_ITEM_BYTES: usize = 350 * 1024;

/// Refuses a write whose item would not fit in DynamoDB, before any request is made.
pub(crate) fn check_item_size(w: &Write) -> Result<(), ResolveError> {
    if let Some(item) = w.item() {
        // A bound first, without building the item's attributes: the JSON document,
        // counted as it is written, at most once more for the top-level attributes that
        // repeat parts of it (a profile's names, kinds, channels), plus the key and the
        // attribute names. Items are far below the limit; the exact size only near it.
        if 2 * json_len(item) + w.key.pk.len() + 2048 <= MAX_ITEM_BYTES {
            return Ok(());
        }
        let bytes = crate::store::item_size(&crate::store::to_attributes(&w.key, 0, item));
        if bytes > MAX_ITEM_BYTES {
            return Err(ResolveError::ItemTooLarge { key: w.key.pk.clone(), bytes, limit: MAX_ITEM_BYTES });
        }
    }
    Ok(())
}

/// The length of an item's JSON encoding, counted without keeping it.
fn json_len(item: &crate::store::Item) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, item) {
        Ok(()) => c.0,
        // Not expected (every item serialises); the exact check then decides.
        Err(_) => usize::MAX / 4,
    }
}

/// New evidence from a batch: its usable identifiers and what its observations said.
#[derive(Clone, Debug)]
pub(crate) struct Incoming {
    pub(crate) key: String,
    pub(crate) first_seen: DateTime<Utc>,
    pub(crate) ids: Vec<IdRef>,
    pub(crate) doc: Doc,
    pub(crate) observation_id: String,
    pub(crate) source_key: String,
    pub(crate) source_line: u64,
}

/// A structural change: evidence to add, evidence to remove, identifiers to exclude or
/// suppress.
#[derive(Clone, Debug, Default)]
pub(crate) struct Change {
    pub(crate) adds: Vec<Incoming>,
    pub(crate) removes: BTreeSet<String>,
    pub(crate) exclude: BTreeSet<IdRef>,
    pub(crate) suppress: BTreeSet<IdRef>,
    /// The identifier an erasure was requested for: its suppression entry keeps the
    /// erased evidence keys, so a retried erasure can report the same links again.
    pub(crate) erase_of: Option<IdRef>,
    /// The profile an erasure round removes evidence of (kept on the same entry).
    pub(crate) erased_profile: Option<String>,
    /// Evidence whose documents lose the clear identifiers whose keyed hash is in
    /// `forget_values` (another person's erased value, shared with them).
    pub(crate) forget_in: BTreeSet<String>,
    pub(crate) forget_values: BTreeSet<String>,
}

/// Whether an identifier may link evidence (not shared, excluded or suppressed).
pub(crate) fn linkable_state(st: &IdItem) -> bool {
    !st.co.shared && !st.excluded && !st.suppressed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Expect, Item, Key, Op, ProfileItem, Write};

    fn profile_with_street(bytes: usize) -> Write {
        let mut p = ProfileItem { profile_id: "p".into(), component: "c".into(), doc: Default::default(), merged_from: vec![] };
        p.doc.traits.insert(
            "street".into(),
            ariane_shared::profile::TraitValue {
                value: "x".repeat(bytes),
                at: chrono::Utc::now(),
                source: "crm".into(),
                observation_id: "o".into(),
            },
        );
        Write { key: Key::profile("p"), expect: Expect::Absent, op: Op::Put(Item::Profile(p)) }
    }

    #[test]
    fn item_size_is_bounded_cheaply_and_measured_near_the_limit() {
        assert!(check_item_size(&profile_with_street(1_000)).is_ok());
        // Past the bound but under the limit (the street is not a top-level attribute): exact.
        assert!(check_item_size(&profile_with_street(200 * 1024)).is_ok());
        match check_item_size(&profile_with_street(MAX_ITEM_BYTES)) {
            Err(ResolveError::ItemTooLarge { key, bytes, limit }) => {
                assert_eq!(key, "PROFILE#p");
                assert!(bytes > limit, "{bytes} > {limit}");
            }
            other => panic!("expected ItemTooLarge, got {other:?}"),
        }
    }
}
