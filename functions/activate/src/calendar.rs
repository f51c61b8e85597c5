//! French public holidays (jours fériés), used to keep marketing messages away from
//! days off.
//!
//! Two calendars exist in metropolitan France: the national one (11 days, Code du
//! travail L3133-1) and the one of Alsace-Moselle (Bas-Rhin, Haut-Rhin and Moselle),
//! which adds Good Friday and St Stephen's Day under local law. The movable feasts are
//! computed from Easter Sunday with the anonymous Gregorian algorithm.
//!
//! The overseas departments have further local days (abolition of slavery, …) that are
//! not modelled here.

use std::fmt;

use chrono::{Datelike, Days, NaiveDate};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Easter Sunday of `year` in the Gregorian calendar (anonymous Gregorian algorithm,
/// also known as Meeus/Jones/Butcher).
///
/// Years outside chrono's date range are clamped to its first or last year, so the
/// function is total; the algorithm is only meaningful from 1583 on.
pub fn easter_sunday(year: i32) -> NaiveDate {
    let year = year.clamp(NaiveDate::MIN.year(), NaiveDate::MAX.year());
    let y = i64::from(year);
    let a = y.rem_euclid(19);
    let b = y.div_euclid(100);
    let c = y.rem_euclid(100);
    let d = b.div_euclid(4);
    let e = b.rem_euclid(4);
    let f = (b + 8).div_euclid(25);
    let g = (b - f + 1).div_euclid(3);
    let h = (19 * a + b - d - g + 15).rem_euclid(30);
    let i = c.div_euclid(4);
    let k = c.rem_euclid(4);
    let l = (32 + 2 * e + 2 * i - h - k).rem_euclid(7);
    let m = (a + 11 * h + 22 * l).div_euclid(451);
    let n = h + l - 7 * m + 114;
    // n / 31 is 3 or 4 and n % 31 + 1 is within 1..=31, so both casts are lossless.
    let month = n.div_euclid(31) as u32;
    let day = (n.rem_euclid(31) + 1) as u32;
    // Always a valid March or April date of a year chrono can represent; the fallback
    // only keeps the function free of panics.
    NaiveDate::from_ymd_opt(year, month, day).unwrap_or(NaiveDate::MIN)
}

/// Which public holidays apply to a recipient.
///
/// Textual form (parsing and serde): `"none"`, `"FR"`, `"FR-alsace-moselle"`, matched
/// case-insensitively.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum HolidayCalendar {
    /// No public holidays.
    #[default]
    None,
    /// The 11 national French public holidays.
    France,
    /// The national holidays plus Vendredi saint and Saint-Étienne (Bas-Rhin, Haut-Rhin,
    /// Moselle).
    FranceAlsaceMoselle,
}

/// The accepted textual values, for error messages.
const ACCEPTED: &str = "\"none\", \"FR\", \"FR-alsace-moselle\"";

/// Fixed-date holidays of the national calendar: (month, day, name).
const FIXED: [(u32, u32, &str); 8] = [
    (1, 1, "Jour de l'an"),
    (5, 1, "Fête du Travail"),
    (5, 8, "Victoire 1945"),
    (7, 14, "Fête nationale"),
    (8, 15, "Assomption"),
    (11, 1, "Toussaint"),
    (11, 11, "Armistice"),
    (12, 25, "Noël"),
];

/// Movable holidays of the national calendar: (days after Easter Sunday, name).
const MOVABLE: [(i64, &str); 3] = [(1, "Lundi de Pâques"), (39, "Ascension"), (50, "Lundi de Pentecôte")];

/// Additional fixed holiday of Alsace-Moselle.
const ALSACE_FIXED: (u32, u32, &str) = (12, 26, "Saint-Étienne");

/// Additional movable holiday of Alsace-Moselle (days after Easter Sunday).
const ALSACE_MOVABLE: (i64, &str) = (-2, "Vendredi saint");

/// A holiday calendar name that is not one of the accepted ones.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown holiday calendar {0:?}: expected one of {ACCEPTED}")]
pub struct UnknownCalendar(pub String);

impl HolidayCalendar {
    /// Parses `"none"`, `"FR"` or `"FR-alsace-moselle"` (case-insensitive, surrounding
    /// whitespace ignored). The error names the value and lists the accepted ones.
    pub fn parse(s: &str) -> Result<Self, UnknownCalendar> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("none") {
            Ok(Self::None)
        } else if t.eq_ignore_ascii_case("FR") {
            Ok(Self::France)
        } else if t.eq_ignore_ascii_case("FR-alsace-moselle") {
            Ok(Self::FranceAlsaceMoselle)
        } else {
            Err(UnknownCalendar(s.to_string()))
        }
    }

    /// The canonical textual form, as accepted by [`HolidayCalendar::parse`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::France => "FR",
            Self::FranceAlsaceMoselle => "FR-alsace-moselle",
        }
    }

    /// The public holidays of `year` with their French names, sorted by date.
    pub fn holidays(self, year: i32) -> Vec<(NaiveDate, &'static str)> {
        if self == Self::None {
            return Vec::new();
        }
        let easter = easter_sunday(year);
        let mut fixed: Vec<(u32, u32, &'static str)> = FIXED.to_vec();
        let mut movable: Vec<(i64, &'static str)> = MOVABLE.to_vec();
        if self == Self::FranceAlsaceMoselle {
            fixed.push(ALSACE_FIXED);
            movable.push(ALSACE_MOVABLE);
        }
        let mut days: Vec<(NaiveDate, &'static str)> = fixed
            .into_iter()
            .filter_map(|(m, d, name)| NaiveDate::from_ymd_opt(year, m, d).map(|date| (date, name)))
            .chain(movable.into_iter().filter_map(|(offset, name)| offset_date(easter, offset).map(|date| (date, name))))
            .collect();
        days.sort();
        days
    }

    /// Whether `date` is a public holiday of this calendar.
    pub fn is_holiday(self, date: NaiveDate) -> bool {
        if self == Self::None {
            return false;
        }
        let (m, d) = (date.month(), date.day());
        let alsace = self == Self::FranceAlsaceMoselle;
        if FIXED.iter().any(|&(fm, fd, _)| (fm, fd) == (m, d)) || (alsace && (ALSACE_FIXED.0, ALSACE_FIXED.1) == (m, d)) {
            return true;
        }
        // Movable feasts fall between March 20 (Good Friday) and June 14 (Whit Monday).
        if !(3..=6).contains(&m) {
            return false;
        }
        let offset = (date - easter_sunday(date.year())).num_days();
        MOVABLE.iter().any(|&(o, _)| o == offset) || (alsace && ALSACE_MOVABLE.0 == offset)
    }

    /// The calendar that applies at `postal_code`: [`HolidayCalendar::France`] becomes
    /// [`HolidayCalendar::FranceAlsaceMoselle`] when the trimmed postal code is five
    /// digits in departments 57 (Moselle), 67 (Bas-Rhin) or 68 (Haut-Rhin). Any other
    /// calendar, or postal code, leaves the calendar unchanged.
    pub fn for_postal_code(self, postal_code: Option<&str>) -> Self {
        if self != Self::France {
            return self;
        }
        let Some(code) = postal_code.map(str::trim) else {
            return self;
        };
        let five_digits = code.len() == 5 && code.bytes().all(|b| b.is_ascii_digit());
        if five_digits && ["57", "67", "68"].iter().any(|dept| code.starts_with(dept)) {
            Self::FranceAlsaceMoselle
        } else {
            self
        }
    }
}

/// `date` shifted by `days` (possibly negative), or `None` out of chrono's range.
fn offset_date(date: NaiveDate, days: i64) -> Option<NaiveDate> {
    if days >= 0 {
        date.checked_add_days(Days::new(days.unsigned_abs()))
    } else {
        date.checked_sub_days(Days::new(days.unsigned_abs()))
    }
}

impl fmt::Display for HolidayCalendar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for HolidayCalendar {
    type Err = UnknownCalendar;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for HolidayCalendar {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for HolidayCalendar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;
    use proptest::prelude::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn easter_known_years() {
        assert_eq!(easter_sunday(2024), date(2024, 3, 31));
        assert_eq!(easter_sunday(2025), date(2025, 4, 20));
        assert_eq!(easter_sunday(2026), date(2026, 4, 5));
        assert_eq!(easter_sunday(2027), date(2027, 3, 28));
        assert_eq!(easter_sunday(2038), date(2038, 4, 25));
        // Extremes of the possible range: 22 March and 25 April.
        assert_eq!(easter_sunday(1818), date(1818, 3, 22));
        assert_eq!(easter_sunday(2285), date(2285, 3, 22));
        assert_eq!(easter_sunday(1943), date(1943, 4, 25));
    }

    #[test]
    fn easter_is_total() {
        for year in [i32::MIN, -1, 0, i32::MAX] {
            assert_eq!(easter_sunday(year).weekday(), Weekday::Sun);
        }
    }

    #[test]
    fn france_2026_full_list() {
        let expected = vec![
            (date(2026, 1, 1), "Jour de l'an"),
            (date(2026, 4, 6), "Lundi de Pâques"),
            (date(2026, 5, 1), "Fête du Travail"),
            (date(2026, 5, 8), "Victoire 1945"),
            (date(2026, 5, 14), "Ascension"),
            (date(2026, 5, 25), "Lundi de Pentecôte"),
            (date(2026, 7, 14), "Fête nationale"),
            (date(2026, 8, 15), "Assomption"),
            (date(2026, 11, 1), "Toussaint"),
            (date(2026, 11, 11), "Armistice"),
            (date(2026, 12, 25), "Noël"),
        ];
        assert_eq!(HolidayCalendar::France.holidays(2026), expected);
    }

    #[test]
    fn movable_feasts() {
        let fr = HolidayCalendar::France.holidays(2027);
        assert!(fr.contains(&(date(2027, 5, 6), "Ascension")));
        assert!(HolidayCalendar::France.is_holiday(date(2027, 5, 6)));
        assert!(HolidayCalendar::France.is_holiday(date(2026, 5, 25)));
        assert!(!HolidayCalendar::France.is_holiday(date(2026, 5, 26)));
        assert!(!HolidayCalendar::France.is_holiday(date(2026, 4, 5)), "Easter Sunday itself is not listed");
    }

    #[test]
    fn alsace_moselle_extras() {
        let am = HolidayCalendar::FranceAlsaceMoselle.holidays(2026);
        assert_eq!(am.len(), 13);
        assert_eq!(am[1], (date(2026, 4, 3), "Vendredi saint"));
        assert_eq!(am[12], (date(2026, 12, 26), "Saint-Étienne"));
        assert!(HolidayCalendar::FranceAlsaceMoselle.is_holiday(date(2026, 4, 3)));
        assert!(HolidayCalendar::FranceAlsaceMoselle.is_holiday(date(2026, 12, 26)));
        assert!(!HolidayCalendar::France.is_holiday(date(2026, 4, 3)));
        assert!(!HolidayCalendar::France.is_holiday(date(2026, 12, 26)));
        // Good Friday 2027 is in March.
        assert!(HolidayCalendar::FranceAlsaceMoselle.is_holiday(date(2027, 3, 26)));
    }

    #[test]
    fn coinciding_holidays_are_both_listed() {
        let days = HolidayCalendar::France.holidays(2008);
        assert_eq!(days.len(), 11);
        assert!(days.contains(&(date(2008, 5, 1), "Ascension")));
        assert!(days.contains(&(date(2008, 5, 1), "Fête du Travail")));
    }

    #[test]
    fn none_is_empty() {
        assert!(HolidayCalendar::None.holidays(2026).is_empty());
        assert!(!HolidayCalendar::None.is_holiday(date(2026, 12, 25)));
    }

    #[test]
    fn parse_and_serde() {
        assert_eq!(HolidayCalendar::parse("none"), Ok(HolidayCalendar::None));
        assert_eq!(HolidayCalendar::parse("fr"), Ok(HolidayCalendar::France));
        assert_eq!(HolidayCalendar::parse(" FR "), Ok(HolidayCalendar::France));
        assert_eq!(HolidayCalendar::parse("fr-ALSACE-moselle"), Ok(HolidayCalendar::FranceAlsaceMoselle));
        let err = HolidayCalendar::parse("DE").unwrap_err().to_string();
        assert!(err.contains("\"DE\"") && err.contains("FR-alsace-moselle") && err.contains("none"), "{err}");

        for cal in [HolidayCalendar::None, HolidayCalendar::France, HolidayCalendar::FranceAlsaceMoselle] {
            let json = serde_json::to_string(&cal).unwrap();
            assert_eq!(json, format!("\"{}\"", cal.as_str()));
            assert_eq!(serde_json::from_str::<HolidayCalendar>(&json).unwrap(), cal);
            assert_eq!(cal.as_str().parse::<HolidayCalendar>(), Ok(cal));
        }
        assert_eq!(serde_json::from_str::<HolidayCalendar>("\"Fr\"").unwrap(), HolidayCalendar::France);
        assert!(serde_json::from_str::<HolidayCalendar>("\"France\"").is_err());
    }

    #[test]
    fn postal_codes() {
        let fr = HolidayCalendar::France;
        assert_eq!(fr.for_postal_code(Some("57000")), HolidayCalendar::FranceAlsaceMoselle);
        assert_eq!(fr.for_postal_code(Some(" 67000 ")), HolidayCalendar::FranceAlsaceMoselle);
        assert_eq!(fr.for_postal_code(Some("68100")), HolidayCalendar::FranceAlsaceMoselle);
        assert_eq!(fr.for_postal_code(Some("75001")), fr);
        assert_eq!(fr.for_postal_code(Some("5700")), fr);
        assert_eq!(fr.for_postal_code(Some("670000")), fr);
        assert_eq!(fr.for_postal_code(Some("67OOO")), fr);
        assert_eq!(fr.for_postal_code(Some("")), fr);
        assert_eq!(fr.for_postal_code(None), fr);
        assert_eq!(HolidayCalendar::None.for_postal_code(Some("67000")), HolidayCalendar::None);
        assert_eq!(HolidayCalendar::FranceAlsaceMoselle.for_postal_code(Some("75001")), HolidayCalendar::FranceAlsaceMoselle);
    }

    proptest! {
        #[test]
        fn easter_is_a_sunday_between_march_22_and_april_25(year in 1583i32..=4099) {
            let e = easter_sunday(year);
            prop_assert_eq!(e.weekday(), Weekday::Sun);
            prop_assert_eq!(e.year(), year);
            prop_assert!(e >= date(year, 3, 22) && e <= date(year, 4, 25));
        }

        #[test]
        fn holidays_agree_with_is_holiday(year in 1900i32..=2200) {
            for cal in [HolidayCalendar::France, HolidayCalendar::FranceAlsaceMoselle] {
                let days = cal.holidays(year);
                prop_assert_eq!(days.len(), if cal == HolidayCalendar::France { 11 } else { 13 });
                // Sorted; two entries may share a date (Ascension fell on 1 May in 2008).
                prop_assert!(days.windows(2).all(|w| w[0].0 <= w[1].0));
                let mut d = date(year, 1, 1);
                while d.year() == year {
                    prop_assert_eq!(cal.is_holiday(d), days.iter().any(|(h, _)| *h == d), "{}", d);
                    d = d.succ_opt().unwrap();
                }
            }
        }
    }
}
