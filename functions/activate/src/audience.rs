//! Hashed customer lists for ad platforms (retargeting audiences: Meta Custom Audiences,
//! Google Customer Match).
//!
//! Both platforms match customers on SHA-256 hashes of normalised identifiers. The
//! normalisation is the one every function uses (`ariane_shared::identifiers`: e-mail
//! trimmed, lowercased and checked; phone to E.164, `33612345678` included), with only
//! each platform's own step on top: Google removes the dots of a gmail.com or
//! googlemail.com local part and hashes E.164 with its `+`; Meta hashes the digits
//! without `+`. An identifier normalised differently from the platform's own hashing
//! never matches. The clear identifiers never leave this module unhashed.

use std::fmt;

use ariane_shared::identifiers::{self, sha256_hex, IdentifierError};
use phonenumber::country::Id as Region;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An advertising platform that receives customer lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// Meta (Facebook, Instagram) Custom Audiences.
    Meta,
    /// Google Ads Customer Match.
    Google,
}

/// A platform name that is neither `meta` nor `google`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown ad platform {0:?}: expected \"meta\" or \"google\"")]
pub struct UnknownPlatform(pub String);

impl Platform {
    /// Parses `"meta"` or `"google"` (case-insensitive, surrounding whitespace ignored).
    pub fn parse(s: &str) -> Result<Self, UnknownPlatform> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("meta") {
            Ok(Self::Meta)
        } else if t.eq_ignore_ascii_case("google") {
            Ok(Self::Google)
        } else {
            Err(UnknownPlatform(s.to_string()))
        }
    }

    /// `"meta"` or `"google"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Google => "google",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Platform {
    type Err = UnknownPlatform;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Platform {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The e-mail address as `platform` hashes it: the shared normalisation
/// ([`identifiers::normalize_email`]), then, for Google only, every `.` of the local
/// part of `gmail.com` and `googlemail.com` addresses removed, as Customer Match
/// requires (Meta keeps them).
pub fn normalize_email(platform: Platform, raw: &str) -> Result<String, IdentifierError> {
    let email = identifiers::normalize_email(raw)?;
    if platform == Platform::Google {
        if let Some((local, domain)) = email.split_once('@') {
            if matches!(domain, "gmail.com" | "googlemail.com") {
                // The shared check refuses a local part made of dots only, so this is never empty.
                return Ok(format!("{}@{domain}", local.replace('.', "")));
            }
        }
    }
    Ok(email)
}

/// The phone number as `platform` hashes it: the shared E.164 normalisation
/// ([`identifiers::normalize_phone`], national numbers read in `region`), then Google
/// takes E.164 with its `+` (`"+33612345678"`) and Meta the digits with the country
/// code, without `+` (`"33612345678"`).
pub fn normalize_phone(platform: Platform, raw: &str, region: Region) -> Result<String, IdentifierError> {
    let e164 = identifiers::normalize_phone(raw, region)?;
    Ok(match platform {
        Platform::Google => e164,
        Platform::Meta => e164.trim_start_matches('+').to_string(),
    })
}

/// One hashed line of an audience file: `(email, phone)` SHA-256 hex, either may be absent.
pub type HashedRow = (Option<String>, Option<String>);

/// The clear identifiers of one person, as found on the profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudienceMember {
    /// E-mail addresses, raw.
    pub emails: Vec<String>,
    /// Phone numbers, raw (national numbers are read in the default region).
    pub phones: Vec<String>,
}

/// The hashed `(email, phone)` rows of one person for `platform`.
///
/// Each identifier is normalised ([`normalize_email`], [`normalize_phone`]; those the
/// shared normalisation refuses cannot be matched and are left out) and hashed; each
/// list is deduplicated and sorted by hash. There are as many rows as the longer list:
/// the i-th e-mail goes with the i-th phone, `None` where one list is shorter. A person
/// without any valid identifier gives no row.
pub fn audience_rows(platform: Platform, member: &AudienceMember, region: Region) -> Vec<HashedRow> {
    let hashed = |values: Vec<String>| {
        let mut hashes: Vec<String> = values.iter().map(|v| sha256_hex(v)).collect();
        hashes.sort();
        hashes.dedup();
        hashes
    };
    let emails = hashed(member.emails.iter().filter_map(|e| normalize_email(platform, e).ok()).collect());
    let phones = hashed(member.phones.iter().filter_map(|p| normalize_phone(platform, p, region).ok()).collect());
    let rows = emails.len().max(phones.len());
    (0..rows).map(|i| (emails.get(i).cloned(), phones.get(i).cloned())).collect()
}
/// The CSV file to upload: a header (`email,phone` for Meta, `Email,Phone` for Google),
/// then one line per row, an empty field for `None`, `\n` line endings. Fields are
/// quoted (RFC 4180) only if they contain a comma, a quote or a line break, which hex
/// hashes never do.
pub fn render_csv(platform: Platform, rows: &[HashedRow]) -> Vec<u8> {
    let header = match platform {
        Platform::Meta => "email,phone\n",
        Platform::Google => "Email,Phone\n",
    };
    let mut out = String::with_capacity(header.len() + rows.len() * 130);
    out.push_str(header);
    for (email, phone) in rows {
        push_field(&mut out, email.as_deref());
        out.push(',');
        push_field(&mut out, phone.as_deref());
        out.push('\n');
    }
    out.into_bytes()
}

fn push_field(out: &mut String, value: Option<&str>) {
    let Some(value) = value else { return };
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ariane_shared::identifiers::phone_region;
    use proptest::prelude::*;

    const FR: Region = Region::FR;

    // Expected hashes computed independently with Python's hashlib.
    const H_MARIE_DOTS: &str = "708c00ac64b84e6bdd1c4e0682cdd3dee2dcf86f93c8fb1a34d6eebada7fda9c"; // marie.dupont@gmail.com
    const H_MARIE_NO_DOTS: &str = "c1df8cd174e22ca05bc9f7cf1390f000b96f5c61aca06dcd002f79d0250b229a"; // mariedupont@gmail.com
    const H_JEAN: &str = "db18daec97c2f6d6df124e0f4b29f654c853f36b596a0e9e5191e512df7a9bca"; // jean.martin@orange.fr
    const H_PHONE_PLUS: &str = "42d573cfc315801d4cd8eddd5416b416a0bf298b9b9e12d6b07442c91db42bd8"; // +33612345678
    const H_PHONE_DIGITS: &str = "8a3e7886c9335e82e02299fa3e87b46e2de3b0c63d56003e30a5029394a47661"; // 33612345678
    const H_PAUL_NO_DOTS: &str = "dc77b6aa5562f7ca1bcdd03c94a957038247abd780dcec68460186a94f2c16ba"; // pauldurand@googlemail.com

    #[test]
    fn emails() {
        let raw = " Marie.Dupont@Gmail.com ";
        assert_eq!(normalize_email(Platform::Meta, raw).ok().as_deref(), Some("marie.dupont@gmail.com"));
        assert_eq!(normalize_email(Platform::Google, raw).ok().as_deref(), Some("mariedupont@gmail.com"));
        assert_eq!(sha256_hex(&normalize_email(Platform::Meta, raw).unwrap()), H_MARIE_DOTS);
        assert_eq!(sha256_hex(&normalize_email(Platform::Google, raw).unwrap()), H_MARIE_NO_DOTS);

        for platform in [Platform::Meta, Platform::Google] {
            assert_eq!(normalize_email(platform, "Jean.Martin@orange.fr").ok().as_deref(), Some("jean.martin@orange.fr"));
            assert_eq!(sha256_hex(&normalize_email(platform, "Jean.Martin@orange.fr").unwrap()), H_JEAN);
        }
        assert_eq!(normalize_email(Platform::Google, "Paul.Durand@GoogleMail.com").ok().as_deref(), Some("pauldurand@googlemail.com"));
        assert_eq!(sha256_hex(&normalize_email(Platform::Google, "paul.durand@googlemail.com").unwrap()), H_PAUL_NO_DOTS);
        // Dots stay in the domain, and in the local part of other domains.
        assert_eq!(normalize_email(Platform::Google, "a.b@mail.gmail.com.fr").ok().as_deref(), Some("a.b@mail.gmail.com.fr"));
    }

    #[test]
    fn invalid_emails() {
        for platform in [Platform::Meta, Platform::Google] {
            for bad in [
                "not-an-email",
                "",
                "@",
                "@orange.fr",
                "jean@",
                "jean@orange",
                "jean@@orange.fr",
                "a@b@c.fr",
                "jean martin@orange.fr",
                "jean@orange..fr",
                "jean@.fr",
                "jean@orange.fr.",
            ] {
                assert!(normalize_email(platform, bad).is_err(), "{bad:?}");
            }
        }
        // A local part of dots only is not an address, for either platform.
        assert!(normalize_email(Platform::Google, "...@gmail.com").is_err());
        assert!(normalize_email(Platform::Meta, "...@gmail.com").is_err());
    }

    #[test]
    fn phones() {
        assert_eq!(normalize_phone(Platform::Google, "06 12 34 56 78", FR).ok().as_deref(), Some("+33612345678"));
        assert_eq!(normalize_phone(Platform::Meta, "06 12 34 56 78", FR).ok().as_deref(), Some("33612345678"));
        assert_eq!(normalize_phone(Platform::Meta, "06.12.34.56.78", phone_region("fr").unwrap()).ok().as_deref(), Some("33612345678"));
        assert_eq!(normalize_phone(Platform::Google, "+33 6 12 34 56 78", Region::BE).ok().as_deref(), Some("+33612345678"));
        assert_eq!(sha256_hex(&normalize_phone(Platform::Google, "06 12 34 56 78", FR).unwrap()), H_PHONE_PLUS);
        assert_eq!(sha256_hex(&normalize_phone(Platform::Meta, "06 12 34 56 78", FR).unwrap()), H_PHONE_DIGITS);
        // International form needs no region; a national number is read in the region.
        assert_eq!(normalize_phone(Platform::Meta, "+33612345678", Region::US).ok().as_deref(), Some("33612345678"));
        assert!(normalize_phone(Platform::Meta, "0612345678", Region::US).is_err());
        // International form without `+`, as SMS gateways export numbers (ingest accepts it).
        assert_eq!(normalize_phone(Platform::Google, "33612345678", FR).ok().as_deref(), Some("+33612345678"));
        assert_eq!(normalize_phone(Platform::Meta, "33612345678", FR).ok().as_deref(), Some("33612345678"));
        assert_eq!(sha256_hex(&normalize_phone(Platform::Meta, "33612345678", FR).unwrap()), H_PHONE_DIGITS);
        for platform in [Platform::Meta, Platform::Google] {
            for bad in ["not-a-phone", "0000000000", "12", "", "+", "06 12 34"] {
                assert!(normalize_phone(platform, bad, FR).is_err(), "{bad:?}");
            }
        }
    }

    #[test]
    fn trunk_prefix_in_parentheses() {
        // "+33 (0)6 …" is a common French way of writing numbers: the parser drops the
        // national prefix.
        for raw in ["+33 (0)6 12 34 56 78", "+33 (0) 6 12 34 56 78"] {
            assert_eq!(normalize_phone(Platform::Google, raw, FR).ok().as_deref(), Some("+33612345678"), "{raw}");
            assert_eq!(normalize_phone(Platform::Meta, raw, FR).ok().as_deref(), Some("33612345678"), "{raw}");
        }
    }

    #[test]
    fn platform_parse_and_serde() {
        assert_eq!(Platform::parse("META"), Ok(Platform::Meta));
        assert_eq!("google".parse::<Platform>(), Ok(Platform::Google));
        assert_eq!(Platform::parse(" google "), Ok(Platform::Google));
        let err = Platform::parse("tiktok").unwrap_err().to_string();
        assert!(err.contains("\"tiktok\"") && err.contains("meta") && err.contains("google"), "{err}");
        for p in [Platform::Meta, Platform::Google] {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<Platform>(&json).unwrap(), p);
        }
        assert!(serde_json::from_str::<Platform>("\"x\"").is_err());
    }

    #[test]
    fn rows_pair_identifiers() {
        let member = AudienceMember {
            emails: vec![" Marie.Dupont@Gmail.com ".into(), "marie.dupont@gmail.com".into(), "Jean.Martin@orange.fr".into(), "bad".into()],
            phones: vec!["06 12 34 56 78".into(), "+33612345678".into(), "12".into()],
        };
        let meta = audience_rows(Platform::Meta, &member, FR);
        // Sorted by hash: 708c… (marie) before db18… (jean).
        assert_eq!(meta, vec![(Some(H_MARIE_DOTS.to_string()), Some(H_PHONE_DIGITS.to_string())), (Some(H_JEAN.to_string()), None),]);
        let google = audience_rows(Platform::Google, &member, FR);
        assert_eq!(google, vec![(Some(H_MARIE_NO_DOTS.to_string()), Some(H_PHONE_PLUS.to_string())), (Some(H_JEAN.to_string()), None),]);

        let phones_only = AudienceMember { emails: vec![], phones: vec!["0612345678".into()] };
        assert_eq!(audience_rows(Platform::Google, &phones_only, FR), vec![(None, Some(H_PHONE_PLUS.to_string()))]);

        let nothing = AudienceMember { emails: vec!["nope".into()], phones: vec!["0000000000".into()] };
        assert!(audience_rows(Platform::Meta, &nothing, FR).is_empty());
    }

    #[test]
    fn csv() {
        let rows = vec![(Some("aa".to_string()), Some("bb".to_string())), (Some("cc".to_string()), None), (None, Some("dd".to_string()))];
        assert_eq!(String::from_utf8(render_csv(Platform::Meta, &rows)).unwrap(), "email,phone\naa,bb\ncc,\n,dd\n");
        assert_eq!(String::from_utf8(render_csv(Platform::Google, &rows)).unwrap(), "Email,Phone\naa,bb\ncc,\n,dd\n");
        assert_eq!(render_csv(Platform::Google, &[]), b"Email,Phone\n");
        let odd = vec![(Some("a,\"b\"".to_string()), None)];
        assert_eq!(String::from_utf8(render_csv(Platform::Meta, &odd)).unwrap(), "email,phone\n\"a,\"\"b\"\"\",\n");
    }

    /// Every identifier the shared normalisation accepts is hashed, and the platforms'
    /// forms are the shared form with only their own step on top (one home for the
    /// normalisation: ingest, identity and the audiences agree on the same inputs).
    #[test]
    fn audiences_hash_what_the_shared_normalisation_accepts() {
        let phones = [
            "06 12 34 56 78",
            "0612345678",
            "+33 6 12 34 56 78",
            "0033612345678",
            "33612345678",
            "+33 (0)6 12 34 56 78",
            "+44 20 7946 0958",
            "0690 12 34 56",
            "12",
            "0000000000",
            "not a phone",
            "",
        ];
        for raw in phones {
            let shared = identifiers::normalize_phone(raw, FR).ok();
            assert_eq!(normalize_phone(Platform::Google, raw, FR).ok(), shared, "{raw:?}");
            assert_eq!(
                normalize_phone(Platform::Meta, raw, FR).ok(),
                shared.as_ref().map(|e| e.trim_start_matches('+').to_string()),
                "{raw:?}"
            );
            let member = AudienceMember { emails: vec![], phones: vec![raw.to_string()] };
            assert_eq!(audience_rows(Platform::Meta, &member, FR).len(), usize::from(shared.is_some()), "{raw:?}");
        }
        let emails = [
            " Marie.Dupont@Gmail.com ",
            "jean.martin@orange.fr",
            "Élodie@Orange.fr",
            "a.b@googlemail.com",
            "a@b",
            "a..b@x.fr",
            "x@y.z1",
            "",
            "ma rie@x.fr",
        ];
        for raw in emails {
            let shared = identifiers::normalize_email(raw).ok();
            assert_eq!(normalize_email(Platform::Meta, raw).ok(), shared, "{raw:?}");
            let google = normalize_email(Platform::Google, raw).ok();
            assert_eq!(google.is_some(), shared.is_some(), "{raw:?}");
            if let (Some(g), Some(s)) = (&google, &shared) {
                let gmail = s.ends_with("@gmail.com") || s.ends_with("@googlemail.com");
                assert_eq!(g == s, !gmail || !s.split('@').next().unwrap_or_default().contains('.'), "{raw:?}: {g} / {s}");
            }
            let member = AudienceMember { emails: vec![raw.to_string()], phones: vec![] };
            assert_eq!(audience_rows(Platform::Google, &member, FR).len(), usize::from(shared.is_some()), "{raw:?}");
        }
    }

    proptest! {
        #[test]
        fn email_normalization_is_idempotent(raw in "[ a-zA-Z0-9.@_+-]{0,30}") {
            for platform in [Platform::Meta, Platform::Google] {
                if let Ok(n) = normalize_email(platform, &raw) {
                    let again = normalize_email(platform, &n).ok();
                    prop_assert_eq!(again.as_deref(), Some(n.as_str()));
                    prop_assert_eq!(n.matches('@').count(), 1);
                    prop_assert!(!n.chars().any(|c| c.is_uppercase() || c.is_whitespace()));
                }
            }
        }

        #[test]
        fn phone_normalization_never_panics_and_is_stable(raw in "[ +()0-9.-]{0,20}") {
            let google = normalize_phone(Platform::Google, &raw, FR).ok();
            let meta = normalize_phone(Platform::Meta, &raw, FR).ok();
            prop_assert_eq!(google.is_some(), meta.is_some());
            if let (Some(g), Some(m)) = (google, meta) {
                prop_assert_eq!(g.strip_prefix('+'), Some(m.as_str()));
                prop_assert_eq!(normalize_phone(Platform::Google, &g, FR).ok(), Some(g.clone()));
            }
        }

        #[test]
        fn rows_cover_every_valid_identifier(
            emails in proptest::collection::vec("[a-c]{1,2}(\\.[a-c])?@(gmail\\.com|x\\.fr|bad)", 0..5),
            phones in proptest::collection::vec("0[67] 12 34 5[0-2] 7[0-2]|12", 0..5),
        ) {
            let member = AudienceMember { emails, phones };
            for platform in [Platform::Meta, Platform::Google] {
                let rows = audience_rows(platform, &member, FR);
                let mut e: Vec<_> = member.emails.iter().filter_map(|x| normalize_email(platform, x).ok()).map(|x| sha256_hex(&x)).collect();
                let mut p: Vec<_> = member.phones.iter().filter_map(|x| normalize_phone(platform, x, FR).ok()).map(|x| sha256_hex(&x)).collect();
                e.sort();
                e.dedup();
                p.sort();
                p.dedup();
                prop_assert_eq!(rows.len(), e.len().max(p.len()));
                prop_assert!(rows.iter().all(|(a, b)| a.is_some() || b.is_some()));
                prop_assert_eq!(rows.iter().filter_map(|r| r.0.clone()).collect::<Vec<_>>(), e);
                prop_assert_eq!(rows.iter().filter_map(|r| r.1.clone()).collect::<Vec<_>>(), p);
                let csv = render_csv(platform, &rows);
                prop_assert_eq!(csv.iter().filter(|&&b| b == b'\n').count(), rows.len() + 1);
            }
        }
    }
}
