//! Spend and return: what each channel and campaign cost (the `spend` measure, summed from
//! the spend files of `channels/costs/`) against what attribution credits it with, under
//! each of the six models.
//!
//! - **Return on ad spend** (ROAS) = attributed revenue ÷ spend: 3.0 means every euro spent
//!   came back as three euros of sales credited to the channel by that model. Undefined
//!   (`None`) without spend.
//! - **Cost per acquisition** (CPA) = spend ÷ attributed conversions, in minor units
//!   (rounded to the cent): what one order credited to the channel cost. Undefined
//!   (`None`) when the model credits the channel with no order.
//!
//! A channel's figures use its whole spend (its rows with and without a campaign) against
//! its credit in [`Attribution::by_channel`]; a campaign's use its own spend against its
//! credit in [`Attribution::by_campaign`] (every touchpoint carrying that campaign id). ROAS
//! uses the exact attributed revenue (`revenue`), not the whole-cent `revenue_minor`.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::attribution::{Attribution, CreditRow, Model};
use crate::error::MeasuresError;
use crate::report::{ModelReturn, SpendReturn};
use crate::table::Table;

/// Below this many attributed conversions a model credits nothing (floating-point dust of
/// the Markov shares): no cost per acquisition.
const NO_CONVERSION: f64 = 1e-9;

/// One row of the `spend` measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spend {
    pub channel: String,
    /// `None`: spend of the channel as a whole.
    pub campaign: Option<String>,
    pub spend_minor: i64,
}

/// The `spend` measure's rows (a row without a channel is refused: the SQL never returns
/// one).
pub fn spend(t: &Table) -> Result<Vec<Spend>, MeasuresError> {
    let (channel, campaign, amount) = (t.strings("channel")?, t.strings("campaign")?, t.ints("spend_minor")?);
    let mut out = Vec::with_capacity(channel.len());
    for (i, ((channel, campaign), amount)) in channel.into_iter().zip(campaign).zip(amount).enumerate() {
        out.push(Spend {
            channel: t.required("channel", i, channel)?,
            campaign: campaign.filter(|c| !c.is_empty()),
            spend_minor: amount.unwrap_or(0),
        });
    }
    Ok(out)
}

/// Attributed revenue ÷ spend; `None` when nothing (or less than nothing) was spent.
pub fn roas(revenue: f64, spend_minor: i64) -> Option<f64> {
    (spend_minor > 0).then(|| revenue / spend_minor as f64)
}

/// Spend ÷ attributed conversions, rounded to the minor unit; `None` without conversions.
pub fn cost_per_acquisition_minor(spend_minor: i64, conversions: f64) -> Option<i64> {
    (conversions > NO_CONVERSION).then(|| (spend_minor as f64 / conversions).round() as i64)
}

/// One line of the `spend-return` table: a channel (or one of its campaigns) under one model.
#[derive(Clone, Debug, PartialEq)]
pub struct ReturnRow {
    pub model: Model,
    pub channel: String,
    /// `None`: the channel as a whole.
    pub campaign: Option<String>,
    pub spend_minor: i64,
    /// Attributed conversions (fractions of orders).
    pub conversions: f64,
    /// Attributed revenue, exact share in minor units.
    pub revenue: f64,
    /// Attributed revenue in whole minor units.
    pub revenue_minor: i64,
    pub roas: Option<f64>,
    pub cost_per_acquisition_minor: Option<i64>,
}

fn credit<'a>(rows: &'a [CreditRow], key: &str) -> Option<&'a CreditRow> {
    rows.iter().find(|r| r.key == key)
}

fn model_rows(channel: &str, campaign: Option<&str>, spend_minor: i64, credited: Option<&CreditRow>) -> Vec<ReturnRow> {
    Model::ALL
        .into_iter()
        .map(|model| {
            let (conversions, revenue, revenue_minor) =
                credited.map_or((0.0, 0.0, 0), |c| (*c.conversions.get(model), *c.revenue.get(model), *c.revenue_minor.get(model)));
            ReturnRow {
                model,
                channel: channel.to_string(),
                campaign: campaign.map(str::to_string),
                spend_minor,
                conversions,
                revenue,
                revenue_minor,
                roas: roas(revenue, spend_minor),
                cost_per_acquisition_minor: cost_per_acquisition_minor(spend_minor, conversions),
            }
        })
        .collect()
}

/// Every channel with spend (its total, then each of its campaigns with spend, by name),
/// under the six models in [`Model::ALL`] order. A channel or campaign attribution does not
/// credit gets 0 conversions and revenue: a ROAS of 0, no CPA.
pub fn returns(spend: &[Spend], a: &Attribution) -> Vec<ReturnRow> {
    let mut channels: BTreeMap<&str, (i64, BTreeMap<&str, i64>)> = BTreeMap::new();
    for s in spend {
        let c = channels.entry(s.channel.as_str()).or_default();
        c.0 += s.spend_minor;
        if let Some(campaign) = &s.campaign {
            *c.1.entry(campaign.as_str()).or_default() += s.spend_minor;
        }
    }
    let mut out = Vec::new();
    for (channel, (total, campaigns)) in channels {
        out.extend(model_rows(channel, None, total, credit(&a.by_channel, channel)));
        for (campaign, spent) in campaigns {
            out.extend(model_rows(channel, Some(campaign), spent, credit(&a.by_campaign, campaign)));
        }
    }
    out
}

/// The report's spend section: the channel totals of [`returns`].
pub fn report_rows(rows: &[ReturnRow]) -> Vec<SpendReturn> {
    let mut out: Vec<SpendReturn> = Vec::new();
    for r in rows.iter().filter(|r| r.campaign.is_none()) {
        if out.last().is_none_or(|s| s.channel != r.channel) {
            out.push(SpendReturn { channel: r.channel.clone(), spend_minor: r.spend_minor, by_model: vec![] });
        }
        if let Some(s) = out.last_mut() {
            s.by_model.push(ModelReturn {
                model: r.model,
                revenue_minor: r.revenue_minor,
                roas: r.roas,
                cost_per_acquisition_minor: r.cost_per_acquisition_minor,
            });
        }
    }
    out
}

/// The `spend-return` table: `model`, `channel`, `campaign` (empty for the channel as a
/// whole), `spend_minor`, `conversions`, `revenue`, `revenue_minor`, `roas` (empty without
/// spend), `cost_per_acquisition_minor` (empty without conversions).
pub fn batch(rows: &[ReturnRow]) -> Result<(SchemaRef, RecordBatch), MeasuresError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("campaign", DataType::Utf8, true),
        Field::new("spend_minor", DataType::Int64, false),
        Field::new("conversions", DataType::Float64, false),
        Field::new("revenue", DataType::Float64, false),
        Field::new("revenue_minor", DataType::Int64, false),
        Field::new("roas", DataType::Float64, true),
        Field::new("cost_per_acquisition_minor", DataType::Int64, true),
    ]));
    let (mut model, mut channel, mut campaign) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let (mut spend, mut conversions, mut revenue, mut revenue_minor, mut roas, mut cpa) = (
        Int64Builder::new(),
        Float64Builder::new(),
        Float64Builder::new(),
        Int64Builder::new(),
        Float64Builder::new(),
        Int64Builder::new(),
    );
    for r in rows {
        model.append_value(r.model.as_str());
        channel.append_value(&r.channel);
        campaign.append_option(r.campaign.as_deref());
        spend.append_value(r.spend_minor);
        conversions.append_value(r.conversions);
        revenue.append_value(r.revenue);
        revenue_minor.append_value(r.revenue_minor);
        roas.append_option(r.roas);
        cpa.append_option(r.cost_per_acquisition_minor);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(model.finish()),
        Arc::new(channel.finish()),
        Arc::new(campaign.finish()),
        Arc::new(spend.finish()),
        Arc::new(conversions.finish()),
        Arc::new(revenue.finish()),
        Arc::new(revenue_minor.finish()),
        Arc::new(roas.finish()),
        Arc::new(cpa.finish()),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| MeasuresError::Encode { key: "spend-return".to_string(), source: Box::new(e) })?;
    Ok((schema, batch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::{attribute, Config, Conversion, Touchpoint};
    use chrono::{DateTime, Utc};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn tp(person: &str, when: &str, channel: &str, campaign: Option<&str>) -> Touchpoint {
        Touchpoint {
            person: person.into(),
            at: at(when),
            channel: channel.into(),
            campaign: campaign.map(str::to_string),
            kind: "click".into(),
            source: None,
        }
    }

    fn order(person: &str, id: &str, when: &str, revenue_minor: i64) -> Conversion {
        Conversion { person: person.into(), at: at(when), id: id.into(), channel: "ecommerce".into(), revenue_minor }
    }

    fn spent(channel: &str, campaign: Option<&str>, spend_minor: i64) -> Spend {
        Spend { channel: channel.into(), campaign: campaign.map(str::to_string), spend_minor }
    }

    #[test]
    fn roas_and_cpa_are_undefined_without_spend_or_conversions() {
        assert_eq!(roas(30_000.0, 10_000), Some(3.0));
        assert_eq!(roas(0.0, 10_000), Some(0.0));
        assert_eq!(roas(30_000.0, 0), None);
        assert_eq!(roas(30_000.0, -5), None);
        assert_eq!(cost_per_acquisition_minor(10_000, 4.0), Some(2_500));
        // 100 € for 1.5 orders: 66.666… € an order, rounded to the cent.
        assert_eq!(cost_per_acquisition_minor(10_000, 1.5), Some(6_667));
        assert_eq!(cost_per_acquisition_minor(0, 2.0), Some(0));
        assert_eq!(cost_per_acquisition_minor(10_000, 0.0), None);
        assert_eq!(cost_per_acquisition_minor(10_000, 1e-12), None);
    }

    /// p1: e-mail (c1) then web, then an order of 100.00 €; p2: web alone, then an order of
    /// 60.00 €. By hand, per model (email / web conversions and revenue):
    /// first touch 1 / 1, 100 € / 60 €; last touch 0 / 2, 0 € / 160 €; linear 0.5 / 1.5,
    /// 50 € / 110 €. Spend: e-mail 20 € (all of it campaign c1), web 40 € + 10 € on c9
    /// (a campaign no touchpoint carries), sms 5 € (never touched anyone).
    #[test]
    fn returns_are_computed_by_hand_per_channel_campaign_and_model() {
        let touchpoints = [
            tp("p1", "2026-11-10T10:00:00Z", "email", Some("c1")),
            tp("p1", "2026-11-11T10:00:00Z", "web", None),
            tp("p2", "2026-11-12T10:00:00Z", "web", None),
        ];
        let orders = [order("p1", "o1", "2026-11-12T12:00:00Z", 10_000), order("p2", "o2", "2026-11-13T12:00:00Z", 6_000)];
        let a = attribute(&touchpoints, &orders, &Config::default()).unwrap();
        let spend =
            [spent("web", None, 4_000), spent("email", Some("c1"), 2_000), spent("web", Some("c9"), 1_000), spent("sms", None, 500)];
        let rows = returns(&spend, &a);
        // email, email/c1, sms, web, web/c9: six models each.
        assert_eq!(rows.len(), 5 * 6);
        let row = |channel: &str, campaign: Option<&str>, model: Model| {
            rows.iter().find(|r| r.channel == channel && r.campaign.as_deref() == campaign && r.model == model).unwrap()
        };
        let figures = |r: &ReturnRow| (r.spend_minor, r.conversions, r.revenue_minor, r.roas, r.cost_per_acquisition_minor);

        // E-mail: 20 €; first touch credits it o1 (100 €): ROAS 5, CPA 20 €.
        assert_eq!(figures(row("email", None, Model::FirstTouch)), (2_000, 1.0, 10_000, Some(5.0), Some(2_000)));
        // Last touch gives it nothing: ROAS 0, no CPA.
        assert_eq!(figures(row("email", None, Model::LastTouch)), (2_000, 0.0, 0, Some(0.0), None));
        // Linear: half of o1 (50 €): ROAS 2.5, CPA 20 € / 0.5 = 40 €.
        assert_eq!(figures(row("email", None, Model::Linear)), (2_000, 0.5, 5_000, Some(2.5), Some(4_000)));
        // Campaign c1 carries every e-mail touchpoint: the same figures.
        assert_eq!(figures(row("email", Some("c1"), Model::Linear)), (2_000, 0.5, 5_000, Some(2.5), Some(4_000)));

        // Web: 50 € in all (40 € + 10 € on c9). First touch: o2 (60 €): ROAS 1.2, CPA 50 €.
        assert_eq!(figures(row("web", None, Model::FirstTouch)), (5_000, 1.0, 6_000, Some(1.2), Some(5_000)));
        // Last touch: both orders (160 €): ROAS 3.2, CPA 25 €.
        assert_eq!(figures(row("web", None, Model::LastTouch)), (5_000, 2.0, 16_000, Some(3.2), Some(2_500)));
        // Linear: 1.5 orders, 110 €: ROAS 2.2, CPA 33.33 €.
        assert_eq!(figures(row("web", None, Model::Linear)), (5_000, 1.5, 11_000, Some(2.2), Some(3_333)));
        // c9 was paid for but never seen: 10 €, nothing back.
        assert_eq!(figures(row("web", Some("c9"), Model::Markov)), (1_000, 0.0, 0, Some(0.0), None));
        // SMS: spend without any touchpoint.
        assert!(Model::ALL.iter().all(|m| figures(row("sms", None, *m)) == (500, 0.0, 0, Some(0.0), None)));

        // The report shows the channel totals, six models each, channels by name.
        let report = report_rows(&rows);
        let shown: Vec<(&str, i64, usize)> = report.iter().map(|s| (s.channel.as_str(), s.spend_minor, s.by_model.len())).collect();
        assert_eq!(shown, [("email", 2_000, 6), ("sms", 500, 6), ("web", 5_000, 6)]);
        let web_last = report[2].by_model.iter().find(|m| m.model == Model::LastTouch).unwrap();
        assert_eq!((web_last.revenue_minor, web_last.roas, web_last.cost_per_acquisition_minor), (16_000, Some(3.2), Some(2_500)));

        // The table: one line per row, empty campaign for the channel totals.
        let (_, b) = batch(&rows).unwrap();
        let t = Table { measure: "spend-return".into(), batches: vec![b] };
        assert_eq!(t.rows(), 30);
        let campaigns = t.strings("campaign").unwrap();
        assert_eq!(campaigns.iter().filter(|c| c.is_none()).count(), 3 * 6);
        assert_eq!(
            t.ints("cost_per_acquisition_minor").unwrap().iter().filter(|c| c.is_none()).count(),
            rows.iter().filter(|r| r.cost_per_acquisition_minor.is_none()).count()
        );
    }

    #[test]
    fn without_spend_there_is_nothing_to_return() {
        let a = attribute(&[], &[order("p1", "o1", "2026-11-12T12:00:00Z", 1_000)], &Config::default()).unwrap();
        assert!(returns(&[], &a).is_empty());
        assert!(report_rows(&[]).is_empty());
        let (_, b) = batch(&[]).unwrap();
        assert_eq!(b.num_rows(), 0);
    }
}
