//! End-to-end tests of the generated files.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, FixedOffset, TimeZone, Utc};

use super::*;

const DAY: i64 = 86_400;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap()
}

struct Output {
    csv: Vec<u8>,
    truth: Vec<u8>,
    stats: EcommerceStats,
}

fn generate_blocked(cfg: &GenConfig, block: usize) -> Output {
    let (mut csv, mut truth) = (Vec::new(), Vec::new());
    let stats = ecommerce::write_orders(cfg, block, &mut csv, &mut truth).expect("generation succeeds");
    Output { csv, truth, stats }
}

fn generate(cfg: &GenConfig) -> Output {
    generate_blocked(cfg, BLOCK_PERSONS)
}

/// Orders rows as `(line, record)`.
fn rows(csv: &[u8]) -> Vec<(u64, csv::StringRecord)> {
    let mut reader = csv::Reader::from_reader(csv);
    reader
        .records()
        .map(|r| {
            let r = r.expect("valid CSV");
            (r.position().expect("position").line(), r)
        })
        .collect()
}

fn col(name: &str) -> usize {
    ORDERS_HEADER.iter().position(|h| *h == name).expect("known column")
}

/// Strict parse of an amount with exactly two decimals, in cents.
fn cents(s: &str) -> Option<u64> {
    let (euros, dec) = s.split_once('.')?;
    if euros.is_empty() || dec.len() != 2 || !euros.bytes().chain(dec.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(euros.parse::<u64>().ok()? * 100 + dec.parse::<u64>().ok()?)
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("RFC 3339").with_timezone(&Utc)
}

#[test]
fn deterministic_output() {
    let cfg = GenConfig::new(42, 1500, now());
    let a = generate(&cfg);
    let b = generate(&cfg);
    assert!(a.csv == b.csv && a.truth == b.truth && a.stats == b.stats);
    let (mut pa, mut pb) = (Vec::new(), Vec::new());
    write_persons(&cfg, &mut pa).unwrap();
    write_persons(&cfg, &mut pb).unwrap();
    assert_eq!(pa, pb);

    let other = generate(&GenConfig { seed: 43, ..cfg.clone() });
    assert_ne!(a.csv, other.csv);
    assert_ne!(a.truth, other.truth);
    let mut pc = Vec::new();
    write_persons(&GenConfig { seed: 43, ..cfg }, &mut pc).unwrap();
    assert_ne!(pa, pc);
}

#[test]
fn headers_are_exact() {
    let out = generate(&GenConfig::new(1, 20, now()));
    let csv = String::from_utf8(out.csv).unwrap();
    assert_eq!(
        csv.lines().next().unwrap(),
        "Name,Email,Phone,Customer ID,Created at,Currency,Subtotal,Shipping,Total,Lineitem quantity,\
         Lineitem name,Lineitem price,Lineitem sku,Lineitem category,Billing Name,Billing Zip,\
         Billing City,Accepts Marketing"
    );
    let truth = String::from_utf8(out.truth).unwrap();
    assert_eq!(truth.lines().next().unwrap(), "line,person_id,order_id,created_at_utc,valid,defect");
    let mut persons = Vec::new();
    assert_eq!(write_persons(&GenConfig::new(1, 20, now()), &mut persons).unwrap(), 20);
    let persons = String::from_utf8(persons).unwrap();
    assert_eq!(persons.lines().next().unwrap(), "person_id,first_name,last_name,email,phone_e164,postal_code,city,customer_id");
    assert_eq!(persons.lines().count(), 21);
}

#[test]
fn empty_config_writes_headers_only() {
    let out = generate(&GenConfig::new(1, 0, now()));
    assert_eq!(out.stats, EcommerceStats::default());
    assert_eq!(String::from_utf8(out.csv).unwrap().lines().count(), 1);
    assert!(read_truth(out.truth.as_slice()).unwrap().is_empty());
}

#[test]
fn invalid_rate_is_an_error() {
    for rate in [-0.1, 1.5, f64::NAN] {
        let cfg = GenConfig { malformed_rate: rate, ..GenConfig::new(1, 5, now()) };
        assert!(write_ecommerce_orders(&cfg, Vec::new(), Vec::new()).is_err());
    }
}

#[test]
fn fill_down_structure_and_amounts() {
    let cfg = GenConfig { malformed_rate: 0.02, ..GenConfig::new(7, 2000, now()) };
    let out = generate(&cfg);
    let rows = rows(&out.csv);
    let truth = read_truth(out.truth.as_slice()).unwrap();
    let persons: HashMap<String, Person> = (0..cfg.persons).map(|i| person(&cfg, i)).map(|p| (p.person_id.clone(), p)).collect();
    let order_cols: Vec<usize> = ORDER_LEVEL_COLUMNS.iter().map(|c| col(c)).collect();

    let mut previous_number = 0u64;
    let mut multi_line_orders = 0;
    let mut checked_orders = 0;
    let mut i = 0;
    while i < rows.len() {
        let name = rows[i].1[col("Name")].to_owned();
        let number: u64 = name.strip_prefix('#').unwrap().parse().unwrap();
        assert!(number > previous_number, "order numbers increase");
        previous_number = number;
        let end = (i..rows.len()).find(|&j| rows[j].1[col("Name")] != name).unwrap_or(rows.len());
        let first = &rows[i].1;
        let truth_first = &truth[i];
        let p = &persons[&truth_first.person_id];

        // First row: every order-level column filled (Phone may be empty).
        for (&c, header) in order_cols.iter().zip(ORDER_LEVEL_COLUMNS) {
            assert!(header == "Phone" || !first[c].is_empty(), "{header} empty on first row of {name}");
        }
        assert_eq!(&first[col("Currency")], "EUR");
        assert!(matches!(&first[col("Accepts Marketing")], "yes" | "no"));
        assert_eq!(first[col("Email")].trim().to_lowercase(), p.email);
        assert_eq!(&first[col("Customer ID")], p.customer_id);
        assert_eq!(first[col("Billing Name")], format!("{} {}", p.first_name, p.last_name));
        assert_eq!(&first[col("Billing Zip")], p.postal_code);
        assert_eq!(&first[col("Billing City")], p.city);
        let phone = &first[col("Phone")];
        if !phone.is_empty() {
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            let national = digits.strip_prefix("33").map_or(digits.clone(), |d| format!("0{d}"));
            assert_eq!(national, format!("0{}", &p.phone_e164[3..]), "{phone}");
        }

        // Later rows: order-level columns empty, line columns filled.
        for (_, later) in &rows[i + 1..end] {
            for (&c, header) in order_cols.iter().zip(ORDER_LEVEL_COLUMNS) {
                assert!(later[c].is_empty(), "{header} filled on a later row of {name}");
            }
            assert!(!later[col("Lineitem name")].is_empty() && !later[col("Lineitem sku")].is_empty());
        }
        if end - i > 1 {
            multi_line_orders += 1;
        }

        // Amounts exact in cents on fully valid orders.
        let subtotal = cents(&first[col("Subtotal")]).expect("subtotal");
        let shipping = cents(&first[col("Shipping")]).expect("shipping");
        let total = cents(&first[col("Total")]).expect("total");
        assert!(shipping == 0 || shipping == 490);
        assert_eq!(total, subtotal + shipping);
        if truth[i..end].iter().all(|t| t.valid) {
            let sum: u64 = rows[i..end]
                .iter()
                .map(|(_, r)| {
                    let q: u64 = r[col("Lineitem quantity")].parse().expect("quantity");
                    assert!((1..=3).contains(&q));
                    q * cents(&r[col("Lineitem price")]).expect("price")
                })
                .sum();
            assert_eq!(sum, subtotal, "{name}");
            checked_orders += 1;
        }
        for t in &truth[i..end] {
            assert_eq!(t.order_id, name);
            assert_eq!(t.person_id, truth_first.person_id);
            assert_eq!(t.created_at_utc, truth_first.created_at_utc);
        }
        i = end;
    }
    assert!(multi_line_orders > 100, "{multi_line_orders}");
    assert!(checked_orders as u64 > out.stats.orders * 9 / 10);
    let distinct_orders: std::collections::HashSet<_> = truth.iter().map(|t| &t.order_id).collect();
    assert_eq!(out.stats.orders, distinct_orders.len() as u64);
}

#[test]
fn quoting_is_exercised() {
    let out = generate(&GenConfig::new(5, 1000, now()));
    let text = String::from_utf8(out.csv.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (mut with_comma, mut with_quote) = (0, 0);
    for (line, r) in rows(&out.csv) {
        let name = &r[col("Lineitem name")];
        let raw = lines[line as usize - 1];
        if name.contains('"') {
            assert!(raw.contains(&format!("\"{}\"", name.replace('"', "\"\""))), "{raw}");
            with_quote += 1;
        } else if name.contains(',') {
            assert!(raw.contains(&format!("\"{name}\"")), "{raw}");
            with_comma += 1;
        }
    }
    assert!(with_comma > 10 && with_quote > 0, "{with_comma} {with_quote}");
}

#[test]
fn created_at_offsets_match_paris_time() {
    let cfg = GenConfig::new(11, 3000, now());
    let out = generate(&cfg);
    let rows = rows(&out.csv);
    let truth = read_truth(out.truth.as_slice()).unwrap();
    let (mut winter, mut summer) = (0, 0);
    for ((_, r), t) in rows.iter().zip(&truth) {
        let created = &r[col("Created at")];
        if created.is_empty() {
            continue;
        }
        let local = DateTime::parse_from_str(created, "%Y-%m-%d %H:%M:%S %z").expect("Created at format");
        let instant = utc(&t.created_at_utc);
        assert_eq!(local.with_timezone(&Utc), instant);
        assert_eq!(*local.offset(), paris_offset(instant), "{created}");
        match local.offset().local_minus_utc() {
            3600 => winter += 1,
            7200 => summer += 1,
            other => panic!("unexpected offset {other}"),
        }
    }
    assert!(winter > 100 && summer > 100, "{winter} {summer}");

    // Both sides of the 2026 switches, through the public helpers.
    let at = |s: &str| paris_offset(utc(s)).local_minus_utc();
    assert_eq!(at("2026-03-29T00:59:59Z"), 3600);
    assert_eq!(at("2026-03-29T01:00:00Z"), 7200);
    assert_eq!(at("2026-10-25T00:59:59Z"), 7200);
    assert_eq!(at("2026-10-25T01:00:00Z"), 3600);
    let fixed = FixedOffset::east_opt(7200).unwrap();
    assert_eq!(to_paris(utc("2026-03-29T07:15:00Z")), fixed.with_ymd_and_hms(2026, 3, 29, 9, 15, 0).unwrap());
}

#[test]
fn truth_lines_match_csv_positions() {
    let cfg = GenConfig { malformed_rate: 0.05, ..GenConfig::new(3, 1000, now()) };
    let out = generate(&cfg);
    let rows = rows(&out.csv);
    let truth = read_truth(out.truth.as_slice()).unwrap();
    assert_eq!(rows.len(), truth.len());
    assert_eq!(out.stats.rows, truth.len() as u64);
    // No field contains a newline: physical lines == records + header.
    assert_eq!(out.csv.iter().filter(|&&b| b == b'\n').count(), rows.len() + 1);
    for ((line, r), t) in rows.iter().zip(&truth) {
        assert_eq!(*line, t.line);
        assert_eq!(&r[col("Name")], t.order_id);
        // A strict parser accepts exactly the rows the truth marks valid.
        let strict_ok = r[col("Lineitem quantity")].parse::<u64>().is_ok_and(|q| q >= 1) && cents(&r[col("Lineitem price")]).is_some();
        assert_eq!(strict_ok, t.valid, "line {line}");
        let expected_defect = match (&r[col("Lineitem quantity")], &r[col("Lineitem price")]) {
            _ if t.valid => "",
            ("deux", _) => "quantity_not_a_number",
            ("-1", _) => "quantity_negative",
            ("", _) => "quantity_missing",
            (_, "N/A") => "price_not_a_number",
            (_, p) if p.ends_with('O') && p.contains(',') => "price_not_a_number",
            other => panic!("unexpected corruption {other:?}"),
        };
        assert_eq!(t.defect, expected_defect);
    }
    for code in ["quantity_not_a_number", "quantity_negative", "quantity_missing", "price_not_a_number"] {
        assert!(truth.iter().any(|t| t.defect == code), "{code} never generated");
    }
}

#[test]
fn malformed_share_follows_the_rate() {
    let cfg = GenConfig::new(2024, 8000, now());
    let out = generate(&cfg);
    assert!(out.stats.rows >= 20_000, "{}", out.stats.rows);
    let share = out.stats.malformed_rows as f64 / out.stats.rows as f64;
    assert!((0.002..=0.006).contains(&share), "share {share}");
    let truth = read_truth(out.truth.as_slice()).unwrap();
    assert_eq!(truth.iter().filter(|t| !t.valid).count() as u64, out.stats.malformed_rows);

    // Same orders, more defects: only the corruption changes with the rate.
    let high = generate(&GenConfig { malformed_rate: 0.05, ..cfg });
    let share = high.stats.malformed_rows as f64 / high.stats.rows as f64;
    assert!((0.045..=0.055).contains(&share), "share {share}");
    assert_eq!(high.stats.orders, out.stats.orders);
    assert_eq!(high.stats.rows, out.stats.rows);
    let high_truth = read_truth(high.truth.as_slice()).unwrap();
    for (low, high) in truth.iter().zip(&high_truth) {
        assert_eq!((&low.person_id, &low.created_at_utc), (&high.person_id, &high.created_at_utc));
        assert!(low.valid || !high.valid, "defects grow monotonically with the rate");
    }

    let clean = generate(&GenConfig { malformed_rate: 0.0, ..GenConfig::new(2024, 500, now()) });
    assert_eq!(clean.stats.malformed_rows, 0);
}

/// Per person: (number of orders, latest order instant).
fn activity(truth: &[TruthRow]) -> BTreeMap<String, (usize, DateTime<Utc>)> {
    let mut orders: BTreeMap<String, (std::collections::BTreeSet<String>, DateTime<Utc>)> = BTreeMap::new();
    for t in truth {
        let at = utc(&t.created_at_utc);
        let entry = orders.entry(t.person_id.clone()).or_insert_with(|| (Default::default(), at));
        entry.0.insert(t.order_id.clone());
        entry.1 = entry.1.max(at);
    }
    orders.into_iter().map(|(p, (o, latest))| (p, (o.len(), latest))).collect()
}

#[test]
fn activity_mix_with_300_persons() {
    for seed in [1, 2, 3, 42, 1234, 99_999] {
        let cfg = GenConfig::new(seed, 300, now());
        let out = generate(&cfg);
        let truth = read_truth(out.truth.as_slice()).unwrap();
        let per_person = activity(&truth);
        assert_eq!(per_person.len() as u64, out.stats.persons_with_orders);
        let ordering = per_person.len();
        assert!((150..=240).contains(&ordering), "seed {seed}: {ordering} persons order");
        let once = per_person.values().filter(|(n, _)| *n == 1).count();
        assert!((45..=110).contains(&once), "seed {seed}: {once} single-order persons");
        assert!(per_person.values().all(|(n, _)| (1..=8).contains(n)));
        let lapsed = per_person.values().filter(|(n, latest)| *n >= 2 && *latest < cfg.now - Duration::days(120)).count();
        let recent = per_person.values().filter(|(n, latest)| *n >= 2 && *latest >= cfg.now - Duration::days(60)).count();
        assert!(lapsed >= 20, "seed {seed}: {lapsed} lapsed");
        assert!(recent >= 20, "seed {seed}: {recent} recent");
        // Repeat customers are either lapsed or recent.
        let repeat = per_person.values().filter(|(n, _)| *n >= 2).count();
        assert_eq!(lapsed + recent, repeat, "seed {seed}");
    }
}

#[test]
fn orders_are_in_the_past_two_years_and_avoid_the_90_day_boundary() {
    let cfg = GenConfig::new(90, 4000, now() + Duration::seconds(37));
    let out = generate(&cfg);
    let truth = read_truth(out.truth.as_slice()).unwrap();
    let boundary = cfg.now - Duration::days(90);
    let mut around_boundary = (0, 0);
    for t in &truth {
        let at = utc(&t.created_at_utc);
        assert!(at <= cfg.now, "{} after now", t.created_at_utc);
        assert!(at >= cfg.now - Duration::days(731), "{} too old", t.created_at_utc);
        let distance = (at - boundary).num_seconds().abs();
        assert!(distance > 2 * DAY, "{} within 2 days of now - 90 days", t.created_at_utc);
        if distance < 10 * DAY {
            if at < boundary {
                around_boundary.0 += 1
            } else {
                around_boundary.1 += 1
            }
        }
    }
    // The gap is narrow: orders exist just outside it on both sides.
    assert!(around_boundary.0 > 0 && around_boundary.1 > 0, "{around_boundary:?}");
}

#[test]
fn blocks_sort_locally_and_do_not_change_content() {
    let cfg = GenConfig { malformed_rate: 0.01, ..GenConfig::new(8, 400, now()) };
    let whole = generate_blocked(&cfg, BLOCK_PERSONS);
    let blocked = generate_blocked(&cfg, 50);
    assert_eq!(whole.stats, blocked.stats);

    let whole_truth = read_truth(whole.truth.as_slice()).unwrap();
    let blocked_truth = read_truth(blocked.truth.as_slice()).unwrap();
    // One block: globally sorted.
    assert!(whole_truth.windows(2).all(|w| w[0].created_at_utc <= w[1].created_at_utc));
    // Blocks of 50 persons: contiguous, each sorted by time.
    let block_of = |t: &TruthRow| t.person_id[1..].parse::<usize>().unwrap() / 50;
    for w in blocked_truth.windows(2) {
        assert!(block_of(&w[0]) <= block_of(&w[1]));
        if block_of(&w[0]) == block_of(&w[1]) {
            assert!(w[0].created_at_utc <= w[1].created_at_utc);
        }
    }
    assert!(blocked_truth.windows(2).any(|w| w[0].created_at_utc > w[1].created_at_utc));
    // Same rows, different order and numbering.
    let key = |t: &TruthRow| (t.person_id.clone(), t.created_at_utc.clone(), t.valid, t.defect.clone());
    let mut a: Vec<_> = whole_truth.iter().map(key).collect();
    let mut b: Vec<_> = blocked_truth.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
}

#[test]
fn persons_file_matches_person() {
    let cfg = GenConfig::new(5, 50, now());
    let mut out = Vec::new();
    assert_eq!(write_persons(&cfg, &mut out).unwrap(), 50);
    let mut reader = csv::Reader::from_reader(out.as_slice());
    for (i, record) in reader.records().enumerate() {
        let record = record.unwrap();
        let p = person(&cfg, i);
        let expected = [&p.person_id, &p.first_name, &p.last_name, &p.email, &p.phone_e164, &p.postal_code, &p.city, &p.customer_id];
        assert_eq!(record.iter().collect::<Vec<_>>(), expected.map(String::as_str).to_vec());
    }
    // Persons do not depend on anything but the seed.
    let other = GenConfig { persons: 7, now: now() - Duration::days(400), malformed_rate: 0.5, ..cfg.clone() };
    assert_eq!(person(&cfg, 3), person(&other, 3));
}

/// The up-sell segment's raw material in the e-shop orders alone: the catalogue product of
/// every valid line, with its person and instant.
fn catalogue_lines(cfg: &GenConfig) -> Vec<(String, DateTime<Utc>, CatalogueProduct)> {
    let out = generate(cfg);
    let truth = read_truth(out.truth.as_slice()).unwrap();
    let person_of: HashMap<u64, &TruthRow> = truth.iter().map(|t| (t.line, t)).collect();
    let products: HashMap<&str, CatalogueProduct> = catalogue().into_iter().map(|p| (p.sku, p)).collect();
    let mut lines = Vec::new();
    for (line, record) in rows(&out.csv) {
        let t = person_of[&line];
        if !t.valid {
            continue;
        }
        let product = products.get(&record[col("Lineitem sku")]).expect("every line sells a catalogue product");
        assert_eq!(&record[col("Lineitem category")], product.category);
        assert_eq!(cents(&record[col("Lineitem price")]), Some(product.price_cents));
        lines.push((t.person_id.clone(), utc(&t.created_at_utc), *product));
    }
    lines
}

#[test]
fn orders_give_up_sell_members_and_people_who_already_traded_up() {
    let top: HashMap<(&str, &str), Tier> = catalogue().into_iter().fold(HashMap::new(), |mut m, p| {
        let t = m.entry((p.category, p.range)).or_insert(p.tier);
        *t = (*t).max(p.tier);
        m
    });
    for seed in [11, 42] {
        let lines = catalogue_lines(&GenConfig::new(seed, 1000, now()));
        // Per person and range, the tiers bought (any time).
        let mut bought: BTreeMap<(&str, &str, &str), std::collections::BTreeSet<Tier>> = BTreeMap::new();
        for (person, _, p) in &lines {
            bought.entry((person.as_str(), p.category, p.range)).or_default().insert(p.tier);
        }
        // Below the top of the range: a range up-sell can suggest.
        let below_top =
            |person: &str, p: &CatalogueProduct| bought[&(person, p.category, p.range)].last() < Some(&top[&(p.category, p.range)]);
        let below_top_pairs = bought.iter().filter(|((_, c, r), tiers)| tiers.last() < Some(&top[&(*c, *r)])).count();
        // A lower tier and the top one in the same range: already traded up, no suggestion.
        let traded_up = bought.iter().filter(|((_, c, r), tiers)| tiers.len() >= 2 && tiers.contains(&top[&(*c, *r)])).count();
        // Entry and mid in a range with a premium: suggested the premium.
        let entry_and_mid = bought
            .iter()
            .filter(|((_, c, r), tiers)| top[&(*c, *r)] == Tier::Premium && tiers.contains(&Tier::Entry) && tiers.contains(&Tier::Mid))
            .filter(|(_, tiers)| !tiers.contains(&Tier::Premium))
            .count();
        // Per person, the ranges below their top with a line within 365 days (the segment's
        // qualifying lines: one member per person, from the most recent), and the persons
        // whose ranges below the top were all bought earlier (not members).
        let since = now() - Duration::days(365);
        let mut recent: BTreeMap<&str, std::collections::BTreeSet<(&str, &str)>> = BTreeMap::new();
        for (person, at, p) in &lines {
            if *at > since && below_top(person, p) {
                recent.entry(person.as_str()).or_default().insert((p.category, p.range));
            }
        }
        let several = recent.values().filter(|ranges| ranges.len() >= 2).count();
        let older_only = lines.iter().filter(|(person, _, p)| below_top(person, p) && !recent.contains_key(person.as_str())).map(|l| &l.0);
        let older_only = older_only.collect::<std::collections::BTreeSet<_>>().len();
        println!(
            "seed {seed}: (person, range) pairs: {below_top_pairs} below the top tier, {traded_up} traded up, {entry_and_mid} entry and mid; \
             persons: {} with a qualifying line within 365 days ({several} in several ranges), {older_only} with older ones only",
            recent.len()
        );
        assert!(below_top_pairs > 1000, "seed {seed}: {below_top_pairs} (person, range) below the top tier");
        assert!(traded_up > 150, "seed {seed}: {traded_up} (person, range) with a lower tier and the top one");
        assert!(entry_and_mid > 50, "seed {seed}: {entry_and_mid} (person, range) with entry and mid only");
        assert!(recent.len() > 250, "seed {seed}: {} persons with a qualifying line", recent.len());
        assert!(several > 100, "seed {seed}: {several} persons with qualifying lines in several ranges");
        assert!(older_only > 60, "seed {seed}: {older_only} persons with older qualifying lines only");
    }
}
