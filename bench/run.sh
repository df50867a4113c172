#!/usr/bin/env bash
# make bench: Outflow against Postfix on the same machine, in the same run,
# with load and receiver tools neither side wrote (issue 7; docs/performance.md).
#
# Load: Postfix's smtp-source, N messages of S bytes over C sessions. Receiver:
# Postfix's smtp-sink on a free loopback port; the count is what the sink
# reports (its -c counter), never what the load tool claims. Systems run one
# after another, each from a clean temp directory:
#   direct   smtp-source -> smtp-sink (the loopback ceiling)
#   postfix  a private Postfix instance relaying everything to the sink
#   pf+dkim  the same with OpenDKIM (RSA-2048, relaxed/relaxed) as a milter
#   outflow  outflow all, every feature on (fsync spool, classifier, router,
#            RSA-2048 DKIM, events into a private ClickHouse)
#   of-nodkim  the same without DKIM
# CPU seconds are the system's processes only (a cpuacct cgroup holding the
# system; smtp-source and smtp-sink stay outside it). Peak RSS is the peak of
# the summed RSS of the cgroup's processes, sampled every 100 ms.
#
# Then the latency mode (LATENCY=1, the default; LATENCY=0 skips it): postfix,
# pf+dkim and outflow each start afresh, configured exactly as above except
# that they relay to bench/latency's own receiver instead of the sink. The
# tool submits LAT_N messages (default 20 s worth, at most 2000) paced at
# half the system's measured msgs/s, over C sessions, and times each from the
# start of its submission to its arrival (a sequence header in every
# message); accepted messages that never arrive are counted, not timed.
#
# Environment: N (10000), S (10240), C (20), SYSTEMS (all five), KEEP=1 keeps
# the temp directory, OUT (bench/out) for logs and the table, PROFILE=1 saves
# a goroutine dump, a 10 s CPU profile and a 4 s execution trace of each
# Outflow run in OUT, OUTFLOW_BIN (a binary to run instead of bin/outflow,
# to compare two builds interleaved), OUTFLOW_STORE (a directory on
# another file system for Outflow's JetStream store, e.g. /dev/shm, to see
# what the spool's fsyncs cost on this machine's disk; default: the temp
# directory),
# LATENCY (1), LAT_N, LAT_RATE (a fixed pace instead of half the measured
# msgs/s, to compare two builds at the same load), LAT_WARMUP (2s of the
# same load before the timed messages, for every system; their p99 is the
# table's wu_p99 column; 0s: none), CLASSIFIER_WORKERS,
# ROUTER_WORKERS, SENDER_WORKERS, EVENT_LINGER, ANALYTICS_FLUSH (override
# Outflow's defaults, to compare settings). SOAK=1 (make soak) runs the soak mode instead (see
# soak below): SOAK_RATE (default half of a SOAK_N=2000 throughput run),
# SOAK_SECONDS (600), SOAK_EVERY (15), SOAK_WARMUP (240).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${N:-10000} S=${S:-10240} C=${C:-20}
SYSTEMS=${SYSTEMS:-"direct postfix pf+dkim outflow of-nodkim"}
LATENCY=${LATENCY:-1} LAT_N=${LAT_N:-} LAT_WARMUP=${LAT_WARMUP:-2s}
OUT=${OUT:-$ROOT/bench/out}
mkdir -p "$OUT"
[ "$(id -u)" = 0 ] || { echo "bench: needs root (private Postfix master, cgroups)" >&2; exit 1; }

need() { command -v "$1" >/dev/null || {
  echo "installing $2 from Debian..."
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; }; }
need smtp-source postfix
need opendkim opendkim
need opendkim-genkey opendkim-tools
need clickhouse-server clickhouse-server
# Outflow's RSA signatures go through libcrypto when its headers are there
# (Makefile, pkg/dkimsign/openssl.go), as OpenDKIM's do.
[ -f /usr/include/openssl/evp.h ] || { echo "installing libssl-dev from Debian..."
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q libssl-dev >/dev/null; }

TMP=$(mktemp -d /tmp/outflow-bench.XXXXXX); chmod 755 "$TMP"
CG=/sys/fs/cgroup/cpuacct/outflow-bench-$$
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  [ -d "$TMP/pf/etc" ] && postfix -c "$TMP/pf/etc" stop >/dev/null 2>&1
  if [ -d "$CG" ]; then
    for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    sleep 0.2; rmdir "$CG" 2>/dev/null
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "kept $TMP${OUTFLOW_STORE:+ (JetStream stores in $OUTFLOW_STORE/outflow-bench-$$-*)}"
  else
    rm -rf "$TMP"
    if [ -n "${OUTFLOW_STORE:-}" ]; then rm -rf "$OUTFLOW_STORE"/outflow-bench-$$-*; fi
  fi
}
trap cleanup EXIT INT TERM
mkdir "$CG"

freeport() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
waitport() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "bench: nothing listens on port $1" >&2; return 1; }
# incg CMD...: run CMD inside the system's cgroup (its children stay there).
# A daemon started in the background goes through `sh -c "$INCG" "$CG" CMD &`
# instead, so that $! is CMD's own pid: a backgrounded shell function runs
# in a subshell, and killing that subshell's pid left CMD running (an idle
# Outflow stayed in the cgroup and counted in the next system's figures).
INCG='echo $$ > "$0/cgroup.procs"; exec "$@"'
incg() { sh -c "$INCG" "$CG" "$@"; }
cgcpu() { awk '{printf "%.2f", $1/1e9}' "$CG/cpuacct.usage"; }
# cgrss and sinkcount run ten times a second during a measurement, on the
# same 2 cores as the system measured: bash builtins and one tail of the
# sink's last record, not a pipeline over its whole output (which grows by
# ~30 bytes a message and cost a few % of a core at the end of a run).
cgrss() { local t=0 p k v _
  while read -r p; do
    { while read -r k v _; do [ "$k" = VmRSS: ] && { t=$((t + v)); break; }; done <"/proc/$p/status"; } 2>/dev/null || true
  done <"$CG/cgroup.procs"; echo $t; }
# smtp-sink -c rewrites one line, "sess=N quit=N mesg=N\r", per message.
sinkcount() { local s; s=$(tail -c 48 "$TMP/sink.out"); s=${s%$'\r'}; s=${s##*mesg=}; s=${s%%[!0-9]*}; echo "${s:-0}"; }

# The sink: fresh per system so its counter starts at 0.
SINKPORT=0
startsink() {
  SINKPORT=$(freeport); : >"$TMP/sink.out"
  smtp-sink -u nobody -c "127.0.0.1:$SINKPORT" 1024 >"$TMP/sink.out" 2>"$TMP/sink.err" &
  SINKPID=$!; pids+=("$SINKPID"); waitport "$SINKPORT"
}
stopsink() { kill -TERM "$SINKPID" 2>/dev/null; wait "$SINKPID" 2>/dev/null || true; }

RESULTS=()
# measure NAME PORT: load the system at PORT, wait for the sink to count N.
measure() {
  local name=$1 port=$2 t0 t1 cpu0 cpu1 peak=0 r got=0 deadline
  echo 0 >"$CG/cpuacct.usage"
  cpu0=$(cgcpu)
  t0=$(date +%s.%N)
  smtp-source -d -c -m "$N" -s "$C" -l "$S" -f bench@demo.example -t rcpt@dest.example \
    "127.0.0.1:$port" >"$OUT/$name.source.log" 2>&1 &
  local src=$!
  deadline=$(( $(date +%s) + 480 ))
  while :; do
    got=$(sinkcount); got=${got:-0}
    r=$(cgrss); [ "$r" -gt "$peak" ] && peak=$r
    [ "$got" -ge "$N" ] && break
    if ! kill -0 "$src" 2>/dev/null && grep -q fatal "$OUT/$name.source.log"; then
      echo "bench: $name: load failed: $(grep fatal "$OUT/$name.source.log" | head -1)" >&2; break; fi
    if [ "$(date +%s)" -gt "$deadline" ]; then echo "bench: $name: timeout, sink has $got of $N" >&2; break; fi
    sleep 0.1
  done
  t1=$(date +%s.%N); cpu1=$(cgcpu)
  wait "$src" || echo "bench: $name: smtp-source exited non-zero (see $OUT/$name.source.log)" >&2
  local wall rate
  wall=$(echo "$t1 - $t0" | bc -l); rate=$(echo "$got / $wall" | bc -l)
  RESULTS+=("$(printf '%-10s %7d %8.2f %9.1f %8.2f %8.1f' "$name" "$got" "$wall" "$rate" "$(echo "$cpu1 - $cpu0" | bc -l)" "$(echo "$peak/1024" | bc -l)")")
  eval "RATE_${name//[^a-z]/_}=$rate"
  echo "  $name: $got/$N delivered in ${wall}s"
}

run_direct() { startsink; measure direct "$SINKPORT"; stopsink; }

# The systems' run_* functions take, last, the loopback port they relay to
# and the function that loads them (measure, or latency).
# A private Postfix: own config, queue and data directories, loopback only,
# everything relayed to RELAYPORT, no local delivery.
# run_postfix NAME MILTER RELAYPORT MEASURE
run_postfix() {
  local name=$1 milter=$2 relay=$3 meas=$4
  local d=$TMP/pf; rm -rf "$d"; mkdir -p "$d/etc" "$d/queue" "$d/data"
  chown postfix "$d/data"; cp /etc/postfix/master.cf "$d/etc/"
  local port; port=$(freeport)
  sed -i "s/^smtp *inet .*/127.0.0.1:$port inet n - y - - smtpd/" "$d/etc/master.cf"
  cat >"$d/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $d/queue
data_directory = $d/data
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = bench.localhost
mydestination =
local_recipient_maps =
local_transport = error:no local delivery
relayhost = [127.0.0.1]:$relay
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtp_tls_security_level = none
smtpd_tls_security_level = none
default_destination_concurrency_limit = 20
multi_instance_enable = no
maillog_file_prefixes = /tmp
maillog_file = $d/maillog
$milter
CF
  incg postfix -c "$d/etc" start >"$OUT/$name.postfix.log" 2>&1
  waitport "$port"
  "$meas" "$name" "$port"
  postfix -c "$d/etc" stop >>"$OUT/$name.postfix.log" 2>&1 || true
  sleep 1
}

# run_pfdkim NAME RELAYPORT MEASURE
run_pfdkim() {
  local name=$1 relay=$2 meas=$3
  local k=$TMP/dkim-$name; rm -rf "$k"; mkdir -p "$k"
  opendkim-genkey -b 2048 -d demo.example -s bench -D "$k"
  chown -R opendkim "$k" 2>/dev/null || true
  local mp; mp=$(freeport)
  cat >"$k/opendkim.conf" <<CF
Syslog no
Mode s
Canonicalization relaxed/relaxed
Domain demo.example
Selector bench
KeyFile $k/bench.private
Socket inet:$mp@127.0.0.1
PidFile $k/opendkim.pid
UserID opendkim
RequireSafeKeys no
CF
  sh -c "$INCG" "$CG" opendkim -f -x "$k/opendkim.conf" >"$OUT/$name.opendkim.log" 2>&1 &
  local dpid=$!; pids+=("$dpid"); waitport "$mp"
  run_postfix "$name" "smtpd_milters = inet:127.0.0.1:$mp
non_smtpd_milters = \$smtpd_milters
milter_default_action = tempfail" "$relay" "$meas"
  kill -TERM "$dpid" 2>/dev/null; wait "$dpid" 2>/dev/null || true
}

# A private ClickHouse for Outflow's events, started once.
CHPORT=0
startch() {
  [ "$CHPORT" != 0 ] && return
  local c=$TMP/ch; mkdir -p "$c/tmp" "$c/uf" "$c/fs"
  CHPORT=$(freeport); local hp ip; hp=$(freeport); ip=$(freeport)
  clickhouse-server --config-file=/etc/clickhouse-server/config.xml -- \
    --listen_host=127.0.0.1 --tcp_port="$CHPORT" --http_port="$hp" --interserver_http_port="$ip" \
    --path="$c/" --tmp_path="$c/tmp/" --user_files_path="$c/uf/" --format_schema_path="$c/fs/" \
    --logger.log="$c/server.log" --logger.errorlog="$c/error.log" >/dev/null 2>&1 &
  pids+=("$!"); waitport "$CHPORT"
}

# run_outflow NAME DKIM RELAYPORT MEASURE
run_outflow() {
  local name=$1 dkim=$2 relay=$3 meas=$4
  startch
  local o=$TMP/$name; rm -rf "$o"; mkdir -p "$o"
  local store=$o/nats
  if [ -n "${OUTFLOW_STORE:-}" ]; then store=$OUTFLOW_STORE/outflow-bench-$$-$name; rm -rf "$store"; fi
  local port np mp; port=$(freeport); np=$(freeport); mp=$(freeport)
  local dk=""
  if [ "$dkim" = 1 ]; then
    openssl genrsa -out "$o/provider.pem" 2048 2>/dev/null; chmod 600 "$o/provider.pem"
    dk="  dkim:
    provider_domain: outflow.localhost
    selector: bench
    key_file: $o/provider.pem"
  fi
  cat >"$o/outflow.yaml" <<CF
log: {level: warn, format: text}
nats:
  url: ""
  embedded: {listen: 127.0.0.1:$np, store_dir: $store, sync_always: true}
${EVENT_LINGER:+  event_linger: $EVENT_LINGER}
pools:
  - name: shared
    purpose: shared
    ips: [{address: 127.0.0.2, ehlo: shared-1.bench.localhost}]
  - name: high-risk
    purpose: high-risk
    ips: [{address: 127.0.0.3, ehlo: risk-1.bench.localhost}]
tenants:
  - id: demo
    domains: [demo.example]
    client_ips: [127.0.0.1/32]
ingest:
  hostname: bench.localhost
  limits: {rate: 0, ramp: 0s, new_daily_cap: 0}   # the bench measures the pipeline, not tenant limits
  listeners:
    - {name: bench, addr: "127.0.0.1:$port", tls: none, client_ip_tenants: true}
sender:
  transports: {"*": "127.0.0.1:$relay"}
  provider_id: bench
${SENDER_WORKERS:+  workers: $SENDER_WORKERS}
$dk
${ROUTER_WORKERS:+router: {workers: $ROUTER_WORKERS\}}
${CLASSIFIER_WORKERS:+classifier: {workers: $CLASSIFIER_WORKERS\}}
analytics:
${ANALYTICS_FLUSH:+  flush_interval: $ANALYTICS_FLUSH}
  clickhouse: {addr: "127.0.0.1:$CHPORT", database: bench_$RANDOM}
  # smtp-source's filler body scores as spam (routed to high-risk, as it
  # should); the reputation loop would then suspend the tenant mid-run.
  reputation: {enabled: false}
metrics: {listen: "127.0.0.1:$mp", pprof: true}
CF
  sh -c "$INCG" "$CG" "${OUTFLOW_BIN:-$ROOT/bin/outflow}" all -config "$o/outflow.yaml" >"$OUT/$name.outflow.log" 2>&1 &
  local opid=$!; pids+=("$opid"); waitport "$port"
  if [ "${PROFILE:-0}" = 1 ]; then
    # A goroutine dump (where the work waits), a CPU profile from the
    # middle of the run and then a 4 s execution trace (go tool trace
    # -pprof=sched|syscall): the dump first, since a fast run ends before
    # the profile does.
    ( sleep 6; curl -s -o "$OUT/$name.goroutines.txt" "http://127.0.0.1:$mp/debug/pprof/goroutine?debug=1"
      curl -s -o "$OUT/$name.cpu.pprof" "http://127.0.0.1:$mp/debug/pprof/profile?seconds=10"
      curl -s -o "$OUT/$name.trace" "http://127.0.0.1:$mp/debug/pprof/trace?seconds=4" ) &
  fi
  "$meas" "$name" "$port"
  kill -TERM "$opid"; wait "$opid" 2>/dev/null || true
}

# throughput RUN_FN ARGS...: the system relaying to a fresh smtp-sink, loaded
# by smtp-source.
throughput() { startsink; "$@" "$SINKPORT" measure; stopsink; }

LATRES=()
LATPORT=0
# latency NAME PORT: bench/latency paces LAT_N messages at half the msgs/s
# the throughput run measured for the system (NAME without -lat) into PORT;
# the system relays them to the tool's receiver on LATPORT.
latency() {
  local name=$1 port=$2 sys=${1%-lat} v rate n line
  v="RATE_${sys//[^a-z]/_}"; rate=$(printf '%.1f' "$(echo "${!v:-0} / 2" | bc -l)")
  rate=${LAT_RATE:-$rate}
  n=${LAT_N:-$(echo "n = $rate * 20; if (n > 2000) n = 2000; if (n < 1) n = 1; scale = 0; n / 1" | bc -l)}
  if [ "$(echo "$rate > 0" | bc)" != 1 ]; then echo "bench: $name: no throughput measured, skipped" >&2; return; fi
  echo "  $name: $n messages at $rate msgs/s after $LAT_WARMUP of warm-up"
  if ! "$TMP/latency" -to "127.0.0.1:$port" -listen "127.0.0.1:$LATPORT" -n "$n" -size "$S" -c "$C" \
      -rate "$rate" -warmup "$LAT_WARMUP" -wait 60s >"$OUT/$name.latency.out" 2>"$OUT/$name.latency.log"; then
    echo "bench: $name: latency tool failed: $(tail -1 "$OUT/$name.latency.log")" >&2
  fi
  line=$(cat "$OUT/$name.latency.out"); echo "  $name: $line"
  kv() { tr ' ' '\n' <<<"$line" | sed -n "s/^$1=//p"; }
  local miss wmiss wp99; miss=$(kv missing) wmiss=$(kv warmup_missing) wp99=$(kv warmup_p99_ms)
  LATRES+=("$(printf '%-10s %7s %7s %5s/%-5s %5s %8s %8s %8s %8s %8s %8s %8s' "$sys" "$rate" "$(kv rate)" \
    "$(kv delivered)" "$(kv accepted)" "$(( ${miss:-0} + ${wmiss:-0} ))" "$(kv p50_ms)" "$(kv p90_ms)" \
    "$(kv p99_ms)" "$(kv max_ms)" "$(kv submit_p50_ms)" "$(kv submit_p99_ms)" "${wp99:--}")")
}
# latphase RUN_FN ARGS...: the system relaying to the latency tool.
latphase() { LATPORT=$(freeport); "$@" "$LATPORT" latency; }

# Soak mode (SOAK=1, make soak; issue 7, docs/performance.md "Soak"): only
# Outflow, configured as above, relaying to bench/latency's receiver, paced
# at SOAK_RATE msgs/s for SOAK_SECONDS. Every SOAK_EVERY seconds it samples
# Outflow's goroutines and HeapInuse (pprof on its metrics listener) and the
# process's VmRSS into OUT/soak.csv, then compares the minute after the
# warm-up (SOAK_WARMUP, 240 s: JetStream's duplicates window fills its
# msg-id map for 2 minutes, and nats-server's block caches and buffer pools
# kept growing to about 4 minutes at 119 msgs/s) with the last minute, and exits non-zero when a
# message went missing or something grew. HeapInuse is read after a forced
# GC (pprof's gc=1), so it is the live heap, not a point on the GC sawtooth
# (between collections it swings up to 2x at GOGC=100).
SOAK=${SOAK:-0} SOAK_RATE=${SOAK_RATE:-} SOAK_SECONDS=${SOAK_SECONDS:-600} SOAK_EVERY=${SOAK_EVERY:-15}
SOAK_N=${SOAK_N:-2000} SOAK_WARMUP=${SOAK_WARMUP:-240} SOAK_RC=0
# soaksample T: one CSV row at T seconds into the run. mp is run_outflow's
# local (bash scoping: soak runs inside it); SOAKPID is outflow's own pid,
# found by its config file (run_outflow's opid is the subshell that ran
# incg, and killing it leaves outflow running: see soakreap).
soaksample() {
  local t=$1 d g h r
  d=$(sed -n 's/.*msg=progress delivered=\([0-9]*\).*/\1/p' "$OUT/$SOAKNAME.latency.log" | tail -1)
  curl -s --max-time 10 -o "$TMP/g.txt" "http://127.0.0.1:$mp/debug/pprof/goroutine?debug=1" || true
  curl -s --max-time 10 -o "$TMP/h.txt" "http://127.0.0.1:$mp/debug/pprof/heap?gc=1&debug=1" || true
  g=$(awk 'NR==1 && /^goroutine profile: total/{print $4}' "$TMP/g.txt" 2>/dev/null)
  h=$(awk '/^# HeapInuse = /{printf "%.1f", $4/1048576}' "$TMP/h.txt" 2>/dev/null)
  r=$(awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$SOAKPID/status" 2>/dev/null || true)
  echo "$t,${d:-0},$g,$h,$r" >>"$OUT/soak.csv"
}
# soakprofiles TAG: heap and goroutine profiles for go tool pprof -diff_base.
soakprofiles() {
  curl -s --max-time 10 -o "$OUT/soak.heap.$1.pprof" "http://127.0.0.1:$mp/debug/pprof/heap" || true
  curl -s --max-time 10 -o "$OUT/soak.goroutine.$1.pprof" "http://127.0.0.1:$mp/debug/pprof/goroutine" || true
}
# soakreap: run_outflow's kill reaches only the subshell that started
# outflow, so the measuring run's outflow would idle on in the cgroup
# through the soak; stop it (SIGTERM, then wait up to 10 s).
soakreap() {
  local p left
  for p in $(cat "$CG/cgroup.procs"); do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 100); do left=$(cat "$CG/cgroup.procs"); [ -z "$left" ] && return; sleep 0.1; done
  echo "bench: soak: still in $CG after SIGTERM: $left" >&2
}
# soak NAME PORT: the load tool runs for SOAK_SECONDS while this samples.
soak() {
  local name=$1 port=$2 t0 t next=0 early=0 late=0 line peak
  SOAKNAME=$name SOAKPID=
  for p in $(cat "$CG/cgroup.procs"); do
    grep -qF "$o/outflow.yaml" "/proc/$p/cmdline" 2>/dev/null && SOAKPID=$p
  done
  [ -n "$SOAKPID" ] || { echo "bench: $name: no outflow process in $CG" >&2; SOAK_RC=2; return; }
  echo "  $name: ${SOAK_SECONDS}s at $SOAK_RATE msgs/s, sampled every ${SOAK_EVERY}s into $OUT/soak.csv"
  "$TMP/latency" -to "127.0.0.1:$port" -listen "127.0.0.1:$LATPORT" -rate "$SOAK_RATE" \
    -duration "${SOAK_SECONDS}s" -progress 1s -size "$S" -c "$C" -wait 120s \
    >"$OUT/$name.latency.out" 2>"$OUT/$name.latency.log" &
  local lpid=$!; pids+=("$lpid")
  echo "t_s,delivered,goroutines,heap_inuse_mib,rss_mib" >"$OUT/soak.csv"
  t0=$(date +%s)
  while kill -0 "$lpid" 2>/dev/null; do
    t=$(( $(date +%s) - t0 ))
    if [ "$t" -ge "$next" ]; then
      soaksample "$t"; next=$(( next + SOAK_EVERY ))
      # Profiles after the first minute's warm-up and near the end of the load.
      [ "$early" = 0 ] && [ "$t" -ge 60 ] && { soakprofiles early; early=1; }
      [ "$late" = 0 ] && [ "$t" -ge $(( SOAK_SECONDS - SOAK_EVERY )) ] && { soakprofiles late; late=1; }
    fi
    sleep 1
  done
  wait "$lpid" || echo "bench: $name: latency tool failed: $(tail -1 "$OUT/$name.latency.log")" >&2
  soaksample "$(( $(date +%s) - t0 ))" # after the drain: what the idle process keeps
  peak=$(awk '/^VmHWM/{printf "%.1f", $2/1024}' "/proc/$SOAKPID/status")
  line=$(cat "$OUT/$name.latency.out")
  {
    echo "soak: ${SOAK_SECONDS}s at $SOAK_RATE msgs/s, S=$S C=$C, $(nproc) CPUs, $(date -u +%FT%TZ)"
    echo "uptime before: $SOAK_UPTIME"
    echo "uptime after:  $(uptime)"
    echo "latency: $line"
    # The last row is the sample after the drain; the others were taken
    # under load. First minute: those at 0 < t <= 60 (t = 0 is before the
    # first message); base: W < t <= W + 60; last: t > SOAK_SECONDS - 60.
    awk -F, -v T="$SOAK_SECONDS" -v W="$SOAK_WARMUP" -v peak="$peak" -v line="$line" '
      NR > 2 && pt > 0 { n++; t[n] = pt; g[n] = pg; h[n] = ph; r[n] = pr }
      NR > 1 { pt = $1; pg = $3; ph = $4; pr = $5 }
      END { dg = pg; dh = ph; dr = pr }
      # avg over the samples at lo < t <= hi.
      function avg(a, lo, hi,   s, c, i) { for (i = 1; i <= n; i++) if (t[i] > lo && t[i] <= hi) { s += a[i]; c++ }
        return c ? s / c : -1 }
      function judge(what, a, tol,   f, b, l, ok) {
        f = avg(a, 0, 60); b = avg(a, W, W + 60); l = avg(a, T - 60, T + 60)
        ok = b > 0 && l <= b * (1 + tol / 100)
        printf "%-11s first minute %7.1f  after warm-up %7.1f  last minute %7.1f  %+6.1f %% (tolerance +%d %%)  %s\n", \
          what, f, b, l, (b > 0 ? (l / b - 1) * 100 : 0), tol, ok ? "ok" : "GREW"
        return ok
      }
      END {
        if (T < W + 120 || n < 8) {
          print "growth: not judged, the run is too short to compare the minute after the warm-up with the last one"
          ok = 1
        } else {
          ok = judge("goroutines", g, 10)
          ok = judge("heap_MiB", h, 20) && ok
          ok = judge("rss_MiB", r, 20) && ok
        }
        rssok = peak < 1024
        printf "peak RSS (VmHWM) %.1f MiB: %s the 1 GiB target\n", peak, rssok ? "under" : "OVER"
        printf "after the drain: goroutines %s, heap %s MiB, rss %s MiB\n", dg, dh, dr
        split(line, kv, " "); for (i in kv) { split(kv[i], p, "="); res[p[1]] = p[2] }
        lost = (res["missing"] != 0 || res["accepted"] == 0)
        printf "messages: accepted %s delivered %s missing %s failed %s; p50 %s ms p99 %s ms\n", \
          res["accepted"], res["delivered"], res["missing"], res["failed"], res["p50_ms"], res["p99_ms"]
        printf "verdict: %s\n", (lost ? "FAIL (messages missing)" : (ok && rssok ? "PASS" : "FAIL (growth or RSS)"))
        exit lost ? 1 : (ok && rssok ? 0 : 3)
      }' "$OUT/soak.csv" || true
  } | tee "$OUT/soak.txt"
  # The verdict, not awk's status: the block above runs in a subshell.
  SOAK_RC=$(awk '/^verdict: PASS/{r = 0} /^verdict: FAIL \(messages/{r = 1} /^verdict: FAIL \(growth/{r = 3}
    END {print (r == "" ? 2 : r)}' "$OUT/soak.txt")
}

make -s build
go build -o "$TMP/latency" ./bench/latency
if [ "$SOAK" = 1 ]; then
  SOAK_UPTIME=$(uptime)
  if [ -z "$SOAK_RATE" ]; then
    # Half load: half of what a short throughput run (SOAK_N messages) of
    # the same Outflow reaches on this machine now.
    N=$SOAK_N; echo "bench: soak: measuring throughput with N=$N"
    throughput run_outflow outflow-pre 1
    soakreap
    SOAK_RATE=$(printf '%.1f' "$(echo "${RATE_outflow_pre:-0} / 2" | bc -l)")
  fi
  LATPORT=$(freeport); run_outflow outflow-soak 1 "$LATPORT" soak
  exit "$SOAK_RC"
fi
echo "bench: N=$N S=$S C=$C, temp $TMP"
for s in $SYSTEMS; do
  case $s in
    direct) run_direct ;;
    postfix) throughput run_postfix postfix "" ;;
    pf+dkim) throughput run_pfdkim pf+dkim ;;
    outflow) throughput run_outflow outflow 1 ;;
    of-nodkim) throughput run_outflow of-nodkim 0 ;;
    *) echo "bench: unknown system $s" >&2; exit 2 ;;
  esac
done

{
  echo "N=$N S=$S C=$C  $(nproc) CPUs  $(date -u +%FT%TZ)"
  printf '%-10s %7s %8s %9s %8s %8s\n' system msgs wall_s msgs/s cpu_s rss_MiB
  for r in "${RESULTS[@]}"; do echo "$r"; done
  for o in outflow of_nodkim; do
    v="RATE_$o"; [ -n "${!v:-}" ] || continue
    [ -n "${RATE_postfix:-}" ] && printf '%s / postfix = %.2f\n' "$o" "$(echo "${!v} / $RATE_postfix" | bc -l)"
    [ -n "${RATE_pf_dkim:-}" ] && printf '%s / pf+dkim = %.2f\n' "$o" "$(echo "${!v} / $RATE_pf_dkim" | bc -l)"
  done
} | tee "$OUT/table.txt"

[ "$LATENCY" = 1 ] || exit 0
echo "bench: latency, paced at half each system's msgs/s"
for s in $SYSTEMS; do
  case $s in
    postfix) latphase run_postfix postfix-lat "" ;;
    pf+dkim) latphase run_pfdkim pf+dkim-lat ;;
    outflow) latphase run_outflow outflow-lat 1 ;;
  esac
done
[ ${#LATRES[@]} -gt 0 ] || exit 0
{
  echo
  echo "latency: submit start -> arrival at the relay target, ms; S=$S C=$C  load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "(sub_p50/sub_p99: the submission alone, start to the 250 after the data; wu_p99: the $LAT_WARMUP"
  echo " warm-up at the same pace before the timed messages, not in the other columns; lost counts both)"
  printf '%-10s %7s %7s %11s %5s %8s %8s %8s %8s %8s %8s %8s\n' system rate got_rate deliv/acc lost p50 p90 p99 max sub_p50 sub_p99 wu_p99
  for r in "${LATRES[@]}"; do echo "$r"; done
} | tee -a "$OUT/table.txt"
