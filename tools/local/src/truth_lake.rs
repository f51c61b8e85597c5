//! A local lake built from the data generator's ground truth, for segment tests and
//! benchmarks: no AWS, no identity function.
//!
//! [`build_truth_lake`] generates each export ([`ariane_datagen::write_channel`]) into
//! scratch space, ingests it in-process exactly as the ingest function does (embedded
//! channel specs, [`engine::parse`] into a [`LakeSink`]), and lays the result out under
//! `dir` with the lake's keys ([`lake`]):
//!
//! ```text
//! events/channel=<c>/event_date=<d>/<fingerprint>[-<part>].parquet   (the ingested events)
//! rejects/channel=<c>/<fingerprint>.parquet
//! identity/links/resolved_date=<cfg.now date>/truth.parquet          (identity from the truth)
//! segments/_runs/<snapshot run id>/profiles/bucket=<k>/profiles.parquet
//! _truth/events/<channel>-<name>.parquet                             (per event truth, for the oracle)
//! ```
//!
//! Identity comes from the truth instead of the identity function:
//!
//! * every event's identity key (`anchor_id`) is linked to the true person of its row
//!   (the event's `(source_key, source_line)` is the truth row's `(relative path, line)`);
//!   the profile id is [`profile_id_of`] the person index (`p_` + 24 hex digits);
//! * an identity key seen on rows of two or more persons (the family traps: a shared tablet
//!   cookie or a family e-mail typed alone) goes to the person with the most rows of it,
//!   ties to the smallest person index; its rows then count for that person everywhere
//!   (events, profile), exactly as the lake's join does;
//! * event types and instants are the truth's (per-event truth files); where the export
//!   cannot carry the truth's instant the ingested one is kept: the truth's milliseconds
//!   for the web's microseconds, and a Paris local time repeated by the autumn clock
//!   change (ingest reads the earlier occurrence, the truth may hold the later one);
//! * an identity key without any usable identifier (only a placeholder such as
//!   `test@test.com`, per the identity rules' `[blocked]` values) gets no link, as the
//!   identity function would create no profile for it; rows without a person (anonymous
//!   till receipts) have no identifier and no identity key, so no link either.
//!
//! The profile snapshot holds one [`ProfileState`] per person with at least one linked
//! event, built from the person's linked rows:
//!
//! * `first_seen_at`, `last_seen_day`, `channels`: from the rows' true instants and channels;
//! * `has_email` / `has_phone` / `has_push_token`: a linked row carried a usable identifier
//!   of that kind (rules' `usable`; the store's generic phone typed at a till is not the
//!   person's, so it does not count); push tokens come with every app event of an app user;
//! * consents: every consent the rows state (app `push_opt_in`/`push_opt_out`, CRM
//!   `consent_given`/`consent_withdrawn` on their `consent_channel`, `email_unsubscribe`,
//!   `sms_stop`, and the orders' `Accepts Marketing` e-mail opt-in), taken from what ingest
//!   sends identity, at the row's true instant; per channel the latest decision wins, at
//!   the same instant a withdrawal wins (as `functions/identity/src/profile.rs`).
//!
//! Memory: exports are generated and ingested one at a time; the truth CSV is read in
//! step with the parser (both follow the file's line order), so what stays in memory is
//! a map identity key → (person, rows, identifier kinds) and, at the end, one small record
//! per person.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context};
use ariane_datagen::{store_generic_phone, write_channel, ChannelTruthRow, Export, GenConfig};
use ariane_identity::rules::Rules;
use ariane_ingest::engine::{self, RowSink, SinkError};
use ariane_ingest::map::FileContext;
use ariane_ingest::pipeline::{fingerprint, LakeSink};
use ariane_ingest::spec::Catalog;
use ariane_shared::identifiers::{sha256_hex, sha256_hex_bytes, IdentifierKind};
use ariane_shared::lake::{self, IdentityLink, ProfileState};
use ariane_shared::model::{CanonicalEvent, ConsentChannel, Observation, RejectedRow};
use arrow::array::{
    ArrayRef, BooleanBuilder, Int64Builder, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder,
    UInt64Builder, UInt8Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;

/// No person (anonymous row, unlinked key).
pub const NO_PERSON: u32 = u32::MAX;

/// Identifier kinds of an identity key, as bits.
pub mod flags {
    /// At least one identifier the identity rules accept: the key gets a profile.
    pub const USABLE: u8 = 1;
    pub const EMAIL: u8 = 2;
    pub const PHONE: u8 = 4;
    pub const PUSH_TOKEN: u8 = 8;
}

/// Channels, in alphabetical order (bit `i` of a channel set = `CHANNELS[i]`).
pub const CHANNELS: [&str; 7] = ["app", "crm", "ecommerce", "email", "pos", "sms", "web"];

/// Consent channels, in the order of the consent bits (`2 i` stated, `2 i + 1` granted).
pub const CONSENT_CHANNELS: [ConsentChannel; 4] = [ConsentChannel::Email, ConsentChannel::Sms, ConsentChannel::Push, ConsentChannel::Ads];

/// The profile id of person index `index` (`P0000042` is index 42): `p_` + 24 hex digits.
pub fn profile_id_of(index: u32) -> String {
    format!("p_{index:024x}")
}

/// The person index of a profile id written by [`profile_id_of`].
pub fn person_of_profile(profile_id: &str) -> Option<u32> {
    profile_id.strip_prefix("p_").and_then(|h| u32::from_str_radix(h, 16).ok())
}

/// The person index of a truth `person_id` (`P0000042` → 42).
pub fn person_index(person_id: &str) -> Option<u32> {
    person_id.strip_prefix('P').and_then(|n| n.parse().ok())
}

/// Bit of a channel name in a channel set.
pub fn channel_bit(channel: &str) -> Option<u8> {
    CHANNELS.iter().position(|c| *c == channel).map(|i| 1u8 << i)
}

/// Where the per-event truth files live (relative to the lake directory).
pub const TRUTH_EVENTS_DIR: &str = "_truth/events";

/// How the ingested rows of one export compare with its truth.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExportReport {
    pub export: String,
    /// Data rows written (= truth rows).
    pub rows: u64,
    pub events: u64,
    pub rejected: u64,
    /// Rows the truth says valid that ingest rejected (must be 0).
    pub valid_rejected: u64,
    /// Events of rows the truth says invalid (must be 0).
    pub invalid_accepted: u64,
    /// Events with no truth row at their line (must be 0).
    pub without_truth: u64,
    /// Events whose ingested type differs from the truth's.
    pub type_differs: u64,
    /// Events whose ingested instant differs from the truth's.
    pub instant_differs: u64,
    /// Events at a Paris local time repeated by the autumn clock change that ingest read
    /// as the other occurrence (the export cannot tell them apart): the ingested instant is
    /// kept as the truth.
    pub ambiguous_instants: u64,
    /// Events of a known person without identity key (must be 0).
    pub person_without_anchor: u64,
    /// Valid truth rows that became neither an event nor a reject (must be 0).
    pub truth_unmatched: u64,
    /// Rows of a known person whose identifiers were all unusable for ingest (the
    /// `0000000000` placeholder phone alone): no identity key, no link (expected).
    pub person_without_identifiers: u64,
    /// A few of the differences above (`line: truth vs ingested`).
    pub examples: Vec<String>,
    /// Wall time of generating and ingesting the export, seconds (of which generating).
    pub seconds: f64,
    pub generate_seconds: f64,
}

/// What [`build_truth_lake`] built.
#[derive(Clone, Debug)]
pub struct TruthLake {
    pub dir: PathBuf,
    pub snapshot_run_id: String,
    pub partitions: usize,
    /// `cfg.persons`.
    pub persons: usize,
    /// Profiles of the snapshot (persons with at least one linked event).
    pub profiles: usize,
    /// Events written to the lake.
    pub events: u64,
    /// Events whose identity key is linked to a profile.
    pub linked_events: u64,
    /// Identity links written (one per linked identity key).
    pub links: u64,
    /// Identity keys seen on rows of two or more persons (given to the majority).
    pub contested_keys: u64,
    /// Rows whose identity key went to another person than their own.
    pub reassigned_rows: u64,
    /// Identity keys without a usable identifier (no link).
    pub unusable_keys: u64,
    /// Per export, in generation order.
    pub exports: Vec<ExportReport>,
    /// The per-event truth files (`dir/_truth/events`), one per export: see [`truth_events_schema`].
    pub truth_events_dir: PathBuf,
    /// The link date (`resolved_date=`) and instant: `cfg.now`.
    pub resolved_at: DateTime<Utc>,
}

impl TruthLake {
    /// Everything the truth says ingest got wrong (every counter that must be 0), summed.
    pub fn ingest_disagreements(&self) -> u64 {
        self.exports
            .iter()
            .map(|e| {
                e.valid_rejected
                    + e.invalid_accepted
                    + e.without_truth
                    + e.person_without_anchor
                    + e.truth_unmatched
                    + e.type_differs
                    + e.instant_differs
            })
            .sum()
    }
}

/// Schema of the per-event truth files: one row per ingested event, with the truth of its
/// row (`event_type`, `occurred_at`, `person`: the truth's; `ingested_*`: ingest's) and the
/// ingested product fields and campaign. `key_flags` are the [`flags`] of its identity key, `consents`
/// the consents the row states (bits of [`CONSENT_CHANNELS`]).
pub fn truth_events_schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("anchor_id", DataType::Utf8, true),
        Field::new("channel", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("occurred_at", ts(), false),
        Field::new("person", DataType::UInt32, true),
        Field::new("truth_matched", DataType::Boolean, false),
        Field::new("ingested_event_type", DataType::Utf8, false),
        Field::new("ingested_occurred_at", ts(), false),
        Field::new("key_flags", DataType::UInt8, false),
        Field::new("consents", DataType::UInt8, false),
        Field::new("order_id", DataType::Utf8, true),
        Field::new("sku", DataType::Utf8, true),
        Field::new("category", DataType::Utf8, true),
        Field::new("line_total_minor", DataType::Int64, true),
        Field::new("order_total_minor", DataType::Int64, true),
        Field::new("source_key", DataType::Utf8, false),
        Field::new("source_line", DataType::UInt64, false),
        Field::new("campaign_id", DataType::Utf8, true),
    ]))
}

/// One identity key: its (majority) person, row count and identifier kinds.
#[derive(Clone, Copy, Debug)]
struct KeyEntry {
    person: u32,
    rows: u32,
    flags: u8,
    flags_known: bool,
}

#[derive(Default)]
struct Keys {
    map: HashMap<u128, KeyEntry>,
    /// Keys with rows of several persons: rows per person.
    contested: HashMap<u128, HashMap<u32, u32>>,
}

impl Keys {
    fn entry(&mut self, key: u128) -> &mut KeyEntry {
        self.map.entry(key).or_insert(KeyEntry { person: NO_PERSON, rows: 0, flags: 0, flags_known: false })
    }

    fn add_row(&mut self, key: u128, person: u32) {
        let e = self.entry(key);
        if e.person == NO_PERSON || e.person == person {
            e.person = person;
            e.rows += 1;
            return;
        }
        let (cur, rows) = (e.person, e.rows);
        let counts = self.contested.entry(key).or_insert_with(|| HashMap::from([(cur, rows)]));
        *counts.entry(person).or_insert(0) += 1;
        // Majority, ties to the smallest person index.
        let (best, n) = counts.iter().map(|(p, n)| (*p, *n)).max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0))).expect("non-empty");
        let e = self.map.get_mut(&key).expect("inserted above");
        e.person = best;
        e.rows = n;
    }

    /// The linked person of a key.
    fn person(&self, key: u128) -> Option<u32> {
        self.map.get(&key).filter(|e| e.person != NO_PERSON && e.flags & flags::USABLE != 0).map(|e| e.person)
    }
}

/// Parses an `anchor_id` (32 hex digits).
pub fn parse_key(anchor: &str) -> Option<u128> {
    (anchor.len() == 32).then(|| u128::from_str_radix(anchor, 16).ok()).flatten()
}

/// Hex form of a parsed key (the `anchor_id` / link `identifier_hash`).
pub fn key_hex(key: u128) -> String {
    format!("{key:032x}")
}

/// A truth row reduced to what the lake needs.
#[derive(Clone, Debug)]
struct TruthRow {
    person: Option<u32>,
    valid: bool,
    /// The truth lists identifiers ingest can read.
    has_identifiers: bool,
    /// A Paris local time repeated by the autumn clock change (`dst_fall_back_*` note).
    ambiguous: bool,
    event_type: String,
    at_micros: i64,
}

/// Whether a truth row lists an identifier ingest can use: its `identifiers` minus the
/// kinds its `identifier_warning` flags (`email_invalid`, `phone_invalid`). The checkouts
/// truth lists a mistyped e-mail among `identifiers` although it flags it invalid.
fn usable_identifiers(row: &ChannelTruthRow) -> bool {
    let warned: Vec<&str> = row.identifier_warning.split('|').filter_map(|w| w.strip_suffix("_invalid")).collect();
    row.identifiers.split('|').any(|k| !k.is_empty() && !warned.contains(&k))
}

/// The truth CSV, read in line order alongside the parser.
struct TruthCursor {
    rows: csv::DeserializeRecordsIntoIter<BufReader<File>, ChannelTruthRow>,
    /// Rows read ahead and not matched yet, by line.
    pending: std::collections::BTreeMap<u64, TruthRow>,
    last_line: u64,
    done: bool,
    /// Rows read in all.
    read: u64,
    /// Valid truth rows with no event nor reject (left behind).
    skipped_valid: u64,
}

impl TruthCursor {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let rows = csv::Reader::from_reader(BufReader::with_capacity(1 << 16, file)).into_deserialize();
        Ok(TruthCursor { rows, pending: Default::default(), last_line: 0, done: false, read: 0, skipped_valid: 0 })
    }

    /// The truth row at `line` (taken out), reading ahead as needed.
    fn take(&mut self, line: u64) -> anyhow::Result<Option<TruthRow>> {
        while !self.done && self.last_line < line {
            match self.rows.next() {
                None => self.done = true,
                Some(row) => {
                    let row: ChannelTruthRow = row.context("reading a truth row")?;
                    self.read += 1;
                    self.last_line = row.line;
                    let at = DateTime::parse_from_rfc3339(&row.occurred_at_utc)
                        .with_context(|| format!("truth line {}: occurred_at_utc {:?}", row.line, row.occurred_at_utc))?
                        .with_timezone(&Utc);
                    let person = if row.person_id.is_empty() {
                        None
                    } else {
                        Some(person_index(&row.person_id).with_context(|| format!("truth person {:?}", row.person_id))?)
                    };
                    self.pending.insert(
                        row.line,
                        TruthRow {
                            person,
                            valid: row.valid,
                            has_identifiers: usable_identifiers(&row),
                            ambiguous: row.note.starts_with("dst_fall_back"),
                            event_type: row.event_type,
                            at_micros: at.timestamp_micros(),
                        },
                    );
                }
            }
        }
        let found = self.pending.remove(&line);
        // Rows far behind the parser are never asked for again (the parser follows the
        // file's line order); bound the look-behind.
        while let Some((&first, _)) = self.pending.first_key_value() {
            if first + 100_000 >= line {
                break;
            }
            let (_, row) = self.pending.pop_first().expect("checked above");
            self.skipped_valid += u64::from(row.valid);
        }
        Ok(found)
    }

    /// (rows read, valid rows never matched).
    fn finish(mut self) -> anyhow::Result<(u64, u64)> {
        for row in self.rows.by_ref() {
            let row: ChannelTruthRow = row.context("reading a truth row")?;
            self.read += 1;
            self.skipped_valid += u64::from(row.valid);
        }
        self.skipped_valid += self.pending.values().filter(|r| r.valid).count() as u64;
        Ok((self.read, self.skipped_valid))
    }
}

/// Rows of the per-event truth file being written.
struct TruthEventsWriter {
    writer: ArrowWriter<BufWriter<File>>,
    rows: Vec<TruthEventRow>,
}

struct TruthEventRow {
    event: CanonicalEvent,
    event_type: String,
    at_micros: i64,
    person: Option<u32>,
    matched: bool,
    key_flags: u8,
    consents: u8,
}

impl TruthEventsWriter {
    fn create(path: &Path) -> anyhow::Result<Self> {
        let file = BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
        Ok(TruthEventsWriter { writer: lake::parquet_writer(file, truth_events_schema())?, rows: Vec::new() })
    }

    fn push(&mut self, row: TruthEventRow) -> anyhow::Result<()> {
        self.rows.push(row);
        if self.rows.len() >= lake::ROW_GROUP_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let n = self.rows.len();
        let mut s: Vec<StringBuilder> = (0..10).map(|_| StringBuilder::with_capacity(n, n * 16)).collect();
        let mut at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut ingested_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut person = UInt32Builder::with_capacity(n);
        let mut matched = BooleanBuilder::with_capacity(n);
        let mut key_flags = UInt8Builder::with_capacity(n);
        let mut consents = UInt8Builder::with_capacity(n);
        let mut line_total = Int64Builder::with_capacity(n);
        let mut order_total = Int64Builder::with_capacity(n);
        let mut line = UInt64Builder::with_capacity(n);
        for r in self.rows.drain(..) {
            let e = &r.event;
            s[0].append_value(&e.event_id);
            s[1].append_option(e.anchor_id.as_deref());
            s[2].append_value(&e.channel);
            s[3].append_value(&r.event_type);
            at.append_value(r.at_micros);
            person.append_option(r.person);
            matched.append_value(r.matched);
            s[4].append_value(&e.event_type);
            ingested_at.append_value(e.occurred_at.timestamp_micros());
            key_flags.append_value(r.key_flags);
            consents.append_value(r.consents);
            s[5].append_option(e.order_id.as_deref());
            s[6].append_option(e.sku.as_deref());
            s[7].append_option(e.category.as_deref());
            line_total.append_option(e.line_total_minor);
            order_total.append_option(e.order_total_minor);
            s[8].append_value(&e.source_key);
            line.append_value(e.source_line);
            s[9].append_option(e.campaign_id.as_deref());
        }
        let mut s = s.into_iter().map(|mut b| Arc::new(b.finish()) as ArrayRef);
        let mut next = || s.next().expect("10 string columns");
        let (event_id, anchor, channel, event_type, ingested_type, order_id, sku, category, source_key, campaign) =
            (next(), next(), next(), next(), next(), next(), next(), next(), next(), next());
        let columns: Vec<ArrayRef> = vec![
            event_id,
            anchor,
            channel,
            event_type,
            Arc::new(at.finish()),
            Arc::new(person.finish()),
            Arc::new(matched.finish()),
            ingested_type,
            Arc::new(ingested_at.finish()),
            Arc::new(key_flags.finish()),
            Arc::new(consents.finish()),
            order_id,
            sku,
            category,
            Arc::new(line_total.finish()),
            Arc::new(order_total.finish()),
            source_key,
            Arc::new(line.finish()),
            campaign,
        ];
        self.writer.write(&RecordBatch::try_new(truth_events_schema(), columns)?)?;
        Ok(())
    }

    fn close(mut self) -> anyhow::Result<()> {
        self.flush()?;
        self.writer.close()?;
        Ok(())
    }
}

/// The sink the parser writes into: the lake sink, plus the truth bookkeeping.
struct TruthSink<'a> {
    lake: LakeSink,
    truth: TruthCursor,
    keys: &'a mut Keys,
    rules: &'a Rules,
    store_phones: &'a std::collections::HashSet<String>,
    out: TruthEventsWriter,
    report: ExportReport,
    /// The observation of the row being mapped (delivered just before its event).
    pending: Option<(u64, u8, u8)>,
    error: Option<anyhow::Error>,
}

impl TruthSink<'_> {
    fn observation_bits(&self, o: &Observation) -> (u8, u8) {
        let mut f = 0u8;
        for id in &o.identifiers {
            if !self.rules.usable(id.kind, &id.value) {
                continue;
            }
            f |= flags::USABLE;
            match id.kind {
                IdentifierKind::Email => f |= flags::EMAIL,
                IdentifierKind::Phone if !self.store_phones.contains(&id.value) => f |= flags::PHONE,
                IdentifierKind::PushToken => f |= flags::PUSH_TOKEN,
                _ => {}
            }
        }
        let mut consents = 0u8;
        for c in &o.consents {
            let i = CONSENT_CHANNELS.iter().position(|k| *k == c.channel).expect("every consent channel");
            let (stated, granted) = (1u8 << (2 * i), 1u8 << (2 * i + 1));
            if consents & stated == 0 {
                consents |= stated | if c.granted { granted } else { 0 };
            } else if !c.granted {
                // Two decisions on one row: the withdrawal wins.
                consents &= !granted;
            }
        }
        (f, consents)
    }

    fn on_event(&mut self, e: &CanonicalEvent) -> anyhow::Result<TruthEventRow> {
        self.report.events += 1;
        let truth = self.truth.take(e.source_line)?;
        let (obs_flags, consents) = match self.pending.take() {
            Some((line, f, c)) if line == e.source_line => (Some(f), c),
            _ => (None, 0),
        };
        let key = match e.anchor_id.as_deref() {
            Some(a) => Some(parse_key(a).with_context(|| format!("anchor_id {a:?} is not 32 hex digits"))?),
            None => None,
        };
        let mut key_flags = 0;
        if let Some(k) = key {
            let entry = self.keys.entry(k);
            if let (false, Some(f)) = (entry.flags_known, obs_flags) {
                entry.flags = f;
                entry.flags_known = true;
            }
            key_flags = entry.flags;
        }
        let (event_type, at_micros, person, matched) = match &truth {
            Some(t) => {
                if !t.valid {
                    self.report.invalid_accepted += 1;
                }
                let type_differs = t.event_type != e.event_type;
                // The truth keeps milliseconds; web exports carry microseconds: the same
                // instant at the truth's precision is the ingested one.
                let ingested = e.occurred_at.timestamp_micros();
                let mut t_at =
                    if t.at_micros % 1000 == 0 && ingested.div_euclid(1000) * 1000 == t.at_micros { ingested } else { t.at_micros };
                // A local time the autumn clock change repeats cannot be told from the export
                // (ingest reads the earlier one): either reading is the row's instant.
                if t.ambiguous && (t_at - ingested).abs() == 3_600_000_000 {
                    self.report.ambiguous_instants += 1;
                    t_at = ingested;
                }
                let instant_differs = t_at != ingested;
                self.report.type_differs += u64::from(type_differs);
                self.report.instant_differs += u64::from(instant_differs);
                if (type_differs || instant_differs) && self.report.examples.len() < 3 {
                    let at = |m: i64| DateTime::<Utc>::from_timestamp_micros(m).map(|t| t.to_rfc3339()).unwrap_or_default();
                    self.report.examples.push(format!(
                        "line {}: truth {} {} vs ingested {} {}",
                        e.source_line,
                        t.event_type,
                        at(t.at_micros),
                        e.event_type,
                        at(e.occurred_at.timestamp_micros())
                    ));
                }
                if t.person.is_some() && t.valid && key.is_none() && !t.has_identifiers {
                    self.report.person_without_identifiers += 1;
                }
                (t.event_type.clone(), t_at, t.person.filter(|_| t.valid), t.valid)
            }
            None => {
                self.report.without_truth += 1;
                (e.event_type.clone(), e.occurred_at.timestamp_micros(), None, false)
            }
        };
        match (person, key) {
            (Some(p), Some(k)) => self.keys.add_row(k, p),
            (Some(_), None) if truth.as_ref().is_some_and(|t| t.has_identifiers) => {
                self.report.person_without_anchor += 1;
                if self.report.examples.len() < 6 {
                    self.report.examples.push(format!("line {}: a person's row with identifiers but no identity key", e.source_line));
                }
            }
            _ => {}
        }
        Ok(TruthEventRow { event: e.clone(), event_type, at_micros, person, matched, key_flags, consents })
    }
}

impl RowSink for TruthSink<'_> {
    fn event(&mut self, event: CanonicalEvent) -> Result<(), SinkError> {
        if self.error.is_none() {
            match self.on_event(&event).and_then(|row| self.out.push(row)) {
                Ok(()) => {}
                Err(e) => self.error = Some(e),
            }
        }
        self.lake.event(event)
    }

    fn rejected(&mut self, row: RejectedRow) -> Result<(), SinkError> {
        self.report.rejected += 1;
        match self.truth.take(row.line) {
            Ok(Some(t)) if t.valid => self.report.valid_rejected += 1,
            Ok(_) => {}
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self.lake.rejected(row)
    }

    fn observation(&mut self, o: Observation) -> Result<(), SinkError> {
        // Not spooled: the truth replaces identity.
        let (f, c) = self.observation_bits(&o);
        self.pending = Some((o.source_line, f, c));
        Ok(())
    }
}

/// Per person, what the profile snapshot needs.
#[derive(Clone, Copy, Debug)]
struct PersonAgg {
    first: i64,
    last: i64,
    channels: u8,
    flags: u8,
    /// Per consent channel: the latest decision's instant and 0 (none) / 1 (granted) / 2 (withdrawn).
    consent_at: [i64; 4],
    consent: [u8; 4],
}

impl Default for PersonAgg {
    fn default() -> Self {
        PersonAgg { first: i64::MAX, last: i64::MIN, channels: 0, flags: 0, consent_at: [i64::MIN; 4], consent: [0; 4] }
    }
}

impl PersonAgg {
    fn seen(&self) -> bool {
        self.first != i64::MAX
    }

    fn consent(&mut self, i: usize, granted: bool, at: i64) {
        // Latest decision wins; at the same instant a withdrawal wins.
        let key = |at: i64, granted: bool| (at, !granted);
        let cur = (self.consent_at[i], self.consent[i] == 2);
        if self.consent[i] == 0 || key(at, granted) > cur {
            self.consent_at[i] = at;
            self.consent[i] = if granted { 1 } else { 2 };
        }
    }

    fn state(&self, index: u32) -> ProfileState {
        let at = |micros: i64| DateTime::<Utc>::from_timestamp_micros(micros).expect("in range");
        let opt = |i: usize| match self.consent[i] {
            0 => None,
            v => Some(v == 1),
        };
        ProfileState {
            profile_id: profile_id_of(index),
            first_seen_at: Some(at(self.first)),
            last_seen_day: Some(at(self.last).format("%Y-%m-%d").to_string()),
            channels: CHANNELS.iter().enumerate().filter(|(i, _)| self.channels & (1 << i) != 0).map(|(_, c)| c.to_string()).collect(),
            has_email: self.flags & flags::EMAIL != 0,
            has_phone: self.flags & flags::PHONE != 0,
            has_push_token: self.flags & flags::PUSH_TOKEN != 0,
            email_opt_in: opt(0),
            sms_opt_in: opt(1),
            push_opt_in: opt(2),
            ads_opt_in: opt(3),
        }
    }
}

/// A truth lake's profile snapshot read back: person → (`email_reachable`, `push_reachable`).
pub fn read_snapshot(dir: &Path, snapshot_run_id: &str) -> anyhow::Result<std::collections::BTreeMap<u32, (bool, bool)>> {
    let mut profiles = std::collections::BTreeMap::new();
    for path in parquet_files(&dir.join(ariane_shared::lake::profiles_snapshot_prefix(snapshot_run_id)))? {
        for_each_batch(&path, |b| {
            let id = column::<StringArray>(b, "profile_id")?;
            let email = column::<arrow::array::BooleanArray>(b, "email_reachable")?;
            let push = column::<arrow::array::BooleanArray>(b, "push_reachable")?;
            for i in 0..b.num_rows() {
                let p = person_of_profile(id.value(i)).with_context(|| format!("profile {:?}", id.value(i)))?;
                profiles.insert(p, (email.value(i), push.value(i)));
            }
            Ok(())
        })?;
    }
    Ok(profiles)
}

/// A truth lake's identity links read back: identity key → person (a key linked to two
/// persons is an error).
pub fn read_links(dir: &Path) -> anyhow::Result<HashMap<u128, u32>> {
    let mut links: HashMap<u128, u32> = HashMap::new();
    for path in parquet_files(&dir.join(ariane_shared::lake::links_prefix()))? {
        for_each_batch(&path, |b| {
            let key = column::<StringArray>(b, "identifier_hash")?;
            let profile = column::<StringArray>(b, "profile_id")?;
            for i in 0..b.num_rows() {
                let k = parse_key(key.value(i)).with_context(|| format!("link key {:?}", key.value(i)))?;
                let p = person_of_profile(profile.value(i)).with_context(|| format!("profile {:?}", profile.value(i)))?;
                if links.insert(k, p).is_some_and(|old| old != p) {
                    bail!("key {} linked twice", key.value(i));
                }
            }
            Ok(())
        })?;
    }
    Ok(links)
}

/// Reads every row of a Parquet file, batch by batch.
pub fn for_each_batch(path: &Path, mut f: impl FnMut(&RecordBatch) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("reading {}", path.display()))?
        .with_batch_size(8192)
        .build()?;
    for batch in reader {
        f(&batch.with_context(|| format!("reading {}", path.display()))?)?;
    }
    Ok(())
}

/// A typed column of a batch.
pub fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> anyhow::Result<&'a T> {
    b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<T>()).with_context(|| format!("column {name} missing or of another type"))
}

/// The `.parquet` files under `dir`, recursively, sorted.
pub fn parquet_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if !d.exists() {
            continue;
        }
        for entry in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Moves what a sink wrote (event parts, rejects) to their lake keys under `dir`, as the
/// ingest function names them for the file of fingerprint `fp`; observations are dropped
/// (the truth lake's identity comes from the truth).
fn place_parts(dir: &Path, channel: &str, fp: &str, sink: LakeSink) -> anyhow::Result<()> {
    let (parts, rejects, observations) = sink.finish_paths()?;
    for part in parts {
        let name = part.file_name().and_then(|n| n.to_str()).context("part name")?.to_string();
        // events-<yyyy-mm-dd>-<part>.parquet
        let rest = name.strip_prefix("events-").and_then(|r| r.strip_suffix(".parquet")).context("part name")?;
        let (date, n) = (&rest[..10], &rest[11..]);
        let object = if n == "0" { fp.to_string() } else { format!("{fp}-{n}") };
        let dest = dir.join(lake::events_key(channel, date, &object));
        std::fs::create_dir_all(dest.parent().expect("key has folders"))?;
        std::fs::rename(&part, &dest).with_context(|| format!("moving {} to {}", part.display(), dest.display()))?;
    }
    if let Some(r) = rejects {
        let dest = dir.join(lake::rejects_key(channel, fp));
        std::fs::create_dir_all(dest.parent().expect("key has folders"))?;
        std::fs::rename(&r, &dest)?;
    }
    let _ = std::fs::remove_file(observations);
    Ok(())
}

/// Adds a file that carries no person (the spend file of `channels/costs/`) to a truth
/// lake: ingested as the function does (the embedded spec that `source_key` selects for
/// `channel`), its events and rejects laid out under `dir`. Returns the events written.
pub fn add_export_without_persons(dir: &Path, channel: &str, source_key: &str, data: &[u8]) -> anyhow::Result<u64> {
    let catalog = Catalog::embedded().map_err(|e| anyhow::anyhow!("channel specs: {e:?}"))?;
    let spec = catalog.select(channel, source_key).with_context(|| format!("{source_key}: no channel spec"))?;
    let scratch = dir.join("_truth").join(format!("scratch-{channel}"));
    std::fs::create_dir_all(&scratch)?;
    let fp = fingerprint(channel, &sha256_hex(&format!("truth-lake:{source_key}:{}", sha256_hex_bytes(data))), Some(data.len() as i64));
    let file = FileContext { source_key: source_key.to_string(), fingerprint: fp.clone() };
    let mut sink = LakeSink::new(scratch.clone())?;
    let counts = engine::parse(Box::new(std::io::Cursor::new(data.to_vec())), spec, file, &mut sink)
        .with_context(|| format!("ingesting {source_key}"))?;
    place_parts(dir, channel, &fp, sink)?;
    std::fs::remove_dir_all(&scratch)?;
    Ok(counts.events)
}

/// Builds the truth lake of `exports` (generated with `cfg`) in `dir`: see the module
/// documentation. `partitions` is the number of profile buckets of the snapshot of run
/// `snapshot_run_id`.
pub fn build_truth_lake(
    cfg: &GenConfig,
    exports: &[Export],
    dir: &Path,
    snapshot_run_id: &str,
    partitions: usize,
) -> anyhow::Result<TruthLake> {
    ensure!(partitions >= 1, "partitions must be at least 1");
    ensure!(cfg.persons < NO_PERSON as usize, "too many persons");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let catalog = Catalog::embedded().map_err(|e| anyhow::anyhow!("channel specs: {e:?}"))?;
    let rules = Rules::embedded().map_err(|e| anyhow::anyhow!("identity rules: {e}"))?;
    // The store's generic phones (stores M001..M999), as ingest normalises them (E.164).
    let store_phones: std::collections::HashSet<String> = (1..1000).map(|i| store_generic_phone(&format!("M{i:03}"))).collect();
    let truth_dir = dir.join(TRUTH_EVENTS_DIR);
    std::fs::create_dir_all(&truth_dir)?;
    let scratch = dir.join("_truth").join("scratch");

    let mut keys = Keys::default();
    let mut reports = Vec::new();
    let mut events = 0u64;
    for &export in exports {
        let started = std::time::Instant::now();
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)?;
        }
        let sink_dir = scratch.join("sink");
        std::fs::create_dir_all(&sink_dir)?;
        let data_path = scratch.join(export.file_name());
        let truth_path = scratch.join(export.truth_file_name());
        let stats = {
            let mut out = BufWriter::with_capacity(1 << 16, File::create(&data_path)?);
            let mut truth = BufWriter::with_capacity(1 << 16, File::create(&truth_path)?);
            let stats = write_channel(cfg, export, &mut out, &mut truth)?;
            std::io::Write::flush(&mut out)?;
            std::io::Write::flush(&mut truth)?;
            stats
        };
        let generate_seconds = started.elapsed().as_secs_f64();
        let channel = export.channel();
        let source_key = export.relative_path();
        let spec = catalog.select(channel, &source_key).with_context(|| format!("{export}: no channel spec"))?;
        ensure!(spec.name == export.name(), "{export} read by spec {}", spec.file);
        // One file per channel here, read by this module's own sink (one open lake part per
        // event date, on the machine's memory): at a million persons the CRM export spans
        // some 3,000 dates, more than the function's default `limits.max_dates` (1,000,
        // which bounds the parts a Lambda holds open) allows in one file.
        let mut spec = spec.clone();
        spec.limits.max_dates = spec.limits.max_dates.max(100_000);
        let spec = &spec;
        let size = std::fs::metadata(&data_path)?.len() as i64;
        let etag = sha256_hex(&format!("truth-lake:{}:{}:{:?}:{:?}:{export}", cfg.seed, cfg.persons, cfg.max_rows, cfg.now));
        let fp = fingerprint(channel, &etag, Some(size));
        let file = FileContext { source_key: source_key.clone(), fingerprint: fp.clone() };
        let out_path = truth_dir.join(format!("{}-{}.parquet", export.channel(), export.name()));
        let mut sink = TruthSink {
            lake: LakeSink::new(sink_dir.clone())?,
            truth: TruthCursor::open(&truth_path)?,
            keys: &mut keys,
            rules: &rules,
            store_phones: &store_phones,
            out: TruthEventsWriter::create(&out_path)?,
            report: ExportReport { export: export.to_string(), ..Default::default() },
            pending: None,
            error: None,
        };
        let input = Box::new(BufReader::with_capacity(1 << 16, File::open(&data_path)?));
        let counts = engine::parse(input, spec, file, &mut sink).with_context(|| format!("ingesting {export}"))?;
        if let Some(e) = sink.error.take() {
            return Err(e.context(format!("matching {export} with its truth")));
        }
        let TruthSink { lake: lake_sink, truth, out, mut report, .. } = sink;
        out.close()?;
        let (read, unmatched) = truth.finish()?;
        report.truth_unmatched = unmatched;
        ensure!(read == stats.rows, "{export}: {read} truth rows read, {} written", stats.rows);
        report.rows = stats.rows;
        ensure!(counts.events == report.events, "{export}: parser counted {} events, sink saw {}", counts.events, report.events);
        place_parts(dir, channel, &fp, lake_sink)?;
        report.seconds = started.elapsed().as_secs_f64();
        report.generate_seconds = generate_seconds;
        events += report.events;
        reports.push(report);
        std::fs::remove_dir_all(&scratch)?;
    }
    let _ = std::fs::remove_dir(dir.join("_truth").join("scratch"));

    // Links: one per identity key with a usable identifier and a person.
    let resolved_at = cfg.now;
    let links_path = dir.join(lake::links_key(&resolved_at.format("%Y-%m-%d").to_string(), "truth"));
    std::fs::create_dir_all(links_path.parent().expect("key has folders"))?;
    let mut links = 0u64;
    let mut unusable_keys = 0u64;
    {
        let mut w = lake::parquet_writer(BufWriter::new(File::create(&links_path)?), lake::links_schema())?;
        let mut buf: Vec<IdentityLink> = Vec::with_capacity(lake::ROW_GROUP_ROWS);
        let mut sorted: Vec<(u128, u32)> = Vec::new();
        for (k, e) in &keys.map {
            if e.flags & flags::USABLE == 0 {
                unusable_keys += 1;
            } else if e.person != NO_PERSON {
                sorted.push((*k, e.person));
            }
        }
        sorted.sort_unstable();
        for (k, person) in sorted {
            buf.push(IdentityLink {
                identifier_hash: key_hex(k),
                profile_id: profile_id_of(person),
                resolved_at,
                observation_id: "truth".into(),
            });
            links += 1;
            if buf.len() >= lake::ROW_GROUP_ROWS {
                w.write(&lake::links_batch(&buf)?)?;
                buf.clear();
            }
        }
        if !buf.is_empty() {
            w.write(&lake::links_batch(&buf)?)?;
        }
        w.close()?;
    }

    // Profiles: from the linked rows of every person.
    let mut persons = vec![PersonAgg::default(); cfg.persons];
    let mut linked_events = 0u64;
    let mut reassigned_rows = 0u64;
    for path in parquet_files(&truth_dir)? {
        for_each_batch(&path, |b| {
            use arrow::array::{Array, StringArray, TimestampMicrosecondArray, UInt32Array, UInt8Array};
            let anchor = column::<StringArray>(b, "anchor_id")?;
            let channel = column::<StringArray>(b, "channel")?;
            let at = column::<TimestampMicrosecondArray>(b, "occurred_at")?;
            let person = column::<UInt32Array>(b, "person")?;
            let kf = column::<UInt8Array>(b, "key_flags")?;
            let consents = column::<UInt8Array>(b, "consents")?;
            for i in 0..b.num_rows() {
                if anchor.is_null(i) {
                    continue;
                }
                let Some(p) = parse_key(anchor.value(i)).and_then(|k| keys.person(k)) else { continue };
                linked_events += 1;
                if person.is_valid(i) && person.value(i) != p {
                    reassigned_rows += 1;
                }
                let agg = persons.get_mut(p as usize).with_context(|| format!("person {p} out of range"))?;
                let t = at.value(i);
                agg.first = agg.first.min(t);
                agg.last = agg.last.max(t);
                agg.channels |= channel_bit(channel.value(i)).with_context(|| format!("channel {}", channel.value(i)))?;
                agg.flags |= kf.value(i);
                let c = consents.value(i);
                for ch in 0..CONSENT_CHANNELS.len() {
                    if c & (1 << (2 * ch)) != 0 {
                        agg.consent(ch, c & (1 << (2 * ch + 1)) != 0, t);
                    }
                }
            }
            Ok(())
        })?;
    }

    // The snapshot: one file per bucket holding profiles.
    let mut writers: Vec<Option<ArrowWriter<BufWriter<File>>>> = (0..partitions).map(|_| None).collect();
    let mut buffers: Vec<Vec<ProfileState>> = (0..partitions).map(|_| Vec::new()).collect();
    let mut profiles = 0usize;
    let flush = |k: usize, writers: &mut Vec<Option<ArrowWriter<BufWriter<File>>>>, buf: &mut Vec<ProfileState>| -> anyhow::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if writers[k].is_none() {
            let path = dir.join(lake::profiles_snapshot_key(snapshot_run_id, k));
            std::fs::create_dir_all(path.parent().expect("key has folders"))?;
            writers[k] = Some(lake::parquet_writer(BufWriter::new(File::create(&path)?), lake::profiles_schema())?);
        }
        writers[k].as_mut().expect("created above").write(&lake::profiles_batch(buf)?)?;
        buf.clear();
        Ok(())
    };
    for (index, agg) in persons.iter().enumerate() {
        if !agg.seen() {
            continue;
        }
        let state = agg.state(index as u32);
        let k = lake::profile_bucket(&state.profile_id, partitions);
        buffers[k].push(state);
        profiles += 1;
        if buffers[k].len() >= lake::ROW_GROUP_ROWS {
            flush(k, &mut writers, &mut buffers[k])?;
        }
    }
    for k in 0..partitions {
        flush(k, &mut writers, &mut buffers[k])?;
        if let Some(w) = writers[k].take() {
            w.close()?;
        }
    }
    if profiles == 0 {
        bail!("no profile: nothing was linked");
    }

    Ok(TruthLake {
        dir: dir.to_path_buf(),
        snapshot_run_id: snapshot_run_id.to_string(),
        partitions,
        persons: cfg.persons,
        profiles,
        events,
        linked_events,
        links,
        contested_keys: keys.contested.len() as u64,
        reassigned_rows,
        unusable_keys,
        exports: reports,
        truth_events_dir: truth_dir,
        resolved_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_key_goes_to_the_person_with_most_rows_then_the_smallest() {
        let mut keys = Keys::default();
        keys.entry(7).flags = flags::USABLE;
        keys.add_row(7, 5);
        assert_eq!(keys.person(7), Some(5));
        keys.add_row(7, 3);
        assert_eq!(keys.person(7), Some(3), "a tie goes to the smallest person index");
        keys.add_row(7, 5);
        assert_eq!(keys.person(7), Some(5));
        assert_eq!(keys.contested.len(), 1);
        keys.add_row(8, 1);
        assert_eq!(keys.person(8), None, "a key without usable identifier gets no link");
    }

    #[test]
    fn the_latest_consent_wins_and_a_withdrawal_wins_a_tie() {
        let mut a = PersonAgg::default();
        a.consent(0, true, 10);
        a.consent(0, false, 5);
        assert_eq!(a.consent[0], 1, "an older withdrawal does not override");
        a.consent(0, false, 10);
        assert_eq!(a.consent[0], 2, "a withdrawal at the same instant wins");
        a.consent(0, true, 10);
        assert_eq!(a.consent[0], 2);
        a.consent(0, true, 11);
        assert_eq!(a.consent[0], 1);
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!(profile_id_of(42), "p_00000000000000000000002a");
        assert_eq!(person_of_profile(&profile_id_of(42)), Some(42));
        assert_eq!(person_index("P0000042"), Some(42));
        let k = parse_key("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(key_hex(k), "0123456789abcdef0123456789abcdef");
        assert_eq!(channel_bit("web"), Some(64));
    }

    #[test]
    fn identifiers_flagged_invalid_are_not_usable() {
        let row = |ids: &str, warning: &str| ChannelTruthRow {
            line: 2,
            person_id: "P0000001".into(),
            valid: true,
            defect: String::new(),
            event_type: "cart_add".into(),
            occurred_at_utc: "2026-01-01T00:00:00Z".into(),
            reference: String::new(),
            identifiers: ids.into(),
            note: String::new(),
            identifier_warning: warning.into(),
        };
        assert!(!usable_identifiers(&row("email", "email_invalid")));
        assert!(usable_identifiers(&row("customer_id|email", "email_invalid")));
        assert!(!usable_identifiers(&row("", "phone_invalid")));
        assert!(usable_identifiers(&row("phone", "")));
    }
}
