-- One row per report received on the MX listener, whatever it was: mailbox is
-- the address kind it was sent to (bounce, fbl, dmarc), class what the
-- feedback worker found (dsn, arf, dmarc, autoreply, unparsed). Unparsed
-- reports are kept on the dead-letter stream (subject
-- outflow.dead.feedback-unparsed) with error saying why; forged = 1 when the
-- VERP token's HMAC did not verify. msg_id is the report's own id.
CREATE TABLE IF NOT EXISTS feedback_reports
(
    event_id    String,
    time        DateTime,
    tenant      {{lc "String"}},
    msg_id      String,
    mailbox     {{lc "String"}},
    class       {{lc "String"}},
    attribution {{lc "String"}},
    forged      UInt8,
    size        UInt64,
    error       String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, msg_id, event_id);
