//! `datagen`: command-line front end of `ariane-datagen`.
//!
//! ```text
//! datagen ecommerce --seed 42 --persons 1000 --now 2026-11-23T00:00:00Z --out-dir DIR [--malformed-rate 0.004]
//! datagen channels  --seed 42 --persons 1000 --now 2026-11-23T00:00:00Z --out-dir DIR [--malformed-rate R] [--pos-encoding E]
//! datagen channel   --channel pos --rows 1000000 --out FILE [--truth FILE | --no-truth] [--seed N] [--persons N] ...
//! ```
//!
//! `ecommerce` writes `DIR/ecommerce/orders.csv`, `DIR/truth/ecommerce-orders.csv`
//! and `DIR/truth/persons.csv`; `channels` writes every channel export with
//! its truth beside it; `channel` writes one export (benchmarks). Each prints
//! a short summary to stderr.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use ariane_datagen::{
    write_channel, write_channels_dir, write_ecommerce_orders, write_persons, ChannelStats, Export, GenConfig, PosEncoding,
    DEFAULT_MALFORMED_RATE,
};
use chrono::{DateTime, NaiveDate, Utc};

const USAGE: &str = "\
Usage: datagen ecommerce --seed N --persons N --out-dir DIR [--now INSTANT] [--malformed-rate R]
       datagen channels --seed N --persons N --out-dir DIR [--now INSTANT] [--malformed-rate R]
                        [--pos-encoding windows-1252|utf-8-bom]
       datagen channel --channel EXPORT --out FILE [--rows N] [--persons N] [--seed N]
                       [--truth FILE | --no-truth] [--now INSTANT] [--malformed-rate R]
                       [--pos-encoding windows-1252|utf-8-bom]

Generates deterministic exports of synthetic French customers, with their
ground truth.

`ecommerce` writes the Shopify-style orders export:
  DIR/ecommerce/orders.csv        the orders export
  DIR/truth/ecommerce-orders.csv  per-row truth (person, order, validity)
  DIR/truth/persons.csv           the generated persons

`channels` writes every channel export of channels/<channel>/<name>.toml,
each with its truth beside it (DIR/pos/receipts.truth.csv, ...):
  DIR/pos/receipts.csv  DIR/ecommerce/orders.csv  DIR/ecommerce/checkouts.csv
  DIR/web/events.ndjson  DIR/email/activity.csv  DIR/sms/report.csv
  DIR/app/events.json  DIR/crm/contacts.csv
  DIR/persons.csv  DIR/identities.csv
  DIR/planted.truth.csv (the planted SMS store invitation: who got it, clicked, bought)

`channel` writes one export to FILE (truth to FILE's stem + .truth.csv unless
--truth or --no-truth), for benchmarks: with --rows and without --persons it
draws persons until N rows are written.

Options:
  --seed N             master seed (unsigned 64-bit integer; `channel`: default 42)
  --persons N          number of persons to generate
  --out-dir DIR        output directory (created if missing)
  --now INSTANT        reference instant, RFC 3339 (2026-11-23T00:00:00Z) or a
                       date (2026-11-23, midnight UTC); default: today 00:00 UTC
  --malformed-rate R   share of rows made malformed, in [0, 1] (default 0.004)
  --pos-encoding E     till receipts encoding: windows-1252 (default) or utf-8-bom
  --channel EXPORT     pos, ecommerce/orders, ecommerce/checkouts, web, email,
                       sms, app or crm
  --out FILE           export file to write
  --truth FILE         truth file to write
  --no-truth           do not write the truth
  --rows N             stop after N data rows
  -h, --help           print this help";

/// Default seed of the `channel` command.
const CHANNEL_DEFAULT_SEED: u64 = 42;
/// Persons drawn by `channel --rows N` without `--persons` (phone numbers
/// stay unique below 10^8 persons).
const CHANNEL_MAX_PERSONS: usize = 100_000_000;

/// A parsed command line.
#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Ecommerce {
        cfg: GenConfig,
        out_dir: PathBuf,
    },
    Channels {
        cfg: GenConfig,
        out_dir: PathBuf,
    },
    Channel {
        cfg: GenConfig,
        export: Export,
        out: PathBuf,
        /// `None`: no truth written.
        truth: Option<PathBuf>,
    },
}

/// Parses an unsigned integer, allowing `_` digit separators (`1_000_000`).
fn parse_count<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    let digits: String = value.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{flag} expects a non-negative integer, got {value:?}"));
    }
    digits.parse().map_err(|_| format!("{flag} value {value:?} is too large"))
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
        .ok_or_else(|| format!("--now expects an RFC 3339 instant (2026-11-23T00:00:00Z) or a date (2026-11-23), got {value:?}"))
}

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("--malformed-rate expects a number between 0 and 1, got {value:?}")),
    }
}

/// Today at 00:00 UTC.
fn today() -> DateTime<Utc> {
    let now = Utc::now();
    now.date_naive().and_hms_opt(0, 0, 0).map_or(now, |d| d.and_utc())
}

/// The flags of a command line, before defaults.
#[derive(Default)]
struct Flags {
    seed: Option<u64>,
    persons: Option<usize>,
    now: Option<DateTime<Utc>>,
    out_dir: Option<PathBuf>,
    rate: Option<f64>,
    pos_encoding: Option<PosEncoding>,
    channel: Option<Export>,
    out: Option<PathBuf>,
    truth: Option<PathBuf>,
    no_truth: bool,
    rows: Option<u64>,
}

/// Sets `slot` to `value`, failing when the flag was already given.
fn set_once<T>(slot: &mut Option<T>, flag: &str, value: T) -> Result<(), String> {
    if slot.replace(value).is_some() {
        return Err(format!("{flag} given more than once"));
    }
    Ok(())
}

/// A non-empty path value.
fn path_value(flag: &str, value: OsString) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err(format!("{flag} must not be empty"));
    }
    Ok(PathBuf::from(value))
}

/// Parses the arguments following the program name.
fn parse_args<I: IntoIterator<Item = OsString>>(args: I) -> Result<Command, String> {
    let mut args = args.into_iter();
    let Some(command) = args.next() else {
        return Err("missing command".to_owned());
    };
    let allowed: &[&str] = match command.to_str() {
        Some("-h" | "--help" | "help") => return Ok(Command::Help),
        Some("ecommerce") => &["--seed", "--persons", "--now", "--out-dir", "--malformed-rate"],
        Some("channels") => &["--seed", "--persons", "--now", "--out-dir", "--malformed-rate", "--pos-encoding"],
        Some("channel") => {
            &["--seed", "--persons", "--now", "--malformed-rate", "--pos-encoding", "--channel", "--out", "--truth", "--no-truth", "--rows"]
        }
        _ => return Err(format!("unknown command {command:?} (expected `ecommerce`, `channels` or `channel`)")),
    };
    let command = command.to_str().unwrap_or_default().to_owned();

    let mut f = Flags::default();
    while let Some(arg) = args.next() {
        let Some(arg) = arg.to_str().map(str::to_owned) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(OsString::from(value))),
            _ => (arg, None),
        };
        if !allowed.contains(&flag.as_str()) {
            return Err(format!("unknown argument {flag:?}"));
        }
        if flag == "--no-truth" {
            if inline.is_some() {
                return Err("--no-truth takes no value".to_owned());
            }
            f.no_truth = true;
            continue;
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            return Err(format!("missing value for {flag}"));
        };
        match flag.as_str() {
            "--out-dir" => set_once(&mut f.out_dir, &flag, path_value(&flag, value)?)?,
            "--out" => set_once(&mut f.out, &flag, path_value(&flag, value)?)?,
            "--truth" => set_once(&mut f.truth, &flag, path_value(&flag, value)?)?,
            _ => {
                let Some(value) = value.to_str() else {
                    return Err(format!("{flag} value {value:?} is not valid UTF-8"));
                };
                match flag.as_str() {
                    "--seed" => set_once(&mut f.seed, &flag, parse_count::<u64>(&flag, value)?)?,
                    "--persons" => set_once(&mut f.persons, &flag, parse_count::<usize>(&flag, value)?)?,
                    "--rows" => set_once(&mut f.rows, &flag, parse_count::<u64>(&flag, value)?)?,
                    "--now" => set_once(&mut f.now, &flag, parse_now(value)?)?,
                    "--pos-encoding" => set_once(&mut f.pos_encoding, &flag, value.parse::<PosEncoding>()?)?,
                    "--channel" => set_once(&mut f.channel, &flag, value.parse::<Export>()?)?,
                    _ => set_once(&mut f.rate, &flag, parse_rate(value)?)?,
                }
            }
        }
    }
    build(&command, f)
}

/// Applies defaults and requirements of `command` to parsed flags.
fn build(command: &str, f: Flags) -> Result<Command, String> {
    let config = |seed: u64, persons: usize| {
        let mut cfg = GenConfig::new(seed, persons, f.now.unwrap_or_else(today));
        cfg.malformed_rate = f.rate.unwrap_or(DEFAULT_MALFORMED_RATE);
        cfg.pos_encoding = f.pos_encoding.unwrap_or_default();
        cfg.max_rows = f.rows;
        cfg
    };
    if command == "channel" {
        let export = f.channel.ok_or("missing required --channel")?;
        let out = f.out.clone().ok_or("missing required --out")?;
        if f.no_truth && f.truth.is_some() {
            return Err("--truth and --no-truth are exclusive".to_owned());
        }
        let persons = match (f.persons, f.rows) {
            (Some(persons), _) => persons,
            (None, Some(_)) => CHANNEL_MAX_PERSONS,
            (None, None) => return Err("`channel` needs --persons or --rows".to_owned()),
        };
        let truth = if f.no_truth { None } else { Some(f.truth.clone().unwrap_or_else(|| truth_beside(&out))) };
        let cfg = config(f.seed.unwrap_or(CHANNEL_DEFAULT_SEED), persons);
        return Ok(Command::Channel { cfg, export, out, truth });
    }
    let seed = f.seed.ok_or("missing required --seed")?;
    let persons = f.persons.ok_or("missing required --persons")?;
    let out_dir = f.out_dir.clone().ok_or("missing required --out-dir")?;
    let cfg = config(seed, persons);
    Ok(if command == "channels" { Command::Channels { cfg, out_dir } } else { Command::Ecommerce { cfg, out_dir } })
}

/// `dir/receipts.csv` → `dir/receipts.truth.csv`.
fn truth_beside(out: &Path) -> PathBuf {
    let stem = out.file_stem().map_or_else(|| OsString::from("export"), OsString::from);
    let mut name = stem;
    name.push(".truth.csv");
    out.with_file_name(name)
}

/// Creates `path`'s parent directory and a buffered writer on `path`.
fn create(path: &Path) -> anyhow::Result<BufWriter<File>> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating directory {}", parent.display()))?;
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
    let persons = write_persons(cfg, create(&persons_path)?).with_context(|| format!("writing {}", persons_path.display()))?;

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

/// One summary line of an export.
fn describe(s: &ChannelStats) -> String {
    let types: Vec<String> = s.event_types.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{:<22} {:>9} rows {:>6} malformed {:>5} blank lines {:>8} persons  {}",
        s.export.relative_path(),
        s.rows,
        s.malformed_rows,
        s.blank_lines,
        s.persons,
        types.join(" ")
    )
}

fn run_channels(cfg: &GenConfig, out_dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let summary = write_channels_dir(cfg, out_dir)?;
    eprintln!(
        "datagen channels: seed={} persons={} now={} malformed_rate={} pos_encoding={} -> {}",
        cfg.seed,
        cfg.persons,
        cfg.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        cfg.malformed_rate,
        cfg.pos_encoding,
        out_dir.display()
    );
    for s in &summary.exports {
        eprintln!("  {}", describe(s));
    }
    let rows: u64 = summary.exports.iter().map(|s| s.rows).sum();
    let malformed: u64 = summary.exports.iter().map(|s| s.malformed_rows).sum();
    eprintln!(
        "  total: {rows} rows, {malformed} malformed, {} persons (persons.csv, identities.csv), {:.1} s",
        summary.persons,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run_channel(cfg: &GenConfig, export: Export, out: &Path, truth: Option<&Path>) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut file = create(out)?;
    let stats = match truth {
        Some(path) => {
            let mut truth_file = create(path)?;
            write_channel(cfg, export, &mut file, &mut truth_file)
        }
        None => write_channel(cfg, export, &mut file, &mut std::io::sink()),
    }
    .with_context(|| format!("writing {}", out.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "datagen channel: {} seed={} -> {} ({:.2} s, {:.0} rows/s)\n  {}",
        export,
        cfg.seed,
        out.display(),
        seconds,
        stats.rows as f64 / seconds.max(1e-9),
        describe(&stats)
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Ecommerce { cfg, out_dir }) => run_ecommerce(&cfg, &out_dir),
        Ok(Command::Channels { cfg, out_dir }) => run_channels(&cfg, &out_dir),
        Ok(Command::Channel { cfg, export, out, truth }) => run_channel(&cfg, export, &out, truth.as_deref()),
        Err(message) => {
            eprintln!("datagen: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("datagen: error: {err:#}");
            ExitCode::FAILURE
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
        assert_eq!(cmd, Command::Ecommerce { cfg, out_dir: PathBuf::from("out") });
    }

    #[test]
    fn defaults() {
        let Ok(Command::Ecommerce { cfg, .. }) = parse(&["ecommerce", "--seed=1", "--persons=2", "--out-dir=o", "--now", "2026-03-29"])
        else {
            panic!("valid command line");
        };
        assert_eq!(cfg.malformed_rate, DEFAULT_MALFORMED_RATE);
        assert_eq!(cfg.now, Utc.with_ymd_and_hms(2026, 3, 29, 0, 0, 0).unwrap());
        let Ok(Command::Ecommerce { cfg, .. }) = parse(&["ecommerce", "--seed=1", "--persons=2", "--out-dir=o"]) else {
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
        assert!(err(&["ecommerce", "--seed", "x", "--persons", "3", "--out-dir", "o"]).contains("--seed"));
        assert!(err(&["ecommerce", "--seed", "-1"]).contains("non-negative"));
        assert!(err(&["ecommerce", "--seed", "1", "--persons"]).contains("missing value for --persons"));
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
        assert_eq!(parse(&["ecommerce", "--seed", "1", "-h"]), Ok(Command::Help));
    }

    #[test]
    fn channels_command_line() {
        let cmd =
            parse(&["channels", "--seed=7", "--persons", "50", "--now=2026-11-23", "--out-dir", "out", "--pos-encoding", "utf-8-bom"])
                .unwrap();
        let mut cfg = GenConfig::new(7, 50, Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap());
        cfg.pos_encoding = PosEncoding::Utf8Bom;
        assert_eq!(cmd, Command::Channels { cfg, out_dir: PathBuf::from("out") });
        assert!(parse(&["channels", "--pos-encoding", "latin1"]).unwrap_err().contains("windows-1252"));
        assert!(parse(&["ecommerce", "--pos-encoding", "utf-8-bom"]).unwrap_err().contains("unknown argument"));
    }

    #[test]
    fn channel_command_line() {
        let Ok(Command::Channel { cfg, export, out, truth }) =
            parse(&["channel", "--channel", "pos", "--rows", "1_000_000", "--out", "bench/receipts.csv", "--now", "2026-11-23"])
        else {
            panic!("valid command line");
        };
        assert_eq!(export, Export::PosReceipts);
        assert_eq!(cfg.seed, CHANNEL_DEFAULT_SEED);
        assert_eq!(cfg.max_rows, Some(1_000_000));
        assert_eq!(cfg.persons, CHANNEL_MAX_PERSONS);
        assert_eq!(out, PathBuf::from("bench/receipts.csv"));
        assert_eq!(truth, Some(PathBuf::from("bench/receipts.truth.csv")));

        let Ok(Command::Channel { export, truth, cfg, .. }) =
            parse(&["channel", "--channel=ecommerce/checkouts", "--persons=10", "--out=c.csv", "--no-truth"])
        else {
            panic!("valid command line");
        };
        assert_eq!(export, Export::EcommerceCheckouts);
        assert_eq!((truth, cfg.persons, cfg.max_rows), (None, 10, None));

        let err = |args: &[&str]| parse(args).expect_err("invalid command line");
        assert!(err(&["channel", "--out", "x"]).contains("--channel"));
        assert!(err(&["channel", "--channel", "pos"]).contains("--out"));
        assert!(err(&["channel", "--channel", "pos", "--out", "x"]).contains("--rows"));
        assert!(err(&["channel", "--channel", "ecommerce"]).contains("unknown export"));
        assert!(err(&["channel", "--channel", "pos", "--out", "x", "--rows", "5", "--truth", "t", "--no-truth"]).contains("exclusive"));
    }
}
