-- Per-tenant per-minute rollups, filled by the materialized views of 0005
-- (and later files for bounces, complaints and suppressions), read by the
-- reputation loop (pkg/reputation) instead of the raw rows.
--
-- SummingMergeTree: each view inserts rows carrying only its own counters
-- (the others are 0), and merges add rows of the same (tenant, minute). Until
-- a merge has run several rows may share a key, so always read with
-- sum(...) ... GROUP BY, never a bare SELECT. The counts are exact because
-- the loader inserts each event once (Store.Present before every insert):
-- a view sees every inserted block, so an event inserted twice would count
-- twice here even though the raw table collapses it.
--
-- Columns, all per tenant and minute:
--   messages      routed messages (messages table, by received time)
--   rcpts         their recipients
--   verdicts      classifier verdicts; clean/suspect/spam/malicious by label
--   attempts      recipient delivery attempts (deliveries rows)
--   delivered, deferred, bounced, expired: attempts by outcome
--   hard_bounces  permanent failures: a 5xx at delivery, or an async hard bounce
--   soft_bounces  final failures without a 5xx (expired, last 4xx), async soft
--   blocked       failed attempts whose reply names a blocklist or reputation
--   complaints    feedback-loop complaints
--   suppressed    recipients dropped because they are on the suppression list
CREATE TABLE IF NOT EXISTS tenant_minute
(
    tenant       {{lc "String"}},
    minute       DateTime,
    messages     UInt64,
    rcpts        UInt64,
    verdicts     UInt64,
    clean        UInt64,
    suspect      UInt64,
    spam         UInt64,
    malicious    UInt64,
    attempts     UInt64,
    delivered    UInt64,
    deferred     UInt64,
    bounced      UInt64,
    expired      UInt64,
    hard_bounces UInt64,
    soft_bounces UInt64,
    blocked      UInt64,
    complaints   UInt64,
    suppressed   UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, minute)
{{ttl "minute" .RollupRetentionDays}};

-- Verdicts per tenant, minute and content fingerprint: the share of a
-- tenant's mail that is one identical content (max over fingerprints of
-- messages / all), and the number of distinct contents. Empty fingerprints
-- are left out.
CREATE TABLE IF NOT EXISTS tenant_minute_fingerprints
(
    tenant      {{lc "String"}},
    minute      DateTime,
    fingerprint String,
    messages    UInt64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, minute, fingerprint)
{{ttl "minute" .RollupRetentionDays}};
