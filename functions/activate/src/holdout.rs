//! Deterministic holdout groups, to measure a campaign's lift against profiles that were
//! eligible but deliberately not contacted.
//!
//! Membership is a pure function of (campaign, profile): the same profile stays in (or
//! out of) a campaign's holdout on every run and every machine, without storing
//! anything, and the holdouts of different campaigns are independent of each other, so
//! no customer is systematically left out of every campaign.

use sha2::{Digest, Sha256};

/// Domain-separation prefix of the hashed input.
const DOMAIN: &[u8] = b"ariane-holdout\x1f";

/// The largest `f64` below 1, 1 - 2^-53.
const LARGEST_BELOW_ONE: f64 = 1.0 - f64::EPSILON / 2.0;

/// Where `profile_id` falls in `campaign`'s uniform draw, in `[0, 1)`.
///
/// The first 8 bytes of SHA-256(`"ariane-holdout\x1f" + campaign + "\x1f" +
/// profile_id`), read as a big-endian `u64`, divided by 2^64 (rounded to the nearest
/// `f64`, as Python's `int / 2**64` does). The 1024 largest values would round to 1.0;
/// they give the largest `f64` below 1 instead.
pub fn holdout_fraction(campaign: &str, profile_id: &str) -> f64 {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(campaign.as_bytes());
    hasher.update(b"\x1f");
    hasher.update(profile_id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    fraction_of(u64::from_be_bytes(first))
}

/// `x / 2^64`, kept below 1.
fn fraction_of(x: u64) -> f64 {
    // 2^64 as an f64, exactly; dividing by a power of two is exact, so the only
    // rounding is `x as f64`.
    const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
    (x as f64 / TWO_POW_64).min(LARGEST_BELOW_ONE)
}

/// Whether `profile_id` is in the holdout of `campaign` when `percent` % of profiles
/// are held out: `holdout_fraction < percent / 100`.
///
/// `percent` is clamped to `[0, 100]` (NaN counts as 0): 0 holds out no one, 100
/// everyone. Raising the percentage only adds profiles to the holdout.
pub fn in_holdout(campaign: &str, profile_id: &str, percent: f64) -> bool {
    let percent = if percent.is_nan() { 0.0 } else { percent.clamp(0.0, 100.0) };
    holdout_fraction(campaign, profile_id) < percent / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn deterministic_and_in_range() {
        for i in 0..1000 {
            let p = format!("p_{i}");
            let f = holdout_fraction("noel-2026", &p);
            assert_eq!(f, holdout_fraction("noel-2026", &p));
            assert!((0.0..1.0).contains(&f));
        }
        assert_ne!(holdout_fraction("a", "bc"), holdout_fraction("ab", "c"), "the separator matters");
    }

    #[test]
    fn known_value() {
        // python3 -c 'import hashlib;d=hashlib.sha256(b"ariane-holdout\x1fnoel-2026\x1fp_1").digest();print(int.from_bytes(d[:8],"big")/2**64)'
        assert_eq!(holdout_fraction("noel-2026", "p_1"), 0.5335265389907279);
    }

    #[test]
    fn largest_values_stay_below_one() {
        assert_eq!(fraction_of(0), 0.0);
        assert_eq!(fraction_of(1 << 63), 0.5);
        assert_eq!(fraction_of(u64::MAX), LARGEST_BELOW_ONE);
        assert_eq!(fraction_of(u64::MAX - (1 << 11)), LARGEST_BELOW_ONE);
        assert!(fraction_of(u64::MAX) < 1.0);
    }

    #[test]
    fn extremes() {
        for i in 0..1000 {
            let p = format!("p_{i}");
            assert!(!in_holdout("c", &p, 0.0));
            assert!(!in_holdout("c", &p, -5.0));
            assert!(!in_holdout("c", &p, f64::NAN));
            assert!(in_holdout("c", &p, 100.0));
            assert!(in_holdout("c", &p, 250.0));
            assert!(in_holdout("c", &p, f64::INFINITY));
        }
    }

    #[test]
    fn campaigns_are_independent() {
        let n = 10_000;
        let (mut a, mut b, mut both) = (0, 0, 0);
        for i in 0..n {
            let p = format!("p_{i}");
            let (x, y) = (in_holdout("soldes-hiver", &p, 10.0), in_holdout("fete-des-meres", &p, 10.0));
            a += usize::from(x);
            b += usize::from(y);
            both += usize::from(x && y);
        }
        // Expected 1% (100 profiles), standard deviation about 10.
        assert!((60..=140).contains(&both), "overlap {both} of {a} and {b}");
    }

    #[test]
    fn shares_match_the_target() {
        let n = 20_000;
        let fractions: Vec<f64> = (0..n).map(|i| holdout_fraction("rentree-2026", &format!("p_{i}"))).collect();
        for percent in [10.0, 25.0, 50.0] {
            let held = (0..n).filter(|&i| in_holdout("rentree-2026", &format!("p_{i}"), percent)).count();
            assert_eq!(held, fractions.iter().filter(|&&f| f < percent / 100.0).count());
            let p: f64 = percent / 100.0;
            let observed = held as f64 / n as f64;
            let sigma = (p * (1.0 - p) / n as f64).sqrt();
            assert!((observed - p).abs() <= 4.0 * sigma, "{percent}%: observed {observed}, sigma {sigma}");
        }
    }

    proptest! {
        #[test]
        fn monotonic_in_percent(campaign in "[a-z0-9-]{0,12}", profile in "[a-z0-9_]{0,12}", a in -10.0f64..110.0, b in -10.0f64..110.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            if in_holdout(&campaign, &profile, lo) {
                prop_assert!(in_holdout(&campaign, &profile, hi));
            }
        }
    }
}
