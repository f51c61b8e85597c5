//! The SQL catalog segments run against: lake tables on S3 (through `object_store` with
//! the AWS SDK's credential chain), views every segment would otherwise rewrite, and the
//! run's timestamp. The same views over empty tables of the same schemas validate
//! segment files before deployment.

use std::sync::Arc;

use ariane_shared::lake;
use arrow::array::{RecordBatch, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials;
use chrono::{DateTime, Utc};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::CredentialProvider;

/// Partition columns of the events table (from the key layout).
pub fn event_partition_cols() -> Vec<(String, DataType)> {
    vec![("channel".to_string(), DataType::Utf8), ("event_date".to_string(), DataType::Utf8)]
}

/// The views over `raw_events`, `identity_links` and `run_context`.
///
/// `profile_links` keeps, for each identity key (a row's identifier set, the events'
/// `anchor_id`), its latest resolution: a later merge re-points it to the surviving
/// profile, an erasure to '' (the person's events leave every segment).
pub const VIEWS: &[(&str, &str)] = &[
    (
        "profile_links",
        "SELECT identifier_hash, profile_id FROM (
            SELECT identifier_hash, profile_id,
                   ROW_NUMBER() OVER (PARTITION BY identifier_hash ORDER BY resolved_at DESC, profile_id DESC) AS rn
            FROM identity_links) AS ranked
         WHERE rn = 1 AND profile_id <> ''",
    ),
    (
        "events",
        "SELECT l.profile_id, e.* FROM raw_events e
         JOIN profile_links l ON e.anchor_id = l.identifier_hash
         CROSS JOIN run_context r
         WHERE e.occurred_at <= r.run_at",
    ),
    (
        "orders",
        "SELECT profile_id, order_id, MIN(occurred_at) AS ordered_at,
                SUM(line_total_minor) AS amount_minor, COUNT(*) AS lines, MIN(channel) AS channel
         FROM events WHERE event_type = 'order_line' AND order_id IS NOT NULL
         GROUP BY profile_id, order_id",
    ),
];

fn run_context_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "run_at",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )]))
}

fn run_context_table(run_at: DateTime<Utc>) -> Result<MemTable> {
    let array = TimestampMicrosecondArray::from(vec![run_at.timestamp_micros()]).with_timezone("UTC");
    let batch = RecordBatch::try_new(run_context_schema(), vec![Arc::new(array)])?;
    MemTable::try_new(run_context_schema(), vec![vec![batch]])
}

async fn register_views(ctx: &SessionContext) -> Result<()> {
    for (name, sql) in VIEWS {
        ctx.sql(&format!("CREATE VIEW {name} AS {sql}")).await?;
    }
    Ok(())
}

/// A session with a bounded memory pool that spills to `scratch_dir`.
pub fn session(memory_limit_mb: usize, scratch_dir: &std::path::Path) -> Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(memory_limit_mb * 1024 * 1024, 1.0)
        .with_temp_file_path(scratch_dir)
        .build_arc()?;
    let config = SessionConfig::new().with_target_partitions(2).with_information_schema(true);
    Ok(SessionContext::new_with_config_rt(config, runtime))
}

/// Object-store credentials from the AWS SDK's credential chain (environment, Lambda's
/// role, profiles, SSO...), refreshed by the SDK when they expire.
#[derive(Debug)]
struct SdkCredentials(aws_credential_types::provider::SharedCredentialsProvider);

#[async_trait::async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let c = self.0.provide_credentials().await.map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        })?;
        Ok(Arc::new(AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        }))
    }
}

/// Registers the lake bucket as an object store of `ctx`, with the SDK's endpoint,
/// region and credential chain.
pub fn register_lake(ctx: &SessionContext, sdk: &SdkConfig, bucket: &str) -> Result<()> {
    let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
    if let Some(region) = sdk.region() {
        builder = builder.with_region(region.as_ref());
    }
    if let Some(endpoint) = sdk.endpoint_url() {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    if let Some(provider) = sdk.credentials_provider() {
        builder = builder.with_credentials(Arc::new(SdkCredentials(provider)));
    }
    let store = builder.build().map_err(|e| DataFusionError::External(Box::new(e)))?;
    let url = url_of(bucket)?;
    ctx.register_object_store(&url, Arc::new(store));
    Ok(())
}

fn url_of(bucket: &str) -> Result<url::Url> {
    url::Url::parse(&format!("s3://{bucket}")).map_err(|e| DataFusionError::External(Box::new(e)))
}

fn listing_table(
    ctx: &SessionContext,
    url: &str,
    schema: SchemaRef,
    partitions: Vec<(String, DataType)>,
) -> Result<Arc<ListingTable>> {
    let _ = ctx;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(partitions);
    let config = ListingTableConfig::new(ListingTableUrl::parse(url)?).with_listing_options(options).with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// Registers the lake tables, the run context and the views for a run at `run_at`.
pub async fn register_run(ctx: &SessionContext, bucket: &str, run_at: DateTime<Utc>) -> Result<()> {
    let events = listing_table(ctx, &format!("s3://{bucket}/{}", lake::events_prefix()), lake::events_schema(), event_partition_cols())?;
    ctx.register_table("raw_events", events)?;
    let links = listing_table(
        ctx,
        &format!("s3://{bucket}/{}", lake::links_prefix()),
        lake::links_schema(),
        vec![("resolved_date".to_string(), DataType::Utf8)],
    )?;
    ctx.register_table("identity_links", links)?;
    ctx.register_table("run_context", Arc::new(run_context_table(run_at)?))?;
    register_views(ctx).await
}

/// The same catalog over empty in-memory tables: for validating segment SQL offline.
pub async fn validation_session(run_at: DateTime<Utc>) -> Result<SessionContext> {
    let ctx = SessionContext::new();
    let mut events_fields: Vec<Field> = lake::events_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    events_fields.extend(event_partition_cols().into_iter().map(|(n, t)| Field::new(n, t, false)));
    let events_schema = Arc::new(Schema::new(events_fields));
    ctx.register_table("raw_events", Arc::new(MemTable::try_new(events_schema, vec![vec![]])?))?;
    let mut link_fields: Vec<Field> = lake::links_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    link_fields.push(Field::new("resolved_date", DataType::Utf8, false));
    ctx.register_table("identity_links", Arc::new(MemTable::try_new(Arc::new(Schema::new(link_fields)), vec![vec![]])?))?;
    ctx.register_table("run_context", Arc::new(run_context_table(run_at)?))?;
    register_views(&ctx).await?;
    Ok(ctx)
}
