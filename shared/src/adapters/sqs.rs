//! [`Queue`] on SQS: batches of ten, entries the service reports as failed retried.

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use std::time::Duration;

use crate::error::SdkResultExt;
use crate::ports::{Queue, SendError, MAX_QUEUE_DELAY};

/// SQS accepts at most ten entries per `SendMessageBatch`.
pub const SQS_BATCH: usize = 10;

#[derive(Clone, Debug)]
pub struct SqsQueue {
    pub client: aws_sdk_sqs::Client,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        SqsQueue { client }
    }
}

#[async_trait::async_trait]
impl Queue for SqsQueue {
    /// Ten per request; entries reported as failed are retried up to three times.
    async fn send_all(&self, queue_url: &str, bodies: &[String]) -> Result<usize, SendError> {
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
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(queue_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .aws("sqs:SendMessageBatch")?;
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

    async fn send_delayed(&self, queue_url: &str, body: &str, delay: Duration) -> Result<(), SendError> {
        self.client
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .delay_seconds(delay.min(MAX_QUEUE_DELAY).as_secs() as i32)
            .send()
            .await
            .aws("sqs:SendMessage delayed")?;
        Ok(())
    }
}
