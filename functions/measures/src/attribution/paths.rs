//! Paths to conversion and to non-conversion.
//!
//! # In plain words
//!
//! - A *path* is the sequence of channels a person went through, e.g. `email > sms > web`.
//!   Consecutive repeats are collapsed: three e-mail clicks in a row then an SMS are the path
//!   `email > sms`. The number of touchpoints is still counted in full (4 in that example).
//! - A *path to conversion* is the touchpoints in an order's lookback window (the same ones
//!   the models credit). An order without touchpoints has the path `(none)` and length 0.
//! - A *path to non-conversion* is, for each person, their touchpoints after their last order
//!   (all of them if they never ordered), limited to the `lookback` before their last
//!   touchpoint — the journeys that have not (yet) ended in an order.
//! - Paths longer than `path_max_len` steps are shortened for the "most common paths"
//!   tables, keeping the first step and the last `path_max_len - 1` steps:
//!   `email > … > sms > web` (with `path_max_len = 3`); with `path_max_len = 1` only the
//!   last step is kept (`… > web`). Shortened paths that look the same are counted together.
//! - Path length is the number of touchpoints (repeats included). Time to conversion is the
//!   time from the first touchpoint of the window to the order, over the orders that had at
//!   least one touchpoint; the median of an even number of values is the mean of the two
//!   middle ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Config, ConversionDetail, Touchpoint, NO_TOUCHPOINT};

/// The path of one order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvertingPath {
    pub conversion_id: String,
    pub person: String,
    /// Channels, consecutive repeats collapsed; empty if no touchpoint.
    pub steps: Vec<String>,
    /// Number of touchpoints in the window, repeats included.
    pub touchpoints: usize,
    /// Seconds from the first touchpoint to the order; `None` without touchpoints.
    pub seconds_to_conversion: Option<i64>,
}

/// The path of one person who has not ordered (again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NonConvertingPath {
    pub person: String,
    pub steps: Vec<String>,
    pub touchpoints: usize,
}

/// How often a (possibly shortened) path occurs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathCount {
    /// Display form, e.g. `email > sms > web`, see [`display_path`].
    pub path: String,
    /// Orders (for paths to conversion) or persons (for paths to non-conversion).
    pub count: usize,
    /// `count` divided by the number of orders (or of non-converting persons).
    pub share: f64,
    /// Revenue of these orders, minor units (0 for paths to non-conversion).
    pub revenue_minor: i64,
}

/// Number of orders whose path had a given number of touchpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LengthCount {
    pub touchpoints: usize,
    pub conversions: usize,
}

/// Time from first touchpoint to order, over orders with at least one touchpoint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TimeToConversion {
    /// Orders taken into account.
    pub conversions: usize,
    pub mean_seconds: Option<f64>,
    pub median_seconds: Option<f64>,
}

/// Everything about paths.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PathReport {
    /// One per order, in the order of [`super::Attribution::details`].
    pub converting: Vec<ConvertingPath>,
    /// One per person with a non-converting journey, sorted by person.
    pub non_converting: Vec<NonConvertingPath>,
    /// Most common paths to conversion: by count descending, then path.
    pub top_converting: Vec<PathCount>,
    /// Most common paths to non-conversion: by count descending, then path.
    pub top_non_converting: Vec<PathCount>,
    /// Orders per path length, by length ascending.
    pub length_distribution: Vec<LengthCount>,
    pub time_to_conversion: TimeToConversion,
}

/// Collapses consecutive repeats: `[email, email, sms, email]` → `[email, sms, email]`.
pub fn collapse<'a>(labels: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut steps: Vec<String> = Vec::new();
    for label in labels {
        if steps.last().map(String::as_str) != Some(label) {
            steps.push(label.to_string());
        }
    }
    steps
}

/// Display form of a path, shortened to `max_len` steps as described in the module
/// documentation; `(none)` for an empty path.
pub fn display_path(steps: &[String], max_len: usize) -> String {
    if steps.is_empty() {
        return NO_TOUCHPOINT.to_string();
    }
    if steps.len() <= max_len {
        return steps.join(" > ");
    }
    let tail = &steps[steps.len() - max_len.saturating_sub(1).max(1)..];
    if max_len <= 1 {
        format!("… > {}", tail.join(" > "))
    } else {
        format!("{} > … > {}", steps[0], tail.join(" > "))
    }
}

fn top(counts: BTreeMap<String, (usize, i64)>, total: usize, keep: usize) -> Vec<PathCount> {
    let mut rows: Vec<PathCount> = counts
        .into_iter()
        .map(|(path, (count, revenue_minor))| PathCount { path, count, share: count as f64 / total.max(1) as f64, revenue_minor })
        .collect();
    // Stable sort on a list already sorted by path: ties stay alphabetical.
    rows.sort_by_key(|row| std::cmp::Reverse(row.count));
    rows.truncate(keep);
    rows
}

pub(super) fn build_report(details: &[ConversionDetail], non_converting: &[(&str, &[&Touchpoint])], config: &Config) -> PathReport {
    let converting: Vec<ConvertingPath> = details
        .iter()
        .map(|detail| ConvertingPath {
            conversion_id: detail.conversion.id.clone(),
            person: detail.conversion.person.clone(),
            steps: collapse(detail.touchpoints.iter().map(|tp| tp.channel.as_str())),
            touchpoints: detail.touchpoints.len(),
            seconds_to_conversion: detail.touchpoints.first().map(|tp| (detail.conversion.at - tp.at).num_seconds()),
        })
        .collect();
    let non_converting: Vec<NonConvertingPath> = non_converting
        .iter()
        .map(|(person, tps)| NonConvertingPath {
            person: person.to_string(),
            steps: collapse(tps.iter().map(|tp| tp.channel.as_str())),
            touchpoints: tps.len(),
        })
        .collect();

    let mut converting_counts: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    let mut lengths: BTreeMap<usize, usize> = BTreeMap::new();
    for (path, detail) in converting.iter().zip(details) {
        let entry = converting_counts.entry(display_path(&path.steps, config.path_max_len)).or_default();
        entry.0 += 1;
        entry.1 = entry.1.saturating_add(detail.conversion.revenue_minor);
        *lengths.entry(path.touchpoints).or_default() += 1;
    }
    let mut non_converting_counts: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for path in &non_converting {
        non_converting_counts.entry(display_path(&path.steps, config.path_max_len)).or_default().0 += 1;
    }

    let mut times: Vec<i64> = converting.iter().filter_map(|p| p.seconds_to_conversion).collect();
    times.sort_unstable();
    let time_to_conversion = TimeToConversion {
        conversions: times.len(),
        mean_seconds: (!times.is_empty()).then(|| times.iter().map(|&t| t as f64).sum::<f64>() / times.len() as f64),
        median_seconds: median(&times),
    };

    PathReport {
        top_converting: top(converting_counts, converting.len(), config.top_paths),
        top_non_converting: top(non_converting_counts, non_converting.len(), config.top_paths),
        length_distribution: lengths.into_iter().map(|(touchpoints, conversions)| LengthCount { touchpoints, conversions }).collect(),
        time_to_conversion,
        converting,
        non_converting,
    }
}

/// Median of sorted values.
fn median(sorted: &[i64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2] as f64),
        _ => Some((sorted[n / 2 - 1] as f64 + sorted[n / 2] as f64) / 2.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn collapse_repeats() {
        assert_eq!(collapse(["email", "email", "sms", "email", "email"]), steps(&["email", "sms", "email"]));
        assert!(collapse([]).is_empty());
    }

    #[test]
    fn display_shortens_long_paths() {
        let long = steps(&["email", "sms", "app", "sms", "web"]);
        assert_eq!(display_path(&long, 5), "email > sms > app > sms > web");
        assert_eq!(display_path(&long, 3), "email > … > sms > web");
        assert_eq!(display_path(&long, 2), "email > … > web");
        assert_eq!(display_path(&long, 1), "… > web");
        assert_eq!(display_path(&steps(&["web"]), 1), "web");
        assert_eq!(display_path(&[], 3), "(none)");
    }

    #[test]
    fn median_even_and_odd() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5.0));
        assert_eq!(median(&[1, 2, 10]), Some(2.0));
        assert_eq!(median(&[1, 2, 10, 20]), Some(6.0));
    }
}
