//! `ariane-local validate`: the pre-deployment check of channel specs and segments.

use std::process::Command;

fn validate(args: &[&str]) -> (bool, String) {
    // Run from the repository root, as `make validate` does (spec paths are relative to it).
    let out = Command::new(env!("CARGO_BIN_EXE_ariane-local"))
        .current_dir(ariane_local::repo_root())
        .arg("validate")
        .args(args)
        .output()
        .expect("runs");
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
fn a_spec_that_could_give_the_ids_of_another_specs_rows_is_refused() {
    // A till export of another vendor: store purchases keyed by four values, like
    // channels/pos/receipts.toml, so a row of each could get one event id.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiosk.toml");
    let spec = |extra: &str| {
        format!(
            "channel = \"pos\"\nname = \"kiosk\"\nkeys = [\"kiosk/**\"]\n[format]\nkind = \"ndjson\"\n[event_type]\nconstant = \"store_purchase\"\n\
             [natural_key]\nsources = [\"store\", \"till\", \"receipt\", \"line\"]\n{extra}\n[fields]\noccurred_at = {{ source = \"at\", format = \"rfc3339\" }}\n"
        )
    };
    std::fs::write(&path, spec("")).unwrap();
    let (ok, out) = validate(&[path.to_str().unwrap()]);
    assert!(!ok, "{out}");
    // Reported on the later file by name, naming the other one, with both ways out.
    assert!(
        out.contains(&format!(
            "channels/pos/receipts.toml: natural_key: could give the same event ids as {} to different rows",
            path.display()
        )) && out.contains("store_purchase events with a natural key of 4 values")
            && out.contains("[\"receipts\"] in ")
            && out.contains("natural_key.scope"),
        "{out}"
    );
    // Said to be the same source (a new export format of the till receipts), or a source of
    // its own: accepted.
    for extra in ["same_rows_as = [\"receipts\"]", "scope = \"kiosk\""] {
        std::fs::write(&path, spec(extra)).unwrap();
        let (ok, out) = validate(&[path.to_str().unwrap()]);
        assert!(ok, "{extra}: {out}");
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

/// `validate SPEC --sample EXPORT` with its exit status and stdout + stderr.
fn dry_run(spec: &str, sample: &std::path::Path) -> (bool, String) {
    validate(&[spec, "--sample", sample.to_str().unwrap()])
}

/// Windows-1252 for the few French letters of the samples (this crate has no encoder).
fn cp1252(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            'é' => 0xE9,
            'è' => 0xE8,
            'ê' => 0xEA,
            'É' => 0xC9,
            c if c.is_ascii() => c as u8,
            other => panic!("{other} is not in the samples' Windows-1252 table"),
        })
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, bytes).unwrap();
    gz.finish().unwrap()
}

/// A till export of the repository's pos spec (Windows-1252, `;`, decimal comma): a
/// two-line receipt, a blank line, a bad amount, a short row.
fn till_sample() -> Vec<u8> {
    let at = (chrono::Utc::now() - chrono::Duration::days(5)).format("%d/%m/%Y 10:00");
    cp1252(&format!(
        "Magasin;Date;Caisse;Ticket;Ligne;Type;Carte fidélité;Email;Téléphone;Code article;Libellé;Rayon;Quantité;Prix unitaire;Montant ligne;Total ticket\r\n\
         M012;{at};C2;T1001;1;VENTE;fid 0042 17; Marie.Dupont@Gmail.com ;06 12 34 56 78;SKU-1;Crème;Beauté;2;12,50;25,00;37,40\r\n\
         M012;;;T1001;2;;;;;SKU-2;Pull;Vêtements;1;12,40;12,40;\r\n\
         \r\n\
         M012;{at};C1;T1004;1;VENTE;;;;SKU-3;Écharpe;Accessoires;1;12,5O;12,50;12,50\r\n\
         M012;{at};C1;T1006;1;VENTE;;;\r\n"
    ))
}

#[test]
fn a_sample_dry_run_prints_events_rejects_with_lines_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("caisse.csv.gz");
    std::fs::write(&sample, gzip(&till_sample())).unwrap();
    let (ok, out) = dry_run("channels/pos/receipts.toml", &sample);
    assert!(ok, "rejected rows are reported, not fatal: {out}");
    assert!(out.contains("landing key pos/caisse.csv.gz: read with this spec"), "{out}");
    // The mapped events, decoded from Windows-1252, with the identifiers in clear.
    assert!(out.contains("first 2 mapped event(s) of 2:") && out.contains("  line 2: store_purchase at "), "{out}");
    assert!(out.contains("category = \"Beauté\"") && out.contains("unit_price_minor = 1250"), "{out}");
    assert!(out.contains("identity: email marie.dupont@gmail.com, phone +33612345678, loyalty_card FID004217"), "{out}");
    // Every rejected row with its physical line (the blank line counted) and reason.
    assert!(out.contains("rejected rows: 2"), "{out}");
    assert!(out.contains("  line 5: unit_price_minor (column \"Prix unitaire\"): \"12,5O\" is not an amount"), "{out}");
    assert!(out.contains("  line 6: expected 16 fields, found 9"), "{out}");
    assert!(
        out.contains("counts: read 4 rows, written 2, rejected 2; 6 lines = 4 rows + 2 skipped (blank 1, header 1, continuation 0)"),
        "{out}"
    );

    // Fewer events shown on request; a landing key of another spec is pointed out.
    let (ok, out) = validate(&[
        "channels/ecommerce/orders.toml",
        "--sample",
        sample.to_str().unwrap(),
        "--events",
        "1",
        "--key",
        "ecommerce/abandoned-carts.csv",
    ]);
    assert!(!ok, "a till export is not an orders export: {out}");
    assert!(out.contains("would be read with channels/ecommerce/checkouts.toml, not this spec"), "{out}");
    assert!(out.contains("missing required column(s)") && out.contains("the header has [\"Magasin;Date;"), "{out}");
}

#[test]
fn a_sample_dry_run_reads_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let micros = (chrono::Utc::now() - chrono::Duration::days(2)).timestamp_micros();
    let millis = micros / 1000;
    // NDJSON (web): a blank line skipped, a line that is not JSON rejected.
    let ndjson = dir.path().join("events.ndjson");
    std::fs::write(
        &ndjson,
        format!(
            "{{\"event_timestamp\":\"{micros}\",\"event_name\":\"sign_up\",\"user_pseudo_id\":\"123.456\",\"event_params\":[{{\"key\":\"email\",\"value\":{{\"string_value\":\" Marie@X.fr \"}}}}]}}\n\n{{\"event_timestamp\": \n"
        ),
    )
    .unwrap();
    let (ok, out) = dry_run("channels/web/events.toml", &ndjson);
    assert!(ok, "{out}");
    assert!(out.contains("line 1: sign_up at") && out.contains("email marie@x.fr"), "{out}");
    assert!(out.contains("  line 3: invalid JSON"), "{out}");
    assert!(
        out.contains("counts: read 2 rows, written 1, rejected 1; 3 lines = 2 rows + 1 skipped (blank 1, header 0, continuation 0)"),
        "{out}"
    );
    // A JSON array (app), gzipped.
    let array = dir.path().join("app.json.gz");
    let body = format!(
        "[\n {{\"event_id\": \"a1\", \"event\": \"app_open\", \"timestamp_ms\": {millis}, \"device\": {{\"id\": \"dev-1\"}}}},\n \"not an object\"\n]\n"
    );
    std::fs::write(&array, gzip(body.as_bytes())).unwrap();
    let (ok, out) = dry_run("channels/app/events.toml", &array);
    assert!(ok, "{out}");
    assert!(out.contains("line 2: app_open at") && out.contains("line 3: not a JSON object"), "{out}");
    assert!(
        out.contains("counts: read 2 rows, written 1, rejected 1; 4 lines = 2 rows + 2 skipped (blank 0, header 1, continuation 1)"),
        "{out}"
    );
    // Parquet, with a spec of its own outside the repository, one column optional.
    let spec = dir.path().join("activity.toml");
    std::fs::write(
        &spec,
        "channel = \"email\"\nname = \"parquet-activity\"\nkeys = [\"**/*.parquet\"]\n[format]\nkind = \"parquet\"\n[event_type]\nconstant = \"email_open\"\n\
         [fields]\noccurred_at = { source = \"ts\", format = \"epoch_ms\" }\nemail = { source = \"email\", required = true }\n\
         campaign_id = { source = \"campaign\", optional = true }\n",
    )
    .unwrap();
    let parquet = dir.path().join("opens.parquet");
    {
        use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
        use std::sync::Arc;
        let batch = RecordBatch::try_from_iter(vec![
            ("email", Arc::new(StringArray::from(vec![Some("A@B.fr"), None])) as ArrayRef),
            ("ts", Arc::new(Int64Array::from(vec![millis, millis])) as ArrayRef),
        ])
        .unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&parquet).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let (ok, out) = dry_run(spec.to_str().unwrap(), &parquet);
    assert!(ok, "{out}");
    assert!(out.contains("optional columns absent from the sample (blank in every row): campaign"), "{out}");
    assert!(out.contains("identity: email a@b.fr") && out.contains("  line 2: email (column \"email\") is blank"), "{out}");
    assert!(
        out.contains("counts: read 2 rows, written 1, rejected 1; 2 lines = 2 rows + 0 skipped (blank 0, header 0, continuation 0)"),
        "{out}"
    );
}

#[test]
fn a_sample_dry_run_fails_on_a_bad_spec_or_an_unreadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("caisse.csv");
    std::fs::write(&sample, till_sample()).unwrap();
    let spec = dir.path().join("bad.toml");
    std::fs::write(
        &spec,
        "channel = \"pos\"\nname = \"bad\"\n[format]\nkind = \"csv\"\n[event_type]\nconstant = \"x\"\n[fields]\nsku = { source = \"s\" }\n",
    )
    .unwrap();
    let (ok, out) = dry_run(spec.to_str().unwrap(), &sample);
    assert!(!ok && out.contains("bad.toml: fields.occurred_at: missing required mapping"), "{out}");
    let (ok, out) = dry_run("channels/pos/receipts.toml", &dir.path().join("nowhere.csv"));
    assert!(!ok && out.contains("nowhere.csv: cannot be read with channels/pos/receipts.toml"), "{out}");
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let (ok, out) = dry_run("channels/pos/receipts.toml", &empty);
    assert!(!ok && out.contains("the file is empty"), "{out}");
    let (ok, out) = validate(&["channels/pos/receipts.toml", "channels/web/events.toml", "--sample", sample.to_str().unwrap()]);
    assert!(!ok && out.contains("--sample needs exactly one channel spec"), "{out}");
}

#[test]
fn overlapping_key_patterns_are_refused_with_both_files() {
    // A new till spec with the catch-all beside channels/pos/receipts.toml's own: checked
    // with the specs of its channel on disk, it is refused, naming both.
    let dir = tempfile::tempdir().unwrap();
    let spec = |keys: &str| {
        format!(
            "channel = \"pos\"\nname = \"kiosk\"\nkeys = {keys}\n[format]\nkind = \"ndjson\"\n[event_type]\nconstant = \"store_purchase\"\n\
             [fields]\noccurred_at = {{ source = \"at\", format = \"rfc3339\" }}\n"
        )
    };
    let path = dir.path().join("kiosk.toml");
    std::fs::write(&path, spec("[\"**\"]")).unwrap();
    let (ok, out) = validate(&[path.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("channels/pos/receipts.toml: keys: pattern \"**\" overlaps pattern \"**\" of ")
            && out.contains("kiosk.toml with equal precedence (two catch-alls)"),
        "{out}"
    );
    // Its own specific patterns are ordered before the catch-all: accepted.
    std::fs::write(&path, spec("[\"kiosk/**\", \"**/*.ndjson\"]")).unwrap();
    let (ok, out) = validate(&[path.to_str().unwrap()]);
    assert!(ok && out.contains("2 channel spec(s) valid: pos/kiosk, pos/receipts"), "{out}");
    // Two specific patterns of two specs accepting the same key: refused.
    let other = dir.path().join("tablet.toml");
    std::fs::write(&other, spec("[\"*.ndjson\"]").replace("kiosk", "tablet")).unwrap();
    let (ok, out) = validate(&[path.to_str().unwrap(), other.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("tablet.toml: keys: pattern \"*.ndjson\" overlaps pattern \"**/*.ndjson\" of "), "{out}");
    assert!(out.contains("two specific patterns") && out.contains("a file such as \"pos/"), "{out}");
}

/// The first fenced block of `lang` in `text`.
fn block<'t>(text: &'t str, lang: &str) -> &'t str {
    text.split(&format!("```{lang}\n")).nth(1).and_then(|b| b.split("```").next()).unwrap_or_else(|| panic!("a {lang} block"))
}

#[test]
fn the_walkthrough_in_channels_readme_runs_as_written() {
    let root = ariane_local::repo_root();
    let readme = std::fs::read_to_string(root.join("channels/README.md")).unwrap();
    let walkthrough = readme.split("## Write a spec for your export").nth(1).expect("the walkthrough").split("\n## ").next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("pickups-2026-11-12.csv");
    std::fs::write(&sample, block(walkthrough, "csv")).unwrap();
    let spec = dir.path().join("pickups.toml");
    std::fs::write(&spec, block(walkthrough, "toml")).unwrap();
    let (ok, out) = validate(&[spec.to_str().unwrap(), "--sample", sample.to_str().unwrap(), "--key", "pos/pickups/2026-11-12.csv"]);
    assert!(ok, "{out}");
    let printed: Vec<&str> = out.lines().collect();
    for line in block(walkthrough, "text").lines().skip(1) {
        assert!(printed.contains(&line), "the README shows {line:?}, the dry run printed:\n{out}");
    }

    // The overlap message the README shows, for the same spec with the catch-all.
    let choosing = readme.split("## Choosing a spec for a file").nth(1).expect("the selection section");
    let shown = block(choosing, "text").trim();
    std::fs::write(&spec, block(walkthrough, "toml").replace("keys = [\"pickups/**\"]", "keys = [\"**\"]")).unwrap();
    let (ok, out) = validate(&[spec.to_str().unwrap()]);
    assert!(!ok, "{out}");
    let out = out.replace(spec.to_str().unwrap(), "channels/pos/pickups.toml");
    assert!(out.contains(shown), "the README shows {shown:?}, validate printed:\n{out}");
}

#[test]
fn the_measure_library_is_valid_and_a_broken_measure_names_its_file() {
    let (ok, out) = validate(&[]);
    assert!(ok && out.contains("measure file(s) valid") && out.contains("channel-kpis"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let measures = dir.path().join("measures");
    std::fs::create_dir(&measures).unwrap();
    let path = measures.join("weekly.sql");
    std::fs::write(&path, "-- name: weekly\n-- description: d\nSELECT no_such_column FROM orders").unwrap();
    let (ok, out) = validate(&[path.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("weekly.sql") && out.contains("no_such_column"), "{out}");
}

#[test]
fn the_spend_file_is_read_without_any_person_and_its_bad_rows_are_rejected_with_their_line() {
    // channels/costs/spend.toml on a hand-written spend file: two good rows (a channel in
    // capitals, an amount with one decimal, a lower-case currency), a blank line, then one
    // bad row per reason.
    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("spend.csv");
    std::fs::write(
        &sample,
        "day,channel,campaign,amount,currency\n\
         2026-11-16,email,,45.00,EUR\n\
         2026-11-16,Web,black-friday,120.5,eur\n\
         \n\
         2026-11-17,tv,,10.00,EUR\n\
         2026-11-17,sms,,-3.00,EUR\n\
         2026-11-31,sms,,3.00,EUR\n\
         2026-11-17,sms,,3.00,USD\n\
         2026-11-17,app,,\"12,50\",EUR\n",
    )
    .unwrap();
    let (ok, out) = validate(&["channels/costs/spend.toml", "--sample", sample.to_str().unwrap(), "--key", "costs/2026-11-18/spend.csv"]);
    assert!(ok, "{out}");
    assert!(out.contains("landing key costs/2026-11-18/spend.csv: read with this spec"), "{out}");
    // Amounts in cents, the paid channel in `category`, no identity at all.
    assert!(out.contains("line 2: spend at 2026-11-16T00:00:00Z") && out.contains("line 3: spend at 2026-11-16T00:00:00Z"), "{out}");
    assert!(out.contains("category = \"email\"") && out.contains("line_total_minor = 4500"), "{out}");
    assert!(out.contains("campaign_id = \"black-friday\", category = \"web\", currency = \"EUR\", line_total_minor = 12050"), "{out}");
    assert_eq!(out.matches("identity: no identifier").count(), 2, "{out}");
    // Each bad row with its physical line (the blank line counts) and its reason.
    assert!(out.contains("rejected rows: 5"), "{out}");
    for (line, reason) in [(5, "\"tv\""), (6, "below the minimum"), (7, "2026-11-31"), (8, "\"USD\""), (9, "12,50")] {
        let shown =
            out.lines().find(|l| l.trim_start().starts_with(&format!("line {line}:"))).unwrap_or_else(|| panic!("line {line}: {out}"));
        assert!(shown.contains(reason), "line {line}: {shown}");
    }
    assert!(out.contains("written 2, rejected 5") && out.contains("observations 0"), "{out}");
}
