//! Reading S3 event notifications out of SQS message bodies.

use percent_encoding::percent_decode_str;
use serde::Deserialize;

/// The fields of an S3 event notification ingest needs. Lenient on purpose: emulators and
/// older notification versions omit fields (`userIdentity`, `versionId`...) that the full
/// `aws_lambda_events` type requires.
#[derive(Debug, Deserialize)]
struct S3Notification {
    #[serde(rename = "Records", default)]
    records: Vec<S3Record>,
}

#[derive(Debug, Deserialize)]
struct S3Record {
    #[serde(rename = "eventName", default)]
    event_name: Option<String>,
    s3: S3Entity,
}

#[derive(Debug, Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Debug, Deserialize)]
struct S3Bucket {
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct S3Object {
    key: Option<String>,
    #[serde(default)]
    size: Option<i64>,
    #[serde(rename = "eTag", default)]
    e_tag: Option<String>,
    #[serde(rename = "versionId", default)]
    version_id: Option<String>,
}

/// An object named by an S3 notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub bucket: String,
    /// Decoded key (S3 URL-encodes keys in events, with `+` for spaces).
    pub key: String,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub size: Option<i64>,
}

/// What an SQS body from the landing bucket's notification holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Notification {
    /// `s3:TestEvent`, sent when a notification configuration is saved: nothing to do.
    Test,
    Objects(Vec<ObjectRef>),
}

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("message body is not an S3 event notification: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("S3 event record without {0}")]
    Missing(&'static str),
    #[error("object key is not valid UTF-8 after URL decoding")]
    BadKey,
}

/// Decodes an S3 event key: `+` is a space, `%XX` an escaped byte.
pub fn decode_key(raw: &str) -> Result<String, NotificationError> {
    let plus_decoded = raw.replace('+', " ");
    percent_decode_str(&plus_decoded).decode_utf8().map(|c| c.into_owned()).map_err(|_| NotificationError::BadKey)
}

/// An S3-notification-shaped body naming one object (what the router forwards to a
/// channel queue; [`parse_body`] reads it back).
pub fn notification_body(object: &ObjectRef) -> String {
    let key: String = percent_encoding::utf8_percent_encode(&object.key, KEY_ESCAPES).to_string();
    serde_json::json!({
        "Records": [{
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": { "name": object.bucket },
                "object": { "key": key, "size": object.size, "eTag": object.etag, "versionId": object.version_id }
            }
        }]
    })
    .to_string()
}

/// Escapes like S3 does in notifications (everything but unreserved characters and `/`).
const KEY_ESCAPES: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'/').remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Parses the body of an SQS message sent by S3.
pub fn parse_body(body: &str) -> Result<Notification, NotificationError> {
    let value: serde_json::Value = serde_json::from_str(body)?;
    if value.get("Event").and_then(|e| e.as_str()) == Some("s3:TestEvent") {
        return Ok(Notification::Test);
    }
    let event: S3Notification = serde_json::from_value(value)?;
    let mut objects = Vec::with_capacity(event.records.len());
    for r in event.records {
        if !r.event_name.as_deref().unwrap_or("ObjectCreated").starts_with("ObjectCreated") {
            continue;
        }
        let bucket = r.s3.bucket.name.ok_or(NotificationError::Missing("s3.bucket.name"))?;
        let raw_key = r.s3.object.key.ok_or(NotificationError::Missing("s3.object.key"))?;
        objects.push(ObjectRef {
            bucket,
            key: decode_key(&raw_key)?,
            etag: r.s3.object.e_tag.filter(|e| !e.is_empty()),
            version_id: r.s3.object.version_id.filter(|v| !v.is_empty()),
            size: r.s3.object.size,
        });
    }
    Ok(Notification::Objects(objects))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_keys() {
        assert_eq!(decode_key("ecommerce%2Fexport+du+1%C3%A9r.csv").unwrap(), "ecommerce/export du 1ér.csv");
    }

    #[test]
    fn test_event_is_recognised() {
        let body =
            r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-23T10:00:00.000Z","Bucket":"b","RequestId":"x","HostId":"y"}"#;
        assert_eq!(parse_body(body).unwrap(), Notification::Test);
    }

    #[test]
    fn object_created_record() {
        let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-3","eventTime":"2026-11-23T10:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","configurationId":"c","bucket":{"name":"landing","arn":"arn:aws:s3:::landing"},"object":{"key":"ecommerce/orders+2026.csv","size":42,"eTag":"abc","sequencer":"1"}}}]}"#;
        let Notification::Objects(objs) = parse_body(body).unwrap() else { panic!("objects expected") };
        assert_eq!(objs[0].key, "ecommerce/orders 2026.csv");
        assert_eq!(objs[0].etag.as_deref(), Some("abc"));
        assert!(parse_body("not json").is_err());
    }

    #[test]
    fn forwarded_bodies_round_trip() {
        let object = ObjectRef {
            bucket: "landing".into(),
            key: "pos/caisse du 1er+2 %.csv".into(),
            etag: Some("\"e\"".into()),
            version_id: None,
            size: Some(7),
        };
        let Notification::Objects(objs) = parse_body(&notification_body(&object)).unwrap() else { panic!("objects expected") };
        assert_eq!(objs, vec![object]);
    }
}
