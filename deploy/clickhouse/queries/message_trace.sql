-- Message trace: everything Outflow holds about one message.
-- Every row about the message, in time order: its verdicts, reception and
-- routing decision, every delivery attempt per recipient, recipients dropped
-- as suppressed, asynchronous bounces and complaints. The id is our message
-- id (msg_id) or the RFC 5322 Message-ID, with or without angle brackets.
-- `outflow ctl trace ID` prints it.
-- param id String: msg_id or Message-ID
SELECT time, msg_id, step, detail
FROM
(
    SELECT time, msg_id, 'verdict' AS step,
        concat('label=', label, ' score=', toString(round(score, 2)), ' model=', model,
            ' fingerprint=', fingerprint, ' symbols=', arrayStringConcat(symbols, ',')) AS detail
    FROM verdicts FINAL
    WHERE msg_id IN (SELECT msg_id FROM messages WHERE message_id IN ({id:String}, concat('<', {id:String}, '>')))
        OR msg_id = {id:String}
    UNION ALL
    SELECT received AS time, msg_id, 'received' AS step,
        concat('tenant=', tenant, ' message-id=', message_id, ' from-domain=', from_domain,
            ' size=', toString(size), ' rcpts=', arrayStringConcat(rcpts, ',')) AS detail
    FROM messages FINAL
    WHERE msg_id IN (SELECT msg_id FROM messages WHERE message_id IN ({id:String}, concat('<', {id:String}, '>')))
        OR msg_id = {id:String}
    UNION ALL
    SELECT routed AS time, msg_id, 'routed' AS step,
        concat('pool=', pool, ' reason=', reason, ' label=', label) AS detail
    FROM messages FINAL
    WHERE msg_id IN (SELECT msg_id FROM messages WHERE message_id IN ({id:String}, concat('<', {id:String}, '>')))
        OR msg_id = {id:String}
    UNION ALL
    SELECT time, msg_id, 'delivery' AS step,
        concat(rcpt, ' attempt ', toString(attempt), ': ', outcome, if(reason = '', '', concat(' (', reason, ')')),
            ' ', toString(reply_code), if(enhanced = '', '', concat(' ', enhanced)), ' ', reply_text,
            ' [mx ', mx, ' from ', source_ip, ' pool ', pool, if(tls = 1, ' tls', ''), ', ',
            toString(duration_ms), ' ms', if(next_attempt > toDateTime(0), concat(', next ', toString(next_attempt)), ''), ']') AS detail
    FROM deliveries FINAL
    WHERE msg_id IN (SELECT msg_id FROM messages WHERE message_id IN ({id:String}, concat('<', {id:String}, '>')))
        OR msg_id = {id:String}
    UNION ALL
    SELECT time, msg_id, 'suppressed' AS step,
        concat(rcpt, ' dropped: on the suppression list since ', toString(since), ' (', source, ' ', reason, ')') AS detail
    FROM suppressions FINAL
    WHERE msg_id IN (SELECT msg_id FROM messages WHERE message_id IN ({id:String}, concat('<', {id:String}, '>')))
        OR msg_id = {id:String}
    UNION ALL
    SELECT time, msg_id, 'bounce' AS step,
        concat(rcpt, ' ', if(hard = 1, 'hard', 'soft'), ' bounce ', status, ' (', reason, ') ', diagnostic,
            ' [remote ', remote_mta, ', by ', attribution, ']') AS detail
    FROM bounces FINAL
    WHERE msg_id IN (SELECT msg_id FROM messages WHERE message_id IN ({id:String}, concat('<', {id:String}, '>')))
        OR msg_id = {id:String}
    UNION ALL
    SELECT time, msg_id, 'complaint' AS step,
        concat(feedback_type, ' from ', if(rcpt = '', '(redacted)', rcpt), ' via ', reporting_mta,
            if(user_agent = '', '', concat(' (', user_agent, ')')), ' [by ', attribution, ']') AS detail
    FROM complaints FINAL
    WHERE msg_id IN (SELECT msg_id FROM messages WHERE message_id IN ({id:String}, concat('<', {id:String}, '>')))
        OR msg_id = {id:String}
)
ORDER BY time, step;
