//! The data-driven model: first-order Markov chain and removal effects.
//!
//! # In plain words
//!
//! Every journey is a sequence of channels, e.g. `email > sms > web`, that ends either in an
//! order ("conversion") or in nothing ("null"). Counting all the moves of all journeys gives,
//! for each channel, how often a person goes next to each other channel, to an order, or to
//! nothing. From these odds we can compute exactly the chance that a journey starting
//! anywhere ends in an order: the *conversion probability*.
//!
//! To value a channel, we pretend it does not exist: whoever reaches it is lost. The
//! conversion probability drops; the relative drop is the channel's *removal effect*:
//! `1 - P(conversion without the channel) / P(conversion)`. A removal effect of 1 means no
//! order can happen without the channel, 0 that it makes no difference. Removal effects do
//! not add up to 1 (several channels can each be indispensable), so the orders are shared in
//! proportion to them: a channel's share is its removal effect divided by the sum of all.
//!
//! # Choices
//!
//! - Journeys: each order with at least one touchpoint gives a converting journey (its
//!   touchpoints in the lookback window); each person gives at most one non-converting
//!   journey: their touchpoints after their last order (all of them if they never ordered),
//!   limited to `lookback` before their last touchpoint. Orders without any touchpoint are
//!   not part of the chain (they are credited to "(none)").
//! - Consecutive repeats are collapsed (`email > email > sms` is `email > sms`). In a
//!   first-order chain this does not change any probability computed here: a state's
//!   self-loop only delays the next move, not where it goes.
//! - The probabilities are computed exactly, not by simulation: one inversion of the
//!   matrix of the chain (Gauss-Jordan elimination) gives the conversion probability and
//!   every removal effect at once (see `solve_chain` in the source for the formula). The
//!   cost grows with the cube of the number of states: instant for tens of channels, well
//!   under a second for a few hundred campaigns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A state's removal effect and share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateEffect {
    /// Channel (or campaign) name.
    pub state: String,
    /// Probability that a journey converts when this state loses everyone who reaches it.
    pub conversion_probability_without: f64,
    /// `1 - conversion_probability_without / conversion_probability`, in `[0, 1]`.
    pub removal_effect: f64,
    /// Removal effect divided by the sum of all removal effects: share of the orders.
    pub share: f64,
}

/// Result of [`removal_effects`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MarkovReport {
    /// Probability that a journey ends in an order, according to the chain.
    pub conversion_probability: f64,
    /// Journeys that ended in an order (non-empty ones only).
    pub converting_paths: usize,
    /// Journeys that did not.
    pub non_converting_paths: usize,
    /// One entry per state, sorted by state name. Shares add up to 1 when there is at least
    /// one state.
    pub states: Vec<StateEffect>,
}

/// Builds the chain from `paths` (sequence of states, converted or not; empty paths are
/// ignored) and computes each state's removal effect.
///
/// If no path converts, every removal effect is 0 and the states share equally (there is
/// nothing to share out in that case anyway).
pub fn removal_effects(paths: &[(Vec<String>, bool)]) -> MarkovReport {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (states, _) in paths {
        for state in states {
            names.entry(state.as_str()).or_insert(0);
        }
    }
    // Index 0 is the start; channels follow in name order.
    for (i, index) in names.values_mut().enumerate() {
        *index = i + 1;
    }
    let transient = names.len() + 1;
    let conversion = transient;
    let null = transient + 1;
    let mut counts = vec![vec![0.0f64; transient + 2]; transient];
    let mut report = MarkovReport::default();
    for (states, converted) in paths {
        if states.is_empty() {
            continue;
        }
        if *converted {
            report.converting_paths += 1;
        } else {
            report.non_converting_paths += 1;
        }
        let mut previous = 0;
        for state in states {
            let next = names[state.as_str()];
            if next != previous {
                counts[previous][next] += 1.0;
            }
            previous = next;
        }
        counts[previous][if *converted { conversion } else { null }] += 1.0;
    }
    // Row-normalise into transition probabilities.
    for row in &mut counts {
        let total: f64 = row.iter().sum();
        if total > 0.0 {
            row.iter_mut().for_each(|c| *c /= total);
        }
    }
    let (probability, without) = solve_chain(&counts);
    report.conversion_probability = probability;
    report.states = names
        .iter()
        .map(|(&name, &index)| {
            let without = without[index];
            let removal_effect = if probability > 0.0 { (1.0 - without / probability).clamp(0.0, 1.0) } else { 0.0 };
            StateEffect { state: name.to_string(), conversion_probability_without: without, removal_effect, share: 0.0 }
        })
        .collect();
    let total: f64 = report.states.iter().map(|s| s.removal_effect).sum();
    let equal = 1.0 / report.states.len().max(1) as f64;
    for state in &mut report.states {
        state.share = if total > 0.0 { state.removal_effect / total } else { equal };
    }
    report
}

/// The conversion probability from the start, and for every transient state `k` the
/// conversion probability when `k` is a dead end (index 0, the start, is meaningless).
///
/// With `N = (I - Q)^-1` (the expected number of visits of each state from each state) and
/// `h = N r` (the conversion probability from each state), a journey from the start converts
/// either without ever visiting `k`, or after visiting it, which happens with probability
/// `f_k = N[0][k] / N[k][k]` and is then followed by conversion with probability `h[k]`.
/// Removing `k` loses exactly the second part: `P(without k) = h[0] - f_k * h[k]`. One
/// matrix inversion thus gives every removal effect. If the inversion fails numerically,
/// each removal is solved on its own instead.
fn solve_chain(transitions: &[Vec<f64>]) -> (f64, Vec<f64>) {
    let n = transitions.len();
    let i_minus_q: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| f64::from(u8::from(i == j)) - transitions[i][j]).collect()).collect();
    let Some(fundamental) = invert(i_minus_q) else {
        let probability = conversion_probability(transitions, None);
        let without = (0..n).map(|k| conversion_probability(transitions, Some(k))).collect();
        return (probability, without);
    };
    let h: Vec<f64> = fundamental.iter().map(|row| (0..n).map(|j| row[j] * transitions[j][n]).sum::<f64>()).collect();
    let probability = unit(h[0]);
    let without = (0..n)
        .map(|k| {
            let reach = unit(fundamental[0][k] / fundamental[k][k]);
            unit(probability - reach * h[k]).min(probability)
        })
        .collect();
    (probability, without)
}

/// Inverse of a square matrix by Gauss-Jordan elimination with partial pivoting; `None` if
/// it is (numerically) singular.
fn invert(matrix: Vec<Vec<f64>>) -> Option<Vec<Vec<f64>>> {
    let n = matrix.len();
    let mut a: Vec<Vec<f64>> = matrix
        .into_iter()
        .enumerate()
        .map(|(i, mut row)| {
            row.extend((0..n).map(|j| f64::from(u8::from(i == j))));
            row
        })
        .collect();
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < SINGULAR {
            return None;
        }
        a.swap(col, pivot);
        let scale = a[col][col];
        a[col].iter_mut().for_each(|cell| *cell /= scale);
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            let factor = row[col];
            if r != col && factor != 0.0 {
                for (cell, p) in row.iter_mut().zip(&pivot_row) {
                    *cell -= factor * p;
                }
            }
        }
    }
    Some(a.into_iter().map(|row| row[n..].to_vec()).collect())
}

/// `x` clamped to `[0, 1]`, 0 if not a number.
fn unit(x: f64) -> f64 {
    if x.is_finite() {
        x.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Pivots smaller than this are treated as zero. `I - Q` of a chain built from finite
/// journeys is never singular (every state leads to conversion or null); this only guards
/// against floating-point breakdown.
const SINGULAR: f64 = 1e-300;

/// Probability of reaching the conversion state from the start (index 0), with `removed`
/// turned into a dead end. `transitions` has one row per transient state (start and
/// channels) and columns `[transient..., conversion, null]`.
///
/// Solves `(I - Q) h = r` where `Q` is the transient-to-transient block and `r` the column
/// of moves into conversion.
fn conversion_probability(transitions: &[Vec<f64>], removed: Option<usize>) -> f64 {
    let n = transitions.len();
    // Augmented matrix [I - Q | r].
    let mut a: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let mut row = vec![0.0; n + 1];
            row[i] = 1.0;
            if Some(i) != removed {
                for (j, cell) in row.iter_mut().enumerate().take(n) {
                    *cell -= transitions[i][j];
                }
                row[n] = transitions[i][n];
            }
            row
        })
        .collect();
    solve(&mut a).map_or(0.0, |h| unit(h[0]))
}

/// Gaussian elimination with partial pivoting on an augmented `n x (n + 1)` matrix.
/// `None` if the matrix is singular (cannot happen for chains built from finite journeys,
/// where every state leads to an absorbing one).
fn solve(a: &mut [Vec<f64>]) -> Option<Vec<f64>> {
    let n = a.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < SINGULAR {
            return None;
        }
        a.swap(col, pivot);
        let (upper, lower) = a.split_at_mut(col + 1);
        let pivot_row = &upper[col];
        for row in lower {
            let factor = row[col] / pivot_row[col];
            if factor != 0.0 {
                for (cell, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *cell -= factor * p;
                }
            }
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let known: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (a[row][n] - known) / a[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(states: &[&str], converted: bool) -> (Vec<String>, bool) {
        (states.iter().map(|s| s.to_string()).collect(), converted)
    }

    fn effect<'a>(report: &'a MarkovReport, state: &str) -> &'a StateEffect {
        report.states.iter().find(|s| s.state == state).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// The classic three-journey example.
    ///
    /// Journeys: `c1 > c2 > c3 > conversion`, `c1 > null`, `c2 > c3 > null`.
    /// Transitions: start→c1 2/3, start→c2 1/3; c1→c2 1/2, c1→null 1/2; c2→c3 1;
    /// c3→conversion 1/2, c3→null 1/2.
    /// P(conversion) = 2/3·1/2·1·1/2 + 1/3·1·1/2 = 1/6 + 1/6 = 1/3.
    /// Without c1: only start→c2→c3→conversion = 1/3·1/2 = 1/6, removal effect 1 − (1/6)/(1/3) = 1/2.
    /// Without c2 or c3: no journey reaches conversion, removal effect 1.
    /// Sum 2.5, shares c1 = 0.5/2.5 = 0.2, c2 = c3 = 1/2.5 = 0.4.
    #[test]
    fn classic_three_paths() {
        let report = removal_effects(&[path(&["c1", "c2", "c3"], true), path(&["c1"], false), path(&["c2", "c3"], false)]);
        assert!(close(report.conversion_probability, 1.0 / 3.0));
        assert_eq!(report.converting_paths, 1);
        assert_eq!(report.non_converting_paths, 2);
        let c1 = effect(&report, "c1");
        assert!(close(c1.conversion_probability_without, 1.0 / 6.0));
        assert!(close(c1.removal_effect, 0.5));
        assert!(close(c1.share, 0.2));
        for name in ["c2", "c3"] {
            let e = effect(&report, name);
            assert!(close(e.conversion_probability_without, 0.0));
            assert!(close(e.removal_effect, 1.0));
            assert!(close(e.share, 0.4));
        }
    }

    /// A journey that loops back, so the answer needs the linear system, not a product.
    ///
    /// Journeys: `a > b > a > conversion`, `b > null`, `a > null`.
    /// Transitions: start→a 2/3, start→b 1/3; a→b 1/3, a→conversion 1/3, a→null 1/3;
    /// b→a 1/2, b→null 1/2.
    /// h_a = 1/3·h_b + 1/3 and h_b = 1/2·h_a, so h_a = 1/6·h_a + 1/3, h_a = 2/5, h_b = 1/5.
    /// P(conversion) = 2/3·2/5 + 1/3·1/5 = 1/3.
    /// Without a: h_b = 0 too, P = 0, removal effect 1.
    /// Without b: h_a = 1/3, P = 2/3·1/3 = 2/9, removal effect 1 − (2/9)/(1/3) = 1/3.
    /// Shares: a = 1/(4/3) = 3/4, b = (1/3)/(4/3) = 1/4.
    #[test]
    fn loop_needs_linear_system() {
        let report = removal_effects(&[path(&["a", "b", "a"], true), path(&["b"], false), path(&["a"], false)]);
        assert!(close(report.conversion_probability, 1.0 / 3.0));
        let a = effect(&report, "a");
        assert!(close(a.removal_effect, 1.0));
        assert!(close(a.share, 0.75));
        let b = effect(&report, "b");
        assert!(close(b.conversion_probability_without, 2.0 / 9.0));
        assert!(close(b.removal_effect, 1.0 / 3.0));
        assert!(close(b.share, 0.25));
    }

    #[test]
    fn repeats_do_not_change_the_result() {
        let plain = removal_effects(&[path(&["c1", "c2", "c3"], true), path(&["c1"], false), path(&["c2", "c3"], false)]);
        let repeated =
            removal_effects(&[path(&["c1", "c1", "c2", "c3", "c3"], true), path(&["c1", "c1"], false), path(&["c2", "c2", "c3"], false)]);
        assert_eq!(plain, repeated);
    }

    #[test]
    fn single_channel_takes_everything() {
        let report = removal_effects(&[path(&["email"], true), path(&["email"], false)]);
        assert!(close(report.conversion_probability, 0.5));
        let email = effect(&report, "email");
        assert!(close(email.removal_effect, 1.0));
        assert!(close(email.share, 1.0));
    }

    /// Removal by a dead end solved on its own for every state gives the same numbers as
    /// the single inversion.
    fn assert_matches_direct_solve(paths: &[(Vec<String>, bool)]) {
        let report = removal_effects(paths);
        let mut names: Vec<&str> = paths.iter().flat_map(|(states, _)| states.iter().map(String::as_str)).collect();
        names.sort_unstable();
        names.dedup();
        let index = |name: &str| names.binary_search(&name).unwrap() + 1;
        let n = names.len() + 1;
        let mut counts = vec![vec![0.0f64; n + 2]; n];
        for (states, converted) in paths.iter().filter(|(s, _)| !s.is_empty()) {
            let mut previous = 0;
            for state in states {
                let next = index(state);
                if next != previous {
                    counts[previous][next] += 1.0;
                }
                previous = next;
            }
            counts[previous][if *converted { n } else { n + 1 }] += 1.0;
        }
        for row in &mut counts {
            let total: f64 = row.iter().sum();
            if total > 0.0 {
                row.iter_mut().for_each(|c| *c /= total);
            }
        }
        let probability = conversion_probability(&counts, None);
        assert!((report.conversion_probability - probability).abs() < 1e-9);
        for state in &report.states {
            let direct = conversion_probability(&counts, Some(index(&state.state)));
            assert!(
                (state.conversion_probability_without - direct).abs() < 1e-9,
                "{}: {} vs {direct}",
                state.state,
                state.conversion_probability_without
            );
        }
        let shares: f64 = report.states.iter().map(|s| s.share).sum();
        assert!(report.states.is_empty() || (shares - 1.0).abs() < 1e-9);
    }

    #[test]
    fn inversion_matches_direct_solve_on_examples() {
        assert_matches_direct_solve(&[path(&["c1", "c2", "c3"], true), path(&["c1"], false), path(&["c2", "c3"], false)]);
        assert_matches_direct_solve(&[path(&["a", "b", "a"], true), path(&["b"], false), path(&["a"], false)]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn inversion_matches_direct_solve(
            raw in proptest::collection::vec(
                (proptest::collection::vec(0..6u8, 0..7), proptest::bool::ANY),
                0..20,
            )
        ) {
            let paths: Vec<(Vec<String>, bool)> = raw
                .into_iter()
                .map(|(states, converted)| {
                    (states.iter().map(|s| format!("s{s}")).collect(), converted)
                })
                .collect();
            assert_matches_direct_solve(&paths);
        }
    }

    #[test]
    fn nothing_converts_or_nothing_at_all() {
        let report = removal_effects(&[path(&["a"], false), path(&["b", "a"], false)]);
        assert_eq!(report.conversion_probability, 0.0);
        assert!(report.states.iter().all(|s| s.removal_effect == 0.0));
        assert!(report.states.iter().all(|s| close(s.share, 0.5)));
        let empty = removal_effects(&[]);
        assert_eq!(empty.states, Vec::new());
        assert_eq!(empty.conversion_probability, 0.0);
        let only_empty = removal_effects(&[(Vec::new(), true)]);
        assert_eq!(only_empty.converting_paths, 0);
    }
}
