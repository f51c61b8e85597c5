//! The ports activation's decisions go through, and their two wirings: AWS
//! ([`AwsPorts`], built by `Activate::from_env` for `main.rs`) and in memory
//! ([`MemPorts`], for unit tests of the decisions without moto).
//!
//! - the activation ledger ([`ActivationLedger`]): claims, completions, deferrals,
//!   pressure and audience rows;
//! - the profile reader ([`ProfileReader`]): consent and contact details at send time;
//! - the queue ([`Queue`]): outbound events and released deferrals;
//! - blob storage ([`BlobStore`]): activation records and audience files in the lake;
//! - the webhook destinations ([`Webhooks`], this crate's port).
//!
//! The ledger, profiles, queue and blobs are wrapped in one [`Metered`] meter.

use std::sync::Arc;

use ariane_shared::adapters::dynamodb::{DynamoLedger, DynamoProfiles};
use ariane_shared::adapters::memory::{MemBlobs, MemLedger, MemProfiles, MemQueue};
use ariane_shared::adapters::metered::{Meter, Metered};
use ariane_shared::adapters::s3::S3Blobs;
use ariane_shared::adapters::sqs::SqsQueue;
use ariane_shared::aws::Clients;
use ariane_shared::ports::{ActivationLedger, BlobStore, ProfileReader, Queue};

use crate::config::ActivateConfig;
use crate::webhook::{HttpWebhooks, MemWebhooks, Webhooks};

/// The adapter types of one wiring.
pub trait Ports: Send + Sync + 'static {
    type Ledger: ActivationLedger;
    type Profiles: ProfileReader;
    type Queue: Queue;
    type Blobs: BlobStore;
    type Webhooks: Webhooks;
}

/// The adapters of one wiring, and the meter the metered ones count into.
pub struct PortSet<P: Ports> {
    pub ledger: P::Ledger,
    pub profiles: P::Profiles,
    pub queue: P::Queue,
    pub blobs: P::Blobs,
    pub webhooks: P::Webhooks,
    pub meter: Arc<Meter>,
}

/// DynamoDB, S3, SQS and HTTP.
pub struct AwsPorts;

impl Ports for AwsPorts {
    type Ledger = Metered<DynamoLedger>;
    type Profiles = Metered<DynamoProfiles>;
    type Queue = Metered<SqsQueue>;
    type Blobs = Metered<S3Blobs>;
    type Webhooks = HttpWebhooks;
}

impl AwsPorts {
    /// The AWS adapters on the tables, bucket and queues of `config`, one meter for all.
    pub fn wire(clients: &Clients, config: &ActivateConfig, secret: Vec<u8>) -> Result<PortSet<AwsPorts>, reqwest::Error> {
        let meter = Arc::new(Meter::default());
        Ok(PortSet {
            ledger: Metered::with_meter(
                DynamoLedger { client: clients.dynamodb.clone(), table: config.ledger_table.clone() },
                meter.clone(),
            ),
            profiles: Metered::with_meter(
                DynamoProfiles { client: clients.dynamodb.clone(), table: config.profiles_table.clone() },
                meter.clone(),
            ),
            queue: Metered::with_meter(SqsQueue::new(clients.sqs.clone()), meter.clone()),
            blobs: Metered::with_meter(S3Blobs::new(clients.s3.clone()), meter.clone()),
            webhooks: HttpWebhooks::new(config.destinations.clone(), secret, config.webhook_timeout)?,
            meter,
        })
    }
}

/// The in-memory adapters (shared with the test that wired them, to look inside and
/// inject failures).
pub struct MemPorts;

impl Ports for MemPorts {
    type Ledger = Metered<Arc<MemLedger>>;
    type Profiles = Metered<Arc<MemProfiles>>;
    type Queue = Metered<Arc<MemQueue>>;
    type Blobs = Metered<Arc<MemBlobs>>;
    type Webhooks = Arc<MemWebhooks>;
}

/// One in-memory world: what a test reads and breaks while the handler runs over it.
#[derive(Clone, Default)]
pub struct InMemory {
    pub ledger: Arc<MemLedger>,
    pub profiles: Arc<MemProfiles>,
    pub queue: Arc<MemQueue>,
    pub blobs: Arc<MemBlobs>,
    pub webhooks: Arc<MemWebhooks>,
}

impl InMemory {
    pub fn new() -> Self {
        Self::default()
    }

    /// The ports over this world, metered with a fresh meter.
    pub fn ports(&self) -> PortSet<MemPorts> {
        let meter = Arc::new(Meter::default());
        PortSet {
            ledger: Metered::with_meter(self.ledger.clone(), meter.clone()),
            profiles: Metered::with_meter(self.profiles.clone(), meter.clone()),
            queue: Metered::with_meter(self.queue.clone(), meter.clone()),
            blobs: Metered::with_meter(self.blobs.clone(), meter.clone()),
            webhooks: self.webhooks.clone(),
            meter,
        }
    }
}
