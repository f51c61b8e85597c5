//! Attribution of every order, online and in store, to the touchpoints that came before it.
//!
//! # What goes in
//!
//! - [`Touchpoint`]s: one row per contact with a person: campaign sends and clicks, e-mail
//!   and SMS clicks, app opens, web sessions (with their source and campaign). Each has a
//!   `channel` ("email", "sms", "web", ...) and optionally a `campaign`.
//! - [`Conversion`]s: one row per order, whatever the place of sale ("pos", "ecommerce",
//!   "app"), with its revenue in minor units (cents).
//! - a [`Config`]: lookback window (default 30 days), time-decay half-life (default 7
//!   days), position-based weights (default 40 % / 40 %), and display settings for paths.
//!
//! # Which touchpoints count for an order
//!
//! The touchpoints of an order are the same person's touchpoints from `lookback` before the
//! order up to the order itself, **both ends included**: a touchpoint exactly 30 days before
//! counts, one a second older does not; a touchpoint at the very second of the order counts,
//! one a second later does not.
//!
//! A touchpoint that came before an *earlier* order of the same person still counts for the
//! next order if it is inside the next order's window. A single e-mail can therefore be
//! credited for two orders: we measure "what was seen before buying", not "what has not
//! been paid for yet". This is the usual choice of analytics tools.
//!
//! Every kind of touchpoint (send, click, open, session, ...) weighs the same: an e-mail
//! that was sent but never opened counts like a click. Leave out of the input the kinds you
//! do not want to credit. `kind` and `source` are otherwise only used to order touchpoints.
//!
//! Touchpoints are put in a fixed order (time, then channel, campaign, kind, source), so the
//! result never depends on the order of the input rows: shuffling the input gives exactly
//! the same numbers. Touchpoints at the same second are ordered alphabetically by channel.
//!
//! An order with no touchpoint in its window is credited to the channel and campaign
//! [`NO_TOUCHPOINT`] (`"(none)"`, i.e. direct / unknown) under every model, so that every
//! model always shares out exactly all orders and all revenue. A touchpoint without a
//! campaign is counted under the campaign [`NO_CAMPAIGN`] (`"(no campaign)"`).
//!
//! # The models
//!
//! Each order is worth one conversion and its revenue; each model decides how to split it
//! between the order's touchpoints:
//!
//! - **first touch**: everything to the earliest touchpoint of the window;
//! - **last touch**: everything to the latest touchpoint (the closest to the order);
//! - **linear**: equal shares for every touchpoint;
//! - **position-based** ("U-shaped"): with one touchpoint it gets 100 %; with two they get
//!   50 % each (more exactly `first / (first + last)` and `last / (first + last)`, which is
//!   50/50 with the default 40/40, and 50/50 too if both weights are 0); with three or more,
//!   the first gets 40 %, the last 40 %, and the 20 % left are shared equally by the
//!   touchpoints in between;
//! - **time decay**: a touchpoint `d` before the order weighs `2^(-d / half_life)` — with a
//!   7-day half-life a touchpoint a week old counts half as much as one on the day of the
//!   order, two weeks old a quarter; the weights of an order are then scaled to add up to 1;
//! - **data-driven (Markov)**: see [`markov`]. All journeys, converting or not, are turned
//!   into a chain of channel-to-channel moves; a channel's *removal effect* is the share of
//!   conversions that would be lost if the channel did not exist. All orders that had at
//!   least one touchpoint (and their revenue) are shared out between channels in proportion
//!   to the removal effects. The campaign table uses the same method with campaigns in place
//!   of channels. This model gives totals only, not a split of each order.
//!
//! A touchpoint's share goes both to its channel (table [`Attribution::by_channel`]) and to
//! its campaign (table [`Attribution::by_campaign`]).
//!
//! # Revenue rounding
//!
//! Revenue is given twice: `revenue`, the exact fractional share (in minor units, `f64`),
//! and `revenue_minor`, whole minor units. Whole units are obtained per model and per table
//! with the *largest remainder* rule ([`largest_remainder`]): every row is first rounded
//! down, then the units still missing to reach the exact total are given one by one to the
//! rows with the largest dropped fractions (ties: rows in alphabetical order). So whole-unit
//! revenue of each model always adds up exactly to the total revenue, and each row is less
//! than one unit away from its exact share. Negative revenues (refunds) are accepted.
//!
//! # Reading the result
//!
//! [`attribute`] returns an [`Attribution`]: `by_channel` and `by_campaign` hold one
//! [`CreditRow`] per channel or campaign with the six models side by side (or one row per
//! model and key with [`Attribution::long_by_channel`]); `details` shows, order by order,
//! its touchpoints and how each model but Markov split it; `markov_channels` and
//! `markov_campaigns` give the removal effects; `paths` the path tables.
//!
//! # Paths
//!
//! See [`paths`]: the channel sequence before each order, the most common paths to
//! conversion and to non-conversion, the distribution of path length and the time from first
//! touch to conversion.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub mod heuristics;
pub mod markov;
pub mod paths;

#[cfg(test)]
mod tests;

pub use heuristics::{position_weights, time_decay_weights};
pub use markov::{removal_effects, MarkovReport, StateEffect};
pub use paths::{ConvertingPath, LengthCount, NonConvertingPath, PathCount, PathReport, TimeToConversion};

/// Channel and campaign credited with an order that had no touchpoint in its window.
pub const NO_TOUCHPOINT: &str = "(none)";
/// Campaign of a touchpoint that has no campaign.
pub const NO_CAMPAIGN: &str = "(no campaign)";

/// One contact with a person.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Touchpoint {
    pub person: String,
    pub at: DateTime<Utc>,
    /// "email", "sms", "web", "app", "paid_search", ...
    pub channel: String,
    pub campaign: Option<String>,
    /// "click", "send", "open", "session", ...
    pub kind: String,
    /// Traffic source of a web session (utm_source, referrer), if any.
    pub source: Option<String>,
}

impl Touchpoint {
    /// The campaign, or [`NO_CAMPAIGN`].
    pub fn campaign_label(&self) -> &str {
        self.campaign.as_deref().unwrap_or(NO_CAMPAIGN)
    }
}

/// One order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Conversion {
    pub person: String,
    pub at: DateTime<Utc>,
    /// Order id.
    pub id: String,
    /// Where the sale happened: "pos", "ecommerce", "app".
    pub channel: String,
    pub revenue_minor: i64,
}

fn cmp_touchpoints(a: &Touchpoint, b: &Touchpoint) -> Ordering {
    (&a.person, a.at, &a.channel, &a.campaign, &a.kind, &a.source).cmp(&(&b.person, b.at, &b.channel, &b.campaign, &b.kind, &b.source))
}

fn cmp_conversions(a: &Conversion, b: &Conversion) -> Ordering {
    (a.at, &a.person, &a.id, &a.channel, a.revenue_minor).cmp(&(b.at, &b.person, &b.id, &b.channel, b.revenue_minor))
}

/// Settings of the attribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// How far back before an order touchpoints count (default 30 days). Must be > 0.
    pub lookback: Duration,
    /// Time-decay half-life (default 7 days). Must be > 0.
    pub half_life: Duration,
    /// Position-based share of the first touchpoint (default 0.4), in `[0, 1]`.
    pub position_first: f64,
    /// Position-based share of the last touchpoint (default 0.4), in `[0, 1]`;
    /// `position_first + position_last` must not exceed 1.
    pub position_last: f64,
    /// Longest path shown as is in the path tables (default 8 steps, at least 1); longer
    /// paths are shortened, see [`paths::display_path`].
    pub path_max_len: usize,
    /// How many paths the "most common paths" tables keep (default 10, at least 1).
    pub top_paths: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lookback: Duration::days(30),
            half_life: Duration::days(7),
            position_first: 0.4,
            position_last: 0.4,
            path_max_len: 8,
            top_paths: 10,
        }
    }
}

/// Tolerance used when checking that weights add up to at most 1.
const WEIGHT_EPSILON: f64 = 1e-9;

impl Config {
    /// Checks the settings; [`attribute`] calls it first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lookback <= Duration::zero() {
            return Err(ConfigError::LookbackNotPositive(self.lookback));
        }
        if self.half_life <= Duration::zero() {
            return Err(ConfigError::HalfLifeNotPositive(self.half_life));
        }
        for (which, value) in [("first", self.position_first), ("last", self.position_last)] {
            if !value.is_finite() || !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::PositionWeightOutOfRange { which, value });
            }
        }
        if self.position_first + self.position_last > 1.0 + WEIGHT_EPSILON {
            return Err(ConfigError::PositionWeightsAboveOne { first: self.position_first, last: self.position_last });
        }
        if self.path_max_len == 0 {
            return Err(ConfigError::PathMaxLenZero);
        }
        if self.top_paths == 0 {
            return Err(ConfigError::TopPathsZero);
        }
        Ok(())
    }
}

/// A setting of [`Config`] that makes no sense.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    #[error("the lookback window must be longer than zero (got {0})")]
    LookbackNotPositive(Duration),
    #[error("the time-decay half-life must be longer than zero (got {0})")]
    HalfLifeNotPositive(Duration),
    #[error("the position-based weight of the {which} touchpoint must be between 0 and 1 (got {value})")]
    PositionWeightOutOfRange { which: &'static str, value: f64 },
    #[error("the position-based weights of the first ({first}) and last ({last}) touchpoints add up to more than 1")]
    PositionWeightsAboveOne { first: f64, last: f64 },
    #[error("path_max_len must be at least 1")]
    PathMaxLenZero,
    #[error("top_paths must be at least 1")]
    TopPathsZero,
}

/// Why [`attribute`] refused its input.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum AttributionError {
    #[error("invalid attribution settings: {0}")]
    Config(#[from] ConfigError),
    #[error("a touchpoint uses the reserved channel name {0:?}")]
    ReservedChannel(String),
    #[error("a touchpoint uses the reserved campaign name {0:?}")]
    ReservedCampaign(String),
    #[error("the total revenue of the orders does not fit in 64 bits")]
    RevenueOverflow,
}

/// An attribution model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    FirstTouch,
    LastTouch,
    Linear,
    PositionBased,
    TimeDecay,
    Markov,
}

impl Model {
    /// All models, in display order.
    pub const ALL: [Model; 6] = [Model::FirstTouch, Model::LastTouch, Model::Linear, Model::PositionBased, Model::TimeDecay, Model::Markov];
    /// The models that split each order between its touchpoints (all but Markov).
    pub const HEURISTIC: [Model; 5] = [Model::FirstTouch, Model::LastTouch, Model::Linear, Model::PositionBased, Model::TimeDecay];

    /// Stable snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::FirstTouch => "first_touch",
            Model::LastTouch => "last_touch",
            Model::Linear => "linear",
            Model::PositionBased => "position_based",
            Model::TimeDecay => "time_decay",
            Model::Markov => "markov",
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One value per model, so the models sit side by side in a table row.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PerModel<T> {
    pub first_touch: T,
    pub last_touch: T,
    pub linear: T,
    pub position_based: T,
    pub time_decay: T,
    pub markov: T,
}

impl<T> PerModel<T> {
    pub fn get(&self, model: Model) -> &T {
        match model {
            Model::FirstTouch => &self.first_touch,
            Model::LastTouch => &self.last_touch,
            Model::Linear => &self.linear,
            Model::PositionBased => &self.position_based,
            Model::TimeDecay => &self.time_decay,
            Model::Markov => &self.markov,
        }
    }

    pub fn get_mut(&mut self, model: Model) -> &mut T {
        match model {
            Model::FirstTouch => &mut self.first_touch,
            Model::LastTouch => &mut self.last_touch,
            Model::Linear => &mut self.linear,
            Model::PositionBased => &mut self.position_based,
            Model::TimeDecay => &mut self.time_decay,
            Model::Markov => &mut self.markov,
        }
    }
}

/// What one channel (or campaign) is credited with, under every model side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreditRow {
    /// Channel or campaign name ([`NO_TOUCHPOINT`], [`NO_CAMPAIGN`] included).
    pub key: String,
    /// Attributed conversions (fractions of orders).
    pub conversions: PerModel<f64>,
    /// Attributed revenue, exact share in minor units.
    pub revenue: PerModel<f64>,
    /// Attributed revenue in whole minor units (largest remainder rounding).
    pub revenue_minor: PerModel<i64>,
}

/// The same numbers as [`CreditRow`], one row per (model, key): the "long" table format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongCreditRow {
    pub model: Model,
    pub key: String,
    pub conversions: f64,
    pub revenue: f64,
    pub revenue_minor: i64,
}

/// How each heuristic model split one order: weights aligned with
/// [`ConversionDetail::touchpoints`], adding up to 1 (all empty if there is no touchpoint).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HeuristicWeights {
    pub first_touch: Vec<f64>,
    pub last_touch: Vec<f64>,
    pub linear: Vec<f64>,
    pub position_based: Vec<f64>,
    pub time_decay: Vec<f64>,
}

impl HeuristicWeights {
    /// The weights of a heuristic model; `None` for [`Model::Markov`], which only gives totals.
    pub fn get(&self, model: Model) -> Option<&[f64]> {
        match model {
            Model::FirstTouch => Some(&self.first_touch),
            Model::LastTouch => Some(&self.last_touch),
            Model::Linear => Some(&self.linear),
            Model::PositionBased => Some(&self.position_based),
            Model::TimeDecay => Some(&self.time_decay),
            Model::Markov => None,
        }
    }
}

/// One order, its touchpoints in the window (in the fixed order) and how each heuristic
/// model split it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConversionDetail {
    pub conversion: Conversion,
    pub touchpoints: Vec<Touchpoint>,
    pub weights: HeuristicWeights,
}

/// The result of [`attribute`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    /// Number of orders.
    pub conversions: usize,
    /// Orders without any touchpoint in their window (credited to [`NO_TOUCHPOINT`]).
    pub conversions_without_touchpoint: usize,
    /// Total revenue of all orders, minor units.
    pub revenue_minor: i64,
    /// One row per channel, sorted by channel name.
    pub by_channel: Vec<CreditRow>,
    /// One row per campaign, sorted by campaign name.
    pub by_campaign: Vec<CreditRow>,
    /// The Markov chain over channels: conversion probability and removal effects.
    pub markov_channels: MarkovReport,
    /// The Markov chain over campaigns.
    pub markov_campaigns: MarkovReport,
    /// One entry per order, sorted by (time, person, order id).
    pub details: Vec<ConversionDetail>,
    /// Paths to conversion and to non-conversion.
    pub paths: PathReport,
}

impl Attribution {
    /// [`Attribution::by_channel`] in long format, sorted by (model, channel).
    pub fn long_by_channel(&self) -> Vec<LongCreditRow> {
        long_rows(&self.by_channel)
    }

    /// [`Attribution::by_campaign`] in long format, sorted by (model, campaign).
    pub fn long_by_campaign(&self) -> Vec<LongCreditRow> {
        long_rows(&self.by_campaign)
    }
}

fn long_rows(rows: &[CreditRow]) -> Vec<LongCreditRow> {
    Model::ALL
        .iter()
        .flat_map(|&model| {
            rows.iter().map(move |row| LongCreditRow {
                model,
                key: row.key.clone(),
                conversions: *row.conversions.get(model),
                revenue: *row.revenue.get(model),
                revenue_minor: *row.revenue_minor.get(model),
            })
        })
        .collect()
}

/// Splits the integer `total` between rows with exact shares `values` (which should add up
/// to about `total`) so that the result adds up to exactly `total` and every row is within
/// one unit of its share: every value is rounded down, then the missing units go one by one
/// to the largest dropped fractions, ties to the earlier row. If the rounded-down values
/// already exceed `total` (only possible through floating-point error), units are taken back
/// from the smallest fractions first. Non-finite values count as 0. With no rows, returns
/// an empty vector.
pub fn largest_remainder(values: &[f64], total: i64) -> Vec<i64> {
    if values.is_empty() {
        return Vec::new();
    }
    let clean: Vec<f64> = values.iter().map(|v| if v.is_finite() { *v } else { 0.0 }).collect();
    // `as` saturates for out-of-range floats.
    let mut out: Vec<i64> = clean.iter().map(|v| v.floor() as i64).collect();
    let fractions: Vec<f64> = clean.iter().zip(&out).map(|(v, f)| (v - *f as f64).clamp(0.0, 1.0)).collect();
    let assigned: i128 = out.iter().map(|&v| i128::from(v)).sum();
    let missing = i128::from(total) - assigned;
    if missing == 0 {
        return out;
    }
    let mut order: Vec<usize> = (0..clean.len()).collect();
    if missing > 0 {
        order.sort_by(|&a, &b| fractions[b].total_cmp(&fractions[a]).then(a.cmp(&b)));
    } else {
        order.sort_by(|&a, &b| fractions[a].total_cmp(&fractions[b]).then(a.cmp(&b)));
    }
    let rows = clean.len() as i128;
    let whole = missing.abs() / rows;
    let rest = missing.abs() % rows;
    for (rank, &i) in order.iter().enumerate() {
        let units = whole + i128::from((rank as i128) < rest);
        let delta = i64::try_from(missing.signum() * units).unwrap_or(0);
        out[i] = out[i].saturating_add(delta);
    }
    out
}

/// Credits accumulated for one key: (conversions, exact revenue) per model.
type Credits = BTreeMap<String, (PerModel<f64>, PerModel<f64>)>;

fn add_credit(table: &mut Credits, key: &str, model: Model, conversions: f64, revenue: f64) {
    let entry = table.entry(key.to_string()).or_default();
    *entry.0.get_mut(model) += conversions;
    *entry.1.get_mut(model) += revenue;
}

fn finish_rows(table: Credits, total_revenue: i64) -> Vec<CreditRow> {
    let mut rows: Vec<CreditRow> = table
        .into_iter()
        .map(|(key, (conversions, revenue))| CreditRow { key, conversions, revenue, revenue_minor: PerModel::default() })
        .collect();
    for model in Model::ALL {
        let exact: Vec<f64> = rows.iter().map(|row| *row.revenue.get(model)).collect();
        for (row, whole) in rows.iter_mut().zip(largest_remainder(&exact, total_revenue)) {
            *row.revenue_minor.get_mut(model) = whole;
        }
    }
    rows
}

/// Shares the orders that had touchpoints between the Markov states, plus the others to
/// [`NO_TOUCHPOINT`].
fn add_markov_credit(table: &mut Credits, report: &MarkovReport, touched: (usize, f64), untouched: (usize, f64)) {
    let (touched_conversions, touched_revenue) = touched;
    if touched_conversions > 0 {
        for state in &report.states {
            add_credit(table, &state.state, Model::Markov, touched_conversions as f64 * state.share, touched_revenue * state.share);
        }
    }
    if untouched.0 > 0 {
        add_credit(table, NO_TOUCHPOINT, Model::Markov, untouched.0 as f64, untouched.1);
    }
}

/// Attributes every order to its touchpoints under all models; see the module documentation.
///
/// Pure and deterministic: the result does not depend on the order of the input rows.
pub fn attribute(touchpoints: &[Touchpoint], conversions: &[Conversion], config: &Config) -> Result<Attribution, AttributionError> {
    config.validate()?;
    for tp in touchpoints {
        if tp.channel == NO_TOUCHPOINT {
            return Err(AttributionError::ReservedChannel(tp.channel.clone()));
        }
        if let Some(campaign) = &tp.campaign {
            if campaign == NO_TOUCHPOINT || campaign == NO_CAMPAIGN {
                return Err(AttributionError::ReservedCampaign(campaign.clone()));
            }
        }
    }
    let total_revenue: i128 = conversions.iter().map(|c| i128::from(c.revenue_minor)).sum();
    let total_revenue = i64::try_from(total_revenue).map_err(|_| AttributionError::RevenueOverflow)?;

    let mut sorted_touchpoints: Vec<&Touchpoint> = touchpoints.iter().collect();
    sorted_touchpoints.sort_by(|a, b| cmp_touchpoints(a, b));
    // Each person's touchpoints, sorted by time (then channel, campaign, kind, source).
    let by_person: BTreeMap<&str, &[&Touchpoint]> =
        sorted_touchpoints.chunk_by(|a, b| a.person == b.person).map(|chunk| (chunk[0].person.as_str(), chunk)).collect();
    let mut sorted_conversions: Vec<&Conversion> = conversions.iter().collect();
    sorted_conversions.sort_by(|a, b| cmp_conversions(a, b));

    // Each order's window and the heuristic split.
    let details: Vec<ConversionDetail> = sorted_conversions
        .iter()
        .map(|conversion| {
            let own = by_person.get(conversion.person.as_str()).copied().unwrap_or(&[]);
            let end = own.partition_point(|tp| tp.at <= conversion.at);
            let start = match conversion.at.checked_sub_signed(config.lookback) {
                Some(from) => own[..end].partition_point(|tp| tp.at < from),
                None => 0,
            };
            let window: Vec<Touchpoint> = own[start..end].iter().map(|tp| (*tp).clone()).collect();
            let weights = heuristics::heuristic_weights(&window, config);
            ConversionDetail { conversion: (*conversion).clone(), touchpoints: window, weights }
        })
        .collect();

    let mut channels = Credits::new();
    let mut campaigns = Credits::new();
    let mut touched = (0usize, 0f64);
    let mut untouched = (0usize, 0f64);
    for detail in &details {
        let revenue = detail.conversion.revenue_minor as f64;
        if detail.touchpoints.is_empty() {
            untouched.0 += 1;
            untouched.1 += revenue;
            for model in Model::HEURISTIC {
                add_credit(&mut channels, NO_TOUCHPOINT, model, 1.0, revenue);
                add_credit(&mut campaigns, NO_TOUCHPOINT, model, 1.0, revenue);
            }
            continue;
        }
        touched.0 += 1;
        touched.1 += revenue;
        for model in Model::HEURISTIC {
            let weights = detail.weights.get(model).unwrap_or(&[]);
            for (tp, &w) in detail.touchpoints.iter().zip(weights) {
                add_credit(&mut channels, &tp.channel, model, w, w * revenue);
                add_credit(&mut campaigns, tp.campaign_label(), model, w, w * revenue);
            }
        }
    }

    // Journeys that did not end in an order: a person's touchpoints after their last order
    // (or all of them if they never ordered), at most `lookback` before their last one.
    let mut last_order: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for conversion in &sorted_conversions {
        last_order.insert(conversion.person.as_str(), conversion.at);
    }
    let non_converting: Vec<(&str, &[&Touchpoint])> = by_person
        .iter()
        .filter_map(|(&person, &own)| {
            let start = match last_order.get(person) {
                Some(&last) => own.partition_point(|tp| tp.at <= last),
                None => 0,
            };
            let after = &own[start..];
            let latest = after.last()?.at;
            let from = match latest.checked_sub_signed(config.lookback) {
                Some(from) => after.partition_point(|tp| tp.at < from),
                None => 0,
            };
            Some((person, &after[from..]))
        })
        .collect();

    let markov_channels = removal_effects(&markov_paths(&details, &non_converting, |tp| tp.channel.as_str()));
    let markov_campaigns = removal_effects(&markov_paths(&details, &non_converting, |tp| tp.campaign_label()));
    add_markov_credit(&mut channels, &markov_channels, touched, untouched);
    add_markov_credit(&mut campaigns, &markov_campaigns, touched, untouched);

    let paths = paths::build_report(&details, &non_converting, config);

    Ok(Attribution {
        conversions: details.len(),
        conversions_without_touchpoint: untouched.0,
        revenue_minor: total_revenue,
        by_channel: finish_rows(channels, total_revenue),
        by_campaign: finish_rows(campaigns, total_revenue),
        markov_channels,
        markov_campaigns,
        details,
        paths,
    })
}

/// The journeys fed to the Markov chain: one per order with touchpoints (converted) and one
/// per non-converting journey, each as the sequence of `label`s with repeats collapsed.
fn markov_paths(
    details: &[ConversionDetail],
    non_converting: &[(&str, &[&Touchpoint])],
    label: impl Fn(&Touchpoint) -> &str,
) -> Vec<(Vec<String>, bool)> {
    let converting =
        details.iter().filter(|d| !d.touchpoints.is_empty()).map(|d| (paths::collapse(d.touchpoints.iter().map(&label)), true));
    let lost = non_converting.iter().map(|(_, tps)| (paths::collapse(tps.iter().map(|tp| label(tp))), false));
    converting.chain(lost).collect()
}
