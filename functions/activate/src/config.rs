use std::collections::BTreeMap;
use std::time::Duration;

use ariane_shared::{ConfigError, EnvSource};

use crate::webhook::parse_destinations;

#[derive(Clone, Debug)]
pub struct ActivateConfig {
    pub profiles_table: String,
    /// The activation ledger table: sends, pressure, audiences, deferrals
    /// (`ariane_shared::adapters::dynamodb::DynamoLedger`).
    pub ledger_table: String,
    /// Activation records and audience files are written to the lake.
    pub lake_bucket: String,
    /// Released deferrals go back to the activation queue.
    pub activation_queue_url: String,
    /// `ActivationSent` / `AudienceEntered` / `AudienceExited` events for other systems.
    pub events_queue_url: String,
    /// Destination name → URL (`WEBHOOK_DESTINATIONS=name=url,...`).
    pub destinations: BTreeMap<String, String>,
    /// The Secrets Manager secret holding the webhook signing key.
    pub webhook_secret_arn: String,
    pub webhook_timeout: Duration,
    /// Attempts per webhook call within one invocation.
    pub webhook_attempts: u32,
    /// How long a claim protects an in-flight send before another instance may retry it.
    pub claim_lease: Duration,
    /// The destinations' circuit breaker (`BREAKER_THRESHOLD`, `BREAKER_COOLDOWN_SECONDS`,
    /// `BREAKER_MAX_COOLDOWN_SECONDS`).
    pub breaker: crate::breaker::BreakerPolicy,
}

impl ActivateConfig {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let secs = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match env.get(name) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .parse()
                    .map(Duration::from_secs)
                    .map_err(|_| ConfigError::Invalid { name, reason: format!("{v:?} is not a number of seconds") }),
            }
        };
        let destinations = parse_destinations(&env.require("WEBHOOK_DESTINATIONS")?)
            .map_err(|e| ConfigError::Invalid { name: "WEBHOOK_DESTINATIONS", reason: e.to_string() })?;
        // A whole number in `range` (`what` names its unit in the error).
        let count = |name: &'static str, default: u32, range: std::ops::RangeInclusive<u32>, what: &str| -> Result<u32, ConfigError> {
            match env.get(name) {
                None => Ok(default),
                Some(v) => v.parse().ok().filter(|n| range.contains(n)).ok_or_else(|| ConfigError::Invalid {
                    name,
                    reason: format!("{v:?} is not a number of {what} in {}..={}", range.start(), range.end()),
                }),
            }
        };
        let webhook_attempts = count("WEBHOOK_ATTEMPTS", 3, 1..=10, "attempts")?;
        Ok(ActivateConfig {
            profiles_table: env.require("PROFILES_TABLE")?,
            ledger_table: env.require("ACTIVATION_LEDGER_TABLE")?,
            lake_bucket: env.require("LAKE_BUCKET")?,
            activation_queue_url: env.require("ACTIVATION_QUEUE_URL")?,
            events_queue_url: env.require("ACTIVATION_EVENTS_QUEUE_URL")?,
            destinations,
            webhook_secret_arn: env.require("WEBHOOK_SECRET_ARN")?,
            webhook_timeout: secs("WEBHOOK_TIMEOUT_SECONDS", 10)?,
            webhook_attempts,
            claim_lease: secs("CLAIM_LEASE_SECONDS", 120)?,
            breaker: {
                let threshold = count("BREAKER_THRESHOLD", 5, 1..=1000, "failures")?;
                let cooldown = secs("BREAKER_COOLDOWN_SECONDS", 300)?;
                let max_cooldown = secs("BREAKER_MAX_COOLDOWN_SECONDS", 3600)?;
                if cooldown.is_zero() || max_cooldown < cooldown {
                    return Err(ConfigError::Invalid {
                        name: "BREAKER_MAX_COOLDOWN_SECONDS",
                        reason: format!(
                            "the cool-downs must be positive and the longest ({max_cooldown:?}) at least the first ({cooldown:?})"
                        ),
                    });
                }
                let d = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1));
                crate::breaker::BreakerPolicy { threshold, cooldown: d(cooldown), max_cooldown: d(max_cooldown) }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ariane_shared::MapEnv;

    fn env() -> MapEnv {
        MapEnv::new()
            .with("PROFILES_TABLE", "p")
            .with("ACTIVATION_LEDGER_TABLE", "l")
            .with("LAKE_BUCKET", "b")
            .with("ACTIVATION_QUEUE_URL", "q")
            .with("ACTIVATION_EVENTS_QUEUE_URL", "e")
            .with("WEBHOOK_DESTINATIONS", "esp=https://esp.example/hook")
            .with("WEBHOOK_SECRET_ARN", "arn")
    }

    #[test]
    fn defaults_and_clear_errors() {
        let c = ActivateConfig::from_env(&env()).unwrap();
        assert_eq!((c.webhook_attempts, c.claim_lease, c.breaker), (3, Duration::from_secs(120), crate::breaker::BreakerPolicy::default()));
        let err = |e: MapEnv| ActivateConfig::from_env(&e).unwrap_err().to_string();
        assert!(err(env().with("WEBHOOK_ATTEMPTS", "0")).contains("WEBHOOK_ATTEMPTS: \"0\" is not a number of attempts in 1..=10"));
        assert!(
            err(env().with("BREAKER_THRESHOLD", "many")).contains("BREAKER_THRESHOLD: \"many\" is not a number of failures in 1..=1000")
        );
        assert!(
            err(env().with("BREAKER_COOLDOWN_SECONDS", "600").with("BREAKER_MAX_COOLDOWN_SECONDS", "60")).contains("at least the first")
        );
        assert!(err(env().with("WEBHOOK_DESTINATIONS", "esp=http://esp.example/hook")).contains("not an https:// URL"));
        let c = ActivateConfig::from_env(&env().with("BREAKER_THRESHOLD", "2").with("BREAKER_COOLDOWN_SECONDS", "30")).unwrap();
        assert_eq!((c.breaker.threshold, c.breaker.cooldown), (2, chrono::Duration::seconds(30)));
    }
}
