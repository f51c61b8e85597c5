-- name: conversions
-- description: Every order of the last 28 days, in every channel, with its amount (one row per order): what attribution shares out.
--
-- Period: the 28 days before the run. Orders come from the `orders` view: web-shop orders
-- (ecommerce), store receipts (pos) and app purchases (app), one per order id; returns are
-- not deducted.
--
-- Columns, for a marketer:
--   profile_id    the person (pseudonymous id)
--   order_id      the order or receipt number
--   channel       where the sale happened: ecommerce, pos or app
--   ordered_at    when (UTC)
--   amount_minor  the order's amount in cents (minor units)
SELECT profile_id, order_id, channel, ordered_at, COALESCE(amount_minor, 0) AS amount_minor
FROM orders
WHERE ordered_at > {{run_at}} - INTERVAL '28 days'
