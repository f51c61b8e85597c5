//! The self-contained static HTML report of the cross-channel measurement (issue 18).
//!
//! The measurement run fills a [`ReportData`] and [`render`] turns it into one HTML5
//! document: inline CSS, inline SVG charts drawn here in Rust, no script, no font, no image
//! and no URL of any kind (a `Content-Security-Policy` of `default-src 'none'` makes the
//! browser refuse anything that would slip in). The daily run writes it to the lake under
//! [`lake_key`]; `make demo` writes it to a local file.
//!
//! Sections: KPI cards, weekly trend per channel, the funnel, attribution per channel under
//! the six models side by side, the top paths, campaign lift with its confidence interval,
//! spend and return per channel. A section without data says so ("no data for this
//! period") in the report's [`Locale`] instead of drawing an empty chart.
//!
//! Charts: every chart is an `<svg data-chart="<name>" role="img" aria-label="…">` with a
//! `<title>`, followed by its data table in a `<details>`. Every data mark carries
//! `data-value`; [`expected_marks`] says how many marks each chart has for given data (the
//! names are in [`charts`]). A chart is drawn only when it has at least one mark.
//!
//! Every text that comes from data is escaped. The output is deterministic: the same data
//! gives the same bytes (no clock, no hash map, no locale of the machine).

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub mod format;
mod i18n;
mod sample;
mod svg;

pub use i18n::{model_explained, model_name};
pub use sample::{sample, sample_in};
pub use svg::escape;

use i18n::Labels;
use svg::{Bar, HRow, Interval, Point, Series, CHANNEL_COLOURS, MODEL_COLOURS};

/// Language and number/date formats of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    /// French: `1 234,50 €`, `12,5 %`, `7 déc. 2026`.
    Fr,
    /// English: `€1,234.50`, `12.5%`, `7 Dec 2026`.
    En,
}

/// Everything the report shows. Every list may be empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    pub title: String,
    pub retailer: String,
    pub period: Period,
    /// ISO 4217 code of every amount (`EUR`); amounts are in its minor units.
    pub currency: String,
    pub locale: Locale,
    pub generated_at: DateTime<Utc>,
    #[serde(default)]
    pub kpis: Vec<Kpi>,
    #[serde(default)]
    pub weekly_trend: Vec<WeeklyPoint>,
    #[serde(default)]
    pub funnel: Funnel,
    #[serde(default)]
    pub attribution: Vec<AttributionRow>,
    #[serde(default)]
    pub top_paths: Vec<PathRow>,
    #[serde(default)]
    pub campaign_lift: Vec<CampaignLift>,
    #[serde(default)]
    pub spend_return: Vec<SpendReturn>,
}

/// The period measured, both days included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// A KPI card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kpi {
    /// Already in the report's language (it comes from the run).
    pub label: String,
    pub value: KpiValue,
    /// Relative change vs the previous period of the same length (`0.085` = +8.5 %).
    #[serde(default)]
    pub change: Option<f64>,
}

/// The value of a KPI and its unit. JSON: `{"unit": "money", "value": 123456}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "unit", content = "value", rename_all = "snake_case")]
pub enum KpiValue {
    Count(u64),
    /// Minor units of the report's currency.
    Money(i64),
    /// A fraction: `0.125` shows as 12.5 %.
    Percent(f64),
    Ratio(f64),
}

/// One channel's figures for one week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeeklyPoint {
    /// Monday of the week.
    pub week_start: NaiveDate,
    pub channel: String,
    /// Distinct people who received or saw something from the channel.
    pub people_reached: u64,
    /// Orders attributed to the channel (last touch).
    pub orders: u64,
    /// Revenue of those orders, minor units.
    pub revenue_minor: i64,
}

/// People at each step of the funnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunnelCounts {
    pub visit: u64,
    pub cart: u64,
    pub checkout: u64,
    pub order: u64,
}

impl FunnelCounts {
    /// The four steps in order: visit, cart, checkout, order.
    pub fn steps(&self) -> [u64; 4] {
        [self.visit, self.cart, self.checkout, self.order]
    }
}

/// The funnel of one channel of entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelFunnel {
    pub channel: String,
    #[serde(flatten)]
    pub counts: FunnelCounts,
}

/// Visit → cart → checkout → order, overall and per channel of entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Funnel {
    #[serde(default)]
    pub overall: Option<FunnelCounts>,
    #[serde(default)]
    pub by_entry_channel: Vec<ChannelFunnel>,
}

/// The six attribution models, in the order the report shows them: the attribution
/// engine's own [`crate::attribution::Model`] (one list of models for both).
pub use crate::attribution::Model as AttributionModel;

/// What one model credits to one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionRow {
    pub channel: String,
    pub model: AttributionModel,
    pub conversions: f64,
    /// Minor units.
    pub revenue_minor: i64,
}

/// A path of channels and how often it ended in a conversion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathRow {
    pub path: Vec<String>,
    pub conversions: u64,
    pub non_conversions: u64,
    /// Fraction of all conversions of the period that followed this path.
    pub share: f64,
}

/// Incremental effect of a campaign measured against its holdout group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignLift {
    pub campaign: String,
    pub treated_size: u64,
    /// Fraction (`0.041` = 4.1 %).
    pub treated_conversion_rate: f64,
    pub holdout_size: u64,
    pub holdout_conversion_rate: f64,
    /// Treated rate minus holdout rate (a fraction: `0.0085` = +0.85 percentage point).
    pub absolute_lift: f64,
    /// 95 % confidence interval of the absolute lift.
    pub ci95_low: f64,
    pub ci95_high: f64,
}

/// What a channel cost and what it brought back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendReturn {
    pub channel: String,
    /// Minor units.
    pub spend_minor: i64,
    #[serde(default)]
    pub by_model: Vec<ModelReturn>,
}

/// A channel's return under one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReturn {
    pub model: AttributionModel,
    /// Attributed revenue, minor units.
    pub revenue_minor: i64,
    /// Attributed revenue ÷ spend; `None` when there was no spend.
    #[serde(default)]
    pub roas: Option<f64>,
    /// Spend ÷ attributed conversions, minor units; `None` without conversions.
    #[serde(default)]
    pub cost_per_acquisition_minor: Option<i64>,
}

/// The `data-chart` names of the charts, in page order.
pub mod charts {
    pub const TREND_PEOPLE_REACHED: &str = "trend-people-reached";
    pub const TREND_ORDERS: &str = "trend-orders";
    pub const TREND_REVENUE: &str = "trend-revenue";
    pub const FUNNEL: &str = "funnel";
    pub const FUNNEL_BY_CHANNEL: &str = "funnel-by-channel";
    pub const ATTRIBUTION_CONVERSIONS: &str = "attribution-conversions";
    pub const ATTRIBUTION_REVENUE: &str = "attribution-revenue";
    pub const TOP_PATHS: &str = "top-paths";
    pub const CAMPAIGN_LIFT: &str = "campaign-lift";
    pub const ROAS: &str = "roas";
}

/// The charts [`render`] draws for `data` and how many `data-value` marks each has, in page
/// order. Charts without marks are not drawn and not listed.
pub fn expected_marks(data: &ReportData) -> Vec<(&'static str, usize)> {
    let trend = data.weekly_trend.len();
    let roas = data.spend_return.iter().flat_map(|s| &s.by_model).filter(|m| m.roas.is_some()).count();
    let all = [
        (charts::TREND_PEOPLE_REACHED, trend),
        (charts::TREND_ORDERS, trend),
        (charts::TREND_REVENUE, trend),
        (charts::FUNNEL, if data.funnel.overall.is_some() { 4 } else { 0 }),
        (charts::FUNNEL_BY_CHANNEL, 4 * data.funnel.by_entry_channel.len()),
        (charts::ATTRIBUTION_CONVERSIONS, data.attribution.len()),
        (charts::ATTRIBUTION_REVENUE, data.attribution.len()),
        (charts::TOP_PATHS, data.top_paths.len()),
        (charts::CAMPAIGN_LIFT, data.campaign_lift.len()),
        (charts::ROAS, roas),
    ];
    all.into_iter().filter(|(_, n)| *n > 0).collect()
}

/// A chart as a page draws it ([`drawn_charts`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrawnChart {
    /// Its `data-chart` name ([`charts`]).
    pub name: String,
    /// Its `data-value` marks.
    pub marks: usize,
    /// Its opening `<svg ...` tag, without the closing `>`.
    pub tag: String,
}

/// The charts an HTML page (the report as rendered, or a browser's DOM of it) draws, in
/// page order: what the tests compare with [`expected_marks`]. An `<svg` left unclosed ends
/// the list.
pub fn drawn_charts(html: &str) -> Vec<DrawnChart> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        let after = &rest[start..];
        let (Some(end), Some(tag_end)) = (after.find("</svg>"), after.find('>')) else { break };
        let svg = &after[..end];
        let tag = &after[..tag_end.min(end)];
        let name = tag.split("data-chart=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("").to_owned();
        out.push(DrawnChart { name, marks: svg.matches("data-value=").count(), tag: tag.to_owned() });
        rest = &after[end..];
    }
    out
}

/// Where the daily run writes the report of `date` in the lake.
pub fn lake_key(date: NaiveDate) -> String {
    format!("reports/html/{date}/index.html")
}

const STYLE: &str = r#":root{--ink:#1f2328;--muted:#57606a;--line:#d0d7de;--bg:#f6f8fa;--brand:#0b3d5c}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:var(--bg)}
header{background:var(--brand);color:#fff;padding:24px 32px}
header h1{margin:0 0 4px;font-size:26px}
header p{margin:0;opacity:.9}
main{max-width:1040px;margin:0 auto;padding:8px 24px 24px}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 20px;margin:16px 0}
h2{font-size:19px;margin:0 0 6px}
h3{font-size:15px;margin:14px 0 4px;color:var(--muted)}
.intro{color:var(--muted);margin:0 0 10px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(210px,1fr));gap:12px}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 14px}
.kpi-label{color:var(--muted);font-size:13px}
.kpi-value{font-size:24px;font-weight:600;font-variant-numeric:tabular-nums}
.kpi-change{font-size:13px}
.up{color:#1a7f37}.down{color:#c62828}.flat{color:var(--muted)}
svg.chart{display:block;max-width:100%;height:auto;margin:8px 0}
svg text{font:12px system-ui,sans-serif;fill:var(--ink)}
svg .axis,svg .legend{fill:var(--muted)}
svg .heading{font-weight:600}
svg .grid{stroke:#eaeef2}
svg .zero,svg .baseline{stroke:#57606a}
.empty{padding:12px;background:var(--bg);border-radius:6px;color:var(--muted);font-style:italic}
details{margin:6px 0 4px}
summary{cursor:pointer;color:var(--brand)}
table{border-collapse:collapse;width:100%;font-size:13px;margin-top:6px;font-variant-numeric:tabular-nums}
caption{text-align:left;color:var(--muted)}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left}
.num{text-align:right;white-space:nowrap}
dl.models{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;font-size:13px}
dt{font-weight:600}
dd{margin:0;color:var(--muted)}
footer{text-align:center;color:var(--muted);font-size:12px;padding:0 0 24px}
@media print{body{background:#fff}section{break-inside:avoid}}
"#;

/// Renders the report as one self-contained HTML5 document.
pub fn render(data: &ReportData) -> String {
    let page = Page::new(data);
    let l = page.l;
    let mut out = String::with_capacity(128 * 1024);
    let title = escape(&data.title);
    let retailer = escape(&data.retailer);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"{lang}\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">\n\
<meta name=\"referrer\" content=\"no-referrer\">\n\
<title>{title} — {retailer}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n\
<header>\n<h1>{title}</h1>\n<p>{retailer} · {period_label}{colon} {period} · {currency_label}{colon} {currency}</p>\n</header>\n<main>\n",
        lang = l.lang,
        period_label = l.period,
        colon = l.colon,
        period = escape(&format::period(data.period.from, data.period.to, data.locale)),
        currency_label = l.currency,
        currency = escape(&data.currency.to_ascii_uppercase()),
    );
    page.kpis(&mut out);
    page.trend(&mut out);
    page.funnel(&mut out);
    page.attribution(&mut out);
    page.top_paths(&mut out);
    page.lift(&mut out);
    page.spend(&mut out);
    let _ = write!(
        out,
        "</main>\n<footer>\n<p>{} {} · {}</p>\n</footer>\n</body>\n</html>\n",
        l.generated,
        escape(&format::datetime(data.generated_at, data.locale)),
        l.footer
    );
    out
}

/// A table cell: text (escaped when written) and whether it is a number (right-aligned).
struct Cell {
    text: String,
    num: bool,
}

fn text(text: impl Into<String>) -> Cell {
    Cell { text: text.into(), num: false }
}

fn num(text: impl Into<String>) -> Cell {
    Cell { text: text.into(), num: true }
}

struct Page<'a> {
    data: &'a ReportData,
    l: &'static Labels,
    locale: Locale,
    /// Channels in the order they first appear, for stable colours across charts.
    channels: Vec<&'a str>,
}

impl<'a> Page<'a> {
    fn new(data: &'a ReportData) -> Self {
        let mut channels: Vec<&str> = Vec::new();
        let all = data
            .weekly_trend
            .iter()
            .map(|p| p.channel.as_str())
            .chain(data.funnel.by_entry_channel.iter().map(|f| f.channel.as_str()))
            .chain(data.attribution.iter().map(|a| a.channel.as_str()))
            .chain(data.spend_return.iter().map(|s| s.channel.as_str()))
            .chain(data.top_paths.iter().flat_map(|p| p.path.iter().map(String::as_str)));
        for channel in all {
            if !channels.contains(&channel) {
                channels.push(channel);
            }
        }
        Page { data, l: i18n::labels(data.locale), locale: data.locale, channels }
    }

    fn colour(&self, channel: &str) -> &'static str {
        let index = self.channels.iter().position(|c| *c == channel).unwrap_or(0);
        CHANNEL_COLOURS[index % CHANNEL_COLOURS.len()]
    }

    fn money(&self, minor: i64) -> String {
        format::money(minor, &self.data.currency, self.locale)
    }

    fn money_whole(&self, minor: i64) -> String {
        format::money_whole(minor, &self.data.currency, self.locale)
    }

    fn open_section(&self, out: &mut String, id: &str, title: &str, intro: Option<&str>) {
        let _ = write!(out, "<section id=\"{id}\" aria-labelledby=\"h-{id}\">\n<h2 id=\"h-{id}\">{title}</h2>\n");
        if let Some(intro) = intro {
            let _ = writeln!(out, "<p class=\"intro\">{intro}</p>");
        }
    }

    fn empty(&self, out: &mut String) {
        let _ = writeln!(out, "<p class=\"empty\">{}</p>", self.l.no_data);
    }

    fn table(&self, out: &mut String, caption: &str, headers: &[(&str, bool)], rows: &[Vec<Cell>]) {
        let _ = write!(
            out,
            "<details>\n<summary>{}</summary>\n<table>\n<caption>{}</caption>\n<thead><tr>",
            self.l.data_table,
            escape(caption)
        );
        for (header, numeric) in headers {
            let class = if *numeric { " class=\"num\"" } else { "" };
            let _ = write!(out, "<th scope=\"col\"{class}>{}</th>", escape(header));
        }
        out.push_str("</tr></thead>\n<tbody>\n");
        for row in rows {
            out.push_str("<tr>");
            for (i, cell) in row.iter().enumerate() {
                let tag = if i == 0 { "th scope=\"row\"" } else { "td" };
                let close = if i == 0 { "th" } else { "td" };
                let class = if cell.num { " class=\"num\"" } else { "" };
                let _ = write!(out, "<{tag}{class}>{}</{close}>", escape(&cell.text));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n</details>\n");
    }

    fn kpis(&self, out: &mut String) {
        let l = self.l;
        self.open_section(out, "kpis", l.kpis, None);
        if self.data.kpis.is_empty() {
            self.empty(out);
        } else {
            out.push_str("<div class=\"cards\">\n");
            for kpi in &self.data.kpis {
                let value = match kpi.value {
                    KpiValue::Count(n) => format::count(n, self.locale),
                    KpiValue::Money(minor) => self.money_whole(minor),
                    KpiValue::Percent(f) => format::percent(f, 1, self.locale),
                    KpiValue::Ratio(r) => format::ratio(r, self.locale),
                };
                let _ = write!(
                    out,
                    "<div class=\"card\"><div class=\"kpi-label\">{}</div><div class=\"kpi-value\">{}</div>",
                    escape(&kpi.label),
                    escape(&value)
                );
                if let Some(change) = kpi.change {
                    let shown = format::signed_percent(change, 1, self.locale);
                    let (class, arrow) = if shown.starts_with('+') {
                        ("up", "▲")
                    } else if shown.starts_with('-') {
                        ("down", "▼")
                    } else {
                        ("flat", "■")
                    };
                    let _ = write!(
                        out,
                        "<div class=\"kpi-change {class}\"><span aria-hidden=\"true\">{arrow}</span> {} {}</div>",
                        escape(&shown),
                        l.vs_previous
                    );
                }
                out.push_str("</div>\n");
            }
            out.push_str("</div>\n");
        }
        out.push_str("</section>\n");
    }

    fn trend(&self, out: &mut String) {
        let l = self.l;
        let rows = &self.data.weekly_trend;
        self.open_section(out, "trend", l.trend, Some(l.trend_intro));
        if rows.is_empty() {
            self.empty(out);
            out.push_str("</section>\n");
            return;
        }
        let mut weeks: Vec<NaiveDate> = rows.iter().map(|p| p.week_start).collect();
        weeks.sort();
        weeks.dedup();
        let x_labels: Vec<String> = weeks.iter().map(|w| format::day_month(*w, self.locale)).collect();
        let mut channels: Vec<&str> = Vec::new();
        for p in rows {
            if !channels.contains(&p.channel.as_str()) {
                channels.push(&p.channel);
            }
        }
        type Metric<'m> = (&'m str, &'m str, Box<dyn Fn(&WeeklyPoint) -> (f64, String, String) + 'm>);
        let metrics: [Metric; 3] = [
            (
                charts::TREND_PEOPLE_REACHED,
                l.people_reached,
                Box::new(|p: &WeeklyPoint| {
                    (p.people_reached as f64, p.people_reached.to_string(), format::count(p.people_reached, self.locale))
                }),
            ),
            (
                charts::TREND_ORDERS,
                l.orders,
                Box::new(|p: &WeeklyPoint| (p.orders as f64, p.orders.to_string(), format::count(p.orders, self.locale))),
            ),
            (
                charts::TREND_REVENUE,
                l.revenue,
                Box::new(|p: &WeeklyPoint| (p.revenue_minor as f64, p.revenue_minor.to_string(), self.money(p.revenue_minor))),
            ),
        ];
        for (name, title, value) in &metrics {
            let series: Vec<Series> = channels
                .iter()
                .map(|channel| Series {
                    label: (*channel).to_owned(),
                    colour: self.colour(channel),
                    points: rows
                        .iter()
                        .filter(|p| p.channel == *channel)
                        .map(|p| {
                            let (y, data_value, shown) = value(p);
                            Point {
                                x: weeks.binary_search(&p.week_start).unwrap_or(0),
                                y,
                                data_value,
                                tip: format!("{} — {}: {}", p.channel, format::date(p.week_start, self.locale), shown),
                            }
                        })
                        .collect(),
                })
                .collect();
            let money_axis = *name == charts::TREND_REVENUE;
            let axis = |v: f64| {
                if money_axis {
                    self.money_whole(v.round() as i64)
                } else {
                    format::number(v, if v.fract() == 0.0 { 0 } else { 2 }, self.locale)
                }
            };
            let _ = writeln!(out, "<h3>{title}</h3>");
            out.push_str(&svg::line_chart(name, title, &x_labels, &series, &axis));
            out.push('\n');
        }
        let table_rows: Vec<Vec<Cell>> = rows
            .iter()
            .map(|p| {
                vec![
                    text(format::date(p.week_start, self.locale)),
                    text(p.channel.clone()),
                    num(format::count(p.people_reached, self.locale)),
                    num(format::count(p.orders, self.locale)),
                    num(self.money(p.revenue_minor)),
                ]
            })
            .collect();
        self.table(
            out,
            l.trend,
            &[(l.week, false), (l.channel, false), (l.people_reached, true), (l.orders, true), (l.revenue, true)],
            &table_rows,
        );
        out.push_str("</section>\n");
    }

    /// The four bars of one funnel, scaled to its visits, with share of visits and drop-off.
    fn funnel_bars(&self, counts: &FunnelCounts, colour: &'static str, rows: &mut Vec<HRow>) {
        let l = self.l;
        let steps = counts.steps();
        let visits = steps[0] as f64;
        for (i, step) in steps.iter().enumerate() {
            let of_visits = if visits > 0.0 { *step as f64 / visits } else { 0.0 };
            let mut shown =
                format!("{} · {} {}", format::count(*step, self.locale), format::percent(of_visits, 1, self.locale), l.of_visits);
            if i > 0 {
                let _ = write!(shown, " · {} {}", l.drop_off, self.drop_off(steps[i - 1], *step));
            }
            rows.push(HRow::Bar {
                label: l.steps[i].to_owned(),
                fraction: of_visits,
                colour,
                data_value: step.to_string(),
                text: shown.clone(),
                tip: format!("{}: {}", l.steps[i], shown),
            });
        }
    }

    fn drop_off(&self, previous: u64, step: u64) -> String {
        if previous == 0 {
            format::NOT_A_NUMBER.to_owned()
        } else {
            format::percent(1.0 - step as f64 / previous as f64, 1, self.locale)
        }
    }

    fn funnel_table_rows(&self, label: &str, counts: &FunnelCounts, rows: &mut Vec<Vec<Cell>>) {
        let steps = counts.steps();
        for (i, step) in steps.iter().enumerate() {
            let of_visits = if steps[0] > 0 {
                format::percent(*step as f64 / steps[0] as f64, 1, self.locale)
            } else {
                format::NOT_A_NUMBER.to_owned()
            };
            let drop = if i == 0 { String::new() } else { self.drop_off(steps[i - 1], *step) };
            rows.push(vec![text(label), text(self.l.steps[i]), num(format::count(*step, self.locale)), num(of_visits), num(drop)]);
        }
    }

    fn funnel(&self, out: &mut String) {
        let l = self.l;
        let funnel = &self.data.funnel;
        self.open_section(out, "funnel", l.funnel, Some(l.funnel_intro));
        if funnel.overall.is_none() && funnel.by_entry_channel.is_empty() {
            self.empty(out);
            out.push_str("</section>\n");
            return;
        }
        let mut table_rows = Vec::new();
        if let Some(overall) = &funnel.overall {
            let mut rows = Vec::new();
            self.funnel_bars(overall, "#0b3d5c", &mut rows);
            let title = format!("{} — {}", l.funnel, l.funnel_overall);
            let _ = writeln!(out, "<h3>{}</h3>", l.funnel_overall);
            out.push_str(&svg::hbars(charts::FUNNEL, &title, &rows));
            out.push('\n');
            self.funnel_table_rows(l.funnel_overall, overall, &mut table_rows);
        }
        if !funnel.by_entry_channel.is_empty() {
            let mut rows = Vec::new();
            for entry in &funnel.by_entry_channel {
                rows.push(HRow::Heading(entry.channel.clone()));
                self.funnel_bars(&entry.counts, self.colour(&entry.channel), &mut rows);
                self.funnel_table_rows(&entry.channel, &entry.counts, &mut table_rows);
            }
            let title = format!("{} — {}", l.funnel, l.funnel_by_channel);
            let _ = writeln!(out, "<h3>{}</h3>", l.funnel_by_channel);
            out.push_str(&svg::hbars(charts::FUNNEL_BY_CHANNEL, &title, &rows));
            out.push('\n');
        }
        self.table(
            out,
            l.funnel,
            &[(l.channel, false), (l.step, false), (l.people, true), (l.share_of_visits, true), (l.drop_off, true)],
            &table_rows,
        );
        out.push_str("</section>\n");
    }

    /// Channels of `names` in first-appearance order.
    fn distinct<'b>(names: impl Iterator<Item = &'b str>) -> Vec<&'b str> {
        let mut out: Vec<&str> = Vec::new();
        for name in names {
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// Legend entries (models present, in the fixed order) and each model's key index.
    fn model_keys(&self, models: impl Iterator<Item = AttributionModel>) -> (Vec<(String, &'static str)>, Vec<AttributionModel>) {
        let mut present: Vec<AttributionModel> = models.collect();
        present.sort();
        present.dedup();
        let keys = present.iter().map(|m| (model_name(*m, self.locale).to_owned(), MODEL_COLOURS[*m as usize])).collect();
        (keys, present)
    }

    fn attribution(&self, out: &mut String) {
        let l = self.l;
        let rows = &self.data.attribution;
        self.open_section(out, "attribution", l.attribution, Some(l.attribution_intro));
        if rows.is_empty() {
            self.empty(out);
        } else {
            let channels = Self::distinct(rows.iter().map(|r| r.channel.as_str()));
            let (keys, models) = self.model_keys(rows.iter().map(|r| r.model));
            let groups: Vec<String> = channels.iter().map(|c| (*c).to_owned()).collect();
            let bars = |value: &dyn Fn(&AttributionRow) -> (f64, String, String)| -> Vec<Bar> {
                rows.iter()
                    .map(|r| {
                        let (v, data_value, shown) = value(r);
                        Bar {
                            group: channels.iter().position(|c| *c == r.channel).unwrap_or(0),
                            key: models.iter().position(|m| *m == r.model).unwrap_or(0),
                            value: v,
                            data_value,
                            tip: format!("{} — {}: {}", r.channel, model_name(r.model, self.locale), shown),
                        }
                    })
                    .collect()
            };
            let conversions = bars(&|r| (r.conversions, r.conversions.to_string(), format::number(r.conversions, 1, self.locale)));
            let revenue = bars(&|r| (r.revenue_minor as f64, r.revenue_minor.to_string(), self.money(r.revenue_minor)));
            let _ = writeln!(out, "<h3>{}</h3>", l.attributed_conversions);
            out.push_str(&svg::grouped_bars(
                charts::ATTRIBUTION_CONVERSIONS,
                l.attributed_conversions,
                &groups,
                &keys,
                &conversions,
                &|v| format::number(v, if v.fract() == 0.0 { 0 } else { 1 }, self.locale),
            ));
            let _ = writeln!(out, "\n<h3>{}</h3>", l.attributed_revenue);
            out.push_str(&svg::grouped_bars(charts::ATTRIBUTION_REVENUE, l.attributed_revenue, &groups, &keys, &revenue, &|v| {
                self.money_whole(v.round() as i64)
            }));
            out.push('\n');
            // Side by side: one row per channel, one column per model.
            let mut headers: Vec<(&str, bool)> = vec![(l.channel, false)];
            headers.extend(models.iter().map(|m| (model_name(*m, self.locale), true)));
            let table_rows: Vec<Vec<Cell>> = channels
                .iter()
                .map(|channel| {
                    let mut row = vec![text(*channel)];
                    for model in &models {
                        let cell = rows
                            .iter()
                            .filter(|r| r.channel == *channel && r.model == *model)
                            .map(|r| format!("{} · {}", format::number(r.conversions, 1, self.locale), self.money(r.revenue_minor)))
                            .collect::<Vec<_>>()
                            .join(" / ");
                        row.push(num(if cell.is_empty() { format::NOT_A_NUMBER.to_owned() } else { cell }));
                    }
                    row
                })
                .collect();
            let caption = format!("{} · {}", l.attributed_conversions, l.attributed_revenue);
            self.table(out, &caption, &headers, &table_rows);
        }
        let _ = writeln!(out, "<h3>{}</h3>\n<dl class=\"models\">", l.models_explained);
        for model in AttributionModel::ALL {
            let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", model_name(model, self.locale), model_explained(model, self.locale));
        }
        out.push_str("</dl>\n</section>\n");
    }

    fn top_paths(&self, out: &mut String) {
        let l = self.l;
        let rows = &self.data.top_paths;
        self.open_section(out, "paths", l.top_paths, Some(l.top_paths_intro));
        if rows.is_empty() {
            self.empty(out);
            out.push_str("</section>\n");
            return;
        }
        let path_text = |p: &PathRow| {
            if p.path.is_empty() {
                format::NOT_A_NUMBER.to_owned()
            } else {
                p.path.join(" → ")
            }
        };
        let max_share = rows.iter().map(|p| p.share).filter(|s| s.is_finite()).fold(0.0, f64::max);
        let bars: Vec<HRow> = rows
            .iter()
            .map(|p| {
                let shown = format!(
                    "{} · {} {}",
                    format::percent(p.share, 1, self.locale),
                    format::count(p.conversions, self.locale),
                    l.conversions.to_lowercase()
                );
                HRow::Bar {
                    label: path_text(p),
                    fraction: if max_share > 0.0 { p.share / max_share } else { 0.0 },
                    colour: p.path.last().map_or("#777777", |c| self.colour(c)),
                    data_value: p.share.to_string(),
                    tip: format!("{}: {}", path_text(p), shown),
                    text: shown,
                }
            })
            .collect();
        out.push_str(&svg::hbars(charts::TOP_PATHS, l.share_of_conversions, &bars));
        out.push('\n');
        let table_rows: Vec<Vec<Cell>> = rows
            .iter()
            .map(|p| {
                vec![
                    text(path_text(p)),
                    num(format::count(p.conversions, self.locale)),
                    num(format::count(p.non_conversions, self.locale)),
                    num(format::percent(p.share, 1, self.locale)),
                ]
            })
            .collect();
        self.table(
            out,
            l.top_paths,
            &[(l.path, false), (l.conversions, true), (l.non_conversions, true), (l.share_of_conversions, true)],
            &table_rows,
        );
        out.push_str("</section>\n");
    }

    fn interval_text(&self, low: f64, high: f64) -> String {
        let (low, high) = (format::points(low, 2, self.locale), format::points(high, 2, self.locale));
        match self.locale {
            Locale::Fr => format!("[{low} ; {high}]"),
            Locale::En => format!("[{low}, {high}]"),
        }
    }

    fn lift(&self, out: &mut String) {
        let l = self.l;
        let rows = &self.data.campaign_lift;
        self.open_section(out, "lift", l.lift, Some(l.lift_intro));
        if rows.is_empty() {
            self.empty(out);
            out.push_str("</section>\n");
            return;
        }
        let verdict = |r: &CampaignLift| {
            if r.ci95_low > 0.0 {
                ("#1a7f37", l.significant_up)
            } else if r.ci95_high < 0.0 {
                ("#c62828", l.significant_down)
            } else {
                ("#6e7781", l.not_significant)
            }
        };
        let intervals: Vec<Interval> = rows
            .iter()
            .map(|r| {
                let (colour, word) = verdict(r);
                let shown = format!("{} {}", format::points(r.absolute_lift, 2, self.locale), self.interval_text(r.ci95_low, r.ci95_high));
                Interval {
                    label: r.campaign.clone(),
                    value: r.absolute_lift,
                    low: r.ci95_low,
                    high: r.ci95_high,
                    colour,
                    data_value: r.absolute_lift.to_string(),
                    tip: format!("{}: {} ({})", r.campaign, shown, word),
                    text: shown,
                }
            })
            .collect();
        out.push_str(&svg::interval_chart(charts::CAMPAIGN_LIFT, l.lift, &intervals, &|v| format::points(v, 1, self.locale)));
        out.push('\n');
        let table_rows: Vec<Vec<Cell>> = rows
            .iter()
            .map(|r| {
                vec![
                    text(r.campaign.clone()),
                    num(format::count(r.treated_size, self.locale)),
                    num(format::percent(r.treated_conversion_rate, 2, self.locale)),
                    num(format::count(r.holdout_size, self.locale)),
                    num(format::percent(r.holdout_conversion_rate, 2, self.locale)),
                    num(format::points(r.absolute_lift, 2, self.locale)),
                    num(self.interval_text(r.ci95_low, r.ci95_high)),
                    text(verdict(r).1),
                ]
            })
            .collect();
        self.table(
            out,
            l.lift,
            &[
                (l.campaign, false),
                (l.treated, true),
                (l.treated_rate, true),
                (l.holdout, true),
                (l.holdout_rate, true),
                (l.absolute_lift, true),
                (l.ci, true),
                ("", false),
            ],
            &table_rows,
        );
        out.push_str("</section>\n");
    }

    fn spend(&self, out: &mut String) {
        let l = self.l;
        let rows = &self.data.spend_return;
        self.open_section(out, "spend", l.spend, Some(l.spend_intro));
        if rows.is_empty() {
            self.empty(out);
            out.push_str("</section>\n");
            return;
        }
        let channels = Self::distinct(rows.iter().map(|r| r.channel.as_str()));
        let (keys, models) = self.model_keys(rows.iter().flat_map(|r| r.by_model.iter().map(|m| m.model)));
        let bars: Vec<Bar> = rows
            .iter()
            .flat_map(|r| r.by_model.iter().map(move |m| (r, m)))
            .filter_map(|(r, m)| {
                let roas = m.roas?;
                Some(Bar {
                    group: channels.iter().position(|c| *c == r.channel).unwrap_or(0),
                    key: models.iter().position(|x| *x == m.model).unwrap_or(0),
                    value: roas,
                    data_value: roas.to_string(),
                    tip: format!("{} — {}: {} {}", r.channel, model_name(m.model, self.locale), l.roas, format::ratio(roas, self.locale)),
                })
            })
            .collect();
        if !bars.is_empty() {
            let groups: Vec<String> = channels.iter().map(|c| (*c).to_owned()).collect();
            let _ = writeln!(out, "<h3>{}</h3>", l.roas);
            out.push_str(&svg::grouped_bars(charts::ROAS, l.roas, &groups, &keys, &bars, &|v| {
                format::number(v, if v.fract() == 0.0 { 0 } else { 1 }, self.locale)
            }));
            out.push('\n');
        }
        let mut table_rows = Vec::new();
        for r in rows {
            if r.by_model.is_empty() {
                table_rows.push(vec![text(r.channel.clone()), num(self.money(r.spend_minor)), text(""), num(""), num(""), num("")]);
            }
            for m in &r.by_model {
                table_rows.push(vec![
                    text(r.channel.clone()),
                    num(self.money(r.spend_minor)),
                    text(model_name(m.model, self.locale)),
                    num(self.money(m.revenue_minor)),
                    num(m.roas.map_or_else(|| format::NOT_A_NUMBER.to_owned(), |x| format::ratio(x, self.locale))),
                    num(m.cost_per_acquisition_minor.map_or_else(|| format::NOT_A_NUMBER.to_owned(), |x| self.money(x))),
                ]);
            }
        }
        self.table(
            out,
            l.spend,
            &[(l.channel, false), (l.spend_col, true), (l.model, false), (l.attributed_revenue, true), (l.roas, true), (l.cpa, true)],
            &table_rows,
        );
        out.push_str("</section>\n");
    }
}

#[cfg(test)]
mod tests;
