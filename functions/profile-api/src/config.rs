//! The function's configuration, read once at cold start.

use ariane_shared::{ConfigError, EnvSource};
use serde::Deserialize;

/// A server-side client of the API (`PROFILE_API_KEYS`): its name, the SHA-256 (hex) of
/// its key (the key itself is never configured), and the page origins it serves, which
/// CORS allows.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiClient {
    pub client: String,
    pub key_sha256: String,
    #[serde(default)]
    pub origins: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct ProfileApiConfig {
    /// Identity's table (`PROFILES_TABLE`): identifier items and memberships items.
    pub profiles_table: String,
    /// `PROFILE_API_KEYS`: a JSON list of [`ApiClient`] (may be `[]`).
    pub clients: Vec<ApiClient>,
    /// `PROFILE_TOKEN_SECRET_ARN`: the secret the site's backend signs browser tokens with.
    pub token_secret_arn: String,
}

impl ProfileApiConfig {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let name = "PROFILE_API_KEYS";
        let raw = env.require(name)?;
        let invalid = |reason: String| ConfigError::Invalid { name, reason };
        let clients: Vec<ApiClient> = serde_json::from_str(&raw)
            .map_err(|e| invalid(format!("not a JSON list of {{\"client\", \"key_sha256\", \"origins\"}}: {e}")))?;
        for c in &clients {
            if c.key_sha256.len() != 64 || hex::decode(&c.key_sha256).is_err() {
                return Err(invalid(format!("client {:?}: key_sha256 is not 64 hex digits", c.client)));
            }
            if let Some(o) = c.origins.iter().find(|o| !(o.starts_with("https://") || o.starts_with("http://")) || o.ends_with('/')) {
                return Err(invalid(format!("client {:?}: origin {o:?} is not scheme://host[:port]", c.client)));
            }
        }
        Ok(ProfileApiConfig {
            profiles_table: env.require("PROFILES_TABLE")?,
            clients,
            token_secret_arn: env.require("PROFILE_TOKEN_SECRET_ARN")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ariane_shared::MapEnv;

    #[test]
    fn clients_are_checked_and_missing_variables_named() {
        let key = "0".repeat(64);
        let env = |keys: &str| {
            MapEnv::new().with("PROFILES_TABLE", "profiles").with("PROFILE_TOKEN_SECRET_ARN", "arn:secret").with("PROFILE_API_KEYS", keys)
        };
        let ok = ProfileApiConfig::from_env(&env(&format!(
            r#"[{{"client": "shop", "key_sha256": "{key}", "origins": ["https://shop.example"]}}]"#
        )))
        .unwrap();
        assert_eq!(ok.clients[0].origins, ["https://shop.example"]);
        for bad in [
            "{}".to_string(),
            r#"[{"client": "shop", "key_sha256": "abc"}]"#.to_string(),
            format!(r#"[{{"client": "shop", "key_sha256": "{key}", "origins": ["shop.example"]}}]"#),
        ] {
            let e = ProfileApiConfig::from_env(&env(&bad)).unwrap_err();
            assert!(e.to_string().contains("PROFILE_API_KEYS"), "{e}");
        }
        let e = ProfileApiConfig::from_env(&MapEnv::new().with("PROFILE_API_KEYS", "[]")).unwrap_err();
        assert!(e.to_string().contains("PROFILES_TABLE"), "{e}");
    }
}
