#!/usr/bin/env bash
# Stop the Apache Kafka started by bench/kafka/start.sh and remove its data directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
run="$here/../.cache/kafka-run"
if [[ -f "$run/pid" ]]; then
  pid="$(cat "$run/pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" || true
  fi
  rm -f "$run/pid"
  echo "Apache Kafka PID $pid stopped"
else
  echo "no Apache Kafka PID file; nothing to stop"
fi
if [[ -f "$run/datadir" ]]; then
  rm -rf "$(cat "$run/datadir")"
  rm -f "$run/datadir"
fi
