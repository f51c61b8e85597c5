//! Deterministic generation of one synthetic person from `(seed, index)`.

use rand::Rng;

use crate::data::{CITIES, EMAIL_PROVIDERS, FIRST_NAMES, LAST_NAMES};
use crate::rng::{person_rng, pick_index, pick_weighted, pick_weighted_by, splitmix64, Stream};
use crate::{GenConfig, Person};

/// E-mail local-part patterns: `marie.dupont`, `mariedupont`, `marie_dupont`,
/// `m.dupont`, `dupont.marie`, `mdupont`.
const EMAIL_PATTERN_WEIGHTS: &[u32] = &[35, 12, 10, 13, 10, 12];

/// Share of French mobile numbers starting with `06` (the rest use `07`).
const PHONE_06_PERCENT: u32 = 75;

/// Lowercase ASCII form of a name for e-mail addresses: accents are stripped,
/// ligatures expanded, hyphens kept, spaces and apostrophes dropped
/// (`Lefèvre` → `lefevre`, `N'Diaye` → `ndiaye`, `Le Gall` → `legall`).
pub(crate) fn email_slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    for c in name.chars() {
        match c {
            'à' | 'â' | 'ä' | 'á' | 'À' | 'Â' | 'Ä' | 'Á' => out.push('a'),
            'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' | 'Ê' | 'Ë' => out.push('e'),
            'î' | 'ï' | 'í' | 'Î' | 'Ï' => out.push('i'),
            'ô' | 'ö' | 'ó' | 'Ô' | 'Ö' => out.push('o'),
            'ù' | 'û' | 'ü' | 'ú' | 'Ù' | 'Û' | 'Ü' => out.push('u'),
            'ç' | 'Ç' => out.push('c'),
            'ÿ' | 'Ÿ' => out.push('y'),
            'ñ' | 'Ñ' => out.push('n'),
            'œ' | 'Œ' => out.push_str("oe"),
            'æ' | 'Æ' => out.push_str("ae"),
            '-' => out.push('-'),
            c if c.is_ascii_alphanumeric() => out.push(c.to_ascii_lowercase()),
            _ => {}
        }
    }
    out
}

/// First character of a slug (as a string), for initial-based patterns.
fn initial(slug: &str) -> &str {
    slug.char_indices().nth(1).map_or(slug, |(i, _)| &slug[..i])
}

/// Maps `index` (mod 10^8) to 8 subscriber digits through a 4-round,
/// seed-keyed Feistel network on two 4-digit halves: a bijection of
/// `0..10^8`, so numbers are unique without looking sequential.
pub(crate) fn subscriber_number(seed: u64, index: u64) -> u64 {
    const HALF: u64 = 10_000;
    let x = index % (HALF * HALF);
    let (mut left, mut right) = (x / HALF, x % HALF);
    for round in 0..4u64 {
        let mut state = seed ^ round.wrapping_mul(0xA076_1D64_78BD_642F) ^ right.wrapping_mul(0xE703_7ED1_A0B4_28DB);
        let f = splitmix64(&mut state) % HALF;
        (left, right) = (right, (left + f) % HALF);
    }
    left * HALF + right
}

/// Whether `0{prefix}{subscriber:08}` is in the French mobile ranges that
/// phone validators (libphonenumber) accept: `06` then `[0-24-8]x`, `3[0-8]`
/// or `9[589]`; `07` then `[3-9]`.
pub(crate) fn allocated_mobile(prefix: u64, subscriber: u64) -> bool {
    let (first, second) = (subscriber / 10_000_000 % 10, subscriber / 1_000_000 % 10);
    match prefix {
        6 => match first {
            3 => second <= 8,
            9 => matches!(second, 5 | 8 | 9),
            _ => true,
        },
        7 => first >= 3,
        _ => false,
    }
}

/// Generates person `index`. See [`crate::person`].
pub(crate) fn generate(cfg: &GenConfig, index: usize) -> Person {
    let index64 = index as u64;
    let mut rng = person_rng(cfg.seed, index64, Stream::Identity);

    let first_name = FIRST_NAMES[pick_index(&mut rng, FIRST_NAMES.len())];
    let last_name = LAST_NAMES[pick_index(&mut rng, LAST_NAMES.len())];

    // E-mail: name-based local part + two "birth year" digits + the person
    // index. The local part before the digits never contains a digit and the
    // year is always exactly two digits, so the trailing digit run encodes the
    // index unambiguously: e-mails are unique per person by construction.
    let f = email_slug(first_name);
    let l = email_slug(last_name);
    let local = match pick_weighted(&mut rng, EMAIL_PATTERN_WEIGHTS) {
        0 => format!("{f}.{l}"),
        1 => format!("{f}{l}"),
        2 => format!("{f}_{l}"),
        3 => format!("{}.{l}", initial(&f)),
        4 => format!("{l}.{f}"),
        _ => format!("{}{l}", initial(&f)),
    };
    let birth_year: u32 = rng.random_range(1950..=2007);
    let provider = EMAIL_PROVIDERS[pick_weighted_by(&mut rng, EMAIL_PROVIDERS, |&(_, w)| w)].0;
    let email = format!("{local}{:02}{index}@{provider}", birth_year % 100);

    // Phone: the 8 subscriber digits are a seeded bijection of the index
    // modulo 10^8, hence unique per person for fewer than 100 million persons.
    // The 06/07 prefix is switched when the preferred one would put the
    // number outside the allocated mobile ranges (see `allocated_mobile`);
    // one of them always fits, and the number stays unique.
    let subscriber = subscriber_number(cfg.seed, index64);
    let preferred = if rng.random_range(0..100u32) < PHONE_06_PERCENT { 6 } else { 7 };
    let mobile_prefix = if allocated_mobile(preferred, subscriber) { preferred } else { 13 - preferred };
    let phone_e164 = format!("+33{mobile_prefix}{subscriber:08}");

    let city = &CITIES[pick_weighted_by(&mut rng, CITIES, |c| c.weight)];
    let postal_code = city.postal_codes[pick_index(&mut rng, city.postal_codes.len())];

    // Shopify-like 13-digit customer id, increasing with the index (accounts
    // created over time) and unique because the jitter stays below the step.
    let jitter: u64 = rng.random_range(0..1000);
    let customer_id = 6_100_000_000_000u64.wrapping_add(index64.wrapping_mul(1000)).wrapping_add(jitter);

    Person {
        person_id: format!("P{index:07}"),
        first_name: first_name.to_owned(),
        last_name: last_name.to_owned(),
        email,
        phone_e164,
        postal_code: postal_code.to_owned(),
        city: city.name.to_owned(),
        customer_id: customer_id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use std::collections::HashSet;

    fn cfg(seed: u64) -> GenConfig {
        GenConfig::new(seed, 0, Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap())
    }

    #[test]
    fn slugs() {
        assert_eq!(email_slug("Lefèvre"), "lefevre");
        assert_eq!(email_slug("Gaëlle"), "gaelle");
        assert_eq!(email_slug("Jean-François"), "jean-francois");
        assert_eq!(email_slug("N'Diaye"), "ndiaye");
        assert_eq!(email_slug("Le Gall"), "legall");
        assert_eq!(email_slug("Lebœuf"), "leboeuf");
        assert_eq!(email_slug("Élodie"), "elodie");
        assert_eq!(initial("elodie"), "e");
        for name in FIRST_NAMES.iter().chain(LAST_NAMES) {
            let slug = email_slug(name);
            assert!(!slug.is_empty() && slug.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{name}");
        }
    }

    #[test]
    fn person_fields_are_well_formed_and_unique() {
        let cfg = cfg(42);
        let mut emails = HashSet::new();
        let mut phones = HashSet::new();
        let mut customers = HashSet::new();
        for i in 0..3000 {
            let p = generate(&cfg, i);
            assert_eq!(p.person_id, format!("P{i:07}"));
            assert_eq!(p.email, p.email.trim().to_lowercase());
            assert!(p.email.is_ascii() && p.email.contains('@'), "{}", p.email);
            assert!(p.phone_e164.starts_with("+336") || p.phone_e164.starts_with("+337"));
            assert_eq!(p.phone_e164.len(), 12);
            let prefix = u64::from(p.phone_e164.as_bytes()[3] - b'0');
            let subscriber: u64 = p.phone_e164[4..].parse().unwrap();
            assert!(allocated_mobile(prefix, subscriber), "{}", p.phone_e164);
            assert!(p.postal_code.len() == 5 && p.postal_code.bytes().all(|b| b.is_ascii_digit()));
            assert!(p.customer_id.bytes().all(|b| b.is_ascii_digit()));
            let city = CITIES.iter().find(|c| c.name == p.city).expect("known city");
            assert!(city.postal_codes.contains(&p.postal_code.as_str()));
            assert!(emails.insert(p.email.clone()), "duplicate email {}", p.email);
            assert!(phones.insert(p.phone_e164.clone()), "duplicate phone {}", p.phone_e164);
            assert!(customers.insert(p.customer_id.clone()));
        }
        assert_eq!(generate(&cfg, 17).email, generate(&cfg, 17).email);
    }

    #[test]
    fn subscriber_numbers_are_a_bijection() {
        let mut seen = HashSet::new();
        for i in 0..200_000 {
            let n = subscriber_number(42, i);
            assert!(n < 100_000_000);
            assert!(seen.insert(n), "collision at {i}");
        }
        assert_ne!(subscriber_number(42, 5), subscriber_number(43, 5));
    }

    #[test]
    fn mobile_ranges() {
        for ok in ["612345678", "630000000", "638999999", "695000000", "699999999", "730000000", "799999999"] {
            let n: u64 = ok.parse().unwrap();
            assert!(allocated_mobile(n / 100_000_000, n % 100_000_000), "{ok}");
        }
        for bad in ["639000000", "690000000", "694999999", "696000000", "700000000", "729999999"] {
            let n: u64 = bad.parse().unwrap();
            assert!(!allocated_mobile(n / 100_000_000, n % 100_000_000), "{bad}");
        }
        // Every subscriber number fits under one of the two prefixes.
        for subscriber in (0..100_000_000).step_by(99_991) {
            assert!(allocated_mobile(6, subscriber) || allocated_mobile(7, subscriber));
        }
    }

    #[test]
    fn nice_keeps_its_leading_zero() {
        let cfg = cfg(7);
        let nice = (0..5000).map(|i| generate(&cfg, i)).find(|p| p.city == "Nice").expect("some person lives in Nice");
        assert!(nice.postal_code.starts_with("06"), "{}", nice.postal_code);
    }
}
