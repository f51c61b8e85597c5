//! The till receipts export (`channels/pos/receipts.toml`): French Excel CSV,
//! `;`, decimal comma, Windows-1252 (or UTF-8 with BOM), CRLF, Paris local
//! time; one row per receipt line, receipt-level columns on the first line
//! only; a store visit without purchase is one row without article.
//!
//! Receipts are all-`VENTE` (purchase), all-`RETOUR` (return, positive
//! quantities and amounts: the type carries the direction) or one `PASSAGE`
//! row, because `Type` is a receipt-level (filled-down) column in the spec.
//! Receipt-level defects (date, type, field count on a first line) are only
//! put on single-row receipts, so that they never leak into other rows
//! through fill-down.
//!
//! The store purchases planted by the SMS invitation (`super::planted`) are receipts of
//! their own ticket range (`9` and the person's 7-digit index), never malformed.

use std::io::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::out::{ids, write_blocks, Ctx, Defect, Format, Row, Truth};
use super::planted::{Plant, PlantedPurchase};
use super::profile::{Profile, STORES};
use super::text::{
    bad_amount, card_variant, civil, dst_note, mistype_email, mistype_phone, paris_instant, paris_local, phone, push_amount, push_dmy_hm,
    weekday, DAY, HOUR, MINUTE,
};
use super::traps::{
    per_mille, roll, store_code, store_generic_phone, typed_email_of, Salt, PLACEHOLDER_EMAILS, PLACEHOLDER_PER_MILLE, PLACEHOLDER_PHONE,
    STORE_PHONE_PER_MILLE,
};
use super::{ChannelStats, Export, PosEncoding, POS_RECEIPTS_HEADER};
use crate::data::PRODUCTS;
use crate::ecommerce::{draw_product, typed_email};
use crate::rng::{pick_index, pick_weighted, Stream};
use crate::time::dst_switch;
use crate::{GenConfig, Person};

/// Receipts span the two years before `now`.
const HISTORY_DAYS: i64 = 730;
/// Store visits per shopper: weights for 1..=15 visits.
const VISIT_WEIGHTS: &[u32] = &[14, 14, 12, 11, 9, 8, 7, 6, 5, 4, 3, 3, 2, 1, 1];
/// Opening hours 09:00–19:59, Paris time.
const STORE_HOUR_WEIGHTS: [u32; 24] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 7, 9, 10, 9, 8, 9, 10, 11, 10, 6, 0, 0, 0, 0];
/// Lines per purchase receipt: weights for 1..=5.
const LINES_WEIGHTS: &[u32] = &[50, 25, 13, 8, 4];
/// Quantity per line: weights for 1..=3.
const QUANTITY_WEIGHTS: &[u32] = &[85, 11, 4];
/// Store departments (`Rayon`), by category index.
const DEPARTMENTS: [&str; 7] = ["Vêtements", "Chaussures", "Accessoires", "Maison", "Beauté", "Sport", "Enfant"];
/// Mistyped e-mails and phones, per mille of those written.
const TYPO_PER_MILLE: u32 = 15;
/// Unknown `Type` values (rejected by the spec).
const UNKNOWN_TYPES: [&str; 3] = ["ANNULATION", "AVOIR", "VENTE ANNULEE"];
/// Quantities that are not whole numbers.
const BAD_QUANTITIES: [&str; 3] = ["deux", "un", "1 pce"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sale,
    Return,
    Visit,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Sale => "VENTE",
            Kind::Return => "RETOUR",
            Kind::Visit => "PASSAGE",
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            Kind::Sale => "store_purchase",
            Kind::Return => "return",
            Kind::Visit => "store_visit",
        }
    }
}

/// One planned receipt.
struct Receipt {
    ts: i64,
    slot: u32,
    seq: u16,
    store: usize,
    till: u8,
    kind: Kind,
    /// Global person index; `None` when the receipt carries no identifier.
    person: Option<usize>,
    card: String,
    email: String,
    phone: String,
    ids: u8,
    /// Identifiers written but mistyped (bits of `ids`).
    unusable: u8,
    /// `(product index, quantity)`.
    lines: Vec<(usize, u64)>,
    /// Receipts at the daylight-saving edges and planted ones are never corrupted.
    protected: bool,
    /// A purchase planted by the SMS invitation (`super::planted`): its own ticket range,
    /// its own dirt.
    planted: bool,
}

/// A Paris local time within opening hours, 1 to [`HISTORY_DAYS`] days
/// before `now` (Sundays moved to Saturday), whole minutes.
fn draw_store_time(rng: &mut ChaCha8Rng, now: i64) -> i64 {
    let days_ago = rng.random_range(1..=HISTORY_DAYS);
    let hour = pick_weighted(rng, &STORE_HOUR_WEIGHTS) as i64;
    let minute = rng.random_range(0..60i64);
    let local_now = paris_local(now);
    let mut day = local_now - local_now.rem_euclid(DAY) - days_ago * DAY;
    if weekday(day) == 0 {
        day -= DAY;
    }
    paris_instant(day + hour * HOUR + minute * MINUTE)
}

/// The instant of person `index`'s daylight-saving edge receipt, if any:
/// persons 0 and 1 around the latest spring switch (01:45 and 03:15 local),
/// persons 2 and 3 in the repeated hour of the latest autumn switch (02:30
/// local, first and second occurrence).
fn dst_edge(now: i64, index: usize) -> Option<i64> {
    let (month, shift) = match index {
        0 => (3, -15 * MINUTE),
        1 => (3, 15 * MINUTE),
        2 => (10, -30 * MINUTE),
        3 => (10, 30 * MINUTE),
        _ => return None,
    };
    let year = i32::try_from(civil(now).0).ok()?;
    [year, year - 1].into_iter().filter_map(|y| dst_switch(y, month)).find(|switch| switch + DAY < now).map(|switch| switch + shift)
}

/// How the customer identified at the till, as written on the receipt.
fn identify(rng: &mut ChaCha8Rng, p: &Person, prof: &Profile, r: &mut Receipt) {
    let (card_roll, email_roll, phone_roll, other_roll) =
        (rng.random_range(0..100u32), rng.random_range(0..100u32), rng.random_range(0..100u32), rng.random_range(0..100u32));
    let card_style = match rng.random_range(0..100u32) {
        0..70 => 4,
        70..80 => 0,
        80..92 => 1,
        92..96 => 2,
        _ => 3,
    };
    let phone_style = if rng.random_range(0..100u32) < 70 { prof.phone_style } else { pick_index(rng, 5) };
    let typed = typed_email(rng, typed_email_of(p, prof));
    // Now and then the cashier mistypes what the customer dictates.
    let (email_typo, phone_typo, typo_variant) =
        (rng.random_range(0..1000u32) < TYPO_PER_MILLE, rng.random_range(0..1000u32) < TYPO_PER_MILLE, pick_index(rng, 6));
    let (card, email, phone_given) = match &prof.id.loyalty_card {
        Some(card) if card_roll < 85 => (Some(card), email_roll < 10, phone_roll < 8),
        _ => match other_roll {
            0..20 => (None, true, false),
            20..32 => (None, false, true),
            32..37 => (None, true, true),
            // A store visit is only recorded when the customer identifies.
            _ if r.kind == Kind::Visit => {
                let card = prof.id.loyalty_card.as_ref();
                (card, card.is_none(), false)
            }
            _ => (None, false, false),
        },
    };
    if let Some(card) = card {
        r.card = card_variant(card, card_style);
        r.ids |= ids::LOYALTY_CARD;
    }
    if email && email_typo {
        r.email = mistype_email(&typed, typo_variant);
        r.unusable |= ids::EMAIL;
    } else if email {
        r.email = typed;
        r.ids |= ids::EMAIL;
    }
    let written = phone(&p.phone_e164, phone_style);
    if phone_given && phone_typo {
        r.phone = mistype_phone(&written, typo_variant);
        r.unusable |= ids::PHONE;
    } else if phone_given {
        r.phone = written;
        r.ids |= ids::PHONE;
    }
}

/// Identity traps of one identified receipt (see `super::traps`), decided
/// by hashes of `(seed, index, seq)` so that nothing else changes: the
/// store's generic phone typed instead of the customer's on a receipt with a
/// loyalty card, or a placeholder e-mail or phone.
fn plant_traps(seed: u64, index: usize, seq: usize, r: &mut Receipt) {
    let (index, seq) = (index as u64, seq as u64);
    if r.ids & ids::LOYALTY_CARD != 0 && per_mille(seed, Salt::StorePhone, index, seq, STORE_PHONE_PER_MILLE) {
        // The usual national forms a cashier types.
        let style = match roll(seed, Salt::StorePhoneStyle, index, seq) % 10 {
            0..6 => 0,
            6..9 => 1,
            _ => 3,
        };
        r.phone = phone(&store_generic_phone(&store_code(r.store)), style);
        r.ids |= ids::PHONE;
        r.unusable &= !ids::PHONE;
    }
    if r.ids | r.unusable != 0 && per_mille(seed, Salt::PosPlaceholder, index, seq, PLACEHOLDER_PER_MILLE) {
        match roll(seed, Salt::PlaceholderKind, index, seq) % 3 {
            2 => {
                // Not a valid number: an identifier warning, as a mistyped phone.
                r.phone = PLACEHOLDER_PHONE.to_owned();
                r.ids &= !ids::PHONE;
                r.unusable |= ids::PHONE;
            }
            k => {
                r.email = PLACEHOLDER_EMAILS[k as usize].to_owned();
                r.ids |= ids::EMAIL;
                r.unusable &= !ids::EMAIL;
            }
        }
    }
}

/// Plans the receipts of person `index`.
#[allow(clippy::too_many_arguments)]
fn plan(seed: u64, now: i64, index: usize, slot: usize, p: &Person, prof: &Profile, rng: &mut ChaCha8Rng, out: &mut Vec<Receipt>) {
    let visits = 1 + pick_weighted(rng, VISIT_WEIGHTS);
    let visits = if prof.id.store_shopper { visits } else { 0 };
    let new_receipt = |ts, seq: usize, kind, store, till| Receipt {
        ts,
        slot: slot as u32,
        seq: seq as u16,
        store,
        till,
        kind,
        person: None,
        card: String::new(),
        email: String::new(),
        phone: String::new(),
        ids: 0,
        unusable: 0,
        lines: Vec::new(),
        protected: false,
        planted: false,
    };
    for seq in 0..visits {
        let ts = draw_store_time(rng, now);
        let kind = match rng.random_range(0..100u32) {
            0..80 => Kind::Sale,
            80..86 => Kind::Return,
            _ => Kind::Visit,
        };
        let store = if rng.random_range(0..100u32) < 85 { prof.home_store } else { pick_index(rng, STORES) };
        let till = 1 + pick_index(rng, 6) as u8;
        let mut r = new_receipt(ts, seq, kind, store, till);
        identify(rng, p, prof, &mut r);
        if r.ids | r.unusable != 0 {
            r.person = Some(index);
            plant_traps(seed, index, seq, &mut r);
        }
        let lines = match kind {
            Kind::Sale => 1 + pick_weighted(rng, LINES_WEIGHTS),
            Kind::Return => 1 + usize::from(rng.random_range(0..100u32) < 15),
            Kind::Visit => 0,
        };
        for _ in 0..lines {
            let mut product = draw_product(rng, prof.favourite);
            for _ in 0..16 {
                if !r.lines.iter().any(|&(q, _)| q == product) {
                    break;
                }
                product = draw_product(rng, prof.favourite);
            }
            let quantity = match kind {
                Kind::Sale => 1 + pick_weighted(rng, QUANTITY_WEIGHTS) as u64,
                _ => 1,
            };
            r.lines.push((product, quantity));
        }
        out.push(r);
    }
    if let Some(ts) = dst_edge(now, index) {
        let mut r = new_receipt(ts, visits, Kind::Sale, prof.home_store, 1);
        match &prof.id.loyalty_card {
            Some(card) => {
                r.card = card.clone();
                r.ids = ids::LOYALTY_CARD;
            }
            None => {
                r.email = typed_email_of(p, prof).to_owned();
                r.ids = ids::EMAIL;
            }
        }
        r.person = Some(index);
        r.lines.push((draw_product(rng, prof.favourite), 1));
        r.protected = true;
        out.push(r);
    }
}

/// The store purchase person `index` makes after clicking the SMS invitation, if they do
/// (`super::planted`): identified by the loyalty card, else the person's phone.
fn plan_planted(plant: &Plant, index: usize, slot: usize, p: &Person, prof: &Profile, out: &mut Vec<Receipt>) {
    let Some(purchase) = plant.invitation(index, p, prof).and_then(|inv| inv.purchase) else { return };
    let mut r = Receipt {
        ts: purchase.ts,
        slot: slot as u32,
        seq: u16::MAX,
        store: purchase.store,
        till: purchase.till,
        kind: Kind::Sale,
        person: Some(index),
        card: String::new(),
        email: String::new(),
        phone: String::new(),
        ids: 0,
        unusable: 0,
        lines: purchase.products.iter().map(|&product| (product, 1)).collect(),
        protected: true,
        planted: true,
    };
    match &prof.id.loyalty_card {
        Some(card) => {
            r.card = card.clone();
            r.ids = ids::LOYALTY_CARD;
        }
        None => {
            r.phone = phone(&p.phone_e164, prof.phone_style);
            r.ids = ids::PHONE;
        }
    }
    out.push(r);
}

/// Writes the till receipts export. See [`crate::write_channel`].
pub(crate) fn write(cfg: &GenConfig, out: &mut dyn Write, truth: &mut dyn Write) -> anyhow::Result<ChannelStats> {
    let format = Format {
        sep: b';',
        newline: "\r\n",
        bom: cfg.pos_encoding == PosEncoding::Utf8Bom,
        cp1252: cfg.pos_encoding == PosEncoding::Windows1252,
        blank_lines: true,
    };
    let mut ctx = Ctx::new(cfg, Export::PosReceipts, out, truth, format);
    ctx.sink.record(&POS_RECEIPTS_HEADER)?;
    let (seed, now) = (cfg.seed, ctx.now);
    let plant = Plant::new(cfg);
    let mut tickets = [0u32; STORES];
    let mut row = Row::default();
    write_blocks(
        &mut ctx,
        Stream::Pos,
        |rng, (index, slot), p, prof, receipts| {
            plan(seed, now, index, slot, p, prof, rng, receipts);
            plan_planted(&plant, index, slot, p, prof, receipts);
        },
        |r| (r.ts, r.slot, r.seq),
        |ctx, r, _| {
            // Receipts at or after `now` are not exported (only planted ones can be).
            if r.ts >= now {
                return Ok(());
            }
            ctx.planted_rows(r.planted);
            let ticket = match (r.planted, r.person) {
                (true, Some(index)) => PlantedPurchase::ticket(index),
                _ => {
                    tickets[r.store] += 1;
                    format!("{:06}", tickets[r.store])
                }
            };
            write_receipt(ctx, &mut row, r, ticket)
        },
    )?;
    ctx.finish()
}

/// Writes the rows of one receipt (as many as `max_rows` still allows).
fn write_receipt(ctx: &mut Ctx<'_>, row: &mut Row, r: &Receipt, ticket: String) -> anyhow::Result<()> {
    let store = store_code(r.store);
    let reference = format!("{store}-{ticket}");
    let mut date = String::with_capacity(16);
    push_dmy_hm(&mut date, paris_local(r.ts), false);
    let total: i64 = r.lines.iter().map(|&(p, q)| PRODUCTS[p].price_cents as i64 * q as i64).sum();
    let rows = r.lines.len().max(1);
    let truth_base = Truth {
        person: r.person,
        event_type: r.kind.event_type(),
        occurred_ms: r.ts * 1000,
        reference: &reference,
        ids: r.ids,
        note: dst_note(r.ts),
        defect: None,
        unusable: r.unusable,
    };

    for k in 0..rows {
        if ctx.full() {
            return Ok(());
        }
        row.reset(POS_RECEIPTS_HEADER.len());
        row.set(0, &store);
        row.set(3, &ticket);
        row.at(4).push_str(&(k + 1).to_string());
        if k == 0 {
            row.set(1, &date);
            row.set(2, &format!("{:02}", r.till));
            row.set(5, r.kind.code());
            row.set(6, &r.card);
            row.set(7, &r.email);
            row.set(8, &r.phone);
            if r.kind != Kind::Visit {
                push_amount(row.at(15), total, ',');
            }
        }
        let mut price = 0;
        if let Some(&(p, q)) = r.lines.get(k) {
            let product = &PRODUCTS[p];
            price = product.price_cents as i64;
            row.set(9, product.sku);
            row.set(10, product.name);
            row.set(11, DEPARTMENTS[product.category]);
            row.at(12).push_str(&q.to_string());
            push_amount(row.at(13), price, ',');
            push_amount(row.at(14), price * q as i64, ',');
        }
        // Some tills pad the label to a fixed width.
        if ctx.chance(3) && !row.get(10).is_empty() {
            row.at(10).push_str("   ");
        }

        let kinds: &[Defect] = match (r.kind, rows, k) {
            (Kind::Visit, ..) => &[Defect::DateInvalid, Defect::EventUnknown, Defect::FieldCount],
            (_, 1, _) => &[
                Defect::QuantityNotANumber,
                Defect::PriceNotANumber,
                Defect::SkuMissing,
                Defect::FieldCount,
                Defect::DateInvalid,
                Defect::EventUnknown,
            ],
            (_, _, 0) => &[Defect::QuantityNotANumber, Defect::PriceNotANumber, Defect::SkuMissing],
            _ => &[Defect::QuantityNotANumber, Defect::PriceNotANumber, Defect::SkuMissing, Defect::FieldCount],
        };
        let variant = ctx.pick(3);
        let defect = ctx.defect(kinds).filter(|_| !r.protected);
        match defect {
            Some(Defect::QuantityNotANumber) => row.set(12, BAD_QUANTITIES[variant]),
            Some(Defect::PriceNotANumber) => row.set(13, &bad_amount(price, variant, ',')),
            Some(Defect::SkuMissing) => row.set(9, ""),
            Some(Defect::FieldCount) if r.kind == Kind::Visit || variant == 0 => row.drop_last(),
            Some(Defect::FieldCount) => row.split_field(10),
            Some(Defect::DateInvalid) => row.set(1, &bad_local_date(r.ts, variant)),
            Some(Defect::EventUnknown) => row.set(5, UNKNOWN_TYPES[variant]),
            _ => {}
        }
        ctx.emit_record(row, &Truth { defect, ..truth_base })?;
    }
    Ok(())
}

/// A Paris local date the spec's `%d/%m/%Y %H:%M` does not accept: ISO
/// order, no time, or French `10h32`.
pub(crate) fn bad_local_date(ts: i64, variant: usize) -> String {
    let (y, mo, d, h, mi, _) = civil(paris_local(ts));
    match variant % 3 {
        0 => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}"),
        1 => format!("{d:02}/{mo:02}/{y:04}"),
        _ => format!("{d:02}/{mo:02}/{y:04} {h:02}h{mi:02}"),
    }
}
