//! `ariane-local identity ...`: operator commands on the identity of a local stack.
//!
//! - `lookup` and `profile` read the profiles table directly (the resolver over
//!   DynamoDB, the code the identity function runs) and print the profile as JSON;
//! - `erase` and `repair` send the message the production operator sends to the identity
//!   queue (`{"erase": ...}`, `{"exclude": ...}`), so the deployed function does the work;
//!   locally, `ariane-local drain` then plays the queue.
//!
//! Values are normalised as ingest normalises them (e-mails trimmed and lowercased;
//! phones must be in E.164 form), since identity stores only the hash of the normalised
//! value: a differently written value would silently miss.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ariane_identity::handler::IdentityMessage;
use ariane_identity::partition::IdRef;
use ariane_identity::resolver::Resolver;
use ariane_identity::rules::{parse_kind, Rules, ALL_KINDS};
use ariane_identity::store::{DynamoStore, Item, ItemStore, Key};
use ariane_local::manifest::Manifest;
use ariane_shared::identifiers::{identifier_hash, normalize_email, Identifier, IdentifierKind};

pub const USAGE: &str = "usage:
  ariane-local identity lookup  --manifest PATH --kind KIND --value VALUE   print the profile an identifier resolves to
  ariane-local identity profile --manifest PATH --id PROFILE_ID             print a profile (merged-away ids follow to the survivor)
  ariane-local identity erase   --manifest PATH --kind KIND --value VALUE   send {\"erase\": ...} to the identity queue
  ariane-local identity repair  --manifest PATH --kind KIND --value VALUE   send {\"exclude\": ...} to the identity queue
KIND: customer_id, email, phone, loyalty_card, device_id, push_token, cookie_id
PATH: the manifest written by `ariane-local up` (.local/<stage>.manifest.json)";

/// A parsed `identity` command line.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Lookup { manifest: PathBuf, id: Identifier },
    Profile { manifest: PathBuf, profile_id: String },
    Erase { manifest: PathBuf, id: Identifier },
    Repair { manifest: PathBuf, id: Identifier },
}

fn opt(args: &[String], name: &str) -> anyhow::Result<Option<String>> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => match args.get(i + 1) {
            Some(v) if !v.starts_with("--") => Ok(Some(v.clone())),
            _ => bail!("{name} needs a value\n{USAGE}"),
        },
    }
}

fn required(args: &[String], name: &str, what: &str) -> anyhow::Result<String> {
    opt(args, name)?.with_context(|| format!("{name} {what} is required\n{USAGE}"))
}

/// The identifier kind named on the command line.
pub fn kind(name: &str) -> anyhow::Result<IdentifierKind> {
    parse_kind(name.trim()).with_context(|| {
        format!("unknown identifier kind {name:?}: expected one of {}", ALL_KINDS.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))
    })
}

/// The value as ingest writes it (identity keeps only the hash of that form).
pub fn normalise(kind: IdentifierKind, raw: &str) -> anyhow::Result<String> {
    let value = raw.trim();
    if value.is_empty() {
        bail!("--value is empty");
    }
    Ok(match kind {
        IdentifierKind::Email => normalize_email(value).map_err(|e| anyhow::anyhow!("{e}"))?,
        IdentifierKind::Phone => {
            let compact: String = value.chars().filter(|c| !matches!(c, ' ' | '.' | '-' | '(' | ')')).collect();
            let digits = compact.strip_prefix('+').unwrap_or_default();
            if digits.len() < 8 || !digits.chars().all(|c| c.is_ascii_digit()) {
                bail!("phone {raw:?} is not in E.164 form: identity stores phones as ingest normalises them, e.g. +33612345678");
            }
            compact
        }
        _ => value.to_string(),
    })
}

impl Command {
    pub fn parse(args: &[String]) -> anyhow::Result<Command> {
        let Some(sub) = args.first() else { bail!("{USAGE}") };
        let rest = &args[1..];
        let manifest = || required(rest, "--manifest", "PATH (written by `ariane-local up`)").map(PathBuf::from);
        let id = || -> anyhow::Result<Identifier> {
            let k = kind(&required(rest, "--kind", "KIND")?)?;
            Ok(Identifier::new(k, normalise(k, &required(rest, "--value", "VALUE")?)?))
        };
        Ok(match sub.as_str() {
            "lookup" => Command::Lookup { manifest: manifest()?, id: id()? },
            "erase" => Command::Erase { manifest: manifest()?, id: id()? },
            "repair" => Command::Repair { manifest: manifest()?, id: id()? },
            "profile" => Command::Profile { manifest: manifest()?, profile_id: required(rest, "--id", "PROFILE_ID")? },
            other => bail!("unknown identity command {other:?}\n{USAGE}"),
        })
    }

    fn manifest(&self) -> &Path {
        match self {
            Command::Lookup { manifest, .. }
            | Command::Profile { manifest, .. }
            | Command::Erase { manifest, .. }
            | Command::Repair { manifest, .. } => manifest,
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

pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let command = Command::parse(args)?;
    let manifest = load_manifest(command.manifest())?;
    let clients = ariane_shared::aws::Clients::from_env(&manifest.client_env()).await;
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
                None => bail!("no profile for {}:{}: {}", id.kind, id.value, why_unlinked(&resolver, id).await?),
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
                None => format!("{}:{} resolves to no profile now: {}", id.kind, id.value, why_unlinked(&resolver, id).await?),
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
            println!(
                "the identity function does the work when it receives the message; locally, run:\n  cargo run -p ariane-local -- drain --manifest {}",
                command.manifest().display()
            );
        }
    }
    Ok(())
}

/// Why an identifier resolves to no profile, from its identifier item.
async fn why_unlinked(resolver: &Resolver<DynamoStore>, id: &Identifier) -> anyhow::Result<&'static str> {
    if !resolver.rules.usable(id.kind, &id.value) {
        return Ok("the value is blocked by config/identity.toml");
    }
    let key = Key::id(&IdRef { kind: id.kind, hash: identifier_hash(id.kind, &id.value) });
    let item = resolver.store.get_many(&[key]).await?.into_iter().find_map(|r| match r.item {
        Item::Id(i) => Some(i),
        _ => None,
    });
    Ok(match item {
        None => "never observed (check the value's spelling)",
        Some(i) if i.suppressed => "erased (a suppression entry remains)",
        Some(i) if i.excluded => "excluded by a repair",
        Some(i) if i.co.shared => "a shared value, which links no one",
        Some(_) => "observed but attached to no profile",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn erase_and_repair_send_the_handler_messages() {
        let erase = Command::parse(&args("erase --manifest m.json --kind email --value  Marie@X.fr")).unwrap();
        let body = serde_json::to_value(message(&erase).unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"erase": {"kind": "email", "value": "marie@x.fr"}}));
        let repair = Command::parse(&args("repair --kind phone --value +33-6-12-34-56-78 --manifest m.json")).unwrap();
        let text = serde_json::to_string(&message(&repair).unwrap()).unwrap();
        assert_eq!(text, r#"{"exclude":{"kind":"phone","value":"+33612345678"}}"#);
        // What the handler parses back.
        assert_eq!(serde_json::from_str::<IdentityMessage>(&text).unwrap(), message(&repair).unwrap());
        assert_eq!(
            Command::parse(&args("profile --manifest m.json --id p_1")).unwrap(),
            Command::Profile { manifest: "m.json".into(), profile_id: "p_1".into() }
        );
    }

    #[test]
    fn clear_errors() {
        let err = |s: &str| format!("{:#}", Command::parse(&args(s)).unwrap_err());
        assert!(err("lookup --manifest m.json --kind mail --value a@b.fr")
            .contains("unknown identifier kind \"mail\": expected one of customer_id, email"));
        assert!(err("lookup --kind email --value a@b.fr").contains("--manifest PATH"));
        assert!(err("lookup --manifest m.json --kind phone --value 0612345678").contains("E.164"));
        assert!(err("lookup --manifest m.json --kind email").contains("--value VALUE is required"));
        assert!(err("forget --manifest m.json").contains("unknown identity command"));
        let missing = load_manifest(Path::new("/nonexistent/dev.manifest.json")).unwrap_err().to_string();
        assert!(missing.contains("/nonexistent/dev.manifest.json") && missing.contains("ariane-local up"), "{missing}");
    }
}
