-- The deliveries rollup again, now that deliveries carry the classified
-- reason and bounce kind (0030): a hard bounce is Sisimai's hard kind (the
-- address or domain does not exist or takes no mail), other permanent
-- refusals are soft; blocked counts failures whose reason is blocked or
-- spamdetected, or whose reply names a blocklist or reputation (rows written
-- before 0030 have neither column set and fall back to 0005's rules).
--
-- The old view is dropped before the new one is created: a block inserted
-- into deliveries between the two statements, by another analytics process
-- already running, would be missing from the rollup. The analytics role
-- migrates before it inserts, so a single process, or all processes
-- restarted together, never meet that window.
DROP TABLE IF EXISTS tenant_minute_deliveries_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS tenant_minute_deliveries_v2_mv TO tenant_minute AS
SELECT
    tenant,
    toStartOfMinute(time) AS minute,
    count() AS attempts,
    countIf(outcome = 'delivered') AS delivered,
    countIf(outcome = 'deferred') AS deferred,
    countIf(outcome = 'bounced') AS bounced,
    countIf(outcome = 'expired') AS expired,
    countIf(outcome = 'bounced' AND (bounce = 'hard' OR bounce = '' AND reply_code >= 500)) AS hard_bounces,
    countIf(outcome = 'expired' OR outcome = 'bounced' AND (bounce = 'soft' OR bounce = '' AND reply_code < 500)) AS soft_bounces,
    countIf(outcome != 'delivered' AND (reason IN ('blocked', 'spamdetected')
        OR match(lower(reply_text), 'block ?list|black ?list|\\bblocked\\b|\\blisted\\b|spamhaus|spamcop|barracuda|dnsbl|\\brbl\\b|reputation'))) AS blocked{{zeros "attempts" "delivered" "deferred" "bounced" "expired" "hard_bounces" "soft_bounces" "blocked"}}
FROM deliveries
GROUP BY tenant, minute;
