//! Where parsed rows go: the [`RowSink`] the engine writes into, and its error.

use ariane_shared::model::{CanonicalEvent, Observation, RejectedRow};

/// Receives each data row of a file as an event or a rejected row, and the identity
/// observations.
pub trait RowSink {
    fn event(&mut self, event: CanonicalEvent) -> Result<(), SinkError>;
    fn rejected(&mut self, row: RejectedRow) -> Result<(), SinkError>;
    fn observation(&mut self, observation: Observation) -> Result<(), SinkError>;
    /// The optional columns the file lacks (blank in every row), told once before the
    /// rows when there are any.
    fn absent_columns(&mut self, _columns: &[String]) {}
}

/// Every row of a file in memory, as the engine gives them: for tests and tools that
/// look at what a file makes.
#[derive(Clone, Debug, Default)]
pub struct Collected {
    pub events: Vec<CanonicalEvent>,
    pub rejected: Vec<RejectedRow>,
    pub observations: Vec<Observation>,
    /// The optional columns the file lacks.
    pub absent: Vec<String>,
}

impl RowSink for Collected {
    fn event(&mut self, event: CanonicalEvent) -> Result<(), SinkError> {
        self.events.push(event);
        Ok(())
    }
    fn rejected(&mut self, row: RejectedRow) -> Result<(), SinkError> {
        self.rejected.push(row);
        Ok(())
    }
    fn observation(&mut self, observation: Observation) -> Result<(), SinkError> {
        self.observations.push(observation);
        Ok(())
    }
    fn absent_columns(&mut self, columns: &[String]) {
        self.absent = columns.to_vec();
    }
}

/// A sink that could not keep a row (scratch space, Parquet or Arrow encoding).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("cannot spool an observation: {0}")]
    Spool(#[from] serde_json::Error),
    /// A spill file of the sink itself does not read back as written.
    #[error("spill file {path}: {what}")]
    Spill { path: String, what: &'static str },
}
