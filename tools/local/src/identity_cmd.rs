//! `ariane-local identity ...`: operator commands on the identity of a local stack.
//!
//! - `lookup` and `profile` read the profiles table directly (the resolver over
//!   DynamoDB, the code the identity function runs) and print the profile as JSON;
//! - `erase` and `repair` send the message the production operator sends to the identity
//!   queue (`{"erase": ...}`, `{"exclude": ...}`), so the deployed function does the work;
//!   locally, `ariane-local drain` then plays the queue.
//!
//! Values are normalised as ingest normalises them (e-mails trimmed and lowercased,
//! phones to E.164 in the rules' region, tokens trimmed), since identity stores only the
//! hash of the normalised value: a differently written value would silently miss.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ariane_identity::handler::{normalize_request, ErasureReport, IdentityMessage};
use ariane_identity::resolver::Resolver;
use ariane_identity::rules::{parse_kind, Rules, ALL_KINDS};
use ariane_identity::store::DynamoStore;
use ariane_local::manifest::Manifest;
use ariane_shared::identifiers::{identifier_hash, Identifier, IdentifierKind};
use clap::{Args, Subcommand};

/// `ariane-local identity <command>`.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum IdentityCommand {
    /// Print the profile an identifier resolves to (as JSON), or why it resolves to none
    Lookup(IdentifierArgs),
    /// Print a profile by id (a merged-away id follows to the survivor)
    Profile {
        #[command(flatten)]
        manifest: ManifestArg,
        /// The profile id (`p_...`)
        #[arg(long, value_name = "PROFILE_ID")]
        id: String,
    },
    /// Send {"erase": ...} to the identity queue: the identity function erases the person
    /// (locally, `ariane-local drain` then plays the queue)
    Erase(IdentifierArgs),
    /// Send {"exclude": ...} to the identity queue: the identifier stops linking and the
    /// profiles it wrongly merged split again
    Repair(IdentifierArgs),
    /// Print the report of the erasure requested by an identifier (what was removed
    /// where, counts, what the erasure does not reach)
    ErasureReport(IdentifierArgs),
}

/// The local stack to talk to.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct ManifestArg {
    /// The manifest written by `ariane-local up` (.local/<stage>.manifest.json)
    #[arg(long, value_name = "PATH")]
    pub manifest: PathBuf,
}

/// An identifier, normalised as ingest normalises the exports.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct IdentifierArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// customer_id, email, phone, loyalty_card, device_id, push_token or cookie_id
    #[arg(long, value_name = "KIND", value_parser = kind)]
    pub kind: IdentifierKind,
    /// The value as written anywhere (`Marie@X.fr`, `06 12 34 56 78`): it is normalised
    #[arg(long, value_name = "VALUE")]
    pub value: String,
}

/// A resolved `identity` command line.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Lookup { manifest: PathBuf, id: Identifier },
    Profile { manifest: PathBuf, profile_id: String },
    Erase { manifest: PathBuf, id: Identifier },
    Repair { manifest: PathBuf, id: Identifier },
    ErasureReport { manifest: PathBuf, id: Identifier },
}

/// The identifier kind named on the command line.
pub fn kind(name: &str) -> anyhow::Result<IdentifierKind> {
    parse_kind(name.trim()).with_context(|| {
        format!("unknown identifier kind {name:?}: expected one of {}", ALL_KINDS.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))
    })
}

/// The value as ingest writes it (identity keeps only the hash of that form): the
/// identity function's own normalisation of requests.
pub fn normalise(kind: IdentifierKind, raw: &str) -> anyhow::Result<String> {
    let rules = Rules::embedded()?;
    Ok(normalize_request(&Identifier::new(kind, raw), &rules).map_err(|e| anyhow::anyhow!("--value: {e}"))?.value)
}

impl Command {
    /// Normalises the identifier of a parsed command line.
    pub fn from_args(args: &IdentityCommand) -> anyhow::Result<Command> {
        let id = |a: &IdentifierArgs| -> anyhow::Result<(PathBuf, Identifier)> {
            Ok((a.manifest.manifest.clone(), Identifier::new(a.kind, normalise(a.kind, &a.value)?)))
        };
        Ok(match args {
            IdentityCommand::Lookup(a) => {
                let (manifest, id) = id(a)?;
                Command::Lookup { manifest, id }
            }
            IdentityCommand::Erase(a) => {
                let (manifest, id) = id(a)?;
                Command::Erase { manifest, id }
            }
            IdentityCommand::Repair(a) => {
                let (manifest, id) = id(a)?;
                Command::Repair { manifest, id }
            }
            IdentityCommand::ErasureReport(a) => {
                let (manifest, id) = id(a)?;
                Command::ErasureReport { manifest, id }
            }
            IdentityCommand::Profile { manifest, id } => Command::Profile { manifest: manifest.manifest.clone(), profile_id: id.clone() },
        })
    }

    fn manifest(&self) -> &Path {
        match self {
            Command::Lookup { manifest, .. }
            | Command::Profile { manifest, .. }
            | Command::Erase { manifest, .. }
            | Command::Repair { manifest, .. }
            | Command::ErasureReport { manifest, .. } => manifest,
        }
    }
}

/// The queue message an erasure or a repair sends (the handler's own message type).
pub fn message(command: &Command) -> Option<IdentityMessage> {
    match command {
        Command::Erase { id, .. } => Some(IdentityMessage::Erase { erase: id.clone() }),
        Command::Repair { id, .. } => Some(IdentityMessage::Exclude { exclude: id.clone() }),
        _ => None,
    }
}

pub fn load_manifest(path: &Path) -> anyhow::Result<Manifest> {
    let bytes = std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the manifest {}: {e} (start the local stack with `ariane-local up`, which writes .local/<stage>.manifest.json)",
            path.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a manifest written by `ariane-local up`", path.display()))
}

pub async fn run(args: &IdentityCommand) -> anyhow::Result<()> {
    let command = Command::from_args(args)?;
    let manifest = load_manifest(command.manifest())?;
    let clients = ariane_shared::aws::Clients::from_env(&manifest.client_env()).await;
    // Identifier items are keyed with the stack's pepper: read it as the function does.
    let identity_env = manifest.function_env("IdentityFunction")?;
    ariane_shared::aws::install_lake_pepper(&identity_env, &clients.config).await?;
    let table = manifest.output("ProfilesTableName")?.to_string();
    let rules = Rules::embedded()?;
    let resolver = Resolver::new(DynamoStore { client: clients.dynamodb.clone(), table }, rules);
    match &command {
        Command::Lookup { id, .. } => {
            let pid = resolver.lookup(id).await?;
            let profile = match &pid {
                Some(pid) => resolver.profile(pid).await?,
                None => None,
            };
            match profile {
                Some(p) => println!("{}", serde_json::to_string_pretty(&p)?),
                None => bail!("no profile for {}:{}: {}", id.kind, id.value, resolver.why_unlinked(id).await?),
            }
        }
        Command::ErasureReport { id, .. } => {
            let bucket = manifest.output("LakeBucketName")?;
            let key = report_key(id);
            let got = clients.s3.get_object().bucket(bucket).key(&key).send().await;
            match got {
                Ok(o) => {
                    let bytes = o.body.collect().await.with_context(|| format!("read s3://{bucket}/{key}"))?.into_bytes();
                    let report: ErasureReport =
                        serde_json::from_slice(&bytes).with_context(|| format!("s3://{bucket}/{key} is not an erasure report"))?;
                    println!("{}", serde_json::to_string_pretty(&report)?);
                }
                Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                    bail!("no erasure report for {}:{} at s3://{bucket}/{key}: not requested, or not processed yet", id.kind, id.value)
                }
                Err(e) => return Err(anyhow::Error::new(e).context(format!("s3:GetObject s3://{bucket}/{key}"))),
            }
        }
        Command::Profile { profile_id, .. } => match resolver.profile(profile_id).await? {
            Some(p) => println!("{}", serde_json::to_string_pretty(&p)?),
            None => bail!("no profile {profile_id} (unknown, or erased)"),
        },
        Command::Erase { id, .. } | Command::Repair { id, .. } => {
            let body = serde_json::to_string(&message(&command).expect("erase or repair"))?;
            let now = match resolver.lookup(id).await? {
                Some(pid) => format!("{}:{} currently resolves to {pid}", id.kind, id.value),
                None => format!("{}:{} resolves to no profile now: {}", id.kind, id.value, resolver.why_unlinked(id).await?),
            };
            let url = manifest.output("IdentityQueueUrl")?;
            let sent = clients
                .sqs
                .send_message()
                .queue_url(url)
                .message_body(&body)
                .send()
                .await
                .with_context(|| format!("sqs:SendMessage {url}"))?;
            eprintln!("{now}");
            println!("sent {body} to {url} (message {})", sent.message_id().unwrap_or("?"));
            if matches!(command, Command::Erase { .. }) {
                println!(
                    "its report: s3://{}/{} (`ariane-local identity erasure-report` prints it)",
                    manifest.output("LakeBucketName")?,
                    report_key(id)
                );
            }
            println!(
                "the identity function does the work when it receives the message; locally, run:\n  cargo run -p ariane-local -- drain --manifest {}",
                command.manifest().display()
            );
        }
    }
    Ok(())
}

/// Where the identity function writes the report of an erasure requested by `id` (keyed
/// with the stack's pepper, installed by [`run`]).
fn report_key(id: &Identifier) -> String {
    ariane_shared::lake::erasure_report_key(id.kind.as_str(), &identifier_hash(id.kind, &id.value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: IdentityCommand,
    }

    fn parse(s: &str) -> anyhow::Result<Command> {
        let cli = Cli::try_parse_from(std::iter::once("identity").chain(s.split_whitespace()))?;
        Command::from_args(&cli.command)
    }

    #[test]
    fn erase_and_repair_send_the_handler_messages() {
        let erase = parse("erase --manifest m.json --kind email --value  Marie@X.fr").unwrap();
        let body = serde_json::to_value(message(&erase).unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"erase": {"kind": "email", "value": "marie@x.fr"}}));
        let repair = parse("repair --kind phone --value 06.12.34.56.78 --manifest m.json").unwrap();
        let text = serde_json::to_string(&message(&repair).unwrap()).unwrap();
        assert_eq!(text, r#"{"exclude":{"kind":"phone","value":"+33612345678"}}"#, "a national number, read in FR");
        // What the handler parses back.
        assert_eq!(serde_json::from_str::<IdentityMessage>(&text).unwrap(), message(&repair).unwrap());
        // The report is found by the same normalisation and sends nothing.
        let report = parse("erasure-report --manifest m.json --kind email --value Marie@X.fr").unwrap();
        assert_eq!(report, Command::ErasureReport { manifest: "m.json".into(), id: Identifier::new(IdentifierKind::Email, "marie@x.fr") });
        assert_eq!(message(&report), None);
        assert_eq!(
            report_key(&Identifier::new(IdentifierKind::Email, "marie@x.fr")),
            format!("reports/erasures/email-{}", identifier_hash(IdentifierKind::Email, "marie@x.fr")) + ".json"
        );
        assert_eq!(
            parse("profile --manifest m.json --id p_1").unwrap(),
            Command::Profile { manifest: "m.json".into(), profile_id: "p_1".into() }
        );
    }

    #[test]
    fn clear_errors() {
        let err = |s: &str| format!("{:#}", parse(s).unwrap_err());
        assert!(err("lookup --manifest m.json --kind mail --value a@b.fr")
            .contains("unknown identifier kind \"mail\": expected one of customer_id, email"));
        assert!(err("lookup --kind email --value a@b.fr").contains("--manifest <PATH>"));
        assert!(err("lookup --manifest m.json --kind phone --value 12").contains("not a valid phone number"));
        assert!(err("lookup --manifest m.json --kind email").contains("--value <VALUE>"));
        assert!(err("forget --manifest m.json").contains("unrecognized subcommand"));
        let missing = load_manifest(Path::new("/nonexistent/dev.manifest.json")).unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/dev.manifest.json") && missing.contains("ariane-local up"), "{missing}");
    }
}
