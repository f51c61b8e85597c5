//! The collect function over its ports: [`CollectorWith`] answers HTTP API requests
//! (queue port) and writes SQS micro-batches to the landing bucket (blob port);
//! [`Collector`] is the one `main.rs` runs, wired to SQS and S3 by
//! [`Collector::from_env`]. Tests wire the in-memory adapters with [`CollectorWith::new`]
//! and a fixed clock ([`CollectorWith::with_clock`]).

use std::sync::Arc;

use ariane_shared::adapters::s3::S3Blobs;
use ariane_shared::adapters::sqs::SqsQueue;
use ariane_shared::aws::Clients;
use ariane_shared::ports::{BlobStore, Queue};
use ariane_shared::{ConfigError, EnvSource};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::api::{HttpRequest, HttpResponse};
use crate::config::CollectConfig;

/// The time the handler reads (injectable for tests).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The function over given ports.
#[derive(Clone)]
pub struct CollectorWith<B, Q> {
    pub config: CollectConfig,
    /// The landing bucket (SQS entry point).
    pub blobs: B,
    /// The collect queue (HTTP entry point).
    pub queue: Q,
    clock: Clock,
}

/// The collect function on AWS.
pub type Collector = CollectorWith<S3Blobs, SqsQueue>;

/// An invocation that is neither an SQS batch nor an HTTP API request.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("the event is neither an SQS batch (Records) nor an HTTP API v2 request (requestContext.http): {0}")]
    UnknownEvent(String),
    #[error("cannot encode the response: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Collector {
    /// Reads the configuration and builds the AWS adapters (what `main.rs` runs).
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let config = CollectConfig::from_env(env)?;
        let clients = Clients::from_env(env).await;
        Ok(CollectorWith::new(config, S3Blobs::new(clients.s3), SqsQueue::new(clients.sqs)))
    }
}

impl<B: BlobStore, Q: Queue> CollectorWith<B, Q> {
    pub fn new(config: CollectConfig, blobs: B, queue: Q) -> Self {
        CollectorWith { config, blobs, queue, clock: Arc::new(Utc::now) }
    }

    /// The same handler reading the time from `clock`.
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// `POST /v1/batch` and its preflight; never fails.
    pub async fn handle_http(&self, req: &HttpRequest) -> HttpResponse {
        crate::http::handle_http(&self.config, &self.queue, req, (self.clock)()).await
    }

    /// An SQS micro-batch to the landing bucket; failures per message.
    pub async fn handle_sqs(&self, event: SqsEvent) -> SqsBatchResponse {
        crate::landing::handle_sqs(&self.blobs, &self.config.landing_bucket, event).await
    }

    /// Dispatches a raw invocation: `Records` is an SQS batch, `requestContext.http` an
    /// HTTP API request.
    pub async fn handle_value(&self, event: Value) -> Result<Value, CollectError> {
        if event.get("Records").is_some() {
            let event: SqsEvent = serde_json::from_value(event).map_err(|e| CollectError::UnknownEvent(e.to_string()))?;
            return Ok(serde_json::to_value(self.handle_sqs(event).await)?);
        }
        if event.get("requestContext").and_then(|c| c.get("http")).is_some() {
            let req: HttpRequest = serde_json::from_value(event).map_err(|e| CollectError::UnknownEvent(e.to_string()))?;
            return Ok(serde_json::to_value(self.handle_http(&req).await)?);
        }
        Err(CollectError::UnknownEvent("no Records and no requestContext.http".into()))
    }
}
