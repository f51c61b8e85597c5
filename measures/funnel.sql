-- name: funnel
-- description: Visit, cart, checkout, order over the last 28 days, per channel of entry (one row per channel of entry).
--
-- Who counts: every person with an event of the period (the 28 days before the run) in any
-- channel but crm (contact and consent updates are not contacts with the person).
--
-- Channel of entry: the channel of the person's first such event in the period (ties at the
-- same second: the alphabetically first channel). Someone who first got an e-mail, then
-- came to the site, entered through email.
--
-- Columns, for a marketer:
--   entry_channel   the channel of entry (email, sms, app, web, pos, ecommerce)
--   people          people who entered through that channel
--   visitors        of them, people who visited: any event on the site (web), in the app
--                   (app), in a store (pos) or in the web shop (ecommerce)
--   carted          of the visitors, people who added to a cart (cart_add, add_to_cart) or
--                   went further (a checkout or an order)
--   checked_out     of the visitors, people who started a checkout (checkout_started) or ordered
--   ordered         of the visitors, people who ordered (order_line, store_purchase, in_app_purchase)
-- A person counts at every step up to the furthest one they reached: a store or app
-- customer, who has no online cart, counts as carted and checked out too. So each step is
-- at most the one before, and the drop-off from one step to the next, 1 - next / previous,
-- is the share of people who stopped there.
WITH ev AS (
    SELECT profile_id, channel, event_type,
           ROW_NUMBER() OVER (PARTITION BY profile_id ORDER BY occurred_at, channel) AS rn
    FROM events
    WHERE event_date >= {{run_date-28}} AND occurred_at > {{run_at}} - INTERVAL '28 days' AND channel <> 'crm'
),
steps AS (
    SELECT profile_id,
        MAX(CASE WHEN rn = 1 THEN channel END) AS entry_channel,
        MAX(CASE WHEN channel IN ('web', 'app', 'pos', 'ecommerce') THEN 1 ELSE 0 END) AS visited,
        MAX(CASE WHEN event_type IN ('cart_add', 'add_to_cart') THEN 1 ELSE 0 END) AS carted,
        MAX(CASE WHEN event_type = 'checkout_started' THEN 1 ELSE 0 END) AS checked_out,
        MAX(CASE WHEN event_type IN ('order_line', 'store_purchase', 'in_app_purchase') THEN 1 ELSE 0 END) AS ordered
    FROM ev
    GROUP BY profile_id
)
SELECT
    entry_channel,
    COUNT(*) AS people,
    CAST(SUM(visited) AS BIGINT) AS visitors,
    CAST(SUM(visited * GREATEST(carted, checked_out, ordered)) AS BIGINT) AS carted,
    CAST(SUM(visited * GREATEST(checked_out, ordered)) AS BIGINT) AS checked_out,
    CAST(SUM(visited * ordered) AS BIGINT) AS ordered
FROM steps
GROUP BY entry_channel
ORDER BY entry_channel
