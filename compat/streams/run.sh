#!/usr/bin/env bash
# Kafka Streams compat suite: a word count (org.apache.kafka:kafka-streams 4.1.1 from Maven
# Central) with processing.guarantee=exactly_once_v2 must produce the exact count of every
# word, read back with read_committed: across a kill -9 and restart of the broker while it
# is under way, and then in a new instance of the app whose state comes from the changelog.
#   FJORD_BIN=/path/to/fjord compat/streams/run.sh          # starts/stops fjord itself
#   KAFKA_BOOTSTRAP=127.0.0.1:19092 compat/streams/run.sh   # an already running broker
# Against an already running broker (or a cluster) the restart is skipped, and said so.
# On failure (or always, with KEEP_LOGS=1) the app's and the server's logs are kept.
# STREAMS_JAVA_OPTS adds JVM options, e.g. -Dorg.slf4j.simpleLogger.log.org.apache.kafka.streams=debug
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../target.sh"
cd "$here"
java_build kafka-streams src/WordCountEos.java

# shellcheck source=../broker.sh
source "$here/../broker.sh"
# As bench/kafka/start.sh does for Kafka: no 3 s wait for more members of a new group.
broker_start streams --override group.initial.rebalance.delay.ms=0

restart=no-restart
[[ -n "${FJORD_BIN:-}" && -z "${FJORD_CLUSTER_NODES:-}" ]] && restart=restart
app_pid=""

cleanup() {
  local rc=$?
  if [[ -n "$app_pid" ]] && kill -0 "$app_pid" 2>/dev/null; then
    kill "$app_pid" 2>/dev/null || true
    wait "$app_pid" 2>/dev/null || true
  fi
  if (( rc != 0 )); then
    echo "--- tail of streams.log ---"
    tail -60 "$work/streams.log" 2>/dev/null || true
    echo "--- tail of server.log (without the per-partition startup lines) ---"
    grep -v "coordinator loaded partition\|log recovered after an unclean shutdown" \
      "$work/server.log" 2>/dev/null | tail -40 || true
  fi
  if (( rc != 0 )) || [[ "${KEEP_LOGS:-}" == 1 ]]; then
    # The whole logs outlive the work directory, for a closer look.
    keep="$(mktemp -d "${TMPDIR:-/tmp}/streams-compat-logs.XXXXXX")"
    cp "$work/streams.log" "$keep/" 2>/dev/null || true
    cp "$work/server.log" "$keep/" 2>/dev/null || true
    echo "--- logs kept in $keep"
  fi
  broker_cleanup
}
trap cleanup EXIT

timeout --kill-after=10 300 java -Xmx384m ${STREAMS_JAVA_OPTS:-} \
  -Dorg.slf4j.simpleLogger.showDateTime=true \
  -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS \
  -cp "lib/classes:lib/*" WordCountEos "$BS" "$work" "$restart" \
  2> "$work/streams.log" &
app_pid=$!

# The app asks for a kill -9 and restart by creating restart.request (holding the seconds
# to stay down), and waits for restart.done.
while kill -0 "$app_pid" 2>/dev/null; do
  if [[ -f "$work/restart.request" ]]; then
    down="$(cat "$work/restart.request")"
    rm -f "$work/restart.request"
    broker_restart "$down"
    echo ok > "$work/restart.done.tmp"
    mv "$work/restart.done.tmp" "$work/restart.done"
  fi
  sleep 0.1
done
status=0
wait "$app_pid" || status=$?
app_pid=""
exit "$status"
