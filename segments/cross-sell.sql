-- name: cross-sell
-- description: Bought in a category, never in its complementary category: suggest it.
-- schedule: rate(1 day)
-- key: suggested_category
-- payload: suggested_category, because_of
WITH pairs AS (
    SELECT * FROM (VALUES
        ('chaussures', 'accessoires'),
        ('vetements', 'chaussures'),
        ('sport', 'vetements'),
        ('maison', 'beaute'),
        ('enfant', 'vetements')
    ) AS t(bought, suggested)
),
bought AS (
    SELECT DISTINCT profile_id, category FROM order_lines WHERE category IS NOT NULL
)
SELECT
    b.profile_id,
    p.suggested AS suggested_category,
    MIN(b.category) AS because_of
FROM bought b
JOIN pairs p ON p.bought = b.category
LEFT JOIN bought already ON already.profile_id = b.profile_id AND already.category = p.suggested
WHERE already.profile_id IS NULL
GROUP BY b.profile_id, p.suggested
