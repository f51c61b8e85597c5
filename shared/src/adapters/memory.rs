//! In-memory adapters of every port, for unit tests of the decisions: the same semantics
//! as the AWS adapters (conditional writes, claims with leases, optimistic versions),
//! and [`Faults`] to make chosen calls fail the way AWS does (a retryable service
//! error), so a test can crash a handler between two steps and run it again.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration as StdDuration;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::AwsError;
use crate::lake::ProfileState;
use crate::memberships::{MembershipChange, Memberships};
use crate::ports::{
    ActivationLedger, AudienceRow, BlobError, BlobMeta, BlobReader, BlobStore, BlobVersion, BreakerState, Claim, ClaimToken, Deferral,
    Effects, LedgerError, MembershipStore, PressureEntry, ProfileReadError, ProfileReader, Queue, SendError, SendStatus,
};
use crate::profile::ProfileItem;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update below is a single insertion or assignment: a panic elsewhere cannot
    // leave the maps half-changed, so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The AWS error code of an injected failure.
pub const INJECTED: &str = "InjectedFault";

struct Fault {
    op: String,
    key_contains: Option<String>,
    /// Matching calls let through before the failures start.
    skip: usize,
    remaining: usize,
}

/// Failures to inject into an in-memory adapter: the next `times` calls of an operation
/// (optionally only on keys containing a text) fail with a retryable AWS error whose code
/// is [`INJECTED`]. Operations are named `<port>.<call>`: `blob.head`, `blob.get`,
/// `blob.open`, `blob.put`, `blob.list`, `blob.delete`, `queue.send`, `ledger.claim`,
/// `ledger.complete`, `ledger.release`, `ledger.defer`, `ledger.due_deferrals`,
/// `ledger.delete_deferral`, `ledger.pressure`, `ledger.put_pressure`,
/// `ledger.audience`, `ledger.put_audience`, `ledger.delete_audience`,
/// `profiles.get`, `profiles.scan`.
#[derive(Default)]
pub struct Faults {
    rules: Mutex<Vec<Fault>>,
    injected: Mutex<usize>,
}

impl Faults {
    /// The next `times` calls of `op` fail.
    pub fn fail(&self, op: &str, times: usize) {
        lock(&self.rules).push(Fault { op: op.to_string(), key_contains: None, skip: 0, remaining: times });
    }

    /// The `skip` next calls of `op` succeed, then `times` calls fail.
    pub fn fail_after(&self, op: &str, skip: usize, times: usize) {
        lock(&self.rules).push(Fault { op: op.to_string(), key_contains: None, skip, remaining: times });
    }

    /// The next `times` calls of `op` on a key containing `key_part` fail.
    pub fn fail_on(&self, op: &str, key_part: &str, times: usize) {
        lock(&self.rules).push(Fault { op: op.to_string(), key_contains: Some(key_part.to_string()), skip: 0, remaining: times });
    }

    pub fn clear(&self) {
        lock(&self.rules).clear();
    }

    /// How many failures were injected so far.
    pub fn injected(&self) -> usize {
        *lock(&self.injected)
    }

    /// Fails this call if a rule says so.
    pub fn check(&self, op: &'static str, key: &str) -> Result<(), AwsError> {
        let mut rules = lock(&self.rules);
        let hit = rules.iter_mut().find(|f| f.remaining > 0 && f.op == op && f.key_contains.as_deref().is_none_or(|k| key.contains(k)));
        let hit = match hit {
            Some(f) if f.skip > 0 => {
                f.skip -= 1;
                None
            }
            other => other,
        };
        match hit {
            Some(f) => {
                f.remaining -= 1;
                *lock(&self.injected) += 1;
                Err(AwsError {
                    operation: op,
                    code: INJECTED.into(),
                    message: format!("injected failure of {op} on {key}"),
                    retryable: true,
                    source: format!("injected failure of {op}").into(),
                })
            }
            None => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------

#[derive(Clone)]
struct Object {
    body: Bytes,
    etag: String,
    content_type: String,
    purged_by: Option<String>,
}

/// Buckets in memory. Every object is mirrored into an `object_store` [`InMemory`] per
/// bucket, which DataFusion reads ([`BlobStore::object_store`]).
#[derive(Default)]
pub struct MemBlobs {
    objects: Mutex<BTreeMap<(String, String), Object>>,
    mirrors: Mutex<HashMap<String, Arc<InMemory>>>,
    pub faults: Faults,
}

impl MemBlobs {
    pub fn new() -> Self {
        Self::default()
    }

    fn mirror(&self, bucket: &str) -> Arc<InMemory> {
        lock(&self.mirrors).entry(bucket.to_string()).or_insert_with(|| Arc::new(InMemory::new())).clone()
    }

    /// Every key of a bucket, sorted.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        lock(&self.objects).keys().filter(|(b, _)| b == bucket).map(|(_, k)| k.clone()).collect()
    }

    /// An object's content type (as the writer declared it).
    pub fn content_type(&self, bucket: &str, key: &str) -> Option<String> {
        lock(&self.objects).get(&(bucket.to_string(), key.to_string())).map(|o| o.content_type.clone())
    }

    async fn store(&self, bucket: &str, key: &str, body: Bytes, content_type: &str) -> Result<(), BlobError> {
        self.store_marked(bucket, key, body, content_type, None).await
    }

    async fn store_marked(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        purged_by: Option<String>,
    ) -> Result<(), BlobError> {
        let etag = format!("\"{}\"", &crate::identifiers::sha256_hex_bytes(&body)[..32]);
        self.mirror(bucket)
            .put(&object_store::path::Path::from(key), body.clone().into())
            .await
            .map_err(|e| BlobError::Io { path: format!("mem://{bucket}/{key}"), source: std::io::Error::other(e.to_string()) })?;
        lock(&self.objects)
            .insert((bucket.to_string(), key.to_string()), Object { body, etag, content_type: content_type.to_string(), purged_by });
        Ok(())
    }
}

#[async_trait::async_trait]
impl BlobStore for MemBlobs {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        self.faults.check("blob.head", key)?;
        Ok(lock(&self.objects).get(&(bucket.to_string(), key.to_string())).map(|o| BlobMeta {
            etag: o.etag.clone(),
            size: Some(o.body.len() as i64),
            purged_by: o.purged_by.clone(),
        }))
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, BlobError> {
        self.faults.check("blob.get", key)?;
        Ok(lock(&self.objects).get(&(bucket.to_string(), key.to_string())).map(|o| o.body.clone()))
    }

    async fn open(&self, bucket: &str, key: &str, version: &BlobVersion) -> Result<BlobReader, BlobError> {
        self.faults.check("blob.open", key)?;
        let object = lock(&self.objects).get(&(bucket.to_string(), key.to_string())).cloned();
        let object = object.ok_or_else(|| BlobError::NotFound { bucket: bucket.into(), key: key.into() })?;
        if let BlobVersion::ETag(e) = version {
            if e.trim_matches('"') != object.etag.trim_matches('"') {
                return Err(AwsError {
                    operation: "s3:GetObject source",
                    code: "PreconditionFailed".into(),
                    message: format!("mem://{bucket}/{key} changed: its entity tag is no longer {e}"),
                    retryable: false,
                    source: "precondition failed".into(),
                }
                .into());
            }
        }
        Ok(Box::pin(std::io::Cursor::new(object.body)))
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes, content_type: &str) -> Result<(), BlobError> {
        self.faults.check("blob.put", key)?;
        self.store(bucket, key, body, content_type).await
    }

    async fn put_file(&self, bucket: &str, key: &str, path: &Path, content_type: &str) -> Result<(), BlobError> {
        self.faults.check("blob.put", key)?;
        let body = tokio::fs::read(path).await.map_err(|source| BlobError::Io { path: path.display().to_string(), source })?;
        self.store(bucket, key, Bytes::from(body), content_type).await
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BlobError> {
        self.faults.check("blob.list", prefix)?;
        Ok(self.keys(bucket).into_iter().filter(|k| k.starts_with(prefix)).collect())
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        self.faults.check("blob.delete", key)?;
        let _ = self.mirror(bucket).delete(&object_store::path::Path::from(key)).await;
        lock(&self.objects).remove(&(bucket.to_string(), key.to_string()));
        Ok(())
    }

    /// Memory keeps one version per key: nothing older to remove.
    async fn rewrite(&self, bucket: &str, key: &str, body: Bytes, content_type: &str, purged_by: &str) -> Result<usize, BlobError> {
        self.faults.check("blob.put", key)?;
        self.store_marked(bucket, key, body, content_type, Some(purged_by.to_string())).await?;
        Ok(0)
    }

    async fn delete_all_versions(&self, bucket: &str, key: &str) -> Result<usize, BlobError> {
        self.faults.check("blob.delete", key)?;
        let existed = lock(&self.objects).contains_key(&(bucket.to_string(), key.to_string()));
        self.delete(bucket, key).await?;
        Ok(usize::from(existed))
    }

    fn object_store(&self, bucket: &str) -> Option<Arc<dyn ObjectStore>> {
        Some(self.mirror(bucket))
    }
}

// ---------------------------------------------------------------------------------------

/// Queues in memory: what was sent, per queue URL, in order.
#[derive(Default)]
pub struct MemQueue {
    sent: Mutex<BTreeMap<String, Vec<String>>>,
    delayed: Mutex<BTreeMap<String, Vec<(String, StdDuration)>>>,
    pub faults: Faults,
}

impl MemQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// The bodies put back to wait on a queue (`send_delayed`, or `send_all_delayed` with
    /// a delay), with their delays.
    pub fn delayed(&self, queue_url: &str) -> Vec<(String, StdDuration)> {
        lock(&self.delayed).get(queue_url).cloned().unwrap_or_default()
    }

    /// Takes the bodies waiting on a queue with their delays (as a consumer receiving
    /// them once their delays have passed would).
    pub fn take_delayed(&self, queue_url: &str) -> Vec<(String, StdDuration)> {
        lock(&self.delayed).remove(queue_url).unwrap_or_default()
    }

    /// The bodies sent to a queue so far.
    pub fn sent(&self, queue_url: &str) -> Vec<String> {
        lock(&self.sent).get(queue_url).cloned().unwrap_or_default()
    }

    /// Takes the bodies sent to a queue (as a consumer receiving them would).
    pub fn take(&self, queue_url: &str) -> Vec<String> {
        lock(&self.sent).remove(queue_url).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Queue for MemQueue {
    async fn send_all(&self, queue_url: &str, bodies: &[String]) -> Result<usize, SendError> {
        // One check per batch of ten, as SQS sees requests.
        for chunk in bodies.chunks(crate::adapters::sqs::SQS_BATCH) {
            self.faults.check("queue.send", queue_url)?;
            lock(&self.sent).entry(queue_url.to_string()).or_default().extend(chunk.iter().cloned());
        }
        Ok(bodies.len())
    }

    async fn send_delayed(&self, queue_url: &str, body: &str, delay: StdDuration) -> Result<(), SendError> {
        self.faults.check("queue.send_delayed", queue_url)?;
        lock(&self.delayed).entry(queue_url.to_string()).or_default().push((body.to_string(), delay));
        Ok(())
    }

    /// A delay of zero is an immediate send (it lands with [`MemQueue::sent`]), as SQS
    /// makes it visible at once; the others land with [`MemQueue::delayed`].
    async fn send_all_delayed(&self, queue_url: &str, entries: &[(String, StdDuration)]) -> Result<usize, SendError> {
        for chunk in entries.chunks(crate::adapters::sqs::SQS_BATCH) {
            self.faults.check("queue.send", queue_url)?;
            for (body, delay) in chunk {
                if delay.is_zero() {
                    lock(&self.sent).entry(queue_url.to_string()).or_default().push(body.clone());
                } else {
                    lock(&self.delayed).entry(queue_url.to_string()).or_default().push((body.clone(), *delay));
                }
            }
        }
        Ok(entries.len())
    }
}

// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum SendState {
    Claimed { lease_until: i64, token: String },
    Deferred,
    Done { status: SendStatus, effects: String, token: String },
}

/// The answer to a complete, release or defer whose token no longer holds the claim.
fn lost(send_key: &str, state: Option<&SendState>) -> LedgerError {
    let status = match state {
        None => "absent",
        Some(SendState::Claimed { .. }) => "claimed by another holder",
        Some(SendState::Deferred) => "deferred",
        Some(SendState::Done { status, .. }) => status.as_str(),
    };
    LedgerError::ClaimLost { send_key: send_key.to_string(), status: status.to_string() }
}

#[derive(Default)]
struct Ledger {
    sends: BTreeMap<String, SendState>,
    attempts: BTreeMap<String, u32>,
    pressure: BTreeMap<String, (u64, Vec<PressureEntry>)>,
    deferrals: BTreeMap<(DateTime<Utc>, String), String>,
    audience: BTreeMap<(String, String), Vec<AudienceRow>>,
    breakers: BTreeMap<String, BreakerState>,
    activity: BTreeMap<String, BTreeMap<String, DateTime<Utc>>>,
}

/// The activation ledger in memory, with the DynamoDB adapter's semantics.
#[derive(Default)]
pub struct MemLedger {
    state: Mutex<Ledger>,
    pub faults: Faults,
}

impl MemLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// The status of a send (`claimed`, `deferred`, `sent`, `suppressed`).
    pub fn status(&self, send_key: &str) -> Option<&'static str> {
        lock(&self.state).sends.get(send_key).map(|s| match s {
            SendState::Claimed { .. } => "claimed",
            SendState::Deferred => "deferred",
            SendState::Done { status, .. } => status.as_str(),
        })
    }

    /// Every send key with its status.
    pub fn statuses(&self) -> BTreeMap<String, &'static str> {
        let keys: Vec<String> = lock(&self.state).sends.keys().cloned().collect();
        keys.into_iter().filter_map(|k| self.status(&k).map(|s| (k, s))).collect()
    }

    /// The recent sends recorded for a person.
    pub fn pressure_of(&self, profile_id: &str) -> Vec<PressureEntry> {
        lock(&self.state).pressure.get(profile_id).map(|(_, e)| e.clone()).unwrap_or_default()
    }

    /// Overwrites a completed send's stored effects (a corrupted item, for tests).
    pub fn corrupt_effects(&self, send_key: &str, raw: &str) {
        if let Some(SendState::Done { effects, .. }) = lock(&self.state).sends.get_mut(send_key) {
            *effects = raw.to_string();
        }
    }
}

#[async_trait::async_trait]
impl ActivationLedger for MemLedger {
    async fn claim(&self, send_key: &str, lease: StdDuration, now: DateTime<Utc>) -> Result<Claim, LedgerError> {
        self.faults.check("ledger.claim", send_key)?;
        let mut st = lock(&self.state);
        let t = now.timestamp();
        match st.sends.get(send_key) {
            None | Some(SendState::Deferred) => {}
            Some(SendState::Claimed { lease_until, .. }) if *lease_until < t => {}
            Some(SendState::Claimed { .. }) => return Ok(Claim::InFlight),
            Some(SendState::Done { effects, .. }) => {
                let effects: Effects = serde_json::from_str(effects).map_err(|source| LedgerError::Decode {
                    key: format!("SEND#{send_key}"),
                    what: "effects",
                    source,
                })?;
                return Ok(Claim::Done(Box::new(effects)));
            }
        }
        let token = ClaimToken::fresh();
        st.sends.insert(send_key.to_string(), SendState::Claimed { lease_until: t + lease.as_secs() as i64, token: token.0.clone() });
        Ok(Claim::Acquired(token))
    }

    async fn complete(
        &self,
        send_key: &str,
        token: &ClaimToken,
        status: SendStatus,
        effects: &Effects,
        _detail: &str,
        _now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        self.faults.check("ledger.complete", send_key)?;
        let effects = serde_json::to_string(effects).map_err(|source| LedgerError::Decode {
            key: format!("SEND#{send_key}"),
            what: "effects",
            source,
        })?;
        let mut st = lock(&self.state);
        match st.sends.get(send_key) {
            Some(SendState::Claimed { token: held, .. }) if held == &token.0 => {}
            // A retried complete whose first success went unanswered.
            Some(SendState::Done { token: done, .. }) if done == &token.0 => return Ok(()),
            other => return Err(lost(send_key, other)),
        }
        st.sends.insert(send_key.to_string(), SendState::Done { status, effects, token: token.0.clone() });
        Ok(())
    }

    async fn release(&self, send_key: &str, token: &ClaimToken, _error: &str) -> Result<(), LedgerError> {
        self.faults.check("ledger.release", send_key)?;
        let mut st = lock(&self.state);
        match st.sends.get_mut(send_key) {
            Some(SendState::Claimed { lease_until, token: held }) if held == &token.0 => *lease_until = 0,
            other => {
                let err = lost(send_key, other.map(|o| &*o));
                return Err(err);
            }
        }
        *st.attempts.entry(send_key.to_string()).or_default() += 1;
        Ok(())
    }

    async fn defer(
        &self,
        send_key: &str,
        token: &ClaimToken,
        due: DateTime<Utc>,
        message: &str,
        _now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        self.faults.check("ledger.defer", send_key)?;
        let mut st = lock(&self.state);
        match st.sends.get(send_key) {
            Some(SendState::Claimed { token: held, .. }) if held == &token.0 => {}
            other => return Err(lost(send_key, other)),
        }
        st.deferrals.insert((due, send_key.to_string()), message.to_string());
        st.sends.insert(send_key.to_string(), SendState::Deferred);
        Ok(())
    }

    async fn due_deferrals(&self, now: DateTime<Utc>, days: i64) -> Result<Vec<Deferral>, LedgerError> {
        self.faults.check("ledger.due_deferrals", "")?;
        let from = (now - Duration::days(days)).date_naive();
        Ok(lock(&self.state)
            .deferrals
            .iter()
            .filter(|((due, _), _)| *due <= now && due.date_naive() >= from)
            .map(|((due, send_key), message)| Deferral { due: *due, send_key: send_key.clone(), message: message.clone() })
            .collect())
    }

    async fn delete_deferral(&self, d: &Deferral) -> Result<(), LedgerError> {
        self.faults.check("ledger.delete_deferral", &d.send_key)?;
        lock(&self.state).deferrals.remove(&(d.due, d.send_key.clone()));
        Ok(())
    }

    async fn breaker(&self, destination: &str) -> Result<BreakerState, LedgerError> {
        self.faults.check("ledger.breaker", destination)?;
        Ok(lock(&self.state).breakers.get(destination).cloned().unwrap_or_default())
    }

    async fn put_breaker(&self, destination: &str, state: &BreakerState) -> Result<(), LedgerError> {
        self.faults.check("ledger.put_breaker", destination)?;
        lock(&self.state).breakers.insert(destination.to_string(), state.clone());
        Ok(())
    }

    async fn pressure(&self, profile_id: &str) -> Result<(Option<u64>, Vec<PressureEntry>), LedgerError> {
        self.faults.check("ledger.pressure", profile_id)?;
        Ok(match lock(&self.state).pressure.get(profile_id) {
            Some((v, entries)) => (Some(*v), entries.clone()),
            None => (None, Vec::new()),
        })
    }

    async fn put_pressure(
        &self,
        profile_id: &str,
        version: Option<u64>,
        entries: &[PressureEntry],
        _retention: Duration,
    ) -> Result<bool, LedgerError> {
        self.faults.check("ledger.put_pressure", profile_id)?;
        let mut st = lock(&self.state);
        let current = st.pressure.get(profile_id).map(|(v, _)| *v);
        if current != version {
            return Ok(false);
        }
        st.pressure.insert(profile_id.to_string(), (version.unwrap_or(0) + 1, entries.to_vec()));
        Ok(true)
    }

    async fn audience(&self, campaign: &str, profile_id: &str) -> Result<Option<Vec<AudienceRow>>, LedgerError> {
        self.faults.check("ledger.audience", profile_id)?;
        Ok(lock(&self.state).audience.get(&(campaign.to_string(), profile_id.to_string())).cloned())
    }

    async fn put_audience(&self, campaign: &str, profile_id: &str, rows: &[AudienceRow], _now: DateTime<Utc>) -> Result<(), LedgerError> {
        self.faults.check("ledger.put_audience", profile_id)?;
        lock(&self.state).audience.insert((campaign.to_string(), profile_id.to_string()), rows.to_vec());
        Ok(())
    }

    async fn delete_audience(&self, campaign: &str, profile_id: &str) -> Result<(), LedgerError> {
        self.faults.check("ledger.delete_audience", profile_id)?;
        lock(&self.state).audience.remove(&(campaign.to_string(), profile_id.to_string()));
        Ok(())
    }

    async fn erase_send(&self, send_key: &str) -> Result<(), LedgerError> {
        self.faults.check("ledger.erase_send", send_key)?;
        let mut st = lock(&self.state);
        st.sends.remove(send_key);
        st.attempts.remove(send_key);
        Ok(())
    }
    async fn schedule(&self, key: &str, due: DateTime<Utc>, message: &str, _now: DateTime<Utc>) -> Result<(), LedgerError> {
        self.faults.check("ledger.schedule", key)?;
        lock(&self.state).deferrals.insert((due, key.to_string()), message.to_string());
        Ok(())
    }
    async fn note_activity(&self, profile_id: &str, event_type: &str, at: DateTime<Utc>) -> Result<(), LedgerError> {
        self.faults.check("ledger.note_activity", profile_id)?;
        let mut st = lock(&self.state);
        let latest = st.activity.entry(profile_id.to_string()).or_default().entry(event_type.to_string()).or_insert(at);
        *latest = (*latest).max(at);
        Ok(())
    }
    async fn activity(&self, profile_id: &str) -> Result<BTreeMap<String, DateTime<Utc>>, LedgerError> {
        self.faults.check("ledger.activity", profile_id)?;
        Ok(lock(&self.state).activity.get(profile_id).cloned().unwrap_or_default())
    }
}

// ---------------------------------------------------------------------------------------

/// Profiles in memory.
#[derive(Default)]
pub struct MemProfiles {
    items: Mutex<BTreeMap<String, ProfileItem>>,
    pub faults: Faults,
}

impl MemProfiles {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&self, item: ProfileItem) {
        lock(&self.items).insert(item.profile_id.clone(), item);
    }

    pub fn remove(&self, profile_id: &str) {
        lock(&self.items).remove(profile_id);
    }
}

#[async_trait::async_trait]
impl ProfileReader for MemProfiles {
    async fn profile(&self, profile_id: &str) -> Result<Option<ProfileItem>, ProfileReadError> {
        self.faults.check("profiles.get", profile_id)?;
        Ok(lock(&self.items).get(profile_id).cloned())
    }

    async fn summaries(&self) -> Result<Vec<ProfileState>, ProfileReadError> {
        self.faults.check("profiles.scan", "")?;
        Ok(lock(&self.items).values().map(ProfileItem::summary).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[tokio::test]
    async fn claims_follow_the_dynamodb_semantics() {
        let l = MemLedger::new();
        let now = at("2026-11-23T10:00:00Z");
        let lease = StdDuration::from_secs(120);
        let acquired = |c: Claim| match c {
            Claim::Acquired(token) => token,
            other => panic!("not acquired: {other:?}"),
        };
        let first = acquired(l.claim("k", lease, now).await.unwrap());
        assert_eq!(l.claim("k", lease, now).await.unwrap(), Claim::InFlight, "a live lease");
        let second = acquired(l.claim("k", lease, now + Duration::seconds(121)).await.unwrap());
        assert!(matches!(l.release("k", &first, "stale").await, Err(LedgerError::ClaimLost { .. })), "the expired holder's token");
        l.release("k", &second, "boom").await.unwrap();
        let third = acquired(l.claim("k", lease, now).await.unwrap());
        l.complete("k", &third, SendStatus::Sent, &Effects::default(), "", now).await.unwrap();
        assert_eq!(l.claim("k", lease, now).await.unwrap(), Claim::Done(Box::default()));
        assert!(l.release("k", &third, "late").await.is_err(), "only a claim can be released");
        l.corrupt_effects("k", "{oops");
        assert!(matches!(l.claim("k", lease, now).await, Err(LedgerError::Decode { .. })));
        // Deferral: claimable again, listed when due.
        let d = acquired(l.claim("d", lease, now).await.unwrap());
        let due = at("2026-11-24T07:00:00Z");
        l.defer("d", &d, due, "msg", now).await.unwrap();
        assert!(l.due_deferrals(now, 7).await.unwrap().is_empty());
        let listed = l.due_deferrals(due, 7).await.unwrap();
        assert_eq!(listed, vec![Deferral { due, send_key: "d".into(), message: "msg".into() }]);
        acquired(l.claim("d", lease, due).await.unwrap());
        l.delete_deferral(&listed[0]).await.unwrap();
        assert!(l.due_deferrals(due, 7).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn faults_fail_the_chosen_calls_then_stop() {
        let q = MemQueue::new();
        q.faults.fail("queue.send", 1);
        let e = q.send_all("q1", &["a".into()]).await.unwrap_err();
        assert!(e.retryable() && e.to_string().contains(INJECTED), "{e}");
        assert_eq!(q.send_all("q1", &["a".into()]).await.unwrap(), 1);
        assert_eq!(q.sent("q1"), vec!["a"]);
        let b = MemBlobs::new();
        b.faults.fail_on("blob.put", "ledger/", 1);
        b.put("lake", "events/x", Bytes::from_static(b"1"), "text/plain").await.unwrap();
        assert!(b.put("lake", "ledger/x", Bytes::from_static(b"1"), "text/plain").await.is_err());
        b.put("lake", "ledger/x", Bytes::from_static(b"2"), "text/plain").await.unwrap();
        assert_eq!(b.list("lake", "ledger/").await.unwrap(), vec!["ledger/x"]);
        assert_eq!(b.faults.injected(), 1);
    }

    #[tokio::test]
    async fn blobs_are_readable_through_object_store_and_pinned_reads_fail_on_change() {
        use tokio::io::AsyncReadExt;
        let b = MemBlobs::new();
        b.put("lake", "a/b.txt", Bytes::from_static(b"hello"), "text/plain").await.unwrap();
        let store = b.object_store("lake").unwrap();
        let got = store.get(&object_store::path::Path::from("a/b.txt")).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"hello");
        let meta = b.head("lake", "a/b.txt").await.unwrap().unwrap();
        let mut text = String::new();
        b.open("lake", "a/b.txt", &BlobVersion::ETag(meta.etag.clone())).await.unwrap().read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello");
        b.put("lake", "a/b.txt", Bytes::from_static(b"changed"), "text/plain").await.unwrap();
        assert!(b.open("lake", "a/b.txt", &BlobVersion::ETag(meta.etag)).await.is_err());
        assert!(matches!(b.open("lake", "nope", &BlobVersion::Latest).await, Err(BlobError::NotFound { .. })));
        assert_eq!(b.get("lake", "nope").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_pressure_item_is_an_optimistic_lock() {
        use crate::ports::{PressureRules, Reservation};
        let l = MemLedger::new();
        let now = at("2026-11-23T10:00:00Z");
        let rules = PressureRules { max_messages: 1, window: Duration::days(7), cooldown: Duration::zero(), retention: Duration::days(7) };
        let entry = |k: &str| PressureEntry { send_key: k.into(), campaign: "c".into(), channel: "email".into(), at: now.timestamp() };
        assert_eq!(l.reserve("p", entry("a"), now, &rules).await.unwrap(), Reservation::Reserved);
        assert_eq!(l.reserve("p", entry("a"), now, &rules).await.unwrap(), Reservation::Reserved, "the same send again");
        assert!(matches!(l.reserve("p", entry("b"), now, &rules).await.unwrap(), Reservation::CapReached { .. }));
        assert!(!l.put_pressure("p", None, &[], rules.retention).await.unwrap(), "a stale version loses");
        l.unreserve("p", "a", rules.retention).await.unwrap();
        assert_eq!(l.reserve("p", entry("b"), now, &rules).await.unwrap(), Reservation::Reserved);
    }
}

/// The memberships items in memory: applied as DynamoDB's conditional update would
/// ([`Memberships::apply`]).
#[derive(Debug, Default)]
pub struct MemMemberships {
    items: Mutex<BTreeMap<String, Memberships>>,
}

impl MemMemberships {
    pub fn new() -> Self {
        Self::default()
    }

    /// The item of `profile_id`, if any.
    pub fn get(&self, profile_id: &str) -> Option<Memberships> {
        self.items.lock().expect("poisoned").get(profile_id).cloned()
    }

    /// Every item, by profile.
    pub fn all(&self) -> BTreeMap<String, Memberships> {
        self.items.lock().expect("poisoned").clone()
    }
}

#[async_trait::async_trait]
impl MembershipStore for MemMemberships {
    async fn apply(&self, change: &MembershipChange) -> Result<bool, AwsError> {
        let mut items = self.items.lock().expect("poisoned");
        let mut item = items.get(&change.profile_id).cloned().unwrap_or_default();
        let applied = item.apply(change);
        if applied {
            items.insert(change.profile_id.clone(), item);
        }
        Ok(applied)
    }

    async fn erase(&self, profile_id: &str) -> Result<bool, AwsError> {
        Ok(self.items.lock().expect("poisoned").remove(profile_id).is_some())
    }
}
