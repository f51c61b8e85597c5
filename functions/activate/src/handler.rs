//! The Lambda handler: segment changes from the activation queue become campaign sends,
//! audience rows and events; a schedule releases the sends deferred by quiet hours.
//!
//! For each campaign triggered by a request's segment (`docs/activation.md`):
//!
//! 1. **holdout**: a deterministic hash of (campaign, profile) puts `holdout_percent` of
//!    the audience in the holdout group, recorded but never contacted;
//! 2. **claim** the send in the ledger (a duplicate re-emits the recorded effects);
//! 3. **profile** re-read through the profile reader (a strongly consistent DynamoDB read
//!    in Lambda): erased people get nothing;
//! 4. **channel** by the campaign's policy: the first (or every, for `all`) channel with an
//!    identifier and a granted consent;
//! 5. **quiet hours** of that channel in the person's time zone: the send is deferred to
//!    the first allowed minute;
//! 6. **pressure**: the cross-channel frequency cap and the campaign's cooldown, reserved
//!    atomically in the ledger;
//! 7. **send** (signed webhook, retried), then complete the ledger with the effects.
//!
//! Effects (activation records, audience rows, outbound events) are written once per
//! invocation; if that fails, the messages that produced them are retried and re-emit
//! them from the ledger.
//!
//! The handler ([`ActivateWith`]) is generic over its ports ([`crate::ports`]): the ledger,
//! the profile reader, the queue, blob storage and the webhook destinations. [`Activate`]
//! is the AWS wiring `main.rs` runs; `tests/decide.rs` runs the same decisions in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ariane_shared::adapters::metered::Meter;
use ariane_shared::aws::Clients;
use ariane_shared::identifiers::stable_id;
use ariane_shared::lake::{self, ActivationRecord};
use ariane_shared::model::{ActivationRequest, ProfileActivity, SegmentChange};
use ariane_shared::ports::{
    ActivationLedger, AudienceRow, BlobError, BlobStore, BreakerState, Claim, ClaimToken, Effects, LedgerError, PressureEntry,
    PressureRules, ProfileReadError, ProfileReader, Queue, Reservation, SendError, SendStatus, MAX_QUEUE_DELAY,
};
use ariane_shared::EnvSource;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::audience::{audience_rows, render_csv, HashedRow, Platform, UnknownPlatform};
use crate::campaign::{Campaign, CampaignError, Channel, CheckContext, Policy};
use crate::config::ActivateConfig;
use crate::holdout::in_holdout;
use crate::ports::{AwsPorts, PortSet, Ports};
use crate::profile::{Profile, Unusable};
use crate::rules::{Rules, RulesError};
use crate::webhook::{deliver, lock, RetryPolicy, WebhookError};

/// Attempts of a `complete` (throttles, timeouts) before giving up: about 3 s in all.
const COMPLETE_ATTEMPTS: u32 = 6;
const COMPLETE_BACKOFF: ariane_shared::backoff::Backoff = ariane_shared::backoff::Backoff::new(std::time::Duration::from_millis(100), 5);

/// Where "now" comes from: the system clock in Lambda; a settable clock in tests and the
/// local demo, which replay a day of quiet hours in seconds.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    System,
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    pub fn manual(at: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(Mutex::new(at)))
    }
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(t) => t.lock().map(|t| *t).unwrap_or_else(|p| *p.into_inner()),
        }
    }
    /// Sets a manual clock (no effect on the system clock).
    pub fn set(&self, at: DateTime<Utc>) {
        if let Clock::Manual(t) = self {
            match t.lock() {
                Ok(mut g) => *g = at,
                Err(p) => *p.into_inner() = at,
            }
        }
    }
}

/// The function over its ports (`P`: [`AwsPorts`] in Lambda, `MemPorts` in unit tests).
pub struct ActivateWith<P: Ports> {
    pub config: ActivateConfig,
    pub rules: Rules,
    pub campaigns: Vec<Campaign>,
    pub ledger: P::Ledger,
    pub profiles: P::Profiles,
    pub queue: P::Queue,
    pub blobs: P::Blobs,
    pub webhooks: P::Webhooks,
    /// Attempts of each webhook send within one invocation, and the waits between them.
    pub retry: RetryPolicy,
    pub clock: Clock,
    /// The meter the ledger, profiles, queue and blobs count into.
    pub meter: Arc<Meter>,
    /// Webhook POST attempts (the meter counts the AWS requests only).
    pub webhook_posts: AtomicU64,
    /// The destinations' breaker states as last read or written, and when.
    breakers: Mutex<BTreeMap<String, (BreakerState, std::time::Instant)>>,
}

/// The function as Lambda runs it: DynamoDB, S3, SQS and HTTP destinations.
pub type Activate = ActivateWith<AwsPorts>;

/// A send deferred by quiet hours, as re-queued by the release schedule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeferredSend {
    pub campaign: String,
    /// `message` (one channel chosen by the policy) or `message:<channel>` (policy `all`).
    pub slot: String,
    pub request: ActivationRequest,
}

/// An event-triggered campaign's decision, scheduled for the end of its wait.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TriggeredSend {
    pub campaign: String,
    /// `segment` = `event:<type>`, `run_id` = the event's id, `run_at` = when it happened.
    pub request: ActivationRequest,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum QueueMessage {
    Deferred {
        deferred: DeferredSend,
        /// Set by the release when it sends a timer ahead with a queue delay: a message
        /// received before it (a clock a second behind) is put back, never decided early.
        #[serde(default)]
        due: Option<DateTime<Utc>>,
    },
    Activity {
        activity: ProfileActivity,
    },
    Triggered {
        triggered: TriggeredSend,
        #[serde(default)]
        due: Option<DateTime<Utc>>,
    },
    Request(ActivationRequest),
}

/// How far ahead each release looks: the period of its schedule (`rate(1 minute)` in the
/// template). A timer due within it is sent at once with an SQS delay of the time left,
/// so it is decided at its due second instead of at the first tick after it.
pub const RELEASE_LOOKAHEAD: Duration = Duration::seconds(60);

/// The queue message of a timer released ahead, marked with its due time (a message that
/// is not a JSON object goes as it is: its consumer reports it).
fn held_until(message: &str, due: DateTime<Utc>) -> String {
    match serde_json::from_str::<serde_json::Value>(message) {
        Ok(serde_json::Value::Object(mut fields)) => {
            fields.insert("due".into(), serde_json::Value::String(due.to_rfc3339()));
            serde_json::Value::Object(fields).to_string()
        }
        _ => message.to_string(),
    }
}

/// How late after its due time a triggered campaign may still be scheduled (an event
/// that reached the pipeline hours after it happened, through a file export): a cart
/// reminder much later than the campaign says is not the campaign the marketer wrote.
pub const TRIGGER_LATE_LIMIT: Duration = Duration::hours(6);

#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("message body is not an activation request: {0}")]
    Body(#[source] serde_json::Error),
    #[error("the Lambda event is neither an SQS batch nor a schedule event: {0}")]
    Event(#[source] serde_json::Error),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Profile(#[from] ProfileReadError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("another instance is deciding send {0}; retry later")]
    InFlight(String),
    /// The destination's circuit breaker is open: the message waits on the queue.
    #[error("destination {destination} is paused by its circuit breaker until {until}")]
    DestinationPaused { destination: String, until: DateTime<Utc> },
    /// A timer received before its due time (released ahead): it waits on the queue.
    #[error("the timer is due at {due}")]
    NotYetDue { due: DateTime<Utc> },
    /// The destination accepted the message but the ledger could not record it, even
    /// after retries. The claim is kept (never released after a 2xx): until its lease
    /// ends a redelivery finds the send in flight, and a re-post after that carries the
    /// same `Idempotency-Key` for the destination to drop.
    #[error("send {send_key} was delivered but cannot be recorded: {source}")]
    Unrecorded {
        send_key: String,
        #[source]
        source: LedgerError,
    },
    /// `CLAIM_LEASE_SECONDS` must outlast an invocation, or a send still being decided
    /// could be claimed (and posted) by a second instance.
    #[error(
        "CLAIM_LEASE_SECONDS is {lease_s} s but this invocation may run {budget_s} s: the claim lease must be longer than the function's timeout"
    )]
    LeaseTooShort { lease_s: u64, budget_s: u64 },
    #[error("a deferred send names campaign {0:?}, which is not deployed")]
    UnknownCampaign(String),
    #[error("cannot write the effects: {0}")]
    Effects(#[from] EffectsError),
}

impl ActivateError {
    /// When a message that failed this way may be decided: it waits on the queue until
    /// then instead of being retried (a paused destination, a timer received early).
    fn waits_until(&self) -> Option<DateTime<Utc>> {
        match self {
            ActivateError::DestinationPaused { until, .. } => Some(*until),
            ActivateError::NotYetDue { due } => Some(*due),
            _ => None,
        }
    }
}

/// Effects that cannot be encoded for the lake.
#[derive(Debug, thiserror::Error)]
pub enum EffectsError {
    #[error("activation records as Arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("activation records as Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("audience rows: {0}")]
    Platform(#[from] UnknownPlatform),
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Config(#[from] ariane_shared::ConfigError),
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("invalid campaign: {0}")]
    Campaign(#[from] CampaignError),
    #[error("{file}: destination {destination:?} has no URL in WEBHOOK_DESTINATIONS")]
    NoUrl { file: String, destination: String },
    #[error("the webhook signing key: {0}")]
    Secret(#[from] ariane_shared::aws::SecretError),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// What one send slot is: the policy's one channel, or one channel of policy `all`.
fn slots(campaign: &Campaign) -> Vec<String> {
    match campaign.policy {
        Policy::All => campaign.order.iter().map(|c| format!("message:{c}")).collect(),
        Policy::Ordered | Policy::PreferredFirst => vec!["message".to_string()],
    }
}

/// Fetches the signing key from Secrets Manager (`SecretString`).
async fn signing_secret(clients: &Clients, arn: &str) -> Result<Vec<u8>, BuildError> {
    Ok(ariane_shared::aws::read_secret(&clients.config, arn).await?)
}

/// A batch's outcome counts (logged and emitted as metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub messages: u64,
    pub failed: u64,
    /// Put back on the queue to wait for a destination whose breaker is open.
    pub paused: u64,
    pub outcomes: BTreeMap<String, u64>,
}

/// The release schedule's summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSummary {
    pub released: usize,
    /// Of those, the ones due later within the lookahead, sent with a queue delay.
    #[serde(default)]
    pub ahead: usize,
    pub at: Option<DateTime<Utc>>,
}

impl Activate {
    /// The function as `main.rs` runs it: configuration from the environment, the
    /// embedded rules and campaigns, the signing key from Secrets Manager, the AWS
    /// adapters, the system clock.
    pub async fn from_env(env: &dyn EnvSource) -> Result<Self, BuildError> {
        let config = ActivateConfig::from_env(env)?;
        let rules = Rules::embedded()?;
        let campaigns = Campaign::library()?;
        let clients = Clients::from_env(env).await;
        let secret = signing_secret(&clients, &config.webhook_secret_arn).await?;
        Self::new(clients, config, rules, campaigns, secret, Clock::System)
    }

    /// The AWS-wired function over explicit rules, campaigns, signing key and clock
    /// (integration tests and the bench).
    pub fn new(
        clients: Clients,
        config: ActivateConfig,
        rules: Rules,
        campaigns: Vec<Campaign>,
        secret: Vec<u8>,
        clock: Clock,
    ) -> Result<Self, BuildError> {
        let ports = AwsPorts::wire(&clients, &config, secret)?;
        Self::with_ports(ports, config, rules, campaigns, clock)
    }
}

impl<P: Ports> ActivateWith<P> {
    /// The function over any wiring of its ports. The campaigns are checked against the
    /// rules' destinations and every destination must have a URL (the segment library is
    /// checked by `make validate`, which knows it).
    pub fn with_ports(
        ports: PortSet<P>,
        config: ActivateConfig,
        rules: Rules,
        campaigns: Vec<Campaign>,
        clock: Clock,
    ) -> Result<Self, BuildError> {
        let segments: BTreeMap<String, Vec<String>> = campaigns.iter().map(|c| (c.segment.clone(), c.payload.clone())).collect();
        let ctx = CheckContext { segments: &segments, destinations: &rules.destinations };
        if let Some(e) = crate::campaign::check_library(&campaigns, &ctx).into_iter().next() {
            return Err(e.into());
        }
        for c in &campaigns {
            for m in c.messages.values() {
                if !config.destinations.contains_key(&m.destination) {
                    return Err(BuildError::NoUrl { file: c.file.clone(), destination: m.destination.clone() });
                }
            }
        }
        let retry = RetryPolicy { attempts: config.webhook_attempts, ..RetryPolicy::default() };
        let PortSet { ledger, profiles, queue, blobs, webhooks, meter } = ports;
        Ok(ActivateWith {
            config,
            rules,
            campaigns,
            ledger,
            profiles,
            queue,
            blobs,
            webhooks,
            retry,
            clock,
            meter,
            webhook_posts: AtomicU64::new(0),
            breakers: Mutex::new(BTreeMap::new()),
        })
    }

    /// Dispatches a raw Lambda event: SQS records, or the release schedule.
    pub async fn handle_value(&self, event: serde_json::Value) -> Result<serde_json::Value, ActivateError> {
        if event.get("Records").is_some() {
            let sqs: SqsEvent = serde_json::from_value(event).map_err(ActivateError::Event)?;
            serde_json::to_value(self.handle(sqs).await).map_err(ActivateError::Event)
        } else {
            let eb: EventBridgeEvent<serde_json::Value> = serde_json::from_value(event).map_err(ActivateError::Event)?;
            serde_json::to_value(self.release(eb).await?).map_err(ActivateError::Event)
        }
    }

    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        let now = self.clock.now();
        let work = event.records.into_iter().map(|message| {
            let id = message.message_id.clone().unwrap_or_default();
            let span = tracing::info_span!("message", message_id = %id);
            async move {
                let body = message.body.unwrap_or_default();
                let result = self.process(&body, now).await;
                (id, body, result)
            }
            .instrument(span)
        });
        let results = futures::future::join_all(work).await;
        let mut response = SqsBatchResponse::default();
        let mut counts = Counts::default();
        let mut effects = Effects::default();
        let mut producers = Vec::new();
        for (id, body, result) in results {
            counts.messages += 1;
            match result {
                Ok(e) => {
                    for r in &e.records {
                        *counts.outcomes.entry(r.outcome.clone()).or_default() += 1;
                    }
                    if !e.is_empty() {
                        producers.push(id);
                    }
                    effects.extend(e);
                }
                Err(err) => match err.waits_until() {
                    // Waits on the queue (a new message, a fresh receive count): a
                    // destination down for hours does not push its backlog into the DLQ,
                    // and a timer is not decided before its time.
                    Some(until) => {
                        let delay = (until - now).to_std().unwrap_or_default().clamp(std::time::Duration::from_secs(1), MAX_QUEUE_DELAY);
                        match self.queue.send_delayed(&self.config.activation_queue_url, &body, delay).await {
                            Ok(()) => {
                                tracing::warn!(message_id = %id, reason = %err, delay_s = delay.as_secs(), "message put back to wait");
                                counts.paused += 1;
                            }
                            Err(send) => {
                                tracing::error!(message_id = %id, reason = %err, error = %send, "the message cannot be put back to wait: retried");
                                counts.failed += 1;
                                response.add_failure(id);
                            }
                        }
                    }
                    None => {
                        tracing::error!(message_id = %id, error = %err, "activation failed");
                        counts.failed += 1;
                        response.add_failure(id);
                    }
                },
            }
        }
        if let Err(err) = self.write_effects(&effects, now).await {
            tracing::error!(error = %err, "cannot write the batch's effects: its messages are retried");
            for id in producers {
                counts.failed += 1;
                response.add_failure(id);
            }
        }
        let mut metrics: Vec<(&str, f64)> =
            vec![("Messages", counts.messages as f64), ("Failed", counts.failed as f64), ("Paused", counts.paused as f64)];
        let names: Vec<(String, f64)> = counts.outcomes.iter().map(|(k, v)| (format!("Outcome_{k}"), *v as f64)).collect();
        metrics.extend(names.iter().map(|(k, v)| (k.as_str(), *v)));
        ariane_shared::metrics::emit("activate", &metrics);
        response
    }

    async fn process(&self, body: &str, now: DateTime<Utc>) -> Result<Effects, ActivateError> {
        match serde_json::from_str::<QueueMessage>(body).map_err(ActivateError::Body)? {
            QueueMessage::Request(request) => self.process_request(&request, None, now).await,
            QueueMessage::Activity { activity } => {
                self.activity(&activity, now).await?;
                Ok(Effects::default())
            }
            QueueMessage::Triggered { due: Some(due), .. } | QueueMessage::Deferred { due: Some(due), .. } if due > now => {
                Err(ActivateError::NotYetDue { due })
            }
            QueueMessage::Triggered { triggered, .. } => {
                let Some(campaign) = self.campaigns.iter().find(|c| c.name == triggered.campaign) else {
                    return Err(ActivateError::UnknownCampaign(triggered.campaign));
                };
                self.campaign(campaign, &triggered.request, None, now).await
            }
            QueueMessage::Deferred { deferred, .. } => {
                if !self.campaigns.iter().any(|c| c.name == deferred.campaign) {
                    return Err(ActivateError::UnknownCampaign(deferred.campaign));
                }
                self.process_request(&deferred.request, Some((&deferred.campaign, &deferred.slot)), now).await
            }
        }
    }

    /// A person's real-time activity (forwarded by identity): noted for the `unless` of
    /// the campaigns waiting on them, and, for each campaign it triggers, the decision is
    /// scheduled at the end of the wait (one item per campaign and event: a replay
    /// writes the same item, and the decision itself is claimed once).
    pub async fn activity(&self, a: &ProfileActivity, now: DateTime<Utc>) -> Result<usize, ActivateError> {
        self.ledger.note_activity(&a.profile_id, &a.event_type, a.occurred_at).await?;
        let mut scheduled = 0;
        for c in &self.campaigns {
            let Some(t) = c.trigger.event().filter(|t| t.event == a.event_type) else { continue };
            let due = a.occurred_at + t.wait;
            if now - due > TRIGGER_LATE_LIMIT {
                tracing::warn!(campaign = %c.name, event_id = %a.event_id, occurred_at = %a.occurred_at, "trigger event arrived too late: not scheduled");
                continue;
            }
            let request = ActivationRequest {
                segment: c.segment.clone(),
                run_id: a.event_id.clone(),
                run_at: a.occurred_at,
                profile_id: a.profile_id.clone(),
                change: SegmentChange::Entered,
                key: BTreeMap::new(),
                payload: a.attributes.iter().filter(|(k, _)| c.payload.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect(),
                attributes: BTreeMap::new(),
            };
            let key = stable_id(&["trigger", &c.name, &a.event_id, &a.profile_id]);
            let message = serde_json::json!({ "triggered": TriggeredSend { campaign: c.name.clone(), request } });
            self.ledger.schedule(&key, due, &message.to_string(), now).await?;
            tracing::info!(campaign = %c.name, event_id = %a.event_id, due = %due, "campaign decision scheduled");
            scheduled += 1;
        }
        Ok(scheduled)
    }

    /// The `unless` event the person did since the trigger event, if any.
    async fn cancelled_by(&self, campaign: &Campaign, request: &ActivationRequest) -> Result<Option<String>, ActivateError> {
        let Some(t) = campaign.trigger.event().filter(|t| !t.unless.is_empty()) else { return Ok(None) };
        let recent = self.ledger.activity(&request.profile_id).await?;
        Ok(t.unless.iter().find(|u| recent.get(*u).is_some_and(|at| *at >= request.run_at)).cloned())
    }

    /// Every campaign of the request's segment (or only `only`: a released deferral).
    pub async fn process_request(
        &self,
        request: &ActivationRequest,
        only: Option<(&str, &str)>,
        now: DateTime<Utc>,
    ) -> Result<Effects, ActivateError> {
        let mut effects = Effects::default();
        for campaign in self.campaigns.iter().filter(|c| c.segment == request.segment) {
            if only.is_some_and(|(name, _)| name != campaign.name) {
                continue;
            }
            effects.extend(self.campaign(campaign, request, only.map(|(_, slot)| slot), now).await?);
        }
        Ok(effects)
    }

    async fn campaign(
        &self,
        campaign: &Campaign,
        request: &ActivationRequest,
        only_slot: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Effects, ActivateError> {
        let akey = stable_id(&["activation", &campaign.name, &request.idempotency_key()]);
        let holdout = in_holdout(&campaign.name, &request.profile_id, campaign.holdout_percent);
        let ctx = Ctx { campaign, request, akey: &akey, group: if holdout { "holdout" } else { "treated" }, now };
        let mut effects = Effects::default();
        let triggered = campaign.trigger.fires_on(request.change);
        // An event trigger's `unless`: checked for both groups alike (the lift compares
        // like with like), at the decision and again when a quiet-hours deferral ends.
        if triggered {
            if let Some(event) = self.cancelled_by(campaign, request).await? {
                tracing::info!(campaign = %campaign.name, profile_id = %request.profile_id, %event, "cancelled by a later event");
                let mut record = ctx.record(&format!("{akey}:unless"), "suppressed", Some("unless"), None, None);
                record.reason = Some(format!("unless:{event}"));
                effects.records.push(record);
                return Ok(effects);
            }
        }
        if holdout {
            // Recorded once per entry (the report counts each activation key once).
            if only_slot.is_none()
                && (triggered && campaign.sends_messages() || !campaign.sends_messages() && request.change == SegmentChange::Entered)
            {
                effects.records.push(ctx.record(&format!("{akey}:holdout"), "holdout", None, None, None));
            }
            return Ok(effects);
        }
        if triggered && campaign.sends_messages() {
            for slot in slots(campaign) {
                if only_slot.is_some_and(|s| s != slot) {
                    continue;
                }
                effects.extend(self.send(&ctx, &slot).await?);
            }
        }
        if !campaign.audience.is_empty() && only_slot.is_none() {
            effects.extend(self.audience(&ctx).await?);
        }
        Ok(effects)
    }

    /// The person as stored now (strongly consistent); `None` when erased or merged away.
    async fn read_profile(&self, profile_id: &str) -> Result<Option<Profile>, ActivateError> {
        Ok(self.profiles.profile(profile_id).await?.map(|item| Profile::from_item(&item)))
    }

    /// One message slot of one entry: claim, decide, send, complete.
    async fn send(&self, ctx: &Ctx<'_>, slot: &str) -> Result<Effects, ActivateError> {
        let skey = stable_id(&[ctx.akey, slot]);
        let token = match self.ledger.claim(&skey, self.config.claim_lease, ctx.now).await? {
            Claim::Done(effects) => return Ok(*effects),
            Claim::InFlight => return Err(ActivateError::InFlight(skey)),
            Claim::Acquired(token) => token,
        };
        match self.decide_send(ctx, slot, &skey, &token).await {
            Ok(effects) => Ok(effects),
            // Delivered: never give the claim back (the retry would post again).
            Err(err @ ActivateError::Unrecorded { .. }) => Err(err),
            Err(err) => {
                if let Err(release) = self.ledger.release(&skey, &token, &err.to_string()).await {
                    tracing::warn!(error = %release, "cannot release the claim; it expires with its lease");
                }
                Err(err)
            }
        }
    }

    async fn finish(
        &self,
        ctx: &Ctx<'_>,
        (skey, token): (&str, &ClaimToken),
        record: ActivationRecord,
        event: Option<serde_json::Value>,
    ) -> Result<Effects, LedgerError> {
        let status = if record.outcome == "sent" { SendStatus::Sent } else { SendStatus::Suppressed };
        let detail = record.reason.clone().unwrap_or_default();
        let effects = Effects { records: vec![record], events: event.into_iter().collect(), audience: Vec::new() };
        self.complete(skey, token, status, &effects, &detail, ctx.now).await?;
        Ok(effects)
    }

    /// Completes a claimed send, retrying throttles and transient failures: after a
    /// destination's 2xx this is all that stands between one message and two.
    async fn complete(
        &self,
        skey: &str,
        token: &ClaimToken,
        status: SendStatus,
        effects: &Effects,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let mut attempt = 0;
        loop {
            match self.ledger.complete(skey, token, status, effects, detail, now).await {
                Ok(()) => return Ok(()),
                Err(err) if err.retryable() && attempt + 1 < COMPLETE_ATTEMPTS => {
                    tracing::warn!(send_key = %skey, attempt, error = %err, "cannot complete the send yet; retrying");
                    COMPLETE_BACKOFF.wait(attempt).await;
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Refuses to run with a claim lease that an invocation can outlast (`budget`: the
    /// time from the invocation's start to its deadline, i.e. the function's timeout).
    pub fn check_lease(&self, budget: std::time::Duration) -> Result<(), ActivateError> {
        if self.config.claim_lease <= budget {
            return Err(ActivateError::LeaseTooShort {
                lease_s: self.config.claim_lease.as_secs(),
                budget_s: budget.as_secs_f64().ceil() as u64,
            });
        }
        Ok(())
    }

    async fn decide_send(&self, ctx: &Ctx<'_>, slot: &str, skey: &str, token: &ClaimToken) -> Result<Effects, ActivateError> {
        let claim = (skey, token);
        let c = ctx.campaign;
        let Some(profile) = self.read_profile(&ctx.request.profile_id).await? else {
            return Ok(self.finish(ctx, claim, ctx.record(skey, "suppressed", Some("erased"), None, None), None).await?);
        };
        // The channel: the slot's own (policy `all`) or the policy's first usable one.
        let candidates: Vec<Channel> = match slot.strip_prefix("message:") {
            Some(name) => Channel::parse(name).into_iter().collect(),
            None => c.candidates(ctx.request.attributes.get("preferred_channel").and_then(|p| Channel::of_preferred(p))),
        };
        let mut refused = Vec::new();
        let mut chosen = None;
        for ch in &candidates {
            match profile.usable(*ch) {
                Ok(()) => {
                    chosen = Some(*ch);
                    break;
                }
                Err(why) => refused.push(why),
            }
        }
        let Some(channel) = chosen else {
            let reason = if refused.contains(&Unusable::NoConsent) { "consent" } else { "unreachable" };
            let only = (candidates.len() == 1).then(|| candidates[0]);
            return Ok(self.finish(ctx, claim, ctx.record(skey, "suppressed", Some(reason), only, None), None).await?);
        };
        let message = &c.messages[&channel];
        let zone = profile.zone(self.rules.time_zone);
        let quiet = self.rules.quiet(channel);
        if quiet.is_quiet(ctx.now, zone) {
            let Some(due) = quiet.next_allowed(ctx.now, zone) else {
                return Ok(self
                    .finish(ctx, claim, ctx.record(skey, "suppressed", Some("quiet_hours"), Some(channel), Some(message)), None)
                    .await?);
            };
            let deferred = serde_json::json!({ "deferred": DeferredSend { campaign: c.name.clone(), slot: slot.to_string(), request: ctx.request.clone() } });
            self.ledger.defer(skey, token, due, &deferred.to_string(), ctx.now).await?;
            tracing::info!(campaign = %c.name, channel = %channel, due = %due, "deferred by quiet hours");
            let mut record = ctx.record(skey, "deferred", Some("quiet_hours"), Some(channel), Some(message));
            record.conversion_until = due + Duration::days(c.conversion_days as i64);
            return Ok(Effects { records: vec![record], ..Effects::default() });
        }
        let breaker = self.breaker_state(&message.destination).await?;
        if let Some(until) = crate::breaker::open_until(&breaker, ctx.now) {
            return Err(ActivateError::DestinationPaused { destination: message.destination.clone(), until });
        }
        let cap = self.rules.frequency_cap;
        let rules = PressureRules {
            max_messages: cap.max_messages,
            window: cap.window,
            cooldown: c.cooldown,
            retention: cap.window.max(self.longest_cooldown()),
        };
        let entry = PressureEntry {
            send_key: skey.to_string(),
            // The cooldown is counted per group (the campaign's name by default).
            campaign: c.cooldown_group.clone(),
            channel: channel.as_str().into(),
            at: ctx.now.timestamp(),
        };
        match self.ledger.reserve(&profile.profile_id, entry, ctx.now, &rules).await? {
            Reservation::Reserved => {}
            Reservation::CapReached { .. } => {
                return Ok(self.finish(ctx, claim, ctx.record(skey, "suppressed", Some("cap"), Some(channel), Some(message)), None).await?)
            }
            Reservation::Cooldown { .. } => {
                return Ok(self
                    .finish(ctx, claim, ctx.record(skey, "suppressed", Some("cooldown"), Some(channel), Some(message)), None)
                    .await?)
            }
        }
        let body = Outbound::new(ctx, skey, channel, &message.template, &profile);
        let posted = deliver(&self.webhooks, &self.retry, &message.destination, skey, &body).await;
        let attempts = match &posted {
            Ok(d) => d.attempts,
            Err(e) => e.attempts(),
        };
        self.webhook_posts.fetch_add(u64::from(attempts), Ordering::Relaxed);
        match posted {
            Ok(delivered) => {
                tracing::info!(campaign = %c.name, channel = %channel, attempts = delivered.attempts, status = delivered.status, "sent");
                self.update_breaker(&message.destination, crate::breaker::on_success).await;
                let event = serde_json::json!({
                    "type": "ActivationSent", "id": skey, "campaign": c.name, "channel": channel,
                    "destination": message.destination, "template": message.template, "segment": ctx.request.segment,
                    "run_id": ctx.request.run_id, "profile_id": ctx.request.profile_id, "sent_at": ctx.now,
                });
                self.finish(ctx, claim, ctx.record(skey, "sent", None, Some(channel), Some(message)), Some(event))
                    .await
                    .map_err(|source| ActivateError::Unrecorded { send_key: skey.to_string(), source })
            }
            Err(err) => {
                tracing::warn!(campaign = %c.name, channel = %channel, retryable = err.retryable(), error = %err, "webhook failed");
                self.ledger.unreserve(&profile.profile_id, skey, rules.retention).await?;
                if err.retryable() {
                    let policy = self.config.breaker;
                    let now = ctx.now;
                    let next = self.update_breaker(&message.destination, |s| crate::breaker::on_failure(s, now, &policy)).await;
                    if let Some(until) = crate::breaker::open_until(&next, now) {
                        tracing::warn!(destination = %message.destination, %until, "circuit breaker open");
                        return Err(ActivateError::DestinationPaused { destination: message.destination.clone(), until });
                    }
                }
                Err(err.into())
            }
        }
    }

    /// The destination's breaker: from this instance's cache while fresh, else the ledger.
    async fn breaker_state(&self, destination: &str) -> Result<BreakerState, LedgerError> {
        if let Some((state, _)) = lock(&self.breakers).get(destination).filter(|(_, at)| at.elapsed() < crate::breaker::STATE_TTL) {
            return Ok(state.clone());
        }
        let state = self.ledger.breaker(destination).await?;
        lock(&self.breakers).insert(destination.to_string(), (state.clone(), std::time::Instant::now()));
        Ok(state)
    }

    /// Applies `next` to the destination's breaker as this instance knows it and stores
    /// the result when it changed (best effort: a breaker that cannot be written only
    /// delays the pause or the recovery).
    async fn update_breaker(&self, destination: &str, next: impl FnOnce(&BreakerState) -> BreakerState) -> BreakerState {
        let (before, after) = {
            let mut cache = lock(&self.breakers);
            let before = cache.get(destination).map(|(s, _)| s.clone()).unwrap_or_default();
            let after = next(&before);
            cache.insert(destination.to_string(), (after.clone(), std::time::Instant::now()));
            (before, after)
        };
        if after != before {
            if let Err(err) = self.ledger.put_breaker(destination, &after).await {
                tracing::warn!(destination, error = %err, "cannot store the circuit breaker's state");
            }
        }
        after
    }

    fn longest_cooldown(&self) -> Duration {
        self.campaigns.iter().map(|c| c.cooldown).max().unwrap_or_else(Duration::zero)
    }

    /// The campaign's ad audiences follow the segment: entered → hashed rows added (with
    /// the person's advertising consent), exited → the rows added before removed.
    async fn audience(&self, ctx: &Ctx<'_>) -> Result<Effects, ActivateError> {
        let skey = stable_id(&[ctx.akey, "audience"]);
        let token = match self.ledger.claim(&skey, self.config.claim_lease, ctx.now).await? {
            Claim::Done(effects) => return Ok(*effects),
            Claim::InFlight => return Err(ActivateError::InFlight(skey)),
            Claim::Acquired(token) => token,
        };
        match self.decide_audience(ctx, &skey, &token).await {
            Ok(effects) => Ok(effects),
            Err(err) => {
                if let Err(release) = self.ledger.release(&skey, &token, &err.to_string()).await {
                    tracing::warn!(error = %release, "cannot release the claim; it expires with its lease");
                }
                Err(err)
            }
        }
    }

    async fn decide_audience(&self, ctx: &Ctx<'_>, skey: &str, token: &ClaimToken) -> Result<Effects, ActivateError> {
        let c = ctx.campaign;
        let pid = &ctx.request.profile_id;
        let platforms: Vec<&str> = c.audience.iter().map(|p| p.as_str()).collect();
        let record = |outcome: &str, reason: Option<&str>| {
            let mut r = ctx.record(skey, outcome, reason, None, None);
            r.channel = Some("ads".into());
            r.destination = Some(platforms.join(","));
            r
        };
        let mut effects = Effects::default();
        match ctx.request.change {
            SegmentChange::Entered => {
                let Some(profile) = self.read_profile(pid).await? else {
                    effects.records.push(record("suppressed", Some("erased")));
                    self.complete(skey, token, SendStatus::Suppressed, &effects, "erased", ctx.now).await?;
                    return Ok(effects);
                };
                if !profile.ads_consent() {
                    effects.records.push(record("suppressed", Some("consent")));
                    self.complete(skey, token, SendStatus::Suppressed, &effects, "no ads consent", ctx.now).await?;
                    return Ok(effects);
                }
                let member = profile.audience_member();
                let rows: Vec<AudienceRow> = c
                    .audience
                    .iter()
                    .flat_map(|p| {
                        audience_rows(*p, &member, self.rules.phone_region).into_iter().map(move |(email, phone)| AudienceRow {
                            campaign: c.name.clone(),
                            platform: p.as_str().into(),
                            run_id: ctx.request.run_id.clone(),
                            op: "add".into(),
                            email_sha256: email,
                            phone_sha256: phone,
                        })
                    })
                    .collect();
                if rows.is_empty() {
                    effects.records.push(record("suppressed", Some("unreachable")));
                    self.complete(skey, token, SendStatus::Suppressed, &effects, "no identifier to match", ctx.now).await?;
                    return Ok(effects);
                }
                self.ledger.put_audience(&c.name, pid, &rows, ctx.now).await?;
                effects.records.push(record("audience_added", None));
                effects.events.push(serde_json::json!({
                    "type": "AudienceEntered", "id": skey, "campaign": c.name, "platforms": platforms,
                    "profile_id": pid, "run_id": ctx.request.run_id, "at": ctx.now,
                }));
                effects.audience = rows;
                self.complete(skey, token, SendStatus::Sent, &effects, "audience rows added", ctx.now).await?;
            }
            SegmentChange::Exited => {
                match self.ledger.audience(&c.name, pid).await? {
                    None => {
                        // Never added (holdout, no consent, or an earlier exit): nothing to remove.
                        self.complete(skey, token, SendStatus::Suppressed, &effects, "not in the audience", ctx.now).await?;
                    }
                    Some(added) => {
                        effects.audience = added
                            .into_iter()
                            .map(|mut r| {
                                r.op = "remove".into();
                                r.run_id = ctx.request.run_id.clone();
                                r
                            })
                            .collect();
                        effects.records.push(record("audience_removed", None));
                        effects.events.push(serde_json::json!({
                            "type": "AudienceExited", "id": skey, "campaign": c.name, "platforms": platforms,
                            "profile_id": pid, "run_id": ctx.request.run_id, "at": ctx.now,
                        }));
                        // Completed before the item goes: a retry after a crash in between
                        // finds the send done and re-emits the same removal rows.
                        self.complete(skey, token, SendStatus::Sent, &effects, "audience rows removed", ctx.now).await?;
                        self.ledger.delete_audience(&c.name, pid).await?;
                    }
                }
            }
        }
        Ok(effects)
    }

    /// Writes a batch's effects: one Parquet file of activation records, one CSV part per
    /// (campaign, platform, run, operation), and the outbound events. Every name derives
    /// from the content, so a retried batch rewrites the same objects.
    pub async fn write_effects(&self, effects: &Effects, now: DateTime<Utc>) -> Result<(), ActivateError> {
        let bucket = &self.config.lake_bucket;
        if !effects.records.is_empty() {
            let mut records = effects.records.clone();
            records.sort_by(|a, b| (&a.send_key, &a.outcome).cmp(&(&b.send_key, &b.outcome)));
            let ids: Vec<String> = records.iter().map(|r| format!("{}:{}:{}", r.send_key, r.outcome, r.decided_at.timestamp())).collect();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let key = lake::activations_key(&now.format("%Y-%m-%d").to_string(), &stable_id(&refs));
            let batch = lake::activations_batch(&records).map_err(EffectsError::from)?;
            let bytes = lake::parquet_bytes(lake::activations_schema(), &[batch]).map_err(EffectsError::from)?;
            self.blobs.put(bucket, &key, Bytes::from(bytes), "application/vnd.apache.parquet").await?;
        }
        // One file per (campaign, platform, run, operation).
        let mut files: BTreeMap<[&str; 4], BTreeSet<HashedRow>> = BTreeMap::new();
        for r in &effects.audience {
            files.entry([&r.campaign, &r.platform, &r.run_id, &r.op]).or_default().insert((r.email_sha256.clone(), r.phone_sha256.clone()));
        }
        for ([campaign, platform, run_id, op], rows) in files {
            let p = Platform::parse(platform).map_err(EffectsError::from)?;
            let rows: Vec<HashedRow> = rows.into_iter().collect();
            let body = render_csv(p, &rows);
            let fingerprint = ariane_shared::identifiers::sha256_hex_bytes(&body);
            let key = lake::audience_key(campaign, platform, run_id, op, &fingerprint[..24]);
            self.blobs.put(bucket, &key, Bytes::from(body), "text/csv").await?;
        }
        if !effects.events.is_empty() {
            let bodies: Vec<String> = effects.events.iter().map(|e| e.to_string()).collect();
            self.queue.send_all(&self.config.events_queue_url, &bodies).await?;
        }
        Ok(())
    }

    /// The release schedule: re-queues every deferral due by the event's time (or now),
    /// and those due within the next [`RELEASE_LOOKAHEAD`] with a queue delay of the time
    /// left (marked with their due time), so that none waits for the next tick.
    pub async fn release(&self, event: EventBridgeEvent<serde_json::Value>) -> Result<ReleaseSummary, ActivateError> {
        let now = self.clock.now();
        let at = event.time.unwrap_or(now).max(now);
        // Deferrals never reach further than a long weekend plus holidays; a week back
        // also catches anything a missed schedule left behind.
        let due = self.ledger.due_deferrals(at + RELEASE_LOOKAHEAD, 7).await?;
        let entries: Vec<(String, std::time::Duration)> = due
            .iter()
            .map(|d| match (d.due - now).to_std() {
                Ok(left) if !left.is_zero() => (held_until(&d.message, d.due), left),
                _ => (d.message.clone(), std::time::Duration::ZERO),
            })
            .collect();
        let ahead = entries.iter().filter(|(_, left)| !left.is_zero()).count();
        self.queue.send_all_delayed(&self.config.activation_queue_url, &entries).await?;
        for deferral in &due {
            self.ledger.delete_deferral(deferral).await?;
        }
        tracing::info!(released = due.len(), ahead, at = %at, "deferred sends released");
        ariane_shared::metrics::emit("activate", &[("Released", due.len() as f64), ("ReleasedAhead", ahead as f64)]);
        Ok(ReleaseSummary { released: due.len(), ahead, at: Some(at) })
    }
}

/// The entry being decided.
struct Ctx<'a> {
    campaign: &'a Campaign,
    request: &'a ActivationRequest,
    akey: &'a str,
    group: &'a str,
    now: DateTime<Utc>,
}

impl Ctx<'_> {
    fn record(
        &self,
        send_key: &str,
        outcome: &str,
        reason: Option<&str>,
        channel: Option<Channel>,
        message: Option<&crate::campaign::Message>,
    ) -> ActivationRecord {
        ActivationRecord {
            activation_key: self.akey.to_string(),
            send_key: send_key.to_string(),
            campaign: self.campaign.name.clone(),
            segment: self.request.segment.clone(),
            run_id: self.request.run_id.clone(),
            profile_id: self.request.profile_id.clone(),
            change: self.request.change.as_str().into(),
            group: self.group.into(),
            channel: channel.map(|c| c.as_str().to_string()),
            outcome: outcome.into(),
            reason: reason.map(str::to_string),
            destination: message.map(|m| m.destination.clone()),
            template: message.map(|m| m.template.clone()),
            decided_at: self.now,
            conversion_until: self.now + Duration::days(self.campaign.conversion_days as i64),
        }
    }
}

/// What a destination receives.
#[derive(Clone, Debug, Serialize)]
pub struct Outbound<'a> {
    pub idempotency_key: &'a str,
    pub campaign: &'a str,
    pub channel: Channel,
    pub template: &'a str,
    pub segment: &'a str,
    pub change: SegmentChange,
    pub run_id: &'a str,
    pub profile_id: &'a str,
    pub to: Recipient,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The campaign's payload fields from the segment.
    pub payload: BTreeMap<String, String>,
    pub sent_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Recipient {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub push_tokens: Vec<String>,
}

impl<'a> Outbound<'a> {
    fn new(ctx: &'a Ctx<'a>, skey: &'a str, channel: Channel, template: &'a str, profile: &Profile) -> Self {
        let to = match channel {
            Channel::Email => Recipient { email: profile.email.clone(), ..Recipient::default() },
            Channel::Sms => Recipient { phone: profile.phone.clone(), ..Recipient::default() },
            Channel::Push => Recipient { push_tokens: profile.push_tokens.clone(), ..Recipient::default() },
        };
        Outbound {
            idempotency_key: skey,
            campaign: &ctx.campaign.name,
            channel,
            template,
            segment: &ctx.request.segment,
            change: ctx.request.change,
            run_id: &ctx.request.run_id,
            profile_id: &ctx.request.profile_id,
            to,
            first_name: profile.first_name.clone(),
            last_name: profile.last_name.clone(),
            payload: ctx.campaign.payload.iter().filter_map(|f| ctx.request.payload.get(f).map(|v| (f.clone(), v.clone()))).collect(),
            sent_at: ctx.now,
        }
    }
}
