//! The spend file (`channels/costs/spend.toml`): what each marketing channel cost, one row
//! per channel and day, CSV `,` UTF-8, `day,channel,campaign,amount,currency`.
//!
//! Spend rows belong to no person: the file is not an [`Export`](super::Export) of the
//! persons' activity (no per-person truth, not in `Export::ALL`) but a standalone file with
//! its own truth, [`CostLine`] per data row. Every day of the [`COST_DAYS`] days before
//! `now` has one valid row per channel of [`COST_CHANNELS`] (no campaign: the demo's web
//! sessions carry none), its amount a daily rate per thousand persons ± 25 %. With
//! [`GenConfig::malformed_rate`](crate::GenConfig::malformed_rate), malformed rows are
//! added between them (never in place of one: the valid spend does not depend on the rate),
//! each one a reason the spec rejects: an unknown channel, a negative amount, a decimal
//! comma, an impossible date, another currency.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{Duration, NaiveDate};
use rand::Rng;

use crate::rng::{person_rng, Stream};
use crate::GenConfig;

/// Exact header of the spend file.
pub const COSTS_HEADER: [&str; 5] = ["day", "channel", "campaign", "amount", "currency"];

/// Days of spend written, ending the day before `now`: enough for a measures run up to
/// two weeks after `now` and its previous period.
pub const COST_DAYS: i64 = 120;

/// The channels paid for and their daily spend per thousand persons, in cents.
pub const COST_CHANNELS: [(&str, i64); 4] = [("email", 200), ("sms", 500), ("app", 300), ("web", 2_000)];

/// The random stream of the spend file: an index no person has.
const COSTS_INDEX: u64 = (1 << 62) + (1 << 20);

/// One data row of the spend file (its truth).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CostLine {
    /// 1-based physical line (the header is line 1).
    pub line: u64,
    pub day: NaiveDate,
    pub channel: String,
    /// Cents; `None` for a malformed row (the spec rejects it).
    pub amount_minor: Option<i64>,
}

/// What [`write_costs`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CostsStats {
    /// Data rows (valid and malformed).
    pub rows: u64,
    pub malformed_rows: u64,
    /// Every data row, in file order.
    pub lines: Vec<CostLine>,
}

impl CostsStats {
    /// Valid spend per channel over the days `from..=to`, in cents.
    pub fn spend_between(&self, from: NaiveDate, to: NaiveDate) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for l in self.lines.iter().filter(|l| l.day >= from && l.day <= to) {
            if let Some(amount) = l.amount_minor {
                *out.entry(l.channel.clone()).or_default() += amount;
            }
        }
        out
    }
}

fn amount_text(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Writes the spend file of `cfg` (see the module documentation) to `out`.
pub fn write_costs(cfg: &GenConfig, out: &mut dyn Write) -> anyhow::Result<CostsStats> {
    let mut rng = person_rng(cfg.seed, COSTS_INDEX, Stream::Dirt);
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(out);
    w.write_record(COSTS_HEADER)?;
    let mut stats = CostsStats::default();
    let persons = (cfg.persons as i64).max(1);
    let today = cfg.now.date_naive();
    let mut line = 1;
    for back in (1..=COST_DAYS).rev() {
        let day = today - Duration::days(back);
        for (channel, per_thousand) in COST_CHANNELS {
            // A fixed number of draws per row: the valid rows do not depend on the rate.
            let noise: f64 = rng.random_range(0.75..1.25);
            let bad: f64 = rng.random();
            let variant: usize = rng.random_range(0..5);
            let cents = ((per_thousand * persons) as f64 / 1000.0 * noise).round().max(1.0) as i64;
            line += 1;
            w.write_record([day.to_string().as_str(), channel, "", &amount_text(cents), "EUR"])?;
            stats.lines.push(CostLine { line, day, channel: channel.to_string(), amount_minor: Some(cents) });
            stats.rows += 1;
            if bad < cfg.malformed_rate {
                let amount = amount_text(cents);
                let (d, c, a, cur) = match variant {
                    0 => (day.to_string(), "tv".to_string(), amount, "EUR"),
                    1 => (day.to_string(), channel.to_string(), format!("-{amount}"), "EUR"),
                    2 => (day.to_string(), channel.to_string(), amount.replace('.', ","), "EUR"),
                    3 => (day.format("%Y-%m-32").to_string(), channel.to_string(), amount, "EUR"),
                    _ => (day.to_string(), channel.to_string(), amount, "USD"),
                };
                line += 1;
                w.write_record([d.as_str(), c.as_str(), "", a.as_str(), cur])?;
                stats.lines.push(CostLine { line, day, channel: channel.to_string(), amount_minor: None });
                stats.rows += 1;
                stats.malformed_rows += 1;
            }
        }
    }
    w.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn a_row_per_channel_and_day_and_malformed_rows_beside_them() {
        let mut cfg = GenConfig::new(7, 2_000, Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap());
        cfg.malformed_rate = 0.0;
        let mut clean = Vec::new();
        let stats = write_costs(&cfg, &mut clean).unwrap();
        assert_eq!((stats.rows, stats.malformed_rows), (COST_DAYS as u64 * 4, 0));
        let text = String::from_utf8(clean.clone()).unwrap();
        assert!(text.starts_with("day,channel,campaign,amount,currency\n2026-07-26,email,,"), "{}", &text[..80]);
        assert_eq!(text.lines().count() as u64, stats.rows + 1);
        let last = stats.lines.last().unwrap();
        assert_eq!((last.day.to_string(), last.channel.as_str(), last.line), ("2026-11-22".to_string(), "web", stats.rows + 1));
        // Web: 20.00 € a day per thousand persons ± 25 %, for 2 000 persons.
        let web = stats.spend_between(last.day, last.day)["web"];
        assert!((3_000..=5_000).contains(&web), "{web}");

        // Malformed rows are added, never in place of a valid one; the same seed, the same file.
        cfg.malformed_rate = 0.2;
        let (mut dirty, mut again) = (Vec::new(), Vec::new());
        let with_bad = write_costs(&cfg, &mut dirty).unwrap();
        write_costs(&cfg, &mut again).unwrap();
        assert_eq!(dirty, again);
        assert!(with_bad.malformed_rows > 0 && with_bad.rows == stats.rows + with_bad.malformed_rows);
        let (from, to) = (NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(), NaiveDate::from_ymd_opt(2026, 11, 22).unwrap());
        assert_eq!(with_bad.spend_between(from, to), stats.spend_between(from, to));
        let text = String::from_utf8(dirty).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for l in with_bad.lines.iter().filter(|l| l.amount_minor.is_none()) {
            let row = lines[l.line as usize - 1];
            let bad =
                row.contains(",tv,") || row.contains(",-") || row.ends_with("USD") || row.contains("-32,") || row.matches(',').count() > 4;
            assert!(bad, "line {}: {row}", l.line);
        }
    }
}
