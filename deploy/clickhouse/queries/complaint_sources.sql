-- Complaint sources.
-- Which tenants draw complaints, from which receivers' feedback loops, about
-- mail sent from which of our IPs.
-- From the complaints of the last `hours` hours (ARF reports received on the
-- MX listener), per tenant, reporting MTA (the mailbox provider's feedback
-- loop), our source IP named in the report and feedback type: how many
-- complaints, from how many distinct recipients, about how many messages,
-- and the latest. Tenant '' is reports that could not be attributed.
-- param hours UInt32: look-back in hours, e.g. 168
SELECT
    tenant,
    reporting_mta,
    source_ip,
    feedback_type,
    count() AS complaints,
    uniqExact(rcpt) AS recipients,
    uniqExact(msg_id) AS messages,
    max(time) AS latest
FROM complaints FINAL
WHERE time >= now() - {hours:UInt32} * 3600
GROUP BY tenant, reporting_mta, source_ip, feedback_type
ORDER BY complaints DESC, tenant
LIMIT 200;
