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

impl SqsQueue {
    /// Ten per request, each entry with its delay in seconds (`None`: the queue's);
    /// entries reported as failed are retried up to three times.
    async fn send_batches(&self, queue_url: &str, entries: &[(&str, Option<i32>)]) -> Result<usize, SendError> {
        let mut sent = 0;
        for chunk in entries.chunks(SQS_BATCH) {
            let mut pending: Vec<(usize, &(&str, Option<i32>))> = chunk.iter().enumerate().collect();
            let mut last_reason = String::new();
            for _attempt in 0..4 {
                if pending.is_empty() {
                    break;
                }
                let batch = pending
                    .iter()
                    .map(|(i, (body, delay))| {
                        SendMessageBatchRequestEntry::builder()
                            .id(format!("m{i}"))
                            .message_body(*body)
                            .set_delay_seconds(*delay)
                            .build()
                            .expect("id and body are set")
                    })
                    .collect::<Vec<_>>();
                let out = self
                    .client
                    .send_message_batch()
                    .queue_url(queue_url)
                    .set_entries(Some(batch))
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
                    total: entries.len(),
                    first_reason: last_reason,
                });
            }
        }
        Ok(sent)
    }
}

/// A delay as SQS takes it: whole seconds, rounded up (a message is never visible
/// before its time), at most [`MAX_QUEUE_DELAY`].
pub fn delay_seconds(delay: Duration) -> i32 {
    let capped = delay.min(MAX_QUEUE_DELAY);
    (capped.as_secs() + u64::from(capped.subsec_nanos() > 0)) as i32
}

#[async_trait::async_trait]
impl Queue for SqsQueue {
    async fn send_all(&self, queue_url: &str, bodies: &[String]) -> Result<usize, SendError> {
        let entries: Vec<(&str, Option<i32>)> = bodies.iter().map(|b| (b.as_str(), None)).collect();
        self.send_batches(queue_url, &entries).await
    }

    async fn send_all_delayed(&self, queue_url: &str, entries: &[(String, Duration)]) -> Result<usize, SendError> {
        let entries: Vec<(&str, Option<i32>)> = entries.iter().map(|(b, d)| (b.as_str(), Some(delay_seconds(*d)))).collect();
        self.send_batches(queue_url, &entries).await
    }

    async fn send_delayed(&self, queue_url: &str, body: &str, delay: Duration) -> Result<(), SendError> {
        self.client
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .delay_seconds(delay_seconds(delay))
            .send()
            .await
            .aws("sqs:SendMessage delayed")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_rounds_up_to_the_second_and_stops_at_fifteen_minutes() {
        assert_eq!(delay_seconds(Duration::ZERO), 0);
        assert_eq!(delay_seconds(Duration::from_millis(1)), 1);
        assert_eq!(delay_seconds(Duration::from_millis(59_001)), 60);
        assert_eq!(delay_seconds(Duration::from_secs(60)), 60);
        assert_eq!(delay_seconds(Duration::from_secs(3_600)), 900);
    }
}
