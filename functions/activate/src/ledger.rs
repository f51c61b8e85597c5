//! The idempotency ledger (DynamoDB, TTL on `expires_at`).

use std::time::Duration;

use ariane_shared::error::{AwsError, SdkResultExt};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;

/// Ledger items live 30 days, far longer than any redelivery or re-run.
const RETENTION_DAYS: i64 = 30;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This instance holds the claim: send, then [`Ledger::complete`].
    Acquired,
    /// The effect already happened (or was deliberately skipped).
    AlreadyDone(String),
    /// Another instance holds a live claim: retry later.
    InFlight,
}

#[derive(Clone, Debug)]
pub struct Ledger {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

fn pk(key: &str) -> AttributeValue {
    AttributeValue::S(format!("SEND#{key}"))
}

impl Ledger {
    pub async fn claim(&self, key: &str, lease: Duration) -> Result<Claim, AwsError> {
        let now = Utc::now().timestamp();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", pk(key))
            .item("status", AttributeValue::S("claimed".into()))
            .item("lease_until", AttributeValue::N((now + lease.as_secs() as i64).to_string()))
            .item("claimed_at", AttributeValue::S(Utc::now().to_rfc3339()))
            .item("expires_at", AttributeValue::N((now + RETENTION_DAYS * 86_400).to_string()))
            .condition_expression("attribute_not_exists(pk) OR (#s = :claimed AND lease_until < :now)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":claimed", AttributeValue::S("claimed".into()))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .await
            .aws("dynamodb:PutItem claim");
        match result {
            Ok(_) => Ok(Claim::Acquired),
            Err(e) if e.is_code("ConditionalCheckFailedException") => {
                let item = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", pk(key))
                    .consistent_read(true)
                    .send()
                    .await
                    .aws("dynamodb:GetItem claim")?;
                let status = item.item().and_then(|i| i.get("status")).and_then(|s| s.as_s().ok()).cloned();
                match status.as_deref() {
                    Some("claimed") | None => Ok(Claim::InFlight),
                    Some(done) => Ok(Claim::AlreadyDone(done.to_string())),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Records the outcome (`sent`, `skipped_no_profile`, ...) of a claimed effect.
    pub async fn complete(&self, key: &str, status: &str, detail: &str) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk(key))
            .update_expression("SET #s = :s, detail = :d, completed_at = :t REMOVE lease_until")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":s", AttributeValue::S(status.into()))
            .expression_attribute_values(":d", AttributeValue::S(detail.into()))
            .expression_attribute_values(":t", AttributeValue::S(Utc::now().to_rfc3339()))
            .send()
            .await
            .aws("dynamodb:UpdateItem complete")?;
        Ok(())
    }

    /// Gives a claim back after a failed send so the retry can claim it at once.
    pub async fn release(&self, key: &str, error: &str) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", pk(key))
            .update_expression("SET lease_until = :zero, last_error = :e ADD attempts :one")
            .condition_expression("#s = :claimed")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":e", AttributeValue::S(error.chars().take(500).collect()))
            .expression_attribute_values(":claimed", AttributeValue::S("claimed".into()))
            .send()
            .await
            .aws("dynamodb:UpdateItem release")?;
        Ok(())
    }
}
