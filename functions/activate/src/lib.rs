//! Activate: turns segment entries into deliveries. Each entered member is posted as
//! JSON to the configured webhook, with an `Idempotency-Key` header, exactly once per
//! (segment, run, profile, change) however often SQS delivers the request.
//!
//! Exactly-once effects from at-least-once delivery: a ledger item in DynamoDB is
//! *claimed* (conditional put) before the send and marked *sent* after it. A duplicate
//! delivery finds the item sent and does nothing. A claim whose holder crashed expires
//! after a lease and can be re-claimed; if the crash happened after the POST and before
//! the ledger update, the receiver sees the same `Idempotency-Key` twice and can drop the
//! second (the documented at-least-once edge towards the webhook).

pub mod config;
pub mod handler;
pub mod ledger;
pub mod webhook;

pub use config::ActivateConfig;
pub use handler::Activate;
