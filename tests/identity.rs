//! Identity resolution against moto through the real AWS SDK: concurrent resolvers over
//! the deployed profiles table agree with the oracle; erasure and repair go through the
//! identity queue and the deployed function, end to end (lake links, history, segments,
//! activation).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ariane_identity::handler::IdentityMessage;
use ariane_identity::oracle::{groups, oracle};
use ariane_identity::resolver::{HistoryRecord, ResolveError, Resolver};
use ariane_identity::rules::Rules;
use ariane_identity::store::{DynamoStore, ItemStore, Key, Listing, Record, StoreError, Write};
use ariane_shared::identifiers::{Identifier, IdentifierKind as K};
use ariane_shared::lake;
use ariane_shared::model::{Observation, ObservationBatch, Traits};
use ariane_tests::Harness;
use arrow::array::{Array, TimestampMicrosecondArray};
use chrono::{DateTime, Duration, TimeZone, Utc};

fn resolver(h: &Harness) -> anyhow::Result<Resolver<DynamoStore>> {
    let table = h.stack.manifest.output("ProfilesTableName")?.to_string();
    Ok(Resolver::new(DynamoStore { client: h.stack.clients.dynamodb.clone(), table }, Rules::embedded()?))
}

/// The latest link of every identity key in the lake (profile id, '' once erased),
/// chosen as the segments' `profile_links` view chooses it.
async fn latest_links(h: &Harness) -> anyhow::Result<BTreeMap<String, String>> {
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for key in h.stack.lake_keys(lake::links_prefix()).await? {
        let batches = lake::read_parquet_bytes(h.stack.lake_object(&key).await?)?;
        let hashes = lake::string_values(&batches, "identifier_hash")?;
        let pids = lake::string_values(&batches, "profile_id")?;
        let mut at = Vec::new();
        for b in &batches {
            let col =
                b.column_by_name("resolved_at").and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>()).expect("resolved_at");
            at.extend((0..col.len()).map(|i| col.value(i)));
        }
        for ((k, p), t) in hashes.into_iter().zip(pids).zip(at) {
            let slot = latest.entry(k).or_insert((i64::MIN, String::new()));
            if (t, &p) > (slot.0, &slot.1) {
                *slot = (t, p);
            }
        }
    }
    Ok(latest.into_iter().map(|(k, (_, p))| (k, p)).collect())
}

async fn history(h: &Harness) -> anyhow::Result<Vec<HistoryRecord>> {
    let mut out = Vec::new();
    for key in h.stack.lake_keys("identity/history/").await? {
        let body = h.stack.lake_object(&key).await?;
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push(serde_json::from_slice(line)?);
        }
    }
    Ok(out)
}

fn body(m: &IdentityMessage) -> String {
    serde_json::to_string(m).unwrap()
}

/// The identity queue's three message forms, as the handler parses them.
#[test]
fn identity_messages_parse() {
    let erase: IdentityMessage = serde_json::from_str(r#"{"erase": {"kind": "email", "value": "marie@x.fr"}}"#).unwrap();
    assert_eq!(erase, IdentityMessage::Erase { erase: Identifier::new(K::Email, "marie@x.fr") });
    let exclude: IdentityMessage = serde_json::from_str(r#"{"exclude": {"kind": "phone", "value": "+33622222222"}}"#).unwrap();
    assert_eq!(exclude, IdentityMessage::Exclude { exclude: Identifier::new(K::Phone, "+33622222222") });
    let batch: IdentityMessage = serde_json::from_str(r#"{"observations": []}"#).unwrap();
    assert_eq!(batch, IdentityMessage::Observations(ObservationBatch { observations: vec![] }));
    for bad in [r#"{"exclude": {"kind": "fax", "value": "1"}}"#, r#"{"repair": {"kind": "email", "value": "a@b.fr"}}"#, "[]"] {
        assert!(serde_json::from_str::<IdentityMessage>(bad).is_err(), "{bad}");
    }
    assert_eq!(serde_json::from_str::<IdentityMessage>(&body(&exclude)).unwrap(), exclude);
}

// ---------------------------------------------------------------------------------------
// a. Concurrent resolvers over DynamoDB (moto) end with the oracle's partition.

type Spec = (u8, Vec<(u8, u8)>);

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A small universe (7 kinds x 6 values, 60 days) where shared values, limits and attach
/// conflicts are common: the shape of `functions/identity/tests/resolution.rs`.
fn random_spec(seed: u64, n: usize) -> Vec<Spec> {
    let mut r = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..n)
        .map(|_| {
            let day = r.below(60) as u8;
            let ids = (0..1 + r.below(3)).map(|_| (r.below(7) as u8, r.below(6) as u8)).collect();
            (day, ids)
        })
        .collect()
}

/// Observations of a spec; values carry `tag` so several seeds share one table apart.
fn build(spec: &[Spec], tag: u64) -> Vec<Observation> {
    let kinds = [K::CustomerId, K::Email, K::Phone, K::LoyaltyCard, K::DeviceId, K::PushToken, K::CookieId];
    spec.iter()
        .enumerate()
        .map(|(n, (day, ids))| Observation {
            observation_id: format!("s{tag}-o{n}"),
            channel: ["pos", "ecommerce", "crm", "web", "sms"][n % 5].into(),
            source_key: "x/y.csv".into(),
            source_line: n as u64,
            observed_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::days(i64::from(*day)) + Duration::seconds(n as i64),
            identifiers: ids
                .iter()
                .map(|(k, v)| {
                    let kind = kinds[*k as usize];
                    let value = match kind {
                        K::Email => format!("s{tag}p{v}@mail.fr"),
                        K::Phone => format!("+3361{tag}00000{v}"),
                        _ => format!("{}-{tag}-{v}", kind.as_str()),
                    };
                    Identifier::new(kind, value)
                })
                .collect(),
            traits: Traits::default(),
            consents: vec![],
            activity: vec![],
        })
        .collect()
}

/// The deployed table through the real SDK, with commits (one TransactWriteItems, or one
/// conditional PutItem/DeleteItem) sent to moto one at a time.
///
/// moto 5's TransactWriteItems is not isolated: it checks and applies the items one by
/// one without a lock, backs up the whole table with `deepcopy` (which fails with
/// "dictionary changed size during iteration", an HTTP 500, when another request writes
/// meanwhile), and on a failed condition restores that backup, discarding what other
/// requests committed in between. DynamoDB serialises transactions; this wrapper gives
/// moto that guarantee and nothing more: reads, the resolvers' computations and the gap
/// between a read and the conditional write it guards still interleave freely.
struct SerialCommits {
    inner: DynamoStore,
    commits: Arc<tokio::sync::Mutex<()>>,
}

type StoreFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>;

// The `#[async_trait]` expansion of `ItemStore`, written out (this crate does not
// depend on async-trait).
impl ItemStore for SerialCommits {
    fn get_many<'life0, 'life1, 'async_trait>(&'life0 self, keys: &'life1 [Key]) -> StoreFuture<'async_trait, Vec<Record>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(self.inner.get_many(keys))
    }

    fn commit<'life0, 'async_trait>(&'life0 self, writes: Vec<Write>) -> StoreFuture<'async_trait, ()>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let _one_at_a_time = self.commits.lock().await;
            self.inner.commit(writes).await
        })
    }
}

/// `workers` resolvers, each with its own SDK-backed store on the deployed table,
/// resolve one shuffled stream with duplicates in small batches, concurrently.
async fn check_against_oracle(h: &Harness, seed: u64, n: usize, workers: usize) -> anyhow::Result<()> {
    let spec = random_spec(seed, n);
    let observations = build(&spec, seed);
    let rules = Rules::embedded()?;
    let expected_assign = oracle(&observations, &rules, &BTreeSet::new());
    let expected = groups(&expected_assign);
    let mut stream: Vec<Observation> = observations.clone();
    stream.extend(observations.iter().step_by(3).cloned());
    let mut r = XorShift(seed | 1);
    for i in (1..stream.len()).rev() {
        stream.swap(i, r.below(i as u64 + 1) as usize);
    }
    let stream = Arc::new(stream);
    let commits = Arc::new(tokio::sync::Mutex::new(()));
    let mut handles = Vec::new();
    for w in 0..workers {
        let resolver = Resolver::new(SerialCommits { inner: resolver(h)?.store, commits: commits.clone() }, rules.clone());
        let stream = stream.clone();
        let batch = 1 + (seed as usize + w) % 5;
        handles.push(tokio::spawn(async move {
            let part: Vec<Observation> = stream.iter().skip(w).step_by(workers).cloned().collect();
            let (mut retries, mut redeliveries) = (0, 0);
            for chunk in part.chunks(batch) {
                loop {
                    match resolver.resolve_batch(chunk).await {
                        Ok(out) => {
                            retries += out.stats.retries;
                            break;
                        }
                        // Still contended after the resolver's own attempts: the handler
                        // reports the message and SQS delivers it again (at most
                        // maxReceiveCount = 5 times before the DLQ); the same here.
                        Err(ResolveError::Contended(_)) if redeliveries < 4 => redeliveries += 1,
                        Err(e) => return Err(anyhow::Error::new(e).context(format!("seed {seed}, worker {w}"))),
                    }
                }
            }
            anyhow::Ok((retries, redeliveries))
        }));
    }
    let (mut retries, mut redeliveries) = (0, 0);
    for handle in handles {
        let (r, d) = handle.await??;
        retries += r;
        redeliveries += d;
    }
    let keys: Vec<String> = expected_assign.keys().cloned().collect();
    let got_assign = resolver(h)?.profiles_of_evidence(&keys).await?;
    let got = groups(&got_assign);
    if got != expected {
        let shown: Vec<String> = spec.iter().map(|(d, ids)| format!("({d}, {ids:?})")).collect();
        anyhow::bail!(
            "seed {seed}, {workers} workers: the store's partition differs from the oracle's\nspec (day, [(kind, value)]): [{}]\noracle groups not in the store: {:?}\nstore groups not in the oracle: {:?}",
            shown.join(", "),
            expected.difference(&got).collect::<Vec<_>>(),
            got.difference(&expected).collect::<Vec<_>>()
        );
    }
    // Every profile the evidence points at exists.
    let reader = resolver(h)?;
    for pid in got_assign.values().flatten().collect::<BTreeSet<_>>() {
        let p = reader.profile(pid).await?;
        anyhow::ensure!(
            p.as_ref().is_some_and(|p| &p.profile_id == pid),
            "seed {seed}: evidence points at {pid}, which has no profile item"
        );
    }
    eprintln!(
        "seed {seed}: {} observations ({} deliveries, {workers} workers), {} groups, {retries} retries, {redeliveries} redeliveries",
        observations.len(),
        stream.len(),
        expected.len()
    );
    Ok(())
}

/// Three fixed seeds (moto is slow); `ARIANE_IDENTITY_SEEDS=N` runs seeds 1..=N to soak.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_resolvers_on_dynamodb_agree_with_the_oracle() -> anyhow::Result<()> {
    let h = Harness::start("idconc").await?;
    let seeds: u64 = std::env::var("ARIANE_IDENTITY_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    for seed in 1..=seeds {
        check_against_oracle(&h, seed, 36, 3 + (seed as usize % 2)).await?;
    }
    Ok(())
}

/// Deletes every item of the profiles table (one table serves several runs below).
async fn clear_table(store: &DynamoStore) -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::AttributeValue;
    for r in store.list_all().await? {
        store
            .client
            .delete_item()
            .table_name(&store.table)
            .key("pk", AttributeValue::S(r.key.pk.clone()))
            .key("sk", AttributeValue::S(r.key.sk.to_string()))
            .send()
            .await?;
    }
    anyhow::ensure!(store.list_all().await?.is_empty(), "the table is not empty after clearing it");
    Ok(())
}

/// Issue 21's case on DynamoDB: four resolvers over the deployed table through the real
/// SDK, interleaved by the schedule that broke the case in memory (and by a few more),
/// the store's invariants checked after every commit from a consistent scan, the
/// partition checked against the oracle at the end. Store calls run one at a time under
/// the schedule, so moto's unisolated transactions (see `SerialCommits`) play no part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issue_21_case_on_dynamodb_keeps_every_contribution() -> anyhow::Result<()> {
    use ariane_identity::interleave::{
        case_observations, delivery_stream, lost_contribution_case, run_workers, Scheduler, LOST_CONTRIBUTION_SCHEDULE,
    };
    let h = Harness::start("idcase21").await?;
    let rules = Rules::embedded()?;
    let observations = case_observations(&lost_contribution_case());
    let expected_assign = oracle(&observations, &rules, &BTreeSet::new());
    let store = Arc::new(resolver(&h)?.store);
    for seed in [LOST_CONTRIBUTION_SCHEDULE, 4744335698883705179, 2, 3, 4] {
        clear_table(&store).await?;
        let scheduler = Scheduler::new(seed, 4, Some(rules.clone()));
        let report = run_workers(&scheduler, store.clone(), &rules, &delivery_stream(&observations, seed))
            .await
            .map_err(|e| anyhow::anyhow!("schedule {seed} on DynamoDB: {e}"))?;
        let keys: Vec<String> = expected_assign.keys().cloned().collect();
        let got = groups(&resolver(&h)?.profiles_of_evidence(&keys).await?);
        anyhow::ensure!(got == groups(&expected_assign), "schedule {seed}: the table's partition differs from the oracle's");
        eprintln!(
            "schedule {seed}: {} store calls, {} commits, {} conflicts, invariants held after every commit",
            report.steps, report.commits, report.conflicts
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// b. Erasure through the identity queue, end to end.

fn run_at() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().with_timezone(&Utc)
}

const HEADER: &str = "Name,Email,Phone,Customer ID,Created at,Currency,Subtotal,Shipping,Total,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Lineitem category,Billing Name,Billing Zip,Billing City,Accepts Marketing";

/// Two lapsed customers (two orders each, the last more than 90 days before the run):
/// both belong in `reactivation`. Marie's second order has no phone (a second identifier
/// set, so a second identity key).
fn orders_export() -> Vec<u8> {
    let rows = [
        "#3000001, Marie.Curie@Orange.fr ,06 11 22 33 44,3000000000001,2026-03-10 10:00:00 +0100,EUR,30.00,0.00,30.00,1,Pull,30.00,SKU-VET-1,vetements,Marie Curie,75005,Paris,yes",
        "#3000002,marie.curie@orange.fr,,3000000000001,2026-05-12 10:00:00 +0200,EUR,20.00,0.00,20.00,1,Bonnet,20.00,SKU-ACC-2,accessoires,Marie Curie,75005,Paris,yes",
        "#3000003,paul.martin@gmail.com,06 55 66 77 88,3000000000002,2026-04-01 10:00:00 +0200,EUR,40.00,0.00,40.00,1,Baskets,40.00,SKU-CHA-3,chaussures,Paul Martin,69003,Lyon,yes",
        "#3000004,paul.martin@gmail.com,06 55 66 77 88,3000000000002,2026-06-01 10:00:00 +0200,EUR,15.00,0.00,15.00,1,Bougie,15.00,SKU-MAI-4,maison,Paul Martin,69003,Lyon,yes",
    ];
    format!("{HEADER}\n{}\n", rows.join("\n")).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_through_the_queue_end_to_end() -> anyhow::Result<()> {
    let h = Harness::start("iderase").await?;
    let ids = resolver(&h)?;
    let marie = [
        Identifier::new(K::Email, "marie.curie@orange.fr"),
        Identifier::new(K::Phone, "+33611223344"),
        Identifier::new(K::CustomerId, "3000000000001"),
    ];
    let paul = Identifier::new(K::Email, "paul.martin@gmail.com");

    h.stack.upload("ecommerce/orders 2026-06.csv", orders_export()).await?;
    let drained = h.runner.drain().await?;
    assert_eq!(drained.failures, 0, "{drained:?}");
    let marie_pid = ids.lookup(&marie[0]).await?.expect("Marie has a profile");
    let paul_pid = ids.lookup(&paul).await?.expect("Paul has a profile");
    assert_ne!(marie_pid, paul_pid);
    for id in &marie {
        assert_eq!(ids.lookup(id).await?.as_ref(), Some(&marie_pid), "{id:?}");
    }
    let profile = ids.profile(&marie_pid).await?.expect("profile item");
    assert_eq!(profile.doc.identifiers["email"], BTreeSet::from(["marie.curie@orange.fr".to_string()]));
    assert_eq!(h.stack.profile_count().await?, 2);
    let links = latest_links(&h).await?;
    let marie_keys: Vec<String> = links.iter().filter(|(_, p)| **p == marie_pid).map(|(k, _)| k.clone()).collect();
    assert_eq!(marie_keys.len(), 2, "two identifier sets for Marie: {links:?}");

    // The operator's erasure request, as in production: a message on the identity queue.
    h.send_raw("IdentityQueue", &body(&IdentityMessage::Erase { erase: marie[0].clone() })).await?;
    let drained = h.runner.drain().await?;
    assert_eq!((drained.failures, drained.by_function.get("IdentityFunction").copied()), (0, Some(1)), "{drained:?}");
    assert_eq!(h.dlq_depth("IdentityQueue").await?, 0);
    for id in &marie {
        assert_eq!(ids.lookup(id).await?, None, "{id:?} still resolves");
    }
    assert_eq!(ids.profile(&marie_pid).await?, None, "the PROFILE item is gone");
    assert_eq!(h.stack.profile_count().await?, 1);
    let evidence = ids.profiles_of_evidence(&marie_keys).await?;
    assert!(evidence.values().all(Option::is_none), "Marie's evidence still resolves: {evidence:?}");
    let links = latest_links(&h).await?;
    for k in &marie_keys {
        assert_eq!(links[k], "", "the lake link of erased key {k} must point nowhere");
    }
    assert_eq!(links.values().filter(|p| **p == paul_pid).count(), 1, "Paul's link is untouched");
    assert!(history(&h).await?.iter().any(|r| r.action == "erased" && r.profile_id.as_deref() == Some(marie_pid.as_str())));
    // The destinations are told, by profile id only.
    let events: Vec<serde_json::Value> = h.take_json(h.stack.manifest.output("ActivationEventsQueueUrl")?).await?;
    let erased: Vec<&serde_json::Value> = events.iter().filter(|e| e["type"] == "ProfileErased").collect();
    assert_eq!(erased.len(), 1, "{events:?}");
    assert_eq!(erased[0]["profile_id"], marie_pid.as_str());
    assert!(!erased[0].to_string().contains("marie"), "{}", erased[0]);
    // And the erasure's report is in the lake, without the value.
    let key = lake::erasure_report_key("email", &ariane_shared::identifiers::identifier_hash(K::Email, "marie.curie@orange.fr"));
    let bytes = h.stack.lake_object(&key).await?;
    assert!(!String::from_utf8_lossy(&bytes).contains("marie"), "the report names no value");
    let report: ariane_identity::handler::ErasureReport = serde_json::from_slice(&bytes)?;
    assert_eq!((report.profile_id.as_deref(), report.evidence_removed, report.announced), (Some(marie_pid.as_str()), 2, true));
    assert_eq!(report.identifiers_suppressed, Some(3), "{report:?}");

    // An old export re-ingested (the same rows, re-exported as another file): identity
    // receives Marie's observations again and does not re-create her.
    let mut again = orders_export();
    again.extend_from_slice(b"\n");
    h.stack.upload("ecommerce/orders 2026-06 (re-export).csv", again).await?;
    let drained = h.runner.drain().await?;
    assert_eq!(drained.failures, 0, "{drained:?}");
    assert!(drained.by_function.get("IdentityFunction").copied().unwrap_or(0) >= 1, "the re-export reached identity: {drained:?}");
    for id in &marie {
        assert_eq!(ids.lookup(id).await?, None, "{id:?} re-created by a re-ingest");
    }
    assert_eq!(h.stack.profile_count().await?, 1);
    let links = latest_links(&h).await?;
    assert!(marie_keys.iter().all(|k| links[k].is_empty()), "a re-ingest re-linked Marie: {links:?}");
    assert!(links.values().all(|p| p.is_empty() || *p == paul_pid), "{links:?}");

    // Segments and activation: Paul only.
    let summary = h.runner.fire_schedule(None, run_at()).await?;
    assert_eq!(ariane_tests::segment_report(&summary, "reactivation")["entered"], 1, "{summary}");
    // The run's membership, one part per profile bucket (the committed pointer names them).
    let pointer: serde_json::Value = serde_json::from_slice(&h.stack.lake_object(&lake::segment_current_key("reactivation")).await?)?;
    assert_eq!(pointer["run_id"], lake::run_id(run_at()));
    let mut members = Vec::new();
    for part in pointer["parts"].as_array().expect("the run's parts") {
        let part = part.as_str().expect("a part key");
        members.extend(lake::members_from_batches(&lake::read_parquet_bytes(h.stack.lake_object(part).await?)?)?);
    }
    assert_eq!(members.iter().map(|m| m.profile_id.as_str()).collect::<Vec<_>>(), vec![paul_pid.as_str()]);
    h.runner.drain().await?;
    let deliveries = h.receiver.deliveries();
    assert!(deliveries.iter().all(|d| d.body["profile_id"] == paul_pid.as_str()), "only Paul is reached: {deliveries:?}");
    let reactivation: Vec<&str> = deliveries
        .iter()
        .filter(|d| d.body["campaign"] == "reactivation")
        .map(|d| d.body["to"]["email"].as_str().unwrap_or_default())
        .collect();
    let held_out = ariane_activate::holdout::in_holdout("reactivation", &paul_pid, 10.0);
    assert_eq!(reactivation, if held_out { vec![] } else { vec!["paul.martin@gmail.com"] });
    Ok(())
}

// ---------------------------------------------------------------------------------------
// c. Repair: a wrong merge through one identifier is split by excluding it.

fn person(n: u64, day: u32, first_name: &str, ids: &[(K, &str)]) -> Observation {
    Observation {
        observation_id: format!("crm-{n}"),
        channel: "crm".into(),
        source_key: "crm/contacts.csv".into(),
        source_line: n + 1,
        observed_at: Utc.with_ymd_and_hms(2026, 2, day, 9, 0, 0).unwrap(),
        identifiers: ids.iter().map(|(k, v)| Identifier::new(*k, *v)).collect(),
        traits: Traits { first_name: Some(first_name.into()), ..Traits::default() },
        consents: vec![],
        activity: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_splits_a_wrong_merge_and_the_history_records_both() -> anyhow::Result<()> {
    let h = Harness::start("idrepair").await?;
    let ids = resolver(&h)?;
    let (anne, bruno) = (Identifier::new(K::Email, "anne.roux@free.fr"), Identifier::new(K::Email, "bruno.petit@sfr.fr"));
    let store_phone = Identifier::new(K::Phone, "+33478000000");
    let send = |observations: Vec<Observation>| {
        let (h, body) = (&h, body(&IdentityMessage::Observations(ObservationBatch { observations })));
        async move { h.send_raw("IdentityQueue", &body).await }
    };

    // Anne (with the shop's phone typed for her) and Bruno: two persons.
    send(vec![
        person(1, 1, "Anne", &[(K::Email, "anne.roux@free.fr"), (K::Phone, "+33478000000")]),
        person(2, 2, "Bruno", &[(K::Email, "bruno.petit@sfr.fr")]),
    ])
    .await?;
    assert_eq!(h.runner.drain().await?.failures, 0);
    let (pa, pb) = (ids.lookup(&anne).await?.expect("Anne"), ids.lookup(&bruno).await?.expect("Bruno"));
    assert_ne!(pa, pb);
    // The same phone typed for Bruno: the two persons are wrongly merged.
    send(vec![person(3, 3, "Bruno", &[(K::Email, "bruno.petit@sfr.fr"), (K::Phone, "+33478000000")])]).await?;
    assert_eq!(h.runner.drain().await?.failures, 0);
    let merged = ids.lookup(&anne).await?.expect("merged");
    assert_eq!(ids.lookup(&bruno).await?.as_ref(), Some(&merged), "wrongly merged through the phone");
    assert_eq!(merged, pa, "the oldest profile survives");
    assert_eq!(ids.profile(&merged).await?.expect("profile").doc.identifiers["email"].len(), 2);
    assert_eq!(h.stack.profile_count().await?, 1);

    // The repair, as an operator sends it.
    h.send_raw("IdentityQueue", &body(&IdentityMessage::Exclude { exclude: store_phone.clone() })).await?;
    let drained = h.runner.drain().await?;
    assert_eq!((drained.failures, drained.by_function.get("IdentityFunction").copied()), (0, Some(1)), "{drained:?}");
    assert_eq!(h.dlq_depth("IdentityQueue").await?, 0);
    let (a, b) = (ids.lookup(&anne).await?.expect("Anne after the repair"), ids.lookup(&bruno).await?.expect("Bruno after the repair"));
    assert_ne!(a, b, "split again");
    assert_eq!(ids.lookup(&store_phone).await?, None, "the excluded phone links no one");
    assert_eq!(h.stack.profile_count().await?, 2);
    let emails = |pid: String| {
        let ids = &ids;
        async move { anyhow::Ok(ids.profile(&pid).await?.expect("profile").doc.identifiers["email"].clone()) }
    };
    assert_eq!(emails(a.clone()).await?, BTreeSet::from([anne.value.clone()]));
    assert_eq!(emails(b.clone()).await?, BTreeSet::from([bruno.value.clone()]));
    let links = latest_links(&h).await?;
    let pointed: BTreeSet<&String> = links.values().collect();
    assert_eq!(pointed, BTreeSet::from([&a, &b]), "the lake links follow the split: {links:?}");

    // The history in the lake records the merge, the split and the exclusion.
    let records = history(&h).await?;
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    let merge = records.iter().find(|r| r.action == "merge").unwrap_or_else(|| panic!("no merge record: {actions:?}"));
    let merged_pair: BTreeSet<&str> = merge.profile_id.iter().chain(&merge.other_profiles).map(String::as_str).collect();
    assert_eq!(merged_pair, BTreeSet::from([pa.as_str(), pb.as_str()]), "{merge:?}");
    assert_eq!(merge.observation_id.as_deref(), Some("crm-3"), "the merge names its source row");
    let split = records.iter().find(|r| r.action == "split").unwrap_or_else(|| panic!("no split record: {actions:?}"));
    let split_pair: BTreeSet<&str> = split.profile_id.iter().chain(&split.other_profiles).map(String::as_str).collect();
    assert_eq!(split_pair, BTreeSet::from([a.as_str(), b.as_str()]), "{split:?}");
    assert_eq!(
        split.identifiers.iter().map(|i| (i.kind, i.hash.as_str())).collect::<Vec<_>>(),
        vec![(K::Phone, store_phone.hash().as_str())]
    );
    assert!(records.iter().any(|r| r.action == "excluded" && r.identifiers.iter().any(|i| i.hash == store_phone.hash())), "{actions:?}");
    assert!(merge.at <= split.at);
    Ok(())
}

/// A customer with 150 identifier sets (a cookie a day) and a family e-mail, merged with
/// her loyalty card's 60 sets, then erased, on DynamoDB in moto: both are more than one
/// transaction can hold, so each runs as a large operation (`ariane_identity::intent`);
/// afterwards no item of the person is left but the suppression entries, and no
/// operation item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erasure_of_150_identifier_sets_on_dynamodb() -> anyhow::Result<()> {
    let h = Harness::start("iderase150").await?;
    let ids = resolver(&h)?;
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 9, 0, 0).unwrap();
    let mut rows: Vec<Observation> = (0..150u32)
        .map(|i| Observation {
            observed_at: start + Duration::days(i as i64),
            ..person(i as u64, 1, "Léa", &[(K::CustomerId, "C-150"), (K::CookieId, &format!("ck-{i:03}"))])
        })
        .collect();
    rows.push(person(500, 2, "Léa", &[(K::CustomerId, "C-150"), (K::Email, "famille.roux@laposte.net")]));
    rows.push(person(501, 3, "Hugo", &[(K::CustomerId, "C-151"), (K::Email, "hugo@laposte.net")]));
    // Her loyalty card's 60 till-and-web sets, a profile of their own until a row shows both.
    rows.extend((0..60u32).map(|i| Observation {
        observed_at: start + Duration::days(i as i64),
        ..person(600 + i as u64, 4, "Léa", &[(K::LoyaltyCard, "L-150"), (K::CookieId, &format!("ckb-{i:03}"))])
    }));
    for chunk in rows.chunks(25) {
        ids.resolve_batch(chunk).await?;
    }
    let lea = ids.lookup(&Identifier::new(K::CookieId, "ck-000")).await?.expect("one profile");
    assert_eq!(ids.lookup(&Identifier::new(K::CookieId, "ck-149")).await?.as_ref(), Some(&lea));
    assert_ne!(ids.lookup(&Identifier::new(K::LoyaltyCard, "L-150")).await?.as_ref(), Some(&lea));
    // The merge moves 60 evidence sets and their identifiers: more than a transaction
    // holds, so it runs as a large operation (chunks behind a component lock).
    let merge = person(700, 1, "Léa", &[(K::CustomerId, "C-150"), (K::LoyaltyCard, "L-150")]);
    let out = ids.resolve_batch(std::slice::from_ref(&merge)).await?;
    assert_eq!((out.stats.merges, out.stats.large_operations), (1, 1), "{:?}", out.stats);
    rows.push(merge);
    let lea = ids.lookup(&Identifier::new(K::CookieId, "ck-000")).await?.expect("one profile");
    assert_eq!(ids.lookup(&Identifier::new(K::CookieId, "ckb-059")).await?.as_ref(), Some(&lea));
    ariane_identity::audit::check(&ids.store.list_all().await?, &ids.rules).map_err(|v| anyhow::anyhow!("{v:?}"))?;

    let out = ids.erase(&Identifier::new(K::Email, "famille.roux@laposte.net")).await?;
    assert_eq!(out.links.len(), 212);
    for o in rows.iter().filter(|o| o.identifiers.iter().any(|i| i.value == "C-150" || i.value == "L-150")) {
        for i in &o.identifiers {
            assert_eq!(ids.lookup(i).await?, None, "{i:?}");
        }
    }
    let items = ids.store.list_all().await?;
    let kinds: BTreeMap<&str, usize> = items.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.key.pk.split('#').next().unwrap_or("")).or_default() += 1;
        m
    });
    assert_eq!((kinds.get("PROFILE"), kinds.get("EV")), (Some(&1), Some(&1)), "only Hugo's profile and evidence: {kinds:?}");
    assert_eq!(kinds.get("INTENT"), None, "an operation item was left: {kinds:?}");
    ariane_identity::audit::check(&items, &ids.rules).map_err(|v| anyhow::anyhow!("{v:?}"))?;
    assert!(ids.lookup(&Identifier::new(K::Email, "hugo@laposte.net")).await?.is_some());
    Ok(())
}
