-- name: spend
-- description: What each channel and campaign cost over the last 28 days, from the spend files landed under costs/ (one row per channel and campaign).
--
-- Period: the 28 whole days before the run's day (a run on 23 November counts the spend
-- of 26 October to 22 November): spend files give one amount per day.
--
-- Where it comes from: the rows of the spend files (`channels/costs/spend.toml`), read
-- from `raw_events` (spend rows belong to no person, so the `events` view, which joins
-- every event to its person, does not have them): event type `spend`, the paid channel
-- in `category`, the campaign in `campaign_id`, the amount in `line_total_minor`.
-- A spend row is identified by its day, channel and campaign: when two files hold the
-- same one, the row of the later file (landing keys sorted by name, then line) counts, so
-- a corrected file replaces the days it repeats instead of adding to them.
--
-- Columns, for a marketer:
--   channel       the channel the money paid for: email, sms, app or web
--   campaign      the campaign it paid for; empty for spend of the channel as a whole
--                 (a channel's total is the sum of all its rows, campaigns included)
--   spend_minor   what was spent over the period, in cents (minor units)
--   days          days of the period with spend on that row
WITH spend_rows AS (
    SELECT category AS paid_channel, NULLIF(campaign_id, '') AS campaign, line_total_minor, event_date,
           ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY source_key DESC, source_line DESC) AS rn
    FROM raw_events
    WHERE channel = 'costs' AND event_type = 'spend'
      AND event_date >= {{run_date-28}} AND event_date < {{run_date}}
)
SELECT paid_channel AS channel, campaign,
       CAST(SUM(COALESCE(line_total_minor, 0)) AS BIGINT) AS spend_minor,
       COUNT(DISTINCT event_date) AS days
FROM spend_rows
WHERE rn = 1 AND paid_channel IS NOT NULL
GROUP BY paid_channel, campaign
ORDER BY paid_channel, campaign NULLS FIRST
