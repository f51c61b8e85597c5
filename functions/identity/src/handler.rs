//! The Lambda handler: each SQS message carries a batch of observations; a message
//! fails alone (reported in `batchItemFailures`) when one of its observations fails.
//!
//! [`IdentityWith`] is generic over its ports, the item store (DynamoDB) and the blob
//! store (the lake's links and history); [`Identity`] is the function as deployed.

use std::sync::Arc;

use ariane_shared::adapters::s3::S3Blobs;
use ariane_shared::adapters::sqs::SqsQueue;
use ariane_shared::aws::Clients;
use ariane_shared::identifiers::{normalized, stable_id, Identifier, IdentifierError};
use ariane_shared::lake::{self, IdentityLink};
use ariane_shared::model::{ObservationBatch, ProfileActivity};
use ariane_shared::ports::{BlobError, BlobStore, Queue, SendError};
use ariane_shared::EnvSource;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use chrono::Utc;

use crate::config::IdentityConfig;
use crate::resolver::{Outcome, Resolver, Stats};
use crate::rules::Rules;
use crate::store::{DynamoStore, ItemStore};

/// The identity function over an item store `S` and a blob store `B`.
pub struct IdentityWith<S, B> {
    pub config: IdentityConfig,
    pub resolver: Resolver<S>,
    pub blobs: B,
    /// Where `ProfileErased` events go (`config.events_queue_url`); none: not announced.
    pub events: Option<Arc<dyn Queue>>,
    /// Where the observations' recent activity goes (`config.activation_queue_url`),
    /// resolved to profiles; none: not forwarded.
    pub activation: Option<Arc<dyn Queue>>,
}

/// The identity function as deployed: DynamoDB and S3.
pub type Identity = IdentityWith<DynamoStore, S3Blobs>;

/// An identifier of an erasure, repair or lookup request in its stored form (e-mails
/// lowercased, phones in E.164 read in the rules' region, tokens trimmed: the shared
/// normalisation ingest applies), so the request finds the person whatever way the
/// operator typed it.
pub fn normalize_request(id: &Identifier, rules: &Rules) -> Result<Identifier, IdentifierError> {
    normalized(id.kind, &id.value, rules.phone_region)
}

/// A message body on the identity queue: a batch of observations, an erasure request
/// (`{"erase": {"kind": "email", "value": "marie@x.fr"}}`) or a repair
/// (`{"exclude": {"kind": "phone", "value": "+33612345678"}}`: the identifier stops
/// linking and the profiles it wrongly merged split again).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum IdentityMessage {
    Observations(ObservationBatch),
    Erase {
        erase: Identifier,
    },
    Exclude {
        exclude: Identifier,
    },
    /// From the purge: other people's evidence forgets an erased value
    /// (`{"forget": {"hashes": [...], "evidence": [...]}}`).
    Forget {
        forget: ariane_shared::erasure::ForgetRequest,
    },
}

pub use ariane_shared::erasure::{ErasureReport, ERASURE_NOT_REACHED};

/// Counts of one batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    pub resolve: Stats,
    pub erasures: u64,
    pub exclusions: u64,
    pub failed_messages: u64,
}

impl Identity {
    /// Reads the configuration and the rules (failing fast with the variable or the rule
    /// named) and builds the AWS clients once.
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, ariane_shared::ConfigError> {
        let config = IdentityConfig::from_env(env)?;
        let rules =
            Rules::embedded().map_err(|e| ariane_shared::ConfigError::Invalid { name: "config/identity.toml", reason: e.to_string() })?;
        let clients = Clients::from_env(env).await;
        // Identity keys in the lake are keyed with the deployment's pepper.
        ariane_shared::aws::install_lake_pepper(env, &clients.config).await?;
        let store = DynamoStore { client: clients.dynamodb.clone(), table: config.profiles_table.clone() };
        let sqs: Arc<dyn Queue> = Arc::new(SqsQueue::new(clients.sqs.clone()));
        let events = config.events_queue_url.as_ref().map(|_| sqs.clone());
        let activation = config.activation_queue_url.as_ref().map(|_| sqs.clone());
        let mut identity = IdentityWith::new(config, Resolver::new(store, rules), S3Blobs::new(clients.s3.clone()));
        identity.events = events;
        identity.activation = activation;
        Ok(identity)
    }
}

impl<S: ItemStore, B: BlobStore> IdentityWith<S, B> {
    pub fn new(config: IdentityConfig, resolver: Resolver<S>, blobs: B) -> Self {
        IdentityWith { config, resolver, blobs, events: None, activation: None }
    }

    /// Sends `ProfileErased` for the person `id` resolves to, before the erasure: a
    /// retry after a failed erasure announces it again (the event's `id` lets consumers
    /// drop the duplicate); a retry after a successful one finds no profile and sends
    /// nothing more. Carries the profile id only (destinations know the person by it from
    /// `ActivationSent` and `AudienceEntered`).
    async fn announce_erasure(&self, id: &Identifier) -> Result<bool, HandlerError> {
        let (Some(queue), Some(url)) = (&self.events, &self.config.events_queue_url) else { return Ok(false) };
        let Some(profile_id) = self.resolver.lookup(id).await? else { return Ok(false) };
        let event = serde_json::json!({
            "type": "ProfileErased",
            "id": stable_id(&["profile-erased", &profile_id]),
            "profile_id": profile_id,
            "requested_at": Utc::now(),
        });
        queue.send_all(url, &[event.to_string()]).await?;
        Ok(true)
    }

    /// Writes the erasure's report. A retry after an erasure done by an earlier attempt
    /// (whose report was not written) writes what it can still tell: the links.
    async fn write_erasure_report(&self, id: &Identifier, out: &Outcome, announced: bool) -> Result<(), HandlerError> {
        let request = self.resolver.rules.id_ref(id);
        let key = lake::erasure_report_key(request.kind.as_str(), &request.hash);
        let erased = out.history.iter().find(|h| h.action == "erased");
        if erased.is_none() && self.blobs.get(&self.config.lake_bucket, &key).await?.is_some() {
            return Ok(());
        }
        let report = ErasureReport {
            request: ariane_shared::erasure::HashedIdentifier { kind: request.kind, hash: request.hash },
            completed_at: Utc::now(),
            profile_id: erased.and_then(|h| h.profile_id.clone()),
            evidence_removed: out.links.iter().filter(|l| l.profile_id.is_none()).count(),
            identifiers_suppressed: erased.map(|h| h.identifiers.len()),
            other_profiles_cleared: 0,
            lake_links_rewritten: out.links.len(),
            announced,
            purge: ariane_shared::erasure::PurgeState::Pending { targets: out.erased.clone().unwrap_or_default() },
            not_reached: ERASURE_NOT_REACHED.iter().map(|s| s.to_string()).collect(),
        };
        tracing::info!(
            profile_id = report.profile_id.as_deref().unwrap_or(""),
            evidence = report.evidence_removed,
            suppressed = report.identifiers_suppressed.unwrap_or(0),
            "erased"
        );
        let body = serde_json::to_vec_pretty(&report)?;
        self.blobs.put(&self.config.lake_bucket, &key, Bytes::from(body), "application/json").await?;
        Ok(())
    }

    fn normalize(&self, id: &Identifier) -> Result<Identifier, HandlerError> {
        Ok(normalize_request(id, &self.resolver.rules)?)
    }

    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        self.handle_with_stats(event).await.0
    }

    /// Resolves all the observation messages of the batch together (fewer, larger
    /// requests); if that fails, message by message, so only the failing one is retried
    /// (and reaches the DLQ after maxReceiveCount).
    pub async fn handle_with_stats(&self, event: SqsEvent) -> (SqsBatchResponse, BatchStats) {
        let mut response = SqsBatchResponse::default();
        let mut stats = BatchStats::default();
        let mut parsed: Vec<(String, IdentityMessage)> = Vec::new();
        let mut redelivered = false;
        for message in event.records {
            let id = message.message_id.clone().unwrap_or_default();
            // SQS counts receives: a message seen before may have been resolved by an
            // attempt whose lake write failed.
            redelivered |= message.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n > 1);
            match serde_json::from_str::<IdentityMessage>(message.body.as_deref().unwrap_or_default()) {
                Ok(m) => parsed.push((id, m)),
                Err(err) => {
                    tracing::error!(message_id = %id, error = %err, "message body is neither an observation batch, an erasure nor an exclusion");
                    stats.failed_messages += 1;
                    response.add_failure(id);
                }
            }
        }
        let mut observations = Vec::new();
        let mut obs_messages = Vec::new();
        for (id, m) in &parsed {
            match m {
                IdentityMessage::Observations(b) => {
                    observations.extend(b.observations.iter().cloned());
                    obs_messages.push((id.clone(), b));
                }
                IdentityMessage::Erase { erase } => {
                    let result = match self.normalize(erase) {
                        Ok(id) => match self.announce_erasure(&id).await {
                            Ok(announced) => match self.resolver.erase(&id).await {
                                Ok(out) => match self.write_lake(&out).await {
                                    Ok(()) => self.write_erasure_report(&id, &out, announced).await,
                                    Err(e) => Err(e),
                                },
                                Err(e) => Err(HandlerError::Resolve(e)),
                            },
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(()) => stats.erasures += 1,
                        Err(err) => {
                            tracing::error!(message_id = %id, error = %err, "erasure failed");
                            stats.failed_messages += 1;
                            response.add_failure(id.clone());
                        }
                    }
                }
                IdentityMessage::Forget { forget } => match self.resolver.forget(forget).await {
                    Ok(out) => {
                        tracing::info!(evidence = forget.evidence.len(), forgotten = out.stats.forgotten, "erased value forgotten");
                        stats.resolve.add(&out.stats);
                    }
                    Err(err) => {
                        tracing::error!(message_id = %id, error = %err, "forgetting an erased value failed");
                        stats.failed_messages += 1;
                        response.add_failure(id.clone());
                    }
                },
                IdentityMessage::Exclude { exclude } => {
                    let result = match self.normalize(exclude) {
                        Ok(id) => match self.resolver.exclude(&id).await {
                            Ok(out) => {
                                stats.resolve.add(&out.stats);
                                self.write_lake(&out).await
                            }
                            Err(e) => Err(HandlerError::Resolve(e)),
                        },
                        Err(e) => Err(e),
                    };
                    match result {
                        Ok(()) => stats.exclusions += 1,
                        Err(err) => {
                            tracing::error!(message_id = %id, error = %err, "exclusion (repair) failed");
                            stats.failed_messages += 1;
                            response.add_failure(id.clone());
                        }
                    }
                }
            }
        }
        if !obs_messages.is_empty() {
            match self.resolve_and_write(&observations, redelivered).await {
                Ok(s) => stats.resolve.add(&s),
                Err(err) => {
                    tracing::warn!(error = %err, "batch failed; resolving message by message");
                    for (id, batch) in obs_messages {
                        // The batch attempt may have committed this message's evidence.
                        match self.resolve_and_write(&batch.observations, true).await {
                            Ok(s) => stats.resolve.add(&s),
                            Err(err) => {
                                tracing::error!(message_id = %id, error = %err, "message failed");
                                stats.failed_messages += 1;
                                response.add_failure(id);
                            }
                        }
                    }
                }
            }
        }
        let s = &stats.resolve;
        ariane_shared::metrics::emit(
            "identity",
            &[
                ("Observations", s.observations as f64),
                ("ObservationsUnchanged", s.unchanged as f64),
                ("EvidenceEnriched", s.enriched as f64),
                ("EvidenceStructural", s.structural as f64),
                ("Merges", s.merges as f64),
                ("Splits", s.splits as f64),
                ("Suppressed", s.suppressed as f64),
                ("Retries", s.retries as f64),
                ("LargeOperations", s.large_operations as f64),
                ("Erasures", stats.erasures as f64),
                ("Exclusions", stats.exclusions as f64),
            ],
        );
        (response, stats)
    }

    /// Resolves and writes the lake. Profiles are committed before the lake write; if
    /// that write fails the message is retried, and the retry (a no-op in the store)
    /// reports no change: so an attempt that may follow such a failure (`relink`: a
    /// redelivery, or the message-by-message pass after a failed batch) also writes the
    /// current link of every evidence it carries. Links are idempotent in the lake (the
    /// latest per identity key wins), so writing one again changes nothing.
    async fn resolve_and_write(&self, observations: &[ariane_shared::model::Observation], relink: bool) -> Result<Stats, HandlerError> {
        let mut out = self.resolver.resolve_batch(observations).await?;
        if relink {
            let reported: std::collections::BTreeSet<String> = out.links.iter().map(|l| l.identity_key.clone()).collect();
            let current = self.resolver.current_links(observations).await?;
            out.links.extend(current.into_iter().filter(|l| !reported.contains(&l.identity_key)));
        }
        self.write_lake(&out).await?;
        self.forward_activity(observations).await?;
        Ok(out.stats)
    }

    /// Sends the observations' recent activity to activation, each with the profile its
    /// evidence now belongs to (one batched read of evidence and components). After the
    /// resolution, so a cart and a store purchase of the same person name the same
    /// profile. A retry sends again: activation keys everything by the event's id.
    async fn forward_activity(&self, observations: &[ariane_shared::model::Observation]) -> Result<usize, HandlerError> {
        let (Some(queue), Some(url)) = (&self.activation, &self.config.activation_queue_url) else { return Ok(0) };
        let with: Vec<(&ariane_shared::model::Observation, String)> = observations
            .iter()
            .filter(|o| !o.activity.is_empty())
            .filter_map(|o| ariane_shared::identifiers::identity_key(&o.identifiers).map(|k| (o, k)))
            .collect();
        if with.is_empty() {
            return Ok(0);
        }
        let mut keys: Vec<String> = with.iter().map(|(_, k)| k.clone()).collect();
        keys.sort_unstable();
        keys.dedup();
        let profiles = self.resolver.profiles_of_evidence(&keys).await?;
        let mut bodies = Vec::new();
        for (o, key) in &with {
            // Erased, or only shared identifiers: no person to react to.
            let Some(Some(profile_id)) = profiles.get(key) else { continue };
            for a in &o.activity {
                let activity = ProfileActivity {
                    profile_id: profile_id.clone(),
                    channel: o.channel.clone(),
                    event_id: a.event_id.clone(),
                    event_type: a.event_type.clone(),
                    occurred_at: a.occurred_at,
                    attributes: a.attributes.clone(),
                };
                bodies.push(serde_json::json!({ "activity": activity }).to_string());
            }
        }
        queue.send_all(url, &bodies).await?;
        Ok(bodies.len())
    }

    /// Links (identity key → profile, empty when erased) and history, one object each
    /// per call; keys derive from the content, so a redelivery rewrites the same objects.
    async fn write_lake(&self, out: &Outcome) -> Result<(), HandlerError> {
        let date = Utc::now().format("%Y-%m-%d").to_string();
        if !out.links.is_empty() {
            let links: Vec<IdentityLink> = out
                .links
                .iter()
                .map(|l| IdentityLink {
                    identifier_hash: l.identity_key.clone(),
                    profile_id: l.profile_id.clone().unwrap_or_default(),
                    resolved_at: l.at,
                    observation_id: l.observation_id.clone(),
                })
                .collect();
            let mut parts: Vec<String> = links.iter().map(|l| format!("{}={}", l.identifier_hash, l.profile_id)).collect();
            parts.sort_unstable();
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let key = lake::links_key(&date, &stable_id(&refs));
            let batch = lake::links_batch(&links)?;
            let bytes = lake::parquet_bytes(lake::links_schema(), &[batch])?;
            self.blobs.put(&self.config.lake_bucket, &key, Bytes::from(bytes), "application/vnd.apache.parquet").await?;
        }
        if !out.history.is_empty() {
            let mut body = Vec::new();
            for h in &out.history {
                serde_json::to_writer(&mut body, h)?;
                body.push(b'\n');
            }
            let key = format!("identity/history/date={date}/{}.jsonl", &ariane_shared::identifiers::sha256_hex_bytes(&body)[..32]);
            self.blobs.put(&self.config.lake_bucket, &key, Bytes::from(body), "application/x-ndjson").await?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("cannot encode history: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Resolve(#[from] crate::resolver::ResolveError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("the request's identifier is not usable: {0}")]
    Identifier(#[from] IdentifierError),
    #[error("cannot encode links: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("cannot encode links: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("cannot announce the erasure or forward activity: {0}")]
    Announce(#[from] SendError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use ariane_shared::adapters::memory::MemBlobs;
    use ariane_shared::identifiers::IdentifierKind as K;
    use ariane_shared::model::Observation;
    use aws_lambda_events::event::sqs::SqsMessage;
    use chrono::TimeZone;

    fn identity() -> IdentityWith<MemStore, MemBlobs> {
        let config = IdentityConfig {
            profiles_table: "profiles".into(),
            lake_bucket: "lake".into(),
            events_queue_url: None,
            activation_queue_url: None,
        };
        IdentityWith::new(config, Resolver::new(MemStore::default(), Rules::embedded().unwrap()), MemBlobs::new())
    }

    fn event(bodies: &[(&str, String)]) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = bodies
            .iter()
            .map(|(id, body)| {
                let mut m = SqsMessage::default();
                m.message_id = Some(id.to_string());
                m.body = Some(body.clone());
                m
            })
            .collect();
        e
    }

    fn observations(ids: &[(K, &str)]) -> String {
        let o = Observation {
            observation_id: "o1".into(),
            channel: "crm".into(),
            source_key: "crm/x.csv".into(),
            source_line: 2,
            observed_at: Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap(),
            identifiers: ids.iter().map(|(k, v)| Identifier::new(*k, *v)).collect(),
            traits: Default::default(),
            consents: vec![],
            activity: vec![],
        };
        serde_json::to_string(&IdentityMessage::Observations(ObservationBatch { observations: vec![o] })).unwrap()
    }

    fn failures(r: &SqsBatchResponse) -> Vec<String> {
        r.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect()
    }

    #[tokio::test]
    async fn observations_resolve_and_their_links_reach_the_lake() {
        let f = identity();
        let (response, stats) =
            f.handle_with_stats(event(&[("m1", observations(&[(K::Email, "marie@x.fr"), (K::CustomerId, "C1")]))])).await;
        assert!(failures(&response).is_empty());
        assert_eq!(stats.resolve.structural, 1);
        let links = f.blobs.list("lake", lake::links_prefix()).await.unwrap();
        assert_eq!(links.len(), 1, "{links:?}");
        let batches = lake::read_parquet_bytes(f.blobs.get("lake", &links[0]).await.unwrap().unwrap()).unwrap();
        let pid = lake::string_values(&batches, "profile_id").unwrap();
        assert_eq!(pid, vec![f.resolver.lookup(&Identifier::new(K::CustomerId, "C1")).await.unwrap().unwrap()]);
    }

    /// An erasure typed the way an operator would (case, spaces, a national phone number)
    /// finds the person: the request goes through the same normalisation as ingest.
    #[tokio::test]
    async fn erasure_requests_are_normalised_like_the_exports() {
        let f = identity();
        f.handle(event(&[("m1", observations(&[(K::Email, "marie@x.fr"), (K::Phone, "+33612345678")]))])).await;
        assert!(f.resolver.lookup(&Identifier::new(K::Phone, "+33612345678")).await.unwrap().is_some());
        let erase = r#"{"erase": {"kind": "phone", "value": " 06 12 34 56 78 "}}"#.to_string();
        let (response, stats) = f.handle_with_stats(event(&[("m2", erase)])).await;
        assert!(failures(&response).is_empty());
        assert_eq!(stats.erasures, 1);
        assert_eq!(f.resolver.lookup(&Identifier::new(K::Email, "marie@x.fr")).await.unwrap(), None, "erased");
        // A value that is not an identifier at all fails the message (it reaches the DLQ).
        let bad = r#"{"erase": {"kind": "phone", "value": "not a phone"}}"#.to_string();
        let (response, stats) = f.handle_with_stats(event(&[("m3", bad)])).await;
        assert_eq!(failures(&response), vec!["m3"]);
        assert_eq!(stats.failed_messages, 1);
    }

    /// Recent activity travels on: a web cart (cookie and e-mail) and a store purchase
    /// (loyalty card and the same e-mail) of one person reach activation with the same
    /// profile id; an observation without activity sends nothing; a redelivery sends
    /// the same bodies again (activation keys them by event id).
    #[tokio::test]
    async fn recent_activity_is_forwarded_with_the_profile() {
        use ariane_shared::adapters::memory::MemQueue;
        use ariane_shared::model::Activity;
        let mut f = identity();
        let queue = Arc::new(MemQueue::new());
        f.config.activation_queue_url = Some("activation".into());
        f.activation = Some(queue.clone());
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
        let obs = |id: &str, channel: &str, ids: &[(K, &str)], activity: Option<(&str, &str)>| Observation {
            observation_id: id.into(),
            channel: channel.into(),
            source_key: format!("{channel}/x"),
            source_line: 1,
            observed_at: at,
            identifiers: ids.iter().map(|(k, v)| Identifier::new(*k, *v)).collect(),
            traits: Default::default(),
            consents: vec![],
            activity: activity
                .map(|(event_id, t)| Activity {
                    event_id: event_id.into(),
                    event_type: t.into(),
                    occurred_at: at,
                    attributes: Default::default(),
                })
                .into_iter()
                .collect(),
        };
        let batch = ObservationBatch {
            observations: vec![
                obs("o1", "web", &[(K::CookieId, "ck-1"), (K::Email, "lea@x.fr")], Some(("e1", "add_to_cart"))),
                obs("o2", "pos", &[(K::LoyaltyCard, "L1"), (K::Email, "lea@x.fr")], Some(("e2", "store_purchase"))),
                obs("o3", "crm", &[(K::Email, "hugo@x.fr")], None),
            ],
        };
        let body = serde_json::to_string(&IdentityMessage::Observations(batch)).unwrap();
        let response = f.handle(event(&[("m1", body.clone())])).await;
        assert!(failures(&response).is_empty());
        let pid = f.resolver.lookup(&Identifier::new(K::Email, "lea@x.fr")).await.unwrap().unwrap();
        let sent = queue.sent("activation");
        let activities: Vec<ProfileActivity> = sent
            .iter()
            .map(|b| serde_json::from_value(serde_json::from_str::<serde_json::Value>(b).unwrap()["activity"].clone()).unwrap())
            .collect();
        let mut types: Vec<(&str, &str)> = activities.iter().map(|a| (a.event_type.as_str(), a.profile_id.as_str())).collect();
        types.sort();
        assert_eq!(types, vec![("add_to_cart", pid.as_str()), ("store_purchase", pid.as_str())]);
        f.handle(event(&[("m1", body)])).await;
        assert_eq!(queue.sent("activation").len(), 4, "a redelivery forwards again");
    }

    /// An erasure announces `ProfileErased` (the profile id only) on the events queue
    /// before erasing; a retry after a failed erasure announces it again with the same id,
    /// a repeated request after a done one announces nothing.
    #[tokio::test]
    async fn an_erasure_is_announced_to_the_destinations() {
        use ariane_shared::adapters::memory::MemQueue;
        let mut f = identity();
        let queue = Arc::new(MemQueue::new());
        f.config.events_queue_url = Some("events".into());
        f.events = Some(queue.clone());
        f.handle(event(&[("m1", observations(&[(K::Email, "marie@x.fr")]))])).await;
        let pid = f.resolver.lookup(&Identifier::new(K::Email, "marie@x.fr")).await.unwrap().unwrap();
        let erase = r#"{"erase": {"kind": "email", "value": "Marie@X.fr"}}"#.to_string();
        // The lake write of the erasure fails: the message is retried.
        f.blobs.faults.fail("blob.put", 1);
        assert_eq!(failures(&f.handle(event(&[("m2", erase.clone())])).await), vec!["m2"]);
        assert!(failures(&f.handle(event(&[("m2", erase.clone())])).await).is_empty());
        assert!(failures(&f.handle(event(&[("m3", erase)])).await).is_empty());
        let sent: Vec<serde_json::Value> = queue.sent("events").iter().map(|b| serde_json::from_str(b).unwrap()).collect();
        assert_eq!(sent.len(), 1, "announced before the first attempt, which erased; none after: {sent:?}");
        assert_eq!((sent[0]["type"].as_str(), sent[0]["profile_id"].as_str()), (Some("ProfileErased"), Some(pid.as_str())));
        assert!(sent[0].to_string().find("marie").is_none(), "no identifier in the event");
        // The report, written by the retry (the first attempt erased, then failed): what
        // it can still tell.
        let blobs = &f.blobs;
        let report = move |value: &'static str| async move {
            let key = lake::erasure_report_key("email", &ariane_shared::identifiers::identifier_hash(K::Email, value));
            let bytes = blobs.get("lake", &key).await.unwrap().expect("report");
            assert!(!String::from_utf8(bytes.to_vec()).unwrap().contains(value), "no clear value in the report");
            serde_json::from_slice::<ErasureReport>(&bytes).unwrap()
        };
        let r = report("marie@x.fr").await;
        assert_eq!((r.profile_id, r.evidence_removed, r.identifiers_suppressed), (None, 1, None));
        // A queue that refuses: the erasure waits for the announcement (retried).
        f.handle(event(&[("m4", observations(&[(K::Email, "paul@x.fr")]))])).await;
        queue.faults.fail("queue.send", 1);
        let erase = r#"{"erase": {"kind": "email", "value": "paul@x.fr"}}"#.to_string();
        assert_eq!(failures(&f.handle(event(&[("m5", erase.clone())])).await), vec!["m5"]);
        assert!(f.resolver.lookup(&Identifier::new(K::Email, "paul@x.fr")).await.unwrap().is_some(), "not erased yet");
        assert!(failures(&f.handle(event(&[("m5", erase)])).await).is_empty());
        assert_eq!(queue.sent("events").len(), 2);
        assert!(f.resolver.lookup(&Identifier::new(K::Email, "paul@x.fr")).await.unwrap().is_none());
        let r = report("paul@x.fr").await;
        assert!(r.profile_id.is_some() && r.announced, "{r:?}");
        assert_eq!((r.evidence_removed, r.identifiers_suppressed, r.lake_links_rewritten), (1, Some(1), 1));
    }

    /// The lake write fails after the profiles were written (in the batch attempt and
    /// in the message's own): the message is reported failed, and its redelivery (a
    /// no-op in the store) still writes the links.
    #[tokio::test]
    async fn a_failed_lake_write_fails_the_message_and_the_retry_writes_the_links() {
        let f = identity();
        f.blobs.faults.fail("blob.put", 2);
        let body = observations(&[(K::Email, "paul@x.fr")]);
        let response = f.handle(event(&[("m1", body.clone())])).await;
        assert_eq!(failures(&response), vec!["m1"]);
        assert!(f.blobs.list("lake", lake::links_prefix()).await.unwrap().is_empty());
        assert!(f.resolver.lookup(&Identifier::new(K::Email, "paul@x.fr")).await.unwrap().is_some(), "the store has him");
        // SQS delivers it again (ApproximateReceiveCount 2).
        let mut again = event(&[("m1", body)]);
        again.records[0].attributes.insert("ApproximateReceiveCount".into(), "2".into());
        let response = f.handle(again).await;
        assert!(failures(&response).is_empty());
        let links = f.blobs.list("lake", lake::links_prefix()).await.unwrap();
        assert_eq!(links.len(), 1);
        let batches = lake::read_parquet_bytes(f.blobs.get("lake", &links[0]).await.unwrap().unwrap()).unwrap();
        let pid = f.resolver.lookup(&Identifier::new(K::Email, "paul@x.fr")).await.unwrap().unwrap();
        assert_eq!(lake::string_values(&batches, "profile_id").unwrap(), vec![pid]);
    }

    /// A batch whose lake write fails is retried message by message in the same
    /// invocation: those attempts find nothing new in the store and must still write the
    /// links the failed attempt did not.
    #[tokio::test]
    async fn the_message_by_message_pass_writes_the_links_the_batch_attempt_lost() {
        let f = identity();
        f.blobs.faults.fail("blob.put", 1);
        let response =
            f.handle(event(&[("m1", observations(&[(K::Email, "a@x.fr")])), ("m2", observations(&[(K::Email, "b@x.fr")]))])).await;
        assert!(failures(&response).is_empty(), "each message succeeded on its own");
        let mut linked = Vec::new();
        for key in f.blobs.list("lake", lake::links_prefix()).await.unwrap() {
            linked.extend(
                lake::string_values(&lake::read_parquet_bytes(f.blobs.get("lake", &key).await.unwrap().unwrap()).unwrap(), "profile_id")
                    .unwrap(),
            );
        }
        linked.sort();
        let mut want = vec![
            f.resolver.lookup(&Identifier::new(K::Email, "a@x.fr")).await.unwrap().unwrap(),
            f.resolver.lookup(&Identifier::new(K::Email, "b@x.fr")).await.unwrap().unwrap(),
        ];
        want.sort();
        assert_eq!(linked, want);
    }
}
