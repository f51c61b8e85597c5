//! One normalisation of identifiers, three callers that must agree on the same inputs:
//! ingest (what lands in the profiles and, hashed, in the lake), identity (erasure,
//! repair and lookup requests) and activation (the values hashed for ad audiences). A
//! value one of them accepts and another refuses, or writes differently, is a person
//! an erasure misses or an audience loses. No AWS: each function's own code path.

use ariane_activate::audience::{normalize_email as audience_email, normalize_phone as audience_phone, Platform};
use ariane_identity::handler::normalize_request;
use ariane_identity::rules::Rules;
use ariane_ingest::engine;
use ariane_ingest::map::FileContext;
use ariane_ingest::sink::Collected;
use ariane_ingest::spec::Spec;
use ariane_shared::identifiers::{Identifier, IdentifierKind as K};

/// The identifier ingest keeps for `raw` in a CRM export column of that kind (`None`:
/// dropped as unusable, with a warning).
fn ingest(kind: K, raw: &str) -> Option<String> {
    let spec = Spec::parse(
        "channels/crm/agreement.toml",
        "channel = \"crm\"\nname = \"agreement\"\n[format]\nkind = \"csv\"\n[event_type]\nconstant = \"contact_updated\"\n[fields]\n\
         occurred_at = { source = \"Date\", format = \"%Y-%m-%d\" }\n\
         email = { source = \"Email\" }\nphone = { source = \"Phone\" }\nloyalty_card = { source = \"Card\" }\n\
         customer_id = { source = \"Customer\" }\ncookie_id = { source = \"Cookie\" }\n",
    )
    .expect("a valid spec");
    let column = ["Email", "Phone", "Card", "Customer", "Cookie"]
        .iter()
        .position(|c| {
            *c == match kind {
                K::Email => "Email",
                K::Phone => "Phone",
                K::LoyaltyCard => "Card",
                K::CustomerId => "Customer",
                _ => "Cookie",
            }
        })
        .expect("a column");
    let mut cells = vec![String::new(); 5];
    cells[column] = format!("\"{}\"", raw.replace('"', "\"\""));
    let csv = format!("Date,Email,Phone,Card,Customer,Cookie\n2026-11-02,{}\n", cells.join(","));
    let mut sink = Collected::default();
    let file = FileContext { source_key: "crm/agreement.csv".into(), fingerprint: "fp".into() };
    engine::parse(Box::new(std::io::Cursor::new(csv.into_bytes())), &spec, file, &mut sink).expect("the file reads");
    sink.observations.iter().flat_map(|o| o.identifiers.iter()).find(|i| i.kind == kind).map(|i| i.value.clone())
}

/// What identity looks up for a request naming `raw`.
fn identity(kind: K, raw: &str) -> Option<String> {
    normalize_request(&Identifier::new(kind, raw), &Rules::embedded().expect("rules")).ok().map(|i| i.value)
}

/// What activation hashes for an ad audience, before the platform's own step (Meta keeps
/// e-mails as they are; Google hashes phones in E.164): `None` for kinds audiences do
/// not carry.
fn activation(kind: K, raw: &str) -> Option<Option<String>> {
    let fr = phonenumber::country::Id::FR;
    match kind {
        K::Email => Some(audience_email(Platform::Meta, raw).ok()),
        K::Phone => Some(audience_phone(Platform::Google, raw, fr).ok()),
        _ => None,
    }
}

#[test]
fn ingest_identity_and_activation_normalise_identifiers_alike() {
    let table: &[(K, &str, Option<&str>)] = &[
        (K::Email, "marie@x.fr", Some("marie@x.fr")),
        (K::Email, "  Marie.Dupont@Gmail.COM ", Some("marie.dupont@gmail.com")),
        (K::Email, "élodie@orange.fr", Some("élodie@orange.fr")),
        (K::Email, "a..b@x.fr", None),
        (K::Email, "marie@", None),
        (K::Email, "ma rie@x.fr", None),
        (K::Email, "a@b.12", None),
        (K::Phone, "06 12 34 56 78", Some("+33612345678")),
        (K::Phone, "+33 6 12 34 56 78", Some("+33612345678")),
        (K::Phone, "0033612345678", Some("+33612345678")),
        // International form without the `+`, as SMS gateways export it: the case that
        // ingest accepted and audience hashing refused before there was one home.
        (K::Phone, "33612345678", Some("+33612345678")),
        (K::Phone, "06.12.34.56.78", Some("+33612345678")),
        (K::Phone, "+44 20 7946 0958", Some("+442079460958")),
        (K::Phone, "12", None),
        (K::Phone, "not a phone", None),
        (K::LoyaltyCard, " 2900001 ", Some("2900001")),
        (K::CustomerId, "C-42", Some("C-42")),
        (K::CookieId, "AbC-1", Some("AbC-1")),
        (K::CookieId, "a\u{1}b", None),
    ];
    for (kind, raw, want) in table {
        let want = want.map(str::to_string);
        assert_eq!(ingest(*kind, raw), want, "ingest, {kind} {raw:?}");
        assert_eq!(identity(*kind, raw), want, "identity, {kind} {raw:?}");
        if let Some(hashed) = activation(*kind, raw) {
            assert_eq!(hashed, want, "activation, {kind} {raw:?}");
        }
    }
}
