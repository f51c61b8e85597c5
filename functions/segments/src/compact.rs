//! The daily compaction of the lake by profile bucket, and the view of the lake readers get
//! from its manifest (documented in `docs/segments.md`, "Lake compaction").
//!
//! Ingest writes many small event files (`events/channel=<c>/event_date=<d>/<fp>.parquet`)
//! and identity many small link files (`identity/links/resolved_date=<d>/<fp>.parquet`).
//! A compaction rewrites them, with the previous compacted generation, into one new
//! generation `G`:
//!
//! ```text
//! events_by_profile/gen=<G>/bucket=<k|unlinked>/part-<i>.parquet        events, by profile bucket
//! events_by_profile/gen=<G>/links/bucket=<k|unlinked>/part-<i>.parquet  latest link per identifier
//! events_by_profile/gen=<G>/history/part-<i>.parquet                    every link
//! events_by_profile/_current.json                                       the manifest (the commit)
//! ```
//!
//! An event goes to the bucket ([`lake::profile_bucket`]) of the profile its `anchor_id`'s
//! latest link points to as of the compaction, or to `unlinked` (no link, an erased link to
//! `''`, no anchor). Events are deduplicated by `event_id` and sorted by bucket,
//! `event_date`, `channel`, `anchor_id`, so a date filter prunes row groups; `channel` and
//! `event_date` are real columns. The latest links are bucketed by their profile the same
//! way (an erasure's `''` in `unlinked`), sorted by `identifier_hash`.
//!
//! **Commit protocol.** Data files first (under the new, never reused `gen=<G>/`), then
//! the manifest ([`Manifest`]: the generation, its files per bucket, and every source key it
//! covers with its size and entity tag), then the deletions: the covered source keys
//! (every version: the lake bucket is versioned) and every compacted file the manifest
//! does not name (older generations, the leftovers of a crashed compaction). Readers
//! ([`LakeView`], `catalog::register_run`) read only the files the manifest names and hide
//! the source keys it covers (same key *and* same entity tag: a key written again with
//! other content is new data), so at every crash point each event is read exactly once:
//! before the manifest the previous state, after it the new generation. A crashed
//! compaction's files are never named and are deleted by the next one; a compaction with
//! nothing new to read only finishes the previous one's deletions, so running it again
//! changes nothing.
//!
//! **Memory.** One pass over the data per output (history, latest links, events), each
//! a streamed DataFusion query on the run's memory pool (sorts and window aggregates
//! spill to the scratch directory) whose sorted output is cut into Parquet parts as it
//! arrives (one open writer at a time). The one join that cannot spill (a hash join's
//! build side) is built on the latest links, never on the events.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::num::NonZeroUsize;
use std::sync::Arc;

use ariane_shared::lake;
use ariane_shared::ports::BlobStore;
use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::common::TableReference;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{FairSpillPool, MemoryLimit, MemoryPool, TrackConsumersPool};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::catalog::RunEnv;
use crate::error::RunError;
use crate::ports::{get_json, put_json, PARQUET};

/// Rows per compacted Parquet part (a new part starts beyond it).
pub const PART_ROWS: usize = 1_000_000;
/// Rows per row group of a compacted part: its statistics prune date filters.
pub const PART_ROW_GROUP_ROWS: usize = 65_536;
/// Each sorter of the compaction reserves `pool / SORT_MERGE_SHARE` for merging what it
/// spills (see `compaction_session`): the events query has four sorters on two cores.
pub const SORT_MERGE_SHARE: usize = 12;
/// The SQL name of the bucket function (`ariane_profile_bucket(profile_id)`: the bucket
/// label of [`lake::compacted_bucket_label`]).
pub const BUCKET_UDF: &str = "ariane_profile_bucket";

/// A source object as the compaction read it: a reader hides the key only while it still
/// has this content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStamp {
    pub key: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    pub last_modified: DateTime<Utc>,
}

impl SourceStamp {
    fn of(key: String, meta: &ObjectMeta) -> Self {
        SourceStamp { key, size: meta.size, e_tag: meta.e_tag.clone(), last_modified: meta.last_modified }
    }

    /// Whether `meta` is the same content (entity tag and size; size and modification
    /// time when the store has no entity tags).
    pub fn matches(&self, meta: &ObjectMeta) -> bool {
        match (&self.e_tag, &meta.e_tag) {
            (Some(a), Some(b)) => a == b && self.size == meta.size,
            _ => self.size == meta.size && self.last_modified == meta.last_modified,
        }
    }
}

/// `events_by_profile/_current.json`: the committed generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub generation: String,
    /// The profile bucket count the generation is laid out by.
    pub buckets: usize,
    pub created_at: DateTime<Utc>,
    /// The source keys (`events/`, `identity/links/`) whose rows the generation holds.
    pub covered: Vec<SourceStamp>,
    /// Event files per bucket label (`0`..`buckets-1`, `unlinked`).
    pub events: BTreeMap<String, Vec<String>>,
    /// Latest-link files per bucket label.
    pub links: BTreeMap<String, Vec<String>>,
    /// Every link (the links' history).
    pub history: Vec<String>,
    pub event_rows: u64,
    pub link_rows: u64,
    pub history_rows: u64,
}

impl Manifest {
    /// Every file of the generation.
    pub fn files(&self) -> impl Iterator<Item = &String> {
        self.events.values().flatten().chain(self.links.values().flatten()).chain(&self.history)
    }
}

/// What one compaction did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CompactionReport {
    /// The generation committed by this compaction; `None` when there was nothing new
    /// (only the previous compaction's deletions were finished).
    pub generation: Option<String>,
    /// The generation readers read afterwards.
    pub current: Option<String>,
    pub buckets: usize,
    /// Source files (events and links) read.
    pub source_files_read: usize,
    /// Files of the previous generation read.
    pub previous_files_read: usize,
    pub files_written: usize,
    pub event_rows: u64,
    pub link_rows: u64,
    pub history_rows: u64,
    /// Event rows dropped because their `event_id` was already there.
    pub duplicates_dropped: u64,
    /// Covered source keys deleted (every version).
    pub sources_deleted: usize,
    /// Compacted files deleted (older generations, uncommitted leftovers).
    pub generation_files_deleted: usize,
    pub seconds: f64,
}

/// The committed manifest, if any; one that does not decode is an error naming its key.
pub async fn current_manifest(blobs: &dyn BlobStore, lake_bucket: &str) -> Result<Option<Manifest>, RunError> {
    get_json(blobs, lake_bucket, lake::compaction_manifest_key()).await
}

// ---------------------------------------------------------------------------------------
// The lake as a reader (or the compaction) sees it.

#[derive(Debug, Default)]
struct Visibility {
    /// Path prefix of the lake inside the store (`""` for a bucket; the directory for a
    /// local lake).
    root: String,
    /// Source keys hidden while they hold this content.
    covered: HashMap<String, SourceStamp>,
    /// When set (the compaction), the only source keys shown.
    only: Option<HashMap<String, SourceStamp>>,
    /// Compacted files shown.
    named: HashSet<String>,
    /// Compacted files under this prefix are shown too (the compaction's own generation).
    open_prefix: Option<String>,
}

impl Visibility {
    fn shows(&self, meta: &ObjectMeta) -> bool {
        let Some(key) = meta.location.as_ref().strip_prefix(self.root.as_str()) else { return true };
        if key.starts_with(lake::compacted_prefix()) {
            return self.named.contains(key) || self.open_prefix.as_deref().is_some_and(|p| key.starts_with(p));
        }
        if key.starts_with(lake::events_prefix()) || key.starts_with(lake::links_prefix()) {
            if let Some(only) = &self.only {
                return only.get(key).is_some_and(|s| s.matches(meta));
            }
            return !self.covered.get(key).is_some_and(|s| s.matches(meta));
        }
        true
    }
}

/// An object store over the lake that lists only what a manifest makes visible: the
/// compacted files it names (no other file under `events_by_profile/`), and every
/// source key except those it covers with the same content. Reads, writes and deletes
/// pass through. The compaction uses one that shows only the sources it reads.
pub struct LakeView {
    inner: Arc<dyn ObjectStore>,
    visibility: Arc<Visibility>,
}

impl LakeView {
    /// What readers see under `manifest` (`root`: the lake's path inside `inner`).
    pub fn reader(inner: Arc<dyn ObjectStore>, root: &str, manifest: &Manifest) -> Self {
        let visibility = Visibility {
            root: root.to_string(),
            covered: manifest.covered.iter().map(|s| (s.key.clone(), s.clone())).collect(),
            only: None,
            named: manifest.files().cloned().collect(),
            open_prefix: None,
        };
        LakeView { inner, visibility: Arc::new(visibility) }
    }

    /// What a compaction writing `generation` sees: the `sources` it read, the files of
    /// `previous`, and its own generation.
    fn compaction(inner: Arc<dyn ObjectStore>, sources: &[SourceStamp], previous: Option<&Manifest>, generation: &str) -> Self {
        let visibility = Visibility {
            root: String::new(),
            covered: HashMap::new(),
            only: Some(sources.iter().map(|s| (s.key.clone(), s.clone())).collect()),
            named: previous.map(|m| m.files().cloned().collect()).unwrap_or_default(),
            open_prefix: Some(lake::compacted_generation_prefix(generation)),
        };
        LakeView { inner, visibility: Arc::new(visibility) }
    }

    fn filtered(&self, list: BoxStream<'static, object_store::Result<ObjectMeta>>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let visibility = self.visibility.clone();
        list.try_filter(move |meta| futures::future::ready(visibility.shows(meta))).boxed()
    }
}

impl fmt::Display for LakeView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LakeView({})", self.inner)
    }
}

impl fmt::Debug for LakeView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakeView")
            .field("inner", &self.inner)
            .field("covered", &self.visibility.covered.len())
            .field("named", &self.visibility.named.len())
            .finish()
    }
}

#[async_trait]
impl ObjectStore for LakeView {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, object_store::Result<Path>>) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.filtered(self.inner.list(prefix))
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.filtered(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let mut result = self.inner.list_with_delimiter(prefix).await?;
        result.objects.retain(|meta| self.visibility.shows(meta));
        Ok(result)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Registers `view` for `ctx` under a URL of its own derived from `base` and `tag`
/// (`ariane-<scheme>://<host>.<tag>`), so the session's lake store is untouched; returns
/// the base URL tables use to read through it (with `base`'s path).
pub(crate) fn register_view(ctx: &SessionContext, base: &str, tag: &str, view: LakeView) -> DfResult<String> {
    let url = url::Url::parse(base).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let host = url.host_str().filter(|h| !h.is_empty()).unwrap_or("local");
    let store_url = format!("ariane-{}://{}.{}", url.scheme(), host, tag.to_ascii_lowercase());
    let parsed = url::Url::parse(&store_url).map_err(|e| DataFusionError::External(Box::new(e)))?;
    ctx.register_object_store(&parsed, Arc::new(view));
    Ok(format!("{store_url}{}", url.path().trim_end_matches('/')))
}

/// The lake's store of `base` in `ctx` and the lake's path inside it.
pub(crate) fn base_store(ctx: &SessionContext, base: &str) -> DfResult<(Arc<dyn ObjectStore>, String)> {
    let url = url::Url::parse(base).map_err(|e| DataFusionError::External(Box::new(e)))?;
    let store_url = ObjectStoreUrl::parse(&url[..url::Position::BeforePath])?;
    let store = ctx.runtime_env().object_store(store_url)?;
    let root = url.path().trim_matches('/');
    Ok((store, if root.is_empty() { String::new() } else { format!("{root}/") }))
}

/// The manifest as a session reads it (through its lake store); `None` when there is none.
pub(crate) async fn manifest_in(store: &dyn ObjectStore, root: &str) -> DfResult<Option<Manifest>> {
    let key = format!("{root}{}", lake::compaction_manifest_key());
    let bytes = match store.get(&Path::from(key.as_str())).await {
        Ok(result) => result.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| DataFusionError::Execution(format!("{} cannot be decoded: {e}", lake::compaction_manifest_key())))
}

// ---------------------------------------------------------------------------------------
// The bucket function.

/// `ariane_profile_bucket(profile_id)`: the compacted bucket label of a profile id for a
/// bucket count ([`lake::compacted_bucket_label`]: `unlinked` for null or `''`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ProfileBucket {
    buckets: usize,
    signature: Signature,
}

impl ProfileBucket {
    pub fn udf(buckets: usize) -> ScalarUDF {
        ScalarUDF::new_from_impl(ProfileBucket { buckets: buckets.max(1), signature: Signature::string(1, Volatility::Immutable) })
    }
}

impl ScalarUDFImpl for ProfileBucket {
    fn name(&self) -> &str {
        BUCKET_UDF
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let input = arrays.first().ok_or_else(|| DataFusionError::Plan(format!("{BUCKET_UDF} takes one argument")))?;
        let ids = arrow::compute::cast(input, &DataType::Utf8)?;
        let ids =
            ids.as_any().downcast_ref::<StringArray>().ok_or_else(|| DataFusionError::Plan(format!("{BUCKET_UDF} takes a string")))?;
        let out: StringArray = ids.iter().map(|p| Some(lake::compacted_bucket_label(p, self.buckets))).collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

// ---------------------------------------------------------------------------------------
// The compaction.

/// Compacts the lake bucket `lake_bucket` into `buckets` profile buckets (see the module
/// documentation): reads the previous generation and every source file it does not
/// cover, writes a new generation, commits its manifest, then deletes what it covers and
/// every compacted file it does not name. `run` gives the memory pool, the scratch
/// directory and the lake's object store. Safe to re-run after a crash at any point.
pub async fn compact(
    blobs: &dyn BlobStore,
    run: &RunEnv,
    lake_bucket: &str,
    buckets: usize,
    now: DateTime<Utc>,
) -> Result<CompactionReport, RunError> {
    let started = std::time::Instant::now();
    let buckets = buckets.max(1);
    let mut report = CompactionReport { buckets, ..CompactionReport::default() };
    let previous = current_manifest(blobs, lake_bucket).await?;
    let store: Arc<dyn ObjectStore> = run.lake.clone();

    // What the previous generation covers and is still there, and what it does not.
    let covered: HashMap<&str, &SourceStamp> = previous.iter().flat_map(|m| m.covered.iter()).map(|s| (s.key.as_str(), s)).collect();
    let (mut leftovers, mut sources) = (Vec::new(), Vec::new());
    for prefix in [lake::events_prefix(), lake::links_prefix()] {
        let listed: Vec<ObjectMeta> = store.list(Some(&Path::from(prefix))).try_collect().await.map_err(object_error(prefix))?;
        for meta in listed.into_iter().filter(|m| m.location.as_ref().ends_with(".parquet")) {
            let key = meta.location.to_string();
            match covered.get(key.as_str()) {
                Some(stamp) if stamp.matches(&meta) => leftovers.push(SourceStamp::of(key, &meta)),
                _ => sources.push(SourceStamp::of(key, &meta)),
            }
        }
    }
    let rebucket = previous.as_ref().is_some_and(|m| m.buckets != buckets);
    if sources.is_empty() && !rebucket {
        // Nothing new: finish the committed compaction's clean-up (if any).
        if let Some(m) = &previous {
            report.current = Some(m.generation.clone());
            report.buckets = m.buckets;
            clean_up(blobs, store.as_ref(), lake_bucket, m, &leftovers, &mut report).await?;
        }
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    let generation = new_generation(now);
    let ctx = compaction_session(run, buckets)?;
    let view = LakeView::compaction(store.clone(), &sources, previous.as_ref(), &generation);
    let url = url::Url::parse(&format!("ariane-compact://{}", generation.to_ascii_lowercase()))
        .map_err(|e| failed("its object store")(DataFusionError::External(Box::new(e))))?;
    ctx.register_object_store(&url, Arc::new(view));
    let base = url.as_str().trim_end_matches('/').to_string();
    register_inputs(&ctx, &base, previous.as_ref()).await.map_err(failed("its inputs"))?;
    report.source_files_read = sources.len();
    report.previous_files_read = previous.as_ref().map_or(0, |m| m.files().count());
    let input_rows = count(&ctx, "SELECT COUNT(*) FROM lake_input_events").await?;

    let out = Output { blobs, bucket: lake_bucket, run };
    // 1. Every link, as it is (the history the campaign report maps profiles with).
    let history_sql = format!("SELECT {LINK_COLUMNS}, '' AS bucket FROM lake_input_links");
    let (history, history_rows) =
        out.write(&ctx, &history_sql, lake::compacted_links_schema(), &|_, i| lake::compacted_history_key(&generation, i)).await?;
    // 2. The latest link per identifier, by bucket.
    let links_sql = format!(
        "SELECT {LINK_COLUMNS}, {BUCKET_UDF}(profile_id) AS bucket FROM (
            SELECT {LINK_COLUMNS}, ROW_NUMBER() OVER (
                PARTITION BY identifier_hash ORDER BY resolved_at DESC, profile_id DESC, observation_id DESC) AS rn
            FROM lake_input_latest) AS l
         WHERE rn = 1
         ORDER BY bucket, identifier_hash"
    );
    let (links, link_rows) =
        out.write(&ctx, &links_sql, lake::compacted_links_schema(), &|b, i| lake::compacted_links_key(&generation, b, i)).await?;
    // 3. The events, deduplicated by event_id, in the bucket of their anchor's latest
    //    link (read back from step 2; the hash join is built on it, not on the events).
    let links_table = listing(
        &format!("{base}/{}", lake::compacted_links_prefix(&generation)),
        lake::compacted_links_schema(),
        vec![("bucket".into(), DataType::Utf8)],
    )
    .map_err(failed("the latest links"))?;
    ctx.register_table("lake_latest_links", links_table).map_err(failed("the latest links"))?;
    let events_sql = events_sql();
    let (events, event_rows) =
        out.write(&ctx, &events_sql, lake::compacted_events_schema(), &|b, i| lake::compacted_events_key(&generation, b, i)).await?;
    drop(ctx);

    let mut manifest = Manifest {
        generation: generation.clone(),
        buckets,
        created_at: now,
        covered: leftovers.iter().chain(&sources).cloned().collect(),
        events,
        links,
        history: history.into_values().flatten().collect(),
        event_rows,
        link_rows,
        history_rows,
    };
    for label in (0..buckets).map(|k| k.to_string()).chain([lake::UNLINKED_BUCKET.to_string()]) {
        manifest.events.entry(label.clone()).or_default();
        manifest.links.entry(label).or_default();
    }
    report.files_written = manifest.files().count();
    put_json(blobs, lake_bucket, lake::compaction_manifest_key(), "the compaction manifest", &manifest).await?;
    // This run's later sessions read the new manifest, not a cached one.
    run.lake.forget(&Path::from(lake::compaction_manifest_key()));
    if let Some(cache) = run.runtime.cache_manager.get_list_files_cache() {
        cache.clear();
    }
    tracing::info!(%generation, files = report.files_written, event_rows, "compaction committed");

    report.generation = Some(generation.clone());
    report.current = Some(generation);
    report.event_rows = event_rows;
    report.link_rows = link_rows;
    report.history_rows = history_rows;
    report.duplicates_dropped = input_rows.saturating_sub(event_rows);
    let covered_now = manifest.covered.clone();
    clean_up(blobs, store.as_ref(), lake_bucket, &manifest, &covered_now, &mut report).await?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// After a commit: deletes (every version of) each covered source key that still holds
/// the covered content, then every compacted file `manifest` does not name.
async fn clean_up(
    blobs: &dyn BlobStore,
    store: &dyn ObjectStore,
    lake_bucket: &str,
    manifest: &Manifest,
    covered: &[SourceStamp],
    report: &mut CompactionReport,
) -> Result<(), RunError> {
    // The keys to delete, per top-level prefix: each prefix's versions are listed once
    // (one listing per key costs S3 a request each, and moto memory without bound).
    let mut by_prefix: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for stamp in covered {
        // Checked again just before: a key written again since holds new rows and stays.
        match store.head(&Path::from(stamp.key.as_str())).await {
            Ok(meta) if stamp.matches(&meta) => {
                let prefix = [lake::events_prefix(), lake::links_prefix()].into_iter().find(|p| stamp.key.starts_with(p)).unwrap_or("");
                by_prefix.entry(prefix).or_default().push(stamp.key.clone());
            }
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(object_error(&stamp.key)(e)),
        }
    }
    for (prefix, keys) in &by_prefix {
        blobs.delete_all_versions_of(lake_bucket, prefix, keys).await?;
        report.sources_deleted += keys.len();
    }
    let named: HashSet<&String> = manifest.files().collect();
    let unnamed: Vec<String> = blobs
        .list(lake_bucket, lake::compacted_prefix())
        .await?
        .into_iter()
        .filter(|key| key != lake::compaction_manifest_key() && !named.contains(key))
        .collect();
    if !unnamed.is_empty() {
        blobs.delete_all_versions_of(lake_bucket, lake::compacted_prefix(), &unnamed).await?;
        report.generation_files_deleted += unnamed.len();
    }
    Ok(())
}

fn object_error(what: &str) -> impl FnOnce(object_store::Error) -> RunError + '_ {
    move |e| RunError::Compaction { what: what.to_string(), source: DataFusionError::ObjectStore(Box::new(e)) }
}

fn failed(what: &str) -> impl FnOnce(DataFusionError) -> RunError + '_ {
    move |source| RunError::Compaction { what: what.to_string(), source }
}

/// A generation name: sortable by time, never reused (a retried compaction at the same
/// instant writes a generation of its own).
fn new_generation(now: DateTime<Utc>) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default());
    format!("{}-{:016x}", now.format("%Y%m%dt%H%M%Sz"), h.finish())
}

/// The events of the input, deduplicated by `event_id`, each with the bucket of its
/// anchor's latest link (`lake_latest_links`, the hash join's build side), sorted.
fn events_sql() -> String {
    format!(
        "WITH unique_events AS (
            SELECT {EVENT_COLUMNS} FROM (
                SELECT {EVENT_COLUMNS}, ROW_NUMBER() OVER (
                    PARTITION BY event_id ORDER BY event_date, channel, source_key, source_line) AS rn
                FROM lake_input_events) AS e
            WHERE rn = 1)
         SELECT {PREFIXED_EVENT_COLUMNS}, COALESCE(l.link_bucket, '{unlinked}') AS bucket
         FROM (SELECT identifier_hash, bucket AS link_bucket FROM lake_latest_links) AS l
         RIGHT JOIN unique_events e ON l.identifier_hash = e.anchor_id
         ORDER BY bucket, e.event_date, e.channel, e.anchor_id, e.occurred_at, e.event_id",
        unlinked = lake::UNLINKED_BUCKET
    )
}

const EVENT_COLUMNS: &str = "event_id, event_type, occurred_at, anchor_id, email_hash, phone_hash, order_id, sku, product_name, \
     category, quantity, unit_price_minor, line_total_minor, order_total_minor, currency, store_id, campaign_id, page_url, \
     consent_channel, source_key, source_line, local_time, channel, event_date";
const PREFIXED_EVENT_COLUMNS: &str = "e.event_id, e.event_type, e.occurred_at, e.anchor_id, e.email_hash, e.phone_hash, e.order_id, \
     e.sku, e.product_name, e.category, e.quantity, e.unit_price_minor, e.line_total_minor, e.order_total_minor, e.currency, \
     e.store_id, e.campaign_id, e.page_url, e.consent_channel, e.source_key, e.source_line, e.local_time, e.channel, e.event_date";
const LINK_COLUMNS: &str = "identifier_hash, profile_id, resolved_at, observation_id, resolved_date";

/// The compaction's session: the run's memory pool and scratch directory, listings of
/// its own (the run's may be older than the compaction), the bucket function, and the
/// joins in the order they are written (the build side is the links).
///
/// **Memory.** The events query sorts twice per partition (the `event_id` window, then the
/// output order) and its sort keys are strings: when a sorter spills, merging its sorted
/// batches takes memory the sorter cannot give back (about a third of what it holds, for
/// the row-format sort keys). On the run's greedy pool one sorter grows to most of the
/// pool, and the merge then fails ("Resources exhausted" for `ExternalSorterMerge` at 1M
/// profiles and 10M events in 1,536 MB, BENCHMARKS.md). So the compaction has a pool of
/// the same size of its own, fair between the spilling operators (each spills at its
/// share), and every sorter reserves [`SORT_MERGE_SHARE`] of it for its merge up front.
fn compaction_session(run: &RunEnv, buckets: usize) -> Result<SessionContext, RunError> {
    let mut config = SessionConfig::new();
    let pool: Arc<dyn MemoryPool> = match run.runtime.memory_pool.memory_limit() {
        MemoryLimit::Finite(bytes) => {
            config.options_mut().execution.sort_spill_reservation_bytes = (bytes / SORT_MERGE_SHARE).max(10 * 1024 * 1024);
            Arc::new(TrackConsumersPool::new(FairSpillPool::new(bytes), NonZeroUsize::new(5).expect("5 is not 0")))
        }
        MemoryLimit::Infinite | MemoryLimit::Unknown => run.runtime.memory_pool.clone(),
    };
    let mut builder = RuntimeEnvBuilder::new().with_memory_pool(pool);
    builder.disk_manager = Some(run.runtime.disk_manager.clone());
    let runtime = builder.build_arc().map_err(failed("its runtime"))?;
    config.options_mut().optimizer.join_reordering = false;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.register_udf(ProfileBucket::udf(buckets));
    Ok(ctx)
}

pub(crate) fn listing(url: &str, schema: SchemaRef, partitions: Vec<(String, DataType)>) -> DfResult<Arc<ListingTable>> {
    listing_paths(&[url.to_string()], schema, partitions, None)
}

/// A Parquet listing table over several folders (`urls`), its listings cached under
/// `cache_tag` when set.
pub(crate) fn listing_paths(
    urls: &[String],
    schema: SchemaRef,
    partitions: Vec<(String, DataType)>,
    cache_tag: Option<&str>,
) -> DfResult<Arc<ListingTable>> {
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet").with_table_partition_cols(partitions);
    let paths = urls
        .iter()
        .map(|u| {
            let url = ListingTableUrl::parse(u)?;
            Ok(match cache_tag {
                Some(tag) => url.with_table_ref(TableReference::bare(tag.to_string())),
                None => url,
            })
        })
        .collect::<DfResult<Vec<_>>>()?;
    let config = ListingTableConfig::new_with_multi_paths(paths).with_listing_options(options).with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// An empty table of `schema` (no previous generation).
fn empty(schema: SchemaRef) -> DfResult<Arc<MemTable>> {
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
}

/// The compaction's inputs under `base` (its view): `lake_input_events` (the previous
/// generation's events and the new event files), `lake_input_links` (the previous history
/// and the new link files), `lake_input_latest` (the previous latest links and the new
/// link files).
async fn register_inputs(ctx: &SessionContext, base: &str, previous: Option<&Manifest>) -> DfResult<()> {
    let partition = |name: &str| vec![(name.to_string(), DataType::Utf8)];
    ctx.register_table(
        "lake_new_events",
        listing(&format!("{base}/{}", lake::events_prefix()), lake::events_schema(), crate::catalog::event_partition_cols())?,
    )?;
    ctx.register_table(
        "lake_new_links",
        listing(&format!("{base}/{}", lake::links_prefix()), lake::links_schema(), partition("resolved_date"))?,
    )?;
    match previous {
        Some(m) => {
            let folders = |prefix: &dyn Fn(&str) -> String, labels: &BTreeMap<String, Vec<String>>| -> Vec<String> {
                labels.keys().map(|b| format!("{base}/{}", prefix(b))).collect()
            };
            let g = m.generation.as_str();
            let events = folders(&|b| lake::compacted_events_prefix(g, b), &m.events);
            let links = folders(&|b| format!("{}bucket={b}/", lake::compacted_links_prefix(g)), &m.links);
            ctx.register_table("lake_prev_events", listing_or_empty(&events, lake::compacted_events_schema())?)?;
            ctx.register_table("lake_prev_latest", listing_or_empty(&links, lake::compacted_links_schema())?)?;
            let history = vec![format!("{base}/{}", lake::compacted_history_prefix(g))];
            ctx.register_table("lake_prev_history", listing_or_empty(&history, lake::compacted_links_schema())?)?;
        }
        None => {
            ctx.register_table("lake_prev_events", empty(lake::compacted_events_schema())?)?;
            ctx.register_table("lake_prev_latest", empty(lake::compacted_links_schema())?)?;
            ctx.register_table("lake_prev_history", empty(lake::compacted_links_schema())?)?;
        }
    }
    for (name, sql) in [
        (
            "lake_input_events",
            format!("SELECT {EVENT_COLUMNS} FROM lake_prev_events UNION ALL SELECT {EVENT_COLUMNS} FROM lake_new_events"),
        ),
        ("lake_input_links", format!("SELECT {LINK_COLUMNS} FROM lake_prev_history UNION ALL SELECT {LINK_COLUMNS} FROM lake_new_links")),
        ("lake_input_latest", format!("SELECT {LINK_COLUMNS} FROM lake_prev_latest UNION ALL SELECT {LINK_COLUMNS} FROM lake_new_links")),
    ] {
        ctx.sql(&format!("CREATE VIEW {name} AS {sql}")).await?;
    }
    Ok(())
}

fn listing_or_empty(urls: &[String], schema: SchemaRef) -> DfResult<Arc<dyn datafusion::catalog::TableProvider>> {
    if urls.is_empty() {
        return Ok(empty(schema)?);
    }
    Ok(listing_paths(urls, schema, vec![], None)?)
}

async fn count(ctx: &SessionContext, sql: &str) -> Result<u64, RunError> {
    let batches = ctx.sql(sql).await.map_err(failed("counting its input"))?.collect().await.map_err(failed("counting its input"))?;
    let n = batches
        .first()
        .filter(|b| b.num_rows() > 0)
        .and_then(|b| b.column(0).as_any().downcast_ref::<arrow::array::Int64Array>().map(|a| a.value(0)))
        .unwrap_or(0);
    Ok(n.max(0) as u64)
}

/// Where the compaction writes its parts.
struct Output<'a> {
    blobs: &'a dyn BlobStore,
    bucket: &'a str,
    run: &'a RunEnv,
}

/// One part being written: a local Parquet file, uploaded when complete.
struct Part {
    label: String,
    key: String,
    rows: usize,
    file: Arc<dyn datafusion::execution::SpillFile>,
    writer: ArrowWriter<std::io::BufWriter<std::fs::File>>,
}

impl Output<'_> {
    /// Runs `sql` (whose rows come sorted by a `bucket` column) and writes its rows, as
    /// `schema`, into parts named `key(bucket, i)`, a new part per bucket and past
    /// [`PART_ROWS`]. Returns the keys per bucket and the rows written.
    async fn write(
        &self,
        ctx: &SessionContext,
        sql: &str,
        schema: SchemaRef,
        key: &(dyn Fn(&str, usize) -> String + Sync),
    ) -> Result<(BTreeMap<String, Vec<String>>, u64), RunError> {
        let mut stream = ctx
            .sql(sql)
            .await
            .map_err(failed("planning a compaction query"))?
            .execute_stream()
            .await
            .map_err(failed("a compaction query"))?;
        let mut written: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut rows = 0u64;
        let mut part: Option<Part> = None;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(failed("a compaction query"))?;
            let labels = arrow::compute::cast(
                batch.column_by_name("bucket").ok_or_else(|| plan_error("the compaction query has no bucket column"))?,
                &DataType::Utf8,
            )
            .map_err(RunError::arrow("the compaction's bucket column"))?;
            let labels = labels.as_any().downcast_ref::<StringArray>().ok_or_else(|| plan_error("the bucket column is not text"))?;
            let mut start = 0;
            while start < batch.num_rows() {
                let label = if labels.is_null(start) { lake::UNLINKED_BUCKET } else { labels.value(start) };
                let mut end = start + 1;
                while end < batch.num_rows() && !labels.is_null(end) && labels.value(end) == label {
                    end += 1;
                }
                let slice = conform(&batch.slice(start, end - start), &schema)?;
                if part.as_ref().is_some_and(|p| p.label != label || p.rows >= PART_ROWS) {
                    if let Some(done) = part.take() {
                        self.upload(done, &mut written).await?;
                    }
                }
                if part.is_none() {
                    let i = written.get(label).map_or(0, Vec::len);
                    part = Some(self.open(label, key(label, i), &schema)?);
                }
                if let Some(p) = part.as_mut() {
                    p.writer.write(&slice).map_err(RunError::parquet(&p.key))?;
                    p.rows += slice.num_rows();
                }
                rows += (end - start) as u64;
                start = end;
            }
        }
        if let Some(done) = part.take() {
            self.upload(done, &mut written).await?;
        }
        Ok((written, rows))
    }

    fn open(&self, label: &str, key: String, schema: &SchemaRef) -> Result<Part, RunError> {
        let file = self.run.runtime.disk_manager.create_tmp_file("compaction part").map_err(failed("a scratch file"))?;
        let path = file.path().ok_or_else(|| plan_error("the scratch directory is not a local directory"))?;
        let sink = std::fs::File::create(path)
            .map_err(|e| failed("a scratch file")(DataFusionError::Execution(format!("{}: {e}", path.display()))))?;
        let properties =
            WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_row_count(Some(PART_ROW_GROUP_ROWS)).build();
        let writer =
            ArrowWriter::try_new(std::io::BufWriter::new(sink), schema.clone(), Some(properties)).map_err(RunError::parquet(&key))?;
        Ok(Part { label: label.to_string(), key, rows: 0, file, writer })
    }

    async fn upload(&self, part: Part, written: &mut BTreeMap<String, Vec<String>>) -> Result<(), RunError> {
        let Part { label, key, file, writer, .. } = part;
        writer.close().map_err(RunError::parquet(&key))?;
        let path = file.path().ok_or_else(|| plan_error("the scratch directory is not a local directory"))?;
        self.blobs.put_file(self.bucket, &key, path, PARQUET).await?;
        written.entry(label).or_default().push(key);
        Ok(())
    }
}

fn plan_error(problem: &str) -> RunError {
    RunError::Compaction { what: "a compacted part".into(), source: DataFusionError::Plan(problem.to_string()) }
}

/// `batch` with exactly the columns of `schema`, by name, cast where the query's types
/// differ (string views, dictionary partition values).
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, RunError> {
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            let column = batch.column_by_name(f.name()).ok_or_else(|| plan_error(&format!("the compaction lost column {}", f.name())))?;
            if column.data_type() == f.data_type() {
                Ok(column.clone())
            } else {
                arrow::compute::cast(column, f.data_type()).map_err(RunError::arrow("a compacted column"))
            }
        })
        .collect::<Result<Vec<ArrayRef>, RunError>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(RunError::arrow("a compacted batch"))
}

#[cfg(test)]
#[path = "compact_tests.rs"]
mod tests;
