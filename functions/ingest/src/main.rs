use ariane_ingest::Ingest;
use ariane_shared::ProcessEnv;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Configuration, the embedded channel specs and the ports' AWS adapters (S3 blobs, SQS
    // queue), built once per cold start.
    let ingest = Ingest::from_env(&ProcessEnv).await?;
    let ingest = &ingest;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(ingest.handle(event.payload).await)
    }))
    .await
}
