//! The compaction over the in-memory adapters: a small lake of several channels, dates,
//! profiles and links; crashes injected at every write and delete; segments over the
//! compacted lake plus a tail written after it, against the same lake never compacted.

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};

use ariane_shared::adapters::memory::{MemBlobs, MemProfiles};
use ariane_shared::error::AwsError;
use ariane_shared::lake::{self, IdentityLink};
use ariane_shared::model::{CanonicalEvent, SegmentMember};
use ariane_shared::ports::{BlobError, BlobMeta, BlobReader, BlobStore, BlobVersion};
use ariane_shared::profile::{ProfileDoc, ProfileItem};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::catalog::{RunEnv, RunScope};
use crate::config::SegmentsConfig;
use crate::definition::SegmentDefinition;

const BUCKET: &str = "lake";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn run_at() -> DateTime<Utc> {
    at("2026-11-23T06:00:00Z")
}

fn config(partitions: usize) -> SegmentsConfig {
    let config = SegmentsConfig::for_tests(partitions);
    assert_eq!(config.lake_bucket, BUCKET);
    config
}

/// A blob store that fails its `n`-th write or delete (counting from 0) and every one
/// after it, like a function that crashed there; `None` fails nothing. Counts them.
struct CrashAt {
    inner: Arc<MemBlobs>,
    at: Option<usize>,
    done: Mutex<usize>,
}

impl CrashAt {
    fn new(inner: Arc<MemBlobs>, at: Option<usize>) -> Self {
        CrashAt { inner, at, done: Mutex::new(0) }
    }

    fn step(&self, op: &'static str, key: &str) -> Result<(), BlobError> {
        let mut done = self.done.lock().unwrap();
        if self.at.is_some_and(|n| *done >= n) {
            return Err(AwsError {
                operation: op,
                code: "Crash".into(),
                message: format!("crashed before {op} {key}"),
                retryable: false,
                source: "crash".into(),
            }
            .into());
        }
        *done += 1;
        Ok(())
    }

    fn steps(&self) -> usize {
        *self.done.lock().unwrap()
    }
}

#[async_trait::async_trait]
impl BlobStore for CrashAt {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        self.inner.head(bucket, key).await
    }
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, BlobError> {
        self.inner.get(bucket, key).await
    }
    async fn open(&self, bucket: &str, key: &str, version: &BlobVersion) -> Result<BlobReader, BlobError> {
        self.inner.open(bucket, key, version).await
    }
    async fn put(&self, bucket: &str, key: &str, body: Bytes, content_type: &str) -> Result<(), BlobError> {
        self.step("put", key)?;
        self.inner.put(bucket, key, body, content_type).await
    }
    async fn put_file(&self, bucket: &str, key: &str, path: &FsPath, content_type: &str) -> Result<(), BlobError> {
        self.step("put", key)?;
        self.inner.put_file(bucket, key, path, content_type).await
    }
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BlobError> {
        self.inner.list(bucket, prefix).await
    }
    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        self.step("delete", key)?;
        self.inner.delete(bucket, key).await
    }
    async fn rewrite(&self, bucket: &str, key: &str, body: Bytes, content_type: &str, purged_by: &str) -> Result<usize, BlobError> {
        self.step("put", key)?;
        self.inner.rewrite(bucket, key, body, content_type, purged_by).await
    }
    async fn delete_all_versions(&self, bucket: &str, key: &str) -> Result<usize, BlobError> {
        self.step("delete", key)?;
        self.inner.delete_all_versions(bucket, key).await
    }
    fn object_store(&self, bucket: &str) -> Option<Arc<dyn object_store::ObjectStore>> {
        self.inner.object_store(bucket)
    }
}

/// A lake in memory and its profiles table.
struct Lake {
    blobs: Arc<MemBlobs>,
    profiles: MemProfiles,
    files: usize,
    events: usize,
}

/// What readers see: events rows and distinct event ids, and the members of segments.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    rows: i64,
    distinct: i64,
    members: BTreeMap<String, Vec<SegmentMember>>,
}

impl Lake {
    fn new() -> Lake {
        Lake { blobs: Arc::new(MemBlobs::new()), profiles: MemProfiles::new(), files: 0, events: 0 }
    }

    fn profile(&self, id: &str, email_opt_in: bool) {
        let mut doc = ProfileDoc { channels: ["ecommerce".to_string(), "web".to_string()].into(), ..ProfileDoc::default() };
        if email_opt_in {
            doc.identifiers.insert("email".into(), [format!("{id}@x.fr")].into());
            doc.consents.insert(
                "email".into(),
                ariane_shared::profile::ConsentState {
                    granted: true,
                    at: at("2026-01-01T00:00:00Z"),
                    source: "crm".into(),
                    observation_id: "o".into(),
                },
            );
        }
        self.profiles.put(ProfileItem { profile_id: id.into(), component: format!("c_{id}"), doc, merged_from: vec![] });
    }

    async fn links(&mut self, links: &[(&str, &str, &str)]) {
        self.files += 1;
        let rows: Vec<IdentityLink> = links
            .iter()
            .enumerate()
            .map(|(i, (anchor, pid, when))| IdentityLink {
                identifier_hash: anchor.to_string(),
                profile_id: pid.to_string(),
                resolved_at: at(when),
                observation_id: format!("obs-{}-{i}", self.files),
            })
            .collect();
        let date = rows[0].resolved_at.format("%Y-%m-%d").to_string();
        let key = lake::links_key(&date, &format!("links-{}", self.files));
        self.put(&key, lake::links_schema(), lake::links_batch(&rows).unwrap()).await;
    }

    fn event(&mut self, anchor: &str, channel: &str, event_type: &str, days_ago: i64, category: &str, amount: i64) -> CanonicalEvent {
        self.events += 1;
        let n = self.events;
        CanonicalEvent {
            event_id: format!("ev-{n}"),
            channel: channel.into(),
            event_type: event_type.into(),
            occurred_at: run_at() - Duration::days(days_ago) - Duration::minutes(n as i64),
            anchor_id: Some(anchor.into()),
            email_hash: None,
            phone_hash: None,
            order_id: Some(format!("o-{n}")),
            sku: Some(format!("SKU-{}", n % 7)),
            product_name: None,
            category: Some(category.into()),
            quantity: Some(1),
            unit_price_minor: Some(amount),
            line_total_minor: Some(amount),
            order_total_minor: Some(amount),
            currency: Some("EUR".into()),
            store_id: None,
            campaign_id: None,
            page_url: None,
            consent_channel: None,
            source_key: format!("{channel}/export.csv"),
            source_line: n as u64,
            local_time: None,
        }
    }

    /// Writes `events` grouped by channel and date, one file per group.
    async fn write_events(&mut self, events: Vec<CanonicalEvent>) {
        let mut groups: BTreeMap<(String, String), Vec<CanonicalEvent>> = BTreeMap::new();
        for e in events {
            groups.entry((e.channel.clone(), e.event_date())).or_default().push(e);
        }
        for ((channel, date), group) in groups {
            self.files += 1;
            let key = lake::events_key(&channel, &date, &format!("export-{}", self.files));
            self.put(&key, lake::events_schema(), lake::events_batch(&group).unwrap()).await;
        }
    }

    async fn put(&self, key: &str, schema: arrow::datatypes::SchemaRef, batch: RecordBatch) {
        let bytes = lake::parquet_bytes(schema, &[batch]).unwrap();
        self.blobs.put(BUCKET, key, Bytes::from(bytes), "application/vnd.apache.parquet").await.unwrap();
    }

    /// A history of `persons` people: links, orders in several categories over a year,
    /// store visits, carts, page views and e-mail opens; with an anchor never linked.
    async fn base(persons: usize) -> Lake {
        let mut lake = Lake::new();
        let categories = ["chaussures", "vetements", "sport", "maison", "enfant"];
        let mut links = Vec::new();
        let mut events = Vec::new();
        for i in 0..persons {
            let pid = format!("p_{i}");
            lake.profile(&pid, i % 3 == 0);
            links.push((format!("key_{i}"), pid.clone(), "2026-01-01T00:00:00Z".to_string()));
            let anchor = format!("key_{i}");
            let orders = i % 6;
            for o in 0..orders {
                let days = [1, 10, 40, 100, 200, 300][(i + o) % 6];
                events.push(lake.event(&anchor, "ecommerce", "order_line", days, categories[(i + o) % 5], 4_000 + 7_000 * (i as i64 % 4)));
            }
            if i % 2 == 0 {
                events.push(lake.event(&anchor, "pos", "store_visit", [1, 10, 40][i % 3], "", 0));
            }
            if i % 4 == 1 {
                events.push(lake.event(&anchor, "ecommerce", "cart_add", 1, categories[i % 5], 2_500));
            }
            events.push(lake.event(&anchor, "web", "page_view", [1, 10, 100][i % 3], "", 0));
            if i % 3 == 1 {
                events.push(lake.event(&anchor, "email", "email_open", 10, "", 0));
            }
        }
        events.push(lake.event("key_unlinked", "web", "page_view", 1, "", 0));
        events.push(lake.event("key_unlinked", "ecommerce", "order_line", 10, "sport", 60_000));
        lake.write_events(events).await;
        let half = links.len() / 2;
        let refs: Vec<(&str, &str, &str)> = links.iter().map(|(a, p, w)| (a.as_str(), p.as_str(), w.as_str())).collect();
        lake.links(&refs[..half]).await;
        lake.links(&refs[half..]).await;
        lake
    }

    fn lake_store(&self) -> Arc<dyn object_store::ObjectStore> {
        self.blobs.object_store(BUCKET).unwrap()
    }

    fn run_env(&self) -> RunEnv {
        RunEnv::new(&config(1), self.lake_store()).unwrap()
    }

    /// The profile snapshots `r1` (one partition) and `r3` (three).
    async fn snapshot(&self, suffix: &str) {
        for n in [1, 3] {
            crate::snapshot::ensure_snapshot(self.blobs.as_ref(), &self.profiles, BUCKET, &format!("r{n}{suffix}"), n).await.unwrap();
        }
    }

    /// What a run with `n` partitions over snapshot `r<n><suffix>` sees, `segments` computed.
    async fn seen(&self, run: &RunEnv, n: usize, suffix: &str, segments: &[SegmentDefinition]) -> Seen {
        let mut seen = Seen { rows: 0, distinct: 0, members: BTreeMap::new() };
        for k in 0..n {
            let scope = RunScope { run_at: run_at(), snapshot_run_id: format!("r{n}{suffix}"), bucket: (n > 1).then_some(k) };
            let ctx = crate::run::run_session(run, BUCKET, &scope).await.unwrap();
            let batches =
                ctx.sql("SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d FROM events").await.unwrap().collect().await.unwrap();
            let col = |i: usize| batches[0].column(i).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().value(0);
            seen.rows += col(0);
            seen.distinct += col(1);
            for def in segments {
                let members = crate::run::compute(&ctx, def, run_at()).await.unwrap();
                seen.members.entry(def.name.clone()).or_default().extend(members);
            }
        }
        for m in seen.members.values_mut() {
            m.sort_by(|a, b| (&a.profile_id, &a.key).cmp(&(&b.profile_id, &b.key)));
        }
        seen
    }

    /// `SELECT COUNT(*) ...` in a single-pass session over snapshot `r1`.
    async fn count(&self, run: &RunEnv, sql: &str) -> i64 {
        let scope = RunScope { run_at: run_at(), snapshot_run_id: "r1".into(), bucket: None };
        let ctx = crate::run::run_session(run, BUCKET, &scope).await.unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        batches[0].column(0).as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().value(0)
    }

    fn keys(&self, prefix: &str) -> Vec<String> {
        self.blobs.keys(BUCKET).into_iter().filter(|k| k.starts_with(prefix)).collect()
    }
}

fn library() -> Vec<SegmentDefinition> {
    SegmentDefinition::library().unwrap()
}

fn some_segments() -> Vec<SegmentDefinition> {
    library().into_iter().filter(|d| ["abandoned-cart", "rfm", "vip", "new-visitor"].contains(&d.name.as_str())).collect()
}

#[tokio::test]
async fn a_compaction_lays_events_out_by_bucket_and_readers_see_the_same_lake() {
    let lake = Lake::base(24).await;
    lake.snapshot("").await;
    let run = lake.run_env();
    let before1 = lake.seen(&run, 1, "", &library()).await;
    let before3 = lake.seen(&run, 3, "", &library()).await;
    assert!(before1.rows > 50 && before1.rows == before1.distinct, "{before1:?}");
    assert!(before1.members.values().filter(|m| !m.is_empty()).count() >= 5, "most segments have members: {before1:?}");
    assert_eq!(before1, before3, "the union of the buckets is the single pass");
    let sources = lake.keys(lake::events_prefix()).len() + lake.keys(lake::links_prefix()).len();
    let links_sql = "SELECT COUNT(*) FROM identity_links";
    let raw_sql = "SELECT COUNT(*) FROM raw_events";
    let (links_before, raw_before) = (lake.count(&run, links_sql).await, lake.count(&run, raw_sql).await);
    assert_eq!((links_before, raw_before), (24, before1.rows + 2));

    let report = compact(lake.blobs.as_ref(), &run, BUCKET, 3, run_at()).await.unwrap();
    let g = report.generation.clone().expect("a generation");
    assert_eq!(report.source_files_read, sources);
    assert_eq!(report.sources_deleted, sources);
    assert_eq!(report.event_rows, before1.rows as u64 + 2, "every event, the unlinked ones too");
    assert_eq!(report.duplicates_dropped, 0);
    assert!(lake.keys(lake::events_prefix()).is_empty() && lake.keys(lake::links_prefix()).is_empty());
    let manifest = current_manifest(lake.blobs.as_ref(), BUCKET).await.unwrap().unwrap();
    assert_eq!(manifest.generation, g);
    assert_eq!(manifest.covered.len(), sources);
    assert_eq!(manifest.events.keys().cloned().collect::<Vec<_>>(), ["0", "1", "2", "unlinked"]);
    let mut on_lake = lake.keys(lake::compacted_prefix());
    let mut named: Vec<String> = manifest.files().cloned().chain([lake::compaction_manifest_key().to_string()]).collect();
    on_lake.sort();
    named.sort();
    assert_eq!(on_lake, named, "only the generation and its manifest");

    // Every event of a bucket file belongs to that bucket's profiles, sorted by date.
    for (label, files) in &manifest.events {
        for key in files {
            let batches = lake::read_parquet_bytes(lake.blobs.get(BUCKET, key).await.unwrap().unwrap()).unwrap();
            assert_eq!(batches[0].schema(), lake::compacted_events_schema());
            let anchors = lake::string_values(&batches, "anchor_id").unwrap();
            for a in anchors {
                let expected = match a.strip_prefix("key_").and_then(|i| i.parse::<usize>().ok()) {
                    Some(i) => lake::profile_bucket(&format!("p_{i}"), 3).to_string(),
                    None => lake::UNLINKED_BUCKET.to_string(),
                };
                assert_eq!(&expected, label, "{a} in {key}");
            }
            let dates = lake::string_values(&batches, "event_date").unwrap();
            assert!(dates.windows(2).all(|w| w[0] <= w[1]), "{key} is sorted by date");
        }
    }

    // The same run after the compaction (its caches included) and a fresh run see the same,
    // the link history (the campaign report's identity_links) included.
    assert_eq!((lake.count(&run, links_sql).await, lake.count(&run, raw_sql).await), (links_before, raw_before));
    assert_eq!(lake.seen(&run, 3, "", &library()).await, before3);
    assert_eq!(lake.seen(&lake.run_env(), 1, "", &library()).await, before1);
    // A run partitioned differently from the compaction reads every bucket.
    crate::snapshot::ensure_snapshot(lake.blobs.as_ref(), &lake.profiles, BUCKET, "r2", 2).await.unwrap();
    assert_eq!(lake.seen(&lake.run_env(), 2, "", &library()).await, before1);

    // Compacting again with nothing new changes nothing.
    let again = compact(lake.blobs.as_ref(), &lake.run_env(), BUCKET, 3, run_at() + Duration::days(1)).await.unwrap();
    assert_eq!((again.generation.as_deref(), again.current.as_deref(), again.files_written), (None, Some(g.as_str()), 0));
    assert_eq!(current_manifest(lake.blobs.as_ref(), BUCKET).await.unwrap().unwrap(), manifest);
}

#[tokio::test]
async fn the_compaction_crash_test() {
    let segments = some_segments();
    // The steps of a whole compaction (writes, the manifest, deletions) on this lake.
    let steps = {
        let lake = Lake::base(12).await;
        let counting = CrashAt::new(lake.blobs.clone(), None);
        compact(&counting, &lake.run_env(), BUCKET, 3, run_at()).await.unwrap();
        counting.steps()
    };
    assert!(steps > 10, "{steps} steps");
    for crash in 0..steps {
        let lake = Lake::base(12).await;
        lake.snapshot("").await;
        let before = lake.seen(&lake.run_env(), 3, "", &segments).await;
        let crashing = CrashAt::new(lake.blobs.clone(), Some(crash));
        let e = compact(&crashing, &lake.run_env(), BUCKET, 3, run_at()).await.unwrap_err();
        assert!(e.to_string().contains("crashed"), "step {crash}: {e}");
        assert_eq!(lake.seen(&lake.run_env(), 3, "", &segments).await, before, "readers after a crash at step {crash}");
        assert_eq!(lake.seen(&lake.run_env(), 1, "", &segments).await, before, "single pass after a crash at step {crash}");

        // The next compaction converges: each event once, the sources and leftovers gone.
        let report = compact(lake.blobs.as_ref(), &lake.run_env(), BUCKET, 3, run_at()).await.unwrap();
        assert_eq!(lake.seen(&lake.run_env(), 3, "", &segments).await, before, "after the re-run of step {crash}");
        assert!(lake.keys(lake::events_prefix()).is_empty(), "step {crash}: {report:?}");
        let manifest = current_manifest(lake.blobs.as_ref(), BUCKET).await.unwrap().unwrap();
        assert_eq!(manifest.event_rows, before.rows as u64 + 2, "step {crash}");
        let mut on_lake = lake.keys(lake::compacted_prefix());
        on_lake.retain(|k| k != lake::compaction_manifest_key());
        let mut named: Vec<String> = manifest.files().cloned().collect();
        on_lake.sort();
        named.sort();
        assert_eq!(on_lake, named, "no leftover after the re-run of step {crash}");
        // And once more: nothing changes.
        let again = compact(lake.blobs.as_ref(), &lake.run_env(), BUCKET, 3, run_at()).await.unwrap();
        assert_eq!(again.generation, None, "step {crash}");
        assert_eq!(current_manifest(lake.blobs.as_ref(), BUCKET).await.unwrap().unwrap(), manifest);
    }

    // An injected failure of the manifest's write (the blob adapter's faults).
    let lake = Lake::base(12).await;
    lake.snapshot("").await;
    let before = lake.seen(&lake.run_env(), 3, "", &segments).await;
    lake.blobs.faults.fail_on("blob.put", "_current.json", 1);
    assert!(compact(lake.blobs.as_ref(), &lake.run_env(), BUCKET, 3, run_at()).await.is_err());
    assert_eq!(lake.seen(&lake.run_env(), 3, "", &segments).await, before);
    assert!(current_manifest(lake.blobs.as_ref(), BUCKET).await.unwrap().is_none());
    compact(lake.blobs.as_ref(), &lake.run_env(), BUCKET, 3, run_at()).await.unwrap();
    assert_eq!(lake.seen(&lake.run_env(), 3, "", &segments).await, before);
}

/// The same changes after the base lake: new events, a merge that moves an anchor to a
/// profile of another bucket, an erasure, the unlinked anchor linked, a link older than
/// the compacted one (it must lose), and a second compaction's generation on top.
async fn tail(lake: &mut Lake, moved: (usize, usize), erased: usize, stale: usize) {
    let (from, to) = moved;
    lake.links(&[
        (&format!("key_{from}"), &format!("p_{to}"), "2026-11-20T00:00:00Z"),
        (&format!("key_{erased}"), "", "2026-11-21T00:00:00Z"),
        ("key_unlinked", "p_1", "2026-11-21T00:00:00Z"),
        (&format!("key_{stale}"), "p_2", "2025-06-01T00:00:00Z"),
    ])
    .await;
    lake.profiles.remove(&format!("p_{from}"));
    lake.profiles.remove(&format!("p_{erased}"));
    let events = vec![
        lake.event(&format!("key_{from}"), "ecommerce", "order_line", 0, "sport", 70_000),
        lake.event(&format!("key_{to}"), "ecommerce", "cart_add", 0, "maison", 1_000),
        lake.event("key_unlinked", "pos", "store_visit", 0, "", 0),
        lake.event(&format!("key_{erased}"), "web", "page_view", 0, "", 0),
        lake.event("key_3", "email", "email_open", 0, "", 0),
    ];
    lake.write_events(events).await;
}

#[tokio::test]
async fn segments_over_a_compacted_lake_and_its_tail_equal_segments_over_the_raw_lake() {
    // Two people in different buckets of 3 for the merge.
    let bucket = |i: usize| lake::profile_bucket(&format!("p_{i}"), 3);
    let from = (4..24).find(|&i| i % 6 >= 2).unwrap();
    let to = (4..24).find(|&i| bucket(i) != bucket(from) && i % 6 >= 2).unwrap();
    let erased = (4..24).find(|&i| i != from && i != to).unwrap();
    let stale = (4..24).find(|&i| ![from, to, erased].contains(&i)).unwrap();

    let mut raw = Lake::base(24).await;
    tail(&mut raw, (from, to), erased, stale).await;
    raw.snapshot("").await;
    let expected1 = raw.seen(&raw.run_env(), 1, "", &library()).await;
    let expected3 = raw.seen(&raw.run_env(), 3, "", &library()).await;
    assert_eq!(expected1, expected3);
    let vip = &expected1.members["vip"];
    assert!(vip.iter().any(|m| m.profile_id == format!("p_{to}")), "the merged history counts for p_{to}: {vip:?}");
    assert!(!expected1.members.values().flatten().any(|m| m.profile_id == format!("p_{erased}")));

    for buckets in [1, 3] {
        let mut compacted = Lake::base(24).await;
        compacted.snapshot("-before").await;
        compact(compacted.blobs.as_ref(), &compacted.run_env(), BUCKET, buckets, run_at()).await.unwrap();
        tail(&mut compacted, (from, to), erased, stale).await;
        compacted.snapshot("").await;
        assert_eq!(compacted.seen(&compacted.run_env(), 1, "", &library()).await, expected1, "{buckets} bucket(s), one partition");
        assert_eq!(compacted.seen(&compacted.run_env(), 3, "", &library()).await, expected3, "{buckets} bucket(s), three partitions");

        // A second compaction takes the tail in: the same segments, fewer sources.
        let report = compact(compacted.blobs.as_ref(), &compacted.run_env(), BUCKET, buckets, run_at()).await.unwrap();
        assert!(report.generation.is_some() && report.previous_files_read > 0, "{report:?}");
        assert!(compacted.keys(lake::events_prefix()).is_empty());
        assert_eq!(compacted.seen(&compacted.run_env(), 3, "", &library()).await, expected3, "{buckets} bucket(s), recompacted");
        // The latest link wins across generations: the stale tail link lost.
        let manifest = current_manifest(compacted.blobs.as_ref(), BUCKET).await.unwrap().unwrap();
        let mut latest = Vec::new();
        for key in manifest.links.values().flatten() {
            latest.extend(lake::read_parquet_bytes(compacted.blobs.get(BUCKET, key).await.unwrap().unwrap()).unwrap());
        }
        let ids = lake::string_values(&latest, "identifier_hash").unwrap();
        let pids = lake::string_values(&latest, "profile_id").unwrap();
        let of = |anchor: &str| ids.iter().position(|i| i == anchor).map(|i| pids[i].clone());
        assert_eq!(of(&format!("key_{stale}")), Some(format!("p_{stale}")));
        assert_eq!(of(&format!("key_{from}")), Some(format!("p_{to}")));
        assert_eq!(of(&format!("key_{erased}")), Some(String::new()));
        assert_eq!(ids.len(), 25, "one latest link per identifier");
    }
}

#[tokio::test]
async fn duplicates_are_dropped_and_rebucketing_keeps_every_event() {
    let mut lake = Lake::base(12).await;
    // The same event again in another file (another export held the same row).
    let dup = lake.event("key_1", "web", "page_view", 1, "", 0);
    let mut copy = dup.clone();
    copy.source_key = "web/other.csv".into();
    lake.write_events(vec![dup]).await;
    lake.files += 1;
    let key = lake::events_key("web", &copy.event_date(), "other-export");
    lake.put(&key, lake::events_schema(), lake::events_batch(&[copy.clone(), copy]).unwrap()).await;
    lake.snapshot("").await;
    let raw = lake.seen(&lake.run_env(), 1, "", &[]).await;
    assert_eq!(raw.rows, raw.distinct + 2);

    let report = compact(lake.blobs.as_ref(), &lake.run_env(), BUCKET, 3, run_at()).await.unwrap();
    assert_eq!(report.duplicates_dropped, 2);
    let seen = lake.seen(&lake.run_env(), 3, "", &[]).await;
    assert_eq!((seen.rows, seen.distinct), (raw.distinct, raw.distinct), "event_id is unique");
    // Another bucket count lays the same events out again.
    let report = compact(lake.blobs.as_ref(), &lake.run_env(), BUCKET, 2, run_at()).await.unwrap();
    assert_eq!((report.buckets, report.duplicates_dropped, report.source_files_read), (2, 0, 0));
    let manifest = current_manifest(lake.blobs.as_ref(), BUCKET).await.unwrap().unwrap();
    assert_eq!(manifest.events.keys().cloned().collect::<Vec<_>>(), ["0", "1", "unlinked"]);
    let seen = lake.seen(&lake.run_env(), 3, "", &[]).await;
    assert_eq!((seen.rows, seen.distinct), (raw.distinct, raw.distinct));
}

#[tokio::test]
async fn an_undecodable_manifest_is_an_error_naming_its_key() {
    let lake = Lake::base(2).await;
    lake.blobs.put(BUCKET, lake::compaction_manifest_key(), Bytes::from_static(b"{\"generation\": 1}"), "application/json").await.unwrap();
    let e = compact(lake.blobs.as_ref(), &lake.run_env(), BUCKET, 3, run_at()).await.unwrap_err();
    assert!(e.to_string().contains(lake::compaction_manifest_key()), "{e}");
    lake.snapshot("").await;
    let scope = RunScope { run_at: run_at(), snapshot_run_id: "r1".into(), bucket: None };
    let Err(e) = crate::run::run_session(&lake.run_env(), BUCKET, &scope).await else { panic!("a session over a bad manifest") };
    assert!(e.to_string().contains(lake::compaction_manifest_key()), "{e}");
}

#[tokio::test]
async fn a_covered_key_written_again_with_other_content_is_read() {
    let lake = Lake::base(6).await;
    lake.snapshot("").await;
    let run = lake.run_env();
    let before = lake.seen(&run, 1, "", &[]).await;
    // Crash after the manifest, before any deletion: the sources stay, hidden.
    let steps = {
        let probe = Lake::base(6).await;
        let counting = CrashAt::new(probe.blobs.clone(), None);
        compact(&counting, &probe.run_env(), BUCKET, 3, run_at()).await.unwrap();
        let manifest = current_manifest(probe.blobs.as_ref(), BUCKET).await.unwrap().unwrap();
        manifest.files().count() + 1
    };
    let crashing = CrashAt::new(lake.blobs.clone(), Some(steps));
    compact(&crashing, &run, BUCKET, 3, run_at()).await.unwrap_err();
    let manifest = current_manifest(lake.blobs.as_ref(), BUCKET).await.unwrap().unwrap();
    let covered = manifest.covered.iter().find(|s| s.key.starts_with(lake::events_prefix())).unwrap().key.clone();
    assert!(lake.blobs.get(BUCKET, &covered).await.unwrap().is_some(), "not deleted yet");
    assert_eq!(lake.seen(&lake.run_env(), 1, "", &[]).await, before);
    // The key written again with one more event: that content is new, read beside the generation.
    let mut extra = Lake::new();
    extra.events = 10_000;
    let e = extra.event("key_1", "web", "page_view", 1, "", 0);
    lake.put(&covered, lake::events_schema(), lake::events_batch(&[e]).unwrap()).await;
    let after = lake.seen(&lake.run_env(), 1, "", &[]).await;
    assert_eq!(after.distinct, before.distinct + 1);
    // The next compaction keeps it.
    compact(lake.blobs.as_ref(), &lake.run_env(), BUCKET, 3, run_at()).await.unwrap();
    assert_eq!(lake.seen(&lake.run_env(), 1, "", &[]).await.distinct, before.distinct + 1);
}

#[tokio::test]
async fn the_events_join_is_built_on_the_links() {
    let lake = Lake::new();
    let ctx = compaction_session(&lake.run_env(), 3).unwrap();
    let mut links_schema: Vec<arrow::datatypes::Field> =
        lake::compacted_links_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    links_schema.push(arrow::datatypes::Field::new("bucket", DataType::Utf8, false));
    let links = Arc::new(arrow::datatypes::Schema::new(links_schema));
    // Many links, one event: the build side stays the links whatever the sizes.
    let rows: Vec<IdentityLink> = (0..5_000)
        .map(|i| IdentityLink {
            identifier_hash: format!("key_{i}"),
            profile_id: format!("p_{i}"),
            resolved_at: run_at(),
            observation_id: "o".into(),
        })
        .collect();
    let raw = lake::links_batch(&rows).unwrap();
    let mut columns = raw.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec!["2026-11-23"; rows.len()])));
    columns.push(Arc::new(StringArray::from(vec!["0"; rows.len()])));
    let links_batch = RecordBatch::try_new(links.clone(), columns).unwrap();
    ctx.register_table("lake_latest_links", Arc::new(MemTable::try_new(links, vec![vec![links_batch]]).unwrap())).unwrap();
    let mut lake = lake;
    let event = lake.event("key_1", "web", "page_view", 1, "", 0);
    let raw = lake::events_batch(&[event]).unwrap();
    let mut columns = raw.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec!["web"])));
    columns.push(Arc::new(StringArray::from(vec!["2026-11-22"])));
    let events_batch = RecordBatch::try_new(lake::compacted_events_schema(), columns).unwrap();
    let events = MemTable::try_new(lake::compacted_events_schema(), vec![vec![events_batch]]).unwrap();
    ctx.register_table("lake_input_events", Arc::new(events)).unwrap();
    let plan = ctx.sql(&format!("EXPLAIN {}", events_sql())).await.unwrap().collect().await.unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&plan).unwrap().to_string();
    let join = text.lines().find(|l| l.contains("HashJoinExec")).unwrap_or_else(|| panic!("{text}"));
    assert!(join.contains("join_type=Right"), "the links (left) are the build side: {text}");
}

/// The compaction's sorts spill at a fair share of a pool the size of the run's, and each
/// reserves its merge memory up front: on the run's greedy pool one sort took most of the
/// pool and another's merge failed at 10M events (BENCHMARKS.md, "Compaction").
#[test]
fn the_compaction_pool_is_fair_between_sorts_and_reserves_their_merges() {
    use datafusion::execution::memory_pool::{MemoryConsumer, MemoryLimit};

    let run = RunEnv::new(&config(4), Arc::new(object_store::memory::InMemory::new())).unwrap();
    let MemoryLimit::Finite(bytes) = run.runtime.memory_pool.memory_limit() else { panic!("the run's pool is bounded") };
    let ctx = compaction_session(&run, 4).unwrap();
    let pool = ctx.runtime_env().memory_pool.clone();
    assert!(matches!(pool.memory_limit(), MemoryLimit::Finite(b) if b == bytes), "the run's size");
    assert_eq!(ctx.copied_config().options().execution.sort_spill_reservation_bytes, (bytes / SORT_MERGE_SHARE).max(10 * 1024 * 1024));

    // Two spilling operators: neither may take more than half (a greedy pool would give
    // the first one all of it).
    let first = MemoryConsumer::new("first sort").with_can_spill(true).register(&pool);
    let second = MemoryConsumer::new("second sort").with_can_spill(true).register(&pool);
    assert!(first.try_grow(bytes * 3 / 4).is_err(), "one sort cannot take three quarters of the pool");
    first.try_grow(bytes / 2 - 1024).unwrap();
    second.try_grow(bytes / 2 - 1024).unwrap();
    // The run's own pool is not the one the compaction spends.
    assert_eq!(run.runtime.memory_pool.reserved(), 0);
}
