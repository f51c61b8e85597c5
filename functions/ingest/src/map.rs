//! Mapping one source row to a canonical event and an identity observation, as its spec
//! says. Pure: a row and a spec in, an event or a reason out.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use ariane_shared::identifiers::{
    identifier_hash, identity_key, keyed_id, normalize_email, normalize_token, Identifier, IdentifierError, IdentifierKind, PhoneNormalizer,
};
use ariane_shared::model::{Activity, CanonicalEvent, Consent, ConsentChannel, LocalTime, Observation, Traits, ACTIVITY_EVENTS};
use chrono::{DateTime, Utc};

use crate::fxhash::{FxHasher, FxMap, FxSet};
use crate::source::{CellError, Row};
use crate::spec::{Canon, Compute, FieldPlan, Kind, Meta, Source, Spec, Unmapped};
use crate::values::{
    apply_transforms, parse_amount, parse_bool, parse_consent_channel, parse_integer, parse_time_flagged, TimeFormat, ValueError,
};

/// Why a row is rejected: the text of the rejects table's `reason` column.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error(transparent)]
    Cell(#[from] CellError),
    #[error("{label} is blank")]
    Blank { label: String },
    #[error("{label}: {value:?} is not one of {known:?}")]
    NotInMap { label: String, value: String, known: Vec<String> },
    #[error("{label}: {source}")]
    Invalid {
        label: String,
        #[source]
        source: ValueError,
    },
    #[error("{label}: {source}")]
    Identifier {
        label: String,
        #[source]
        source: IdentifierError,
    },
    #[error("{label}: overflows")]
    Overflow { label: String },
    #[error("{label}: {value} is below the minimum {min}")]
    BelowMinimum { label: String, value: i64, min: i64 },
    #[error("{label}: {value} is below the minimum")]
    AmountBelowMinimum { label: String, value: String },
    #[error("event type is blank ({sources})")]
    BlankEventType { sources: String },
    #[error("event type {key:?} ({sources}) has no letters or digits")]
    EventTypeWithoutLetters { key: String, sources: String },
    #[error("unknown event type {key:?} in {sources} (expected one of {known:?})")]
    UnknownEventType { key: String, sources: String, known: Vec<String> },
    #[error("{event_type} needs {}: blank", .missing.join(", "))]
    MissingForEventType { event_type: String, missing: Vec<String> },
    #[error("{event_type} states a consent but consent_channel is blank")]
    NoConsentChannel { event_type: String },
    #[error("fill-down key ({sources}) is blank")]
    BlankFillDownKey { sources: String },
}

/// Where a row sits in its file.
#[derive(Clone, Copy, Debug)]
pub struct RowMeta {
    pub line: u64,
    pub row: u64,
    pub group_row: u64,
}

/// The file a row comes from.
#[derive(Clone, Debug)]
pub struct FileContext {
    pub source_key: String,
    /// Content fingerprint: identifies rows when the spec has no natural key.
    pub fingerprint: String,
}

/// A mapped row.
#[derive(Debug)]
pub struct Mapped {
    pub event: CanonicalEvent,
    pub observation: Option<Observation>,
    /// Optional identifiers present but unusable (kept as an event without them).
    pub identifier_warnings: u32,
}

/// Per-file mapping state: caches of normalised phones and identifier hashes, and the
/// observations already sent.
#[derive(Default)]
pub struct Mapper {
    phones: PhoneNormalizer,
    hashes: HashMap<u8, FxMap<String, String>>,
    /// The last instant parsed per timestamp field (continuation rows repeat it).
    last_time: HashMap<Canon, (String, DateTime<Utc>, Option<LocalTime>)>,
    /// The last identifier set and its identity key (a receipt's lines repeat it).
    last_anchor: Option<(Vec<Identifier>, Option<String>)>,
    seen: FxSet<u64>,
    /// Events of [`ACTIVITY_EVENTS`] that occurred at or after this instant travel with
    /// their row's observation as [`Activity`] (`None`: none does).
    pub activity_since: Option<DateTime<Utc>>,
}

/// Distinct observations remembered per file before the memory is reset (duplicates
/// after a reset are harmless: identity is idempotent).
const SEEN_OBSERVATIONS: usize = 1 << 20;

const HASH_CACHE: usize = 20_000;

/// A value read for a field, before typing.
fn read_source<'r>(row: &'r dyn Row, meta: &RowMeta, source: &Source) -> Result<Option<Cow<'r, str>>, CellError> {
    match source {
        Source::Meta(Meta::Line) => Ok(Some(Cow::Owned(meta.line.to_string()))),
        Source::Meta(Meta::Row) => Ok(Some(Cow::Owned(meta.row.to_string()))),
        Source::Meta(Meta::GroupRow) => Ok(Some(Cow::Owned(meta.group_row.to_string()))),
        other => row.value(other),
    }
}

#[derive(Default)]
struct Draft {
    filled: u64,
    occurred_at: Option<DateTime<Utc>>,
    /// How occurred_at's local time was resolved (daylight saving changes).
    local_time: Option<LocalTime>,
    consent_at: Option<DateTime<Utc>>,
    order_id: Option<String>,
    sku: Option<String>,
    product_name: Option<String>,
    category: Option<String>,
    quantity: Option<i64>,
    unit_price_minor: Option<i64>,
    line_total_minor: Option<i64>,
    order_total_minor: Option<i64>,
    currency: Option<String>,
    store_id: Option<String>,
    campaign_id: Option<String>,
    page_url: Option<String>,
    consent_channel: Option<ConsentChannel>,
    email: Option<String>,
    phone: Option<String>,
    identifiers: Vec<Identifier>,
    traits: Traits,
    full_name: Option<String>,
    opt_ins: Vec<(ConsentChannel, bool)>,
    warnings: u32,
}

impl Draft {
    fn mark(&mut self, c: Canon) {
        self.filled |= 1 << (c as u64);
    }

    fn has(&self, c: Canon) -> bool {
        self.filled & (1 << (c as u64)) != 0
    }
}

fn sanitize_event_type(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

impl Mapper {
    /// A mapper that attaches the [`ACTIVITY_EVENTS`] at or after `since` to observations.
    pub fn with_activity_since(since: DateTime<Utc>) -> Mapper {
        Mapper { activity_since: Some(since), ..Mapper::default() }
    }

    /// The raw (transformed, mapped) text of a field, or `None` when blank.
    fn text<'r>(&self, plan: &'r FieldPlan, row: &'r dyn Row, meta: &RowMeta) -> Result<Option<Cow<'r, str>>, RowError> {
        let value: Option<Cow<'r, str>> = if let Some(c) = &plan.constant {
            Some(Cow::Borrowed(c.as_str()))
        } else if plan.sources.len() == 1 {
            read_source(row, meta, &plan.sources[0])?
        } else {
            let mut parts = Vec::with_capacity(plan.sources.len());
            for s in &plan.sources {
                if let Some(v) = read_source(row, meta, s)? {
                    parts.push(v.into_owned());
                }
            }
            (!parts.is_empty()).then(|| Cow::Owned(parts.join(&plan.join)))
        };
        let Some(value) = value else {
            return Ok(plan.default.as_deref().map(Cow::Borrowed));
        };
        let value = apply_transforms(value, &plan.transforms);
        if value.is_empty() {
            return Ok(plan.default.as_deref().map(Cow::Borrowed));
        }
        let Some(map) = &plan.map else {
            return Ok(Some(value));
        };
        match map.get(value.as_ref()) {
            Some(mapped) => Ok(Some(Cow::Borrowed(mapped.as_str()))),
            None => match plan.unmapped {
                Unmapped::Keep => Ok(Some(value)),
                Unmapped::Null => Ok(None),
                Unmapped::Reject => {
                    let mut known: Vec<String> = map.keys().cloned().collect();
                    known.sort();
                    Err(RowError::NotInMap { label: plan.label(), value: value.into_owned(), known })
                }
            },
        }
    }

    fn hash(&mut self, tag: u8, value: &str, f: impl FnOnce(&str) -> String) -> String {
        let cache = self.hashes.entry(tag).or_default();
        if let Some(h) = cache.get(value) {
            return h.clone();
        }
        let h = f(value);
        if cache.len() >= HASH_CACHE {
            cache.clear();
        }
        cache.insert(value.to_string(), h.clone());
        h
    }

    fn event_type(&self, spec: &Spec, row: &dyn Row, meta: &RowMeta) -> Result<String, RowError> {
        let rule = &spec.event_type;
        if let Some(c) = &rule.constant {
            return Ok(c.clone());
        }
        let mut key = String::new();
        for (i, s) in rule.sources.iter().enumerate() {
            if i > 0 {
                key.push('|');
            }
            if let Some(v) = read_source(row, meta, s)? {
                key.push_str(&apply_transforms(v, &rule.transforms));
            }
        }
        if let Some(t) = rule.map.get(&key) {
            return Ok(t.clone());
        }
        let sources = || rule.sources.iter().map(Source::label).collect::<Vec<_>>().join(" + ");
        if key.chars().all(|c| c == '|') {
            return Err(RowError::BlankEventType { sources: sources() });
        }
        match rule.unmapped {
            Unmapped::Keep => {
                let t = sanitize_event_type(&key);
                if t.is_empty() {
                    Err(RowError::EventTypeWithoutLetters { key, sources: sources() })
                } else {
                    Ok(t)
                }
            }
            _ => {
                let mut known: Vec<String> = rule.map.keys().cloned().collect();
                known.sort();
                Err(RowError::UnknownEventType { key, sources: sources(), known })
            }
        }
    }

    fn field(&mut self, plan: &FieldPlan, row: &dyn Row, meta: &RowMeta, d: &mut Draft) -> Result<(), RowError> {
        let label = || plan.label();
        let bad = |source: ValueError| RowError::Invalid { label: plan.label(), source };
        if let Some(Compute::Multiply) = plan.compute {
            let amount = read_source(row, meta, &plan.sources[0])?;
            let quantity = read_source(row, meta, &plan.sources[1])?;
            if let (Some(a), Some(q)) = (amount, quantity) {
                let a = parse_amount(&a, plan.decimal).map_err(bad)?;
                let q = parse_integer(&q).map_err(bad)?;
                d.line_total_minor = Some(a.checked_mul(q).ok_or_else(|| RowError::Overflow { label: label() })?);
                d.mark(plan.canon);
            } else if plan.required {
                return Err(RowError::Blank { label: label() });
            }
            return Ok(());
        }
        let Some(value) = self.text(plan, row, meta)? else {
            if plan.required {
                return Err(RowError::Blank { label: label() });
            }
            return Ok(());
        };
        // An unusable identifier rejects the row when the field is required; otherwise the
        // row is kept without it and counted as a warning.
        let unusable = |d: &mut Draft, source: IdentifierError| {
            if plan.required {
                Err(RowError::Identifier { label: plan.label(), source })
            } else {
                d.warnings += 1;
                Ok(())
            }
        };
        let v = value.as_ref();
        match plan.canon.kind() {
            Kind::Timestamp => {
                let (t, local) = match self.last_time.get(&plan.canon) {
                    Some((raw, t, local)) if raw == v => (*t, *local),
                    _ => {
                        let (t, local) =
                            parse_time_flagged(v, plan.time.as_ref().unwrap_or(&TimeFormat::Rfc3339), plan.time_zone).map_err(bad)?;
                        self.last_time.insert(plan.canon, (v.to_string(), t, local));
                        (t, local)
                    }
                };
                match plan.canon {
                    Canon::ConsentAt => d.consent_at = Some(t),
                    _ => {
                        d.occurred_at = Some(t);
                        d.local_time = local;
                    }
                }
            }
            Kind::Integer => {
                let n = parse_integer(v).map_err(bad)?;
                if let Some(min) = plan.min.filter(|m| n < *m) {
                    return Err(RowError::BelowMinimum { label: label(), value: n, min });
                }
                d.quantity = Some(n);
            }
            Kind::Amount => {
                let a = parse_amount(v, plan.decimal).map_err(bad)?;
                if plan.min.is_some_and(|m| a < m) {
                    return Err(RowError::AmountBelowMinimum { label: label(), value: v.to_string() });
                }
                match plan.canon {
                    Canon::UnitPriceMinor => d.unit_price_minor = Some(a),
                    Canon::LineTotalMinor => d.line_total_minor = Some(a),
                    _ => d.order_total_minor = Some(a),
                }
            }
            Kind::Email => match normalize_email(v) {
                Ok(e) => d.email = Some(e),
                Err(e) => return unusable(d, e),
            },
            Kind::Phone => match self.phones.normalize(v, plan.phone_region) {
                Some(p) => d.phone = Some(p),
                None => return unusable(d, IdentifierError::invalid_phone(v)),
            },
            Kind::Identifier(kind) => match normalize_token(kind, v) {
                Ok(t) => d.identifiers.push(Identifier::new(kind, t)),
                Err(e) => return unusable(d, e),
            },
            Kind::Trait => {
                let v = Some(v.to_string());
                match plan.canon {
                    Canon::FirstName => d.traits.first_name = v,
                    Canon::LastName => d.traits.last_name = v,
                    Canon::FullName => d.full_name = v,
                    Canon::Street => d.traits.street = v,
                    Canon::PostalCode => d.traits.postal_code = v,
                    Canon::City => d.traits.city = v,
                    _ => d.traits.country = v,
                }
            }
            Kind::ConsentChannel => d.consent_channel = Some(parse_consent_channel(v).map_err(bad)?),
            Kind::OptIn(channel) => d.opt_ins.push((channel, parse_bool(v).map_err(bad)?)),
            Kind::Text => {
                let v = Some(value.into_owned());
                match plan.canon {
                    Canon::OrderId => d.order_id = v,
                    Canon::Sku => d.sku = v,
                    Canon::ProductName => d.product_name = v,
                    Canon::Category => d.category = v,
                    Canon::Currency => d.currency = v,
                    Canon::StoreId => d.store_id = v,
                    Canon::CampaignId => d.campaign_id = v,
                    _ => d.page_url = v.map(|url| strip_url(&url, &plan.keep_query)),
                }
            }
        }
        d.mark(plan.canon);
        Ok(())
    }

    /// Maps one row; `Err` is the reason the row is rejected.
    pub fn map(&mut self, spec: &Spec, row: &dyn Row, meta: RowMeta, file: &FileContext) -> Result<Mapped, RowError> {
        let event_type = self.event_type(spec, row, &meta)?;
        let mut d = Draft::default();
        for plan in &spec.fields {
            self.field(plan, row, &meta, &mut d)?;
        }
        let occurred_at = d.occurred_at.ok_or_else(|| RowError::Blank {
            label: spec.field(Canon::OccurredAt).map(FieldPlan::label).unwrap_or_else(|| "occurred_at".into()),
        })?;
        if let Some(required) = spec.event_type.require.get(&event_type) {
            let missing: Vec<String> = required
                .iter()
                .filter(|c| !d.has(**c))
                .map(|c| spec.field(*c).map(FieldPlan::label).unwrap_or_else(|| c.name().to_string()))
                .collect();
            if !missing.is_empty() {
                return Err(RowError::MissingForEventType { event_type, missing });
            }
        }

        // Consents stated by the row.
        let consent_at = d.consent_at.unwrap_or(occurred_at);
        let mut consents: Vec<Consent> =
            d.opt_ins.iter().map(|(channel, granted)| Consent { channel: *channel, granted: *granted, at: consent_at }).collect();
        if let Some(rule) = spec.consents.get(&event_type) {
            let channel =
                rule.channel.or(d.consent_channel).ok_or_else(|| RowError::NoConsentChannel { event_type: event_type.clone() })?;
            consents.push(Consent { channel, granted: rule.granted, at: consent_at });
        }

        // Identifiers, most trusted first; their identity key anchors the event.
        let mut identifiers = std::mem::take(&mut d.identifiers);
        if let Some(e) = &d.email {
            identifiers.push(Identifier::new(IdentifierKind::Email, e.clone()));
        }
        if let Some(p) = &d.phone {
            identifiers.push(Identifier::new(IdentifierKind::Phone, p.clone()));
        }
        identifiers.sort_by(|a, b| a.kind.cmp(&b.kind).then_with(|| a.value.cmp(&b.value)));
        identifiers.dedup();
        let anchor_id = match &self.last_anchor {
            Some((last, key)) if *last == identifiers => key.clone(),
            _ => {
                let key = identity_key(&identifiers);
                self.last_anchor = Some((identifiers.clone(), key.clone()));
                key
            }
        };
        let email_hash = d.email.as_deref().map(|e| self.hash(200, e, |v| identifier_hash(IdentifierKind::Email, v)));
        let phone_hash = d.phone.as_deref().map(|p| self.hash(201, p, |v| identifier_hash(IdentifierKind::Phone, v)));

        if let Some(full) = d.full_name.take() {
            let (first, last) = match full.split_once(char::is_whitespace) {
                Some((f, l)) => (f.trim().to_string(), Some(l.trim().to_string()).filter(|l| !l.is_empty())),
                None => (full.clone(), None),
            };
            d.traits.first_name.get_or_insert(first);
            if let Some(last) = last {
                d.traits.last_name.get_or_insert(last);
            }
        }

        let key_parts = natural_key_parts(spec, row, &meta, file)?;
        let id_of = |kind: &str| row_id(kind, &spec.channel, &event_type, &key_parts);

        // Recent activity a real-time campaign may react to travels with the observation
        // (once per person, event type and minute: a receipt's lines are one purchase).
        let activity = (!identifiers.is_empty()
            && self.activity_since.is_some_and(|since| occurred_at >= since)
            && ACTIVITY_EVENTS.contains(&event_type.as_str()))
        .then(|| {
            let mut h = FxHasher::default();
            ("activity", &identifiers, &event_type, occurred_at.timestamp() / 60).hash(&mut h);
            h.finish()
        })
        .filter(|h| {
            if self.seen.len() >= SEEN_OBSERVATIONS {
                self.seen.clear();
            }
            self.seen.insert(*h)
        })
        .map(|_| {
            let attributes: BTreeMap<String, String> = [("sku", &d.sku), ("product_name", &d.product_name), ("category", &d.category)]
                .into_iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_string(), v.clone())))
                .collect();
            Activity { event_id: id_of("event"), event_type: event_type.clone(), occurred_at, attributes }
        });
        // Identical observations within a file are sent once: decide before building.
        let new_observation = !identifiers.is_empty() && {
            let mut h = FxHasher::default();
            identifiers.hash(&mut h);
            d.traits.hash(&mut h);
            consents.hash(&mut h);
            if self.seen.len() >= SEEN_OBSERVATIONS {
                self.seen.clear();
            }
            self.seen.insert(h.finish())
        } || activity.is_some();
        let observation = new_observation.then(|| Observation {
            observation_id: id_of("observation"),
            channel: spec.channel.clone(),
            source_key: file.source_key.clone(),
            source_line: meta.line,
            observed_at: occurred_at,
            identifiers,
            traits: std::mem::take(&mut d.traits),
            consents,
            activity: activity.into_iter().collect(),
        });
        let event = CanonicalEvent {
            event_id: id_of("event"),
            channel: spec.channel.clone(),
            event_type,
            occurred_at,
            anchor_id,
            email_hash,
            phone_hash,
            order_id: d.order_id,
            sku: d.sku,
            product_name: d.product_name,
            category: d.category,
            quantity: d.quantity,
            unit_price_minor: d.unit_price_minor,
            line_total_minor: d.line_total_minor,
            order_total_minor: d.order_total_minor,
            currency: d.currency,
            store_id: d.store_id,
            campaign_id: d.campaign_id,
            page_url: d.page_url,
            consent_channel: d.consent_channel.map(|c| c.as_str().to_string()),
            source_key: file.source_key.clone(),
            source_line: meta.line,
            local_time: d.local_time,
        };
        Ok(Mapped { event, observation, identifier_warnings: d.warnings })
    }
}

/// What identifies a row: `["key", <natural key values>...]` (`"key:<scope>"` with a
/// `natural_key.scope`), or, for a spec without a natural key, `["content", <file
/// fingerprint>, <line>]` (the fingerprint derives from the file's content, so the same
/// file gives the same ids whatever the spec or the landing key). The marker keeps a
/// natural key's values from ever equalling a content position.
fn natural_key_parts<'r>(spec: &Spec, row: &'r dyn Row, meta: &RowMeta, file: &'r FileContext) -> Result<Vec<Cow<'r, str>>, RowError> {
    if spec.natural_key.is_empty() {
        return Ok(vec![Cow::Borrowed("content"), Cow::Borrowed(file.fingerprint.as_str()), Cow::Owned(meta.line.to_string())]);
    }
    let mut parts = Vec::with_capacity(spec.natural_key.len() + 1);
    parts.push(match &spec.natural_key_scope {
        Some(scope) => Cow::Owned(format!("key:{scope}")),
        None => Cow::Borrowed("key"),
    });
    for s in &spec.natural_key {
        parts.push(read_source(row, meta, s)?.unwrap_or_default());
    }
    Ok(parts)
}

/// The id of a row's event or observation (`kind`): a keyed hash ([`keyed_id`], under the
/// deployment's pepper) of the channel, the event type and what identifies the row
/// ([`natural_key_parts`]). Keyed because a natural key can hold personal data (the e-mail
/// activity's holds the address): the lake's ids cannot be recomputed, nor reversed by
/// hashing candidate values, without the pepper. Not the spec: a new spec for the same
/// source (a vendor's new export format) keeps the ids of the rows it reads again, and the
/// catalog refuses two specs that could give one id to different rows
/// (`spec::id_collision`).
pub fn row_id(kind: &str, channel: &str, event_type: &str, key_parts: &[impl AsRef<str>]) -> String {
    keyed_id([kind, channel, event_type].into_iter().chain(key_parts.iter().map(AsRef::as_ref)))
}

pub use ariane_shared::urls::strip_url;

#[cfg(test)]
mod tests {
    use super::strip_url;

    #[test]
    fn urls_keep_only_the_named_query_parameters() {
        let keep = vec!["utm_source".to_string(), "utm_campaign".to_string()];
        let cases = [
            (
                "https://shop.fr/p/1?utm_source=nl&email=marie%40x.fr&utm_campaign=bf#top",
                "https://shop.fr/p/1?utm_source=nl&utm_campaign=bf",
            ),
            ("https://shop.fr/reset?token=abc123", "https://shop.fr/reset"),
            ("https://user:secret@shop.fr/a?x=1", "https://shop.fr/a"),
            ("https://shop.fr/a@b", "https://shop.fr/a@b"),
            ("https://shop.fr/", "https://shop.fr/"),
            ("/relative/path?utm_source=sms&phone=0612345678", "/relative/path?utm_source=sms"),
            ("https://shop.fr/?utm_source", "https://shop.fr/?utm_source"),
            ("https://shop.fr/?UTM_SOURCE=x", "https://shop.fr/"),
        ];
        for (url, want) in cases {
            assert_eq!(strip_url(url, &keep), want, "{url}");
        }
        assert_eq!(strip_url::<&str>("https://shop.fr/p?utm_source=nl", &[]), "https://shop.fr/p", "nothing kept by default");
    }
}
