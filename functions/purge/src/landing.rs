//! Landing objects: the raw exports, rewritten without the erased person's records.
//!
//! The object is read again through its channel spec (the same engine ingest runs, so the
//! same encoding, separator, quoting, fill-down and line numbers): a record whose event
//! is the person's (its `anchor_id`) is removed, every physical line of it (a quoted
//! field may span lines); a record that only carries a suppressed identifier (another
//! member of a family sharing the e-mail) keeps its other fields; a rejected record
//! carrying one in clear is removed. The rewrite replaces every version of the object and
//! carries the purge's mark, so ingest does not read it again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use ariane_ingest::map::FileContext;
use ariane_ingest::sink::{RowSink, SinkError};
use ariane_ingest::spec::{Catalog, FormatKind, Spec};
use ariane_shared::erasure::PurgeCounts;
use ariane_shared::identifiers::identifier_hash;
use ariane_shared::model::{CanonicalEvent, Observation, RejectedRow};
use ariane_shared::ports::BlobStore;
use bytes::Bytes;

use crate::matcher::{blank, Matcher};
use crate::PurgeError;

/// What happens to a record (by its first physical line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fate {
    Keep,
    Blank,
    Remove,
}

/// Collects the first line of every record and what the purge does with it.
struct Fates<'a> {
    m: &'a Matcher,
    region: phonenumber::country::Id,
    lines: BTreeMap<u64, Fate>,
}

impl Fates<'_> {
    fn mark(&mut self, line: u64, fate: Fate) {
        let f = self.lines.entry(line).or_insert(Fate::Keep);
        *f = (*f).max(fate);
    }
}

impl RowSink for Fates<'_> {
    fn event(&mut self, event: CanonicalEvent) -> Result<(), SinkError> {
        let fate = if event.anchor_id.as_deref().is_some_and(|a| self.m.is_row_key(a)) {
            Fate::Remove
        } else if [&event.email_hash, &event.phone_hash].into_iter().flatten().any(|h| self.m.is_value(h)) {
            Fate::Blank
        } else {
            Fate::Keep
        };
        self.mark(event.source_line, fate);
        Ok(())
    }

    fn rejected(&mut self, row: RejectedRow) -> Result<(), SinkError> {
        let fate = if self.m.clear_values(row.raw.as_bytes(), self.region).is_empty() { Fate::Keep } else { Fate::Remove };
        self.mark(row.line, fate);
        Ok(())
    }

    fn observation(&mut self, o: Observation) -> Result<(), SinkError> {
        if o.identifiers.iter().any(|i| self.m.is_value(&identifier_hash(i.kind, &i.value))) {
            self.mark(o.source_line, Fate::Blank);
        }
        Ok(())
    }
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Purges one landing object; `None` when it does not exist any more (expired).
pub async fn purge_object<B: BlobStore + ?Sized>(
    blobs: &B,
    bucket: &str,
    key: &str,
    catalog: &Catalog,
    m: &Matcher,
    run: &str,
) -> Result<PurgeCounts, PurgeError> {
    let mut counts = PurgeCounts::default();
    let Some(body) = blobs.get(bucket, key).await? else { return Ok(counts) };
    let spec = key.split('/').next().and_then(|channel| catalog.select(channel, key).ok());
    let gz = body.starts_with(&GZIP_MAGIC);
    let plain =
        if gz { gunzip(&body).map_err(|e| PurgeError::Landing { key: key.to_string(), reason: e.to_string() })? } else { body.to_vec() };
    let region = spec.map(|s| s.format.phone_region).unwrap_or(phonenumber::country::Id::FR);
    let line_based = spec.is_none_or(|s| matches!(s.format.kind, FormatKind::Csv | FormatKind::Ndjson));
    let fates = spec.and_then(|s| fates(s, key, &body, m));
    let lines: Vec<&[u8]> = plain.split_inclusive(|b| *b == b'\n').collect();
    // Which physical lines go and which lose values.
    let mut remove = vec![false; lines.len()];
    let mut clean = vec![false; lines.len()];
    match &fates {
        Some(f) => {
            let starts: Vec<(u64, Fate)> = f.iter().map(|(l, f)| (*l, *f)).collect();
            for (n, (line, fate)) in starts.iter().enumerate() {
                let end = starts.get(n + 1).map(|(l, _)| *l).unwrap_or(lines.len() as u64 + 1);
                for l in (*line..end).filter(|l| *l >= 1 && (*l as usize) <= lines.len()) {
                    match fate {
                        Fate::Remove => remove[l as usize - 1] = true,
                        Fate::Blank => clean[l as usize - 1] = true,
                        Fate::Keep => {}
                    }
                }
            }
        }
        // No spec reads it (or the file no longer parses): any line holding a suppressed
        // identifier in clear goes.
        None => {
            for (n, line) in lines.iter().enumerate() {
                remove[n] = !m.clear_values(line, region).is_empty();
            }
        }
    }
    if !line_based {
        // JSON arrays and Parquet have no lines to cut: an object with the person goes.
        if fates.as_ref().is_some_and(|f| f.values().any(|f| *f != Fate::Keep)) {
            counts.versions_deleted += blobs.delete_all_versions(bucket, key).await?.saturating_sub(1);
            counts.objects_deleted += 1;
            counts.rows_removed += fates.as_ref().map_or(0, |f| f.values().filter(|f| **f == Fate::Remove).count());
        }
        return Ok(counts);
    }
    let mut out = Vec::with_capacity(plain.len());
    for (n, line) in lines.iter().enumerate() {
        if remove[n] {
            continue;
        }
        let found = if clean[n] { m.clear_values(line, region) } else { Vec::new() };
        counts.values_blanked += found.len();
        out.extend_from_slice(&if found.is_empty() { line.to_vec() } else { blank(line, &found) });
    }
    counts.rows_removed = match &fates {
        Some(f) => f.values().filter(|f| **f == Fate::Remove).count(),
        None => remove.iter().filter(|r| **r).count(),
    };
    if counts.rows_removed == 0 && counts.values_blanked == 0 {
        return Ok(counts);
    }
    let kept_records = fates.as_ref().is_none_or(|f| f.values().any(|f| *f != Fate::Remove));
    if !kept_records {
        counts.versions_deleted += blobs.delete_all_versions(bucket, key).await?.saturating_sub(1);
        counts.objects_deleted += 1;
        return Ok(counts);
    }
    let body = if gz { gzip(&out).map_err(|e| PurgeError::Landing { key: key.to_string(), reason: e.to_string() })? } else { out };
    let content_type = if gz { "application/gzip" } else { "text/plain; charset=utf-8" };
    counts.versions_deleted += blobs.rewrite(bucket, key, Bytes::from(body), content_type, run).await?;
    counts.objects_rewritten += 1;
    Ok(counts)
}

/// The fate of every record of the file, by first line; `None` when the spec cannot read
/// it (the caller falls back to a line scan).
fn fates(spec: &Spec, key: &str, body: &Bytes, m: &Matcher) -> Option<BTreeMap<u64, Fate>> {
    if spec.format.kind == FormatKind::Parquet {
        return parquet_fates(spec, key, body, m);
    }
    let mut sink = Fates { m, region: spec.format.phone_region, lines: BTreeMap::new() };
    let file = FileContext { source_key: key.to_string(), fingerprint: "purge".into() };
    let input: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(body.clone()));
    match ariane_ingest::engine::parse(input, spec, file, &mut sink) {
        Ok(_) => Some(sink.lines),
        Err(e) => {
            tracing::warn!(%key, error = %e, "the spec no longer reads this landing object: scanning its lines");
            None
        }
    }
}

fn parquet_fates(spec: &Spec, key: &str, body: &Bytes, m: &Matcher) -> Option<BTreeMap<u64, Fate>> {
    let mut tmp = tempfile_in_scratch().ok()?;
    tmp.1.write_all(body).ok()?;
    let mut sink = Fates { m, region: spec.format.phone_region, lines: BTreeMap::new() };
    let file = FileContext { source_key: key.to_string(), fingerprint: "purge".into() };
    let out = ariane_ingest::engine::parse_parquet(&tmp.0, spec, file, &mut sink).ok().map(|_| sink.lines);
    let _ = std::fs::remove_file(&tmp.0);
    out
}

fn tempfile_in_scratch() -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let dir = std::env::var_os("ARIANE_SCRATCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("ariane-purge-{}-{}.parquet", std::process::id(), rand_suffix()));
    Ok((path.clone(), std::fs::File::create(path)?))
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn gunzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body).read_to_end(&mut out)?;
    Ok(out)
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(body)?;
    enc.finish()
}

/// The landing keys among the `source_key`s of lake rows (a key under a channel prefix).
pub fn landing_keys(sources: &BTreeSet<String>) -> Vec<String> {
    sources.iter().filter(|k| ariane_ingest::pipeline::channel_of(k).is_some()).cloned().collect()
}
