-- Retention of the feedback tables, like the raw event tables in 0006
-- (analytics.clickhouse.retention_days), on servers with TTL (19.6 and later).
-- On 18.16 this file renders to no statement.
{{if and .TTL (gt .RetentionDays 0)}}
ALTER TABLE bounces MODIFY {{ttl "time" .RetentionDays}};
ALTER TABLE complaints MODIFY {{ttl "time" .RetentionDays}};
ALTER TABLE dmarc_reports MODIFY {{ttl "time" .RetentionDays}};
ALTER TABLE suppressions MODIFY {{ttl "time" .RetentionDays}};
ALTER TABLE feedback_reports MODIFY {{ttl "time" .RetentionDays}};
{{end}}
