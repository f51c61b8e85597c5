//! Europe/Paris local time without a time-zone database.
//!
//! France follows the EU rule: summer time (UTC+2) from the last Sunday of
//! March at 01:00 UTC until the last Sunday of October at 01:00 UTC, winter
//! time (UTC+1) otherwise. The rule has been stable since 1996, which covers
//! every date this generator produces.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

/// Central European Time (winter), UTC+1.
const CET: FixedOffset = match FixedOffset::east_opt(3600) {
    Some(offset) => offset,
    None => panic!("UTC+1 is a valid offset"),
};

/// Central European Summer Time, UTC+2.
const CEST: FixedOffset = match FixedOffset::east_opt(7200) {
    Some(offset) => offset,
    None => panic!("UTC+2 is a valid offset"),
};

const DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date and time of Unix seconds `ts` (proleptic Gregorian, UTC):
/// `(year, month, day, hour, minute, second)` (H. Hinnant's `civil_from_days`).
pub(crate) fn civil(ts: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = ts.div_euclid(DAY);
    let secs = ts.rem_euclid(DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, (secs / 3_600) as u32, ((secs % 3_600) / 60) as u32, (secs % 60) as u32)
}

/// Unix timestamp of the EU DST switch in `month` (3 or 10) of `year`:
/// the last Sunday of that month at 01:00 UTC. `None` for a month without
/// a 31st day.
pub(crate) fn dst_switch(year: i32, month: u32) -> Option<i64> {
    if !matches!(month, 1 | 3 | 5 | 7 | 8 | 10 | 12) {
        return None;
    }
    // March and October both have 31 days.
    let last_day = days_from_civil(i64::from(year), month, 31);
    // 1970-01-01 was a Thursday: (days + 4) mod 7 is 0 on Sundays.
    let back = (last_day + 4).rem_euclid(7);
    Some((last_day - back) * DAY + 3_600)
}

/// UTC offset of Europe/Paris at the Unix timestamp `ts` (seconds).
pub(crate) fn paris_offset_at(ts: i64) -> FixedOffset {
    let Ok(year) = i32::try_from(civil(ts).0) else {
        return CET;
    };
    match (dst_switch(year, 3), dst_switch(year, 10)) {
        (Some(start), Some(end)) if ts >= start && ts < end => CEST,
        _ => CET,
    }
}

/// UTC offset of Europe/Paris at the instant `utc` (`+01:00` in winter,
/// `+02:00` in summer).
pub fn paris_offset(utc: DateTime<Utc>) -> FixedOffset {
    paris_offset_at(utc.timestamp())
}

/// The instant `utc` seen as Europe/Paris local time.
pub fn to_paris(utc: DateTime<Utc>) -> DateTime<FixedOffset> {
    utc.with_timezone(&paris_offset(utc))
}

/// Formats a Unix timestamp as the Shopify `Created at` column:
/// Paris local time with its offset, e.g. `2026-03-29 09:15:00 +0200`.
pub(crate) fn format_created_at(ts: i64) -> String {
    match DateTime::from_timestamp(ts, 0) {
        Some(utc) => to_paris(utc).format("%Y-%m-%d %H:%M:%S %z").to_string(),
        None => String::new(),
    }
}

/// Formats a Unix timestamp as RFC 3339 UTC with a `Z` suffix,
/// e.g. `2026-05-01T08:12:00Z`.
pub(crate) fn format_utc(ts: i64) -> String {
    match DateTime::from_timestamp(ts, 0) {
        Some(utc) => utc.to_rfc3339_opts(SecondsFormat::Secs, true),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).map(|d| d.timestamp()).expect("valid test timestamp")
    }

    #[test]
    fn spring_2026_switch() {
        // 2026-03-29 is the last Sunday of March: 01:00 UTC becomes 03:00 local.
        assert_eq!(format_created_at(ts("2026-03-29T00:59:59Z")), "2026-03-29 01:59:59 +0100");
        assert_eq!(format_created_at(ts("2026-03-29T01:00:00Z")), "2026-03-29 03:00:00 +0200");
        assert_eq!(format_created_at(ts("2026-03-28T12:00:00Z")), "2026-03-28 13:00:00 +0100");
        assert_eq!(format_created_at(ts("2026-03-29T07:15:00Z")), "2026-03-29 09:15:00 +0200");
    }

    #[test]
    fn autumn_2026_switch() {
        // 2026-10-25 is the last Sunday of October: 01:00 UTC, 03:00 local becomes 02:00.
        assert_eq!(format_created_at(ts("2026-10-25T00:59:59Z")), "2026-10-25 02:59:59 +0200");
        assert_eq!(format_created_at(ts("2026-10-25T01:00:00Z")), "2026-10-25 02:00:00 +0100");
        assert_eq!(format_created_at(ts("2026-10-24T12:00:00Z")), "2026-10-24 14:00:00 +0200");
        assert_eq!(format_created_at(ts("2026-10-26T12:00:00Z")), "2026-10-26 13:00:00 +0100");
    }

    #[test]
    fn other_years_and_seasons() {
        // 2025: last Sundays are March 30 and October 26.
        assert_eq!(paris_offset_at(ts("2025-03-30T00:59:59Z")), CET);
        assert_eq!(paris_offset_at(ts("2025-03-30T01:00:00Z")), CEST);
        assert_eq!(paris_offset_at(ts("2025-10-26T00:59:59Z")), CEST);
        assert_eq!(paris_offset_at(ts("2025-10-26T01:00:00Z")), CET);
        assert_eq!(paris_offset_at(ts("2026-01-15T12:00:00Z")), CET);
        assert_eq!(paris_offset_at(ts("2026-07-14T12:00:00Z")), CEST);
        assert_eq!(paris_offset_at(ts("2026-12-31T23:30:00Z")), CET);
    }

    #[test]
    fn dst_switch_matches_chrono() {
        use chrono::{Datelike, NaiveDate};
        for year in 1996..2100 {
            for month in [3, 10] {
                let last = NaiveDate::from_ymd_opt(year, month, 31).unwrap();
                let back = i64::from(last.weekday().num_days_from_sunday());
                let sunday = last - chrono::Duration::days(back);
                let expected = sunday.and_hms_opt(1, 0, 0).unwrap().and_utc().timestamp();
                assert_eq!(dst_switch(year, month), Some(expected), "{year}-{month}");
            }
        }
        assert_eq!(dst_switch(2026, 4), None);
    }

    #[test]
    fn utc_format() {
        assert_eq!(format_utc(ts("2026-05-01T10:12:00+02:00")), "2026-05-01T08:12:00Z");
    }
}
