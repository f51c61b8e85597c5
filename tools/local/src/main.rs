//! `ariane-local`: the local stack from the command line. `ariane-local --help` and
//! `ariane-local <command> --help` tell every option.
//!
//! The landing router and the ingest instance of every channel all run the `ingest`
//! binary, told apart by `INGEST_CHANNEL`; `cargo lambda watch` serves a binary with one
//! environment. `up` writes `.local/<stage>.env` for one watch serving every function,
//! `ingest` as the landing router, and `.local/<stage>.<LogicalId>.env` for each ingest
//! instance, to be served by a watch of its own and passed as
//! `--cargo-lambda-for IngestEcommerceFunction=http://127.0.0.1:9001`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use ariane_local::channel_specs;
use ariane_local::manifest::Manifest;
use ariane_local::runner::{Invoker, Runner};
use ariane_local::LocalStack;
use ariane_segments::definition::SegmentDefinition;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

mod demo;
mod identity_cmd;
mod profile_cmd;

/// The Ariane local stack: moto serving the AWS APIs, the SAM template deployed to it, the
/// functions run in this process or under `cargo lambda watch`, and the demo.
#[derive(Debug, Parser)]
#[command(name = "ariane-local", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the whole pipeline on generated multi-channel data against a local moto stack
    /// (its own, started and stopped here) and print what happened
    Demo(demo::DemoArgs),
    /// Validate segment and measure files, channel specs, identity and activation rules and campaign
    /// files, as the functions check them at cold start (default: all of them); with
    /// --sample, dry-run one channel spec on a local export
    Validate {
        /// Files to check (`segments/*.sql`, `measures/*.sql`, `channels/<channel>/*.toml`,
        /// `campaigns/*.toml`, `config/identity.toml`, `config/activation.toml`). A channel
        /// spec is checked with the other specs of its channel on disk (`channels/<channel>/`)
        #[arg(value_name = "FILE")]
        files: Vec<String>,
        #[command(flatten)]
        sample: SampleArgs,
    },
    /// Start moto, deploy infra/template.yaml to it and write .local/<stage>.env and
    /// .local/<stage>.manifest.json; runs until Ctrl-C
    Up(UpArgs),
    /// Play the stack's event source mappings (poll, invoke, settle, redrive) until every
    /// queue is empty
    Drain(RunnerArgs),
    /// Fire the segments schedule as EventBridge would and print the run summary
    Fire(FireArgs),
    /// Run the erasure purge now, as its daily schedule would, and print what it removed
    /// (landing objects, lake rows, audience memberships) for every pending erasure
    Purge(RunnerArgs),
    /// Operator commands on identity: lookup, profile, erase, repair
    Identity {
        #[command(subcommand)]
        command: identity_cmd::IdentityCommand,
    },
    /// What the platform knows of one person: `journey`, every touchpoint and purchase in
    /// time order across channels with the identity decisions that tied them together
    Profile {
        #[command(subcommand)]
        command: profile_cmd::ProfileCommand,
    },
}

/// The dry run of one channel spec on a local export.
#[derive(Debug, Args)]
struct SampleArgs {
    /// Dry-run the one channel spec given on this local export (any format the spec reads:
    /// CSV in its encoding, NDJSON, JSON array, Parquet; gzip or not), with no AWS: prints
    /// the first mapped events, the rejected rows with their line and reason, and the counts
    #[arg(long, value_name = "EXPORT")]
    sample: Option<PathBuf>,
    /// With --sample: how many mapped events to print
    #[arg(long, value_name = "N", default_value_t = 5, requires = "sample")]
    events: usize,
    /// With --sample: how many rejected rows to print at most
    #[arg(long, value_name = "N", default_value_t = 50, requires = "sample")]
    rejects: usize,
    /// With --sample: the landing key the export would have, to show which spec reads it
    /// (default: <channel>/<file name of the export>)
    #[arg(long, value_name = "KEY", requires = "sample")]
    key: Option<String>,
}

#[derive(Debug, Args)]
struct UpArgs {
    /// The stage (resource names and the files under .local/)
    #[arg(long, default_value = "dev")]
    stage: String,
    /// Point every webhook destination at URL/<destination> (`esp`, `sms-gateway`,
    /// `push-provider`), e.g. a local receiver
    #[arg(long, value_name = "URL")]
    webhook: Option<String>,
}

#[derive(Debug, Args)]
struct RunnerArgs {
    /// The manifest written by `ariane-local up` (.local/<stage>.manifest.json)
    #[arg(long, value_name = "PATH")]
    manifest: PathBuf,
    /// Invoke the functions under `cargo lambda watch` at URL instead of in this process
    #[arg(long, value_name = "URL")]
    cargo_lambda: Option<String>,
    /// Invoke one function (by logical id) at its own watch: `IngestPosFunction=http://127.0.0.1:9001`;
    /// repeatable; needs --cargo-lambda for the others
    #[arg(long, value_name = "ID=URL")]
    cargo_lambda_for: Vec<String>,
}

#[derive(Debug, Args)]
struct FireArgs {
    #[command(flatten)]
    runner: RunnerArgs,
    /// The schedule's time (RFC 3339); default: now
    #[arg(long, value_name = "RFC3339")]
    at: Option<DateTime<Utc>>,
    /// Run only these segments, whether due or not (`--segments vip,reactivation`)
    #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
    segments: Vec<String>,
    /// Run every segment, whether due or not
    #[arg(long)]
    force: bool,
    /// Compute the campaign report now, whether due or not
    #[arg(long)]
    report: bool,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let result = match cli.command {
        Cmd::Demo(args) => demo::demo(&args).await,
        Cmd::Validate { files, sample } => match &sample.sample {
            Some(export) => validate_sample(&files, export, &sample),
            None => validate(&files).await,
        },
        Cmd::Up(args) => up(&args).await,
        Cmd::Drain(args) => drain(&args).await,
        Cmd::Fire(args) => fire(&args).await,
        Cmd::Purge(args) => purge(&args).await,
        Cmd::Identity { command } => identity_cmd::run(&command).await,
        Cmd::Profile { command } => profile_cmd::run(&command).await,
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
    let given: Vec<PathBuf> = files.iter().map(Into::into).collect();
    let specs = channel_specs::spec_files(&root, &given)?;
    match channel_specs::catalog(&specs) {
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

/// `validate SPEC --sample EXPORT`: the spec checked with its channel's other specs, then
/// run on the export.
fn validate_sample(files: &[String], export: &std::path::Path, args: &SampleArgs) -> anyhow::Result<()> {
    let [spec] = files else { bail!("--sample needs exactly one channel spec (channels/<channel>/<name>.toml), got {}", files.len()) };
    if !spec.ends_with(".toml") {
        bail!("--sample needs a channel spec (a .toml file), got {spec}")
    }
    let show = channel_specs::Show { events: args.events, rejects: args.rejects };
    let mut out = std::io::stdout().lock();
    channel_specs::validate_sample(&ariane_local::repo_root(), spec.as_ref(), export, args.key.as_deref(), show, &mut out)?;
    Ok(())
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

/// The measure files given (planned one by one), or the whole `measures/` library (which
/// must also hold every measure the run reads).
async fn validate_measures(files: &[String]) -> anyhow::Result<()> {
    use ariane_measures::definition::{missing_required, validate, MeasureDefinition};
    let root = ariane_local::repo_root();
    let paths = files_or_dir(files, &root.join("measures"), "sql")?;
    let mut definitions = Vec::new();
    let mut problems = Vec::new();
    for path in &paths {
        let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        match MeasureDefinition::parse(&path.display().to_string(), &text) {
            Ok(d) => definitions.push(d),
            Err(e) => problems.push(e.to_string()),
        }
    }
    problems.extend(validate(&definitions, Utc::now()).await.into_iter().map(|e| e.to_string()));
    if files.is_empty() {
        problems.extend(missing_required(&definitions).into_iter().map(|e| e.to_string()));
    }
    if problems.is_empty() {
        println!(
            "{} measure file(s) valid: {}",
            definitions.len(),
            definitions.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
        );
        Ok(())
    } else {
        for p in &problems {
            eprintln!("invalid: {p}");
        }
        bail!("{} problem(s) in measure files", problems.len())
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
    let in_measures = |f: &String| std::path::Path::new(f).parent().and_then(|p| p.file_name()).is_some_and(|n| n == "measures");
    let (measure_files, files): (Vec<String>, Vec<String>) = files.into_iter().partition(in_measures);
    let measures = validate_measures(&measure_files).await;
    if !measure_files.is_empty() && files.is_empty() {
        return measures;
    }
    measures?;
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

async fn up(args: &UpArgs) -> anyhow::Result<()> {
    let stage = &args.stage;
    let mut params = Vec::new();
    if let Some(url) = &args.webhook {
        let url = url.trim_end_matches('/');
        for (param, dest) in [("EmailWebhookUrl", "esp"), ("SmsWebhookUrl", "sms-gateway"), ("PushWebhookUrl", "push-provider")] {
            params.push((param.to_string(), format!("{url}/{dest}")));
        }
    }
    let stack = LocalStack::start(stage, &params).await?;
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

async fn runner_from_args(args: &RunnerArgs) -> anyhow::Result<Runner> {
    let path = &args.manifest;
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(path).with_context(|| format!("{} (written by `ariane-local up`)", path.display()))?)?;
    let clients = ariane_shared::aws::Clients::from_env(&manifest.client_env()).await;
    let mut instances = BTreeMap::new();
    for pair in &args.cargo_lambda_for {
        let (id, url) = pair.split_once('=').with_context(|| format!("--cargo-lambda-for expects LogicalId=URL, got {pair}"))?;
        manifest.function(id)?;
        instances.insert(id.to_string(), url.to_string());
    }
    let invoker = match &args.cargo_lambda {
        Some(url) => Invoker::cargo_lambda_with_instances(url, instances),
        None if instances.is_empty() => Invoker::in_process(&manifest).await?,
        None => bail!("--cargo-lambda-for needs --cargo-lambda URL too"),
    };
    Runner::new(manifest, clients.sqs, invoker)
}

async fn drain(args: &RunnerArgs) -> anyhow::Result<()> {
    let report = runner_from_args(args).await?.drain().await?;
    println!("{report:?}");
    Ok(())
}

async fn fire(args: &FireArgs) -> anyhow::Result<()> {
    let at = args.at.unwrap_or_else(Utc::now);
    let mut detail = serde_json::json!({});
    if !args.segments.is_empty() {
        detail["segments"] = serde_json::json!(args.segments);
    }
    if args.force {
        detail["force"] = true.into();
    }
    if args.report {
        detail["report"] = true.into();
    }
    let response = runner_from_args(&args.runner).await?.fire_schedule_with(None, at, detail).await?;
    println!("{}", serde_json::to_string_pretty(&response)?);
    Ok(())
}

/// Fires the purge's schedule (`PurgeFunction`) and prints its summary.
async fn purge(args: &RunnerArgs) -> anyhow::Result<()> {
    let response = runner_from_args(args).await?.fire_schedule(Some("PurgeFunction"), Utc::now()).await?;
    println!("{}", serde_json::to_string_pretty(&response)?);
    Ok(())
}

#[cfg(test)]
mod cli_tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent_and_documented() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        for cmd in ["demo", "validate", "up", "drain", "fire", "purge", "identity", "profile"] {
            assert!(help.contains(cmd), "{cmd} in --help");
        }
        let fire = Cli::try_parse_from([
            "ariane-local",
            "fire",
            "--manifest",
            "m.json",
            "--at",
            "2026-11-23T00:00:00Z",
            "--segments",
            "vip,rfm",
            "--force",
        ])
        .unwrap();
        match fire.command {
            Cmd::Fire(f) => {
                assert_eq!(f.segments, vec!["vip", "rfm"]);
                assert!(f.force && !f.report);
                assert_eq!(f.at.unwrap().to_rfc3339(), "2026-11-23T00:00:00+00:00");
            }
            other => panic!("{other:?}"),
        }
        let bad = Cli::try_parse_from(["ariane-local", "fire", "--manifest", "m.json", "--at", "yesterday"]).unwrap_err().to_string();
        assert!(bad.contains("--at"), "{bad}");
        let dry = Cli::try_parse_from(["ariane-local", "validate", "channels/pos/x.toml", "--sample", "x.csv", "--events", "2"]).unwrap();
        match dry.command {
            Cmd::Validate { files, sample } => {
                assert_eq!(files, vec!["channels/pos/x.toml"]);
                assert_eq!((sample.sample, sample.events, sample.rejects), (Some(PathBuf::from("x.csv")), 2, 50));
            }
            other => panic!("{other:?}"),
        }
        let bad = Cli::try_parse_from(["ariane-local", "validate", "--events", "2"]).unwrap_err().to_string();
        assert!(bad.contains("--sample"), "--events needs --sample: {bad}");
        let up = Cli::try_parse_from(["ariane-local", "up", "--webhook", "http://127.0.0.1:8080"]).unwrap();
        assert!(matches!(up.command, Cmd::Up(UpArgs { ref stage, webhook: Some(_) }) if stage == "dev"));
    }
}
