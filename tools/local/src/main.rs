//! `ariane-local`: the local stack from the command line.
//!
//! ```text
//! ariane-local demo [--persons N] [--seed S]     whole pipeline on generated data, with a summary
//! ariane-local validate [FILE.sql|FILE.toml ...]  validate segments, channel specs, identity and activation
//!                                                rules and campaigns (default: all)
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

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use ariane_local::manifest::Manifest;
use ariane_local::runner::{Invoker, Runner};
use ariane_local::LocalStack;
use ariane_segments::definition::SegmentDefinition;
use chrono::{DateTime, Utc};

mod demo;
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
        Some("demo") => demo::demo(&args[1..]).await,
        Some("validate") => validate(&args[1..]).await,
        Some("up") => up(&args[1..]).await,
        Some("drain") => drain(&args[1..]).await,
        Some("fire") => fire(&args[1..]).await,
        Some("identity") => identity_cmd::run(&args[1..]).await,
        _ => {
            eprintln!(
                "usage: ariane-local demo|validate|up|drain|fire|identity (see the README; `ariane-local identity` for its own usage)"
            );
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
/// The files of `dir` ending in `.ext`, sorted.
fn files_in(dir: &std::path::Path, ext: &str) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut paths: Vec<_> =
        std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == ext)).collect();
    paths.sort();
    Ok(paths)
}

/// The files named on the command line, or else every `.ext` file of `dir`.
fn files_or_dir(files: &[String], dir: &std::path::Path, ext: &str) -> std::io::Result<Vec<std::path::PathBuf>> {
    if files.is_empty() {
        files_in(dir, ext)
    } else {
        Ok(files.iter().map(Into::into).collect())
    }
}

fn validate_specs(files: &[String]) -> anyhow::Result<()> {
    let root = ariane_local::repo_root();
    let paths: Vec<std::path::PathBuf> = if files.is_empty() {
        let mut p = Vec::new();
        for dir in std::fs::read_dir(root.join("channels"))?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()) {
            p.extend(files_in(&dir, "toml")?);
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
            println!(
                "{} channel spec(s) valid: {}",
                catalog.specs.len(),
                catalog.specs.iter().map(|s| format!("{}/{}", s.channel, s.name)).collect::<Vec<_>>().join(", ")
            );
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

/// The campaign files (`campaigns/*.toml`, or the given ones) against the activation
/// rules (`config/activation.toml` unless given) and the segment library on disk: what
/// the activate binary checks at cold start, plus the segments and their payload columns.
fn validate_campaigns(files: &[String], rules_file: Option<&String>) -> anyhow::Result<()> {
    let root = ariane_local::repo_root();
    let rules_path = rules_file.map(std::path::PathBuf::from).unwrap_or_else(|| root.join(ariane_activate::rules::EMBEDDED_PATH));
    let rules_text = std::fs::read_to_string(&rules_path).with_context(|| format!("read {}", rules_path.display()))?;
    let shown = rules_path.strip_prefix(&root).unwrap_or(&rules_path).display().to_string();
    let rules = match ariane_activate::rules::Rules::parse(&shown, &rules_text) {
        Ok(r) => {
            println!("activation rules valid: {shown}");
            r
        }
        Err(e) => {
            eprintln!("invalid: {e}");
            bail!("problem in activation rules")
        }
    };
    let paths = files_or_dir(files, &root.join("campaigns"), "toml")?;
    let mut segments = BTreeMap::new();
    for path in files_in(&root.join("segments"), "sql")? {
        if let Ok(d) = SegmentDefinition::parse(&path.display().to_string(), &std::fs::read_to_string(&path)?) {
            segments.insert(d.name, d.payload);
        }
    }
    let mut campaigns = Vec::new();
    let mut problems = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let shown = path.strip_prefix(&root).unwrap_or(path).display().to_string();
        match ariane_activate::campaign::Campaign::parse(&shown, &text) {
            Ok(c) => campaigns.push(c),
            Err(e) => problems.push(e.to_string()),
        }
    }
    let ctx = ariane_activate::campaign::CheckContext { segments: &segments, destinations: &rules.destinations };
    problems.extend(ariane_activate::campaign::check_library(&campaigns, &ctx).into_iter().map(|e| e.to_string()));
    if problems.is_empty() {
        println!(
            "{} campaign file(s) valid: {}",
            campaigns.len(),
            campaigns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        );
        Ok(())
    } else {
        for p in &problems {
            eprintln!("invalid: {p}");
        }
        bail!("{} problem(s) in campaign files", problems.len())
    }
}

async fn validate(files: &[String]) -> anyhow::Result<()> {
    let is_campaign =
        |f: &String| f.ends_with(".toml") && std::path::Path::new(f).parent().and_then(|p| p.file_name()).is_some_and(|n| n == "campaigns");
    let (activation_files, files): (Vec<String>, Vec<String>) =
        files.iter().cloned().partition(|f| std::path::Path::new(f).file_name().is_some_and(|n| n == "activation.toml"));
    let (campaign_files, files): (Vec<String>, Vec<String>) = files.into_iter().partition(is_campaign);
    if !(campaign_files.is_empty() && activation_files.is_empty()) && files.is_empty() {
        return validate_campaigns(&campaign_files, activation_files.first());
    }
    let campaigns = if files.is_empty() { validate_campaigns(&[], None) } else { Ok(()) };
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
    let paths = files_or_dir(&files, &root.join("segments"), "sql")?;
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
    campaigns?;
    if problems.is_empty() {
        println!(
            "{} segment file(s) valid: {}",
            definitions.len(),
            definitions.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
        );
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
    // --webhook URL points every destination at URL/<destination> (e.g. a local receiver).
    if let Some(url) = arg(args, "--webhook") {
        let url = url.trim_end_matches('/');
        for (param, dest) in [("EmailWebhookUrl", "esp"), ("SmsWebhookUrl", "sms-gateway"), ("PushWebhookUrl", "push-provider")] {
            params.push((param.to_string(), format!("{url}/{dest}")));
        }
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
