//! AWS client construction. Honours `AWS_ENDPOINT_URL` (the local moto stack) and then
//! switches S3 to path-style addressing, which moto and any custom endpoint need.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::Credentials;

use crate::config::EnvSource;

/// The shared SDK configuration: region, endpoint, credentials.
///
/// Inside Lambda (`env` is the process environment) the SDK's default chains are used.
/// With an explicit [`crate::MapEnv`] the endpoint, region and keys come from the map, so
/// one process can talk to several local stacks at once.
pub async fn sdk_config(env: &dyn EnvSource) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(endpoint) = env.get("AWS_ENDPOINT_URL") {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = env.get("AWS_REGION").or_else(|| env.get("AWS_DEFAULT_REGION")) {
        loader = loader.region(Region::new(region));
    }
    if !env.is_process_env() {
        if let (Some(key), Some(secret)) = (env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")) {
            let creds = Credentials::new(key, secret, env.get("AWS_SESSION_TOKEN"), None, "ariane-env");
            loader = loader.credentials_provider(creds);
        }
    }
    loader.load().await
}

/// The clients a function may need, built once at cold start.
#[derive(Clone, Debug)]
pub struct Clients {
    pub config: SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl Clients {
    pub fn new(config: SdkConfig) -> Self {
        Clients { s3: s3_client(&config), sqs: aws_sdk_sqs::Client::new(&config), dynamodb: aws_sdk_dynamodb::Client::new(&config), config }
    }

    pub async fn from_env(env: &dyn EnvSource) -> Self {
        Self::new(sdk_config(env).await)
    }
}

/// An S3 client, path-style when an endpoint override is configured.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let builder = aws_sdk_s3::config::Builder::from(config).force_path_style(config.endpoint_url().is_some());
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// Why a secret could not be read at cold start.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret {arn}: {source}")]
    Read {
        arn: String,
        #[source]
        source: crate::error::AwsError,
    },
    #[error("secret {arn} has no SecretString")]
    Empty { arn: String },
}

/// A secret's `SecretString`, as bytes (read once at cold start).
pub async fn read_secret(config: &SdkConfig, arn: &str) -> Result<Vec<u8>, SecretError> {
    use crate::error::SdkResultExt;
    let sm = aws_sdk_secretsmanager::Client::new(config);
    let out = sm
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .aws("secretsmanager:GetSecretValue")
        .map_err(|source| SecretError::Read { arn: arn.to_string(), source })?;
    match out.secret_string() {
        Some(s) if !s.is_empty() => Ok(s.as_bytes().to_vec()),
        _ => Err(SecretError::Empty { arn: arn.to_string() }),
    }
}

/// Reads the lake pepper from the secret named by `LAKE_PEPPER_SECRET_ARN` and installs
/// it for this process ([`crate::identifiers::install_pepper`]): the functions that hash
/// identifiers for the lake (ingest, identity) refuse to start without it.
pub async fn install_lake_pepper(env: &dyn EnvSource, config: &SdkConfig) -> Result<(), crate::ConfigError> {
    let name = "LAKE_PEPPER_SECRET_ARN";
    let arn = env.require(name)?;
    let invalid = |reason: String| crate::ConfigError::Invalid { name, reason };
    let bytes = read_secret(config, &arn).await.map_err(|e| invalid(e.to_string()))?;
    let pepper = crate::identifiers::Pepper::new(bytes).map_err(|e| invalid(e.to_string()))?;
    crate::identifiers::install_pepper(pepper).map_err(|e| invalid(e.to_string()))
}
