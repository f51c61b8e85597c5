//! The campaign report: per campaign, the entries of the treated and holdout groups, the
//! sends per channel, the suppressed sends by reason, the sends deferred by quiet hours,
//! and the conversions (an order, in any channel, within the campaign's conversion window
//! after the decision) of each group, with the lift of treated over holdout.
//!
//! It runs with the scheduled segments function (daily, or when the run asks for it)
//! over the activation records `activate` writes to the lake (`activations/`), which are
//! at-least-once: every figure counts distinct activation or send keys. Orders come from
//! the `orders` view, so a person's orders count in every channel, and a profile merged
//! after the decision is followed to its survivor through the identity links.
//! Written to `reports/campaigns/<run id>.json` and `reports/campaigns/latest.json`.

use std::collections::BTreeMap;

use ariane_shared::lake;
use ariane_shared::ports::{BlobStore, ProfileReader, Queue};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use chrono::{DateTime, Duration, Utc};
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::catalog::{self, Dialect, RunScope};
use crate::config::SegmentsConfig;
use crate::error::RunError;
use crate::ports::{get_json, put_json, Ports};

/// What the report's errors name as their segment.
const REPORT: &str = "campaign report";

/// The report's pointer: the last run that computed it.
pub const POINTER_KEY: &str = "reports/campaigns/current.json";

/// The report is due once a day (or when a run asks for it).
pub const EVERY: i64 = 24;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupConversions {
    /// Distinct entries (activation keys) of the group.
    pub entries: u64,
    /// Entries with an order within the window.
    pub converted: u64,
    pub rate: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CampaignFigures {
    pub campaign: String,
    pub treated: GroupConversions,
    pub holdout: GroupConversions,
    /// The treated entries actually contacted (a message sent, or added to an audience).
    pub contacted: GroupConversions,
    /// `treated.rate / holdout.rate - 1` (None without holdout conversions).
    pub lift: Option<f64>,
    /// Two-proportion z statistic of treated against holdout.
    pub z: Option<f64>,
    /// Final outcome per send: messages sent by channel.
    pub sent: BTreeMap<String, u64>,
    /// Sends not made, by reason (`consent`, `unreachable`, `cap`, `cooldown`, `erased`).
    pub suppressed: BTreeMap<String, u64>,
    /// Sends deferred at least once by quiet hours (most were sent later).
    pub deferred_quiet_hours: u64,
    /// Sends still waiting for their quiet hours to end.
    pub pending: u64,
    pub audience_added: u64,
    pub audience_removed: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CampaignReport {
    pub run_id: String,
    pub run_at: DateTime<Utc>,
    pub campaigns: Vec<CampaignFigures>,
}

const CONVERSIONS: &str = "
WITH decisions AS (
    SELECT activation_key, campaign, \"group\", profile_id,
           MIN(decided_at) AS assigned_at, MAX(conversion_until) AS until,
           MAX(CASE WHEN outcome IN ('sent', 'audience_added') THEN 1 ELSE 0 END) AS contacted
    FROM activations
    WHERE outcome <> 'audience_removed' AND decided_at <= {{run_at}}
    GROUP BY activation_key, campaign, \"group\", profile_id
),
pid_map AS (
    SELECT DISTINCT l.profile_id AS from_pid, pl.profile_id AS to_pid
    FROM identity_links l
    JOIN profile_links pl ON pl.identifier_hash = l.identifier_hash
    WHERE l.profile_id IN (SELECT profile_id FROM decisions)
),
conv AS (
    SELECT d.activation_key,
           MAX(CASE WHEN o.ordered_at > d.assigned_at AND o.ordered_at <= d.until THEN 1 ELSE 0 END) AS converted
    FROM decisions d
    LEFT JOIN pid_map m ON m.from_pid = d.profile_id
    LEFT JOIN orders o ON o.profile_id = m.to_pid
    GROUP BY d.activation_key
)
SELECT d.campaign, d.\"group\",
       CAST(COUNT(*) AS BIGINT) AS entries,
       CAST(SUM(c.converted) AS BIGINT) AS converted,
       CAST(SUM(d.contacted) AS BIGINT) AS contacted,
       CAST(SUM(CASE WHEN d.contacted = 1 THEN c.converted ELSE 0 END) AS BIGINT) AS contacted_converted
FROM decisions d JOIN conv c ON c.activation_key = d.activation_key
GROUP BY d.campaign, d.\"group\"
ORDER BY d.campaign, d.\"group\"";

const OUTCOMES: &str = "
WITH ranked AS (
    SELECT campaign, send_key, channel, outcome, reason,
           ROW_NUMBER() OVER (
               PARTITION BY send_key
               ORDER BY CASE outcome WHEN 'sent' THEN 4 WHEN 'audience_added' THEN 4 WHEN 'audience_removed' THEN 4
                                     WHEN 'suppressed' THEN 3 WHEN 'holdout' THEN 2 ELSE 1 END DESC,
                        decided_at DESC) AS rn
    FROM activations
    WHERE decided_at <= {{run_at}}
),
deferred AS (
    SELECT campaign, CAST(COUNT(DISTINCT send_key) AS BIGINT) AS n FROM activations
    WHERE outcome = 'deferred' AND decided_at <= {{run_at}} GROUP BY campaign
)
SELECT r.campaign, COALESCE(r.channel, '') AS channel, r.outcome, COALESCE(r.reason, '') AS reason,
       CAST(COUNT(*) AS BIGINT) AS n, CAST(MAX(COALESCE(d.n, 0)) AS BIGINT) AS deferred
FROM ranked r LEFT JOIN deferred d ON d.campaign = r.campaign
WHERE r.rn = 1
GROUP BY r.campaign, COALESCE(r.channel, ''), r.outcome, COALESCE(r.reason, '')
ORDER BY 1, 2, 3, 4";

fn z_test(a: &GroupConversions, b: &GroupConversions) -> Option<f64> {
    if a.entries == 0 || b.entries == 0 {
        return None;
    }
    let p = (a.converted + b.converted) as f64 / (a.entries + b.entries) as f64;
    let se = (p * (1.0 - p) * (1.0 / a.entries as f64 + 1.0 / b.entries as f64)).sqrt();
    (se > 0.0).then(|| (a.rate - b.rate) / se)
}

fn group(entries: i64, converted: i64) -> GroupConversions {
    let (entries, converted) = (entries.max(0) as u64, converted.max(0) as u64);
    GroupConversions { entries, converted, rate: if entries == 0 { 0.0 } else { converted as f64 / entries as f64 } }
}

/// A column of the report's own queries, cast to `to` (a missing column is an error: the
/// queries above name every column they return).
fn column(b: &RecordBatch, col: &str, to: &DataType) -> Result<arrow::array::ArrayRef, RunError> {
    let c = b
        .column_by_name(col)
        .ok_or_else(|| RunError::Result { segment: REPORT.into(), problem: format!("no column {col:?} in the result") })?;
    arrow::compute::cast(c, to).map_err(|source| RunError::Format { segment: REPORT.into(), source })
}

/// The text of `col` in each row (null as empty).
fn texts(b: &RecordBatch, col: &str) -> Result<Vec<String>, RunError> {
    let c = column(b, col, &DataType::Utf8)?;
    let c = c.as_string::<i32>();
    Ok((0..b.num_rows()).map(|row| if c.is_null(row) { String::new() } else { c.value(row).to_string() }).collect())
}

/// The integer of `col` in each row (null, as in a sum over nothing, as 0).
fn ints(b: &RecordBatch, col: &str) -> Result<Vec<i64>, RunError> {
    let c = column(b, col, &DataType::Int64)?;
    let c = c.as_primitive::<Int64Type>();
    Ok((0..b.num_rows()).map(|row| if c.is_null(row) { 0 } else { c.value(row) }).collect())
}

/// Computes the report in `ctx` (a catalog with `activations` registered) at `run_at`.
pub async fn compute(ctx: &SessionContext, run_id: &str, run_at: DateTime<Utc>) -> Result<CampaignReport, RunError> {
    let query = |sql: &str| -> Result<String, RunError> {
        catalog::render(sql, run_at, Dialect::DataFusion).map_err(|source| RunError::Render { segment: REPORT.into(), source })
    };
    let err = |source| RunError::Query { segment: REPORT.into(), source };
    let mut by_campaign: BTreeMap<String, CampaignFigures> = BTreeMap::new();
    let conversions = ctx.sql(&query(CONVERSIONS)?).await.map_err(err)?.collect().await.map_err(err)?;
    for b in &conversions {
        let (campaign, group_name) = (texts(b, "campaign")?, texts(b, "group")?);
        let (entries, converted) = (ints(b, "entries")?, ints(b, "converted")?);
        let (contacted, contacted_converted) = (ints(b, "contacted")?, ints(b, "contacted_converted")?);
        for row in 0..b.num_rows() {
            let name = campaign[row].clone();
            let f = by_campaign.entry(name.clone()).or_insert_with(|| CampaignFigures { campaign: name, ..Default::default() });
            let g = group(entries[row], converted[row]);
            match group_name[row].as_str() {
                "holdout" => f.holdout = g,
                _ => {
                    f.treated = g;
                    f.contacted = group(contacted[row], contacted_converted[row]);
                }
            }
        }
    }
    let outcomes = ctx.sql(&query(OUTCOMES)?).await.map_err(err)?.collect().await.map_err(err)?;
    for b in &outcomes {
        let (campaign, channel, reason, outcome) = (texts(b, "campaign")?, texts(b, "channel")?, texts(b, "reason")?, texts(b, "outcome")?);
        let (count, deferred) = (ints(b, "n")?, ints(b, "deferred")?);
        for row in 0..b.num_rows() {
            let name = campaign[row].clone();
            let f = by_campaign.entry(name.clone()).or_insert_with(|| CampaignFigures { campaign: name, ..Default::default() });
            let n = count[row].max(0) as u64;
            f.deferred_quiet_hours = deferred[row].max(0) as u64;
            let (channel, reason) = (channel[row].clone(), reason[row].clone());
            match outcome[row].as_str() {
                "sent" => *f.sent.entry(channel).or_default() += n,
                "suppressed" => *f.suppressed.entry(if reason.is_empty() { "other".into() } else { reason }).or_default() += n,
                "deferred" => f.pending += n,
                "audience_added" => f.audience_added += n,
                "audience_removed" => f.audience_removed += n,
                _ => {}
            }
        }
    }
    let campaigns = by_campaign
        .into_values()
        .map(|mut f| {
            f.lift = (f.holdout.rate > 0.0).then(|| f.treated.rate / f.holdout.rate - 1.0);
            f.z = z_test(&f.treated, &f.holdout);
            f
        })
        .collect();
    Ok(CampaignReport { run_id: run_id.to_string(), run_at, campaigns })
}

#[derive(Serialize, Deserialize)]
struct Pointer {
    run_id: String,
    run_at: DateTime<Utc>,
}

/// Runs the report if due (a day since the last one) or `force`d, over the run's profile
/// snapshot, and writes it to the lake.
pub async fn run_if_due<B: BlobStore, Q: Queue, P: ProfileReader, M>(
    ports: &Ports<B, Q, P, M>,
    config: &SegmentsConfig,
    run_at: DateTime<Utc>,
    force: bool,
    run: &crate::catalog::RunEnv,
) -> Result<Option<CampaignReport>, RunError> {
    let bucket = &config.lake_bucket;
    let run_id = lake::run_id(run_at);
    if !force {
        if let Some(last) = get_json::<Pointer>(&ports.blobs, bucket, POINTER_KEY).await? {
            if run_at - last.run_at < Duration::hours(EVERY) - Duration::minutes(1) {
                return Ok(None);
            }
        }
    }
    crate::snapshot::ensure_snapshot(&ports.blobs, &ports.profiles, bucket, &run_id, config.partitions).await?;
    let scope = RunScope { run_at, snapshot_run_id: run_id.clone(), bucket: None };
    let ctx = crate::run::run_session(run, bucket, &scope).await.map_err(RunError::Catalog)?;
    catalog::register_activations(&ctx, &catalog::lake_base(bucket)).map_err(RunError::Catalog)?;
    let report = compute(&ctx, &run_id, run_at).await?;
    put_json(&ports.blobs, bucket, &lake::campaign_report_key(&run_id), "the campaign report", &report).await?;
    put_json(&ports.blobs, bucket, lake::campaign_report_latest_key(), "the campaign report", &report).await?;
    put_json(&ports.blobs, bucket, POINTER_KEY, "the report pointer", &Pointer { run_id, run_at }).await?;
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ariane_shared::lake::ActivationRecord;
    use datafusion::datasource::MemTable;
    use std::sync::Arc;

    fn at(h: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().with_timezone(&Utc) + Duration::hours(h)
    }

    /// One activation record; `outcome` is (outcome, reason).
    fn rec(
        key: &str,
        send: &str,
        group: &str,
        outcome: (&str, Option<&str>),
        channel: Option<&str>,
        pid: &str,
        h: i64,
    ) -> ActivationRecord {
        ActivationRecord {
            activation_key: key.into(),
            send_key: send.into(),
            campaign: "c".into(),
            segment: "s".into(),
            run_id: "r".into(),
            profile_id: pid.into(),
            change: "entered".into(),
            group: group.into(),
            channel: channel.map(Into::into),
            outcome: outcome.0.into(),
            reason: outcome.1.map(Into::into),
            destination: None,
            template: None,
            decided_at: at(h),
            conversion_until: at(h + 24 * 7),
        }
    }

    #[tokio::test]
    async fn counts_distinct_keys_and_final_outcomes() {
        let records = vec![
            rec("a1", "s1", "treated", ("sent", None), Some("email"), "p1", 0),
            rec("a1", "s1", "treated", ("sent", None), Some("email"), "p1", 0), // duplicate
            rec("a2", "s2", "treated", ("deferred", Some("quiet_hours")), Some("sms"), "p2", 0),
            rec("a2", "s2", "treated", ("sent", None), Some("sms"), "p2", 8),
            rec("a3", "s3", "treated", ("suppressed", Some("consent")), None, "p3", 0),
            rec("a4", "a4:holdout", "holdout", ("holdout", None), None, "p4", 0),
            rec("a5", "a5:holdout", "holdout", ("holdout", None), None, "p5", 0),
        ];
        let ctx = crate::catalog::validation_session(at(24 * 30)).await.unwrap();
        let batch = lake::activations_batch(&records).unwrap();
        ctx.register_table("activations", Arc::new(MemTable::try_new(lake::activations_schema(), vec![vec![batch]]).unwrap())).unwrap();
        let r = compute(&ctx, "r", at(24 * 30)).await.unwrap();
        let f = &r.campaigns[0];
        assert_eq!(f.treated.entries, 3);
        assert_eq!(f.holdout.entries, 2);
        assert_eq!(f.contacted.entries, 2);
        assert_eq!(f.sent, [("email".to_string(), 1), ("sms".to_string(), 1)].into_iter().collect::<BTreeMap<_, _>>());
        assert_eq!(f.suppressed.get("consent"), Some(&1));
        assert_eq!(f.deferred_quiet_hours, 1);
        assert_eq!(f.pending, 0);
        // No orders in the empty catalog: no conversions.
        assert_eq!((f.treated.converted, f.holdout.converted), (0, 0));
    }
}
