-- Per-IP health: one row per backoff action the sender took toward a
-- destination site (`shaping` events: a source IP suspended, throttled or
-- taken out of rotation there, or the whole site suspended when source_ip is
-- empty) and per DNSBL listing change of a pool address (`dnsbl` events).
-- With deliveries (per source IP and site) and messages (pool and route
-- reason per message) this answers why an address carried less mail.
-- tenant and msg_id are empty: these events belong to the platform.
CREATE TABLE IF NOT EXISTS ip_events
(
    event_id  String,
    time      DateTime,
    tenant    String,
    msg_id    String,
    kind      {{lc "String"}},
    source_ip String,
    site      {{lc "String"}},
    rule      String,
    action    {{lc "String"}},
    until     DateTime,
    zone      String,
    listed    UInt8,
    detail    String,
    sender    String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (kind, source_ip, time, event_id);

{{if and .TTL (gt .RetentionDays 0)}}
ALTER TABLE ip_events MODIFY {{ttl "time" .RetentionDays}};
{{end}}
