//! Ports: the small traits for the I/O the functions' decisions depend on. Handlers are
//! generic over them and `main.rs` wires the AWS adapters ([`crate::adapters`]: S3,
//! SQS, DynamoDB); tests wire the in-memory ones ([`crate::adapters::memory`]), which
//! can inject failures, so a decision is tested without moto and moto tests only the
//! wiring. [`crate::adapters::metered::Metered`] wraps any of them and counts requests
//! and capacity units with one set of rules.
//!
//! - [`BlobStore`]: objects in the landing and lake buckets;
//! - [`Queue`]: messages to SQS queues;
//! - [`ActivationLedger`]: activation's idempotency ledger, frequency-cap pressure,
//!   deferrals and audience rows;
//! - [`ProfileReader`]: the profile items identity writes, read by activation (one
//!   profile) and segments (the pseudonymous summaries of all);
//! - [`MembershipStore`]: each person's current segment memberships (`SEGMENTS#<pid>`),
//!   written by the segments run, read by the profile API, erased by the purge.
//!
//! Identity's item store (`ariane_identity::store::ItemStore`) is the model these follow.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::AwsError;
use crate::lake::{ActivationRecord, ProfileState};
use crate::memberships::MembershipChange;
use crate::profile::{ProfileItem, ProfileItemError};

// ---------------------------------------------------------------------------------------
// Blob storage.

/// What a `HEAD` tells about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobMeta {
    /// The entity tag as S3 returns it (quoted).
    pub etag: String,
    pub size: Option<i64>,
    /// Set on an object an erasure purge rewrote ([`BlobStore::rewrite`]): the purge's
    /// run. Ingest does not read such an object again (its rows are already in the lake).
    pub purged_by: Option<String>,
}

/// The object metadata (`x-amz-meta-…`) that marks an object rewritten by a purge.
pub const PURGED_BY_METADATA: &str = "ariane-purged-by";

/// Which version of an object a streamed read must see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlobVersion {
    /// The newest.
    Latest,
    /// A given version id (versioned buckets).
    Id(String),
    /// The object only while its entity tag is this one (a re-upload in between fails
    /// the read instead of mixing two files).
    ETag(String),
}

/// A streamed object body.
pub type BlobReader = Pin<Box<dyn tokio::io::AsyncRead + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("s3://{bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
}

impl BlobError {
    pub fn retryable(&self) -> bool {
        match self {
            BlobError::Aws(e) => e.retryable,
            BlobError::Io { .. } => true,
            BlobError::NotFound { .. } => false,
        }
    }
}

#[async_trait::async_trait]
pub trait BlobStore: Send + Sync {
    /// An object's entity tag and size; `None` when it does not exist.
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobMeta>, BlobError>;
    /// A whole (small) object; `None` when it does not exist.
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, BlobError>;
    /// A streamed object (exports of several GB); a missing object is
    /// [`BlobError::NotFound`].
    async fn open(&self, bucket: &str, key: &str, version: &BlobVersion) -> Result<BlobReader, BlobError>;
    async fn put(&self, bucket: &str, key: &str, body: Bytes, content_type: &str) -> Result<(), BlobError>;
    /// Uploads a local file without holding it in memory.
    async fn put_file(&self, bucket: &str, key: &str, path: &Path, content_type: &str) -> Result<(), BlobError>;
    /// The keys under a prefix, sorted.
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BlobError>;
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError>;
    /// Replaces an object by `body` and then removes every earlier version of it and any
    /// delete marker (in a versioned bucket no older content stays behind); the new
    /// version carries [`PURGED_BY_METADATA`] = `purged_by`. Returns how many earlier
    /// versions were removed. Used by erasure only.
    async fn rewrite(&self, bucket: &str, key: &str, body: Bytes, content_type: &str, purged_by: &str) -> Result<usize, BlobError>;
    /// Removes every version and delete marker of an object; returns how many.
    async fn delete_all_versions(&self, bucket: &str, key: &str) -> Result<usize, BlobError>;
    /// [`BlobStore::delete_all_versions`] of each of `keys`, all under `prefix`; returns
    /// how many versions went. The S3 adapter lists the prefix's versions once instead of
    /// once per key (a compaction deletes thousands of small files).
    async fn delete_all_versions_of(&self, bucket: &str, prefix: &str, keys: &[String]) -> Result<usize, BlobError> {
        let _ = prefix;
        let mut removed = 0;
        for key in keys {
            removed += self.delete_all_versions(bucket, key).await?;
        }
        Ok(removed)
    }
    /// The bucket as an `object_store` for readers that need one (DataFusion), when the
    /// adapter is one (the in-memory store); the S3 adapter returns `None` and the reader
    /// builds its own S3 store with the same credentials.
    fn object_store(&self, _bucket: &str) -> Option<Arc<dyn object_store::ObjectStore>> {
        None
    }
}

// ---------------------------------------------------------------------------------------
// Queue sends.

/// Error sending a batch: some entries kept failing.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("{failed} of {total} messages could not be sent to {queue_url}: {first_reason}")]
    Partial { queue_url: String, failed: usize, total: usize, first_reason: String },
}

impl SendError {
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Aws(e) => e.retryable,
            SendError::Partial { .. } => true,
        }
    }
}

#[async_trait::async_trait]
pub trait Queue: Send + Sync {
    /// Sends every body to `queue_url` (in batches the service accepts); returns how many
    /// were sent. What keeps failing is an error: the caller's step is retried as a
    /// whole, which is safe because every consumer is idempotent.
    async fn send_all(&self, queue_url: &str, bodies: &[String]) -> Result<usize, SendError>;
    /// Sends one body that becomes visible only after `delay` (at most 15 minutes, the SQS
    /// maximum): a message put back to wait, with a fresh receive count.
    async fn send_delayed(&self, queue_url: &str, body: &str, delay: StdDuration) -> Result<(), SendError>;
    /// Sends every body with its own delay (each at most 15 minutes), in batches the
    /// service accepts: timers released ahead of their due second. Returns how many
    /// were sent; what keeps failing is an error, as for [`Queue::send_all`].
    async fn send_all_delayed(&self, queue_url: &str, entries: &[(String, StdDuration)]) -> Result<usize, SendError>;
}

/// SQS's longest message delay.
pub const MAX_QUEUE_DELAY: StdDuration = StdDuration::from_secs(900);

// ---------------------------------------------------------------------------------------
// The activation ledger.

/// What a completed decision produced, re-emitted when a duplicate finds it done.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Effects {
    #[serde(default)]
    pub records: Vec<ActivationRecord>,
    #[serde(default)]
    pub events: Vec<serde_json::Value>,
    #[serde(default)]
    pub audience: Vec<AudienceRow>,
}

impl Effects {
    pub fn extend(&mut self, other: Effects) {
        self.records.extend(other.records);
        self.events.extend(other.events);
        self.audience.extend(other.audience);
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.events.is_empty() && self.audience.is_empty()
    }
}

/// One hashed line of an ad audience file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AudienceRow {
    pub campaign: String,
    pub platform: String,
    pub run_id: String,
    /// `add` or `remove`.
    pub op: String,
    pub email_sha256: Option<String>,
    pub phone_sha256: Option<String>,
}

/// The answer to a claim.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// This instance holds the claim: decide, then complete, defer or release it with
    /// this token.
    Acquired(ClaimToken),
    /// Already decided (sent or suppressed): the effects to re-emit.
    Done(Box<Effects>),
    /// Another instance holds a live claim: retry later.
    InFlight,
}

/// The proof of a claim: a fresh random token stored on the send item. `complete`,
/// `release` and `defer` act only while the item still carries it, so a holder whose lease
/// ran out (and whose send another instance claimed since) cannot overwrite the new
/// holder's state: it gets [`LedgerError::ClaimLost`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimToken(pub String);

impl ClaimToken {
    pub fn fresh() -> Self {
        ClaimToken(format!("{:016x}{:016x}", crate::backoff::random_u64(), crate::backoff::random_u64()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A destination's circuit breaker as the ledger keeps it (one item per destination,
/// shared by every instance; last writer wins: the counts are approximate by design).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerState {
    /// Retryable failures in a row (after the in-invocation retries) since the last
    /// success or opening.
    pub failures: u32,
    /// How many times in a row the breaker opened without a success in between (the
    /// cool-down doubles each time).
    pub openings: u32,
    /// While in the future, no send to the destination is attempted.
    pub open_until: Option<DateTime<Utc>>,
}

/// How a decided send ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendStatus {
    Sent,
    Suppressed,
}

impl SendStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SendStatus::Sent => "sent",
            SendStatus::Suppressed => "suppressed",
        }
    }
}

/// The outcome of a pressure reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// A slot is ours (newly, or already from an earlier attempt of the same send).
    Reserved,
    /// `max_messages` sends within the window already: the next slot frees at `until`.
    CapReached { until: DateTime<Utc> },
    /// This campaign reached the person less than its cooldown ago.
    Cooldown { until: DateTime<Utc> },
}

/// One recent send of a person, in the person's pressure item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PressureEntry {
    // The aliases read items written before the names were spelled out.
    #[serde(alias = "k")]
    pub send_key: String,
    #[serde(alias = "c")]
    pub campaign: String,
    #[serde(alias = "ch")]
    pub channel: String,
    /// Unix seconds.
    pub at: i64,
}

/// The pressure rules a reservation checks.
#[derive(Clone, Copy, Debug)]
pub struct PressureRules {
    pub max_messages: u32,
    pub window: Duration,
    pub cooldown: Duration,
    /// How long entries are kept (the longest cap window or cooldown).
    pub retention: Duration,
}

/// Whether `send_key` of `campaign` may take a slot among `entries` at `now`: the
/// cross-channel cap over the window, then the campaign's cooldown.
pub fn decide_reservation(
    entries: &[PressureEntry],
    send_key: &str,
    campaign: &str,
    now: DateTime<Utc>,
    rules: &PressureRules,
) -> Reservation {
    if entries.iter().any(|e| e.send_key == send_key) {
        return Reservation::Reserved;
    }
    let t = now.timestamp();
    let mut in_window: Vec<i64> = entries.iter().map(|e| e.at).filter(|at| *at > t - rules.window.num_seconds()).collect();
    if in_window.len() as u32 >= rules.max_messages {
        in_window.sort_unstable();
        // The slot frees when enough of the oldest sends leave the window.
        let excess = in_window.len() + 1 - rules.max_messages as usize;
        let until = in_window[excess - 1] + rules.window.num_seconds();
        return Reservation::CapReached { until: DateTime::from_timestamp(until, 0).unwrap_or(now) };
    }
    if rules.cooldown > Duration::zero() {
        if let Some(last) = entries.iter().filter(|e| e.campaign == campaign).map(|e| e.at).max() {
            if last > t - rules.cooldown.num_seconds() {
                let until = last + rules.cooldown.num_seconds();
                return Reservation::Cooldown { until: DateTime::from_timestamp(until, 0).unwrap_or(now) };
            }
        }
    }
    Reservation::Reserved
}

/// A send parked by quiet hours until `due`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferral {
    pub due: DateTime<Utc>,
    pub send_key: String,
    /// The activation queue message that re-runs the send.
    pub message: String,
}

/// Attempts of an optimistic pressure update before giving up (the message is retried).
pub const PRESSURE_ATTEMPTS: u32 = 25;
const PRESSURE_BACKOFF: crate::backoff::Backoff = crate::backoff::Backoff::new(StdDuration::from_millis(5), 6);

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// A stored ledger item cannot be decoded: an error, never an empty answer (a send
    /// whose effects are lost must not look done).
    #[error("ledger item {key}: {what} cannot be decoded: {source}")]
    Decode {
        key: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("ledger item {key}: {what}")]
    Malformed { key: String, what: String },
    /// The send is no longer claimed with this token: its lease ran out and another
    /// instance claimed it (a lease shorter than the function's timeout; configuration
    /// refuses that), or it was completed already by another holder.
    #[error("send {send_key}: the claim was lost (status now {status:?})")]
    ClaimLost { send_key: String, status: String },
    /// An optimistic update lost every race (the message is retried later).
    #[error("{what} for {profile_id} lost {attempts} races in a row")]
    Contention { what: &'static str, profile_id: String, attempts: u32 },
}

impl LedgerError {
    pub fn retryable(&self) -> bool {
        match self {
            LedgerError::Aws(e) => e.retryable,
            LedgerError::Decode { .. } | LedgerError::Malformed { .. } | LedgerError::ClaimLost { .. } => false,
            LedgerError::Contention { .. } => true,
        }
    }
}

/// Activation's state: each send is claimed before anything is sent and completed after
/// with the effects of the decision; a person's recent sends enforce the cap across
/// campaigns and channels; quiet hours park sends; audience rows remember what was added
/// to ad audiences.
#[async_trait::async_trait]
pub trait ActivationLedger: Send + Sync {
    /// Claims `send_key` for `lease`: [`Claim::Acquired`] (with a fresh token) when it was
    /// new, deferred, or claimed by a holder whose lease expired.
    async fn claim(&self, send_key: &str, lease: StdDuration, now: DateTime<Utc>) -> Result<Claim, LedgerError>;
    /// Records the final decision of a claimed send and its effects, if `token` still
    /// holds the claim ([`LedgerError::ClaimLost`] otherwise). Completing again with the
    /// same token after a success (a retried call whose answer was lost) is a no-op.
    async fn complete(
        &self,
        send_key: &str,
        token: &ClaimToken,
        status: SendStatus,
        effects: &Effects,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError>;
    /// Gives a claim back after a failed attempt that sent nothing, so that the retry can
    /// claim it at once. Never called once a destination accepted the message.
    async fn release(&self, send_key: &str, token: &ClaimToken, error: &str) -> Result<(), LedgerError>;
    /// Parks a claimed send until `due` (the deferral item and the send's state change
    /// together); the send becomes claimable again.
    async fn defer(
        &self,
        send_key: &str,
        token: &ClaimToken,
        due: DateTime<Utc>,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError>;
    /// Deferrals due at or before `now` (looking back `days` due dates), oldest first.
    async fn due_deferrals(&self, now: DateTime<Utc>, days: i64) -> Result<Vec<Deferral>, LedgerError>;
    async fn delete_deferral(&self, deferral: &Deferral) -> Result<(), LedgerError>;
    /// A destination's circuit breaker (the default state when it has none).
    async fn breaker(&self, destination: &str) -> Result<BreakerState, LedgerError>;
    async fn put_breaker(&self, destination: &str, state: &BreakerState) -> Result<(), LedgerError>;
    /// The person's pressure item: its version (`None`: no item yet) and recent sends.
    async fn pressure(&self, profile_id: &str) -> Result<(Option<u64>, Vec<PressureEntry>), LedgerError>;
    /// Writes the person's recent sends if the item is still at `version` (`None`: still
    /// absent); false when another writer got there first.
    async fn put_pressure(
        &self,
        profile_id: &str,
        version: Option<u64>,
        entries: &[PressureEntry],
        retention: Duration,
    ) -> Result<bool, LedgerError>;
    /// Reserves a send in the person's pressure item, atomically against concurrent
    /// instances (optimistic lock on the item's version): the cross-channel cap and the
    /// campaign's cooldown are checked on the same item the reservation writes.
    async fn reserve(
        &self,
        profile_id: &str,
        entry: PressureEntry,
        now: DateTime<Utc>,
        rules: &PressureRules,
    ) -> Result<Reservation, LedgerError> {
        for attempt in 0..PRESSURE_ATTEMPTS {
            let (version, mut entries) = self.pressure(profile_id).await?;
            entries.retain(|e| e.at > now.timestamp() - rules.retention.num_seconds());
            match decide_reservation(&entries, &entry.send_key, &entry.campaign, now, rules) {
                Reservation::Reserved if entries.iter().any(|e| e.send_key == entry.send_key) => return Ok(Reservation::Reserved),
                Reservation::Reserved => {
                    entries.push(entry.clone());
                    if self.put_pressure(profile_id, version, &entries, rules.retention).await? {
                        return Ok(Reservation::Reserved);
                    }
                }
                other => return Ok(other),
            }
            PRESSURE_BACKOFF.wait(attempt).await;
        }
        Err(LedgerError::Contention { what: "pressure reservation", profile_id: profile_id.to_string(), attempts: PRESSURE_ATTEMPTS })
    }
    /// Removes the reservation of a send that failed (the retry reserves again).
    async fn unreserve(&self, profile_id: &str, send_key: &str, retention: Duration) -> Result<(), LedgerError> {
        for attempt in 0..PRESSURE_ATTEMPTS {
            let (version, mut entries) = self.pressure(profile_id).await?;
            let before = entries.len();
            entries.retain(|e| e.send_key != send_key);
            if entries.len() == before || self.put_pressure(profile_id, version, &entries, retention).await? {
                return Ok(());
            }
            PRESSURE_BACKOFF.wait(attempt).await;
        }
        Err(LedgerError::Contention { what: "pressure release", profile_id: profile_id.to_string(), attempts: PRESSURE_ATTEMPTS })
    }
    /// The audience rows added for (campaign, profile).
    async fn audience(&self, campaign: &str, profile_id: &str) -> Result<Option<Vec<AudienceRow>>, LedgerError>;
    async fn put_audience(&self, campaign: &str, profile_id: &str, rows: &[AudienceRow], now: DateTime<Utc>) -> Result<(), LedgerError>;
    async fn delete_audience(&self, campaign: &str, profile_id: &str) -> Result<(), LedgerError>;
    /// Deletes a send's record (an erased person's: its effects may hold the audience
    /// hashes). A redelivered message for it finds the person erased and sends nothing.
    async fn erase_send(&self, send_key: &str) -> Result<(), LedgerError>;
    /// Schedules `message` for the activation queue at `due`: a deferral item of its own
    /// (no send is parked), released by the same sweep as the quiet-hours deferrals.
    /// Scheduling the same `key` at the same `due` again writes the same item.
    async fn schedule(&self, key: &str, due: DateTime<Utc>, message: &str, now: DateTime<Utc>) -> Result<(), LedgerError>;
    /// Notes that the person did `event_type` at `at`: the latest instant per event type
    /// is kept (an older note changes nothing), for [`ACTIVITY_RETENTION`].
    async fn note_activity(&self, profile_id: &str, event_type: &str, at: DateTime<Utc>) -> Result<(), LedgerError>;
    /// The latest instant of each event type noted for the person.
    async fn activity(&self, profile_id: &str) -> Result<std::collections::BTreeMap<String, DateTime<Utc>>, LedgerError>;
}

/// How long the person's latest activity is kept (the longest wait a campaign may have
/// is shorter).
pub const ACTIVITY_RETENTION: Duration = Duration::days(8);

// ---------------------------------------------------------------------------------------
// Profiles.

#[derive(Debug, thiserror::Error)]
pub enum ProfileReadError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Decode(#[from] ProfileItemError),
}

impl ProfileReadError {
    pub fn retryable(&self) -> bool {
        match self {
            ProfileReadError::Aws(e) => e.retryable,
            ProfileReadError::Decode(_) => false,
        }
    }
}

#[async_trait::async_trait]
pub trait ProfileReader: Send + Sync {
    /// One profile, read strongly consistent (activation re-reads consent and contact
    /// details at send time); `None` when it does not exist (erased, or merged away).
    async fn profile(&self, profile_id: &str) -> Result<Option<ProfileItem>, ProfileReadError>;
    /// The pseudonymous summary of every profile (never a clear identifier leaves the
    /// table: the DynamoDB adapter projects the summary attributes).
    async fn summaries(&self) -> Result<Vec<ProfileState>, ProfileReadError>;
}

// Ports behind shared pointers are ports too (handlers hold `Arc`s wired in `main.rs`).

#[async_trait::async_trait]
impl<T: BlobStore + ?Sized> BlobStore for Arc<T> {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        (**self).head(bucket, key).await
    }
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, BlobError> {
        (**self).get(bucket, key).await
    }
    async fn open(&self, bucket: &str, key: &str, version: &BlobVersion) -> Result<BlobReader, BlobError> {
        (**self).open(bucket, key, version).await
    }
    async fn put(&self, bucket: &str, key: &str, body: Bytes, content_type: &str) -> Result<(), BlobError> {
        (**self).put(bucket, key, body, content_type).await
    }
    async fn put_file(&self, bucket: &str, key: &str, path: &Path, content_type: &str) -> Result<(), BlobError> {
        (**self).put_file(bucket, key, path, content_type).await
    }
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BlobError> {
        (**self).list(bucket, prefix).await
    }
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        (**self).delete(bucket, key).await
    }
    async fn rewrite(&self, bucket: &str, key: &str, body: Bytes, content_type: &str, purged_by: &str) -> Result<usize, BlobError> {
        (**self).rewrite(bucket, key, body, content_type, purged_by).await
    }
    async fn delete_all_versions(&self, bucket: &str, key: &str) -> Result<usize, BlobError> {
        (**self).delete_all_versions(bucket, key).await
    }
    async fn delete_all_versions_of(&self, bucket: &str, prefix: &str, keys: &[String]) -> Result<usize, BlobError> {
        (**self).delete_all_versions_of(bucket, prefix, keys).await
    }
    fn object_store(&self, bucket: &str) -> Option<Arc<dyn object_store::ObjectStore>> {
        (**self).object_store(bucket)
    }
}

#[async_trait::async_trait]
impl<T: Queue + ?Sized> Queue for Arc<T> {
    async fn send_all(&self, queue_url: &str, bodies: &[String]) -> Result<usize, SendError> {
        (**self).send_all(queue_url, bodies).await
    }
    async fn send_delayed(&self, queue_url: &str, body: &str, delay: StdDuration) -> Result<(), SendError> {
        (**self).send_delayed(queue_url, body, delay).await
    }
    async fn send_all_delayed(&self, queue_url: &str, entries: &[(String, StdDuration)]) -> Result<usize, SendError> {
        (**self).send_all_delayed(queue_url, entries).await
    }
}

#[async_trait::async_trait]
impl<T: ProfileReader + ?Sized> ProfileReader for Arc<T> {
    async fn profile(&self, profile_id: &str) -> Result<Option<ProfileItem>, ProfileReadError> {
        (**self).profile(profile_id).await
    }
    async fn summaries(&self) -> Result<Vec<ProfileState>, ProfileReadError> {
        (**self).summaries().await
    }
}

#[async_trait::async_trait]
impl<T: ActivationLedger + ?Sized> ActivationLedger for Arc<T> {
    async fn claim(&self, send_key: &str, lease: StdDuration, now: DateTime<Utc>) -> Result<Claim, LedgerError> {
        (**self).claim(send_key, lease, now).await
    }
    async fn complete(
        &self,
        send_key: &str,
        token: &ClaimToken,
        status: SendStatus,
        effects: &Effects,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        (**self).complete(send_key, token, status, effects, detail, now).await
    }
    async fn release(&self, send_key: &str, token: &ClaimToken, error: &str) -> Result<(), LedgerError> {
        (**self).release(send_key, token, error).await
    }
    async fn defer(
        &self,
        send_key: &str,
        token: &ClaimToken,
        due: DateTime<Utc>,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        (**self).defer(send_key, token, due, message, now).await
    }
    async fn due_deferrals(&self, now: DateTime<Utc>, days: i64) -> Result<Vec<Deferral>, LedgerError> {
        (**self).due_deferrals(now, days).await
    }
    async fn delete_deferral(&self, deferral: &Deferral) -> Result<(), LedgerError> {
        (**self).delete_deferral(deferral).await
    }
    async fn breaker(&self, destination: &str) -> Result<BreakerState, LedgerError> {
        (**self).breaker(destination).await
    }
    async fn put_breaker(&self, destination: &str, state: &BreakerState) -> Result<(), LedgerError> {
        (**self).put_breaker(destination, state).await
    }
    async fn pressure(&self, profile_id: &str) -> Result<(Option<u64>, Vec<PressureEntry>), LedgerError> {
        (**self).pressure(profile_id).await
    }
    async fn put_pressure(
        &self,
        profile_id: &str,
        version: Option<u64>,
        entries: &[PressureEntry],
        retention: Duration,
    ) -> Result<bool, LedgerError> {
        (**self).put_pressure(profile_id, version, entries, retention).await
    }
    async fn audience(&self, campaign: &str, profile_id: &str) -> Result<Option<Vec<AudienceRow>>, LedgerError> {
        (**self).audience(campaign, profile_id).await
    }
    async fn put_audience(&self, campaign: &str, profile_id: &str, rows: &[AudienceRow], now: DateTime<Utc>) -> Result<(), LedgerError> {
        (**self).put_audience(campaign, profile_id, rows, now).await
    }
    async fn delete_audience(&self, campaign: &str, profile_id: &str) -> Result<(), LedgerError> {
        (**self).delete_audience(campaign, profile_id).await
    }
    async fn erase_send(&self, send_key: &str) -> Result<(), LedgerError> {
        (**self).erase_send(send_key).await
    }
    async fn schedule(&self, key: &str, due: DateTime<Utc>, message: &str, now: DateTime<Utc>) -> Result<(), LedgerError> {
        (**self).schedule(key, due, message, now).await
    }
    async fn note_activity(&self, profile_id: &str, event_type: &str, at: DateTime<Utc>) -> Result<(), LedgerError> {
        (**self).note_activity(profile_id, event_type, at).await
    }
    async fn activity(&self, profile_id: &str) -> Result<std::collections::BTreeMap<String, DateTime<Utc>>, LedgerError> {
        (**self).activity(profile_id).await
    }
}

// ---------------------------------------------------------------------------------------
// Segment memberships by person.

/// Where each person's current segment memberships are kept, by key
/// ([`crate::memberships`]: the `SEGMENTS#<pid>` item of the profiles table).
#[async_trait::async_trait]
pub trait MembershipStore: Send + Sync {
    /// Applies one person's changes of a run. `Ok(false)` when nothing changed: a later
    /// run already wrote the item, or the change only removes and there is no item (an
    /// exit never creates one). Applying the same run's change again writes the same
    /// values.
    async fn apply(&self, change: &MembershipChange) -> Result<bool, AwsError>;
    /// Deletes a person's item (an erasure); `Ok(false)` when there was none.
    async fn erase(&self, profile_id: &str) -> Result<bool, AwsError>;
}

#[async_trait::async_trait]
impl<T: MembershipStore + ?Sized> MembershipStore for Arc<T> {
    async fn apply(&self, change: &MembershipChange) -> Result<bool, AwsError> {
        (**self).apply(change).await
    }
    async fn erase(&self, profile_id: &str) -> Result<bool, AwsError> {
        (**self).erase(profile_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules(max: u32, cooldown_h: i64) -> PressureRules {
        PressureRules { max_messages: max, window: Duration::days(7), cooldown: Duration::hours(cooldown_h), retention: Duration::days(30) }
    }

    fn e(k: &str, c: &str, at: i64) -> PressureEntry {
        PressureEntry { send_key: k.into(), campaign: c.into(), channel: "email".into(), at }
    }

    #[test]
    fn cap_and_cooldown() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let t = now.timestamp();
        let day = 86_400;
        let entries = vec![e("a", "x", t - 6 * day), e("b", "y", t - 2 * day), e("c", "y", t - day)];
        assert_eq!(
            decide_reservation(&entries, "d", "z", now, &rules(3, 0)),
            Reservation::CapReached { until: DateTime::from_timestamp(t + day, 0).unwrap() }
        );
        assert_eq!(decide_reservation(&entries, "a", "z", now, &rules(3, 0)), Reservation::Reserved, "already reserved");
        assert_eq!(decide_reservation(&entries, "d", "z", now, &rules(4, 0)), Reservation::Reserved);
        assert_eq!(
            decide_reservation(&entries, "d", "y", now, &rules(4, 48)),
            Reservation::Cooldown { until: DateTime::from_timestamp(t + day, 0).unwrap() }
        );
        let old = vec![e("a", "x", t - 8 * day); 5];
        assert_eq!(decide_reservation(&old, "d", "x", now, &rules(1, 0)), Reservation::Reserved, "outside the window");
    }

    proptest! {
        /// Reserving greedily in time order never puts more than max sends in any window.
        #[test]
        fn the_cap_holds_in_every_window(gaps in proptest::collection::vec(0i64..200_000, 1..60), max in 1u32..5) {
            let r = rules(max, 0);
            let mut entries: Vec<PressureEntry> = Vec::new();
            let mut t = 1_800_000_000i64;
            for (i, g) in gaps.iter().enumerate() {
                t += g;
                let now = DateTime::from_timestamp(t, 0).unwrap();
                if decide_reservation(&entries, &format!("k{i}"), "c", now, &r) == Reservation::Reserved {
                    entries.push(e(&format!("k{i}"), "c", t));
                }
            }
            for a in &entries {
                let within = entries.iter().filter(|b| b.at >= a.at && b.at < a.at + r.window.num_seconds()).count();
                prop_assert!(within as u32 <= max);
            }
        }
    }
}
