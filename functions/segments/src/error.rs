//! What can go wrong in a run: one error type shared by the run, its profile snapshot and
//! the campaign report (a leaf module: it imports none of them).

use ariane_shared::ports::{BlobError, ProfileReadError, SendError};
use datafusion::error::DataFusionError;

use crate::catalog::RenderError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("segment {segment}: {source}")]
    Query {
        segment: String,
        #[source]
        source: DataFusionError,
    },
    #[error("segment {segment}: {source}")]
    Render {
        segment: String,
        #[source]
        source: RenderError,
    },
    /// The query's result lacks a column the segment declares.
    #[error("segment {segment}: {problem}")]
    Result { segment: String, problem: String },
    #[error("segment {segment}: cannot read the query's result: {source}")]
    Format {
        segment: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("cannot set up the catalog: {0}")]
    Catalog(#[source] DataFusionError),
    #[error("lake: {0}")]
    Blob(#[from] BlobError),
    #[error("activation queue: {0}")]
    Send(#[from] SendError),
    #[error("profile snapshot: {0}")]
    Profiles(#[from] ProfileReadError),
    /// A memberships item (`SEGMENTS#<pid>`) could not be written.
    #[error("memberships of {profile_id}: {source}")]
    Memberships {
        profile_id: String,
        #[source]
        source: ariane_shared::AwsError,
    },
    /// A membership or profile snapshot cannot be converted to or from Arrow.
    #[error("{key}: {source}")]
    Arrow {
        key: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    /// A membership or profile snapshot cannot be encoded or decoded as Parquet.
    #[error("{key}: {source}")]
    Parquet {
        key: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A stored JSON document (a `current.json` pointer, a snapshot marker, the report
    /// pointer) that cannot be decoded: an error, never "nothing committed yet".
    #[error("{key} cannot be decoded: {source}")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A part a committed pointer names is gone.
    #[error("committed snapshot {key} is missing")]
    MissingPart { key: String },
    /// A step of a run was given a plan this function cannot follow (a bucket outside it,
    /// a segment its library lacks, a bucket marker without a planned segment).
    #[error("run {run_id}: the plan does not fit: {problem}")]
    PlanMismatch { run_id: String, problem: String },
    /// A step needs a bucket that was not computed (publishing it, or committing the run).
    #[error("run {run_id}: bucket {bucket} of {partitions} is not computed: nothing is committed until every bucket is")]
    BucketNotComputed { run_id: String, bucket: usize, partitions: usize },
    /// The last step of a run whose segments were never committed.
    #[error("run {run_id} is not committed")]
    NotCommitted { run_id: String },
    /// The commit found a bucket whose changes were not published.
    #[error("run {run_id}: bucket {bucket} of {partitions} is not published: nothing is committed until every bucket is")]
    BucketNotPublished { run_id: String, bucket: usize, partitions: usize },
    /// The blob store cannot serve the lake to DataFusion (see `Ports::reading_blobs`).
    #[error("the blob store offers no object store for bucket {bucket}: build one with catalog::s3_store")]
    NoLakeStore { bucket: String },
    /// A step of the lake compaction (`compact`) failed: listing or checking the lake, a
    /// query, or the compacted parts it writes. Nothing is committed before its manifest.
    #[error("lake compaction, {what}: {source}")]
    Compaction {
        what: String,
        #[source]
        source: DataFusionError,
    },
}

impl RunError {
    pub(crate) fn decode(key: &str) -> impl FnOnce(serde_json::Error) -> RunError + '_ {
        move |source| RunError::Decode { key: key.to_string(), source }
    }

    pub(crate) fn encode(what: &'static str) -> impl FnOnce(serde_json::Error) -> RunError {
        move |source| RunError::Encode { what, source }
    }

    pub(crate) fn arrow(key: &str) -> impl FnOnce(arrow::error::ArrowError) -> RunError + '_ {
        move |source| RunError::Arrow { key: key.to_string(), source }
    }

    pub(crate) fn parquet(key: &str) -> impl FnOnce(parquet::errors::ParquetError) -> RunError + '_ {
        move |source| RunError::Parquet { key: key.to_string(), source }
    }
}
