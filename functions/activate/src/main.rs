use ariane_activate::Activate;
use ariane_shared::ProcessEnv;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let activate = Activate::from_env(&ProcessEnv).await?;
    let activate = &activate;
    // SQS batches from the activation queue, and the release schedule (EventBridge).
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        Ok::<serde_json::Value, Error>(activate.handle_value(event.payload).await?)
    }))
    .await
}
