-- One row per feedback-loop complaint (an RFC 5965 ARF report received on the
-- MX listener), written from `complaint` events by the feedback worker.
-- time is when the report was received (identical in every copy of the event);
-- arrival is when the complained-about message reached the receiver, if the
-- report says (1970-01-01 00:00:00 otherwise). rcpt is '' when the receiver
-- redacted it. Deduplicated like bounces.
CREATE TABLE IF NOT EXISTS complaints
(
    event_id      String,
    time          DateTime,
    tenant        {{lc "String"}},
    msg_id        String,
    rcpt          String,
    feedback_type {{lc "String"}},
    user_agent    String,
    reporting_mta String,
    source_ip     String,
    message_id    String,
    feedback_id   String,
    arrival       DateTime,
    attribution   {{lc "String"}},
    report_id     String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, msg_id, event_id);
