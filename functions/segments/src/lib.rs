//! Segments: computes marketing segments with DataFusion SQL over the lake, writes a
//! membership snapshot per segment and run, and sends who entered and who exited to the
//! activation queue.
//!
//! Tables a segment's SQL can use, the header of a segment file, the run parameters and
//! the built-in library are documented in `docs/segments.md`: `events` (every channel,
//! with the resolved `profile_id`), `profiles` (consents and reachability as of the run),
//! `orders`, `order_lines`, `carts`.

pub mod catalog;
pub mod config;
pub mod definition;
pub mod handler;
pub mod report;
pub mod run;
pub mod snapshot;

pub use config::SegmentsConfig;
pub use definition::SegmentDefinition;
pub use handler::Segments;

include!(concat!(env!("OUT_DIR"), "/segment_files.rs"));
