//! Segments: computes marketing segments with DataFusion SQL over the lake, writes a
//! membership snapshot per segment and run, and sends who entered and who exited to the
//! activation queue.
//!
//! Tables a segment's SQL can use (see `README.md`, "Segments"):
//! - `events`: canonical events of every channel joined to their profile (`profile_id`),
//!   only those that happened at or before the run time;
//! - `orders`: one row per order (`profile_id`, `order_id`, `ordered_at`, `amount_minor`, `lines`);
//! - `run_context`: one row, `run_at`, the run's timestamp (relative time uses it, so a
//!   run is reproducible);
//! - `raw_events`, `identity_links`: the underlying lake tables.

pub mod catalog;
pub mod config;
pub mod definition;
pub mod handler;
pub mod run;

pub use config::SegmentsConfig;
pub use definition::SegmentDefinition;
pub use handler::Segments;

include!(concat!(env!("OUT_DIR"), "/segment_files.rs"));
