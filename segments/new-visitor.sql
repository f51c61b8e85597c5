-- name: new-visitor
-- description: Seen in a store or on the site within 90 days, never bought, not reachable by e-mail or push yet: ask for an opt-in.
-- schedule: rate(1 day)
-- payload: last_seen_at, seen_in_store, seen_on_site
SELECT
    e.profile_id,
    MAX(e.occurred_at) AS last_seen_at,
    MAX(CASE WHEN e.channel = 'pos' THEN 1 ELSE 0 END) = 1 AS seen_in_store,
    MAX(CASE WHEN e.channel = 'web' THEN 1 ELSE 0 END) = 1 AS seen_on_site
FROM events e
JOIN profiles p ON p.profile_id = e.profile_id
WHERE e.channel IN ('pos', 'web')
  AND e.event_date >= {{run_date-91}}
  AND e.occurred_at > {{run_at}} - INTERVAL '90 days'
  AND NOT p.email_reachable
  AND NOT p.push_reachable
  AND e.profile_id NOT IN (SELECT profile_id FROM orders)
GROUP BY e.profile_id
