//! # ariane-datagen
//!
//! Deterministic generator of realistic French retail customers and of the
//! exports their activity produces, together with the ground truth needed to
//! test the Ariane pipeline end to end.
//!
//! * **Deterministic**: the same [`GenConfig`] always yields byte-identical
//!   output. Person `i` is derived from `(seed, i)` alone, through its own
//!   ChaCha8 random generator, so nothing depends on generation order.
//! * **Streaming**: memory is independent of the number of persons; persons
//!   are produced on the fly and orders are buffered one block of
//!   [`BLOCK_PERSONS`] persons at a time (see [`write_ecommerce_orders`]).
//! * **Every channel**: [`write_channel`] writes any [`Export`] of the specs
//!   in `channels/<channel>/<name>.toml` (till receipts, orders, carts and
//!   checkouts, web events, e-mail activity, SMS report, app events, CRM
//!   contacts) with a per-row truth ([`ChannelTruthRow`]); the same persons
//!   appear in several exports through their [`ChannelIdentity`], written
//!   differently from one export to the next; [`write_channels_dir`] writes
//!   them all.
//! * **Identity traps**: a few family members share an e-mail and a tablet
//!   ([`family_pairs`]), cashiers sometimes type the store's phone
//!   ([`store_generic_phone`]) or a placeholder ([`BLOCKED_PLACEHOLDERS`]);
//!   [`read_truth_persons`] gives the true person of every row to score an
//!   identity resolution against.
//! * **Planted effects**: one SMS campaign, [`STORE_INVITATION_CAMPAIGN`], sends its
//!   clickers to the store with a known probability; [`write_planted_truth`] lists who
//!   received it, clicked and bought what (the measures' tests find the effect).
//! * **One catalogue**: every export sells the same 61 products ([`catalogue`]), each
//!   in a range of its category at a [`Tier`] (entry, mid, premium by price band): the
//!   ground truth of the up-sell segment (`segments/up-sell.sql` carries the same
//!   table).
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use ariane_datagen::{person, write_ecommerce_orders, read_truth, GenConfig};
//!
//! let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
//! let cfg = GenConfig::new(42, 100, now);
//! let (mut orders, mut truth) = (Vec::new(), Vec::new());
//! let stats = write_ecommerce_orders(&cfg, &mut orders, &mut truth)?;
//! let rows = read_truth(truth.as_slice())?;
//! assert_eq!(rows.len() as u64, stats.rows);
//! assert_eq!(person(&cfg, 7).person_id, "P0000007");
//! # anyhow::Ok(())
//! ```
//!
//! One channel export, with its truth:
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use ariane_datagen::{read_channel_truth, write_channel, Export, GenConfig};
//!
//! let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
//! let cfg = GenConfig::new(42, 100, now);
//! let (mut receipts, mut truth) = (Vec::new(), Vec::new());
//! let stats = write_channel(&cfg, Export::PosReceipts, &mut receipts, &mut truth)?;
//! let rows = read_channel_truth(truth.as_slice())?;
//! assert_eq!(rows.len() as u64, stats.rows);
//! assert_eq!(rows.iter().filter(|r| !r.valid).count() as u64, stats.malformed_rows);
//! assert_eq!(Export::PosReceipts.relative_path(), "pos/receipts.csv");
//! # anyhow::Ok(())
//! ```

mod channels;
mod data;
mod ecommerce;
mod person;
mod rng;
mod time;

use std::io::{Read, Write};

use anyhow::Context;
use chrono::{DateTime, Utc};

pub use channels::{
    channel_identity, family_pairs, read_channel_truth, read_truth_persons, store_generic_phone, write_channel, write_channels_dir,
    write_identities, ChannelIdentity, ChannelStats, ChannelTruthRow, ChannelsSummary, Export, PosEncoding, BLOCKED_PLACEHOLDERS,
    CHANNEL_BLOCK_PERSONS, CHANNEL_TRUTH_HEADER, CHECKOUTS_HEADER, CRM_CONTACTS_HEADER, EMAIL_ACTIVITY_HEADER, IDENTITIES_HEADER,
    POS_RECEIPTS_HEADER, POS_RECEIPT_LEVEL_COLUMNS, SMS_REPORT_HEADER,
};
pub use channels::{
    read_planted_truth, write_planted_truth, PlantedTruthRow, CLICK_PERCENT, DELIVERED_PERCENT, PLANTED_TRUTH_HEADER, PURCHASE_DAYS,
    RECEIVE_PERCENT, STORE_INVITATION_CAMPAIGN, STORE_PURCHASE_PERCENT,
};
pub use channels::{write_costs, CostLine, CostsStats, COSTS_HEADER, COST_CHANNELS, COST_DAYS};
pub use data::{catalogue, CatalogueProduct, Tier};
pub use ecommerce::FIRST_ORDER_NUMBER;
pub use time::{paris_offset, to_paris};

/// Default share of order lines (and channel rows) made malformed.
pub const DEFAULT_MALFORMED_RATE: f64 = 0.004;

/// Number of persons whose orders are buffered and sorted together.
pub const BLOCK_PERSONS: usize = 10_000;

/// Exact header of the e-commerce orders export.
pub const ORDERS_HEADER: [&str; 18] = [
    "Name",
    "Email",
    "Phone",
    "Customer ID",
    "Created at",
    "Currency",
    "Subtotal",
    "Shipping",
    "Total",
    "Lineitem quantity",
    "Lineitem name",
    "Lineitem price",
    "Lineitem sku",
    "Lineitem category",
    "Billing Name",
    "Billing Zip",
    "Billing City",
    "Accepts Marketing",
];

/// Columns of [`ORDERS_HEADER`] that carry order-level data: filled on the
/// first row of an order only, left empty on its later rows.
pub const ORDER_LEVEL_COLUMNS: [&str; 12] = [
    "Email",
    "Phone",
    "Customer ID",
    "Created at",
    "Currency",
    "Subtotal",
    "Shipping",
    "Total",
    "Billing Name",
    "Billing Zip",
    "Billing City",
    "Accepts Marketing",
];

/// Exact header of the orders ground-truth CSV (see [`TruthRow`]).
pub const TRUTH_HEADER: [&str; 6] = ["line", "person_id", "order_id", "created_at_utc", "valid", "defect"];

/// Exact header of the persons ground-truth CSV (see [`Person`]).
pub const PERSONS_HEADER: [&str; 8] = ["person_id", "first_name", "last_name", "email", "phone_e164", "postal_code", "city", "customer_id"];

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct GenConfig {
    /// Master seed; every output is a pure function of the configuration.
    pub seed: u64,
    /// Number of persons (indices `0..persons`).
    pub persons: usize,
    /// Reference "current" instant: orders span about two years before it
    /// and never come after it.
    pub now: DateTime<Utc>,
    /// Share of order lines (and of channel rows) made malformed (in `[0, 1]`).
    pub malformed_rate: f64,
    /// Encoding of the till receipts export ([`Export::PosReceipts`]).
    pub pos_encoding: PosEncoding,
    /// When set, every writer stops after this many data rows (benchmarks:
    /// set `persons` large and let `max_rows` decide the size).
    pub max_rows: Option<u64>,
}

impl GenConfig {
    /// A configuration with the default malformed rate
    /// ([`DEFAULT_MALFORMED_RATE`], 0.4 % of order lines), Windows-1252 till
    /// receipts and no row limit.
    pub fn new(seed: u64, persons: usize, now: DateTime<Utc>) -> Self {
        Self { seed, persons, now, malformed_rate: DEFAULT_MALFORMED_RATE, pos_encoding: PosEncoding::Windows1252, max_rows: None }
    }
}

/// A synthetic person: the identity every export of theirs refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// `P` followed by the index zero-padded to 7 digits (`P0000042`).
    pub person_id: String,
    /// First name, with French accents (`Hélène`).
    pub first_name: String,
    /// Last name, with French accents (`Lefèvre`).
    pub last_name: String,
    /// Canonical e-mail: lowercase, trimmed, ASCII; unique per person.
    pub email: String,
    /// French mobile in E.164 (`+33612345678`), in the allocated mobile
    /// ranges (`06`/`07` numbers phone validators accept); unique per person
    /// for fewer than 100 million persons.
    pub phone_e164: String,
    /// 5-digit French postal code consistent with `city` (`06000` for Nice).
    pub postal_code: String,
    /// City name (`Saint-Étienne`).
    pub city: String,
    /// E-shop (Shopify) customer id, digits only; unique per person.
    pub customer_id: String,
}

/// Generates person `index` deterministically from `(cfg.seed, index)`.
///
/// Only `cfg.seed` is used: a person does not depend on `cfg.persons`,
/// `cfg.now` or the malformed rate.
pub fn person(cfg: &GenConfig, index: usize) -> Person {
    person::generate(cfg, index)
}

/// Counters returned by [`write_ecommerce_orders`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EcommerceStats {
    /// Data rows written (one per order line, header excluded).
    pub rows: u64,
    /// Orders written.
    pub orders: u64,
    /// Rows with a corrupted line-level field.
    pub malformed_rows: u64,
    /// Persons with at least one order.
    pub persons_with_orders: u64,
}

/// Writes the Shopify-style orders export of persons `0..cfg.persons` to
/// `csv_out`, the per-row ground truth to `truth_out`, and returns counters.
///
/// # Format
///
/// Header [`ORDERS_HEADER`], one row per order line. The first row of an
/// order carries the [`ORDER_LEVEL_COLUMNS`]; later rows of the same order
/// only fill `Name` and the `Lineitem …` columns. `Created at` is Paris
/// local time with its offset (`2026-03-29 09:15:00 +0200`); amounts are
/// euros with two decimals, `Total = Subtotal + Shipping`,
/// `Subtotal = Σ quantity × price`.
///
/// About 35 % of persons never order, 25 % order once, the rest order 2 to
/// 8 times: 40 % of those are *lapsed* (every order older than 120 days
/// before `cfg.now`), the others *active* (latest order within 60 days).
/// Orders span the two years before `cfg.now`, never follow it, and never
/// fall within ±2 days of exactly 90 days before it.
///
/// With probability `cfg.malformed_rate`, a line gets one corrupted
/// line-level field (`Lineitem quantity` = `deux`, `-1` or empty, or
/// `Lineitem price` = `12,9O`-style or `N/A`); order-level fields are never
/// corrupted and Subtotal/Total keep the true amounts.
///
/// # Ordering and memory
///
/// Persons are processed in blocks of [`BLOCK_PERSONS`]: each block's
/// orders are generated, sorted by creation time and written before the
/// next block starts, so memory does not grow with `cfg.persons`. The file is
/// therefore sorted by `Created at` within each block of persons (fully
/// sorted up to `BLOCK_PERSONS` persons). Order numbers (`#1000001`,
/// `#1000002`, …) are assigned in output order.
///
/// # Truth
///
/// `truth_out` receives [`TRUTH_HEADER`] then one row per data row; see
/// [`TruthRow`].
///
/// Both writers are flushed before returning; pass buffered writers. At
/// most `cfg.max_rows` rows are written when it is set.
///
/// # Errors
///
/// An out-of-range `malformed_rate`, or any I/O error of the writers.
pub fn write_ecommerce_orders<W1: Write, W2: Write>(cfg: &GenConfig, csv_out: W1, truth_out: W2) -> anyhow::Result<EcommerceStats> {
    ecommerce::write_orders(cfg, BLOCK_PERSONS, csv_out, truth_out)
}

/// Writes the persons ground truth (header [`PERSONS_HEADER`]) for persons
/// `0..cfg.persons` and returns the number of rows written.
///
/// # Errors
///
/// Any I/O error of `out`.
pub fn write_persons<W: Write>(cfg: &GenConfig, out: W) -> anyhow::Result<u64> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(PERSONS_HEADER).context("writing the persons header")?;
    let mut rows = 0;
    for index in 0..cfg.persons {
        let p = person(cfg, index);
        w.write_record([&p.person_id, &p.first_name, &p.last_name, &p.email, &p.phone_e164, &p.postal_code, &p.city, &p.customer_id])
            .context("writing a persons row")?;
        rows += 1;
    }
    w.flush().context("flushing the persons CSV")?;
    Ok(rows)
}

/// One row of the orders ground truth: what the orders CSV row starting at
/// `line` really is.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct TruthRow {
    /// 1-based physical line of the orders CSV where the record starts (the
    /// header is line 1, the first data row line 2).
    pub line: u64,
    /// The person who placed the order (`P0000042`).
    pub person_id: String,
    /// The order's `Name` exactly as in the export (`#1000123`).
    pub order_id: String,
    /// Order creation instant, RFC 3339 UTC (`2026-05-01T08:12:00Z`).
    pub created_at_utc: String,
    /// `false` when the row was deliberately corrupted.
    pub valid: bool,
    /// `quantity_not_a_number`, `quantity_negative`, `quantity_missing`,
    /// `price_not_a_number`, or empty when valid.
    pub defect: String,
}

/// Parses an orders ground-truth CSV written by [`write_ecommerce_orders`].
///
/// # Errors
///
/// Malformed CSV or a row not matching [`TruthRow`].
pub fn read_truth<R: Read>(r: R) -> anyhow::Result<Vec<TruthRow>> {
    read_csv_rows(r, "truth")
}

/// Deserialises every row of a headed CSV, naming the 1-based row of a failure.
pub(crate) fn read_csv_rows<T: serde::de::DeserializeOwned, R: Read>(r: R, what: &str) -> anyhow::Result<Vec<T>> {
    csv::Reader::from_reader(r)
        .deserialize()
        .enumerate()
        .map(|(i, row)| row.with_context(|| format!("parsing {what} row {}", i + 1)))
        .collect()
}

/// Ground truth of the `reactivation` segment: the canonical emails of the persons with at
/// least two orders that have a valid line, the latest of them strictly before
/// `run_at - 90 days`, when the orders export is all that was loaded. Tests and the demo
/// compare the pipeline's deliveries with it.
pub fn expected_reactivation(
    cfg: &GenConfig,
    truth: &[TruthRow],
    run_at: DateTime<Utc>,
) -> anyhow::Result<std::collections::BTreeSet<String>> {
    reactivation_persons(truth, run_at)?.into_iter().map(|pid| Ok(person(cfg, pid.trim_start_matches('P').parse()?).email)).collect()
}

/// The same segment when the seven channel exports are loaded too, per expected person: the
/// addresses they may rightly be reached at. A family's second member registered in the CRM
/// with the family's e-mail (the first member's), unless their CRM e-mail was left blank;
/// the CRM is the most trusted source of a contact address, so either may be theirs.
pub fn expected_reactivation_with_channels(
    cfg: &GenConfig,
    truth: &[TruthRow],
    run_at: DateTime<Utc>,
) -> anyhow::Result<Vec<std::collections::BTreeSet<String>>> {
    let owner_of: std::collections::BTreeMap<String, String> =
        family_pairs(cfg).into_iter().map(|(owner, member)| (member, owner)).collect();
    let mut out = Vec::new();
    for pid in reactivation_persons(truth, run_at)? {
        let mut addresses = std::collections::BTreeSet::new();
        for p in std::iter::once(pid).chain(owner_of.get(pid).map(String::as_str)) {
            addresses.insert(person(cfg, p.trim_start_matches('P').parse()?).email);
        }
        out.push(addresses);
    }
    Ok(out)
}

/// Ground truth of the `reactivation` segment over every purchase channel (e-shop order
/// lines, till receipts with a sale, in-app purchases), per expected person: the addresses
/// they may rightly be reached at (as [`expected_reactivation_with_channels`]). An order is
/// one `(channel, reference)` of a valid purchase row of a known person, at its earliest
/// row; members have at least two and the latest strictly before `run_at - 90 days`.
/// `channel_truths` are the per-row truths of the exports written by
/// [`write_channels_dir`].
pub fn expected_reactivation_all_purchases(
    cfg: &GenConfig,
    channel_truths: &[(Export, Vec<ChannelTruthRow>)],
    run_at: DateTime<Utc>,
) -> anyhow::Result<Vec<std::collections::BTreeSet<String>>> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut orders: BTreeMap<&str, BTreeMap<(&str, &str), DateTime<Utc>>> = BTreeMap::new();
    for (export, rows) in channel_truths {
        for t in rows.iter().filter(|t| t.valid && !t.person_id.is_empty()) {
            if !matches!(t.event_type.as_str(), "order_line" | "store_purchase" | "in_app_purchase") {
                continue;
            }
            let at = DateTime::parse_from_rfc3339(&t.occurred_at_utc)?.with_timezone(&Utc);
            let slot = orders.entry(t.person_id.as_str()).or_default().entry((export.channel(), t.reference.as_str())).or_insert(at);
            *slot = (*slot).min(at);
        }
    }
    let cutoff = run_at - chrono::Duration::days(90);
    let owner_of: BTreeMap<String, String> = family_pairs(cfg).into_iter().map(|(owner, member)| (member, owner)).collect();
    let mut out = Vec::new();
    for (pid, o) in orders {
        if o.len() < 2 || o.values().max().is_none_or(|last| *last >= cutoff) {
            continue;
        }
        let mut addresses = BTreeSet::new();
        for p in std::iter::once(pid).chain(owner_of.get(pid).map(String::as_str)) {
            addresses.insert(person(cfg, p.trim_start_matches('P').parse()?).email);
        }
        out.push(addresses);
    }
    Ok(out)
}

fn reactivation_persons(truth: &[TruthRow], run_at: DateTime<Utc>) -> anyhow::Result<Vec<&str>> {
    use std::collections::BTreeMap;
    let mut orders: BTreeMap<&str, BTreeMap<&str, DateTime<Utc>>> = BTreeMap::new();
    for t in truth.iter().filter(|t| t.valid) {
        let at = DateTime::parse_from_rfc3339(&t.created_at_utc)?.with_timezone(&Utc);
        orders.entry(t.person_id.as_str()).or_default().insert(t.order_id.as_str(), at);
    }
    let cutoff = run_at - chrono::Duration::days(90);
    Ok(orders
        .into_iter()
        .filter(|(_, o)| o.len() >= 2 && o.values().max().is_some_and(|last| *last < cutoff))
        .map(|(pid, _)| pid)
        .collect())
}

#[cfg(test)]
mod tests;
