//! Identity-resolution quality against the data generator's ground truth.
//!
//! [`read_generated`] reads a directory written by `ariane_datagen::write_channels_dir`
//! (every export of `Export::ALL`) through the real ingest parser and labels each valid
//! source row with its truth (person, event type, reference, instant: the channel truth
//! files of `read_channel_truth`), its identity key (the event's
//! `anchor_id`) and its usable identifiers; it also returns every observation, to be
//! resolved. [`score`] turns those rows and the profile of each identity key (from
//! `Resolver::profiles_of_evidence`, on any store) into pairwise precision and recall
//! (`ariane_identity::quality::pairwise`) and profile counts before and after resolution;
//! [`person_quality`] turns them into figures per person (rows in one profile, or split:
//! unlinkable with the reasons, or missed with the chain the resolver should have
//! followed; recent buyers the reactivation segment sees as lapsed).
//!
//! Rows join the truth by `(Export::relative_path(), line)`: the parser is given the
//! relative path as its source key. Identity keys do not depend on the source key, so they
//! are those of the same files ingested under any landing key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Context};
use ariane_datagen::{read_channel_truth, ChannelTruthRow, Export};
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
use chrono::{DateTime, Duration, Utc};

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
    /// The truth's canonical event type (`store_purchase`, `email_open`, …).
    pub event_type: String,
    /// The truth's business reference (receipt `Magasin-Ticket`, order `Name`, …).
    pub reference: String,
    /// The truth's instant of the event.
    pub occurred_at: DateTime<Utc>,
}

impl Row {
    /// The export's channel (`pos` of `pos/receipts.csv`).
    pub fn channel(&self) -> &str {
        self.source_key.split('/').next().unwrap_or(&self.source_key)
    }

    /// Whether the row is a purchase, an order of the segments' `orders` view (e-shop
    /// order line, till sale, in-app purchase).
    pub fn is_purchase(&self) -> bool {
        PURCHASE_EVENT_TYPES.contains(&self.event_type.as_str())
    }
}

/// The event types of purchases: one order per `(channel, reference)`.
pub const PURCHASE_EVENT_TYPES: [&str; 3] = ["order_line", "store_purchase", "in_app_purchase"];

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
    let mut out = Generated::default();
    for export in Export::ALL {
        let source_key = export.relative_path();
        let truth_path = dir.join(export.channel()).join(export.truth_file_name());
        let file = std::fs::File::open(&truth_path).with_context(|| format!("opening {}", truth_path.display()))?;
        let truth_rows = read_channel_truth(std::io::BufReader::new(file)).with_context(|| format!("reading {}", truth_path.display()))?;
        // The true person of every valid row (invalid and anonymous rows left out).
        let truth: HashMap<u64, &ChannelTruthRow> =
            truth_rows.iter().filter(|t| t.valid && !t.person_id.is_empty()).map(|t| (t.line, t)).collect();
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
            let person = truth.get(&line);
            matched += u64::from(person.is_some());
            match (person, anchor) {
                (Some(t), Some(key)) => {
                    let identifiers = match usable.get(&key) {
                        Some(ids) => ids.clone(),
                        None => {
                            counts.without_observation += 1;
                            Vec::new()
                        }
                    };
                    counts.scored += 1;
                    let occurred_at = DateTime::parse_from_rfc3339(&t.occurred_at_utc)
                        .with_context(|| format!("{}: line {line}: occurred_at_utc {:?}", truth_path.display(), t.occurred_at_utc))?
                        .with_timezone(&Utc);
                    out.rows.push(Row {
                        source_key: source_key.clone(),
                        line,
                        person: t.person_id.clone(),
                        identity_key: key,
                        identifiers,
                        event_type: t.event_type.clone(),
                        reference: t.reference.clone(),
                        occurred_at,
                    });
                }
                (None, Some(_)) => counts.without_person += 1,
                (person, None) => {
                    counts.without_anchor += 1;
                    counts.without_anchor_with_person += u64::from(person.is_some());
                }
            }
        }
        counts.truth_unmatched = (truth.len() as u64).saturating_sub(matched);
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

/// The reactivation segment's lapse (`segments/reactivation.sql`): a profile with at least
/// `min_orders` orders (any channel) and none since `run_at - days`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lapse {
    pub run_at: DateTime<Utc>,
    pub days: i64,
    pub min_orders: usize,
}

impl Lapse {
    /// `HAVING COUNT(*) >= 2 AND MAX(ordered_at) < {{run_at}} - INTERVAL '90 days'`.
    pub fn reactivation(run_at: DateTime<Utc>) -> Lapse {
        Lapse { run_at, days: 90, min_orders: 2 }
    }

    /// Orders at or after it are recent.
    pub fn cutoff(&self) -> DateTime<Utc> {
        self.run_at - Duration::days(self.days)
    }
}

/// One row of a chain of linkable values between two profiles of one person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainLink {
    /// `pos/receipts.csv:123`.
    pub row: String,
    pub profile: Option<String>,
    pub identifiers: Vec<String>,
    /// The linkable value that ties this row to the previous one (None for the first).
    pub via: Option<String>,
}

/// A person whose rows ended in several profiles although a chain of linkable values
/// (values of no other person) ties them: what the resolver should have linked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissedSplit {
    pub person: String,
    /// Distinct profiles of the person's rows with a usable identifier (None: no profile).
    pub profiles: Vec<Option<String>>,
    pub chain: Vec<ChainLink>,
}

/// Identity quality per person (see [`person_quality`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersonQuality {
    /// Distinct persons of the rows.
    pub persons: usize,
    /// Persons none of whose rows has a usable identifier (nothing to link).
    pub without_usable: usize,
    /// Persons whose rows with a usable identifier all end in exactly one profile.
    pub one_profile: usize,
    /// Split persons whose parts no chain of linkable values ties.
    pub split_unlinkable: usize,
    /// Split persons with a chain of linkable values between two of their profiles.
    pub split_missed: usize,
    /// Parts of the unlinkable splits other than the person's main profile (the one with
    /// the most rows carrying a customer id, then the most rows).
    pub unlinkable: Vec<UnlinkablePart>,
    /// The missed splits, each with one chain.
    pub missed: Vec<MissedSplit>,
    /// Persons with a purchase row, and of them those whose purchases sit in more than
    /// one profile (or in none).
    pub buyers: usize,
    pub buyers_split: usize,
    /// Persons with a purchase since the lapse cutoff (the truth says: not lapsed).
    pub recent_buyers: usize,
    /// Recent buyers with a profile that holds purchases of theirs, none of them recent.
    pub recent_buyers_stale_profile: usize,
    /// Of those, the ones such a profile also has `min_orders` orders: the reactivation
    /// segment decides on that profile as lapsed ("we miss you" to a recent buyer).
    pub recent_buyers_decided_lapsed: usize,
    /// Those persons (`P0000042`).
    pub recent_buyers_decided_lapsed_persons: Vec<String>,
    /// Of them, those whose recent purchases all lack a usable identifier (a till receipt
    /// with a placeholder only): no resolver can know they bought.
    pub recent_buyers_decided_lapsed_unidentified: usize,
    pub lapse: Option<Lapse>,
}

impl PersonQuality {
    /// Split persons (unlinkable + missed).
    pub fn split(&self) -> usize {
        self.split_unlinkable + self.split_missed
    }

    /// The unlinkable parts by [`UnlinkablePart::reason`]: reason → (parts, persons).
    pub fn unlinkable_reasons(&self) -> BTreeMap<String, (usize, usize)> {
        let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for part in &self.unlinkable {
            let reason = part.reason();
            let slot = out.entry(reason.clone()).or_default();
            slot.0 += 1;
            if seen.insert((reason, part.person.as_str())) {
                slot.1 += 1;
            }
        }
        out
    }
}

/// Union-find over row indices.
struct Dsu(Vec<usize>);

impl Dsu {
    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a] = b;
        }
    }
}

/// The kind of a `kind:value` identifier.
fn kind_of(identifier: &str) -> &str {
    identifier.split_once(':').map_or(identifier, |(k, _)| k)
}

/// A part of an unlinkable split outside the person's main profile: rows of the person
/// in one profile (or in none) that no linkable value ties to the person's other rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnlinkablePart {
    pub person: String,
    pub profile: Option<String>,
    /// Channels of the part's rows (`pos`, `web`, …).
    pub channels: BTreeSet<String>,
    /// Kinds of the part's linkable values (values of this person only, seen in no other
    /// part of theirs).
    pub kinds: BTreeSet<String>,
    /// Kinds of the part's values other persons carry too (a family e-mail, a tablet's
    /// cookie, a store's phone).
    pub shared_kinds: BTreeSet<String>,
    pub rows: usize,
    /// Purchase rows of the part.
    pub purchases: usize,
}

impl UnlinkablePart {
    /// The part's category: channels and identifier kinds, `shared` for values other
    /// persons carry, whether it holds purchases, `no profile` when it has none.
    pub fn reason(&self) -> String {
        let channels: Vec<&str> = self.channels.iter().map(String::as_str).collect();
        let kinds: Vec<String> = self.kinds.iter().cloned().chain(self.shared_kinds.iter().map(|k| format!("shared {k}"))).collect();
        format!(
            "{}{} rows with {}{}",
            if self.profile.is_none() { "no profile: " } else { "" },
            channels.join("+"),
            kinds.join(", "),
            if self.purchases > 0 { " (purchases)" } else { "" }
        )
    }
}

/// Identity quality per person, from labelled rows and the profile of each identity key
/// (None or absent: no profile).
///
/// A value is *linkable* when the rows of exactly one person carry it (a shared family
/// e-mail, a store's phone, a family tablet's cookie are not). A person's rows with a
/// usable identifier are *split* when they end in more than one profile, or some of them
/// in none; a split is *missed* when a chain of rows sharing linkable values ties rows
/// that ended in different profiles (or a row with a linkable value has no profile),
/// otherwise *unlinkable*, each part outside the main profile counted under a reason
/// ([`PersonQuality::unlinkable_reasons`]).
///
/// With `lapse`, purchases (one order per `(channel, reference)` of the purchase rows, at
/// its earliest row) are grouped by profile as the reactivation segment groups them, and
/// recent buyers with a profile of theirs that the segment finds lapsed are counted.
pub fn person_quality(rows: &[Row], profiles: &BTreeMap<String, Option<String>>, lapse: Option<Lapse>) -> PersonQuality {
    let profile_of = |r: &Row| -> Option<&str> { profile_in(profiles, r) };
    let mut value_persons: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for r in rows {
        for i in &r.identifiers {
            value_persons.entry(i.as_str()).or_default().insert(r.person.as_str());
        }
    }
    let linkable = |i: &str| value_persons.get(i).is_some_and(|ps| ps.len() == 1);
    let mut by_person: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_person.entry(&r.person).or_default().push(r);
    }
    let mut q = PersonQuality { persons: by_person.len(), lapse, ..PersonQuality::default() };
    for (person, all) in &by_person {
        let usable: Vec<&Row> = all.iter().copied().filter(|r| !r.identifiers.is_empty()).collect();
        if usable.is_empty() {
            q.without_usable += 1;
            continue;
        }
        let ends: BTreeSet<Option<&str>> = usable.iter().map(|r| profile_of(r)).collect();
        if ends.len() == 1 && ends.first().is_some_and(Option::is_some) {
            q.one_profile += 1;
            continue;
        }
        // Components of rows tied by linkable values.
        let mut dsu = Dsu((0..usable.len()).collect());
        let mut first_with: HashMap<&str, usize> = HashMap::new();
        for (n, r) in usable.iter().enumerate() {
            for i in r.identifiers.iter().filter(|i| linkable(i)) {
                match first_with.get(i.as_str()) {
                    Some(&m) => dsu.union(m, n),
                    None => {
                        first_with.insert(i, n);
                    }
                }
            }
        }
        let mut component_ends: HashMap<usize, BTreeSet<Option<&str>>> = HashMap::new();
        let mut orphan = None;
        for (n, r) in usable.iter().enumerate() {
            let c = dsu.find(n);
            component_ends.entry(c).or_default().insert(profile_of(r));
            if profile_of(r).is_none() && r.identifiers.iter().any(|i| linkable(i)) {
                orphan.get_or_insert(n);
            }
        }
        let crossing = component_ends.iter().filter(|(_, e)| e.len() > 1).map(|(c, _)| *c).min();
        if crossing.is_some() || orphan.is_some() {
            q.split_missed += 1;
            let chain = match crossing {
                Some(c) => chain_between(&usable, &mut dsu, c, &linkable, profiles),
                None => orphan.map(|n| vec![link(usable[n], profiles, None)]).unwrap_or_default(),
            };
            q.missed.push(MissedSplit {
                person: person.to_string(),
                profiles: ends.iter().map(|p| p.map(str::to_string)).collect(),
                chain,
            });
            continue;
        }
        q.split_unlinkable += 1;
        let mut parts: BTreeMap<Option<&str>, Vec<&Row>> = BTreeMap::new();
        for r in &usable {
            parts.entry(profile_of(r)).or_default().push(r);
        }
        let with_customer = |rs: &[&Row]| rs.iter().filter(|r| r.identifiers.iter().any(|i| kind_of(i) == "customer_id")).count();
        let main = parts
            .iter()
            .filter(|(p, _)| p.is_some())
            .max_by_key(|(p, rs)| (with_customer(rs), rs.len(), std::cmp::Reverse(**p)))
            .map(|(p, _)| *p);
        for (p, rs) in parts.into_iter().filter(|(p, _)| Some(*p) != main) {
            let mut part = UnlinkablePart {
                person: person.to_string(),
                profile: p.map(str::to_string),
                channels: rs.iter().map(|r| r.channel().to_string()).collect(),
                kinds: BTreeSet::new(),
                shared_kinds: BTreeSet::new(),
                rows: rs.len(),
                purchases: rs.iter().filter(|r| r.is_purchase()).count(),
            };
            for i in rs.iter().flat_map(|r| &r.identifiers) {
                if linkable(i) { &mut part.kinds } else { &mut part.shared_kinds }.insert(kind_of(i).to_string());
            }
            q.unlinkable.push(part);
        }
    }
    purchases_per_person(rows, profiles, lapse, &mut q);
    q
}

/// The profile of a row's identity key.
fn profile_in<'p>(profiles: &'p BTreeMap<String, Option<String>>, r: &Row) -> Option<&'p str> {
    profiles.get(&r.identity_key).and_then(|p| p.as_deref())
}

fn link(r: &Row, profiles: &BTreeMap<String, Option<String>>, via: Option<String>) -> ChainLink {
    ChainLink {
        row: format!("{}:{}", r.source_key, r.line),
        profile: profile_in(profiles, r).map(str::to_string),
        identifiers: r.identifiers.clone(),
        via,
    }
}

/// A shortest chain of rows of `component`, from a row of its first profile to a row of
/// another one, each step through one linkable value.
fn chain_between(
    usable: &[&Row],
    dsu: &mut Dsu,
    component: usize,
    linkable: &dyn Fn(&str) -> bool,
    profiles: &BTreeMap<String, Option<String>>,
) -> Vec<ChainLink> {
    let profile_of = |r: &Row| -> Option<&str> { profile_in(profiles, r) };
    let members: Vec<usize> = (0..usable.len()).filter(|&n| dsu.find(n) == component).collect();
    let start = members[0];
    let start_end = profile_of(usable[start]);
    let mut with_value: HashMap<&str, Vec<usize>> = HashMap::new();
    for &n in &members {
        for i in usable[n].identifiers.iter().filter(|i| linkable(i)) {
            with_value.entry(i.as_str()).or_default().push(n);
        }
    }
    // Breadth-first search over rows, through values.
    let mut previous: HashMap<usize, (usize, &str)> = HashMap::new();
    let mut seen: BTreeSet<usize> = [start].into();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut target = None;
    while let Some(n) = queue.pop_front() {
        if profile_of(usable[n]) != start_end {
            target = Some(n);
            break;
        }
        for i in usable[n].identifiers.iter().filter(|i| linkable(i)) {
            for &m in &with_value[i.as_str()] {
                if seen.insert(m) {
                    previous.insert(m, (n, i.as_str()));
                    queue.push_back(m);
                }
            }
        }
    }
    let mut chain = Vec::new();
    let mut at = target;
    while let Some(n) = at {
        let step = previous.get(&n);
        chain.push(link(usable[n], profiles, step.map(|(_, v)| v.to_string())));
        at = step.map(|(m, _)| *m);
    }
    chain.reverse();
    chain
}

/// The purchase figures of [`PersonQuality`].
fn purchases_per_person(rows: &[Row], profiles: &BTreeMap<String, Option<String>>, lapse: Option<Lapse>, q: &mut PersonQuality) {
    // Orders per profile: (channel, reference) → earliest instant.
    let mut orders: BTreeMap<&str, BTreeMap<(&str, &str), DateTime<Utc>>> = BTreeMap::new();
    let mut person_profiles: BTreeMap<&str, BTreeSet<Option<&str>>> = BTreeMap::new();
    let mut last_purchase: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    // The latest purchase of each person that carries a usable identifier.
    let mut last_identified: BTreeMap<&str, DateTime<Utc>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.is_purchase()) {
        let profile = profile_in(profiles, r);
        person_profiles.entry(&r.person).or_default().insert(profile);
        let last = last_purchase.entry(&r.person).or_insert(r.occurred_at);
        *last = (*last).max(r.occurred_at);
        if !r.identifiers.is_empty() {
            let last = last_identified.entry(&r.person).or_insert(r.occurred_at);
            *last = (*last).max(r.occurred_at);
        }
        if let Some(p) = profile {
            let slot = orders.entry(p).or_default().entry((r.channel(), r.reference.as_str())).or_insert(r.occurred_at);
            *slot = (*slot).min(r.occurred_at);
        }
    }
    q.buyers = person_profiles.len();
    q.buyers_split = person_profiles.values().filter(|ps| ps.len() > 1 || ps.contains(&None)).count();
    let Some(lapse) = lapse else { return };
    let cutoff = lapse.cutoff();
    for (person, last) in &last_purchase {
        if *last < cutoff {
            continue;
        }
        q.recent_buyers += 1;
        let stale: Vec<&BTreeMap<(&str, &str), DateTime<Utc>>> = person_profiles[person]
            .iter()
            .flatten()
            .filter_map(|p| orders.get(p))
            .filter(|o| o.values().max().is_some_and(|at| *at < cutoff))
            .collect();
        q.recent_buyers_stale_profile += usize::from(!stale.is_empty());
        if stale.iter().any(|o| o.len() >= lapse.min_orders) {
            q.recent_buyers_decided_lapsed += 1;
            q.recent_buyers_decided_lapsed_persons.push(person.to_string());
            q.recent_buyers_decided_lapsed_unidentified += usize::from(last_identified.get(person).is_none_or(|at| *at < cutoff));
        }
    }
}

impl std::fmt::Display for PersonQuality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |n: usize| if self.persons == 0 { 0.0 } else { 100.0 * n as f64 / self.persons as f64 };
        writeln!(f, "per person ({} persons with scored rows)", self.persons)?;
        writeln!(
            f,
            "  {:<58} {:>6} {:>6.1}%",
            "rows with a usable identifier all in one profile",
            self.one_profile,
            pct(self.one_profile)
        )?;
        writeln!(
            f,
            "  {:<58} {:>6} {:>6.1}%",
            "split, unlinkable (no chain of linkable values)",
            self.split_unlinkable,
            pct(self.split_unlinkable)
        )?;
        writeln!(f, "  {:<58} {:>6} {:>6.1}%", "split, missed (a chain exists)", self.split_missed, pct(self.split_missed))?;
        writeln!(f, "  {:<58} {:>6} {:>6.1}%", "no row with a usable identifier", self.without_usable, pct(self.without_usable))?;
        if !self.unlinkable.is_empty() {
            writeln!(f, "  unlinkable parts (outside the person's main profile), by channels and identifier kinds (parts / persons):")?;
            let reasons = self.unlinkable_reasons();
            let mut reasons: Vec<(&String, &(usize, usize))> = reasons.iter().collect();
            reasons.sort_by_key(|(r, (parts, _))| (std::cmp::Reverse(*parts), *r));
            for (reason, (parts, persons)) in reasons {
                writeln!(f, "    {parts:>5} / {persons:>5}  {reason}")?;
            }
        }
        write!(f, "  buyers: {}, with purchases in more than one profile (or in none): {}", self.buyers, self.buyers_split)?;
        if let Some(lapse) = &self.lapse {
            write!(
                f,
                "\n  recent buyers (a purchase since {}, {} days before the run): {}; with a profile holding purchases of theirs, none recent: {}; of which decided as lapsed (that profile has {}+ orders): {} ({} with no usable identifier on any recent purchase)",
                lapse.cutoff().format("%Y-%m-%d"),
                lapse.days,
                self.recent_buyers,
                self.recent_buyers_stale_profile,
                lapse.min_orders,
                self.recent_buyers_decided_lapsed,
                self.recent_buyers_decided_lapsed_unidentified
            )?;
        }
        Ok(())
    }
}

impl std::fmt::Display for MissedSplit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let profiles: Vec<&str> = self.profiles.iter().map(|p| p.as_deref().unwrap_or("(none)")).collect();
        write!(f, "{} in {} profiles ({})", self.person, profiles.len(), profiles.join(", "))?;
        for l in &self.chain {
            write!(
                f,
                "\n    {}{} in {}: {}",
                l.via.as_ref().map(|v| format!("via {v} -> ")).unwrap_or_default(),
                l.row,
                l.profile.as_deref().unwrap_or("(none)"),
                l.identifiers.join(" ")
            )?;
        }
        Ok(())
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

    use chrono::TimeZone;

    fn row(person: &str, key: &str, ids: &[&str]) -> Row {
        Row {
            source_key: "x".into(),
            line: 1,
            person: person.into(),
            identity_key: key.into(),
            identifiers: ids.iter().map(|s| s.to_string()).collect(),
            event_type: "page_view".into(),
            reference: String::new(),
            occurred_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    /// A row of `source_key` (`pos/receipts.csv`), its key being its identifiers.
    fn at(source_key: &str, person: &str, ids: &[&str]) -> Row {
        Row { source_key: source_key.into(), ..row(person, &ids.join("|"), ids) }
    }

    /// A purchase `reference` of `person` on `day` of November 2026, with `ids`.
    fn purchase(person: &str, reference: &str, day: u32, ids: &[&str]) -> Row {
        Row {
            event_type: "store_purchase".into(),
            reference: reference.into(),
            occurred_at: Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap() - Duration::days(if day > 20 { 0 } else { 200 }),
            ..at("pos/receipts.csv", person, ids)
        }
    }

    /// Profiles by identity key, as `(key, profile)`.
    fn profiles(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs.iter().map(|(k, p)| (k.to_string(), p.map(str::to_string))).collect()
    }

    #[test]
    fn one_profile_unlinkable_and_missed_persons() {
        let rows = vec![
            // a: one profile, plus a row without usable identifier (ignored).
            at("crm/contacts.csv", "a", &["customer_id:1", "email:a"]),
            at("web/events.ndjson", "a", &["cookie_id:a1", "customer_id:1"]),
            at("pos/receipts.csv", "a", &[]),
            // b: a till card seen nowhere else, and a family e-mail (also c's) without profile.
            at("crm/contacts.csv", "b", &["customer_id:2", "email:b"]),
            at("pos/receipts.csv", "b", &["loyalty_card:B"]),
            at("email/activity.csv", "b", &["email:family"]),
            // c: the family e-mail ties nothing; c's chain email:c → phone:c crosses two profiles.
            at("crm/contacts.csv", "c", &["customer_id:3", "email:c"]),
            at("email/activity.csv", "c", &["email:family"]),
            at("ecommerce/orders.csv", "c", &["email:c", "phone:c"]),
            at("sms/report.csv", "c", &["phone:c"]),
            // d: only rows without a usable identifier.
            at("pos/receipts.csv", "d", &[]),
        ];
        let p = profiles(&[
            ("customer_id:1|email:a", Some("pa")),
            ("cookie_id:a1|customer_id:1", Some("pa")),
            ("customer_id:2|email:b", Some("pb")),
            ("loyalty_card:B", Some("pb2")),
            ("email:family", None),
            ("customer_id:3|email:c", Some("pc")),
            ("email:c|phone:c", Some("pc")),
            ("phone:c", Some("pc2")),
        ]);
        let q = person_quality(&rows, &p, None);
        assert_eq!((q.persons, q.one_profile, q.split_unlinkable, q.split_missed, q.without_usable), (4, 1, 1, 1, 1));
        assert_eq!(
            q.unlinkable_reasons(),
            [("pos rows with loyalty_card".to_string(), (1, 1)), ("no profile: email rows with shared email".to_string(), (1, 1))]
                .into_iter()
                .collect()
        );
        let missed = &q.missed[0];
        assert_eq!(missed.person, "c");
        assert_eq!(missed.profiles, vec![None, Some("pc".to_string()), Some("pc2".to_string())]);
        let chain: Vec<(&str, Option<&str>)> = missed.chain.iter().map(|l| (l.row.as_str(), l.via.as_deref())).collect();
        assert_eq!(
            chain,
            vec![("crm/contacts.csv:1", None), ("ecommerce/orders.csv:1", Some("email:c")), ("sms/report.csv:1", Some("phone:c"))]
        );
        assert!(missed.to_string().contains("via phone:c -> sms/report.csv:1 in pc2: phone:c"), "{missed}");
        let table = q.to_string();
        assert!(table.contains("split, missed (a chain exists)") && table.contains("1 /     1  pos rows with loyalty_card"), "{table}");
    }

    #[test]
    fn a_linkable_value_without_profile_is_missed() {
        let rows = vec![at("crm/contacts.csv", "a", &["customer_id:1"]), at("pos/receipts.csv", "a", &["email:a"])];
        let q = person_quality(&rows, &profiles(&[("customer_id:1", Some("pa")), ("email:a", None)]), None);
        assert_eq!((q.one_profile, q.split_unlinkable, q.split_missed), (0, 0, 1));
        assert_eq!(q.missed[0].chain.len(), 1);
    }

    #[test]
    fn recent_buyers_decided_as_lapsed() {
        let run_at = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        let rows = vec![
            // a: two old receipts in one profile, a recent order in another: decided as lapsed.
            purchase("a", "M001-1", 1, &["loyalty_card:A"]),
            purchase("a", "M001-2", 2, &["loyalty_card:A"]),
            Row { source_key: "ecommerce/orders.csv".into(), ..purchase("a", "#1", 22, &["customer_id:1"]) },
            // b: one old receipt alone (stale, but one order), a recent order elsewhere.
            purchase("b", "M001-3", 1, &["loyalty_card:B"]),
            purchase("b", "M001-4", 22, &["customer_id:2"]),
            // c: old and recent purchases in one profile; two lines of one receipt.
            purchase("c", "M001-5", 1, &["customer_id:3"]),
            purchase("c", "M001-6", 22, &["customer_id:3"]),
            purchase("c", "M001-6", 22, &["customer_id:3"]),
            // d: lapsed in the truth too.
            purchase("d", "M001-7", 1, &["customer_id:4"]),
            // e: two old receipts, the recent one with a placeholder only.
            purchase("e", "M001-8", 1, &["customer_id:5"]),
            purchase("e", "M001-9", 2, &["customer_id:5"]),
            Row { identity_key: "placeholder".into(), ..purchase("e", "M001-10", 22, &[]) },
        ];
        let p = profiles(&[
            ("loyalty_card:A", Some("pa1")),
            ("customer_id:1", Some("pa2")),
            ("loyalty_card:B", Some("pb1")),
            ("customer_id:2", Some("pb2")),
            ("customer_id:3", Some("pc")),
            ("customer_id:4", Some("pd")),
            ("customer_id:5", Some("pe")),
        ]);
        let q = person_quality(&rows, &p, Some(Lapse::reactivation(run_at)));
        assert_eq!((q.buyers, q.buyers_split), (5, 3));
        assert_eq!((q.recent_buyers, q.recent_buyers_stale_profile, q.recent_buyers_decided_lapsed), (4, 3, 2));
        assert_eq!(q.recent_buyers_decided_lapsed_persons, vec!["a", "e"]);
        assert_eq!(q.recent_buyers_decided_lapsed_unidentified, 1);
        assert_eq!((q.one_profile, q.split_unlinkable), (3, 2));
        assert!(q.to_string().contains("decided as lapsed (that profile has 2+ orders): 2 (1 with no usable identifier"), "{q}");
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
