-- One row per failed recipient of an asynchronous bounce (a DSN received on
-- the MX listener), written from `bounce` events by the feedback worker.
--
-- time is when the MX listener received the report, the same in every copy of
-- the event, so that a reprocessed report collapses at merge time
-- (ReplacingMergeTree by (tenant, msg_id, event_id)); count with FINAL or
-- uniqExact(event_id) until merged. msg_id is the bounced message's platform
-- id and tenant its tenant, as attributed (attribution: verp, trace,
-- feedback-id); a bounce that could not be attributed has tenant '' and
-- msg_id ''. reason is Sisimai's vocabulary; hard = 1 suppresses the
-- recipient.
CREATE TABLE IF NOT EXISTS bounces
(
    event_id    String,
    time        DateTime,
    tenant      {{lc "String"}},
    msg_id      String,
    rcpt        String,
    rcpt_domain String,
    status      String,
    reply_code  UInt16,
    diagnostic  String,
    remote_mta  String,
    reason      {{lc "String"}},
    hard        UInt8,
    attribution {{lc "String"}},
    report_id   String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, msg_id, event_id);
