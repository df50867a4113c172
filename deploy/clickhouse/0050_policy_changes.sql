-- One row per tenant state change made by the reputation loop
-- (services/analytics/loop.go): when, which tenant, from and to which state,
-- the rule and window that decided it ("recovered" for a move to a milder
-- state), a readable reason, and every figure of every window at that moment
-- as JSON (keys "<figure>_<window>", e.g. "hard_bounce_rate_15m0s"; read
-- them with visitParamExtractFloat). change_id is the tenant and the
-- tenant-policy KV revision the change wrote, so a row written twice (a
-- retried insert) collapses.
CREATE TABLE IF NOT EXISTS policy_changes
(
    change_id      String,
    time           DateTime,
    tenant         {{lc "String"}},
    from_state     {{lc "String"}},
    to_state       {{lc "String"}},
    rule           {{lc "String"}},
    reason         String,
    window_seconds UInt32,
    figures        String,
    by             {{lc "String"}}
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(time)
ORDER BY (tenant, time, change_id);
