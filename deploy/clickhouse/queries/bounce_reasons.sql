-- Bounce reasons by destination domain.
-- Why recipients at each domain were refused, permanently or for now, at
-- delivery or later by DSN.
-- From the last `hours` hours: every failed delivery attempt (deferred,
-- bounced, expired) and every asynchronous bounce, grouped by recipient
-- domain, where it was seen (delivery: the SMTP reply; dsn: a bounce report),
-- outcome, reason (Sisimai's vocabulary: userunknown, mailboxfull, blocked,
-- spamdetected, ...), reply code and enhanced status, with how many
-- recipients and tenants met it and one example reply.
-- param hours UInt32: look-back in hours, e.g. 24
SELECT
    rcpt_domain,
    seen,
    outcome,
    reason,
    reply_code,
    enhanced,
    count() AS recipients,
    uniqExact(tenant) AS tenants,
    any(substring(reply, 1, 100)) AS example
FROM
(
    SELECT rcpt_domain, 'delivery' AS seen, outcome, reason, reply_code, enhanced, tenant, reply_text AS reply
    FROM deliveries FINAL
    WHERE time >= now() - {hours:UInt32} * 3600 AND outcome != 'delivered'
    UNION ALL
    SELECT rcpt_domain, 'dsn' AS seen, if(hard = 1, 'hard bounce', 'soft bounce') AS outcome, reason, reply_code,
        status AS enhanced, tenant, diagnostic AS reply
    FROM bounces FINAL
    WHERE time >= now() - {hours:UInt32} * 3600
)
GROUP BY rcpt_domain, seen, outcome, reason, reply_code, enhanced
ORDER BY rcpt_domain, recipients DESC
LIMIT 500;
