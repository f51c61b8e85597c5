//! Unit tests of the rendered page (the formats are tested in `format`).

use super::*;

/// `(data-chart name, number of data-value marks, the svg's opening tag)` of every chart.
/// (name, marks, tag) of each chart the page draws.
fn charts_in(html: &str) -> Vec<(String, usize, String)> {
    drawn_charts(html).into_iter().map(|c| (c.name, c.marks, c.tag)).collect()
}

fn empty(locale: Locale) -> ReportData {
    ReportData {
        kpis: vec![],
        weekly_trend: vec![],
        funnel: Funnel::default(),
        attribution: vec![],
        top_paths: vec![],
        campaign_lift: vec![],
        spend_return: vec![],
        ..sample_in(locale)
    }
}

#[test]
fn same_data_same_bytes() {
    for locale in [Locale::Fr, Locale::En] {
        let data = sample_in(locale);
        assert_eq!(render(&data), render(&data.clone()));
    }
    assert_ne!(render(&sample_in(Locale::Fr)), render(&sample_in(Locale::En)));
}

#[test]
fn every_chart_has_one_mark_per_input_row() {
    let data = sample();
    let expected = expected_marks(&data);
    // Independent of expected_marks: the sample's rows.
    assert_eq!(
        expected,
        vec![
            (charts::TREND_PEOPLE_REACHED, data.weekly_trend.len()),
            (charts::TREND_ORDERS, data.weekly_trend.len()),
            (charts::TREND_REVENUE, data.weekly_trend.len()),
            (charts::FUNNEL, 4),
            (charts::FUNNEL_BY_CHANNEL, 4 * data.funnel.by_entry_channel.len()),
            (charts::ATTRIBUTION_CONVERSIONS, data.attribution.len()),
            (charts::ATTRIBUTION_REVENUE, data.attribution.len()),
            (charts::TOP_PATHS, data.top_paths.len()),
            (charts::CAMPAIGN_LIFT, data.campaign_lift.len()),
            (charts::ROAS, data.spend_return.iter().map(|s| s.by_model.len()).sum()),
        ]
    );
    assert_eq!(data.weekly_trend.len(), 30);
    assert_eq!(data.attribution.len(), 36);
    for locale in [Locale::Fr, Locale::En] {
        let html = render(&ReportData { locale, ..data.clone() });
        let found: Vec<(String, usize)> = charts_in(&html).into_iter().map(|(name, marks, _)| (name, marks)).collect();
        let expected: Vec<(String, usize)> = expected.iter().map(|(name, marks)| ((*name).to_owned(), *marks)).collect();
        assert_eq!(found, expected);
    }
}

#[test]
fn marks_follow_the_input_not_the_sample() {
    let mut data = sample();
    data.weekly_trend.truncate(7);
    data.attribution.retain(|r| r.model != AttributionModel::Markov);
    data.top_paths.truncate(1);
    data.campaign_lift.truncate(2);
    data.funnel.by_entry_channel.truncate(1);
    data.spend_return[0].by_model[0].roas = None;
    let found: Vec<(String, usize)> = charts_in(&render(&data)).into_iter().map(|(name, marks, _)| (name, marks)).collect();
    assert_eq!(
        found,
        vec![
            ("trend-people-reached".to_owned(), 7),
            ("trend-orders".to_owned(), 7),
            ("trend-revenue".to_owned(), 7),
            ("funnel".to_owned(), 4),
            ("funnel-by-channel".to_owned(), 4),
            ("attribution-conversions".to_owned(), 30),
            ("attribution-revenue".to_owned(), 30),
            ("top-paths".to_owned(), 1),
            ("campaign-lift".to_owned(), 2),
            ("roas".to_owned(), 35),
        ]
    );
}

#[test]
fn charts_are_accessible() {
    let html = render(&sample());
    let charts = charts_in(&html);
    assert_eq!(charts.len(), 10);
    for (name, _, tag) in &charts {
        assert!(tag.contains(r#"role="img""#), "{name}: {tag}");
        assert!(tag.contains("aria-label=\""), "{name}: {tag}");
        let after = &html[html.find(tag.as_str()).unwrap()..];
        assert!(after[tag.len()..].starts_with("><title>"), "{name} has a <title>");
    }
    // A data table for every section with data.
    assert_eq!(html.matches("<details>").count(), 6);
    assert!(html.contains("<html lang=\"fr\">"));
    assert!(render(&sample_in(Locale::En)).contains("<html lang=\"en\">"));
}

#[test]
fn nothing_from_the_network() {
    for locale in [Locale::Fr, Locale::En] {
        let html = render(&sample_in(locale)).to_ascii_lowercase();
        for forbidden in ["http:", "https:", "//", "<script", "src=", "href=", "url(", "@import", "<link", "<img", "<iframe", "javascript:"]
        {
            assert!(!html.contains(forbidden), "{forbidden} in the page");
        }
        assert!(html.contains("content-security-policy"));
    }
}

#[test]
fn text_from_data_is_escaped() {
    let mut data = sample();
    data.campaign_lift[0].campaign = "<script>alert('lift')</script>".to_owned();
    data.attribution[0].channel = "\"><img src=x onerror=alert(1)>".to_owned();
    data.top_paths[0].path = vec!["<b>bold</b> & co".to_owned()];
    data.kpis[0].label = "<i>KPI</i>".to_owned();
    data.retailer = "Ariane & <Fils>".to_owned();
    data.title = "</title><script>x()</script>".to_owned();
    data.currency = "<EU>".to_owned();
    let html = render(&data);
    assert!(!html.contains("<script"), "no script element");
    assert!(!html.contains("<img"));
    assert!(!html.contains("<b>"));
    assert!(!html.contains("<i>"));
    assert!(!html.contains("<Fils>"));
    assert!(html.contains("&lt;script&gt;alert(&#39;lift&#39;)&lt;/script&gt;"));
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("&lt;b&gt;bold&lt;/b&gt; &amp; co"));
    assert!(html.contains("Ariane &amp; &lt;Fils&gt;"));
    assert_eq!(html.matches("<title>").count(), html.matches("</title>").count());
}

#[test]
fn empty_sections_say_so_in_the_locale() {
    let fr = render(&empty(Locale::Fr));
    assert_eq!(fr.matches("Aucune donnée pour cette période.").count(), 7);
    assert!(!fr.contains("<svg"));
    let en = render(&empty(Locale::En));
    assert_eq!(en.matches("No data for this period.").count(), 7);
    assert!(!en.contains("<svg"));
    assert!(expected_marks(&empty(Locale::En)).is_empty());
    // The model explanations are labels, not data: still there.
    assert!(en.contains(model_explained(AttributionModel::Markov, Locale::En)));
}

#[test]
fn partly_empty_sections_draw_what_they_have() {
    let mut data = empty(Locale::En);
    data.funnel.by_entry_channel = sample().funnel.by_entry_channel;
    data.spend_return = vec![SpendReturn {
        channel: "Email".into(),
        spend_minor: 0,
        by_model: vec![ModelReturn { model: AttributionModel::Linear, revenue_minor: 1_000, roas: None, cost_per_acquisition_minor: None }],
    }];
    let html = render(&data);
    let found: Vec<String> = charts_in(&html).into_iter().map(|c| c.0).collect();
    assert_eq!(found, vec!["funnel-by-channel".to_owned()]);
    // KPIs, trend, attribution, paths, lift.
    assert_eq!(html.matches("No data for this period.").count(), 5);
    assert!(html.contains("€10.00"));
}

#[test]
fn numbers_follow_the_locale() {
    let fr = render(&sample_in(Locale::Fr));
    let en = render(&sample_in(Locale::En));
    // The revenue KPI, rounded to whole euros.
    assert!(fr.contains("987\u{202F}693\u{A0}€"));
    assert!(en.contains("€987,693"));
    // A change and a percentage.
    assert!(fr.contains("+8,5\u{202F}% vs période précédente"));
    assert!(en.contains("+8.5% vs previous period"));
    assert!(fr.contains("13,4\u{202F}%"));
    assert!(en.contains("13.4%"));
    // The period.
    assert!(fr.contains("du 26\u{A0}oct.\u{A0}2026 au 6\u{A0}déc.\u{A0}2026"));
    assert!(en.contains("26\u{A0}Oct\u{A0}2026 – 6\u{A0}Dec\u{A0}2026"));
    assert!(fr.contains("Généré le 7\u{A0}déc.\u{A0}2026 à 05:30 UTC"));
    // Section titles and model names.
    assert!(fr.contains("Effet incrémental des campagnes"));
    assert!(en.contains("Campaign lift"));
    assert!(fr.contains("Décroissance temporelle"));
    assert!(en.contains("Time decay"));
}

#[test]
fn values_that_are_not_numbers_do_not_break_the_geometry() {
    let mut data = sample();
    data.attribution[0].conversions = f64::NAN;
    data.campaign_lift[0].ci95_high = f64::INFINITY;
    data.top_paths[0].share = f64::NAN;
    let html = render(&data);
    for attribute in ["x", "y", "cx", "cy", "width", "height", "x1", "x2"] {
        assert!(!html.contains(&format!(" {attribute}=\"NaN")), "{attribute}");
        assert!(!html.contains(&format!(" {attribute}=\"inf")), "{attribute}");
    }
    assert_eq!(charts_in(&html).len(), 10);
}

#[test]
fn json_shape() {
    let data = sample();
    let json = serde_json::to_string(&data).unwrap();
    let back: ReportData = serde_json::from_str(&json).unwrap();
    // serde_json parses floats to within one ulp (no `float_roundtrip` feature): compare
    // the long fractions with a tolerance and everything else exactly.
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(1.0);
    for (a, b) in back.top_paths.iter().zip(&data.top_paths) {
        assert!(close(a.share, b.share));
    }
    for (a, b) in back.campaign_lift.iter().zip(&data.campaign_lift) {
        assert!(close(a.ci95_low, b.ci95_low) && close(a.ci95_high, b.ci95_high));
    }
    let exact = |d: &ReportData| ReportData { top_paths: vec![], campaign_lift: vec![], spend_return: vec![], ..d.clone() };
    assert_eq!(exact(&back), exact(&data));
    assert_eq!(back.top_paths.len(), data.top_paths.len());
    assert_eq!(back.campaign_lift.len(), data.campaign_lift.len());
    assert_eq!(back.spend_return.len(), data.spend_return.len());
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["locale"], "fr");
    assert_eq!(value["period"]["from"], "2026-10-26");
    assert_eq!(value["kpis"][2]["value"]["unit"], "money");
    assert_eq!(value["kpis"][2]["value"]["value"], 98_769_328);
    assert_eq!(value["attribution"][5]["model"], "markov");
    assert_eq!(value["funnel"]["by_entry_channel"][0]["visit"], 31_200);
    // Sections may be left out.
    let minimal: ReportData = serde_json::from_str(
        r#"{"title":"t","retailer":"r","period":{"from":"2026-12-01","to":"2026-12-06"},
            "currency":"EUR","locale":"en","generated_at":"2026-12-07T05:30:00Z"}"#,
    )
    .unwrap();
    assert!(minimal.kpis.is_empty() && minimal.funnel.overall.is_none());
    assert_eq!(render(&minimal).matches("No data for this period.").count(), 7);
}

#[test]
fn model_names() {
    let names: Vec<&str> = AttributionModel::ALL.iter().map(|m| m.as_str()).collect();
    assert_eq!(names, ["first_touch", "last_touch", "linear", "position_based", "time_decay", "markov"]);
    for model in AttributionModel::ALL {
        assert_eq!(serde_json::to_value(model).unwrap(), serde_json::Value::from(model.as_str()));
        for locale in [Locale::Fr, Locale::En] {
            let sentence = model_explained(model, locale);
            assert!(sentence.ends_with('.') && sentence.matches(". ").count() == 0);
        }
    }
}

#[test]
fn lake_key_of_a_day() {
    let day = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
    assert_eq!(lake_key(day), "reports/html/2026-12-07/index.html");
}
