//! What can go wrong in a measures run.

use ariane_segments::catalog::RenderError;
use ariane_shared::ports::BlobError;
use datafusion::error::DataFusionError;

use crate::attribution::AttributionError;

#[derive(Debug, thiserror::Error)]
pub enum MeasuresError {
    #[error(transparent)]
    Config(#[from] ariane_shared::ConfigError),
    #[error("invalid measure library: {0}")]
    Library(#[from] ariane_segments::definition::DefinitionError),
    #[error("cannot build the lake's object store: {0}")]
    LakeStore(#[source] object_store::Error),
    #[error("the event's detail {detail} is not a run request ({source}); expected {{}} or {{\"run_at\": \"...\"}}")]
    Detail {
        detail: String,
        #[source]
        source: serde_json::Error,
    },
    /// The profile snapshot (shared with segments) could not be taken or read.
    #[error("profile snapshot: {0}")]
    Snapshot(#[source] ariane_segments::RunError),
    #[error("cannot set up the catalog: {0}")]
    Catalog(#[source] DataFusionError),
    #[error("measure {measure}: {source}")]
    Render {
        measure: String,
        #[source]
        source: RenderError,
    },
    #[error("measure {measure}: {source}")]
    Query {
        measure: String,
        #[source]
        source: DataFusionError,
    },
    /// A result lacks a column the run reads, or holds a value it cannot use.
    #[error("measure {measure}: {problem}")]
    Result { measure: String, problem: String },
    #[error("attribution: {0}")]
    Attribution(#[from] AttributionError),
    #[error("{key}: {source}")]
    Encode {
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("lake: {0}")]
    Blob(#[from] BlobError),
}
