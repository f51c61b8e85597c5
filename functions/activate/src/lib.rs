//! Activate: turns segment changes into campaign effects, exactly once each however often
//! SQS delivers a request. Campaigns are files (`campaigns/*.toml`, [`campaign`]); the
//! brand's rules (frequency cap, quiet hours, destinations) are `config/activation.toml`
//! ([`rules`]). The decision path is documented in [`handler`], the ports it goes through
//! in [`ports`] (the exactly-once ledger is `ariane_shared::ports::ActivationLedger`),
//! and the whole in `docs/activation.md`.

pub mod audience;
pub mod breaker;
pub mod calendar;
pub mod campaign;
pub mod config;
pub mod handler;
pub mod holdout;
pub mod ports;
pub mod profile;
pub mod quiet;
pub mod rules;
pub mod signature;
pub mod webhook;
pub mod zone;

pub use config::ActivateConfig;
pub use handler::{Activate, ActivateWith};
pub use ports::{AwsPorts, InMemory, MemPorts, PortSet, Ports};

/// The campaign files embedded at build time: (file name, contents).
pub static CAMPAIGN_FILES: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/campaign_files.rs"));
