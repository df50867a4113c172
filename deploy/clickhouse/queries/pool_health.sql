-- Pool health.
-- How each source IP fares at each destination site.
-- From the deliveries of the last `hours` hours, per pool, source IP and
-- destination site: recipient attempts and the shares delivered, deferred,
-- bounced and blocked (reason blocked or spamdetected, or a reply naming a
-- blocklist or reputation). The site is the shaping site the sender recorded
-- (gmail, microsoft, ...) or, when there is none, the MX host's registered
-- domain (gmail-smtp-in.l.google.com -> google.com) or its IP. A source IP
-- whose block or deferral share stands out at one site is the one to look at.
-- param hours UInt32: look-back in hours, e.g. 24
SELECT
    pool,
    source_ip,
    destination AS site,
    count() AS attempts,
    round(countIf(outcome = 'delivered') / count() * 100, 2) AS delivered_pct,
    round(countIf(outcome = 'deferred') / count() * 100, 2) AS deferred_pct,
    round(countIf(outcome IN ('bounced', 'expired')) / count() * 100, 2) AS bounced_pct,
    round(countIf(outcome != 'delivered' AND (reason IN ('blocked', 'spamdetected')
        OR match(lower(reply_text), 'block ?list|black ?list|\\bblocked\\b|\\blisted\\b|spamhaus|spamcop|barracuda|dnsbl|\\brbl\\b|reputation')))
        / count() * 100, 2) AS blocked_pct
FROM
(
    SELECT
        pool, source_ip, outcome, reason, reply_text,
        domain(concat('http://', mx)) AS host,
        if(site != '', site, if(match(host, '^[0-9.]+$'), host, cutToFirstSignificantSubdomain(concat('http://', host)))) AS destination
    FROM deliveries FINAL
    WHERE time >= now() - {hours:UInt32} * 3600
)
GROUP BY pool, source_ip, destination
ORDER BY pool, source_ip, attempts DESC;
