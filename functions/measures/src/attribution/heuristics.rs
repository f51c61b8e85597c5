//! The heuristic models: how each order is split between its touchpoints.
//!
//! See the documentation of [`super`] for the rules in plain words.

use chrono::{DateTime, Duration, Utc};

use super::{Config, HeuristicWeights, Touchpoint};

/// Position-based weights for `n` touchpoints (rules in the documentation of [`super`]).
pub fn position_weights(n: usize, first: f64, last: f64) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![1.0],
        2 => {
            let ends = first + last;
            if ends > 0.0 {
                vec![first / ends, last / ends]
            } else {
                vec![0.5, 0.5]
            }
        }
        _ => {
            let middle = (1.0 - first - last).max(0.0) / (n - 2) as f64;
            let mut weights = vec![middle; n];
            weights[0] = first;
            weights[n - 1] = last;
            weights
        }
    }
}

fn seconds(duration: Duration) -> f64 {
    duration.num_seconds() as f64 + f64::from(duration.subsec_nanos()) * 1e-9
}

/// Time-decay weights of touchpoints at `times` (all at or before the order):
/// `2^(-age / half_life)`, scaled to add up to 1.
///
/// Ages are measured from the latest touchpoint rather than from the order; after scaling
/// this is the same, and it keeps the latest weight at 1 so that very old touchpoints or a
/// very short half-life can never make all weights underflow to zero.
pub fn time_decay_weights(times: &[DateTime<Utc>], half_life: Duration) -> Vec<f64> {
    let Some(latest) = times.iter().max() else {
        return Vec::new();
    };
    let half_life = seconds(half_life);
    let raw: Vec<f64> = times.iter().map(|&at| (-(seconds(*latest - at) / half_life)).exp2()).collect();
    let total: f64 = raw.iter().sum();
    raw.iter().map(|w| w / total).collect()
}

/// The split of one order under every heuristic model.
pub(super) fn heuristic_weights(window: &[Touchpoint], config: &Config) -> HeuristicWeights {
    let n = window.len();
    if n == 0 {
        return HeuristicWeights::default();
    }
    let mut first_touch = vec![0.0; n];
    first_touch[0] = 1.0;
    let mut last_touch = vec![0.0; n];
    last_touch[n - 1] = 1.0;
    let times: Vec<DateTime<Utc>> = window.iter().map(|tp| tp.at).collect();
    HeuristicWeights {
        first_touch,
        last_touch,
        linear: vec![1.0 / n as f64; n],
        position_based: position_weights(n, config.position_first, config.position_last),
        time_decay: time_decay_weights(&times, config.half_life),
    }
}
