//! The mobile app export (`channels/app/events.toml`): one JSON array, one
//! element per line (`[` on line 1, elements from line 2, `]` on the last
//! line), `timestamp_ms` epoch milliseconds, the device on every event,
//! `user_id` once logged in (at the first purchase at the latest: buying needs an
//! account), purchase properties on purchases.
//!
//! A JSON array cannot hold an invalid element without making the whole
//! file unreadable, so malformed elements are well-formed JSON the spec must
//! reject: unknown event (`unmapped = "reject"`), timestamp that is not an
//! epoch number, purchase without `order_id` or with a non-numeric revenue.

use std::io::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::out::{ids, write_blocks, Ctx, Defect, Format, Truth};
use super::profile::Profile;
use super::text::{bad_amount, draw_local_time, mix64, push_json_price, push_json_str, push_rfc3339, uuid, DAY, HOUR, ONLINE_HOUR_WEIGHTS};
use super::{ChannelStats, Export};
use crate::data::PRODUCTS;
use crate::ecommerce::draw_product;
use crate::rng::{pick_weighted, Stream};
use crate::{GenConfig, Person};

/// App opens per user: weights for 1..=30.
const OPEN_WEIGHTS: &[u32] = &[6, 6, 6, 6, 6, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1];
/// Unknown event names (rejected: the app spec has `unmapped = "reject"`).
const UNKNOWN_EVENTS: [&str; 3] = ["screen_view", "app_close", "deep_link_open"];
/// App versions seen in the export.
const APP_VERSIONS: [&str; 3] = ["5.11.2", "5.12.0", "5.12.1"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Open,
    OptIn,
    OptOut,
    PushOpen,
    Purchase,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Kind::Open => "app_open",
            Kind::OptIn => "push_opt_in",
            Kind::OptOut => "push_opt_out",
            Kind::PushOpen => "push_open",
            Kind::Purchase => "in_app_purchase",
        }
    }
}

struct AppEvent {
    ms: i64,
    slot: u32,
    seq: u32,
    person: usize,
    kind: Kind,
    logged_in: bool,
    /// Purchases: up to two products (`usize::MAX` = none).
    products: [usize; 2],
}

fn plan(rng: &mut ChaCha8Rng, now: i64, (index, slot): (usize, usize), prof: &Profile, out: &mut Vec<AppEvent>) {
    if !prof.id.app_user {
        return;
    }
    let install = prof.installed_at;
    let span = (now - install).max(2 * HOUR);
    let login_at = if prof.has_account && rng.random_range(0..100u32) < 70 { install + rng.random_range(0..30 * DAY) } else { i64::MAX };
    let start = out.len();
    let mut seq = 0u32;
    let mut push = |ts: i64, kind, products| {
        out.push(AppEvent {
            ms: ts * 1000 + (mix64(index as u64 ^ u64::from(seq) << 32) % 1000) as i64,
            slot: slot as u32,
            seq,
            person: index,
            kind,
            logged_in: ts >= login_at,
            products,
        });
        seq += 1;
    };
    let none = [usize::MAX; 2];
    push(install, Kind::Open, none);
    let opens = 1 + pick_weighted(rng, OPEN_WEIGHTS);
    for _ in 0..opens {
        let ts = draw_local_time(rng, now, span, HOUR, &ONLINE_HOUR_WEIGHTS);
        push(ts.max(install), Kind::Open, none);
    }
    if prof.push_opt_in {
        let opt_in = install + rng.random_range(5..120);
        push(opt_in, Kind::OptIn, none);
        let opt_out = (rng.random_range(0..100u32) < 15).then(|| opt_in + rng.random_range(HOUR..(now - opt_in).max(2 * HOUR)));
        let end = opt_out.unwrap_or(now).min(now - 1);
        for _ in 0..rng.random_range(0..=6u32) {
            if end > opt_in + 1 {
                let ts = rng.random_range(opt_in + 1..end);
                push(ts, Kind::PushOpen, none);
            }
        }
        if let Some(ts) = opt_out.filter(|&t| t < now) {
            push(ts, Kind::OptOut, none);
        }
    }
    if rng.random_range(0..100u32) < 20 {
        for _ in 0..rng.random_range(1..=3u32) {
            let ts = draw_local_time(rng, now, span, HOUR, &ONLINE_HOUR_WEIGHTS).max(install);
            let first = draw_product(rng, prof.favourite);
            let second = draw_product(rng, prof.favourite);
            let second = if second != first && rng.random_range(0..100u32) < 30 { second } else { usize::MAX };
            push(ts, Kind::Purchase, [first, second]);
        }
    }
    // Buying in the app needs an account: checkout logs the customer in (or signs them up,
    // the account being their CRM contact) at the latest, so purchases carry the user id.
    let planned = &mut out[start..];
    if let Some(first_purchase) = planned.iter().filter(|e| e.kind == Kind::Purchase).map(|e| e.ms.div_euclid(1000)).min() {
        if first_purchase < login_at {
            for e in planned.iter_mut() {
                e.logged_in = e.ms.div_euclid(1000) >= first_purchase;
            }
        }
    }
}

/// Writes the app events export. See [`crate::write_channel`].
pub(crate) fn write(cfg: &GenConfig, out: &mut dyn Write, truth: &mut dyn Write) -> anyhow::Result<ChannelStats> {
    let mut ctx = Ctx::new(cfg, Export::AppEvents, out, truth, Format::lines(false));
    ctx.sink.line("[")?;
    let now = ctx.now;
    let mut line = String::with_capacity(512);
    let mut event_id = String::with_capacity(36);
    let mut order_number = 100_000u64;
    let mut first = true;
    write_blocks(
        &mut ctx,
        Stream::App,
        |rng, at, _, prof, events| plan(rng, now, at, prof, events),
        |e| (e.ms, e.slot, e.seq),
        |ctx, e, persons| {
            // Events at or after `now` are dropped (skipping them here keeps
            // the order of the others).
            if e.ms >= now * 1000 {
                return Ok(());
            }
            let (p, prof) = &persons[e.slot as usize];
            let id_bits = mix64(((e.person as u64) << 24 | u64::from(e.seq)) ^ 0xA99E_7E57);
            event_id.clear();
            event_id.push_str(&uuid(mix64(id_bits ^ cfg.seed), id_bits, false));
            let order = (e.kind == Kind::Purchase).then(|| {
                order_number += 1;
                format!("APP-{order_number:07}")
            });
            let style = ctx.pick(100);
            let variant = ctx.pick(3);
            let kinds: &[Defect] = if e.kind == Kind::Purchase {
                &[Defect::EventUnknown, Defect::TimestampInvalid, Defect::OrderIdMissing, Defect::RevenueNotANumber]
            } else {
                &[Defect::EventUnknown, Defect::TimestampInvalid]
            };
            let defect = ctx.defect(kinds);
            line.clear();
            render(&mut line, e, p, prof, &event_id, order.as_deref(), style, variant, defect);
            if !first {
                ctx.end_line(",")?;
            }
            first = false;
            let mut ids = ids::DEVICE_ID;
            if e.logged_in {
                ids |= ids::CUSTOMER_ID;
            }
            ctx.emit_line(
                &line,
                &Truth {
                    person: Some(e.person),
                    event_type: e.kind.code(),
                    occurred_ms: e.ms,
                    reference: &event_id,
                    ids,
                    note: "",
                    defect,
                    unusable: 0,
                },
            )
        },
    )?;
    if !first {
        ctx.end_line("")?;
    }
    ctx.sink.line("]")?;
    ctx.finish()
}

/// Renders one event as a JSON object (no newline).
#[allow(clippy::too_many_arguments)]
fn render(
    b: &mut String,
    e: &AppEvent,
    p: &Person,
    prof: &Profile,
    event_id: &str,
    order: Option<&str>,
    style: usize,
    variant: usize,
    defect: Option<Defect>,
) {
    b.push_str("{\"event_id\":");
    push_json_str(b, event_id);
    b.push_str(",\"event\":");
    let name = match (defect, e.kind) {
        (Some(Defect::EventUnknown), _) => UNKNOWN_EVENTS[variant],
        // Older app versions send `purchase` (mapped to the same type).
        (_, Kind::Purchase) if style < 15 => "purchase",
        (_, kind) => kind.code(),
    };
    push_json_str(b, name);
    b.push_str(",\"timestamp_ms\":");
    if defect == Some(Defect::TimestampInvalid) {
        match variant {
            0 => b.push_str("null"),
            1 => {
                b.push('"');
                push_rfc3339(b, e.ms.div_euclid(1000));
                b.push('"');
            }
            _ => b.push_str("\"\""),
        }
    } else {
        b.push_str(&e.ms.to_string());
    }
    b.push_str(",\"device\":{\"id\":");
    push_json_str(b, prof.id.device_id.as_deref().unwrap_or(""));
    b.push_str(",\"push_token\":");
    push_json_str(b, prof.id.push_token.as_deref().unwrap_or(""));
    b.push_str(",\"platform\":");
    push_json_str(b, prof.id.platform.unwrap_or(""));
    b.push_str("},\"app_version\":");
    push_json_str(b, APP_VERSIONS[style % APP_VERSIONS.len()]);
    if e.logged_in {
        b.push_str(",\"user_id\":");
        push_json_str(b, &p.customer_id);
    } else if style >= 80 {
        b.push_str(",\"user_id\":null");
    }
    if e.kind == Kind::Purchase {
        let revenue: i64 = e.products.iter().filter_map(|&i| PRODUCTS.get(i)).map(|product| product.price_cents as i64).sum();
        let sku = PRODUCTS.get(e.products[0]).map_or("", |product| product.sku);
        b.push_str(",\"properties\":{");
        if defect != Some(Defect::OrderIdMissing) {
            b.push_str("\"order_id\":");
            push_json_str(b, order.unwrap_or(""));
            b.push(',');
        }
        b.push_str("\"revenue\":");
        if defect == Some(Defect::RevenueNotANumber) {
            push_json_str(b, &bad_amount(revenue, variant, ','));
        } else {
            push_json_price(b, revenue);
        }
        b.push_str(",\"currency\":\"EUR\",\"sku\":");
        push_json_str(b, sku);
        b.push('}');
    }
    b.push('}');
}
