//! Number, money, percentage and date formats for the report, per [`Locale`].
//!
//! Hand-written (no ICU, no platform locale) so that the same data gives the same bytes on
//! every machine. They follow what `Intl.NumberFormat` / `Intl.DateTimeFormat` print for
//! `fr-FR` and `en-GB`:
//!
//! | | French | English |
//! |---|---|---|
//! | thousands separator | narrow no-break space U+202F | `,` |
//! | decimal separator | `,` | `.` |
//! | money | `1 234 567,89 €` (no-break space U+00A0 before the symbol) | `€1,234,567.89` |
//! | percentage | `12,5 %` (U+202F before `%`) | `12.5%` |
//! | date | `7 déc. 2026` | `7 Dec 2026` |
//!
//! Negative numbers take a leading hyphen-minus (`-1 234,50 €`, `-€1,234.50`). Rounding is
//! half away from zero on the binary value (`0.125` → `0.13`, `2.675` → `2.67` because
//! 2.675 is 2.67499… in binary); money is kept in integer minor units and never goes
//! through floating point. A value that is not finite prints as an en dash `–`.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

use super::Locale;

/// Narrow no-break space: French thousands separator and space before `%`.
pub const NARROW_NBSP: char = '\u{202F}';
/// No-break space: French space before the currency symbol.
pub const NBSP: char = '\u{00A0}';
/// What a value that is not a finite number prints as.
pub const NOT_A_NUMBER: &str = "–";

/// Number of decimal digits of an ISO 4217 currency's minor unit (2 unless listed).
pub fn currency_exponent(code: &str) -> u32 {
    match code.to_ascii_uppercase().as_str() {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF"
        | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// The symbol printed for a currency, or `None` to print the ISO code itself.
pub fn currency_symbol(code: &str) -> Option<&'static str> {
    match code.to_ascii_uppercase().as_str() {
        "EUR" => Some("€"),
        "GBP" => Some("£"),
        "USD" => Some("$"),
        "JPY" => Some("¥"),
        _ => None,
    }
}

fn separators(locale: Locale) -> (&'static str, &'static str) {
    match locale {
        Locale::Fr => ("\u{202F}", ","),
        Locale::En => (",", "."),
    }
}

/// Groups the decimal digits of `n` by three with `sep`.
fn grouped(n: u128, sep: &str) -> String {
    let digits = n.to_string();
    let len = digits.len();
    // Digits before the first separator: 1 to 3.
    let head = match len % 3 {
        0 => 3.min(len),
        r => r,
    };
    let mut out = String::with_capacity(len + len / 3 * sep.len());
    out.push_str(&digits[..head]);
    for start in (head..len).step_by(3) {
        out.push_str(sep);
        out.push_str(&digits[start..start + 3]);
    }
    out
}

/// `scaled` is the absolute value times 10^decimals, already rounded.
fn fixed(scaled: u128, decimals: u32, locale: Locale) -> String {
    let (thousands, decimal) = separators(locale);
    let unit = 10u128.pow(decimals);
    let mut out = grouped(scaled / unit, thousands);
    if decimals > 0 {
        out.push_str(decimal);
        out.push_str(&format!("{:0width$}", scaled % unit, width = decimals as usize));
    }
    out
}

/// `|value| × 10^decimals` rounded half away from zero, and whether the rounded value is
/// negative (so `-0.001` with two decimals is plain `0.00`).
fn scale(value: f64, decimals: u32) -> (u128, bool) {
    let scaled = (value.abs() * 10f64.powi(decimals as i32)).round();
    // `as` saturates: values beyond u128 print as its maximum rather than wrapping.
    let scaled = scaled as u128;
    (scaled, value < 0.0 && scaled != 0)
}

/// A plain number with `decimals` decimals: `1 234,5` / `1,234.5`.
pub fn number(value: f64, decimals: u32, locale: Locale) -> String {
    if !value.is_finite() {
        return NOT_A_NUMBER.to_owned();
    }
    let (scaled, negative) = scale(value, decimals);
    let body = fixed(scaled, decimals, locale);
    if negative {
        format!("-{body}")
    } else {
        body
    }
}

/// A whole number: `1 234 567` / `1,234,567`.
pub fn integer(value: i64, locale: Locale) -> String {
    let body = grouped(u128::from(value.unsigned_abs()), separators(locale).0);
    if value < 0 {
        format!("-{body}")
    } else {
        body
    }
}

/// A count: `1 234 567` / `1,234,567`.
pub fn count(value: u64, locale: Locale) -> String {
    grouped(u128::from(value), separators(locale).0)
}

fn with_currency(body: String, negative: bool, currency: &str, locale: Locale) -> String {
    let sign = if negative { "-" } else { "" };
    match (locale, currency_symbol(currency)) {
        (Locale::Fr, Some(symbol)) => format!("{sign}{body}{NBSP}{symbol}"),
        (Locale::Fr, None) => format!("{sign}{body}{NBSP}{}", currency.to_ascii_uppercase()),
        (Locale::En, Some(symbol)) => format!("{sign}{symbol}{body}"),
        (Locale::En, None) => format!("{sign}{}{NBSP}{body}", currency.to_ascii_uppercase()),
    }
}

/// An amount in minor units (cents) of `currency`, with all its decimals:
/// `1 234 567,89 €` / `€1,234,567.89`.
pub fn money(minor: i64, currency: &str, locale: Locale) -> String {
    let exponent = currency_exponent(currency);
    let body = fixed(u128::from(minor.unsigned_abs()), exponent, locale);
    with_currency(body, minor < 0, currency, locale)
}

/// An amount in minor units rounded to whole units (half away from zero), for axes and
/// cards: `1 234 568 €` / `€1,234,568`.
pub fn money_whole(minor: i64, currency: &str, locale: Locale) -> String {
    let unit = 10u128.pow(currency_exponent(currency));
    let whole = (u128::from(minor.unsigned_abs()) + unit / 2) / unit;
    let body = grouped(whole, separators(locale).0);
    with_currency(body, minor < 0 && whole != 0, currency, locale)
}

/// A fraction shown as a percentage: `0.125` → `12,5 %` / `12.5%`.
pub fn percent(fraction: f64, decimals: u32, locale: Locale) -> String {
    if !fraction.is_finite() {
        return NOT_A_NUMBER.to_owned();
    }
    let body = number(fraction * 100.0, decimals, locale);
    match locale {
        Locale::Fr => format!("{body}{NARROW_NBSP}%"),
        Locale::En => format!("{body}%"),
    }
}

/// A change as a signed percentage: `+12,5 %` / `-3.0%` (zero has no sign).
pub fn signed_percent(fraction: f64, decimals: u32, locale: Locale) -> String {
    let text = percent(fraction, decimals, locale);
    if fraction.is_finite() && !text.starts_with('-') && scale(fraction * 100.0, decimals).0 != 0 {
        format!("+{text}")
    } else {
        text
    }
}

/// A difference of two rates in percentage points: `0.012` → `+1,2 pt` / `+1.2 pp`.
pub fn points(fraction: f64, decimals: u32, locale: Locale) -> String {
    if !fraction.is_finite() {
        return NOT_A_NUMBER.to_owned();
    }
    let body = number(fraction * 100.0, decimals, locale);
    let sign = if body.starts_with('-') || scale(fraction * 100.0, decimals).0 == 0 { "" } else { "+" };
    match locale {
        Locale::Fr => format!("{sign}{body}{NBSP}pt"),
        Locale::En => format!("{sign}{body}{NBSP}pp"),
    }
}

/// A ratio such as a return on ad spend, two decimals: `3,25` / `3.25`.
pub fn ratio(value: f64, locale: Locale) -> String {
    number(value, 2, locale)
}

const MONTHS_FR: [&str; 12] = ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."];
const MONTHS_EN: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

fn month(date: NaiveDate, locale: Locale) -> &'static str {
    let index = date.month0() as usize;
    match locale {
        Locale::Fr => MONTHS_FR[index],
        Locale::En => MONTHS_EN[index],
    }
}

/// A date: `7 déc. 2026` / `7 Dec 2026` (no-break spaces inside).
pub fn date(date: NaiveDate, locale: Locale) -> String {
    format!("{}{NBSP}{}{NBSP}{}", date.day(), month(date, locale), date.year())
}

/// A short date without the year, for chart axes: `7 déc.` / `7 Dec`.
pub fn day_month(date: NaiveDate, locale: Locale) -> String {
    format!("{}{NBSP}{}", date.day(), month(date, locale))
}

/// A period: `du 9 nov. 2026 au 6 déc. 2026` / `9 Nov 2026 – 6 Dec 2026`.
pub fn period(from: NaiveDate, to: NaiveDate, locale: Locale) -> String {
    match locale {
        Locale::Fr => format!("du {} au {}", date(from, locale), date(to, locale)),
        Locale::En => format!("{} – {}", date(from, locale), date(to, locale)),
    }
}

/// An instant in UTC: `7 déc. 2026 à 06:00 UTC` / `7 Dec 2026, 06:00 UTC`.
pub fn datetime(at: DateTime<Utc>, locale: Locale) -> String {
    let day = date(at.date_naive(), locale);
    let (hour, minute) = (at.hour(), at.minute());
    match locale {
        Locale::Fr => format!("{day} à {hour:02}:{minute:02} UTC"),
        Locale::En => format!("{day}, {hour:02}:{minute:02} UTC"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const FR: Locale = Locale::Fr;
    const EN: Locale = Locale::En;

    #[test]
    fn money_in_both_locales() {
        assert_eq!(money(123_456_789, "EUR", FR), "1\u{202F}234\u{202F}567,89\u{A0}€");
        assert_eq!(money(123_456_789, "EUR", EN), "€1,234,567.89");
        assert_eq!(money(0, "EUR", FR), "0,00\u{A0}€");
        assert_eq!(money(0, "EUR", EN), "€0.00");
        assert_eq!(money(5, "EUR", EN), "€0.05");
        assert_eq!(money(-123_450, "EUR", FR), "-1\u{202F}234,50\u{A0}€");
        assert_eq!(money(-123_450, "EUR", EN), "-€1,234.50");
        assert_eq!(money(99_900, "GBP", EN), "£999.00");
        assert_eq!(money(1_234, "JPY", EN), "¥1,234");
        assert_eq!(money(1_234, "JPY", FR), "1\u{202F}234\u{A0}¥");
        assert_eq!(money(1_234_500, "CHF", EN), "CHF\u{A0}12,345.00");
        assert_eq!(money(1_234_500, "chf", FR), "12\u{202F}345,00\u{A0}CHF");
        assert_eq!(money(1_234_567, "KWD", EN), "KWD\u{A0}1,234.567");
    }

    #[test]
    fn money_at_the_limits() {
        assert_eq!(money(i64::MAX, "EUR", EN), "€92,233,720,368,547,758.07");
        assert_eq!(money(i64::MIN, "EUR", FR), "-92\u{202F}233\u{202F}720\u{202F}368\u{202F}547\u{202F}758,08\u{A0}€");
    }

    #[test]
    fn money_rounded_to_whole_units() {
        assert_eq!(money_whole(123_456_789, "EUR", FR), "1\u{202F}234\u{202F}568\u{A0}€");
        assert_eq!(money_whole(123_456_749, "EUR", EN), "€1,234,567");
        assert_eq!(money_whole(50, "EUR", EN), "€1");
        assert_eq!(money_whole(-50, "EUR", EN), "-€1");
        assert_eq!(money_whole(-49, "EUR", EN), "€0");
        assert_eq!(money_whole(0, "EUR", FR), "0\u{A0}€");
        assert_eq!(money_whole(1_234, "JPY", EN), "¥1,234");
    }

    #[test]
    fn numbers_and_rounding() {
        assert_eq!(number(1_234_567.891, 2, FR), "1\u{202F}234\u{202F}567,89");
        assert_eq!(number(1_234_567.891, 2, EN), "1,234,567.89");
        assert_eq!(number(0.125, 2, EN), "0.13");
        assert_eq!(number(-0.125, 2, EN), "-0.13");
        assert_eq!(number(2.5, 0, EN), "3");
        assert_eq!(number(-2.5, 0, FR), "-3");
        assert_eq!(number(-0.001, 2, FR), "0,00");
        assert_eq!(number(0.0, 1, FR), "0,0");
        assert_eq!(number(-0.0, 1, EN), "0.0");
        assert_eq!(number(999.96, 1, EN), "1,000.0");
        assert_eq!(number(f64::NAN, 1, EN), "–");
        assert_eq!(number(f64::INFINITY, 1, FR), "–");
        assert_eq!(number(1e15, 0, EN), "1,000,000,000,000,000");
        assert_eq!(integer(-1_234_567, FR), "-1\u{202F}234\u{202F}567");
        assert_eq!(integer(i64::MIN, EN), "-9,223,372,036,854,775,808");
        assert_eq!(integer(0, EN), "0");
        assert_eq!(count(999, EN), "999");
        assert_eq!(count(1_000, EN), "1,000");
        assert_eq!(count(1_000, FR), "1\u{202F}000");
        assert_eq!(count(u64::MAX, EN), "18,446,744,073,709,551,615");
        assert_eq!(ratio(3.254, FR), "3,25");
        assert_eq!(ratio(3.255, EN), "3.26");
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(0.125, 1, FR), "12,5\u{202F}%");
        assert_eq!(percent(0.125, 1, EN), "12.5%");
        assert_eq!(percent(0.0, 1, FR), "0,0\u{202F}%");
        assert_eq!(percent(-0.034, 1, EN), "-3.4%");
        assert_eq!(percent(12.345, 0, EN), "1,235%");
        assert_eq!(percent(0.99999, 1, FR), "100,0\u{202F}%");
        assert_eq!(percent(f64::NAN, 1, FR), "–");
        assert_eq!(signed_percent(0.125, 1, FR), "+12,5\u{202F}%");
        assert_eq!(signed_percent(-0.03, 1, EN), "-3.0%");
        assert_eq!(signed_percent(0.0, 1, EN), "0.0%");
        assert_eq!(signed_percent(-0.0001, 1, EN), "0.0%");
        assert_eq!(points(0.012, 1, FR), "+1,2\u{A0}pt");
        assert_eq!(points(-0.004, 1, EN), "-0.4\u{A0}pp");
        assert_eq!(points(0.0, 1, EN), "0.0\u{A0}pp");
    }

    #[test]
    fn dates_in_both_locales() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        assert_eq!(date(d, FR), "7\u{A0}déc.\u{A0}2026");
        assert_eq!(date(d, EN), "7\u{A0}Dec\u{A0}2026");
        assert_eq!(day_month(d, EN), "7\u{A0}Dec");
        let feb = NaiveDate::from_ymd_opt(2027, 2, 28).unwrap();
        assert_eq!(date(feb, FR), "28\u{A0}févr.\u{A0}2027");
        let aug = NaiveDate::from_ymd_opt(2026, 8, 1).unwrap();
        assert_eq!(date(aug, FR), "1\u{A0}août\u{A0}2026");
        assert_eq!(period(aug, d, FR), "du 1\u{A0}août\u{A0}2026 au 7\u{A0}déc.\u{A0}2026");
        assert_eq!(period(aug, d, EN), "1\u{A0}Aug\u{A0}2026 – 7\u{A0}Dec\u{A0}2026");
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 6, 5, 0).unwrap();
        assert_eq!(datetime(at, FR), "7\u{A0}déc.\u{A0}2026 à 06:05 UTC");
        assert_eq!(datetime(at, EN), "7\u{A0}Dec\u{A0}2026, 06:05 UTC");
    }

    #[test]
    fn currency_tables() {
        assert_eq!(currency_exponent("EUR"), 2);
        assert_eq!(currency_exponent("jpy"), 0);
        assert_eq!(currency_exponent("TND"), 3);
        assert_eq!(currency_symbol("eur"), Some("€"));
        assert_eq!(currency_symbol("SEK"), None);
    }

    proptest::proptest! {
        /// Removing the separators and the symbol from a formatted amount gives back the
        /// minor units, in both locales.
        #[test]
        fn money_round_trips(minor in proptest::prelude::any::<i64>()) {
            for locale in [FR, EN] {
                let text = money(minor, "EUR", locale);
                let digits: String = text
                    .chars()
                    .filter(|c| c.is_ascii_digit() || *c == '-')
                    .collect();
                proptest::prop_assert_eq!(digits.parse::<i128>().unwrap(), i128::from(minor));
            }
        }
    }
}
