//! Helpers for the workspace integration tests: each test starts its own moto server,
//! deploys `infra/template.yaml` to it, and runs the functions in process through the
//! local runner (so every test has fresh resources).

use ariane_local::receiver::Receiver;
use ariane_local::runner::Runner;
use ariane_local::LocalStack;

pub use ariane_ingest::pipeline::LedgerEntry;

/// A fresh local stack whose activation webhook points at a fresh receiver.
pub struct Harness {
    pub stack: LocalStack,
    pub receiver: Receiver,
    pub runner: Runner,
}

impl Harness {
    pub async fn start(stage: &str) -> anyhow::Result<Self> {
        init_tracing();
        let receiver = Receiver::start().await?;
        let stack = LocalStack::start(stage, &receiver.destination_params()).await?;
        let runner = stack.in_process_runner().await?;
        Ok(Harness { stack, receiver, runner })
    }

    /// All ledger entries in the lake.
    pub async fn ledger(&self) -> anyhow::Result<Vec<LedgerEntry>> {
        let mut out = Vec::new();
        for key in self.stack.lake_keys(ariane_shared::lake::ledger_prefix()).await? {
            out.push(serde_json::from_slice(&self.stack.lake_object(&key).await?)?);
        }
        Ok(out)
    }

    /// Sends a raw body to a queue of the stack (by logical id).
    pub async fn send_raw(&self, queue: &str, body: &str) -> anyhow::Result<()> {
        let url = &self.stack.manifest.queues[queue].url;
        self.stack.clients.sqs.send_message().queue_url(url).message_body(body).send().await?;
        Ok(())
    }

    /// Everything waiting on the queue at `url`, parsed as JSON and removed from it.
    pub async fn take_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> anyhow::Result<Vec<T>> {
        let sqs = &self.stack.clients.sqs;
        let mut out = Vec::new();
        loop {
            let got = sqs.receive_message().queue_url(url).max_number_of_messages(10).send().await?;
            let messages = got.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(out);
            }
            for m in messages {
                out.push(serde_json::from_str(m.body().unwrap_or_default())?);
                sqs.delete_message().queue_url(url).set_receipt_handle(m.receipt_handle).send().await?;
            }
        }
    }

    /// Messages waiting in the DLQ of a queue (by the main queue's logical id).
    pub async fn dlq_depth(&self, queue: &str) -> anyhow::Result<u64> {
        let dlq = self.stack.manifest.queues[queue].dlq_url.clone().ok_or_else(|| anyhow::anyhow!("{queue} has no DLQ"))?;
        ariane_local::runner::queue_depth(&self.stack.clients.sqs, &dlq).await
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// The report of segment `name` in a segments run's response.
pub fn segment_report<'a>(summary: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    summary["segments"]
        .as_array()
        .and_then(|s| s.iter().find(|r| r["segment"] == name))
        .unwrap_or_else(|| panic!("no report for segment {name} in {summary}"))
}

/// A profile as identity would have written it (its own item encoding), for tests of
/// what activation does with consents and contacts.
#[derive(Clone, Debug, Default)]
pub struct TestProfile {
    pub profile_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub push_token: Option<String>,
    pub country: Option<String>,
    pub postal_code: Option<String>,
    pub first_name: Option<String>,
    /// (`email` | `sms` | `push` | `ads`, granted)
    pub consents: Vec<(&'static str, bool)>,
}

impl TestProfile {
    pub fn new(profile_id: &str) -> Self {
        TestProfile { profile_id: profile_id.into(), ..Default::default() }
    }

    /// Writes the profile item (identity's `PROFILE#<pid>` encoding) to the profiles table.
    pub async fn put(&self, h: &Harness) -> anyhow::Result<()> {
        use ariane_identity::profile::{ConsentState, Doc, TraitValue};
        use ariane_identity::store::{to_attributes, Item, Key, ProfileItem};
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")?.with_timezone(&chrono::Utc);
        let tv = |v: &str| TraitValue { value: v.into(), at, source: "crm".into(), observation_id: "test".into() };
        let mut doc = Doc::default();
        for (kind, value) in [("email", &self.email), ("phone", &self.phone), ("push_token", &self.push_token)] {
            if let Some(v) = value {
                doc.identifiers.entry(kind.to_string()).or_default().insert(v.clone());
            }
        }
        for (name, value) in [
            ("email", &self.email),
            ("phone", &self.phone),
            ("country", &self.country),
            ("postal_code", &self.postal_code),
            ("first_name", &self.first_name),
        ] {
            if let Some(v) = value {
                doc.traits.insert(name.to_string(), tv(v));
            }
        }
        for (channel, granted) in &self.consents {
            doc.consents
                .insert(channel.to_string(), ConsentState { granted: *granted, at, source: "crm".into(), observation_id: "test".into() });
        }
        doc.channels.insert("crm".into());
        doc.first_seen = Some(at);
        let item = Item::Profile(ProfileItem {
            profile_id: self.profile_id.clone(),
            component: format!("c_{}", self.profile_id),
            doc,
            merged_from: vec![],
        });
        let attrs = to_attributes(&Key::profile(&self.profile_id), 1, &item);
        h.stack.clients.dynamodb.put_item().table_name(h.stack.manifest.output("ProfilesTableName")?).set_item(Some(attrs)).send().await?;
        Ok(())
    }
}

/// A segment change as the segments function sends it.
pub fn activation_request(
    segment: &str,
    profile_id: &str,
    change: ariane_shared::model::SegmentChange,
    payload: &[(&str, &str)],
) -> ariane_shared::model::ActivationRequest {
    ariane_shared::model::ActivationRequest {
        segment: segment.into(),
        run_id: "20261124T090000Z".into(),
        run_at: chrono::DateTime::parse_from_rfc3339("2026-11-24T09:00:00Z").expect("instant").with_timezone(&chrono::Utc),
        profile_id: profile_id.into(),
        change,
        key: Default::default(),
        payload: payload.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        attributes: Default::default(),
    }
}
