//! The I/O a run goes through ([`Ports`]): the lake bucket as blobs (pointers, snapshots,
//! markers, reports), the activation queue, the profiles table (read for the snapshot;
//! written for the memberships items, [`ariane_shared::ports::MembershipStore`]), and the lake as DataFusion
//! reads it (an `object_store`). `main.rs` wires the AWS adapters
//! ([`AwsPorts`], through `Segments::from_env`); tests wire the in-memory ones, whose
//! blob adapter is also the object store DataFusion reads ([`Ports::reading_blobs`]), so a
//! run computed in memory reads what it wrote.
//!
//! The helpers below read and write the run's stored documents through the blob port.

use std::sync::Arc;

use ariane_shared::adapters::dynamodb::{DynamoMemberships, DynamoProfiles};
use ariane_shared::adapters::s3::S3Blobs;
use ariane_shared::adapters::sqs::SqsQueue;
use ariane_shared::aws::Clients;
use ariane_shared::lake;
use ariane_shared::model::SegmentMember;
use ariane_shared::ports::BlobStore;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use object_store::ObjectStore;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::RunError;

/// The ports of a segments run.
#[derive(Clone, Debug)]
pub struct Ports<B, Q, P, M> {
    /// The lake bucket: pointers, membership and profile snapshots, markers, reports.
    pub blobs: B,
    /// The activation queue (entered / exited messages).
    pub queue: Q,
    /// The profiles table (the run's profile snapshot).
    pub profiles: P,
    /// The profiles table's memberships items, which the profile API reads.
    pub memberships: M,
    /// The lake bucket as DataFusion reads it (registered as `s3://<lake bucket>`).
    pub lake: Arc<dyn ObjectStore>,
}

/// The ports on AWS: S3, SQS, DynamoDB, and DataFusion's own S3 store.
pub type AwsPorts = Ports<S3Blobs, SqsQueue, DynamoProfiles, DynamoMemberships>;

impl AwsPorts {
    /// The AWS adapters over `clients`; DataFusion reads `lake_bucket` with the same
    /// endpoint, region and credential chain ([`crate::catalog::s3_store`]).
    pub fn aws(clients: &Clients, lake_bucket: &str, profiles_table: &str) -> object_store::Result<AwsPorts> {
        Ok(Ports {
            blobs: S3Blobs::new(clients.s3.clone()),
            queue: SqsQueue::new(clients.sqs.clone()),
            profiles: DynamoProfiles { client: clients.dynamodb.clone(), table: profiles_table.to_string() },
            memberships: DynamoMemberships { client: clients.dynamodb.clone(), table: profiles_table.to_string() },
            lake: crate::catalog::s3_store(&clients.config, lake_bucket)?,
        })
    }
}

impl<B: BlobStore, Q, P, M> Ports<B, Q, P, M> {
    /// Ports whose lake DataFusion reads through the blob store itself
    /// ([`BlobStore::object_store`]: the in-memory adapter), so every object written
    /// through `blobs` is what the queries read. A blob store without one (S3) is
    /// [`RunError::NoLakeStore`]: use [`Ports::aws`].
    pub fn reading_blobs(blobs: B, queue: Q, profiles: P, memberships: M, lake_bucket: &str) -> Result<Self, RunError> {
        let lake = blobs.object_store(lake_bucket).ok_or_else(|| RunError::NoLakeStore { bucket: lake_bucket.to_string() })?;
        Ok(Ports { blobs, queue, profiles, memberships, lake })
    }
}

pub(crate) const JSON: &str = "application/json";
pub(crate) const PARQUET: &str = "application/vnd.apache.parquet";

/// A stored JSON document; `None` when it does not exist, an error when it cannot be
/// decoded.
pub(crate) async fn get_json<T: DeserializeOwned>(blobs: &dyn BlobStore, bucket: &str, key: &str) -> Result<Option<T>, RunError> {
    match blobs.get(bucket, key).await? {
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(RunError::decode(key))?)),
        None => Ok(None),
    }
}

pub(crate) async fn put_json<T: Serialize>(
    blobs: &dyn BlobStore,
    bucket: &str,
    key: &str,
    what: &'static str,
    value: &T,
) -> Result<(), RunError> {
    let body = serde_json::to_vec_pretty(value).map_err(RunError::encode(what))?;
    blobs.put(bucket, key, Bytes::from(body), JSON).await?;
    Ok(())
}

/// Writes one Parquet file of `batch`.
pub(crate) async fn put_parquet(
    blobs: &dyn BlobStore,
    bucket: &str,
    key: &str,
    schema: SchemaRef,
    batch: Result<RecordBatch, arrow::error::ArrowError>,
) -> Result<(), RunError> {
    let batch = batch.map_err(RunError::arrow(key))?;
    let bytes = lake::parquet_bytes(schema, &[batch]).map_err(RunError::parquet(key))?;
    blobs.put(bucket, key, Bytes::from(bytes), PARQUET).await?;
    Ok(())
}

/// The members of a committed membership part (which must exist).
pub(crate) async fn read_members(blobs: &dyn BlobStore, bucket: &str, key: &str) -> Result<Vec<SegmentMember>, RunError> {
    let bytes = blobs.get(bucket, key).await?.ok_or_else(|| RunError::MissingPart { key: key.to_string() })?;
    let batches = lake::read_parquet_bytes(bytes).map_err(RunError::parquet(key))?;
    lake::members_from_batches(&batches).map_err(RunError::arrow(key))
}
