//! A person's channel identifiers and channel usage, derived from
//! `(seed, index)` (and `now` for dates), shared by every channel writer so
//! that the same person shows up in several exports.

use rand::Rng;

use super::text::{draw_local_time, mix64, uuid, DAY, ONLINE_HOUR_WEIGHTS};
use super::traps::FamilyLink;
use crate::data::CATEGORIES;
use crate::person::subscriber_number;
use crate::rng::{person_rng, pick_index, pick_weighted, Stream};
use crate::{GenConfig, Person};

/// Number of stores (`Magasin` codes `M001`…).
pub(crate) const STORES: usize = 36;

/// Share (%) of persons who shop in a store.
const STORE_SHOPPER_PERCENT: u32 = 60;
/// Share (%) of e-shop customers who browse the web site (with a cookie).
const WEB_IF_ORDERING_PERCENT: u32 = 65;
/// Share (%) of persons without e-shop orders who still browse the site.
const WEB_OTHERWISE_PERCENT: u32 = 20;
const EMAIL_SUBSCRIBER_PERCENT: u32 = 85;
const SMS_SUBSCRIBER_PERCENT: u32 = 30;
const APP_USER_PERCENT: u32 = 25;
/// Share (%) of store shoppers with a loyalty card.
const CARD_PERCENT: u32 = 75;
/// Share (%) of web visitors seen with two cookies (two browsers/devices).
const TWO_COOKIES_PERCENT: u32 = 25;
/// Share (%) of app users who accept push notifications.
const PUSH_OPT_IN_PERCENT: u32 = 65;
/// Phone styles of [`super::text::phone`] a person usually types.
const PHONE_STYLE_WEIGHTS: &[u32] = &[30, 30, 12, 13, 15];

/// A person's stable channel identifiers and which channels they use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelIdentity {
    /// `P0000042`, as in [`Person::person_id`](crate::Person::person_id).
    pub person_id: String,
    /// E-shop customer id, also the CRM `ID contact` and the web/app `user_id`.
    pub customer_id: String,
    /// Canonical loyalty card number (`ARF0123456789`), store shoppers only
    /// (about 75 % of them); unique per person.
    pub loyalty_card: Option<String>,
    /// GA4 `user_pseudo_id`s (`1234567890.1712345678`), web visitors only;
    /// one or two (two browsers).
    pub cookie_ids: Vec<String>,
    /// App device id (UUID; upper case on iOS), app users only.
    pub device_id: Option<String>,
    /// Push token of the app installation (APNs hex on iOS, FCM on Android).
    pub push_token: Option<String>,
    /// `ios` or `android`, app users only.
    pub platform: Option<&'static str>,
    /// Visits stores (about 60 %, and always persons 0 to 3): till receipts.
    pub store_shopper: bool,
    /// Browses the web site (about 50 %): web events, carts and checkouts.
    pub web_visitor: bool,
    /// Has e-shop orders (about 65 %, see
    /// [`write_ecommerce_orders`](crate::write_ecommerce_orders)).
    pub orders_online: bool,
    /// Receives e-mail campaigns (about 85 %).
    pub email_subscriber: bool,
    /// Receives SMS campaigns (about 30 %).
    pub sms_subscriber: bool,
    /// Uses the mobile app (about 25 %).
    pub app_user: bool,
}

/// Behaviour parameters shared by several writers, beside the identity.
#[derive(Clone, Debug)]
pub(crate) struct Profile {
    pub id: ChannelIdentity,
    /// Has an e-shop account: logs in on the web site and in the app.
    pub has_account: bool,
    /// When the CRM contact was created (Unix seconds).
    pub created_at: i64,
    /// Favourite product category (index into `CATEGORIES`).
    pub favourite: usize,
    /// Usual store (0-based).
    pub home_store: usize,
    /// Phone style the person usually types.
    pub phone_style: usize,
    /// Accepts app push notifications.
    pub push_opt_in: bool,
    /// When the app was installed (Unix seconds).
    pub installed_at: i64,
    /// What the person uses of their family's first member, when they are a
    /// family pair's second member (set by the writers, see `super::traps`).
    pub family: Option<FamilyLink>,
}

/// `n` URL-safe base64 characters derived from `bits`.
fn b64url(bits: u64, n: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut state = bits;
    let mut out = String::with_capacity(n);
    let mut word = 0u64;
    for i in 0..n {
        if i % 10 == 0 {
            state = mix64(state);
            word = state;
        }
        out.push(char::from(ALPHABET[(word & 63) as usize]));
        word >>= 6;
    }
    out
}

/// Derives person `index`'s profile.
pub(crate) fn profile(cfg: &GenConfig, index: usize, person: &Person) -> Profile {
    let index64 = index as u64;
    let now = cfg.now.timestamp();
    // Same first draw as the orders writer: who orders online at all.
    let orders_online = person_rng(cfg.seed, index64, Stream::Orders).random_range(0..100u32) >= 35;

    let mut rng = person_rng(cfg.seed, index64, Stream::Profile);
    let mut percent = || rng.random_range(0..100u32);
    // Persons 0..4 carry the receipts at the daylight-saving edges.
    let store_shopper = percent() < STORE_SHOPPER_PERCENT || index < 4;
    let web_roll = percent();
    let email_subscriber = percent() < EMAIL_SUBSCRIBER_PERCENT;
    let sms_subscriber = percent() < SMS_SUBSCRIBER_PERCENT;
    let app_user = percent() < APP_USER_PERCENT;
    let card = percent() < CARD_PERCENT;
    let two_cookies = percent() < TWO_COOKIES_PERCENT;
    let account_roll = percent();
    let push_opt_in = percent() < PUSH_OPT_IN_PERCENT;
    let ios = percent() < 45;
    let web_visitor = web_roll < if orders_online { WEB_IF_ORDERING_PERCENT } else { WEB_OTHERWISE_PERCENT };

    let cookie_draws: [(u32, i64); 2] = [(); 2].map(|()| {
        let client: u32 = rng.random_range(100_000_000..2_147_483_647);
        (client, now - 365 * DAY - rng.random_range(0..400 * DAY))
    });
    let cookies = match (web_visitor, two_cookies) {
        (false, _) => 0,
        (true, false) => 1,
        (true, true) => 2,
    };
    let cookie_ids = cookie_draws[..cookies].iter().map(|(client, first_visit)| format!("{client}.{first_visit}")).collect();
    let device: (u64, u64) = (rng.random(), rng.random());
    let token: u64 = rng.random();
    let favourite = pick_index(&mut rng, CATEGORIES.len());
    let home_store = pick_index(&mut rng, STORES);
    let phone_style = pick_weighted(&mut rng, PHONE_STYLE_WEIGHTS);
    let created_at = draw_local_time(&mut rng, now, 1_095 * DAY, 14 * DAY, &ONLINE_HOUR_WEIGHTS);
    let installed_at = draw_local_time(&mut rng, now, 365 * DAY, 30 * DAY, &ONLINE_HOUR_WEIGHTS);

    let loyalty_card = (store_shopper && card).then(|| {
        let n = subscriber_number(cfg.seed ^ 0x4C4F_5941_4C54_5921, index64);
        format!("ARF{n:08}{:02}", n % 97)
    });
    let (device_id, push_token, platform) = if app_user {
        let token = if ios {
            format!("{:016x}{:016x}{:016x}{:016x}", mix64(token), mix64(token ^ 1), mix64(token ^ 2), mix64(token ^ 3))
        } else {
            format!("{}:APA91b{}", b64url(token, 22), b64url(token ^ 0xFF, 60))
        };
        (Some(uuid(device.0, device.1, ios)), Some(token), Some(if ios { "ios" } else { "android" }))
    } else {
        (None, None, None)
    };

    Profile {
        id: ChannelIdentity {
            person_id: person.person_id.clone(),
            customer_id: person.customer_id.clone(),
            loyalty_card,
            cookie_ids,
            device_id,
            push_token,
            platform,
            store_shopper,
            web_visitor,
            orders_online,
            email_subscriber,
            sms_subscriber,
            app_user,
        },
        has_account: orders_online || account_roll < 30,
        created_at,
        favourite,
        home_store,
        phone_style,
        push_opt_in: app_user && push_opt_in,
        installed_at,
        family: None,
    }
}
