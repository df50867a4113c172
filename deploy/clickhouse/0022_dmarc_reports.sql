-- One row per record of a DMARC aggregate report (RFC 7489 7.2): for one
-- source IP and header From domain over the report's period (period_begin,
-- period_end), how many messages, the disposition and the policy-evaluated (aligned) DKIM and SPF
-- results. Analysts check here whether the pools' IPs pass:
--   SELECT source_ip, sum(messages), sumIf(messages, dkim = 'pass' OR spf = 'pass')
--   FROM dmarc_reports FINAL GROUP BY source_ip
-- msg_id is the id the MX listener gave the report (all rows of one report
-- share it), record the record's position in the report. tenant is '': a
-- report is about a domain, not a message; join domain with the tenants'
-- domains to see one tenant's.
CREATE TABLE IF NOT EXISTS dmarc_reports
(
    event_id      String,
    time          DateTime,
    tenant        {{lc "String"}},
    msg_id        String,
    record        UInt32,
    org_name      String,
    org_report_id String,
    domain        String,
    period_begin  DateTime,
    period_end    DateTime,
    source_ip     String,
    messages      UInt64,
    header_from   String,
    disposition   {{lc "String"}},
    dkim          {{lc "String"}},
    spf           {{lc "String"}}
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, msg_id, event_id, record);
