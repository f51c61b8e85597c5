//! Adapters of the [ports](crate::ports), one per backend, all here:
//!
//! - [`s3::S3Blobs`]: [`BlobStore`](crate::ports::BlobStore) on S3;
//! - [`sqs::SqsQueue`]: [`Queue`](crate::ports::Queue) on SQS;
//! - [`dynamodb::DynamoLedger`] and [`dynamodb::DynamoProfiles`]: the activation ledger
//!   and the profile reader on DynamoDB, and [`dynamodb::item_size`], the one DynamoDB
//!   item-size rule;
//! - [`memory`]: in-memory versions of each, with injectable failures ([`memory::Faults`]);
//! - [`metered::Metered`]: wraps any port and counts requests and capacity units.

pub mod dynamodb;
pub mod memory;
pub mod metered;
pub mod s3;
pub mod sqs;
