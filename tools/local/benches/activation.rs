//! Activation: activations per second for one instance, and the requests (and DynamoDB
//! capacity units) each activation costs, with the cost per million at list prices.
//! A bench binary that prints a table; figures go to BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p ariane-local --bench activation                  # 2,000 entries
//! cargo bench -p ariane-local --bench activation -- --entries 5000 --concurrency 10
//! ```
//!
//! One local stack (moto, the template), a webhook receiver on 127.0.0.1, `--entries`
//! profiles written as identity writes them (e-mail consent for 80 %, SMS for 40 %), then
//! `--entries` segment entries of `reactivation` (e-mail, else SMS; 10 % holdout), handled
//! by one `Activate` instance in SQS batches of ten, as Lambda invokes it, at an hour when
//! every channel is open. A second pass delivers every message again (a redelivery or a
//! re-run), which must send nothing.
//!
//! Against moto every AWS call is a local HTTP round trip to a Python server, so the
//! throughput measures the function's request pattern under moto's latency, not AWS's;
//! the request counts are exact and are what the bill depends on.

use std::sync::atomic::Ordering;
use std::time::Instant;

use ariane_activate::handler::Clock;
use ariane_activate::{Activate, ActivateConfig};
use ariane_identity::profile::{ConsentState, Doc, TraitValue};
use ariane_identity::store::{to_attributes, Item, Key, ProfileItem};
use ariane_local::receiver::Receiver;
use ariane_local::LocalStack;
use ariane_shared::model::{ActivationRequest, SegmentChange};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use chrono::{DateTime, Utc};

/// List prices (us-east-1, on demand), USD.
const PRICE_WRU: f64 = 0.625e-6;
const PRICE_RRU: f64 = 0.125e-6;
const PRICE_SQS_REQUEST: f64 = 0.40e-6;
const PRICE_S3_PUT: f64 = 0.005e-3;
/// Lambda arm64: per GB-second and per request.
const PRICE_LAMBDA_GB_S: f64 = 0.0000133334;
const PRICE_LAMBDA_REQUEST: f64 = 0.20e-6;
const MEMORY_GB: f64 = 0.25;

fn flag(args: &[String], name: &str) -> Option<u64> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.replace('_', "").parse().ok())
}

struct Counters {
    reads: u64,
    writes: u64,
    rru: u64,
    wru: u64,
    conflicts: u64,
    sqs: u64,
    s3: u64,
    posts: u64,
}

fn snapshot(a: &Activate) -> Counters {
    let r = a.meter.reading();
    Counters {
        reads: r.read_requests,
        writes: r.write_requests,
        rru: r.read_units,
        wru: r.write_units,
        conflicts: r.conflicts,
        sqs: r.sqs_requests,
        s3: r.s3_writes,
        posts: a.webhook_posts.load(Ordering::Relaxed),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let entries = flag(&args, "--entries").unwrap_or(2000) as usize;
    let concurrency = flag(&args, "--concurrency").unwrap_or(1).max(1) as usize;
    std::env::set_var("ARIANE_METRICS", "off");
    let receiver = Receiver::start().await?;
    let stack = LocalStack::start("bench", &receiver.destination_params()).await?;
    let env = stack.manifest.function_env("ActivateFunction")?;
    let table = stack.manifest.output("ProfilesTableName")?.to_string();

    // Profiles, 25 per BatchWriteItem.
    let at: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")?.with_timezone(&Utc);
    let tv = |v: &str| TraitValue { value: v.into(), at, source: "crm".into(), observation_id: "bench".into() };
    let consent = |g: bool| ConsentState { granted: g, at, source: "crm".into(), observation_id: "bench".into() };
    let ids: Vec<String> = (0..entries).map(|i| format!("p_{i:024x}")).collect();
    for chunk in ids.chunks(25) {
        let mut writes = Vec::new();
        for pid in chunk {
            let i = usize::from_str_radix(&pid[2..], 16)?;
            let mut doc = Doc::default();
            let email = format!("client.{i}@example.fr");
            let phone = format!("+336{:08}", 10_000_000 + i);
            doc.identifiers.entry("email".into()).or_default().insert(email.clone());
            doc.identifiers.entry("phone".into()).or_default().insert(phone.clone());
            doc.traits.insert("email".into(), tv(&email));
            doc.traits.insert("phone".into(), tv(&phone));
            doc.traits.insert("first_name".into(), tv("Camille"));
            doc.consents.insert("email".into(), consent(i % 10 < 8));
            doc.consents.insert("sms".into(), consent(i % 10 < 4));
            doc.channels.insert("crm".into());
            let item = Item::Profile(ProfileItem { profile_id: pid.clone(), component: format!("c{i}"), doc, merged_from: vec![] });
            let put = PutRequest::builder().set_item(Some(to_attributes(&Key::profile(pid), 1, &item))).build()?;
            writes.push(WriteRequest::builder().put_request(put).build());
        }
        stack.clients.dynamodb.batch_write_item().request_items(&table, writes).send().await?;
    }

    let secret = {
        let sm = aws_sdk_secretsmanager::Client::new(&stack.clients.config);
        sm.get_secret_value()
            .secret_id(stack.manifest.output("WebhookSigningSecretArn")?)
            .send()
            .await?
            .secret_string()
            .unwrap_or_default()
            .as_bytes()
            .to_vec()
    };
    let clients = ariane_shared::aws::Clients::from_env(&env).await;
    let rules = ariane_activate::rules::Rules::embedded()?;
    let campaigns = ariane_activate::campaign::Campaign::library()?;
    let tuesday = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")?.with_timezone(&Utc);
    let activate = Activate::new(clients, ActivateConfig::from_env(&env)?, rules, campaigns, secret, Clock::manual(tuesday))?;

    let messages: Vec<SqsMessage> = ids
        .iter()
        .map(|pid| {
            let r = ActivationRequest {
                segment: "reactivation".into(),
                run_id: "20261124T090000Z".into(),
                run_at: tuesday,
                profile_id: pid.clone(),
                change: SegmentChange::Entered,
                key: Default::default(),
                payload: [("order_count".to_string(), "3".to_string())].into_iter().collect(),
                attributes: Default::default(),
            };
            let mut m = SqsMessage::default();
            m.message_id = Some(pid.clone());
            m.body = Some(serde_json::to_string(&r).expect("JSON"));
            m
        })
        .collect();

    println!(
        "activation bench: {entries} reactivation entries, batches of 10, {concurrency} batch(es) at a time (1 = one Lambda instance), moto at {}",
        stack.manifest.endpoint
    );
    println!();
    println!("| pass | entries | seconds | entries/s | sent | DynamoDB reads/entry | writes/entry | RRU/entry | WRU/entry | conflicts | SQS req/entry | S3 PUT/entry | POST/entry |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut first_cost = None;
    for pass in ["first delivery", "redelivery (all duplicates)"] {
        let before = snapshot(&activate);
        let sent_before = receiver.deliveries().len();
        let started = Instant::now();
        let batches: Vec<Vec<SqsMessage>> = messages.chunks(10).map(<[SqsMessage]>::to_vec).collect();
        let mut failed = 0;
        for group in batches.chunks(concurrency) {
            let runs = group.iter().map(|b| {
                let mut event = SqsEvent::default();
                event.records = b.clone();
                activate.handle(event)
            });
            for r in futures::future::join_all(runs).await {
                failed += r.batch_item_failures.len();
            }
        }
        let secs = started.elapsed().as_secs_f64();
        let after = snapshot(&activate);
        let n = entries as f64;
        let per = |a: u64, b: u64| (a - b) as f64 / n;
        let sent = receiver.deliveries().len() - sent_before;
        // Lambda's own polling: one ReceiveMessage and one DeleteMessageBatch per batch.
        let sqs = per(after.sqs, before.sqs) + 0.2;
        println!(
            "| {pass} | {entries} | {secs:.2} | {:.0} | {sent} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {:.2} |",
            n / secs,
            per(after.reads, before.reads),
            per(after.writes, before.writes),
            per(after.rru, before.rru),
            per(after.wru, before.wru),
            after.conflicts - before.conflicts,
            sqs,
            per(after.s3, before.s3),
            per(after.posts, before.posts),
        );
        assert_eq!(failed, 0, "{pass}: {failed} messages failed");
        let cost = per(after.wru, before.wru) * PRICE_WRU
            + per(after.rru, before.rru) * PRICE_RRU
            + sqs * PRICE_SQS_REQUEST
            + per(after.s3, before.s3) * PRICE_S3_PUT
            + (secs / n) * MEMORY_GB * PRICE_LAMBDA_GB_S
            + PRICE_LAMBDA_REQUEST / 10.0;
        if first_cost.is_none() {
            first_cost = Some((cost, secs / n));
        } else {
            assert_eq!(sent, 0, "a redelivery sends nothing");
            println!();
            let (first, per_entry_s) = first_cost.unwrap_or_default();
            println!(
                "cost per million entries at list prices (DynamoDB on demand $0.625/M WRU, $0.125/M RRU; SQS $0.40/M; S3 PUT $5/M; Lambda arm64 256 MB at the measured {:.1} ms per entry): first delivery ${:.2}, redelivery ${:.2}",
                per_entry_s * 1000.0,
                first * 1e6,
                cost * 1e6
            );
        }
    }
    Ok(())
}
