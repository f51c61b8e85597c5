//! Inline SVG charts, drawn in Rust: line chart, grouped vertical bars, horizontal bars and
//! dots with error bars. Every chart is an `<svg data-chart="…" role="img">` with a `<title>`
//! and an `aria-label`; every data mark carries `data-value` (and nothing else does), so a
//! test can count the marks against the input. Coordinates are printed with one decimal so
//! the output is byte-for-byte deterministic.

use std::fmt::Write as _;

/// Colours of channels (cycled), in the order channels first appear in the report.
pub(crate) const CHANNEL_COLOURS: [&str; 10] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
/// Colours of the six attribution models (Okabe–Ito, readable by colour-blind readers).
pub(crate) const MODEL_COLOURS: [&str; 6] = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00"];

const WIDTH: f64 = 960.0;
const CHAR_WIDTH: f64 = 7.0;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Cuts a label to `max` characters with an ellipsis (before escaping).
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A coordinate, one decimal.
fn c(x: f64) -> String {
    let x = if x.is_finite() { x } else { 0.0 };
    let text = format!("{x:.1}");
    if text == "-0.0" {
        "0.0".to_owned()
    } else {
        text
    }
}

/// A finite value or zero, for geometry.
fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// A round axis top and step for values up to `max` (about four steps).
pub(crate) fn nice_scale(max: f64) -> (f64, f64) {
    if !max.is_finite() || max <= 0.0 {
        return (1.0, 0.25);
    }
    let raw = max / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let norm = raw / magnitude;
    let factor = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 2.5 {
        2.5
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    let step = factor * magnitude;
    ((max / step).ceil() * step, step)
}

fn open(out: &mut String, name: &str, title: &str, height: f64) {
    let title = escape(title);
    let _ = write!(
        out,
        r#"<svg class="chart" data-chart="{name}" role="img" aria-label="{title}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" preserveAspectRatio="xMinYMin meet"><title>{title}</title>"#,
        w = c(WIDTH),
        h = c(height),
    );
}

/// Legend entries laid out left to right, wrapping; returns the height used.
fn legend(out: &mut String, entries: &[(String, &str)], left: f64) -> f64 {
    let mut x = left;
    let mut y = 14.0;
    for (label, colour) in entries {
        let label = truncate(label, 30);
        let width = 22.0 + CHAR_WIDTH * label.chars().count() as f64;
        if x + width > WIDTH && x > left {
            x = left;
            y += 20.0;
        }
        let _ = write!(
            out,
            r#"<rect x="{}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}" class="legend">{}</text>"#,
            c(x),
            c(y - 10.0),
            c(x + 16.0),
            c(y),
            escape(&label)
        );
        x += width + 12.0;
    }
    if entries.is_empty() {
        0.0
    } else {
        y + 12.0
    }
}

/// Horizontal grid lines and the y-axis labels.
fn y_axis(out: &mut String, (left, top, width, height): (f64, f64, f64, f64), (axis_top, step): (f64, f64), label: &dyn Fn(f64) -> String) {
    let ticks = (axis_top / step).round() as usize;
    for i in 0..=ticks {
        let value = step * i as f64;
        let y = top + height - height * value / axis_top;
        let _ = write!(
            out,
            r#"<line x1="{l}" y1="{y}" x2="{r}" y2="{y}" class="grid"/><text x="{t}" y="{ty}" class="axis" text-anchor="end">{text}</text>"#,
            l = c(left),
            r = c(left + width),
            y = c(y),
            t = c(left - 6.0),
            ty = c(y + 4.0),
            text = escape(&label(value))
        );
    }
}

/// One point of a line.
pub(crate) struct Point {
    /// Index in the x labels.
    pub x: usize,
    pub y: f64,
    pub data_value: String,
    pub tip: String,
}

/// One line of a line chart.
pub(crate) struct Series {
    pub label: String,
    pub colour: &'static str,
    pub points: Vec<Point>,
}

/// A line chart: one line per series, a circle (the data mark) per point.
pub(crate) fn line_chart(name: &str, title: &str, x_labels: &[String], series: &[Series], y_label: &dyn Fn(f64) -> String) -> String {
    let mut body = String::new();
    let entries: Vec<(String, &str)> = series.iter().map(|s| (s.label.clone(), s.colour)).collect();
    let legend_height = legend(&mut body, &entries, 100.0);
    let (left, top, width, height) = (100.0, legend_height + 16.0, WIDTH - 130.0, 240.0);
    let max = series.iter().flat_map(|s| s.points.iter().map(|p| finite(p.y))).fold(0.0, f64::max);
    let scale = nice_scale(max);
    y_axis(&mut body, (left, top, width, height), scale, y_label);
    let slots = x_labels.len().max(1) as f64;
    let x_of = |i: usize| {
        if x_labels.len() <= 1 {
            left + width / 2.0
        } else {
            left + width * i as f64 / (slots - 1.0)
        }
    };
    let y_of = |v: f64| top + height - height * finite(v).max(0.0) / scale.0;
    let every = (x_labels.len() / 12).max(1);
    for (i, label) in x_labels.iter().enumerate() {
        if i % every == 0 {
            let _ = write!(
                body,
                r#"<text x="{}" y="{}" class="axis" text-anchor="middle">{}</text>"#,
                c(x_of(i)),
                c(top + height + 18.0),
                escape(label)
            );
        }
    }
    for s in series {
        let mut points: Vec<&Point> = s.points.iter().collect();
        points.sort_by_key(|p| p.x);
        let path: Vec<String> = points.iter().map(|p| format!("{},{}", c(x_of(p.x)), c(y_of(p.y)))).collect();
        let _ = write!(body, r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#, path.join(" "), s.colour);
        for p in points {
            let _ = write!(
                body,
                r#"<circle class="mark" cx="{}" cy="{}" r="3.5" fill="{}" data-value="{}"><title>{}</title></circle>"#,
                c(x_of(p.x)),
                c(y_of(p.y)),
                s.colour,
                escape(&p.data_value),
                escape(&p.tip)
            );
        }
    }
    let mut out = String::new();
    open(&mut out, name, title, top + height + 30.0);
    out.push_str(&body);
    out.push_str("</svg>");
    out
}

/// One bar of a grouped bar chart.
pub(crate) struct Bar {
    /// Index in the groups (x axis).
    pub group: usize,
    /// Index in the keys (colour, position inside the group).
    pub key: usize,
    pub value: f64,
    pub data_value: String,
    pub tip: String,
}

/// Vertical bars grouped along the x axis (e.g. channels), one colour per key (e.g. model).
pub(crate) fn grouped_bars(
    name: &str,
    title: &str,
    groups: &[String],
    keys: &[(String, &'static str)],
    bars: &[Bar],
    y_label: &dyn Fn(f64) -> String,
) -> String {
    let mut body = String::new();
    let legend_height = legend(&mut body, keys, 100.0);
    let (left, top, width, height) = (100.0, legend_height + 16.0, WIDTH - 130.0, 240.0);
    let max = bars.iter().map(|b| finite(b.value)).fold(0.0, f64::max);
    let scale = nice_scale(max);
    y_axis(&mut body, (left, top, width, height), scale, y_label);
    let group_width = width / groups.len().max(1) as f64;
    let bar_width = group_width * 0.8 / keys.len().max(1) as f64;
    let max_chars = ((group_width / CHAR_WIDTH) as usize).max(4);
    for (i, group) in groups.iter().enumerate() {
        let _ = write!(
            body,
            r#"<text x="{}" y="{}" class="axis" text-anchor="middle">{}</text>"#,
            c(left + group_width * (i as f64 + 0.5)),
            c(top + height + 18.0),
            escape(&truncate(group, max_chars))
        );
    }
    for bar in bars {
        let value = finite(bar.value).max(0.0);
        let h = height * value / scale.0;
        let x = left + group_width * (bar.group as f64 + 0.1) + bar_width * bar.key as f64;
        let colour = keys.get(bar.key).map_or("#777777", |k| k.1);
        let _ = write!(
            body,
            r#"<rect class="mark" x="{}" y="{}" width="{}" height="{}" fill="{colour}" data-value="{}"><title>{}</title></rect>"#,
            c(x),
            c(top + height - h),
            c((bar_width - 1.0).max(1.0)),
            c(h),
            escape(&bar.data_value),
            escape(&bar.tip)
        );
    }
    let _ = write!(
        body,
        r#"<line x1="{l}" y1="{y}" x2="{r}" y2="{y}" class="baseline"/>"#,
        l = c(left),
        r = c(left + width),
        y = c(top + height)
    );
    let mut out = String::new();
    open(&mut out, name, title, top + height + 30.0);
    out.push_str(&body);
    out.push_str("</svg>");
    out
}

/// A row of a horizontal bar chart.
pub(crate) enum HRow {
    /// A heading line (e.g. the channel of entry) above the bars that follow.
    Heading(String),
    Bar {
        label: String,
        /// Length of the bar as a fraction of the full width, 0–1.
        fraction: f64,
        colour: &'static str,
        data_value: String,
        /// Text printed after the bar.
        text: String,
        tip: String,
    },
}

/// Horizontal bars, each with its label on the left and a text after it.
pub(crate) fn hbars(name: &str, title: &str, rows: &[HRow]) -> String {
    let (label_width, bar_width) = (230.0, 480.0);
    let mut body = String::new();
    let mut y = 8.0;
    for row in rows {
        match row {
            HRow::Heading(text) => {
                let _ = write!(body, r#"<text x="0" y="{}" class="heading">{}</text>"#, c(y + 16.0), escape(&truncate(text, 60)));
                y += 26.0;
            }
            HRow::Bar { label, fraction, colour, data_value, text, tip } => {
                let w = bar_width * finite(*fraction).clamp(0.0, 1.0);
                let _ = write!(
                    body,
                    r#"<text x="{}" y="{}" class="axis" text-anchor="end">{}</text><rect class="mark" x="{}" y="{}" width="{}" height="18" fill="{colour}" data-value="{}"><title>{}</title></rect><text x="{}" y="{}" class="value">{}</text>"#,
                    c(label_width - 8.0),
                    c(y + 13.0),
                    escape(&truncate(label, 32)),
                    c(label_width),
                    c(y),
                    c(w),
                    escape(data_value),
                    escape(tip),
                    c(label_width + w + 6.0),
                    c(y + 13.0),
                    escape(text)
                );
                y += 24.0;
            }
        }
    }
    let mut out = String::new();
    open(&mut out, name, title, y + 8.0);
    out.push_str(&body);
    out.push_str("</svg>");
    out
}

/// A row of an interval chart: an estimate and its confidence interval.
pub(crate) struct Interval {
    pub label: String,
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub colour: &'static str,
    pub data_value: String,
    pub text: String,
    pub tip: String,
}

/// Dots with horizontal error bars around a zero line, one row per estimate.
pub(crate) fn interval_chart(name: &str, title: &str, rows: &[Interval], x_label: &dyn Fn(f64) -> String) -> String {
    let (left, width, row_height) = (230.0, 500.0, 30.0);
    let top = 10.0;
    let extent = rows.iter().flat_map(|r| [r.value, r.low, r.high]).map(|v| finite(v).abs()).fold(0.0, f64::max);
    let (half, step) = nice_scale(extent);
    let x_of = |v: f64| left + width * (finite(v).clamp(-half, half) + half) / (2.0 * half);
    let height = row_height * rows.len() as f64;
    let mut body = String::new();
    let ticks = (half / step).round() as i64;
    for i in -ticks..=ticks {
        let value = step * i as f64;
        let x = x_of(value);
        let class = if i == 0 { "zero" } else { "grid" };
        let _ = write!(
            body,
            r#"<line x1="{x}" y1="{t}" x2="{x}" y2="{b}" class="{class}"/><text x="{x}" y="{ty}" class="axis" text-anchor="middle">{}</text>"#,
            escape(&x_label(value)),
            x = c(x),
            t = c(top),
            b = c(top + height),
            ty = c(top + height + 16.0),
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = top + row_height * (i as f64 + 0.5);
        let (low, high) = (x_of(row.low), x_of(row.high));
        let _ = write!(
            body,
            r#"<text x="{}" y="{}" class="axis" text-anchor="end">{}</text><line x1="{lo}" y1="{y}" x2="{hi}" y2="{y}" stroke="{colour}" stroke-width="2"/><line x1="{lo}" y1="{y1}" x2="{lo}" y2="{y2}" stroke="{colour}" stroke-width="2"/><line x1="{hi}" y1="{y1}" x2="{hi}" y2="{y2}" stroke="{colour}" stroke-width="2"/><circle class="mark" cx="{}" cy="{y}" r="5" fill="{colour}" data-value="{}"><title>{}</title></circle><text x="{}" y="{}" class="value">{}</text>"#,
            c(left - 8.0),
            c(y + 4.0),
            escape(&truncate(&row.label, 32)),
            c(x_of(row.value)),
            escape(&row.data_value),
            escape(&row.tip),
            c(left + width + 10.0),
            c(y + 4.0),
            escape(&row.text),
            lo = c(low),
            hi = c(high),
            y = c(y),
            y1 = c(y - 6.0),
            y2 = c(y + 6.0),
            colour = row.colour,
        );
    }
    let mut out = String::new();
    open(&mut out, name, title, top + height + 26.0);
    out.push_str(&body);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape(r#"<script>alert("x & 'y'")</script>"#), "&lt;script&gt;alert(&quot;x &amp; &#39;y&#39;&quot;)&lt;/script&gt;");
        assert_eq!(escape("Noël — fidèles"), "Noël — fidèles");
    }

    #[test]
    fn truncates_on_characters() {
        assert_eq!(truncate("éééé", 4), "éééé");
        assert_eq!(truncate("ééééé", 4), "ééé…");
    }

    #[test]
    fn nice_scales() {
        assert_eq!(nice_scale(0.0), (1.0, 0.25));
        assert_eq!(nice_scale(f64::NAN), (1.0, 0.25));
        assert_eq!(nice_scale(100.0), (100.0, 25.0));
        assert_eq!(nice_scale(93.0), (100.0, 25.0));
        assert_eq!(nice_scale(1234.0), (1500.0, 500.0));
        let (top, step) = nice_scale(0.037);
        assert!(top >= 0.037 && step > 0.0);
    }

    #[test]
    fn coordinates_are_stable() {
        assert_eq!(c(-0.01), "0.0");
        assert_eq!(c(f64::NAN), "0.0");
        assert_eq!(c(12.34), "12.3");
    }
}
