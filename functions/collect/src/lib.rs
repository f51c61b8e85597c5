//! Collect: the real-time collector. A website or an app posts events in batches to
//! `POST /v1/batch` (API Gateway HTTP API in front of this function); accepted events are
//! checked, stripped of the person when consent is missing, flattened into lines and
//! queued ([`http`]). The same function, fed by that queue, writes each micro-batch as one
//! NDJSON object per channel into the landing bucket ([`landing`]), where the existing
//! ingest reads it with `channels/{web,app}/collector.toml`, exactly like an export: so
//! batch and stream agree, and a replayed request changes nothing (event ids derive from
//! the source and the message id). See `docs/collector.md`.
//!
//! Modules import each other without cycles; each imports only modules listed before it:
//! `api`, `config`, `batch` (leaves), `message`, `http`, `landing`, `handler`, `local`.

pub mod api;
pub mod batch;
pub mod config;
pub mod handler;
pub mod http;
pub mod landing;
pub mod local;
pub mod message;

pub use api::{HttpRequest, HttpResponse};
pub use config::{CollectConfig, SourceConfig};
pub use handler::{CollectError, Collector, CollectorWith};

#[cfg(test)]
mod tests;
