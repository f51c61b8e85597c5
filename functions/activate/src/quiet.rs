//! Quiet hours: when a recipient must not be messaged, in the recipient's own local time.
//!
//! A [`QuietHours`] combines a daily window (e.g. 20:00–08:00), whole days off (e.g.
//! Sunday) and a public holiday calendar. Everything is evaluated on the recipient's
//! wall clock in a `chrono_tz::Tz`, so daylight saving time is handled by the time zone
//! database and never with fixed offsets.

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc, Weekday, WeekdaySet};
use chrono_tz::{GapInfo, Tz};
use serde::Deserialize;
use std::cmp::Ordering;

use crate::calendar::{HolidayCalendar, UnknownCalendar};

/// How far [`QuietHours::next_allowed`] looks ahead before giving up, in days.
const HORIZON_DAYS: u32 = 400;

/// When messages must not be sent, on the recipient's local clock.
///
/// * Daily window: if `start > end` it wraps midnight (20:00–08:00 means a local time
///   `t` is quiet when `t >= 20:00 || t < 08:00`); if `start < end` it is quiet when
///   `start <= t < end`; if `start == end` there is no daily window. `end` is the first
///   allowed time.
/// * A local date whose weekday is in `days_off`, or which is a public holiday of
///   `holidays`, is quiet for the whole day (00:00 to 24:00 local).
///
/// `days_off` is a [`chrono::WeekdaySet`] (`chrono::Weekday` has no `Ord`, so it cannot
/// go in a `BTreeSet`).
///
/// The wall clock is taken literally, including on daylight-saving days: in the
/// repeated hour of an autumn night each local time is evaluated as it is displayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuietHours {
    /// Start of the daily quiet window (local time, inclusive).
    pub start: NaiveTime,
    /// End of the daily quiet window: the first allowed local time.
    pub end: NaiveTime,
    /// Weekdays that are quiet from 00:00 to 24:00.
    pub days_off: WeekdaySet,
    /// Public holidays that are quiet from 00:00 to 24:00.
    pub holidays: HolidayCalendar,
}

/// Quiet hours as written in a campaign's configuration, before validation.
///
/// ```json
/// { "start": "20:00", "end": "08:00", "days_off": ["sunday"], "holidays": "FR" }
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursSpec {
    /// `"HH:MM"` (24-hour clock); present together with `end`, or both absent.
    pub start: Option<String>,
    /// `"HH:MM"` (24-hour clock), the first allowed time.
    pub end: Option<String>,
    /// English weekday names, full or three letters, case-insensitive.
    #[serde(default)]
    pub days_off: Vec<String>,
    /// A [`HolidayCalendar`] name (`"none"`, `"FR"`, `"FR-alsace-moselle"`); absent means
    /// none.
    #[serde(default)]
    pub holidays: Option<String>,
}

/// A quiet-hours specification that cannot be used; each names the offending value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuietHoursError {
    #[error("invalid time {0:?}: expected HH:MM on a 24-hour clock (00:00 to 23:59)")]
    Time(String),
    #[error("quiet hours start {0:?} has no end: give both start and end, or neither")]
    StartWithoutEnd(String),
    #[error("quiet hours end {0:?} has no start: give both start and end, or neither")]
    EndWithoutStart(String),
    #[error("unknown weekday {0:?}: expected an English day name such as \"sunday\" or \"sun\"")]
    Weekday(String),
    #[error(transparent)]
    Calendar(#[from] UnknownCalendar),
}

impl QuietHoursSpec {
    /// Validates the specification. Errors name the offending value.
    pub fn build(&self) -> Result<QuietHours, QuietHoursError> {
        let (start, end) = match (&self.start, &self.end) {
            (Some(start), Some(end)) => (parse_hh_mm(start)?, parse_hh_mm(end)?),
            (None, None) => (NaiveTime::MIN, NaiveTime::MIN),
            (Some(start), None) => return Err(QuietHoursError::StartWithoutEnd(start.clone())),
            (None, Some(end)) => return Err(QuietHoursError::EndWithoutStart(end.clone())),
        };
        let days_off = self.days_off.iter().map(|d| parse_weekday(d)).collect::<Result<WeekdaySet, _>>()?;
        let holidays = match &self.holidays {
            Some(h) => HolidayCalendar::parse(h)?,
            None => HolidayCalendar::None,
        };
        Ok(QuietHours { start, end, days_off, holidays })
    }
}

/// `"HH:MM"` on a 24-hour clock (the hour may have one digit).
fn parse_hh_mm(s: &str) -> Result<NaiveTime, QuietHoursError> {
    let bad = || QuietHoursError::Time(s.to_string());
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    let digits = |x: &str, lens: std::ops::RangeInclusive<usize>| lens.contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h, 1..=2) || !digits(m, 2..=2) {
        return Err(bad());
    }
    let (h, m) = (h.parse::<u32>().map_err(|_| bad())?, m.parse::<u32>().map_err(|_| bad())?);
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(bad)
}

/// English weekday name, full or three letters, case-insensitive.
fn parse_weekday(s: &str) -> Result<Weekday, QuietHoursError> {
    let day = match s.trim().to_ascii_lowercase().as_str() {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return Err(QuietHoursError::Weekday(s.to_string())),
    };
    Ok(day)
}

impl QuietHours {
    /// Never quiet.
    pub fn none() -> Self {
        QuietHours { start: NaiveTime::MIN, end: NaiveTime::MIN, days_off: WeekdaySet::EMPTY, holidays: HolidayCalendar::None }
    }

    /// The default for SMS: 20:00–08:00, Sundays and French public holidays off.
    pub fn sms_default() -> Self {
        QuietHours {
            start: NaiveTime::from_hms_opt(20, 0, 0).unwrap_or(NaiveTime::MIN),
            end: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or(NaiveTime::MIN),
            days_off: WeekdaySet::single(Weekday::Sun),
            holidays: HolidayCalendar::France,
        }
    }

    /// Whether the daily window covers local time `t`.
    fn in_daily_window(&self, t: NaiveTime) -> bool {
        match self.start.cmp(&self.end) {
            Ordering::Less => self.start <= t && t < self.end,
            Ordering::Greater => t >= self.start || t < self.end,
            Ordering::Equal => false,
        }
    }

    /// Whether the whole local date is off.
    fn is_day_off(&self, date: NaiveDate) -> bool {
        self.days_off.contains(date.weekday()) || self.holidays.is_holiday(date)
    }

    /// Whether the local wall-clock time `local` is quiet.
    pub fn is_quiet_local(&self, local: NaiveDateTime) -> bool {
        self.is_day_off(local.date()) || self.in_daily_window(local.time())
    }

    /// Whether `at` is quiet for a recipient in `tz`.
    pub fn is_quiet(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        self.is_quiet_local(at.with_timezone(&tz).naive_local())
    }

    /// The earliest instant at or after `at` when sending is allowed: `Some(at)` when `at`
    /// is not quiet, otherwise the first instant after `at` that is not quiet, or `None`
    /// when nothing is allowed within 400 days (e.g. all seven days off).
    ///
    /// The result is the local `end` time or a local midnight (the end of a day off),
    /// converted to UTC. A local time that falls in a spring-forward gap maps to the
    /// first instant after the gap; an ambiguous autumn time is tried at its earlier
    /// instant first, then at its later one (it is taken at the later one only when
    /// `at` is already past the earlier). In the rare case where a quiet period ends
    /// because the clock is set back (a window starting inside the repeated hour), the
    /// result is the instant of that change.
    pub fn next_allowed(&self, at: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        if !self.is_quiet(at, tz) {
            return Some(at);
        }
        if self.days_off.len() == 7 {
            return None;
        }
        let today = at.with_timezone(&tz).date_naive();
        // Start a day early: with an ambiguous local time, a boundary of the previous
        // local date can still be ahead of `at`.
        let mut day = today.pred_opt().unwrap_or(today);
        let mut best: Option<DateTime<Utc>> = None;
        let mut one_more_day = false;
        for _ in 0..=HORIZON_DAYS + 1 {
            for candidate in self.boundaries(day, tz) {
                if candidate > at && best.is_none_or(|b| candidate < b) && !self.is_quiet(candidate, tz) {
                    best = Some(candidate);
                }
            }
            if best.is_some() {
                // Boundaries of consecutive dates are in order except around a clock
                // change at midnight, so one more date settles the minimum.
                if one_more_day {
                    break;
                }
                one_more_day = true;
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        best
    }

    /// The instants of local date `day` at which a quiet period can end: every instant
    /// of local midnight and of the local `end` time, and any UTC offset change during
    /// that date.
    fn boundaries(&self, day: NaiveDate, tz: Tz) -> Vec<DateTime<Utc>> {
        let mut out = instants(day.and_time(NaiveTime::MIN), tz);
        if self.start != self.end {
            out.extend(instants(day.and_time(self.end), tz));
        }
        if let Some(change) = day.succ_opt().and_then(|next| offset_change(day, next, tz)) {
            out.push(change);
        }
        out
    }
}

/// The instant a local wall-clock time denotes in `tz`: the only one, the earlier of two
/// (autumn overlap), or the first instant after the gap when the time does not exist
/// (spring forward). `None` only at the limits of the time zone database.
pub fn resolve_local(local: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
    instants(local, tz).into_iter().next()
}

/// Every instant a local time denotes, earliest first; for a time in a gap, the first
/// instant after the gap.
fn instants(local: NaiveDateTime, tz: Tz) -> Vec<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(x) => vec![x.with_timezone(&Utc)],
        LocalResult::Ambiguous(a, b) => vec![a.with_timezone(&Utc), b.with_timezone(&Utc)],
        LocalResult::None => GapInfo::new(&local, &tz).and_then(|gap| gap.end).map(|x| x.with_timezone(&Utc)).into_iter().collect(),
    }
}

/// The UTC offset of `tz` at Unix time `secs`, in seconds.
fn offset_at(secs: i64, tz: Tz) -> Option<i32> {
    let utc = DateTime::from_timestamp(secs, 0)?;
    Some(tz.offset_from_utc_datetime(&utc.naive_utc()).fix().local_minus_utc())
}

/// The instant the UTC offset changes between the starts of local dates `day` and
/// `next`, if it does (assumes at most one change per day, as in every real zone).
fn offset_change(day: NaiveDate, next: NaiveDate, tz: Tz) -> Option<DateTime<Utc>> {
    let mut lo = resolve_local(day.and_time(NaiveTime::MIN), tz)?.timestamp();
    let mut hi = resolve_local(next.and_time(NaiveTime::MIN), tz)?.timestamp();
    let target = offset_at(hi, tz)?;
    if offset_at(lo, tz)? == target {
        return None;
    }
    // Invariant: offset(lo) != target == offset(hi). Find the first second at `target`.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_at(mid, tz)? == target {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PARIS: Tz = chrono_tz::Europe::Paris;
    const GUADELOUPE: Tz = chrono_tz::America::Guadeloupe;

    fn local(tz: Tz, y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        let naive = NaiveDate::from_ymd_opt(y, mo, d).unwrap().and_hms_opt(h, mi, 0).unwrap();
        tz.from_local_datetime(&naive).earliest().unwrap().with_timezone(&Utc)
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window(start: &str, end: &str) -> QuietHours {
        QuietHours { start: parse_hh_mm(start).unwrap(), end: parse_hh_mm(end).unwrap(), ..QuietHours::none() }
    }

    #[test]
    fn friday_evening_waits_for_saturday_morning() {
        let q = QuietHours::sms_default();
        let at = local(PARIS, 2026, 11, 27, 21, 30);
        assert!(q.is_quiet(at, PARIS));
        assert_eq!(q.next_allowed(at, PARIS), Some(local(PARIS, 2026, 11, 28, 8, 0)));
        assert_eq!(q.next_allowed(at, PARIS), Some(utc("2026-11-28T07:00:00Z")));
    }

    #[test]
    fn saturday_evening_skips_sunday() {
        let q = QuietHours::sms_default();
        let at = local(PARIS, 2026, 11, 28, 20, 30);
        assert_eq!(q.next_allowed(at, PARIS), Some(local(PARIS, 2026, 11, 30, 8, 0)));
    }

    #[test]
    fn whit_monday_is_off() {
        let q = QuietHours::sms_default();
        let at = local(PARIS, 2026, 5, 25, 10, 0);
        assert!(q.is_quiet(at, PARIS));
        assert_eq!(q.next_allowed(at, PARIS), Some(local(PARIS, 2026, 5, 26, 8, 0)));
        assert_eq!(q.next_allowed(at, PARIS), Some(utc("2026-05-26T06:00:00Z")));
    }

    #[test]
    fn just_before_the_end() {
        let q = QuietHours::sms_default();
        let at = local(PARIS, 2026, 11, 24, 7, 59);
        assert_eq!(q.next_allowed(at, PARIS), Some(local(PARIS, 2026, 11, 24, 8, 0)));
        // `end` is the first allowed minute, `start` the first quiet one.
        assert!(!q.is_quiet(local(PARIS, 2026, 11, 24, 8, 0), PARIS));
        assert!(!q.is_quiet(local(PARIS, 2026, 11, 24, 19, 59), PARIS));
        assert!(q.is_quiet(local(PARIS, 2026, 11, 24, 20, 0), PARIS));
    }

    #[test]
    fn allowed_instant_is_unchanged() {
        let q = QuietHours::sms_default();
        let at = local(PARIS, 2026, 11, 24, 12, 0) + chrono::Duration::seconds(17);
        assert!(!q.is_quiet(at, PARIS));
        assert_eq!(q.next_allowed(at, PARIS), Some(at));
    }

    #[test]
    fn none_is_never_quiet() {
        let q = QuietHours::none();
        for h in 0..24 {
            let at = local(PARIS, 2026, 12, 25, h, 0);
            assert!(!q.is_quiet(at, PARIS));
            assert_eq!(q.next_allowed(at, PARIS), Some(at));
        }
    }

    #[test]
    fn non_wrapping_window() {
        let q = window("12:00", "14:00");
        assert!(!q.is_quiet(local(PARIS, 2026, 6, 1, 11, 59), PARIS));
        assert!(q.is_quiet(local(PARIS, 2026, 6, 1, 12, 0), PARIS));
        assert!(!q.is_quiet(local(PARIS, 2026, 6, 1, 14, 0), PARIS));
        assert_eq!(q.next_allowed(local(PARIS, 2026, 6, 1, 13, 0), PARIS), Some(local(PARIS, 2026, 6, 1, 14, 0)));
    }

    #[test]
    fn spring_forward_in_paris() {
        // 29 March 2026: 02:00 CET becomes 03:00 CEST (01:00 UTC).
        let q = QuietHours { days_off: WeekdaySet::EMPTY, ..QuietHours::sms_default() };
        let at = local(PARIS, 2026, 3, 28, 21, 0);
        assert_eq!(q.next_allowed(at, PARIS), Some(utc("2026-03-29T06:00:00Z")));

        // An end inside the gap maps to the first instant after it.
        let q = window("01:00", "02:30");
        let at = utc("2026-03-29T00:30:00Z"); // 01:30 CET
        assert!(q.is_quiet(at, PARIS));
        assert_eq!(q.next_allowed(at, PARIS), Some(utc("2026-03-29T01:00:00Z")));
        assert_eq!(
            resolve_local(NaiveDate::from_ymd_opt(2026, 3, 29).unwrap().and_hms_opt(2, 30, 0).unwrap(), PARIS),
            Some(utc("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn fall_back_in_paris() {
        // 25 October 2026: 03:00 CEST becomes 02:00 CET (01:00 UTC).
        let q = QuietHours { days_off: WeekdaySet::EMPTY, ..QuietHours::sms_default() };
        let at = local(PARIS, 2026, 10, 24, 22, 0);
        assert_eq!(q.next_allowed(at, PARIS), Some(utc("2026-10-25T07:00:00Z")));

        // An ambiguous end takes the earlier instant...
        let q = window("01:00", "02:30");
        let at = utc("2026-10-24T23:15:00Z"); // 01:15 CEST
        assert_eq!(q.next_allowed(at, PARIS), Some(utc("2026-10-25T00:30:00Z")));
        // ...unless `at` is already past it: 02:10 CET is quiet again until 02:30 CET.
        let at = utc("2026-10-25T01:10:00Z");
        assert!(q.is_quiet(at, PARIS));
        assert_eq!(q.next_allowed(at, PARIS), Some(utc("2026-10-25T01:30:00Z")));

        // A window starting in the repeated hour ends when the clock goes back.
        let q = window("02:30", "08:00");
        let at = utc("2026-10-25T00:45:00Z"); // 02:45 CEST
        assert!(q.is_quiet(at, PARIS));
        assert_eq!(q.next_allowed(at, PARIS), Some(utc("2026-10-25T01:00:00Z")));
    }

    #[test]
    fn other_zone_other_answer() {
        let q = QuietHours::sms_default();
        // Friday 27 November 2026, 21:30 in Paris is 16:30 in Guadeloupe.
        let at = utc("2026-11-27T20:30:00Z");
        assert_eq!(q.next_allowed(at, PARIS), Some(utc("2026-11-28T07:00:00Z")));
        assert_eq!(q.next_allowed(at, GUADELOUPE), Some(at));
        // 02:00 Saturday in Paris, 21:00 Friday in Guadeloupe.
        let at = utc("2026-11-28T01:00:00Z");
        assert_eq!(q.next_allowed(at, PARIS), Some(utc("2026-11-28T07:00:00Z")));
        assert_eq!(q.next_allowed(at, GUADELOUPE), Some(utc("2026-11-28T12:00:00Z")));
    }

    #[test]
    fn every_day_off_gives_none() {
        let q = QuietHours { days_off: WeekdaySet::ALL, ..QuietHours::none() };
        assert_eq!(q.next_allowed(utc("2026-06-01T12:00:00Z"), PARIS), None);
    }

    #[test]
    fn holidays_follow_the_local_date() {
        let q = QuietHours { holidays: HolidayCalendar::France, ..QuietHours::none() };
        // 24 December 23:30 UTC is already Christmas in Paris, not yet in Guadeloupe.
        let at = utc("2026-12-24T23:30:00Z");
        assert!(q.is_quiet(at, PARIS));
        assert!(!q.is_quiet(at, GUADELOUPE));
        assert_eq!(q.next_allowed(at, PARIS), Some(utc("2026-12-25T23:00:00Z")));
    }

    #[test]
    fn spec_builds() {
        let spec: QuietHoursSpec =
            serde_json::from_str(r#"{"start":"20:00","end":"08:00","days_off":["Sunday"],"holidays":"FR"}"#).unwrap();
        assert_eq!(spec.build(), Ok(QuietHours::sms_default()));

        let spec: QuietHoursSpec = serde_json::from_str(r#"{"days_off":["SAT","sun"]}"#).unwrap();
        let q = spec.build().unwrap();
        assert_eq!(q.start, q.end);
        assert_eq!(q.days_off, WeekdaySet::from_array([Weekday::Sat, Weekday::Sun]));
        assert_eq!(q.holidays, HolidayCalendar::None);

        let spec: QuietHoursSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec.build(), Ok(QuietHours::none()));

        let spec: QuietHoursSpec = serde_json::from_str(r#"{"start":"7:05","end":"23:59"}"#).unwrap();
        let q = spec.build().unwrap();
        assert_eq!((q.start, q.end), (parse_hh_mm("07:05").unwrap(), parse_hh_mm("23:59").unwrap()));
    }

    #[test]
    fn spec_errors_name_the_value() {
        let build = |json: &str| serde_json::from_str::<QuietHoursSpec>(json).unwrap().build().unwrap_err().to_string();
        for bad in ["24:00", "20h00", "8:5", "20:60", "", "-1:00", "20:00:00", "+8:00"] {
            let err = build(&format!(r#"{{"start":"{bad}","end":"08:00"}}"#));
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        let err = build(r#"{"start":"20:00"}"#);
        assert!(err.contains("\"20:00\"") && err.contains("end"), "{err}");
        let err = build(r#"{"end":"08:00"}"#);
        assert!(err.contains("\"08:00\"") && err.contains("start"), "{err}");
        let err = build(r#"{"days_off":["sunday","dimanche"]}"#);
        assert!(err.contains("\"dimanche\""), "{err}");
        let err = build(r#"{"holidays":"BE"}"#);
        assert!(err.contains("\"BE\""), "{err}");
        assert!(serde_json::from_str::<QuietHoursSpec>(r#"{"begin":"20:00"}"#).is_err(), "unknown fields are refused");
    }

    const ZONES: [Tz; 5] = [
        chrono_tz::Europe::Paris,
        chrono_tz::America::Guadeloupe,
        chrono_tz::Indian::Reunion,
        chrono_tz::America::New_York,
        chrono_tz::Australia::Lord_Howe,
    ];

    /// Zones with daylight saving time (Lord Howe moves its clock by 30 minutes).
    const DST_ZONES: [Tz; 3] = [chrono_tz::Europe::Paris, chrono_tz::America::New_York, chrono_tz::Australia::Lord_Howe];

    fn quiet_hours() -> impl Strategy<Value = QuietHours> {
        (0u32..24 * 60, 0u32..24 * 60, 0u8..127, any::<bool>()).prop_map(|(s, e, mask, fr)| QuietHours {
            start: NaiveTime::from_hms_opt(s / 60, s % 60, 0).unwrap(),
            end: NaiveTime::from_hms_opt(e / 60, e % 60, 0).unwrap(),
            days_off: (0..7).filter(|i| mask & (1 << i) != 0).map(|i| Weekday::try_from(i as u8).unwrap()).collect(),
            holidays: if fr { HolidayCalendar::France } else { HolidayCalendar::None },
        })
    }

    /// Checks that `next_allowed(at)` is the first allowed instant at or after `at`.
    fn check_next_allowed(q: &QuietHours, at: DateTime<Utc>, tz: Tz) -> Result<(), TestCaseError> {
        let next = q.next_allowed(at, tz);
        prop_assert!(next.is_some());
        let next = next.unwrap();
        prop_assert!(next >= at);
        prop_assert!(!q.is_quiet(next, tz), "{} is quiet", next);
        if next > at {
            prop_assert!(q.is_quiet(at, tz));
            let step = chrono::Duration::minutes(15);
            let mut t = at + step;
            while t < next {
                prop_assert!(q.is_quiet(t, tz), "{} is allowed, before {}", t, next);
                t += step;
            }
            for before in [chrono::Duration::minutes(1), chrono::Duration::seconds(1)] {
                let t = (next - before).max(at);
                prop_assert!(q.is_quiet(t, tz), "{} is allowed, before {}", t, next);
            }
        } else {
            prop_assert!(!q.is_quiet(at, tz));
        }
        Ok(())
    }

    /// The UTC offset changes of `tz` during `year`.
    fn clock_changes(tz: Tz, year: i32) -> Vec<DateTime<Utc>> {
        let mut day = NaiveDate::from_ymd_opt(year, 1, 1).unwrap();
        let mut out = Vec::new();
        while day.year() == year {
            let next = day.succ_opt().unwrap();
            out.extend(offset_change(day, next, tz));
            day = next;
        }
        out
    }

    #[test]
    fn clock_changes_are_found() {
        assert_eq!(clock_changes(PARIS, 2026), vec![utc("2026-03-29T01:00:00Z"), utc("2026-10-25T01:00:00Z")]);
        assert!(clock_changes(GUADELOUPE, 2026).is_empty());
    }

    proptest! {
        #[test]
        fn next_allowed_is_the_first_allowed_instant(
            q in quiet_hours(),
            secs in 1_735_689_600i64..1_861_920_000, // 2025-01-01 .. 2029-01-01
            zone in 0..ZONES.len(),
        ) {
            let at = DateTime::from_timestamp(secs, 0).unwrap();
            check_next_allowed(&q, at, ZONES[zone])?;
        }

        #[test]
        fn next_allowed_around_clock_changes(
            q in quiet_hours(),
            night in (0u32..5 * 60, 0u32..5 * 60),
            use_night in any::<bool>(),
            zone in 0..DST_ZONES.len(),
            year in 2025i32..=2028,
            which in 0usize..2,
            minutes in prop_oneof![-36 * 60i64..36 * 60, -4 * 60i64..4 * 60],
        ) {
            let tz = DST_ZONES[zone];
            let changes = clock_changes(tz, year);
            prop_assert_eq!(changes.len(), 2);
            let mut q = q;
            if use_night {
                // Windows starting or ending in the small hours, where clocks change.
                q.start = NaiveTime::from_hms_opt(night.0 / 60, night.0 % 60, 0).unwrap();
                q.end = NaiveTime::from_hms_opt(night.1 / 60, night.1 % 60, 0).unwrap();
            }
            let at = changes[which] + chrono::Duration::minutes(minutes);
            check_next_allowed(&q, at, tz)?;
        }
    }
}
