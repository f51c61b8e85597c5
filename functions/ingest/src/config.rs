use ariane_shared::{ConfigError, EnvSource};

/// Settings read once at cold start.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    pub landing_bucket: String,
    pub lake_bucket: String,
    pub identity_queue_url: String,
    /// Where temporary Parquet parts are written (Lambda: `/tmp`).
    pub scratch_dir: std::path::PathBuf,
}

impl IngestConfig {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Ok(IngestConfig {
            landing_bucket: env.require("LANDING_BUCKET")?,
            lake_bucket: env.require("LAKE_BUCKET")?,
            identity_queue_url: env.require("IDENTITY_QUEUE_URL")?,
            scratch_dir: env.get("ARIANE_SCRATCH_DIR").map(Into::into).unwrap_or_else(std::env::temp_dir),
        })
    }
}
