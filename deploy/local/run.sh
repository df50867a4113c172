#!/usr/bin/env bash
# make run: start a private ClickHouse with its data under ./.data/clickhouse
# (installing it from Debian when missing), then every Outflow role in the
# foreground with deploy/local/outflow.yaml. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA="$PWD/.data"
mkdir -p "$DATA/clickhouse/tmp" "$DATA/clickhouse/uf" "$DATA/clickhouse/fs" "$DATA/sink"

if ! command -v clickhouse-server >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing ClickHouse from Debian packages..."
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q clickhouse-server clickhouse-client
  else
    echo "ClickHouse is missing. On Debian/Ubuntu run as root:" >&2
    echo "  apt-get install clickhouse-server clickhouse-client" >&2
    echo "Elsewhere install ClickHouse (https://clickhouse.com/docs/en/install) or point" >&2
    echo "analytics.clickhouse.addr in deploy/local/outflow.yaml at a running server." >&2
    exit 1
  fi
fi

ch_pid=""
if (exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null; then
  echo "a ClickHouse (or something) already listens on 127.0.0.1:9000; using it"
else
  clickhouse-server --config-file=/etc/clickhouse-server/config.xml -- \
    --listen_host=127.0.0.1 --tcp_port=9000 --http_port=8123 --interserver_http_port=9009 \
    --path="$DATA/clickhouse/" --tmp_path="$DATA/clickhouse/tmp/" \
    --user_files_path="$DATA/clickhouse/uf/" --format_schema_path="$DATA/clickhouse/fs/" \
    --logger.log="$DATA/clickhouse/server.log" --logger.errorlog="$DATA/clickhouse/error.log" \
    >/dev/null 2>&1 &
  ch_pid=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/9000) 2>/dev/null && break
    sleep 0.1
  done
  echo "ClickHouse started (pid $ch_pid, data in .data/clickhouse)"
fi

cleanup() {
  [ -n "$outflow_pid" ] && kill -TERM "$outflow_pid" 2>/dev/null && wait "$outflow_pid" 2>/dev/null
  [ -n "$ch_pid" ] && kill -TERM "$ch_pid" 2>/dev/null && wait "$ch_pid" 2>/dev/null
  true
}
outflow_pid=""
trap cleanup EXIT INT TERM
bin/outflow all -config deploy/local/outflow.yaml &
outflow_pid=$!
wait "$outflow_pid"
