//! The e-shop cart and checkout export (`channels/ecommerce/checkouts.toml`):
//! CSV `,` UTF-8, one row per cart addition (`cart_add`) or checkout start
//! (`checkout_started`), `Created at` RFC 3339 UTC. Rows of one checkout are
//! contiguous; checkouts are sorted by their first row's time within a block.

use std::io::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::out::{ids, write_blocks, Ctx, Defect, Format, Row, Truth};
use super::profile::Profile;
use super::text::{
    bad_amount, civil, draw_local_time, mistype_email, mistype_phone, phone, push_amount, push_rfc3339, DAY, HOUR, ONLINE_HOUR_WEIGHTS,
};
use super::traps::{per_mille, roll, typed_email_of, Salt, PLACEHOLDER_EMAILS, PLACEHOLDER_PER_MILLE, PLACEHOLDER_PHONE};
use super::{ChannelStats, Export, CHECKOUTS_HEADER};
use crate::data::PRODUCTS;
use crate::ecommerce::{draw_product, typed_email};
use crate::rng::{pick_index, pick_weighted, Stream};
use crate::{GenConfig, Person};

/// Carts span the year before `now`.
const HISTORY: i64 = 365 * DAY;
/// Checkouts per web visitor: weights for 0..=5.
const CHECKOUT_WEIGHTS: &[u32] = &[30, 30, 18, 10, 7, 5];
/// Cart additions per checkout: weights for 1..=4.
const ADDS_WEIGHTS: &[u32] = &[45, 30, 15, 10];
/// Mistyped e-mails and phones, per mille of those written.
const TYPO_PER_MILLE: u32 = 10;
/// First `Checkout ID`; ids are assigned in output order.
const FIRST_CHECKOUT_ID: u64 = 35_000_000_000_001;

/// One planned checkout (a cart, maybe started).
struct Checkout {
    ts: i64,
    slot: u32,
    seq: u8,
    person: usize,
    customer_id: Option<String>,
    email: String,
    phone: String,
    /// Identifiers written but mistyped (bits of `ids`).
    unusable: u8,
    /// `(product, quantity, instant)`.
    adds: Vec<(usize, u64, i64)>,
    started: Option<i64>,
}

/// A placeholder typed instead of the e-mail or the phone of a checkout
/// (see `super::traps`), decided by hashes of `(seed, index, seq)`.
fn plant_placeholder(seed: u64, index: usize, seq: usize, c: &mut Checkout) {
    let (index, seq) = (index as u64, seq as u64);
    if !per_mille(seed, Salt::CheckoutPlaceholder, index, seq, PLACEHOLDER_PER_MILLE) {
        return;
    }
    match roll(seed, Salt::PlaceholderKind, index, seq) % 3 {
        // The phone is only written on the `checkout_started` row.
        2 if c.started.is_some() => {
            // Not a valid number: an identifier warning, as a mistyped phone.
            c.phone = PLACEHOLDER_PHONE.to_owned();
            c.unusable |= ids::PHONE;
        }
        k => {
            c.email = PLACEHOLDER_EMAILS[(k % 2) as usize].to_owned();
            c.unusable &= !ids::EMAIL;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn plan(rng: &mut ChaCha8Rng, seed: u64, now: i64, index: usize, slot: usize, p: &Person, prof: &Profile, out: &mut Vec<Checkout>) {
    let count = pick_weighted(rng, CHECKOUT_WEIGHTS);
    let count = if prof.id.web_visitor { count } else { 0 };
    for seq in 0..count {
        let ts = draw_local_time(rng, now, HISTORY, 2 * HOUR, &ONLINE_HOUR_WEIGHTS);
        let logged_in = prof.has_account && rng.random_range(0..100u32) < 70;
        let email = typed_email(rng, typed_email_of(p, prof));
        let phone_style = pick_index(rng, 5);
        let phone_given = rng.random_range(0..100u32) < 40;
        let (email_typo, phone_typo, typo_variant) =
            (rng.random_range(0..1000u32) < TYPO_PER_MILLE, rng.random_range(0..1000u32) < TYPO_PER_MILLE, pick_index(rng, 6));
        let mut unusable = 0;
        let email = if email_typo {
            unusable |= ids::EMAIL;
            mistype_email(&email, typo_variant)
        } else {
            email
        };
        let written = phone(&p.phone_e164, phone_style);
        let phone = match (phone_given, phone_typo) {
            (false, _) => String::new(),
            (true, false) => written,
            (true, true) => {
                unusable |= ids::PHONE;
                mistype_phone(&written, typo_variant)
            }
        };
        let adds = 1 + pick_weighted(rng, ADDS_WEIGHTS);
        let mut at = ts;
        let mut lines: Vec<(usize, u64, i64)> = Vec::with_capacity(adds);
        for _ in 0..adds {
            let mut product = draw_product(rng, prof.favourite);
            for _ in 0..16 {
                if !lines.iter().any(|&(q, ..)| q == product) {
                    break;
                }
                product = draw_product(rng, prof.favourite);
            }
            let quantity = if rng.random_range(0..100u32) < 88 { 1 } else { 2 };
            lines.push((product, quantity, at));
            at += rng.random_range(20..600);
        }
        let started = (rng.random_range(0..100u32) < 55).then(|| at + rng.random_range(60..900));
        let mut checkout = Checkout {
            ts,
            slot: slot as u32,
            seq: seq as u8,
            person: index,
            customer_id: logged_in.then(|| p.customer_id.clone()),
            email,
            phone,
            unusable,
            adds: lines,
            started,
        };
        plant_placeholder(seed, index, seq, &mut checkout);
        out.push(checkout);
    }
}

/// Writes the cart and checkout export. See [`crate::write_channel`].
pub(crate) fn write(cfg: &GenConfig, out: &mut dyn Write, truth: &mut dyn Write) -> anyhow::Result<ChannelStats> {
    let mut ctx = Ctx::new(cfg, Export::EcommerceCheckouts, out, truth, Format::csv(b','));
    ctx.sink.record(&CHECKOUTS_HEADER)?;
    let (seed, now) = (cfg.seed, ctx.now);
    let mut row = Row::default();
    let mut next_id = FIRST_CHECKOUT_ID;
    write_blocks(
        &mut ctx,
        Stream::Checkouts,
        |rng, (index, slot), p, prof, checkouts| plan(rng, seed, now, index, slot, p, prof, checkouts),
        |c| (c.ts, c.slot, c.seq),
        |ctx, c, _| {
            write_checkout(ctx, &mut row, c, &next_id.to_string())?;
            next_id += 1;
            Ok(())
        },
    )?;
    ctx.finish()
}

fn write_checkout(ctx: &mut Ctx<'_>, row: &mut Row, c: &Checkout, id: &str) -> anyhow::Result<()> {
    let base_ids = ids::EMAIL | if c.customer_id.is_some() { ids::CUSTOMER_ID } else { 0 };
    let steps = c.adds.len() + usize::from(c.started.is_some());
    for k in 0..steps {
        if ctx.full() {
            return Ok(());
        }
        let add = c.adds.get(k);
        let ts = add.map_or_else(|| c.started.unwrap_or(c.ts), |a| a.2);
        row.reset(CHECKOUTS_HEADER.len());
        row.set(0, id);
        push_rfc3339(row.at(1), ts);
        row.set(2, if add.is_some() { "cart_add" } else { "checkout_started" });
        row.set(3, c.customer_id.as_deref().unwrap_or(""));
        row.set(4, &c.email);
        let mut ids = base_ids;
        let mut unusable = c.unusable & ids::EMAIL;
        let mut price = 0;
        if let Some(&(p, q, _)) = add {
            let product = &PRODUCTS[p];
            price = product.price_cents as i64;
            row.set(6, product.sku);
            row.set(7, product.name);
            row.at(8).push_str(&q.to_string());
            push_amount(row.at(9), price, '.');
        } else if !c.phone.is_empty() {
            row.set(5, &c.phone);
            if c.unusable & ids::PHONE == 0 {
                ids |= ids::PHONE;
            } else {
                unusable |= ids::PHONE;
            }
        }
        // Some rows carry the currency as the storefront sent it.
        row.set(10, if ctx.chance(4) { "eur" } else { "EUR" });

        let kinds: &[Defect] = if add.is_some() {
            &[
                Defect::SkuMissing,
                Defect::PriceNotANumber,
                Defect::QuantityNotANumber,
                Defect::DateInvalid,
                Defect::EventUnknown,
                Defect::FieldCount,
            ]
        } else {
            &[Defect::DateInvalid, Defect::EventUnknown, Defect::FieldCount]
        };
        let variant = ctx.pick(3);
        let defect = ctx.defect(kinds);
        match defect {
            Some(Defect::SkuMissing) => row.set(6, ""),
            Some(Defect::PriceNotANumber) => row.set(9, &bad_amount(price, variant, '.')),
            Some(Defect::QuantityNotANumber) => row.set(8, ["deux", "un", "x1"][variant]),
            Some(Defect::DateInvalid) => row.set(1, &bad_utc_date(ts, variant)),
            Some(Defect::EventUnknown) => row.set(
                2,
                match (add.is_some(), variant) {
                    (true, 0) => "cart_remove",
                    (true, _) => "cart/update",
                    (false, 0) => "checkout_completed",
                    (false, _) => "checkout/update",
                },
            ),
            Some(Defect::FieldCount) if add.is_none() || variant == 0 => row.drop_last(),
            Some(Defect::FieldCount) => row.split_field(7),
            _ => {}
        }
        let event_type = if add.is_some() { "cart_add" } else { "checkout_started" };
        ctx.emit_record(
            row,
            &Truth { person: Some(c.person), event_type, occurred_ms: ts * 1000, reference: id, ids, note: "", defect, unusable },
        )?;
    }
    Ok(())
}

/// A UTC instant no RFC 3339 reading accepts, even a lenient one that takes
/// a missing offset as the spec's UTC: French order, date only, or dashes.
fn bad_utc_date(ts: i64, variant: usize) -> String {
    let (y, mo, d, h, mi, s) = civil(ts);
    match variant % 3 {
        0 => format!("{d:02}/{mo:02}/{y:04} {h:02}:{mi:02}:{s:02}"),
        1 => format!("{d:02}/{mo:02}/{y:04}"),
        _ => format!("{d:02}-{mo:02}-{y:04} {h:02}:{mi:02}"),
    }
}
