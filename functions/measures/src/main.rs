use ariane_measures::Measures;
use ariane_shared::ProcessEnv;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Config, the embedded measure library and the AWS adapters (S3, DynamoDB,
    // DataFusion's S3 store), once per cold start.
    let measures: Measures = Measures::from_env(&ProcessEnv).await?;
    let measures = &measures;
    // The daily scheduled event (or a manual one with {"detail": {"run_at": "..."}}).
    lambda_runtime::run(service_fn(move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
        Ok::<_, Error>(measures.handle(event.payload).await?)
    }))
    .await
}
