-- name: touchpoints
-- description: Every contact with a person that attribution credits, over the last 28 days plus the 30-day lookback (one row per touchpoint).
--
-- Period: the 58 days before the run (28 days of orders measured + 30 days of lookback, the
-- attribution window before each order). Attribution itself runs in the measures function
-- over this table and `conversions`.
--
-- Which contacts count: the messages Ariane's own campaigns sent (activation records with
-- outcome `sent`, at the decision's time, on the channel the campaign chose; a push counts
-- for the app), clicks in
-- e-mails and SMS (email_click, sms_click), app opens and push notification opens
-- (app_open, push_open), and web sessions: the page and product views of a person on one
-- day under one campaign count as one session (the lake has no session id), at the time of
-- its first view. Sends and e-mail opens reported by the ESP or SMS exports do not count:
-- the campaign's own send already stands for the message, and a delivery alone brought the
-- person nowhere. Each event counts once, however often the lake holds it.
--
-- Columns, for a marketer:
--   profile_id    the person (pseudonymous id)
--   at            when the contact happened (UTC)
--   channel       email, sms, app or web
--   campaign_id   the campaign the contact came from, empty when none
--   kind          send, email_click, sms_click, app_open, push_open or session
--   source        the traffic source of a web session, when known (empty for now)
SELECT profile_id, decided_at AS at, CASE WHEN channel = 'push' THEN 'app' ELSE channel END AS channel, campaign AS campaign_id, 'send' AS kind, CAST(NULL AS VARCHAR) AS source
FROM activations
WHERE decided_date >= {{run_date-58}} AND decided_at > {{run_at}} - INTERVAL '58 days' AND decided_at <= {{run_at}}
  AND outcome = 'sent' AND channel IS NOT NULL
UNION ALL
SELECT profile_id, MIN(occurred_at) AS at, channel, campaign_id, event_type AS kind, CAST(NULL AS VARCHAR) AS source
FROM events
WHERE event_date >= {{run_date-58}} AND occurred_at > {{run_at}} - INTERVAL '58 days'
  AND event_type IN ('email_click', 'sms_click', 'app_open', 'push_open')
GROUP BY event_id, profile_id, channel, campaign_id, event_type
UNION ALL
SELECT profile_id, MIN(occurred_at) AS at, 'web' AS channel, campaign_id, 'session' AS kind, CAST(NULL AS VARCHAR) AS source
FROM events
WHERE event_date >= {{run_date-58}} AND occurred_at > {{run_at}} - INTERVAL '58 days'
  AND channel = 'web' AND event_type IN ('page_view', 'product_view')
GROUP BY profile_id, CAST(occurred_at AS DATE), campaign_id
