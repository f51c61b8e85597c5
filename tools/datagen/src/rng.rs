//! Per-person random streams.
//!
//! Every person `i` gets its own [`ChaCha8Rng`] keyed by `(seed, i)`, so a
//! person (and their orders) can be generated in isolation, in any order and
//! in constant memory. Independent aspects of a person use distinct ChaCha
//! streams of the same key, so that e.g. changing the malformed-row rate does
//! not change who orders what and when.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Independent random streams derived from one person key.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stream {
    /// Identity attributes: names, e-mail, phone, address, customer id.
    Identity = 0,
    /// Purchase behaviour: how many orders, when, what, typed contact data.
    Orders = 1,
    /// Which order lines get corrupted, and how.
    Defects = 2,
    /// Channel identifiers and channel usage (see `crate::channels::profile`).
    Profile = 3,
    /// Store visits and receipts.
    Pos = 4,
    /// E-shop carts and checkouts.
    Checkouts = 5,
    /// Web analytics sessions.
    Web = 6,
    /// E-mail campaign activity.
    Email = 7,
    /// SMS campaign activity.
    Sms = 8,
    /// Mobile app events.
    App = 9,
    /// CRM contact history.
    Crm = 10,
    /// File-level dirt of one export (blank lines, malformed rows, cosmetic
    /// variations), drawn in output order.
    Dirt = 11,
    /// Planted effects (`crate::channels::planted`): whatever the plant adds to a person,
    /// and the file-level dirt of the planted rows.
    Planted = 12,
}

/// One step of the SplitMix64 generator (Steele, Lea & Flood 2014); used
/// only to turn `(seed, index)` into a well-mixed 256-bit ChaCha key.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random generator of person `index` for `stream`, under `seed`.
pub(crate) fn person_rng(seed: u64, index: u64, stream: Stream) -> ChaCha8Rng {
    let mut seed_state = seed;
    // Odd multiplier: distinct indices give distinct states for a given seed.
    let mut state = splitmix64(&mut seed_state) ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    let mut key = [0u8; 32];
    for chunk in key.chunks_exact_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(stream as u64);
    rng
}

/// Picks an index in `0..weights.len()` with probability proportional to
/// its weight. `weights` must be non-empty with a positive sum (all call
/// sites use constant tables).
pub(crate) fn pick_weighted<R: Rng>(rng: &mut R, weights: &[u32]) -> usize {
    pick_weighted_by(rng, weights, |&w| w)
}

/// Like [`pick_weighted`], reading each item's weight with `weight`.
pub(crate) fn pick_weighted_by<R: Rng, T>(rng: &mut R, items: &[T], weight: impl Fn(&T) -> u32) -> usize {
    let total: u32 = items.iter().map(&weight).sum();
    let mut x = rng.random_range(0..total.max(1));
    for (i, item) in items.iter().enumerate() {
        let w = weight(item);
        if x < w {
            return i;
        }
        x -= w;
    }
    items.len().saturating_sub(1)
}

/// Uniform index in `0..len` (`len > 0`), drawn as `u32` so that the result
/// does not depend on the platform's pointer width.
pub(crate) fn pick_index<R: Rng>(rng: &mut R, len: usize) -> usize {
    let len = u32::try_from(len).unwrap_or(u32::MAX).max(1);
    rng.random_range(0..len) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let a: u64 = person_rng(42, 7, Stream::Identity).random();
        let b: u64 = person_rng(42, 7, Stream::Identity).random();
        let c: u64 = person_rng(42, 7, Stream::Orders).random();
        let d: u64 = person_rng(42, 8, Stream::Identity).random();
        let e: u64 = person_rng(43, 7, Stream::Identity).random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
        assert_ne!(a, e);
    }

    #[test]
    fn weighted_pick_respects_zero_weights() {
        let mut rng = person_rng(1, 1, Stream::Orders);
        for _ in 0..1000 {
            assert_eq!(pick_weighted(&mut rng, &[0, 5, 0]), 1);
        }
    }
}
