//! The measures function's configuration, read once per cold start.

use ariane_shared::{ConfigError, EnvSource};
use chrono::Duration;

use crate::attribution;
use crate::report::Locale;

/// Days of activity a run measures (orders, KPIs, funnel): the SQL files of `measures/`
/// state the same period with `{{run_date-28}}`.
pub const PERIOD_DAYS: i64 = 28;
/// The longest attribution lookback the touchpoints measure covers (it reads
/// `PERIOD_DAYS + MAX_LOOKBACK_DAYS` days).
pub const MAX_LOOKBACK_DAYS: i64 = 30;

#[derive(Clone, Debug)]
pub struct MeasuresConfig {
    pub lake_bucket: String,
    /// The identity profiles table: each run snapshots its pseudonymous summaries (the
    /// `profiles` table of the catalog), like a segments run.
    pub profiles_table: String,
    /// DataFusion's memory pool (`ARIANE_MEASURES_MEMORY_MB`, default half the function's
    /// memory); above it, sorts and aggregations spill to `scratch_dir`.
    pub memory_limit_mb: usize,
    /// The run's cache of small lake objects (a quarter of the pool).
    pub lake_cache_mb: usize,
    pub scratch_dir: std::path::PathBuf,
    /// The report's language and number formats (`ARIANE_REPORT_LOCALE`: `fr`, the
    /// default, or `en`).
    pub locale: Locale,
    /// The retailer's name in the report's header (`ARIANE_RETAILER`, default `Ariane`).
    pub retailer: String,
    /// Attribution settings: lookback (`ARIANE_ATTRIBUTION_LOOKBACK_DAYS`, 1 to 30,
    /// default 30) and time-decay half-life (`ARIANE_ATTRIBUTION_HALF_LIFE_DAYS`, default 7).
    pub attribution: attribution::Config,
}

fn days(env: &dyn EnvSource, name: &'static str, default: i64, max: i64) -> Result<Duration, ConfigError> {
    match env.get(name) {
        None => Ok(Duration::days(default)),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=max).contains(d))
            .map(Duration::days)
            .ok_or_else(|| ConfigError::Invalid { name, reason: format!("{v:?} is not a number of days in 1..={max}") }),
    }
}

impl MeasuresConfig {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let memory_limit_mb = match env.get("ARIANE_MEASURES_MEMORY_MB") {
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                name: "ARIANE_MEASURES_MEMORY_MB",
                reason: format!("{v:?} is not a number of megabytes"),
            })?,
            None => env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").and_then(|m| m.parse::<usize>().ok()).map(|m| m / 2).unwrap_or(512),
        };
        let locale = match env.get("ARIANE_REPORT_LOCALE").as_deref() {
            None | Some("fr") => Locale::Fr,
            Some("en") => Locale::En,
            Some(v) => return Err(ConfigError::Invalid { name: "ARIANE_REPORT_LOCALE", reason: format!("{v:?} is not fr or en") }),
        };
        let attribution = attribution::Config {
            lookback: days(env, "ARIANE_ATTRIBUTION_LOOKBACK_DAYS", MAX_LOOKBACK_DAYS, MAX_LOOKBACK_DAYS)?,
            half_life: days(env, "ARIANE_ATTRIBUTION_HALF_LIFE_DAYS", 7, 365)?,
            ..attribution::Config::default()
        };
        Ok(MeasuresConfig {
            lake_bucket: env.require("LAKE_BUCKET")?,
            profiles_table: env.require("PROFILES_TABLE")?,
            memory_limit_mb,
            lake_cache_mb: memory_limit_mb / 4,
            scratch_dir: env.get("ARIANE_SCRATCH_DIR").map(Into::into).unwrap_or_else(std::env::temp_dir),
            locale,
            retailer: env.get("ARIANE_RETAILER").unwrap_or_else(|| "Ariane".to_string()),
            attribution,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ariane_shared::MapEnv;

    #[test]
    fn defaults_and_refusals() {
        let env = MapEnv::new().with("LAKE_BUCKET", "lake").with("PROFILES_TABLE", "profiles");
        let c = MeasuresConfig::from_env(&env).unwrap();
        assert_eq!((c.locale, c.attribution.lookback, c.attribution.half_life), (Locale::Fr, Duration::days(30), Duration::days(7)));
        let e = MeasuresConfig::from_env(&env.clone().with("ARIANE_ATTRIBUTION_LOOKBACK_DAYS", "45")).unwrap_err();
        assert!(e.to_string().contains("1..=30"), "{e}");
        assert!(MeasuresConfig::from_env(&env.with("ARIANE_REPORT_LOCALE", "de")).is_err());
    }
}
