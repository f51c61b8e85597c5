use ariane_shared::{ConfigError, EnvSource};

#[derive(Clone, Debug)]
pub struct IdentityConfig {
    pub profiles_table: String,
    pub lake_bucket: String,
}

impl IdentityConfig {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Ok(IdentityConfig { profiles_table: env.require("PROFILES_TABLE")?, lake_bucket: env.require("LAKE_BUCKET")? })
    }
}
