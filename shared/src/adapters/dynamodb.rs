//! DynamoDB adapters: the activation ledger ([`DynamoLedger`]) and the profile reader
//! ([`DynamoProfiles`]), and [`item_size`], the one rule for an item's billed size.
//!
//! The activation ledger table (`pk`/`sk`, TTL on `expires_at`):
//!
//! | item | `pk` / `sk` | attributes |
//! |---|---|---|
//! | send | `SEND#<send key>` / `SEND` | `status` (`claimed`, `deferred`, `sent`, `suppressed`), `lease_until`, `claim_token` (the holder's), `completed_token`, `claimed_at`, `effects` (JSON), `detail`, `completed_at`, `due_at`, `attempts`, `last_error` |
//! | pressure | `CAP#<profile>` / `CAP` | `version`, `sends` (JSON: `send_key`, `campaign`, `channel`, `at`) |
//! | audience | `AUD#<campaign>#<profile>` / `AUD` | `rows` (JSON), `added_at` |
//! | deferral | `DEFER#<due date>` / `<due instant>#<send key>` | `message`, `send_key`, `deferred_at` (a quiet-hours deferral, or a triggered campaign's timer: [`ActivationLedger::schedule`]) |
//! | activity | `ACT#<profile>` / `ACT` | `a_<event type>`: the latest instant (unix seconds) of each real-time event type |
//! | breaker | `BREAKER#<destination>` / `BREAKER` | `failures`, `openings`, `open_until` (unix seconds) |

use std::collections::{BTreeMap, HashMap};
use std::time::Duration as StdDuration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use chrono::{DateTime, Duration, SecondsFormat, Utc};

use crate::error::{AwsError, SdkResultExt};
use crate::lake::ProfileState;
use crate::memberships::{self, MembershipChange};
use crate::ports::{
    ActivationLedger, AudienceRow, BreakerState, Claim, ClaimToken, Deferral, Effects, LedgerError, MembershipStore, PressureEntry,
    ProfileReadError, ProfileReader, SendStatus,
};
use crate::profile::{summary_from_attributes, ProfileItem, SUMMARY_PROJECTION};

/// DynamoDB's size of an item: attribute names plus values (strings and binaries their
/// bytes, numbers about one byte per two significant digits plus one, booleans and nulls
/// one byte, lists and maps three bytes plus one per element plus the elements).
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(name, v)| name.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    let number = |n: &str| n.trim_start_matches(['-', '+', '0']).replace('.', "").trim_end_matches('0').len().div_ceil(2) + 1;
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(items) => items.iter().map(String::len).sum(),
        AttributeValue::Ns(items) => items.iter().map(|n| number(n)).sum(),
        AttributeValue::Bs(items) => items.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(items) => 3 + items.iter().map(|i| 1 + value_size(i)).sum::<usize>(),
        AttributeValue::M(map) => 3 + map.iter().map(|(k, i)| 1 + k.len() + value_size(i)).sum::<usize>(),
        _ => 1,
    }
}

/// Ledger items live 30 days, far longer than any redelivery, retry or re-run.
const RETENTION_DAYS: i64 = 30;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}
fn key(pk: String, sk: &str) -> HashMap<String, AttributeValue> {
    [("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))].into_iter().collect()
}

/// The activation ledger on DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoLedger {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl DynamoLedger {
    /// A strongly consistent read of one item (`op` names it in errors).
    async fn get(&self, pk: String, sk: &str, op: &'static str) -> Result<Option<HashMap<String, AttributeValue>>, AwsError> {
        let got = self.client.get_item().table_name(&self.table).set_key(Some(key(pk, sk))).consistent_read(true).send().await.aws(op)?;
        Ok(got.item)
    }

    async fn delete(&self, pk: String, sk: &str) -> Result<(), AwsError> {
        self.client.delete_item().table_name(&self.table).set_key(Some(key(pk, sk))).send().await.aws("dynamodb:DeleteItem")?;
        Ok(())
    }
}

/// A string attribute of an item.
fn text<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// The error of a complete or defer whose token no longer holds the send (as read back).
fn claim_lost(send_key: &str, item: &HashMap<String, AttributeValue>) -> LedgerError {
    LedgerError::ClaimLost { send_key: send_key.to_string(), status: text(item, "status").unwrap_or("absent").to_string() }
}

/// The answer a send item gives to a refused claim.
fn claim_of(send_key: &str, item: &HashMap<String, AttributeValue>) -> Result<Claim, LedgerError> {
    let text = |k: &str| text(item, k);
    match text("status") {
        Some("sent") | Some("suppressed") => {
            let raw = text("effects").ok_or_else(|| LedgerError::Malformed {
                key: format!("SEND#{send_key}"),
                what: "a completed send has no effects".into(),
            })?;
            let effects: Effects = serde_json::from_str(raw).map_err(|source| LedgerError::Decode {
                key: format!("SEND#{send_key}"),
                what: "effects",
                source,
            })?;
            Ok(Claim::Done(Box::new(effects)))
        }
        _ => Ok(Claim::InFlight),
    }
}

#[async_trait::async_trait]
impl ActivationLedger for DynamoLedger {
    async fn claim(&self, send_key: &str, lease: StdDuration, now: DateTime<Utc>) -> Result<Claim, LedgerError> {
        let t = now.timestamp();
        let token = ClaimToken::fresh();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("SEND#{send_key}"), "SEND")))
            .update_expression("SET #s = :claimed, lease_until = :lease, claimed_at = :t, expires_at = :exp, claim_token = :tok")
            .condition_expression("attribute_not_exists(pk) OR #s = :deferred OR (#s = :claimed AND lease_until < :now)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":deferred", s("deferred"))
            .expression_attribute_values(":lease", n(t + lease.as_secs() as i64))
            .expression_attribute_values(":now", n(t))
            .expression_attribute_values(":t", s(ts(now)))
            .expression_attribute_values(":exp", n(t + RETENTION_DAYS * 86_400))
            .expression_attribute_values(":tok", s(token.as_str()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match result {
            Ok(_) => return Ok(Claim::Acquired(token)),
            Err(SdkError::ServiceError(se)) if matches!(se.err(), UpdateItemError::ConditionalCheckFailedException(_)) => match se.err() {
                UpdateItemError::ConditionalCheckFailedException(e) => e.item().cloned(),
                _ => None,
            },
            Err(e) => return Err(AwsError::from_sdk("dynamodb:UpdateItem claim", e).into()),
        };
        let item = match old {
            Some(item) => item,
            // A service that does not return the old item: read it.
            None => self.get(format!("SEND#{send_key}"), "SEND", "dynamodb:GetItem claim").await?.unwrap_or_default(),
        };
        claim_of(send_key, &item)
    }

    async fn complete(
        &self,
        send_key: &str,
        token: &ClaimToken,
        status: SendStatus,
        effects: &Effects,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let effects = serde_json::to_string(effects).map_err(|source| LedgerError::Decode {
            key: format!("SEND#{send_key}"),
            what: "effects",
            source,
        })?;
        let done = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("SEND#{send_key}"), "SEND")))
            .update_expression(
                "SET #s = :s, effects = :e, detail = :d, completed_at = :t, completed_token = :tok REMOVE lease_until, claim_token",
            )
            .condition_expression("#s = :claimed AND claim_token = :tok")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":s", s(status.as_str()))
            .expression_attribute_values(":e", s(effects))
            .expression_attribute_values(":d", s(detail.chars().take(500).collect::<String>()))
            .expression_attribute_values(":t", s(ts(now)))
            .expression_attribute_values(":tok", s(token.as_str()))
            .expression_attribute_values(":claimed", s("claimed"))
            .send()
            .await
            .aws("dynamodb:UpdateItem complete");
        match done {
            Ok(_) => Ok(()),
            Err(e) if e.is_code("ConditionalCheckFailedException") => {
                // A retried complete whose first success went unanswered finds its own
                // token on the completed item: done. Anything else lost the claim.
                let item = self.get(format!("SEND#{send_key}"), "SEND", "dynamodb:GetItem complete").await?.unwrap_or_default();
                if text(&item, "completed_token") == Some(token.as_str()) {
                    return Ok(());
                }
                Err(claim_lost(send_key, &item))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn release(&self, send_key: &str, token: &ClaimToken, error: &str) -> Result<(), LedgerError> {
        let released = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("SEND#{send_key}"), "SEND")))
            .update_expression("SET lease_until = :zero, last_error = :e ADD attempts :one")
            .condition_expression("#s = :claimed AND claim_token = :tok")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":e", s(error.chars().take(500).collect::<String>()))
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":tok", s(token.as_str()))
            .send()
            .await
            .aws("dynamodb:UpdateItem release");
        match released {
            Ok(_) => Ok(()),
            Err(e) if e.is_code("ConditionalCheckFailedException") => {
                Err(LedgerError::ClaimLost { send_key: send_key.to_string(), status: "not claimed with this token".into() })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn defer(
        &self,
        send_key: &str,
        token: &ClaimToken,
        due: DateTime<Utc>,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let build =
            |e: aws_sdk_dynamodb::error::BuildError| LedgerError::Malformed { key: format!("SEND#{send_key}"), what: e.to_string() };
        // One transaction: a deferral item without its send parked (or the reverse) would
        // either re-run a send another instance holds, or never release it.
        let put =
            Put::builder().table_name(&self.table).set_item(Some(deferral_item(due, send_key, message, now))).build().map_err(build)?;
        let park = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(format!("SEND#{send_key}"), "SEND")))
            .update_expression("SET #s = :deferred, due_at = :due, lease_until = :zero REMOVE claim_token")
            .condition_expression("#s = :claimed AND claim_token = :tok")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":deferred", s("deferred"))
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":tok", s(token.as_str()))
            .expression_attribute_values(":due", s(ts(due)))
            .expression_attribute_values(":zero", n(0))
            .build()
            .map_err(build)?;
        let done = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(park).build())
            .send()
            .await
            .aws("dynamodb:TransactWriteItems defer");
        match done {
            Ok(_) => Ok(()),
            Err(e) if e.is_code("TransactionCanceledException") => {
                // Either the condition failed (the claim is gone) or a concurrent
                // transaction touched an item (retry): the send item tells which.
                let item = self.get(format!("SEND#{send_key}"), "SEND", "dynamodb:GetItem defer").await?.unwrap_or_default();
                if text(&item, "status") == Some("claimed") && text(&item, "claim_token") == Some(token.as_str()) {
                    return Err(e.into());
                }
                Err(claim_lost(send_key, &item))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn due_deferrals(&self, now: DateTime<Utc>, days: i64) -> Result<Vec<Deferral>, LedgerError> {
        let mut out = Vec::new();
        let upper = format!("{}~", ts(now));
        for back in (0..=days).rev() {
            let pk = format!("DEFER#{}", (now - Duration::days(back)).format("%Y-%m-%d"));
            let mut start: Option<HashMap<String, AttributeValue>> = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("pk = :pk AND sk <= :upper")
                    .expression_attribute_values(":pk", s(pk.clone()))
                    .expression_attribute_values(":upper", s(upper.clone()))
                    .consistent_read(true)
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .aws("dynamodb:Query deferrals")?;
                for item in page.items() {
                    out.push(deferral_of(item)?);
                }
                match page.last_evaluated_key() {
                    Some(k) if !k.is_empty() => start = Some(k.clone()),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    async fn delete_deferral(&self, d: &Deferral) -> Result<(), LedgerError> {
        let (pk, sk) = deferral_key(d.due, &d.send_key);
        Ok(self.delete(pk, &sk).await?)
    }

    async fn breaker(&self, destination: &str) -> Result<BreakerState, LedgerError> {
        let pk = format!("BREAKER#{destination}");
        let Some(item) = self.get(pk.clone(), "BREAKER", "dynamodb:GetItem breaker").await? else { return Ok(BreakerState::default()) };
        let number = |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i64>().ok());
        Ok(BreakerState {
            failures: number("failures").unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
            openings: number("openings").unwrap_or(0).clamp(0, u32::MAX as i64) as u32,
            open_until: number("open_until").and_then(|t| DateTime::from_timestamp(t, 0)),
        })
    }

    async fn put_breaker(&self, destination: &str, state: &BreakerState) -> Result<(), LedgerError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("BREAKER#{destination}")))
            .item("sk", s("BREAKER"))
            .item("failures", n(state.failures as i64))
            .item("openings", n(state.openings as i64))
            // A destination that stays quiet for a month starts afresh.
            .item("expires_at", n(Utc::now().timestamp() + RETENTION_DAYS * 86_400));
        if let Some(t) = state.open_until {
            put = put.item("open_until", n(t.timestamp()));
        }
        put.send().await.aws("dynamodb:PutItem breaker")?;
        Ok(())
    }

    async fn pressure(&self, profile_id: &str) -> Result<(Option<u64>, Vec<PressureEntry>), LedgerError> {
        let pk = format!("CAP#{profile_id}");
        let Some(item) = self.get(pk.clone(), "CAP", "dynamodb:GetItem pressure").await? else { return Ok((None, Vec::new())) };
        // `v` is the attribute name of items written before it was spelled out.
        let version = item
            .get("version")
            .or_else(|| item.get("v"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| LedgerError::Malformed { key: pk.clone(), what: "no version".into() })?;
        let sends = item
            .get("sends")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| LedgerError::Malformed { key: pk.clone(), what: "no sends".into() })?;
        let entries = serde_json::from_str(sends).map_err(|source| LedgerError::Decode { key: pk, what: "sends", source })?;
        Ok((Some(version), entries))
    }

    async fn put_pressure(
        &self,
        profile_id: &str,
        version: Option<u64>,
        entries: &[PressureEntry],
        retention: Duration,
    ) -> Result<bool, LedgerError> {
        let newest = entries.iter().map(|e| e.at).max().unwrap_or(0);
        let sends = serde_json::to_string(entries).map_err(|source| LedgerError::Decode {
            key: format!("CAP#{profile_id}"),
            what: "sends",
            source,
        })?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("CAP#{profile_id}")))
            .item("sk", s("CAP"))
            .item("version", n(version.unwrap_or(0) as i64 + 1))
            .item("expires_at", n(newest + retention.num_seconds() + 86_400))
            .item("sends", s(sends));
        put = match version {
            None => put.condition_expression("attribute_not_exists(pk)"),
            // Items written before the attribute was renamed carry `v`.
            Some(v) => put.condition_expression("version = :v OR v = :v").expression_attribute_values(":v", n(v as i64)),
        };
        match put.send().await.aws("dynamodb:PutItem pressure") {
            Ok(_) => Ok(true),
            Err(e) if e.is_code("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn audience(&self, campaign: &str, profile_id: &str) -> Result<Option<Vec<AudienceRow>>, LedgerError> {
        let pk = format!("AUD#{campaign}#{profile_id}");
        let Some(item) = self.get(pk.clone(), "AUD", "dynamodb:GetItem audience").await? else { return Ok(None) };
        let rows = item
            .get("rows")
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| LedgerError::Malformed { key: pk.clone(), what: "no rows".into() })?;
        serde_json::from_str(rows).map(Some).map_err(|source| LedgerError::Decode { key: pk, what: "rows", source })
    }

    async fn put_audience(&self, campaign: &str, profile_id: &str, rows: &[AudienceRow], now: DateTime<Utc>) -> Result<(), LedgerError> {
        let pk = format!("AUD#{campaign}#{profile_id}");
        let rows = serde_json::to_string(rows).map_err(|source| LedgerError::Decode { key: pk.clone(), what: "rows", source })?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s("AUD"))
            .item("rows", s(rows))
            .item("added_at", s(ts(now)))
            // Ad platforms drop list members after 540 days at most; so does the ledger.
            .item("expires_at", n(now.timestamp() + 540 * 86_400))
            .send()
            .await
            .aws("dynamodb:PutItem audience")?;
        Ok(())
    }

    async fn delete_audience(&self, campaign: &str, profile_id: &str) -> Result<(), LedgerError> {
        Ok(self.delete(format!("AUD#{campaign}#{profile_id}"), "AUD").await?)
    }

    async fn erase_send(&self, send_key: &str) -> Result<(), LedgerError> {
        Ok(self.delete(format!("SEND#{send_key}"), "SEND").await?)
    }
    async fn schedule(&self, key: &str, due: DateTime<Utc>, message: &str, now: DateTime<Utc>) -> Result<(), LedgerError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(deferral_item(due, key, message, now)))
            .send()
            .await
            .aws("dynamodb:PutItem schedule")?;
        Ok(())
    }

    async fn note_activity(&self, profile_id: &str, event_type: &str, at: DateTime<Utc>) -> Result<(), LedgerError> {
        // One attribute per event type (`a_<type>`, Unix seconds), raised only: a note
        // older than the stored one fails its condition and changes nothing.
        let done = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(format!("ACT#{profile_id}"), "ACT")))
            .update_expression("SET #t = :at, expires_at = :exp")
            .condition_expression("attribute_not_exists(#t) OR #t < :at")
            .expression_attribute_names("#t", format!("a_{event_type}"))
            .expression_attribute_values(":at", n(at.timestamp()))
            .expression_attribute_values(":exp", n(at.timestamp() + crate::ports::ACTIVITY_RETENTION.num_seconds()))
            .send()
            .await
            .aws("dynamodb:UpdateItem activity");
        match done {
            Ok(_) => Ok(()),
            Err(e) if e.is_code("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn activity(&self, profile_id: &str) -> Result<BTreeMap<String, DateTime<Utc>>, LedgerError> {
        let item = self.get(format!("ACT#{profile_id}"), "ACT", "dynamodb:GetItem activity").await?.unwrap_or_default();
        Ok(item
            .iter()
            .filter_map(|(k, v)| {
                let t = k.strip_prefix("a_")?;
                let secs = v.as_n().ok()?.parse::<i64>().ok()?;
                Some((t.to_string(), DateTime::from_timestamp(secs, 0)?))
            })
            .collect())
    }
}

/// The key of a deferral item.
pub fn deferral_key(due: DateTime<Utc>, send_key: &str) -> (String, String) {
    (format!("DEFER#{}", due.format("%Y-%m-%d")), format!("{}#{send_key}", ts(due)))
}

/// A deferral item (a parked send's, or a triggered decision's timer): what
/// [`deferral_of`] reads back.
fn deferral_item(due: DateTime<Utc>, send_key: &str, message: &str, now: DateTime<Utc>) -> HashMap<String, AttributeValue> {
    let (pk, sk) = deferral_key(due, send_key);
    HashMap::from([
        ("pk".to_string(), s(pk)),
        ("sk".to_string(), s(sk)),
        ("message".to_string(), s(message)),
        ("send_key".to_string(), s(send_key)),
        ("deferred_at".to_string(), s(ts(now))),
        ("expires_at".to_string(), n(due.timestamp() + RETENTION_DAYS * 86_400)),
    ])
}

fn deferral_of(item: &HashMap<String, AttributeValue>) -> Result<Deferral, LedgerError> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let sk = text("sk").unwrap_or_default();
    let malformed = |what: &str| LedgerError::Malformed { key: sk.clone(), what: what.to_string() };
    let (due, send_key) = sk.split_once('#').ok_or_else(|| malformed("the sort key is not <due>#<send key>"))?;
    let due = DateTime::parse_from_rfc3339(due).map_err(|_| malformed("the due instant is not RFC 3339"))?.with_timezone(&Utc);
    Ok(Deferral { due, send_key: send_key.to_string(), message: text("message").ok_or_else(|| malformed("no message"))? })
}

/// Parallel Scan segments: DynamoDB serves each from its own partition range.
const SCAN_SEGMENTS: i32 = 4;

/// The profile reader on the profiles table identity writes.
#[derive(Clone, Debug)]
pub struct DynamoProfiles {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl DynamoProfiles {
    async fn scan_segment(&self, segment: i32) -> Result<Vec<ProfileState>, AwsError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .segment(segment)
                .total_segments(SCAN_SEGMENTS)
                .filter_expression("sk = :profile")
                .expression_attribute_values(":profile", s(ProfileItem::SK))
                .projection_expression(SUMMARY_PROJECTION)
                // The segments role may only Scan with this projection
                // (`dynamodb:Select` = SPECIFIC_ATTRIBUTES, `dynamodb:Attributes` = it).
                .select(aws_sdk_dynamodb::types::Select::SpecificAttributes)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .aws("dynamodb:Scan profiles")?;
            out.extend(page.items().iter().filter_map(summary_from_attributes));
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}

#[async_trait::async_trait]
impl ProfileReader for DynamoProfiles {
    async fn profile(&self, profile_id: &str) -> Result<Option<ProfileItem>, ProfileReadError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(ProfileItem::pk(profile_id)))
            .key("sk", s(ProfileItem::SK))
            .consistent_read(true)
            .send()
            .await
            .aws("dynamodb:GetItem profile")?;
        Ok(match out.item() {
            Some(item) => Some(ProfileItem::from_attributes(item)?),
            None => None,
        })
    }

    async fn summaries(&self) -> Result<Vec<ProfileState>, ProfileReadError> {
        let scans = (0..SCAN_SEGMENTS).map(|segment| self.scan_segment(segment));
        Ok(futures::future::try_join_all(scans).await?.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_sizes_follow_dynamodb_rules() {
        let item: HashMap<String, AttributeValue> = [
            ("pk".to_string(), s("SEND#abc")),
            ("n".to_string(), AttributeValue::N("1200".into())),
            ("b".to_string(), AttributeValue::Bool(true)),
            ("l".to_string(), AttributeValue::L(vec![s("ab"), AttributeValue::N("7".into())])),
        ]
        .into_iter()
        .collect();
        // pk 2+8; n 1+(two significant digits: 1)+1; b 1+1; l 1+3+(1+2)+(1+(1+1)).
        assert_eq!(item_size(&item), 10 + 3 + 2 + 10);
    }

    #[test]
    fn refused_claims_read_the_stored_decision() {
        let done: HashMap<String, AttributeValue> =
            [("status".to_string(), s("sent")), ("effects".to_string(), s("{}"))].into_iter().collect();
        assert_eq!(claim_of("k", &done).unwrap(), Claim::Done(Box::default()));
        let claimed: HashMap<String, AttributeValue> = [("status".to_string(), s("claimed"))].into_iter().collect();
        assert_eq!(claim_of("k", &claimed).unwrap(), Claim::InFlight);
        let corrupt: HashMap<String, AttributeValue> =
            [("status".to_string(), s("sent")), ("effects".to_string(), s("{not json"))].into_iter().collect();
        assert!(
            matches!(claim_of("k", &corrupt), Err(LedgerError::Decode { .. })),
            "undecodable effects are an error, not an empty success"
        );
        let missing: HashMap<String, AttributeValue> = [("status".to_string(), s("suppressed"))].into_iter().collect();
        assert!(matches!(claim_of("k", &missing), Err(LedgerError::Malformed { .. })));
    }

    #[test]
    fn deferral_items_decode_and_keys_round_trip() {
        let due = DateTime::parse_from_rfc3339("2026-11-23T07:00:00Z").unwrap().with_timezone(&Utc);
        let (pk, sk) = deferral_key(due, "send1");
        assert_eq!(pk, "DEFER#2026-11-23");
        let item: HashMap<String, AttributeValue> =
            [("pk".to_string(), s(pk)), ("sk".to_string(), s(sk)), ("message".to_string(), s("{}"))].into_iter().collect();
        assert_eq!(deferral_of(&item).unwrap(), Deferral { due, send_key: "send1".into(), message: "{}".into() });
    }
}

/// The memberships items in the profiles table ([`crate::memberships`]): one conditional
/// `UpdateItem` per person and run (`SET` of the memberships entered and the attributes,
/// `REMOVE` of those exited), refused when the item's `last_run` is later than the run,
/// or, for a change that only removes, when there is no item; one `DeleteItem` per
/// erased person.
#[derive(Clone, Debug)]
pub struct DynamoMemberships {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

#[async_trait::async_trait]
impl MembershipStore for DynamoMemberships {
    async fn apply(&self, change: &MembershipChange) -> Result<bool, AwsError> {
        let (expression, names, values) = change.update_expression();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(memberships::pk(&change.profile_id)))
            .key("sk", AttributeValue::S(memberships::SK.to_string()))
            .update_expression(expression)
            .condition_expression(change.condition())
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .aws("dynamodb:UpdateItem memberships");
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.is_code("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn erase(&self, profile_id: &str) -> Result<bool, AwsError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(memberships::pk(profile_id)))
            .key("sk", AttributeValue::S(memberships::SK.to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .aws("dynamodb:DeleteItem memberships")?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}
