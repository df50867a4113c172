-- One row per message, written from its `routed` event: who sent it, to whom,
-- the classifier's verdict and the pool the router chose.
--
-- ReplacingMergeTree keyed by (tenant, msg_id, event_id): a routed event that
-- reaches ClickHouse twice (JetStream redelivery after a lost ack) collapses to
-- one row at merge time. Partitioned by the time the message was received,
-- which every copy of the event carries unchanged, so that duplicates always
-- meet in the same partition. Until a merge has run, count with FINAL or
-- uniqExact(msg_id) (docs/analytics.md).
CREATE TABLE IF NOT EXISTS messages
(
    event_id       String,
    tenant         String,
    msg_id         String,
    message_id     String,
    from_domain    String,
    rcpts          Array(String),
    rcpt_count     UInt32,
    size           UInt64,
    score          Float64,
    label          String,
    symbols        Array(String),
    symbol_weights Array(Float64),
    fingerprint    String,
    model          String,
    pool           String,
    reason         String,
    received       DateTime,
    routed         DateTime
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(received)
ORDER BY (tenant, msg_id, event_id);
