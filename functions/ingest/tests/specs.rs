//! Every channel spec against small, dirty, hand-written exports: no AWS, the real
//! embedded specs, the real readers.

use std::io::Write;

use ariane_ingest::engine::{self, Counts, LocalTimes, Skipped};
use ariane_ingest::map::FileContext;
use ariane_ingest::sink::Collected;
use ariane_ingest::source::FileError;
use ariane_ingest::spec::{Catalog, Spec};
use ariane_shared::identifiers::{Identifier, IdentifierKind};
use ariane_shared::model::{CanonicalEvent, ConsentChannel, LocalTime, Observation};

fn spec(channel: &str, key: &str) -> Spec {
    let catalog = Catalog::embedded().expect("valid specs");
    catalog.select(channel, key).expect("a spec").clone()
}

fn run_bytes(channel: &str, key: &str, body: Vec<u8>) -> (Result<Counts, FileError>, Collected) {
    let spec = spec(channel, key);
    let mut sink = Collected::default();
    let file = FileContext { source_key: key.into(), fingerprint: "fp".into() };
    let lines = physical_lines(&body);
    let counts = engine::parse(Box::new(std::io::Cursor::new(body)), &spec, file, &mut sink);
    if let Ok(c) = &counts {
        assert_eq!(c.rows_read, c.events + c.rejected, "rows read = events + rejected");
        assert_eq!(c.events as usize, sink.events.len());
        assert_eq!(c.rejected as usize, sink.rejected.len());
        assert_eq!(c.lines_read, lines, "the reader counts the file's physical lines: {c:?}");
        assert!(c.lines_reconcile(), "lines read = events + rejected + skipped: {c:?}");
    }
    (counts, sink)
}

/// The physical lines of a file's content (gunzipped, without a byte-order mark), counted
/// independently of the readers: every `\n` ends one, a last line without one counts.
fn physical_lines(body: &[u8]) -> u64 {
    let mut content = body.to_vec();
    if content.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        if std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(body), &mut out).is_err() {
            return 0; // a truncated file: a file error, no counts
        }
        content = out;
    }
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&content);
    content.iter().filter(|b| **b == b'\n').count() as u64 + u64::from(content.last().is_some_and(|b| *b != b'\n'))
}

fn run(channel: &str, key: &str, body: &str) -> (Result<Counts, FileError>, Collected) {
    run_bytes(channel, key, body.as_bytes().to_vec())
}

fn cp1252(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
    assert!(!unmappable);
    bytes.into_owned()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

const POS_HEADER: &str = "Magasin;Date;Caisse;Ticket;Ligne;Type;Carte fidélité;Email;Téléphone;Code article;Libellé;Rayon;Quantité;Prix unitaire;Montant ligne;Total ticket\r\n";

fn pos_sample() -> String {
    format!(
        "{POS_HEADER}\
         M012;29/03/2026 01:45;C2;T1001;1;VENTE;fid 0042 17; Marie.Dupont@Gmail.com ;06 12 34 56 78;SKU-1;Crème hydratante;Beauté;2;12,50;25,00;37,40\r\n\
         M012;;;T1001;2;;;;;SKU-2;Pull col roulé;Vêtements;1;12,40;12,40;\r\n\
         \r\n\
         M012;29/03/2026 02:30;C2;T1002;1;PASSAGE;FID004217;;;;;;;;;\r\n\
         M012;25/10/2026 02:30;C1;T1003;1;RETOUR;;;;SKU-1;Crème hydratante;Beauté;-1;12,50;-12,50;-12,50\r\n\
         M012;25/10/2026 10:00;C1;T1004;1;VENTE;;;;SKU-3;Écharpe;Accessoires;1;12,5O;12,50;12,50\r\n\
         M012;25/10/2026 10:05;C1;T1005;1;ECHANGE;;;;SKU-3;Écharpe;Accessoires;1;9,90;9,90;9,90\r\n\
         M012;25/10/2026 10:05;C1;T1006;1;VENTE;;;\r\n"
    )
}

#[test]
fn pos_windows_1252_decimal_comma_fill_down_and_dst() {
    let (counts, sink) = run_bytes("pos", "pos/2026-10-25/M012.csv", cp1252(&pos_sample()));
    let counts = counts.unwrap();
    assert_eq!((counts.rows_read, counts.events, counts.rejected), (7, 4, 3));
    let [first, second, visit, ret] = &sink.events[..] else { panic!("{:?}", sink.events) };
    // Windows-1252 bytes decoded without mojibake.
    assert_eq!(first.product_name.as_deref(), Some("Crème hydratante"));
    assert_eq!(first.category.as_deref(), Some("Beauté"));
    // Decimal comma, exact cents.
    assert_eq!((first.unit_price_minor, first.line_total_minor, first.order_total_minor), (Some(1250), Some(2500), Some(3740)));
    // Fill-down: the second line takes the receipt's date, card, email and total.
    assert_eq!(second.occurred_at, first.occurred_at);
    assert_eq!(second.anchor_id, first.anchor_id);
    assert_eq!(second.order_total_minor, Some(3740));
    assert_eq!(second.event_type, "store_purchase");
    assert_eq!(second.order_id.as_deref(), Some("M012-T1001"));
    // 01:45 Paris winter time = 00:45 UTC; 02:30 on the spring-forward night does not
    // exist and is read with the winter offset; 02:30 on the fall-back night is the first.
    assert_eq!(first.occurred_at.to_rfc3339(), "2026-03-29T00:45:00+00:00");
    assert_eq!(visit.event_type, "store_visit");
    assert_eq!(visit.occurred_at.to_rfc3339(), "2026-03-29T01:30:00+00:00");
    assert_eq!(visit.sku, None);
    assert_eq!(ret.event_type, "return");
    assert_eq!(ret.occurred_at.to_rfc3339(), "2026-10-25T00:30:00+00:00");
    // Those two local times are flagged (the lake's local_time) and counted.
    assert_eq!((visit.local_time, ret.local_time), (Some(LocalTime::Shifted), Some(LocalTime::Ambiguous)));
    assert_eq!((first.local_time, second.local_time), (None, None));
    assert_eq!(counts.local_time, LocalTimes { shifted: 1, ambiguous: 1 });
    assert_eq!(ret.line_total_minor, Some(-1250));
    // Identifiers: card normalised, email lowercased, phone to E.164; one observation for
    // the two lines of the receipt, one for the visit.
    let o = &sink.observations[0];
    assert!(o.identifiers.contains(&Identifier::new(IdentifierKind::LoyaltyCard, "FID004217")));
    assert!(o.identifiers.contains(&Identifier::new(IdentifierKind::Email, "marie.dupont@gmail.com")));
    assert!(o.identifiers.contains(&Identifier::new(IdentifierKind::Phone, "+33612345678")));
    assert_eq!(sink.observations.len(), 2);
    assert_eq!(visit.anchor_id, ariane_shared::identifiers::identity_key(&[Identifier::new(IdentifierKind::LoyaltyCard, "FID004217")]));
    // Rejects keep physical line numbers (blank line counted), reason and raw row.
    let lines: Vec<u64> = sink.rejected.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![7, 8, 9]);
    assert!(sink.rejected[0].reason.contains("12,5O"), "{}", sink.rejected[0].reason);
    assert!(sink.rejected[0].raw.contains("Écharpe"), "raw row decoded: {}", sink.rejected[0].raw);
    assert!(sink.rejected[1].reason.contains("ECHANGE"), "{}", sink.rejected[1].reason);
    assert!(sink.rejected[2].reason.contains("expected 16 fields"), "{}", sink.rejected[2].reason);
    // Lake rows carry hashes only.
    assert_eq!(first.email_hash.as_deref().map(str::len), Some(64));
}

#[test]
fn pos_utf8_with_bom_reads_the_same() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(pos_sample().as_bytes());
    let (counts, sink) = run_bytes("pos", "pos/x.csv", bytes);
    let (cp_counts, cp_sink) = run_bytes("pos", "pos/x.csv", cp1252(&pos_sample()));
    assert_eq!(counts.unwrap(), cp_counts.unwrap());
    assert_eq!(sink.events, cp_sink.events);
    assert_eq!(sink.events[0].product_name.as_deref(), Some("Crème hydratante"));
}

#[test]
fn gzip_is_detected_and_truncation_is_a_file_error() {
    let body = gzip(&cp1252(&pos_sample()));
    let (counts, sink) = run_bytes("pos", "pos/x.csv.gz", body.clone());
    assert_eq!(counts.unwrap().events, 4);
    assert_eq!(sink.events[0].product_name.as_deref(), Some("Crème hydratante"));
    let truncated = body[..body.len() - 12].to_vec();
    let err = run_bytes("pos", "pos/x.csv.gz", truncated).0.unwrap_err();
    assert!(matches!(err, FileError::Corrupt { .. }), "{err}");
    assert!(!err.retryable());
}

#[test]
fn missing_required_column_is_a_file_error_naming_it() {
    let body = POS_HEADER.replace("Ticket;", "").replace("Montant ligne;", "");
    let err = run_bytes("pos", "pos/x.csv", cp1252(&body)).0.unwrap_err();
    match &err {
        FileError::MissingColumns { missing, .. } => {
            let mut missing = missing.clone();
            missing.sort();
            assert_eq!(missing, vec!["Montant ligne".to_string(), "Ticket".to_string()]);
        }
        other => panic!("{other}"),
    }
    assert!(!err.retryable());
    assert!(matches!(run("pos", "pos/x.csv", "").0, Err(FileError::Empty)));
    assert!(matches!(run("pos", "pos/x.csv", "\r\n\r\n").0, Err(FileError::Empty)));
}

const ORDERS_HEADER: &str = "Name,Email,Phone,Customer ID,Created at,Currency,Subtotal,Shipping,Total,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Lineitem category,Billing Name,Billing Zip,Billing City,Accepts Marketing\n";

#[test]
fn ecommerce_orders_fill_down_and_consent() {
    let csv = format!(
        "{ORDERS_HEADER}#1001, Marie.Dupont@Gmail.com ,06 12 34 56 78,42,2026-03-29 09:15:00 +0200,EUR,37.40,4.90,42.30,1,\"Pull col roulé, laine\",24.90,SKU-VET-1,vetements,Marie Dupont,75011,Paris,yes\n\
         #1001,,,,,,,,,1,Bonnet,12.50,SKU-ACC-2,accessoires,,,,\n"
    );
    let (counts, sink) = run("ecommerce", "ecommerce/orders_export.csv", &csv);
    let counts = counts.unwrap();
    assert_eq!((counts.rows_read, counts.events, counts.rejected, counts.observations), (2, 2, 0, 1));
    let e = &sink.events[1];
    assert_eq!(e.occurred_at.to_rfc3339(), "2026-03-29T07:15:00+00:00");
    assert_eq!(e.anchor_id, sink.events[0].anchor_id);
    assert_eq!(e.order_total_minor, Some(4230));
    assert_eq!(sink.events[0].product_name.as_deref(), Some("Pull col roulé, laine"));
    assert_eq!((e.unit_price_minor, e.line_total_minor), (Some(1250), Some(1250)));
    let o = &sink.observations[0];
    assert_eq!(o.identifiers.len(), 3);
    assert!(o.identifiers.contains(&Identifier::new(IdentifierKind::CustomerId, "42")));
    assert!(o.identifiers.contains(&Identifier::new(IdentifierKind::Phone, "+33612345678")));
    assert_eq!(o.traits.first_name.as_deref(), Some("Marie"));
    assert_eq!(o.traits.last_name.as_deref(), Some("Dupont"));
    assert_eq!(o.email_opt_in(), Some(true));
    assert_ne!(sink.events[0].event_id, sink.events[1].event_id);
    // Same input, same ids.
    let (_, again) = run("ecommerce", "ecommerce/orders_export.csv", &csv);
    assert_eq!(again.events, sink.events);
}

#[test]
fn ecommerce_malformed_rows_are_rejected_with_line_and_reason() {
    let csv = format!(
        "{ORDERS_HEADER}#1,a@b.fr,,,2026-01-10 10:00:00 +0100,EUR,10.00,0.00,10.00,deux,X,10.00,S1,c,A B,75001,Paris,no\n\
         \n\
         #1,,,,,,,,,1,Y,N/A,S2,c,,,,\n\
         #2,,,,,,,,,1,Y,1.00,S2,c,,,,\n\
         #3,c@d.fr,,,31/01/2026,EUR,1.00,0.00,1.00,1,Z,1.00,S3,c,,,,\n\
         #4,e@f.fr,,,2026-01-10 10:00:00 +0100,EUR\n\
         #5,e@f.fr,,,2026-01-10 10:00:00 +0100,EUR,1.00,0.00,1.00,1,Z,1.00,S3,c,,,,\n\
         #6,not-an-email,,,2026-01-10 10:00:00 +0100,EUR,1.00,0.00,1.00,1,Z,1.00,S3,c,,,,\n"
    );
    let (counts, sink) = run("ecommerce", "ecommerce/orders.csv", &csv);
    let counts = counts.unwrap();
    assert_eq!(counts.rows_read, 7);
    let lines: Vec<u64> = sink.rejected.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![2, 4, 5, 6, 7, 9]);
    let reasons: Vec<&str> = sink.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons[0].contains("quantity") && reasons[0].contains("deux"), "{reasons:?}");
    assert!(reasons[1].contains("price"), "{reasons:?}");
    assert!(reasons[2].contains("blank"), "{reasons:?}");
    assert!(reasons[3].contains("31/01/2026"), "{reasons:?}");
    assert!(reasons[4].contains("expected 18 fields"), "{reasons:?}");
    assert!(reasons[5].contains("email is not a valid address (no @"), "the email is required on orders: {reasons:?}");
    assert!(!reasons[5].contains("not-an-email"), "a reason never quotes an identifier: {reasons:?}");
    assert_eq!(sink.events[0].order_id.as_deref(), Some("#5"));
    assert!(sink.rejected[0].raw.starts_with("#1,a@b.fr"));
}

#[test]
fn ecommerce_checkouts_are_their_own_spec() {
    let csv = "Checkout ID,Created at,Event,Customer ID,Email,Phone,Product SKU,Product name,Quantity,Price,Currency\n\
               ck1,2026-11-02T09:30:00Z,cart_add,42,marie@x.fr,,SKU-1,Pull,1,24.90,EUR\n\
               ck1,2026-11-02T09:31:00Z,checkout_started,42,marie@x.fr,,,,,,EUR\n\
               ck2,2026-11-02T09:31:00Z,cart_add,,,,,,,,\n";
    let (counts, sink) = run("ecommerce", "ecommerce/checkouts-2026-11-02.csv", csv);
    let counts = counts.unwrap();
    assert_eq!((counts.events, counts.rejected), (2, 1));
    assert_eq!(sink.events[0].event_type, "cart_add");
    assert_eq!(sink.events[1].event_type, "checkout_started");
    assert!(sink.rejected[0].reason.contains("sku"), "{}", sink.rejected[0].reason);
}

#[test]
fn line_numbers_count_blank_lines_and_crlf() {
    let csv = format!("{ORDERS_HEADER}\r\n\r\n#1,a@b.fr,,,2026-01-10 10:00:00 +0100,EUR,1.00,0.00,1.00,x,Z,1.00,S3,c,,,,\r\n\n#2,a@b.fr,,,2026-01-10 10:00:00 +0100,EUR,1.00,0.00,1.00,y,Z,1.00,S3,c,,,,\r\n").replace("Marketing\n", "Marketing\r\n");
    let (counts, sink) = run("ecommerce", "ecommerce/o.csv", &csv);
    assert_eq!(counts.unwrap().rejected, 2);
    assert_eq!(sink.rejected.iter().map(|r| r.line).collect::<Vec<_>>(), vec![4, 6]);
}

#[test]
fn web_ndjson_with_nested_params_and_epoch_micros() {
    let body = r#"{"event_timestamp":"1763900000123456","event_name":"page_view","user_pseudo_id":"123.456","event_params":[{"key":"page_location","value":{"string_value":"https://shop.example/fr/pulls"}},{"key":"ga_session_id","value":{"int_value":77}}]}

{"event_timestamp":1763900001000,"event_name":"sign_up","user_pseudo_id":"123.456","user_id":"42","event_params":[{"key":"email","value":{"string_value":" Marie@X.fr "}}]}
{"event_timestamp":"1763900002000000","event_name":"view_item","user_pseudo_id":"123.456","items":[{"item_id":"SKU-1","item_name":"Pull","price":24.9,"quantity":1}]}
{"event_timestamp":"1763900003000000","event_name":"scroll","user_pseudo_id":"123.456"}
{"event_timestamp": "broken", "event_name":
{"event_timestamp":"1763900004000000","event_name":"page_view"}
[1,2]
"#;
    let (counts, sink) = run("web", "web/2026/11/23/events.ndjson", body);
    let counts = counts.unwrap();
    assert_eq!((counts.rows_read, counts.events, counts.rejected), (7, 5, 2));
    let types: Vec<&str> = sink.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, vec!["page_view", "sign_up", "product_view", "scroll", "page_view"]);
    assert_eq!(sink.events[0].page_url.as_deref(), Some("https://shop.example/fr/pulls"));
    assert_eq!(sink.events[0].occurred_at.timestamp_micros(), 1763900000123456);
    assert_eq!(sink.events[1].occurred_at.timestamp_millis(), 1763900001000);
    assert_eq!(sink.events[2].unit_price_minor, Some(2490));
    assert_eq!(sink.events[4].anchor_id, None, "no identifier on that row");
    let signup = sink.observations.iter().find(|o| o.identifiers.len() == 3).expect("identify event");
    assert!(signup.identifiers.contains(&Identifier::new(IdentifierKind::Email, "marie@x.fr")));
    assert!(signup.identifiers.contains(&Identifier::new(IdentifierKind::CookieId, "123.456")));
    assert_eq!(sink.rejected.iter().map(|r| r.line).collect::<Vec<_>>(), vec![6, 8]);
    assert!(sink.rejected[0].reason.contains("invalid JSON"));
    assert!(sink.rejected[1].reason.contains("not a JSON object"));
}

#[test]
fn app_json_array_is_streamed_and_truncation_is_caught() {
    let body = r#"[
  {"event_id": "a1", "event": "app_open", "timestamp_ms": 1763900000000, "device": {"id": "dev-1", "push_token": "tok-1", "platform": "ios"}},
  {"event_id": "a2", "event": "push_opt_out", "timestamp_ms": 1763900001000, "device": {"id": "dev-1", "push_token": "tok-1"}, "user_id": "42"},
  {"event_id": "a3", "event": "purchase", "timestamp_ms": 1763900002000, "device": {"id": "dev-1"}, "user_id": "42",
   "properties": {"order_id": "A-77", "revenue": 59.9, "currency": "EUR", "note": "a \"quoted\" ] bracket"}},
  {"event_id": "a4", "event": "purchase", "timestamp_ms": 1763900003000, "device": {"id": "dev-2"}},
  "not an object"
]
"#;
    let (counts, sink) = run("app", "app/events-2026-11-23.json", body);
    let counts = counts.unwrap();
    assert_eq!((counts.rows_read, counts.events, counts.rejected), (5, 3, 2));
    assert_eq!(sink.events[2].event_type, "in_app_purchase");
    assert_eq!(sink.events[2].order_total_minor, Some(5990));
    assert_eq!(sink.rejected.iter().map(|r| r.line).collect::<Vec<_>>(), vec![6, 7]);
    let opt_out = &sink.observations[1];
    assert_eq!(opt_out.consents.len(), 1);
    assert_eq!((opt_out.consents[0].channel, opt_out.consents[0].granted), (ConsentChannel::Push, false));
    assert!(opt_out.identifiers.contains(&Identifier::new(IdentifierKind::PushToken, "tok-1")));

    let truncated = &body[..body.find("\"a3\"").unwrap()];
    let err = run("app", "app/x.json", truncated).0.unwrap_err();
    assert!(matches!(err, FileError::Corrupt { line: 4, .. }), "{err}");
    let err = run("app", "app/x.json", "{\"event\": 1}").0.unwrap_err();
    assert!(err.to_string().contains("JSON array"), "{err}");
}

#[test]
fn email_activity_and_unsubscribe_consent() {
    let csv = "Email,Campaign ID,Campaign Name,Event,Event Date,Link URL\n\
               marie@x.fr,C-11,Soldes,sent,2026-11-02 09:00:00,\n\
               MARIE@X.FR ,C-11,Soldes,Clicked,2026-11-02 09:30:00,https://shop.example/soldes\n\
               marie@x.fr,C-11,Soldes,unsubscribed,2026-11-02 09:31:00,\n\
               ,C-11,Soldes,opened,2026-11-02 09:00:00,\n\
               not-an-email,C-11,Soldes,opened,2026-11-02 09:00:00,\n";
    let (counts, sink) = run("email", "email/activity.csv", csv);
    let counts = counts.unwrap();
    assert_eq!((counts.events, counts.rejected), (3, 2));
    assert_eq!(sink.events[1].event_type, "email_click");
    assert_eq!(sink.events[1].campaign_id.as_deref(), Some("C-11"));
    assert_eq!(sink.events[0].anchor_id, sink.events[1].anchor_id, "same person however the email is written");
    let unsub = sink.observations.iter().find(|o| !o.consents.is_empty()).unwrap();
    assert_eq!(unsub.email_opt_in(), Some(false));
}

#[test]
fn event_ids_are_keyed_with_the_pepper() {
    use ariane_shared::identifiers::{keyed_id_with, stable_id, Pepper, DEVELOPMENT_PEPPER};
    // The e-mail activity's natural key holds the address: an unkeyed hash of it could be
    // reversed by hashing a list of addresses.
    let csv = "Email,Campaign ID,Campaign Name,Event,Event Date,Link URL\n\
               marie@x.fr,C-11,Soldes,opened,2026-11-02 09:00:00,\n";
    let (counts, sink) = run("email", "email/activity.csv", csv);
    assert_eq!(counts.unwrap().events, 1);
    let (event, observation) = (&sink.events[0], &sink.observations[0]);
    let parts = |kind: &'static str| [kind, "email", "email_open", "key", "C-11", "marie@x.fr", "opened", "2026-11-02 09:00:00", ""];
    for (kind, id) in [("event", &event.event_id), ("observation", &observation.observation_id)] {
        assert_ne!(*id, stable_id(&parts(kind)), "the {kind} id is not the unkeyed hash of its parts");
        let development = Pepper::new(DEVELOPMENT_PEPPER.as_bytes()).unwrap();
        assert_eq!(*id, keyed_id_with(&development, parts(kind)), "the {kind} id is keyed with the process's pepper");
        let other = Pepper::new(vec![7u8; 32]).unwrap();
        assert_ne!(*id, keyed_id_with(&other, parts(kind)), "another deployment's pepper gives other ids");
    }
}

#[test]
fn sms_report_stop_is_an_opt_out() {
    let csv = "ID message;Campagne;Numéro;Statut;Date;Lien\n\
               m1;BF26;33612345678;ENVOYE;27/11/2026 10:00:00;\n\
               m1;BF26;+33 6 12 34 56 78;delivre;27/11/2026 10:00:05;\n\
               m2;BF26;0612345678;STOP;27/11/2026 11:00:00;\n\
               m3;BF26;12;ENVOYE;27/11/2026 10:00:00;\n";
    let (counts, sink) = run("sms", "sms/report.csv", csv);
    let counts = counts.unwrap();
    assert_eq!((counts.events, counts.rejected), (3, 1));
    assert!(sink.rejected[0].reason.contains("not a valid phone number"), "{}", sink.rejected[0].reason);
    assert!(sink.rejected[0].reason.ends_with("not a valid phone number (2 digits)"), "never the number: {}", sink.rejected[0].reason);
    assert!(sink.events.iter().all(|e| e.anchor_id == sink.events[0].anchor_id));
    assert_eq!(sink.events[2].event_type, "sms_stop");
    let stop = sink.observations.iter().find(|o| !o.consents.is_empty()).unwrap();
    assert_eq!((stop.consents[0].channel, stop.consents[0].granted), (ConsentChannel::Sms, false));
    assert_eq!(stop.consents[0].at.to_rfc3339(), "2026-11-27T10:00:00+00:00");
}

#[test]
fn crm_contacts_with_bom_and_dated_consents() {
    let csv =
        "\u{feff}ID contact;Type;Date;Civilité;Prénom;Nom;Email;Mobile;Adresse;Code postal;Ville;Pays;Canal;Consentement;Carte fidélité\n\
               42;Création;12/01/2025 14:03;Mme;MARIE;DUPONT;marie@x.fr;06 12 34 56 78;12 rue de la Paix;75 002;PARIS;France;;;\n\
               42;Consentement;12/01/2025 14:05;;;;marie@x.fr;;;;;;SMS;Oui;\n\
               42;Consentement;03/06/2026 08:00;;;;marie@x.fr;;;;;;E-mail;Non;\n\
               42;Consentement;03/06/2026 08:00;;;;marie@x.fr;;;;;;;Non;\n\
               42;Suppression;03/06/2026 08:00;;;;;;;;;;;;\n";
    let (counts, sink) = run("crm", "crm/contacts.csv", csv);
    let counts = counts.unwrap();
    assert_eq!((counts.events, counts.rejected), (3, 2));
    let created = &sink.observations[0];
    assert_eq!(created.traits.first_name.as_deref(), Some("Marie"));
    assert_eq!(created.traits.postal_code.as_deref(), Some("75002"));
    assert_eq!(created.traits.city.as_deref(), Some("Paris"));
    assert_eq!(created.traits.country.as_deref(), Some("FR"));
    assert_eq!(created.traits.street.as_deref(), Some("12 rue de la Paix"));
    let sms = &sink.observations[1].consents[0];
    assert_eq!((sms.channel, sms.granted, sms.at.to_rfc3339().as_str()), (ConsentChannel::Sms, true, "2025-01-12T13:05:00+00:00"));
    let email = &sink.observations[2].consents[0];
    assert_eq!((email.channel, email.granted), (ConsentChannel::Email, false));
    assert_eq!(sink.events[1].consent_channel.as_deref(), Some("sms"));
    assert!(sink.rejected[0].reason.contains("consent_channel"), "{}", sink.rejected[0].reason);
    assert!(sink.rejected[1].reason.contains("Suppression"), "{}", sink.rejected[1].reason);
}

/// `batch` as a Parquet export `a.parquet` in `dir`.
fn write_parquet(dir: &std::path::Path, batch: &arrow::array::RecordBatch) -> std::path::PathBuf {
    let path = dir.join("a.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    path
}

#[test]
fn parquet_exports_map_by_column_name() {
    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let text = r#"
channel = "email"
name = "parquet-activity"
keys = ["**/*.parquet"]
[format]
kind = "parquet"
[event_type]
source = ["event"]
map = { open = "email_open" }
[fields]
occurred_at = { source = "ts", format = "epoch_ms" }
email = { source = "email", required = true }
campaign_id = { source = "campaign" }
"#;
    let spec = Spec::parse("channels/email/parquet-activity.toml", text).unwrap();
    let batch = RecordBatch::try_from_iter(vec![
        ("email", Arc::new(StringArray::from(vec![Some("A@B.fr"), None])) as ArrayRef),
        ("event", Arc::new(StringArray::from(vec!["open", "open"])) as ArrayRef),
        ("ts", Arc::new(Int64Array::from(vec![1763900000000, 1763900000000])) as ArrayRef),
        ("campaign", Arc::new(StringArray::from(vec!["C1", "C1"])) as ArrayRef),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(dir.path(), &batch);
    let mut sink = Collected::default();
    let file = FileContext { source_key: "email/a.parquet".into(), fingerprint: "fp".into() };
    let counts = engine::parse_parquet(&path, &spec, file, &mut sink).unwrap();
    assert_eq!((counts.events, counts.rejected), (1, 1));
    assert_eq!(sink.rejected[0].line, 2);
    assert!(sink.rejected[0].raw.contains("\"campaign\":\"C1\""), "{}", sink.rejected[0].raw);
    assert_eq!(
        sink.events[0].email_hash.as_deref(),
        Some(ariane_shared::identifiers::identifier_hash(IdentifierKind::Email, "a@b.fr").as_str())
    );
}

#[test]
fn the_worked_example_in_channels_readme_is_a_valid_spec() {
    let readme = include_str!("../../../channels/README.md");
    let example = readme.split("## Worked example").nth(1).expect("worked example section");
    let toml = example.split("```toml").nth(1).and_then(|b| b.split("```").next()).expect("toml block");
    let spec = Spec::parse("channels/pos/kiosk.toml", toml).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.matches("pos/kiosk/2026-11-23.ndjson"), Some(true));
    let body = r#"{"store":"M1","receipt":{"id":"R9","at":"2026-11-23T10:00:00"},"line":1,"customer":{"card":"fid 42"},"item":{"ean":"376","price":"2.50","qty":2}}"#;
    let mut sink = Collected::default();
    let file = FileContext { source_key: "pos/kiosk/a.ndjson".into(), fingerprint: "fp".into() };
    let counts = engine::parse(Box::new(std::io::Cursor::new(body.as_bytes().to_vec())), &spec, file, &mut sink).unwrap();
    assert_eq!(counts.events, 1);
    assert_eq!(sink.events[0].occurred_at.to_rfc3339(), "2026-11-23T09:00:00+00:00");
    assert!(sink.observations[0].identifiers.contains(&Identifier::new(IdentifierKind::LoyaltyCard, "FID42")));
}

#[test]
fn token_identifiers_are_normalised_like_everywhere_else() {
    // Customer id required, loyalty card optional; a control character makes either
    // unusable (`ariane_shared::identifiers::normalize_token`).
    let spec = Spec::parse(
        "channels/crm/t.toml",
        "channel = \"crm\"\nname = \"t\"\n[format]\nkind = \"csv\"\n[event_type]\nconstant = \"contact_updated\"\n[fields]\n\
         occurred_at = { source = \"Date\", format = \"%Y-%m-%d\" }\n\
         customer_id = { source = \"Client\", required = true }\n\
         loyalty_card = { source = \"Carte\" }\n",
    )
    .unwrap();
    let csv = "Date,Client,Carte\n\
               2026-11-02,C-1,F42\n\
               2026-11-02,C-2,F\u{1}43\n\
               2026-11-02,C\u{7}3,F44\n";
    let mut sink = Collected::default();
    let file = FileContext { source_key: "crm/t.csv".into(), fingerprint: "fp".into() };
    let counts = engine::parse(Box::new(std::io::Cursor::new(csv.as_bytes().to_vec())), &spec, file, &mut sink).unwrap();
    assert_eq!((counts.rows_read, counts.events, counts.rejected, counts.identifier_warnings), (3, 2, 1, 1));
    assert_eq!(
        sink.observations[0].identifiers,
        vec![Identifier::new(IdentifierKind::CustomerId, "C-1"), Identifier::new(IdentifierKind::LoyaltyCard, "F42")]
    );
    assert_eq!(sink.observations[1].identifiers, vec![Identifier::new(IdentifierKind::CustomerId, "C-2")], "the bad card is dropped");
    assert_eq!(
        (sink.rejected[0].line, sink.rejected[0].reason.as_str()),
        (4, "customer_id (column \"Client\"): customer_id contains a control character"),
        "the reason never quotes the identifier"
    );
}

/// A CSV spec whose `sku` and `Rayon` columns may be absent (`optional = true`, and a
/// default), the others required.
const OPTIONAL_SPEC: &str = r#"
channel = "pos"
name = "optional"
[format]
kind = "csv"
separator = ";"
encoding = "windows-1252"
decimal = ","
[event_type]
constant = "store_purchase"
[natural_key]
sources = ["Ticket"]
[fields]
occurred_at = { source = "Date", format = "%d/%m/%Y" }
email = { source = "Email", required = true }
order_id = { source = "Ticket" }
sku = { source = "Article", optional = true }
category = { source = "Rayon", default = "divers" }
unit_price_minor = { source = "Prix", optional = true }
"#;

fn run_spec(spec: &Spec, key: &str, body: Vec<u8>) -> (Result<Counts, FileError>, Collected) {
    let mut sink = Collected::default();
    let file = FileContext { source_key: key.into(), fingerprint: "fp".into() };
    let counts = engine::parse(Box::new(std::io::Cursor::new(body)), spec, file, &mut sink);
    (counts, sink)
}

fn recent_date() -> String {
    (chrono::Utc::now() - chrono::Duration::days(3)).format("%d/%m/%Y").to_string()
}

#[test]
fn optional_columns_may_be_absent_and_read_as_blank() {
    let spec = Spec::parse("channels/pos/optional.toml", OPTIONAL_SPEC).unwrap();
    let day = recent_date();
    // Article, Rayon and Prix are absent: every row still maps, sku and price blank, the
    // category its default.
    let csv = format!("Date;Email;Ticket\r\n{day};a@b.fr;T1\r\n{day};c@d.fr;T2\r\n");
    let (counts, sink) = run_spec(&spec, "pos/x.csv", cp1252(&csv));
    let counts = counts.unwrap();
    assert_eq!((counts.rows_read, counts.events, counts.rejected), (2, 2, 0));
    let mut absent = sink.absent.clone();
    absent.sort();
    assert_eq!(absent, vec!["Article", "Prix", "Rayon"]);
    for e in &sink.events {
        assert_eq!((e.sku.as_deref(), e.unit_price_minor, e.category.as_deref()), (None, None, Some("divers")));
    }
    assert_eq!(sink.events[1].order_id.as_deref(), Some("T2"));

    // Present, the same columns are read as usual (case and spaces of the header aside).
    let csv = format!(" date ;EMAIL;Ticket;Article;Rayon;Prix\r\n{day};a@b.fr;T1;SKU-1;Beauté;12,50\r\n");
    let (counts, sink) = run_spec(&spec, "pos/x.csv", cp1252(&csv));
    assert_eq!(counts.unwrap().events, 1);
    assert!(sink.absent.is_empty());
    let e = &sink.events[0];
    assert_eq!((e.sku.as_deref(), e.unit_price_minor, e.category.as_deref()), (Some("SKU-1"), Some(1250), Some("Beauté")));

    // A required column absent still fails the whole file, naming what is missing and
    // what the header has.
    let csv = format!("Date;Ticket;Article\r\n{day};T1;SKU-1\r\n");
    let err = run_spec(&spec, "pos/x.csv", cp1252(&csv)).0.unwrap_err();
    assert_eq!(err.to_string(), r#"missing required column(s) ["Email"]; the header has ["Date", "Ticket", "Article"]"#);
    assert!(!err.retryable());
    // A column both an optional field and the natural key read is required.
    let csv = format!("Date;Email\r\n{day};a@b.fr\r\n");
    let err = run_spec(&spec, "pos/x.csv", cp1252(&csv)).0.unwrap_err();
    assert!(matches!(&err, FileError::MissingColumns { missing, .. } if missing == &vec!["Ticket".to_string()]), "{err}");
}

#[test]
fn a_repository_spec_reads_an_export_without_its_defaulted_column() {
    // ecommerce/orders.toml gives `currency` a default: an export without the column is
    // read, with the default.
    let header = ORDERS_HEADER.replace("Currency,", "");
    let csv = format!("{header}#1,a@b.fr,,,2026-01-10 10:00:00 +0100,10.00,0.00,10.00,1,Z,1.00,S3,c,,,,\n");
    let (counts, sink) = run("ecommerce", "ecommerce/orders.csv", &csv);
    assert_eq!(counts.unwrap().events, 1, "{:?}", sink.rejected);
    assert_eq!(sink.events[0].currency.as_deref(), Some("EUR"));
    assert_eq!(sink.absent, vec!["Currency"]);
    // Its email column is required: the file fails.
    let header = ORDERS_HEADER.replace("Email,", "");
    let err = run("ecommerce", "ecommerce/orders.csv", &header).0.unwrap_err();
    assert!(err.to_string().starts_with(r#"missing required column(s) ["Email"]; the header has ["Name", "Phone""#), "{err}");
}

#[test]
fn optional_parquet_columns_may_be_absent() {
    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let text = r#"
channel = "email"
name = "parquet-activity"
[format]
kind = "parquet"
[event_type]
constant = "email_open"
[fields]
occurred_at = { source = "ts", format = "epoch_ms" }
email = { source = "email", required = true }
campaign_id = { source = "campaign", optional = true }
"#;
    let spec = Spec::parse("channels/email/parquet-activity.toml", text).unwrap();
    let ts = chrono::Utc::now().timestamp_millis() - 86_400_000;
    let batch = RecordBatch::try_from_iter(vec![
        ("email", Arc::new(StringArray::from(vec!["a@b.fr"])) as ArrayRef),
        ("ts", Arc::new(Int64Array::from(vec![ts])) as ArrayRef),
    ])
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_parquet(dir.path(), &batch);
    let mut sink = Collected::default();
    let file = FileContext { source_key: "email/a.parquet".into(), fingerprint: "fp".into() };
    let counts = engine::parse_path(&path, &spec, file, &mut sink).unwrap();
    assert_eq!((counts.events, counts.rejected), (1, 0));
    assert_eq!(sink.events[0].campaign_id, None);
    assert_eq!(sink.absent, vec!["campaign"]);
}

#[test]
fn blank_lines_are_counted_as_skipped_not_as_rows() {
    let spec = Spec::parse("channels/pos/optional.toml", OPTIONAL_SPEC).unwrap();
    let day = recent_date();
    // LF and CRLF: a blank line before the header, one between rows, a record of blank
    // cells, two at the end; line numbers stay physical.
    for eol in ["\n", "\r\n"] {
        let csv = format!("{eol}Date;Email;Ticket{eol}{day};a@b.fr;T1{eol}{eol};;{eol}{day};bad;T2{eol}{eol}{eol}").into_bytes();
        let lines = physical_lines(&csv);
        let (counts, sink) = run_spec(&spec, "pos/x.csv", csv);
        let counts = counts.unwrap();
        assert_eq!((counts.rows_read, counts.events, counts.rejected), (2, 1, 1), "{eol:?}");
        assert_eq!(counts.skipped, Skipped { blank: 5, header: 1, continuation: 0 }, "{eol:?}");
        assert_eq!((counts.lines_read, lines), (8, 8), "{eol:?}");
        assert!(counts.lines_reconcile(), "{eol:?}: {counts:?}");
        assert_eq!(sink.rejected[0].line, 6, "{eol:?}");
        // Without a final newline, nothing trails.
        let csv = format!("Date;Email;Ticket{eol}{day};a@b.fr;T1").into_bytes();
        let counts = run_spec(&spec, "pos/x.csv", csv).0.unwrap();
        assert_eq!((counts.skipped, counts.lines_read), (Skipped { blank: 0, header: 1, continuation: 0 }, 2), "{eol:?}");
        let csv = format!("Date;Email;Ticket{eol}{day};a@b.fr;T1{eol}").into_bytes();
        let counts = run_spec(&spec, "pos/x.csv", csv).0.unwrap();
        assert_eq!((counts.skipped, counts.lines_read), (Skipped { blank: 0, header: 1, continuation: 0 }, 2), "{eol:?}");
    }
    let body = "{\"event_timestamp\":\"1763900004000000\",\"event_name\":\"page_view\"}\n\n  \n{\"event_timestamp\":\"1763900004000000\",\"event_name\":\"page_view\"}\n";
    let (counts, _) = run("web", "web/x.ndjson", body);
    let counts = counts.unwrap();
    assert_eq!((counts.rows_read, counts.skipped, counts.lines_read), (2, Skipped { blank: 2, header: 0, continuation: 0 }, 4));
}

#[test]
fn every_physical_line_is_a_row_or_skipped_for_a_reason() {
    let spec = Spec::parse("channels/pos/optional.toml", OPTIONAL_SPEC).unwrap();
    let day = recent_date();
    for eol in ["\n", "\r\n"] {
        // A header whose last name is quoted over two lines, a row whose note is quoted
        // over three lines, a blank line, a short row (rejected) over two lines, a row
        // without a final newline.
        let csv = format!(
            "Date;Email;Ticket;\"Re{eol}marque\"{eol}{day};a@b.fr;T1;\"a{eol}b{eol}c\"{eol}{eol}{day};\"x{eol}y\"{eol}{day};c@d.fr;T3;"
        )
        .into_bytes();
        let lines = physical_lines(&csv);
        let (counts, sink) = run_spec(&spec, "pos/x.csv", csv);
        let counts = counts.unwrap();
        assert_eq!((counts.events, counts.rejected), (2, 1), "{eol:?}: {:?}", sink.rejected);
        assert_eq!(counts.skipped, Skipped { blank: 1, header: 1, continuation: 1 + 2 + 1 }, "{eol:?}");
        assert_eq!((counts.lines_read, lines), (9, 9), "{eol:?}");
        assert!(counts.lines_reconcile(), "{eol:?}: {counts:?}");
        // Rows keep their first physical line.
        assert_eq!(sink.events.iter().map(|e| e.source_line).collect::<Vec<_>>(), vec![3, 9], "{eol:?}");
        assert_eq!(sink.rejected[0].line, 7, "{eol:?}");
    }
    // Fill-down continuation rows are rows (events), not skipped lines.
    let (counts, sink) = run_bytes("pos", "pos/2026-10-25/M012.csv", cp1252(&pos_sample()));
    let counts = counts.unwrap();
    assert!(sink.events.iter().any(|e| e.source_line == 3), "the receipt's second line is an event");
    assert_eq!(counts.skipped, Skipped { blank: 1, header: 1, continuation: 0 });
    // A JSON array: the opening bracket is a header, lines inside an element and the
    // closing bracket continuation, white space blank.
    let body = "[\n  {\"event_id\": \"a1\", \"event\": \"app_open\", \"timestamp_ms\": 1763900000000, \"device\": {\"id\": \"d\"}},\n\n  {\"event_id\": \"a2\",\n   \"event\": \"app_open\", \"timestamp_ms\": 1763900000000,\n   \"device\": {\"id\": \"d\"}}\n]";
    let (counts, _) = run("app", "app/a.json", body);
    let counts = counts.unwrap();
    assert_eq!((counts.events, counts.rejected, counts.lines_read), (2, 0, 7));
    assert_eq!(counts.skipped, Skipped { blank: 1, header: 1, continuation: 3 });
    // A Parquet file has rows, no lines to skip.
}

/// The till receipts of `pos_sample` as a vendor's new NDJSON export would write them:
/// other field names, every value on every line (no fill-down).
const RECEIPTS_V2: &str = include_str!("fixtures/receipts-v2.toml");

#[test]
fn a_new_spec_for_the_same_source_keeps_the_event_ids() {
    let v1 = Catalog::embedded().unwrap().select("pos", "pos/2026-10-25/M012.csv").unwrap().clone();
    let mut files: Vec<(&str, &str)> = ariane_ingest::spec::EMBEDDED.to_vec();
    files.push(("channels/pos/receipts-v2.toml", RECEIPTS_V2));
    let catalog = Catalog::from_files(&files).unwrap_or_else(|e| panic!("{e:?}"));
    let v2 = catalog.select("pos", "pos/v2/M012.ndjson").unwrap();
    assert_eq!(v2.name, "receipts-v2");

    let (_, old) = run_spec(&v1, "pos/2026-10-25/M012.csv", cp1252(&pos_sample()));
    let ndjson = r#"{"store":"M012","till":"C2","receipt":"T1001","line":"1","type":"VENTE","at":"29/03/2026 01:45","card":"fid 0042 17","email":" Marie.Dupont@Gmail.com ","phone":"06 12 34 56 78","sku":"SKU-1","qty":2,"price":"12,50"}
{"store":"M012","till":"C2","receipt":"T1001","line":"2","type":"VENTE","at":"29/03/2026 01:45","card":"fid 0042 17","email":"marie.dupont@gmail.com","phone":"06 12 34 56 78","sku":"SKU-2","qty":1,"price":"12,40"}
{"store":"M012","till":"C2","receipt":"T1002","line":"1","type":"PASSAGE","at":"29/03/2026 02:30","card":"FID004217"}
{"store":"M012","till":"C1","receipt":"T1003","line":"1","type":"RETOUR","at":"25/10/2026 02:30","sku":"SKU-1","qty":-1,"price":"12,50"}
"#;
    let (counts, new) = run_spec(v2, "pos/v2/M012.ndjson", ndjson.as_bytes().to_vec());
    assert_eq!(counts.unwrap().events, 4);
    let ids = |events: &[CanonicalEvent]| events.iter().map(|e| (e.source_line, e.event_id.clone())).collect::<Vec<_>>();
    let (old_ids, new_ids) = (ids(&old.events), ids(&new.events));
    assert_eq!(old_ids.len(), 4);
    assert_eq!(
        old_ids.iter().map(|(_, id)| id).collect::<Vec<_>>(),
        new_ids.iter().map(|(_, id)| id).collect::<Vec<_>>(),
        "the same rows, from other lines of another file read by another spec: the same ids"
    );
    assert_ne!(old_ids.iter().map(|(l, _)| *l).collect::<Vec<_>>(), new_ids.iter().map(|(l, _)| *l).collect::<Vec<_>>());
    // The same local-time flags, and the observations keep their ids too.
    assert_eq!(old.events.iter().map(|e| e.local_time).collect::<Vec<_>>(), new.events.iter().map(|e| e.local_time).collect::<Vec<_>>());
    let observation_ids = |o: &[Observation]| o.iter().map(|o| o.observation_id.clone()).collect::<std::collections::BTreeSet<_>>();
    assert!(observation_ids(&new.observations).is_superset(&observation_ids(&old.observations)));

    // Without a natural key, ids derive from the file's content and line, whatever the
    // spec reading it or the key it landed under.
    let no_key = |name: &str| {
        Spec::parse(
            &format!("channels/pos/{name}.toml"),
            &OPTIONAL_SPEC
                .replace("[natural_key]\nsources = [\"Ticket\"]\n", "")
                .replace("name = \"optional\"", &format!("name = \"{name}\"")),
        )
        .unwrap()
    };
    let csv = format!("Date;Email;Ticket\n{};a@b.fr;T1\n", recent_date());
    let read = |spec: &Spec, key: &str, fingerprint: &str| {
        let mut sink = Collected::default();
        let file = FileContext { source_key: key.into(), fingerprint: fingerprint.into() };
        engine::parse(Box::new(std::io::Cursor::new(csv.clone().into_bytes())), spec, file, &mut sink).unwrap();
        sink.events[0].event_id.clone()
    };
    let id = read(&no_key("a"), "pos/x.csv", "fp1");
    assert_eq!(read(&no_key("b"), "pos/y.csv", "fp1"), id);
    assert_ne!(read(&no_key("a"), "pos/x.csv", "fp2"), id, "other content, other ids");
}

/// Recent carts and purchases travel with their row's observation as activity (once per
/// person, type and minute), old ones and other event types do not: a back-fill triggers
/// nothing, a page view costs no forward.
#[test]
fn recent_carts_and_purchases_travel_with_the_observation_as_activity() {
    let now = chrono::Utc::now();
    let micros = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros();
    let recent = now - chrono::Duration::minutes(5);
    let old = now - chrono::Duration::days(3);
    let body = format!(
        r#"{{"event_timestamp":"{}","event_name":"add_to_cart","user_pseudo_id":"ck-1","items":[{{"item_id":"SKU-1","item_name":"Parka"}}]}}
{{"event_timestamp":"{}","event_name":"add_to_cart","user_pseudo_id":"ck-1","items":[{{"item_id":"SKU-1","item_name":"Parka"}}]}}
{{"event_timestamp":"{}","event_name":"page_view","user_pseudo_id":"ck-1"}}
{{"event_timestamp":"{}","event_name":"add_to_cart","user_pseudo_id":"ck-2","items":[{{"item_id":"SKU-2"}}]}}
{{"event_timestamp":"{}","event_name":"add_to_cart"}}
"#,
        micros(recent),
        micros(recent) + 1,
        micros(recent) + 2,
        micros(old),
        micros(recent),
    );
    let (counts, sink) = run("web", "web/live/events.ndjson", &body);
    assert_eq!(counts.unwrap().events, 5);
    let activity: Vec<_> = sink.observations.iter().flat_map(|o| o.activity.iter().map(move |a| (o, a))).collect();
    assert_eq!(activity.len(), 1, "{activity:?}");
    let (o, a) = activity[0];
    assert!(o.identifiers.contains(&Identifier::new(IdentifierKind::CookieId, "ck-1")));
    assert_eq!(a.event_type, "add_to_cart");
    assert_eq!(a.event_id, sink.events[0].event_id, "the activity names the lake's event");
    assert_eq!(a.attributes.get("sku").map(String::as_str), Some("SKU-1"));
    assert_eq!(a.attributes.get("product_name").map(String::as_str), Some("Parka"));
}
