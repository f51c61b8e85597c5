use ariane_segments::Segments;
use ariane_shared::ProcessEnv;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Config, the embedded library and the AWS adapters (S3, SQS, DynamoDB, DataFusion's
    // S3 store), once per cold start.
    let segments: Segments = Segments::from_env(&ProcessEnv).await?;
    let segments = &segments;
    // A step of the segments state machine ({"step": ...}) or a scheduled event (the
    // whole run in this invocation).
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        Ok::<serde_json::Value, Error>(segments.invoke(event.payload).await?)
    }))
    .await
}
