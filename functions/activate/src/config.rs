use std::time::Duration;

use ariane_shared::{ConfigError, EnvSource};

#[derive(Clone, Debug)]
pub struct ActivateConfig {
    pub profiles_table: String,
    pub ledger_table: String,
    pub webhook_url: String,
    pub webhook_timeout: Duration,
    /// How long a claim protects an in-flight send before another instance may retry it.
    pub claim_lease: Duration,
    /// Segments whose entries are delivered (`ACTIVATE_SEGMENTS`, comma-separated; default
    /// `reactivation`). Entries of other segments are acknowledged without a send until
    /// campaign files say what to do with them.
    pub segments: Vec<String>,
}

impl ActivateConfig {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let webhook_url = env.require("WEBHOOK_URL")?;
        if !(webhook_url.starts_with("https://") || webhook_url.starts_with("http://")) {
            return Err(ConfigError::Invalid { name: "WEBHOOK_URL", reason: format!("{webhook_url:?} is not an http(s) URL") });
        }
        let secs = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match env.get(name) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .parse()
                    .map(Duration::from_secs)
                    .map_err(|_| ConfigError::Invalid { name, reason: format!("{v:?} is not a number of seconds") }),
            }
        };
        Ok(ActivateConfig {
            profiles_table: env.require("PROFILES_TABLE")?,
            ledger_table: env.require("ACTIVATION_LEDGER_TABLE")?,
            webhook_url,
            webhook_timeout: secs("WEBHOOK_TIMEOUT_SECONDS", 10)?,
            claim_lease: secs("CLAIM_LEASE_SECONDS", 120)?,
            segments: env
                .get("ACTIVATE_SEGMENTS")
                .unwrap_or_else(|| "reactivation".to_string())
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        })
    }
}
