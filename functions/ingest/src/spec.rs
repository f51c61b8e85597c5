//! Channel specs: how one vendor export of one channel maps to canonical events.
//!
//! A spec is a TOML file, `channels/<channel>/<format>.toml`, read at build time (see
//! `build.rs` and [`Catalog::embedded`]) and validated by [`Spec::parse`] — the same code
//! `ariane-local validate` and the tests run, so a bad spec fails before deployment with
//! the file and the field named. Adding a channel or a vendor format is a new file: no
//! Rust code for a CSV / JSON / Parquet source whose fields map.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::bounds::InputLimits;
use ariane_shared::identifiers::IdentifierKind;
use ariane_shared::model::{ConsentChannel, CHANNELS};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::values::{
    parse_amount, parse_bool, parse_consent_channel, parse_integer, parse_time, parse_time_format, TimeFormat, Transform, ValueError,
};

/// A spec file that does not make sense, naming the file and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {field}: {message}")]
pub struct SpecError {
    pub file: String,
    pub field: String,
    pub message: String,
}

// ---------------------------------------------------------------------------------------
// The file as written.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    channel: String,
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    keys: Option<Vec<String>>,
    format: FormatFile,
    #[serde(default)]
    fill_down: Option<FillDownFile>,
    event_type: EventTypeFile,
    #[serde(default)]
    natural_key: Option<NaturalKeyFile>,
    #[serde(default)]
    consent: BTreeMap<String, ConsentFile>,
    fields: BTreeMap<String, FieldFile>,
    #[serde(default)]
    limits: Option<LimitsFile>,
}

/// `[limits]`: every key optional, defaults in [`InputLimits::default`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_row_bytes: Option<u64>,
    max_field_bytes: Option<u64>,
    max_bytes: Option<u64>,
    max_compression_ratio: Option<u64>,
    max_rows: Option<u64>,
    max_dates: Option<u64>,
    past_days: Option<u64>,
    future_days: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FormatFile {
    kind: String,
    #[serde(default)]
    compression: Option<String>,
    #[serde(default)]
    separator: Option<String>,
    #[serde(default)]
    quote: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    header: Option<bool>,
    #[serde(default)]
    columns: Option<Vec<String>>,
    #[serde(default)]
    decimal: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    phone_region: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FillDownFile {
    key: Vec<String>,
    columns: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventTypeFile {
    #[serde(default)]
    constant: Option<String>,
    #[serde(default)]
    source: Option<Vec<String>>,
    #[serde(default)]
    map: BTreeMap<String, String>,
    #[serde(default)]
    unmapped: Option<String>,
    #[serde(default)]
    transforms: Vec<String>,
    #[serde(default)]
    require: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NaturalKeyFile {
    sources: Vec<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    same_rows_as: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentFile {
    #[serde(default)]
    channel: Option<String>,
    granted: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldFile {
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    sources: Option<Vec<String>>,
    #[serde(default)]
    join: Option<String>,
    #[serde(default)]
    compute: Option<String>,
    #[serde(default)]
    constant: Option<String>,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    transforms: Vec<String>,
    #[serde(default)]
    map: Option<BTreeMap<String, String>>,
    #[serde(default)]
    unmapped: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    decimal: Option<String>,
    #[serde(default)]
    phone_region: Option<String>,
    #[serde(default)]
    required: bool,
    /// The source column(s) may be absent from the file (their values are then blank).
    #[serde(default)]
    optional: bool,
    #[serde(default)]
    min: Option<i64>,
    /// `page_url` only: the query parameters kept (`["utm_source", "utm_campaign"]`);
    /// every other parameter, the fragment and any user:password are dropped.
    #[serde(default)]
    keep_query: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------
// Canonical fields.
// ---------------------------------------------------------------------------------------

/// The canonical fields a spec can map, and what kind of value each holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Canon {
    OccurredAt,
    OrderId,
    Sku,
    ProductName,
    Category,
    Quantity,
    UnitPriceMinor,
    LineTotalMinor,
    OrderTotalMinor,
    Currency,
    StoreId,
    CampaignId,
    PageUrl,
    ConsentChannel,
    ConsentAt,
    Email,
    Phone,
    CustomerId,
    LoyaltyCard,
    DeviceId,
    CookieId,
    PushToken,
    FirstName,
    LastName,
    FullName,
    Street,
    PostalCode,
    City,
    Country,
    EmailOptIn,
    SmsOptIn,
    PushOptIn,
    AdsOptIn,
}

/// How a canonical field's value is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Timestamp,
    Text,
    Integer,
    Amount,
    Email,
    Phone,
    Identifier(IdentifierKind),
    /// Personal trait (DynamoDB only, never in the lake).
    Trait,
    /// `email` / `sms` / `push`.
    ConsentChannel,
    /// A yes/no consent for one channel.
    OptIn(ConsentChannel),
}

/// Every canonical field with its name in spec files.
pub const CANONICAL_FIELDS: &[(&str, Canon)] = &[
    ("occurred_at", Canon::OccurredAt),
    ("order_id", Canon::OrderId),
    ("sku", Canon::Sku),
    ("product_name", Canon::ProductName),
    ("category", Canon::Category),
    ("quantity", Canon::Quantity),
    ("unit_price_minor", Canon::UnitPriceMinor),
    ("line_total_minor", Canon::LineTotalMinor),
    ("order_total_minor", Canon::OrderTotalMinor),
    ("currency", Canon::Currency),
    ("store_id", Canon::StoreId),
    ("campaign_id", Canon::CampaignId),
    ("page_url", Canon::PageUrl),
    ("consent_channel", Canon::ConsentChannel),
    ("consent_at", Canon::ConsentAt),
    ("email", Canon::Email),
    ("phone", Canon::Phone),
    ("customer_id", Canon::CustomerId),
    ("loyalty_card", Canon::LoyaltyCard),
    ("device_id", Canon::DeviceId),
    ("cookie_id", Canon::CookieId),
    ("push_token", Canon::PushToken),
    ("first_name", Canon::FirstName),
    ("last_name", Canon::LastName),
    ("full_name", Canon::FullName),
    ("street", Canon::Street),
    ("postal_code", Canon::PostalCode),
    ("city", Canon::City),
    ("country", Canon::Country),
    ("email_opt_in", Canon::EmailOptIn),
    ("sms_opt_in", Canon::SmsOptIn),
    ("push_opt_in", Canon::PushOptIn),
    ("ads_opt_in", Canon::AdsOptIn),
];

impl Canon {
    pub fn from_name(name: &str) -> Option<Canon> {
        CANONICAL_FIELDS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
    }

    pub fn name(self) -> &'static str {
        CANONICAL_FIELDS.iter().find(|(_, c)| *c == self).map(|(n, _)| *n).unwrap_or("?")
    }

    pub fn kind(self) -> Kind {
        use Canon::*;
        match self {
            OccurredAt | ConsentAt => Kind::Timestamp,
            Quantity => Kind::Integer,
            UnitPriceMinor | LineTotalMinor | OrderTotalMinor => Kind::Amount,
            Email => Kind::Email,
            Phone => Kind::Phone,
            CustomerId => Kind::Identifier(IdentifierKind::CustomerId),
            LoyaltyCard => Kind::Identifier(IdentifierKind::LoyaltyCard),
            DeviceId => Kind::Identifier(IdentifierKind::DeviceId),
            CookieId => Kind::Identifier(IdentifierKind::CookieId),
            PushToken => Kind::Identifier(IdentifierKind::PushToken),
            FirstName | LastName | FullName | Street | PostalCode | City | Country => Kind::Trait,
            Canon::ConsentChannel => Kind::ConsentChannel,
            EmailOptIn => Kind::OptIn(ariane_shared::model::ConsentChannel::Email),
            SmsOptIn => Kind::OptIn(ariane_shared::model::ConsentChannel::Sms),
            PushOptIn => Kind::OptIn(ariane_shared::model::ConsentChannel::Push),
            AdsOptIn => Kind::OptIn(ariane_shared::model::ConsentChannel::Ads),
            OrderId | Sku | ProductName | Category | Currency | StoreId | CampaignId | PageUrl => Kind::Text,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The compiled spec.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatKind {
    Csv,
    Ndjson,
    JsonArray,
    Parquet,
}

impl FormatKind {
    /// Whether rows are flat (named columns) rather than JSON documents.
    pub fn is_flat(self) -> bool {
        matches!(self, FormatKind::Csv | FormatKind::Parquet)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Gzip when the content starts with the gzip magic bytes, else none.
    Auto,
    None,
    Gzip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Windows1252,
}

#[derive(Clone, Debug)]
pub struct Format {
    pub kind: FormatKind,
    pub compression: Compression,
    pub separator: u8,
    pub quote: u8,
    /// Declared encoding; a UTF-8 byte-order mark always means UTF-8.
    pub encoding: Encoding,
    pub header: bool,
    /// Column names when the file has no header row.
    pub columns: Vec<String>,
    pub decimal: char,
    pub time_zone: Tz,
    pub phone_region: phonenumber::country::Id,
}

/// Values computed by the reader rather than read from the row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meta {
    /// Physical line number where the row starts.
    Line,
    /// 1-based index of the row among the file's data rows.
    Row,
    /// 1-based index of the row within its fill-down group.
    GroupRow,
}

/// One step of a JSON path: `name`, `[3]`, or `[key=value]` (first array element whose
/// `key` member equals `value`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathStep {
    Member(String),
    Index(usize),
    Find { key: String, value: String },
}

/// Where a value comes from in a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A named column (CSV, Parquet); bound to an index per file (`usize::MAX` until
    /// bound, and for an optional column the file lacks: it reads as blank).
    Column {
        name: String,
        index: usize,
    },
    Path {
        text: String,
        steps: Vec<PathStep>,
    },
    Meta(Meta),
}

impl Source {
    pub fn label(&self) -> String {
        match self {
            Source::Column { name, .. } => format!("column {name:?}"),
            Source::Path { text, .. } => format!("path {text:?}"),
            Source::Meta(m) => format!("{m:?}"),
        }
    }
}

/// What to do with a value a value map does not list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmapped {
    Reject,
    Keep,
    Null,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compute {
    /// `sources[0]` (an amount) times `sources[1]` (an integer).
    Multiply,
}

/// How one canonical field is filled.
#[derive(Clone, Debug)]
pub struct FieldPlan {
    pub canon: Canon,
    pub sources: Vec<Source>,
    pub join: String,
    pub compute: Option<Compute>,
    pub constant: Option<String>,
    pub default: Option<String>,
    pub transforms: Vec<Transform>,
    pub map: Option<HashMap<String, String>>,
    pub unmapped: Unmapped,
    pub time: Option<TimeFormat>,
    pub time_zone: Tz,
    pub decimal: char,
    pub phone_region: phonenumber::country::Id,
    pub required: bool,
    /// The field's columns may be absent from a flat file's header (`optional = true`, or
    /// a `default`): an absent column reads as blank in every row. JSON paths are always
    /// allowed to be missing.
    pub optional: bool,
    /// Smallest accepted value of a whole number (amounts: in minor units).
    pub min: Option<i64>,
    /// `page_url`: the query parameters kept (the rest of the query is dropped).
    pub keep_query: Vec<String>,
}

impl FieldPlan {
    /// How the field reads in messages: `email (column "Email")`.
    pub fn label(&self) -> String {
        match self.sources.as_slice() {
            [] => self.canon.name().to_string(),
            [one] => format!("{} ({})", self.canon.name(), one.label()),
            many => format!("{} ({})", self.canon.name(), many.iter().map(Source::label).collect::<Vec<_>>().join(" + ")),
        }
    }

    /// Checks that a constant, default or map target is a valid value of the field.
    pub fn check_literal(&self, value: &str) -> Result<(), ValueError> {
        match self.canon.kind() {
            Kind::Timestamp => parse_time(value, self.time.as_ref().unwrap_or(&TimeFormat::Rfc3339), self.time_zone).map(|_| ()),
            Kind::Integer => parse_integer(value).map(|_| ()),
            Kind::Amount => parse_amount(value, self.decimal).map(|_| ()),
            Kind::OptIn(_) => parse_bool(value).map(|_| ()),
            Kind::ConsentChannel => parse_consent_channel(value).map(|_| ()),
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct EventTypeRule {
    pub constant: Option<String>,
    pub sources: Vec<Source>,
    pub map: HashMap<String, String>,
    pub unmapped: Unmapped,
    pub transforms: Vec<Transform>,
    /// Canonical fields an event type needs, beyond the spec's `required` fields.
    pub require: HashMap<String, Vec<Canon>>,
}

#[derive(Clone, Debug)]
pub struct ConsentRule {
    /// `None`: the row's `consent_channel`.
    pub channel: Option<ConsentChannel>,
    pub granted: bool,
}

#[derive(Clone, Debug)]
pub struct FillDown {
    pub key: Vec<Source>,
    pub columns: Vec<Source>,
}

/// A validated spec.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Where it came from (`channels/pos/receipts.toml`).
    pub file: String,
    pub channel: String,
    pub name: String,
    pub description: String,
    /// Glob patterns on the key below the channel prefix.
    pub keys: Vec<String>,
    pub format: Format,
    pub fill_down: Option<FillDown>,
    pub event_type: EventTypeRule,
    pub natural_key: Vec<Source>,
    /// `natural_key.scope`: a name of the source the key's values come from, part of
    /// every id (two sources whose keys could hold equal values get different ids).
    pub natural_key_scope: Option<String>,
    /// `natural_key.same_rows_as`: specs of the channel whose natural key identifies the
    /// same rows (a new export format of the same source): equal values, equal ids.
    pub same_rows_as: Vec<String>,
    pub consents: HashMap<String, ConsentRule>,
    pub fields: Vec<FieldPlan>,
    /// What one file may cost (`[limits]`).
    pub limits: InputLimits,
}

struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError { file: self.file.to_string(), field: field.into(), message: message.into() }
    }
}

fn one_char(ctx: &Ctx, field: &str, value: Option<&str>, default: char) -> Result<char, SpecError> {
    match value {
        None => Ok(default),
        Some(v) => {
            let v = if v == "\\t" { "\t" } else { v };
            let mut chars = v.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Ok(c),
                _ => Err(ctx.err(field, format!("{v:?} must be exactly one character"))),
            }
        }
    }
}

fn parse_tz(ctx: &Ctx, field: &str, value: &str) -> Result<Tz, SpecError> {
    value.parse::<Tz>().map_err(|_| ctx.err(field, format!("{value:?} is not an IANA time zone (like Europe/Paris)")))
}

fn parse_region(ctx: &Ctx, field: &str, value: &str) -> Result<phonenumber::country::Id, SpecError> {
    value
        .to_ascii_uppercase()
        .parse::<phonenumber::country::Id>()
        .map_err(|_| ctx.err(field, format!("{value:?} is not a region code (like FR)")))
}

fn parse_unmapped(ctx: &Ctx, field: &str, value: Option<&str>, default: Unmapped) -> Result<Unmapped, SpecError> {
    match value {
        None => Ok(default),
        Some("reject") => Ok(Unmapped::Reject),
        Some("keep") => Ok(Unmapped::Keep),
        Some("null") => Ok(Unmapped::Null),
        Some(other) => Err(ctx.err(field, format!("unmapped = {other:?}: expected reject, keep or null"))),
    }
}

fn parse_transforms(ctx: &Ctx, field: &str, names: &[String]) -> Result<Vec<Transform>, SpecError> {
    names
        .iter()
        .map(|n| {
            Transform::from_name(n)
                .ok_or_else(|| ctx.err(field, format!("unknown transform {n:?} (trim, lower, upper, title, remove_spaces, digits_only)")))
        })
        .collect()
}

/// A JSON path of a spec that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("{path:?}: empty path segment")]
    EmptySegment { path: String },
    #[error("{path:?}: unclosed [")]
    Unclosed { path: String },
    #[error("{path:?}: [key=value] needs a key")]
    NoKey { path: String },
    #[error("{path:?}: [{inner}] is neither an index nor key=value")]
    NotAnIndex { path: String, inner: String },
    #[error("{path:?}: unexpected {rest:?} after ]")]
    AfterBracket { path: String, rest: String },
}

/// Parses a JSON path like `event_params[key=email].value.string_value` or `items[0].sku`.
pub fn parse_path(text: &str) -> Result<Vec<PathStep>, PathError> {
    let path = || text.to_string();
    let mut steps = Vec::new();
    for segment in text.split('.') {
        let (name, mut rest) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if name.is_empty() && steps.is_empty() && rest.is_empty() {
            return Err(PathError::EmptySegment { path: path() });
        }
        if !name.is_empty() {
            steps.push(PathStep::Member(name.to_string()));
        } else if rest.is_empty() {
            return Err(PathError::EmptySegment { path: path() });
        }
        while !rest.is_empty() {
            let close = rest.find(']').ok_or_else(|| PathError::Unclosed { path: path() })?;
            let inner = &rest[1..close];
            if let Some((k, v)) = inner.split_once('=') {
                if k.is_empty() {
                    return Err(PathError::NoKey { path: path() });
                }
                steps.push(PathStep::Find { key: k.to_string(), value: v.to_string() });
            } else {
                let i = inner.parse::<usize>().map_err(|_| PathError::NotAnIndex { path: path(), inner: inner.to_string() })?;
                steps.push(PathStep::Index(i));
            }
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(PathError::AfterBracket { path: path(), rest: rest.to_string() });
            }
        }
    }
    Ok(steps)
}

fn parse_source(ctx: &Ctx, field: &str, kind: FormatKind, text: &str) -> Result<Source, SpecError> {
    Ok(match text {
        "$line" => Source::Meta(Meta::Line),
        "$row" => Source::Meta(Meta::Row),
        "$group_row" => Source::Meta(Meta::GroupRow),
        t if t.starts_with('$') => return Err(ctx.err(field, format!("unknown computed source {t:?} ($line, $row, $group_row)"))),
        t if t.trim().is_empty() => return Err(ctx.err(field, "empty source name")),
        t if kind.is_flat() => Source::Column { name: t.to_string(), index: usize::MAX },
        t => Source::Path { text: t.to_string(), steps: parse_path(t).map_err(|e| ctx.err(field, e.to_string()))? },
    })
}

impl Spec {
    /// Parses and validates a spec file (`file` names it in errors).
    pub fn parse(file: &str, text: &str) -> Result<Spec, SpecError> {
        let ctx = Ctx { file };
        let raw: SpecFile = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            let at = e.span().map(|s| line_of(text, s.start)).map(|l| format!("line {l}")).unwrap_or_else(|| "toml".into());
            ctx.err(at, message)
        })?;
        if !CHANNELS.contains(&raw.channel.as_str()) {
            return Err(ctx.err("channel", format!("unknown channel {:?} (one of {CHANNELS:?})", raw.channel)));
        }
        if raw.name.is_empty() || !raw.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(ctx.err("name", format!("{:?}: use letters, digits, - and _", raw.name)));
        }
        let format = compile_format(&ctx, &raw.format)?;
        let kind = format.kind;
        let src = |field: &str, t: &str| parse_source(&ctx, field, kind, t);

        let fill_down = match &raw.fill_down {
            None => None,
            Some(f) => {
                if !kind.is_flat() {
                    return Err(ctx.err("fill_down", "fill-down applies to CSV and Parquet files only"));
                }
                if f.key.is_empty() || f.columns.is_empty() {
                    return Err(ctx.err("fill_down", "needs a non-empty key and columns"));
                }
                let key = f.key.iter().map(|k| src("fill_down.key", k)).collect::<Result<Vec<_>, _>>()?;
                let columns = f.columns.iter().map(|k| src("fill_down.columns", k)).collect::<Result<Vec<_>, _>>()?;
                if key.iter().chain(&columns).any(|s| matches!(s, Source::Meta(_))) {
                    return Err(ctx.err("fill_down", "key and columns must be columns of the file"));
                }
                if let Some(c) = columns.iter().find(|c| key.contains(c)) {
                    return Err(ctx.err("fill_down.columns", format!("{} is also in the key", c.label())));
                }
                Some(FillDown { key, columns })
            }
        };

        let mut fields = Vec::new();
        for (name, f) in &raw.fields {
            let at = format!("fields.{name}");
            let canon = Canon::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = CANONICAL_FIELDS.iter().map(|(n, _)| *n).collect();
                ctx.err(&at, format!("unknown canonical field {name:?} (known: {})", known.join(", ")))
            })?;
            fields.push(compile_field(&ctx, &at, canon, f, &format)?);
        }
        let has = |c: Canon| fields.iter().any(|f| f.canon == c);
        if !has(Canon::OccurredAt) {
            return Err(ctx.err("fields.occurred_at", "missing required mapping: every event needs occurred_at"));
        }
        // A field that may be absent with nothing to stand in for it.
        let may_be_missing = |c: Canon| fields.iter().any(|f| f.canon == c && f.optional && f.default.is_none());
        if may_be_missing(Canon::OccurredAt) {
            return Err(ctx.err("fields.occurred_at.optional", "every event needs occurred_at: its column cannot be optional"));
        }

        let et = &raw.event_type;
        let event_sources = match (&et.constant, &et.source) {
            (Some(_), Some(_)) => return Err(ctx.err("event_type", "set either constant or source, not both")),
            (None, None) => return Err(ctx.err("event_type", "missing required mapping: constant or source")),
            (Some(c), None) => {
                check_event_type_name(&ctx, "event_type.constant", c)?;
                vec![]
            }
            (None, Some(s)) if s.is_empty() => return Err(ctx.err("event_type.source", "empty source list")),
            (None, Some(s)) => s.iter().map(|t| src("event_type.source", t)).collect::<Result<Vec<_>, _>>()?,
        };
        for target in et.map.values() {
            check_event_type_name(&ctx, "event_type.map", target)?;
        }
        let unmapped = parse_unmapped(&ctx, "event_type.unmapped", et.unmapped.as_deref(), Unmapped::Reject)?;
        if unmapped == Unmapped::Null {
            return Err(ctx.err("event_type.unmapped", "an event needs a type: use reject or keep"));
        }
        if et.source.is_some() && et.map.is_empty() && unmapped == Unmapped::Reject {
            return Err(ctx.err("event_type.map", "empty map with unmapped = reject would reject every row"));
        }
        let mut require = HashMap::new();
        for (event_type, names) in &et.require {
            let known = et.constant.as_deref() == Some(event_type.as_str()) || et.map.values().any(|v| v == event_type);
            if !known && unmapped != Unmapped::Keep {
                return Err(ctx.err(format!("event_type.require.{event_type}"), "is not an event type this spec produces"));
            }
            let mut canons = Vec::new();
            for n in names {
                let c = Canon::from_name(n)
                    .ok_or_else(|| ctx.err(format!("event_type.require.{event_type}"), format!("unknown canonical field {n:?}")))?;
                if !has(c) {
                    return Err(ctx.err(format!("event_type.require.{event_type}"), format!("requires {n:?}, which the spec does not map")));
                }
                if may_be_missing(c) {
                    return Err(ctx.err(
                        format!("event_type.require.{event_type}"),
                        format!(
                            "requires {n:?}, whose column is optional (fields.{n}.optional): a file without it would reject every \
                             {event_type} row; give the field a default or drop optional"
                        ),
                    ));
                }
                canons.push(c);
            }
            require.insert(event_type.clone(), canons);
        }
        let event_type = EventTypeRule {
            constant: et.constant.clone(),
            sources: event_sources,
            map: et.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            unmapped,
            transforms: parse_transforms(&ctx, "event_type.transforms", &et.transforms)?,
            require,
        };

        let natural_key = match &raw.natural_key {
            None => vec![],
            Some(n) if n.sources.is_empty() => return Err(ctx.err("natural_key.sources", "empty list")),
            Some(n) => n.sources.iter().map(|t| src("natural_key.sources", t)).collect::<Result<Vec<_>, _>>()?,
        };
        if natural_key.contains(&Source::Meta(Meta::GroupRow)) && fill_down.is_none() {
            return Err(ctx.err("natural_key.sources", "$group_row needs a [fill_down] group"));
        }
        if !natural_key.is_empty() && natural_key.iter().all(|s| matches!(s, Source::Meta(_))) {
            return Err(ctx.err(
                "natural_key.sources",
                "positions only ($line, $row, $group_row): line 2 of every file would get the same ids; add a column \
                 that identifies the row, or drop [natural_key] to derive ids from the file's content and line",
            ));
        }
        let (natural_key_scope, same_rows_as) = match &raw.natural_key {
            None => (None, vec![]),
            Some(n) => {
                let word = |field: &str, w: &str| {
                    if w.is_empty() || !w.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                        Err(ctx.err(field, format!("{w:?}: use letters, digits, - and _")))
                    } else {
                        Ok(())
                    }
                };
                if let Some(scope) = &n.scope {
                    word("natural_key.scope", scope)?;
                }
                for name in &n.same_rows_as {
                    word("natural_key.same_rows_as", name)?;
                    if *name == raw.name {
                        return Err(ctx.err("natural_key.same_rows_as", format!("{name:?} is this spec")));
                    }
                }
                (n.scope.clone(), n.same_rows_as.clone())
            }
        };

        let mut consents = HashMap::new();
        for (event_type, c) in &raw.consent {
            let at = format!("consent.{event_type}");
            let channel = match &c.channel {
                Some(ch) => Some(
                    ConsentChannel::parse(ch).ok_or_else(|| ctx.err(&at, format!("channel {ch:?}: expected email, sms, push or ads")))?,
                ),
                None if has(Canon::ConsentChannel) => None,
                None => return Err(ctx.err(&at, "no channel, and the spec maps no consent_channel field")),
            };
            consents.insert(event_type.clone(), ConsentRule { channel, granted: c.granted });
        }

        let keys = raw.keys.clone().unwrap_or_else(|| vec![CATCH_ALL.to_string()]);
        if keys.is_empty() || keys.iter().any(|k| k.is_empty() || k.starts_with('/')) {
            return Err(ctx.err("keys", "non-empty glob patterns relative to the channel prefix"));
        }
        let spec = Spec {
            file: file.to_string(),
            channel: raw.channel,
            name: raw.name,
            description: raw.description,
            keys,
            format,
            fill_down,
            event_type,
            natural_key,
            natural_key_scope,
            same_rows_as,
            consents,
            fields,
            limits: compile_limits(&ctx, raw.limits.as_ref())?,
        };
        // Without a header row, the spec's `columns` are the header: a column read but not
        // listed would be missing from every file (or, optional, blank in every row).
        if spec.format.kind == FormatKind::Csv && !spec.format.header {
            let listed: BTreeSet<String> = spec.format.columns.iter().map(|c| column_key(c)).collect();
            if let Some(Source::Column { name, .. }) =
                spec.sources().find(|s| matches!(s, Source::Column { name, .. } if !listed.contains(&column_key(name))))
            {
                return Err(ctx.err("format.columns", format!("column {name:?} is read by the spec but not listed in columns")));
            }
        }
        Ok(spec)
    }

    /// Whether `key` (the full landing key) is matched by this spec's patterns; `Some(true)`
    /// when by a specific pattern, `Some(false)` when only by the catch-all `**`.
    pub fn matches(&self, key: &str) -> Option<bool> {
        let rest = key.strip_prefix(&self.channel)?.strip_prefix('/')?;
        let mut best = None;
        for pattern in &self.keys {
            if glob_match(pattern.as_bytes(), rest.as_bytes()) {
                best = Some(best.unwrap_or(false) || is_specific(pattern));
            }
        }
        best
    }

    /// Every source the spec reads (fields, event type, natural key, fill-down).
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        let fill = self.fill_down.iter().flat_map(|f| f.key.iter().chain(f.columns.iter()));
        self.fields.iter().flat_map(|f| f.sources.iter()).chain(self.event_type.sources.iter()).chain(self.natural_key.iter()).chain(fill)
    }

    /// The columns a flat file must have (as [`column_key`]s): every column the spec reads
    /// but those read only by optional fields. A fill-down column follows the fields: it
    /// may be absent when an optional field reads it.
    pub fn required_columns(&self) -> BTreeSet<String> {
        let key = |s: &Source| match s {
            Source::Column { name, .. } => Some(column_key(name)),
            _ => None,
        };
        let optional: BTreeSet<String> = self.fields.iter().filter(|f| f.optional).flat_map(|f| f.sources.iter().filter_map(key)).collect();
        let fill_key = self.fill_down.iter().flat_map(|f| f.key.iter());
        let mut required: BTreeSet<String> = self
            .fields
            .iter()
            .filter(|f| !f.optional)
            .flat_map(|f| f.sources.iter())
            .chain(self.event_type.sources.iter())
            .chain(self.natural_key.iter())
            .chain(fill_key)
            .filter_map(key)
            .collect();
        if let Some(fd) = &self.fill_down {
            required.extend(fd.columns.iter().filter_map(key).filter(|c| !optional.contains(c)));
        }
        required
    }

    /// The event types the spec can produce; `None`: any (`unmapped = "keep"`).
    pub fn event_types(&self) -> Option<BTreeSet<&str>> {
        let rule = &self.event_type;
        match (&rule.constant, rule.unmapped) {
            (Some(c), _) => Some(BTreeSet::from([c.as_str()])),
            (None, Unmapped::Keep) => None,
            (None, _) => Some(rule.map.values().map(String::as_str).collect()),
        }
    }

    pub fn field(&self, canon: Canon) -> Option<&FieldPlan> {
        self.fields.iter().find(|f| f.canon == canon)
    }

    /// Every column source of the spec (to bind to a header).
    pub fn sources_mut(&mut self) -> impl Iterator<Item = &mut Source> {
        let fill = self.fill_down.iter_mut().flat_map(|f| f.key.iter_mut().chain(f.columns.iter_mut()));
        self.fields
            .iter_mut()
            .flat_map(|f| f.sources.iter_mut())
            .chain(self.event_type.sources.iter_mut())
            .chain(self.natural_key.iter_mut())
            .chain(fill)
    }
}

fn check_event_type_name(ctx: &Ctx, field: &str, name: &str) -> Result<(), SpecError> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(ctx.err(field, format!("event type {name:?}: use lower-case letters, digits and _")));
    }
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

fn compile_limits(ctx: &Ctx, f: Option<&LimitsFile>) -> Result<InputLimits, SpecError> {
    let d = InputLimits::default();
    let Some(f) = f else {
        return Ok(d);
    };
    // Each bound must be positive and below what would defeat its purpose.
    let bound = |name: &str, value: Option<u64>, default: u64, min: u64, max: u64| -> Result<u64, SpecError> {
        match value {
            None => Ok(default),
            Some(v) if (min..=max).contains(&v) => Ok(v),
            Some(v) => Err(ctx.err(format!("limits.{name}"), format!("{v}: expected {min} to {max}"))),
        }
    };
    const GIB: u64 = 1 << 30;
    let max_row_bytes = bound("max_row_bytes", f.max_row_bytes, d.max_row_bytes as u64, 1024, 256 << 20)?;
    let max_field_bytes = bound("max_field_bytes", f.max_field_bytes, d.max_field_bytes as u64, 16, max_row_bytes)?;
    Ok(InputLimits {
        max_row_bytes: max_row_bytes as usize,
        max_field_bytes: max_field_bytes as usize,
        max_bytes: bound("max_bytes", f.max_bytes, d.max_bytes, 1024, 1024 * GIB)?,
        max_compression_ratio: bound("max_compression_ratio", f.max_compression_ratio, d.max_compression_ratio, 2, 100_000)?,
        max_rows: bound("max_rows", f.max_rows, d.max_rows, 1, 1 << 40)?,
        max_dates: bound("max_dates", f.max_dates, d.max_dates as u64, 1, 100_000)? as usize,
        past_days: bound("past_days", f.past_days, d.past_days as u64, 1, 36_600)? as i64,
        future_days: bound("future_days", f.future_days, d.future_days as u64, 0, 36_600)? as i64,
    })
}

fn compile_format(ctx: &Ctx, f: &FormatFile) -> Result<Format, SpecError> {
    let kind = match f.kind.as_str() {
        "csv" => FormatKind::Csv,
        "ndjson" | "jsonl" => FormatKind::Ndjson,
        "json_array" | "json" => FormatKind::JsonArray,
        "parquet" => FormatKind::Parquet,
        other => return Err(ctx.err("format.kind", format!("{other:?}: expected csv, ndjson, json_array or parquet"))),
    };
    let compression = match f.compression.as_deref() {
        None | Some("auto") => Compression::Auto,
        Some("none") => Compression::None,
        Some("gzip") => Compression::Gzip,
        Some(other) => return Err(ctx.err("format.compression", format!("{other:?}: expected auto, none or gzip"))),
    };
    if kind == FormatKind::Parquet && compression == Compression::Gzip {
        return Err(ctx.err("format.compression", "Parquet files compress their own pages: use none or auto"));
    }
    let csv_only = [
        ("separator", f.separator.is_some()),
        ("quote", f.quote.is_some()),
        ("encoding", f.encoding.is_some()),
        ("header", f.header.is_some()),
        ("columns", f.columns.is_some()),
    ];
    if kind != FormatKind::Csv {
        if let Some((name, _)) = csv_only.iter().find(|(_, set)| *set) {
            return Err(ctx.err(format!("format.{name}"), "applies to CSV files only"));
        }
    }
    let separator = one_char(ctx, "format.separator", f.separator.as_deref(), ',')?;
    let quote = one_char(ctx, "format.quote", f.quote.as_deref(), '"')?;
    if !separator.is_ascii() || !quote.is_ascii() || separator == quote {
        return Err(ctx.err("format.separator", "separator and quote must be distinct ASCII characters"));
    }
    let encoding = match f.encoding.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("utf-8") | Some("utf8") => Encoding::Utf8,
        Some("windows-1252") | Some("cp1252") | Some("latin-1") | Some("latin1") | Some("iso-8859-1") => Encoding::Windows1252,
        Some(other) => return Err(ctx.err("format.encoding", format!("{other:?}: expected utf-8 or windows-1252"))),
    };
    let header = f.header.unwrap_or(true);
    let columns = f.columns.clone().unwrap_or_default();
    if !header && columns.is_empty() && kind == FormatKind::Csv {
        return Err(ctx.err("format.columns", "a CSV without a header row needs its column names"));
    }
    let decimal = one_char(ctx, "format.decimal", f.decimal.as_deref(), '.')?;
    if decimal != '.' && decimal != ',' {
        return Err(ctx.err("format.decimal", "expected \".\" or \",\""));
    }
    Ok(Format {
        kind,
        compression,
        separator: separator as u8,
        quote: quote as u8,
        encoding,
        header,
        columns,
        decimal,
        time_zone: parse_tz(ctx, "format.time_zone", f.time_zone.as_deref().unwrap_or("UTC"))?,
        phone_region: parse_region(ctx, "format.phone_region", f.phone_region.as_deref().unwrap_or("FR"))?,
    })
}

fn compile_field(ctx: &Ctx, at: &str, canon: Canon, f: &FieldFile, format: &Format) -> Result<FieldPlan, SpecError> {
    let mut sources = Vec::new();
    match (&f.source, &f.sources, &f.constant) {
        (Some(s), None, None) => sources.push(parse_source(ctx, &format!("{at}.source"), format.kind, s)?),
        (None, Some(list), None) if !list.is_empty() => {
            for s in list {
                sources.push(parse_source(ctx, &format!("{at}.sources"), format.kind, s)?);
            }
        }
        (None, None, Some(_)) => {}
        (None, None, None) => return Err(ctx.err(at, "missing required mapping: source, sources or constant")),
        _ => return Err(ctx.err(at, "set exactly one of source, sources (non-empty) or constant")),
    }
    let kind = canon.kind();
    let compute = match f.compute.as_deref() {
        None => None,
        Some("multiply") => {
            if kind != Kind::Amount || sources.len() != 2 {
                return Err(ctx.err(format!("{at}.compute"), "multiply needs an amount field and two sources (amount, quantity)"));
            }
            Some(Compute::Multiply)
        }
        Some(other) => return Err(ctx.err(format!("{at}.compute"), format!("unknown computation {other:?} (multiply)"))),
    };
    if sources.len() > 1 && compute.is_none() && f.join.is_none() {
        return Err(ctx.err(at, "several sources need `join` (a separator) or `compute`"));
    }
    let time = match (&f.format, kind) {
        (Some(t), Kind::Timestamp) => Some(parse_time_format(t).map_err(|e| ctx.err(format!("{at}.format"), e.to_string()))?),
        (None, Kind::Timestamp) if f.constant.is_none() => {
            return Err(ctx.err(format!("{at}.format"), "missing required time format (strftime, rfc3339, epoch_ms, ...)"))
        }
        (None, _) => None,
        (Some(_), _) => return Err(ctx.err(format!("{at}.format"), "only timestamp fields take a format")),
    };
    if f.time_zone.is_some() && kind != Kind::Timestamp {
        return Err(ctx.err(format!("{at}.time_zone"), "only timestamp fields take a time zone"));
    }
    if f.phone_region.is_some() && kind != Kind::Phone {
        return Err(ctx.err(format!("{at}.phone_region"), "only the phone field takes a region"));
    }
    if f.decimal.is_some() && kind != Kind::Amount {
        return Err(ctx.err(format!("{at}.decimal"), "only amount fields take a decimal separator"));
    }
    let decimal = one_char(ctx, &format!("{at}.decimal"), f.decimal.as_deref(), format.decimal)?;
    if f.optional && f.constant.is_some() {
        return Err(ctx.err(format!("{at}.optional"), "a constant is not read from the file: optional applies to source or sources"));
    }
    if f.optional && f.required {
        return Err(ctx.err(
            format!("{at}.optional"),
            "a field cannot be both optional (its column may be absent) and required (a blank value rejects the row): drop one",
        ));
    }
    let default_unmapped = Unmapped::Reject;
    let plan = FieldPlan {
        canon,
        sources,
        join: f.join.clone().unwrap_or_default(),
        compute,
        constant: f.constant.clone(),
        default: f.default.clone(),
        transforms: parse_transforms(ctx, &format!("{at}.transforms"), &f.transforms)?,
        map: f.map.as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        unmapped: parse_unmapped(ctx, &format!("{at}.unmapped"), f.unmapped.as_deref(), default_unmapped)?,
        time,
        time_zone: match &f.time_zone {
            Some(tz) => parse_tz(ctx, &format!("{at}.time_zone"), tz)?,
            None => format.time_zone,
        },
        decimal,
        phone_region: match &f.phone_region {
            Some(r) => parse_region(ctx, &format!("{at}.phone_region"), r)?,
            None => format.phone_region,
        },
        required: f.required,
        optional: f.optional || f.default.is_some(),
        min: f.min,
        keep_query: f.keep_query.clone().unwrap_or_default(),
    };
    if let Some(keep) = &f.keep_query {
        if canon != Canon::PageUrl {
            return Err(ctx.err(format!("{at}.keep_query"), "only page_url takes keep_query"));
        }
        if let Some(bad) = keep.iter().find(|p| p.is_empty() || p.contains(['=', '&', '#', '?'])) {
            return Err(ctx.err(format!("{at}.keep_query"), format!("{bad:?} is not a query parameter name")));
        }
    }
    if f.min.is_some() && !matches!(kind, Kind::Integer | Kind::Amount) {
        return Err(ctx.err(format!("{at}.min"), "only whole-number and amount fields take a minimum"));
    }
    // Constants and defaults must themselves be valid values of the field.
    for (what, value) in [("constant", &f.constant), ("default", &f.default)] {
        if let Some(v) = value {
            plan.check_literal(v).map_err(|e| ctx.err(format!("{at}.{what}"), e.to_string()))?;
        }
    }
    if let (Some(map), Kind::OptIn(_) | Kind::ConsentChannel) = (&plan.map, kind) {
        for v in map.values() {
            plan.check_literal(v).map_err(|e| ctx.err(format!("{at}.map"), e.to_string()))?;
        }
    }
    Ok(plan)
}

/// How a header names a column, for comparison with a spec's column names: trimmed (a
/// leading byte-order mark too) and lower-cased.
pub fn column_key(name: &str) -> String {
    name.trim_start_matches('\u{feff}').trim().to_lowercase()
}

/// The catch-all key pattern (and the default `keys`): a spec matching a key only
/// through it yields to any spec matching through another pattern.
pub const CATCH_ALL: &str = "**";

/// Whether a key pattern is specific: it takes precedence over the catch-all `**`.
pub fn is_specific(pattern: &str) -> bool {
    pattern != CATCH_ALL
}

/// Glob match: `*` any run of characters except `/`, `**` any run including `/` (and
/// `**/` also matches nothing), `?` one character. Case-insensitive.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.first() {
        None => text.is_empty(),
        Some(b'*') if pattern.get(1) == Some(&b'*') => {
            let rest = &pattern[2..];
            if let Some(after_slash) = rest.strip_prefix(b"/") {
                if glob_match(after_slash, text) {
                    return true;
                }
            }
            (0..=text.len()).any(|i| glob_match(rest, &text[i..]))
        }
        Some(b'*') => {
            let rest = &pattern[1..];
            let mut i = 0;
            loop {
                if glob_match(rest, &text[i..]) {
                    return true;
                }
                if i == text.len() || text[i] == b'/' {
                    return false;
                }
                i += 1;
            }
        }
        Some(b'?') => !text.is_empty() && text[0] != b'/' && glob_match(&pattern[1..], &text[1..]),
        Some(p) => !text.is_empty() && text[0].eq_ignore_ascii_case(p) && glob_match(&pattern[1..], &text[1..]),
    }
}

/// A key both glob patterns match ([`glob_match`]'s semantics), the shortest there is,
/// or `None` when no key is matched by both. Only object names count: a key neither
/// empty nor ending in `/` (an S3 "folder" marker is never a file to read).
///
/// The two patterns run as automata in lockstep (breadth-first over pairs of states: a
/// wildcard's moves that read nothing are free, a character moves both). The characters
/// tried are the patterns' own literals (lower-cased), `/`, and one character neither
/// pattern names, which stands for every other.
pub fn glob_overlap(a: &str, b: &str) -> Option<String> {
    let (a, b) = (GlobTokens::new(a.as_bytes()), GlobTokens::new(b.as_bytes()));
    let mut alphabet: Vec<u8> =
        a.0.iter()
            .chain(&b.0)
            .filter_map(|t| match t {
                GlobToken::Literal(c) if *c != b'/' => Some(*c),
                _ => None,
            })
            .collect::<BTreeSet<u8>>()
            .into_iter()
            .collect();
    // Any character no pattern names behaves like any other: one stands for them all.
    let other = (b'a'..=b'z')
        .chain(b'0'..=b'9')
        .chain(0..=u8::MAX)
        .find(|c| !alphabet.contains(c) && !c.is_ascii_uppercase() && !matches!(c, b'*' | b'?' | b'/'));
    alphabet.extend(other);
    alphabet.push(b'/');
    // A state: one of each pattern, and whether the key so far is a file name (non-empty,
    // not ending in `/`).
    type State = (usize, usize, bool);
    let mut previous: HashMap<State, Option<(State, Option<u8>)>> = HashMap::new();
    let start = (0, 0, false);
    previous.insert(start, None);
    // Free moves first (0-1 breadth-first), so the key found is a shortest one.
    let mut queue = VecDeque::from([start]);
    while let Some(state @ (i, j, named)) = queue.pop_front() {
        if a.accepts(i) && b.accepts(j) && named {
            let mut key = Vec::new();
            let mut at = state;
            while let Some(Some((before, c))) = previous.get(&at) {
                key.extend(c);
                at = *before;
            }
            key.reverse();
            return Some(String::from_utf8_lossy(&key).into_owned());
        }
        let free = a.free_moves(i).into_iter().map(|i| (i, j, named)).chain(b.free_moves(j).into_iter().map(|j| (i, j, named)));
        for next in free {
            if let Entry::Vacant(e) = previous.entry(next) {
                e.insert(Some((state, None)));
                queue.push_front(next);
            }
        }
        for &c in &alphabet {
            if let (Some(i), Some(j)) = (a.step(i, c), b.step(j, c)) {
                let next = (i, j, c != b'/');
                if let Entry::Vacant(e) = previous.entry(next) {
                    e.insert(Some((state, Some(c))));
                    queue.push_back(next);
                }
            }
        }
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GlobToken {
    /// A character (lower-cased), `/` included.
    Literal(u8),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**`
    AnyDepth,
}

/// A pattern as [`glob_match`] reads it, as an automaton. A state is `2 × token index`,
/// plus one once a `**` has read a character (`**/` may then no longer match nothing).
struct GlobTokens(Vec<GlobToken>);

impl GlobTokens {
    fn new(p: &[u8]) -> GlobTokens {
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < p.len() {
            let (token, width) = match (p[i], p.get(i + 1)) {
                (b'*', Some(b'*')) => (GlobToken::AnyDepth, 2),
                (b'*', _) => (GlobToken::Star, 1),
                (b'?', _) => (GlobToken::One, 1),
                (c, _) => (GlobToken::Literal(c.to_ascii_lowercase()), 1),
            };
            tokens.push(token);
            i += width;
        }
        GlobTokens(tokens)
    }

    fn accepts(&self, state: usize) -> bool {
        state / 2 == self.0.len()
    }

    /// The states reached from `state` without reading a character.
    fn free_moves(&self, state: usize) -> Vec<usize> {
        let (k, read) = (state / 2, state % 2 == 1);
        match self.0.get(k) {
            Some(GlobToken::Star) => vec![2 * (k + 1)],
            Some(GlobToken::AnyDepth) => {
                let mut moves = vec![2 * (k + 1)];
                if !read && self.0.get(k + 1) == Some(&GlobToken::Literal(b'/')) {
                    moves.push(2 * (k + 2));
                }
                moves
            }
            _ => vec![],
        }
    }

    /// The state reached from `state` by reading `c` (lower-case), if any.
    fn step(&self, state: usize, c: u8) -> Option<usize> {
        let k = state / 2;
        match self.0.get(k)? {
            GlobToken::AnyDepth => Some(2 * k + 1),
            GlobToken::Star => (c != b'/').then_some(2 * k),
            GlobToken::One => (c != b'/').then_some(2 * (k + 1)),
            GlobToken::Literal(l) => (*l == c).then_some(2 * (k + 1)),
        }
    }
}

/// Two specs of one channel whose key patterns select the same file with equal
/// precedence: `(earlier spec's pattern, later spec's pattern, an example key)`.
///
/// Selection ([`Catalog::select`]) orders specs by the kind of pattern that matched (a
/// specific one beats the catch-all `**`) and nothing else: between two specific
/// patterns, or two catch-alls, the first file by name would silently take every key
/// both accept. So two patterns overlap when they are of the same kind and some key
/// matches both; a specific pattern never overlaps a catch-all.
pub fn key_overlap<'s>(earlier: &'s Spec, later: &'s Spec) -> Option<(&'s str, &'s str, String)> {
    if earlier.channel != later.channel {
        return None;
    }
    for p in &earlier.keys {
        for q in later.keys.iter().filter(|q| is_specific(q) == is_specific(p)) {
            if let Some(key) = glob_overlap(p, q) {
                return Some((p, q, key));
            }
        }
    }
    None
}

/// Why two specs of one channel could give the same event id to different rows, if they
/// could: an event id hashes the channel, the event type, the natural key's scope and
/// values, in order (`map::row_id`), and nothing of the spec. So two specs collide when
///
/// - both have a natural key (without one, ids derive from the file's content and line,
///   which no other file shares) with the same number of sources (lists of different
///   lengths never hash alike) and the same `scope`;
/// - they can produce a common event type (`unmapped = "keep"` can produce any);
/// - and neither says the other reads the same rows (`same_rows_as`, [`Catalog`] links
///   them transitively) nor do they share an explicit `scope` (a declared source).
///
/// Conservative: whether the values of two keys can really be equal is not known, so
/// equal shapes are enough to refuse. Returns a common event type (`*` for any).
pub fn id_collision(a: &Spec, b: &Spec) -> Option<String> {
    if a.channel != b.channel
        || a.natural_key.is_empty()
        || b.natural_key.is_empty()
        || a.natural_key.len() != b.natural_key.len()
        || a.natural_key_scope != b.natural_key_scope
        || a.natural_key_scope.is_some()
    {
        return None;
    }
    match (a.event_types(), b.event_types()) {
        (Some(x), Some(y)) => x.intersection(&y).next().map(|t| t.to_string()),
        (Some(x), None) | (None, Some(x)) => x.iter().next().map(|t| t.to_string()),
        (None, None) => Some("*".to_string()),
    }
}

/// The specs the function knows, by channel.
#[derive(Clone, Debug)]
pub struct Catalog {
    pub specs: Vec<Spec>,
}

/// The spec files under `channels/`, embedded at build time: `(path, content)`.
pub const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/channel_specs.rs"));

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error("no spec of channel {channel} accepts {key:?} (patterns: {patterns})")]
    NoSpec { channel: String, key: String, patterns: String },
}

/// The natural keys of a catalog's specs, together: `same_rows_as` names a spec of the
/// channel with a key of as many sources and the same scope, and no two specs could give
/// one event id to different rows ([`id_collision`]) unless linked by `same_rows_as`.
fn check_ids(specs: &[Spec]) -> Vec<SpecError> {
    let mut errors = Vec::new();
    // Specs declared to read the same rows, by (channel, name): union-find over indices.
    let mut group: Vec<usize> = (0..specs.len()).collect();
    fn root(group: &mut [usize], mut i: usize) -> usize {
        while group[i] != i {
            group[i] = group[group[i]];
            i = group[i];
        }
        i
    }
    let err = |spec: &Spec, message: String| SpecError { file: spec.file.clone(), field: "natural_key.same_rows_as".into(), message };
    for (i, spec) in specs.iter().enumerate() {
        for name in &spec.same_rows_as {
            let Some(j) = specs.iter().position(|o| o.channel == spec.channel && o.name == *name) else {
                errors.push(err(spec, format!("no spec of channel {} is named {name:?}", spec.channel)));
                continue;
            };
            let other = &specs[j];
            if other.natural_key.len() != spec.natural_key.len() || other.natural_key_scope != spec.natural_key_scope {
                errors.push(err(
                    spec,
                    format!(
                        "{name:?} ({}) has a natural key of {} source(s){}, this spec {}{}: the same rows would get different ids",
                        other.file,
                        other.natural_key.len(),
                        other.natural_key_scope.as_ref().map(|s| format!(" in scope {s:?}")).unwrap_or_default(),
                        spec.natural_key.len(),
                        spec.natural_key_scope.as_ref().map(|s| format!(" in scope {s:?}")).unwrap_or_default(),
                    ),
                ));
                continue;
            }
            let (a, b) = (root(&mut group, i), root(&mut group, j));
            group[a] = b;
        }
    }
    let key_of = |s: &Spec| s.natural_key.iter().map(Source::label).collect::<Vec<_>>().join(", ");
    for (i, later) in specs.iter().enumerate() {
        for (j, earlier) in specs[..i].iter().enumerate() {
            let Some(event_type) = id_collision(earlier, later) else { continue };
            if root(&mut group, i) == root(&mut group, j) {
                continue;
            }
            let types = if event_type == "*" { "any event type".to_string() } else { format!("{event_type} events") };
            errors.push(SpecError {
                file: later.file.clone(),
                field: "natural_key".into(),
                message: format!(
                    "could give the same event ids as {} to different rows: both produce {types} with a natural key of {} \
                     values ({} here; {} there), and ids derive from the channel, the event type and the key's values, not \
                     the spec. If both read the same source (a new export format), say so in either: \
                     natural_key.same_rows_as = [{:?}] here, or [{:?}] in {}; otherwise give one of them \
                     natural_key.scope = \"<source name>\"",
                    earlier.file,
                    later.natural_key.len(),
                    key_of(later),
                    key_of(earlier),
                    earlier.name,
                    later.name,
                    earlier.file,
                ),
            });
        }
    }
    errors
}

impl Catalog {
    /// Parses every spec (given in file-name order, as embedded) and checks them together
    /// (directories, names, key overlaps); all errors are returned, not just the first.
    pub fn from_files(files: &[(&str, &str)]) -> Result<Catalog, Vec<SpecError>> {
        let mut specs = Vec::new();
        let mut errors = Vec::new();
        for (path, text) in files {
            match Spec::parse(path, text) {
                Ok(spec) => {
                    // In the repository layout (`channels/<channel>/<format>.toml`) the
                    // directory must name the spec's channel.
                    let mut parts = path.rsplit('/');
                    let (_, dir_channel, parent) = (parts.next(), parts.next().unwrap_or_default(), parts.next());
                    if parent == Some("channels") && dir_channel != spec.channel {
                        errors.push(SpecError {
                            file: path.to_string(),
                            field: "channel".into(),
                            message: format!("{:?} but the file is in channels/{dir_channel}/", spec.channel),
                        });
                    } else if specs.iter().any(|s: &Spec| s.channel == spec.channel && s.name == spec.name) {
                        errors.push(SpecError {
                            file: path.to_string(),
                            field: "name".into(),
                            message: format!("another spec of channel {} is named {:?}", spec.channel, spec.name),
                        });
                    } else {
                        specs.push(spec)
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        for (i, later) in specs.iter().enumerate() {
            for earlier in &specs[..i] {
                if let Some((p, q, key)) = key_overlap(earlier, later) {
                    let kind = if is_specific(p) { "two specific patterns" } else { "two catch-alls" };
                    let (other, example) = (&earlier.file, format!("{}/{key}", later.channel));
                    errors.push(SpecError {
                        file: later.file.clone(),
                        field: "keys".into(),
                        message: format!(
                            "pattern {q:?} overlaps pattern {p:?} of {other} with equal precedence ({kind}): a file such as \
                             {example:?} would always be read by {other} (the first by file name) and never by this spec; \
                             make the patterns disjoint or one of them more specific"
                        ),
                    });
                }
            }
        }
        errors.extend(check_ids(&specs));
        if errors.is_empty() {
            Ok(Catalog { specs })
        } else {
            Err(errors)
        }
    }

    /// The specs compiled into this binary.
    pub fn embedded() -> Result<Catalog, Vec<SpecError>> {
        Catalog::from_files(EMBEDDED)
    }

    pub fn channels(&self) -> Vec<&str> {
        let mut c: Vec<&str> = self.specs.iter().map(|s| s.channel.as_str()).collect();
        c.sort();
        c.dedup();
        c
    }

    /// The spec for a landing key of `channel`: a spec whose specific pattern matches wins
    /// over one that matches only through `**`. There are no ties: [`Catalog::from_files`]
    /// refuses two specs of a channel that could match one key with equal precedence
    /// ([`key_overlap`]); the first file by name would otherwise take it.
    pub fn select(&self, channel: &str, key: &str) -> Result<&Spec, SelectError> {
        let mut fallback = None;
        for spec in self.specs.iter().filter(|s| s.channel == channel) {
            match spec.matches(key) {
                Some(true) => return Ok(spec),
                Some(false) if fallback.is_none() => fallback = Some(spec),
                _ => {}
            }
        }
        fallback.ok_or_else(|| SelectError::NoSpec {
            channel: channel.to_string(),
            key: key.to_string(),
            patterns: self
                .specs
                .iter()
                .filter(|s| s.channel == channel)
                .map(|s| format!("{}: {}", s.name, s.keys.join(" ")))
                .collect::<Vec<_>>()
                .join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_specs_are_valid_and_cover_every_channel() {
        let catalog = Catalog::embedded().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(catalog.channels().len(), CHANNELS.len());
        for c in CHANNELS {
            assert!(catalog.specs.iter().any(|s| s.channel == *c), "{c} has a spec");
        }
    }

    #[test]
    fn selection_prefers_specific_patterns() {
        let catalog = Catalog::embedded().unwrap();
        assert_eq!(catalog.select("ecommerce", "ecommerce/2026/checkouts-11.csv").unwrap().name, "checkouts");
        assert_eq!(catalog.select("ecommerce", "ecommerce/Abandoned_Carts.csv").unwrap().name, "checkouts");
        assert_eq!(catalog.select("ecommerce", "ecommerce/orders_export.csv").unwrap().name, "orders");
        assert_eq!(catalog.select("pos", "pos/2026-11-01/caisse.csv").unwrap().name, "receipts");
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"**", b"a/b/c.csv"));
        assert!(glob_match(b"*.csv", b"x.CSV"));
        assert!(!glob_match(b"*.csv", b"d/x.csv"));
        assert!(glob_match(b"**/*.csv", b"x.csv"));
        assert!(glob_match(b"**/*.csv", b"d/e/x.csv"));
        assert!(glob_match(b"*cart*", b"abandoned_carts.csv"));
        assert!(!glob_match(b"?", b""));
    }

    fn base(fields: &str) -> String {
        format!(
            "channel = \"pos\"\nname = \"t\"\n[format]\nkind = \"csv\"\n[event_type]\nconstant = \"x\"\n[fields]\noccurred_at = {{ source = \"d\", format = \"%d/%m/%Y\" }}\n{fields}"
        )
    }

    #[test]
    fn validation_names_the_file_and_the_field() {
        let err = Spec::parse("channels/pos/t.toml", &base("shoe_size = { source = \"s\" }")).unwrap_err();
        assert_eq!(err.file, "channels/pos/t.toml");
        assert_eq!(err.field, "fields.shoe_size");
        assert!(err.message.contains("unknown canonical field"), "{err}");

        let err = Spec::parse("f.toml", &base("").replace("%d/%m/%Y", "%d/%q/%Y")).unwrap_err();
        assert_eq!(err.field, "fields.occurred_at.format", "{err}");

        let err = Spec::parse(
            "f.toml",
            &base("").replace("occurred_at = { source = \"d\", format = \"%d/%m/%Y\" }", "order_id = { source = \"d\" }"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("missing required mapping"), "{err}");

        let err = Spec::parse("f.toml", &base("sku = {}")).unwrap_err();
        assert_eq!(err.field, "fields.sku");

        let err = Spec::parse("f.toml", &base("phone = { source = \"p\", phone_region = \"ZZ\" }")).unwrap_err();
        assert_eq!(err.field, "fields.phone.phone_region");

        let err = Spec::parse("f.toml", &base("").replace("kind = \"csv\"", "kind = \"csv\"\ntime_zone = \"Europe/Pariss\"")).unwrap_err();
        assert_eq!(err.field, "format.time_zone");

        let err = Spec::parse("f.toml", &base("email_opt_in = { source = \"m\", map = { Oui = \"peut-être\" } }")).unwrap_err();
        assert_eq!(err.field, "fields.email_opt_in.map", "{err}");

        let err = Spec::parse("f.toml", "channel = \"pos\"\nnme = 1").unwrap_err();
        assert!(err.field.starts_with("line "), "{err}");
    }

    /// Every pattern of up to `len` tokens over `a`, `B`, `/`, `*`, `?` (`**` is two `*`).
    fn patterns(len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..len {
            last = last.iter().flat_map(|p| ["a", "B", "/", "*", "?"].map(|t| format!("{p}{t}"))).collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn glob_overlap_agrees_with_glob_match_on_every_small_pattern_pair() {
        // Every key of up to 4 characters over a, b, c, / (c: a character no pattern names).
        let mut keys = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..4 {
            last = last.iter().flat_map(|k| ["a", "b", "c", "/"].map(|t| format!("{k}{t}"))).collect();
            keys.extend(last.iter().cloned());
        }
        let keys: Vec<&String> = keys.iter().filter(|k| !k.is_empty() && !k.ends_with('/')).collect();
        let patterns = patterns(3);
        let (mut overlapping, mut disjoint) = (0, 0);
        for p in &patterns {
            for q in &patterns {
                let both = keys.iter().find(|k| glob_match(p.as_bytes(), k.as_bytes()) && glob_match(q.as_bytes(), k.as_bytes()));
                match glob_overlap(p, q) {
                    Some(key) => {
                        overlapping += 1;
                        assert!(
                            glob_match(p.as_bytes(), key.as_bytes()) && glob_match(q.as_bytes(), key.as_bytes()),
                            "{p:?} {q:?}: {key:?}"
                        );
                        assert!(!key.is_empty() && !key.ends_with('/'), "{p:?} {q:?}: {key:?} is a file name");
                        // The key found is a shortest one: a shorter one would be among `keys`.
                        if key.len() <= 4 {
                            assert!(both.is_some_and(|k| k.len() >= key.len()), "{p:?} {q:?}: {key:?} vs {both:?}");
                        }
                    }
                    None => {
                        disjoint += 1;
                        assert_eq!(both, None, "{p:?} and {q:?} both match {both:?}");
                    }
                }
            }
        }
        assert!(overlapping > 1000 && disjoint > 1000, "{overlapping} overlapping, {disjoint} disjoint pairs");
    }

    #[test]
    fn glob_overlap_examples() {
        assert_eq!(glob_overlap("**", "**").as_deref(), Some("a"));
        assert_eq!(glob_overlap("*.csv", "*.json"), None);
        assert_eq!(glob_overlap("*.CSV", "export-*").as_deref(), Some("export-.csv"));
        assert_eq!(glob_overlap("*cart*", "**/*checkout*").as_deref().map(|k| k.contains("cart") && k.contains("checkout")), Some(true));
        assert_eq!(glob_overlap("kiosk/**", "*.csv"), None, "a file in kiosk/ is not a top-level file");
        assert_eq!(glob_overlap("kiosk/**", "**/*.csv").as_deref(), Some("kiosk/.csv"));
        assert_eq!(glob_overlap("a/", "a/**"), None, "a folder marker is not a file");
        assert_eq!(glob_overlap("é*", "?*").as_deref(), Some("é"));
    }

    fn spec_with_keys(channel: &str, name: &str, keys: &[&str]) -> (String, String) {
        let keys = keys.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ");
        let text =
            base("").replace("channel = \"pos\"\nname = \"t\"", &format!("channel = \"{channel}\"\nname = \"{name}\"\nkeys = [{keys}]"));
        (format!("channels/{channel}/{name}.toml"), text)
    }

    fn catalog_of(specs: &[(String, String)]) -> Result<Catalog, Vec<SpecError>> {
        let refs: Vec<(&str, &str)> = specs.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        Catalog::from_files(&refs)
    }

    #[test]
    fn overlapping_key_patterns_of_equal_precedence_are_refused() {
        // Two catch-alls in one channel: the first by file name would take every file.
        let errors = catalog_of(&[spec_with_keys("pos", "a", &["**"]), spec_with_keys("pos", "b", &["**"])]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!((e.file.as_str(), e.field.as_str()), ("channels/pos/b.toml", "keys"));
        assert!(e.message.contains("channels/pos/a.toml") && e.message.contains("\"**\"") && e.message.contains("two catch-alls"), "{e}");
        // Two specific patterns accepting the same key.
        let errors =
            catalog_of(&[spec_with_keys("pos", "a", &["kiosk/**"]), spec_with_keys("pos", "b", &["*.json", "**/*.ndjson"])]).unwrap_err();
        let text = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
        assert!(
            text.contains("channels/pos/b.toml: keys: pattern \"**/*.ndjson\" overlaps pattern \"kiosk/**\" of channels/pos/a.toml")
                && text.contains("\"pos/kiosk/.ndjson\""),
            "{text}"
        );
        // A patterns list with the catch-all and a specific one: each compared with its kind.
        assert!(catalog_of(&[spec_with_keys("pos", "a", &["**", "x/*"]), spec_with_keys("pos", "b", &["**"])]).is_err());
    }

    #[test]
    fn key_patterns_the_selection_orders_are_accepted() {
        // A specific pattern and a catch-all: the specific one wins, whatever the file names.
        let ok = catalog_of(&[spec_with_keys("pos", "a", &["**/*.ndjson", "kiosk/**"]), spec_with_keys("pos", "b", &["**"])]).unwrap();
        assert_eq!(ok.select("pos", "pos/kiosk/x.csv").unwrap().name, "a");
        assert_eq!(ok.select("pos", "pos/x.csv").unwrap().name, "b");
        // Disjoint specific patterns, and catch-alls of different channels.
        catalog_of(&[
            spec_with_keys("pos", "a", &["*.csv", "csv/**"]),
            spec_with_keys("pos", "b", &["*.json", "json/**"]),
            spec_with_keys("pos", "c", &["**"]),
            spec_with_keys("web", "d", &["**"]),
        ])
        .unwrap();
        // The repository's own specs (ecommerce has a catch-all beside specific patterns).
        Catalog::embedded().unwrap();
    }

    /// A spec of `channel` named `name` producing `event_type` (or `types` through a map)
    /// with the natural key `key` and extra `[natural_key]` lines.
    fn keyed_spec(channel: &str, name: &str, keys: &str, event_type: &str, key: &[&str], extra: &str) -> (String, String) {
        let key = key.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", ");
        let text = format!(
            "channel = \"{channel}\"\nname = \"{name}\"\nkeys = [{keys}]\n[format]\nkind = \"csv\"\n[event_type]\n{event_type}\n\
             [natural_key]\nsources = [{key}]\n{extra}\n[fields]\noccurred_at = {{ source = \"d\", format = \"%d/%m/%Y\" }}\n"
        );
        (format!("channels/{channel}/{name}.toml"), text)
    }

    fn messages(result: Result<Catalog, Vec<SpecError>>) -> String {
        result.err().unwrap_or_default().iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn specs_that_could_give_one_id_to_different_rows_are_refused() {
        let purchase = "constant = \"store_purchase\"";
        // Two sources of one channel, one event type, keys of as many values from other
        // columns (and key patterns that do not even overlap): a receipt "R1" line 1 of one
        // and a pickup "R1" item 1 of the other would be one event.
        let errors = messages(catalog_of(&[
            keyed_spec("pos", "a", "\"tills/**\"", purchase, &["Ticket", "Ligne"], ""),
            keyed_spec("pos", "b", "\"pickups/**\"", purchase, &["Retrait", "Article"], ""),
        ]));
        assert!(
            errors.contains("channels/pos/b.toml: natural_key: could give the same event ids as channels/pos/a.toml to different rows")
                && errors.contains("store_purchase events with a natural key of 2 values")
                && errors.contains("natural_key.same_rows_as = [\"a\"]")
                && errors.contains("natural_key.scope"),
            "{errors}"
        );
        // The same columns are no proof of the same rows either.
        assert!(catalog_of(&[
            keyed_spec("pos", "a", "\"tills/**\"", purchase, &["Ticket", "Ligne"], ""),
            keyed_spec("pos", "b", "\"pickups/**\"", purchase, &["Ticket", "Ligne"], ""),
        ])
        .is_err());
        // A mapped type in common; a spec keeping unmapped types can produce any type.
        let mapped = "source = [\"T\"]\nmap = { V = \"store_purchase\", R = \"return\" }";
        let kept = "source = [\"T\"]\nunmapped = \"keep\"";
        assert!(messages(catalog_of(&[
            keyed_spec("pos", "a", "\"tills/**\"", mapped, &["Ticket", "Ligne"], ""),
            keyed_spec("pos", "b", "\"pickups/**\"", "constant = \"return\"", &["Retrait", "Article"], ""),
        ]))
        .contains("return events"));
        assert!(messages(catalog_of(&[
            keyed_spec("pos", "a", "\"tills/**\"", kept, &["Ticket", "Ligne"], ""),
            keyed_spec("pos", "b", "\"pickups/**\"", purchase, &["Retrait", "Article"], ""),
        ]))
        .contains("store_purchase events"));
        // A natural key of positions only gives line 2 of every file the same ids.
        let err = Spec::parse("f.toml", &keyed_spec("pos", "a", "\"**\"", purchase, &["$line"], "").1).unwrap_err();
        assert_eq!(err.field, "natural_key.sources", "{err}");
        assert!(err.message.contains("positions only"), "{err}");
    }

    #[test]
    fn specs_whose_ids_cannot_meet_or_that_say_so_are_accepted() {
        let purchase = "constant = \"store_purchase\"";
        let accepted = [
            // Other event types; other channels; keys of other lengths; no natural key
            // (ids from the file's content and line).
            vec![
                keyed_spec("pos", "a", "\"tills/**\"", purchase, &["Ticket", "Ligne"], ""),
                keyed_spec("pos", "b", "\"pickups/**\"", "constant = \"pickup\"", &["Retrait", "Article"], ""),
                keyed_spec("web", "c", "\"**\"", purchase, &["Retrait", "Article"], ""),
                keyed_spec("pos", "d", "\"kiosk/**\"", purchase, &["Magasin", "Ticket", "Ligne"], ""),
            ],
            // A new export format of the same source: same rows, same ids (transitively).
            vec![
                keyed_spec("pos", "a", "\"**\"", purchase, &["Ticket", "Ligne"], ""),
                keyed_spec("pos", "a2", "\"v2/**\"", purchase, &["receipt", "line"], "same_rows_as = [\"a\"]"),
                keyed_spec("pos", "a3", "\"v3/**\"", purchase, &["receipt_id", "line_no"], "same_rows_as = [\"a2\"]"),
            ],
            // Two sources kept apart by a scope.
            vec![
                keyed_spec("pos", "a", "\"tills/**\"", purchase, &["Ticket", "Ligne"], ""),
                keyed_spec("pos", "b", "\"pickups/**\"", purchase, &["Retrait", "Article"], "scope = \"pickups\""),
            ],
        ];
        for specs in accepted {
            catalog_of(&specs).unwrap_or_else(|e| panic!("{e:?}"));
        }
        let mut no_key = keyed_spec("pos", "b", "\"pickups/**\"", purchase, &["x"], "");
        no_key.1 = no_key.1.replace("[natural_key]\nsources = [\"x\"]\n", "");
        catalog_of(&[keyed_spec("pos", "a", "\"tills/**\"", purchase, &["Ticket"], ""), no_key]).unwrap();

        // same_rows_as must name a spec of the channel whose key can give the same ids.
        let errors = messages(catalog_of(&[
            keyed_spec("pos", "a", "\"**\"", purchase, &["Ticket", "Ligne"], ""),
            keyed_spec("pos", "a2", "\"v2/**\"", purchase, &["receipt"], "same_rows_as = [\"a\"]"),
            keyed_spec("pos", "a3", "\"v3/**\"", purchase, &["receipt", "line"], "same_rows_as = [\"zz\"]"),
        ]));
        assert!(
            errors.contains(
                "channels/pos/a2.toml: natural_key.same_rows_as: \"a\" (channels/pos/a.toml) has a natural key of 2 source(s), this spec 1"
            ),
            "{errors}"
        );
        assert!(errors.contains("channels/pos/a3.toml: natural_key.same_rows_as: no spec of channel pos is named \"zz\""), "{errors}");
        // ... and then a3 is refused for what it could collide with.
        assert!(errors.contains("channels/pos/a3.toml: natural_key: could give the same event ids as channels/pos/a.toml"), "{errors}");
    }

    #[test]
    fn optional_fields_are_declared_coherently() {
        let spec =
            Spec::parse("f.toml", &base("sku = { source = \"s\", optional = true }\ncurrency = { source = \"c\", default = \"EUR\" }"))
                .unwrap();
        let optional: Vec<(&str, bool)> = spec.fields.iter().map(|f| (f.canon.name(), f.optional)).collect();
        assert!(optional.contains(&("sku", true)) && optional.contains(&("currency", true)) && optional.contains(&("occurred_at", false)));
        assert_eq!(spec.required_columns(), BTreeSet::from(["d".to_string()]));

        let cases = [
            ("sku = { constant = \"x\", optional = true }", "fields.sku.optional", "constant"),
            ("sku = { source = \"s\", optional = true, required = true }", "fields.sku.optional", "both optional"),
        ];
        for (fields, field, message) in cases {
            let err = Spec::parse("f.toml", &base(fields)).unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.message.contains(message), "{err}");
        }
        let err =
            Spec::parse("f.toml", &base("").replace("format = \"%d/%m/%Y\" }", "format = \"%d/%m/%Y\", optional = true }")).unwrap_err();
        assert_eq!(err.field, "fields.occurred_at.optional", "{err}");
        let err = Spec::parse(
            "f.toml",
            &base("sku = { source = \"s\", optional = true }").replace("constant = \"x\"", "constant = \"x\"\nrequire = { x = [\"sku\"] }"),
        )
        .unwrap_err();
        assert_eq!(err.field, "event_type.require.x", "{err}");
        assert!(err.message.contains("optional"), "{err}");
        // With a default, the event type always has its value.
        Spec::parse(
            "f.toml",
            &base("sku = { source = \"s\", default = \"none\" }")
                .replace("constant = \"x\"", "constant = \"x\"\nrequire = { x = [\"sku\"] }"),
        )
        .unwrap();

        // A column read by a required use stays required, whatever optional field reads it too.
        let spec = Spec::parse(
            "f.toml",
            &base(
                "sku = { source = \"s\", optional = true }\norder_id = { source = \"s\" }\nstore_id = { source = \"m\", optional = true }",
            ),
        )
        .unwrap();
        assert_eq!(spec.required_columns(), BTreeSet::from(["d".to_string(), "s".to_string()]));
    }

    #[test]
    fn a_headerless_csv_lists_every_column_it_reads() {
        let text = base("sku = { source = \"s\", optional = true }")
            .replace("kind = \"csv\"", "kind = \"csv\"\nheader = false\ncolumns = [\"d\"]");
        let err = Spec::parse("f.toml", &text).unwrap_err();
        assert_eq!(err.field, "format.columns", "{err}");
        assert!(err.message.contains("\"s\""), "{err}");
        Spec::parse("f.toml", &text.replace("columns = [\"d\"]", "columns = [\"d\", \"S\"]")).unwrap();
    }

    #[test]
    fn time_formats_need_a_date() {
        assert!(parse_time_format("%H:%M").is_err());
        assert!(matches!(parse_time_format("%d/%m/%Y %H:%M"), Ok(TimeFormat::Pattern { offset: false, .. })));
        assert!(matches!(parse_time_format("%Y-%m-%d %H:%M:%S %z"), Ok(TimeFormat::Pattern { offset: true, .. })));
    }

    #[test]
    fn json_paths() {
        assert_eq!(
            parse_path("event_params[key=email].value.string_value").unwrap(),
            vec![
                PathStep::Member("event_params".into()),
                PathStep::Find { key: "key".into(), value: "email".into() },
                PathStep::Member("value".into()),
                PathStep::Member("string_value".into()),
            ]
        );
        assert_eq!(parse_path("items[0].sku").unwrap()[1], PathStep::Index(0));
        assert_eq!(parse_path("items[x").unwrap_err().to_string(), r#""items[x": unclosed ["#);
        assert_eq!(parse_path("a..b").unwrap_err(), PathError::EmptySegment { path: "a..b".into() });
        assert_eq!(parse_path("items[x]").unwrap_err().to_string(), r#""items[x]": [x] is neither an index nor key=value"#);
    }
}
