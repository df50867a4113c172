-- One row per classifier verdict, written from `verdict` events. Kept apart
-- from messages because a verdict exists before (and even without) routing, and
-- a reclassified message has several.
CREATE TABLE IF NOT EXISTS verdicts
(
    event_id       String,
    time           DateTime,
    tenant         String,
    msg_id         String,
    score          Float64,
    label          String,
    symbols        Array(String),
    symbol_weights Array(Float64),
    fingerprint    String,
    model          String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, msg_id, event_id);
