use ariane_segments::handler::RunSummary;
use ariane_segments::Segments;
use ariane_shared::ProcessEnv;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Config, the embedded library and the AWS adapters (S3, SQS, DynamoDB, DataFusion's
    // S3 store), once per cold start.
    let segments: Segments = Segments::from_env(&ProcessEnv).await?;
    let segments = &segments;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
        Ok::<RunSummary, Error>(segments.handle(event.payload).await?)
    }))
    .await
}
