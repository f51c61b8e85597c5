//! Sending to SQS in batches of ten, retrying entries the service reports as failed.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::error::{AwsError, SdkResultExt};

/// SQS accepts at most ten entries per `SendMessageBatch`.
pub const SQS_BATCH: usize = 10;

/// Error sending a batch: some entries kept failing.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("{failed} of {total} messages could not be sent to {queue_url}: {first_reason}")]
    Partial { queue_url: String, failed: usize, total: usize, first_reason: String },
}

impl SendError {
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Aws(e) => e.retryable,
            SendError::Partial { .. } => true,
        }
    }
}

/// Sends `bodies` to `queue_url`, ten per request. Entries reported as failed are retried
/// up to three times; what still fails is an error (the caller's step is retried as a
/// whole, which is safe because every consumer is idempotent).
pub async fn send_all(client: &aws_sdk_sqs::Client, queue_url: &str, bodies: &[String]) -> Result<usize, SendError> {
    let mut sent = 0;
    for chunk in bodies.chunks(SQS_BATCH) {
        let mut pending: Vec<(usize, &String)> = chunk.iter().enumerate().collect();
        let mut last_reason = String::new();
        for _attempt in 0..4 {
            if pending.is_empty() {
                break;
            }
            let entries = pending
                .iter()
                .map(|(i, body)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(body.as_str())
                        .build()
                        .expect("id and body are set")
                })
                .collect::<Vec<_>>();
            let out =
                client.send_message_batch().queue_url(queue_url).set_entries(Some(entries)).send().await.aws("sqs:SendMessageBatch")?;
            sent += out.successful().len();
            let failed: Vec<String> = out.failed().iter().map(|f| f.id().to_string()).collect();
            if let Some(f) = out.failed().first() {
                last_reason = format!("{}: {}", f.code(), f.message().unwrap_or_default());
            }
            pending.retain(|(i, _)| failed.contains(&format!("m{i}")));
        }
        if !pending.is_empty() {
            return Err(SendError::Partial {
                queue_url: queue_url.to_string(),
                failed: pending.len(),
                total: bodies.len(),
                first_reason: last_reason,
            });
        }
    }
    Ok(sent)
}
