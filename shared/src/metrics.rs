//! Counts that matter, emitted as CloudWatch Embedded Metric Format lines on stdout
//! (CloudWatch turns them into metrics without any API call).

use serde_json::{json, Map, Value};

/// Prints one EMF line with the given counters under the `Ariane` namespace
/// (unless `ARIANE_METRICS=off`, which the local demo sets to keep its output readable).
pub fn emit(function: &str, metrics: &[(&str, f64)]) {
    if std::env::var("ARIANE_METRICS").is_ok_and(|v| v == "off") {
        return;
    }
    println!("{}", emf_line(function, metrics, chrono::Utc::now().timestamp_millis()));
}

/// The EMF document for [`emit`] (separate for testing).
pub fn emf_line(function: &str, metrics: &[(&str, f64)], timestamp_ms: i64) -> String {
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": "Ariane",
                "Dimensions": [["Function"]],
                "Metrics": metrics.iter().map(|(n, _)| json!({"Name": n, "Unit": "Count"})).collect::<Vec<_>>(),
            }]
        }),
    );
    root.insert("Function".into(), Value::String(function.into()));
    for (name, value) in metrics {
        root.insert((*name).into(), json!(value));
    }
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn emf_has_metrics_and_values() {
        let line = super::emf_line("ingest", &[("RowsRead", 10.0), ("RowsRejected", 1.0)], 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["RowsRead"], 10.0);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Name"], "RowsRejected");
    }
}
