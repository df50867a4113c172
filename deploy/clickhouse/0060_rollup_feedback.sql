-- Rollups of the feedback tables (0020-0023) into tenant_minute: async
-- bounces (by hard/soft), complaints and suppressed recipients, per tenant
-- and minute of the row's time. Reports that could not be attributed to a
-- tenant (tenant '') are left out. Complaints count the feedback types that
-- mean "this is unwanted" (abuse, fraud, virus, other or none given), not
-- not-spam, opt-out or auth-failure reports. Like 0005, every view names all
-- of tenant_minute's counters (18.16 wants them), the others as 0.

CREATE MATERIALIZED VIEW IF NOT EXISTS tenant_minute_bounces_mv TO tenant_minute AS
SELECT
    tenant,
    toStartOfMinute(time) AS minute,
    countIf(hard = 1) AS hard_bounces,
    countIf(hard = 0) AS soft_bounces{{zeros "hard_bounces" "soft_bounces"}}
FROM bounces
WHERE tenant != ''
GROUP BY tenant, minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS tenant_minute_complaints_mv TO tenant_minute AS
SELECT
    tenant,
    toStartOfMinute(time) AS minute,
    count() AS complaints{{zeros "complaints"}}
FROM complaints
WHERE tenant != '' AND feedback_type IN ('abuse', 'fraud', 'virus', 'other', '')
GROUP BY tenant, minute;

CREATE MATERIALIZED VIEW IF NOT EXISTS tenant_minute_suppressions_mv TO tenant_minute AS
SELECT
    tenant,
    toStartOfMinute(time) AS minute,
    count() AS suppressed{{zeros "suppressed"}}
FROM suppressions
WHERE tenant != ''
GROUP BY tenant, minute;
