//! Turning one source value into a canonical value: transforms, value maps, and the typed
//! parsers (instants with time zones, exact amounts, integers, consents, identifiers).

use std::borrow::Cow;
use std::collections::HashMap;

use ariane_shared::model::ConsentChannel;
use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::amount::parse_minor;
use crate::spec::{FieldPlan, Kind, TimeFormat, Transform};

/// Applies transforms in order (values are already trimmed by the readers).
pub fn apply_transforms<'a>(value: Cow<'a, str>, transforms: &[Transform]) -> Cow<'a, str> {
    let mut v = value;
    for t in transforms {
        v = match t {
            Transform::Trim => match v {
                Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
                Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
            },
            Transform::Lower if v.chars().any(char::is_uppercase) => Cow::Owned(v.to_lowercase()),
            Transform::Upper if v.chars().any(char::is_lowercase) => Cow::Owned(v.to_uppercase()),
            Transform::Title => Cow::Owned(title_case(&v)),
            Transform::RemoveSpaces if v.chars().any(char::is_whitespace) => Cow::Owned(v.chars().filter(|c| !c.is_whitespace()).collect()),
            Transform::DigitsOnly if !v.bytes().all(|b| b.is_ascii_digit()) => Cow::Owned(v.chars().filter(char::is_ascii_digit).collect()),
            _ => v,
        };
    }
    v
}

/// `JEAN-PIERRE de la FONTAINE` → `Jean-Pierre De La Fontaine`.
fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
        start = c.is_whitespace() || c == '-' || c == '\'';
    }
    out
}

/// A local wall-clock time in `tz` as an instant. In the autumn overlap the earlier
/// instant is taken (the first time the clock showed it); a time inside the spring gap
/// (which no clock showed) is read as if the clock had not been moved yet, i.e. shifted
/// forward by the gap.
pub fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> Result<DateTime<Utc>, String> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(earliest, _) => Ok(earliest.with_timezone(&Utc)),
        LocalResult::None => {
            // Inside a DST gap: the offset before the gap applies.
            for minutes in [60i64, 30, 120] {
                if let LocalResult::Single(before) = tz.from_local_datetime(&(naive - Duration::minutes(minutes))) {
                    return Ok((before + Duration::minutes(minutes)).with_timezone(&Utc));
                }
            }
            Err(format!("{naive} does not exist in {tz}"))
        }
    }
}

/// Parses an instant in the field's time format.
pub fn parse_time(raw: &str, format: &TimeFormat, tz: Tz) -> Result<DateTime<Utc>, String> {
    let bad = |expected: &str| format!("{raw:?} is not a date-time like {expected}");
    match format {
        TimeFormat::Pattern { pattern, offset: true, .. } => {
            DateTime::parse_from_str(raw, pattern).map(|t| t.with_timezone(&Utc)).map_err(|_| bad(pattern))
        }
        TimeFormat::Pattern { pattern, offset: false, has_time } => {
            let naive = if *has_time {
                NaiveDateTime::parse_from_str(raw, pattern).map_err(|_| bad(pattern))?
            } else {
                NaiveDate::parse_from_str(raw, pattern).map_err(|_| bad(pattern))?.and_time(chrono::NaiveTime::MIN)
            };
            local_to_utc(naive, tz)
        }
        TimeFormat::Rfc3339 => match DateTime::parse_from_rfc3339(raw) {
            Ok(t) => Ok(t.with_timezone(&Utc)),
            // A date-time without offset is local time in the field's zone.
            Err(_) => match NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S%.f"))
            {
                Ok(naive) => local_to_utc(naive, tz),
                Err(_) => Err(bad("2026-11-02T09:30:00Z")),
            },
        },
        TimeFormat::EpochSeconds | TimeFormat::EpochMillis | TimeFormat::EpochMicros | TimeFormat::EpochAuto => {
            let n: i64 = match raw.parse::<i64>() {
                Ok(n) => n,
                // Some exporters write 1731234567890.0
                Err(_) => match raw.parse::<f64>() {
                    Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18 => f as i64,
                    _ => return Err(format!("{raw:?} is not an epoch timestamp")),
                },
            };
            let micros = match format {
                TimeFormat::EpochSeconds => n.checked_mul(1_000_000),
                TimeFormat::EpochMillis => n.checked_mul(1_000),
                TimeFormat::EpochMicros => Some(n),
                // Up to year ~5138 in seconds, ~2286 in milliseconds.
                _ => match n.unsigned_abs() {
                    0..100_000_000_000 => n.checked_mul(1_000_000),
                    100_000_000_000..10_000_000_000_000 => n.checked_mul(1_000),
                    _ => Some(n),
                },
            };
            micros.and_then(DateTime::<Utc>::from_timestamp_micros).ok_or_else(|| format!("{raw:?} is out of range as an epoch timestamp"))
        }
    }
}

/// `true` / `false` from the usual spellings (after the field's value map).
pub fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "oui" | "o" | "1" | "opt-in" | "opt_in" => Ok(true),
        "false" | "no" | "n" | "non" | "0" | "opt-out" | "opt_out" => Ok(false),
        _ => Err(format!("{raw:?} is not yes or no")),
    }
}

/// Parses an amount into minor units; spaces used as thousands separators are allowed.
pub fn parse_amount(raw: &str, decimal: char) -> Result<i64, String> {
    if raw.contains([' ', '\u{a0}', '\u{202f}']) {
        let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}')).collect();
        return parse_minor(&compact, decimal);
    }
    parse_minor(raw, decimal)
}

pub fn parse_integer(raw: &str) -> Result<i64, String> {
    match raw.parse::<i64>() {
        Ok(n) => Ok(n),
        Err(_) => match raw.strip_suffix(".0").or_else(|| raw.strip_suffix(",0")).map(str::parse::<i64>) {
            Some(Ok(n)) => Ok(n),
            _ => Err(format!("{raw:?} is not a whole number")),
        },
    }
}

/// Checks that a constant, default or map target is a valid value of the field.
pub fn check_literal(plan: &FieldPlan, value: &str) -> Result<(), String> {
    match plan.canon.kind() {
        Kind::Timestamp => match &plan.time {
            Some(f) => parse_time(value, f, plan.time_zone).map(|_| ()),
            None => parse_time(value, &TimeFormat::Rfc3339, plan.time_zone).map(|_| ()),
        },
        Kind::Integer => parse_integer(value).map(|_| ()),
        Kind::Amount => parse_amount(value, plan.decimal).map(|_| ()),
        Kind::OptIn(_) => parse_bool(value).map(|_| ()),
        Kind::ConsentChannel => {
            ConsentChannel::parse(value).map(|_| ()).ok_or_else(|| format!("{value:?} is not a consent channel (email, sms, push)"))
        }
        _ => Ok(()),
    }
}

/// Phone numbers to E.164 with the `phonenumber` crate, remembering recent answers (the
/// same customer's number repeats on every line of a receipt or an order).
#[derive(Default)]
pub struct PhoneNormalizer {
    cache: HashMap<phonenumber::country::Id, crate::map::FxMap<String, Option<String>>>,
}

const PHONE_CACHE: usize = 50_000;

impl PhoneNormalizer {
    /// E.164 form, or `None` when the value is not a valid number. Numbers written in
    /// international form without the `+` (`33612345678`, as SMS gateways do) are
    /// accepted when they are not valid in the national plan.
    pub fn normalize(&mut self, raw: &str, region: phonenumber::country::Id) -> Option<String> {
        let cache = self.cache.entry(region).or_default();
        if let Some(hit) = cache.get(raw) {
            return hit.clone();
        }
        let result = e164(raw, region);
        if cache.len() >= PHONE_CACHE {
            cache.clear();
        }
        cache.insert(raw.to_string(), result.clone());
        result
    }
}

fn e164(raw: &str, region: phonenumber::country::Id) -> Option<String> {
    let valid = |text: &str, region: Option<phonenumber::country::Id>| {
        phonenumber::parse(region, text).ok().filter(phonenumber::is_valid).map(|n| n.format().mode(phonenumber::Mode::E164).to_string())
    };
    if let Some(n) = valid(raw, Some(region)) {
        return Some(n);
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if !raw.trim_start().starts_with('+') && digits.len() >= 10 && !digits.starts_with('0') {
        return valid(&format!("+{digits}"), None);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    fn paris() -> Tz {
        "Europe/Paris".parse().unwrap()
    }

    fn pattern(p: &str) -> TimeFormat {
        crate::spec::parse_time_format(p).unwrap()
    }

    #[test]
    fn local_times_across_daylight_saving_changes() {
        let f = pattern("%d/%m/%Y %H:%M");
        // Winter (UTC+1) and summer (UTC+2).
        assert_eq!(parse_time("15/01/2026 10:00", &f, paris()).unwrap().to_rfc3339(), "2026-01-15T09:00:00+00:00");
        assert_eq!(parse_time("15/07/2026 10:00", &f, paris()).unwrap().to_rfc3339(), "2026-07-15T08:00:00+00:00");
        // 29 March 2026: 02:00 → 03:00. 01:59 is winter time, 03:00 summer time.
        assert_eq!(parse_time("29/03/2026 01:59", &f, paris()).unwrap().to_rfc3339(), "2026-03-29T00:59:00+00:00");
        assert_eq!(parse_time("29/03/2026 03:00", &f, paris()).unwrap().to_rfc3339(), "2026-03-29T01:00:00+00:00");
        // 02:30 does not exist: read with the winter offset (the clock was not moved yet).
        assert_eq!(parse_time("29/03/2026 02:30", &f, paris()).unwrap().to_rfc3339(), "2026-03-29T01:30:00+00:00");
        // 25 October 2026: 03:00 → 02:00; 02:30 happens twice, the first (summer) is taken.
        assert_eq!(parse_time("25/10/2026 02:30", &f, paris()).unwrap().to_rfc3339(), "2026-10-25T00:30:00+00:00");
        assert_eq!(parse_time("25/10/2026 03:30", &f, paris()).unwrap().to_rfc3339(), "2026-10-25T02:30:00+00:00");
        assert!(parse_time("31/02/2026 10:00", &f, paris()).is_err());
        assert!(parse_time("2026-01-15 10:00", &f, paris()).is_err());
    }

    #[test]
    fn epochs_by_magnitude() {
        let s = parse_time("1763900000", &TimeFormat::EpochAuto, Tz::UTC).unwrap();
        let ms = parse_time("1763900000123", &TimeFormat::EpochAuto, Tz::UTC).unwrap();
        let us = parse_time("1763900000123456", &TimeFormat::EpochAuto, Tz::UTC).unwrap();
        assert_eq!(s.timestamp(), 1763900000);
        assert_eq!(ms.timestamp_millis(), 1763900000123);
        assert_eq!(us.timestamp_micros(), 1763900000123456);
        assert_eq!(us.nanosecond(), 123_456_000);
        assert!(parse_time("soon", &TimeFormat::EpochMillis, Tz::UTC).is_err());
    }

    #[test]
    fn rfc3339_with_and_without_offset() {
        assert_eq!(parse_time("2026-11-02T09:30:00Z", &TimeFormat::Rfc3339, paris()).unwrap().hour(), 9);
        assert_eq!(parse_time("2026-11-02T09:30:00", &TimeFormat::Rfc3339, paris()).unwrap().hour(), 8);
    }

    #[test]
    fn phones_to_e164() {
        let mut p = PhoneNormalizer::default();
        let fr = phonenumber::country::Id::FR;
        for raw in ["06 12 34 56 78", "0612345678", "+33 6 12 34 56 78", "0033612345678", "33612345678", "06.12.34.56.78"] {
            assert_eq!(p.normalize(raw, fr).as_deref(), Some("+33612345678"), "{raw}");
        }
        assert_eq!(p.normalize("+44 20 7946 0958", fr).as_deref(), Some("+442079460958"));
        for raw in ["12345", "06 12 34", "abc", "0012"] {
            assert_eq!(p.normalize(raw, fr), None, "{raw}");
        }
    }

    #[test]
    fn transforms_and_amounts() {
        use Transform::*;
        assert_eq!(apply_transforms(Cow::Borrowed("ab 12 cd"), &[RemoveSpaces, Upper]), "AB12CD");
        assert_eq!(apply_transforms(Cow::Borrowed("JEAN-PIERRE d'ARC"), &[Title]), "Jean-Pierre D'Arc");
        assert_eq!(parse_amount("1 234,50", ','), Ok(123450));
        assert_eq!(parse_amount("-3,5", ','), Ok(-350));
        assert!(parse_amount("12,5O", ',').is_err());
        assert_eq!(parse_integer("2"), Ok(2));
        assert_eq!(parse_integer("2.0"), Ok(2));
        assert!(parse_integer("deux").is_err());
        assert_eq!(parse_bool("Oui"), Ok(true));
        assert!(parse_bool("peut-être").is_err());
    }
}
