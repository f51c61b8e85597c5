use ariane_segments::handler::RunSummary;
use ariane_segments::Segments;
use ariane_shared::ProcessEnv;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let segments = Segments::from_env(&ProcessEnv).await?;
    let segments = &segments;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
        Ok::<RunSummary, Error>(segments.handle(event.payload).await?)
    }))
    .await
}
