//! The CRM contact history export (`channels/crm/contacts.toml`): French
//! Excel CSV, `;`, UTF-8 with BOM, CRLF, `Date` `dd/mm/yyyy hh:mm` Paris
//! local time. One row per change of a contact: `Création`, `Modification`,
//! or `Consentement` given (`Oui`) or withdrawn (`Non`) on one `Canal`
//! (`E-mail`, `SMS`, `Push`, `Publicité`). Every row carries the contact's details as the
//! CRM holds them at that date (names often upper case, postal codes
//! sometimes spaced, countries spelt several ways) and, for a loyalty-card holder, the
//! card's number: the loyalty programme is the CRM's, so the card issued at a till
//! belongs to a contact.
//!
//! Each row's details are written from random bits drawn when the row is
//! planned, so the writer needs no intermediate strings.

use std::io::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::out::{ids, write_blocks, Ctx, Defect, Format, Row, Truth};
use super::pos::bad_local_date;
use super::profile::Profile;
use super::text::{dst_note, mistype_email, mistype_phone, mix64, paris_local, phone, push_dmy_hm, upper, DAY, HOUR, MINUTE};
use super::traps::typed_email_of;
use super::{ChannelStats, Export, CRM_CONTACTS_HEADER};
use crate::ecommerce::capitalise_email;
use crate::rng::{pick_index, pick_weighted, Stream};
use crate::{GenConfig, Person};

/// Street names of postal addresses.
const STREETS: [&str; 16] = [
    "rue de la République",
    "avenue Jean-Jaurès",
    "boulevard Gambetta",
    "rue Victor-Hugo",
    "place de l'Église",
    "chemin des Écoliers",
    "allée des Tilleuls",
    "impasse du Moulin",
    "rue Pasteur",
    "avenue du Général-Leclerc",
    "rue des Lilas",
    "quai de la Fosse",
    "rue Émile-Zola",
    "cours Lafayette",
    "rue du Château",
    "route de Bretagne",
];
/// First names of [`crate::data::FIRST_NAMES`] that are women's names
/// (`Camille` is both; the others are men's names).
const FEMALE_FIRST_NAMES: &[&str] = &[
    "Marie",
    "Léa",
    "Chloé",
    "Manon",
    "Inès",
    "Sarah",
    "Emma",
    "Zoé",
    "Clémence",
    "Bérénice",
    "Hélène",
    "Gaëlle",
    "Céline",
    "Amélie",
    "Élodie",
    "Anaïs",
    "Noémie",
    "Maëlle",
    "Aurélie",
    "Séverine",
    "Océane",
    "Cécile",
    "Valérie",
    "Mélanie",
    "Marie-Claire",
    "Anne-Sophie",
    "Thérèse",
    "Agnès",
    "Léonie",
    "Juliette",
    "Charlotte",
    "Pauline",
    "Margaux",
    "Laure",
    "Isabelle",
    "Sophie",
    "Nathalie",
    "Sandrine",
    "Aurore",
    "Lucie",
    "Justine",
    "Émilie",
    "Laëtitia",
    "Coralie",
    "Solène",
    "Ophélie",
    "Capucine",
    "Victoire",
    "Héloïse",
    "Françoise",
    "Ségolène",
];
/// Mistyped e-mails and phones, per mille of those written.
const TYPO_PER_MILLE: u64 = 10;
/// Modifications per contact: weights for 0..=3.
const MODIFICATION_WEIGHTS: &[u32] = &[55, 25, 12, 8];
/// Unknown `Type` values (rejected by the spec).
const UNKNOWN_TYPES: [&str; 3] = ["Suppression", "Fusion", "Import"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Created,
    Updated,
    /// Consent on a channel (`E-mail`, `SMS`, `Push`, `Publicité`): given or withdrawn.
    Consent(&'static str, bool),
}

impl Kind {
    fn event_type(self) -> &'static str {
        match self {
            Kind::Created => "contact_created",
            Kind::Updated => "contact_updated",
            Kind::Consent(_, true) => "consent_given",
            Kind::Consent(_, false) => "consent_withdrawn",
        }
    }
}

/// One planned CRM row.
struct Change {
    ts: i64,
    slot: u32,
    seq: u32,
    person: usize,
    kind: Kind,
    woman: bool,
    street: u8,
    number: u8,
    /// Random bits deciding how the contact's details are written on this row.
    style: u64,
}

/// Draws from the random bits of one row (SplitMix64 steps).
struct Bits(u64);

impl Bits {
    /// A value in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 = mix64(self.0);
        (self.0 >> 11) % n
    }
}

/// Whether a first name is (usually) a woman's; `Camille` is both.
fn female(rng: &mut ChaCha8Rng, first_name: &str) -> bool {
    let coin = rng.random_range(0..2u32) == 0;
    match first_name {
        "Camille" => coin,
        name => FEMALE_FIRST_NAMES.contains(&name),
    }
}

/// Writes the contact's details (columns `Civilité` to `Pays`) as the CRM
/// holds them on one row; returns the identifiers written but mistyped
/// (bits of `ids`).
fn write_details(row: &mut Row, p: &Person, prof: &Profile, c: &Change) -> u8 {
    let mut bits = Bits(c.style);
    let civility = match (bits.below(100), c.woman) {
        (0..88, true) => "Mme",
        (0..88, false) => "M.",
        (88..94, true) => "Madame",
        (88..94, false) => "Monsieur",
        _ => "",
    };
    row.set(3, civility);
    match bits.below(100) {
        0..85 => row.set(4, &p.first_name),
        85..95 => row.set(4, &upper(&p.first_name)),
        _ => {
            row.at(4).push(' ');
            row.at(4).push_str(&p.first_name);
        }
    }
    if bits.below(100) < 40 {
        row.set(5, &upper(&p.last_name));
    } else {
        row.set(5, &p.last_name);
    }
    let (blank, dirty, how) = (bits.below(100), bits.below(100), bits.below(5));
    if blank >= 6 {
        // A family's second member registered with the family e-mail.
        let canonical = typed_email_of(p, prof);
        let email = row.at(6);
        match (dirty < 15, how) {
            (false, _) => email.push_str(canonical),
            (true, 0) => email.push_str(&capitalise_email(canonical)),
            (true, 1) => email.push_str(&canonical.to_uppercase()),
            (true, 2) => {
                email.push(' ');
                email.push_str(canonical);
            }
            (true, 3) => {
                email.push_str("  ");
                email.push_str(&capitalise_email(canonical));
                email.push(' ');
            }
            (true, _) => {
                email.push_str(canonical);
                email.push(' ');
            }
        }
    }
    let (usual, other, blank) = (bits.below(100), bits.below(5), bits.below(100));
    if blank >= 10 {
        let style = if usual < 70 { prof.phone_style } else { other as usize };
        row.set(7, &phone(&p.phone_e164, style));
    }
    // A few details were mistyped when the contact was keyed in.
    let mut unusable = 0;
    let (email_typo, phone_typo, variant) = (bits.below(1000), bits.below(1000), bits.below(6));
    if email_typo < TYPO_PER_MILLE && !row.get(6).is_empty() {
        let typo = mistype_email(row.get(6), variant as usize);
        row.set(6, &typo);
        unusable |= ids::EMAIL;
    }
    if phone_typo < TYPO_PER_MILLE && !row.get(7).is_empty() {
        let typo = mistype_phone(row.get(7), variant as usize);
        row.set(7, &typo);
        unusable |= ids::PHONE;
    }
    let address = row.at(8);
    address.push_str(&c.number.to_string());
    address.push(' ');
    address.push_str(STREETS[usize::from(c.street) % STREETS.len()]);
    if bits.below(100) < 8 && p.postal_code.len() == 5 {
        let postal = row.at(9);
        postal.push_str(&p.postal_code[..2]);
        postal.push(' ');
        postal.push_str(&p.postal_code[2..]);
    } else {
        row.set(9, &p.postal_code);
    }
    if bits.below(100) < 25 {
        row.set(10, &upper(&p.city));
    } else {
        row.set(10, &p.city);
    }
    let country = match bits.below(100) {
        0..70 => "France",
        70..85 => "FRANCE",
        85..95 => "FR",
        _ => "",
    };
    row.set(11, country);
    unusable
}

/// Plans the CRM history of person `index`.
fn plan(rng: &mut ChaCha8Rng, now: i64, (index, slot): (usize, usize), p: &Person, prof: &Profile, out: &mut Vec<Change>) {
    let woman = female(rng, &p.first_name);
    let created = prof.created_at - prof.created_at.rem_euclid(MINUTE);
    let mut street = pick_index(rng, STREETS.len());
    let mut number = rng.random_range(1..120u32);
    // Changes after creation, on distinct days.
    let later = |rng: &mut ChaCha8Rng| {
        let t = rng.random_range(created + DAY..(now - HOUR).max(created + DAY + 1));
        t - t.rem_euclid(MINUTE)
    };
    let mut changes: Vec<(i64, Kind)> = vec![(created, Kind::Created)];
    let modifications = pick_weighted(rng, MODIFICATION_WEIGHTS);
    let mut modified: Vec<i64> = (0..modifications).map(|_| later(rng)).collect();
    modified.sort_unstable();
    modified.dedup();
    changes.extend(modified.into_iter().map(|t| (t, Kind::Updated)));

    let id = &prof.id;
    let (r_email, r_sms, r_push, r_sms_late) =
        (rng.random_range(0..100u32), rng.random_range(0..100u32), rng.random_range(0..100u32), rng.random_range(0..100u32));
    let withdraw_email = later(rng);
    let withdraw_sms = later(rng);
    let withdraw_push = later(rng);
    let sms_given = if r_sms_late < 50 { created + 3 * MINUTE } else { later(rng) - MINUTE };
    if id.email_subscriber {
        changes.push((created + 2 * MINUTE, Kind::Consent("E-mail", true)));
        if r_email < 8 {
            changes.push((withdraw_email, Kind::Consent("E-mail", false)));
        }
    } else if r_email < 40 {
        changes.push((created + 2 * MINUTE, Kind::Consent("E-mail", false)));
    }
    if id.sms_subscriber {
        changes.push((sms_given, Kind::Consent("SMS", true)));
        if r_sms < 10 && withdraw_sms > sms_given + DAY {
            changes.push((withdraw_sms, Kind::Consent("SMS", false)));
        }
    }
    if prof.push_opt_in {
        let given = (prof.installed_at - prof.installed_at.rem_euclid(MINUTE)).max(created + 4 * MINUTE);
        changes.push((given, Kind::Consent("Push", true)));
        if r_push < 10 && withdraw_push > given + DAY {
            changes.push((withdraw_push, Kind::Consent("Push", false)));
        }
    }
    // Advertising consent (retargeting audiences), for a third of the contacts, at
    // creation. Decided by the index, not by a draw, so the other rows stay as they were.
    if index % 3 == 0 {
        changes.push((created + 5 * MINUTE, Kind::Consent("Publicité", true)));
    }
    changes.sort_unstable_by_key(|&(t, _)| t);

    for (seq, (ts, kind)) in changes.into_iter().enumerate() {
        if ts >= now {
            continue;
        }
        if kind == Kind::Updated && rng.random_range(0..100u32) < 40 {
            // A move within the same town.
            street = pick_index(rng, STREETS.len());
            number = rng.random_range(1..120u32);
        }
        out.push(Change {
            ts,
            slot: slot as u32,
            seq: seq as u32,
            person: index,
            kind,
            woman,
            street: street as u8,
            number: number as u8,
            style: rng.random(),
        });
    }
}

/// Writes the CRM contacts export. See [`crate::write_channel`].
pub(crate) fn write(cfg: &GenConfig, out: &mut dyn Write, truth: &mut dyn Write) -> anyhow::Result<ChannelStats> {
    let format = Format { newline: "\r\n", bom: true, ..Format::csv(b';') };
    let mut ctx = Ctx::new(cfg, Export::CrmContacts, out, truth, format);
    ctx.sink.record(&CRM_CONTACTS_HEADER)?;
    let now = ctx.now;
    let mut row = Row::default();
    write_blocks(
        &mut ctx,
        Stream::Crm,
        |rng, at, p, prof, changes| plan(rng, now, at, p, prof, changes),
        |c| (c.ts, c.slot, c.seq),
        |ctx, c, persons| {
            let (p, prof) = &persons[c.slot as usize];
            let customer = &p.customer_id;
            row.reset(CRM_CONTACTS_HEADER.len());
            row.set(0, customer);
            row.set(
                1,
                match c.kind {
                    Kind::Created => "Création",
                    Kind::Updated => "Modification",
                    Kind::Consent(..) => "Consentement",
                },
            );
            push_dmy_hm(row.at(2), paris_local(c.ts), false);
            let unusable = write_details(&mut row, p, prof, c);
            if let Kind::Consent(channel, granted) = c.kind {
                row.set(12, channel);
                row.set(13, if granted { "Oui" } else { "Non" });
            }
            let mut ids = ids::CUSTOMER_ID;
            if let Some(card) = &prof.id.loyalty_card {
                row.set(14, card);
                ids |= ids::LOYALTY_CARD;
            }
            if !row.get(6).is_empty() {
                ids |= ids::EMAIL;
            }
            if !row.get(7).is_empty() {
                ids |= ids::PHONE;
            }
            ids &= !unusable;

            let variant = ctx.pick(3);
            let kinds: &[Defect] = if let Kind::Consent(..) = c.kind {
                &[Defect::DateInvalid, Defect::EventUnknown, Defect::FieldCount, Defect::ConsentChannelMissing]
            } else {
                &[Defect::DateInvalid, Defect::EventUnknown, Defect::FieldCount]
            };
            let defect = ctx.defect(kinds);
            match defect {
                Some(Defect::DateInvalid) => row.set(2, &bad_local_date(c.ts, variant)),
                Some(Defect::EventUnknown) => row.set(1, UNKNOWN_TYPES[variant]),
                Some(Defect::FieldCount) if variant == 0 => row.split_field(8),
                Some(Defect::FieldCount) => row.drop_last(),
                Some(Defect::ConsentChannelMissing) => row.set(12, ""),
                _ => {}
            }
            ctx.emit_record(
                &row,
                &Truth {
                    person: Some(c.person),
                    event_type: c.kind.event_type(),
                    occurred_ms: c.ts * 1000,
                    reference: customer,
                    ids,
                    note: dst_note(c.ts),
                    defect,
                    unusable,
                },
            )
        },
    )?;
    ctx.finish()
}
