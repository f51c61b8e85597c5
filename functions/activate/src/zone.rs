//! The recipient's time zone, guessed from what a retail profile usually holds: a postal
//! code, a country and a phone number.
//!
//! Most customers of a French retailer live in metropolitan France, but the overseas
//! departments are several hours away (Guadeloupe is UTC-4, Réunion UTC+4), and their
//! addresses often carry the country "France": the postal code (971xx, 974xx, …) is the
//! most reliable clue, then the country, then the phone's country calling code.

use chrono_tz::Tz;

/// Time zone of a French overseas postal code (five digits), by its three first digits.
const OVERSEAS_POSTAL: [(&str, Tz); 6] = [
    ("971", chrono_tz::America::Guadeloupe),
    ("972", chrono_tz::America::Martinique),
    ("973", chrono_tz::America::Cayenne),
    ("974", chrono_tz::Indian::Reunion),
    ("975", chrono_tz::America::Miquelon),
    ("976", chrono_tz::Indian::Mayotte),
];

/// Country codes and names, after [`fold`] (lowercase, no accents, separators as single
/// spaces): ISO 3166 alpha-2 and alpha-3 codes, French, English and native names.
const COUNTRIES: [(&[&str], Tz); 17] = [
    (&["fr", "fra", "france", "france metropolitaine"], chrono_tz::Europe::Paris),
    (&["be", "bel", "belgique", "belgium", "belgie", "belgien"], chrono_tz::Europe::Brussels),
    (&["ch", "che", "suisse", "switzerland", "schweiz", "svizzera"], chrono_tz::Europe::Zurich),
    (&["lu", "lux", "luxembourg", "luxemburg"], chrono_tz::Europe::Luxembourg),
    (&["mc", "mco", "monaco"], chrono_tz::Europe::Monaco),
    (&["de", "deu", "allemagne", "germany", "deutschland"], chrono_tz::Europe::Berlin),
    (&["es", "esp", "espagne", "spain", "espana"], chrono_tz::Europe::Madrid),
    (&["it", "ita", "italie", "italy", "italia"], chrono_tz::Europe::Rome),
    (
        &["gb", "gbr", "uk", "royaume uni", "united kingdom", "grande bretagne", "great britain", "angleterre", "england"],
        chrono_tz::Europe::London,
    ),
    (&["pt", "prt", "portugal"], chrono_tz::Europe::Lisbon),
    (&["nl", "nld", "pays bas", "netherlands", "nederland", "hollande", "holland"], chrono_tz::Europe::Amsterdam),
    (&["gp", "glp", "guadeloupe"], chrono_tz::America::Guadeloupe),
    (&["mq", "mtq", "martinique"], chrono_tz::America::Martinique),
    (&["gf", "guf", "guyane", "guyane francaise", "french guiana"], chrono_tz::America::Cayenne),
    (&["re", "reu", "reunion", "la reunion", "ile de la reunion"], chrono_tz::Indian::Reunion),
    (&["yt", "myt", "mayotte"], chrono_tz::Indian::Mayotte),
    (&["pm", "spm", "saint pierre et miquelon"], chrono_tz::America::Miquelon),
];

/// Country calling codes (digits after the `+`), matched by longest prefix. Mayotte
/// shares +262 with Réunion; its numbers are +262 269 (fixed) and +262 639 (mobile).
const CALLING_CODES: [(&str, Tz); 18] = [
    ("33", chrono_tz::Europe::Paris),
    ("590", chrono_tz::America::Guadeloupe),
    ("596", chrono_tz::America::Martinique),
    ("594", chrono_tz::America::Cayenne),
    ("262", chrono_tz::Indian::Reunion),
    ("262269", chrono_tz::Indian::Mayotte),
    ("262639", chrono_tz::Indian::Mayotte),
    ("508", chrono_tz::America::Miquelon),
    ("32", chrono_tz::Europe::Brussels),
    ("41", chrono_tz::Europe::Zurich),
    ("352", chrono_tz::Europe::Luxembourg),
    ("377", chrono_tz::Europe::Monaco),
    ("49", chrono_tz::Europe::Berlin),
    ("34", chrono_tz::Europe::Madrid),
    ("39", chrono_tz::Europe::Rome),
    ("44", chrono_tz::Europe::London),
    ("351", chrono_tz::Europe::Lisbon),
    ("31", chrono_tz::Europe::Amsterdam),
];

/// The recipient's time zone.
///
/// In order, the first rule that gives an answer wins:
/// 1. a French overseas postal code (trimmed, five digits): 971 Guadeloupe, 972
///    Martinique, 973 Guyane, 974 Réunion, 975 Saint-Pierre-et-Miquelon, 976 Mayotte —
///    unless the country is recognised as a foreign one, whose postal codes may look
///    alike (97070 is in Würzburg, 97100 in Ragusa);
/// 2. the country: ISO 3166 alpha-2 (or alpha-3) code, or a common French, English or
///    native name, case- and accent-insensitive ("Réunion", "royaume-uni");
/// 3. the country calling code of the phone number in E.164 (`+33…`), longest prefix;
/// 4. `default`.
///
/// Unknown or malformed values are ignored.
pub fn recipient_zone(country: Option<&str>, postal_code: Option<&str>, phone_e164: Option<&str>, default: Tz) -> Tz {
    let country_zone = country.and_then(zone_of_country);
    let foreign_country = country_zone.is_some_and(|tz| !is_french(tz));
    if !foreign_country {
        if let Some(tz) = postal_code.and_then(zone_of_postal_code) {
            return tz;
        }
    }
    country_zone.or_else(|| phone_e164.and_then(zone_of_phone)).unwrap_or(default)
}

/// Metropolitan France or one of its overseas departments and collectivities.
fn is_french(tz: Tz) -> bool {
    tz == chrono_tz::Europe::Paris || OVERSEAS_POSTAL.iter().any(|&(_, z)| z == tz)
}

/// Zone of a French overseas postal code.
fn zone_of_postal_code(code: &str) -> Option<Tz> {
    let code = code.trim();
    if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    OVERSEAS_POSTAL.iter().find(|(prefix, _)| code.starts_with(prefix)).map(|&(_, tz)| tz)
}

/// Zone of a country code or name.
fn zone_of_country(country: &str) -> Option<Tz> {
    let key = fold(country);
    COUNTRIES.iter().find(|(names, _)| names.contains(&key.as_str())).map(|&(_, tz)| tz)
}

/// Zone of an E.164 number's country calling code. Spaces, dots, dashes and
/// parentheses are tolerated; the `+` is required.
fn zone_of_phone(phone: &str) -> Option<Tz> {
    let rest = phone.trim().strip_prefix('+')?;
    let digits: String = rest.chars().filter(|c| !(c.is_whitespace() || matches!(c, '.' | '-' | '(' | ')'))).collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    CALLING_CODES.iter().filter(|(prefix, _)| digits.starts_with(prefix)).max_by_key(|(prefix, _)| prefix.len()).map(|&(_, tz)| tz)
}

/// Lowercase, accents removed from Latin letters, and runs of spaces, dashes,
/// underscores, dots and apostrophes turned into one space.
fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.chars().flat_map(char::to_lowercase) {
        let c = match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
            'ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ñ' => 'n',
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ý' | 'ÿ' => 'y',
            c if c.is_whitespace() || matches!(c, '-' | '_' | '.' | '\'' | '’') => {
                pending_space = true;
                continue;
            }
            c => c,
        };
        if pending_space && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::{America, Europe, Indian};

    const UTC: Tz = chrono_tz::UTC;

    fn zone(country: Option<&str>, postal: Option<&str>, phone: Option<&str>) -> Tz {
        recipient_zone(country, postal, phone, UTC)
    }

    #[test]
    fn overseas_postal_codes() {
        assert_eq!(zone(None, Some("97110"), None), America::Guadeloupe);
        assert_eq!(zone(None, Some("97200"), None), America::Martinique);
        assert_eq!(zone(None, Some("97300"), None), America::Cayenne);
        assert_eq!(zone(None, Some(" 97400 "), None), Indian::Reunion);
        assert_eq!(zone(None, Some("97500"), None), America::Miquelon);
        assert_eq!(zone(None, Some("97600"), None), Indian::Mayotte);
        // Not overseas, or not a postal code.
        assert_eq!(zone(None, Some("75001"), None), UTC);
        assert_eq!(zone(None, Some("9710"), None), UTC);
        assert_eq!(zone(None, Some("971000"), None), UTC);
        assert_eq!(zone(None, Some("97 110"), None), UTC);
        assert_eq!(zone(None, Some("97700"), None), UTC);
        assert_eq!(zone(None, Some(""), None), UTC);
    }

    #[test]
    fn countries() {
        let cases: [(&str, Tz); 36] = [
            ("FR", Europe::Paris),
            ("france", Europe::Paris),
            (" France ", Europe::Paris),
            ("BE", Europe::Brussels),
            ("Belgique", Europe::Brussels),
            ("Belgium", Europe::Brussels),
            ("CH", Europe::Zurich),
            ("Suisse", Europe::Zurich),
            ("Switzerland", Europe::Zurich),
            ("LU", Europe::Luxembourg),
            ("Luxembourg", Europe::Luxembourg),
            ("mc", Europe::Monaco),
            ("Monaco", Europe::Monaco),
            ("DE", Europe::Berlin),
            ("Allemagne", Europe::Berlin),
            ("Germany", Europe::Berlin),
            ("ES", Europe::Madrid),
            ("Espagne", Europe::Madrid),
            ("España", Europe::Madrid),
            ("IT", Europe::Rome),
            ("Italie", Europe::Rome),
            ("GB", Europe::London),
            ("UK", Europe::London),
            ("Royaume-Uni", Europe::London),
            ("united  kingdom", Europe::London),
            ("PT", Europe::Lisbon),
            ("NL", Europe::Amsterdam),
            ("Pays-Bas", Europe::Amsterdam),
            ("Netherlands", Europe::Amsterdam),
            ("GP", America::Guadeloupe),
            ("Martinique", America::Martinique),
            ("Guyane", America::Cayenne),
            ("Réunion", Indian::Reunion),
            ("LA RÉUNION", Indian::Reunion),
            ("re", Indian::Reunion),
            ("YT", Indian::Mayotte),
        ];
        for (country, tz) in cases {
            assert_eq!(zone(Some(country), None, None), tz, "{country}");
        }
        for unknown in ["", "XX", "Atlantis", "Frankreich", "F R"] {
            assert_eq!(zone(Some(unknown), None, None), UTC, "{unknown}");
        }
    }

    #[test]
    fn phones() {
        let cases: [(&str, Tz); 18] = [
            ("+33612345678", Europe::Paris),
            ("+590690123456", America::Guadeloupe),
            ("+596696123456", America::Martinique),
            ("+594694123456", America::Cayenne),
            ("+262692123456", Indian::Reunion),
            ("+262269612345", Indian::Mayotte),
            ("+262639123456", Indian::Mayotte),
            ("+32470123456", Europe::Brussels),
            ("+41791234567", Europe::Zurich),
            ("+352621123456", Europe::Luxembourg),
            ("+37761234567", Europe::Monaco),
            ("+4915123456789", Europe::Berlin),
            ("+34612345678", Europe::Madrid),
            ("+393123456789", Europe::Rome),
            ("+447911123456", Europe::London),
            ("+351912345678", Europe::Lisbon),
            ("+31612345678", Europe::Amsterdam),
            (" +33 6 12 34 56 78 ", Europe::Paris),
        ];
        for (phone, tz) in cases {
            assert_eq!(zone(None, None, Some(phone)), tz, "{phone}");
        }
        for unknown in ["", "+", "0612345678", "33612345678", "+1 212 555 0100", "+33abc", "++33612345678"] {
            assert_eq!(zone(None, None, Some(unknown)), UTC, "{unknown}");
        }
    }

    #[test]
    fn precedence() {
        // Postal code over country: an address in Guadeloupe with the country "France".
        assert_eq!(zone(Some("FR"), Some("97110"), Some("+33612345678")), America::Guadeloupe);
        assert_eq!(zone(Some("Guadeloupe"), Some("97200"), None), America::Martinique);
        // Unknown country: the postal code still counts.
        assert_eq!(zone(Some("Atlantis"), Some("97400"), None), Indian::Reunion);
        // A foreign country's postal code is not French: Würzburg, Ragusa.
        assert_eq!(zone(Some("DE"), Some("97070"), None), Europe::Berlin);
        assert_eq!(zone(Some("Italia"), Some("97100"), None), Europe::Rome);
        // Country over phone.
        assert_eq!(zone(Some("BE"), Some("1000"), Some("+33612345678")), Europe::Brussels);
        assert_eq!(zone(Some("FR"), Some("75001"), Some("+590690123456")), Europe::Paris);
        // Phone when the country is unknown or absent.
        assert_eq!(zone(Some("Atlantis"), Some("75001"), Some("+590690123456")), America::Guadeloupe);
        assert_eq!(zone(None, None, Some("+262692123456")), Indian::Reunion);
        // Default last.
        assert_eq!(zone(None, None, None), UTC);
        assert_eq!(recipient_zone(None, Some("75001"), Some("+1 212"), Europe::Paris), Europe::Paris);
    }

    #[test]
    fn folding() {
        assert_eq!(fold("  La  Réunion "), "la reunion");
        assert_eq!(fold("Royaume-Uni"), "royaume uni");
        assert_eq!(fold("Guyane française"), "guyane francaise");
        assert_eq!(fold("Côte d’Ivoire"), "cote d ivoire");
        assert_eq!(fold("ÉTATS-UNIS"), "etats unis");
    }
}
