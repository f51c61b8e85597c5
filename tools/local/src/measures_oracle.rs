//! An independent plain-Rust computation of the daily measures of `docs/measurement.md`
//! (and of the column meanings written at the top of each `measures/*.sql`) over a truth
//! lake ([`crate::truth_lake`]): what the measures run must find, from the generator's
//! truth rather than from the SQL.
//!
//! Inputs ([`MeasuresInput::load`]), as in [`crate::segment_oracle`]:
//!
//! * persons: the truth lake's identity links, restricted to the profiles of the snapshot
//!   (an event belongs to the profile its identity key is linked to);
//! * event types, instants and channels: the generator's truth (the per-event truth files);
//! * order ids, amounts and campaigns: the ingested fields of those events (the truth has
//!   no amount per line; the campaign is the export's own `Campaign ID` / `Campagne`).
//!
//! Semantics, read from the doc and the SQL files' headers (choices where they are not
//! explicit are marked CHOICE):
//!
//! * the run sees the events with `occurred_at <= run_at` of snapshot profiles, every event
//!   id once (CHOICE: a repeated event id is one event, as `COUNT(DISTINCT event_id)` and
//!   the `order_lines` view count it; the lake of a truth lake has none);
//! * the period is `run_at - 28 days < occurred_at <= run_at` (measures of orders and KPIs);
//!   touchpoints are read over `run_at - 58 days < at <= run_at`;
//! * orders: per `(profile, channel, order_id)` of `order_line` and `store_purchase` events
//!   (`ordered_at` the earliest line, the amount the sum of the lines' `line_total_minor`,
//!   none when every line's is null) and of `in_app_purchase` events (the amount the
//!   largest `order_total_minor`); returns are not orders; a conversion is an order of the
//!   period, its amount 0 when it has none;
//! * weeks: ISO weeks of the UTC instant (the Monday, UTC); KPI rows: one per channel and
//!   week with an event of the period in that channel or an order;
//! * funnel and cross-channel: as [`funnel`] and [`cross_channel`] say, from the SQL
//!   files' headers;
//! * touchpoints: `email_click`, `sms_click`, `app_open`, `push_open` events (kind = the
//!   event type, any channel), and web sessions: the `page_view` and `product_view`
//!   events of the channel `web` of one person on one UTC day under one campaign are one
//!   session, at the first of them, kind `session`; an event id counts once. The sends
//!   of Ariane's own campaigns (activation records, kind `send`) are touchpoints too, but a
//!   truth lake has no activation records: the generator's exports are the only contacts
//!   (the ESP's and SMS gateway's sends and opens do not count, as the SQL says);
//! * an order's touchpoints: the same person's touchpoints with
//!   `ordered_at - lookback <= at <= ordered_at` (both ends included, as
//!   `ariane_measures::attribution` documents); the first touch is the earliest and the
//!   last touch the latest in the order (instant, channel, campaign, kind): at the same
//!   second, channels in alphabetical order (CHOICE: the doc does not say which of two
//!   contacts at the same second is "the latest"; the attribution module does);
//! * an order without touchpoint is credited to `(none)`; a touchpoint without campaign
//!   counts for the campaign `(no campaign)`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use anyhow::{bail, Context};
use arrow::array::{Array, Int64Array, StringArray, TimestampMicrosecondArray};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};

use crate::truth_lake::{column, for_each_batch, parquet_files, parse_key, read_links, read_snapshot, TruthLake, TRUTH_EVENTS_DIR};

/// Channel and campaign of an order without touchpoint (`ariane_measures::attribution::NO_TOUCHPOINT`).
pub const NO_TOUCHPOINT: &str = "(none)";
/// Campaign of a touchpoint without one.
pub const NO_CAMPAIGN: &str = "(no campaign)";
/// Days of the measured period.
pub const PERIOD_DAYS: i64 = 28;
/// Days of touchpoints the run reads (period + the longest lookback).
pub const TOUCHPOINT_DAYS: i64 = 58;

/// One event of a snapshot profile, as the truth says.
#[derive(Clone, Debug)]
pub struct Event {
    pub person: u32,
    pub at: DateTime<Utc>,
    pub channel: String,
    pub event_type: String,
    pub campaign: Option<String>,
    pub order_id: Option<String>,
    pub line_total_minor: Option<i64>,
    pub order_total_minor: Option<i64>,
}

/// What the oracle computes from: see the module documentation.
pub struct MeasuresInput {
    /// Events of snapshot profiles, sorted by (person, instant).
    pub events: Vec<Event>,
    /// Persons of the snapshot.
    pub profiles: BTreeSet<u32>,
    /// Rows dropped as repeated event ids.
    pub duplicate_event_ids: u64,
}

impl MeasuresInput {
    /// Reads a truth lake back (links, snapshot, per-event truth files).
    pub fn load(lake: &TruthLake) -> anyhow::Result<MeasuresInput> {
        Self::load_dir(&lake.dir, &lake.snapshot_run_id)
    }

    /// Same, from the lake directory and the snapshot's run id.
    pub fn load_dir(dir: &Path, snapshot_run_id: &str) -> anyhow::Result<MeasuresInput> {
        let links = read_links(dir)?;
        let profiles: BTreeSet<u32> = read_snapshot(dir, snapshot_run_id)?.into_keys().collect();
        if profiles.is_empty() {
            bail!("no profile in the snapshot {snapshot_run_id} of {}", dir.display());
        }
        let mut events = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut duplicates = 0u64;
        let text = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
        let int = |a: &Int64Array, i: usize| a.is_valid(i).then(|| a.value(i));
        for path in parquet_files(&dir.join(TRUTH_EVENTS_DIR))? {
            for_each_batch(&path, |b| {
                let event_id = column::<StringArray>(b, "event_id")?;
                let anchor = column::<StringArray>(b, "anchor_id")?;
                let channel = column::<StringArray>(b, "channel")?;
                let event_type = column::<StringArray>(b, "event_type")?;
                let at = column::<TimestampMicrosecondArray>(b, "occurred_at")?;
                let campaign = column::<StringArray>(b, "campaign_id")?;
                let order_id = column::<StringArray>(b, "order_id")?;
                let line_total = column::<Int64Array>(b, "line_total_minor")?;
                let order_total = column::<Int64Array>(b, "order_total_minor")?;
                for i in 0..b.num_rows() {
                    if anchor.is_null(i) {
                        continue;
                    }
                    let Some(person) = parse_key(anchor.value(i)).and_then(|k| links.get(&k).copied()) else { continue };
                    if !profiles.contains(&person) {
                        continue;
                    }
                    if !seen.insert(event_id.value(i).to_string()) {
                        duplicates += 1;
                        continue;
                    }
                    let at = DateTime::<Utc>::from_timestamp_micros(at.value(i)).context("an instant out of range")?;
                    events.push(Event {
                        person,
                        at,
                        channel: channel.value(i).to_string(),
                        event_type: event_type.value(i).to_string(),
                        campaign: text(campaign, i).filter(|c| !c.is_empty()),
                        order_id: text(order_id, i),
                        line_total_minor: int(line_total, i),
                        order_total_minor: int(order_total, i),
                    });
                }
                Ok(())
            })?;
        }
        events.sort_by_key(|e| (e.person, e.at));
        Ok(MeasuresInput { events, profiles, duplicate_event_ids: duplicates })
    }

    /// The events the run sees (at or before `run_at`).
    fn seen(&self, run_at: DateTime<Utc>) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(move |e| e.at <= run_at)
    }
}

/// The Monday (UTC) of the ISO week of `at`.
pub fn week_start(at: DateTime<Utc>) -> NaiveDate {
    let day = at.date_naive();
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// One order of the `orders` view.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Order {
    pub person: u32,
    pub channel: String,
    pub order_id: String,
    pub at: DateTime<Utc>,
    /// `None` when no line (or purchase) carried an amount.
    pub amount_minor: Option<i64>,
}

fn add(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x + y),
        (x, y) => x.or(y),
    }
}

/// Every order up to `run_at` (all history), sorted by (person, channel, order id).
pub fn orders(input: &MeasuresInput, run_at: DateTime<Utc>) -> Vec<Order> {
    let mut by_key: BTreeMap<(u32, String, String, bool), Order> = BTreeMap::new();
    for e in input.seen(run_at) {
        let app = e.event_type == "in_app_purchase";
        if !(app || e.event_type == "order_line" || e.event_type == "store_purchase") {
            continue;
        }
        let Some(id) = &e.order_id else { continue };
        let o = by_key.entry((e.person, e.channel.clone(), id.clone(), app)).or_insert_with(|| Order {
            person: e.person,
            channel: e.channel.clone(),
            order_id: id.clone(),
            at: e.at,
            amount_minor: None,
        });
        o.at = o.at.min(e.at);
        o.amount_minor = if app { o.amount_minor.max(e.order_total_minor) } else { add(o.amount_minor, e.line_total_minor) };
    }
    by_key.into_values().collect()
}

/// The orders of the period: what attribution shares out.
pub fn conversions(input: &MeasuresInput, run_at: DateTime<Utc>) -> Vec<Order> {
    let since = run_at - Duration::days(PERIOD_DAYS);
    orders(input, run_at).into_iter().filter(|o| o.at > since).collect()
}

/// The counts of one `channel-kpis` row (see `measures/channel-kpis.sql`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kpis {
    pub people_reached: i64,
    pub deliveries: i64,
    pub sms_delivered: i64,
    pub opens: i64,
    pub clicks: i64,
    pub sessions: i64,
    pub carts: i64,
    pub checkouts: i64,
    pub orders: i64,
    pub revenue_minor: i64,
    pub new_customers: i64,
    pub returning_customers: i64,
    pub unsubscribes: i64,
    pub stops: i64,
}

impl Kpis {
    /// The counts with their column names, in the table's order.
    pub fn columns(&self) -> [(&'static str, i64); 14] {
        [
            ("people_reached", self.people_reached),
            ("deliveries", self.deliveries),
            ("sms_delivered", self.sms_delivered),
            ("opens", self.opens),
            ("clicks", self.clicks),
            ("sessions", self.sessions),
            ("carts", self.carts),
            ("checkouts", self.checkouts),
            ("orders", self.orders),
            ("revenue_minor", self.revenue_minor),
            ("new_customers", self.new_customers),
            ("returning_customers", self.returning_customers),
            ("unsubscribes", self.unsubscribes),
            ("stops", self.stops),
        ]
    }
}

/// `channel-kpis`: per (week start, channel).
pub fn channel_kpis(input: &MeasuresInput, run_at: DateTime<Utc>) -> BTreeMap<(NaiveDate, String), Kpis> {
    let since = run_at - Duration::days(PERIOD_DAYS);
    let mut out: BTreeMap<(NaiveDate, String), Kpis> = BTreeMap::new();
    let mut reached: BTreeSet<(NaiveDate, &str, u32)> = BTreeSet::new();
    let mut sessions: BTreeSet<(NaiveDate, &str, u32, NaiveDate)> = BTreeSet::new();
    for e in input.seen(run_at).filter(|e| e.at > since) {
        let week = week_start(e.at);
        let k = out.entry((week, e.channel.clone())).or_default();
        let t = e.event_type.as_str();
        let visit = matches!(e.channel.as_str(), "web" | "app" | "pos" | "ecommerce");
        if matches!(t, "email_sent" | "sms_sent" | "sms_delivered") || visit {
            reached.insert((week, &e.channel, e.person));
        }
        if matches!(e.channel.as_str(), "web" | "app") {
            sessions.insert((week, &e.channel, e.person, e.at.date_naive()));
        }
        match t {
            "email_sent" | "sms_sent" => k.deliveries += 1,
            "sms_delivered" => k.sms_delivered += 1,
            "email_open" | "push_open" => k.opens += 1,
            "email_click" | "sms_click" => k.clicks += 1,
            "cart_add" | "add_to_cart" => k.carts += 1,
            "checkout_started" => k.checkouts += 1,
            "email_unsubscribe" => k.unsubscribes += 1,
            "sms_stop" => k.stops += 1,
            _ => {}
        }
    }
    for (week, channel, _) in reached {
        out.get_mut(&(week, channel.to_string())).expect("counted above").people_reached += 1;
    }
    for (week, channel, ..) in sessions {
        out.get_mut(&(week, channel.to_string())).expect("counted above").sessions += 1;
    }
    let all = orders(input, run_at);
    let mut first_week: BTreeMap<u32, NaiveDate> = BTreeMap::new();
    for o in &all {
        let w = week_start(o.at);
        first_week.entry(o.person).and_modify(|f| *f = (*f).min(w)).or_insert(w);
    }
    let mut customers: BTreeSet<(NaiveDate, &str, u32)> = BTreeSet::new();
    for o in all.iter().filter(|o| o.at > since) {
        let week = week_start(o.at);
        let k = out.entry((week, o.channel.clone())).or_default();
        k.orders += 1;
        k.revenue_minor += o.amount_minor.unwrap_or(0);
        customers.insert((week, &o.channel, o.person));
    }
    for (week, channel, person) in customers {
        let k = out.get_mut(&(week, channel.to_string())).expect("counted above");
        match first_week[&person].cmp(&week) {
            std::cmp::Ordering::Equal => k.new_customers += 1,
            std::cmp::Ordering::Less => k.returning_customers += 1,
            std::cmp::Ordering::Greater => {}
        }
    }
    out
}

/// One `funnel` row (see `measures/funnel.sql`): people who entered through a channel and
/// how far they went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Funnel {
    pub people: i64,
    pub visitors: i64,
    pub carted: i64,
    pub checked_out: i64,
    pub ordered: i64,
}

/// `funnel`: per channel of entry (the channel of the person's first event of the period,
/// crm left out; at the same instant the alphabetically first channel).
pub fn funnel(input: &MeasuresInput, run_at: DateTime<Utc>) -> BTreeMap<String, Funnel> {
    let since = run_at - Duration::days(PERIOD_DAYS);
    let mut people: BTreeMap<u32, (DateTime<Utc>, String, [bool; 4])> = BTreeMap::new();
    for e in input.seen(run_at).filter(|e| e.at > since && e.channel != "crm") {
        let p = people.entry(e.person).or_insert_with(|| (e.at, e.channel.clone(), [false; 4]));
        if (e.at, &e.channel) < (p.0, &p.1) {
            (p.0, p.1) = (e.at, e.channel.clone());
        }
        let t = e.event_type.as_str();
        p.2[0] |= matches!(e.channel.as_str(), "web" | "app" | "pos" | "ecommerce");
        p.2[1] |= matches!(t, "cart_add" | "add_to_cart");
        p.2[2] |= t == "checkout_started";
        p.2[3] |= matches!(t, "order_line" | "store_purchase" | "in_app_purchase");
    }
    let mut out: BTreeMap<String, Funnel> = BTreeMap::new();
    for (_, entry, [visited, carted, checked_out, ordered]) in people.into_values() {
        let f = out.entry(entry).or_default();
        f.people += 1;
        if visited {
            f.visitors += 1;
            f.carted += i64::from(carted || checked_out || ordered);
            f.checked_out += i64::from(checked_out || ordered);
            f.ordered += i64::from(ordered);
        }
    }
    out
}

/// The counts of the `cross-channel` row (see `measures/cross-channel.sql`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrossChannel {
    pub people_reached: i64,
    pub customers: i64,
    pub single_channel_customers: i64,
    pub multi_channel_customers: i64,
    /// Revenue of the period of single- and multi-channel customers (cents).
    pub single_channel_value_minor: i64,
    pub multi_channel_value_minor: i64,
    pub research_online_purchase_offline: i64,
    pub research_offline_purchase_online: i64,
}

/// `cross-channel`. A customer's channels are those of their events of the period (crm left
/// out, ecommerce counted as web); CHOICE: a customer without any such event (impossible:
/// an order is an event) would count as single-channel, as the SQL's `COALESCE(.., 1)`.
/// Research online / purchase offline: store orders of the period with a web or app event
/// of the same person in the 7 days before (both ends included); the reverse: web-shop and
/// app orders with a store event in the 7 days before.
pub fn cross_channel(input: &MeasuresInput, run_at: DateTime<Utc>) -> CrossChannel {
    let since = run_at - Duration::days(PERIOD_DAYS);
    let mut out = CrossChannel::default();
    let mut reached = BTreeSet::new();
    let mut channels: BTreeMap<u32, BTreeSet<&str>> = BTreeMap::new();
    for e in input.seen(run_at).filter(|e| e.at > since && e.channel != "crm") {
        if matches!(e.event_type.as_str(), "email_sent" | "sms_sent" | "sms_delivered")
            || matches!(e.channel.as_str(), "web" | "app" | "pos" | "ecommerce")
        {
            reached.insert(e.person);
        }
        channels.entry(e.person).or_default().insert(if e.channel == "ecommerce" { "web" } else { e.channel.as_str() });
    }
    out.people_reached = reached.len() as i64;
    let orders = conversions(input, run_at);
    let mut value: BTreeMap<u32, i64> = BTreeMap::new();
    for o in &orders {
        *value.entry(o.person).or_default() += o.amount_minor.unwrap_or(0);
    }
    for (person, v) in &value {
        out.customers += 1;
        if channels.get(person).map_or(1, BTreeSet::len) <= 1 {
            out.single_channel_customers += 1;
            out.single_channel_value_minor += v;
        } else {
            out.multi_channel_customers += 1;
            out.multi_channel_value_minor += v;
        }
    }
    let visits: Vec<&Event> = input
        .seen(run_at)
        .filter(|e| e.at > run_at - Duration::days(PERIOD_DAYS + 7) && matches!(e.channel.as_str(), "web" | "app" | "pos"))
        .collect();
    let visited = |o: &Order, online: bool| {
        visits.iter().any(|v| v.person == o.person && (v.channel != "pos") == online && v.at <= o.at && v.at >= o.at - Duration::days(7))
    };
    let ropo: BTreeSet<(u32, &str)> =
        orders.iter().filter(|o| o.channel == "pos" && visited(o, true)).map(|o| (o.person, o.order_id.as_str())).collect();
    let reverse: BTreeSet<(u32, &str)> = orders
        .iter()
        .filter(|o| matches!(o.channel.as_str(), "ecommerce" | "app") && visited(o, false))
        .map(|o| (o.person, o.order_id.as_str()))
        .collect();
    out.research_online_purchase_offline = ropo.len() as i64;
    out.research_offline_purchase_online = reverse.len() as i64;
    out
}

/// One touchpoint (see `measures/touchpoints.sql`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Touch {
    pub person: u32,
    pub at: DateTime<Utc>,
    pub channel: String,
    pub campaign: Option<String>,
    pub kind: String,
}

impl Touch {
    /// The campaign, or [`NO_CAMPAIGN`].
    pub fn campaign_label(&self) -> &str {
        self.campaign.as_deref().unwrap_or(NO_CAMPAIGN)
    }
}

/// Every touchpoint of the [`TOUCHPOINT_DAYS`] before `run_at`, sorted by (person,
/// instant, channel, campaign, kind).
pub fn touchpoints(input: &MeasuresInput, run_at: DateTime<Utc>) -> Vec<Touch> {
    let since = run_at - Duration::days(TOUCHPOINT_DAYS);
    let mut out = Vec::new();
    let mut sessions: BTreeMap<(u32, NaiveDate, Option<String>), DateTime<Utc>> = BTreeMap::new();
    for e in input.seen(run_at).filter(|e| e.at > since) {
        match e.event_type.as_str() {
            "email_click" | "sms_click" | "app_open" | "push_open" => out.push(Touch {
                person: e.person,
                at: e.at,
                channel: e.channel.clone(),
                campaign: e.campaign.clone(),
                kind: e.event_type.clone(),
            }),
            "page_view" | "product_view" if e.channel == "web" => {
                let first = sessions.entry((e.person, e.at.date_naive(), e.campaign.clone())).or_insert(e.at);
                *first = (*first).min(e.at);
            }
            _ => {}
        }
    }
    out.extend(sessions.into_iter().map(|((person, _, campaign), at)| Touch {
        person,
        at,
        channel: "web".into(),
        campaign,
        kind: "session".into(),
    }));
    out.sort();
    out
}

/// An order of the period with its first and last touchpoints in the lookback window.
#[derive(Clone, Debug)]
pub struct Credited {
    pub order: Order,
    /// Touchpoints in the window.
    pub touches: usize,
    pub first: Option<Touch>,
    pub last: Option<Touch>,
}

/// Every conversion of the period with its first and last touch (`lookback` before it,
/// both ends included), sorted like [`conversions`].
pub fn first_and_last_touch(input: &MeasuresInput, run_at: DateTime<Utc>, lookback: Duration) -> Vec<Credited> {
    let touches = touchpoints(input, run_at);
    let mut by_person: BTreeMap<u32, Vec<&Touch>> = BTreeMap::new();
    for t in &touches {
        by_person.entry(t.person).or_default().push(t);
    }
    conversions(input, run_at)
        .into_iter()
        .map(|order| {
            let window: Vec<&Touch> = by_person
                .get(&order.person)
                .map(|ts| ts.iter().copied().filter(|t| t.at >= order.at - lookback && t.at <= order.at).collect())
                .unwrap_or_default();
            Credited {
                touches: window.len(),
                first: window.first().map(|t| (*t).clone()),
                last: window.last().map(|t| (*t).clone()),
                order,
            }
        })
        .collect()
}

/// Which touch a single-touch model credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SingleTouch {
    First,
    Last,
}

/// Conversions and revenue (cents) per channel (`by_campaign`: per campaign) under first or
/// last touch.
pub fn single_touch_credit(credited: &[Credited], which: SingleTouch, by_campaign: bool) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for c in credited {
        let touch = match which {
            SingleTouch::First => &c.first,
            SingleTouch::Last => &c.last,
        };
        let key = match touch {
            None => NO_TOUCHPOINT.to_string(),
            Some(t) if by_campaign => t.campaign_label().to_string(),
            Some(t) => t.channel.clone(),
        };
        let e = out.entry(key).or_default();
        e.0 += 1;
        e.1 += c.order.amount_minor.unwrap_or(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).single().expect("date")
    }

    fn ev(person: u32, at: DateTime<Utc>, channel: &str, event_type: &str) -> Event {
        Event {
            person,
            at,
            channel: channel.into(),
            event_type: event_type.into(),
            campaign: None,
            order_id: None,
            line_total_minor: None,
            order_total_minor: None,
        }
    }

    fn input(mut events: Vec<Event>) -> MeasuresInput {
        events.sort_by_key(|e| (e.person, e.at));
        MeasuresInput { profiles: events.iter().map(|e| e.person).collect(), events, duplicate_event_ids: 0 }
    }

    #[test]
    fn weeks_start_on_monday() {
        assert_eq!(week_start(at(23, 5)), NaiveDate::from_ymd_opt(2026, 11, 23).unwrap());
        assert_eq!(week_start(at(22, 23)), NaiveDate::from_ymd_opt(2026, 11, 16).unwrap());
    }

    #[test]
    fn first_and_last_touch_read_the_window_and_the_ties() {
        let run_at = at(23, 5);
        let mut click = ev(1, at(10, 9), "sms", "sms_click");
        click.campaign = Some("c".into());
        let mut line = ev(1, at(12, 9), "pos", "store_purchase");
        line.order_id = Some("M1-1".into());
        line.line_total_minor = Some(1000);
        let mut line2 = line.clone();
        line2.line_total_minor = Some(500);
        let events = vec![
            ev(1, at(1, 9) - Duration::days(30), "email", "email_click"), // before the window
            click,
            ev(1, at(12, 9), "app", "app_open"), // same second as the order: counts
            ev(1, at(12, 9), "web", "page_view"),
            ev(1, at(12, 10), "web", "page_view"), // after the order
            line,
            line2,
            ev(2, at(20, 9), "email", "email_sent"), // not a touchpoint
        ];
        let input = input(events);
        let credited = first_and_last_touch(&input, run_at, Duration::days(30));
        assert_eq!(credited.len(), 1);
        let c = &credited[0];
        assert_eq!((c.order.amount_minor, c.touches), (Some(1500), 3));
        assert_eq!(c.first.as_ref().map(|t| t.channel.as_str()), Some("sms"));
        assert_eq!(c.last.as_ref().map(|t| t.channel.as_str()), Some("web"), "same second: channels alphabetically");
        let by_campaign = single_touch_credit(&credited, SingleTouch::First, true);
        assert_eq!(by_campaign, BTreeMap::from([("c".to_string(), (1, 1500))]));
        let kpis = channel_kpis(&input, run_at);
        let pos = &kpis[&(NaiveDate::from_ymd_opt(2026, 11, 9).unwrap(), "pos".to_string())];
        assert_eq!((pos.orders, pos.revenue_minor, pos.new_customers, pos.people_reached), (1, 1500, 1, 1));
        let web = &kpis[&(NaiveDate::from_ymd_opt(2026, 11, 9).unwrap(), "web".to_string())];
        assert_eq!(web.sessions, 1, "two views of one day are one session");
    }
}
