//! Cross-channel measurement (issue 18): what every channel and campaign brought, seen
//! across channels.
//!
//! - [`attribution`]: every order (online and in store) credited to the person's
//!   touchpoints in a lookback window under six models side by side (first touch, last
//!   touch, linear, position-based, time decay, data-driven Markov removal effect), and the
//!   paths to conversion and to non-conversion.
//! - [`report`]: the self-contained static HTML report (inline SVG charts, no network);
//! - [`spend`]: return on ad spend and cost per acquisition per channel, campaign and
//!   model; [`period`]: the KPI cards' figures and their change against the previous
//!   period.
//!
//! Both are pure: they know nothing about S3, DataFusion or Lambda. Around them, the daily
//! run (the `measures` Lambda function):
//!
//! - [`definition`]: the measure library, SQL files of `measures/` (embedded at build
//!   time), parsed and validated like segments;
//! - [`run`]: [`run::run_measures`] runs them with DataFusion over the lake through the
//!   segments' catalog, attribution over `touchpoints` and `conversions`, spend and return
//!   over `spend`, writes every result as Parquet under `measures/<name>/date=<d>/`, the
//!   previous period's headline figures, and the report under
//!   `reports/html/<d>/index.html`; [`daily`] builds the report's data;
//! - [`handler`]: the scheduled-event handler ([`Measures`] on AWS), [`config`], [`error`],
//!   [`table`] (reading results back by column name).

pub mod attribution;
pub mod config;
pub mod daily;
pub mod definition;
pub mod error;
pub mod handler;
pub mod period;
pub mod report;
pub mod run;
pub mod spend;
pub mod table;

#[cfg(test)]
mod tests;

pub use config::MeasuresConfig;
pub use definition::MeasureDefinition;
pub use error::MeasuresError;
pub use handler::{Measures, MeasuresWith};
pub use run::{run_measures, Ports, RunSummary};

/// The measure files embedded at build time: (file name, contents).
pub static MEASURE_FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/measure_files.rs"));
