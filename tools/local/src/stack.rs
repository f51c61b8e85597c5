//! Deploying `infra/template.yaml` to moto and holding what a local run needs.

use std::path::Path;

use anyhow::{bail, Context};
use ariane_shared::aws::Clients;

use crate::manifest::Manifest;
use crate::moto::MotoServer;
use crate::runner::{Invoker, Runner};

/// Runs `infra/local/stack.py deploy` against `endpoint` and reads the manifest.
pub async fn deploy(root: &Path, endpoint: &str, stage: &str, params: &[(String, String)]) -> anyhow::Result<Manifest> {
    let python = root.join(".venv/bin/python");
    let port = endpoint.rsplit(':').next().unwrap_or("0");
    let out = root.join(".local").join(format!("stack-{stage}-{port}.json"));
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(root.join("infra/local/stack.py"))
        .args(["deploy", "--endpoint", endpoint, "--stage", stage, "--out"])
        .arg(&out)
        .current_dir(root);
    for (k, v) in params {
        cmd.arg("--param").arg(format!("{k}={v}"));
    }
    let output = cmd.output().await.with_context(|| format!("cannot run {}", python.display()))?;
    if !output.status.success() {
        bail!(
            "deploying the template to moto failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = std::fs::read_to_string(&out).with_context(|| format!("read {}", out.display()))?;
    let manifest: Manifest = serde_json::from_str(&text).with_context(|| format!("parse {}", out.display()))?;
    use_development_pepper(&manifest).await?;
    Ok(manifest)
}

/// Puts [`DEVELOPMENT_PEPPER`] into the stack's lake pepper secret (which the template has
/// Secrets Manager generate): every local stack, the tests' own computations of lake
/// hashes (in-process, with the development pepper) and the functions (which read the
/// secret, in this process or under `cargo lambda watch`) then agree.
///
/// [`DEVELOPMENT_PEPPER`]: ariane_shared::identifiers::DEVELOPMENT_PEPPER
async fn use_development_pepper(manifest: &Manifest) -> anyhow::Result<()> {
    let arn = manifest.output("LakePepperSecretArn")?;
    let config = ariane_shared::aws::sdk_config(&manifest.client_env()).await;
    aws_sdk_secretsmanager::Client::new(&config)
        .put_secret_value()
        .secret_id(arn)
        .secret_string(ariane_shared::identifiers::DEVELOPMENT_PEPPER)
        .send()
        .await
        .with_context(|| format!("put the development pepper into {arn}"))?;
    Ok(())
}

/// A running local stack: moto, the deployed template's manifest, and clients.
pub struct LocalStack {
    pub manifest: Manifest,
    pub clients: Clients,
    pub moto: MotoServer,
}

impl LocalStack {
    /// Starts moto and deploys the template with `Stage=stage` and `params`.
    pub async fn start(stage: &str, params: &[(String, String)]) -> anyhow::Result<Self> {
        let root = crate::repo_root();
        let moto = MotoServer::start(&root).await?;
        // The collector's local sources, unless the caller configures its own.
        let mut params = params.to_vec();
        if !params.iter().any(|(k, _)| k == "CollectSources") {
            params.push(("CollectSources".into(), local_collect_sources()));
        }
        // The profile API's local server client, likewise.
        if !params.iter().any(|(k, _)| k == "ProfileApiKeys") {
            params.push(("ProfileApiKeys".into(), local_profile_api_keys()));
        }
        let manifest = deploy(&root, &moto.endpoint, stage, &params).await?;
        let clients = Clients::from_env(&manifest.client_env()).await;
        Ok(LocalStack { manifest, clients, moto })
    }

    /// The collector's URL path for batches (`POST`), served by [`Runner::http`] and
    /// [`crate::gateway::Gateway`].
    pub const COLLECT_PATH: &'static str = "/v1/batch";

    /// The profile API's URL path (`GET ?cookie_id=...`), served the same way.
    pub const PROFILE_PATH: &'static str = "/v1/profile";

    /// The secret browser tokens of the profile API are signed with (`ProfileTokenSecret`),
    /// as the site's backend reads it.
    pub async fn profile_token_secret(&self) -> anyhow::Result<Vec<u8>> {
        let arn = self.manifest.outputs.get("ProfileTokenSecretArn").context("no ProfileTokenSecretArn output")?;
        Ok(ariane_shared::aws::read_secret(&self.clients.config, arn).await?)
    }

    /// A runner invoking the functions in this process.
    pub async fn in_process_runner(&self) -> anyhow::Result<Runner> {
        Runner::new(self.manifest.clone(), self.clients.sqs.clone(), Invoker::in_process(&self.manifest).await?)
    }

    pub fn landing_bucket(&self) -> &str {
        self.manifest.outputs.get("LandingBucketName").map(String::as_str).unwrap_or_default()
    }

    pub fn lake_bucket(&self) -> &str {
        self.manifest.outputs.get("LakeBucketName").map(String::as_str).unwrap_or_default()
    }

    /// Uploads a local file (or bytes) to the landing bucket under `key`.
    pub async fn upload(&self, key: &str, body: Vec<u8>) -> anyhow::Result<()> {
        self.clients
            .s3
            .put_object()
            .bucket(self.landing_bucket())
            .key(key)
            .body(body.into())
            .send()
            .await
            .with_context(|| format!("upload {key}"))?;
        Ok(())
    }

    /// Number of messages (visible + in flight) in a queue, by logical id.
    pub async fn queue_depth(&self, logical_id: &str) -> anyhow::Result<u64> {
        let q = self.manifest.queues.get(logical_id).with_context(|| format!("queue {logical_id}"))?;
        crate::runner::queue_depth(&self.clients.sqs, &q.url).await
    }

    /// All keys under a prefix of the lake bucket.
    pub async fn lake_keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        list_keys(&self.clients.s3, self.lake_bucket(), prefix).await
    }

    pub async fn lake_object(&self, key: &str) -> anyhow::Result<bytes::Bytes> {
        let out = self.clients.s3.get_object().bucket(self.lake_bucket()).key(key).send().await.with_context(|| key.to_string())?;
        Ok(out.body.collect().await?.into_bytes())
    }

    /// A top-level attribute of a profile item (`email`, `phone`, `email_opt_in`, ...) as text.
    pub async fn profile_attribute(&self, profile_id: &str, name: &str) -> anyhow::Result<Option<String>> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let out = self
            .clients
            .dynamodb
            .get_item()
            .table_name(self.manifest.output("ProfilesTableName")?)
            .key("pk", AttributeValue::S(format!("PROFILE#{profile_id}")))
            .key("sk", AttributeValue::S("PROFILE".into()))
            .send()
            .await?;
        Ok(out.item().and_then(|i| i.get(name)).and_then(|v| match v {
            AttributeValue::S(s) => Some(s.clone()),
            AttributeValue::Bool(b) => Some(b.to_string()),
            AttributeValue::N(n) => Some(n.clone()),
            _ => None,
        }))
    }

    /// Every activation record in the lake (at least once: see `ActivationRecord`).
    pub async fn activation_records(&self) -> anyhow::Result<Vec<ariane_shared::lake::ActivationRecord>> {
        let mut out = Vec::new();
        for key in self.lake_keys(ariane_shared::lake::activations_prefix()).await? {
            let batches = ariane_shared::lake::read_parquet_bytes(self.lake_object(&key).await?)?;
            out.extend(ariane_shared::lake::activations_from_batches(&batches)?);
        }
        Ok(out)
    }

    /// All keys under a prefix of the landing bucket.
    pub async fn landing_keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        list_keys(&self.clients.s3, self.landing_bucket(), prefix).await
    }

    /// The profile whose top-level `email` is `email`, if any (a scan: tests only).
    pub async fn profile_id_by_email(&self, email: &str) -> anyhow::Result<Option<String>> {
        let mut found = None;
        self.scan_profiles(Some(email), |item| {
            found = item.get("profile_id").and_then(|v| v.as_s().ok()).cloned();
            found.is_none()
        })
        .await?;
        Ok(found)
    }

    /// Number of profiles in the profiles table.
    pub async fn profile_count(&self) -> anyhow::Result<usize> {
        let mut count = 0;
        self.scan_profiles(None, |_| {
            count += 1;
            true
        })
        .await?;
        Ok(count)
    }

    /// Scans the profile items (`sk = PROFILE`), those with this `email` only when given,
    /// page by page, until `visit` returns `false`.
    async fn scan_profiles(
        &self,
        email: Option<&str>,
        mut visit: impl FnMut(&std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> bool,
    ) -> anyhow::Result<()> {
        use aws_sdk_dynamodb::types::AttributeValue;
        let table = self.manifest.output("ProfilesTableName")?;
        let mut start = None;
        loop {
            let scan =
                self.clients.dynamodb.scan().table_name(table).expression_attribute_values(":p", AttributeValue::S("PROFILE".into()));
            let scan = match email {
                Some(e) => scan.filter_expression("sk = :p AND email = :e").expression_attribute_values(":e", AttributeValue::S(e.into())),
                None => scan.filter_expression("sk = :p"),
            };
            let out = scan.set_exclusive_start_key(start).send().await?;
            for item in out.items() {
                if !visit(item) {
                    return Ok(());
                }
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(());
            }
        }
    }
}

pub async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = s3.list_objects_v2().bucket(bucket).prefix(prefix).set_continuation_token(token).send().await?;
        keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        token = out.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return Ok(keys);
        }
    }
}

/// The write key of the local stack's website source (`local-web`, channel web) and app
/// source (`local-app`, channel app): local only, never a deployment's.
pub const LOCAL_WRITE_KEY: &str = "local-write-key-web";
pub const LOCAL_APP_WRITE_KEY: &str = "local-write-key-app";
/// The origin the local website source accepts.
pub const LOCAL_ORIGIN: &str = "http://127.0.0.1:8080";

/// The key of the local stack's profile API client (`local-site`, for [`LOCAL_ORIGIN`]):
/// local only, never a deployment's.
pub const LOCAL_PROFILE_KEY: &str = "local-profile-key";

/// `ProfileApiKeys` of the local stack: the local client, by the SHA-256 of its key.
pub fn local_profile_api_keys() -> String {
    let hash = ariane_shared::identifiers::sha256_hex_bytes(LOCAL_PROFILE_KEY.as_bytes());
    serde_json::json!([{ "client": "local-site", "key_sha256": hash, "origins": [LOCAL_ORIGIN] }]).to_string()
}

/// `CollectSources` of the local stack: the two local sources, by the SHA-256 of their keys.
pub fn local_collect_sources() -> String {
    let hash = |k: &str| ariane_shared::identifiers::sha256_hex_bytes(k.as_bytes());
    serde_json::json!([
        { "source": "local-web", "channel": "web", "key_sha256": hash(LOCAL_WRITE_KEY), "origins": [LOCAL_ORIGIN] },
        { "source": "local-app", "channel": "app", "key_sha256": hash(LOCAL_APP_WRITE_KEY), "origins": [] },
    ])
    .to_string()
}
