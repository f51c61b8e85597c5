//! Webhook request signing with HMAC-SHA256, in the style of Stripe's signatures.
//!
//! The sender puts `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>` in the
//! [`SIGNATURE_HEADER`] header. The receiver recomputes the MAC with the shared secret,
//! compares it in constant time and refuses timestamps too far from its clock, which
//! bounds replays. Several `v1=` entries may be present (e.g. while a secret is rotated);
//! any one that matches is enough. Entries of other schemes (`v0=`, …) are ignored.

use hmac::digest::{Key, KeyInit};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The HTTP header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Ariane-Signature";

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The header is not of the form `t=<unix seconds>,v1=<64 hex digits>[,v1=…]`.
    #[error("malformed signature header: {0}")]
    Malformed(String),
    /// The signature is authentic but its timestamp is too far from now (a replay, or a
    /// clock problem); `age_seconds` is now minus the timestamp (negative when it is in
    /// the future).
    #[error("signature timestamp is {age_seconds} s away from now, beyond the tolerance")]
    Expired {
        /// Now minus the signed timestamp, in seconds.
        age_seconds: i64,
    },
    /// No signature matches the body with this secret.
    #[error("signature does not match the request body")]
    Mismatch,
}

/// The header value signing `body` at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<lowercase hex of HMAC-SHA256(secret, "<timestamp>." + body)>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let tag = signed_payload_mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(tag))
}

/// Checks a [`SIGNATURE_HEADER`] value against `body`.
///
/// Passes when some `v1=` entry is the HMAC of `"<t>." + body` under `secret` (compared
/// in constant time) and `|now - t| <= tolerance_seconds` (a negative tolerance counts
/// as 0). The signature is checked before the timestamp, so
/// [`SignatureError::Expired`] is only reported for authentic requests.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_seconds: i64) -> Result<(), SignatureError> {
    let (timestamp, signatures) = parse_header(header)?;
    let mac = signed_payload_mac(secret, timestamp, body);
    // Every candidate is checked, so the time taken does not depend on which one matches.
    let matched = signatures.iter().fold(false, |found, sig| mac.clone().verify_slice(sig).is_ok() | found);
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if now.abs_diff(timestamp) > tolerance_seconds.max(0).unsigned_abs() {
        return Err(SignatureError::Expired { age_seconds: now.saturating_sub(timestamp) });
    }
    Ok(())
}

/// The MAC state after absorbing `"<timestamp>." + body`.
fn signed_payload_mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    let mut mac = keyed(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// HMAC-SHA256 keyed with `secret`, of any length.
///
/// RFC 2104 replaces a key longer than the hash's block (64 bytes) by its digest, then
/// pads it with zeros to the block size. Doing that here yields a block-sized key, for
/// which construction cannot fail, and the same MAC as keying with `secret` itself.
fn keyed(secret: &[u8]) -> HmacSha256 {
    let mut block = Key::<HmacSha256>::default();
    if secret.len() > block.len() {
        let digest = Sha256::digest(secret);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..secret.len()].copy_from_slice(secret);
    }
    <HmacSha256 as KeyInit>::new(&block)
}

/// The timestamp and the decoded `v1` signatures of a header value.
fn parse_header(header: &str) -> Result<(i64, Vec<Vec<u8>>), SignatureError> {
    let malformed = |why: String| Err(SignatureError::Malformed(why));
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((key, value)) = item.split_once('=') else {
            return malformed(format!("{item:?} is not a key=value pair"));
        };
        match key.trim() {
            "t" => {
                if timestamp.is_some() {
                    return malformed("more than one t= entry".into());
                }
                let value = value.trim();
                let valid = !value.is_empty() && value.strip_prefix('-').unwrap_or(value).bytes().all(|b| b.is_ascii_digit());
                match value.parse::<i64>() {
                    Ok(t) if valid => timestamp = Some(t),
                    _ => return malformed(format!("timestamp {value:?} is not a whole number of seconds")),
                }
            }
            "v1" => {
                let value = value.trim();
                match hex::decode(value) {
                    Ok(bytes) if bytes.len() == 32 => signatures.push(bytes),
                    _ => return malformed(format!("v1 signature {value:?} is not 64 hex digits")),
                }
            }
            _ => {} // Other schemes, for forward compatibility.
        }
    }
    let Some(timestamp) = timestamp else {
        return malformed("no t= timestamp".into());
    };
    if signatures.is_empty() {
        return malformed("no v1= signature".into());
    }
    Ok((timestamp, signatures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"a":1}"#;
    // python3 -c 'import hmac,hashlib;print(hmac.new(b"whsec_test", b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest())'
    const KNOWN: &str = "38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789";

    #[test]
    fn known_vector() {
        assert_eq!(sign(SECRET, 1_700_000_000, BODY), format!("t=1700000000,v1={KNOWN}"));
        assert_eq!(verify(SECRET, &format!("t=1700000000,v1={KNOWN}"), BODY, 1_700_000_010, 300), Ok(()));
    }

    #[test]
    fn keys_of_any_length() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"k"*100, b"42.", hashlib.sha256).hexdigest())'
        assert_eq!(sign(&[b'k'; 100], 42, b""), "t=42,v1=4db982d05c0ed99947717e4489eb9dcb4eedadae0f4eda7c3b18ded63c766369");
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"", b"-5.x", hashlib.sha256).hexdigest())'
        assert_eq!(sign(b"", -5, b"x"), "t=-5,v1=6e1c0cf1880fea36bb5a287f4e56687eff4851fbb3813c69d0b51c60ac6d7210");
        // Keys around the block size agree with the hmac crate's own keying.
        for len in [0, 1, 63, 64, 65, 200] {
            let key = vec![7u8; len];
            let mut reference = <HmacSha256 as KeyInit>::new_from_slice(&key).unwrap();
            reference.update(b"1.body");
            let expected = hex::encode(reference.finalize().into_bytes());
            assert_eq!(sign(&key, 1, b"body"), format!("t=1,v1={expected}"), "key of {len} bytes");
        }
    }

    #[test]
    fn round_trip() {
        let header = sign(SECRET, 1_800_000_000, b"hello");
        assert_eq!(verify(SECRET, &header, b"hello", 1_800_000_000, 0), Ok(()));
        assert_eq!(verify(SECRET, &header, b"hello", 1_800_000_300, 300), Ok(()));
        assert_eq!(verify(SECRET, &header, b"hello", 1_799_999_700, 300), Ok(()));
    }

    #[test]
    fn tampering_is_detected() {
        let header = sign(SECRET, 1_800_000_000, b"hello");
        assert_eq!(verify(SECRET, &header, b"hellO", 1_800_000_000, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"other", &header, b"hello", 1_800_000_000, 300), Err(SignatureError::Mismatch));
        // The timestamp is signed too.
        let moved = header.replacen("t=1800000000", "t=1800000001", 1);
        assert_eq!(verify(SECRET, &moved, b"hello", 1_800_000_000, 300), Err(SignatureError::Mismatch));
    }

    #[test]
    fn expiry() {
        let header = sign(SECRET, 1_800_000_000, b"hello");
        assert_eq!(verify(SECRET, &header, b"hello", 1_800_000_301, 300), Err(SignatureError::Expired { age_seconds: 301 }));
        assert_eq!(verify(SECRET, &header, b"hello", 1_799_999_000, 300), Err(SignatureError::Expired { age_seconds: -1000 }));
        assert_eq!(verify(SECRET, &header, b"hello", 1_800_000_001, -10), Err(SignatureError::Expired { age_seconds: 1 }));
        // Extreme clocks do not overflow.
        let old = sign(SECRET, i64::MIN, b"x");
        assert_eq!(verify(SECRET, &old, b"x", i64::MAX, 300), Err(SignatureError::Expired { age_seconds: i64::MAX }));
        // A forged request is reported as a mismatch, whatever its age.
        let forged = format!("t=1,v1={KNOWN}");
        assert_eq!(verify(SECRET, &forged, BODY, 1_800_000_000, 300), Err(SignatureError::Mismatch));
    }

    #[test]
    fn several_signatures() {
        let good = sign(SECRET, 1_800_000_000, b"hello");
        let other = sign(b"old-secret", 1_800_000_000, b"hello");
        let other_v1 = other.split_once(",v1=").unwrap().1;
        let good_v1 = good.split_once(",v1=").unwrap().1;
        let both = format!("t=1800000000, v1={other_v1}, v1={good_v1}, v0=whatever");
        assert_eq!(verify(SECRET, &both, b"hello", 1_800_000_000, 300), Ok(()));
        assert_eq!(verify(b"old-secret", &both, b"hello", 1_800_000_000, 300), Ok(()));
        assert_eq!(verify(b"third", &both, b"hello", 1_800_000_000, 300), Err(SignatureError::Mismatch));
        // Order does not matter.
        let reordered = format!("v1={good_v1},t=1800000000");
        assert_eq!(verify(SECRET, &reordered, b"hello", 1_800_000_000, 300), Ok(()));
    }

    #[test]
    fn malformed_headers() {
        let v1 = KNOWN;
        let cases = [
            String::new(),
            "garbage".into(),
            format!("v1={v1}"),
            "t=1700000000".into(),
            format!("t=abc,v1={v1}"),
            format!("t=+1700000000,v1={v1}"),
            format!("t=,v1={v1}"),
            format!("t=99999999999999999999,v1={v1}"),
            format!("t=1,t=2,v1={v1}"),
            "t=1700000000,v1=zz".into(),
            format!("t=1700000000,v1={}", &v1[..62]),
            format!("t=1700000000,v1={v1}00"),
            format!("t=1700000000,v1={v1},oops"),
        ];
        for header in cases {
            match verify(SECRET, &header, BODY, 1_700_000_000, 300) {
                Err(SignatureError::Malformed(why)) => assert!(!why.is_empty()),
                other => panic!("{header:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn messages() {
        assert_eq!(SignatureError::Mismatch.to_string(), "signature does not match the request body");
        assert!(SignatureError::Expired { age_seconds: 400 }.to_string().contains("400"));
        assert!(SignatureError::Malformed("no t= timestamp".into()).to_string().contains("no t= timestamp"));
        assert_eq!(SIGNATURE_HEADER, "X-Ariane-Signature");
    }

    proptest! {
        #[test]
        fn sign_then_verify(secret in proptest::collection::vec(any::<u8>(), 0..100), body in proptest::collection::vec(any::<u8>(), 0..200), t in any::<i64>(), flip in any::<usize>()) {
            let header = sign(&secret, t, &body);
            prop_assert_eq!(verify(&secret, &header, &body, t, 0), Ok(()));
            if !body.is_empty() {
                let mut tampered = body.clone();
                let i = flip % tampered.len();
                tampered[i] ^= 1;
                prop_assert_eq!(verify(&secret, &header, &tampered, t, 0), Err(SignatureError::Mismatch));
            }
        }
    }
}
