//! Segments: computes marketing segments with DataFusion SQL over the lake, writes a
//! membership snapshot per segment and run, and sends who entered and who exited to the
//! activation queue.
//!
//! Tables a segment's SQL can use, the header of a segment file, the run parameters and
//! the built-in library are documented in `docs/segments.md`: `events` (every channel,
//! with the resolved `profile_id`), `profiles` (consents and reachability as of the run),
//! `orders`, `order_lines`, `carts`.
//!
//! The handler ([`SegmentsWith`]) is generic over its [`Ports`] (blob storage, the
//! activation queue, the profile reader, the lake as DataFusion reads it); [`Segments`]
//! is the AWS-wired one `main.rs` builds. Modules, leaves first: `config`, `read_cache`,
//! `catalog`, `definition`, `error`, `ports`, `snapshot`, `run`, `report`, `handler`.

pub mod catalog;
pub mod compact;
pub mod config;
pub mod definition;
pub mod error;
pub mod handler;
pub mod ports;
pub mod read_cache;
pub mod report;
pub mod run;
pub mod snapshot;

#[cfg(test)]
mod tests;

pub use config::SegmentsConfig;
pub use definition::SegmentDefinition;
pub use error::RunError;
pub use handler::{Segments, SegmentsWith};
pub use ports::{AwsPorts, Ports};

/// The segment files embedded at build time: (file name, contents).
pub static SEGMENT_FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/segment_files.rs"));
