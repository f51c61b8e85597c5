//! Activation state in DynamoDB (the activation ledger table, `pk`/`sk`, TTL on
//! `expires_at`):
//!
//! | item | `pk` / `sk` | what |
//! |---|---|---|
//! | send | `SEND#<send key>` / `SEND` | the idempotency ledger: claimed → sent / suppressed, or deferred; with the effects to re-emit |
//! | pressure | `CAP#<profile>` / `CAP` | the person's recent sends (all campaigns and channels): frequency cap and cooldowns, under an optimistic lock |
//! | audience | `AUD#<campaign>#<profile>` / `AUD` | the hashed identifiers added to the campaign's ad audiences, to remove them on exit |
//! | deferral | `DEFER#<due date>` / `<due instant>#<send key>` | a send deferred by quiet hours, released by the schedule |
//!
//! **Exactly-once effects.** A send is *claimed* (conditional write) before anything is
//! sent and *completed* after, with the effects of the decision (activation records, an
//! outbound event, audience rows). A redelivered message finds the send completed and
//! re-emits those effects, which are all idempotent downstream, instead of sending again.
//! A claim whose holder crashed expires after a lease and is claimed again: the send is
//! retried with the same `Idempotency-Key`, and the pressure entry it reserved is found
//! by its send key instead of taking a second slot. The one window left is a crash after
//! the destination accepted the POST and before the ledger says so: the retry POSTs again
//! with the same `Idempotency-Key`, which the destination de-duplicates (documented in
//! `docs/activation.md`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use ariane_shared::error::{AwsError, SdkResultExt};
use ariane_shared::lake::ActivationRecord;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Ledger items live 30 days, far longer than any redelivery, retry or re-run.
const RETENTION_DAYS: i64 = 30;
/// Attempts of an optimistic pressure update before giving up (the message is retried).
const PRESSURE_ATTEMPTS: u32 = 25;

/// Requests made and the capacity units DynamoDB on-demand would bill for them (from the
/// item sizes: a strongly consistent read is 1 RRU per 4 KB, a write 1 WRU per KB), for
/// the benchmark's cost figures.
#[derive(Debug, Default)]
pub struct Meter {
    pub dynamodb_reads: AtomicU64,
    pub dynamodb_writes: AtomicU64,
    pub read_units: AtomicU64,
    pub write_units: AtomicU64,
    /// Conditional writes that lost a race (and were retried or resolved).
    pub dynamodb_conflicts: AtomicU64,
    /// SQS requests the function makes (SendMessageBatch of events and released deferrals).
    pub sqs_requests: AtomicU64,
    /// S3 PUTs (activation records and audience files).
    pub s3_puts: AtomicU64,
    /// Webhook POST attempts.
    pub webhook_posts: AtomicU64,
}

/// Approximate DynamoDB size of an item: attribute names plus values.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => n.len(),
                    AttributeValue::Bool(_) => 1,
                    _ => 8,
                }
        })
        .sum()
}

impl Meter {
    /// A strongly consistent read of an item of `bytes` (0: not found, still 1 unit).
    pub fn read(&self, bytes: usize) {
        self.dynamodb_reads.fetch_add(1, Ordering::Relaxed);
        self.read_units.fetch_add(bytes.div_ceil(4096).max(1) as u64, Ordering::Relaxed);
    }
    /// A write of an item of `bytes`.
    pub fn write(&self, bytes: usize) {
        self.dynamodb_writes.fetch_add(1, Ordering::Relaxed);
        self.write_units.fetch_add(bytes.div_ceil(1024).max(1) as u64, Ordering::Relaxed);
    }
    fn conflict(&self) {
        self.dynamodb_conflicts.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a completed decision produced, re-emitted when a duplicate finds it done.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Effects {
    #[serde(default)]
    pub records: Vec<ActivationRecord>,
    #[serde(default)]
    pub events: Vec<serde_json::Value>,
    #[serde(default)]
    pub audience: Vec<AudienceRow>,
}

impl Effects {
    pub fn extend(&mut self, other: Effects) {
        self.records.extend(other.records);
        self.events.extend(other.events);
        self.audience.extend(other.audience);
    }
}

/// One hashed line of an ad audience file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AudienceRow {
    pub campaign: String,
    pub platform: String,
    pub run_id: String,
    /// `add` or `remove`.
    pub op: String,
    pub email_sha256: Option<String>,
    pub phone_sha256: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// This instance holds the claim: decide, then [`State::complete`] or [`State::defer`].
    Acquired,
    /// Already decided (sent or suppressed): the effects to re-emit.
    Done(Box<Effects>),
    /// Another instance holds a live claim: retry later.
    InFlight,
}

/// The outcome of a pressure reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// A slot is ours (newly, or already from an earlier attempt of the same send).
    Reserved,
    /// `max_messages` sends within the window already: the next slot frees at `until`.
    CapReached { until: DateTime<Utc> },
    /// This campaign reached the person less than its cooldown ago.
    Cooldown { until: DateTime<Utc> },
}

/// One recent send of a person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PressureEntry {
    /// Send key.
    pub k: String,
    /// Campaign.
    pub c: String,
    /// Channel.
    pub ch: String,
    /// Unix seconds.
    pub at: i64,
}

/// The pressure rules a reservation checks.
#[derive(Clone, Copy, Debug)]
pub struct PressureRules {
    pub max_messages: u32,
    pub window: Duration,
    pub cooldown: Duration,
    /// How long entries are kept (the longest cap window or cooldown).
    pub retention: Duration,
}

/// The decision of [`decide_reservation`] for a pressure item's entries.
pub fn decide_reservation(
    entries: &[PressureEntry],
    send_key: &str,
    campaign: &str,
    now: DateTime<Utc>,
    rules: &PressureRules,
) -> Reservation {
    if entries.iter().any(|e| e.k == send_key) {
        return Reservation::Reserved;
    }
    let t = now.timestamp();
    let mut in_window: Vec<i64> = entries.iter().map(|e| e.at).filter(|at| *at > t - rules.window.num_seconds()).collect();
    if in_window.len() as u32 >= rules.max_messages {
        in_window.sort_unstable();
        // The slot frees when enough of the oldest sends leave the window.
        let excess = in_window.len() + 1 - rules.max_messages as usize;
        let until = in_window[excess - 1] + rules.window.num_seconds();
        return Reservation::CapReached { until: DateTime::from_timestamp(until, 0).unwrap_or(now) };
    }
    if rules.cooldown > Duration::zero() {
        if let Some(last) = entries.iter().filter(|e| e.c == campaign).map(|e| e.at).max() {
            if last > t - rules.cooldown.num_seconds() {
                let until = last + rules.cooldown.num_seconds();
                return Reservation::Cooldown { until: DateTime::from_timestamp(until, 0).unwrap_or(now) };
            }
        }
    }
    Reservation::Reserved
}

#[derive(Clone, Debug)]
pub struct State {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
    pub meter: std::sync::Arc<Meter>,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl State {
    fn key(&self, pk: String, sk: &str) -> HashMap<String, AttributeValue> {
        [("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))].into_iter().collect()
    }

    /// A strongly consistent read of one item, metered by its size (`op` names it in errors).
    async fn get(&self, pk: String, sk: &str, op: &'static str) -> Result<Option<HashMap<String, AttributeValue>>, AwsError> {
        let got =
            self.client.get_item().table_name(&self.table).set_key(Some(self.key(pk, sk))).consistent_read(true).send().await.aws(op)?;
        self.meter.read(got.item().map(item_size).unwrap_or(0));
        Ok(got.item)
    }

    /// Claims `send_key` for `lease`.
    pub async fn claim(&self, send_key: &str, lease: StdDuration, now: DateTime<Utc>) -> Result<Claim, AwsError> {
        let t = now.timestamp();
        self.meter.write(200);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(format!("SEND#{send_key}"), "SEND")))
            .update_expression("SET #s = :claimed, lease_until = :lease, claimed_at = :t, expires_at = :exp")
            .condition_expression("attribute_not_exists(pk) OR #s = :deferred OR (#s = :claimed AND lease_until < :now)")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":claimed", s("claimed"))
            .expression_attribute_values(":deferred", s("deferred"))
            .expression_attribute_values(":lease", n(t + lease.as_secs() as i64))
            .expression_attribute_values(":now", n(t))
            .expression_attribute_values(":t", s(ts(now)))
            .expression_attribute_values(":exp", n(t + RETENTION_DAYS * 86_400))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match result {
            Ok(_) => return Ok(Claim::Acquired),
            Err(SdkError::ServiceError(se)) if matches!(se.err(), UpdateItemError::ConditionalCheckFailedException(_)) => {
                self.meter.conflict();
                match se.err() {
                    UpdateItemError::ConditionalCheckFailedException(e) => e.item().cloned(),
                    _ => None,
                }
            }
            Err(e) => return Err(AwsError::from_sdk("dynamodb:UpdateItem claim", e)),
        };
        let item = match old {
            Some(item) => item,
            None => self.get(format!("SEND#{send_key}"), "SEND", "dynamodb:GetItem claim").await?.unwrap_or_default(),
        };
        match item.get("status").and_then(|v| v.as_s().ok()).map(String::as_str) {
            Some("sent") | Some("suppressed") => {
                let effects = item
                    .get("effects")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|e| serde_json::from_str::<Effects>(e).ok())
                    .unwrap_or_default();
                Ok(Claim::Done(Box::new(effects)))
            }
            _ => Ok(Claim::InFlight),
        }
    }

    /// Records the final decision of a claimed send and its effects.
    pub async fn complete(
        &self,
        send_key: &str,
        status: &str,
        effects: &Effects,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<(), AwsError> {
        let effects = serde_json::to_string(effects).unwrap_or_default();
        self.meter.write(effects.len() + 250);
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(format!("SEND#{send_key}"), "SEND")))
            .update_expression("SET #s = :s, effects = :e, detail = :d, completed_at = :t REMOVE lease_until")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":s", s(status))
            .expression_attribute_values(":e", s(effects))
            .expression_attribute_values(":d", s(detail.chars().take(500).collect::<String>()))
            .expression_attribute_values(":t", s(ts(now)))
            .send()
            .await
            .aws("dynamodb:UpdateItem complete")?;
        Ok(())
    }

    /// Gives a claim back after a failed attempt, so that the retry can claim it at once.
    pub async fn release(&self, send_key: &str, error: &str) -> Result<(), AwsError> {
        self.meter.write(200 + error.len().min(500));
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(format!("SEND#{send_key}"), "SEND")))
            .update_expression("SET lease_until = :zero, last_error = :e ADD attempts :one")
            .condition_expression("#s = :claimed")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":e", s(error.chars().take(500).collect::<String>()))
            .expression_attribute_values(":claimed", s("claimed"))
            .send()
            .await
            .aws("dynamodb:UpdateItem release")?;
        Ok(())
    }

    /// Parks a claimed send until `due` (quiet hours): the deferral item holds the
    /// message to re-queue; the send's status becomes `deferred`, claimable again.
    pub async fn defer(&self, send_key: &str, due: DateTime<Utc>, message: &str, now: DateTime<Utc>) -> Result<(), AwsError> {
        let pk = format!("DEFER#{}", due.format("%Y-%m-%d"));
        let sk = format!("{}#{send_key}", ts(due));
        self.meter.write(message.len() + 200);
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("message", s(message))
            .item("send_key", s(send_key))
            .item("deferred_at", s(ts(now)))
            .item("expires_at", n(due.timestamp() + RETENTION_DAYS * 86_400))
            .send()
            .await
            .aws("dynamodb:PutItem deferral")?;
        self.meter.write(250);
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(format!("SEND#{send_key}"), "SEND")))
            .update_expression("SET #s = :deferred, due_at = :due, lease_until = :zero")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":deferred", s("deferred"))
            .expression_attribute_values(":due", s(ts(due)))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .aws("dynamodb:UpdateItem defer")?;
        Ok(())
    }

    /// Deferrals due at or before `now` (looking back `days` due dates), oldest first:
    /// `(pk, sk, message)`.
    pub async fn due_deferrals(&self, now: DateTime<Utc>, days: i64) -> Result<Vec<(String, String, String)>, AwsError> {
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
                self.meter.read(page.items().iter().map(item_size).sum());
                for item in page.items() {
                    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
                    out.push((text("pk"), text("sk"), text("message")));
                }
                match page.last_evaluated_key() {
                    Some(k) if !k.is_empty() => start = Some(k.clone()),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    pub async fn delete(&self, pk: &str, sk: &str) -> Result<(), AwsError> {
        self.meter.write(1);
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(self.key(pk.to_string(), sk)))
            .send()
            .await
            .aws("dynamodb:DeleteItem")?;
        Ok(())
    }

    async fn pressure(&self, profile_id: &str) -> Result<(Option<i64>, Vec<PressureEntry>), AwsError> {
        let Some(item) = self.get(format!("CAP#{profile_id}"), "CAP", "dynamodb:GetItem pressure").await? else {
            return Ok((None, Vec::new()));
        };
        let version = item.get("v").and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok());
        let entries = item.get("sends").and_then(|v| v.as_s().ok()).and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
        Ok((version, entries))
    }

    /// Writes the entries if the item is still at `version`; false when another writer won.
    async fn put_pressure(
        &self,
        profile_id: &str,
        version: Option<i64>,
        entries: &[PressureEntry],
        retention: Duration,
    ) -> Result<bool, AwsError> {
        let newest = entries.iter().map(|e| e.at).max().unwrap_or(0);
        let sends = serde_json::to_string(entries).unwrap_or_else(|_| "[]".into());
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("CAP#{profile_id}")))
            .item("sk", s("CAP"))
            .item("v", n(version.unwrap_or(0) + 1))
            .item("expires_at", n(newest + retention.num_seconds() + 86_400))
            .item("sends", s(sends.clone()));
        put = match version {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put.condition_expression("v = :v").expression_attribute_values(":v", n(v)),
        };
        self.meter.write(sends.len() + 80);
        match put.send().await.aws("dynamodb:PutItem pressure") {
            Ok(_) => Ok(true),
            Err(e) if e.is_code("ConditionalCheckFailedException") => {
                self.meter.conflict();
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Reserves a send in the person's pressure item, atomically against concurrent
    /// instances (optimistic lock on the item's version): the cross-channel cap and the
    /// campaign's cooldown are checked on the same item the reservation writes.
    pub async fn reserve(
        &self,
        profile_id: &str,
        entry: PressureEntry,
        now: DateTime<Utc>,
        rules: &PressureRules,
    ) -> Result<Reservation, AwsError> {
        for attempt in 0..PRESSURE_ATTEMPTS {
            let (version, mut entries) = self.pressure(profile_id).await?;
            entries.retain(|e| e.at > now.timestamp() - rules.retention.num_seconds());
            match decide_reservation(&entries, &entry.k, &entry.c, now, rules) {
                Reservation::Reserved if entries.iter().any(|e| e.k == entry.k) => return Ok(Reservation::Reserved),
                Reservation::Reserved => {
                    entries.push(entry.clone());
                    if self.put_pressure(profile_id, version, &entries, rules.retention).await? {
                        return Ok(Reservation::Reserved);
                    }
                }
                other => return Ok(other),
            }
            backoff(attempt).await;
        }
        Err(contention("pressure reservation", profile_id))
    }

    /// Removes a reservation whose send failed (the retry reserves again).
    pub async fn unreserve(&self, profile_id: &str, send_key: &str, retention: Duration) -> Result<(), AwsError> {
        for attempt in 0..PRESSURE_ATTEMPTS {
            let (version, mut entries) = self.pressure(profile_id).await?;
            let before = entries.len();
            entries.retain(|e| e.k != send_key);
            if entries.len() == before || self.put_pressure(profile_id, version, &entries, retention).await? {
                return Ok(());
            }
            backoff(attempt).await;
        }
        Err(contention("pressure release", profile_id))
    }

    /// The audience rows added for (campaign, profile), as stored by [`State::put_audience`].
    pub async fn audience(&self, campaign: &str, profile_id: &str) -> Result<Option<Vec<AudienceRow>>, AwsError> {
        let item = self.get(format!("AUD#{campaign}#{profile_id}"), "AUD", "dynamodb:GetItem audience").await?;
        Ok(item.as_ref().and_then(|i| i.get("rows")).and_then(|v| v.as_s().ok()).and_then(|t| serde_json::from_str(t).ok()))
    }

    pub async fn put_audience(&self, campaign: &str, profile_id: &str, rows: &[AudienceRow], now: DateTime<Utc>) -> Result<(), AwsError> {
        self.meter.write(rows.len() * 200 + 150);
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("AUD#{campaign}#{profile_id}")))
            .item("sk", s("AUD"))
            .item("rows", s(serde_json::to_string(rows).unwrap_or_else(|_| "[]".into())))
            .item("added_at", s(ts(now)))
            // Ad platforms drop list members after 540 days at most; so does the ledger.
            .item("expires_at", n(now.timestamp() + 540 * 86_400))
            .send()
            .await
            .aws("dynamodb:PutItem audience")?;
        Ok(())
    }

    pub async fn delete_audience(&self, campaign: &str, profile_id: &str) -> Result<(), AwsError> {
        self.delete(&format!("AUD#{campaign}#{profile_id}"), "AUD").await
    }
}

fn contention(what: &str, profile_id: &str) -> AwsError {
    AwsError {
        operation: "dynamodb:PutItem pressure",
        code: "Contention".into(),
        message: format!("{what} for {profile_id} lost {PRESSURE_ATTEMPTS} races in a row"),
        retryable: true,
        source: format!("{what} contention").into(),
    }
}

async fn backoff(attempt: u32) {
    use sha2::Digest;
    // Jitter without a random source: derived from the clock and the attempt.
    let seed = sha2::Sha256::digest(format!("{:?}{attempt}", std::time::Instant::now()).as_bytes());
    let jitter = u64::from(seed[0]) % 20;
    let base = 5u64 << attempt.min(6);
    tokio::time::sleep(StdDuration::from_millis(base + jitter)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules(max: u32, cooldown_h: i64) -> PressureRules {
        PressureRules { max_messages: max, window: Duration::days(7), cooldown: Duration::hours(cooldown_h), retention: Duration::days(30) }
    }

    fn e(k: &str, c: &str, at: i64) -> PressureEntry {
        PressureEntry { k: k.into(), c: c.into(), ch: "email".into(), at }
    }

    #[test]
    fn cap_and_cooldown() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let t = now.timestamp();
        let day = 86_400;
        let entries = vec![e("a", "x", t - 6 * day), e("b", "y", t - 2 * day), e("c", "y", t - day)];
        assert_eq!(
            decide_reservation(&entries, "d", "z", now, &rules(3, 0)),
            Reservation::CapReached { until: DateTime::from_timestamp(t + day, 0).unwrap() }
        );
        assert_eq!(decide_reservation(&entries, "a", "z", now, &rules(3, 0)), Reservation::Reserved, "already reserved");
        assert_eq!(decide_reservation(&entries, "d", "z", now, &rules(4, 0)), Reservation::Reserved);
        assert_eq!(
            decide_reservation(&entries, "d", "y", now, &rules(4, 48)),
            Reservation::Cooldown { until: DateTime::from_timestamp(t + day, 0).unwrap() }
        );
        let old = vec![e("a", "x", t - 8 * day); 5];
        assert_eq!(decide_reservation(&old, "d", "x", now, &rules(1, 0)), Reservation::Reserved, "outside the window");
    }

    proptest! {
        /// Reserving greedily in time order never puts more than max sends in any window.
        #[test]
        fn the_cap_holds_in_every_window(gaps in proptest::collection::vec(0i64..200_000, 1..60), max in 1u32..5) {
            let r = rules(max, 0);
            let mut entries: Vec<PressureEntry> = Vec::new();
            let mut t = 1_800_000_000i64;
            for (i, g) in gaps.iter().enumerate() {
                t += g;
                let now = DateTime::from_timestamp(t, 0).unwrap();
                if decide_reservation(&entries, &format!("k{i}"), "c", now, &r) == Reservation::Reserved {
                    entries.push(e(&format!("k{i}"), "c", t));
                }
            }
            for a in &entries {
                let within = entries.iter().filter(|b| b.at >= a.at && b.at < a.at + r.window.num_seconds()).count();
                prop_assert!(within as u32 <= max);
            }
        }
    }
}
