//! The SMS gateway report (`channels/sms/report.toml`): CSV `;` UTF-8, one
//! row per message status (`ENVOYE`, `DELIVRE`, `CLIC`, `STOP`), `Date`
//! `dd/mm/yyyy hh:mm:ss` Paris local time; numbers as gateways write them
//! (`33612345678` mostly). Besides the calendar's campaigns, the planted store
//! invitation's rows (`super::planted`).

use std::io::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::email::MONTH_THEMES;
use super::out::{ids, write_blocks, Ctx, Defect, Format, Row, Truth};
use super::planted::{Plant, STORE_INVITATION_CAMPAIGN};
use super::profile::Profile;
use super::text::{civil, dst_note, mix64, paris_instant, paris_local, phone, push_dmy_hm, weekday, DAY, HOUR};
use super::{ChannelStats, Export, SMS_REPORT_HEADER};
use crate::rng::{person_rng, pick_weighted, Stream};
use crate::{GenConfig, Person};

/// Campaigns span the year before `now`.
const HISTORY: i64 = 365 * DAY;
/// Number styles of [`phone`]: gateway `33612345678`, `+33612345678`,
/// `+33 6 …`, `0612345678`, `06 12 …`.
const NUMBER_STYLES: [usize; 5] = [5, 4, 2, 1, 0];
const NUMBER_STYLE_WEIGHTS: &[u32] = &[55, 20, 10, 10, 5];
/// Unknown `Statut` values (rejected by the spec).
const UNKNOWN_STATUSES: [&str; 3] = ["ECHEC", "EN_ATTENTE", "EXPIRE"];

/// One SMS campaign: its `Campagne` label and send instant.
pub(super) struct Campaign {
    ts: i64,
    name: String,
}

/// Campaign number of the planted invitation's rows (`super::planted`), far above the
/// calendar's.
const PLANTED_CAMPAIGN: u32 = 0xFFFF;
/// First `seq` of a person's planted rows (after every regular one).
const PLANTED_SEQ: u32 = 1 << 20;

/// Two campaigns a month (the 1st and the 15th, moved off Sundays) at 11:00 Paris time.
pub(super) fn campaigns(now: i64) -> Vec<Campaign> {
    let local_now = paris_local(now);
    let mut day = local_now - local_now.rem_euclid(DAY) - HISTORY;
    let mut out = Vec::new();
    while day < local_now {
        let (_, month, d, ..) = civil(day);
        if d == 1 || d == 15 {
            let send_day = if weekday(day) == 0 { day + DAY } else { day };
            let ts = paris_instant(send_day + 11 * HOUR);
            if ts < now - HOUR {
                let theme = MONTH_THEMES[(month - 1) as usize];
                let name =
                    if d == 1 { format!("{theme} - offre SMS {d:02}/{month:02}") } else { format!("Vente privée {d:02}/{month:02}") };
                out.push(Campaign { ts, name });
            }
        }
        day += DAY;
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Sent,
    Delivered,
    Click,
    Stop,
}

impl Status {
    fn code(self) -> &'static str {
        match self {
            Status::Sent => "ENVOYE",
            Status::Delivered => "DELIVRE",
            Status::Click => "CLIC",
            Status::Stop => "STOP",
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            Status::Sent => "sms_sent",
            Status::Delivered => "sms_delivered",
            Status::Click => "sms_click",
            Status::Stop => "sms_stop",
        }
    }
}

struct Report {
    ts: i64,
    slot: u32,
    seq: u32,
    person: usize,
    campaign: u32,
    message: u64,
    status: Status,
    number: String,
    /// A row of the planted invitation (`super::planted`).
    planted: bool,
}

/// The regular reports of a person (the calendar's campaigns).
fn plan(
    rng: &mut ChaCha8Rng,
    cfg_seed: u64,
    calendar: &[Campaign],
    (index, slot): (usize, usize),
    p: &Person,
    prof: &Profile,
    out: &mut Vec<Report>,
) {
    if !prof.id.sms_subscriber {
        return;
    }
    let mut seq = 0u32;
    for (c, campaign) in calendar.iter().enumerate() {
        let (receives, delivered, clicks, stops) = (
            rng.random_range(0..100u32) < 85,
            rng.random_range(0..100u32) < 95,
            rng.random_range(0..100u32) < 9,
            rng.random_range(0..1000u32) < 15,
        );
        if !receives || campaign.ts < prof.created_at {
            continue;
        }
        // Unique per (campaign, person): a bijection of the pair.
        let message = mix64(((c as u64) << 40 | index as u64) ^ mix64(cfg_seed));
        let mut push = |ts: i64, status, rng: &mut ChaCha8Rng| {
            let style = NUMBER_STYLES[pick_weighted(rng, NUMBER_STYLE_WEIGHTS)];
            out.push(Report {
                ts,
                slot: slot as u32,
                seq,
                person: index,
                campaign: c as u32,
                message,
                status,
                number: phone(&p.phone_e164, style),
                planted: false,
            });
            seq += 1;
        };
        let sent = campaign.ts + rng.random_range(0..600);
        push(sent, Status::Sent, rng);
        if !delivered {
            continue;
        }
        let at = sent + rng.random_range(2..120);
        push(at, Status::Delivered, rng);
        if clicks {
            push(at + rng.random_range(60..7200), Status::Click, rng);
        }
        if stops {
            push(at + rng.random_range(60..DAY), Status::Stop, rng);
            return;
        }
    }
}

/// When person `index` replied STOP to a regular campaign, if they did (their regular
/// reports planned again, from their own stream).
pub(super) fn stopped_at(cfg_seed: u64, calendar: &[Campaign], index: usize, p: &Person, prof: &Profile) -> Option<i64> {
    if !prof.id.sms_subscriber {
        return None;
    }
    let mut rng = person_rng(cfg_seed, index as u64, Stream::Sms);
    let mut reports = Vec::new();
    plan(&mut rng, cfg_seed, calendar, (index, 0), p, prof, &mut reports);
    reports.iter().find(|r| r.status == Status::Stop).map(|r| r.ts)
}

/// The reports of the planted invitation of a person (`super::planted`), if they got it.
fn plan_planted(plant: &Plant, cfg_seed: u64, (index, slot): (usize, usize), p: &Person, prof: &Profile, out: &mut Vec<Report>) {
    let Some(inv) = plant.invitation(index, p, prof) else { return };
    let message = mix64((u64::from(PLANTED_CAMPAIGN) << 40 | index as u64) ^ mix64(cfg_seed));
    let number = phone(&p.phone_e164, inv.number_style);
    let steps = [(Some(inv.sent), Status::Sent), (inv.delivered, Status::Delivered), (inv.clicked, Status::Click)];
    for (k, (ts, status)) in steps.into_iter().enumerate() {
        let Some(ts) = ts else { break };
        out.push(Report {
            ts,
            slot: slot as u32,
            seq: PLANTED_SEQ + k as u32,
            person: index,
            campaign: PLANTED_CAMPAIGN,
            message,
            status,
            number: number.clone(),
            planted: true,
        });
    }
}

/// Writes the SMS gateway report. See [`crate::write_channel`].
pub(crate) fn write(cfg: &GenConfig, out: &mut dyn Write, truth: &mut dyn Write) -> anyhow::Result<ChannelStats> {
    let mut ctx = Ctx::new(cfg, Export::SmsReport, out, truth, Format::csv(b';'));
    ctx.sink.record(&SMS_REPORT_HEADER)?;
    let now = ctx.now;
    let calendar = campaigns(now);
    let plant = Plant::new(cfg);
    let mut row = Row::default();
    let mut message_id = String::with_capacity(16);
    write_blocks(
        &mut ctx,
        Stream::Sms,
        |rng, at, p, prof, reports| {
            plan(rng, cfg.seed, &calendar, at, p, prof, reports);
            plan_planted(&plant, cfg.seed, at, p, prof, reports);
        },
        |r| (r.ts, r.slot, r.seq),
        |ctx, r, _| {
            // Reports at or after `now` are dropped (skipping them here keeps
            // the order of the others).
            if r.ts >= now {
                return Ok(());
            }
            ctx.planted_rows(r.planted);
            message_id.clear();
            message_id.push_str(&format!("{:016X}", r.message));
            row.reset(SMS_REPORT_HEADER.len());
            row.set(0, &message_id);
            row.set(1, if r.planted { STORE_INVITATION_CAMPAIGN } else { &calendar[r.campaign as usize].name });
            row.set(2, &r.number);
            // Replies are reported as typed (`Stop`); the spec upper-cases.
            let lower_stop = ctx.chance(20);
            row.set(3, if r.status == Status::Stop && lower_stop { "Stop" } else { r.status.code() });
            push_dmy_hm(row.at(4), paris_local(r.ts), true);
            if r.status == Status::Click {
                row.at(5).push_str("https://arian.es/");
                row.at(5).push_str(&format!("{:07x}", r.message & 0xFFF_FFFF));
            }
            let variant = ctx.pick(3);
            let defect =
                ctx.defect(&[Defect::PhoneMissing, Defect::DateInvalid, Defect::EventUnknown, Defect::FieldCount]).filter(|_| !r.planted);
            match defect {
                Some(Defect::PhoneMissing) => row.set(2, ""),
                Some(Defect::DateInvalid) => {
                    let (y, mo, d, h, mi, s) = civil(paris_local(r.ts));
                    let bad = match variant {
                        0 => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}"),
                        1 => format!("{d:02}/{mo:02}/{y:04} {h:02}:{mi:02}"),
                        _ => format!("{d:02}/{mo:02}/{y:04}"),
                    };
                    row.set(4, &bad);
                }
                Some(Defect::EventUnknown) => row.set(3, UNKNOWN_STATUSES[variant]),
                Some(Defect::FieldCount) if variant == 0 => row.split_field(1),
                Some(Defect::FieldCount) => row.drop_last(),
                _ => {}
            }
            ctx.emit_record(
                &row,
                &Truth {
                    person: Some(r.person),
                    event_type: r.status.event_type(),
                    occurred_ms: r.ts * 1000,
                    reference: &message_id,
                    ids: ids::PHONE,
                    note: dst_note(r.ts),
                    defect,
                    unusable: 0,
                },
            )
        },
    )?;
    ctx.finish()
}
