//! The daily measures, run the function's way (`ariane_measures::run_measures` over a local
//! lake built from the generator's ground truth), against an independent plain-Rust
//! oracle (`ariane_local::measures_oracle`) and the generator's planted effects:
//!
//! * the `conversions` and `touchpoints` tables hold exactly the truth's orders and contacts;
//! * every `channel-kpis` count equals the truth's, and so do the `funnel` and
//!   `cross-channel` rows;
//! * first and last touch credit, per channel and per campaign, equal the truth's first and
//!   last touchpoints of each order; every model shares out exactly all orders and revenue;
//! * the planted SMS invitation (`ariane_datagen::STORE_INVITATION_CAMPAIGN`) is found: its
//!   clicks and the store orders that followed are in the tables, each planted order is
//!   credited to a touch of the campaign, and its clickers buy in store far more often than
//!   after any other SMS campaign, so that SMS stands out in store-driven conversions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use ariane_datagen::{write_planted_truth, Export, GenConfig, PlantedTruthRow, PURCHASE_DAYS, STORE_INVITATION_CAMPAIGN};
use ariane_local::fs_blobs::FsBlobs;
use ariane_local::measures_oracle::{self as oracle, MeasuresInput, SingleTouch};
use ariane_local::truth_lake::{build_truth_lake, person_index, person_of_profile};
use ariane_measures::attribution::{self, Attribution, Model};
use ariane_measures::report::Locale;
use ariane_measures::run::{measure_key, snapshot_run_id, Ports};
use ariane_measures::table::Table;
use ariane_measures::{run_measures, MeasureDefinition, MeasuresConfig};
use ariane_shared::adapters::memory::MemProfiles;
use ariane_shared::lake;
use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use datafusion::object_store::local::LocalFileSystem;

const BUCKET: &str = "lake";

/// A touchpoint as compared: (person, instant, channel, campaign, kind).
type TouchRow = (u32, DateTime<Utc>, String, Option<String>, String);
const PERSONS: usize = 2000;

/// A measure written by the run, read back.
fn read(dir: &std::path::Path, measure: &str, date: NaiveDate) -> Table {
    let path = dir.join(measure_key(measure, date));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Table { measure: measure.into(), batches: lake::read_parquet_bytes(Bytes::from(bytes)).expect("Parquet") }
}

fn person(profile_id: &str) -> u32 {
    person_of_profile(profile_id).unwrap_or_else(|| panic!("profile id {profile_id}"))
}

fn index(r: &PlantedTruthRow) -> u32 {
    person_index(&r.person_id).unwrap_or_else(|| panic!("person id {}", r.person_id))
}

fn instant(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc)
}

/// Differences of two sets, for a failure message (empty when equal).
fn diff<T: Ord + std::fmt::Debug>(what: &str, got: &BTreeSet<T>, want: &BTreeSet<T>) -> Option<String> {
    let only_got: Vec<&T> = got.difference(want).take(5).collect();
    let only_want: Vec<&T> = want.difference(got).take(5).collect();
    (!only_got.is_empty() || !only_want.is_empty()).then(|| {
        format!(
            "{what}: {} only measured (first: {only_got:?}), {} only in the truth (first: {only_want:?})",
            got.difference(want).count(),
            want.difference(got).count()
        )
    })
}

/// (model, key) → (conversions, revenue, revenue_minor) of an attribution table.
fn credit_rows(t: &Table, key: &str) -> BTreeMap<(String, String), (f64, f64, i64)> {
    let (model, keys, conv, rev, minor) = (
        t.strings("model").unwrap(),
        t.strings(key).unwrap(),
        t.floats("conversions").unwrap(),
        t.floats("revenue").unwrap(),
        t.ints("revenue_minor").unwrap(),
    );
    (0..t.rows())
        .map(|i| ((model[i].clone().unwrap(), keys[i].clone().unwrap()), (conv[i].unwrap(), rev[i].unwrap(), minor[i].unwrap())))
        .collect()
}

/// Store (pos) orders of clickers of each SMS campaign, within [`PURCHASE_DAYS`] days after
/// their first click of it: campaign → (clickers, clickers who bought). Only clicks whose
/// whole window is inside the period count.
fn store_purchases_after_clicks(
    touchpoints: &[attribution::Touchpoint],
    conversions: &[attribution::Conversion],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> BTreeMap<String, (usize, usize)> {
    let mut first_click: BTreeMap<(String, String), DateTime<Utc>> = BTreeMap::new();
    for t in touchpoints.iter().filter(|t| t.kind == "sms_click" && t.at > since && t.at + Duration::days(PURCHASE_DAYS) <= until) {
        let at = first_click.entry((t.campaign_label().to_string(), t.person.clone())).or_insert(t.at);
        *at = (*at).min(t.at);
    }
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for ((campaign, person), click) in first_click {
        let bought = conversions
            .iter()
            .any(|c| c.person == person && c.channel == "pos" && c.at > click && c.at <= click + Duration::days(PURCHASE_DAYS));
        let e = out.entry(campaign).or_default();
        e.0 += 1;
        e.1 += usize::from(bought);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measures_match_the_truth_and_find_the_planted_effects() {
    let started = Instant::now();
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).single().expect("date");
    // The daily schedule's time: every generated event is before it.
    let run_at = now + Duration::hours(5);
    let date = run_at.date_naive();
    let cfg = GenConfig::new(42, PERSONS, now);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let run_id = snapshot_run_id(date);
    let truth = build_truth_lake(&cfg, &Export::ALL, dir, &run_id, 1).expect("truth lake");
    assert_eq!(truth.ingest_disagreements(), 0, "ingest disagrees with the generator's truth");
    // The run reuses the snapshot of the truth (its marker says it is complete).
    let marker = ariane_segments::snapshot::SnapshotMarker { run_id: run_id.clone(), partitions: 1, profiles: truth.profiles };
    let marker_path = dir.join(ariane_segments::snapshot::marker_key(&run_id));
    std::fs::write(&marker_path, serde_json::to_vec(&marker).unwrap()).expect("marker");
    println!("truth lake: {} profiles, {} events, built in {:.1}s", truth.profiles, truth.events, started.elapsed().as_secs_f64());

    let scratch = tempfile::tempdir().expect("scratch");
    let config = MeasuresConfig {
        lake_bucket: BUCKET.into(),
        profiles_table: "profiles".into(),
        memory_limit_mb: 1024,
        lake_cache_mb: 64,
        scratch_dir: scratch.path().to_path_buf(),
        locale: Locale::En,
        retailer: "Truth".into(),
        attribution: attribution::Config::default(),
    };
    let ports = Ports {
        blobs: FsBlobs::bucket(BUCKET, dir),
        profiles: MemProfiles::new(),
        lake: Arc::new(LocalFileSystem::new_with_prefix(dir).expect("the lake directory")),
    };
    let library = MeasureDefinition::library().expect("the measure library");
    let summary = run_measures(&ports, &config, &library, run_at).await.expect("the measures run");
    println!(
        "run: {} conversions ({} without touchpoint), revenue {}, {} touchpoints, at {:.1}s",
        summary.conversions,
        summary.conversions_without_touchpoint,
        summary.revenue_minor,
        summary.touchpoints,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(summary.profiles, truth.profiles, "the run used the truth's snapshot");

    let input = MeasuresInput::load(&truth).expect("oracle input");
    assert_eq!(input.duplicate_event_ids, 0);
    let lookback = config.attribution.lookback;
    let mut failures = Vec::new();

    // Orders of the period and touchpoints: row for row.
    let want_conversions = oracle::conversions(&input, run_at);
    let measured_conversions = ariane_measures::run::conversions(&read(dir, "conversions", date)).expect("conversions");
    let got: BTreeSet<(u32, String, String, DateTime<Utc>, i64)> =
        measured_conversions.iter().map(|c| (person(&c.person), c.id.clone(), c.channel.clone(), c.at, c.revenue_minor)).collect();
    let want: BTreeSet<(u32, String, String, DateTime<Utc>, i64)> =
        want_conversions.iter().map(|o| (o.person, o.order_id.clone(), o.channel.clone(), o.at, o.amount_minor.unwrap_or(0))).collect();
    assert_eq!(got.len(), measured_conversions.len(), "one row per order");
    failures.extend(diff("conversions", &got, &want));
    let total_revenue: i64 = want_conversions.iter().map(|o| o.amount_minor.unwrap_or(0)).sum();
    assert!(want_conversions.len() > 200, "too few orders in the period: {}", want_conversions.len());
    if (summary.conversions, summary.revenue_minor) != (want_conversions.len(), total_revenue) {
        failures.push(format!(
            "summary: {} orders, revenue {}; the truth: {} orders, revenue {total_revenue}",
            summary.conversions,
            summary.revenue_minor,
            want_conversions.len()
        ));
    }

    let want_touches = oracle::touchpoints(&input, run_at);
    let measured_touches = ariane_measures::run::touchpoints(&read(dir, "touchpoints", date)).expect("touchpoints");
    let mut got: Vec<TouchRow> =
        measured_touches.iter().map(|t| (person(&t.person), t.at, t.channel.clone(), t.campaign.clone(), t.kind.clone())).collect();
    got.sort();
    let want: Vec<TouchRow> =
        want_touches.iter().map(|t| (t.person, t.at, t.channel.clone(), t.campaign.clone(), t.kind.clone())).collect();
    if got != want {
        let (g, w): (BTreeSet<_>, BTreeSet<_>) = (got.iter().cloned().collect(), want.iter().cloned().collect());
        failures.push(
            diff("touchpoints", &g, &w)
                .unwrap_or_else(|| format!("touchpoints: {} rows measured, {} in the truth (repeated rows)", got.len(), want.len())),
        );
    }
    let kinds: BTreeSet<&str> = want_touches.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["app_open", "email_click", "push_open", "session", "sms_click"]), "every kind of touchpoint occurs");

    // Channel KPIs: every count of every (week, channel).
    let kpis = read(dir, "channel-kpis", date);
    let want_kpis = oracle::channel_kpis(&input, run_at);
    let (weeks, channels) = (kpis.dates("week_start").unwrap(), kpis.strings("channel").unwrap());
    let basket = kpis.ints("average_basket_minor").unwrap();
    let rate = kpis.floats("conversion_rate").unwrap();
    let columns: Vec<(&str, Vec<Option<i64>>)> =
        oracle::Kpis::default().columns().iter().map(|(name, _)| (*name, kpis.ints(name).unwrap())).collect();
    let mut seen = BTreeSet::new();
    for i in 0..kpis.rows() {
        let key = (weeks[i].unwrap(), channels[i].clone().unwrap());
        seen.insert(key.clone());
        let Some(want) = want_kpis.get(&key) else {
            failures.push(format!("channel-kpis: row {key:?} is not in the truth"));
            continue;
        };
        for ((name, value), (_, column)) in want.columns().iter().zip(&columns) {
            if column[i] != Some(*value) {
                failures.push(format!("channel-kpis {key:?} {name}: measured {:?}, truth {value}", column[i]));
            }
        }
        let want_basket = (want.orders > 0).then(|| (want.revenue_minor as f64 / want.orders as f64).round() as i64);
        let want_rate = (want.people_reached > 0).then(|| want.orders as f64 / want.people_reached as f64);
        if basket[i] != want_basket
            || rate[i].zip(want_rate).is_some_and(|(a, b)| (a - b).abs() > 1e-12)
            || rate[i].is_some() != want_rate.is_some()
        {
            failures
                .push(format!("channel-kpis {key:?}: basket {:?} / rate {:?}, truth {want_basket:?} / {want_rate:?}", basket[i], rate[i]));
        }
    }
    for key in want_kpis.keys().filter(|k| !seen.contains(*k)) {
        failures.push(format!("channel-kpis: the truth's row {key:?} is missing"));
    }
    let sum = |name: &str| want_kpis.values().map(|k| k.columns().iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v)).sum::<i64>();
    println!(
        "channel-kpis: {} rows; truth totals: reached {} (person-weeks), deliveries {}, clicks {}, sessions {}, carts {}, orders {}, new customers {}",
        kpis.rows(),
        sum("people_reached"),
        sum("deliveries"),
        sum("clicks"),
        sum("sessions"),
        sum("carts"),
        sum("orders"),
        sum("new_customers")
    );

    // Funnel per channel of entry, and the cross-channel row.
    let funnel = read(dir, "funnel", date);
    let want_funnel = oracle::funnel(&input, run_at);
    let entry = funnel.strings("entry_channel").unwrap();
    let steps = ["people", "visitors", "carted", "checked_out", "ordered"].map(|c| funnel.ints(c).unwrap());
    let got: BTreeMap<String, [i64; 5]> =
        (0..funnel.rows()).map(|i| (entry[i].clone().unwrap(), steps.each_ref().map(|s| s[i].unwrap_or(-1)))).collect();
    let want: BTreeMap<String, [i64; 5]> =
        want_funnel.iter().map(|(c, f)| (c.clone(), [f.people, f.visitors, f.carted, f.checked_out, f.ordered])).collect();
    if got != want {
        failures.push(format!("funnel: measured {got:?}, truth {want:?}"));
    }
    let cross = read(dir, "cross-channel", date);
    let want_cross = oracle::cross_channel(&input, run_at);
    let one = |c: &str| cross.ints(c).unwrap().first().copied().flatten();
    let average = |value: i64, n: i64| (n > 0).then(|| (value as f64 / n as f64).round() as i64);
    let got = [
        "people_reached",
        "customers",
        "single_channel_customers",
        "multi_channel_customers",
        "single_channel_average_value_minor",
        "multi_channel_average_value_minor",
        "research_online_purchase_offline",
        "research_offline_purchase_online",
    ]
    .map(one);
    let w = &want_cross;
    let want = [
        Some(w.people_reached),
        Some(w.customers),
        Some(w.single_channel_customers),
        Some(w.multi_channel_customers),
        average(w.single_channel_value_minor, w.single_channel_customers),
        average(w.multi_channel_value_minor, w.multi_channel_customers),
        Some(w.research_online_purchase_offline),
        Some(w.research_offline_purchase_online),
    ];
    if cross.rows() != 1 || got != want {
        failures.push(format!("cross-channel ({} rows): measured {got:?}, truth {want:?}", cross.rows()));
    }
    println!("funnel (truth): {want_funnel:?}\ncross-channel (truth): {want_cross:?}");

    // First and last touch per channel and per campaign; every model adds up.
    let credited = oracle::first_and_last_touch(&input, run_at, lookback);
    for (measure, key, by_campaign) in [("attribution-by-channel", "channel", false), ("attribution-by-campaign", "campaign", true)] {
        let rows = credit_rows(&read(dir, measure, date), key);
        for (model, which) in [(Model::FirstTouch, SingleTouch::First), (Model::LastTouch, SingleTouch::Last)] {
            let want = oracle::single_touch_credit(&credited, which, by_campaign);
            let got: BTreeMap<String, (i64, i64)> = rows
                .iter()
                .filter(|((m, _), (c, ..))| m == model.as_str() && *c != 0.0)
                .map(|((_, k), (c, r, _))| (k.clone(), (c.round() as i64, r.round() as i64)))
                .collect();
            let exact = rows.iter().filter(|((m, _), _)| m == model.as_str()).all(|(_, (c, r, _))| c.fract() == 0.0 && r.fract() == 0.0);
            if got != want || !exact {
                let keys: BTreeSet<&String> = got.keys().chain(want.keys()).collect();
                let differing: Vec<String> = keys
                    .into_iter()
                    .filter(|k| got.get(*k) != want.get(*k))
                    .take(8)
                    .map(|k| format!("{k}: measured {:?}, truth {:?}", got.get(k), want.get(k)))
                    .collect();
                failures.push(format!("{measure} {model} (whole orders: {exact}): {differing:?}"));
            }
        }
        for model in Model::ALL {
            let of_model: Vec<&(f64, f64, i64)> = rows.iter().filter(|((m, _), _)| m == model.as_str()).map(|(_, v)| v).collect();
            let (conversions, revenue, minor) = of_model.iter().fold((0.0, 0.0, 0i64), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2));
            if (conversions - want_conversions.len() as f64).abs() > 1e-6
                || (revenue - total_revenue as f64).abs() > 1e-6 * total_revenue as f64
                || minor != total_revenue
            {
                failures.push(format!(
                    "{measure} {model}: conversions {conversions}, revenue {revenue} ({minor} whole cents); the period has {} orders, revenue {total_revenue}",
                    want_conversions.len()
                ));
            }
        }
    }

    // Order by order (the measures' attribution over its own tables): first and last touch
    // are the truth's.
    let attribution: Attribution =
        attribution::attribute(&measured_touches, &measured_conversions, &config.attribution).expect("attribution");
    let details: BTreeMap<(u32, String), &attribution::ConversionDetail> =
        attribution.details.iter().map(|d| ((person(&d.conversion.person), d.conversion.id.clone()), d)).collect();
    let mut order_diffs = Vec::new();
    for c in &credited {
        let Some(d) = details.get(&(c.order.person, c.order.order_id.clone())) else { continue };
        let view = |t: Option<&attribution::Touchpoint>| t.map(|t| (t.at, t.channel.clone(), t.campaign.clone(), t.kind.clone()));
        let truth = |t: &Option<oracle::Touch>| t.as_ref().map(|t| (t.at, t.channel.clone(), t.campaign.clone(), t.kind.clone()));
        if d.touchpoints.len() != c.touches
            || view(d.touchpoints.first()) != truth(&c.first)
            || view(d.touchpoints.last()) != truth(&c.last)
        {
            order_diffs.push(format!(
                "{} {}: {} touchpoints measured, {} in the truth",
                c.order.person,
                c.order.order_id,
                d.touchpoints.len(),
                c.touches
            ));
        }
    }
    if !order_diffs.is_empty() {
        failures.push(format!(
            "{} orders with other touchpoints than the truth's (first: {:?})",
            order_diffs.len(),
            &order_diffs[..order_diffs.len().min(5)]
        ));
    }

    // The planted invitation.
    let mut planted_bytes = Vec::new();
    write_planted_truth(&cfg, &mut planted_bytes).expect("planted truth");
    let planted: Vec<PlantedTruthRow> = ariane_datagen::read_planted_truth(planted_bytes.as_slice()).expect("planted truth");
    let clicks: Vec<&PlantedTruthRow> = planted.iter().filter(|r| !r.clicked_at_utc.is_empty()).collect();
    let orders: Vec<&PlantedTruthRow> = planted.iter().filter(|r| !r.order_id.is_empty()).collect();
    println!("planted: {} received the invitation, {} clicked, {} bought in store after", planted.len(), clicks.len(), orders.len());
    assert!(clicks.len() > 50 && orders.len() > 20, "the plant is too small to be measured");
    let measured_clicks: BTreeSet<(u32, DateTime<Utc>)> = measured_touches
        .iter()
        .filter(|t| t.kind == "sms_click" && t.campaign.as_deref() == Some(STORE_INVITATION_CAMPAIGN))
        .map(|t| (person(&t.person), t.at))
        .collect();
    let planted_clicks: BTreeSet<(u32, DateTime<Utc>)> =
        clicks.iter().filter(|r| input.profiles.contains(&index(r))).map(|r| (index(r), instant(&r.clicked_at_utc))).collect();
    failures.extend(diff("clicks of the invitation", &measured_clicks, &planted_clicks));
    let mut credited_to_click = 0;
    for r in &orders {
        let key = (index(r), r.order_id.clone());
        let Some(d) = details.get(&key) else {
            failures.push(format!("planted order {} of {} is not a conversion of the run", r.order_id, r.person_id));
            continue;
        };
        if d.conversion.at != instant(&r.ordered_at_utc)
            || Some(d.conversion.revenue_minor) != r.amount_minor
            || d.conversion.channel != "pos"
        {
            failures.push(format!("planted order {}: measured {:?}, planted {r:?}", r.order_id, d.conversion));
        }
        let click = instant(&r.clicked_at_utc);
        if !d.touchpoints.iter().any(|t| t.at == click && t.campaign.as_deref() == Some(STORE_INVITATION_CAMPAIGN)) {
            failures.push(format!("planted order {} is not credited to the click at {click}", r.order_id));
        }
        credited_to_click += usize::from(d.touchpoints.last().is_some_and(|t| t.campaign.as_deref() == Some(STORE_INVITATION_CAMPAIGN)));
    }
    let last_touch = oracle::single_touch_credit(&credited, SingleTouch::Last, true);
    let campaign_last = last_touch.get(STORE_INVITATION_CAMPAIGN).map_or(0, |v| v.0);
    println!(
        "planted orders whose last touch is the invitation: {credited_to_click} of {}; the campaign's last-touch conversions: {campaign_last}",
        orders.len()
    );
    assert!(credited_to_click * 10 >= orders.len() * 8, "most planted orders are last-touched by the invitation");
    assert!(campaign_last >= credited_to_click as i64);

    // The effect: clickers of the invitation buy in store far more often than clickers of
    // the other SMS campaigns (the planted rate is 60 % of the store shoppers among them).
    let since = run_at - Duration::days(oracle::PERIOD_DAYS);
    let rates = store_purchases_after_clicks(&measured_touches, &measured_conversions, since, run_at);
    println!("store purchases within {PURCHASE_DAYS} days of an SMS click, per campaign (clickers, buyers): {rates:?}");
    let (clickers, buyers) = rates[STORE_INVITATION_CAMPAIGN];
    let planted_rate = buyers as f64 / clickers as f64;
    let (other_clickers, other_buyers) =
        rates.iter().filter(|(c, _)| *c != STORE_INVITATION_CAMPAIGN).fold((0, 0), |a, (_, v)| (a.0 + v.0, a.1 + v.1));
    assert!(other_clickers > 30, "other SMS campaigns had {other_clickers} clickers in the period");
    let other_rate = other_buyers as f64 / other_clickers as f64;
    assert!(planted_rate > 0.25 && planted_rate > 5.0 * other_rate, "invitation {planted_rate:.3} vs other SMS campaigns {other_rate:.3}");

    // Store-driven conversions per channel (last touch of store orders, per person the
    // channel touched in the period): SMS stands out.
    let mut touched: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for t in measured_touches.iter().filter(|t| t.at > since) {
        touched.entry(t.channel.as_str()).or_default().insert(t.person.as_str());
    }
    let mut store_driven: BTreeMap<&str, usize> = BTreeMap::new();
    for d in attribution.details.iter().filter(|d| d.conversion.channel == "pos") {
        if let Some(t) = d.touchpoints.last() {
            *store_driven.entry(t.channel.as_str()).or_default() += 1;
        }
    }
    let per_person: BTreeMap<&str, f64> =
        touched.iter().map(|(c, people)| (*c, store_driven.get(c).copied().unwrap_or(0) as f64 / people.len() as f64)).collect();
    println!("store orders last-touched per person touched: {per_person:?} (orders {store_driven:?})");
    for (channel, rate) in per_person.iter().filter(|(c, _)| **c != "sms") {
        assert!(per_person["sms"] > 2.0 * rate, "sms {:.3} vs {channel} {rate:.3}", per_person["sms"]);
    }

    println!("total {:.1}s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "the measures disagree with the truth:\n{}", failures.join("\n"));
}
