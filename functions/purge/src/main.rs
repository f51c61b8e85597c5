use ariane_purge::{Purge, PurgeSummary};
use ariane_shared::ProcessEnv;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Config, the pepper, the embedded channel specs and the AWS adapters, once per cold start.
    let purge: Purge = Purge::from_env(&ProcessEnv).await?;
    let purge = &purge;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
        Ok::<PurgeSummary, Error>(purge.handle(event.payload).await?)
    }))
    .await
}
