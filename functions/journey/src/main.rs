use ariane_journey::{JourneyRequest, Journeys};
use ariane_shared::ProcessEnv;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Config, the identity rules, the pepper and the AWS adapters, once per cold start.
    let journeys: Journeys = Journeys::from_env(&ProcessEnv).await?;
    let journeys = &journeys;
    // An operator's direct invocation: {"kind": "email", "value": "..."}.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<JourneyRequest>| async move {
        Ok::<_, Error>(journeys.handle(&event.payload).await?)
    }))
    .await
}
