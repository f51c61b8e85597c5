//! Purge: finishes the erasures identity started. Identity removes a person from DynamoDB
//! at once and leaves a report, `reports/erasures/<kind>-<keyed hash>.json`, whose purge
//! is `pending` with what to look for (the person's identity keys, profile ids and the
//! keyed hashes of their suppressed identifiers). This function, daily (`PurgeSchedule`)
//! or on demand, takes every pending report and rewrites every store Ariane wrote the
//! person to:
//!
//! 1. the activation ledger: the person's send records (found through the lake's
//!    activation records) are deleted; for each audience membership a `remove` row goes to
//!    an audience file (`audiences/<campaign>/<platform>/run=erasure-<run>/`, the
//!    platforms' own plain SHA-256: the only way to take the person out of an audience),
//!    then the membership is deleted;
//!    The person's segment memberships item (`SEGMENTS#<pid>` in the profiles table, which
//!    the profile API reads) is deleted too;
//! 2. other people's evidence that carried a suppressed value (a family e-mail erased at
//!    one member's request), found through their events' `anchor_id`: a `forget`
//!    message to identity's queue, which removes the value from their DynamoDB evidence
//!    and profiles (no longer a contact address);
//! 3. the landing objects holding the person's records (found through the `source_key` of
//!    their events and rejected rows), read again through their channel spec and
//!    rewritten without those records, every older version deleted;
//! 4. the lake: `events/`, `events_by_profile/` (the segments' compacted events and links),
//!    `rejects/`, `identity/links/`, `identity/history/`,
//!    `segments/` (snapshots and memberships), `activations/` and the audience files,
//!    each object rewritten without the person's rows (another person's row that carried
//!    a shared value keeps the row and loses the value), every older version deleted;
//! 5. the report: `done`, with what was removed where; the targets are dropped from it.
//!
//! Every step is idempotent: a run that fails is retried and finds only what is left.

pub mod landing;
pub mod matcher;
pub mod rows;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ariane_ingest::spec::Catalog;
use ariane_shared::adapters::dynamodb::{DynamoLedger, DynamoMemberships};
use ariane_shared::adapters::s3::S3Blobs;
use ariane_shared::adapters::sqs::SqsQueue;
use ariane_shared::aws::Clients;
use ariane_shared::erasure::{ErasureReport, ForgetRequest, PurgeCounts, PurgeState, PurgeTargets, FORGET_CHUNK, REPORTS_PREFIX};
use ariane_shared::identifiers::stable_id;
use ariane_shared::lake;
use ariane_shared::ports::{ActivationLedger, AudienceRow, BlobError, BlobStore, LedgerError, MembershipStore, Queue, SendError};
use ariane_shared::{ConfigError, EnvSource};
use arrow::array::{Array, StringArray};
use arrow::record_batch::RecordBatch;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::matcher::Matcher;
use crate::rows::{filter_audience_csv, filter_batches, filter_json_lines, RegionOf};

/// The lake prefixes rewritten, with the store name reports use.
pub const LAKE_STORES: &[(&str, &str)] = &[
    ("events/", "events"),
    ("events_by_profile/", "events_by_profile"),
    ("rejects/", "rejects"),
    ("identity/links/", "links"),
    ("identity/history/", "history"),
    ("segments/", "segments"),
    ("activations/", "activations"),
    ("audiences/", "audiences"),
    // The measures' person-level tables (`touchpoints`, `conversions`: one row per
    // profile_id); the aggregated ones hold no profile and are left as they are.
    ("measures/", "measures"),
];

/// Audience files written by a purge (the `remove` rows): never filtered by one.
const ERASURE_RUN_MARK: &str = "/run=erasure-";

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot send forget requests to identity: {0}")]
    Send(#[from] SendError),
    #[error("lake object {key}: {reason}")]
    Lake { key: String, reason: String },
    #[error("landing object {key}: {reason}")]
    Landing { key: String, reason: String },
    #[error("erasure report {key} cannot be read: {source}")]
    Report { key: String, source: serde_json::Error },
    #[error("the embedded channel specs do not load: {0}")]
    Specs(String),
    #[error("cannot delete a segment memberships item: {0}")]
    Memberships(ariane_shared::error::AwsError),
}

/// Where the purge reads and writes.
#[derive(Clone, Debug)]
pub struct PurgeConfig {
    pub lake_bucket: String,
    pub landing_bucket: String,
    /// Where `forget` requests go (identity's queue).
    pub identity_queue_url: String,
}

impl PurgeConfig {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Ok(PurgeConfig {
            lake_bucket: env.require("LAKE_BUCKET")?,
            landing_bucket: env.require("LANDING_BUCKET")?,
            identity_queue_url: env.require("IDENTITY_QUEUE_URL")?,
        })
    }
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeSummary {
    /// `None` when no erasure was pending.
    pub run: Option<String>,
    /// The reports completed by this run.
    pub erasures: Vec<String>,
    /// What was removed, per store (`landing`, `events`, ..., `activation_ledger`).
    pub removed: BTreeMap<String, PurgeCounts>,
}

/// The purge over any blob store and activation ledger; [`Purge`] is the AWS-wired one.
pub struct PurgeWith<B, L, Q, M> {
    pub config: PurgeConfig,
    pub blobs: B,
    pub ledger: L,
    pub queue: Q,
    /// The segment memberships items of the profiles table.
    pub memberships: M,
    pub catalog: Catalog,
}

pub type Purge = PurgeWith<S3Blobs, DynamoLedger, SqsQueue, DynamoMemberships>;

impl Purge {
    /// Reads the configuration and the pepper (the keyed hashes of clear values found in
    /// raw rows must match the lake's) and builds the AWS clients once.
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, PurgeError> {
        let config = PurgeConfig::from_env(env)?;
        let table = env.require("ACTIVATION_LEDGER_TABLE")?;
        let clients = Clients::from_env(env).await;
        ariane_shared::aws::install_lake_pepper(env, &clients.config).await?;
        let ledger = DynamoLedger { client: clients.dynamodb.clone(), table };
        let memberships = DynamoMemberships { client: clients.dynamodb.clone(), table: env.require("PROFILES_TABLE")? };
        PurgeWith::new(config, S3Blobs::new(clients.s3.clone()), ledger, SqsQueue::new(clients.sqs.clone()), memberships)
    }
}

impl<B: BlobStore, L: ActivationLedger, Q: Queue, M: MembershipStore> PurgeWith<B, L, Q, M> {
    pub fn new(config: PurgeConfig, blobs: B, ledger: L, queue: Q, memberships: M) -> Result<Self, PurgeError> {
        let catalog = Catalog::embedded().map_err(|errors| PurgeError::Specs(format!("{errors:?}")))?;
        Ok(PurgeWith { config, blobs, ledger, queue, memberships, catalog })
    }

    /// A scheduled or manual invocation (the event's detail is not used).
    pub async fn handle(&self, _event: EventBridgeEvent<serde_json::Value>) -> Result<PurgeSummary, PurgeError> {
        self.run().await
    }

    /// Purges every pending erasure.
    pub async fn run(&self) -> Result<PurgeSummary, PurgeError> {
        let lake_bucket = &self.config.lake_bucket;
        let mut pending: Vec<(String, ErasureReport)> = Vec::new();
        // A report that does not decode does not hold the others back: the run purges
        // them, then fails naming it (the failure queue's alarm).
        let mut unreadable: Option<PurgeError> = None;
        for key in self.blobs.list(lake_bucket, REPORTS_PREFIX).await? {
            let Some(bytes) = self.blobs.get(lake_bucket, &key).await? else { continue };
            match serde_json::from_slice::<ErasureReport>(&bytes) {
                Ok(report) if matches!(report.purge, PurgeState::Pending { .. }) => pending.push((key, report)),
                Ok(_) => {}
                Err(source) => {
                    tracing::error!(%key, error = %source, "an erasure report does not decode: the others are purged, then the run fails");
                    unreadable.get_or_insert(PurgeError::Report { key, source });
                }
            }
        }
        if pending.is_empty() {
            return unreadable.map_or(Ok(PurgeSummary::default()), Err);
        }
        // The same pending set gives the same run name: a retried run rewrites the same
        // audience files.
        let run = format!("erasure-{}", &stable_id(&pending.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())[..16]);
        let mut targets = PurgeTargets::default();
        for (_, r) in &pending {
            if let PurgeState::Pending { targets: t } = &r.purge {
                targets.extend(t);
            }
        }
        tracing::info!(%run, erasures = pending.len(), "purging");
        self.profiles_from_links(&mut targets).await?;
        let mut removed: BTreeMap<String, PurgeCounts> = BTreeMap::new();
        let (audience, ledger_counts) = self.audiences(&targets, &run).await?;
        removed.insert("activation_ledger".into(), ledger_counts);
        let memberships = removed.entry("segment_memberships".into()).or_default();
        for pid in &targets.profile_ids {
            if self.memberships.erase(pid).await.map_err(PurgeError::Memberships)? {
                memberships.items_deleted += 1;
            }
        }
        let m = Matcher::new(&targets).with_audience(audience);

        // Landing first: its objects are found through the lake rows this run removes.
        let mut sources = BTreeSet::new();
        let mut others = BTreeSet::new();
        for prefix in ["events/", lake::compacted_prefix(), "rejects/"] {
            for key in self.blobs.list(lake_bucket, prefix).await? {
                if key.starts_with(lake::compacted_prefix()) && !is_compacted_events(&key) {
                    continue;
                }
                if let Some((s, o)) = self.lake_object(&key, &m).await? {
                    sources.extend(s);
                    others.extend(o);
                }
            }
        }
        // Before the events lose the values (a retried run would no longer find them).
        let forgotten = removed.entry("profiles".into()).or_default();
        forgotten.values_blanked = self.forget(&targets, &others).await?;
        let landing = removed.entry("landing".into()).or_default();
        for key in landing::landing_keys(&sources) {
            let c = landing::purge_object(&self.blobs, &self.config.landing_bucket, &key, &self.catalog, &m, &run).await?;
            landing.add(&c);
        }
        for (prefix, store) in LAKE_STORES {
            let counts = removed.entry(store.to_string()).or_default();
            for key in self.blobs.list(lake_bucket, prefix).await? {
                if key.contains(ERASURE_RUN_MARK) {
                    continue;
                }
                if let Some(c) = self.rewrite_lake_object(&key, &m, &run).await? {
                    counts.add(&c);
                }
            }
        }
        let completed_at = Utc::now();
        let mut erasures = Vec::new();
        for (key, mut report) in pending {
            report.purge = PurgeState::Done { run: run.clone(), completed_at, removed: removed.clone() };
            let body = serde_json::to_vec_pretty(&report).map_err(|source| PurgeError::Report { key: key.clone(), source })?;
            // Every older version goes too: the pending one lists the targets.
            self.blobs.rewrite(lake_bucket, &key, Bytes::from(body), "application/json", &run).await?;
            erasures.push(key);
        }
        tracing::info!(%run, erasures = erasures.len(), "purged");
        unreadable.map_or(Ok(PurgeSummary { run: Some(run), erasures, removed }), Err)
    }

    /// Adds the profile ids whose every lake link is one of the person's identity keys
    /// (profiles merged into the person's, or split off it, before the erasure).
    async fn profiles_from_links(&self, targets: &mut PurgeTargets) -> Result<(), PurgeError> {
        let mut keys = self.blobs.list(&self.config.lake_bucket, lake::links_prefix()).await?;
        // The links the segments' compaction moved out of `identity/links/` (its history).
        let compacted = self.blobs.list(&self.config.lake_bucket, lake::compacted_prefix()).await?;
        keys.extend(compacted.into_iter().filter(|k| k.contains("/history/") && k.ends_with(".parquet")));
        let mut candidates: HashSet<String> = HashSet::new();
        let mut others: HashSet<String> = HashSet::new();
        // Two passes: candidates (linked from a person's key), then any other key of them.
        for pass in 0..2 {
            for key in &keys {
                for batch in self.parquet(key).await? {
                    let (Some(ids), Some(pids)) = (text(&batch, "identifier_hash"), text(&batch, "profile_id")) else { continue };
                    for i in 0..batch.num_rows() {
                        let (id, pid) = (ids.value(i), pids.value(i));
                        if pid.is_empty() {
                            continue;
                        }
                        let mine = targets.identity_keys.contains(id);
                        if pass == 0 && mine {
                            candidates.insert(pid.to_string());
                        } else if pass == 1 && !mine && candidates.contains(pid) {
                            others.insert(pid.to_string());
                        }
                    }
                }
            }
        }
        targets.profile_ids.extend(candidates.into_iter().filter(|p| !others.contains(p)));
        Ok(())
    }

    /// Takes the person out of every ad audience: a `remove` file per membership, then
    /// the membership deleted. Returns the plain SHA-256 to strip from audience files (the
    /// memberships' and those of earlier purges' remove files, so a run retried after
    /// deleting a membership still finds its hashes).
    async fn audiences(&self, targets: &PurgeTargets, run: &str) -> Result<(Vec<String>, PurgeCounts), PurgeError> {
        let bucket = &self.config.lake_bucket;
        let keys = self.blobs.list(bucket, "audiences/").await?;
        let mut hashes: Vec<String> = Vec::new();
        for key in keys.iter().filter(|k| k.contains(ERASURE_RUN_MARK)) {
            if let Some(body) = self.blobs.get(bucket, key).await? {
                hashes.extend(csv_fields(&body));
            }
        }
        let campaigns: BTreeSet<&str> = keys.iter().filter_map(|k| k.split('/').nth(1)).collect();
        let mut counts = PurgeCounts::default();
        // The person's send records (their effects can hold the audience hashes), found
        // through the lake's activation records, before those are rewritten.
        let mut sends = BTreeSet::new();
        for key in self.blobs.list(bucket, lake::activations_prefix()).await? {
            for batch in self.parquet(&key).await? {
                let (Some(pids), Some(send_keys)) = (text(&batch, "profile_id"), text(&batch, "send_key")) else { continue };
                for i in 0..batch.num_rows() {
                    if targets.profile_ids.contains(pids.value(i)) {
                        sends.insert(send_keys.value(i).to_string());
                    }
                }
            }
        }
        for send_key in &sends {
            self.ledger.erase_send(send_key).await?;
            counts.items_deleted += 1;
        }
        for campaign in campaigns {
            for pid in &targets.profile_ids {
                let Some(rows) = self.ledger.audience(campaign, pid).await? else { continue };
                let mut by_platform: BTreeMap<&str, Vec<&AudienceRow>> = BTreeMap::new();
                for r in &rows {
                    by_platform.entry(r.platform.as_str()).or_default().push(r);
                }
                for (platform, rows) in by_platform {
                    let header = if platform == "google" { "Email,Phone" } else { "email,phone" };
                    let mut csv = format!("{header}\n");
                    for r in rows {
                        csv.push_str(&format!("{},{}\n", r.email_sha256.as_deref().unwrap_or(""), r.phone_sha256.as_deref().unwrap_or("")));
                        hashes.extend(r.email_sha256.iter().chain(&r.phone_sha256).cloned());
                    }
                    let key = lake::audience_key(campaign, platform, run, "remove", &stable_id(&[campaign, platform, pid])[..16]);
                    self.blobs.put(bucket, &key, Bytes::from(csv), "text/csv").await?;
                }
                self.ledger.delete_audience(campaign, pid).await?;
                counts.items_deleted += 1;
            }
        }
        Ok((hashes, counts))
    }

    async fn parquet(&self, key: &str) -> Result<Vec<RecordBatch>, PurgeError> {
        let Some(body) = self.blobs.get(&self.config.lake_bucket, key).await? else { return Ok(Vec::new()) };
        lake::read_parquet_bytes(body).map_err(|e| PurgeError::Lake { key: key.to_string(), reason: e.to_string() })
    }

    /// The phone region of a `rejects/` row (its source's spec), for clear phone numbers.
    fn region_of(&self, batch: &RecordBatch, row: usize) -> phonenumber::country::Id {
        text(batch, "source_key")
            .filter(|s| !s.is_null(row))
            .and_then(|s| {
                let key = s.value(row);
                key.split('/').next().and_then(|c| self.catalog.select(c, key).ok()).map(|spec| spec.format.phone_region)
            })
            .unwrap_or(phonenumber::country::Id::FR)
    }

    /// Asks identity to remove the suppressed values from other people's evidence (by
    /// identity key); returns how many evidence sets were named.
    async fn forget(&self, targets: &PurgeTargets, evidence: &BTreeSet<String>) -> Result<usize, PurgeError> {
        let keys: Vec<&String> = evidence.iter().collect();
        let bodies: Vec<String> = keys
            .chunks(FORGET_CHUNK)
            .map(|chunk| {
                let request =
                    ForgetRequest { hashes: targets.identifier_hashes.clone(), evidence: chunk.iter().map(|k| (*k).clone()).collect() };
                serde_json::json!({ "forget": request }).to_string()
            })
            .collect();
        if !bodies.is_empty() {
            self.queue.send_all(&self.config.identity_queue_url, &bodies).await?;
        }
        Ok(evidence.len())
    }

    /// Reads a lake Parquet object and returns the `source_key`s of the rows the purge
    /// removes or blanks and the `anchor_id`s of other people's rows it blanks (`None`:
    /// not Parquet or nothing to do).
    async fn lake_object(&self, key: &str, m: &Matcher) -> Result<Option<(BTreeSet<String>, BTreeSet<String>)>, PurgeError> {
        if !key.ends_with(".parquet") {
            return Ok(None);
        }
        let f = self.filter_parquet(key, m).await?;
        Ok(f.filter(|(_, f)| f.changed()).map(|(_, f)| (f.sources, f.blanked_anchors)))
    }

    /// Reads a lake Parquet object and filters it (`rejects/` rows by their raw text too);
    /// `None` when it is gone or holds no batch.
    async fn filter_parquet(
        &self,
        key: &str,
        m: &Matcher,
    ) -> Result<Option<(arrow::datatypes::SchemaRef, rows::Filtered<Vec<RecordBatch>>)>, PurgeError> {
        let batches = self.parquet(key).await?;
        let Some(schema) = batches.first().map(|b| b.schema()) else { return Ok(None) };
        let region = |b: &RecordBatch, r: usize| self.region_of(b, r);
        let raw: Option<RegionOf<'_>> = key.starts_with("rejects/").then_some(&region as _);
        let f = filter_batches(&batches, m, raw).map_err(|e| PurgeError::Lake { key: key.to_string(), reason: e.to_string() })?;
        Ok(Some((schema, f)))
    }

    /// Rewrites one lake object without the person (`None`: nothing of theirs in it).
    async fn rewrite_lake_object(&self, key: &str, m: &Matcher, run: &str) -> Result<Option<PurgeCounts>, PurgeError> {
        let bucket = &self.config.lake_bucket;
        let lake_err = |reason: String| PurgeError::Lake { key: key.to_string(), reason };
        let (body, content_type, removed, blanked, empty) = if key.ends_with(".parquet") {
            let Some((schema, f)) = self.filter_parquet(key, m).await? else { return Ok(None) };
            if !f.changed() {
                return Ok(None);
            }
            let empty = f.kept.is_empty();
            let body = lake::parquet_bytes(schema, &f.kept).map_err(|e| lake_err(e.to_string()))?;
            (body, "application/vnd.apache.parquet", f.rows_removed, f.values_blanked, empty)
        } else if key.ends_with(".jsonl") || (key.ends_with(".csv") && key.starts_with("audiences/")) {
            let Some(text) = self.blobs.get(bucket, key).await? else { return Ok(None) };
            let (f, content_type) = if key.ends_with(".jsonl") {
                (filter_json_lines(&text, m), "application/x-ndjson")
            } else {
                (filter_audience_csv(&text, m), "text/csv")
            };
            if !f.changed() {
                return Ok(None);
            }
            // An audience file keeps its header (an empty list is a valid upload).
            let empty = content_type == "application/x-ndjson" && f.kept.iter().all(u8::is_ascii_whitespace);
            (f.kept, content_type, f.rows_removed, f.values_blanked, empty)
        } else {
            return Ok(None);
        };
        let mut c = PurgeCounts { rows_removed: removed, values_blanked: blanked, ..PurgeCounts::default() };
        if empty {
            c.versions_deleted = self.blobs.delete_all_versions(bucket, key).await?.saturating_sub(1);
            c.objects_deleted = 1;
        } else {
            c.versions_deleted = self.blobs.rewrite(bucket, key, Bytes::from(body), content_type, run).await?;
            c.objects_rewritten = 1;
        }
        Ok(Some(c))
    }
}

/// A compacted event file (`events_by_profile/gen=<G>/bucket=<k>/...`), not one of the
/// generation's link files or its manifest.
fn is_compacted_events(key: &str) -> bool {
    key.starts_with(lake::compacted_prefix()) && key.ends_with(".parquet") && !key.contains("/links/") && !key.contains("/history/")
}

/// A string column of a batch.
fn text<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    batch.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<StringArray>())
}

/// The non-empty fields of a CSV file after its header.
fn csv_fields(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .skip(1)
        .flat_map(|l| l.split(',').map(|f| f.trim().to_string()).collect::<Vec<_>>())
        .filter(|f| !f.is_empty())
        .collect()
}

#[cfg(test)]
mod tests;
