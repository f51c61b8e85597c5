//! Exact decimal amounts in minor units (cents): never floats.

/// Why a text is not an amount (the reason a row is rejected with).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("empty amount")]
    Empty,
    #[error("{0:?} is not an amount")]
    Invalid(String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// Parses `24.90`, `24,90`, `24`, `-3.5` into minor units with two decimals.
/// `decimal` is the decimal separator the export uses.
pub fn parse_minor(raw: &str, decimal: char) -> Result<i64, AmountError> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(AmountError::Empty);
    }
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int_part, frac_part) = match digits.split_once(decimal) {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    let valid_int = !int_part.is_empty() && int_part.bytes().all(|b| b.is_ascii_digit());
    let valid_frac = frac_part.len() <= 2 && frac_part.bytes().all(|b| b.is_ascii_digit());
    if !valid_int || !valid_frac || (digits.contains(decimal) && frac_part.is_empty()) {
        return Err(AmountError::Invalid(s.to_string()));
    }
    let int: i64 = int_part.parse().map_err(|_| AmountError::TooLarge(s.to_string()))?;
    let frac: i64 = match frac_part.len() {
        0 => 0,
        1 => frac_part.parse::<i64>().unwrap_or(0) * 10,
        _ => frac_part.parse::<i64>().unwrap_or(0),
    };
    let minor = int.checked_mul(100).and_then(|v| v.checked_add(frac)).ok_or_else(|| AmountError::TooLarge(s.to_string()))?;
    Ok(if neg { -minor } else { minor })
}

#[cfg(test)]
mod tests {
    use super::{parse_minor, AmountError};
    use proptest::prelude::*;

    #[test]
    fn parses_exact_amounts() {
        assert_eq!(parse_minor("24.90", '.'), Ok(2490));
        assert_eq!(parse_minor(" 12,5 ", ','), Ok(1250));
        assert_eq!(parse_minor("7", '.'), Ok(700));
        assert_eq!(parse_minor("-3.05", '.'), Ok(-305));
        assert_eq!(parse_minor("0.01", '.'), Ok(1));
    }

    #[test]
    fn reasons_name_the_value() {
        assert_eq!(parse_minor(" ", '.').unwrap_err().to_string(), "empty amount");
        assert_eq!(parse_minor("12,9O", ',').unwrap_err().to_string(), "\"12,9O\" is not an amount");
        assert_eq!(parse_minor("99999999999999999999", '.'), Err(AmountError::TooLarge("99999999999999999999".into())));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "N/A", "12,9O", "1.234", "1.", ".5", "12.5€", "1e3", "--1", "12,50"] {
            assert!(parse_minor(bad, '.').is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn round_trips_cents(c in 0i64..10_000_000_000) {
            let s = format!("{}.{:02}", c / 100, c % 100);
            prop_assert_eq!(parse_minor(&s, '.'), Ok(c));
        }
    }
}
