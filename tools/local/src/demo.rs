//! `ariane-local demo`: the whole pipeline on generated data against a local stack, with a
//! readable summary checked against the generator's ground truth.
//!
//! Timeline (UTC; T0 is today 00:00): the seven channels' exports and the spend file
//! (`costs/`, what each channel cost a day over the 120 days before T0) are ingested; segments
//! run at T0; activation decides at T0 + 21 h (22:00 in Paris: SMS and push are in quiet
//! hours and deferred); the release schedule fires the next morning at 08:00 Paris time
//! (and every morning after while deferrals remain: Sundays and holidays); the same
//! export is re-uploaded and segments run at T0 + 1 day; follow-up orders are generated
//! for the people the campaigns decided on (contacted people buy more often than the
//! holdout) and ingested; segments run at T0 + 8 days and the campaign report counts the
//! conversions, which must equal what was planted. Last, one contacted customer asks to be
//! forgotten: identity erases them, the purge rewrites the exports, the lake and the
//! audiences, and a sweep of both buckets finds their e-mail nowhere. Last, the daily
//! measures run at T0 + 9 days and the HTML report is copied to `.local/report/index.html`;
//! the spend it measured must equal the generator's spend of the period.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{bail, Context};
use ariane_activate::handler::Clock;
use ariane_datagen::{
    expected_reactivation_all_purchases, read_channel_truth, read_truth, write_ecommerce_orders, GenConfig, ORDERS_HEADER,
};
use ariane_ingest::pipeline::LedgerStatus;
use ariane_local::activation::final_outcomes;
use ariane_local::receiver::Receiver;
use ariane_local::runner::queue_depth;
use ariane_local::LocalStack;
use ariane_shared::identifiers::stable_id;
use ariane_shared::lake::ActivationRecord;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

/// `ariane-local demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Customers to generate (each with exports in the seven channels)
    #[arg(long, default_value_t = 1000)]
    pub persons: usize,
    /// The generator's seed (the same seed gives the same data and the same summary)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// The demo's steps, each with a spinner showing what it is doing and, while queues
/// drain, how many messages the functions handled (hidden when stderr is not a terminal:
/// then one line per step).
struct Step {
    n: usize,
    total: usize,
    started: Instant,
    bar: ProgressBar,
}

impl Step {
    fn new(total: usize) -> Step {
        Step { n: 0, total, started: Instant::now(), bar: ProgressBar::hidden() }
    }

    fn start(&mut self, what: &str) {
        self.n += 1;
        self.started = Instant::now();
        let line = format!("[{}/{}] {what}", self.n, self.total);
        self.bar = ProgressBar::new_spinner();
        self.bar.set_style(ProgressStyle::with_template("{spinner} {prefix} {elapsed} {msg}").expect("a valid template"));
        self.bar.enable_steady_tick(std::time::Duration::from_millis(120));
        if self.bar.is_hidden() {
            eprintln!("{line} ...");
        } else {
            self.bar.println(format!("{line} ..."));
        }
    }

    /// A live count for the spinner: the runner calls it after every invocation.
    fn progress(&self) -> ariane_local::runner::ProgressHook {
        let bar = self.bar.clone();
        std::sync::Arc::new(move |function: &str, messages: u64| bar.set_message(format!("{messages} messages handled (last: {function})")))
    }

    fn done(&self, detail: &str) {
        self.bar.finish_and_clear();
        eprintln!(
            "      done in {:.1}s{}",
            self.started.elapsed().as_secs_f64(),
            if detail.is_empty() { String::new() } else { format!(": {detail}") }
        );
    }
}

/// What the demo's erasure did.
struct Erasure {
    profile_id: String,
    resolves: bool,
    removed: serde_json::Map<String, Value>,
    /// Objects (landing or lake) where the e-mail or its keyed hash is still found.
    left: Vec<String>,
}

/// Erases the first customer an e-mail was delivered to, runs the purge, and looks for
/// the e-mail (as typed, any case) and its keyed hash in every object of both buckets.
async fn erase_one<S: ariane_identity::store::ItemStore>(
    stack: &LocalStack,
    runner: &ariane_local::runner::Runner,
    resolver: &ariane_identity::resolver::Resolver<S>,
    deliveries: &[ariane_local::receiver::Delivery],
    at: DateTime<Utc>,
) -> anyhow::Result<Option<Erasure>> {
    use ariane_shared::identifiers::{identifier_hash, Identifier, IdentifierKind};
    // The first e-mail delivered to that identifies a person (a shared family e-mail
    // identifies no one: its erasure is another case, tests/erasure.rs).
    let mut chosen = None;
    for email in deliveries.iter().filter_map(|d| d.body["to"]["email"].as_str()).map(str::to_lowercase) {
        let id = Identifier::new(IdentifierKind::Email, email.clone());
        if let Some(profile_id) = resolver.lookup(&id).await? {
            chosen = Some((email, id, profile_id));
            break;
        }
    }
    let Some((email, id, profile_id)) = chosen else { return Ok(None) };
    let body = serde_json::json!({ "erase": { "kind": "email", "value": email } }).to_string();
    stack.clients.sqs.send_message().queue_url(stack.manifest.output("IdentityQueueUrl")?).message_body(body).send().await?;
    runner.drain().await?;
    let purge = runner.fire_schedule(Some("PurgeFunction"), at).await?;
    runner.drain().await?;
    let hash = identifier_hash(IdentifierKind::Email, &email);
    let mut left = Vec::new();
    for (bucket, keys) in [
        (stack.landing_bucket(), ariane_local::stack::list_keys(&stack.clients.s3, stack.landing_bucket(), "").await?),
        (stack.lake_bucket(), ariane_local::stack::list_keys(&stack.clients.s3, stack.lake_bucket(), "").await?),
    ] {
        for key in keys.iter().filter(|k| !k.starts_with("reports/erasures/")) {
            let bytes = stack.clients.s3.get_object().bucket(bucket).key(key).send().await?.body.collect().await?.into_bytes();
            let text = if key.ends_with(".parquet") {
                let batches = ariane_shared::lake::read_parquet_bytes(bytes)?;
                let mut all = String::new();
                for b in &batches {
                    for c in b.columns() {
                        if let Some(a) = c.as_any().downcast_ref::<arrow::array::StringArray>() {
                            use arrow::array::Array;
                            (0..a.len()).filter(|i| !a.is_null(*i)).for_each(|i| all.push_str(a.value(i)));
                        }
                    }
                }
                all
            } else if bytes.starts_with(&[0x1f, 0x8b]) {
                let mut out = String::new();
                std::io::Read::read_to_string(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut out)?;
                out
            } else {
                String::from_utf8_lossy(&bytes).into_owned()
            };
            if text.to_lowercase().contains(&email) || text.contains(&hash) {
                left.push(format!("s3://{bucket}/{key}"));
            }
        }
    }
    let resolves = resolver.lookup(&id).await?.is_some();
    Ok(Some(Erasure { profile_id, resolves, removed: purge["removed"].as_object().cloned().unwrap_or_default(), left }))
}

/// A deterministic draw in [0, 1) from `parts`.
fn draw(parts: &[&str]) -> f64 {
    let h = stable_id(parts);
    u64::from_str_radix(&h[..12], 16).unwrap_or(0) as f64 / (1u64 << 48) as f64
}

/// Share of people who buy within the conversion window, by whether a campaign reached
/// them (the planted lift).
const BUY_IF_CONTACTED: f64 = 0.35;
const BUY_OTHERWISE: f64 = 0.15;

/// The follow-up orders: one per converting profile, after its latest decision and inside
/// every window (all windows are at least 7 days). Returns (CSV, profile → order instant).
async fn followup_orders<S: ariane_identity::store::ItemStore>(
    stack: &LocalStack,
    resolver: &ariane_identity::resolver::Resolver<S>,
    decisions: &[ActivationRecord],
) -> anyhow::Result<(Vec<u8>, BTreeMap<String, DateTime<Utc>>)> {
    let mut by_profile: BTreeMap<&str, (bool, DateTime<Utc>)> = BTreeMap::new();
    for d in decisions.iter().filter(|d| d.outcome != "audience_removed" && d.outcome != "deferred") {
        let e = by_profile.entry(&d.profile_id).or_insert((false, d.decided_at));
        e.0 |= matches!(d.outcome.as_str(), "sent" | "audience_added");
        e.1 = e.1.max(d.decided_at);
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(ORDERS_HEADER)?;
    let mut planted = BTreeMap::new();
    for (i, (pid, (contacted, latest))) in by_profile.into_iter().enumerate() {
        let p = if contacted { BUY_IF_CONTACTED } else { BUY_OTHERWISE };
        if draw(&["buys", pid]) >= p {
            continue;
        }
        let Some(email) = stack.profile_attribute(pid, "email").await? else { continue };
        // Only where the e-mail identifies this profile (not a family's shared address,
        // which links nothing): the order is then this person's.
        let id = ariane_shared::identifiers::Identifier::new(ariane_shared::identifiers::IdentifierKind::Email, &email);
        if resolver.lookup(&id).await?.as_deref() != Some(pid) {
            continue;
        }
        let at = latest + Duration::hours(20 + (draw(&["when", pid]) * 72.0) as i64);
        let at = at.with_timezone(&Utc);
        let row: Vec<String> = vec![
            format!("#F{:06}", i + 1),
            email,
            String::new(),
            String::new(),
            at.format("%Y-%m-%d %H:%M:%S +0000").to_string(),
            "EUR".into(),
            "39.90".into(),
            "0.00".into(),
            "39.90".into(),
            "1".into(),
            "Carte cadeau".into(),
            "39.90".into(),
            "SKU-GIFT-00001".into(),
            "accessoires".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ];
        csv.write_record(&row)?;
        planted.insert(pid.to_string(), at);
    }
    Ok((csv.into_inner()?, planted))
}

/// One activation entry: its group, person, first decision and conversion window end.
type Entry<'a> = (&'a str, &'a str, DateTime<Utc>, DateTime<Utc>);

/// What the report must say, from the decisions and the planted orders: per campaign,
/// (treated entries, treated converted, holdout entries, holdout converted).
fn expected_conversions(
    decisions: &[ActivationRecord],
    planted: &BTreeMap<String, DateTime<Utc>>,
) -> BTreeMap<String, (u64, u64, u64, u64)> {
    let mut entries: BTreeMap<(&str, &str), Entry> = BTreeMap::new();
    for d in decisions.iter().filter(|d| d.outcome != "audience_removed") {
        let e = entries.entry((&d.campaign, &d.activation_key)).or_insert((&d.group, &d.profile_id, d.decided_at, d.conversion_until));
        e.2 = e.2.min(d.decided_at);
        e.3 = e.3.max(d.conversion_until);
    }
    let mut out: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    for ((campaign, _), (group, pid, from, until)) in entries {
        let converted = planted.get(pid).is_some_and(|t| *t > from && *t <= until) as u64;
        let e = out.entry(campaign.to_string()).or_default();
        if group == "holdout" {
            e.2 += 1;
            e.3 += converted;
        } else {
            e.0 += 1;
            e.1 += converted;
        }
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// Releases deferred sends each morning at 08:00 Paris time until none is left (at most
/// five mornings). Returns the number released and the clock afterwards.
async fn release_mornings(
    runner: &ariane_local::runner::Runner,
    stack: &LocalStack,
    clock: &Clock,
    from: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let mut released = 0;
    let mut morning = (from + Duration::hours(24)).date_naive().and_hms_opt(7, 0, 0).expect("07:00").and_utc();
    for _ in 0..5 {
        clock.set(morning);
        let r = runner.fire_schedule(Some("ActivateFunction"), morning).await?;
        released += r["released"].as_u64().unwrap_or(0) as usize;
        runner.drain().await?;
        if pending_deferrals(stack).await? == 0 {
            break;
        }
        morning += Duration::days(1);
    }
    Ok(released)
}

/// A visitor's session posted to the collector as a website would (identify with e-mail
/// consent, a page view, an add-to-cart), through the pipeline on the real clock, then
/// one tick of the every-minute release: what became of the cart reminder. The demo does
/// not wait half an hour: the session is dated so that the reminder's 30-minute timer is
/// due [`REALTIME_DUE_IN_S`] seconds after the post; the tick sends it ahead with an SQS
/// delay of the time left (moto holds the message), and the decision comes at its due
/// second, without another tick.
async fn realtime_session(
    runner: &mut ariane_local::runner::Runner,
    stack: &LocalStack,
    receiver: &Receiver,
    clock: &Clock,
) -> anyhow::Result<String> {
    runner.set_activate_clock(&Clock::System);
    let result = realtime_session_now(runner, stack, receiver).await;
    runner.set_activate_clock(clock);
    result
}

/// How long after the demo's post its cart reminder is due.
const REALTIME_DUE_IN_S: i64 = 25;

async fn realtime_session_now(runner: &ariane_local::runner::Runner, stack: &LocalStack, receiver: &Receiver) -> anyhow::Result<String> {
    use ariane_local::gateway::HttpCall;
    use ariane_local::stack::{LOCAL_ORIGIN, LOCAL_WRITE_KEY};
    use chrono::Timelike;
    let posted = Utc::now().with_nanosecond(0).unwrap_or_else(Utc::now);
    let due = posted + Duration::seconds(REALTIME_DUE_IN_S);
    let at = due - Duration::minutes(30);
    let consent = serde_json::json!({ "personalization": true, "email": true });
    let session = serde_json::json!({ "batch": [
        { "type": "identify", "messageId": "demo-rt-1", "anonymousId": "ck-demo-rt", "userId": "C-DEMO-RT",
          "traits": { "email": "camille.demo@example.fr" }, "timestamp": at.to_rfc3339(), "context": { "consent": consent } },
        { "type": "page", "messageId": "demo-rt-2", "anonymousId": "ck-demo-rt", "timestamp": at.to_rfc3339(),
          "context": { "consent": consent, "page": { "url": "https://shop.example/p/parka?utm_source=newsletter" } } },
        { "type": "track", "event": "Product Added", "messageId": "demo-rt-3", "anonymousId": "ck-demo-rt", "timestamp": at.to_rfc3339(),
          "properties": { "sku": "SKU-PARKA", "name": "Parka", "price": 129.0, "currency": "EUR", "quantity": 1 },
          "context": { "consent": consent } },
    ]});
    let basic = format!("Basic {}", ariane_collect::api::base64_encode(format!("{LOCAL_WRITE_KEY}:").as_bytes()));
    let call =
        HttpCall::new("POST", LocalStack::COLLECT_PATH).header("authorization", &basic).header("origin", LOCAL_ORIGIN).json(&session);
    let answer = runner.http(&call).await?;
    if answer.status != 200 {
        bail!("the collector answered {}: {}", answer.status, String::from_utf8_lossy(&answer.body));
    }
    runner.drain().await?;
    let camille = stack.profile_id_by_email("camille.demo@example.fr").await?.context("the session's visitor has a profile")?;
    let before = receiver.deliveries().len();
    let tick = Utc::now();
    let release = runner.fire_schedule(Some("ActivateFunction"), tick).await?;
    let ahead = release["ahead"].as_u64().unwrap_or(0);
    // The drain waits for the delayed message.
    runner.drain().await?;
    let decision =
        final_outcomes(&stack.activation_records().await?).into_iter().find(|r| r.campaign == "cart-reminder" && r.profile_id == camille);
    let sent: Vec<_> = receiver
        .deliveries()
        .into_iter()
        .skip(before)
        .filter(|d| d.body["campaign"] == "cart-reminder" && d.body["profile_id"] == camille.as_str())
        .collect();
    let timer = if ahead > 0 {
        format!(
            "the release at {} sent the timer ahead, {:.0} s before its due time",
            tick.format("%H:%M:%S"),
            (due - tick).num_milliseconds() as f64 / 1000.0
        )
    } else {
        format!(
            "the pipeline took longer than {REALTIME_DUE_IN_S} s, so the release at {} found the timer already due",
            tick.format("%H:%M:%S")
        )
    };
    let after = |d: &ariane_shared::lake::ActivationRecord| (d.decided_at - due).num_milliseconds() as f64 / 1000.0;
    Ok(match (decision, sent.first()) {
        (Some(r), Some(d)) => format!(
            "3 events accepted (200), the add-to-cart dated 29 min {} s ago; {timer}; cart-reminder decided {:.1} s after its due time and sent once to {} ({}, template {}, product {})",
            60 - REALTIME_DUE_IN_S,
            after(&r),
            d.destination, d.body["to"]["email"].as_str().unwrap_or("?"), d.body["template"].as_str().unwrap_or("?"), d.body["payload"]["product_name"].as_str().unwrap_or("?")
        ),
        (Some(r), None) => format!("3 events accepted (200); {timer}; cart-reminder decided {:.1} s after its due time: {} ({}), no message", after(&r), r.outcome, r.reason.as_deref().unwrap_or("10 % holdout")),
        (None, _) => format!("3 events accepted (200); {timer}; no cart-reminder decision: see the activation logs"),
    })
}

async fn pending_deferrals(stack: &LocalStack) -> anyhow::Result<usize> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let table = stack.manifest.output("ActivationLedgerTableName")?;
    let out = stack
        .clients
        .dynamodb
        .scan()
        .table_name(table)
        .filter_expression("begins_with(pk, :d)")
        .expression_attribute_values(":d", AttributeValue::S("DEFER#".into()))
        .send()
        .await?;
    Ok(out.count() as usize)
}

pub async fn demo(args: &DemoArgs) -> anyhow::Result<()> {
    std::env::set_var("ARIANE_METRICS", "off");
    let (persons, seed) = (args.persons, args.seed);
    let now = Utc::now().date_naive().and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let mut step = Step::new(13);

    step.start("starting moto and deploying infra/template.yaml (stage demo)");
    let receiver = Receiver::start().await?;
    let stack = LocalStack::start("demo", &receiver.destination_params()).await?;
    let mut runner = stack.in_process_runner().await?;
    let clock = Clock::manual(now);
    runner.set_activate_clock(&clock);
    step.done(&format!(
        "{} at {}, destinations at {}/<esp|sms-gateway|push-provider>",
        stack.manifest.stack_name, stack.manifest.endpoint, receiver.url
    ));

    step.start(&format!("generating the exports of all seven channels for {persons} customers and the spend file (seed {seed})"));
    let cfg = GenConfig::new(seed, persons, now);
    let data_dir = tempfile::tempdir()?;
    let summary = ariane_datagen::write_channels_dir(&cfg, data_dir.path())?;
    let mut costs_csv = Vec::new();
    let costs = ariane_datagen::write_costs(&cfg, &mut costs_csv)?;
    let (mut orders_csv, mut truth_csv) = (Vec::new(), Vec::new());
    write_ecommerce_orders(&cfg, &mut orders_csv, &mut truth_csv)?;
    let truth = read_truth(&truth_csv[..])?;
    let rows: u64 = summary.exports.iter().map(|e| e.rows).sum();
    let malformed: u64 = summary.exports.iter().map(|e| e.malformed_rows).sum();
    step.done(&format!(
        "{} files, {rows} rows, {malformed} malformed rows planted; spend file: {} rows, {} malformed",
        summary.exports.len(),
        costs.rows,
        costs.malformed_rows
    ));

    let day = now.format("%Y-%m-%d").to_string();
    let key_of = |e: ariane_datagen::Export| format!("{}/{day}/{}", e.channel(), e.file_name());
    step.start(&format!(
        "uploading them to s3://{}/<channel>/{day}/ and running the landing router, the ingest instances (seven channels and costs) and identity",
        stack.landing_bucket()
    ));
    runner.progress = Some(step.progress());
    for e in &summary.exports {
        let body = std::fs::read(data_dir.path().join(e.export.channel()).join(e.export.file_name()))?;
        stack.upload(&key_of(e.export), body).await?;
    }
    let costs_key = format!("costs/{day}/spend.csv");
    stack.upload(&costs_key, costs_csv).await?;
    let drained = runner.drain().await?;
    step.done(&format!("{} messages handled", drained.messages));

    step.start("firing the segments schedule (run at today 00:00 UTC); activation decides at 22:00 Paris time");
    runner.progress = Some(step.progress());
    // The segments schedule starts SegmentsStateMachine: played here from the definition
    // moto holds, its buckets as separate invocations.
    let machine = "SegmentsStateMachine";
    let rule = stack.manifest.schedules.iter().find(|s| s.state_machine.as_deref() == Some(machine)).context("segments schedule")?;
    let execution =
        runner.execute_state_machine(machine, ariane_local::runner::scheduled_event(&stack.manifest, &rule.rule_arn, now)).await?;
    let run = execution.output.clone().map_err(|f| anyhow::anyhow!("{machine}: {f}"))?;
    let first_decided_at = now + Duration::hours(21);
    clock.set(first_decided_at);
    runner.drain().await?;
    let deferred_first = pending_deferrals(&stack).await?;
    step.done(&format!("{} sends, {deferred_first} deferred by quiet hours", receiver.deliveries().len()));

    step.start("releasing the deferred sends at 08:00 Paris time (each morning while some wait: Sundays, holidays)");
    runner.progress = Some(step.progress());
    let released = release_mornings(&runner, &stack, &clock, first_decided_at).await?;
    step.done(&format!("{released} released"));

    let key = key_of(ariane_datagen::Export::EcommerceOrders);
    step.start("re-uploading the same export and running the segments a day later (the upload must change nothing)");
    runner.progress = Some(step.progress());
    let events_before = stack.lake_keys("events/").await?;
    stack.upload(&key, orders_csv).await?;
    let again = runner.drain().await?;
    let events_after = stack.lake_keys("events/").await?;
    let next_run = runner.fire_schedule(None, now + Duration::days(1)).await?;
    clock.set(clock.now().max(now + Duration::days(1) + Duration::hours(9)));
    runner.drain().await?;
    release_mornings(&runner, &stack, &clock, clock.now()).await?;
    step.done("");

    step.start("generating follow-up orders (contacted people buy more often than the holdout) and ingesting them");
    runner.progress = Some(step.progress());
    let store = ariane_identity::store::DynamoStore {
        client: stack.clients.dynamodb.clone(),
        table: stack.manifest.output("ProfilesTableName")?.to_string(),
    };
    let resolver = ariane_identity::resolver::Resolver::new(store, ariane_identity::rules::Rules::embedded()?);
    let records_before_followup = stack.activation_records().await?;
    let (followup_csv, planted) = followup_orders(&stack, &resolver, &final_outcomes(&records_before_followup)).await?;
    let followup_day = (clock.now() + Duration::days(4)).format("%Y-%m-%d");
    stack.upload(&format!("ecommerce/{followup_day}/followup-orders.csv"), followup_csv).await?;
    runner.drain().await?;
    step.done(&format!("{} orders planted", planted.len()));

    // Before the week-later run: its decisions (and the report) include the send.
    step.start(&format!(
        "posting a browsing session to the collector (POST /v1/batch) whose 30-minute cart timer is due in {REALTIME_DUE_IN_S} s, and one tick of the every-minute release"
    ));
    runner.progress = Some(step.progress());
    let realtime = realtime_session(&mut runner, &stack, &receiver, &clock).await?;
    step.done(&realtime);

    step.start("running the segments a week later, with the campaign report");
    runner.progress = Some(step.progress());
    let report_at = now + Duration::days(8);
    let last_run = runner.fire_schedule(None, report_at).await?;
    let report = last_run["report"].clone();
    let report_records = stack.activation_records().await?;
    clock.set(report_at + Duration::hours(9));
    runner.drain().await?;
    release_mornings(&runner, &stack, &clock, clock.now()).await?;
    let decisions = final_outcomes(&stack.activation_records().await?);
    step.done("");

    step.start("reading the results back from S3, DynamoDB and the receiver");
    let mut ledger = Vec::new();
    for k in
        stack.lake_keys(ariane_shared::lake::ledger_prefix()).await?.into_iter().filter(|k| ariane_shared::lake::is_ledger_entry_key(k))
    {
        ledger.push(serde_json::from_slice::<ariane_ingest::pipeline::LedgerEntry>(&stack.lake_object(&k).await?)?);
    }
    let profiles = stack.profile_count().await?;
    let rules = ariane_identity::rules::Rules::embedded()?;
    let catalog = ariane_ingest::spec::Catalog::embedded()
        .map_err(|errors| anyhow::anyhow!("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
    let generated = ariane_local::quality::read_generated(data_dir.path(), &catalog, &rules)?;
    let identity_profiles = ariane_local::quality::profiles_of_rows(&resolver, &generated.rows).await?;
    let identity = ariane_local::quality::score(&generated.rows, &identity_profiles);
    let per_person =
        ariane_local::quality::person_quality(&generated.rows, &identity_profiles, Some(ariane_local::quality::Lapse::reactivation(now)));
    let mut merges = 0;
    for k in stack.lake_keys("identity/history/").await? {
        merges += ariane_local::quality::merge_records(&stack.lake_object(&k).await?)
            .with_context(|| format!("s3://{}/{k}", stack.lake_bucket()))?;
    }
    let persons_seen: BTreeSet<&str> = truth.iter().filter(|t| t.valid).map(|t| t.person_id.as_str()).collect();
    let mut channel_truths = Vec::new();
    for e in &summary.exports {
        let path = data_dir.path().join(e.export.channel()).join(e.export.truth_file_name());
        channel_truths.push((e.export, read_channel_truth(std::fs::File::open(&path)?)?));
    }
    // The reactivation campaign decided (sent, held out or suppressed) on exactly the
    // profiles the ground truth's purchases make lapsed customers, grouped as identity
    // grouped the rows (a person whose purchases identity holds in two profiles is two
    // customers to every segment). Against the persons themselves the difference is
    // counted, and must come only from such split purchase histories.
    let expected_persons = expected_reactivation_all_purchases(&cfg, &channel_truths, now)?;
    let row_profile: BTreeMap<(String, u64), (String, String)> = generated
        .rows
        .iter()
        .filter_map(|r| {
            identity_profiles.get(&r.identity_key).cloned().flatten().map(|p| ((r.source_key.clone(), r.line), (p, r.person.clone())))
        })
        .collect();
    let mut purchases: BTreeMap<&str, BTreeMap<(&str, &str), DateTime<Utc>>> = BTreeMap::new();
    for (export, rows) in &channel_truths {
        for t in rows.iter().filter(|t| t.valid && matches!(t.event_type.as_str(), "order_line" | "store_purchase" | "in_app_purchase")) {
            let Some((profile, _)) = row_profile.get(&(export.relative_path(), t.line)) else { continue };
            let at = DateTime::parse_from_rfc3339(&t.occurred_at_utc)?.with_timezone(&Utc);
            let slot = purchases.entry(profile).or_default().entry((export.channel(), t.reference.as_str())).or_insert(at);
            *slot = (*slot).min(at);
        }
    }
    let cutoff = now - Duration::days(90);
    let expected: BTreeSet<String> = purchases
        .iter()
        .filter(|(_, o)| o.len() >= 2 && o.values().max().is_some_and(|last| *last < cutoff))
        .map(|(p, _)| p.to_string())
        .collect();
    let first_run_id = ariane_shared::lake::run_id(now);
    let decided: BTreeSet<String> = decisions
        .iter()
        .filter(|d| d.campaign == "reactivation" && d.run_id == first_run_id && d.change == "entered")
        .map(|d| d.profile_id.clone())
        .collect();
    let reactivation_matches = decided == expected;
    // Exactly once: one delivery per sent decision, and nothing else.
    let deliveries = receiver.deliveries();
    let sent_keys: BTreeSet<&str> = decisions.iter().filter(|d| d.outcome == "sent").map(|d| d.send_key.as_str()).collect();
    let delivered_keys: Vec<&str> = deliveries.iter().filter_map(|d| d.idempotency_key.as_deref()).collect();
    let delivered_set: BTreeSet<&str> = delivered_keys.iter().copied().collect();
    let exactly_once = delivered_keys.len() == delivered_set.len() && delivered_set == sent_keys;
    // The cap: no person got more than max_messages within any window.
    let cap = ariane_activate::rules::Rules::embedded()?.frequency_cap;
    let mut by_person: BTreeMap<&str, Vec<DateTime<Utc>>> = BTreeMap::new();
    for d in &deliveries {
        if let (Some(p), Some(t)) = (d.body["profile_id"].as_str(), d.body["sent_at"].as_str()) {
            by_person.entry(p).or_default().push(DateTime::parse_from_rfc3339(t)?.with_timezone(&Utc));
        }
    }
    let cap_holds = by_person
        .values()
        .all(|ts| ts.iter().all(|a| ts.iter().filter(|b| **b >= *a && **b < *a + cap.window).count() as u32 <= cap.max_messages));
    let expected_conv = expected_conversions(&report_records, &planted);
    let mut conversions_match = true;
    let mut dlq = 0;
    for q in stack.manifest.queues.values() {
        if let Some(url) = &q.dlq_url {
            dlq += queue_depth(&stack.clients.sqs, url).await?;
        }
    }
    let audience_files = stack.lake_keys("audiences/").await?;
    step.done("");

    println!();
    println!("Ariane demo summary ({} customers generated, run at {})", persons, now.format("%Y-%m-%d %H:%M UTC"));
    println!("  ingest (per channel file; truth = the generator's planted malformed rows)");
    println!(
        "    {:<10} {:<34} {:>8} {:>8} {:>9} {:>6} {:>8} {:>13} status",
        "channel", "file", "rows", "events", "rejected", "truth", "skipped", "observations"
    );
    let mut reconciled = true;
    for st in &summary.exports {
        let k = key_of(st.export);
        // The entry that read the file (a re-upload of the same bytes is a duplicate of it).
        let Some(e) = ledger.iter().find(|e| e.source_key == k && e.status != LedgerStatus::Duplicate) else {
            println!("    {:<10} {:<34} no ledger entry", st.export.channel(), st.export.file_name());
            reconciled = false;
            continue;
        };
        let lines_ok = e.lines_read == e.events_written + e.rows_rejected + e.lines_skipped.total();
        let ok =
            e.rows_read == e.events_written + e.rows_rejected && lines_ok && e.rows_read == st.rows && e.rows_rejected == st.malformed_rows;
        reconciled &= ok;
        println!(
            "    {:<10} {:<34} {:>8} {:>8} {:>9} {:>6} {:>8} {:>13} {:?}{}",
            e.channel,
            st.export.file_name(),
            e.rows_read,
            e.events_written,
            e.rows_rejected,
            st.malformed_rows,
            e.lines_skipped.total(),
            e.observations_sent,
            e.status,
            if ok { "" } else { "  <- does not reconcile" }
        );
    }
    match ledger.iter().find(|e| e.source_key == costs_key && e.status != LedgerStatus::Duplicate) {
        Some(e) => {
            let ok = e.rows_read == e.events_written + e.rows_rejected
                && e.rows_read == costs.rows
                && e.rows_rejected == costs.malformed_rows
                && e.observations_sent == 0;
            reconciled &= ok;
            println!(
                "    {:<10} {:<34} {:>8} {:>8} {:>9} {:>6} {:>8} {:>13} {:?}{}",
                e.channel,
                "spend.csv",
                e.rows_read,
                e.events_written,
                e.rows_rejected,
                costs.malformed_rows,
                e.lines_skipped.total(),
                e.observations_sent,
                e.status,
                if ok { "" } else { "  <- does not reconcile (or sent observations: spend rows have no person)" }
            );
        }
        None => {
            println!("    {:<10} {:<34} no ledger entry", "costs", "spend.csv");
            reconciled = false;
        }
    }
    println!(
        "    every file reconciles (rows read = events + rejected, lines = events + rejected + skipped blank/header/continuation, rows and rejects = truth): {reconciled}"
    );
    let shifted: u64 = ledger.iter().map(|e| e.local_time.shifted).sum();
    let ambiguous: u64 = ledger.iter().map(|e| e.local_time.ambiguous).sum();
    println!("    local times across daylight saving changes (flagged in the lake's local_time): {shifted} shifted, {ambiguous} ambiguous");
    println!("  identity");
    println!(
        "    profiles in DynamoDB: {profiles} (persons generated: {persons}, every one in the CRM with an email; customers with a valid order: {})",
        persons_seen.len()
    );
    let q = &identity.quality;
    println!(
        "    profiles before resolution: {} (distinct usable identifier sets of the {} rows of known persons), after: {}, merges: {} (merge records in identity/history/)",
        identity.profiles_before, q.rows, identity.profiles_after, merges
    );
    println!(
        "    pairwise against the truth: precision {:.4} ({} of {} predicted pairs), recall {:.4} ({} of {} linkable pairs), targets (0.999 / 0.99) met: {}",
        q.precision, q.true_pairs, q.predicted_pairs, q.recall, q.found_pairs, q.linkable_pairs, q.precision >= 0.999 && q.recall >= 0.99
    );
    println!(
        "    rows not scored: {} without any identifier, {} of no known person; scored rows without a profile (shared or blocked identifiers only): {}",
        generated.total.without_anchor, generated.total.without_person, identity.rows_without_profile
    );
    // Per person: one profile, or split (unlinkable: no chain of the person's own values
    // ties the parts; missed: one does), and recent buyers the reactivation sees lapsed.
    for line in per_person.to_string().lines() {
        println!("    {line}");
    }
    for m in per_person.missed.iter().take(5) {
        println!("      missed split: {m}");
    }
    let tasks = |state: &str| {
        execution.entries_of(state).filter(|e| matches!(e.event, ariane_local::states::TraceEvent::TaskSucceeded { .. })).count()
    };
    println!(
        "  segments run as the state machine {machine} (played from the template's definition): Plan, Buckets ({} invocations, one per profile bucket, {} at once at most), Publish ({}), Commit, Finish",
        tasks("Bucket"),
        run_plan_concurrency(&stack)?,
        tasks("PublishBucket")
    );
    println!("  segments (first run over the lake: everyone enters; DataFusion query time per segment, summed over buckets)");
    for s in run["segments"].as_array().into_iter().flatten() {
        println!(
            "    {:<18} members {:>6}  entered {:>6}  exited {:>6}  query {:>6} ms{}",
            s["segment"].as_str().unwrap_or("?"),
            s["members"],
            s["entered"],
            s["exited"],
            s["query_ms"],
            s["reason"].as_str().map(|r| format!("  ({r})")).unwrap_or_default()
        );
    }
    println!("  segments a day later, after the re-upload (no new data: changes come only from time windows moving)");
    for s in next_run["segments"].as_array().into_iter().flatten() {
        println!(
            "    {:<18} members {:>6}  entered {:>6}  exited {:>6}",
            s["segment"].as_str().unwrap_or("?"),
            s["members"],
            s["entered"],
            s["exited"]
        );
    }
    println!(
        "  campaigns (report of the segments run at {}, s3://{}/reports/campaigns/latest.json)",
        report_at.format("%Y-%m-%d"),
        stack.lake_bucket()
    );
    println!(
        "    {:<15} {:>7} {:>7}  {:<28} {:<34} {:>8} {:>8}  {:>13} {:>13} {:>7}",
        "campaign",
        "treated",
        "holdout",
        "sent by channel",
        "suppressed by reason",
        "deferred",
        "audience",
        "conv treated",
        "conv holdout",
        "lift"
    );
    for c in report["campaigns"].as_array().into_iter().flatten() {
        let name = c["campaign"].as_str().unwrap_or("?");
        let map = |v: &Value| {
            v.as_object()
                .map(|m| m.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "-".into())
        };
        let (te, tc, he, hc) = (
            c["treated"]["entries"].as_u64().unwrap_or(0),
            c["treated"]["converted"].as_u64().unwrap_or(0),
            c["holdout"]["entries"].as_u64().unwrap_or(0),
            c["holdout"]["converted"].as_u64().unwrap_or(0),
        );
        let want = expected_conv.get(name).copied().unwrap_or_default();
        let ok = want == (te, tc, he, hc);
        conversions_match &= ok;
        println!(
            "    {:<15} {:>7} {:>7}  {:<28} {:<34} {:>8} {:>8}  {:>13} {:>13} {:>7}{}",
            name,
            te,
            he,
            map(&c["sent"]),
            map(&c["suppressed"]),
            c["deferred_quiet_hours"],
            c["audience_added"],
            format!("{tc} ({})", pct(c["treated"]["rate"].as_f64().unwrap_or(0.0))),
            format!("{hc} ({})", pct(c["holdout"]["rate"].as_f64().unwrap_or(0.0))),
            c["lift"].as_f64().map(|l| format!("{:+.0}%", 100.0 * l)).unwrap_or_else(|| "-".into()),
            if ok { String::new() } else { format!("  <- planted {want:?}") }
        );
    }
    for (name, want) in &expected_conv {
        if !report["campaigns"].as_array().into_iter().flatten().any(|c| c["campaign"] == name.as_str()) {
            conversions_match = false;
            println!("    {name:<15} missing from the report (planted {want:?})");
        }
    }
    println!(
        "    conversions = an order within the campaign's window after the decision; planted: {} follow-up orders ({}% of contacted people, {}% of the others); the report matches the plant: {conversions_match}",
        planted.len(),
        (BUY_IF_CONTACTED * 100.0) as u32,
        (BUY_OTHERWISE * 100.0) as u32
    );
    println!("  real time");
    println!("    {realtime}");
    println!("  activate");
    let mut per_destination: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &deliveries {
        *per_destination.entry(d.destination.as_str()).or_default() += 1;
    }
    println!(
        "    webhook deliveries: {} ({}), deferred by quiet hours at 22:00 then released at 08:00: {deferred_first} / {released}",
        deliveries.len(),
        per_destination.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    );
    println!("    each sent decision delivered exactly once (Idempotency-Key = ledger key): {exactly_once}; frequency cap ({} per {} days, all campaigns and channels) holds: {cap_holds}", cap.max_messages, cap.window.num_days());
    println!(
        "    reactivation decisions of the first run: {} profiles; the ground truth's purchases grouped by identity's profiles give {}: exact match: {reactivation_matches}",
        decided.len(),
        expected.len()
    );
    for p in decided.difference(&expected).take(5) {
        println!("      decided, not expected: {p}");
    }
    for p in expected.difference(&decided).take(5) {
        println!("      expected, not decided: {p}");
    }
    println!(
        "      (per person, the ground truth has {} lapsed customers; identity keeps the purchases of {} of the {} buying persons in more than one profile or in none; persons split: {} unlinkable, {} missed; recent buyers decided as lapsed: {} of {} ({} whose recent purchases carry no usable identifier); see docs/identity.md)",
        expected_persons.len(),
        per_person.buyers_split,
        per_person.buyers,
        per_person.split_unlinkable,
        per_person.split_missed,
        per_person.recent_buyers_decided_lapsed,
        per_person.recent_buyers,
        per_person.recent_buyers_decided_lapsed_unidentified
    );
    println!("    hashed audience files (Meta, Google) under s3://{}/audiences/: {}", stack.lake_bucket(), audience_files.len());
    println!("  idempotency");
    // One entry per key and version: a new version of the same bytes is a duplicate of the first.
    let entries: Vec<String> = ledger
        .iter()
        .filter(|e| e.source_key == key)
        .map(|e| match &e.duplicate_of {
            Some(first) if first.source_key == key => format!("{:?} (of an earlier version)", e.status),
            Some(first) => format!("{:?} (of {})", e.status, first.source_key),
            None => format!("{:?}", e.status),
        })
        .collect();
    println!(
        "    re-upload of the same export: event files unchanged: {}, observations re-sent: {}, its ledger entries: {}",
        events_before == events_after,
        again.by_function.get("IdentityFunction").copied().unwrap_or(0),
        entries.join(", ")
    );
    println!("  dead-letter queues: {dlq} message(s)");

    step.start("erasing one contacted customer by e-mail (identity at once), then the purge (exports, lake, audiences)");
    runner.progress = Some(step.progress());
    let erasure = erase_one(&stack, &runner, &resolver, &deliveries, now + Duration::days(9)).await?;
    step.done("");
    let mut erased_everywhere = true;
    if let Some(e) = &erasure {
        erased_everywhere = e.left.is_empty() && !e.resolves;
        println!("  erasure (right to be forgotten)");
        println!("    requested by e-mail for profile {}; the e-mail still resolves: {}", e.profile_id, e.resolves);
        let removed: Vec<String> = e
            .removed
            .iter()
            .filter(|(_, c)| c["rows_removed"].as_u64().unwrap_or(0) + c["items_deleted"].as_u64().unwrap_or(0) > 0)
            .map(|(store, c)| format!("{store} {}", c["rows_removed"].as_u64().unwrap_or(0) + c["items_deleted"].as_u64().unwrap_or(0)))
            .collect();
        println!("    the purge removed (rows or items per store): {}", removed.join(", "));
        println!("    objects of either bucket still holding the e-mail or its keyed hash: {} {:?}", e.left.len(), e.left);
    }

    step.start("the daily measures (channel KPIs, funnel, cross-channel, attribution) and the HTML report");
    runner.progress = Some(step.progress());
    let measured_at = now + Duration::days(9);
    let measures = runner.fire_schedule(Some("MeasuresFunction"), measured_at).await?;
    let report_key = measures["report_key"].as_str().context("the measures summary names its report")?.to_string();
    let report = ariane_local::repo_root().join(".local/report/index.html");
    std::fs::create_dir_all(report.parent().context("the report's folder")?)?;
    std::fs::write(&report, stack.lake_object(&report_key).await?)?;
    step.done("");
    println!("  measures (the 28 days before {}; attribution over a 30-day lookback)", measured_at.format("%Y-%m-%d %H:%M UTC"));
    println!(
        "    orders {}, revenue {:.2} EUR, orders without a touchpoint {}, touchpoints {}",
        measures["conversions"],
        measures["revenue_minor"].as_i64().unwrap_or(0) as f64 / 100.0,
        measures["conversions_without_touchpoint"],
        measures["touchpoints"]
    );
    if let Some(previous) = measures["previous"].as_object() {
        println!(
            "    previous period (the 28 days before): orders {}, revenue {:.2} EUR, people reached {} (the report's KPI cards show the change)",
            previous["orders"],
            previous["revenue_minor"].as_i64().unwrap_or(0) as f64 / 100.0,
            previous["people_reached"]
        );
    }
    // The spend the run measured: the generator's valid rows of the 28 whole days before
    // the run's day, rejected rows left out.
    let measured_day = measured_at.date_naive();
    let planted_spend = costs.spend_between(measured_day - Duration::days(28), measured_day - Duration::days(1));
    let spend_minor = measures["spend_minor"].as_i64().unwrap_or(0);
    let spend_matches = spend_minor == planted_spend.values().sum::<i64>();
    println!(
        "    spend {:.2} EUR ({}); the generator's spend of the period: {:.2} EUR: match: {spend_matches}",
        spend_minor as f64 / 100.0,
        planted_spend.iter().map(|(c, v)| format!("{c} {:.2}", *v as f64 / 100.0)).collect::<Vec<_>>().join(", "),
        planted_spend.values().sum::<i64>() as f64 / 100.0
    );
    println!(
        "    return on ad spend and cost per acquisition per channel and model: the report's spend section, s3://{}/measures/spend-return/date={}/",
        stack.lake_bucket(),
        measured_at.format("%Y-%m-%d")
    );
    println!("    tables under s3://{}/measures/<name>/date={}/", stack.lake_bucket(), measured_at.format("%Y-%m-%d"));
    println!("    report: {} (s3://{}/{report_key})", report.display(), stack.lake_bucket());

    step.start("one contacted customer's journey (the journey function, as an operator invokes it)");
    let erased = erasure.as_ref().map(|e| e.profile_id.as_str());
    let person = deliveries
        .iter()
        .filter(|d| d.body["profile_id"].as_str() != erased)
        .find_map(|d| d.body["to"]["email"].as_str().map(str::to_string));
    let journey = match &person {
        Some(email) => {
            Some(runner.invoker.invoke(&stack.manifest, "JourneyFunction", serde_json::json!({"kind": "email", "value": email})).await?)
        }
        None => None,
    };
    step.done("");
    if let Some(j) = journey.filter(|j| j["profile_id"].is_string()) {
        let count = |k: &str| j["timeline"].as_array().map_or(0, |t| t.iter().filter(|e| e["kind"] == k).count());
        println!("  one person's journey (identifiers shown as kind + hash prefix, never in clear)");
        println!(
            "    profile {} asked for by {}: channels {}; {} identity decision(s); {} touchpoints, {} purchase lines in {} order(s)",
            j["profile_id"].as_str().unwrap_or("?"),
            j["identifier"]["kind"].as_str().unwrap_or("?"),
            j["channels"].as_array().map(|c| c.iter().filter_map(|c| c.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default(),
            j["decisions"].as_array().map_or(0, Vec::len),
            count("touchpoint"),
            count("purchase"),
            j["orders"],
        );
        for e in j["timeline"].as_array().into_iter().flatten().rev().take(5).collect::<Vec<_>>().into_iter().rev() {
            println!(
                "      {}  {:<10} {:<18} {}",
                e["at"].as_str().unwrap_or("?"),
                e["channel"].as_str().unwrap_or("?"),
                e["event_type"].as_str().unwrap_or("?"),
                e["campaign_id"].as_str().or(e["order_id"].as_str()).unwrap_or("")
            );
        }
    }
    drop(stack);
    if !reactivation_matches
        || dlq > 0
        || !reconciled
        || !exactly_once
        || !cap_holds
        || !conversions_match
        || !erased_everywhere
        || !spend_matches
    {
        bail!("the demo's results do not match the ground truth");
    }
    Ok(())
}

/// The segments function's concurrent buckets (`ARIANE_SEGMENT_CONCURRENCY`).
fn run_plan_concurrency(stack: &LocalStack) -> anyhow::Result<String> {
    Ok(stack.manifest.function("SegmentsFunction")?.environment.get("ARIANE_SEGMENT_CONCURRENCY").cloned().unwrap_or_else(|| "?".into()))
}
