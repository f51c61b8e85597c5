//! [`BlobStore`] on S3 through the AWS SDK (path-style when an endpoint is set, see
//! [`crate::aws::s3_client`]).

use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use crate::error::{AwsError, SdkResultExt};
use crate::ports::{BlobError, BlobMeta, BlobReader, BlobStore, BlobVersion, PURGED_BY_METADATA};

#[derive(Clone, Debug)]
pub struct S3Blobs {
    pub client: aws_sdk_s3::Client,
}

impl S3Blobs {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Blobs { client }
    }
}

fn missing(e: &AwsError) -> bool {
    e.is_code("NoSuchKey") || e.is_code("NotFound")
}

fn read_error(path: String, e: impl std::fmt::Display) -> BlobError {
    BlobError::Io { path, source: std::io::Error::other(e.to_string()) }
}

impl S3Blobs {
    /// Every version and delete marker under `prefix`: (key, version id).
    async fn versions_under(&self, bucket: &str, prefix: &str) -> Result<Vec<(String, String)>, BlobError> {
        let mut out = Vec::new();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client
                .list_object_versions()
                .bucket(bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .aws("s3:ListObjectVersions")?;
            let pair = |k: Option<&str>, v: Option<&str>| k.zip(v).map(|(k, v)| (k.to_string(), v.to_string()));
            out.extend(page.versions().iter().filter_map(|v| pair(v.key(), v.version_id())));
            out.extend(page.delete_markers().iter().filter_map(|m| pair(m.key(), m.version_id())));
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() && version_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Every version and delete marker of `key` (the listing of its prefix, which other
    /// keys may share, keeps the key's own).
    async fn versions(&self, bucket: &str, key: &str) -> Result<Vec<String>, BlobError> {
        Ok(self.versions_under(bucket, key).await?.into_iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect())
    }

    async fn delete_version(&self, bucket: &str, key: &str, version: &str) -> Result<(), BlobError> {
        self.client.delete_object().bucket(bucket).key(key).version_id(version).send().await.aws("s3:DeleteObjectVersion")?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl BlobStore for S3Blobs {
    async fn head(&self, bucket: &str, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        match self.client.head_object().bucket(bucket).key(key).send().await.aws("s3:HeadObject") {
            Ok(out) => Ok(Some(BlobMeta {
                etag: out.e_tag().unwrap_or_default().to_string(),
                size: out.content_length(),
                purged_by: out.metadata().and_then(|m| m.get(PURGED_BY_METADATA)).cloned(),
            })),
            Err(e) if missing(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, BlobError> {
        match self.client.get_object().bucket(bucket).key(key).send().await.aws("s3:GetObject") {
            Ok(out) => {
                let body = out.body.collect().await.map_err(|e| read_error(format!("s3://{bucket}/{key}"), e))?;
                Ok(Some(body.into_bytes()))
            }
            Err(e) if missing(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn open(&self, bucket: &str, key: &str, version: &BlobVersion) -> Result<BlobReader, BlobError> {
        let get = self.client.get_object().bucket(bucket).key(key);
        let get = match version {
            BlobVersion::Latest => get,
            BlobVersion::Id(v) => get.version_id(v),
            BlobVersion::ETag(e) => get.if_match(e),
        };
        match get.send().await.aws("s3:GetObject source") {
            Ok(out) => Ok(Box::pin(out.body.into_async_read())),
            Err(e) if missing(&e) => Err(BlobError::NotFound { bucket: bucket.into(), key: key.into() }),
            Err(e) => Err(e.into()),
        }
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes, content_type: &str) -> Result<(), BlobError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .aws("s3:PutObject")?;
        Ok(())
    }

    async fn put_file(&self, bucket: &str, key: &str, path: &Path, content_type: &str) -> Result<(), BlobError> {
        let body = ByteStream::from_path(path).await.map_err(|e| read_error(path.display().to_string(), e))?;
        self.client.put_object().bucket(bucket).key(key).content_type(content_type).body(body).send().await.aws("s3:PutObject")?;
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, BlobError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .aws("s3:ListObjectsV2")?;
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), BlobError> {
        self.client.delete_object().bucket(bucket).key(key).send().await.aws("s3:DeleteObject")?;
        Ok(())
    }

    async fn rewrite(&self, bucket: &str, key: &str, body: Bytes, content_type: &str, purged_by: &str) -> Result<usize, BlobError> {
        let out = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .metadata(PURGED_BY_METADATA, purged_by)
            .body(ByteStream::from(body))
            .send()
            .await
            .aws("s3:PutObject")?;
        // An unversioned bucket keeps nothing older (and names its one version "null").
        let Some(new) = out.version_id().filter(|v| *v != "null") else { return Ok(0) };
        let old: Vec<String> = self.versions(bucket, key).await?.into_iter().filter(|v| v != new).collect();
        for v in &old {
            self.delete_version(bucket, key, v).await?;
        }
        Ok(old.len())
    }

    async fn delete_all_versions_of(&self, bucket: &str, prefix: &str, keys: &[String]) -> Result<usize, BlobError> {
        let wanted: std::collections::BTreeSet<&str> = keys.iter().map(String::as_str).collect();
        let mut found: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let mut removed = 0;
        for (key, version) in self.versions_under(bucket, prefix).await? {
            if wanted.contains(key.as_str()) {
                self.delete_version(bucket, &key, &version).await?;
                found.insert(key);
                removed += 1;
            }
        }
        // Not versioned (or already gone): a plain delete is enough.
        for key in keys.iter().filter(|k| !found.contains(*k)) {
            self.delete(bucket, key).await?;
        }
        Ok(removed)
    }

    async fn delete_all_versions(&self, bucket: &str, key: &str) -> Result<usize, BlobError> {
        let versions = self.versions(bucket, key).await?;
        for v in &versions {
            self.delete_version(bucket, key, v).await?;
        }
        if versions.is_empty() {
            // Not versioned (or already gone): a plain delete is enough.
            self.delete(bucket, key).await?;
        }
        Ok(versions.len())
    }
}
