//! Planted effects: a cause and its consequences the generator puts in the data on
//! purpose, with their exact truth, so that the measures (`functions/measures`) can be
//! checked to find them.
//!
//! **The store invitation.** One SMS campaign, [`STORE_INVITATION_CAMPAIGN`], is sent 12
//! days before `now` (11:00 Paris time, moved off Sundays and off the days of the regular
//! SMS campaigns) to SMS subscribers who exist by then and have not replied STOP before:
//!
//! * [`RECEIVE_PERCENT`] % of them receive it (`ENVOYE`), [`DELIVERED_PERCENT`] % of those
//!   are delivered (`DELIVRE`), [`CLICK_PERCENT`] % of the delivered click (`CLIC`);
//! * a clicker who shops in stores buys in their usual store 30 minutes to
//!   [`PURCHASE_DAYS`] days after the click with probability [`STORE_PURCHASE_PERCENT`] % (a
//!   `VENTE` receipt of one to three products, identified by the loyalty card, else the
//!   phone): the effect the measures must find (store orders follow a click of this
//!   campaign far more often than a click of any other);
//! * nobody else changes behaviour.
//!
//! Everything is drawn from the person's own [`Stream::Planted`] random stream, so the
//! regular rows of every export are exactly those without the plant; the SMS report and the
//! till receipts gain rows (their file-level dirt for the planted rows comes from a separate
//! stream too, and planted rows are never malformed). Planted receipts are numbered `9`
//! followed by the person's 7-digit index (`M012-90000042`), a range the regular tickets
//! (six digits, counted per store) never reach.
//!
//! The truth of the plant ([`PLANTED_TRUTH_HEADER`], [`write_planted_truth`]): one row per
//! person who received the campaign, with the instants of the send, delivery and click and
//! the order that followed (its `order_id` as the lake reads it: `Magasin-Ticket`).

use std::io::{Read, Write};

use anyhow::Context;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::profile::{profile, Profile};
use super::sms;
use super::text::{civil, paris_instant, paris_local, push_rfc3339, weekday, DAY, HOUR, MINUTE};
use super::traps::store_code;
use crate::data::PRODUCTS;
use crate::ecommerce::draw_product;
use crate::rng::{person_rng, pick_index, Stream};
use crate::{person, GenConfig, Person};

/// The `Campagne` of the planted SMS campaign (the lake's `campaign_id`).
pub const STORE_INVITATION_CAMPAIGN: &str = "Soirée privée en magasin";
/// Share (%) of eligible SMS subscribers the invitation is sent to.
pub const RECEIVE_PERCENT: u32 = 85;
/// Share (%) of sent invitations delivered.
pub const DELIVERED_PERCENT: u32 = 95;
/// Share (%) of delivered invitations clicked (regular SMS campaigns: 9 %).
pub const CLICK_PERCENT: u32 = 30;
/// Share (%) of clickers who shop in stores that buy in store after the click.
pub const STORE_PURCHASE_PERCENT: u32 = 60;
/// A planted purchase comes at least 30 minutes and less than `PURCHASE_DAYS` days after
/// the click.
pub const PURCHASE_DAYS: i64 = 4;
/// The purchase day: the click's or one of the next two (before moving it off a Sunday).
const PURCHASE_DAY_OFFSETS: i64 = 3;
/// Days before `now` the invitation is sent (before moving it off a busy day).
const SENT_DAYS_BEFORE: i64 = 12;
/// Store hours of planted purchases, Paris time (10:00 to 18:59).
const PURCHASE_HOURS: std::ops::Range<i64> = 10..19;

/// Exact header of the planted-effects truth CSV (see [`PlantedTruthRow`]).
pub const PLANTED_TRUTH_HEADER: [&str; 10] = [
    "person_id",
    "channel",
    "campaign",
    "sent_at_utc",
    "delivered_at_utc",
    "clicked_at_utc",
    "order_channel",
    "order_id",
    "ordered_at_utc",
    "amount_minor",
];

/// One person who received a planted campaign ([`PLANTED_TRUTH_HEADER`]). Instants are
/// RFC 3339 UTC; the delivery, click and order columns are empty when there was none.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct PlantedTruthRow {
    /// `P0000042`.
    pub person_id: String,
    /// The campaign's channel (`sms`).
    pub channel: String,
    /// The campaign (`Campagne`, the lake's `campaign_id`).
    pub campaign: String,
    pub sent_at_utc: String,
    pub delivered_at_utc: String,
    pub clicked_at_utc: String,
    /// Where the order that followed the click was placed (`pos`), empty without order.
    pub order_channel: String,
    /// The order's id as the lake reads it (`M012-90000042`).
    pub order_id: String,
    pub ordered_at_utc: String,
    /// The order's amount in cents (the sum of its lines); empty without order.
    pub amount_minor: Option<i64>,
}

/// The store purchase that followed a click of the invitation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PlantedPurchase {
    /// Unix seconds, whole minutes (the till writes minutes).
    pub ts: i64,
    /// The person's usual store (0-based).
    pub store: usize,
    /// Till number (1 to 6).
    pub till: u8,
    /// Product indices (quantity 1 each).
    pub products: Vec<usize>,
}

impl PlantedPurchase {
    /// The receipt's `Ticket`: `9` and the person's 7-digit index.
    pub(crate) fn ticket(index: usize) -> String {
        format!("9{index:07}")
    }

    fn amount_minor(&self) -> i64 {
        self.products.iter().map(|&p| PRODUCTS[p].price_cents as i64).sum()
    }
}

/// What the invitation did for one person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Invitation {
    /// Unix seconds of the send (`ENVOYE`), delivery and click.
    pub sent: i64,
    pub delivered: Option<i64>,
    pub clicked: Option<i64>,
    /// The number's style in the report (see `super::text::phone`).
    pub number_style: usize,
    pub purchase: Option<PlantedPurchase>,
}

/// The plant of one configuration: the invitation's instant and what eligibility needs.
pub(crate) struct Plant {
    seed: u64,
    /// Unix seconds of the campaign (the sends spread over the 10 minutes after).
    pub sent_at: i64,
    sms_calendar: Vec<sms::Campaign>,
}

/// Unix seconds of the invitation for `now`: 11:00 Paris time, [`SENT_DAYS_BEFORE`] days
/// before `now`, moved back off Sundays and off the days a regular SMS campaign is sent
/// (the 1st and 15th, or the day after when those are Sundays).
fn invitation_at(now: i64) -> i64 {
    let local_now = paris_local(now);
    let mut day = local_now - local_now.rem_euclid(DAY) - SENT_DAYS_BEFORE * DAY;
    loop {
        let (_, _, d, ..) = civil(day);
        if weekday(day) == 0 || matches!(d, 1 | 2 | 15 | 16) {
            day -= DAY;
        } else {
            break;
        }
    }
    paris_instant(day + 11 * HOUR)
}

impl Plant {
    pub(crate) fn new(cfg: &GenConfig) -> Self {
        let now = cfg.now.timestamp();
        Plant { seed: cfg.seed, sent_at: invitation_at(now), sms_calendar: sms::campaigns(now) }
    }

    /// The invitation of person `index` (`None` when they did not receive it): a pure
    /// function of `(seed, index)` and `now`, the same for every writer.
    pub(crate) fn invitation(&self, index: usize, p: &Person, prof: &Profile) -> Option<Invitation> {
        if !prof.id.sms_subscriber || self.sent_at < prof.created_at {
            return None;
        }
        if sms::stopped_at(self.seed, &self.sms_calendar, index, p, prof).is_some_and(|stop| stop < self.sent_at) {
            return None;
        }
        let mut rng = person_rng(self.seed, index as u64, Stream::Planted);
        let (receives, delivered, clicks, buys) = (
            rng.random_range(0..100u32) < RECEIVE_PERCENT,
            rng.random_range(0..100u32) < DELIVERED_PERCENT,
            rng.random_range(0..100u32) < CLICK_PERCENT,
            rng.random_range(0..100u32) < STORE_PURCHASE_PERCENT,
        );
        let sent = self.sent_at + rng.random_range(0..600);
        let delivered_at = sent + rng.random_range(2..120);
        let clicked_at = delivered_at + rng.random_range(60..7200);
        let number_style = [5, 4, 2, 1, 0][pick_index(&mut rng, 5)];
        let purchase = purchase(&mut rng, clicked_at, prof);
        if !receives {
            return None;
        }
        let delivered = delivered.then_some(delivered_at);
        let clicked = delivered.and(clicks.then_some(clicked_at));
        let purchase = (clicked.is_some() && buys && prof.id.store_shopper).then_some(purchase);
        Some(Invitation { sent, delivered, clicked, number_style, purchase })
    }
}

/// A store purchase after a click at `clicked` (drawn whether or not it happens, so that
/// the stream's use does not depend on the outcome): one of the three days starting with
/// the click's, an instant in store hours, at least 30 minutes after the click (else the
/// next day), never on a Sunday (moved to the Monday): less than [`PURCHASE_DAYS`] days
/// after the click (clicks come before 14:00 Paris time).
fn purchase(rng: &mut ChaCha8Rng, clicked: i64, prof: &Profile) -> PlantedPurchase {
    let day_offset = rng.random_range(0..PURCHASE_DAY_OFFSETS);
    let hour = rng.random_range(PURCHASE_HOURS);
    let minute = rng.random_range(0..60i64);
    let till = 1 + pick_index(rng, 6) as u8;
    let lines = 1 + pick_index(rng, 3);
    let mut products: Vec<usize> = Vec::with_capacity(lines);
    for _ in 0..lines {
        let mut product = draw_product(rng, prof.favourite);
        for _ in 0..16 {
            if !products.contains(&product) {
                break;
            }
            product = draw_product(rng, prof.favourite);
        }
        if !products.contains(&product) {
            products.push(product);
        }
    }
    let local_click = paris_local(clicked);
    let mut day = local_click - local_click.rem_euclid(DAY) + day_offset * DAY;
    if paris_instant(day + hour * HOUR + minute * MINUTE) < clicked + 30 * MINUTE {
        day += DAY;
    }
    if weekday(day) == 0 {
        day += DAY;
    }
    let ts = paris_instant(day + hour * HOUR + minute * MINUTE);
    PlantedPurchase { ts, store: prof.home_store, till, products }
}

/// Writes the planted-effects truth ([`PLANTED_TRUTH_HEADER`]) of persons
/// `0..cfg.persons` and returns the number of rows (people who received a planted
/// campaign). Events at or after `now` would not be in the exports, so they would be left
/// out here too (none is: the invitation is 12 days before `now`).
///
/// # Errors
///
/// Any I/O error of `out`.
pub fn write_planted_truth<W: Write>(cfg: &GenConfig, out: W) -> anyhow::Result<u64> {
    let plant = Plant::new(cfg);
    let now = cfg.now.timestamp();
    let mut w = csv::Writer::from_writer(out);
    w.write_record(PLANTED_TRUTH_HEADER).context("writing the planted truth header")?;
    let at = |ts: Option<i64>| {
        let mut s = String::new();
        if let Some(ts) = ts.filter(|&t| t < now) {
            push_rfc3339(&mut s, ts);
        }
        s
    };
    let mut rows = 0;
    for index in 0..cfg.persons {
        let p = person(cfg, index);
        let prof = profile(cfg, index, &p);
        let Some(inv) = plant.invitation(index, &p, &prof) else { continue };
        if inv.sent >= now {
            continue;
        }
        let purchase = inv.purchase.as_ref().filter(|b| b.ts < now);
        let order_id = purchase.map(|b| format!("{}-{}", store_code(b.store), PlantedPurchase::ticket(index))).unwrap_or_default();
        let amount = purchase.map(|b| b.amount_minor().to_string()).unwrap_or_default();
        w.write_record([
            p.person_id.clone(),
            "sms".to_string(),
            STORE_INVITATION_CAMPAIGN.to_string(),
            at(Some(inv.sent)),
            at(inv.delivered),
            at(inv.clicked),
            if purchase.is_some() { "pos" } else { "" }.to_string(),
            order_id,
            at(purchase.map(|b| b.ts)),
            amount,
        ])
        .context("writing a planted truth row")?;
        rows += 1;
    }
    w.flush().context("flushing the planted truth CSV")?;
    Ok(rows)
}

/// Parses a planted-effects truth CSV written by [`write_planted_truth`].
///
/// # Errors
///
/// Malformed CSV or a row not matching [`PlantedTruthRow`].
pub fn read_planted_truth<R: Read>(r: R) -> anyhow::Result<Vec<PlantedTruthRow>> {
    crate::read_csv_rows(r, "planted truth")
}
