//! Exports of every channel of `channels/<channel>/<format>.toml`, with their
//! per-row ground truth.
//!
//! Every writer follows the same pattern as the orders export:
//!
//! * persons are processed in blocks of [`CHANNEL_BLOCK_PERSONS`]; each
//!   person's activity on the channel is planned from its own random stream
//!   (`(seed, index, channel)`), the block's rows are sorted by time and
//!   written, so memory does not depend on the number of persons;
//! * file-level dirt (blank lines, malformed rows, cosmetic variations such as
//!   stray spaces) is drawn in output order from one stream per export, with a
//!   fixed number of draws per row, so the set of malformed rows only grows
//!   with [`GenConfig::malformed_rate`](crate::GenConfig::malformed_rate);
//! * every data row (CSV record, NDJSON line or JSON-array element) gets one
//!   truth row ([`ChannelTruthRow`]) with its 1-based physical line.
//!
//! The same person appears in several exports through stable channel
//! identifiers ([`ChannelIdentity`]), written differently from one export (or
//! one row) to the next.
//!
//! Identity-resolution traps are planted in small proportions, without
//! changing any row's validity or truth person: family members sharing an
//! e-mail and a tablet ([`family_pairs`]), the store's generic phone typed at
//! the till ([`store_generic_phone`]) and placeholder values
//! ([`BLOCKED_PLACEHOLDERS`]). [`read_truth_persons`] gives the true person
//! of every row, to measure a resolution pairwise.

mod app;
mod checkouts;
mod costs;
mod crm;
mod email;
pub(crate) mod out;
mod planted;
mod pos;
pub(crate) mod profile;
mod sms;
pub(crate) mod text;
mod traps;
mod web;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use anyhow::{ensure, Context};

use crate::GenConfig;

pub use costs::{write_costs, CostLine, CostsStats, COSTS_HEADER, COST_CHANNELS, COST_DAYS};
pub use planted::{
    read_planted_truth, write_planted_truth, PlantedTruthRow, CLICK_PERCENT, DELIVERED_PERCENT, PLANTED_TRUTH_HEADER, PURCHASE_DAYS,
    RECEIVE_PERCENT, STORE_INVITATION_CAMPAIGN, STORE_PURCHASE_PERCENT,
};
pub use profile::ChannelIdentity;
pub use traps::{family_pairs, store_generic_phone, BLOCKED_PLACEHOLDERS};

/// Number of persons whose channel activity is planned and sorted together.
///
/// Smaller than [`BLOCK_PERSONS`](crate::BLOCK_PERSONS) because a person
/// produces many more web or e-mail rows than orders.
pub const CHANNEL_BLOCK_PERSONS: usize = 2_000;

/// Exact header of the till receipts export (`channels/pos/receipts.toml`).
pub const POS_RECEIPTS_HEADER: [&str; 16] = [
    "Magasin",
    "Date",
    "Caisse",
    "Ticket",
    "Ligne",
    "Type",
    "Carte fidélité",
    "Email",
    "Téléphone",
    "Code article",
    "Libellé",
    "Rayon",
    "Quantité",
    "Prix unitaire",
    "Montant ligne",
    "Total ticket",
];

/// Receipt-level columns of [`POS_RECEIPTS_HEADER`]: filled on a receipt's
/// first line only (the spec's `[fill_down]` columns).
pub const POS_RECEIPT_LEVEL_COLUMNS: [&str; 7] = ["Date", "Caisse", "Type", "Carte fidélité", "Email", "Téléphone", "Total ticket"];

/// Exact header of the cart and checkout export (`channels/ecommerce/checkouts.toml`).
pub const CHECKOUTS_HEADER: [&str; 11] =
    ["Checkout ID", "Created at", "Event", "Customer ID", "Email", "Phone", "Product SKU", "Product name", "Quantity", "Price", "Currency"];

/// Exact header of the e-mail activity export (`channels/email/activity.toml`).
pub const EMAIL_ACTIVITY_HEADER: [&str; 6] = ["Email", "Campaign ID", "Campaign Name", "Event", "Event Date", "Link URL"];

/// Exact header of the SMS gateway report (`channels/sms/report.toml`).
pub const SMS_REPORT_HEADER: [&str; 6] = ["ID message", "Campagne", "Numéro", "Statut", "Date", "Lien"];

/// Exact header of the CRM contacts export (`channels/crm/contacts.toml`).
pub const CRM_CONTACTS_HEADER: [&str; 15] = [
    "ID contact",
    "Type",
    "Date",
    "Civilité",
    "Prénom",
    "Nom",
    "Email",
    "Mobile",
    "Adresse",
    "Code postal",
    "Ville",
    "Pays",
    "Canal",
    "Consentement",
    "Carte fidélité",
];

/// Exact header of every channel truth CSV (see [`ChannelTruthRow`]).
pub const CHANNEL_TRUTH_HEADER: [&str; 10] =
    ["line", "person_id", "valid", "defect", "event_type", "occurred_at_utc", "reference", "identifiers", "note", "identifier_warning"];

/// Exact header of the identities file written by [`write_identities`].
pub const IDENTITIES_HEADER: [&str; 13] = [
    "person_id",
    "customer_id",
    "loyalty_card",
    "cookie_ids",
    "device_id",
    "push_token",
    "platform",
    "store_shopper",
    "web_visitor",
    "orders_online",
    "email_subscriber",
    "sms_subscriber",
    "app_user",
];

/// One export file of one channel, as described by `channels/<channel>/<name>.toml`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Export {
    /// `pos/receipts.csv`: till receipt lines, `;`, decimal comma,
    /// Windows-1252 (or UTF-8 with BOM, see [`PosEncoding`]), CRLF.
    PosReceipts,
    /// `ecommerce/orders.csv`: the Shopify-style orders export of
    /// [`write_ecommerce_orders`](crate::write_ecommerce_orders).
    EcommerceOrders,
    /// `ecommerce/checkouts.csv`: cart additions and checkout starts.
    EcommerceCheckouts,
    /// `web/events.ndjson`: GA4-export-like web analytics events.
    WebEvents,
    /// `email/activity.csv`: e-mail service provider campaign activity.
    EmailActivity,
    /// `sms/report.csv`: SMS gateway delivery report.
    SmsReport,
    /// `app/events.json`: mobile app events, one JSON array.
    AppEvents,
    /// `crm/contacts.csv`: CRM contact history, UTF-8 with BOM, CRLF.
    CrmContacts,
}

impl Export {
    /// Every export, in the order the `channels` command writes them.
    pub const ALL: [Export; 8] = [
        Export::PosReceipts,
        Export::EcommerceOrders,
        Export::EcommerceCheckouts,
        Export::WebEvents,
        Export::EmailActivity,
        Export::SmsReport,
        Export::AppEvents,
        Export::CrmContacts,
    ];

    /// The spec's `channel` (`pos`, `ecommerce`, `web`, `email`, `sms`, `app`, `crm`).
    pub fn channel(self) -> &'static str {
        match self {
            Export::PosReceipts => "pos",
            Export::EcommerceOrders | Export::EcommerceCheckouts => "ecommerce",
            Export::WebEvents => "web",
            Export::EmailActivity => "email",
            Export::SmsReport => "sms",
            Export::AppEvents => "app",
            Export::CrmContacts => "crm",
        }
    }

    /// The spec's `name` (`receipts`, `orders`, `checkouts`, `events`, …).
    pub fn name(self) -> &'static str {
        match self {
            Export::PosReceipts => "receipts",
            Export::EcommerceOrders => "orders",
            Export::EcommerceCheckouts => "checkouts",
            Export::WebEvents | Export::AppEvents => "events",
            Export::EmailActivity => "activity",
            Export::SmsReport => "report",
            Export::CrmContacts => "contacts",
        }
    }

    /// File name of the export (`receipts.csv`, `events.ndjson`, `events.json`).
    pub fn file_name(self) -> &'static str {
        match self {
            Export::PosReceipts => "receipts.csv",
            Export::EcommerceOrders => "orders.csv",
            Export::EcommerceCheckouts => "checkouts.csv",
            Export::WebEvents => "events.ndjson",
            Export::EmailActivity => "activity.csv",
            Export::SmsReport => "report.csv",
            Export::AppEvents => "events.json",
            Export::CrmContacts => "contacts.csv",
        }
    }

    /// File name of the truth CSV written beside the export (`receipts.truth.csv`).
    pub fn truth_file_name(self) -> String {
        format!("{}.truth.csv", self.name())
    }

    /// Path of the export relative to an output directory (`pos/receipts.csv`),
    /// with `/` separators.
    pub fn relative_path(self) -> String {
        format!("{}/{}", self.channel(), self.file_name())
    }

    /// Path of the truth CSV relative to an output directory (`pos/receipts.truth.csv`).
    pub fn truth_relative_path(self) -> String {
        format!("{}/{}", self.channel(), self.truth_file_name())
    }

    /// The exact CSV header (column names) of the export; empty for the JSON exports.
    pub fn header(self) -> &'static [&'static str] {
        match self {
            Export::PosReceipts => &POS_RECEIPTS_HEADER,
            Export::EcommerceOrders => &crate::ORDERS_HEADER,
            Export::EcommerceCheckouts => &CHECKOUTS_HEADER,
            Export::EmailActivity => &EMAIL_ACTIVITY_HEADER,
            Export::SmsReport => &SMS_REPORT_HEADER,
            Export::CrmContacts => &CRM_CONTACTS_HEADER,
            Export::WebEvents | Export::AppEvents => &[],
        }
    }

    /// The canonical event types the spec maps this export's rows to (the
    /// values of the truth's `event_type` column). Web rows may also carry
    /// the unmapped analytics names the spec keeps (`session_start`, `scroll`).
    pub fn event_types(self) -> &'static [&'static str] {
        match self {
            Export::PosReceipts => &["store_purchase", "return", "store_visit"],
            Export::EcommerceOrders => &["order_line"],
            Export::EcommerceCheckouts => &["cart_add", "checkout_started"],
            Export::WebEvents => &["page_view", "product_view", "add_to_cart", "sign_up", "login", "session_start", "scroll"],
            Export::EmailActivity => &["email_sent", "email_open", "email_click", "email_bounce", "email_unsubscribe"],
            Export::SmsReport => &["sms_sent", "sms_delivered", "sms_click", "sms_stop"],
            Export::AppEvents => &["app_open", "push_opt_in", "push_opt_out", "push_open", "in_app_purchase"],
            Export::CrmContacts => &["contact_created", "contact_updated", "consent_given", "consent_withdrawn"],
        }
    }
}

impl fmt::Display for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.channel(), self.name())
    }
}

impl FromStr for Export {
    type Err = String;

    /// Accepts `channel/name` (`pos/receipts`, as [`Display`](fmt::Display)
    /// writes it), `channel-name`, the relative path (`pos/receipts.csv`), or
    /// a channel alone when it has one export (`pos`, `web`, …).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        for export in Export::ALL {
            let candidates = [export.to_string(), format!("{}-{}", export.channel(), export.name()), export.relative_path()];
            let only_one = Export::ALL.iter().filter(|e| e.channel() == export.channel()).count() == 1;
            if candidates.contains(&wanted) || (only_one && wanted == export.channel()) {
                return Ok(export);
            }
        }
        let known: Vec<String> = Export::ALL.iter().map(Export::to_string).collect();
        Err(format!("unknown export {s:?} (expected one of {})", known.join(", ")))
    }
}

/// Encoding of the till receipts export.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PosEncoding {
    /// Windows-1252 without BOM, what the till back-office writes for Excel.
    #[default]
    Windows1252,
    /// UTF-8 with a byte-order mark (newer back-office versions).
    Utf8Bom,
}

impl PosEncoding {
    /// `windows-1252` or `utf-8-bom`.
    pub fn as_str(self) -> &'static str {
        match self {
            PosEncoding::Windows1252 => "windows-1252",
            PosEncoding::Utf8Bom => "utf-8-bom",
        }
    }
}

impl fmt::Display for PosEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PosEncoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "windows-1252" | "windows1252" | "cp1252" => Ok(PosEncoding::Windows1252),
            "utf-8-bom" | "utf8-bom" | "utf-8-sig" => Ok(PosEncoding::Utf8Bom),
            _ => Err(format!("unknown POS encoding {s:?} (expected windows-1252 or utf-8-bom)")),
        }
    }
}

/// Counters of one export written by [`write_channel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelStats {
    /// The export written.
    pub export: Export,
    /// Data rows (CSV records, NDJSON lines, JSON-array elements) = truth rows.
    pub rows: u64,
    /// Rows a correct spec-driven parser must reject (truth `valid = false`).
    pub malformed_rows: u64,
    /// Empty lines inserted between rows (not rows, not in the truth).
    pub blank_lines: u64,
    /// Physical lines of the file (header, blank lines and array brackets included).
    pub lines: u64,
    /// Distinct persons with at least one row attributed to them.
    pub persons: u64,
    /// Valid rows per canonical event type (truth `event_type`).
    pub event_types: BTreeMap<String, u64>,
}

impl ChannelStats {
    pub(crate) fn new(export: Export) -> Self {
        ChannelStats { export, rows: 0, malformed_rows: 0, blank_lines: 0, lines: 0, persons: 0, event_types: BTreeMap::new() }
    }
}

/// One row of a channel truth CSV ([`CHANNEL_TRUTH_HEADER`]): what the data
/// row starting at `line` really is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct ChannelTruthRow {
    /// 1-based physical line where the row starts, counting the header, blank
    /// lines and (for the JSON array) the opening `[` line.
    pub line: u64,
    /// The person the row is about (`P0000042`), empty for anonymous rows
    /// (till receipts without any identifier).
    pub person_id: String,
    /// `false` when a correct spec-driven parser must reject the row.
    pub valid: bool,
    /// Why the row is invalid (`date_invalid`, `field_count`, …), empty when valid.
    pub defect: String,
    /// Canonical event type the spec maps the row to (for an invalid row: the
    /// type it had before it was corrupted).
    pub event_type: String,
    /// The true instant of the event, RFC 3339 UTC (`2026-05-01T08:12:00Z`,
    /// with a fraction when the export has sub-second precision).
    pub occurred_at_utc: String,
    /// The row's business reference: receipt `Magasin-Ticket`, order `Name`,
    /// `Checkout ID`, web `ga_session_id`, e-mail `Campaign ID`, SMS
    /// `ID message`, app `event_id`, CRM `ID contact`.
    pub reference: String,
    /// Identifier kinds the row carries for its person, `|`-separated, in
    /// the order `customer_id|email|phone|loyalty_card|device_id|cookie_id`
    /// (for fill-down exports: after filling down). A few of those values are
    /// identity traps the person typed but that are not theirs: a family
    /// member's e-mail or cookie ([`family_pairs`]), the store's phone
    /// ([`store_generic_phone`]) or a placeholder e-mail
    /// ([`BLOCKED_PLACEHOLDERS`]).
    pub identifiers: String,
    /// `dst_spring_forward_before`, `dst_spring_forward_after`,
    /// `dst_fall_back_first`, `dst_fall_back_second` for Paris local times
    /// within an hour of a daylight-saving switch (the `fall_back` ones are
    /// ambiguous local times), otherwise empty.
    pub note: String,
    /// `email_invalid`, `phone_invalid` or both (`|`-separated) when the row
    /// carries a mistyped optional e-mail or phone (or the `0000000000`
    /// placeholder of [`BLOCKED_PLACEHOLDERS`]): the row is valid and kept,
    /// that identifier is unusable (and absent from `identifiers`). Empty
    /// otherwise. Rows with a warning = the ingest's identifier warnings.
    pub identifier_warning: String,
}

/// Parses a channel truth CSV written by [`write_channel`].
///
/// # Errors
///
/// Malformed CSV or a row not matching [`ChannelTruthRow`].
pub fn read_channel_truth<R: Read>(r: R) -> anyhow::Result<Vec<ChannelTruthRow>> {
    crate::read_csv_rows(r, "channel truth")
}

/// The true person of every valid row of a directory written by
/// [`write_channels_dir`]: `(export path relative to dir, 1-based physical
/// line)` → `person_id`, for every export of [`Export::ALL`] (the path is
/// [`Export::relative_path`], `pos/receipts.csv`; the line is the truth's
/// `line`). Invalid rows and anonymous rows (empty `person_id`) are left out.
///
/// With it, an identity resolution can be scored pairwise: two rows belong
/// together exactly when they map to the same person.
///
/// # Errors
///
/// A missing or unreadable truth file (`pos/receipts.truth.csv`, …), with
/// its path in the message.
pub fn read_truth_persons(dir: &std::path::Path) -> anyhow::Result<HashMap<(String, u64), String>> {
    let mut persons = HashMap::new();
    for export in Export::ALL {
        let path = dir.join(export.channel()).join(export.truth_file_name());
        let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let rows = read_channel_truth(std::io::BufReader::new(file)).with_context(|| format!("reading {}", path.display()))?;
        let relative = export.relative_path();
        for row in rows {
            if row.valid && !row.person_id.is_empty() {
                persons.insert((relative.clone(), row.line), row.person_id);
            }
        }
    }
    Ok(persons)
}

/// Checks the parts of a configuration every writer relies on.
pub(crate) fn check_config(cfg: &GenConfig) -> anyhow::Result<()> {
    ensure!(
        cfg.malformed_rate.is_finite() && (0.0..=1.0).contains(&cfg.malformed_rate),
        "malformed_rate must be between 0 and 1, got {}",
        cfg.malformed_rate
    );
    Ok(())
}

/// Writes one export of persons `0..cfg.persons` to `out` and its truth
/// ([`CHANNEL_TRUTH_HEADER`], one row per data row) to `truth`, and returns
/// its counters.
///
/// The output is a pure function of `(cfg, export)`: same configuration,
/// same bytes. At most `cfg.max_rows` data rows are written when it is set
/// (the file stays well-formed: a cut receipt keeps its first line, the JSON
/// array is closed). Both writers are buffered internally and flushed before
/// returning.
///
/// [`Export::EcommerceOrders`] writes the same bytes as
/// [`write_ecommerce_orders`](crate::write_ecommerce_orders), with the truth
/// in the channel format.
///
/// # Errors
///
/// An out-of-range `malformed_rate`, or any I/O error of the writers.
pub fn write_channel(cfg: &GenConfig, export: Export, out: &mut dyn Write, truth: &mut dyn Write) -> anyhow::Result<ChannelStats> {
    check_config(cfg)?;
    let result = match export {
        Export::PosReceipts => pos::write(cfg, out, truth),
        Export::EcommerceOrders => crate::ecommerce::write_orders_channel(cfg, out, truth),
        Export::EcommerceCheckouts => checkouts::write(cfg, out, truth),
        Export::WebEvents => web::write(cfg, out, truth),
        Export::EmailActivity => email::write(cfg, out, truth),
        Export::SmsReport => sms::write(cfg, out, truth),
        Export::AppEvents => app::write(cfg, out, truth),
        Export::CrmContacts => crm::write(cfg, out, truth),
    };
    result.with_context(|| format!("writing the {export} export"))
}

/// Stable channel identifiers and channel usage of person `index`; like
/// [`person`](crate::person) it depends on `cfg.seed` only (and on `cfg.now`
/// for the first-visit time inside the cookie ids).
pub fn channel_identity(cfg: &GenConfig, index: usize) -> ChannelIdentity {
    let p = crate::person(cfg, index);
    profile::profile(cfg, index, &p).id
}

/// Writes the channel identities ([`IDENTITIES_HEADER`]) of persons
/// `0..cfg.persons` and returns the number of rows written. Lists are
/// `|`-separated; flags are `true`/`false`.
///
/// # Errors
///
/// Any I/O error of `out`.
pub fn write_identities<W: Write>(cfg: &GenConfig, out: W) -> anyhow::Result<u64> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(IDENTITIES_HEADER).context("writing the identities header")?;
    let flag = |b: bool| if b { "true" } else { "false" };
    let mut rows = 0;
    for index in 0..cfg.persons {
        let id = channel_identity(cfg, index);
        w.write_record([
            id.person_id.as_str(),
            &id.customer_id,
            id.loyalty_card.as_deref().unwrap_or(""),
            &id.cookie_ids.join("|"),
            id.device_id.as_deref().unwrap_or(""),
            id.push_token.as_deref().unwrap_or(""),
            id.platform.unwrap_or(""),
            flag(id.store_shopper),
            flag(id.web_visitor),
            flag(id.orders_online),
            flag(id.email_subscriber),
            flag(id.sms_subscriber),
            flag(id.app_user),
        ])
        .context("writing an identities row")?;
        rows += 1;
    }
    w.flush().context("flushing the identities CSV")?;
    Ok(rows)
}

/// What [`write_channels_dir`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelsSummary {
    /// Rows of `persons.csv` (and of `identities.csv`).
    pub persons: u64,
    /// Counters of every export, in [`Export::ALL`] order.
    pub exports: Vec<ChannelStats>,
}

/// Writes every export of [`Export::ALL`] under `out_dir` with its truth
/// beside it (`pos/receipts.csv` and `pos/receipts.truth.csv`, …), plus
/// `persons.csv` ([`PERSONS_HEADER`](crate::PERSONS_HEADER)),
/// `identities.csv` ([`IDENTITIES_HEADER`]) and `planted.truth.csv` (the planted
/// effects, [`PLANTED_TRUTH_HEADER`]). Directories are created.
///
/// # Errors
///
/// An invalid configuration or any I/O error (with the path in the message).
pub fn write_channels_dir(cfg: &GenConfig, out_dir: &std::path::Path) -> anyhow::Result<ChannelsSummary> {
    check_config(cfg)?;
    let persons_path = out_dir.join("persons.csv");
    let persons = crate::write_persons(cfg, create_file(&persons_path)?).with_context(|| format!("writing {}", persons_path.display()))?;
    let identities_path = out_dir.join("identities.csv");
    write_identities(cfg, create_file(&identities_path)?).with_context(|| format!("writing {}", identities_path.display()))?;
    let planted_path = out_dir.join("planted.truth.csv");
    write_planted_truth(cfg, create_file(&planted_path)?).with_context(|| format!("writing {}", planted_path.display()))?;
    let mut exports = Vec::with_capacity(Export::ALL.len());
    for export in Export::ALL {
        let path = out_dir.join(export.channel()).join(export.file_name());
        let truth_path = out_dir.join(export.channel()).join(export.truth_file_name());
        let mut out = create_file(&path)?;
        let mut truth = create_file(&truth_path)?;
        let stats = write_channel(cfg, export, &mut out, &mut truth).with_context(|| format!("writing {}", path.display()))?;
        exports.push(stats);
    }
    Ok(ChannelsSummary { persons, exports })
}

/// Creates `path`'s parent directory and a buffered writer on `path`.
pub(crate) fn create_file(path: &std::path::Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating directory {}", parent.display()))?;
    }
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(std::io::BufWriter::new(file))
}

#[cfg(test)]
mod tests;
