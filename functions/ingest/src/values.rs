//! Turning one source value into a canonical value: transforms and the typed parsers
//! (instants with time zones, exact amounts, integers, yes/no, consent channels). A leaf
//! module: the spec compiles into these types, the mapping calls these parsers.
//! Identifiers are normalised by `ariane_shared::identifiers`.

use std::borrow::Cow;

use ariane_shared::model::{ConsentChannel, LocalTime};
use chrono::format::{Fixed, Item, Parsed, StrftimeItems};
use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::amount::{parse_minor, AmountError};

/// Why a value is not a valid value of its field (the reason a row is rejected with,
/// after the field's label).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{raw:?} is not a date-time like {expected}")]
    NotADateTime { raw: String, expected: String },
    #[error("{naive} does not exist in {tz}")]
    NoSuchLocalTime { naive: NaiveDateTime, tz: Tz },
    #[error("{0:?} is not an epoch timestamp")]
    NotAnEpoch(String),
    #[error("{0:?} is out of range as an epoch timestamp")]
    EpochOutOfRange(String),
    #[error("{0:?} is not yes or no")]
    NotYesOrNo(String),
    #[error(transparent)]
    Amount(#[from] AmountError),
    #[error("{0:?} is not a whole number")]
    NotAWholeNumber(String),
    #[error("{0:?} is not a consent channel (email, sms, push, ads)")]
    NotAConsentChannel(String),
}

/// A time format of a spec that cannot produce an instant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeFormatError {
    #[error("{0:?} is not a valid strftime pattern")]
    InvalidPattern(String),
    #[error("{0:?} lacks a year, month or day (%Y, %m, %d)")]
    NoDate(String),
}

/// A value transform of a spec, applied in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    Trim,
    Lower,
    Upper,
    Title,
    RemoveSpaces,
    DigitsOnly,
}

impl Transform {
    /// The transform a spec names (`remove_spaces`).
    pub fn from_name(name: &str) -> Option<Transform> {
        Some(match name {
            "trim" => Transform::Trim,
            "lower" => Transform::Lower,
            "upper" => Transform::Upper,
            "title" => Transform::Title,
            "remove_spaces" => Transform::RemoveSpaces,
            "digits_only" => Transform::DigitsOnly,
            _ => return None,
        })
    }
}

/// How a timestamp field is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimeFormat {
    /// strftime pattern; `offset` when it carries a UTC offset (`%z`), else local time in
    /// the field's time zone.
    Pattern {
        pattern: String,
        /// The pattern's items, parsed once (a pattern read per value costs as much as
        /// the value's own parse).
        items: Vec<Item<'static>>,
        offset: bool,
        has_time: bool,
    },
    Rfc3339,
    EpochSeconds,
    EpochMillis,
    EpochMicros,
    /// Seconds, milliseconds or microseconds, told apart by magnitude.
    EpochAuto,
}

/// Parses a time format and checks it can produce an instant.
pub fn parse_time_format(format: &str) -> Result<TimeFormat, TimeFormatError> {
    Ok(match format {
        "rfc3339" | "iso8601" => TimeFormat::Rfc3339,
        "epoch_s" | "epoch_seconds" => TimeFormat::EpochSeconds,
        "epoch_ms" | "epoch_millis" => TimeFormat::EpochMillis,
        "epoch_us" | "epoch_micros" => TimeFormat::EpochMicros,
        "epoch_auto" => TimeFormat::EpochAuto,
        pattern => {
            let mut offset = false;
            let mut has = [false; 3]; // year, month, day
            let mut has_time = false;
            for item in StrftimeItems::new(pattern) {
                match item {
                    Item::Error => return Err(TimeFormatError::InvalidPattern(pattern.to_string())),
                    Item::Fixed(Fixed::TimezoneOffset | Fixed::TimezoneOffsetColon | Fixed::TimezoneOffsetZ)
                    | Item::Fixed(Fixed::TimezoneOffsetColonZ | Fixed::TimezoneOffsetDoubleColon)
                    | Item::Fixed(Fixed::TimezoneOffsetTripleColon | Fixed::RFC2822 | Fixed::RFC3339) => {
                        offset = true;
                        has = [true; 3];
                        has_time = true;
                    }
                    Item::Numeric(n, _) => {
                        use chrono::format::Numeric::*;
                        match n {
                            Year | YearMod100 => has[0] = true,
                            Month => has[1] = true,
                            Day => has[2] = true,
                            Hour | Hour12 => has_time = true,
                            Timestamp => {
                                has = [true; 3];
                                has_time = true;
                                offset = true;
                            }
                            _ => {}
                        }
                    }
                    Item::Fixed(Fixed::ShortMonthName | Fixed::LongMonthName) => has[1] = true,
                    _ => {}
                }
            }
            if !has.iter().all(|h| *h) {
                return Err(TimeFormatError::NoDate(pattern.to_string()));
            }
            let items = StrftimeItems::new(pattern).parse_to_owned().map_err(|_| TimeFormatError::InvalidPattern(pattern.to_string()))?;
            TimeFormat::Pattern { pattern: pattern.to_string(), items, offset, has_time }
        }
    })
}

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
pub fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> Result<DateTime<Utc>, ValueError> {
    resolve_local(naive, tz).map(|(at, _)| at)
}

/// [`local_to_utc`], with how the time was resolved: [`LocalTime::Ambiguous`] in the
/// autumn overlap, [`LocalTime::Shifted`] in the spring gap, `None` for a time the clock
/// showed exactly once.
pub fn resolve_local(naive: NaiveDateTime, tz: Tz) -> Result<(DateTime<Utc>, Option<LocalTime>), ValueError> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok((t.with_timezone(&Utc), None)),
        LocalResult::Ambiguous(earliest, _) => Ok((earliest.with_timezone(&Utc), Some(LocalTime::Ambiguous))),
        LocalResult::None => {
            // Inside a DST gap: the offset before the gap applies.
            for minutes in [60i64, 30, 120] {
                if let LocalResult::Single(before) = tz.from_local_datetime(&(naive - Duration::minutes(minutes))) {
                    return Ok(((before + Duration::minutes(minutes)).with_timezone(&Utc), Some(LocalTime::Shifted)));
                }
            }
            Err(ValueError::NoSuchLocalTime { naive, tz })
        }
    }
}

/// Parses an instant in the field's time format.
pub fn parse_time(raw: &str, format: &TimeFormat, tz: Tz) -> Result<DateTime<Utc>, ValueError> {
    parse_time_flagged(raw, format, tz).map(|(at, _)| at)
}

/// [`parse_time`], with how a local time was resolved ([`resolve_local`]); an instant
/// written with its offset, or as an epoch, is never flagged.
pub fn parse_time_flagged(raw: &str, format: &TimeFormat, tz: Tz) -> Result<(DateTime<Utc>, Option<LocalTime>), ValueError> {
    let bad = |expected: &str| ValueError::NotADateTime { raw: raw.to_string(), expected: expected.to_string() };
    match format {
        // What `DateTime::parse_from_str` / `NaiveDateTime::parse_from_str` /
        // `NaiveDate::parse_from_str` do, with the pattern's items parsed once.
        TimeFormat::Pattern { pattern, items, offset, has_time } => {
            let mut parsed = Parsed::new();
            chrono::format::parse(&mut parsed, raw, items.iter()).map_err(|_| bad(pattern))?;
            if *offset {
                return parsed.to_datetime().map(|t| (t.with_timezone(&Utc), None)).map_err(|_| bad(pattern));
            }
            let naive = if *has_time {
                parsed.to_naive_datetime_with_offset(0).map_err(|_| bad(pattern))?
            } else {
                parsed.to_naive_date().map_err(|_| bad(pattern))?.and_time(chrono::NaiveTime::MIN)
            };
            resolve_local(naive, tz)
        }
        TimeFormat::Rfc3339 => match DateTime::parse_from_rfc3339(raw) {
            Ok(t) => Ok((t.with_timezone(&Utc), None)),
            // A date-time without offset is local time in the field's zone.
            Err(_) => match NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S%.f"))
            {
                Ok(naive) => resolve_local(naive, tz),
                Err(_) => Err(bad("2026-11-02T09:30:00Z")),
            },
        },
        TimeFormat::EpochSeconds | TimeFormat::EpochMillis | TimeFormat::EpochMicros | TimeFormat::EpochAuto => {
            let n: i64 = match raw.parse::<i64>() {
                Ok(n) => n,
                // Some exporters write 1731234567890.0
                Err(_) => match raw.parse::<f64>() {
                    Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18 => f as i64,
                    _ => return Err(ValueError::NotAnEpoch(raw.to_string())),
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
            micros
                .and_then(DateTime::<Utc>::from_timestamp_micros)
                .map(|at| (at, None))
                .ok_or_else(|| ValueError::EpochOutOfRange(raw.to_string()))
        }
    }
}

/// `true` / `false` from the usual spellings (after the field's value map).
pub fn parse_bool(raw: &str) -> Result<bool, ValueError> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "oui" | "o" | "1" | "opt-in" | "opt_in" => Ok(true),
        "false" | "no" | "n" | "non" | "0" | "opt-out" | "opt_out" => Ok(false),
        _ => Err(ValueError::NotYesOrNo(raw.to_string())),
    }
}

/// Parses an amount into minor units; spaces used as thousands separators are allowed.
pub fn parse_amount(raw: &str, decimal: char) -> Result<i64, ValueError> {
    if raw.contains([' ', '\u{a0}', '\u{202f}']) {
        let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '\u{a0}' | '\u{202f}')).collect();
        return Ok(parse_minor(&compact, decimal)?);
    }
    Ok(parse_minor(raw, decimal)?)
}

/// A whole number (`2`, and `2.0` / `2,0` as spreadsheets write it).
pub fn parse_integer(raw: &str) -> Result<i64, ValueError> {
    match raw.parse::<i64>() {
        Ok(n) => Ok(n),
        Err(_) => match raw.strip_suffix(".0").or_else(|| raw.strip_suffix(",0")).map(str::parse::<i64>) {
            Some(Ok(n)) => Ok(n),
            _ => Err(ValueError::NotAWholeNumber(raw.to_string())),
        },
    }
}

/// A consent channel (`email`, `sms`, `push`, `ads`, after the field's value map).
pub fn parse_consent_channel(raw: &str) -> Result<ConsentChannel, ValueError> {
    ConsentChannel::parse(raw).ok_or_else(|| ValueError::NotAConsentChannel(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    fn paris() -> Tz {
        "Europe/Paris".parse().unwrap()
    }

    fn pattern(p: &str) -> TimeFormat {
        parse_time_format(p).unwrap()
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
    fn local_times_the_clock_did_not_show_once_are_flagged() {
        let f = pattern("%d/%m/%Y %H:%M");
        let flag = |raw: &str, format: &TimeFormat| parse_time_flagged(raw, format, paris()).unwrap().1;
        assert_eq!(flag("29/03/2026 02:30", &f), Some(LocalTime::Shifted), "in the spring gap");
        assert_eq!(flag("29/03/2026 02:00", &f), Some(LocalTime::Shifted), "the gap's first minute");
        assert_eq!(flag("25/10/2026 02:30", &f), Some(LocalTime::Ambiguous), "in the autumn overlap");
        for exact in ["29/03/2026 01:59", "29/03/2026 03:00", "25/10/2026 01:59", "25/10/2026 03:00", "15/07/2026 02:30"] {
            assert_eq!(flag(exact, &f), None, "{exact}");
        }
        // Local times without a pattern (RFC 3339 without an offset) alike; an offset or an
        // epoch names the instant.
        assert_eq!(flag("2026-03-29T02:30:00", &TimeFormat::Rfc3339), Some(LocalTime::Shifted));
        assert_eq!(flag("2026-10-25 02:30:00", &TimeFormat::Rfc3339), Some(LocalTime::Ambiguous));
        assert_eq!(flag("2026-10-25T02:30:00+02:00", &TimeFormat::Rfc3339), None);
        assert_eq!(flag("2026-10-25 02:30:00 +0100", &pattern("%Y-%m-%d %H:%M:%S %z")), None);
        assert_eq!(flag("1792895400", &TimeFormat::EpochSeconds), None);
        // The instant is the one parse_time gives.
        assert_eq!(parse_time_flagged("29/03/2026 02:30", &f, paris()).unwrap().0, parse_time("29/03/2026 02:30", &f, paris()).unwrap());
        // A zone without daylight saving never flags.
        assert_eq!(parse_time_flagged("29/03/2026 02:30", &f, Tz::UTC).unwrap().1, None);
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

    #[test]
    fn reasons_are_the_messages_users_read() {
        let f = pattern("%d/%m/%Y %H:%M");
        assert_eq!(
            parse_time("31/02/2026 10:00", &f, paris()).unwrap_err().to_string(),
            r#""31/02/2026 10:00" is not a date-time like %d/%m/%Y %H:%M"#
        );
        assert_eq!(parse_time("soon", &TimeFormat::EpochMillis, Tz::UTC).unwrap_err().to_string(), r#""soon" is not an epoch timestamp"#);
        assert_eq!(parse_amount("12,5O", ',').unwrap_err().to_string(), r#""12,5O" is not an amount"#);
        assert_eq!(parse_integer("deux").unwrap_err().to_string(), r#""deux" is not a whole number"#);
        assert_eq!(parse_bool("peut-être").unwrap_err().to_string(), r#""peut-être" is not yes or no"#);
        assert_eq!(parse_consent_channel("fax").unwrap_err().to_string(), r#""fax" is not a consent channel (email, sms, push, ads)"#);
        assert_eq!(parse_time_format("%H:%M").unwrap_err().to_string(), r#""%H:%M" lacks a year, month or day (%Y, %m, %d)"#);
    }
}
