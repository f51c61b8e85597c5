//! The reads of a profile call ([`ProfileDirectory`]), over identity's table: the
//! identifier item (`ID#<kind>#<keyed hash>`), the memberships item the segments run
//! writes (`SEGMENTS#<pid>`, [`ariane_shared::memberships`]), and, only when a profile
//! has no memberships item, its alias (`ALIAS#<pid>`: a profile merged away). Nothing
//! here reads identity's `PROFILE#` item, the only one with clear personal data.
//!
//! [`DynamoDirectory`] reads DynamoDB (eventually consistent `GetItem`s, half a read unit
//! each up to 4 KB); [`MemDirectory`] holds the same items in memory and decodes them the
//! same way, counting reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ariane_shared::error::{AwsError, SdkResultExt};
use ariane_shared::identifiers::IdentifierKind;
use ariane_shared::memberships::{self, Memberships};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Deserialize;

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl DirectoryError {
    /// Whether trying again later can help (a throttle, a timeout).
    pub fn retryable(&self) -> bool {
        match self {
            DirectoryError::Aws(e) => e.retryable,
        }
    }
}

/// The key of an identifier item: identity's `Key::id` (`ID#<kind>#<hash>`, `ID`).
pub fn id_pk(kind: IdentifierKind, hash: &str) -> String {
    format!("ID#{kind}#{hash}")
}

/// The profile an identifier item links to, as identity's `lookup` reads it: its
/// `profile_id`, unless the identifier was erased (`suppressed` in its document).
pub fn profile_of_id_item(item: &Item) -> Option<String> {
    #[derive(Deserialize)]
    struct Flags {
        #[serde(default)]
        suppressed: bool,
    }
    let text = |n: &str| item.get(n).and_then(|v| v.as_s().ok());
    let suppressed = text("doc").and_then(|d| serde_json::from_str::<Flags>(d).ok()).is_some_and(|f| f.suppressed);
    text("profile_id").filter(|_| !suppressed).cloned()
}

/// What the profile API reads.
#[async_trait::async_trait]
pub trait ProfileDirectory: Send + Sync {
    /// The profile the identifier (kind and keyed hash) resolves to.
    async fn profile_of(&self, kind: IdentifierKind, hash: &str) -> Result<Option<String>, DirectoryError>;
    /// The memberships item of a profile.
    async fn memberships(&self, profile_id: &str) -> Result<Option<Memberships>, DirectoryError>;
    /// The survivor a merged-away profile's alias names.
    async fn survivor_of(&self, profile_id: &str) -> Result<Option<String>, DirectoryError>;
}

#[async_trait::async_trait]
impl<T: ProfileDirectory + ?Sized> ProfileDirectory for std::sync::Arc<T> {
    async fn profile_of(&self, kind: IdentifierKind, hash: &str) -> Result<Option<String>, DirectoryError> {
        (**self).profile_of(kind, hash).await
    }
    async fn memberships(&self, profile_id: &str) -> Result<Option<Memberships>, DirectoryError> {
        (**self).memberships(profile_id).await
    }
    async fn survivor_of(&self, profile_id: &str) -> Result<Option<String>, DirectoryError> {
        (**self).survivor_of(profile_id).await
    }
}

/// Identity's table on DynamoDB.
#[derive(Clone, Debug)]
pub struct DynamoDirectory {
    pub client: aws_sdk_dynamodb::Client,
    pub table: String,
}

impl DynamoDirectory {
    /// One eventually consistent `GetItem`, of `projection` (attribute names) when given.
    async fn get(&self, pk: String, sk: &str, projection: &[&str], op: &'static str) -> Result<Option<Item>, DirectoryError> {
        let mut request = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk.to_string()))
            .consistent_read(false);
        if !projection.is_empty() {
            let names: Vec<String> = (0..projection.len()).map(|i| format!("#p{i}")).collect();
            request = request.projection_expression(names.join(", "));
            for (name, attribute) in names.into_iter().zip(projection) {
                request = request.expression_attribute_names(name, *attribute);
            }
        }
        Ok(request.send().await.aws(op)?.item)
    }
}

#[async_trait::async_trait]
impl ProfileDirectory for DynamoDirectory {
    async fn profile_of(&self, kind: IdentifierKind, hash: &str) -> Result<Option<String>, DirectoryError> {
        let item = self.get(id_pk(kind, hash), "ID", &["profile_id", "doc"], "dynamodb:GetItem identifier").await?;
        Ok(item.as_ref().and_then(profile_of_id_item))
    }

    async fn memberships(&self, profile_id: &str) -> Result<Option<Memberships>, DirectoryError> {
        let item = self.get(memberships::pk(profile_id), memberships::SK, &[], "dynamodb:GetItem memberships").await?;
        Ok(item.as_ref().map(Memberships::from_item))
    }

    async fn survivor_of(&self, profile_id: &str) -> Result<Option<String>, DirectoryError> {
        // Identity writes the survivor as the alias item's `profile_id`.
        let item = self.get(format!("ALIAS#{profile_id}"), "ALIAS", &["profile_id"], "dynamodb:GetItem alias").await?;
        Ok(item.and_then(|i| i.get("profile_id").and_then(|v| v.as_s().ok()).cloned()))
    }
}

/// Identity's table in memory: whole items by key, read like [`DynamoDirectory`] reads
/// them; counts the reads.
#[derive(Debug, Default)]
pub struct MemDirectory {
    items: Mutex<HashMap<(String, String), Item>>,
    reads: AtomicUsize,
}

impl MemDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores an item (its `pk` and `sk` attributes are its key).
    pub fn put(&self, item: Item) {
        let key = |n: &str| item.get(n).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        let k = (key("pk"), key("sk"));
        self.items.lock().expect("poisoned").insert(k, item);
    }

    /// Reads made so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }

    fn get(&self, pk: String, sk: &str) -> Option<Item> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.items.lock().expect("poisoned").get(&(pk, sk.to_string())).cloned()
    }
}

#[async_trait::async_trait]
impl ProfileDirectory for MemDirectory {
    async fn profile_of(&self, kind: IdentifierKind, hash: &str) -> Result<Option<String>, DirectoryError> {
        Ok(self.get(id_pk(kind, hash), "ID").as_ref().and_then(profile_of_id_item))
    }

    async fn memberships(&self, profile_id: &str) -> Result<Option<Memberships>, DirectoryError> {
        Ok(self.get(memberships::pk(profile_id), memberships::SK).as_ref().map(Memberships::from_item))
    }

    async fn survivor_of(&self, profile_id: &str) -> Result<Option<String>, DirectoryError> {
        Ok(self.get(format!("ALIAS#{profile_id}"), "ALIAS").and_then(|i| i.get("profile_id").and_then(|v| v.as_s().ok()).cloned()))
    }
}
