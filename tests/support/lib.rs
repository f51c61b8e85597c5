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

    /// All ingest ledger entries in the lake (not its content index).
    pub async fn ledger(&self) -> anyhow::Result<Vec<LedgerEntry>> {
        let mut out = Vec::new();
        for key in self
            .stack
            .lake_keys(ariane_shared::lake::ledger_prefix())
            .await?
            .into_iter()
            .filter(|k| ariane_shared::lake::is_ledger_entry_key(k))
        {
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

/// The claim-token contract every activation ledger keeps (run on the in-memory ledger and
/// on DynamoDB in moto): a holder whose lease ran out, and whose send another instance
/// claimed since, can neither complete, release nor defer it; the new holder can, and a
/// retried `complete` with its token after a success is a no-op.
pub async fn claim_token_contract(ledger: &dyn ariane_shared::ports::ActivationLedger, key: &str) -> anyhow::Result<()> {
    use ariane_shared::ports::{Claim, Effects, LedgerError, SendStatus};
    use std::time::Duration;
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")?.with_timezone(&chrono::Utc);
    let lease = Duration::from_secs(10);
    let Claim::Acquired(old) = ledger.claim(key, lease, t0).await? else { anyhow::bail!("a new send is claimable") };
    assert_eq!(ledger.claim(key, lease, t0 + chrono::Duration::seconds(5)).await?, Claim::InFlight);
    // The first holder's lease runs out; a second instance claims the send.
    let Claim::Acquired(new) = ledger.claim(key, lease, t0 + chrono::Duration::seconds(11)).await? else {
        anyhow::bail!("an expired claim is claimable")
    };
    assert_ne!(old, new, "every claim has its own token");
    let lost = |r: Result<(), LedgerError>, what: &str| match r {
        Err(LedgerError::ClaimLost { .. }) => Ok(()),
        other => Err(anyhow::anyhow!("{what} with a stale token: {other:?}")),
    };
    let effects = Effects::default();
    let later = t0 + chrono::Duration::seconds(12);
    lost(ledger.complete(key, &old, SendStatus::Sent, &effects, "stale", later).await, "complete")?;
    lost(ledger.release(key, &old, "stale").await, "release")?;
    lost(ledger.defer(key, &old, later + chrono::Duration::hours(8), "{}", later).await, "defer")?;
    assert!(ledger.due_deferrals(later + chrono::Duration::days(1), 2).await?.is_empty(), "a refused defer leaves no deferral item");
    assert_eq!(ledger.claim(key, lease, later).await?, Claim::InFlight, "the new holder still holds it");

    ledger.complete(key, &new, SendStatus::Sent, &effects, "sent", later).await?;
    ledger.complete(key, &new, SendStatus::Sent, &effects, "sent", later).await.map_err(|e| anyhow::anyhow!("a retried complete: {e}"))?;
    assert!(matches!(ledger.claim(key, lease, later).await?, Claim::Done(_)));
    lost(ledger.release(key, &new, "after completion").await, "release after completion")?;

    // Defer and release with the right token work, and a deferred send is claimable again.
    let other = format!("{key}-deferred");
    let Claim::Acquired(tok) = ledger.claim(&other, lease, t0).await? else { anyhow::bail!("claimable") };
    ledger.defer(&other, &tok, t0 + chrono::Duration::hours(1), "{}", t0).await?;
    lost(ledger.complete(&other, &tok, SendStatus::Sent, &effects, "parked", t0).await, "complete of a deferred send")?;
    assert_eq!(ledger.due_deferrals(t0 + chrono::Duration::hours(2), 1).await?.len(), 1);
    let Claim::Acquired(again) = ledger.claim(&other, lease, t0 + chrono::Duration::hours(2)).await? else { anyhow::bail!("claimable") };
    ledger.release(&other, &again, "destination down").await?;
    let Claim::Acquired(_) = ledger.claim(&other, lease, t0 + chrono::Duration::hours(2)).await? else {
        anyhow::bail!("a released claim is claimable at once")
    };
    Ok(())
}
