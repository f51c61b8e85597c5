//! `ariane-local validate`: the pre-deployment check of channel specs and segments.

use std::process::Command;

fn validate(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ariane-local")).arg("validate").args(args).output().expect("runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_repository_specs_are_valid() {
    let (ok, out) = validate(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("channel spec(s) valid") && out.contains("pos/receipts"), "{out}");
}

#[test]
fn a_bad_spec_is_reported_with_its_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "shoe.toml",
            "occurred_at = { source = \"d\", format = \"%d/%m/%Y\" }\nshoe_size = { source = \"s\" }",
            "fields.shoe_size",
            "unknown canonical field",
        ),
        ("date.toml", "occurred_at = { source = \"d\", format = \"%d/%Q/%Y\" }", "fields.occurred_at.format", "strftime"),
        ("missing.toml", "email = { source = \"e\" }", "fields.occurred_at", "missing required mapping"),
    ];
    for (name, fields, field, message) in cases {
        let path = dir.path().join(name);
        let text =
            format!("channel = \"pos\"\nname = \"t\"\n[format]\nkind = \"csv\"\n[event_type]\nconstant = \"x\"\n[fields]\n{fields}\n");
        std::fs::write(&path, text).unwrap();
        let (ok, out) = validate(&[path.to_str().unwrap()]);
        assert!(!ok, "{name} must fail: {out}");
        assert!(out.contains(name) && out.contains(field) && out.contains(message), "{name}: {out}");
    }
}

#[test]
fn a_bad_segment_is_refused_with_its_file_and_reason() {
    let (ok, out) = validate(&[]);
    assert!(ok && out.contains("8 segment file(s) valid"), "the library is valid: {out}");
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("typo.sql", "-- name: typo\nSELEC profile_id FROM orders", "sql"),
        ("col.sql", "-- name: col\nSELECT profile_id, shoe_size FROM profiles", "shoe_size"),
        ("noid.sql", "-- name: noid\nSELECT order_id FROM orders", "profile_id"),
        ("when.sql", "-- name: when\nSELECT profile_id FROM orders WHERE ordered_at > {{today}}", "today"),
        ("sched.sql", "-- name: sched\n-- schedule: daily\nSELECT profile_id FROM orders", "rate("),
        ("tier.sql", "-- name: tier\n-- key: tier\nSELECT profile_id FROM orders", "tier"),
    ];
    for (name, text, reason) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let (ok, out) = validate(&[path.to_str().unwrap()]);
        assert!(!ok, "{name} must be refused: {out}");
        assert!(out.contains(name) && out.to_lowercase().contains(reason), "{name}: {out}");
    }
}

#[test]
fn a_bad_campaign_is_refused_with_its_file_and_reason() {
    let (ok, out) = validate(&[]);
    assert!(ok && out.contains("campaign file(s) valid") && out.contains("abandoned-cart"), "the campaigns are valid: {out}");
    let campaigns = out.lines().find(|l| l.contains("campaign file(s) valid")).unwrap_or_default();
    assert!(campaigns.contains("up-sell") && campaigns.contains("cross-sell"), "the campaign library: {out}");
    let root = ariane_local::repo_root();
    let good = std::fs::read_to_string(root.join("campaigns/reactivation.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let campaigns = dir.path().join("campaigns");
    std::fs::create_dir(&campaigns).unwrap();
    let cases = [
        ("segment", good.replace("segment = \"reactivation\"", "segment = \"lapsed\""), "lapsed"),
        ("payload", good.replace("\"order_count\",", "\"order_count\", \"basket\","), "basket"),
        ("destination", good.replace("destination = \"esp\"", "destination = \"mailchimp\""), "mailchimp"),
        ("channel", good.replace("order = [\"email\", \"sms\"]", "order = [\"email\", \"fax\"]"), "fax"),
        ("holdout", good.replace("holdout_percent = 10", "holdout_percent = 75"), "holdout_percent"),
    ];
    for (what, text, needle) in cases {
        let path = campaigns.join("reactivation.toml");
        std::fs::write(&path, text).unwrap();
        let (ok, out) = validate(&[path.to_str().unwrap()]);
        assert!(!ok, "{what} must be refused: {out}");
        assert!(out.contains("reactivation.toml") && out.contains(needle), "{what}: {out}");
    }
    let rules = dir.path().join("activation.toml");
    std::fs::write(&rules, "time_zone = \"Mars/Olympus\"\n[frequency_cap]\nmax_messages = 3\nwindow_days = 7\n[destinations]\n").unwrap();
    let (ok, out) = validate(&[rules.to_str().unwrap()]);
    assert!(!ok && out.contains("activation.toml") && out.contains("time_zone"), "{out}");
}
