//! The Shopify-style e-shop orders export and its per-row ground truth.
//!
//! # Streaming and ordering
//!
//! Persons are processed in blocks of [`BLOCK_PERSONS`](crate::BLOCK_PERSONS)
//! consecutive indices. For each block, every person and their orders are
//! derived from `(seed, index)`; the block's orders are then sorted by
//! creation time (ties broken by person index, then by the person's order
//! sequence) and written out, and order numbers are assigned in that output
//! order. Memory therefore depends on the block size only, never on the
//! number of persons.
//!
//! Consequence: the file is sorted by `Created at` *within* each block of
//! persons, not globally; a file of up to `BLOCK_PERSONS` persons is fully
//! sorted. Order numbers (`Name`) are unique and strictly increasing in file
//! order regardless.

use std::io::Write;

use anyhow::{ensure, Context};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::channels::out::{ids, Truth, TruthSink};
use crate::channels::{ChannelStats, Export};
use crate::data::{CATEGORIES, PRODUCTS};
use crate::rng::{person_rng, pick_index, pick_weighted, Stream};
use crate::time::{format_created_at, format_utc, paris_offset_at};
use crate::{person, EcommerceStats, GenConfig, Person, BLOCK_PERSONS, ORDERS_HEADER, TRUTH_HEADER};

/// Number of the first order written (`#1000001`).
pub const FIRST_ORDER_NUMBER: u64 = 1_000_001;

/// Flat shipping fee below the free-shipping threshold, in cents.
const SHIPPING_CENTS: u64 = 490;
/// Orders with a subtotal at or above this amount (cents) ship for free.
const FREE_SHIPPING_FROM_CENTS: u64 = 5_000;

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// Oldest order age: about two years of history.
const HISTORY: i64 = 730 * DAY;
/// Orders never fall within ±2 days (plus one hour of margin) of exactly
/// 90 days before `now`.
const AROUND_90_DAYS_LOW: i64 = 88 * DAY - HOUR;
const AROUND_90_DAYS_HIGH: i64 = 92 * DAY + HOUR;

/// Age windows (in seconds before `now`, inclusive) an order may fall in.
type Windows = &'static [(i64, i64)];

/// Any time in the history, except around 90 days ago.
const ANY_TIME: Windows = &[(0, AROUND_90_DAYS_LOW), (AROUND_90_DAYS_HIGH, HISTORY)];
/// Lapsed customers: every order strictly older than 120 days (with a
/// two-day margin).
const LAPSED_TIME: Windows = &[(122 * DAY, HISTORY)];
/// The most recent order of an active repeat customer: within 60 days
/// (with a one-day margin).
const RECENT_TIME: Windows = &[(0, 59 * DAY)];

/// Relative frequency of local order hours 0..24 in Paris (evenings and
/// lunch breaks peak, nights are quiet).
const HOUR_WEIGHTS: [u32; 24] = [10, 5, 3, 2, 2, 3, 10, 20, 30, 40, 50, 50, 60, 60, 50, 50, 50, 50, 60, 70, 80, 80, 60, 30];

/// Orders of repeat customers: weights for 2, 3, ..., 8 orders.
const REPEAT_ORDER_WEIGHTS: &[u32] = &[30, 22, 16, 12, 9, 6, 5];
/// Lines per order: weights for 1, 2, 3, 4 lines.
const LINES_WEIGHTS: &[u32] = &[55, 28, 12, 5];
/// Quantity per line: weights for 1, 2, 3.
const QUANTITY_WEIGHTS: &[u32] = &[82, 13, 5];
/// How the e-mail is typed: canonical, Capitalised, UPPER, padded with
/// spaces, padded and Capitalised.
const EMAIL_STYLE_WEIGHTS: &[u32] = &[70, 10, 4, 10, 6];
/// Phone styles, see [`format_phone`].
const PHONE_STYLE_WEIGHTS: &[u32] = &[30, 30, 12, 13, 15];
/// Defect kinds, in [`Defect::ALL`] order.
const DEFECT_WEIGHTS: &[u32] = &[25, 20, 20, 20, 15];

/// Customer behaviour towards the e-shop, relative to `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Activity {
    /// Never ordered online (about 35%).
    Never,
    /// Exactly one order, any time in the history (about 25%).
    Once,
    /// 2..=8 orders, all older than 120 days (about 16%).
    Lapsed(u8),
    /// 2..=8 orders, the latest within 60 days (about 24%).
    Active(u8),
}

impl Activity {
    fn draw(rng: &mut ChaCha8Rng) -> Self {
        let bucket = rng.random_range(0..100u32);
        let repeat = 2 + pick_weighted(rng, REPEAT_ORDER_WEIGHTS) as u8;
        let lapsed = rng.random_range(0..100u32) < 40;
        match bucket {
            0..35 => Activity::Never,
            35..60 => Activity::Once,
            _ if lapsed => Activity::Lapsed(repeat),
            _ => Activity::Active(repeat),
        }
    }
}

/// A line-level corruption making the row invalid for a strict parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Defect {
    /// `Lineitem quantity` = `deux`.
    QuantityWord,
    /// `Lineitem quantity` = `-1`.
    QuantityNegative,
    /// `Lineitem quantity` empty.
    QuantityMissing,
    /// `Lineitem price` with a decimal comma and a letter O, e.g. `12,9O`.
    PriceTypo,
    /// `Lineitem price` = `N/A`.
    PriceNotAvailable,
}

impl Defect {
    const ALL: [Defect; 5] =
        [Defect::QuantityWord, Defect::QuantityNegative, Defect::QuantityMissing, Defect::PriceTypo, Defect::PriceNotAvailable];

    /// Short code written in the truth file.
    fn code(self) -> &'static str {
        match self {
            Defect::QuantityWord => "quantity_not_a_number",
            Defect::QuantityNegative => "quantity_negative",
            Defect::QuantityMissing => "quantity_missing",
            Defect::PriceTypo | Defect::PriceNotAvailable => "price_not_a_number",
        }
    }
}

/// One planned order line.
#[derive(Debug)]
struct Line {
    product: usize,
    quantity: u64,
    defect: Option<Defect>,
}

/// One planned order, before sorting and numbering.
#[derive(Debug)]
struct Order {
    /// Unix timestamp (seconds).
    created_at: i64,
    /// Position of the person within the current block.
    slot: usize,
    /// Rank of the order among the person's orders (chronological).
    seq: u8,
    email: String,
    phone: String,
    accepts_marketing: bool,
    lines: Vec<Line>,
}

/// Draws an instant (Unix seconds) whose age before `now` lies in one of
/// `windows`, with a realistic Paris time of day. Always consumes the same
/// number of random values.
fn draw_instant(rng: &mut ChaCha8Rng, now: i64, windows: Windows) -> i64 {
    let total: i64 = windows.iter().map(|&(lo, hi)| hi - lo + 1).sum();
    let mut x = rng.random_range(0..total);
    let mut window = windows[0];
    for &(lo, hi) in windows {
        window = (lo, hi);
        if x <= hi - lo {
            break;
        }
        x -= hi - lo + 1;
    }
    let (lo, hi) = window;
    let uniform = now - (lo + x);

    // Move the instant to a realistic local hour of the same Paris day,
    // keeping the uniform instant when that would leave the window or
    // straddle a DST switch.
    let hour = pick_weighted(rng, &HOUR_WEIGHTS) as i64;
    let minute: i64 = rng.random_range(0..60);
    let second: i64 = rng.random_range(0..60);
    let offset = i64::from(paris_offset_at(uniform).local_minus_utc());
    let local = uniform + offset;
    let local_midnight = local - local.rem_euclid(DAY);
    let candidate = local_midnight + hour * HOUR + minute * MINUTE + second - offset;
    let age = now - candidate;
    let same_offset = i64::from(paris_offset_at(candidate).local_minus_utc()) == offset;
    if same_offset && (lo..=hi).contains(&age) {
        candidate
    } else {
        uniform
    }
}

/// Renders a canonical `+33XXXXXXXXX` mobile number in a given style:
/// 0 `06 12 34 56 78`, 1 `0612345678`, 2 `+33 6 12 34 56 78`,
/// 3 `06.12.34.56.78`, otherwise `+33612345678`.
pub(crate) fn format_phone(e164: &str, style: usize) -> String {
    let Some(digits) = e164.strip_prefix("+33").filter(|d| d.len() == 9) else {
        return e164.to_owned();
    };
    let national = format!("0{digits}");
    let pairs = |sep: &str| (0..5).map(|i| &national[2 * i..2 * i + 2]).collect::<Vec<_>>().join(sep);
    match style {
        0 => pairs(" "),
        1 => national,
        2 => format!("+33 {} {} {} {} {}", &digits[..1], &digits[1..3], &digits[3..5], &digits[5..7], &digits[7..9]),
        3 => pairs("."),
        _ => e164.to_owned(),
    }
}

/// Capitalises each dot/underscore/hyphen separated word of the local part
/// and the first letter of the domain:
/// `marie.dupont87@gmail.com` → `Marie.Dupont87@Gmail.com`.
pub(crate) fn capitalise_email(email: &str) -> String {
    let mut out = String::with_capacity(email.len());
    let (local, domain) = match email.split_once('@') {
        Some((local, domain)) => (local, Some(domain)),
        None => (email, None),
    };
    let mut start_of_word = true;
    for c in local.chars() {
        if start_of_word {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start_of_word = matches!(c, '.' | '_' | '-');
    }
    if let Some(domain) = domain {
        out.push('@');
        let mut chars = domain.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// The e-mail as typed at checkout for one order.
pub(crate) fn typed_email(rng: &mut ChaCha8Rng, canonical: &str) -> String {
    let style = pick_weighted(rng, EMAIL_STYLE_WEIGHTS);
    let padding = rng.random_range(0..3u32);
    let pad = |e: String| match padding {
        0 => format!(" {e}"),
        1 => format!("{e} "),
        _ => format!(" {e} "),
    };
    match style {
        0 => canonical.to_owned(),
        1 => capitalise_email(canonical),
        2 => canonical.to_uppercase(),
        3 => pad(canonical.to_owned()),
        _ => pad(capitalise_email(canonical)),
    }
}

/// Picks a product: half of the time from the person's favourite category.
pub(crate) fn draw_product(rng: &mut ChaCha8Rng, favourite: usize) -> usize {
    let from_favourite = rng.random_range(0..2u32) == 0;
    let any = pick_index(rng, PRODUCTS.len());
    let in_favourite = PRODUCTS.iter().filter(|p| p.category == favourite).count();
    let k = pick_index(rng, in_favourite.max(1));
    if from_favourite {
        PRODUCTS.iter().enumerate().filter(|(_, p)| p.category == favourite).nth(k).map_or(any, |(i, _)| i)
    } else {
        any
    }
}

/// Plans all orders of person `index` (who sits at `slot` in the block).
fn plan_orders(cfg: &GenConfig, now: i64, index: usize, slot: usize, person: &Person) -> Vec<Order> {
    let mut rng = person_rng(cfg.seed, index as u64, Stream::Orders);
    let mut defects = person_rng(cfg.seed, index as u64, Stream::Defects);

    let activity = Activity::draw(&mut rng);
    let favourite = pick_index(&mut rng, CATEGORIES.len());
    let accepts_marketing = rng.random_range(0..100u32) < 55;
    let phone_style = pick_weighted(&mut rng, PHONE_STYLE_WEIGHTS);

    let mut times: Vec<i64> = match activity {
        Activity::Never => Vec::new(),
        Activity::Once => vec![draw_instant(&mut rng, now, ANY_TIME)],
        Activity::Lapsed(n) => (0..n).map(|_| draw_instant(&mut rng, now, LAPSED_TIME)).collect(),
        Activity::Active(n) => {
            let mut times = vec![draw_instant(&mut rng, now, RECENT_TIME)];
            times.extend((1..n).map(|_| draw_instant(&mut rng, now, ANY_TIME)));
            times
        }
    };
    times.sort_unstable();

    let mut orders = Vec::with_capacity(times.len());
    for (seq, created_at) in times.into_iter().enumerate() {
        let email = typed_email(&mut rng, &person.email);
        let phone_roll = rng.random_range(0..100u32);
        let other_style = pick_weighted(&mut rng, PHONE_STYLE_WEIGHTS);
        let phone = match phone_roll {
            0..8 => String::new(),
            8..20 => format_phone(&person.phone_e164, other_style),
            _ => format_phone(&person.phone_e164, phone_style),
        };

        let line_count = 1 + pick_weighted(&mut rng, LINES_WEIGHTS);
        let mut lines: Vec<Line> = Vec::with_capacity(line_count);
        for _ in 0..line_count {
            // Distinct products within an order (bounded retries).
            let mut product = draw_product(&mut rng, favourite);
            for _ in 0..16 {
                if !lines.iter().any(|l| l.product == product) {
                    break;
                }
                product = draw_product(&mut rng, favourite);
            }
            let quantity = 1 + pick_weighted(&mut rng, QUANTITY_WEIGHTS) as u64;
            // Two draws per line whatever the rate, so that the set of
            // corrupted lines grows monotonically with the rate.
            let roll: f64 = defects.random();
            let kind = Defect::ALL[pick_weighted(&mut defects, DEFECT_WEIGHTS)];
            let defect = (roll < cfg.malformed_rate).then_some(kind);
            lines.push(Line { product, quantity, defect });
        }

        orders.push(Order { created_at, slot, seq: seq as u8, email, phone, accepts_marketing, lines });
    }
    orders
}

/// Formats cents as euros with a `.` and two decimals: `2490` → `24.90`.
pub(crate) fn format_cents(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// `1290` → `12,9O`: decimal comma, one decimal, letter O for the zero.
fn price_typo(cents: u64) -> String {
    format!("{},{}O", cents / 100, (cents % 100) / 10)
}

/// What the truth writer of [`write_orders_with`] learns about one row.
pub(crate) struct OrderTruth<'a> {
    /// 1-based physical line of the row.
    pub line: u64,
    /// Global index of the person.
    pub person: usize,
    pub person_id: &'a str,
    /// First person index of the block and its length.
    pub block: (usize, usize),
    pub name: &'a str,
    pub created_at: i64,
    pub created_utc: &'a str,
    pub defect: Option<&'static str>,
    /// Whether the order carries a phone number.
    pub has_phone: bool,
}

/// Implementation of [`crate::write_ecommerce_orders`] with an explicit
/// block size (exposed to the crate for tests of the block behaviour).
pub(crate) fn write_orders<W1: Write, W2: Write>(
    cfg: &GenConfig,
    block_persons: usize,
    csv_out: W1,
    truth_out: W2,
) -> anyhow::Result<EcommerceStats> {
    let mut truth = csv::Writer::from_writer(truth_out);
    truth.write_record(TRUTH_HEADER).context("writing the truth header")?;
    let stats = write_orders_with(cfg, block_persons, csv_out, &mut |t| {
        truth
            .write_record([
                t.line.to_string().as_str(),
                t.person_id,
                t.name,
                t.created_utc,
                if t.defect.is_none() { "true" } else { "false" },
                t.defect.unwrap_or(""),
            ])
            .context("writing a truth row")
    })?;
    truth.flush().context("flushing the truth CSV")?;
    Ok(stats)
}

/// [`Export::EcommerceOrders`] for
/// [`crate::write_channel`]: the orders bytes of
/// [`crate::write_ecommerce_orders`], the truth in the channel format.
pub(crate) fn write_orders_channel(cfg: &GenConfig, out: &mut dyn Write, truth_out: &mut dyn Write) -> anyhow::Result<ChannelStats> {
    let mut truth = TruthSink::new(truth_out);
    let mut seen: Vec<bool> = Vec::new();
    let mut block_start = usize::MAX;
    let mut channel = ChannelStats::new(Export::EcommerceOrders);
    let stats = write_orders_with(cfg, BLOCK_PERSONS, out, &mut |t| {
        if t.block.0 != block_start {
            block_start = t.block.0;
            seen.clear();
            seen.resize(t.block.1, false);
        }
        if let Some(s) = seen.get_mut(t.person - block_start) {
            if !*s {
                *s = true;
                channel.persons += 1;
            }
        }
        let mut ids = ids::CUSTOMER_ID | ids::EMAIL;
        if t.has_phone {
            ids |= ids::PHONE;
        }
        truth.row_code(
            t.line,
            &Truth {
                person: Some(t.person),
                event_type: "order_line",
                occurred_ms: t.created_at * 1000,
                reference: t.name,
                ids,
                note: "",
                defect: None,
                unusable: 0,
            },
            t.defect,
        )
    })?;
    truth.finish()?;
    channel.rows = stats.rows;
    channel.malformed_rows = stats.malformed_rows;
    channel.lines = stats.rows + 1;
    if stats.rows > stats.malformed_rows {
        channel.event_types.insert("order_line".to_owned(), stats.rows - stats.malformed_rows);
    }
    Ok(channel)
}

/// Writes the orders CSV, reporting each row to `truth`; stops after
/// `cfg.max_rows` rows.
fn write_orders_with<W1: Write>(
    cfg: &GenConfig,
    block_persons: usize,
    csv_out: W1,
    truth: &mut dyn FnMut(&OrderTruth<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<EcommerceStats> {
    ensure!(
        cfg.malformed_rate.is_finite() && (0.0..=1.0).contains(&cfg.malformed_rate),
        "malformed_rate must be between 0 and 1, got {}",
        cfg.malformed_rate
    );
    let block_persons = block_persons.max(1);
    let now = cfg.now.timestamp();
    let limit = cfg.max_rows.unwrap_or(u64::MAX);

    let mut csv = csv::Writer::from_writer(csv_out);
    csv.write_record(ORDERS_HEADER).context("writing the orders header")?;

    let mut stats = EcommerceStats { rows: 0, orders: 0, malformed_rows: 0, persons_with_orders: 0 };
    let mut order_number = FIRST_ORDER_NUMBER;
    let mut block_start = 0;
    'blocks: while block_start < cfg.persons {
        let block_end = cfg.persons.min(block_start.saturating_add(block_persons));
        let mut persons = Vec::with_capacity(block_end - block_start);
        let mut orders = Vec::new();
        for (slot, index) in (block_start..block_end).enumerate() {
            let p = person(cfg, index);
            let planned = plan_orders(cfg, now, index, slot, &p);
            if !planned.is_empty() {
                stats.persons_with_orders += 1;
            }
            orders.extend(planned);
            persons.push(p);
        }
        orders.sort_unstable_by_key(|o| (o.created_at, o.slot, o.seq));

        for order in &orders {
            if stats.rows >= limit {
                break 'blocks;
            }
            let p = &persons[order.slot];
            let name = format!("#{order_number}");
            order_number += 1;
            stats.orders += 1;
            let block = (block_start, block_end - block_start);
            let index = block_start + order.slot;
            write_order(&mut csv, truth, &mut stats, limit, (&name, block, index), order, p)?;
        }
        block_start = block_end;
    }

    csv.flush().context("flushing the orders CSV")?;
    Ok(stats)
}

/// Writes the rows of one numbered order and their truth rows.
fn write_order<W1: Write>(
    csv: &mut csv::Writer<W1>,
    truth: &mut dyn FnMut(&OrderTruth<'_>) -> anyhow::Result<()>,
    stats: &mut EcommerceStats,
    limit: u64,
    (name, block, index): (&str, (usize, usize), usize),
    order: &Order,
    p: &Person,
) -> anyhow::Result<()> {
    let subtotal: u64 = order.lines.iter().map(|l| l.quantity * PRODUCTS[l.product].price_cents).sum();
    let shipping = if subtotal >= FREE_SHIPPING_FROM_CENTS { 0 } else { SHIPPING_CENTS };
    let created_local = format_created_at(order.created_at);
    let created_utc = format_utc(order.created_at);
    let (subtotal_s, shipping_s, total_s) = (format_cents(subtotal), format_cents(shipping), format_cents(subtotal + shipping));
    let billing_name = format!("{} {}", p.first_name, p.last_name);
    let accepts = if order.accepts_marketing { "yes" } else { "no" };

    for (k, line) in order.lines.iter().enumerate() {
        if stats.rows >= limit {
            break;
        }
        let product = &PRODUCTS[line.product];
        let quantity = match line.defect {
            Some(Defect::QuantityWord) => "deux".to_owned(),
            Some(Defect::QuantityNegative) => "-1".to_owned(),
            Some(Defect::QuantityMissing) => String::new(),
            _ => line.quantity.to_string(),
        };
        let price = match line.defect {
            Some(Defect::PriceTypo) => price_typo(product.price_cents),
            Some(Defect::PriceNotAvailable) => "N/A".to_owned(),
            _ => format_cents(product.price_cents),
        };
        let category = CATEGORIES[product.category];
        let order_level: [&str; 12] = if k == 0 {
            [
                &order.email,
                &order.phone,
                &p.customer_id,
                &created_local,
                "EUR",
                &subtotal_s,
                &shipping_s,
                &total_s,
                &billing_name,
                &p.postal_code,
                &p.city,
                accepts,
            ]
        } else {
            [""; 12]
        };
        let [email, phone, customer, created, currency, sub, ship, total, bname, zip, city, marketing] = order_level;
        let record: [&str; 18] = [
            name,
            email,
            phone,
            customer,
            created,
            currency,
            sub,
            ship,
            total,
            &quantity,
            product.name,
            &price,
            product.sku,
            category,
            bname,
            zip,
            city,
            marketing,
        ];
        csv.write_record(record).context("writing an orders row")?;

        // Records never contain newlines: data row n is on physical line n + 1.
        let line_number = stats.rows + 2;
        stats.rows += 1;
        let valid = line.defect.is_none();
        if !valid {
            stats.malformed_rows += 1;
        }
        truth(&OrderTruth {
            line: line_number,
            person: index,
            person_id: &p.person_id,
            block,
            name,
            created_at: order.created_at,
            created_utc: &created_utc,
            defect: line.defect.map(Defect::code),
            has_phone: !order.phone.is_empty(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_styles() {
        let e164 = "+33612345678";
        assert_eq!(format_phone(e164, 0), "06 12 34 56 78");
        assert_eq!(format_phone(e164, 1), "0612345678");
        assert_eq!(format_phone(e164, 2), "+33 6 12 34 56 78");
        assert_eq!(format_phone(e164, 3), "06.12.34.56.78");
        assert_eq!(format_phone(e164, 4), "+33612345678");
    }

    #[test]
    fn email_capitalisation() {
        assert_eq!(capitalise_email("marie.dupont87@gmail.com"), "Marie.Dupont87@Gmail.com");
        assert_eq!(capitalise_email("jean-francois_leroy0142@orange.fr"), "Jean-Francois_Leroy0142@Orange.fr");
    }

    #[test]
    fn amounts() {
        assert_eq!(format_cents(2490), "24.90");
        assert_eq!(format_cents(490), "4.90");
        assert_eq!(format_cents(0), "0.00");
        assert_eq!(format_cents(14905), "149.05");
        assert_eq!(price_typo(1290), "12,9O");
        assert_eq!(price_typo(14900), "149,0O");
    }

    #[test]
    fn instants_stay_in_their_window() {
        let now = 1_795_392_000; // 2026-11-23T00:00:00Z
        let mut rng = person_rng(3, 3, Stream::Orders);
        for windows in [ANY_TIME, LAPSED_TIME, RECENT_TIME] {
            for _ in 0..2000 {
                let age = now - draw_instant(&mut rng, now, windows);
                assert!(windows.iter().any(|&(lo, hi)| (lo..=hi).contains(&age)), "age {age}");
            }
        }
    }
}
