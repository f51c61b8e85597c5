//! One metering wrapper for every port: [`Metered`] counts the requests each call makes
//! and the capacity units DynamoDB on-demand would bill for it, from the sizes of the
//! items involved ([`item_size`](super::dynamodb::item_size)), so every cost figure in
//! `BENCHMARKS.md` comes from the same rules:
//!
//! - a strongly consistent read: 1 read unit per 4 KB (a miss still costs 1);
//! - a write: 1 write unit per KB; both doubled inside a transaction;
//! - S3 and SQS: requests (SQS batches of ten).
//!
//! Identity's item store implements its own trait for `Metered<S>` with the same meter.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};

use crate::lake::ProfileState;
use crate::ports::{
    ActivationLedger, AudienceRow, BlobError, BlobMeta, BlobReader, BlobStore, BlobVersion, BreakerState, Claim, ClaimToken, Deferral,
    Effects, LedgerError, PressureEntry, ProfileReadError, ProfileReader, Queue, SendError, SendStatus,
};
use crate::profile::ProfileItem;

/// On-demand list prices used for cost figures (us-east-1, since November 2024).
pub const USD_PER_MILLION_WRITE_UNITS: f64 = 0.625;
pub const USD_PER_MILLION_READ_UNITS: f64 = 0.125;
pub const USD_PER_MILLION_SQS_REQUESTS: f64 = 0.40;
pub const USD_PER_THOUSAND_S3_PUTS: f64 = 0.005;
pub const USD_PER_THOUSAND_S3_GETS: f64 = 0.0004;

/// Counters, shared by the wrappers of one function.
#[derive(Debug, Default)]
pub struct Meter {
    pub read_requests: AtomicU64,
    pub write_requests: AtomicU64,
    pub read_units: AtomicU64,
    pub write_units: AtomicU64,
    /// Conditional writes that lost a race.
    pub conflicts: AtomicU64,
    pub sqs_requests: AtomicU64,
    /// S3 PUT, LIST and DELETE requests.
    pub s3_writes: AtomicU64,
    /// S3 GET and HEAD requests.
    pub s3_reads: AtomicU64,
}

/// The counters at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeterReading {
    pub read_requests: u64,
    pub write_requests: u64,
    pub read_units: u64,
    pub write_units: u64,
    pub conflicts: u64,
    pub sqs_requests: u64,
    pub s3_writes: u64,
    pub s3_reads: u64,
}

impl MeterReading {
    /// What was counted since `earlier` (a reading of the same meter).
    pub fn since(&self, earlier: &MeterReading) -> MeterReading {
        MeterReading {
            read_requests: self.read_requests - earlier.read_requests,
            write_requests: self.write_requests - earlier.write_requests,
            read_units: self.read_units - earlier.read_units,
            write_units: self.write_units - earlier.write_units,
            conflicts: self.conflicts - earlier.conflicts,
            sqs_requests: self.sqs_requests - earlier.sqs_requests,
            s3_writes: self.s3_writes - earlier.s3_writes,
            s3_reads: self.s3_reads - earlier.s3_reads,
        }
    }

    /// DynamoDB's bill for the capacity units.
    pub fn dynamodb_usd(&self) -> f64 {
        self.write_units as f64 * USD_PER_MILLION_WRITE_UNITS / 1e6 + self.read_units as f64 * USD_PER_MILLION_READ_UNITS / 1e6
    }

    /// DynamoDB, SQS and S3 requests together.
    pub fn usd(&self) -> f64 {
        self.dynamodb_usd()
            + self.sqs_requests as f64 * USD_PER_MILLION_SQS_REQUESTS / 1e6
            + self.s3_writes as f64 * USD_PER_THOUSAND_S3_PUTS / 1e3
            + self.s3_reads as f64 * USD_PER_THOUSAND_S3_GETS / 1e3
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Meter {
    pub fn reading(&self) -> MeterReading {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MeterReading {
            read_requests: r(&self.read_requests),
            write_requests: r(&self.write_requests),
            read_units: r(&self.read_units),
            write_units: r(&self.write_units),
            conflicts: r(&self.conflicts),
            sqs_requests: r(&self.sqs_requests),
            s3_writes: r(&self.s3_writes),
            s3_reads: r(&self.s3_reads),
        }
    }

    /// One strongly consistent read request returning items of these sizes (a miss:
    /// size 0, still one unit).
    pub fn read(&self, sizes: &[usize]) {
        bump(&self.read_requests, 1);
        bump(&self.read_units, sizes.iter().map(|b| b.div_ceil(4096).max(1) as u64).sum::<u64>().max(1));
    }

    /// One write request of items of these sizes (`transaction`: units doubled).
    pub fn write(&self, sizes: &[usize], transaction: bool) {
        bump(&self.write_requests, 1);
        let units: u64 = sizes.iter().map(|b| b.div_ceil(1024).max(1) as u64).sum();
        bump(&self.write_units, if transaction { units * 2 } else { units });
    }

    pub fn conflict(&self) {
        bump(&self.conflicts, 1);
    }
}

/// A port wrapped with a meter.
#[derive(Debug)]
pub struct Metered<T> {
    pub inner: T,
    pub meter: Arc<Meter>,
}

impl<T> Metered<T> {
    pub fn new(inner: T) -> Self {
        Metered { inner, meter: Arc::new(Meter::default()) }
    }

    /// Wrapped with a meter shared with other ports of the same function.
    pub fn with_meter(inner: T, meter: Arc<Meter>) -> Self {
        Metered { inner, meter }
    }
}

#[async_trait::async_trait]
impl<T: BlobStore> BlobStore for Metered<T> {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        bump(&self.meter.s3_reads, 1);
        self.inner.head(bucket, key).await
    }
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, BlobError> {
        bump(&self.meter.s3_reads, 1);
        self.inner.get(bucket, key).await
    }
    async fn open(&self, bucket: &str, key: &str, version: &BlobVersion) -> Result<BlobReader, BlobError> {
        bump(&self.meter.s3_reads, 1);
        self.inner.open(bucket, key, version).await
    }
    async fn put(&self, bucket: &str, key: &str, body: Bytes, content_type: &str) -> Result<(), BlobError> {
        bump(&self.meter.s3_writes, 1);
        self.inner.put(bucket, key, body, content_type).await
    }
    async fn put_file(&self, bucket: &str, key: &str, path: &Path, content_type: &str) -> Result<(), BlobError> {
        bump(&self.meter.s3_writes, 1);
        self.inner.put_file(bucket, key, path, content_type).await
    }
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BlobError> {
        let keys = self.inner.list(bucket, prefix).await?;
        // One LIST request per thousand keys.
        bump(&self.meter.s3_writes, keys.len().div_ceil(1000).max(1) as u64);
        Ok(keys)
    }
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        bump(&self.meter.s3_writes, 1);
        self.inner.delete(bucket, key).await
    }
    async fn rewrite(&self, bucket: &str, key: &str, body: Bytes, content_type: &str, purged_by: &str) -> Result<usize, BlobError> {
        let removed = self.inner.rewrite(bucket, key, body, content_type, purged_by).await?;
        // The PUT, the version listing and one DELETE per older version.
        bump(&self.meter.s3_writes, 2 + removed as u64);
        Ok(removed)
    }
    async fn delete_all_versions(&self, bucket: &str, key: &str) -> Result<usize, BlobError> {
        let removed = self.inner.delete_all_versions(bucket, key).await?;
        bump(&self.meter.s3_writes, 1 + removed as u64);
        Ok(removed)
    }
    fn object_store(&self, bucket: &str) -> Option<Arc<dyn object_store::ObjectStore>> {
        self.inner.object_store(bucket)
    }
}

#[async_trait::async_trait]
impl<T: Queue> Queue for Metered<T> {
    async fn send_all(&self, queue_url: &str, bodies: &[String]) -> Result<usize, SendError> {
        bump(&self.meter.sqs_requests, bodies.len().div_ceil(crate::adapters::sqs::SQS_BATCH) as u64);
        self.inner.send_all(queue_url, bodies).await
    }
    async fn send_delayed(&self, queue_url: &str, body: &str, delay: StdDuration) -> Result<(), SendError> {
        bump(&self.meter.sqs_requests, 1);
        self.inner.send_delayed(queue_url, body, delay).await
    }
    async fn send_all_delayed(&self, queue_url: &str, entries: &[(String, StdDuration)]) -> Result<usize, SendError> {
        bump(&self.meter.sqs_requests, entries.len().div_ceil(crate::adapters::sqs::SQS_BATCH) as u64);
        self.inner.send_all_delayed(queue_url, entries).await
    }
}

/// Sizes of the ledger items the DynamoDB adapter writes, from the lengths that vary
/// (keys, JSON documents); the fixed attributes (`pk`/`sk` names, status, instants,
/// TTL) take about 120 bytes.
const LEDGER_ITEM_OVERHEAD: usize = 120;

#[async_trait::async_trait]
impl<T: ActivationLedger> ActivationLedger for Metered<T> {
    async fn claim(&self, send_key: &str, lease: StdDuration, now: DateTime<Utc>) -> Result<Claim, LedgerError> {
        self.meter.write(&[send_key.len() + LEDGER_ITEM_OVERHEAD], false);
        let claim = self.inner.claim(send_key, lease, now).await?;
        if !matches!(claim, Claim::Acquired(_)) {
            // A refused conditional update returns the old item (no read request).
            self.meter.conflict();
        }
        Ok(claim)
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
        let effects_len = serde_json::to_string(effects).map(|e| e.len()).unwrap_or_default();
        self.meter.write(&[send_key.len() + effects_len + detail.len().min(500) + LEDGER_ITEM_OVERHEAD], false);
        self.inner.complete(send_key, token, status, effects, detail, now).await
    }
    async fn release(&self, send_key: &str, token: &ClaimToken, error: &str) -> Result<(), LedgerError> {
        self.meter.write(&[send_key.len() + error.len().min(500) + LEDGER_ITEM_OVERHEAD], false);
        self.inner.release(send_key, token, error).await
    }
    async fn defer(
        &self,
        send_key: &str,
        token: &ClaimToken,
        due: DateTime<Utc>,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        // The deferral item and the parked send: one transaction.
        self.meter.write(&[send_key.len() + message.len() + LEDGER_ITEM_OVERHEAD, send_key.len() + LEDGER_ITEM_OVERHEAD], true);
        self.inner.defer(send_key, token, due, message, now).await
    }
    async fn due_deferrals(&self, now: DateTime<Utc>, days: i64) -> Result<Vec<Deferral>, LedgerError> {
        let due = self.inner.due_deferrals(now, days).await?;
        // One query per due date looked at.
        for _ in 0..=days {
            self.meter.read(&[]);
        }
        self.meter.read(&due.iter().map(|d| d.message.len() + d.send_key.len() + LEDGER_ITEM_OVERHEAD).collect::<Vec<_>>());
        Ok(due)
    }
    async fn delete_deferral(&self, deferral: &Deferral) -> Result<(), LedgerError> {
        self.meter.write(&[deferral.message.len() + LEDGER_ITEM_OVERHEAD], false);
        self.inner.delete_deferral(deferral).await
    }
    async fn breaker(&self, destination: &str) -> Result<BreakerState, LedgerError> {
        self.meter.read(&[destination.len() + LEDGER_ITEM_OVERHEAD]);
        self.inner.breaker(destination).await
    }
    async fn put_breaker(&self, destination: &str, state: &BreakerState) -> Result<(), LedgerError> {
        self.meter.write(&[destination.len() + LEDGER_ITEM_OVERHEAD], false);
        self.inner.put_breaker(destination, state).await
    }
    async fn pressure(&self, profile_id: &str) -> Result<(Option<u64>, Vec<PressureEntry>), LedgerError> {
        let got = self.inner.pressure(profile_id).await?;
        let size = if got.0.is_some() { pressure_size(profile_id, &got.1) } else { 0 };
        self.meter.read(&[size]);
        Ok(got)
    }
    async fn put_pressure(
        &self,
        profile_id: &str,
        version: Option<u64>,
        entries: &[PressureEntry],
        retention: Duration,
    ) -> Result<bool, LedgerError> {
        self.meter.write(&[pressure_size(profile_id, entries)], false);
        let won = self.inner.put_pressure(profile_id, version, entries, retention).await?;
        if !won {
            self.meter.conflict();
        }
        Ok(won)
    }
    async fn audience(&self, campaign: &str, profile_id: &str) -> Result<Option<Vec<AudienceRow>>, LedgerError> {
        let rows = self.inner.audience(campaign, profile_id).await?;
        self.meter.read(&[rows.as_ref().map_or(0, |r| audience_size(r))]);
        Ok(rows)
    }
    async fn put_audience(&self, campaign: &str, profile_id: &str, rows: &[AudienceRow], now: DateTime<Utc>) -> Result<(), LedgerError> {
        self.meter.write(&[audience_size(rows) + campaign.len() + profile_id.len()], false);
        self.inner.put_audience(campaign, profile_id, rows, now).await
    }
    async fn delete_audience(&self, campaign: &str, profile_id: &str) -> Result<(), LedgerError> {
        self.meter.write(&[campaign.len() + profile_id.len() + LEDGER_ITEM_OVERHEAD], false);
        self.inner.delete_audience(campaign, profile_id).await
    }
    async fn erase_send(&self, send_key: &str) -> Result<(), LedgerError> {
        self.meter.write(&[send_key.len() + LEDGER_ITEM_OVERHEAD], false);
        self.inner.erase_send(send_key).await
    }
    async fn schedule(&self, key: &str, due: DateTime<Utc>, message: &str, now: DateTime<Utc>) -> Result<(), LedgerError> {
        self.meter.write(&[key.len() + message.len() + LEDGER_ITEM_OVERHEAD], false);
        self.inner.schedule(key, due, message, now).await
    }
    async fn note_activity(&self, profile_id: &str, event_type: &str, at: DateTime<Utc>) -> Result<(), LedgerError> {
        self.meter.write(&[profile_id.len() + event_type.len() + LEDGER_ITEM_OVERHEAD], false);
        self.inner.note_activity(profile_id, event_type, at).await
    }
    async fn activity(&self, profile_id: &str) -> Result<std::collections::BTreeMap<String, DateTime<Utc>>, LedgerError> {
        let got = self.inner.activity(profile_id).await?;
        self.meter.read(&[profile_id.len() + got.keys().map(|k| k.len() + 30).sum::<usize>() + LEDGER_ITEM_OVERHEAD]);
        Ok(got)
    }
}

fn pressure_size(profile_id: &str, entries: &[PressureEntry]) -> usize {
    profile_id.len() + serde_json::to_string(entries).map(|s| s.len()).unwrap_or_default() + LEDGER_ITEM_OVERHEAD
}

fn audience_size(rows: &[AudienceRow]) -> usize {
    serde_json::to_string(rows).map(|s| s.len()).unwrap_or_default() + LEDGER_ITEM_OVERHEAD
}

#[async_trait::async_trait]
impl<T: ProfileReader> ProfileReader for Metered<T> {
    async fn profile(&self, profile_id: &str) -> Result<Option<ProfileItem>, ProfileReadError> {
        let got = self.inner.profile(profile_id).await?;
        self.meter.read(&[got.as_ref().map_or(0, |p| super::dynamodb::item_size(&p.to_attributes(0)))]);
        Ok(got)
    }
    async fn summaries(&self) -> Result<Vec<ProfileState>, ProfileReadError> {
        let all = self.inner.summaries().await?;
        // A scan reads whole items (projection or not): eventually consistent reads of
        // 4 KB pages; about 1 KB per profile item.
        let pages = (all.len() * 1024).div_ceil(1024 * 1024).max(1);
        for _ in 0..pages {
            self.meter.read(&[]);
        }
        bump(&self.meter.read_units, (all.len() as u64 * 1024).div_ceil(4096) / 2);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemBlobs, MemLedger, MemQueue};

    #[tokio::test]
    async fn requests_and_units_are_counted_per_port() {
        let meter = Arc::new(Meter::default());
        let blobs = Metered::with_meter(MemBlobs::new(), meter.clone());
        blobs.put("b", "k", Bytes::from_static(b"x"), "text/plain").await.unwrap();
        blobs.get("b", "k").await.unwrap();
        let queue = Metered::with_meter(MemQueue::new(), meter.clone());
        queue.send_all("q", &vec!["m".to_string(); 25]).await.unwrap();
        let ledger = Metered::with_meter(MemLedger::new(), meter.clone());
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        ledger.claim("k", StdDuration::from_secs(60), now).await.unwrap();
        ledger.claim("k", StdDuration::from_secs(60), now).await.unwrap();
        let r = meter.reading();
        assert_eq!((r.s3_writes, r.s3_reads, r.sqs_requests), (1, 1, 3));
        assert_eq!((r.write_requests, r.write_units, r.conflicts), (2, 2, 1));
        assert!(r.usd() > r.dynamodb_usd());
        assert_eq!(MeterReading { write_units: 1_000_000, read_units: 1_000_000, ..Default::default() }.dynamodb_usd(), 0.75);
    }
}
