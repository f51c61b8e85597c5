//! Tests of the channel exports, most of them against the real spec files
//! (`channels/<channel>/<name>.toml`): a small spec-driven reader (written
//! here from the specs, independently of the writers) parses every row and
//! must accept exactly the rows the truth marks valid, with the truth's event
//! type, instant and person identifiers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Europe::Paris;
use serde_json::Value as Json;
use toml::Value as Toml;

use super::*;
use crate::{person, write_ecommerce_orders, GenConfig, Person, DEFAULT_MALFORMED_RATE};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap()
}

fn config(seed: u64, persons: usize, rate: f64) -> GenConfig {
    GenConfig { malformed_rate: rate, ..GenConfig::new(seed, persons, now()) }
}

struct Generated {
    bytes: Vec<u8>,
    truth_bytes: Vec<u8>,
    truth: Vec<ChannelTruthRow>,
    stats: ChannelStats,
}

fn generate(cfg: &GenConfig, export: Export) -> Generated {
    let (mut bytes, mut truth_bytes) = (Vec::new(), Vec::new());
    let stats = write_channel(cfg, export, &mut bytes, &mut truth_bytes).expect("generation succeeds");
    let truth = read_channel_truth(truth_bytes.as_slice()).expect("truth parses");
    Generated { bytes, truth_bytes, truth, stats }
}

/// The export as text: Windows-1252 decoded, UTF-8 BOM removed.
fn decode(cfg: &GenConfig, export: Export, bytes: &[u8]) -> String {
    if export == Export::PosReceipts && cfg.pos_encoding == PosEncoding::Windows1252 {
        let (text, _, had_errors) = encoding_rs::WINDOWS_1252.decode(bytes);
        assert!(!had_errors);
        return text.into_owned();
    }
    let text = std::str::from_utf8(bytes).expect("UTF-8 export");
    text.strip_prefix('\u{feff}').unwrap_or(text).to_owned()
}

/// `(1-based physical line, content without CR)`, blank lines included.
fn physical_lines(text: &str) -> Vec<(u64, &str)> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    lines.into_iter().enumerate().map(|(i, l)| (i as u64 + 1, l.strip_suffix('\r').unwrap_or(l))).collect()
}

fn csv_fields(line: &str, sep: u8) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(sep).from_reader(line.as_bytes());
    let record = reader.records().next().expect("one record").expect("valid CSV line");
    record.iter().map(str::to_owned).collect()
}

// ---------------------------------------------------------------------------
// A small reader of the spec files.

fn spec(export: Export) -> toml::Table {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../channels").join(export.channel()).join(format!("{}.toml", export.name()));
    let text = std::fs::read_to_string(&path).expect("spec file exists");
    text.parse().expect("spec parses")
}

fn table<'a>(t: &'a toml::Table, key: &str) -> Option<&'a toml::Table> {
    t.get(key).and_then(Toml::as_table)
}

fn string_list(v: Option<&Toml>) -> Vec<String> {
    v.and_then(Toml::as_array).map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// One `[fields]` entry.
#[derive(Debug, Default)]
struct Field {
    sources: Vec<String>,
    format: Option<String>,
    required: bool,
    constant: Option<String>,
    default: Option<String>,
    map: Option<BTreeMap<String, String>>,
    keep_unmapped: bool,
    transforms: Vec<String>,
}

struct Spec {
    json: bool,
    sep: u8,
    decimal: char,
    paris: bool,
    fill_key: Vec<String>,
    fill_columns: Vec<String>,
    type_constant: Option<String>,
    type_sources: Vec<String>,
    type_map: BTreeMap<String, String>,
    type_transforms: Vec<String>,
    type_keep_unmapped: bool,
    require: BTreeMap<String, Vec<String>>,
    fields: BTreeMap<String, Field>,
}

fn str_map(v: Option<&Toml>) -> Option<BTreeMap<String, String>> {
    v.and_then(Toml::as_table).map(|t| t.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
}

fn load(export: Export) -> Spec {
    let s = spec(export);
    assert_eq!(s["channel"].as_str(), Some(export.channel()));
    assert_eq!(s["name"].as_str(), Some(export.name()));
    let format = table(&s, "format").expect("[format]");
    let kind = format["kind"].as_str().unwrap_or_default();
    let fill = table(&s, "fill_down");
    let et = table(&s, "event_type").expect("[event_type]");
    let fields = table(&s, "fields")
        .expect("[fields]")
        .iter()
        .map(|(name, v)| {
            let t = v.as_table().expect("field table");
            let mut sources = string_list(t.get("sources"));
            if let Some(src) = t.get("source").and_then(Toml::as_str) {
                sources.push(src.to_owned());
            }
            let field = Field {
                sources,
                format: t.get("format").and_then(Toml::as_str).map(str::to_owned),
                required: t.get("required").and_then(Toml::as_bool).unwrap_or(false),
                constant: t.get("constant").and_then(Toml::as_str).map(str::to_owned),
                default: t.get("default").and_then(Toml::as_str).map(str::to_owned),
                map: str_map(t.get("map")),
                keep_unmapped: t.get("unmapped").and_then(Toml::as_str) == Some("keep"),
                transforms: string_list(t.get("transforms")),
            };
            (name.clone(), field)
        })
        .collect();
    Spec {
        json: kind != "csv",
        sep: format.get("separator").and_then(Toml::as_str).map_or(b',', |s| s.as_bytes()[0]),
        decimal: format.get("decimal").and_then(Toml::as_str).and_then(|s| s.chars().next()).unwrap_or('.'),
        paris: format.get("time_zone").and_then(Toml::as_str) == Some("Europe/Paris"),
        fill_key: fill.map(|f| string_list(f.get("key"))).unwrap_or_default(),
        fill_columns: fill.map(|f| string_list(f.get("columns"))).unwrap_or_default(),
        type_constant: et.get("constant").and_then(Toml::as_str).map(str::to_owned),
        type_sources: string_list(et.get("source")),
        type_map: str_map(et.get("map")).unwrap_or_default(),
        type_transforms: string_list(et.get("transforms")),
        type_keep_unmapped: et.get("unmapped").and_then(Toml::as_str) == Some("keep"),
        require: et
            .get("require")
            .and_then(Toml::as_table)
            .map(|t| t.iter().map(|(k, v)| (k.clone(), string_list(Some(v)))).collect())
            .unwrap_or_default(),
        fields,
    }
}

fn transform(value: &str, transforms: &[String]) -> String {
    let mut v = value.to_owned();
    for t in transforms {
        v = match t.as_str() {
            "lower" => v.to_lowercase(),
            "upper" => v.to_uppercase(),
            "remove_spaces" => v.chars().filter(|c| !c.is_whitespace()).collect(),
            _ => v,
        };
    }
    v
}

/// Strict amount in minor units: digits, optionally `decimal` and 1–2 digits.
fn amount(raw: &str, decimal: char) -> Option<i64> {
    let s = raw.trim();
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (int, frac) = s.split_once(decimal).unwrap_or((s, ""));
    let ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.len() <= 2
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(s.contains(decimal) && frac.is_empty());
    if !ok {
        return None;
    }
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    let v = int.parse::<i64>().ok()? * 100 + frac;
    Some(if neg { -v } else { v })
}

/// A row as the reader sees it: values by source path.
trait Source {
    fn get(&self, path: &str) -> Option<String>;
}

struct CsvRow {
    header: std::rc::Rc<[String]>,
    values: Vec<String>,
}

impl Source for CsvRow {
    fn get(&self, path: &str) -> Option<String> {
        let i = self.header.iter().position(|h| h == path)?;
        let v = self.values.get(i)?.trim();
        (!v.is_empty()).then(|| v.to_owned())
    }
}

/// Resolves `a.b`, `a[key=x].b` and `a[0].b` in a JSON value.
fn json_path<'a>(mut v: &'a Json, path: &str) -> Option<&'a Json> {
    for segment in path.split('.') {
        let (name, selector) = match segment.split_once('[') {
            Some((n, rest)) => (n, Some(rest.trim_end_matches(']'))),
            None => (segment, None),
        };
        v = v.get(name)?;
        if let Some(sel) = selector {
            let items = v.as_array()?;
            v = match sel.split_once('=') {
                Some((k, want)) => items.iter().find(|e| e.get(k).and_then(Json::as_str) == Some(want))?,
                None => items.get(sel.parse::<usize>().ok()?)?,
            };
        }
    }
    Some(v)
}

struct JsonRow(Json);

impl Source for JsonRow {
    fn get(&self, path: &str) -> Option<String> {
        match json_path(&self.0, path)? {
            Json::Null => None,
            Json::String(s) if s.trim().is_empty() => None,
            Json::String(s) => Some(s.trim().to_owned()),
            other => Some(other.to_string()),
        }
    }
}

/// What the reader makes of one row.
#[derive(Debug)]
struct Parsed {
    event_type: String,
    /// `Ok(instant)`, or the list of possible instants of an ambiguous local time.
    occurred_at: Vec<DateTime<Utc>>,
    values: BTreeMap<String, String>,
}

fn parse_time(raw: &str, format: &str, paris: bool) -> Result<Vec<DateTime<Utc>>, String> {
    let bad = || format!("{raw:?} does not match {format}");
    let epoch = |unit_ms: Option<bool>| -> Result<Vec<DateTime<Utc>>, String> {
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: i64 = raw.parse().map_err(|_| bad())?;
        let ms = match unit_ms {
            Some(true) => n,
            _ if n > 100_000_000_000_000 => n / 1000,
            _ if n > 100_000_000_000 => n,
            _ => n * 1000,
        };
        DateTime::from_timestamp_millis(ms).map(|d| vec![d]).ok_or_else(bad)
    };
    match format {
        "rfc3339" => DateTime::parse_from_rfc3339(raw).map(|d| vec![d.with_timezone(&Utc)]).map_err(|_| bad()),
        "epoch_ms" => epoch(Some(true)),
        "epoch_auto" => epoch(None),
        f if f.contains("%z") => DateTime::parse_from_str(raw, f).map(|d| vec![d.with_timezone(&Utc)]).map_err(|_| bad()),
        f => {
            let naive = NaiveDateTime::parse_from_str(raw, f).map_err(|_| bad())?;
            if paris {
                let local: Vec<DateTime<Utc>> = match Paris.from_local_datetime(&naive) {
                    chrono::LocalResult::Single(d) => vec![d.with_timezone(&Utc)],
                    chrono::LocalResult::Ambiguous(a, b) => {
                        vec![a.with_timezone(&Utc), b.with_timezone(&Utc)]
                    }
                    chrono::LocalResult::None => return Err(format!("{raw:?} does not exist in Paris")),
                };
                Ok(local)
            } else {
                Ok(vec![naive.and_utc()])
            }
        }
    }
}

/// Parses one row per the spec; `Err` is a rejection.
fn parse_row(spec: &Spec, row: &dyn Source) -> Result<Parsed, String> {
    let event_type = match &spec.type_constant {
        Some(c) => c.clone(),
        None => {
            let raw: Vec<String> = spec.type_sources.iter().map(|s| row.get(s).unwrap_or_default()).collect();
            let key = transform(&raw.join("|"), &spec.type_transforms);
            match spec.type_map.get(&key) {
                Some(t) => t.clone(),
                None if spec.type_keep_unmapped && !key.is_empty() => key,
                None => return Err(format!("unknown event type {key:?}")),
            }
        }
    };
    let mut values = BTreeMap::new();
    let mut occurred_at = Vec::new();
    for (name, f) in &spec.fields {
        let raw = if let Some(c) = &f.constant {
            Some(c.clone())
        } else if f.sources.len() == 1 {
            row.get(&f.sources[0])
        } else {
            None
        };
        let raw = raw.or_else(|| f.default.clone());
        let Some(raw) = raw else {
            if f.required || name == "occurred_at" {
                return Err(format!("{name} is missing"));
            }
            continue;
        };
        let value = transform(&raw, &f.transforms);
        let value = match &f.map {
            Some(map) => match map.get(&value) {
                Some(v) => v.clone(),
                None if f.keep_unmapped => value,
                None => return Err(format!("{name}: unmapped value {value:?}")),
            },
            None => value,
        };
        match name.as_str() {
            "occurred_at" => occurred_at = parse_time(&value, f.format.as_deref().unwrap_or("rfc3339"), spec.paris)?,
            "quantity" => match value.parse::<i64>() {
                Ok(q) if q > 0 => {}
                _ => return Err(format!("quantity {value:?}")),
            },
            n if n.ends_with("_minor") => {
                amount(&value, spec.decimal).ok_or_else(|| format!("{name}: amount {value:?}"))?;
            }
            _ => {}
        }
        values.insert(name.clone(), value);
    }
    for needed in spec.require.get(&event_type).into_iter().flatten() {
        if !values.contains_key(needed) {
            return Err(format!("{event_type} requires {needed}"));
        }
    }
    Ok(Parsed { event_type, occurred_at, values })
}

/// A usable e-mail: trimmed, lower case, one `@`, a dotted domain, no spaces.
fn email_identifier(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    let labels: Vec<&str> = domain.split('.').collect();
    let ok = !local.is_empty()
        && !domain.contains('@')
        && !e.contains(char::is_whitespace)
        && labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty());
    ok.then_some(e)
}

/// A usable French mobile, or Paris landline (`01…`, the stores' generic
/// phones), in E.164, from the forms people and gateways write.
fn phone_identifier(raw: &str) -> Option<String> {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let national = if raw.trim_start().starts_with('+') || (digits.len() == 11 && digits.starts_with("33")) {
        digits.strip_prefix("33").filter(|d| d.len() == 9)?.to_owned()
    } else {
        digits.strip_prefix('0').filter(|d| d.len() == 9)?.to_owned()
    };
    let n: u64 = national.parse().ok()?;
    let landline = national.starts_with('1');
    (landline || crate::person::allocated_mobile(n / 100_000_000, n % 100_000_000)).then(|| format!("+33{national}"))
}

/// Usable identifiers of a parsed row by truth kind name, and the kinds
/// written but unusable (`email_invalid`, `phone_invalid`).
fn identifiers(values: &BTreeMap<String, String>) -> (BTreeMap<&'static str, String>, Vec<&'static str>) {
    let mut out = BTreeMap::new();
    let mut warnings = Vec::new();
    if let Some(v) = values.get("customer_id") {
        out.insert("customer_id", v.clone());
    }
    if let Some(v) = values.get("email") {
        match email_identifier(v) {
            Some(e) => {
                out.insert("email", e);
            }
            None => warnings.push("email_invalid"),
        }
    }
    if let Some(v) = values.get("phone") {
        match phone_identifier(v) {
            Some(p) => {
                out.insert("phone", p);
            }
            None => warnings.push("phone_invalid"),
        }
    }
    for (field, kind) in [("loyalty_card", "loyalty_card"), ("device_id", "device_id"), ("cookie_id", "cookie_id")] {
        if let Some(v) = values.get(field) {
            out.insert(kind, v.clone());
        }
    }
    (out, warnings)
}

/// A data row and its physical line: the row's values, or why it cannot be read.
type LineRow = (u64, Result<Box<dyn Source>, String>);

/// The data rows of an export.
fn rows(spec: &Spec, export: Export, text: &str) -> Vec<LineRow> {
    let lines = physical_lines(text);
    if spec.json {
        let mut out: Vec<LineRow> = Vec::new();
        let body: &[(u64, &str)] = if export == Export::AppEvents {
            // The whole array must be valid JSON.
            let all: Json = serde_json::from_str(text).expect("the app export is one JSON array");
            assert!(all.is_array());
            assert_eq!(lines.first().map(|l| l.1), Some("["));
            assert_eq!(lines.last().map(|l| l.1), Some("]"));
            &lines[1..lines.len() - 1]
        } else {
            &lines
        };
        for &(line, content) in body {
            let content = content.trim_end_matches(',');
            if content.is_empty() {
                continue;
            }
            let parsed: Result<Box<dyn Source>, String> = serde_json::from_str::<Json>(content).map_err(|e| e.to_string()).and_then(|v| {
                if v.is_object() {
                    Ok(Box::new(JsonRow(v)) as Box<dyn Source>)
                } else {
                    Err("not an object".to_owned())
                }
            });
            out.push((line, parsed));
        }
        return out;
    }
    let header = csv_fields(lines[0].1, spec.sep);
    let shared_header: std::rc::Rc<[String]> = header.clone().into();
    let mut out: Vec<LineRow> = Vec::new();
    let mut previous: Option<Vec<String>> = None;
    for &(line, content) in &lines[1..] {
        if content.is_empty() {
            continue;
        }
        let mut values = csv_fields(content, spec.sep);
        if values.len() != header.len() {
            // Rejected without touching the fill-down state: later rows of
            // the group still fill down from its last well-formed row.
            out.push((line, Err(format!("{} fields", values.len()))));
            continue;
        }
        let col = |name: &str| header.iter().position(|h| h == name).expect("fill-down column");
        let key: Vec<String> = spec.fill_key.iter().map(|k| values[col(k)].trim().to_owned()).collect();
        if let Some(prev) = &previous {
            let prev_key: Vec<String> = spec.fill_key.iter().map(|k| prev[col(k)].trim().to_owned()).collect();
            if !spec.fill_key.is_empty() && prev_key == key {
                for c in &spec.fill_columns {
                    let i = col(c);
                    if values[i].trim().is_empty() {
                        values[i] = prev[i].clone();
                    }
                }
            }
        }
        previous = Some(values.clone());
        out.push((line, Ok(Box::new(CsvRow { header: shared_header.clone(), values }))));
    }
    out
}

/// The identity traps of a configuration: values a row may carry for its
/// person although they are not the person's own.
struct Traps {
    /// Second member → first member of each family pair.
    owner_of: HashMap<String, (Person, ChannelIdentity)>,
    store_phones: BTreeSet<String>,
}

impl Traps {
    fn new(cfg: &GenConfig) -> Self {
        let owner_of = family_pairs(cfg)
            .into_iter()
            .map(|(owner, member)| {
                let index: usize = owner[1..].parse().unwrap();
                (member, (person(cfg, index), channel_identity(cfg, index)))
            })
            .collect();
        let store_phones = (1..=36).map(|n| store_generic_phone(&format!("M{n:03}"))).collect();
        Traps { owner_of, store_phones }
    }

    /// Whether `person_id` may type e-mail `value`: their family's, or a placeholder.
    fn email(&self, person_id: &str, value: &str) -> bool {
        BLOCKED_PLACEHOLDERS.contains(&value) || self.owner_of.get(person_id).is_some_and(|(owner, _)| owner.email == value)
    }

    /// Whether `person_id` may browse with cookie `value`: the family tablet.
    fn cookie(&self, person_id: &str, value: &str) -> bool {
        self.owner_of.get(person_id).is_some_and(|(_, owner)| owner.cookie_ids.first().is_some_and(|c| c == value))
    }
}

/// Checks an export against its spec and its truth; returns the number of
/// rows checked.
fn check_against_spec(cfg: &GenConfig, export: Export) -> Generated {
    let spec = load(export);
    let g = generate(cfg, export);
    let text = decode(cfg, export, &g.bytes);
    let rows = rows(&spec, export, &text);
    assert_eq!(rows.len(), g.truth.len(), "{export}: rows vs truth rows");
    assert_eq!(g.stats.rows, g.truth.len() as u64);
    let persons: HashMap<String, (Person, ChannelIdentity)> = g
        .truth
        .iter()
        .filter(|t| !t.person_id.is_empty())
        .map(|t| t.person_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|pid| {
            let index: usize = pid[1..].parse().unwrap();
            (pid, (person(cfg, index), channel_identity(cfg, index)))
        })
        .collect();
    // Identity traps: values a person types that are not theirs.
    let traps = Traps::new(cfg);
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    let mut warned: BTreeMap<Export, u64> = BTreeMap::new();
    for ((line, row), t) in rows.iter().zip(&g.truth) {
        assert_eq!(*line, t.line, "{export}: truth line");
        let parsed = row.as_ref().map_err(Clone::clone).and_then(|r| parse_row(&spec, r.as_ref()));
        assert_eq!(
            parsed.is_ok(),
            t.valid,
            "{export} line {line} {:?}: reader says {:?}, truth says valid={} defect={}",
            physical_lines(&text)[*line as usize - 1].1,
            parsed.as_ref().err(),
            t.valid,
            t.defect
        );
        if !t.valid {
            assert!(!t.defect.is_empty(), "{export} line {line}");
            continue;
        }
        assert!(t.defect.is_empty());
        let parsed = parsed.unwrap();
        *types.entry(parsed.event_type.clone()).or_default() += 1;
        assert_eq!(parsed.event_type, t.event_type, "{export} line {line}");
        assert!(export.event_types().contains(&t.event_type.as_str()));
        let truth_at = DateTime::parse_from_rfc3339(&t.occurred_at_utc).unwrap().with_timezone(&Utc);
        match (parsed.occurred_at.as_slice(), t.note.as_str()) {
            ([one], _) => assert_eq!(*one, truth_at, "{export} line {line}"),
            ([first, _], "dst_fall_back_first") => assert_eq!(*first, truth_at),
            ([_, second], "dst_fall_back_second") => assert_eq!(*second, truth_at),
            (other, note) => panic!("{export} line {line}: {other:?} with note {note:?}"),
        }
        // Identifiers: exactly the kinds the truth lists, all the person's;
        // mistyped ones exactly where the truth warns.
        let (ids, warnings) = identifiers(&parsed.values);
        assert_eq!(warnings.join("|"), t.identifier_warning, "{export} line {line}");
        if !warnings.is_empty() {
            *warned.entry(export).or_insert(0) += 1;
        }
        let kinds: Vec<&str> = ids.keys().copied().collect();
        let mut truth_kinds: Vec<&str> = t.identifiers.split('|').filter(|k| !k.is_empty()).collect();
        truth_kinds.sort_unstable();
        assert_eq!(kinds, truth_kinds, "{export} line {line}");
        if t.person_id.is_empty() {
            assert!(ids.is_empty() && warnings.is_empty());
            continue;
        }
        let (p, id) = &persons[&t.person_id];
        for (kind, value) in &ids {
            let ok = match *kind {
                "customer_id" => *value == p.customer_id,
                "email" => *value == p.email || traps.email(&t.person_id, value),
                "phone" => *value == p.phone_e164 || traps.store_phones.contains(value),
                "loyalty_card" => Some(value) == id.loyalty_card.as_ref(),
                "device_id" => Some(value) == id.device_id.as_ref(),
                "cookie_id" => id.cookie_ids.contains(value) || traps.cookie(&t.person_id, value),
                _ => false,
            };
            assert!(ok, "{export} line {line}: {kind} {value:?} is not {}'s", t.person_id);
        }
    }
    assert_eq!(types, g.stats.event_types, "{export}: per-type counts");
    let expected_warnings = g.truth.iter().filter(|t| t.valid && !t.identifier_warning.is_empty()).count() as u64;
    assert_eq!(warned.get(&export).copied().unwrap_or(0), expected_warnings);
    g
}

#[test]
fn every_export_follows_its_spec_and_truth() {
    for rate in [0.0, 0.05] {
        let cfg = config(11, 150, rate);
        for export in Export::ALL {
            let g = check_against_spec(&cfg, export);
            assert!(g.stats.rows > 100, "{export}: {}", g.stats.rows);
            if rate == 0.0 {
                assert_eq!(g.stats.malformed_rows, 0, "{export}");
            } else {
                assert!(g.stats.malformed_rows > 0, "{export}");
            }
        }
    }
    // Mistyped optional identifiers: kept rows, flagged in the truth.
    let cfg = config(11, 400, 0.0);
    for export in [Export::PosReceipts, Export::EcommerceCheckouts, Export::CrmContacts] {
        let g = generate(&cfg, export);
        let warned = g.truth.iter().filter(|t| !t.identifier_warning.is_empty()).count();
        assert!(warned > 0 && warned * 25 < g.truth.len(), "{export}: {warned}");
    }
    // The UTF-8 variant of the receipts too.
    let cfg = GenConfig { pos_encoding: PosEncoding::Utf8Bom, ..config(12, 200, 0.05) };
    check_against_spec(&cfg, Export::PosReceipts);
}

#[test]
fn csv_headers_match_the_spec_columns() {
    for export in Export::ALL {
        let spec = load(export);
        if spec.json {
            assert!(export.header().is_empty());
            continue;
        }
        let header = export.header();
        for (name, f) in &spec.fields {
            for source in &f.sources {
                assert!(header.contains(&source.as_str()), "{export}: {name} reads {source}");
            }
        }
        for c in spec.fill_key.iter().chain(&spec.fill_columns).chain(&spec.type_sources) {
            assert!(header.contains(&c.as_str()), "{export}: {c}");
        }
        // Every canonical type we produce is one the spec can produce.
        let produced: BTreeSet<&str> = spec.type_map.values().map(String::as_str).collect();
        for t in export.event_types() {
            assert!(produced.contains(t) || spec.type_constant.as_deref() == Some(*t), "{export}: {t}");
        }
    }
    let pos = load(Export::PosReceipts);
    assert_eq!(pos.fill_columns, POS_RECEIPT_LEVEL_COLUMNS);
}

#[test]
fn deterministic_bytes() {
    let cfg = config(42, 250, 0.01);
    let other = config(43, 250, 0.01);
    for export in Export::ALL {
        let a = generate(&cfg, export);
        let b = generate(&cfg, export);
        assert!(a.bytes == b.bytes && a.truth_bytes == b.truth_bytes, "{export}");
        assert_eq!(a.stats, b.stats);
        let c = generate(&other, export);
        assert_ne!(a.bytes, c.bytes, "{export}");
    }
}

#[test]
fn orders_export_is_the_orders_writer() {
    let cfg = config(7, 300, 0.02);
    let g = generate(&cfg, Export::EcommerceOrders);
    let (mut orders, mut legacy_truth) = (Vec::new(), Vec::new());
    let stats = write_ecommerce_orders(&cfg, &mut orders, &mut legacy_truth).unwrap();
    assert_eq!(g.bytes, orders);
    let legacy = crate::read_truth(legacy_truth.as_slice()).unwrap();
    assert_eq!(legacy.len(), g.truth.len());
    for (l, t) in legacy.iter().zip(&g.truth) {
        assert_eq!((l.line, &l.person_id, l.valid), (t.line, &t.person_id, t.valid));
        assert_eq!((&l.order_id, &l.created_at_utc, &l.defect), (&t.reference, &t.occurred_at_utc, &t.defect));
    }
    assert_eq!(g.stats.malformed_rows, stats.malformed_rows);
    assert_eq!(g.stats.persons, stats.persons_with_orders);
}

#[test]
fn pos_receipts_are_windows_1252_or_utf8_with_bom() {
    let cfg = config(3, 120, 0.0);
    let g = generate(&cfg, Export::PosReceipts);
    let header = POS_RECEIPTS_HEADER.join(";");
    // Real single-byte accents: `é` is 0xE9.
    assert!(g.bytes.starts_with(b"Magasin;Date;Caisse;Ticket;Ligne;Type;Carte fid\xe9lit\xe9;"));
    assert!(std::str::from_utf8(&g.bytes).is_err());
    let (text, _, had_errors) = encoding_rs::WINDOWS_1252.decode(&g.bytes);
    assert!(!had_errors);
    assert!(text.starts_with(&format!("{header}\r\n")));
    assert!(text.contains("Vêtements") || text.contains("Beauté") || text.contains("Libellé"));

    let utf8 = generate(&GenConfig { pos_encoding: PosEncoding::Utf8Bom, ..cfg.clone() }, Export::PosReceipts);
    assert!(utf8.bytes.starts_with(b"\xef\xbb\xbf"));
    let utf8_text = std::str::from_utf8(&utf8.bytes[3..]).unwrap();
    assert_eq!(utf8_text, text, "same content, other encoding");
    assert_eq!(utf8.truth_bytes, g.truth_bytes);
    // Every table string the receipts may hold has a Windows-1252 form.
    for product in crate::data::PRODUCTS {
        assert!(!encoding_rs::WINDOWS_1252.encode(product.name).2, "{}", product.name);
    }
}

#[test]
fn crm_has_a_bom_and_crlf() {
    let g = generate(&config(3, 50, 0.0), Export::CrmContacts);
    let header = format!("\u{feff}{}\r\n", CRM_CONTACTS_HEADER.join(";"));
    assert!(g.bytes.starts_with(header.as_bytes()));
    let text = std::str::from_utf8(&g.bytes).unwrap();
    assert!(text.split('\n').filter(|l| !l.is_empty()).all(|l| l.ends_with('\r')));
    for export in [Export::EmailActivity, Export::SmsReport, Export::EcommerceCheckouts] {
        let g = generate(&config(3, 50, 0.0), export);
        assert!(g.bytes.starts_with(export.header().join(if export == Export::SmsReport { ";" } else { "," }).as_bytes()));
        assert!(!g.bytes.contains(&b'\r'), "{export}");
    }
}

#[test]
fn receipts_fill_down_and_visits() {
    let cfg = config(5, 400, 0.0);
    let g = generate(&cfg, Export::PosReceipts);
    let text = decode(&cfg, Export::PosReceipts, &g.bytes);
    let col = |name: &str| POS_RECEIPTS_HEADER.iter().position(|h| *h == name).unwrap();
    let level: Vec<usize> = POS_RECEIPT_LEVEL_COLUMNS.iter().map(|c| col(c)).collect();
    let (mut later_lines, mut visits, mut anonymous, mut spaced_cards) = (0, 0, 0, 0);
    let mut previous_ticket = String::new();
    for ((_, line), t) in physical_lines(&text)[1..].iter().filter(|(_, l)| !l.is_empty()).zip(&g.truth) {
        let f = csv_fields(line, b';');
        let ticket = format!("{}-{}", f[col("Magasin")], f[col("Ticket")]);
        assert_eq!(ticket, t.reference);
        if f[col("Ligne")] == "1" {
            assert_ne!(ticket, previous_ticket);
            assert!(!f[col("Date")].is_empty() && !f[col("Type")].is_empty());
        } else {
            assert_eq!(ticket, previous_ticket);
            for &c in &level {
                assert!(f[c].is_empty(), "{line}");
            }
            later_lines += 1;
        }
        if t.event_type == "store_visit" {
            visits += 1;
            for c in ["Code article", "Libellé", "Quantité", "Prix unitaire", "Montant ligne", "Total ticket"] {
                assert!(f[col(c)].is_empty(), "{line}");
            }
            assert!(!t.person_id.is_empty(), "visits are identified");
        }
        if t.person_id.is_empty() {
            anonymous += 1;
            assert!(t.identifiers.is_empty());
        }
        if f[col("Carte fidélité")].contains(' ') || f[col("Carte fidélité")].starts_with("arf") {
            spaced_cards += 1;
        }
        previous_ticket = ticket;
    }
    assert!(later_lines > 100 && visits > 20 && anonymous > 100 && spaced_cards > 5, "{later_lines} {visits} {anonymous} {spaced_cards}");
    let types = &g.stats.event_types;
    assert!(types["return"] > 10 && types["store_purchase"] > types["return"]);
}

#[test]
fn receipts_at_the_dst_edges() {
    let cfg = config(9, 10, 0.0);
    let g = generate(&cfg, Export::PosReceipts);
    let text = decode(&cfg, Export::PosReceipts, &g.bytes);
    let lines = physical_lines(&text);
    let at = |note: &str| {
        let t = g.truth.iter().find(|t| t.note == note).unwrap_or_else(|| panic!("{note}"));
        let line = lines[t.line as usize - 1].1;
        (csv_fields(line, b';')[1].clone(), t.occurred_at_utc.clone(), t.person_id.clone())
    };
    // 2026: spring switch on March 29, autumn switch on October 25.
    assert_eq!(at("dst_spring_forward_before"), ("29/03/2026 01:45".to_owned(), "2026-03-29T00:45:00Z".to_owned(), "P0000000".to_owned()));
    assert_eq!(at("dst_spring_forward_after"), ("29/03/2026 03:15".to_owned(), "2026-03-29T01:15:00Z".to_owned(), "P0000001".to_owned()));
    assert_eq!(at("dst_fall_back_first"), ("25/10/2026 02:30".to_owned(), "2026-10-25T00:30:00Z".to_owned(), "P0000002".to_owned()));
    assert_eq!(at("dst_fall_back_second"), ("25/10/2026 02:30".to_owned(), "2026-10-25T01:30:00Z".to_owned(), "P0000003".to_owned()));
    // Never a local time inside the spring gap.
    assert!(!text.contains("29/03/2026 02:"));
}

#[test]
fn malformed_share_follows_the_rate() {
    for export in Export::ALL {
        let sized = |rate| GenConfig { max_rows: Some(8_000), ..config(2024, 100_000, rate) };
        let low = generate(&sized(0.004), export);
        let high = generate(&sized(0.05), export);
        assert_eq!(low.stats.rows, 8_000, "{export}");
        assert_eq!(low.stats.rows, high.stats.rows, "{export}: same rows whatever the rate");
        let share = high.stats.malformed_rows as f64 / high.stats.rows as f64;
        assert!((0.035..=0.065).contains(&share), "{export}: share {share}");
        let share = low.stats.malformed_rows as f64 / low.stats.rows as f64;
        assert!(share <= 0.009, "{export}: share {share}");
        for (l, h) in low.truth.iter().zip(&high.truth) {
            assert_eq!((&l.person_id, &l.event_type), (&h.person_id, &h.event_type));
            assert!(l.valid || !h.valid, "{export}: defects only grow with the rate");
        }
        let defects: BTreeSet<&str> = high.truth.iter().map(|t| t.defect.as_str()).collect();
        assert!(defects.len() >= 3, "{export}: {defects:?}");
    }
}

#[test]
fn blank_lines_are_counted_in_line_numbers() {
    let cfg = config(31, 600, 0.0);
    for export in [Export::PosReceipts, Export::WebEvents, Export::EmailActivity, Export::SmsReport, Export::CrmContacts] {
        let g = generate(&cfg, export);
        assert!(g.stats.blank_lines > 0, "{export}");
        let text = decode(&cfg, export, &g.bytes);
        let lines = physical_lines(&text);
        assert_eq!(lines.len() as u64, g.stats.lines, "{export}");
        let blanks = lines.iter().filter(|(_, l)| l.is_empty()).count() as u64;
        assert_eq!(blanks, g.stats.blank_lines, "{export}");
        for t in &g.truth {
            assert!(!lines[t.line as usize - 1].1.is_empty(), "{export}: line {}", t.line);
        }
    }
}

#[test]
fn the_same_persons_appear_in_several_channels() {
    let cfg = config(77, 400, 0.0);
    let mut channels_of: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for export in Export::ALL {
        let g = generate(&cfg, export);
        for t in g.truth.iter().filter(|t| !t.person_id.is_empty()) {
            channels_of.entry(t.person_id.clone()).or_default().insert(export.channel());
        }
    }
    assert_eq!(channels_of.len(), 400, "everyone is in the CRM");
    let in_three = channels_of.values().filter(|c| c.len() >= 3).count();
    let in_five = channels_of.values().filter(|c| c.len() >= 5).count();
    assert!(in_three > 250 && in_five > 20, "{in_three} {in_five}");
    let share = |channel: &str| channels_of.values().filter(|c| c.contains(channel)).count() as f64 / 400.0;
    assert!((0.5..0.7).contains(&share("pos")), "pos {}", share("pos"));
    assert!((0.4..0.6).contains(&share("web")), "web {}", share("web"));
    assert!((0.75..0.95).contains(&share("email")), "email {}", share("email"));
    assert!((0.2..0.4).contains(&share("sms")), "sms {}", share("sms"));
    assert!((0.15..0.35).contains(&share("app")), "app {}", share("app"));

    // Identities agree with what the channels carry.
    for index in 0..cfg.persons {
        let id = channel_identity(&cfg, index);
        let seen = &channels_of[&id.person_id];
        assert_eq!(id.web_visitor, seen.contains("web"), "{}", id.person_id);
        // Subscribers created lately may not have received anything yet.
        assert!(id.sms_subscriber || !seen.contains("sms"), "{}", id.person_id);
        assert!(id.email_subscriber || !seen.contains("email"), "{}", id.person_id);
        assert!(id.app_user || !seen.contains("app"), "{}", id.person_id);
        assert!(id.loyalty_card.is_none() || id.store_shopper);
        assert_eq!(id.app_user, id.device_id.is_some());
        assert_eq!(id.web_visitor, !id.cookie_ids.is_empty());
    }
}

#[test]
fn identifiers_are_written_in_varied_forms() {
    let cfg = config(8, 800, 0.0);
    let sms = String::from_utf8(generate(&cfg, Export::SmsReport).bytes).unwrap();
    for form in [";33", ";+33 ", ";+33", ";0"] {
        assert!(sms.contains(form), "{form}");
    }
    let email = String::from_utf8(generate(&cfg, Export::EmailActivity).bytes).unwrap();
    assert!(email.lines().any(|l| l.starts_with(' ')), "padded e-mails");
    assert!(email.lines().any(|l| l.split(',').next().is_some_and(|e| e.chars().any(char::is_uppercase))));
    let crm = String::from_utf8(generate(&cfg, Export::CrmContacts).bytes).unwrap();
    let fields: Vec<Vec<String>> = crm.lines().skip(1).filter(|l| !l.is_empty()).map(|l| csv_fields(l, b';')).collect();
    assert!(fields.iter().any(|f| f[9].contains(' ')), "spaced postal codes");
    assert!(fields.iter().any(|f| f[5].chars().all(|c| !c.is_lowercase())), "upper-case names");
    assert!(fields.iter().any(|f| f[7].starts_with("+33 ")) && fields.iter().any(|f| f[7].starts_with("06 ")));
    let web = String::from_utf8(generate(&cfg, Export::WebEvents).bytes).unwrap();
    assert!(web.contains("\"event_timestamp\":\"") && web.contains("\"event_timestamp\":1"));
    assert!(web.contains("\"key\":\"email\"") && web.contains("\"user_id\""));
    assert!(web.contains("\"price\":") && web.contains("\"items\":[{"));
}

#[test]
fn max_rows_cuts_cleanly() {
    for export in Export::ALL {
        let cfg = GenConfig { max_rows: Some(257), ..config(4, 10_000, 0.01) };
        let g = generate(&cfg, export);
        assert_eq!(g.stats.rows, 257, "{export}");
        assert_eq!(g.truth.len(), 257, "{export}");
        if export == Export::AppEvents {
            let v: Json = serde_json::from_slice(&g.bytes).expect("closed array");
            assert_eq!(v.as_array().map(Vec::len), Some(257));
        }
    }
    // Persons beyond what is needed are never generated: fast even with a huge count.
    let cfg = GenConfig { max_rows: Some(1000), ..config(4, 50_000_000, 0.0) };
    let started = std::time::Instant::now();
    assert_eq!(generate(&cfg, Export::CrmContacts).stats.rows, 1000);
    assert!(started.elapsed().as_secs() < 20);
}

#[test]
fn empty_and_invalid_configurations() {
    for export in Export::ALL {
        let g = generate(&config(1, 0, 0.0), export);
        assert_eq!(g.stats.rows, 0, "{export}");
        assert!(g.truth.is_empty());
        if export == Export::AppEvents {
            assert_eq!(g.bytes, b"[\n]\n");
        } else if !export.header().is_empty() {
            assert_eq!(g.stats.lines, 1);
        }
        for rate in [-0.1, 1.5, f64::NAN] {
            let cfg = config(1, 5, rate);
            assert!(write_channel(&cfg, export, &mut Vec::new(), &mut Vec::new()).is_err());
        }
    }
}

#[test]
fn exports_names_and_parsing() {
    let mut paths = BTreeSet::new();
    for export in Export::ALL {
        assert_eq!(export.to_string().parse::<Export>(), Ok(export));
        assert_eq!(export.relative_path().parse::<Export>(), Ok(export));
        assert!(paths.insert(export.relative_path()));
        assert!(export.truth_relative_path().ends_with(".truth.csv"));
        assert!(PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../channels")
            .join(export.channel())
            .join(format!("{}.toml", export.name()))
            .exists());
    }
    assert_eq!("pos".parse::<Export>(), Ok(Export::PosReceipts));
    assert_eq!("crm".parse::<Export>(), Ok(Export::CrmContacts));
    assert!("ecommerce".parse::<Export>().is_err());
    assert_eq!("utf-8-bom".parse::<PosEncoding>(), Ok(PosEncoding::Utf8Bom));
    assert_eq!("cp1252".parse::<PosEncoding>(), Ok(PosEncoding::Windows1252));
}

#[test]
fn channels_dir_layout() {
    let dir = std::env::temp_dir().join(format!("ariane-datagen-channels-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = config(5, 60, 0.01);
    let summary = write_channels_dir(&cfg, &dir).unwrap();
    assert_eq!(summary.persons, 60);
    assert_eq!(summary.exports.len(), Export::ALL.len());
    for (export, stats) in Export::ALL.iter().zip(&summary.exports) {
        let bytes = std::fs::read(dir.join(export.relative_path())).unwrap();
        assert_eq!(bytes, generate(&cfg, *export).bytes, "{export}");
        let truth = read_channel_truth(std::fs::File::open(dir.join(export.truth_relative_path())).unwrap()).unwrap();
        assert_eq!(truth.len() as u64, stats.rows);
    }
    let identities = std::fs::read_to_string(dir.join("identities.csv")).unwrap();
    assert_eq!(identities.lines().next(), Some(IDENTITIES_HEADER.join(",").as_str()));
    assert_eq!(identities.lines().count(), 61);
    assert_eq!(std::fs::read_to_string(dir.join("persons.csv")).unwrap().lines().count(), 61);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// Identity traps.

/// A valid row as the spec-driven reader sees it.
struct ReadRow {
    truth: ChannelTruthRow,
    /// Usable identifiers by kind (see [`identifiers`]).
    ids: BTreeMap<&'static str, String>,
    /// The row's mapped values, as written (after the spec's transforms).
    values: BTreeMap<String, String>,
}

/// The valid rows of `export`, read per its spec.
fn read_valid_rows(cfg: &GenConfig, export: Export) -> Vec<ReadRow> {
    let spec = load(export);
    let g = generate(cfg, export);
    let text = decode(cfg, export, &g.bytes);
    rows(&spec, export, &text)
        .into_iter()
        .zip(g.truth)
        .filter(|(_, t)| t.valid)
        .map(|((_, row), truth)| {
            let parsed = parse_row(&spec, row.expect("valid row reads").as_ref()).expect("valid row parses");
            let (ids, _) = identifiers(&parsed.values);
            ReadRow { truth, ids, values: parsed.values }
        })
        .collect()
}

#[test]
fn identity_traps_are_planted() {
    let cfg = config(7, 500, DEFAULT_MALFORMED_RATE);
    let read: BTreeMap<Export, Vec<ReadRow>> = [Export::PosReceipts, Export::EcommerceCheckouts, Export::WebEvents, Export::CrmContacts]
        .into_iter()
        .map(|e| (e, read_valid_rows(&cfg, e)))
        .collect();

    // Family members sharing an e-mail: the second member's rows carry the
    // first member's e-mail (in several channels) and their own customer id.
    let pairs = family_pairs(&cfg);
    assert!(!pairs.is_empty() && pairs.len() <= 15, "{pairs:?}");
    let index = |pid: &str| -> usize { pid[1..].parse().unwrap() };
    let mut shared_in: BTreeMap<&str, BTreeSet<Export>> = BTreeMap::new();
    for (owner, member) in &pairs {
        let (owner_p, member_p) = (person(&cfg, index(owner)), person(&cfg, index(member)));
        assert_ne!(owner_p.email, member_p.email);
        for (export, rows) in &read {
            for r in rows.iter().filter(|r| &r.truth.person_id == member) {
                if r.ids.get("email") == Some(&owner_p.email) {
                    shared_in.entry(member).or_default().insert(*export);
                }
                assert_ne!(r.ids.get("email"), Some(&member_p.email), "{export} {member}");
                if let Some(c) = r.ids.get("customer_id") {
                    assert_eq!(c, &member_p.customer_id, "{export} {member}");
                }
                if let Some(card) = r.ids.get("loyalty_card") {
                    assert_eq!(Some(card), channel_identity(&cfg, index(member)).loyalty_card.as_ref());
                }
            }
        }
    }
    assert!(shared_in.values().any(|exports| exports.len() >= 2), "{shared_in:?}");

    // Family tablet: one cookie with two customer ids (two true persons).
    let mut by_cookie: BTreeMap<&str, BTreeSet<(&str, &str)>> = BTreeMap::new();
    for r in &read[&Export::WebEvents] {
        if let (Some(cookie), Some(customer)) = (r.ids.get("cookie_id"), r.ids.get("customer_id")) {
            by_cookie.entry(cookie).or_default().insert((customer, &r.truth.person_id));
        }
    }
    let tablets: Vec<_> = by_cookie.iter().filter(|(_, seen)| seen.len() >= 2).collect();
    assert!(!tablets.is_empty());
    for (cookie, seen) in &tablets {
        let persons: BTreeSet<&str> = seen.iter().map(|s| s.1).collect();
        assert_eq!(persons.len(), 2, "{cookie}: {seen:?}");
        let persons: Vec<&str> = persons.into_iter().collect();
        assert!(pairs.iter().any(|(a, b)| persons.contains(&a.as_str()) && persons.contains(&b.as_str())), "{cookie} is a family's");
    }

    // The store's generic phone, on receipts of different persons.
    let store_phones: BTreeSet<String> = (1..=36).map(|n| store_generic_phone(&format!("M{n:03}"))).collect();
    let receipts = &read[&Export::PosReceipts];
    let mut by_store_phone: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut store_phone_receipts = BTreeSet::new();
    for r in receipts {
        if let Some(phone) = r.ids.get("phone").filter(|p| store_phones.contains(*p)) {
            assert!(r.ids.contains_key("loyalty_card"), "{}", r.truth.reference);
            assert!(!r.truth.person_id.is_empty());
            by_store_phone.entry(phone).or_default().insert(&r.truth.person_id);
            store_phone_receipts.insert(&r.truth.reference);
        }
    }
    let persons_with_store_phone: BTreeSet<&str> = by_store_phone.values().flatten().copied().collect();
    assert!(persons_with_store_phone.len() >= 5, "{by_store_phone:?}");
    assert!(by_store_phone.values().any(|p| p.len() >= 2), "{by_store_phone:?}");
    let carded: BTreeSet<&String> = receipts.iter().filter(|r| r.ids.contains_key("loyalty_card")).map(|r| &r.truth.reference).collect();
    let share = store_phone_receipts.len() as f64 / carded.len() as f64;
    assert!((0.01..0.06).contains(&share), "{share}");

    // Placeholders, as written, on receipts and checkouts.
    let mut placeholders: BTreeMap<&str, u64> = BTreeMap::new();
    for export in [Export::PosReceipts, Export::EcommerceCheckouts] {
        for r in &read[&export] {
            for field in ["email", "phone"] {
                let Some(raw) = r.values.get(field) else {
                    continue;
                };
                if let Some(p) = BLOCKED_PLACEHOLDERS.iter().find(|p| **p == raw.trim()) {
                    *placeholders.entry(p).or_default() += 1;
                    assert!(!r.truth.person_id.is_empty());
                    if field == "phone" {
                        // Not a valid number: a warning, not an identifier.
                        assert!(r.truth.identifier_warning.contains("phone_invalid"));
                        assert!(!r.truth.identifiers.contains("phone"));
                    } else {
                        assert!(r.truth.identifiers.contains("email"));
                    }
                }
            }
        }
    }
    assert!(!placeholders.is_empty());
    // No placeholder anywhere else.
    for export in [Export::WebEvents, Export::CrmContacts] {
        for r in &read[&export] {
            assert!(r.values.values().all(|v| !BLOCKED_PLACEHOLDERS.contains(&v.trim())));
        }
    }
}

#[test]
fn identity_traps_are_deterministic() {
    let cfg = config(7, 500, DEFAULT_MALFORMED_RATE);
    assert_eq!(family_pairs(&cfg), family_pairs(&cfg.clone()));
    for export in [Export::PosReceipts, Export::EcommerceCheckouts, Export::WebEvents, Export::CrmContacts] {
        let (a, b) = (generate(&cfg, export), generate(&cfg, export));
        assert!(a.bytes == b.bytes && a.truth_bytes == b.truth_bytes, "{export}");
    }
    // Another seed, other families.
    assert_ne!(family_pairs(&cfg), family_pairs(&config(8, 500, 0.0)));
    // Trap decisions draw nothing from the writers' streams: rows and their
    // persons stay those of the same seed, whatever the malformed rate.
    for export in Export::ALL {
        let g = generate(&cfg, export);
        let clean = generate(&config(7, 500, 0.0), export);
        assert_eq!(g.truth.len(), clean.truth.len(), "{export}");
        for (a, b) in g.truth.iter().zip(&clean.truth) {
            assert_eq!((&a.person_id, &a.event_type, &a.reference), (&b.person_id, &b.event_type, &b.reference), "{export}");
        }
    }
}

#[test]
fn truth_persons_cover_every_valid_row() {
    let dir = std::env::temp_dir().join(format!("ariane-datagen-truth-persons-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = config(7, 120, 0.02);
    write_channels_dir(&cfg, &dir).unwrap();
    let persons = read_truth_persons(&dir).unwrap();
    let mut expected = 0;
    for export in Export::ALL {
        let truth = read_channel_truth(std::fs::File::open(dir.join(export.truth_relative_path())).unwrap()).unwrap();
        assert!(truth.iter().any(|t| !t.valid), "{export}: some invalid rows");
        for t in &truth {
            let got = persons.get(&(export.relative_path(), t.line));
            if t.valid && !t.person_id.is_empty() {
                assert_eq!(got, Some(&t.person_id), "{export}:{}", t.line);
                expected += 1;
            } else {
                assert_eq!(got, None, "{export}:{}", t.line);
            }
        }
    }
    assert_eq!(persons.len(), expected);
    // Anonymous till receipts are left out, family members are themselves.
    let (owner, member) = family_pairs(&cfg).into_iter().next().unwrap();
    let values: BTreeSet<&String> = persons.values().collect();
    assert!(values.contains(&owner) && values.contains(&member));
    assert!(persons.keys().all(|(path, line)| *line >= 1 && Export::ALL.iter().any(|e| e.relative_path() == *path)));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(read_truth_persons(&dir).is_err());
}

#[test]
fn the_crm_knows_the_loyalty_card_and_app_purchases_are_logged_in() {
    let cfg = config(11, 300, 0.0);
    let card_of = |pid: &str| channel_identity(&cfg, pid[1..].parse().unwrap()).loyalty_card;
    let crm = generate(&cfg, Export::CrmContacts);
    let text = String::from_utf8(crm.bytes).unwrap();
    let col = CRM_CONTACTS_HEADER.iter().position(|h| *h == "Carte fidélité").unwrap();
    let mut carded = 0;
    for (line, t) in text.lines().skip(1).filter(|l| !l.is_empty()).zip(&crm.truth) {
        let card = card_of(&t.person_id);
        assert_eq!(t.identifiers.split('|').any(|k| k == "loyalty_card"), card.is_some(), "{line}");
        assert_eq!(csv_fields(line, b';')[col], card.clone().unwrap_or_default(), "{line}");
        carded += usize::from(card.is_some());
    }
    assert!(carded > 0);
    let app = generate(&cfg, Export::AppEvents);
    let purchases: Vec<&ChannelTruthRow> = app.truth.iter().filter(|t| t.event_type == "in_app_purchase").collect();
    assert!(!purchases.is_empty());
    for t in purchases {
        assert!(t.identifiers.split('|').any(|k| k == "customer_id"), "{t:?}");
    }
}

// ---------------------------------------------------------------------------
// Planted effects.

#[test]
fn the_store_invitation_is_planted_with_its_truth() {
    let cfg = config(21, 2000, DEFAULT_MALFORMED_RATE);
    let mut planted_bytes = Vec::new();
    let rows = write_planted_truth(&cfg, &mut planted_bytes).unwrap();
    let planted = read_planted_truth(planted_bytes.as_slice()).unwrap();
    assert_eq!(planted.len() as u64, rows);
    assert_eq!(String::from_utf8(planted_bytes).unwrap().lines().next(), Some(PLANTED_TRUTH_HEADER.join(",").as_str()));

    // Every planted send, delivery and click is a valid row of the SMS report, of the
    // campaign, at the truth's instant; and nothing else of the campaign is there.
    let sms = generate(&cfg, Export::SmsReport);
    let text = decode(&cfg, Export::SmsReport, &sms.bytes);
    let lines = physical_lines(&text);
    let mut campaign_rows = BTreeSet::new();
    for t in &sms.truth {
        let f = csv_fields(lines[t.line as usize - 1].1, b';');
        if f.get(1).map(String::as_str) == Some(STORE_INVITATION_CAMPAIGN) {
            assert!(t.valid, "planted rows are never malformed: {t:?}");
            campaign_rows.insert((t.person_id.clone(), t.event_type.clone(), t.occurred_at_utc.clone()));
        }
    }
    let mut expected = BTreeSet::new();
    for r in &planted {
        assert_eq!((r.channel.as_str(), r.campaign.as_str()), ("sms", STORE_INVITATION_CAMPAIGN));
        for (event_type, at) in [("sms_sent", &r.sent_at_utc), ("sms_delivered", &r.delivered_at_utc), ("sms_click", &r.clicked_at_utc)] {
            if !at.is_empty() {
                expected.insert((r.person_id.clone(), event_type.to_string(), at.clone()));
            }
        }
    }
    assert_eq!(campaign_rows, expected);

    // Every planted order is a valid store purchase of the receipts, at the truth's instant
    // and for the truth's amount, identified, after the click and within the days planted.
    let pos = generate(&cfg, Export::PosReceipts);
    let mut receipts: BTreeMap<&str, Vec<&ChannelTruthRow>> = BTreeMap::new();
    for t in &pos.truth {
        receipts.entry(t.reference.as_str()).or_default().push(t);
    }
    let pos_text = decode(&cfg, Export::PosReceipts, &pos.bytes);
    let pos_lines = physical_lines(&pos_text);
    let col = |name: &str| POS_RECEIPTS_HEADER.iter().position(|h| *h == name).unwrap();
    let instant = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
    let mut orders = 0;
    for r in planted.iter().filter(|r| !r.order_id.is_empty()) {
        orders += 1;
        let lines = &receipts[r.order_id.as_str()];
        let mut amount = 0;
        for t in lines {
            assert!(t.valid && t.event_type == "store_purchase" && t.person_id == r.person_id, "{t:?}");
            assert_eq!(t.occurred_at_utc, r.ordered_at_utc);
            assert!(!t.identifiers.is_empty());
            let f = csv_fields(pos_lines[t.line as usize - 1].1, b';');
            amount += amount_cents(&f[col("Montant ligne")]);
        }
        assert_eq!(Some(amount), r.amount_minor, "{}", r.order_id);
        let (clicked, ordered) = (instant(&r.clicked_at_utc), instant(&r.ordered_at_utc));
        assert!(ordered - clicked >= chrono::Duration::minutes(30) && ordered - clicked < chrono::Duration::days(PURCHASE_DAYS), "{r:?}");
        assert!(channel_identity(&cfg, r.person_id[1..].parse().unwrap()).store_shopper);
    }
    // Planted receipts only: no other receipt is numbered in the planted range.
    let planted_receipts = receipts.keys().filter(|k| k.split('-').nth(1).is_some_and(|t| t.len() == 8)).count();
    assert_eq!(planted_receipts, orders);

    // The rates are the planted ones (2000 persons: a few hundred receivers).
    let delivered = planted.iter().filter(|r| !r.delivered_at_utc.is_empty()).count() as f64;
    let clicked: Vec<_> = planted.iter().filter(|r| !r.clicked_at_utc.is_empty()).collect();
    let shoppers = clicked.iter().filter(|r| channel_identity(&cfg, r.person_id[1..].parse().unwrap()).store_shopper).count() as f64;
    println!(
        "planted: {} receivers, {delivered} delivered, {} clicks ({shoppers} store shoppers), {orders} orders",
        planted.len(),
        clicked.len()
    );
    assert!(planted.len() > 300, "{}", planted.len());
    let click_rate = clicked.len() as f64 / delivered;
    assert!((0.22..0.38).contains(&click_rate), "click rate {click_rate}");
    let buy_rate = orders as f64 / shoppers;
    assert!((0.45..0.75).contains(&buy_rate), "purchase rate {buy_rate}");
}

/// Cents of a French amount (`12,90`).
fn amount_cents(raw: &str) -> i64 {
    amount(raw, ',').unwrap_or_else(|| panic!("amount {raw:?}"))
}
