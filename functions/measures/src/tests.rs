//! The measures run over the in-memory adapters: a small hand-made lake (events, identity
//! links, profiles) in [`MemBlobs`], which DataFusion reads through its `object_store`
//! mirror. Every expected figure below is counted by hand from the lake in [`world`].

use std::collections::BTreeMap;
use std::sync::Arc;

use ariane_shared::adapters::memory::{MemBlobs, MemProfiles};
use ariane_shared::lake::{self, IdentityLink};
use ariane_shared::model::CanonicalEvent;
use ariane_shared::ports::BlobStore;
use ariane_shared::profile::{ProfileDoc, ProfileItem};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};

use crate::attribution::{Model, NO_TOUCHPOINT};
use crate::config::MeasuresConfig;
use crate::definition::MeasureDefinition;
use crate::handler::MeasuresWith;
use crate::period::Headline;
use crate::report::{FunnelCounts, KpiValue, Locale};
use crate::run::{measure_key, Ports};
use crate::table::Table;

const BUCKET: &str = "lake";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A Monday: the period is 2026-10-26T05:00 (excluded) to 2026-11-23T05:00.
fn run_at() -> DateTime<Utc> {
    at("2026-11-23T05:00:00Z")
}

fn config() -> MeasuresConfig {
    MeasuresConfig {
        lake_bucket: BUCKET.into(),
        profiles_table: "profiles".into(),
        memory_limit_mb: 256,
        lake_cache_mb: 64,
        scratch_dir: std::env::temp_dir(),
        locale: Locale::En,
        retailer: "Test retailer".into(),
        attribution: crate::attribution::Config::default(),
    }
}

/// One event of `person` (identity key `key_<person>`).
struct Ev {
    person: &'static str,
    channel: &'static str,
    event_type: &'static str,
    at: &'static str,
    order: Option<(&'static str, i64)>,
    campaign: Option<&'static str>,
}

fn ev(person: &'static str, channel: &'static str, event_type: &'static str, at: &'static str) -> Ev {
    Ev { person, channel, event_type, at, order: None, campaign: None }
}

impl Ev {
    fn order(mut self, id: &'static str, amount: i64) -> Ev {
        self.order = Some((id, amount));
        self
    }
    fn campaign(mut self, c: &'static str) -> Ev {
        self.campaign = Some(c);
        self
    }
}

/// The lake of the test:
///
/// - p_a: e-mail of campaign c1 sent, opened, clicked; a web visit from it, a cart, a
///   checkout and a web-shop order o_a1 of two lines (3000 + 2000), all on 2026-11-16;
/// - p_b: an SMS of campaign c2 sent, delivered, clicked (11-17), a web visit (11-18), a
///   store purchase o_b1 of 8000 (11-20), a STOP (11-21); an older store purchase o_b0
///   (2026-09-01, before the period);
/// - p_c: a store visit (11-18), an e-mail sent (11-19), a web-shop order o_c1 of 4000 the
///   same evening, then an unsubscribe;
/// - p_d: app open and push open, then an in-app purchase o_d1 of 1500 (2026-11-10);
/// - p_e: an e-mail sent on 2026-10-01 and a web-shop order o_e0 of 2000 on 2026-10-02
///   (both in the previous period), one sent and clicked on 11-16 (campaign c1); no order
///   in the period;
/// - p_f: an e-mail (10-05) and a store purchase o_f1 of 3000 (10-10), in the previous
///   period only.
///
/// The previous period, 2026-09-28T05:00 (excluded) to 2026-10-26T05:00: orders o_e0 and
/// o_f1 (5000), people reached p_e and p_f, both customers, both in two channels (e-mail
/// and web / store), no store purchase after an online visit.
fn events() -> Vec<Ev> {
    vec![
        ev("p_a", "email", "email_sent", "2026-11-16T09:00:00Z").campaign("c1"),
        ev("p_a", "email", "email_open", "2026-11-16T10:00:00Z").campaign("c1"),
        ev("p_a", "email", "email_click", "2026-11-16T10:05:00Z").campaign("c1"),
        ev("p_a", "web", "page_view", "2026-11-16T10:06:00Z").campaign("c1"),
        ev("p_a", "web", "add_to_cart", "2026-11-16T10:10:00Z"),
        ev("p_a", "ecommerce", "checkout_started", "2026-11-16T10:15:00Z"),
        ev("p_a", "ecommerce", "order_line", "2026-11-16T10:20:00Z").order("o_a1", 3000),
        ev("p_a", "ecommerce", "order_line", "2026-11-16T10:20:00Z").order("o_a1", 2000),
        ev("p_b", "pos", "store_purchase", "2026-09-01T15:00:00Z").order("o_b0", 2500),
        ev("p_b", "sms", "sms_sent", "2026-11-17T09:00:00Z").campaign("c2"),
        ev("p_b", "sms", "sms_delivered", "2026-11-17T09:01:00Z").campaign("c2"),
        ev("p_b", "sms", "sms_click", "2026-11-17T09:30:00Z").campaign("c2"),
        ev("p_b", "web", "page_view", "2026-11-18T12:00:00Z"),
        ev("p_b", "pos", "store_purchase", "2026-11-20T15:00:00Z").order("o_b1", 8000),
        ev("p_b", "sms", "sms_stop", "2026-11-21T08:00:00Z"),
        ev("p_c", "pos", "store_visit", "2026-11-18T11:00:00Z"),
        ev("p_c", "email", "email_sent", "2026-11-19T08:00:00Z"),
        ev("p_c", "ecommerce", "order_line", "2026-11-19T20:00:00Z").order("o_c1", 4000),
        ev("p_c", "email", "email_unsubscribe", "2026-11-19T21:00:00Z"),
        ev("p_d", "app", "app_open", "2026-11-10T08:00:00Z"),
        ev("p_d", "app", "push_open", "2026-11-10T08:05:00Z"),
        ev("p_d", "app", "in_app_purchase", "2026-11-10T08:30:00Z").order("o_d1", 1500),
        ev("p_e", "email", "email_sent", "2026-10-01T09:00:00Z").campaign("c0"),
        ev("p_e", "ecommerce", "order_line", "2026-10-02T18:00:00Z").order("o_e0", 2000),
        ev("p_f", "email", "email_sent", "2026-10-05T09:00:00Z").campaign("c0"),
        ev("p_f", "pos", "store_purchase", "2026-10-10T15:00:00Z").order("o_f1", 3000),
        ev("p_e", "email", "email_sent", "2026-11-16T09:00:00Z").campaign("c1"),
        ev("p_e", "email", "email_click", "2026-11-16T11:00:00Z").campaign("c1"),
    ]
}

async fn put_parquet(blobs: &MemBlobs, key: &str, schema: arrow::datatypes::SchemaRef, batch: arrow::array::RecordBatch) {
    let bytes = lake::parquet_bytes(schema, &[batch]).unwrap();
    blobs.put(BUCKET, key, Bytes::from(bytes), "application/vnd.apache.parquet").await.unwrap();
}

/// One row of a spend file as ingest writes it (`channels/costs/spend.toml`): no person.
struct SpendRow {
    id: &'static str,
    file: &'static str,
    line: u64,
    day: &'static str,
    channel: &'static str,
    campaign: Option<&'static str>,
    amount: i64,
}

/// The spend files: e-mail 10.00 € on its own and 30.00 € on c1, SMS 20.00 € on c2, web
/// 50.00 € corrected to 40.00 € by a later file (the same row: same id), and two days out
/// of the period (the day before it, the run's own day). Spend of the period: e-mail 40 €
/// (c1 30 €), SMS 20 € (c2), web 40 €.
fn spend_rows() -> Vec<SpendRow> {
    let row = |id, file, line, day, channel, campaign, amount| SpendRow { id, file, line, day, channel, campaign, amount };
    vec![
        row("s_email_c1", "costs/2026-11-20/spend.csv", 2, "2026-11-16", "email", Some("c1"), 3_000),
        row("s_email", "costs/2026-11-20/spend.csv", 3, "2026-11-16", "email", None, 1_000),
        row("s_sms_c2", "costs/2026-11-20/spend.csv", 4, "2026-11-17", "sms", Some("c2"), 2_000),
        row("s_web", "costs/2026-11-20/spend.csv", 5, "2026-11-18", "web", None, 5_000),
        row("s_web_before", "costs/2026-11-20/spend.csv", 6, "2026-10-25", "web", None, 9_999),
        row("s_web_today", "costs/2026-11-20/spend.csv", 7, "2026-11-23", "web", None, 7_777),
        row("s_web", "costs/2026-11-21/spend.csv", 2, "2026-11-18", "web", None, 4_000),
    ]
}

/// The lake of [`events`] and [`spend_rows`], the people's profiles and identity links.
async fn world() -> (Arc<MemBlobs>, Arc<MemProfiles>) {
    let (blobs, profiles) = (Arc::new(MemBlobs::new()), Arc::new(MemProfiles::new()));
    let mut files: BTreeMap<(String, String), Vec<CanonicalEvent>> = BTreeMap::new();
    for (n, e) in events().into_iter().enumerate() {
        let (order_id, amount) = e.order.map(|(id, a)| (Some(id.to_string()), Some(a))).unwrap_or((None, None));
        let line = e.event_type != "in_app_purchase";
        let event = CanonicalEvent {
            event_id: format!("e{n}"),
            channel: e.channel.into(),
            event_type: e.event_type.into(),
            occurred_at: at(e.at),
            anchor_id: Some(format!("key_{}", e.person)),
            email_hash: None,
            phone_hash: None,
            order_id,
            sku: amount.map(|_| "SKU-1".to_string()),
            product_name: None,
            category: None,
            quantity: amount.map(|_| 1),
            unit_price_minor: amount.filter(|_| line),
            line_total_minor: amount.filter(|_| line),
            order_total_minor: amount,
            currency: amount.map(|_| "EUR".to_string()),
            store_id: None,
            campaign_id: e.campaign.map(str::to_string),
            page_url: None,
            consent_channel: None,
            source_key: format!("{}/export.csv", e.channel),
            source_line: n as u64,
            local_time: None,
        };
        files.entry((e.channel.to_string(), event.event_date())).or_default().push(event);
    }
    for s in spend_rows() {
        let event = CanonicalEvent {
            event_id: s.id.into(),
            channel: "costs".into(),
            event_type: "spend".into(),
            occurred_at: at(&format!("{}T00:00:00Z", s.day)),
            anchor_id: None,
            email_hash: None,
            phone_hash: None,
            order_id: None,
            sku: None,
            product_name: None,
            category: Some(s.channel.into()),
            quantity: None,
            unit_price_minor: None,
            line_total_minor: Some(s.amount),
            order_total_minor: None,
            currency: Some("EUR".into()),
            store_id: None,
            campaign_id: s.campaign.map(str::to_string),
            page_url: None,
            consent_channel: None,
            source_key: s.file.into(),
            source_line: s.line,
            local_time: None,
        };
        // One lake file per spend file and day, as ingest writes them.
        files.entry(("costs".to_string(), format!("{}|{}", event.event_date(), s.file))).or_default().push(event);
    }
    for ((channel, date), events) in &files {
        let (date, file) = date.split_once('|').unwrap_or((date, ""));
        let fingerprint = format!("{channel}-{date}{}", file.replace('/', "-"));
        let key = lake::events_key(channel, date, &fingerprint);
        put_parquet(&blobs, &key, lake::events_schema(), lake::events_batch(events).unwrap()).await;
    }
    for person in ["p_a", "p_b", "p_c", "p_d", "p_e", "p_f"] {
        profiles.put(ProfileItem {
            profile_id: person.into(),
            component: format!("c_{person}"),
            doc: ProfileDoc::default(),
            merged_from: vec![],
        });
        let link = IdentityLink {
            identifier_hash: format!("key_{person}"),
            profile_id: person.into(),
            resolved_at: at("2026-01-01T00:00:00Z"),
            observation_id: format!("obs_{person}"),
        };
        let key = lake::links_key("2026-01-01", &format!("links-{person}"));
        put_parquet(&blobs, &key, lake::links_schema(), lake::links_batch(&[link]).unwrap()).await;
    }
    (blobs, profiles)
}

fn handler(blobs: &Arc<MemBlobs>, profiles: &Arc<MemProfiles>) -> MeasuresWith<Arc<MemBlobs>, Arc<MemProfiles>> {
    let ports = Ports::reading_blobs(blobs.clone(), profiles.clone(), BUCKET).unwrap();
    MeasuresWith::new(ports, config(), MeasureDefinition::library().unwrap())
}

fn scheduled(time: DateTime<Utc>) -> EventBridgeEvent<serde_json::Value> {
    let mut event = EventBridgeEvent::default();
    event.detail_type = "Scheduled Event".into();
    event.source = "aws.events".into();
    event.time = Some(time);
    event.detail = serde_json::json!({});
    event
}

/// A written measure, read back from the lake.
async fn read(blobs: &MemBlobs, measure: &str) -> Table {
    let bytes =
        blobs.get(BUCKET, &measure_key(measure, run_at().date_naive())).await.unwrap().unwrap_or_else(|| panic!("{measure} written"));
    Table { measure: measure.into(), batches: lake::read_parquet_bytes(bytes).unwrap() }
}

type KpiRow = (String, String, Vec<i64>);

/// `channel-kpis` as (week, channel, [people_reached, deliveries, sms_delivered, opens,
/// clicks, sessions, carts, checkouts, orders, revenue_minor, average_basket_minor,
/// new_customers, returning_customers, unsubscribes, stops]) (an empty basket as -1).
fn kpi_rows(t: &Table) -> Vec<KpiRow> {
    let columns = [
        "people_reached",
        "deliveries",
        "sms_delivered",
        "opens",
        "clicks",
        "sessions",
        "carts",
        "checkouts",
        "orders",
        "revenue_minor",
        "average_basket_minor",
        "new_customers",
        "returning_customers",
        "unsubscribes",
        "stops",
    ];
    let values: Vec<Vec<Option<i64>>> = columns.iter().map(|c| t.ints(c).unwrap()).collect();
    let (weeks, channels) = (t.dates("week_start").unwrap(), t.strings("channel").unwrap());
    (0..t.rows())
        .map(|i| (weeks[i].unwrap().to_string(), channels[i].clone().unwrap(), values.iter().map(|v| v[i].unwrap_or(-1)).collect()))
        .collect()
}

#[tokio::test]
async fn a_daily_run_writes_exact_measures_attribution_and_the_report() {
    let (blobs, profiles) = world().await;
    let h = handler(&blobs, &profiles);
    let summary = h.handle(scheduled(run_at())).await.unwrap();

    // Orders of the period: o_a1, o_b1, o_c1, o_d1 (o_b0 is older); each model shares
    // out exactly these.
    assert_eq!((summary.profiles, summary.conversions, summary.revenue_minor, summary.spend_minor), (6, 4, 18_500, 10_000));
    assert_eq!(summary.conversions_without_touchpoint, 1, "o_c1 had no click, open or session before it");
    assert_eq!(summary.touchpoints, 7);
    let rows: Vec<(&str, usize)> = summary.measures.iter().map(|m| (m.measure.as_str(), m.rows)).collect();
    assert_eq!(
        rows,
        [
            ("channel-kpis", 6),
            ("conversions", 4),
            ("cross-channel", 1),
            ("funnel", 4),
            ("spend", 4),
            ("touchpoints", 7),
            ("attribution-by-channel", 5 * 6),  // email, sms, web, app, (none)
            ("attribution-by-campaign", 4 * 6), // c1, c2, (no campaign), (none)
            ("top-paths", 5),
            ("spend-return", 5 * 6), // email, email/c1, sms, sms/c2, web
        ]
    );

    // The previous period, measured as of 2026-10-26T05:00 (see `events`).
    let previous = summary.previous.clone().expect("the previous period is measured");
    assert_eq!(
        previous,
        Headline {
            orders: 2,
            revenue_minor: 5_000,
            people_reached: 2,
            customers: 2,
            multi_channel_share: Some(1.0),
            research_online_purchase_offline: Some(0),
        }
    );

    // Spend of the period: the corrected web row counts once (40 €, not 50 € or 90 €), the
    // days outside the period not at all.
    let s = read(&blobs, "spend").await;
    let spend: Vec<(String, Option<String>, Option<i64>)> = {
        let (c, k, v) = (s.strings("channel").unwrap(), s.strings("campaign").unwrap(), s.ints("spend_minor").unwrap());
        (0..s.rows()).map(|i| (c[i].clone().unwrap(), k[i].clone(), v[i])).collect()
    };
    let line = |c: &str, k: Option<&str>, v: i64| (c.to_string(), k.map(str::to_string), Some(v));
    assert_eq!(
        spend,
        [line("email", None, 1_000), line("email", Some("c1"), 3_000), line("sms", Some("c2"), 2_000), line("web", None, 4_000)]
    );

    // Return on ad spend and cost per acquisition, read back from the lake. By hand
    // (attribution below): first touch credits e-mail with o_a1 (50 €), SMS with o_b1
    // (80 €), web with nothing; last touch credits web with o_a1 and o_b1 (130 €); linear
    // halves o_a1 between e-mail and web and o_b1 between SMS and web (web: 1 order, 65 €).
    let r = read(&blobs, "spend-return").await;
    let (models, channels, campaigns) = (r.strings("model").unwrap(), r.strings("channel").unwrap(), r.strings("campaign").unwrap());
    let (spent, roas, cpa) = (r.ints("spend_minor").unwrap(), r.floats("roas").unwrap(), r.ints("cost_per_acquisition_minor").unwrap());
    let figures = |model: Model, channel: &str, campaign: Option<&str>| {
        let i = (0..r.rows())
            .find(|&i| {
                models[i].as_deref() == Some(model.as_str())
                    && channels[i].as_deref() == Some(channel)
                    && campaigns[i].as_deref() == campaign
            })
            .unwrap_or_else(|| panic!("{model:?} {channel} {campaign:?}"));
        (spent[i], roas[i], cpa[i])
    };
    let (first, last, linear) = (Model::FirstTouch, Model::LastTouch, Model::Linear);
    // E-mail, 40 € in all: 50 € back under first touch, 0 under last touch, 25 € linear.
    assert_eq!(figures(first, "email", None), (Some(4_000), Some(1.25), Some(4_000)));
    assert_eq!(figures(last, "email", None), (Some(4_000), Some(0.0), None));
    assert_eq!(figures(linear, "email", None), (Some(4_000), Some(0.625), Some(8_000)));
    // Campaign c1, 30 €: every touchpoint of o_a1 carries c1, so it gets o_a1 whole.
    assert_eq!(figures(first, "email", Some("c1")), (Some(3_000), Some(5_000.0 / 3_000.0), Some(3_000)));
    assert_eq!(figures(linear, "email", Some("c1")), (Some(3_000), Some(5_000.0 / 3_000.0), Some(3_000)));
    // SMS (all of it c2), 20 €: 80 € first touch, 40 € linear (half an order: CPA 40 €).
    assert_eq!(figures(first, "sms", None), (Some(2_000), Some(4.0), Some(2_000)));
    assert_eq!(figures(linear, "sms", Some("c2")), (Some(2_000), Some(2.0), Some(4_000)));
    // Web, 40 €: nothing first touch, 130 € last touch (2 orders), 65 € linear (1 order).
    assert_eq!(figures(first, "web", None), (Some(4_000), Some(0.0), None));
    assert_eq!(figures(last, "web", None), (Some(4_000), Some(3.25), Some(2_000)));
    assert_eq!(figures(linear, "web", None), (Some(4_000), Some(1.625), Some(4_000)));

    // Channel KPIs, read back from the lake.
    let kpis = kpi_rows(&read(&blobs, "channel-kpis").await);
    let row = |week: &str, channel: &str, v: [i64; 15]| (week.to_string(), channel.to_string(), v.to_vec());
    assert_eq!(
        kpis,
        [
            //                        reach deliv sms_d opens click sess carts chk ord  revenue basket new ret unsub stop
            row("2026-11-09", "app", [1, 0, 0, 1, 0, 1, 0, 0, 1, 1500, 1500, 1, 0, 0, 0]),
            row("2026-11-16", "ecommerce", [2, 0, 0, 0, 0, 0, 0, 1, 2, 9000, 4500, 2, 0, 0, 0]),
            row("2026-11-16", "email", [3, 3, 0, 1, 2, 0, 0, 0, 0, 0, -1, 0, 0, 1, 0]),
            row("2026-11-16", "pos", [2, 0, 0, 0, 0, 0, 0, 0, 1, 8000, 8000, 0, 1, 0, 0]),
            row("2026-11-16", "sms", [1, 1, 1, 0, 1, 0, 0, 0, 0, 0, -1, 0, 0, 0, 1]),
            row("2026-11-16", "web", [2, 0, 0, 0, 0, 2, 1, 0, 0, 0, -1, 0, 0, 0, 0]),
        ]
    );
    let kpi_table = read(&blobs, "channel-kpis").await;
    let rates: Vec<Option<f64>> = kpi_table.floats("conversion_rate").unwrap();
    assert_eq!(rates, [Some(1.0), Some(1.0), Some(0.0), Some(0.5), Some(0.0), Some(0.0)]);

    // The funnel per channel of entry: (channel, people, visitors, carted, checked out,
    // ordered); a buyer counts at every step (p_b, p_c, p_d have no online cart); p_e never
    // visited.
    let f = read(&blobs, "funnel").await;
    let funnel: Vec<(String, Vec<u64>)> = {
        let names = f.strings("entry_channel").unwrap();
        let cols: Vec<Vec<u64>> = ["people", "visitors", "carted", "checked_out", "ordered"].iter().map(|c| f.counts(c).unwrap()).collect();
        (0..f.rows()).map(|i| (names[i].clone().unwrap(), cols.iter().map(|c| c[i]).collect())).collect()
    };
    let step = |c: &str, v: [u64; 5]| (c.to_string(), v.to_vec());
    assert_eq!(
        funnel,
        [step("app", [1, 1, 1, 1, 1]), step("email", [2, 1, 1, 1, 1]), step("pos", [1, 1, 1, 1, 1]), step("sms", [1, 1, 1, 1, 1])]
    );

    // Cross-channel: p_d alone is a one-channel customer (app); p_b researched online
    // then bought in store, p_c the reverse.
    let x = read(&blobs, "cross-channel").await;
    let int = |c: &str| x.ints(c).unwrap()[0];
    assert_eq!(
        [
            int("people_reached"),
            int("customers"),
            int("single_channel_customers"),
            int("multi_channel_customers"),
            int("single_channel_average_value_minor"),
            int("multi_channel_average_value_minor"),
            int("research_online_purchase_offline"),
            int("research_offline_purchase_online"),
        ],
        [Some(5), Some(4), Some(1), Some(3), Some(1500), Some(5667), Some(1), Some(1)]
    );
    assert_eq!(x.floats("multi_channel_share").unwrap(), [Some(0.75)]);

    // Attribution in long form: every model credits exactly the 4 orders; first and last
    // touch as counted by hand.
    let a = read(&blobs, "attribution-by-channel").await;
    let (models, channels, conversions) = (a.strings("model").unwrap(), a.strings("channel").unwrap(), a.floats("conversions").unwrap());
    let mut credited: BTreeMap<(String, String), f64> = BTreeMap::new();
    for i in 0..a.rows() {
        credited.insert((models[i].clone().unwrap(), channels[i].clone().unwrap()), conversions[i].unwrap());
    }
    for m in Model::ALL {
        let total: f64 = credited.iter().filter(|((model, _), _)| model == m.as_str()).map(|(_, c)| c).sum();
        assert!((total - 4.0).abs() < 1e-9, "{}: {total}", m.as_str());
    }
    let of = |model: &str, channel: &str| credited.get(&(model.to_string(), channel.to_string())).copied().unwrap_or(0.0);
    assert_eq!(
        [
            of("first_touch", "email"),
            of("first_touch", "sms"),
            of("first_touch", "app"),
            of("first_touch", "web"),
            of("first_touch", NO_TOUCHPOINT)
        ],
        [1.0, 1.0, 1.0, 0.0, 1.0]
    );
    assert_eq!([of("last_touch", "web"), of("last_touch", "app"), of("last_touch", NO_TOUCHPOINT)], [2.0, 1.0, 1.0]);

    // The report, under its key.
    assert_eq!(summary.report_key, "reports/html/2026-11-23/index.html");
    let html = String::from_utf8(blobs.get(BUCKET, &summary.report_key).await.unwrap().unwrap().to_vec()).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") || html.starts_with("<!doctype html>"), "{}", &html[..40]);
    assert!(html.contains("Test retailer") && html.contains("data-chart=\"funnel\""), "the report has its data");
    assert_eq!(blobs.content_type(BUCKET, &summary.report_key).as_deref(), Some("text/html; charset=utf-8"));

    // Re-running the day overwrites the same keys with the same content.
    let keys = blobs.keys(BUCKET);
    let again = h.handle(scheduled(run_at())).await.unwrap();
    assert_eq!(again, summary);
    assert_eq!(blobs.keys(BUCKET), keys, "no new object");
    let html_again = blobs.get(BUCKET, &summary.report_key).await.unwrap().unwrap();
    assert_eq!(html_again.as_ref(), html.as_bytes());
}

#[tokio::test]
async fn the_report_data_is_counted_by_hand_and_a_bad_detail_is_refused() {
    let (blobs, profiles) = world().await;
    let h = handler(&blobs, &profiles);
    let ports = &h.ports;
    let summary = crate::run::run_measures(ports, &h.config, &h.definitions, run_at() + Duration::hours(1)).await.unwrap();
    assert_eq!(summary.run_date, run_at().date_naive());

    // The report's data from the tables the run wrote (attribution recomputed from them).
    let mut tables = BTreeMap::new();
    for m in ["channel-kpis", "funnel", "cross-channel", "touchpoints", "conversions", "spend"] {
        tables.insert(m.to_string(), read(&blobs, m).await);
    }
    let touchpoints = crate::run::touchpoints(&tables["touchpoints"]).unwrap();
    let conversions = crate::run::conversions(&tables["conversions"]).unwrap();
    let attribution = crate::attribution::attribute(&touchpoints, &conversions, &h.config.attribution).unwrap();
    let spend_return = crate::spend::returns(&crate::spend::spend(&tables["spend"]).unwrap(), &attribution);
    let results = crate::run::Results {
        run_at: run_at(),
        tables,
        attribution,
        touchpoints: touchpoints.len(),
        spend_return,
        previous: summary.previous.clone(),
    };
    let data = crate::daily::report_data(&results, &h.config, vec![]).unwrap();
    let kpis: Vec<(String, KpiValue, Option<f64>)> = data.kpis.iter().map(|k| (k.label.clone(), k.value, k.change)).collect();
    let kpi = |l: &str, v: KpiValue, change: Option<f64>| (l.to_string(), v, change);
    // Changes against the previous period (2 orders, 50.00 €, basket 25.00 €, 2 people
    // reached, both customers, both multi-channel, no store purchase after a visit).
    assert_eq!(
        kpis,
        [
            kpi("Orders", KpiValue::Count(4), Some(1.0)),
            kpi("Revenue", KpiValue::Money(18_500), Some(2.7)),
            kpi("Average basket", KpiValue::Money(4_625), Some(0.85)),
            kpi("People reached", KpiValue::Count(5), Some(1.5)),
            kpi("Conversion rate (customers ÷ people reached)", KpiValue::Percent(0.8), Some((0.8 - 1.0) / 1.0)),
            kpi("Multi-channel customers", KpiValue::Percent(0.75), Some(-0.25)),
            kpi("Store purchases after an online visit (7 days)", KpiValue::Count(1), None),
        ]
    );
    // Without a previous period, no change at all.
    let alone = crate::run::Results { previous: None, ..results.clone() };
    assert!(crate::daily::report_data(&alone, &h.config, vec![]).unwrap().kpis.iter().all(|k| k.change.is_none()));

    // Spend and return per channel in the report: the channel totals, six models each.
    let spend: Vec<(&str, i64, usize)> = data.spend_return.iter().map(|s| (s.channel.as_str(), s.spend_minor, s.by_model.len())).collect();
    assert_eq!(spend, [("email", 4_000, 6), ("sms", 2_000, 6), ("web", 4_000, 6)]);
    let web_last = data.spend_return[2].by_model.iter().find(|m| m.model == Model::LastTouch).unwrap();
    assert_eq!((web_last.revenue_minor, web_last.roas, web_last.cost_per_acquisition_minor), (13_000, Some(3.25), Some(2_000)));
    let trend: Vec<(String, &str, u64, u64, i64)> = data
        .weekly_trend
        .iter()
        .map(|p| (p.week_start.to_string(), p.channel.as_str(), p.people_reached, p.orders, p.revenue_minor))
        .collect();
    let point = |w: &str, c: &'static str, reached: u64, orders: u64, revenue: i64| (w.to_string(), c, reached, orders, revenue);
    assert_eq!(
        trend,
        [
            point("2026-11-09", "app", 1, 1, 1_500),
            point("2026-11-16", NO_TOUCHPOINT, 0, 1, 4_000),
            point("2026-11-16", "ecommerce", 2, 0, 0),
            point("2026-11-16", "email", 3, 0, 0),
            point("2026-11-16", "pos", 2, 0, 0),
            point("2026-11-16", "sms", 1, 0, 0),
            point("2026-11-16", "web", 2, 2, 13_000),
        ],
        "people reached per channel, orders by last touch"
    );
    assert_eq!(data.funnel.overall, Some(FunnelCounts { visit: 4, cart: 4, checkout: 4, order: 4 }));
    assert_eq!(data.attribution.len(), 5 * 6);
    assert_eq!((data.period.from.to_string(), data.period.to.to_string()), ("2026-10-26".to_string(), "2026-11-23".to_string()));

    // A refused detail runs nothing.
    let mut bad = scheduled(run_at());
    bad.detail = serde_json::json!({"run_date": "2026-11-23"});
    let e = h.handle(bad).await.unwrap_err();
    assert!(e.to_string().contains("run_date"), "{e}");
}

/// The AWS-wired handler is what the local tools host in a multi-threaded runtime and
/// turn into `anyhow` errors: its future must be `Send` and its error `Send + Sync`.
#[test]
fn the_aws_handler_future_is_send_and_its_error_sync() {
    fn is_send<F: Send>(_: &F) {}
    fn is_error<E: std::error::Error + Send + Sync + 'static>() {}
    fn handle(m: &crate::Measures, event: EventBridgeEvent<serde_json::Value>) {
        let future = m.handle(event);
        is_send(&future);
    }
    let _ = handle as fn(&crate::Measures, EventBridgeEvent<serde_json::Value>);
    is_error::<crate::MeasuresError>();
}
