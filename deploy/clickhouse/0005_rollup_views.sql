-- Materialized views filling the rollups of 0004 from the raw tables. A view
-- runs on every block inserted into its source table, after the block is
-- written there. ClickHouse 18.16 wants every column of the target table in
-- a view's SELECT, so each view names the counters it does not fill as 0 (the zeros
-- template helper writes them).

CREATE MATERIALIZED VIEW IF NOT EXISTS tenant_minute_messages_mv TO tenant_minute AS
SELECT
    tenant,
    toStartOfMinute(received) AS minute,
    count() AS messages,
    sum(toUInt64(rcpt_count)) AS rcpts{{zeros "messages" "rcpts"}}
FROM messages
GROUP BY tenant, minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS tenant_minute_verdicts_mv TO tenant_minute AS
SELECT
    tenant,
    toStartOfMinute(time) AS minute,
    count() AS verdicts,
    countIf(label = 'clean') AS clean,
    countIf(label = 'suspect') AS suspect,
    countIf(label = 'spam') AS spam,
    countIf(label = 'malicious') AS malicious{{zeros "verdicts" "clean" "suspect" "spam" "malicious"}}
FROM verdicts
GROUP BY tenant, minute;

-- blocked: a failed attempt whose reply text names a blocklist or the
-- sender's reputation (Spamhaus, "listed", "poor reputation", ...; not
-- "greylisted", a routine deferral). A later
-- migration (0061) replaces this view to use the classified reason.
CREATE MATERIALIZED VIEW IF NOT EXISTS tenant_minute_deliveries_mv TO tenant_minute AS
SELECT
    tenant,
    toStartOfMinute(time) AS minute,
    count() AS attempts,
    countIf(outcome = 'delivered') AS delivered,
    countIf(outcome = 'deferred') AS deferred,
    countIf(outcome = 'bounced') AS bounced,
    countIf(outcome = 'expired') AS expired,
    countIf(outcome = 'bounced' AND reply_code >= 500) AS hard_bounces,
    countIf(outcome = 'expired' OR outcome = 'bounced' AND reply_code < 500) AS soft_bounces,
    countIf(outcome != 'delivered'
        AND match(lower(reply_text), 'block ?list|black ?list|\\bblocked\\b|\\blisted\\b|spamhaus|spamcop|barracuda|dnsbl|\\brbl\\b|reputation')) AS blocked{{zeros "attempts" "delivered" "deferred" "bounced" "expired" "hard_bounces" "soft_bounces" "blocked"}}
FROM deliveries
GROUP BY tenant, minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS tenant_minute_fingerprints_mv TO tenant_minute_fingerprints AS
SELECT
    tenant,
    toStartOfMinute(time) AS minute,
    fingerprint,
    count() AS messages
FROM verdicts
WHERE fingerprint != ''
GROUP BY tenant, minute, fingerprint;
