-- Tenant abuse leaderboard.
-- The tenants whose mail looks worst right now.
-- From the per-minute rollups (cheap over any span). For each tenant with at
-- least min_messages messages in the last `hours` hours: volume, spam-verdict
-- ratio, hard-bounce rate (per recipient with a final outcome), complaint rate
-- (per delivered recipient), block rate (attempts refused naming a blocklist
-- or reputation) and the share of its most common content. Ranked by the
-- worst of those rates relative to the thresholds the reputation loop's
-- defaults come from (spam 0.3 %, hard bounces 5 %, complaints 0.1 %,
-- blocks 5 %): a score of 1 means one figure is at its threshold.
-- param hours UInt32: look-back in hours, e.g. 24
-- param min_messages UInt64: volume floor, e.g. 100
SELECT
    tenant,
    messages,
    round(spam_ratio * 100, 2) AS spam_pct,
    round(hard_bounce_rate * 100, 2) AS hard_bounce_pct,
    round(complaint_rate * 100, 3) AS complaint_pct,
    round(block_rate * 100, 2) AS block_pct,
    -- 18.16's greatest takes two arguments.
    round(greatest(greatest(spam_ratio / 0.003, hard_bounce_rate / 0.05), greatest(complaint_rate / 0.001, block_rate / 0.05)), 2) AS score
FROM
(
    SELECT
        tenant,
        sum(messages) AS messages,
        (sum(spam) + sum(malicious)) / greatest(sum(verdicts), 1) AS spam_ratio,
        sum(hard_bounces) / greatest(sum(delivered) + sum(bounced) + sum(expired), 1) AS hard_bounce_rate,
        sum(complaints) / greatest(sum(delivered), 1) AS complaint_rate,
        sum(blocked) / greatest(sum(attempts), 1) AS block_rate
    FROM tenant_minute
    WHERE minute >= now() - {hours:UInt32} * 3600
    GROUP BY tenant
    HAVING messages >= {min_messages:UInt64}
)
ORDER BY score DESC, messages DESC, tenant
LIMIT 50;
