//! The canonical data model: what flows between the functions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::identifiers::Identifier;

/// Channels whose exports land in the landing bucket, one key prefix each. `costs` is not a
/// channel customers use: it holds the spend files (what each channel and campaign cost),
/// rows without a person.
pub const CHANNELS: &[&str] = &["pos", "ecommerce", "web", "email", "sms", "app", "crm", "costs"];

/// A canonical event: one normalised fact from one source row. Personal data never
/// appears here: identifiers are hashed (see [`crate::identifiers::identifier_hash`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanonicalEvent {
    /// Deterministic: the same source row always gives the same id.
    pub event_id: String,
    pub channel: String,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    /// Identity key of the row (hash of its whole identifier set); joins the event to its profile
    /// through the identity links.
    pub anchor_id: Option<String>,
    /// SHA-256 of the normalised email / E.164 phone (ad-platform form).
    pub email_hash: Option<String>,
    pub phone_hash: Option<String>,
    pub order_id: Option<String>,
    pub sku: Option<String>,
    pub product_name: Option<String>,
    pub category: Option<String>,
    pub quantity: Option<i64>,
    /// Amounts in minor units (cents): exact, never floats.
    pub unit_price_minor: Option<i64>,
    pub line_total_minor: Option<i64>,
    pub order_total_minor: Option<i64>,
    pub currency: Option<String>,
    pub store_id: Option<String>,
    pub campaign_id: Option<String>,
    pub page_url: Option<String>,
    /// `email` / `sms` / `push` on consent events.
    pub consent_channel: Option<String>,
    pub source_key: String,
    pub source_line: u64,
    /// How `occurred_at` was read when the source wrote a local time that the clock
    /// never showed (spring gap: [`LocalTime::Shifted`]) or showed twice (autumn
    /// overlap: [`LocalTime::Ambiguous`]); `None` for every other row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_time: Option<LocalTime>,
}

/// A local wall-clock time that does not name one instant (the lake's `local_time`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalTime {
    /// Inside the spring gap (02:30 on the night the clocks go forward): read with the
    /// offset in force before the change, i.e. shifted forward by the gap.
    Shifted,
    /// Inside the autumn overlap (02:30 happens twice): the first occurrence was taken.
    Ambiguous,
}

impl LocalTime {
    /// The lake's value: `shifted` or `ambiguous`.
    pub fn as_str(self) -> &'static str {
        match self {
            LocalTime::Shifted => "shifted",
            LocalTime::Ambiguous => "ambiguous",
        }
    }
}

impl CanonicalEvent {
    /// The `event_date` partition (UTC day).
    pub fn event_date(&self) -> String {
        use chrono::Datelike;
        let day = self.occurred_at.date_naive();
        match day.year() {
            // What `%Y-%m-%d` writes, without reading the pattern for every event.
            year @ 0..=9999 => format!("{year:04}-{:02}-{:02}", day.month(), day.day()),
            _ => self.occurred_at.format("%Y-%m-%d").to_string(),
        }
    }
}

/// A row that could not become an event, kept with its reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RejectedRow {
    pub channel: String,
    pub source_key: String,
    pub line: u64,
    pub reason: String,
    pub raw: String,
}

/// Traits a source row tells about a person (personal data: DynamoDB only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Traits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// ISO 3166 alpha-2 when the source says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl Traits {
    pub fn is_empty(&self) -> bool {
        *self == Traits::default()
    }
}

/// Channels a person can consent to be contacted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentChannel {
    Email,
    Sms,
    Push,
    /// Advertising: retargeting audiences (customer-match uploads, paid social).
    Ads,
}

impl ConsentChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentChannel::Email => "email",
            ConsentChannel::Sms => "sms",
            ConsentChannel::Push => "push",
            ConsentChannel::Ads => "ads",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "email" | "e-mail" => Some(ConsentChannel::Email),
            "sms" => Some(ConsentChannel::Sms),
            "push" => Some(ConsentChannel::Push),
            "ads" | "advertising" => Some(ConsentChannel::Ads),
            _ => None,
        }
    }
}

/// A consent given or withdrawn on one channel at a point in time.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Consent {
    pub channel: ConsentChannel,
    pub granted: bool,
    pub at: DateTime<Utc>,
}

/// The identifiers and traits of one source row, sent by ingest to identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Deterministic (channel + natural key), so redelivery is recognisable.
    pub observation_id: String,
    pub channel: String,
    pub source_key: String,
    pub source_line: u64,
    pub observed_at: DateTime<Utc>,
    pub identifiers: Vec<Identifier>,
    #[serde(default)]
    pub traits: Traits,
    /// Consents stated on the row (an opt-in column, an unsubscribe, a STOP, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consents: Vec<Consent>,
    /// Recent activity of the row that real-time campaigns react to (an event type of
    /// [`ACTIVITY_EVENTS`] that happened within [`ACTIVITY_WINDOW`] of its ingestion):
    /// identity forwards it to activation with the person's profile id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activity: Vec<Activity>,
}

/// The event types real-time campaigns can be triggered by or stopped by (a campaign's
/// `trigger.event` and `trigger.unless` must be among them): carts, checkouts and the
/// purchases of every channel. Page views and e-mail activity are not forwarded (their
/// volume would cost more than any campaign on them earns).
pub const ACTIVITY_EVENTS: &[&str] =
    &["add_to_cart", "cart_add", "checkout_started", "checkout_completed", "order_line", "store_purchase", "in_app_purchase"];

/// How old an event may be when ingested and still be forwarded as activity: a back-fill
/// of last month's receipts triggers nothing, a file exported every few hours still stops
/// the cart reminders of the people who bought in store.
pub const ACTIVITY_WINDOW: chrono::Duration = chrono::Duration::hours(48);

/// One event a real-time campaign may react to, as ingest saw it (no personal data:
/// `attributes` holds product fields only).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Activity {
    /// The canonical event's id (the same row always gives the same id).
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    /// `sku`, `product_name`, `category` when the row has them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// An [`Activity`] resolved to its person: what identity puts on the activation queue
/// (`{"activity": {...}}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileActivity {
    pub profile_id: ProfileId,
    pub channel: String,
    pub event_id: String,
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl Observation {
    /// The latest email consent stated by this observation, if any.
    pub fn email_opt_in(&self) -> Option<bool> {
        self.consents.iter().filter(|c| c.channel == ConsentChannel::Email).max_by_key(|c| c.at).map(|c| c.granted)
    }
}

/// An SQS message body carrying several observations (fewer, larger messages).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObservationBatch {
    pub observations: Vec<Observation>,
}

/// Observations per identity message: keeps messages far below the 256 KB SQS limit.
pub const OBSERVATIONS_PER_MESSAGE: usize = 25;

/// A profile id (`p_` + 24 hex chars).
pub type ProfileId = String;

/// Entered or exited a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentChange {
    Entered,
    Exited,
}

impl SegmentChange {
    pub fn as_str(self) -> &'static str {
        match self {
            SegmentChange::Entered => "entered",
            SegmentChange::Exited => "exited",
        }
    }
}

/// One member of a segment in one run, with the payload columns of the segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMember {
    pub profile_id: ProfileId,
    /// The segment's key columns (`-- key:`), part of the membership: a profile whose
    /// key changes exits with the old key and enters with the new one.
    #[serde(default)]
    pub key: BTreeMap<String, String>,
    pub payload: BTreeMap<String, String>,
}

/// A message from segments to activation: a profile entered or exited a segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationRequest {
    pub segment: String,
    pub run_id: String,
    pub run_at: DateTime<Utc>,
    pub profile_id: ProfileId,
    pub change: SegmentChange,
    /// The membership's key columns (empty for segments without `-- key:`).
    #[serde(default)]
    pub key: BTreeMap<String, String>,
    #[serde(default)]
    pub payload: BTreeMap<String, String>,
    /// Profile attributes the run knew (segments declared with `-- attribute:`, such as
    /// `preferred_channel`), for channel choice. Not part of the idempotency key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl ActivationRequest {
    /// The idempotency key of the effect this request asks for: the same segment change
    /// of the same run for the same profile (and key) is one send, however often it is
    /// delivered.
    pub fn idempotency_key(&self) -> String {
        let mut parts: Vec<&str> = vec!["segment-change", &self.segment, &self.run_id, &self.profile_id, self.change.as_str()];
        for (k, v) in &self.key {
            parts.push(k);
            parts.push(v);
        }
        crate::identifiers::stable_id(&parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_key_is_stable_and_specific() {
        let r = ActivationRequest {
            segment: "reactivation".into(),
            run_id: "20261123T000000Z".into(),
            run_at: Utc::now(),
            profile_id: "p_1".into(),
            change: SegmentChange::Entered,
            key: BTreeMap::new(),
            payload: BTreeMap::new(),
            attributes: BTreeMap::new(),
        };
        let mut other = r.clone();
        other.payload.insert("x".into(), "y".into());
        other.run_at = Utc::now() + chrono::Duration::seconds(5);
        assert_eq!(r.idempotency_key(), other.idempotency_key());
        other.change = SegmentChange::Exited;
        assert_ne!(r.idempotency_key(), other.idempotency_key());
    }

    #[test]
    fn consent_channels_parse_and_print() {
        for (text, channel) in [
            ("E-mail", ConsentChannel::Email),
            ("SMS", ConsentChannel::Sms),
            ("push", ConsentChannel::Push),
            ("Ads", ConsentChannel::Ads),
            ("advertising", ConsentChannel::Ads),
        ] {
            assert_eq!(ConsentChannel::parse(text), Some(channel), "{text}");
            assert_eq!(ConsentChannel::parse(channel.as_str()), Some(channel));
        }
        assert_eq!(ConsentChannel::parse("fax"), None);
        assert_eq!(serde_json::to_string(&ConsentChannel::Ads).unwrap(), "\"ads\"");
    }

    #[test]
    fn observation_round_trips_as_json() {
        let o = Observation {
            observation_id: "o1".into(),
            channel: "ecommerce".into(),
            source_key: "ecommerce/a.csv".into(),
            source_line: 2,
            observed_at: Utc::now(),
            identifiers: vec![Identifier::new(crate::identifiers::IdentifierKind::Email, "a@b.fr")],
            traits: Traits { first_name: Some("Hélène".into()), ..Default::default() },
            consents: vec![Consent { channel: ConsentChannel::Email, granted: true, at: Utc::now() }],
            activity: vec![],
        };
        let json = serde_json::to_string(&ObservationBatch { observations: vec![o.clone()] }).unwrap();
        assert!(json.contains("\"kind\":\"email\""), "{json}");
        let back: ObservationBatch = serde_json::from_str(&json).unwrap();
        assert_eq!(back.observations[0], o);
    }
}
