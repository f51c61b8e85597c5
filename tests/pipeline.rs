//! End to end on the local stack: an e-commerce export flows through ingest, identity,
//! segments and activation; the webhook receives exactly the profiles the generator's
//! ground truth says are in the reactivation segment; re-uploads and re-runs are no-ops.

use std::collections::BTreeSet;

use ariane_activate::holdout::in_holdout;
use ariane_datagen::{expected_reactivation, read_truth, write_ecommerce_orders, GenConfig};
use ariane_local::activation::final_outcomes;
use ariane_shared::lake;
use ariane_tests::Harness;
use chrono::{DateTime, Duration, Utc};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_to_webhook_end_to_end() -> anyhow::Result<()> {
    let mut h = Harness::start("e2e").await?;
    // Activation decides at 09:00 UTC the day of the run (no quiet hours in play).
    h.runner.set_activate_clock(&ariane_activate::handler::Clock::manual(now() + Duration::hours(9)));
    let cfg = GenConfig { malformed_rate: 0.02, ..GenConfig::new(7, 250, now()) };
    let (mut csv, mut truth_csv) = (Vec::new(), Vec::new());
    let stats = write_ecommerce_orders(&cfg, &mut csv, &mut truth_csv)?;
    let truth = read_truth(&truth_csv[..])?;
    assert!(stats.malformed_rows > 0, "the generator planted malformed rows");

    h.stack.upload("ecommerce/orders 2026-11-22.csv", csv.clone()).await?;
    let drained = h.runner.drain().await?;
    assert_eq!(drained.failures, 0, "{drained:?}");

    // The ledger reconciles with the ground truth.
    let ledger = h.ledger().await?;
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    let entry = &ledger[0];
    let invalid: BTreeSet<u64> = truth.iter().filter(|t| !t.valid).map(|t| t.line).collect();
    assert_eq!(entry.source_key, "ecommerce/orders 2026-11-22.csv", "the URL-encoded key is decoded");
    assert_eq!(entry.rows_read, truth.len() as u64);
    assert_eq!(entry.rows_rejected, invalid.len() as u64);
    assert_eq!(entry.rows_read, entry.events_written + entry.rows_rejected);

    // Rejected rows carry their physical line number and a reason.
    let rejects_key = entry.rejects_file.clone().expect("a rejects file");
    let rejects = lake::rejects_from_batches(&lake::read_parquet_bytes(h.stack.lake_object(&rejects_key).await?)?)?;
    assert_eq!(rejects.iter().map(|r| r.line).collect::<BTreeSet<_>>(), invalid);
    for r in &rejects {
        let t = truth.iter().find(|t| t.line == r.line).unwrap();
        let expected_word = if t.defect.starts_with("quantity") { "quantity" } else { "price" };
        assert!(r.reason.to_lowercase().contains(expected_word), "line {}: {} ({})", r.line, r.reason, t.defect);
    }

    // Events are partitioned by channel and date and carry no clear email.
    let event_keys = h.stack.lake_keys("events/").await?;
    assert!(event_keys.iter().all(|k| k.starts_with("events/channel=ecommerce/event_date=")), "{event_keys:?}");
    for key in &event_keys {
        let batches = lake::read_parquet_bytes(h.stack.lake_object(key).await?)?;
        for name in ["anchor_id", "email_hash", "product_name", "source_key", "order_id"] {
            let values = lake::string_values(&batches, name)?;
            assert!(values.iter().all(|v| !v.contains('@')), "clear email in column {name} of {key}");
        }
        assert_eq!(lake::string_values(&batches, "email_hash")?.iter().map(|v| v.len()).max(), Some(64));
    }

    // One profile per person with at least one valid order line.
    let persons_seen: BTreeSet<&str> = truth.iter().filter(|t| t.valid).map(|t| t.person_id.as_str()).collect();
    assert_eq!(h.stack.profile_count().await?, persons_seen.len());

    // Expected reactivation members from the ground truth.
    let expected = expected_reactivation(&cfg, &truth, now())?;
    assert!(expected.len() >= 10, "the data set has lapsed customers: {}", expected.len());

    let summary = h.runner.fire_schedule(None, now()).await?;
    assert_eq!(ariane_tests::segment_report(&summary, "reactivation")["entered"], expected.len());
    h.runner.drain().await?;
    let deliveries = h.receiver.deliveries();
    // Every expected member is decided once by the reactivation campaign: sent (by e-mail,
    // the only contact an order export gives with a consent), held out, or suppressed
    // for want of consent or by the cross-campaign frequency cap.
    let decisions: Vec<_> =
        final_outcomes(&h.stack.activation_records().await?).into_iter().filter(|r| r.campaign == "reactivation").collect();
    let mut decided = BTreeSet::new();
    let mut sent = 0;
    for r in &decisions {
        let email = h.stack.profile_attribute(&r.profile_id, "email").await?.unwrap_or_default();
        assert!(decided.insert(email.clone()), "{email} decided once");
        assert_eq!(r.group == "holdout", in_holdout("reactivation", &r.profile_id, 10.0), "{r:?}");
        let mine: Vec<_> =
            deliveries.iter().filter(|d| d.body["campaign"] == "reactivation" && d.body["profile_id"] == r.profile_id.as_str()).collect();
        match (r.outcome.as_str(), r.reason.as_deref()) {
            ("sent", _) => {
                sent += 1;
                assert_eq!(mine.len(), 1, "{email}: exactly one delivery");
                assert_eq!(mine[0].body["to"]["email"], email.as_str());
                assert_eq!(mine[0].destination, "esp");
                assert_eq!(mine[0].idempotency_key.as_deref(), mine[0].body["idempotency_key"].as_str());
                assert!(mine[0].body["payload"]["order_count"].as_str().unwrap_or("0").parse::<u32>()? >= 2);
            }
            ("holdout", _) | ("suppressed", Some("cap")) => assert!(mine.is_empty()),
            ("suppressed", Some("consent")) => {
                assert!(mine.is_empty());
                let opt_in = h.stack.profile_attribute(&r.profile_id, "email_opt_in").await?;
                assert_ne!(opt_in.as_deref(), Some("true"), "{email}");
            }
            other => panic!("{email}: unexpected outcome {other:?}"),
        }
    }
    assert_eq!(decided, expected, "the campaign decided exactly the ground truth's lapsed customers");
    assert!(sent > 0 && sent < expected.len(), "some sent, some held out or without consent: {sent} of {}", expected.len());
    let sent_before = deliveries.len();

    // Re-uploading the same export changes nothing: same objects, no new observations.
    let events_before = h.stack.lake_keys("events/").await?;
    let links_before = h.stack.lake_keys(lake::links_prefix()).await?;
    h.stack.upload("ecommerce/orders 2026-11-22.csv", csv).await?;
    let again = h.runner.drain().await?;
    assert_eq!(again.by_function.get("IdentityFunction"), None, "no observation re-sent: {again:?}");
    assert_eq!(h.stack.lake_keys("events/").await?, events_before);
    assert_eq!(h.stack.lake_keys(lake::links_prefix()).await?, links_before);
    assert_eq!(h.ledger().await?.len(), 1);

    // Re-running the same scheduled tick sends nothing twice; a later tick sends no new entries.
    let rerun = h.runner.fire_schedule(None, now()).await?;
    assert!(rerun["segments"].as_array().unwrap().iter().all(|r| r["skipped"] == true), "{rerun}");
    let later = h.runner.fire_schedule(None, now() + Duration::hours(1)).await?;
    let later = ariane_tests::segment_report(&later, "reactivation");
    assert_eq!((later["entered"].as_u64(), later["exited"].as_u64()), (Some(0), Some(0)));
    h.runner.drain().await?;
    assert_eq!(h.receiver.deliveries().len(), sent_before, "nothing sent twice");

    // The daily measures over the same lake: every order of the 28 days before the run is
    // a conversion, and the report is in the lake under the run's date.
    let measures = h.runner.fire_schedule(Some("MeasuresFunction"), now()).await?;
    let period = (now() - Duration::days(28))..=now();
    let in_period = |t: &&ariane_datagen::TruthRow| {
        t.valid
            && DateTime::parse_from_rfc3339(&t.created_at_utc)
                .is_ok_and(|at| period.contains(&at.with_timezone(&Utc)) && at.with_timezone(&Utc) != *period.start())
    };
    let orders: BTreeSet<&str> = truth.iter().filter(in_period).map(|t| t.order_id.as_str()).collect();
    assert!(!orders.is_empty(), "the data set has recent orders");
    assert_eq!(measures["conversions"].as_u64(), Some(orders.len() as u64), "{measures}");
    assert_eq!(measures["report_key"], "reports/html/2026-11-23/index.html", "{measures}");
    let html = String::from_utf8(h.stack.lake_object("reports/html/2026-11-23/index.html").await?.to_vec())?;
    assert!(html.contains("data-chart="), "the report has charts");

    // One person's journey, as an operator invokes the journey function: a person the
    // campaign decided, by their e-mail; their orders are exactly the ground truth's, and
    // no identifier shows in clear.
    let person = decisions.first().expect("a decided person");
    let email = h.stack.profile_attribute(&person.profile_id, "email").await?.expect("an e-mail on the profile");
    let journey = h
        .runner
        .invoker
        .invoke(&h.stack.manifest, "JourneyFunction", serde_json::json!({"kind": "email", "value": email.to_uppercase()}))
        .await?;
    assert_eq!(journey["profile_id"], person.profile_id.as_str(), "{journey}");
    let journey_orders: BTreeSet<&str> = journey["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter(|e| e["kind"] == "purchase")
        .filter_map(|e| e["order_id"].as_str())
        .collect();
    let owner: BTreeSet<&str> =
        truth.iter().filter(|t| t.valid && journey_orders.contains(t.order_id.as_str())).map(|t| t.person_id.as_str()).collect();
    assert_eq!(owner.len(), 1, "the journey's orders are one person's: {owner:?}");
    let truth_orders: BTreeSet<&str> =
        truth.iter().filter(|t| t.valid && owner.contains(t.person_id.as_str())).map(|t| t.order_id.as_str()).collect();
    assert_eq!(journey_orders, truth_orders, "every order of the person, and only theirs");
    assert!(!journey.to_string().to_lowercase().contains(&email.to_lowercase()), "no clear e-mail: {journey}");
    let nobody = h
        .runner
        .invoker
        .invoke(&h.stack.manifest, "JourneyFunction", serde_json::json!({"kind": "email", "value": "nobody@nowhere.fr"}))
        .await?;
    assert_eq!(nobody["no_profile"], "never_observed", "{nobody}");
    Ok(())
}
