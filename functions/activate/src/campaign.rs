//! Campaign files: one `campaigns/<name>.toml` per campaign, reviewed in git, embedded in
//! the `activate` binary at build time and validated before deployment (`make validate`).
//!
//! ```toml
//! name = "abandoned-cart"
//! description = "Remind people of the cart they left, on the channel they use."
//! segment = "abandoned-cart"        # the segment whose changes trigger the campaign
//! trigger = "entered"               # or "exited"
//! # or, instead of `segment`, an event (real time: see docs/activation.md):
//! # trigger = { event = "add_to_cart", wait = "30 minutes", unless = ["order_line", "store_purchase"] }
//! cooldown_group = "cart"           # optional: campaigns sharing a group share the cooldown
//! payload = ["items", "cart_at"]    # segment payload columns passed to the destination
//! cooldown = "3 days"               # at most one send of this campaign per person per cooldown
//! holdout_percent = 10              # deterministic share not contacted, to measure lift
//! conversion_days = 7               # an order within N days of the decision is a conversion
//!
//! [channels]
//! policy = "preferred-first"        # "ordered" | "preferred-first" | "all"
//! order = ["push", "email", "sms"]
//!
//! [channels.email]
//! destination = "esp"               # a destination of config/activation.toml
//! template = "cart-reminder-email-v3"
//!
//! [audience]                        # optional: hashed retargeting lists
//! platforms = ["meta", "google"]
//! ```
//!
//! The reference is `docs/activation.md`.

use std::collections::{BTreeMap, BTreeSet};

use ariane_shared::model::{SegmentChange, ACTIVITY_EVENTS};
use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::audience::Platform;

/// A messaging channel activation can reach a person on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
    Push,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Push];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Push => "push",
        }
    }

    pub fn parse(s: &str) -> Result<Channel, UnknownChannel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == s.trim().to_ascii_lowercase()).ok_or_else(|| UnknownChannel(s.to_string()))
    }

    /// The activation channel of a `preferred-channel` segment value: `app` engagement is
    /// reached by push; `web` and `store` have no messaging channel of their own.
    pub fn of_preferred(value: &str) -> Option<Channel> {
        match value.trim() {
            "email" => Some(Channel::Email),
            "sms" => Some(Channel::Sms),
            "app" | "push" => Some(Channel::Push),
            _ => None,
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel name that is not `email`, `sms` or `push`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel {0:?} (expected email, sms or push)")]
pub struct UnknownChannel(pub String);

/// How a campaign picks the channel(s) of a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The first channel of `order` on which the person has consented and is reachable.
    Ordered,
    /// The person's preferred channel (the `preferred-channel` segment, passed with each
    /// request as the `preferred_channel` attribute) when it is one of the campaign's
    /// channels, then `order`.
    PreferredFirst,
    /// Every channel of `order` on which the person has consented and is reachable.
    All,
}

/// What is sent on one channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// A destination declared in `config/activation.toml`.
    pub destination: String,
    /// The template id the destination renders (the ESP's, SMS gateway's, push provider's).
    pub template: String,
}

/// What starts a campaign for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A change of the campaign's segment, computed by the scheduled segments run.
    Segment(SegmentChange),
    /// An event, in real time: after `wait`, unless the person did one of `unless` since.
    Event(EventTrigger),
}

/// `trigger = { event = "add_to_cart", wait = "30 minutes", unless = ["order_line"] }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventTrigger {
    /// One of [`ACTIVITY_EVENTS`].
    pub event: String,
    /// Between one minute and [`MAX_WAIT`].
    pub wait: Duration,
    /// Event types (of [`ACTIVITY_EVENTS`], in any channel) that cancel the campaign when
    /// the person does one between the trigger event and the decision.
    pub unless: Vec<String>,
}

/// The longest `wait` of an event trigger (the person's activity is kept a little longer).
pub const MAX_WAIT: Duration = Duration::days(7);

/// The payload fields an event-triggered campaign can pass (the event's product fields).
pub const EVENT_PAYLOAD: [&str; 3] = ["sku", "product_name", "category"];

/// The `segment` of an event-triggered campaign, and of its requests: `event:<type>`.
pub fn event_segment(event: &str) -> String {
    format!("event:{event}")
}

impl Trigger {
    /// Whether a request's change starts the campaign (an event trigger's requests are
    /// always `entered`).
    pub fn fires_on(&self, change: SegmentChange) -> bool {
        match self {
            Trigger::Segment(c) => *c == change,
            Trigger::Event(_) => change == SegmentChange::Entered,
        }
    }

    pub fn event(&self) -> Option<&EventTrigger> {
        match self {
            Trigger::Event(e) => Some(e),
            Trigger::Segment(_) => None,
        }
    }
}

/// A parsed, self-consistent campaign (see [`Campaign::check`] for the checks against the
/// segment library and the destinations).
#[derive(Clone, Debug, PartialEq)]
pub struct Campaign {
    pub file: String,
    pub name: String,
    pub description: String,
    /// The segment whose changes trigger the campaign; `event:<type>` for an event trigger.
    pub segment: String,
    pub trigger: Trigger,
    /// The cooldown is counted over the sends of every campaign of the group (the
    /// campaign's name unless `cooldown_group` is set): a real-time cart reminder and the
    /// hourly abandoned-cart segment's never both reach a person for one cart.
    pub cooldown_group: String,
    pub policy: Policy,
    /// Channels in order of preference; every one has a [`Message`].
    pub order: Vec<Channel>,
    pub messages: BTreeMap<Channel, Message>,
    pub payload: Vec<String>,
    pub cooldown: Duration,
    pub holdout_percent: f64,
    pub conversion_days: u32,
    /// Ad platforms whose hashed customer lists follow the segment (entered: added,
    /// exited: removed).
    pub audience: Vec<Platform>,
}

/// A campaign file that cannot be deployed, naming the file and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct CampaignError {
    pub file: String,
    pub problem: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaign {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    segment: Option<String>,
    trigger: RawTrigger,
    #[serde(default)]
    cooldown_group: Option<String>,
    #[serde(default)]
    payload: Vec<String>,
    #[serde(default)]
    cooldown: Option<String>,
    #[serde(default)]
    holdout_percent: f64,
    #[serde(default = "default_conversion_days")]
    conversion_days: u32,
    #[serde(default)]
    channels: Option<RawChannels>,
    #[serde(default)]
    audience: Option<RawAudience>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawTrigger {
    Change(String),
    Event(RawEventTrigger),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEventTrigger {
    event: String,
    wait: String,
    #[serde(default)]
    unless: Vec<String>,
}

fn default_conversion_days() -> u32 {
    7
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannels {
    policy: Policy,
    order: Vec<String>,
    email: Option<Message>,
    sms: Option<Message>,
    push: Option<Message>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudience {
    platforms: Vec<String>,
}

/// A duration that is not `N days`, `N hours`, `N minutes` or `0`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("duration {0:?} must be \"N days\", \"N hours\" or \"N minutes\"")]
pub struct InvalidDuration(pub String);

/// `"3 days"`, `"12 hours"`, `"30 minutes"`, `"0"` (none).
pub fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let t = text.trim();
    if t == "0" || t.is_empty() {
        return Ok(Duration::zero());
    }
    let bad = || InvalidDuration(text.to_string());
    let (n, unit) = t.split_once(' ').ok_or_else(bad)?;
    let n: i64 = n.trim().parse().ok().filter(|n| *n >= 0).ok_or_else(bad)?;
    match unit.trim() {
        "day" | "days" => Ok(Duration::days(n)),
        "hour" | "hours" => Ok(Duration::hours(n)),
        "minute" | "minutes" => Ok(Duration::minutes(n)),
        _ => Err(bad()),
    }
}

/// What a campaign is checked against before deployment: the segment library (name →
/// payload columns) and the destinations (name → channel).
pub struct CheckContext<'a> {
    pub segments: &'a BTreeMap<String, Vec<String>>,
    pub destinations: &'a BTreeMap<String, Channel>,
}

impl Campaign {
    pub fn parse(file: &str, text: &str) -> Result<Campaign, CampaignError> {
        let err = |problem: String| CampaignError { file: file.to_string(), problem };
        let raw: RawCampaign = toml::from_str(text).map_err(|e| err(e.to_string().trim().to_string()))?;
        if raw.name.is_empty() || !raw.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
            return Err(err(format!("campaign name {:?} must be lowercase letters, digits, '-' or '_'", raw.name)));
        }
        let expected = format!("{}.toml", raw.name);
        if file.rsplit('/').next() != Some(expected.as_str()) {
            return Err(err(format!("campaign {:?} must live in a file named {expected}", raw.name)));
        }
        let known = || ACTIVITY_EVENTS.join(", ");
        let (segment, trigger) = match (raw.trigger, raw.segment) {
            (RawTrigger::Change(change), Some(segment)) => {
                let change = match change.as_str() {
                    "entered" => SegmentChange::Entered,
                    "exited" => SegmentChange::Exited,
                    other => return Err(err(format!("trigger {other:?} must be \"entered\", \"exited\" or an event table"))),
                };
                (segment, Trigger::Segment(change))
            }
            (RawTrigger::Change(_), None) => return Err(err("a campaign triggered by a segment change needs `segment`".into())),
            (RawTrigger::Event(_), Some(_)) => {
                return Err(err("an event-triggered campaign has no `segment` (its trigger is the event)".into()))
            }
            (RawTrigger::Event(t), None) => {
                if !ACTIVITY_EVENTS.contains(&t.event.as_str()) {
                    return Err(err(format!("trigger.event {:?} is not a real-time event type (known: {})", t.event, known())));
                }
                let wait = parse_duration(&t.wait).map_err(|p| err(format!("trigger.wait: {p}")))?;
                if wait < Duration::minutes(1) || wait > MAX_WAIT {
                    return Err(err(format!("trigger.wait {:?} must be between 1 minute and 7 days", t.wait)));
                }
                let mut unless: Vec<String> = Vec::new();
                for u in t.unless {
                    if !ACTIVITY_EVENTS.contains(&u.as_str()) {
                        return Err(err(format!("trigger.unless {u:?} is not a real-time event type (known: {})", known())));
                    }
                    if unless.contains(&u) {
                        return Err(err(format!("trigger.unless lists {u:?} twice")));
                    }
                    unless.push(u);
                }
                (event_segment(&t.event), Trigger::Event(EventTrigger { event: t.event, wait, unless }))
            }
        };
        if let Trigger::Event(_) = trigger {
            if let Some(field) = raw.payload.iter().find(|f| !EVENT_PAYLOAD.contains(&f.as_str())) {
                return Err(err(format!(
                    "payload field {field:?} is not a field of the trigger event (it has: {})",
                    EVENT_PAYLOAD.join(", ")
                )));
            }
        }
        let cooldown_group = raw.cooldown_group.unwrap_or_else(|| raw.name.clone());
        if cooldown_group.trim().is_empty() {
            return Err(err("cooldown_group is empty".into()));
        }
        let cooldown = raw.cooldown.as_deref().map(parse_duration).transpose().map_err(|p| err(format!("cooldown: {p}")))?;
        if !(0.0..=50.0).contains(&raw.holdout_percent) || raw.holdout_percent.is_nan() {
            return Err(err(format!("holdout_percent {} must be between 0 and 50", raw.holdout_percent)));
        }
        if raw.conversion_days == 0 || raw.conversion_days > 90 {
            return Err(err(format!("conversion_days {} must be between 1 and 90", raw.conversion_days)));
        }
        let (mut policy, mut order, mut messages) = (Policy::Ordered, Vec::new(), BTreeMap::new());
        if let Some(ch) = raw.channels {
            policy = ch.policy;
            for (channel, message) in [(Channel::Email, ch.email), (Channel::Sms, ch.sms), (Channel::Push, ch.push)] {
                if let Some(m) = message {
                    if m.template.trim().is_empty() {
                        return Err(err(format!("channels.{channel}.template is empty")));
                    }
                    messages.insert(channel, m);
                }
            }
            let mut seen = BTreeSet::new();
            for name in &ch.order {
                let channel = Channel::parse(name).map_err(|p| err(format!("channels.order: {p}")))?;
                if !seen.insert(channel) {
                    return Err(err(format!("channels.order lists {channel} twice")));
                }
                if !messages.contains_key(&channel) {
                    return Err(err(format!("channels.order lists {channel} but there is no [channels.{channel}] section")));
                }
                order.push(channel);
            }
            if let Some(c) = messages.keys().find(|c| !seen.contains(c)) {
                return Err(err(format!("[channels.{c}] is defined but {c} is not in channels.order")));
            }
            if order.is_empty() {
                return Err(err("channels.order is empty".into()));
            }
        }
        let mut audience = Vec::new();
        if let Some(a) = raw.audience {
            for p in &a.platforms {
                let platform = Platform::parse(p).map_err(|e| err(format!("audience.platforms: {e}")))?;
                if audience.contains(&platform) {
                    return Err(err(format!("audience.platforms lists {p:?} twice")));
                }
                audience.push(platform);
            }
            if audience.is_empty() {
                return Err(err("audience.platforms is empty".into()));
            }
        }
        if order.is_empty() && audience.is_empty() {
            return Err(err("the campaign reaches no one: give it [channels] and/or [audience]".into()));
        }
        Ok(Campaign {
            file: file.to_string(),
            name: raw.name,
            description: raw.description,
            segment,
            trigger,
            cooldown_group,
            policy,
            order,
            messages,
            payload: raw.payload,
            cooldown: cooldown.unwrap_or_else(Duration::zero),
            holdout_percent: raw.holdout_percent,
            conversion_days: raw.conversion_days,
            audience,
        })
    }

    /// Checks the campaign against the segment library and the destinations: the segment
    /// exists, every payload field is one of its payload columns, every destination is
    /// declared and serves the channel it is used for.
    pub fn check(&self, ctx: &CheckContext<'_>) -> Vec<CampaignError> {
        let err = |problem: String| CampaignError { file: self.file.clone(), problem };
        let mut errors = Vec::new();
        match ctx.segments.get(&self.segment) {
            // An event trigger's payload was checked against the event's fields.
            _ if self.trigger.event().is_some() => {}
            None => errors.push(err(format!(
                "segment {:?} is not in the segment library (known: {})",
                self.segment,
                ctx.segments.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
            Some(columns) => {
                for field in &self.payload {
                    if !columns.contains(field) {
                        errors.push(err(format!(
                            "payload field {field:?} is not a payload column of segment {:?} (it has: {})",
                            self.segment,
                            columns.join(", ")
                        )));
                    }
                }
            }
        }
        for (channel, message) in &self.messages {
            match ctx.destinations.get(&message.destination) {
                None => errors.push(err(format!(
                    "channels.{channel}.destination {:?} is not declared in config/activation.toml (declared: {})",
                    message.destination,
                    ctx.destinations.keys().cloned().collect::<Vec<_>>().join(", ")
                ))),
                Some(c) if c != channel => {
                    errors.push(err(format!("channels.{channel}.destination {:?} serves {c}, not {channel}", message.destination)))
                }
                Some(_) => {}
            }
        }
        errors
    }

    /// The campaign's candidate channels for a person whose preferred channel is
    /// `preferred` (policies `ordered` and `preferred-first`), most wanted first.
    pub fn candidates(&self, preferred: Option<Channel>) -> Vec<Channel> {
        let mut out = Vec::with_capacity(self.order.len());
        if self.policy == Policy::PreferredFirst {
            if let Some(p) = preferred.filter(|p| self.messages.contains_key(p)) {
                out.push(p);
            }
        }
        for c in &self.order {
            if !out.contains(c) {
                out.push(*c);
            }
        }
        out
    }

    pub fn sends_messages(&self) -> bool {
        !self.order.is_empty()
    }

    /// The embedded campaign library (`campaigns/*.toml`), parsed.
    pub fn library() -> Result<Vec<Campaign>, CampaignError> {
        crate::CAMPAIGN_FILES.iter().map(|(file, text)| Campaign::parse(&format!("campaigns/{file}"), text)).collect()
    }
}

/// Errors of a whole library: each file's, plus names defined twice.
pub fn check_library(campaigns: &[Campaign], ctx: &CheckContext<'_>) -> Vec<CampaignError> {
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    for c in campaigns {
        if !names.insert(c.name.clone()) {
            errors.push(CampaignError { file: c.file.clone(), problem: format!("campaign {:?} is defined twice", c.name) });
        }
        errors.extend(c.check(ctx));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    const CART: &str = r#"
name = "cart"
segment = "abandoned-cart"
trigger = "entered"
payload = ["items"]
cooldown = "3 days"
holdout_percent = 10
[channels]
policy = "preferred-first"
order = ["push", "email"]
[channels.email]
destination = "esp"
template = "t-email"
[channels.push]
destination = "push-provider"
template = "t-push"
[audience]
platforms = ["meta", "google"]
"#;

    fn ctx_data() -> (BTreeMap<String, Vec<String>>, BTreeMap<String, Channel>) {
        let segments = [("abandoned-cart".to_string(), vec!["cart_at".to_string(), "items".to_string()])].into_iter().collect();
        let destinations = [("esp".to_string(), Channel::Email), ("push-provider".to_string(), Channel::Push)].into_iter().collect();
        (segments, destinations)
    }

    #[test]
    fn parses_a_campaign() {
        let c = Campaign::parse("campaigns/cart.toml", CART).unwrap();
        assert_eq!(c.trigger, Trigger::Segment(SegmentChange::Entered));
        assert_eq!(c.cooldown_group, "cart");
        assert_eq!(c.order, vec![Channel::Push, Channel::Email]);
        assert_eq!(c.cooldown, Duration::days(3));
        assert_eq!(c.conversion_days, 7);
        assert_eq!(c.audience, vec![Platform::Meta, Platform::Google]);
        let (s, d) = ctx_data();
        assert_eq!(c.check(&CheckContext { segments: &s, destinations: &d }), vec![]);
        assert_eq!(c.candidates(Some(Channel::Email)), vec![Channel::Email, Channel::Push]);
        assert_eq!(c.candidates(Some(Channel::Sms)), vec![Channel::Push, Channel::Email]);
        assert_eq!(c.candidates(None), vec![Channel::Push, Channel::Email]);
    }

    #[test]
    fn problems_name_the_file_and_the_field() {
        let cases = [
            (CART.replace("trigger = \"entered\"", "trigger = \"joined\""), "joined"),
            (CART.replace("cooldown = \"3 days\"", "cooldown = \"3 weeks\""), "cooldown"),
            (CART.replace("holdout_percent = 10", "holdout_percent = 80"), "holdout_percent"),
            (CART.replace("order = [\"push\", \"email\"]", "order = [\"push\", \"fax\"]"), "fax"),
            (CART.replace("order = [\"push\", \"email\"]", "order = [\"push\"]"), "email is not in channels.order"),
            (CART.replace("policy = \"preferred-first\"", "policy = \"random\""), "random"),
            (CART.replace("platforms = [\"meta\", \"google\"]", "platforms = [\"tiktok\"]"), "tiktok"),
            (CART.replace("name = \"cart\"", "name = \"other\""), "other.toml"),
            (format!("{CART}\ncolour = \"blue\""), "colour"),
        ];
        for (text, needle) in cases {
            let e = Campaign::parse("campaigns/cart.toml", &text).unwrap_err();
            assert_eq!(e.file, "campaigns/cart.toml");
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn checks_against_segments_and_destinations() {
        let (s, mut d) = ctx_data();
        let ctx = CheckContext { segments: &s, destinations: &d };
        let c = Campaign::parse("campaigns/cart.toml", &CART.replace("[\"items\"]", "[\"items\", \"basket\"]")).unwrap();
        let e = c.check(&ctx);
        assert_eq!(e.len(), 1);
        assert!(e[0].problem.contains("basket"), "{e:?}");
        let c = Campaign::parse("campaigns/cart.toml", &CART.replace("segment = \"abandoned-cart\"", "segment = \"carts\"")).unwrap();
        assert!(c.check(&ctx)[0].problem.contains("carts"));
        d.insert("esp".into(), Channel::Sms);
        let ctx = CheckContext { segments: &s, destinations: &d };
        let c = Campaign::parse("campaigns/cart.toml", CART).unwrap();
        assert!(c.check(&ctx)[0].problem.contains("serves sms"), "{:?}", c.check(&ctx));
    }

    const TRIGGERED: &str = r#"
name = "cart"
trigger = { event = "add_to_cart", wait = "30 minutes", unless = ["order_line", "store_purchase"] }
cooldown_group = "cart-reminder"
payload = ["sku", "product_name"]
cooldown = "2 days"
[channels]
policy = "ordered"
order = ["email"]
[channels.email]
destination = "esp"
template = "t-email"
"#;

    #[test]
    fn parses_an_event_trigger() {
        let c = Campaign::parse("campaigns/cart.toml", TRIGGERED).unwrap();
        let t = c.trigger.event().unwrap();
        assert_eq!((t.event.as_str(), t.wait), ("add_to_cart", Duration::minutes(30)));
        assert_eq!(t.unless, vec!["order_line".to_string(), "store_purchase".to_string()]);
        assert_eq!((c.segment.as_str(), c.cooldown_group.as_str()), ("event:add_to_cart", "cart-reminder"));
        assert!(c.trigger.fires_on(SegmentChange::Entered) && !c.trigger.fires_on(SegmentChange::Exited));
        let (s, d) = ctx_data();
        assert_eq!(c.check(&CheckContext { segments: &s, destinations: &d }), vec![]);
        let cases = [
            (TRIGGERED.replace("event = \"add_to_cart\"", "event = \"page_view\""), "page_view"),
            (TRIGGERED.replace("30 minutes", "30 seconds"), "trigger.wait"),
            (TRIGGERED.replace("30 minutes", "10 days"), "between 1 minute and 7 days"),
            (TRIGGERED.replace("\"store_purchase\"]", "\"refund\"]"), "refund"),
            (TRIGGERED.replace("\"store_purchase\"]", "\"order_line\"]"), "twice"),
            (TRIGGERED.replace("[\"sku\", \"product_name\"]", "[\"items\"]"), "items"),
            (format!("segment = \"abandoned-cart\"\n{TRIGGERED}"), "no `segment`"),
            (TRIGGERED.replace(", unless", ", when = \"now\", unless"), "trigger"),
            (CART.replace("segment = \"abandoned-cart\"\n", ""), "needs `segment`"),
        ];
        for (text, needle) in cases {
            let e = Campaign::parse("campaigns/cart.toml", &text).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("12 hours").unwrap(), Duration::hours(12));
        assert_eq!(parse_duration("1 day").unwrap(), Duration::days(1));
        assert_eq!(parse_duration("0").unwrap(), Duration::zero());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1 days").is_err());
    }

    #[test]
    fn the_library_parses() {
        let lib = Campaign::library().unwrap();
        assert!(lib.len() >= 3, "{lib:?}");
    }
}
