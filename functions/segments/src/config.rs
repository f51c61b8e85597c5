use ariane_shared::{ConfigError, EnvSource};

#[derive(Clone, Debug)]
pub struct SegmentsConfig {
    pub lake_bucket: String,
    pub activation_queue_url: String,
    /// The identity profiles table (the run's profile snapshot is a Scan of it).
    pub profiles_table: String,
    /// Profile partitions computed one after the other (`ARIANE_SEGMENT_PARTITIONS`).
    pub partitions: usize,
    /// DataFusion's memory pool; above it, sorts and aggregations spill to `scratch_dir`.
    pub memory_limit_mb: usize,
    /// The run's cache of whole small lake objects (`ARIANE_SEGMENTS_LAKE_CACHE_MB`, default
    /// a quarter of `memory_limit_mb`; 0 reads every range from S3).
    pub lake_cache_mb: usize,
    pub scratch_dir: std::path::PathBuf,
}

impl SegmentsConfig {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let memory_limit_mb = match env.get("ARIANE_SEGMENTS_MEMORY_MB") {
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                name: "ARIANE_SEGMENTS_MEMORY_MB",
                reason: format!("{v:?} is not a number of megabytes"),
            })?,
            // Half of the function's memory by default, the rest for Arrow buffers in flight.
            None => env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").and_then(|m| m.parse::<usize>().ok()).map(|m| m / 2).unwrap_or(512),
        };
        let lake_cache_mb = match env.get("ARIANE_SEGMENTS_LAKE_CACHE_MB") {
            Some(v) => v.parse().map_err(|_| ConfigError::Invalid {
                name: "ARIANE_SEGMENTS_LAKE_CACHE_MB",
                reason: format!("{v:?} is not a number of megabytes"),
            })?,
            None => memory_limit_mb / 4,
        };
        Ok(SegmentsConfig {
            lake_bucket: env.require("LAKE_BUCKET")?,
            activation_queue_url: env.require("ACTIVATION_QUEUE_URL")?,
            profiles_table: env.require("PROFILES_TABLE")?,
            partitions: match env.get("ARIANE_SEGMENT_PARTITIONS") {
                None => 1,
                Some(v) => v.parse().ok().filter(|n| (1..=256).contains(n)).ok_or_else(|| ConfigError::Invalid {
                    name: "ARIANE_SEGMENT_PARTITIONS",
                    reason: format!("{v:?} is not a partition count in 1..=256"),
                })?,
            },
            memory_limit_mb,
            lake_cache_mb,
            scratch_dir: env.get("ARIANE_SCRATCH_DIR").map(Into::into).unwrap_or_else(std::env::temp_dir),
        })
    }
}
