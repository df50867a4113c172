-- One row per recipient the router dropped because it is on the tenant's
-- suppression list, written from `suppressed` events. time is when the
-- message was received (identical in every copy of the event); reason and
-- source come from the suppression entry (source: bounce, complaint,
-- manual), since is when the entry was made.
CREATE TABLE IF NOT EXISTS suppressions
(
    event_id String,
    time     DateTime,
    tenant   {{lc "String"}},
    msg_id   String,
    rcpt     String,
    reason   {{lc "String"}},
    source   {{lc "String"}},
    since    DateTime
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, msg_id, event_id);
