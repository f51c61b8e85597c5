//! Europe/Paris local time without a time-zone database.
//!
//! France follows the EU rule: summer time (UTC+2) from the last Sunday of
//! March at 01:00 UTC until the last Sunday of October at 01:00 UTC, winter
//! time (UTC+1) otherwise. The rule has been stable since 1996, which covers
//! every date this generator produces.

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, SecondsFormat, Utc};

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

/// Unix timestamp of the EU DST switch in `month` (3 or 10) of `year`:
/// the last Sunday of that month at 01:00 UTC.
fn dst_switch(year: i32, month: u32) -> Option<i64> {
    // March and October both have 31 days.
    let last_day = NaiveDate::from_ymd_opt(year, month, 31)?;
    let back = i64::from(last_day.weekday().num_days_from_sunday());
    let sunday = last_day - Duration::days(back);
    Some(sunday.and_hms_opt(1, 0, 0)?.and_utc().timestamp())
}

/// UTC offset of Europe/Paris at the Unix timestamp `ts` (seconds).
pub(crate) fn paris_offset_at(ts: i64) -> FixedOffset {
    let Some(year) = DateTime::from_timestamp(ts, 0).map(|d| d.year()) else {
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
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp())
            .expect("valid test timestamp")
    }

    #[test]
    fn spring_2026_switch() {
        // 2026-03-29 is the last Sunday of March: 01:00 UTC becomes 03:00 local.
        assert_eq!(
            format_created_at(ts("2026-03-29T00:59:59Z")),
            "2026-03-29 01:59:59 +0100"
        );
        assert_eq!(
            format_created_at(ts("2026-03-29T01:00:00Z")),
            "2026-03-29 03:00:00 +0200"
        );
        assert_eq!(
            format_created_at(ts("2026-03-28T12:00:00Z")),
            "2026-03-28 13:00:00 +0100"
        );
        assert_eq!(
            format_created_at(ts("2026-03-29T07:15:00Z")),
            "2026-03-29 09:15:00 +0200"
        );
    }

    #[test]
    fn autumn_2026_switch() {
        // 2026-10-25 is the last Sunday of October: 01:00 UTC, 03:00 local becomes 02:00.
        assert_eq!(
            format_created_at(ts("2026-10-25T00:59:59Z")),
            "2026-10-25 02:59:59 +0200"
        );
        assert_eq!(
            format_created_at(ts("2026-10-25T01:00:00Z")),
            "2026-10-25 02:00:00 +0100"
        );
        assert_eq!(
            format_created_at(ts("2026-10-24T12:00:00Z")),
            "2026-10-24 14:00:00 +0200"
        );
        assert_eq!(
            format_created_at(ts("2026-10-26T12:00:00Z")),
            "2026-10-26 13:00:00 +0100"
        );
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
    fn utc_format() {
        assert_eq!(
            format_utc(ts("2026-05-01T10:12:00+02:00")),
            "2026-05-01T08:12:00Z"
        );
    }
}
