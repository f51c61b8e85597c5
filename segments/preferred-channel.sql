-- name: preferred-channel
-- description: The channel each profile engaged with most in the last 90 days (ties: the most recent, then the name); activation reaches people there first.
-- schedule: rate(1 day)
-- key: preferred_channel
-- payload: preferred_channel, engagements
-- attribute: preferred_channel
WITH engagement AS (
    SELECT
        profile_id,
        CASE
            WHEN event_type IN ('email_open', 'email_click') THEN 'email'
            WHEN event_type = 'sms_click' THEN 'sms'
            WHEN event_type IN ('app_open', 'push_open', 'in_app_purchase') THEN 'app'
            WHEN event_type IN ('page_view', 'product_view', 'add_to_cart', 'login', 'sign_up',
                                'cart_add', 'checkout_started', 'order_line') THEN 'web'
            WHEN event_type IN ('store_purchase', 'store_visit') THEN 'store'
        END AS engaged_on,
        occurred_at
    FROM events
    WHERE event_date >= {{run_date-91}}
      AND occurred_at > {{run_at}} - INTERVAL '90 days'
),
per_channel AS (
    SELECT profile_id, engaged_on, COUNT(*) AS engagements, MAX(occurred_at) AS latest
    FROM engagement
    WHERE engaged_on IS NOT NULL
    GROUP BY profile_id, engaged_on
),
ranked AS (
    SELECT profile_id, engaged_on, engagements,
           ROW_NUMBER() OVER (PARTITION BY profile_id ORDER BY engagements DESC, latest DESC, engaged_on ASC) AS rn
    FROM per_channel
)
SELECT profile_id, engaged_on AS preferred_channel, engagements
FROM ranked
WHERE rn = 1
