//! The lake as one run reads it: a read-through cache of whole small objects in front of
//! the lake's object store.
//!
//! Every segment of a run scans the same event files, and the lake holds many small ones
//! (one per channel file and event date). Without a cache each query GETs each file again:
//! seven segments read every file seven times. With it, the first read of an object no
//! larger than [`ReadCache::MAX_OBJECT`] fetches it whole and every later range of it is
//! served from memory, until the run's budget is spent; larger objects and reads beyond
//! the budget go to the store as they are. Conditional and versioned reads, heads,
//! writes, lists and deletes always go to the store.
//!
//! A cache lives for one run (one invocation), like the run's listing cache: a run sees
//! one consistent lake, a later run reads it again.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result,
};

#[derive(Default)]
struct Cached {
    objects: HashMap<Path, (ObjectMeta, object_store::Attributes, Bytes)>,
    /// Objects found too large for what is left: read as asked from then on, so that each
    /// costs at most one extra request per run.
    too_large: HashSet<Path>,
    bytes: u64,
}

/// What the cache did, for the run's logs and for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads served from memory.
    pub hits: u64,
    /// Objects fetched whole and kept.
    pub filled: u64,
    /// Reads passed to the store (too large, over budget, conditional, heads).
    pub passed: u64,
    /// Bytes held.
    pub bytes: u64,
}

/// See the module documentation.
pub struct ReadCache {
    inner: Arc<dyn ObjectStore>,
    budget: u64,
    cached: Mutex<Cached>,
    stats: Mutex<CacheStats>,
}

impl ReadCache {
    /// Objects larger than this are never cached (their ranges are read as asked).
    pub const MAX_OBJECT: u64 = 8 * 1024 * 1024;

    /// A cache of at most `budget_bytes` in front of `inner`; `0` reads through.
    pub fn new(inner: Arc<dyn ObjectStore>, budget_bytes: u64) -> Self {
        ReadCache { inner, budget: budget_bytes, cached: Mutex::default(), stats: Mutex::default() }
    }

    pub fn stats(&self) -> CacheStats {
        let mut s = *self.stats.lock().expect("cache stats lock");
        s.bytes = self.cached.lock().expect("cache lock").bytes;
        s
    }

    /// Drops `location` from the cache: its next read goes to the store (an object the
    /// run itself replaced, such as the compaction's manifest).
    pub fn forget(&self, location: &Path) {
        let mut cached = self.cached.lock().expect("cache lock");
        if let Some((_, _, bytes)) = cached.objects.remove(location) {
            cached.bytes -= bytes.len() as u64;
        }
        cached.too_large.remove(location);
    }

    fn count(&self, f: impl FnOnce(&mut CacheStats)) {
        f(&mut self.stats.lock().expect("cache stats lock"));
    }

    fn lookup(&self, location: &Path) -> Option<(ObjectMeta, object_store::Attributes, Bytes)> {
        self.cached.lock().expect("cache lock").objects.get(location).cloned()
    }

    /// Keeps `bytes` if the budget allows.
    fn keep(&self, location: &Path, meta: &ObjectMeta, attributes: &object_store::Attributes, bytes: &Bytes) {
        let mut cached = self.cached.lock().expect("cache lock");
        let size = bytes.len() as u64;
        if cached.bytes + size <= self.budget && !cached.objects.contains_key(location) {
            cached.bytes += size;
            cached.objects.insert(location.clone(), (meta.clone(), attributes.clone(), bytes.clone()));
        }
    }

    /// Whether an object of `size` fits; if not, `location` is remembered as too large.
    fn room_for(&self, location: &Path, size: u64) -> bool {
        let mut cached = self.cached.lock().expect("cache lock");
        let fits = size <= Self::MAX_OBJECT && cached.bytes + size <= self.budget;
        if !fits {
            cached.too_large.insert(location.clone());
        }
        fits
    }

    /// Whether a read of `location` goes straight to the store: the budget is spent or
    /// the object is known not to fit.
    fn bypass(&self, location: &Path) -> bool {
        let cached = self.cached.lock().expect("cache lock");
        cached.bytes >= self.budget || cached.too_large.contains(location)
    }
}

/// Only plain reads (a range or the whole object, no condition, no version) are cached.
fn cacheable(options: &GetOptions) -> bool {
    options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.version.is_none()
        && !options.head
}

/// `range` of a whole object held in memory, as a store would answer it; `None` when the
/// range is not valid for it (the store then answers with its own error).
fn serve(
    meta: ObjectMeta,
    attributes: object_store::Attributes,
    bytes: Bytes,
    range: Option<&object_store::GetRange>,
) -> Option<GetResult> {
    let range: Range<u64> = match range {
        None => 0..meta.size,
        Some(r) => r.as_range(meta.size).ok()?,
    };
    let slice = bytes.slice(range.start as usize..range.end as usize);
    let payload = GetResultPayload::Stream(futures::stream::once(async move { Ok(slice) }).boxed());
    Some(GetResult { payload, meta, range, attributes })
}

impl fmt::Display for ReadCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadCache({})", self.inner)
    }
}

impl fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadCache").field("inner", &self.inner).field("budget", &self.budget).field("stats", &self.stats()).finish()
    }
}

#[async_trait]
impl ObjectStore for ReadCache {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if !cacheable(&options) || self.budget == 0 {
            self.count(|s| s.passed += 1);
            return self.inner.get_opts(location, options).await;
        }
        if let Some((meta, attributes, bytes)) = self.lookup(location) {
            if let Some(result) = serve(meta, attributes, bytes, options.range.as_ref()) {
                self.count(|s| s.hits += 1);
                return Ok(result);
            }
            self.count(|s| s.passed += 1);
            return self.inner.get_opts(location, options).await;
        }
        if self.bypass(location) {
            self.count(|s| s.passed += 1);
            return self.inner.get_opts(location, options).await;
        }
        // The whole object, when its size (known from the response's headers, before its
        // body is read) fits; otherwise that response is dropped unread and the read is
        // made as asked.
        let whole = self.inner.get_opts(location, GetOptions { extensions: options.extensions.clone(), ..GetOptions::default() }).await?;
        if !self.room_for(location, whole.meta.size) {
            drop(whole);
            self.count(|s| s.passed += 1);
            return self.inner.get_opts(location, options).await;
        }
        let (meta, attributes) = (whole.meta.clone(), whole.attributes.clone());
        let bytes = whole.bytes().await?;
        self.keep(location, &meta, &attributes, &bytes);
        self.count(|s| s.filled += 1);
        match serve(meta, attributes, bytes, options.range.as_ref()) {
            Some(result) => Ok(result),
            None => self.inner.get_opts(location, options).await,
        }
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    /// Counts the reads that reach the store.
    #[derive(Debug)]
    struct Counting(InMemory, Mutex<u64>);

    impl fmt::Display for Counting {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Counting")
        }
    }

    #[async_trait]
    impl ObjectStore for Counting {
        async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
            self.0.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            *self.1.lock().unwrap() += 1;
            self.0.get_opts(location, options).await
        }
        fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
            self.0.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.0.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.0.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    async fn store_with(objects: &[(&str, Vec<u8>)]) -> Arc<Counting> {
        let store = Arc::new(Counting(InMemory::new(), Mutex::new(0)));
        for (key, bytes) in objects {
            store.put(&Path::from(*key), PutPayload::from(bytes.clone())).await.unwrap();
        }
        *store.1.lock().unwrap() = 0;
        store
    }

    #[tokio::test]
    async fn ranges_of_a_small_object_are_read_from_the_store_once() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let store = store_with(&[("events/a.parquet", data.clone())]).await;
        let cache = ReadCache::new(store.clone(), 1 << 20);
        let path = Path::from("events/a.parquet");
        for range in [9_992..10_000u64, 100..5_000, 0..10_000, 4_000..4_001] {
            let got = cache.get_range(&path, range.clone()).await.unwrap();
            assert_eq!(got.as_ref(), &data[range.start as usize..range.end as usize]);
        }
        assert_eq!(cache.get(&path).await.unwrap().bytes().await.unwrap().as_ref(), &data[..]);
        assert_eq!(*store.1.lock().unwrap(), 1, "one GET reached the store");
        assert_eq!(cache.stats(), CacheStats { hits: 4, filled: 1, passed: 0, bytes: 10_000 });
    }

    #[tokio::test]
    async fn beyond_the_budget_and_for_conditional_reads_the_store_answers() {
        let store = store_with(&[("a", vec![1; 600]), ("b", vec![2; 600])]).await;
        let cache = ReadCache::new(store.clone(), 1_000);
        let (a, b) = (Path::from("a"), Path::from("b"));
        assert_eq!(cache.get_range(&a, 0..10).await.unwrap().as_ref(), &[1; 10]);
        // `b` does not fit beside `a`: its first read costs one extra request (the whole
        // object, dropped unread), later ones go straight to the store.
        assert_eq!(cache.get_range(&b, 0..10).await.unwrap().as_ref(), &[2; 10]);
        assert_eq!(cache.get_range(&b, 10..20).await.unwrap().as_ref(), &[2; 10]);
        let version = cache.get_opts(&a, GetOptions { if_match: Some("nope".into()), ..Default::default() }).await;
        assert!(version.is_err(), "a failed condition is the store's answer, not the cached bytes");
        // An invalid range is the store's error too.
        assert!(cache.get_range(&a, 700..800).await.is_err());
        let stats = cache.stats();
        assert_eq!((stats.filled, stats.bytes), (1, 600));
        assert_eq!(*store.1.lock().unwrap(), 1 + 2 + 1 + 1 + 1);
    }

    #[tokio::test]
    async fn a_zero_budget_reads_through_and_errors_keep_their_kind() {
        let store = store_with(&[("a", vec![1; 10])]).await;
        let cache = ReadCache::new(store.clone(), 0);
        assert_eq!(cache.get_range(&Path::from("a"), 2..4).await.unwrap().as_ref(), &[1, 1]);
        assert!(matches!(cache.get(&Path::from("missing")).await, Err(object_store::Error::NotFound { .. })));
        let cache = ReadCache::new(store.clone(), 1 << 20);
        assert!(matches!(cache.get(&Path::from("missing")).await, Err(object_store::Error::NotFound { .. })));
    }
}
