-- Delivery outcomes in full (docs/delivery.md "Outcomes and reasons"): the
-- destination site and the MX address, whether the transaction ran over TLS
-- and on a reused connection, the timings of connect, TLS and transactions,
-- and per recipient the failure reason in Sisimai's vocabulary and the bounce
-- kind (hard or soft). Rows written before this migration have the defaults
-- (empty strings, zeros).
ALTER TABLE deliveries
    ADD COLUMN site String,
    ADD COLUMN mx_addr String,
    ADD COLUMN tls UInt8,
    ADD COLUMN reused UInt8,
    ADD COLUMN connect_ms UInt32,
    ADD COLUMN tls_ms UInt32,
    ADD COLUMN txn_ms UInt32,
    ADD COLUMN reason String,
    ADD COLUMN bounce String;
