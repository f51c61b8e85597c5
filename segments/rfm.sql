-- name: rfm
-- description: Every buyer in one recency/frequency/monetary tier: champions, loyal, promising, at_risk, hibernating.
-- schedule: rate(1 day)
-- key: tier
-- payload: tier, orders_365d, spend_365d_minor, last_order_at
WITH buyers AS (
    SELECT
        profile_id,
        MAX(ordered_at) AS last_order_at,
        SUM(CASE WHEN ordered_at > {{run_at}} - INTERVAL '365 days' THEN 1 ELSE 0 END) AS orders_365d,
        SUM(CASE WHEN ordered_at > {{run_at}} - INTERVAL '365 days' THEN amount_minor ELSE 0 END) AS spend_365d_minor
    FROM orders
    GROUP BY profile_id
)
SELECT
    profile_id,
    CASE
        WHEN last_order_at > {{run_at}} - INTERVAL '30 days' AND orders_365d >= 4 THEN 'champions'
        WHEN orders_365d >= 3 THEN 'loyal'
        WHEN last_order_at > {{run_at}} - INTERVAL '60 days' THEN 'promising'
        WHEN last_order_at > {{run_at}} - INTERVAL '180 days' THEN 'at_risk'
        ELSE 'hibernating'
    END AS tier,
    orders_365d,
    spend_365d_minor,
    last_order_at
FROM buyers
