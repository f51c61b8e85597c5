//! End-to-end tests of the `datagen` binary.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

/// A fresh, empty scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ariane-datagen-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn datagen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_datagen")).args(args).output().expect("datagen runs")
}

#[test]
fn ecommerce_writes_the_three_files() {
    let dir = scratch("files");
    let out_dir = dir.to_str().expect("UTF-8 temp dir");
    let args = ["ecommerce", "--seed", "42", "--persons", "200", "--now", "2026-11-23T00:00:00Z", "--out-dir", out_dir];
    let first = datagen(&args);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let stderr = String::from_utf8(first.stderr).expect("UTF-8 summary");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("rows") && stderr.contains("orders"), "{stderr}");

    let orders = fs::read(dir.join("ecommerce/orders.csv")).expect("orders written");
    let truth = fs::read(dir.join("truth/ecommerce-orders.csv")).expect("truth written");
    let persons = fs::read_to_string(dir.join("truth/persons.csv")).expect("persons written");
    assert!(orders.starts_with(b"Name,Email,Phone,Customer ID,Created at,"));
    assert_eq!(persons.lines().count(), 201);
    let rows = ariane_datagen::read_truth(truth.as_slice()).expect("truth parses");
    assert_eq!(rows.len() + 1, orders.iter().filter(|&&b| b == b'\n').count());

    // Same arguments, same bytes; and the library produces the same thing.
    let second = datagen(&args);
    assert!(second.status.success());
    assert_eq!(fs::read(dir.join("ecommerce/orders.csv")).unwrap(), orders);
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().to_utc();
    let cfg = ariane_datagen::GenConfig::new(42, 200, now);
    let (mut lib_orders, mut lib_truth) = (Vec::new(), Vec::new());
    ariane_datagen::write_ecommerce_orders(&cfg, &mut lib_orders, &mut lib_truth).unwrap();
    assert_eq!(lib_orders, orders);
    assert_eq!(lib_truth, truth);

    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_exit_with_status_2() {
    let out = datagen(&["ecommerce", "--seed", "abc", "--persons", "3", "--out-dir", "x"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--seed expects a non-negative integer"), "{stderr}");
    assert!(stderr.contains("Usage:"), "{stderr}");

    let out = datagen(&[]);
    assert_eq!(out.status.code(), Some(2));

    let help = datagen(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("datagen ecommerce"));
}

#[test]
fn unwritable_output_is_an_error_not_a_panic() {
    let dir = scratch("unwritable");
    fs::create_dir_all(&dir).unwrap();
    // A regular file where a directory is expected.
    let blocker = dir.join("blocker");
    fs::write(&blocker, b"").unwrap();
    let out = datagen(&["ecommerce", "--seed", "1", "--persons", "3", "--out-dir", blocker.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("datagen: error: creating directory"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn channels_writes_every_export_with_its_truth() {
    let dir = scratch("channels");
    let out_dir = dir.to_str().expect("UTF-8 temp dir");
    let args =
        ["channels", "--seed", "3", "--persons", "120", "--now", "2026-11-23T00:00:00Z", "--out-dir", out_dir, "--malformed-rate", "0.01"];
    let run = datagen(&args);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stderr = String::from_utf8(run.stderr).expect("UTF-8 summary");
    for export in ariane_datagen::Export::ALL {
        assert!(stderr.contains(&export.relative_path()), "{stderr}");
        let data = fs::read(dir.join(export.relative_path())).expect("export written");
        let truth = fs::read(dir.join(export.truth_relative_path())).expect("truth written");
        let rows = ariane_datagen::read_channel_truth(truth.as_slice()).expect("truth parses");
        assert!(!rows.is_empty(), "{export}");
        // Same bytes as the library.
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T00:00:00Z").unwrap().to_utc();
        let cfg = ariane_datagen::GenConfig { malformed_rate: 0.01, ..ariane_datagen::GenConfig::new(3, 120, now) };
        let (mut lib, mut lib_truth) = (Vec::new(), Vec::new());
        ariane_datagen::write_channel(&cfg, export, &mut lib, &mut lib_truth).unwrap();
        assert_eq!(lib, data, "{export}");
        assert_eq!(lib_truth, truth, "{export}");
    }
    assert!(fs::read(dir.join("pos/receipts.csv")).unwrap().starts_with(b"Magasin;Date;Caisse;Ticket;Ligne;Type;Carte fid\xe9lit\xe9;"));
    assert_eq!(fs::read_to_string(dir.join("persons.csv")).unwrap().lines().count(), 121);
    assert_eq!(fs::read_to_string(dir.join("identities.csv")).unwrap().lines().count(), 121);

    let utf8 = datagen(&["channels", "--seed", "3", "--persons", "20", "--out-dir", out_dir, "--pos-encoding", "utf-8-bom"]);
    assert!(utf8.status.success(), "{}", String::from_utf8_lossy(&utf8.stderr));
    assert!(fs::read(dir.join("pos/receipts.csv")).unwrap().starts_with("\u{feff}Magasin;Date;".as_bytes()));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn channel_writes_a_fixed_number_of_rows() {
    let dir = scratch("channel");
    let out = dir.join("web.ndjson");
    let run = datagen(&["channel", "--channel", "web", "--rows", "5000", "--now", "2026-11-23", "--out", out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stderr).contains("rows/s"));
    let truth = fs::read(dir.join("web.truth.csv")).expect("truth beside the export");
    assert_eq!(ariane_datagen::read_channel_truth(truth.as_slice()).unwrap().len(), 5000);
    let text = fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().filter(|l| !l.is_empty()).count(), 5000);

    let bad = datagen(&["channel", "--channel", "fax", "--rows", "1", "--out", "x"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown export"));
    let _ = fs::remove_dir_all(&dir);
}
