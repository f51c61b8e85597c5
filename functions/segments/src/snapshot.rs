//! The run's profile snapshot: every profile of the profiles table as of the start of the
//! run, pseudonymous fields only (the Scan projects consents, identifier kinds and
//! activity dates, never a clear identifier), written to the lake per profile partition.
//! A re-run of the same run id reuses the snapshot already written, so it computes the
//! same members.

use std::collections::HashMap;

use ariane_shared::aws::Clients;
use ariane_shared::error::{AwsError, SdkResultExt};
use ariane_shared::lake::{self, ProfileState};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::run::RunError;

/// Parallel Scan segments: DynamoDB serves each from its own partition range.
const SCAN_SEGMENTS: i32 = 4;

/// The marker that a run's snapshot is complete (beside the snapshot folder, so the
/// `profiles` table never lists it).
pub fn marker_key(run_id: &str) -> String {
    format!("segments/_runs/{run_id}/profiles.json")
}

/// Decodes one profile item (the attributes `identity` writes at the top level).
pub fn profile_state(item: &HashMap<String, AttributeValue>) -> Option<ProfileState> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str);
    let flag = |name: &str| item.get(name).and_then(|v| v.as_bool().ok()).copied();
    let profile_id = text("profile_id")?.to_string();
    let kinds: Vec<&str> = text("id_kinds").map(|k| k.split(',').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
    let has = |kind: &str| kinds.contains(&kind);
    let mut channels: Vec<String> =
        text("channels").map(|c| c.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()).unwrap_or_default();
    channels.sort();
    Some(ProfileState {
        profile_id,
        first_seen_at: text("first_seen").and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc)),
        last_seen_day: text("last_seen_day").map(str::to_string),
        channels,
        has_email: has("email"),
        has_phone: has("phone"),
        has_push_token: has("push_token"),
        email_opt_in: flag("email_opt_in"),
        sms_opt_in: flag("sms_opt_in"),
        push_opt_in: flag("push_opt_in"),
        ads_opt_in: flag("ads_opt_in"),
    })
}

async fn scan_segment(clients: &Clients, table: &str, segment: i32) -> Result<Vec<ProfileState>, AwsError> {
    let mut out = Vec::new();
    let mut start: Option<HashMap<String, AttributeValue>> = None;
    loop {
        let page = clients
            .dynamodb
            .scan()
            .table_name(table)
            .segment(segment)
            .total_segments(SCAN_SEGMENTS)
            .filter_expression("sk = :profile")
            .expression_attribute_values(":profile", AttributeValue::S("PROFILE".into()))
            .projection_expression(
                "profile_id, id_kinds, channels, first_seen, last_seen_day, email_opt_in, sms_opt_in, push_opt_in, ads_opt_in",
            )
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .aws("dynamodb:Scan profiles")?;
        out.extend(page.items().iter().filter_map(profile_state));
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => return Ok(out),
        }
    }
}

/// Writes the snapshot of `run_id` (unless a complete one exists) and returns the number
/// of profiles in it.
pub async fn ensure_snapshot(clients: &Clients, table: &str, bucket: &str, run_id: &str, partitions: usize) -> Result<usize, RunError> {
    if let Some(bytes) = crate::run::get_bytes(clients, bucket, &marker_key(run_id)).await? {
        let marker: serde_json::Value = serde_json::from_slice(&bytes)?;
        if marker["partitions"].as_u64() == Some(partitions as u64) {
            return Ok(marker["profiles"].as_u64().unwrap_or_default() as usize);
        }
    }
    let scans = (0..SCAN_SEGMENTS).map(|segment| scan_segment(clients, table, segment));
    let mut buckets: Vec<Vec<ProfileState>> = vec![Vec::new(); partitions];
    let mut total = 0;
    for part in futures::future::try_join_all(scans).await? {
        total += part.len();
        for p in part {
            buckets[lake::profile_bucket(&p.profile_id, partitions)].push(p);
        }
    }
    for (k, mut states) in buckets.into_iter().enumerate() {
        states.sort_by(|a, b| a.profile_id.cmp(&b.profile_id));
        let bytes = lake::parquet_bytes(lake::profiles_schema(), &[lake::profiles_batch(&states)?])?;
        crate::run::put(clients, bucket, &lake::profiles_snapshot_key(run_id, k), bytes).await?;
    }
    let marker = serde_json::json!({ "run_id": run_id, "partitions": partitions, "profiles": total });
    crate::run::put(clients, bucket, &marker_key(run_id), serde_json::to_vec_pretty(&marker)?).await?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_items_decode_without_clear_identifiers() {
        let s = |v: &str| AttributeValue::S(v.into());
        let item: HashMap<String, AttributeValue> = [
            ("profile_id".to_string(), s("p_1")),
            ("id_kinds".to_string(), s("cookie_id,email,push_token")),
            ("channels".to_string(), s("web,app")),
            ("first_seen".to_string(), s("2026-01-02T03:04:05.000000Z")),
            ("last_seen_day".to_string(), s("2026-11-20")),
            ("email_opt_in".to_string(), AttributeValue::Bool(true)),
            ("push_opt_in".to_string(), AttributeValue::Bool(false)),
        ]
        .into_iter()
        .collect();
        let p = profile_state(&item).unwrap();
        assert!(p.has_email && p.has_push_token && !p.has_phone);
        assert_eq!((p.email_opt_in, p.push_opt_in, p.sms_opt_in), (Some(true), Some(false), None));
        assert_eq!(p.channels, vec!["app", "web"]);
        assert_eq!(p.first_seen_at.unwrap().to_rfc3339(), "2026-01-02T03:04:05+00:00");
        assert!(profile_state(&HashMap::new()).is_none());
    }
}
