//! Ingest: turns a channel export dropped in the landing bucket into canonical events
//! (Parquet in the lake), rejected rows with reasons, identity observations (SQS) and a
//! ledger entry per landed key and version whose counts reconcile (rows read = events
//! written + rejected; lines read = written + rejected + skipped blank, header and
//! continuation lines), or that names the first ingestion of the same content.
//!
//! How a file is read is data, not code: each channel has spec files
//! (`channels/<channel>/<format>.toml`, see [`spec`]) embedded at build time. The same
//! binary runs once per channel (`INGEST_CHANNEL=pos`, ...) and once as the landing
//! router (`INGEST_CHANNEL=router`), which forwards each notification to its channel's
//! queue and records keys under no known channel.
//!
//! Reading ([`source`]), mapping ([`map`], [`engine`]) and the local Parquet parts
//! ([`parts`]) are pure and synchronous; [`pipeline`] does the I/O through the ports of
//! `ariane_shared::ports`; [`handler::IngestWith::handle`] is the Lambda handler, and
//! [`Ingest`] the handler wired to S3 and SQS.
//!
//! Modules import each other without cycles; each imports only modules listed before it:
//! `amount`, `lines`, `fxhash`, `sink`, `config`, `s3event` (leaves), `values`, `spec`,
//! `source`, `map`, `engine`, `parts`, `pipeline`, `handler`.

pub mod amount;
pub mod bounds;
pub mod config;
pub mod engine;
pub mod fxhash;
pub mod handler;
pub mod lines;
pub mod map;
pub mod parts;
pub mod pipeline;
pub mod s3event;
pub mod sink;
pub mod source;
pub mod spec;
pub mod values;

pub use config::IngestConfig;
pub use handler::{Ingest, IngestWith};
