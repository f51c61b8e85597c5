//! The function over the in-memory identity store and lake of the journey's tests.

use super::*;
use crate::journey::tests::{rows, world, CARD, CUSTOMER, EMAIL, PHONE};
use serde_json::json;

async fn function() -> JourneyFunction<ariane_identity::store::MemStore> {
    let (resolver, lake) = world(&rows()).await;
    JourneyFunction { resolver, lake }
}

#[tokio::test]
async fn an_invocation_answers_the_journey_without_any_clear_identifier() {
    let f = function().await;
    let response = f.handle_value(json!({"kind": "email", "value": "Marie.Dupont@X.fr"})).await.unwrap();
    assert!(response["profile_id"].as_str().is_some_and(|p| p.starts_with("p_")), "{response}");
    let channels: Vec<&str> = response["channels"].as_array().unwrap().iter().filter_map(|c| c.as_str()).collect();
    assert!(channels.len() >= 3, "every channel of the person: {channels:?}");
    assert!(!response["timeline"].as_array().unwrap().is_empty(), "{response}");
    assert!(response["identifier"]["hash_prefix"].as_str().is_some_and(|h| h.len() == 8), "{response}");
    let text = response.to_string().to_lowercase();
    for clear in [EMAIL, PHONE, CUSTOMER, CARD, "0612345678"] {
        assert!(!text.contains(&clear.to_lowercase()), "{clear} in the response: {text}");
    }
}

#[tokio::test]
async fn an_identifier_of_no_one_is_an_answer_and_a_bad_request_an_error() {
    let f = function().await;
    let none = f.handle_value(json!({"kind": "email", "value": "nobody@x.fr"})).await.unwrap();
    assert_eq!(none["no_profile"], "never_observed", "{none}");
    assert!(none["identifier"].as_str().is_some_and(|i| i.starts_with("email#")), "{none}");
    assert!(!none.to_string().contains("nobody"), "{none}");

    let err = f.handle_value(json!({"kind": "mail", "value": "x"})).await.unwrap_err();
    assert!(matches!(err, InvokeError::Request(_)), "{err:?}");
    assert!(err.to_string().contains("\"kind\": \"email\""), "{err}");
    let err = f.handle_value(json!({"journey": {"kind": "email", "value": EMAIL}})).await.unwrap_err();
    assert!(matches!(err, InvokeError::Request(_)), "{err:?}");
    let err = f.handle_value(json!({"kind": "phone", "value": "12"})).await.unwrap_err();
    assert!(matches!(err, InvokeError::Journey(JourneyError::InvalidIdentifier { .. })), "{err:?}");
    assert!(!err.to_string().contains("12"), "the value is not repeated: {err}");
}
