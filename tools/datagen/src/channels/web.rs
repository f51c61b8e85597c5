//! The web analytics export (`channels/web/events.toml`): NDJSON, one
//! GA4-BigQuery-export-like event per line. `event_timestamp` is epoch
//! microseconds, as a JSON string (BigQuery's INT64 rendering) or a number;
//! a few rows carry epoch milliseconds instead (`epoch_auto` in the spec).

use std::io::Write;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::out::{ids, write_blocks, Ctx, Defect, Format, Truth};
use super::profile::Profile;
use super::text::{draw_local_time, push_json_price, push_json_str, push_rfc3339, push_ymd_compact, DAY, HOUR, ONLINE_HOUR_WEIGHTS};
use super::traps::{on_family_tablet, typed_email_of};
use super::{ChannelStats, Export};
use crate::data::{CATEGORIES, PRODUCTS};
use crate::ecommerce::{draw_product, typed_email};
use crate::rng::{pick_index, pick_weighted, Stream};
use crate::{GenConfig, Person};

/// Sessions span the year before `now`.
const HISTORY: i64 = 365 * DAY;
/// Sessions per web visitor: weights for 1..=20.
const SESSION_WEIGHTS: &[u32] = &[14, 13, 12, 10, 9, 8, 7, 6, 5, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1];
/// The shop's site.
const SITE: &str = "https://www.ariane-boutique.fr";
/// [`WebEvent::cookie`] of a session on the family tablet: the family's
/// first member's cookie (see `super::traps`).
const FAMILY_TABLET: u8 = u8::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Name {
    SessionStart,
    PageView,
    Scroll,
    ViewItem,
    AddToCart,
    SignUp,
    Login,
}

impl Name {
    fn as_str(self) -> &'static str {
        match self {
            Name::SessionStart => "session_start",
            Name::PageView => "page_view",
            Name::Scroll => "scroll",
            Name::ViewItem => "view_item",
            Name::AddToCart => "add_to_cart",
            Name::SignUp => "sign_up",
            Name::Login => "login",
        }
    }

    /// The spec's canonical type (`view_item` → `product_view`; unmapped names kept).
    fn event_type(self) -> &'static str {
        match self {
            Name::ViewItem => "product_view",
            other => other.as_str(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Page {
    Home,
    Category(usize),
    Product(usize),
    Cart,
    Login,
    SignUp,
}

/// One planned event.
struct WebEvent {
    us: i64,
    slot: u32,
    seq: u32,
    person: usize,
    name: Name,
    /// `ga_session_id`: the session start, Unix seconds.
    session: i64,
    session_number: u32,
    /// Index into the person's cookies, or [`FAMILY_TABLET`].
    cookie: u8,
    logged_in: bool,
    page: Page,
    /// Landing page reached from a campaign link.
    utm: bool,
    mobile: bool,
    /// The e-mail typed on `sign_up` / `login`.
    email: Option<String>,
}

/// Appends the events of one session, spacing them by 3 to 90 seconds.
struct Session<'a> {
    out: &'a mut Vec<WebEvent>,
    template: WebEvent,
}

impl Session<'_> {
    fn push(&mut self, rng: &mut ChaCha8Rng, name: Name, page: Page, email: Option<String>) {
        let t = &mut self.template;
        let utm = t.utm && name == Name::PageView;
        self.out.push(WebEvent { name, page, email, utm, ..*t });
        // Only the landing page view carries the campaign parameters.
        if name == Name::PageView {
            t.utm = false;
        }
        t.seq += 1;
        t.us += rng.random_range(3_000_000..90_000_000);
    }
}

/// Plans the sessions of person `index`.
#[allow(clippy::too_many_arguments)]
fn plan(rng: &mut ChaCha8Rng, seed: u64, now: i64, index: usize, slot: usize, p: &Person, prof: &Profile, out: &mut Vec<WebEvent>) {
    let sessions = 1 + pick_weighted(rng, SESSION_WEIGHTS);
    if !prof.id.web_visitor || prof.id.cookie_ids.is_empty() {
        return;
    }
    let mut starts: Vec<i64> = (0..sessions).map(|_| draw_local_time(rng, now, HISTORY, 2 * HOUR, &ONLINE_HOUR_WEIGHTS)).collect();
    starts.sort_unstable();
    let signs_up = prof.has_account && rng.random_range(0..100u32) < 40;
    let mut seq = 0u32;
    for (number, &start) in starts.iter().enumerate() {
        let cookie = u8::from(prof.id.cookie_ids.len() > 1 && rng.random_range(0..100u32) < 40);
        let cookie = if on_family_tablet(seed, index, prof, number) { FAMILY_TABLET } else { cookie };
        let mobile = rng.random_range(0..100u32) < 60;
        let us = start * 1_000_000 + rng.random_range(0..1_000_000);
        let logged_in = prof.has_account && rng.random_range(0..100u32) < 35;
        let landing = match rng.random_range(0..100u32) {
            0..45 => Page::Home,
            45..75 => Page::Category(pick_index(rng, CATEGORIES.len())),
            _ => Page::Product(draw_product(rng, prof.favourite)),
        };
        let utm = rng.random_range(0..100u32) < 30;
        let mut s = Session {
            out: &mut *out,
            template: WebEvent {
                us,
                slot: slot as u32,
                seq,
                person: index,
                name: Name::SessionStart,
                session: start,
                session_number: number as u32 + 1,
                cookie,
                logged_in,
                page: landing,
                utm,
                mobile,
                email: None,
            },
        };
        s.push(rng, Name::SessionStart, landing, None);
        s.push(rng, Name::PageView, landing, None);
        if let Page::Product(_) = landing {
            s.push(rng, Name::ViewItem, landing, None);
        }

        // Identification: sign-up in the first session, or a login.
        let identify = if number == 0 && signs_up {
            Some((Page::SignUp, Name::SignUp))
        } else if prof.has_account && !logged_in && rng.random_range(0..100u32) < 25 {
            Some((Page::Login, Name::Login))
        } else {
            None
        };
        if let Some((page, name)) = identify {
            s.push(rng, Name::PageView, page, None);
            s.template.logged_in = true;
            // The account's e-mail: the family's for a family's second member.
            let email = typed_email(rng, typed_email_of(p, prof));
            s.push(rng, name, page, Some(email));
        }

        for _ in 0..rng.random_range(0..=4u32) {
            let page = Page::Category(pick_index(rng, CATEGORIES.len()));
            s.push(rng, Name::PageView, page, None);
            if rng.random_range(0..100u32) < 30 {
                s.push(rng, Name::Scroll, page, None);
            }
        }
        for _ in 0..rng.random_range(0..=3u32) {
            let page = Page::Product(draw_product(rng, prof.favourite));
            s.push(rng, Name::PageView, page, None);
            s.push(rng, Name::ViewItem, page, None);
            if rng.random_range(0..100u32) < 25 {
                s.push(rng, Name::AddToCart, page, None);
                if rng.random_range(0..100u32) < 50 {
                    s.push(rng, Name::PageView, Page::Cart, None);
                }
            }
        }
        seq = s.template.seq;
    }
}

/// Writes the web analytics export. See [`crate::write_channel`].
pub(crate) fn write(cfg: &GenConfig, out: &mut dyn Write, truth: &mut dyn Write) -> anyhow::Result<ChannelStats> {
    let mut ctx = Ctx::new(cfg, Export::WebEvents, out, truth, Format::lines(true));
    let (seed, now) = (cfg.seed, ctx.now);
    let mut line = String::with_capacity(1024);
    let mut reference = String::with_capacity(16);
    write_blocks(
        &mut ctx,
        Stream::Web,
        |rng, (index, slot), p, prof, events| plan(rng, seed, now, index, slot, p, prof, events),
        |e| (e.us, e.slot, e.seq),
        |ctx, e, persons| {
            let (p, prof) = &persons[e.slot as usize];
            let style = ctx.pick(100);
            let variant = ctx.pick(3);
            let defect = ctx.defect(&[Defect::InvalidJson, Defect::TimestampInvalid, Defect::TimestampMissing]);
            line.clear();
            render(&mut line, e, p, prof, style, variant, defect);
            if defect == Some(Defect::InvalidJson) {
                truncate_json(&mut line, variant);
            }
            reference.clear();
            reference.push_str(&e.session.to_string());
            let mut ids = ids::COOKIE_ID;
            if e.logged_in {
                ids |= ids::CUSTOMER_ID;
            }
            if e.email.is_some() {
                ids |= ids::EMAIL;
            }
            ctx.emit_line(
                &line,
                &Truth {
                    person: Some(e.person),
                    event_type: e.name.event_type(),
                    occurred_ms: e.us.div_euclid(1000),
                    reference: &reference,
                    ids,
                    note: "",
                    defect,
                    unusable: 0,
                },
            )?;
            ctx.end_line("")
        },
    )?;
    ctx.finish()
}

/// Appends the page URL of `page`.
fn push_page(buf: &mut String, page: Page, utm: bool) {
    let mut url = String::with_capacity(96);
    url.push_str(SITE);
    match page {
        Page::Home => url.push('/'),
        Page::Category(c) => {
            url.push_str("/c/");
            url.push_str(CATEGORIES[c]);
        }
        Page::Product(p) => {
            url.push_str("/p/");
            url.push_str(&PRODUCTS[p].sku.to_ascii_lowercase());
        }
        Page::Cart => url.push_str("/panier"),
        Page::Login => url.push_str("/compte/connexion"),
        Page::SignUp => url.push_str("/compte/inscription"),
    }
    if utm {
        url.push_str("?utm_source=newsletter&utm_medium=email&utm_campaign=hebdo");
    }
    push_json_str(buf, &url);
}

/// Renders one event as a JSON object (no newline).
fn render(b: &mut String, e: &WebEvent, p: &Person, prof: &Profile, style: usize, variant: usize, defect: Option<Defect>) {
    let secs = e.us.div_euclid(1_000_000);
    b.push_str("{\"event_date\":\"");
    push_ymd_compact(b, secs);
    b.push('"');
    match defect {
        Some(Defect::TimestampMissing) => {}
        Some(Defect::TimestampInvalid) => {
            b.push_str(",\"event_timestamp\":");
            match variant {
                0 => {
                    b.push('"');
                    push_rfc3339(b, secs);
                    b.push('"');
                }
                1 => b.push_str("\"\""),
                _ => b.push_str("\"undefined\""),
            }
        }
        _ => {
            b.push_str(",\"event_timestamp\":");
            match style {
                // BigQuery renders INT64 as a JSON string.
                0..60 => {
                    b.push('"');
                    b.push_str(&e.us.to_string());
                    b.push('"');
                }
                60..97 => b.push_str(&e.us.to_string()),
                // Some collectors write milliseconds.
                _ => b.push_str(&e.us.div_euclid(1000).to_string()),
            }
        }
    }
    b.push_str(",\"event_name\":");
    push_json_str(b, e.name.as_str());
    b.push_str(",\"event_params\":[{\"key\":\"ga_session_id\",\"value\":{\"int_value\":");
    b.push_str(&e.session.to_string());
    b.push_str("}},{\"key\":\"ga_session_number\",\"value\":{\"int_value\":");
    b.push_str(&e.session_number.to_string());
    b.push_str("}},{\"key\":\"page_location\",\"value\":{\"string_value\":");
    push_page(b, e.page, e.utm);
    b.push_str("}}");
    let item = match (e.name, e.page) {
        (Name::ViewItem | Name::AddToCart, Page::Product(p)) => Some(p),
        _ => None,
    };
    if item.is_some() {
        b.push_str(",{\"key\":\"currency\",\"value\":{\"string_value\":\"EUR\"}}");
    }
    if let Some(email) = &e.email {
        b.push_str(",{\"key\":\"email\",\"value\":{\"string_value\":");
        push_json_str(b, email);
        b.push_str("}}");
    }
    b.push_str("],\"user_pseudo_id\":");
    let tablet = prof.family.as_ref().and_then(|f| f.tablet_cookie.as_deref());
    let cookie = match (e.cookie, tablet) {
        (FAMILY_TABLET, Some(cookie)) => cookie,
        (own, _) => &prof.id.cookie_ids[usize::from(own).min(prof.id.cookie_ids.len() - 1)],
    };
    push_json_str(b, cookie);
    if e.logged_in {
        b.push_str(",\"user_id\":");
        push_json_str(b, &p.customer_id);
    }
    b.push_str(",\"device\":{\"category\":");
    b.push_str(if e.mobile { "\"mobile\"" } else { "\"desktop\"" });
    b.push_str("},\"platform\":\"WEB\"");
    if let Some(p) = item {
        let product = &PRODUCTS[p];
        b.push_str(",\"items\":[{\"item_id\":");
        push_json_str(b, product.sku);
        b.push_str(",\"item_name\":");
        push_json_str(b, product.name);
        b.push_str(",\"item_category\":");
        push_json_str(b, CATEGORIES[product.category]);
        b.push_str(",\"price\":");
        push_json_price(b, product.price_cents as i64);
        b.push_str(",\"quantity\":1}]");
    }
    b.push('}');
}

/// Cuts a rendered line as an interrupted write would (never valid JSON).
fn truncate_json(line: &mut String, variant: usize) {
    let mut cut = line.len() * (variant + 1) / 4;
    while cut > 1 && !line.is_char_boundary(cut) {
        cut -= 1;
    }
    line.truncate(cut.max(1));
}
