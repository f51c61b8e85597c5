//! The website's profile API (issue 19): for a cookie, device or customer id, the
//! person's current segments and the attributes the site uses (preferred channel, cart
//! items, suggestions), never a clear e-mail, phone or name. See `docs/profile-api.md`.
//!
//! Modules, leaves first: `config`, `token` (browser tokens), `auth`, `http` (API Gateway
//! HTTP API events), `directory` (the reads: [`ProfileDirectory`], DynamoDB and memory),
//! `view` (the answer), `handler` ([`ProfileApi`], generic over its directory).

pub mod auth;
pub mod config;
pub mod directory;
pub mod handler;
pub mod http;
pub mod token;
pub mod view;

#[cfg(test)]
mod tests;

pub use auth::{Authenticator, Caller};
pub use config::{ApiClient, ProfileApiConfig};
pub use directory::{DynamoDirectory, MemDirectory, ProfileDirectory};
pub use handler::ProfileApi;
pub use http::{HttpRequest, HttpResponse};
pub use token::{issue_token, verify_token};
