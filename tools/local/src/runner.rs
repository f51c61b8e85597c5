//! Plays the Lambda service for the local stack: SQS event source mappings and schedules,
//! read from the deployed template's manifest. An upload flows S3 -> LandingQueue ->
//! landing router -> Ingest<Channel>Queue -> that channel's ingest instance -> identity
//! queue -> ...; [`Runner::drain`] plays every mapping until all their queues are empty.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::functions::Function;
use crate::manifest::{EventSourceMapping, Manifest};

/// How functions are invoked.
pub enum Invoker {
    /// In this process (tests, the demo).
    InProcess(BTreeMap<String, Function>),
    /// Real binaries under `cargo lambda watch`. `base_url` (like `http://127.0.0.1:9000`)
    /// is a watch started with `Manifest::cargo_lambda_env_file(None)`: it serves every
    /// function but the ones sharing a binary with another (the ingest instances run
    /// `ingest` with their own `INGEST_CHANNEL`), of which it serves only the default
    /// instance. `instances` maps the others (logical id) to their own watch's URL.
    CargoLambda { base_url: String, instances: BTreeMap<String, String>, client: reqwest::Client },
}

impl Invoker {
    pub async fn in_process(manifest: &Manifest) -> anyhow::Result<Self> {
        let mut functions = BTreeMap::new();
        for logical in manifest.functions.keys() {
            functions.insert(logical.clone(), Function::build(manifest, logical).await?);
        }
        Ok(Invoker::InProcess(functions))
    }

    pub fn cargo_lambda(base_url: &str) -> Self {
        Self::cargo_lambda_with_instances(base_url, BTreeMap::new())
    }

    /// `instances`: logical id -> URL of a watch started with that function's env file.
    pub fn cargo_lambda_with_instances(base_url: &str, instances: BTreeMap<String, String>) -> Self {
        let trim = |u: &str| u.trim_end_matches('/').to_string();
        Invoker::CargoLambda {
            base_url: trim(base_url),
            instances: instances.into_iter().map(|(id, url)| (id, trim(&url))).collect(),
            client: reqwest::Client::new(),
        }
    }

    pub async fn invoke(&self, manifest: &Manifest, logical_id: &str, payload: Value) -> anyhow::Result<Value> {
        match self {
            Invoker::InProcess(functions) => {
                functions.get(logical_id).with_context(|| format!("function {logical_id}"))?.invoke(payload).await
            }
            Invoker::CargoLambda { client, .. } => {
                let binary = &manifest.function(logical_id)?.binary;
                let url = self.cargo_lambda_url(manifest, logical_id)?;
                let response = client.post(&url).json(&payload).send().await.with_context(|| url.clone())?;
                let status = response.status();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if !status.is_success() {
                    bail!("{logical_id} ({binary}) failed ({status}): {body}");
                }
                Ok(body)
            }
        }
    }

    /// Fails unless `logical_id` can be invoked: checked before draining, so that a
    /// configuration error does not look like failing messages drifting to a DLQ.
    pub fn check(&self, manifest: &Manifest, logical_id: &str) -> anyhow::Result<()> {
        match self {
            Invoker::InProcess(functions) => {
                functions.get(logical_id).with_context(|| format!("function {logical_id} is not built"))?;
            }
            Invoker::CargoLambda { .. } => {
                self.cargo_lambda_url(manifest, logical_id)?;
            }
        }
        Ok(())
    }

    /// The invocation URL of `logical_id` under `cargo lambda watch`.
    fn cargo_lambda_url(&self, manifest: &Manifest, logical_id: &str) -> anyhow::Result<String> {
        let Invoker::CargoLambda { base_url, instances, .. } = self else { bail!("not a cargo-lambda invoker") };
        let binary = &manifest.function(logical_id)?.binary;
        let base = match instances.get(logical_id) {
            Some(url) => url,
            None if manifest.cargo_lambda_default_instance(binary) == Some(logical_id) => base_url,
            // On the default watch it would run as another function (a channel's
            // messages through the router would be forwarded back to its queue forever).
            None => bail!(
                "{logical_id} shares binary {binary} with other functions: start a `cargo lambda watch` with its \
                 environment (`ariane-local up` writes .local/<stage>.{logical_id}.env) and pass \
                 --cargo-lambda-for {logical_id}=URL"
            ),
        };
        Ok(format!("{base}/2015-03-31/functions/{binary}/invocations"))
    }
}

/// Counts of a drain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    pub invocations: u64,
    pub messages: u64,
    pub failures: u64,
    pub by_function: BTreeMap<String, u64>,
}

pub struct Runner {
    pub manifest: Manifest,
    pub sqs: aws_sdk_sqs::Client,
    pub invoker: Invoker,
    /// Visibility given to failed messages before their retry. Lambda waits for the
    /// queue's visibility timeout; locally the retry is immediate so that the
    /// `maxReceiveCount` redrive to the DLQ happens within a test.
    pub retry_visibility_s: i32,
    /// Stop draining after this long (a safety net for tests).
    pub drain_timeout: Duration,
    /// Told after every invocation of a drain: the function's logical id and the
    /// messages handled so far (the demo's progress display).
    pub progress: Option<ProgressHook>,
    /// How state machines are played: retries keep their count, not their waits.
    pub state_options: crate::states::Options,
}

/// See [`Runner::progress`].
pub type ProgressHook = std::sync::Arc<dyn Fn(&str, u64) + Send + Sync>;

impl Runner {
    pub fn new(manifest: Manifest, sqs: aws_sdk_sqs::Client, invoker: Invoker) -> anyhow::Result<Self> {
        Ok(Runner {
            manifest,
            sqs,
            invoker,
            retry_visibility_s: 0,
            drain_timeout: Duration::from_secs(600),
            progress: None,
            state_options: crate::states::Options { retry_interval_scale: 0.0, max_concurrency_cap: None },
        })
    }

    /// Gives the in-process activate functions this clock (the demo and tests replay
    /// quiet hours on a manual clock). No effect on functions under cargo lambda.
    pub fn set_activate_clock(&mut self, clock: &ariane_activate::handler::Clock) {
        if let Invoker::InProcess(functions) = &mut self.invoker {
            for f in functions.values_mut() {
                if let Function::Activate(a) = f {
                    a.clock = clock.clone();
                }
            }
        }
    }

    /// One poll of one mapping: receive up to a batch, invoke once, settle. Returns the
    /// number of messages received and failed.
    pub async fn poll(&self, esm: &EventSourceMapping) -> anyhow::Result<(u64, u64)> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&esm.queue_url)
            .max_number_of_messages(esm.batch_size.clamp(1, 10) as i32)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .with_context(|| format!("receive from {}", esm.queue_url))?;
        let messages = out.messages();
        if messages.is_empty() {
            return Ok((0, 0));
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: BTreeMap<String, String> =
                    m.attributes().map(|a| a.iter().map(|(k, v)| (k.as_str().to_string(), v.clone())).collect()).unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": m.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": esm.queue_arn,
                    "awsRegion": self.manifest.region,
                })
            })
            .collect();
        let result = self.invoker.invoke(&self.manifest, &esm.function, json!({ "Records": records })).await;
        let failed: HashSet<String> = match &result {
            Ok(response) if esm.report_batch_item_failures => response
                .get("batchItemFailures")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|f| f.get("itemIdentifier")?.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            Ok(_) => HashSet::new(),
            Err(e) => {
                tracing::warn!(function = %esm.function, error = %e, "invocation failed: the whole batch is retried");
                messages.iter().filter_map(|m| m.message_id().map(str::to_string)).collect()
            }
        };
        tracing::debug!(
            function = %esm.function,
            received = ?messages.iter().map(|m| (m.message_id().unwrap_or_default(), m.attributes().and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount)).cloned().unwrap_or_default())).collect::<Vec<_>>(),
            failed = ?failed,
            "invocation settled"
        );
        for m in messages {
            let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else { continue };
            if failed.contains(id) {
                self.sqs
                    .change_message_visibility()
                    .queue_url(&esm.queue_url)
                    .receipt_handle(handle)
                    .visibility_timeout(self.retry_visibility_s)
                    .send()
                    .await
                    .context("change visibility")?;
            } else {
                self.sqs.delete_message().queue_url(&esm.queue_url).receipt_handle(handle).send().await.context("delete message")?;
            }
        }
        Ok((messages.len() as u64, failed.len() as u64))
    }

    /// Polls every mapping, round after round, until all their queues are empty (nothing
    /// visible, delayed or in flight). Functions feed each other's queues (the landing
    /// router forwards to the channel queues, ingest sends to identity), so any round
    /// that handled a message is followed by another.
    pub async fn drain(&self) -> anyhow::Result<DrainReport> {
        for esm in &self.manifest.event_source_mappings {
            self.invoker.check(&self.manifest, &esm.function)?;
        }
        let start = Instant::now();
        let mut report = DrainReport::default();
        loop {
            let mut received_this_round = 0;
            for esm in &self.manifest.event_source_mappings {
                loop {
                    let (received, failed) = self.poll(esm).await?;
                    if received == 0 {
                        break;
                    }
                    received_this_round += received;
                    report.invocations += 1;
                    report.messages += received;
                    report.failures += failed;
                    *report.by_function.entry(esm.function.clone()).or_default() += received;
                    if let Some(progress) = &self.progress {
                        progress(&esm.function, report.messages);
                    }
                    if start.elapsed() > self.drain_timeout {
                        bail!("queues still not empty after {:?}", self.drain_timeout);
                    }
                }
            }
            if received_this_round == 0 {
                let mut pending = 0;
                for esm in &self.manifest.event_source_mappings {
                    pending += queue_depth(&self.sqs, &esm.queue_url).await?;
                }
                if pending == 0 {
                    return Ok(report);
                }
                if start.elapsed() > self.drain_timeout {
                    bail!("{pending} messages still in flight after {:?}", self.drain_timeout);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Fires a schedule rule as EventBridge would, at `time`, and returns the response:
    /// the function's, or the output of the state machine's execution. `which` is a rule
    /// name or the logical id of the function or state machine it targets; `None` is the
    /// segments schedule (the one whose target runs the `segments` binary).
    pub async fn fire_schedule(&self, which: Option<&str>, time: DateTime<Utc>) -> anyhow::Result<Value> {
        self.fire_schedule_with(which, time, json!({})).await
    }

    /// [`Runner::fire_schedule`] with an event `detail` (the segments function reads
    /// `{"segments": [...], "force": true, "report": true}` from a manual invocation).
    pub async fn fire_schedule_with(&self, which: Option<&str>, time: DateTime<Utc>, detail: Value) -> anyhow::Result<Value> {
        let schedule = self.schedule(which)?;
        let mut event = scheduled_event(&self.manifest, &schedule.rule_arn, time);
        event["detail"] = detail;
        match (&schedule.state_machine, &schedule.function) {
            (Some(machine), _) => self.start_execution(machine, event).await,
            (None, Some(function)) => self.invoker.invoke(&self.manifest, function, event).await,
            (None, None) => bail!("schedule {} targets neither a function nor a state machine of the stack", schedule.rule_name),
        }
    }

    fn schedule(&self, which: Option<&str>) -> anyhow::Result<&crate::manifest::Schedule> {
        let named = |s: &&crate::manifest::Schedule, name: &str| {
            s.rule_name == name || s.function.as_deref() == Some(name) || s.state_machine.as_deref() == Some(name)
        };
        match which {
            Some(name) => self.manifest.schedules.iter().find(|s| named(s, name)),
            None => self.manifest.schedules.iter().find(|s| self.runs_binary(s, "segments")),
        }
        .with_context(|| format!("schedule {which:?} not in the stack"))
    }

    /// Whether the schedule's target is, or (a state machine) invokes, a function running
    /// `binary`.
    fn runs_binary(&self, s: &crate::manifest::Schedule, binary: &str) -> bool {
        let is = |id: &str| self.manifest.function(id).is_ok_and(|f| f.binary == binary);
        match (&s.function, &s.state_machine) {
            (Some(f), _) => is(f),
            (None, Some(m)) => self.state_machine_functions(m).is_ok_and(|ids| ids.iter().any(|id| is(id))),
            (None, None) => false,
        }
    }

    /// The logical ids of the functions the state machine `logical_id` invokes.
    pub fn state_machine_functions(&self, logical_id: &str) -> anyhow::Result<Vec<String>> {
        let machine = self.parse_state_machine(logical_id)?;
        machine.lambda_functions().iter().map(|arn| Ok(self.manifest.function_by_arn(arn)?.to_string())).collect()
    }

    fn parse_state_machine(&self, logical_id: &str) -> anyhow::Result<crate::states::StateMachine> {
        let definition = &self.manifest.state_machine(logical_id)?.definition;
        crate::states::StateMachine::parse(&definition.to_string()).with_context(|| format!("state machine {logical_id}"))
    }

    /// Plays the state machine `logical_id` on `input` as Step Functions runs it (its
    /// retries without their waits), invoking its Lambda tasks with this runner's invoker.
    pub async fn execute_state_machine(&self, logical_id: &str, input: Value) -> anyhow::Result<crate::states::Execution> {
        let machine = self.parse_state_machine(logical_id)?;
        for id in self.state_machine_functions(logical_id)? {
            self.invoker.check(&self.manifest, &id)?;
        }
        let tasks = RunnerTasks { runner: self };
        Ok(crate::states::execute(&machine, input, &tasks, &self.state_options).await)
    }

    /// [`Runner::execute_state_machine`], its output or its failure as an error.
    pub async fn start_execution(&self, logical_id: &str, input: Value) -> anyhow::Result<Value> {
        let execution = self.execute_state_machine(logical_id, input).await?;
        execution.output.map_err(|f| anyhow::anyhow!("state machine {logical_id} failed in state {}: {}: {}", f.state, f.error, f.cause))
    }
}

/// A state machine's Lambda tasks, invoked through the runner.
struct RunnerTasks<'a> {
    runner: &'a Runner,
}

impl crate::states::TaskInvoker for RunnerTasks<'_> {
    fn invoke<'a>(
        &'a self,
        function: &'a str,
        payload: Value,
    ) -> futures::future::BoxFuture<'a, Result<Value, crate::states::TaskFailure>> {
        Box::pin(async move {
            let failure = |e: anyhow::Error| crate::states::TaskFailure { error: "FunctionError".into(), cause: format!("{e:#}") };
            let id = self.runner.manifest.function_by_arn(function).map_err(failure)?;
            self.runner.invoker.invoke(&self.runner.manifest, id, payload).await.map_err(failure)
        })
    }
}

/// The EventBridge "Scheduled Event" payload.
pub fn scheduled_event(manifest: &Manifest, rule_arn: &str, time: DateTime<Utc>) -> Value {
    json!({
        "version": "0",
        "id": ariane_shared::identifiers::stable_id(&[rule_arn, &time.to_rfc3339()]),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": manifest.account_id,
        "time": time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": manifest.region,
        "resources": [rule_arn],
        "detail": {}
    })
}

/// Visible + in-flight + delayed messages of a queue.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> anyhow::Result<u64> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .with_context(|| format!("queue attributes of {url}"))?;
    Ok(out.attributes().map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum()).unwrap_or(0))
}
