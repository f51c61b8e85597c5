-- name: reactivation
-- description: Customers with at least two orders (any channel) and none in the last 90 days: win them back.
-- schedule: rate(1 day)
-- payload: order_count, last_order_at, lifetime_value_minor
SELECT
    profile_id,
    COUNT(*) AS order_count,
    MAX(ordered_at) AS last_order_at,
    SUM(amount_minor) AS lifetime_value_minor
FROM orders
GROUP BY profile_id
HAVING COUNT(*) >= 2
   AND MAX(ordered_at) < {{run_at}} - INTERVAL '90 days'
