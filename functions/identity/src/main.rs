use ariane_identity::Identity;
use ariane_shared::ProcessEnv;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let identity = Identity::from_env(&ProcessEnv).await?;
    let identity = &identity;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(identity.handle(event.payload).await)
    }))
    .await
}
