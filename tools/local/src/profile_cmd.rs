//! `ariane-local profile ...`: what the platform knows of one person, on a local stack.
//!
//! - `journey`: one person's journey (the "360° view", issue 18): every touchpoint and
//!   purchase in time order across channels, with the identity decisions that tied them
//!   together (`ariane_journey::journey`, the code the `journey` function runs for an
//!   operator's invocation in production), read from the stack's profiles table
//!   and lake bucket. Identifiers are shown as kind and hash prefix, never in clear.

use anyhow::Context;
use ariane_identity::resolver::Resolver;
use ariane_identity::rules::Rules;
use ariane_identity::store::DynamoStore;
use ariane_journey::{journey, Lake};
use ariane_shared::identifiers::Identifier;
use clap::Subcommand;

use crate::identity_cmd::{load_manifest, normalise, IdentifierArgs};

/// `ariane-local profile <command>`.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum ProfileCommand {
    /// One person's journey (the 360° view): every touchpoint and purchase in time order
    /// across channels, with the identity decisions that tied them together
    Journey {
        #[command(flatten)]
        id: IdentifierArgs,
        /// Print the journey as JSON (the journey function's response) instead of text
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: &ProfileCommand) -> anyhow::Result<()> {
    let ProfileCommand::Journey { id: args, json } = command;
    let id = Identifier::new(args.kind, normalise(args.kind, &args.value)?);
    let manifest = load_manifest(&args.manifest.manifest)?;
    let clients = ariane_shared::aws::Clients::from_env(&manifest.client_env()).await;
    // Identifier items and the lake's identity keys are keyed with the stack's pepper.
    let identity_env = manifest.function_env("IdentityFunction")?;
    ariane_shared::aws::install_lake_pepper(&identity_env, &clients.config).await?;
    let table = manifest.output("ProfilesTableName")?.to_string();
    let resolver = Resolver::new(DynamoStore { client: clients.dynamodb.clone(), table }, Rules::embedded()?);
    let bucket = manifest.output("LakeBucketName")?.to_string();
    let store = ariane_segments::catalog::s3_store(&clients.config, &bucket).with_context(|| format!("the lake bucket {bucket}"))?;
    let journey = journey(&resolver, &Lake { bucket, store }, &id).await?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&journey)?);
    } else {
        print!("{journey}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ariane_shared::identifiers::IdentifierKind;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ProfileCommand,
    }

    #[test]
    fn journey_takes_an_identifier_and_json() {
        let cli = Cli::try_parse_from(["profile", "journey", "--manifest", "m.json", "--kind", "email", "--value", "Marie@X.fr", "--json"])
            .unwrap();
        let ProfileCommand::Journey { id, json } = cli.command;
        assert!(json);
        assert_eq!((id.kind, id.value.as_str(), id.manifest.manifest.to_str()), (IdentifierKind::Email, "Marie@X.fr", Some("m.json")));
        let text = Cli::try_parse_from(["profile", "journey", "--manifest", "m.json", "--kind", "phone", "--value", "0612345678"]).unwrap();
        assert!(matches!(text.command, ProfileCommand::Journey { json: false, .. }));
        let err =
            Cli::try_parse_from(["profile", "journey", "--manifest", "m.json", "--kind", "mail", "--value", "x"]).unwrap_err().to_string();
        assert!(err.contains("unknown identifier kind"), "{err}");
    }
}
