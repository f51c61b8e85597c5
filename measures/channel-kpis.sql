-- name: channel-kpis
-- description: What each channel did, week by week, over the last 28 days (one row per channel and ISO week).
--
-- Period: the 28 days before the run (`occurred_at` after run time minus 28 days, up to the
-- run). Weeks are ISO weeks (Monday to Sunday, UTC); the first and last weeks of the period
-- are usually partial. One row per channel and week with any activity or any order.
--
-- Columns, for a marketer:
--   channel             where it happened: email, sms, app, web, pos (stores), ecommerce (web shop orders), crm
--   week_start          the Monday of the week (a date)
--   people_reached      distinct people who received a message of the channel (email_sent,
--                       sms_sent, sms_delivered) or had a session in it: any web, app, store
--                       (pos) or web-shop (ecommerce) event counts as a session
--   deliveries          messages sent: email_sent + sms_sent events (sms_delivered is counted
--                       apart, below, so a message is never counted twice)
--   sms_delivered       SMS the operator confirmed delivered
--   opens               e-mails opened (email_open) and push notifications opened (push_open)
--   clicks              clicks in e-mails and SMS (email_click, sms_click)
--   sessions            web and app visits, counted as distinct person-days (one person active
--                       on the site or app on a day is one session: the lake has no session id)
--   carts               add-to-cart events (cart_add, add_to_cart)
--   checkouts           checkouts started (checkout_started)
--   orders              orders sold in the channel (pos, ecommerce, app purchases), from the
--                       `orders` view: one per order id
--   revenue_minor       revenue of those orders, in cents (minor units), before returns
--   average_basket_minor revenue_minor / orders, in cents, rounded; empty without orders
--   conversion_rate     orders / people_reached (a fraction: 0.05 = 5 %); empty when nobody was reached
--   new_customers       distinct people who ordered in the channel that week and whose first
--                       order ever (any channel, all history) falls in that week
--   returning_customers distinct people who ordered in the channel that week and had ordered
--                       before that week
--   unsubscribes        e-mail unsubscribes (email_unsubscribe)
--   stops               SMS STOP replies (sms_stop)
WITH ev AS (
    SELECT profile_id, channel, event_type, event_id, occurred_at,
           CAST(date_trunc('week', occurred_at) AS DATE) AS week_start
    FROM events
    WHERE event_date >= {{run_date-28}} AND occurred_at > {{run_at}} - INTERVAL '28 days'
),
activity AS (
    SELECT channel, week_start,
        COUNT(DISTINCT CASE WHEN event_type IN ('email_sent', 'sms_sent', 'sms_delivered')
                              OR channel IN ('web', 'app', 'pos', 'ecommerce') THEN profile_id END) AS people_reached,
        COUNT(DISTINCT CASE WHEN event_type IN ('email_sent', 'sms_sent') THEN event_id END) AS deliveries,
        COUNT(DISTINCT CASE WHEN event_type = 'sms_delivered' THEN event_id END) AS sms_delivered,
        COUNT(DISTINCT CASE WHEN event_type IN ('email_open', 'push_open') THEN event_id END) AS opens,
        COUNT(DISTINCT CASE WHEN event_type IN ('email_click', 'sms_click') THEN event_id END) AS clicks,
        COUNT(DISTINCT CASE WHEN channel IN ('web', 'app')
                            THEN concat(profile_id, '/', CAST(CAST(occurred_at AS DATE) AS VARCHAR)) END) AS sessions,
        COUNT(DISTINCT CASE WHEN event_type IN ('cart_add', 'add_to_cart') THEN event_id END) AS carts,
        COUNT(DISTINCT CASE WHEN event_type = 'checkout_started' THEN event_id END) AS checkouts,
        COUNT(DISTINCT CASE WHEN event_type = 'email_unsubscribe' THEN event_id END) AS unsubscribes,
        COUNT(DISTINCT CASE WHEN event_type = 'sms_stop' THEN event_id END) AS stops
    FROM ev
    GROUP BY channel, week_start
),
first_orders AS (
    SELECT profile_id, CAST(date_trunc('week', MIN(ordered_at)) AS DATE) AS first_week
    FROM orders
    GROUP BY profile_id
),
period_orders AS (
    SELECT o.profile_id, o.channel, o.order_id, o.amount_minor,
           CAST(date_trunc('week', o.ordered_at) AS DATE) AS week_start, f.first_week
    FROM orders o
    JOIN first_orders f ON f.profile_id = o.profile_id
    WHERE o.ordered_at > {{run_at}} - INTERVAL '28 days'
),
sales AS (
    SELECT channel, week_start,
        COUNT(*) AS orders,
        SUM(amount_minor) AS revenue_minor,
        COUNT(DISTINCT CASE WHEN first_week = week_start THEN profile_id END) AS new_customers,
        COUNT(DISTINCT CASE WHEN first_week < week_start THEN profile_id END) AS returning_customers
    FROM period_orders
    GROUP BY channel, week_start
)
SELECT
    COALESCE(a.channel, s.channel) AS channel,
    COALESCE(a.week_start, s.week_start) AS week_start,
    COALESCE(a.people_reached, 0) AS people_reached,
    COALESCE(a.deliveries, 0) AS deliveries,
    COALESCE(a.sms_delivered, 0) AS sms_delivered,
    COALESCE(a.opens, 0) AS opens,
    COALESCE(a.clicks, 0) AS clicks,
    COALESCE(a.sessions, 0) AS sessions,
    COALESCE(a.carts, 0) AS carts,
    COALESCE(a.checkouts, 0) AS checkouts,
    COALESCE(s.orders, 0) AS orders,
    COALESCE(s.revenue_minor, 0) AS revenue_minor,
    CASE WHEN s.orders > 0 THEN CAST(ROUND(CAST(s.revenue_minor AS DOUBLE) / s.orders) AS BIGINT) END AS average_basket_minor,
    CASE WHEN a.people_reached > 0 THEN CAST(COALESCE(s.orders, 0) AS DOUBLE) / a.people_reached END AS conversion_rate,
    COALESCE(s.new_customers, 0) AS new_customers,
    COALESCE(s.returning_customers, 0) AS returning_customers,
    COALESCE(a.unsubscribes, 0) AS unsubscribes,
    COALESCE(a.stops, 0) AS stops
FROM activity a
FULL OUTER JOIN sales s ON s.channel = a.channel AND s.week_start = a.week_start
ORDER BY 2, 1
