//! The headline figures of a period (the report's KPI cards) and their change against the
//! previous period of the same length.
//!
//! Both periods are read from the same measures: `conversions` (orders and revenue) and
//! `cross-channel` (people reached, customers, multi-channel share, research online /
//! purchase offline). The run queries them a second time as of `run_at - PERIOD_DAYS`
//! ([`crate::config::PERIOD_DAYS`]) in a session whose lake ends at that instant, so the
//! previous period is measured exactly as the current one, over the 28 days before it
//! (and with the identity of today: a merge since then counts in both periods).
//!
//! The change of a KPI is relative: `(current - previous) / previous` (`0.25` = +25 %). It
//! is `None` when the previous value is zero or undefined (no order, nobody reached): a
//! change from nothing has no meaningful percentage.

use serde::{Deserialize, Serialize};

use crate::error::MeasuresError;
use crate::table::Table;

/// One period's figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    pub orders: u64,
    /// Minor units.
    pub revenue_minor: i64,
    pub people_reached: u64,
    /// People with an order in the period.
    pub customers: u64,
    pub multi_channel_share: Option<f64>,
    pub research_online_purchase_offline: Option<u64>,
}

impl Headline {
    /// From a period's `conversions` and `cross-channel` results.
    pub fn from_tables(conversions: &Table, cross: &Table) -> Result<Headline, MeasuresError> {
        let revenue_minor = conversions.ints("amount_minor")?.into_iter().flatten().sum();
        let mut h = Headline { orders: conversions.rows() as u64, revenue_minor, ..Headline::default() };
        if cross.rows() > 0 {
            let first = |v: Vec<Option<i64>>| v.into_iter().next().flatten();
            h.people_reached = first(cross.ints("people_reached")?).unwrap_or(0).max(0) as u64;
            h.customers = first(cross.ints("customers")?).unwrap_or(0).max(0) as u64;
            h.multi_channel_share = cross.floats("multi_channel_share")?.into_iter().next().flatten();
            h.research_online_purchase_offline = first(cross.ints("research_online_purchase_offline")?).map(|v| v.max(0) as u64);
        }
        Ok(h)
    }

    /// Revenue per order, rounded to the minor unit; `None` without orders.
    pub fn average_basket_minor(&self) -> Option<i64> {
        (self.orders > 0).then(|| (self.revenue_minor as f64 / self.orders as f64).round() as i64)
    }

    /// Customers ÷ people reached; `None` when nobody was reached.
    pub fn conversion_rate(&self) -> Option<f64> {
        (self.people_reached > 0).then(|| self.customers as f64 / self.people_reached as f64)
    }
}

/// `(current - previous) / |previous|`; `None` when there is no previous value or it is 0.
pub fn change(current: f64, previous: Option<f64>) -> Option<f64> {
    let previous = previous?;
    (previous != 0.0 && previous.is_finite() && current.is_finite()).then(|| (current - previous) / previous.abs())
}

/// The KPI changes of `current` against `previous` (`None`: no previous period measured).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    pub orders: Option<f64>,
    pub revenue: Option<f64>,
    pub average_basket: Option<f64>,
    pub people_reached: Option<f64>,
    pub conversion_rate: Option<f64>,
    pub multi_channel_share: Option<f64>,
    pub research_online_purchase_offline: Option<f64>,
}

impl Changes {
    pub fn between(current: &Headline, previous: Option<&Headline>) -> Changes {
        let Some(p) = previous else { return Changes::default() };
        let basket = current.average_basket_minor().map(|b| b as f64);
        let rate = current.conversion_rate();
        Changes {
            orders: change(current.orders as f64, Some(p.orders as f64)),
            revenue: change(current.revenue_minor as f64, Some(p.revenue_minor as f64)),
            average_basket: basket.and_then(|b| change(b, p.average_basket_minor().map(|v| v as f64))),
            people_reached: change(current.people_reached as f64, Some(p.people_reached as f64)),
            conversion_rate: rate.and_then(|r| change(r, p.conversion_rate())),
            multi_channel_share: current.multi_channel_share.and_then(|s| change(s, p.multi_channel_share)),
            research_online_purchase_offline: current
                .research_online_purchase_offline
                .and_then(|n| change(n as f64, p.research_online_purchase_offline.map(|v| v as f64))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headline(orders: u64, revenue_minor: i64, people_reached: u64, customers: u64) -> Headline {
        Headline { orders, revenue_minor, people_reached, customers, multi_channel_share: None, research_online_purchase_offline: None }
    }

    #[test]
    fn changes_are_relative_and_undefined_from_nothing() {
        assert_eq!(change(150.0, Some(100.0)), Some(0.5));
        assert_eq!(change(50.0, Some(100.0)), Some(-0.5));
        assert_eq!(change(0.0, Some(100.0)), Some(-1.0));
        assert_eq!(change(10.0, Some(0.0)), None);
        assert_eq!(change(10.0, None), None);
        // A negative previous value (refunds above sales): the sign follows the direction.
        assert_eq!(change(-50.0, Some(-100.0)), Some(0.5));

        // 4 orders for 185.00 € to 4 of 5 people, against 2 orders for 100.00 € to 2 of 4.
        let now = headline(4, 18_500, 5, 4);
        let before = headline(2, 10_000, 4, 2);
        let c = Changes::between(&now, Some(&before));
        assert_eq!(c.orders, Some(1.0));
        assert_eq!(c.revenue, Some(0.85));
        // Basket 46.25 € against 50.00 €: -7.5 %.
        assert_eq!(c.average_basket, Some(-0.075));
        assert_eq!(c.people_reached, Some(0.25));
        // Conversion 80 % against 50 %: +60 %.
        assert!((c.conversion_rate.unwrap() - 0.6).abs() < 1e-12, "{c:?}");
        assert_eq!((c.multi_channel_share, c.research_online_purchase_offline), (None, None));

        // A previous period without any order or anyone reached: no change at all.
        let empty = Changes::between(&now, Some(&Headline::default()));
        assert_eq!(empty, Changes::default());
        assert_eq!(Changes::between(&now, None), Changes::default());
    }
}
