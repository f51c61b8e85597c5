//! A [`BlobStore`] over local directories, one per bucket name: for what runs the
//! functions' code over a lake on disk instead of S3 (the segments benchmark compacts its
//! local lake with `ariane_segments::compact::compact` through it).
//!
//! A directory keeps one version per key, so [`BlobStore::delete_all_versions`] is a
//! delete. Writes go to a temporary file beside the key and are renamed into place, so a
//! reader never sees half an object. The entity tag is the size and modification time
//! (what a local file has that changes when its content is rewritten).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ariane_shared::error::AwsError;
use ariane_shared::ports::{BlobError, BlobMeta, BlobReader, BlobStore, BlobVersion};
use bytes::Bytes;

pub struct FsBlobs {
    buckets: BTreeMap<String, PathBuf>,
}

impl FsBlobs {
    /// A store whose bucket `bucket` is the directory `dir`.
    pub fn bucket(bucket: &str, dir: &Path) -> Self {
        FsBlobs { buckets: BTreeMap::from([(bucket.to_string(), dir.to_path_buf())]) }
    }

    fn root(&self, bucket: &str) -> Result<&Path, BlobError> {
        self.buckets.get(bucket).map(PathBuf::as_path).ok_or_else(|| BlobError::Io {
            path: format!("{bucket}/"),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no directory is configured for this bucket"),
        })
    }

    fn path(&self, bucket: &str, key: &str) -> Result<PathBuf, BlobError> {
        let root = self.root(bucket)?;
        let safe = !key.is_empty() && key.split('/').all(|part| !part.is_empty() && part != "." && part != "..");
        if !safe {
            return Err(BlobError::Io {
                path: format!("{bucket}/{key}"),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a key a directory can hold"),
            });
        }
        Ok(root.join(key))
    }

    async fn write_with(&self, bucket: &str, key: &str, fill: impl AsyncFnOnce(&Path) -> std::io::Result<()>) -> Result<(), BlobError> {
        let path = self.path(bucket, key)?;
        let io = |source| BlobError::Io { path: path.display().to_string(), source };
        let parent = path.parent().expect("a key has a parent directory");
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
        let tmp = parent.join(format!(".{}.{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("object"), std::process::id()));
        if let Err(e) = fill(&tmp).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io(e));
        }
        tokio::fs::rename(&tmp, &path).await.map_err(io)
    }
}

fn etag(meta: &std::fs::Metadata) -> String {
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    format!("\"{:x}-{modified:x}\"", meta.len())
}

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

#[async_trait::async_trait]
impl BlobStore for FsBlobs {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        let path = self.path(bucket, key)?;
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.is_file() => Ok(Some(BlobMeta { etag: etag(&meta), size: Some(meta.len() as i64), purged_by: None })),
            Ok(_) => Ok(None),
            Err(e) if not_found(&e) => Ok(None),
            Err(source) => Err(BlobError::Io { path: path.display().to_string(), source }),
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, BlobError> {
        let path = self.path(bucket, key)?;
        match tokio::fs::read(&path).await {
            Ok(body) => Ok(Some(Bytes::from(body))),
            Err(e) if not_found(&e) => Ok(None),
            Err(source) => Err(BlobError::Io { path: path.display().to_string(), source }),
        }
    }

    async fn open(&self, bucket: &str, key: &str, version: &BlobVersion) -> Result<BlobReader, BlobError> {
        let path = self.path(bucket, key)?;
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if not_found(&e) => return Err(BlobError::NotFound { bucket: bucket.into(), key: key.into() }),
            Err(source) => return Err(BlobError::Io { path: path.display().to_string(), source }),
        };
        match version {
            BlobVersion::Latest => {}
            BlobVersion::ETag(expected) => {
                let meta = file.metadata().await.map_err(|source| BlobError::Io { path: path.display().to_string(), source })?;
                if etag(&meta).trim_matches('"') != expected.trim_matches('"') {
                    return Err(AwsError {
                        operation: "s3:GetObject source",
                        code: "PreconditionFailed".into(),
                        message: format!("{} changed: its entity tag is no longer {expected}", path.display()),
                        retryable: false,
                        source: "precondition failed".into(),
                    }
                    .into());
                }
            }
            BlobVersion::Id(id) => {
                return Err(BlobError::Io {
                    path: path.display().to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::Unsupported, format!("a directory keeps no version {id}")),
                })
            }
        }
        Ok(Box::pin(file))
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes, _content_type: &str) -> Result<(), BlobError> {
        self.write_with(bucket, key, async |tmp: &Path| tokio::fs::write(tmp, &body).await).await
    }

    async fn put_file(&self, bucket: &str, key: &str, path: &Path, _content_type: &str) -> Result<(), BlobError> {
        self.write_with(bucket, key, async |tmp: &Path| tokio::fs::copy(path, tmp).await.map(|_| ())).await
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BlobError> {
        let root = self.root(bucket)?.to_path_buf();
        let mut keys = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if not_found(&e) => continue,
                Err(source) => return Err(BlobError::Io { path: dir.display().to_string(), source }),
            };
            while let Some(entry) =
                entries.next_entry().await.map_err(|source| BlobError::Io { path: dir.display().to_string(), source })?
            {
                let path = entry.path();
                let kind = entry.file_type().await.map_err(|source| BlobError::Io { path: path.display().to_string(), source })?;
                if kind.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(relative) = path.strip_prefix(&root) else { continue };
                let key = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                let hidden = relative.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
                if !hidden && key.starts_with(prefix) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        let path = self.path(bucket, key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(source) => Err(BlobError::Io { path: path.display().to_string(), source }),
        }
    }

    /// A directory keeps one version: the rewrite replaces it, nothing older remains.
    async fn rewrite(&self, bucket: &str, key: &str, body: Bytes, content_type: &str, _purged_by: &str) -> Result<usize, BlobError> {
        self.put(bucket, key, body, content_type).await?;
        Ok(0)
    }

    async fn delete_all_versions(&self, bucket: &str, key: &str) -> Result<usize, BlobError> {
        let existed = self.head(bucket, key).await?.is_some();
        self.delete(bucket, key).await?;
        Ok(usize::from(existed))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn a_directory_holds_a_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobs::bucket("lake", dir.path());
        assert_eq!(blobs.get("lake", "a/b.json").await.unwrap(), None);
        assert_eq!(blobs.head("lake", "a/b.json").await.unwrap(), None);
        blobs.put("lake", "a/b.json", Bytes::from_static(b"{}"), "application/json").await.unwrap();
        let scratch = dir.path().join("scratch.bin");
        std::fs::write(&scratch, b"parquet").unwrap();
        blobs.put_file("lake", "a/c/d.parquet", &scratch, "application/vnd.apache.parquet").await.unwrap();
        blobs.put("lake", "z.json", Bytes::from_static(b"[]"), "application/json").await.unwrap();

        assert_eq!(blobs.list("lake", "a/").await.unwrap(), vec!["a/b.json", "a/c/d.parquet"]);
        assert_eq!(blobs.get("lake", "a/b.json").await.unwrap().as_deref(), Some(&b"{}"[..]));
        let meta = blobs.head("lake", "a/c/d.parquet").await.unwrap().expect("written");
        assert_eq!(meta.size, Some(7));
        let mut body = String::new();
        blobs.open("lake", "a/c/d.parquet", &BlobVersion::ETag(meta.etag.clone())).await.unwrap().read_to_string(&mut body).await.unwrap();
        assert_eq!(body, "parquet");

        // Rewritten content has another entity tag: a read pinned to the old one fails.
        blobs.put("lake", "a/c/d.parquet", Bytes::from_static(b"parquet, longer"), "application/vnd.apache.parquet").await.unwrap();
        assert!(blobs.open("lake", "a/c/d.parquet", &BlobVersion::ETag(meta.etag)).await.is_err());

        assert_eq!(blobs.delete_all_versions("lake", "a/b.json").await.unwrap(), 1);
        assert_eq!(blobs.delete_all_versions("lake", "a/b.json").await.unwrap(), 0);
        assert!(matches!(blobs.open("lake", "a/b.json", &BlobVersion::Latest).await, Err(BlobError::NotFound { .. })));
        assert_eq!(blobs.list("lake", "").await.unwrap(), vec!["a/c/d.parquet", "scratch.bin", "z.json"]);
    }

    #[tokio::test]
    async fn keys_stay_inside_the_directory_and_buckets_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobs::bucket("lake", dir.path());
        for key in ["../escape", "a/../../b", "", "a//b", "/abs"] {
            assert!(blobs.put("lake", key, Bytes::new(), "text/plain").await.is_err(), "{key:?}");
        }
        assert!(blobs.get("other", "a.json").await.is_err());
    }
}
