use ariane_collect::Collector;
use ariane_shared::ProcessEnv;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Configuration and the ports' AWS adapters (SQS queue, S3 blobs), built once per
    // cold start. HTTP API requests and SQS micro-batches reach the same function.
    let collector = Collector::from_env(&ProcessEnv).await?;
    let collector = &collector;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        Ok::<serde_json::Value, Error>(collector.handle_value(event.payload).await?)
    }))
    .await
}
