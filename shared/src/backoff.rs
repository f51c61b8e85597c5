//! The one backoff: exponential delays with jitter, for every retry loop that races other
//! writers (identity's optimistic transactions, activation's pressure item, DynamoDB's
//! unprocessed keys, webhook retries without a `Retry-After`).

use std::time::Duration;

/// `base · 2^attempt` (the exponent capped at `max_doubling`), plus a jitter of up to
/// half of `base` so that racing writers do not retry in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max_doubling: u32,
}

impl Backoff {
    pub const fn new(base: Duration, max_doubling: u32) -> Backoff {
        Backoff { base, max_doubling }
    }

    /// The delay before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.min(self.max_doubling).min(31));
        let half = self.base.as_nanos() as u64 / 2;
        let jitter = if half == 0 { 0 } else { random_u64() % half };
        exp + Duration::from_nanos(jitter)
    }

    /// Waits [`Backoff::delay`] for `attempt`.
    pub async fn wait(&self, attempt: u32) {
        tokio::time::sleep(self.delay(attempt)).await;
    }
}

/// A well-spread (not cryptographic) random number: SipHash of a process-wide counter under keys the standard
/// library draws from the OS at start (no random-number dependency, different sequences
/// in different processes).
pub fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = KEYS.get_or_init(std::collections::hash_map::RandomState::new).build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_bounded_jitter() {
        let b = Backoff::new(Duration::from_millis(10), 3);
        for (attempt, lo) in [(0, 10), (1, 20), (2, 40), (3, 80), (9, 80)] {
            let d = b.delay(attempt);
            assert!(d >= Duration::from_millis(lo) && d < Duration::from_millis(lo + 5), "attempt {attempt}: {d:?}");
        }
        let spread: std::collections::BTreeSet<Duration> = (0..20).map(|_| b.delay(0)).collect();
        assert!(spread.len() > 1, "jittered");
        assert_eq!(Backoff::new(Duration::ZERO, 5).delay(4), Duration::ZERO);
    }
}
