-- Retention of the raw event tables (analytics.clickhouse.retention_days),
-- on servers with TTL (19.6 and later). On older servers (18.16) this file
-- renders to no statement and rows are kept until dropped by hand
-- (ALTER TABLE ... DROP PARTITION, one partition per month).
{{if and .TTL (gt .RetentionDays 0)}}
ALTER TABLE messages MODIFY {{ttl "received" .RetentionDays}};
ALTER TABLE deliveries MODIFY {{ttl "time" .RetentionDays}};
ALTER TABLE verdicts MODIFY {{ttl "time" .RetentionDays}};
{{end}}
