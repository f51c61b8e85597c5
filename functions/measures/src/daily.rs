//! The daily report's data ([`ReportData`]) from a run's [`Results`]:
//!
//! - KPI cards: orders, revenue, average basket, people reached, conversion rate
//!   (customers ÷ people reached), multi-channel customer share, research online /
//!   purchase offline (from `conversions` and `cross-channel`, see [`Headline`]), each with
//!   its change against the previous period of the same length ([`Changes`], from the same
//!   measures run as of `run_at - PERIOD_DAYS`; none without a previous period);
//! - weekly trend per channel: people reached from `channel-kpis`, orders and revenue
//!   credited to the channel by **last touch** (the channel of the order's last touchpoint,
//!   `(none)` without one), as [`WeeklyPoint`] documents;
//! - the funnel per channel of entry (`funnel`), overall = the sum (each person has one
//!   channel of entry);
//! - attribution per channel under the six models, the most common paths to conversion
//!   (with the non-converting people of the same path);
//! - campaign lift from the campaign report segments computes daily
//!   (`reports/campaigns/latest.json`), when there is one;
//! - spend and return per channel under the six models (the channel totals of
//!   [`crate::spend::returns`], from the `spend` measure).

use std::collections::BTreeMap;

use ariane_segments::report::CampaignReport;
use ariane_shared::lake;
use ariane_shared::ports::BlobStore;
use chrono::{Datelike, Duration, NaiveDate};

use crate::attribution::{Model, NO_TOUCHPOINT};
use crate::config::{MeasuresConfig, PERIOD_DAYS};
use crate::error::MeasuresError;
use crate::period::{Changes, Headline};
use crate::report::{
    AttributionRow, CampaignLift, ChannelFunnel, Funnel, FunnelCounts, Kpi, KpiValue, Locale, PathRow, Period, ReportData, WeeklyPoint,
};
use crate::run::Results;

fn monday(d: NaiveDate) -> NaiveDate {
    d - Duration::days(d.weekday().num_days_from_monday() as i64)
}

/// The KPI labels, in the report's language.
fn label(locale: Locale, key: &str) -> String {
    let (fr, en) = match key {
        "orders" => ("Commandes", "Orders"),
        "revenue" => ("Chiffre d'affaires", "Revenue"),
        "basket" => ("Panier moyen", "Average basket"),
        "reached" => ("Personnes touchées", "People reached"),
        "conversion" => ("Taux de conversion (clients ÷ personnes touchées)", "Conversion rate (customers ÷ people reached)"),
        "multi" => ("Clients multicanaux", "Multi-channel customers"),
        "ropo" => ("Achats en magasin après une visite en ligne (7 j)", "Store purchases after an online visit (7 days)"),
        _ => (key, key),
    };
    match locale {
        Locale::Fr => fr.to_string(),
        Locale::En => en.to_string(),
    }
}

/// The report of a run (see the module documentation).
pub fn report_data(r: &Results, config: &MeasuresConfig, campaign_lift: Vec<CampaignLift>) -> Result<ReportData, MeasuresError> {
    let a = &r.attribution;
    let l = |k: &str| label(config.locale, k);
    let now = Headline::from_tables(&r.table("conversions"), &r.table("cross-channel"))?;
    let change = Changes::between(&now, r.previous.as_ref());

    let mut kpis = vec![
        Kpi { label: l("orders"), value: KpiValue::Count(now.orders), change: change.orders },
        Kpi { label: l("revenue"), value: KpiValue::Money(now.revenue_minor), change: change.revenue },
    ];
    if let Some(basket) = now.average_basket_minor() {
        kpis.push(Kpi { label: l("basket"), value: KpiValue::Money(basket), change: change.average_basket });
    }
    kpis.push(Kpi { label: l("reached"), value: KpiValue::Count(now.people_reached), change: change.people_reached });
    if let Some(rate) = now.conversion_rate() {
        kpis.push(Kpi { label: l("conversion"), value: KpiValue::Percent(rate), change: change.conversion_rate });
    }
    if let Some(share) = now.multi_channel_share {
        kpis.push(Kpi { label: l("multi"), value: KpiValue::Percent(share), change: change.multi_channel_share });
    }
    if let Some(ropo) = now.research_online_purchase_offline {
        kpis.push(Kpi { label: l("ropo"), value: KpiValue::Count(ropo), change: change.research_online_purchase_offline });
    }

    // Weekly trend: people reached per channel and week, orders and revenue by last touch.
    let mut weeks: BTreeMap<(NaiveDate, String), (u64, u64, i64)> = BTreeMap::new();
    let kpi = r.table("channel-kpis");
    for ((channel, week), reached) in kpi.strings("channel")?.into_iter().zip(kpi.dates("week_start")?).zip(kpi.counts("people_reached")?) {
        if let (Some(channel), Some(week)) = (channel, week) {
            if reached > 0 {
                weeks.entry((week, channel)).or_default().0 += reached;
            }
        }
    }
    for d in &a.details {
        let channel = d.touchpoints.last().map(|t| t.channel.clone()).unwrap_or_else(|| NO_TOUCHPOINT.to_string());
        let e = weeks.entry((monday(d.conversion.at.date_naive()), channel)).or_default();
        e.1 += 1;
        e.2 += d.conversion.revenue_minor;
    }
    let weekly_trend = weeks
        .into_iter()
        .map(|((week_start, channel), (people_reached, orders, revenue_minor))| WeeklyPoint {
            week_start,
            channel,
            people_reached,
            orders,
            revenue_minor,
        })
        .collect();

    // Funnel per channel of entry.
    let f = r.table("funnel");
    let mut funnel = Funnel::default();
    let (entry, visit, cart, checkout, order) =
        (f.strings("entry_channel")?, f.counts("visitors")?, f.counts("carted")?, f.counts("checked_out")?, f.counts("ordered")?);
    let mut overall = FunnelCounts::default();
    for i in 0..entry.len() {
        let counts = FunnelCounts { visit: visit[i], cart: cart[i], checkout: checkout[i], order: order[i] };
        overall = FunnelCounts {
            visit: overall.visit + counts.visit,
            cart: overall.cart + counts.cart,
            checkout: overall.checkout + counts.checkout,
            order: overall.order + counts.order,
        };
        funnel.by_entry_channel.push(ChannelFunnel { channel: entry[i].clone().unwrap_or_default(), counts });
    }
    if !funnel.by_entry_channel.is_empty() {
        funnel.overall = Some(overall);
    }

    let attribution = a
        .by_channel
        .iter()
        .flat_map(|row| {
            Model::ALL.into_iter().map(move |m| AttributionRow {
                channel: row.key.clone(),
                model: m,
                conversions: *row.conversions.get(m),
                revenue_minor: *row.revenue_minor.get(m),
            })
        })
        .collect();

    let non_converting: BTreeMap<&str, usize> = a.paths.top_non_converting.iter().map(|p| (p.path.as_str(), p.count)).collect();
    let top_paths = a
        .paths
        .top_converting
        .iter()
        .map(|p| PathRow {
            path: p.path.split(" > ").map(str::to_string).collect(),
            conversions: p.count as u64,
            non_conversions: non_converting.get(p.path.as_str()).copied().unwrap_or(0) as u64,
            share: p.share,
        })
        .collect();

    let to = r.run_at.date_naive();
    Ok(ReportData {
        title: match config.locale {
            Locale::Fr => "Mesure cross-canal".to_string(),
            Locale::En => "Cross-channel measurement".to_string(),
        },
        retailer: config.retailer.clone(),
        period: Period { from: (r.run_at - Duration::days(PERIOD_DAYS)).date_naive(), to },
        currency: "EUR".to_string(),
        locale: config.locale,
        generated_at: r.run_at,
        kpis,
        weekly_trend,
        funnel,
        attribution,
        top_paths,
        campaign_lift,
        spend_return: crate::spend::report_rows(&r.spend_return),
    })
}

/// Campaign lift (treated against holdout) from the latest campaign report of the
/// segments run, with a 95 % normal-approximation interval of the difference of the two
/// conversion rates; campaigns without a treated or holdout group are left out. Nothing
/// when there is no report yet or it cannot be read (the report then shows the section as
/// empty; the error is logged).
pub async fn campaign_lift<B: BlobStore>(blobs: &B, bucket: &str) -> Vec<CampaignLift> {
    let key = lake::campaign_report_latest_key();
    let report: CampaignReport = match blobs.get(bucket, key).await {
        Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(key, error = %e, "the campaign report cannot be decoded: no campaign lift in the report");
                return vec![];
            }
        },
        Ok(None) => return vec![],
        Err(e) => {
            tracing::warn!(key, error = %e, "the campaign report cannot be read: no campaign lift in the report");
            return vec![];
        }
    };
    report
        .campaigns
        .iter()
        .filter(|c| c.treated.entries > 0 && c.holdout.entries > 0)
        .map(|c| {
            let (n1, n2) = (c.treated.entries as f64, c.holdout.entries as f64);
            let (p1, p2) = (c.treated.converted as f64 / n1, c.holdout.converted as f64 / n2);
            let diff = p1 - p2;
            let se = (p1 * (1.0 - p1) / n1 + p2 * (1.0 - p2) / n2).sqrt();
            CampaignLift {
                campaign: c.campaign.clone(),
                treated_size: c.treated.entries,
                treated_conversion_rate: p1,
                holdout_size: c.holdout.entries,
                holdout_conversion_rate: p2,
                absolute_lift: diff,
                ci95_low: diff - 1.96 * se,
                ci95_high: diff + 1.96 * se,
            }
        })
        .collect()
}
