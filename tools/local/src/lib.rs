//! The local AWS stack and Lambda runner.
//!
//! - [`moto::MotoServer`] starts moto on 127.0.0.1 on a free port.
//! - [`stack::deploy`] deploys `infra/template.yaml` to it (through `infra/local/stack.py`:
//!   aws-sam-translator, then moto's CloudFormation) and reads back a [`manifest::Manifest`].
//! - [`runner::Runner`] plays the Lambda service from that manifest: it polls the queues of
//!   the event source mappings, invokes the functions with the real event shapes, deletes
//!   what succeeded, makes reported `batchItemFailures` visible again (so they reach the
//!   DLQ after `maxReceiveCount`), and fires schedules on demand.
//! - [`receiver::Receiver`] is a webhook receiver on 127.0.0.1 recording deliveries.
//! - [`channel_specs`] checks channel specs together (key overlaps included) and dry-runs
//!   one on a local sample export (`validate --sample`), through the ingest's own parser.
//! - [`quality`] scores identity resolution against the data generator's ground truth
//!   (pairwise precision and recall).
//! - [`duckdb`] and [`measures_duckdb`] run the segments and the daily measures with DuckDB
//!   over a local lake (the correctness oracle and the benchmarks' reference);
//!   [`bench_lake`] builds and caches the benchmarks' scale lake.

pub mod activation;
pub mod bench_lake;
pub mod channel_specs;
pub mod duckdb;
pub mod fs_blobs;
pub mod functions;
pub mod gateway;
pub mod manifest;
pub mod measures_duckdb;
pub mod measures_oracle;
pub mod moto;
pub mod quality;
pub mod receiver;
pub mod runner;
pub mod segment_oracle;
pub mod stack;
pub mod states;
pub mod truth_lake;

use std::path::PathBuf;

/// The repository root (where `infra/`, `.venv/` and `.local/` live).
pub fn repo_root() -> PathBuf {
    if let Ok(root) = std::env::var("ARIANE_ROOT") {
        return PathBuf::from(root);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

pub use stack::LocalStack;
