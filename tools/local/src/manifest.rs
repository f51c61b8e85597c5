//! The local stack's manifest, written by `infra/local/stack.py` from the deployed stack.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub endpoint: String,
    pub region: String,
    pub account_id: String,
    pub stack_name: String,
    pub stage: String,
    pub outputs: BTreeMap<String, String>,
    pub resources: BTreeMap<String, Resource>,
    pub functions: BTreeMap<String, Function>,
    pub event_source_mappings: Vec<EventSourceMapping>,
    pub queues: BTreeMap<String, Queue>,
    pub schedules: Vec<Schedule>,
    #[serde(default)]
    pub state_machines: BTreeMap<String, StateMachine>,
    pub bucket_notifications: Vec<BucketNotification>,
    /// The HTTP APIs (created through moto's API Gateway v2 API, which its
    /// CloudFormation skips), by logical id; the runner serves their routes.
    #[serde(default)]
    pub http_apis: BTreeMap<String, HttpApi>,
}

/// An HTTP API of the stack and the function behind each of its routes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HttpApi {
    pub api_id: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Route key (`POST /v1/batch`) -> the function's logical id.
    pub routes: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub physical_id: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Function {
    pub function_name: String,
    pub binary: String,
    pub arn: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    /// `/tmp` size from the template (moto ignores EphemeralStorage; see stack.py).
    #[serde(default)]
    pub ephemeral_storage_mb: Option<u32>,
    /// ReservedConcurrentExecutions, when the template sets it.
    #[serde(default)]
    pub reserved_concurrency: Option<u32>,
    pub environment: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventSourceMapping {
    pub function: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: u32,
    #[serde(default)]
    pub maximum_batching_window_s: u32,
    /// ScalingConfig.MaximumConcurrency (recorded only: the local runner invokes one
    /// batch at a time).
    #[serde(default)]
    pub maximum_concurrency: Option<u32>,
    pub report_batch_item_failures: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Queue {
    pub url: String,
    pub arn: String,
    pub visibility_timeout_s: u32,
    pub dlq_arn: Option<String>,
    pub dlq_url: Option<String>,
    pub max_receive_count: Option<u32>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Schedule {
    pub rule_name: String,
    pub rule_arn: String,
    pub schedule_expression: Option<String>,
    /// The function the rule targets (logical id), when it targets one.
    #[serde(default)]
    pub function: Option<String>,
    /// The state machine the rule targets (logical id), when it targets one.
    #[serde(default)]
    pub state_machine: Option<String>,
    pub input: Option<serde_json::Value>,
}

/// A state machine of the stack, as moto stores it (its definition with the function ARNs
/// resolved); the local runner plays it (`crate::states`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateMachine {
    pub name: String,
    pub arn: String,
    pub definition: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BucketNotification {
    pub bucket: String,
    pub queue_arn: String,
    pub queue_url: Option<String>,
    pub events: Vec<String>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
}

impl Manifest {
    pub fn output(&self, name: &str) -> anyhow::Result<&str> {
        self.outputs.get(name).map(String::as_str).ok_or_else(|| anyhow::anyhow!("stack output {name} missing"))
    }

    pub fn state_machine(&self, logical_id: &str) -> anyhow::Result<&StateMachine> {
        self.state_machines.get(logical_id).ok_or_else(|| anyhow::anyhow!("state machine {logical_id} not in the stack"))
    }

    /// The logical id of the function whose ARN (or name) is `arn`, as a state machine's
    /// task names it.
    pub fn function_by_arn(&self, arn: &str) -> anyhow::Result<&str> {
        let base = arn.split(':').take(7).collect::<Vec<_>>().join(":");
        self.functions
            .iter()
            .find(|(_, f)| f.arn == base || f.function_name == arn)
            .map(|(id, _)| id.as_str())
            .ok_or_else(|| anyhow::anyhow!("no function {arn} in the stack"))
    }

    pub fn function(&self, logical_id: &str) -> anyhow::Result<&Function> {
        self.functions.get(logical_id).ok_or_else(|| anyhow::anyhow!("function {logical_id} not in the stack"))
    }

    /// The function built from `binary`, when it is the only one (the ingest instances
    /// and the landing router all run `ingest`: see [`Manifest::functions_by_binary`]).
    pub fn function_by_binary(&self, binary: &str) -> anyhow::Result<(&str, &Function)> {
        match self.functions_by_binary(binary).as_slice() {
            [one] => Ok(*one),
            [] => anyhow::bail!("no function with binary {binary} in the stack"),
            many => anyhow::bail!(
                "{} functions run binary {binary} ({}): pick one by logical id",
                many.len(),
                many.iter().map(|(id, _)| *id).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Every function built from `binary`, by logical id.
    pub fn functions_by_binary(&self, binary: &str) -> Vec<(&str, &Function)> {
        self.functions.iter().filter(|(_, f)| f.binary == binary).map(|(k, f)| (k.as_str(), f)).collect()
    }

    /// The ingest instance of a channel (or of the router, `channel = "router"`): the
    /// function whose `INGEST_CHANNEL` is `channel`.
    pub fn ingest_instance(&self, channel: &str) -> anyhow::Result<(&str, &Function)> {
        self.functions
            .iter()
            .find(|(_, f)| f.environment.get("INGEST_CHANNEL").map(String::as_str) == Some(channel))
            .map(|(k, f)| (k.as_str(), f))
            .ok_or_else(|| anyhow::anyhow!("no function with INGEST_CHANNEL={channel} in the stack"))
    }

    /// The queue (logical id) an SQS event source mapping feeds `function` from.
    pub fn queue_of(&self, function: &str) -> anyhow::Result<(&str, &Queue)> {
        self.event_source_mappings
            .iter()
            .find(|e| e.function == function)
            .and_then(|e| self.queue_by_arn(&e.queue_arn))
            .ok_or_else(|| anyhow::anyhow!("no SQS event source mapping for {function}"))
    }

    /// The queue whose URL or ARN is given.
    pub fn queue_by_arn(&self, arn: &str) -> Option<(&str, &Queue)> {
        self.queues.iter().find(|(_, q)| q.arn == arn).map(|(k, q)| (k.as_str(), q))
    }

    /// What an AWS client needs to reach the local stack: endpoint, region, test keys.
    pub fn client_env(&self) -> ariane_shared::MapEnv {
        ariane_shared::MapEnv::new()
            .with("AWS_ENDPOINT_URL", &self.endpoint)
            .with("AWS_REGION", &self.region)
            .with("AWS_ACCESS_KEY_ID", "test")
            .with("AWS_SECRET_ACCESS_KEY", "test")
    }

    /// `cargo lambda watch` serves each binary once, with one environment for all of
    /// them. Several functions share the `ingest` binary with different environments
    /// (`INGEST_CHANNEL`), so one watch serves a shared binary as one of its functions:
    /// by default the one fed by the bucket notifications (the landing router), else
    /// the first by logical id. A binary of its own is served as its function.
    pub fn cargo_lambda_default_instance(&self, binary: &str) -> Option<&str> {
        let sharing = self.functions_by_binary(binary);
        let notified = |id: &str| {
            self.event_source_mappings
                .iter()
                .any(|e| e.function == id && self.bucket_notifications.iter().any(|n| n.queue_arn == e.queue_arn))
        };
        sharing.iter().map(|(id, _)| *id).find(|id| notified(id)).or_else(|| sharing.first().map(|(id, _)| *id))
    }

    /// The functions a default watch does not serve (they share their binary with the
    /// default instance): each needs a watch of its own, started with
    /// `cargo_lambda_env_file(Some(id))`.
    pub fn cargo_lambda_other_instances(&self) -> Vec<&str> {
        self.functions
            .iter()
            .filter(|(id, f)| self.cargo_lambda_default_instance(&f.binary) != Some(id.as_str()))
            .map(|(id, _)| id.as_str())
            .collect()
    }

    /// The environment of one `cargo lambda watch --env-file`, as `KEY=value` lines: the
    /// variables of every function it serves (see
    /// [`Manifest::cargo_lambda_default_instance`]; `instance` replaces the default for
    /// its binary) plus the local stack's endpoint, region and test credentials.
    pub fn cargo_lambda_env_file(&self, instance: Option<&str>) -> anyhow::Result<String> {
        let chosen = match instance {
            Some(id) => Some((id, self.function(id)?.binary.as_str())),
            None => None,
        };
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for (id, f) in &self.functions {
            let served = match chosen {
                Some((chosen_id, binary)) if binary == f.binary => chosen_id == id,
                _ => self.cargo_lambda_default_instance(&f.binary) == Some(id.as_str()),
            };
            if served {
                env.extend(f.environment.clone());
            }
        }
        env.extend(self.client_env().0);
        env.insert("ARIANE_METRICS".into(), "off".into());
        Ok(env.iter().map(|(k, v)| format!("{k}={}\n", env_file_value(v))).collect())
    }

    /// The environment a function gets locally: its deployed variables plus the endpoint,
    /// region and test credentials of the local stack.
    pub fn function_env(&self, logical_id: &str) -> anyhow::Result<ariane_shared::MapEnv> {
        let f = self.function(logical_id)?;
        let mut env = self.client_env();
        env.0.extend(f.environment.clone());
        Ok(env.with("AWS_LAMBDA_FUNCTION_NAME", &f.function_name).with("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb.to_string()))
    }
}

/// A value for an env file as cargo-lambda reads it: its parser rejects an unquoted `=`
/// (as in `CHANNEL_QUEUE_URLS=pos=<url>,...`), so anything but plain characters is quoted
/// (single quotes are literal; double quotes when the value holds a single quote).
fn env_file_value(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,:/@+".contains(c);
    if value.chars().all(plain) {
        value.to_string()
    } else if !value.contains('\'') {
        format!("'{value}'")
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

#[cfg(test)]
mod tests {
    use super::env_file_value;

    #[test]
    fn env_file_values_with_equals_signs_are_quoted() {
        assert_eq!(env_file_value("http://127.0.0.1:5000/123/q"), "http://127.0.0.1:5000/123/q");
        assert_eq!(env_file_value("pos=http://h/q,web=http://h/w"), "'pos=http://h/q,web=http://h/w'");
        assert_eq!(env_file_value("it's"), "\"it's\"");
    }
}
