//! An independent plain-Rust implementation of the built-in segments of
//! `docs/segments.md` over a truth lake ([`crate::truth_lake`]): the expected members of
//! each segment, to compare with what the SQL computes.
//!
//! Inputs ([`OracleInput::load`]):
//!
//! * persons: the truth lake's identity links (an event belongs to the profile its identity
//!   key is linked to; rows of a contested key follow its majority person, exactly as in
//!   the lake), restricted to the profiles of the snapshot;
//! * event types and instants: the generator's truth (the per-event truth files), not what
//!   ingest made of the rows;
//! * `email_reachable` / `push_reachable`: the truth lake's profile snapshot;
//! * product fields (order id, SKU, category, amounts): the ingested events;
//! * product ranges and tiers (up-sell): the generator's catalogue
//!   ([`ariane_datagen::catalogue`]), looked up by the ingested SKU.
//!
//! Semantics, read literally from the doc (choices where it is not explicit are marked
//! CHOICE):
//!
//! * `events`: only events with `occurred_at <= run_at` of profiles of the snapshot; every
//!   event id counts once (the first row of an event id in file order is kept);
//! * "within N days" (or hours): `run_at - N days < occurred_at <= run_at`;
//! * `order_lines`: `order_line` and `store_purchase` events; `orders`: per
//!   `(profile, channel, order_id)` with a non-null order id, `ordered_at` the earliest
//!   line, `amount` the sum of `line_total_minor` (null when every line's is null), plus
//!   `in_app_purchase` events grouped the same way (`amount` the largest
//!   `order_total_minor`, 0 lines); returns are not orders;
//! * new-visitor: an event of channel `pos` or `web` (any type) within 90 days, no order
//!   at all (at or before `run_at`), neither `email_reachable` nor `push_reachable`;
//! * abandoned-cart: cart events (`cart_add`, `add_to_cart`, `checkout_started`) within 48
//!   hours each later than the profile's latest order (the latest `ordered_at`) and
//!   latest `checkout_completed` event, or neither; CHOICE: "later than" is strict (a cart at the very instant of the order is not
//!   abandoned); `items` are the distinct non-null SKUs of those events;
//! * cross-sell: categories of the profile's order lines (any time, null categories
//!   ignored, compared exactly as ingested); one member per suggested category B whose
//!   pair's A was bought and B never; `because_of` the smallest such A;
//! * up-sell: the catalogue products of the profile's order lines (by SKU; a SKU the
//!   catalogue does not have is ignored), per (category, range) the highest tier bought at
//!   any time; a line qualifies when it is within 365 days and its range has a tier above
//!   that highest one; at most one member per profile, from the most recent qualifying line
//!   (ties: the smallest SKU), which is `because_of_sku`: the suggestion is the cheapest
//!   product of the lowest tier above the highest bought in its range (ties: the smallest
//!   SKU);
//! * reactivation: at least 2 orders and the latest `ordered_at < run_at - 90 days`
//!   (CHOICE: "more than 90 days before" is strict, the complement of "within 90 days"
//!   minus the instant `run_at - 90 days` itself);
//! * rfm: tiers in the doc's order, `orders_365d` the orders within 365 days, `last` the
//!   latest order at any time;
//! * preferred-channel: per activation channel the distinct engagement events within 90
//!   days; most events, then the latest event, then the channel name (ascending);
//! * vip: over the orders within 365 days, spend (sum of amounts, nulls ignored) ≥ 50,000
//!   or ≥ 6 orders.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context};
use ariane_datagen::{CatalogueProduct, Tier};
use arrow::array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
use chrono::{DateTime, Duration, SecondsFormat, Utc};

use crate::truth_lake::{column, for_each_batch, parquet_files, parse_key, profile_id_of, read_links, read_snapshot, TruthLake};

/// The segments of the built-in library this oracle knows.
pub const SEGMENTS: [&str; 8] =
    ["new-visitor", "abandoned-cart", "cross-sell", "up-sell", "reactivation", "rfm", "preferred-channel", "vip"];

/// Event types the oracle keeps (what some built-in segment reads), as codes.
const TYPES: [&str; 16] = [
    "order_line",
    "checkout_completed",
    "store_purchase",
    "in_app_purchase",
    "cart_add",
    "add_to_cart",
    "checkout_started",
    "email_open",
    "email_click",
    "sms_click",
    "app_open",
    "push_open",
    "page_view",
    "product_view",
    "login",
    "sign_up",
];
/// Any other type of channel `pos` or `web` (new-visitor reads every one of them).
const OTHER: u8 = TYPES.len() as u8;

const ORDER_LINE_TYPES: [&str; 2] = ["order_line", "store_purchase"];
const CART_TYPES: [&str; 3] = ["cart_add", "add_to_cart", "checkout_started"];

fn code(event_type: &str) -> Option<u8> {
    TYPES.iter().position(|t| *t == event_type).map(|i| i as u8)
}

fn is(code: u8, types: &[&str]) -> bool {
    TYPES.get(code as usize).is_some_and(|t| types.contains(t))
}

/// The activation channel an engagement event counts for (preferred-channel).
fn engagement_channel(code: u8) -> Option<&'static str> {
    match TYPES.get(code as usize).copied()? {
        "email_open" | "email_click" => Some("email"),
        "sms_click" => Some("sms"),
        "app_open" | "push_open" | "in_app_purchase" => Some("app"),
        "page_view" | "product_view" | "add_to_cart" | "login" | "sign_up" | "cart_add" | "checkout_started" | "order_line" => Some("web"),
        "store_purchase" | "store_visit" => Some("store"),
        _ => None,
    }
}

const NONE: u32 = u32::MAX;

/// One kept event, compact.
#[derive(Clone, Copy, Debug)]
struct Ev {
    person: u32,
    at: i64,
    code: u8,
    /// `pos` → 1, `web` → 2, other → 0 (new-visitor), with the channel's index in `channels`.
    channel: u8,
    order: u32,
    sku: u32,
    category: u32,
    /// `line_total_minor` of order lines, `order_total_minor` of app purchases; `i64::MIN` = null.
    amount: i64,
    /// `store_visit` (an engagement of `store` that is not one of `TYPES`).
    store_visit: bool,
}

#[derive(Default)]
struct Interner {
    ids: HashMap<String, u32>,
    values: Vec<String>,
}

impl Interner {
    fn id(&mut self, v: Option<&str>) -> u32 {
        let Some(v) = v else { return NONE };
        if let Some(&i) = self.ids.get(v) {
            return i;
        }
        let i = self.values.len() as u32;
        self.values.push(v.to_string());
        self.ids.insert(v.to_string(), i);
        i
    }

    fn get(&self, i: u32) -> Option<&str> {
        (i != NONE).then(|| self.values[i as usize].as_str())
    }
}

/// What the oracle computes from: see the module documentation.
pub struct OracleInput {
    /// Events of snapshot profiles, sorted by (person, instant).
    events: Vec<Ev>,
    /// Per person in the snapshot: (email_reachable, push_reachable).
    profiles: BTreeMap<u32, (bool, bool)>,
    channels: Vec<String>,
    strings: Interner,
    /// Rows dropped as repeated event ids.
    pub duplicate_event_ids: u64,
    /// Kept events whose ingested type or instant differs from the truth's.
    pub truth_differs: u64,
}

impl OracleInput {
    /// Reads a truth lake back (links, snapshot, per-event truth files).
    pub fn load(lake: &TruthLake) -> anyhow::Result<OracleInput> {
        Self::load_dir(&lake.dir, &lake.snapshot_run_id)
    }

    /// Same, from the lake directory and the snapshot's run id.
    pub fn load_dir(dir: &Path, snapshot_run_id: &str) -> anyhow::Result<OracleInput> {
        // Identity: key → person.
        let links = read_links(dir)?;
        // The snapshot.
        let profiles = read_snapshot(dir, snapshot_run_id)?;
        // Events.
        let mut events = Vec::new();
        let mut seen: HashSet<u128> = HashSet::new();
        let mut strings = Interner::default();
        let mut channels: Vec<String> = vec!["other".into(), "pos".into(), "web".into()];
        let (mut duplicates, mut differs) = (0u64, 0u64);
        for path in parquet_files(&dir.join(crate::truth_lake::TRUTH_EVENTS_DIR))? {
            for_each_batch(&path, |b| {
                let event_id = column::<StringArray>(b, "event_id")?;
                let anchor = column::<StringArray>(b, "anchor_id")?;
                let channel = column::<StringArray>(b, "channel")?;
                let event_type = column::<StringArray>(b, "event_type")?;
                let at = column::<TimestampMicrosecondArray>(b, "occurred_at")?;
                let ingested_type = column::<StringArray>(b, "ingested_event_type")?;
                let ingested_at = column::<TimestampMicrosecondArray>(b, "ingested_occurred_at")?;
                let order_id = column::<StringArray>(b, "order_id")?;
                let sku = column::<StringArray>(b, "sku")?;
                let category = column::<StringArray>(b, "category")?;
                let line_total = column::<Int64Array>(b, "line_total_minor")?;
                let order_total = column::<Int64Array>(b, "order_total_minor")?;
                for i in 0..b.num_rows() {
                    if anchor.is_null(i) {
                        continue;
                    }
                    let Some(person) = parse_key(anchor.value(i)).and_then(|k| links.get(&k).copied()) else { continue };
                    if !profiles.contains_key(&person) {
                        continue;
                    }
                    let ch = channel.value(i);
                    let ty = event_type.value(i);
                    let store_visit = ty == "store_visit";
                    let c = match code(ty) {
                        Some(c) => c,
                        None if ch == "pos" || ch == "web" || store_visit => OTHER,
                        None => continue,
                    };
                    let id = u128::from_str_radix(event_id.value(i), 16).with_context(|| format!("event id {:?}", event_id.value(i)))?;
                    if !seen.insert(id) {
                        duplicates += 1;
                        continue;
                    }
                    if ingested_type.value(i) != ty || ingested_at.value(i) != at.value(i) {
                        differs += 1;
                    }
                    let channel_code = match channels.iter().position(|c| c == ch) {
                        Some(p) => p as u8,
                        None => {
                            channels.push(ch.to_string());
                            (channels.len() - 1) as u8
                        }
                    };
                    let amount = if is(c, &ORDER_LINE_TYPES) {
                        line_total.is_valid(i).then(|| line_total.value(i))
                    } else if ty == "in_app_purchase" {
                        order_total.is_valid(i).then(|| order_total.value(i))
                    } else {
                        None
                    };
                    let keep_product = is(c, &ORDER_LINE_TYPES) || is(c, &CART_TYPES) || ty == "in_app_purchase";
                    events.push(Ev {
                        person,
                        at: at.value(i),
                        code: c,
                        channel: channel_code,
                        order: if keep_product { strings.id(text(order_id, i)) } else { NONE },
                        sku: if keep_product { strings.id(text(sku, i)) } else { NONE },
                        category: if keep_product { strings.id(text(category, i)) } else { NONE },
                        amount: amount.unwrap_or(i64::MIN),
                        store_visit,
                    });
                }
                Ok(())
            })?;
        }
        events.sort_by_key(|e| (e.person, e.at));
        Ok(OracleInput { events, profiles, channels, strings, duplicate_event_ids: duplicates, truth_differs: differs })
    }

    /// Events kept (of snapshot profiles, of the types the segments read).
    pub fn events(&self) -> usize {
        self.events.len()
    }

    pub fn profiles(&self) -> usize {
        self.profiles.len()
    }

    fn per_person(&self) -> impl Iterator<Item = (u32, &[Ev])> {
        self.events.chunk_by(|a, b| a.person == b.person).map(|c| (c[0].person, c))
    }

    /// The channels met, by code (`other`, `pos`, `web`, then in order of appearance).
    pub fn channels(&self) -> &[String] {
        &self.channels
    }
}

/// One order of the `orders` view.
#[derive(Clone, Debug)]
struct Order {
    at: i64,
    amount: Option<i64>,
}

fn add(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, y) => x.or(y),
    }
}

/// The orders of one profile's events (all at or before the run).
fn orders(events: &[&Ev]) -> Vec<Order> {
    let mut by_key: BTreeMap<(u8, u32, bool), Order> = BTreeMap::new();
    for e in events {
        let app = TYPES.get(e.code as usize) == Some(&"in_app_purchase");
        if !(is(e.code, &ORDER_LINE_TYPES) || app) || e.order == NONE {
            continue;
        }
        let amount = (e.amount != i64::MIN).then_some(e.amount);
        let o = by_key.entry((e.channel, e.order, app)).or_insert(Order { at: e.at, amount: None });
        o.at = o.at.min(e.at);
        o.amount = if app { o.amount.max(amount) } else { add(o.amount, amount) };
    }
    by_key.into_values().collect()
}

fn text(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

/// A timestamp payload value (RFC 3339, UTC, microseconds).
pub fn ts_text(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros).expect("in range").to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn opt_text(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The generator's catalogue as the up-sell segment reads it: products by SKU, and per
/// (category, range, tier) the product suggested above that tier.
struct UpSellCatalogue {
    by_sku: HashMap<&'static str, CatalogueProduct>,
    suggestion: HashMap<(&'static str, &'static str, Tier), CatalogueProduct>,
}

/// What up-sell reads of one profile's order lines (all at or before the run).
struct UpSellPurchases<'a> {
    /// Per (category, range) bought: the tiers bought, at any time.
    tiers: BTreeMap<(&'static str, &'static str), BTreeSet<Tier>>,
    /// The catalogue lines after `since`: most recent first, ties by the smallest SKU.
    recent: Vec<(&'a str, CatalogueProduct)>,
}

impl UpSellCatalogue {
    fn new() -> Self {
        let products = ariane_datagen::catalogue();
        let mut suggestion = HashMap::new();
        for p in &products {
            // The lowest tier of the range above p's, then its cheapest product, then the smallest SKU.
            let above = products.iter().filter(|q| q.category == p.category && q.range == p.range && q.tier > p.tier);
            if let Some(s) = above.min_by_key(|q| (q.tier, q.price_cents, q.sku)) {
                suggestion.insert((p.category, p.range, p.tier), *s);
            }
        }
        UpSellCatalogue { by_sku: products.iter().map(|p| (p.sku, *p)).collect(), suggestion }
    }

    /// The catalogue products among `events`' order lines: see [`UpSellPurchases`].
    fn purchases<'a>(&self, events: &[&Ev], strings: &'a Interner, since: i64) -> UpSellPurchases<'a> {
        let mut tiers: BTreeMap<(&str, &str), BTreeSet<Tier>> = BTreeMap::new();
        let mut recent: Vec<(i64, &str, CatalogueProduct)> = Vec::new();
        for e in events.iter().filter(|e| is(e.code, &ORDER_LINE_TYPES)) {
            let Some((sku, p)) = strings.get(e.sku).and_then(|sku| Some((sku, *self.by_sku.get(sku)?))) else { continue };
            tiers.entry((p.category, p.range)).or_default().insert(p.tier);
            if e.at > since {
                recent.push((e.at, sku, p));
            }
        }
        recent.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        UpSellPurchases { tiers, recent: recent.into_iter().map(|(_, sku, p)| (sku, p)).collect() }
    }

    /// The suggestion above the highest tier bought in `range`, if the range has a higher tier.
    fn above(&self, bought: &UpSellPurchases, range: (&'static str, &'static str)) -> Option<&CatalogueProduct> {
        let highest = *bought.tiers.get(&range)?.last()?;
        self.suggestion.get(&(range.0, range.1, highest))
    }

    /// The member: the most recent qualifying line (its SKU and product) and the suggestion.
    fn pick<'a>(&self, bought: &UpSellPurchases<'a>) -> Option<(&'a str, CatalogueProduct, &CatalogueProduct)> {
        bought.recent.iter().find_map(|(sku, p)| self.above(bought, (p.category, p.range)).map(|s| (*sku, *p, s)))
    }
}

/// How the data exercises up-sell at `run_at`, in profiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpSellCoverage {
    /// With a suggestion (members).
    pub suggested: usize,
    /// Of those, with qualifying lines in two ranges or more (the most recent one decides).
    pub several_ranges: usize,
    /// Of those, with two tiers or more bought in the range suggested (the suggestion is
    /// above the highest).
    pub suggested_above_two_tiers: usize,
    /// Of those, whose most recent catalogue line within 365 days is in a range with nothing
    /// above the highest tier bought (passed over for an older line).
    pub latest_passed_over: usize,
    /// Not members: a range below its top tier bought, but no line of such a range within
    /// 365 days.
    pub only_older: usize,
    /// A lower tier and the top tier bought in some range: already traded up (that range is
    /// never suggested).
    pub traded_up: usize,
}

/// See [`UpSellCoverage`].
pub fn up_sell_coverage(run_at: DateTime<Utc>, input: &OracleInput) -> UpSellCoverage {
    let catalogue = UpSellCatalogue::new();
    let now = micros(run_at);
    let since = now - Duration::days(365).num_microseconds().expect("small");
    let mut c = UpSellCoverage::default();
    for (_, all) in input.per_person() {
        let events: Vec<&Ev> = all.iter().filter(|e| e.at <= now).collect();
        let bought = catalogue.purchases(&events, &input.strings, since);
        let ranges: Vec<(&str, &str)> = bought.tiers.keys().copied().collect();
        if ranges.iter().any(|r| catalogue.above(&bought, *r).is_none() && bought.tiers[r].len() >= 2) {
            c.traded_up += 1;
        }
        let Some((_, p, _)) = catalogue.pick(&bought) else {
            c.only_older += ranges.iter().any(|r| catalogue.above(&bought, *r).is_some()) as usize;
            continue;
        };
        c.suggested += 1;
        let qualifying: BTreeSet<(&str, &str)> =
            bought.recent.iter().map(|(_, q)| (q.category, q.range)).filter(|r| catalogue.above(&bought, *r).is_some()).collect();
        c.several_ranges += (qualifying.len() >= 2) as usize;
        c.suggested_above_two_tiers += (bought.tiers[&(p.category, p.range)].len() >= 2) as usize;
        let (_, latest) = bought.recent[0];
        c.latest_passed_over += catalogue.above(&bought, (latest.category, latest.range)).is_none() as usize;
    }
    c
}

/// Members with their payloads: (profile id, key as `k=v` joined by `,`) → payload.
pub type Members = BTreeMap<(String, String), BTreeMap<String, String>>;

/// The expected members of `segment` at `run_at`: (profile id, key columns as `k=v`
/// joined by `,`, empty when the segment has no key).
pub fn expected(segment: &str, run_at: DateTime<Utc>, input: &OracleInput) -> anyhow::Result<BTreeSet<(String, String)>> {
    Ok(expected_members(segment, run_at, input)?.into_keys().collect())
}

/// The expected members of `segment` at `run_at` with their payloads (numbers in decimal,
/// booleans `true`/`false`, instants as [`ts_text`], null as the empty string).
pub fn expected_members(segment: &str, run_at: DateTime<Utc>, input: &OracleInput) -> anyhow::Result<Members> {
    let now = micros(run_at);
    let days = |n: i64| now - Duration::days(n).num_microseconds().expect("small");
    let within = |at: i64, since: i64| at > since && at <= now;
    let mut out: Members = BTreeMap::new();
    let payload =
        |pairs: &[(&str, String)]| -> BTreeMap<String, String> { pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() };
    let catalogue = (segment == "up-sell").then(UpSellCatalogue::new);
    for (person, all) in input.per_person() {
        let pid = profile_id_of(person);
        // The `events` view: at or before the run.
        let events: Vec<&Ev> = all.iter().filter(|e| e.at <= now).collect();
        if events.is_empty() {
            continue;
        }
        let orders = orders(&events);
        let last_order = orders.iter().map(|o| o.at).max();
        match segment {
            "new-visitor" => {
                let (email, push) = input.profiles[&person];
                if email || push || !orders.is_empty() {
                    continue;
                }
                let seen: Vec<&&Ev> = events.iter().filter(|e| (e.channel == 1 || e.channel == 2) && within(e.at, days(90))).collect();
                if let Some(last) = seen.iter().map(|e| e.at).max() {
                    out.insert(
                        (pid, String::new()),
                        payload(&[
                            ("last_seen_at", ts_text(last)),
                            ("seen_in_store", seen.iter().any(|e| e.channel == 1).to_string()),
                            ("seen_on_site", seen.iter().any(|e| e.channel == 2).to_string()),
                        ]),
                    );
                }
            }
            "abandoned-cart" => {
                let since = now - Duration::hours(48).num_microseconds().expect("small");
                // A completed checkout (an online order seen by web or app analytics, whose
                // lines may arrive later, or never, in an export) closes the cart too.
                let checkout = events.iter().filter(|e| is(e.code, &["checkout_completed"])).map(|e| e.at).max();
                let closed = last_order.max(checkout);
                let open: Vec<&&Ev> =
                    events.iter().filter(|e| is(e.code, &CART_TYPES) && within(e.at, since) && closed.is_none_or(|o| e.at > o)).collect();
                if let Some(cart_at) = open.iter().map(|e| e.at).max() {
                    let items: BTreeSet<&str> = open.iter().filter_map(|e| input.strings.get(e.sku)).collect();
                    out.insert(
                        (pid, String::new()),
                        payload(&[("cart_at", ts_text(cart_at)), ("items", items.into_iter().collect::<Vec<_>>().join(","))]),
                    );
                }
            }
            "cross-sell" => {
                const PAIRS: [(&str, &str); 5] = [
                    ("chaussures", "accessoires"),
                    ("vetements", "chaussures"),
                    ("sport", "vetements"),
                    ("maison", "beaute"),
                    ("enfant", "vetements"),
                ];
                let bought: BTreeSet<&str> =
                    events.iter().filter(|e| is(e.code, &ORDER_LINE_TYPES)).filter_map(|e| input.strings.get(e.category)).collect();
                let mut suggestions: BTreeMap<&str, &str> = BTreeMap::new();
                for (a, b) in PAIRS {
                    if bought.contains(a) && !bought.contains(b) {
                        let because = suggestions.entry(b).or_insert(a);
                        *because = (*because).min(a);
                    }
                }
                for (b, a) in suggestions {
                    out.insert(
                        (pid.clone(), format!("suggested_category={b}")),
                        payload(&[("suggested_category", b.to_string()), ("because_of", a.to_string())]),
                    );
                }
            }
            "up-sell" => {
                let catalogue = catalogue.as_ref().expect("built for up-sell");
                let bought = catalogue.purchases(&events, &input.strings, days(365));
                let Some((because, p, s)) = catalogue.pick(&bought) else { continue };
                out.insert(
                    (pid, format!("suggested_sku={}", s.sku)),
                    payload(&[
                        ("suggested_sku", s.sku.to_string()),
                        ("suggested_product", s.name.to_string()),
                        ("suggested_tier", s.tier.name().to_string()),
                        ("because_of_sku", because.to_string()),
                        ("category", p.category.to_string()),
                        ("product_range", p.range.to_string()),
                    ]),
                );
            }
            "reactivation" => {
                if let Some(last) = last_order {
                    if orders.len() >= 2 && last < days(90) {
                        let ltv = orders.iter().fold(None, |s, o| add(s, o.amount));
                        out.insert(
                            (pid, String::new()),
                            payload(&[
                                ("order_count", orders.len().to_string()),
                                ("last_order_at", ts_text(last)),
                                ("lifetime_value_minor", opt_text(ltv)),
                            ]),
                        );
                    }
                }
            }
            "rfm" => {
                let Some(last) = last_order else { continue };
                let recent: Vec<&Order> = orders.iter().filter(|o| within(o.at, days(365))).collect();
                let n = recent.len();
                let tier = if within(last, days(30)) && n >= 4 {
                    "champions"
                } else if n >= 3 {
                    "loyal"
                } else if within(last, days(60)) {
                    "promising"
                } else if within(last, days(180)) {
                    "at_risk"
                } else {
                    "hibernating"
                };
                // SUM(CASE WHEN recent THEN amount ELSE 0 END): null only when every term is.
                let spend = orders.iter().fold(None, |s, o| add(s, if within(o.at, days(365)) { o.amount } else { Some(0) }));
                out.insert(
                    (pid, format!("tier={tier}")),
                    payload(&[
                        ("tier", tier.to_string()),
                        ("orders_365d", n.to_string()),
                        ("spend_365d_minor", opt_text(spend)),
                        ("last_order_at", ts_text(last)),
                    ]),
                );
            }
            "preferred-channel" => {
                let mut per: BTreeMap<&str, (u64, i64)> = BTreeMap::new();
                for e in events.iter().filter(|e| within(e.at, days(90))) {
                    let ch = if e.store_visit { Some("store") } else { engagement_channel(e.code) };
                    if let Some(ch) = ch {
                        let s = per.entry(ch).or_insert((0, i64::MIN));
                        s.0 += 1;
                        s.1 = s.1.max(e.at);
                    }
                }
                // Most events, then the latest event, then the name (ascending).
                let best = per.iter().max_by(|a, b| (a.1 .0, a.1 .1).cmp(&(b.1 .0, b.1 .1)).then(b.0.cmp(a.0)));
                if let Some((ch, (n, _))) = best {
                    out.insert(
                        (pid, format!("preferred_channel={ch}")),
                        payload(&[("preferred_channel", ch.to_string()), ("engagements", n.to_string())]),
                    );
                }
            }
            "vip" => {
                let recent: Vec<&Order> = orders.iter().filter(|o| within(o.at, days(365))).collect();
                let spend = recent.iter().fold(None, |s, o| add(s, o.amount));
                if spend.is_some_and(|s| s >= 50_000) || recent.len() >= 6 {
                    out.insert(
                        (pid, String::new()),
                        payload(&[("spend_365d_minor", opt_text(spend)), ("orders_365d", recent.len().to_string())]),
                    );
                }
            }
            other => bail!("no oracle for segment {other:?} (known: {})", SEGMENTS.join(", ")),
        }
    }
    if !SEGMENTS.contains(&segment) {
        bail!("no oracle for segment {segment:?} (known: {})", SEGMENTS.join(", "));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run_at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap()
    }

    fn ev(person: u32, days_before: i64, ty: &str, channel: u8) -> Ev {
        Ev {
            person,
            at: micros(run_at() - Duration::days(days_before)),
            code: code(ty).unwrap_or(OTHER),
            channel,
            order: NONE,
            sku: NONE,
            category: NONE,
            amount: i64::MIN,
            store_visit: ty == "store_visit",
        }
    }

    fn input(mut events: Vec<Ev>) -> OracleInput {
        events.sort_by_key(|e| (e.person, e.at));
        let profiles = events.iter().map(|e| (e.person, (false, false))).collect();
        OracleInput {
            events,
            profiles,
            channels: vec!["other".into(), "pos".into(), "web".into()],
            strings: Interner::default(),
            duplicate_event_ids: 0,
            truth_differs: 0,
        }
    }

    #[test]
    fn within_n_days_excludes_the_boundary_instant() {
        let i = input(vec![ev(1, 90, "page_view", 2), ev(2, 89, "page_view", 2)]);
        let got = expected("new-visitor", run_at(), &i).unwrap();
        assert_eq!(got, BTreeSet::from([(profile_id_of(2), String::new())]));
    }

    #[test]
    fn preferred_channel_ties_go_to_the_latest_then_the_name() {
        let i = input(vec![ev(1, 10, "email_open", 0), ev(1, 5, "app_open", 0), ev(2, 5, "email_click", 0), ev(2, 5, "store_visit", 1)]);
        let got = expected("preferred-channel", run_at(), &i).unwrap();
        assert!(got.contains(&(profile_id_of(1), "preferred_channel=app".into())), "{got:?}");
        assert!(got.contains(&(profile_id_of(2), "preferred_channel=email".into())), "{got:?}");
    }

    /// An order line (or another event) of `sku`.
    fn bought(person: u32, days_before: i64, ty: &str, sku: &str, strings: &mut Interner) -> Ev {
        let mut e = ev(person, days_before, ty, if ty == "store_purchase" { 1 } else { 3 });
        e.sku = strings.id(Some(sku));
        e
    }

    #[test]
    fn up_sell_suggests_once_per_person_from_the_most_recent_qualifying_purchase() {
        let mut s = Interner::default();
        let events = vec![
            // Entry and two mids of the basiques: the premium, because of the latest mid.
            bought(1, 300, "order_line", "SKU-VET-00124", &mut s),
            bought(1, 200, "order_line", "SKU-VET-00192", &mut s),
            bought(1, 100, "store_purchase", "SKU-VET-00163", &mut s),
            // Entry then premium of the basiques: traded up, so the latest line (the premium)
            // is passed over for the entry baskets: the range has no mid, the premium is next.
            bought(2, 50, "order_line", "SKU-VET-00124", &mut s),
            bought(2, 30, "order_line", "SKU-CHA-00311", &mut s),
            bought(2, 20, "store_purchase", "SKU-VET-00123", &mut s),
            // Two ranges at the same instant: the smaller SKU; ties on the price in the next
            // tier: the smaller SKU.
            bought(3, 20, "order_line", "SKU-VET-00205", &mut s),
            bought(3, 20, "order_line", "SKU-SPO-00725", &mut s),
            // Not the catalogue's, not an order line, after the run: nothing.
            bought(4, 10, "order_line", "SKU-VET-1", &mut s),
            bought(4, 10, "cart_add", "SKU-CHA-00311", &mut s),
            bought(4, -1, "order_line", "SKU-ACC-00447", &mut s),
            // A till purchase in a range; the top tier only.
            bought(5, 5, "store_purchase", "SKU-MAI-00503", &mut s),
            bought(6, 5, "order_line", "SKU-ACC-00489", &mut s),
            // Traded up in the basiques long ago: a recent entry line there suggests nothing.
            bought(7, 600, "order_line", "SKU-VET-00123", &mut s),
            bought(7, 10, "order_line", "SKU-VET-00124", &mut s),
            // Qualifying purchases 365 days old or older only: nothing.
            bought(8, 400, "order_line", "SKU-BEA-00634", &mut s),
            bought(8, 365, "order_line", "SKU-BEA-00605", &mut s),
            // Two ranges within 365 days: only the most recent.
            bought(9, 100, "order_line", "SKU-ENF-00806", &mut s),
            bought(9, 50, "store_purchase", "SKU-MAI-00537", &mut s),
            // The highest tier bought (mid) is older than 365 days: the recent entry line
            // qualifies and is the reason; the suggestion is above the mid.
            bought(10, 500, "order_line", "SKU-VET-00192", &mut s),
            bought(10, 30, "order_line", "SKU-VET-00124", &mut s),
        ];
        let mut i = input(events);
        i.strings = s;
        let got = expected_members("up-sell", run_at(), &i).unwrap();
        let want = |p: u32, sku: &str, product: &str, tier: &str, because: &str, category: &str, range: &str| {
            let payload = [
                ("suggested_sku", sku),
                ("suggested_product", product),
                ("suggested_tier", tier),
                ("because_of_sku", because),
                ("category", category),
                ("product_range", range),
            ];
            ((profile_id_of(p), format!("suggested_sku={sku}")), payload.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        };
        let expected: Members = [
            want(1, "SKU-VET-00123", "Pull col roulé, laine mérinos", "premium", "SKU-VET-00163", "vetements", "basiques"),
            want(2, "SKU-CHA-00378", "Chaussures de running, amorti renforcé", "premium", "SKU-CHA-00311", "chaussures", "baskets"),
            want(3, "SKU-SPO-00733", "Brassière de sport", "mid", "SKU-SPO-00725", "sport", "fitness"),
            want(5, "SKU-MAI-00558", "Vase en verre soufflé", "mid", "SKU-MAI-00503", "maison", "deco"),
            want(9, "SKU-MAI-00516", "Plaid en laine, 130x170 cm", "mid", "SKU-MAI-00537", "maison", "linge"),
            want(10, "SKU-VET-00123", "Pull col roulé, laine mérinos", "premium", "SKU-VET-00124", "vetements", "basiques"),
        ]
        .into_iter()
        .collect();
        assert_eq!(got, expected);
        assert_eq!(
            up_sell_coverage(run_at(), &i),
            UpSellCoverage {
                suggested: 6,
                several_ranges: 2,
                suggested_above_two_tiers: 2,
                latest_passed_over: 1,
                only_older: 1,
                traded_up: 2
            }
        );
    }

    /// The SQL string and integer literals of a `VALUES` row line: `('a', 'b''c', 12),`.
    fn literals(line: &str) -> Vec<String> {
        let (mut out, mut chars) = (Vec::new(), line.chars().peekable());
        while let Some(c) = chars.next() {
            if c == '\'' {
                let mut v = String::new();
                while let Some(c) = chars.next() {
                    match (c, chars.peek()) {
                        ('\'', Some('\'')) => {
                            v.push('\'');
                            chars.next();
                        }
                        ('\'', _) => break,
                        _ => v.push(c),
                    }
                }
                out.push(v);
            } else if c.is_ascii_digit() {
                let mut v = c.to_string();
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    v.push(d);
                }
                out.push(v);
            }
        }
        out
    }

    #[test]
    fn the_up_sell_sql_carries_the_generators_catalogue() {
        let sql = std::fs::read_to_string(crate::repo_root().join("segments/up-sell.sql")).unwrap();
        let rows: BTreeSet<Vec<String>> = sql.lines().filter(|l| l.trim_start().starts_with("('SKU-")).map(literals).collect();
        let catalogue: BTreeSet<Vec<String>> = ariane_datagen::catalogue()
            .into_iter()
            .map(|p| [p.sku, p.name, p.category, p.range, p.tier.name(), &p.price_cents.to_string()].map(str::to_string).to_vec())
            .collect();
        assert_eq!(rows, catalogue, "segments/up-sell.sql's catalogue rows and the generator's differ");
    }

    #[test]
    fn orders_group_lines_and_app_purchases_count_as_orders() {
        let mut strings = Interner::default();
        let (o1, o2) = (strings.id(Some("#1")), strings.id(Some("APP-1")));
        let mut line = ev(1, 100, "order_line", 3);
        line.order = o1;
        line.amount = 30_000;
        let mut line2 = line;
        line2.amount = 25_000;
        let mut app = ev(1, 95, "in_app_purchase", 4);
        app.order = o2;
        app.amount = 1_000;
        let mut i = input(vec![line, line2, app]);
        i.strings = strings;
        let vip = expected_members("vip", run_at(), &i).unwrap();
        assert_eq!(vip[&(profile_id_of(1), String::new())]["spend_365d_minor"], "56000");
        assert_eq!(vip[&(profile_id_of(1), String::new())]["orders_365d"], "2");
        let react = expected_members("reactivation", run_at(), &i).unwrap();
        assert_eq!(react[&(profile_id_of(1), String::new())]["order_count"], "2");
    }
}
