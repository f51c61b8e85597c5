//! Ariane's shared library: the canonical data model every function speaks, typed
//! configuration, AWS client construction (honouring `AWS_ENDPOINT_URL` for the local
//! stack), typed errors, identifier normalisation and hashing, the lake layout, the
//! profile item, and the ports the functions' I/O goes through with their adapters.
//!
//! Nothing here knows about Lambda: functions wrap these pieces in thin handlers.

pub mod adapters;
pub mod aws;
pub mod backoff;
pub mod config;
pub mod erasure;
pub mod error;
pub mod http;
pub mod identifiers;
pub mod lake;
pub mod memberships;
pub mod metrics;
pub mod model;
pub mod ports;
pub mod profile;
pub mod urls;

pub use config::{EnvSource, MapEnv, ProcessEnv};
pub use error::{AwsError, ConfigError};
