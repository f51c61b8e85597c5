use ariane_profile_api::{DynamoDirectory, HttpRequest, ProfileApi};
use ariane_shared::ProcessEnv;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Config, the lake pepper, the token secret and the DynamoDB client, once per cold start.
    let api: ProfileApi<DynamoDirectory> = ProfileApi::from_env(&ProcessEnv).await?;
    let api = &api;
    // API Gateway HTTP API events (payload format 2.0).
    lambda_runtime::run(service_fn(move |event: LambdaEvent<HttpRequest>| async move { Ok::<_, Error>(api.handle(&event.payload).await) }))
        .await
}
