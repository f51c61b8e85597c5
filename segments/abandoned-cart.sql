-- name: abandoned-cart
-- description: Cart activity in any channel within the last 48 hours, later than the profile's latest order or completed checkout: remind them of the cart.
-- schedule: rate(1 hour)
-- payload: cart_at, items
WITH recent AS (
    SELECT c.profile_id, c.at, c.sku
    FROM carts c
    WHERE c.event_date >= {{run_date-3}}
      AND c.at > {{run_at}} - INTERVAL '48 hours'
),
-- The latest order, or completed checkout (an online order seen by web or app analytics,
-- whose lines may come later, or never, in an export): either closes the cart.
last_order AS (
    SELECT profile_id, MAX(ordered_at) AS ordered_at
    FROM (
        SELECT profile_id, ordered_at FROM orders
        UNION ALL
        SELECT profile_id, occurred_at AS ordered_at FROM events WHERE event_type = 'checkout_completed'
    ) AS closing
    GROUP BY profile_id
),
open_items AS (
    SELECT r.profile_id, r.at, r.sku
    FROM recent r
    LEFT JOIN last_order o ON o.profile_id = r.profile_id
    WHERE o.ordered_at IS NULL OR r.at > o.ordered_at
),
skus AS (
    SELECT DISTINCT profile_id, sku FROM open_items WHERE sku IS NOT NULL
)
SELECT
    i.profile_id,
    MAX(i.at) AS cart_at,
    COALESCE(MAX(s.items), '') AS items
FROM open_items i
LEFT JOIN (SELECT profile_id, string_agg(sku, ',' ORDER BY sku) AS items FROM skus GROUP BY profile_id) s
    ON s.profile_id = i.profile_id
GROUP BY i.profile_id
