//! Realistic sample data, for tests and for `make demo` until the measurement run fills the
//! report with real figures.

use chrono::{Duration, NaiveDate, TimeZone, Utc};

use super::{
    AttributionModel, AttributionRow, CampaignLift, ChannelFunnel, Funnel, FunnelCounts, Kpi, KpiValue, Locale, ModelReturn, PathRow,
    Period, ReportData, SpendReturn, WeeklyPoint,
};

const ORDERS: u64 = 12_874;
/// Average order value, in cents.
const AVERAGE_ORDER: f64 = 7_672.0;

/// Share of the orders credited to each channel, per model (rows: [`CHANNELS`]).
const CHANNELS: [&str; 6] = ["Email", "SMS", "Push", "Paid search", "Social ads", "Display"];
const SHARES: [[f64; 6]; 6] = [
    // first, last, linear, position, time decay, markov
    [0.22, 0.34, 0.28, 0.28, 0.31, 0.30],
    [0.08, 0.18, 0.13, 0.12, 0.15, 0.11],
    [0.05, 0.09, 0.07, 0.07, 0.08, 0.05],
    [0.30, 0.27, 0.28, 0.29, 0.28, 0.27],
    [0.22, 0.08, 0.15, 0.15, 0.12, 0.17],
    [0.13, 0.04, 0.09, 0.09, 0.06, 0.10],
];
/// Spend per channel over the period, in cents.
const SPEND: [i64; 6] = [650_000, 1_100_000, 150_000, 4_200_000, 2_600_000, 1_900_000];

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid sample date")
}

/// A sample report in French.
pub fn sample() -> ReportData {
    sample_in(Locale::Fr)
}

/// A sample report with its texts (title, KPI labels) in `locale`.
pub fn sample_in(locale: Locale) -> ReportData {
    let fr = locale == Locale::Fr;
    let text = |fr_text: &str, en_text: &str| {
        if fr {
            fr_text.to_owned()
        } else {
            en_text.to_owned()
        }
    };
    let from = date(2026, 10, 26);
    let to = date(2026, 12, 6);

    let kpis = vec![
        Kpi { label: text("Personnes touchées", "People reached"), value: KpiValue::Count(184_320), change: Some(0.062) },
        Kpi { label: text("Commandes", "Orders"), value: KpiValue::Count(ORDERS), change: Some(0.085) },
        Kpi { label: text("Chiffre d’affaires", "Revenue"), value: KpiValue::Money(98_769_328), change: Some(0.071) },
        Kpi { label: text("Taux de conversion", "Conversion rate"), value: KpiValue::Percent(0.1335), change: Some(-0.012) },
        Kpi { label: text("Panier moyen", "Average order value"), value: KpiValue::Money(7_672), change: Some(-0.013) },
        Kpi { label: text("ROAS (Markov)", "ROAS (Markov)"), value: KpiValue::Ratio(9.32), change: Some(0.15) },
        Kpi { label: text("Commandes en magasin", "Orders in store"), value: KpiValue::Percent(0.412), change: None },
    ];

    let trend_channels: [(&str, f64, f64); 5] = [
        ("Email", 21_000.0, 0.024),
        ("SMS", 8_400.0, 0.041),
        ("Paid search", 15_500.0, 0.035),
        ("Social ads", 26_000.0, 0.009),
        ("Display", 31_000.0, 0.004),
    ];
    let mut weekly_trend = Vec::new();
    for week in 0..6i64 {
        let week_start = from + Duration::weeks(week);
        // Black Friday is in week 4 (23–29 Nov).
        let season = [0.86, 0.9, 0.95, 1.0, 1.45, 1.12][week as usize];
        for (channel, reached, rate) in trend_channels {
            let people_reached = (reached * season).round() as u64;
            let orders = (people_reached as f64 * rate * season).round() as u64;
            weekly_trend.push(WeeklyPoint {
                week_start,
                channel: channel.to_owned(),
                people_reached,
                orders,
                revenue_minor: (orders as f64 * AVERAGE_ORDER).round() as i64,
            });
        }
    }

    let counts = |visit, cart, checkout, order| FunnelCounts { visit, cart, checkout, order };
    let funnel = Funnel {
        overall: Some(counts(96_400, 31_250, 17_820, 12_874)),
        by_entry_channel: vec![
            ChannelFunnel { channel: "Email".into(), counts: counts(31_200, 11_040, 6_480, 4_910) },
            ChannelFunnel { channel: "SMS".into(), counts: counts(12_400, 4_620, 2_790, 2_130) },
            ChannelFunnel { channel: "Paid search".into(), counts: counts(28_900, 8_650, 4_870, 3_420) },
            ChannelFunnel { channel: "Social ads".into(), counts: counts(16_300, 4_120, 2_010, 1_240) },
            ChannelFunnel { channel: "Display".into(), counts: counts(7_600, 2_820, 1_670, 1_174) },
        ],
    };

    let mut attribution = Vec::new();
    for (c, channel) in CHANNELS.iter().enumerate() {
        for (m, model) in AttributionModel::ALL.into_iter().enumerate() {
            let conversions = (SHARES[c][m] * ORDERS as f64 * 10.0).round() / 10.0;
            attribution.push(AttributionRow {
                channel: (*channel).to_owned(),
                model,
                conversions,
                revenue_minor: (conversions * AVERAGE_ORDER).round() as i64,
            });
        }
    }

    let path = |channels: &[&str], conversions: u64, non_conversions: u64| PathRow {
        path: channels.iter().map(|c| (*c).to_owned()).collect(),
        conversions,
        non_conversions,
        share: conversions as f64 / ORDERS as f64,
    };
    let top_paths = vec![
        path(&["Paid search", "Email"], 1_412, 9_870),
        path(&["Email"], 1_236, 14_220),
        path(&["Paid search"], 1_120, 10_450),
        path(&["Social ads", "Paid search", "Email"], 918, 6_540),
        path(&["SMS"], 802, 7_110),
        path(&["Email", "SMS"], 655, 3_980),
        path(&["Display", "Paid search"], 540, 8_760),
        path(&["Social ads"], 421, 12_300),
    ];

    let lift = |campaign: &str, treated: u64, treated_rate: f64, holdout: u64, holdout_rate: f64| {
        let lift = treated_rate - holdout_rate;
        let se = (treated_rate * (1.0 - treated_rate) / treated as f64 + holdout_rate * (1.0 - holdout_rate) / holdout as f64).sqrt();
        CampaignLift {
            campaign: campaign.to_owned(),
            treated_size: treated,
            treated_conversion_rate: treated_rate,
            holdout_size: holdout,
            holdout_conversion_rate: holdout_rate,
            absolute_lift: lift,
            ci95_low: lift - 1.96 * se,
            ci95_high: lift + 1.96 * se,
        }
    };
    let campaign_lift = vec![
        lift("Black Friday — VIP & fidèles", 48_000, 0.0412, 5_300, 0.0327),
        lift("Relance panier abandonné (SMS)", 12_600, 0.081, 1_400, 0.064),
        lift("Newsletter novembre", 152_000, 0.0121, 16_900, 0.0118),
        lift("Push « Nouveautés »", 38_000, 0.0089, 4_200, 0.0102),
    ];

    let spend_return = CHANNELS
        .iter()
        .zip(SPEND)
        .map(|(channel, spend_minor)| SpendReturn {
            channel: (*channel).to_owned(),
            spend_minor,
            by_model: attribution
                .iter()
                .filter(|row| row.channel == *channel)
                .map(|row| ModelReturn {
                    model: row.model,
                    revenue_minor: row.revenue_minor,
                    roas: (spend_minor > 0).then(|| row.revenue_minor as f64 / spend_minor as f64),
                    cost_per_acquisition_minor: (row.conversions > 0.0).then(|| (spend_minor as f64 / row.conversions).round() as i64),
                })
                .collect(),
        })
        .collect();

    ReportData {
        title: text("Mesure cross-canal", "Cross-channel measurement"),
        retailer: "Maison Ariane".to_owned(),
        period: Period { from, to },
        currency: "EUR".to_owned(),
        locale,
        generated_at: Utc.with_ymd_and_hms(2026, 12, 7, 5, 30, 0).single().expect("valid sample instant"),
        kpis,
        weekly_trend,
        funnel,
        attribution,
        top_paths,
        campaign_lift,
        spend_return,
    }
}
