//! Shared output machinery of the channel writers: a line-counting, encoding
//! sink; the truth writer; file-level dirt; the per-export context.

use std::io::Write;

use anyhow::{bail, Context};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::profile::{profile, Profile};
use super::traps::Families;
use super::{ChannelStats, Export, CHANNEL_BLOCK_PERSONS, CHANNEL_TRUTH_HEADER};
use crate::rng::{person_rng, pick_index, Stream};
use crate::{person, GenConfig, Person};

/// Staging buffers are written out once they reach this size.
const FLUSH_AT: usize = 1 << 16;

/// Share of data rows preceded by an empty line (CSV and NDJSON exports).
const BLANK_LINE_RATE: f64 = 0.002;

/// Key index of the file-level dirt stream of an export (far above any person index).
const DIRT_INDEX_BASE: u64 = 1 << 62;

/// Identifier kinds, as bits of [`Truth::ids`]; written in this order.
pub(crate) mod ids {
    pub(crate) const CUSTOMER_ID: u8 = 1;
    pub(crate) const EMAIL: u8 = 2;
    pub(crate) const PHONE: u8 = 4;
    pub(crate) const LOYALTY_CARD: u8 = 8;
    pub(crate) const DEVICE_ID: u8 = 16;
    pub(crate) const COOKIE_ID: u8 = 32;
    pub(crate) const NAMES: [(u8, &str); 6] = [
        (CUSTOMER_ID, "customer_id"),
        (EMAIL, "email"),
        (PHONE, "phone"),
        (LOYALTY_CARD, "loyalty_card"),
        (DEVICE_ID, "device_id"),
        (COOKIE_ID, "cookie_id"),
    ];
}

/// Why a row must be rejected by a correct spec-driven parser.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Defect {
    /// A CSV record with one field too many or too few.
    FieldCount,
    /// The date column does not match the spec's format.
    DateInvalid,
    /// The event-type column holds a value the spec does not map (`unmapped = "reject"`).
    EventUnknown,
    /// A required quantity is not a whole number.
    QuantityNotANumber,
    /// A required amount does not parse (`12,9O`, `N/A`).
    PriceNotANumber,
    /// A required SKU is blank.
    SkuMissing,
    /// A required e-mail is blank.
    EmailMissing,
    /// A required phone number is blank.
    PhoneMissing,
    /// An NDJSON line that is not JSON.
    InvalidJson,
    /// The timestamp is not an epoch number.
    TimestampInvalid,
    /// The timestamp is absent.
    TimestampMissing,
    /// A purchase without its required order id.
    OrderIdMissing,
    /// A purchase whose revenue is not a number.
    RevenueNotANumber,
    /// A consent row without its required channel.
    ConsentChannelMissing,
}

impl Defect {
    /// Code written in the truth's `defect` column.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Defect::FieldCount => "field_count",
            Defect::DateInvalid => "date_invalid",
            Defect::EventUnknown => "event_type_unknown",
            Defect::QuantityNotANumber => "quantity_not_a_number",
            Defect::PriceNotANumber => "price_not_a_number",
            Defect::SkuMissing => "sku_missing",
            Defect::EmailMissing => "email_missing",
            Defect::PhoneMissing => "phone_missing",
            Defect::InvalidJson => "invalid_json",
            Defect::TimestampInvalid => "timestamp_invalid",
            Defect::TimestampMissing => "timestamp_missing",
            Defect::OrderIdMissing => "order_id_missing",
            Defect::RevenueNotANumber => "revenue_not_a_number",
            Defect::ConsentChannelMissing => "consent_channel_missing",
        }
    }
}

/// What one data row really is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Truth<'a> {
    /// Global index of the person, `None` for an anonymous row.
    pub person: Option<usize>,
    pub event_type: &'static str,
    /// True instant, Unix milliseconds.
    pub occurred_ms: i64,
    pub reference: &'a str,
    /// Bits of [`ids`].
    pub ids: u8,
    pub note: &'static str,
    pub defect: Option<Defect>,
    /// Bits of [`ids`] (e-mail, phone) written but unusable: the row is
    /// kept, the identifier dropped.
    pub unusable: u8,
}

/// A reusable CSV record: `len` fields, each a reused `String`.
#[derive(Debug, Default)]
pub(crate) struct Row {
    fields: Vec<String>,
    len: usize,
}

impl Row {
    /// Clears the row and gives it `width` empty fields.
    pub(crate) fn reset(&mut self, width: usize) {
        if self.fields.len() < width + 1 {
            self.fields.resize_with(width + 1, String::new);
        }
        for f in &mut self.fields[..width] {
            f.clear();
        }
        self.len = width;
    }

    /// Field `i`, for writing into.
    pub(crate) fn at(&mut self, i: usize) -> &mut String {
        &mut self.fields[i]
    }

    /// Sets field `i` to `value`.
    pub(crate) fn set(&mut self, i: usize, value: &str) {
        let f = &mut self.fields[i];
        f.clear();
        f.push_str(value);
    }

    /// Field `i`.
    pub(crate) fn get(&self, i: usize) -> &str {
        &self.fields[i]
    }

    /// The record's fields.
    pub(crate) fn fields(&self) -> &[String] {
        &self.fields[..self.len]
    }

    /// Drops the last field (a truncated record).
    pub(crate) fn drop_last(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// Splits field `i` in two at its first comma (else its first space),
    /// as an unquoted separator inside the value would (one field too many).
    /// A value without either gains an empty field after it.
    pub(crate) fn split_field(&mut self, i: usize) {
        let value = std::mem::take(&mut self.fields[i]);
        let cut = value.find(',').or_else(|| value.find(' ')).unwrap_or(value.len());
        let (head, tail) = value.split_at(cut);
        let tail = tail.get(1..).unwrap_or("").to_owned();
        self.fields[i] = head.to_owned();
        if self.fields.len() < self.len + 1 {
            self.fields.push(String::new());
        }
        // Shift the fields after `i` one slot right.
        self.fields[i + 1..=self.len].rotate_right(1);
        self.fields[i + 1] = tail;
        self.len += 1;
    }
}

/// Output side of an export: a UTF-8 staging buffer encoded on flush,
/// counting physical lines.
pub(crate) struct Sink<'a> {
    out: &'a mut dyn Write,
    buf: String,
    cp1252: bool,
    sep: u8,
    newline: &'static str,
    /// Physical lines completed so far.
    lines: u64,
}

impl<'a> Sink<'a> {
    pub(crate) fn new(out: &'a mut dyn Write, format: Format) -> Self {
        let mut buf = String::with_capacity(FLUSH_AT + 4096);
        if format.bom {
            buf.push('\u{feff}');
        }
        Sink { out, buf, cp1252: format.cp1252, sep: format.sep, newline: format.newline, lines: 0 }
    }

    /// The line the next row will start on.
    pub(crate) fn next_line(&self) -> u64 {
        self.lines + 1
    }

    /// Writes one CSV record and its line terminator.
    pub(crate) fn record<S: AsRef<str>>(&mut self, fields: &[S]) -> anyhow::Result<()> {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.buf.push(self.sep as char);
            }
            push_csv_field(&mut self.buf, f.as_ref(), self.sep);
        }
        self.end_line()
    }

    /// Writes `text` (which must not contain a newline) and a line terminator.
    pub(crate) fn line(&mut self, text: &str) -> anyhow::Result<()> {
        self.buf.push_str(text);
        self.end_line()
    }

    /// Writes `text` without ending the line.
    pub(crate) fn text(&mut self, text: &str) {
        self.buf.push_str(text);
    }

    fn end_line(&mut self) -> anyhow::Result<()> {
        self.buf.push_str(self.newline);
        self.lines += 1;
        if self.buf.len() >= FLUSH_AT {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> anyhow::Result<()> {
        if self.cp1252 {
            let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&self.buf);
            if unmappable {
                bail!("a character of the export has no Windows-1252 form");
            }
            self.out.write_all(&bytes).context("writing the export")?;
        } else {
            self.out.write_all(self.buf.as_bytes()).context("writing the export")?;
        }
        self.buf.clear();
        Ok(())
    }

    /// Writes out everything and flushes the writer; returns the line count.
    pub(crate) fn finish(mut self) -> anyhow::Result<u64> {
        self.flush_buf()?;
        self.out.flush().context("flushing the export")?;
        Ok(self.lines)
    }
}

/// Appends `field` to `buf`, quoted (RFC 4180) when it contains the
/// separator, a quote or a line break.
pub(crate) fn push_csv_field(buf: &mut String, field: &str, sep: u8) {
    if field.bytes().any(|b| b == sep || b == b'"' || b == b'\n' || b == b'\r') {
        buf.push('"');
        for c in field.chars() {
            if c == '"' {
                buf.push('"');
            }
            buf.push(c);
        }
        buf.push('"');
    } else {
        buf.push_str(field);
    }
}

/// Physical format of an export.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Format {
    pub sep: u8,
    pub newline: &'static str,
    pub bom: bool,
    pub cp1252: bool,
    /// Whether blank lines may be inserted between rows.
    pub blank_lines: bool,
}

impl Format {
    /// UTF-8 CSV with `sep`, LF line ends.
    pub(crate) fn csv(sep: u8) -> Self {
        Format { sep, newline: "\n", bom: false, cp1252: false, blank_lines: true }
    }

    /// Text lines (NDJSON, JSON array), UTF-8, LF.
    pub(crate) fn lines(blank_lines: bool) -> Self {
        Format { blank_lines, ..Format::csv(b',') }
    }
}

/// Truth CSV writer ([`CHANNEL_TRUTH_HEADER`]).
pub(crate) struct TruthSink<'a> {
    out: &'a mut dyn Write,
    buf: String,
}

impl<'a> TruthSink<'a> {
    /// A truth writer on `out`, header included.
    pub(crate) fn new(out: &'a mut dyn Write) -> Self {
        let mut buf = String::with_capacity(FLUSH_AT + 1024);
        buf.push_str(&CHANNEL_TRUTH_HEADER.join(","));
        buf.push('\n');
        TruthSink { out, buf }
    }

    /// Writes the truth row of the data row starting at `line`.
    pub(crate) fn row(&mut self, line: u64, t: &Truth<'_>) -> anyhow::Result<()> {
        self.row_code(line, t, t.defect.map(Defect::code))
    }

    /// Like [`TruthSink::row`], with the defect given by its code (the orders
    /// export has its own codes); `t.defect` is ignored.
    pub(crate) fn row_code(&mut self, line: u64, t: &Truth<'_>, defect: Option<&str>) -> anyhow::Result<()> {
        use std::fmt::Write as _;
        let b = &mut self.buf;
        let _ = write!(b, "{line},");
        if let Some(p) = t.person {
            let _ = write!(b, "P{p:07}");
        }
        b.push_str(if defect.is_none() { ",true," } else { ",false," });
        b.push_str(defect.unwrap_or(""));
        b.push(',');
        b.push_str(t.event_type);
        b.push(',');
        super::text::push_rfc3339_ms(b, t.occurred_ms);
        b.push(',');
        push_csv_field(b, t.reference, b',');
        b.push(',');
        let mut first = true;
        for (bit, name) in ids::NAMES {
            if t.ids & bit != 0 {
                if !first {
                    b.push('|');
                }
                b.push_str(name);
                first = false;
            }
        }
        b.push(',');
        b.push_str(t.note);
        b.push(',');
        b.push_str(match t.unusable & (ids::EMAIL | ids::PHONE) {
            0 => "",
            ids::EMAIL => "email_invalid",
            ids::PHONE => "phone_invalid",
            _ => "email_invalid|phone_invalid",
        });
        b.push('\n');
        if b.len() >= FLUSH_AT {
            self.flush_buf()?;
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> anyhow::Result<()> {
        self.out.write_all(self.buf.as_bytes()).context("writing the truth CSV")?;
        self.buf.clear();
        Ok(())
    }

    /// Writes out everything and flushes the writer.
    pub(crate) fn finish(mut self) -> anyhow::Result<()> {
        self.flush_buf()?;
        self.out.flush().context("flushing the truth CSV")
    }
}

/// Everything a channel writer needs while it writes one export.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a GenConfig,
    /// `cfg.now` as Unix seconds.
    pub now: i64,
    pub sink: Sink<'a>,
    truth: TruthSink<'a>,
    dirt: ChaCha8Rng,
    /// The dirt of the planted rows (`super::planted`), swapped with `dirt` while they are
    /// written, so that the regular rows draw exactly what they would without the plant.
    other_dirt: ChaCha8Rng,
    planted: bool,
    blank_lines: bool,
    limit: u64,
    stats: ChannelStats,
    /// Event-type counters (few distinct types: a linear scan is fastest).
    types: Vec<(&'static str, u64)>,
    /// First person index of the current block and who has been seen in it.
    block_start: usize,
    seen: Vec<bool>,
}

impl<'a> Ctx<'a> {
    /// Starts an export: writes the truth header (the export's header is the
    /// caller's, through [`Ctx::sink`]).
    pub(crate) fn new(cfg: &'a GenConfig, export: Export, out: &'a mut dyn Write, truth_out: &'a mut dyn Write, format: Format) -> Self {
        let truth = TruthSink::new(truth_out);
        Ctx {
            cfg,
            now: cfg.now.timestamp(),
            sink: Sink::new(out, format),
            truth,
            dirt: person_rng(cfg.seed, DIRT_INDEX_BASE + export as u64, Stream::Dirt),
            other_dirt: person_rng(cfg.seed, DIRT_INDEX_BASE + export as u64, Stream::Planted),
            planted: false,
            blank_lines: format.blank_lines,
            limit: cfg.max_rows.unwrap_or(u64::MAX),
            stats: ChannelStats::new(export),
            types: Vec::new(),
            block_start: 0,
            seen: Vec::new(),
        }
    }

    /// Switches the file-level dirt to the planted rows' stream (`planted`) or back to the
    /// export's, for the rows written next.
    pub(crate) fn planted_rows(&mut self, planted: bool) {
        if planted != self.planted {
            std::mem::swap(&mut self.dirt, &mut self.other_dirt);
            self.planted = planted;
        }
    }

    /// Whether `max_rows` rows have been written.
    pub(crate) fn full(&self) -> bool {
        self.stats.rows >= self.limit
    }

    /// Starts a block of persons `start..start + len` (for person counting).
    pub(crate) fn begin_block(&mut self, start: usize, len: usize) {
        self.block_start = start;
        self.seen.clear();
        self.seen.resize(len, false);
    }

    /// Draws whether the next row is malformed and, if so, with which of
    /// `kinds`. Always consumes two draws, so that raising the rate only adds
    /// malformed rows. `kinds` must not be empty.
    pub(crate) fn defect(&mut self, kinds: &[Defect]) -> Option<Defect> {
        let roll: f64 = self.dirt.random();
        let kind = kinds.get(pick_index(&mut self.dirt, kinds.len())).copied();
        if roll < self.cfg.malformed_rate {
            kind
        } else {
            None
        }
    }

    /// A cosmetic coin flip with probability `percent` %, from the dirt stream.
    pub(crate) fn chance(&mut self, percent: u32) -> bool {
        self.dirt.random_range(0..100u32) < percent
    }

    /// A cosmetic pick in `0..n` from the dirt stream.
    pub(crate) fn pick(&mut self, n: usize) -> usize {
        pick_index(&mut self.dirt, n)
    }

    /// Maybe writes a blank line (one draw per row, whatever the format).
    fn maybe_blank(&mut self) -> anyhow::Result<()> {
        let roll: f64 = self.dirt.random();
        if self.blank_lines && roll < BLANK_LINE_RATE && self.stats.rows > 0 {
            self.sink.line("")?;
            self.stats.blank_lines += 1;
        }
        Ok(())
    }

    /// Writes one CSV record and its truth row.
    pub(crate) fn emit_record(&mut self, row: &Row, t: &Truth<'_>) -> anyhow::Result<()> {
        self.maybe_blank()?;
        let line = self.sink.next_line();
        self.sink.record(row.fields())?;
        self.account(line, t)
    }

    /// Starts one NDJSON line (or JSON-array element) with `text` and writes
    /// its truth row; the caller ends the line with [`Ctx::end_line`] (the
    /// app writer puts the `,` between array elements at the end of a line).
    pub(crate) fn emit_line(&mut self, text: &str, t: &Truth<'_>) -> anyhow::Result<()> {
        self.maybe_blank()?;
        let line = self.sink.next_line();
        self.sink.text(text);
        self.account(line, t)
    }

    /// Ends the current text line (after [`Ctx::emit_line`]).
    pub(crate) fn end_line(&mut self, tail: &str) -> anyhow::Result<()> {
        self.sink.line(tail)
    }

    fn account(&mut self, line: u64, t: &Truth<'_>) -> anyhow::Result<()> {
        self.truth.row(line, t)?;
        self.stats.rows += 1;
        if t.defect.is_some() {
            self.stats.malformed_rows += 1;
        } else if let Some(entry) = self.types.iter_mut().find(|(k, _)| *k == t.event_type) {
            entry.1 += 1;
        } else {
            self.types.push((t.event_type, 1));
        }
        if let Some(p) = t.person {
            if let Some(seen) = p.checked_sub(self.block_start).and_then(|slot| self.seen.get_mut(slot)) {
                if !*seen {
                    *seen = true;
                    self.stats.persons += 1;
                }
            }
        }
        Ok(())
    }

    /// Flushes both outputs and returns the counters.
    pub(crate) fn finish(mut self) -> anyhow::Result<ChannelStats> {
        self.truth.finish()?;
        self.stats.lines = self.sink.finish()?;
        self.stats.event_types = self.types.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Ok(self.stats)
    }
}

/// Fills `order` with `(key(item), index)` for `items`, sorted: iterating
/// it visits the items in key order without moving them (they are large).
pub(crate) fn sort_order<T, K: Ord + Copy>(items: &[T], key: impl Fn(&T) -> K, order: &mut Vec<(K, u32)>) {
    order.clear();
    order.extend(items.iter().enumerate().map(|(i, t)| (key(t), i as u32)));
    order.sort_unstable();
}

/// The blocks `(start, end)` of persons `0..persons`.
pub(crate) fn blocks(persons: usize, size: usize) -> impl Iterator<Item = (usize, usize)> {
    let size = size.max(1);
    (0..persons.div_ceil(size)).map(move |b| {
        let start = b * size;
        (start, persons.min(start + size))
    })
}

/// The loop every channel writer shares: persons go in blocks of
/// [`CHANNEL_BLOCK_PERSONS`] until `max_rows` is reached. In a block, `plan`
/// appends each person's rows, drawn from the person's own `stream`, given
/// `(index, slot)` (person index, position in the block); the block's rows are
/// then sorted by `key` and handed to `write` in that order, with the block's
/// persons and profiles (indexed by slot). Profiles carry the person's family
/// link (`Profile::family`, see `super::traps`).
pub(crate) fn write_blocks<'a, T, K: Ord + Copy>(
    ctx: &mut Ctx<'a>,
    stream: Stream,
    mut plan: impl FnMut(&mut ChaCha8Rng, (usize, usize), &Person, &Profile, &mut Vec<T>),
    key: impl Fn(&T) -> K,
    mut write: impl FnMut(&mut Ctx<'a>, &T, &[(Person, Profile)]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let cfg = ctx.cfg;
    let families = Families::new(cfg);
    let mut rows = Vec::new();
    let mut order = Vec::new();
    let mut persons = Vec::new();
    for (start, end) in blocks(cfg.persons, CHANNEL_BLOCK_PERSONS) {
        if ctx.full() {
            break;
        }
        ctx.begin_block(start, end - start);
        rows.clear();
        persons.clear();
        for (slot, index) in (start..end).enumerate() {
            let p = person(cfg, index);
            let mut prof = profile(cfg, index, &p);
            prof.family = families.link(cfg, index, &prof);
            let mut rng = person_rng(cfg.seed, index as u64, stream);
            plan(&mut rng, (index, slot), &p, &prof, &mut rows);
            persons.push((p, prof));
        }
        sort_order(&rows, &key, &mut order);
        for &(_, i) in &order {
            if ctx.full() {
                break;
            }
            write(ctx, &rows[i as usize], &persons)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        let mut b = String::new();
        push_csv_field(&mut b, "a;b", b';');
        b.push('|');
        push_csv_field(&mut b, "a,b", b';');
        b.push('|');
        push_csv_field(&mut b, "Tote \"Paris\"", b';');
        assert_eq!(b, "\"a;b\"|a,b|\"Tote \"\"Paris\"\"\"");
    }

    #[test]
    fn row_split_and_drop() {
        let mut row = Row::default();
        row.reset(3);
        row.set(0, "a");
        row.set(1, "Pull col roulé, laine");
        row.set(2, "c");
        row.split_field(1);
        assert_eq!(row.fields(), ["a", "Pull col roulé", " laine", "c"]);
        row.split_field(1);
        assert_eq!(row.fields(), ["a", "Pull", "col roulé", " laine", "c"]);
        row.drop_last();
        assert_eq!(row.fields().len(), 4);
        row.reset(2);
        assert_eq!(row.fields(), ["", ""]);
    }

    #[test]
    fn blocks_cover_everything() {
        assert_eq!(blocks(5, 2).collect::<Vec<_>>(), [(0, 2), (2, 4), (4, 5)]);
        assert_eq!(blocks(0, 2).count(), 0);
    }
}
