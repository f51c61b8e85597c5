//! The queue message between the two entry points: `{"source", "channel", "lines": [...]}`.

use serde::{Deserialize, Serialize};

use crate::batch::Line;

/// The largest message body the HTTP entry point sends (SQS accepts 256 KiB; the margin
/// keeps the encoding's overhead safe).
pub const MAX_MESSAGE_BYTES: usize = 200_000;
/// The most bytes sent in one `SendMessageBatch` (whose whole payload SQS caps at
/// 256 KiB): messages of a request that fit together go in one request, else one each.
pub const MAX_SEND_BYTES: usize = 250_000;

/// Accepted events of one request (or part of one), as queued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedBatch {
    pub source: String,
    pub channel: String,
    pub lines: Vec<Line>,
}

/// The message bodies carrying `lines`, each at most [`MAX_MESSAGE_BYTES`] (a single line
/// is far below it: an event is at most 32 KiB), in order.
pub fn message_bodies(source: &str, channel: &str, lines: &[Line]) -> Vec<String> {
    let head = format!("{{\"source\":{},\"channel\":{},\"lines\":[", serde_json::Value::from(source), serde_json::Value::from(channel));
    let mut bodies = Vec::new();
    let mut body = head.clone();
    let mut count = 0;
    for line in lines {
        let text = serde_json::to_string(line).unwrap_or_default();
        if count > 0 && body.len() + 1 + text.len() + 2 > MAX_MESSAGE_BYTES {
            body.push_str("]}");
            bodies.push(std::mem::replace(&mut body, head.clone()));
            count = 0;
        }
        if count > 0 {
            body.push(',');
        }
        body.push_str(&text);
        count += 1;
    }
    if count > 0 {
        body.push_str("]}");
        bodies.push(body);
    }
    bodies
}

/// The bodies grouped into sends: all in one when their total fits [`MAX_SEND_BYTES`]
/// (one `SendMessageBatch` of at most ten), otherwise one per send.
pub fn sends(bodies: Vec<String>) -> Vec<Vec<String>> {
    let total: usize = bodies.iter().map(String::len).sum();
    if bodies.is_empty() {
        Vec::new()
    } else if total <= MAX_SEND_BYTES && bodies.len() <= ariane_shared::adapters::sqs::SQS_BATCH {
        vec![bodies]
    } else {
        bodies.into_iter().map(|b| vec![b]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(i: usize, pad: usize) -> Line {
        Line {
            message_id: format!("m{i}"),
            source: "website".into(),
            kind: "page".into(),
            event: "page_view".into(),
            timestamp: "2026-11-12T16:00:00.000Z".into(),
            received_at: "2026-11-12T16:00:00.000Z".into(),
            anonymous_id: None,
            user_id: None,
            email: None,
            page_url: Some(format!("https://shop.example/{}", "x".repeat(pad))),
            sku: None,
            product_name: None,
            category: None,
            quantity: None,
            price: None,
            currency: None,
            order_id: None,
            revenue: None,
            consent: false,
            email_opt_in: None,
        }
    }

    #[test]
    fn bodies_split_under_the_cap_and_decode() {
        let lines: Vec<Line> = (0..500).map(|i| line(i, 700)).collect();
        let bodies = message_bodies("website", "web", &lines);
        assert!(bodies.len() >= 2, "{}", bodies.len());
        let mut back = Vec::new();
        for b in &bodies {
            assert!(b.len() <= MAX_MESSAGE_BYTES);
            let q: QueuedBatch = serde_json::from_str(b).unwrap();
            assert_eq!((q.source.as_str(), q.channel.as_str()), ("website", "web"));
            back.extend(q.lines);
        }
        assert_eq!(back, lines);
        assert_eq!(sends(bodies.clone()).len(), bodies.len());
        let small = message_bodies("website", "web", &lines[..3]);
        assert_eq!(sends(small).len(), 1);
        assert!(message_bodies("website", "web", &[]).is_empty());
        assert!(sends(Vec::new()).is_empty(), "an empty batch sends nothing");
    }
}
