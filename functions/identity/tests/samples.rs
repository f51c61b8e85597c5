//! The sample events in `events/` agree with each other: the profile the activate sample
//! targets is the one the identity sample creates (profile ids are deterministic, so a
//! change to the identity key or the profile id scheme must update the samples too).

use aws_lambda_events::event::sqs::SqsEvent;

use ariane_identity::resolver::Resolver;
use ariane_identity::rules::Rules;
use ariane_identity::store::MemStore;
use ariane_shared::model::ObservationBatch;

fn sample_bodies(name: &str) -> Vec<serde_json::Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let event: SqsEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    event.records.iter().map(|r| serde_json::from_str(r.body.as_deref().unwrap_or_default()).unwrap()).collect()
}

#[tokio::test]
async fn the_activate_sample_targets_the_profile_the_identity_sample_creates() {
    let resolver = Resolver::new(MemStore::default(), Rules::embedded().unwrap());
    let mut created = Vec::new();
    for body in sample_bodies("identity-observations.json") {
        let batch: ObservationBatch = serde_json::from_value(body).unwrap();
        let outcome = resolver.resolve_batch(&batch.observations).await.unwrap();
        created.extend(outcome.links.into_iter().filter_map(|l| l.profile_id));
    }
    created.dedup();
    assert_eq!(created.len(), 1, "the identity sample creates one profile: {created:?}");
    for body in sample_bodies("activate-segment-entered.json") {
        assert_eq!(body["profile_id"], created[0], "events/activate-segment-entered.json targets another profile");
    }
}
