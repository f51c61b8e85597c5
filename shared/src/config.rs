//! Typed configuration read once at cold start.
//!
//! Functions read their settings through an [`EnvSource`], so the same code reads the
//! process environment inside Lambda and an explicit map when the local runner hosts
//! several stacks in one process.

use std::collections::HashMap;

use crate::error::ConfigError;

/// Where configuration values come from.
pub trait EnvSource: Send + Sync {
    /// The value of `key`, if set and not empty.
    fn get(&self, key: &str) -> Option<String>;

    /// Whether this is the real process environment (then the AWS SDK's default
    /// credential chain is used instead of explicit keys).
    fn is_process_env(&self) -> bool {
        false
    }

    /// The value of a required variable, or an error naming it.
    fn require(&self, key: &'static str) -> Result<String, ConfigError> {
        self.get(key).ok_or(ConfigError::Missing(key))
    }
}

/// The process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
    fn is_process_env(&self) -> bool {
        true
    }
}

/// An explicit set of variables (the local runner, tests).
#[derive(Debug, Default, Clone)]
pub struct MapEnv(pub HashMap<String, String>);

impl MapEnv {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }
}

impl EnvSource for MapEnv {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).filter(|v| !v.is_empty()).cloned()
    }
}

impl<T: EnvSource + ?Sized> EnvSource for &T {
    fn get(&self, key: &str) -> Option<String> {
        (**self).get(key)
    }
    fn is_process_env(&self) -> bool {
        (**self).is_process_env()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variable_is_named() {
        let env = MapEnv::new().with("A", "1").with("EMPTY", "");
        assert_eq!(env.require("A").unwrap(), "1");
        let err = env.require("LAKE_BUCKET").unwrap_err();
        assert!(err.to_string().contains("LAKE_BUCKET"), "{err}");
        assert!(env.require("EMPTY").is_err());
    }
}
