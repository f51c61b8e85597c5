//! Identity-resolution quality against the data generator's ground truth.
//!
//! [`read_generated`] reads a directory written by `ariane_datagen::write_channels_dir`
//! (every export of `Export::ALL`) through the real ingest parser and labels each valid
//! source row with its true person (`read_truth_persons`), its identity key (the event's
//! `anchor_id`) and its usable identifiers; it also returns every observation, to be
//! resolved. [`score`] turns those rows and the profile of each identity key (from
//! `Resolver::profiles_of_evidence`, on any store) into pairwise precision and recall
//! (`ariane_identity::quality::pairwise`) and profile counts before and after resolution.
//!
//! Rows join the truth by `(Export::relative_path(), line)`: the parser is given the
//! relative path as its source key. Identity keys do not depend on the source key, so they
//! are those of the same files ingested under any landing key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Context};
use ariane_datagen::{read_truth_persons, Export};
use ariane_identity::quality::{pairwise, Labeled, Quality};
use ariane_identity::resolver::{HistoryRecord, Resolver};
use ariane_identity::rules::Rules;
use ariane_identity::store::ItemStore;
use ariane_ingest::engine::{self, RowSink, SinkError};
use ariane_ingest::map::FileContext;
use ariane_ingest::pipeline::fingerprint;
use ariane_ingest::spec::{Catalog, FormatKind};
use ariane_shared::identifiers::{identity_key, sha256_hex};
use ariane_shared::model::{CanonicalEvent, Observation, RejectedRow};

/// One valid source row of a known person, with an identity key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `Export::relative_path()` (`pos/receipts.csv`).
    pub source_key: String,
    /// 1-based physical line, as in the truth.
    pub line: u64,
    /// The true person (`P0000042`).
    pub person: String,
    /// The row's identity key (`anchor_id`).
    pub identity_key: String,
    /// The row's usable identifiers (`kind:value`, not blocked by the rules), sorted.
    pub identifiers: Vec<String>,
}

/// What happened to the rows of one file (or of all of them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowCounts {
    pub events: u64,
    pub rejected: u64,
    /// Events kept as [`Row`]s (a true person and an identity key).
    pub scored: u64,
    /// Events with an identity key but no true person (anonymous for the generator, or not
    /// a valid row in its truth).
    pub without_person: u64,
    /// Events without an identity key (no identifier at all); of them,
    /// `without_anchor_with_person` belong to a known person.
    pub without_anchor: u64,
    pub without_anchor_with_person: u64,
    /// Scored rows whose identity key came with no observation of the file (identifiers
    /// then unknown, left empty): must be 0.
    pub without_observation: u64,
    /// Valid truth rows of a person that no event matched (by line): must be 0.
    pub truth_unmatched: u64,
}

impl RowCounts {
    fn add(&mut self, o: &RowCounts) {
        self.events += o.events;
        self.rejected += o.rejected;
        self.scored += o.scored;
        self.without_person += o.without_person;
        self.without_anchor += o.without_anchor;
        self.without_anchor_with_person += o.without_anchor_with_person;
        self.without_observation += o.without_observation;
        self.truth_unmatched += o.truth_unmatched;
    }
}

impl std::fmt::Display for RowCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events ({} rejected rows): {} scored, {} without a true person (anonymous), {} without identity key ({} of a known person), {} without observation, {} truth rows unmatched",
            self.events,
            self.rejected,
            self.scored,
            self.without_person,
            self.without_anchor,
            self.without_anchor_with_person,
            self.without_observation,
            self.truth_unmatched
        )
    }
}

/// A generated directory read through ingest, labelled with the truth.
#[derive(Clone, Debug, Default)]
pub struct Generated {
    pub rows: Vec<Row>,
    /// Every observation of every file, in file order (what ingest sends to identity).
    pub observations: Vec<Observation>,
    /// Per file (`Export::relative_path()`), in `Export::ALL` order.
    pub files: Vec<(String, RowCounts)>,
    pub total: RowCounts,
}

#[derive(Default)]
struct Collect {
    events: Vec<(u64, Option<String>)>,
    rejected: u64,
    observations: Vec<Observation>,
}

impl RowSink for Collect {
    fn event(&mut self, e: CanonicalEvent) -> Result<(), SinkError> {
        self.events.push((e.source_line, e.anchor_id));
        Ok(())
    }
    fn rejected(&mut self, _row: RejectedRow) -> Result<(), SinkError> {
        self.rejected += 1;
        Ok(())
    }
    fn observation(&mut self, o: Observation) -> Result<(), SinkError> {
        self.observations.push(o);
        Ok(())
    }
}

/// Parses one file as the channel ingest does: spec selected by channel and key, Parquet
/// from a local path, everything else streamed. The fingerprint is the pipeline's, with
/// the content's SHA-256 in place of the S3 ETag (it only names rows of specs without a
/// natural key; identity keys do not depend on it).
fn parse_file(catalog: &Catalog, export: Export, path: &Path, source_key: &str) -> anyhow::Result<Collect> {
    let spec = catalog.select(export.channel(), source_key).with_context(|| format!("{}: no channel spec", path.display()))?;
    if spec.name != export.name() {
        bail!("{}: read by spec {} instead of {}/{}", path.display(), spec.file, export.channel(), export.name());
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let fp = fingerprint(export.channel(), &sha256_hex(&String::from_utf8_lossy(&bytes)), Some(bytes.len() as i64));
    let file = FileContext { source_key: source_key.to_string(), fingerprint: fp };
    let mut sink = Collect::default();
    let counts = if spec.format.kind == FormatKind::Parquet {
        engine::parse_parquet(path, spec, file, &mut sink)
    } else {
        engine::parse(Box::new(std::io::Cursor::new(bytes)), spec, file, &mut sink)
    }
    .with_context(|| format!("parsing {} with {}", path.display(), spec.file))?;
    if counts.events != sink.events.len() as u64 || counts.rejected != sink.rejected {
        bail!("{}: the parser counted {counts:?} but delivered {} events and {} rejects", path.display(), sink.events.len(), sink.rejected);
    }
    Ok(sink)
}

/// Reads every export of a directory written by `write_channels_dir` through the ingest
/// parser and labels its rows with the truth (see [`Generated`]).
pub fn read_generated(dir: &Path, catalog: &Catalog, rules: &Rules) -> anyhow::Result<Generated> {
    let truth = read_truth_persons(dir).with_context(|| format!("reading the truth of {}", dir.display()))?;
    let mut out = Generated::default();
    for export in Export::ALL {
        let source_key = export.relative_path();
        let path = dir.join(export.channel()).join(export.file_name());
        let sink = parse_file(catalog, export, &path, &source_key)?;
        let mut usable: HashMap<String, Vec<String>> = HashMap::new();
        for o in &sink.observations {
            let Some(key) = identity_key(&o.identifiers) else { continue };
            usable.entry(key).or_insert_with(|| {
                let mut ids: Vec<String> = o
                    .identifiers
                    .iter()
                    .filter(|i| rules.usable(i.kind, &i.value))
                    .map(|i| format!("{}:{}", i.kind.as_str(), i.value))
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                ids
            });
        }
        let mut counts = RowCounts { events: sink.events.len() as u64, rejected: sink.rejected, ..RowCounts::default() };
        let mut matched = 0u64;
        for (line, anchor) in sink.events {
            let person = truth.get(&(source_key.clone(), line));
            matched += u64::from(person.is_some());
            match (person, anchor) {
                (Some(person), Some(key)) => {
                    let identifiers = match usable.get(&key) {
                        Some(ids) => ids.clone(),
                        None => {
                            counts.without_observation += 1;
                            Vec::new()
                        }
                    };
                    counts.scored += 1;
                    out.rows.push(Row { source_key: source_key.clone(), line, person: person.clone(), identity_key: key, identifiers });
                }
                (None, Some(_)) => counts.without_person += 1,
                (person, None) => {
                    counts.without_anchor += 1;
                    counts.without_anchor_with_person += u64::from(person.is_some());
                }
            }
        }
        let truth_rows = truth.keys().filter(|(k, _)| *k == source_key).count() as u64;
        counts.truth_unmatched = truth_rows.saturating_sub(matched);
        out.total.add(&counts);
        out.files.push((source_key, counts));
        out.observations.extend(sink.observations);
    }
    Ok(out)
}

/// The distinct identity keys of `rows`, sorted.
pub fn identity_keys(rows: &[Row]) -> Vec<String> {
    rows.iter().map(|r| r.identity_key.clone()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// The current profile of every identity key of `rows`, from any store.
pub async fn profiles_of_rows<S: ItemStore>(resolver: &Resolver<S>, rows: &[Row]) -> anyhow::Result<BTreeMap<String, Option<String>>> {
    let keys = identity_keys(rows);
    resolver.profiles_of_evidence(&keys).await.with_context(|| format!("reading the profiles of {} identity keys", keys.len()))
}

/// Quality of a resolution, with the profile counts before and after it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Score {
    pub quality: Quality,
    /// Distinct identity keys (identifier sets) of the rows that have a usable identifier:
    /// the profiles there would be without linking.
    pub profiles_before: usize,
    /// Distinct profile ids of the rows.
    pub profiles_after: usize,
    /// Distinct identity keys of the rows with no usable identifier (placeholders only).
    pub keys_without_usable: usize,
    /// Rows whose identity key has no profile (no usable or only shared identifiers,
    /// unknown key).
    pub rows_without_profile: u64,
}

/// The rows labelled with the profile of their identity key (None when absent from `profiles`).
pub fn labeled(rows: &[Row], profiles: &BTreeMap<String, Option<String>>) -> Vec<Labeled> {
    rows.iter()
        .map(|r| Labeled {
            person: r.person.clone(),
            profile: profiles.get(&r.identity_key).cloned().flatten(),
            identifiers: r.identifiers.clone(),
        })
        .collect()
}

/// Scores `rows` against `profiles` (identity key → profile id).
pub fn score(rows: &[Row], profiles: &BTreeMap<String, Option<String>>) -> Score {
    let labeled = labeled(rows, profiles);
    let mut with_ids = BTreeSet::new();
    let mut without_ids = BTreeSet::new();
    for r in rows {
        if r.identifiers.is_empty() {
            without_ids.insert(r.identity_key.as_str());
        } else {
            with_ids.insert(r.identity_key.as_str());
        }
    }
    let after: BTreeSet<&str> = labeled.iter().filter_map(|l| l.profile.as_deref()).collect();
    Score {
        quality: pairwise(&labeled),
        profiles_before: with_ids.len(),
        profiles_after: after.len(),
        keys_without_usable: without_ids.len(),
        rows_without_profile: labeled.iter().filter(|l| l.profile.is_none()).count() as u64,
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = &self.quality;
        write!(
            f,
            "{} rows; profiles before {} (distinct usable identifier sets), after {}; precision {:.4} ({} of {} predicted pairs), recall {:.4} ({} of {} linkable pairs); {} rows without profile",
            q.rows, self.profiles_before, self.profiles_after, q.precision, q.true_pairs, q.predicted_pairs, q.recall, q.found_pairs, q.linkable_pairs,
            self.rows_without_profile
        )
    }
}

/// The `merge` records of one identity history object (JSON lines of
/// `ariane_identity::resolver::HistoryRecord`, under `identity/history/`).
pub fn merge_records(jsonl: &[u8]) -> anyhow::Result<u64> {
    let mut merges = 0;
    for (i, line) in jsonl.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace)) {
        let record: HistoryRecord = serde_json::from_slice(line).with_context(|| format!("line {}", i + 1))?;
        merges += u64::from(record.action == "merge");
    }
    Ok(merges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(person: &str, key: &str, ids: &[&str]) -> Row {
        Row {
            source_key: "x".into(),
            line: 1,
            person: person.into(),
            identity_key: key.into(),
            identifiers: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn scores_profiles_before_and_after() {
        let rows =
            vec![row("a", "k1", &["email:a"]), row("a", "k2", &["email:a", "phone:1"]), row("b", "k3", &["email:b"]), row("b", "k4", &[])];
        let profiles: BTreeMap<String, Option<String>> = [("k1", Some("p1")), ("k2", Some("p1")), ("k3", Some("p2")), ("k4", None)]
            .into_iter()
            .map(|(k, p)| (k.to_string(), p.map(str::to_string)))
            .collect();
        let s = score(&rows, &profiles);
        assert_eq!((s.profiles_before, s.profiles_after, s.keys_without_usable, s.rows_without_profile), (3, 2, 1, 1));
        assert_eq!((s.quality.precision, s.quality.recall), (1.0, 1.0));
        assert_eq!(identity_keys(&rows), vec!["k1", "k2", "k3", "k4"]);
    }

    #[test]
    fn counts_merge_records() {
        let rec = |action: &str| {
            format!(
                r#"{{"at":"2026-11-23T00:00:00Z","action":"{action}","profile_id":"p_1","evidence":null,"observation_id":null,"source_key":null,"source_line":null,"reason":null}}"#
            )
        };
        let body = format!("{}\n{}\n{}\n\n", rec("merge"), rec("shared"), rec("merge"));
        assert_eq!(merge_records(body.as_bytes()).unwrap(), 2);
        assert!(merge_records(b"{not json}\n").unwrap_err().to_string().contains("line 1"));
    }
}
