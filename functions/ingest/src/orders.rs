//! The e-commerce orders export (Shopify-style): one row per order line, order-level
//! columns filled only on an order's first row and left blank on its later rows.
//!
//! Parsing is pure and streaming: rows go to a [`RowSink`] as they are read, so memory
//! does not grow with the file. Every data row ends as exactly one event or one rejected
//! row; whole-file problems (missing required column, unreadable stream) are errors.

use std::io::Read;

use ariane_shared::identifiers::{
    identifier_hash, normalize_email, normalize_phone, sha256_hex, stable_id, Identifier, IdentifierKind,
};
use ariane_shared::model::{CanonicalEvent, Observation, RejectedRow, Traits};
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::amount::parse_minor;

pub const CHANNEL: &str = "ecommerce";
pub const EVENT_TYPE: &str = "order_line";

/// Columns that must be present in the header.
pub const REQUIRED_COLUMNS: &[&str] =
    &["Name", "Email", "Created at", "Lineitem quantity", "Lineitem price", "Lineitem sku"];

/// Where parsed rows go.
pub trait RowSink {
    fn event(&mut self, event: CanonicalEvent) -> Result<(), SinkError>;
    fn rejected(&mut self, row: RejectedRow) -> Result<(), SinkError>;
    fn observation(&mut self, observation: Observation) -> Result<(), SinkError>;
}

pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Whole-file failures.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("missing required column(s) {missing:?} in header {found:?}")]
    MissingColumns { missing: Vec<String>, found: Vec<String> },
    #[error("file is empty (no header row)")]
    Empty,
    #[error("cannot read the file at line {line}: {source}")]
    Read { line: u64, source: csv::Error },
    #[error("cannot write parsed rows: {0}")]
    Sink(SinkError),
}

/// Counts of one file; `rows_read == events + rejected` always.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub rows_read: u64,
    pub events: u64,
    pub rejected: u64,
    pub observations: u64,
    /// Rows kept as events whose email or phone was unusable (not an identifier).
    pub identifier_warnings: u64,
}

struct Columns {
    name: usize,
    email: usize,
    created_at: usize,
    quantity: usize,
    price: usize,
    sku: usize,
    phone: Option<usize>,
    customer_id: Option<usize>,
    currency: Option<usize>,
    total: Option<usize>,
    product: Option<usize>,
    category: Option<usize>,
    billing_name: Option<usize>,
    zip: Option<usize>,
    city: Option<usize>,
    accepts_marketing: Option<usize>,
}

impl Columns {
    fn from_header(header: &csv::StringRecord) -> Result<Self, FileError> {
        let names: Vec<String> =
            header.iter().map(|h| h.trim_start_matches('\u{feff}').trim().to_string()).collect();
        let find = |n: &str| names.iter().position(|h| h.eq_ignore_ascii_case(n));
        let missing: Vec<String> =
            REQUIRED_COLUMNS.iter().filter(|c| find(c).is_none()).map(|c| c.to_string()).collect();
        if !missing.is_empty() {
            return Err(FileError::MissingColumns { missing, found: names });
        }
        let req = |n: &str| find(n).expect("checked above");
        Ok(Columns {
            name: req("Name"),
            email: req("Email"),
            created_at: req("Created at"),
            quantity: req("Lineitem quantity"),
            price: req("Lineitem price"),
            sku: req("Lineitem sku"),
            phone: find("Phone"),
            customer_id: find("Customer ID"),
            currency: find("Currency"),
            total: find("Total"),
            product: find("Lineitem name"),
            category: find("Lineitem category"),
            billing_name: find("Billing Name"),
            zip: find("Billing Zip"),
            city: find("Billing City"),
            accepts_marketing: find("Accepts Marketing"),
        })
    }
}

/// The order-level values of the current order (filled down onto its later rows).
#[derive(Clone, Debug, Default)]
struct OrderHeader {
    name: String,
    email: String,
    created_at: String,
    phone: String,
    customer_id: String,
    currency: String,
    total: String,
    billing_name: String,
    zip: String,
    city: String,
    accepts_marketing: String,
    /// Lines of this order seen so far (for the natural key).
    lines: u32,
    observed: bool,
}

/// Counts physical lines as bytes are read, so that a record's starting byte offset can be
/// turned into its physical line number (the csv crate's own line counter does not count
/// blank lines). Only newlines not yet attributed are kept: memory stays bounded by the
/// reader's look-ahead.
struct LineIndex<R> {
    inner: R,
    offset: u64,
    newlines: std::rc::Rc<std::cell::RefCell<LineState>>,
}

#[derive(Default)]
struct LineState {
    /// Offsets of `\n` bytes not yet counted.
    pending: std::collections::VecDeque<u64>,
    /// Offsets of `\r` bytes not yet passed.
    returns: std::collections::VecDeque<u64>,
    before: u64,
}

impl LineState {
    /// The 1-based physical line where the record read from `offset` starts. The csv
    /// reader reports the offset where it began reading, which is before any blank lines
    /// it skipped, so those are stepped over here. Offsets are asked in increasing order.
    fn line_at(&mut self, mut offset: u64) -> u64 {
        loop {
            while self.pending.front().is_some_and(|&nl| nl < offset) {
                self.pending.pop_front();
                self.before += 1;
            }
            while self.returns.front().is_some_and(|&cr| cr < offset) {
                self.returns.pop_front();
            }
            let next_nl = self.pending.front().copied();
            if next_nl == Some(offset) {
                offset += 1; // a blank `\n` line
            } else if next_nl == Some(offset + 1) && self.returns.front() == Some(&offset) {
                offset += 2; // a blank `\r\n` line
            } else {
                return self.before + 1;
            }
        }
    }
}

impl<R: Read> Read for LineIndex<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut state = self.newlines.borrow_mut();
        for (i, b) in buf[..n].iter().enumerate() {
            match *b {
                b'\n' => state.pending.push_back(self.offset + i as u64),
                b'\r' => state.returns.push_back(self.offset + i as u64),
                _ => {}
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// Parses an orders export from `input` into `sink`.
pub fn parse<R: Read>(input: R, source_key: &str, sink: &mut dyn RowSink) -> Result<Counts, FileError> {
    let lines = std::rc::Rc::new(std::cell::RefCell::new(LineState::default()));
    let input = LineIndex { inner: input, offset: 0, newlines: lines.clone() };
    let mut reader = csv::ReaderBuilder::new().flexible(true).has_headers(true).from_reader(input);
    let header = match reader.headers() {
        Ok(h) if h.iter().any(|f| !f.trim().is_empty()) => h.clone(),
        Ok(_) => return Err(FileError::Empty),
        Err(e) => return Err(FileError::Read { line: 1, source: e }),
    };
    let cols = Columns::from_header(&header)?;
    let width = header.len();
    let mut counts = Counts::default();
    let mut current: Option<OrderHeader> = None;
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line().max(2);
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(FileError::Read { line, source: e }),
        }
        let line = record.position().map(|p| lines.borrow_mut().line_at(p.byte())).unwrap_or(line);
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue; // blank line: not a row
        }
        counts.rows_read += 1;
        let outcome = parse_row(&record, width, &cols, &mut current, source_key, line);
        match outcome {
            Ok(row) => {
                counts.events += 1;
                if row.identifier_warning {
                    counts.identifier_warnings += 1;
                }
                if let Some(obs) = row.observation {
                    counts.observations += 1;
                    sink.observation(obs).map_err(FileError::Sink)?;
                }
                sink.event(row.event).map_err(FileError::Sink)?;
            }
            Err(reason) => {
                counts.rejected += 1;
                sink.rejected(RejectedRow {
                    channel: CHANNEL.into(),
                    source_key: source_key.into(),
                    line,
                    reason,
                    raw: raw_line(&record),
                })
                .map_err(FileError::Sink)?;
            }
        }
    }
    Ok(counts)
}

struct ParsedRow {
    event: CanonicalEvent,
    observation: Option<Observation>,
    identifier_warning: bool,
}

fn raw_line(record: &csv::ByteRecord) -> String {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    let _ = w.write_byte_record(record);
    let bytes = w.into_inner().unwrap_or_default();
    String::from_utf8_lossy(&bytes).trim_end_matches('\n').to_string()
}

fn field<'r>(record: &'r csv::ByteRecord, idx: usize, column: &str) -> Result<&'r str, String> {
    let bytes = record.get(idx).unwrap_or(b"");
    std::str::from_utf8(bytes).map(str::trim).map_err(|_| format!("column {column:?} is not valid UTF-8"))
}

fn opt_field(record: &csv::ByteRecord, idx: Option<usize>, column: &str) -> Result<String, String> {
    match idx {
        Some(i) => field(record, i, column).map(str::to_string),
        None => Ok(String::new()),
    }
}

/// Parses `Created at`: `2026-03-29 09:15:00 +0200` (shop exports) or RFC 3339.
pub fn parse_created_at(raw: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(dt) = DateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S %z") {
        return Ok(dt.with_timezone(&Utc));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(raw) {
        return Ok(dt.with_timezone(&Utc));
    }
    if NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S").is_ok() {
        return Err(format!("Created at {raw:?} has no UTC offset"));
    }
    Err(format!("Created at {raw:?} is not a date-time like 2026-03-29 09:15:00 +0200"))
}

fn parse_row(
    record: &csv::ByteRecord,
    width: usize,
    c: &Columns,
    current: &mut Option<OrderHeader>,
    source_key: &str,
    line: u64,
) -> Result<ParsedRow, String> {
    if record.len() != width {
        return Err(format!("expected {width} fields, found {}", record.len()));
    }
    let name = field(record, c.name, "Name")?;
    if name.is_empty() {
        return Err("missing order number (Name)".into());
    }
    let email = field(record, c.email, "Email")?;
    let created_at = field(record, c.created_at, "Created at")?;
    let starts_order = !email.is_empty() || !created_at.is_empty();
    if starts_order {
        let same_order = current.as_ref().is_some_and(|h| h.name == name);
        let (lines, observed) = current.as_ref().filter(|_| same_order).map(|h| (h.lines, h.observed)).unwrap_or((0, false));
        *current = Some(OrderHeader {
            name: name.to_string(),
            email: email.to_string(),
            created_at: created_at.to_string(),
            phone: opt_field(record, c.phone, "Phone")?,
            customer_id: opt_field(record, c.customer_id, "Customer ID")?,
            currency: opt_field(record, c.currency, "Currency")?,
            total: opt_field(record, c.total, "Total")?,
            billing_name: opt_field(record, c.billing_name, "Billing Name")?,
            zip: opt_field(record, c.zip, "Billing Zip")?,
            city: opt_field(record, c.city, "Billing City")?,
            accepts_marketing: opt_field(record, c.accepts_marketing, "Accepts Marketing")?,
            lines,
            observed,
        });
    } else if current.as_ref().is_none_or(|h| h.name != name) {
        *current = None;
        return Err(format!(
            "order {name}: order-level columns (Email, Created at) are blank and no earlier row of this order carries them"
        ));
    }
    let header = current.as_mut().expect("set above");
    header.lines += 1;
    let line_in_order = header.lines;

    let occurred_at = parse_created_at(&header.created_at)?;
    let quantity_raw = field(record, c.quantity, "Lineitem quantity")?;
    let quantity: i64 = match quantity_raw.parse::<i64>() {
        Ok(q) if q > 0 => q,
        Ok(q) => return Err(format!("Lineitem quantity {q} is not positive")),
        Err(_) if quantity_raw.is_empty() => return Err("Lineitem quantity is missing".into()),
        Err(_) => return Err(format!("Lineitem quantity {quantity_raw:?} is not a whole number")),
    };
    let price_raw = field(record, c.price, "Lineitem price")?;
    let unit_price = parse_minor(price_raw, '.').map_err(|e| format!("Lineitem price: {e}"))?;
    let sku = field(record, c.sku, "Lineitem sku")?;
    if sku.is_empty() {
        return Err("Lineitem sku is missing".into());
    }
    let line_total = unit_price.checked_mul(quantity).ok_or("line total overflows")?;
    let order_total = if header.total.is_empty() {
        None
    } else {
        Some(parse_minor(&header.total, '.').map_err(|e| format!("Total: {e}"))?)
    };

    let email = normalize_email(&header.email).ok();
    let phone = normalize_phone(&header.phone, "FR").ok().flatten();
    let identifier_warning = email.is_none() || (!header.phone.is_empty() && phone.is_none());
    let customer_id = (!header.customer_id.is_empty()).then(|| format!("{CHANNEL}:{}", header.customer_id));
    let mut identifiers = Vec::new();
    if let Some(id) = &customer_id {
        identifiers.push(Identifier::new(IdentifierKind::CustomerId, id.clone()));
    }
    if let Some(e) = &email {
        identifiers.push(Identifier::new(IdentifierKind::Email, e.clone()));
    }
    if let Some(p) = &phone {
        identifiers.push(Identifier::new(IdentifierKind::Phone, p.clone()));
    }
    // The anchor is the identifier identity resolves on first: the email, else the others.
    let anchor_id = email
        .as_ref()
        .map(|e| identifier_hash(IdentifierKind::Email, e))
        .or_else(|| identifiers.first().map(Identifier::hash));

    let observation = if !header.observed && !identifiers.is_empty() {
        header.observed = true;
        let (first_name, last_name) = split_name(&header.billing_name);
        Some(Observation {
            observation_id: stable_id(&[CHANNEL, "order", &header.name]),
            channel: CHANNEL.into(),
            source_key: source_key.into(),
            source_line: line,
            observed_at: occurred_at,
            identifiers,
            traits: Traits {
                first_name,
                last_name,
                postal_code: non_empty(&header.zip),
                city: non_empty(&header.city),
            },
            email_opt_in: match header.accepts_marketing.to_ascii_lowercase().as_str() {
                "yes" | "true" | "oui" | "1" => Some(true),
                "no" | "false" | "non" | "0" => Some(false),
                _ => None,
            },
        })
    } else {
        None
    };

    let event = CanonicalEvent {
        event_id: stable_id(&[CHANNEL, EVENT_TYPE, &header.name, &line_in_order.to_string()]),
        channel: CHANNEL.into(),
        event_type: EVENT_TYPE.into(),
        occurred_at,
        anchor_id,
        email_sha256: email.as_deref().map(sha256_hex),
        phone_sha256: phone.as_deref().map(sha256_hex),
        order_id: Some(header.name.clone()),
        sku: Some(sku.to_string()),
        product_name: opt_field(record, c.product, "Lineitem name").ok().and_then(|s| non_empty(&s)),
        category: opt_field(record, c.category, "Lineitem category").ok().and_then(|s| non_empty(&s)),
        quantity: Some(quantity),
        unit_price_minor: Some(unit_price),
        line_total_minor: Some(line_total),
        order_total_minor: order_total,
        currency: non_empty(&header.currency).or(Some("EUR".into())),
        source_key: source_key.into(),
        source_line: line,
    };
    Ok(ParsedRow { event, observation, identifier_warning })
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn split_name(full: &str) -> (Option<String>, Option<String>) {
    let full = full.trim();
    match full.split_once(char::is_whitespace) {
        Some((first, last)) => (non_empty(first), non_empty(last)),
        None => (non_empty(full), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        events: Vec<CanonicalEvent>,
        rejected: Vec<RejectedRow>,
        observations: Vec<Observation>,
    }
    impl RowSink for Collect {
        fn event(&mut self, e: CanonicalEvent) -> Result<(), SinkError> {
            self.events.push(e);
            Ok(())
        }
        fn rejected(&mut self, r: RejectedRow) -> Result<(), SinkError> {
            self.rejected.push(r);
            Ok(())
        }
        fn observation(&mut self, o: Observation) -> Result<(), SinkError> {
            self.observations.push(o);
            Ok(())
        }
    }

    const HEADER: &str = "Name,Email,Phone,Customer ID,Created at,Currency,Subtotal,Shipping,Total,Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Lineitem category,Billing Name,Billing Zip,Billing City,Accepts Marketing\n";

    fn run(body: &str) -> (Result<Counts, FileError>, Collect) {
        let mut sink = Collect::default();
        let counts = parse(body.as_bytes(), "ecommerce/test.csv", &mut sink);
        (counts, sink)
    }

    #[test]
    fn fills_down_order_level_columns() {
        let csv = format!(
            "{HEADER}#1001, Marie.Dupont@Gmail.com ,06 12 34 56 78,42,2026-03-29 09:15:00 +0200,EUR,37.40,4.90,42.30,1,\"Pull col roulé, laine\",24.90,SKU-VET-1,vetements,Marie Dupont,75011,Paris,yes\n\
             #1001,,,,,,,,,1,Bonnet,12.50,SKU-ACC-2,accessoires,,,,\n"
        );
        let (counts, sink) = run(&csv);
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
        assert!(o.identifiers.contains(&Identifier::new(IdentifierKind::Email, "marie.dupont@gmail.com")));
        assert!(o.identifiers.contains(&Identifier::new(IdentifierKind::Phone, "+33612345678")));
        assert_eq!(o.traits.first_name.as_deref(), Some("Marie"));
        assert_eq!(o.email_opt_in, Some(true));
        assert_ne!(sink.events[0].event_id, sink.events[1].event_id);
    }

    #[test]
    fn malformed_rows_are_rejected_with_line_and_reason() {
        let csv = format!(
            "{HEADER}#1,a@b.fr,,,2026-01-10 10:00:00 +0100,EUR,10.00,0.00,10.00,deux,X,10.00,S1,c,A B,75001,Paris,no\n\
             \n\
             #1,,,,,,,,,1,Y,N/A,S2,c,,,,\n\
             #2,,,,,,,,,1,Y,1.00,S2,c,,,,\n\
             #3,c@d.fr,,,31/01/2026,EUR,1.00,0.00,1.00,1,Z,1.00,S3,c,,,,\n\
             #4,e@f.fr,,,2026-01-10 10:00:00 +0100,EUR\n\
             #5,e@f.fr,,,2026-01-10 10:00:00 +0100,EUR,1.00,0.00,1.00,1,Z,1.00,S3,c,,,,\n"
        );
        let (counts, sink) = run(&csv);
        let counts = counts.unwrap();
        assert_eq!(counts.rows_read, 6);
        assert_eq!(counts.rows_read, counts.events + counts.rejected);
        let lines: Vec<u64> = sink.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 4, 5, 6, 7]);
        assert!(sink.rejected[0].reason.contains("quantity"), "{}", sink.rejected[0].reason);
        assert!(sink.rejected[1].reason.contains("price"));
        assert!(sink.rejected[2].reason.contains("blank"));
        assert!(sink.rejected[3].reason.contains("31/01/2026"));
        assert!(sink.rejected[4].reason.contains("expected 18 fields"));
        assert_eq!(sink.events[0].order_id.as_deref(), Some("#5"));
        assert!(sink.rejected[0].raw.starts_with("#1,a@b.fr"));
    }

    #[test]
    fn missing_required_column_is_a_file_error() {
        let (res, _) = run("Name,Email,Created at\n#1,a@b.fr,2026-01-01 00:00:00 +0100\n");
        let err = res.unwrap_err();
        assert!(err.to_string().contains("Lineitem quantity"), "{err}");
        assert!(matches!(run("").0, Err(FileError::Empty)));
    }

    #[test]
    fn bad_email_keeps_the_event_without_identity() {
        let csv = format!("{HEADER}#1,not-an-email,,,2026-01-10 10:00:00 +0100,EUR,1.00,0.00,1.00,1,Z,1.00,S3,c,,,,\n");
        let (counts, sink) = run(&csv);
        let counts = counts.unwrap();
        assert_eq!((counts.events, counts.observations, counts.identifier_warnings), (1, 0, 1));
        assert_eq!(sink.events[0].anchor_id, None);
    }

    #[test]
    fn line_numbers_count_blank_lines_and_crlf() {
        let csv = format!("{HEADER}\r\n\r\n#1,a@b.fr,,,2026-01-10 10:00:00 +0100,EUR,1.00,0.00,1.00,x,Z,1.00,S3,c,,,,\r\n\n#2,a@b.fr,,,2026-01-10 10:00:00 +0100,EUR,1.00,0.00,1.00,y,Z,1.00,S3,c,,,,\r\n").replace("Marketing\n", "Marketing\r\n");
        let (counts, sink) = run(&csv);
        assert_eq!(counts.unwrap().rejected, 2);
        assert_eq!(sink.rejected.iter().map(|r| r.line).collect::<Vec<_>>(), vec![4, 6]);
    }

    #[test]
    fn utf8_bom_in_header_is_ignored() {
        let csv = format!("\u{feff}{HEADER}#1,a@b.fr,,,2026-01-10 10:00:00 +0100,EUR,1.00,0.00,1.00,1,Z,1.00,S3,c,,,,\n");
        assert_eq!(run(&csv).0.unwrap().events, 1);
    }

    #[test]
    fn same_input_same_ids() {
        let csv = format!("{HEADER}#1,a@b.fr,,,2026-01-10 10:00:00 +0100,EUR,1.00,0.00,1.00,1,Z,1.00,S3,c,,,,\n");
        let (_, a) = run(&csv);
        let (_, b) = run(&csv);
        assert_eq!(a.events, b.events);
        assert_eq!(a.observations, b.observations);
    }
}
