//! Identity: resolves the identifiers of each observation to one profile per person in
//! DynamoDB, and writes the resolved links (identifier hash → profile id) to the lake so
//! the segments step can join events to profiles without personal data.
//!
//! Resolution in this version keys people by normalised email; the other identifiers of
//! an observation (phone, customer id) are attached to the profile and linked in the lake.
//!
//! Table layout (one table, `pk`/`sk`):
//! - `PROFILE#<profile id>` / `PROFILE`: the profile (personal data lives only here).
//! - `ID#<kind>#<sha256>` / `ID`: identifier → profile id (created with the profile in one
//!   transaction, conditionally, so two concurrent creators converge on one profile).

pub mod config;
pub mod handler;
pub mod store;

pub use config::IdentityConfig;
pub use handler::Identity;
