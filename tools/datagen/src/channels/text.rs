//! Fast formatting helpers of the channel writers: dates in the formats the
//! specs declare, amounts, JSON strings, identifiers as people and systems
//! write them, and Paris local time.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::ecommerce::{capitalise_email, format_phone};
use crate::rng::{pick_weighted, splitmix64};
use crate::time::paris_offset_at;

pub(crate) const MINUTE: i64 = 60;
pub(crate) const HOUR: i64 = 3_600;
pub(crate) const DAY: i64 = 86_400;

pub(crate) use crate::time::civil;

/// Day of week of Unix seconds `ts` (UTC), 0 = Sunday.
pub(crate) fn weekday(ts: i64) -> i64 {
    (ts.div_euclid(DAY) + 4).rem_euclid(7)
}

fn push2(buf: &mut String, n: u32) {
    buf.push(char::from(b'0' + (n / 10 % 10) as u8));
    buf.push(char::from(b'0' + (n % 10) as u8));
}

fn push_year(buf: &mut String, y: i64) {
    if (0..10_000).contains(&y) {
        let y = y as u32;
        push2(buf, y / 100);
        push2(buf, y % 100);
    } else {
        buf.push_str(&y.to_string());
    }
}

/// `dd/mm/yyyy hh:mm` (with `:ss` when `seconds`) of local seconds `local`.
pub(crate) fn push_dmy_hm(buf: &mut String, local: i64, seconds: bool) {
    let (y, mo, d, h, mi, s) = civil(local);
    push2(buf, d);
    buf.push('/');
    push2(buf, mo);
    buf.push('/');
    push_year(buf, y);
    buf.push(' ');
    push2(buf, h);
    buf.push(':');
    push2(buf, mi);
    if seconds {
        buf.push(':');
        push2(buf, s);
    }
}

/// `yyyy-mm-dd hh:mm:ss` of seconds `ts`.
pub(crate) fn push_ymd_hms(buf: &mut String, ts: i64) {
    push_date_time(buf, ts, ' ');
}

/// `yyyy-mm-dd{sep}hh:mm:ss` of seconds `ts`.
fn push_date_time(buf: &mut String, ts: i64, sep: char) {
    let (y, mo, d, h, mi, s) = civil(ts);
    push_year(buf, y);
    buf.push('-');
    push2(buf, mo);
    buf.push('-');
    push2(buf, d);
    buf.push(sep);
    push2(buf, h);
    buf.push(':');
    push2(buf, mi);
    buf.push(':');
    push2(buf, s);
}

/// `yyyymmdd` of seconds `ts` (GA4 `event_date`).
pub(crate) fn push_ymd_compact(buf: &mut String, ts: i64) {
    let (y, mo, d, ..) = civil(ts);
    push_year(buf, y);
    push2(buf, mo);
    push2(buf, d);
}

/// RFC 3339 UTC of seconds `ts`: `2026-05-01T08:12:00Z`.
pub(crate) fn push_rfc3339(buf: &mut String, ts: i64) {
    push_date_time(buf, ts, 'T');
    buf.push('Z');
}

/// RFC 3339 UTC of milliseconds `ms`, with `.mmm` only when not whole seconds.
pub(crate) fn push_rfc3339_ms(buf: &mut String, ms: i64) {
    push_rfc3339(buf, ms.div_euclid(1000));
    let frac = ms.rem_euclid(1000) as u32;
    if frac != 0 {
        buf.pop();
        buf.push('.');
        buf.push(char::from(b'0' + (frac / 100) as u8));
        push2(buf, frac % 100);
        buf.push('Z');
    }
}

/// Paris local seconds of the instant `ts`.
pub(crate) fn paris_local(ts: i64) -> i64 {
    ts + i64::from(paris_offset_at(ts).local_minus_utc())
}

/// The instant of Paris local seconds `local`: the earlier one when the
/// local time occurs twice, the instant one hour later when it does not exist.
pub(crate) fn paris_instant(local: i64) -> i64 {
    let summer = local - 2 * HOUR;
    if paris_offset_at(summer).local_minus_utc() == 7200 {
        summer
    } else {
        local - HOUR
    }
}

/// The truth `note` of an instant written as Paris local time.
pub(crate) fn dst_note(ts: i64) -> &'static str {
    let off = |t: i64| paris_offset_at(t).local_minus_utc();
    let (now, before, after) = (off(ts), off(ts - HOUR), off(ts + HOUR));
    match (before, now, after) {
        (_, 3600, 7200) => "dst_spring_forward_before",
        (3600, 7200, _) => "dst_spring_forward_after",
        (_, 7200, 3600) => "dst_fall_back_first",
        (7200, 3600, _) => "dst_fall_back_second",
        _ => "",
    }
}

/// Relative frequency of Paris local hours 0..24 for online activity.
pub(crate) const ONLINE_HOUR_WEIGHTS: [u32; 24] =
    [10, 5, 3, 2, 2, 3, 10, 20, 30, 40, 50, 50, 60, 60, 50, 50, 50, 50, 60, 70, 80, 80, 60, 30];

/// An instant between `oldest` and `newest` seconds before `now`, at a Paris
/// local hour drawn from `hour_weights`, never after `now`.
pub(crate) fn draw_local_time(rng: &mut ChaCha8Rng, now: i64, oldest: i64, newest: i64, hour_weights: &[u32; 24]) -> i64 {
    let age = rng.random_range(newest..=oldest.max(newest));
    let hour = pick_weighted(rng, hour_weights) as i64;
    let second = rng.random_range(0..HOUR);
    let local = paris_local(now - age);
    let midnight = local - local.rem_euclid(DAY);
    let ts = paris_instant(midnight + hour * HOUR + second);
    if ts > now - newest {
        now - newest
    } else {
        ts
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            c if (c as u32) < 0x20 => buf.push_str(&format!("\\u{:04x}", c as u32)),
            c => buf.push(c),
        }
    }
    buf.push('"');
}

/// Appends cents as an amount with two decimals and `decimal` as separator:
/// `2990` → `29,90`.
pub(crate) fn push_amount(buf: &mut String, cents: i64, decimal: char) {
    if cents < 0 {
        buf.push('-');
    }
    let c = cents.unsigned_abs();
    buf.push_str(&(c / 100).to_string());
    buf.push(decimal);
    push2(buf, (c % 100) as u32);
}

/// Appends cents as a JSON number the way analytics SDKs print floats:
/// `2990` → `29.9`, `4900` → `49.0`, `2445` → `24.45`.
pub(crate) fn push_json_price(buf: &mut String, cents: i64) {
    let c = cents.unsigned_abs();
    if cents < 0 {
        buf.push('-');
    }
    buf.push_str(&(c / 100).to_string());
    buf.push('.');
    let frac = (c % 100) as u32;
    let (tenths, hundredths) = (frac / 10, frac % 10);
    buf.push(char::from(b'0' + tenths as u8));
    if hundredths != 0 {
        buf.push(char::from(b'0' + hundredths as u8));
    }
}

/// Amount typo of a required price: a letter O for the last zero (`12,9O`
/// with `decimal` = `,`) or `N/A`.
pub(crate) fn bad_amount(cents: i64, variant: usize, decimal: char) -> String {
    let c = cents.unsigned_abs();
    if variant % 3 == 2 {
        "N/A".to_owned()
    } else {
        format!("{}{decimal}{}O", c / 100, (c % 100) / 10)
    }
}

/// Phone styles: 0 `06 12 34 56 78`, 1 `0612345678`, 2 `+33 6 12 34 56 78`,
/// 3 `06.12.34.56.78`, 4 `+33612345678`, 5 `33612345678` (SMS gateways).
pub(crate) fn phone(e164: &str, style: usize) -> String {
    if style == 5 {
        return e164.trim_start_matches('+').to_owned();
    }
    format_phone(e164, style)
}

/// The e-mail as a system that mostly normalises it writes it: canonical
/// most of the time, otherwise capitalised, upper case or padded with spaces.
pub(crate) fn dirty_email(rng: &mut ChaCha8Rng, canonical: &str, dirty_percent: u32) -> String {
    if rng.random_range(0..100u32) >= dirty_percent {
        return canonical.to_owned();
    }
    match rng.random_range(0..5u32) {
        0 => capitalise_email(canonical),
        1 => canonical.to_uppercase(),
        2 => format!(" {canonical}"),
        3 => format!("  {} ", capitalise_email(canonical)),
        _ => format!("{canonical} "),
    }
}

/// A canonical loyalty card number (`ARF0123456789`) as typed or scanned:
/// spaced (`ARF 0123 4567 89`), lower case, padded.
pub(crate) fn card_variant(canonical: &str, style: u32) -> String {
    match style {
        0 => canonical.to_ascii_lowercase(),
        1 | 2 => {
            let (prefix, digits) = canonical.split_at(3.min(canonical.len()));
            let mut s = String::with_capacity(canonical.len() + 4);
            s.push_str(prefix);
            for (i, c) in digits.chars().enumerate() {
                if i % 4 == 0 {
                    s.push(' ');
                }
                s.push(c);
            }
            if style == 2 {
                s.make_ascii_lowercase();
            }
            s
        }
        3 => format!(" {canonical} "),
        _ => canonical.to_owned(),
    }
}

/// An e-mail mistyped beyond repair (the row is kept, the identifier
/// dropped): `@` forgotten, doubled, or the top-level domain cut off.
pub(crate) fn mistype_email(email: &str, variant: usize) -> String {
    match variant % 3 {
        0 => email.replacen('@', "", 1),
        1 => email.replacen('@', "@@", 1),
        _ => match (email.find('@'), email.rfind('.')) {
            (Some(at), Some(dot)) if dot > at => {
                let trailing = &email[email.trim_end().len()..];
                format!("{}{trailing}", &email[..dot])
            }
            _ => email.replacen('@', "", 1),
        },
    }
}

/// A phone number mistyped beyond repair: a digit missing or one too many.
pub(crate) fn mistype_phone(phone: &str, variant: usize) -> String {
    let core = phone.trim_end();
    match variant % 2 {
        0 => core[..core.len().saturating_sub(1)].to_owned(),
        _ => format!("{core}9"),
    }
}

/// SplitMix64's finaliser: a bijection of `u64`, used to turn counters into
/// unique, random-looking identifiers.
pub(crate) fn mix64(x: u64) -> u64 {
    let mut state = x.wrapping_sub(0x9E37_79B9_7F4A_7C15);
    splitmix64(&mut state)
}

/// A UUID-shaped string (version 4 layout) from 128 bits.
pub(crate) fn uuid(hi: u64, lo: u64, upper: bool) -> String {
    let hi = (hi & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000;
    let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    let s = format!("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", hi >> 32, (hi >> 16) & 0xFFFF, hi & 0xFFFF, lo >> 48, lo & 0xFFFF_FFFF_FFFF);
    if upper {
        s.to_ascii_uppercase()
    } else {
        s
    }
}

/// `MARIE` / `Marie` helpers for CRM dirt.
pub(crate) fn upper(s: &str) -> String {
    s.to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Datelike, Timelike};

    #[test]
    fn civil_matches_chrono() {
        for ts in [0i64, 951_782_400, 1_709_251_199, 1_795_392_000, 1_774_746_000, 4_102_444_800, -86_401] {
            let d = DateTime::from_timestamp(ts, 0).unwrap();
            assert_eq!(civil(ts), (i64::from(d.year()), d.month(), d.day(), d.hour(), d.minute(), d.second()), "{ts}");
            assert_eq!(weekday(ts), i64::from(d.weekday().num_days_from_sunday()));
        }
    }

    #[test]
    fn date_formats() {
        let ts = 1_774_746_000; // 2026-03-29T01:00:00Z
        let mut b = String::new();
        push_dmy_hm(&mut b, paris_local(ts), false);
        assert_eq!(b, "29/03/2026 03:00");
        b.clear();
        push_dmy_hm(&mut b, paris_local(ts - 60), true);
        assert_eq!(b, "29/03/2026 01:59:00");
        b.clear();
        push_ymd_hms(&mut b, ts);
        assert_eq!(b, "2026-03-29 01:00:00");
        b.clear();
        push_rfc3339_ms(&mut b, ts * 1000 + 7);
        assert_eq!(b, "2026-03-29T01:00:00.007Z");
        b.clear();
        push_rfc3339_ms(&mut b, ts * 1000);
        assert_eq!(b, "2026-03-29T01:00:00Z");
        b.clear();
        push_ymd_compact(&mut b, ts);
        assert_eq!(b, "20260329");
    }

    #[test]
    fn paris_round_trip_and_notes() {
        let spring = 1_774_746_000; // 2026-03-29T01:00:00Z
        let autumn = 1_792_890_000; // 2026-10-25T01:00:00Z
        assert_eq!(dst_note(spring - 900), "dst_spring_forward_before");
        assert_eq!(dst_note(spring + 900), "dst_spring_forward_after");
        assert_eq!(dst_note(autumn - 1800), "dst_fall_back_first");
        assert_eq!(dst_note(autumn + 1800), "dst_fall_back_second");
        assert_eq!(dst_note(autumn + 3 * HOUR), "");
        assert_eq!(paris_local(autumn - 1800), paris_local(autumn + 1800));
        assert_eq!(paris_instant(paris_local(autumn + 1800)), autumn - 1800);
        for ts in [spring + 5 * HOUR, autumn + 5 * HOUR, 1_790_000_000] {
            assert_eq!(paris_instant(paris_local(ts)), ts);
        }
    }

    #[test]
    fn amounts_and_json() {
        let mut b = String::new();
        push_amount(&mut b, 2990, ',');
        b.push(' ');
        push_amount(&mut b, -505, '.');
        b.push(' ');
        push_json_price(&mut b, 2990);
        b.push(' ');
        push_json_price(&mut b, 4900);
        b.push(' ');
        push_json_price(&mut b, 2445);
        assert_eq!(b, "29,90 -5.05 29.9 49.0 24.45");
        b.clear();
        push_json_str(&mut b, "Tote \"Paris\" \\ é");
        assert_eq!(b, r#""Tote \"Paris\" \\ é""#);
        assert_eq!(bad_amount(1290, 0, ','), "12,9O");
        assert_eq!(bad_amount(1290, 1, '.'), "12.9O");
        assert_eq!(bad_amount(1290, 2, '.'), "N/A");
    }

    #[test]
    fn identifier_variants() {
        assert_eq!(phone("+33612345678", 5), "33612345678");
        assert_eq!(phone("+33612345678", 2), "+33 6 12 34 56 78");
        assert_eq!(card_variant("ARF0123456789", 1), "ARF 0123 4567 89");
        assert_eq!(card_variant("ARF0123456789", 2), "arf 0123 4567 89");
        assert_eq!(card_variant("ARF0123456789", 0), "arf0123456789");
        assert_eq!(mistype_email("marie@gmail.com", 0), "mariegmail.com");
        assert_eq!(mistype_email("marie@gmail.com", 1), "marie@@gmail.com");
        assert_eq!(mistype_email(" Marie@Gmail.com ", 2), " Marie@Gmail ");
        assert_eq!(mistype_phone("06 12 34 56 78", 0), "06 12 34 56 7");
        assert_eq!(mistype_phone("+33612345678", 1), "+336123456789");
        let u = uuid(1, 2, false);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(mix64(1), mix64(2));
    }
}
