//! Items and the store trait. The resolver runs unchanged over DynamoDB
//! ([`DynamoStore`]) and memory ([`MemStore`]); [`Metered`] counts the requests, read
//! units and write units a store would be billed for.
//!
//! One table, `pk`/`sk`:
//! - `PROFILE#<pid>` / `PROFILE`: the profile document (personal data lives only here
//!   and in `EV` items), with `email`, `first_name`, `last_name`, `<channel>_opt_in`
//!   at the top level for readers such as activation, and `id_kinds`, `channels`,
//!   `first_seen`, `last_seen_day` for the segments' pseudonymous profile snapshot.
//! - `ALIAS#<pid>` / `ALIAS`: a merged-away profile id → its survivor.
//! - `ID#<kind>#<sha256>` / `ID`: identifier → profile and component; co-occurrence
//!   counts (shared values); `suppressed` after an erasure, `excluded` after a repair.
//! - `EV#<identity key>` / `EV`: one distinct identifier set: its component, first seen,
//!   and the join of what its observations said.
//! - `COMP#<key>` / `COMP`: a connected component: its evidence (hashes only) and the
//!   profile of each evidence. Every structural change is a transaction conditioned on
//!   the versions of the components it read: the optimistic lock that makes concurrent
//!   resolvers converge.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use ariane_shared::error::{AwsError, SdkResultExt};
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, KeysAndAttributes, Put, TransactWriteItem};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::partition::{CoOccurrence, IdRef};
use crate::profile::Doc;
pub use ariane_shared::adapters::dynamodb::item_size;
pub use ariane_shared::adapters::metered::{Meter, MeterReading, Metered};

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: String,
    pub sk: &'static str,
}

impl Key {
    pub fn profile(pid: &str) -> Key {
        Key { pk: format!("PROFILE#{pid}"), sk: "PROFILE" }
    }
    pub fn alias(pid: &str) -> Key {
        Key { pk: format!("ALIAS#{pid}"), sk: "ALIAS" }
    }
    pub fn id(id: &IdRef) -> Key {
        Key { pk: format!("ID#{}#{}", id.kind, id.hash), sk: "ID" }
    }
    pub fn evidence(key: &str) -> Key {
        Key { pk: format!("EV#{key}"), sk: "EV" }
    }
    pub fn component(key: &str) -> Key {
        Key { pk: format!("COMP#{key}"), sk: "COMP" }
    }
    /// A large operation's header (see [`crate::intent`]).
    pub fn intent(id: &str) -> Key {
        Key { pk: format!("INTENT#{id}"), sk: "INTENT" }
    }
    /// The `n`-th chunk of a large operation.
    pub fn intent_chunk(id: &str, n: u32) -> Key {
        Key { pk: format!("INTENT#{id}#{n}"), sk: "INTENT" }
    }
    fn sk_of(sk: &str) -> Option<&'static str> {
        ["PROFILE", "ALIAS", "ID", "EV", "COMP", "INTENT"].into_iter().find(|s| *s == sk)
    }
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (&self.pk, self.sk).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        let (pk, sk): (String, String) = Deserialize::deserialize(d)?;
        let sk = Key::sk_of(&sk).ok_or_else(|| serde::de::Error::custom(format!("unknown sort key {sk:?}")))?;
        Ok(Key { pk, sk })
    }
}

pub use ariane_shared::profile::ProfileItem;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasItem {
    pub to: String,
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
    #[serde(default)]
    pub co: CoOccurrence,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suppressed: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub excluded: bool,
    /// On the identifier an erasure was requested for: the evidence keys (hashes) it
    /// removed, so a retried request reports the same lake links again.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub erased_evidence: std::collections::BTreeSet<String>,
    /// On the same item: the keyed hashes of every identifier the erasure suppressed, in
    /// every round, for the lake purge (`functions/purge`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub erased_identifiers: std::collections::BTreeSet<String>,
    /// On the same item: the profile ids the erasure removed.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub erased_profiles: std::collections::BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvItem {
    pub component: String,
    pub first_seen: DateTime<Utc>,
    pub ids: Vec<IdRef>,
    pub doc: Doc,
    /// The source row that first showed this identifier set (evidence for the history).
    pub observation_id: String,
    pub source_key: String,
    pub source_line: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompEvidence {
    pub key: String,
    pub first_seen: DateTime<Utc>,
    pub ids: Vec<IdRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompItem {
    pub evidence: Vec<CompEvidence>,
    /// A large operation in progress over this component (its id): readers finish it
    /// before they act (see [`crate::intent`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
}

/// A large operation (see [`crate::intent`]): the header holds the number of chunks, each
/// chunk the writes it applies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IntentItem {
    #[serde(default)]
    pub chunks: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<Write>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Item {
    Profile(ProfileItem),
    Alias(AliasItem),
    Id(IdItem),
    Ev(EvItem),
    Comp(CompItem),
    Intent(IntentItem),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub key: Key,
    pub version: u64,
    pub item: Item,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Expect {
    Absent,
    Version(u64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)]
pub enum Op {
    Put(Item),
    /// A put with the version the writer chose (a large operation's locks, whose version
    /// its later chunks are conditioned on).
    PutAt(Item, u64),
    Delete,
    /// Only checks the expectation (another resolver must not have changed it).
    Check,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Write {
    pub key: Key,
    pub expect: Expect,
    pub op: Op,
}

impl Write {
    /// The version the written item gets: a fresh random number, never `old + 1`. With
    /// counters, an item deleted and re-created (a component or a profile that a merge
    /// removed and a later split brings back) would restart at 1, and a resolver holding
    /// a stale read of the old version-1 item would pass its condition (the ABA problem).
    pub fn new_version(&self) -> u64 {
        match self.op {
            Op::PutAt(_, v) => v,
            _ => fresh_version(),
        }
    }

    /// The item this write puts, if it puts one.
    pub fn item(&self) -> Option<&Item> {
        match &self.op {
            Op::Put(item) | Op::PutAt(item, _) => Some(item),
            Op::Delete | Op::Check => None,
        }
    }
}

/// A random, non-zero 64-bit version (different sequences in different processes, so
/// Lambda instances do not repeat each other's).
pub fn fresh_version() -> u64 {
    ariane_shared::backoff::random_u64().max(1)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A condition failed: someone else changed what this resolver read. Retry.
    #[error("concurrent change: {0}")]
    Conflict(String),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("item {0} cannot be decoded: {1}")]
    Decode(String, String),
    #[error("a transaction of {0} items exceeds the limit (DynamoDB's: 100 items)")]
    TooLarge(usize),
}

/// What the resolver needs from a store: strongly consistent batched reads and atomic,
/// conditional multi-item writes.
#[async_trait::async_trait]
pub trait ItemStore: Send + Sync {
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError>;
    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError>;
}

/// Every item of the store: audits ([`crate::audit`]) and tests. On DynamoDB a
/// strongly consistent scan, so an operator tool, never a resolver step.
#[async_trait::async_trait]
pub trait Listing: ItemStore {
    async fn list_all(&self) -> Result<Vec<Record>, StoreError>;
}

/// In-memory store (the oracle tests, property tests and the speed benchmark).
#[derive(Debug, Default)]
pub struct MemStore {
    items: Mutex<HashMap<Key, Record>>,
}

impl MemStore {
    pub fn snapshot(&self) -> Vec<Record> {
        let mut v: Vec<Record> = self.items.lock().expect("poisoned").values().cloned().collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }
}

/// Applies writes to items as one transaction: every condition is checked first, and
/// nothing changes if one fails (the key of the first that fails). The in-memory store's
/// commit and the audit's roll-forward of large operations ([`crate::intent`]).
pub(crate) fn apply_writes(items: &mut HashMap<Key, Record>, writes: Vec<Write>) -> Result<(), Key> {
    for w in &writes {
        let holds = match (&w.expect, items.get(&w.key)) {
            (Expect::Absent, None) => true,
            (Expect::Version(v), Some(r)) => r.version == *v,
            _ => false,
        };
        if !holds {
            return Err(w.key.clone());
        }
    }
    for w in writes {
        let version = w.new_version();
        match w.op {
            Op::Put(item) | Op::PutAt(item, _) => {
                items.insert(w.key.clone(), Record { key: w.key, version, item });
            }
            Op::Delete => {
                items.remove(&w.key);
            }
            Op::Check => {}
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl ItemStore for MemStore {
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        let items = self.items.lock().expect("poisoned");
        Ok(keys.iter().filter_map(|k| items.get(k).cloned()).collect())
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.len() > 100 {
            return Err(StoreError::TooLarge(writes.len()));
        }
        let mut items = self.items.lock().expect("poisoned");
        apply_writes(&mut items, writes).map_err(|k| StoreError::Conflict(k.pk))
    }
}

#[async_trait::async_trait]
impl Listing for MemStore {
    async fn list_all(&self) -> Result<Vec<Record>, StoreError> {
        Ok(self.snapshot())
    }
}

/// DynamoDB encoding of items: `pk`, `sk`, `v` (version), `doc` (JSON) and a few
/// top-level attributes for other readers.
pub fn to_attributes(key: &Key, version: u64, item: &Item) -> HashMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::S(v.to_string());
    let (body, profile_id) = match item {
        // The contract with segments and activation: the shared profile item's encoding.
        Item::Profile(p) => return p.to_attributes(version),
        Item::Alias(a) => (serde_json::to_string(a), Some(&a.to)),
        Item::Id(i) => (serde_json::to_string(i), i.profile_id.as_ref()),
        Item::Ev(e) => (serde_json::to_string(e), None),
        Item::Comp(c) => (serde_json::to_string(c), None),
        Item::Intent(i) => (serde_json::to_string(i), None),
    };
    let mut m = HashMap::new();
    m.insert("pk".to_string(), s(&key.pk));
    m.insert("sk".to_string(), s(key.sk));
    m.insert("v".to_string(), AttributeValue::N(version.to_string()));
    m.insert("doc".to_string(), AttributeValue::S(body.expect("items serialise")));
    if let Some(p) = profile_id {
        m.insert("profile_id".into(), s(p));
    }
    m
}

pub fn from_attributes(attrs: &HashMap<String, AttributeValue>) -> Result<Record, StoreError> {
    let text = |n: &str| attrs.get(n).and_then(|v| v.as_s().ok()).map(String::as_str);
    let pk = text("pk").ok_or_else(|| StoreError::Decode("an item".into(), "no pk attribute".into()))?.to_string();
    let sk = Key::sk_of(text("sk").unwrap_or_default()).ok_or_else(|| StoreError::Decode(pk.clone(), "unknown sk".into()))?;
    // Every item the resolver writes has a version; one without it cannot take part in
    // the optimistic lock.
    let version = attrs
        .get("v")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::Decode(pk.clone(), "no version (`v`)".into()))?;
    let doc = text("doc").ok_or_else(|| StoreError::Decode(pk.clone(), "no doc attribute".into()))?;
    let de = |e: serde_json::Error| StoreError::Decode(pk.clone(), e.to_string());
    let item = match sk {
        "PROFILE" => Item::Profile(serde_json::from_str(doc).map_err(de)?),
        "ALIAS" => Item::Alias(serde_json::from_str(doc).map_err(de)?),
        "ID" => Item::Id(serde_json::from_str(doc).map_err(de)?),
        "EV" => Item::Ev(serde_json::from_str(doc).map_err(de)?),
        "INTENT" => Item::Intent(serde_json::from_str(doc).map_err(de)?),
        _ => Item::Comp(serde_json::from_str(doc).map_err(de)?),
    };
    Ok(Record { key: Key { pk, sk }, version, item })
}

/// Retries of the keys a BatchGetItem left unprocessed (throttled partitions).
const UNPROCESSED_BACKOFF: ariane_shared::backoff::Backoff = ariane_shared::backoff::Backoff::new(std::time::Duration::from_millis(20), 6);

#[derive(Clone, Debug)]
pub struct DynamoStore {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

#[async_trait::async_trait]
impl ItemStore for DynamoStore {
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        let mut unique: Vec<&Key> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        let mut out = Vec::new();
        for chunk in unique.chunks(100) {
            let mut request = KeysAndAttributes::builder().consistent_read(true);
            for k in chunk {
                request = request.keys(HashMap::from([
                    ("pk".to_string(), AttributeValue::S(k.pk.clone())),
                    ("sk".to_string(), AttributeValue::S(k.sk.to_string())),
                ]));
            }
            let mut pending = Some(request.build().expect("keys are set"));
            let mut attempt = 0u32;
            while let Some(req) = pending.take() {
                let resp =
                    self.client.batch_get_item().request_items(&self.table, req).send().await.aws("dynamodb:BatchGetItem identity")?;
                for attrs in resp.responses().and_then(|r| r.get(&self.table)).into_iter().flatten() {
                    out.push(from_attributes(attrs)?);
                }
                if let Some(left) = resp.unprocessed_keys().and_then(|u| u.get(&self.table)).filter(|k| !k.keys().is_empty()) {
                    UNPROCESSED_BACKOFF.wait(attempt).await;
                    attempt += 1;
                    pending = Some(left.clone());
                }
            }
        }
        Ok(out)
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.len() > 100 {
            return Err(StoreError::TooLarge(writes.len()));
        }
        let condition = |e: &Expect| match e {
            Expect::Absent => ("attribute_not_exists(pk)".to_string(), None),
            Expect::Version(v) => ("v = :v".to_string(), Some(AttributeValue::N(v.to_string()))),
        };
        let conflict = |e: &AwsError| {
            e.is_code("ConditionalCheckFailedException")
                || e.is_code("TransactionCanceledException")
                || e.is_code("TransactionConflictException")
        };
        if writes.len() == 1 && writes[0].op != Op::Check {
            // One item: a plain conditional write (half the write units of a transaction).
            let w = &writes[0];
            let (cond, value) = condition(&w.expect);
            let result = match &w.op {
                Op::Put(item) | Op::PutAt(item, _) => self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(to_attributes(&w.key, w.new_version(), item)))
                    .condition_expression(cond)
                    .set_expression_attribute_values(value.map(|v| HashMap::from([(":v".to_string(), v)])))
                    .send()
                    .await
                    .map(|_| ())
                    .aws("dynamodb:PutItem identity"),
                Op::Delete | Op::Check => self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .key("pk", AttributeValue::S(w.key.pk.clone()))
                    .key("sk", AttributeValue::S(w.key.sk.to_string()))
                    .condition_expression(cond)
                    .set_expression_attribute_values(value.map(|v| HashMap::from([(":v".to_string(), v)])))
                    .send()
                    .await
                    .map(|_| ())
                    .aws("dynamodb:DeleteItem identity"),
            };
            return match result {
                Ok(()) => Ok(()),
                Err(e) if conflict(&e) => Err(StoreError::Conflict(w.key.pk.clone())),
                Err(e) => Err(e.into()),
            };
        }
        let mut tx = self.client.transact_write_items();
        for w in &writes {
            let (cond, value) = condition(&w.expect);
            let values = value.map(|v| HashMap::from([(":v".to_string(), v)]));
            let key = HashMap::from([
                ("pk".to_string(), AttributeValue::S(w.key.pk.clone())),
                ("sk".to_string(), AttributeValue::S(w.key.sk.to_string())),
            ]);
            let item = match &w.op {
                Op::Put(item) | Op::PutAt(item, _) => TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(to_attributes(&w.key, w.new_version(), item)))
                            .condition_expression(cond)
                            .set_expression_attribute_values(values)
                            .build()
                            .expect("table and item are set"),
                    )
                    .build(),
                Op::Delete => TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.table)
                            .set_key(Some(key))
                            .condition_expression(cond)
                            .set_expression_attribute_values(values)
                            .build()
                            .expect("table and key are set"),
                    )
                    .build(),
                Op::Check => TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name(&self.table)
                            .set_key(Some(key))
                            .condition_expression(cond)
                            .set_expression_attribute_values(values)
                            .build()
                            .expect("table and key are set"),
                    )
                    .build(),
            };
            tx = tx.transact_items(item);
        }
        match tx.send().await.aws("dynamodb:TransactWriteItems identity") {
            Ok(_) => Ok(()),
            Err(e) if conflict(&e) => Err(StoreError::Conflict(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait::async_trait]
impl Listing for DynamoStore {
    async fn list_all(&self) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let resp = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .aws("dynamodb:Scan identity")?;
            for attrs in resp.items() {
                // The table also holds items other functions write (none today); only
                // the resolver's kinds are listed.
                if attrs.get("sk").and_then(|v| v.as_s().ok()).and_then(|sk| Key::sk_of(sk)).is_some() {
                    out.push(from_attributes(attrs)?);
                }
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

#[async_trait::async_trait]
impl<S: ItemStore> ItemStore for Metered<S> {
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Record>, StoreError> {
        let mut unique: Vec<&Key> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        let records = self.inner.get_many(keys).await?;
        // One BatchGetItem per 100 keys; strongly consistent: a missing key still costs
        // one unit, a found item one per 4 KB.
        let mut sizes: Vec<usize> = records.iter().map(|r| item_size(&to_attributes(&r.key, r.version, &r.item))).collect();
        sizes.resize(unique.len().max(sizes.len()), 0);
        for chunk in sizes.chunks(100) {
            self.meter.read(chunk);
        }
        Ok(records)
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let sizes: Vec<usize> = writes
            .iter()
            .map(|w| match w.item() {
                Some(item) => item_size(&to_attributes(&w.key, w.new_version(), item)),
                None => 0,
            })
            .collect();
        self.meter.write(&sizes, writes.len() > 1);
        let result = self.inner.commit(writes).await;
        if matches!(result, Err(StoreError::Conflict(_))) {
            self.meter.conflict();
        }
        result
    }
}

/// Records by key.
pub fn by_key(records: Vec<Record>) -> BTreeMap<Key, Record> {
    records.into_iter().map(|r| (r.key.clone(), r)).collect()
}
