-- name: vip
-- description: Best customers: at least 500 EUR or at least 6 orders in the last 365 days.
-- schedule: rate(1 day)
-- payload: spend_365d_minor, orders_365d
SELECT
    profile_id,
    SUM(amount_minor) AS spend_365d_minor,
    COUNT(*) AS orders_365d
FROM orders
WHERE ordered_at > {{run_at}} - INTERVAL '365 days'
GROUP BY profile_id
HAVING SUM(amount_minor) >= 50000 OR COUNT(*) >= 6
