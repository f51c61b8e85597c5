use ariane_shared::{ConfigError, EnvSource};

#[derive(Clone, Debug)]
pub struct IdentityConfig {
    pub profiles_table: String,
    pub lake_bucket: String,
    /// The outbound events queue (`EVENTS_QUEUE_URL`): a `ProfileErased` event per
    /// erased person, for the destinations to erase too.
    pub events_queue_url: Option<String>,
    /// The activation queue (`ACTIVATION_QUEUE_URL`): the recent activity observations
    /// carry (carts, checkouts, purchases), with the person's profile id, for the
    /// event-triggered campaigns. Unset: not forwarded.
    pub activation_queue_url: Option<String>,
}

impl IdentityConfig {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        Ok(IdentityConfig {
            profiles_table: env.require("PROFILES_TABLE")?,
            lake_bucket: env.require("LAKE_BUCKET")?,
            events_queue_url: env.get("EVENTS_QUEUE_URL").filter(|u| !u.trim().is_empty()),
            activation_queue_url: env.get("ACTIVATION_QUEUE_URL").filter(|u| !u.trim().is_empty()),
        })
    }
}
