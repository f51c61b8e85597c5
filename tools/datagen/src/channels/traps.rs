//! Identity-resolution traps: values a person really typed that are not
//! theirs, or not anybody's, planted deterministically from the seed so that
//! an identity-resolution step can be measured against the truth.
//!
//! * **Family members sharing an e-mail**: about 2 % of persons (at least one
//!   pair from 50 persons on) form a family pair; the pair's second member
//!   types the first member's e-mail wherever they type one (till receipts,
//!   carts and checkouts, CRM, web sign-up and login), while keeping their
//!   own customer id and loyalty card (the e-mail campaigns still reach
//!   their own address). See [`family_pairs`].
//! * **Family tablet**: in most pairs of two web visitors, the second member
//!   browses 40 % of their sessions on the first member's browser (cookie),
//!   logged in or not: one cookie then comes with two customer ids.
//! * **Store's generic phone**: on about 3 % of the till receipts that carry a
//!   loyalty card, the cashier typed the store's own phone number
//!   ([`store_generic_phone`]) instead of the customer's.
//! * **Placeholders**: on about 0.5 % of identified till receipts and of
//!   checkouts, a placeholder ([`BLOCKED_PLACEHOLDERS`]) is typed instead of
//!   an e-mail or a phone.
//!
//! Traps only change identifier values: every row, its validity and its
//! truth person stay what they would be without them (trap decisions come
//! from hashes of the seed, not from the writers' random streams). The truth
//! lists a trap value among the row's `identifiers` when ingest can read it
//! (family e-mail and cookie, store phone, placeholder e-mails) and flags
//! `phone_invalid` for the `0000000000` placeholder, which no phone validator
//! accepts.

use super::profile::{profile, Profile};
use super::text::mix64;
use crate::{person, GenConfig, Person};

/// Family pairs per mille of pair slots (persons `2k` and `2k + 1`): about
/// 2 % of persons belong to a family pair.
const FAMILY_PER_MILLE: u64 = 20;
/// Below this many persons no family pair is forced.
const FORCED_FAMILY_PERSONS: usize = 50;
/// Share (%) of family pairs of two web visitors who share a tablet.
const TABLET_PERCENT: u64 = 60;
/// Share (%) of a tablet-sharing member's web sessions on the owner's cookie.
const TABLET_SESSION_PERCENT: u64 = 40;
/// Till receipts with a loyalty card on which the store's phone is typed, per mille.
pub(crate) const STORE_PHONE_PER_MILLE: u64 = 30;
/// Identified till receipts and checkouts with a placeholder typed, per mille.
pub(crate) const PLACEHOLDER_PER_MILLE: u64 = 5;

/// Placeholder values typed instead of a real e-mail or phone, exactly as
/// written in the exports (`test@test.com`, `noemail@noemail.com`,
/// `0000000000`). The identity rules must never link anything through them
/// (the phone one is not even a valid number: ingest drops it with a
/// `phone_invalid` identifier warning).
pub const BLOCKED_PLACEHOLDERS: &[&str] = &["test@test.com", "noemail@noemail.com", "0000000000"];

/// The placeholder e-mails of [`BLOCKED_PLACEHOLDERS`].
pub(crate) const PLACEHOLDER_EMAILS: [&str; 2] = ["test@test.com", "noemail@noemail.com"];
/// The placeholder phone of [`BLOCKED_PLACEHOLDERS`].
pub(crate) const PLACEHOLDER_PHONE: &str = "0000000000";

/// Independent hash streams of the trap decisions.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Salt {
    Family = 1,
    Owner,
    Forced,
    Tablet,
    TabletSession,
    StorePhone,
    StorePhoneStyle,
    PosPlaceholder,
    CheckoutPlaceholder,
    PlaceholderKind,
}

/// A well-mixed 64-bit value of `(seed, salt, a, b)`.
pub(crate) fn roll(seed: u64, salt: Salt, a: u64, b: u64) -> u64 {
    let s = mix64(seed ^ (salt as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    mix64(mix64(s ^ a) ^ b.wrapping_mul(0x9FB2_1C65_1E98_DF25))
}

/// Whether the `(seed, salt, a, b)` roll falls within `per_mille` ‰.
pub(crate) fn per_mille(seed: u64, salt: Salt, a: u64, b: u64, per_mille: u64) -> bool {
    roll(seed, salt, a, b) % 1000 < per_mille
}

/// The generic phone number of store `store_id` (`M001`…, as in the till
/// receipts' `Magasin` column), in E.164: a Paris landline
/// `+3314xxxxxxx` (`01 4x xx xx xx`), fixed per store id and distinct for
/// `M0000000` to `M9999999`; it does not depend on the seed. Cashiers
/// sometimes type it instead of the customer's phone.
pub fn store_generic_phone(store_id: &str) -> String {
    let id = store_id.trim();
    let key = id.strip_prefix(['M', 'm']).and_then(|n| n.parse::<u64>().ok()).unwrap_or_else(|| {
        // FNV-1a of any other id.
        id.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3))
    });
    // An affine bijection of 0..10^7 (7_919 is prime to 10): distinct stores,
    // random-looking numbers.
    let digits = (key % 10_000_000 * 7_919 + 4_271_003) % 10_000_000;
    format!("+3314{digits:07}")
}

/// `M001`… of 0-based store `index`.
pub(crate) fn store_code(index: usize) -> String {
    format!("M{:03}", index + 1)
}

/// What the second member of a family pair uses of the first member's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FamilyLink {
    /// The first member's canonical e-mail, typed instead of their own.
    pub owner_email: String,
    /// The first member's cookie, when the pair shares a tablet.
    pub tablet_cookie: Option<String>,
}

/// The family pairs of a configuration.
#[derive(Clone, Debug)]
pub(crate) struct Families {
    seed: u64,
    persons: usize,
    /// The pair slot always made a family (from [`FORCED_FAMILY_PERSONS`] persons on).
    forced: Option<usize>,
}

impl Families {
    pub(crate) fn new(cfg: &GenConfig) -> Self {
        let forced = (cfg.persons >= FORCED_FAMILY_PERSONS).then(|| {
            let slots = FORCED_FAMILY_PERSONS / 2;
            let start = (roll(cfg.seed, Salt::Forced, 0, 0) % slots as u64) as usize;
            let order: Vec<usize> = (0..slots).map(|k| (start + k) % slots).collect();
            // Preferably two web visitors with an account (a shared tablet on
            // which both log in), else two web visitors.
            let ids: Vec<(bool, bool)> = (0..FORCED_FAMILY_PERSONS)
                .map(|i| {
                    let prof = profile(cfg, i, &person(cfg, i));
                    (prof.id.web_visitor, prof.has_account)
                })
                .collect();
            let both = |j: usize, f: &dyn Fn((bool, bool)) -> bool| f(ids[2 * j]) && f(ids[2 * j + 1]);
            order
                .iter()
                .copied()
                .find(|&j| both(j, &|(web, account)| web && account))
                .or_else(|| order.iter().copied().find(|&j| both(j, &|(web, _)| web)))
                .unwrap_or(start)
        });
        Families { seed: cfg.seed, persons: cfg.persons, forced }
    }

    /// `(first member, second member)` of pair slot `slot` (persons
    /// `2 × slot` and `2 × slot + 1`) when they form a family.
    pub(crate) fn pair(&self, slot: usize) -> Option<(usize, usize)> {
        if 2 * slot + 1 >= self.persons {
            return None;
        }
        let family = self.forced == Some(slot) || per_mille(self.seed, Salt::Family, slot as u64, 0, FAMILY_PER_MILLE);
        if !family {
            return None;
        }
        let (a, b) = (2 * slot, 2 * slot + 1);
        Some(if roll(self.seed, Salt::Owner, slot as u64, 0) & 1 == 0 { (a, b) } else { (b, a) })
    }

    /// Every family pair, by slot.
    pub(crate) fn all(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.persons / 2).filter_map(|slot| self.pair(slot))
    }

    /// What person `index` (profile `prof`) uses of their family's first
    /// member, when they are a family's second member.
    pub(crate) fn link(&self, cfg: &GenConfig, index: usize, prof: &Profile) -> Option<FamilyLink> {
        let slot = index / 2;
        let (owner, member) = self.pair(slot)?;
        if member != index {
            return None;
        }
        let owner_person = person(cfg, owner);
        let owner_profile = profile(cfg, owner, &owner_person);
        let tablet = prof.id.web_visitor
            && owner_profile.id.web_visitor
            && (self.forced == Some(slot) || roll(cfg.seed, Salt::Tablet, slot as u64, 0) % 100 < TABLET_PERCENT);
        Some(FamilyLink {
            owner_email: owner_person.email,
            tablet_cookie: tablet.then(|| owner_profile.id.cookie_ids.first().cloned()).flatten(),
        })
    }
}

/// The canonical e-mail person `p` types: their family's first member's for
/// a family's second member, else their own.
pub(crate) fn typed_email_of<'a>(p: &'a Person, prof: &'a Profile) -> &'a str {
    prof.family.as_ref().map_or(p.email.as_str(), |f| f.owner_email.as_str())
}

/// Whether web session `session` (0-based) of person `index` is browsed on
/// the family tablet (their family's first member's cookie).
pub(crate) fn on_family_tablet(seed: u64, index: usize, prof: &Profile, session: usize) -> bool {
    prof.family.as_ref().is_some_and(|f| f.tablet_cookie.is_some())
        && roll(seed, Salt::TabletSession, index as u64, session as u64) % 100 < TABLET_SESSION_PERCENT
}

/// The family pairs of `cfg` as `(first member, second member)` person ids
/// (`P0000042`), in person order. The second member types the first
/// member's e-mail wherever they type one (till receipts, carts and
/// checkouts, CRM, web sign-up and login) and, when both browse the web site, may use the first
/// member's cookie for some sessions (logged in with their own customer id
/// or not). Each keeps their own customer id and loyalty card, and the truth
/// attributes every row to the person who really made it.
///
/// About 2 % of persons belong to a pair, at least one pair when
/// `cfg.persons >= 50`; pairs depend on `cfg.seed` and `cfg.persons` only.
pub fn family_pairs(cfg: &GenConfig) -> Vec<(String, String)> {
    Families::new(cfg).all().map(|(owner, member)| (format!("P{owner:07}"), format!("P{member:07}"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn store_phones_are_paris_landlines_fixed_per_store() {
        let phones: std::collections::BTreeSet<String> =
            (0..super::super::profile::STORES).map(|i| store_generic_phone(&store_code(i))).collect();
        assert_eq!(phones.len(), super::super::profile::STORES);
        for p in &phones {
            assert!(p.starts_with("+3314") && p.len() == 12, "{p}");
            assert!(p[1..].chars().all(|c| c.is_ascii_digit()));
        }
        assert_eq!(store_generic_phone("M001"), store_generic_phone(" M001 "));
        assert_ne!(store_generic_phone("M001"), store_generic_phone("M002"));
        assert!(store_generic_phone("Lyon Part-Dieu").starts_with("+3314"));
    }

    #[test]
    fn family_pairs_are_few_and_at_least_one() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        for seed in 0..20 {
            let cfg = GenConfig::new(seed, 50, now);
            assert!(!family_pairs(&cfg).is_empty(), "seed {seed}");
        }
        let cfg = GenConfig::new(3, 20_000, now);
        let pairs = family_pairs(&cfg);
        let share = pairs.len() as f64 * 2.0 / 20_000.0;
        assert!((0.01..0.03).contains(&share), "{share}");
        let mut persons: Vec<&String> = pairs.iter().flat_map(|(a, b)| [a, b]).collect();
        persons.sort_unstable();
        persons.dedup();
        assert_eq!(persons.len(), 2 * pairs.len(), "a person is in one pair at most");
        assert_eq!(pairs, family_pairs(&cfg));
    }
}
