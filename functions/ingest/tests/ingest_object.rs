//! The ingest handler over the in-memory adapters (no moto): a file ingested end to end,
//! duplicates, re-uploads, failures injected between steps and their retries, and the
//! router's unknown prefixes. What is asserted is what the README's data contracts
//! promise: read = written + rejected (rows) and + skipped (lines), nothing sent to
//! identity until the whole file has been read (and its parts written), re-deliveries or
//! re-uploads of identical content rewrite the same objects and send no new observations,
//! one ledger entry per landed key and version (a content already ingested is recorded as
//! a duplicate naming the first, a failure is kept as history), event ids that a new spec
//! for the same source keeps, and local times flagged across daylight saving changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ariane_datagen::{read_channel_truth, write_channel, ChannelTruthRow, Export, GenConfig};
use ariane_ingest::config::{IngestConfig, Mode};
use ariane_ingest::engine::{LocalTimes, Skipped};
use ariane_ingest::pipeline::{ingest_object, route_object, IngestError, LedgerEntry, LedgerStatus, Outcome};
use ariane_ingest::s3event::{notification_body, parse_body, Notification, ObjectRef};
use ariane_ingest::spec::Catalog;
use ariane_ingest::IngestWith;
use ariane_shared::adapters::memory::{MemBlobs, MemQueue, INJECTED};
use ariane_shared::lake;
use ariane_shared::model::ObservationBatch;
use ariane_shared::ports::BlobStore;
use arrow::array::{Array, StringArray, UInt64Array};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use bytes::Bytes;
use chrono::{TimeZone, Utc};

const LANDING: &str = "landing";
const LAKE: &str = "lake";
const IDENTITY: &str = "https://sqs.local/identity";
const POS_QUEUE: &str = "https://sqs.local/ingest-pos";

type Handler = IngestWith<Arc<MemBlobs>, Arc<MemQueue>>;

struct Harness {
    blobs: Arc<MemBlobs>,
    queue: Arc<MemQueue>,
    ingest: Handler,
    _scratch: tempfile::TempDir,
}

fn harness(mode: Mode) -> Harness {
    let scratch = tempfile::tempdir().unwrap();
    let config = IngestConfig {
        landing_bucket: LANDING.into(),
        lake_bucket: LAKE.into(),
        mode,
        scratch_dir: scratch.path().to_path_buf(),
        send_concurrency: 4,
        dead_letter_queue_url: None,
    };
    let (blobs, queue) = (Arc::new(MemBlobs::new()), Arc::new(MemQueue::new()));
    let ingest = IngestWith::new(config, blobs.clone(), queue.clone()).unwrap();
    Harness { blobs, queue, ingest, _scratch: scratch }
}

fn pos() -> Harness {
    harness(Mode::Channel { channel: "pos".into(), identity_queue_url: IDENTITY.into() })
}

/// The pos instance with its dead-letter queue configured (`DEAD_LETTER_QUEUE_URL`).
fn pos_with_dlq() -> Harness {
    let mut h = pos();
    h.ingest.config.dead_letter_queue_url = Some(DLQ.into());
    h
}

const DLQ: &str = "https://sqs.local/ingest-pos-dlq";

fn router() -> Harness {
    harness(Mode::Router { channel_queues: BTreeMap::from([("pos".to_string(), POS_QUEUE.to_string())]) })
}

impl Harness {
    /// Uploads to the landing bucket and returns the object as its notification names it.
    async fn upload(&self, key: &str, body: &[u8]) -> ObjectRef {
        self.blobs.put(LANDING, key, Bytes::copy_from_slice(body), "text/csv").await.unwrap();
        let meta = self.blobs.head(LANDING, key).await.unwrap().unwrap();
        ObjectRef {
            bucket: LANDING.into(),
            key: key.into(),
            etag: Some(meta.etag.trim_matches('"').to_string()),
            version_id: None,
            size: meta.size,
        }
    }

    /// Delivers one SQS message carrying the notification; the ids of failed messages.
    async fn deliver(&self, object: &ObjectRef) -> Vec<String> {
        let mut message = SqsMessage::default();
        message.message_id = Some("m-1".into());
        message.body = Some(notification_body(object));
        let mut event = SqsEvent::default();
        event.records = vec![message];
        self.ingest.handle(event).await.batch_item_failures.into_iter().map(|f| f.item_identifier).collect()
    }

    async fn ingest(&self, object: &ObjectRef) -> Result<Outcome, IngestError> {
        ingest_object(&*self.blobs, &*self.queue, &self.ingest.config, &self.ingest.catalog, object).await
    }

    /// With another catalog of specs than the embedded one.
    async fn ingest_with(&self, catalog: &Catalog, object: &ObjectRef) -> Result<Outcome, IngestError> {
        ingest_object(&*self.blobs, &*self.queue, &self.ingest.config, catalog, object).await
    }

    /// The ledger entries under `prefix` (not the content index).
    async fn ledger(&self, prefix: &str) -> Vec<LedgerEntry> {
        let mut entries = Vec::new();
        for key in self.blobs.list(LAKE, prefix).await.unwrap().into_iter().filter(|k| lake::is_ledger_entry_key(k)) {
            entries.push(serde_json::from_slice(&self.lake_object(&key).await).unwrap_or_else(|e| panic!("{key}: {e}")));
        }
        entries
    }

    async fn only_entry(&self) -> LedgerEntry {
        let mut entries = self.ledger("ledger/ingest/pos/").await;
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries.remove(0)
    }

    async fn lake_object(&self, key: &str) -> Bytes {
        self.blobs.get(LAKE, key).await.unwrap().unwrap_or_else(|| panic!("s3://{LAKE}/{key} exists"))
    }

    /// Every lake object but the ledger, with its bytes.
    async fn lake_outputs(&self) -> BTreeMap<String, Bytes> {
        let mut outputs = BTreeMap::new();
        for key in self.blobs.keys(LAKE).into_iter().filter(|k| !k.starts_with("ledger/")) {
            let body = self.lake_object(&key).await;
            outputs.insert(key, body);
        }
        outputs
    }

    /// The observation ids of the identity messages sent so far, in order.
    fn observation_ids(&self) -> Vec<String> {
        observation_ids(&self.queue.sent(IDENTITY))
    }
}

fn observation_ids(bodies: &[String]) -> Vec<String> {
    bodies.iter().flat_map(|b| serde_json::from_str::<ObservationBatch>(b).unwrap().observations).map(|o| o.observation_id).collect()
}

fn distinct(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

/// A generated till export (Windows-1252, fill-down receipts, malformed rows) and its
/// ground truth.
fn pos_export(rows: u64) -> (Vec<u8>, Vec<ChannelTruthRow>) {
    let mut cfg = GenConfig::new(11, 60, Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap());
    cfg.max_rows = Some(rows);
    let (mut out, mut truth) = (Vec::new(), Vec::new());
    write_channel(&cfg, Export::PosReceipts, &mut out, &mut truth).unwrap();
    (out, read_channel_truth(truth.as_slice()).unwrap())
}

/// A generated till export of `rows` rows, gzipped (cut it to get a truncated file).
fn gzipped_export(rows: u64) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &pos_export(rows).0).unwrap();
    gz.finish().unwrap()
}

/// A file's physical lines, counted here: every `\n` ends one, a last line without one
/// counts.
fn physical_lines(body: &[u8]) -> u64 {
    body.iter().filter(|b| **b == b'\n').count() as u64 + u64::from(body.last().is_some_and(|b| *b != b'\n'))
}

fn cp1252(text: &str) -> Vec<u8> {
    encoding_rs::WINDOWS_1252.encode(text).0.into_owned()
}

/// Hand-written till lines: two good receipts (one of two lines), a bad amount, an
/// unknown type and a short row.
fn pos_sample() -> Vec<u8> {
    cp1252(
        "Magasin;Date;Caisse;Ticket;Ligne;Type;Carte fidélité;Email;Téléphone;Code article;Libellé;Rayon;Quantité;Prix unitaire;Montant ligne;Total ticket\r\n\
         M012;29/03/2026 01:45;C2;T1001;1;VENTE;fid 0042 17; Marie.Dupont@Gmail.com ;06 12 34 56 78;SKU-1;Crème hydratante;Beauté;2;12,50;25,00;37,40\r\n\
         M012;;;T1001;2;;;;;SKU-2;Pull col roulé;Vêtements;1;12,40;12,40;\r\n\
         \r\n\
         M012;29/03/2026 02:30;C2;T1002;1;PASSAGE;FID004217;;;;;;;;;\r\n\
         M012;25/10/2026 10:00;C1;T1004;1;VENTE;;;;SKU-3;Écharpe;Accessoires;1;12,5O;12,50;12,50\r\n\
         M012;25/10/2026 10:05;C1;T1005;1;ECHANGE;;;;SKU-3;Écharpe;Accessoires;1;9,90;9,90;9,90\r\n\
         M012;25/10/2026 10:05;C1;T1006;1;VENTE;;;\r\n",
    )
}

async fn events_in(h: &Harness, entry: &LedgerEntry) -> Vec<String> {
    let mut ids = Vec::new();
    for key in &entry.event_files {
        assert_eq!(h.blobs.content_type(LAKE, key).as_deref(), Some("application/vnd.apache.parquet"));
        let batches = lake::read_parquet_bytes(h.lake_object(key).await).unwrap();
        ids.extend(lake::string_values(&batches, "event_id").unwrap());
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_export_is_ingested_end_to_end_and_its_counts_reconcile() {
    let h = pos();
    let (body, truth) = pos_export(400);
    let object = h.upload("pos/2026-11-22/caisse.csv", &body).await;
    assert!(h.deliver(&object).await.is_empty());

    let entry = h.only_entry().await;
    assert_eq!(entry.status, LedgerStatus::Completed, "{entry:?}");
    assert_eq!(entry.spec.as_deref(), Some("channels/pos/receipts.toml"));
    assert_eq!((entry.error.as_deref(), entry.retryable), (None, false));
    let valid = truth.iter().filter(|t| t.valid).count() as u64;
    assert_eq!(entry.rows_read, truth.len() as u64);
    assert_eq!(entry.events_written, valid);
    assert_eq!(entry.rows_rejected, truth.len() as u64 - valid);
    assert_eq!(entry.rows_read, entry.events_written + entry.rows_rejected, "read = written + rejected");
    assert!(entry.rows_rejected > 0, "the generator writes malformed rows");
    // Every physical line: the first line of a row, or skipped (the header, blank lines).
    assert_eq!(entry.lines_read, physical_lines(&body));
    assert_eq!(entry.lines_read, entry.events_written + entry.rows_rejected + entry.lines_skipped.total(), "{entry:?}");
    assert_eq!(entry.lines_skipped.header, 1);
    let warned = truth.iter().filter(|t| t.valid && !t.identifier_warning.is_empty()).count() as u64;
    assert_eq!(entry.identifier_warnings, warned);

    // Events: one Parquet part per event date, holding exactly the written events.
    let ids = events_in(&h, &entry).await;
    assert_eq!(ids.len() as u64, entry.events_written);
    assert_eq!(distinct(&ids).len(), ids.len(), "event ids are unique");
    for key in &entry.event_files {
        assert!(key.starts_with("events/channel=pos/event_date=") && key.contains(&entry.fingerprint), "{key}");
    }
    // Rejects: the truth's invalid lines, each with a reason and the raw row.
    let rejects_key = entry.rejects_file.clone().expect("a rejects file");
    let rejects = lake::rejects_from_batches(&lake::read_parquet_bytes(h.lake_object(&rejects_key).await).unwrap()).unwrap();
    let lines: BTreeSet<u64> = rejects.iter().map(|r| r.line).collect();
    let invalid: BTreeSet<u64> = truth.iter().filter(|t| !t.valid).map(|t| t.line).collect();
    assert_eq!(lines, invalid);
    assert!(rejects.iter().all(|r| !r.reason.is_empty() && !r.raw.is_empty() && r.source_key == object.key), "{rejects:?}");

    // Observations: every one sent to the identity queue, once, in the counted messages.
    let sent = h.queue.sent(IDENTITY);
    assert_eq!(sent.len() as u64, entry.observation_messages);
    let observations = observation_ids(&sent);
    assert_eq!(observations.len() as u64, entry.observations_sent);
    assert_eq!(distinct(&observations).len(), observations.len());
    assert!(entry.observations_sent > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_keep_physical_lines_and_reasons() {
    let h = pos();
    let object = h.upload("pos/2026-10-25/M012.csv", &pos_sample()).await;
    let Outcome::Ingested(entry) = h.ingest(&object).await.unwrap() else { panic!("a new file is ingested") };
    assert_eq!((entry.rows_read, entry.events_written, entry.rows_rejected), (6, 3, 3));
    let rejects =
        lake::rejects_from_batches(&lake::read_parquet_bytes(h.lake_object(&entry.rejects_file.unwrap()).await).unwrap()).unwrap();
    let got: Vec<(u64, &str)> = rejects.iter().map(|r| (r.line, r.reason.as_str())).collect();
    assert_eq!(got[0], (6, r#"unit_price_minor (column "Prix unitaire"): "12,5O" is not an amount"#));
    assert_eq!(got[1].0, 7);
    assert!(got[1].1.starts_with(r#"unknown event type "ECHANGE" in column "Type""#), "{}", got[1].1);
    assert_eq!(got[2], (8, "expected 16 fields, found 9"));
    assert!(rejects[0].raw.contains("Écharpe"), "{}", rejects[0].raw);
    // Two observations (the two-line receipt once, the visit), one message.
    assert_eq!(h.observation_ids().len(), 2);
    assert_eq!(entry.observations_sent, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_notification_writes_nothing_new_and_sends_nothing() {
    let h = pos();
    let object = h.upload("pos/2026-11-22/caisse.csv", &pos_export(200).0).await;
    assert!(h.deliver(&object).await.is_empty());
    let (outputs, ledger, sent) = (h.lake_outputs().await, h.only_entry().await, h.queue.sent(IDENTITY));

    assert!(h.deliver(&object).await.is_empty(), "a duplicate succeeds");
    assert!(matches!(h.ingest(&object).await.unwrap(), Outcome::AlreadyIngested(e) if e == ledger));
    assert_eq!(h.lake_outputs().await, outputs);
    assert_eq!(h.only_entry().await, ledger);
    assert_eq!(h.queue.sent(IDENTITY), sent, "no observation sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_racing_the_first_delivery_rewrites_the_same_objects_and_observations() {
    // The second delivery starts before the first completed: it finds no ledger entry.
    let h = pos();
    let object = h.upload("pos/2026-11-22/caisse.csv", &pos_export(200).0).await;
    assert!(h.deliver(&object).await.is_empty());
    let (outputs, first) = (h.lake_outputs().await, h.only_entry().await);
    let first_ids = distinct(&observation_ids(&h.queue.take(IDENTITY)));
    h.blobs.delete(LAKE, &first.ledger_key()).await.unwrap();
    h.blobs.delete(LAKE, &lake::ledger_content_key("pos", &first.fingerprint)).await.unwrap();

    assert!(h.deliver(&object).await.is_empty());
    assert_eq!(h.lake_outputs().await, outputs, "the same keys with the same bytes");
    let again = h.only_entry().await;
    assert_eq!((again.event_files.clone(), again.rejects_file.clone()), (first.event_files, first.rejects_file));
    assert_eq!(distinct(&observation_ids(&h.queue.take(IDENTITY))), first_ids, "the same observations: no new ones");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_bytes_re_uploaded_are_not_ingested_again_and_each_key_is_in_the_ledger() {
    let h = pos();
    let body = pos_export(200).0;
    let object = h.upload("pos/2026-11-22/caisse.csv", &body).await;
    assert!(h.deliver(&object).await.is_empty());
    let (outputs, ledger, sent) = (h.lake_outputs().await, h.only_entry().await, h.queue.sent(IDENTITY).len());

    // The same key uploaded again (the same key and version here: no versioning).
    let again = h.upload("pos/2026-11-22/caisse.csv", &body).await;
    assert!(h.deliver(&again).await.is_empty());
    assert!(matches!(h.ingest(&again).await.unwrap(), Outcome::AlreadyIngested(e) if e == ledger));
    assert_eq!(h.only_entry().await, ledger);

    // The same bytes under another name: an entry of its own, naming the first.
    let copy = h.upload("pos/2026-11-22/caisse (copie).csv", &body).await;
    assert!(h.deliver(&copy).await.is_empty());
    let entries = h.ledger("ledger/ingest/pos/").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    let duplicate = entries.iter().find(|e| e.source_key == copy.key).expect("an entry for the second key");
    assert_eq!(duplicate.status, LedgerStatus::Duplicate);
    let first = duplicate.duplicate_of.as_ref().expect("the first named");
    assert_eq!((first.source_key.as_str(), first.ledger_key.as_str()), (object.key.as_str(), ledger.ledger_key().as_str()));
    assert_eq!(duplicate.fingerprint, ledger.fingerprint);
    assert_eq!((duplicate.rows_read, duplicate.events_written, duplicate.event_files.len()), (0, 0, 0), "nothing read for it");
    // Its own redelivery changes nothing; the first is untouched.
    assert!(matches!(h.ingest(&copy).await.unwrap(), Outcome::AlreadyIngested(e) if e == *duplicate));
    assert_eq!(h.ledger("ledger/ingest/pos/").await.len(), 2);
    assert!(h.ledger("ledger/ingest/pos/").await.contains(&ledger));
    assert_eq!(h.lake_outputs().await, outputs);
    assert_eq!(h.queue.sent(IDENTITY).len(), sent);

    // Different content is a different file.
    let mut changed = body.clone();
    changed.extend_from_slice(b"\r\n");
    let other = h.upload("pos/2026-11-22/caisse.csv", &changed).await;
    assert!(matches!(h.ingest(&other).await.unwrap(), Outcome::Ingested(_)));
    assert_eq!(h.ledger("ledger/ingest/pos/").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_is_kept_when_the_same_bytes_succeed_under_another_key() {
    let h = pos();
    let body = pos_export(200).0;
    // The first key fails (a part upload refused)...
    let failing = h.upload("pos/2026-11-22/caisse.csv", &body).await;
    h.blobs.faults.fail_on("blob.put", "events/", 1);
    assert_eq!(h.deliver(&failing).await, vec!["m-1".to_string()]);
    let failed = h.only_entry().await;
    assert_eq!(failed.status, LedgerStatus::Failed);
    // ... and the same bytes succeed under another key.
    let other = h.upload("pos/2026-11-22/caisse-bis.csv", &body).await;
    let Outcome::Ingested(done) = h.ingest(&other).await.unwrap() else { panic!("the other key is ingested") };
    let entries = h.ledger("ledger/ingest/pos/").await;
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(entries.contains(&failed), "the failure is not overwritten: {entries:?}");
    assert!(entries.contains(&done));

    // The first key retried: a duplicate of the one that succeeded, its failure kept.
    let sent = h.queue.sent(IDENTITY).len();
    assert!(h.deliver(&failing).await.is_empty());
    let entries = h.ledger("ledger/ingest/pos/").await;
    let retried = entries.iter().find(|e| e.source_key == failing.key).unwrap();
    assert_eq!(retried.status, LedgerStatus::Duplicate);
    assert_eq!(retried.duplicate_of.as_ref().map(|f| f.source_key.as_str()), Some(other.key.as_str()));
    assert_eq!(retried.attempts.len(), 1, "{retried:?}");
    assert_eq!((&retried.attempts[0].error, retried.attempts[0].started_at), (&failed.error, failed.started_at));
    assert!(retried.attempts[0].error.as_deref().unwrap_or_default().contains(INJECTED));
    assert_eq!(h.queue.sent(IDENTITY).len(), sent, "nothing sent for a duplicate");
    assert!(entries.contains(&done));
}

/// The observation ids a clean run of `body` sends.
async fn reference_ids(key: &str, body: &[u8]) -> BTreeSet<String> {
    let h = pos();
    let object = h.upload(key, body).await;
    assert!(h.deliver(&object).await.is_empty());
    distinct(&h.observation_ids())
}

/// Fails the first delivery as `inject` says, checks the failed ledger entry (whose error
/// contains `error_contains`; `None`: the failure was writing the ledger itself, which
/// holds nothing then), then retries; returns (ids sent by the failed attempt, ids sent by
/// the retry, the reference).
async fn fail_then_retry(inject: impl Fn(&Harness), error_contains: Option<&str>) -> (Vec<String>, Vec<String>, BTreeSet<String>, Harness) {
    let h = pos();
    let key = "pos/2026-11-22/caisse.csv";
    let body = pos_export(400).0;
    let object = h.upload(key, &body).await;
    inject(&h);
    assert_eq!(h.deliver(&object).await, vec!["m-1".to_string()], "the message fails and is retried");
    match error_contains {
        Some(expected) => {
            let failed = h.only_entry().await;
            assert_eq!(failed.status, LedgerStatus::Failed);
            let error = failed.error.clone().unwrap_or_default();
            assert!(error.contains(INJECTED) && error.contains(expected), "{error}");
            assert!(failed.retryable, "an AWS failure is worth retrying");
        }
        None => assert!(h.ledger("ledger/").await.is_empty(), "the entry could not be written"),
    }
    let first = observation_ids(&h.queue.take(IDENTITY));

    assert!(h.deliver(&object).await.is_empty(), "the retry completes");
    let done = h.only_entry().await;
    assert_eq!(done.status, LedgerStatus::Completed);
    assert_eq!((done.error.as_deref(), done.retryable), (None, false));
    // The failure recorded by the first attempt is kept in the entry's history.
    match error_contains {
        Some(expected) => {
            assert_eq!(done.attempts.len(), 1, "{done:?}");
            let error = done.attempts[0].error.clone().unwrap_or_default();
            assert!(error.contains(INJECTED) && error.contains(expected) && done.attempts[0].retryable, "{error}");
        }
        None => assert!(done.attempts.is_empty(), "nothing was recorded: {done:?}"),
    }
    assert_eq!(done.rows_read, done.events_written + done.rows_rejected);
    let retry = observation_ids(&h.queue.take(IDENTITY));
    assert_eq!(retry.len() as u64, done.observations_sent);
    (first, retry, reference_ids(key, &body).await, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_part_upload_sends_nothing_and_the_retry_sends_one_set() {
    let (first, retry, reference, h) = fail_then_retry(|h| h.blobs.faults.fail_on("blob.put", "events/", 1), Some("blob.put")).await;
    assert!(first.is_empty(), "nothing reaches identity before the parts are written: {}", first.len());
    assert_eq!(retry.len(), reference.len(), "exactly one set, no duplicate");
    assert_eq!(distinct(&retry), reference);
    let done = h.only_entry().await;
    assert_eq!(events_in(&h, &done).await.len() as u64, done.events_written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_is_retried_with_the_same_observations() {
    let (first, retry, reference, _h) =
        fail_then_retry(|h| h.queue.faults.fail_on("queue.send", IDENTITY, 1), Some("cannot send identity observations")).await;
    // Batches sent before the failure are sent again by the retry: the same messages (same
    // observation ids, replay-safe in identity), never new ones.
    assert!(distinct(&first).is_subset(&reference));
    assert_eq!(retry.len(), reference.len(), "the retry sends exactly one set");
    assert_eq!(distinct(&retry), reference);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_ledger_completes_is_retried_with_the_same_observations() {
    // Everything written and sent, then the completed entry cannot be written (as if the
    // function had crashed there): the message is retried and the file ingested again.
    let (first, retry, reference, _h) = fail_then_retry(|h| h.blobs.faults.fail_on("blob.put", "ledger/", 1), None).await;
    assert_eq!(distinct(&first), reference);
    assert_eq!(distinct(&retry), reference, "no new observation");
    assert_eq!(retry.len(), reference.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_file_sends_nothing_and_is_not_retried_for_nothing() {
    let h = pos();
    let full = gzipped_export(400);
    let object = h.upload("pos/2026-11-22/caisse-cut.csv.gz", &full[..full.len() / 2]).await;
    assert_eq!(h.deliver(&object).await, vec!["m-1".to_string()]);
    let entry = h.only_entry().await;
    assert_eq!(entry.status, LedgerStatus::Failed);
    assert!(entry.error.as_deref().unwrap_or_default().contains("truncated"), "{entry:?}");
    assert!(!entry.retryable, "a retry reads the same bytes");
    assert!(entry.event_files.is_empty() && entry.observations_sent == 0);
    assert!(h.lake_outputs().await.is_empty(), "nothing reached the lake");
    assert!(h.queue.sent(IDENTITY).is_empty(), "nothing reached identity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_recorded_and_parked_in_the_dlq_at_once() {
    let h = pos_with_dlq();
    let full = gzipped_export(400);
    let object = h.upload("pos/2026-11-22/caisse-cut.csv.gz", &full[..full.len() / 2]).await;
    assert!(h.deliver(&object).await.is_empty(), "acknowledged: no retry can read these bytes");
    assert_eq!(h.queue.sent(DLQ), vec![notification_body(&object)], "the message itself waits in the DLQ");
    assert_eq!(h.only_entry().await.status, LedgerStatus::Failed, "and the ledger says why");

    // A body that is not a notification: parked too.
    let mut message = SqsMessage::default();
    message.message_id = Some("m-2".into());
    message.body = Some("not json".into());
    let mut event = SqsEvent::default();
    event.records = vec![message];
    assert!(h.ingest.handle(event).await.batch_item_failures.is_empty());
    assert_eq!(h.queue.sent(DLQ).len(), 2);

    // A transient failure is not permanent: retried by SQS, not parked.
    let object = h.upload("pos/2026-11-22/caisse.csv", &pos_sample()).await;
    h.blobs.faults.fail_on("blob.put", "ledger/", 1);
    assert_eq!(h.deliver(&object).await, vec!["m-1".to_string()]);
    assert_eq!(h.queue.sent(DLQ).len(), 2);
    assert!(h.deliver(&object).await.is_empty(), "the retry succeeds");

    // The DLQ refusing the message: failed, so SQS's redrive still gets it there.
    let object = h.upload("pos/2026-11-23/caisse-cut.csv.gz", &full[..full.len() / 3]).await;
    h.queue.faults.fail("queue.send", 1);
    assert_eq!(h.deliver(&object).await, vec!["m-1".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_ledger_entry_is_an_error_not_a_fresh_start() {
    let h = pos();
    let object = h.upload("pos/2026-11-22/caisse.csv", &pos_export(100).0).await;
    let fp = ariane_ingest::pipeline::fingerprint("pos", object.etag.as_deref().unwrap(), object.size);
    let entry = lake::ledger_key("pos", &lake::ledger_entry_id("pos", &object.key, object.etag.as_deref().unwrap()));
    // The entry of this key and version, the content index, an entry of the ledger's
    // earlier layout (at the fingerprint): none is taken for an absent one.
    for key in [entry, lake::ledger_content_key("pos", &fp), lake::ledger_key("pos", &fp)] {
        h.blobs.put(LAKE, &key, Bytes::from_static(b"{not json"), "application/json").await.unwrap();
        let err = h.ingest(&object).await.unwrap_err();
        assert!(matches!(err, IngestError::LedgerDecode { key: ref k, .. } if *k == key), "{err}");
        assert!(!err.retryable());
        assert!(h.queue.sent(IDENTITY).is_empty() && h.lake_outputs().await.is_empty());
        h.blobs.delete(LAKE, &key).await.unwrap();
    }
    assert!(matches!(h.ingest(&object).await.unwrap(), Outcome::Ingested(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_forwards_known_channels_and_records_unknown_prefixes() {
    let h = router();
    let object = h.upload("pos/2026-11-22/caisse du 1er.csv", b"x").await;
    assert!(h.deliver(&object).await.is_empty());
    let forwarded = h.queue.sent(POS_QUEUE);
    assert_eq!(forwarded.len(), 1);
    assert_eq!(parse_body(&forwarded[0]).unwrap(), Notification::Objects(vec![object]));

    let stray = h.upload("exports/orders.csv", b"Name,Email\n").await;
    assert_eq!(h.deliver(&stray).await, vec!["m-1".to_string()], "to the landing DLQ after retries");
    let err = route_object(&*h.blobs, &*h.queue, &h.ingest.config, &stray).await.unwrap_err();
    assert!(matches!(err, IngestError::UnknownChannel { .. }) && !err.retryable(), "{err}");
    let unknown = h.ledger("ledger/ingest/unknown/").await;
    assert_eq!(unknown.len(), 1, "the same key is recorded once: {unknown:?}");
    assert_eq!((unknown[0].channel.as_str(), unknown[0].source_key.as_str()), ("unknown", "exports/orders.csv"));
    assert_eq!(unknown[0].status, LedgerStatus::Failed);
    assert!(unknown[0].error.as_deref().unwrap_or_default().contains("no known channel prefix"), "{unknown:?}");
    assert_eq!(h.queue.sent(POS_QUEUE).len(), 1, "nothing forwarded");

    // A channel without a queue.
    let crm = h.upload("crm/contacts.csv", b"x").await;
    assert_eq!(h.deliver(&crm).await, vec!["m-1".to_string()]);
    assert!(h.ledger("ledger/ingest/unknown/").await.iter().any(|e| e.source_key == "crm/contacts.csv"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_another_channel_or_bucket_is_recorded_under_unknown() {
    let h = pos();
    let crm = h.upload("crm/contacts.csv", b"ID contact;Type;Email\n").await;
    assert_eq!(h.deliver(&crm).await, vec!["m-1".to_string()]);
    let mut elsewhere = h.upload("pos/x.csv", b"x").await;
    elsewhere.bucket = "another-bucket".into();
    assert_eq!(h.deliver(&elsewhere).await, vec!["m-1".to_string()]);
    let unknown = h.ledger("ledger/ingest/unknown/").await;
    let error_of = |key: &str| unknown.iter().find(|e| e.source_key == key).and_then(|e| e.error.clone()).unwrap_or_default();
    assert!(error_of("crm/contacts.csv").contains("belongs to channel crm, but this function ingests pos"), "{unknown:?}");
    assert!(error_of("pos/x.csv").contains("is not in the landing bucket"), "{unknown:?}");
    assert!(h.ledger("ledger/ingest/pos/").await.is_empty() && h.queue.sent(IDENTITY).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_without_an_etag_reads_it_from_the_object() {
    let h = pos();
    let mut object = h.upload("pos/2026-10-25/M012.csv", &pos_sample()).await;
    let etag = object.etag.take();
    object.size = None;
    let Outcome::Ingested(entry) = h.ingest(&object).await.unwrap() else { panic!("ingested") };
    assert_eq!(entry.etag.as_deref().map(|e| e.trim_matches('"')), etag.as_deref());
    assert_eq!(entry.size, Some(pos_sample().len() as i64));
    // A notification of an object deleted since is an error, not an empty file.
    let gone = ObjectRef { key: "pos/gone.csv".into(), ..object };
    let err = h.ingest(&gone).await.unwrap_err();
    assert!(err.to_string().contains("does not exist") && !err.retryable(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_without_an_optional_column_is_ingested_and_a_missing_required_one_is_parked() {
    // ecommerce/orders.toml gives `currency` a default, so its column may be absent.
    let mut h = harness(Mode::Channel { channel: "ecommerce".into(), identity_queue_url: IDENTITY.into() });
    h.ingest.config.dead_letter_queue_url = Some(DLQ.into());
    let header = "Name,Email,Phone,Customer ID,Created at,Subtotal,Shipping,Total,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Lineitem category,Billing Name,Billing Zip,Billing City,Accepts Marketing\n";
    let body = format!("{header}#1,a@b.fr,,,2026-11-20 10:00:00 +0100,10.00,0.00,10.00,1,Z,10.00,S3,c,,,,\n");
    let object = h.upload("ecommerce/orders-2026-11-20.csv", body.as_bytes()).await;
    assert!(h.deliver(&object).await.is_empty());
    let entries = h.ledger("ledger/ingest/ecommerce/").await;
    let [entry] = &entries[..] else { panic!("{entries:?}") };
    assert_eq!((entry.status, entry.events_written, entry.rows_rejected), (LedgerStatus::Completed, 1, 0), "{entry:?}");
    assert!(h.queue.sent(DLQ).is_empty());

    // Without the required Email column: failed at once, parked, the ledger says why.
    let body = body.replacen("Email,", "", 1).replacen("a@b.fr,", "", 1);
    let object = h.upload("ecommerce/orders-2026-11-21.csv", body.as_bytes()).await;
    assert!(h.deliver(&object).await.is_empty(), "acknowledged: no retry brings the column back");
    assert_eq!(h.queue.sent(DLQ).len(), 1);
    let failed: Vec<LedgerEntry> =
        h.ledger("ledger/ingest/ecommerce/").await.into_iter().filter(|e| e.status == LedgerStatus::Failed).collect();
    let error = failed[0].error.as_deref().unwrap_or_default();
    assert!(error.starts_with(r#"missing required column(s) ["Email"]; the header has ["Name", "Phone""#), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_accounts_for_every_line_by_reason() {
    let h = pos();
    // The hand-written till lines (a blank line between receipts), plus a row whose label
    // is quoted over two lines and two blank lines at the end.
    let mut body = pos_sample();
    body.extend(cp1252("M012;25/10/2026 11:00;C1;T1007;1;VENTE;;;;SKU-4;\"Bonnet\r\nrayé\";Accessoires;1;9,90;9,90;9,90\r\n\r\n\r\n"));
    let object = h.upload("pos/2026-10-25/M012.csv", &body).await;
    assert!(h.deliver(&object).await.is_empty());
    let entry = h.only_entry().await;
    assert_eq!((entry.rows_read, entry.events_written, entry.rows_rejected), (7, 4, 3));
    assert_eq!(entry.lines_skipped, Skipped { blank: 3, header: 1, continuation: 1 });
    assert_eq!(entry.lines_read, 12);
    assert_eq!(entry.lines_read, physical_lines(&body));
    assert_eq!(entry.lines_read, entry.events_written + entry.rows_rejected + entry.lines_skipped.total());
    // As stored: the reasons are named.
    let stored: serde_json::Value = serde_json::from_slice(&h.lake_object(&entry.ledger_key()).await).unwrap();
    assert_eq!(stored["lines_skipped"], serde_json::json!({"blank": 3, "header": 1, "continuation": 1}), "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_times_shifted_or_ambiguous_are_flagged_in_the_lake_and_counted() {
    let h = pos();
    let header = "Magasin;Date;Caisse;Ticket;Ligne;Type;Carte fidélité;Email;Téléphone;Code article;Libellé;Rayon;Quantité;Prix unitaire;Montant ligne;Total ticket\r\n";
    let body = cp1252(&format!(
        "{header}\
         M012;29/03/2026 02:30;C1;T1;1;PASSAGE;FID1;;;;;;;;;\r\n\
         M012;25/10/2026 02:30;C1;T2;1;PASSAGE;FID1;;;;;;;;;\r\n\
         M012;25/10/2026 03:30;C1;T3;1;PASSAGE;FID1;;;;;;;;;\r\n\
         M012;29/03/2026 01:59;C1;T4;1;PASSAGE;FID1;;;;;;;;;\r\n"
    ));
    let object = h.upload("pos/2026/dst.csv", &body).await;
    let Outcome::Ingested(entry) = h.ingest(&object).await.unwrap() else { panic!("ingested") };
    assert_eq!(entry.events_written, 4);
    assert_eq!(entry.local_time, LocalTimes { shifted: 1, ambiguous: 1 });
    // In the lake: `local_time` per event, by its source line.
    let mut flags = BTreeMap::new();
    for key in &entry.event_files {
        for batch in lake::read_parquet_bytes(h.lake_object(key).await).unwrap() {
            let col = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("{name} in {key}")).clone();
            let (line, flag) = (col("source_line"), col("local_time"));
            let line = line.as_any().downcast_ref::<UInt64Array>().unwrap();
            let flag = flag.as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..batch.num_rows() {
                flags.insert(line.value(i), flag.is_valid(i).then(|| flag.value(i).to_string()));
            }
        }
    }
    let expected = BTreeMap::from([(2, Some("shifted".to_string())), (3, Some("ambiguous".to_string())), (4, None), (5, None)]);
    assert_eq!(flags, expected);
}

/// A vendor's new export format of the till receipts: NDJSON, other field names, every
/// value on every line; the same natural key values (store, till, receipt, line).
const RECEIPTS_V2: &str = include_str!("fixtures/receipts-v2.toml");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_spec_version_replaying_history_keeps_the_event_ids_and_the_lake_does_not_double() {
    let h = pos();
    let mut files: Vec<(&str, &str)> = ariane_ingest::spec::EMBEDDED.to_vec();
    files.push(("channels/pos/receipts-v2.toml", RECEIPTS_V2));
    let catalog = Catalog::from_files(&files).unwrap_or_else(|e| panic!("{e:?}"));

    // The old format, read with channels/pos/receipts.toml.
    let old = h.upload("pos/2026-10-25/M012.csv", &pos_sample()).await;
    let Outcome::Ingested(first) = h.ingest_with(&catalog, &old).await.unwrap() else { panic!("ingested") };
    assert_eq!(first.spec.as_deref(), Some("channels/pos/receipts.toml"));
    let first_ids = distinct(&events_in(&h, &first).await);
    assert_eq!(first_ids.len(), 3);

    // The vendor's new format replays the same receipts (one new line), in another order.
    let replay = r#"{"store":"M012","till":"C2","receipt":"T1002","line":"1","type":"PASSAGE","at":"29/03/2026 02:30","card":"FID004217"}
{"store":"M012","till":"C2","receipt":"T1001","line":"2","type":"VENTE","at":"29/03/2026 01:45","card":"fid 0042 17","email":"marie.dupont@gmail.com","sku":"SKU-2","qty":1,"price":"12,40"}
{"store":"M012","till":"C2","receipt":"T1001","line":"1","type":"VENTE","at":"29/03/2026 01:45","card":"fid 0042 17","email":"marie.dupont@gmail.com","sku":"SKU-1","qty":2,"price":"12,50"}
{"store":"M012","till":"C1","receipt":"T1009","line":"1","type":"VENTE","at":"25/10/2026 11:00","sku":"SKU-9","qty":1,"price":"3,00"}
"#;
    let new = h.upload("pos/v2/2026-10-25/M012.ndjson", replay.as_bytes()).await;
    let Outcome::Ingested(second) = h.ingest_with(&catalog, &new).await.unwrap() else { panic!("ingested") };
    assert_eq!(second.spec.as_deref(), Some("channels/pos/receipts-v2.toml"));
    let second_ids = distinct(&events_in(&h, &second).await);
    assert_eq!(second_ids.len(), 4);
    assert_eq!(second_ids.intersection(&first_ids).count(), 3, "every replayed row keeps its id");

    // The lake: one id per row across both files, 3 + 1 (what the compaction and the
    // order views keep, deduplicating by event_id).
    let mut all = Vec::new();
    for key in h.blobs.keys(LAKE).into_iter().filter(|k| k.starts_with("events/")) {
        all.extend(lake::string_values(&lake::read_parquet_bytes(h.lake_object(&key).await).unwrap(), "event_id").unwrap());
    }
    assert_eq!(all.len(), 7, "two files");
    assert_eq!(distinct(&all).len(), 4, "four rows, not seven");
}
