//! `ariane-local validate` for channel specs: which spec files are checked together, and
//! the dry run of one spec on a local sample export (`--sample`) through the ingest's own
//! readers and mapping ([`ariane_ingest::engine::parse_path`]), with no AWS at all.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ariane_ingest::engine::{self, Counts, RowSink, SinkError};
use ariane_ingest::map::FileContext;
use ariane_ingest::spec::{Catalog, Spec, SpecError};
use ariane_shared::model::{CanonicalEvent, Observation, RejectedRow};

/// A spec file as checked: its name in messages (relative to the repository when inside
/// it) and its text.
#[derive(Clone, Debug)]
pub struct SpecFile {
    pub shown: String,
    pub text: String,
    /// Named on the command line (not a sibling added for the overlap check).
    pub given: bool,
}

fn toml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    Ok(paths)
}

fn read(root: &Path, path: &Path, given: bool) -> anyhow::Result<SpecFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let shown = path.strip_prefix(root).unwrap_or(path).display().to_string();
    Ok(SpecFile { shown, text, given })
}

/// The spec files to check together, in the order the ingest binary embeds them
/// (channel, then file name: selection prefers the first of two equal matches).
///
/// No file given: every `channels/<channel>/*.toml`. Files given: those, plus the other
/// specs of each of their channels on disk (`channels/<channel>/`), since key patterns
/// are only meaningful against the specs deployed beside them; a given file stands for
/// the one of the same file name in its channel (a draft of it).
pub fn spec_files(root: &Path, given: &[PathBuf]) -> anyhow::Result<Vec<SpecFile>> {
    let channels = root.join("channels");
    let mut files = Vec::new();
    if given.is_empty() {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&channels)
            .with_context(|| format!("cannot list {}", channels.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            for path in toml_files(&dir)? {
                files.push(read(root, &path, true)?);
            }
        }
        return Ok(files);
    }
    let mut taken: BTreeSet<(String, String)> = BTreeSet::new();
    let mut seen_paths = BTreeSet::new();
    let mut keyed = Vec::new();
    for path in given {
        let file = read(root, path, true)?;
        let name = file_name(path);
        let channel = Spec::parse(&file.shown, &file.text).map(|s| s.channel).unwrap_or_default();
        taken.insert((channel.clone(), name.clone()));
        seen_paths.insert(path.canonicalize().unwrap_or_else(|_| path.clone()));
        keyed.push((channel, name, file));
    }
    let named: BTreeSet<String> = keyed.iter().map(|(c, _, _)| c.clone()).filter(|c| !c.is_empty()).collect();
    for channel in named {
        let dir = channels.join(&channel);
        if !dir.is_dir() {
            continue;
        }
        for path in toml_files(&dir)? {
            let name = file_name(&path);
            let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
            if taken.contains(&(channel.clone(), name.clone())) || seen_paths.contains(&canonical) {
                continue;
            }
            keyed.push((channel.clone(), name, read(root, &path, false)?));
        }
    }
    keyed.sort_by(|a, b| (&a.0, &a.1, &a.2.shown).cmp(&(&b.0, &b.1, &b.2.shown)));
    files.extend(keyed.into_iter().map(|(_, _, f)| f));
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Validates the files together as the ingest binary does at cold start.
pub fn catalog(files: &[SpecFile]) -> Result<Catalog, Vec<SpecError>> {
    let refs: Vec<(&str, &str)> = files.iter().map(|f| (f.shown.as_str(), f.text.as_str())).collect();
    Catalog::from_files(&refs)
}

/// What the dry run prints.
#[derive(Clone, Copy, Debug)]
pub struct Show {
    /// Mapped events printed (the first ones).
    pub events: usize,
    /// Rejected rows printed at most (the first ones).
    pub rejects: usize,
}

impl Default for Show {
    fn default() -> Self {
        Show { events: 5, rejects: 50 }
    }
}

/// Keeps the first events (with the observations of their rows) and rejected rows.
struct Keep {
    show: Show,
    events: Vec<CanonicalEvent>,
    observations: Vec<Observation>,
    rejected: Vec<RejectedRow>,
    absent: Vec<String>,
}

impl RowSink for Keep {
    fn event(&mut self, event: CanonicalEvent) -> Result<(), SinkError> {
        if self.events.len() < self.show.events {
            self.events.push(event);
        }
        Ok(())
    }

    fn rejected(&mut self, row: RejectedRow) -> Result<(), SinkError> {
        if self.rejected.len() < self.show.rejects {
            self.rejected.push(row);
        }
        Ok(())
    }

    /// An observation comes just before its row's event: kept while events are.
    fn observation(&mut self, observation: Observation) -> Result<(), SinkError> {
        if self.events.len() < self.show.events {
            self.observations.push(observation);
        }
        Ok(())
    }

    fn absent_columns(&mut self, columns: &[String]) {
        self.absent = columns.to_vec();
    }
}

/// Text of at most `max` characters.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

/// The event's mapped values, `name = value`, leaving out what every event has (ids,
/// channel, source) and the hashes (the identifiers are shown in clear from the row's
/// observation instead).
fn event_values(event: &CanonicalEvent) -> Vec<String> {
    const SHOWN_ELSEWHERE: &[&str] =
        &["event_id", "channel", "event_type", "occurred_at", "anchor_id", "email_hash", "phone_hash", "source_key", "source_line"];
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(event) else {
        return vec![];
    };
    map.into_iter().filter(|(k, v)| !v.is_null() && !SHOWN_ELSEWHERE.contains(&k.as_str())).map(|(k, v)| format!("{k} = {v}")).collect()
}

fn identity_line(event: &CanonicalEvent, observation: Option<&Observation>) -> String {
    let Some(o) = observation else {
        return match event.anchor_id {
            Some(_) => "identity: the same as an earlier row (identical observations are sent once per file)".into(),
            None => "identity: no identifier".into(),
        };
    };
    let mut parts: Vec<String> = o.identifiers.iter().map(|i| format!("{} {}", i.kind.as_str(), i.value)).collect();
    if let Ok(serde_json::Value::Object(traits)) = serde_json::to_value(&o.traits) {
        parts.extend(traits.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| format!("{k} = {v}")));
    }
    parts.extend(o.consents.iter().map(|c| format!("{} consent {}", c.channel.as_str(), if c.granted { "granted" } else { "refused" })));
    format!("identity: {}", parts.join(", "))
}

/// Reads `sample` with `spec` exactly as the ingest does (the key names the file in events
/// and ids) and prints the first mapped events, the rejected rows with their line and
/// reason, and the counts. A file that cannot be read at all is the error; rejected rows
/// are not.
pub fn dry_run(spec: &Spec, sample: &Path, key: &str, show: Show, out: &mut dyn Write) -> anyhow::Result<Counts> {
    let mut keep = Keep { show, events: vec![], observations: vec![], rejected: vec![], absent: vec![] };
    let file = FileContext { source_key: key.to_string(), fingerprint: "dry-run".into() };
    let counts = engine::parse_path(sample, spec, file, &mut keep)
        .with_context(|| format!("{}: cannot be read with {}", sample.display(), spec.file))?;
    if !keep.absent.is_empty() {
        writeln!(out, "optional columns absent from the sample (blank in every row): {}", keep.absent.join(", "))?;
    }
    match keep.events.len() {
        0 => writeln!(out, "\nmapped events: none")?,
        shown => writeln!(out, "\nfirst {shown} mapped event(s) of {}:", counts.events)?,
    }
    for event in &keep.events {
        let observation = keep.observations.iter().find(|o| o.source_line == event.source_line);
        writeln!(out, "  line {}: {} at {}", event.source_line, event.event_type, event.occurred_at.format("%Y-%m-%dT%H:%M:%SZ"))?;
        let values = event_values(event);
        if !values.is_empty() {
            writeln!(out, "    {}", values.join(", "))?;
        }
        writeln!(out, "    {}", identity_line(event, observation))?;
    }
    writeln!(out, "\nrejected rows: {}", counts.rejected)?;
    for r in &keep.rejected {
        writeln!(out, "  line {}: {}", r.line, r.reason)?;
        if !r.raw.is_empty() {
            writeln!(out, "    {}", clip(&r.raw, 160))?;
        }
    }
    if counts.rejected > keep.rejected.len() as u64 {
        writeln!(out, "  ... and {} more (--rejects N shows more)", counts.rejected - keep.rejected.len() as u64)?;
    }
    let skipped = counts.skipped;
    writeln!(
        out,
        "\ncounts: read {} rows, written {}, rejected {}; {} lines = {} rows + {} skipped (blank {}, header {}, continuation {}); \
         observations {}, identifier warnings {}; local times shifted {}, ambiguous {}",
        counts.rows_read,
        counts.events,
        counts.rejected,
        counts.lines_read,
        counts.rows_read,
        skipped.total(),
        skipped.blank,
        skipped.header,
        skipped.continuation,
        counts.observations,
        counts.identifier_warnings,
        counts.local_time.shifted,
        counts.local_time.ambiguous
    )?;
    if !counts.lines_reconcile() {
        writeln!(out, "note: rows + skipped lines differ from the file's lines (JSON array elements sharing a line?)")?;
    }
    Ok(counts)
}

/// `ariane-local validate SPEC --sample FILE`: validates the spec with the other specs of
/// its channel, says which spec the landing key would select, then dry-runs it on the
/// sample. Fails when the spec does not validate or the sample cannot be read at all.
pub fn validate_sample(
    root: &Path,
    spec_path: &Path,
    sample: &Path,
    key: Option<&str>,
    show: Show,
    out: &mut dyn Write,
) -> anyhow::Result<Counts> {
    let files = spec_files(root, &[spec_path.to_path_buf()])?;
    let Some(own) = files.iter().find(|f| f.given) else { bail!("{}: not a spec file", spec_path.display()) };
    let spec = match Spec::parse(&own.shown, &own.text) {
        Ok(spec) => spec,
        Err(e) => bail!("invalid: {e}"),
    };
    let key = key.map(str::to_string).unwrap_or_else(|| format!("{}/{}", spec.channel, file_name(sample)));
    writeln!(out, "dry run of {} ({}/{}) on {}", spec.file, spec.channel, spec.name, sample.display())?;
    let problems = match catalog(&files) {
        Ok(catalog) => {
            match catalog.select(&spec.channel, &key) {
                Ok(chosen) if chosen.file == spec.file => writeln!(out, "landing key {key}: read with this spec")?,
                Ok(chosen) => writeln!(out, "note: landing key {key} would be read with {}, not this spec (see keys)", chosen.file)?,
                Err(e) => writeln!(out, "note: landing key {key}: {e}")?,
            }
            vec![]
        }
        Err(errors) => errors,
    };
    let counts = dry_run(&spec, sample, &key, show, out)?;
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("invalid: {p}");
        }
        bail!("{} problem(s) in channel specs", problems.len());
    }
    Ok(counts)
}
