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
    pub bucket_notifications: Vec<BucketNotification>,
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
    pub function: String,
    pub input: Option<serde_json::Value>,
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

    pub fn function(&self, logical_id: &str) -> anyhow::Result<&Function> {
        self.functions.get(logical_id).ok_or_else(|| anyhow::anyhow!("function {logical_id} not in the stack"))
    }

    /// The logical id of the function built from `binary`.
    pub fn function_by_binary(&self, binary: &str) -> anyhow::Result<(&str, &Function)> {
        self.functions
            .iter()
            .find(|(_, f)| f.binary == binary)
            .map(|(k, f)| (k.as_str(), f))
            .ok_or_else(|| anyhow::anyhow!("no function with binary {binary} in the stack"))
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

    /// One environment for `cargo lambda watch --env-file` (it serves every function with
    /// the same variables): the union of the functions' variables plus the local stack's
    /// endpoint, region and test credentials, as `KEY=value` lines.
    pub fn cargo_lambda_env_file(&self) -> String {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for f in self.functions.values() {
            env.extend(f.environment.clone());
        }
        env.extend(self.client_env().0);
        env.insert("ARIANE_METRICS".into(), "off".into());
        env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }

    /// The environment a function gets locally: its deployed variables plus the endpoint,
    /// region and test credentials of the local stack.
    pub fn function_env(&self, logical_id: &str) -> anyhow::Result<ariane_shared::MapEnv> {
        let f = self.function(logical_id)?;
        let mut env = self.client_env();
        env.0.extend(f.environment.clone());
        Ok(env
            .with("AWS_LAMBDA_FUNCTION_NAME", &f.function_name)
            .with("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", f.memory_mb.to_string()))
    }
}
