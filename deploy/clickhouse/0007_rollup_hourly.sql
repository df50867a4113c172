-- Hourly message volume per tenant: what the reputation loop's 7-day
-- baseline reads (168 rows per tenant instead of 10,080 minutes). Filled by
-- its own view on messages, like tenant_minute's messages counter: 18.16 does
-- not run a view on rows another view inserts, so it cannot be fed from
-- tenant_minute. Exact for the same reason as tenant_minute (the loader
-- inserts each event once).
CREATE TABLE IF NOT EXISTS tenant_hour
(
    tenant   {{lc "String"}},
    hour     DateTime,
    messages UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant, hour)
{{ttl "hour" .RollupRetentionDays}};

CREATE MATERIALIZED VIEW IF NOT EXISTS tenant_hour_mv TO tenant_hour AS
SELECT
    tenant,
    toStartOfHour(received) AS hour,
    count() AS messages
FROM messages
GROUP BY tenant, hour;

-- The history so far, from the minute rollup. Migrations run before the
-- role inserts, so no block reaches both the new view and this copy.
INSERT INTO tenant_hour (tenant, hour, messages)
SELECT tenant, toStartOfHour(minute) AS hour, sum(messages) AS messages
FROM tenant_minute
GROUP BY tenant, hour
HAVING messages > 0;
