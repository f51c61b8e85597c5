//! The collector's configuration, read once at cold start.
//!
//! | variable | meaning |
//! |---|---|
//! | `COLLECT_SOURCES` | JSON list of the sources allowed to post, see [`SourceConfig`] |
//! | `COLLECT_QUEUE_URL` | the queue accepted events go to (and the SQS entry point reads) |
//! | `LANDING_BUCKET` | where the SQS entry point writes one NDJSON object per channel |

use ariane_shared::{ConfigError, EnvSource};
use serde::Deserialize;

/// The channels the collector may write to: those with a `collector.toml` spec in
/// `channels/<channel>/` (keys `collect/**`), which reads what the collector writes.
pub const COLLECT_CHANNELS: &[&str] = &["web", "app"];

/// One source allowed to post events: a website or an app, with its write key's hash.
///
/// `{"source": "website", "channel": "web", "key_sha256": "<64 hex digits>", "origins": ["https://shop.example"]}`
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// The source's name: part of every event id (natural key `source` + `message_id`).
    pub source: String,
    /// `web` or `app` ([`COLLECT_CHANNELS`]).
    pub channel: String,
    /// SHA-256 (hex) of the write key; the key itself is never configured.
    pub key_sha256: String,
    /// The web origins allowed to post with this key (`scheme://host[:port]`). Empty for
    /// an app (requests without an `Origin` header).
    #[serde(default)]
    pub origins: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct CollectConfig {
    pub sources: Vec<SourceConfig>,
    pub queue_url: String,
    pub landing_bucket: String,
}

impl CollectConfig {
    pub fn from_env(env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let sources =
            parse_sources(&env.require("COLLECT_SOURCES")?).map_err(|reason| ConfigError::Invalid { name: "COLLECT_SOURCES", reason })?;
        Ok(CollectConfig { sources, queue_url: env.require("COLLECT_QUEUE_URL")?, landing_bucket: env.require("LANDING_BUCKET")? })
    }
}

/// Parses and checks `COLLECT_SOURCES`; the error says what is wrong and where.
pub fn parse_sources(json: &str) -> Result<Vec<SourceConfig>, String> {
    let mut sources: Vec<SourceConfig> = serde_json::from_str(json)
        .map_err(|e| format!("not a JSON list of {{\"source\", \"channel\", \"key_sha256\", \"origins\"}} objects: {e}"))?;
    if sources.is_empty() {
        // A deployment without a source yet (the template's default): every request
        // gets its 401, and the cold start says why.
        tracing::warn!("COLLECT_SOURCES lists no source: every request is refused until one is configured");
    }
    for (i, s) in sources.iter_mut().enumerate() {
        let at = format!("source {i} ({:?})", s.source);
        if s.source.is_empty() || s.source.len() > 64 || !s.source.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(format!("{at}: a source name is 1 to 64 letters, digits, - or _"));
        }
        if !COLLECT_CHANNELS.contains(&s.channel.as_str()) {
            return Err(format!("{at}: channel {:?} is not one the collector writes to ({})", s.channel, COLLECT_CHANNELS.join(", ")));
        }
        s.key_sha256 = s.key_sha256.to_ascii_lowercase();
        if s.key_sha256.len() != 64 || !s.key_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{at}: key_sha256 must be the 64 hex digits of the write key's SHA-256 (not the key itself)"));
        }
        for o in &mut s.origins {
            let trimmed = o.trim_end_matches('/').to_ascii_lowercase();
            let valid = (trimmed.starts_with("https://") || trimmed.starts_with("http://"))
                && trimmed.splitn(4, '/').nth(3).is_none()
                && trimmed.len() > "https://".len();
            if !valid {
                return Err(format!("{at}: origin {o:?} is not scheme://host[:port] (no path)"));
            }
            *o = trimmed;
        }
    }
    for (i, a) in sources.iter().enumerate() {
        if let Some(b) = sources[..i].iter().find(|b| b.source == a.source) {
            return Err(format!("source {:?} is configured twice", b.source));
        }
        if let Some(b) = sources[..i].iter().find(|b| b.key_sha256 == a.key_sha256) {
            return Err(format!("sources {:?} and {:?} share a write key", b.source, a.source));
        }
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ariane_shared::MapEnv;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn env(sources: &str) -> MapEnv {
        MapEnv::new().with("COLLECT_SOURCES", sources).with("COLLECT_QUEUE_URL", "q").with("LANDING_BUCKET", "landing")
    }

    #[test]
    fn reads_sources_and_names_what_is_wrong() {
        let json = format!(
            r#"[{{"source": "website", "channel": "web", "key_sha256": "{}", "origins": ["https://Shop.example/"]}}]"#,
            HASH.to_uppercase()
        );
        let c = CollectConfig::from_env(&env(&json)).unwrap();
        assert_eq!(c.sources[0].key_sha256, HASH);
        assert_eq!(c.sources[0].origins, ["https://shop.example"]);
        assert_eq!((c.queue_url.as_str(), c.landing_bucket.as_str()), ("q", "landing"));

        let err = |json: &str| CollectConfig::from_env(&env(json)).unwrap_err().to_string();
        assert!(err("{").contains("COLLECT_SOURCES: not a JSON list"), "{}", err("{"));
        assert!(parse_sources("[]").unwrap().is_empty(), "no source yet: every request refused");
        let one = |channel: &str, key: &str, origin: &str| {
            format!(r#"[{{"source": "website", "channel": "{channel}", "key_sha256": "{key}", "origins": ["{origin}"]}}]"#)
        };
        assert!(err(&one("pos", HASH, "https://a.example")).contains("channel \"pos\" is not one the collector writes to (web, app)"));
        assert!(err(&one("web", "secret", "https://a.example")).contains("key_sha256 must be the 64 hex digits"));
        assert!(err(&one("web", HASH, "a.example")).contains("origin \"a.example\" is not scheme://host"));
        assert!(err(&one("web", HASH, "https://a.example/path")).contains("no path"));
        let twice = format!(
            r#"[{{"source": "a", "channel": "web", "key_sha256": "{HASH}"}}, {{"source": "b", "channel": "app", "key_sha256": "{HASH}"}}]"#
        );
        assert!(err(&twice).contains("share a write key"));
        assert!(CollectConfig::from_env(&MapEnv::new()).unwrap_err().to_string().contains("COLLECT_SOURCES"));
    }
}
