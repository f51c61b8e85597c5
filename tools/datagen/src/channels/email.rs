//! The e-mail service provider activity export (`channels/email/activity.toml`):
//! CSV `,` UTF-8, one row per recipient event of a campaign, `Event Date`
//! `%Y-%m-%d %H:%M:%S` UTC.

use std::io::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::out::{ids, write_blocks, Ctx, Defect, Format, Row, Truth};
use super::profile::Profile;
use super::text::{civil, dirty_email, paris_instant, paris_local, push_ymd_hms, weekday, DAY, HOUR, MINUTE};
use super::{ChannelStats, Export, EMAIL_ACTIVITY_HEADER};
use crate::data::CATEGORIES;
use crate::rng::Stream;
use crate::{GenConfig, Person};

/// Campaigns span the year before `now`.
const HISTORY: i64 = 365 * DAY;
/// Seasonal themes by month (January first).
pub(crate) const MONTH_THEMES: [&str; 12] = [
    "Soldes d'hiver",
    "Saint-Valentin",
    "Nouvelle collection printemps",
    "Pâques",
    "Fête des mères",
    "Fête des pères",
    "Soldes d'été",
    "Vacances d'été",
    "Rentrée",
    "Nouveautés automne",
    "Black Friday",
    "Noël",
];
/// Unknown `Event` values (rejected by the spec).
const UNKNOWN_EVENTS: [&str; 3] = ["spam_report", "deferred", "dropped"];

/// One campaign of the calendar.
pub(crate) struct Campaign {
    pub ts: i64,
    pub id: String,
    pub name: String,
    pub category: usize,
}

/// The campaign calendar: a newsletter every Tuesday at 09:30 and a promotion
/// every fourth Thursday at 18:00 (Paris time) in the year before `now`.
fn campaigns(now: i64) -> Vec<Campaign> {
    let local_now = paris_local(now);
    let mut day = local_now - local_now.rem_euclid(DAY) - HISTORY;
    while weekday(day) != 2 {
        day += DAY;
    }
    let mut out = Vec::new();
    let mut week = 0;
    while day < local_now {
        let (_, month, d, ..) = civil(day);
        let theme = MONTH_THEMES[(month - 1) as usize];
        let mut add = |local: i64, name: String| {
            let ts = paris_instant(local);
            if ts < now - HOUR {
                out.push(Campaign {
                    ts,
                    id: (7_310_000 + out.len() as u64 * 17).to_string(),
                    name,
                    category: (week + out.len()) % CATEGORIES.len(),
                });
            }
        };
        add(day + 9 * HOUR + 30 * MINUTE, format!("Newsletter du {d:02}/{month:02} – {theme}"));
        if week % 4 == 2 {
            add(day + 2 * DAY + 18 * HOUR, format!("{theme} : -20 %, livraison offerte"));
        }
        day += 7 * DAY;
        week += 1;
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Sent,
    Opened,
    Clicked,
    HardBounce,
    SoftBounce,
    Unsubscribed,
}

impl Event {
    fn code(self) -> &'static str {
        match self {
            Event::Sent => "sent",
            Event::Opened => "opened",
            Event::Clicked => "clicked",
            Event::HardBounce => "hard_bounce",
            Event::SoftBounce => "soft_bounce",
            Event::Unsubscribed => "unsubscribed",
        }
    }

    fn event_type(self) -> &'static str {
        match self {
            Event::Sent => "email_sent",
            Event::Opened => "email_open",
            Event::Clicked => "email_click",
            Event::HardBounce | Event::SoftBounce => "email_bounce",
            Event::Unsubscribed => "email_unsubscribe",
        }
    }
}

struct Activity {
    ts: i64,
    slot: u32,
    seq: u32,
    person: usize,
    campaign: u32,
    event: Event,
    /// The e-mail as the ESP wrote it on this row.
    email: String,
}

fn plan(
    rng: &mut ChaCha8Rng,
    now: i64,
    calendar: &[Campaign],
    (index, slot): (usize, usize),
    p: &Person,
    prof: &Profile,
    out: &mut Vec<Activity>,
) {
    if !prof.id.email_subscriber {
        return;
    }
    let mut seq = 0u32;
    let mut push = |ts: i64, campaign: usize, event, rng: &mut ChaCha8Rng| {
        out.push(Activity {
            ts: ts.min(now - 1),
            slot: slot as u32,
            seq,
            person: index,
            campaign: campaign as u32,
            event,
            email: dirty_email(rng, &p.email, 6),
        });
        seq += 1;
    };
    for (c, campaign) in calendar.iter().enumerate() {
        let (receives, outcome, opened, twice, clicked, unsubscribes) = (
            rng.random_range(0..100u32) < 75,
            rng.random_range(0..1000u32),
            rng.random_range(0..100u32) < 32,
            rng.random_range(0..100u32) < 12,
            rng.random_range(0..100u32) < 35,
            rng.random_range(0..1000u32) < 6,
        );
        if !receives || campaign.ts < prof.created_at {
            continue;
        }
        let sent = campaign.ts + rng.random_range(0..1800);
        push(sent, c, Event::Sent, rng);
        match outcome {
            0..3 => {
                push(sent + rng.random_range(1..60), c, Event::HardBounce, rng);
                return;
            }
            3..18 => {
                push(sent + rng.random_range(1..600), c, Event::SoftBounce, rng);
                continue;
            }
            _ => {}
        }
        if !opened {
            continue;
        }
        let open = sent + rng.random_range(60..3 * DAY);
        push(open, c, Event::Opened, rng);
        if twice {
            push(open + rng.random_range(60..DAY), c, Event::Opened, rng);
        }
        if clicked {
            push(open + rng.random_range(5..600), c, Event::Clicked, rng);
        }
        if unsubscribes {
            push(open + rng.random_range(600..1200), c, Event::Unsubscribed, rng);
            return;
        }
    }
}

/// Writes the e-mail activity export. See [`crate::write_channel`].
pub(crate) fn write(cfg: &GenConfig, out: &mut dyn Write, truth: &mut dyn Write) -> anyhow::Result<ChannelStats> {
    let mut ctx = Ctx::new(cfg, Export::EmailActivity, out, truth, Format::csv(b','));
    ctx.sink.record(&EMAIL_ACTIVITY_HEADER)?;
    let now = ctx.now;
    let calendar = campaigns(now);
    let links: Vec<String> = calendar
        .iter()
        .map(|c| {
            format!(
                "https://www.ariane-boutique.fr/c/{}?utm_source=newsletter&utm_medium=email&utm_campaign={}",
                CATEGORIES[c.category], c.id
            )
        })
        .collect();
    let mut row = Row::default();
    write_blocks(
        &mut ctx,
        Stream::Email,
        |rng, at, p, prof, rows| plan(rng, now, &calendar, at, p, prof, rows),
        |a| (a.ts, a.slot, a.seq),
        |ctx, a, _| {
            let campaign = &calendar[a.campaign as usize];
            row.reset(EMAIL_ACTIVITY_HEADER.len());
            row.set(0, &a.email);
            row.set(1, &campaign.id);
            row.set(2, &campaign.name);
            row.set(3, a.event.code());
            push_ymd_hms(row.at(4), a.ts);
            if a.event == Event::Clicked {
                row.set(5, &links[a.campaign as usize]);
            }
            let variant = ctx.pick(3);
            let defect = ctx.defect(&[Defect::EmailMissing, Defect::DateInvalid, Defect::EventUnknown, Defect::FieldCount]);
            match defect {
                Some(Defect::EmailMissing) => row.set(0, ""),
                Some(Defect::DateInvalid) => {
                    let (y, mo, d, h, mi, s) = civil(a.ts);
                    let bad = match variant {
                        0 => format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"),
                        1 => format!("{d:02}/{mo:02}/{y:04} {h:02}:{mi:02}:{s:02}"),
                        _ => format!("{y:04}-{mo:02}-{d:02}"),
                    };
                    row.set(4, &bad);
                }
                Some(Defect::EventUnknown) => row.set(3, UNKNOWN_EVENTS[variant]),
                Some(Defect::FieldCount) if variant == 0 => row.split_field(2),
                Some(Defect::FieldCount) => row.drop_last(),
                _ => {}
            }
            ctx.emit_record(
                &row,
                &Truth {
                    person: Some(a.person),
                    event_type: a.event.event_type(),
                    occurred_ms: a.ts * 1000,
                    reference: &campaign.id,
                    ids: ids::EMAIL,
                    note: "",
                    defect,
                    unusable: 0,
                },
            )
        },
    )?;
    ctx.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_is_weekly_and_in_the_past() {
        let now = 1_795_392_000; // 2026-11-23T00:00:00Z
        let calendar = campaigns(now);
        assert!((60..=70).contains(&calendar.len()), "{}", calendar.len());
        for w in calendar.windows(2) {
            assert!(w[0].ts < w[1].ts);
            assert_ne!(w[0].id, w[1].id);
        }
        assert!(calendar.iter().all(|c| c.ts < now && c.ts > now - HISTORY - DAY));
        assert!(calendar.iter().any(|c| c.name.contains(',')));
    }
}
