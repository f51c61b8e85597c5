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
    let args = [
        "ecommerce",
        "--seed",
        "42",
        "--persons",
        "200",
        "--now",
        "2026-11-23T00:00:00Z",
        "--out-dir",
        out_dir,
    ];
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
    let out = datagen(&[
        "ecommerce",
        "--seed",
        "1",
        "--persons",
        "3",
        "--out-dir",
        blocker.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("datagen: error: creating directory"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = fs::remove_dir_all(&dir);
}
