use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        // The time left at the start of an invocation is the function's timeout: a claim
        // lease it could outlast is refused before anything is claimed.
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default();
        activate.check_lease(Duration::from_millis(event.context.deadline.saturating_sub(now_ms)))?;
        Ok::<serde_json::Value, Error>(activate.handle_value(event.payload).await?)
    }))
    .await
}
