//! Tests of the attribution engine: hand-computed examples, window edges, bad settings and
//! a property test over random data.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

use super::*;

const TOLERANCE: f64 = 1e-9;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn day(d: i64) -> DateTime<Utc> {
    t0() + Duration::days(d)
}

fn tp(person: &str, at: DateTime<Utc>, channel: &str, campaign: Option<&str>) -> Touchpoint {
    Touchpoint {
        person: person.to_string(),
        at,
        channel: channel.to_string(),
        campaign: campaign.map(str::to_string),
        kind: "click".to_string(),
        source: None,
    }
}

fn order(person: &str, at: DateTime<Utc>, id: &str, revenue_minor: i64) -> Conversion {
    Conversion { person: person.to_string(), at, id: id.to_string(), channel: "ecommerce".to_string(), revenue_minor }
}

fn row<'a>(rows: &'a [CreditRow], key: &str) -> &'a CreditRow {
    rows.iter().find(|r| r.key == key).unwrap_or_else(|| panic!("no row {key}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < TOLERANCE
}

fn assert_weights(actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
    for (a, e) in actual.iter().zip(expected) {
        assert!(close(*a, *e), "{actual:?} vs {expected:?}");
    }
}

/// Every model shares out exactly all orders and all revenue, in both tables.
fn assert_sums(result: &Attribution) {
    let total_revenue: i64 = result.details.iter().map(|d| d.conversion.revenue_minor).sum();
    assert_eq!(result.revenue_minor, total_revenue);
    for rows in [&result.by_channel, &result.by_campaign] {
        for model in Model::ALL {
            let conversions: f64 = rows.iter().map(|r| *r.conversions.get(model)).sum();
            assert!((conversions - result.conversions as f64).abs() < 1e-6, "{model}: {conversions} vs {}", result.conversions);
            let revenue: f64 = rows.iter().map(|r| *r.revenue.get(model)).sum();
            let scale = rows.iter().map(|r| r.revenue.get(model).abs()).sum::<f64>().max(1.0);
            assert!((revenue - total_revenue as f64).abs() <= 1e-9 * scale, "{model}: {revenue} vs {total_revenue}");
            let whole: i64 = rows.iter().map(|r| *r.revenue_minor.get(model)).sum();
            assert_eq!(whole, total_revenue, "{model}");
            for r in rows.iter() {
                assert!(
                    (*r.revenue_minor.get(model) as f64 - r.revenue.get(model)).abs() < 1.0 + 1e-6,
                    "{model} {}: {} vs {}",
                    r.key,
                    r.revenue_minor.get(model),
                    r.revenue.get(model)
                );
            }
        }
    }
}

#[test]
fn default_config_is_valid() {
    let config = Config::default();
    assert_eq!(config.lookback, Duration::days(30));
    assert_eq!(config.half_life, Duration::days(7));
    assert_eq!(config.validate(), Ok(()));
}

#[test]
fn bad_config_is_a_clear_error() {
    let base = Config::default();
    let cases = [
        (Config { lookback: Duration::days(-1), ..base.clone() }, "lookback"),
        (Config { lookback: Duration::zero(), ..base.clone() }, "lookback"),
        (Config { half_life: Duration::zero(), ..base.clone() }, "half-life"),
        (Config { position_first: 1.5, ..base.clone() }, "first"),
        (Config { position_last: -0.1, ..base.clone() }, "last"),
        (Config { position_first: f64::NAN, ..base.clone() }, "first"),
        (Config { position_first: 0.6, position_last: 0.6, ..base.clone() }, "more than 1"),
        (Config { path_max_len: 0, ..base.clone() }, "path_max_len"),
        (Config { top_paths: 0, ..base.clone() }, "top_paths"),
    ];
    for (config, needle) in cases {
        let err = attribute(&[], &[order("p", day(0), "o", 1)], &config).unwrap_err();
        assert!(matches!(err, AttributionError::Config(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.contains(needle), "{message}");
    }
    // Extreme but meaningful settings are fine.
    let extreme = Config { lookback: Duration::MAX, half_life: Duration::nanoseconds(1), position_first: 1.0, position_last: 0.0, ..base };
    let touchpoints = [tp("p", day(-400), "email", None), tp("p", day(-1), "sms", None)];
    let result = attribute(&touchpoints, &[order("p", day(0), "o", 100)], &extreme).unwrap();
    assert_eq!(result.details[0].touchpoints.len(), 2);
    assert_weights(&result.details[0].weights.time_decay, &[0.0, 1.0]);
    assert_weights(&result.details[0].weights.position_based, &[1.0, 0.0]);
    assert_sums(&result);
}

#[test]
fn reserved_names_are_refused() {
    let err = attribute(&[tp("p", day(0), NO_TOUCHPOINT, None)], &[], &Config::default()).unwrap_err();
    assert_eq!(err, AttributionError::ReservedChannel("(none)".into()));
    let err = attribute(&[tp("p", day(0), "email", Some(NO_CAMPAIGN))], &[], &Config::default()).unwrap_err();
    assert_eq!(err, AttributionError::ReservedCampaign("(no campaign)".into()));
}

#[test]
fn revenue_overflow_is_an_error() {
    let orders = [order("p", day(0), "a", i64::MAX), order("p", day(1), "b", 1)];
    let err = attribute(&[], &orders, &Config::default()).unwrap_err();
    assert_eq!(err, AttributionError::RevenueOverflow);
}

#[test]
fn position_based_weights_by_number_of_touches() {
    assert!(position_weights(0, 0.4, 0.4).is_empty());
    assert_weights(&position_weights(1, 0.4, 0.4), &[1.0]);
    assert_weights(&position_weights(2, 0.4, 0.4), &[0.5, 0.5]);
    assert_weights(&position_weights(3, 0.4, 0.4), &[0.4, 0.2, 0.4]);
    // 5 touches: 40 % first, 40 % last, 20 % / 3 each in the middle.
    let third = 0.2 / 3.0;
    assert_weights(&position_weights(5, 0.4, 0.4), &[0.4, third, third, third, 0.4]);
    // Other settings: 2 touches keep the first/last ratio, 0/0 falls back to 50/50.
    assert_weights(&position_weights(2, 0.3, 0.1), &[0.75, 0.25]);
    assert_weights(&position_weights(2, 0.0, 0.0), &[0.5, 0.5]);
    assert_weights(&position_weights(4, 0.5, 0.5), &[0.5, 0.0, 0.0, 0.5]);
}

#[test]
fn time_decay_with_a_seven_day_half_life() {
    // Touchpoints 14, 7 and 0 days before the order: raw weights 1/4, 1/2, 1, sum 7/4,
    // normalised 1/7, 2/7, 4/7.
    let times = [day(-14), day(-7), day(0)];
    assert_weights(&time_decay_weights(&times, Duration::days(7)), &[1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0]);
    // Same through the engine, where the last touch is 1 day before the order: only the
    // differences matter once normalised.
    let touchpoints = [tp("p", day(-15), "email", Some("spring")), tp("p", day(-8), "sms", Some("spring")), tp("p", day(-1), "web", None)];
    let result = attribute(&touchpoints, &[order("p", day(0), "o1", 700)], &Config::default()).unwrap();
    assert_weights(&result.details[0].weights.time_decay, &[1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0]);
    let web = row(&result.by_channel, "web");
    assert!(close(web.conversions.time_decay, 4.0 / 7.0));
    assert!(close(web.revenue.time_decay, 400.0));
    assert_eq!(web.revenue_minor.time_decay, 400);
    let spring = row(&result.by_campaign, "spring");
    assert!(close(spring.conversions.time_decay, 3.0 / 7.0));
    assert_eq!(spring.revenue_minor.time_decay, 300);
    assert_sums(&result);
}

/// One order after email, sms, email, web, app (five touches, four channels).
#[test]
fn every_heuristic_model_on_five_touches() {
    let touchpoints = [
        tp("p", day(-20), "email", Some("welcome")),
        tp("p", day(-10), "sms", Some("promo")),
        tp("p", day(-5), "email", Some("promo")),
        tp("p", day(-3), "web", None),
        tp("p", day(-1), "app", None),
        // Someone else's touchpoint never counts.
        tp("q", day(-1), "sms", Some("promo")),
    ];
    let result = attribute(&touchpoints, &[order("p", day(0), "o1", 1000)], &Config::default()).unwrap();
    let detail = &result.details[0];
    assert_eq!(detail.touchpoints.len(), 5);
    let w = &detail.weights;
    assert_weights(&w.first_touch, &[1.0, 0.0, 0.0, 0.0, 0.0]);
    assert_weights(&w.last_touch, &[0.0, 0.0, 0.0, 0.0, 1.0]);
    assert_weights(&w.linear, &[0.2; 5]);
    let third = 0.2 / 3.0;
    assert_weights(&w.position_based, &[0.4, third, third, third, 0.4]);

    let email = row(&result.by_channel, "email");
    assert!(close(email.conversions.first_touch, 1.0));
    assert!(close(email.conversions.last_touch, 0.0));
    assert!(close(email.conversions.linear, 0.4));
    assert!(close(email.conversions.position_based, 0.4 + third));
    let app = row(&result.by_channel, "app");
    assert!(close(app.conversions.last_touch, 1.0));
    assert!(close(app.conversions.position_based, 0.4));
    assert_eq!(app.revenue_minor.last_touch, 1000);
    // Position-based revenue: email 466.67, sms 66.67, web 66.67, app 400: floors
    // 466 + 66 + 66 + 400 = 998; the two missing units go to two of the three rows whose
    // dropped fraction is .67 (which two depends on the last bits of the floating point
    // values, so only the totals are checked here; see `largest_remainder_rule`).
    let whole = |key: &str| row(&result.by_channel, key).revenue_minor.position_based;
    assert!([466, 467].contains(&whole("email")));
    assert!([66, 67].contains(&whole("sms")));
    assert!([66, 67].contains(&whole("web")));
    assert_eq!(whole("app"), 400);
    assert_eq!(whole("email") + whole("sms") + whole("web"), 600);

    let promo = row(&result.by_campaign, "promo");
    assert!(close(promo.conversions.linear, 0.4));
    let none = row(&result.by_campaign, NO_CAMPAIGN);
    assert!(close(none.conversions.last_touch, 1.0));
    // Markov on the single journey email > sms > email > web > app > conversion:
    // email goes to sms or web with 1/2 each, sms back to email, web to app, app converts.
    // h_email = 1/2·h_sms + 1/2·h_web, h_sms = h_email, h_web = 1, so P(conversion) = 1.
    // Without sms: h_email = 1/2, removal effect 1/2 (the loop through sms looks optional).
    // Without email, web or app: P = 0, removal effect 1.
    // Sum 3.5: email, web, app 1/3.5 = 2/7 each, sms 0.5/3.5 = 1/7.
    assert!(close(email.conversions.markov, 2.0 / 7.0));
    assert!(close(app.conversions.markov, 2.0 / 7.0));
    assert!(close(row(&result.by_channel, "web").conversions.markov, 2.0 / 7.0));
    assert!(close(row(&result.by_channel, "sms").conversions.markov, 1.0 / 7.0));
    assert_sums(&result);
}

#[test]
fn position_based_with_one_two_and_three_touches() {
    let touchpoints = [
        // a: one touch
        tp("a", day(-1), "email", None),
        // b: two touches
        tp("b", day(-2), "email", None),
        tp("b", day(-1), "sms", None),
        // c: three touches
        tp("c", day(-3), "email", None),
        tp("c", day(-2), "web", None),
        tp("c", day(-1), "sms", None),
    ];
    let orders = [order("a", day(0), "oa", 100), order("b", day(0), "ob", 100), order("c", day(0), "oc", 100)];
    let result = attribute(&touchpoints, &orders, &Config::default()).unwrap();
    let weights: Vec<&[f64]> = result.details.iter().map(|d| d.weights.position_based.as_slice()).collect();
    assert_weights(weights[0], &[1.0]);
    assert_weights(weights[1], &[0.5, 0.5]);
    assert_weights(weights[2], &[0.4, 0.2, 0.4]);
    // email: 1 + 0.5 + 0.4; sms: 0.5 + 0.4; web: 0.2.
    assert!(close(row(&result.by_channel, "email").conversions.position_based, 1.9));
    assert!(close(row(&result.by_channel, "sms").conversions.position_based, 0.9));
    assert!(close(row(&result.by_channel, "web").conversions.position_based, 0.2));
    assert_sums(&result);
}

#[test]
fn lookback_edges_are_included_and_outside_is_not() {
    let at = day(0);
    let touchpoints = [
        tp("p", at - Duration::days(30) - Duration::seconds(1), "display", None),
        tp("p", at - Duration::days(30), "email", None),
        tp("p", at, "web", None),
        tp("p", at + Duration::seconds(1), "sms", None),
    ];
    let result = attribute(&touchpoints, &[order("p", at, "o1", 10)], &Config::default()).unwrap();
    let channels: Vec<&str> = result.details[0].touchpoints.iter().map(|tp| tp.channel.as_str()).collect();
    assert_eq!(channels, ["email", "web"]);
    assert!(close(row(&result.by_channel, "email").conversions.first_touch, 1.0));
    assert!(close(row(&result.by_channel, "web").conversions.last_touch, 1.0));
    assert!(result.by_channel.iter().all(|r| r.key != "display"));
    // The touchpoint after the order is a journey that has not converted (yet).
    assert_eq!(result.paths.non_converting.len(), 1);
    assert_eq!(result.paths.non_converting[0].steps, ["sms"]);
    // So sms appears in the Markov table, with no credit (it never leads to an order).
    assert!(close(row(&result.by_channel, "sms").conversions.markov, 0.0));
    assert_sums(&result);

    // A shorter lookback moves the edge.
    let config = Config { lookback: Duration::days(10), ..Config::default() };
    let result = attribute(&touchpoints, &[order("p", at, "o1", 10)], &config).unwrap();
    assert_eq!(result.details[0].touchpoints.len(), 1);
}

#[test]
fn orders_without_touchpoints_go_to_none() {
    let touchpoints = [tp("p", day(-1), "email", Some("spring")), tp("q", day(-60), "sms", None)];
    let orders = [order("p", day(0), "o1", 500), order("q", day(0), "o2", 301), order("r", day(0), "o3", 200)];
    let result = attribute(&touchpoints, &orders, &Config::default()).unwrap();
    assert_eq!(result.conversions, 3);
    assert_eq!(result.conversions_without_touchpoint, 2);
    for rows in [&result.by_channel, &result.by_campaign] {
        let none = row(rows, NO_TOUCHPOINT);
        for model in Model::ALL {
            assert!(close(*none.conversions.get(model), 2.0), "{model}");
            assert_eq!(*none.revenue_minor.get(model), 501, "{model}");
        }
    }
    let email = row(&result.by_channel, "email");
    for model in Model::ALL {
        assert!(close(*email.conversions.get(model), 1.0), "{model}");
    }
    assert_eq!(result.paths.top_converting[0].path, NO_TOUCHPOINT);
    assert_eq!(result.paths.top_converting[0].count, 2);
    assert_eq!(result.paths.top_converting[0].revenue_minor, 501);
    assert_sums(&result);
}

#[test]
fn no_input_at_all() {
    let result = attribute(&[], &[], &Config::default()).unwrap();
    assert_eq!(result.conversions, 0);
    assert!(result.by_channel.is_empty());
    assert!(result.paths.top_converting.is_empty());
    assert_eq!(result.paths.time_to_conversion.mean_seconds, None);
}

/// Touchpoints before a person's previous order still count for the next order if they
/// are in its window.
#[test]
fn person_with_two_orders() {
    let touchpoints = [
        tp("p", day(0), "email", Some("welcome")),
        tp("p", day(10), "sms", Some("promo")),
        tp("p", day(20), "web", None),
        tp("p", day(40), "app", None),
    ];
    let orders = [order("p", day(12), "o1", 100), order("p", day(25), "o2", 300)];
    let result = attribute(&touchpoints, &orders, &Config::default()).unwrap();
    let channels = |i: usize| -> Vec<&str> { result.details[i].touchpoints.iter().map(|tp| tp.channel.as_str()).collect() };
    assert_eq!(channels(0), ["email", "sms"]);
    assert_eq!(channels(1), ["email", "sms", "web"]);
    let email = row(&result.by_channel, "email");
    assert!(close(email.conversions.first_touch, 2.0));
    assert_eq!(email.revenue_minor.first_touch, 400);
    assert!(close(row(&result.by_channel, "web").conversions.last_touch, 1.0));
    assert!(close(row(&result.by_channel, "sms").conversions.last_touch, 1.0));
    // The app open after the last order is the person's non-converting journey.
    assert_eq!(result.paths.non_converting[0].steps, ["app"]);
    // Paths: o1 email > sms after 12 days, o2 email > sms > web after 25 days.
    let paths = &result.paths;
    assert_eq!(paths.converting[0].seconds_to_conversion, Some(12 * 86_400));
    assert_eq!(paths.converting[1].seconds_to_conversion, Some(25 * 86_400));
    assert_eq!(paths.time_to_conversion.conversions, 2);
    assert_eq!(paths.time_to_conversion.median_seconds, Some(18.5 * 86_400.0));
    assert_eq!(paths.time_to_conversion.mean_seconds, Some(18.5 * 86_400.0));
    assert_eq!(
        paths.length_distribution,
        vec![LengthCount { touchpoints: 2, conversions: 1 }, LengthCount { touchpoints: 3, conversions: 1 }]
    );
    assert_sums(&result);
}

/// The classic Markov example (see `markov::tests::classic_three_paths` for the
/// arithmetic) through the engine: shares c1 0.2, c2 0.4, c3 0.4 of the single order.
#[test]
fn markov_through_the_engine() {
    let touchpoints = [
        // Converting journey c1 > c2 > c3.
        tp("a", day(-3), "c1", Some("k1")),
        tp("a", day(-2), "c2", Some("k2")),
        tp("a", day(-1), "c3", Some("k3")),
        // Non-converting journeys: c1, and c2 > c3.
        tp("b", day(-1), "c1", Some("k1")),
        tp("c", day(-2), "c2", Some("k2")),
        tp("c", day(-1), "c3", Some("k3")),
    ];
    let result = attribute(&touchpoints, &[order("a", day(0), "o1", 1000)], &Config::default()).unwrap();
    assert!(close(result.markov_channels.conversion_probability, 1.0 / 3.0));
    assert_eq!(result.markov_channels.converting_paths, 1);
    assert_eq!(result.markov_channels.non_converting_paths, 2);
    for (channel, campaign, share, revenue) in [("c1", "k1", 0.2, 200), ("c2", "k2", 0.4, 400), ("c3", "k3", 0.4, 400)] {
        let r = row(&result.by_channel, channel);
        assert!(close(r.conversions.markov, share), "{channel}");
        assert!(close(r.revenue.markov, share * 1000.0), "{channel}");
        assert_eq!(r.revenue_minor.markov, revenue, "{channel}");
        assert!(close(row(&result.by_campaign, campaign).conversions.markov, share));
    }
    assert_eq!(result.paths.top_non_converting.len(), 2);
    assert_eq!(result.paths.top_non_converting[0].path, "c1");
    assert_eq!(result.paths.top_non_converting[1].path, "c2 > c3");
    assert_sums(&result);
}

#[test]
fn paths_and_top_lists() {
    let touchpoints = [
        tp("a", day(-2), "email", None),
        tp("a", day(-1), "email", None),
        tp("a", day(-1) + Duration::hours(1), "web", None),
        tp("b", day(-5), "email", None),
        tp("b", day(-4), "web", None),
        tp("c", day(-1), "sms", None),
    ];
    let orders = [order("a", day(0), "oa", 10), order("b", day(0), "ob", 20), order("c", day(0), "oc", 30)];
    let config = Config { top_paths: 1, ..Config::default() };
    let result = attribute(&touchpoints, &orders, &config).unwrap();
    let paths = &result.paths;
    assert_eq!(paths.converting[0].steps, ["email", "web"]);
    assert_eq!(paths.converting[0].touchpoints, 3);
    assert_eq!(paths.top_converting, vec![PathCount { path: "email > web".into(), count: 2, share: 2.0 / 3.0, revenue_minor: 30 }]);
    assert_eq!(paths.time_to_conversion.median_seconds, Some(2.0 * 86_400.0));
    assert!(paths.non_converting.is_empty());
}

#[test]
fn long_format_has_every_model_and_key() {
    let touchpoints = [tp("p", day(-1), "email", None)];
    let result = attribute(&touchpoints, &[order("p", day(0), "o", 5), order("q", day(0), "o2", 7)], &Config::default()).unwrap();
    let long = result.long_by_channel();
    assert_eq!(long.len(), 6 * 2);
    assert_eq!(long[0].model, Model::FirstTouch);
    assert_eq!(long[0].key, NO_TOUCHPOINT);
    assert_eq!(long[11].model, Model::Markov);
    assert_eq!(long[11].key, "email");
    assert_eq!(result.long_by_campaign().len(), 12);
    let json = serde_json::to_value(&long[0]).unwrap();
    assert_eq!(json["model"], "first_touch");
    assert!(serde_json::to_string(&result).is_ok());
}

#[test]
fn largest_remainder_rule() {
    assert_eq!(largest_remainder(&[], 0), Vec::<i64>::new());
    assert_eq!(largest_remainder(&[33.4, 33.3, 33.3], 100), [34, 33, 33]);
    assert_eq!(largest_remainder(&[0.5, 0.5], 1), [1, 0]);
    // Both -0.5 round down to -1 (total -2); the missing unit goes back to the first row.
    assert_eq!(largest_remainder(&[-0.5, -0.5], -1), [0, -1]);
    // Floating-point error on the high side: units are taken back.
    assert_eq!(largest_remainder(&[2.0, 1.0], 2), [1, 1]);
    assert_eq!(largest_remainder(&[f64::NAN, 3.0], 3), [0, 3]);
    assert_eq!(largest_remainder(&[0.0, 0.0], 5), [3, 2]);
}

// ---- Property test ------------------------------------------------------------------

const CHANNELS: [&str; 4] = ["email", "sms", "web", "app"];
const CAMPAIGNS: [Option<&str>; 4] = [None, Some("spring"), Some("summer"), Some("vip")];
const KINDS: [&str; 3] = ["click", "open", "session"];

/// Hours after `t0()` over 90 days; half the time on a 12-hour grid, so that touchpoints
/// share timestamps with each other and with orders, and fall exactly on window edges
/// (lookbacks are whole days).
fn arb_hour() -> impl Strategy<Value = i64> {
    prop_oneof![0..24 * 90i64, (0..180i64).prop_map(|x| x * 12)]
}

fn arb_touchpoint() -> impl Strategy<Value = Touchpoint> {
    (0..4usize, arb_hour(), 0..4usize, 0..4usize, 0..3usize).prop_map(|(person, hour, channel, campaign, kind)| Touchpoint {
        person: format!("p{person}"),
        at: t0() + Duration::hours(hour),
        channel: CHANNELS[channel].to_string(),
        campaign: CAMPAIGNS[campaign].map(str::to_string),
        kind: KINDS[kind].to_string(),
        source: None,
    })
}

fn arb_conversion() -> impl Strategy<Value = Conversion> {
    (0..5usize, arb_hour(), 0..1000u32, -1000..1_000_000i64).prop_map(|(person, hour, id, revenue)| Conversion {
        person: format!("p{person}"),
        at: t0() + Duration::hours(hour),
        id: format!("o{id}"),
        channel: "pos".to_string(),
        revenue_minor: revenue,
    })
}

fn arb_config() -> impl Strategy<Value = Config> {
    (1..60i64, 1..24 * 30i64, 0..=10u32, 0..=10u32, 1..6usize).prop_map(|(lookback_days, half_life_hours, first, last, path_max_len)| {
        let first = f64::from(first) / 20.0;
        let last = f64::from(last) / 20.0;
        Config {
            lookback: Duration::days(lookback_days),
            half_life: Duration::hours(half_life_hours),
            position_first: first,
            position_last: last,
            path_max_len,
            top_paths: 5,
        }
    })
}

type Inputs = (Vec<Touchpoint>, Vec<Conversion>);

fn arb_inputs() -> impl Strategy<Value = (Inputs, Inputs)> {
    (prop::collection::vec(arb_touchpoint(), 0..40), prop::collection::vec(arb_conversion(), 0..10)).prop_flat_map(
        |(touchpoints, conversions)| {
            let shuffled = (Just(touchpoints.clone()).prop_shuffle(), Just(conversions.clone()).prop_shuffle());
            (Just((touchpoints, conversions)), shuffled)
        },
    )
}

/// Independent reading of the truth: the in-window touchpoints of `conversion`, earliest
/// and latest by (time, channel, campaign, kind, source).
fn truth_first_last<'a>(
    touchpoints: &'a [Touchpoint],
    conversion: &Conversion,
    lookback: Duration,
) -> Option<(&'a Touchpoint, &'a Touchpoint)> {
    let key = |tp: &&'a Touchpoint| (tp.at, tp.channel.clone(), tp.campaign.clone(), tp.kind.clone(), tp.source.clone());
    let window =
        || touchpoints.iter().filter(|tp| tp.person == conversion.person && tp.at <= conversion.at && tp.at >= conversion.at - lookback);
    Some((window().min_by_key(key)?, window().max_by_key(key)?))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sums_truth_and_shuffle_invariance(
        ((touchpoints, conversions), (shuffled_tps, shuffled_convs)) in arb_inputs(),
        config in arb_config(),
    ) {
        let result = attribute(&touchpoints, &conversions, &config).unwrap();
        assert_sums(&result);
        prop_assert_eq!(result.conversions, conversions.len());

        // First and last touch are the truth's earliest and latest touchpoints.
        let mut first_by_channel: BTreeMap<String, f64> = BTreeMap::new();
        let mut last_by_channel: BTreeMap<String, f64> = BTreeMap::new();
        for detail in &result.details {
            let truth = truth_first_last(&touchpoints, &detail.conversion, config.lookback);
            let (first_key, last_key) = match truth {
                Some((first, last)) => {
                    let credited_first = detail
                        .touchpoints
                        .iter()
                        .zip(&detail.weights.first_touch)
                        .filter(|(_, w)| **w > 0.0)
                        .map(|(tp, _)| tp)
                        .collect::<Vec<_>>();
                    prop_assert_eq!(credited_first, vec![first]);
                    let credited_last = detail
                        .touchpoints
                        .iter()
                        .zip(&detail.weights.last_touch)
                        .filter(|(_, w)| **w > 0.0)
                        .map(|(tp, _)| tp)
                        .collect::<Vec<_>>();
                    prop_assert_eq!(credited_last, vec![last]);
                    (first.channel.clone(), last.channel.clone())
                }
                None => {
                    prop_assert!(detail.touchpoints.is_empty());
                    (NO_TOUCHPOINT.to_string(), NO_TOUCHPOINT.to_string())
                }
            };
            *first_by_channel.entry(first_key).or_default() += 1.0;
            *last_by_channel.entry(last_key).or_default() += 1.0;
            // Every heuristic split of an order adds up to 1.
            for model in Model::HEURISTIC {
                let weights = detail.weights.get(model).unwrap();
                prop_assert_eq!(weights.len(), detail.touchpoints.len());
                if !weights.is_empty() {
                    let sum: f64 = weights.iter().sum();
                    prop_assert!((sum - 1.0).abs() < 1e-9, "{} sums to {}", model, sum);
                    prop_assert!(weights.iter().all(|w| *w >= 0.0));
                }
            }
        }
        for r in &result.by_channel {
            let first = first_by_channel.get(&r.key).copied().unwrap_or(0.0);
            let last = last_by_channel.get(&r.key).copied().unwrap_or(0.0);
            prop_assert!(close(r.conversions.first_touch, first), "{}", r.key);
            prop_assert!(close(r.conversions.last_touch, last), "{}", r.key);
        }
        for rows in [&result.by_channel, &result.by_campaign] {
            prop_assert!(rows.windows(2).all(|w| w[0].key < w[1].key));
        }

        // Shuffled input, same result to the bit.
        let again = attribute(&shuffled_tps, &shuffled_convs, &config).unwrap();
        prop_assert_eq!(&result, &again);
    }
}

/// Hundreds of campaigns stay cheap for the Markov model (one matrix inversion).
#[test]
fn many_campaigns() {
    let mut touchpoints = Vec::new();
    let mut orders = Vec::new();
    for person in 0..600 {
        let name = format!("p{person}");
        for step in 0..3 {
            let campaign = format!("c{}", (person * 7 + step * 13) % 300);
            touchpoints.push(tp(&name, day(-(3 - step)), "email", Some(&campaign)));
        }
        if person % 3 == 0 {
            orders.push(order(&name, day(0), &format!("o{person}"), 1234));
        }
    }
    let result = attribute(&touchpoints, &orders, &Config::default()).unwrap();
    assert_eq!(result.markov_campaigns.states.len(), 300);
    assert_sums(&result);
}
