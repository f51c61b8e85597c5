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
    SELECT profile_id, channel, event_type, occurred_at
    FROM events
    WHERE event_date >= {{run_date-28}} AND occurred_at > {{run_at}} - INTERVAL '28 days' AND channel <> 'crm'
),
reach AS (
    SELECT COUNT(DISTINCT profile_id) AS people_reached
    FROM ev
    WHERE event_type IN ('email_sent', 'sms_sent', 'sms_delivered') OR channel IN ('web', 'app', 'pos', 'ecommerce')
),
period_orders AS (
    SELECT profile_id, channel, order_id, ordered_at, COALESCE(amount_minor, 0) AS amount_minor
    FROM orders
    WHERE ordered_at > {{run_at}} - INTERVAL '28 days'
),
buyers AS (
    SELECT profile_id, SUM(amount_minor) AS value_minor FROM period_orders GROUP BY profile_id
),
channels_used AS (
    SELECT profile_id, COUNT(DISTINCT CASE WHEN channel = 'ecommerce' THEN 'web' ELSE channel END) AS channels
    FROM ev
    GROUP BY profile_id
),
customers AS (
    SELECT b.profile_id, b.value_minor, COALESCE(c.channels, 1) AS channels
    FROM buyers b LEFT JOIN channels_used c ON c.profile_id = b.profile_id
),
mix AS (
    SELECT
        COUNT(*) AS customers,
        SUM(CASE WHEN channels <= 1 THEN 1 ELSE 0 END) AS single_channel_customers,
        SUM(CASE WHEN channels >= 2 THEN 1 ELSE 0 END) AS multi_channel_customers,
        SUM(CASE WHEN channels <= 1 THEN value_minor ELSE 0 END) AS single_value,
        SUM(CASE WHEN channels >= 2 THEN value_minor ELSE 0 END) AS multi_value
    FROM customers
),
visits AS (
    SELECT profile_id, channel, occurred_at
    FROM events
    WHERE event_date >= {{run_date-35}} AND occurred_at > {{run_at}} - INTERVAL '35 days'
      AND channel IN ('web', 'app', 'pos')
),
ropo AS (
    SELECT COUNT(DISTINCT concat(o.profile_id, '/', o.order_id)) AS research_online_purchase_offline
    FROM period_orders o
    JOIN visits v ON v.profile_id = o.profile_id
    WHERE o.channel = 'pos' AND v.channel IN ('web', 'app')
      AND v.occurred_at <= o.ordered_at AND v.occurred_at >= o.ordered_at - INTERVAL '7 days'
),
reverse_ropo AS (
    SELECT COUNT(DISTINCT concat(o.profile_id, '/', o.order_id)) AS research_offline_purchase_online
    FROM period_orders o
    JOIN visits v ON v.profile_id = o.profile_id
    WHERE o.channel IN ('ecommerce', 'app') AND v.channel = 'pos'
      AND v.occurred_at <= o.ordered_at AND v.occurred_at >= o.ordered_at - INTERVAL '7 days'
)
SELECT
    r.people_reached,
    m.customers,
    CAST(COALESCE(m.single_channel_customers, 0) AS BIGINT) AS single_channel_customers,
    CAST(COALESCE(m.multi_channel_customers, 0) AS BIGINT) AS multi_channel_customers,
    CASE WHEN m.customers > 0 THEN CAST(m.multi_channel_customers AS DOUBLE) / m.customers END AS multi_channel_share,
    CASE WHEN m.single_channel_customers > 0
         THEN CAST(ROUND(CAST(m.single_value AS DOUBLE) / m.single_channel_customers) AS BIGINT) END AS single_channel_average_value_minor,
    CASE WHEN m.multi_channel_customers > 0
         THEN CAST(ROUND(CAST(m.multi_value AS DOUBLE) / m.multi_channel_customers) AS BIGINT) END AS multi_channel_average_value_minor,
    p.research_online_purchase_offline,
    x.research_offline_purchase_online
FROM reach r
CROSS JOIN mix m
CROSS JOIN ropo p
CROSS JOIN reverse_ropo x
