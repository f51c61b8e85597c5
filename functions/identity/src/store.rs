//! The DynamoDB profile store.

use std::collections::HashMap;

use ariane_shared::error::{AwsError, SdkResultExt};
use ariane_shared::identifiers::{stable_id, Identifier, IdentifierKind};
use ariane_shared::model::{Observation, ProfileId};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

pub const PROFILE_SK: &str = "PROFILE";
pub const ID_SK: &str = "ID";

pub fn profile_pk(profile_id: &str) -> String {
    format!("PROFILE#{profile_id}")
}

pub fn identifier_pk(id: &Identifier) -> String {
    format!("ID#{}#{}", id.kind, id.hash())
}

/// What resolving one observation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    Created(ProfileId),
    Updated(ProfileId),
    /// No identifier this version resolves on (no usable email).
    Skipped,
}

impl Resolution {
    pub fn profile_id(&self) -> Option<&str> {
        match self {
            Resolution::Created(p) | Resolution::Updated(p) => Some(p),
            Resolution::Skipped => None,
        }
    }
}

/// The profile id a new profile gets when created from this observation: deterministic,
/// so a retried creation after a crash cannot mint a second id.
pub fn new_profile_id(observation_id: &str, key: &Identifier) -> ProfileId {
    format!("p_{}", &stable_id(&["profile", observation_id, &key.hash()])[..24])
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn string_set(values: impl IntoIterator<Item = String>) -> Option<AttributeValue> {
    let mut v: Vec<String> = values.into_iter().collect();
    v.sort();
    v.dedup();
    (!v.is_empty()).then_some(AttributeValue::Ss(v))
}

fn values_of(obs: &Observation, kind: IdentifierKind) -> Vec<String> {
    obs.identifiers.iter().filter(|i| i.kind == kind).map(|i| i.value.clone()).collect()
}

/// DynamoDB-backed store.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl DynamoStore {
    /// Resolves one observation: find the profile of its email, else create it, then
    /// merge the observation into it. Idempotent: replaying it changes nothing more.
    pub async fn resolve(&self, obs: &Observation) -> Result<Resolution, AwsError> {
        let Some(key) = obs.identifiers.iter().find(|i| i.kind == IdentifierKind::Email).cloned() else {
            return Ok(Resolution::Skipped);
        };
        if let Some(pid) = self.lookup(&key).await? {
            self.update(&pid, obs).await?;
            return Ok(Resolution::Updated(pid));
        }
        let pid = new_profile_id(&obs.observation_id, &key);
        match self.create(&pid, &key, obs).await {
            Ok(()) => Ok(Resolution::Created(pid)),
            Err(e) if e.is_code("TransactionCanceledException") => {
                // Someone else created the identifier (or this very profile) first: attach.
                let pid = self.lookup(&key).await?.ok_or(e)?;
                self.update(&pid, obs).await?;
                Ok(Resolution::Updated(pid))
            }
            Err(e) => Err(e),
        }
    }

    /// The profile id an identifier belongs to.
    pub async fn lookup(&self, id: &Identifier) -> Result<Option<ProfileId>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(identifier_pk(id)))
            .key("sk", s(ID_SK))
            .consistent_read(true)
            .send()
            .await
            .aws("dynamodb:GetItem identifier")?;
        Ok(out.item().and_then(|i| i.get("profile_id")).and_then(|v| v.as_s().ok()).cloned())
    }

    async fn create(&self, pid: &str, key: &Identifier, obs: &Observation) -> Result<(), AwsError> {
        let at = obs.observed_at.to_rfc3339();
        let mut profile: HashMap<String, AttributeValue> = HashMap::new();
        profile.insert("pk".into(), s(profile_pk(pid)));
        profile.insert("sk".into(), s(PROFILE_SK));
        profile.insert("profile_id".into(), s(pid));
        profile.insert("email".into(), s(key.value.clone()));
        profile.insert("first_seen".into(), s(at.clone()));
        profile.insert("last_seen".into(), s(at.clone()));
        profile.insert("traits_at".into(), s(at.clone()));
        profile.insert("created_by".into(), s(obs.observation_id.clone()));
        for (name, value) in trait_values(obs) {
            profile.insert(name.into(), s(value));
        }
        if let Some(opt_in) = obs.email_opt_in() {
            profile.insert("email_opt_in".into(), AttributeValue::Bool(opt_in));
            profile.insert("email_opt_in_at".into(), s(at.clone()));
        }
        for (attr, values) in set_values(obs) {
            if let Some(set) = string_set(values) {
                profile.insert(attr.into(), set);
            }
        }
        let id_item: HashMap<String, AttributeValue> = [
            ("pk".to_string(), s(identifier_pk(key))),
            ("sk".to_string(), s(ID_SK)),
            ("profile_id".to_string(), s(pid)),
            ("kind".to_string(), s(key.kind.as_str())),
            ("linked_at".to_string(), s(at)),
        ]
        .into_iter()
        .collect();
        let put = |item: HashMap<String, AttributeValue>| {
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .expect("table and item are set"),
                )
                .build()
        };
        self.client
            .transact_write_items()
            .transact_items(put(profile))
            .transact_items(put(id_item))
            .client_request_token(stable_id(&["create", pid])[..32].to_string())
            .send()
            .await
            .aws("dynamodb:TransactWriteItems create profile")?;
        Ok(())
    }

    async fn update(&self, pid: &str, obs: &Observation) -> Result<(), AwsError> {
        let at = obs.observed_at.to_rfc3339();
        let mut names: HashMap<String, String> = HashMap::new();
        let mut values: HashMap<String, AttributeValue> = HashMap::new();
        let mut adds = Vec::new();
        for (attr, vals) in set_values(obs) {
            if let Some(set) = string_set(vals) {
                let n = format!("#{attr}");
                let v = format!(":{attr}");
                adds.push(format!("{n} {v}"));
                names.insert(n, attr.to_string());
                values.insert(v, set);
            }
        }
        let mut sets = vec!["#last_seen = :at".to_string(), "#traits_at = :at".to_string()];
        names.insert("#last_seen".into(), "last_seen".into());
        names.insert("#traits_at".into(), "traits_at".into());
        values.insert(":at".into(), s(at.clone()));
        for (name, value) in trait_values(obs) {
            sets.push(format!("#{name} = :{name}"));
            names.insert(format!("#{name}"), name.to_string());
            values.insert(format!(":{name}"), s(value));
        }
        if let Some(opt_in) = obs.email_opt_in() {
            sets.push("#email_opt_in = :email_opt_in, #email_opt_in_at = :at".into());
            names.insert("#email_opt_in".into(), "email_opt_in".into());
            names.insert("#email_opt_in_at".into(), "email_opt_in_at".into());
            values.insert(":email_opt_in".into(), AttributeValue::Bool(opt_in));
        }
        let add_clause = if adds.is_empty() { String::new() } else { format!(" ADD {}", adds.join(", ")) };
        // Newest observation: traits, consent and last_seen follow it (latest value wins).
        let newest = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(profile_pk(pid)))
            .key("sk", s(PROFILE_SK))
            .update_expression(format!("SET {}{add_clause}", sets.join(", ")))
            .condition_expression("attribute_exists(pk) AND (attribute_not_exists(#traits_at) OR #traits_at <= :at)")
            .set_expression_attribute_names(Some(names.clone()))
            .set_expression_attribute_values(Some(values.clone()))
            .send()
            .await
            .aws("dynamodb:UpdateItem profile");
        match newest {
            Ok(_) => return Ok(()),
            Err(e) if e.is_code("ConditionalCheckFailedException") => {}
            Err(e) => return Err(e),
        }
        // An older observation: only add what it knows, and move first_seen back if needed.
        if !adds.is_empty() {
            let names: HashMap<String, String> = names.into_iter().filter(|(k, _)| adds.iter().any(|a| a.starts_with(k.as_str()))).collect();
            let values: HashMap<String, AttributeValue> =
                values.into_iter().filter(|(k, _)| adds.iter().any(|a| a.ends_with(k.as_str()))).collect();
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(profile_pk(pid)))
                .key("sk", s(PROFILE_SK))
                .update_expression(format!("ADD {}", adds.join(", ")))
                .condition_expression("attribute_exists(pk)")
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .send()
                .await
                .aws("dynamodb:UpdateItem profile sets")?;
        }
        let earlier = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(profile_pk(pid)))
            .key("sk", s(PROFILE_SK))
            .update_expression("SET first_seen = :at")
            .condition_expression("attribute_exists(pk) AND first_seen > :at")
            .expression_attribute_values(":at", s(at))
            .send()
            .await
            .aws("dynamodb:UpdateItem first_seen");
        match earlier {
            Ok(_) => Ok(()),
            Err(e) if e.is_code("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn trait_values(obs: &Observation) -> Vec<(&'static str, String)> {
    let t = &obs.traits;
    [("first_name", &t.first_name), ("last_name", &t.last_name), ("postal_code", &t.postal_code), ("city", &t.city)]
        .into_iter()
        .filter_map(|(n, v)| v.clone().map(|v| (n, v)))
        .collect()
}

fn set_values(obs: &Observation) -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("channels", vec![obs.channel.clone()]),
        ("phones", values_of(obs, IdentifierKind::Phone)),
        ("customer_ids", values_of(obs, IdentifierKind::CustomerId)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_ids_are_deterministic() {
        let key = Identifier::new(IdentifierKind::Email, "a@b.fr");
        let a = new_profile_id("o1", &key);
        assert_eq!(a, new_profile_id("o1", &key));
        assert_ne!(a, new_profile_id("o2", &key));
        assert!(a.starts_with("p_") && a.len() == 26);
        assert!(identifier_pk(&key).starts_with("ID#email#"));
    }
}
