-- One row per recipient per delivery attempt, written from `delivery` events:
-- where the attempt went (MX, source IP, pool) and what the receiver answered.
--
-- A delivery event carries every recipient of one attempt to one domain, so the
-- key is (event_id, rcpt) within a tenant and message; a redelivered event
-- collapses at merge time. Event ids name the attempt, so distinct attempts
-- never collapse. Count with FINAL or uniqExact(event_id, rcpt) until merged.
-- next_attempt is 1970-01-01 00:00:00 when no further attempt is planned.
CREATE TABLE IF NOT EXISTS deliveries
(
    event_id     String,
    time         DateTime,
    tenant       String,
    msg_id       String,
    rcpt         String,
    rcpt_domain  String,
    pool         String,
    mx           String,
    source_ip    String,
    attempt      UInt16,
    reply_code   UInt16,
    enhanced     String,
    reply_text   String,
    outcome      String,
    duration_ms  UInt32,
    next_attempt DateTime
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, msg_id, event_id, rcpt);
