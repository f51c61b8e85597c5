//! Cross-channel measurement (issue 18): what every channel and campaign brought, seen
//! across channels.
//!
//! - [`attribution`]: every order (online and in store) credited to the person's
//!   touchpoints in a lookback window under six models side by side (first touch, last
//!   touch, linear, position-based, time decay, data-driven Markov removal effect), and the
//!   paths to conversion and to non-conversion.
//! - [`report`]: the self-contained static HTML report (inline SVG charts, no network).
//!
//! Both are pure: they know nothing about S3, DataFusion or Lambda.

pub mod attribution;
pub mod journey;
pub mod report;
