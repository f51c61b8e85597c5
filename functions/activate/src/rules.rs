//! The brand's activation rules (`config/activation.toml`, embedded at build time): the
//! brand's time zone, the cross-channel frequency cap, quiet hours per channel and the
//! destinations campaigns may send to. Validated by `make validate` and at cold start.

use std::collections::BTreeMap;

use chrono::Duration;
use chrono_tz::Tz;
use serde::Deserialize;

use crate::campaign::Channel;
use crate::quiet::{QuietHours, QuietHoursSpec};

pub const EMBEDDED_PATH: &str = "config/activation.toml";
pub const EMBEDDED: &str = include_str!("../../../config/activation.toml");

/// At most `max_messages` messages per person over any rolling `window`, across every
/// campaign and channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrequencyCap {
    pub max_messages: u32,
    pub window: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// The brand's time zone: quiet hours of people whose own zone is unknown.
    pub time_zone: Tz,
    /// Region for phone numbers written without a country code (`FR`).
    pub phone_region: phonenumber::country::Id,
    pub frequency_cap: FrequencyCap,
    pub quiet_hours: BTreeMap<Channel, QuietHours>,
    /// Destination name → the channel it serves.
    pub destinations: BTreeMap<String, Channel>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct RulesError {
    pub file: String,
    pub problem: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    time_zone: String,
    #[serde(default = "default_region")]
    phone_region: String,
    frequency_cap: RawCap,
    #[serde(default)]
    quiet_hours: BTreeMap<String, QuietHoursSpec>,
    destinations: BTreeMap<String, RawDestination>,
}

fn default_region() -> String {
    "FR".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCap {
    max_messages: u32,
    window_days: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    channel: String,
}

impl Rules {
    pub fn parse(file: &str, text: &str) -> Result<Rules, RulesError> {
        let err = |problem: String| RulesError { file: file.to_string(), problem };
        let raw: Raw = toml::from_str(text).map_err(|e| err(e.to_string().trim().to_string()))?;
        let time_zone: Tz = raw.time_zone.parse().map_err(|_| err(format!("time_zone {:?} is not an IANA time zone", raw.time_zone)))?;
        let phone_region = ariane_shared::identifiers::phone_region(&raw.phone_region)
            .ok_or_else(|| err(format!("phone_region {:?} is not a region code such as FR", raw.phone_region)))?;
        if raw.frequency_cap.max_messages == 0 || raw.frequency_cap.window_days == 0 || raw.frequency_cap.window_days > 90 {
            return Err(err("frequency_cap: max_messages must be at least 1 and window_days between 1 and 90".into()));
        }
        let mut quiet_hours = BTreeMap::new();
        for (name, spec) in &raw.quiet_hours {
            let channel = Channel::parse(name).map_err(|p| err(format!("quiet_hours.{name}: {p}")))?;
            let q = spec.build().map_err(|p| err(format!("quiet_hours.{name}: {p}")))?;
            if q.days_off == chrono::WeekdaySet::ALL {
                return Err(err(format!("quiet_hours.{name}: every day is off, nothing could ever be sent")));
            }
            quiet_hours.insert(channel, q);
        }
        let mut destinations = BTreeMap::new();
        for (name, d) in &raw.destinations {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                return Err(err(format!("destination name {name:?} must be lowercase letters, digits or '-'")));
            }
            let channel = Channel::parse(&d.channel).map_err(|p| err(format!("destinations.{name}: {p}")))?;
            destinations.insert(name.clone(), channel);
        }
        Ok(Rules {
            time_zone,
            phone_region,
            frequency_cap: FrequencyCap {
                max_messages: raw.frequency_cap.max_messages,
                window: Duration::days(raw.frequency_cap.window_days as i64),
            },
            quiet_hours,
            destinations,
        })
    }

    pub fn embedded() -> Result<Rules, RulesError> {
        Rules::parse(EMBEDDED_PATH, EMBEDDED)
    }

    /// Quiet hours of `channel` (none when the file states none).
    pub fn quiet(&self, channel: Channel) -> QuietHours {
        self.quiet_hours.get(&channel).cloned().unwrap_or_else(QuietHours::none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_rules_parse() {
        let r = Rules::embedded().unwrap();
        assert_eq!(r.time_zone, chrono_tz::Europe::Paris);
        assert_eq!(r.phone_region, phonenumber::country::Id::FR);
        assert_eq!(r.quiet(Channel::Sms), QuietHours::sms_default());
        assert!(r.destinations.values().any(|c| *c == Channel::Email));
    }

    #[test]
    fn problems_name_the_field() {
        let base = r#"
time_zone = "Europe/Paris"
[frequency_cap]
max_messages = 3
window_days = 7
[quiet_hours.sms]
start = "20:00"
end = "08:00"
[destinations.esp]
channel = "email"
"#;
        assert!(Rules::parse("a.toml", base).is_ok());
        for (from, to, needle) in [
            ("Europe/Paris", "Europe/Pariss", "time_zone"),
            ("time_zone = \"Europe/Paris\"", "time_zone = \"Europe/Paris\"\nphone_region = \"XX\"", "phone_region"),
            ("max_messages = 3", "max_messages = 0", "frequency_cap"),
            ("[quiet_hours.sms]", "[quiet_hours.fax]", "fax"),
            ("\"20:00\"", "\"25:00\"", "quiet_hours.sms"),
            ("channel = \"email\"", "channel = \"pigeon\"", "pigeon"),
        ] {
            let e = Rules::parse("a.toml", &base.replace(from, to)).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle}: {e}");
            assert_eq!(e.file, "a.toml");
        }
    }
}
