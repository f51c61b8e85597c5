-- name: reactivation
-- description: Customers with at least two orders and none in the last 90 days: win them back.
-- schedule: rate(1 day)
-- payload: order_count, last_order_at, lifetime_value_minor
SELECT
    o.profile_id,
    COUNT(*) AS order_count,
    MAX(o.ordered_at) AS last_order_at,
    SUM(o.amount_minor) AS lifetime_value_minor
FROM orders o
CROSS JOIN run_context r
GROUP BY o.profile_id, r.run_at
HAVING COUNT(*) >= 2
   AND MAX(o.ordered_at) < r.run_at - INTERVAL '90 days'
