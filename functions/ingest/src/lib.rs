//! Ingest: turns a channel export dropped in the landing bucket into canonical events
//! (Parquet in the lake), rejected rows with reasons, identity observations (SQS) and a
//! per-file ledger entry whose counts reconcile (rows read = events written + rejected).
//!
//! The handler ([`handler::Ingest::handle`]) is a plain async function over SQS events;
//! parsing ([`orders`]) is pure and synchronous; [`pipeline`] does the I/O.

pub mod amount;
pub mod config;
pub mod handler;
pub mod orders;
pub mod pipeline;
pub mod s3event;

pub use config::IngestConfig;
pub use handler::Ingest;
