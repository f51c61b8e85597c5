-- name: cross-channel
-- description: Customers of one channel against customers of several, and research online / purchase offline, over the last 28 days (one row).
--
-- Period: the 28 days before the run. A customer is a person with at least one order in the
-- period (any channel, from the `orders` view). The channels a customer used are the
-- channels of their events in the period, crm left out and the web shop (ecommerce) counted
-- as web: browsing the site and buying on it is one channel for the customer.
--
-- Columns, for a marketer:
--   people_reached                       distinct people reached in the period, all channels
--                                        together (same rule as channel-kpis: a message sent
--                                        or a session on the site, app, store or web shop)
--   customers                            people with an order in the period
--   single_channel_customers             customers seen in one channel only
--   multi_channel_customers              customers seen in two channels or more
--   multi_channel_share                  multi_channel_customers / customers (0.4 = 40 %)
--   single_channel_average_value_minor   revenue of the period per single-channel customer, in cents
--   multi_channel_average_value_minor    revenue of the period per multi-channel customer, in cents
--   research_online_purchase_offline     store orders (pos) of the period preceded by a visit
--                                        on the site or in the app (web, app) of the same
--                                        person in the 7 days before the purchase
--   research_offline_purchase_online     web-shop and app orders (ecommerce, app) preceded by
--                                        a store event (a visit or a purchase, pos) in the 7
--                                        days before
WITH ev AS (
    SELECT profile_id, channel, event_type
    FROM events
    WHERE event_date >= {{run_date-28}} AND occurred_at > {{run_at}} - INTERVAL '28 days' AND channel <> 'crm'
),
person_channels AS (
    SELECT profile_id, CASE WHEN channel = 'ecommerce' THEN 'web' ELSE channel END AS used,
        MAX(CASE WHEN event_type IN ('email_sent', 'sms_sent', 'sms_delivered')
                   OR channel IN ('web', 'app', 'pos', 'ecommerce') THEN 1 ELSE 0 END) AS reached
    FROM ev
    GROUP BY profile_id, CASE WHEN channel = 'ecommerce' THEN 'web' ELSE channel END
),
people AS (
    SELECT profile_id, COUNT(*) AS channels, MAX(reached) AS reached
    FROM person_channels
    GROUP BY profile_id
),
period_orders AS (
    SELECT profile_id, channel, order_id, lines, ordered_at, COALESCE(amount_minor, 0) AS amount_minor
    FROM orders
    WHERE ordered_at > {{run_at}} - INTERVAL '28 days'
),
visits AS (
    SELECT profile_id, channel, occurred_at
    FROM events
    WHERE event_date >= {{run_date-35}} AND occurred_at > {{run_at}} - INTERVAL '35 days'
      AND channel IN ('web', 'app', 'pos')
),
researched AS (
    SELECT o.profile_id, o.order_id, o.amount_minor,
        MAX(CASE WHEN o.channel = 'pos' AND v.channel IN ('web', 'app') THEN 1 ELSE 0 END) AS online_then_store,
        MAX(CASE WHEN o.channel IN ('ecommerce', 'app') AND v.channel = 'pos' THEN 1 ELSE 0 END) AS store_then_online
    FROM period_orders o
    LEFT JOIN visits v ON v.profile_id = o.profile_id
        AND v.occurred_at <= o.ordered_at AND v.occurred_at >= o.ordered_at - INTERVAL '7 days'
    GROUP BY o.profile_id, o.channel, o.order_id, o.lines, o.ordered_at, o.amount_minor
),
per_order AS (
    SELECT profile_id, order_id, SUM(amount_minor) AS amount_minor,
        MAX(online_then_store) AS online_then_store, MAX(store_then_online) AS store_then_online
    FROM researched
    GROUP BY profile_id, order_id
),
buyers AS (
    SELECT profile_id, SUM(amount_minor) AS value_minor,
        SUM(online_then_store) AS online_then_store, SUM(store_then_online) AS store_then_online
    FROM per_order
    GROUP BY profile_id
),
totals AS (
    SELECT
        SUM(CASE WHEN p.profile_id IS NOT NULL THEN p.reached ELSE 0 END) AS people_reached,
        COUNT(b.profile_id) AS customers,
        SUM(CASE WHEN b.profile_id IS NOT NULL AND COALESCE(p.channels, 1) <= 1 THEN 1 ELSE 0 END) AS single_channel_customers,
        SUM(CASE WHEN b.profile_id IS NOT NULL AND COALESCE(p.channels, 1) >= 2 THEN 1 ELSE 0 END) AS multi_channel_customers,
        SUM(CASE WHEN b.profile_id IS NOT NULL AND COALESCE(p.channels, 1) <= 1 THEN b.value_minor ELSE 0 END) AS single_value,
        SUM(CASE WHEN b.profile_id IS NOT NULL AND COALESCE(p.channels, 1) >= 2 THEN b.value_minor ELSE 0 END) AS multi_value,
        SUM(b.online_then_store) AS research_online_purchase_offline,
        SUM(b.store_then_online) AS research_offline_purchase_online
    FROM people p
    FULL OUTER JOIN buyers b ON b.profile_id = p.profile_id
)
SELECT
    CAST(COALESCE(t.people_reached, 0) AS BIGINT) AS people_reached,
    t.customers,
    CAST(COALESCE(t.single_channel_customers, 0) AS BIGINT) AS single_channel_customers,
    CAST(COALESCE(t.multi_channel_customers, 0) AS BIGINT) AS multi_channel_customers,
    CASE WHEN t.customers > 0 THEN CAST(t.multi_channel_customers AS DOUBLE) / t.customers END AS multi_channel_share,
    CASE WHEN t.single_channel_customers > 0
         THEN CAST(ROUND(CAST(t.single_value AS DOUBLE) / t.single_channel_customers) AS BIGINT) END AS single_channel_average_value_minor,
    CASE WHEN t.multi_channel_customers > 0
         THEN CAST(ROUND(CAST(t.multi_value AS DOUBLE) / t.multi_channel_customers) AS BIGINT) END AS multi_channel_average_value_minor,
    CAST(COALESCE(t.research_online_purchase_offline, 0) AS BIGINT) AS research_online_purchase_offline,
    CAST(COALESCE(t.research_offline_purchase_online, 0) AS BIGINT) AS research_offline_purchase_online
FROM totals t
