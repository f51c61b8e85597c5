use ariane_shared::{ConfigError, EnvSource};

#[derive(Clone, Debug)]
pub struct SegmentsConfig {
    pub lake_bucket: String,
    pub activation_queue_url: String,
    /// The identity profiles table (the run's profile snapshot is a Scan of it).
    pub profiles_table: String,
    /// Profile buckets of a run (`ARIANE_SEGMENT_PARTITIONS`).
    pub partitions: usize,
    /// Buckets the state machine computes at once (`ARIANE_SEGMENT_CONCURRENCY`, default
    /// the bucket count): the plan carries it to the Map states.
    pub concurrency: usize,
    /// DataFusion's memory pool; above it, sorts and aggregations spill to `scratch_dir`.
    pub memory_limit_mb: usize,
    /// The run's cache of whole small lake objects (`ARIANE_SEGMENTS_LAKE_CACHE_MB`, default
    /// a quarter of `memory_limit_mb`; 0 reads every range from S3).
    pub lake_cache_mb: usize,
    pub scratch_dir: std::path::PathBuf,
    /// The UTC hour whose run compacts the lake (`ARIANE_COMPACTION_HOUR`, default 4: after
    /// the daily purge at 02:30); `None` (`off`) never compacts. A lake never compacted, or
    /// last compacted more than a day and a half ago, is compacted by the next run.
    pub compaction_hour: Option<u32>,
}

/// See [`SegmentsConfig::compaction_hour`].
pub const DEFAULT_COMPACTION_HOUR: u32 = 4;

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
            concurrency: match env.get("ARIANE_SEGMENT_CONCURRENCY") {
                None => 0,
                Some(v) => v.parse().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| ConfigError::Invalid {
                    name: "ARIANE_SEGMENT_CONCURRENCY",
                    reason: format!("{v:?} is not a concurrency in 1..=1000"),
                })?,
            },
            memory_limit_mb,
            lake_cache_mb,
            scratch_dir: env.get("ARIANE_SCRATCH_DIR").map(Into::into).unwrap_or_else(std::env::temp_dir),
            compaction_hour: match env.get("ARIANE_COMPACTION_HOUR").as_deref() {
                None => Some(DEFAULT_COMPACTION_HOUR),
                Some("off") => None,
                Some(v) => Some(v.parse().ok().filter(|h| *h < 24).ok_or_else(|| ConfigError::Invalid {
                    name: "ARIANE_COMPACTION_HOUR",
                    reason: format!("{v:?} is not an hour in 0..=23 or off"),
                })?),
            },
        })
    }
}

#[cfg(test)]
impl SegmentsConfig {
    /// The in-memory tests' configuration: the lake bucket `lake`, the queue
    /// `mem://activation`, a 256 MB pool, no compaction unless a test asks for it.
    pub(crate) fn for_tests(partitions: usize) -> SegmentsConfig {
        SegmentsConfig {
            lake_bucket: "lake".into(),
            activation_queue_url: "mem://activation".into(),
            profiles_table: "profiles".into(),
            partitions,
            concurrency: 0,
            memory_limit_mb: 256,
            lake_cache_mb: 64,
            scratch_dir: std::env::temp_dir(),
            compaction_hour: None,
        }
    }
}
