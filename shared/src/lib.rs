//! Ariane's shared library: the canonical data model every function speaks, typed
//! configuration, AWS client construction (honouring `AWS_ENDPOINT_URL` for the local
//! stack), typed errors, identifier normalisation and hashing, and the lake layout.
//!
//! Nothing here knows about Lambda: functions wrap these pieces in thin handlers.

pub mod aws;
pub mod config;
pub mod error;
pub mod identifiers;
pub mod lake;
pub mod metrics;
pub mod model;
pub mod sqs;

pub use config::{EnvSource, MapEnv, ProcessEnv};
pub use error::{AwsError, ConfigError};
