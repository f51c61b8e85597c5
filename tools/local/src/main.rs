//! `ariane-local`: the local stack from the command line.
//!
//! ```text
//! ariane-local demo [--persons N] [--seed S]     whole pipeline on generated data, with a summary
//! ariane-local validate [FILE.sql|FILE.toml ...]  validate segment files and channel specs (default: all)
//! ariane-local up [--stage dev]                  start moto + deploy the template, write .local/<stage>.env
//! ariane-local drain --manifest F [--cargo-lambda URL [--cargo-lambda-for ID=URL ...]]
//!                                                play the event source mappings until queues are empty
//! ariane-local fire --manifest F [--at RFC3339] [--cargo-lambda URL]  fire the segments schedule
//! ```
//!
//! The landing router and the ingest instance of every channel all run the `ingest`
//! binary, told apart by `INGEST_CHANNEL`; `cargo lambda watch` serves a binary with one
//! environment. `up` writes `.local/<stage>.env` for one watch serving every function,
//! `ingest` as the landing router, and `.local/<stage>.<LogicalId>.env` for each ingest
//! instance, to be served by a watch of its own and passed as
//! `--cargo-lambda-for IngestEcommerceFunction=http://127.0.0.1:9001`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{bail, Context};
use ariane_datagen::{expected_reactivation_all_purchases, read_channel_truth, read_truth, write_ecommerce_orders, GenConfig};
use ariane_local::manifest::Manifest;
use ariane_local::receiver::Receiver;
use ariane_local::runner::{queue_depth, Invoker, Runner};
use ariane_local::LocalStack;
use ariane_segments::definition::SegmentDefinition;
use chrono::{DateTime, Utc};

mod identity_cmd;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// Every value of a repeatable option.
fn args_all(args: &[String], name: &str) -> Vec<String> {
    args.windows(2).filter(|w| w[0] == name).map(|w| w[1].clone()).collect()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]).await,
        Some("validate") => validate(&args[1..]).await,
        Some("up") => up(&args[1..]).await,
        Some("drain") => drain(&args[1..]).await,
        Some("fire") => fire(&args[1..]).await,
        Some("identity") => identity_cmd::run(&args[1..]).await,
        _ => {
            eprintln!("usage: ariane-local demo|validate|up|drain|fire|identity (see the README; `ariane-local identity` for its own usage)");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("ariane-local: error: {e:#}");
        std::process::exit(1);
    }
}

/// Validates the channel specs on disk (`channels/<channel>/*.toml`, or the given files),
/// with the code the ingest binary runs at cold start.
fn validate_specs(files: &[String]) -> anyhow::Result<()> {
    let root = ariane_local::repo_root();
    let paths: Vec<std::path::PathBuf> = if files.is_empty() {
        let mut p = Vec::new();
        for dir in std::fs::read_dir(root.join("channels"))?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()) {
            p.extend(std::fs::read_dir(&dir)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")));
        }
        p.sort();
        p
    } else {
        files.iter().map(Into::into).collect()
    };
    let mut texts = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let shown = path.strip_prefix(&root).unwrap_or(path).display().to_string();
        texts.push((shown, text));
    }
    let refs: Vec<(&str, &str)> = texts.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    match ariane_ingest::spec::Catalog::from_files(&refs) {
        Ok(catalog) => {
            println!("{} channel spec(s) valid: {}", catalog.specs.len(), catalog.specs.iter().map(|s| format!("{}/{}", s.channel, s.name)).collect::<Vec<_>>().join(", "));
            Ok(())
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("invalid: {e}");
            }
            bail!("{} problem(s) in channel specs", errors.len())
        }
    }
}

/// The identity rules file (`config/identity.toml` unless files name another).
fn validate_identity_rules(files: &[String]) -> anyhow::Result<()> {
    let root = ariane_local::repo_root();
    let paths: Vec<std::path::PathBuf> =
        if files.is_empty() { vec![root.join(ariane_identity::rules::EMBEDDED_PATH)] } else { files.iter().map(Into::into).collect() };
    for path in paths {
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let shown = path.strip_prefix(&root).unwrap_or(&path).display().to_string();
        match ariane_identity::rules::Rules::parse(&shown, &text) {
            Ok(_) => println!("identity rules valid: {shown}"),
            Err(e) => {
                eprintln!("invalid: {e}");
                bail!("problem in identity rules")
            }
        }
    }
    Ok(())
}

async fn validate(files: &[String]) -> anyhow::Result<()> {
    let (rule_files, files): (Vec<String>, Vec<String>) = files.iter().cloned().partition(|f| f.ends_with("identity.toml"));
    let rules = validate_identity_rules(&rule_files);
    if !rule_files.is_empty() && files.is_empty() {
        return rules;
    }
    rules?;
    let (spec_files, files): (Vec<String>, Vec<String>) = files.iter().cloned().partition(|f| f.ends_with(".toml"));
    let specs = validate_specs(&spec_files);
    if !spec_files.is_empty() && files.is_empty() {
        return specs;
    }
    let root = ariane_local::repo_root();
    let paths: Vec<std::path::PathBuf> = if files.is_empty() {
        let mut p: Vec<_> = std::fs::read_dir(root.join("segments"))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        p.sort();
        p
    } else {
        files.iter().map(Into::into).collect()
    };
    let mut definitions = Vec::new();
    let mut problems = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        match SegmentDefinition::parse(&path.display().to_string(), &text) {
            Ok(d) => definitions.push(d),
            Err(e) => problems.push(e.to_string()),
        }
    }
    problems.extend(ariane_segments::run::validate(&definitions).await.into_iter().map(|e| e.to_string()));
    specs?;
    if problems.is_empty() {
        println!("{} segment file(s) valid: {}", definitions.len(), definitions.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", "));
        Ok(())
    } else {
        for p in &problems {
            eprintln!("invalid: {p}");
        }
        bail!("{} problem(s) in segment files", problems.len())
    }
}

async fn up(args: &[String]) -> anyhow::Result<()> {
    let stage = arg(args, "--stage").unwrap_or_else(|| "dev".into());
    let mut params = Vec::new();
    if let Some(url) = arg(args, "--webhook") {
        params.push(("ActivationWebhookUrl".to_string(), url));
    }
    let stack = LocalStack::start(&stage, &params).await?;
    let root = ariane_local::repo_root();
    let env_path = root.join(".local").join(format!("{stage}.env"));
    std::fs::write(&env_path, stack.manifest.cargo_lambda_env_file(None)?)?;
    let mut instance_envs = Vec::new();
    for id in stack.manifest.cargo_lambda_other_instances() {
        let path = root.join(".local").join(format!("{stage}.{id}.env"));
        std::fs::write(&path, stack.manifest.cargo_lambda_env_file(Some(id))?)?;
        instance_envs.push((id, path));
    }
    let manifest_path = root.join(".local").join(format!("{stage}.manifest.json"));
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&stack.manifest)?)?;
    println!("local stack {} is up at {}", stack.manifest.stack_name, stack.manifest.endpoint);
    println!("  environment for cargo lambda: {}", env_path.display());
    for (id, path) in &instance_envs {
        println!("    {id} (own watch, --cargo-lambda-for {id}=URL): {}", path.display());
    }
    println!("  manifest:                     {}", manifest_path.display());
    println!("  landing bucket: {}", stack.landing_bucket());
    println!("press Ctrl-C to stop moto");
    tokio::signal::ctrl_c().await?;
    Ok(())
}

async fn runner_from_args(args: &[String]) -> anyhow::Result<Runner> {
    let path = arg(args, "--manifest").context("--manifest PATH is required (written by `ariane-local up`)")?;
    let manifest: Manifest = serde_json::from_slice(&std::fs::read(&path).with_context(|| path.clone())?)?;
    let clients = ariane_shared::aws::Clients::from_env(&manifest.client_env()).await;
    let mut instances = std::collections::BTreeMap::new();
    for pair in args_all(args, "--cargo-lambda-for") {
        let (id, url) = pair.split_once('=').with_context(|| format!("--cargo-lambda-for expects LogicalId=URL, got {pair}"))?;
        manifest.function(id)?;
        instances.insert(id.to_string(), url.to_string());
    }
    let invoker = match arg(args, "--cargo-lambda") {
        Some(url) => Invoker::cargo_lambda_with_instances(&url, instances),
        None if instances.is_empty() => Invoker::in_process(&manifest).await?,
        None => bail!("--cargo-lambda-for needs --cargo-lambda URL too"),
    };
    Runner::new(manifest, clients.sqs, invoker)
}

async fn drain(args: &[String]) -> anyhow::Result<()> {
    let report = runner_from_args(args).await?.drain().await?;
    println!("{report:?}");
    Ok(())
}

async fn fire(args: &[String]) -> anyhow::Result<()> {
    let at = match arg(args, "--at") {
        Some(t) => DateTime::parse_from_rfc3339(&t)?.with_timezone(&Utc),
        None => Utc::now(),
    };
    let response = runner_from_args(args).await?.fire_schedule(None, at).await?;
    println!("{}", serde_json::to_string_pretty(&response)?);
    Ok(())
}

struct Step {
    n: usize,
    total: usize,
    started: Instant,
}

impl Step {
    fn start(&mut self, what: &str) {
        self.n += 1;
        self.started = Instant::now();
        eprintln!("[{}/{}] {what} ...", self.n, self.total);
    }
    fn done(&self, detail: &str) {
        eprintln!("      done in {:.1}s{}", self.started.elapsed().as_secs_f64(), if detail.is_empty() { String::new() } else { format!(": {detail}") });
    }
}

async fn demo(args: &[String]) -> anyhow::Result<()> {
    std::env::set_var("ARIANE_METRICS", "off");
    let persons: usize = arg(args, "--persons").map(|p| p.parse()).transpose()?.unwrap_or(1000);
    let seed: u64 = arg(args, "--seed").map(|p| p.parse()).transpose()?.unwrap_or(42);
    let now = Utc::now().date_naive().and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    let mut step = Step { n: 0, total: 7, started: Instant::now() };

    step.start("starting moto and deploying infra/template.yaml (stage demo)");
    let receiver = Receiver::start().await?;
    let stack = LocalStack::start("demo", &[("ActivationWebhookUrl".to_string(), receiver.url.clone())]).await?;
    let runner = stack.in_process_runner().await?;
    step.done(&format!("{} at {}, webhook receiver at {}", stack.manifest.stack_name, stack.manifest.endpoint, receiver.url));

    step.start(&format!("generating the exports of all seven channels for {persons} customers (seed {seed})"));
    let cfg = GenConfig::new(seed, persons, now);
    let data_dir = tempfile::tempdir()?;
    let summary = ariane_datagen::write_channels_dir(&cfg, data_dir.path())?;
    let (mut orders_csv, mut truth_csv) = (Vec::new(), Vec::new());
    write_ecommerce_orders(&cfg, &mut orders_csv, &mut truth_csv)?;
    let truth = read_truth(&truth_csv[..])?;
    let rows: u64 = summary.exports.iter().map(|e| e.rows).sum();
    let malformed: u64 = summary.exports.iter().map(|e| e.malformed_rows).sum();
    step.done(&format!("{} files, {rows} rows, {malformed} malformed rows planted", summary.exports.len()));

    let day = now.format("%Y-%m-%d").to_string();
    let key_of = |e: ariane_datagen::Export| format!("{}/{day}/{}", e.channel(), e.file_name());
    step.start(&format!("uploading them to s3://{}/<channel>/{day}/ and running the landing router, the seven ingest instances and identity", stack.landing_bucket()));
    for e in &summary.exports {
        let body = std::fs::read(data_dir.path().join(e.export.channel()).join(e.export.file_name()))?;
        stack.upload(&key_of(e.export), body).await?;
    }
    let drained = runner.drain().await?;
    step.done(&format!("{} messages handled", drained.messages));

    let key = key_of(ariane_datagen::Export::EcommerceOrders);
    let csv = orders_csv;
    step.start("firing the segments schedule (run at today 00:00 UTC) and running activation");
    let run = runner.fire_schedule(None, now).await?;
    runner.drain().await?;
    let first_deliveries = receiver.deliveries();
    step.done("");

    step.start("re-uploading the same export and running the segments a day later (must change nothing)");
    let events_before = stack.lake_keys("events/").await?;
    stack.upload(&key, csv).await?;
    let again = runner.drain().await?;
    let events_after = stack.lake_keys("events/").await?;
    let next_run = runner.fire_schedule(None, now + chrono::Duration::days(1)).await?;
    runner.drain().await?;
    step.done("");

    step.start("reading the results back from S3, DynamoDB and the receiver");
    let mut ledger = Vec::new();
    for k in stack.lake_keys(ariane_shared::lake::ledger_prefix()).await? {
        ledger.push(serde_json::from_slice::<ariane_ingest::pipeline::LedgerEntry>(&stack.lake_object(&k).await?)?);
    }
    let profiles = stack.profile_count().await?;
    // Identity quality: the generated rows through the ingest parser, their identity keys'
    // profiles read back from DynamoDB, scored against the generator's truth.
    let rules = ariane_identity::rules::Rules::embedded()?;
    let catalog = ariane_ingest::spec::Catalog::embedded()
        .map_err(|errors| anyhow::anyhow!("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
    let generated = ariane_local::quality::read_generated(data_dir.path(), &catalog, &rules)?;
    let store = ariane_identity::store::DynamoStore {
        client: stack.clients.dynamodb.clone(),
        table: stack.manifest.output("ProfilesTableName")?.to_string(),
    };
    let resolver = ariane_identity::resolver::Resolver::new(store, rules);
    let identity_profiles = ariane_local::quality::profiles_of_rows(&resolver, &generated.rows).await?;
    let identity = ariane_local::quality::score(&generated.rows, &identity_profiles);
    let mut merges = 0;
    for k in stack.lake_keys("identity/history/").await? {
        merges += ariane_local::quality::merge_records(&stack.lake_object(&k).await?).with_context(|| format!("s3://{}/{k}", stack.lake_bucket()))?;
    }
    let persons_seen: BTreeSet<&str> = truth.iter().filter(|t| t.valid).map(|t| t.person_id.as_str()).collect();
    let mut channel_truths = Vec::new();
    for e in &summary.exports {
        let path = data_dir.path().join(e.export.channel()).join(e.export.truth_file_name());
        channel_truths.push((e.export, read_channel_truth(std::fs::File::open(&path)?)?));
    }
    let expected = expected_reactivation_all_purchases(&cfg, &channel_truths, now)?;
    // Each expected person reached exactly once, at one of their addresses; nothing else.
    let mut left: BTreeMap<String, usize> = BTreeMap::new();
    for d in &first_deliveries {
        *left.entry(d.body["email"].as_str().unwrap_or("(no e-mail)").to_string()).or_default() += 1;
    }
    let mut by_choice = expected.clone();
    by_choice.sort_by_key(BTreeSet::len);
    let mut missed: Vec<String> = Vec::new();
    for addresses in &by_choice {
        match addresses.iter().find(|a| left.get(*a).is_some_and(|n| *n > 0)) {
            Some(a) => *left.get_mut(a).expect("found") -= 1,
            None => missed.push(addresses.iter().cloned().collect::<Vec<_>>().join(" or ")),
        }
    }
    let extra: Vec<&String> = left.iter().filter(|(_, n)| **n > 0).map(|(a, _)| a).collect();
    let activation_matches = missed.is_empty() && extra.is_empty();
    let mut dlq = 0;
    for q in stack.manifest.queues.values() {
        if let Some(url) = &q.dlq_url {
            dlq += queue_depth(&stack.clients.sqs, url).await?;
        }
    }
    step.done("");

    step.start("stopping moto and the receiver");
    println!();
    println!("Ariane demo summary ({} customers generated, run at {})", persons, now.format("%Y-%m-%d %H:%M UTC"));
    println!("  ingest (per channel file; truth = the generator's planted malformed rows)");
    println!("    {:<10} {:<34} {:>8} {:>8} {:>9} {:>6} {:>13} status", "channel", "file", "rows", "events", "rejected", "truth", "observations");
    let mut reconciled = true;
    for st in &summary.exports {
        let k = key_of(st.export);
        let Some(e) = ledger.iter().find(|e| e.source_key == k) else {
            println!("    {:<10} {:<34} no ledger entry", st.export.channel(), st.export.file_name());
            reconciled = false;
            continue;
        };
        let ok = e.rows_read == e.events_written + e.rows_rejected && e.rows_read == st.rows && e.rows_rejected == st.malformed_rows;
        reconciled &= ok;
        println!(
            "    {:<10} {:<34} {:>8} {:>8} {:>9} {:>6} {:>13} {:?}{}",
            e.channel, st.export.file_name(), e.rows_read, e.events_written, e.rows_rejected, st.malformed_rows,
            e.observations_sent, e.status, if ok { "" } else { "  <- does not reconcile" }
        );
    }
    println!("    every file reconciles (read = events + rejected, rows and rejects = truth): {reconciled}");
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
    println!("  segments (first run over the lake: everyone enters; DataFusion query time per segment)");
    for s in run["segments"].as_array().into_iter().flatten() {
        println!(
            "    {:<18} members {:>6}  entered {:>6}  exited {:>6}  query {:>6} ms{}",
            s["segment"].as_str().unwrap_or("?"), s["members"], s["entered"], s["exited"], s["query_ms"],
            s["reason"].as_str().map(|r| format!("  ({r})")).unwrap_or_default()
        );
    }
    println!("  segments a day later, after the re-upload (no new data: changes come only from time windows moving)");
    for s in next_run["segments"].as_array().into_iter().flatten() {
        println!(
            "    {:<18} members {:>6}  entered {:>6}  exited {:>6}",
            s["segment"].as_str().unwrap_or("?"), s["members"], s["entered"], s["exited"]
        );
    }
    println!("  activate");
    println!(
        "    webhook deliveries received for reactivation: {} (expected from ground truth over every purchase channel: {}, exact match: {activation_matches})",
        first_deliveries.len(),
        expected.len()
    );
    for a in &missed {
        println!("      expected, not delivered: {a}");
    }
    for a in &extra {
        println!("      delivered, not expected: {a}");
    }
    println!("  idempotency");
    println!(
        "    re-upload of the same export: event files unchanged: {}, observations re-sent: {}",
        events_before == events_after,
        again.by_function.get("IdentityFunction").copied().unwrap_or(0)
    );
    println!("  dead-letter queues: {dlq} message(s)");
    drop(stack);
    step.done("");
    if !activation_matches || dlq > 0 || !reconciled {
        bail!("the demo's results do not match the ground truth");
    }
    Ok(())
}
