//! The lake: key layout and Arrow/Parquet schemas of everything Ariane writes to the lake
//! bucket. Only pseudonymous ids and hashed identifiers are written here.
//!
//! ```text
//! events/channel=<channel>/event_date=<yyyy-mm-dd>/<source fingerprint>.parquet
//! rejects/channel=<channel>/<source fingerprint>.parquet
//! ledger/ingest/<channel>/<entry id>.json            (one per landed key and version, see ledger_entry_id)
//! ledger/ingest/<channel>/content/<source fingerprint>.json   (which entry first ingested this content)
//! identity/links/resolved_date=<yyyy-mm-dd>/<batch fingerprint>.parquet
//! events_by_profile/_current.json, events_by_profile/gen=<G>/...     (the compacted lake, see compacted_prefix)
//! segments/_runs/<run id>/profiles/bucket=<k>/profiles.parquet   (profile snapshot of a run)
//! segments/<segment>/runs/<run id>/members-<k>-of-<n>.parquet      (membership, per partition)
//! segments/<segment>/current.json
//! activations/decided_date=<yyyy-mm-dd>/<batch fingerprint>.parquet   (activation decisions)
//! audiences/<campaign>/<platform>/run=<run id>/<add|remove>-<batch fingerprint>.csv
//! reports/campaigns/<run id>.json, reports/campaigns/latest.json
//! reports/erasures/<kind>-<keyed identifier hash>.json              (one per erasure request)
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Builder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::model::{CanonicalEvent, LocalTime, RejectedRow, SegmentMember};

/// Rows per Parquet row group written by the functions: bounds writer memory.
pub const ROW_GROUP_ROWS: usize = 8192;

pub fn events_prefix() -> &'static str {
    "events/"
}

pub fn events_key(channel: &str, event_date: &str, fingerprint: &str) -> String {
    format!("events/channel={channel}/event_date={event_date}/{fingerprint}.parquet")
}

pub fn rejects_key(channel: &str, fingerprint: &str) -> String {
    format!("rejects/channel={channel}/{fingerprint}.parquet")
}

/// The ingest ledger entry `id` of `channel` (an id of [`ledger_entry_id`]; entries written
/// before ledger entries were per key and version are named by their content fingerprint).
pub fn ledger_key(channel: &str, id: &str) -> String {
    format!("ledger/ingest/{channel}/{id}.json")
}

/// The id of the ledger entry of one landed object: its key and version (the version id
/// in a versioned bucket, else the entity tag), within its channel.
pub fn ledger_entry_id(channel: &str, key: &str, version: &str) -> String {
    crate::identifiers::stable_id(&["ledger-entry", channel, key, version.trim_matches('"')])
}

/// The content index of the ingest ledger: which entry first ingested the content of
/// this fingerprint (content-identical objects are recorded as its duplicates).
pub fn ledger_content_key(channel: &str, fingerprint: &str) -> String {
    format!("ledger/ingest/{channel}/content/{fingerprint}.json")
}

pub fn ledger_prefix() -> &'static str {
    "ledger/ingest/"
}

/// Whether a key under [`ledger_prefix`] is a ledger entry (`ledger/ingest/<channel>/<id>.json`),
/// not the content index.
pub fn is_ledger_entry_key(key: &str) -> bool {
    key.strip_prefix(ledger_prefix())
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(channel, name)| !channel.is_empty() && !name.contains('/') && name.ends_with(".json"))
}

pub fn links_prefix() -> &'static str {
    "identity/links/"
}

pub fn links_key(resolved_date: &str, fingerprint: &str) -> String {
    format!("identity/links/resolved_date={resolved_date}/{fingerprint}.parquet")
}

/// The compacted lake (written by the segments function's daily compaction, see
/// `docs/segments.md`): one generation at a time, named by its manifest.
///
/// ```text
/// events_by_profile/_current.json                                  (the manifest: the committed generation)
/// events_by_profile/gen=<G>/bucket=<k|unlinked>/part-<i>.parquet    (events by profile bucket)
/// events_by_profile/gen=<G>/links/bucket=<k|unlinked>/part-<i>.parquet  (latest link per identifier)
/// events_by_profile/gen=<G>/history/part-<i>.parquet                (every link)
/// ```
pub fn compacted_prefix() -> &'static str {
    "events_by_profile/"
}

/// The compaction's manifest: which generation readers read and which source keys it covers.
pub fn compaction_manifest_key() -> &'static str {
    "events_by_profile/_current.json"
}

/// The bucket of compacted events whose identity key has no link (or an erased one).
pub const UNLINKED_BUCKET: &str = "unlinked";

/// The compacted bucket label of a profile: its [`profile_bucket`], or [`UNLINKED_BUCKET`]
/// for no profile (no link) or the erased profile `''`.
pub fn compacted_bucket_label(profile_id: Option<&str>, buckets: usize) -> String {
    match profile_id {
        Some(p) if !p.is_empty() => profile_bucket(p, buckets).to_string(),
        _ => UNLINKED_BUCKET.to_string(),
    }
}

pub fn compacted_generation_prefix(generation: &str) -> String {
    format!("events_by_profile/gen={generation}/")
}

pub fn compacted_events_prefix(generation: &str, bucket: &str) -> String {
    format!("events_by_profile/gen={generation}/bucket={bucket}/")
}

pub fn compacted_events_key(generation: &str, bucket: &str, part: usize) -> String {
    format!("events_by_profile/gen={generation}/bucket={bucket}/part-{part}.parquet")
}

pub fn compacted_links_prefix(generation: &str) -> String {
    format!("events_by_profile/gen={generation}/links/")
}

pub fn compacted_links_key(generation: &str, bucket: &str, part: usize) -> String {
    format!("events_by_profile/gen={generation}/links/bucket={bucket}/part-{part}.parquet")
}

pub fn compacted_history_prefix(generation: &str) -> String {
    format!("events_by_profile/gen={generation}/history/")
}

pub fn compacted_history_key(generation: &str, part: usize) -> String {
    format!("events_by_profile/gen={generation}/history/part-{part}.parquet")
}

/// Schema of compacted event files: [`events_schema`] with the partition columns of
/// `events/` (`channel`, `event_date`) as real columns, last.
pub fn compacted_events_schema() -> SchemaRef {
    let mut fields: Vec<Field> = events_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("channel", DataType::Utf8, false));
    fields.push(Field::new("event_date", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// Schema of compacted link files: [`links_schema`] with the partition column of
/// `identity/links/` (`resolved_date`) as a real column, last.
pub fn compacted_links_schema() -> SchemaRef {
    let mut fields: Vec<Field> = links_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("resolved_date", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

pub fn segment_members_key(segment: &str, run_id: &str, partition: usize, partitions: usize) -> String {
    format!("segments/{segment}/runs/{run_id}/members-{partition}-of-{partitions}.parquet")
}

/// Where a run's profile snapshot lives (one `bucket=<k>` folder per profile partition).
pub fn profiles_snapshot_prefix(run_id: &str) -> String {
    format!("segments/_runs/{run_id}/profiles/")
}

pub fn profiles_snapshot_key(run_id: &str, bucket: usize) -> String {
    format!("segments/_runs/{run_id}/profiles/bucket={bucket}/profiles.parquet")
}

/// The profile partition (`0..partitions`) of a profile id: a stable hash, so the same
/// profile lands in the same partition in every run with the same partition count.
pub fn profile_bucket(profile_id: &str, partitions: usize) -> usize {
    let digest = crate::identifiers::sha256_hex(profile_id);
    let n = u64::from_str_radix(&digest[..12], 16).expect("hex digest");
    (n % partitions.max(1) as u64) as usize
}

pub fn segment_current_key(segment: &str) -> String {
    format!("segments/{segment}/current.json")
}

/// A run id from the run's timestamp: sortable, one per scheduled tick.
pub fn run_id(run_at: DateTime<Utc>) -> String {
    run_at.format("%Y%m%dT%H%M%SZ").to_string()
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Schema of the canonical events files (the `channel` and `event_date` columns come
/// from the partition path).
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("occurred_at", utc_micros(), false),
        Field::new("anchor_id", DataType::Utf8, true),
        Field::new("email_hash", DataType::Utf8, true),
        Field::new("phone_hash", DataType::Utf8, true),
        Field::new("order_id", DataType::Utf8, true),
        Field::new("sku", DataType::Utf8, true),
        Field::new("product_name", DataType::Utf8, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("quantity", DataType::Int64, true),
        Field::new("unit_price_minor", DataType::Int64, true),
        Field::new("line_total_minor", DataType::Int64, true),
        Field::new("order_total_minor", DataType::Int64, true),
        Field::new("currency", DataType::Utf8, true),
        Field::new("store_id", DataType::Utf8, true),
        Field::new("campaign_id", DataType::Utf8, true),
        Field::new("page_url", DataType::Utf8, true),
        Field::new("consent_channel", DataType::Utf8, true),
        Field::new("source_key", DataType::Utf8, false),
        Field::new("source_line", DataType::UInt64, false),
        // `shifted` / `ambiguous` when occurred_at was a local time the clock did not show
        // exactly once (daylight saving changes), null otherwise. Files written before the
        // column existed read it as null.
        Field::new("local_time", DataType::Utf8, true),
    ]))
}

/// Converts events to one record batch of [`events_schema`].
pub fn events_batch(events: &[CanonicalEvent]) -> Result<RecordBatch, ArrowError> {
    let n = events.len();
    let mut s: Vec<StringBuilder> = (0..16).map(|_| StringBuilder::with_capacity(n, n * 16)).collect();
    let mut at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut ints: Vec<Int64Builder> = (0..4).map(|_| Int64Builder::with_capacity(n)).collect();
    let mut line = UInt64Builder::with_capacity(n);
    for e in events {
        s[0].append_value(&e.event_id);
        s[1].append_value(&e.event_type);
        at.append_value(e.occurred_at.timestamp_micros());
        s[2].append_option(e.anchor_id.as_deref());
        s[3].append_option(e.email_hash.as_deref());
        s[4].append_option(e.phone_hash.as_deref());
        s[5].append_option(e.order_id.as_deref());
        s[6].append_option(e.sku.as_deref());
        s[7].append_option(e.product_name.as_deref());
        s[8].append_option(e.category.as_deref());
        ints[0].append_option(e.quantity);
        ints[1].append_option(e.unit_price_minor);
        ints[2].append_option(e.line_total_minor);
        ints[3].append_option(e.order_total_minor);
        s[9].append_option(e.currency.as_deref());
        s[10].append_option(e.store_id.as_deref());
        s[11].append_option(e.campaign_id.as_deref());
        s[12].append_option(e.page_url.as_deref());
        s[13].append_option(e.consent_channel.as_deref());
        s[14].append_value(&e.source_key);
        line.append_value(e.source_line);
        s[15].append_option(e.local_time.map(LocalTime::as_str));
    }
    let mut s = s.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut ints = ints.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut next_s = || s.next().expect("16 string columns");
    let mut next_i = || ints.next().expect("4 int columns");
    let columns: Vec<ArrayRef> = vec![
        next_s(),
        next_s(),
        Arc::new(at.finish()),
        next_s(),
        next_s(),
        next_s(),
        next_s(),
        next_s(),
        next_s(),
        next_s(),
        next_i(),
        next_i(),
        next_i(),
        next_i(),
        next_s(),
        next_s(),
        next_s(),
        next_s(),
        next_s(),
        next_s(),
        Arc::new(line.finish()),
        next_s(),
    ];
    RecordBatch::try_new(events_schema(), columns)
}

/// Schema of rejected rows.
pub fn rejects_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("channel", DataType::Utf8, false),
        Field::new("source_key", DataType::Utf8, false),
        Field::new("line", DataType::UInt64, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("raw", DataType::Utf8, false),
    ]))
}

pub fn rejects_batch(rows: &[RejectedRow]) -> Result<RecordBatch, ArrowError> {
    let col = |f: &dyn Fn(&RejectedRow) -> &str| -> ArrayRef { Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>()) };
    let mut line = UInt64Builder::with_capacity(rows.len());
    rows.iter().for_each(|r| line.append_value(r.line));
    RecordBatch::try_new(
        rejects_schema(),
        vec![col(&|r| &r.channel), col(&|r| &r.source_key), Arc::new(line.finish()), col(&|r| &r.reason), col(&|r| &r.raw)],
    )
}

/// Reads rejected rows back (tests, reports).
pub fn rejects_from_batches(batches: &[RecordBatch]) -> Result<Vec<RejectedRow>, ArrowError> {
    let mut out = Vec::new();
    for b in batches {
        let s = |name: &str| string_column(b, name);
        let (channel, key, reason, raw) = (s("channel")?, s("source_key")?, s("reason")?, s("raw")?);
        let line = b
            .column_by_name("line")
            .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>())
            .ok_or_else(|| ArrowError::SchemaError("line column missing".into()))?;
        for i in 0..b.num_rows() {
            out.push(RejectedRow {
                channel: channel.value(i).to_string(),
                source_key: key.value(i).to_string(),
                line: line.value(i),
                reason: reason.value(i).to_string(),
                raw: raw.value(i).to_string(),
            });
        }
    }
    Ok(out)
}

/// One resolved link: this identifier hash belongs to this profile (as of `resolved_at`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityLink {
    pub identifier_hash: String,
    pub profile_id: String,
    pub resolved_at: DateTime<Utc>,
    pub observation_id: String,
}

/// Schema of the identity links the segments step joins events through.
pub fn links_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("identifier_hash", DataType::Utf8, false),
        Field::new("profile_id", DataType::Utf8, false),
        Field::new("resolved_at", utc_micros(), false),
        Field::new("observation_id", DataType::Utf8, false),
    ]))
}

pub fn links_batch(links: &[IdentityLink]) -> Result<RecordBatch, ArrowError> {
    let col = |f: &dyn Fn(&IdentityLink) -> &str| -> ArrayRef { Arc::new(links.iter().map(|l| Some(f(l))).collect::<StringArray>()) };
    let mut at = TimestampMicrosecondBuilder::with_capacity(links.len()).with_timezone("UTC");
    links.iter().for_each(|l| at.append_value(l.resolved_at.timestamp_micros()));
    RecordBatch::try_new(
        links_schema(),
        vec![col(&|l| &l.identifier_hash), col(&|l| &l.profile_id), Arc::new(at.finish()), col(&|l| &l.observation_id)],
    )
}

/// Schema of a segment membership snapshot: the profile, its key columns and its payload
/// (JSON objects of text values).
pub fn members_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("profile_id", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, false),
    ]))
}

pub fn members_batch(members: &[SegmentMember]) -> Result<RecordBatch, ArrowError> {
    let ids: StringArray = members.iter().map(|m| Some(m.profile_id.as_str())).collect();
    let json = |f: &dyn Fn(&SegmentMember) -> &BTreeMap<String, String>| {
        members
            .iter()
            .map(|m| serde_json::to_string(f(m)).map(Some))
            .collect::<Result<StringArray, _>>()
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))
    };
    let keys = json(&|m| &m.key)?;
    let payloads = json(&|m| &m.payload)?;
    RecordBatch::try_new(members_schema(), vec![Arc::new(ids), Arc::new(keys), Arc::new(payloads)])
}

pub fn members_from_batches(batches: &[RecordBatch]) -> Result<Vec<SegmentMember>, ArrowError> {
    let mut out = Vec::new();
    let parse = |text: &str| -> Result<BTreeMap<String, String>, ArrowError> {
        serde_json::from_str(text).map_err(|e| ArrowError::ExternalError(Box::new(e)))
    };
    for b in batches {
        let (ids, keys, payloads) = (string_column(b, "profile_id")?, string_column(b, "key")?, string_column(b, "payload")?);
        for i in 0..b.num_rows() {
            out.push(SegmentMember {
                profile_id: ids.value(i).to_string(),
                key: parse(keys.value(i))?,
                payload: parse(payloads.value(i))?,
            });
        }
    }
    Ok(out)
}

/// One profile as the segments see it: pseudonymous state only (no clear identifier).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileState {
    pub profile_id: String,
    pub first_seen_at: Option<DateTime<Utc>>,
    /// `YYYY-MM-DD`.
    pub last_seen_day: Option<String>,
    /// Channels seen, sorted.
    pub channels: Vec<String>,
    pub has_email: bool,
    pub has_phone: bool,
    pub has_push_token: bool,
    pub email_opt_in: Option<bool>,
    pub sms_opt_in: Option<bool>,
    pub push_opt_in: Option<bool>,
    pub ads_opt_in: Option<bool>,
}

/// Schema of a run's profile snapshot (the `profiles` table of segments; `bucket` comes
/// from the partition path).
pub fn profiles_schema() -> SchemaRef {
    let flag = |name: &str, nullable: bool| Field::new(name, DataType::Boolean, nullable);
    Arc::new(Schema::new(vec![
        Field::new("profile_id", DataType::Utf8, false),
        Field::new("first_seen_at", utc_micros(), true),
        Field::new("last_seen_day", DataType::Utf8, true),
        Field::new("channels", DataType::Utf8, false),
        flag("has_email", false),
        flag("has_phone", false),
        flag("has_push_token", false),
        flag("email_opt_in", true),
        flag("sms_opt_in", true),
        flag("push_opt_in", true),
        flag("ads_opt_in", true),
        flag("email_reachable", false),
        flag("sms_reachable", false),
        flag("push_reachable", false),
    ]))
}

pub fn profiles_batch(profiles: &[ProfileState]) -> Result<RecordBatch, ArrowError> {
    use arrow::array::BooleanArray;
    let text = |f: &dyn Fn(&ProfileState) -> Option<String>| -> ArrayRef { Arc::new(profiles.iter().map(f).collect::<StringArray>()) };
    let flag = |f: &dyn Fn(&ProfileState) -> Option<bool>| -> ArrayRef { Arc::new(profiles.iter().map(f).collect::<BooleanArray>()) };
    let mut first = TimestampMicrosecondBuilder::with_capacity(profiles.len()).with_timezone("UTC");
    profiles.iter().for_each(|p| first.append_option(p.first_seen_at.map(|t| t.timestamp_micros())));
    RecordBatch::try_new(
        profiles_schema(),
        vec![
            text(&|p| Some(p.profile_id.clone())),
            Arc::new(first.finish()),
            text(&|p| p.last_seen_day.clone()),
            text(&|p| Some(p.channels.join(","))),
            flag(&|p| Some(p.has_email)),
            flag(&|p| Some(p.has_phone)),
            flag(&|p| Some(p.has_push_token)),
            flag(&|p| p.email_opt_in),
            flag(&|p| p.sms_opt_in),
            flag(&|p| p.push_opt_in),
            flag(&|p| p.ads_opt_in),
            flag(&|p| Some(p.has_email && p.email_opt_in == Some(true))),
            flag(&|p| Some(p.has_phone && p.sms_opt_in == Some(true))),
            flag(&|p| Some(p.has_push_token && p.push_opt_in == Some(true))),
        ],
    )
}

fn string_column<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a StringArray, ArrowError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| ArrowError::SchemaError(format!("string column {name} missing")))
}

/// Writer properties used for every lake file: snappy, bounded row groups.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(ROW_GROUP_ROWS)).build()
}

/// A streaming Parquet writer over any sink (a temp file for large outputs).
pub fn parquet_writer<W: Write + Send>(sink: W, schema: SchemaRef) -> Result<ArrowWriter<W>, ParquetError> {
    ArrowWriter::try_new(sink, schema, Some(writer_properties()))
}

/// Columns of the events files whose values are all distinct: a dictionary would hold
/// every value once more, and cost a hash and a lookup per value, for nothing.
const EVENTS_DISTINCT_COLUMNS: [&str; 2] = ["event_id", "source_line"];

/// [`writer_properties`] for the events files ([`events_schema`]): no dictionary for the
/// columns whose values are all distinct. The same values are read back.
pub fn events_writer_properties() -> WriterProperties {
    let mut builder = WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    for column in EVENTS_DISTINCT_COLUMNS {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    builder.build()
}

/// A streaming Parquet writer of events files ([`events_schema`], [`events_writer_properties`]).
pub fn events_parquet_writer<W: Write + Send>(sink: W) -> Result<ArrowWriter<W>, ParquetError> {
    ArrowWriter::try_new(sink, events_schema(), Some(events_writer_properties()))
}

/// Encodes batches as one Parquet file in memory (small outputs).
pub fn parquet_bytes(schema: SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>, ParquetError> {
    let mut buf = Vec::new();
    let mut w = parquet_writer(&mut buf, schema)?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(buf)
}

/// Decodes a Parquet file held in memory.
pub fn read_parquet_bytes(data: Bytes) -> Result<Vec<RecordBatch>, ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(data)?.build()?;
    reader.collect::<Result<Vec<_>, _>>().map_err(ParquetError::from)
}

/// The number of rows of a set of batches.
pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

/// Convenience for tests and reports: the non-null values of a string column.
pub fn string_values(batches: &[RecordBatch], name: &str) -> Result<Vec<String>, ArrowError> {
    let mut out = Vec::new();
    for b in batches {
        let c = string_column(b, name)?;
        out.extend((0..c.len()).filter(|&i| c.is_valid(i)).map(|i| c.value(i).to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> CanonicalEvent {
        CanonicalEvent {
            event_id: format!("e{i}"),
            channel: "ecommerce".into(),
            event_type: "order_line".into(),
            occurred_at: DateTime::parse_from_rfc3339("2026-03-29T01:30:00Z").unwrap().with_timezone(&Utc),
            anchor_id: Some("h".into()),
            email_hash: None,
            phone_hash: None,
            order_id: Some("#1".into()),
            sku: Some("SKU".into()),
            product_name: Some("Pull col roulé, laine".into()),
            category: Some("vetements".into()),
            quantity: Some(2),
            unit_price_minor: Some(1250),
            line_total_minor: Some(2500),
            order_total_minor: None,
            currency: Some("EUR".into()),
            store_id: None,
            campaign_id: Some("c1".into()),
            page_url: None,
            consent_channel: None,
            source_key: "ecommerce/a.csv".into(),
            source_line: i,
            local_time: match i {
                3 => Some(LocalTime::Shifted),
                4 => Some(LocalTime::Ambiguous),
                _ => None,
            },
        }
    }

    #[test]
    fn events_round_trip_through_parquet() {
        let events: Vec<_> = (2..10).map(event).collect();
        let batch = events_batch(&events).unwrap();
        let bytes = parquet_bytes(events_schema(), &[batch]).unwrap();
        let back = read_parquet_bytes(Bytes::from(bytes)).unwrap();
        assert_eq!(row_count(&back), 8);
        assert_eq!(string_values(&back, "product_name").unwrap()[0], "Pull col roulé, laine");
        assert_eq!(back[0].schema(), events_schema());
        // The local-time flag: null but for the shifted and the ambiguous row.
        let flags = back[0].column_by_name("local_time").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        let flags: Vec<Option<&str>> = (0..flags.len()).map(|i| flags.is_valid(i).then(|| flags.value(i))).collect();
        assert_eq!(flags, vec![None, Some("shifted"), Some("ambiguous"), None, None, None, None, None]);
    }

    #[test]
    fn ledger_entries_are_told_from_the_content_index() {
        let id = ledger_entry_id("pos", "pos/a.csv", "\"v1\"");
        assert_eq!(id, ledger_entry_id("pos", "pos/a.csv", "v1"), "quotes of an entity tag do not count");
        assert_ne!(id, ledger_entry_id("pos", "pos/a.csv", "v2"));
        assert_ne!(id, ledger_entry_id("pos", "pos/b.csv", "v1"));
        assert!(is_ledger_entry_key(&ledger_key("pos", &id)));
        assert!(is_ledger_entry_key("ledger/ingest/unknown/abc.json"));
        assert!(!is_ledger_entry_key(&ledger_content_key("pos", "fp")));
        assert!(!is_ledger_entry_key("ledger/ingest/pos/"));
        assert!(!is_ledger_entry_key("events/channel=pos/x.json"));
    }

    #[test]
    fn members_round_trip() {
        let m = vec![SegmentMember {
            profile_id: "p_1".into(),
            key: [("tier".to_string(), "loyal".to_string())].into_iter().collect(),
            payload: [("order_count".to_string(), "3".to_string())].into_iter().collect(),
        }];
        let bytes = parquet_bytes(members_schema(), &[members_batch(&m).unwrap()]).unwrap();
        let back = members_from_batches(&read_parquet_bytes(Bytes::from(bytes)).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn keys_are_partitioned() {
        assert_eq!(events_key("pos", "2026-11-01", "abc"), "events/channel=pos/event_date=2026-11-01/abc.parquet");
        let at = DateTime::parse_from_rfc3339("2026-11-23T06:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(run_id(at), "20261123T060000Z");
    }
}

pub fn activations_prefix() -> &'static str {
    "activations/"
}

pub fn activations_key(decided_date: &str, fingerprint: &str) -> String {
    format!("activations/decided_date={decided_date}/{fingerprint}.parquet")
}

/// A hashed customer list part of one campaign, platform, run and operation.
pub fn audience_key(campaign: &str, platform: &str, run_id: &str, op: &str, fingerprint: &str) -> String {
    format!("audiences/{campaign}/{platform}/run={run_id}/{op}-{fingerprint}.csv")
}

/// The report of the erasure requested by an identifier (its keyed hash: no clear value).
pub fn erasure_report_key(kind: &str, identifier_hash: &str) -> String {
    format!("reports/erasures/{kind}-{identifier_hash}.json")
}

pub fn campaign_report_key(run_id: &str) -> String {
    format!("reports/campaigns/{run_id}.json")
}

pub fn campaign_report_latest_key() -> &'static str {
    "reports/campaigns/latest.json"
}

/// One activation decision (pseudonymous: the profile id, never a contact). Written by
/// `activate` for every decision, at least once (the campaign report deduplicates by
/// `send_key` and `outcome`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActivationRecord {
    /// The campaign's entry: (campaign, segment, run, profile, change, key).
    pub activation_key: String,
    /// One effect of the entry: a message slot, the audience, or the holdout record.
    pub send_key: String,
    pub campaign: String,
    pub segment: String,
    pub run_id: String,
    pub profile_id: String,
    /// `entered` or `exited`.
    pub change: String,
    /// `treated` or `holdout`.
    pub group: String,
    pub channel: Option<String>,
    /// `sent`, `suppressed`, `deferred`, `holdout`, `audience_added`, `audience_removed`.
    pub outcome: String,
    /// Why not sent now: `consent`, `unreachable`, `cap`, `cooldown`, `erased`,
    /// `quiet_hours`, `permanent_failure`.
    pub reason: Option<String>,
    pub destination: Option<String>,
    pub template: Option<String>,
    pub decided_at: DateTime<Utc>,
    /// An order up to this instant (and after `decided_at`) counts as a conversion.
    pub conversion_until: DateTime<Utc>,
}

pub fn activations_schema() -> SchemaRef {
    let text = |n: &str, nullable: bool| Field::new(n, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("activation_key", false),
        text("send_key", false),
        text("campaign", false),
        text("segment", false),
        text("run_id", false),
        text("profile_id", false),
        text("change", false),
        text("group", false),
        text("channel", true),
        text("outcome", false),
        text("reason", true),
        text("destination", true),
        text("template", true),
        Field::new("decided_at", utc_micros(), false),
        Field::new("conversion_until", utc_micros(), false),
    ]))
}

pub fn activations_batch(rows: &[ActivationRecord]) -> Result<RecordBatch, ArrowError> {
    let req = |f: &dyn Fn(&ActivationRecord) -> &str| -> ArrayRef { Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>()) };
    let opt = |f: &dyn Fn(&ActivationRecord) -> Option<&str>| -> ArrayRef { Arc::new(rows.iter().map(f).collect::<StringArray>()) };
    let ts = |f: &dyn Fn(&ActivationRecord) -> DateTime<Utc>| -> ArrayRef {
        let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
        rows.iter().for_each(|r| b.append_value(f(r).timestamp_micros()));
        Arc::new(b.finish())
    };
    RecordBatch::try_new(
        activations_schema(),
        vec![
            req(&|r| &r.activation_key),
            req(&|r| &r.send_key),
            req(&|r| &r.campaign),
            req(&|r| &r.segment),
            req(&|r| &r.run_id),
            req(&|r| &r.profile_id),
            req(&|r| &r.change),
            req(&|r| &r.group),
            opt(&|r| r.channel.as_deref()),
            req(&|r| &r.outcome),
            opt(&|r| r.reason.as_deref()),
            opt(&|r| r.destination.as_deref()),
            opt(&|r| r.template.as_deref()),
            ts(&|r| r.decided_at),
            ts(&|r| r.conversion_until),
        ],
    )
}

/// Activation records back from their Parquet batches.
pub fn activations_from_batches(batches: &[RecordBatch]) -> Result<Vec<ActivationRecord>, ArrowError> {
    use arrow::array::TimestampMicrosecondArray;
    let mut out = Vec::new();
    for b in batches {
        let col = |name: &str| -> Result<&StringArray, ArrowError> {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| ArrowError::SchemaError(format!("activation records: no text column {name}")))
        };
        let ts = |name: &str| -> Result<&TimestampMicrosecondArray, ArrowError> {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
                .ok_or_else(|| ArrowError::SchemaError(format!("activation records: no timestamp column {name}")))
        };
        let (ak, sk, camp, seg, run, pid, change, group, channel, outcome, reason, dest, tpl) = (
            col("activation_key")?,
            col("send_key")?,
            col("campaign")?,
            col("segment")?,
            col("run_id")?,
            col("profile_id")?,
            col("change")?,
            col("group")?,
            col("channel")?,
            col("outcome")?,
            col("reason")?,
            col("destination")?,
            col("template")?,
        );
        let (decided, until) = (ts("decided_at")?, ts("conversion_until")?);
        let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_string());
        let at = |a: &TimestampMicrosecondArray, i: usize| DateTime::from_timestamp_micros(a.value(i)).unwrap_or_default();
        for i in 0..b.num_rows() {
            out.push(ActivationRecord {
                activation_key: ak.value(i).into(),
                send_key: sk.value(i).into(),
                campaign: camp.value(i).into(),
                segment: seg.value(i).into(),
                run_id: run.value(i).into(),
                profile_id: pid.value(i).into(),
                change: change.value(i).into(),
                group: group.value(i).into(),
                channel: opt(channel, i),
                outcome: outcome.value(i).into(),
                reason: opt(reason, i),
                destination: opt(dest, i),
                template: opt(tpl, i),
                decided_at: at(decided, i),
                conversion_until: at(until, i),
            });
        }
    }
    Ok(out)
}
