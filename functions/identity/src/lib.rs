//! Identity: recognises one person across channels and keeps one merged profile per
//! person in DynamoDB. See `docs/identity.md` for the rules and their semantics.
//!
//! - [`rules`]: the rules file (`config/identity.toml`), validated;
//! - [`partition`]: the rules as a pure function of a set of evidence (its partition into
//!   profiles);
//! - [`profile`]: the profile document and its order-independent join;
//! - [`store`]: items, the store trait, DynamoDB and in-memory adapters, metering;
//! - [`resolver`]: incremental, concurrency-safe resolution over the store (each
//!   structural step recomputes a component's partition), erasure and repair;
//! - [`intent`]: structural steps too large for one transaction, applied in resumable
//!   chunks behind component locks;
//! - [`oracle`]: the in-memory union-find the store is tested against;
//! - [`audit`]: the store's invariants, checked over a listing of its items;
//! - [`interleave`]: deterministic, seed-driven interleavings of concurrent resolvers;
//! - [`quality`]: pairwise precision and recall against ground truth.

pub mod audit;
mod change;
pub mod config;
pub mod handler;
pub mod intent;
pub mod interleave;
pub mod oracle;
pub mod partition;
pub mod profile;
pub mod quality;
pub mod resolver;
pub mod rules;
mod step;
pub mod store;

pub use config::IdentityConfig;
pub use handler::Identity;
