use std::collections::BTreeMap;

use ariane_shared::model::CHANNELS;
use ariane_shared::{ConfigError, EnvSource};

/// What this instance of the ingest binary does (`INGEST_CHANNEL`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Ingests the files of one channel.
    Channel { channel: String, identity_queue_url: String },
    /// Forwards landing notifications to the queue of the key's channel
    /// (`CHANNEL_QUEUE_URLS` = `pos=<url>,ecommerce=<url>,...`).
    Router { channel_queues: BTreeMap<String, String> },
}

/// Settings read once at cold start.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    pub landing_bucket: String,
    pub lake_bucket: String,
    pub mode: Mode,
    /// Where temporary Parquet parts are written (Lambda: `/tmp`).
    pub scratch_dir: std::path::PathBuf,
    /// Identity messages in flight at once.
    pub send_concurrency: usize,
    /// This function's dead-letter queue (`DEAD_LETTER_QUEUE_URL`): a message that failed
    /// for good (a body that is not a notification, a file no retry can read) is moved
    /// there at once and acknowledged, instead of being received maxReceiveCount times.
    /// Unset: such messages are reported failed and reach the DLQ through the redrive
    /// policy.
    pub dead_letter_queue_url: Option<String>,
}

fn invalid(name: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { name, reason }
}

impl IngestConfig {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let channel = env.require("INGEST_CHANNEL")?;
        let mode = if channel == "router" {
            let raw = env.require("CHANNEL_QUEUE_URLS")?;
            let mut channel_queues = BTreeMap::new();
            for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let (c, url) =
                    entry.split_once('=').ok_or_else(|| invalid("CHANNEL_QUEUE_URLS", format!("{entry:?} is not channel=url")))?;
                if !CHANNELS.contains(&c.trim()) {
                    return Err(invalid("CHANNEL_QUEUE_URLS", format!("unknown channel {c:?} (one of {CHANNELS:?})")));
                }
                channel_queues.insert(c.trim().to_string(), url.trim().to_string());
            }
            if channel_queues.is_empty() {
                return Err(invalid("CHANNEL_QUEUE_URLS", "no channel=url entry".into()));
            }
            Mode::Router { channel_queues }
        } else if CHANNELS.contains(&channel.as_str()) {
            Mode::Channel { channel, identity_queue_url: env.require("IDENTITY_QUEUE_URL")? }
        } else {
            return Err(invalid("INGEST_CHANNEL", format!("{channel:?}: expected router or one of {CHANNELS:?}")));
        };
        let send_concurrency = match env.get("ARIANE_SEND_CONCURRENCY") {
            Some(v) => v
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("ARIANE_SEND_CONCURRENCY", format!("{v:?} is not a positive number")))?,
            None => 8,
        };
        Ok(IngestConfig {
            landing_bucket: env.require("LANDING_BUCKET")?,
            lake_bucket: env.require("LAKE_BUCKET")?,
            mode,
            scratch_dir: env.get("ARIANE_SCRATCH_DIR").map(Into::into).unwrap_or_else(std::env::temp_dir),
            send_concurrency,
            dead_letter_queue_url: env.get("DEAD_LETTER_QUEUE_URL").filter(|u| !u.trim().is_empty()),
        })
    }

    pub fn channel(&self) -> Option<&str> {
        match &self.mode {
            Mode::Channel { channel, .. } => Some(channel),
            Mode::Router { .. } => None,
        }
    }
}
