//! The answer of a profile call, from a memberships item: the person's segments with
//! their payload, and the attributes the site uses. Built from the memberships item
//! only (pseudonymous segment columns); a payload value that is an e-mail address is
//! dropped all the same.

use ariane_shared::identifiers::normalize_email;
use ariane_shared::memberships::Memberships;
use serde::Serialize;
use std::collections::BTreeMap;

/// The segment whose payload lists the cart (`items`: SKUs, comma separated; `cart_at`).
pub const CART_SEGMENT: &str = "abandoned-cart";
/// The segment suggesting a product (`suggested_sku`, `suggested_product`, ...).
pub const UP_SELL_SEGMENT: &str = "up-sell";
/// The segment suggesting a category (`suggested_category`, `because_of`).
pub const CROSS_SELL_SEGMENT: &str = "cross-sell";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProfileView {
    pub segments: Vec<SegmentView>,
    pub attributes: SiteAttributes,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SegmentView {
    pub name: String,
    /// When the person entered (RFC 3339).
    pub since: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub key: BTreeMap<String, String>,
    pub payload: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SiteAttributes {
    pub preferred_channel: Option<String>,
    /// SKUs left in a cart (abandoned-cart).
    pub cart_items: Vec<String>,
    pub cart_at: Option<String>,
    /// The next tier's product (up-sell).
    pub suggested_products: Vec<SuggestedProduct>,
    /// A complementary category (cross-sell).
    pub suggested_categories: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SuggestedProduct {
    pub sku: String,
    pub name: Option<String>,
    pub tier: Option<String>,
    pub product_range: Option<String>,
}

/// Whether a value is a clear e-mail address.
fn is_email(v: &str) -> bool {
    v.contains('@') && normalize_email(v).is_ok()
}

impl ProfileView {
    pub fn of(m: &Memberships) -> ProfileView {
        let mut view = ProfileView::default();
        let clean = |map: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            map.iter().filter(|(_, v)| !is_email(v)).map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        for entry in m.segments.values() {
            view.segments.push(SegmentView {
                name: entry.segment.clone(),
                since: entry.since.clone(),
                key: clean(&entry.key),
                payload: clean(&entry.payload),
            });
        }
        view.segments.sort_by(|a, b| (&a.name, &a.key).cmp(&(&b.name, &b.key)));
        let attrs = &mut view.attributes;
        attrs.preferred_channel = m.attributes.get("preferred_channel").filter(|v| !is_email(v)).cloned();
        for s in &view.segments {
            let get = |k: &str| s.payload.get(k).or_else(|| s.key.get(k)).filter(|v| !v.is_empty()).cloned();
            match s.name.as_str() {
                CART_SEGMENT => {
                    let items = get("items").unwrap_or_default();
                    attrs.cart_items.extend(items.split(',').map(str::trim).filter(|i| !i.is_empty()).map(str::to_string));
                    attrs.cart_at = get("cart_at");
                }
                UP_SELL_SEGMENT => {
                    if let Some(sku) = get("suggested_sku") {
                        attrs.suggested_products.push(SuggestedProduct {
                            sku,
                            name: get("suggested_product"),
                            tier: get("suggested_tier"),
                            product_range: get("product_range"),
                        });
                    }
                }
                CROSS_SELL_SEGMENT => attrs.suggested_categories.extend(get("suggested_category")),
                _ => {}
            }
        }
        view
    }
}
