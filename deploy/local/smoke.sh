#!/usr/bin/env bash
# Smoke test of `make run`: start the dev pipeline, submit one message with
# swaks as a tenant would, and check that it was delivered from the shared
# pool's address into .data/sink and recorded in ClickHouse. Exits non-zero
# on the first step that fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v swaks >/dev/null || { echo "smoke: swaks is missing (apt-get install swaks)" >&2; exit 1; }

make -s build
mkdir -p .data
log=.data/smoke.log
deploy/local/run.sh >"$log" 2>&1 &
run_pid=$!
trap 'kill -TERM $run_pid 2>/dev/null; wait $run_pid 2>/dev/null || true' EXIT

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  for _ in $(seq $((secs * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "smoke: timed out waiting for $what; last lines of $log:" >&2
  tail -20 "$log" >&2
  return 1
}

wait_for 60 "submission port 127.0.0.1:2525" bash -c 'exec 3<>/dev/tcp/127.0.0.1/2525'
# Exactly the README's command; its Message-Id identifies the message.
swaks --server 127.0.0.1:2525 --auth PLAIN --au demo --ap demo-password \
      --from a@demo.example --to b@example.net >.data/smoke-swaks.log 2>&1 ||
  { echo "smoke: swaks failed:" >&2; cat .data/smoke-swaks.log >&2; exit 1; }
grep -q '^<-  250 2.0.0 OK: queued' .data/smoke-swaks.log
mid=$(sed -n 's/^ -> Message-Id: <\(.*\)>.*/\1/p' .data/smoke-swaks.log | head -1)
[ -n "$mid" ] || { echo "smoke: no Message-Id in swaks' transcript" >&2; exit 1; }
token=$mid
echo "smoke: swaks got 250 for <$mid>"

wait_for 30 "the message in .data/sink" grep -rlq "$token" .data/sink
file=$(grep -rl "$token" .data/sink | head -1)
grep -q '\[127.0.0.2\]' "$file" || { echo "smoke: $file was not sent from 127.0.0.2:" >&2; head -20 "$file" >&2; exit 1; }
echo "smoke: delivered to $file from 127.0.0.2"

q() { clickhouse-client --port 9000 -q "$1" 2>/dev/null; }
wait_for 30 "outflow.messages row" bash -c "[ \"\$(clickhouse-client --port 9000 -q \"SELECT count() FROM outflow.messages WHERE message_id = '$mid'\")\" -ge 1 ]"
msg_id=$(q "SELECT msg_id FROM outflow.messages WHERE message_id = '$mid' LIMIT 1")
wait_for 30 "outflow.deliveries row" bash -c "[ \"\$(clickhouse-client --port 9000 -q \"SELECT count() FROM outflow.deliveries WHERE msg_id = '$msg_id' AND outcome = 'delivered'\")\" -ge 1 ]"
echo "smoke: ClickHouse has the message ($msg_id) and its delivery:"
q "SELECT tenant, pool, label, score FROM outflow.messages WHERE msg_id = '$msg_id' FORMAT TSV"
q "SELECT rcpt, source_ip, reply_code, outcome FROM outflow.deliveries WHERE msg_id = '$msg_id' FORMAT TSV"
echo "smoke: ok"
