//! Real time: the collector's events per second for one instance, and the time from the
//! collector's response to the campaign decision after the wait. A bench binary that
//! prints a table; figures go to BENCHMARKS.md and bench/results.json.
//!
//! ```text
//! cargo bench -p ariane-local --bench realtime                       # 10 s load, 200 shoppers
//! cargo bench -p ariane-local --bench realtime -- --seconds 20 --shoppers 500 --batch 500 --calls 5000
//! ```
//!
//! 1. **Collector, one instance.** The collector's handler behind its local HTTP front on
//!    127.0.0.1 (hyper, HTTP/1.1 keep-alive), one client posting batches of `--batch`
//!    events back to back for `--seconds`: a Lambda instance serves one request at a
//!    time, so this is one instance's throughput (the queue is in memory: what is measured
//!    is the function, not SQS). Bounded: the load stops after `--seconds`. Then the same
//!    requests through the local stack (the template's route, the runner, moto's SQS).
//! 2. **Decision after the wait**, on the real clock. `--shoppers` sessions (identify with
//!    e-mail consent, add-to-cart) posted to the local stack's collector, their carts
//!    dated so that the 30-minute timers fall due over 3 minutes starting `--margin`
//!    seconds (40) after the post; the pipeline runs (micro-batches, ingest, identity,
//!    activation's timers); then the every-minute release fires on the wall clock's minute
//!    boundaries while the activation queue is polled all along. Each tick sends the timers
//!    due within the next minute ahead with an SQS delay (moto holds them). Each
//!    decision's latency after the wait is its `decided_at` (activation's clock when it
//!    decided) minus its due time.
//! 3. **Profile API in the handler.** The segments run on the same stack (every shopper
//!    enters `abandoned-cart`), then the profile API's handler, built from its deployed
//!    configuration, answers `--calls` requests by cookie, one after the other, each
//!    timed from the request to the answer: the key check, the identifier's hash, the
//!    identifier item and the memberships item read from moto's DynamoDB over HTTP, the
//!    JSON. The same handler over the in-memory directory gives its own cost without I/O.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ariane_activate::handler::Clock;
use ariane_collect::{CollectConfig, CollectorWith, SourceConfig};
use ariane_local::activation::final_outcomes;
use ariane_local::gateway::HttpCall;
use ariane_local::receiver::Receiver;
use ariane_local::stack::{LOCAL_ORIGIN, LOCAL_PROFILE_KEY, LOCAL_WRITE_KEY};
use ariane_local::LocalStack;
use ariane_profile_api::{ApiClient, Authenticator, HttpRequest, MemDirectory, ProfileApi, ProfileDirectory};
use ariane_shared::adapters::memory::{MemBlobs, MemQueue};
use ariane_shared::identifiers::IdentifierKind;
use ariane_shared::memberships::{Membership, Memberships};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, DurationRound, Timelike, Utc};
use serde_json::{json, Value};

fn flag(args: &[String], name: &str) -> Option<u64> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.replace('_', "").parse().ok())
}

fn basic(key: &str) -> String {
    format!("Basic {}", ariane_collect::api::base64_encode(format!("{key}:").as_bytes()))
}

/// `n` storefront events (page views and add-to-carts of consenting visitors), as a
/// site's SDK batches them.
fn batch(n: usize, seq: u64, now: DateTime<Utc>, personalisation: bool) -> Value {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            let id = format!("b{seq}-{i}");
            let cookie = format!("ck-{}", (seq as usize * n + i) % 5_000);
            if i % 4 == 3 {
                json!({ "type": "track", "event": "Product Added", "messageId": id, "anonymousId": cookie, "timestamp": now.to_rfc3339(),
                        "properties": { "sku": format!("SKU-{}", i % 97), "name": "Parka", "price": 129.0, "currency": "EUR", "quantity": 1 },
                        "context": { "consent": { "personalization": personalisation } } })
            } else {
                json!({ "type": "page", "messageId": id, "anonymousId": cookie, "timestamp": now.to_rfc3339(),
                        "context": { "consent": { "personalization": personalisation && i % 5 != 0 }, "page": { "url": "https://shop.example/p/parka?utm_source=nl" } } })
            }
        })
        .collect();
    json!({ "batch": events, "sentAt": now.to_rfc3339() })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

async fn collector_alone(seconds: u64, batch_size: usize) -> anyhow::Result<(f64, f64, f64, u64)> {
    let key = "bench-write-key";
    let config = CollectConfig {
        sources: vec![SourceConfig {
            source: "bench".into(),
            channel: "web".into(),
            key_sha256: ariane_shared::identifiers::sha256_hex_bytes(key.as_bytes()),
            origins: vec![],
        }],
        queue_url: "collect".into(),
        landing_bucket: "landing".into(),
    };
    let handler = Arc::new(CollectorWith::new(config, MemBlobs::new(), MemQueue::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/batch", listener.local_addr()?);
    let server = tokio::spawn(ariane_collect::local::serve(listener, handler.clone()));
    let client = reqwest::Client::builder().pool_max_idle_per_host(1).build()?;
    let now = Utc::now();
    let bodies: Vec<String> = (0..64).map(|s| batch(batch_size, s, now, true).to_string()).collect();
    let mut latencies = Vec::new();
    let (mut events, mut seq) = (0u64, 0usize);
    let start = Instant::now();
    while start.elapsed().as_secs() < seconds {
        let t = Instant::now();
        let r = client.post(&url).header("authorization", basic(key)).body(bodies[seq % bodies.len()].clone()).send().await?;
        let status = r.status();
        let _ = r.bytes().await?;
        anyhow::ensure!(status.as_u16() == 200, "the collector answered {status}");
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        events += batch_size as u64;
        seq += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    server.abort();
    latencies.sort_by(f64::total_cmp);
    Ok((events as f64 / elapsed, percentile(&latencies, 50.0), percentile(&latencies, 99.0), seq as u64))
}

/// `calls` profile API requests by cookie (cycling over the shoppers), one at a time:
/// p50 and p99 in ms, and the answers that list a cart.
async fn profile_calls<D: ProfileDirectory>(api: &ProfileApi<D>, calls: usize, shoppers: usize) -> anyhow::Result<(f64, f64, usize)> {
    let mut latencies = Vec::with_capacity(calls);
    let mut carts = 0;
    for i in 0..calls {
        let req = HttpRequest::new("GET", LocalStack::PROFILE_PATH, &format!("cookie_id=sc-{}", i % shoppers.max(1)))
            .with_header("x-api-key", LOCAL_PROFILE_KEY);
        let t = Instant::now();
        let answer = api.handle(&req).await;
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(answer.status_code == 200, "the profile API answered {}: {}", answer.status_code, answer.body);
        if answer.body_json()["attributes"]["cart_items"].as_array().is_some_and(|a| !a.is_empty()) {
            carts += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok((percentile(&latencies, 50.0), percentile(&latencies, 99.0), carts))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    std::env::set_var("ARIANE_METRICS", "off");
    let args: Vec<String> = std::env::args().collect();
    let seconds = flag(&args, "--seconds").unwrap_or(10);
    let batch_size = flag(&args, "--batch").unwrap_or(500) as usize;
    let shoppers = flag(&args, "--shoppers").unwrap_or(200) as usize;
    let calls = flag(&args, "--calls").unwrap_or(2000) as usize;

    // 1. One instance, in memory behind HTTP on 127.0.0.1.
    let (per_s, p50, p99, requests) = collector_alone(seconds, batch_size).await?;
    println!("collector, one instance (handler + HTTP on 127.0.0.1, in-memory queue), {batch_size}-event batches for {seconds} s:");
    println!("  {requests} requests, {per_s:.0} events/s, request p50 {p50:.2} ms, p99 {p99:.2} ms");

    // The local stack.
    let receiver = Receiver::start().await?;
    let stack = LocalStack::start("rtbench", &receiver.destination_params()).await?;
    let mut runner = stack.in_process_runner().await?;
    let now = Utc::now();
    let post = |body: Value| {
        HttpCall::new("POST", LocalStack::COLLECT_PATH)
            .header("authorization", &basic(LOCAL_WRITE_KEY))
            .header("origin", LOCAL_ORIGIN)
            .json(&body)
    };
    let mut stack_latencies = Vec::new();
    let t = Instant::now();
    let stack_requests = 20;
    for s in 0..stack_requests {
        let r0 = Instant::now();
        // Without consent: aggregate events only, so these carts start no timer and do
        // not weigh on the decisions measured below.
        let r = runner.http(&post(batch(batch_size, 10_000 + s, now, false))).await?;
        anyhow::ensure!(r.status == 200, "the local stack's collector answered {}", r.status);
        stack_latencies.push(r0.elapsed().as_secs_f64() * 1000.0);
    }
    let stack_per_s = (stack_requests as usize * batch_size) as f64 / t.elapsed().as_secs_f64();
    stack_latencies.sort_by(f64::total_cmp);
    println!(
        "collector through the local stack (route, runner, moto's SQS), {stack_requests} requests: {stack_per_s:.0} events/s, p50 {:.1} ms, p99 {:.1} ms",
        percentile(&stack_latencies, 50.0),
        percentile(&stack_latencies, 99.0)
    );
    // Activation on the real clock from here: its timers are held by moto's SQS delays.
    runner.set_activate_clock(&Clock::System);
    runner.drain().await?;

    // 2. Decision after the wait. The carts are dated so that their 30-minute timers fall
    // due over 3 minutes, starting `--margin` seconds from now (time for the pipeline).
    let margin = flag(&args, "--margin").unwrap_or(40) as i64;
    let first_due = Utc::now().with_nanosecond(0).unwrap_or(now) + Duration::seconds(margin);
    let mut due: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut events = Vec::new();
    for i in 0..shoppers {
        let due_at = first_due + Duration::milliseconds((i as i64 * 180_000) / shoppers.max(1) as i64);
        let at = due_at - Duration::minutes(30);
        let email = format!("shopper{i}@bench.example");
        let consent = json!({ "personalization": true, "email": true });
        events.push(json!({ "type": "identify", "messageId": format!("s{i}-1"), "anonymousId": format!("sc-{i}"),
                             "traits": { "email": email }, "timestamp": at.to_rfc3339(), "context": { "consent": consent } }));
        events.push(json!({ "type": "track", "event": "add_to_cart", "messageId": format!("s{i}-2"), "anonymousId": format!("sc-{i}"),
                             "timestamp": at.to_rfc3339(), "properties": { "sku": "SKU-1", "name": "Parka" }, "context": { "consent": consent } }));
        due.insert(email, due_at);
    }
    for chunk in events.chunks(batch_size.max(2) & !1) {
        let r = runner.http(&post(json!({ "batch": chunk }))).await?;
        anyhow::ensure!(r.status == 200, "the local stack's collector answered {}", r.status);
    }
    let pipeline = Instant::now();
    let drained = runner.drain().await?;
    println!(
        "pipeline from the collector to the timers: {:.1} s wall ({} invocations, {} failures); first timer due in {:.1} s",
        pipeline.elapsed().as_secs_f64(),
        drained.invocations,
        drained.failures,
        (first_due - Utc::now()).num_milliseconds() as f64 / 1000.0
    );
    let last_due = due.values().max().copied().unwrap_or(first_due);
    // The release fires on the wall clock's minute boundaries (EventBridge's
    // `rate(1 minute)`) while the activation queue is polled all along (the event source
    // mapping), as in AWS where the schedule and the consumer run independently.
    let ticking = AtomicBool::new(true);
    let ticker = async {
        let mut ticks: Vec<(DateTime<Utc>, u64, u64, f64)> = Vec::new();
        loop {
            let next = Utc::now().duration_trunc(Duration::minutes(1))? + Duration::minutes(1);
            tokio::time::sleep((next - Utc::now()).to_std().unwrap_or_default()).await;
            let w = Instant::now();
            let summary = runner.fire_schedule(Some("ActivateFunction"), next).await?;
            let count = |k: &str| summary[k].as_u64().unwrap_or(0);
            ticks.push((next, count("released"), count("ahead"), w.elapsed().as_secs_f64()));
            if next > last_due {
                break;
            }
        }
        ticking.store(false, Ordering::SeqCst);
        anyhow::Ok(ticks)
    };
    let poller = async {
        while ticking.load(Ordering::SeqCst) {
            runner.drain().await?;
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        runner.drain().await
    };
    let (ticks, polled) = tokio::join!(ticker, poller);
    let (ticks, _) = (ticks?, polled?);
    let tick = ticks.last().map(|t| t.0).unwrap_or(last_due);
    let mut latencies = Vec::new();
    let records = final_outcomes(&stack.activation_records().await?);
    for r in records.iter().filter(|r| r.campaign == "cart-reminder") {
        let email = stack.profile_attribute(&r.profile_id, "email").await?.unwrap_or_default();
        let Some(d) = due.get(&email) else { continue };
        latencies.push((r.decided_at - *d).num_milliseconds() as f64 / 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let sent = records.iter().filter(|r| r.campaign == "cart-reminder" && r.outcome == "sent").count();
    println!(
        "decision after the 30-minute wait, {} of {shoppers} shoppers decided ({sent} sent, the rest held out): min {:.2} s, p50 {:.2} s, p99 {:.2} s, max {:.2} s after the due time",
        latencies.len(),
        latencies.first().copied().unwrap_or(f64::NAN),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    let shown: Vec<String> = ticks
        .iter()
        .map(|(t, released, ahead, w)| format!("{} released {released} ({ahead} ahead) in {w:.2} s", t.format("%H:%M")))
        .collect();
    println!("  release ticks: {}", shown.join("; "));
    anyhow::ensure!(latencies.first().is_none_or(|l| *l >= 0.0), "a decision came before its due time");

    // 3. The profile API, after the segments run.
    let rule = stack.manifest.schedules.iter().find(|s| s.state_machine.as_deref() == Some("SegmentsStateMachine"));
    let rule = rule.ok_or_else(|| anyhow::anyhow!("no segments schedule"))?;
    let run = ariane_local::runner::scheduled_event(&stack.manifest, &rule.rule_arn, tick);
    runner.execute_state_machine("SegmentsStateMachine", run).await?;
    let api = ProfileApi::from_env(&stack.manifest.function_env("ProfileApiFunction")?).await?;
    let (api_p50, api_p99, carts) = profile_calls(&api, calls, shoppers).await?;
    println!(
        "profile API in the handler against moto's DynamoDB, {calls} calls by cookie: p50 {api_p50:.2} ms, p99 {api_p99:.2} ms ({carts} answers with a cart)"
    );
    anyhow::ensure!(carts == calls, "every shopper's answer has the cart: {carts} of {calls}");
    let mem = MemDirectory::new();
    let key = ariane_shared::identifiers::sha256_hex_bytes(LOCAL_PROFILE_KEY.as_bytes());
    let clients = [ApiClient { client: "bench".into(), key_sha256: key, origins: vec![] }];
    for i in 0..shoppers {
        let cookie = format!("sc-{i}");
        let hash = ariane_shared::identifiers::identifier_hash(IdentifierKind::CookieId, &cookie);
        let pid = format!("p-{i}");
        mem.put(std::collections::HashMap::from([
            ("pk".to_string(), AttributeValue::S(ariane_profile_api::directory::id_pk(IdentifierKind::CookieId, &hash))),
            ("sk".to_string(), AttributeValue::S("ID".into())),
            ("profile_id".to_string(), AttributeValue::S(pid.clone())),
        ]));
        let cart = Membership {
            segment: "abandoned-cart".into(),
            key: Default::default(),
            since: tick.to_rfc3339(),
            run_id: "bench".into(),
            payload: [("items".to_string(), "SKU-1".to_string()), ("cart_at".to_string(), tick.to_rfc3339())].into(),
        };
        mem.put(
            Memberships {
                profile_id: pid,
                last_run: Some("bench".into()),
                segments: [(cart.entry_name(), cart)].into(),
                ..Default::default()
            }
            .to_item(),
        );
    }
    let in_memory = ProfileApi::new(mem, Authenticator::new(&clients, b"bench-token-secret-of-32-bytes-at-least".to_vec()));
    let (mem_p50, mem_p99, _) = profile_calls(&in_memory, calls, shoppers).await?;
    println!("profile API in the handler, in-memory directory (no I/O): p50 {:.1} us, p99 {:.1} us", mem_p50 * 1000.0, mem_p99 * 1000.0);
    println!();
    println!("| measure | value | target |");
    println!("|---|---|---|");
    println!("| collector events/s, one instance | {per_s:.0} | >= 5,000 |");
    println!("| collector request p99 ({batch_size} events) | {p99:.2} ms | |");
    println!("| decision after the wait, p99 | wait + {:.1} s | wait + 60 s |", percentile(&latencies, 99.0));
    println!("| profile API p99 in the handler (2 GetItems on moto) | {api_p99:.2} ms | <= 50 ms |");
    anyhow::ensure!(latencies.len() == shoppers, "every shopper is decided once: {} of {shoppers}", latencies.len());
    Ok(())
}
