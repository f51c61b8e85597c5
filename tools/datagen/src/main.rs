//! `datagen`: command-line front end of `ariane-datagen`.
//!
//! ```text
//! datagen ecommerce --seed 42 --persons 1000 --now 2026-11-23T00:00:00Z --out-dir DIR [--malformed-rate 0.004]
//! ```
//!
//! writes `DIR/ecommerce/orders.csv`, `DIR/truth/ecommerce-orders.csv` and
//! `DIR/truth/persons.csv`, then prints a one-line summary to stderr.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use ariane_datagen::{write_ecommerce_orders, write_persons, GenConfig, DEFAULT_MALFORMED_RATE};
use chrono::{DateTime, NaiveDate, Utc};

const USAGE: &str = "\
Usage: datagen ecommerce --seed N --persons N --out-dir DIR [--now INSTANT] [--malformed-rate R]

Generates a deterministic Shopify-style orders export of synthetic French
customers, with its ground truth:
  DIR/ecommerce/orders.csv        the orders export
  DIR/truth/ecommerce-orders.csv  per-row truth (person, order, validity)
  DIR/truth/persons.csv           the generated persons

Options:
  --seed N             master seed (unsigned 64-bit integer)
  --persons N          number of persons to generate
  --out-dir DIR        output directory (created if missing)
  --now INSTANT        reference instant, RFC 3339 (2026-11-23T00:00:00Z) or a
                       date (2026-11-23, midnight UTC); default: today 00:00 UTC
  --malformed-rate R   share of order lines made malformed, in [0, 1]
                       (default 0.004)
  -h, --help           print this help";

/// A parsed command line.
#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Ecommerce { cfg: GenConfig, out_dir: PathBuf },
}

/// Parses an unsigned integer, allowing `_` digit separators (`1_000_000`).
fn parse_count<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    let digits: String = value.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{flag} expects a non-negative integer, got {value:?}"
        ));
    }
    digits
        .parse()
        .map_err(|_| format!("{flag} value {value:?} is too large"))
}

/// Parses `--now`: RFC 3339 with any offset, or a plain date (midnight UTC).
fn parse_now(value: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(value) {
        return Ok(instant.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .ok_or_else(|| {
            format!("--now expects an RFC 3339 instant (2026-11-23T00:00:00Z) or a date (2026-11-23), got {value:?}")
        })
}

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "--malformed-rate expects a number between 0 and 1, got {value:?}"
        )),
    }
}

/// Today at 00:00 UTC.
fn today() -> DateTime<Utc> {
    let now = Utc::now();
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(now, |d| d.and_utc())
}

/// Parses the arguments following the program name.
fn parse_args<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, String> {
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        return Err("missing command".to_owned());
    };
    match command.to_str() {
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some("ecommerce") => {}
        _ => {
            return Err(format!(
                "unknown command {command:?} (expected `ecommerce`)"
            ))
        }
    }

    let (mut seed, mut persons, mut now, mut out_dir, mut rate) = (None, None, None, None, None);
    while let Some(arg) = args.next() {
        let Some(arg) = arg.to_str().map(str::to_owned) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(OsString::from(value)))
            }
            _ => (arg, None),
        };
        if !matches!(
            flag.as_str(),
            "--seed" | "--persons" | "--now" | "--out-dir" | "--malformed-rate"
        ) {
            return Err(format!("unknown argument {flag:?}"));
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            return Err(format!("missing value for {flag}"));
        };
        if flag == "--out-dir" {
            if value.is_empty() {
                return Err("--out-dir must not be empty".to_owned());
            }
            if out_dir.replace(PathBuf::from(value)).is_some() {
                return Err("--out-dir given more than once".to_owned());
            }
            continue;
        }
        let Some(value) = value.to_str() else {
            return Err(format!("{flag} value {value:?} is not valid UTF-8"));
        };
        let duplicate = match flag.as_str() {
            "--seed" => seed.replace(parse_count::<u64>(&flag, value)?).is_some(),
            "--persons" => persons
                .replace(parse_count::<usize>(&flag, value)?)
                .is_some(),
            "--now" => now.replace(parse_now(value)?).is_some(),
            _ => rate.replace(parse_rate(value)?).is_some(),
        };
        if duplicate {
            return Err(format!("{flag} given more than once"));
        }
    }

    let seed = seed.ok_or("missing required --seed")?;
    let persons = persons.ok_or("missing required --persons")?;
    let out_dir = out_dir.ok_or("missing required --out-dir")?;
    let mut cfg = GenConfig::new(seed, persons, now.unwrap_or_else(today));
    cfg.malformed_rate = rate.unwrap_or(DEFAULT_MALFORMED_RATE);
    Ok(Command::Ecommerce { cfg, out_dir })
}

/// Creates `path`'s parent directory and a buffered writer on `path`.
fn create(path: &Path) -> anyhow::Result<BufWriter<File>> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("creating directory {}", parent.display()))?;
    }
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(BufWriter::new(file))
}

fn run_ecommerce(cfg: &GenConfig, out_dir: &Path) -> anyhow::Result<()> {
    let orders_path = out_dir.join("ecommerce").join("orders.csv");
    let truth_path = out_dir.join("truth").join("ecommerce-orders.csv");
    let persons_path = out_dir.join("truth").join("persons.csv");

    let stats = write_ecommerce_orders(cfg, create(&orders_path)?, create(&truth_path)?)
        .with_context(|| format!("writing {}", orders_path.display()))?;
    let persons = write_persons(cfg, create(&persons_path)?)
        .with_context(|| format!("writing {}", persons_path.display()))?;

    eprintln!(
        "datagen ecommerce: seed={} persons={} now={} malformed_rate={} -> {} rows, {} orders, \
         {} malformed rows, {} persons with orders, {} persons written to {}",
        cfg.seed,
        cfg.persons,
        cfg.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        cfg.malformed_rate,
        stats.rows,
        stats.orders,
        stats.malformed_rows,
        stats.persons_with_orders,
        persons,
        out_dir.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Command::Ecommerce { cfg, out_dir }) => match run_ecommerce(&cfg, &out_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("datagen: error: {err:#}");
                ExitCode::FAILURE
            }
        },
        Err(message) => {
            eprintln!("datagen: {message}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn full_command_line() {
        let cmd = parse(&[
            "ecommerce",
            "--seed",
            "42",
            "--persons",
            "1_000",
            "--now",
            "2026-11-23T00:00:00Z",
            "--out-dir",
            "out",
            "--malformed-rate=0.01",
        ])
        .unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        let mut cfg = GenConfig::new(42, 1000, now);
        cfg.malformed_rate = 0.01;
        assert_eq!(
            cmd,
            Command::Ecommerce {
                cfg,
                out_dir: PathBuf::from("out")
            }
        );
    }

    #[test]
    fn defaults() {
        let Ok(Command::Ecommerce { cfg, .. }) = parse(&[
            "ecommerce",
            "--seed=1",
            "--persons=2",
            "--out-dir=o",
            "--now",
            "2026-03-29",
        ]) else {
            panic!("valid command line");
        };
        assert_eq!(cfg.malformed_rate, DEFAULT_MALFORMED_RATE);
        assert_eq!(cfg.now, Utc.with_ymd_and_hms(2026, 3, 29, 0, 0, 0).unwrap());
        let Ok(Command::Ecommerce { cfg, .. }) =
            parse(&["ecommerce", "--seed=1", "--persons=2", "--out-dir=o"])
        else {
            panic!("valid command line");
        };
        assert_eq!(cfg.now, today());
    }

    #[test]
    fn errors_are_reported() {
        let err = |args: &[&str]| parse(args).expect_err("invalid command line");
        assert!(err(&[]).contains("missing command"));
        assert!(err(&["orders"]).contains("unknown command"));
        assert!(err(&["ecommerce", "--persons", "3", "--out-dir", "o"]).contains("--seed"));
        assert!(err(&[
            "ecommerce",
            "--seed",
            "x",
            "--persons",
            "3",
            "--out-dir",
            "o"
        ])
        .contains("--seed"));
        assert!(err(&["ecommerce", "--seed", "-1"]).contains("non-negative"));
        assert!(
            err(&["ecommerce", "--seed", "1", "--persons"]).contains("missing value for --persons")
        );
        assert!(err(&["ecommerce", "--seed", "1", "--seed", "2"]).contains("more than once"));
        assert!(err(&["ecommerce", "--now", "yesterday"]).contains("--now"));
        assert!(err(&["ecommerce", "--malformed-rate", "2"]).contains("between 0 and 1"));
        assert!(err(&["ecommerce", "--malformed-rate", "NaN"]).contains("between 0 and 1"));
        assert!(err(&["ecommerce", "--verbose"]).contains("unknown argument"));
        assert!(err(&["ecommerce", "--seed", "99999999999999999999999"]).contains("too large"));
    }

    #[test]
    fn help() {
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
        assert_eq!(
            parse(&["ecommerce", "--seed", "1", "-h"]),
            Ok(Command::Help)
        );
    }
}
