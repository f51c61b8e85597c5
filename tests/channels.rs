//! Every channel's export, as the data generator writes it (dirty, overlapping, with
//! ground truth), through the local stack: landing bucket → router → channel instance →
//! lake and ledger. Counts reconcile with the truth row by row; broken files fail visibly.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use ariane_datagen::{read_channel_truth, write_channel, write_channels_dir, write_costs, Export, GenConfig, PosEncoding};
use ariane_ingest::pipeline::LedgerStatus;
use ariane_shared::lake;
use ariane_tests::Harness;
use arrow::array::{Array, TimestampMicrosecondArray, UInt64Array};
use chrono::{DateTime, TimeZone, Utc};

fn config(persons: usize) -> GenConfig {
    let mut cfg = GenConfig::new(11, persons, Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap());
    cfg.malformed_rate = 0.02;
    cfg
}

/// (source_key, line) → (event_type, occurred_at) of every event in the lake.
async fn lake_events(h: &Harness) -> anyhow::Result<BTreeMap<(String, u64), (String, DateTime<Utc>)>> {
    let mut out = BTreeMap::new();
    for key in h.stack.lake_keys("events/").await? {
        let batches = lake::read_parquet_bytes(h.stack.lake_object(&key).await?)?;
        for name in ["anchor_id", "email_hash", "phone_hash", "order_id", "page_url", "source_key", "product_name"] {
            for v in lake::string_values(&batches, name)? {
                assert!(!v.contains('@') && !v.starts_with("+33"), "clear identifier {v:?} in column {name} of {key}");
            }
        }
        for b in &batches {
            let types = b.column_by_name("event_type").unwrap().as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            let keys = b.column_by_name("source_key").unwrap().as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
            let lines = b.column_by_name("source_line").unwrap().as_any().downcast_ref::<UInt64Array>().unwrap();
            let at = b.column_by_name("occurred_at").unwrap().as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
            for i in 0..b.num_rows() {
                let when = DateTime::<Utc>::from_timestamp_micros(at.value(i)).unwrap();
                let previous = out.insert((keys.value(i).to_string(), lines.value(i)), (types.value(i).to_string(), when));
                assert!(previous.is_none(), "one event per row: {}:{}", keys.value(i), lines.value(i));
            }
        }
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_channels_reconcile_with_the_ground_truth() -> anyhow::Result<()> {
    let h = Harness::start("chan").await?;
    let dir = tempfile::tempdir()?;
    let cfg = config(120);
    let summary = write_channels_dir(&cfg, dir.path())?;
    for export in Export::ALL {
        let body = std::fs::read(dir.path().join(export.channel()).join(export.file_name()))?;
        h.stack.upload(&format!("{}/2026-11-22/{}", export.channel(), export.file_name()), body).await?;
    }
    let report = h.runner.drain().await?;
    assert_eq!(report.failures, 0, "{report:?}");

    let ledger = h.ledger().await?;
    assert_eq!(ledger.len(), Export::ALL.len(), "{ledger:?}");
    let events = lake_events(&h).await?;
    let mut seen_channels = BTreeSet::new();
    for (export, stats) in Export::ALL.iter().zip(&summary.exports) {
        let key = format!("{}/2026-11-22/{}", export.channel(), export.file_name());
        let entry = ledger.iter().find(|e| e.source_key == key).unwrap_or_else(|| panic!("ledger entry for {key}"));
        assert_eq!(entry.status, LedgerStatus::Completed, "{entry:?}");
        assert_eq!(entry.spec.as_deref(), Some(format!("channels/{}/{}.toml", export.channel(), export.name()).as_str()));
        let truth = read_channel_truth(std::fs::File::open(dir.path().join(export.channel()).join(export.truth_file_name()))?)?;
        let invalid: BTreeSet<u64> = truth.iter().filter(|t| !t.valid).map(|t| t.line).collect();
        assert_eq!(entry.rows_read, truth.len() as u64, "{key}");
        assert_eq!(entry.rows_rejected, invalid.len() as u64, "{key}: {:?}", entry);
        assert_eq!(entry.rows_read, entry.events_written + entry.rows_rejected, "{key}");
        assert_eq!(stats.malformed_rows, invalid.len() as u64);
        // Every physical line of the export (Parquet: every row) is a row or skipped for a reason.
        let body = std::fs::read(dir.path().join(export.channel()).join(export.file_name()))?;
        let lines = if body.starts_with(b"PAR1") {
            entry.rows_read
        } else {
            body.iter().filter(|b| **b == b'\n').count() as u64 + u64::from(body.last().is_some_and(|b| *b != b'\n'))
        };
        assert_eq!(entry.lines_read, lines, "{key}: {entry:?}");
        assert_eq!(entry.lines_read, entry.events_written + entry.rows_rejected + entry.lines_skipped.total(), "{key}: {entry:?}");

        // Rejects: the invalid lines exactly, each with a reason and the raw row.
        if !invalid.is_empty() {
            let rejects = lake::rejects_from_batches(&lake::read_parquet_bytes(
                h.stack.lake_object(entry.rejects_file.as_deref().expect("rejects file")).await?,
            )?)?;
            assert_eq!(rejects.iter().map(|r| r.line).collect::<BTreeSet<_>>(), invalid, "{key}");
            assert!(rejects.iter().all(|r| !r.reason.is_empty() && !r.raw.is_empty()));
        }
        // Every valid row is one event of the right type at the right instant (DST edges
        // included: the truth knows the real instant of each local time).
        for t in truth.iter().filter(|t| t.valid) {
            let (event_type, at) = events.get(&(key.clone(), t.line)).unwrap_or_else(|| panic!("{key}:{} has an event", t.line));
            assert_eq!(event_type, &t.event_type, "{key}:{}", t.line);
            let mut expected = DateTime::parse_from_rfc3339(&t.occurred_at_utc)?.with_timezone(&Utc);
            if t.note == "dst_fall_back_second" {
                // 02:30 on the fall-back night happens twice and the export shows only the
                // local time: ingest documents that it takes the first (summer) instant.
                expected -= chrono::Duration::hours(1);
            }
            // (The truth keeps milliseconds; web exports carry microseconds.)
            assert_eq!(at.timestamp_millis(), expected.timestamp_millis(), "{key}:{} ({}): {at} vs {expected}", t.line, t.note);
        }
        let by_type = truth.iter().filter(|t| t.valid).fold(BTreeMap::<String, u64>::new(), |mut m, t| {
            *m.entry(t.event_type.clone()).or_default() += 1;
            m
        });
        assert_eq!(by_type, stats.event_types, "{key}");
        seen_channels.insert(export.channel());
    }
    assert_eq!(seen_channels.len(), 7);
    assert!(h.stack.profile_count().await? > 0);

    // Re-uploading identical content changes nothing: no new event file, no observation.
    let files_before = h.stack.lake_keys("events/").await?;
    let pos = std::fs::read(dir.path().join("pos").join(Export::PosReceipts.file_name()))?;
    h.stack.upload(&format!("pos/2026-11-22/{}", Export::PosReceipts.file_name()), pos).await?;
    let again = h.runner.drain().await?;
    assert_eq!(again.failures, 0);
    assert_eq!(h.stack.lake_keys("events/").await?, files_before);
    let identity_calls: u64 = again.by_function.iter().filter(|(f, _)| f.contains("Identity")).map(|(_, n)| *n).sum();
    assert_eq!(identity_calls, 0, "no identity observation for identical content: {again:?}");
    Ok(())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("in memory");
    enc.finish().expect("in memory")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_and_broken_files_are_accounted_for() -> anyhow::Result<()> {
    let h = Harness::start("dirty").await?;
    // Till export in UTF-8 with a BOM, gzipped: read exactly like the Windows-1252 one.
    let mut cfg = config(60);
    cfg.pos_encoding = PosEncoding::Utf8Bom;
    let (mut body, mut truth) = (Vec::new(), Vec::new());
    write_channel(&cfg, Export::PosReceipts, &mut body, &mut truth)?;
    assert!(body.starts_with(b"\xEF\xBB\xBF"));
    let truth = read_channel_truth(&truth[..])?;
    let gz = gzip(&body);
    h.stack.upload("pos/2026-11-22/caisse.csv.gz", gz.clone()).await?;
    // The same export cut short: a truncated gzip stream.
    h.stack.upload("pos/2026-11-22/caisse-cut.csv.gz", gz[..gz.len() / 2].to_vec()).await?;
    // A CRM export without its `Date` column.
    h.stack.upload("crm/contacts-no-date.csv", "ID contact;Type;Email\n1;Création;a@b.fr\n".as_bytes().to_vec()).await?;
    // An app JSON array cut in the middle of an element.
    h.stack
        .upload(
            "app/events-cut.json",
            b"[\n{\"event_id\": \"a1\", \"event\": \"app_open\", \"timestamp_ms\": 1763900000000},\n{\"event_id\": \"a2\", \"ev".to_vec(),
        )
        .await?;
    // A key under no channel prefix.
    h.stack.upload("exports/orders.csv", b"Name,Email\n".to_vec()).await?;
    h.runner.drain().await?;

    let ledger = h.ledger().await?;
    let by_key = |k: &str| ledger.iter().find(|e| e.source_key == k).unwrap_or_else(|| panic!("ledger entry for {k}: {ledger:?}"));
    let ok = by_key("pos/2026-11-22/caisse.csv.gz");
    assert_eq!(ok.status, LedgerStatus::Completed);
    assert_eq!(ok.rows_read, truth.len() as u64);
    assert_eq!(ok.rows_rejected, truth.iter().filter(|t| !t.valid).count() as u64);

    for (key, words) in [
        ("pos/2026-11-22/caisse-cut.csv.gz", &["truncated"][..]),
        ("crm/contacts-no-date.csv", &["missing required column", "Date"][..]),
        ("app/events-cut.json", &["truncated JSON array"][..]),
        ("exports/orders.csv", &["no known channel prefix"][..]),
    ] {
        let e = by_key(key);
        assert_eq!(e.status, LedgerStatus::Failed, "{e:?}");
        let error = e.error.clone().unwrap_or_default();
        assert!(words.iter().all(|w| error.contains(w)), "{key}: {error}");
        assert!(!e.retryable, "{key}: a retry reads the same bytes");
        assert_eq!(e.events_written, 0);
    }
    assert_eq!(by_key("exports/orders.csv").channel, "unknown");
    // Each failure is retried and lands in its own channel's DLQ (or the landing DLQ).
    assert_eq!(h.dlq_depth("IngestPosQueue").await?, 1);
    assert_eq!(h.dlq_depth("IngestCrmQueue").await?, 1);
    assert_eq!(h.dlq_depth("IngestAppQueue").await?, 1);
    assert_eq!(h.dlq_depth("LandingQueue").await?, 1);
    assert_eq!(h.dlq_depth("IngestWebQueue").await?, 0);
    // Nothing of the truncated file reached the lake or identity.
    let cut = by_key("pos/2026-11-22/caisse-cut.csv.gz");
    assert!(cut.event_files.is_empty() && cut.observations_sent == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spend_file_lands_without_any_person_and_once() -> anyhow::Result<()> {
    let h = Harness::start("costs").await?;
    let mut cfg = config(500);
    cfg.malformed_rate = 0.05;
    let mut body = Vec::new();
    let truth = write_costs(&cfg, &mut body)?;
    assert!(truth.malformed_rows > 0, "the generator plants bad rows");
    h.stack.upload("costs/2026-11-22/spend.csv", body.clone()).await?;
    let report = h.runner.drain().await?;
    assert_eq!(report.failures, 0, "{report:?}");
    let identity_calls: u64 = report.by_function.iter().filter(|(f, _)| f.contains("Identity")).map(|(_, n)| *n).sum();
    assert_eq!(identity_calls, 0, "spend rows have no person: no identity observation ({report:?})");

    let ledger = h.ledger().await?;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    let entry = &ledger[0];
    assert_eq!((entry.status, entry.spec.as_deref()), (LedgerStatus::Completed, Some("channels/costs/spend.toml")));
    assert_eq!((entry.rows_read, entry.rows_rejected, entry.observations_sent), (truth.rows, truth.malformed_rows, 0));
    assert_eq!(entry.events_written, truth.rows - truth.malformed_rows);

    // Rejects: the planted bad lines exactly, each with a reason.
    let rejects = lake::rejects_from_batches(&lake::read_parquet_bytes(
        h.stack.lake_object(entry.rejects_file.as_deref().expect("rejects")).await?,
    )?)?;
    let bad: BTreeSet<u64> = truth.lines.iter().filter(|l| l.amount_minor.is_none()).map(|l| l.line).collect();
    assert_eq!(rejects.iter().map(|r| r.line).collect::<BTreeSet<_>>(), bad);
    assert!(rejects.iter().all(|r| !r.reason.is_empty()));

    // Events: one per valid row, no identity key or hash, the amount in cents per channel
    // and day as the generator wrote it.
    let mut spend: BTreeMap<(String, String), i64> = BTreeMap::new();
    let keys = h.stack.lake_keys("events/").await?;
    assert!(keys.iter().all(|k| k.starts_with("events/channel=costs/")), "{keys:?}");
    for key in &keys {
        let batches = lake::read_parquet_bytes(h.stack.lake_object(key).await?)?;
        for name in ["anchor_id", "email_hash", "phone_hash"] {
            assert!(lake::string_values(&batches, name)?.is_empty(), "{name} in {key}");
        }
        let types = lake::string_values(&batches, "event_type")?;
        assert!(types.iter().all(|t| t == "spend"), "{types:?}");
        let date = key.split("event_date=").nth(1).and_then(|r| r.split('/').next()).unwrap_or_default().to_string();
        for b in &batches {
            let channels = lake::string_values(std::slice::from_ref(b), "category")?;
            assert_eq!(channels.len(), b.num_rows(), "every spend row names its channel");
            let amounts = b.column_by_name("line_total_minor").unwrap().as_any().downcast_ref::<arrow::array::Int64Array>().unwrap();
            for (i, channel) in channels.iter().enumerate() {
                *spend.entry((date.clone(), channel.clone())).or_default() += amounts.value(i);
            }
        }
    }
    let expected: BTreeMap<(String, String), i64> =
        truth.lines.iter().filter_map(|l| l.amount_minor.map(|a| ((l.day.to_string(), l.channel.clone()), a))).collect();
    assert_eq!(spend, expected);

    // The same file again under another key: a duplicate, nothing written.
    h.stack.upload("costs/2026-11-23/spend-again.csv", body).await?;
    h.runner.drain().await?;
    assert_eq!(h.stack.lake_keys("events/").await?, keys);
    let again = h.ledger().await?;
    let dup = again.iter().find(|e| e.source_key == "costs/2026-11-23/spend-again.csv").expect("a ledger entry for the re-upload");
    assert_eq!(dup.status, LedgerStatus::Duplicate);
    Ok(())
}
