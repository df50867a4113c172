-- Retention of the feedback tables (0020-0024), as 0006 does for the first
-- raw tables: a TTL of analytics.clickhouse.retention_days on servers with
-- TTL (19.6 and later), nothing on older ones.
{{if and .TTL (gt .RetentionDays 0)}}
ALTER TABLE bounces MODIFY {{ttl "time" .RetentionDays}};
ALTER TABLE complaints MODIFY {{ttl "time" .RetentionDays}};
ALTER TABLE dmarc_reports MODIFY {{ttl "time" .RetentionDays}};
ALTER TABLE suppressions MODIFY {{ttl "time" .RetentionDays}};
ALTER TABLE feedback_reports MODIFY {{ttl "time" .RetentionDays}};
{{end}}
