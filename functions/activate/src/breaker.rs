//! A circuit breaker per destination: a destination that keeps failing is left alone for
//! a cool-down instead of being hammered, and the messages that wanted it wait on the
//! activation queue (put back with a delay, a fresh receive count each time) instead of
//! burning their receives and landing in the DLQ while it is down.
//!
//! - **closed**: sends go through; each send that still fails after its in-invocation
//!   retries with a retryable error (5xx, 429, no answer) counts one failure; a success
//!   resets the count;
//! - **open**: after `threshold` failures in a row, for `cooldown` (doubled at each
//!   opening in a row, at most `max_cooldown`), no send to the destination is attempted;
//! - **half-open**: once the cool-down is over, sends go through again; the first failure
//!   opens it again at once (with the doubled cool-down), the first success closes it.
//!
//! The state lives in the activation ledger (`BREAKER#<destination>`), shared by every
//! instance; it is read at most every [`STATE_TTL`] per instance. Counts are approximate
//! under concurrency (last writer wins), which is all a breaker needs.

use std::time::Duration as StdDuration;

use ariane_shared::ports::BreakerState;
use chrono::{DateTime, Duration, Utc};

/// How long an instance trusts the breaker state it read.
pub const STATE_TTL: StdDuration = StdDuration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failed sends in a row that open the breaker.
    pub threshold: u32,
    /// The first cool-down.
    pub cooldown: Duration,
    /// The longest cool-down.
    pub max_cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy { threshold: 5, cooldown: Duration::minutes(5), max_cooldown: Duration::hours(1) }
    }
}

/// Until when sends to the destination wait (`None`: they go through).
pub fn open_until(state: &BreakerState, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    state.open_until.filter(|t| *t > now)
}

/// The state after a send that failed with a retryable error.
pub fn on_failure(state: &BreakerState, now: DateTime<Utc>, policy: &BreakerPolicy) -> BreakerState {
    if open_until(state, now).is_some() {
        // Already open (another instance opened it meanwhile): nothing to add.
        return state.clone();
    }
    let half_open = state.openings > 0;
    let failures = state.failures + 1;
    if half_open || failures >= policy.threshold {
        let doubling = state.openings.min(16);
        let cooldown = (policy.cooldown * 2i32.pow(doubling)).min(policy.max_cooldown);
        BreakerState { failures: 0, openings: state.openings + 1, open_until: Some(now + cooldown) }
    } else {
        BreakerState { failures, ..state.clone() }
    }
}

/// The state after a send the destination accepted.
pub fn on_success(_state: &BreakerState) -> BreakerState {
    BreakerState::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    #[test]
    fn opens_after_the_threshold_then_half_opens_with_a_doubled_cooldown() {
        let p = BreakerPolicy::default();
        let mut s = BreakerState::default();
        for i in 1..p.threshold {
            s = on_failure(&s, at(0), &p);
            assert_eq!((s.failures, open_until(&s, at(0))), (i, None), "closed below the threshold");
        }
        s = on_failure(&s, at(0), &p);
        assert_eq!(open_until(&s, at(1)), Some(at(5)), "open for the first cool-down");
        assert_eq!(on_failure(&s, at(1), &p), s, "failures while open change nothing");
        // Half-open after the cool-down: one failure reopens, for twice as long.
        assert_eq!(open_until(&s, at(5)), None);
        s = on_failure(&s, at(6), &p);
        assert_eq!(open_until(&s, at(6)), Some(at(16)));
        s = on_failure(&s, at(16), &p);
        assert_eq!(open_until(&s, at(16)), Some(at(36)));
        for _ in 0..10 {
            let t = s.open_until.unwrap();
            s = on_failure(&s, t, &p);
        }
        let t = s.open_until.unwrap();
        assert_eq!(on_failure(&s, t, &p).open_until, Some(t + Duration::hours(1)), "the cool-down is capped");
        // A success closes it completely.
        assert_eq!(on_success(&s), BreakerState::default());
    }
}
