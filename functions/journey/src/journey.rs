//! One person's journey (the "360° view", issue 18): every touchpoint and purchase of a
//! person in time order, across channels, with the identity decisions that tied them
//! together.
//!
//! # What a journey holds
//!
//! - **The profile**: the identifier given (normalised as ingest normalises it) is looked
//!   up with the identity [`Resolver`] (the code the identity function runs, over
//!   DynamoDB in production); an identifier that resolves to no profile is an error that
//!   says why ([`Resolver::why_unlinked`]: never observed, erased, excluded by a repair,
//!   shared, blocked by the rules).
//! - **The identity decisions**: the evidence the profile's component assigns to it
//!   ([`Resolver::profile_evidence`]), in the order it was first seen. Each evidence is a
//!   distinct identifier set seen together by a channel: it *created* a profile (it shared
//!   no linking identifier with earlier evidence), *joined* it (through the identifiers it
//!   shares with earlier evidence) or *merged* two or more earlier groups into one.
//!   Identifiers that link nothing (shared values, repaired or erased ones) are listed as
//!   such.
//! - **The timeline**: every lake event whose identity key (`anchor_id`) is one of the
//!   profile's evidence keys, in time order (`occurred_at`, then `event_id`), across
//!   channels, read with DataFusion through the segments catalog
//!   ([`ariane_segments::catalog::register_run`]: plain or compacted lake alike). Each
//!   event is a [`EventKind::Touchpoint`], a [`EventKind::Purchase`] (`order_line`,
//!   `store_purchase`, `in_app_purchase`), a [`EventKind::Return`] or
//!   [`EventKind::Other`] (account and consent events, bounces). The events are those of
//!   the profile *as identity resolves it now* (the same evidence the decisions show),
//!   not as of the last segments snapshot: a person merged an hour ago shows every
//!   channel already.
//!
//! # Personal data
//!
//! The journey shows no clear identifier: identifiers are shown as kind and the first 8
//! hex digits of their keyed hash (`email#1a2b3c4d`), the identifier items' own keys.
//! The profile's clear e-mail, phone, names and address (held in DynamoDB) are never read
//! into it; page URLs are shown without their query string.
//!
//! # Where to run it
//!
//! Locally, against the stack of `ariane-local up`:
//!
//! ```text
//! cargo run -p ariane-local -- profile journey --manifest .local/dev.manifest.json --kind email --value Marie@X.fr
//! cargo run -p ariane-local -- profile journey --manifest .local/dev.manifest.json --kind phone --value "06 12 34 56 78" --json
//! ```
//!
//! In production, the `journey` function ([`crate::handler`]) answers one operator's
//! invocation with the same call; see `docs/measurement.md` for the command and
//! `docs/security.md` for who may invoke it. Its role may only *read* the profiles table
//! and the lake's events, so [`Resolver::profile_evidence`] never writes: a profile locked
//! by a large identity operation in progress is refused with a "try again" error instead
//! of being finished, as writers do.
//!
//! # Cost and limits
//!
//! Identity costs four batched DynamoDB reads (a few more for an identifier without a
//! profile). The lake is not laid out by person: the timeline reads every events file of
//! the lake once (the `anchor_id` filter is pushed into the Parquet scan), so a journey
//! is an operator's query, not a per-request API. At most [`MAX_EVENTS`] events are
//! returned, the latest ones ([`Journey::truncated`] says so), which keeps the response
//! well under Lambda's 6 MB.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::sync::Arc;

use ariane_identity::handler::normalize_request;
use ariane_identity::partition::IdRef;
use ariane_identity::resolver::{ProfileEvidence, ResolveError, Resolver, Unlinked};
use ariane_identity::store::ItemStore;
use ariane_segments::catalog::{lake_base, register_lake, register_run, RunScope};
use ariane_shared::identifiers::{Identifier, IdentifierKind};
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::array::{Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};

/// The most events a journey returns (the latest ones).
pub const MAX_EVENTS: usize = 10_000;

/// The journey function's request: `{"kind": "email", "value": "Marie@X.fr"}` (the value as
/// written anywhere: [`journey`] normalises it). An unknown field is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JourneyRequest {
    pub kind: IdentifierKind,
    pub value: String,
}

impl JourneyRequest {
    pub fn identifier(&self) -> Identifier {
        Identifier::new(self.kind, self.value.clone())
    }
}

/// The lake a journey reads: the lake bucket as DataFusion reads it (the S3 store of
/// `ariane_segments::catalog::s3_store` in production, an in-memory store in tests).
#[derive(Clone, Debug)]
pub struct Lake {
    pub bucket: String,
    pub store: Arc<dyn ObjectStore>,
}

/// Why a journey cannot be told.
#[derive(Debug, thiserror::Error)]
pub enum JourneyError {
    #[error("invalid {kind} value: {reason}")]
    InvalidIdentifier { kind: IdentifierKind, reason: String },
    #[error("no profile for {id}: {why}")]
    NoProfile { id: IdLabel, why: Unlinked },
    #[error("{id} resolves to profile {profile_id}, which is gone (erased or merged meanwhile): try again")]
    ProfileGone { id: IdLabel, profile_id: String },
    #[error("reading the identity store: {0}")]
    Identity(#[from] ResolveError),
    #[error("reading the lake: {0}")]
    Lake(#[from] DataFusionError),
}

/// An identifier as a journey shows it: its kind and the first 8 hex digits of its keyed
/// hash (never the clear value).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct IdLabel {
    pub kind: String,
    pub hash_prefix: String,
}

impl IdLabel {
    pub fn of(id: &IdRef) -> IdLabel {
        IdLabel { kind: id.kind.as_str().to_string(), hash_prefix: id.hash.chars().take(8).collect() }
    }
}

impl fmt::Display for IdLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.kind, self.hash_prefix)
    }
}

/// What an evidence did to the person's profile when first seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// No linking identifier in common with earlier evidence: a profile of its own.
    Created,
    /// Shared a linking identifier with the earlier evidence of one profile.
    Joined,
    /// Shared linking identifiers with the earlier evidence of two or more profiles,
    /// which it merged into one.
    Merged,
}

/// One identity decision: an identifier set seen together, and what it did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decision {
    /// When the identifier set was first seen.
    pub at: DateTime<Utc>,
    /// The channels that saw it (the first one first seen, then any other).
    pub channels: Vec<String>,
    /// The identifiers seen together.
    pub identifiers: Vec<IdLabel>,
    pub outcome: Outcome,
    /// The identifiers it shares with earlier evidence (what joined or merged it).
    pub via: Vec<IdLabel>,
    /// For a merge: how many profiles it tied together.
    pub profiles_merged: usize,
    /// Its identifiers that link nothing (shared values, repaired or erased).
    pub not_linking: Vec<IdLabel>,
    /// The last day the identifier set was seen again.
    pub last_seen_day: Option<NaiveDate>,
    /// The source file and line that first showed it.
    pub source: String,
}

/// What an event is to the journey.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A contact with the person or an action of theirs (send, open, click, visit, page,
    /// cart...).
    Touchpoint,
    /// A sale: `order_line`, `store_purchase`, `in_app_purchase`.
    Purchase,
    /// A return in store.
    Return,
    /// Account and consent events, bounces.
    Other,
}

impl EventKind {
    /// The kind of a lake `event_type`.
    pub fn of(event_type: &str) -> EventKind {
        match event_type {
            "order_line" | "store_purchase" | "in_app_purchase" => EventKind::Purchase,
            "return" => EventKind::Return,
            "contact_created" | "contact_updated" | "consent_given" | "consent_withdrawn" | "push_opt_in" | "push_opt_out" | "sms_stop"
            | "email_unsubscribe" | "email_bounce" => EventKind::Other,
            _ => EventKind::Touchpoint,
        }
    }

    fn label(self) -> &'static str {
        match self {
            EventKind::Touchpoint => "touchpoint",
            EventKind::Purchase => "PURCHASE",
            EventKind::Return => "return",
            EventKind::Other => "other",
        }
    }
}

/// One lake event of the person.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JourneyEvent {
    pub at: DateTime<Utc>,
    pub channel: String,
    pub event_type: String,
    pub event_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    /// The line's amount for an order line or a store sale, else the order's total
    /// (minor units).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// The page, without its query string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_channel: Option<String>,
}

impl JourneyEvent {
    pub fn kind(&self) -> EventKind {
        EventKind::of(&self.event_type)
    }
}

/// An event as the journey serialises it: the event and its kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub kind: EventKind,
    #[serde(flatten)]
    pub event: JourneyEvent,
}

/// One person's journey.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Journey {
    /// The identifier asked for.
    pub identifier: IdLabel,
    pub profile_id: String,
    /// Profile ids merged into this one.
    pub merged_from: Vec<String>,
    /// Every channel of the profile and of its events.
    pub channels: Vec<String>,
    /// How many identifiers of each kind the evidence holds.
    pub identifier_kinds: BTreeMap<String, usize>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen_day: Option<NaiveDate>,
    /// Whether older events were left out (more than [`MAX_EVENTS`]): counts and the
    /// timeline cover the latest [`MAX_EVENTS`] only.
    pub truncated: bool,
    pub touchpoints: usize,
    /// Purchase events (order lines count one each).
    pub purchases: usize,
    /// Distinct orders among them (by channel and order id).
    pub orders: usize,
    pub decisions: Vec<Decision>,
    pub timeline: Vec<TimelineEntry>,
}

/// The journey of the person an identifier (as written anywhere: it is normalised)
/// belongs to: its profile, the identity decisions that built it and every lake event of
/// its evidence in time order. What the CLI and the journey function call.
pub async fn journey<S: ItemStore>(resolver: &Resolver<S>, lake: &Lake, id: &Identifier) -> Result<Journey, JourneyError> {
    let id =
        normalize_request(id, &resolver.rules).map_err(|e| JourneyError::InvalidIdentifier { kind: id.kind, reason: e.to_string() })?;
    let label = IdLabel::of(&resolver.rules.id_ref(&id));
    let Some(pid) = resolver.lookup(&id).await? else {
        let why = resolver.why_unlinked(&id).await?;
        return Err(JourneyError::NoProfile { id: label, why });
    };
    let Some(evidence) = resolver.profile_evidence(&pid).await? else {
        return Err(JourneyError::ProfileGone { id: label, profile_id: pid });
    };
    let keys: Vec<String> = evidence.evidence.iter().map(|(k, _)| k.clone()).collect();
    let mut events = timeline(lake, &keys, MAX_EVENTS + 1).await?;
    let truncated = events.len() > MAX_EVENTS;
    if truncated {
        events.drain(..events.len() - MAX_EVENTS);
    }
    let mut journey = assemble(label, &evidence, events);
    journey.truncated = truncated;
    Ok(journey)
}

/// The journey from its parts (pure): the decisions of the evidence, the events sorted.
pub fn assemble(identifier: IdLabel, evidence: &ProfileEvidence, mut events: Vec<JourneyEvent>) -> Journey {
    events.sort_by(|a, b| (a.at, &a.event_id).cmp(&(b.at, &b.event_id)));
    events.dedup_by(|a, b| a.event_id == b.event_id && a.at == b.at);
    let doc = &evidence.profile.doc;
    let mut channels: BTreeSet<String> = doc.channels.clone();
    channels.extend(events.iter().map(|e| e.channel.clone()));
    let ids: BTreeSet<&IdRef> = evidence.evidence.iter().flat_map(|(_, e)| e.ids.iter()).collect();
    let mut identifier_kinds = BTreeMap::new();
    for i in ids {
        *identifier_kinds.entry(i.kind.as_str().to_string()).or_insert(0) += 1;
    }
    let count = |k: EventKind| events.iter().filter(|e| e.kind() == k).count();
    let orders: BTreeSet<(&str, &str)> = events
        .iter()
        .filter(|e| e.kind() == EventKind::Purchase)
        .map(|e| (e.channel.as_str(), e.order_id.as_deref().unwrap_or(e.event_id.as_str())))
        .collect();
    let first_event = events.first().map(|e| e.at);
    Journey {
        identifier,
        profile_id: evidence.profile.profile_id.clone(),
        truncated: false,
        merged_from: evidence.profile.merged_from.clone(),
        channels: channels.into_iter().collect(),
        identifier_kinds,
        first_seen: match (doc.first_seen, first_event) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        last_seen_day: doc.last_seen_day.max(events.last().map(|e| e.at.date_naive())),
        touchpoints: count(EventKind::Touchpoint),
        purchases: count(EventKind::Purchase),
        orders: orders.len(),
        decisions: decisions(evidence),
        timeline: events.into_iter().map(|event| TimelineEntry { kind: event.kind(), event }).collect(),
    }
}

/// The identity decisions of a profile's evidence (pure): in first-seen order, each
/// evidence created, joined or merged profiles through the linking identifiers it shares
/// with the earlier ones.
pub fn decisions(evidence: &ProfileEvidence) -> Vec<Decision> {
    // Union-find over the evidence, through linking identifiers.
    let n = evidence.evidence.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut owner: BTreeMap<&IdRef, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(n);
    for (i, (_, ev)) in evidence.evidence.iter().enumerate() {
        let linking: Vec<&IdRef> = ev.ids.iter().filter(|id| !evidence.not_linking.contains(*id)).collect();
        let mut groups = BTreeSet::new();
        let mut via = Vec::new();
        for id in &linking {
            if let Some(&j) = owner.get(id) {
                groups.insert(find(&mut parent, j));
                via.push(IdLabel::of(id));
            }
        }
        for g in &groups {
            parent[*g] = i;
        }
        for id in linking {
            owner.entry(id).or_insert(i);
        }
        let outcome = match groups.len() {
            0 => Outcome::Created,
            1 => Outcome::Joined,
            _ => Outcome::Merged,
        };
        // The channel of the first observation first (its source key starts with it).
        let mut channels: Vec<String> = ev.doc.channels.iter().cloned().collect();
        if let Some(p) = channels.iter().position(|c| ev.source_key.starts_with(&format!("{c}/"))) {
            let first = channels.remove(p);
            channels.insert(0, first);
        }
        out.push(Decision {
            at: ev.first_seen,
            channels,
            identifiers: ev.ids.iter().map(IdLabel::of).collect(),
            outcome,
            via,
            profiles_merged: if outcome == Outcome::Merged { groups.len() } else { 0 },
            not_linking: ev.ids.iter().filter(|id| evidence.not_linking.contains(*id)).map(IdLabel::of).collect(),
            last_seen_day: ev.doc.last_seen_day,
            source: format!("{}:{}", ev.source_key, ev.source_line),
        });
    }
    out
}

/// The snapshot name the journey's catalog is registered with: the journey reads
/// `raw_events` only, never the segments' `profiles` snapshot.
const NO_SNAPSHOT: &str = "journey-reads-no-snapshot";

/// The latest `limit` lake events whose identity key is one of `keys`, in time order (then
/// event id), each once. Reads the lake through the segments catalog (plain or compacted
/// layout).
pub async fn timeline(lake: &Lake, keys: &[String], limit: usize) -> Result<Vec<JourneyEvent>, DataFusionError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = SessionContext::new();
    register_lake(&ctx, &lake.bucket, lake.store.clone())?;
    let scope = RunScope { run_at: Utc::now(), snapshot_run_id: NO_SNAPSHOT.into(), bucket: None };
    register_run(&ctx, &lake_base(&lake.bucket), &scope).await?;
    let list = keys.iter().map(|k| format!("'{}'", k.replace('\'', "''"))).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT DISTINCT event_id, occurred_at, channel, event_type, order_id, sku, quantity, line_total_minor, \
         order_total_minor, currency, store_id, campaign_id, page_url, consent_channel
         FROM raw_events WHERE anchor_id IN ({list}) ORDER BY occurred_at DESC, event_id DESC LIMIT {limit}"
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut out = Vec::new();
    for b in &batches {
        out.extend(events_of(b)?);
    }
    out.reverse();
    Ok(out)
}

fn column(b: &RecordBatch, name: &str, to: &DataType) -> Result<Arc<dyn Array>, DataFusionError> {
    let col = b.column_by_name(name).ok_or_else(|| DataFusionError::Internal(format!("no column {name}")))?;
    Ok(datafusion::arrow::compute::cast(col, to)?)
}

fn events_of(b: &RecordBatch) -> Result<Vec<JourneyEvent>, DataFusionError> {
    let strings = |name: &str| -> Result<Vec<Option<String>>, DataFusionError> {
        let c = column(b, name, &DataType::Utf8)?;
        let a = c.as_any().downcast_ref::<StringArray>().ok_or_else(|| DataFusionError::Internal(format!("{name}: not text")))?;
        Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_string())).collect())
    };
    let ints = |name: &str| -> Result<Vec<Option<i64>>, DataFusionError> {
        let c = column(b, name, &DataType::Int64)?;
        let a = c.as_any().downcast_ref::<Int64Array>().ok_or_else(|| DataFusionError::Internal(format!("{name}: not integers")))?;
        Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))).collect())
    };
    let at = column(b, "occurred_at", &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())))?;
    let at = at
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| DataFusionError::Internal("occurred_at: not a timestamp".into()))?;
    let [event_id, channel, event_type, order_id, sku, currency, store_id, campaign_id, page_url, consent_channel] =
        ["event_id", "channel", "event_type", "order_id", "sku", "currency", "store_id", "campaign_id", "page_url", "consent_channel"]
            .map(strings);
    let (event_id, channel, event_type, order_id, sku) = (event_id?, channel?, event_type?, order_id?, sku?);
    let (currency, store_id, campaign_id, page_url, consent_channel) = (currency?, store_id?, campaign_id?, page_url?, consent_channel?);
    let (quantity, line_total, order_total) = (ints("quantity")?, ints("line_total_minor")?, ints("order_total_minor")?);
    let mut out = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        let when =
            DateTime::from_timestamp_micros(at.value(i)).ok_or_else(|| DataFusionError::Internal("occurred_at out of range".into()))?;
        out.push(JourneyEvent {
            at: when,
            channel: channel[i].clone().unwrap_or_default(),
            event_type: event_type[i].clone().unwrap_or_default(),
            event_id: event_id[i].clone().unwrap_or_default(),
            order_id: order_id[i].clone(),
            sku: sku[i].clone(),
            quantity: quantity[i],
            amount_minor: line_total[i].or(order_total[i]),
            currency: currency[i].clone(),
            store_id: store_id[i].clone(),
            campaign_id: campaign_id[i].clone(),
            page: page_url[i].as_deref().map(without_query),
            consent_channel: consent_channel[i].clone(),
        });
    }
    Ok(out)
}

/// A URL without its query string and fragment (they may carry personal data).
fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_string()
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn amount(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", (minor / 100).abs(), (minor % 100).abs())
}

fn labels(ids: &[IdLabel]) -> String {
    ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let together = if self.identifiers.len() > 1 { " together" } else { "" };
        write!(f, "at {} UTC, {} saw {{{}}}{together} → ", time(self.at), self.channels.join("+"), labels(&self.identifiers))?;
        match self.outcome {
            Outcome::Created => f.write_str("created a profile")?,
            Outcome::Joined => write!(f, "joined the profile via {}", labels(&self.via))?,
            Outcome::Merged => write!(f, "merged {} profiles via {}", self.profiles_merged, labels(&self.via))?,
        }
        if !self.not_linking.is_empty() {
            write!(f, " ({} link nothing)", labels(&self.not_linking))?;
        }
        Ok(())
    }
}

impl fmt::Display for TimelineEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.event;
        let mut details = String::new();
        let mut add = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                let _ = write!(details, " {k}={v}");
            }
        };
        add("order", &e.order_id);
        add("sku", &e.sku);
        add("qty", &e.quantity.map(|q| q.to_string()));
        add("amount", &e.amount_minor.map(|m| format!("{} {}", amount(m), e.currency.as_deref().unwrap_or("")).trim_end().to_string()));
        add("store", &e.store_id);
        add("campaign", &e.campaign_id);
        add("page", &e.page);
        add("consent", &e.consent_channel);
        write!(f, "{}  {:<10} {:<18} {:<10}{details}", time(e.at), e.channel, e.event_type, self.kind.label())
    }
}

impl fmt::Display for Journey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Journey of {} → profile {}", self.identifier, self.profile_id)?;
        if !self.merged_from.is_empty() {
            writeln!(f, "  merged from: {}", self.merged_from.join(", "))?;
        }
        writeln!(f, "  channels: {}", self.channels.join(", "))?;
        let kinds: Vec<String> = self.identifier_kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        writeln!(f, "  identifiers: {}", kinds.join(", "))?;
        let first = self.first_seen.map(|t| format!("{} UTC", time(t))).unwrap_or_else(|| "-".into());
        let last = self.last_seen_day.map(|d| d.to_string()).unwrap_or_else(|| "-".into());
        writeln!(f, "  first seen {first}, last seen {last}")?;
        writeln!(
            f,
            "  {} events: {} touchpoints, {} purchase events ({} orders), {} other",
            self.timeline.len(),
            self.touchpoints,
            self.purchases,
            self.orders,
            self.timeline.len() - self.touchpoints - self.purchases
        )?;
        writeln!(f)?;
        writeln!(f, "Identity decisions ({}):", self.decisions.len())?;
        for d in &self.decisions {
            writeln!(f, "  {d}")?;
        }
        writeln!(f)?;
        writeln!(f, "Timeline ({} events):", self.timeline.len())?;
        if self.truncated {
            writeln!(f, "  (the latest {} only: older events left out)", self.timeline.len())?;
        }
        if self.timeline.is_empty() {
            writeln!(f, "  (no event in the lake)")?;
        }
        for e in &self.timeline {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
