#!/usr/bin/env bash
# Kafka Connect compat suite: one distributed-mode worker (org.apache.kafka:connect-runtime
# 4.1.1 from Maven Central) runs a FileStreamSource and a FileStreamSink connector through
# the broker, and keeps every line exactly once across a graceful worker restart.
#   FJORD_BIN=/path/to/fjord compat/connect/run.sh          # starts/stops fjord itself
#   KAFKA_BOOTSTRAP=127.0.0.1:19092 compat/connect/run.sh   # an already running broker
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../target.sh"
cd "$here"
java_build connect-runtime src/TopicConfigs.java

N=200          # lines before the worker restart
M=100          # lines after it

# shellcheck source=../broker.sh
source "$here/../broker.sh"
broker_start connect

# Names unique to this run, so that a shared broker (KAFKA_BOOTSTRAP) never mixes runs.
id="$(basename "$work")"; id="${id#connect-compat.}"
topic="connect-lines-$id"
source_name="file-source-$id"
sink_name="file-sink-$id"    # its consumer group is connect-$sink_name
internal_topics=("connect-configs-$id" "connect-offsets-$id" "connect-status-$id")
rest_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
rest="http://127.0.0.1:$rest_port"
connect_pid=""
failures=0

stop_connect() {
  [[ -n "$connect_pid" ]] || return 0
  if kill -0 "$connect_pid" 2>/dev/null; then
    kill "$connect_pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$connect_pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$connect_pid" 2>/dev/null; then
      echo "connect worker did not stop within 30 s of SIGTERM; killing it" >&2
      kill -9 "$connect_pid" 2>/dev/null || true
      wait "$connect_pid" 2>/dev/null || true
      connect_pid=""
      return 1
    fi
  fi
  wait "$connect_pid" 2>/dev/null || true
  connect_pid=""
}

cleanup() {
  local rc=$?
  stop_connect || true
  if (( rc != 0 )); then
    echo "--- tail of connect.log ---"
    tail -60 "$work/connect.log" 2>/dev/null || true
    echo "--- tail of server.log ---"
    tail -40 "$work/server.log" 2>/dev/null || true
  fi
  broker_cleanup
}
trap cleanup EXIT

pass() { echo "PASS $1"; }
# A failed check that later steps do not depend on.
fail() { echo "FAIL $1${2:+: $2}"; failures=$((failures + 1)); }
# A failed check that later steps depend on: stop here.
die() { fail "$@"; exit 1; }

cat > "$work/worker.properties" <<EOF
bootstrap.servers=$BS
group.id=fjord-connect-$id
config.storage.topic=${internal_topics[0]}
offset.storage.topic=${internal_topics[1]}
status.storage.topic=${internal_topics[2]}
# -1: the broker's default replication factor (1 on one broker).
config.storage.replication.factor=-1
offset.storage.replication.factor=-1
status.storage.replication.factor=-1
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.storage.StringConverter
offset.flush.interval.ms=500
listeners=$rest
EOF
: > "$work/in.txt"

start_connect() {
  java -Xmx384m \
    -Dorg.slf4j.simpleLogger.showDateTime=true \
    -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS \
    -cp "lib/*" org.apache.kafka.connect.cli.ConnectDistributed "$work/worker.properties" \
    >> "$work/connect.log" 2>&1 &
  connect_pid=$!
}

# Waits up to $1 seconds for the REST API to answer.
wait_rest() {
  local deadline=$((SECONDS + $1))
  until curl -sf -m 5 "$rest/" >/dev/null 2>&1; do
    kill -0 "$connect_pid" 2>/dev/null || return 1
    (( SECONDS < deadline )) || return 1
    sleep 0.5
  done
}

# Prints "STATE tasks=T1,T2" for connector $1, from its status resource.
connector_state() {
  curl -sf -m 5 "$rest/connectors/$1/status" 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
print(s["connector"]["state"], "tasks=" + ",".join(t["state"] for t in s["tasks"]))
' 2>/dev/null || echo "unknown"
}

# Waits up to $1 seconds until connector $2 and its one task are RUNNING.
wait_running() {
  local deadline=$((SECONDS + $1)) state
  while true; do
    state="$(connector_state "$2")"
    [[ "$state" == "RUNNING tasks=RUNNING" ]] && return 0
    (( SECONDS < deadline )) && kill -0 "$connect_pid" 2>/dev/null || { echo "$state"; return 1; }
    sleep 0.5
  done
}

put_connector() {
  curl -sf -m 30 -X PUT -H 'Content-Type: application/json' \
    --data "$2" "$rest/connectors/$1/config" >/dev/null
}

expected_lines() { for ((i = 1; i <= $1; i++)); do printf 'line %d\n' "$i"; done; }

# Waits up to $1 seconds until out.txt has at least $2 lines, then (a moment later, so that
# a late duplicate shows) checks it holds exactly lines 1..$2 in order.
check_out() {
  local deadline=$((SECONDS + $1)) want="$2" have
  while true; do
    have="$({ cat "$work/out.txt" 2>/dev/null || true; } | wc -l)"
    (( have >= want )) && break
    (( SECONDS < deadline )) || break
    sleep 0.5
  done
  sleep 2
  if diff -q <(expected_lines "$want") "$work/out.txt" >/dev/null 2>&1; then
    return 0
  fi
  have="$({ cat "$work/out.txt" 2>/dev/null || true; } | wc -l)"
  echo "out.txt has $have lines ($(sort "$work/out.txt" 2>/dev/null | uniq -d | wc -l) duplicated), want lines 1..$want; diff:"
  diff <(expected_lines "$want") "$work/out.txt" 2>&1 | head -20
  return 1
}

start_connect
wait_rest 90 && pass "worker REST API answers" || die "worker REST API answers" "no answer at $rest within 90 s"

put_connector "$source_name" "$(printf '{"connector.class":"org.apache.kafka.connect.file.FileStreamSourceConnector","tasks.max":"1","file":"%s","topic":"%s"}' "$work/in.txt" "$topic")" \
  && pass "create FileStreamSource connector" || die "create FileStreamSource connector"
put_connector "$sink_name" "$(printf '{"connector.class":"org.apache.kafka.connect.file.FileStreamSinkConnector","tasks.max":"1","file":"%s","topics":"%s"}' "$work/out.txt" "$topic")" \
  && pass "create FileStreamSink connector" || die "create FileStreamSink connector"
for c in "$source_name" "$sink_name"; do
  state="$(wait_running 60 "$c")" && pass "connector $c and its task RUNNING" \
    || die "connector $c and its task RUNNING" "state after 60 s: $state"
done

expected_lines "$N" >> "$work/in.txt"
why="$(check_out 60 "$N")" && pass "$N lines through source, topic and sink" \
  || die "$N lines through source, topic and sink" "$why"

if out="$(timeout 90 java -Xmx128m -cp "lib/classes:lib/*" TopicConfigs "$BS" "${internal_topics[@]}" 2>&1)"; then
  for t in "${internal_topics[@]}"; do
    line="$(grep "^$t " <<<"$out" || true)"
    if [[ "$line" == *" cleanup.policy=compact" ]]; then
      pass "internal topic $t is compacted"
    else
      fail "internal topic $t is compacted" "${line:-not described}"
    fi
  done
else
  fail "internal topics described" "$(tail -5 <<<"$out")"
fi

stop_connect && pass "worker stops on SIGTERM" || fail "worker stops on SIGTERM" "killed after 30 s"
start_connect
wait_rest 90 && pass "restarted worker REST API answers" \
  || die "restarted worker REST API answers" "no answer at $rest within 90 s"
for c in "$source_name" "$sink_name"; do
  state="$(wait_running 90 "$c")" && pass "connector $c and its task RUNNING after restart" \
    || die "connector $c and its task RUNNING after restart" "state after 90 s: $state"
done

for ((i = N + 1; i <= N + M; i++)); do printf 'line %d\n' "$i"; done >> "$work/in.txt"
why="$(check_out 60 $((N + M)))" && pass "lines 1..$((N + M)) exactly once across the restart" \
  || die "lines 1..$((N + M)) exactly once across the restart" "$why"

if (( failures > 0 )); then
  echo "connect: $failures check(s) failed"
  exit 1
fi
echo "connect: all checks passed"
